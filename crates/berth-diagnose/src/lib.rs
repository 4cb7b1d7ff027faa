//! `berth diagnose`: one archive an administrator can hand to support, showing what is
//! wrong without leaking a password.
//!
//! It holds the host's facts, the supervisor's status, the history, the effective
//! config, the manifest, every rendered file, the tail of every log, the supervision
//! plan, package versions, the releases present and the preflight report. Every file
//! passes through the instance's [`berth_redact::Redactor`] (its secret values, berth's
//! patterns, the manifest's `[diagnose] redact`) on its way in, and `redaction.json`
//! says what was taken out of which file, by rule, never the values.
//!
//! Root reads what service users can change (their logs, the rendered files in their
//! directories) through descriptors beneath the prefix, never following a symlink and
//! opening nothing but regular files: a log swapped for a link to `/etc/shadow` is
//! refused, not copied into the bundle. A section that cannot be read becomes a
//! `<name>.error.txt` in the bundle; the rest is still written.

mod collect;
mod report;

pub use report::{ErrorReport, KEEP, error_report};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_lifecycle::Instance;
use serde::Serialize;

/// What `berth diagnose` writes where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The archive to write (never over an existing file).
    pub out: PathBuf,
    /// Lines kept from the end of each log.
    pub log_lines: usize,
}

/// What was taken out of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRedaction {
    /// The file's name in the bundle.
    pub file: String,
    /// Removals by rule (`secret:db_password`, `password-assignment`, `manifest:0`).
    pub removed: BTreeMap<String, usize>,
}

/// The bundle written.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Files in it.
    pub files: usize,
    /// Removals in all files.
    pub removed: usize,
    /// What was taken out, file by file (files with nothing taken out are not listed).
    pub redaction: Vec<FileRedaction>,
    /// Secrets too short to be searched for (named, never shown).
    pub secrets_not_searched: Vec<String>,
}

/// Why no bundle was written.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    /// The manifest's `[diagnose] redact` has a pattern that does not compile (a
    /// validated manifest has none).
    #[error("`diagnose.redact[{index}]` is not a regular expression: {why}")]
    Pattern {
        /// Its index.
        index: usize,
        /// Why.
        why: String,
    },
    /// The instance's secrets could not be read: without them nothing could be
    /// redacted, so nothing is written.
    #[error("The instance's secrets could not be read, so nothing could be redacted: {0}")]
    Secrets(berth_host::HostError),
    /// Writing the archive.
    #[error("Failed to write the bundle {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: berth_host::HostError,
    },
    /// Packing it.
    #[error("Failed to pack the bundle: {0}")]
    Pack(std::io::Error),
}

/// The default name of a bundle: `berth-diagnose-<app>-<UTC time>.tar.zst`.
pub fn default_name(app: &str) -> String {
    format!(
        "berth-diagnose-{app}-{}.tar.zst",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    )
}

/// Collect, redact and write the bundle of `inst`.
///
/// # Errors
/// Only when nothing safe can be written: the secrets unreadable, a bad pattern, the
/// archive not written. A section that fails is in the bundle as its error.
pub fn diagnose(inst: &Instance, opts: &Options) -> Result<Report, DiagnoseError> {
    write(inst, opts, Vec::new())
}

/// The bundle of `inst` with `first` (already text, redacted like the rest) before
/// everything else.
fn write(
    inst: &Instance,
    opts: &Options,
    first: Vec<(String, Vec<u8>)>,
) -> Result<Report, DiagnoseError> {
    let secrets = collect::secrets(&inst.paths).map_err(DiagnoseError::Secrets)?;
    let redactor = berth_redact::Redactor::new(secrets, &inst.manifest.manifest.diagnose.redact)
        .map_err(|e| DiagnoseError::Pattern {
            index: e.index,
            why: e.why,
        })?;
    let mut files = first;
    files.extend(collect::all(inst, opts.log_lines));
    let mut redaction = Vec::new();
    let mut packed = Vec::new();
    let mut removed = 0;
    for (name, bytes) in files {
        let (text, counts) = redactor.redact(&String::from_utf8_lossy(&bytes));
        if !counts.is_empty() {
            removed += counts.values().sum::<usize>();
            redaction.push(FileRedaction {
                file: name.clone(),
                removed: counts,
            });
        }
        packed.push((name, text.into_bytes()));
    }
    let secrets_not_searched = redactor.too_short().to_vec();
    let summary = serde_json::json!({
        "removed": removed,
        "files": redaction,
        "secrets_not_searched": secrets_not_searched,
        "rules": "secret:<name> is a secret of the instance (its value, URL-encoded or JSON-escaped); \
                  password-assignment, password-option, authorization-header, url-credentials, \
                  private-key, age-secret-key and token-prefix are berth's own patterns; \
                  manifest:<n> is the n-th pattern of the manifest's [diagnose] redact",
    });
    packed.push((
        "redaction.json".to_owned(),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    ));
    let bytes = pack(&packed).map_err(DiagnoseError::Pack)?;
    berth_host::fsutil::write_new(&opts.out, &bytes, 0o600, None).map_err(|source| {
        DiagnoseError::Write {
            path: opts.out.clone(),
            source,
        }
    })?;
    Ok(Report {
        path: opts.out.clone(),
        bytes: bytes.len() as u64,
        files: packed.len(),
        removed,
        redaction,
        secrets_not_searched,
    })
}

/// The files as a zstd-compressed tar under `berth-diagnose/`.
fn pack(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            Path::new("berth-diagnose").join(name),
            bytes.as_slice(),
        )?;
    }
    let raw = tar.into_inner()?;
    zstd::encode_all(raw.as_slice(), 3)
}
