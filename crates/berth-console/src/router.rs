//! The console's routes, every one under its base path, behind the security headers.

use axum::Router;
use axum::http::header;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::web::{Shared, headers};
use crate::{actions, pages, setup};

pub(crate) fn router(state: Shared) -> Router {
    let base = state.base.clone();
    // Every route under the base path (`/berth/…`), and the base alone sent to its
    // home page.
    let at = |path: &str| format!("{base}{path}");
    let mut routes = Router::new()
        .route(&at("/"), get(pages::status_page))
        .route(&at("/api/status"), get(pages::status_json))
        .route(&at("/history"), get(pages::history_page))
        .route(&at("/logs/{service}"), get(pages::log_page))
        .route(&at("/logs/{service}/follow"), get(pages::follow_log))
        .route(&at("/login"), get(pages::login_page).post(pages::login))
        .route(&at("/logout"), post(pages::logout))
        .route(&at("/backups"), get(actions::backups_page))
        .route(&at("/backups/create"), post(actions::backup_create))
        .route(&at("/backups/verify"), post(actions::backup_verify))
        .route(&at("/upgrades"), get(actions::upgrades_page))
        .route(&at("/upgrades/plan"), post(actions::upgrade_plan))
        .route(&at("/upgrades/apply"), post(actions::upgrade_apply))
        .route(&at("/tasks"), get(actions::tasks_page))
        .route(&at("/tasks/{id}"), get(actions::task_page))
        .route(&at("/api/tasks/{id}"), get(actions::task_json))
        .route(
            &at("/setup"),
            get(setup::setup_page).post(setup::setup_check),
        )
        .route(&at("/setup/apply"), post(setup::setup_apply))
        .route(
            &at("/static/console.css"),
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css")],
                    include_str!("console.css"),
                )
            }),
        )
        .route(
            &at("/static/console.js"),
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript")],
                    include_str!("console.js"),
                )
            }),
        );
    if !base.is_empty() {
        let home = at("/");
        routes = routes.route(&base, get(move || async move { Redirect::to(&home) }));
    }
    routes.layer(middleware::from_fn(headers)).with_state(state)
}
