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
use berth_render::{Paths, RenderInput, render, secret_specs};

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
    let secrets: BTreeMap<String, String> =
        secret_specs(&m, &facts, &berth_render::UserNames::shared())
            .into_iter()
            .map(|s| {
                let value = format!("test-{}", s.name);
                (s.name, value)
            })
            .collect();
    let prefix = Path::new("/var/opt/berth").join(name);
    let paths = Paths::for_prefix(&prefix, &m.manifest.app.version);
    let state = render(&RenderInput {
        manifest: &m,
        config: &config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut state = serde_json::to_value(&state).unwrap();
    for file in state["files"].as_array_mut().unwrap() {
        let content = file["content"].as_str().unwrap();
        file["content"] = content.lines().collect::<Vec<_>>().into();
    }
    state
}

#[test]
fn renders_netbox_for_a_root_install() {
    insta::assert_yaml_snapshot!(rendered("netbox"));
}

#[test]
fn renders_mediawiki_for_a_root_install() {
    insta::assert_yaml_snapshot!(rendered("mediawiki"));
}
