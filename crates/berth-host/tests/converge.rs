//! Converge against real directories in a temporary prefix.

use std::error::Error as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_host::HostError;
use berth_host::converge::{self, ChangeKind};
use berth_render::{
    AppId, BackupPolicy, BackupTarget, DesiredState, DirSpec, FileSpec, Paths, Schedule,
};

const SECRET: &str = "Zq8sVbL0pM3xT7wR";

fn file(path: &Path, content: &str, mode: u32, restarts: &[&str], reloads: &[&str]) -> FileSpec {
    FileSpec {
        path: path.to_path_buf(),
        content: content.to_owned(),
        owner: None,
        mode,
        restarts: restarts.iter().map(|s| (*s).to_owned()).collect(),
        reloads: reloads.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn desired(prefix: &Path) -> DesiredState {
    let paths = Paths::for_prefix(prefix, "1.0.0");
    let etc = paths.etc.clone();
    DesiredState {
        app: AppId {
            name: "demo".to_owned(),
            version: "1.0.0".to_owned(),
        },
        users: Vec::new(),
        dirs: vec![
            DirSpec {
                path: etc.clone(),
                owner: None,
                mode: 0o755,
            },
            DirSpec {
                path: paths.data_dir("db"),
                owner: None,
                mode: 0o700,
            },
        ],
        files: vec![
            file(
                &etc.join("app.conf"),
                "workers = 3\nport = 8001\n",
                0o644,
                &["web", "worker"],
                &[],
            ),
            file(
                &etc.join("nginx.conf"),
                "listen 8080;\n",
                0o644,
                &[],
                &["nginx"],
            ),
            file(
                &etc.join("secret.env"),
                &format!("DB_USER=app\nDB_PASSWORD={SECRET}\n"),
                0o600,
                &["web"],
                &["nginx"],
            ),
        ],
        host_files: Vec::new(),
        packages: Vec::new(),
        binaries: std::collections::BTreeMap::default(),
        bundles: Vec::new(),
        secrets: Vec::new(),
        services: Vec::new(),
        jobs: Vec::new(),
        listen: std::collections::BTreeMap::new(),
        hooks: Vec::new(),
        health_url: "http://127.0.0.1:8080/".to_owned(),
        next_steps: Vec::new(),
        backup: None,
        backup_policy: BackupPolicy {
            target: BackupTarget::Default(paths.prefix.join("backups")),
            schedule: Schedule::Off,
            jobs: 1,
            compression_level: 3,
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            ssh_identity: None,
            ssh_known_hosts: None,
            recipient: None,
        },
        upgrade_policy: berth_render::UpgradePolicy {
            auto: berth_render::AutoUpgrade::Off,
            source: None,
            window: (180, 300),
            check_every: std::time::Duration::from_hours(1),
            keep_releases: 2,
        },
        metrics_listen: None,
        metrics_endpoints: std::collections::BTreeMap::new(),
        console: None,
        paths,
    }
}

fn mask() -> Vec<String> {
    vec![SECRET.to_owned()]
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn up(state: &DesiredState) {
    let plan = converge::plan(state, &mask(), false).unwrap();
    converge::apply(&plan, state).unwrap();
}

#[test]
fn first_apply_creates_everything_and_second_plan_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let state = desired(tmp.path());
    let plan = converge::plan(&state, &mask(), false).unwrap();
    assert_eq!(plan.dirs.len(), 2);
    assert!(plan.dirs.iter().all(|d| d.kind == ChangeKind::Create));
    assert_eq!(plan.files.len(), 3);
    assert_eq!(plan.restart, ["web", "worker"]);
    assert_eq!(plan.reload, ["nginx"]);
    // The dry run's text: directories to create apart from the files.
    let text = plan.to_string();
    for dir in [&state.paths.etc, &state.paths.data_dir("db")] {
        assert!(
            text.contains(&format!("+ create directory {} (mode", dir.display())),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!("+ create {} (mode", state.files[0].path.display())),
        "{text}"
    );

    let report = converge::apply(&plan, &state).unwrap().report;
    // Directories apart from files: etc, then data (the missing parent of data/db)
    // and data/db, parents first.
    assert_eq!(
        report.dirs_created,
        [
            state.paths.etc.clone(),
            state.paths.data.clone(),
            state.paths.data_dir("db")
        ]
    );
    assert!(report.dirs_changed.is_empty());
    let files: Vec<_> = state.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(report.changed, files);
    for spec in &state.files {
        assert_eq!(std::fs::read_to_string(&spec.path).unwrap(), spec.content);
        assert_eq!(mode_of(&spec.path), spec.mode);
    }
    assert_eq!(mode_of(&state.paths.data_dir("db")), 0o700);
    assert_eq!(mode_of(&state.paths.etc), 0o755);

    let again = converge::plan(&state, &mask(), false).unwrap();
    assert!(again.is_empty(), "{again}");
    assert!(again.restart.is_empty() && again.reload.is_empty());
    assert_eq!(again.to_string(), "Nothing to change\n");
    // As root, the default owner is berth's own user, which created everything.
    assert!(
        converge::plan(&state, &mask(), berth_host::users::is_root())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn changing_one_file_plans_exactly_that_file_and_its_services() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    up(&state);

    state.files[1].content = "listen 8081;\n".to_owned();
    let plan = converge::plan(&state, &mask(), false).unwrap();
    assert!(plan.dirs.is_empty());
    assert_eq!(plan.files.len(), 1);
    let change = &plan.files[0];
    assert_eq!(change.path, state.files[1].path);
    assert_eq!(change.kind, ChangeKind::Update);
    assert!(
        change
            .diff
            .as_deref()
            .unwrap()
            .contains("-listen 8080;\n+listen 8081;\n")
    );
    assert!(plan.restart.is_empty());
    assert_eq!(plan.reload, ["nginx"]);

    let text = plan.to_string();
    assert!(
        text.contains(&format!("~ update {}", state.files[1].path.display())),
        "{text}"
    );
    assert!(text.contains("reload: nginx"), "{text}");
    assert!(!text.contains("restart:"), "{text}");

    let report = converge::apply(&plan, &state).unwrap().report;
    assert_eq!(report.changed, [state.files[1].path.clone()]);
    assert_eq!(report.reload, ["nginx"]);
    assert_eq!(
        std::fs::read_to_string(&state.files[1].path).unwrap(),
        "listen 8081;\n"
    );
    assert!(converge::plan(&state, &mask(), false).unwrap().is_empty());
}

#[test]
fn a_mode_change_alone_re_modes_without_restarting() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    up(&state);

    state.files[0].mode = 0o640;
    state.dirs[0].mode = 0o750;
    let plan = converge::plan(&state, &mask(), false).unwrap();
    assert_eq!(plan.dirs.len(), 1);
    assert_eq!(plan.dirs[0].kind, ChangeKind::Metadata);
    assert_eq!(plan.dirs[0].old_mode, Some(0o755));
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].kind, ChangeKind::Metadata);
    assert_eq!(plan.files[0].old_mode, Some(0o644));
    assert_eq!(plan.files[0].diff, None);
    assert!(plan.restart.is_empty() && plan.reload.is_empty());
    let text = plan.to_string();
    assert!(text.contains("(mode 0644 -> 0640)"), "{text}");

    assert!(
        text.contains(&format!(
            "~ update directory {} (mode 0755 -> 0750)",
            state.paths.etc.display()
        )),
        "{text}"
    );

    let inode_before = std::fs::metadata(&state.files[0].path).unwrap().ino();
    let report = converge::apply(&plan, &state).unwrap().report;
    // The directory is a changed directory, not a changed file nor a created one.
    assert_eq!(report.dirs_changed, [state.paths.etc.clone()]);
    assert!(report.dirs_created.is_empty());
    assert_eq!(report.changed, [state.files[0].path.clone()]);
    assert_eq!(mode_of(&state.files[0].path), 0o640);
    assert_eq!(mode_of(&state.paths.etc), 0o750);
    // Re-moded in place, not rewritten.
    assert_eq!(
        std::fs::metadata(&state.files[0].path).unwrap().ino(),
        inode_before
    );
    assert!(converge::plan(&state, &mask(), false).unwrap().is_empty());
}

#[test]
fn diffs_and_plan_text_never_show_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    let first = converge::plan(&state, &mask(), false).unwrap();
    let text = first.to_string();
    assert!(text.contains("+DB_PASSWORD=********"), "{text}");
    assert!(!text.contains(SECRET));
    converge::apply(&first, &state).unwrap();

    // A rotated secret: both the old and the new value are masked.
    let new_secret = "newSecretValue42";
    state.files[2].content = format!("DB_USER=app\nDB_PASSWORD={new_secret}\n");
    let plan = converge::plan(&state, &[SECRET.to_owned(), new_secret.to_owned()], false).unwrap();
    let text = plan.to_string();
    let json = serde_json::to_string(&plan).unwrap();
    for shown in [&text, &json] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(new_secret), "{shown}");
    }
    assert_eq!(plan.restart, ["web"]);
    assert_eq!(plan.reload, ["nginx"]);
}

#[test]
fn a_failed_apply_puts_everything_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    up(&state);
    let etc = state.paths.etc.clone();
    let original_app = std::fs::read_to_string(&state.files[0].path).unwrap();

    // Update one file, create two new ones, and make the last destination unwritable:
    // a directory appears where a file should be written.
    state.files[0].content = "workers = 9\n".to_owned();
    state.files[0].mode = 0o640;
    state
        .files
        .push(file(&etc.join("new.conf"), "new\n", 0o644, &["web"], &[]));
    state
        .files
        .push(file(&etc.join("blocked.conf"), "x\n", 0o644, &["web"], &[]));
    state.dirs.push(DirSpec {
        path: state.paths.log.clone(),
        owner: None,
        mode: 0o750,
    });
    let plan = converge::plan(&state, &mask(), false).unwrap();
    assert_eq!(plan.files.len(), 3);
    std::fs::create_dir(etc.join("blocked.conf")).unwrap();
    std::fs::write(etc.join("blocked.conf/keep"), "x").unwrap();

    let err = converge::apply(&plan, &state).unwrap_err();
    match &err {
        HostError::ApplyFailed { source, undone } => {
            assert!(source.to_string().contains("blocked.conf"), "{source}");
            assert_eq!(*undone, 3, "log dir, app.conf, new.conf");
        }
        other => panic!("unexpected error: {other}"),
    }

    assert_eq!(
        std::fs::read_to_string(&state.files[0].path).unwrap(),
        original_app
    );
    assert_eq!(mode_of(&state.files[0].path), 0o644);
    assert!(!etc.join("new.conf").exists());
    assert!(!state.paths.log.exists());
    let leftovers: Vec<String> = std::fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("berth"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_stale_plan_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    let plan = converge::plan(&state, &mask(), false).unwrap();
    state.files[0].content = "changed after planning\n".to_owned();
    let err = converge::apply(&plan, &state).unwrap_err();
    let HostError::ApplyFailed { source, .. } = err else {
        panic!("unexpected error: {err}");
    };
    assert!(matches!(*source, HostError::StalePlan { .. }), "{source}");
    assert!(
        !state.paths.etc.exists(),
        "directories created before are removed"
    );
}

#[test]
fn a_directory_in_place_of_a_file_is_refused_when_planning() {
    let tmp = tempfile::tempdir().unwrap();
    let state = desired(tmp.path());
    std::fs::create_dir_all(&state.files[0].path).unwrap();
    let err = converge::plan(&state, &mask(), false).unwrap_err();
    assert!(matches!(err, HostError::NotAFile { .. }), "{err}");
    assert!(err.to_string().contains("app.conf"));
}

#[test]
fn owners_are_managed_only_as_root() {
    if !berth_host::users::is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    up(&state);
    state.files[0].owner = Some("nobody".to_owned());
    assert!(converge::plan(&state, &mask(), false).unwrap().is_empty());

    let plan = converge::plan(&state, &mask(), true).unwrap();
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].kind, ChangeKind::Metadata);
    assert_eq!(plan.files[0].old_owner, Some((0, 0)));
    assert!(plan.to_string().contains("owner 0:0 -> nobody"), "{plan}");
    converge::apply(&plan, &state).unwrap();
    let (uid, gid) = berth_host::users::lookup("nobody").unwrap();
    let meta = std::fs::metadata(&state.files[0].path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert!(converge::plan(&state, &mask(), true).unwrap().is_empty());

    state.files[1].owner = Some("berth-no-such-user-x9".to_owned());
    let err = converge::plan(&state, &mask(), true).unwrap_err();
    assert!(matches!(err, HostError::UnknownUser { .. }), "{err}");
}

#[test]
fn dry_run_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = desired(tmp.path());
    up(&state);
    state.files[0].content = "workers = 5\nport = 8001\n".to_owned();
    state.files[2].mode = 0o640;
    state.files.push(file(
        &state.paths.etc.join("extra.conf"),
        &format!("token={SECRET}\n"),
        0o600,
        &[],
        &["nginx"],
    ));
    let plan = converge::plan(&state, &mask(), false).unwrap();
    let prefix = tmp.path().display().to_string();
    insta::with_settings!({ filters => vec![(prefix.as_str(), "[PREFIX]")] }, {
        insta::assert_snapshot!(plan.to_string(), @r"
        ~ update [PREFIX]/etc/app.conf
            --- [PREFIX]/etc/app.conf
            +++ [PREFIX]/etc/app.conf
            @@ -1,2 +1,2 @@
            -workers = 3
            +workers = 5
             port = 8001
        ~ update [PREFIX]/etc/secret.env (mode 0600 -> 0640)
        + create [PREFIX]/etc/extra.conf (mode 0600)
            --- /dev/null
            +++ [PREFIX]/etc/extra.conf
            @@ -0,0 +1 @@
            +token=********
        restart: web, worker
        reload: nginx
        ");
    });
}

#[test]
fn an_applied_change_can_be_put_back_whole_later() {
    let tmp = tempfile::tempdir().unwrap();
    let state = desired(tmp.path());
    up(&state);
    let before = |s: &DesiredState| -> Vec<(String, u32)> {
        s.files
            .iter()
            .map(|f| (std::fs::read_to_string(&f.path).unwrap(), mode_of(&f.path)))
            .collect()
    };
    let old = before(&state);

    // One file changed (and its mode), one new file in a new directory.
    let mut next = desired(tmp.path());
    next.files[0].content = "workers = 5\nport = 8001\n".to_owned();
    next.files[1].mode = 0o640;
    let cache = next.paths.data_dir("cache");
    next.dirs.push(berth_render::DirSpec {
        path: cache.clone(),
        owner: None,
        mode: 0o750,
    });
    next.dirs.push(berth_render::DirSpec {
        path: next.paths.data_dir("spool"),
        owner: None,
        mode: 0o750,
    });
    next.files
        .push(file(&cache.join("new.conf"), "x\n", 0o644, &["web"], &[]));
    let plan = converge::plan(&next, &mask(), false).unwrap();
    let applied = converge::apply(&plan, &next).unwrap();
    assert_eq!(
        std::fs::read_to_string(&next.files[0].path).unwrap(),
        next.files[0].content
    );
    // A service writes into the new spool directory before the change is put back.
    std::fs::write(next.paths.data.join("spool/job"), "queued").unwrap();

    let undone = applied.roll_back().unwrap();
    assert!(undone >= 4, "{undone}");
    assert_eq!(before(&state), old);
    assert!(!cache.exists(), "the new directory and its file are gone");
    assert_eq!(
        std::fs::read_to_string(next.paths.data.join("spool/job")).unwrap(),
        "queued",
        "what a service wrote is kept"
    );
    assert!(converge::plan(&state, &mask(), false).unwrap().is_empty());
}

#[test]
fn files_berth_no_longer_wants_are_removed_and_come_back_on_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let state = desired(tmp.path());
    up(&state);
    let previous: Vec<std::path::PathBuf> = state.files.iter().map(|f| f.path.clone()).collect();
    let mut next = desired(tmp.path());
    let gone = next.files.remove(1);
    // A file berth never wrote is never touched.
    let foreign = next.paths.etc.join("admin-notes.txt");
    std::fs::write(&foreign, "mine").unwrap();

    let plan = converge::plan(&next, &mask(), false)
        .unwrap()
        .remove_stale(&next, &previous);
    assert_eq!(plan.removed, std::slice::from_ref(&gone.path));
    assert!(!plan.is_empty());
    assert!(
        plan.to_string()
            .contains(&format!("- remove {}", gone.path.display())),
        "{plan}"
    );
    let applied = converge::apply(&plan, &next).unwrap();
    assert!(!gone.path.exists());
    assert!(foreign.exists());
    let again = converge::plan(&next, &mask(), false)
        .unwrap()
        .remove_stale(&next, &previous);
    assert!(again.is_empty(), "{again}");

    applied.roll_back().unwrap();
    assert_eq!(std::fs::read_to_string(&gone.path).unwrap(), gone.content);
    assert_eq!(mode_of(&gone.path), gone.mode);
}

/// A service user's data directory given an odd mode, so converge plans a mode
/// change; `victim` is a root file outside the prefix the user wants chmodded.
fn odd_data_dir(tmp: &Path) -> (DesiredState, std::path::PathBuf) {
    let state = desired(tmp);
    up(&state);
    let db = state.paths.data_dir("db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o750)).unwrap();
    let victim = tmp.join("victim");
    std::fs::write(&victim, "root's\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    (state, victim)
}

fn swap_for_symlink(dir: &Path, target: &Path) {
    std::fs::rename(dir, dir.with_extension("moved")).unwrap();
    std::os::unix::fs::symlink(target, dir).unwrap();
}

#[test]
fn a_directory_swapped_for_a_symlink_between_plan_and_apply_is_refused() {
    // Stops: finding 2 (issue 7), the swap made before berth applies its plan.
    let tmp = tempfile::tempdir().unwrap();
    let (state, victim) = odd_data_dir(tmp.path());
    let plan = converge::plan(&state, &mask(), false).unwrap();
    assert_eq!(plan.dirs[0].old_mode, Some(0o750));
    swap_for_symlink(&state.paths.data_dir("db"), &victim);
    let err = converge::apply(&plan, &state).unwrap_err();
    let HostError::ApplyFailed { source, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(**source, HostError::SymlinkRefused { .. }),
        "{source}"
    );
    assert_eq!(mode_of(&victim), 0o644);
}

#[test]
fn a_directory_replaced_by_another_between_plan_and_apply_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, _) = odd_data_dir(tmp.path());
    let plan = converge::plan(&state, &mask(), false).unwrap();
    let db = state.paths.data_dir("db");
    std::fs::rename(&db, db.with_extension("moved")).unwrap();
    std::fs::create_dir(&db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = converge::apply(&plan, &state).unwrap_err();
    assert!(
        err.source().unwrap().to_string().contains("was replaced"),
        "{err}"
    );
    assert_eq!(mode_of(&db), 0o755, "what was put there is not touched");
}

#[test]
fn a_directory_swapped_for_a_symlink_before_roll_back_is_reported_not_followed() {
    // Stops: finding 2 (issue 7): the rollback of a failed reconfigure chmodded the
    // target of the symlink the service user put in place of its directory.
    let tmp = tempfile::tempdir().unwrap();
    let (state, victim) = odd_data_dir(tmp.path());
    let plan = converge::plan(&state, &mask(), false).unwrap();
    let applied = converge::apply(&plan, &state).unwrap();
    let db = state.paths.data_dir("db");
    assert_eq!(mode_of(&db), 0o700);
    swap_for_symlink(&db, &victim);

    let err = applied.roll_back().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("was replaced after berth changed it"),
        "{text}"
    );
    assert!(text.contains("symbolic link"), "{text}");
    assert_eq!(mode_of(&victim), 0o644, "the symlink's target is untouched");
    assert_eq!(
        mode_of(&db.with_extension("moved")),
        0o750,
        "the old mode is back on the directory berth changed"
    );
}
