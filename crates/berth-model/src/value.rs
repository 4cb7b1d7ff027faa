//! Typed setting values: checking a TOML value against a [`SettingDecl`], and the
//! size, duration and URL syntaxes shared by the site config, profiles and defaults.

use std::time::Duration;

use crate::manifest::{SettingDecl, SettingType};
use crate::shown;
use crate::site::SettingValue;
use crate::suggest;

/// Why a value does not fit its declaration: a sentence plus how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    fn new(message: String, help: Option<String>) -> Self {
        Self { message, help }
    }
}

/// What a [`SettingType`] is called in messages, with its article.
pub(crate) fn type_phrase(kind: SettingType) -> &'static str {
    match kind {
        SettingType::String => "a string",
        SettingType::Int => "an integer",
        SettingType::Bool => "a boolean (`true` or `false`)",
        SettingType::Port => "a port number (an integer from 1 to 65535)",
        SettingType::Size => "a size (an integer number of bytes or a string such as \"512MB\")",
        SettingType::Duration => "a duration (a string such as \"30s\")",
        SettingType::Url => "a URL string",
        SettingType::StringList => "an array of strings",
    }
}

/// What a TOML value is, with its article ("a string", "an integer").
pub(crate) fn found_phrase(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks `v` against `decl` (type, range, allowed values, pattern) and returns the
/// typed value. `name` is the setting's `group.key`, used in messages.
pub(crate) fn check_value(
    name: &str,
    decl: &SettingDecl,
    v: &toml::Value,
) -> Result<SettingValue, Problem> {
    let wrong_type = || {
        Problem::new(
            format!(
                "expected {} for `{name}`, found {}",
                type_phrase(decl.kind),
                found_phrase(v)
            ),
            Some(type_hint(decl, v)),
        )
    };
    match decl.kind {
        SettingType::Bool => v.as_bool().map(SettingValue::Bool).ok_or_else(wrong_type),
        SettingType::Int => {
            let n = v.as_integer().ok_or_else(wrong_type)?;
            check_range(name, decl, n, &n.to_string(), |x| x.to_string())?;
            Ok(SettingValue::Int(n))
        }
        SettingType::Port => {
            let n = v.as_integer().ok_or_else(wrong_type)?;
            if !(1..=65535).contains(&n) {
                return Err(Problem::new(
                    format!("`{name}` = {n} is not a valid port"),
                    Some("a port is an integer from 1 to 65535".to_owned()),
                ));
            }
            check_range(name, decl, n, &n.to_string(), |x| x.to_string())?;
            Ok(SettingValue::Int(n))
        }
        SettingType::Size => {
            let bytes = match v {
                toml::Value::Integer(n) if *n >= 0 => *n,
                toml::Value::Integer(n) => {
                    return Err(Problem::new(
                        format!("`{name}` = {n} is negative"),
                        Some("a size is a number of bytes, 0 or more".to_owned()),
                    ));
                }
                toml::Value::String(s) => parse_size(s).map_err(|why| {
                    Problem::new(
                        format!("`{}` is not a valid size for `{name}`: {why}", shown(s)),
                        Some(SIZE_HELP.to_owned()),
                    )
                })?,
                _ => return Err(wrong_type()),
            };
            check_range(name, decl, bytes, &format_size(bytes), format_size)?;
            Ok(SettingValue::Int(bytes))
        }
        SettingType::Duration => {
            let s = v.as_str().ok_or_else(wrong_type)?;
            let d = parse_duration(s).map_err(|why| {
                Problem::new(
                    format!(
                        "`{}` is not a valid duration for `{name}`: {}",
                        shown(s),
                        shown(&why)
                    ),
                    Some(DURATION_HELP.to_owned()),
                )
            })?;
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            check_range(name, decl, secs, s, |x| format!("{x}s"))?;
            Ok(SettingValue::String(s.to_owned()))
        }
        SettingType::Url => {
            let s = v.as_str().ok_or_else(wrong_type)?;
            check_http_url(s).map_err(|why| {
                Problem::new(
                    format!("`{}` is not a valid URL for `{name}`: {why}", shown(s)),
                    Some("write an absolute URL such as `https://example.com/`".to_owned()),
                )
            })?;
            Ok(SettingValue::String(s.to_owned()))
        }
        SettingType::String => {
            let s = v.as_str().ok_or_else(wrong_type)?;
            check_string(name, decl, s)?;
            Ok(SettingValue::String(s.to_owned()))
        }
        SettingType::StringList => {
            let items = v.as_array().ok_or_else(wrong_type)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let s = item.as_str().ok_or_else(|| {
                    Problem::new(
                        format!(
                            "expected an array of strings for `{name}`, found {} in it",
                            found_phrase(item)
                        ),
                        Some("quote every element: `[\"a\", \"b\"]`".to_owned()),
                    )
                })?;
                check_string(name, decl, s)?;
                out.push(s.to_owned());
            }
            Ok(SettingValue::List(out))
        }
    }
}

/// How to write a value of the wrong type: the value itself fixed when it is probably
/// the right value mistyped (`"4"` for an integer), else what to write instead.
fn type_hint(decl: &SettingDecl, v: &toml::Value) -> String {
    let scalar = !matches!(v, toml::Value::Array(_) | toml::Value::Table(_));
    match (decl.kind, v) {
        (SettingType::Int | SettingType::Port, toml::Value::String(s))
            if s.trim().parse::<i64>().is_ok() =>
        {
            format!("write the number without quotes: {}", s.trim())
        }
        (SettingType::Bool, toml::Value::String(s)) if matches!(s.as_str(), "true" | "false") => {
            format!("write the boolean without quotes: {s}")
        }
        (SettingType::Duration, toml::Value::Integer(n)) => {
            format!("write it as a string with a unit: \"{n}s\"")
        }
        (SettingType::String | SettingType::Url | SettingType::Duration, _) if scalar => {
            format!(
                "quote the value: \"{}\"",
                shown(v.to_string().trim_matches('"'))
            )
        }
        (SettingType::StringList, toml::Value::String(s)) => {
            format!("write a list: [\"{}\"]", shown(s))
        }
        (SettingType::StringList, _) if scalar => format!(
            "write a list of quoted strings: [\"{}\"]",
            shown(v.to_string().trim_matches('"'))
        ),
        (SettingType::Int, _) => format!(
            "write a whole number{}, without quotes",
            allowed_range(decl.min, decl.max)
        ),
        (SettingType::Port, _) => format!(
            "write a whole number{}, without quotes",
            allowed_range(decl.min.or(Some(1)), decl.max.or(Some(65535)))
        ),
        (SettingType::Bool, _) => "write `true` or `false`, without quotes".to_owned(),
        (SettingType::Size, _) => {
            "write a number of bytes without quotes (`1048576`), or a number and a unit in \
             quotes (`\"512MB\"`)"
                .to_owned()
        }
        (SettingType::Duration, _) => {
            "write a number and a unit in quotes, e.g. \"30s\" or \"5m\"".to_owned()
        }
        (SettingType::Url, _) => {
            "write an absolute URL in quotes, e.g. \"https://example.com/\"".to_owned()
        }
        (SettingType::String, _) => "write one value in double quotes".to_owned(),
        (SettingType::StringList, _) => "write a list of quoted strings: [\"a\", \"b\"]".to_owned(),
    }
}

/// ` between 1 and 8`, ` of at least 1`, ` of at most 8`, or nothing.
fn allowed_range(min: Option<i64>, max: Option<i64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!(" between {min} and {max}"),
        (Some(min), None) => format!(" of at least {min}"),
        (None, Some(max)) => format!(" of at most {max}"),
        (None, None) => String::new(),
    }
}

fn check_range(
    name: &str,
    decl: &SettingDecl,
    n: i64,
    shown: &str,
    fmt: impl Fn(i64) -> String,
) -> Result<(), Problem> {
    let below = decl.min.is_some_and(|min| n < min);
    let above = decl.max.is_some_and(|max| n > max);
    if !below && !above {
        return Ok(());
    }
    let allowed = match (decl.min, decl.max) {
        (Some(min), Some(max)) => format!("from {} to {}", fmt(min), fmt(max)),
        (Some(min), None) => format!("at least {}", fmt(min)),
        (None, Some(max)) => format!("at most {}", fmt(max)),
        (None, None) => String::new(),
    };
    let side = if below { "too small" } else { "too large" };
    Err(Problem::new(
        format!("`{name}` = {shown} is out of range ({side})"),
        Some(format!("`{name}` must be {allowed}")),
    ))
}

fn check_string(name: &str, decl: &SettingDecl, s: &str) -> Result<(), Problem> {
    // Config files are line based: a line break would start a directive of its own,
    // and NUL or escape sequences have no business in a setting.
    if let Some((i, c)) = s.char_indices().find(|(_, c)| crate::is_unsafe_char(*c)) {
        let mut escaped = String::new();
        crate::quote::escape_char(c, &mut escaped);
        return Err(Problem::new(
            format!(
                "`{name}` has a control character (`{escaped}` at character {}): `{}`",
                s[..i].chars().count() + 1,
                shown(s)
            ),
            Some("remove line breaks, tabs and other control characters from the value".to_owned()),
        ));
    }
    if let Some(choices) = &decl.choices
        && !choices.iter().any(|c| c == s)
    {
        let mut help = format!(
            "allowed values: {}",
            suggest::backticked(choices.iter().map(String::as_str))
        );
        if let Some(c) = suggest::closest(s, choices.iter().map(String::as_str)) {
            help = format!("did you mean `{c}`? {help}");
        }
        return Err(Problem::new(
            format!("`{}` is not an allowed value for `{name}`", shown(s)),
            Some(help),
        ));
    }
    if let Some(pattern) = &decl.pattern {
        // An invalid pattern is reported by `validate`; it accepts nothing here.
        let matches = anchored(pattern).is_ok_and(|re| re.is_match(s));
        if !matches {
            return Err(Problem::new(
                format!("`{}` does not have the form `{name}` requires", shown(s)),
                Some(format!(
                    "the whole value must match the regular expression `{pattern}`"
                )),
            ));
        }
    }
    Ok(())
}

/// `pattern` compiled to match a whole value.
pub(crate) fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// How to write a size, for help lines.
pub const SIZE_HELP: &str = "write a number of bytes (`1048576`) or a number and a unit: `512kB`, `128MB`, `1GiB` \
     (kB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)";

const DURATION_HELP: &str =
    "write a number and a unit, e.g. `30s`, `5m`, `1h 30m`, `500ms` (units: ms, s, m, h, d)";

/// A size written in TOML: a number of bytes (0 or more) or a string [`parse_size`]
/// reads.
pub fn size_value(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) => {
            u64::try_from(*n).map_err(|_| "a size is a number of bytes, 0 or more".to_owned())
        }
        toml::Value::String(s) => {
            parse_size(s).and_then(|n| u64::try_from(n).map_err(|_| "it is negative".to_owned()))
        }
        other => Err(format!("found {}", other.type_str())),
    }
}

/// Parses a size: `"1048576"`, `"512kB"`, `"128 MB"`, `"1GiB"`, `"7.5GB"` (a fraction only
/// where the result is a whole number of bytes).
///
/// `B`; `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000); `KiB`, `MiB`, `GiB`, `TiB`
/// (powers of 1024). Units are case-insensitive.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, rest) = t.split_at(digits_end);
    if num.is_empty() {
        return Err("it does not start with a number".to_owned());
    }
    // A decimal fraction, as published sizes are written (`7.5GB`).
    let (fraction, unit) = match rest.strip_prefix('.') {
        Some(after) => {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            if end == 0 || end > 9 {
                return Err("write at most 9 digits after the decimal point".to_owned());
            }
            after.split_at(end)
        }
        None => ("", rest),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| "the number is too large".to_owned())?;
    let factor: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit `{other}`")),
    };
    let whole = n
        .checked_mul(factor)
        .ok_or_else(|| "the size is too large".to_owned())?;
    if fraction.is_empty() {
        return Ok(whole);
    }
    let scale = 10_i128.pow(u32::try_from(fraction.len()).unwrap_or(9));
    let part = i128::from(fraction.parse::<i64>().unwrap_or(0)) * i128::from(factor);
    if part % scale != 0 {
        return Err("it is not a whole number of bytes".to_owned());
    }
    i64::try_from(part / scale)
        .ok()
        .and_then(|p| whole.checked_add(p))
        .ok_or_else(|| "the size is too large".to_owned())
}

/// Formats bytes with the largest binary or decimal unit that divides them exactly
/// (`1073741824` → `1GiB`, `128000000` → `128MB`), else as a plain number.
pub fn format_size(bytes: i64) -> String {
    const UNITS: [(i64, &str); 8] = [
        (1 << 40, "TiB"),
        (1_000_000_000_000, "TB"),
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "kB"),
    ];
    if bytes != 0 {
        for (factor, unit) in UNITS {
            if bytes % factor == 0 {
                return format!("{}{unit}", bytes / factor);
            }
        }
    }
    bytes.to_string()
}

/// Parses a duration with humantime (`30s`, `5m`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

/// Checks that `s` is an absolute `http`/`https` URL whose host is a DNS name or an IP
/// literal and whose path uses only plain URL characters; returns it parsed.
///
/// The URL's parts land in config files (nginx's `server_name` and `location`, Python
/// strings), so nothing that is special there may pass: no whitespace, no `;{}$'"\\`,
/// no user name or password, no query and no fragment.
pub(crate) fn check_http_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            "it has no scheme (it must start with `http://` or `https://`)".to_owned()
        }
        url::ParseError::EmptyHost => "it has no host".to_owned(),
        other => other.to_string(),
    })?;
    if let Some(c) = s.chars().find(|c| !is_url_char(*c)) {
        let mut shown_c = String::new();
        crate::quote::escape_char(c, &mut shown_c);
        let what = if c.is_whitespace() {
            "whitespace".to_owned()
        } else {
            format!("`{shown_c}`")
        };
        return Err(format!(
            "it contains {what}, which is not allowed in a URL here (percent-encode it in the path)"
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is `{}`, but only `http` and `https` are supported",
            url.scheme()
        ));
    }
    match url.host() {
        None => return Err("it has no host".to_owned()),
        Some(url::Host::Domain(d)) if !is_dns_name(d) => {
            return Err(format!(
                "the host `{}` is not a DNS name (letters, digits and `-` in dot-separated labels) nor an IP address",
                crate::shown(d)
            ));
        }
        Some(_) => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it has a user name or password; remove the `user@` part".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query (`?`) or fragment (`#`); give the base URL only".to_owned());
    }
    Ok(url)
}

/// Characters a URL may have here: unreserved, `%`, `/`, `:`, `@`, `[]` (IPv6) and the
/// sub-delimiters that no config language treats specially. Not `;`, `$`, `'` or
/// anything outside ASCII's printable range.
fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '_'
                | '~'
                | ':'
                | '/'
                | '?'
                | '#'
                | '['
                | ']'
                | '@'
                | '!'
                | '&'
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '='
                | '%'
        )
}

/// A DNS name: dot-separated labels of letters, digits and `-` (not at either end),
/// each 1 to 63 characters, 253 in all.
fn is_dns_name(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::{format_size, parse_size};

    #[test]
    fn a_wrong_type_always_says_what_to_write() {
        use crate::manifest::{SettingDecl, SettingType};
        let decl = |kind, min, max| SettingDecl {
            kind,
            description: String::new(),
            default: None,
            derive: None,
            min,
            max,
            choices: None,
            pattern: None,
        };
        let hint = |d: &SettingDecl, v: &str| {
            let doc: toml::Table = format!("v = {v}").parse().unwrap();
            super::type_hint(d, &doc["v"])
        };
        let port = decl(SettingType::Port, None, None);
        assert_eq!(
            hint(&port, "\"eighty\""),
            "write a whole number between 1 and 65535, without quotes"
        );
        assert_eq!(hint(&port, "\"80\""), "write the number without quotes: 80");
        let int = decl(SettingType::Int, Some(1), Some(8));
        assert_eq!(
            hint(&int, "2.5"),
            "write a whole number between 1 and 8, without quotes"
        );
        assert_eq!(
            hint(&decl(SettingType::Int, None, None), "[1]"),
            "write a whole number, without quotes"
        );
        assert_eq!(
            hint(&decl(SettingType::Bool, None, None), "\"yes\""),
            "write `true` or `false`, without quotes"
        );
        assert_eq!(
            hint(&decl(SettingType::String, None, None), "5"),
            "quote the value: \"5\""
        );
        assert_eq!(
            hint(&decl(SettingType::String, None, None), "[\"a\"]"),
            "write one value in double quotes"
        );
        assert_eq!(
            hint(&decl(SettingType::StringList, None, None), "5"),
            "write a list of quoted strings: [\"5\"]"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MB"), Ok(128_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512kB"), Ok(512_000));
        assert_eq!(parse_size(" 64 mib "), Ok(64 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("7.2GB"), Ok(7_200_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("0.5").is_err(), "half a byte");
        assert!(parse_size("1.GB").is_err());
        assert!(parse_size("1.0000000001GB").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(128_000_000), "128MB");
        assert_eq!(format_size(1234), "1234");
    }
}
