//! How bad an advisory is: the CVSS base score of its vector, and the qualitative
//! rating of that score.
//!
//! CVSS v3.0 and v3.1 base scores are computed here, to the letter of the v3.1
//! specification (section 7 and Appendix A, including its `Roundup` that works on
//! integers so that `4.000000000000001` is not rounded up to 4.1); v3.0 vectors use
//! v3.0's plain round-up to one decimal. CVSS v4.0 vectors (which RustSec has begun to
//! use) are scored by the `cvss` crate: v4.0 scores come from a lookup table of
//! macro-vectors, not a formula, and that table is best taken from a maintained copy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The qualitative rating of a CVSS score (CVSS v3.1 section 5), or `Unknown` when an
/// advisory has no usable score (most PyPA advisories).
///
/// The order is `Unknown < None < Low < Medium < High < Critical`; `Unknown` sorts
/// first only so that lists have a fixed order: a [`crate::Policy`] decides on its own
/// whether an unknown severity fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No score is known.
    Unknown,
    /// 0.0.
    None,
    /// 0.1 to 3.9.
    Low,
    /// 4.0 to 6.9.
    Medium,
    /// 7.0 to 8.9.
    High,
    /// 9.0 to 10.0.
    Critical,
}

impl Severity {
    /// The rating of a base score.
    pub fn from_score(score: f64) -> Self {
        // Scores have one decimal; compare in tenths so 3.9 and 4.0 land exactly.
        let tenths = (score * 10.0).round();
        if tenths <= 0.0 {
            Self::None
        } else if tenths < 40.0 {
            Self::Low
        } else if tenths < 70.0 {
            Self::Medium
        } else if tenths < 90.0 {
            Self::High
        } else {
            Self::Critical
        }
    }

    /// The lowercase name (`high`), as policies write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::None => "none",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CVSS vector and its base score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// The vector as the advisory gives it (`CVSS:3.1/AV:N/…`).
    pub vector: String,
    /// The base score, 0.0 to 10.0.
    pub score: f64,
}

impl Cvss {
    /// The vector scored; `None` when it is not a CVSS v3.0, v3.1 or v4.0 vector with
    /// all base metrics (the advisory then has an unknown severity).
    pub fn parse(vector: &str) -> Option<Self> {
        let vector = vector.trim();
        let score = if vector.starts_with("CVSS:3.") {
            base_score_v3(vector)?
        } else if vector.starts_with("CVSS:4.0/") {
            cvss::v4::Vector::from_str(vector).ok()?.score().value()
        } else {
            return None;
        };
        Some(Self {
            vector: vector.to_owned(),
            score,
        })
    }

    /// The rating of the score.
    pub fn severity(&self) -> Severity {
        Severity::from_score(self.score)
    }
}

/// The base score of a CVSS v3.0 or v3.1 vector; `None` if a base metric is missing,
/// repeated or has a value the specification does not define. Metrics beyond the base
/// (temporal, environmental) are allowed and do not change the base score.
pub fn base_score_v3(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    let minor = match parts.next()? {
        "CVSS:3.0" => 0,
        "CVSS:3.1" => 1,
        _ => return None,
    };
    // AV, AC, PR, UI, S, C, I, A
    let mut base: [Option<char>; 8] = [None; 8];
    for part in parts {
        let (metric, value) = part.split_once(':')?;
        let slot = match metric {
            "AV" => 0,
            "AC" => 1,
            "PR" => 2,
            "UI" => 3,
            "S" => 4,
            "C" => 5,
            "I" => 6,
            "A" => 7,
            _ => continue,
        };
        let mut chars = value.chars();
        let (Some(v), None) = (chars.next(), chars.next()) else {
            return None;
        };
        if base[slot].replace(v).is_some() {
            return None;
        }
    }
    let [av, ac, pr, ui, s, c, i, a] = base.map(|m| m.ok_or(()));
    let changed = match s.ok()? {
        'U' => false,
        'C' => true,
        _ => return None,
    };
    let av = match av.ok()? {
        'N' => 0.85,
        'A' => 0.62,
        'L' => 0.55,
        'P' => 0.2,
        _ => return None,
    };
    let ac = match ac.ok()? {
        'L' => 0.77,
        'H' => 0.44,
        _ => return None,
    };
    let pr = match (pr.ok()?, changed) {
        ('N', _) => 0.85,
        ('L', false) => 0.62,
        ('L', true) => 0.68,
        ('H', false) => 0.27,
        ('H', true) => 0.5,
        _ => return None,
    };
    let ui = match ui.ok()? {
        'N' => 0.85,
        'R' => 0.62,
        _ => return None,
    };
    let cia = |m: Result<char, ()>| match m.ok()? {
        'H' => Some(0.56),
        'L' => Some(0.22),
        'N' => Some(0.0),
        _ => None,
    };
    let (c, i, a) = (cia(c)?, cia(i)?, cia(a)?);

    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * f64::powi(iss - 0.02, 15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if changed {
        f64::min(1.08 * (impact + exploitability), 10.0)
    } else {
        f64::min(impact + exploitability, 10.0)
    };
    Some(if minor == 0 {
        roundup_v30(raw)
    } else {
        roundup_v31(raw)
    })
}

/// CVSS v3.1 Appendix A: the smallest number with one decimal that is at least `x`,
/// computed on integers so that floating-point noise (`4.000000000000001`) does not
/// round up a whole tenth.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn roundup_v31(x: f64) -> f64 {
    // Scores are 0..=10, so the integer is at most 1,000,000: no truncation or loss.
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// CVSS v3.0's round-up: to one decimal, upwards.
fn roundup_v30(x: f64) -> f64 {
    (x * 10.0).ceil() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors with the base scores NVD publishes for them.
    #[test]
    fn v31_known_vectors() {
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3),
            ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", 7.2),
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 6.5),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", 5.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            // Temporal metrics do not change the base score.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O", 9.8),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ] {
            assert_eq!(base_score_v3(vector), Some(score), "{vector}");
        }
    }

    #[test]
    fn roundup_is_the_specified_one() {
        // Appendix A's own example: floating point gives 4.000000000000001 here.
        assert!((roundup_v31(4.000_000_000_000_001) - 4.0).abs() < f64::EPSILON);
        assert!((roundup_v31(4.02) - 4.1).abs() < f64::EPSILON);
        assert!((roundup_v31(9.71) - 9.8).abs() < f64::EPSILON);
        assert!((roundup_v30(4.000_000_000_000_001) - 4.1).abs() < f64::EPSILON);
    }

    #[test]
    fn malformed_vectors_have_no_score() {
        for vector in [
            "",
            "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:NN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ] {
            assert_eq!(Cvss::parse(vector), None, "{vector}");
        }
    }

    #[test]
    fn v40_vectors_are_scored() {
        // Scores from the FIRST CVSS v4.0 calculator.
        let c =
            Cvss::parse("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N").unwrap();
        assert!((c.score - 9.3).abs() < 1e-9, "{}", c.score);
        assert_eq!(c.severity(), Severity::Critical);
    }

    #[test]
    fn ratings() {
        assert_eq!(Severity::from_score(0.0), Severity::None);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(3.9), Severity::Low);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(6.9), Severity::Medium);
        assert_eq!(Severity::from_score(7.0), Severity::High);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(10.0), Severity::Critical);
    }

    /// Every v3.1 base vector there is (2,592 of them), against the `cvss` crate's
    /// independent implementation.
    #[test]
    fn v31_every_vector_agrees_with_the_cvss_crate() {
        let mut disagreements = Vec::new();
        for av in ["N", "A", "L", "P"] {
            for ac in ["L", "H"] {
                for pr in ["N", "L", "H"] {
                    for ui in ["N", "R"] {
                        for s in ["U", "C"] {
                            for c in ["H", "L", "N"] {
                                for i in ["H", "L", "N"] {
                                    for a in ["H", "L", "N"] {
                                        let v = format!(
                                            "CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}"
                                        );
                                        let ours = base_score_v3(&v).unwrap();
                                        let theirs =
                                            cvss::v3::Vector::from_str(&v).unwrap().score().value();
                                        if (ours - theirs).abs() > 1e-9 {
                                            disagreements.push(format!("{v}: {ours} vs {theirs}"));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }
}
