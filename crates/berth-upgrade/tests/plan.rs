//! Upgrade paths from the rules manifests carry: stops, floors, online hops, renamed
//! and removed settings, and every refusal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use berth_model::LoadedManifest;
use berth_upgrade::{Migrations, Refused, plan};

/// A manifest of `app` at `version` with `upgrade` as its `[upgrade]` section (and
/// `settings` declared, `group.key` of type string).
fn manifest(app: &str, version: &str, settings: &[&str], upgrade: &str) -> LoadedManifest {
    let mut text = format!("[app]\nname = \"{app}\"\nversion = \"{version}\"\n\n");
    for s in settings {
        let (g, k) = s.split_once('.').unwrap();
        let _ = write!(
            text,
            "[settings.{g}.{k}]\ntype = \"string\"\ndefault = \"\"\n\n"
        );
    }
    text.push_str(upgrade);
    let m = LoadedManifest::from_sources(&format!("{version}/berth.toml"), &text, BTreeMap::new())
        .unwrap_or_else(|d| panic!("{d}"));
    berth_model::validate(&m).unwrap_or_else(|d| panic!("{d}"));
    m
}

/// NetBox's rule: a major version is reached only from the last minor of the one
/// before (2.11, 3.7); within 4.7 the migrations are online.
fn netbox(version: &str) -> LoadedManifest {
    // Each release knows the stops before it.
    let stops: Vec<String> = ["2.11", "3.7"]
        .iter()
        .filter(|s| version.split('.').take(2).collect::<Vec<_>>().join(".") != **s)
        .filter(|s| berth_model::version::compare_versions(version, s).is_gt())
        .map(|s| format!("\"{s}\""))
        .collect();
    let rules = format!("[upgrade]\nstops = [{}]\n", stops.join(", "));
    match version {
        "4.7.3" => manifest(
            "netbox",
            version,
            &["web.request_timeout"],
            &format!(
                "{rules}from = \"3.7\"\nonline_from = \"4.7\"\n\n\
                 [[upgrade.settings]]\nkey = \"web.timeout\"\nsince = \"4.7.1\"\nrenamed_to = \"web.request_timeout\"\n\n\
                 [[upgrade.settings]]\nkey = \"netbox.napalm\"\nsince = \"4.0.0\"\nmessage = \"NAPALM moved to a plugin\"\n"
            ),
        ),
        _ => manifest("netbox", version, &["web.timeout", "netbox.napalm"], &rules),
    }
}

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_patch_upgrade_within_a_minor_is_one_online_hop() {
    let t = netbox("4.7.3");
    let p = plan("netbox", "4.7.0", &[&t], &keys(&["web.workers"])).unwrap();
    assert_eq!(p.hops.len(), 1);
    assert_eq!(p.hops[0].migrations, Migrations::Online);
    assert!(p.settings.is_empty());
    assert!(p.hops[0].downtime().starts_with("a restart"));
}

#[test]
fn a_skipped_required_stop_is_refused_and_names_it() {
    let t = netbox("4.7.3");
    let err = plan("netbox", "3.6.2", &[&t], &keys(&[])).unwrap_err();
    assert_eq!(
        err,
        Refused::MissingStop {
            from: "3.6.2".into(),
            to: "4.7.3".into(),
            series: "3.7".into()
        }
    );
    assert!(err.to_string().contains("--to"), "{err}");
}

/// Through the stop: two offline hops; the renamed setting is reported in the hop that
/// renames it, the removed one too, and an unneeded version given is listed.
#[test]
fn the_path_goes_through_every_stop() {
    let (a, b, c) = (netbox("3.7.8"), netbox("4.7.3"), netbox("3.7.2"));
    let p = plan(
        "netbox",
        "3.6.2",
        &[&b, &a, &c],
        &keys(&["web.timeout", "netbox.napalm", "web.workers"]),
    )
    .unwrap();
    insta::assert_json_snapshot!(p);
    assert_eq!(
        p.renames(),
        [("web.timeout".to_owned(), "web.request_timeout".to_owned())]
    );
}

#[test]
fn a_very_old_instance_passes_through_both_stops() {
    let (a, b, c) = (netbox("2.11.12"), netbox("3.7.8"), netbox("4.7.3"));
    let p = plan("netbox", "2.10.10", &[&c, &b, &a], &keys(&[])).unwrap();
    let hops: Vec<(&str, &str)> = p
        .hops
        .iter()
        .map(|h| (h.from.as_str(), h.to.as_str()))
        .collect();
    assert_eq!(
        hops,
        [
            ("2.10.10", "2.11.12"),
            ("2.11.12", "3.7.8"),
            ("3.7.8", "4.7.3")
        ]
    );
    // Already past the first stop: only the second is needed.
    let p = plan("netbox", "3.0.0", &[&c, &b, &a], &keys(&[])).unwrap();
    assert_eq!(p.hops.len(), 2);
    assert_eq!(p.unused, ["2.11.12"]);
}

#[test]
fn downgrades_the_same_version_and_other_apps_are_refused() {
    let t = netbox("4.7.3");
    assert!(matches!(
        plan("netbox", "4.8.0", &[&t], &keys(&[])),
        Err(Refused::Downgrade { .. })
    ));
    assert!(matches!(
        plan("netbox", "4.7.3", &[&t], &keys(&[])),
        Err(Refused::SameVersion { .. })
    ));
    let wiki = manifest("mediawiki", "1.40", &[], "");
    let err = plan("netbox", "4.7.0", &[&wiki], &keys(&[])).unwrap_err();
    assert!(err.to_string().contains("app `mediawiki`"), "{err}");
    assert_eq!(
        plan("netbox", "4.7.0", &[], &keys(&[])),
        Err(Refused::NoTarget)
    );
    let (a, b) = (netbox("4.7.3"), netbox("4.7.3"));
    assert!(matches!(
        plan("netbox", "4.7.0", &[&a, &b], &keys(&[])),
        Err(Refused::Duplicate { .. })
    ));
}

/// A release that dropped old migrations upgrades only from its floor.
#[test]
fn a_hop_below_its_targets_floor_is_refused() {
    let t = manifest("app", "5.2.0", &[], "[upgrade]\nfrom = \"5.0\"\n");
    assert_eq!(
        plan("app", "4.9.1", &[&t], &keys(&[])),
        Err(Refused::BelowFloor {
            from: "4.9.1".into(),
            to: "5.2.0".into(),
            floor: "5.0".into()
        })
    );
    assert!(plan("app", "5.0.3", &[&t], &keys(&[])).is_ok());
}

/// Renames chain across hops: the site's key is followed through each rename.
#[test]
fn renames_chain_across_hops() {
    let a = manifest(
        "app",
        "2.0",
        &["web.request_timeout"],
        "[upgrade]\nstops = []\n\n[[upgrade.settings]]\nkey = \"web.timeout\"\nsince = \"2.0\"\nrenamed_to = \"web.request_timeout\"\n",
    );
    let b = manifest(
        "app",
        "3.0",
        &["http.timeout"],
        "[upgrade]\nstops = [\"2.0\"]\n\n\
         [[upgrade.settings]]\nkey = \"web.timeout\"\nsince = \"2.0\"\nrenamed_to = \"web.request_timeout\"\n\n\
         [[upgrade.settings]]\nkey = \"web.request_timeout\"\nsince = \"3.0\"\nrenamed_to = \"http.timeout\"\n",
    );
    let p = plan("app", "1.5", &[&a, &b], &keys(&["web.timeout"])).unwrap();
    assert_eq!(
        p.renames(),
        [
            ("web.timeout".to_owned(), "web.request_timeout".to_owned()),
            ("web.request_timeout".to_owned(), "http.timeout".to_owned())
        ]
    );
}
