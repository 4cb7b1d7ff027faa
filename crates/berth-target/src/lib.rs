//! berth backup targets and retention.
