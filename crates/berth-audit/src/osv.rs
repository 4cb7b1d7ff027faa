//! OSV advisories (the PyPA database's YAML files) and what they say is affected.
//!
//! Only what a scan needs is kept. Version ranges follow the OSV schema: a range's
//! events are sorted by version and the last one at or below the installed version
//! decides (`introduced` opens, `fixed` closes before it, `last_affected` closes after
//! it), `limit` caps the whole range, and `introduced: "0"` is "from the first
//! version". `GIT` ranges name commits, which an installed wheel does not carry, so
//! they are ignored; the explicit `versions` list still counts.

use std::path::Path;
use std::str::FromStr;

use pep440_rs::Version;
use serde::{Deserialize, Serialize};

use crate::db::{Advisory, Affected, Kind};
use crate::severity::Cvss;
use crate::{AuditError, Ecosystem, normalize_pypi_name};

/// A boundary of an OSV version range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

/// One `affected` entry of an advisory, for one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OsvAffected {
    /// The `ECOSYSTEM` ranges, each a list of events.
    pub ranges: Vec<Vec<Event>>,
    /// Explicitly listed versions that the ranges do not already cover.
    pub versions: Vec<String>,
}

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
    let modified = doc.modified.as_deref().and_then(crate::db::date_prefix);
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

impl Event {
    fn version(&self) -> &str {
        let (Self::Introduced(v) | Self::Fixed(v) | Self::LastAffected(v) | Self::Limit(v)) = self;
        v
    }
}

impl OsvAffected {
    /// Whether `version` is affected: in one of the ranges, or listed.
    pub fn affects(&self, version: &Version) -> bool {
        self.ranges_affect(version)
            || self
                .versions
                .iter()
                .any(|listed| match Version::from_str(listed) {
                    Ok(listed) => listed == *version,
                    // Not PEP 440 (a legacy version): only its exact spelling can match.
                    Err(_) => listed == &version.to_string(),
                })
    }

    fn ranges_affect(&self, version: &Version) -> bool {
        self.ranges
            .iter()
            .any(|events| range_affects(events, version))
    }

    /// The `fixed` versions above `version`, lowest first.
    pub fn fixed_above(&self, version: &Version) -> Vec<Version> {
        self.ranges
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Event::Fixed(v) => Version::from_str(v).ok(),
                _ => None,
            })
            .filter(|fixed| fixed > version)
            .collect()
    }
}

/// Where an event sits: `introduced: "0"` is before every version, `limit: "*"` after.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Start,
    At(Version),
    End,
}

fn bound(v: &str) -> Bound {
    match v {
        "0" => Bound::Start,
        "*" => Bound::End,
        // Checked when loaded; an unparsable one would have refused the file.
        _ => Version::from_str(v).map_or(Bound::End, Bound::At),
    }
}

/// The OSV evaluation of one range (the schema's `affected` pseudo-code).
fn range_affects(events: &[Event], version: &Version) -> bool {
    SortedRange::new(events).affects(version)
}

/// A range with its versions parsed and its events sorted, to test many versions
/// against.
struct SortedRange<'a> {
    limits: Vec<Bound>,
    events: Vec<(Bound, &'a Event)>,
}

impl<'a> SortedRange<'a> {
    fn new(events: &'a [Event]) -> Self {
        let mut limits = Vec::new();
        let mut sorted = Vec::with_capacity(events.len());
        for e in events {
            match e {
                Event::Limit(v) => limits.push(bound(v)),
                _ => sorted.push((bound(e.version()), e)),
            }
        }
        // Stable: events at the same version keep the advisory's order.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            limits,
            events: sorted,
        }
    }

    fn affects(&self, version: &Version) -> bool {
        let at = Bound::At(version.clone());
        if !self.limits.is_empty() && !self.limits.iter().any(|limit| at < *limit) {
            return false;
        }
        let mut affected = false;
        for (b, event) in &self.events {
            match event {
                Event::Introduced(_) if at >= *b => affected = true,
                Event::Fixed(_) if at >= *b => affected = false,
                Event::LastAffected(_) if at > *b => affected = false,
                _ => {}
            }
        }
        affected
    }
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

    fn intro(s: &str) -> Event {
        Event::Introduced(s.to_owned())
    }
    fn fixed(s: &str) -> Event {
        Event::Fixed(s.to_owned())
    }
    fn last(s: &str) -> Event {
        Event::LastAffected(s.to_owned())
    }
    fn limit(s: &str) -> Event {
        Event::Limit(s.to_owned())
    }

    #[test]
    fn introduced_fixed() {
        let r = [intro("0"), fixed("1.1")];
        assert!(range_affects(&r, &v("0.1")));
        assert!(range_affects(&r, &v("1.0.9")));
        assert!(
            range_affects(&r, &v("1.1rc1")),
            "a pre-release of the fix is before it"
        );
        assert!(
            !range_affects(&r, &v("1.1")),
            "the fixed version is not affected"
        );
        assert!(!range_affects(&r, &v("1.1.0")), "1.1.0 == 1.1 in PEP 440");
        assert!(!range_affects(&r, &v("1.1.post1")));
        assert!(!range_affects(&r, &v("2.0")));
    }

    #[test]
    fn several_branches_in_one_range() {
        // Unsorted on purpose: events are sorted before they are read.
        let r = [
            fixed("2.2.28"),
            intro("3.0"),
            intro("0"),
            fixed("3.2.13"),
            intro("4.0a1"),
            fixed("4.0.4"),
        ];
        assert!(range_affects(&r, &v("2.2.27")));
        assert!(!range_affects(&r, &v("2.2.28")));
        assert!(
            !range_affects(&r, &v("2.3")),
            "between a fix and the next introduced"
        );
        assert!(range_affects(&r, &v("3.0")));
        assert!(range_affects(&r, &v("3.2.12")));
        assert!(!range_affects(&r, &v("3.2.13")));
        assert!(range_affects(&r, &v("4.0b1")));
        assert!(!range_affects(&r, &v("4.0.4")));
        assert!(!range_affects(&r, &v("5.0")));
    }

    #[test]
    fn last_affected_and_open_ranges() {
        let r = [intro("0"), last("1.11.0")];
        assert!(range_affects(&r, &v("1.11.0")));
        assert!(!range_affects(&r, &v("1.11.1")));
        assert!(!range_affects(&r, &v("1.11.0.post1")));
        let open = [intro("2.0")];
        assert!(!range_affects(&open, &v("1.9")));
        assert!(range_affects(&open, &v("99")));
    }

    #[test]
    fn limit_caps_the_range() {
        let r = [intro("1.0"), limit("1.5")];
        assert!(range_affects(&r, &v("1.4")));
        assert!(!range_affects(&r, &v("1.5")));
        assert!(!range_affects(&r, &v("0.9")));
        let unlimited = [intro("1.0"), limit("*")];
        assert!(range_affects(&unlimited, &v("7.0")));
    }

    #[test]
    fn ranges_and_listed_versions() {
        let entry = OsvAffected {
            ranges: vec![
                vec![intro("1.0"), fixed("1.2")],
                vec![intro("2.0"), fixed("2.1")],
            ],
            versions: vec!["0.5".to_owned(), "0.8.0-alpha2".to_owned()],
        };
        assert!(entry.affects(&v("1.1")));
        assert!(entry.affects(&v("2.0.5")));
        assert!(!entry.affects(&v("1.5")));
        assert!(entry.affects(&v("0.5.0")), "listed 0.5 is 0.5.0");
        assert!(
            entry.affects(&v("0.8.0a2")),
            "listed versions compare normalized"
        );
        assert!(!entry.affects(&v("0.6")));
        assert_eq!(entry.fixed_above(&v("1.1")), vec![v("1.2"), v("2.1")]);
        assert_eq!(entry.fixed_above(&v("2.0")), vec![v("2.1")]);
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
