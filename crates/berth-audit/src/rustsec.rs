//! RustSec advisories: TOML front matter in a ```` ```toml ```` block at the top of a
//! Markdown file, the title being the first `# ` heading after it.
//!
//! A version is affected unless it matches one of `patched` or `unaffected`, SemVer
//! requirements as Cargo writes them; they are checked here to be requirements, and
//! matched as [`crate::rustsec_req`] says.

use std::path::Path;

use semver::VersionReq;
use serde::Deserialize;

use crate::advisory::{Advisory, Affected, Kind, date_prefix};
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
            Self::Text(s) => date_prefix(s.trim()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
