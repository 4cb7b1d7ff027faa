//! Settings from a container's environment: `BERTH_SET_<GROUP>_<KEY>=value` sets the
//! manifest's `<group>.<key>` on top of the site config (mounted or none), the way an
//! orchestrator passes configuration. Pure: variables in, site-config text out, so the
//! values go through the same parsing and validation as a file's.

use std::collections::BTreeMap;

use berth_model::Manifest;
use berth_model::manifest::SettingType;

/// What every setting variable starts with.
pub const PREFIX: &str = "BERTH_SET_";

/// This node's own address in the site config's `[fleet]`, known only once the
/// container runs (a Kubernetes pod's IP, from the downward API): where its services
/// listen for the other nodes.
pub const NODE_ADDRESS: &str = "BERTH_NODE_ADDRESS";

/// Where a variable's value goes in the site config.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A top-level key (`external_url`, `profile`).
    TopLevel(&'static str),
    /// `[group] key`, of this type.
    Setting(String, String, SettingType),
}

/// `web.spare_port` → `BERTH_SET_WEB_SPARE_PORT`.
#[must_use]
pub fn variable_name(group: &str, key: &str) -> String {
    let up = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{PREFIX}{}_{}", up(group), up(key))
}

/// Every variable name the manifest's settings answer to. Two settings that give the
/// same name (`a.b_c` and `a_b.c`) both map to it, and using it is refused.
fn targets(manifest: &Manifest) -> BTreeMap<String, Vec<Target>> {
    let mut out: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    out.entry(format!("{PREFIX}EXTERNAL_URL"))
        .or_default()
        .push(Target::TopLevel("external_url"));
    out.entry(format!("{PREFIX}PROFILE"))
        .or_default()
        .push(Target::TopLevel("profile"));
    for (group, keys) in &manifest.settings {
        for (key, decl) in keys {
            out.entry(variable_name(group, key))
                .or_default()
                .push(Target::Setting(group.clone(), key.clone(), decl.kind));
        }
    }
    out
}

/// The TOML value of a variable's text for a setting of type `kind`: a string unless
/// the type wants a number, a boolean or a list and the text is one (otherwise the
/// string goes on, and validation names the type it wanted).
fn value_of(kind: SettingType, text: &str) -> toml_edit::Value {
    let parsed = |t: &str| t.parse::<toml_edit::Value>().ok();
    let typed = match kind {
        SettingType::Int | SettingType::Port | SettingType::Size => {
            text.parse::<i64>().ok().map(toml_edit::Value::from)
        }
        SettingType::Bool => match text {
            "true" => Some(true.into()),
            "false" => Some(false.into()),
            _ => None,
        },
        SettingType::StringList => {
            if text.trim_start().starts_with('[') {
                parsed(text)
            } else {
                let mut array = toml_edit::Array::new();
                for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    array.push(item);
                }
                Some(toml_edit::Value::Array(array))
            }
        }
        SettingType::String | SettingType::Duration | SettingType::Url => None,
    };
    typed.unwrap_or_else(|| text.into())
}

/// The site config `text` (named `name`; empty when there is none) with the settings
/// `vars` give (`BERTH_SET_…`; other variables are ignored). Returns the name and text
/// to parse: unchanged without such variables, otherwise the name says the environment
/// is in it, and each value carries a comment naming its variable.
///
/// # Errors
/// A variable that names no setting (with the closest one), or one two settings
/// answer to; the text is left to the parser when it is not TOML.
pub fn amend(
    manifest: &Manifest,
    name: &str,
    text: &str,
    vars: &[(String, String)],
) -> Result<(String, String), String> {
    let given: Vec<&(String, String)> =
        vars.iter().filter(|(k, _)| k.starts_with(PREFIX)).collect();
    let address = vars.iter().find(|(k, _)| k == NODE_ADDRESS).map(|(_, v)| v);
    if given.is_empty() && address.is_none() {
        return Ok((name.to_owned(), text.to_owned()));
    }
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        // The parser reports the file's own syntax error, with its position.
        return Ok((name.to_owned(), text.to_owned()));
    };
    if let Some(address) = address {
        // Checked as every address of `[fleet]` is, when the text is parsed.
        let node = doc
            .get("fleet")
            .and_then(|f| f.get("node"))
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                format!("`{NODE_ADDRESS}` gives this node's address in `[fleet]`, and {name} has no `[fleet]` naming this node")
            })?;
        let peer = doc
            .get_mut("fleet")
            .and_then(|f| f.get_mut("nodes"))
            .and_then(|n| n.get_mut(&node))
            .and_then(|p| p.as_table_like_mut())
            .ok_or_else(|| format!("`[fleet]` in {name} has no node `{node}`"))?;
        peer.insert("address", toml_edit::Item::Value(address.as_str().into()));
    }
    if given.is_empty() {
        return Ok((format!("{name} with {NODE_ADDRESS}"), doc.to_string()));
    }
    let table = targets(manifest);
    let mut sorted = given;
    sorted.sort();
    for (var, value) in sorted {
        let found = table.get(var.as_str());
        let target = match found.map(Vec::as_slice) {
            Some([one]) => one,
            Some(many) => {
                let names: Vec<String> = many
                    .iter()
                    .map(|t| match t {
                        Target::TopLevel(k) => (*k).to_owned(),
                        Target::Setting(g, k, _) => format!("{g}.{k}"),
                    })
                    .collect();
                return Err(format!(
                    "`{var}` could mean any of {}: set it in the site config instead",
                    names.join(", ")
                ));
            }
            None => {
                let hint = berth_model::suggest::closest(var, table.keys().map(String::as_str))
                    .map_or_else(
                        || {
                            format!(
                                "; variables starting with `{PREFIX}` set the manifest's \
                                 settings (`{PREFIX}<GROUP>_<KEY>`, see `berth config show`)"
                            )
                        },
                        |c| format!("; did you mean `{c}`?"),
                    );
                return Err(format!(
                    "the environment variable `{var}` names no setting of {}{hint}",
                    manifest.app.name
                ));
            }
        };
        let comment = format!("\n# from the environment variable {var}\n");
        match target {
            Target::TopLevel(key) => {
                doc.insert(key, toml_edit::Item::Value(value.as_str().into()));
                if let Some(mut k) = doc.key_mut(key) {
                    k.leaf_decor_mut().set_prefix(comment);
                }
            }
            Target::Setting(group, key, kind) => {
                let entry = doc
                    .entry(group)
                    .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
                let Some(t) = entry.as_table_like_mut() else {
                    return Err(format!(
                        "`{var}` sets `{group}.{key}`, but `{group}` in {name} is not a table"
                    ));
                };
                t.insert(key, toml_edit::Item::Value(value_of(*kind, value)));
                if let Some(mut k) = t.key_mut(key) {
                    k.leaf_decor_mut().set_prefix(comment);
                }
            }
        }
    }
    Ok((
        format!("{name} with the {PREFIX}* environment variables"),
        doc.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `BERTH_NODE_ADDRESS` is this node's own address in `[fleet]`; without a
    /// `[fleet]` naming the node it is refused.
    #[test]
    fn the_node_address_comes_from_the_environment() {
        let text = "[fleet]\nname = \"demo\"\nnode = \"web\"\n[fleet.nodes.web]\naddress = \"demo-web\"\nroles = [\"web\"]\n[fleet.nodes.db]\naddress = \"demo-db\"\nroles = [\"db\"]\n";
        let vars = [(NODE_ADDRESS.to_owned(), "10.244.1.7".to_owned())];
        let (name, out) = amend(&manifest(), "site.toml", text, &vars).unwrap();
        assert_eq!(name, "site.toml with BERTH_NODE_ADDRESS");
        let doc: toml_edit::DocumentMut = out.parse().unwrap();
        assert_eq!(
            doc["fleet"]["nodes"]["web"]["address"].as_str(),
            Some("10.244.1.7")
        );
        assert_eq!(
            doc["fleet"]["nodes"]["db"]["address"].as_str(),
            Some("demo-db")
        );
        let e = amend(&manifest(), "site.toml", "", &vars).unwrap_err();
        assert!(e.contains("has no `[fleet]`"), "{e}");
    }

    fn manifest() -> Manifest {
        let text = r#"
[app]
name = "demo"
version = "1.0.0"

[components.app]
source = "system"

[settings.web.port]
type = "port"
default = 8000

[settings.web.spare_port]
type = "port"
default = 8001

[settings.web.greeting]
type = "string"
default = "hi"

[settings.web.debug]
type = "bool"
default = false

[settings.web.hosts]
type = "string_list"
default = []
"#;
        berth_model::LoadedManifest::from_sources("berth.toml", text, BTreeMap::new())
            .unwrap()
            .manifest
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn names() {
        assert_eq!(
            variable_name("web", "spare_port"),
            "BERTH_SET_WEB_SPARE_PORT"
        );
        assert_eq!(
            variable_name("my-db", "max.conn"),
            "BERTH_SET_MY_DB_MAX_CONN"
        );
    }

    #[test]
    fn without_variables_nothing_changes() {
        let m = manifest();
        let got = amend(
            &m,
            "site.toml",
            "[web]\nport = 1\n",
            &vars(&[("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(
            got,
            ("site.toml".to_owned(), "[web]\nport = 1\n".to_owned())
        );
    }

    #[test]
    fn typed_values_over_the_file() {
        let m = manifest();
        let (name, text) = amend(
            &m,
            "site.toml",
            "# mine\n[web]\nport = 1\n",
            &vars(&[
                ("BERTH_SET_WEB_PORT", "9000"),
                ("BERTH_SET_WEB_GREETING", "42"),
                ("BERTH_SET_WEB_DEBUG", "true"),
                ("BERTH_SET_WEB_HOSTS", "a, b"),
                ("BERTH_SET_EXTERNAL_URL", "http://example.test:8080/"),
            ]),
        )
        .unwrap();
        assert_eq!(name, "site.toml with the BERTH_SET_* environment variables");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn unknown_variable_suggests() {
        let m = manifest();
        let err = amend(&m, "site.toml", "", &vars(&[("BERTH_SET_WEB_PROT", "1")])).unwrap_err();
        assert!(
            err.contains("`BERTH_SET_WEB_PROT` names no setting of demo"),
            "{err}"
        );
        assert!(err.contains("did you mean `BERTH_SET_WEB_PORT`?"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_left_to_validation() {
        let m = manifest();
        let (_, text) = amend(&m, "s", "", &vars(&[("BERTH_SET_WEB_PORT", "eighty")])).unwrap();
        assert!(text.contains("port = \"eighty\""), "{text}");
    }
}
