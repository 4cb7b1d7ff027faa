//! RustSec's `patched` and `unaffected` requirements, and whether a version matches
//! them.
//!
//! A version is affected unless it matches one of `patched` or `unaffected`. The
//! requirements are SemVer requirements as Cargo writes them, but they are matched
//! without Cargo's rule that keeps pre-releases out of ranges (`1.2.0-beta` does not
//! match `>= 1.1.0` in Cargo): that rule is for choosing what to install, and here it
//! would call every pre-release of a patched line vulnerable.

use semver::{Comparator, Op, Version, VersionReq};

/// Whether `version` is affected: it matches none of `patched` and `unaffected`.
pub(crate) fn affects(patched: &[String], unaffected: &[String], version: &Version) -> bool {
    !patched
        .iter()
        .chain(unaffected)
        .any(|req| VersionReq::parse(req).is_ok_and(|req| req_matches(&req, version)))
}

/// A requirement matched on version order alone: every comparator holds.
fn req_matches(req: &VersionReq, v: &Version) -> bool {
    req.comparators.iter().all(|c| comparator_matches(c, v))
}

fn comparator_matches(c: &Comparator, v: &Version) -> bool {
    match c.op {
        Op::Exact | Op::Wildcard => matches_exact(c, v),
        Op::Greater => matches_greater(c, v),
        Op::GreaterEq => matches_exact(c, v) || matches_greater(c, v),
        Op::Less => matches_less(c, v),
        Op::LessEq => matches_exact(c, v) || matches_less(c, v),
        Op::Tilde => matches_tilde(c, v),
        // `^` is Cargo's default; `Op` is non-exhaustive, and a newer operator is
        // read as the default one.
        _ => matches_caret(c, v),
    }
}

/// `=1.2.3`, `=1.2` (any 1.2.x), `=1` (any 1.x.y).
fn matches_exact(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major || c.minor.is_some_and(|m| v.minor != m) {
        return false;
    }
    match c.patch {
        Some(p) => v.patch == p && v.pre == c.pre,
        None => true,
    }
}

fn matches_greater(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return v.major > c.major;
    }
    let Some(minor) = c.minor else { return false };
    if v.minor != minor {
        return v.minor > minor;
    }
    let Some(patch) = c.patch else { return false };
    if v.patch != patch {
        return v.patch > patch;
    }
    v.pre > c.pre
}

fn matches_less(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return v.major < c.major;
    }
    let Some(minor) = c.minor else {
        // `< 1` with v 1.x.y-pre: a pre-release of 1.0.0 is below 1.
        return v.minor == 0 && v.patch == 0 && !v.pre.is_empty();
    };
    if v.minor != minor {
        return v.minor < minor;
    }
    let Some(patch) = c.patch else {
        return v.patch == 0 && !v.pre.is_empty();
    };
    if v.patch != patch {
        return v.patch < patch;
    }
    v.pre < c.pre
}

/// `~1.2.3`: `>= 1.2.3, < 1.3.0`; `~1.2`: 1.2.x; `~1`: 1.x.
fn matches_tilde(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major || c.minor.is_some_and(|m| v.minor != m) {
        return false;
    }
    match c.patch {
        Some(p) if v.patch != p => v.patch > p,
        Some(_) => v.pre >= c.pre,
        None => true,
    }
}

/// `^1.2.3`: `>= 1.2.3, < 2.0.0`; `^0.2.3`: `>= 0.2.3, < 0.3.0`; `^0.0.3`: `=0.0.3`.
fn matches_caret(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return false;
    }
    let Some(minor) = c.minor else { return true };
    let Some(patch) = c.patch else {
        return if c.major > 0 {
            v.minor >= minor
        } else {
            v.minor == minor
        };
    };
    if c.major > 0 {
        if v.minor != minor {
            return v.minor > minor;
        }
        if v.patch != patch {
            return v.patch > patch;
        }
    } else if minor > 0 {
        if v.minor != minor {
            return false;
        }
        if v.patch != patch {
            return v.patch > patch;
        }
    } else if v.minor != minor || v.patch != patch {
        return false;
    }
    v.pre >= c.pre
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|&s| s.to_owned()).collect()
    }

    #[test]
    fn patched_and_unaffected() {
        // The shape of RustSec's own example advisory.
        let patched = strings(&[">= 1.2.3, < 1.3.0", ">= 1.3.4"]);
        let unaffected = strings(&["<= 0.1.2"]);
        let affected = |s: &str| affects(&patched, &unaffected, &v(s));
        assert!(!affected("0.1.2"), "unaffected");
        assert!(affected("0.1.3"));
        assert!(affected("1.2.2"));
        assert!(!affected("1.2.3"), "exactly the patched version");
        assert!(!affected("1.2.9"));
        assert!(affected("1.3.0"));
        assert!(affected("1.3.3"));
        assert!(!affected("1.3.4"));
        assert!(!affected("2.0.0"));
    }

    #[test]
    fn nothing_patched_means_every_version() {
        assert!(affects(&[], &[], &v("0.0.1")));
        assert!(affects(&[], &[], &v("99.0.0")));
    }

    #[test]
    fn caret_and_tilde_and_bare() {
        // A bare requirement is a caret requirement.
        let patched = strings(&["^0.2.5", "~0.3.1", ">= 1"]);
        let affected = |s: &str| affects(&patched, &[], &v(s));
        assert!(affected("0.2.4"));
        assert!(!affected("0.2.5"));
        assert!(!affected("0.2.9"));
        assert!(affected("0.3.0"));
        assert!(!affected("0.3.2"));
        assert!(affected("0.4.0"));
        assert!(!affected("1.0.0"));
    }

    #[test]
    fn pre_releases_compare_by_order() {
        let patched = strings(&[">= 1.1.0"]);
        let affected = |s: &str| affects(&patched, &[], &v(s));
        assert!(!affected("1.2.0-beta.1"), "a pre-release after the fix");
        assert!(affected("1.1.0-rc.1"), "a pre-release of the fix itself");
        let unaffected = strings(&["< 0.6.0-rc1"]);
        assert!(!affects(&[], &unaffected, &v("0.5.9")));
        assert!(affects(&[], &unaffected, &v("0.6.0-rc1")));
        assert!(!affects(&[], &strings(&["< 1.0"]), &v("1.0.0-alpha")));
    }
}
