//! Converge: compare the desired state with the host ([`plan`]), then make the host
//! match it ([`apply`]), changing only what differs and undoing everything if a step
//! fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use berth_render::{DesiredState, FileSpec};
use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::beneath::{self, Node};
use crate::{HostError, Result, fsutil, users};

/// What replaces a secret value in diffs.
pub const SECRET_MASK: &str = "********";

/// Everything [`apply`] would change, computed without touching the host.
///
/// It holds no file content (only hashes and masked diffs), so it is safe to print,
/// log and store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConvergePlan {
    /// Whether owners are managed (berth runs as root). Without root, owners are ignored.
    pub manage_owners: bool,
    /// System users to create.
    pub users: Vec<String>,
    /// Directories to create, or to give another mode or owner; parents first.
    pub dirs: Vec<DirChange>,
    /// Files to create or update, or to give another mode or owner.
    pub files: Vec<FileChange>,
    /// Files berth wrote before that the desired state no longer has (e.g. the config
    /// of a component switched off): they are removed. See [`ConvergePlan::remove_stale`].
    #[serde(default)]
    pub removed: Vec<PathBuf>,
    /// Services to restart because a file they read changed.
    pub restart: Vec<String>,
    /// Services to reload because a file they read changed (never also in `restart`).
    pub reload: Vec<String>,
}

/// What happens to a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It does not exist yet.
    Create,
    /// Its content changes (and maybe its mode or owner).
    Update,
    /// Only its mode or owner changes.
    Metadata,
}

/// A directory change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirChange {
    /// The directory.
    pub path: PathBuf,
    /// Create it, or change its mode or owner ([`ChangeKind::Metadata`]).
    pub kind: ChangeKind,
    /// The mode it gets.
    pub mode: u32,
    /// Its current mode, when that differs.
    pub old_mode: Option<u32>,
    /// The owner it gets, when owners are managed.
    pub owner: Option<String>,
    /// Its current uid and gid, when the owner changes.
    pub old_owner: Option<(u32, u32)>,
    /// Device and inode of the directory the change was planned for (when it exists):
    /// applying refuses to touch anything else put in its place since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_inode: Option<(u64, u64)>,
}

/// A file change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// The file.
    pub path: PathBuf,
    /// Create, update, or change only mode or owner.
    pub kind: ChangeKind,
    /// The mode it gets.
    pub mode: u32,
    /// Its current mode, when that differs.
    pub old_mode: Option<u32>,
    /// The owner it gets, when owners are managed.
    pub owner: Option<String>,
    /// Its current uid and gid, when the owner changes.
    pub old_owner: Option<(u32, u32)>,
    /// SHA-256 of the new content.
    pub sha256: String,
    /// SHA-256 of the current content, when the file exists.
    pub old_sha256: Option<String>,
    /// Unified diff from the current content, secrets masked; `None` for metadata changes.
    pub diff: Option<String>,
    /// Device and inode of the file the change was planned for (when it exists): a
    /// mode or owner change refuses to touch anything else put in its place since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_inode: Option<(u64, u64)>,
    /// Services restarted because of this change.
    pub restarts: Vec<String>,
    /// Services reloaded because of this change.
    pub reloads: Vec<String>,
}

impl ConvergePlan {
    /// Whether there is nothing to do: no user, directory or file changes.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.dirs.is_empty()
            && self.files.is_empty()
            && self.removed.is_empty()
    }

    /// Plan the removal of the files of `previous` (what berth wrote last time) that
    /// `state` no longer has and that still exist. Only config files berth wrote are
    /// ever removed; directories and data stay.
    #[must_use]
    pub fn remove_stale(mut self, state: &DesiredState, previous: &[PathBuf]) -> Self {
        let wanted: BTreeSet<&Path> = state.files.iter().map(|f| f.path.as_path()).collect();
        self.removed = previous
            .iter()
            .filter(|p| !wanted.contains(p.as_path()))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
            .cloned()
            .collect();
        self
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Users created.
    pub users_created: Vec<String>,
    /// Files created, rewritten, given another mode or owner, or removed, in that
    /// order. Directories are in `dirs_created` and `dirs_changed`.
    pub changed: Vec<PathBuf>,
    /// Directories created, parents first (the missing parents of a planned directory
    /// included).
    #[serde(default)]
    pub dirs_created: Vec<PathBuf>,
    /// Directories that existed and were given another mode or owner.
    #[serde(default)]
    pub dirs_changed: Vec<PathBuf>,
    /// Services to restart.
    pub restart: Vec<String>,
    /// Services to reload.
    pub reload: Vec<String>,
}

/// Compares the desired state with the host and returns what must change.
///
/// Files are compared by SHA-256 of their content; unchanged files appear nowhere.
/// Diffs show every value of `secrets_to_mask` as [`SECRET_MASK`]. When `as_root` is
/// false, users are not created and owners are ignored.
pub fn plan(
    state: &DesiredState,
    secrets_to_mask: &[String],
    as_root: bool,
) -> Result<ConvergePlan> {
    let users: Vec<String> = if as_root {
        state
            .users
            .iter()
            .filter(|u| users::lookup(&u.name).is_none())
            .map(|u| u.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    let owners = Owners {
        manage: as_root,
        to_create: &users,
        default: (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
    };

    let mut dirs = Vec::new();
    for spec in &state.dirs {
        if let Some(change) = plan_dir(
            &state.paths.prefix,
            &spec.path,
            spec.mode,
            spec.owner.as_deref(),
            &owners,
        )? {
            dirs.push(change);
        }
    }

    let masker = Masker::new(secrets_to_mask);
    let mut files = Vec::new();
    for spec in &state.files {
        if let Some(change) = plan_file(spec, &state.paths.prefix, &owners, &masker)? {
            files.push(change);
        }
    }

    let (restart, reload) = services_of(&files);
    Ok(ConvergePlan {
        manage_owners: as_root,
        users,
        dirs,
        files,
        removed: Vec::new(),
        restart,
        reload,
    })
}

/// How owners are resolved while planning.
struct Owners<'a> {
    manage: bool,
    to_create: &'a [String],
    default: (u32, u32),
}

impl Owners<'_> {
    /// Whether `current` differs from the wanted owner; `None` when owners are not managed.
    fn differs(&self, wanted: Option<&str>, current: (u32, u32)) -> Result<Option<String>> {
        if !self.manage {
            return Ok(None);
        }
        let (name, ids) = match wanted {
            Some(user) => match users::lookup(user) {
                Some(ids) => (user.to_owned(), Some(ids)),
                None if self.to_create.iter().any(|u| u == user) => (user.to_owned(), None),
                None => {
                    return Err(HostError::UnknownUser {
                        user: user.to_owned(),
                    });
                }
            },
            None => (self.default.0.to_string(), Some(self.default)),
        };
        Ok((ids != Some(current)).then_some(name))
    }
}

fn plan_dir(
    prefix: &Path,
    path: &Path,
    mode: u32,
    owner: Option<&str>,
    owners: &Owners<'_>,
) -> Result<Option<DirChange>> {
    let mode = mode & 0o7777;
    let wanted_owner = owner.map(str::to_owned).filter(|_| owners.manage);
    let Some(meta) = stat_beneath(prefix, path)? else {
        return Ok(Some(DirChange {
            path: path.to_path_buf(),
            kind: ChangeKind::Create,
            mode,
            old_mode: None,
            owner: wanted_owner,
            old_owner: None,
            planned_inode: None,
        }));
    };
    if meta.is_symlink() {
        return Err(HostError::SymlinkRefused {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(HostError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let current_mode = meta.perm();
    let current_owner = (meta.uid, meta.gid);
    let owner_change = owners.differs(owner, current_owner)?;
    if current_mode == mode && owner_change.is_none() {
        return Ok(None);
    }
    Ok(Some(DirChange {
        path: path.to_path_buf(),
        kind: ChangeKind::Metadata,
        mode,
        old_mode: (current_mode != mode).then_some(current_mode),
        owner: wanted_owner,
        old_owner: owner_change.map(|_| current_owner),
        planned_inode: Some(meta.id()),
    }))
}

/// What is at `path`, looked at beneath `prefix` without following a symlink anywhere
/// on the way; `None` when it (or the prefix) does not exist.
fn stat_beneath(prefix: &Path, path: &Path) -> Result<Option<beneath::Stat>> {
    match beneath::locate(prefix, path) {
        Ok((dir, rel)) => dir.stat(&rel),
        Err(HostError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn plan_file(
    spec: &FileSpec,
    prefix: &Path,
    owners: &Owners<'_>,
    masker: &Masker,
) -> Result<Option<FileChange>> {
    let path = &spec.path;
    let mode = spec.mode & 0o7777;
    let sha256 = fsutil::sha256_hex(spec.content.as_bytes());
    let wanted_owner = spec.owner.clone().filter(|_| owners.manage);
    let meta = stat_beneath(prefix, path)?;
    let Some(meta) = meta else {
        return Ok(Some(FileChange {
            path: path.clone(),
            kind: ChangeKind::Create,
            mode,
            old_mode: None,
            owner: wanted_owner,
            old_owner: None,
            sha256,
            old_sha256: None,
            diff: Some(masker.diff(path, None, &spec.content)),
            restarts: spec.restarts.clone(),
            reloads: spec.reloads.clone(),
            planned_inode: None,
        }));
    };
    if meta.is_symlink() {
        return Err(HostError::SymlinkRefused { path: path.clone() });
    }
    if !meta.is_file() {
        return Err(HostError::NotAFile { path: path.clone() });
    }
    // Read without following a link someone put there since (its content would be shown).
    let (dir, rel) = beneath::locate(prefix, path)?;
    let current = dir.read(&rel)?;
    let old_sha256 = fsutil::sha256_hex(&current);
    let current_mode = meta.perm();
    let current_owner = (meta.uid, meta.gid);
    let owner_change = owners.differs(spec.owner.as_deref(), current_owner)?;
    let content_changed = old_sha256 != sha256;
    if !content_changed && current_mode == mode && owner_change.is_none() {
        return Ok(None);
    }
    let (kind, diff, restarts, reloads) = if content_changed {
        let old_text = String::from_utf8_lossy(&current);
        (
            ChangeKind::Update,
            Some(masker.diff(path, Some(&old_text), &spec.content)),
            spec.restarts.clone(),
            spec.reloads.clone(),
        )
    } else {
        (ChangeKind::Metadata, None, Vec::new(), Vec::new())
    };
    Ok(Some(FileChange {
        path: path.clone(),
        kind,
        mode,
        old_mode: (current_mode != mode).then_some(current_mode),
        owner: wanted_owner,
        old_owner: owner_change.map(|_| current_owner),
        sha256,
        old_sha256: Some(old_sha256),
        diff,
        restarts,
        reloads,
        planned_inode: Some(meta.id()),
    }))
}

/// The services to restart and to reload for `files`, by the one rule
/// ([`berth_render::ServiceChanges::of_files`]): sorted, restart wins over reload.
fn services_of(files: &[FileChange]) -> (Vec<String>, Vec<String>) {
    let changes = berth_render::ServiceChanges::of_files(
        files.iter().flat_map(|f| &f.restarts),
        files.iter().flat_map(|f| &f.reloads),
    );
    (changes.restart, changes.reload)
}

/// Replaces secret values in text shown to people: the one masking berth does.
#[derive(Debug, Clone)]
pub struct Masker {
    /// Every form each secret takes once a template escaped it (JSON, Python, shell ...),
    /// longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    /// A masker for these secret values (empty ones are ignored).
    pub fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<String> = secrets
            .iter()
            .flat_map(|s| berth_render::secret_encodings(s))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret masked and control characters escaped: a file a
    /// service user can write must not send escape sequences to the terminal.
    pub fn mask(&self, text: &str) -> String {
        let masked = self.secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), SECRET_MASK)
        });
        berth_model::terminal_safe(&masked)
    }

    /// A unified diff from `old` (`None`: the file does not exist) to `new`, masked.
    fn diff(&self, path: &Path, old: Option<&str>, new: &str) -> String {
        let old_masked = self.mask(old.unwrap_or(""));
        let new_masked = self.mask(new);
        let shown = path.display().to_string();
        let old_label = if old.is_some() {
            shown.as_str()
        } else {
            "/dev/null"
        };
        TextDiff::from_lines(&old_masked, &new_masked)
            .unified_diff()
            .context_radius(3)
            .header(old_label, &shown)
            .to_string()
    }
}

impl fmt::Display for ConvergePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "Nothing to change");
        }
        for user in &self.users {
            writeln!(f, "+ create user {user}")?;
        }
        for dir in &self.dirs {
            let (sign, verb) = sign_and_verb(dir.kind);
            write!(f, "{sign} {verb} directory {}", dir.path.display())?;
            write_metadata(
                f,
                dir.kind,
                dir.mode,
                dir.old_mode,
                dir.owner.as_deref(),
                dir.old_owner,
            )?;
            writeln!(f)?;
        }
        for file in &self.files {
            let (sign, verb) = sign_and_verb(file.kind);
            write!(f, "{sign} {verb} {}", file.path.display())?;
            write_metadata(
                f,
                file.kind,
                file.mode,
                file.old_mode,
                file.owner.as_deref(),
                file.old_owner,
            )?;
            writeln!(f)?;
            if let Some(diff) = &file.diff {
                for line in diff.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        for path in &self.removed {
            writeln!(f, "- remove {}", path.display())?;
        }
        if !self.restart.is_empty() {
            writeln!(f, "restart: {}", self.restart.join(", "))?;
        }
        if !self.reload.is_empty() {
            writeln!(f, "reload: {}", self.reload.join(", "))?;
        }
        Ok(())
    }
}

fn sign_and_verb(kind: ChangeKind) -> (char, &'static str) {
    match kind {
        ChangeKind::Create => ('+', "create"),
        ChangeKind::Update | ChangeKind::Metadata => ('~', "update"),
    }
}

fn write_metadata(
    f: &mut fmt::Formatter<'_>,
    kind: ChangeKind,
    mode: u32,
    old_mode: Option<u32>,
    owner: Option<&str>,
    old_owner: Option<(u32, u32)>,
) -> fmt::Result {
    let mut parts = Vec::new();
    match (kind, old_mode) {
        (ChangeKind::Create, _) => parts.push(format!("mode {mode:04o}")),
        (_, Some(old)) => parts.push(format!("mode {old:04o} -> {mode:04o}")),
        (_, None) => {}
    }
    match (kind, owner, old_owner) {
        (ChangeKind::Create, Some(owner), _) => parts.push(format!("owner {owner}")),
        (_, owner, Some((uid, gid))) => {
            parts.push(format!(
                "owner {uid}:{gid} -> {}",
                owner.unwrap_or("berth's user")
            ));
        }
        _ => {}
    }
    if parts.is_empty() {
        Ok(())
    } else {
        write!(f, " ({})", parts.join(", "))
    }
}

/// What [`apply`] changed, kept so that the whole change can be put back later, e.g.
/// when a service fails to start with the new files ([`Applied::roll_back`]).
pub struct Applied {
    /// What was done.
    pub report: ApplyReport,
    undo: Vec<Undo>,
    manage_owners: bool,
    prefix: PathBuf,
}

// Not derived: the undo log holds old file contents, secrets among them.
impl fmt::Debug for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applied")
            .field("report", &self.report)
            .field("undo_steps", &self.undo.len())
            .finish_non_exhaustive()
    }
}

impl Applied {
    /// Puts every directory and file [`apply`] changed back as it was, newest first.
    /// Directories it created that are no longer empty are kept: what a service wrote
    /// there is never deleted. Returns how many changes were undone.
    ///
    /// # Errors
    /// [`HostError::UndoFailed`] naming every path that could not be put back.
    pub fn roll_back(self) -> Result<usize> {
        let undone = self.undo.len();
        let not_restored = undo_all(self.undo, self.manage_owners, &self.prefix);
        if not_restored.is_empty() {
            Ok(undone)
        } else {
            Err(HostError::UndoFailed { not_restored })
        }
    }
}

/// Something [`apply`] did, and how to undo it.
enum Undo {
    RemoveDir(PathBuf),
    RemoveFile(PathBuf),
    RestoreFile {
        path: PathBuf,
        content: Vec<u8>,
        mode: u32,
        owner: (u32, u32),
    },
    /// The directory or file whose mode or owner changed, still open: undoing acts on
    /// it, never on whatever its path leads to by then.
    RestoreMetadata {
        node: Node,
        mode: u32,
        owner: (u32, u32),
    },
}

/// Makes the host match `plan`, taking content from `state` (the desired state the
/// plan was made from).
///
/// Directories come first (parents first), then files, each written atomically with
/// its mode (and owner, when the plan manages owners). If any step fails, every
/// directory and file changed so far is put back as it was, and the error says so.
/// Created users and their homes (`home/<user>`, [`users::ensure_users`]) are not
/// removed.
///
/// Every path beneath the instance's prefix is resolved without following symlinks
/// ([`beneath`]), and modes and owners are changed through the descriptor of what the
/// plan was made for: a directory replaced since it was planned (by a service user
/// who owns the directory holding it) is refused with [`HostError::Replaced`] or
/// [`HostError::SymlinkRefused`], never followed.
pub fn apply(plan: &ConvergePlan, state: &DesiredState) -> Result<Applied> {
    let mut report = ApplyReport {
        restart: plan.restart.clone(),
        reload: plan.reload.clone(),
        ..ApplyReport::default()
    };
    for name in &plan.users {
        let spec = state
            .users
            .iter()
            .find(|u| &u.name == name)
            .ok_or_else(|| HostError::UnknownUser { user: name.clone() })?;
        if users::ensure_user(spec)? {
            report.users_created.push(name.clone());
        }
    }

    let prefix = state.paths.prefix.as_path();
    let files: BTreeMap<&Path, &FileSpec> =
        state.files.iter().map(|f| (f.path.as_path(), f)).collect();
    let mut undo = Vec::new();
    let result = apply_dirs(plan, prefix, &mut undo, &mut report).and_then(|()| {
        // The users' homes under the prefix, which their processes get as `HOME`.
        if plan.manage_owners {
            users::ensure_users(&state.paths, &state.users, false)?;
        }
        for change in &plan.files {
            apply_file(plan, prefix, change, &files, &mut undo)?;
            report.changed.push(change.path.clone());
        }
        for path in &plan.removed {
            remove_file(prefix, path, &mut undo)?;
            report.changed.push(path.clone());
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(Applied {
            report,
            undo,
            manage_owners: plan.manage_owners,
            prefix: prefix.to_path_buf(),
        }),
        Err(error) => Err(roll_back(undo, plan.manage_owners, prefix, error)),
    }
}

/// Opens `path` (a directory or regular file) for a mode or owner change, checking it
/// is still what the plan was made for.
fn open_planned(prefix: &Path, path: &Path, planned: Option<(u64, u64)>) -> Result<Node> {
    let (dir, rel) = beneath::locate(prefix, path)?;
    let node = dir.open_node(&rel)?;
    if planned.is_some_and(|id| id != node.stat().id()) {
        return Err(HostError::Replaced {
            path: path.to_path_buf(),
        });
    }
    Ok(node)
}

fn apply_dirs(
    plan: &ConvergePlan,
    prefix: &Path,
    undo: &mut Vec<Undo>,
    report: &mut ApplyReport,
) -> Result<()> {
    for change in &plan.dirs {
        let owner = resolve_owner(plan.manage_owners, change.owner.as_deref())?;
        let planned = match change.kind {
            ChangeKind::Create => {
                // Create missing parents one by one, so each can be undone.
                let missing: Vec<&Path> = change
                    .path
                    .ancestors()
                    .take_while(|p| {
                        !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err()
                    })
                    .collect();
                for dir in missing.into_iter().rev() {
                    let (at, rel) = beneath::locate(prefix, dir)?;
                    // Parents get the usual 0755 (the final mode follows below).
                    at.create_dir(&rel, 0o755, None)?;
                    undo.push(Undo::RemoveDir(dir.to_path_buf()));
                    report.dirs_created.push(dir.to_path_buf());
                }
                None
            }
            ChangeKind::Update | ChangeKind::Metadata => Some(change.planned_inode),
        };
        let node = open_planned(prefix, &change.path, planned.flatten())?;
        if !node.stat().is_dir() {
            return Err(HostError::NotADirectory {
                path: change.path.clone(),
            });
        }
        let (mode, ids) = (node.stat().perm(), (node.stat().uid, node.stat().gid));
        node.set_mode(change.mode)?;
        if let Some(owner) = owner {
            node.set_owner(owner)?;
        }
        if planned.is_some() {
            undo.push(Undo::RestoreMetadata {
                node,
                mode,
                owner: ids,
            });
            report.dirs_changed.push(change.path.clone());
        }
    }
    Ok(())
}

fn apply_file(
    plan: &ConvergePlan,
    prefix: &Path,
    change: &FileChange,
    files: &BTreeMap<&Path, &FileSpec>,
    undo: &mut Vec<Undo>,
) -> Result<()> {
    let stale = || HostError::StalePlan {
        path: change.path.clone(),
    };
    let spec = files.get(change.path.as_path()).ok_or_else(stale)?;
    if fsutil::sha256_hex(spec.content.as_bytes()) != change.sha256 {
        return Err(stale());
    }
    let owner = resolve_owner(plan.manage_owners, change.owner.as_deref())?;
    match change.kind {
        ChangeKind::Create | ChangeKind::Update => {
            let (dir, rel) = beneath::locate(prefix, &change.path)?;
            match dir.stat(&rel)? {
                Some(st) if st.is_file() => {
                    let content = dir.read(&rel)?;
                    undo.push(Undo::RestoreFile {
                        path: change.path.clone(),
                        content,
                        mode: st.perm(),
                        owner: (st.uid, st.gid),
                    });
                }
                // Not a file, which the write below replaces only if it is a link.
                Some(_) => {}
                None => undo.push(Undo::RemoveFile(change.path.clone())),
            }
            let written = dir.write_atomic(&rel, spec.content.as_bytes(), change.mode, owner);
            if written.is_err()
                && matches!(undo.last(), Some(Undo::RemoveFile(p)) if *p == change.path)
            {
                // Nothing was created, so there is nothing to remove.
                undo.pop();
            }
            written
        }
        ChangeKind::Metadata => {
            let node = open_planned(prefix, &change.path, change.planned_inode)?;
            if !node.stat().is_file() {
                return Err(HostError::NotAFile {
                    path: change.path.clone(),
                });
            }
            let (mode, ids) = (node.stat().perm(), (node.stat().uid, node.stat().gid));
            node.set_mode(change.mode)?;
            if let Some(owner) = owner {
                node.set_owner(owner)?;
            }
            undo.push(Undo::RestoreMetadata {
                node,
                mode,
                owner: ids,
            });
            Ok(())
        }
    }
}

/// Remove a file berth wrote, keeping its content to put it back.
fn remove_file(prefix: &Path, path: &Path, undo: &mut Vec<Undo>) -> Result<()> {
    let (dir, rel) = beneath::locate(prefix, path)?;
    let node = dir.open_node(&rel)?;
    if !node.stat().is_file() {
        return Err(HostError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let content = dir.read(&rel)?;
    dir.remove_file(&rel)?;
    undo.push(Undo::RestoreFile {
        path: path.to_path_buf(),
        content,
        mode: node.stat().perm(),
        owner: (node.stat().uid, node.stat().gid),
    });
    Ok(())
}

/// The uid and gid to give a path: the named user, or berth's own user; `None` when
/// owners are not managed.
fn resolve_owner(manage: bool, owner: Option<&str>) -> Result<Option<(u32, u32)>> {
    if !manage {
        return Ok(None);
    }
    match owner {
        Some(user) => users::lookup(user)
            .map(Some)
            .ok_or_else(|| HostError::UnknownUser {
                user: user.to_owned(),
            }),
        None => Ok(Some((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ))),
    }
}

/// Undoes `undo` newest first and wraps `error` to say whether that worked.
fn roll_back(undo: Vec<Undo>, manage_owners: bool, prefix: &Path, error: HostError) -> HostError {
    let undone = undo.len();
    let not_restored = undo_all(undo, manage_owners, prefix);
    let source = Box::new(error);
    if not_restored.is_empty() {
        HostError::ApplyFailed { undone, source }
    } else {
        HostError::RollbackFailed {
            not_restored,
            source,
        }
    }
}

/// Puts the old mode and owner back on `node` (what was changed, through its
/// descriptor), then checks that its path still leads to it: if someone replaced it
/// in the meantime, that is an error naming the path, and what is there now was not
/// touched.
fn restore_metadata(
    node: &Node,
    mode: u32,
    owner: (u32, u32),
    manage_owners: bool,
    prefix: &Path,
) -> Result<()> {
    node.set_mode(mode)?;
    if manage_owners {
        node.set_owner(owner)?;
    }
    match open_planned(prefix, node.path(), Some(node.stat().id())) {
        Err(e @ (HostError::SymlinkRefused { .. } | HostError::Replaced { .. })) => {
            Err(HostError::ReplacedBeforeUndo {
                path: node.path().to_path_buf(),
                found: Box::new(e),
            })
        }
        // Still there, or gone: the old mode is back on what was changed.
        _ => Ok(()),
    }
}

/// Undoes `undo` newest first; returns the paths that could not be put back.
fn undo_all(undo: Vec<Undo>, manage_owners: bool, prefix: &Path) -> Vec<String> {
    let mut not_restored = Vec::new();
    for step in undo.into_iter().rev() {
        let (path, result) = match step {
            Undo::RemoveDir(path) => {
                // Something written there since is kept: nothing is lost.
                let r = beneath::locate(prefix, &path)
                    .and_then(|(dir, rel)| dir.remove_empty_dir(&rel).map(drop));
                (path, r)
            }
            Undo::RemoveFile(path) => {
                let r = beneath::locate(prefix, &path).and_then(|(dir, rel)| dir.remove_file(&rel));
                (path, r)
            }
            Undo::RestoreFile {
                path,
                content,
                mode,
                owner,
            } => {
                let r = beneath::locate(prefix, &path).and_then(|(dir, rel)| {
                    dir.write_atomic(&rel, &content, mode, manage_owners.then_some(owner))
                });
                (path, r)
            }
            Undo::RestoreMetadata { node, mode, owner } => {
                let r = restore_metadata(&node, mode, owner, manage_owners, prefix);
                (node.path().to_path_buf(), r)
            }
        };
        if let Err(e) = result {
            not_restored.push(format!("`{}` ({e})", path.display()));
        }
    }
    not_restored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, restarts: &[&str], reloads: &[&str]) -> FileChange {
        FileChange {
            path: path.into(),
            kind: ChangeKind::Update,
            mode: 0o644,
            old_mode: None,
            owner: None,
            old_owner: None,
            sha256: String::new(),
            old_sha256: None,
            diff: None,
            restarts: restarts.iter().map(|s| (*s).to_owned()).collect(),
            reloads: reloads.iter().map(|s| (*s).to_owned()).collect(),
            planned_inode: None,
        }
    }

    #[test]
    fn restart_wins_over_reload() {
        let files = [
            change("/a", &["web"], &["nginx"]),
            change("/b", &["nginx"], &["worker"]),
            change("/c", &[], &["worker", "redis"]),
        ];
        let (restart, reload) = services_of(&files);
        assert_eq!(restart, ["nginx", "web"]);
        assert_eq!(reload, ["redis", "worker"]);
    }

    #[test]
    fn masking_replaces_longest_secrets_first() {
        let masker = Masker::new(&["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(masker.mask("x=abcdef y=abc"), "x=******** y=********");
    }

    /// A secret full of characters that escaping changes is masked in every form a
    /// template gives it (the old literal replace missed `tojson`'s `\u003c`, so `plan`
    /// printed the key).
    #[test]
    fn masking_covers_every_escaped_form_of_a_secret() {
        let secret = "k<e>y&'\"\\é";
        let masker = Masker::new(&[secret.to_owned()]);
        // As minijinja's `tojson` writes it, and as the `python` format writes it.
        for rendered in [
            r#"SECRET_KEY = "k\u003ce\u003ey\u0026\u0027\"\\é""#,
            r#"SECRET_KEY = 'k<e>y&\'"\\\xe9'"#,
        ] {
            let shown = masker.mask(rendered);
            assert!(!shown.contains('k'), "{shown}");
            assert!(shown.contains(SECRET_MASK), "{shown}");
        }
    }

    /// Stops: a service user writing an escape sequence into a config file it owns,
    /// which `plan` would print raw to the administrator's terminal.
    #[test]
    fn masked_text_has_no_terminal_escapes() {
        let masker = Masker::new(&[]);
        assert_eq!(masker.mask("a\u{1b}[2J\tb\n"), "a\\x1b[2J\tb\n");
    }

    #[test]
    fn diff_of_a_new_file_and_an_update() {
        let masker = Masker::new(&["s3cret".to_owned()]);
        let created = masker.diff(Path::new("/etc/app.conf"), None, "a\npassword=s3cret\n");
        assert_eq!(
            created,
            "--- /dev/null\n+++ /etc/app.conf\n@@ -0,0 +1,2 @@\n+a\n+password=********\n"
        );
        let updated = masker.diff(Path::new("/etc/app.conf"), Some("a\nb\n"), "a\nc\n");
        assert!(updated.contains("-b\n+c\n"), "{updated}");
    }

    #[test]
    fn empty_plan_renders_as_nothing_to_change() {
        assert_eq!(ConvergePlan::default().to_string(), "Nothing to change\n");
    }
}
