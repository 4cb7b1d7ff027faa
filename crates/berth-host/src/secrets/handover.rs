//! How a hook hands over the secrets it makes (`from_hook`): an empty directory of its
//! own, `<prefix>/tmp/hook-secrets/<hook>/` (`BERTH_SECRETS_OUT`), that it writes one
//! file per secret into; berth, as root, reads each back by descriptor and keeps it
//! in the secret store.
//!
//! The hook's user owns that directory and may put anything in it: a symlink to
//! `/etc/shadow`, a FIFO, a hard link, a file of gigabytes, a file of another user's.
//! So the directory is made by root in a root-owned 0711 parent (no one else can
//! replace it or reach into it), opened once and checked to be the very directory
//! made; each value is opened beneath it with `O_NOFOLLOW` and without following any
//! symlink, and must be a regular file of the hook's user with one link and at most
//! [`SecretSpec::MAX_HOOK_VALUE`] bytes (a trailing newline aside), read through that
//! descriptor and never past the cap; the value must then pass
//! [`SecretSpec::check_value`]. Errors never carry the value.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_render::SecretSpec;

use crate::beneath::SafeDir;
use crate::secrets::SecretStore;
use crate::{HostError, Result};

/// Mode of `tmp/` and `tmp/hook-secrets/`: root's, others may only pass through.
const PASS_THROUGH: u32 = 0o711;

/// A hook's hand-over directory, made empty before the hook runs.
#[derive(Debug)]
pub struct Handover {
    hook: String,
    /// The hand-over directory, as the hook sees it (`BERTH_SECRETS_OUT`).
    path: PathBuf,
    /// `tmp/hook-secrets/`, opened from the prefix.
    parent: SafeDir,
    /// The directory made, by descriptor.
    dir: SafeDir,
    /// Who the hook runs as: the owner every value must have.
    owner: (u32, u32),
}

impl Handover {
    /// Makes `<prefix>/tmp/hook-secrets/<hook>/` empty, mode 0700, owned by `owner`
    /// (the hook's user; `None`: the user running berth), removing what an earlier
    /// run left there. `prefix` is the instance's, which only root can change.
    pub fn prepare(prefix: &Path, hook: &str, owner: Option<(u32, u32)>) -> Result<Self> {
        let paths = berth_layout::Paths::unversioned(prefix);
        let rel = |p: &Path| p.strip_prefix(prefix).map(Path::to_path_buf);
        let (Ok(tmp), Ok(parent_rel)) = (rel(&paths.tmp()), rel(&paths.hook_secrets_dir())) else {
            unreachable!("the layout's paths are beneath its prefix");
        };
        let root = SafeDir::open_trusted(prefix)?;
        for dir in [&tmp, &parent_rel] {
            let d = root.create_dir_all(dir, PASS_THROUGH, None)?;
            let st = d.stat_self()?;
            if st.perm() != PASS_THROUGH {
                d.open_node(Path::new(""))?.set_mode(PASS_THROUGH)?;
            }
        }
        let parent = root.open_dir(&parent_rel)?;
        let name = Path::new(hook);
        // Left by a run that was killed, or by a failed hook: never reused.
        parent.remove_tree(name)?;
        let owner = owner.unwrap_or_else(|| {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        });
        let dir = parent.create_dir(name, 0o700, Some(owner))?;
        Ok(Self {
            hook: hook.to_owned(),
            path: paths.hook_secrets_out(hook),
            parent,
            dir,
            owner,
        })
    }

    /// The directory the hook writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value the hook handed over for `spec`, checked: a missing, unreadable or
    /// unacceptable one is an error that says why (never what it holds).
    pub fn take(&self, spec: &SecretSpec) -> Result<String> {
        let failed = |why: String| HostError::HookSecret {
            hook: self.hook.clone(),
            name: spec.name.clone(),
            why,
        };
        // Still the directory made for this run (its parent is root's, so this only
        // fails if something is badly wrong).
        let now = self.parent.open_dir(Path::new(&self.hook))?;
        if now.stat_self()?.id() != self.dir.stat_self()?.id() {
            return Err(HostError::Replaced {
                path: self.path.clone(),
            });
        }
        let file = self.path.join(&spec.name);
        let shown = file.display();
        let name = Path::new(&spec.name);
        let Some(st) = self.dir.stat(name)? else {
            return Err(failed(format!(
                "nothing was written to `{shown}` ($BERTH_SECRETS_OUT/{}){}",
                spec.name,
                self.others()
            )));
        };
        if st.is_symlink() {
            return Err(failed(format!(
                "`{shown}` is a symbolic link; write the value into a file of its own"
            )));
        }
        if !st.is_file() {
            return Err(failed(format!("`{shown}` is not a regular file")));
        }
        // Opened without following a symlink, a FIFO or device refused unopened: what
        // is checked below is what is read.
        let handle = self.dir.open_file(name)?;
        let meta = handle.metadata().map_err(|source| HostError::Read {
            path: file.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(failed(format!("`{shown}` is not a regular file")));
        }
        if meta.uid() != self.owner.0 {
            return Err(failed(format!(
                "`{shown}` belongs to uid {}, not to the hook's user (uid {})",
                meta.uid(),
                self.owner.0
            )));
        }
        if meta.nlink() != 1 {
            return Err(failed(format!(
                "`{shown}` has {} hard links; write the value into a new file",
                meta.nlink()
            )));
        }
        // A line break after the value is allowed (`echo`).
        let cap = SecretSpec::MAX_HOOK_VALUE + 2;
        if meta.len() > cap as u64 {
            return Err(failed(format!(
                "`{shown}` has {} bytes; a secret a hook makes is at most {} bytes",
                meta.len(),
                SecretSpec::MAX_HOOK_VALUE
            )));
        }
        let mut bytes = Vec::new();
        handle
            .take(cap as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| HostError::Read {
                path: file.clone(),
                source,
            })?;
        if bytes.len() > cap {
            return Err(failed(format!(
                "`{shown}` grew past {} bytes while it was read",
                SecretSpec::MAX_HOOK_VALUE
            )));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| failed(format!("`{shown}` is not UTF-8 text")))?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        spec.check_value(value)
            .map_err(|why| failed(format!("the value in `{shown}` is refused: {why}")))?;
        Ok(value.to_owned())
    }

    /// The names the hook did write, for a message about the one it did not.
    fn others(&self) -> String {
        let mut names: Vec<String> = self
            .dir
            .names()
            .unwrap_or_default()
            .iter()
            .map(|n| n.to_string_lossy().escape_debug().to_string())
            .collect();
        if names.is_empty() {
            return String::new();
        }
        names.sort();
        format!("; it wrote {}", names.join(", "))
    }

    /// Takes every value the hook made, removes the hand-over directory (whatever it
    /// held: no value is left lying there), then keeps each value in `store` (0600,
    /// owned by its spec's owner), replacing what was there. Nothing is stored unless
    /// every value is acceptable. Returns the names stored.
    pub fn store_all(self, specs: &[&SecretSpec], store: &SecretStore) -> Result<Vec<String>> {
        let values = specs
            .iter()
            .map(|spec| self.take(spec).map(|v| (*spec, v)))
            .collect::<Result<Vec<_>>>();
        self.remove()?;
        let values = values?;
        for (spec, value) in &values {
            store.put(spec, value)?;
        }
        Ok(values.into_iter().map(|(s, _)| s.name.clone()).collect())
    }

    /// Removes the hand-over directory and everything in it, by descriptors.
    pub fn remove(self) -> Result<()> {
        self.parent.remove_tree(Path::new(&self.hook))?;
        Ok(())
    }
}
