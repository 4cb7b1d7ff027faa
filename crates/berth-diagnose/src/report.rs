//! Error reports: when `up`, `reconfigure`, `upgrade` or `restore` fails, the same
//! redacted bundle as `berth diagnose`, with the error on top, kept under
//! `state/reports/` (the newest ten) and sent on only when the site config names an
//! endpoint (`diagnose.report_url`).

use std::path::PathBuf;
use std::time::Duration;

use berth_lifecycle::Instance;

use crate::DiagnoseError;

/// Reports kept under `state/reports/`.
pub const KEEP: usize = 10;

/// What happened to one error report.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// Where it was written.
    pub path: PathBuf,
    /// Removals made in it.
    pub removed: usize,
    /// `Some(Ok(status))` when it was sent and the endpoint answered, `Some(Err(why))`
    /// when sending failed, `None` when no endpoint is set.
    pub sent: Option<Result<u16, String>>,
}

/// The endpoint reports go to (`diagnose.report_url`), if one is set.
fn report_url(inst: &Instance) -> Option<String> {
    inst.config
        .settings
        .get(berth_model::builtin::DIAGNOSE_GROUP)
        .and_then(|g| g.get("report_url"))
        .and_then(|r| match &r.value {
            berth_model::SettingValue::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
}

/// Write (and send, if asked to) the report of `command` failing with `error`. An
/// instance that has no state directory yet (a first `up` refused before it changed
/// anything) gets none: writing one would change the host.
///
/// # Errors
/// When the report cannot be made or written; sending failures are in the result.
pub fn error_report(
    inst: &Instance,
    command: &str,
    error: &str,
) -> Result<Option<ErrorReport>, DiagnoseError> {
    let paths = &inst.paths;
    if !paths.state.is_dir() {
        return Ok(None);
    }
    let dir = paths.error_reports();
    berth_host::fsutil::ensure_dir(&dir, 0o700).map_err(|source| DiagnoseError::Write {
        path: dir.clone(),
        source,
    })?;
    let name = format!(
        "{}-{}.tar.zst",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ"),
        command.replace(' ', "-")
    );
    let path = dir.join(name);
    let error_text = format!(
        "berth {} `{command}` failed:\n\n{error}\n",
        env!("CARGO_PKG_VERSION")
    );
    let report = crate::write(
        inst,
        &crate::Options {
            out: path.clone(),
            log_lines: 200,
        },
        vec![("error.txt".to_owned(), error_text.into_bytes())],
    )?;
    prune(&dir);
    let sent = report_url(inst).map(|url| send(&url, &path, inst, command));
    Ok(Some(ErrorReport {
        path,
        removed: report.removed,
        sent,
    }))
}

/// Keep the newest [`KEEP`] reports (their names sort by time).
fn prune(dir: &std::path::Path) {
    // By descriptor, like every removal root makes: only regular files named as
    // reports, in the directory opened once.
    let Ok(reports) = berth_host::beneath::SafeDir::open_trusted(dir) else {
        return;
    };
    let Ok(entries) = reports.names() else {
        return;
    };
    let mut names: Vec<String> = entries
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar.zst"))
        .filter(|n| {
            reports
                .stat(std::path::Path::new(n))
                .ok()
                .flatten()
                .is_some_and(|s| s.is_file())
        })
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(KEEP);
    for n in &names[..excess] {
        let _ = reports.remove_file(std::path::Path::new(n));
    }
}

/// POST the report to `url`: the archive as the body.
fn send(url: &str, path: &std::path::Path, inst: &Instance, command: &str) -> Result<u16, String> {
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent
        .post(url)
        .header("Content-Type", "application/zstd")
        .header("X-Berth-App", &inst.manifest.manifest.app.name)
        .header("X-Berth-Version", &inst.manifest.manifest.app.version)
        .header("X-Berth-Command", command)
        .send(&body[..])
        .map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{KEEP, prune};

    /// The newest ten reports stay (names sort by time); other files and a directory
    /// named like a report are left alone.
    #[test]
    fn only_the_newest_reports_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..12 {
            std::fs::write(dir.path().join(format!("2026010{i:02}-up.tar.zst")), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("0-dir.tar.zst")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        prune(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), KEEP + 2, "{left:?}");
        assert!(left.contains(&"0-dir.tar.zst".to_owned()));
        assert!(left.contains(&"notes.txt".to_owned()));
        assert!(!left.contains(&"202601000-up.tar.zst".to_owned()));
        assert!(!left.contains(&"202601001-up.tar.zst".to_owned()));
        assert!(left.contains(&"202601011-up.tar.zst".to_owned()));
    }
}
