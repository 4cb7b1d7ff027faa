//! Loading a manifest: TOML text → [`Manifest`], with positioned diagnostics for
//! syntax errors and for keys or values serde rejects.

use std::collections::BTreeMap;
use std::path::Path;

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
    /// Reports syntax errors, unknown keys (with a did-you-mean), values of the wrong
    /// type and templates that cannot be read. Semantic checks are [`crate::validate`]'s.
    pub fn load(dir: &Path) -> Result<LoadedManifest, Diagnostics> {
        let path = dir.join(MANIFEST_FILE);
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Diagnostic::without_position(&source_name, format!("Failed to read the manifest: {e}"))
                .with_help(format!(
                    "an app directory holds its manifest in `{MANIFEST_FILE}`"
                ))
        })?;
        let mut manifest = parse_manifest(&source_name, &text)?;

        let mut diags = Diagnostics::default();
        let mut templates = BTreeMap::new();
        let locator = Locator::new(&text);
        let source = Source::new(&source_name, &text);
        for (i, file) in manifest.files.iter().enumerate() {
            if templates.contains_key(&file.template) {
                continue;
            }
            match std::fs::read_to_string(dir.join(&file.template)) {
                Ok(body) => {
                    templates.insert(file.template.clone(), body);
                }
                Err(e) => {
                    let span =
                        locator.value(&[Seg::Key("files"), Seg::Index(i), Seg::Key("template")]);
                    diags.push(
                        source
                            .diag(
                                span,
                                format!("Failed to read template `{}`: {e}", file.template),
                            )
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

fn parse_manifest(name: &str, text: &str) -> Result<Manifest, Diagnostics> {
    let source = Source::new(name, text);
    syntax_errors(source)?;
    let mut manifest =
        toml::from_str::<Manifest>(text).map_err(|e| serde_diagnostic(source, &e))?;
    if let Err(group) = crate::builtin::add_builtin_settings(&mut manifest) {
        let span = Locator::new(text).key(&[Seg::Key("settings"), Seg::Key(group)]);
        return Err(source
            .diag(
                span,
                format!("the settings group `{group}` is berth's own (backup target, schedule, retention)"),
            )
            .with_help("rename the group; its keys are documented in docs/site-config.md")
            .into());
    }
    Ok(manifest)
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

/// A serde error (unknown key, wrong type, missing key) as a diagnostic with a hint.
fn serde_diagnostic(source: Source<'_>, e: &toml::de::Error) -> Diagnostic {
    let msg = e.message();
    let span = e
        .span()
        .filter(|s| !(s.start == 0 && s.end == 0 && msg.starts_with("missing")));
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let expected = expected_names(rest);
        let help = suggest::help(name, expected.iter().copied(), "keys allowed here");
        return source
            .diag(span, format!("unknown key `{name}`"))
            .with_help_opt(help);
    }
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
        return source.diag(span, format!("wrong type: {}", plain_types(rest)));
    }
    source.diag(span, plain_types(msg))
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
