//! The effective configuration, printed as a `site.toml` the administrator could use.

use std::fmt::Write as _;

use crate::LoadedManifest;
use crate::manifest::SettingType;
use crate::site::{Origin, ResolvedConfig, SettingValue};
use crate::value::format_size;

/// Renders `r` as valid TOML: `external_url`, `profile`, then one table per settings
/// group with every setting, each preceded by its description and where its value
/// came from. Optional components get an `enabled` line. Secrets never appear.
pub fn render_effective(m: &LoadedManifest, r: &ResolvedConfig) -> String {
    let mut out = String::new();
    let app = &m.manifest.app;
    let _ = writeln!(
        out,
        "# Effective configuration of {} {}",
        app.name, app.version
    );
    let _ = writeln!(
        out,
        "# Precedence: default < derived from host facts < profile < site.toml"
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "external_url = {}", quote(r.external_url.as_str()));
    if let Some(p) = &r.profile {
        let _ = writeln!(out, "profile = {}", quote(p));
    }
    if let Some(i) = &r.instance {
        let _ = writeln!(out, "instance = {}", quote(i));
    }
    if let Some(u) = r.users {
        let _ = writeln!(out, "users = {}", quote(u.name()));
    }
    if let Some(roles) = &r.roles {
        let list: Vec<String> = roles.iter().map(|n| quote(n)).collect();
        let _ = writeln!(out, "roles = [{}]", list.join(", "));
    }

    let optional: Vec<&String> = m
        .manifest
        .components
        .iter()
        .filter(|(_, c)| c.optional)
        .map(|(n, _)| n)
        .collect();
    let enabled_line = |out: &mut String, name: &str| {
        let on = r.enabled_components.contains(name);
        let _ = writeln!(out, "# Whether the optional component `{name}` runs");
        let _ = writeln!(out, "enabled = {on}");
    };

    for (group, keys) in &m.manifest.settings {
        let _ = writeln!(out, "\n[{}]", bare_or_quoted(group));
        let mut first = true;
        if optional.contains(&group) {
            enabled_line(&mut out, group);
            first = false;
        }
        for (key, decl) in keys {
            let Some(resolved) = r.settings.get(group).and_then(|g| g.get(key)) else {
                continue;
            };
            if !first {
                let _ = writeln!(out);
            }
            first = false;
            for line in decl.description.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "# {}", line.trim());
            }
            let origin = match resolved.origin {
                Origin::Default => "default".to_owned(),
                Origin::Derived => "derived from host facts".to_owned(),
                Origin::Profile => format!("profile {}", r.profile.as_deref().unwrap_or("?")),
                Origin::Site => "set in site.toml".to_owned(),
            };
            let _ = writeln!(out, "# ({origin})");
            let _ = writeln!(
                out,
                "{} = {}",
                bare_or_quoted(key),
                format_value(decl.kind, &resolved.value)
            );
        }
    }
    for name in optional {
        if !m.manifest.settings.contains_key(name) {
            let _ = writeln!(out, "\n[{}]", bare_or_quoted(name));
            enabled_line(&mut out, name);
        }
    }
    out
}

fn format_value(kind: SettingType, v: &SettingValue) -> String {
    match (kind, v) {
        (SettingType::Size, SettingValue::Int(n)) => {
            let human = format_size(*n);
            if human == n.to_string() {
                human
            } else {
                quote(&human)
            }
        }
        (_, SettingValue::Bool(b)) => b.to_string(),
        (_, SettingValue::Int(n)) => n.to_string(),
        (_, SettingValue::String(s)) => quote(s),
        (_, SettingValue::List(items)) => {
            let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn bare_or_quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { key.to_owned() } else { quote(key) }
}
