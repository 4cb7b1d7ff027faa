//! Running one-shot hooks (database init, migrations, first admin user) as the
//! component's user, with their output in `<log>/hooks/<name>.log` and a timeout
//! that kills the whole process group.

use std::io::Write;
use std::sync::mpsc;

use std::collections::{BTreeMap, BTreeSet};

use berth_host::children::ChildRecords;
use berth_host::secrets::SecretStore;
use berth_host::secrets::handover::Handover;
use berth_host::unfinished::UnfinishedOutput;
use berth_model::manifest::HookWhen;
use berth_process::ChildCommand;
use berth_render::{DesiredState, HookSpec, SecretSpec};
use berth_supervisor_protocol::{Request, Target};

use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::run::{Run, error_text};
use crate::supervisor;

/// Run a hook to completion, its process group recorded in `children` while it runs.
/// Fails with the log's last lines when it exits non-zero or times out.
pub fn run(hook: &HookSpec, children: &ChildRecords) -> Result<()> {
    let failed = |why: String| LifecycleError::Hook {
        name: hook.name.clone(),
        why,
        log: hook.log_file.clone(),
        tail: supervisor::tail(&hook.log_file, 15),
    };
    // 0640, root and the hook user's group, never through a symlink: hook output
    // carries passwords being set, tracebacks and the like.
    let mut log = berth_supervisor::log_group(hook.user.as_deref())
        .and_then(|group| berth_supervisor::open_log_file(&hook.log_file, group))
        .map_err(LifecycleError::io("open hook log", &hook.log_file))?;
    let _ = writeln!(log, "--- berth: running hook `{}`", hook.name);
    let clone = |f: &std::fs::File| {
        f.try_clone()
            .map_err(LifecycleError::io("open hook log", &hook.log_file))
    };
    // Nothing of berth's own environment reaches a hook (root's HOME, a proxy, an
    // `SSH_AUTH_SOCK`): the manifest's variables, plus who it runs as and a base PATH.
    // Its own session, so a timeout kills the hook and everything it started; and it
    // dies with berth.
    let mut cmd = ChildCommand::from_argv(&hook.argv)
        .map_err(|_| failed("has an empty command".to_owned()))?;
    cmd.user(hook.user.as_deref())
        .envs(&hook.env)
        .die_with_parent();
    if let Some(cwd) = &hook.cwd {
        cmd.current_dir(cwd);
    }
    let program = hook.argv[0].as_str();
    let mut cmd = cmd
        .build()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    cmd.stdout(clone(&log)?).stderr(clone(&log)?);
    let (mut child, recorded) = children
        .spawn(&mut cmd, &format!("hook {}", hook.name))
        .map_err(|e| {
            failed(format!(
                "could not be started (`{program}`: {})",
                error_text(&e)
            ))
        })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = if let Ok(status) = rx.recv_timeout(hook.timeout) {
        status.map_err(|e| failed(format!("could not be waited for: {e}")))?
    } else {
        if let Ok(group) = i32::try_from(pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = rx.recv();
        return Err(failed(format!(
            "did not finish within {} and was killed",
            humantime::format_duration(hook.timeout)
        )));
    };
    drop(recorded);
    if !status.success() {
        return Err(failed(format!("failed ({status})")));
    }
    Ok(())
}

/// How a hook's success is recorded, which decides when it is due again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    /// Once per scope: [`berth_state::INSTANCE_SCOPE`] or `release <version>`.
    Scope(String),
    /// `when = "change"`: the last fingerprint it ran with; due when it differs.
    Change(String),
    /// Never recorded: an `always` hook (or a change hook without a fingerprint,
    /// which validation does not let through).
    Never,
}

/// How `hook` is recorded for app version `version`.
fn hook_record(hook: &HookSpec, version: &str) -> Record {
    match (hook.when, &hook.rerun_key) {
        (HookWhen::Once, _) => Record::Scope(berth_state::INSTANCE_SCOPE.to_owned()),
        (HookWhen::Release, _) => Record::Scope(format!("release {version}")),
        (HookWhen::Change, Some(key)) => Record::Change(key.clone()),
        (HookWhen::Change, None) | (HookWhen::Always, _) => Record::Never,
    }
}

/// Why `hook` (a `when = "change"` hook) is due, against its last successful run
/// (`None`: it never ran): the inputs whose value changed, as
/// `package mediawiki 1:1.39.10-1 → 1:1.39.11-1`. `None` when it is not due.
pub fn change_reason(hook: &HookSpec, last: Option<&berth_state::ChangeRecord>) -> Option<String> {
    let key = hook.rerun_key.as_ref()?;
    let Some(last) = last else {
        return Some("has not run yet".to_owned());
    };
    if &last.key == key {
        return None;
    }
    let before: Option<Vec<berth_render::RerunInput>> = last
        .inputs
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok());
    let Some(before) = before else {
        return Some("what it follows changed".to_owned());
    };
    let shown = |v: Option<&String>| v.map_or_else(|| "(none)".to_owned(), Clone::clone);
    let changed: Vec<String> = hook
        .rerun_inputs
        .iter()
        .filter_map(|now| {
            let was = before.iter().find(|b| b.source == now.source);
            let was_value = was.and_then(|b| b.value.as_ref());
            if was.is_some() && was_value == now.value.as_ref() {
                return None;
            }
            let label = now.source.replacen(':', " ", 1);
            Some(match was {
                Some(_) => format!(
                    "{label} {} → {}",
                    shown(was_value),
                    shown(now.value.as_ref())
                ),
                None => format!("{label} newly followed ({})", shown(now.value.as_ref())),
            })
        })
        .chain(
            before
                .iter()
                .filter(|b| !hook.rerun_inputs.iter().any(|n| n.source == b.source))
                .map(|b| format!("{} no longer followed", b.source.replacen(':', " ", 1))),
        )
        .collect();
    Some(changed.join(", "))
}

/// Run the hooks that are due, starting the services each needs first.
pub fn run_hooks(run: &Run, state: &DesiredState, include_always: bool) -> Result<Vec<String>> {
    run_due(run, &due(run, state, &every_due(include_always))?)
}

/// The selection of [`run_hooks`]: what its schedule makes due, and `always` hooks when
/// `include_always`.
pub fn every_due(include_always: bool) -> impl Fn(&HookSpec, Option<bool>) -> bool {
    move |_, scheduled| scheduled.unwrap_or(include_always)
}

/// The hooks of `state` in the order the renderer gives ([`berth_render::hook_order`]).
fn in_order(state: &DesiredState) -> Vec<&HookSpec> {
    let by_name: BTreeMap<&str, &HookSpec> =
        state.hooks.iter().map(|h| (h.name.as_str(), h)).collect();
    berth_render::hook_order(state)
        .into_iter()
        .filter_map(|name| by_name.get(name).copied())
        .collect()
}

/// A hook picked to run, with how its success is recorded.
pub struct Due<'s> {
    /// The hook.
    pub hook: &'s HookSpec,
    record: Record,
    /// The secrets it makes (`from_hook`), which berth takes from it once it succeeded.
    makes: Vec<&'s SecretSpec>,
}

/// The secrets `hook` makes (`from_hook`), as `state` declares them.
fn made_by<'s>(state: &'s DesiredState, hook: &HookSpec) -> Vec<&'s SecretSpec> {
    state
        .secrets
        .iter()
        .filter(|s| hook.secrets_out.contains(&s.name))
        .collect()
}

/// The secrets of `makes` the instance's store does not have (all of them when there
/// is no store yet).
fn missing_secrets(state: &DesiredState, makes: &[&SecretSpec]) -> Result<Vec<String>> {
    let Some(store) = SecretStore::existing(&state.paths.secrets) else {
        return Ok(makes.iter().map(|s| s.name.clone()).collect());
    };
    let mut missing = Vec::new();
    for spec in makes {
        if !store.contains(&spec.name)? {
            missing.push(spec.name.clone());
        }
    }
    Ok(missing)
}

/// The hooks `select` picks, in [`berth_render::hook_order`]. `select` gets each hook
/// and whether its schedule makes it due (`None` for `always` hooks, which have no
/// record). Decided before any of them runs, so the services they gate can be held
/// back first ([`gated_services`]).
pub fn due<'s>(
    run: &Run,
    state: &'s DesiredState,
    select: &dyn Fn(&HookSpec, Option<bool>) -> bool,
) -> Result<Vec<Due<'s>>> {
    due_in(Some(&run.db), state, select)
}

/// [`due`] against the state database `db` (`None`: there is none yet, so every
/// hook's schedule makes it due).
pub(crate) fn due_in<'s>(
    db: Option<&berth_state::StateDb>,
    state: &'s DesiredState,
    select: &dyn Fn(&HookSpec, Option<bool>) -> bool,
) -> Result<Vec<Due<'s>>> {
    let mut picked = Vec::new();
    for hook in in_order(state) {
        let record = hook_record(hook, &state.app.version);
        let makes = made_by(state, hook);
        let scheduled = match (&record, db) {
            (Record::Never, _) => None,
            (_, None) => Some(true),
            // A `once` hook that makes secrets: the store is its record. Due while one
            // of them is missing (the first `up`, a secret added by a new version);
            // not after a restore that brought them back, even into a new instance
            // whose database never saw the hook run: it must not mint a new value over
            // the one the restored data goes with.
            (Record::Scope(_), Some(_)) if hook.when == HookWhen::Once && !makes.is_empty() => {
                Some(!missing_secrets(state, &makes)?.is_empty())
            }
            (Record::Scope(scope), Some(db)) => Some(!db.hook_ran(&hook.name, scope)?),
            (Record::Change(key), Some(db)) => Some(
                db.last_change_hook(&hook.name)?
                    .is_none_or(|last| &last.key != key),
            ),
        };
        if select(hook, scheduled) {
            picked.push(Due {
                hook,
                record,
                makes,
            });
        }
    }
    Ok(picked)
}

/// The hooks that are due (as `up` picks them, `always` hooks included), each with why,
/// for the dry run: `("migrate", "package mediawiki 1:1.39.10-1 → 1:1.39.11-1")`.
/// `db`: the state database, `None` before the instance is set up.
pub(crate) fn due_with_reasons(
    db: Option<&berth_state::StateDb>,
    state: &DesiredState,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for d in due_in(db, state, &every_due(true))? {
        let why = match &d.record {
            Record::Never => "always, when something changes".to_owned(),
            Record::Scope(_) if d.hook.when == HookWhen::Release => {
                format!("not yet run for version {}", state.app.version)
            }
            Record::Scope(_) if !d.makes.is_empty() => {
                let missing = missing_secrets(state, &d.makes)?;
                let names: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
                format!("makes secret(s) not in the store yet: {}", names.join(", "))
            }
            Record::Scope(_) => "has not run yet".to_owned(),
            Record::Change(_) => {
                let last = match db {
                    Some(db) => db.last_change_hook(&d.hook.name)?,
                    None => None,
                };
                change_reason(d.hook, last.as_ref()).unwrap_or_default()
            }
        };
        out.push((d.hook.name.clone(), why));
    }
    Ok(out)
}

/// The services the hooks in `due` gate (their `before`): a change must not
/// (re)start them until those hooks have succeeded.
pub fn gated_services(due: &[Due<'_>]) -> BTreeSet<String> {
    due.iter()
        .flat_map(|d| d.hook.before.iter().cloned())
        .collect()
}

/// Run the hooks `select` picks, in [`berth_render::hook_order`] (see [`due`]).
pub fn run_selected(
    run: &Run,
    state: &DesiredState,
    select: &dyn Fn(&HookSpec, Option<bool>) -> bool,
) -> Result<Vec<String>> {
    run_due(run, &due(run, state, select)?)
}

/// Run `due` one after the other, each once the services it needs are started;
/// record each success under its scope. Returns the names of the hooks run.
pub fn run_due(run: &Run, due: &[Due<'_>]) -> Result<Vec<String>> {
    let (inst, db, progress) = (run.inst, &run.db, run.progress);
    let mut ran = Vec::new();
    for Due {
        hook,
        record,
        makes,
    } in due
    {
        let hook = *hook;
        if !hook.after.is_empty() {
            progress.begin(&format!(
                "Starting {} for hook `{}`",
                hook.after.join(", "),
                hook.name
            ));
            let supervisor = run.supervisor();
            for svc in &hook.after {
                supervisor
                    .request(&Request::Start {
                        target: Target::One(svc.clone()),
                    })
                    .map_err(|e| LifecycleError::HookNeeds {
                        hook: hook.name.clone(),
                        service: svc.clone(),
                        source: Box::new(supervisor.with_failed_logs(e)),
                    })?;
            }
            progress.end("");
        }
        let label = if hook.description.is_empty() {
            hook.name.clone()
        } else {
            hook.description.clone()
        };
        let unfinished = unfinished_output(inst, hook);
        if let Some(output) = &unfinished
            && output.clear_partial()?
        {
            progress.note(&format!(
                "Removed `{}`, left half-made by hook `{}`, which did not finish",
                output.output().display(),
                hook.name
            ));
        }
        progress.begin(&format!("Running hook `{}`: {label}", hook.name));
        let children = inst.children();
        run.step(&format!("hook {}", hook.name), || {
            if let Some(output) = &unfinished {
                output.begin()?;
            }
            if makes.is_empty() {
                self::run(hook, &children)?;
            } else {
                run_handing_over(inst, hook, makes, &children)?;
            }
            if let Some(output) = &unfinished {
                output.finish()?;
            }
            Ok::<_, LifecycleError>(())
        })?;
        match record {
            Record::Scope(scope) => db.record_hook(&hook.name, scope, run.id)?,
            Record::Change(key) => {
                let inputs =
                    serde_json::to_string(&hook.rerun_inputs).expect("rerun inputs serialise");
                db.record_change_hook(&hook.name, key, &inputs, run.id)?;
            }
            Record::Never => {}
        }
        progress.end("");
        ran.push(hook.name.clone());
    }
    Ok(ran)
}

/// Runs `hook`, which makes the secrets `makes`: in an empty hand-over directory of its
/// user's (`BERTH_SECRETS_OUT`, which its rendered environment names), whose values are
/// checked and kept in the secret store once the hook succeeded; the directory is
/// removed either way. A value missing or refused fails the hook, naming the secret and
/// why, never the value.
fn run_handing_over(
    inst: &Instance,
    hook: &HookSpec,
    makes: &[&SecretSpec],
    children: &ChildRecords,
) -> Result<()> {
    let owner = match &hook.user {
        Some(user) if inst.facts.is_root => Some(
            berth_host::users::lookup(user)
                .ok_or_else(|| berth_host::HostError::UnknownUser { user: user.clone() })?,
        ),
        _ => None,
    };
    let handover = Handover::prepare(&inst.paths.prefix, &hook.name, owner)?;
    if let Err(e) = self::run(hook, children) {
        let _ = handover.remove();
        return Err(e);
    }
    let store = SecretStore::open(&inst.paths.secrets)?;
    handover
        .store_all(makes, &store)
        .map_err(|e| LifecycleError::Hook {
            name: hook.name.clone(),
            why: match &e {
                berth_host::HostError::HookSecret { name, why, .. } => {
                    format!("exited 0, but did not hand over the secret `{name}`: {why}")
                }
                e => format!(
                    "exited 0, but its secrets could not be kept: {}",
                    error_text(e)
                ),
            },
            log: hook.log_file.clone(),
            tail: supervisor::tail(&hook.log_file, 15),
        })?;
    Ok(())
}

/// What a hook declares it makes (`creates`), told apart from a half-made one by a
/// record in `<state>/unfinished-hooks/<name>` while the hook runs from nothing.
fn unfinished_output(inst: &Instance, hook: &HookSpec) -> Option<UnfinishedOutput> {
    hook.creates.as_ref().map(|creates| {
        UnfinishedOutput::new(
            inst.paths.unfinished_hook(&hook.name),
            creates.clone(),
            inst.paths.data.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_host::children::ChildRecords;
    use berth_model::manifest::HookWhen;

    use crate::testing::hook;

    /// A hook's log is 0640, root's and the hook user's group's (it was 0644: any local
    /// user read hook output, which carries passwords being set), and the hook sees only
    /// the manifest's variables plus PATH, LANG, USER, LOGNAME and HOME from the passwd
    /// entry (root's HOME used to come from berth's own environment).
    #[test]
    fn hook_logs_are_private_and_hooks_get_a_clean_environment() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let root = nix::unistd::geteuid().is_root();
        let user = root.then(|| "nobody".to_owned());
        let out = tmp.path().join("env.txt");
        if root {
            // `nobody` writes its environment here.
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let paths = berth_render::Paths::unversioned(tmp.path());
        let log_file = paths.hook_log("check");
        std::fs::create_dir_all(paths.hooks_log_dir()).unwrap();
        std::fs::write(&log_file, "from before\n").unwrap();
        std::fs::set_permissions(&log_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut h = hook("check", &[], &[]);
        h.argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("env > {}; echo done", out.display()),
        ];
        h.env = BTreeMap::from([("FROM_MANIFEST".to_owned(), "yes".to_owned())]);
        h.user = user.clone();
        h.log_file = log_file.clone();
        let children = ChildRecords::new(tmp.path().join("children"));
        super::run(&h, &children).unwrap();
        // Waited for, so no longer recorded.
        assert_eq!(children.stop_leftovers().unwrap(), []);

        let meta = std::fs::metadata(&log_file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        if root {
            let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, nobody.gid.as_raw()));
        }
        assert!(
            std::fs::read_to_string(&log_file)
                .unwrap()
                .ends_with("done\n")
        );

        let env = std::fs::read_to_string(&out).unwrap();
        let names: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
        let allowed = [
            "PATH",
            "LANG",
            "USER",
            "LOGNAME",
            "HOME",
            "FROM_MANIFEST",
            "PWD",
            "SHLVL",
            "_",
        ];
        for name in names.keys() {
            assert!(allowed.contains(name), "the hook saw `{name}`:\n{env}");
        }
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap();
        let expected = match &user {
            Some(u) => nix::unistd::User::from_name(u).unwrap().unwrap(),
            None => me,
        };
        assert_eq!(names["HOME"], expected.dir.to_str().unwrap());
        assert_eq!(names["USER"], expected.name);
        assert_eq!(names["FROM_MANIFEST"], "yes");
    }

    /// `once` hooks are recorded for the instance, `release` hooks per version (so a new
    /// version runs them again), `change` hooks by fingerprint, `always` hooks not at all.
    #[test]
    fn a_hook_is_recorded_as_its_schedule_says() {
        use super::{Record, hook_record};
        let mut h = hook("h", &[], &[]);
        assert_eq!(
            hook_record(&h, "2.0"),
            Record::Scope(berth_state::INSTANCE_SCOPE.to_owned())
        );
        h.when = HookWhen::Release;
        assert_eq!(
            hook_record(&h, "2.0"),
            Record::Scope("release 2.0".to_owned())
        );
        assert_ne!(hook_record(&h, "2.1"), hook_record(&h, "2.0"));
        h.when = HookWhen::Always;
        assert_eq!(hook_record(&h, "2.0"), Record::Never);
        h.when = HookWhen::Change;
        h.rerun_key = Some("sha256:ab".to_owned());
        assert_eq!(
            hook_record(&h, "2.0"),
            Record::Change("sha256:ab".to_owned())
        );
    }

    /// The dry run's reason names each input whose value changed, old → new.
    #[test]
    fn a_change_reason_names_what_changed() {
        use berth_render::RerunInput;
        use berth_state::ChangeRecord;
        let input = |source: &str, value: Option<&str>| RerunInput {
            source: source.to_owned(),
            value: value.map(str::to_owned),
        };
        let mut h = hook("migrate", &[], &[]);
        h.when = HookWhen::Change;
        h.rerun_key = Some("sha256:new".to_owned());
        h.rerun_inputs = vec![
            input("package:mediawiki", Some("1:1.39.11-1")),
            input("setting:db.name", Some("\"wiki\"")),
        ];
        let last = |key: &str, inputs: &[RerunInput]| ChangeRecord {
            key: key.to_owned(),
            inputs: Some(serde_json::to_string(inputs).unwrap()),
        };
        let before = [
            input("package:mediawiki", Some("1:1.39.10-1")),
            input("setting:db.name", Some("\"wiki\"")),
        ];
        assert_eq!(
            super::change_reason(&h, Some(&last("sha256:old", &before))).as_deref(),
            Some("package mediawiki 1:1.39.10-1 → 1:1.39.11-1")
        );
        assert_eq!(
            super::change_reason(&h, Some(&last("sha256:new", &before))),
            None
        );
        assert_eq!(
            super::change_reason(&h, None).as_deref(),
            Some("has not run yet")
        );
        let uninstalled = [input("package:mediawiki", None)];
        assert_eq!(
            super::change_reason(&h, Some(&last("sha256:old", &uninstalled))).as_deref(),
            Some(
                "package mediawiki (none) → 1:1.39.11-1, setting db.name newly followed (\"wiki\")"
            )
        );
    }

    mod running {
        use berth_model::manifest::HookWhen;
        use berth_render::HookSpec;
        use berth_supervisor_protocol::{Request, Response, Target};

        use crate::testing::{Scripted, hook, instance, names, state_on};
        use crate::{Instance, LifecycleError, Run, Silent};

        fn hook_in(inst: &Instance, name: &str, when: HookWhen, after: &[&str]) -> HookSpec {
            let mut h = hook(name, after, &[]);
            h.when = when;
            h.log_file = inst.paths.prefix.join(format!("log/hooks/{name}.log"));
            h
        }

        fn ran(
            inst: &Instance,
            sup: &Scripted,
            hooks: &[HookSpec],
            version: &str,
            always: bool,
        ) -> Vec<String> {
            let run = Run::begin(inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(sup);
            let mut state = state_on(&inst.paths.prefix, vec![], hooks.to_vec());
            state.app.version = version.into();
            super::super::run_hooks(&run, &state, always).unwrap()
        }

        /// `once` hooks run once per instance, `release` hooks once per version,
        /// `always` hooks whenever asked to; a hook's services are started before it.
        #[test]
        fn hooks_run_when_their_schedule_says() {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let hooks = [
                hook_in(&inst, "a_once", HookWhen::Once, &["db"]),
                hook_in(&inst, "b_release", HookWhen::Release, &[]),
                hook_in(&inst, "c_always", HookWhen::Always, &[]),
            ];
            let sup = Scripted::answering(vec![]);
            assert_eq!(
                ran(&inst, &sup, &hooks, "1.0.0", true),
                ["a_once", "b_release", "c_always"]
            );
            assert_eq!(
                sup.sent(),
                [Request::Start {
                    target: Target::One("db".into())
                }]
            );
            assert_eq!(ran(&inst, &sup, &hooks, "1.0.0", true), ["c_always"]);
            assert_eq!(
                ran(&inst, &sup, &hooks, "1.0.0", false),
                Vec::<String>::new()
            );
            assert_eq!(ran(&inst, &sup, &hooks, "1.1.0", false), ["b_release"]);
            assert_eq!(
                sup.sent().len(),
                1,
                "the once hook's service was started once"
            );
        }

        /// The hooks run in the renderer's order: one with `after = ["hook:x"]` after
        /// `x`, and one gating a service (`before`) before the service is started for
        /// a hook that needs it, whatever their names say.
        #[test]
        fn hooks_run_in_the_renderers_order_around_the_services_they_gate() {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let journal = tmp.path().join("journal");
            let writing = |name: &str, after: &[&str], before: &[&str]| {
                let mut h = hook_in(&inst, name, HookWhen::Once, after);
                h.before = names(before);
                h.argv = names(&[
                    "/bin/sh",
                    "-c",
                    &format!("echo hook {name} >> {}", journal.display()),
                ]);
                h
            };
            let mut a_migrate = writing("a_migrate", &["db"], &[]);
            a_migrate.after_hooks = names(&["m_createdb"]);
            let hooks = vec![
                a_migrate,
                writing("m_createdb", &["db"], &[]),
                writing("z_initdb", &[], &["db"]),
            ];
            let sup = Scripted::answering(vec![]).journaling(&journal);
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], hooks);
            let ran = super::super::run_hooks(&run, &state, true).unwrap();
            assert_eq!(ran, ["z_initdb", "m_createdb", "a_migrate"]);
            assert_eq!(
                std::fs::read_to_string(&journal).unwrap(),
                "hook z_initdb\nstart db\nhook m_createdb\nstart db\nhook a_migrate\n"
            );
        }

        /// A `change` hook runs when its fingerprint differs from the one it last
        /// ran with: the first time, after a change, and after going back to an
        /// earlier fingerprint; not again with the same one.
        #[test]
        fn a_change_hook_runs_when_its_last_fingerprint_differs() {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let sup = Scripted::answering(vec![]);
            let with_key = |key: &str| {
                let mut h = hook_in(&inst, "migrate", HookWhen::Change, &[]);
                h.rerun_key = Some(key.to_owned());
                vec![h]
            };
            let mut runs = Vec::new();
            for key in ["sha256:a", "sha256:a", "sha256:b", "sha256:a", "sha256:a"] {
                runs.push(ran(&inst, &sup, &with_key(key), "1.0.0", false).len());
            }
            assert_eq!(runs, [1, 0, 1, 1, 0]);
        }

        /// A hook that fails ends the run with its log's last lines and is not
        /// recorded as run, so the next `up` runs it again.
        #[test]
        fn a_failed_hook_is_not_recorded_and_runs_again() {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let mut failing = hook_in(&inst, "migrate", HookWhen::Once, &[]);
            failing.argv = names(&["/bin/sh", "-c", "echo no table; exit 3"]);
            let sup = Scripted::answering(vec![]);
            for _ in 0..2 {
                let run = Run::begin(&inst, "up", "", &Silent)
                    .unwrap()
                    .with_supervisor(&sup);
                let state = state_on(&inst.paths.prefix, vec![], vec![failing.clone()]);
                let err = super::super::run_hooks(&run, &state, true).unwrap_err();
                let LifecycleError::Hook {
                    name, why, tail, ..
                } = &err
                else {
                    panic!("{err}");
                };
                assert_eq!(name, "migrate");
                assert!(why.contains("exit status: 3"), "{why}");
                assert!(tail.contains("no table"), "{tail}");
                assert!(
                    !run.db
                        .hook_ran("migrate", berth_state::INSTANCE_SCOPE)
                        .unwrap()
                );
            }
        }

        /// A `once` hook that makes a secret: the value it writes to
        /// `$BERTH_SECRETS_OUT/<name>` lands 0600 in the store and the hand-over
        /// directory is gone. It is not due while the secret is in the store, even in a
        /// new instance whose database never saw it run (a restore brought the secret
        /// back); it is due again once the secret is missing. A hook that exits 0
        /// without handing the value over fails and is not recorded.
        #[test]
        fn a_hook_that_makes_a_secret_hands_it_over_once() {
            use std::os::unix::fs::PermissionsExt;
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let count = tmp.path().join("minted");
            let minting = |script: &str| {
                let mut h = hook_in(&inst, "bootstrap", HookWhen::Once, &[]);
                h.secrets_out = names(&["admin_api_key"]);
                h.env.insert(
                    "BERTH_SECRETS_OUT".into(),
                    inst.paths
                        .hook_secrets_out("bootstrap")
                        .display()
                        .to_string(),
                );
                h.argv = names(&[
                    "/bin/sh",
                    "-c",
                    &format!("echo x >> {}; {script}", count.display()),
                ]);
                let mut state = state_on(&inst.paths.prefix, vec![], vec![h]);
                state.secrets = vec![berth_render::SecretSpec {
                    name: "admin_api_key".into(),
                    length: 0,
                    alphabet: String::new(),
                    owner: None,
                    from_hook: Some("bootstrap".into()),
                }];
                state
            };
            let sup = Scripted::answering(vec![]);
            let up = |state: &berth_render::DesiredState| {
                let run = Run::begin(&inst, "up", "", &Silent)
                    .unwrap()
                    .with_supervisor(&sup);
                super::super::run_hooks(&run, state, true)
            };
            let minted = || {
                std::fs::read_to_string(&count)
                    .unwrap_or_default()
                    .lines()
                    .count()
            };

            // Exits 0 without the value: a failure naming the secret, nothing stored.
            let err = up(&minting("true")).unwrap_err();
            let text = crate::run::error_text(&err);
            assert!(
                text.contains("exited 0, but did not hand over the secret `admin_api_key`"),
                "{text}"
            );
            assert!(!inst.paths.secret("admin_api_key").exists());
            assert!(!inst.paths.hook_secrets_out("bootstrap").exists());

            let good = minting(r#"echo "tok_$$" > "$BERTH_SECRETS_OUT/admin_api_key""#);
            // The dry run says why it is due.
            let run = Run::begin(&inst, "up", "", &Silent).unwrap();
            assert_eq!(
                super::super::due_with_reasons(Some(&run.db), &good).unwrap(),
                [(
                    "bootstrap".to_owned(),
                    "makes secret(s) not in the store yet: `admin_api_key`".to_owned()
                )]
            );
            assert_eq!(up(&good).unwrap(), ["bootstrap"]);
            assert_eq!(
                super::super::due_with_reasons(Some(&run.db), &good).unwrap(),
                []
            );
            let stored = std::fs::read_to_string(inst.paths.secret("admin_api_key")).unwrap();
            assert!(
                stored.starts_with("tok_") && !stored.ends_with('\n'),
                "{stored:?}"
            );
            let mode = std::fs::metadata(inst.paths.secret("admin_api_key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o600);
            assert!(!inst.paths.hook_secrets_out("bootstrap").exists());
            assert_eq!(minted(), 2);

            // Not again while the secret is there.
            assert_eq!(up(&good).unwrap(), Vec::<String>::new());
            // A new instance (no record of the hook) with the secret restored: not due.
            std::fs::remove_file(inst.paths.state_db()).unwrap();
            assert_eq!(up(&good).unwrap(), Vec::<String>::new());
            assert_eq!(minted(), 2);
            // The secret gone: due again, the new value kept.
            std::fs::remove_file(inst.paths.secret("admin_api_key")).unwrap();
            assert_eq!(up(&good).unwrap(), ["bootstrap"]);
            assert_eq!(minted(), 3);
            assert_ne!(
                std::fs::read_to_string(inst.paths.secret("admin_api_key")).unwrap(),
                stored
            );
        }

        /// A service the hook needs does not start: the hook does not run, and the
        /// error names both.
        #[test]
        fn a_hook_whose_service_does_not_start_does_not_run() {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let mut h = hook_in(&inst, "createdb", HookWhen::Once, &["db"]);
            let marker = tmp.path().join("ran");
            h.argv = names(&["/bin/touch", marker.to_str().unwrap()]);
            let sup = Scripted::answering(vec![Response::Error {
                message: "service `db` failed".into(),
            }]);
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], vec![h]);
            let err = super::super::run_hooks(&run, &state, true).unwrap_err();
            assert_eq!(
                crate::run::error_text(&err),
                "Failed to start `db`, which hook `createdb` needs: service `db` failed"
            );
            assert!(!marker.exists());
        }
    }
}
