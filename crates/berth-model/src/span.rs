//! Byte offsets to line, column and source line, for [`Diagnostic`]s.
//!
//! Parsers report byte ranges; people read `file:line:column` and a caret under
//! the problem. This module is the one place that turns the first into the second.

use std::ops::Range;

use crate::Diagnostic;

/// A named source text that diagnostics point into.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// File name as the user knows it.
    pub name: &'a str,
    /// The whole text.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    /// A source named `name` with contents `text`.
    pub fn new(name: &'a str, text: &'a str) -> Self {
        Self { name, text }
    }

    /// A diagnostic at `span`, or without a position when `span` is `None`.
    pub fn diag(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        match span {
            Some(span) => Diagnostic::at(self.name, self.text, span, message),
            None => Diagnostic::without_position(self.name, message),
        }
    }
}

/// Line (1-based), column (1-based, in characters), the line's text and the number of
/// characters of `span` on that line (at least 1).
pub(crate) fn locate(text: &str, span: &Range<usize>) -> (usize, usize, String, usize) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let source_line = text[line_start..line_end].trim_end_matches('\r').to_owned();
    let width = text[start..end.min(line_end)].chars().count().max(1);
    (line, column, source_line, width)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locates_lines_and_columns() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(locate(text, &(0..1)), (1, 1, "a = 1".to_owned(), 1));
        assert_eq!(locate(text, &(6..9)), (2, 1, "bé = \"x\"".to_owned(), 2));
        assert_eq!(locate(text, &(12..15)), (2, 6, "bé = \"x\"".to_owned(), 3));
        // Past the end and inside a character: clamped, never a panic.
        assert_eq!(locate(text, &(100..200)).0, 3);
        assert_eq!(locate(text, &(8..8)).1, 2);
    }
}
