//! Loading a manifest: TOML text → [`Manifest`], with positioned diagnostics for
//! syntax errors and for keys or values serde rejects.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::locate::{Locator, Seg};
use crate::manifest::Manifest;
use crate::span::Source;
use crate::suggest;
use crate::{Diagnostic, Diagnostics, LoadedManifest};

/// The manifest's file name inside an app directory.
pub const MANIFEST_FILE: &str = "berth.toml";

impl LoadedManifest {
    /// Reads `dir/berth.toml` and every template its `[[files]]` name (relative to `dir`).
    ///
    /// Reports every syntax error and every unknown key (with a did-you-mean), a value
    /// of the wrong type (naming the key and how to write it) and templates that cannot
    /// be read. Semantic checks are [`crate::validate`]'s.
    pub fn load(dir: &Path) -> Result<LoadedManifest, Diagnostics> {
        let path = dir.join(MANIFEST_FILE);
        let source_name = path.display().to_string();
        let text = crate::read_input(
            &path,
            "the manifest",
            &format!(
                "an app directory holds its manifest in `{MANIFEST_FILE}`: check the directory \
                 given to `--manifest`"
            ),
        )
        .map_err(crate::InputError::into_diagnostics)?;
        let mut manifest = parse_manifest(&source_name, &text)?;

        let mut diags = Diagnostics::default();
        let mut templates = BTreeMap::new();
        let locator = Locator::new(&text);
        let source = Source::new(&source_name, &text);
        // Templates are read as root: each must be a file inside the manifest's
        // directory, also once symlinks are followed, or `plan` could print any file.
        let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        for (i, file) in manifest.files.iter().enumerate() {
            if templates.contains_key(&file.template) {
                continue;
            }
            let span = || locator.value(&[Seg::Key("files"), Seg::Index(i), Seg::Key("template")]);
            if let Err(why) = relative_inside(&file.template) {
                diags.push(
                    source
                        .diag(span(), format!("template path `{}` {why}", crate::shown(&file.template)))
                        .with_help("write a path relative to the manifest's directory, without `..`, e.g. `templates/app.conf.j2`"),
                );
                continue;
            }
            let full = dir.join(&file.template);
            let resolved = std::fs::canonicalize(&full).unwrap_or(full);
            if !resolved.starts_with(&root) {
                diags.push(
                    source
                        .diag(
                            span(),
                            format!(
                                "template `{}` leads through a symlink to `{}`, outside the manifest's directory",
                                file.template,
                                resolved.display()
                            ),
                        )
                        .with_help("copy the template into the manifest's directory"),
                );
                continue;
            }
            match crate::read_input(
                &resolved,
                &format!("template `{}`", file.template),
                "template paths are relative to the manifest's directory",
            ) {
                Ok(body) => {
                    templates.insert(file.template.clone(), body);
                }
                Err(e) => {
                    let why = e
                        .into_diagnostics()
                        .0
                        .into_iter()
                        .next()
                        .map(|d| d.message)
                        .unwrap_or_default();
                    diags.push(
                        source
                            .diag(span(), why)
                            .with_help("template paths are relative to the manifest's directory"),
                    );
                }
            }
        }
        manifest.source_text = text;
        diags.into_result(LoadedManifest {
            manifest,
            source_name,
            templates,
        })
    }

    /// Parses a manifest held in memory (e.g. embedded in the binary), with its templates
    /// keyed by the path `[[files]] template` uses.
    pub fn from_sources(
        source_name: &str,
        manifest_text: &str,
        templates: BTreeMap<String, String>,
    ) -> Result<LoadedManifest, Diagnostics> {
        let mut manifest = parse_manifest(source_name, manifest_text)?;
        manifest_text.clone_into(&mut manifest.source_text);
        Ok(LoadedManifest {
            manifest,
            source_name: source_name.to_owned(),
            templates,
        })
    }
}

/// Why `path` is not a plain relative path that stays below its base directory.
pub(crate) fn relative_inside(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') {
        return Err("is absolute");
    }
    if path.chars().any(crate::is_unsafe_char) {
        return Err("has a control character");
    }
    if Path::new(path).components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Err("leaves its directory (`..`)");
    }
    Ok(())
}

/// At most this many unknown keys are reported from one manifest (each costs a parse).
const MAX_UNKNOWN_KEYS: usize = 50;

fn parse_manifest(name: &str, text: &str) -> Result<Manifest, Diagnostics> {
    let source = Source::new(name, text);
    syntax_errors(source)?;
    let locator = Locator::new(text);
    let mut manifest: Manifest = deserialize_all(source, &locator)?;
    if let Err(group) = crate::builtin::add_builtin_settings(&mut manifest) {
        let span = locator.key(&[Seg::Key("settings"), Seg::Key(group)]);
        return Err(source
            .diag(
                span,
                format!("the settings group `{group}` is berth's own (backups: target, schedule, retention; upgrades: releases kept)"),
            )
            .with_help("rename the group; its keys are documented in docs/site-config.md")
            .into());
    }
    Ok(manifest)
}

/// Deserializes the manifest, reporting every unknown key at once. serde stops at the
/// first one, so each is reported and then read as the key its did-you-mean names (or
/// dropped when there is none), and the rest is read again. The first error of another
/// kind (wrong type, missing key) ends the search.
pub(crate) fn deserialize_all<T: serde::de::DeserializeOwned>(
    source: Source<'_>,
    locator: &Locator<'_>,
) -> Result<T, Diagnostics> {
    let (mut root, _) = DeTable::parse_recoverable(source.text);
    let mut diags = Diagnostics::default();
    loop {
        let e = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(parsed) => return diags.into_result(parsed),
            Err(e) => e,
        };
        let Some((key, span)) = unknown_key(&e, locator) else {
            diags.push(serde_diagnostic(source, locator, &e));
            return Err(diags.sorted());
        };
        let allowed = expected_names(e.message());
        let meant = suggest::closest(key, allowed.iter().copied());
        let help = suggest::help(key, allowed.iter().copied(), "keys allowed here");
        diags.push(
            source
                .diag(Some(span.clone()), format!("unknown key `{key}`"))
                .with_help_opt(help),
        );
        let fixed = diags.len() < MAX_UNKNOWN_KEYS && fix_key(root.get_mut(), key, &span, meant);
        if !fixed {
            return Err(diags.sorted());
        }
    }
}

/// The name and key span of an "unknown field" error. The span is narrowed to the key
/// when serde points at a whole inline table (as it does inside tagged enums).
fn unknown_key<'e>(
    e: &'e toml::de::Error,
    locator: &Locator<'_>,
) -> Option<(&'e str, Range<usize>)> {
    let rest = e.message().strip_prefix("unknown field `")?;
    let name = rest.split('`').next()?;
    let span = e.span()?;
    let span = locator.key_within(name, &span).unwrap_or(span);
    Some((name, span))
}

/// Renames the key `name` whose span lies within `span`, somewhere below `table`, to
/// `to` (or removes it when `to` is `None` or already taken); whether it was found.
fn fix_key(table: &mut DeTable<'_>, name: &str, span: &Range<usize>, to: Option<&str>) -> bool {
    let inside = |s: Range<usize>| span.start <= s.start && s.end <= span.end;
    // Keys compare by name only, and a table holds a name once.
    if table
        .keys()
        .any(|k| k.get_ref() == name && inside(k.span()))
    {
        let Some((key, value)) = table.remove_entry(name) else {
            return false;
        };
        if let Some(to) = to.filter(|to| !table.contains_key(*to)) {
            table.insert(Spanned::new(key.span(), Cow::Owned(to.to_owned())), value);
        }
        return true;
    }
    table
        .iter_mut()
        .any(|(_, v)| fix_key_in(v.get_mut(), name, span, to))
}

fn fix_key_in(value: &mut DeValue<'_>, name: &str, span: &Range<usize>, to: Option<&str>) -> bool {
    match value {
        DeValue::Table(t) => fix_key(t, name, span, to),
        DeValue::Array(items) => items
            .iter_mut()
            .any(|v| fix_key_in(v.get_mut(), name, span, to)),
        _ => false,
    }
}

/// Every TOML syntax error in `source` (the parser recovers and keeps going).
pub(crate) fn syntax_errors(source: Source<'_>) -> Result<(), Diagnostics> {
    let (_, errors) = toml::de::DeTable::parse_recoverable(source.text);
    let mut diags = Diagnostics::default();
    for e in errors {
        diags.push(
            source
                .diag(e.span(), format!("invalid TOML: {}", e.message()))
                .with_help("see https://toml.io for the syntax"),
        );
    }
    diags.into_result(())
}

/// A serde error (unknown value, wrong type, missing key) as a diagnostic with a hint.
fn serde_diagnostic(source: Source<'_>, locator: &Locator<'_>, e: &toml::de::Error) -> Diagnostic {
    let msg = e.message();
    let span = e
        .span()
        .filter(|s| !(s.start == 0 && s.end == 0 && msg.starts_with("missing")));
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or_default();
        let expected = expected_names(rest);
        let help = suggest::help(name, expected.iter().copied(), "allowed values");
        return source
            .diag(span, format!("unknown value `{name}`"))
            .with_help_opt(help);
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return source
            .diag(span, format!("missing required key `{name}`"))
            .with_help(format!(
                "add `{name} = ...` to this table (see docs/manifest.md)"
            ));
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let rest = plain_types(rest);
        let (found, expected) = rest.split_once(", expected ").unwrap_or((&rest, ""));
        let path = span.as_ref().and_then(|s| locator.path_at(s));
        let what = path.map_or_else(String::new, |p| format!(" for `{p}`"));
        let message = if expected.is_empty() {
            format!("wrong type{what}: {found}")
        } else {
            format!("wrong type{what}: expected {expected}, found {found}")
        };
        return source
            .diag(span, message)
            .with_help_opt(wrong_type_help(expected, found));
    }
    source.diag(span, plain_types(msg))
}

/// How to write a value serde found of the wrong type, from the words of its message
/// (`expected` "a string", `found` "integer `640`").
fn wrong_type_help(expected: &str, found: &str) -> Option<String> {
    // serde shows a scalar as `kind \`literal\`` (a string as `string "text"`).
    let literal = found
        .split_once(['`', '"'])
        .map(|(_, l)| l.trim_end_matches(['`', '"']));
    let quoted = found.starts_with("string");
    if expected.contains("string") && !expected.contains("array") {
        return Some(match literal {
            Some(l) if !quoted => format!("quote the value: \"{l}\""),
            _ => "write one string in double quotes".to_owned(),
        });
    }
    if expected.contains("integer") {
        let whole = if expected.contains("non-negative") {
            "a whole number, 0 or more,"
        } else {
            "a whole number"
        };
        return Some(match literal {
            Some(l) if quoted && l.trim().parse::<i64>().is_ok() => {
                format!("write the number without quotes: {}", l.trim())
            }
            _ => format!("write {whole} without quotes"),
        });
    }
    if expected.contains("`true` or `false`") {
        return Some(match literal {
            Some(l @ ("true" | "false")) if quoted => {
                format!("write the boolean without quotes: {l}")
            }
            _ => "write `true` or `false`, without quotes".to_owned(),
        });
    }
    if expected.contains("an array") {
        return Some(match literal {
            Some(l) if quoted => format!("write a list, even of one: [\"{l}\"]"),
            _ => "write a list in brackets: [\"a\", \"b\"]".to_owned(),
        });
    }
    if expected.contains("a table") {
        return Some(
            "write a table: `{ key = value, ... }`, or a `[section]` with its keys below it"
                .to_owned(),
        );
    }
    None
}

/// The backticked names after "expected" in a serde message.
fn expected_names(rest: &str) -> Vec<&str> {
    let Some((_, tail)) = rest.split_once("expected") else {
        return Vec::new();
    };
    tail.split('`').skip(1).step_by(2).collect()
}

/// serde's Rust type names in words.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_owned();
    for (rust, words) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("expected a boolean", "expected `true` or `false`"),
    ] {
        out = out.replace(rust, words);
    }
    if let Some(i) = out.find("expected struct ") {
        out.truncate(i);
        out.push_str("expected a table");
    }
    out.replace(" sequence", " array")
        .replace(" map,", " table,")
}

#[cfg(test)]
mod tests {
    use super::expected_names;

    #[test]
    fn extracts_expected_names() {
        assert_eq!(
            expected_names("x`, expected one of `a`, `b`, `c`"),
            ["a", "b", "c"]
        );
        assert_eq!(expected_names("x`, expected `a` or `b`"), ["a", "b"]);
        assert!(expected_names("x`, there are no fields").is_empty());
    }
}
