//! Snapshot tests of the renderer on a small fixture manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_model::{
    Facts, LoadedManifest, Manifest, Origin, Resolved, ResolvedConfig, SettingValue,
};
use berth_render::{Paths, RenderInput, render, secret_specs};

fn fixture() -> LoadedManifest {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo");
    let text = std::fs::read_to_string(dir.join("berth.toml")).unwrap();
    let manifest: Manifest = toml::from_str(&text).unwrap();
    let templates = manifest
        .files
        .iter()
        .map(|f| {
            let src = std::fs::read_to_string(dir.join(&f.template)).unwrap();
            (f.template.clone(), src)
        })
        .collect();
    LoadedManifest {
        manifest,
        source_name: "demo/berth.toml".into(),
        templates,
    }
}

fn config(workers: i64, cache: bool) -> ResolvedConfig {
    let mut settings = BTreeMap::new();
    settings.insert(
        "db".to_owned(),
        BTreeMap::from([(
            "port".to_owned(),
            Resolved {
                value: SettingValue::Int(5432),
                origin: Origin::Default,
            },
        )]),
    );
    settings.insert(
        "web".to_owned(),
        BTreeMap::from([(
            "workers".to_owned(),
            Resolved {
                value: SettingValue::Int(workers),
                origin: Origin::Derived,
            },
        )]),
    );
    let mut enabled: BTreeSet<String> = ["db", "app"].into_iter().map(String::from).collect();
    if cache {
        enabled.insert("cache".into());
    }
    ResolvedConfig {
        external_url: "http://demo.example.com/".parse().unwrap(),
        profile: None,
        settings,
        enabled_components: enabled,
    }
}

fn secrets() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("db_password".to_owned(), "s3cr3t-db".to_owned()),
        ("admin_password".to_owned(), "0123abcd".to_owned()),
    ])
}

#[test]
fn renders_everything_for_a_root_install() {
    let m = fixture();
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let paths = Paths::for_prefix(Path::new("/var/opt/berth/demo"), "1.0.0");
    let secrets = secrets();
    let cfg = config(9, true);
    let state = render(&RenderInput {
        manifest: &m,
        config: &cfg,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
    })
    .unwrap();
    insta::assert_json_snapshot!(state);
}

#[test]
fn disabled_component_drops_its_files_services_and_dependencies() {
    let m = fixture();
    let facts = Facts::fixture();
    let paths = Paths::for_prefix(Path::new("/home/admin/.local/share/berth/demo"), "1.0.0");
    let secrets = secrets();
    let cfg = config(3, false);
    let state = render(&RenderInput {
        manifest: &m,
        config: &cfg,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
    })
    .unwrap();
    assert!(state.services.iter().all(|s| s.name != "cache"));
    let web = state.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.depends_on, vec!["db".to_owned()]);
    assert_eq!(
        web.user, None,
        "a per-user install runs everything as the invoking user"
    );
    assert!(
        state
            .files
            .iter()
            .all(|f| !f.path.ends_with("cache/cache.conf"))
    );
    assert!(!state.packages.contains(&"redis-server".to_owned()));
    let hook = &state.hooks[0];
    assert_eq!(hook.after, vec!["db".to_owned()]);
    insta::assert_snapshot!(state.files[0].content, @r#"
    # Rendered by berth for demo 1.0.0
    database_url = "postgresql://demo:s3cr3t-db@127.0.0.1:5432/demo"
    workers = 3
    url = "http://demo.example.com/"
    cache = false
    "#);
}

#[test]
fn same_inputs_render_the_same_state() {
    let m = fixture();
    let facts = Facts::fixture();
    let paths = Paths::for_prefix(Path::new("/p"), "1.0.0");
    let secrets = secrets();
    let cfg = config(9, true);
    let input = RenderInput {
        manifest: &m,
        config: &cfg,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
    };
    let a = render(&input).unwrap();
    let b = render(&input).unwrap();
    assert_eq!(a, b);
    let fa: Vec<_> = a.services.iter().map(berth_render::fingerprint).collect();
    let fb: Vec<_> = b.services.iter().map(berth_render::fingerprint).collect();
    assert_eq!(fa, fb);
}

#[test]
fn a_missing_secret_is_an_error_not_an_empty_string() {
    let m = fixture();
    let facts = Facts::fixture();
    let paths = Paths::for_prefix(Path::new("/p"), "1.0.0");
    let secrets = BTreeMap::new();
    let cfg = config(9, true);
    let err = render(&RenderInput {
        manifest: &m,
        config: &cfg,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret `admin_password` has no value (it is generated by converge before rendering)"
    );
}

#[test]
fn secret_specs_expand_alphabets_and_owners() {
    let m = fixture();
    let root = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let specs = secret_specs(&m, &root);
    let admin = specs.iter().find(|s| s.name == "admin_password").unwrap();
    assert_eq!(admin.alphabet, "0123456789abcdef");
    assert_eq!(admin.owner.as_deref(), Some("demo"));
    let db = specs.iter().find(|s| s.name == "db_password").unwrap();
    assert_eq!(db.alphabet.len(), 62);
    assert_eq!(db.owner, None);
}
