//! System users: look up, and create when running as root; their homes.

use std::path::Path;
use std::process::Command;

use berth_render::{Paths, UserSpec};

use crate::beneath::SafeDir;
use crate::error::stderr_tail;
use crate::{HostError, Result};

/// The uid and primary gid of user `name`, if it exists.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

/// The home directory in the passwd entry of user `name`, if it exists.
pub fn passwd_home(name: &str) -> Option<std::path::PathBuf> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Whether berth runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Makes sure the system user `spec.name` exists, creating it (with a group of the
/// same name, home `spec.home` not created, no login shell) when `getent passwd`
/// does not know it. Returns whether it was created.
///
/// Needs root when the user is missing.
pub fn ensure_user(spec: &UserSpec) -> Result<bool> {
    let known = Command::new("getent")
        .args(["passwd", &spec.name])
        .output()
        .map_err(|source| HostError::Spawn {
            program: "getent".to_owned(),
            source,
        })?;
    if known.status.success() {
        return Ok(false);
    }
    if !is_root() {
        return Err(HostError::UserNeedsRoot {
            user: spec.name.clone(),
        });
    }
    let out = Command::new("useradd")
        .arg("--system")
        .arg("--user-group")
        .arg("--home-dir")
        .arg(&spec.home)
        .arg("--no-create-home")
        .args(["--shell", "/usr/sbin/nologin"])
        .arg(&spec.name)
        .output()
        .map_err(|source| HostError::Spawn {
            program: "useradd".to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(HostError::UserAdd {
            user: spec.name.clone(),
            status: out.status,
            stderr: stderr_tail(&out.stderr, 10),
        });
    }
    Ok(true)
}

/// What [`ensure_users`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersReport {
    /// Users created.
    pub created: Vec<String>,
    /// Users an older berth created with `<prefix>/data` as their home, whose passwd
    /// entry now names their home under `home/`.
    pub rehomed: Vec<String>,
    /// Users of that kind whose passwd entry could not be changed yet because they
    /// have processes running (`usermod` refuses): the next `up` with the services
    /// stopped changes it. berth gives its processes `HOME` itself meanwhile.
    pub rehome_later: Vec<String>,
}

/// Makes sure every user of `users` (an instance's, at `paths`) exists (creating the missing ones with their home
/// `<prefix>/home/<user>` in the passwd entry) and has that home: its own, mode 0700,
/// made through descriptors ([`ensure_home`]).
///
/// With `rehome`, a user whose passwd entry still names this instance's
/// `<prefix>/data` (what an older berth gave the users it created; no user of
/// anyone else's has it) gets its new home in the entry too (`usermod -d`; the old
/// directory is not moved, it stays the data directory). A user with any other home
/// (a system user such as `postgres`, or one another instance created) keeps its
/// entry as it is.
///
/// Needs root when a user is missing or is given a new home.
pub fn ensure_users(paths: &Paths, users: &[UserSpec], rehome: bool) -> Result<UsersReport> {
    let mut report = UsersReport::default();
    if users.is_empty() {
        return Ok(report);
    }
    let prefix = SafeDir::open_trusted(&paths.prefix)?;
    for spec in users {
        if ensure_user(spec)? {
            report.created.push(spec.name.clone());
        } else if rehome && passwd_home(&spec.name).as_deref() == Some(paths.data.as_path()) {
            if set_home(spec)? {
                report.rehomed.push(spec.name.clone());
            } else {
                report.rehome_later.push(spec.name.clone());
            }
        }
        let owner = lookup(&spec.name).ok_or_else(|| HostError::UnknownUser {
            user: spec.name.clone(),
        })?;
        let rel = paths.beneath(&spec.home);
        if rel.is_absolute() {
            return Err(HostError::NotBeneath {
                base: paths.prefix.clone(),
                path: spec.home.clone(),
            });
        }
        ensure_home(&prefix, rel, owner)?;
    }
    Ok(report)
}

/// `usermod -d <spec.home> <spec.name>`: whether it was done; `false` when the user
/// has processes running, which `usermod` refuses (exit status 8).
fn set_home(spec: &UserSpec) -> Result<bool> {
    let out = Command::new("usermod")
        .arg("--home")
        .arg(&spec.home)
        .arg("--")
        .arg(&spec.name)
        .output()
        .map_err(|source| HostError::Spawn {
            program: "usermod".to_owned(),
            source,
        })?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(8) => Ok(false),
        _ => Err(HostError::UserMod {
            user: spec.name.clone(),
            status: out.status,
            stderr: stderr_tail(&out.stderr, 10),
        }),
    }
}

/// Makes `rel` beneath `prefix` (the instance's prefix, which only root can change;
/// `rel` is `home/<user>`, [`berth_layout::Paths::user_home`]) the private home of a
/// user: a directory of mode 0700 owned by `owner` (uid, gid), which that user can
/// write. Missing parents are created 0755 and root's; an existing home is given that
/// owner and mode again. Everything is reached through descriptors from `prefix`: a
/// symlink at `rel` or on the way to it is refused ([`HostError::SymlinkRefused`]) and
/// what it points to is left alone.
pub fn ensure_home(prefix: &SafeDir, rel: &Path, owner: (u32, u32)) -> Result<()> {
    let name = rel.file_name().ok_or_else(|| HostError::NotBeneath {
        base: prefix.path().to_path_buf(),
        path: rel.to_path_buf(),
    })?;
    let parent = prefix.create_dir_all(rel.parent().unwrap_or(Path::new("")), 0o755, None)?;
    let home = match parent.create_dir(Path::new(name), 0o700, Some(owner)) {
        Ok(home) => home,
        Err(HostError::CreateDir { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            parent.open_dir(Path::new(name))?
        }
        Err(e) => return Err(e),
    };
    let stat = home.stat_self()?;
    if (stat.uid, stat.gid) != owner {
        home.set_owner(Path::new(""), owner)?;
    }
    if stat.perm() != 0o700 {
        home.set_mode(Path::new(""), 0o700)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_nonsense_does_not() {
        assert_eq!(lookup("root"), Some((0, 0)));
        assert_eq!(lookup("berth-no-such-user-x9"), None);
    }

    #[test]
    fn existing_user_is_left_alone() {
        let spec = UserSpec {
            name: "root".to_owned(),
            home: "/root".into(),
        };
        assert!(!ensure_user(&spec).unwrap());
    }

    #[test]
    fn creates_a_missing_system_user_as_root() {
        if !is_root() {
            return;
        }
        let name = format!("berth-t{}", std::process::id());
        let spec = UserSpec {
            name: name.clone(),
            home: "/nonexistent/berth".into(),
        };
        let created = ensure_user(&spec);
        let found = lookup(&name);
        let _ = Command::new("userdel").arg(&name).status();
        assert!(created.unwrap(), "the user is new");
        let (uid, gid) = found.expect("the user exists afterwards");
        assert!(uid > 0 && gid > 0);
        assert!(
            !std::path::Path::new("/nonexistent/berth").exists(),
            "no home created"
        );
    }
}
