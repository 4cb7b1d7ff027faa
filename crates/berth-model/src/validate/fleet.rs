//! A fleet file against the app: names and addresses (each address once: a node is
//! one machine), SSH settings that cannot be read as options, the key files, roles
//! that exist and sit with their hosts, every role that runs services taken by some
//! node, counts each role's kind of availability can work with, and the shared site
//! config (checked as any site config, without the keys berth writes per node).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::fleet::LoadedFleet;
use crate::locate::{Locator, Seg};
use crate::span::Source;
use crate::suggest;
use crate::topology::HaKind;
use crate::value::parse_duration;
use crate::{Diagnostics, LoadedManifest};

/// Checks `f` against `m`; the shared site config's text when everything holds.
pub(crate) fn check(f: &LoadedFleet, m: &LoadedManifest) -> Result<String, Diagnostics> {
    let mut c = Check {
        f,
        m,
        loc: Locator::new(&f.source_text),
        src: Source::new(&f.source_name, &f.source_text),
        diags: Diagnostics::default(),
    };
    c.meta();
    c.files();
    c.nodes();
    c.roles();
    let site = c.site();
    c.node_settings();
    c.diags.into_result(site)
}

struct Check<'a> {
    f: &'a LoadedFleet,
    m: &'a LoadedManifest,
    loc: Locator<'a>,
    src: Source<'a>,
    diags: Diagnostics,
}

/// A DNS name as `ssh` should get it: dot-separated labels of letters, digits and
/// `-`, none starting with `-` (so never read as an option).
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_node_name(n: &str) -> bool {
    n.len() <= 48
        && n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Check<'_> {
    fn at_value(&mut self, path: &[Seg<'_>], message: String, help: &str) {
        let span = self.loc.value(path);
        self.diags
            .push(self.src.diag(span, message).with_help(help));
    }

    fn at_key(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let span = self.loc.key(path);
        self.diags
            .push(self.src.diag(span, message).with_help_opt(help));
    }

    fn meta(&mut self) {
        let meta = &self.f.fleet.fleet;
        let at = |k| [Seg::Key("fleet"), Seg::Key(k)];
        if !crate::is_instance_name(&meta.name) {
            self.at_value(
                &at("name"),
                format!("`{}` cannot be a fleet name", crate::shown(&meta.name)),
                "use lowercase letters, digits and `-`, starting with a letter (at most 31)",
            );
        }
        if !super::is_user_name(&meta.user) {
            self.at_value(
                &at("user"),
                format!("`{}` is not a user name", crate::shown(&meta.user)),
                "write the user berth logs in as, e.g. `root`",
            );
        }
        if !meta.berth.starts_with('/') || meta.berth.chars().any(|c| c.is_control() || c == ' ') {
            self.at_value(
                &at("berth"),
                format!("`{}` is not an absolute path", crate::shown(&meta.berth)),
                "write where berth is on every node, e.g. `/usr/local/bin/berth`",
            );
        }
        if let Some(prefix) = &meta.prefix
            && let Err(d) = crate::check_prefix(std::path::Path::new(prefix))
        {
            let why = d.0.first().map(|d| d.message.clone()).unwrap_or_default();
            self.at_value(
                &at("prefix"),
                format!(
                    "`{}` cannot be the instance's prefix: {why}",
                    crate::shown(prefix)
                ),
                "write an absolute path of letters, digits and `._/+-`, e.g. `/var/opt/berth/app`",
            );
        }
        match parse_duration(&meta.connect_timeout) {
            Ok(d) if d.as_secs() >= 1 && d.as_secs() <= 300 => {}
            _ => self.at_value(
                &at("connect_timeout"),
                format!(
                    "`{}` is not a timeout from 1s to 5m",
                    crate::shown(&meta.connect_timeout)
                ),
                "write e.g. `5s` or `30s`",
            ),
        }
    }

    /// The key files exist: a missing one would only show up as an SSH failure.
    fn files(&mut self) {
        let meta = &self.f.fleet.fleet;
        for (key, rel, what) in [
            ("identity", &meta.identity, "the SSH private key"),
            ("known_hosts", &meta.known_hosts, "the nodes' host keys"),
        ] {
            let path = self.f.path(rel);
            let plain = crate::load::relative_inside(rel).is_ok() || rel.starts_with('/');
            if !plain || !path.is_file() {
                self.at_value(
                    &[Seg::Key("fleet"), Seg::Key(key)],
                    format!("`{}` is not a file ({what})", path.display()),
                    match key {
                        "identity" => "give the private key berth logs in with, relative to the fleet file (`ssh-keygen -t ed25519 -f id_ed25519`)",
                        _ => "give an OpenSSH known_hosts file with every node's host key, relative to the fleet file (`ssh-keyscan` output checked against each node, or the keys copied from the nodes)",
                    },
                );
            }
        }
    }

    fn nodes(&mut self) {
        let nodes = &self.f.fleet.nodes;
        if nodes.is_empty() {
            let span = self.loc.key(&[Seg::Key("fleet")]);
            self.diags
                .push(self.src.diag(span, "the fleet has no nodes").with_help(
                    "add a `[nodes.<name>]` table with `address` and `roles` for each machine",
                ));
        }
        let mut seen: BTreeMap<(String, u16), &str> = BTreeMap::new();
        for (name, node) in nodes {
            let at = |k| [Seg::Key("nodes"), Seg::Key(name), Seg::Key(k)];
            if !is_node_name(name) {
                self.at_key(
                    &[Seg::Key("nodes"), Seg::Key(name)],
                    format!("`{}` cannot be a node name", crate::shown(name)),
                    Some("use lowercase letters, digits and `-`, starting with a letter (at most 48)".to_owned()),
                );
            }
            let addr = node.address.to_ascii_lowercase();
            let canonical = match addr.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) if is_host_name(&addr) => addr.clone(),
                Err(_) => {
                    self.at_value(
                        &at("address"),
                        format!("`{}` is not an IP address or a host name", crate::shown(&node.address)),
                        "write the address the other nodes and berth reach it at, e.g. `10.0.0.11` or `db1.example.net`",
                    );
                    continue;
                }
            };
            if let Some(first) = seen.insert((canonical.clone(), node.ssh_port), name) {
                self.at_value(
                    &at("address"),
                    format!("nodes `{first}` and `{name}` have the same address `{canonical}`"),
                    "each node is one machine: give each its own address (two roles on one machine are two entries in its `roles`)",
                );
            }
            if let Some(prefix) = &node.prefix
                && let Err(d) = crate::check_prefix(std::path::Path::new(prefix))
            {
                let why = d.0.first().map(|d| d.message.clone()).unwrap_or_default();
                self.at_value(
                    &at("prefix"),
                    format!("`{}` cannot be the instance's prefix: {why}", crate::shown(prefix)),
                    "write an absolute path of letters, digits and `._/+-`, e.g. `/var/opt/berth/app`",
                );
            }
            if node.ssh_port == 0 {
                self.at_value(
                    &at("ssh_port"),
                    "the SSH port is 0".to_owned(),
                    "leave it out for 22, or give the port its sshd listens on",
                );
            }
        }
    }

    /// Each node's roles, and every role's nodes against its kind of availability.
    #[allow(clippy::too_many_lines)] // one check after another
    fn roles(&mut self) {
        let declared = &self.m.manifest.roles;
        if declared.is_empty() {
            let span = self.loc.key(&[Seg::Key("nodes")]);
            self.diags.push(
                self.src
                    .diag(
                        span,
                        format!(
                            "`{}` declares no roles, so it cannot be spread over nodes",
                            self.m.manifest.app.name
                        ),
                    )
                    .with_help("the manifest's vendor declares `[roles]` (docs/topology.md)"),
            );
            return;
        }
        let mut count: BTreeMap<&str, u32> = BTreeMap::new();
        for (name, node) in &self.f.fleet.nodes {
            if node.roles.is_empty() {
                self.at_value(
                    &[Seg::Key("nodes"), Seg::Key(name), Seg::Key("roles")],
                    format!("node `{name}` takes no role"),
                    "list the roles it takes, or remove the node",
                );
            }
            let mut mine = BTreeSet::new();
            for (i, role) in node.roles.iter().enumerate() {
                let at = [
                    Seg::Key("nodes"),
                    Seg::Key(name),
                    Seg::Key("roles"),
                    Seg::Index(i),
                ];
                if !declared.contains_key(role) {
                    let help = suggest::help(role, declared.keys().map(String::as_str), "roles");
                    let span = self.loc.value(&at);
                    self.diags.push(
                        self.src
                            .diag(span, format!("unknown role `{}`", crate::shown(role)))
                            .with_help_opt(help),
                    );
                } else if !mine.insert(role.as_str()) {
                    self.at_value(
                        &at,
                        format!("node `{name}` lists role `{role}` twice"),
                        "list each role once",
                    );
                } else {
                    *count.entry(role.as_str()).or_default() += 1;
                }
            }
            for role in &mine {
                if let Some(host) = &declared[*role].with
                    && !mine.contains(host.as_str())
                {
                    self.at_value(
                        &[Seg::Key("nodes"), Seg::Key(name), Seg::Key("roles")],
                        format!("role `{role}` runs on the nodes of `{host}`, which node `{name}` does not take"),
                        &format!("add `{host}` to its roles, or leave `{role}` out"),
                    );
                }
            }
        }
        let fleet_span = self.loc.key(&[Seg::Key("fleet")]);
        let whole = |diags: &mut Diagnostics, message: String, help: String| {
            diags.push(self.src.diag(fleet_span.clone(), message).with_help(help));
        };
        for (role, decl) in declared {
            let n = count.get(role.as_str()).copied().unwrap_or(0);
            if n == 0 && !decl.services.is_empty() {
                whole(
                    &mut self.diags,
                    format!(
                        "no node takes role `{role}`, so its services ({}) run nowhere",
                        decl.services.join(", ")
                    ),
                    format!("add `{role}` to the roles of a node"),
                );
            }
            if n > 1 {
                let odd_needed = decl.ha.needs_odd() && n % 2 == 0;
                if odd_needed {
                    whole(
                        &mut self.diags,
                        format!(
                            "role `{role}` is on {n} nodes; `ha = \"{}\"` needs an odd number (a majority must survive)",
                            decl.ha.as_str()
                        ),
                        format!("put `{role}` on {} or {} nodes", n - 1, n + 1),
                    );
                } else if decl.ha == HaKind::Sentinel && n < 3 {
                    whole(
                        &mut self.diags,
                        format!(
                            "role `{role}` is on {n} nodes; Sentinel needs at least 3 to elect a new master"
                        ),
                        format!("put `{role}` on 1 node, or on 3"),
                    );
                }
                if decl.ha == HaKind::Patroni {
                    let etcd: Vec<&str> = declared
                        .iter()
                        .filter(|(_, r)| r.engines.contains(&crate::topology::Engine::Etcd))
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let members: u32 = etcd
                        .iter()
                        .map(|r| count.get(r).copied().unwrap_or(0))
                        .sum();
                    if members < 3 || members.is_multiple_of(2) {
                        whole(
                            &mut self.diags,
                            format!(
                                "role `{role}` is on {n} nodes, so Patroni elects its leader in etcd, which is on {members} node(s)",
                            ),
                            format!(
                                "put {} on an odd number of nodes, at least 3",
                                suggest::backticked(etcd.iter().copied())
                            ),
                        );
                    }
                }
            }
            if let Some(front) = &decl.fronts
                && count.get(front.as_str()).copied().unwrap_or(0) > 1
                && n == 0
            {
                let behind = count[front.as_str()];
                whole(
                    &mut self.diags,
                    format!(
                        "{behind} nodes take `{front}` and none takes `{role}`, which spreads requests over them"
                    ),
                    format!("add `{role}` to the roles of a node"),
                );
            }
        }
    }

    /// Each node's own settings: settings groups of the manifest (berth's own
    /// included), checked as a site config would be.
    fn node_settings(&mut self) {
        for (name, node) in &self.f.fleet.nodes {
            if node.settings.is_empty() {
                continue;
            }
            let at = [Seg::Key("nodes"), Seg::Key(name), Seg::Key("settings")];
            let is_group = |v: &toml::Value| v.is_table();
            if let Some((key, _)) = node.settings.iter().find(|(_, v)| !is_group(v)) {
                self.at_key(
                    &at,
                    format!("`nodes.{name}.settings.{key}` is not a settings group"),
                    Some("give settings by group: `[nodes.<name>.settings.<group>]` with `<key> = <value>`".to_owned()),
                );
                continue;
            }
            let text = toml::to_string(&node.settings).unwrap_or_default();
            let label = format!("{} (nodes.{name}.settings)", self.f.source_name);
            if let Err(d) = crate::parse_site(&label, &text, self.m) {
                self.diags.0.extend(d.0);
            }
        }
    }

    /// The shared site config, checked against the manifest; it leaves `roles` and
    /// `[fleet]` to berth, which writes them for each node.
    fn site(&mut self) -> String {
        let Some(rel) = &self.f.fleet.fleet.site else {
            return String::new();
        };
        let path = self.f.path(rel);
        let text = match crate::read_input(
            &path,
            "the fleet's site config",
            "give the site config every node starts from, relative to the fleet file",
        ) {
            Ok(t) => t,
            Err(e) => {
                self.diags.0.extend(e.into_diagnostics().0);
                return String::new();
            }
        };
        let name = path.display().to_string();
        match crate::parse_site(&name, &text, self.m) {
            Ok(site) => {
                if let Some(roles) = &site.roles {
                    self.diags.push(
                        Source::new(&name, &text)
                            .diag(
                                Some(roles.span()),
                                "`roles` is written by berth for each node from the fleet file",
                            )
                            .with_help(
                                "remove it here; give each node its roles in the fleet file",
                            ),
                    );
                }
            }
            Err(d) => self.diags.0.extend(d.0),
        }
        text
    }
}
