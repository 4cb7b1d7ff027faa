//! The rules for paths and symlink targets inside an archive.

/// Why `path` is not a valid entry path, or `None` if it is one.
///
/// Valid paths are non-empty, relative, `/`-separated, and have no empty, `.` or `..`
/// component and no NUL byte.
pub(crate) fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("the path is empty");
    }
    if path.starts_with('/') {
        return Some("the path is absolute");
    }
    if path.contains('\0') {
        return Some("the path contains a NUL byte");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("the path has an empty component (`//` or a trailing `/`)"),
            "." => return Some("the path has a `.` component"),
            ".." => return Some("the path has a `..` component"),
            _ => {}
        }
    }
    None
}

/// Why the symlink stored at `path` with `target` could point outside the archive root,
/// or `None` if it cannot.
///
/// The target must be relative, and `..` may appear only at its start, at most as many
/// times as `path` has parent directories. With `..` only at the start, every symlink
/// resolves from its own (real) directory, so a chain of symlinks each passing this rule
/// cannot leave the root either (`l -> .` plus `m -> l/..` could, hence the rule).
pub(crate) fn symlink_problem(path: &str, target: &str) -> Option<&'static str> {
    if target.is_empty() {
        return Some("the symlink target is empty");
    }
    if target.starts_with('/') {
        return Some("the symlink target is absolute");
    }
    if target.contains('\0') {
        return Some("the symlink target contains a NUL byte");
    }
    let depth = path.matches('/').count();
    let mut ups = 0;
    let mut descended = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if descended => {
                return Some("the symlink target has a `..` after a directory name");
            }
            ".." => {
                ups += 1;
                if ups > depth {
                    return Some("the symlink target points outside the archive");
                }
            }
            _ => descended = true,
        }
    }
    None
}

/// An `O_*` flag for `OpenOptionsExt::custom_flags` (how the archive's own files are opened).
pub(crate) fn oflag(flags: rustix::fs::OFlags) -> i32 {
    i32::try_from(flags.bits()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        for ok in ["a", "a/b", "data/media/x.png", "a..b/.c", "..."] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "./a", "a/./b", "..", "../a", "a/../b", "a/..", "a\0b",
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn symlink_targets() {
        for (path, target) in [
            ("a/l", "b"),
            ("a/l", "../b"),
            ("a/b/l", "../../c/d"),
            ("l", "./x/./y"),
            ("a/l", "./../b"),
        ] {
            assert_eq!(symlink_problem(path, target), None, "{path} -> {target}");
        }
        for (path, target) in [
            ("l", ".."),
            ("l", "../x"),
            ("a/l", "../../x"),
            ("a/l", "/etc/passwd"),
            ("a/l", "b/../.."),
            ("a/l", "b/../c"),
            ("a/l", ""),
        ] {
            assert!(
                symlink_problem(path, target).is_some(),
                "{path} -> {target}"
            );
        }
    }
}
