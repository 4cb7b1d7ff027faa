//! What sits next to a bundled component (`releases/<version>/<component>`) while it is
//! built: the half-built tree, the builder's private home, a copy of the interpreter.
//!
//! Each is the component's path with a suffix, so a leftover is recognisable as
//! belonging to that component and as unfinished.

use std::path::{Path, PathBuf};

/// Row `releases/<version>/<component>.partial/`: the tree being built; it replaces
/// `dest` in one rename when complete, so `dest` is never half-built.
pub fn partial(dest: &Path) -> PathBuf {
    with_suffix(dest, ".partial")
}

/// Row `releases/<version>/<component>.build-home/`: the unprivileged builder's private
/// `HOME` and `TMPDIR`, removed after the build.
pub fn build_home(dest: &Path) -> PathBuf {
    with_suffix(dest, ".build-home")
}

/// Row `releases/<version>/<component>-python/`: a copy of an interpreter the builder
/// could not reach where it was (pyenv in root's home).
pub fn interpreter_copy(dest: &Path) -> PathBuf {
    with_suffix(dest, "-python")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_append_to_the_name() {
        let dest = Path::new("/r/1.0/netbox");
        assert_eq!(partial(dest), Path::new("/r/1.0/netbox.partial"));
        assert_eq!(build_home(dest), Path::new("/r/1.0/netbox.build-home"));
        assert_eq!(interpreter_copy(dest), Path::new("/r/1.0/netbox-python"));
    }
}
