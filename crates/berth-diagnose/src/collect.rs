//! What goes into a bundle, read the way root must read what others can change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_host::HostError;
use berth_host::beneath::SafeDir;
use berth_layout::Paths;
use berth_lifecycle::Instance;

/// At most this much of one file is read (its end, for a log).
const MAX_FILE: u64 = 1 << 20;
/// At most this many files from one directory tree.
const MAX_FILES: usize = 200;

/// Every secret value of the instance, by name: the secret store, the backup and
/// signing keys. A store that does not exist yet holds none.
pub(crate) fn secrets(paths: &Paths) -> Result<Vec<(String, String)>, HostError> {
    let mut out = Vec::new();
    if paths.secrets.is_dir() {
        let dir = SafeDir::open_trusted(&paths.secrets)?;
        let mut names = dir.names()?;
        names.sort();
        for name in names {
            let rel = Path::new(&name);
            if dir.stat(rel)?.is_some_and(|s| s.is_file()) {
                let value = dir.read(rel)?;
                out.push((
                    name.to_string_lossy().into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        }
    }
    for (name, path) in [
        ("backup-key", paths.backup_key()),
        ("signing-key", paths.signing_key()),
    ] {
        if let (Some(parent), Some(file)) = (path.parent(), path.file_name())
            && parent.is_dir()
        {
            let dir = SafeDir::open_trusted(parent)?;
            if dir.stat(Path::new(file))?.is_some_and(|s| s.is_file()) {
                let text = String::from_utf8_lossy(&dir.read(Path::new(file))?).into_owned();
                // Each line on its own too: a key file may hold a comment and the key.
                for (i, line) in text.lines().filter(|l| !l.starts_with('#')).enumerate() {
                    out.push((format!("{name}-{i}"), line.trim().to_owned()));
                }
            }
        }
    }
    Ok(out)
}

/// Every regular file beneath `root` (no symlink followed, nothing but regular files
/// opened), as `(bundle name, bytes)` under `prefix`: whole, or their last `lines`.
fn tree(root: &Path, prefix: &str, lines: Option<usize>, out: &mut Vec<(String, Vec<u8>)>) {
    let dir = match SafeDir::open_trusted(root) {
        Ok(d) => d,
        Err(e) if !root.exists() => {
            let _ = e;
            return;
        }
        Err(e) => {
            out.push((format!("{prefix}.error.txt"), e.to_string().into_bytes()));
            return;
        }
    };
    let mut stack = vec![PathBuf::new()];
    let mut taken = 0;
    while let Some(rel) = stack.pop() {
        let Ok(sub) = dir.open_dir(&rel) else {
            continue;
        };
        let Ok(mut names) = sub.names() else { continue };
        names.sort();
        for name in names {
            let path = rel.join(&name);
            let Ok(Some(st)) = dir.stat(&path) else {
                continue;
            };
            let shown = format!("{prefix}/{}", path.display());
            if st.is_dir() {
                stack.push(path);
            } else if st.is_file() {
                taken += 1;
                if taken > MAX_FILES {
                    out.push((
                        format!("{prefix}.truncated.txt"),
                        format!("more than {MAX_FILES} files: the rest is left out\n").into_bytes(),
                    ));
                    return;
                }
                match dir.tail(&path, lines, MAX_FILE) {
                    Ok(bytes) => out.push((shown, bytes)),
                    Err(e) => out.push((format!("{shown}.error.txt"), e.to_string().into_bytes())),
                }
            } else if st.is_symlink() {
                // Named, not followed.
                let target = dir.read_link(&path).ok().flatten().unwrap_or_default();
                out.push((
                    format!("{shown}.symlink.txt"),
                    format!("a symlink to {}: not followed\n", target.display()).into_bytes(),
                ));
            }
        }
    }
}

/// The output of a read-only system command, or why there is none.
fn command(program: &str, args: &[&str]) -> Vec<u8> {
    match Command::new(program).args(args).env("LC_ALL", "C").output() {
        Ok(o) => {
            let mut bytes = o.stdout;
            bytes.extend_from_slice(&o.stderr);
            bytes
        }
        Err(e) => format!("`{program}` could not be run: {e}\n").into_bytes(),
    }
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Every file of the bundle, before redaction.
#[allow(clippy::too_many_lines)] // one section after another, in bundle order
pub(crate) fn all(inst: &Instance, log_lines: usize) -> Vec<(String, Vec<u8>)> {
    let paths = &inst.paths;
    let m = &inst.manifest.manifest;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut section = |name: &str, result: Result<Vec<u8>, String>| match result {
        Ok(bytes) => out.push((name.to_owned(), bytes)),
        Err(e) => out.push((format!("{name}.error.txt"), e.into_bytes())),
    };
    section(
        "README.txt",
        Ok(format!(
            "Support bundle of {} {} at {}, made by berth {} at {}.\n\
             Every file was redacted on its way in: redaction.json says what was taken \
             out of which file.\n",
            m.app.name,
            m.app.version,
            paths.prefix.display(),
            env!("CARGO_PKG_VERSION"),
            jiff::Timestamp::now()
        )
        .into_bytes()),
    );
    section("host/facts.json", Ok(json(&inst.facts)));
    section("host/uname.txt", Ok(command("uname", &["-a"])));
    section(
        "host/os-release",
        std::fs::read("/etc/os-release").map_err(|e| e.to_string()),
    );
    section("host/df.txt", Ok(command("df", &["-hP"])));
    section("host/free.txt", Ok(command("free", &["-b"])));
    section(
        "host/loadavg.txt",
        std::fs::read("/proc/loadavg").map_err(|e| e.to_string()),
    );
    section(
        "status.json",
        berth_lifecycle::supervisor::status(paths)
            .map(|s| {
                json(&serde_json::json!({
                    "supervisor_pid": s.supervisor_pid,
                    "services": s.services,
                    "jobs": s.jobs,
                }))
            })
            .map_err(|e| e.to_string()),
    );
    section(
        "history.json",
        berth_state::StateDb::open_read_only(paths.state_db())
            .map_err(|e| e.to_string())
            .and_then(|db| match db {
                Some(db) => db.history(200).map(|h| json(&h)).map_err(|e| e.to_string()),
                None => Ok(b"[]\n".to_vec()),
            }),
    );
    let mut effective = berth_model::render_effective(&inst.manifest, &inst.config);
    if !m.secrets.is_empty() {
        effective.push_str("\n# Secrets (values never shown):\n");
        for name in m.secrets.keys() {
            let _ = writeln!(effective, "#   {name} = ********");
        }
    }
    section("config/effective.toml", Ok(effective.into_bytes()));
    section(
        "config/site.toml",
        if inst.config_exists {
            std::fs::read(&inst.config_path).map_err(|e| e.to_string())
        } else {
            Ok(b"# no site config: every setting has its default\n".to_vec())
        },
    );
    section("config/berth.toml", Ok(m.source_text.clone().into_bytes()));
    section(
        "preflight.json",
        berth_lifecycle::preflight_report(inst)
            .map(|r| json(&r))
            .map_err(|e| e.to_string()),
    );
    let packages: Vec<String> = m
        .components
        .iter()
        .filter(|(n, _)| inst.config.enabled_components.contains(*n))
        .flat_map(|(_, c)| c.packages.iter().cloned())
        .collect();
    section(
        "packages.json",
        berth_host::packages::installed_versions(&packages)
            .map(|v| json(&v))
            .map_err(|e| e.to_string()),
    );
    section(
        "releases.txt",
        std::fs::read_dir(paths.releases())
            .map(|d| {
                let mut names: Vec<String> = d
                    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.sort();
                format!("{}\n", names.join("\n")).into_bytes()
            })
            .map_err(|e| e.to_string()),
    );
    if let (Some(parent), Some(name)) = (
        paths.supervision_plan().parent().map(Path::to_owned),
        paths.supervision_plan().file_name().map(PathBuf::from),
    ) {
        section(
            "supervisor/plan.json",
            SafeDir::open_trusted(&parent)
                .and_then(|d| d.read(&name))
                .map_err(|e| e.to_string()),
        );
    }
    tree(&paths.etc, "rendered", None, &mut out);
    tree(&paths.log, "logs", Some(log_lines), &mut out);
    out
}
