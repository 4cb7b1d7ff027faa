//! `berth k8s render` of NetBox, checked by the real consumers: `kubectl kustomize`
//! builds every overlay, and every object validates against the Kubernetes OpenAPI
//! schemas of the three newest minor versions (`kubernetes-validate --strict`, which
//! refuses a property the schema does not have; a tampered object shows it does).
//! The secrets are files made once, mode 0600, and no value is in any YAML file; bad
//! options write nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use berth_tests::{Berth, prefix_dir, root, test_tool};

/// The Kubernetes versions every object must validate against.
const VERSIONS: [&str; 3] = ["1.35.0", "1.36.0", "1.37.0"];

fn render(out: &Path, site: &Path, more: &[&str]) -> berth_tests::Run {
    let mut args = vec![
        "--config",
        site.to_str().unwrap(),
        "k8s",
        "render",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    Berth::new(Path::new("/nonexistent-prefix"), &root().join("examples/netbox")).run(&args)
}

/// `kubernetes-validate --strict` of `files` for `version`: its status and output.
fn validate(version: &str, files: &[std::path::PathBuf]) -> (bool, String) {
    let out = Command::new(test_tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn netbox_renders_objects_kustomize_builds_and_every_schema_accepts() {
    let dir = prefix_dir("k8s");
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "external_url = \"https://netbox.example.com/\"\n").unwrap();
    let out = dir.path().join("deploy");
    let r = render(
        &out,
        &site,
        &["--env", "staging", "--env", "production", "--pod-network", "10.244.0.0/16", "--json"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("netbox-database", "StatefulSet"),
            ("netbox-web", "Deployment"),
            ("netbox-worker", "Deployment"),
        ]
    );

    // Each role's pods find the others at their Services; the pod network is let in.
    let web = std::fs::read_to_string(out.join("base/configmap-netbox-web-site.yaml")).unwrap();
    assert!(web.contains("address = \"netbox-database\"") && web.contains("10.244.0.0/16"), "{web}");

    // The secrets: one file each, 0600, in no YAML file; kept by the next render.
    let secrets = out.join("base/secrets");
    let mut values = Vec::new();
    for e in std::fs::read_dir(&secrets).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        values.push(std::fs::read_to_string(e.path()).unwrap());
    }
    // The manifest's five, and the backup CronJob's key file (both keys).
    assert_eq!(values.len(), 6);
    let key = std::fs::read_to_string(secrets.join("backup-key")).unwrap();
    assert!(key.contains("AGE-SECRET-KEY-1") && key.contains("BERTH-SIGNING-KEY-1"));
    values.extend(key.lines().filter(|l| !l.starts_with('#')).map(str::to_owned));
    let objects: Vec<std::path::PathBuf> = std::fs::read_dir(out.join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    assert!(objects.len() >= 11, "{objects:?}");
    for o in &objects {
        let text = std::fs::read_to_string(o).unwrap();
        for v in &values {
            assert!(!text.contains(v.trim()), "a secret's value is in {}", o.display());
        }
    }
    let again = render(&out, &site, &["--env", "staging", "--env", "production"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    for e in std::fs::read_dir(&secrets).unwrap() {
        let e = e.unwrap();
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(values.contains(&text), "{} was made again", e.path().display());
    }

    // Every overlay builds, in its namespace, with the Secret made from the files; so
    // does its restore overlay, with every workload scaled to 0 and the restore Job.
    for env in ["staging", "production", "restore/staging", "restore/production"] {
        let built = Command::new("kubectl")
            .args(["kustomize"])
            .arg(out.join(if env.contains('/') { "" } else { "overlays" }).join(env))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&built.stdout).into_owned();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let ns = env.rsplit('/').next().unwrap();
        assert!(text.contains(&format!("namespace: netbox-{ns}")), "{text}");
        assert!(text.contains("kind: Secret") && text.contains("name: netbox-secrets"));
        assert!(text.contains("name: netbox-backup-key"), "{text}");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        let restoring = env.starts_with("restore/");
        for d in &docs {
            if d["kind"] == "Deployment" || d["kind"] == "StatefulSet" {
                assert_eq!(d["spec"]["replicas"] == 0, restoring, "{env}: {d}");
            }
            assert_eq!(d["metadata"]["namespace"], format!("netbox-{ns}"), "{env}: {d}");
        }
        let jobs = docs.iter().filter(|d| d["metadata"]["name"] == "netbox-restore").count();
        assert_eq!(jobs, if restoring { 2 } else { 0 }, "{env}: the restore Job and its claim");
        let cron = docs.iter().find(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "netbox-backup");
        assert!(cron.is_some_and(|c| c["spec"]["suspend"] == true), "{env}: the backup CronJob, suspended");
        let file = dir.path().join(format!("{}.yaml", env.replace('/', "-")));
        std::fs::write(&file, &text).unwrap();
        for v in VERSIONS {
            let (ok, said) = validate(v, std::slice::from_ref(&file));
            assert!(ok, "{env} built for Kubernetes {v}: {said}");
        }
    }
    // Each object of the base, against each version.
    for v in VERSIONS {
        let (ok, said) = validate(v, &objects);
        assert!(ok, "Kubernetes {v}: {said}");
    }
    // The validator refuses what the schema does not have.
    let web = out.join("base/deployment-netbox-web.yaml");
    let tampered = dir.path().join("tampered.yaml");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&tampered, text.replace("  replicas: 1\n", "  replicas: 1\n  replica: 2\n")).unwrap();
    let (ok, said) = validate("1.37.0", &[tampered]);
    assert!(!ok, "a property no schema has was taken: {said}");
}

/// The database elsewhere (`[external]`), rendered over an in-cluster render: its
/// workload, its Service and the restore overlay (nothing to restore into) are gone
/// from the tree, the render says where the database is and which hooks it leaves to
/// the database's administrator, and what is left builds and validates.
#[test]
fn a_database_elsewhere_changes_the_objects_and_the_files_that_went_are_removed() {
    let dir = prefix_dir("k8s-ext");
    let site = dir.path().join("site.toml");
    let out = dir.path().join("deploy");
    std::fs::write(&site, "external_url = \"https://netbox.example.com/\"\n").unwrap();
    let r = render(&out, &site, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.join("base/statefulset-netbox-database.yaml").exists());
    assert!(out.join("restore/production/kustomization.yaml").exists());
    // An administrator's own file beside them stays.
    std::fs::write(out.join("base/notes.yaml"), "# mine\n").unwrap();

    std::fs::write(
        &site,
        "external_url = \"https://netbox.example.com/\"\n\n[external]\ndatabase = \"pg.example.com\"\n",
    )
    .unwrap();
    let r = render(&out, &site, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        report["external"],
        serde_json::json!([{"role": "database", "service": "postgresql", "address": "pg.example.com:5433"}])
    );
    assert_eq!(report["skipped_hooks"], serde_json::json!(["initdb", "createdb"]));
    let removed: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().trim_start_matches(&format!("{}/", out.display())).to_owned())
        .collect();
    for gone in [
        "base/statefulset-netbox-database.yaml",
        "base/service-netbox-database.yaml",
        "base/configmap-netbox-database-site.yaml",
        "restore/production/stop-netbox-database.yaml",
    ] {
        assert!(removed.iter().any(|r| r == gone), "{gone} not in {removed:?}");
        assert!(!out.join(gone).exists(), "{gone}");
    }
    // Written again: the restore loads the database where it is.
    for kept in ["restore-base/job-netbox-restore.yaml", "restore/production/kustomization.yaml"] {
        assert!(!removed.iter().any(|r| r == kept), "{kept} in {removed:?}");
        assert!(out.join(kept).exists(), "{kept}");
    }
    assert!(out.join("base/notes.yaml").exists(), "a file no render wrote was removed");
    assert!(out.join("base/secrets/db_password").exists());
    let human = render(&out, &site, &[]);
    assert!(
        human.stdout.contains("postgresql               elsewhere ([external] database), reached at pg.example.com:5433")
            && human.stdout.contains("hook(s) initdb, createdb"),
        "{}",
        human.stdout
    );

    let built = Command::new("kubectl")
        .arg("kustomize")
        .arg(out.join("overlays/production"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let text = String::from_utf8_lossy(&built.stdout).into_owned();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let names: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["netbox-web", "netbox-worker", "netbox-cache"]);
    assert!(text.contains("name: netbox-backup-site"), "{text}");
    let file = dir.path().join("production.yaml");
    std::fs::write(&file, &text).unwrap();
    let restore = restore_of_production(&out);
    let restore_file = dir.path().join("restore.yaml");
    std::fs::write(&restore_file, &restore).unwrap();
    for v in VERSIONS {
        let (ok, said) = validate(v, &[file.clone(), restore_file.clone()]);
        assert!(ok, "Kubernetes {v}: {said}");
    }
}

/// The restore overlay of the deployment at `out` whose database is elsewhere, built:
/// every workload stopped, the Job (with the backup's site config, from the base)
/// loading the database where it is.
fn restore_of_production(out: &Path) -> String {
    let built = Command::new("kubectl").arg("kustomize").arg(out.join("restore/production")).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let text = String::from_utf8_lossy(&built.stdout).into_owned();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == "netbox-restore")
        .expect("the restore Job");
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(args.windows(2).any(|w| w[0] == "--database" && w[1] == "pg.example.com:5433"), "{args:?}");
    for d in docs.iter().filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet") {
        assert_eq!(d["spec"]["replicas"], 0, "{d}");
    }
    assert!(docs.iter().any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "netbox-backup-site"), "{text}");
    text
}

#[test]
fn options_a_cluster_cannot_take_write_nothing() {
    let dir = prefix_dir("k8s-bad");
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "").unwrap();
    let out = dir.path().join("deploy");
    for (args, says) in [
        (&["--storage-class", ""][..], "storage class is empty"),
        (&["--env", "Prod"][..], "not an environment name"),
        (&["--registry", "registry.example.com/"][..], "not an image registry"),
        (&["--pod-network", "10.0.0.0/8 md5"][..], "not a network"),
    ] {
        let r = render(&out, &site, args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert!(!out.exists(), "{args:?} wrote something");
    }
    // An image the objects name that the layout of the built images does not have (an
    // image layout as `berth image build --out` writes it, with the web image only,
    // and another version's worker): refused, naming each one missing; a directory
    // that is no layout too.
    let layout = dir.path().join("images");
    std::fs::create_dir(&layout).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tagged = |tag: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "0".repeat(64)),
            "size": 1,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })
    };
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [tagged("web-4.7.3"), tagged("worker-4.7.2")]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let r = render(&out, &site, &["--images", layout.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    for missing in ["`localhost/netbox-postgresql:4.7.3` (`postgresql-4.7.3`)", "`localhost/netbox-worker:4.7.3`", "`localhost/netbox-nginx:4.7.3`"] {
        assert!(r.stderr.contains(missing), "{missing}: {}", r.stderr);
    }
    assert!(!r.stderr.contains("netbox-web:"), "{}", r.stderr);
    assert!(r.stderr.contains("it has web-4.7.3, worker-4.7.2") && r.stderr.contains("berth image build"), "{}", r.stderr);
    assert!(!out.exists(), "a render naming missing images wrote something");
    let r = render(&out, &site, &["--images", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("is not an OCI image layout"), "{}", r.stderr);
    assert!(!out.exists());

    // A site config error is bad input (exit 2), positioned as on a host.
    std::fs::write(&site, "[web]\nwokers = 3\n").unwrap();
    let r = render(&out, &site, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("site.toml:2:1") || r.stderr.contains("site.toml:2"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean"), "{}", r.stderr);
    assert!(!out.exists());
}

/// A backup holding NetBox's secrets (and a host's console password), made as `berth
/// backup create` makes one: signed with the key file's signing key, the secrets
/// encrypted to its backup key. Its path.
fn archive_with_secrets(dir: &Path, app: &str, key_file: &str, secrets: &[(&str, String)]) -> std::path::PathBuf {
    let keys = berth_archive::signing::parse_key_file(key_file).unwrap();
    let identity = berth_archive::secrets::parse_identity(key_file).unwrap();
    let plain = dir.join(format!("plain-{app}"));
    std::fs::create_dir_all(&plain).unwrap();
    for (name, value) in secrets {
        std::fs::write(plain.join(name), format!("{value}\n")).unwrap();
    }
    let out = dir.join(format!("archives-{app}"));
    std::fs::create_dir_all(&out).unwrap();
    let contents = berth_backup::backup::Contents {
        app,
        version: "4.7.3",
        components: Vec::new(),
        data_root: dir,
        data_dirs: &[],
        dump: None,
        site_config: berth_backup::backup::SiteConfig::Text(b""),
        manifest_dir: None,
        secrets: Some((&plain, identity.recipient())),
        signing_key: keys.signing.as_ref().unwrap(),
    };
    let (name, _) =
        berth_backup::backup::write_in_dir(&out, 3, &contents, &berth_lifecycle::Silent).unwrap();
    std::fs::remove_dir_all(&plain).unwrap();
    out.join(name)
}

/// `--secrets-from`: a host's backup gives the deployment its secrets, so an instance
/// moved in keeps its sessions and tokens; what they replace is kept (mode 0600); a
/// host's own console password is left out. A backup the key file did not sign, of
/// another app, or with a value the secret cannot have is refused, and nothing is
/// written.
#[test]
fn secrets_come_from_a_hosts_backup_or_nothing_is_written() {
    let dir = prefix_dir("k8s-secrets-from");
    let d = dir.path();
    let site = d.join("site.toml");
    std::fs::write(&site, "external_url = \"https://netbox.example.com/\"\n").unwrap();
    let key_text = berth_archive::signing::new_key_file_text(jiff::Timestamp::now()).unwrap();
    let key = d.join("backup.key");
    std::fs::write(&key, &key_text).unwrap();
    let an = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
    let host: Vec<(&str, String)> = vec![
        ("admin_password", "0123456789abcdef0123456789abcdef".to_owned()),
        ("api_token_pepper", an(64, 'P')),
        ("db_password", an(32, 'D')),
        ("redis_password", an(32, 'R')),
        ("secret_key", format!("{}!#%", an(61, 'S'))),
        ("berth-console-password", an(24, 'C')),
    ];
    let archive = archive_with_secrets(d, "netbox", &key_text, &host);

    // A first render made its own; the host's replace them.
    let out = d.join("deploy");
    assert_eq!(render(&out, &site, &[]).code, 0);
    let made = std::fs::read_to_string(out.join("base/secrets/db_password")).unwrap();
    let r = render(
        &out,
        &site,
        &["--secrets-from", archive.to_str().unwrap(), "--key", key.to_str().unwrap(), "--json"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["secrets_taken"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(report["secrets_replaced"].as_array().unwrap().len(), 5, "{report}");
    for (name, value) in &host[..5] {
        let path = out.join("base/secrets").join(name);
        assert_eq!(&std::fs::read_to_string(&path).unwrap(), value, "{name}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!out.join("base/secrets/berth-console-password").exists());
    let kept: Vec<_> = std::fs::read_dir(out.join("base/secrets-replaced")).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].as_ref().unwrap().path().join("db_password");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), made);
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    // Taken again, nothing changes.
    let r = render(&out, &site, &["--secrets-from", archive.to_str().unwrap(), "--key", key.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["secrets_replaced"], serde_json::json!([]), "{report}");

    // Refused, and nothing written.
    let other_key = d.join("other.key");
    std::fs::write(&other_key, berth_archive::signing::new_key_file_text(jiff::Timestamp::now()).unwrap())
        .unwrap();
    let mut bad = host.clone();
    bad[2].1 = format!("{}'", an(31, 'D'));
    let crafted = archive_with_secrets(d, "netbox", &key_text, &bad[..5]);
    let mut foreign = host.clone();
    foreign.push(("ssh_key", an(32, 'K')));
    let foreign = archive_with_secrets(d, "netbox", &key_text, &foreign);
    let elsewhere = archive_with_secrets(d, "gitea", &key_text, &host);
    for (archive, key, says) in [
        (&archive, &other_key, "signed"),
        (&crafted, &key, "`db_password` is not a value it can have"),
        (&foreign, &key, "secret `ssh_key` the app does not declare"),
        (&elsewhere, &key, "is a backup of `gitea`, not of `netbox`"),
    ] {
        let fresh = d.join("fresh");
        let r = render(&fresh, &site, &["--secrets-from", archive.to_str().unwrap(), "--key", key.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{says}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert!(!fresh.exists(), "{says}: something was written");
    }
}
