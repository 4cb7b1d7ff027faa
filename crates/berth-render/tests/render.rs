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
        instance: None,
        users: None,
        roles: None,
        fleet: None,
        app_components: None,
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
        users: &berth_render::UserNames::shared(),
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
        users: &berth_render::UserNames::shared(),
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
        users: &berth_render::UserNames::shared(),
    };
    let a = render(&input).unwrap();
    let b = render(&input).unwrap();
    assert_eq!(a, b);
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
        users: &berth_render::UserNames::shared(),
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
    let specs = secret_specs(&m, &root, &berth_render::UserNames::shared());
    let admin = specs.iter().find(|s| s.name == "admin_password").unwrap();
    assert_eq!(admin.alphabet, "0123456789abcdef");
    assert_eq!(admin.owner.as_deref(), Some("demo"));
    let db = specs.iter().find(|s| s.name == "db_password").unwrap();
    assert_eq!(db.alphabet.len(), 62);
    assert_eq!(db.owner, None);
}

/// A secret read by a component that is switched off is still made, but root's: that
/// component's user is not made (an `up` as root failed on the missing user).
#[test]
fn a_secret_of_a_component_switched_off_belongs_to_root() {
    let m = fixture();
    let root = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let users = berth_render::UserNames::shared();
    let all: std::collections::BTreeSet<String> = m.manifest.components.keys().cloned().collect();
    let owner = |enabled: &std::collections::BTreeSet<String>| {
        berth_render::secret_specs_enabled(&m, &root, &users, enabled)
            .into_iter()
            .find(|s| s.name == "admin_password")
            .unwrap()
            .owner
    };
    assert_eq!(owner(&all).as_deref(), Some("demo"));
    let without_app = all.iter().filter(|c| *c != "app").cloned().collect();
    assert_eq!(owner(&without_app), None);
}

/// Renders `template` as a file of `format` with one secret `key` set to `secret`.
fn render_one(format: &str, template: &str, secret: &str) -> Result<String, String> {
    let manifest = format!(
        "[app]\nname = \"one\"\nversion = \"1\"\n\n[secrets.key]\n\n\
         [[files]]\npath = \"out\"\ntemplate = \"t.j2\"\nformat = \"{format}\"\n"
    );
    let templates = BTreeMap::from([("t.j2".to_owned(), template.to_owned())]);
    let m = LoadedManifest::from_sources("berth.toml", &manifest, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    berth_model::validate(&m).unwrap_or_else(|d| panic!("{d}"));
    let cfg = ResolvedConfig {
        external_url: "http://demo.example.com/".parse().unwrap(),
        profile: None,
        settings: BTreeMap::new(),
        enabled_components: BTreeSet::new(),
        instance: None,
        users: None,
        roles: None,
        fleet: None,
        app_components: None,
    };
    let secrets = BTreeMap::from([("key".to_owned(), secret.to_owned())]);
    render(&RenderInput {
        manifest: &m,
        config: &cfg,
        facts: &Facts::fixture(),
        secrets: &secrets,
        paths: &Paths::for_prefix(Path::new("/p"), "1"),
        users: &berth_render::UserNames::shared(),
    })
    .map(|s| s.files[0].content.clone())
    .map_err(|e| {
        format!(
            "{e}: {}",
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        )
    })
}

/// Each format auto-escapes what a template prints; each filter escapes for its
/// format, and its result is not escaped again by the file's own format.
#[test]
fn files_are_escaped_for_their_format_and_filters_for_theirs() {
    let s = "a'b\"c\nd";
    for (format, template, want) in [
        ("python", "X = {{ secrets.key }}", "X = 'a\\'b\"c\\nd'"),
        (
            "json",
            "{\"x\": {{ secrets.key }}}",
            "{\"x\": \"a'b\\\"c\\nd\"}",
        ),
        ("yaml", "x: {{ secrets.key }}", "x: \"a'b\\\"c\\nd\""),
        ("nginx", "x {{ secrets.key }};", "x \"a'b\\\"c\\nd\";"),
        ("redis", "x {{ secrets.key }}", "x \"a'b\\\"c\\nd\""),
        ("shell", "X={{ secrets.key }}", "X='a'\\''b\"c\nd'"),
        ("postgresql", "x = {{ secrets.key }}", "x = 'a''b\"c\\nd'"),
        ("plain", "{{ secrets.key }}", s),
        // Filters: inside a file of another format, and not escaped twice.
        (
            "yaml",
            "cmd: {{ (\"echo \" ~ (secrets.key | shell)) }}",
            "cmd: \"echo 'a'\\\\''b\\\"c\\nd'\"",
        ),
        ("plain", "{{ secrets.key | python }}", "'a\\'b\"c\\nd'"),
        ("nginx", "# {{ app.name | conf }}", "# one"),
        (
            "python",
            "X = {{ secrets.key | tojson }}",
            "X = \"a\\u0027b\\\"c\\nd\"",
        ),
        (
            "plain",
            "{{ secrets.key | pgconf }} {{ secrets.key | redis }} {{ secrets.key | nginx }}",
            "'a''b\"c\\nd' \"a'b\\\"c\\nd\" \"a'b\\\"c\\nd\"",
        ),
    ] {
        assert_eq!(
            render_one(format, template, s).unwrap(),
            want,
            "{format}: {template}"
        );
    }
    // Refused values fail the render, naming the template and the reason.
    let e = render_one("conf", "x = {{ secrets.key }}", s).unwrap_err();
    assert!(e.contains("t.j2") && e.contains("control character"), "{e}");
    let e = render_one("nginx", "x {{ secrets.key }};", "$host").unwrap_err();
    assert!(e.contains("nginx reads as a variable"), "{e}");
}

/// A hook's `creates` is something berth may remove (a half-made cluster), so it
/// must lie strictly inside the instance's data directory.
#[test]
fn a_hooks_output_must_lie_inside_the_data_directory() {
    let facts = Facts::fixture();
    let paths = Paths::for_prefix(Path::new("/p"), "1.0.0");
    let secrets = secrets();
    let cfg = config(3, true);
    let render_with = |creates: &str| {
        let mut m = fixture();
        m.manifest.hooks.get_mut("migrate").unwrap().creates = Some(creates.to_owned());
        render(&RenderInput {
            manifest: &m,
            config: &cfg,
            facts: &facts,
            secrets: &secrets,
            paths: &paths,
            users: &berth_render::UserNames::shared(),
        })
        .map(|state| state.hooks[0].creates.clone())
    };
    assert_eq!(
        render_with("{{ paths.data }}/db/main").unwrap(),
        Some("/p/data/db/main".into())
    );
    for outside in [
        "{{ paths.data }}",
        "{{ paths.data }}/../etc",
        "/p/etc",
        "db/main",
    ] {
        let err = render_with(outside).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not inside the data directory `/p/data`"),
            "{outside}: {err}"
        );
    }
}

/// Who runs, owns and reads what, by name: users, services, jobs, hooks, directories,
/// files, secrets, the database tools and each process's `HOME`.
fn who(state: &berth_render::DesiredState) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = |u: &Option<String>| u.clone().unwrap_or_else(|| "-".to_owned());
    for u in &state.users {
        let _ = writeln!(out, "user {} home {}", u.name, u.home.display());
    }
    for s in &state.services {
        let home = s.env.get("HOME").map_or("-", String::as_str);
        let _ = writeln!(out, "service {} as {} HOME {home}", s.name, name(&s.user));
    }
    for j in &state.jobs {
        let _ = writeln!(out, "job {} as {}", j.name, name(&j.user));
    }
    for h in &state.hooks {
        let home = h.env.get("HOME").map_or("-", String::as_str);
        let _ = writeln!(out, "hook {} as {} HOME {home}", h.name, name(&h.user));
    }
    for d in state.dirs.iter().filter(|d| d.owner.is_some()) {
        let _ = writeln!(out, "dir {} owner {}", d.path.display(), name(&d.owner));
    }
    for f in state.files.iter().filter(|f| f.owner.is_some()) {
        let _ = writeln!(out, "file {} owner {}", f.path.display(), name(&f.owner));
    }
    for s in &state.secrets {
        let _ = writeln!(out, "secret {} owner {}", s.name, name(&s.owner));
    }
    if let Some(db) = state.backup.as_ref().and_then(|b| b.database.as_ref()) {
        let _ = writeln!(out, "database tools as {}", name(&db.user));
    }
    out
}

/// An instance with users of its own: every user is `<instance>-<user>`, everywhere a
/// user is named (templates see it as `components.<name>.user`), and `HOME` follows.
#[test]
fn per_instance_users_are_named_after_the_instance_everywhere() {
    let m = fixture();
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let paths = Paths::for_prefix(Path::new("/srv/blue"), "1.0.0");
    let users = berth_render::UserNames::per_instance("blue")
        .complete(&m)
        .unwrap();
    assert_eq!(
        users.names,
        BTreeMap::from([
            ("demo".to_owned(), "blue-demo".to_owned()),
            ("demo-db".to_owned(), "blue-demo-db".to_owned()),
        ])
    );
    let state = render(&RenderInput {
        manifest: &m,
        config: &config(3, true),
        facts: &facts,
        secrets: &secrets(),
        paths: &paths,
        users: &users,
    })
    .unwrap();
    insta::assert_snapshot!(who(&state));
}

/// Names once recorded are kept, whatever the instance is called now; users the
/// manifest added since are named the recorded way.
#[test]
fn recorded_names_are_kept_and_new_users_named_alike() {
    let m = fixture();
    let recorded = berth_render::UserNames {
        instance: Some("blue".to_owned()),
        names: BTreeMap::from([("demo".to_owned(), "old-demo".to_owned())]),
    };
    let users = recorded.complete(&m).unwrap();
    assert_eq!(users.of("demo"), "old-demo");
    assert_eq!(users.of("demo-db"), "blue-demo-db");
    assert_eq!(users.of("root"), "root");
    // Shared: the manifest's names.
    let shared = berth_render::UserNames::shared().complete(&m).unwrap();
    assert_eq!(shared.of("demo-db"), "demo-db");
}

/// `<instance>-<user>` longer than 32 characters is refused, naming the fix.
#[test]
fn a_per_instance_name_too_long_is_refused_with_the_fix() {
    let m = fixture();
    let err = berth_render::UserNames::per_instance("a-very-long-instance-name-x")
        .complete(&m)
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 32 characters"), "{err}");
    assert!(err.contains("set a shorter `instance"), "{err}");
    assert!(err.contains("users = \"shared\""), "{err}");
    // 32 exactly is fine: `<26 chars>-demo-db`.
    let instance = "b".repeat(32 - "-demo-db".len());
    let users = berth_render::UserNames::per_instance(&instance)
        .complete(&m)
        .unwrap();
    assert_eq!(users.of("demo-db").len(), 32);
}
