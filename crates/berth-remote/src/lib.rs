//! Running commands on the nodes of a fleet over SSH.
//!
//! berth uses the system's OpenSSH client, never an SSH implementation of its own,
//! and gives it everything on its command line so nothing else decides: `-F
//! /dev/null` (no user or system config), batch mode (no prompt ever), only the
//! fleet's key (`IdentitiesOnly`), only the fleet's `known_hosts` with
//! `StrictHostKeyChecking=yes` (a node whose key is unknown or changed is refused,
//! never learnt), a connect timeout and keep-alives. The remote command is quoted
//! for the remote shell word by word. Failures are told apart from ssh's own exit
//! status and message: unreachable, host key unknown or changed, login refused.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The OpenSSH client.
pub const SSH: &str = "/usr/bin/ssh";

/// One machine and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node's name, for messages.
    pub name: String,
    /// The user to log in as.
    pub user: String,
    /// Its address (an IP address or a host name already checked not to look like
    /// an option).
    pub address: String,
    /// Its SSH port.
    pub port: u16,
    /// The private key.
    pub identity: PathBuf,
    /// The known hosts file holding its key.
    pub known_hosts: PathBuf,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
}

/// What a remote command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit status (ssh passes the remote command's own through).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, without ssh's own connection messages.
    pub stderr: String,
    /// How long it took, connection included.
    pub took: Duration,
}

/// Why a node could not be reached or a command not run there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No connection: no route, refused, timed out, name unknown.
    #[error("node `{node}` ({address}) cannot be reached: {why}")]
    Unreachable {
        /// The node.
        node: String,
        /// Its address and port.
        address: String,
        /// ssh's own words.
        why: String,
    },
    /// The fleet's known hosts file has no key for the node.
    #[error("node `{node}` ({address}) has no host key in the fleet's known hosts file")]
    UnknownHostKey {
        /// The node.
        node: String,
        /// Its address and port.
        address: String,
    },
    /// The node answered with another key than the one recorded.
    #[error(
        "node `{node}` ({address}) answered with a different host key than the fleet's known hosts file records"
    )]
    ChangedHostKey {
        /// The node.
        node: String,
        /// Its address and port.
        address: String,
    },
    /// The node refused the login.
    #[error("node `{node}` ({address}) refused the login as `{user}`: {why}")]
    LoginRefused {
        /// The node.
        node: String,
        /// Its address and port.
        address: String,
        /// The user.
        user: String,
        /// ssh's own words.
        why: String,
    },
    /// ssh itself could not be started or failed otherwise.
    #[error("ssh to node `{node}` failed: {why}")]
    Ssh {
        /// The node.
        node: String,
        /// What happened.
        why: String,
    },
}

impl RemoteError {
    /// A few words for a table: `unreachable`, `host key unknown`, …
    pub fn short(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::UnknownHostKey { .. } => "host key unknown",
            Self::ChangedHostKey { .. } => "HOST KEY CHANGED",
            Self::LoginRefused { .. } => "login refused",
            Self::Ssh { .. } => "ssh failed",
        }
    }

    /// What the administrator can do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::Unreachable { .. } => {
                "check the node's address and `ssh_port` in the fleet file, that it is up, and that \
                 its sshd listens there"
                    .to_owned()
            }
            Self::UnknownHostKey { address, .. } => format!(
                "add the node's host key to the fleet's known hosts file, after checking it on the \
                 node itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there; the entry \
                 is `{address} ssh-ed25519 AAAA…`)"
            ),
            Self::ChangedHostKey { .. } => {
                "someone may be in the middle, or the node was reinstalled: find out which on the \
                 node itself before replacing its entry in the known hosts file"
                    .to_owned()
            }
            Self::LoginRefused { .. } => {
                "put the fleet's public key in the user's authorized_keys on the node".to_owned()
            }
            Self::Ssh { .. } => format!("check that the OpenSSH client is installed at {SSH}"),
        }
    }
}

/// `word` quoted for a POSIX shell: the remote side runs the command through its
/// user's shell, so every word goes as one single-quoted word.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

impl Target {
    /// `address:port`, bracketed for IPv6, for messages.
    pub fn shown_address(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// ssh's arguments up to and including the destination.
    pub fn ssh_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut opt = |k: &str, v: &str| {
            a.push("-o".into());
            a.push(format!("{k}={v}").into());
        };
        opt("BatchMode", "yes");
        opt("StrictHostKeyChecking", "yes");
        opt(
            "UserKnownHostsFile",
            &self.known_hosts.display().to_string(),
        );
        opt("GlobalKnownHostsFile", "/dev/null");
        opt("UpdateHostKeys", "no");
        opt("IdentitiesOnly", "yes");
        opt("IdentityFile", &self.identity.display().to_string());
        opt(
            "ConnectTimeout",
            &self.connect_timeout.as_secs().max(1).to_string(),
        );
        opt("ServerAliveInterval", "5");
        opt("ServerAliveCountMax", "3");
        opt("ControlMaster", "no");
        opt("ControlPath", "none");
        opt("ForwardAgent", "no");
        opt("ForwardX11", "no");
        opt("PermitLocalCommand", "no");
        opt("ProxyCommand", "none");
        opt("LogLevel", "ERROR");
        let mut out: Vec<OsString> = vec!["-F".into(), "/dev/null".into(), "-T".into()];
        out.extend(a);
        out.push("-p".into());
        out.push(self.port.to_string().into());
        out.push("-l".into());
        out.push(self.user.clone().into());
        out.push("--".into());
        out.push(self.address.clone().into());
        out
    }

    /// Runs `argv` on the node (each word quoted for its shell), with `stdin` fed to
    /// it, and waits for it.
    ///
    /// # Errors
    ///
    /// [`RemoteError`] when ssh could not connect, the host key is unknown or
    /// changed, or the login was refused; the command's own failure is an
    /// [`Output`] with its exit status.
    pub fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, RemoteError> {
        let started = Instant::now();
        let remote: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
        let mut cmd = berth_process::ChildCommand::new(SSH);
        cmd.args(self.ssh_args()).arg(remote.join(" "));
        let fail = |why: String| RemoteError::Ssh {
            node: self.name.clone(),
            why,
        };
        let mut command = cmd.build().map_err(|e| fail(e.to_string()))?;
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| fail(format!("{SSH}: {e}")))?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A remote command that stops reading early is its own failure to report.
            let _ = pipe.write_all(bytes);
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let code = out.status.code().unwrap_or(255);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if code == 255
            && let Some(e) = self.classify(&stderr)
        {
            return Err(e);
        }
        Ok(Output {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            took: started.elapsed(),
        })
    }

    /// ssh's own failure, from its message (exit status 255 is also a remote
    /// command's, so only a message ssh writes counts).
    fn classify(&self, stderr: &str) -> Option<RemoteError> {
        let node = self.name.clone();
        let address = self.shown_address();
        let line = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .to_owned();
        if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("Host key for") && stderr.contains("has changed")
        {
            return Some(RemoteError::ChangedHostKey { node, address });
        }
        if stderr.contains("Host key verification failed")
            || stderr.contains("No ED25519 host key is known")
            || stderr.contains("host key is known for")
        {
            return Some(RemoteError::UnknownHostKey { node, address });
        }
        if stderr.contains("Permission denied") {
            return Some(RemoteError::LoginRefused {
                node,
                address,
                user: self.user.clone(),
                why: line,
            });
        }
        for marker in [
            "Connection timed out",
            "Connection refused",
            "No route to host",
            "Network is unreachable",
            "Could not resolve hostname",
            "Connection closed by",
            "Connection reset",
            "connect to host",
        ] {
            if stderr.contains(marker) {
                return Some(RemoteError::Unreachable {
                    node,
                    address,
                    why: line,
                });
            }
        }
        None
    }
}

/// Runs `f` for every target at once (at most `parallel` at a time) and returns the
/// results in the targets' order.
pub fn each<T, F>(targets: &[Target], parallel: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(&Target) -> T + Sync,
{
    let parallel = parallel.max(1);
    let mut out: Vec<Option<T>> = Vec::new();
    out.resize_with(targets.len(), || None);
    for (chunk_targets, chunk_out) in targets.chunks(parallel).zip(out.chunks_mut(parallel)) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk_targets.iter().map(|t| s.spawn(|| f(t))).collect();
            for (slot, h) in chunk_out.iter_mut().zip(handles) {
                *slot = h.join().ok();
            }
        });
    }
    out.into_iter()
        .map(|o| o.expect("a node's thread panicked"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("/usr/local/bin/berth"), "/usr/local/bin/berth");
        assert_eq!(shell_quote("--prefix=/var/opt/x"), "--prefix=/var/opt/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("a;b|c&d`e`"), "'a;b|c&d`e`'");
    }

    #[test]
    fn ssh_gets_no_config_but_its_own_and_the_destination_last() {
        let t = Target {
            name: "db-1".into(),
            user: "root".into(),
            address: "10.0.0.1".into(),
            port: 2222,
            identity: "/k/id".into(),
            known_hosts: "/k/known_hosts".into(),
            connect_timeout: Duration::from_secs(5),
        };
        let args: Vec<String> = t
            .ssh_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..3], ["-F", "/dev/null", "-T"]);
        for o in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/k/known_hosts",
            "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "IdentityFile=/k/id",
            "ConnectTimeout=5",
            "ProxyCommand=none",
        ] {
            assert!(args.iter().any(|a| a == o), "{o} missing from {args:?}");
        }
        assert_eq!(
            &args[args.len() - 6..],
            ["-p", "2222", "-l", "root", "--", "10.0.0.1"]
        );
        assert_eq!(t.shown_address(), "10.0.0.1:2222");
    }

    #[test]
    fn each_keeps_the_order() {
        let targets: Vec<Target> = (0..7)
            .map(|i| Target {
                name: format!("n{i}"),
                user: "root".into(),
                address: "h".into(),
                port: 22,
                identity: "/i".into(),
                known_hosts: "/k".into(),
                connect_timeout: Duration::from_secs(1),
            })
            .collect();
        let names = each(&targets, 3, |t| t.name.clone());
        assert_eq!(names, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
    }
}
