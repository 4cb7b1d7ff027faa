//! Where berth puts what under an instance's prefix: the one place that knows the
//! names of `docs/layout.md`.
//!
//! Every crate that reads or writes an instance's files asks this crate for the path
//! instead of spelling it, so the layout can be read (and changed) in one file and a
//! test can hold it against the documentation.
//!
//! - [`Paths`]: the layout of one instance, one method per row of `docs/layout.md`.
//! - [`logs`]: the names of a rotated log (`current`, `current.1`, …), shared by the
//!   supervisor that writes them and the readers that follow them.
//! - [`bundle`]: the names next to a bundled component while it is being built.
//!
//! ```
//! use std::path::Path;
//! use berth_layout::Paths;
//!
//! let p = Paths::for_prefix(Path::new("/var/opt/berth/app"), "1.2.0");
//! assert_eq!(p.service_log("web"), Path::new("/var/opt/berth/app/log/web/current"));
//! assert_eq!(p.bundle_dir("app"), Path::new("/var/opt/berth/app/releases/1.2.0/app"));
//! ```

pub mod bundle;
pub mod logs;
mod paths;

pub use paths::Paths;
