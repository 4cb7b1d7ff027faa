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

    fn bytes(&self, total: Option<u64>) {
        let Ok(cur) = self.current.lock() else {
            return;
        };
        if let Some((bar, step, _)) = cur.as_ref()
            && self.tty
            && !self.quiet
        {
            let template = if total.is_some() {
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}"
            } else {
                "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
            };
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(step.clone());
        }
    }

    fn byte_sink(&self) -> Box<dyn FnMut(u64) + Send> {
        let bar = self
            .current
            .lock()
            .ok()
            .and_then(|cur| cur.as_ref().map(|(bar, _, _)| bar.clone()));
        match bar {
            Some(bar) => Box::new(move |done| bar.set_position(done)),
            None => Box::new(|_| {}),
        }
    }

    fn advance(&self, done: u64) {
        if let Ok(cur) = self.current.lock()
            && let Some((bar, _, _)) = cur.as_ref()
        {
            bar.set_position(done);
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
