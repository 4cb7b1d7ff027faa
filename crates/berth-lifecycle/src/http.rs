//! Waiting for the app to answer through its front door.

use std::time::{Duration, Instant};

/// Wait until `url` answers with a status below 400, backing off from 100 ms to 2 s.
/// Returns the last status or error seen when the deadline passes.
pub fn wait_ok(url: &url::Url, deadline: Duration) -> Result<u16, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut last;
    loop {
        // The same GET the supervisor's readiness probes make.
        match berth_supervisor::http_get_status(url.as_str(), Duration::from_secs(5)) {
            Ok(code) if code < 400 => return Ok(code),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e,
        }
        if start.elapsed() >= deadline {
            return Err(last);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
