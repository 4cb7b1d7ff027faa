//! Snapshots of everything the example apps (`examples/netbox`, the reference app, and
//! `examples/mediawiki`) render to: a change to a manifest or its templates, or to the
//! renderer, shows up here as a diff.
//!
//! Every input is pinned: the facts (`Facts::fixture`, as root), the prefix, an empty
//! site config (so defaults and derived values), and secrets whose values name them
//! (`test-db_password`).

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{Facts, LoadedManifest, parse_site, resolve, validate};
use std::fmt::Write as _;

use berth_render::{
    DesiredState, Handover, Paths, RenderInput, beside_config, handover, render, secret_specs,
};

fn example(name: &str) -> LoadedManifest {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let m = LoadedManifest::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    m
}

/// `name` rendered for a root install under `/var/opt/berth/<name>`, each file as a
/// list of lines, so a change shows as the lines it changed.
fn rendered(name: &str) -> serde_json::Value {
    let m = example(name);
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let site = parse_site("site.toml", "", &m).unwrap_or_else(|d| panic!("{d}"));
    let config = resolve(&m, &site, &facts).unwrap_or_else(|d| panic!("{d}"));
    let state = render_as(&m, &config);
    let mut state = serde_json::to_value(&state).unwrap();
    for file in state["files"].as_array_mut().unwrap() {
        let content = file["content"].as_str().unwrap();
        file["content"] = content.lines().collect::<Vec<_>>().into();
    }
    state
}

/// `m` rendered with `config` for a root install, with the pinned facts and secrets.
fn render_as(m: &LoadedManifest, config: &berth_model::ResolvedConfig) -> DesiredState {
    let name = &m.manifest.app.name;
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let secrets: BTreeMap<String, String> =
        secret_specs(m, &facts, &berth_render::UserNames::shared())
            .into_iter()
            .map(|s| {
                let value = format!("test-{}", s.name);
                (s.name, value)
            })
            .collect();
    let prefix = Path::new("/var/opt/berth").join(name);
    let paths = Paths::for_prefix(&prefix, &m.manifest.app.version);
    render(&RenderInput {
        manifest: m,
        config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// NetBox's handover for an online upgrade: gunicorn started on the spare port with
/// the same arguments otherwise, and nginx.conf's upstream the one file that changes
/// (reloading nginx). The lines that differ are shown.
fn netbox_handover(site: &str) -> Result<Handover, String> {
    let m = example("netbox");
    let facts = Facts::fixture();
    let site = parse_site("site.toml", site, &m).unwrap_or_else(|d| panic!("{d}"));
    let config = resolve(&m, &site, &facts).unwrap_or_else(|d| panic!("{d}"));
    let normal = render_as(&m, &config);
    let beside = beside_config(&m.manifest, &config)?.expect("netbox declares `beside`");
    handover(&m.manifest, &normal, &render_as(&m, &beside))
}

#[test]
fn netbox_web_starts_beside_itself_on_its_spare_port() {
    let h = netbox_handover("").unwrap();
    let normal = {
        let m = example("netbox");
        let site = parse_site("site.toml", "", &m).unwrap();
        let config = resolve(&m, &site, &Facts::fixture()).unwrap();
        render_as(&m, &config)
    };
    let mut out = String::new();
    for s in &h.services {
        let _ = writeln!(
            out,
            "service {} as {} (drain {:?}, listen {:?})\n  argv: {}\n  readiness: {:?}\n  log: {}",
            s.name,
            s.spec.name,
            s.drain,
            s.listen,
            s.spec.argv.join(" "),
            s.spec.readiness,
            s.spec.log_dir.display()
        );
    }
    for f in &h.files {
        let usual = normal.files.iter().find(|u| u.path == f.path).unwrap();
        let _ = writeln!(out, "file {} (reloads {:?})", f.path.display(), f.reloads);
        for (a, b) in usual.content.lines().zip(f.content.lines()) {
            if a != b {
                let _ = writeln!(out, "  - {a}\n  + {b}");
            }
        }
    }
    let _ = writeln!(out, "reload {:?}", h.reload);
    insta::assert_snapshot!(out);
}

/// A spare port set to the port itself cannot start anything beside it.
#[test]
fn a_spare_port_equal_to_the_port_is_refused() {
    let why = netbox_handover("[web]\nport = 8005\nspare_port = 8005\n").unwrap_err();
    assert_eq!(
        why,
        "service `web` cannot start beside itself: `web.spare_port` and `web.port` are both 8005"
    );
}

/// A file that names the port but restarts a service (the old process would read it)
/// refuses the handover, saying which file: the services restart instead.
#[test]
fn a_file_that_names_the_port_and_restarts_refuses_the_handover() {
    let mut m = example("netbox");
    let facts = Facts::fixture();
    let site = parse_site("site.toml", "", &m).unwrap();
    let config = resolve(&m, &site, &facts).unwrap();
    let template = m
        .manifest
        .files
        .iter()
        .find(|f| f.path == "netbox/configuration.py")
        .unwrap()
        .template
        .clone();
    m.templates
        .get_mut(&template)
        .unwrap()
        .push_str("\nWEB_PORT = {{ settings.web.port }}\n");
    let normal = render_as(&m, &config);
    let beside = beside_config(&m.manifest, &config).unwrap().unwrap();
    let why = handover(&m.manifest, &normal, &render_as(&m, &beside)).unwrap_err();
    assert!(
        why.starts_with("`/var/opt/berth/netbox/etc/netbox/configuration.py` changes with a `beside` port and restarts"),
        "{why}"
    );
}

#[test]
fn renders_netbox_for_a_root_install() {
    insta::assert_yaml_snapshot!(rendered("netbox"));
}

#[test]
fn renders_mediawiki_for_a_root_install() {
    insta::assert_yaml_snapshot!(rendered("mediawiki"));
}
