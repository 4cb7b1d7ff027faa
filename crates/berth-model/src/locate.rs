//! Find where a key or value sits in a TOML text, by path (`services.web.depends_on[1]`).
//!
//! Serde gives typed values without positions; validation works on those types and
//! asks a [`Locator`] for the span to point at. The locator walks the spanned tree
//! from `toml::de::DeTable`, so it agrees byte for byte with the parser.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into a TOML document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'p> {
    /// A table key.
    Key(&'p str),
    /// An array element (also an `[[array]]` table).
    Index(usize),
}

/// Looks up spans of keys and values in one TOML text.
pub(crate) struct Locator<'a> {
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    /// Parses `text` (best effort: a text with syntax errors still locates what it can).
    pub fn new(text: &'a str) -> Self {
        if text.is_empty() {
            return Self { root: None };
        }
        let (root, _errors) = DeTable::parse_recoverable(text);
        Self { root: Some(root) }
    }

    /// Span of the value at `path`, falling back to the nearest ancestor found.
    pub fn value(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        self.walk(path).map(|(_, value)| value)
    }

    /// Span of the last key on `path` (for "unknown key" style errors), falling back to
    /// the value or the nearest ancestor.
    pub fn key(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        self.walk(path).map(|(key, value)| key.unwrap_or(value))
    }

    /// Returns (span of the last key seen, span of the deepest value reached).
    fn walk(&self, path: &[Seg<'_>]) -> Option<(Option<Range<usize>>, Range<usize>)> {
        let root = self.root.as_ref()?;
        let mut key_span = None;
        let mut table: &DeTable<'a> = root.get_ref();
        let mut current: Option<&Spanned<DeValue<'a>>> = None;
        for seg in path {
            let next = match (seg, current.map(Spanned::get_ref)) {
                (Seg::Key(k), None | Some(DeValue::Table(_))) => find(table, k),
                (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i).map(|v| (None, v)),
                _ => None,
            };
            let Some((k, v)) = next else { break };
            if k.is_some() {
                key_span = k;
            }
            if let DeValue::Table(t) = v.get_ref() {
                table = t;
            }
            current = Some(v);
        }
        current.map(|v| (key_span, v.span()))
    }
}

fn find<'t, 'a>(
    table: &'t DeTable<'a>,
    key: &str,
) -> Option<(Option<Range<usize>>, &'t Spanned<DeValue<'a>>)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, v)| (Some(k.span()), v))
}

#[cfg(test)]
mod tests {
    use super::{Locator, Seg};

    #[test]
    fn finds_keys_values_and_array_elements() {
        let text = "[services.web]\ndepends_on = [\"db\", \"cache\"]\n\n[[files]]\npath = \"a\"\n[[files]]\npath = \"b\"\n";
        let loc = Locator::new(text);
        let span = loc
            .value(&[
                Seg::Key("services"),
                Seg::Key("web"),
                Seg::Key("depends_on"),
                Seg::Index(1),
            ])
            .unwrap();
        assert_eq!(&text[span], "\"cache\"");
        let span = loc
            .key(&[
                Seg::Key("services"),
                Seg::Key("web"),
                Seg::Key("depends_on"),
            ])
            .unwrap();
        assert_eq!(&text[span], "depends_on");
        let span = loc
            .value(&[Seg::Key("files"), Seg::Index(1), Seg::Key("path")])
            .unwrap();
        assert_eq!(&text[span], "\"b\"");
        // A missing leaf falls back to its parent.
        let span = loc
            .key(&[Seg::Key("services"), Seg::Key("web"), Seg::Key("nope")])
            .unwrap();
        assert_eq!(&text[span], "web");
    }
}
