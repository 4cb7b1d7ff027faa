//! berth backup archives.
