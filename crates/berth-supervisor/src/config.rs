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

/// Exponential restart backoff: `initial × 2^n`, capped at `max`; `n` goes back to
/// zero once a service has stayed up for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Uptime after which a service counts as healthy again.
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
}
