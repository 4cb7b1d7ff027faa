//! The `berth` command (work in progress).
fn main() {}
