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
    // A site config error is bad input (exit 2), positioned as on a host.
    std::fs::write(&site, "[web]\nwokers = 3\n").unwrap();
    let r = render(&out, &site, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("site.toml:2:1") || r.stderr.contains("site.toml:2"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean"), "{}", r.stderr);
    assert!(!out.exists());
}
