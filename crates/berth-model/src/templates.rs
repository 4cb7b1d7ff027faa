//! The render context templates see, and checks that templates only use names in it.
//!
//! The renderer (`berth-render`) builds the context; this is its specification:
//!
//! | name | contents |
//! |------|----------|
//! | `app` | `name`, `version` |
//! | `paths` | `prefix`, `etc`, `data`, `run`, `log`, `secrets`, `state`, `release` |
//! | `settings` | `settings.<group>.<key>` for every declared setting |
//! | `secrets` | `secrets.<name>` for every declared secret berth generates (not those a hook makes, `from_hook`) |
//! | `components` | `components.<name>`: `enabled`, `user`, `bin.<binary>`, `dir` (bundled only) |
//! | `facts` | every field of [`Facts`] |
//! | `external_url` | `url`, `scheme`, `host`, `port`, `path` |
//! | `profile` | the selected profile's name, or none |
//! | `node` | `name` (`local` alone), `address` (where the other nodes of a fleet reach this one; `127.0.0.1` alone), `in_fleet`, `fleet` (its name), `peers` (every node's address), `peer_networks` (each as a one-host network: `10.0.0.1/32`, or `[fleet] networks` when given) |
//! | `roles` | `roles.<name>`: `here` (this node takes it), `hosts` (the addresses of the nodes that do), `host` (the first), `members` (`name` and `address` of each) |

use std::collections::{BTreeMap, HashSet};

use crate::Facts;
use crate::manifest::{ComponentSource, Manifest};
use crate::suggest;

/// Global functions minijinja provides that templates may call.
const BUILTIN_FUNCTIONS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// A node in the context's shape: a value (anything below it is fine) or a map of names.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Leaf,
    Map(BTreeMap<String, Node>),
    /// A name that exists but is not in the context, with why and the fix: a secret a
    /// hook makes (`from_hook`), which has no value when templates are rendered.
    Withheld {
        why: String,
        help: String,
    },
}

fn map<'a>(names: impl IntoIterator<Item = &'a str>) -> Node {
    Node::Map(
        names
            .into_iter()
            .map(|n| (n.to_owned(), Node::Leaf))
            .collect(),
    )
}

/// The names of [`Facts`]' fields, taken from its serialised form so they never drift.
pub(crate) fn fact_names() -> Vec<String> {
    match serde_json::to_value(Facts::fixture()) {
        Ok(serde_json::Value::Object(o)) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn facts_node() -> Node {
    Node::Map(fact_names().into_iter().map(|n| (n, Node::Leaf)).collect())
}

fn with_builtins(mut top: BTreeMap<String, Node>) -> Node {
    for f in BUILTIN_FUNCTIONS {
        top.insert(f.to_owned(), Node::Leaf);
    }
    Node::Map(top)
}

/// The shape of the context every template (files, commands, environment …) renders with.
pub(crate) fn render_context(m: &Manifest) -> Node {
    let mut top = BTreeMap::new();
    top.insert("app".to_owned(), map(["name", "version"]));
    top.insert("paths".to_owned(), paths_node());
    top.insert(
        "settings".to_owned(),
        Node::Map(
            m.settings
                .iter()
                .map(|(g, keys)| (g.clone(), map(keys.keys().map(String::as_str))))
                .collect(),
        ),
    );
    top.insert(
        "secrets".to_owned(),
        Node::Map(
            m.secrets
                .iter()
                .map(|(name, decl)| {
                    let node = match &decl.from_hook {
                        None => Node::Leaf,
                        Some(hook) => Node::Withheld {
                            why: format!(
                                "which hook `{hook}` makes (`from_hook`): it has no value when templates are rendered"
                            ),
                            help: format!(
                                "templates cannot use a secret a hook makes: its value is kept in the secret \
                                 store (`{{{{ paths.secrets }}}}/{name}`, for the administrator and backups); \
                                 or let berth generate it (remove `from_hook`)"
                            ),
                        },
                    };
                    (name.clone(), node)
                })
                .collect(),
        ),
    );
    top.insert(
        "components".to_owned(),
        Node::Map(
            m.components
                .iter()
                .map(|(name, c)| {
                    let mut fields = BTreeMap::new();
                    fields.insert("enabled".to_owned(), Node::Leaf);
                    fields.insert("user".to_owned(), Node::Leaf);
                    fields.insert("bin".to_owned(), map(c.binaries.keys().map(String::as_str)));
                    if c.source == ComponentSource::Bundled {
                        fields.insert("dir".to_owned(), Node::Leaf);
                    }
                    (name.clone(), Node::Map(fields))
                })
                .collect(),
        ),
    );
    top.insert("facts".to_owned(), facts_node());
    top.insert(
        "external_url".to_owned(),
        map(["url", "scheme", "host", "port", "path"]),
    );
    top.insert("profile".to_owned(), Node::Leaf);
    top.insert(
        "node".to_owned(),
        map([
            "name",
            "address",
            "in_fleet",
            "fleet",
            "peers",
            "peer_networks",
        ]),
    );
    top.insert(
        "roles".to_owned(),
        Node::Map(
            m.roles
                .keys()
                .map(|r| {
                    (
                        r.clone(),
                        map(["here", "hosts", "host", "members", "sentinel"]),
                    )
                })
                .collect(),
        ),
    );
    with_builtins(top)
}

/// The instance's directories: `paths.<name>`.
fn paths_node() -> Node {
    map([
        "prefix", "etc", "data", "run", "log", "secrets", "state", "release",
    ])
}

/// The shape of the context a setting's `derive` expression evaluates in: `facts` and
/// `paths` (never settings, secrets or components: a default is known before them).
pub(crate) fn derive_context() -> Node {
    let mut top = BTreeMap::new();
    top.insert("facts".to_owned(), facts_node());
    top.insert("paths".to_owned(), paths_node());
    with_builtins(top)
}

/// A variable a template uses that the context does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownName {
    /// The name as far as it exists plus the first unknown part, e.g. `settings.web.wrokers`.
    pub name: String,
    /// "which the manifest does not declare", "which is not in the render context", or
    /// why a declared name is withheld.
    pub why: String,
    /// Did-you-mean or the names available at that point.
    pub help: Option<String>,
}

/// Every variable in `used` (as `undeclared_variables(true)` gives them) that `spec` lacks.
pub(crate) fn unknown_names(spec: &Node, used: &HashSet<String>) -> Vec<UnknownName> {
    let mut used: Vec<&String> = used.iter().collect();
    used.sort();
    let mut out = Vec::new();
    for var in used {
        let segs: Vec<&str> = var.split('.').collect();
        let mut node = spec;
        for (i, seg) in segs.iter().enumerate() {
            let children = match node {
                Node::Map(children) => children,
                Node::Withheld { why, help } => {
                    out.push(UnknownName {
                        name: segs[..i].join("."),
                        why: why.clone(),
                        help: Some(help.clone()),
                    });
                    break;
                }
                Node::Leaf => break,
            };
            if let Some(child) = children.get(*seg) {
                node = child;
                if i + 1 == segs.len()
                    && let Node::Withheld { why, help } = child
                {
                    out.push(UnknownName {
                        name: var.clone(),
                        why: why.clone(),
                        help: Some(help.clone()),
                    });
                }
                continue;
            }
            let prefix = segs[..i].join(".");
            let qualify = |n: &str| {
                if prefix.is_empty() {
                    n.to_owned()
                } else {
                    format!("{prefix}.{n}")
                }
            };
            let declared_by_manifest = matches!(segs[0], "settings" | "secrets" | "components");
            let help = match suggest::closest(seg, children.keys().map(String::as_str)) {
                Some(c) => Some(format!("did you mean `{}`?", qualify(c))),
                None if children.is_empty() => Some(format!("`{prefix}` is empty")),
                None if prefix.is_empty() => Some(format!(
                    "the context has {}",
                    suggest::backticked(children.keys().map(String::as_str))
                )),
                None => Some(format!(
                    "`{prefix}` has {}",
                    suggest::backticked(children.keys().map(String::as_str))
                )),
            };
            out.push(UnknownName {
                name: qualify(seg),
                why: if i > 0 && declared_by_manifest {
                    "which the manifest does not declare"
                } else {
                    "which is not in the render context"
                }
                .to_owned(),
                help,
            });
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{derive_context, unknown_names};

    #[test]
    fn flags_unknown_facts_but_not_builtins() {
        let used: HashSet<String> = ["facts.cpus", "facts.cpuz", "range", "fact"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let unknown = unknown_names(&derive_context(), &used);
        let names: Vec<&str> = unknown.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["fact", "facts.cpuz"]);
        assert_eq!(
            unknown[1].help.as_deref(),
            Some("did you mean `facts.cpus`?")
        );
    }
}
