//! The error type of every host operation.

use std::path::PathBuf;

/// A `Result` whose error is [`HostError`].
pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// Everything that can go wrong while probing or changing the host.
///
/// Variants name the path, user, package or program they are about. None of them
/// ever carries a secret value or file content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A directory could not be created.
    #[error("Failed to create the directory `{path}`")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be read or inspected.
    #[error("Failed to read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("Failed to write `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be removed.
    #[error("Failed to remove `{path}`")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Permission bits could not be set.
    #[error("Failed to set mode {mode:04o} on `{path}`")]
    SetMode {
        /// The file or directory.
        path: PathBuf,
        /// The mode wanted.
        mode: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Ownership could not be set.
    #[error("Failed to give `{path}` to uid {uid}, gid {gid}")]
    SetOwner {
        /// The file or directory.
        path: PathBuf,
        /// The owner wanted.
        uid: u32,
        /// The group wanted.
        gid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something that should be a directory is not one.
    #[error("`{path}` exists but is not a directory; move it away and run berth again")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Something that should be a regular file is not one.
    #[error("`{path}` exists but is not a regular file; move it away and run berth again")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A symlink was found where a directory or file was expected, beneath a directory
    /// someone else may change.
    #[error(
        "`{path}` is a symbolic link where berth expects a directory or a file: someone replaced it, and berth, running as root, does not follow it; check who made it and what it points to (`ls -l {path}`), remove it, and run berth again"
    )]
    SymlinkRefused {
        /// The path, as far as it was resolved.
        path: PathBuf,
    },
    /// A path to act on is absolute or has `..`.
    #[error(
        "`{path}` is not a plain path beneath `{base}` (it is absolute, empty or has `..`); berth only acts beneath the directory it opened"
    )]
    NotBeneath {
        /// The directory it had to be beneath.
        base: PathBuf,
        /// The path.
        path: PathBuf,
    },
    /// What is at a path is no longer what berth looked at (or planned for) before.
    #[error(
        "`{path}` was replaced while berth was working on it (it is no longer the directory or file berth inspected); nothing was changed there; find out who replaced it, then run berth again"
    )]
    Replaced {
        /// The path.
        path: PathBuf,
    },
    /// A tree to remove has another file system mounted in it.
    #[error(
        "`{path}` is a mount point; berth does not remove anything across file systems: unmount it (`umount {path}`), then run berth again"
    )]
    MountPoint {
        /// The mount point.
        path: PathBuf,
    },
    /// A device node in a tree to give to a service user.
    #[error(
        "`{path}` is a device node; berth does not give devices to a service user: remove it, then run berth again"
    )]
    DeviceRefused {
        /// The device node.
        path: PathBuf,
    },
    /// A file with several hard links in a tree to give to a service user.
    #[error(
        "`{path}` has more than one hard link, and the other could be any file on this file system; berth does not give it to a service user: replace it with a copy (`cp --remove-destination`), then run berth again"
    )]
    HardLinked {
        /// The file.
        path: PathBuf,
    },
    /// An entry of a tree root takes over from an unprivileged user belongs to someone
    /// else (a hard link to root's file, say).
    #[error(
        "`{path}` belongs to uid {uid}, not to uid {maker} whose tree berth is taking over; berth takes over nothing but that user's own files: remove it, then run berth again"
    )]
    ForeignOwner {
        /// The entry.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The user who made the tree.
        maker: u32,
    },
    /// A host file (`[[host_files]]`) that berth cannot create, change or remove.
    #[error("host file `{path}`: {why}")]
    HostFile {
        /// Its path.
        path: PathBuf,
        /// What is wrong, and what to do.
        why: String,
    },
    /// Something exists where berth only creates new files.
    #[error("`{path}` already exists; name a new file: berth never writes over it")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// A directory or file berth changed was replaced before the change was undone.
    #[error(
        "`{path}` was replaced after berth changed it ({found}); berth put the old mode and owner back on the directory or file it had changed, through the descriptor it held, and left what is at `{path}` now untouched"
    )]
    ReplacedBeforeUndo {
        /// The path.
        path: PathBuf,
        /// What berth found there.
        found: Box<HostError>,
    },
    /// A file or directory could not be moved.
    #[error("Failed to move `{from}` to `{to}`")]
    Rename {
        /// Where it was.
        from: PathBuf,
        /// Where it was going.
        to: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file can be read by other users.
    #[error(
        "The secret file `{path}` is readable by group or others (mode {mode:04o}); check who may have read it, then run `chmod 600 {path}`"
    )]
    SecretExposed {
        /// The secret file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file is empty.
    #[error(
        "The secret file `{path}` is empty; restore it from a backup, or remove it to generate a new secret (which invalidates data protected by the old one)"
    )]
    SecretEmpty {
        /// The secret file.
        path: PathBuf,
    },
    /// A secret file is not UTF-8 text.
    #[error("The secret file `{path}` is not UTF-8 text")]
    SecretNotText {
        /// The secret file.
        path: PathBuf,
    },
    /// A hook that makes secrets (`from_hook`) exited 0, but what it handed over for
    /// one of them cannot be taken. Never carries the value.
    #[error("Hook `{hook}` did not hand over the secret `{name}`: {why}")]
    HookSecret {
        /// The hook.
        hook: String,
        /// The secret.
        name: String,
        /// What is wrong (missing, a symlink, too big, not the hook user's, a bad value).
        why: String,
    },
    /// A secret cannot be generated as declared.
    #[error("Cannot generate the secret `{name}`: {reason}")]
    InvalidSecretSpec {
        /// The secret's name.
        name: String,
        /// What is wrong with its declaration.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("Failed to read random bytes from the operating system for the secret `{name}`")]
    Random {
        /// The secret being generated.
        name: String,
        /// The RNG error.
        #[source]
        source: rand::rngs::SysError,
    },
    /// A user named in the desired state does not exist and will not be created.
    #[error("The user `{user}` does not exist; create it, or run berth as root so it creates it")]
    UnknownUser {
        /// The user name.
        user: String,
    },
    /// An operation needs root.
    #[error(
        "Creating the user `{user}` needs root; run `sudo berth up`, or install without system users"
    )]
    UserNeedsRoot {
        /// The user name.
        user: String,
    },
    /// A process group an interrupted run left behind is still alive after `SIGKILL`.
    #[error(
        "Failed to stop `{what}` (process group {pgid}), left running by an interrupted run; hint: see what is stuck with `pgrep -a -g {pgid}`"
    )]
    Leftover {
        /// What the child was for.
        what: String,
        /// Its process group.
        pgid: u32,
        /// Why it is still alive.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("Failed to run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `useradd` failed.
    #[error("Failed to create the user `{user}` with useradd ({status}): {stderr}")]
    UserAdd {
        /// The user name.
        user: String,
        /// How useradd exited.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// `usermod` failed (for another reason than the user's running processes).
    #[error("Failed to give the user `{user}` its new home with usermod ({status}): {stderr}")]
    UserMod {
        /// The user name.
        user: String,
        /// How usermod exited.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// `dpkg-query` failed in an unexpected way.
    #[error("Failed to query the package database for `{package}` ({status}): {stderr}")]
    PackageQuery {
        /// The package.
        package: String,
        /// How dpkg-query exited.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// `apt-get install` failed.
    #[error("Failed to install {packages} with apt-get ({status}): {stderr}")]
    PackageInstall {
        /// The packages, space separated.
        packages: String,
        /// How apt-get exited.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// Packages are missing while berth runs inside a package's maintainer script,
    /// where dpkg holds the lock apt-get needs.
    #[error(
        "{packages} must be installed, and berth runs inside the {during} package's \
         maintainer script, where dpkg holds the package lock: run `{hint}` (or switch the \
         components that need them off in the site config), then `dpkg --configure -a`"
    )]
    PackagesDuringDpkg {
        /// The packages, space separated.
        packages: String,
        /// The package whose script runs.
        during: String,
        /// The exact command to run.
        hint: String,
    },
    /// Installing packages needs root.
    #[error("Installing {packages} needs root; run `{hint}`")]
    PackagesNeedRoot {
        /// The packages, space separated.
        packages: String,
        /// The exact command to run.
        hint: String,
    },
    /// A Python version requirement could not be parsed.
    #[error("Cannot understand the Python version requirement `{spec}`: {reason}")]
    InvalidPythonSpec {
        /// The requirement, e.g. `>=3.12,<3.14`.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No interpreter matches the requirement.
    #[error("No Python interpreter matching `{spec}` was found ({found}); {hint}")]
    NoPython {
        /// The requirement.
        spec: String,
        /// What was found, e.g. `/usr/bin/python3.11 (3.11.2)`, or `none`.
        found: String,
        /// What to install.
        hint: String,
    },
    /// An interpreter could not be copied into the release.
    #[error("Failed to copy the Python interpreter `{python}` into `{dest}`: {reason}")]
    PrivateInterpreter {
        /// The interpreter.
        python: PathBuf,
        /// Where it was being copied.
        dest: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A step of building a virtual environment failed.
    #[error("Failed to {step} for `{dest}` ({status}): {stderr}")]
    Venv {
        /// The venv being built.
        dest: PathBuf,
        /// The step, e.g. `create the virtual environment`.
        step: String,
        /// How the program exited.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// A virtual environment could not be built safely (the build user, the hand-over
    /// of its work to root, the interpreter it must run).
    #[error("Failed to build the virtual environment `{dest}`: {reason}")]
    VenvBuild {
        /// The venv being built.
        dest: PathBuf,
        /// What went wrong and what to do, as a sentence fragment.
        reason: String,
    },
    /// A plan does not match the desired state it is applied with.
    #[error("The plan for `{path}` does not match the desired state; plan again before applying")]
    StalePlan {
        /// The file or directory.
        path: PathBuf,
    },
    /// Applying failed; everything changed so far was put back.
    #[error("Failed to apply the changes; the {undone} changes already made were put back")]
    ApplyFailed {
        /// How many changes were undone.
        undone: usize,
        /// What failed.
        #[source]
        source: Box<HostError>,
    },
    /// Applying failed, and putting some changes back failed too.
    #[error("Failed to apply the changes, and could not put back: {}", .not_restored.join(", "))]
    RollbackFailed {
        /// Paths that could not be put back, with why.
        not_restored: Vec<String>,
        /// What failed in the first place.
        #[source]
        source: Box<HostError>,
    },
    /// Putting a whole applied change back failed for some paths.
    #[error("Could not put back: {}", .not_restored.join(", "))]
    UndoFailed {
        /// Paths that could not be put back, with why.
        not_restored: Vec<String>,
    },
}

/// The last `max_lines` lines of a program's standard error, for an error message.
pub(crate) fn stderr_tail(stderr: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::stderr_tail;

    #[test]
    fn stderr_tail_keeps_the_last_non_empty_lines() {
        assert_eq!(stderr_tail(b"a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(stderr_tail(b"", 3), "");
        assert_eq!(stderr_tail(b"only", 3), "only");
    }
}
