//! berth-state (work in progress).
