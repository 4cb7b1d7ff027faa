//! How lifecycle steps report progress, so the library never prints.

/// Receives progress from lifecycle operations. The CLI shows it on the terminal.
pub trait Progress {
    /// A step starts, e.g. "Installing packages".
    fn begin(&self, step: &str);
    /// The current step finished; `detail` says what it did (may be empty).
    fn end(&self, detail: &str);
    /// A line of information outside any step.
    fn note(&self, line: &str);
    /// The current step moves bytes: show a bar with throughput (`total` when known).
    fn bytes(&self, _total: Option<u64>) {}
    /// Bytes done so far in the current step (cumulative).
    fn advance(&self, _done: u64) {}
    /// A callback that reports bytes done in the current step from anywhere (byte
    /// streams call it from deep inside their loops).
    fn byte_sink(&self) -> Box<dyn FnMut(u64) + Send> {
        Box::new(|_| {})
    }
}

/// Progress that goes nowhere (tests, `--quiet`).
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str) {}
    fn end(&self, _: &str) {}
    fn note(&self, _: &str) {}
}
