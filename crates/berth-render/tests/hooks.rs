//! Hooks: the order they run in, their fingerprints (`when = "change"`) and the
//! environment every process of a component gets.

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{Facts, LoadedManifest, parse_site, resolve, validate};
use berth_render::{
    DesiredState, Paths, RenderError, RenderInput, hook_order, hook_prerequisites, render,
};

const WIKI: &str = r#"[app]
name = "wiki"
version = "1.0"

[app.environment]
LANG = "en_US.UTF-8"
TZ = "UTC"
WIKI_ROOT = "{{ paths.data }}/wiki"

[components.db]
source = "system"
packages = ["postgresql-15"]
user = "postgres"

[components.wiki]
source = "system"
packages = ["mediawiki"]
user = "wiki"
environment = { TZ = "Europe/Berlin", PATH = "/usr/share/mediawiki/bin:/usr/bin:/bin" }

[components.search]
source = "system"
packages = ["elasticsearch"]
optional = true

[settings.db.name]
type = "string"
default = "wiki"

[[files]]
path = "wiki/LocalSettings.php"
template = "templates/LocalSettings.php.j2"
format = "plain"
component = "wiki"

[services.db]
component = "db"
command = ["/usr/lib/postgresql/15/bin/postgres"]

[services.web]
component = "wiki"
command = ["/usr/bin/php-fpm"]
depends_on = ["db"]
environment = { TZ = "Asia/Tokyo" }

[jobs.jobs]
component = "wiki"
command = ["/usr/bin/php", "runJobs.php"]
every = "5m"

[hooks.initdb]
component = "db"
command = ["initdb"]
when = "once"
before = ["db"]

[hooks.createdb]
component = "db"
command = ["createdb"]
when = "once"
after = ["db"]

[hooks.migrate]
component = "wiki"
command = ["/usr/bin/php", "update.php"]
when = "change"
on = ["setting:db.name", "package:mediawiki", "file:wiki/LocalSettings.php"]
after = ["hook:createdb", "db"]
before = ["web"]
environment = { PATH = "/opt/wiki/bin:/usr/bin" }

[hooks.admin]
component = "wiki"
command = ["/usr/bin/php", "createAndPromote.php"]
when = "once"
after = ["hook:migrate", "hook:a_index"]

[hooks.a_index]
component = "search"
command = ["/usr/bin/php", "index.php"]
when = "always"
after = ["hook:migrate"]

[hooks.z_cache]
component = "wiki"
command = ["/usr/bin/php", "rebuildLocalisationCache.php"]
when = "always"
before = ["hook:migrate"]

[hooks.aa_warm]
component = "wiki"
command = ["/usr/bin/php", "warm.php"]
when = "always"
"#;

const TEMPLATE: &str = "<?php $wgDBname = '{{ settings.db.name }}';\n";

fn manifest(text: &str) -> LoadedManifest {
    let templates = BTreeMap::from([(
        "templates/LocalSettings.php.j2".to_owned(),
        TEMPLATE.to_owned(),
    )]);
    let m = LoadedManifest::from_sources("berth.toml", text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    m
}

fn facts(mediawiki: Option<&str>) -> Facts {
    let mut facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    if let Some(v) = mediawiki {
        facts
            .package_versions
            .insert("mediawiki".to_owned(), v.to_owned());
    }
    facts
        .package_versions
        .insert("postgresql-15".to_owned(), "15.8-0+deb12u1".to_owned());
    facts
}

fn state_with(text: &str, site: &str, facts: &Facts) -> Result<DesiredState, RenderError> {
    let m = manifest(text);
    let site = parse_site("site.toml", site, &m).unwrap_or_else(|d| panic!("{d}"));
    let config = resolve(&m, &site, facts).unwrap_or_else(|d| panic!("{d}"));
    let paths = Paths::for_prefix(Path::new("/srv/wiki"), "1.0");
    render(&RenderInput {
        manifest: &m,
        config: &config,
        facts,
        secrets: &BTreeMap::new(),
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
}

fn state(site: &str, facts: &Facts) -> DesiredState {
    state_with(WIKI, site, facts).unwrap_or_else(|e| panic!("{e}"))
}

fn hook<'s>(s: &'s DesiredState, name: &str) -> &'s berth_render::HookSpec {
    s.hooks.iter().find(|h| h.name == name).unwrap()
}

#[test]
fn hooks_run_after_the_hooks_they_follow_ties_by_name() {
    let s = state("", &facts(Some("1:1.39.10-1")));
    insta::assert_yaml_snapshot!(hook_order(&s));
    let admin = hook(&s, "admin");
    assert_eq!(admin.after_hooks, ["migrate", "a_index"]);
    assert_eq!(hook(&s, "z_cache").before_hooks, ["migrate"]);
    assert_eq!(
        hook_prerequisites(&s, &["admin".to_owned()])
            .into_iter()
            .collect::<Vec<_>>(),
        ["a_index", "createdb", "initdb", "migrate", "z_cache"]
    );
    assert_eq!(
        hook_prerequisites(&s, &["createdb".to_owned()])
            .into_iter()
            .collect::<Vec<_>>(),
        ["initdb"],
        "createdb needs the database, which initdb gates"
    );
}

/// A hook after a hook of a disabled component: that hook does not run, and the
/// ordering entry is dropped (as one on a service of a disabled component is).
#[test]
fn a_hook_of_a_disabled_component_drops_out_of_the_order() {
    let s = state("[search]\nenabled = false\n", &facts(Some("1:1.39.10-1")));
    assert_eq!(hook(&s, "admin").after_hooks, ["migrate"]);
    assert_eq!(
        hook_order(&s),
        [
            "aa_warm", "initdb", "createdb", "z_cache", "migrate", "admin"
        ]
    );
}

#[test]
fn the_fingerprint_follows_what_on_names() {
    let s = state("", &facts(Some("1:1.39.10-1")));
    let migrate = hook(&s, "migrate");
    insta::assert_yaml_snapshot!((&migrate.rerun_key, &migrate.rerun_inputs));
    for other in ["initdb", "admin", "a_index"] {
        assert_eq!(hook(&s, other).rerun_key, None, "{other}");
        assert!(hook(&s, other).rerun_inputs.is_empty(), "{other}");
    }
    let key = |s: &DesiredState| hook(s, "migrate").rerun_key.clone().unwrap();
    // The same inputs give the same key, whatever the order of `on`.
    let reordered = WIKI.replace(
        r#"on = ["setting:db.name", "package:mediawiki", "file:wiki/LocalSettings.php"]"#,
        r#"on = ["file:wiki/LocalSettings.php", "package:mediawiki", "setting:db.name", "package:mediawiki"]"#,
    );
    assert_ne!(reordered, WIKI);
    let same = state_with(&reordered, "", &facts(Some("1:1.39.10-1"))).unwrap();
    assert_eq!(key(&same), key(&s));
    // A package upgrade, a setting (and so the rendered file) change the key.
    let upgraded = state("", &facts(Some("1:1.39.11-1")));
    assert_ne!(key(&upgraded), key(&s));
    let renamed = state("[db]\nname = \"wiki2\"\n", &facts(Some("1:1.39.10-1")));
    assert_ne!(key(&renamed), key(&s));
    // A package that is not installed has no value (and a key of its own).
    let missing = state("", &facts(None));
    let input = &hook(&missing, "migrate").rerun_inputs[1];
    assert_eq!(
        (input.source.as_str(), input.value.as_deref()),
        ("package:mediawiki", None)
    );
    assert_ne!(key(&missing), key(&s));
    // Package versions never reach a rendered file.
    assert_eq!(upgraded.files, s.files);
}

#[test]
fn every_process_gets_the_app_then_the_component_environment() {
    let s = state("", &facts(Some("1")));
    let web = s.services.iter().find(|x| x.name == "web").unwrap();
    let job = s.jobs.iter().find(|x| x.name == "jobs").unwrap();
    let db = s.services.iter().find(|x| x.name == "db").unwrap();
    insta::assert_yaml_snapshot!(BTreeMap::from([
        ("service db", &db.env),
        ("service web", &web.env),
        ("job jobs", &job.env),
        ("hook migrate", &hook(&s, "migrate").env),
        ("hook initdb", &hook(&s, "initdb").env),
    ]));
}

#[test]
fn a_rendered_path_must_hold_absolute_directories() {
    let text = WIKI.replace(
        "PATH = \"/opt/wiki/bin:/usr/bin\"",
        "PATH = \"{{ app.name }}/bin:/usr/bin\"",
    );
    let err = state_with(&text, "", &facts(None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`hooks.migrate.environment.PATH` rendered to a `PATH` with the entry `wiki/bin`, which \
         is not an absolute directory (an empty or relative entry looks programs up in the \
         working directory)"
    );
}

/// A setting's default may be derived from the instance's directories, once known.
#[test]
fn derive_paths_gives_the_directories_templates_see() {
    let text = format!(
        "{WIKI}\n[settings.wiki.uploads]\ntype = \"string\"\nderive = \"paths.data ~ '/images'\"\n"
    );
    let m = manifest(&text);
    let paths = Paths::for_prefix(Path::new("/srv/wiki"), "1.0");
    let site = parse_site("site.toml", "", &m).unwrap();
    let config = berth_model::resolve_at(
        &m,
        &site,
        &Facts::fixture(),
        Some(&berth_render::derive_paths(&paths)),
    )
    .unwrap();
    assert_eq!(
        config.settings["wiki"]["uploads"].value,
        berth_model::SettingValue::String("/srv/wiki/data/images".to_owned())
    );
}

/// A state with a cycle cannot come from a valid manifest; should one be built by
/// hand, every hook still appears once: those in the cycle or after it last, in name
/// order.
#[test]
fn a_cycle_puts_its_hooks_last_in_name_order() {
    let mut s = state("", &facts(Some("1")));
    for h in &mut s.hooks {
        if h.name == "aa_warm" {
            h.after_hooks = vec!["admin".to_owned()];
        }
        if h.name == "initdb" {
            h.after_hooks = vec!["aa_warm".to_owned()];
        }
    }
    assert_eq!(
        hook_order(&s),
        [
            "z_cache", "a_index", "aa_warm", "admin", "createdb", "initdb", "migrate"
        ]
    );
}

/// Rule 2: a hook gating a service (`before`) runs before a hook that needs that
/// service, also through `depends_on`.
#[test]
fn a_hook_gating_a_service_runs_before_the_hooks_needing_it() {
    let text = WIKI.replace(
        "[hooks.aa_warm]\ncomponent = \"wiki\"\ncommand = [\"/usr/bin/php\", \"warm.php\"]\nwhen = \"always\"\n",
        "[hooks.aa_warm]\ncomponent = \"wiki\"\ncommand = [\"/usr/bin/php\", \"warm.php\"]\nwhen = \"always\"\nafter = [\"web\"]\n",
    );
    assert_ne!(text, WIKI);
    let s = state_with(&text, "", &facts(Some("1"))).unwrap();
    // `web` depends on `db`, which `initdb` gates; `migrate` gates `web` itself.
    let order = hook_order(&s);
    let at = |n: &str| order.iter().position(|h| *h == n).unwrap();
    assert!(at("initdb") < at("aa_warm"), "{order:?}");
    assert!(at("migrate") < at("aa_warm"), "{order:?}");
}

/// A secret the `admin` hook makes (`from_hook`): the hook gets `BERTH_SECRETS_OUT`
/// (berth's directory, whatever the manifest's environment says) and lists what it
/// hands over; berth generates nothing for it and no template sees it, even once it
/// has a value; a secret berth generates stays in the context.
#[test]
fn a_hook_that_makes_secrets_gets_its_hand_over_directory() {
    let text = format!(
        "{WIKI}\n[secrets.admin_api_key]\nfrom_hook = \"admin\"\nreadable_by = \"wiki\"\nalphabet = \"hex\"\n\n\
         [secrets.bot_token]\nfrom_hook = \"admin\"\n\n\
         [secrets.db_password]\nlength = 20\n"
    )
    .replace(
        "command = [\"/usr/bin/php\", \"createAndPromote.php\"]",
        "command = [\"/usr/bin/php\", \"createAndPromote.php\"]\nenvironment = { BERTH_SECRETS_OUT = \"/elsewhere\" }",
    );
    let m = manifest(&text);
    let specs = berth_render::secret_specs(&m, &facts(None), &berth_render::UserNames::shared());
    let facts = facts(Some("1:1.39.10-1"));
    let site = parse_site("site.toml", "", &m).unwrap();
    let config = resolve(&m, &site, &facts).unwrap();
    let paths = Paths::for_prefix(Path::new("/srv/wiki"), "1.0");
    // Rendered without the hook's values, and with them: the same state.
    let generated = BTreeMap::from([("db_password".to_owned(), "pw".to_owned())]);
    let mut with_made = generated.clone();
    with_made.insert("admin_api_key".to_owned(), "c0ffee".to_owned());
    let render_with = |secrets: &BTreeMap<String, String>| {
        render(&RenderInput {
            manifest: &m,
            config: &config,
            facts: &facts,
            secrets,
            paths: &paths,
            users: &berth_render::UserNames::shared(),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let s = render_with(&generated);
    assert_eq!(s, render_with(&with_made));
    let admin = hook(&s, "admin");
    insta::assert_yaml_snapshot!((&specs, &admin.env, &admin.secrets_out));
    assert!(hook(&s, "migrate").secrets_out.is_empty());
    assert!(!hook(&s, "migrate").env.contains_key("BERTH_SECRETS_OUT"));
    // Without the generated secret, rendering fails; without the hook's, it does not.
    let err = render(&RenderInput {
        manifest: &m,
        config: &config,
        facts: &facts,
        secrets: &BTreeMap::new(),
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
    .unwrap_err();
    assert!(err.to_string().contains("db_password"), "{err}");
}

/// What a secret's value may be: a generated one only has its alphabet's characters; a
/// hook's is one line without control characters, at most 4 KiB, in its alphabet if
/// it declares one. The reasons never quote the value.
#[test]
fn secret_values_are_checked_against_their_declaration() {
    let spec = |alphabet: &str, from_hook: Option<&str>| berth_render::SecretSpec {
        name: "k".to_owned(),
        length: 0,
        alphabet: alphabet.to_owned(),
        owner: None,
        from_hook: from_hook.map(str::to_owned),
    };
    let generated = spec("abc", None);
    assert_eq!(generated.check_value("abca"), Ok(()));
    assert!(generated.check_value("abcd").is_err());
    assert!(generated.check_value("").is_err());
    let any = spec("", Some("admin"));
    assert_eq!(any.check_value("tok_3f9a-Z.+/= é"), Ok(()));
    for bad in ["", "a\nb", "a\tb", "a\0b", "\u{1b}[31m", "a\rb", "x\u{85}"] {
        let why = any.check_value(bad).unwrap_err();
        assert!(bad.is_empty() || !why.contains(bad), "{why}");
    }
    assert_eq!(any.check_value(&"a".repeat(4096)), Ok(()));
    assert!(any.check_value(&"a".repeat(4097)).is_err());
    let hex = spec("0123456789abcdef", Some("admin"));
    assert_eq!(hex.check_value("c0ffee"), Ok(()));
    assert!(hex.check_value("C0FFEE").is_err());
}
