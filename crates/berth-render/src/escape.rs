//! Escaping values for the file they land in.
//!
//! Every `[[files]]` entry names its [`FileFormat`]; the template is rendered with
//! auto-escaping for that format, so `{{ settings.web.listen }}` in an nginx file can
//! never add a directive, and `{{ secrets.key }}` in a Python file is always one string
//! literal. The same escapes are filters (`| nginx`, `| python`, `| php`, `| shell`,
//! `| pgconf`, `| redis`, `| json`, `| yaml`, `| conf`) for a value in another language inside the
//! file: a filter's result is final in a file of its own format, and escaped again for
//! the file otherwise (a shell word in a YAML file is a YAML string).
//!
//! Two families:
//!
//! - **Literal formats** (`python`, `php`, `json`, `yaml`): every value is written as a literal
//!   of the language: strings quoted, numbers, booleans, lists and maps as such.
//! - **Word formats** (`nginx`, `shell`, `redis`): a string made only of plain
//!   characters (`A-Z a-z 0-9 _ . / : @ % + , = -`) is written as it is, so paths and
//!   addresses read naturally; anything else is quoted and escaped as one word.
//!   `postgresql` always quotes strings (its unquoted words cannot hold a path). A
//!   quoted value next to other text is a syntax error in these languages, never
//!   another directive, so build a whole word in one expression:
//!   `{{ paths.run ~ "/nginx.pid" }}`.
//!
//! `conf` writes values as they are but refuses control characters; `plain` does
//! nothing (the template is responsible).

use std::fmt::Write as _;

use berth_model::FileFormat;
use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// `format`'s escape of `value`, as the text to put in the file.
pub fn escape(format: FileFormat, value: &Value) -> Result<String, Error> {
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "an undefined value cannot be written to a config file",
        ));
    }
    match format {
        FileFormat::Python | FileFormat::Php => {
            let lang = if format == FileFormat::Python {
                &PYTHON
            } else {
                &PHP
            };
            let mut out = String::new();
            literal(&mut out, value, lang)?;
            Ok(out)
        }
        FileFormat::Json | FileFormat::Yaml => json(value),
        FileFormat::Nginx => word(format, value, nginx_quote),
        FileFormat::Shell => word(format, value, shell_quote),
        FileFormat::Postgresql => word(format, value, pg_quote),
        FileFormat::Redis => word(format, value, redis_quote),
        FileFormat::Haproxy => word(format, value, haproxy_quote),
        FileFormat::Conf => word(format, value, conf_text),
        FileFormat::Plain => Ok(value.to_string()),
    }
}

/// Characters a word format writes without quotes.
fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | '/' | ':' | '@' | '%' | '+' | ',' | '=' | '-')
        })
}

fn invalid(format: FileFormat, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "cannot write this value to a `{}` file: {why}",
            format.name()
        ),
    )
}

/// A scalar, or a list of scalars, in a word format.
fn word(
    format: FileFormat,
    value: &Value,
    quote: fn(&str) -> Result<String, String>,
) -> Result<String, Error> {
    let scalar = |v: &Value| -> Result<String, Error> {
        match v.kind() {
            ValueKind::Bool => Ok(bool_word(format, v.is_true()).to_owned()),
            ValueKind::Number => Ok(v.to_string()),
            ValueKind::String => {
                let s = v.as_str().unwrap_or_default();
                if matches!(format, FileFormat::Conf | FileFormat::Postgresql) || !is_plain_word(s)
                {
                    quote(s).map_err(|why| invalid(format, why))
                } else {
                    Ok(s.to_owned())
                }
            }
            ValueKind::None => Err(invalid(format, "it is none")),
            other => Err(invalid(format, format!("it is a {other}"))),
        }
    };
    if value.kind() != ValueKind::Seq {
        return scalar(value);
    }
    let items = value
        .try_iter()?
        .map(|v| scalar(&v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match format {
        // One setting, one quoted string: `'a, b'`.
        FileFormat::Postgresql => {
            let joined = value
                .try_iter()?
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            pg_quote(&joined).map_err(|why| invalid(format, why))?
        }
        FileFormat::Conf => items.join(", "),
        _ => items.join(" "),
    })
}

fn bool_word(format: FileFormat, b: bool) -> &'static str {
    match (format, b) {
        (FileFormat::Nginx | FileFormat::Postgresql, true) => "on",
        (FileFormat::Nginx | FileFormat::Postgresql, false) => "off",
        (FileFormat::Redis, true) => "yes",
        (FileFormat::Redis, false) => "no",
        (_, true) => "true",
        (_, false) => "false",
    }
}

/// nginx: `"..."` with `\\` and `\"`; `\n`, `\r`, `\t` as escapes. `$` is refused:
/// nginx expands variables inside quotes too and has no escape for it.
fn nginx_quote(s: &str) -> Result<String, String> {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' => return Err("it contains `$`, which nginx reads as a variable".to_owned()),
            c if berth_model::is_unsafe_char(c) => {
                return Err(format!(
                    "it contains the control character U+{:04X}",
                    u32::from(c)
                ));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// POSIX shell: `'...'`, a `'` written `'\''`. NUL cannot be in a shell word.
fn shell_quote(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        return Err("it contains a NUL character".to_owned());
    }
    Ok(format!("'{}'", s.replace('\'', "'\\''")))
}

/// `postgresql.conf`: `'...'` with `''` for a quote and backslash escapes, which
/// PostgreSQL's configuration scanner reads back (octal for other control characters).
fn pg_quote(s: &str) -> Result<String, String> {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => return Err("it contains a NUL character".to_owned()),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// `redis.conf`: `"..."` with `\\`, `\"`, `\n`, `\r`, `\t` and `\xHH` for every other
/// byte outside printable ASCII, as Redis's argument splitter reads them.
#[allow(clippy::unnecessary_wraps)] // the signature every word format's quoting shares
fn redis_quote(s: &str) -> Result<String, String> {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
    }
    out.push('"');
    Ok(out)
}

/// HAProxy: `'...'`, inside which it expands no variable and reads no escape, so a
/// value with a single quote (or a line break) cannot be written at all.
fn haproxy_quote(s: &str) -> Result<String, String> {
    if let Some(c) = s
        .chars()
        .find(|c| *c == '\'' || berth_model::is_unsafe_char(*c))
    {
        return Err(if c == '\'' {
            "it contains a single quote (HAProxy cannot quote it)".to_owned()
        } else {
            format!(
                "it contains the control character U+{:04X} (HAProxy cannot quote it)",
                u32::from(c)
            )
        });
    }
    Ok(format!("'{s}'"))
}

/// Line-based text without quoting: the value as it is, if it stays on its line.
fn conf_text(s: &str) -> Result<String, String> {
    match s.chars().find(|c| berth_model::is_unsafe_char(*c)) {
        Some(c) => Err(format!(
            "it contains the control character U+{:04X} (a `conf` file has no way to quote it)",
            u32::from(c)
        )),
        None => Ok(s.to_owned()),
    }
}

/// JSON (and YAML, which reads JSON): serde_json, plus `\uXXXX` for DEL, C1 controls and
/// the Unicode line separators, which YAML 1.1 would read as line breaks.
fn json(value: &Value) -> Result<String, Error> {
    let text = serde_json::to_string(value).map_err(|e| {
        Error::new(
            ErrorKind::BadSerialization,
            "cannot write the value as JSON",
        )
        .with_source(e)
    })?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if berth_model::is_unsafe_char(c) {
            // Outside strings JSON has no such characters, so this only touches strings.
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// How a literal format writes what is not a string: Python and PHP differ only in
/// these words and brackets (and their string escapes).
struct Literal {
    format: FileFormat,
    none: &'static str,
    yes: &'static str,
    no: &'static str,
    /// Brackets of a map, and what joins a key to its value.
    map: (char, char, &'static str),
    string: fn(&mut String, &str),
}

/// Python: `'...'` strings with every non-printable or non-ASCII character escaped,
/// `True`/`False`/`None`, lists and dicts.
const PYTHON: Literal = Literal {
    format: FileFormat::Python,
    none: "None",
    yes: "True",
    no: "False",
    map: ('{', '}', ": "),
    string: python_str,
};

/// PHP: `"..."` strings (PHP reads escapes only inside double quotes) with `$` escaped
/// so nothing is interpolated, every control and non-ASCII character as an escape;
/// `true`/`false`/`null`, `[...]` arrays and `[k => v]` maps.
const PHP: Literal = Literal {
    format: FileFormat::Php,
    none: "null",
    yes: "true",
    no: "false",
    map: ('[', ']', " => "),
    string: php_str,
};

/// `value` as a literal of `lang`: numbers as numbers (finite only), lists as `[...]`.
fn literal(out: &mut String, value: &Value, lang: &Literal) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str(lang.none),
        ValueKind::Bool => out.push_str(if value.is_true() { lang.yes } else { lang.no }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                let f = f64::try_from(value.clone())?;
                if !f.is_finite() {
                    return Err(invalid(lang.format, "it is not a finite number"));
                }
                let _ = write!(out, "{f:?}");
            }
        }
        ValueKind::String => (lang.string)(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                literal(out, &item, lang)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            let (open, close, joint) = lang.map;
            out.push(open);
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                literal(out, &key, lang)?;
                out.push_str(joint);
                literal(out, &value.get_item(&key)?, lang)?;
            }
            out.push(close);
        }
        other => return Err(invalid(lang.format, format!("it is a {other}"))),
    }
    Ok(())
}

fn python_str(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('\'');
}

fn php_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out.push('"');
}

/// The filters templates may use, by name, and the format each applies.
pub(crate) const FILTERS: [(&str, FileFormat); 10] = [
    ("nginx", FileFormat::Nginx),
    ("python", FileFormat::Python),
    ("php", FileFormat::Php),
    ("shell", FileFormat::Shell),
    ("pgconf", FileFormat::Postgresql),
    ("redis", FileFormat::Redis),
    ("haproxy", FileFormat::Haproxy),
    ("yaml", FileFormat::Yaml),
    ("json", FileFormat::Json),
    ("conf", FileFormat::Conf),
];

/// Every form `secret` can take in a rendered file or command: as it is, each format's
/// escape and each escaping filter's output (`tojson`, `escape`), without the quotes
/// around it, so a diff shown to people can mask each of them wherever it appears,
/// alone or inside a longer string.
pub fn secret_encodings(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    if secret.is_empty() {
        return Vec::new();
    }
    let value = Value::from(secret);
    for format in FileFormat::ALL {
        if let Ok(e) = escape(format, &value) {
            out.push(e);
        }
    }
    let env = minijinja::Environment::new();
    for filter in ["tojson", "escape"] {
        let template = format!("{{{{ s | {filter} }}}}");
        if let Ok(e) = env.render_str(&template, minijinja::context! { s => secret }) {
            out.push(e);
        }
    }
    let mut inner: Vec<String> = out
        .into_iter()
        .map(|e| {
            let stripped = ['"', '\'']
                .iter()
                .find_map(|q| e.strip_prefix(*q).and_then(|x| x.strip_suffix(*q)));
            stripped.map_or(e.clone(), str::to_owned)
        })
        .filter(|e| !e.is_empty())
        .collect();
    // Longest first, so a longer form is masked whole before a shorter one inside it.
    inner.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    inner.dedup();
    inner
}

#[cfg(test)]
mod tests {
    use berth_model::FileFormat;
    use minijinja::Value;

    use super::{escape, secret_encodings};

    /// Strings an attacker would try: a new line or directive, quotes, backslashes,
    /// command substitution, NUL, terminal escapes, non-ASCII and line separators.
    const ADVERSARIAL: [&str; 10] = [
        "a\nb",
        "x; location /leak { alias /etc/; }",
        "it's \"quoted\"",
        "back\\slash\\",
        "$(id)`id`${HOME}",
        "nul\0byte",
        "esc\u{1b}[2J",
        "é 日本 \u{2028}\u{85}",
        "",
        "plain-word_1.0/x:y@z",
    ];

    fn esc(format: FileFormat, s: &str) -> Result<String, String> {
        escape(format, &Value::from(s)).map_err(|e| e.to_string())
    }

    #[test]
    fn word_formats_write_plain_words_bare_and_quote_the_rest() {
        for f in [
            FileFormat::Nginx,
            FileFormat::Shell,
            FileFormat::Redis,
            FileFormat::Haproxy,
        ] {
            assert_eq!(
                esc(f, "/var/opt/berth/app/run").unwrap(),
                "/var/opt/berth/app/run"
            );
            assert_eq!(esc(f, "127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        }
        assert_eq!(esc(FileFormat::Nginx, "a b;{}").unwrap(), "\"a b;{}\"");
        assert_eq!(esc(FileFormat::Nginx, "q\"\\").unwrap(), "\"q\\\"\\\\\"");
        assert_eq!(esc(FileFormat::Nginx, "a\nb").unwrap(), "\"a\\nb\"");
        assert!(esc(FileFormat::Nginx, "$host").unwrap_err().contains('$'));
        assert!(esc(FileFormat::Nginx, "a\0").is_err());
        // HAProxy expands `${VAR}` and reads escapes inside double quotes, nothing
        // inside single ones, where a single quote cannot be written at all.
        assert_eq!(
            esc(FileFormat::Haproxy, "/x ${HOME} \\\"").unwrap(),
            "'/x ${HOME} \\\"'"
        );
        assert!(
            esc(FileFormat::Haproxy, "it's")
                .unwrap_err()
                .contains("single quote")
        );
        assert!(esc(FileFormat::Haproxy, "a\nb").is_err());
        assert!(esc(FileFormat::Haproxy, "a#b").unwrap().starts_with('\''));
        assert_eq!(esc(FileFormat::Shell, "it's").unwrap(), "'it'\\''s'");
        assert_eq!(esc(FileFormat::Shell, "$(id)").unwrap(), "'$(id)'");
        assert_eq!(esc(FileFormat::Shell, "").unwrap(), "''");
        assert!(esc(FileFormat::Shell, "a\0").is_err());
        assert_eq!(
            esc(FileFormat::Redis, "a \"b\"\n\0é").unwrap(),
            "\"a \\\"b\\\"\\n\\x00\\xc3\\xa9\""
        );
        assert_eq!(
            esc(FileFormat::Postgresql, "it's\\\n").unwrap(),
            "'it''s\\\\\\n'"
        );
        assert_eq!(esc(FileFormat::Postgresql, "plain").unwrap(), "'plain'");
        assert_eq!(esc(FileFormat::Postgresql, "\u{1b}").unwrap(), "'\\033'");
        assert!(esc(FileFormat::Postgresql, "\0").is_err());
        assert_eq!(esc(FileFormat::Conf, "a b;").unwrap(), "a b;");
        assert!(esc(FileFormat::Conf, "a\nb").is_err());
        assert!(esc(FileFormat::Conf, "\u{2028}").is_err());
        assert_eq!(esc(FileFormat::Plain, "a\nb").unwrap(), "a\nb");
    }

    #[test]
    fn literal_formats_write_one_literal() {
        assert_eq!(
            esc(FileFormat::Python, "it's\n\0é\u{1F600}").unwrap(),
            "'it\\'s\\n\\x00\\xe9\\U0001f600'"
        );
        assert_eq!(
            esc(FileFormat::Json, "a\"\n\u{2028}").unwrap(),
            "\"a\\\"\\n\\u2028\""
        );
        assert_eq!(esc(FileFormat::Yaml, "\u{85}").unwrap(), "\"\\u0085\"");
        assert_eq!(
            esc(FileFormat::Php, "a\"$b{$c}\\\n\0\u{1b}é\u{1F600}").unwrap(),
            r#""a\"\$b{\$c}\\\n\x00\x1b\u{e9}\u{1f600}""#
        );
        let php = |v: Value| escape(FileFormat::Php, &v).unwrap();
        assert_eq!(php(Value::from(false)), "false");
        assert_eq!(php(Value::from(())), "null");
        assert_eq!(php(Value::from(vec!["a", "$b"])), r#"["a", "\$b"]"#);
        let py = |v: Value| escape(FileFormat::Python, &v).unwrap();
        assert_eq!(py(Value::from(true)), "True");
        assert_eq!(py(Value::from(())), "None");
        assert_eq!(py(Value::from(3)), "3");
        assert_eq!(py(Value::from(1.5)), "1.5");
        assert_eq!(py(Value::from(vec!["a", "b'"])), "['a', 'b\\'']");
        let bools = |f| escape(f, &Value::from(true)).unwrap();
        assert_eq!(bools(FileFormat::Nginx), "on");
        assert_eq!(bools(FileFormat::Redis), "yes");
        assert_eq!(bools(FileFormat::Postgresql), "on");
        assert_eq!(bools(FileFormat::Shell), "true");
        assert!(escape(FileFormat::Nginx, &Value::from(())).is_err());
        assert!(escape(FileFormat::Python, &Value::UNDEFINED).is_err());
    }

    /// No adversarial string leaves its word or literal: a quoted result has no raw
    /// line break and every quote inside is escaped (checked by the real programs in
    /// `tests/consumers.rs`; here the shape).
    #[test]
    fn adversarial_strings_never_break_out() {
        for s in ADVERSARIAL {
            for f in FileFormat::ALL {
                let Ok(out) = esc(f, s) else { continue };
                if f == FileFormat::Plain {
                    continue;
                }
                assert!(!out.contains('\0'), "{f:?} {s:?} -> {out:?}");
                // Inside single quotes the shell takes every character but `'` as it is.
                if f != FileFormat::Shell {
                    assert!(!out.contains('\n'), "{f:?} {s:?} -> {out:?}");
                    assert!(!out.contains('\u{1b}'), "{f:?} {s:?} -> {out:?}");
                }
                if f != FileFormat::Conf && !super::is_plain_word(s) {
                    let q = out.chars().next().unwrap();
                    assert!(matches!(q, '"' | '\''), "{f:?} {s:?} -> {out:?}");
                    assert!(out.ends_with(q), "{f:?} {s:?} -> {out:?}");
                }
            }
        }
    }

    #[test]
    fn secret_encodings_cover_tojson_and_every_format() {
        let secret = "k<e>y&'\"\\é";
        let forms = secret_encodings(secret);
        assert!(forms.contains(&secret.to_owned()));
        // tojson writes `<>&'` as \u003c ... (the form `plan` once printed unmasked).
        assert!(forms.iter().any(|f| f.contains("\\u003c")), "{forms:?}");
        assert!(forms.iter().any(|f| f.contains("\\xe9")), "{forms:?}");
        for w in forms.windows(2) {
            assert!(w[0].len() >= w[1].len(), "longest first: {forms:?}");
        }
        assert!(secret_encodings("").is_empty());
    }
}
