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

#[test]
fn the_order_is_dpkgs() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        #[allow(clippy::print_stderr)] // a skipped check says why
        {
            eprintln!("skipped: dpkg is not installed");
        }
        return;
    }
    let strategy = "[0-9][0-9a-z.~+]{0,7}";
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut pairs = vec![
        ("4.7.3".to_owned(), "4.7.10".to_owned()),
        ("4.8.0~rc1".to_owned(), "4.8.0".to_owned()),
        ("1.39".to_owned(), "1.39.17".to_owned()),
    ];
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
        assert_eq!(compare_versions(&a, &b), want, "{a} vs {b}");
    }
}

/// Whole package versions, epoch and revision included (what `[preflight.packages]`
/// compares with what dpkg or apt report), against the real dpkg.
#[test]
fn package_versions_order_as_dpkg_orders_them() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        #[allow(clippy::print_stderr)] // a skipped check says why
        {
            eprintln!("skipped: dpkg is not installed");
        }
        return;
    }
    let strategy = "([0-9]:)?[0-9][0-9a-z.~+]{0,5}(-[0-9a-z.~+]{1,5})?";
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut pairs = vec![
        ("15.8-0+deb12u1".to_owned(), "15.4".to_owned()),
        ("5:7.0.15-1~deb12u1".to_owned(), "5:7.0".to_owned()),
        ("1:1.0-1".to_owned(), "2.0-1".to_owned()),
        ("1.0-1~bpo12+1".to_owned(), "1.0-1".to_owned()),
    ];
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
        assert_eq!(compare_package_versions(&a, &b), want, "{a} vs {b}");
    }
}
