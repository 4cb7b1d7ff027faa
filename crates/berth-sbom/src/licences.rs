//! The licence page of a release, as large products publish one: every component with
//! its version and licence, then each licence text, once, with the components it
//! covers. An HTML page for people and the same content as JSON for tools; both pure
//! functions of the inventory.
//!
//! Every text here comes from the components themselves (their metadata, their licence
//! files): the page escapes all of it, so a licence file cannot put markup or script
//! into the vendor's page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::component::{Component, Inventory};

/// The licence a component is shipped under, as the page shows it: the vendor's
/// conclusion, else the declared expression, else the component's own words.
pub fn shown(c: &Component) -> String {
    c.licence
        .concluded
        .clone()
        .or_else(|| c.licence.expression.clone())
        .or_else(|| c.licence.declared_as.clone())
        .unwrap_or_else(|| "not declared".to_owned())
}

/// The distinct licence texts of `inv`, in order of first use, each with the indexes
/// of the components that ship it.
fn texts(inv: &Inventory) -> Vec<(&str, &str, Vec<usize>)> {
    let mut order: Vec<(&str, &str, Vec<usize>)> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in inv.components.iter().enumerate() {
        for t in &c.licence.texts {
            if let Some(&at) = seen.get(t.text.as_str()) {
                order[at].2.push(i);
            } else {
                seen.insert(&t.text, order.len());
                order.push((&t.file, &t.text, vec![i]));
            }
        }
    }
    order
}

/// The page's content as JSON, pretty-printed with a final newline.
pub fn json(inv: &Inventory) -> String {
    let texts = texts(inv);
    let mut of_component: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (t, (_, _, users)) in texts.iter().enumerate() {
        for u in users {
            of_component.entry(*u).or_default().push(t);
        }
    }
    let components: Vec<Value> = inv
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
                "within": c.within,
                "licence": shown(c),
                "declared": c.licence.expression.as_ref().or(c.licence.declared_as.as_ref()),
                "concluded": c.licence.concluded,
                "conclusion": c.licence.conclusion,
                "texts": of_component.get(&i).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let texts: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, (file, text, _))| json!({ "id": i, "file": file, "text": text }))
        .collect();
    let doc = json!({
        "app": inv.subject.name,
        "version": inv.subject.version,
        "created": crate::rfc3339(inv.created),
        "components": components,
        "texts": texts,
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// Text escaped for HTML, in element content and in quoted attributes alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page, one self-contained HTML file (no script, no external resource).
pub fn html(inv: &Inventory) -> String {
    let texts = texts(inv);
    let title = format!("Licences of {} {}", inv.subject.name, inv.subject.version);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{t}</title>\n<style>\nbody{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}\n\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}}\n\
         pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em;font-size:.85em}}\n</style>\n</head>\n<body>\n\
         <h1>{t}</h1>\n<p>{n} components, as of {d}. Each licence text below is given once, \
         with the components it covers.</p>\n<table>\n<thead><tr><th>Component</th><th>Version</th>\
         <th>Licence</th><th>Part of</th></tr></thead>\n<tbody>\n",
        t = esc(&title),
        n = inv.components.len(),
        d = esc(&crate::rfc3339(inv.created)),
    );
    let mut text_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (t, (_, _, users)) in texts.iter().enumerate() {
        for u in users {
            text_of.entry(*u).or_default().push(t);
        }
    }
    for (i, c) in inv.components.iter().enumerate() {
        let links: Vec<String> = text_of
            .get(&i)
            .into_iter()
            .flatten()
            .map(|t| format!("<a href=\"#text-{t}\">text</a>"))
            .collect();
        let note = c
            .licence
            .conclusion
            .as_ref()
            .map(|why| format!(" <small>(concluded: {})</small>", esc(why)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr id=\"c-{i}\"><td>{}</td><td>{}</td><td>{}{note} {}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.version),
            esc(&shown(c)),
            links.join(" "),
            esc(c.within.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody>\n</table>\n<h2>Licence texts</h2>\n");
    for (t, (file, text, users)) in texts.iter().enumerate() {
        let names: Vec<String> = users
            .iter()
            .map(|u| {
                let c = &inv.components[*u];
                format!(
                    "<a href=\"#c-{u}\">{} {}</a>",
                    esc(&c.name),
                    esc(&c.version)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<section id=\"text-{t}\">\n<h3>{}</h3>\n<p>Covers: {}</p>\n<pre>{}</pre>\n</section>\n",
            esc(file),
            names.join(", "),
            esc(text),
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{Kind, Subject};
    use crate::licence::{Licence, LicenceText};

    fn component(name: &str, text: &str) -> Component {
        Component {
            kind: Kind::Library,
            name: name.to_owned(),
            version: "1.0".to_owned(),
            purl: format!("pkg:pypi/{name}@1.0"),
            licence: Licence {
                expression: Some("MIT".to_owned()),
                texts: vec![LicenceText {
                    file: "LICENSE".to_owned(),
                    text: text.to_owned(),
                }],
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

    #[test]
    fn each_text_once_and_nothing_unescaped() {
        let inv = Inventory {
            subject: Subject {
                name: "demo".to_owned(),
                version: "1".to_owned(),
                summary: None,
            },
            created: 0,
            tool_version: "berth-0".to_owned(),
            components: vec![
                component("a", "MIT License\n"),
                component("b<script>", "MIT License\n"),
                component("c", "</pre><script>alert(1)</script>"),
            ],
        };
        let page = html(&inv);
        assert_eq!(page.matches("<section ").count(), 2, "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;/pre&gt;&lt;script&gt;"));
        let doc: Value = serde_json::from_str(&json(&inv)).unwrap();
        assert_eq!(doc["texts"].as_array().unwrap().len(), 2);
        assert_eq!(doc["components"][1]["texts"], json!([0]));
        assert_eq!(doc["components"][2]["texts"], json!([1]));
    }
}
