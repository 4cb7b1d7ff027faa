//! Running one-shot hooks (database init, migrations, first admin user) as the
//! component's user, with their output in `<log>/hooks/<name>.log` and a timeout
//! that kills the whole process group.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use anyhow::{Context, Result, bail};
use berth_render::HookSpec;

/// The clean environment every hook and service starts from.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run a hook to completion. Fails with the log's last lines when it exits non-zero or times out.
pub fn run(hook: &HookSpec) -> Result<()> {
    if let Some(dir) = hook.log_file.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create `{}`", dir.display()))?;
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&hook.log_file)
        .with_context(|| format!("Failed to open hook log `{}`", hook.log_file.display()))?;
    let _ = writeln!(log, "--- berth: running hook `{}`", hook.name);
    let Some((program, args)) = hook.argv.split_first() else {
        bail!("Hook `{}` has an empty command", hook.name);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("LANG", "C.UTF-8")
        .envs(&hook.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    if let Some(cwd) = &hook.cwd {
        cmd.current_dir(cwd);
    }
    let mut home = None;
    if let Some(user) = &hook.user {
        let u = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .with_context(|| {
                format!(
                    "Hook `{}` runs as user `{user}`, which does not exist",
                    hook.name
                )
            })?;
        // std drops supplementary groups when it changes the uid.
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        cmd.env("USER", user).env("LOGNAME", user);
        home = Some(u.dir);
    }
    if let Some(h) = home.or_else(|| std::env::var_os("HOME").map(Into::into)) {
        cmd.env("HOME", h);
    }
    // Own process group, so a timeout kills the hook and everything it started.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("Failed to start hook `{}` (`{program}`)", hook.name))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = if let Ok(status) = rx.recv_timeout(hook.timeout) {
        status.with_context(|| format!("Failed to wait for hook `{}`", hook.name))?
    } else {
        #[allow(clippy::cast_possible_wrap)]
        let pgid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = rx.recv();
        bail!(
            "Hook `{}` did not finish within {:?} and was killed; its output is in `{}`",
            hook.name,
            hook.timeout,
            hook.log_file.display()
        );
    };
    if !status.success() {
        bail!(
            "Hook `{}` failed ({status}); last lines of `{}`:\n{}",
            hook.name,
            hook.log_file.display(),
            tail(&hook.log_file, 15)
        );
    }
    Ok(())
}

/// The last `n` lines of a file, indented, for error messages.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
