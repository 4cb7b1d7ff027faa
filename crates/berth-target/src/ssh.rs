//! A target on an SSH server, driven through the system's OpenSSH `sftp` client.
//!
//! Every operation is one `sftp -b -` run with its commands on standard input, so it
//! works for SFTP-only accounts (no remote shell is needed) and never prompts:
//! `BatchMode=yes` makes ssh fail instead of asking for a password or a host key.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::local::{DownloadError, finish_download, partial_path};
use crate::{
    ARCHIVE_SUFFIX, PARTIAL_SUFFIX, RemoteEntry, Space, SshSpec, Target, TargetError, validate_name,
};

const SFTP: &str = "sftp";

/// How often a running transfer is checked for completion and progress.
const TICK: Duration = Duration::from_millis(50);

/// How often the remote size of an upload is polled for progress.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Uploads smaller than this report progress only at start and end: a second
/// connection to poll their size would cost more than it tells.
const POLL_THRESHOLD: u64 = 16 << 20;

/// How ssh is run: which key, which known hosts, how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Private key to log in with (`-i`, with `IdentitiesOnly=yes`); `None` leaves it
    /// to ssh's config and agent.
    pub identity_file: Option<PathBuf>,
    /// Known hosts file to check the server's key against; `None` uses ssh's default
    /// files. Either way the key is checked (`StrictHostKeyChecking=yes`, always).
    pub known_hosts: Option<PathBuf>,
    /// TCP connect timeout (`ConnectTimeout`, whole seconds, at least one).
    pub connect_timeout: Duration,
    /// More ssh options, each passed as `-o OPTION` (`"Compression=yes"`). They come
    /// after `BatchMode=yes` and `StrictHostKeyChecking=yes` and before berth's other
    /// defaults, so they can override everything but batch mode and host key checking.
    pub extra: Vec<String>,
}

impl Default for SshOptions {
    fn default() -> Self {
        Self {
            identity_file: None,
            known_hosts: None,
            connect_timeout: Duration::from_secs(10),
            extra: Vec::new(),
        }
    }
}

/// A directory on an SSH server, reached with `sftp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    spec: SshSpec,
    options: SshOptions,
}

/// One finished `sftp` run.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> bool {
        self.status.success()
    }

    /// Output lines of the batch command that starts with `command`.
    fn output_of(&self, command: &str) -> Vec<&str> {
        sections(&self.stdout)
            .into_iter()
            .find(|(cmd, _)| cmd.starts_with(command))
            .map(|(_, lines)| lines)
            .unwrap_or_default()
    }
}

impl SshTarget {
    /// A target for `spec`; nothing is contacted until a method is called.
    pub fn new(spec: SshSpec, options: SshOptions) -> Self {
        Self { spec, options }
    }

    /// The remote directory.
    pub fn spec(&self) -> &SshSpec {
        &self.spec
    }

    /// The `-o` options given to ssh, in order (ssh keeps the first value of each).
    fn ssh_options(&self) -> Vec<String> {
        // Host keys are always checked: an unknown or changed key is refused, never
        // accepted on first use. First, so nothing after can turn it off.
        let mut options = vec![
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
        ];
        options.extend(self.options.extra.iter().cloned());
        options.push(format!(
            "ConnectTimeout={}",
            self.options.connect_timeout.as_secs().max(1)
        ));
        // A dead connection during a long transfer fails in about a minute instead of hanging.
        options.push("ServerAliveInterval=15".to_owned());
        options.push("ServerAliveCountMax=4".to_owned());
        if self.options.identity_file.is_some() {
            options.push("IdentitiesOnly=yes".to_owned());
        }
        if let Some(known_hosts) = &self.options.known_hosts {
            options.push(format!(
                "UserKnownHostsFile={}",
                ssh_config_value(&known_hosts.to_string_lossy())
            ));
        }
        if let Some(user) = &self.spec.user {
            options.push(format!("User={}", ssh_config_value(user)));
        }
        options
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(SFTP);
        cmd.args(["-b", "-"]);
        for option in self.ssh_options() {
            cmd.arg("-o").arg(option);
        }
        if let Some(identity) = &self.options.identity_file {
            cmd.arg("-i").arg(identity);
        }
        if let Some(port) = self.spec.port {
            cmd.arg("-P").arg(port.to_string());
        }
        // The user goes in `-o User=` so that nothing in it is read as part of the host.
        if self.spec.host.contains(':') {
            cmd.arg(format!("[{}]", self.spec.host));
        } else {
            cmd.arg(&self.spec.host);
        }
        // UTC and the C locale make `ls -l` dates parseable.
        cmd.env("TZ", "UTC").env("LC_ALL", "C");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs one batch, calling `tick` every [`TICK`] until sftp exits.
    fn run(&self, script: &str, tick: &mut dyn FnMut()) -> Result<Run, TargetError> {
        let mut child = self
            .command()
            .spawn()
            .map_err(|source| TargetError::Spawn {
                program: SFTP.to_owned(),
                source,
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let script = script.to_owned();
        // sftp reads its batch only once connected; a thread keeps a long batch from
        // blocking us on a full pipe meanwhile.
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {
                    tick();
                    thread::sleep(TICK);
                }
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(TargetError::Io {
                        target: self.describe(),
                        context: "waiting for sftp".to_owned(),
                        source,
                    });
                }
            }
        };
        let _ = writer.join();
        Ok(Run {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    fn run_quiet(&self, script: &str) -> Result<Run, TargetError> {
        self.run(script, &mut || {})
    }

    /// Turns a failed run into the most specific error its messages allow.
    fn failure(&self, action: &str, run: &Run) -> TargetError {
        let target = self.describe();
        let mut message = clean_stderr(&run.stderr);
        if message.is_empty() {
            message = format!("sftp {}", run.status);
        }
        // sftp exits 255 when the connection fails or breaks, 1 when a command fails.
        if run.status.code() == Some(255) {
            return TargetError::Connection { target, message };
        }
        let failed = last_command(&run.stdout).unwrap_or_default();
        if failed.starts_with("cd ") {
            if message.contains("No such file") {
                return TargetError::MissingDirectory { target };
            }
            if message.contains("not a directory") {
                return TargetError::NotADirectory { target };
            }
        }
        if message.contains("Permission denied") {
            return TargetError::PermissionDenied { target, message };
        }
        TargetError::Remote {
            target,
            action: action.to_owned(),
            message,
        }
    }

    /// The directory as an sftp argument.
    fn dir_arg(&self) -> String {
        if self.spec.path.is_empty() {
            ".".to_owned()
        } else {
            sftp_arg(&self.spec.path)
        }
    }

    fn cd(&self) -> String {
        format!("cd {}\n", self.dir_arg())
    }

    /// Every regular file in the directory, `.partial` ones included.
    fn raw_list(&self) -> Result<Vec<LsEntry>, TargetError> {
        let run = self.run_quiet(&format!("{}ls -ln\n", self.cd()))?;
        if !run.ok() {
            return Err(self.failure("listing", &run));
        }
        let now = Timestamp::now();
        Ok(run
            .output_of("ls ")
            .into_iter()
            .filter_map(|line| parse_ls_line(line, now))
            .filter(|entry| entry.kind == '-')
            .collect())
    }

    /// Free bytes in the directory, if the server supports `statvfs@openssh.com`.
    fn free_space(&self) -> Result<Option<u64>, TargetError> {
        // `-df`: a server without the extension is not an error, just no answer.
        let run = self.run_quiet(&format!("{}-df\n", self.cd()))?;
        if !run.ok() {
            return Err(self.failure("reading free space", &run));
        }
        Ok(parse_df(&run.output_of("-df")))
    }

    /// Creates the directory and any missing parents, the last with mode 0700.
    fn create_dir(&self) -> Result<(), TargetError> {
        use std::fmt::Write as _;
        let path = &self.spec.path;
        let mut script = String::new();
        let mut prefix = if path.starts_with('/') {
            "/".to_owned()
        } else {
            String::new()
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            prefix.push_str(part);
            if i + 1 < parts.len() {
                // Parents may exist already; only the last mkdir must succeed.
                let _ = writeln!(script, "-mkdir {}", sftp_arg(&prefix));
                prefix.push('/');
            }
        }
        let dir = self.dir_arg();
        let _ = write!(script, "mkdir {dir}\nchmod 700 {dir}\n");
        let mut run = self.run_quiet(&script)?;
        if run.ok() {
            return Ok(());
        }
        if run.status.code() != Some(255) {
            // The batch stops at the first failure that counts, which sftp reports last;
            // the ignored ones before it are parents that exist already.
            run.stderr = run
                .stderr
                .trim_end()
                .lines()
                .last()
                .unwrap_or("")
                .to_owned();
        }
        Err(self.failure("creating the directory", &run))
    }

    /// Runs `upload_cmd` (a `put` or `reput` into `partial`, starting at `start` of
    /// `size` bytes) followed by an `ls` of `partial`, reporting the remote size as it
    /// grows for large files.
    fn upload(
        &self,
        partial: &str,
        upload_cmd: &str,
        (start, size): (u64, u64),
        progress: &mut dyn FnMut(u64),
    ) -> Result<Run, TargetError> {
        let script = format!("{}{upload_cmd}\nls -ln {}\n", self.cd(), sftp_arg(partial));
        let poller = if size - start >= POLL_THRESHOLD {
            let path = format!("{}/{}", self.dir_arg(), sftp_arg(partial));
            SizePoller::start(self, &path)
        } else {
            None
        };
        let mut last = start;
        let mut tick = || {
            // Sizes outside the range are a stale partial about to be replaced.
            if let Some(now) = poller.as_ref().and_then(SizePoller::latest)
                && now > last
                && now <= size
            {
                last = now;
                progress(now);
            }
        };
        self.run(&script, &mut tick)
    }

    /// [`Self::upload`], then the partial's size as sftp lists it; a failure on a
    /// target that has run out of space becomes [`TargetError::Full`] and removes the
    /// partial.
    fn upload_checked(
        &self,
        name: &str,
        partial: &str,
        upload_cmd: &str,
        (start, size): (u64, u64),
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, TargetError> {
        let run = self.upload(partial, upload_cmd, (start, size), progress)?;
        if !run.ok() {
            let error = self.failure("upload", &run);
            if matches!(error, TargetError::Remote { .. })
                && let Ok(Some(free)) = self.free_space()
                && free < size - start
            {
                // Best effort: the full target is the error to report, not this cleanup.
                let _ = self.run_quiet(&format!("{}-rm {}\n", self.cd(), sftp_arg(partial)));
                return Err(TargetError::Full {
                    target: self.describe(),
                    name: name.to_owned(),
                });
            }
            return Err(error);
        }
        let now = Timestamp::now();
        Ok(run
            .output_of("ls ")
            .into_iter()
            .find_map(|line| parse_ls_line(line, now))
            .map_or(0, |e| e.size))
    }
}

impl Target for SshTarget {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    fn check(&self, needed: Option<u64>) -> Result<Space, TargetError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let probe = format!(".berth-check-{}-{nanos}", std::process::id());
        // Making a directory is the cheapest proof of write access that SFTP offers.
        let script = format!("{}mkdir {probe}\nrmdir {probe}\n-df\n", self.cd());
        let mut run = self.run_quiet(&script)?;
        if !run.ok() {
            match self.failure("checking the directory", &run) {
                TargetError::MissingDirectory { .. } => {
                    self.create_dir()?;
                    run = self.run_quiet(&script)?;
                    if !run.ok() {
                        return Err(self.failure("checking the directory", &run));
                    }
                }
                e => return Err(e),
            }
        }
        let free = parse_df(&run.output_of("-df"));
        if let (Some(needed), Some(free)) = (needed, free)
            && needed > free
        {
            return Err(TargetError::NotEnoughSpace {
                target: self.describe(),
                needed,
                free,
            });
        }
        Ok(Space { free })
    }

    fn list(&self) -> Result<Vec<RemoteEntry>, TargetError> {
        let mut entries: Vec<RemoteEntry> = self
            .raw_list()?
            .into_iter()
            .filter(|e| e.name.ends_with(ARCHIVE_SUFFIX))
            .map(|e| RemoteEntry {
                name: e.name,
                size: e.size,
                modified: e.modified,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn put(
        &self,
        local: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        validate_name(name)?;
        let local_arg = self.local_arg(local)?;
        let size = crate::local::source_size(local).map_err(|source| TargetError::Io {
            target: self.describe(),
            context: format!("reading {}", local.display()),
            source,
        })?;
        let partial = format!("{name}{PARTIAL_SUFFIX}");
        let entries = self.raw_list()?;
        if entries.iter().any(|e| e.name == name) {
            return Err(self.exists(name));
        }
        let existing = entries.iter().find(|e| e.name == partial).map(|e| e.size);
        // `reput` appends after the remote size, trusting that the partial is a prefix
        // of the same file: archive names carry their creation time, so a partial of
        // the same name is an interrupted upload of this very archive.
        let (upload_cmd, start) = match existing {
            Some(done) if done == size => (None, size),
            Some(done) if done < size => (
                Some(format!("reput -f {local_arg} {}", sftp_arg(&partial))),
                done,
            ),
            Some(_) => (
                Some(format!(
                    "rm {p}\nput -f {local_arg} {p}",
                    p = sftp_arg(&partial)
                )),
                0,
            ),
            None => (
                Some(format!("put -f {local_arg} {}", sftp_arg(&partial))),
                0,
            ),
        };
        progress(start);
        let uploaded = match &upload_cmd {
            // A complete partial: an earlier upload stopped just before its rename.
            None => size,
            Some(cmd) => self.upload_checked(name, &partial, cmd, (start, size), progress)?,
        };
        if uploaded != size {
            return Err(TargetError::SizeMismatch {
                target: self.describe(),
                name: name.to_owned(),
                expected: size,
                actual: uploaded,
            });
        }
        // `rename -l` uses the protocol's own rename, which never replaces an existing
        // file (OpenSSH links then unlinks), unlike the posix-rename extension.
        let run = self.run_quiet(&format!(
            "{}rename -l {} {}\n",
            self.cd(),
            sftp_arg(&partial),
            sftp_arg(name)
        ))?;
        if !run.ok() {
            let error = self.failure("renaming the upload into place", &run);
            if matches!(error, TargetError::Remote { .. })
                && self.raw_list()?.iter().any(|e| e.name == name)
            {
                return Err(self.exists(name));
            }
            return Err(error);
        }
        progress(size);
        Ok(())
    }

    fn get(
        &self,
        name: &str,
        local: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        validate_name(name)?;
        let local_io = |context: String| {
            move |source: io::Error| TargetError::Io {
                target: self.describe(),
                context,
                source,
            }
        };
        let local = std::path::absolute(local)
            .map_err(local_io(format!("resolving {}", local.display())))?;
        if local
            .try_exists()
            .map_err(local_io(format!("looking for {}", local.display())))?
        {
            return Err(TargetError::LocalExists { path: local });
        }
        let partial = partial_path(&local);
        let partial_arg = self.local_arg(&partial)?;
        let size = self
            .raw_list()?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| TargetError::NotFound {
                target: self.describe(),
                name: name.to_owned(),
            })?
            .size;

        let write_context = || format!("writing {}", partial.display());
        // Created here with mode 0600 so that sftp, which copies the remote mode on
        // creation, never makes it readable by others.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&partial)
            .map_err(local_io(write_context()))?;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(local_io(write_context()))?;
        let mut done = file.metadata().map_err(local_io(write_context()))?.len();
        if done > size {
            file.set_len(0).map_err(local_io(write_context()))?;
            done = 0;
        }
        progress(done);
        if done < size {
            let script = format!("{}reget -f {} {partial_arg}\n", self.cd(), sftp_arg(name));
            let mut tick = || {
                if let Ok(meta) = fs::metadata(&partial) {
                    progress(meta.len());
                }
            };
            let run = self.run(&script, &mut tick)?;
            if !run.ok() {
                return Err(self.failure("download", &run));
            }
        }
        let got = fs::metadata(&partial)
            .map_err(local_io(write_context()))?
            .len();
        if got != size {
            return Err(TargetError::SizeMismatch {
                target: self.describe(),
                name: name.to_owned(),
                expected: size,
                actual: got,
            });
        }
        file.sync_all().map_err(local_io(write_context()))?;
        drop(file);
        finish_download(&partial, &local).map_err(|e| match e {
            DownloadError::Exists => TargetError::LocalExists {
                path: local.clone(),
            },
            DownloadError::Read(e) | DownloadError::Write(e) => {
                local_io(format!("renaming into {}", local.display()))(e)
            }
        })?;
        progress(size);
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), TargetError> {
        validate_name(name)?;
        let run = self.run_quiet(&format!("{}rm {}\n", self.cd(), sftp_arg(name)))?;
        if run.ok() {
            return Ok(());
        }
        let error = self.failure("deleting", &run);
        let missing = matches!(&error, TargetError::Remote { message, .. } if message.contains("No such file"));
        if missing {
            return Err(TargetError::NotFound {
                target: self.describe(),
                name: name.to_owned(),
            });
        }
        Err(error)
    }

    fn local_path(&self, _name: &str) -> Option<PathBuf> {
        None
    }
}

impl SshTarget {
    fn exists(&self, name: &str) -> TargetError {
        TargetError::AlreadyExists {
            target: self.describe(),
            name: name.to_owned(),
        }
    }

    /// A local path as an sftp argument: absolute (so it never reads as an option)
    /// and on one line.
    fn local_arg(&self, local: &Path) -> Result<String, TargetError> {
        let io = |context: String, source: io::Error| TargetError::Io {
            target: self.describe(),
            context,
            source,
        };
        let absolute = std::path::absolute(local)
            .map_err(|e| io(format!("resolving {}", local.display()), e))?;
        match absolute.to_str() {
            Some(text) if !text.chars().any(char::is_control) => Ok(sftp_arg(text)),
            _ => Err(io(
                format!("using {}", local.display()),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "sftp cannot take a path that is not UTF-8 or has control characters",
                ),
            )),
        }
    }
}

/// A second sftp connection that polls the size of a remote file while an upload runs,
/// since sftp shows no progress when its output is not a terminal.
struct SizePoller {
    child: Child,
    thread: Option<thread::JoinHandle<()>>,
    sizes: mpsc::Receiver<u64>,
    stop: Option<mpsc::Sender<()>>,
}

impl SizePoller {
    /// Starts polling `path` (an sftp argument); `None` if sftp cannot be started,
    /// progress then comes only at start and end.
    fn start(target: &SshTarget, path: &str) -> Option<Self> {
        let mut child = target.command().stderr(Stdio::null()).spawn().ok()?;
        let mut stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let (size_tx, sizes) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        // `pwd` after each `ls` marks where that answer ends.
        let request = format!("-ls -ln {path}\npwd\n");
        let thread = thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                if stdin.write_all(request.as_bytes()).is_err() {
                    return;
                }
                loop {
                    let Some(Ok(line)) = lines.next() else {
                        return;
                    };
                    if line.starts_with("Remote working directory") {
                        break;
                    }
                    if let Some(entry) = parse_ls_line(&line, Timestamp::now())
                        && size_tx.send(entry.size).is_err()
                    {
                        return;
                    }
                }
                if !matches!(
                    stop_rx.recv_timeout(POLL_EVERY),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            }
        });
        Some(Self {
            child,
            thread: Some(thread),
            sizes,
            stop: Some(stop),
        })
    }

    /// The latest size seen since the last call.
    fn latest(&self) -> Option<u64> {
        self.sizes.try_iter().last()
    }
}

impl Drop for SizePoller {
    fn drop(&mut self) {
        self.stop.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// An sftp batch argument that means exactly `text`. sftp splits on whitespace,
/// honours quotes and backslashes, and expands globs in some arguments (`put`, `rm`,
/// `ls`) but not others (`rename`, `mkdir`); a backslash before every special
/// character is read literally by both kinds, which double quotes are not.
pub(crate) fn sftp_arg(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    // A relative path starting with '-' would read as an option.
    if text.starts_with('-') {
        out.push_str("./");
    }
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '*' | '?' | '[' | ']' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An ssh config value (for `-o`), quoted so spaces survive, with `%` doubled so ssh
/// does not expand it as a token.
fn ssh_config_value(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// sftp's stderr as one line: trimmed, and without "Connection closed" when ssh said
/// something more useful.
fn clean_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace()))
        .filter(|l| !l.is_empty())
        .collect();
    let useful: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| *l != "Connection closed" && *l != "Connection closed.")
        .collect();
    let mut out = String::new();
    for line in if useful.is_empty() { lines } else { useful } {
        if !out.is_empty() {
            // ssh writes sentences; sftp writes bare messages.
            out.push_str(if out.ends_with(['.', ':']) { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// Splits sftp's stdout into the echoed batch commands (`sftp> cmd`) and their output.
fn sections(stdout: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(cmd) = line.strip_prefix("sftp> ") {
            out.push((cmd, Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line);
        }
    }
    out
}

/// The last command sftp started, which is the one that failed when a batch aborts.
fn last_command(stdout: &str) -> Option<&str> {
    sections(stdout).last().map(|(cmd, _)| *cmd)
}

/// One line of `ls -ln`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LsEntry {
    /// The type character of the mode: `-` regular file, `d` directory, `l` link...
    pub kind: char,
    pub size: u64,
    pub modified: Option<Timestamp>,
    pub name: String,
}

/// Parses sftp's `ls -ln` line, `-rw-r--r--    ? 0  0  100000 Nov 25 16:35 name`:
/// mode, links, owner, group, size, then the date as `Mon DD HH:MM` (the last six
/// months) or `Mon DD  YYYY` (in UTC, as `TZ` is set), then a space and the name,
/// which may contain spaces. sftp prints `????????????` for a date it cannot show.
pub(crate) fn parse_ls_line(line: &str, now: Timestamp) -> Option<LsEntry> {
    fn token<'a>(rest: &mut &'a str) -> Option<&'a str> {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (tok, tail) = s.split_at(end);
        *rest = tail;
        (!tok.is_empty()).then_some(tok)
    }
    let mut rest = line;
    let mode = token(&mut rest)?;
    let kind = mode.chars().next()?;
    if mode.len() < 10 || !"-dlcbps".contains(kind) {
        return None;
    }
    let _links = token(&mut rest)?;
    let _owner = token(&mut rest)?;
    let _group = token(&mut rest)?;
    let size = token(&mut rest)?.parse().ok()?;
    let month = token(&mut rest)?;
    let modified = if month.chars().all(|c| c == '?') {
        None
    } else {
        let day = token(&mut rest)?;
        let clock_or_year = token(&mut rest)?;
        ls_time(month, day, clock_or_year, now)
    };
    let name = rest.strip_prefix(' ')?;
    if name.is_empty() {
        return None;
    }
    Some(LsEntry {
        kind,
        size,
        modified,
        name: name.to_owned(),
    })
}

fn ls_time(month: &str, day: &str, clock_or_year: &str, now: Timestamp) -> Option<Timestamp> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = i8::try_from(MONTHS.iter().position(|m| *m == month)? + 1).ok()?;
    let day: i8 = day.parse().ok()?;
    let utc = |year: i16, hour: i8, minute: i8| {
        jiff::civil::DateTime::new(year, month, day, hour, minute, 0, 0)
            .ok()?
            .to_zoned_datetime(TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    };
    if let Some((hour, minute)) = clock_or_year.split_once(':') {
        let (hour, minute) = (hour.parse().ok()?, minute.parse().ok()?);
        // The clock form is used for times in the six months up to now, so the year
        // is this one unless that would put the time in the future.
        let this_year = now.to_zoned_datetime(TimeZone::UTC).year();
        let slack = jiff::SignedDuration::from_hours(24);
        [this_year, this_year - 1]
            .into_iter()
            .filter_map(|year| utc(year, hour, minute))
            .find(|t| *t <= now.saturating_add(slack).unwrap_or(now))
    } else {
        utc(clock_or_year.parse().ok()?, 0, 0)
    }
}

/// Available bytes from sftp's `df` table (1 KiB units; the third column is what a
/// non-root user may still use).
pub(crate) fn parse_df(lines: &[&str]) -> Option<u64> {
    lines.iter().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let numeric = |s: &str| s.parse::<u64>().ok();
        if fields.len() == 5
            && fields[4].ends_with('%')
            && fields[..4].iter().all(|f| numeric(f).is_some())
        {
            numeric(fields[2])?.checked_mul(1024)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn ls_lines() {
        let now = at("2026-11-25T17:00:00Z");
        let entry = parse_ls_line(
            "-rw-r--r--    ? 0        0          100000 Nov 25 16:35 a b.berth.tar.zst",
            now,
        )
        .unwrap();
        assert_eq!(
            entry,
            LsEntry {
                kind: '-',
                size: 100_000,
                modified: Some(at("2026-11-25T16:35:00Z")),
                name: "a b.berth.tar.zst".to_owned(),
            }
        );
        let old = parse_ls_line("-rw-------    1 1000 1000 7 Jan  2  2024  lead", now).unwrap();
        assert_eq!(old.modified, Some(at("2024-01-02T00:00:00Z")));
        assert_eq!(old.name, " lead");
        let dir = parse_ls_line("drwxr-xr-x    ? root root 4096 Nov 25 16:38 sub", now).unwrap();
        assert_eq!(dir.kind, 'd');
        let unknown = parse_ls_line("-rw-r--r--    ? 0 0 5 ???????????? x", now).unwrap();
        assert_eq!((unknown.modified, unknown.name.as_str()), (None, "x"));
        assert_eq!(parse_ls_line("Can't ls: \"/x\" not found", now), None);
        assert_eq!(parse_ls_line("", now), None);
    }

    #[test]
    fn ls_clock_dates_take_the_year_that_is_not_in_the_future() {
        // In January, a "Dec 30" file with a clock time is from last December.
        let now = at("2027-01-03T10:00:00Z");
        let entry = parse_ls_line("-rw-r--r-- ? 0 0 1 Dec 30 23:59 x", now).unwrap();
        assert_eq!(entry.modified, Some(at("2026-12-30T23:59:00Z")));
        let entry = parse_ls_line("-rw-r--r-- ? 0 0 1 Jan  3 09:00 x", now).unwrap();
        assert_eq!(entry.modified, Some(at("2027-01-03T09:00:00Z")));
    }

    #[test]
    fn df_table() {
        let lines = [
            "        Size         Used        Avail       (root)    %Capacity",
            "   264212084     38239212     57046676    225972872          14%",
        ];
        assert_eq!(parse_df(&lines), Some(57_046_676 * 1024));
        assert_eq!(parse_df(&["Server does not support statvfs"]), None);
    }

    #[test]
    fn stdout_sections() {
        let out = "sftp> cd /x\nsftp> ls -ln\nline 1\nline 2\nsftp> -df\nhead\nrow\n";
        let s = sections(out);
        assert_eq!(s.len(), 3);
        assert_eq!(s[1], ("ls -ln", vec!["line 1", "line 2"]));
        assert_eq!(last_command(out), Some("-df"));
    }

    #[test]
    fn arguments_are_escaped() {
        assert_eq!(sftp_arg("/srv/backups"), "/srv/backups");
        assert_eq!(
            sftp_arg("a b\"c'd\\e*f?[g]#"),
            r#"a\ b\"c\'d\\e\*f\?\[g\]\#"#
        );
        assert_eq!(sftp_arg("-x"), "./-x");
        assert_eq!(ssh_config_value("/a b/%h\"q"), r#""/a b/%%h\"q""#);
    }

    #[test]
    fn stderr_is_one_line_without_noise() {
        assert_eq!(
            clean_stderr(
                "ssh: connect to host h port 1: Connection refused\r\nConnection closed\n"
            ),
            "ssh: connect to host h port 1: Connection refused"
        );
        assert_eq!(clean_stderr("Connection closed\n"), "Connection closed");
        assert_eq!(
            clean_stderr("No key is known.\nHost key verification failed.\nConnection closed\n"),
            "No key is known. Host key verification failed."
        );
        assert_eq!(
            clean_stderr("a: Failure\nb: Failure\n"),
            "a: Failure; b: Failure"
        );
    }

    #[test]
    fn command_line() {
        let target = SshTarget::new(
            SshSpec {
                user: Some("backup".to_owned()),
                host: "::1".to_owned(),
                port: Some(2222),
                path: "/srv".to_owned(),
            },
            SshOptions {
                identity_file: Some("/k/id".into()),
                known_hosts: Some("/k/known hosts".into()),
                connect_timeout: Duration::from_millis(1500),
                extra: vec!["Compression=yes".to_owned()],
            },
        );
        let cmd = target.command();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        insta::assert_snapshot!(args.join(" "), @r#"-b - -o BatchMode=yes -o StrictHostKeyChecking=yes -o Compression=yes -o ConnectTimeout=1 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o IdentitiesOnly=yes -o UserKnownHostsFile="/k/known hosts" -o User="backup" -i /k/id -P 2222 [::1]"#);
    }

    /// Attack: a man in the middle presents its own host key. Host key checking used to be
    /// forced only with `backup.ssh_known_hosts`, so whatever ssh's own configuration
    /// said (`accept-new` or `no` in root's `~/.ssh/config`, or an extra option) could
    /// let an unknown key through. ssh itself
    /// (`ssh -G`, which prints the configuration it would use) must see strict checking
    /// with no known hosts file given and even when an extra option tries to turn it off.
    #[test]
    fn host_keys_are_always_checked() {
        let target = SshTarget::new(
            SshSpec {
                user: None,
                host: "backup.invalid".to_owned(),
                port: None,
                path: "/srv".to_owned(),
            },
            SshOptions {
                extra: vec!["StrictHostKeyChecking=no".to_owned()],
                ..SshOptions::default()
            },
        );
        let options = target.ssh_options();
        assert_eq!(options[1], "StrictHostKeyChecking=yes");
        let mut ssh = Command::new("ssh");
        ssh.arg("-G");
        for option in &options {
            ssh.arg("-o").arg(option);
        }
        let out = match ssh.arg("backup.invalid").output() {
            Ok(out) => out,
            Err(e) => panic!("the OpenSSH client is needed for SFTP targets: {e}"),
        };
        let config = String::from_utf8_lossy(&out.stdout);
        assert!(
            config.lines().any(|l| l == "stricthostkeychecking true"),
            "{config}"
        );
    }
}
