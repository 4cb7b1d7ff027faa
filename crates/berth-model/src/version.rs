//! Ordering app versions, for upgrade rules (`[upgrade]`): which version is newer,
//! and whether a version belongs to a series (`3.7` holds `3.7.0` and `3.7.12`).
//!
//! The order is Debian's (`dpkg --compare-versions` without epoch or revision), which
//! every version `[app] version` accepts can be put through: runs of digits compare as
//! numbers, other characters by ASCII with letters before punctuation, and `~` before
//! anything, even the end (`4.8.0~rc1` < `4.8.0`). So `4.10.0` > `4.9.3`, and a
//! pre-release written with `~` comes before its release. A pre-release written
//! `4.8.0rc1` sorts *after* `4.8.0`, as in Debian: write `~rc1`.

use std::cmp::Ordering;

/// Debian's weight of one character of a non-digit run: `~` first, then the end of the
/// string (and digits, which end the run), letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// `a` against `b` in Debian's version order.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && j < b.len() && a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A distribution package's `a` against `b`, both as dpkg writes them
/// (`[epoch:]upstream[-revision]`): the epoch as a number, then the upstream version,
/// then the revision, each in Debian's order. `15.8-0+deb12u1` > `15.4`.
pub fn compare_package_versions(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), rest)
            }
            _ => (0, v),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, upstream, revision)
    }
    let (ea, ua, ra) = parts(a);
    let (eb, ub, rb) = parts(b);
    ea.cmp(&eb)
        .then_with(|| compare_versions(ua, ub))
        .then_with(|| compare_versions(ra, rb))
}

/// Whether `version` is `series` or one of its releases (`3.7` holds `3.7` and
/// `3.7.12`, not `3.70`).
pub fn in_series(version: &str, series: &str) -> bool {
    version == series
        || version
            .strip_prefix(series)
            .is_some_and(|rest| rest.starts_with(['.', '~', '-', '+']))
}

/// Whether `version` is `floor` or newer, or in `floor`'s series: `3.7.0` and `3.7`
/// both reach a floor of `3.7`.
pub fn at_least(version: &str, floor: &str) -> bool {
    in_series(version, floor) || compare_versions(version, floor) != Ordering::Less
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering::{Equal, Greater, Less};

    use super::{at_least, compare_package_versions, compare_versions, in_series};

    #[test]
    fn package_versions_order_epoch_then_upstream_then_revision() {
        for (a, b, want) in [
            ("15.8-0+deb12u1", "15.4", Greater),
            ("15.4-1", "15.4", Greater),
            ("15.4", "15.4", Equal),
            ("1:1.0-1", "2.0-1", Greater),
            ("1.22.1-9", "1.22.1-10", Less),
            ("7:6.0.16-1+deb12u1", "7:6.0", Greater),
            ("2.4.57-2", "2.4.57~rc1-1", Greater),
            ("1.0-1~bpo12+1", "1.0-1", Less),
        ] {
            assert_eq!(compare_package_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_package_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn versions_order_as_debian_orders_them() {
        for (a, b, want) in [
            ("4.7.3", "4.7.0", Greater),
            ("4.10.0", "4.9.3", Greater),
            ("1.39", "1.39.17", Less),
            ("1.0", "1.00", Equal),
            ("4.8.0~rc1", "4.8.0", Less),
            ("4.8.0~rc1", "4.8.0~rc2", Less),
            ("4.8.0~", "4.8.0~rc1", Less),
            ("4.8.0rc1", "4.8.0", Greater),
            ("4.8.0a", "4.8.0+b", Less),
            ("2.11.8", "3.0", Less),
            ("010", "9", Greater),
            ("", "0", Equal),
            ("a", "", Greater),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn a_series_holds_its_releases_only() {
        assert!(in_series("3.7", "3.7"));
        assert!(in_series("3.7.12", "3.7"));
        assert!(in_series("3.7~rc1", "3.7"));
        assert!(!in_series("3.70", "3.7"));
        assert!(!in_series("3.6.9", "3.7"));
        assert!(at_least("3.7.0", "3.7"));
        assert!(at_least("4.0", "3.7"));
        assert!(!at_least("3.6.9", "3.7"));
    }

    proptest::proptest! {
        /// A total order: antisymmetric, and transitive on any three versions.
        #[test]
        fn the_order_is_total(a in "[0-9a-z.~+-]{0,8}", b in "[0-9a-z.~+-]{0,8}", c in "[0-9a-z.~+-]{0,8}") {
            proptest::prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
            if compare_versions(&a, &b) != Greater && compare_versions(&b, &c) != Greater {
                proptest::prop_assert_ne!(compare_versions(&a, &c), Greater);
            }
        }
    }
}
