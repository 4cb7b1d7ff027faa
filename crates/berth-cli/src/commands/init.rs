//! `berth init`: first-run setup on a terminal.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use berth_lifecycle::{Locate, instance};
use berth_setup::{Answers, Field, Problem};

/// Tries an answer gets before `init` gives up (piped input that keeps being wrong).
const TRIES: usize = 5;

fn show(problems: &[Problem]) {
    for p in problems {
        eprintln!("  error: {}", p.message);
        if let Some(h) = &p.help {
            eprintln!("  help: {h}");
        }
    }
}

/// Ask `q` until the model accepts the answer ([`TRIES`] times at most); `None` when
/// it never does. End of input answers the default.
fn ask(
    q: &berth_setup::Question,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    inst: &berth_lifecycle::Instance,
) -> Result<Option<String>> {
    for _ in 0..TRIES {
        println!();
        println!("{}", q.prompt);
        for (value, what) in &q.choices {
            println!("  {value:<8} {what}");
        }
        print!("[{}] > ", q.default);
        std::io::stdout().flush()?;
        let answer = match lines.next() {
            Some(line) => line?.trim().to_owned(),
            None => String::new(),
        };
        let answer = if answer.is_empty() {
            q.default.clone()
        } else {
            answer
        };
        let problems = berth_setup::check_field(&inst.manifest, &inst.facts, &q.field, &answer);
        if problems.is_empty() {
            return Ok(Some(answer));
        }
        show(&problems);
    }
    Ok(None)
}

/// Exit status 2 when `given` names a component that is not an optional one.
fn refuse_unknown(
    given: &Answers,
    questions: &[berth_setup::Question],
    app: &str,
) -> Option<ExitCode> {
    if let Some(unknown) = given
        .keys()
        .find(|f| **f != Field::Users && !questions.iter().any(|q| &q.field == *f))
    {
        let optional: Vec<String> = questions
            .iter()
            .filter_map(|q| match &q.field {
                Field::Component(c) => Some(format!("`{c}`")),
                _ => None,
            })
            .collect();
        eprintln!(
            "error: `{}` is not an optional component of {} (optional: {})",
            unknown.key().trim_start_matches("component."),
            app,
            if optional.is_empty() {
                "none".to_owned()
            } else {
                optional.join(", ")
            }
        );
        return Some(ExitCode::from(2));
    }
    None
}

/// Ask the questions `given` does not answer (none with `yes`), check each answer,
/// write the site config, print the plan, and bring the app up with `then_up`.
pub fn init(
    loc: &Locate,
    given: &Answers,
    yes: bool,
    then_up: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    if inst.config_exists {
        bail!(
            "{} exists already: edit it and run `berth reconfigure` (first-run setup writes a \
             new site config only)",
            inst.config_path.display()
        );
    }
    let m = &inst.manifest;
    let questions = berth_setup::questions(m);
    if let Some(code) = refuse_unknown(given, &questions, &m.manifest.app.name) {
        return Ok(code);
    }
    let mut answers = Answers::new();
    if let Some(users) = given.get(&Field::Users) {
        let problems = berth_setup::check_field(m, &inst.facts, &Field::Users, users);
        if !problems.is_empty() {
            eprintln!("users: `{users}` is refused:");
            show(&problems);
            return Ok(ExitCode::from(2));
        }
        answers.insert(Field::Users, users.clone());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    println!(
        "First-run setup of {} {}: the site config goes to {}",
        m.manifest.app.name,
        m.manifest.app.version,
        inst.config_path.display()
    );
    for q in &questions {
        if let Some(a) = given.get(&q.field) {
            let problems = berth_setup::check_field(m, &inst.facts, &q.field, a);
            if !problems.is_empty() {
                eprintln!("{}: `{a}` is refused:", q.field.key());
                show(&problems);
                return Ok(ExitCode::from(2));
            }
            answers.insert(q.field.clone(), a.clone());
            continue;
        }
        if yes {
            continue;
        }
        let Some(answer) = ask(q, &mut lines, &inst)? else {
            eprintln!(
                "error: no acceptable answer for {}; nothing was written",
                q.field.key()
            );
            return Ok(ExitCode::from(2));
        };
        answers.insert(q.field.clone(), answer);
    }
    let text = match berth_setup::check(m, &inst.facts, &answers) {
        Ok(text) => text,
        Err(problems) => {
            eprintln!("error: the answers do not make a valid site config; nothing was written");
            show(&problems);
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(dir) = inst.config_path.parent() {
        berth_host::fsutil::ensure_dir(dir, 0o755)?;
    }
    berth_host::fsutil::write_new(&inst.config_path, text.as_bytes(), 0o640, None)?;
    println!();
    println!("Wrote {}:", inst.config_path.display());
    print!("{text}");
    let inst = instance::open(loc)?;
    println!();
    print!("{}", berth_lifecycle::dry_run(&inst)?);
    if then_up {
        return super::up::up(loc, quiet);
    }
    println!();
    println!("Run `berth up` to apply it.");
    Ok(ExitCode::SUCCESS)
}
