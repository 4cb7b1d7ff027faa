//! Pages that change the instance: backups (list, create, verify), upgrades (the
//! versions in `upgrade.source`, their plan, the upgrade), and the tasks that carry
//! them out. A form names what to act on by a value the page listed (an archive name,
//! a version) and the server checks it against the list again: nothing a browser sends
//! becomes a path or a command-line option.

use axum::extract::{Form, Path as UrlPath, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::csrf_ok;
use crate::web::{Shared, State, base, ctx, forged, signed_in};

fn value<T: serde::Serialize>(v: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// Start `berth <args>` for the session, then show its page; a refusal (another task
/// running) is shown on the page it came from.
pub(crate) fn start(state: &State, title: &str, args: &[String], actor: &str) -> Response {
    match state.tasks.start(title, &state.berth_args(args), actor) {
        Ok(task) => state.redirect(&format!("/tasks/{}", task.id)),
        Err(message) => (StatusCode::CONFLICT, message).into_response(),
    }
}

/// The archives of the instance's target: `(target, archives)` or why not.
fn archives(state: &State) -> Result<(String, Vec<berth_backup::backup::Listed>), String> {
    let inst = berth_lifecycle::instance::open(&state.locate()).map_err(|e| e.to_string())?;
    berth_backup::backup::list(&inst, None).map_err(|e| e.to_string())
}

pub(crate) async fn backups_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let s = std::sync::Arc::clone(&state);
    let listed = tokio::task::spawn_blocking(move || archives(&s))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut pairs = base(&state, "Backups", Some(&session));
    match listed {
        Ok((target, list)) => {
            pairs.push(("target", target.into()));
            pairs.push(("archives", value(&list)));
        }
        Err(e) => pairs.push(("error", e.into())),
    }
    pairs.push(("busy", state.tasks.busy().into()));
    state.page("backups.html", ctx(pairs))
}

pub(crate) async fn backup_create(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<crate::web::CsrfForm>,
) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    if !csrf_ok(&session, &form.csrf) {
        return forged();
    }
    start(
        &state,
        "Back up now",
        &["backup".to_owned(), "create".to_owned()],
        &session.actor(),
    )
}

#[derive(Deserialize)]
pub(crate) struct ArchiveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    archive: String,
}

pub(crate) async fn backup_verify(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<ArchiveForm>,
) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    if !csrf_ok(&session, &form.csrf) {
        return forged();
    }
    let s = std::sync::Arc::clone(&state);
    let listed = tokio::task::spawn_blocking(move || archives(&s))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let known = listed.is_ok_and(|(_, list)| list.iter().any(|a| a.name == form.archive));
    if !known {
        return (
            StatusCode::NOT_FOUND,
            "No such archive in the backup target.",
        )
            .into_response();
    }
    start(
        &state,
        &format!("Verify {}", form.archive),
        &[
            "backup".to_owned(),
            "verify".to_owned(),
            form.archive.clone(),
        ],
        &session.actor(),
    )
}

/// The instance's version, its `upgrade.source` and the versions there newer than it
/// (oldest first, with their manifest directories).
struct Upgrades {
    current: String,
    source: Option<std::path::PathBuf>,
    available: Vec<(std::path::PathBuf, String)>,
}

fn upgrades(state: &State) -> Result<Upgrades, String> {
    let inst = berth_lifecycle::instance::open(&state.locate()).map_err(|e| e.to_string())?;
    let desired = berth_lifecycle::desired::preview(&inst).map_err(|e| e.to_string())?;
    let app = &inst.manifest.manifest.app;
    let source = desired.upgrade_policy.source.clone();
    let available = match &source {
        Some(dir) => berth_upgrade_apply::auto::available(
            dir,
            &app.name,
            &app.version,
            &berth_lifecycle::progress::Silent,
        )
        .map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok(Upgrades {
        current: app.version.clone(),
        source,
        available,
    })
}

pub(crate) async fn upgrades_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let s = std::sync::Arc::clone(&state);
    let found = tokio::task::spawn_blocking(move || upgrades(&s))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut pairs = base(&state, "Upgrades", Some(&session));
    match found {
        Ok(u) => {
            pairs.push(("current", u.current.into()));
            pairs.push((
                "source",
                u.source
                    .map(|s| s.display().to_string())
                    .unwrap_or_default()
                    .into(),
            ));
            let versions: Vec<&String> = u.available.iter().rev().map(|(_, v)| v).collect();
            pairs.push(("versions", value(&versions)));
        }
        Err(e) => pairs.push(("error", e.into())),
    }
    pairs.push(("busy", state.tasks.busy().into()));
    state.page("upgrades.html", ctx(pairs))
}

#[derive(Deserialize)]
pub(crate) struct VersionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
}

/// `--to DIR` for every version up to `version` (the required stops among them).
async fn upgrade_args(state: &Shared, version: &str) -> Result<Vec<String>, Response> {
    let s = std::sync::Arc::clone(state);
    let found = tokio::task::spawn_blocking(move || upgrades(&s))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(|e| (StatusCode::CONFLICT, e).into_response())?;
    let Some(at) = found.available.iter().position(|(_, v)| v == version) else {
        return Err((
            StatusCode::NOT_FOUND,
            "No such version in `upgrade.source`.",
        )
            .into_response());
    };
    Ok(found.available[..=at]
        .iter()
        .flat_map(|(dir, _)| ["--to".to_owned(), dir.display().to_string()])
        .collect())
}

pub(crate) async fn upgrade_plan(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<VersionForm>,
) -> Response {
    upgrade_task(&state, &headers, &form, "plan", "Plan of the upgrade to").await
}

pub(crate) async fn upgrade_apply(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<VersionForm>,
) -> Response {
    upgrade_task(&state, &headers, &form, "apply", "Upgrade to").await
}

/// `berth upgrade <verb> --to …` up to the version the form names, as a task.
async fn upgrade_task(
    state: &Shared,
    headers: &HeaderMap,
    form: &VersionForm,
    verb: &str,
    title: &str,
) -> Response {
    let Some((_, session)) = signed_in(state, headers) else {
        return state.redirect("/login");
    };
    if !csrf_ok(&session, &form.csrf) {
        return forged();
    }
    let to = match upgrade_args(state, &form.version).await {
        Ok(to) => to,
        Err(r) => return r,
    };
    let mut args = vec!["upgrade".to_owned(), verb.to_owned()];
    args.extend(to);
    start(
        state,
        &format!("{title} {}", form.version),
        &args,
        &session.actor(),
    )
}

fn task_value(t: &crate::tasks::Task) -> serde_json::Value {
    use crate::tasks::End;
    let end = t.end();
    serde_json::json!({
        "id": t.id,
        "title": t.title,
        "command": t.command,
        "actor": t.actor,
        "started": t.started,
        "running": end == End::Running,
        "exit": match end { End::Exited(c) => Some(c), _ => None },
        "result": match end {
            End::Running => "running".to_owned(),
            End::Exited(0) => "succeeded".to_owned(),
            End::Exited(c) => format!("failed (exit status {c})"),
            End::Killed => "killed".to_owned(),
        },
    })
}

pub(crate) async fn tasks_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let list: Vec<serde_json::Value> = state.tasks.list().iter().map(|t| task_value(t)).collect();
    let mut pairs = base(&state, "Tasks", Some(&session));
    pairs.push(("tasks", value(&list)));
    state.page("tasks.html", ctx(pairs))
}

pub(crate) async fn task_page(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let Some(task) = state.tasks.get(id) else {
        return (StatusCode::NOT_FOUND, "No such task.").into_response();
    };
    let mut pairs = base(&state, &task.title, Some(&session));
    pairs.push(("task", value(&task_value(&task))));
    pairs.push(("output", task.output().into()));
    state.page("task.html", ctx(pairs))
}

pub(crate) async fn task_json(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Response {
    if signed_in(&state, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(task) = state.tasks.get(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut v = task_value(&task);
    v["output"] = task.output().into();
    axum::Json(v).into_response()
}
