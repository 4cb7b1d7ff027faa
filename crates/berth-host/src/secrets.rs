//! The secret store: one file per secret under `<prefix>/secrets`, generated once, or
//! handed over once by the hook that makes it ([`handover`]).

pub mod handover;

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use berth_render::SecretSpec;
use rand::TryRng;
use rand::rngs::SysRng;

use crate::beneath::{self, SafeDir, Stat};
use crate::{HostError, Result, fsutil, users};

/// The instance's secrets: `<dir>/<name>`, each mode 0600, in a directory of mode 0700.
///
/// A secret is generated once, from the operating system's random number generator,
/// and never regenerated: losing it would lock the app out of its own data. Values
/// never appear in errors.
#[derive(Debug)]
pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    /// Opens the store at `dir`, creating it with mode 0700 (and tightening an
    /// existing directory to 0700).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| HostError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        // The store's directory is the prefix's, root's: opened as it is, then
        // tightened through its descriptor.
        let store = SafeDir::open_trusted(&dir)?;
        let node = store.open_node(Path::new(""))?;
        if node.stat().perm() != 0o700 {
            node.set_mode(0o700)?;
        }
        Ok(Self { dir })
    }

    /// The store at `dir` if it exists, changing nothing (for dry runs and reads).
    pub fn existing(dir: impl AsRef<Path>) -> Option<Self> {
        let dir = dir.as_ref();
        dir.is_dir().then(|| Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every secret in `specs`, generating (and storing) the missing ones that
    /// berth generates; a missing one a hook makes (`from_hook`) is left out until the
    /// hook has handed it over. Existing secrets are never regenerated. When running as
    /// root, each file is given to the spec's owner.
    ///
    /// Refuses a secret file that is readable by group or others, or empty.
    pub fn ensure(&self, specs: &[SecretSpec]) -> Result<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        for spec in specs {
            let path = self.path_of(&spec.name)?;
            let owner = owner_of(spec)?;
            let value = if let Some((value, stat)) = read_secret(&path)? {
                if let Some((uid, gid)) = owner
                    && (stat.uid, stat.gid) != (uid, gid)
                {
                    // By descriptor: the file is the one just read, never a link.
                    SafeDir::open_trusted(&self.dir)?
                        .set_owner(Path::new(&spec.name), (uid, gid))?;
                }
                value
            } else if spec.from_hook.is_some() {
                continue;
            } else {
                let value = generate(spec)?;
                fsutil::write_atomic(&path, value.as_bytes(), 0o600, owner)?;
                value
            };
            values.insert(spec.name.clone(), value);
        }
        Ok(values)
    }

    /// Whether secret `name` is in the store (a symlink in its place is refused).
    pub fn contains(&self, name: &str) -> Result<bool> {
        let path = self.path_of(name)?;
        let (dir, file) = beneath::in_parent(&path)?;
        match dir.stat(&file)? {
            None => Ok(false),
            Some(st) if st.is_symlink() => Err(HostError::SymlinkRefused { path }),
            Some(_) => Ok(true),
        }
    }

    /// Keeps `value` as secret `spec` (a value a hook handed over): checked against the
    /// declaration, written to a new file (0600, the spec's owner when running as root)
    /// renamed over the old one, so the store holds the old value or the new, never a
    /// part.
    pub fn put(&self, spec: &SecretSpec, value: &str) -> Result<()> {
        spec.check_value(value)
            .map_err(|reason| HostError::InvalidSecretSpec {
                name: spec.name.clone(),
                reason: format!("the value to keep is refused: {reason}"),
            })?;
        let path = self.path_of(&spec.name)?;
        let (dir, file) = beneath::in_parent(&path)?;
        dir.write_atomic(&file, value.as_bytes(), 0o600, owner_of(spec)?)
    }

    /// The stored value of secret `name`, if it exists.
    pub fn get(&self, name: &str) -> Result<Option<String>> {
        let path = self.path_of(name)?;
        Ok(read_secret(&path)?.map(|(value, _)| value))
    }

    fn path_of(&self, name: &str) -> Result<PathBuf> {
        let valid = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.starts_with('.');
        if !valid {
            return Err(HostError::InvalidSecretSpec {
                name: name.to_owned(),
                reason: "the name must be a plain file name".to_owned(),
            });
        }
        Ok(self.dir.join(name))
    }
}

/// The owner a secret file gets: its spec's user when running as root.
fn owner_of(spec: &SecretSpec) -> Result<Option<(u32, u32)>> {
    match &spec.owner {
        Some(user) if users::is_root() => {
            Ok(Some(users::lookup(user).ok_or_else(|| {
                HostError::UnknownUser { user: user.clone() }
            })?))
        }
        _ => Ok(None),
    }
}

/// Reads and checks one secret file; `None` when it does not exist. A symlink in its
/// place is refused, not followed.
fn read_secret(path: &Path) -> Result<Option<(String, Stat)>> {
    let (dir, name) = beneath::in_parent(path)?;
    let Some(stat) = dir.stat(&name)? else {
        return Ok(None);
    };
    if stat.is_symlink() {
        return Err(HostError::SymlinkRefused {
            path: path.to_path_buf(),
        });
    }
    if !stat.is_file() {
        return Err(HostError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut file = dir.open_file(&name)?;
    let stat = dir.stat(&name)?.unwrap_or(stat);
    let mode = stat.perm();
    if mode & 0o077 != 0 {
        return Err(HostError::SecretExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| HostError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8(bytes).map_err(|_| HostError::SecretNotText {
        path: path.to_path_buf(),
    })?;
    // Tolerate a trailing newline left by an editor or `echo`.
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(HostError::SecretEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(Some((value.to_owned(), stat)))
}

/// A new random value for `spec`: `spec.length` characters drawn uniformly from
/// `spec.alphabet`.
fn generate(spec: &SecretSpec) -> Result<String> {
    let alphabet: Vec<char> = spec.alphabet.chars().collect();
    let invalid = |reason: &str| HostError::InvalidSecretSpec {
        name: spec.name.clone(),
        reason: reason.to_owned(),
    };
    if alphabet.len() < 2 {
        return Err(invalid("its alphabet needs at least two characters"));
    }
    if spec.length == 0 {
        return Err(invalid("its length must be at least 1"));
    }
    let mut rng = SysRng;
    let mut next = || {
        rng.try_next_u32().map_err(|source| HostError::Random {
            name: spec.name.clone(),
            source,
        })
    };
    (0..spec.length)
        .map(|_| pick_uniform(&alphabet, &mut next))
        .collect()
}

/// Picks one element of `alphabet` uniformly using 32-bit random draws, rejecting
/// the draws that would bias the result.
fn pick_uniform(alphabet: &[char], next: &mut impl FnMut() -> Result<u32>) -> Result<char> {
    let n = u32::try_from(alphabet.len()).unwrap_or(u32::MAX);
    // The largest multiple of n that fits: draws at or above it are rejected.
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let draw = next()?;
        if draw < zone {
            return Ok(alphabet[(draw % n) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_uniform_rejects_biased_draws() {
        // 2^32 - 1 = 3 * 613566756 + 3 when drawing from 7 characters.
        let alphabet = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
        let zone = u32::MAX - 3;
        let mut draws = vec![u32::MAX, zone, 8].into_iter();
        let mut next = || Ok(draws.next().unwrap());
        assert_eq!(pick_uniform(&alphabet, &mut next).unwrap(), 'b');
    }

    #[test]
    fn generate_uses_only_the_alphabet_and_the_length() {
        let spec = SecretSpec {
            name: "k".to_owned(),
            length: 64,
            alphabet: "xyz".to_owned(),
            owner: None,
            from_hook: None,
        };
        let value = generate(&spec).unwrap();
        assert_eq!(value.chars().count(), 64);
        assert!(value.chars().all(|c| "xyz".contains(c)));
    }

    #[test]
    fn generate_refuses_a_bad_spec() {
        let spec = SecretSpec {
            name: "k".to_owned(),
            length: 8,
            alphabet: "x".to_owned(),
            owner: None,
            from_hook: None,
        };
        assert!(matches!(
            generate(&spec),
            Err(HostError::InvalidSecretSpec { .. })
        ));
    }
}
