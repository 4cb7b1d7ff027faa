//! The manifest's licence policy (`[licences]`) applied to an inventory: the vendor's
//! conclusions recorded on the components they name, then every component checked.
//! A release build refuses to write a bundle while anything is refused.

use berth_model::manifest::LicencesDecl;

use crate::component::Inventory;
use crate::python::normalize;

/// A component the policy does not let ship.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The bundled component it is in, if any.
    pub within: Option<String>,
    /// Its licence as checked (the expression, or the component's own words).
    pub licence: String,
    /// Why it is refused, and what to do.
    pub why: String,
}

/// What the policy said.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Components that may not ship.
    pub refused: Vec<Refusal>,
    /// Components shipped whatever their licence (`accept`), with the reason.
    pub accepted: Vec<(String, String)>,
    /// Reviewed components no component of this release is (a stale entry).
    pub unused: Vec<String>,
}

impl Verdict {
    /// The refusals as one message, a line each.
    pub fn message(&self) -> String {
        let mut lines = vec![format!(
            "the licence policy refuses {} component{}:",
            self.refused.len(),
            if self.refused.len() == 1 { "" } else { "s" }
        )];
        for r in &self.refused {
            let within = r
                .within
                .as_deref()
                .map(|w| format!(" (in `{w}`)"))
                .unwrap_or_default();
            lines.push(format!(
                "  {} {}{within}: {} — {}",
                r.name, r.version, r.licence, r.why
            ));
        }
        lines.join("\n")
    }
}

/// A licence identifier as the policy lists it.
fn id_of(item: &spdx::LicenseItem) -> String {
    match item {
        spdx::LicenseItem::Spdx { id, .. } => id.name.to_owned(),
        spdx::LicenseItem::Other(_) => item.to_string(),
    }
}

/// Records the vendor's conclusions on `inv`'s components, then checks every one:
/// a component refused is one whose licence is not known, or whose expression cannot
/// be satisfied by licences that are all allowed (when `allow` lists any) and none
/// denied. A component the vendor `accept`s ships whatever its licence.
pub fn apply(inv: &mut Inventory, policy: &LicencesDecl) -> Verdict {
    let mut verdict = Verdict::default();
    let mut used = std::collections::BTreeSet::new();
    let ok = |id: &str| {
        !policy.deny.iter().any(|d| d == id)
            && (policy.allow.is_empty() || policy.allow.iter().any(|a| a == id))
    };
    for c in &mut inv.components {
        let key = normalize(&c.name);
        let review = policy.components.get(&key);
        if let Some(r) = review {
            used.insert(key.clone());
            if let Some(concluded) = &r.concluded {
                c.licence.concluded = Some(concluded.clone());
                c.licence.conclusion = Some(r.reason.clone());
            }
            if r.accept {
                verdict.accepted.push((c.name.clone(), r.reason.clone()));
                continue;
            }
        }
        let checked = c
            .licence
            .concluded
            .clone()
            .or_else(|| c.licence.expression.clone());
        let refuse = |licence: String, why: String| Refusal {
            name: c.name.clone(),
            version: c.version.clone(),
            within: c.within.clone(),
            licence,
            why,
        };
        let Some(text) = checked else {
            let words = c
                .licence
                .declared_as
                .clone()
                .unwrap_or_else(|| "nothing".to_owned());
            verdict.refused.push(refuse(
                format!("declares {words}"),
                format!(
                    "its licence is not known; read its licence text and add \
                     `[licences.components.{key}]` with `concluded = \"<SPDX expression>\"` \
                     and a `reason`"
                ),
            ));
            continue;
        };
        let Ok(expr) = spdx::Expression::parse(&text) else {
            verdict.refused.push(refuse(
                text.clone(),
                "it is not an SPDX expression".to_owned(),
            ));
            continue;
        };
        if expr.evaluate(|req| ok(&id_of(&req.license))) {
            continue;
        }
        let mut problems: Vec<String> = expr
            .requirements()
            .map(|r| id_of(&r.req.license))
            .filter(|id| !ok(id))
            .map(|id| {
                if policy.deny.contains(&id) {
                    format!("`{id}` is denied")
                } else {
                    format!("`{id}` is not allowed")
                }
            })
            .collect();
        problems.dedup();
        verdict.refused.push(refuse(
            text,
            format!(
                "{}; allow it, or review the component in `[licences.components.{key}]`",
                problems.join(", ")
            ),
        ));
    }
    verdict.unused = policy
        .components
        .keys()
        .filter(|k| !used.contains(*k))
        .cloned()
        .collect();
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{Component, Kind, Subject};
    use crate::licence::Licence;
    use berth_model::manifest::LicenceException;

    fn component(name: &str, expression: Option<&str>, words: Option<&str>) -> Component {
        Component {
            kind: Kind::Library,
            name: name.to_owned(),
            version: "1.0".to_owned(),
            purl: format!("pkg:pypi/{name}@1.0"),
            licence: Licence {
                expression: expression.map(str::to_owned),
                declared_as: words.map(str::to_owned),
                ..Licence::default()
            },
            hashes: Vec::new(),
            summary: None,
            homepage: None,
            author: None,
            within: Some("app".to_owned()),
            supplier: None,
            source: None,
        }
    }

    fn inventory(components: Vec<Component>) -> Inventory {
        Inventory {
            subject: Subject {
                name: "demo".to_owned(),
                version: "1".to_owned(),
                summary: None,
            },
            created: 0,
            tool_version: "berth-0".to_owned(),
            components,
        }
    }

    #[test]
    fn allowed_denied_unknown_concluded_and_accepted() {
        let mut inv = inventory(vec![
            component("Dual_Thing", Some("MIT OR GPL-3.0-only"), None),
            component("gpl-only", Some("GPL-3.0-only"), None),
            component("strange", Some("MPL-2.0"), None),
            component("Jinja2", None, Some("BSD License")),
            component("vague", None, Some("BSD")),
            component("psycopg", Some("LGPL-3.0-only"), None),
        ]);
        let mut policy = LicencesDecl {
            allow: ["MIT", "BSD-3-Clause", "LGPL-3.0-only"]
                .map(str::to_owned)
                .to_vec(),
            deny: vec!["GPL-3.0-only".to_owned()],
            ..LicencesDecl::default()
        };
        policy.components.insert(
            "jinja2".to_owned(),
            LicenceException {
                concluded: Some("BSD-3-Clause".to_owned()),
                accept: false,
                reason: "LICENSE.txt is the BSD 3-clause text".to_owned(),
            },
        );
        policy.components.insert(
            "strange".to_owned(),
            LicenceException {
                concluded: None,
                accept: true,
                reason: "reviewed by counsel".to_owned(),
            },
        );
        policy.components.insert(
            "gone".to_owned(),
            LicenceException {
                concluded: Some("MIT".to_owned()),
                accept: false,
                reason: "was vendored once".to_owned(),
            },
        );
        let v = apply(&mut inv, &policy);
        let refused: Vec<(&str, &str)> = v
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.why.as_str()))
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].0, "gpl-only");
        assert!(
            refused[0].1.starts_with("`GPL-3.0-only` is denied"),
            "{refused:?}"
        );
        assert_eq!(refused[1].0, "vague");
        assert!(
            refused[1].1.contains("[licences.components.vague]"),
            "{refused:?}"
        );
        assert_eq!(
            v.accepted,
            [("strange".to_owned(), "reviewed by counsel".to_owned())]
        );
        assert_eq!(v.unused, ["gone"]);
        // The conclusion is recorded on the component for the documents.
        assert_eq!(
            inv.components[3].licence.concluded.as_deref(),
            Some("BSD-3-Clause")
        );
        assert!(
            v.message()
                .contains("gpl-only 1.0 (in `app`): GPL-3.0-only"),
            "{}",
            v.message()
        );
        // No allow list: anything not denied.
        let mut inv = inventory(vec![component("x", Some("Zlib"), None)]);
        let open = LicencesDecl {
            deny: vec!["GPL-3.0-only".to_owned()],
            ..LicencesDecl::default()
        };
        assert!(apply(&mut inv, &open).refused.is_empty());
    }
}
