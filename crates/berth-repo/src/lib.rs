//! Package repositories the vendor publishes.
//!
//! - [`openpgp`]: the repository's OpenPGP signing key (ed25519), its keyring for
//!   apt's `signed-by`, cleartext and detached signatures;
//! - [`apt`]: an apt repository's `Packages` and `Release` files, rendered from what
//!   it holds (pure, snapshot-tested);
//! - [`aptrepo`]: adding `.deb` files to a repository on disk, reading back only what
//!   its signature covers;
//! - [`yum`]: a yum/dnf repository's metadata (`primary`, `filelists`, `other`,
//!   `repomd.xml`), rendered from what it holds (pure, snapshot-tested);
//! - [`yumrepo`]: adding `.rpm` files to a repository on disk, with a signed record of
//!   what it holds;
//! - [`deb822`], [`debfile`]: Debian's control format, and the control file of a `.deb`.

pub mod apt;
pub mod aptrepo;
pub mod deb822;
pub mod debfile;
pub mod openpgp;
pub mod yum;
pub mod yumrepo;

use std::path::PathBuf;

/// A repository could not be read, changed or signed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The signing key is unusable.
    #[error("{what}")]
    Key {
        /// What is wrong.
        what: String,
    },
    /// A signature does not check out, or a signed file is not what was signed.
    #[error("{what}")]
    Signature {
        /// What is wrong.
        what: String,
    },
    /// Control data is malformed.
    #[error("{file}:{line}: {what}")]
    Format {
        /// The file.
        file: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// An input is unusable.
    #[error("{what}")]
    Input {
        /// What is wrong and what to do.
        what: String,
    },
    /// A file could not be written safely.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// A file could not be read.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl RepoError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
