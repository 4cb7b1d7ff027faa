//! Rendering: builds the template context, then every file, service, job and hook.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_model::manifest::{
    ComponentSource, HookDecl, HookWhen, JobDecl, ReadyDecl, RerunSource, RestartDecl, ServiceDecl,
};
use berth_model::{Facts, LoadedManifest, ResolvedConfig};
use berth_supervisor_protocol::{JobSpec, Probe, Readiness, RestartPolicy, ServiceSpec};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::{
    AppId, BackupPlan, BundleSpec, DatabasePlan, DesiredState, DirSpec, FileSpec, HookSpec,
    HostFileKind, HostFileSpec, Paths, RenderError, RerunInput, SecretSpec, UserSpec,
};

/// The variable naming the directory a hook that makes secrets writes them to.
pub const HOOK_SECRETS_OUT: &str = "BERTH_SECRETS_OUT";

/// Rotate a service's log when it passes this size.
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated log files kept per service.
const LOG_KEEP: u32 = 5;

/// Everything rendering depends on. Rendering is a pure function of this.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The app manifest with its templates.
    pub manifest: &'a LoadedManifest,
    /// The effective configuration.
    pub config: &'a ResolvedConfig,
    /// Host facts.
    pub facts: &'a Facts,
    /// Secret values by name (every declared secret).
    pub secrets: &'a BTreeMap<String, String>,
    /// Directory layout of the instance.
    pub paths: &'a Paths,
    /// What the manifest's users are called on this host.
    pub users: &'a crate::UserNames,
}

/// The instance's directories as a setting's `derive` expression sees them
/// (`paths.*`), for [`berth_model::resolve_at`]: the same values templates get.
pub fn derive_paths(p: &Paths) -> berth_model::DerivePaths {
    let s = |b: &PathBuf| b.display().to_string();
    berth_model::DerivePaths {
        prefix: s(&p.prefix),
        etc: s(&p.etc),
        data: s(&p.data),
        run: s(&p.run),
        log: s(&p.log),
        secrets: s(&p.secrets),
        state: s(&p.state),
        release: s(&p.release),
    }
}

/// The secrets the instance needs, with their owners: known before rendering,
/// because converge must create them before anything can be rendered.
pub fn secret_specs(
    manifest: &LoadedManifest,
    facts: &Facts,
    users: &crate::UserNames,
) -> Vec<SecretSpec> {
    let m = &manifest.manifest;
    m.secrets
        .iter()
        .map(|(name, decl)| SecretSpec {
            name: name.clone(),
            length: if decl.from_hook.is_some() {
                0
            } else {
                decl.length()
            },
            alphabet: match (&decl.alphabet, &decl.from_hook) {
                (Some(a), _) => expand_alphabet(a),
                (None, Some(_)) => String::new(),
                (None, None) => {
                    expand_alphabet(berth_model::manifest::SecretDecl::DEFAULT_ALPHABET)
                }
            },
            owner: decl
                .readable_by
                .as_deref()
                .and_then(|c| component_user(manifest, c, facts, users)),
            from_hook: decl.from_hook.clone(),
        })
        .collect()
}

/// The secret store's entry that holds the web console's password (`berth console`).
/// Not a manifest's: its names have no `-`.
pub const CONSOLE_PASSWORD_SECRET: &str = "berth-console-password";

/// The secrets berth keeps in an instance's store for itself, beside the manifest's:
/// the console password (24 letters and digits, root's). A backup carries them and a
/// restore takes them back like the app's.
pub fn berth_secret_specs() -> Vec<SecretSpec> {
    vec![SecretSpec {
        name: CONSOLE_PASSWORD_SECRET.to_owned(),
        length: 24,
        alphabet: "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789".to_owned(),
        owner: None,
        from_hook: None,
    }]
}

/// [`secret_specs`] for an instance whose enabled components are `enabled`: a secret
/// read by a component that is switched off is still made (a template may name it),
/// but belongs to root, since that component's user is not made either.
pub fn secret_specs_enabled(
    manifest: &LoadedManifest,
    facts: &Facts,
    users: &crate::UserNames,
    enabled: &std::collections::BTreeSet<String>,
) -> Vec<SecretSpec> {
    let mut specs = secret_specs(manifest, facts, users);
    for spec in &mut specs {
        let reader = manifest
            .manifest
            .secrets
            .get(&spec.name)
            .and_then(|d| d.readable_by.as_ref());
        if reader.is_some_and(|c| !enabled.contains(c)) {
            spec.owner = None;
        }
    }
    specs
}

/// Named alphabets; anything else is a literal set of characters.
fn expand_alphabet(name: &str) -> String {
    const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
    const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const DIGITS: &str = "0123456789";
    match name {
        "alphanumeric" => format!("{LOWER}{UPPER}{DIGITS}"),
        "hex" => "0123456789abcdef".to_owned(),
        // Printable ASCII without quotes, backslash or `$`, so the value is safe
        // inside quoted strings of every config language we render.
        "ascii-printable" => (0x21u8..0x7f)
            .map(char::from)
            .filter(|c| !matches!(c, '"' | '\'' | '\\' | '`' | '$'))
            .collect(),
        literal => literal.to_owned(),
    }
}

/// The system user a component's processes run as.
///
/// As a normal user everything runs as that user (`None`). As root, a component runs
/// as its declared `user`, or as a user named after the app when it declares none, by
/// the name that user has on this host (`users`: the instance's own, or shared):
/// services never run as root unless the manifest says `user = "root"`.
fn component_user(
    manifest: &LoadedManifest,
    component: &str,
    facts: &Facts,
    users: &crate::UserNames,
) -> Option<String> {
    if !facts.is_root {
        return None;
    }
    let m = &manifest.manifest;
    let user = m
        .components
        .get(component)
        .and_then(|c| c.user.clone())
        .unwrap_or_else(|| m.app.name.clone());
    (user != "root").then(|| users.of(&user))
}

#[derive(Serialize)]
struct ComponentCtx {
    enabled: bool,
    user: String,
    bin: BTreeMap<String, String>,
    dir: Option<String>,
}

#[derive(Serialize)]
struct UrlCtx {
    url: String,
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

/// Build the template context described in `docs/manifest.md`.
fn context(input: &RenderInput<'_>) -> Value {
    let m = &input.manifest.manifest;
    let p = input.paths;
    let path = |b: &PathBuf| b.display().to_string();
    let paths: BTreeMap<&str, String> = [
        ("prefix", path(&p.prefix)),
        ("etc", path(&p.etc)),
        ("data", path(&p.data)),
        ("run", path(&p.run)),
        ("log", path(&p.log)),
        ("secrets", path(&p.secrets)),
        ("state", path(&p.state)),
        ("release", path(&p.release)),
    ]
    .into_iter()
    .collect();
    let components: BTreeMap<&str, ComponentCtx> = m
        .components
        .iter()
        .map(|(name, c)| {
            let ctx = ComponentCtx {
                enabled: input
                    .config
                    .app_components
                    .as_ref()
                    .unwrap_or(&input.config.enabled_components)
                    .contains(name),
                user: component_user(input.manifest, name, input.facts, input.users)
                    .unwrap_or_else(|| input.facts.user.clone()),
                bin: c.binaries.clone(),
                dir: (c.source == ComponentSource::Bundled).then(|| path(&p.bundle_dir(name))),
            };
            (name.as_str(), ctx)
        })
        .collect();
    let settings: BTreeMap<&str, BTreeMap<&str, &berth_model::SettingValue>> = input
        .config
        .settings
        .iter()
        .map(|(g, keys)| {
            (
                g.as_str(),
                keys.iter().map(|(k, r)| (k.as_str(), &r.value)).collect(),
            )
        })
        .collect();
    let u = &input.config.external_url;
    let url = UrlCtx {
        url: u.to_string(),
        scheme: u.scheme().to_owned(),
        host: u.host_str().unwrap_or_default().to_owned(),
        port: u.port_or_known_default().unwrap_or(80),
        path: u.path().to_owned(),
    };
    let app: BTreeMap<&str, &str> = [
        ("name", m.app.name.as_str()),
        ("version", m.app.version.as_str()),
    ]
    .into_iter()
    .collect();
    // Package versions are for hook fingerprints only: a package upgrade must not
    // change a rendered file.
    let template_facts = berth_model::Facts {
        package_versions: BTreeMap::new(),
        ..input.facts.clone()
    };
    let (node, roles) = fleet_context(input);
    minijinja::context! {
        node => node,
        roles => roles,
        app => Value::from(Serde(&app)),
        paths => Value::from(Serde(&paths)),
        settings => Value::from(Serde(&settings)),
        secrets => Value::from(Serde(rendered_secrets(input))),
        components => Value::from(Serde(&components)),
        facts => Value::from(Serde(&template_facts)),
        external_url => Value::from(Serde(&url)),
        profile => Value::from(Serde(&input.config.profile)),
    }
}

/// `node` and `roles` of the context: this node of a fleet and where each role's nodes
/// are; alone, every role is here, at `127.0.0.1`.
fn fleet_context(input: &RenderInput<'_>) -> (Value, Value) {
    let m = &input.manifest.manifest;
    let local = "127.0.0.1".to_owned();
    let Some(fleet) = &input.config.fleet else {
        let node = minijinja::context! {
            name => "local", address => local.clone(), in_fleet => false, fleet => "",
            peers => vec![local.clone()], peer_networks => vec![format!("{local}/32")],
        };
        let roles: BTreeMap<String, Value> = m
            .roles
            .keys()
            .map(|r| {
                let ctx = minijinja::context! {
                    here => true, hosts => vec![local.clone()], host => local.clone(),
                    members => vec![minijinja::context! { name => "local", address => local.clone() }],
                    sentinel => Value::from(()),
                };
                (r.clone(), ctx)
            })
            .collect();
        return (node, Value::from(roles));
    };
    let me = fleet.me();
    let node = minijinja::context! {
        name => fleet.node.clone(),
        address => me.map(|p| p.address.clone()).unwrap_or_default(),
        in_fleet => true,
        fleet => fleet.name.clone(),
        peers => fleet.nodes.values().map(|p| p.address.clone()).collect::<Vec<_>>(),
        peer_networks => if fleet.networks.is_empty() {
            fleet.nodes.values().map(|p| network(&p.address)).collect::<Vec<_>>()
        } else {
            fleet.networks.clone()
        },
    };
    // Under Patroni, database clients reach the leader through the load balancer.
    let patroni = fleet.patroni_role(m);
    let sentinel_role = fleet.sentinel_role(m);
    let balancer: Option<String> = m
        .roles
        .iter()
        .filter(|(_, d)| d.engines.contains(&berth_model::topology::Engine::Haproxy))
        .find_map(|(r, _)| fleet.hosts(r).first().map(|h| (*h).to_owned()));
    let roles: BTreeMap<String, Value> = m
        .roles
        .keys()
        .map(|r| {
            let hosts: Vec<String> = fleet.hosts(r).into_iter().map(str::to_owned).collect();
            let host = match &balancer {
                Some(lb) if patroni == Some(r.as_str()) => lb.clone(),
                _ => hosts.first().cloned().unwrap_or_default(),
            };
            let members: Vec<Value> = fleet
                .nodes
                .iter()
                .filter(|(_, p)| p.roles.contains(r))
                .map(|(name, p)| minijinja::context! { name => name.clone(), address => p.address.clone() })
                .collect();
            // Where the app finds the Redis master: Sentinel, when it watches this role.
            let sentinel = match m.roles.get(r).and_then(|d| d.sentinel.as_ref()) {
                Some(d) if sentinel_role == Some(r.as_str()) => minijinja::context! {
                    master => m.app.name.clone(),
                    port => d.sentinel_port,
                    hosts => hosts.clone(),
                },
                _ => Value::from(()),
            };
            let ctx = minijinja::context! {
                sentinel => sentinel,
                here => me.is_some_and(|p| p.roles.contains(r)),
                host => host,
                hosts => hosts,
                members => members,
            };
            (r.clone(), ctx)
        })
        .collect();
    (node, Value::from(roles))
}

/// An address as a network of one host for access lists (`pg_hba.conf`): `/32` or
/// `/128` for an IP address, a host name as it is.
fn network(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => format!("{ip}/32"),
        Ok(std::net::IpAddr::V6(ip)) => format!("{ip}/128"),
        Err(_) => address.to_owned(),
    }
}

/// The renderer: one minijinja environment with every template loaded, plus the context.
struct Renderer<'a> {
    env: Environment<'a>,
    ctx: Value,
}

impl<'a> Renderer<'a> {
    fn new(input: &RenderInput<'a>) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        // Debug info would put every referenced variable, secrets included, into errors.
        env.set_debug(false);
        // A typo must fail loudly, never render as an empty string.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Config files end with a newline; Jinja would drop it by default.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Each template is escaped for the format of the file it renders.
        let formats: BTreeMap<String, berth_model::FileFormat> = input
            .manifest
            .manifest
            .files
            .iter()
            .map(|f| (f.template.clone(), f.format))
            .collect();
        env.set_auto_escape_callback(move |name| match formats.get(name) {
            Some(berth_model::FileFormat::Plain) | None => AutoEscape::None,
            Some(f) => AutoEscape::Custom(f.name().into()),
        });
        env.set_formatter(|out, state, value| match state.auto_escape() {
            AutoEscape::Custom(name) => {
                let format = berth_model::FileFormat::from_name(name).ok_or_else(|| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("unknown file format `{name}`"),
                    )
                })?;
                let text = if value.is_safe() {
                    value.to_string()
                } else {
                    crate::escape::escape(format, value)?
                };
                out.write_str(&text).map_err(minijinja::Error::from)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        // A filter's result is final in a file of its own format (or a plain one); in a
        // file of another format it is a value like any other and is escaped again:
        // a shell word in a YAML file is a YAML string.
        for (filter, format) in crate::escape::FILTERS {
            env.add_filter(filter, move |state: &minijinja::State, value: Value| {
                let text = crate::escape::escape(format, &value)?;
                let own = match state.auto_escape() {
                    AutoEscape::Custom(name) => *name == *format.name(),
                    _ => true,
                };
                Ok::<_, minijinja::Error>(if own {
                    Value::from_safe_string(text)
                } else {
                    Value::from(text)
                })
            });
        }
        for (name, source) in &input.manifest.templates {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|source| RenderError::Template {
                    what: format!("template `{name}`"),
                    source,
                })?;
        }
        Ok(Self {
            env,
            ctx: context(input),
        })
    }

    fn template(&self, name: &str) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|_| RenderError::MissingTemplate(name.to_owned()))?;
        t.render(&self.ctx).map_err(|source| RenderError::Template {
            what: format!("template `{name}`"),
            source,
        })
    }

    /// Render one inline string (a command argument, an env value …).
    fn string(&self, what: &str, s: &str) -> Result<String, RenderError> {
        if !s.contains("{{") && !s.contains("{%") {
            return Ok(s.to_owned());
        }
        self.env
            .render_str(s, &self.ctx)
            .map_err(|source| RenderError::Template {
                what: format!("`{what}`"),
                source,
            })
    }

    fn strings(&self, what: &str, v: &[String]) -> Result<Vec<String>, RenderError> {
        v.iter()
            .enumerate()
            .map(|(i, s)| self.string(&format!("{what}[{i}]"), s))
            .collect()
    }

    /// The environment of a service, job or hook of `component` running as `user`:
    /// `HOME` in the user's home under the prefix (for a user other than berth's own),
    /// then `[app] environment`, the component's, and its own (`field`), each later one
    /// winning. A `PATH` must hold absolute directories only.
    fn process_env(
        &self,
        p: &Paths,
        user: Option<&str>,
        (m, component): (&berth_model::Manifest, &str),
        field: &str,
        own: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, RenderError> {
        let mut env = BTreeMap::new();
        if let Some(user) = user {
            env.insert("HOME".to_owned(), p.user_home(user).display().to_string());
        }
        let mut layers: BTreeMap<&str, (String, &str)> = BTreeMap::new();
        for (k, v) in &m.app.environment {
            layers.insert(k, (format!("app.environment.{k}"), v));
        }
        if let Some(c) = m.components.get(component) {
            for (k, v) in &c.environment {
                layers.insert(k, (format!("components.{component}.environment.{k}"), v));
            }
        }
        for (k, v) in own {
            layers.insert(k, (format!("{field}.environment.{k}"), v));
        }
        for (k, (what, v)) in layers {
            let value = self.string(&what, v)?;
            if k == "PATH"
                && let Some(entry) = value.split(':').find(|e| !e.starts_with('/'))
            {
                return Err(RenderError::RelativePath {
                    field: what,
                    entry: entry.to_owned(),
                });
            }
            env.insert(k.to_owned(), value);
        }
        Ok(env)
    }

    fn duration(&self, field: &str, s: &str) -> Result<Duration, RenderError> {
        let value = self.string(field, s)?;
        humantime::parse_duration(value.trim()).map_err(|_| RenderError::Duration {
            field: field.to_owned(),
            value,
        })
    }

    fn path(&self, what: &str, s: Option<&String>) -> Result<Option<PathBuf>, RenderError> {
        s.map(|s| self.string(what, s).map(PathBuf::from))
            .transpose()
    }
}

/// Where `up` asks whether the app answers: the external URL's health path; on a node
/// of a fleet, asked of the node itself (the external URL may be a load balancer's),
/// and empty on a node without a role that answers there.
fn health_url(input: &RenderInput<'_>) -> String {
    let m = &input.manifest.manifest;
    let health_path = m.app.health_path.as_deref().unwrap_or("");
    let mut front = input.config.external_url.clone();
    // A node of a fleet is asked itself (the external URL may be a load balancer's);
    // one without a role that answers there is not asked at all.
    if let Some(fleet) = &input.config.fleet
        && let Some(me) = fleet.me()
    {
        let _ = front.set_host(Some(&me.address));
    }
    let answers = match &input.config.roles {
        None => true,
        Some(roles) => {
            m.roles_left_out(roles).is_empty()
                || m.roles
                    .iter()
                    .any(|(name, r)| r.health && roles.contains(name))
        }
    };
    if answers {
        front
            .join(health_path.trim_start_matches('/'))
            .map_or_else(|_| front.to_string(), |u| u.to_string())
    } else {
        String::new()
    }
}

/// Render the desired state.
///
/// Only enabled components contribute packages, directories, files, services, jobs
/// and hooks; dependencies on services of disabled components are dropped.
pub fn render(input: &RenderInput<'_>) -> Result<DesiredState, RenderError> {
    let m = &input.manifest.manifest;
    let r = Renderer::new(input)?;
    let enabled = &input.config.enabled_components;
    let p = input.paths;
    let user_of = |c: &str| component_user(input.manifest, c, input.facts, input.users);

    check_secrets(input)?;
    let users = users(input);
    let mut dirs = dirs(input)?;
    let files = files(input, &r, &mut dirs)?;
    let host_files = host_files(input, &r, &files)?;

    let mut packages = BTreeSet::new();
    let mut binaries = BTreeMap::new();
    let mut bundles = Vec::new();
    for (name, c) in m.components.iter().filter(|(n, _)| enabled.contains(*n)) {
        packages.extend(c.packages.iter().cloned());
        for (bin, path) in &c.binaries {
            binaries.insert(format!("{name}.{bin}"), PathBuf::from(path));
        }
        if let (ComponentSource::Bundled, Some(build)) = (c.source, &c.build) {
            bundles.push(BundleSpec {
                component: name.clone(),
                dest: p.bundle_dir(name),
                build: build.clone(),
            });
        }
    }

    let mut services = Vec::new();
    let mut listen = BTreeMap::new();
    for (name, s) in m
        .services
        .iter()
        .filter(|(_, s)| enabled.contains(&s.component))
    {
        services.push(service(&r, m, enabled, p, name, s, user_of(&s.component))?);
        if !s.listen.is_empty() {
            listen.insert(
                name.clone(),
                r.strings(&format!("services.{name}.listen"), &s.listen)?,
            );
        }
    }
    let mut jobs = Vec::new();
    for (name, j) in m
        .jobs
        .iter()
        .filter(|(_, j)| enabled.contains(&j.component))
    {
        jobs.push(job(&r, m, enabled, p, name, j, user_of(&j.component))?);
    }
    let hooks = hooks(input, &r, &files)?;

    let health_url = health_url(input);
    let next_steps = m
        .app
        .next_steps
        .iter()
        .enumerate()
        .map(|(i, s)| r.string(&format!("app.next_steps[{i}]"), s))
        .collect::<Result<_, _>>()?;

    let backup = match &m.backup {
        Some(b) => Some(backup_plan(&r, m, enabled, p, b, &user_of)?),
        None => None,
    };

    Ok(DesiredState {
        app: AppId {
            name: m.app.name.clone(),
            version: m.app.version.clone(),
        },
        paths: p.clone(),
        users,
        dirs,
        files,
        host_files,
        packages: packages.into_iter().collect(),
        binaries,
        bundles,
        secrets: secret_specs_enabled(
            input.manifest,
            input.facts,
            input.users,
            &input.config.enabled_components,
        ),
        services,
        jobs,
        listen,
        hooks,
        health_url,
        next_steps,
        backup,
        backup_policy: crate::backup_policy(input.config, input.facts, p)?,
        upgrade_policy: crate::upgrade_policy(input.config, input.facts)?,
        metrics_listen: crate::policy::metrics_listen(input.config, input.facts)?,
        metrics_endpoints: metrics_endpoints(&r, m, enabled)?,
        console: crate::policy::console(input.config, input.facts)?,
    })
}

/// The `metrics` endpoints the enabled services declare, rendered, by service.
fn metrics_endpoints(
    r: &Renderer<'_>,
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, RenderError> {
    m.services
        .iter()
        .filter(|(_, s)| enabled.contains(&s.component))
        .filter_map(|(name, s)| {
            s.metrics.as_ref().map(|url| {
                r.string(&format!("services.{name}.metrics"), url)
                    .map(|u| (name.clone(), u))
            })
        })
        .collect()
}

/// Hooks of enabled components, with the fingerprint of each `when = "change"` one.
fn hooks(
    input: &RenderInput<'_>,
    r: &Renderer<'_>,
    files: &[FileSpec],
) -> Result<Vec<HookSpec>, RenderError> {
    let m = &input.manifest.manifest;
    let enabled = &input.config.enabled_components;
    let mut hooks = Vec::new();
    for (name, h) in m
        .hooks
        .iter()
        .filter(|(_, h)| enabled.contains(&h.component))
    {
        let user = component_user(input.manifest, &h.component, input.facts, input.users);
        let mut spec = hook(r, m, enabled, input.paths, name, h, user)?;
        if h.when == HookWhen::Change {
            let (key, inputs) = rerun_key(input, files, h);
            spec.rerun_key = Some(key);
            spec.rerun_inputs = inputs;
        }
        hooks.push(spec);
    }
    Ok(hooks)
}

/// The secrets templates see: those berth generates. A value a hook made (`from_hook`)
/// is never in the context, even once it exists: validation refuses templates using it,
/// and a file must not render one way before the hook ran and another way after.
fn rendered_secrets<'a>(input: &RenderInput<'a>) -> BTreeMap<&'a str, &'a str> {
    let m = &input.manifest.manifest;
    input
        .secrets
        .iter()
        .filter(|(name, _)| m.secrets.get(*name).is_none_or(|d| d.from_hook.is_none()))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Every secret berth generates must have a value (one a hook makes has none until the
/// hook has run, and templates cannot use it).
fn check_secrets(input: &RenderInput<'_>) -> Result<(), RenderError> {
    for (name, decl) in &input.manifest.manifest.secrets {
        if decl.from_hook.is_none() && !input.secrets.contains_key(name) {
            return Err(RenderError::MissingSecret(name.clone()));
        }
    }
    Ok(())
}

/// Users: one per distinct component user, each with its home under the prefix
/// (`home/<user>`).
fn users(input: &RenderInput<'_>) -> Vec<UserSpec> {
    let mut users: Vec<UserSpec> = Vec::new();
    for name in &input.config.enabled_components {
        if let Some(u) = component_user(input.manifest, name, input.facts, input.users)
            && !users.iter().any(|x| x.name == u)
        {
            users.push(UserSpec {
                home: input.paths.user_home(&u),
                name: u,
            });
        }
    }
    users
}

/// Directories, parents first: the instance layout, then each enabled component's
/// runtime directory and data directories.
fn dirs(input: &RenderInput<'_>) -> Result<Vec<DirSpec>, RenderError> {
    let m = &input.manifest.manifest;
    let enabled = &input.config.enabled_components;
    let p = input.paths;
    let mut dirs = vec![
        dir(&p.prefix, None, 0o755),
        dir(&p.etc, None, 0o755),
        dir(&p.data, None, 0o755),
        dir(&p.run, None, 0o755),
        dir(&p.log, None, 0o755),
        dir(&p.hooks_log_dir(), None, 0o755),
        dir(&p.secrets, None, 0o700),
        dir(&p.state, None, 0o700),
    ];
    for (name, c) in m.components.iter().filter(|(n, _)| enabled.contains(*n)) {
        let owner = component_user(input.manifest, name, input.facts, input.users);
        // A per-component runtime directory for sockets and pid files.
        dirs.push(dir(&p.component_run_dir(name), owner.clone(), 0o755));
        for d in &c.data_dirs {
            let mode = u32::from_str_radix(d.mode(), 8).map_err(|_| RenderError::Mode {
                path: d.path().to_owned(),
                mode: d.mode().to_owned(),
            })?;
            dirs.push(dir(&p.data_dir(d.path()), owner.clone(), mode));
        }
    }
    Ok(dirs)
}

/// Files of enabled components. Parent directories of rendered files are added to
/// `dirs` too.
fn files(
    input: &RenderInput<'_>,
    r: &Renderer<'_>,
    dirs: &mut Vec<DirSpec>,
) -> Result<Vec<FileSpec>, RenderError> {
    let m = &input.manifest.manifest;
    let enabled = &input.config.enabled_components;
    let p = input.paths;
    let mut files = Vec::new();
    for f in &m.files {
        // A file of a component switched off, or owned by one (whose user is not
        // made): on a node of a fleet, the components of the roles it does not take.
        let off = |c: &String| m.components.contains_key(c) && !enabled.contains(c);
        if f.component.as_ref().is_some_and(off) || f.owner.as_ref().is_some_and(off) {
            continue;
        }
        let content = r.template(&f.template)?;
        let mode = u32::from_str_radix(f.mode.trim_start_matches("0o"), 8).map_err(|_| {
            RenderError::Mode {
                path: f.path.clone(),
                mode: f.mode.clone(),
            }
        })?;
        let path = p.etc.join(&f.path);
        if let Some(parent) = path.parent()
            && parent != p.etc
            && !dirs.iter().any(|d| d.path == parent)
        {
            dirs.push(dir(parent, None, 0o755));
        }
        files.push(FileSpec {
            path,
            content,
            owner: f
                .owner
                .as_deref()
                .and_then(|c| component_user(input.manifest, c, input.facts, input.users)),
            mode,
            restarts: enabled_services(m, enabled, &f.restarts),
            reloads: enabled_services(m, enabled, &f.reloads),
        });
    }
    Ok(files)
}

/// `[[host_files]]` of enabled components: outside the prefix, each symlink pointing
/// strictly inside it.
fn host_files(
    input: &RenderInput<'_>,
    r: &Renderer<'_>,
    files: &[FileSpec],
) -> Result<Vec<HostFileSpec>, RenderError> {
    let m = &input.manifest.manifest;
    let p = input.paths;
    let inside = |path: &Path| {
        path.strip_prefix(&p.prefix).is_ok_and(|rest| {
            rest.components().next().is_some()
                && rest
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
    };
    let mut out = Vec::new();
    for (i, h) in m.host_files.iter().enumerate() {
        if !input.config.enabled_components.contains(&h.component) {
            continue;
        }
        let path = PathBuf::from(&h.path);
        let field = format!("host_files[{i}]");
        if let Err(why) = berth_model::check_host_path(&h.path) {
            return Err(RenderError::HostFile {
                field: format!("{field}.path"),
                path,
                why,
            });
        }
        if path.starts_with(&p.prefix) || p.prefix.starts_with(&path) {
            return Err(RenderError::HostFile {
                field: format!("{field}.path"),
                path,
                why: format!(
                    "a host file is outside the prefix `{}` (and not above it); put the file in \
                     `[[files]]`",
                    p.prefix.display()
                ),
            });
        }
        let kind = if let Some(target) = &h.link_to {
            let what = format!("{field}.link_to");
            let target = PathBuf::from(r.string(&what, target)?);
            if !inside(&target) {
                return Err(RenderError::HostFile {
                    field: what,
                    path: target,
                    why: format!(
                        "a host file links to a path inside the prefix `{}`, written without \
                         `.` or `..`",
                        p.prefix.display()
                    ),
                });
            }
            HostFileKind::Link { target }
        } else {
            let copy_of = h.copy_of.clone().unwrap_or_default();
            let source = p.etc.join(&copy_of);
            let Some(file) = files.iter().find(|f| f.path == source) else {
                return Err(RenderError::HostFile {
                    field: format!("{field}.copy_of"),
                    path: source,
                    why: "no `[[files]]` entry renders it".to_owned(),
                });
            };
            let mode = match &h.mode {
                Some(mode) => u32::from_str_radix(mode, 8).map_err(|_| RenderError::Mode {
                    path: h.path.clone(),
                    mode: mode.clone(),
                })?,
                None => file.mode,
            };
            HostFileKind::File {
                content: file.content.clone(),
                mode,
                copy_of,
            }
        };
        out.push(HostFileSpec {
            path,
            component: h.component.clone(),
            kind,
        });
    }
    Ok(out)
}

fn backup_plan(
    r: &Renderer<'_>,
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    p: &Paths,
    b: &berth_model::manifest::BackupDecl,
    user_of: &dyn Fn(&str) -> Option<String>,
) -> Result<BackupPlan, RenderError> {
    let database = match &b.database {
        Some(db) if service_enabled(m, enabled, &db.service) => {
            let component = &m.services[&db.service].component;
            Some(DatabasePlan {
                kind: db.kind,
                service: db.service.clone(),
                host: r.string("backup.database.host", &db.host)?,
                port: r.string("backup.database.port", &db.port)?,
                name: db.name.clone(),
                owner: db.owner.clone(),
                bin_dir: PathBuf::from(&db.bin_dir),
                home: user_of(component).map(|u| p.user_home(&u)),
                user: user_of(component),
                restore_after: db.restore_after.clone(),
            })
        }
        _ => None,
    };
    Ok(BackupPlan {
        data_dirs: b
            .data_dirs
            .iter()
            .map(|d| (d.clone(), p.data_dir(d)))
            .collect(),
        quiesce: b
            .quiesce
            .iter()
            .filter(|s| service_enabled(m, enabled, s))
            .cloned()
            .collect(),
        database,
    })
}

fn dir(path: &std::path::Path, owner: Option<String>, mode: u32) -> DirSpec {
    DirSpec {
        path: path.to_path_buf(),
        owner,
        mode,
    }
}

fn service_enabled(m: &berth_model::Manifest, enabled: &BTreeSet<String>, service: &str) -> bool {
    m.services
        .get(service)
        .is_some_and(|s| enabled.contains(&s.component))
}

fn enabled_services(
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    list: &[String],
) -> Vec<String> {
    list.iter()
        .filter(|s| service_enabled(m, enabled, s))
        .cloned()
        .collect()
}

fn enabled_services_of<'a>(
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    list: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    list.filter(|s| service_enabled(m, enabled, s))
        .map(str::to_owned)
        .collect()
}

/// The hooks of `list` that run in this configuration (their component is enabled).
fn enabled_hooks<'a>(
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    list: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    list.filter(|h| {
        m.hooks
            .get(*h)
            .is_some_and(|h| enabled.contains(&h.component))
    })
    .map(str::to_owned)
    .collect()
}

/// The fingerprint of a `when = "change"` hook: `sha256:<hex>` of its inputs (as
/// JSON), and the inputs, one per distinct `on` entry in sorted order, so writing
/// `on` in another order does not make the hook due.
fn rerun_key(
    input: &RenderInput<'_>,
    files: &[FileSpec],
    h: &HookDecl,
) -> (String, Vec<RerunInput>) {
    // Sorted by the entry as written: `file:…`, `package:…`, `setting:…`.
    let sources: BTreeMap<String, RerunSource> =
        h.on.iter()
            .filter_map(|e| RerunSource::parse(e).ok())
            .map(|source| (source.to_string(), source))
            .collect();
    let inputs: Vec<RerunInput> = sources
        .into_iter()
        .map(|(written, source)| {
            let value = match &source {
                RerunSource::Package(name) => input.facts.package_versions.get(name).cloned(),
                RerunSource::File(path) => {
                    let path = input.paths.etc.join(path);
                    files
                        .iter()
                        .find(|f| f.path == path)
                        .map(|f| sha256_hex(f.content.as_bytes()))
                }
                RerunSource::Setting { group, key } => input
                    .config
                    .settings
                    .get(group)
                    .and_then(|g| g.get(key))
                    .and_then(|r| serde_json::to_string(&r.value).ok()),
                RerunSource::AppVersion => Some(input.manifest.manifest.app.version.clone()),
            };
            RerunInput {
                source: written,
                value,
            }
        })
        .collect();
    let canonical = serde_json::to_string(&inputs).unwrap_or_default();
    (sha256_hex(canonical.as_bytes()), inputs)
}

/// `sha256:<lowercase hex>`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for b in &digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn probe(r: &Renderer<'_>, what: &str, ready: &ReadyDecl) -> Result<Readiness, RenderError> {
    let probe = if let Some(addr) = &ready.tcp {
        Probe::Tcp {
            address: r.string(&format!("{what}.tcp"), addr)?,
        }
    } else if let Some(url) = &ready.http {
        Probe::Http {
            url: r.string(&format!("{what}.http"), url)?,
            status: None,
        }
    } else {
        Probe::Command {
            argv: r.strings(
                &format!("{what}.command"),
                ready.command.as_deref().unwrap_or_default(),
            )?,
        }
    };
    Ok(Readiness {
        probe,
        timeout: r.duration(&format!("{what}.timeout"), &ready.timeout)?,
    })
}

fn service(
    r: &Renderer<'_>,
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    p: &Paths,
    name: &str,
    s: &ServiceDecl,
    user: Option<String>,
) -> Result<ServiceSpec, RenderError> {
    let field = format!("services.{name}");
    Ok(ServiceSpec {
        name: name.to_owned(),
        argv: r.strings(&format!("{field}.command"), &s.command)?,
        env: r.process_env(
            p,
            user.as_deref(),
            (m, &s.component),
            &field,
            &s.environment,
        )?,
        cwd: r.path(&format!("{field}.working_dir"), s.working_dir.as_ref())?,
        user,
        depends_on: enabled_services(m, enabled, &s.depends_on),
        readiness: s
            .ready
            .as_ref()
            .map(|ready| probe(r, &format!("{field}.ready"), ready))
            .transpose()?,
        stop_signal: s.stop_signal.clone(),
        stop_timeout: r.duration(&format!("{field}.stop_timeout"), &s.stop_timeout)?,
        reload_signal: s.reload_signal.clone(),
        restart: match s.restart {
            RestartDecl::Always => RestartPolicy::Always,
            RestartDecl::OnFailure => RestartPolicy::OnFailure,
            RestartDecl::Never => RestartPolicy::Never,
        },
        log_dir: p.service_log_dir(name),
        log_max_bytes: LOG_MAX_BYTES,
        log_keep: LOG_KEEP,
    })
}

fn job(
    r: &Renderer<'_>,
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    p: &Paths,
    name: &str,
    j: &JobDecl,
    user: Option<String>,
) -> Result<JobSpec, RenderError> {
    let field = format!("jobs.{name}");
    Ok(JobSpec {
        name: name.to_owned(),
        argv: r.strings(&format!("{field}.command"), &j.command)?,
        env: r.process_env(
            p,
            user.as_deref(),
            (m, &j.component),
            &field,
            &j.environment,
        )?,
        cwd: r.path(&format!("{field}.working_dir"), j.working_dir.as_ref())?,
        user,
        every: r.duration(&format!("{field}.every"), &j.every)?,
        timeout: r.duration(&format!("{field}.timeout"), &j.timeout)?,
        requires: enabled_services(m, enabled, &j.requires),
        log_dir: p.job_log_dir(name),
    })
}

fn hook(
    r: &Renderer<'_>,
    m: &berth_model::Manifest,
    enabled: &BTreeSet<String>,
    p: &Paths,
    name: &str,
    h: &HookDecl,
    user: Option<String>,
) -> Result<HookSpec, RenderError> {
    let field = format!("hooks.{name}");
    let secrets_out: Vec<String> = m
        .secrets
        .iter()
        .filter(|(_, s)| s.from_hook.as_deref() == Some(name))
        .map(|(n, _)| n.clone())
        .collect();
    let mut env = r.process_env(
        p,
        user.as_deref(),
        (m, &h.component),
        &field,
        &h.environment,
    )?;
    if !secrets_out.is_empty() {
        // berth's, whatever the manifest sets: the directory the hook hands its values
        // over in.
        env.insert(
            HOOK_SECRETS_OUT.to_owned(),
            p.hook_secrets_out(name).display().to_string(),
        );
    }
    Ok(HookSpec {
        name: name.to_owned(),
        description: h.description.clone(),
        argv: r.strings(&format!("{field}.command"), &h.command)?,
        check: h
            .check
            .as_ref()
            .map(|c| r.strings(&format!("{field}.check"), c))
            .transpose()?,
        env,
        cwd: r.path(&format!("{field}.working_dir"), h.working_dir.as_ref())?,
        user,
        when: h.when,
        after: enabled_services_of(m, enabled, h.after_services()),
        before: enabled_services_of(m, enabled, h.before_services()),
        after_hooks: enabled_hooks(m, enabled, h.after_hooks()),
        before_hooks: enabled_hooks(m, enabled, h.before_hooks()),
        rerun_key: None,
        rerun_inputs: Vec::new(),
        timeout: r.duration(&format!("{field}.timeout"), &h.timeout)?,
        log_file: p.hook_log(name),
        creates: hook_output(r, p, &field, h.creates.as_ref())?,
        secrets_out,
    })
}

/// A hook's `creates`, which berth may remove: only strictly inside `<prefix>/data`.
fn hook_output(
    r: &Renderer<'_>,
    p: &Paths,
    field: &str,
    creates: Option<&String>,
) -> Result<Option<PathBuf>, RenderError> {
    let what = format!("{field}.creates");
    let Some(path) = r.path(&what, creates)? else {
        return Ok(None);
    };
    let inside = path.strip_prefix(&p.data).is_ok_and(|rest| {
        rest.components().next().is_some()
            && rest
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    });
    if inside {
        Ok(Some(path))
    } else {
        Err(RenderError::OutsideData {
            field: what,
            path,
            data: p.data.clone(),
        })
    }
}
