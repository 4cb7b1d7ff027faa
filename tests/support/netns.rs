//! Machines for fleet tests: network namespaces on a private bridge, each with its own
//! address and, when asked, its own sshd; an "admin" namespace that berth runs in.
//!
//! Addresses exist only inside the namespaces this creates (never in the host's, so
//! nothing leaves the machine). The filesystem is shared: each node gets a directory
//! of its own under the lab's. Everything is torn down on drop, also after a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Run;

/// One lab: a switch namespace with a bridge, node namespaces and an admin namespace.
pub struct Lab {
    /// Short prefix of every namespace name.
    pub tag: String,
    /// Where keys, configs and node directories live.
    pub dir: PathBuf,
    /// The nodes, 1-based addresses `.1`, `.2`, ...
    pub nodes: Vec<LabNode>,
    /// The admin's namespace (address `.250`).
    pub admin: String,
    subnet: String,
    sshds: Vec<(usize, Child)>,
}

/// One machine.
pub struct LabNode {
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub address: String,
    /// Its own directory (keys, sshd config, instance prefix).
    pub dir: PathBuf,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// `n` node namespaces and an admin namespace on one bridge, with the admin's key.
    pub fn new(n: usize, dir: &Path) -> Lab {
        // Unique per lab: tests of one process run at once.
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = std::process::id() % 100_000;
        let k = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("bf{id}x{k}");
        // A subnet per process, so labs of tests running at once do not meet.
        let subnet = format!("10.79.{}", id % 200 + 20);
        let lab_dir = dir.join("lab");
        std::fs::create_dir_all(&lab_dir).unwrap();
        let mut lab = Lab {
            admin: format!("{tag}a"),
            tag: tag.clone(),
            dir: lab_dir.clone(),
            nodes: Vec::new(),
            subnet,
            sshds: Vec::new(),
        };
        let sw = format!("{tag}s");
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let plug = |ns: &str, host: u32, port: &str| {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // Both ends are made inside the namespaces: none ever exists in the host's.
            ip(&[
                "link", "add", port, "netns", &sw, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ]);
            ip(&["-n", &sw, "link", "set", port, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", port, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}.{host}/24", lab.subnet),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        };
        plug(&lab.admin.clone(), 250, "p-admin");
        for i in 1..=n {
            let ns = format!("{tag}n{i}");
            plug(&ns, u32::try_from(i).unwrap(), &format!("p-n{i}"));
            let node_dir = lab_dir.join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            lab.nodes.push(LabNode {
                ns,
                address: format!("{}.{i}", lab.subnet),
                dir: node_dir,
            });
        }
        keygen(&lab.identity(), "berth-fleet-test");
        lab
    }

    /// [`Lab::new`] with an sshd started on every node.
    pub fn with_sshds(n: usize, dir: &Path) -> Lab {
        let mut lab = Lab::new(n, dir);
        for i in 1..=n {
            lab.start_sshd(i);
        }
        lab
    }

    /// The highly available shape the fleet tests share: `db-1`..`db-3` (database,
    /// consensus, pooler, cache) on machines 1 to 3, `lb` (the load balancer) on
    /// machine 4, then `more` on the next machines; `site.toml` beside it makes the
    /// load balancer the app's address (port 18080), shared users, then `site_more`.
    /// The fleet file's path.
    pub fn ha_fleet(
        &self,
        dir: &Path,
        name: &str,
        more: &[(&str, &str)],
        site_more: &str,
    ) -> PathBuf {
        let db = "\"database\", \"consensus\", \"pooler\", \"cache\"";
        std::fs::write(
            dir.join("site.toml"),
            format!(
                "users = \"shared\"\nexternal_url = \"http://{}:18080/\"\n{site_more}",
                self.nodes[3].address
            ),
        )
        .unwrap();
        let mut nodes = vec![
            ("db-1", db),
            ("db-2", db),
            ("db-3", db),
            ("lb", "\"load-balancer\""),
        ];
        nodes.extend_from_slice(more);
        self.fleet_file(dir, name, &nodes)
    }

    /// Every process of node `i`'s (0-based) namespace but its sshd, killed at once
    /// (SIGKILL): a machine that dies. How many were killed.
    pub fn crash(&self, i: usize) -> usize {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.nodes[i].ns])
            .output()
            .unwrap();
        let mut killed = 0;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                continue;
            }
            if let Ok(pid) = pid.parse::<i32>()
                && nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
            {
                killed += 1;
            }
        }
        killed
    }

    /// Each node's instance prefix (`instance` in its own directory).
    pub fn prefixes(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.dir.join("instance")).collect()
    }

    /// Writes `fleet.toml` in `dir` for fleet `name`: node `i` (0-based) of `nodes`
    /// (`(name, roles)`, roles as TOML array items) is the lab's machine `i + 1` with its
    /// prefix ([`Lab::prefixes`]); every machine's host key is in `known_hosts`, the
    /// shared site config is `site.toml`, and berth is this build's. Its path.
    pub fn fleet_file(&self, dir: &Path, name: &str, nodes: &[(&str, &str)]) -> PathBuf {
        use std::fmt::Write as _;
        let mut text = format!(
            "[fleet]\nname = \"{name}\"\nidentity = \"{}\"\nknown_hosts = \"known_hosts\"\n\
             site = \"site.toml\"\nberth = \"{}\"\nconnect_timeout = \"2s\"\n",
            self.identity().display(),
            crate::berth_bin().display()
        );
        let prefixes = self.prefixes();
        for (i, (node, roles)) in nodes.iter().enumerate() {
            let _ = write!(
                text,
                "\n[nodes.{node}]\naddress = \"{}\"\nroles = [{roles}]\nprefix = \"{}\"\n",
                self.nodes[i].address,
                prefixes[i].display()
            );
        }
        let path = dir.join("fleet.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            (1..=nodes.len())
                .map(|i| self.known_host(i))
                .collect::<String>(),
        )
        .unwrap();
        path
    }

    /// An address in the lab's subnet that no machine has.
    pub fn nobody(&self) -> String {
        format!("{}.99", self.subnet)
    }

    /// The admin's private key.
    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// Node `i`'s (1-based) host public key line (`ssh-ed25519 AAAA…`).
    pub fn host_key(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i - 1].dir.join("ssh_host_ed25519_key.pub"))
            .unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A known_hosts line for node `i` with the key it really has.
    pub fn known_host(&self, i: usize) -> String {
        format!("{} {}\n", self.nodes[i - 1].address, self.host_key(i))
    }

    /// Starts an sshd on node `i` (1-based) that lets the admin's key in as root.
    pub fn start_sshd(&mut self, i: usize) {
        let node = &self.nodes[i - 1];
        let d = &node.dir;
        if !d.join("ssh_host_ed25519_key").exists() {
            keygen(&d.join("ssh_host_ed25519_key"), &node.ns);
        }
        std::fs::copy(
            self.identity().with_extension("pub"),
            d.join("authorized_keys"),
        )
        .unwrap();
        // StrictModes off: the lab lives under /tmp, which is world-writable (sticky),
        // and sshd would refuse keys below it.
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress {addr}\nPort 22\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nAuthorizedKeysFile {d}/authorized_keys\n\
                 StrictModes no\nLogLevel ERROR\n",
                addr = node.address,
                d = d.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory is compiled in and shared by all.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.ns,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        self.sshds.push((i, child));
        // Ready once it accepts a connection on port 22.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = self.exec_in(
                &self.admin,
                &[
                    "bash",
                    "-c",
                    &format!("exec 3<>/dev/tcp/{}/22", self.nodes[i - 1].address),
                ],
            );
            if probe.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "sshd on node {i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `argv` in namespace `ns`.
    pub fn exec_in(&self, ns: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .unwrap()
    }

    /// Runs berth in the admin's namespace.
    pub fn berth(&self, args: &[&str]) -> Run {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.admin])
            .arg(crate::berth_bin())
            .args(args)
            .env_remove("BERTH_PREFIX")
            .env_remove("BERTH_MANIFEST")
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_FLEET")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A client asking `url` every 50 ms until its stop file exists; prints
/// `<status> <version>` per request (`000` when it got no answer), the version read
/// from the JSON answer's `key`.
const CLIENT: &str = r#"
import json, os, sys, time, urllib.request, urllib.error
url, stop, key = sys.argv[1], sys.argv[2], sys.argv[3]
headers = dict(h.split(": ", 1) for h in sys.argv[4:])
while not os.path.exists(stop):
    try:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=3) as r:
            print(r.status, json.loads(r.read())[key], flush=True)
    except urllib.error.HTTPError as e:
        print(e.code, "-", flush=True)
    except Exception as e:
        print("000", type(e).__name__, flush=True)
    time.sleep(0.05)
"#;

/// A client in a namespace (the test's own when `None`) counting what a service
/// answers while something changes under it.
pub struct Client {
    child: Option<Child>,
    stop: PathBuf,
}

impl Client {
    /// Starts asking `url` (with `headers`, `Name: value`); each answer's version is
    /// its JSON's `key`. `dir` holds the stop file.
    pub fn start(ns: Option<&str>, url: &str, key: &str, headers: &[&str], dir: &Path) -> Client {
        let stop = dir.join("client.stop");
        let _ = std::fs::remove_file(&stop);
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        let child = cmd
            .args(["-c", CLIENT, url])
            .arg(&stop)
            .arg(key)
            .args(headers)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Client {
            child: Some(child),
            stop,
        }
    }

    /// Stops it: every answer (status, version), in order.
    pub fn finish(mut self) -> Vec<(String, String)> {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(c, v)| (c.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// The berth instances of a lab's nodes, by prefix: stopped when this is dropped (put
/// it where it drops before the [`Lab`], so they stop while their namespaces exist).
pub struct Instances(pub Vec<PathBuf>);

impl Drop for Instances {
    fn drop(&mut self) {
        for prefix in &self.0 {
            if prefix.join("site.toml").exists() {
                let _ = Command::new(crate::berth_bin())
                    .arg("--prefix")
                    .arg(prefix)
                    .arg("down")
                    .output();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.sshds {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `ip netns exec` leaves sshd as the child's child: kill by pid file too.
        for n in &self.nodes {
            if let Ok(pid) = std::fs::read_to_string(n.dir.join("sshd.pid"))
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let mut names: Vec<String> = self.nodes.iter().map(|n| n.ns.clone()).collect();
        names.push(self.admin.clone());
        names.push(format!("{}s", self.tag));
        for ns in names {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}
