//! CycloneDX 1.6, JSON: the metadata names the app as the component described and
//! berth as the tool; every component carries its package URL, licence (an SPDX
//! expression, or the component's own words as a licence name), hashes, its supplier
//! and, as properties, the bundled component it is in (`berth:component`) and the
//! package URL of its source (`berth:source`).

use serde_json::{Value, json};

use crate::component::{Component, Inventory};

/// The document for `inv`, pretty-printed with a final newline. Its serial number is
/// derived from the rest of it.
pub fn document(inv: &Inventory) -> String {
    let app_ref = format!("app:{}@{}", inv.subject.name, inv.subject.version);
    let mut app = json!({
        "type": "application",
        "bom-ref": app_ref,
        "name": inv.subject.name,
        "version": inv.subject.version,
    });
    if let Some(s) = &inv.subject.summary {
        app["description"] = json!(s);
    }
    let components: Vec<Value> = inv.components.iter().map(component).collect();
    let mut depends: Vec<String> = inv.components.iter().map(Component::bom_ref).collect();
    depends.sort();
    let mut doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": crate::rfc3339(inv.created),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "berth",
                    "version": inv.tool_version.trim_start_matches("berth-"),
                }],
            },
            "component": app,
        },
        "components": components,
        "dependencies": [{ "ref": app_ref, "dependsOn": depends }],
    });
    let serial = crate::content_uuid(doc.to_string().as_bytes());
    doc["serialNumber"] = json!(format!("urn:uuid:{serial}"));
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

fn component(c: &Component) -> Value {
    let mut v = json!({
        "type": c.kind,
        "bom-ref": c.bom_ref(),
        "name": c.name,
        "version": c.version,
        "purl": c.purl,
    });
    // One expression, or licence names: CycloneDX takes one or the other. A vendor's
    // conclusion wins; what the component declared stays in a property.
    if let Some(concluded) = &c.licence.concluded {
        v["licenses"] = json!([{ "expression": concluded, "acknowledgement": "concluded" }]);
    } else if let Some(expr) = &c.licence.expression {
        v["licenses"] = json!([{ "expression": expr, "acknowledgement": "declared" }]);
    } else if let Some(words) = &c.licence.declared_as {
        v["licenses"] = json!([{ "license": { "name": words, "acknowledgement": "declared" } }]);
    }
    if !c.hashes.is_empty() {
        v["hashes"] = c
            .hashes
            .iter()
            .map(|h| json!({ "alg": h.alg, "content": h.value }))
            .collect();
    }
    if let Some(s) = &c.summary {
        v["description"] = json!(s);
    }
    if let Some(a) = &c.author {
        v["author"] = json!(a);
    }
    if let Some(s) = &c.supplier {
        let (name, email) = crate::component::name_and_address(s);
        v["supplier"] = match email {
            Some(e) => json!({ "name": name, "contact": [{ "email": e }] }),
            None => json!({ "name": name }),
        };
    }
    if let Some(h) = &c.homepage {
        v["externalReferences"] = json!([{ "type": "website", "url": h }]);
    }
    let mut properties = Vec::new();
    if let Some(w) = &c.within {
        properties.push(json!({ "name": "berth:component", "value": w }));
    }
    if let Some(s) = &c.licence.source {
        properties.push(json!({ "name": "berth:licence-source", "value": s }));
    }
    if let Some(s) = &c.source {
        properties.push(json!({ "name": "berth:source", "value": s }));
    }
    if c.licence.concluded.is_some() {
        let declared = c
            .licence
            .expression
            .as_ref()
            .or(c.licence.declared_as.as_ref());
        if let Some(d) = declared {
            properties.push(json!({ "name": "berth:licence-declared", "value": d }));
        }
        if let Some(why) = &c.licence.conclusion {
            properties.push(json!({ "name": "berth:licence-conclusion", "value": why }));
        }
    }
    if !properties.is_empty() {
        v["properties"] = Value::Array(properties);
    }
    v
}
