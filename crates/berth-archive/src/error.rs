//! The error type of every archive operation.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading, verifying or extracting an
/// archive, or while encrypting or decrypting secrets.
///
/// Callers match on the variant: [`Truncated`](Self::Truncated),
/// [`Corrupt`](Self::Corrupt), [`NotAnArchive`](Self::NotAnArchive) and
/// [`Io`](Self::Io) are the ones a restore or a listing usually distinguishes.
/// No variant ever carries a secret value or file content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A file or directory could not be read, written or inspected.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What was being done, e.g. "read" or "create the directory".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a berth backup archive at all.
    #[error("`{}` is not a berth backup archive{}", path.display(), why_suffix(reason))]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The archive ends early: it was cut short, typically by an interrupted copy.
    #[error("`{}` is truncated: {reason} (was the copy interrupted?)", path.display())]
    Truncated {
        /// The archive.
        path: PathBuf,
        /// Where it ends, e.g. "it ends before its index".
        reason: String,
    },
    /// The archive is complete but its content does not check out.
    #[error("`{}` is corrupt: {reason}", path.display())]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// What does not match, naming the entry when there is one.
        reason: String,
    },
    /// The archive was written by a newer berth, in a format this one does not read.
    #[error(
        "`{}` uses archive format {format}, but this berth reads formats 2 to {supported}: \
         restore it with a newer berth",
        path.display()
    )]
    UnsupportedFormat {
        /// The archive.
        path: PathBuf,
        /// The format number in its index.
        format: u32,
        /// The newest format number this crate reads (the one it writes).
        supported: u32,
    },
    /// The archive is of format 1, which had no signature: nothing proves who wrote it.
    #[error(
        "`{}` is an unsigned archive (format 1): this berth accepts only signed archives \
         (formats 2 and 3), since an unsigned one may have been written by anyone with access \
         to the backup target; take a new backup with this berth",
        path.display()
    )]
    Unsigned {
        /// The archive.
        path: PathBuf,
    },
    /// No key to check the archive's signature against was given.
    #[error(
        "cannot authenticate `{}`: no trusted signing key (pass the key file exported by \
         `berth backup key --export` with `--key FILE`, or run on the instance that made it)",
        path.display()
    )]
    NoTrustedKey {
        /// The archive.
        path: PathBuf,
    },
    /// The index's signature does not match its content: it was altered or forged.
    #[error(
        "`{}` has an invalid signature: its index was altered or forged after it was \
         signed; do not restore it",
        path.display()
    )]
    BadSignature {
        /// The archive.
        path: PathBuf,
    },
    /// The archive is validly signed, but by a key that is not trusted.
    #[error(
        "`{}` is signed by {signer}, which is not a trusted key (trusted: {}); if you made \
         it, pass that instance's key file with `--key FILE`, otherwise do not restore it",
        path.display(),
        trusted.join(", ")
    )]
    UntrustedSigner {
        /// The archive.
        path: PathBuf,
        /// The key that signed it.
        signer: String,
        /// The keys that were trusted.
        trusted: Vec<String>,
    },
    /// A file named like an archive whose name is not the one its signed metadata gives.
    #[error(
        "`{}` is not what its name says: its signed metadata names it `{signed}`; an older \
         or other archive may have been copied over this name, so it is not restored (check \
         who can write to the backup target; if you renamed it yourself, give it back its \
         name)",
        path.display()
    )]
    NameMismatch {
        /// The archive.
        path: PathBuf,
        /// The name its signed metadata gives.
        signed: String,
    },
    /// An entry would be written outside the extraction directory, or through a symlink.
    #[error("`{}` contains an unsafe entry `{entry}`: {reason}; nothing was extracted from it", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry path as stored.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A path given to the writer cannot be stored in an archive.
    #[error("`{path}` cannot be stored in a backup archive: {reason}")]
    InvalidPath {
        /// The path inside the archive.
        path: String,
        /// Why not.
        reason: String,
    },
    /// A source given to the writer is not something it can store.
    #[error("`{}` cannot be backed up: {reason}", path.display())]
    InvalidSource {
        /// The source file or directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A file changed while it was being read, so its copy in the archive would be torn.
    #[error(
        "`{}` changed size while it was being backed up (from {expected} bytes, now {actual}): \
         stop whatever writes to it and back up again",
        path.display()
    )]
    SourceChanged {
        /// The source file.
        path: PathBuf,
        /// The size it had when the copy started.
        expected: u64,
        /// The size observed while copying.
        actual: u64,
    },
    /// A file berth would create already exists, and berth never replaces one.
    #[error("`{}` already exists{}", path.display(), why_suffix(reason))]
    AlreadyExists {
        /// The file.
        path: PathBuf,
        /// What to do about it.
        reason: String,
    },
    /// The writer failed earlier; the archive it was writing has been abandoned.
    #[error("the archive `{}` was abandoned after an earlier error", path.display())]
    Abandoned {
        /// The archive that was being written.
        path: PathBuf,
    },
    /// The secrets were encrypted to another key than the one given.
    #[error(
        "this backup's secrets were encrypted to a different backup key \
         (the key given has recipient {recipient})"
    )]
    WrongKey {
        /// The public recipient of the identity that was tried (never the secret key).
        recipient: String,
    },
    /// A key or recipient is not a valid age X25519 key.
    #[error("not a valid backup key: {reason}")]
    InvalidKey {
        /// What is wrong, without the key itself.
        reason: String,
    },
    /// The encrypted secrets cannot be decrypted or unpacked, or could not be encrypted.
    #[error("the backup's encrypted secrets are unusable: {reason}")]
    Secrets {
        /// What failed, without any secret value.
        reason: String,
    },
}

fn why_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl ArchiveError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_path(path: &str, reason: impl Into<String>) -> Self {
        Self::InvalidPath {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}
