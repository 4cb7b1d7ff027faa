//! Resolution: manifest defaults < derived from host facts < profile < site values.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Value;
use serde::Serialize;

use crate::locate::Seg;
use crate::manifest::{SettingDecl, SettingType};
use crate::site::{Origin, Resolved, ResolvedConfig, SettingValue, SiteConfig};
use crate::span::Source;
use crate::validate::manifest_diag;
use crate::value::{check_http_url, check_value, parse_duration, parse_size};
use crate::{Diagnostic, Diagnostics, Facts, LoadedManifest};

/// Where the app is reached when neither the site nor the manifest says.
pub const FALLBACK_EXTERNAL_URL: &str = "http://127.0.0.1:8080/";

/// Merges the manifest's defaults, `derive` expressions (evaluated against `facts`),
/// the selected profile and the site's values into the effective configuration.
///
/// Each layer overrides the one before it: default < derived < profile < site, and
/// each value records its [`Origin`]. Derived values are converted to the declared type
/// and clamped to `min`/`max`. A setting with neither a default nor a `derive` must be
/// set by the profile or the site.
///
/// A `derive` expression that uses `paths.*` fails here, since the instance's
/// directories are not known: call [`resolve_at`] with them.
pub fn resolve(
    m: &LoadedManifest,
    site: &SiteConfig,
    facts: &Facts,
) -> Result<ResolvedConfig, Diagnostics> {
    resolve_at(m, site, facts, None)
}

/// The instance's directories as a `derive` expression sees them (`paths.<name>`):
/// the same names and values as the render context's `paths`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DerivePaths {
    /// The instance's root.
    pub prefix: String,
    /// `<prefix>/etc`.
    pub etc: String,
    /// `<prefix>/data`.
    pub data: String,
    /// `<prefix>/run`.
    pub run: String,
    /// `<prefix>/log`.
    pub log: String,
    /// `<prefix>/secrets`.
    pub secrets: String,
    /// `<prefix>/state`.
    pub state: String,
    /// `<prefix>/releases/<version>`.
    pub release: String,
}

/// As [`resolve`], with the instance's directories for `derive` expressions that use
/// `paths.*` (`None`: such an expression fails, naming the setting).
pub fn resolve_at(
    m: &LoadedManifest,
    site: &SiteConfig,
    facts: &Facts,
    paths: Option<&DerivePaths>,
) -> Result<ResolvedConfig, Diagnostics> {
    let mut diags = Diagnostics::default();
    let profile = site.profile.as_ref().map(|p| p.get_ref().clone());
    let profile_entries = profile
        .as_ref()
        .and_then(|p| m.manifest.profiles.get(p))
        .map(crate::manifest::Profile::entries)
        .unwrap_or_default();
    let inputs = DeriveInputs::new(facts, paths);

    let mut settings: BTreeMap<String, BTreeMap<String, Resolved>> = BTreeMap::new();
    for (group, keys) in &m.manifest.settings {
        for (key, decl) in keys {
            let name = format!("{group}.{key}");
            let mut resolved = base_value(m, (group, key), decl, &inputs, &mut diags);

            if let Some(p) = &profile
                && let Some(e) = profile_entries
                    .iter()
                    .find(|e| e.group == group && e.key == key)
            {
                match check_value(&name, decl, e.value) {
                    Ok(value) => {
                        resolved = Some(Resolved {
                            value,
                            origin: Origin::Profile,
                        });
                    }
                    Err(problem) => diags.push(
                        manifest_diag(
                            m,
                            &[Seg::Key("profiles"), Seg::Key(p), Seg::Key("values")],
                            format!("profile `{p}`: {}", problem.message),
                        )
                        .with_help_opt(problem.help),
                    ),
                }
            }

            if let Some(v) = site.settings.get(group).and_then(|g| g.get(key)) {
                resolved = Some(Resolved {
                    value: v.value.clone(),
                    origin: Origin::Site,
                });
            }

            match resolved {
                Some(r) => {
                    settings
                        .entry(group.clone())
                        .or_default()
                        .insert(key.clone(), r);
                }
                None if decl.default.is_none() && decl.derive.is_none() => {
                    diags.push(not_set(site, group, key, decl));
                }
                None => {} // already reported
            }
        }
    }

    let external_url = external_url(m, site, &mut diags);
    let enabled_components: BTreeSet<String> = m
        .manifest
        .components
        .iter()
        .filter(|(name, c)| !c.optional || site.components.get(*name).is_none_or(|e| *e.get_ref()))
        .map(|(name, _)| name.clone())
        .collect();

    diags.into_result(ResolvedConfig {
        external_url: external_url.unwrap_or_else(fallback_url),
        profile,
        settings,
        enabled_components,
        instance: site.instance.as_ref().map(|i| i.get_ref().clone()),
        users: site.users.as_ref().map(|u| *u.get_ref()),
        roles: site.roles.as_ref().map(|r| r.get_ref().clone()),
        fleet: site.fleet.as_ref().map(|f| f.get_ref().clone()),
        app_components: None,
    })
}

fn fallback_url() -> url::Url {
    // A constant known to parse; `resolve` never fails on it.
    url::Url::parse(FALLBACK_EXTERNAL_URL).unwrap_or_else(|_| unreachable!())
}

fn external_url(
    m: &LoadedManifest,
    site: &SiteConfig,
    diags: &mut Diagnostics,
) -> Option<url::Url> {
    let mut url = if let Some(u) = &site.external_url {
        u.get_ref().clone()
    } else if let Some(default) = &m.manifest.app.default_external_url {
        match check_http_url(default) {
            Ok(u) => u,
            Err(why) => {
                diags.push(manifest_diag(
                    m,
                    &[Seg::Key("app"), Seg::Key("default_external_url")],
                    format!("`{default}` is not a valid `app.default_external_url`: {why}"),
                ));
                return None;
            }
        }
    } else {
        fallback_url()
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// What a `derive` expression evaluates against: `facts`, and `paths` when known.
struct DeriveInputs {
    facts: Value,
    paths: Option<Value>,
}

impl DeriveInputs {
    fn new(facts: &Facts, paths: Option<&DerivePaths>) -> Self {
        Self {
            facts: Value::from(minijinja::value::Serde(facts)),
            paths: paths.map(|p| Value::from(minijinja::value::Serde(p))),
        }
    }
}

/// The value `decl` gives setting `name` when neither a profile nor the site sets it:
/// its `default`, else its `derive` expression evaluated against `facts` (and `paths`).
/// `None` when it has neither, or when that value is invalid (which [`resolve`] reports).
pub fn declared_default(name: &str, decl: &SettingDecl, facts: &Facts) -> Option<SettingValue> {
    if let Some(default) = &decl.default {
        return check_value(name, decl, default).ok();
    }
    derive(
        name,
        decl,
        decl.derive.as_ref()?,
        &DeriveInputs::new(facts, None),
    )
    .ok()
}

/// The value a setting has before any profile or site: its `default`, or its `derive`
/// expression evaluated against the facts and paths.
fn base_value(
    m: &LoadedManifest,
    (group, key): (&str, &str),
    decl: &SettingDecl,
    inputs: &DeriveInputs,
    diags: &mut Diagnostics,
) -> Option<Resolved> {
    let name = format!("{group}.{key}");
    let (result, origin, field) = if let Some(default) = &decl.default {
        let r = check_value(&name, decl, default).map_err(|p| (p.message, p.help));
        (r, Origin::Default, "default")
    } else {
        let expr = decl.derive.as_ref()?;
        (derive(&name, decl, expr, inputs), Origin::Derived, "derive")
    };
    match result {
        Ok(value) => Some(Resolved { value, origin }),
        Err((message, help)) => {
            let path = [
                Seg::Key("settings"),
                Seg::Key(group),
                Seg::Key(key),
                Seg::Key(field),
            ];
            diags.push(manifest_diag(m, &path, message).with_help_opt(help));
            None
        }
    }
}

/// A setting with no default, no `derive` and no value: where and how to set it.
fn not_set(site: &SiteConfig, group: &str, key: &str, decl: &SettingDecl) -> Diagnostic {
    let about = if decl.description.is_empty() {
        String::new()
    } else {
        format!("  ({})", decl.description)
    };
    Source::new(&site.file, &site.source)
        .diag(
            None,
            format!("`{group}.{key}` has no default and is not set"),
        )
        .with_help(
            format!("set it in the site config:\n\n    [{group}]\n    {key} = ...\n\n{about}")
                .trim_end()
                .to_owned(),
        )
}

/// Evaluates a `derive` expression, converts the result to the declared type and
/// clamps it to `min`/`max`.
fn derive(
    name: &str,
    decl: &SettingDecl,
    expr: &str,
    inputs: &DeriveInputs,
) -> Result<SettingValue, (String, Option<String>)> {
    let env = minijinja::Environment::new();
    let fail = |why: String| {
        (
            format!("the `derive` expression of `{name}` failed: {why}"),
            Some("fix the expression in the manifest, or set the value in site.toml".to_owned()),
        )
    };
    let compiled = env
        .compile_expression(expr)
        .map_err(|e| fail(e.detail().unwrap_or("syntax error").to_owned()))?;
    let Some(paths) = inputs.paths.clone().or_else(|| {
        // Without the instance's directories, an expression may only use facts.
        (!compiled.undeclared_variables(false).contains("paths")).then(Value::default)
    }) else {
        return Err((
            format!(
                "the `derive` expression of `{name}` uses `paths`, which are not known \
                 before the instance's prefix is"
            ),
            Some("resolve with the instance's directories (`resolve_at`)".to_owned()),
        ));
    };
    let out = compiled
        .eval(minijinja::context! { facts => inputs.facts.clone(), paths => paths })
        .map_err(|e| fail(e.detail().map_or_else(|| e.to_string(), str::to_owned)))?;
    if out.is_undefined() || out.is_none() {
        return Err(fail("it gave no value".to_owned()));
    }
    let value = to_toml(decl.kind, &out).map_err(fail)?;
    let value = clamp(decl, value);
    check_value(name, decl, &value).map_err(|p| {
        (
            format!(
                "the `derive` expression of `{name}` gave an invalid value: {}",
                p.message
            ),
            p.help,
        )
    })
}

/// A minijinja result as the TOML value a site config would hold for `kind`.
fn to_toml(kind: SettingType, v: &Value) -> Result<toml::Value, String> {
    let number = || -> Result<i64, String> {
        if let Ok(n) = i64::try_from(v.clone()) {
            return Ok(n);
        }
        match f64::try_from(v.clone()) {
            // `as` saturates at the i64 range, which is what a clamp wants.
            #[allow(clippy::cast_possible_truncation)]
            Ok(f) if f.is_finite() => Ok(f.round() as i64),
            _ => Err(format!("expected a number, got `{v}`")),
        }
    };
    Ok(match kind {
        SettingType::Bool => toml::Value::Boolean(v.is_true()),
        SettingType::Int | SettingType::Port => toml::Value::Integer(number()?),
        SettingType::Size => match v.as_str() {
            Some(s) => toml::Value::Integer(parse_size(s)?),
            None => toml::Value::Integer(number()?),
        },
        SettingType::Duration => match v.as_str() {
            Some(s) => toml::Value::String(s.to_owned()),
            None => toml::Value::String(format!("{}s", number()?)),
        },
        SettingType::String | SettingType::Url => {
            toml::Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        }
        SettingType::StringList => {
            let items = v
                .try_iter()
                .map_err(|_| format!("expected a list, got `{v}`"))?;
            toml::Value::Array(
                items
                    .map(|i| {
                        toml::Value::String(i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    })
                    .collect(),
            )
        }
    })
}

/// Brings a numeric value inside the declaration's `min`/`max`.
fn clamp(decl: &SettingDecl, value: toml::Value) -> toml::Value {
    let lo = decl.min.unwrap_or(i64::MIN);
    let hi = decl.max.unwrap_or(i64::MAX).max(lo);
    match (decl.kind, value) {
        (SettingType::Int | SettingType::Port | SettingType::Size, toml::Value::Integer(n)) => {
            toml::Value::Integer(n.clamp(lo, hi))
        }
        (SettingType::Duration, toml::Value::String(s)) => match parse_duration(&s) {
            Ok(d) => {
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if (lo..=hi).contains(&secs) {
                    toml::Value::String(s)
                } else {
                    toml::Value::String(format!("{}s", secs.clamp(lo, hi)))
                }
            }
            Err(_) => toml::Value::String(s),
        },
        (_, v) => v,
    }
}
