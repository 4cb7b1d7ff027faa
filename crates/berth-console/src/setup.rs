//! First-run setup in the browser, on an instance without a site config: the same
//! questions as `berth init` (`berth-setup`), each answer checked by the site-config
//! model with its own message shown next to the field, then the `site.toml` they make
//! and the dry-run plan, then — once confirmed — the file written (a normal site
//! config, to edit by hand later) and `berth up` run as a task.
//!
//! Nothing is written until the confirmation, and then only if there is still no site
//! config: the answers are checked again, as the review page carried them.

use std::collections::BTreeMap;

use axum::extract::{Form, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_setup::{Answers, Field, Problem};

use crate::auth::{Session, csrf_ok};
use crate::web::{Shared, State, base, ctx, forged, signed_in, state_configured};

/// Form fields carry answers as `f.<key>` (`f.external_url`, `f.component.docs`).
const PREFIX: &str = "f.";

/// The answers a form carries, by field (unknown keys are dropped; the CSRF token and
/// other fields are not answers).
fn answers(form: &[(String, String)]) -> Answers {
    form.iter()
        .filter_map(|(k, v)| {
            let field = Field::from_key(k.strip_prefix(PREFIX)?)?;
            Some((field, v.clone()))
        })
        .collect()
}

fn csrf(form: &[(String, String)]) -> &str {
    form.iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str())
}

/// One field of the form as the template shows it.
#[derive(serde::Serialize)]
struct Shown {
    key: String,
    id: String,
    prompt: String,
    value: String,
    choices: Vec<(String, String)>,
    errors: Vec<(String, Option<String>)>,
}

/// The questions of the instance's app, with `users` (asked last: an option, not a
/// question, `berth init --users`), each with its answer and its problems.
fn fields(inst: &berth_lifecycle::Instance, answers: &Answers, problems: &[Problem]) -> Vec<Shown> {
    let mut questions = berth_setup::questions(&inst.manifest);
    questions.push(berth_setup::Question {
        field: Field::Users,
        prompt: "Operating-system users: one set for this instance, or the app's names shared \
                 by every instance (users)"
            .to_owned(),
        default: "per-instance".to_owned(),
        choices: vec![
            (
                "per-instance".to_owned(),
                "one set per instance (the default)".to_owned(),
            ),
            ("shared".to_owned(), "the manifest's names".to_owned()),
        ],
    });
    questions
        .into_iter()
        .map(|q| {
            let key = q.field.key();
            Shown {
                id: key.replace('.', "-"),
                value: answers.get(&q.field).cloned().unwrap_or(q.default),
                errors: problems
                    .iter()
                    .filter(|p| p.field == q.field)
                    .map(|p| (p.message.clone(), p.help.clone()))
                    .collect(),
                key,
                prompt: q.prompt,
                choices: q.choices,
            }
        })
        .collect()
}

fn form_page(
    state: &State,
    session: &Session,
    inst: &berth_lifecycle::Instance,
    answers: &Answers,
    problems: &[Problem],
) -> Response {
    let mut pairs = base(state, "First-run setup", Some(session));
    pairs.push((
        "fields",
        minijinja::Value::from(minijinja::value::Serde(&fields(inst, answers, problems))),
    ));
    pairs.push(("config_path", inst.config_path.display().to_string().into()));
    pairs.push(("invalid", (!problems.is_empty()).into()));
    let mut response = state.page("setup.html", ctx(pairs));
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// Every problem of `answers`: each answer alone first (its own message, next to its
/// field), then together. `Ok` holds the site config's text.
fn check(inst: &berth_lifecycle::Instance, answers: &Answers) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    for (field, answer) in answers {
        problems.extend(berth_setup::check_field(
            &inst.manifest,
            &inst.facts,
            field,
            answer,
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    berth_setup::check(&inst.manifest, &inst.facts, answers)
}

/// Open the instance for setup: `Err` is the answer to give (set up already, or the
/// instance cannot be opened).
fn open_unconfigured(state: &State) -> Result<berth_lifecycle::Instance, Box<Response>> {
    if state_configured(state) {
        return Err(Box::new(state.redirect("/")));
    }
    berth_lifecycle::instance::open(&state.locate())
        .map_err(|e| Box::new((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()))
}

pub(crate) async fn setup_page(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&state, &headers) else {
        return state.redirect("/login");
    };
    let s = std::sync::Arc::clone(&state);
    tokio::task::spawn_blocking(move || match open_unconfigured(&s) {
        Ok(inst) => form_page(&s, &session, &inst, &Answers::new(), &[]),
        Err(r) => *r,
    })
    .await
    .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// The dry-run plan of the site config `text`: rendered from a copy of it in a private
/// temporary directory (the instance's file is not written yet).
fn plan_of(state: &State, text: &str) -> String {
    let run = || -> Result<String, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("site.toml");
        berth_host::fsutil::write_new(&path, text.as_bytes(), 0o600, None)
            .map_err(|e| e.to_string())?;
        let loc = berth_lifecycle::Locate {
            config: Some(path),
            ..state.locate()
        };
        let inst = berth_lifecycle::instance::open(&loc).map_err(|e| e.to_string())?;
        berth_lifecycle::dry_run(&inst).map_err(|e| e.to_string())
    };
    run().unwrap_or_else(|e| format!("(the plan cannot be shown: {e})"))
}

/// What `/setup` and `/setup/apply` share: a signed-in session and its CSRF token, an
/// instance still without a site config, and answers the model accepts (else the form
/// again, with the problems at their fields); `then` gets the site config's text.
async fn with_checked_answers(
    state: Shared,
    headers: &HeaderMap,
    form: Vec<(String, String)>,
    then: impl FnOnce(&State, &Session, &berth_lifecycle::Instance, &Answers, String) -> Response
    + Send
    + 'static,
) -> Response {
    let Some((_, session)) = signed_in(&state, headers) else {
        return state.redirect("/login");
    };
    if !csrf_ok(&session, csrf(&form)) {
        return forged();
    }
    tokio::task::spawn_blocking(move || {
        let inst = match open_unconfigured(&state) {
            Ok(inst) => inst,
            Err(r) => return *r,
        };
        let answers = answers(&form);
        match check(&inst, &answers) {
            Ok(text) => then(&state, &session, &inst, &answers, text),
            Err(problems) => form_page(&state, &session, &inst, &answers, &problems),
        }
    })
    .await
    .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

pub(crate) async fn setup_check(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    with_checked_answers(state, &headers, form, |s, session, inst, answers, text| {
        let mut pairs = base(s, "First-run setup: review", Some(session));
        let hidden: BTreeMap<String, String> = answers
            .iter()
            .map(|(f, v)| (format!("{PREFIX}{}", f.key()), v.clone()))
            .collect();
        pairs.push((
            "answers",
            minijinja::Value::from(minijinja::value::Serde(&hidden)),
        ));
        pairs.push(("plan", plan_of(s, &text).into()));
        pairs.push(("site", text.into()));
        pairs.push(("config_path", inst.config_path.display().to_string().into()));
        s.page("setup_review.html", ctx(pairs))
    })
    .await
}

pub(crate) async fn setup_apply(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    with_checked_answers(state, &headers, form, |s, session, inst, _, text| {
        if let Some(dir) = inst.config_path.parent()
            && let Err(e) = berth_host::fsutil::ensure_dir(dir, 0o755)
        {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        // A new file only: a site config written meanwhile (by hand, by another
        // browser) is never replaced.
        if let Err(e) =
            berth_host::fsutil::write_new(&inst.config_path, text.as_bytes(), 0o640, None)
        {
            return (
                StatusCode::CONFLICT,
                format!("The site config was not written: {e}"),
            )
                .into_response();
        }
        crate::actions::start(s, "First up", &["up".to_owned()], &session.actor())
    })
    .await
}
