//! SPDX 2.3, JSON: one package for the app, which the document describes and which
//! contains one package per component. A licence that is not an SPDX expression is
//! `NOASSERTION`, with the component's own words in the package's licence comment;
//! the namespace is derived from the content.

use serde_json::{Value, json};

use crate::component::{Component, Inventory};

/// An SPDX identifier: letters, digits, `.` and `-` only.
fn spdx_id(prefix: &str, text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{prefix}-{clean}")
}

/// The document for `inv`, pretty-printed with a final newline.
pub fn document(inv: &Inventory) -> String {
    let app_id = spdx_id(
        "App",
        &format!("{}-{}", inv.subject.name, inv.subject.version),
    );
    let mut app = json!({
        "SPDXID": app_id,
        "name": inv.subject.name,
        "versionInfo": inv.subject.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
    });
    if let Some(s) = &inv.subject.summary {
        app["summary"] = json!(s);
    }
    let mut packages = vec![app];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": app_id,
    })];
    for (i, c) in inv.components.iter().enumerate() {
        let id = spdx_id(&format!("Package{i}"), &c.bom_ref());
        packages.push(package(c, &id));
        relationships.push(json!({
            "spdxElementId": app_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let name = format!("{}-{}", inv.subject.name, inv.subject.version);
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "creationInfo": {
            "created": crate::rfc3339(inv.created),
            "creators": [format!("Tool: {}", inv.tool_version)],
        },
        "documentDescribes": [app_id],
        "packages": packages,
        "relationships": relationships,
    });
    let uuid = crate::content_uuid(doc.to_string().as_bytes());
    doc["documentNamespace"] = json!(format!("https://spdx.org/spdxdocs/{name}-{uuid}"));
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

fn package(c: &Component, id: &str) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": c.name,
        "versionInfo": c.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": c.licence.concluded.as_deref().unwrap_or("NOASSERTION"),
        "licenseDeclared": c.licence.expression.as_deref().unwrap_or("NOASSERTION"),
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": match c.kind {
            crate::Kind::Application => "APPLICATION",
            crate::Kind::Library => "LIBRARY",
        },
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": c.purl,
        }],
    });
    let mut comments = Vec::new();
    if c.licence.expression.is_none()
        && let Some(words) = &c.licence.declared_as
    {
        comments.push(format!("The component declares its licence as: {words}."));
    }
    if let Some(why) = &c.licence.conclusion {
        comments.push(format!("Concluded by the vendor: {why}"));
    }
    if !comments.is_empty() {
        v["licenseComments"] = json!(comments.join(" "));
    }
    if !c.hashes.is_empty() {
        v["checksums"] = c
            .hashes
            .iter()
            .map(|h| json!({ "algorithm": h.alg.replace('-', ""), "checksumValue": h.value }))
            .collect();
    }
    if let Some(s) = &c.summary {
        v["summary"] = json!(s);
    }
    if let Some(h) = &c.homepage {
        v["homepage"] = json!(h);
    }
    if let Some(a) = &c.author {
        v["originator"] = json!(format!("Person: {a}"));
    }
    if let Some(s) = &c.supplier {
        let (name, email) = crate::component::name_and_address(s);
        v["supplier"] = json!(match email {
            Some(e) => format!("Person: {name} ({e})"),
            None => format!("Person: {name}"),
        });
    }
    if let Some(s) = &c.source {
        v["sourceInfo"] = json!(format!("built from the source package {s}"));
    }
    if let Some(w) = &c.within {
        v["comment"] = json!(format!("In the bundled component `{w}`."));
    }
    v
}
