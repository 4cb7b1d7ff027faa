//! `[[host_files]]`: symlinks and copies outside the prefix, typed for the lifecycle.

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{Facts, LoadedManifest, parse_site, resolve, validate};
use berth_render::{DesiredState, Paths, RenderError, RenderInput, render};

const APP: &str = r#"[app]
name = "wiki"
version = "1.0"

[components.web]
source = "system"
packages = ["nginx"]
optional = true

[components.wiki]
source = "system"

[secrets.cron_token]
length = 8

[[files]]
path = "nginx/wiki.conf"
template = "nginx.j2"
format = "nginx"
component = "web"

[[files]]
path = "cron/wiki"
template = "cron.j2"
format = "plain"
mode = "0600"

[[host_files]]
path = "/etc/nginx/sites-enabled/wiki.conf"
component = "web"
link_to = "{{ paths.etc }}/nginx/wiki.conf"

[[host_files]]
path = "/etc/cron.d/wiki"
component = "wiki"
copy_of = "cron/wiki"
mode = "0644"

[[host_files]]
path = "/var/www/wiki/static"
component = "wiki"
link_to = "{{ paths.data }}/static"
"#;

fn render_with(text: &str, site: &str, prefix: &str) -> Result<DesiredState, RenderError> {
    let templates = BTreeMap::from([
        ("nginx.j2".to_owned(), "root {{ paths.data }};\n".to_owned()),
        (
            "cron.j2".to_owned(),
            "*/5 * * * * root TOKEN={{ secrets.cron_token }} /usr/bin/true\n".to_owned(),
        ),
    ]);
    let m = LoadedManifest::from_sources("berth.toml", text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    let site = parse_site("site.toml", site, &m).unwrap_or_else(|d| panic!("{d}"));
    let facts = Facts::fixture();
    let config = resolve(&m, &site, &facts).unwrap_or_else(|d| panic!("{d}"));
    let paths = Paths::for_prefix(Path::new(prefix), "1.0");
    let secrets = BTreeMap::from([("cron_token".to_owned(), "t0k3n".to_owned())]);
    render(&RenderInput {
        manifest: &m,
        config: &config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
}

#[test]
fn host_files_of_enabled_components() {
    let s = render_with(APP, "", "/srv/wiki").unwrap();
    insta::assert_yaml_snapshot!(s.host_files);
    let off = render_with(APP, "[web]\nenabled = false\n", "/srv/wiki").unwrap();
    let paths: Vec<&Path> = off.host_files.iter().map(|h| h.path.as_path()).collect();
    assert_eq!(
        paths,
        [
            Path::new("/etc/cron.d/wiki"),
            Path::new("/var/www/wiki/static")
        ]
    );
}

#[test]
fn a_host_file_stays_outside_the_prefix_and_links_only_into_it() {
    let err = render_with(APP, "", "/var/www/wiki").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`host_files[2].path` is `/var/www/wiki/static`: a host file is outside the prefix \
         `/var/www/wiki` (and not above it); put the file in `[[files]]`"
    );
    let out = APP.replace("{{ paths.data }}/static", "{{ paths.data }}/../../etc");
    let err = render_with(&out, "", "/srv/wiki").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`host_files[2].link_to` is `/srv/wiki/data/../../etc`: a host file links to a path \
         inside the prefix `/srv/wiki`, written without `.` or `..`"
    );
}
