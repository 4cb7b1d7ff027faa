//! The health gate: a change is kept only once the app answers through its front door.

use std::time::Duration;

use berth_render::DesiredState;

use crate::error::{LifecycleError, Result};
use crate::http;

/// How long `up` and `reconfigure` wait for the app to answer through its front door.
const HEALTH_DEADLINE: Duration = Duration::from_mins(3);

/// Wait until the app answers at its health URL (at most [`HEALTH_DEADLINE`]); at once
/// when the node has none.
pub fn wait_healthy(state: &DesiredState) -> Result<()> {
    // A node of a fleet that answers nothing at the app's URL (a database node).
    if state.health_url.is_empty() {
        return Ok(());
    }
    let url = url::Url::parse(&state.health_url)
        .map_err(|_| LifecycleError::HealthUrl(state.health_url.clone()))?;
    http::wait_ok(&url, HEALTH_DEADLINE)
        .map(|_| ())
        .map_err(|last| LifecycleError::Health {
            url: url.to_string(),
            secs: HEALTH_DEADLINE.as_secs(),
            last,
        })
}

/// What the health gate waits for, for progress lines.
pub fn waiting_for(state: &DesiredState) -> String {
    if state.health_url.is_empty() {
        "Services ready (this node answers nothing at the app's URL)".to_owned()
    } else {
        format!("Waiting for {}", state.health_url)
    }
}
