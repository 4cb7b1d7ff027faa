//! Snapshot tests of berth-model's diagnostics, resolution and effective config.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use berth_model::{
    Diagnostics, Facts, LoadedManifest, ResolvedConfig, SiteConfig, parse_site, render_effective,
    resolve, validate,
};
use insta::assert_snapshot;

fn demo() -> LoadedManifest {
    let m = LoadedManifest::load(Path::new("tests/fixtures/demo")).expect("demo manifest loads");
    validate(&m).expect("demo manifest is valid");
    m
}

/// The diagnostics `parse_site` reports for `text`.
fn site_errors(text: &str) -> String {
    match parse_site("site.toml", text, &demo()) {
        Ok(site) => panic!("expected errors, got {site:?}"),
        Err(d) => d.to_string(),
    }
}

fn show(r: &ResolvedConfig) -> String {
    let mut out = format!(
        "external_url = {}\nprofile = {:?}\nenabled = {:?}\n",
        r.external_url, r.profile, r.enabled_components
    );
    for (group, keys) in &r.settings {
        for (key, v) in keys {
            let _ = writeln!(out, "{group}.{key} = {:?} ({:?})", v.value, v.origin);
        }
    }
    out
}

fn manifest_errors(text: &str) -> Diagnostics {
    match LoadedManifest::from_sources("berth.toml", text, BTreeMap::new()) {
        Ok(m) => validate(&m).expect_err("expected validation errors"),
        Err(d) => d,
    }
}

const APP: &str = "[app]\nname = \"demo\"\nversion = \"1\"\n";

// ---- site config ----------------------------------------------------------------

#[test]
fn empty_site_is_valid() {
    let site = parse_site("site.toml", "", &demo()).unwrap();
    assert_eq!(site.settings.len(), 0);
    assert!(site.profile.is_none());
}

#[test]
fn site_syntax_error() {
    assert_snapshot!(site_errors("[web]\nworkers = = 4\nport = 80\n[redis\n"));
}

#[test]
fn site_unknown_key_with_did_you_mean() {
    assert_snapshot!(site_errors("[web]\nwrokers = 4\n"));
}

#[test]
fn site_unknown_group_and_top_level_key() {
    assert_snapshot!(site_errors(
        "externl_url = \"http://x/\"\n\n[wbe]\nworkers = 4\n"
    ));
}

#[test]
fn site_wrong_type() {
    assert_snapshot!(site_errors("[web]\nworkers = \"4\"\n"));
}

#[test]
fn site_wrong_type_without_an_obvious_fix() {
    assert_snapshot!(site_errors(
        "[web]\nport = \"eighty\"\nworkers = 2.5\npersist = \"yes\"\n[redis]\npersist = \"no\"\n"
    ));
}

#[test]
fn site_out_of_range() {
    assert_snapshot!(site_errors("[web]\nworkers = 64\nport = 70000\n"));
}

#[test]
fn site_bad_enum() {
    assert_snapshot!(site_errors("[web]\nlog_level = \"warn\"\n"));
}

#[test]
fn site_bad_pattern() {
    assert_snapshot!(site_errors("[web]\nadmin_email = \"root at example\"\n"));
}

#[test]
fn site_bad_url() {
    assert_snapshot!(site_errors("external_url = \"netbox.example.com\"\n"));
}

#[test]
fn site_bad_url_scheme() {
    assert_snapshot!(site_errors("external_url = \"ftp://files.example.com/\"\n"));
}

#[test]
fn site_users_and_instance() {
    let site = parse_site(
        "site.toml",
        "users = \"per-instance\"\ninstance = \"blue-2\"\n",
        &demo(),
    )
    .unwrap();
    let r = berth_model::resolve(&demo(), &site, &Facts::fixture()).unwrap();
    assert_eq!(r.users, Some(berth_model::UserNaming::PerInstance));
    assert_eq!(r.instance.as_deref(), Some("blue-2"));
    assert!(
        render_effective(&demo(), &r).contains("instance = \"blue-2\"\nusers = \"per-instance\"\n")
    );
    let r = berth_model::resolve(
        &demo(),
        &parse_site("site.toml", "users = \"shared\"\n", &demo()).unwrap(),
        &Facts::fixture(),
    )
    .unwrap();
    assert_eq!(r.users, Some(berth_model::UserNaming::Shared));
    assert_eq!(r.instance, None);
}

#[test]
fn site_bad_users_and_instance() {
    let errors = site_errors("users = \"private\"\ninstance = \"Blue\"\n");
    assert!(
        errors.contains("expected `\"per-instance\"` or `\"shared\"` for `users`, found `private`"),
        "{errors}"
    );
    assert!(errors.contains("site.toml:1:9"), "{errors}");
    assert!(
        errors.contains("`Blue` is not a valid `instance`"),
        "{errors}"
    );
    assert!(errors.contains("site.toml:2:12"), "{errors}");
    let errors = site_errors("users = true\ninstance = \"-x\"\n");
    assert!(
        errors.contains("found a boolean")
            || errors.contains("found `true`")
            || errors.contains("bool"),
        "{errors}"
    );
    assert!(
        errors.contains("`-x` is not a valid `instance`"),
        "{errors}"
    );
}

#[test]
fn settings_groups_may_not_be_named_like_top_level_keys() {
    for name in ["instance", "users"] {
        let d = manifest_errors(&format!(
            "{APP}[settings.{name}.x]\ntype = \"int\"\ndefault = 1\n"
        ))
        .to_string();
        assert!(
            d.contains(&format!("`{name}` cannot be a settings group name")),
            "{d}"
        );
    }
}

#[test]
fn site_unknown_profile() {
    assert_snapshot!(site_errors("profile = \"smal\"\n"));
}

#[test]
fn site_component_switch() {
    // `redis` is optional and a settings group: both `enabled` and its settings are accepted.
    let site = parse_site(
        "site.toml",
        "[redis]\nenabled = false\npersist = true\n",
        &demo(),
    )
    .unwrap();
    assert!(!*site.components["redis"].get_ref());
    // `app` is not optional.
    assert_snapshot!(site_errors("[app]\nenabled = false\n"));
}

#[test]
fn site_several_errors_at_once() {
    assert_snapshot!(site_errors(
        r#"external_url = "https://"
profile = "huge"

[web]
workers = 1
log_level = "loud"
timeout = 30
wrokers = 3

[redis]
maxmemory = "lots"
enabled = "no"
"#
    ));
}

#[test]
fn site_sizes_and_durations() {
    let site = parse_site(
        "site.toml",
        "[redis]\nmaxmemory = \"128MB\"\n[web]\ntimeout = \"2m\"\n",
        &demo(),
    )
    .unwrap();
    assert_eq!(
        site.settings["redis"]["maxmemory"].value,
        berth_model::SettingValue::Int(128_000_000)
    );
}

// ---- manifest -------------------------------------------------------------------

#[test]
fn manifest_syntax_error() {
    assert_snapshot!(manifest_errors("[app]\nname = \"demo\nversion = 1\n").to_string());
}

#[test]
fn manifest_unknown_key_with_did_you_mean() {
    let text = format!(
        "{APP}\n[services.web]\ncomponent = \"app\"\ncommand = [\"x\"]\ndepends = [\"db\"]\n"
    );
    assert_snapshot!(manifest_errors(&text).to_string());
}

#[test]
fn manifest_every_unknown_key_at_once() {
    let text = format!(
        "{APP}summry = \"x\"\n\n[components.app]\nsource = \"bundled\"\n\
         build = {{ kind = \"python-venv\", pyton = \">=3.11\", requirements = [] }}\n\n\
         [services.web]\ncomponent = \"app\"\ncomand = [\"x\"]\ndepends = [\"db\"]\n\n\
         [[files]]\npath = \"a\"\ntemplate = \"a.j2\"\nformat = \"conf\"\nowner = \"web\"\nmod = \"0644\"\n\n\
         [servces.db]\ncomponent = \"app\"\n"
    );
    assert_snapshot!(manifest_errors(&text).to_string());
}

#[test]
fn manifest_wrong_types_name_the_key_and_the_fix() {
    for (line, what) in [
        (
            "[[files]]\npath = \"a\"\ntemplate = \"a.j2\"\nformat = \"conf\"\nowner = \"x\"\nmode = 640\n",
            "mode",
        ),
        (
            "[components.app]\nsource = \"system\"\noptional = \"yes\"\n",
            "optional",
        ),
        (
            "[components.app]\nsource = \"system\"\npackages = \"redis\"\n",
            "packages",
        ),
        ("[secrets.key]\nlength = \"32\"\n", "length"),
        (
            "[components.app]\nsource = \"system\"\ndata_dirs = 5\n",
            "data_dirs",
        ),
    ] {
        let err = manifest_errors(&format!("{APP}\n{line}")).to_string();
        assert!(err.contains("= help: "), "{what}: no help in\n{err}");
        insta::with_settings!({ snapshot_suffix => what }, {
            assert_snapshot!(err);
        });
    }
}

#[test]
fn manifest_wrong_enum_value() {
    let text = format!("{APP}\n[components.app]\nsource = \"bundle\"\n");
    assert_snapshot!(manifest_errors(&text).to_string());
}

#[test]
fn manifest_semantic_errors() {
    let m = LoadedManifest::load(Path::new("tests/fixtures/broken")).expect("parses");
    assert_snapshot!(validate(&m).unwrap_err().to_string());
}

#[test]
fn manifest_service_cycle() {
    let text = format!(
        "{APP}\n[components.app]\nsource = \"system\"\n\n\
         [services.a]\ncomponent = \"app\"\ncommand = [\"a\"]\ndepends_on = [\"b\"]\n\n\
         [services.b]\ncomponent = \"app\"\ncommand = [\"b\"]\ndepends_on = [\"c\"]\n\n\
         [services.c]\ncomponent = \"app\"\ncommand = [\"c\"]\ndepends_on = [\"a\"]\n"
    );
    assert_snapshot!(manifest_errors(&text).to_string());
}

#[test]
fn manifest_backup_section_errors() {
    let text = format!(
        "{APP}\n[components.db]\nsource = \"system\"\ndata_dirs = [\"pg\"]\n\n\
         [components.app]\nsource = \"system\"\ndata_dirs = [\"app/media\"]\n\n\
         [services.db]\ncomponent = \"db\"\ncommand = [\"db\"]\n\n\
         [services.worker]\ncomponent = \"app\"\ncommand = [\"w\"]\n\n\
         [backup]\ndata_dirs = [\"app/media/photos\", \"app/medai\", \"../etc\"]\nquiesce = [\"wroker\", \"db\"]\n\n\
         [backup.database]\nkind = \"postgresql\"\nservice = \"db\"\nhost = \"{{{{ paths.run }}}}/db\"\n\
         port = \"{{{{ settings.db.port }}}}\"\nname = \"app\"\nowner = \"app\"\nbin_dir = \"bin\"\n\
         restore_after = [\"createdb\"]\n"
    );
    assert_snapshot!(manifest_errors(&text).to_string());
}

/// A hook pasted `{{ paths.run }}` into its `sh -c` script: a prefix (or any value)
/// with a space, a quote or `$(…)` changed what the script ran. Templates in a shell
/// script are refused; in `environment`, in a plain argv or after the script they are not.
#[test]
fn manifest_templates_inside_shell_scripts_are_refused() {
    let text = format!(
        "{APP}\n[components.db]\nsource = \"system\"\n\n\
         [services.db]\ncomponent = \"db\"\ncommand = [\"/bin/bash\", \"-euc\", \"exec db {{{{ paths.data }}}}\"]\n\
         ready = {{ command = [\"sh\", \"-e\", \"-o\", \"pipefail\", \"-c\", \"test -S {{{{ paths.run }}}}/s\"] }}\n\n\
         [jobs.ok]\ncomponent = \"db\"\nevery = \"1h\"\n\
         command = [\"/bin/sh\", \"-c\", \"exec \\\"$DB\\\" \\\"$1\\\"\", \"sh\", \"{{{{ paths.data }}}}\"]\n\
         environment = {{ DB = \"{{{{ paths.run }}}}/db\" }}\n\n\
         [jobs.file]\ncomponent = \"db\"\nevery = \"1h\"\ncommand = [\"/bin/sh\", \"{{{{ paths.etc }}}}/job.sh\"]\n\n\
         [hooks.init]\ncomponent = \"db\"\n\
         when = \"once\"\ncommand = [\"/bin/sh\", \"-c\", \"{{% if true %}}initdb {{{{ paths.data }}}}{{% endif %}}\"]\n"
    );
    let errors = manifest_errors(&text);
    let shown = errors.to_string();
    let refused: Vec<&str> = errors
        .iter()
        .filter(|d| d.message.contains("-c` script with a template"))
        .map(|d| d.message.split('`').nth(1).unwrap())
        .collect();
    assert_eq!(
        refused,
        [
            "services.db.command[2]",
            "services.db.ready.command[5]",
            "hooks.init.command[2]",
        ],
        "{shown}"
    );
    assert!(shown.contains("`bash -c` script"), "{shown}");
    assert!(
        shown.contains("help: pass the value through the command's `environment`"),
        "{shown}"
    );
    assert_eq!(errors.len(), 3, "{shown}");
}

/// A requirements list with some hashes made pip refuse the rest only minutes into
/// `berth up`; it is now caught by validation, pointing at each entry.
#[test]
fn manifest_requirements_are_hashed_all_or_not_at_all() {
    let text = format!(
        "{APP}\n[components.app]\nsource = \"bundled\"\n\
         build = {{ kind = \"python-venv\", python = \">=3.11\", requirements = [\
         \"--index-url https://packages.example/simple\", \"six==1.16.0 --hash=sha256:1e61c3\", \
         \"idna>=3 --hash=sha256:abc\", \"certifi\"] }}\n\n\
         [components.plain]\nsource = \"bundled\"\n\
         build = {{ kind = \"python-venv\", python = \">=3.11\", requirements = [\"netbox==4.7.3\", \"certifi\"] }}\n"
    );
    let errors = manifest_errors(&text);
    let shown = errors.to_string();
    assert_eq!(errors.len(), 2, "{shown}");
    assert!(
        shown.contains(
            "requirement `idna>=3` of component `app` has a `--hash` but no exact `==` version"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "requirement `certifi` of component `app` has no `--hash`, but other requirements do"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("help: pin every package with `==` and its hashes"),
        "{shown}"
    );
}

#[test]
fn manifest_may_not_declare_the_backup_settings_group() {
    let text = format!("{APP}\n[settings.backup.target]\ntype = \"string\"\n");
    assert_snapshot!(manifest_errors(&text).to_string());
}

#[test]
fn site_backup_settings_are_checked() {
    assert_snapshot!(site_errors(
        "[backup]\nkeep_last = -1\nschedule = \"daily\"\ntarget_dir = \"/srv\"\n"
    ));
}

#[test]
fn missing_manifest_directory() {
    let err = LoadedManifest::load(Path::new("tests/fixtures/nope")).unwrap_err();
    assert!(
        err.to_string().contains("Failed to read the manifest"),
        "{err}"
    );
}

#[test]
fn hostile_inputs_do_not_panic() {
    let m = demo();
    for text in [
        "\u{feff}",
        "[[web]]\n",
        "web = 3",
        "[web.workers]\nx=1",
        "a.b.c.d = 1",
        "\"\"\"",
        "[web]\nworkers = 99999999999999999999999",
    ] {
        let _ = parse_site("site.toml", text, &m);
        let _ = LoadedManifest::from_sources("berth.toml", text, BTreeMap::new());
    }
}

// ---- resolution -----------------------------------------------------------------

fn small_host() -> Facts {
    Facts {
        cpus: 1,
        memory_bytes: 512 << 20,
        physical_memory_bytes: 512 << 20,
        ..Facts::fixture()
    }
}

fn big_host() -> Facts {
    Facts {
        cpus: 32,
        memory_bytes: 64 << 30,
        physical_memory_bytes: 64 << 30,
        ..Facts::fixture()
    }
}

#[test]
fn resolve_derived_defaults_on_a_small_host() {
    let m = demo();
    let r = resolve(&m, &SiteConfig::default(), &small_host()).unwrap();
    assert_snapshot!(show(&r));
}

#[test]
fn resolve_derived_defaults_on_a_big_host() {
    let m = demo();
    let r = resolve(&m, &SiteConfig::default(), &big_host()).unwrap();
    assert_snapshot!(show(&r));
}

#[test]
fn resolve_profile_then_site() {
    let m = demo();
    let site = parse_site(
        "site.toml",
        "external_url = \"https://demo.example.com/app\"\nprofile = \"small\"\n\n[web]\nport = 9000\n\n[redis]\nenabled = false\n",
        &m,
    )
    .unwrap();
    let r = resolve(&m, &site, &big_host()).unwrap();
    assert_snapshot!(show(&r));
}

#[test]
fn render_effective_config() {
    let m = demo();
    let site = parse_site(
        "site.toml",
        "profile = \"small\"\n[web]\nlog_level = \"debug\"\n",
        &m,
    )
    .unwrap();
    let r = resolve(&m, &site, &Facts::fixture()).unwrap();
    let text = render_effective(&m, &r);
    // What it prints is itself a valid site config that resolves to the same values.
    let again = parse_site("effective.toml", &text, &m).unwrap();
    let r2 = resolve(&m, &again, &Facts::fixture()).unwrap();
    for (group, keys) in &r.settings {
        for (key, v) in keys {
            assert_eq!(v.value, r2.settings[group][key].value, "{group}.{key}");
        }
    }
    assert_snapshot!(text);
}

// ---- docs -------------------------------------------------------------------------

/// The example in docs/manifest.md is a valid manifest.
#[test]
fn manifest_doc_example_is_valid() {
    let doc = std::fs::read_to_string("../../docs/manifest.md").expect("docs/manifest.md");
    let start = doc.find("## Example").expect("an example section");
    let body = &doc[start..];
    let toml_start = body.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let toml_end = toml_start + body[toml_start..].find("```").expect("end of block");
    let templates = BTreeMap::from([(
        "templates/redis.conf.j2".to_owned(),
        "maxmemory {{ settings.redis.maxmemory }}\n".to_owned(),
    )]);
    let m =
        LoadedManifest::from_sources("docs/manifest.md", &body[toml_start..toml_end], templates)
            .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
}

// ---- hooks after hooks, change-keyed hooks, environment -----------------------------

const HOOKS_BASE: &str = r#"[app]
name = "wiki"
version = "1"

[components.db]
source = "system"
packages = ["postgresql-15"]

[components.wiki]
source = "system"
packages = ["mediawiki"]

[settings.db.name]
type = "string"
default = "wiki"

[[files]]
path = "wiki/LocalSettings.php"
template = "t.j2"
format = "plain"
component = "wiki"

[services.db]
component = "db"
command = ["db"]

[services.web]
component = "wiki"
command = ["web"]
depends_on = ["db"]
"#;

fn hook_errors(extra: &str) -> Diagnostics {
    let templates = BTreeMap::from([("t.j2".to_owned(), "x\n".to_owned())]);
    let text = format!("{HOOKS_BASE}\n{extra}");
    let m = LoadedManifest::from_sources("berth.toml", &text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).expect_err("expected validation errors")
}

fn hooks_valid(extra: &str) -> LoadedManifest {
    let templates = BTreeMap::from([("t.j2".to_owned(), "x\n".to_owned())]);
    let text = format!("{HOOKS_BASE}\n{extra}");
    let m = LoadedManifest::from_sources("berth.toml", &text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    m
}

#[test]
fn hooks_may_follow_hooks() {
    hooks_valid(
        "[hooks.createdb]\ncomponent = \"db\"\ncommand = [\"c\"]\nwhen = \"once\"\nafter = [\"db\"]\n\n\
         [hooks.migrate]\ncomponent = \"wiki\"\ncommand = [\"m\"]\nwhen = \"release\"\n\
         after = [\"hook:createdb\", \"db\"]\nbefore = [\"web\", \"hook:admin\"]\n\n\
         [hooks.admin]\ncomponent = \"wiki\"\ncommand = [\"a\"]\nwhen = \"once\"\n",
    );
}

#[test]
fn manifest_hook_references_unknown_hooks_and_itself() {
    assert_snapshot!(
        hook_errors(
            "[hooks.createdb]\ncomponent = \"db\"\ncommand = [\"c\"]\nwhen = \"once\"\n\n\
             [hooks.migrate]\ncomponent = \"wiki\"\ncommand = [\"m\"]\nwhen = \"release\"\n\
             after = [\"hook:create-db\", \"hook:migrate\", \"web\", \"hook:\", \"createdb\"]\n\
             before = [\"hook:nothing\", \"wbe\", \"hook:web\"]\n"
        )
        .to_string()
    );
}

#[test]
fn manifest_hook_cycle_through_hooks_and_services() {
    assert_snapshot!(
        hook_errors(
            "[hooks.a]\ncomponent = \"db\"\ncommand = [\"a\"]\nwhen = \"once\"\nafter = [\"hook:b\"]\n\n\
             [hooks.b]\ncomponent = \"db\"\ncommand = [\"b\"]\nwhen = \"once\"\nafter = [\"hook:a\"]\n\n\
             [hooks.g]\ncomponent = \"wiki\"\ncommand = [\"g\"]\nwhen = \"once\"\nafter = [\"web\"]\n\n\
             [hooks.h]\ncomponent = \"wiki\"\ncommand = [\"h\"]\nwhen = \"once\"\n\
             after = [\"hook:g\"]\nbefore = [\"db\"]\n"
        )
        .to_string()
    );
}

#[test]
fn change_hooks_follow_declared_things() {
    hooks_valid(
        "[hooks.migrate]\ncomponent = \"wiki\"\ncommand = [\"m\"]\nwhen = \"change\"\n\
         on = [\"package:mediawiki\", \"file:wiki/LocalSettings.php\", \"setting:db.name\", \"app:version\"]\n",
    );
}

#[test]
fn manifest_change_hook_errors() {
    assert_snapshot!(
        hook_errors(
            "[hooks.migrate]\ncomponent = \"wiki\"\ncommand = [\"m\"]\nwhen = \"change\"\n\
             on = [\"package:mediawik\", \"file:wiki/Localsettings.php\", \"setting:db.nmae\", \
             \"app:name\", \"pakage:mediawiki\", \"mediawiki\", \"setting:db\"]\n\n\
             [hooks.empty]\ncomponent = \"wiki\"\ncommand = [\"e\"]\nwhen = \"change\"\n\n\
             [hooks.release]\ncomponent = \"wiki\"\ncommand = [\"r\"]\nwhen = \"release\"\non = [\"app:version\"]\n"
        )
        .to_string()
    );
}

#[test]
fn manifest_environment_errors() {
    assert_snapshot!(
        hook_errors(
            "[app.environment]\nPATH = \"/usr/bin:bin\"\n\"BAD-NAME\" = \"x\"\n\n\
             [components.wiki.environment]\nPATH = \"/usr/bin::/bin\"\nLANG = \"{{ settings.db.nmae }}\"\n\n\
             [hooks.h]\ncomponent = \"wiki\"\ncommand = [\"h\"]\nwhen = \"once\"\n\
             environment = { \"1X\" = \"y\", PATH = \"{{ paths.release }}/bin:/usr/bin\" }\n"
        )
        .to_string()
    );
}

#[test]
fn derive_may_use_paths_once_they_are_known() {
    let m = hooks_valid(
        "[settings.wiki.upload_dir]\ntype = \"string\"\nderive = \"paths.data ~ '/images'\"\n",
    );
    let err = resolve(&m, &SiteConfig::default(), &Facts::fixture()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the `derive` expression of `wiki.upload_dir` uses `paths`"),
        "{err}"
    );
    let paths = berth_model::DerivePaths {
        prefix: "/srv/wiki".into(),
        etc: "/srv/wiki/etc".into(),
        data: "/srv/wiki/data".into(),
        run: "/srv/wiki/run".into(),
        log: "/srv/wiki/log".into(),
        secrets: "/srv/wiki/secrets".into(),
        state: "/srv/wiki/state".into(),
        release: "/srv/wiki/releases/1".into(),
    };
    let r = berth_model::resolve_at(&m, &SiteConfig::default(), &Facts::fixture(), Some(&paths))
        .unwrap();
    assert_eq!(
        r.settings["wiki"]["upload_dir"].value,
        berth_model::SettingValue::String("/srv/wiki/data/images".into())
    );
    // Settings, secrets and components are still not available to a default.
    let errors = hook_errors(
        "[settings.wiki.a]\ntype = \"string\"\nderive = \"paths.dat ~ '/x'\"\n\n\
         [settings.wiki.b]\ntype = \"string\"\nderive = \"settings.db.name\"\n",
    );
    assert_snapshot!(errors.to_string());
}

// ---- files outside the prefix -------------------------------------------------------

#[test]
fn host_files_link_into_the_prefix_or_copy_a_rendered_file() {
    hooks_valid(
        "[[host_files]]\npath = \"/etc/nginx/sites-enabled/wiki.conf\"\ncomponent = \"wiki\"\n\
         link_to = \"{{ paths.etc }}/nginx/wiki.conf\"\n\n\
         [[host_files]]\npath = \"/etc/cron.d/wiki\"\ncomponent = \"wiki\"\n\
         copy_of = \"wiki/LocalSettings.php\"\nmode = \"0644\"\n",
    );
}

#[test]
fn manifest_host_file_errors() {
    assert_snapshot!(
        hook_errors(
            "[[host_files]]\npath = \"/etc/passwd\"\ncomponent = \"wiki\"\nlink_to = \"{{ paths.etc }}/x\"\n\n\
             [[host_files]]\npath = \"etc/cron.d/wiki\"\ncomponent = \"wki\"\ncopy_of = \"wiki/LocalSetings.php\"\n\n\
             [[host_files]]\npath = \"/etc/../root/.ssh/authorized_keys\"\ncomponent = \"wiki\"\n\n\
             [[host_files]]\npath = \"/usr/local/bin/wiki\"\ncomponent = \"wiki\"\nlink_to = \"{{ paths.release }}/bin/wiki\"\n\
             copy_of = \"wiki/LocalSettings.php\"\n\n\
             [[host_files]]\npath = \"/etc/nginx/sites-enabled/wiki.conf\"\ncomponent = \"db\"\n\
             copy_of = \"wiki/LocalSettings.php\"\nmode = \"4755\"\n\n\
             [[host_files]]\npath = \"/etc/nginx/sites-enabled/wiki.conf\"\ncomponent = \"wiki\"\n\
             link_to = \"{{ paths.etc }}/nginx/{{ settings.db.nmae }}\"\nmode = \"0644\"\n"
        )
        .to_string()
    );
}

/// Upgrade rules: versions that are not versions or are newer than the manifest's,
/// stops out of order or in its own series, a renamed setting pointing nowhere (with a
/// did-you-mean) and a removed one still declared.
#[test]
fn manifest_upgrade_rule_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"4.7.3\"\n\n\
         [settings.web.request_timeout]\ntype = \"int\"\ndefault = 60\n\n\
         [settings.web.workers]\ntype = \"int\"\ndefault = 2\n\n\
         [upgrade]\nstops = [\"3.7\", \"2.11\", \"4.7\", \"5.0\", \"x y\"]\n\
         from = \"3.7\"\nonline_from = \"4.8.0\"\n\n\
         [[upgrade.settings]]\nkey = \"web.timeout\"\nsince = \"4.7.0\"\nrenamed_to = \"web.request_timout\"\n\n\
         [[upgrade.settings]]\nkey = \"web.workers\"\nsince = \"4.7.0\"\nmessage = \"gone\"\n\n\
         [[upgrade.settings]]\nkey = \"timeout\"\nsince = \"9\"\n";
    assert_snapshot!(manifest_errors(text).to_string());
}

/// Good rules pass: stops oldest first, `from`, `online_from` and settings in the past.
#[test]
fn manifest_upgrade_rules_that_are_right_pass() {
    let text = "[app]\nname = \"demo\"\nversion = \"4.7.3\"\n\n\
         [settings.web.request_timeout]\ntype = \"int\"\ndefault = 60\n\n\
         [upgrade]\nstops = [\"2.11\", \"3.7\"]\nfrom = \"3.7\"\nonline_from = \"4.7\"\n\n\
         [[upgrade.settings]]\nkey = \"web.timeout\"\nsince = \"4.7.0\"\nrenamed_to = \"web.request_timeout\"\n";
    let m = LoadedManifest::from_sources("berth.toml", text, BTreeMap::new()).unwrap();
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(m.manifest.upgrade.stops, ["2.11", "3.7"]);
}

/// `beside` on a service: settings that are not declared (did-you-mean) or not ports,
/// the spare being the port itself, no readiness probe, a bad drain.
#[test]
fn manifest_beside_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.web]\nsource = \"system\"\nuser = \"web\"\n\n\
         [settings.web.port]\ntype = \"port\"\ndefault = 8001\n\n\
         [settings.web.spare_port]\ntype = \"port\"\ndefault = 8002\n\n\
         [settings.web.workers]\ntype = \"int\"\ndefault = 2\n\n\
         [services.a]\ncomponent = \"web\"\ncommand = [\"a\"]\n\
         beside = { port = \"web.prot\", spare = \"web.workers\", drain = \"soon\" }\n\n\
         [services.b]\ncomponent = \"web\"\ncommand = [\"b\"]\n\
         beside = { port = \"web.port\", spare = \"web.port\" }\n";
    assert_snapshot!(manifest_errors(text).to_string());
}

/// A right `beside`: two port settings, a readiness probe; `drain` defaults to 2 s.
#[test]
fn manifest_beside_that_is_right_passes() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.web]\nsource = \"system\"\nuser = \"web\"\n\n\
         [settings.web.port]\ntype = \"port\"\ndefault = 8001\n\n\
         [settings.web.spare_port]\ntype = \"port\"\ndefault = 8002\n\n\
         [services.a]\ncomponent = \"web\"\ncommand = [\"a\"]\n\
         ready = { tcp = \"127.0.0.1:{{ settings.web.port }}\" }\n\
         beside = { port = \"web.port\", spare = \"web.spare_port\" }\n";
    let m = LoadedManifest::from_sources("berth.toml", text, BTreeMap::new()).unwrap();
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    let b = m.manifest.services["a"].beside.as_ref().unwrap();
    assert_eq!(
        (b.port.as_str(), b.spare.as_str(), b.drain.as_str()),
        ("web.port", "web.spare_port", "2s")
    );
}

// ---- secrets a hook makes (`from_hook`) -------------------------------------------

/// A hook that mints an admin API key, and the secret it makes.
const MINTS: &str = "[hooks.bootstrap]\ncomponent = \"wiki\"\ncommand = [\"b\"]\nwhen = \"once\"\n\
                     after = [\"db\"]\n\n\
                     [secrets.admin_api_key]\ndescription = \"API key the app minted\"\n\
                     from_hook = \"bootstrap\"\nreadable_by = \"wiki\"\n";

#[test]
fn a_secret_may_come_from_a_once_hook() {
    let m = hooks_valid(&format!(
        "{MINTS}alphabet = \"hex\"\n\n[secrets.db_password]\n"
    ));
    let s = &m.manifest.secrets["admin_api_key"];
    assert_eq!(s.from_hook.as_deref(), Some("bootstrap"));
    assert_eq!(s.length, None);
    assert_eq!(s.alphabet.as_deref(), Some("hex"));
    // A secret berth generates keeps its defaults.
    let generated = &m.manifest.secrets["db_password"];
    assert_eq!(generated.length(), 32);
    assert_eq!(generated.from_hook, None);
}

/// `from_hook` names a declared `once` hook; such a secret has no `length`, no template
/// may use it (it has no value when templates are rendered), and its hook may not run
/// on a restore. Each error points at the key or value with the fix.
#[test]
fn manifest_secret_from_hook_errors() {
    let templates = BTreeMap::from([
        ("t.j2".to_owned(), "x\n".to_owned()),
        (
            "key.j2".to_owned(),
            "key = {{ secrets.admin_api_key }}\n".to_owned(),
        ),
    ]);
    let extra = "[hooks.bootstrap]\ncomponent = \"wiki\"\ncommand = [\"b\"]\nwhen = \"once\"\n\n\
         [hooks.migrate]\ncomponent = \"wiki\"\ncommand = [\"m\"]\nwhen = \"release\"\n\
         environment = { KEY = \"{{ secrets.admin_api_key }}\" }\n\n\
         [secrets.admin_api_key]\nfrom_hook = \"bootstrap\"\n\n\
         [secrets.typo]\nfrom_hook = \"bootstrp\"\n\n\
         [secrets.migrated]\nfrom_hook = \"migrate\"\nlength = 40\n\n\
         [[files]]\npath = \"wiki/key.conf\"\ntemplate = \"key.j2\"\nformat = \"conf\"\n\n\
         [backup.database]\nkind = \"postgresql\"\nservice = \"db\"\nhost = \"h\"\nport = \"1\"\n\
         name = \"wiki\"\nowner = \"wiki\"\nbin_dir = \"/usr/bin\"\nrestore_after = [\"bootstrap\"]\n";
    let text = format!("{HOOKS_BASE}\n{extra}");
    let m = LoadedManifest::from_sources("berth.toml", &text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_snapshot!(validate(&m).unwrap_err().to_string());
}

/// `[seed]` names a hook that exists (did-you-mean) and needs `[backup.database]`; its
/// build-time columns are `table.column` or `schema.table.column` in lower case.
#[test]
fn manifest_seed_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.web]\nsource = \"system\"\nuser = \"web\"\n\n\
         [hooks.migrate]\ncomponent = \"web\"\ncommand = [\"m\"]\nwhen = \"release\"\n\n\
         [seed]\nhook = \"migrat\"\n\
         build_time_columns = [\"migrations.ran_at\", \"public.Migrations.ran_at\", \"ran_at\", \"a.b.c.d\"]\n";
    assert_snapshot!(manifest_errors(text).to_string());
}

/// `[licences]`: SPDX identifiers (did-you-mean), none both allowed and denied; each
/// reviewed component named as it is matched, with a reason and a valid conclusion.
#[test]
fn manifest_licence_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [licences]\nallow = [\"MIT\", \"Apache2.0\", \"BSD-3-Clause\", \"LicenseRef-vendor\"]\n\
         deny = [\"AGPL-3.0-only\", \"MIT\", \"GPL\"]\n\n\
         [licences.components.jinja2]\nconcluded = \"BSD-3-Clause\"\nreason = \"LICENSE.txt is BSD 3-clause\"\n\n\
         [licences.components.Django_Filter]\nconcluded = \"BSD 3\"\nreason = \"\"\n\n\
         [licences.components.psycopg]\nreason = \"LGPL, dynamically linked\"\n";
    assert_snapshot!(manifest_errors(text).to_string());
    // Unknown keys get a did-you-mean, as everywhere in the manifest.
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n[licences]\nalow = [\"MIT\"]\n";
    assert!(manifest_errors(text).to_string().contains("`allow`"));
}

/// Package names land in apt-get's arguments and in the control fields of the packages
/// berth writes: a name that could carry another field, or another dependency, is refused.
#[test]
fn manifest_package_name_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.db]\nsource = \"system\"\n\
         packages = [\"postgresql-15\", \"evil, other\", \"x\\nDepends: y\"]\n\
         rpm_packages = [\"postgresql-server\", \"perl(Foo) >= 1\"]\n";
    assert_snapshot!(manifest_errors(text).to_string());
}

/// `[preflight]`: sizes that parse with the recommended figure not below the minimum,
/// directories the instance has (did-you-mean), distributions, kernels, programs and
/// packages written so they can be checked.
#[test]
fn manifest_preflight_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.db]\nsource = \"system\"\nuser = \"db\"\ndata_dirs = [\"postgresql\"]\n\n\
         [preflight]\ncpus = { min = 4, recommended = 2 }\n\
         memory = { min = \"lots\", recommended = \"1GiB\" }\n\
         kernel = \"5.x\"\n\
         distributions = [\"debian 12\", \"Debian 12\", \"ubuntu 24.04 lts\"]\n\
         binaries = [\"rsync\", \"bin/tool\", \"two words\"]\n\
         packages = { \"postgresql-15\" = \"15.4\", \"Bad_Name\" = \"1\", \"redis-server\" = \"\" }\n\n\
         [[preflight.disk]]\npath = \"data/postgres\"\nmin = \"1GiB\"\n\n\
         [[preflight.disk]]\npath = \"logs\"\nmin = \"2GiB\"\nrecommended = \"1GiB\"\n\n\
         [[preflight.disk]]\npath = \"state\"\n";
    assert_snapshot!(manifest_errors(text).to_string());
    // Unknown keys get a did-you-mean, as everywhere in the manifest.
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n[preflight]\nmemroy = { min = 1 }\n";
    assert!(manifest_errors(text).to_string().contains("`memory`"));
    // A valid one validates.
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [components.db]\nsource = \"system\"\nuser = \"db\"\ndata_dirs = [\"postgresql\"]\n\n\
         [preflight]\ncpus = { min = 1, recommended = 2 }\nmemory = { min = \"2GiB\", recommended = 4294967296 }\n\
         kernel = \"5.10\"\ndistributions = [\"debian 12\", \"debian\"]\nother_distributions = \"fail\"\n\
         clock_sync = \"off\"\nbinaries = [\"rsync\", \"/usr/bin/ssh\"]\n\
         packages = { \"postgresql-15\" = \"15.4\", \"redis-server\" = \"5:7.0\" }\n\n\
         [[preflight.disk]]\npath = \"data/postgresql\"\nmin = \"1GiB\"\nrecommended = \"10GiB\"\n";
    let m = LoadedManifest::from_sources("berth.toml", text, BTreeMap::new())
        .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
}

/// `[diagnose] redact`: each pattern must compile; the error points at it.
#[test]
fn manifest_diagnose_pattern_errors() {
    let text = "[app]\nname = \"demo\"\nversion = \"1\"\n\n\
         [diagnose]\nredact = [\"LIC-[A-Z0-9]{20}\", \"(unclosed\"]\n";
    let err = manifest_errors(text).to_string();
    assert!(
        err.contains("`(unclosed` is not a regular expression"),
        "{err}"
    );
    assert!(err.contains("berth.toml:6:31"), "{err}");
}
