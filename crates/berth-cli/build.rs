//! Records the crates compiled into berth (name, version, licence, the checksum
//! `Cargo.lock` pins, the licence files each ships) in the binary itself, in an ELF
//! section of its own (`.berth-deps`, deflated JSON): a bill of materials and a licence
//! page can then list them for any berth binary, the one a bundle or an image carries
//! included, without the source tree that built it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let lock = dir.join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed=Cargo.toml");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("deps.json");
    let deps = crates(&dir, &lock).unwrap_or_else(|e| {
        // A berth built where cargo cannot answer still builds; its bill of materials
        // then lists berth alone, and says nothing false.
        println!("cargo:warning=the crates compiled into berth are not recorded: {e}");
        Vec::new()
    });
    // Licence texts are stored once each: most crates ship the same MIT and Apache
    // texts, give or take a copyright line.
    let mut texts: Vec<String> = Vec::new();
    let mut crates = Vec::new();
    for mut d in deps {
        let files = d["licence_files"].take();
        let mut refs = Vec::new();
        for f in files.as_array().into_iter().flatten() {
            let text = f["text"].as_str().unwrap_or_default().to_owned();
            let at = texts.iter().position(|t| *t == text).unwrap_or_else(|| {
                texts.push(text);
                texts.len() - 1
            });
            refs.push(serde_json::json!({ "file": f["file"], "text": at }));
        }
        d["licence_files"] = serde_json::Value::Array(refs);
        crates.push(d);
    }
    // berth's own licence, for the licence page's berth row.
    let own = dir.join("../../LICENSE");
    println!("cargo:rerun-if-changed={}", own.display());
    let own = std::fs::read_to_string(&own).unwrap_or_default();
    let doc = serde_json::json!({
        "format": 1,
        "crates": crates,
        "texts": texts,
        "berth_licence": own,
    });
    let json = serde_json::to_vec(&doc).expect("plain JSON");
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &json).expect("in memory");
    std::fs::write(&out, z.finish().expect("in memory")).expect("OUT_DIR is writable");
}

/// The licence files at the top of a crate's source (`LICENSE*`, `LICENCE*`,
/// `COPYING*`, `NOTICE*`, `UNLICENSE`), by name.
fn licence_files(manifest_path: &str) -> Vec<serde_json::Value> {
    let Some(dir) = std::path::Path::new(manifest_path).parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let upper = name.to_ascii_uppercase();
            let licence = ["LICENSE", "LICENCE", "COPYING", "NOTICE", "UNLICENSE"]
                .iter()
                .any(|p| upper.starts_with(p));
            let text = std::fs::read(e.path()).ok()?;
            licence.then(|| (name, String::from_utf8_lossy(&text).into_owned()))
        })
        .collect();
    out.sort();
    out.into_iter()
        .map(|(file, text)| serde_json::json!({ "file": file, "text": text }))
        .collect()
}

/// The crates the berth binary links: berth-cli's normal dependencies, followed
/// through the resolved graph for this target, without proc macros (they run at
/// compile time only) and without the workspace's own crates (they are berth).
fn crates(dir: &std::path::Path, lock: &std::path::Path) -> Result<Vec<serde_json::Value>, String> {
    let cargo = std::env::var("CARGO").map_err(|e| e.to_string())?;
    let target = std::env::var("TARGET").map_err(|e| e.to_string())?;
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&target)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let checksums = checksums(lock)?;
    let packages: BTreeMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .ok_or("no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "berth-cli")
        .and_then(|p| p["id"].as_str())
        .ok_or("berth-cli is not in the metadata")?;
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            let Some(pkg) = dep["pkg"].as_str() else {
                continue;
            };
            let proc_macro = packages.get(pkg).is_some_and(|p| {
                p["targets"].as_array().into_iter().flatten().any(|t| {
                    t["kind"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k == "proc-macro")
                })
            });
            if normal && !proc_macro {
                stack.push(pkg);
            }
        }
    }
    let mut out = Vec::new();
    for id in seen {
        let Some(p) = packages.get(id) else { continue };
        // The workspace's own crates have no registry source: they are berth.
        if p["source"].is_null() {
            continue;
        }
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let version = p["version"].as_str().unwrap_or_default().to_owned();
        out.push(serde_json::json!({
            "name": name,
            "version": version,
            "license": p["license"],
            "checksum": checksums.get(&(name.clone(), version.clone())),
            "licence_files": licence_files(p["manifest_path"].as_str().unwrap_or_default()),
        }));
    }
    out.sort_by(|a, b| {
        (a["name"].as_str(), a["version"].as_str())
            .cmp(&(b["name"].as_str(), b["version"].as_str()))
    });
    Ok(out)
}

/// The checksum `Cargo.lock` pins for each (name, version).
fn checksums(lock: &std::path::Path) -> Result<BTreeMap<(String, String), String>, String> {
    let lock_text = std::fs::read_to_string(lock).map_err(|e| e.to_string())?;
    let lock: toml::Table = lock_text
        .parse()
        .map_err(|e: toml::de::Error| e.to_string())?;
    let mut checksums = BTreeMap::new();
    for p in lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(n), Some(v), Some(c)) = (
            p.get("name").and_then(|x| x.as_str()),
            p.get("version").and_then(|x| x.as_str()),
            p.get("checksum").and_then(|x| x.as_str()),
        ) {
            checksums.insert((n.to_owned(), v.to_owned()), c.to_owned());
        }
    }
    Ok(checksums)
}
