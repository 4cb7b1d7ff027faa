//! Which backups a retention policy keeps, with the reasons, like restic's `forget`.
//!
//! Pure: [`decide`] looks only at names and creation times. Days and ISO weeks are UTC
//! calendar days and weeks, so a decision does not depend on the machine's time zone.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// How many backups to keep. A backup is kept when any rule keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest backups.
    #[serde(default)]
    pub keep_last: u32,
    /// Keep the newest backup of each of the N most recent days that have one.
    #[serde(default)]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the N most recent ISO weeks that have one.
    #[serde(default)]
    pub keep_weekly: u32,
}

/// What [`decide`] says about one backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// The backup's name.
    pub name: String,
    /// When it was made.
    pub created: Timestamp,
    /// Whether it is kept.
    pub keep: bool,
    /// Every rule that keeps it: `last 2` (the second newest), `daily 2026-11-24`,
    /// `weekly 2026-W47`. Empty when it is to be deleted.
    pub reasons: Vec<String>,
}

/// A policy that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// Every count is zero.
    #[error("this policy would delete every backup; set keep_last, keep_daily or keep_weekly")]
    KeepsNothing,
    /// Two backups share a name, so deleting one by name could delete the other.
    #[error("two backups are named {0:?}")]
    DuplicateName(String),
}

/// Decides which backups to keep, newest first.
///
/// Backups are sorted newest first (ties by name, descending). Then, as in restic:
/// `keep_last` keeps the N newest; `keep_daily` walks the backups and keeps the first
/// (newest) one of each UTC day until N days are covered; `keep_weekly` does the same
/// with ISO weeks. Days and weeks without a backup do not count. The newest backup is
/// always kept, since every rule with a nonzero count keeps it.
pub fn decide(
    backups: &[(String, Timestamp)],
    policy: &Policy,
) -> Result<Vec<Decision>, RetentionError> {
    if policy.keep_last == 0 && policy.keep_daily == 0 && policy.keep_weekly == 0 {
        return Err(RetentionError::KeepsNothing);
    }
    let mut sorted: Vec<&(String, Timestamp)> = backups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut names: Vec<&str> = sorted.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(RetentionError::DuplicateName(pair[0].to_owned()));
    }

    let mut daily = Bucket::new(policy.keep_daily);
    let mut weekly = Bucket::new(policy.keep_weekly);
    let decisions = sorted
        .into_iter()
        .enumerate()
        .map(|(index, (name, created))| {
            let date = created.to_zoned_datetime(TimeZone::UTC).date();
            let week = date.iso_week_date();
            let mut reasons = Vec::new();
            if index < usize::try_from(policy.keep_last).unwrap_or(usize::MAX) {
                reasons.push(format!("last {}", index + 1));
            }
            if daily.take(date.to_string()) {
                reasons.push(format!("daily {date}"));
            }
            let week = format!("{:04}-W{:02}", week.year(), week.week());
            if weekly.take(week.clone()) {
                reasons.push(format!("weekly {week}"));
            }
            Decision {
                name: name.clone(),
                created: *created,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect();
    Ok(decisions)
}

/// One "newest of each period" rule: how many periods are left, and the last one seen.
struct Bucket {
    left: u32,
    last: Option<String>,
}

impl Bucket {
    fn new(count: u32) -> Self {
        Self {
            left: count,
            last: None,
        }
    }

    /// Whether the backup in `period` is kept. Backups come newest first, so the first
    /// one seen in a period is that period's newest.
    fn take(&mut self, period: String) -> bool {
        if self.left == 0 || self.last.as_ref() == Some(&period) {
            return false;
        }
        self.left -= 1;
        self.last = Some(period);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made calendar across a year boundary. ISO weeks: 2026-12-21..27 is
    /// 2026-W52, 2026-12-28..2027-01-03 is 2026-W53, 2027-01-04.. is 2027-W01.
    const CALENDAR: [&str; 14] = [
        "2026-12-20T23:30:00Z", // Sun, W51
        "2026-12-22T01:00:00Z", // Tue, W52
        "2026-12-22T13:00:00Z",
        "2026-12-24T08:00:00Z", // Thu, W52
        "2026-12-28T02:00:00Z", // Mon, W53
        "2026-12-31T23:59:00Z", // Thu, W53, last of the year
        "2027-01-01T00:01:00Z", // Fri, W53, first of the year
        "2027-01-01T06:00:00Z",
        "2027-01-01T18:00:00Z",
        "2027-01-03T12:00:00Z", // Sun, W53
        "2027-01-04T00:00:00Z", // Mon, W01
        "2027-01-04T12:00:00Z",
        "2027-01-05T03:00:00Z", // Tue, W01
        "2027-01-05T22:00:00Z",
    ];

    fn backups() -> Vec<(String, Timestamp)> {
        CALENDAR
            .iter()
            .map(|t| {
                let ts: Timestamp = t.parse().unwrap();
                let name = format!(
                    "netbox-4.7.3-{}.berth.tar.zst",
                    ts.strftime("%Y%m%dT%H%M%SZ")
                );
                (name, ts)
            })
            .collect()
    }

    /// The kept backups as `YYYY-MM-DDTHH:MM` of their creation, newest first.
    fn kept(policy: Policy) -> Vec<String> {
        decide(&backups(), &policy)
            .unwrap()
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.created.strftime("%Y-%m-%dT%H:%M").to_string())
            .collect()
    }

    fn policy(keep_last: u32, keep_daily: u32, keep_weekly: u32) -> Policy {
        Policy {
            keep_last,
            keep_daily,
            keep_weekly,
        }
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        assert_eq!(
            kept(policy(3, 0, 0)),
            ["2027-01-05T22:00", "2027-01-05T03:00", "2027-01-04T12:00"]
        );
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day_with_a_backup() {
        // Days without backups (Jan 2) do not count towards the four.
        assert_eq!(
            kept(policy(0, 4, 0)),
            [
                "2027-01-05T22:00",
                "2027-01-04T12:00",
                "2027-01-03T12:00",
                "2027-01-01T18:00",
            ]
        );
    }

    #[test]
    fn keep_daily_crosses_the_year_boundary() {
        assert_eq!(
            kept(policy(0, 6, 0)),
            [
                "2027-01-05T22:00",
                "2027-01-04T12:00",
                "2027-01-03T12:00",
                "2027-01-01T18:00",
                "2026-12-31T23:59",
                "2026-12-28T02:00",
            ]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-W53 runs into January 2027; its newest is Jan 3, not Dec 31.
        assert_eq!(
            kept(policy(0, 0, 3)),
            ["2027-01-05T22:00", "2027-01-03T12:00", "2026-12-24T08:00"]
        );
    }

    #[test]
    fn rules_combine_and_every_reason_is_listed() {
        let decisions = decide(&backups(), &policy(2, 3, 4)).unwrap();
        let table: Vec<String> = decisions
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.created.strftime("%Y-%m-%dT%H:%M"),
                    if d.keep { "keep  " } else { "delete" },
                    d.reasons.join(", ")
                )
                .trim_end()
                .to_owned()
            })
            .collect();
        insta::assert_snapshot!(table.join("\n"), @r"
        2027-01-05T22:00 keep   last 1, daily 2027-01-05, weekly 2027-W01
        2027-01-05T03:00 keep   last 2
        2027-01-04T12:00 keep   daily 2027-01-04
        2027-01-04T00:00 delete
        2027-01-03T12:00 keep   daily 2027-01-03, weekly 2026-W53
        2027-01-01T18:00 delete
        2027-01-01T06:00 delete
        2027-01-01T00:01 delete
        2026-12-31T23:59 delete
        2026-12-28T02:00 delete
        2026-12-24T08:00 keep   weekly 2026-W52
        2026-12-22T13:00 delete
        2026-12-22T01:00 delete
        2026-12-20T23:30 keep   weekly 2026-W51
        ");
    }

    #[test]
    fn decisions_serialize_for_reports() {
        let decisions = decide(&backups()[..2], &policy(1, 0, 0)).unwrap();
        insta::assert_json_snapshot!(decisions, @r#"
        [
          {
            "name": "netbox-4.7.3-20261222T010000Z.berth.tar.zst",
            "created": "2026-12-22T01:00:00Z",
            "keep": true,
            "reasons": [
              "last 1"
            ]
          },
          {
            "name": "netbox-4.7.3-20261220T233000Z.berth.tar.zst",
            "created": "2026-12-20T23:30:00Z",
            "keep": false,
            "reasons": []
          }
        ]
        "#);
    }

    #[test]
    fn the_newest_is_always_kept() {
        for p in [policy(1, 0, 0), policy(0, 1, 0), policy(0, 0, 1)] {
            let decisions = decide(&backups(), &p).unwrap();
            assert!(decisions[0].keep, "{p:?}");
            assert_eq!(decisions.iter().filter(|d| d.keep).count(), 1, "{p:?}");
        }
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut reversed = backups();
        reversed.reverse();
        assert_eq!(
            decide(&reversed, &policy(2, 3, 4)).unwrap(),
            decide(&backups(), &policy(2, 3, 4)).unwrap()
        );
    }

    #[test]
    fn counts_larger_than_history_keep_everything() {
        assert_eq!(kept(policy(100, 0, 0)).len(), CALENDAR.len());
        assert_eq!(kept(policy(0, 100, 0)).len(), 9);
        assert_eq!(kept(policy(0, 0, 100)).len(), 4);
    }

    #[test]
    fn empty_history_decides_nothing() {
        assert_eq!(decide(&[], &policy(1, 1, 1)).unwrap(), []);
    }

    #[test]
    fn a_policy_keeping_nothing_is_refused() {
        let err = decide(&backups(), &policy(0, 0, 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this policy would delete every backup; set keep_last, keep_daily or keep_weekly"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let t: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let dup = [
            ("a".to_owned(), t),
            (
                "a".to_owned(),
                t.saturating_add(jiff::SignedDuration::from_secs(60))
                    .unwrap(),
            ),
        ];
        assert_eq!(
            decide(&dup, &policy(1, 0, 0)),
            Err(RetentionError::DuplicateName("a".to_owned()))
        );
    }

    #[test]
    fn policy_reads_from_config() {
        let p: Policy = serde_json::from_str(r#"{"keep_daily": 7}"#).unwrap();
        assert_eq!(p, policy(0, 7, 0));
        assert!(serde_json::from_str::<Policy>(r#"{"keep_monthly": 7}"#).is_err());
    }
}
