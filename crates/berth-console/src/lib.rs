//! `berth console`: the web interface berth serves itself, bound to 127.0.0.1 by
//! default (put the app's nginx in front of it to reach it from elsewhere).
//!
//! - **Sign-in** with the console password, generated once like any secret
//!   (`secrets/berth-console-password`, mode 0600) and never put in a URL; the form
//!   carries a token of its own (login CSRF).
//! - **Sessions**: a random 256-bit token in a cookie that is `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, and `Secure` when the request came over HTTPS (through
//!   a proxy that says so); only its SHA-256 is kept; it ends after 12 hours, or 1 hour
//!   unused, or at sign-out.
//! - **CSRF**: every form carries the session's token; a POST without it, or with
//!   another, is refused (403) and changes nothing.
//! - **Lockout**: after 5 failed sign-ins within 15 minutes, every sign-in (the right
//!   password too) is refused for 15 minutes.
//! - **Pages**, rendered on the server (minijinja, HTML-escaped): the status of every
//!   service (refreshed live by a small script, no build step) with links to the
//!   metrics endpoints, each service's log (followed live on request), the history
//!   with who made each change, backups (list, create, verify), the upgrades in
//!   `upgrade.source` (plan, apply), and, on an instance without a site config, the
//!   first-run setup. Every answer carries a strict Content-Security-Policy and is not
//!   cached.
//! - **Changes** are made by berth itself, the same commands a terminal would run, as
//!   tasks whose output the browser follows ([`tasks`]); the history records the
//!   console session that asked.

mod actions;
mod auth;
mod pages;
mod router;
mod setup;
mod tasks;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use berth_layout::Paths;

pub use auth::{LOCKOUT_FAILURES, PASSWORD_SECRET};

/// What the console serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The instance.
    pub paths: Paths,
    /// The app's name, for page titles.
    pub app: String,
    /// How berth finds the instance (its manifest, its site config).
    pub loc: berth_lifecycle::Locate,
    /// Where the console is mounted: `/` alone, or a path such as `/berth/` when the
    /// app's web server passes that path on to it.
    pub base_path: String,
    /// The berth program that carries out the console's changes.
    pub berth: std::path::PathBuf,
    /// The options that name the instance to it (`--prefix …`, `--config …`).
    pub global_args: Vec<String>,
}

/// Why the console cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console password could not be made or read.
    #[error("The console password could not be made or read: {0}")]
    Password(#[from] berth_host::HostError),
    /// The address could not be bound, or serving failed.
    #[error("The console cannot listen on {listen}: {source}")]
    Listen {
        /// Where.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The console password's file (made on first start).
pub fn password_file(paths: &Paths) -> std::path::PathBuf {
    paths.secret(PASSWORD_SECRET)
}

/// Serve until SIGINT or SIGTERM. Builds its own runtime: call it from a thread that
/// is not inside one.
///
/// # Errors
/// The password cannot be made, or the address cannot be bound.
pub fn serve(config: &Config) -> Result<(), ConsoleError> {
    let password = auth::ensure_password(&config.paths)?;
    let state = Arc::new(web::State::new(config, &password));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ConsoleError::Listen {
            listen: config.listen,
            source,
        })?;
    let listen = config.listen;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ConsoleError::Listen { listen, source })?;
        let app = router::router(state);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        })
        .await
        .map_err(|source| ConsoleError::Listen { listen, source })
    })
}
