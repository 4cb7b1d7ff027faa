//! berth-render (work in progress).
