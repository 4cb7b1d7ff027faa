//! Outputs being made by a step that may be interrupted: a record written before the
//! step starts from nothing, removed when it succeeds. A record still there on the next
//! run means what is at the output's path is half-made (initdb killed half-way leaves a
//! cluster with a `PG_VERSION` that a hook's own check takes for a finished one), and
//! it is removed before the step runs again. Output that was there before the step
//! started never gets a record and is never removed.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::{HostError, Result, beneath, fsutil};

/// One step's output and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedOutput {
    record: PathBuf,
    output: PathBuf,
    within: PathBuf,
}

impl UnfinishedOutput {
    /// The step's `output`, strictly inside `within` (a directory root trusts, e.g.
    /// `<prefix>/data`), with its record at `record` (in a directory of root's).
    pub fn new(record: PathBuf, output: PathBuf, within: PathBuf) -> Self {
        Self {
            record,
            output,
            within,
        }
    }

    /// The output's path.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// If an earlier attempt did not finish, remove what it left at the output's path,
    /// by descriptors beneath `within` (no symlink below it is followed); whether
    /// anything was removed.
    pub fn clear_partial(&self) -> Result<bool> {
        if std::fs::symlink_metadata(&self.record).is_err() {
            return Ok(false);
        }
        let inside = self
            .output
            .strip_prefix(&self.within)
            .is_ok_and(|rel| !rel.as_os_str().is_empty());
        if !inside {
            // Only what lies beneath `within` is ever removed.
            return Err(HostError::NotBeneath {
                base: self.within.clone(),
                path: self.output.clone(),
            });
        }
        let (dir, rel) = beneath::locate(&self.within, &self.output)?;
        dir.remove_tree(&rel)
    }

    /// Before the step runs: write the record if the step starts from nothing.
    pub fn begin(&self) -> Result<()> {
        if std::fs::symlink_metadata(&self.output).is_ok() {
            return Ok(());
        }
        let dir = fsutil::parent_dir(&self.record);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| HostError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let text = format!("{}\n", self.output.display());
        fsutil::write_atomic(&self.record, text.as_bytes(), 0o600, None)
    }

    /// The step succeeded: its output is whole.
    pub fn finish(&self) -> Result<()> {
        match std::fs::remove_file(&self.record) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(HostError::Remove {
                    path: self.record.clone(),
                    source,
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, UnfinishedOutput) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let step = UnfinishedOutput::new(
            tmp.path().join("state/unfinished/initdb"),
            data.join("pg/main"),
            data,
        );
        (tmp, step)
    }

    /// An attempt that never finished leaves its record; the next run removes the
    /// half-made output and, once the step succeeds, the record.
    #[test]
    fn a_half_made_output_is_removed_before_the_step_runs_again() {
        let (_tmp, step) = setup();
        assert!(!step.clear_partial().unwrap());
        step.begin().unwrap();
        std::fs::create_dir_all(step.output()).unwrap();
        std::fs::write(step.output().join("PG_VERSION"), "15\n").unwrap();
        // Killed here. The next run:
        assert!(step.clear_partial().unwrap());
        assert!(!step.output().exists());
        step.begin().unwrap();
        std::fs::create_dir_all(step.output()).unwrap();
        step.finish().unwrap();
        assert!(!step.clear_partial().unwrap());
        assert!(step.output().exists());
    }

    /// Output that was there before the step started is never taken for a half-made one,
    /// even when the step then fails.
    #[test]
    fn output_from_before_is_never_removed() {
        let (_tmp, step) = setup();
        std::fs::create_dir_all(step.output()).unwrap();
        step.begin().unwrap();
        // The step fails: no finish.
        assert!(!step.clear_partial().unwrap());
        assert!(step.output().exists());
    }
}
