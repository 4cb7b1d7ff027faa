//! What the unit tests of backups and restores share: the fixture instance on a prefix
//! of its own, and progress that keeps what it is told.

use std::cell::RefCell;
use std::path::Path;

use berth_lifecycle::{Instance, Locate, Progress};

/// The small fixture app, on a prefix of its own (nothing is installed or started).
pub fn instance(prefix: &Path) -> Instance {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
    berth_lifecycle::instance::open(&Locate {
        prefix: Some(prefix.to_path_buf()),
        manifest: Some(manifest),
        ..Locate::default()
    })
    .unwrap()
}

/// Progress that keeps the notes it is given.
#[derive(Default)]
pub struct Notes(pub RefCell<Vec<String>>);

impl Progress for Notes {
    fn begin(&self, _: &str) {}
    fn end(&self, _: &str) {}
    fn note(&self, line: &str) {
        self.0.borrow_mut().push(line.to_owned());
    }
}
