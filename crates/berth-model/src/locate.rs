//! Find where a key or value sits in a TOML text, by path (`services.web.depends_on[1]`).
//!
//! Serde gives typed values without positions; validation works on those types and
//! asks a [`Locator`] for the span to point at. The locator walks the spanned tree
//! from `toml::de::DeTable`, so it agrees byte for byte with the parser.

use std::fmt::Write as _;
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

impl Locator<'_> {
    /// The dotted path (`files[2].mode`) of the key or value whose span is exactly
    /// `span`, for naming what a parser error points at.
    pub fn path_at(&self, span: &Range<usize>) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut found = None;
        let mut path = String::new();
        visit_table(root.get_ref(), &mut path, &mut |path, key, value| {
            let hit = key.is_some_and(|k| k.span() == *span) || value.span() == *span;
            if hit && found.is_none() {
                found = Some(path.to_owned());
            }
        });
        found
    }

    /// The span of a key called `name` inside `within` (the first in the text), to
    /// narrow an error that points at a whole inline table down to one of its keys.
    pub fn key_within(&self, name: &str, within: &Range<usize>) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut path = String::new();
        visit_table(root.get_ref(), &mut path, &mut |_, key, _| {
            let Some(key) = key.filter(|k| k.get_ref() == name) else {
                return;
            };
            let span = key.span();
            let inside = within.start <= span.start && span.end <= within.end;
            if inside && best.as_ref().is_none_or(|b| span.start < b.start) {
                best = Some(span);
            }
        });
        best
    }
}

/// A key as the spanned parser gives it.
type Key<'a> = Spanned<std::borrow::Cow<'a, str>>;

/// Calls `f(path, key, value)` for every key and array element below `table`,
/// parents before children. `path` is the dotted path of `table` on entry.
fn visit_table<'a>(
    table: &DeTable<'a>,
    path: &mut String,
    f: &mut impl FnMut(&str, Option<&Key<'a>>, &Spanned<DeValue<'a>>),
) {
    for (k, v) in table {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k.get_ref());
        f(path, Some(k), v);
        visit_value(v, path, f);
        path.truncate(len);
    }
}

fn visit_value<'a>(
    value: &Spanned<DeValue<'a>>,
    path: &mut String,
    f: &mut impl FnMut(&str, Option<&Key<'a>>, &Spanned<DeValue<'a>>),
) {
    match value.get_ref() {
        DeValue::Table(t) => visit_table(t, path, f),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                f(path, None, item);
                visit_value(item, path, f);
                path.truncate(len);
            }
        }
        _ => {}
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

    #[test]
    fn names_what_a_span_points_at() {
        let text = "[[files]]\npath = \"a\"\n[[files]]\nmode = 640\n\n[c]\nb = { kind = \"x\", pyton = 1 }\n";
        let loc = Locator::new(text);
        let at = text.find("640").unwrap();
        assert_eq!(loc.path_at(&(at..at + 3)).as_deref(), Some("files[1].mode"));
        let at = text.find("mode").unwrap();
        assert_eq!(loc.path_at(&(at..at + 4)).as_deref(), Some("files[1].mode"));
        assert_eq!(loc.path_at(&(0..1)), None);
        let table = text.find('{').unwrap()..text.find('}').unwrap() + 1;
        let key = loc.key_within("pyton", &table).unwrap();
        assert_eq!(&text[key], "pyton");
        assert_eq!(loc.key_within("path", &table), None);
    }
}
