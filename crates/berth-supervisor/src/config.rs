//! How the daemon is set up: paths, autostart and crash backoff.

use std::path::PathBuf;
use std::time::Duration;

/// Everything [`run_daemon`](crate::run_daemon) needs to know.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The control socket (created with mode 0600; only root and the daemon's own
    /// user may talk to it).
    pub socket: PathBuf,
    /// The JSON [`SupervisionPlan`](berth_supervisor_protocol::SupervisionPlan) to run.
    pub plan_path: PathBuf,
    /// Where the daemon writes its pid.
    pub pid_file: PathBuf,
    /// The daemon's own log. [`run_daemon`](crate::run_daemon) writes to stderr and
    /// never opens this file: whoever starts the daemon points its stdout and stderr
    /// here (opened with [`open_log_file`](crate::open_log_file), so it is not
    /// world-readable).
    pub log_file: PathBuf,
    /// Start every service (in dependency order) as soon as the daemon is up.
    pub autostart: bool,
    /// Delay between restarts of a crashing service.
    pub backoff: BackoffConfig,
}

/// When a crashed service is restarted. A service that had been up for `reset_after`
/// is restarted at once (like runit, which restarts at once a service that ran for more
/// than a second); one that crashes sooner waits `initial × 2^n`, capped at `max`, where
/// `n` counts its quick crashes in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Uptime after which a service counts as healthy again: its next crash is
    /// restarted at once and the count of quick crashes starts again from zero.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_mins(1),
            reset_after: Duration::from_mins(1),
        }
    }
}

impl BackoffConfig {
    /// The delay before restart number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1_u32 << attempt.min(30))
            .min(self.max)
    }

    /// How long to wait before restarting a service that crashed after running for
    /// `uptime` (`None`: it never got going, e.g. it failed its readiness probe or
    /// could not be spawned), when `attempt` quick crashes came before; and the count
    /// of quick crashes after this one.
    pub fn after_crash(&self, uptime: Option<Duration>, attempt: u32) -> (Duration, u32) {
        match uptime {
            Some(uptime) if uptime >= self.reset_after => (Duration::ZERO, 0),
            _ => (self.delay(attempt), attempt.saturating_add(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = BackoffConfig::default();
        let secs: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(u32::MAX), Duration::from_mins(1));
    }

    #[test]
    fn a_crash_after_the_reset_window_restarts_at_once() {
        let b = BackoffConfig::default();
        let long = Some(b.reset_after);
        // Up for the whole window: no delay, and the crash count starts again.
        assert_eq!(b.after_crash(long, 0), (Duration::ZERO, 0));
        assert_eq!(b.after_crash(long, 5), (Duration::ZERO, 0));
        // Quick crashes in a row: 1 s, 2 s, 4 s, … up to the cap.
        let mut attempt = 0;
        let mut secs = Vec::new();
        for _ in 0..8 {
            let (delay, next) = b.after_crash(Some(Duration::from_millis(300)), attempt);
            secs.push(delay.as_secs());
            attempt = next;
        }
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A long run then a quick crash: the quick crash waits the first delay again.
        let (delay, attempt) = b.after_crash(long, attempt);
        assert_eq!((delay, attempt), (Duration::ZERO, 0));
        assert_eq!(
            b.after_crash(Some(Duration::ZERO), attempt).0,
            Duration::from_secs(1)
        );
        // A start that never got going always backs off.
        assert_eq!(b.after_crash(None, 0).0, Duration::from_secs(1));
        assert_eq!(b.after_crash(None, 3).0, Duration::from_secs(8));
    }
}
