//! Fault points: named moments at which the test build can kill berth with SIGKILL,
//! to prove that every interrupted operation is finished or undone by the next
//! command. Compiled in only with the cargo feature `fault-injection`, which the test
//! suite turns on; in any other build [`point`] does nothing.

/// The environment variable naming the fault point to die at.
pub const ENV: &str = "BERTH_FAULT";

/// Die by SIGKILL here if `BERTH_FAULT` names this point (test builds only).
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Does nothing: this build has no fault points.
#[cfg(not(feature = "fault-injection"))]
#[inline]
pub fn point(_name: &str) {}

/// Whether this build has fault points (the test suite checks, so a test of an
/// interruption cannot pass by never interrupting).
pub const ENABLED: bool = cfg!(feature = "fault-injection");
