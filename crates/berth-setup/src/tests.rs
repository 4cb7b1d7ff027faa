use std::collections::BTreeMap;

use berth_model::{Facts, LoadedManifest};

use super::{Answers, Field, check, check_field, questions, site_text};

const MANIFEST: &str = r#"
[app]
name = "demo"
version = "1.0.0"
default_external_url = "http://127.0.0.1:18080/"

[components.db]
source = "system"

[components.cache]
source = "system"
optional = true

[settings.web.workers]
type = "int"
default = 4
min = 1
max = 64
description = "Worker processes"

[profiles.small]
description = "A small machine"
values = { "web.workers" = 1 }
"#;

fn manifest() -> LoadedManifest {
    LoadedManifest::from_sources("berth.toml", MANIFEST, BTreeMap::new())
        .unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn the_questions_follow_the_manifest() {
    insta::assert_debug_snapshot!(questions(&manifest()));
}

/// Every answer lands as a TOML value of its own, whatever it holds: a quote or a
/// newline in an answer cannot add a key.
#[test]
fn the_site_text_holds_each_answer_as_a_value() {
    let m = manifest();
    let answers = Answers::from([
        (Field::ExternalUrl, "https://netbox.example.com/".to_owned()),
        (Field::Profile, "small".to_owned()),
        (Field::Component("cache".to_owned()), "no".to_owned()),
        (Field::BackupTarget, "/srv/backups".to_owned()),
    ]);
    let text = check(&m, &Facts::fixture(), &answers).unwrap();
    insta::assert_snapshot!(text);
    let evil = Answers::from([(
        Field::BackupTarget,
        "/x\"\n[web]\nworkers = 64\n".to_owned(),
    )]);
    let text = site_text(&m, &evil);
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert!(doc.get("web").is_none(), "{text}");
    assert_eq!(
        doc["backup"]["target"].as_str(),
        Some("/x\"\n[web]\nworkers = 64")
    );
}

/// Each field is checked by the site-config model, with its messages.
#[test]
fn a_bad_answer_gets_the_models_message() {
    let m = manifest();
    let facts = Facts::fixture();
    let url = check_field(&m, &facts, &Field::ExternalUrl, "ftp://example.com/");
    assert_eq!(url.len(), 1, "{url:?}");
    assert_eq!(url[0].field, Field::ExternalUrl);
    assert!(url[0].message.contains("external_url"), "{url:?}");
    let profile = check_field(&m, &facts, &Field::Profile, "smal");
    assert_eq!(profile[0].field, Field::Profile);
    assert!(
        profile[0]
            .help
            .as_deref()
            .is_some_and(|h| h.starts_with("did you mean `small`?")),
        "{profile:?}"
    );
    let component = check_field(&m, &facts, &Field::Component("cache".to_owned()), "maybe");
    assert_eq!(
        component[0].field,
        Field::Component("cache".to_owned()),
        "{component:?}"
    );
    let users = check_field(&m, &facts, &Field::Users, "everyone");
    assert_eq!(users[0].field, Field::Users, "{users:?}");
    assert!(check_field(&m, &facts, &Field::Users, "shared").is_empty());
    assert!(check_field(&m, &facts, &Field::Profile, "none").is_empty());
    assert!(check_field(&m, &facts, &Field::ExternalUrl, "").is_empty());
    assert_eq!(
        Field::from_key(&Field::Component("cache".to_owned()).key()),
        Some(Field::Component("cache".to_owned()))
    );
}
