//! RustSec advisories: TOML front matter in a ```` ```toml ```` block at the top of a
//! Markdown file, the title being the first `# ` heading after it.
//!
//! A version is affected unless it matches one of `patched` or `unaffected`. The
//! requirements are SemVer requirements as Cargo writes them, but they are matched
//! without Cargo's rule that keeps pre-releases out of ranges (`1.2.0-beta` does not
//! match `>= 1.1.0` in Cargo): that rule is for choosing what to install, and here it
//! would call every pre-release of a patched line vulnerable.

use std::path::Path;

use semver::{Comparator, Op, Version, VersionReq};
use serde::Deserialize;

use crate::db::{Advisory, Affected, Kind};
use crate::severity::Cvss;
use crate::{AuditError, Ecosystem};

#[derive(Deserialize)]
struct Doc {
    advisory: DocAdvisory,
    #[serde(default)]
    versions: DocVersions,
}

#[derive(Deserialize)]
struct DocAdvisory {
    id: String,
    package: String,
    date: TomlDate,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    cvss: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    withdrawn: Option<TomlDate>,
}

/// A date as RustSec writes it: usually a string (`"2020-12-21"`), sometimes a TOML
/// date.
#[derive(Deserialize)]
#[serde(untagged)]
enum TomlDate {
    Toml(toml::value::Datetime),
    Text(String),
}

impl TomlDate {
    fn date(&self) -> Option<jiff::civil::Date> {
        match self {
            Self::Toml(d) => d.to_string().get(..10)?.parse().ok(),
            Self::Text(s) => crate::db::date_prefix(s.trim()),
        }
    }
}

#[derive(Deserialize, Default)]
struct DocVersions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

/// What one RustSec file holds.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// `None` when withdrawn.
    pub advisory: Option<Advisory>,
    pub date: Option<jiff::civil::Date>,
}

/// Parses one advisory. `path` is for messages only.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Parsed, AuditError> {
    let bad = |line: Option<usize>, what: String| AuditError::Parse {
        file: path.to_path_buf(),
        line,
        what,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(after_fence) = text
        .strip_prefix("```toml\n")
        .or_else(|| text.strip_prefix("```toml\r\n"))
    else {
        return Err(bad(
            Some(1),
            "does not start with a ```toml front-matter block".to_owned(),
        ));
    };
    let fence_len = text.len() - after_fence.len();
    let end = find_closing_fence(after_fence)
        .ok_or_else(|| bad(None, "the ```toml block is never closed".to_owned()))?;
    let front = &after_fence[..end];
    let body = &after_fence[end..];

    let doc: Doc = toml::from_str(front).map_err(|e| {
        // Lines counted in the whole file: the fence is line 1.
        let line = e
            .span()
            .map(|span| text[..fence_len + span.start].matches('\n').count() + 1);
        bad(line, e.message().to_owned())
    })?;
    let a = doc.advisory;
    let date = a.date.date();
    if a.withdrawn.is_some() {
        return Ok(Parsed {
            advisory: None,
            date,
        });
    }
    let reqs = |reqs: &[String]| -> Result<Vec<String>, AuditError> {
        reqs.iter()
            .map(|r| {
                let r = r.trim();
                VersionReq::parse(r)
                    .map(|_| r.to_owned())
                    .map_err(|e| bad(None, format!("`{r}` is not a SemVer requirement ({e})")))
            })
            .collect()
    };
    let patched = reqs(&doc.versions.patched)?;
    let unaffected = reqs(&doc.versions.unaffected)?;
    let title = body
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .map_or_else(|| a.id.clone(), |t| t.trim().to_owned());
    let kind = match a.informational.as_deref().map(str::trim) {
        None | Some("") => Kind::Vulnerability,
        Some(what) => Kind::Informational(what.to_owned()),
    };
    let url = a
        .url
        .clone()
        .or_else(|| a.references.first().cloned())
        .or_else(|| Some(format!("https://rustsec.org/advisories/{}.html", a.id)));
    Ok(Parsed {
        advisory: Some(Advisory {
            cvss: a.cvss.as_deref().and_then(Cvss::parse),
            id: a.id,
            aliases: a.aliases,
            ecosystem: Ecosystem::CratesIo,
            package: a.package,
            title,
            url,
            kind,
            date,
            affected: Affected::RustSec {
                patched,
                unaffected,
            },
        }),
        date,
    })
}

/// Where the closing ```` ``` ```` line starts.
fn find_closing_fence(s: &str) -> Option<usize> {
    let mut at = 0;
    for line in s.split_inclusive('\n') {
        if line.trim_end() == "```" {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// Whether `version` is affected: it matches none of `patched` and `unaffected`.
pub(crate) fn affects(patched: &[String], unaffected: &[String], version: &Version) -> bool {
    !patched
        .iter()
        .chain(unaffected)
        .any(|req| VersionReq::parse(req).is_ok_and(|req| req_matches(&req, version)))
}

/// A requirement matched on version order alone: every comparator holds.
pub(crate) fn req_matches(req: &VersionReq, v: &Version) -> bool {
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

    #[test]
    fn parses_front_matter_and_title() {
        let text = "```toml\n[advisory]\nid = \"RUSTSEC-2024-0001\"\npackage = \"foo\"\ndate = \"2024-03-20\"\ninformational = \"unmaintained\"\n\n[versions]\npatched = []\nunaffected = [\">= 0.0.10 \"]\n```\n\n# foo is unmaintained\n\nText.\n";
        let p = parse(Path::new("f.md"), text).unwrap();
        let a = p.advisory.unwrap();
        assert_eq!(a.title, "foo is unmaintained");
        assert_eq!(a.kind, Kind::Informational("unmaintained".to_owned()));
        assert_eq!(p.date, Some(jiff::civil::date(2024, 3, 20)));
        assert_eq!(
            a.url.as_deref(),
            Some("https://rustsec.org/advisories/RUSTSEC-2024-0001.html")
        );
    }

    #[test]
    fn errors_name_the_line() {
        let text = "```toml\n[advisory]\nid = \"X\"\npackage = \n```\n# t\n";
        let e = parse(Path::new("f.md"), text).unwrap_err();
        assert!(matches!(e, AuditError::Parse { line: Some(4), .. }), "{e}");
        let e = parse(Path::new("f.md"), "# no front matter\n").unwrap_err();
        assert!(e.to_string().contains("f.md"), "{e}");
        let text = "```toml\n[advisory]\nid = \"X\"\npackage = \"p\"\ndate = 2020-01-01\n[versions]\npatched = [\"nope\"]\n```\n";
        let e = parse(Path::new("f.md"), text).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn withdrawn_is_dropped() {
        let text = "```toml\n[advisory]\nid = \"X\"\npackage = \"p\"\ndate = 2020-01-01\nwithdrawn = 2020-02-01\n[versions]\npatched = []\n```\n# t\n";
        assert!(parse(Path::new("f.md"), text).unwrap().advisory.is_none());
    }
}
