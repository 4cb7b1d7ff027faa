//! Input shown back in diagnostics: control characters escaped, long values cut.
//!
//! A value someone typed (or an attacker planted) is echoed in an error. Raw, a NUL
//! or an escape sequence would reach the administrator's terminal, and a 1 MiB value
//! would flood it, once in the message, once in the help and once in the source line.

use std::fmt::Write as _;

/// At most this many characters of a value are shown in a message.
pub const SHOWN_CHARS: usize = 60;

/// At most this many characters of a source line are shown under a diagnostic.
pub(crate) const LINE_CHARS: usize = 120;

/// `c` as it is shown: itself when printable, else an escape such as `\n`, `\0`,
/// `\x1b` or `\u{2028}`.
pub(crate) fn escape_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if is_unsafe_char(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Characters that must not reach a terminal or a config file raw: C0 and C1 controls,
/// DEL, and the Unicode line and paragraph separators and bidirectional overrides that
/// make text read differently from what it is.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// `s` with every unsafe character escaped and cut after 60 characters
/// (saying how much was left out), ready to put between backticks in a message.
///
/// ```
/// assert_eq!(berth_model::shown("a\u{1b}[2Jb"), "a\\x1b[2Jb");
/// assert!(berth_model::shown(&"x".repeat(1000)).ends_with("… (940 more characters)"));
/// ```
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (count, c) in s.chars().enumerate() {
        if count == SHOWN_CHARS {
            let rest = s.chars().count() - SHOWN_CHARS;
            let _ = write!(out, "… ({rest} more characters)");
            return out;
        }
        escape_char(c, &mut out);
    }
    out
}

/// `s` made safe for a terminal: every unsafe character escaped except line breaks and
/// tabs, nothing cut. For text shown as it is (diffs of files others can write, the
/// output of a tool in an error).
///
/// ```
/// assert_eq!(berth_model::terminal_safe("a\u{1b}]0;x\u{7}\nb"), "a\\x1b]0;x\\x07\nb");
/// ```
pub fn terminal_safe(s: &str) -> String {
    if !s
        .chars()
        .any(|c| is_unsafe_char(c) && c != '\n' && c != '\t')
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' || c == '\t' {
            out.push(c);
        } else {
            escape_char(c, &mut out);
        }
    }
    out
}

/// Every unsafe character of `s` escaped, nothing cut (for messages made of known text).
pub(crate) fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        escape_char(c, &mut out);
    }
    out
}

/// A source line shown under a diagnostic: escaped, and when long, a window around the
/// columns `column..column + width` (1-based, in characters of `line`). Returns the
/// text, the 0-based display column where the caret starts and its width.
pub(crate) fn source_window(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let start = column.saturating_sub(1).min(chars.len());
    let (from, to) = if chars.len() <= LINE_CHARS {
        (0, chars.len())
    } else {
        let from = start.saturating_sub(LINE_CHARS / 3);
        (from, (from + LINE_CHARS).min(chars.len()))
    };
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut pad = None;
    let mut caret_end = None;
    let end = start + width.max(1);
    for (i, c) in chars.iter().enumerate().take(to).skip(from) {
        if i == start {
            pad = Some(out.chars().count());
        }
        escape_char(*c, &mut out);
        if i + 1 == end {
            caret_end = Some(out.chars().count());
        }
    }
    let shown_len = out.chars().count();
    if to < chars.len() {
        out.push('…');
    }
    let pad = pad.unwrap_or(shown_len);
    let width = caret_end.unwrap_or(shown_len).saturating_sub(pad).max(1);
    (out, pad, width)
}

#[cfg(test)]
mod tests {
    use super::{shown, source_window};

    #[test]
    fn escapes_terminal_controls_and_cuts_long_values() {
        assert_eq!(shown("a\0b\nc\u{7f}\u{9b}"), "a\\0b\\nc\\x7f\\u{9b}");
        assert_eq!(shown("héllo"), "héllo");
        let long = shown(&"é".repeat(1 << 20));
        assert!(long.len() < 200, "{long}");
    }

    #[test]
    fn long_source_lines_show_a_window_around_the_caret() {
        let line = format!("k = \"{}\u{1b}\"", "x".repeat(10_000));
        let (text, pad, width) = source_window(&line, 5, 10_003);
        assert!(text.chars().count() <= 130, "{text}");
        assert_eq!(pad, 4);
        assert!(width >= 1);
        let (text, pad, width) = source_window("a\u{1b}b", 2, 1);
        assert_eq!((text.as_str(), pad, width), ("a\\x1bb", 1, 4));
    }
}
