//! Shared by the target tests: a real sshd on 127.0.0.1, tmpfs mounts, test files.
#![allow(dead_code)] // each test binary uses its own part

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_target::{SshOptions, SshSpec, SshTarget};

/// Says why a test does nothing here; the test then returns.
#[allow(clippy::print_stderr)] // the test harness shows it with --nocapture
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Deterministic, incompressible-looking bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A free TCP port on 127.0.0.1, free when probed and never handed out before in
/// this process: tests run in parallel, and two sshd started at once must not be
/// given the same port.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Records what a progress callback was given.
#[derive(Default)]
pub struct Progress(pub Vec<u64>);

impl Progress {
    pub fn callback(&mut self) -> impl FnMut(u64) + '_ {
        |n| self.0.push(n)
    }

    pub fn first(&self) -> u64 {
        *self.0.first().expect("progress was reported")
    }

    pub fn last(&self) -> u64 {
        *self.0.last().expect("progress was reported")
    }

    pub fn assert_monotonic(&self) {
        assert!(
            self.0.windows(2).all(|w| w[0] <= w[1]),
            "progress went backwards: {:?}",
            self.0
        );
    }
}

/// A small tmpfs, unmounted on drop; `None` where mounting is not allowed.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        if !is_root() {
            return None;
        }
        fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
    }
}

/// A throwaway sshd on 127.0.0.1 with its own host key, client key and known_hosts,
/// killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd, or says why it cannot run here (not root, sshd not installed).
    pub fn start() -> Result<Self, String> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !is_root() {
            return Err("the SSH tests run sshd and need root".to_owned());
        }
        if !sshd.exists() {
            return Err("/usr/sbin/sshd is missing (apt-get install openssh-server)".to_owned());
        }
        let mut dir = tempfile::tempdir().unwrap();
        // Traversable by `nobody`, whose sshd reads the authorized keys file as nobody.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // A space in the key directory checks that paths reach ssh intact.
        let keys = dir.path().join("ssh keys");
        fs::create_dir(&keys).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).unwrap();
        let host_key = keys.join("host_ed25519");
        let identity = keys.join("client_ed25519");
        for key in [&host_key, &identity] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-test", "-f"])
                .arg(key)
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success(), "ssh-keygen failed");
        }
        let authorized = keys.join("authorized_keys");
        fs::copy(identity.with_extension("pub"), &authorized).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        // sshd refuses to start without its privilege separation directory.
        fs::create_dir_all("/run/sshd").unwrap();

        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let known_hosts = keys.join("known hosts");
            fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
            )
            .unwrap();
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {host}\n\
                     AuthorizedKeysFile {auth}\n\
                     StrictModes no\n\
                     PidFile none\n\
                     UsePAM no\n\
                     PermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     Subsystem sftp internal-sftp\n",
                    host = quoted(&host_key),
                    auth = quoted(&authorized),
                ),
            )
            .unwrap();
            let log = dir.path().join("sshd.log");
            let child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("sshd starts");
            let mut server = Self {
                child,
                port,
                dir,
                identity: identity.clone(),
                known_hosts,
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            // Listening, and this sshd is the one listening: something else on the
            // port would answer a connection too (with another host key).
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            while Instant::now() < deadline {
                if server.child.try_wait().unwrap().is_some() {
                    break;
                }
                if server.log().contains(&listening)
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = server.log();
            // Another process may have taken the port: try another one.
            let _ = server.child.kill();
            let _ = server.child.wait();
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
        }
        panic!("sshd did not start: {last_log}");
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub fn options(&self) -> SshOptions {
        SshOptions {
            identity_file: Some(self.identity.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            connect_timeout: Duration::from_secs(5),
            extra: Vec::new(),
        }
    }

    pub fn spec(&self, user: &str, path: &Path) -> SshSpec {
        SshSpec {
            user: Some(user.to_owned()),
            host: "127.0.0.1".to_owned(),
            port: Some(self.port),
            path: path.to_str().unwrap().to_owned(),
        }
    }

    /// A target logged in as root on `path`.
    pub fn target(&self, path: &Path) -> SshTarget {
        SshTarget::new(self.spec("root", path), self.options())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}
