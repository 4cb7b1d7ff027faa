//! `berth image build` of a real release bundle (ministack: a Python app on its own
//! bundled interpreter, PostgreSQL from Debian), checked by the real consumers: skopeo
//! reads the layout, two builds give the same digests, and podman runs the images:
//! PostgreSQL's cluster made by its `initdb` hook and the server started, the app
//! against it, settings from `BERTH_SET_…` variables and secrets from mounted files,
//! health checks, and a stop that reaches each service as its own stop signal.
//!
//! Debian's podman runs here with `runc` and a containers.conf of the test's own
//! (crun fails on this kernel's rlimits); its storage is a private directory, so the
//! host's images and containers are never touched. Ports are 5660x on 127.0.0.1 (host
//! network).
#![allow(clippy::missing_panics_doc, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::{Berth, Podman, wait_for};

const PG_PORT: &str = "56601";
const APP_PORT: &str = "56602";

/// A ministack bundle whose berth is this build's, without its debug information
/// (the images run it).
fn bundle(dir: &Path) -> (PathBuf, String) {
    let manifest = berth_tests::ministack_at(dir, "1.0.0", |t| t);
    berth_tests::ministack_bundle_of(dir, &manifest, &["--strip-debug"])
}

fn image_build(
    bundle: &Path,
    key: &str,
    out: &Path,
    cache: &Path,
    more: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "image",
        "build",
        bundle.to_str().unwrap(),
        "--public-key",
        key,
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--service",
        "app",
        "--service",
        "postgresql",
        "--json",
    ];
    args.extend_from_slice(more);
    let r = Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run(&args)
        .expect(0);
    serde_json::from_str(&r.stdout).unwrap()
}

fn digests(v: &serde_json::Value) -> Vec<(String, String)> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["service"].as_str().unwrap().to_owned(),
                i["manifest_digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn http_get(port: &str, path: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.parse().ok()?, body.to_owned()))
}

#[test]
#[allow(clippy::too_many_lines)] // one set of images, read and run by every consumer
fn images_are_reproducible_and_run_under_podman() {
    let tmp = tempfile::Builder::new()
        .prefix("berth-image-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let t = tmp.path();
    let (bundle, key) = bundle(t);
    let cache = t.join("cache");
    let layout = t.join("layout");
    let archives = t.join("archives");
    let first = image_build(
        &bundle,
        &key,
        &layout,
        &cache,
        &["--docker-archives", archives.to_str().unwrap()],
    );
    let images = first["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{first}");
    let app = images.iter().find(|i| i["service"] == "app").unwrap();
    let pg = images
        .iter()
        .find(|i| i["service"] == "postgresql")
        .unwrap();
    // The app runs on its bundled interpreter: its base has the libraries that needs,
    // not PostgreSQL; PostgreSQL's has postgresql-15.
    let packages = |i: &serde_json::Value| -> Vec<String> {
        i["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(packages(pg).contains(&"postgresql-15".to_owned()), "{pg}");
    assert!(
        !packages(app).iter().any(|p| p.starts_with("postgresql")),
        "{app}"
    );
    // base, berth, the app component, the instance skeleton; PostgreSQL has no payload.
    assert_eq!(app["layers"].as_array().unwrap().len(), 4, "{app}");
    assert_eq!(pg["layers"].as_array().unwrap().len(), 3, "{pg}");
    assert_eq!(
        app["layers"][1]["digest"], pg["layers"][1]["digest"],
        "berth's layer is shared"
    );

    // skopeo reads the layout.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}:app-1.0.0", layout.display()))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{inspect:?}");
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(config["config"]["User"], "10001:10001", "{config}");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/berth", "container"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["run", "app"]));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        "1.0.0"
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "ministack-app"
    );
    assert_eq!(
        config["config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/berth", "container", "ready", "app"])
    );

    // Each image's bill of materials is a referrer of it in the layout (CycloneDX and
    // SPDX), valid by the formats' own validators, and the same file is in the image.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| -> Vec<u8> {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let referrer = |subject: &str, kind: &str| -> Vec<u8> {
        let entries: Vec<&serde_json::Value> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["artifactType"] == kind)
            .filter(|m| {
                let manifest: serde_json::Value =
                    serde_json::from_slice(&blob(m["digest"].as_str().unwrap())).unwrap();
                manifest["subject"]["digest"] == subject
            })
            .collect();
        assert_eq!(entries.len(), 1, "{kind} of {subject}: {index}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(entries[0]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        blob(manifest["layers"][0]["digest"].as_str().unwrap())
    };
    let app_digest = app["manifest_digest"].as_str().unwrap();
    let cdx = t.join("app.cdx.json");
    std::fs::write(&cdx, referrer(app_digest, "application/vnd.cyclonedx+json")).unwrap();
    let spdx = t.join("app.spdx.json");
    std::fs::write(&spdx, referrer(app_digest, "application/spdx+json")).unwrap();
    berth_tests::assert_valid_boms(&cdx, &spdx);
    let bom: serde_json::Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    let listed = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["purl"].as_str().unwrap().starts_with(prefix))
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect();
        v.sort_by_key(|l| l.to_lowercase());
        v
    };
    assert!(!listed("pkg:deb/debian/").is_empty(), "{bom}");
    assert_eq!(listed("pkg:generic/berth@").len(), 1, "{bom}");
    assert!(!listed("pkg:generic/python@").is_empty(), "{bom}");

    // The same bundle again, into another layout: the same digests.
    let again = image_build(&bundle, &key, &t.join("layout2"), &cache, &[]);
    assert_eq!(digests(&first), digests(&again));

    // podman runs them.
    let podman = Podman::new(&t.join("podman"));
    for service in ["app", "postgresql"] {
        let file = archives.join(format!("ministack-{service}-1.0.0.docker.tar"));
        podman.ok(&["load", "-i", file.to_str().unwrap()]);
    }
    let secrets = t.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(
        secrets.join("db_password"),
        "CorrectHorseBatteryStaple123\n",
    )
    .unwrap();
    let pgdata = t.join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    nix::unistd::chown(&pgdata, Some(10001.into()), Some(10001.into())).unwrap();
    let common = |name: &str| -> Vec<String> {
        [
            "--name",
            name,
            "--network",
            "host",
            "-e",
            &format!("BERTH_SET_POSTGRESQL_PORT={PG_PORT}"),
            "-e",
            &format!("BERTH_SET_APP_PORT={APP_PORT}"),
            "-e",
            "BERTH_SET_APP_GREETING=hello from podman",
            "-v",
            &format!("{}:/run/secrets:ro", secrets.display()),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let pg_volume = format!(
        "{}:/var/opt/berth/ministack/data/postgresql",
        pgdata.display()
    );
    let args = |v: &[String], rest: &[&str]| -> Vec<String> {
        v.iter()
            .cloned()
            .chain(rest.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let run = |v: Vec<String>| -> Output {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        podman.run(&refs)
    };

    // The cluster, by the hook, in a one-off container.
    let mut initdb = vec!["run".to_owned(), "--rm".to_owned()];
    initdb.extend(args(
        &common("initdb"),
        &[
            "-v",
            &pg_volume,
            "localhost/ministack-postgresql:1.0.0",
            "hook",
            "initdb",
        ],
    ));
    let out = run(initdb);
    assert!(out.status.success(), "initdb: {out:?}");
    assert!(pgdata.join("main/PG_VERSION").exists());

    let mut pg_run = vec!["run".to_owned(), "-d".to_owned()];
    pg_run.extend(args(
        &common("pg"),
        &["-v", &pg_volume, "localhost/ministack-postgresql:1.0.0"],
    ));
    let out = run(pg_run);
    assert!(out.status.success(), "postgresql: {out:?}");
    // Its health check is its readiness probe (pg_isready).
    wait_for("PostgreSQL's health check", Duration::from_mins(1), || {
        podman.run(&["healthcheck", "run", "pg"]).status.success()
    });

    // A hook run inside the running container (`podman exec`) reaches the server's
    // socket: the app's role and database, with the mounted secret as its password.
    podman.ok(&[
        "exec",
        "pg",
        "/usr/local/bin/berth",
        "container",
        "hook",
        "createdb",
    ]);
    let who = podman.ok(&[
        "exec",
        "-e",
        "PGPASSWORD=CorrectHorseBatteryStaple123",
        "pg",
        "/usr/lib/postgresql/15/bin/psql",
        "-h",
        "127.0.0.1",
        "-p",
        PG_PORT,
        "-U",
        "app",
        "-d",
        "app",
        "-Atc",
        "SELECT current_user",
    ]);
    assert_eq!(who.trim(), "app");
    // One run of a periodic job, as a CronJob's pod runs it; a misspelt one is named.
    podman.ok(&["exec", "pg", "/usr/local/bin/berth", "container", "job", "vacuum"]);
    let out = podman.run(&["exec", "pg", "/usr/local/bin/berth", "container", "job", "vacum"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("vacuum"), "{text}");

    // A container that lacks a secret its service uses says which, and starts nothing.
    let out = run(vec![
        "run".to_owned(),
        "--rm".to_owned(),
        "--network".to_owned(),
        "host".to_owned(),
        "localhost/ministack-app:1.0.0".to_owned(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs the secret `db_password`"), "{err}");
    assert!(err.contains("/run/secrets"), "{err}");
    // A misspelt setting variable is named, with the right one.
    let mut typo = vec!["run".to_owned(), "--rm".to_owned()];
    typo.extend(args(
        &common("typo"),
        &[
            "-e",
            "BERTH_SET_APP_PROT=1",
            "localhost/ministack-app:1.0.0",
        ],
    ));
    let out = run(typo);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("did you mean `BERTH_SET_APP_PORT`?"), "{err}");
    // Not as root.
    let mut as_root = vec![
        "run".to_owned(),
        "--rm".to_owned(),
        "--user".to_owned(),
        "0".to_owned(),
    ];
    as_root.extend(args(&common("root"), &["localhost/ministack-app:1.0.0"]));
    let out = run(as_root);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not as root"), "{err}");

    let mut app_run = vec!["run".to_owned(), "-d".to_owned()];
    app_run.extend(args(&common("app"), &["localhost/ministack-app:1.0.0"]));
    let out = run(app_run);
    assert!(out.status.success(), "app: {out:?}");
    wait_for("the app's /health", Duration::from_mins(1), || {
        http_get(APP_PORT, "/health").is_some_and(|(code, _)| code == 200)
    });
    let (code, body) = http_get(APP_PORT, "/").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("hello from podman"), "{body}");
    assert!(podman.run(&["healthcheck", "run", "app"]).status.success());
    // What the bill of materials lists is what the image holds: dpkg's packages and
    // the distributions the bundled interpreter finds. The image carries the same file.
    let in_image = |entrypoint: &str, args: &[&str]| -> String {
        let mut v = vec![
            "run",
            "--rm",
            "--entrypoint",
            entrypoint,
            "localhost/ministack-app:1.0.0",
        ];
        v.extend_from_slice(args);
        podman.ok(&v)
    };
    let mut dpkg: Vec<String> = in_image(
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${db:Status-Status} ${Package} ${Version}\n"],
    )
    .lines()
    .filter_map(|l| l.strip_prefix("installed ").map(str::to_owned))
    .collect();
    dpkg.sort_by_key(|l| l.to_lowercase());
    assert_eq!(listed("pkg:deb/debian/"), dpkg);
    let mut found: Vec<String> = in_image(
        "/var/opt/berth/ministack/releases/1.0.0/app/bin/python3",
        &[
            "-I",
            "-c",
            "import importlib.metadata as m\n\
             for d in m.distributions():\n    print(d.metadata['Name'], d.version)",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    found.sort_by_key(|l| l.to_lowercase());
    assert_eq!(listed("pkg:pypi/"), found);
    let carried = in_image(
        "/bin/cat",
        &["/usr/share/doc/berth-image/ministack-app.cdx.json"],
    );
    assert_eq!(carried.as_bytes(), std::fs::read(&cdx).unwrap());

    // It runs as the service user, under berth as process 1.
    let top = podman.ok(&["top", "app", "user", "pid", "args"]);
    assert!(top.contains("berth container run app"), "{top}");
    assert!(!top.lines().skip(1).any(|l| l.starts_with("root")), "{top}");

    // `podman stop` sends SIGTERM: berth gives PostgreSQL its own stop signal (SIGINT,
    // a fast shutdown) and the container ends with status 0.
    podman.ok(&["stop", "--time", "60", "pg"]);
    let logs = String::from_utf8_lossy(&podman.run(&["logs", "pg"]).stderr).into_owned()
        + &String::from_utf8_lossy(&podman.run(&["logs", "pg"]).stdout);
    assert!(
        logs.contains("stopping the postgresql service (SIGINT"),
        "{logs}"
    );
    assert!(logs.contains("fast shutdown request"), "{logs}");
    let code = podman.ok(&["inspect", "pg", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.trim(), "0", "{logs}");
    // Without the database the app reports itself unhealthy.
    wait_for(
        "the app's health check failing",
        Duration::from_secs(30),
        || !podman.run(&["healthcheck", "run", "app"]).status.success(),
    );
}
