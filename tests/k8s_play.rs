//! NetBox from `berth k8s render`'s objects, run for real: no Kubernetes API server can
//! run on these machines, so the objects, as `kubectl kustomize` builds an overlay, are
//! played by `podman kube play` with the images `berth image build` makes.
//!
//! What podman plays as it is: ConfigMaps, PersistentVolumeClaims (named volumes) and
//! Deployments. What it does not, and how this test stands in for the controller or
//! kubelet a cluster has (each checked by schema in `tests/k8s.rs`):
//! - the Secret: podman 4.3 writes its values still base64-encoded, as the object
//!   carries them, into the files it mounts; the test writes the files as the kubelet
//!   does (root's, group 10001 for `fsGroup`, mode 0440) into a volume of that name;
//! - a StatefulSet: its pod template played as the Pod the controller makes
//!   (`<name>-0`), with the claims of its `volumeClaimTemplates` under the names the
//!   controller gives them (`<template>-<name>-0`);
//! - a Job: its pod template played as a Pod, whose exit status the test reads;
//! - Services: every pod runs in one network namespace made for the test (podman's
//!   host network inside it), and the Services' names resolve to its 127.0.0.1 (the
//!   `/etc/hosts` podman copies into each container); the pods' `containerPort`s are
//!   left out, which podman refuses with that network;
//! - `status.podIP` (podman 4.3 has no such field): 127.0.0.1, the pods' address;
//! - the Ingress and the CronJobs: not run; the backup CronJob's job template is
//!   played as a Pod, as `kubectl create job --from=cronjob/…` would make it;
//! - `restartPolicy: Always` (what a Deployment's and a StatefulSet's pods have):
//!   podman 4.3 then restarts an init container that succeeded while it removes it,
//!   and fails; the pods run with `OnFailure`, which restarts what fails all the same;
//! - a readiness probe (podman 4.3 runs none): the test runs the probe's command, as
//!   the kubelet would, before playing what waits for that Service;
//! - podman plays one file's pods in turn and waits for their init containers, so the
//!   test plays the workloads in the order the Services would let them through, one
//!   play at a time;
//! - a deleted pod's processes gone (the kubelet's guarantee): after each `kube down`
//!   the test waits a minute for the pods' ports to be free, then kills what still
//!   listens, saying so; and when it ends, whatever is left in its network namespace.
//!
//! podman once forgot running containers here (left running after `kube down`, "no
//! such exit code", "container with given ID already exists"): the podman of the
//! other NetBox test, beside this one, removed the libpod state directory all podmans
//! shared. Each has its own now (`tests/support`); the guards above and the web pod
//! played once more after "already exists" stay, each saying when it acts.
//!
//! Checked: the migration Job ran before the web pod served (the web pod was played
//! while the Job ran, its init container waited, and its web container started after
//! the Job's ended);
//! `createdb` ran inside PostgreSQL's container once it was ready, `create_admin`
//! inside the web's; NetBox answers its login page through nginx and its API with a
//! token the admin provisions with the password of the rendered Secret; an object
//! made there survives `podman kube down` and `play` again. Then a backup of the
//! other NetBox test's host instance is restored into the deployment by its restore
//! Job (`restore/test`), the deployment rendered again with the backup's secrets
//! (`--secrets-from`): the same objects through the API, with the host's own API token,
//! and the same uploaded files. And back: the backup CronJob's job, played while the
//! deployment runs, writes an archive that `berth restore --key` with the deployment's
//! key file restores on this machine, with the same objects, token and files. Last,
//! the database moves out of the cluster (`external.rs`): a PostgreSQL outside the
//! pods, `[external] database` in the site config, the same objects through the API.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{
    Berth, Podman, http_request, prefix_dir, root, shared_images, shared_release_bundle,
    snapshot_tree,
};
use serde_json::{Value, json};

mod external;

/// nginx's port, from the site config's `external_url`.
const PORT: u16 = 38280;

/// PostgreSQL's, Redis's and gunicorn's ports, which the site config names: the
/// deployment's backup is restored on this machine, outside the pods' network
/// namespace, beside the other tests' services.
const PG_PORT: u16 = 35633;
const REDIS_PORT: u16 = 36580;
const WEB_PORT: u16 = 38201;

/// Every port the pods listen on.
const PORTS: [u16; 4] = [PG_PORT, REDIS_PORT, WEB_PORT, PORT];

/// A network namespace of the test's own, with its loopback up; gone on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("berth-k8s-{}", std::process::id());
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ok(&["netns", "add", &name]);
        ok(&["-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }

    /// `f` run on a thread that entered the namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).unwrap();
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // What podman left running in it (it may, under load) goes with it.
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(ns) = std::fs::metadata(format!("/run/netns/{}", self.0)) {
            let wanted = format!("net:[{}]", ns.ino());
            let me = std::process::id().to_string();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let pid = e.file_name().to_string_lossy().into_owned();
                if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let net = std::fs::read_link(e.path().join("ns/net")).unwrap_or_default();
                if net.to_string_lossy() == wanted
                    && let Ok(pid) = pid.parse::<i32>()
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// What a pod spec needs changed for podman (see the module's documentation).
fn for_podman(spec: &mut Value) {
    if spec["restartPolicy"].is_null() {
        spec["restartPolicy"] = json!("OnFailure");
    }
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            c.as_object_mut().unwrap().remove("ports");
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
                    let e = e.as_object_mut().unwrap();
                    e.remove("valueFrom");
                    e.insert("value".into(), json!("127.0.0.1"));
                }
            }
        }
    }
    // The Secret's files are the volume the test made of them.
    for v in spec["volumes"].as_array_mut().into_iter().flatten() {
        if let Some(secret) = v.as_object_mut().unwrap().remove("secret") {
            v["persistentVolumeClaim"] = json!({"claimName": secret["secretName"]});
        }
    }
}

/// Each Secret's name and its keys.
type Secrets = Vec<(String, Vec<String>)>;

/// The built overlay as files to play, in order: the database (with every claim), the
/// migration Job, then each Deployment, and the database without the claims (to play
/// it again), the backup CronJob's job; the ConfigMaps in each. The Secrets.
fn play_files(built: &str, dir: &Path) -> (Vec<(String, PathBuf)>, Secrets) {
    let docs: Vec<Value> = serde_saphyr::from_multiple(built).unwrap();
    let of =
        |kind: &str| -> Vec<Value> { docs.iter().filter(|d| d["kind"] == kind).cloned().collect() };
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "CronJob",
            "Deployment",
            "Ingress",
            "Job",
            "PersistentVolumeClaim",
            "Secret",
            "Service",
            "StatefulSet"
        ]
    );
    let config_maps = of("ConfigMap");
    let secrets: Secrets = of("Secret")
        .iter()
        .map(|d| {
            let keys = d["data"].as_object().unwrap().keys().cloned().collect();
            (d["metadata"]["name"].as_str().unwrap().to_owned(), keys)
        })
        .collect();
    let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["netbox-backup-key", "netbox-secrets"]);
    let mut files: Vec<(String, Vec<Value>)> = Vec::new();
    let sets = of("StatefulSet");
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    let name = set["metadata"]["name"].as_str().unwrap();
    let mut spec = set["spec"]["template"]["spec"].clone();
    // podman makes a claim's volume when a pod first names it: all of them first.
    let mut objects = config_maps.clone();
    objects.extend(of("PersistentVolumeClaim"));
    for t in set["spec"]["volumeClaimTemplates"].as_array().unwrap() {
        let template = t["metadata"]["name"].as_str().unwrap();
        let claim = format!("{template}-{name}-0");
        objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim}, "spec": t["spec"]}));
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": template, "persistentVolumeClaim": {"claimName": claim}}));
    }
    for_podman(&mut spec);
    objects.push(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-0"), "labels": set["spec"]["template"]["metadata"]["labels"]},
        "spec": spec}));
    files.push((format!("{name}-0"), objects));
    for job in of("Job") {
        let name = job["metadata"]["name"].as_str().unwrap();
        let mut spec = job["spec"]["template"]["spec"].clone();
        for_podman(&mut spec);
        let mut objects = config_maps.clone();
        objects.push(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        );
        files.push((name.to_owned(), objects));
    }
    for mut d in of("Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap().to_owned();
        for_podman(&mut d["spec"]["template"]["spec"]);
        let mut objects = config_maps.clone();
        objects.push(d);
        files.push((name, objects));
    }
    // Played again after `kube down`: the claims are there already (podman refuses
    // to make them twice, where a cluster finds them unchanged).
    let (db, objects) = files[0].clone();
    let again: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] != "PersistentVolumeClaim")
        .cloned()
        .collect();
    files.push((format!("{db}-again"), again));
    // The backup CronJob's job, as `kubectl create job --from=cronjob/netbox-backup`
    // makes it.
    let crons = of("CronJob");
    let cron = crons
        .iter()
        .find(|c| c["metadata"]["name"] == "netbox-backup")
        .expect("the backup CronJob");
    let mut spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone();
    for_podman(&mut spec);
    let mut objects = config_maps.clone();
    objects.push(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netbox-backup"}, "spec": spec}),
    );
    files.push(("netbox-backup".to_owned(), objects));
    let files = files
        .into_iter()
        .map(|(name, mut objects)| {
            own_config_maps(&mut objects, &name);
            let path = dir.join(format!("play-{name}.yaml"));
            // JSON documents are YAML documents.
            let text: Vec<String> = objects.iter().map(Value::to_string).collect();
            std::fs::write(&path, text.join("\n---\n")).unwrap();
            (name, path)
        })
        .collect();
    (files, secrets)
}

/// Each played file's ConfigMaps renamed after it (`<name>.<file>`), in its objects and
/// in its pod's volumes. podman keeps a ConfigMap's files in a volume of the
/// ConfigMap's name, shared by every pod that mounts it, and a play truncates and
/// rewrites them in place: a pod played while another reads its site config could
/// find it empty (seen once: the migration Job read no `[fleet]` as the web pod was
/// played). A kubelet gives each pod its own copy, swapped in whole.
fn own_config_maps(objects: &mut [Value], file: &str) {
    for o in objects.iter_mut() {
        if o["kind"] == "ConfigMap" {
            let name = o["metadata"]["name"].as_str().unwrap();
            o["metadata"]["name"] = json!(format!("{name}.{file}"));
            continue;
        }
        let spec = if o["kind"] == "Pod" {
            &mut o["spec"]
        } else {
            &mut o["spec"]["template"]["spec"]
        };
        for v in spec["volumes"].as_array_mut().into_iter().flatten() {
            if let Some(name) = v["configMap"]["name"].as_str() {
                v["configMap"]["name"] = json!(format!("{name}.{file}"));
            }
        }
    }
}

/// `berth k8s render` of NetBox with the site config `site` into `deploy`, for the
/// images as they are named once loaded, with the environment `test`; `more` arguments.
fn render(site: &Path, deploy: &Path, more: &[&str]) {
    let mut args = vec![
        "--config",
        site.to_str().unwrap(),
        "k8s",
        "render",
        "--out",
        deploy.to_str().unwrap(),
        "--registry",
        "localhost",
        "--env",
        "test",
    ];
    args.extend_from_slice(more);
    Berth::new(
        Path::new("/nonexistent-prefix"),
        &root().join("examples/netbox"),
    )
    .run(&args)
    .expect(0);
}

/// Each Secret's files, as the kubelet writes them: root's, of the pods' group
/// (`fsGroup`), mode 0440; from the files its generator made it of (the backup key
/// Secret's one key from `secrets/backup-key`), into the volume of its name.
fn write_secrets(podman: &Podman, deploy: &Path, secrets: &Secrets) {
    for (secret, keys) in secrets {
        let at = mountpoint(podman, secret);
        for key in keys {
            let from = if secret == "netbox-backup-key" {
                "backup-key"
            } else {
                key
            };
            let to = at.join(key);
            std::fs::copy(deploy.join("base/secrets").join(from), &to).unwrap();
            nix::unistd::chown(&to, Some(0.into()), Some(10001.into())).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o440))
                .unwrap();
        }
    }
}

/// `podman kube down` of `file`, then until nothing listens on `ports` any more.
fn down(podman: &Podman, ns: &Netns, file: &Path, ports: &[u16]) {
    podman.ok(&["kube", "down", file.to_str().unwrap()]);
    ports_free(ns, ports);
}

/// Waits (a minute at most) until nothing in the pods' network namespace listens on
/// `ports`: what `kube down` stopped is gone before the next play. Fails, saying what
/// still listens, when podman left something running.
#[allow(clippy::print_stderr)] // what it killed, said
fn ports_free(ns: &Netns, ports: &[u16]) {
    let listening = || {
        ns.run(|| {
            ports
                .iter()
                .copied()
                .filter(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
                .collect::<Vec<u16>>()
        })
    };
    let end = Instant::now() + Duration::from_mins(1);
    let mut left = listening();
    while !left.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        left = listening();
    }
    if left.is_empty() {
        return;
    }
    // A cluster's kubelet makes sure a deleted pod's processes are gone; podman 4.3
    // under load may leave a container running after `kube down` (seen with Redis in
    // the database pod): what still listens is killed, as the kubelet would, and said.
    let ss = Command::new("ip")
        .args(["netns", "exec", &ns.0, "ss", "-ltnpH"])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    for line in ss.lines() {
        let port = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        if !port.is_some_and(|p| left.contains(&p)) {
            continue;
        }
        for pid in line.split("pid=").skip(1).filter_map(|x| {
            x.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse::<i32>().ok())
        }) {
            eprintln!("podman left pid {pid} running after `kube down`: killed ({line})");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let end = Instant::now() + Duration::from_secs(30);
    while !left.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        left = listening();
    }
    assert!(
        left.is_empty(),
        "still listening after `kube down`: {left:?}\n{ss}"
    );
}

/// A container's exit status once it has ended (at most `within`), as `podman
/// inspect` says: `podman wait` on a container that ended minutes ago fails in podman
/// 4.3 ("no such exit code"), once its exit code has been pruned from its database.
fn exit_code(podman: &Podman, container: &str, within: Duration) -> i64 {
    let end = Instant::now() + within;
    loop {
        let out = podman.ok(&[
            "inspect",
            container,
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
        ]);
        let mut words = out.split_whitespace();
        if let (Some("exited" | "stopped"), Some(code)) = (words.next(), words.next()) {
            return code.parse().unwrap();
        }
        assert!(
            Instant::now() < end,
            "{container} still runs after {within:?}: {out}\n{}",
            everything(podman)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Where podman keeps volume `name` on this machine.
fn mountpoint(podman: &Podman, name: &str) -> PathBuf {
    PathBuf::from(
        podman
            .ok(&["volume", "inspect", name, "--format", "{{.Mountpoint}}"])
            .trim(),
    )
}

/// When a container started and ended, as podman says.
fn times(podman: &Podman, container: &str) -> (jiff::Timestamp, jiff::Timestamp) {
    let out = podman.ok(&[
        "inspect",
        container,
        "--format",
        "{{.State.StartedAt.Format \"2006-01-02T15:04:05.000000000Z07:00\"}} {{.State.FinishedAt.Format \"2006-01-02T15:04:05.000000000Z07:00\"}}",
    ]);
    let mut parts = out.split_whitespace();
    let start = parts.next().unwrap().parse().unwrap();
    let end = parts.next().unwrap().parse().unwrap();
    (start, end)
}

/// A container's output, both streams (berth says what it does on stderr).
fn logs(podman: &Podman, container: &str) -> String {
    let out = podman.run(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The kubelet's readiness probe of a container: the probe's command in it.
fn ready(podman: &Podman, container: &str, service: &str) -> bool {
    probe(podman, container, service).is_ok()
}

/// The readiness probe's command in `container`; what it said when it failed.
fn probe(podman: &Podman, container: &str, service: &str) -> Result<(), String> {
    let out = podman.run(&["exec", container, "berth", "container", "ready", service]);
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Waits until every `(container, service)` passes its readiness probe; past `within`,
/// fails with what the probes said, every container's state and its last lines.
fn wait_ready(podman: &Podman, what: &str, within: Duration, probes: &[(&str, &str)]) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if probes.iter().all(|(c, s)| ready(podman, c, s)) {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut said = String::new();
    for (c, s) in probes {
        if let Err(e) = probe(podman, c, s) {
            let _ = writeln!(said, "{c} not ready: {e}");
        }
    }
    panic!(
        "{what}: not within {within:?}\n{said}{}",
        everything(podman)
    );
}

/// Every container's state and last lines, to say why something did not happen.
fn everything(podman: &Podman) -> String {
    let ps = podman.run(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"]);
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    let mut all = format!("containers:\n{ps}");
    for name in ps.lines().filter_map(|l| l.split_whitespace().next()) {
        let out = podman.run(&["logs", "--tail", "40", name]);
        let _ = write!(
            all,
            "--- {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    all
}

#[test]
#[allow(clippy::too_many_lines, clippy::print_stderr)] // one deployment, brought up, used, brought down and up; its timing shown
fn netbox_runs_from_the_rendered_objects_under_podman_kube_play() {
    let work = prefix_dir("k8s-play");
    let w = work.path();
    let (bundle, public) = shared_release_bundle(
        &root().join("examples/netbox"),
        &["--strip-debug"],
        &["--no-seed"],
    );
    // Every service's image, built once for this test and the other NetBox test.
    let archives = shared_images(&bundle, &public);

    // The objects, for the images as they are named once loaded.
    let site = w.join("site.toml");
    // Two gunicorn workers, as the host test has, rather than the five two CPUs
    // derive: each loads NetBox, seconds of CPU every time the web pod starts.
    std::fs::write(
        &site,
        format!(
            "external_url = \"http://127.0.0.1:{PORT}/\"\n[postgresql]\nport = {PG_PORT}\n\
             [redis]\nport = {REDIS_PORT}\n[web]\nport = {WEB_PORT}\nworkers = 2\n"
        ),
    )
    .unwrap();
    let deploy = w.join("deploy");
    // Every image the objects name is among those built.
    let layout = berth_tests::shared_image_layout(&archives);
    render(&site, &deploy, &["--images", layout.to_str().unwrap()]);
    let built = Command::new("kubectl")
        .args(["kustomize"])
        .arg(deploy.join("overlays/test"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let (files, secrets) = play_files(&String::from_utf8_lossy(&built.stdout), w);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "netbox-database-0",
            "netbox-migrate-4-7-3",
            "netbox-web",
            "netbox-worker",
            "netbox-database-0-again",
            "netbox-backup"
        ]
    );

    let ns = Netns::new();
    let hosts = w.join("hosts");
    // Each Service's name at the pods' address.
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost netbox-database netbox-cache netbox-web netbox-worker\n::1 localhost\n",
    )
    .unwrap();
    let podman = Podman::in_netns(&w.join("podman"), &ns.0, &hosts);
    for entry in std::fs::read_dir(&archives).unwrap() {
        podman.ok(&[
            "load",
            "--quiet",
            "-i",
            entry.unwrap().path().to_str().unwrap(),
        ]);
    }
    for (secret, _) in &secrets {
        podman.ok(&["volume", "create", secret]);
    }
    write_secrets(&podman, &deploy, &secrets);
    let play =
        |file: &Path| podman.ok(&["kube", "play", "--network", "host", file.to_str().unwrap()]);

    // The database: `initdb` in an init container, then PostgreSQL and Redis; it is
    // ready once `createdb` ran inside PostgreSQL's container.
    let started = Instant::now();
    play(&files[0].1);
    wait_ready(
        &podman,
        "the database pod ready",
        Duration::from_mins(5),
        &[
            ("netbox-database-0-postgresql", "postgresql"),
            ("netbox-database-0-redis", "redis"),
        ],
    );
    let db_log = logs(&podman, "netbox-database-0-postgresql");
    assert!(db_log.contains("the createdb hook succeeded"), "{db_log}");

    // The migration Job, then the web pod while the Job runs. podman plays one file at
    // a time here (two plays at once trip podman 4.3 under load) and waits for a
    // pod's init containers: the web pod's play returns once its init container saw
    // the migrations done.
    let job_container = "netbox-migrate-4-7-3-hook-migrate";
    play(&files[1].1);
    let web_begun = jiff::Timestamp::now();
    play_web(&podman, &ns, &files[2].1);
    let web_played = Instant::now();
    let code = exit_code(&podman, job_container, Duration::from_mins(2));
    assert_eq!(code, 0, "{}", logs(&podman, job_container));
    let (_, migrated) = times(&podman, job_container);
    let (web_started, _) = times(&podman, "netbox-web-pod-0-web");
    // The Job still ran when the web pod was played, and the web container started
    // only once it had ended: the init container waited.
    assert!(web_begun < migrated, "{web_begun} {migrated}");
    assert!(migrated < web_started, "{migrated} {web_started}");
    play(&files[3].1);
    wait_ready(
        &podman,
        "the web and worker pods ready",
        Duration::from_mins(10),
        &[
            ("netbox-web-pod-0-web", "web"),
            ("netbox-web-pod-0-nginx", "nginx"),
            ("netbox-worker-pod-0-worker", "worker"),
        ],
    );
    let came_up = started.elapsed();
    eprintln!(
        "from the first play to the web and worker pods ready: {came_up:?} (the web pod's play returned after {:?})",
        web_played.duration_since(started)
    );
    let web_log = logs(&podman, "netbox-web-pod-0-web");
    assert!(
        web_log.contains("the create_admin hook succeeded"),
        "{web_log}"
    );

    // The login page through nginx, and the API with a token the admin provisions
    // with the rendered Secret's password.
    let (code, body) = ns.run(|| http_request("GET", PORT, "/login/", &[], None).unwrap());
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("NetBox"), "not NetBox's login page");
    let password = std::fs::read_to_string(deploy.join("base/secrets/admin_password")).unwrap();
    let auth = ns.run(|| provision_token(password.trim()));
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let (code, body) = ns.run(|| {
        http_request(
            "POST",
            PORT,
            "/api/dcim/sites/",
            &headers,
            Some(r#"{"name": "Kube Site", "slug": "kube-site", "status": "active"}"#),
        )
        .unwrap()
    });
    assert_eq!(code, 201, "{body}");

    // Down and up again: the data is on the claims.
    for (_, file) in files[..4].iter().rev() {
        down(&podman, &ns, file, &[]);
    }
    ports_free(&ns, &PORTS);
    assert!(
        ns.run(|| http_request("GET", PORT, "/login/", &[], None))
            .is_err()
    );
    play(&files[4].1);
    wait_ready(
        &podman,
        "the database pod ready again",
        Duration::from_mins(5),
        &[("netbox-database-0-postgresql", "postgresql")],
    );
    play(&files[2].1);
    wait_ready(
        &podman,
        "the web pod ready again",
        Duration::from_mins(10),
        &[
            ("netbox-web-pod-0-web", "web"),
            ("netbox-web-pod-0-nginx", "nginx"),
        ],
    );
    let (code, body) = ns.run(|| {
        http_request(
            "GET",
            PORT,
            "/api/dcim/sites/?slug=kube-site",
            &headers,
            None,
        )
        .unwrap()
    });
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 1, "{body}");

    let auth = restore_the_host_backup(&podman, &ns, (&site, &deploy, &secrets), w, &files);
    let taken = back_up(&podman, &ns, &deploy, &files, &auth);
    // While the host NetBox test may still run: its instance must be gone before the
    // host restore.
    external::the_database_moves_out_of_the_cluster(
        &podman,
        &ns,
        (&site, &deploy, &taken.archive),
        &files,
        &auth,
    );
    restore_on_the_host(&taken, &auth);
}

/// The web pod played while the migration Job runs: its play returns once its init
/// container saw the migrations done.
fn play_web(podman: &Podman, ns: &Netns, file: &Path) {
    let first = podman.run(&["kube", "play", "--network", "host", file.to_str().unwrap()]);
    if !first.status.success() {
        // podman 4.3, loaded, may fail to start a pod's containers after a long init
        // container ("container with given ID already exists"): the pod is played
        // once more, its init containers find the migrations done.
        let said = String::from_utf8_lossy(&first.stderr);
        assert!(said.contains("already exists"), "{said}");
        down(podman, ns, file, &[WEB_PORT, PORT]);
        podman.ok(&["kube", "play", "--network", "host", file.to_str().unwrap()]);
    }
}

/// The restore Job of `restore/test` as a file to play: the ConfigMaps and the Job's
/// pod; checks that the overlay stops every workload.
fn restore_file(deploy: &Path, dir: &Path) -> PathBuf {
    let built = Command::new("kubectl")
        .args(["kustomize"])
        .arg(deploy.join("restore/test"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&built.stdout)).unwrap();
    let mut objects: Vec<Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .cloned()
        .collect();
    for d in &docs {
        if d["kind"] == "Deployment" || d["kind"] == "StatefulSet" {
            assert_eq!(d["spec"]["replicas"], 0, "{d}");
        }
    }
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == "netbox-restore")
        .expect("the restore Job");
    let mut spec = job["spec"]["template"]["spec"].clone();
    for_podman(&mut spec);
    objects.push(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "netbox-restore"}, "spec": spec}));
    own_config_maps(&mut objects, "netbox-restore");
    let path = dir.join("play-netbox-restore.yaml");
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n---\n")).unwrap();
    path
}

/// A backup of the other NetBox test's host instance restored into the deployment by
/// its restore Job, the deployment rendered again with the backup's secrets
/// (`--secrets-from`): the same objects through the API with the host's own API token
/// (its secrets came along: NetBox's token pepper among them), and the same uploaded
/// files on the deployment's volume. The token's `Authorization` header.
#[allow(clippy::print_stderr)] // its timing shown
fn restore_the_host_backup(
    podman: &Podman,
    ns: &Netns,
    (site, deploy, secrets): (&Path, &Path, &Secrets),
    w: &Path,
    files: &[(String, PathBuf)],
) -> String {
    let host = super::host_backup(Duration::from_mins(40));
    // Every workload stopped, as `restore/test` scales them to 0.
    for (_, file) in [&files[2], &files[4]] {
        down(podman, ns, file, &[]);
    }
    ports_free(ns, &PORTS);
    // The host's secrets, for the Secret the workloads come back with.
    render(
        site,
        deploy,
        &[
            "--secrets-from",
            host.archive.to_str().unwrap(),
            "--key",
            host.key.to_str().unwrap(),
        ],
    );
    let pepper = std::fs::read_to_string(deploy.join("base/secrets/api_token_pepper")).unwrap();
    assert!(
        deploy.join("base/secrets-replaced").is_dir(),
        "the deployment's own secrets were not kept"
    );
    write_secrets(podman, deploy, secrets);
    assert_eq!(
        std::fs::read_to_string(mountpoint(podman, "netbox-secrets").join("api_token_pepper"))
            .unwrap(),
        pepper
    );
    // The archive's claim, filled as `kubectl cp` would: the archive, the key file,
    // then `ready`, the pod's user's.
    podman.ok(&["volume", "create", "netbox-restore"]);
    let at = mountpoint(podman, "netbox-restore");
    std::fs::copy(&host.archive, at.join("archive")).unwrap();
    std::fs::copy(&host.key, at.join("key")).unwrap();
    std::fs::write(at.join("ready"), "").unwrap();
    for name in ["", "archive", "key", "ready"] {
        let p = at.join(name);
        nix::unistd::chown(&p, Some(10001.into()), Some(10001.into())).unwrap();
    }
    let restore = restore_file(deploy, w);
    let started = Instant::now();
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "host",
        restore.to_str().unwrap(),
    ]);
    let code = exit_code(podman, "netbox-restore-restore", Duration::from_mins(15));
    let said = logs(podman, "netbox-restore-restore");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("restored netbox 4.7.3"), "{said}");
    eprintln!("the restore Job's pod took {:?}", started.elapsed());
    down(podman, ns, &restore, &[PG_PORT]);

    // The workloads back, on the restored volumes.
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "host",
        files[4].1.to_str().unwrap(),
    ]);
    wait_ready(
        podman,
        "the database pod ready after the restore",
        Duration::from_mins(5),
        &[("netbox-database-0-postgresql", "postgresql")],
    );
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "host",
        files[2].1.to_str().unwrap(),
    ]);
    wait_ready(
        podman,
        "the web pod ready after the restore",
        Duration::from_mins(10),
        &[
            ("netbox-web-pod-0-web", "web"),
            ("netbox-web-pod-0-nginx", "nginx"),
        ],
    );
    // The host's own token: the secrets came with the backup.
    let state = ns.run(|| super::api_state_at(PORT, &host.auth));
    assert_eq!(state, host.state);
    // The host's admin password too: it came with the database.
    ns.run(|| provision_token(&host.password));
    let media = mountpoint(podman, "netbox-data-netbox").join("media");
    assert_eq!(super::contents(&snapshot_tree(&media)), host.media);
    host.auth.clone()
}

/// The way back: a tenant made in the deployment, the backup CronJob's job played
/// while the deployment runs (as a scheduled one would), leaving exactly one archive in
/// its claim, copied off it with what the deployment held; [`restore_on_the_host`]
/// restores it (the secrets come with the archive, NetBox's token pepper among them).
#[allow(clippy::print_stderr)] // its timing shown
fn back_up(
    podman: &Podman,
    ns: &Netns,
    deploy: &Path,
    files: &[(String, PathBuf)],
    auth: &str,
) -> Taken {
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
            Some(r#"{"name": "Kube Tenant", "slug": "kube-tenant"}"#),
        )
        .unwrap()
    });
    assert_eq!(code, 201, "{body}");
    let state = ns.run(|| super::api_state_at(PORT, auth));
    let media = mountpoint(podman, "netbox-data-netbox").join("media");
    let media = super::contents(&snapshot_tree(&media));

    let (_, job) = files.iter().find(|(n, _)| n == "netbox-backup").unwrap();
    let started = Instant::now();
    podman.ok(&["kube", "play", "--network", "host", job.to_str().unwrap()]);
    let code = exit_code(podman, "netbox-backup-backup", Duration::from_mins(10));
    let said = logs(podman, "netbox-backup-backup");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("backed up netbox 4.7.3"), "{said}");
    eprintln!("the backup job's pod took {:?}", started.elapsed());
    podman.ok(&["kube", "down", job.to_str().unwrap()]);
    // The archive, and nothing else: no scratch directory, no partial file.
    let claim = mountpoint(podman, "netbox-backups");
    let left: Vec<String> = std::fs::read_dir(&claim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 1 && left[0].starts_with("netbox-4.7.3-"),
        "{left:?}"
    );
    // Copied off the claim, as `kubectl cp` would, with the deployment's key file.
    let scratch = prefix_dir("k8s-backup");
    let archive = scratch.path().join(&left[0]);
    std::fs::copy(claim.join(&left[0]), &archive).unwrap();
    let key = deploy.join("base/secrets/backup-key");
    Taken {
        _scratch: scratch,
        archive,
        key,
        state,
        media,
    }
}

/// The deployment's backup, copied off its claim, and what the deployment held.
struct Taken {
    _scratch: tempfile::TempDir,
    archive: PathBuf,
    key: PathBuf,
    state: Value,
    media: std::collections::BTreeMap<PathBuf, String>,
}

/// The deployment's backup restored on this machine into a new prefix by `berth
/// restore --key` with the deployment's key file, once the other NetBox test's
/// instance is gone: the same objects through the API with the same token, the same
/// uploaded files.
#[allow(clippy::print_stderr)] // its timing shown
fn restore_on_the_host(taken: &Taken, auth: &str) {
    let Taken {
        archive,
        key,
        state,
        media,
        ..
    } = taken;
    super::host_done(Duration::from_hours(1));
    // The deployment's site config names no `instance` (a cluster has none), so the
    // instance is named after the prefix's directory, as on a machine where NetBox
    // lives in `/var/opt/netbox`; its users' names, `<instance>-<user>`, must fit.
    let dir = prefix_dir("k8s-to-host");
    let prefix = dir.path().join("nb");
    let b = Berth::new(&prefix, &root().join("examples/netbox"));
    // Users named so on this machine by an earlier run are gone before and after.
    let _users = HostUsers::remove();
    let _down = super::Down(Berth::installed(&prefix));
    let started = Instant::now();
    let r = b
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .expect(0);
    assert!(r.stdout.contains("Restored netbox 4.7.3"), "{}", r.stdout);
    eprintln!("the host's restore took {:?}", started.elapsed());
    // The same token works: the secrets came back.
    assert_eq!(&super::api_state_at(PORT, auth), state);
    let restored = snapshot_tree(&prefix.join("data/netbox/media"));
    assert_eq!(&super::contents(&restored), media);
}

/// The users of the instance `nb` the deployment's backup is restored into: they
/// outlive the temporary prefix, so a later run would find them taken.
struct HostUsers;

impl HostUsers {
    const NAMES: [&str; 4] = [
        "nb-netbox",
        "nb-netbox-postgres",
        "nb-netbox-redis",
        "nb-netbox-web",
    ];

    fn remove() -> Self {
        Self::userdel();
        Self
    }

    fn userdel() {
        for name in Self::NAMES {
            let _ = Command::new("userdel")
                .arg(name)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for HostUsers {
    fn drop(&mut self) {
        Self::userdel();
    }
}

/// An API token of the admin's, made by NetBox's provisioning endpoint from the
/// username and password: the `Authorization` header's value.
fn provision_token(password: &str) -> String {
    let body = json!({"username": "admin", "password": password}).to_string();
    let (code, text) = http_request(
        "POST",
        PORT,
        "/api/users/tokens/provision/",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        Some(&body),
    )
    .unwrap();
    assert_eq!(code, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    match (
        v["version"].as_u64(),
        v["key"].as_str(),
        v["token"].as_str(),
    ) {
        (Some(2), Some(key), Some(token)) => format!("Bearer nbt_{key}.{token}"),
        (_, _, Some(token)) => format!("Token {token}"),
        _ => panic!("no token in {text}"),
    }
}
