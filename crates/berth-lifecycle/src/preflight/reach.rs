//! Whether every service user can reach the paths it uses, checked before anything
//! changes: a prefix under a directory they cannot enter (a private 0700 temporary
//! directory, a home directory) otherwise fails deep in a hook
//! (`initdb: could not access directory …: Permission denied`).
//!
//! Reaching a path takes search permission (`x`) on every directory above it. For each
//! user (of a service, a job, a hook, and the build user of a bundle) the paths it uses
//! are its directories, the config files it reads, its working directory and the
//! program it runs; each directory above them is judged from its mode, owner and group
//! and the user's groups in the group database, without switching users
//! ([`may_search`]). A directory berth is about to make or re-mode is judged by the mode
//! and owner it will have; one that does not exist yet will be made by berth, 0755.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_render::DesiredState;

use crate::error::{LifecycleError, Result};

/// Who has to get through: a user as the passwd and group databases know it, or one
/// berth has yet to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who {
    /// The user's name.
    pub name: String,
    /// Its uid and every group it is in (the primary one included); `None` for a
    /// user berth will create, with a new group of its own and no other.
    pub ids: Option<(u32, Vec<u32>)>,
}

/// What decides whether a directory may be searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirFacts {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// It has a POSIX access ACL.
    pub acl: bool,
}

/// Whether a user may search (traverse) a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Yes.
    Yes,
    /// No.
    No,
    /// The directory has an ACL whose entries decide it: only the kernel knows.
    AskTheKernel,
}

/// Whether `who` may search a directory with `facts`, from the permission bits alone
/// (as `access(2)` decides without capabilities: the owner class, else the group class
/// when the directory's group is one of the user's, else the other class).
pub(crate) fn may_search(facts: &DirFacts, who: &Who) -> Verdict {
    let bit = |shift: u32| {
        if (facts.mode >> shift) & 0o1 == 0 {
            Verdict::No
        } else {
            Verdict::Yes
        }
    };
    let Some((uid, groups)) = &who.ids else {
        // A user berth has yet to create owns nothing and is in no group that exists
        // yet: only the other class applies, and an ACL's `other` entry is exactly
        // those bits.
        return bit(0);
    };
    if *uid == 0 {
        return Verdict::Yes;
    }
    if *uid == facts.uid {
        // The owner class is the ACL's `user::` entry too.
        return bit(6);
    }
    if facts.acl {
        // Named users and groups, and the mask over them, decide now.
        return Verdict::AskTheKernel;
    }
    if groups.contains(&facts.gid) {
        bit(3)
    } else {
        bit(0)
    }
}

/// The paths each user uses, by user name: its directories, the config files it reads,
/// the programs it runs (absolute ones) and their working directories.
pub(crate) fn paths_by_user(state: &DesiredState) -> BTreeMap<String, BTreeSet<PathBuf>> {
    let mut out: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut add = |user: Option<&String>, path: &Path| {
        if let Some(user) = user
            && path.is_absolute()
        {
            out.entry(user.clone())
                .or_default()
                .insert(path.to_path_buf());
        }
    };
    for d in &state.dirs {
        add(d.owner.as_ref(), &d.path);
    }
    for s in &state.services {
        if let Some(program) = s.argv.first() {
            add(s.user.as_ref(), Path::new(program));
        }
        if let Some(cwd) = &s.cwd {
            add(s.user.as_ref(), cwd);
        }
        for f in state
            .files
            .iter()
            .filter(|f| f.restarts.contains(&s.name) || f.reloads.contains(&s.name))
        {
            add(s.user.as_ref(), &f.path);
        }
    }
    for f in &state.files {
        add(f.owner.as_ref(), &f.path);
    }
    for (user, argv, cwd) in state
        .hooks
        .iter()
        .map(|h| (&h.user, &h.argv, &h.cwd))
        .chain(state.jobs.iter().map(|j| (&j.user, &j.argv, &j.cwd)))
    {
        if let Some(program) = argv.first() {
            add(user.as_ref(), Path::new(program));
        }
        if let Some(cwd) = cwd {
            add(user.as_ref(), cwd);
        }
    }
    // A bundle is built by berth's unprivileged build user, in the release directory.
    let build = berth_host::python::BUILD_USER.to_owned();
    for b in &state.bundles {
        add(Some(&build), &b.dest);
    }
    out
}

/// The directories a process must search to reach `path`: every one above it, as
/// written (a symlink among them is not searched itself) and as resolved (where a
/// symlink leads). Only existing directories are resolved; the user's own path is
/// never resolved (it may be the user's to replace with a symlink).
fn directories_above(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    if let Some(existing) = path
        .ancestors()
        .skip(1)
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        && let Ok(real) = std::fs::canonicalize(existing)
    {
        out.extend(real.ancestors().map(Path::to_path_buf));
    }
    out.sort();
    out.dedup();
    out
}

/// One directory a user cannot search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The directory.
    pub dir: PathBuf,
    /// Its mode, owner and group as they are (or will be), for the message.
    pub facts: DirFacts,
    /// The users who cannot search it.
    pub users: BTreeSet<String>,
    /// One path beyond it that one of them uses.
    pub needed_for: PathBuf,
}

/// How a directory will be when a user needs it: as berth is about to make it
/// (`Ok(None)`: the user's own, or one berth creates 0755), as it is, or nothing to
/// judge (a symlink: where it leads is judged on its own).
fn facts_of(
    dir: &Path,
    state: &DesiredState,
    as_root: bool,
) -> std::io::Result<Option<(DirFacts, Option<String>)>> {
    if let Some(planned) = state.dirs.iter().find(|d| d.path == dir) {
        // berth gives it this mode, and as root the owner it names (with that user's
        // group: another user gets the other class, `u32::MAX` matches nobody);
        // without an owner it keeps the one it has, or is berth's when berth makes it.
        let current = std::fs::symlink_metadata(dir).ok();
        let (uid, gid) = match (&planned.owner, as_root, &current) {
            (Some(_), true, _) => (u32::MAX, u32::MAX),
            (_, _, Some(m)) => (m.uid(), m.gid()),
            (_, _, None) => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        let facts = DirFacts {
            mode: planned.mode,
            uid,
            gid,
            acl: current.is_some() && has_acl(dir),
        };
        return Ok(Some((facts, planned.owner.clone().filter(|_| as_root))));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Ok(None),
        Ok(m) => Ok(Some((
            DirFacts {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                acl: has_acl(dir),
            },
            None,
        ))),
        // Made by berth (mode 0755) on the way to one of its directories.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `dir` carries a POSIX access ACL (`system.posix_acl_access`).
fn has_acl(dir: &Path) -> bool {
    let Ok(name) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; a size of 0 asks only for the value's length.
    let len = unsafe {
        libc::lgetxattr(
            name.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    len > 0
}

/// Asks the kernel whether `who` may search `dir`: a child that takes the user's
/// credentials (its uid, gid and every group) runs `test -x DIR`, which is
/// `access(2)` with `X_OK` as that user.
///
/// Used only for a directory with an ACL. Its named-user and named-group entries and
/// the mask over them are the kernel's to evaluate; doing it here would mean parsing
/// the extended attribute and re-implementing POSIX.1e's rules, and a mistake there
/// either stops an install that works or lets through one that fails later in a hook.
/// A child costs one fork per such directory and user, and its answer is the one the
/// service will get. (A user berth has yet to create needs no child: ACL entries
/// cannot name it, so the `other` bits decide.)
fn kernel_says_may_search(dir: &Path, who: &str) -> Result<bool> {
    let failed = |e: String| LifecycleError::Unreachable {
        blocked: vec![format!(
            "  could not check whether `{who}` may enter {} (it has an ACL): {e}",
            dir.display()
        )],
        fix: format!(
            "check it yourself: `sudo -u {who} test -x {}`",
            dir.display()
        ),
    };
    let mut cmd = berth_process::ChildCommand::new("/usr/bin/test");
    cmd.arg("-x").arg(dir).user(Some(who));
    let status = cmd
        .build()
        .map_err(|e| failed(e.to_string()))?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| failed(e.to_string()))?;
    Ok(status.success())
}

/// The facts of `dir` when it stops `who` (it cannot search it), else `None`.
fn stops_user(
    dir: &Path,
    state: &DesiredState,
    as_root: bool,
    who: &Who,
) -> Result<Option<DirFacts>> {
    Ok(
        match facts_of(dir, state, as_root).map_err(LifecycleError::io("inspect", dir))? {
            None => None,
            Some((_, Some(owner))) if owner == who.name => None,
            Some((facts, _)) => match may_search(&facts, who) {
                Verdict::Yes => None,
                Verdict::No => Some(facts),
                Verdict::AskTheKernel => {
                    (!kernel_says_may_search(dir, &who.name)?).then_some(facts)
                }
            },
        },
    )
}

/// Every directory some user cannot search on the way to a path it uses, with the
/// users it stops. `who` gives each user as the databases know it.
pub(crate) fn blocked(
    state: &DesiredState,
    as_root: bool,
    who: &dyn Fn(&str) -> Who,
) -> Result<Vec<Blocked>> {
    let mut found: BTreeMap<PathBuf, Blocked> = BTreeMap::new();
    // Each directory judged once per user: `Some(facts)` when it stops the user.
    let mut judged: BTreeMap<(PathBuf, String), Option<DirFacts>> = BTreeMap::new();
    for (user, paths) in paths_by_user(state) {
        let person = who(&user);
        for path in &paths {
            for dir in directories_above(path) {
                let key = (dir.clone(), user.clone());
                let stops = if let Some(stops) = judged.get(&key) {
                    *stops
                } else {
                    let stops = stops_user(&dir, state, as_root, &person)?;
                    judged.insert(key, stops);
                    stops
                };
                let Some(facts) = stops else {
                    continue;
                };
                found
                    .entry(dir.clone())
                    .or_insert_with(|| Blocked {
                        dir: dir.clone(),
                        facts,
                        users: BTreeSet::new(),
                        needed_for: path.clone(),
                    })
                    .users
                    .insert(user.clone());
            }
        }
    }
    // Only the topmost directory that stops a user matters: below it, the user never
    // gets that far (and fixing it may be all it takes).
    let dirs: Vec<PathBuf> = found.keys().cloned().collect();
    for d in &dirs {
        let stopped_above: Vec<String> = found[d]
            .users
            .iter()
            .filter(|u| {
                dirs.iter().any(|above| {
                    above != d && d.starts_with(above) && found[above].users.contains(*u)
                })
            })
            .cloned()
            .collect();
        if let Some(b) = found.get_mut(d) {
            for u in &stopped_above {
                b.users.remove(u);
            }
        }
    }
    Ok(found
        .into_values()
        .filter(|b| !b.users.is_empty())
        .collect())
}

/// A name for a uid or gid in messages: the name the databases give it, else the number.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// The error for the directories in `blocked`: each with its mode and owner, the users
/// it stops and a path beyond it they need; the fix names the commands.
pub(crate) fn unreachable(blocked: &[Blocked]) -> LifecycleError {
    let mut lines = Vec::new();
    let mut fixes = Vec::new();
    for b in blocked {
        let users: Vec<String> = b.users.iter().map(|u| format!("`{u}`")).collect();
        let owner = if b.facts.uid == u32::MAX {
            String::new()
        } else {
            format!(
                ", owner {}:{}",
                user_name(b.facts.uid),
                group_name(b.facts.gid)
            )
        };
        let acl = if b.facts.acl { ", with an ACL" } else { "" };
        lines.push(format!(
            "  {} (mode {:04o}{owner}{acl}): {} cannot enter it, on the way to {}",
            b.dir.display(),
            b.facts.mode,
            users.join(", "),
            b.needed_for.display()
        ));
        fixes.push(if b.facts.acl {
            let entries: Vec<String> = b.users.iter().map(|u| format!("u:{u}:x")).collect();
            format!("`setfacl -m {} {}`", entries.join(","), b.dir.display())
        } else {
            format!("`chmod o+x {}`", b.dir.display())
        });
    }
    LifecycleError::Unreachable {
        blocked: lines,
        fix: format!(
            "let them through with {} (search permission only: they still cannot list it), \
             or choose a prefix outside it (`--prefix DIR`)",
            fixes.join(" and ")
        ),
    }
}

/// Who `name` is, from the passwd and group databases (a user not there yet is one
/// berth will create).
pub(crate) fn lookup(name: &str) -> Who {
    let ids = berth_process::Account::lookup(name)
        .ok()
        .map(|a| (a.credentials.uid(), a.credentials.groups().to_vec()));
    Who {
        name: name.to_owned(),
        ids,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use berth_render::DirSpec;

    use super::{DirFacts, Verdict, Who, blocked, directories_above, may_search, paths_by_user};
    use crate::testing::{names, service, state_on};

    fn dir(mode: u32, uid: u32, gid: u32) -> DirFacts {
        DirFacts {
            mode,
            uid,
            gid,
            acl: false,
        }
    }

    fn user(uid: u32, groups: &[u32]) -> Who {
        Who {
            name: "app".into(),
            ids: Some((uid, groups.to_vec())),
        }
    }

    /// The owner class for the owner, the group class for a member of the directory's
    /// group (a supplementary group counts), the other class for everyone else; root
    /// passes; a user berth has yet to create gets the other class only.
    #[test]
    fn search_permission_follows_the_class_that_applies() {
        let app = user(1000, &[1000, 44]);
        for (facts, expected) in [
            (dir(0o700, 1000, 0), Verdict::Yes),
            (dir(0o070, 1000, 1000), Verdict::No),
            (dir(0o710, 0, 44), Verdict::Yes),
            (dir(0o701, 0, 44), Verdict::No),
            (dir(0o701, 0, 0), Verdict::Yes),
            (dir(0o700, 0, 0), Verdict::No),
            (dir(0o755, 0, 0), Verdict::Yes),
            (dir(0o754, 0, 0), Verdict::No),
            (dir(0o1751, 0, 0), Verdict::Yes),
        ] {
            assert_eq!(may_search(&facts, &app), expected, "{facts:?}");
        }
        assert_eq!(may_search(&dir(0o700, 0, 0), &user(0, &[0])), Verdict::Yes);
        let new = Who {
            name: "new".into(),
            ids: None,
        };
        assert_eq!(may_search(&dir(0o770, 0, 0), &new), Verdict::No);
        assert_eq!(may_search(&dir(0o701, 0, 0), &new), Verdict::Yes);
    }

    /// With an ACL, the owner class still decides for the owner (it is the `user::`
    /// entry), a user berth has yet to create still gets the other bits (no entry can
    /// name it), and anyone else is left to the kernel.
    #[test]
    fn an_acl_is_left_to_the_kernel_unless_the_bits_are_certain() {
        let acl = DirFacts {
            acl: true,
            ..dir(0o750, 0, 0)
        };
        assert_eq!(may_search(&acl, &user(1000, &[0])), Verdict::AskTheKernel);
        assert_eq!(
            may_search(&acl, &user(1000, &[1000])),
            Verdict::AskTheKernel
        );
        let owned = DirFacts { uid: 1000, ..acl };
        assert_eq!(may_search(&owned, &user(1000, &[])), Verdict::Yes);
        let new = Who {
            name: "new".into(),
            ids: None,
        };
        assert_eq!(may_search(&acl, &new), Verdict::No);
    }

    /// A user's paths: its directories, the files its services read, its programs and
    /// working directories; the build user's release directory.
    #[test]
    fn each_user_needs_its_directories_files_and_programs() {
        let mut web = service("web", &[]);
        web.user = Some("www".into());
        web.argv = names(&["/opt/app/bin/web", "--serve"]);
        web.cwd = Some("/p/data/www".into());
        let mut state = state_on(Path::new("/p"), vec![web], vec![]);
        state.dirs.push(DirSpec {
            path: "/p/data/www".into(),
            owner: Some("www".into()),
            mode: 0o750,
        });
        state.files = vec![berth_render::FileSpec {
            path: "/p/etc/web.conf".into(),
            content: String::new(),
            owner: None,
            mode: 0o644,
            restarts: names(&["web"]),
            reloads: Vec::new(),
        }];
        let paths = paths_by_user(&state);
        assert_eq!(
            paths["www"],
            BTreeSet::from(
                ["/opt/app/bin/web", "/p/data/www", "/p/etc/web.conf"].map(PathBuf::from)
            )
        );
    }

    /// The directories above a path, as written and where their symlinks lead.
    #[test]
    fn the_directories_above_include_where_symlinks_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let above = directories_above(&tmp.path().join("link/inst/data"));
        let tmp_real = std::fs::canonicalize(tmp.path()).unwrap();
        for d in [
            tmp.path().join("link/inst"),
            tmp.path().join("link"),
            tmp.path().to_path_buf(),
            tmp_real.join("real"),
            PathBuf::from("/"),
        ] {
            assert!(above.contains(&d), "{} not in {above:?}", d.display());
        }
        assert!(!above.contains(&tmp.path().join("link/inst/data")));
    }

    /// A prefix inside a 0700 directory stops every service user there (and only the
    /// topmost such directory is named); a directory berth itself makes or re-modes is
    /// judged by the mode it will have, and one owned by the user is its own.
    #[test]
    fn a_private_directory_above_the_prefix_is_found_once() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("private");
        let inner = private.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let prefix = inner.join("inst");
        let mut web = service("web", &[]);
        web.user = Some("www".into());
        web.argv = names(&["/bin/true"]);
        let mut state = state_on(&prefix, vec![web], vec![]);
        state.dirs = vec![
            DirSpec {
                path: prefix.clone(),
                owner: None,
                mode: 0o755,
            },
            DirSpec {
                path: prefix.join("data/www"),
                owner: Some("www".into()),
                mode: 0o700,
            },
        ];
        let who = |name: &str| Who {
            name: name.to_owned(),
            ids: None,
        };
        let found = blocked(&state, true, &who).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].dir, private);
        assert_eq!(found[0].users, BTreeSet::from(["www".to_owned()]));
        assert_eq!(found[0].facts.mode, 0o700);
        let text = super::unreachable(&found).to_string();
        assert!(
            text.contains(&format!("{} (mode 0700, owner ", private.display())),
            "{text}"
        );
        assert!(text.contains("`www` cannot enter it"), "{text}");
        let hint = crate::LifecycleError::hint(&super::unreachable(&found)).unwrap();
        assert!(
            hint.contains(&format!("`chmod o+x {}`", private.display())),
            "{hint}"
        );

        // Let through: nothing stops it (the prefix itself berth makes 0755).
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o701)).unwrap();
        assert!(blocked(&state, true, &who).unwrap().is_empty());
        // A directory berth makes 0700 and root's, above the user's: stops it.
        state.dirs.insert(
            1,
            DirSpec {
                path: prefix.join("data"),
                owner: None,
                mode: 0o700,
            },
        );
        let found = blocked(&state, true, &who).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].dir, prefix.join("data"));
    }
}
