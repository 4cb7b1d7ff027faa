//! berth-host (work in progress).
