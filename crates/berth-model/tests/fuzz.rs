//! Fuzzing the parsers with proptest: arbitrary bytes and mutations of valid documents
//! never panic, and every diagnostic they produce can be shown. Bounded case counts
//! keep this to seconds, so it runs with every `cargo test`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use berth_model::{Facts, LoadedManifest, parse_site, resolve, validate};
use proptest::prelude::*;

fn netbox_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/netbox"
    ))
}

fn netbox() -> &'static LoadedManifest {
    static M: OnceLock<LoadedManifest> = OnceLock::new();
    M.get_or_init(|| LoadedManifest::load(netbox_dir()).unwrap_or_else(|d| panic!("{d}")))
}

/// The demo fixture declares every setting type (url, string_list, size, duration ...).
fn demo() -> &'static LoadedManifest {
    static M: OnceLock<LoadedManifest> = OnceLock::new();
    M.get_or_init(|| {
        LoadedManifest::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/demo"
        )))
        .unwrap_or_else(|d| panic!("{d}"))
    })
}

const DEMO_SITE: &str = r#"external_url = "http://demo.example.com/x/"
[web]
workers = 3
log_level = "debug"
timeout = "1m 30s"
admin_email = "ops@example.com"
allowed_hosts = ["a.example.com", "b"]
[redis]
maxmemory = "64MiB"
persist = true
"#;

fn netbox_text() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| std::fs::read_to_string(netbox_dir().join("berth.toml")).unwrap())
}

const SITE: &str = r#"external_url = "https://netbox.example.com/app/"
profile = "small"

[nginx]
listen = "0.0.0.0"
client_max_body_size = "100m"

[web]
workers = 4
timeout = 300

[postgresql]
shared_buffers = "1GiB"

[netbox]
time_zone = "Europe/Berlin"
maintenance_mode = true
"#;

/// Parses `text` as a site config; on success resolves it; shows any diagnostics.
fn site_roundtrip(text: &str) {
    let m = netbox();
    match parse_site("site.toml", text, m) {
        Ok(site) => {
            if let Err(d) = resolve(m, &site, &Facts::fixture()) {
                let _ = d.to_string();
            }
        }
        Err(d) => {
            let shown = d.to_string();
            // Shown input never carries a raw NUL or escape.
            assert!(
                !shown.contains('\0') && !shown.contains('\u{1b}'),
                "{shown}"
            );
        }
    }
}

fn manifest_roundtrip(text: &str) {
    match LoadedManifest::from_sources("berth.toml", text, netbox().templates.clone()) {
        Ok(m) => {
            if let Err(d) = validate(&m) {
                let _ = d.to_string();
            }
        }
        Err(d) => {
            let _ = d.to_string();
        }
    }
}

/// `base` with a few bytes inserted, removed or replaced (kept UTF-8 by lossy decoding).
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..3,
            prop::collection::vec(any::<u8>(), 0..8),
        ),
        1..6,
    );
    edits.prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, kind, insert) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => {
                    bytes.splice(i..i, insert);
                }
                1 => {
                    let end = (i + insert.len().max(1)).min(bytes.len());
                    bytes.drain(i.min(end)..end);
                }
                _ => {
                    let end = (i + insert.len()).min(bytes.len());
                    bytes.splice(i.min(end)..end, insert);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Interesting tokens spliced into a valid document: huge numbers, escapes, controls.
fn spliced(base: &'static str) -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "99999999999999999999",
        "-9223372036854775809",
        "\"\\u0000\"",
        "\"\\u001b[2J\"",
        "\"a\\nb\"",
        "1e400",
        "nan",
        "[[files]]",
        "{ path = \"../x\", mode = \"4755\" }",
        "\"\"\"\n\"\"\"",
        "'''",
        "[",
        "= =",
        "\"http://a;b/\"",
    ]);
    (any::<prop::sample::Index>(), token).prop_map(move |(at, token)| {
        let mut s = base.to_owned();
        let mut i = at.index(s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.insert_str(i, token);
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn site_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        site_roundtrip(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn site_parser_survives_mutated_documents(text in mutated(SITE)) {
        site_roundtrip(&text);
    }

    #[test]
    fn site_parser_survives_spliced_tokens(text in spliced(SITE)) {
        site_roundtrip(&text);
    }

    #[test]
    fn every_setting_type_survives_mutations(text in prop_oneof![mutated(DEMO_SITE), spliced(DEMO_SITE)]) {
        if let Ok(site) = parse_site("site.toml", &text, demo()) {
            let _ = resolve(demo(), &site, &Facts::fixture());
        } else if let Err(d) = parse_site("site.toml", &text, demo()) {
            let shown = d.to_string();
            assert!(!shown.contains('\0') && !shown.contains('\u{1b}'), "{shown}");
        }
    }

    #[test]
    fn manifest_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        manifest_roundtrip(&String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    // A NetBox manifest parse and validation takes milliseconds: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn manifest_parser_survives_mutated_documents(text in mutated(netbox_text())) {
        manifest_roundtrip(&text);
    }

    #[test]
    fn manifest_parser_survives_spliced_tokens(text in spliced(netbox_text())) {
        manifest_roundtrip(&text);
    }

    #[test]
    fn templates_with_arbitrary_text_never_panic(body in ".{0,200}") {
        let mut templates = netbox().templates.clone();
        templates.insert("templates/nginx.conf.j2".to_owned(), body);
        let m = LoadedManifest::from_sources("berth.toml", netbox_text(), templates)
            .unwrap_or_else(|d| panic!("{d}"));
        if let Err(d) = validate(&m) {
            let _ = d.to_string();
        }
    }
}

#[test]
fn an_empty_template_map_is_reported_not_a_panic() {
    let m = LoadedManifest::from_sources("berth.toml", netbox_text(), BTreeMap::new()).unwrap();
    assert!(validate(&m).is_err());
}
