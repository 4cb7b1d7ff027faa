//! The crates compiled into a berth binary, read from the binary itself: berth's
//! build records them (name, version, licence, the checksum `Cargo.lock` pins, the
//! licence files each ships, every text once) in an ELF section of their own,
//! `.berth-deps`, as deflated JSON.

use std::path::Path;

use object::{Object as _, ObjectSection as _};

use crate::component::{Component, Hash, Kind, cargo_purl};
use crate::{SbomError, licence};

/// The section berth's build writes them to.
pub const SECTION: &str = ".berth-deps";

#[derive(serde::Deserialize)]
struct Record {
    format: u32,
    crates: Vec<Recorded>,
    texts: Vec<String>,
    #[serde(default)]
    berth_licence: String,
}

#[derive(serde::Deserialize)]
struct Recorded {
    name: String,
    version: String,
    license: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    licence_files: Vec<FileRef>,
}

#[derive(serde::Deserialize)]
struct FileRef {
    file: String,
    text: usize,
}

/// The crates recorded in the berth binary at `path`, as components inside it
/// (`within`: `berth`), and berth's own licence text. A binary without the section (a
/// berth built before it existed, or not berth at all) has none; one whose section
/// does not read is an error.
pub fn of_binary(path: &Path) -> Result<(Vec<Component>, Option<String>), SbomError> {
    let bytes = std::fs::read(path).map_err(SbomError::io("read", path))?;
    let Ok(file) = object::File::parse(&*bytes) else {
        return Ok((Vec::new(), None));
    };
    let Some(section) = file.section_by_name(SECTION) else {
        return Ok((Vec::new(), None));
    };
    let data = section.data().map_err(|e| SbomError::Input {
        what: format!(
            "`{}`: its {SECTION} section does not read ({e})",
            path.display()
        ),
    })?;
    let bad = |e: &dyn std::fmt::Display| SbomError::Input {
        what: format!(
            "`{}`: its {SECTION} section is not the record berth's build writes ({e})",
            path.display()
        ),
    };
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(data), &mut json)
        .map_err(|e| bad(&e))?;
    let record: Record = serde_json::from_slice(&json).map_err(|e| bad(&e))?;
    if record.format != 1 {
        return Err(bad(&format!(
            "format {}, this berth reads 1",
            record.format
        )));
    }
    let texts = record.texts;
    let own = Some(record.berth_licence).filter(|t| !t.is_empty());
    let crates = record
        .crates
        .into_iter()
        .map(|r| {
            let expression = r.license.as_deref().and_then(licence::expression);
            Ok(Component {
                kind: Kind::Library,
                purl: cargo_purl(&r.name, &r.version),
                licence: licence::Licence {
                    declared_as: if expression.is_none() {
                        r.license.clone()
                    } else {
                        None
                    },
                    expression,
                    source: r.license.as_ref().map(|_| "Cargo.toml".to_owned()),
                    texts: r
                        .licence_files
                        .iter()
                        .map(|f| {
                            texts
                                .get(f.text)
                                .map(|text| licence::LicenceText {
                                    file: f.file.clone(),
                                    text: text.clone(),
                                })
                                .ok_or_else(|| bad(&format!("no text {}", f.text)))
                        })
                        .collect::<Result<_, _>>()?,
                    ..licence::Licence::default()
                },
                hashes: r
                    .checksum
                    .map(|value| Hash {
                        alg: "SHA-256",
                        value,
                    })
                    .into_iter()
                    .collect(),
                name: r.name,
                version: r.version,
                summary: None,
                homepage: None,
                author: None,
                within: Some("berth".to_owned()),
                supplier: None,
                source: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((crates, own))
}
