//! Terminal output: progress spinners on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_lifecycle::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Progress on stderr: a spinner per step on a terminal, one line per step otherwise.
pub struct Terminal {
    quiet: bool,
    tty: bool,
    current: Mutex<Option<(ProgressBar, String, Instant)>>,
}

impl Terminal {
    /// Progress for this process's stderr.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    fn finish_current(&self, detail: &str) {
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if let Some((bar, step, started)) = cur.take() {
            let secs = started.elapsed().as_secs_f64();
            let line = if detail.is_empty() {
                format!("✓ {step} ({secs:.1} s)")
            } else {
                format!("✓ {step}: {detail} ({secs:.1} s)")
            };
            if self.tty {
                bar.finish_and_clear();
            }
            if !self.quiet {
                eprintln!("{line}");
            }
        }
    }
}

impl Progress for Terminal {
    fn begin(&self, step: &str) {
        self.finish_current("");
        let bar = if self.tty && !self.quiet {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(step.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some((bar, step.to_owned(), Instant::now()));
        }
    }

    fn end(&self, detail: &str) {
        self.finish_current(detail);
    }

    fn note(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(mut cur) = self.current.lock()
            && let Some((bar, step, _)) = cur.take()
        {
            bar.finish_and_clear();
            eprintln!("✗ {step}");
        }
    }
}
