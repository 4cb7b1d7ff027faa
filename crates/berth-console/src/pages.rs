//! The routes: sign-in and sign-out, status (and its JSON for the live refresh),
//! logs, history; the security headers every answer carries.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_layout::Paths;
use serde::Deserialize;

use crate::auth::{Auth, Session, SignIn, csrf_ok, token};

const SESSION_COOKIE: &str = "berth_session";
const LOGIN_COOKIE: &str = "berth_login";
/// Lines of a log the log page shows.
const LOG_LINES: usize = 200;

/// Shared by every request.
pub(crate) struct State {
    paths: Paths,
    app: String,
    auth: Auth,
    templates: minijinja::Environment<'static>,
}

impl State {
    pub(crate) fn new(config: &crate::Config, password: &str) -> Self {
        let mut templates = minijinja::Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("status.html", include_str!("templates/status.html")),
            ("history.html", include_str!("templates/history.html")),
            ("log.html", include_str!("templates/log.html")),
        ] {
            templates
                .add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        Self {
            paths: config.paths.clone(),
            app: config.app.clone(),
            auth: Auth::new(password),
            templates,
        }
    }

    fn page(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => Html(html).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("template {name}: {e}"),
            )
                .into_response(),
        }
    }
}

type Shared = Arc<State>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/history", get(history_page))
        .route("/logs/{service}", get(log_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/static/console.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css")],
                    include_str!("console.css"),
                )
            }),
        )
        .route(
            "/static/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript")],
                    include_str!("console.js"),
                )
            }),
        )
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// What every answer carries: no framing, no inline script, no caching, no referrer.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// `Secure` when the browser reached us over HTTPS (a proxy in front says so).
fn secure(headers: &HeaderMap) -> &'static str {
    if headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<u64>,
    headers: &HeaderMap,
) -> (header::HeaderName, String) {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    (
        header::SET_COOKIE,
        format!(
            "{name}={value}; HttpOnly; SameSite=Strict; Path=/{age}{}",
            secure(headers)
        ),
    )
}

/// The session the request carries, and its token.
fn signed_in(state: &State, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state.auth.session(token).map(|s| (token.to_owned(), s))
}

fn base(
    state: &State,
    title: &str,
    session: Option<&Session>,
) -> Vec<(&'static str, minijinja::Value)> {
    vec![
        ("app", state.app.clone().into()),
        ("title", title.into()),
        ("signed_in", session.is_some().into()),
        (
            "csrf",
            session.map(|s| s.csrf.clone()).unwrap_or_default().into(),
        ),
    ]
}

fn ctx(pairs: Vec<(&'static str, minijinja::Value)>) -> minijinja::Value {
    pairs
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

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
    let (name, value) = set_cookie(LOGIN_COOKIE, &login_csrf, Some(600), headers);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(name, v);
    }
    response
}

async fn login_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    login_form(&state, &headers, "", StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    Extract(state): Extract<Shared>,
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
    match state.auth.sign_in(&form.password) {
        SignIn::Ok(token) => {
            let (name, value) = set_cookie(SESSION_COOKIE, &token, None, &headers);
            let mut response = Redirect::to("/").into_response();
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

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some((token, session)) = signed_in(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if !csrf_ok(&session, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "The form did not come from this console.",
        )
            .into_response();
    }
    state.auth.sign_out(&token);
    let (name, value) = set_cookie(SESSION_COOKIE, "", Some(0), &headers);
    let mut response = Redirect::to("/login").into_response();
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

async fn status_json(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let paths = state.paths.clone();
    let value = tokio::task::spawn_blocking(move || status_value(&paths))
        .await
        .unwrap_or_default();
    axum::Json(value).into_response()
}

async fn status_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
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
        "supervisor_pid",
        minijinja::Value::from(minijinja::value::Serde(&value["supervisor_pid"])),
    ));
    state.page("status.html", ctx(pairs))
}

async fn history_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return Redirect::to("/login").into_response();
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

async fn log_page(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    UrlPath(service): UrlPath<String>,
) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return Redirect::to("/login").into_response();
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
