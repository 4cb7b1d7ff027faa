//! The desired state of an instance: its secrets, the rendering, the supervision plan,
//! and the masking of secrets in anything shown to a person.

use std::collections::BTreeMap;

use berth_render::{BackupPolicy, DesiredState, RenderInput};
use berth_supervisor_protocol::SupervisionPlan;

use crate::error::Result;
use crate::instance::Instance;

/// Placeholder shown in dry runs for secrets that do not exist yet.
const NOT_YET_GENERATED: &str = "<generated on first up>";

/// Secret values for rendering and masking. With `create`, missing secrets are generated
/// and stored (mode 0600); without, they render as a placeholder and nothing is written.
/// A secret a hook makes (`from_hook`) is in the map once it exists, for masking only
/// (templates never see it), and never generated.
pub fn secrets(inst: &Instance, create: bool) -> Result<BTreeMap<String, String>> {
    let specs = berth_render::secret_specs_enabled(
        &inst.manifest,
        &inst.facts,
        &inst.users,
        &inst.config.enabled_components,
    );
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
        match value {
            Some(v) => {
                out.insert(s.name.clone(), v);
            }
            // A hook's value has no placeholder: no template uses it.
            None if s.from_hook.is_some() => {}
            None => {
                out.insert(s.name.clone(), NOT_YET_GENERATED.to_owned());
            }
        }
    }
    Ok(out)
}

/// Render the desired state of an instance, with the installed versions of the enabled
/// components' packages as they are now (probed here, not when the instance was
/// opened: `up` installs packages in between, and `change` hooks follow them).
pub fn render(inst: &Instance, secrets: &BTreeMap<String, String>) -> Result<DesiredState> {
    render_with(inst, &inst.config, secrets)
}

/// As [`render`], with `config` in place of the instance's own (the same config with
/// other values, e.g. the ports of services started beside themselves).
pub fn render_with(
    inst: &Instance,
    config: &berth_model::ResolvedConfig,
    secrets: &BTreeMap<String, String>,
) -> Result<DesiredState> {
    if let Some(refusal) = &inst.unplaced {
        return Err(berth_model::Diagnostics::from(refusal.clone()).into());
    }
    let mut facts = inst.facts.clone();
    let packages: Vec<String> = inst
        .manifest
        .manifest
        .components
        .iter()
        .filter(|(name, _)| config.enabled_components.contains(*name))
        .flat_map(|(_, c)| c.packages.iter().cloned())
        .collect();
    berth_host::facts::probe_package_versions(&mut facts, &packages)?;
    Ok(berth_render::render(&RenderInput {
        manifest: &inst.manifest,
        config,
        facts: &facts,
        secrets,
        paths: &inst.paths,
        users: &inst.users,
    })?)
}

/// The desired state with the secrets as they are, generating none: what read-only
/// commands (dry run, backup, restore's checks) look at.
pub fn preview(inst: &Instance) -> Result<DesiredState> {
    render(inst, &secrets(inst, false)?)
}

/// The supervision plan of a desired state: its services, its jobs and the scheduled
/// backup, which runs the instance's own copy of berth once `up` has put it there
/// (this program until then).
pub fn supervision_plan(inst: &Instance, state: &DesiredState) -> SupervisionPlan {
    let installed = inst.paths.installed_berth();
    let berth = if installed.exists() {
        installed
    } else {
        std::env::current_exe().unwrap_or(installed)
    };
    berth_render::supervision_plan(state, &berth, &inst.config_path)
}

/// The instance's backup policy (`[backup]` in its site config), typed, without
/// rendering anything else.
pub fn backup_policy(inst: &Instance) -> Result<BackupPolicy> {
    Ok(berth_render::backup_policy(
        &inst.config,
        &inst.facts,
        &inst.paths,
    )?)
}

/// The secret values to mask in anything shown to a person.
pub(crate) fn mask_list(secrets: &BTreeMap<String, String>) -> Vec<String> {
    secrets
        .values()
        .filter(|v| v.as_str() != NOT_YET_GENERATED && !v.is_empty())
        .cloned()
        .collect()
}

/// Replace every secret value in `text` (in every form a template can give it) with
/// `********`.
pub fn mask(text: &str, secrets: &BTreeMap<String, String>) -> String {
    berth_host::converge::Masker::new(&mask_list(secrets)).mask(text)
}

/// The console's address (`console.listen`, `None` when empty) and path
/// (`console.path`, `/` when there is no address: no web server passes a path on then).
///
/// # Errors
/// The settings cannot be read (the config did not resolve them).
pub fn console_settings(inst: &Instance) -> Result<(Option<String>, String)> {
    Ok(match berth_render::console(&inst.config, &inst.facts)? {
        Some(c) => (Some(c.listen), c.path),
        None => (None, "/".to_owned()),
    })
}
