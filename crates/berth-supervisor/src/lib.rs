//! berth-supervisor (work in progress).
