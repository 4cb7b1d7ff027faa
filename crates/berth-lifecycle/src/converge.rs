//! What `up` and `reconfigure` share: secrets, rendering, the file converge, the
//! supervision plan, masking, the dry run, and journaled steps.
//!
//! Every step is written to the state database's journal before it is taken, so a
//! crash leaves a record of exactly how far a run got.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_render::{DesiredState, RenderInput};
use berth_state::{RunOutcome, RunStatus, StateDb, StepStatus};
use berth_supervisor_protocol::SupervisionPlan;

use crate::error::{LifecycleError, Result};
use crate::instance::Instance;

/// What a run changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Config files written.
    pub files_changed: Vec<PathBuf>,
    /// Services restarted.
    pub restarted: Vec<String>,
    /// Services reloaded.
    pub reloaded: Vec<String>,
    /// Services stopped because they left the plan (e.g. a component switched off).
    pub stopped: Vec<String>,
    /// Services started because they are new to the plan.
    pub started: Vec<String>,
    /// Hooks run.
    pub hooks_run: Vec<String>,
    /// How long the run took.
    pub duration: Duration,
}

impl Outcome {
    /// Whether the run changed nothing at all.
    pub fn is_noop(&self) -> bool {
        self.files_changed.is_empty()
            && self.restarted.is_empty()
            && self.reloaded.is_empty()
            && self.stopped.is_empty()
            && self.started.is_empty()
            && self.hooks_run.is_empty()
    }
}

/// How a successful run is recorded in the history.
pub(crate) fn recorded(o: &Outcome) -> RunOutcome {
    RunOutcome {
        status: if o.is_noop() {
            RunStatus::NoChange
        } else {
            RunStatus::Succeeded
        },
        files_changed: o
            .files_changed
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        services_restarted: o.restarted.clone(),
        services_reloaded: o.reloaded.clone(),
        hooks_run: o.hooks_run.clone(),
        services_stopped: o.stopped.clone(),
        services_started: o.started.clone(),
    }
}

/// How a failed run is recorded.
pub(crate) fn failed(error: &str) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed {
            error: error.to_owned(),
        },
        ..RunOutcome::default()
    }
}

/// Placeholder shown in dry runs for secrets that do not exist yet.
const NOT_YET_GENERATED: &str = "<generated on first up>";

/// Secret values for rendering. With `create`, missing secrets are generated and stored
/// (mode 0600); without, they render as a placeholder and nothing is written.
pub(crate) fn secrets(inst: &Instance, create: bool) -> Result<BTreeMap<String, String>> {
    let specs = berth_render::secret_specs(&inst.manifest, &inst.facts);
    if create {
        let store = berth_host::secrets::SecretStore::open(&inst.paths.secrets)?;
        return Ok(store.ensure(&specs)?);
    }
    let mut out = BTreeMap::new();
    // Read only: a dry run changes nothing, not even the directory's mode.
    let existing = berth_host::secrets::SecretStore::existing(&inst.paths.secrets);
    for s in &specs {
        let value = match &existing {
            Some(store) => store.get(&s.name)?,
            None => None,
        };
        out.insert(
            s.name.clone(),
            value.unwrap_or_else(|| NOT_YET_GENERATED.to_owned()),
        );
    }
    Ok(out)
}

/// Render the desired state of an instance.
pub fn render(inst: &Instance, secrets: &BTreeMap<String, String>) -> Result<DesiredState> {
    Ok(berth_render::render(&RenderInput {
        manifest: &inst.manifest,
        config: &inst.config,
        facts: &inst.facts,
        secrets,
        paths: &inst.paths,
    })?)
}

/// The supervision plan of a desired state.
pub(crate) fn supervision_plan(inst: &Instance, state: &DesiredState) -> SupervisionPlan {
    let mut jobs = state.jobs.clone();
    jobs.extend(crate::backup::scheduled_job(inst, state));
    SupervisionPlan {
        services: state.services.clone(),
        jobs,
    }
}

/// The secret values to mask in anything shown to a person.
pub(crate) fn mask_list(secrets: &BTreeMap<String, String>) -> Vec<String> {
    secrets
        .values()
        .filter(|v| v.as_str() != NOT_YET_GENERATED && !v.is_empty())
        .cloned()
        .collect()
}

/// Replace every secret value in `text` with `********`.
pub fn mask(text: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    // Every form a template can give a secret (escaped for Python, JSON, the shell ...).
    let mut forms: Vec<String> = mask_list(secrets)
        .iter()
        .flat_map(|v| berth_render::secret_encodings(v))
        .collect();
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    for v in forms {
        out = out.replace(&v, "********");
    }
    out
}

/// Where the list of config files berth wrote last is kept.
pub(crate) fn managed_files_path(inst: &Instance) -> PathBuf {
    inst.paths.state.join("managed-files.json")
}

/// The config files berth wrote last (none before the first converge).
pub(crate) fn managed_files(inst: &Instance) -> Vec<PathBuf> {
    std::fs::read(managed_files_path(inst))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Remember the config files of `state`, so that a later converge removes those
/// it no longer has.
pub(crate) fn write_managed_files(inst: &Instance, state: &DesiredState) -> Result<()> {
    let files: Vec<&Path> = state.files.iter().map(|f| f.path.as_path()).collect();
    let bytes = serde_json::to_vec_pretty(&files)?;
    berth_host::fsutil::write_if_changed(&managed_files_path(inst), &bytes, 0o644)?;
    Ok(())
}

/// The currently applied supervision plan, if any.
pub(crate) fn applied_plan(path: &Path) -> Option<SupervisionPlan> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Services whose rendered spec differs from the applied plan (they restart).
fn changed_services(old: Option<&SupervisionPlan>, new: &SupervisionPlan) -> Vec<String> {
    let Some(old) = old else {
        return Vec::new();
    };
    new.services
        .iter()
        .filter(|s| {
            old.services
                .iter()
                .find(|o| o.name == s.name)
                .is_some_and(|o| o != *s)
        })
        .map(|s| s.name.clone())
        .collect()
}

/// `berth reconfigure --dry-run` and `berth plan`: what would change, as text. Writes nothing.
pub fn dry_run(inst: &Instance) -> Result<String> {
    let secrets = secrets(inst, false)?;
    let state = render(inst, &secrets)?;
    let plan = berth_host::converge::plan(&state, &mask_list(&secrets), inst.facts.is_root)?
        .remove_stale(&state, &managed_files(inst));
    let new_plan = supervision_plan(inst, &state);
    let old_plan = applied_plan(&inst.paths.supervision_plan());
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("No file changes.\n");
    } else {
        out.push_str(&mask(&plan.to_string(), &secrets));
    }
    let spec_changes = changed_services(old_plan.as_ref(), &new_plan);
    if !spec_changes.is_empty() {
        let _ = writeln!(
            out,
            "services whose command or environment changed (restart): {}",
            spec_changes.join(", ")
        );
    }
    let jobs: Vec<String> = new_plan
        .jobs
        .iter()
        .map(|j| format!("{} every {}", j.name, humantime::format_duration(j.every)))
        .collect();
    if !jobs.is_empty() {
        let _ = writeln!(out, "periodic jobs: {}", jobs.join(", "));
    }
    if let Some(old) = &old_plan {
        let added: Vec<_> = new_plan
            .services
            .iter()
            .filter(|s| !old.services.iter().any(|o| o.name == s.name))
            .map(|s| s.name.as_str())
            .collect();
        if !added.is_empty() {
            let _ = writeln!(out, "new services (start): {}", added.join(", "));
        }
        let leaving: Vec<_> = old
            .services
            .iter()
            .filter(|o| !new_plan.services.iter().any(|s| s.name == o.name))
            .map(|s| s.name.as_str())
            .collect();
        if !leaving.is_empty() {
            let _ = writeln!(
                out,
                "services leaving the plan (stop): {}",
                leaving.join(", ")
            );
        }
    } else {
        out.push_str("The instance has not been set up yet: `berth up` would install and start everything.\n");
    }
    Ok(out)
}

/// Write the supervision plan (mode 0600: service environments hold secrets).
pub(crate) fn write_plan(inst: &Instance, plan: &SupervisionPlan) -> Result<bool> {
    let bytes = serde_json::to_vec_pretty(plan)?;
    Ok(berth_host::fsutil::write_if_changed(
        &inst.paths.supervision_plan(),
        &bytes,
        0o600,
    )?)
}

/// An error and its causes on one line each, as stored in the journal and history.
pub(crate) fn error_text(e: &LifecycleError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Run one journaled step.
pub(crate) fn step<T>(
    db: &StateDb,
    run: berth_state::RunId,
    name: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let id = db.begin_step(run, name)?;
    match f() {
        Ok(v) => {
            db.finish_step(id, &StepStatus::Done)?;
            Ok(v)
        }
        Err(e) => {
            db.finish_step(
                id,
                &StepStatus::Failed {
                    error: error_text(&e),
                },
            )?;
            Err(e)
        }
    }
}

/// Present once `up` has succeeded and until `down`: a supervisor started with
/// `--autostart` (at boot) starts the services only then, never before the first
/// `up` has run its hooks.
pub fn autostart_marker(paths: &berth_render::Paths) -> PathBuf {
    paths.state.join("autostart")
}

/// The first site config: empty apart from comments saying how to use it.
pub(crate) fn write_site_template(path: &Path) -> Result<()> {
    let text = "# Site config: every setting you change from the defaults goes here.\n\
                # `berth config show` prints every setting with its current value;\n\
                # `berth reconfigure` applies this file.\n";
    berth_host::fsutil::write_atomic(path, text.as_bytes(), 0o644, None)?;
    Ok(())
}
