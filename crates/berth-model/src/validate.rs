//! Semantic checks of a manifest: everything serde cannot see.
//!
//! References between services, jobs, hooks, files, secrets and components; dependency
//! cycles; signals, durations and file modes; setting declarations and profiles; and
//! templates, which must parse and use only names the render context has. Every problem
//! is reported, each pointing at the key or value in `berth.toml` (or the template).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::load::relative_inside;
use crate::locate::{Locator, Seg};
use crate::manifest::{
    DataDir, HookWhen, Manifest, RerunSource, SettingDecl, SettingType, WaitRef,
};
use crate::span::Source;
use crate::suggest;
use crate::templates::{derive_context, render_context, unknown_names};
use crate::value::{anchored, check_value, parse_duration};
use crate::{Diagnostic, Diagnostics, LoadedManifest};

pub(crate) mod fleet;
pub mod preflight;
pub(crate) mod topology;

/// The forms of a hook's `on` entries, for help lines.
const FORMS: &str =
    "write `package:<name>`, `file:<path>`, `setting:<group>.<key>` or `app:version`";

/// Signals a service may name for stopping or reloading.
pub const SIGNALS: [&str; 11] = [
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGWINCH",
    "SIGABRT", "SIGCONT", "SIGALRM",
];

/// Checks everything about `m` that parsing cannot, and reports every problem at once.
pub fn validate(m: &LoadedManifest) -> Result<(), Diagnostics> {
    let mut v = Validator {
        m,
        man: &m.manifest,
        loc: Locator::new(&m.manifest.source_text),
        src: Source::new(&m.source_name, &m.manifest.source_text),
        diags: Diagnostics::default(),
    };
    v.app();
    v.components_and_secrets();
    v.settings();
    v.profiles();
    v.services();
    v.jobs();
    v.hooks();
    v.environments();
    v.shell_scripts();
    v.requirements();
    v.files();
    v.host_files();
    v.backup();
    v.upgrade();
    v.seed();
    v.licences();
    v.preflight();
    topology::check_manifest(m, &mut v.diags);
    v.cycles();
    v.templates();
    v.diags.into_result(())
}

struct Validator<'a> {
    m: &'a LoadedManifest,
    man: &'a Manifest,
    loc: Locator<'a>,
    src: Source<'a>,
    diags: Diagnostics,
}

/// `services.web.depends_on[1]`.
fn dotted(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Validator<'_> {
    /// An error pointing at the value at `path`.
    fn at_value(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let span = self.loc.value(path);
        self.diags
            .push(self.src.diag(span, message).with_help_opt(help));
    }

    /// An error pointing at the key at `path`.
    fn at_key(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let span = self.loc.key(path);
        self.diags
            .push(self.src.diag(span, message).with_help_opt(help));
    }

    /// Checks that `name` (found at `path`) is one of `known`, things of kind `what`.
    fn reference<'k>(
        &mut self,
        path: &[Seg<'_>],
        name: &str,
        what: &str,
        known: impl Iterator<Item = &'k str> + Clone,
    ) {
        if known.clone().any(|k| k == name) {
            return;
        }
        let help = suggest::help(name, known, &format!("declared {what}s"));
        self.at_value(
            path,
            format!(
                "`{}` names {what} `{name}`, which is not declared",
                dotted(path)
            ),
            help,
        );
    }

    fn component_ref(&mut self, path: &[Seg<'_>], name: &str) {
        let known = self.man.components.keys().map(String::as_str);
        self.reference(path, name, "component", known);
    }

    fn service_ref(&mut self, path: &[Seg<'_>], name: &str) {
        let known = self.man.services.keys().map(String::as_str);
        self.reference(path, name, "service", known);
    }

    fn duration(&mut self, path: &[Seg<'_>], s: &str) {
        if s.contains("{{") {
            return;
        }
        if let Err(why) = parse_duration(s) {
            self.at_value(
                path,
                format!(
                    "`{s}` is not a valid duration for `{}`: {why}",
                    dotted(path)
                ),
                Some("write a number and a unit, e.g. `30s`, `5m`, `1h`".to_owned()),
            );
        }
    }

    fn signal(&mut self, path: &[Seg<'_>], s: &str) {
        if SIGNALS.contains(&s) {
            return;
        }
        let prefixed = format!("SIG{}", s.to_ascii_uppercase());
        let help = if SIGNALS.contains(&prefixed.as_str()) {
            Some(format!("write it with the prefix: `{prefixed}`"))
        } else {
            suggest::help(s, SIGNALS, "signals")
        };
        self.at_value(path, format!("`{s}` is not a signal berth knows"), help);
    }

    fn app(&mut self) {
        let name = &self.man.app.name;
        // It is also the default user name, which POSIX caps at 32 characters.
        let valid = name.len() <= 32
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.at_value(
                &[Seg::Key("app"), Seg::Key("name")],
                format!("app name `{name}` is not a valid name"),
                Some(
                    "use a lowercase letter followed by lowercase letters, digits and `-`, at \
                     most 32 characters (it becomes part of paths, user names and package names)"
                        .to_owned(),
                ),
            );
        }
        let version = &self.man.app.version;
        if version.trim().is_empty() {
            self.at_value(
                &[Seg::Key("app"), Seg::Key("version")],
                "`app.version` is empty".to_owned(),
                Some("set the version the bundled components are pinned to".to_owned()),
            );
        } else if !is_version(version) {
            // The version names a directory (`<prefix>/releases/<version>`).
            self.at_value(
                &[Seg::Key("app"), Seg::Key("version")],
                format!(
                    "`app.version` `{}` is not a valid version",
                    crate::shown(version)
                ),
                Some(
                    "use letters, digits and `.`, `_`, `+`, `~`, `-`, starting with a letter or \
                     digit, e.g. \"4.7.3\" (it becomes a directory name)"
                        .to_owned(),
                ),
            );
        }
        if let Some(url) = &self.man.app.default_external_url
            && let Err(why) = crate::value::check_http_url(url)
        {
            self.at_value(
                &[Seg::Key("app"), Seg::Key("default_external_url")],
                format!("`{url}` is not a valid `app.default_external_url`: {why}"),
                Some("write an absolute URL such as `http://127.0.0.1:8080/`".to_owned()),
            );
        }
    }

    /// Names of components, services, jobs and hooks become file and directory names.
    fn names(&mut self) {
        let man = self.man;
        let tables = [
            ("components", man.components.keys().collect::<Vec<_>>()),
            ("services", man.services.keys().collect()),
            ("jobs", man.jobs.keys().collect()),
            ("hooks", man.hooks.keys().collect()),
        ];
        for (table, names) in tables {
            for name in names {
                if !is_name(name) {
                    self.at_key(
                        &[Seg::Key(table), Seg::Key(name)],
                        format!("`{}` cannot be a name in `[{table}]`", crate::shown(name)),
                        Some(
                            "use letters, digits, `_` and `-`, starting with a letter, digit or `_` \
                             (names become file and directory names)"
                                .to_owned(),
                        ),
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one check after another, each a few lines
    fn components_and_secrets(&mut self) {
        self.names();
        for (name, c) in &self.man.components {
            // Package names go into apt-get's arguments and into the control fields of
            // the packages berth writes (`Depends:`, `Requires:`): only what a name can be.
            for (key, list, valid, rule) in [
                (
                    "packages",
                    &c.packages,
                    is_debian_package_name as fn(&str) -> bool,
                    "a Debian package name: lowercase letters, digits, `+`, `-` and `.`, starting with a letter or digit",
                ),
                (
                    "rpm_packages",
                    &c.rpm_packages,
                    is_rpm_package_name,
                    "an RPM package name: letters, digits, `+`, `-`, `.` and `_`, starting with a letter or digit",
                ),
            ] {
                for (i, p) in list.iter().enumerate() {
                    if !valid(p) {
                        self.at_value(
                            &[
                                Seg::Key("components"),
                                Seg::Key(name),
                                Seg::Key(key),
                                Seg::Index(i),
                            ],
                            format!("`{}` is not a package name", crate::shown(p)),
                            Some(format!("write {rule}")),
                        );
                    }
                }
            }
            if let Some(user) = &c.user
                && !is_user_name(user)
            {
                self.at_value(
                    &[Seg::Key("components"), Seg::Key(name), Seg::Key("user")],
                    format!("`{}` is not a valid user name", crate::shown(user)),
                    Some(
                        "use a POSIX user name: a lowercase letter or `_`, then lowercase letters, \
                         digits, `_` and `-`, at most 32 characters"
                            .to_owned(),
                    ),
                );
            }
            for (i, d) in c.data_dirs.iter().enumerate() {
                let at = [
                    Seg::Key("components"),
                    Seg::Key(name),
                    Seg::Key("data_dirs"),
                    Seg::Index(i),
                ];
                let path = d.path();
                if let Err(why) = relative_inside(path) {
                    self.at_value(
                        &at,
                        format!(
                            "data directory `{}` of component `{name}` {why}",
                            crate::shown(path)
                        ),
                        Some("write a relative path without `..`, e.g. `media`".to_owned()),
                    );
                }
                if is_octal_mode(d.mode()) && special_bits(d.mode()) & 0o6000 != 0 {
                    // A setgid directory passes its group to everything created in it;
                    // berth never asks for that. Sticky is harmless and allowed.
                    self.at_value(
                        &at,
                        format!(
                            "data directory `{path}` has mode `{}`, with the setuid or setgid bit",
                            d.mode()
                        ),
                        Some("drop the leading 2, 4 or 6, e.g. \"0750\"".to_owned()),
                    );
                }
                if !is_octal_mode(d.mode()) {
                    self.at_value(
                        &at,
                        format!(
                            "data directory `{path}` has mode `{}`, which is not an octal mode",
                            d.mode()
                        ),
                        Some(
                            "write three or four octal digits as a string, e.g. \"0755\""
                                .to_owned(),
                        ),
                    );
                }
            }
            for (bin, path) in &c.binaries {
                if !path.starts_with('/') && !path.contains("{{") {
                    self.at_value(
                        &[
                            Seg::Key("components"),
                            Seg::Key(name),
                            Seg::Key("binaries"),
                            Seg::Key(bin),
                        ],
                        format!(
                            "binary `{bin}` of component `{name}` has a relative path `{path}`"
                        ),
                        Some("write the absolute path the package installs it at".to_owned()),
                    );
                }
            }
        }
        for (name, s) in &self.man.secrets {
            let path = [Seg::Key("secrets"), Seg::Key(name)];
            if !is_identifier(name) && !name.chars().all(|c| c.is_ascii_digit() || c == '_') {
                // The name is the file name in the secret store.
                self.at_key(
                    &path,
                    format!("`{}` cannot be a secret name", crate::shown(name)),
                    Some(
                        "use lowercase letters, digits and `_` (the name is a file name)"
                            .to_owned(),
                    ),
                );
            }
            if let Some(c) = &s.readable_by {
                self.component_ref(&[path[0], path[1], Seg::Key("readable_by")], c);
            }
            if s.length == Some(0) {
                self.at_value(
                    &[path[0], path[1], Seg::Key("length")],
                    format!("secret `{name}` has length 0"),
                    Some("use at least 16 characters".to_owned()),
                );
            }
            if s.alphabet.as_deref() == Some("") {
                self.at_value(
                    &[path[0], path[1], Seg::Key("alphabet")],
                    format!("secret `{name}` has an empty alphabet"),
                    Some(
                        "use `alphanumeric`, `hex`, `ascii-printable` or a set of characters"
                            .to_owned(),
                    ),
                );
            }
            if let Some(hook) = &s.from_hook {
                self.secret_from_hook(name, s.length.is_some(), hook);
            }
        }
    }

    /// A secret a hook makes: the hook is declared and `once` (the value must stay what
    /// the app made), and berth generates nothing, so there is no `length`.
    fn secret_from_hook(&mut self, name: &str, has_length: bool, hook: &str) {
        let at = [Seg::Key("secrets"), Seg::Key(name), Seg::Key("from_hook")];
        let known = self.man.hooks.keys().map(String::as_str);
        self.reference(&at, hook, "hook", known);
        if let Some(h) = self.man.hooks.get(hook)
            && h.when != HookWhen::Once
        {
            let when = match h.when {
                HookWhen::Once => "once",
                HookWhen::Release => "release",
                HookWhen::Change => "change",
                HookWhen::Always => "always",
            };
            self.at_value(
                &at,
                format!(
                    "secret `{name}` is made by hook `{hook}`, which runs `when = \"{when}\"`: \
                     a hook that runs again would replace the value the app uses"
                ),
                Some(format!(
                    "make hook `{hook}` `when = \"once\"` (it runs again only while one of its \
                     secrets is missing), or let berth generate the secret (remove `from_hook`)"
                )),
            );
        }
        if has_length {
            self.at_key(
                &[Seg::Key("secrets"), Seg::Key(name), Seg::Key("length")],
                format!(
                    "secret `{name}` is made by hook `{hook}`, so berth generates no `length` of it"
                ),
                Some("remove `length`; `alphabet` limits what the hook may hand over".to_owned()),
            );
        }
    }

    fn settings(&mut self) {
        for (group, keys) in &self.man.settings {
            let gpath = [Seg::Key("settings"), Seg::Key(group)];
            if !is_identifier(group)
                || matches!(
                    group.as_str(),
                    "external_url"
                        | "profile"
                        | "instance"
                        | "users"
                        | "roles"
                        | "fleet"
                        | "external"
                )
            {
                self.at_key(
                    &gpath,
                    format!("`{group}` cannot be a settings group name"),
                    Some(
                        "use lowercase letters, digits and `_` (templates write \
                         `settings.<group>.<key>`), and not `external_url`, `profile`, `instance`, \
                         `users`, `roles`, `fleet` or `external`"
                            .to_owned(),
                    ),
                );
            }
            let optional_component = self.man.components.get(group).is_some_and(|c| c.optional);
            for (key, decl) in keys {
                let path = [gpath[0], gpath[1], Seg::Key(key)];
                if !is_identifier(key) {
                    self.at_key(
                        &path,
                        format!("`{key}` cannot be a setting name"),
                        Some("use lowercase letters, digits and `_`".to_owned()),
                    );
                }
                if key == "enabled" && optional_component {
                    self.at_key(
                        &path,
                        format!("setting `{group}.enabled` clashes with the optional component `{group}`"),
                        Some("`[<component>] enabled` switches the component; rename the setting".to_owned()),
                    );
                }
                self.setting_decl(group, key, decl, &path);
            }
        }
    }

    fn setting_decl(&mut self, group: &str, key: &str, decl: &SettingDecl, path: &[Seg<'_>]) {
        let name = format!("{group}.{key}");
        let sub = |k: &'static str| [path[0], path[1], path[2], Seg::Key(k)];
        self.fields_apply(&name, decl, path);
        if let (Some(min), Some(max)) = (decl.min, decl.max)
            && min > max
        {
            self.at_value(
                &sub("min"),
                format!("`{name}` has `min` {min} greater than `max` {max}"),
                Some("swap them, or fix the one that is wrong".to_owned()),
            );
        }
        if let Some(pattern) = &decl.pattern
            && let Err(e) = anchored(pattern)
        {
            let why = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            self.at_value(
                &sub("pattern"),
                format!("the `pattern` of `{name}` is not a valid regular expression: {why}"),
                Some("see https://docs.rs/regex for the syntax".to_owned()),
            );
        }
        if let Some(choices) = &decl.choices
            && choices.is_empty()
        {
            self.at_value(
                &sub("enum"),
                format!("`{name}` has an empty `enum`, so no value is allowed"),
                Some("list the allowed values, or remove `enum`".to_owned()),
            );
        }
        match (&decl.default, &decl.derive) {
            (Some(_), Some(_)) => self.at_key(
                &sub("derive"),
                format!("`{name}` has both `default` and `derive`"),
                Some(
                    "keep one: `default` for a fixed value, `derive` to compute it from host facts"
                        .to_owned(),
                ),
            ),
            (Some(default), None) => {
                if let Err(p) = check_value(&name, decl, default) {
                    self.at_value(
                        &sub("default"),
                        format!("the default of `{name}` is invalid: {}", p.message),
                        p.help,
                    );
                }
            }
            (None, Some(expr)) => self.derive_expr(&name, expr, &sub("derive")),
            (None, None) => {}
        }
    }

    /// `min`/`max` only on numeric settings, `enum`/`pattern` only on string ones.
    fn fields_apply(&mut self, name: &str, decl: &SettingDecl, path: &[Seg<'_>]) {
        let sub = |k: &'static str| [path[0], path[1], path[2], Seg::Key(k)];
        let numeric = matches!(
            decl.kind,
            SettingType::Int | SettingType::Port | SettingType::Size | SettingType::Duration
        );
        let stringy = matches!(decl.kind, SettingType::String | SettingType::StringList);
        for (field, present, ok, applies) in [
            (
                "min",
                decl.min.is_some(),
                numeric,
                "int, port, size and duration",
            ),
            (
                "max",
                decl.max.is_some(),
                numeric,
                "int, port, size and duration",
            ),
            (
                "enum",
                decl.choices.is_some(),
                stringy,
                "string and string_list",
            ),
            (
                "pattern",
                decl.pattern.is_some(),
                stringy,
                "string and string_list",
            ),
        ] {
            if present && !ok {
                self.at_key(
                    &sub(field),
                    format!(
                        "`{field}` does not apply to `{name}`, a {:?} setting",
                        decl.kind
                    ),
                    Some(format!(
                        "`{field}` only applies to {applies} settings; remove it"
                    )),
                );
            }
        }
    }

    fn derive_expr(&mut self, name: &str, expr: &str, path: &[Seg<'_>]) {
        let env = minijinja::Environment::new();
        match env.compile_expression(expr) {
            Ok(compiled) => {
                let used: HashSet<String> = compiled.undeclared_variables(true);
                for u in unknown_names(&derive_context(), &used) {
                    self.at_value(
                        path,
                        format!(
                            "the `derive` expression of `{name}` uses `{}`, {}",
                            u.name, u.why
                        ),
                        u.help.or_else(|| {
                            Some("`derive` may only use `facts.*` and `paths.*`".to_owned())
                        }),
                    );
                }
            }
            Err(e) => self.at_value(
                path,
                format!(
                    "the `derive` expression of `{name}` does not parse: {}",
                    e.detail().unwrap_or("syntax error")
                ),
                Some(
                    "write a minijinja expression, e.g. `[facts.cpus * 2 + 1, 8] | min`".to_owned(),
                ),
            ),
        }
    }

    fn profiles(&mut self) {
        for (profile, p) in &self.man.profiles {
            if let Some(budget) = &p.memory_budget {
                let path = [
                    Seg::Key("profiles"),
                    Seg::Key(profile),
                    Seg::Key("memory_budget"),
                ];
                match crate::value::parse_size(budget) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => self.at_value(
                        &path,
                        format!("profile `{profile}` has a memory budget of 0"),
                        Some(
                            "give the most memory the stack should take, e.g. `\"800MiB\"`"
                                .to_owned(),
                        ),
                    ),
                    Err(why) => self.at_value(
                        &path,
                        format!("`{}` is not a size: {why}", crate::shown(budget)),
                        Some(crate::value::SIZE_HELP.to_owned()),
                    ),
                }
            }
            for e in p.entries() {
                let name = format!("{}.{}", e.group, e.key);
                let quoted = [
                    Seg::Key("profiles"),
                    Seg::Key(profile),
                    Seg::Key("values"),
                    Seg::Key(&name),
                ];
                let nested = [
                    Seg::Key("profiles"),
                    Seg::Key(profile),
                    Seg::Key("values"),
                    Seg::Key(e.group),
                    Seg::Key(e.key),
                ];
                let path: &[Seg<'_>] = if e.quoted { &quoted } else { &nested };
                let decl = self
                    .man
                    .settings
                    .get(e.group)
                    .and_then(|keys| keys.get(e.key));
                let Some(decl) = decl else {
                    let all: Vec<String> = self
                        .man
                        .settings
                        .iter()
                        .flat_map(|(g, keys)| keys.keys().map(move |k| format!("{g}.{k}")))
                        .collect();
                    let shown = if e.key.is_empty() { e.group } else { &name };
                    let help = suggest::help(shown, all.iter().map(String::as_str), "settings");
                    self.at_key(
                        path,
                        format!(
                            "profile `{profile}` sets `{shown}`, which is not a declared setting"
                        ),
                        help.map(|h| format!("{h} (keys are written `\"<group>.<key>\"`)")),
                    );
                    continue;
                };
                if let Err(p) = check_value(&name, decl, e.value) {
                    self.at_value(path, format!("profile `{profile}`: {}", p.message), p.help);
                }
            }
        }
    }

    fn services(&mut self) {
        for (name, s) in &self.man.services {
            let base = [Seg::Key("services"), Seg::Key(name)];
            let p = |k: &'static str| [base[0], base[1], Seg::Key(k)];
            self.not_reserved(&base, "service", name);
            self.component_ref(&p("component"), &s.component);
            for (i, dep) in s.depends_on.iter().enumerate() {
                if dep == name {
                    self.at_value(
                        &[base[0], base[1], Seg::Key("depends_on"), Seg::Index(i)],
                        format!("service `{name}` depends on itself"),
                        Some("remove it from its own `depends_on`".to_owned()),
                    );
                } else {
                    self.service_ref(
                        &[base[0], base[1], Seg::Key("depends_on"), Seg::Index(i)],
                        dep,
                    );
                }
            }
            if s.command.is_empty() {
                self.at_value(
                    &p("command"),
                    format!("service `{name}` has an empty `command`"),
                    Some("give the program and its arguments, e.g. `[\"{{ components.app.bin.server }}\"]`".to_owned()),
                );
            }
            self.signal(&p("stop_signal"), &s.stop_signal);
            if let Some(sig) = &s.reload_signal {
                self.signal(&p("reload_signal"), sig);
            }
            self.duration(&p("stop_timeout"), &s.stop_timeout);
            if let Some(ready) = &s.ready {
                let ready_path = p("ready");
                let probes = [
                    ready.tcp.is_some(),
                    ready.http.is_some(),
                    ready.command.is_some(),
                ]
                .into_iter()
                .filter(|b| *b)
                .count();
                if probes != 1 {
                    self.at_key(
                        &ready_path,
                        format!("the readiness probe of service `{name}` sets {probes} of `tcp`, `http`, `command`"),
                        Some("set exactly one of them".to_owned()),
                    );
                }
                self.duration(
                    &[base[0], base[1], Seg::Key("ready"), Seg::Key("timeout")],
                    &ready.timeout,
                );
            }
            if let Some(beside) = &s.beside {
                self.beside(name, s, beside);
            }
        }
    }

    /// `beside` on service `name`: two distinct `port` settings, a readiness probe to
    /// know when the new release can take traffic, a drain duration.
    fn beside(
        &mut self,
        name: &str,
        s: &crate::manifest::ServiceDecl,
        b: &crate::manifest::BesideDecl,
    ) {
        let at = |k: &'static str| {
            [
                Seg::Key("services"),
                Seg::Key(name),
                Seg::Key("beside"),
                Seg::Key(k),
            ]
        };
        let declared = self.declared_settings();
        for (key, setting) in [("port", &b.port), ("spare", &b.spare)] {
            let decl = setting
                .split_once('.')
                .and_then(|(g, k)| self.man.settings.get(g)?.get(k));
            match decl {
                None => self.reference(
                    &at(key),
                    setting,
                    "setting",
                    declared.iter().map(String::as_str),
                ),
                Some(d) if d.kind != crate::manifest::SettingType::Port => self.at_value(
                    &at(key),
                    format!("setting `{setting}` is not a `port` setting"),
                    Some(format!(
                        "`beside.{key}` names the setting holding a TCP port (`type = \"port\"`)"
                    )),
                ),
                Some(_) => {}
            }
        }
        if b.port == b.spare {
            self.at_value(
                &at("spare"),
                format!("`beside.spare` of service `{name}` is its `port` setting"),
                Some("declare a second port setting for the new release to listen on while the old one drains".to_owned()),
            );
        }
        if s.ready.is_none() {
            self.at_key(
                &[Seg::Key("services"), Seg::Key(name), Seg::Key("beside")],
                format!("service `{name}` has `beside` but no readiness probe"),
                Some("give it `ready = { http = \"...\" }`: traffic moves to the new release only once it is ready".to_owned()),
            );
        }
        self.duration(&at("drain"), &b.drain);
    }

    /// Service and job names beginning `berth-` are berth's own (`berth-console`,
    /// `berth-backup`, `berth-upgrade`): the supervisor runs them beside the app's.
    fn not_reserved(&mut self, at: &[Seg<'_>], what: &str, name: &str) {
        if name.starts_with("berth-") {
            self.at_key(
                at,
                format!("{what} name `{name}` is reserved: names beginning `berth-` are berth's own services and jobs"),
                Some(format!("rename the {what}, e.g. `{}`", name.trim_start_matches("berth-"))),
            );
        }
    }

    fn jobs(&mut self) {
        for (name, j) in &self.man.jobs {
            let base = [Seg::Key("jobs"), Seg::Key(name)];
            let p = |k: &'static str| [base[0], base[1], Seg::Key(k)];
            self.not_reserved(&base, "job", name);
            self.component_ref(&p("component"), &j.component);
            for (i, r) in j.requires.iter().enumerate() {
                self.service_ref(&[base[0], base[1], Seg::Key("requires"), Seg::Index(i)], r);
            }
            self.duration(&p("every"), &j.every);
            self.duration(&p("timeout"), &j.timeout);
        }
    }

    fn hooks(&mut self) {
        for (name, h) in &self.man.hooks {
            let base = [Seg::Key("hooks"), Seg::Key(name)];
            let p = |k: &'static str| [base[0], base[1], Seg::Key(k)];
            self.component_ref(&p("component"), &h.component);
            for (field, list) in [("after", &h.after), ("before", &h.before)] {
                for (i, entry) in list.iter().enumerate() {
                    let at = [base[0], base[1], Seg::Key(field), Seg::Index(i)];
                    match WaitRef::parse(entry) {
                        WaitRef::Service(s)
                            if !self.man.services.contains_key(s)
                                && self.man.hooks.contains_key(s) =>
                        {
                            self.at_value(
                                &at,
                                format!(
                                    "`{}` names `{s}`, which is a hook, not a service",
                                    dotted(&at)
                                ),
                                Some(format!("write a hook as `\"hook:{s}\"`")),
                            );
                        }
                        WaitRef::Service(s) => self.service_ref(&at, s),
                        WaitRef::Hook(other)
                            if !self.man.hooks.contains_key(other)
                                && self.man.services.contains_key(other) =>
                        {
                            self.at_value(
                                &at,
                                format!(
                                    "`{}` names hook `{other}`, but `{other}` is a service",
                                    dotted(&at)
                                ),
                                Some(format!("write a service without `hook:`: `\"{other}\"`")),
                            );
                        }
                        WaitRef::Hook("") => self.at_value(
                            &at,
                            format!("`{}` is `hook:` without a hook name", dotted(&at)),
                            suggest::help(
                                "",
                                self.man.hooks.keys().map(String::as_str),
                                "declared hooks",
                            ),
                        ),
                        WaitRef::Hook(other) if other == name => self.at_value(
                            &at,
                            format!("hook `{name}` names itself in its `{field}`"),
                            Some(format!(
                                "remove `hook:{name}` from `[hooks.{name}] {field}`"
                            )),
                        ),
                        WaitRef::Hook(other) => self.hook_ref(&at, other),
                    }
                }
            }
            self.duration(&p("timeout"), &h.timeout);
            self.rerun_sources(name, h);
        }
    }

    /// `hook:<name>` in a hook's `after` or `before` names a declared hook.
    fn hook_ref(&mut self, path: &[Seg<'_>], name: &str) {
        let man = self.man;
        if man.hooks.contains_key(name) {
            return;
        }
        let help = suggest::help(name, man.hooks.keys().map(String::as_str), "declared hooks")
            .map(|h| h.replace("did you mean `", "did you mean `hook:"));
        self.at_value(
            path,
            format!(
                "`{}` names hook `{name}`, which is not declared",
                dotted(path)
            ),
            help,
        );
    }

    /// `when = "change"` goes with a non-empty `on`, whose every entry names something
    /// declared; any other `when` has no `on`.
    fn rerun_sources(&mut self, name: &str, h: &crate::manifest::HookDecl) {
        let man = self.man;
        let base = [Seg::Key("hooks"), Seg::Key(name)];
        if h.when != HookWhen::Change {
            if !h.on.is_empty() {
                self.at_key(
                    &[base[0], base[1], Seg::Key("on")],
                    format!(
                        "hook `{name}` has `on`, but only a `when = \"change\"` hook follows what `on` names"
                    ),
                    Some("set `when = \"change\"`, or remove `on`".to_owned()),
                );
            }
            return;
        }
        if h.on.is_empty() {
            self.at_value(
                &[base[0], base[1], Seg::Key("when")],
                format!("hook `{name}` runs `when = \"change\"` but its `on` names nothing"),
                Some(
                    "list what it follows, e.g. `on = [\"package:mediawiki\", \"setting:db.name\"]`"
                        .to_owned(),
                ),
            );
            return;
        }
        let packages: BTreeSet<&str> = man
            .components
            .values()
            .flat_map(|c| c.packages.iter().map(String::as_str))
            .collect();
        let candidates =
            |kind: Option<&str>| -> Vec<String> {
                let mut all: Vec<String> = Vec::new();
                if kind.is_none_or(|k| k == "package") {
                    all.extend(packages.iter().map(|p| format!("package:{p}")));
                }
                if kind.is_none_or(|k| k == "file") {
                    all.extend(man.files.iter().map(|f| format!("file:{}", f.path)));
                }
                if kind.is_none_or(|k| k == "setting") {
                    all.extend(man.settings.iter().flat_map(|(g, keys)| {
                        keys.keys().map(move |k| format!("setting:{g}.{k}"))
                    }));
                }
                if kind.is_none_or(|k| k == "app") {
                    all.push("app:version".to_owned());
                }
                all
            };
        for (i, entry) in h.on.iter().enumerate() {
            let at = [base[0], base[1], Seg::Key("on"), Seg::Index(i)];
            let source = match RerunSource::parse(entry) {
                Ok(source) => source,
                Err(why) => {
                    // Suggest a whole entry, e.g. `package:mediawiki` for `mediawiki`
                    // or `pakage:mediawiki`.
                    let all = candidates(None);
                    let written = entry.split_once(':').map_or(entry.as_str(), |(_, n)| n);
                    let close =
                        suggest::closest(entry, all.iter().map(String::as_str)).or_else(|| {
                            all.iter()
                                .map(String::as_str)
                                .find(|c| c.split_once(':').is_some_and(|(_, n)| n == written))
                        });
                    let help = close.map_or_else(
                        || FORMS.to_owned(),
                        |c| format!("did you mean `{c}`? ({FORMS})"),
                    );
                    self.at_value(
                        &at,
                        format!("`{}` is `{}`, {why}", dotted(&at), crate::shown(entry)),
                        Some(help),
                    );
                    continue;
                }
            };
            let (kind, what) = match &source {
                RerunSource::Package(p) if !packages.contains(p.as_str()) => {
                    ("package", "a package no component declares in `packages`")
                }
                RerunSource::File(f) if !man.files.iter().any(|d| &d.path == f) => {
                    ("file", "a file no `[[files]]` entry renders")
                }
                RerunSource::Setting { group, key }
                    if !man.settings.get(group).is_some_and(|g| g.contains_key(key)) =>
                {
                    ("setting", "a setting the manifest does not declare")
                }
                _ => continue,
            };
            let known = candidates(Some(kind));
            let help = suggest::help(entry, known.iter().map(String::as_str), "candidates");
            self.at_value(
                &at,
                format!("`{}` names {what}: `{}`", dotted(&at), crate::shown(entry)),
                help,
            );
        }
    }

    /// Every `environment` table: variable names a program can read back, and a `PATH`
    /// of absolute directories only (an empty or relative entry would look programs up
    /// in whatever directory the process is in).
    fn environments(&mut self) {
        let man = self.man;
        let mut tables: Vec<(Vec<Owned>, &BTreeMap<String, String>)> =
            vec![(vec![key("app"), key("environment")], &man.app.environment)];
        for (name, c) in &man.components {
            tables.push((
                vec![key("components"), key(name), key("environment")],
                &c.environment,
            ));
        }
        for (name, s) in &man.services {
            tables.push((
                vec![key("services"), key(name), key("environment")],
                &s.environment,
            ));
        }
        for (name, j) in &man.jobs {
            tables.push((
                vec![key("jobs"), key(name), key("environment")],
                &j.environment,
            ));
        }
        for (name, h) in &man.hooks {
            tables.push((
                vec![key("hooks"), key(name), key("environment")],
                &h.environment,
            ));
        }
        for (base, env) in tables {
            for (var, value) in env {
                let mut path = base.clone();
                path.push(key(var));
                let segs: Vec<Seg<'_>> = path.iter().map(Owned::as_seg).collect();
                if !is_env_name(var) {
                    self.at_key(
                        &segs,
                        format!("`{}` cannot be an environment variable name", crate::shown(var)),
                        Some(
                            "use letters, digits and `_`, not starting with a digit (e.g. `DJANGO_SETTINGS`)"
                                .to_owned(),
                        ),
                    );
                }
                if var == "PATH"
                    && let Some(entry) = relative_path_entry(value)
                {
                    self.at_value(
                        &segs,
                        format!(
                            "`PATH` in `{}` has the entry `{}`, which is not an absolute directory",
                            dotted(&segs[..segs.len() - 1]),
                            crate::shown(entry)
                        ),
                        Some(
                            "list absolute directories separated by `:`, e.g. \
                             \"{{ components.app.dir }}/bin:/usr/bin:/bin\" (an empty or relative \
                             entry looks programs up in the working directory)"
                                .to_owned(),
                        ),
                    );
                }
            }
        }
    }

    /// `[licences]`: SPDX identifiers in `allow` and `deny` (none in both), and each
    /// reviewed component with a reason and something to say: a `concluded` SPDX
    /// expression or `accept`.
    fn licences(&mut self) {
        let Some(policy) = &self.man.licences else {
            return;
        };
        let known = || {
            spdx::identifiers::LICENSES
                .iter()
                .filter(|l| l.flags & spdx::flags::IS_DEPRECATED == 0)
                .map(|l| l.name)
        };
        // `GPL` names a family: its current members, else the closest identifier.
        let hint = |id: &str| {
            let family: Vec<&str> = known()
                .filter(|n| n.strip_prefix(id).is_some_and(|rest| rest.starts_with('-')))
                .collect();
            if !family.is_empty() && family.len() <= 6 {
                return Some(format!(
                    "it names several licences: {}",
                    crate::suggest::backticked(family)
                ));
            }
            crate::suggest::closest(id, known())
                .map(|c| format!("did you mean `{c}`?"))
                .or_else(|| {
                    Some(
                        "write the identifier of the SPDX licence list (`MIT`, `Apache-2.0`, \
                         `BSD-3-Clause`), or `LicenseRef-<name>` for one of your own"
                            .to_owned(),
                    )
                })
        };
        for (list, ids) in [("allow", &policy.allow), ("deny", &policy.deny)] {
            for (i, id) in ids.iter().enumerate() {
                let at = [Seg::Key("licences"), Seg::Key(list), Seg::Index(i)];
                if id.starts_with("LicenseRef-") {
                    continue;
                }
                if spdx::license_id(id).is_none_or(|l| l.name != id.as_str()) {
                    self.at_value(
                        &at,
                        format!("`{}` is not an SPDX licence identifier", id.escape_debug()),
                        hint(id),
                    );
                }
                if list == "deny" && policy.allow.contains(id) {
                    self.at_value(
                        &at,
                        format!("`{id}` is both allowed and denied"),
                        Some("keep it in one of `allow` and `deny`".to_owned()),
                    );
                }
            }
        }
        for (name, c) in &policy.components {
            let base = [Seg::Key("licences"), Seg::Key("components"), Seg::Key(name)];
            let normalized = name.to_ascii_lowercase().replace(['_', '.'], "-");
            if normalized != *name {
                self.at_key(
                    &base,
                    format!("`{name}` is not written as components are matched"),
                    Some(format!(
                        "write `{normalized}` (lower case, `-` for `_` and `.`, as Python \
                         names compare; crates are named with `-` too)"
                    )),
                );
            }
            if c.reason.trim().is_empty() {
                self.at_key(
                    &[base[0], base[1], base[2], Seg::Key("reason")],
                    "the reason is empty".to_owned(),
                    Some("say what was reviewed: a later reader checks it".to_owned()),
                );
            }
            match (&c.concluded, c.accept) {
                (None, false) => self.at_key(
                    &base,
                    format!("`{name}` says neither `concluded` nor `accept`"),
                    Some(
                        "give `concluded = \"<SPDX expression>\"` (the licence you read in \
                         its text) or `accept = true` (ship it whatever its licence)"
                            .to_owned(),
                    ),
                ),
                (Some(expr), _) => {
                    if let Err(e) = spdx::Expression::parse(expr) {
                        self.at_value(
                            &[base[0], base[1], base[2], Seg::Key("concluded")],
                            format!(
                                "`{}` is not an SPDX expression: {}",
                                expr.escape_debug(),
                                e.reason
                            ),
                            Some("e.g. `BSD-3-Clause`, `MIT OR Apache-2.0`".to_owned()),
                        );
                    }
                }
                (None, true) => {}
            }
        }
    }

    /// `[seed]`: a declared hook, and a database to dump and load.
    fn seed(&mut self) {
        let Some(seed) = &self.man.seed else { return };
        let at = [Seg::Key("seed"), Seg::Key("hook")];
        let known = self.man.hooks.keys().map(String::as_str);
        self.reference(&at, &seed.hook, "hook", known);
        for (i, column) in seed.build_time_columns.iter().enumerate() {
            let parts: Vec<&str> = column.split('.').collect();
            if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| is_identifier(p)) {
                self.at_value(
                    &[
                        Seg::Key("seed"),
                        Seg::Key("build_time_columns"),
                        Seg::Index(i),
                    ],
                    format!(
                        "`{}` is not a column: give `table.column` or `schema.table.column`",
                        column.escape_debug()
                    ),
                    Some(
                        "name them as PostgreSQL folds unquoted names: lower-case letters, \
                         digits and `_`, e.g. `django_migrations.applied`"
                            .to_owned(),
                    ),
                );
            }
        }
        if self
            .man
            .backup
            .as_ref()
            .is_none_or(|b| b.database.is_none())
        {
            self.at_key(
                &[Seg::Key("seed")],
                "a seed is a dump of the app's database, and `[backup.database]` declares none"
                    .to_owned(),
                Some("declare the database in `[backup.database]`, or remove `[seed]`".to_owned()),
            );
        }
    }

    /// A virtualenv's requirements are hashed all or not at all: one `--hash` makes
    /// berth run pip with `--require-hashes`, which refuses (minutes into the build)
    /// every requirement without a hash or without an exact `==` pin.
    fn requirements(&mut self) {
        for (name, c) in &self.man.components {
            let Some(crate::manifest::BundleBuild::PythonVenv { requirements, .. }) = &c.build
            else {
                continue;
            };
            // Option lines (`--index-url …`) and comments are not requirements.
            let reqs: Vec<(usize, &String)> = requirements
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    let t = r.trim_start();
                    !t.is_empty() && !t.starts_with('-') && !t.starts_with('#')
                })
                .collect();
            if !reqs.iter().any(|(_, r)| r.contains("--hash")) {
                continue;
            }
            for (i, r) in reqs {
                let spec = r.split("--").next().unwrap_or_default().trim();
                let why = if !r.contains("--hash") {
                    "has no `--hash`, but other requirements do"
                } else if !spec.contains("==") {
                    "has a `--hash` but no exact `==` version"
                } else {
                    continue;
                };
                self.at_value(
                    &[
                        Seg::Key("components"),
                        Seg::Key(name),
                        Seg::Key("build"),
                        Seg::Key("requirements"),
                        Seg::Index(i),
                    ],
                    format!(
                        "requirement `{}` of component `{name}` {why}: with any hash pinned, pip \
                         runs with `--require-hashes` and refuses it",
                        crate::shown(spec)
                    ),
                    Some(
                        "pin every package with `==` and its hashes (`pip-compile --generate-hashes` \
                         writes them all), or remove every `--hash`"
                            .to_owned(),
                    ),
                );
            }
        }
    }

    /// No template inside the script of a `sh -c` (or `bash -c` …) command: the
    /// rendered value would become shell syntax (a prefix or setting with a space,
    /// a quote or `$(…)` would change what the script does). Values go in through
    /// `environment` and are used as `"$NAME"`; positional arguments after the
    /// script are fine too, since they are never parsed as shell.
    fn shell_scripts(&mut self) {
        let mut commands: Vec<(Vec<Owned>, &[String])> = Vec::new();
        for (name, s) in &self.man.services {
            commands.push((vec![key("services"), key(name), key("command")], &s.command));
            if let Some(argv) = s.ready.as_ref().and_then(|r| r.command.as_ref()) {
                commands.push((
                    vec![key("services"), key(name), key("ready"), key("command")],
                    argv,
                ));
            }
        }
        for (name, j) in &self.man.jobs {
            commands.push((vec![key("jobs"), key(name), key("command")], &j.command));
        }
        for (name, h) in &self.man.hooks {
            commands.push((vec![key("hooks"), key(name), key("command")], &h.command));
            if let Some(check) = &h.check {
                commands.push((vec![key("hooks"), key(name), key("check")], check));
            }
        }
        for (base, argv) in commands {
            let Some(i) = shell_script_index(argv) else {
                continue;
            };
            let script = &argv[i];
            if !(script.contains("{{") || script.contains("{%")) {
                continue;
            }
            let mut path = base;
            path.push(Owned::Index(i));
            let segs: Vec<Seg<'_>> = path.iter().map(Owned::as_seg).collect();
            let shell = Path::new(&argv[0])
                .file_name()
                .map_or_else(|| argv[0].clone(), |n| n.to_string_lossy().into_owned());
            self.at_value(
                &segs,
                format!(
                    "`{}` is a `{shell} -c` script with a template in its text: the rendered value \
                     would be read as shell code (a space, a quote or `$(…)` in it changes what the script does)",
                    dotted(&segs)
                ),
                Some(
                    "pass the value through the command's `environment` (e.g. \
                     `environment = { PSQL = \"{{ components.postgresql.bin.psql }}\" }`) and write \
                     `\"$PSQL\"` in the script"
                        .to_owned(),
                ),
            );
        }
    }

    fn backup(&mut self) {
        let Some(b) = &self.man.backup else {
            return;
        };
        let declared: Vec<&str> = self
            .man
            .components
            .values()
            .flat_map(|c| c.data_dirs.iter().map(DataDir::path))
            .collect();
        for (i, dir) in b.data_dirs.iter().enumerate() {
            if let Err(why) = relative_inside(dir) {
                self.at_value(
                    &[Seg::Key("backup"), Seg::Key("data_dirs"), Seg::Index(i)],
                    format!("backup data directory `{}` {why}", crate::shown(dir)),
                    Some("write a path relative to `<prefix>/data` without `..`".to_owned()),
                );
                continue;
            }
            let inside = declared.iter().any(|d| {
                Path::new(dir).starts_with(d)
                    && !Path::new(dir).components().any(|c| c.as_os_str() == "..")
            });
            if !inside {
                let help =
                    suggest::help(dir, declared.iter().copied(), "declared data directories");
                self.at_value(
                    &[Seg::Key("backup"), Seg::Key("data_dirs"), Seg::Index(i)],
                    format!("`{dir}` is not a declared data directory nor inside one"),
                    help.or_else(|| {
                        Some("list directories from the components' `data_dirs`".to_owned())
                    }),
                );
            }
        }
        for (i, s) in b.quiesce.iter().enumerate() {
            self.service_ref(&[Seg::Key("backup"), Seg::Key("quiesce"), Seg::Index(i)], s);
        }
        if let Some(db) = &b.database {
            let base = [Seg::Key("backup"), Seg::Key("database")];
            self.service_ref(&[base[0], base[1], Seg::Key("service")], &db.service);
            if b.quiesce.contains(&db.service) {
                self.at_value(
                    &[base[0], base[1], Seg::Key("service")],
                    format!(
                        "service `{}` serves the database and is also in `backup.quiesce`",
                        db.service
                    ),
                    Some(
                        "the dump needs the database running: remove it from `quiesce`".to_owned(),
                    ),
                );
            }
            for (i, h) in db.restore_after.iter().enumerate() {
                let at = [base[0], base[1], Seg::Key("restore_after"), Seg::Index(i)];
                let known = self.man.hooks.keys().map(String::as_str);
                self.reference(&at, h, "hook", known);
                let made: Vec<&str> = self
                    .man
                    .secrets
                    .iter()
                    .filter(|(_, s)| s.from_hook.as_deref() == Some(h.as_str()))
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !made.is_empty() {
                    let what = if made.len() == 1 { "secret" } else { "secrets" };
                    self.at_value(
                        &at,
                        format!(
                            "hook `{h}` makes {what} {} and so cannot run on a restore: it \
                             would replace the restored value with a new one",
                            suggest::backticked(made.iter().copied())
                        ),
                        Some(
                            "a restore brings the secret back with the data; move what the \
                             dump needs into a hook of its own"
                                .to_owned(),
                        ),
                    );
                }
            }
            if let Some(secret) = &db.password {
                let known = self.man.secrets.keys().map(String::as_str);
                self.reference(
                    &[base[0], base[1], Seg::Key("password")],
                    secret,
                    "secret",
                    known,
                );
            }
            if !db.bin_dir.starts_with('/') {
                self.at_value(
                    &[base[0], base[1], Seg::Key("bin_dir")],
                    format!("`bin_dir` `{}` is not an absolute path", db.bin_dir),
                    Some("e.g. \"/usr/lib/postgresql/15/bin\"".to_owned()),
                );
            }
        }
    }

    /// A version of an `[upgrade]` rule: a valid version, not newer than this one.
    fn upgrade_version(&mut self, path: &[Seg<'_>], value: &str, what: &str) -> bool {
        let version = &self.man.app.version;
        if !is_version(value) {
            self.at_value(
                path,
                format!("{what} `{}` is not a valid version", crate::shown(value)),
                Some("write a version such as `3.7` or `4.7.3`".to_owned()),
            );
            return false;
        }
        if !crate::version::at_least(version, value) {
            self.at_value(
                path,
                format!("{what} `{value}` is newer than this manifest's version `{version}`"),
                Some("upgrade rules speak of this version and older ones".to_owned()),
            );
            return false;
        }
        true
    }

    /// `[upgrade]`: versions that are versions and older than this one, stops oldest
    /// first, not in this version's own series.
    fn upgrade(&mut self) {
        use crate::version::{compare_versions, in_series};
        let version = self.man.app.version.clone();
        let u = &self.man.upgrade;
        for (i, stop) in u.stops.iter().enumerate() {
            let path = [Seg::Key("upgrade"), Seg::Key("stops"), Seg::Index(i)];
            if !self.upgrade_version(&path, stop, "upgrade stop") {
                continue;
            }
            if in_series(&version, stop) {
                self.at_value(
                    &path,
                    format!("upgrade stop `{stop}` is this version's own series"),
                    Some(
                        "list the series an upgrade to this version must pass through first"
                            .to_owned(),
                    ),
                );
            } else if i > 0 && compare_versions(&u.stops[i - 1], stop) != std::cmp::Ordering::Less {
                self.at_value(
                    &path,
                    format!("upgrade stop `{stop}` comes after `{}`", u.stops[i - 1]),
                    Some("list the stops oldest first".to_owned()),
                );
            }
        }
        for (key, value) in [("from", &u.from), ("online_from", &u.online_from)] {
            if let Some(value) = value {
                self.upgrade_version(
                    &[Seg::Key("upgrade"), Seg::Key(key)],
                    value,
                    &format!("`upgrade.{key}`"),
                );
            }
        }
        self.upgrade_settings();
    }

    /// Every declared setting, as `group.key`.
    fn declared_settings(&self) -> Vec<String> {
        self.man
            .settings
            .iter()
            .flat_map(|(g, keys)| keys.keys().map(move |k| format!("{g}.{k}")))
            .collect()
    }

    /// `[[upgrade.settings]]`: renamed settings pointing at declared ones (or renamed
    /// again), removed ones gone from the manifest.
    fn upgrade_settings(&mut self) {
        let u = &self.man.upgrade;
        let declared = self.declared_settings();
        for (i, c) in u.settings.iter().enumerate() {
            let at = |k| {
                [
                    Seg::Key("upgrade"),
                    Seg::Key("settings"),
                    Seg::Index(i),
                    Seg::Key(k),
                ]
            };
            self.upgrade_version(&at("since"), &c.since, "`since`");
            if c.key
                .split_once('.')
                .is_none_or(|(g, k)| !is_identifier(g) || !is_identifier(k))
            {
                self.at_value(
                    &at("key"),
                    format!("`{}` is not a setting's name", crate::shown(&c.key)),
                    Some(
                        "write `group.key`, as in the site config's `[group] key = ...`".to_owned(),
                    ),
                );
            } else if declared.contains(&c.key) {
                self.at_value(
                    &at("key"),
                    format!(
                        "setting `{}` is renamed or removed, but still declared",
                        c.key
                    ),
                    Some(format!("remove `[settings.{}]` from this manifest", c.key)),
                );
            }
            // A name renamed again later (by another entry) is not declared any more.
            let renamed_again = u
                .settings
                .iter()
                .any(|o| c.renamed_to.as_ref() == Some(&o.key));
            if let Some(to) = c.renamed_to.as_ref().filter(|_| !renamed_again) {
                self.reference(
                    &at("renamed_to"),
                    to,
                    "setting",
                    declared.iter().map(String::as_str),
                );
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one check after another, each a few lines
    fn files(&mut self) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut formats: BTreeMap<&str, (usize, crate::FileFormat)> = BTreeMap::new();
        for (i, f) in self.man.files.iter().enumerate() {
            let p = |k: &'static str| [Seg::Key("files"), Seg::Index(i), Seg::Key(k)];
            if let Some(first) = seen.insert(f.path.as_str(), i) {
                self.at_value(
                    &p("path"),
                    format!(
                        "file `{}` is declared twice (also `files[{first}]`)",
                        f.path
                    ),
                    Some("render each file from one `[[files]]` entry".to_owned()),
                );
            }
            if let Err(why) = relative_inside(&f.path) {
                self.at_value(
                    &p("path"),
                    format!("file path `{}` {why}", crate::shown(&f.path)),
                    Some("write a path relative to `<prefix>/etc` without `..`, e.g. `nginx/site.conf`".to_owned()),
                );
            }
            if let Err(why) = relative_inside(&f.template) {
                self.at_value(
                    &p("template"),
                    format!("template path `{}` {why}", crate::shown(&f.template)),
                    Some(
                        "write a path relative to the manifest's directory, without `..`"
                            .to_owned(),
                    ),
                );
            }
            if let Some(&(first, other)) = formats.get(f.template.as_str())
                && other != f.format
            {
                self.at_value(
                    &p("format"),
                    format!(
                        "template `{}` is rendered as `{}` here and as `{}` by `files[{first}]`",
                        f.template,
                        f.format.name(),
                        other.name()
                    ),
                    Some(
                        "a template is escaped for one format: use one format, or two templates"
                            .to_owned(),
                    ),
                );
            }
            formats.entry(f.template.as_str()).or_insert((i, f.format));
            if is_octal_mode(&f.mode) && special_bits(&f.mode) != 0 {
                self.at_value(
                    &p("mode"),
                    format!(
                        "file mode `{}` has the setuid, setgid or sticky bit",
                        f.mode
                    ),
                    Some("a config file needs read and write bits only, e.g. \"0640\"".to_owned()),
                );
            }
            if !self.m.templates.contains_key(&f.template) {
                self.at_value(
                    &p("template"),
                    format!("template `{}` was not loaded", f.template),
                    Some("check that the file exists next to the manifest".to_owned()),
                );
            }
            if !is_octal_mode(&f.mode) {
                self.at_value(
                    &p("mode"),
                    format!("`{}` is not an octal file mode", f.mode),
                    Some("write three or four octal digits as a string, e.g. \"0640\"".to_owned()),
                );
            }
            if let Some(owner) = &f.owner {
                self.component_ref(&p("owner"), owner);
            }
            if let Some(c) = &f.component {
                self.component_ref(&p("component"), c);
            }
            for (j, s) in f.restarts.iter().enumerate() {
                self.service_ref(
                    &[
                        Seg::Key("files"),
                        Seg::Index(i),
                        Seg::Key("restarts"),
                        Seg::Index(j),
                    ],
                    s,
                );
            }
            for (j, s) in f.reloads.iter().enumerate() {
                let path = [
                    Seg::Key("files"),
                    Seg::Index(i),
                    Seg::Key("reloads"),
                    Seg::Index(j),
                ];
                match self.man.services.get(s) {
                    None => self.service_ref(&path, s),
                    Some(svc) if svc.reload_signal.is_none() => self.at_value(
                        &path,
                        format!("file `{}` reloads service `{s}`, which has no `reload_signal`", f.path),
                        Some(format!(
                            "add `reload_signal = \"SIGHUP\"` to `[services.{s}]` if it reloads on a signal, \
                             or move it to `restarts`"
                        )),
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// `[[host_files]]`: a plain absolute path outside the system's trees, once; a
    /// declared component; a link or a copy of a `[[files]]` entry rendered whenever
    /// the host file is.
    fn host_files(&mut self) {
        let man = self.man;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, h) in man.host_files.iter().enumerate() {
            let p = |k: &'static str| [Seg::Key("host_files"), Seg::Index(i), Seg::Key(k)];
            if let Err(why) = crate::check_host_path(&h.path) {
                self.at_value(
                    &p("path"),
                    format!("host file path `{}` {why}", crate::shown(&h.path)),
                    Some(
                        "write the absolute path the other program reads, at least three levels \
                         deep and outside the system's trees, e.g. \"/etc/nginx/sites-enabled/app.conf\""
                            .to_owned(),
                    ),
                );
            } else if let Some(first) = seen.insert(h.path.as_str(), i) {
                self.at_value(
                    &p("path"),
                    format!(
                        "host file `{}` is declared twice (also `host_files[{first}]`)",
                        h.path
                    ),
                    Some("declare each host file once".to_owned()),
                );
            }
            self.component_ref(&p("component"), &h.component);
            match (&h.link_to, &h.copy_of) {
                (Some(_), Some(_)) | (None, None) => self.at_key(
                    &p("path"),
                    format!(
                        "host file `{}` sets {} of `link_to` and `copy_of`",
                        crate::shown(&h.path),
                        if h.link_to.is_some() { "both" } else { "neither" }
                    ),
                    Some(
                        "set exactly one: `link_to` for a symlink into the prefix, `copy_of` for a \
                         copy of a rendered `[[files]]` entry"
                            .to_owned(),
                    ),
                ),
                (Some(_), None) => {
                    if h.mode.is_some() {
                        self.at_key(
                            &p("mode"),
                            format!("host file `{}` is a symlink and has a `mode`", h.path),
                            Some("a symlink has no mode of its own: remove `mode`".to_owned()),
                        );
                    }
                }
                (None, Some(copy)) => match man.files.iter().find(|f| &f.path == copy) {
                    None => {
                        let help = suggest::help(
                            copy,
                            man.files.iter().map(|f| f.path.as_str()),
                            "`[[files]]` paths",
                        );
                        self.at_value(
                            &p("copy_of"),
                            format!("`host_files[{i}].copy_of` names file `{copy}`, which no `[[files]]` entry renders"),
                            help,
                        );
                    }
                    Some(f) if f.component.as_ref().is_some_and(|c| c != &h.component) => {
                        self.at_value(
                            &p("copy_of"),
                            format!(
                                "host file `{}` of component `{}` copies `{copy}`, which is only rendered with component `{}`",
                                h.path,
                                h.component,
                                f.component.as_deref().unwrap_or_default()
                            ),
                            Some("copy a file of the same component, or of none".to_owned()),
                        );
                    }
                    Some(_) => {}
                },
            }
            if let Some(mode) = &h.mode
                && (!is_octal_mode(mode) || special_bits(mode) != 0)
            {
                self.at_value(
                    &p("mode"),
                    format!("`{mode}` is not a mode for a host file"),
                    Some("write three or four octal digits without setuid, setgid or sticky bits, e.g. \"0644\"".to_owned()),
                );
            }
        }
    }

    /// Cycles in "waits for": a service waits for its `depends_on`, a hook for its
    /// `after`, and a hook's `before` services wait for the hook.
    fn cycles(&mut self) {
        let graph = WaitGraph::new(self.man);
        for cycle in graph.cycles() {
            let shown: Vec<String> = cycle.iter().map(WaitNode::to_string).collect();
            let edge_path = graph.edge_path(&cycle[0], &cycle[1]);
            let path: Vec<Seg<'_>> = edge_path.iter().map(|s| s.as_seg()).collect();
            let entries: Vec<String> = cycle
                .windows(2)
                .map(|pair| self.edge_entry(&graph.edge_path(&pair[0], &pair[1])))
                .collect();
            self.at_value(
                &path,
                format!("dependency cycle: {}", shown.join(" -> ")),
                Some(format!(
                    "nothing in a cycle can ever start; remove one of these entries: {}",
                    entries.join(", ")
                )),
            );
        }
    }

    /// One edge of a cycle as the manifest declares it, for the fix:
    /// `"b" in [services.a] depends_on (line 12)`.
    fn edge_entry(&self, path: &[Owned]) -> String {
        let segs: Vec<Seg<'_>> = path.iter().map(Owned::as_seg).collect();
        let (Some(span), [Owned::Key(section), Owned::Key(name), Owned::Key(list), ..]) =
            (self.loc.value(&segs), path)
        else {
            return String::from("?");
        };
        let text = self.src.text;
        let entry = text.get(span.clone()).unwrap_or_default();
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!("{entry} in `[{section}.{name}] {list}` (line {line})")
    }

    fn templates(&mut self) {
        let spec = render_context(self.man);
        let dir = Path::new(&self.m.source_name)
            .parent()
            .unwrap_or(Path::new(""));
        let names: BTreeSet<&String> = self.man.files.iter().map(|f| &f.template).collect();
        for name in names {
            let Some(text) = self.m.templates.get(name) else {
                continue;
            };
            let display = dir.join(name).display().to_string();
            let src = Source::new(&display, text);
            let format = self
                .man
                .files
                .iter()
                .find(|f| &f.template == name)
                .map(|f| f.format);
            if let Some(format) = format
                && !matches!(format, crate::FileFormat::Conf | crate::FileFormat::Plain)
                && let Some(at) = own_quotes(text)
            {
                // berth quotes the value itself: quotes of the template's own around it
                // would end up doubled (`''/path'/x'`), a broken file at best.
                self.diags.push(
                    src.diag(
                        Some(at..at + 3),
                        format!(
                            "template `{name}` puts a value inside quotes of its own, but values in a `{}` file are quoted by berth",
                            format.name()
                        ),
                    )
                    .with_help(
                        "remove the quotes and build the whole value in one expression, \
                         e.g. `{{ paths.run ~ \"/app.sock\" }}` (see Escaping in docs/manifest.md)",
                    ),
                );
            }
            let env = minijinja::Environment::new();
            match env.template_from_str(text) {
                Ok(t) => {
                    for u in unknown_names(&spec, &t.undeclared_variables(true)) {
                        let span = text.find(&u.name).map(|at| at..at + u.name.len());
                        self.diags.push(
                            src.diag(
                                span,
                                format!("template `{name}` uses `{}`, {}", u.name, u.why),
                            )
                            .with_help_opt(u.help),
                        );
                    }
                }
                Err(e) => self.diags.push(
                    src.diag(
                        e.range(),
                        format!(
                            "template `{name}` does not parse: {}",
                            e.detail().unwrap_or("syntax error")
                        ),
                    )
                    .with_help("see https://docs.rs/minijinja for the template syntax"),
                ),
            }
        }
        for (path, text) in inline_templates(self.man) {
            let segs: Vec<Seg<'_>> = path.iter().map(Owned::as_seg).collect();
            let env = minijinja::Environment::new();
            match env.template_from_str(&text) {
                Ok(t) => {
                    for u in unknown_names(&spec, &t.undeclared_variables(true)) {
                        self.at_value(
                            &segs,
                            format!("`{}` uses `{}`, {}", dotted(&segs), u.name, u.why),
                            u.help,
                        );
                    }
                }
                Err(e) => self.at_value(
                    &segs,
                    format!(
                        "`{}` is not a valid template: {}",
                        dotted(&segs),
                        e.detail().unwrap_or("syntax error")
                    ),
                    Some("see https://docs.rs/minijinja for the template syntax".to_owned()),
                ),
            }
        }
    }
}

/// An owned path segment, for paths built in loops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Key(String),
    Index(usize),
}

impl Owned {
    fn as_seg(&self) -> Seg<'_> {
        match self {
            Owned::Key(k) => Seg::Key(k),
            Owned::Index(i) => Seg::Index(*i),
        }
    }
}

fn key(k: &str) -> Owned {
    Owned::Key(k.to_owned())
}

/// The values of `[app] environment`, of each component's `environment` and of each
/// host file's `link_to`, with their paths.
fn shared_templates(m: &Manifest) -> Vec<(Vec<Owned>, String)> {
    let mut out = Vec::new();
    for (i, h) in m.host_files.iter().enumerate() {
        if let Some(target) = &h.link_to {
            out.push((
                vec![key("host_files"), Owned::Index(i), key("link_to")],
                target.clone(),
            ));
        }
    }
    for (k, v) in &m.app.environment {
        out.push((vec![key("app"), key("environment"), key(k)], v.clone()));
    }
    for (name, c) in &m.components {
        for (k, v) in &c.environment {
            out.push((
                vec![key("components"), key(name), key("environment"), key(k)],
                v.clone(),
            ));
        }
    }
    out
}

/// Every string in the manifest that is rendered as a template, with its path.
#[allow(clippy::too_many_lines)] // one entry per place a template can be
fn inline_templates(m: &Manifest) -> Vec<(Vec<Owned>, String)> {
    let mut out = shared_templates(m);
    for (i, line) in m.app.next_steps.iter().enumerate() {
        out.push((
            vec![key("app"), key("next_steps"), Owned::Index(i)],
            line.clone(),
        ));
    }
    let mut process = |table: &str,
                       name: &str,
                       command: &[String],
                       env: &BTreeMap<String, String>,
                       working_dir: &Option<String>,
                       extra: Vec<(&str, &String)>| {
        let base = vec![key(table), key(name)];
        let with = |more: &[Owned]| {
            let mut p = base.clone();
            p.extend_from_slice(more);
            p
        };
        for (i, arg) in command.iter().enumerate() {
            out.push((with(&[key("command"), Owned::Index(i)]), arg.clone()));
        }
        for (k, v) in env {
            out.push((with(&[key("environment"), key(k)]), v.clone()));
        }
        if let Some(wd) = working_dir {
            out.push((with(&[key("working_dir")]), wd.clone()));
        }
        for (k, v) in extra {
            out.push((with(&[key(k)]), v.clone()));
        }
    };
    for (name, s) in &m.services {
        process(
            "services",
            name,
            &s.command,
            &s.environment,
            &s.working_dir,
            std::iter::once(("stop_timeout", &s.stop_timeout))
                .chain(s.metrics.as_ref().map(|m| ("metrics", m)))
                .collect(),
        );
    }
    for (name, j) in &m.jobs {
        process(
            "jobs",
            name,
            &j.command,
            &j.environment,
            &j.working_dir,
            vec![("every", &j.every), ("timeout", &j.timeout)],
        );
    }
    for (name, h) in &m.hooks {
        let mut extra = vec![("timeout", &h.timeout)];
        if let Some(creates) = &h.creates {
            extra.push(("creates", creates));
        }
        process(
            "hooks",
            name,
            &h.command,
            &h.environment,
            &h.working_dir,
            extra,
        );
    }
    if let Some(db) = m.backup.as_ref().and_then(|b| b.database.as_ref()) {
        for (k, v) in [("host", &db.host), ("port", &db.port)] {
            out.push((vec![key("backup"), key("database"), key(k)], v.clone()));
        }
    }
    for (name, s) in &m.services {
        for (i, addr) in s.listen.iter().enumerate() {
            out.push((
                vec![key("services"), key(name), key("listen"), Owned::Index(i)],
                addr.clone(),
            ));
        }
        if let Some(ready) = &s.ready {
            let base = vec![key("services"), key(name), key("ready")];
            let with = |k: Owned| {
                let mut p = base.clone();
                p.push(k);
                p
            };
            if let Some(t) = &ready.tcp {
                out.push((with(key("tcp")), t.clone()));
            }
            if let Some(h) = &ready.http {
                out.push((with(key("http")), h.clone()));
            }
            for (i, arg) in ready.command.iter().flatten().enumerate() {
                let mut p = with(key("command"));
                p.push(Owned::Index(i));
                out.push((p, arg.clone()));
            }
            out.push((with(key("timeout")), ready.timeout.clone()));
        }
    }
    out
}

/// Shells whose `-c` takes a script: the argument parsed as shell code.
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"];

/// The index of the script in `argv` when it runs a shell with `-c` (`["/bin/sh",
/// "-c", SCRIPT, …]`, `["bash", "-euc", SCRIPT]`, `["sh", "-e", "-o", "pipefail", "-c",
/// SCRIPT]`): the first argument after the shell's options. `None` for anything else,
/// including a shell running a script file.
fn shell_script_index(argv: &[String]) -> Option<usize> {
    let program = Path::new(argv.first()?).file_name()?.to_str()?;
    if !SHELLS.contains(&program) {
        return None;
    }
    let mut has_c = false;
    let mut i = 1;
    while let Some(arg) = argv.get(i) {
        if arg == "--" || arg == "-" {
            i += 1;
            break;
        }
        let Some(flags) = arg.strip_prefix('-').or_else(|| arg.strip_prefix('+')) else {
            break;
        };
        if arg.starts_with("--") {
            // bash's long options (`--norc`, `--login`) take no value.
            i += 1;
            continue;
        }
        has_c |= arg.starts_with('-') && flags.contains('c');
        // `-o NAME` (also at the end of a group, `-eo pipefail`) takes the next argument.
        i += if flags.ends_with('o') { 2 } else { 1 };
    }
    (has_c && i < argv.len()).then_some(i)
}

/// A thing that can wait for another: a service or a hook.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum WaitNode {
    Service(String),
    Hook(String),
}

impl std::fmt::Display for WaitNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitNode::Service(s) => write!(f, "{s}"),
            WaitNode::Hook(h) => write!(f, "hook {h}"),
        }
    }
}

/// "X waits for Y" edges, each with the manifest path that declares it.
struct WaitGraph {
    edges: BTreeMap<WaitNode, Vec<(WaitNode, Vec<Owned>)>>,
}

impl WaitGraph {
    fn new(m: &Manifest) -> Self {
        let mut edges: BTreeMap<WaitNode, Vec<(WaitNode, Vec<Owned>)>> = BTreeMap::new();
        for (name, s) in &m.services {
            let from = WaitNode::Service(name.clone());
            let list = edges.entry(from).or_default();
            for (i, dep) in s.depends_on.iter().enumerate() {
                if m.services.contains_key(dep) && dep != name {
                    let path = vec![
                        key("services"),
                        key(name),
                        key("depends_on"),
                        Owned::Index(i),
                    ];
                    list.push((WaitNode::Service(dep.clone()), path));
                }
            }
        }
        for (name, h) in &m.hooks {
            let hook = WaitNode::Hook(name.clone());
            // A node of `after`/`before` that is declared (and not the hook itself).
            let node = |entry: &str| match WaitRef::parse(entry) {
                WaitRef::Service(s) if m.services.contains_key(s) => {
                    Some(WaitNode::Service(s.to_owned()))
                }
                WaitRef::Hook(other) if other != name && m.hooks.contains_key(other) => {
                    Some(WaitNode::Hook(other.to_owned()))
                }
                _ => None,
            };
            for (i, entry) in h.after.iter().enumerate() {
                if let Some(other) = node(entry) {
                    let path = vec![key("hooks"), key(name), key("after"), Owned::Index(i)];
                    edges.entry(hook.clone()).or_default().push((other, path));
                }
            }
            for (i, entry) in h.before.iter().enumerate() {
                if let Some(other) = node(entry) {
                    let path = vec![key("hooks"), key(name), key("before"), Owned::Index(i)];
                    edges.entry(other).or_default().push((hook.clone(), path));
                }
            }
        }
        Self { edges }
    }

    fn edge_path(&self, from: &WaitNode, to: &WaitNode) -> Vec<Owned> {
        self.edges
            .get(from)
            .and_then(|list| list.iter().find(|(n, _)| n == to))
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// Each elementary cycle found by depth-first search, once, starting at its smallest
    /// node and ending where it started (`a -> b -> a`).
    fn cycles(&self) -> Vec<Vec<WaitNode>> {
        let mut found: BTreeSet<Vec<WaitNode>> = BTreeSet::new();
        let mut done: BTreeSet<&WaitNode> = BTreeSet::new();
        for start in self.edges.keys() {
            let mut stack: Vec<&WaitNode> = Vec::new();
            self.dfs(start, &mut stack, &mut done, &mut found);
        }
        found.into_iter().collect()
    }

    fn dfs<'g>(
        &'g self,
        node: &'g WaitNode,
        stack: &mut Vec<&'g WaitNode>,
        done: &mut BTreeSet<&'g WaitNode>,
        found: &mut BTreeSet<Vec<WaitNode>>,
    ) {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let ring = &stack[at..];
            let min = ring
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map_or(0, |(i, _)| i);
            let mut cycle: Vec<WaitNode> = ring[min..]
                .iter()
                .chain(&ring[..min])
                .map(|n| (*n).clone())
                .collect();
            cycle.push(cycle[0].clone());
            found.insert(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node);
        for (next, _) in self.edges.get(node).into_iter().flatten() {
            self.dfs(next, stack, done, found);
        }
        stack.pop();
        done.insert(node);
    }
}

/// A diagnostic about the manifest at `path`, for other modules (e.g. resolution).
pub(crate) fn manifest_diag(m: &LoadedManifest, path: &[Seg<'_>], message: String) -> Diagnostic {
    let loc = Locator::new(&m.manifest.source_text);
    Source::new(&m.source_name, &m.manifest.source_text).diag(loc.value(path), message)
}

/// Where a template opens quotes of its own right before a `{{` (`'{{`, `"{{`).
fn own_quotes(text: &str) -> Option<usize> {
    text.match_indices("{{")
        .map(|(i, _)| i)
        .find(|&i| i > 0 && matches!(text.as_bytes()[i - 1], b'"' | b'\''))
        .map(|i| i - 1)
}

/// The setuid, setgid and sticky bits of a valid octal mode.
fn special_bits(mode: &str) -> u32 {
    u32::from_str_radix(mode, 8).unwrap_or(0) & 0o7000
}

/// A version usable as a directory name: `[A-Za-z0-9][A-Za-z0-9._+~-]*`, no `..`.
fn is_version(v: &str) -> bool {
    v.len() <= 64
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-'))
        && !v.contains("..")
}

/// A name used as a file name: `[A-Za-z0-9_][A-Za-z0-9_-]*`.
fn is_name(n: &str) -> bool {
    n.len() <= 64
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A POSIX-portable user name as `useradd` accepts it: `[a-z_][a-z0-9_-]{0,31}`
/// (so never an option such as `-o`).
/// Debian's rule for package names (policy 5.6.1).
fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// What an RPM package name holds.
fn is_rpm_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

pub(crate) fn is_user_name(n: &str) -> bool {
    n.len() <= 32
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A variable name as shells and `getenv` read it: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The first entry of a `PATH` value that is empty or relative. A value with a
/// template in it is checked once rendered (`berth-render`).
fn relative_path_entry(value: &str) -> Option<&str> {
    if value.contains("{{") || value.contains("{%") {
        return None;
    }
    value.split(':').find(|e| !e.starts_with('/'))
}

/// Three or four octal digits, at most `7777`.
fn is_octal_mode(mode: &str) -> bool {
    (3..=4).contains(&mode.len()) && u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::shell_script_index;

    fn index(argv: &[&str]) -> Option<usize> {
        let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
        shell_script_index(&argv)
    }

    #[test]
    fn finds_the_script_of_a_shell_dash_c() {
        assert_eq!(index(&["/bin/sh", "-c", "s"]), Some(2));
        assert_eq!(index(&["bash", "-euc", "s", "name", "arg"]), Some(2));
        assert_eq!(index(&["/usr/bin/dash", "-e", "-c", "s"]), Some(3));
        assert_eq!(index(&["sh", "-eo", "pipefail", "-c", "s"]), Some(4));
        assert_eq!(index(&["sh", "-c", "+o", "errexit", "s"]), Some(4));
        assert_eq!(index(&["bash", "--norc", "-c", "s"]), Some(3));
        assert_eq!(index(&["sh", "-c", "--", "s"]), Some(3));
        // A script file, not a script: its arguments are never parsed as shell.
        assert_eq!(index(&["/bin/sh", "/etc/x.sh", "-c"]), None);
        assert_eq!(index(&["/bin/sh", "-e", "/etc/x.sh"]), None);
        assert_eq!(index(&["/usr/bin/python3", "-c", "s"]), None);
        assert_eq!(index(&["sh", "-c"]), None);
        assert_eq!(index(&[]), None);
    }
}
