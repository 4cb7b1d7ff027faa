//! `docs/layout.md` and the layout type cannot drift: every path of the doc's table is
//! one [`Paths`] produces and the other way round, and each item says in its own
//! documentation which row it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_layout::{Paths, bundle, logs};

const DOC: &str = include_str!("../../../docs/layout.md");
const SOURCES: [&str; 2] = [
    include_str!("../src/paths.rs"),
    include_str!("../src/bundle.rs"),
];
/// Public items that are not a row: the prefix itself, the constructors, and the
/// relative form of any path.
const NOT_ROWS: [&str; 4] = ["prefix", "for_prefix", "unversioned", "beneath"];

/// Every path the layout produces, by the item that produces it, relative to the
/// prefix with the doc's placeholders; directories end in `/`.
fn produced() -> BTreeMap<&'static str, String> {
    let root = Path::new("/prefix");
    let p = Paths::for_prefix(root, "<version>");
    let dir = |path: &Path| format!("{}/", rel(root, path));
    let file = |path: &Path| rel(root, path);
    let bundle = p.bundle_dir("<component>");
    [
        ("etc", dir(&p.etc)),
        ("data", dir(&p.data)),
        ("run", dir(&p.run)),
        ("log", dir(&p.log)),
        ("secrets", dir(&p.secrets)),
        ("state", dir(&p.state)),
        ("release", dir(&p.release)),
        ("site_config", file(&p.site_config())),
        ("manifest_dir", dir(&p.manifest_dir())),
        ("bin_dir", dir(&p.bin_dir())),
        ("installed_berth", file(&p.installed_berth())),
        ("data_dir", dir(&p.data_dir("<dir>"))),
        ("homes", dir(&p.homes())),
        ("user_home", dir(&p.user_home("<user>"))),
        (
            "component_run_dir",
            dir(&p.component_run_dir("<component>")),
        ),
        ("supervisor_socket", file(&p.supervisor_socket())),
        ("supervisor_pid", file(&p.supervisor_pid())),
        ("service_log_dir", dir(&p.service_log_dir("<service>"))),
        ("service_log", file(&p.service_log("<service>"))),
        ("jobs_log_dir", dir(&p.jobs_log_dir())),
        ("job_log_dir", dir(&p.job_log_dir("<job>"))),
        ("job_log", file(&p.job_log("<job>"))),
        ("hooks_log_dir", dir(&p.hooks_log_dir())),
        ("hook_log", file(&p.hook_log("<hook>"))),
        ("supervisor_log", file(&p.supervisor_log())),
        ("secret", file(&p.secret("<secret>"))),
        ("state_db", file(&p.state_db())),
        ("supervision_plan", file(&p.supervision_plan())),
        ("host_files_record", file(&p.host_files_record())),
        ("users_record", file(&p.users_record())),
        ("managed_files", file(&p.managed_files())),
        ("last_backup_record", file(&p.last_backup_record())),
        ("error_reports", dir(&p.error_reports())),
        ("console_tasks", dir(&p.console_tasks())),
        ("ports_file", file(&p.ports_file())),
        ("autostart_marker", file(&p.autostart_marker())),
        ("advisories_index", file(&p.advisories_index())),
        ("child_records", dir(&p.child_records())),
        ("unfinished_hook", file(&p.unfinished_hook("<hook>"))),
        ("backup_key", file(&p.backup_key())),
        ("signing_key", file(&p.signing_key())),
        ("releases", dir(&p.releases())),
        ("bundle_dir", dir(&bundle)),
        ("partial", dir(&bundle::partial(&bundle))),
        ("build_home", dir(&bundle::build_home(&bundle))),
        ("interpreter_copy", dir(&bundle::interpreter_copy(&bundle))),
        ("default_backups", dir(&p.default_backups())),
        ("tmp", dir(&p.tmp())),
        ("release_staging", dir(&p.release_staging("<version>"))),
        ("restore_journal", file(&p.restore_journal())),
        ("upgrade_journal", file(&p.upgrade_journal())),
        ("upgrade_manifests", dir(&p.upgrade_manifests())),
        ("maintenance_page", file(&p.maintenance_page())),
        ("hook_secrets_dir", dir(&p.hook_secrets_dir())),
        ("hook_secrets_out", dir(&p.hook_secrets_out("<hook>"))),
    ]
    .into_iter()
    .collect()
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap().display().to_string()
}

/// The first cell of each row of the doc's table.
fn documented() -> BTreeSet<String> {
    DOC.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| rest.split_once('`').unwrap().0.to_owned())
        .collect()
}

/// Each public item of the layout sources with the row its documentation names
/// (`None` when it names none).
fn rows_in_sources() -> BTreeMap<String, Option<String>> {
    let mut items = BTreeMap::new();
    for source in SOURCES {
        let mut doc = String::new();
        for line in source.lines().map(str::trim) {
            if let Some(text) = line.strip_prefix("///") {
                doc.push_str(text);
                doc.push(' ');
                continue;
            }
            let name = line
                .strip_prefix("pub fn ")
                .or_else(|| line.strip_prefix("pub ").filter(|r| r.contains(": ")))
                .map(|rest| {
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                });
            if let Some(name) = name {
                let row = doc
                    .split_once("Row `")
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(row, _)| row.to_owned());
                items.insert(name.to_owned(), row);
            }
            if !line.starts_with("#[") {
                doc.clear();
            }
        }
    }
    for name in NOT_ROWS {
        items.remove(name);
    }
    items
}

#[test]
fn every_documented_path_is_produced_and_every_produced_path_documented() {
    let produced: BTreeSet<String> = produced().into_values().collect();
    let documented = documented();
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    let unproduced: Vec<_> = documented.difference(&produced).collect();
    assert!(
        undocumented.is_empty() && unproduced.is_empty(),
        "not in docs/layout.md: {undocumented:?}; in docs/layout.md but not produced: {unproduced:?}"
    );
}

#[test]
fn every_item_names_the_row_it_produces() {
    let produced = produced();
    let rows = rows_in_sources();
    let untested: Vec<_> = rows
        .keys()
        .filter(|n| !produced.contains_key(n.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "add these to `produced()`: {untested:?}"
    );
    for (name, path) in &produced {
        assert_eq!(
            rows.get(*name).cloned().flatten().as_deref(),
            Some(path.as_str()),
            "the documentation of `{name}` must say \"Row `{path}`\""
        );
    }
}

#[test]
fn the_doc_names_the_rotated_logs() {
    assert!(DOC.contains(&format!("`{}`", logs::rotated(1))));
    assert_eq!(
        Paths::for_prefix(Path::new("/p"), "1").service_log("web"),
        Path::new("/p/log/web").join(logs::CURRENT)
    );
}

#[test]
fn unversioned_differs_only_in_the_release() {
    let root = Path::new("/p");
    let any = Paths::unversioned(root);
    assert_eq!(any.release, any.releases());
    assert_eq!(
        Paths {
            release: any.release.clone(),
            ..Paths::for_prefix(root, "1.0")
        },
        any
    );
}

#[test]
fn the_layout_round_trips_through_json() {
    let p = Paths::for_prefix(Path::new("/var/opt/berth/app"), "2.0");
    let text = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Paths>(&text).unwrap(), p);
}
