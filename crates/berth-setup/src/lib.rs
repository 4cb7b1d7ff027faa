//! First-run setup: the questions an instance without a site config is asked, the
//! answers checked one by one with the same model (and the same messages) as `berth
//! config check`, and the `site.toml` they make: a normal file an administrator can
//! keep editing by hand. `berth init` asks them on a terminal; the console asks them
//! in a form. Pure: no I/O.

use std::collections::BTreeMap;

use berth_model::{Facts, LoadedManifest};

/// What a question sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// `external_url`.
    ExternalUrl,
    /// `profile`.
    Profile,
    /// `[<component>] enabled` of an optional component.
    Component(String),
    /// `backup.target`.
    BackupTarget,
    /// `users`: `per-instance` or `shared` (an option, not asked: the default suits a
    /// first install).
    Users,
}

impl Field {
    /// How a form names it: `external_url`, `profile`, `component.<name>`,
    /// `backup.target`.
    pub fn key(&self) -> String {
        match self {
            Self::ExternalUrl => "external_url".to_owned(),
            Self::Profile => "profile".to_owned(),
            Self::Component(c) => format!("component.{c}"),
            Self::BackupTarget => "backup.target".to_owned(),
            Self::Users => "users".to_owned(),
        }
    }

    /// The field a form key names.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "external_url" => Some(Self::ExternalUrl),
            "profile" => Some(Self::Profile),
            "backup.target" => Some(Self::BackupTarget),
            "users" => Some(Self::Users),
            other => other
                .strip_prefix("component.")
                .map(|c| Self::Component(c.to_owned())),
        }
    }
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// What it sets.
    pub field: Field,
    /// The question, as a sentence.
    pub prompt: String,
    /// What an empty answer means.
    pub default: String,
    /// The answers it takes, with what each means (empty: free text).
    pub choices: Vec<(String, String)>,
}

/// The questions for `m`, in order: the URL, the profile (when the manifest has
/// any), each optional component, the backup target.
pub fn questions(m: &LoadedManifest) -> Vec<Question> {
    let man = &m.manifest;
    let mut out = vec![Question {
        field: Field::ExternalUrl,
        prompt: "The address users reach the app at (external_url)".to_owned(),
        default: man
            .app
            .default_external_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080/".to_owned()),
        choices: Vec::new(),
    }];
    if !man.profiles.is_empty() {
        let mut choices = vec![("none".to_owned(), "every setting at its default".to_owned())];
        choices.extend(
            man.profiles
                .iter()
                .map(|(name, p)| (name.clone(), p.description.clone())),
        );
        out.push(Question {
            field: Field::Profile,
            prompt: "A profile: preset values for a kind of machine (profile)".to_owned(),
            default: "none".to_owned(),
            choices,
        });
    }
    for (name, _) in man.components.iter().filter(|(_, c)| c.optional) {
        out.push(Question {
            field: Field::Component(name.clone()),
            prompt: format!("Run the optional component `{name}`"),
            default: "yes".to_owned(),
            choices: vec![
                ("yes".to_owned(), "run it".to_owned()),
                ("no".to_owned(), "leave it out".to_owned()),
            ],
        });
    }
    out.push(Question {
        field: Field::BackupTarget,
        prompt: "Where backups are kept: an absolute directory or sftp://user@host/path \
                 (backup.target; empty: <prefix>/backups)"
            .to_owned(),
        default: String::new(),
        choices: Vec::new(),
    });
    out
}

/// The answers so far, by field (an absent field keeps its default).
pub type Answers = BTreeMap<Field, String>;

/// What is wrong with an answer: the model's message and its help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field.
    pub field: Field,
    /// The message `berth config check` gives.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

fn yes(answer: &str) -> Option<bool> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// The `site.toml` the answers make, with a comment above each value saying what it
/// is. Values are written by `toml_edit`, so any text lands as a TOML string. An
/// answer that is not yes or no for a component is written as given (a string) so
/// the model refuses it with its own message.
pub fn site_text(m: &LoadedManifest, answers: &Answers) -> String {
    let mut doc = toml_edit::DocumentMut::new();
    let comment = |doc: &mut toml_edit::DocumentMut, key: &str, text: &str| {
        if let Some(mut k) = doc.key_mut(key) {
            k.leaf_decor_mut().set_prefix(format!("# {text}\n"));
        }
    };
    if let Some(url) = answers
        .get(&Field::ExternalUrl)
        .filter(|v| !v.trim().is_empty())
    {
        doc["external_url"] = toml_edit::value(url.trim());
        comment(&mut doc, "external_url", "Where users reach the app");
    }
    if let Some(u) = answers.get(&Field::Users).filter(|v| !v.trim().is_empty()) {
        doc["users"] = toml_edit::value(u.trim());
        comment(
            &mut doc,
            "users",
            "OS users: one set per instance, or shared",
        );
    }
    if let Some(p) = answers
        .get(&Field::Profile)
        .map(|p| p.trim())
        .filter(|p| !p.is_empty() && *p != "none")
    {
        doc["profile"] = toml_edit::value(p);
        comment(
            &mut doc,
            "profile",
            "Preset values (`[profiles]` of the manifest)",
        );
    }
    for (field, answer) in answers {
        let Field::Component(name) = field else {
            continue;
        };
        if !m.manifest.components.contains_key(name) {
            continue;
        }
        let mut table = toml_edit::Table::new();
        table["enabled"] = match yes(answer) {
            Some(b) => toml_edit::value(b),
            None => toml_edit::value(answer.as_str()),
        };
        doc[name.as_str()] = toml_edit::Item::Table(table);
    }
    if let Some(t) = answers
        .get(&Field::BackupTarget)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        let mut table = toml_edit::Table::new();
        table["target"] = toml_edit::value(t);
        doc["backup"] = toml_edit::Item::Table(table);
    }
    format!(
        "# Site config of {}, written by first-run setup: edit it by hand at will, then\n\
         # `berth reconfigure`. Every key: docs/site-config.md.\n{doc}",
        m.manifest.app.name
    )
}

/// Which field a diagnostic of the site text `text` points at: by the table its line
/// is in (`[backup]`, `[<component>]`), else by the key on the line.
fn field_of(d: &berth_model::Diagnostic, text: &str) -> Field {
    let lines: Vec<&str> = text.lines().collect();
    let upto = d.line.min(lines.len());
    let table = lines[..upto]
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')));
    match table {
        Some("backup") => Field::BackupTarget,
        Some(name) => Field::Component(name.trim_matches('"').to_owned()),
        None if lines
            .get(d.line.saturating_sub(1))
            .is_some_and(|l| l.trim_start().starts_with("profile")) =>
        {
            Field::Profile
        }
        None if lines
            .get(d.line.saturating_sub(1))
            .is_some_and(|l| l.trim_start().starts_with("users")) =>
        {
            Field::Users
        }
        None => Field::ExternalUrl,
    }
}

/// Check `answers` as `berth config check` would check the site config they make:
/// the text, or every problem, each with the field it belongs to.
///
/// # Errors
/// The model's problems.
pub fn check(m: &LoadedManifest, facts: &Facts, answers: &Answers) -> Result<String, Vec<Problem>> {
    let text = site_text(m, answers);
    let result = berth_model::parse_site("site.toml", &text, m)
        .and_then(|site| berth_model::resolve(m, &site, facts).map(|_| ()));
    match result {
        Ok(()) => Ok(text),
        Err(diags) => Err(diags
            .iter()
            .map(|d| Problem {
                field: field_of(d, &text),
                message: d.message.clone(),
                help: d.help.clone(),
            })
            .collect()),
    }
}

/// Check one answer alone (the others at their defaults): the problems it has.
pub fn check_field(m: &LoadedManifest, facts: &Facts, field: &Field, answer: &str) -> Vec<Problem> {
    let answers = Answers::from([(field.clone(), answer.to_owned())]);
    check(m, facts, &answers).err().unwrap_or_default()
}

#[cfg(test)]
mod tests;
