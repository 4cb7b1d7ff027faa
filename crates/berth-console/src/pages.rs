//! The pages that show the instance: sign-in and sign-out, status (and its JSON for
//! the live refresh), logs (followed live), history.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Form, Path as UrlPath, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_layout::Paths;
use serde::Deserialize;

use crate::auth::{SignIn, csrf_ok, token};
use crate::web::{
    CsrfForm, LOGIN_COOKIE, SESSION_COOKIE, Shared, State, base, client, cookie, ctx, forged,
    set_cookie, signed_in, state_configured,
};

/// Lines of a log the log page shows.
const LOG_LINES: usize = 200;

/// Log pages followed at once: each holds a thread while its browser is away.
const MAX_FOLLOWERS: usize = 16;

fn login_form(state: &State, headers: &HeaderMap, message: &str, code: StatusCode) -> Response {
    let login_csrf = token();
    let mut pairs = base(state, "Sign in", None);
    pairs.push(("login_csrf", login_csrf.clone().into()));
    pairs.push(("message", message.into()));
    pairs.push((
        "password_file",
        crate::password_file(&state.paths)
            .display()
            .to_string()
            .into(),
    ));
    let mut response = state.page("login.html", ctx(pairs));
    *response.status_mut() = code;
    let (name, value) = set_cookie(state, LOGIN_COOKIE, &login_csrf, Some(600), headers);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(name, v);
    }
    response
}

pub(crate) async fn login_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_some() {
        return state.redirect("/");
    }
    login_form(&state, &headers, "", StatusCode::OK)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    /// Who signs in, for the history (a shared password names nobody).
    #[serde(default)]
    name: String,
}

pub(crate) async fn login(
    Extract(state): Extract<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // The form must come from the page this browser was given (login CSRF).
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || expected != form.csrf {
        return login_form(
            &state,
            &headers,
            "The form expired or did not come from this console: sign in again.",
            StatusCode::FORBIDDEN,
        );
    }
    match state
        .auth
        .sign_in(&form.password, &form.name, &client(peer, &headers))
    {
        SignIn::Ok(token) => {
            let (name, value) = set_cookie(&state, SESSION_COOKIE, &token, None, &headers);
            let mut response = state.redirect("/");
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, v);
            }
            response
        }
        SignIn::Wrong => login_form(
            &state,
            &headers,
            "Wrong password.",
            StatusCode::UNAUTHORIZED,
        ),
        SignIn::Locked(left) => login_form(
            &state,
            &headers,
            &format!(
                "Too many failed sign-ins: sign-in is locked for {} more minute(s).",
                left.as_secs().div_ceil(60)
            ),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    }
}

pub(crate) async fn logout(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some((token, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    if !csrf_ok(&session, &form.csrf) {
        return forged();
    }
    state.auth.sign_out(&token);
    let (name, value) = set_cookie(&state, SESSION_COOKIE, "", Some(0), &headers);
    let mut response = state.redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(name, v);
    }
    response
}

fn status_value(paths: &Paths) -> serde_json::Value {
    match berth_lifecycle::supervisor::status(paths) {
        Ok(s) => serde_json::json!({
            "supervisor_pid": s.supervisor_pid,
            "services": s.services,
            "jobs": s.jobs,
        }),
        Err(e) => {
            serde_json::json!({ "supervisor_pid": null, "services": [], "jobs": [], "error": e.to_string() })
        }
    }
}

pub(crate) async fn status_json(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let paths = state.paths.clone();
    let value = tokio::task::spawn_blocking(move || status_value(&paths))
        .await
        .unwrap_or_default();
    axum::Json(value).into_response()
}

pub(crate) async fn status_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    if !state_configured(&state) {
        return state.redirect("/setup");
    }
    let paths = state.paths.clone();
    let value = tokio::task::spawn_blocking(move || status_value(&paths))
        .await
        .unwrap_or_default();
    let mut pairs = base(&state, "Status", Some(&session));
    pairs.push((
        "services",
        minijinja::Value::from(minijinja::value::Serde(&value["services"])),
    ));
    pairs.push((
        "jobs",
        minijinja::Value::from(minijinja::value::Serde(&value["jobs"])),
    ));
    let metrics = metrics_links(&state.paths);
    pairs.push((
        "metrics",
        minijinja::Value::from(minijinja::value::Serde(&metrics)),
    ));
    pairs.push((
        "supervisor_pid",
        minijinja::Value::from(minijinja::value::Serde(&value["supervisor_pid"])),
    ));
    state.page("status.html", ctx(pairs))
}

/// The metrics endpoints to link: berth's own (`metrics.listen`) and the app's
/// (the manifest's `metrics` of each service), as the supervisor runs them now.
fn metrics_links(paths: &Paths) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read(paths.supervision_plan()) else {
        return Vec::new();
    };
    let Ok(plan) = serde_json::from_slice::<berth_supervisor_protocol::SupervisionPlan>(&text)
    else {
        return Vec::new();
    };
    let Some(m) = plan.metrics else {
        return Vec::new();
    };
    let mut out = vec![("berth".to_owned(), format!("http://{}/metrics", m.listen))];
    out.extend(m.app_endpoints);
    // Only web addresses become links (a manifest's value is not a `javascript:` URL).
    out.retain(|(_, url)| url.starts_with("http://") || url.starts_with("https://"));
    out
}

pub(crate) async fn history_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let paths = state.paths.clone();
    let runs = tokio::task::spawn_blocking(move || {
        berth_state::StateDb::open_read_only(paths.state_db())
            .ok()
            .flatten()
            .and_then(|db| db.history(100).ok())
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let result = match r.outcome.as_ref().map(|o| &o.status) {
                Some(berth_state::RunStatus::Succeeded) => "succeeded".to_owned(),
                Some(berth_state::RunStatus::NoChange) => "no change".to_owned(),
                Some(berth_state::RunStatus::Failed { error }) => format!("failed: {error}"),
                None => "unfinished".to_owned(),
            };
            serde_json::json!({
                "id": r.id.0,
                "started": r.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
                "kind": r.kind,
                "detail": r.detail,
                "result": result,
                "actor": r.actor,
            })
        })
        .collect();
    let mut pairs = base(&state, "History", Some(&session));
    pairs.push((
        "runs",
        minijinja::Value::from(minijinja::value::Serde(&rows)),
    ));
    state.page("history.html", ctx(pairs))
}

pub(crate) async fn log_page(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    UrlPath(service): UrlPath<String>,
) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let paths = state.paths.clone();
    let wanted = service.clone();
    let text = tokio::task::spawn_blocking(move || -> Option<String> {
        // Only a service of the plan: the name never becomes a path otherwise.
        let status = berth_lifecycle::supervisor::status(&paths).ok()?;
        if !status.services.iter().any(|s| s.name == wanted) {
            return None;
        }
        let dir = berth_host::beneath::SafeDir::open_trusted(&paths.log).ok()?;
        let rel = Path::new(&wanted).join(berth_layout::logs::CURRENT);
        Some(match dir.tail(&rel, Some(LOG_LINES), 1 << 20) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(the log cannot be read: {e})"),
        })
    })
    .await
    .ok()
    .flatten();
    let Some(text) = text else {
        return (StatusCode::NOT_FOUND, "No such service.").into_response();
    };
    let mut pairs = base(&state, "Log", Some(&session));
    pairs.push(("service", service.into()));
    pairs.push(("text", text.into()));
    state.page("log.html", ctx(pairs))
}

/// The log of `service` as it grows: Server-Sent Events, one line each, from the
/// supervisor's log file followed across rotations (the same follower as `berth logs
/// -f`). The thread that reads it ends at the first line after the browser left.
pub(crate) async fn follow_log(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    UrlPath(service): UrlPath<String>,
) -> Response {
    if signed_in(&state, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let paths = state.paths.clone();
    let wanted = service.clone();
    let known = tokio::task::spawn_blocking(move || {
        berth_lifecycle::supervisor::status(&paths)
            .is_ok_and(|s| s.services.iter().any(|s| s.name == wanted))
    })
    .await
    .unwrap_or(false);
    if !known {
        return (StatusCode::NOT_FOUND, "No such service.").into_response();
    }
    if state.followers.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWERS {
        state.followers.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many logs are being followed: close one.",
        )
            .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let log_root = state.paths.log.clone();
    let done = Arc::clone(&state);
    std::thread::spawn(move || {
        let follow = || -> Result<(), berth_supervisor::SupervisorError> {
            let logs = berth_supervisor::service_logs(&log_root, Some(&service))?;
            let mut follower = berth_supervisor::Follower::new(&logs)?;
            // From the end: the page shows the lines before.
            follower.last(0, &mut |_: &str, _: &str| Ok(()))?;
            let mut send = |_: &str, line: &str| {
                tx.blocking_send(line.to_owned())
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            };
            follower.run(&mut send)
        };
        let _ = follow();
        done.followers.fetch_sub(1, Ordering::SeqCst);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Event::default().data(line)), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
