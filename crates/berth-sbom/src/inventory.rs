//! What a release carries, read from the files themselves (an extracted release
//! bundle): not from what the manifest asked for, which is what should be there, but
//! from what is.

use std::path::Path;

use sha2::Digest as _;

pub use crate::component::{
    Component, Hash, Inventory, Kind, Subject, cargo_purl, generic_purl, pypi_purl,
};
use crate::licence::{Licence, LicenceText};
use crate::{SbomError, python};

fn sha256_file(path: &Path) -> Result<String, SbomError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(SbomError::io("read", path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(SbomError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The inventory of an extracted release bundle in `root` (`bin/berth`, `payload/`)
/// of `subject`, made at `created` by berth `berth_version`: berth and the crates
/// compiled into it, and in each bundled component the interpreter and every Python
/// distribution installed.
pub fn of_release(
    root: &Path,
    subject: Subject,
    created: u64,
    berth_version: &str,
) -> Result<Inventory, SbomError> {
    of_parts(
        &root.join("bin/berth"),
        &root.join("payload"),
        subject,
        created,
        berth_version,
    )
}

/// The same, from the berth binary and the directory of built components (one per
/// component) apart, as a release build has them before the bundle is written.
pub fn of_parts(
    berth: &Path,
    payload: &Path,
    subject: Subject,
    created: u64,
    berth_version: &str,
) -> Result<Inventory, SbomError> {
    let mut components = Vec::new();
    if std::fs::metadata(berth).is_ok_and(|m| m.is_file()) {
        let (crates, own) = crate::crates::of_binary(berth)?;
        components.push(Component {
            kind: Kind::Application,
            name: "berth".to_owned(),
            version: berth_version.to_owned(),
            purl: generic_purl("berth", berth_version),
            licence: Licence {
                expression: Some("Apache-2.0".to_owned()),
                source: Some("berth".to_owned()),
                texts: own
                    .map(|text| LicenceText {
                        file: "LICENSE".to_owned(),
                        text,
                    })
                    .into_iter()
                    .collect(),
                ..Licence::default()
            },
            hashes: vec![Hash {
                alg: "SHA-256",
                value: sha256_file(berth)?,
            }],
            summary: Some("installs, runs, upgrades and backs up the app".to_owned()),
            homepage: None,
            author: None,
            within: None,
            supplier: None,
            source: None,
        });
        components.extend(crates);
    }
    let mut trees: Vec<_> = match std::fs::read_dir(payload) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(SbomError::io("read", payload)(e)),
    };
    trees.sort();
    for (name, tree) in trees {
        components.extend(python_tree(&name, &tree)?);
    }
    components.sort_by(|a, b| {
        (&a.within, python::normalize(&a.name), &a.version).cmp(&(
            &b.within,
            python::normalize(&b.name),
            &b.version,
        ))
    });
    Ok(Inventory {
        subject,
        created,
        tool_version: format!("berth-{berth_version}"),
        components,
    })
}

/// The interpreter and distributions of one bundled component's tree (none when the
/// tree is not Python).
fn python_tree(within: &str, tree: &Path) -> Result<Vec<Component>, SbomError> {
    let mut out = Vec::new();
    if let Some(version) = python::interpreter_version(tree) {
        let mut licence = Licence {
            expression: Some("PSF-2.0".to_owned()),
            source: Some("interpreter".to_owned()),
            ..Licence::default()
        };
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let file = tree.join(format!("lib/python{minor}/LICENSE.txt"));
        if std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
            let text = std::fs::read(&file).map_err(SbomError::io("read", &file))?;
            licence.texts.push(LicenceText {
                file: "LICENSE.txt".to_owned(),
                text: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        out.push(Component {
            kind: Kind::Application,
            name: "python".to_owned(),
            version: version.clone(),
            purl: generic_purl("python", &version),
            licence,
            hashes: Vec::new(),
            summary: Some("the Python interpreter the component runs on".to_owned()),
            homepage: Some("https://www.python.org/".to_owned()),
            author: Some("Python Software Foundation".to_owned()),
            within: Some(within.to_owned()),
            supplier: None,
            source: None,
        });
    }
    let wheels = wheel_hashes(tree)?;
    for site in python::site_packages(tree) {
        for d in python::distributions(&site)? {
            let hashes = wheels
                .iter()
                .find(|w| {
                    python::normalize(&w.name) == python::normalize(&d.name)
                        && w.version == d.version
                })
                .and_then(|w| w.sha256.clone())
                .map(|value| {
                    vec![Hash {
                        alg: "SHA-256",
                        value,
                    }]
                })
                .unwrap_or_default();
            out.push(Component {
                kind: Kind::Library,
                purl: pypi_purl(&d.name, &d.version),
                name: d.name,
                version: d.version,
                licence: d.licence,
                hashes,
                summary: d.summary,
                homepage: d.homepage,
                author: d.author,
                within: Some(within.to_owned()),
                supplier: None,
                source: None,
            });
        }
    }
    Ok(out)
}

/// One artifact pip installed, as the build recorded it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Wheel {
    name: String,
    version: String,
    sha256: Option<String>,
}

/// The record the release build keeps of the artifacts pip installed
/// (`installed.json` in the tree: name, version, file, SHA-256), if there is one.
fn wheel_hashes(tree: &Path) -> Result<Vec<Wheel>, SbomError> {
    let file = tree.join(INSTALLED_FILE);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SbomError::Input {
            what: format!(
                "`{}` is not the build's record of what pip installed ({e})",
                file.display()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SbomError::io("read", &file)(e)),
    }
}

/// The name of that record in a built Python tree.
pub use berth_host::portable::INSTALLED_FILE;
