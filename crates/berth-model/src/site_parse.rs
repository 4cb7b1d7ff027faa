//! Parsing `site.toml` against a manifest: every error at once, each with a position.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::load::syntax_errors;
use crate::manifest::Manifest;
use crate::site::{SiteConfig, SiteSetting};
use crate::span::Source;
use crate::suggest;
use crate::value::{check_http_url, check_value, found_phrase};
use crate::{Diagnostics, LoadedManifest};

/// Top-level keys that are not settings groups.
const EXTERNAL_URL: &str = "external_url";
const PROFILE: &str = "profile";
const INSTANCE: &str = "instance";
const USERS: &str = "users";
const ENABLED: &str = "enabled";
const ROLES: &str = "roles";
const FLEET: &str = "fleet";
const EXTERNAL: &str = "external";
const TOP_LEVEL: [&str; 7] = [
    EXTERNAL_URL,
    PROFILE,
    INSTANCE,
    USERS,
    ROLES,
    FLEET,
    EXTERNAL,
];

/// Parses and checks the administrator's site config against the manifest.
///
/// An empty file is valid. Reports every problem at once: TOML syntax, unknown keys
/// and groups (with a did-you-mean), values of the wrong type, out of range, not among
/// the allowed values or not matching the pattern, an invalid `external_url` and an
/// unknown `profile`.
pub fn parse_site(
    file_name: &str,
    text: &str,
    m: &LoadedManifest,
) -> Result<SiteConfig, Diagnostics> {
    let source = Source::new(file_name, text);
    syntax_errors(source)?;
    let (root, _) = DeTable::parse_recoverable(text);
    let mut parser = SiteParser {
        source,
        manifest: &m.manifest,
        diags: Diagnostics::default(),
        site: SiteConfig {
            file: file_name.to_owned(),
            source: text.to_owned(),
            ..SiteConfig::default()
        },
    };
    for (key, value) in root.get_ref() {
        parser.top_level(key, value);
    }
    parser.fleet_matches_roles();
    parser.roles_beside_their_hosts();
    parser.external_not_taken();
    let SiteParser { diags, site, .. } = parser;
    diags.into_result(site)
}

struct SiteParser<'a> {
    source: Source<'a>,
    manifest: &'a Manifest,
    diags: Diagnostics,
    site: SiteConfig,
}

impl SiteParser<'_> {
    fn error(&mut self, span: Range<usize>, message: String, help: Option<String>) {
        self.diags
            .push(self.source.diag(Some(span), message).with_help_opt(help));
    }

    fn top_level(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) {
        let name = key.get_ref().as_ref();
        match name {
            EXTERNAL_URL => self.external_url(value),
            PROFILE => self.profile(value),
            INSTANCE => self.instance(value),
            USERS => self.users(value),
            ROLES => self.roles(value),
            FLEET => self.fleet(value),
            EXTERNAL => self.external(value),
            _ => self.group(name, key.span(), value),
        }
    }

    fn external_url(&mut self, value: &Spanned<DeValue<'_>>) {
        let Some(s) = value.get_ref().as_str() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a string for `external_url`, found {found}"),
                Some(
                    "write it as a quoted URL: external_url = \"https://app.example.com/\""
                        .to_owned(),
                ),
            );
            return;
        };
        match check_http_url(s) {
            Ok(url) => self.site.external_url = Some(Spanned::new(value.span(), url)),
            Err(why) => self.error(
                value.span(),
                format!("`{}` is not a valid `external_url`: {why}", crate::shown(s)),
                Some(
                    "write the absolute URL people use to reach the app, e.g. \
                     \"https://app.example.com/\""
                        .to_owned(),
                ),
            ),
        }
    }

    fn instance(&mut self, value: &Spanned<DeValue<'_>>) {
        let help = "name the instance with a lowercase letter, then lowercase letters, digits \
                    and `-`, e.g. instance = \"prod\""
            .to_owned();
        let Some(s) = value.get_ref().as_str() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a string for `instance`, found {found}"),
                Some(help),
            );
            return;
        };
        if is_instance_name(s) {
            self.site.instance = Some(Spanned::new(value.span(), s.to_owned()));
        } else {
            self.error(
                value.span(),
                format!("`{}` is not a valid `instance`", crate::shown(s)),
                Some(help),
            );
        }
    }

    fn users(&mut self, value: &Spanned<DeValue<'_>>) {
        let naming = match value.get_ref().as_str() {
            Some("per-instance") => crate::site::UserNaming::PerInstance,
            Some("shared") => crate::site::UserNaming::Shared,
            other => {
                let found = match other {
                    Some(s) => format!("`{}`", crate::shown(s)),
                    None => found_phrase(&to_value(value.get_ref())).to_string(),
                };
                self.error(
                    value.span(),
                    format!(
                        "expected `\"per-instance\"` or `\"shared\"` for `users`, found {found}"
                    ),
                    Some(
                        "write users = \"per-instance\" (OS users of this instance's own) or \
                         users = \"shared\" (the manifest's user names, shared with other \
                         instances of the app)"
                            .to_owned(),
                    ),
                );
                return;
            }
        };
        self.site.users = Some(Spanned::new(value.span(), naming));
    }

    /// `[fleet]`, as `berth fleet up` writes it: this node and every node's address
    /// and roles.
    fn fleet(&mut self, value: &Spanned<DeValue<'_>>) {
        let view: crate::fleet::FleetView = match toml::Value::try_into(to_value(value.get_ref())) {
            Ok(v) => v,
            Err(e) => {
                self.error(
                    value.span(),
                    format!("`[fleet]` is not as `berth fleet up` writes it: {}", e.message()),
                    Some("`[fleet]` names this node (`node`) and every node's `address` and `roles` (`[fleet.nodes.<name>]`); let `berth fleet up` write it".to_owned()),
                );
                return;
            }
        };
        // They land in access lists (`pg_hba.conf`): a network, nothing else.
        for net in &view.networks {
            if !crate::fleet::is_network(net) {
                self.error(
                    value.span(),
                    format!(
                        "`[fleet] networks` has `{}`, which is not a network (`10.244.0.0/16`, `fd00::/8`)",
                        crate::shown(net)
                    ),
                    None,
                );
            }
        }
        let declared = &self.manifest.roles;
        let mut seen = std::collections::BTreeMap::new();
        for (name, peer) in &view.nodes {
            let ok = peer.address.parse::<std::net::IpAddr>().is_ok()
                || crate::validate::fleet::is_host_name(&peer.address);
            if !ok {
                self.error(value.span(), format!("`[fleet.nodes.{name}]` has the address `{}`, which is not an IP address or a host name", crate::shown(&peer.address)), None);
            } else if let Some(first) = seen.insert(peer.address.clone(), name) {
                self.error(
                    value.span(),
                    format!(
                        "`[fleet]` nodes `{first}` and `{name}` have the same address `{}`",
                        peer.address
                    ),
                    None,
                );
            }
            for r in &peer.roles {
                if !declared.contains_key(r) {
                    let help = suggest::help(r, declared.keys().map(String::as_str), "roles");
                    self.error(
                        value.span(),
                        format!(
                            "`[fleet.nodes.{name}]` takes the unknown role `{}`",
                            crate::shown(r)
                        ),
                        help,
                    );
                }
            }
        }
        if !view.nodes.contains_key(&view.node) {
            let help = suggest::help(&view.node, view.nodes.keys().map(String::as_str), "nodes");
            self.error(
                value.span(),
                format!(
                    "`[fleet]` names this node `{}`, which is not among its nodes",
                    crate::shown(&view.node)
                ),
                help,
            );
            return;
        }
        self.site.fleet = Some(Spanned::new(value.span(), view));
    }

    /// `[external]`: `<role> = "<host>"` for each role whose services the site runs
    /// elsewhere (a managed PostgreSQL or Redis), reached at that host on the ports its
    /// settings name.
    fn external(&mut self, value: &Spanned<DeValue<'_>>) {
        let help = "write `[external]` and below it `<role> = \"<host name or IP address>\"`, e.g. database = \"pg.example.com\"";
        let DeValue::Table(table) = value.get_ref() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a table for `external`, found {found}"),
                Some(help.to_owned()),
            );
            return;
        };
        let declared = &self.manifest.roles;
        let with_services = || {
            declared
                .iter()
                .filter(|(_, d)| !d.services.is_empty() && !d.health)
                .map(|(n, _)| n.as_str())
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, item) in table {
            let role = key.get_ref().as_ref();
            let Some(decl) = declared.get(role) else {
                let help = suggest::help(role, with_services(), "roles");
                self.error(
                    key.span(),
                    format!("unknown role `{}` in `[external]`", crate::shown(role)),
                    help.or_else(|| {
                        Some("this app declares no roles: remove `[external]`".to_owned())
                    }),
                );
                ok = false;
                continue;
            };
            if decl.services.is_empty() {
                self.error(
                    key.span(),
                    format!("role `{role}` runs no service of the app's (only a fleet's machinery), so nothing of it can be elsewhere"),
                    Some(format!("roles that can be external: {}", suggest::backticked(with_services()))),
                );
                ok = false;
                continue;
            }
            if decl.health {
                self.error(
                    key.span(),
                    format!("role `{role}` serves `external_url`: it is the app itself, and cannot run elsewhere"),
                    Some(format!("roles that can be external: {}", suggest::backticked(with_services()))),
                );
                ok = false;
                continue;
            }
            let Some(host) = item.get_ref().as_str() else {
                let found = found_phrase(&to_value(item.get_ref()));
                self.error(
                    item.span(),
                    format!(
                        "expected a host name or IP address for `external.{role}`, found {found}"
                    ),
                    Some(help.to_owned()),
                );
                ok = false;
                continue;
            };
            if host.parse::<std::net::IpAddr>().is_err()
                && !crate::validate::fleet::is_host_name(host)
            {
                self.error(
                    item.span(),
                    format!("`{}` is not a host name or an IP address", crate::shown(host)),
                    Some(format!("write where the {role} is, without a scheme or port (the port is the site's setting): e.g. {role} = \"db.example.com\"")),
                );
                ok = false;
                continue;
            }
            out.insert(role.to_owned(), Spanned::new(item.span(), host.to_owned()));
        }
        if ok {
            self.site.external = Some(Spanned::new(value.span(), out));
        }
    }

    /// A role placed `with` another is taken only beside it, unless `[fleet]` puts
    /// that one on other nodes (a cluster's pods, where PostgreSQL runs elsewhere and
    /// Redis has pods of its own).
    fn roles_beside_their_hosts(&mut self) {
        let Some(roles) = &self.site.roles else {
            return;
        };
        let names = roles.get_ref();
        let elsewhere = |host: &String| {
            self.site.fleet.as_ref().is_some_and(|f| {
                let f = f.get_ref();
                f.nodes
                    .iter()
                    .any(|(n, p)| n != &f.node && p.roles.contains(host))
            })
        };
        let mut wrong = Vec::new();
        for name in names {
            if let Some(host) = &self.manifest.roles[name].with
                && !names.contains(host)
                && !elsewhere(host)
            {
                wrong.push((name.clone(), host.clone()));
            }
        }
        let span = roles.span();
        for (name, host) in wrong {
            self.error(
                span.clone(),
                format!(
                    "role `{name}` runs on the nodes of `{host}`, which this node does not take"
                ),
                Some(format!("add `{host}` to `roles`, or leave `{name}` out")),
            );
        }
    }

    /// A node does not take a role that is elsewhere.
    fn external_not_taken(&mut self) {
        let (Some(external), Some(roles)) = (&self.site.external, &self.site.roles) else {
            return;
        };
        let taken: Vec<String> = roles
            .get_ref()
            .iter()
            .filter(|r| external.get_ref().contains_key(*r))
            .cloned()
            .collect();
        let span = roles.span();
        for role in taken {
            self.error(
                span.clone(),
                format!("`roles` has `{role}`, which `[external]` says runs elsewhere"),
                Some(format!(
                    "take `{role}` out of `roles`, or out of `[external]`"
                )),
            );
        }
    }

    /// A node's `roles` are the ones `[fleet]` gives it.
    fn fleet_matches_roles(&mut self) {
        let Some(fleet) = &self.site.fleet else {
            return;
        };
        let span = fleet.span();
        let listed: Option<std::collections::BTreeSet<&String>> = self
            .site
            .roles
            .as_ref()
            .map(|r| r.get_ref().iter().collect());
        let given: std::collections::BTreeSet<&String> = fleet
            .get_ref()
            .me()
            .map(|m| m.roles.iter().collect())
            .unwrap_or_default();
        if listed.as_ref() != Some(&given) {
            let message = format!(
                "`roles` and `[fleet]` disagree on what node `{}` takes",
                fleet.get_ref().node
            );
            self.diags.push(
                self.source
                    .diag(Some(span), message)
                    .with_help("both are written by `berth fleet up` from the fleet file: run it again rather than editing them"),
            );
        }
    }

    /// `roles = ["database", "cache"]`: declared roles, each once, a role placed
    /// `with` another only beside it.
    fn roles(&mut self, value: &Spanned<DeValue<'_>>) {
        let declared = &self.manifest.roles;
        let DeValue::Array(items) = value.get_ref() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a list of role names for `roles`, found {found}"),
                Some("write roles = [\"database\", \"cache\"] (`berth plan topology --write` writes it)".to_owned()),
            );
            return;
        };
        if declared.is_empty() {
            self.error(
                value.span(),
                "this app declares no roles, so a node cannot take some of them".to_owned(),
                Some("remove the `roles` line: the node runs the whole app".to_owned()),
            );
            return;
        }
        let mut names: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(name) = item.get_ref().as_str() else {
                self.error(
                    item.span(),
                    "a role is named by a string".to_owned(),
                    Some(format!(
                        "roles: {}",
                        suggest::backticked(declared.keys().map(String::as_str))
                    )),
                );
                ok = false;
                continue;
            };
            if !declared.contains_key(name) {
                let help = suggest::help(name, declared.keys().map(String::as_str), "roles");
                self.error(
                    item.span(),
                    format!("unknown role `{}`", crate::shown(name)),
                    help,
                );
                ok = false;
            } else if names.iter().any(|n| n == name) {
                self.error(
                    item.span(),
                    format!("role `{name}` is listed twice"),
                    Some("list each role once".to_owned()),
                );
                ok = false;
            } else {
                names.push(name.to_owned());
            }
        }
        if names.is_empty() && ok {
            self.error(
                value.span(),
                "`roles` is empty: the node would run nothing".to_owned(),
                Some(
                    "list the roles this node takes, or remove the line to run the whole app"
                        .to_owned(),
                ),
            );
            ok = false;
        }
        if ok {
            self.site.roles = Some(Spanned::new(value.span(), names));
        }
    }

    fn profile(&mut self, value: &Spanned<DeValue<'_>>) {
        let profiles = &self.manifest.profiles;
        let Some(s) = value.get_ref().as_str() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a string for `profile`, found {found}"),
                Some("write the profile's name in quotes: profile = \"small\"".to_owned()),
            );
            return;
        };
        if profiles.contains_key(s) {
            self.site.profile = Some(Spanned::new(value.span(), s.to_owned()));
            return;
        }
        let names = profiles.keys().map(String::as_str);
        let help = if profiles.is_empty() {
            "this app defines no profiles; remove the `profile` line".to_owned()
        } else {
            let list = profiles
                .iter()
                .map(|(n, p)| {
                    if p.description.is_empty() {
                        format!("`{n}`")
                    } else {
                        format!("`{n}` ({})", p.description)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            match suggest::closest(s, names) {
                Some(c) => format!("did you mean `{c}`? profiles: {list}"),
                None => format!("profiles: {list}"),
            }
        };
        self.error(
            value.span(),
            format!("unknown profile `{}`", crate::shown(s)),
            Some(help),
        );
    }

    fn group(&mut self, name: &str, key_span: Range<usize>, value: &Spanned<DeValue<'_>>) {
        let manifest = self.manifest;
        let group = manifest.settings.get(name);
        let component = manifest.components.get(name);
        if group.is_none() && component.is_none() {
            let mut known: Vec<&str> = TOP_LEVEL.to_vec();
            known.extend(manifest.settings.keys().map(String::as_str));
            known.extend(
                manifest
                    .components
                    .iter()
                    .filter(|(_, c)| c.optional)
                    .map(|(n, _)| n.as_str()),
            );
            let help = suggest::help(name, known, "top-level keys and groups");
            self.error(key_span, format!("unknown key or group `{name}`"), help);
            return;
        }
        let DeValue::Table(table) = value.get_ref() else {
            let found = found_phrase(&to_value(value.get_ref()));
            self.error(
                value.span(),
                format!("expected a table for `{name}`, found {found}"),
                Some(format!(
                    "`{name}` is a group: write `[{name}]` and put its keys below it"
                )),
            );
            return;
        };
        for (key, value) in table {
            let key_name = key.get_ref().as_ref();
            let qualified = format!("{name}.{key_name}");
            if let Some(decl) = group.and_then(|g| g.get(key_name)) {
                if let Some(n) = too_large(value.get_ref()) {
                    self.error(
                        value.span(),
                        format!(
                            "the number `{}` for `{qualified}` is too large",
                            crate::shown(n)
                        ),
                        Some(format!("integers go from {} to {}", i64::MIN, i64::MAX)),
                    );
                    continue;
                }
                match check_value(&qualified, decl, &to_value(value.get_ref())) {
                    Ok(v) => {
                        self.site
                            .settings
                            .entry(name.to_owned())
                            .or_default()
                            .insert(
                                key_name.to_owned(),
                                SiteSetting {
                                    raw: to_value(value.get_ref()),
                                    value: v,
                                    span: value.span(),
                                },
                            );
                    }
                    Err(p) => self.error(value.span(), p.message, p.help),
                }
            } else if key_name == ENABLED
                && let Some(c) = component
            {
                if !c.optional {
                    self.error(
                        key.span(),
                        format!("component `{name}` cannot be switched off"),
                        Some(format!(
                            "the app needs `{name}`; remove this `enabled` line"
                        )),
                    );
                } else if let Some(b) = value.get_ref().as_bool() {
                    self.site
                        .components
                        .insert(name.to_owned(), Spanned::new(value.span(), b));
                } else {
                    let found = found_phrase(&to_value(value.get_ref()));
                    self.error(
                        value.span(),
                        format!("expected `true` or `false` for `{qualified}`, found {found}"),
                        Some(format!("write `enabled = false` to switch `{name}` off")),
                    );
                }
            } else {
                let mut known: Vec<&str> = group
                    .map(|g| g.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if component.is_some_and(|c| c.optional) {
                    known.push(ENABLED);
                }
                let help = suggest::help(key_name, known, &format!("keys in `[{name}]`"));
                self.error(key.span(), format!("unknown setting `{qualified}`"), help);
            }
        }
    }
}

/// The text of an integer (also inside an array) too large for 64 bits.
fn too_large<'v>(v: &'v DeValue<'_>) -> Option<&'v str> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .is_err()
            .then(|| i.as_str()),
        DeValue::Array(a) => a.iter().find_map(|v| too_large(v.get_ref())),
        _ => None,
    }
}

/// A spanned TOML value as a plain [`toml::Value`].
fn to_value(v: &DeValue<'_>) -> toml::Value {
    match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).map_or_else(
            // Too large for i64: keep it numeric so range checks report it.
            |_| toml::Value::Float(i.as_str().parse().unwrap_or(f64::MAX)),
            toml::Value::Integer,
        ),
        DeValue::Float(f) => toml::Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => toml::Value::Array(a.iter().map(|v| to_value(v.get_ref())).collect()),
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_value(v.get_ref())))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

/// An instance name: a lowercase letter, then lowercase letters, digits and `-`, at
/// most 31 characters (user names built from it are checked for length when made).
pub fn is_instance_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.len() <= 31
}
