//! berth orders versions as `dpkg --compare-versions` does: checked against the real
//! dpkg on generated pairs (skipped, saying so, where dpkg is not installed).

use std::cmp::Ordering;
use std::process::Command;

use berth_model::version::{compare_package_versions, compare_versions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRng, TestRunner};

fn dpkg(a: &str, op: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .unwrap()
        .success()
}

/// `compare` against dpkg on `known` pairs and 150 generated from `strategy` (a
/// regular expression of versions).
fn agrees_with_dpkg(strategy: &str, known: &[(&str, &str)], compare: fn(&str, &str) -> Ordering) {
    if Command::new("dpkg").arg("--version").output().is_err() {
        #[allow(clippy::print_stderr)] // a skipped check says why
        {
            eprintln!("skipped: dpkg is not installed");
        }
        return;
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut pairs: Vec<(String, String)> = known
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    for _ in 0..150 {
        let a = strategy.new_tree(&mut runner).unwrap().current();
        let b = strategy.new_tree(&mut runner).unwrap().current();
        pairs.push((a, b));
    }
    for (a, b) in pairs {
        let want = if dpkg(&a, "lt", &b) {
            Ordering::Less
        } else if dpkg(&a, "eq", &b) {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        assert_eq!(compare(&a, &b), want, "{a} vs {b}");
    }
}

#[test]
fn the_order_is_dpkgs() {
    agrees_with_dpkg(
        "[0-9][0-9a-z.~+]{0,7}",
        &[
            ("4.7.3", "4.7.10"),
            ("4.8.0~rc1", "4.8.0"),
            ("1.39", "1.39.17"),
        ],
        compare_versions,
    );
}

/// Whole package versions, epoch and revision included (what `[preflight.packages]`
/// compares with what dpkg or apt report), against the real dpkg.
#[test]
fn package_versions_order_as_dpkg_orders_them() {
    agrees_with_dpkg(
        "([0-9]:)?[0-9][0-9a-z.~+]{0,5}(-[0-9a-z.~+]{1,5})?",
        &[
            ("15.8-0+deb12u1", "15.4"),
            ("5:7.0.15-1~deb12u1", "5:7.0"),
            ("1:1.0-1", "2.0-1"),
            ("1.0-1~bpo12+1", "1.0-1"),
        ],
        compare_package_versions,
    );
}
