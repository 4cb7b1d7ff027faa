//! The database moves out of the cluster: a PostgreSQL of its own outside the pods (at
//! an address of the pods' network namespace that is not loopback, as a managed
//! database's would be), made as its administrator would (the app's role with the
//! deployment's `db_password`, its database), loaded with the dump of the deployment's
//! backup (the backup CronJob's archive); the deployment rendered again with `[external] database` over the same tree. The
//! database's workload is gone, Redis has pods of its own, the migration Job waits for
//! the external server, NetBox serves the same objects with the same token, what it
//! writes lands in the external database, and the backup CronJob dumps it there; its
//! archive, restored by the restore Job over the network, brings back what was
//! removed since.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{Podman, http_request};

use super::{
    Netns, PG_PORT, PORT, PORTS, down, exit_code, logs, mountpoint, play_files, play_web,
    ports_free, render, wait_ready,
};

/// Where the external server listens: an address of the pods' network namespace.
const HOST: &str = "10.254.7.1";

/// PostgreSQL's programs, from the Debian package the test installs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of the `postgres` user's, in the pods' network namespace,
/// listening on [`HOST`]; stopped on drop.
struct Server {
    data: PathBuf,
    dir: PathBuf,
    ns: String,
}

impl Server {
    /// A new cluster in `dir` (password logins from [`HOST`] only), started.
    fn start(ns: &Netns, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(dir, Some(pg.uid), Some(pg.gid)).unwrap();
        let data = dir.join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/initdb"), "-D"])
            .arg(&data)
            .args([
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("{text}host all all {HOST}/32 scram-sha-256\n"),
        )
        .unwrap();
        // pg_ctl, so that stopping it needs no signal passed through `runuser`.
        let options = format!(
            "-p {PG_PORT} -k {} -c listen_addresses={HOST}",
            dir.display()
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "runuser", "-u", "postgres", "--"])
            .arg(format!("{BIN}/pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "start"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
        let server = Self {
            data,
            dir: dir.to_owned(),
            ns: ns.0.clone(),
        };
        berth_tests::wait_for("the external PostgreSQL", Duration::from_mins(1), || {
            server
                .in_ns(
                    &[
                        &format!("{BIN}/pg_isready"),
                        "-q",
                        "-h",
                        HOST,
                        "-p",
                        &PG_PORT.to_string(),
                    ],
                    &[],
                )
                .status
                .success()
        });
        server
    }

    /// `argv` in the pods' network namespace, as root, with `env`.
    fn in_ns(&self, argv: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `sql` run by the server's superuser, over its socket: what it printed.
    fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{BIN}/psql"),
                "-X",
                "-q",
                "-A",
                "-t",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &PG_PORT.to_string(), "-d", database, "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // PostgreSQL's fast shutdown: clients disconnected, data safe.
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl"), "-D"])
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .output();
    }
}

/// The phase itself; the deployment (the database and web pods) runs when it begins,
/// and nothing of it when it ends.
#[allow(clippy::print_stderr, clippy::too_many_lines)] // timings shown; one story
pub(super) fn the_database_moves_out_of_the_cluster(
    podman: &Podman,
    ns: &Netns,
    (site, deploy, archive): (&Path, &Path, &Path),
    files: &[(String, PathBuf)],
    auth: &str,
) {
    let w = site.parent().unwrap();
    let state = ns.run(|| super::super::api_state_at(PORT, auth));
    let password = std::fs::read_to_string(deploy.join("base/secrets/db_password")).unwrap();
    let password = password.trim();
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "a password SQL takes as it is"
    );
    // The dump of the deployment's backup (the backup CronJob's archive), as an
    // administrator moving the database out takes it: pg_dump's directory format.
    let unpacked = w.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let out = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(archive)
        .arg("-C")
        .arg(&unpacked)
        .arg("database/netbox")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {out:?}");
    let dump = unpacked.join("database/netbox");
    for (_, file) in [&files[2], &files[4]] {
        down(podman, ns, file, &[]);
    }
    ports_free(ns, &PORTS);

    // The external server, as its administrator makes it: the role and the database
    // the createdb hook would make in the cluster, the deployment's data loaded.
    let add = Command::new("ip")
        .args([
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{HOST}/32"),
            "dev",
            "lo",
        ])
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let server = Server::start(ns, &w.join("external-pg"));
    server.psql(
        "postgres",
        &format!("CREATE ROLE netbox LOGIN PASSWORD '{password}'"),
    );
    server.psql("postgres", "CREATE DATABASE netbox OWNER netbox");
    // A restore makes a database and swaps it in by renaming.
    server.psql("postgres", "ALTER ROLE netbox CREATEDB");
    let port = PG_PORT.to_string();
    let out = server.in_ns(
        &[
            &format!("{BIN}/pg_restore"),
            "-h",
            HOST,
            "-p",
            &port,
            "-U",
            "netbox",
            "-d",
            "netbox",
            "--no-owner",
            "--exit-on-error",
            "-Fd",
            dump.to_str().unwrap(),
        ],
        &[("PGPASSWORD", password)],
    );
    assert!(out.status.success(), "pg_restore: {out:?}");

    // Rendered again over the same tree, the database elsewhere.
    let text = std::fs::read_to_string(site).unwrap();
    let external = w.join("site-external.toml");
    std::fs::write(
        &external,
        format!("{text}\n[external]\ndatabase = \"{HOST}\"\n"),
    )
    .unwrap();
    render(&external, deploy, &[]);
    assert!(
        !deploy
            .join("base/statefulset-netbox-database.yaml")
            .exists()
    );
    let built = Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy.join("overlays/test"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let dir = w.join("external");
    std::fs::create_dir_all(&dir).unwrap();
    let (ext, _) = play_files(&String::from_utf8_lossy(&built.stdout), &dir);
    let names: Vec<&str> = ext.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "netbox-cache-0",
            "netbox-migrate-4-7-3",
            "netbox-web",
            "netbox-worker",
            "netbox-cache-0-again",
            "netbox-backup"
        ]
    );
    let job = std::fs::read_to_string(&ext[1].1).unwrap();
    assert!(job.contains(&format!("{HOST}:{PG_PORT}")), "{job}");

    // Redis in pods of its own (its claim new, the others there already), the
    // migration Job (nothing to migrate: the schema came with the dump), the web and
    // worker pods.
    let started = Instant::now();
    podman.ok(&["volume", "create", "data-redis-netbox-cache-0"]);
    let play =
        |file: &Path| podman.ok(&["kube", "play", "--network", "host", file.to_str().unwrap()]);
    play(&ext[4].1);
    wait_ready(
        podman,
        "the cache pod ready",
        Duration::from_mins(5),
        &[("netbox-cache-0-redis", "redis")],
    );
    play(&ext[1].1);
    play_web(podman, ns, &ext[2].1);
    let job_container = "netbox-migrate-4-7-3-hook-migrate";
    let code = exit_code(podman, job_container, Duration::from_mins(5));
    assert_eq!(code, 0, "{}", logs(podman, job_container));
    play(&ext[3].1);
    wait_ready(
        podman,
        "the web and worker pods ready on the external database",
        Duration::from_mins(10),
        &[
            ("netbox-web-pod-0-web", "web"),
            ("netbox-web-pod-0-nginx", "nginx"),
            ("netbox-worker-pod-0-worker", "worker"),
        ],
    );
    eprintln!(
        "from the cache pod's play to the web and worker pods ready on the external database: {:?}",
        started.elapsed()
    );
    let running = podman.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(!running.contains("netbox-database"), "{running}");

    // The same objects, with the same token; what NetBox writes lands in the
    // external database.
    assert_eq!(ns.run(|| super::super::api_state_at(PORT, auth)), state);
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let (code, body) = ns.run(|| {
        http_request(
            "POST",
            PORT,
            "/api/tenancy/tenants/",
            &headers,
            Some(r#"{"name": "Outside Tenant", "slug": "outside-tenant"}"#),
        )
        .unwrap()
    });
    assert_eq!(code, 201, "{body}");
    let names = server.psql("netbox", "SELECT name FROM tenancy_tenant ORDER BY name");
    assert!(names.lines().any(|l| l == "Outside Tenant"), "{names}");

    // The backup CronJob's job dumps the database where it is.
    let claim = mountpoint(podman, "netbox-backups");
    let names_in = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = names_in(&claim);
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "host",
        ext[5].1.to_str().unwrap(),
    ]);
    let code = exit_code(podman, "netbox-backup-backup", Duration::from_mins(10));
    let said = logs(podman, "netbox-backup-backup");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(&format!("from {HOST}:{PG_PORT}")), "{said}");
    podman.ok(&["kube", "down", ext[5].1.to_str().unwrap()]);
    let after = names_in(&claim);
    let new: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
    let [newest] = new.as_slice() else {
        panic!("not one new archive: {before:?} then {after:?}");
    };

    for i in [3, 2, 1, 4] {
        podman.ok(&["kube", "down", ext[i].1.to_str().unwrap()]);
    }
    ports_free(ns, &[PORT, super::WEB_PORT, super::REDIS_PORT]);

    // What was written since goes; the restore Job loads the archive into the
    // database where it is, as its owner, and it is back.
    server.psql(
        "netbox",
        "DELETE FROM tenancy_tenant WHERE slug = 'outside-tenant'",
    );
    let at = mountpoint(podman, "netbox-restore");
    for name in ["archive", "ready"] {
        let _ = std::fs::remove_file(at.join(name));
    }
    std::fs::copy(claim.join(newest), at.join("archive")).unwrap();
    std::fs::copy(deploy.join("base/secrets/backup-key"), at.join("key")).unwrap();
    std::fs::write(at.join("ready"), "").unwrap();
    for name in ["archive", "key", "ready"] {
        nix::unistd::chown(&at.join(name), Some(10001.into()), Some(10001.into())).unwrap();
    }
    let restore = super::restore_file(deploy, &dir);
    let started = Instant::now();
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "host",
        restore.to_str().unwrap(),
    ]);
    let code = exit_code(podman, "netbox-restore-restore", Duration::from_mins(10));
    let said = logs(podman, "netbox-restore-restore");
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(&format!(
            "The database is at {HOST}:{PG_PORT}, restored as its owner `netbox`"
        )) && said.contains("database `netbox`"),
        "{said}"
    );
    eprintln!(
        "the restore Job's pod, loading the external database: {:?}",
        started.elapsed()
    );
    podman.ok(&["kube", "down", restore.to_str().unwrap()]);
    let names = server.psql("netbox", "SELECT name FROM tenancy_tenant ORDER BY name");
    assert!(names.lines().any(|l| l == "Outside Tenant"), "{names}");
    let databases = server.psql(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'netbox%'",
    );
    assert_eq!(databases.trim(), "netbox");
    drop(server);
}
