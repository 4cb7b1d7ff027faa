//! What every page shares: the console's state (templates, sessions, tasks, where it
//! is mounted), the session a request carries, the context every page gets, cookies,
//! and the security headers every answer carries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use berth_layout::Paths;
use serde::Deserialize;

use crate::auth::{Auth, Session};
use crate::tasks::Tasks;

pub(crate) const SESSION_COOKIE: &str = "berth_session";

pub(crate) const LOGIN_COOKIE: &str = "berth_login";

/// Shared by every request.
pub(crate) struct State {
    pub(crate) paths: Paths,
    pub(crate) loc: berth_lifecycle::Locate,
    app: String,
    /// Where the console is mounted: empty, or `/berth` (no trailing slash).
    pub(crate) base: String,
    pub(crate) auth: Auth,
    pub(crate) tasks: Tasks,
    /// Log pages being followed now (16 at most, `pages::MAX_FOLLOWERS`).
    pub(crate) followers: AtomicUsize,
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
            ("backups.html", include_str!("templates/backups.html")),
            ("upgrades.html", include_str!("templates/upgrades.html")),
            ("tasks.html", include_str!("templates/tasks.html")),
            ("task.html", include_str!("templates/task.html")),
            ("setup.html", include_str!("templates/setup.html")),
            (
                "setup_review.html",
                include_str!("templates/setup_review.html"),
            ),
        ] {
            templates
                .add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        templates.add_filter("size", human_size);
        Self {
            paths: config.paths.clone(),
            loc: config.loc.clone(),
            app: config.app.clone(),
            base: config.base_path.trim_end_matches('/').to_owned(),
            auth: Auth::new(password),
            tasks: Tasks::new(
                config.berth.clone(),
                config.global_args.clone(),
                config.paths.console_tasks(),
            ),
            followers: AtomicUsize::new(0),
            templates,
        }
    }

    /// How to find the instance now. Once it is set up it keeps its manifest, and that
    /// one counts (an upgrade replaces it), not the one the console was started with
    /// (`--manifest`, for a first-run setup).
    pub(crate) fn locate(&self) -> berth_lifecycle::Locate {
        if self.paths.manifest_dir().join("berth.toml").is_file() {
            berth_lifecycle::Locate {
                manifest: None,
                ..self.loc.clone()
            }
        } else {
            self.loc.clone()
        }
    }

    /// The arguments of `berth` for `command`: `--manifest` while the instance keeps
    /// none (the instance's own options come from [`Tasks`]).
    pub(crate) fn berth_args(&self, command: &[String]) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(m) = self.locate().manifest {
            args.push("--manifest".to_owned());
            args.push(m.display().to_string());
        }
        args.extend(command.iter().cloned());
        args
    }

    /// `path` under the console's base path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A redirect to `path` under the base path.
    pub(crate) fn redirect(&self, path: &str) -> Response {
        Redirect::to(&self.url(path)).into_response()
    }

    pub(crate) fn page(&self, name: &str, ctx: minijinja::Value) -> Response {
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

pub(crate) type Shared = Arc<State>;

/// What every answer carries: no framing, no inline script, no caching, no referrer.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
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
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

/// Bytes as people read them: `512 B`, `3.4 MiB`.
#[allow(clippy::cast_precision_loss)] // shown with one decimal
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
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

pub(crate) fn set_cookie(
    state: &State,
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
            "{name}={value}; HttpOnly; SameSite=Strict; Path={}/{age}{}",
            state.base,
            secure(headers)
        ),
    )
}

/// The session the request carries, and its token.
pub(crate) fn signed_in(state: &State, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state.auth.session(token).map(|s| (token.to_owned(), s))
}

pub(crate) fn base(
    state: &State,
    title: &str,
    session: Option<&Session>,
) -> Vec<(&'static str, minijinja::Value)> {
    vec![
        ("app", state.app.clone().into()),
        ("base", state.base.clone().into()),
        ("configured", state_configured(state).into()),
        ("title", title.into()),
        ("signed_in", session.is_some().into()),
        (
            "csrf",
            session.map(|s| s.csrf.clone()).unwrap_or_default().into(),
        ),
    ]
}

pub(crate) fn ctx(pairs: Vec<(&'static str, minijinja::Value)>) -> minijinja::Value {
    pairs
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// The answer to a form that did not carry the session's CSRF token: refused, nothing
/// done.
pub(crate) fn forged() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The form did not come from this console: nothing was done.",
    )
        .into_response()
}

/// Who is at the other end: the peer, or, behind the app's web server on this
/// machine, the client it names last in `X-Forwarded-For`. Only shown in the history.
pub(crate) fn client(peer: SocketAddr, headers: &HeaderMap) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    match forwarded {
        Some(f) if peer.ip().is_loopback() => format!("{f} via the web server"),
        _ => peer.ip().to_string(),
    }
}

/// Whether the instance has a site config (else the console offers first-run setup).
pub(crate) fn state_configured(state: &State) -> bool {
    berth_lifecycle::instance::config_path(&state.loc, &state.paths.prefix)
        .is_ok_and(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use serde_json::json;

    use super::{State, base, ctx, human_size};

    fn state(dir: &std::path::Path) -> State {
        let paths = berth_layout::Paths::unversioned(dir);
        State::new(
            &crate::Config {
                listen: "127.0.0.1:9470".parse().unwrap(),
                paths,
                app: "demo".to_owned(),
                loc: berth_lifecycle::Locate::default(),
                base_path: "/berth/".to_owned(),
                berth: "/usr/bin/berth".into(),
                global_args: Vec::new(),
            },
            "password",
        )
    }

    fn value(v: &serde_json::Value) -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(v))
    }

    /// A page rendered with `extra` on top of what every page has: its status and HTML.
    fn render(state: &State, name: &str, extra: &serde_json::Value) -> (u16, String) {
        let mut pairs = base(state, "Title", None);
        pairs.push(("signed_in", true.into()));
        pairs.push(("csrf", "CSRF".into()));
        for (k, v) in extra.as_object().unwrap() {
            pairs.push((Box::leak(k.clone().into_boxed_str()), value(v)));
        }
        let response = state.page(name, ctx(pairs));
        let code = response.status().as_u16();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Every page renders (a template error is a 500), under the base path, with what
    /// the instance holds escaped: a service, an archive or a name that looks like
    /// markup stays text.
    #[test]
    fn every_page_renders_under_its_base_path_with_values_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let evil = "<script>alert(1)</script>";
        let pages = [
            (
                "login.html",
                json!({"login_csrf": "L", "message": evil, "password_file": "/p/secrets/x"}),
            ),
            (
                "status.html",
                json!({
                    "supervisor_pid": 7,
                    "services": [{"name": evil, "state": "ready", "ready": true, "pid": 42, "uptime_secs": 5, "restarts": 1, "last_exit": 0}],
                    "jobs": [{"name": "cleanup", "runs": 3, "failures": 1, "last_exit": 2}],
                    "metrics": [["berth", "http://127.0.0.1:9464/metrics"]],
                }),
            ),
            ("log.html", json!({"service": evil, "text": evil})),
            (
                "history.html",
                json!({"runs": [{"id": 1, "started": "2026-12-05 05:00:00Z", "kind": "up", "detail": "", "result": "succeeded", "actor": evil}]}),
            ),
            (
                "backups.html",
                json!({"target": "/p/backups", "busy": false, "archives": [{"name": evil, "size": 3_500_000, "created": "2026-12-05 05:00:00 UTC", "app_version": "1.0", "secrets_included": true, "problem": null}]}),
            ),
            (
                "upgrades.html",
                json!({"current": "1.0", "source": "/srv/versions", "versions": ["1.2", evil], "busy": false}),
            ),
            (
                "tasks.html",
                json!({"tasks": [{"id": 1, "title": evil, "started": "t", "actor": "a", "result": "running"}]}),
            ),
            (
                "task.html",
                json!({"task": {"id": 1, "title": evil, "command": "berth backup create", "started": "t", "actor": "a", "running": true, "result": "running"}, "output": evil}),
            ),
            (
                "setup.html",
                json!({"config_path": "/p/site.toml", "invalid": true, "fields": [{"key": "external_url", "id": "external_url", "prompt": "URL", "value": evil, "choices": [], "errors": [["not a URL", "give http://…"]]}]}),
            ),
            (
                "setup_review.html",
                json!({"config_path": "/p/site.toml", "site": evil, "plan": evil, "answers": {"f.external_url": evil}}),
            ),
        ];
        for (name, extra) in pages {
            let (code, html) = render(&state, name, &extra);
            assert_eq!(code, 200, "{name}: {html}");
            assert!(!html.contains("<script>alert"), "{name}: {html}");
            assert!(
                html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
                "{name}: {html}"
            );
            // Links, forms and the script are under the base path.
            assert!(
                html.contains("src=\"&#x2f;berth/static/console.js\""),
                "{name}: {html}"
            );
            assert!(!html.contains("action=\"/"), "{name}: {html}");
            assert!(!html.contains("href=\"/"), "{name}: {html}");
        }
    }

    /// The status page and the setup form, as a browser gets them.
    #[test]
    fn the_status_page_and_the_setup_form() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let (_, status) = render(
            &state,
            "status.html",
            &json!({
                "supervisor_pid": 7,
                "services": [
                    {"name": "web", "state": "ready", "ready": true, "pid": 42, "uptime_secs": 5, "restarts": 1, "last_exit": 0},
                    {"name": "worker", "state": "backoff", "ready": false, "pid": null, "uptime_secs": null, "restarts": 4, "last_exit": 1},
                ],
                "jobs": [],
                "metrics": [["berth", "http://127.0.0.1:9464/metrics"], ["web", "http://127.0.0.1:8001/metrics"]],
            }),
        );
        insta::assert_snapshot!("status", status);
        let (code, setup) = render(
            &state,
            "setup.html",
            &json!({
                "config_path": "/var/opt/berth/demo/site.toml",
                "invalid": true,
                "fields": [
                    {"key": "external_url", "id": "external_url", "prompt": "The address users reach the app at (external_url)", "value": "ftp://x/", "choices": [], "errors": [["`external_url` must be an http or https URL", "e.g. `https://demo.example.com/`"]]},
                    {"key": "component.docs", "id": "component-docs", "prompt": "Run the optional component `docs`", "value": "yes", "choices": [["yes", "run it"], ["no", "leave it out"]], "errors": []},
                ],
            }),
        );
        assert_eq!(code, 200);
        insta::assert_snapshot!("setup", setup);
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3_500_000), "3.3 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}
