//! `berth container backup` as a deployment's backup pod runs it: an unprivileged user,
//! the app's secrets in a directory of their own, the backed-up data directory on a
//! volume of its own, and PostgreSQL in another "pod", reached over TCP as the owning
//! role with its password. The archive must be one a host takes: `berth backup verify`
//! with the key file checks its signature, metadata, site config, dump and secrets.
//! Then `berth container restore --database` loads it back into that PostgreSQL as a
//! deployment whose database is elsewhere (`[external]`) does: over TCP as the owning
//! role.
//!
//! Port 25632 (PostgreSQL).

use std::path::Path;
use std::process::{Child, Command, Output};

use berth_tests::{Tmpfs, berth_bin, is_root, prefix_dir, wait_for};

const PG: u16 = 25632;
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The owner's password, as berth would have generated it (32 letters and digits).
const PASSWORD: &str = "Ab3dEfGh1jKlMn0pQrStUvWxYz012345";
/// `nobody`: the pod's user is not root, and owns nothing of root's.
const USER: &str = "65534";

const MANIFEST: &str = r#"
[app]
name = "podbackup"
version = "1.0.0"
summary = "a database and a directory of files, backed up from a pod"
default_external_url = "http://127.0.0.1:18090/"

[components.postgresql]
source = "system"
data_dirs = ["postgresql"]

[components.files]
source = "system"
data_dirs = ["files"]

[secrets.db_password]
length = 32

[services.postgresql]
component = "postgresql"
command = ["/usr/lib/postgresql/15/bin/postgres", "-D", "{{ paths.data }}/postgresql/main"]

[backup]
data_dirs = ["files"]

[backup.database]
kind = "postgresql"
service = "postgresql"
host = "{{ paths.run }}/postgresql"
port = "5432"
name = "app"
owner = "app"
bin_dir = "/usr/lib/postgresql/15/bin"
password = "db_password"
"#;

/// `argv` as the unprivileged user, with a clean environment plus `env`.
fn as_user(argv: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--clear-groups",
    ])
    .args(argv)
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("LANG", "C.UTF-8")
    .envs(env.iter().copied());
    cmd
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PostgreSQL in a directory of its own, stopped (fast shutdown) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.0.wait();
    }
}

/// A cluster whose role `app` owns the database `app` (a table of 100 rows) and
/// logs in over TCP with [`PASSWORD`] only.
fn start_postgresql(dir: &Path) -> Server {
    let data = dir.join("pg");
    let sock = dir.join("sock");
    for d in [&data, &sock] {
        std::fs::create_dir(d).unwrap();
        chown_user(d);
    }
    let initdb = as_user(
        &[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        &[],
    )
    .output()
    .unwrap();
    ok("initdb", &initdb);
    let server = as_user(
        &[
            &format!("{PG_BIN}/postgres"),
            "-D",
            data.to_str().unwrap(),
            "-k",
            sock.to_str().unwrap(),
            "-p",
            &PG.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let server = Server(server);
    let psql = |sql: &str| superuser_sql(dir, "postgres", sql);
    wait_for("PostgreSQL", std::time::Duration::from_secs(30), || {
        psql("SELECT 1").status.success()
    });
    ok(
        "create the role",
        &psql(&format!("CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")),
    );
    ok(
        "create the database",
        &psql("CREATE DATABASE app OWNER app"),
    );
    let table = Command::new(format!("{PG_BIN}/psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &PG.to_string(), "-U", "app", "-d", "app", "-c"])
        .arg("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g")
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    ok("fill the table", &table);
    server
}

/// One SQL statement as the cluster's superuser (through the socket of the cluster
/// [`start_postgresql`] made in `dir`) against `database`.
fn superuser_sql(dir: &Path, database: &str, sql: &str) -> Output {
    as_user(
        &[
            &format!("{PG_BIN}/psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            dir.join("sock").to_str().unwrap(),
            "-p",
            &PG.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ],
        &[],
    )
    .output()
    .unwrap()
}

fn chown_user(path: &Path) {
    let id = USER.parse().unwrap();
    std::os::unix::fs::chown(path, Some(id), Some(id)).unwrap();
}

/// `berth container ARGS…` on the instance of `t` as the pod's user, the app's
/// secrets in `secrets`, the database at `127.0.0.1:PG`; its output.
fn container(t: &Path, secrets: &Path, args: &[&str]) -> Output {
    let berth = berth_bin();
    let (prefix, manifest) = (t.join("prefix"), t.join("manifest"));
    let database = format!("127.0.0.1:{PG}");
    let mut line = vec![
        berth.to_str().unwrap(),
        "--prefix",
        prefix.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "container",
    ];
    line.extend_from_slice(args);
    line.extend(["--database", &database]);
    as_user(&line, &[("BERTH_SECRETS_DIR", secrets.to_str().unwrap())])
        .output()
        .unwrap()
}

/// `berth container backup` as the pod's user; its output.
fn backup(t: &Path, secrets: &Path) -> Output {
    let (to, key) = (t.join("backups"), t.join("key"));
    container(
        t,
        secrets,
        &[
            "backup",
            "--to",
            to.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The pod's backup of the database (over TCP, with the owner's password) and of the
/// data directory is an archive a host verifies, secrets and dump included; a backup
/// that fails (a wrong password) exits 1 and leaves nothing in the directory.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_pods_backup_is_one_a_host_takes() {
    if !is_root() {
        eprintln!("skipped: the pod's user is another user than the test's, which needs root");
        return;
    }
    let dir = prefix_dir("container-backup");
    let t = dir.path();
    let _server = start_postgresql(t);

    std::fs::create_dir(t.join("manifest")).unwrap();
    std::fs::write(t.join("manifest/berth.toml"), MANIFEST).unwrap();
    // The data directory on a volume of its own, as in the pod (a restore unpacks
    // beside it, on the same volume).
    let files = t.join("prefix/data/files");
    let Some(_volume) = Tmpfs::mount(&t.join("prefix/data"), "8m") else {
        eprintln!("skipped: no tmpfs can be mounted here");
        return;
    };
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("upload.txt"), "kept\n").unwrap();
    let secrets = t.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("db_password"), format!("{PASSWORD}\n")).unwrap();
    let key = berth_archive::signing::new_key_file_text(jiff::Timestamp::now()).unwrap();
    std::fs::write(t.join("key"), key).unwrap();
    std::fs::create_dir(t.join("backups")).unwrap();
    for p in [
        t.join("prefix"),
        t.join("prefix/data"),
        files.clone(),
        files.join("upload.txt"),
        secrets.clone(),
        secrets.join("db_password"),
        t.join("key"),
        t.join("backups"),
    ] {
        chown_user(&p);
    }

    let out = backup(t, &secrets);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "the password was shown: {stderr}"
    );
    let archives = names_in(&t.join("backups"));
    let [archive] = archives.as_slice() else {
        panic!("not one archive, nothing else: {archives:?}");
    };
    let path = t.join("backups").join(archive);
    assert!(
        stderr.contains(&format!(
            "berth: backed up podbackup 1.0.0 to {}",
            path.display()
        )),
        "{stderr}"
    );

    // What a host's restore reads: the same metadata as `berth backup create` writes.
    let index = berth_archive::read_index(&path).unwrap();
    let meta = berth_backup::meta::BackupMeta::from_meta(&index.manifest.meta).unwrap();
    assert_eq!(meta.data_dirs, ["files"]);
    assert!(meta.quiesce.services.is_empty());
    let db = meta.database.expect("a database dump");
    assert_eq!(
        (db.name.as_str(), db.path.as_str()),
        ("app", "database/app")
    );
    assert!(
        db.server_version.starts_with("15."),
        "{}",
        db.server_version
    );
    assert!(meta.secrets.included);
    for entry in ["data/files/upload.txt", "config/site.toml", "secrets.age"] {
        assert!(index.manifest.entry(entry).is_some(), "no {entry}");
    }
    assert!(index.manifest.entry("manifest/berth.toml").is_some());

    let verify = Command::new(berth_bin())
        .arg("--prefix")
        .arg(t.join("host"))
        .arg("--manifest")
        .arg(t.join("manifest"))
        .args(["backup", "verify", "--json", "--key"])
        .arg(t.join("key"))
        .arg(&path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok("backup verify", &verify)).unwrap();
    assert_eq!(report["secrets_included"], true, "{report}");
    assert_eq!(report["key_opens_secrets"], true, "{report}");
    // The table, its data and its key.
    assert!(report["dump_toc_entries"].as_u64() >= Some(3), "{report}");

    // A wrong password: nothing is backed up, and nothing of the attempt stays.
    std::fs::write(secrets.join("db_password"), "X".repeat(32)).unwrap();
    let out = backup(t, &secrets);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert_eq!(names_in(&t.join("backups")), archives);

    std::fs::write(secrets.join("db_password"), format!("{PASSWORD}\n")).unwrap();
    restore_elsewhere(t, &secrets, &path);
}

/// `berth container restore --database` as the pod's user; its output.
fn restore(t: &Path, secrets: &Path, archive: &Path) -> Output {
    let key = t.join("key");
    container(
        t,
        secrets,
        &[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
}

/// The archive restored into the database elsewhere: refused, changing nothing, while
/// the owning role may not create databases (with the statement that allows it);
/// then the table and the data directory are as they were backed up, and nothing of
/// the restore is left (no other database, no dump beside the archive).
fn restore_elsewhere(t: &Path, secrets: &Path, archive: &Path) {
    let sql =
        |database: &str, statement: &str| ok(statement, &superuser_sql(t, database, statement));
    // The restore claim, a volume of its own: the archive, and the dump beside it.
    let claim = t.join("restore");
    let _volume = Tmpfs::mount(&claim, "16m").expect("a tmpfs, as the data directory got");
    chown_user(&claim);
    let copy = claim.join("archive");
    std::fs::copy(archive, &copy).unwrap();
    chown_user(&copy);
    // What changed since the backup.
    sql(
        "app",
        "DELETE FROM t WHERE id > 50; CREATE TABLE extra (x int)",
    );
    let upload = t.join("prefix/data/files/upload.txt");
    std::fs::write(&upload, "changed\n").unwrap();

    let out = restore(t, secrets, &copy);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("may not create databases")
            && stderr.contains(r#"ALTER ROLE "app" CREATEDB"#),
        "{stderr}"
    );
    assert_eq!(sql("app", "SELECT count(*) FROM t").trim(), "50");
    assert_eq!(std::fs::read_to_string(&upload).unwrap(), "changed\n");
    assert_eq!(names_in(&t.join("prefix/data/files")), ["upload.txt"]);

    sql("postgres", "ALTER ROLE app CREATEDB");
    let out = restore(t, secrets, &copy);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "the password was shown: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "The database is at 127.0.0.1:{PG}, restored as its owner `app`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("database `app`"), "{stderr}");
    assert_eq!(sql("app", "SELECT count(*) FROM t").trim(), "100");
    assert_eq!(
        sql(
            "app",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'extra'"
        )
        .trim(),
        "0"
    );
    // Owned by the app's role, and the only database of the app.
    assert_eq!(
        sql("postgres", "SELECT string_agg(datname || ':' || pg_get_userbyid(datdba), ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'app%'").trim(),
        "app:app"
    );
    assert_eq!(std::fs::read_to_string(&upload).unwrap(), "kept\n");
    assert_eq!(names_in(&t.join("prefix/data/files")), ["upload.txt"]);
    assert_eq!(names_in(&claim), ["archive"]);
}
