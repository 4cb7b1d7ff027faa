//! OSV advisories (the PyPA database's YAML files) and what they say is affected.
//!
//! Only what a scan needs is kept: the `ECOSYSTEM` ranges (matched as
//! [`crate::osv_range`] says) and the explicit `versions` list. `GIT` ranges name
//! commits, which an installed wheel does not carry, so they are ignored; the explicit
//! `versions` list still counts.

use std::path::Path;
use std::str::FromStr;

use pep440_rs::Version;
use serde::Deserialize;

use crate::advisory::{Advisory, Affected, Kind, date_prefix};
use crate::osv_range::{Event, OsvAffected, SortedRange};
use crate::severity::Cvss;
use crate::{AuditError, Ecosystem, normalize_pypi_name};

#[derive(Deserialize)]
struct Doc {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    affected: Vec<DocAffected>,
    #[serde(default)]
    severity: Vec<DocSeverity>,
    #[serde(default)]
    references: Vec<DocReference>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    modified: Option<String>,
}

#[derive(Deserialize)]
struct DocAffected {
    package: Option<DocPackage>,
    #[serde(default)]
    ranges: Vec<DocRange>,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct DocPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct DocRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<DocEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DocEvent {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

#[derive(Deserialize)]
struct DocSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct DocReference {
    #[serde(rename = "type", default)]
    kind: String,
    url: String,
}

/// What one OSV file holds: its advisories (one per PyPI package it affects), whether
/// it is withdrawn, and when it was last modified.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub advisories: Vec<Advisory>,
    pub withdrawn: bool,
    pub modified: Option<jiff::civil::Date>,
    /// ECOSYSTEM ranges that could not be used (a version is not PEP 440).
    pub skipped_ranges: usize,
}

/// Parses one OSV YAML (or JSON) document. `path` is for messages only.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Parsed, AuditError> {
    let doc: Doc = serde_saphyr::from_str(text).map_err(|e| AuditError::Parse {
        file: path.to_path_buf(),
        line: e.location().and_then(|l| usize::try_from(l.line()).ok()),
        what: first_line(&e.to_string()),
    })?;
    let bad = |what: String| AuditError::Parse {
        file: path.to_path_buf(),
        line: None,
        what,
    };
    if doc.id.trim().is_empty() {
        return Err(bad("the advisory has an empty `id`".to_owned()));
    }
    let modified = doc.modified.as_deref().and_then(date_prefix);
    let withdrawn = doc.withdrawn.is_some();

    let cvss = doc
        .severity
        .iter()
        .filter(|s| s.kind.starts_with("CVSS_V"))
        .find_map(|s| Cvss::parse(&s.score));
    let url = doc
        .references
        .iter()
        .find(|r| r.kind == "ADVISORY")
        .or_else(|| doc.references.first())
        .map(|r| r.url.clone());
    let title = title(doc.summary.as_deref(), doc.details.as_deref());

    let mut advisories: Vec<Advisory> = Vec::new();
    let mut skipped_ranges = 0;
    for affected in &doc.affected {
        let Some(package) = &affected.package else {
            continue;
        };
        if package.ecosystem != Ecosystem::PyPI.as_str() {
            continue;
        }
        let (entry, skipped) = affected_entry(affected);
        skipped_ranges += skipped;
        let name = normalize_pypi_name(&package.name);
        // Several entries for one package (one per branch, say) are one advisory.
        if let Some(existing) = advisories.iter_mut().find(|a| a.package == name)
            && let Affected::Osv(entries) = &mut existing.affected
        {
            entries.push(entry);
            continue;
        }
        advisories.push(Advisory {
            id: doc.id.clone(),
            aliases: doc.aliases.clone(),
            ecosystem: Ecosystem::PyPI,
            package: name,
            title: title.clone(),
            url: url.clone(),
            kind: Kind::Vulnerability,
            cvss: cvss.clone(),
            date: modified,
            affected: Affected::Osv(vec![entry]),
        });
    }
    Ok(Parsed {
        advisories,
        withdrawn,
        modified,
        skipped_ranges,
    })
}

/// The entry's ECOSYSTEM ranges and the listed versions that those ranges do not
/// already cover (most lists are the ranges spelt out against PyPI's releases;
/// dropping those keeps the index small and the scan quick, and changes no answer),
/// with how many ranges were skipped.
///
/// A range with a version that is not PEP 440 (`0.2.0-n653`, a date) cannot be
/// compared, so it is skipped, and then no listed version is dropped for it: the
/// `versions` list, which the database derives from PyPI's own releases, still decides.
fn affected_entry(affected: &DocAffected) -> (OsvAffected, usize) {
    let mut ranges = Vec::new();
    let mut skipped = 0;
    for range in &affected.ranges {
        match range.kind.as_str() {
            "ECOSYSTEM" => {}
            // Commits or SemVer (not how PyPI versions compare): nothing to match.
            _ => continue,
        }
        let events: Vec<Event> = range
            .events
            .iter()
            .map(|event| match event {
                DocEvent::Introduced(v) => Event::Introduced(v.clone()),
                DocEvent::Fixed(v) => Event::Fixed(v.clone()),
                DocEvent::LastAffected(v) => Event::LastAffected(v.clone()),
                DocEvent::Limit(v) => Event::Limit(v.clone()),
            })
            .collect();
        let comparable = events.iter().all(|e| {
            let v = e.version();
            v == "0" || v == "*" || Version::from_str(v).is_ok()
        });
        if comparable {
            ranges.push(events);
        } else {
            skipped += 1;
        }
    }
    let sorted: Vec<SortedRange> = ranges.iter().map(|r| SortedRange::new(r)).collect();
    let versions = affected
        .versions
        .iter()
        .filter(|listed| {
            let covered = skipped == 0
                && Version::from_str(listed).is_ok_and(|v| sorted.iter().any(|r| r.affects(&v)));
            !covered
        })
        .cloned()
        .collect();
    drop(sorted);
    let entry = OsvAffected { ranges, versions };
    (entry, skipped)
}

/// The summary, or else the details' first sentence or so, on one line.
fn title(summary: Option<&str>, details: Option<&str>) -> String {
    const MAX: usize = 160;
    let text = summary
        .filter(|s| !s.trim().is_empty())
        .or(details)
        .unwrap_or_default();
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX {
        return one_line;
    }
    let cut: String = one_line.chars().take(MAX).collect();
    // End at the last full sentence or word within the limit.
    let end = cut
        .rfind(". ")
        .map(|i| i + 1)
        .filter(|&i| i > MAX / 2)
        .or_else(|| cut.rfind(' '))
        .unwrap_or(cut.len());
    let mut out = cut[..end].to_owned();
    if !out.ends_with('.') {
        out.push('…');
    }
    out
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::from_str(s).unwrap()
    }

    #[test]
    fn parses_a_file_and_drops_listed_versions_the_ranges_cover() {
        let text = r#"
id: PYSEC-0000-1
details: Something bad in Foo.Bar.
affected:
- package:
    name: Foo.Bar
    ecosystem: PyPI
  ranges:
  - type: GIT
    repo: https://example.invalid/foo
    events:
    - introduced: "0"
    - fixed: 1cccae8eb3cf94b3a28f6490efa0fbf5c82ebd6b
  - type: ECOSYSTEM
    events:
    - introduced: "0"
    - fixed: 1.10
  versions:
  - "1.0"
  - "1.9"
  - "7.7"
severity:
- type: CVSS_V3
  score: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H
references:
- type: WEB
  url: https://example.invalid/web
- type: ADVISORY
  url: https://example.invalid/advisory
modified: 2024-01-03T22:31:36Z
"#;
        let parsed = parse(Path::new("x.yaml"), text).unwrap();
        assert!(!parsed.withdrawn);
        assert_eq!(parsed.modified, Some(jiff::civil::date(2024, 1, 3)));
        let [a] = parsed.advisories.as_slice() else {
            panic!()
        };
        assert_eq!(a.package, "foo-bar");
        assert_eq!(a.url.as_deref(), Some("https://example.invalid/advisory"));
        assert_eq!(a.cvss.as_ref().map(|c| c.score), Some(7.5));
        let Affected::Osv(entries) = &a.affected else {
            panic!()
        };
        assert_eq!(entries[0].ranges.len(), 1, "the GIT range is dropped");
        assert_eq!(
            entries[0].versions,
            ["7.7"],
            "unquoted 1.10 stays 1.10, not 1.1"
        );
    }

    #[test]
    fn ranges_that_are_not_pep440_are_skipped_and_the_list_decides() {
        let text = "id: X\naffected:\n- package: {name: a, ecosystem: PyPI}\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: \"0\"\n    - fixed: 0.2.0-n653\n  versions:\n  - 0.1.0\n";
        let parsed = parse(Path::new("x.yaml"), text).unwrap();
        assert_eq!(parsed.skipped_ranges, 1);
        let Affected::Osv(entries) = &parsed.advisories[0].affected else {
            panic!()
        };
        assert!(entries[0].ranges.is_empty());
        assert!(entries[0].affects(&v("0.1.0")));
        assert!(!entries[0].affects(&v("0.1.1")));
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let e = parse(Path::new("y.yaml"), "id: X\naffected: [unclosed\n").unwrap_err();
        assert!(matches!(e, AuditError::Parse { line: Some(2), .. }), "{e}");
        assert!(e.to_string().starts_with("`y.yaml`:2: "), "{e}");
        let e = parse(Path::new("y.yaml"), "details: no id\n").unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
    }

    #[test]
    fn titles() {
        assert_eq!(title(Some("Short"), Some("Long")), "Short");
        assert_eq!(title(None, Some("A  b\n c.")), "A b c.");
        let long = "word ".repeat(60);
        let t = title(None, Some(&long));
        assert!(t.chars().count() <= 161 && t.ends_with('…'), "{t}");
    }
}
