//! The instance's prefix, held to a plain shape.
//!
//! Every path berth derives starts with the prefix: config files, sockets, the
//! environment and arguments of services and hooks, the systemd unit. A prefix with a
//! space, a quote or `$(…)` would break (or run code in) whatever pastes one of those
//! paths into text another program parses, and `..` or a symlinked spelling would make
//! "beneath the prefix" mean something else than it reads. So the prefix is an
//! absolute path of letters, digits and `._/+-` only, without `..`, and not `/`.

use std::path::{Component, Path, PathBuf};

use crate::{Diagnostic, Diagnostics, shown};

/// How to choose a prefix berth accepts (the `help:` of every refusal).
const PREFIX_HELP: &str = "pass `--prefix DIR` (or `BERTH_PREFIX`) with an absolute directory whose \
     path has only letters, digits and `._/+-`, no `..`, e.g. `--prefix /var/opt/berth/netbox`";

/// Whether `c` may appear in a prefix.
fn is_prefix_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-')
}

/// Checks that `path` is a prefix berth accepts and returns it normalised: `.`
/// components, repeated and trailing slashes are dropped (they change nothing).
///
/// Refused, naming the value and the fix: a relative path, a `..` component, the root
/// directory itself, and any character other than ASCII letters, digits and `._/+-`
/// (a space, a quote, `$`, a control character, anything not ASCII or not UTF-8).
///
/// ```
/// use std::path::Path;
/// let p = berth_model::check_prefix(Path::new("/srv//berth/./netbox/")).unwrap();
/// assert_eq!(p, Path::new("/srv/berth/netbox"));
/// assert!(berth_model::check_prefix(Path::new("/srv/$(id)")).is_err());
/// assert!(berth_model::check_prefix(Path::new("/srv/../etc")).is_err());
/// ```
pub fn check_prefix(path: &Path) -> Result<PathBuf, Diagnostics> {
    let text = path.to_string_lossy();
    let refuse = |why: String| -> Diagnostics {
        Diagnostic::without_position(
            text.as_ref(),
            format!("The prefix `{}` {why}", shown(&text)),
        )
        .with_help(PREFIX_HELP)
        .into()
    };
    let Some(text_ok) = path.to_str() else {
        return Err(refuse(
            "is not UTF-8; a prefix may have only letters, digits and `._/+-`".to_owned(),
        ));
    };
    if let Some(bad) = text_ok.chars().find(|c| !is_prefix_char(*c)) {
        let what = match bad {
            ' ' => "a space".to_owned(),
            c if c.is_control() || crate::is_unsafe_char(c) => {
                format!("the control character `{}`", shown(&c.to_string()))
            }
            c => format!("`{c}`"),
        };
        return Err(refuse(format!(
            "has {what}; a prefix may have only letters, digits and `._/+-`, because its paths \
             end up in config files, scripts and command lines"
        )));
    }
    if !path.is_absolute() {
        return Err(refuse("is not an absolute path".to_owned()));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refuse(
                    "has a `..` component, so the directory it names depends on the symlinks on the way"
                        .to_owned(),
                ));
            }
        }
    }
    if out == Path::new("/") {
        return Err(refuse(
            "is the root directory: an instance needs a directory of its own".to_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use proptest::prelude::*;

    use super::check_prefix;

    fn refused(p: &str) -> String {
        check_prefix(Path::new(p)).unwrap_err().to_string()
    }

    #[test]
    fn plain_prefixes_are_normalised() {
        for (given, want) in [
            ("/var/opt/berth/netbox", "/var/opt/berth/netbox"),
            ("/tmp/berth-bad-Ab3_x.y+z", "/tmp/berth-bad-Ab3_x.y+z"),
            ("//srv///a/./b/", "/srv/a/b"),
        ] {
            assert_eq!(check_prefix(Path::new(given)).unwrap(), Path::new(want));
        }
    }

    /// A prefix with shell syntax ran code as the postgresql user when a hook pasted
    /// `{{ paths.run }}` into a `sh -c` script; a space broke the hook.
    #[test]
    fn shell_syntax_spaces_and_controls_are_refused_with_the_fix() {
        let e = refused("/srv/$(touch /tmp/pwned)");
        assert!(
            e.contains("The prefix `/srv/$(touch /tmp/pwned)` has `$`"),
            "{e}"
        );
        assert!(e.contains("help: pass `--prefix DIR`"), "{e}");
        assert!(refused("/srv/my app").contains("has a space"));
        assert!(refused("/srv/a'b").contains("has `'`"));
        assert!(refused("/srv/a;b").contains("has `;`"));
        let e = refused("/srv/a\nb");
        assert!(e.contains("the control character `\\n`"), "{e}");
        assert!(refused("/srv/\u{1b}[2J").contains("`\\x1b`"));
        assert!(refused("/srv/caf\u{e9}").contains("has `\u{e9}`"));
        let latin1 = Path::new(OsStr::from_bytes(b"/srv/caf\xe9"));
        let e = check_prefix(latin1).unwrap_err().to_string();
        assert!(e.contains("is not UTF-8"), "{e}");
    }

    #[test]
    fn relative_parent_and_root_are_refused() {
        assert!(refused("srv/app").contains("is not an absolute path"));
        assert!(refused("/srv/../etc").contains("`..`"));
        assert!(refused("/").contains("root directory"));
        assert!(refused("/./").contains("root directory"));
    }

    proptest! {
        /// Whatever is accepted is absolute, normalised and made of the allowed
        /// characters only.
        #[test]
        fn accepted_prefixes_are_plain(s in "(/|[a-z.]|\\PC){0,40}") {
            if let Ok(p) = check_prefix(Path::new(&s)) {
                let t = p.to_str().unwrap();
                prop_assert!(t.starts_with('/') && t.len() > 1 && !t.ends_with('/'));
                prop_assert!(!t.contains("//"));
                prop_assert!(t.split('/').skip(1).all(|c| c != "." && c != ".."));
                prop_assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c)));
            }
        }
    }
}
