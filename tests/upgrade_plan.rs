//! `berth upgrade plan` and `berth config migrate` on a running instance of the
//! ministack fixture (1.0.0), against target manifests made from it: a 1.1.0 that renames
//! `app.greeting` to `app.welcome`, a 2.0.0 that must be reached through a 1.5.x stop,
//! and the refusals (a skipped stop, a downgrade, another app). Planning changes nothing
//! under the prefix; migrating rewrites only the site config, comments kept.

use std::path::{Path, PathBuf};

use berth_tests::{Berth, fixture, prefix_dir, snapshot_tree};

const SITE: &str = "external_url = \"http://127.0.0.1:38080/\"\n\
    [postgresql]\nport = 35432\n[redis]\nport = 36379\n\n\
    [app]\nport = 38001\n# What the front page says.\ngreeting = \"good morning\"  # kept\n";

struct Down<'b>(&'b Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// A copy of ministack at `version`, with `edit` applied to its `berth.toml` and
/// `[upgrade]` rules appended.
fn target(dir: &Path, version: &str, rename: bool, upgrade: &str) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join(format!("ministack-{version}"));
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if rename {
            text = text.replace("settings.app.greeting", "settings.app.welcome");
        }
        std::fs::write(to.join("templates").join(entry.file_name()), text).unwrap();
    }
    let mut text = std::fs::read_to_string(from.join("berth.toml"))
        .unwrap()
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    if rename {
        text = text.replace("[settings.app.greeting]", "[settings.app.welcome]");
    }
    std::fs::write(to.join("berth.toml"), text + upgrade).unwrap();
    to
}

/// Everything under the prefix but what the running services write themselves
/// (`data/`, `log/`, `run/`).
fn config_tree(prefix: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut tree = snapshot_tree(prefix);
    tree.retain(|p, _| !["data", "log", "run"].iter().any(|d| p.starts_with(d)));
    tree
}

/// The one release installed is the current one, with its bundled virtualenv.
fn one_current_release(installed: &Berth) {
    let r = installed.run(&["releases", "--json"]).expect(0);
    let releases: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(releases[0]["version"], "1.0.0", "{releases:#}");
    assert_eq!(releases[0]["current"], true);
    assert!(
        releases[0]["bytes"].as_u64().unwrap() > 1_000_000,
        "{releases:#}"
    );
    let r = installed.run(&["releases"]).expect(0);
    assert!(
        r.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("1.0.0") && l.ends_with('*')),
        "{}",
        r.stdout
    );
}

/// The plan as JSON: one online hop, the rename, and not ready until it is migrated
/// (disk and database are fine).
fn json_plan_is_not_ready_until_migrated(installed: &Berth, v110: &Path) {
    let r = installed
        .run(&["upgrade", "plan", "--json", "--to", v110.to_str().unwrap()])
        .expect(0);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["hops"][0]["migrations"], "online");
    assert_eq!(plan["settings"][0]["renamed_to"], "app.welcome");
    // Not ready until the renamed setting is migrated; disk and database are fine.
    assert_eq!(plan["ready"], false);
    let checks: Vec<(&str, bool)> = plan["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["what"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [("disk", true), ("settings", false), ("database", true)]
    );
}

const RENAME: &str = "\n[upgrade]\nonline_from = \"1.0\"\n\n\
    [[upgrade.settings]]\nkey = \"app.greeting\"\nsince = \"1.1.0\"\nrenamed_to = \"app.welcome\"\n\
    message = \"The front page's text is now called the welcome.\"\n";

#[test]
fn upgrade_plans_refuse_what_they_must_and_migrate_keeps_comments() {
    let dir = prefix_dir("upgrade-plan");
    let prefix = dir.path().join("inst");
    let berth = Berth::new(&prefix, &fixture("ministack"));
    let _down = Down(&berth);
    std::fs::create_dir_all(&prefix).unwrap();
    berth.write_site(SITE);
    berth.run(&["up"]).expect(0);
    // From here on the instance's own (stored) manifest is the starting point.
    let installed = Berth::installed(&prefix);

    one_current_release(&installed);

    let v110 = target(dir.path(), "1.1.0", true, RENAME);
    let v157 = target(dir.path(), "1.5.7", true, RENAME);
    let v200 = target(
        dir.path(),
        "2.0.0",
        true,
        &RENAME.replace("online_from = \"1.0\"\n", "stops = [\"1.5\"]\n"),
    );
    let v090 = target(dir.path(), "0.9.0", false, "");
    let before = config_tree(&prefix);

    // One online hop, the renamed setting named with the command that fixes it.
    let r = installed
        .run(&["upgrade", "plan", "--to", v110.to_str().unwrap()])
        .expect(0);
    assert!(
        r.stdout
            .contains("Upgrade ministack 1.0.0 → 1.1.0 in 1 hop"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("online migrations"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "app.greeting was renamed to app.welcome in 1.1.0: `berth config migrate --to"
        ),
        "{}",
        r.stdout
    );
    json_plan_is_not_ready_until_migrated(&installed, &v110);

    // 2.0.0 needs a 1.5.x first: refused alone, planned through it when given.
    let r = installed
        .run(&["upgrade", "plan", "--to", v200.to_str().unwrap()])
        .expect(1);
    assert!(
        r.stderr.contains("must pass through a 1.5.x release"),
        "{}",
        r.stderr
    );
    let r = installed
        .run(&[
            "upgrade",
            "plan",
            "--to",
            v200.to_str().unwrap(),
            "--to",
            v157.to_str().unwrap(),
        ])
        .expect(0);
    assert!(
        r.stdout.contains("1.0.0 → 1.5.7 (a required upgrade stop)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1.5.7 → 2.0.0: offline migrations"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("maintenance page"), "{}", r.stdout);

    // A downgrade and another app's manifest are refused.
    let r = installed
        .run(&["upgrade", "plan", "--to", v090.to_str().unwrap()])
        .expect(1);
    assert!(r.stderr.contains("downgrades are refused"), "{}", r.stderr);
    let r = installed
        .run(&[
            "upgrade",
            "plan",
            "--to",
            berth_tests::root()
                .join("examples/mediawiki")
                .to_str()
                .unwrap(),
        ])
        .expect(1);
    assert!(r.stderr.contains("app `mediawiki`"), "{}", r.stderr);
    assert_eq!(
        config_tree(&prefix),
        before,
        "planning changed the instance"
    );
    applying_what_is_refused_changes_nothing(
        &installed,
        &prefix,
        dir.path(),
        &[&v110, &v200, &v090],
    );

    migrating_keeps_comments(&installed, &prefix, &v110, &before);
}

/// `upgrade apply` refuses, before anything changes (the tree under the prefix is
/// compared), what `plan` refuses and what its preflight fails: a skipped required stop,
/// a downgrade, a renamed setting not migrated yet, a truncated manifest and one whose
/// template is missing.
fn applying_what_is_refused_changes_nothing(
    installed: &Berth,
    prefix: &Path,
    dir: &Path,
    [v110, v200, v090]: &[&Path; 3],
) {
    let before = config_tree(prefix);
    let apply = |to: &Path, code: i32| {
        installed
            .run(&["upgrade", "apply", "--to", to.to_str().unwrap()])
            .expect(code)
            .stderr
    };
    let e = apply(v200, 1);
    assert!(e.contains("must pass through a 1.5.x release"), "{e}");
    let e = apply(v090, 1);
    assert!(e.contains("downgrades are refused"), "{e}");
    let e = apply(v110, 1);
    assert!(
        e.contains("The upgrade cannot begin; nothing was changed")
            && e.contains("settings: first `berth config migrate` for app.greeting"),
        "{e}"
    );
    let truncated = target(dir, "1.1.1", true, RENAME);
    let text = std::fs::read_to_string(truncated.join("berth.toml")).unwrap();
    std::fs::write(truncated.join("berth.toml"), &text[..text.len() / 2]).unwrap();
    let e = apply(&truncated, 2);
    assert!(e.contains("berth.toml:"), "{e}");
    let missing = target(dir, "1.1.2", true, RENAME);
    std::fs::remove_file(missing.join("templates/app.py.j2")).unwrap();
    let e = apply(&missing, 2);
    assert!(e.contains("app.py.j2"), "{e}");
    assert_eq!(
        config_tree(prefix),
        before,
        "a refused upgrade changed the instance"
    );
    assert!(!prefix.join("state/upgrade.json").exists());
}

/// A dry run shows the diff and writes nothing; then the rename, with the administrator's
/// comments, and the old text kept beside it.
fn migrating_keeps_comments(
    installed: &Berth,
    prefix: &Path,
    v110: &Path,
    before: &std::collections::BTreeMap<PathBuf, String>,
) {
    let r = installed
        .run(&[
            "config",
            "migrate",
            "--dry-run",
            "--to",
            v110.to_str().unwrap(),
        ])
        .expect(0);
    assert!(
        r.stdout.contains("+welcome = \"good morning\"  # kept"),
        "{}",
        r.stdout
    );
    assert_eq!(
        &config_tree(prefix),
        before,
        "a dry run changed the instance"
    );
    let before_text = std::fs::read_to_string(prefix.join("site.toml")).unwrap();
    installed
        .run(&["config", "migrate", "--to", v110.to_str().unwrap()])
        .expect(0);
    let site = std::fs::read_to_string(prefix.join("site.toml")).unwrap();
    assert!(
        site.contains("# What the front page says.\nwelcome = \"good morning\"  # kept\n"),
        "{site}"
    );
    assert_eq!(
        std::fs::read_to_string(prefix.join("site.toml.before-migrate")).unwrap(),
        before_text
    );
    // The new version's manifest reads the migrated site config.
    Berth::new(prefix, v110).run(&["config", "check"]).expect(0);
    let r = installed
        .run(&["config", "migrate", "--to", v110.to_str().unwrap()])
        .expect(0);
    assert!(r.stdout.starts_with("Nothing to migrate"), "{}", r.stdout);
}
