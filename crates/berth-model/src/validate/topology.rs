//! `[roles]` and `[sizing]`, of a manifest or of a standalone catalog: references
//! between roles, services placed once, what each kind of availability needs, counts
//! that can be met, sizes that parse and tiers in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::locate::{Locator, Seg};
use crate::manifest::ServiceDecl;
use crate::span::Source;
use crate::suggest;
use crate::topology::{Engine, HaKind, LoadedCatalog, RoleDecl, SizingDecl};
use crate::value::{SIZE_HELP, parse_size};
use crate::{Diagnostics, LoadedManifest};

/// Checks the roles and sizing of a manifest (services must be the manifest's).
pub(crate) fn check_manifest(m: &LoadedManifest, diags: &mut Diagnostics) {
    let man = &m.manifest;
    let mut c = Check {
        roles: &man.roles,
        sizing: &man.sizing,
        services: Some(&man.services),
        manifest: Some(man),
        loc: Locator::new(&man.source_text),
        src: Source::new(&m.source_name, &man.source_text),
        diags,
    };
    c.run();
}

/// Checks a standalone catalog, which has no services.
pub(crate) fn check_catalog(c: &LoadedCatalog) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut check = Check {
        roles: &c.catalog.roles,
        sizing: &c.catalog.sizing,
        services: None,
        manifest: None,
        loc: Locator::new(&c.source_text),
        src: Source::new(&c.source_name, &c.source_text),
        diags: &mut diags,
    };
    check.run();
    if c.catalog.roles.is_empty() {
        let span = check.loc.key(&[Seg::Key("catalog")]);
        diags.push(
            Source::new(&c.source_name, &c.source_text)
                .diag(span, "the catalog declares no roles")
                .with_help("add a `[roles.<name>]` table for each kind of node its sizes use"),
        );
    }
    diags.into_result(())
}

struct Check<'a, 'd> {
    roles: &'a BTreeMap<String, RoleDecl>,
    sizing: &'a SizingDecl,
    services: Option<&'a BTreeMap<String, ServiceDecl>>,
    /// The manifest the roles are of (none for a catalog).
    manifest: Option<&'a crate::Manifest>,
    loc: Locator<'a>,
    src: Source<'a>,
    diags: &'d mut Diagnostics,
}

fn role_key<'k>(role: &'k str, key: &'k str) -> [Seg<'k>; 3] {
    [Seg::Key("roles"), Seg::Key(role), Seg::Key(key)]
}

/// `an odd number of nodes, at least 3` / `at least 2 nodes`.
fn needs(kind: HaKind, least: u32) -> String {
    if kind.needs_odd() {
        format!("an odd number of nodes, at least {least}")
    } else {
        format!("at least {least} nodes")
    }
}

const NEEDS_HELP: &str = "losing one node must leave the role working: two copies for \
     replicas and Patroni, a majority of an odd number (3, 5) for a vote";

/// `a/b.c`: no empty, `.`, `..` or hidden parts, nothing a template or a shell would read.
fn is_plain_relative(p: &str) -> bool {
    !p.is_empty()
        && p.split('/').all(|c| !c.is_empty() && !c.starts_with('.'))
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

fn is_role_name(n: &str) -> bool {
    n.len() <= 32
        && n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Check<'_, '_> {
    fn at_value(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let span = self.loc.value(path);
        self.diags
            .push(self.src.diag(span, message).with_help_opt(help));
    }

    fn at_key(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let span = self.loc.key(path);
        self.diags
            .push(self.src.diag(span, message).with_help_opt(help));
    }

    fn run(&mut self) {
        for (name, role) in self.roles {
            self.role(name, role);
        }
        self.services_placed();
        self.after_cycles();
        self.sizing();
    }

    fn role_ref(&mut self, path: &[Seg<'_>], from: &str, name: &str, what: &str) {
        if name == from {
            self.at_value(
                path,
                format!("role `{from}` names itself in `{what}`"),
                Some("name another role".to_owned()),
            );
        } else if !self.roles.contains_key(name) {
            let help = suggest::help(
                name,
                self.roles.keys().map(String::as_str),
                "declared roles",
            );
            self.at_value(
                path,
                format!(
                    "`roles.{from}.{what}` names role `{}`, which is not declared",
                    crate::shown(name)
                ),
                help,
            );
        }
    }

    #[allow(clippy::too_many_lines)] // one check after another, each a few lines
    fn role(&mut self, name: &str, role: &RoleDecl) {
        if !is_role_name(name) {
            self.at_key(
                &[Seg::Key("roles"), Seg::Key(name)],
                format!("`{}` cannot be a role name", crate::shown(name)),
                Some(
                    "use lowercase letters, digits and `-`, starting with a letter, at most 32 \
                     (role names go into site configs and node names)"
                        .to_owned(),
                ),
            );
        }
        if let Some(services) = self.services {
            for (i, s) in role.services.iter().enumerate() {
                if !services.contains_key(s) {
                    let help =
                        suggest::help(s, services.keys().map(String::as_str), "declared services");
                    self.at_value(
                        &[
                            Seg::Key("roles"),
                            Seg::Key(name),
                            Seg::Key("services"),
                            Seg::Index(i),
                        ],
                        format!(
                            "`roles.{name}.services` names service `{}`, which is not declared",
                            crate::shown(s)
                        ),
                        help,
                    );
                }
            }
        }
        let mut engines = BTreeSet::new();
        for (i, e) in role.engines.iter().enumerate() {
            if !engines.insert(*e) {
                self.at_value(
                    &[
                        Seg::Key("roles"),
                        Seg::Key(name),
                        Seg::Key("engines"),
                        Seg::Index(i),
                    ],
                    format!("`roles.{name}.engines` names `{}` twice", e.as_str()),
                    Some("name each engine once".to_owned()),
                );
            }
        }
        if role.services.is_empty() && role.engines.is_empty() && self.services.is_some() {
            self.at_key(
                &[Seg::Key("roles"), Seg::Key(name)],
                format!("role `{name}` runs nothing"),
                Some("give it `services` from `[services]`, or `engines` berth runs (etcd, pgbouncer, haproxy)".to_owned()),
            );
        }
        for (i, a) in role.after.iter().enumerate() {
            self.role_ref(
                &[
                    Seg::Key("roles"),
                    Seg::Key(name),
                    Seg::Key("after"),
                    Seg::Index(i),
                ],
                name,
                a,
                "after",
            );
        }
        if let Some(fronts) = &role.fronts {
            self.role_ref(&role_key(name, "fronts"), name, fronts, "fronts");
        }
        if let Some(with) = &role.with {
            self.role_ref(&role_key(name, "with"), name, with, "with");
            if let Some(host) = self.roles.get(with)
                && host.with.is_some()
            {
                self.at_value(
                    &role_key(name, "with"),
                    format!("`roles.{name}.with` names `{with}`, which is itself placed with another role"),
                    Some(format!("place `{name}` with the role `{with}` is placed with")),
                );
            }
            for (key, set) in [
                ("capacity_rps", role.capacity_rps.is_some()),
                ("fronts", role.fronts.is_some()),
                ("max", role.nodes.max.is_some()),
            ] {
                if set {
                    let path = if key == "max" {
                        vec![
                            Seg::Key("roles"),
                            Seg::Key(name),
                            Seg::Key("nodes"),
                            Seg::Key("max"),
                        ]
                    } else {
                        role_key(name, key).to_vec()
                    };
                    self.at_key(
                        &path,
                        format!("role `{name}` is placed with `{with}`, so it cannot have its own `{key}`"),
                        Some(format!("it has as many nodes as `{with}`: leave `{key}` out")),
                    );
                }
            }
        }
        self.counts(name, role);
        if role.capacity_rps == Some(0) {
            self.at_value(
                &role_key(name, "capacity_rps"),
                format!("`roles.{name}.capacity_rps` is 0"),
                Some("give the requests per second one node carries, or leave it out for a role that does not grow with load".to_owned()),
            );
        }
        if role.cpus == Some(0) {
            self.at_value(
                &role_key(name, "cpus"),
                format!("`roles.{name}.cpus` is 0"),
                Some("give at least 1, or leave it out".to_owned()),
            );
        }
        if let Some(memory) = &role.memory {
            self.size(&role_key(name, "memory"), memory);
        }
        self.ha_needs(name, role);
    }

    fn counts(&mut self, name: &str, role: &RoleDecl) {
        let n = role.nodes;
        let at = |k| {
            [
                Seg::Key("roles"),
                Seg::Key(name),
                Seg::Key("nodes"),
                Seg::Key(k),
            ]
        };
        if let Some(max) = n.max
            && max < n.min.max(1)
        {
            self.at_value(
                &at("max"),
                format!(
                    "`roles.{name}.nodes.max` ({max}) is below `min` ({})",
                    n.min.max(1)
                ),
                Some("the most nodes is at least the fewest".to_owned()),
            );
        }
        let Some(ha) = n.ha else { return };
        if role.ha == HaKind::None {
            self.at_key(
                &at("ha"),
                format!("role `{name}` has `nodes.ha` but `ha = \"none\"`"),
                Some("say how it is made highly available (`replicas`, `patroni`, `sentinel`, `quorum`), or leave `nodes.ha` out".to_owned()),
            );
            return;
        }
        let least = role.ha.least_nodes();
        if ha < least || (role.ha.needs_odd() && ha % 2 == 0) {
            self.at_value(
                &at("ha"),
                format!(
                    "`roles.{name}.nodes.ha` is {ha}, but `ha = \"{}\"` needs {}",
                    role.ha.as_str(),
                    needs(role.ha, least)
                ),
                Some(NEEDS_HELP.to_owned()),
            );
        }
        if ha < n.min {
            self.at_value(
                &at("ha"),
                format!("`roles.{name}.nodes.ha` ({ha}) is below `min` ({})", n.min),
                Some("the highly available count is at least the fewest".to_owned()),
            );
        }
        if let Some(max) = n.max
            && ha > max
        {
            self.at_value(
                &at("ha"),
                format!("`roles.{name}.nodes.ha` ({ha}) is above `max` ({max})"),
                Some("raise `max` or lower `ha`".to_owned()),
            );
        }
    }

    /// What each kind of availability needs from the rest of the roles.
    fn ha_needs(&mut self, name: &str, role: &RoleDecl) {
        // A catalog only describes nodes; engines matter where berth runs them.
        if self.services.is_none() {
            return;
        }
        let at = role_key(name, "ha");
        match role.ha {
            HaKind::Patroni => {
                let has_etcd = self
                    .roles
                    .values()
                    .any(|r| r.engines.contains(&Engine::Etcd));
                if !has_etcd {
                    self.at_value(
                        &at,
                        format!("role `{name}` is made highly available by Patroni, but no role runs etcd"),
                        Some("add a role with `engines = [\"etcd\"]` and `ha = \"quorum\"` (it may be placed `with` this one), and put it in this role's `after`".to_owned()),
                    );
                }
                if role.services.len() != 1 {
                    self.at_value(
                        &at,
                        format!("role `{name}` is made highly available by Patroni, so it runs exactly one service (PostgreSQL)"),
                        Some("move its other services to a role of their own".to_owned()),
                    );
                }
            }
            HaKind::Sentinel => {
                if role.services.len() != 1 {
                    self.at_value(
                        &at,
                        format!("role `{name}` is made highly available by Sentinel, so it runs exactly one service (Redis)"),
                        Some("move its other services to a role of their own".to_owned()),
                    );
                }
            }
            HaKind::Quorum => {
                if !role.engines.contains(&Engine::Etcd) {
                    self.at_value(
                        &at,
                        format!("role `{name}` has `ha = \"quorum\"`, which is for the consensus store"),
                        Some("give it `engines = [\"etcd\"]`, or choose `replicas` for stateless nodes".to_owned()),
                    );
                }
            }
            HaKind::None | HaKind::Replicas => {}
        }
        self.patroni(name, role);
        self.sentinel(name, role);
        if role.engines.contains(&Engine::Pgbouncer)
            && !self.roles.values().any(|r| r.patroni.is_some())
        {
            self.at_value(
                &role_key(name, "engines"),
                format!("role `{name}` runs PgBouncer, which pools connections to PostgreSQL under Patroni, but no role declares one"),
                Some("give the database role `ha = \"patroni\"` and a `[roles.<name>.patroni]` table".to_owned()),
            );
        }
        if role.engines.contains(&Engine::Etcd) && role.ha != HaKind::Quorum {
            self.at_value(
                &at,
                format!("role `{name}` runs etcd, which is made highly available by a quorum"),
                Some("write `ha = \"quorum\"` and `nodes = { min = 0, ha = 3 }`".to_owned()),
            );
        }
    }

    /// `[roles.<name>.patroni]`: present exactly with `ha = "patroni"`, naming a
    /// plain directory, files the manifest renders, a port setting and its hooks.
    fn patroni(&mut self, name: &str, role: &RoleDecl) {
        let Some(m) = self.manifest else {
            return;
        };
        let Some(p) = &role.patroni else {
            if role.ha == HaKind::Patroni {
                self.at_value(
                    &role_key(name, "ha"),
                    format!("role `{name}` is made highly available by Patroni, but says nothing of its PostgreSQL"),
                    Some(format!("add `[roles.{name}.patroni]` with `bin_dir`, `data_dir`, `port`, `config_file` and `hba_file` (docs/fleet.md)")),
                );
            }
            return;
        };
        let at = |key: &'static str| -> [Seg<'_>; 4] {
            [
                Seg::Key("roles"),
                Seg::Key(name),
                Seg::Key("patroni"),
                Seg::Key(key),
            ]
        };
        if role.ha != HaKind::Patroni {
            self.at_key(
                &role_key(name, "patroni"),
                format!("role `{name}` declares `patroni` but is not made highly available by it"),
                Some("write `ha = \"patroni\"`, or remove the table".to_owned()),
            );
        }
        if !is_plain_relative(&p.data_dir) {
            self.at_value(
                &at("data_dir"),
                format!("`roles.{name}.patroni.data_dir` (`{}`) is not a plain relative path", crate::shown(&p.data_dir)),
                Some("a directory under the instance's data directory, such as `\"postgresql/main\"`".to_owned()),
            );
        }
        if !p.bin_dir.starts_with('/') || !is_plain_relative(&p.bin_dir[1..]) {
            self.at_value(
                &at("bin_dir"),
                format!("`roles.{name}.patroni.bin_dir` (`{}`) is not a plain absolute path", crate::shown(&p.bin_dir)),
                Some("where the PostgreSQL package puts its binaries, such as `\"/usr/lib/postgresql/15/bin\"`".to_owned()),
            );
        }
        let files: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        for (key, path) in [("config_file", &p.config_file), ("hba_file", &p.hba_file)] {
            if !files.contains(&path.as_str()) {
                let help = suggest::help(path, files.iter().copied(), "files the manifest renders");
                self.at_value(
                    &at(key),
                    format!(
                        "`roles.{name}.patroni.{key}` names `{}`, which no `[[files]]` renders",
                        crate::shown(path)
                    ),
                    help.or_else(|| {
                        Some("give the `path` of one of the manifest's `[[files]]`".to_owned())
                    }),
                );
            }
        }
        self.port_setting(
            m,
            &at("port"),
            &format!("roles.{name}.patroni.port"),
            &p.port,
            "PostgreSQL",
        );
        for hook in &p.bootstrap_hooks {
            if !m.hooks.contains_key(hook) {
                let help =
                    suggest::help(hook, m.hooks.keys().map(String::as_str), "declared hooks");
                self.at_value(
                    &at("bootstrap_hooks"),
                    format!("`roles.{name}.patroni.bootstrap_hooks` names hook `{}`, which is not declared", crate::shown(hook)),
                    help,
                );
            }
        }
    }

    /// `[roles.<name>.sentinel]`: present exactly with `ha = "sentinel"`, naming a port
    /// setting, a file the manifest renders and a secret.
    fn sentinel(&mut self, name: &str, role: &RoleDecl) {
        let Some(m) = self.manifest else {
            return;
        };
        let Some(d) = &role.sentinel else {
            if role.ha == HaKind::Sentinel {
                self.at_value(
                    &role_key(name, "ha"),
                    format!("role `{name}` is made highly available by Sentinel, but says nothing of its Redis"),
                    Some(format!("add `[roles.{name}.sentinel]` with `port`, `config_file` and `password` (docs/topology.md)")),
                );
            }
            return;
        };
        let at = |key: &'static str| -> [Seg<'_>; 4] {
            [
                Seg::Key("roles"),
                Seg::Key(name),
                Seg::Key("sentinel"),
                Seg::Key(key),
            ]
        };
        if role.ha != HaKind::Sentinel {
            self.at_key(
                &role_key(name, "sentinel"),
                format!("role `{name}` declares `sentinel` but is not made highly available by it"),
                Some("write `ha = \"sentinel\"`, or remove the table".to_owned()),
            );
        }
        let files: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        if !files.contains(&d.config_file.as_str()) {
            let help = suggest::help(
                &d.config_file,
                files.iter().copied(),
                "files the manifest renders",
            );
            self.at_value(
                &at("config_file"),
                format!(
                    "`roles.{name}.sentinel.config_file` names `{}`, which no `[[files]]` renders",
                    crate::shown(&d.config_file)
                ),
                help.or_else(|| {
                    Some("give the `path` of one of the manifest's `[[files]]`".to_owned())
                }),
            );
        }
        self.port_setting(
            m,
            &at("port"),
            &format!("roles.{name}.sentinel.port"),
            &d.port,
            "Redis",
        );
        if !m.secrets.contains_key(&d.password) {
            let help = suggest::help(
                &d.password,
                m.secrets.keys().map(String::as_str),
                "declared secrets",
            );
            self.at_value(
                &at("password"),
                format!(
                    "`roles.{name}.sentinel.password` names secret `{}`, which is not declared",
                    crate::shown(&d.password)
                ),
                help.or_else(|| {
                    Some("name the secret the app's redis.conf gives `requirepass`".to_owned())
                }),
            );
        }
    }

    /// `setting` names a setting of type `port`.
    fn port_setting(
        &mut self,
        m: &crate::Manifest,
        at: &[Seg<'_>],
        key: &str,
        setting: &str,
        what: &str,
    ) {
        let port = setting
            .split_once('.')
            .and_then(|(g, k)| m.settings.get(g)?.get(k));
        if port.is_some_and(|s| s.kind == crate::manifest::SettingType::Port) {
            return;
        }
        let names: Vec<String> = m
            .settings
            .iter()
            .flat_map(|(g, ks)| ks.keys().map(move |k| format!("{g}.{k}")))
            .collect();
        let help = suggest::help(
            setting,
            names.iter().map(String::as_str),
            "declared settings",
        );
        self.at_value(
            at,
            format!(
                "`{key}` names `{}`, which is not a setting of type `port`",
                crate::shown(setting)
            ),
            help.or_else(|| {
                Some(format!(
                    "name the setting holding {what}'s port, such as `\"{}.port\"`",
                    what.to_lowercase()
                ))
            }),
        );
    }

    /// Every service in exactly one role, once a manifest declares roles at all.
    fn services_placed(&mut self) {
        let Some(services) = self.services else {
            return;
        };
        if self.roles.is_empty() {
            return;
        }
        let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, role) in self.roles {
            for (i, s) in role.services.iter().enumerate() {
                if let Some(first) = placed.insert(s, name) {
                    self.at_value(
                        &[Seg::Key("roles"), Seg::Key(name), Seg::Key("services"), Seg::Index(i)],
                        format!("service `{s}` is in role `{first}` and in role `{name}`"),
                        Some("a service runs in one role; place the roles together with `with` instead".to_owned()),
                    );
                }
            }
        }
        for s in services.keys() {
            if !placed.contains_key(s.as_str()) {
                self.at_key(
                    &[Seg::Key("services"), Seg::Key(s)],
                    format!("service `{s}` is in no role"),
                    Some("add it to the `services` of one `[roles.<name>]`, or no node of a fleet runs it".to_owned()),
                );
            }
        }
    }

    /// `after` (and `with`, which brings a role up with its host) without a circle.
    fn after_cycles(&mut self) {
        let names: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        for start in names {
            let mut stack = vec![(start, 0usize)];
            let mut path = vec![start];
            if state.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            state.insert(start, 1);
            while let Some((node, i)) = stack.pop() {
                let Some(role) = self.roles.get(node) else {
                    continue;
                };
                if let Some(next) = role.after.get(i) {
                    stack.push((node, i + 1));
                    let next = next.as_str();
                    // Naming itself is reported on its own (`role_ref`).
                    if next == node || !self.roles.contains_key(next) {
                        continue;
                    }
                    match state.get(next).copied().unwrap_or(0) {
                        0 => {
                            state.insert(next, 1);
                            path.push(next);
                            stack.push((next, 0));
                        }
                        1 => {
                            let from = path.iter().position(|p| *p == next).unwrap_or(0);
                            let mut circle: Vec<&str> = path[from..].to_vec();
                            circle.push(next);
                            if reported.insert(circle.iter().min().copied().unwrap_or(next)) {
                                self.at_value(
                                    &[
                                        Seg::Key("roles"),
                                        Seg::Key(node),
                                        Seg::Key("after"),
                                        Seg::Index(i),
                                    ],
                                    format!(
                                        "roles wait for each other in a circle: {}",
                                        circle.join(" → ")
                                    ),
                                    Some("remove one of these `after` entries".to_owned()),
                                );
                            }
                        }
                        _ => {}
                    }
                } else {
                    state.insert(node, 2);
                    path.pop();
                }
            }
        }
    }

    fn size(&mut self, path: &[Seg<'_>], s: &str) {
        match parse_size(s) {
            Ok(n) if n > 0 => {}
            Ok(_) => self.at_value(
                path,
                "the memory is 0".to_owned(),
                Some("give the memory one node needs".to_owned()),
            ),
            Err(why) => self.at_value(
                path,
                format!("`{}` is not a size: {why}", crate::shown(s)),
                Some(SIZE_HELP.to_owned()),
            ),
        }
    }

    fn sizing(&mut self) {
        let s = self.sizing;
        if s.users_per_rps == Some(0) {
            self.at_value(
                &[Seg::Key("sizing"), Seg::Key("users_per_rps")],
                "`sizing.users_per_rps` is 0".to_owned(),
                Some("give how many users make one request per second at peak, e.g. 50".to_owned()),
            );
        }
        if let Some(single) = &s.single_node {
            let at = |k| [Seg::Key("sizing"), Seg::Key("single_node"), Seg::Key(k)];
            if single.max_rps == 0 {
                self.at_value(
                    &at("max_rps"),
                    "`sizing.single_node.max_rps` is 0".to_owned(),
                    Some("give the most requests per second one node carries".to_owned()),
                );
            }
            if single.cpus == 0 {
                self.at_value(
                    &at("cpus"),
                    "`sizing.single_node.cpus` is 0".to_owned(),
                    Some("give at least 1".to_owned()),
                );
            }
            self.size(&at("memory"), &single.memory);
        }
        let mut names = BTreeSet::new();
        let mut previous: Option<(u32, &str)> = None;
        for (i, tier) in s.tiers.iter().enumerate() {
            let at = |k| {
                [
                    Seg::Key("sizing"),
                    Seg::Key("tiers"),
                    Seg::Index(i),
                    Seg::Key(k),
                ]
            };
            if !names.insert(tier.name.as_str()) {
                self.at_value(
                    &at("name"),
                    format!("two tiers are named `{}`", crate::shown(&tier.name)),
                    Some("give each tier its own name".to_owned()),
                );
            }
            if let Some((rps, name)) = previous
                && tier.rps <= rps
            {
                self.at_value(
                    &at("rps"),
                    format!(
                        "tier `{}` carries {} RPS, not more than `{name}` before it ({rps})",
                        crate::shown(&tier.name),
                        tier.rps
                    ),
                    Some("list tiers from the smallest load to the largest".to_owned()),
                );
            }
            previous = Some((tier.rps, &tier.name));
            if tier.rps == 0 {
                self.at_value(
                    &at("rps"),
                    format!("tier `{}` carries 0 RPS", crate::shown(&tier.name)),
                    Some("give the peak requests per second it was sized for".to_owned()),
                );
            }
            match (&tier.single_node, tier.roles.is_empty()) {
                (Some(node), true) => {
                    let p = [Seg::Key("sizing"), Seg::Key("tiers"), Seg::Index(i), Seg::Key("single_node"), Seg::Key("memory")];
                    self.size(&p, &node.memory);
                }
                (None, false) => self.tier_roles(i, tier),
                (Some(_), false) => self.at_key(
                    &at("single_node"),
                    format!("tier `{}` has both `single_node` and `roles`", crate::shown(&tier.name)),
                    Some("a tier is one node running every role, or nodes per role: keep one".to_owned()),
                ),
                (None, true) => self.at_value(
                    &at("name"),
                    format!("tier `{}` has no nodes", crate::shown(&tier.name)),
                    Some("give `single_node = { cpus, memory }` or `roles.<name> = { nodes, cpus, memory }`".to_owned()),
                ),
            }
        }
    }

    fn tier_roles(&mut self, i: usize, tier: &crate::topology::TierDecl) {
        for (role, spec) in &tier.roles {
            let at = |k| {
                [
                    Seg::Key("sizing"),
                    Seg::Key("tiers"),
                    Seg::Index(i),
                    Seg::Key("roles"),
                    Seg::Key(role),
                    Seg::Key(k),
                ]
            };
            let Some(decl) = self.roles.get(role) else {
                let help = suggest::help(
                    role,
                    self.roles.keys().map(String::as_str),
                    "declared roles",
                );
                self.at_key(
                    &[
                        Seg::Key("sizing"),
                        Seg::Key("tiers"),
                        Seg::Index(i),
                        Seg::Key("roles"),
                        Seg::Key(role),
                    ],
                    format!(
                        "tier `{}` sizes role `{}`, which is not declared",
                        crate::shown(&tier.name),
                        crate::shown(role)
                    ),
                    help,
                );
                continue;
            };
            self.size(&at("memory"), &spec.memory);
            if spec.cpus == 0 {
                self.at_value(
                    &at("cpus"),
                    format!("tier `{}`: `{role}` has 0 CPUs", crate::shown(&tier.name)),
                    Some("give at least 1".to_owned()),
                );
            }
            if decl.with.is_some() {
                self.at_key(
                    &at("nodes"),
                    format!(
                        "tier `{}` gives nodes to `{role}`, which is placed with another role",
                        crate::shown(&tier.name)
                    ),
                    Some("size the role it is placed with instead".to_owned()),
                );
            }
            if tier.ha && decl.ha != HaKind::None {
                let least = decl.nodes.ha.unwrap_or(decl.ha.least_nodes());
                if spec.nodes < least || (decl.ha.needs_odd() && spec.nodes % 2 == 0) {
                    self.at_value(
                        &at("nodes"),
                        format!(
                            "tier `{}` is highly available but gives `{role}` {} node(s); `ha = \"{}\"` needs {}",
                            crate::shown(&tier.name),
                            spec.nodes,
                            decl.ha.as_str(),
                            needs(decl.ha, least)
                        ),
                        Some("give it that many, or mark the tier `ha = false`".to_owned()),
                    );
                }
            }
        }
    }
}
