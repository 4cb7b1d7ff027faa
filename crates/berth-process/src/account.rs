//! Who a child runs as: a passwd entry and the credentials to switch to it.

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};

use crate::ProcessError;

/// A system user as the passwd and group databases describe it: the identity a child
/// takes and the `HOME`, `USER` and `LOGNAME` it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// The home directory from the passwd entry.
    pub home: PathBuf,
    /// The uid, primary gid and supplementary groups.
    pub credentials: Credentials,
}

impl Account {
    /// The passwd entry of `name`, with its supplementary groups looked up now (as
    /// `initgroups` would), so a forked child only has to switch.
    pub fn lookup(name: &str) -> Result<Self, ProcessError> {
        let entry = User::from_name(name)
            .map_err(|e| ProcessError::UserLookup {
                name: name.to_owned(),
                source: e.into(),
            })?
            .ok_or_else(|| ProcessError::NoSuchUser {
                name: name.to_owned(),
            })?;
        Self::from_entry(entry)
    }

    /// The account berth itself runs as (its effective uid). Without a passwd entry
    /// the name is the uid and the home `/`.
    pub fn current() -> Self {
        let uid = Uid::effective();
        let gid = Gid::effective();
        let fallback = || Self {
            name: uid.to_string(),
            home: PathBuf::from("/"),
            credentials: Credentials {
                uid: uid.as_raw(),
                gid: gid.as_raw(),
                groups: vec![gid.as_raw()],
            },
        };
        match User::from_uid(uid) {
            Ok(Some(entry)) => Self::from_entry(entry).unwrap_or_else(|_| fallback()),
            _ => fallback(),
        }
    }

    fn from_entry(entry: User) -> Result<Self, ProcessError> {
        let credentials = Credentials::of(&entry).map_err(|source| ProcessError::UserLookup {
            name: entry.name.clone(),
            source,
        })?;
        Ok(Self {
            name: entry.name,
            home: entry.dir,
            credentials,
        })
    }
}

/// A user's uid, gid and supplementary groups, to switch to in a forked child (only
/// possible as root). Every child berth starts as another user goes through it, so
/// each gets that user's groups: std's `Command::uid` drops every supplementary
/// group instead, which breaks a user that reads a key through a group like `ssl-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Credentials {
    /// The credentials of `user`, its supplementary groups looked up now (before a fork).
    ///
    /// # Errors
    /// The name holds a NUL byte, or the group database cannot be read.
    pub fn of(user: &User) -> io::Result<Self> {
        let cname = CString::new(user.name.as_str()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the user name contains a NUL byte",
            )
        })?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(io::Error::from)?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Self {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }

    /// The uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The primary gid.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Every group the user is in, the primary one included.
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }

    /// Switch the calling process to these credentials: groups, then gid, then uid.
    /// Only async-signal-safe calls, so it may run in `pre_exec`.
    ///
    /// # Errors
    /// The system call's error (e.g. not running as root).
    pub fn switch(&self) -> io::Result<()> {
        // SAFETY: plain system calls on memory owned by `self`.
        let failed = unsafe {
            libc::setgroups(self.groups.len(), self.groups.as_ptr()) == -1
                || libc::setgid(self.gid) == -1
                || libc::setuid(self.uid) == -1
        };
        if failed {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
