//! The audit policy: which findings fail, and which are knowingly accepted for a while.
//!
//! ```toml
//! threshold = "high"          # findings rated high or critical fail (default: "low")
//! fail_on_unknown = true      # findings with no CVSS score fail (default: true)
//! fail_on_informational = false  # unmaintained/unsound notices fail (default: false)
//!
//! [[ignore]]
//! id = "PYSEC-2023-100"       # an advisory id, or one of its aliases (CVE-…, GHSA-…)
//! reason = "the affected endpoint is not exposed"
//! expires = 2026-12-31        # the entry holds through this day
//! ```
//!
//! Unknown severity fails by default: most PyPA advisories carry no score, and an
//! unscored vulnerability is not a harmless one. A policy that wants only scored
//! findings to count says so with `fail_on_unknown = false`.
//!
//! Every ignore entry needs a reason and an expiry date, so that accepting a risk is a
//! decision that is written down and comes back for review: once expired, an entry no
//! longer ignores anything (its findings fail again, if they are at or above the
//! threshold) and the verdict lists it so the user is told to look again.

use jiff::civil::Date;
use serde::{Deserialize, Deserializer, Serialize};

use crate::severity::Severity;
use crate::{AuditError, Finding};

/// Which findings fail an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Scored findings rated at or above this fail (`none` makes every scored finding
    /// fail). Default `low`.
    #[serde(default = "default_threshold")]
    pub threshold: Severity,
    /// Whether findings with no CVSS score fail. Default `true`.
    #[serde(default = "yes")]
    pub fail_on_unknown: bool,
    /// Whether informational notices (unmaintained, unsound) fail, whatever their
    /// score. Default `false`: they are reported, not counted as vulnerabilities.
    #[serde(default)]
    pub fail_on_informational: bool,
    /// Findings accepted until a date.
    #[serde(default)]
    pub ignore: Vec<IgnoreEntry>,
}

fn default_threshold() -> Severity {
    Severity::Low
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            threshold: default_threshold(),
            fail_on_unknown: true,
            fail_on_informational: false,
            ignore: Vec::new(),
        }
    }
}

/// A finding accepted until a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreEntry {
    /// The advisory id or one of its aliases.
    pub id: String,
    /// Why it is accepted; required.
    pub reason: String,
    /// The last day the entry holds. A TOML date (`2026-12-31`) or a string of one.
    #[serde(deserialize_with = "date_or_string")]
    pub expires: Date,
}

impl IgnoreEntry {
    /// Whether the entry has expired on `today` (it holds through its `expires` day).
    pub fn is_expired(&self, today: Date) -> bool {
        today > self.expires
    }
}

/// TOML dates arrive as TOML's own datetime type, strings as strings; both become a
/// date, and a date with a time of day is refused (an expiry is a day).
fn date_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Toml(toml::value::Datetime),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Toml(dt) => {
            if dt.time.is_some() || dt.offset.is_some() {
                return Err(serde::de::Error::custom(format!(
                    "`{dt}` is not a date: write the day only, as 2026-12-31"
                )));
            }
            dt.to_string()
        }
        Raw::Text(s) => s,
    };
    text.parse().map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a date ({e}): write it as 2026-12-31"
        ))
    })
}

impl Policy {
    /// A policy from TOML, checked: unknown keys, an empty id or reason, a threshold of
    /// `unknown` and an id ignored twice are refused.
    pub fn from_toml(text: &str) -> Result<Self, AuditError> {
        let policy: Self = toml::from_str(text).map_err(|e| AuditError::Policy {
            line: e.span().map(|s| text[..s.start].matches('\n').count() + 1),
            what: e.message().to_owned(),
        })?;
        policy.check()?;
        Ok(policy)
    }

    /// The checks [`Policy::from_toml`] makes, for a policy built in code.
    pub fn check(&self) -> Result<(), AuditError> {
        let bad = |what: String| AuditError::Policy { line: None, what };
        if self.threshold == Severity::Unknown {
            return Err(bad(
                "`threshold = \"unknown\"` is not a level: use none, low, medium, high or \
                 critical, and `fail_on_unknown` for unscored findings"
                    .to_owned(),
            ));
        }
        for (i, entry) in self.ignore.iter().enumerate() {
            if entry.id.trim().is_empty() {
                return Err(bad(format!("ignore entry {} has an empty `id`", i + 1)));
            }
            if entry.reason.trim().is_empty() {
                return Err(bad(format!(
                    "ignore entry `{}` has no `reason`: say why the finding is accepted",
                    entry.id
                )));
            }
            if self.ignore[..i]
                .iter()
                .any(|e| e.id.eq_ignore_ascii_case(&entry.id))
            {
                return Err(bad(format!(
                    "`{}` is ignored twice: keep one entry",
                    entry.id
                )));
            }
        }
        Ok(())
    }
}

/// A finding an ignore entry accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ignored {
    /// The finding.
    pub finding: Finding,
    /// The entry that accepted it.
    pub entry: IgnoreEntry,
}

/// What a policy makes of a scan.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Verdict {
    /// Findings that fail the audit.
    pub failing: Vec<Finding>,
    /// Vulnerabilities rated below the threshold (or unscored, with
    /// `fail_on_unknown = false`): reported, not failing.
    pub below_threshold: Vec<Finding>,
    /// Informational notices that do not fail (`fail_on_informational = false`).
    pub informational: Vec<Finding>,
    /// Findings accepted by an ignore entry that has not expired.
    pub ignored: Vec<Ignored>,
    /// Ignore entries past their expiry date, whether or not they named a finding:
    /// they ignore nothing any more.
    pub expired: Vec<IgnoreEntry>,
    /// Ignore entries, not expired, that named no finding: no longer needed, or
    /// misspelt.
    pub stale: Vec<IgnoreEntry>,
}

impl Verdict {
    /// Whether the audit passes: nothing fails.
    pub fn passed(&self) -> bool {
        self.failing.is_empty()
    }
}

/// Sorts `findings` by `policy` on `today` (which decides which ignore entries have
/// expired). The order of each list follows `findings` and `policy.ignore`.
pub fn evaluate(findings: &[Finding], policy: &Policy, today: Date) -> Verdict {
    let mut verdict = Verdict::default();
    let mut used = vec![false; policy.ignore.len()];
    for finding in findings {
        let entry = policy
            .ignore
            .iter()
            .enumerate()
            .find(|(_, e)| !e.is_expired(today) && finding.is_named(&e.id));
        if let Some((i, entry)) = entry {
            used[i] = true;
            verdict.ignored.push(Ignored {
                finding: finding.clone(),
                entry: entry.clone(),
            });
            continue;
        }
        let fails = if finding.is_vulnerability() {
            match finding.severity {
                Severity::Unknown => policy.fail_on_unknown,
                rated => rated >= policy.threshold,
            }
        } else {
            policy.fail_on_informational
        };
        if fails {
            verdict.failing.push(finding.clone());
        } else if finding.is_vulnerability() {
            verdict.below_threshold.push(finding.clone());
        } else {
            verdict.informational.push(finding.clone());
        }
    }
    for (entry, used) in policy.ignore.iter().zip(used) {
        if entry.is_expired(today) {
            verdict.expired.push(entry.clone());
        } else if !used {
            verdict.stale.push(entry.clone());
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::{Ecosystem, Kind};

    fn finding(id: &str, alias: &str, severity: Severity, kind: Kind) -> Finding {
        Finding {
            id: id.to_owned(),
            aliases: vec![alias.to_owned()],
            ecosystem: Ecosystem::PyPI,
            package: "django".to_owned(),
            version: "3.2.0".to_owned(),
            fixed: vec!["3.2.1".to_owned()],
            severity,
            cvss: None,
            title: "t".to_owned(),
            url: None,
            kind,
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn parses_and_checks_toml() {
        let policy = Policy::from_toml(
            r#"
threshold = "high"
fail_on_unknown = false

[[ignore]]
id = "CVE-2021-1"
reason = "not exposed"
expires = 2026-12-31

[[ignore]]
id = "PYSEC-2"
reason = "waiting on upstream"
expires = "2027-01-15"
"#,
        )
        .unwrap();
        assert_eq!(policy.threshold, Severity::High);
        assert!(!policy.fail_on_unknown);
        assert_eq!(policy.ignore[0].expires, date(2026, 12, 31));
        assert_eq!(policy.ignore[1].expires, date(2027, 1, 15));
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());

        for (text, needle) in [
            ("threshold = \"severe\"", "severe"),
            ("treshold = \"high\"", "treshold"),
            ("threshold = \"unknown\"", "not a level"),
            (
                "[[ignore]]\nid = \"X\"\nreason = \" \"\nexpires = 2026-01-01",
                "no `reason`",
            ),
            ("[[ignore]]\nid = \"X\"\nexpires = 2026-01-01", "reason"),
            (
                "[[ignore]]\nid = \"X\"\nreason = \"r\"\nexpires = 2026-01-01T10:00:00",
                "not a date",
            ),
            (
                "[[ignore]]\nid = \"X\"\nreason = \"r\"\nexpires = \"soon\"",
                "soon",
            ),
            (
                "[[ignore]]\nid = \"X\"\nreason = \"r\"\nexpires = 2026-01-01\n[[ignore]]\nid = \"x\"\nreason = \"r\"\nexpires = 2026-01-01",
                "twice",
            ),
        ] {
            let e = Policy::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn threshold_and_unknown() {
        let findings = [
            finding("A", "CVE-A", Severity::Critical, Kind::Vulnerability),
            finding("B", "CVE-B", Severity::Medium, Kind::Vulnerability),
            finding("C", "CVE-C", Severity::Unknown, Kind::Vulnerability),
            finding("D", "CVE-D", Severity::None, Kind::Vulnerability),
            finding(
                "E",
                "GHSA-E",
                Severity::Unknown,
                Kind::Informational("unmaintained".to_owned()),
            ),
        ];
        let today = date(2026, 6, 1);
        let v = evaluate(&findings, &Policy::default(), today);
        assert_eq!(ids(&v.failing), ["A", "B", "C"]);
        assert_eq!(ids(&v.below_threshold), ["D"]);
        assert_eq!(ids(&v.informational), ["E"]);
        assert!(!v.passed());

        let policy = Policy {
            threshold: Severity::High,
            fail_on_unknown: false,
            ..Policy::default()
        };
        let v = evaluate(&findings, &policy, today);
        assert_eq!(ids(&v.failing), ["A"]);
        assert_eq!(ids(&v.below_threshold), ["B", "C", "D"]);

        let policy = Policy {
            threshold: Severity::Critical,
            fail_on_informational: true,
            ..Policy::default()
        };
        let v = evaluate(&findings, &policy, today);
        assert_eq!(ids(&v.failing), ["A", "C", "E"]);
        assert!(v.informational.is_empty());
    }

    #[test]
    fn ignore_entries_expire_and_go_stale() {
        let findings = [
            finding("A", "CVE-A", Severity::High, Kind::Vulnerability),
            finding("B", "GHSA-B", Severity::High, Kind::Vulnerability),
        ];
        let entry = |id: &str, expires| IgnoreEntry {
            id: id.to_owned(),
            reason: "accepted".to_owned(),
            expires,
        };
        let policy = Policy {
            ignore: vec![
                entry("cve-a", date(2026, 6, 30)),     // by alias, any case
                entry("B", date(2026, 5, 31)),         // expired
                entry("PYSEC-GONE", date(2027, 1, 1)), // names nothing
            ],
            ..Policy::default()
        };

        // The last day of an entry still holds.
        let v = evaluate(&findings, &policy, date(2026, 5, 31));
        assert_eq!(ids(&v.failing), Vec::<&str>::new());
        assert_eq!(v.ignored.len(), 2);
        assert!(v.expired.is_empty());
        assert!(v.passed());

        // The day after, B fails again and its entry is listed as expired.
        let v = evaluate(&findings, &policy, date(2026, 6, 1));
        assert_eq!(ids(&v.failing), ["B"]);
        assert_eq!(v.ignored.len(), 1);
        assert_eq!(v.ignored[0].finding.id, "A");
        assert_eq!(v.ignored[0].entry.reason, "accepted");
        assert_eq!(v.expired.len(), 1);
        assert_eq!(v.expired[0].id, "B");
        assert_eq!(v.expired[0].expires, date(2026, 5, 31));
        assert_eq!(
            v.stale.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["PYSEC-GONE"]
        );
        assert!(!v.passed());
    }
}
