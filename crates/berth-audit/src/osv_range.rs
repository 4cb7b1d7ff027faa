//! OSV version ranges over PEP 440 versions, and whether a version is in one.
//!
//! Version ranges follow the OSV schema: a range's events are sorted by version and the
//! last one at or below the installed version decides (`introduced` opens, `fixed`
//! closes before it, `last_affected` closes after it), `limit` caps the whole range, and
//! `introduced: "0"` is "from the first version".

use std::str::FromStr;

use pep440_rs::Version;
use serde::{Deserialize, Serialize};

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

impl Event {
    pub fn version(&self) -> &str {
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
        // Checked when loaded: the OSV parser keeps only ranges whose versions parse.
        _ => Version::from_str(v).map_or(Bound::End, Bound::At),
    }
}

/// The OSV evaluation of one range (the schema's `affected` pseudo-code).
fn range_affects(events: &[Event], version: &Version) -> bool {
    SortedRange::new(events).affects(version)
}

/// A range with its versions parsed and its events sorted, to test many versions
/// against.
pub(crate) struct SortedRange<'a> {
    limits: Vec<Bound>,
    events: Vec<(Bound, &'a Event)>,
}

impl<'a> SortedRange<'a> {
    pub fn new(events: &'a [Event]) -> Self {
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

    pub fn affects(&self, version: &Version) -> bool {
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
}
