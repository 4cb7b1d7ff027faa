//! Service and job output: a size-rotated `current` file fed by pipe-reading tasks.
//!
//! Layout, as with runit's `svlogd`: `<log_dir>/current` is being written,
//! `current.1` is the most recent rotated file, `current.<keep>` the oldest kept.
//! Rotation happens at line boundaries, so a file only exceeds the limit when a
//! single line is longer than the limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::say::say;

/// A log file that rotates itself when it grows past `max_bytes`.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    dir: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

/// A log shared by the stdout and stderr readers of one process.
pub(crate) type SharedLog = Arc<Mutex<RotatingLog>>;

impl RotatingLog {
    /// Open (creating the directory) `<dir>/current` for appending.
    pub(crate) fn open(dir: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let file = open_append(&dir.join("current"))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
        })
    }

    /// Open and wrap for sharing between reader tasks.
    pub(crate) fn open_shared(dir: &Path, max_bytes: u64, keep: u32) -> io::Result<SharedLog> {
        Self::open(dir, max_bytes, keep).map(|log| Arc::new(Mutex::new(log)))
    }

    /// Append `data`, rotating before any line that would push `current` past the limit.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        for piece in data.split_inclusive(|byte| *byte == b'\n') {
            let len = piece.len() as u64;
            if self.size > 0 && self.size + len > self.max_bytes {
                self.rotate()?;
            }
            self.file.write_all(piece)?;
            self.size += len;
        }
        Ok(())
    }

    fn rotated(&self, index: u32) -> PathBuf {
        self.dir.join(format!("current.{index}"))
    }

    fn rotate(&mut self) -> io::Result<()> {
        let current = self.dir.join("current");
        if self.keep == 0 {
            self.file = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&current)?;
        } else {
            ignore_missing(fs::remove_file(self.rotated(self.keep)))?;
            for index in (1..self.keep).rev() {
                ignore_missing(fs::rename(self.rotated(index), self.rotated(index + 1)))?;
            }
            fs::rename(&current, self.rotated(1))?;
            self.file = open_append(&current)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Copy everything from `reader` (a child's stdout or stderr) into `log` until EOF.
///
/// Runs as its own task so a slow disk or a rotation never blocks the child for long:
/// the child only ever writes into the pipe buffer.
pub(crate) fn pump<R>(mut reader: R, log: SharedLog, owner: String) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0_u8; 16 * 1024];
        let mut reported = false;
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let result = log
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .write(&buf[..n]);
                    if let Err(err) = result
                        && !reported
                    {
                        reported = true;
                        say!("failed to write the log of `{owner}`: {err}");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_line_boundaries_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingLog::open(dir.path(), 100, 2).unwrap();
        for i in 0..100 {
            log.write(format!("line number {i:04}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["current", "current.1", "current.2"]);
        for name in &names {
            let text = fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 100, "{name} has {} bytes", text.len());
            assert!(text.ends_with('\n'));
        }
        let newest = fs::read_to_string(dir.path().join("current")).unwrap();
        assert!(newest.ends_with("line number 0099\n"));
    }
}
