//! Reading an input file (site config, manifest, template) the careful way.
//!
//! berth runs as root and is pointed at files by the administrator. A typo must not
//! mean "no file, so all defaults", a FIFO must not hang it, `/dev/zero` must not fill
//! memory, and bytes that are not UTF-8 must be reported with their position.

use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::{Diagnostic, Diagnostics};

/// Inputs larger than this are refused (no manifest, template or site config comes near).
pub const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// Why an input could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// Nothing exists at the path (not even a dangling symlink).
    Missing(Diagnostics),
    /// Something is there but it is not a readable, UTF-8, regular file of sane size.
    Unreadable(Diagnostics),
}

impl InputError {
    /// The diagnostics, whatever the reason.
    pub fn into_diagnostics(self) -> Diagnostics {
        match self {
            InputError::Missing(d) | InputError::Unreadable(d) => d,
        }
    }
}

/// Reads `path` as UTF-8 text. `what` names it in errors ("the site config"), `fix`
/// says how to point berth at the right file.
///
/// Opens without blocking (a FIFO or device is refused, never waited on), refuses
/// anything that is not a regular file, caps the size at [`MAX_INPUT_BYTES`] and
/// reports invalid UTF-8 at its line and column. A dangling symlink or a symlink loop
/// is an error, not a missing file.
pub fn read_input(path: &Path, what: &str, fix: &str) -> Result<String, InputError> {
    let shown = path.display().to_string();
    let fail = |why: String| {
        InputError::Unreadable(
            Diagnostic::without_position(&shown, format!("Failed to read {what}: {why}"))
                .with_help(fix)
                .into(),
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(_) => {
                    let target = std::fs::read_link(path)
                        .map(|t| format!(" to `{}`", t.display()))
                        .unwrap_or_default();
                    fail(format!(
                        "it is a symlink{target} that points at nothing (a dangling symlink)"
                    ))
                }
                Err(_) => InputError::Missing(
                    Diagnostic::without_position(
                        &shown,
                        format!("Failed to read {what}: no such file"),
                    )
                    .with_help(fix)
                    .into(),
                ),
            });
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(fail("it is a symlink loop".to_owned()));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(fail(format!("it is {kind}, not a regular file")));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(fail(format!(
            "it has {} bytes, more than the {MAX_INPUT_BYTES} an input may have",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    // A file that grows while it is read is cut at the cap plus one, then refused.
    (&mut file)
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(fail(format!(
            "it has more than the {MAX_INPUT_BYTES} bytes an input may have"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = &e.as_bytes()[..at];
        let line = valid.split(|b| *b == b'\n').count();
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
        let mut d = Diagnostic::without_position(
            &shown,
            format!(
                "Failed to read {what}: it is not UTF-8 text (invalid byte 0x{:02x} at line {line}, column {column})",
                e.as_bytes()[at]
            ),
        )
        .with_help("save the file as UTF-8");
        d.line = line;
        d.column = column;
        InputError::Unreadable(d.into())
    })
}

#[cfg(test)]
mod tests {
    use super::{InputError, read_input};

    fn err(path: &std::path::Path) -> String {
        match read_input(path, "the site config", "fix it") {
            Ok(_) => panic!("read {}", path.display()),
            Err(InputError::Unreadable(d)) => d.to_string(),
            Err(InputError::Missing(d)) => format!("missing: {d}"),
        }
    }

    #[test]
    fn refuses_what_is_not_a_regular_utf8_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(err(d).contains("it is a directory"));
        assert!(err(std::path::Path::new("/dev/zero")).contains("a character device"));
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Would block forever without O_NONBLOCK.
        assert!(err(&fifo).contains("FIFO"));
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        assert!(err(&d.join("dangling")).contains("dangling symlink"));
        std::os::unix::fs::symlink(d.join("loop"), d.join("loop")).unwrap();
        assert!(err(&d.join("loop")).contains("symlink loop"));
        assert!(err(&d.join("absent")).starts_with("missing: "));
        std::fs::write(d.join("latin1"), b"a = 1\nb = \"caf\xe9\"\n").unwrap();
        let e = err(&d.join("latin1"));
        assert!(e.contains("line 2, column 9"), "{e}");
        std::fs::write(d.join("ok"), "a = 1\n").unwrap();
        assert_eq!(
            read_input(&d.join("ok"), "x", "y").ok().as_deref(),
            Some("a = 1\n")
        );
    }
}
