//! Redaction: secrets out of text before it leaves the machine.
//!
//! Three kinds of rule, applied in this order to every text of a support bundle or an
//! error report:
//!
//! 1. **the instance's secret values**, found as written and in the forms they take in
//!    configs and logs (URL-encoded, JSON-escaped), replaced by
//!    `[REDACTED secret:<name>]`: the name says which secret was there, never its value;
//! 2. **berth's own patterns**: the value after a key that names a password, token or
//!    key (`password = …`, `"api_key": "…"`, `'PASSWORD': '…'`), `Authorization`
//!    headers, credentials in URLs (`postgres://user:…@host`), PEM private keys, age
//!    secret keys; the key is kept, the value replaced by `[REDACTED <rule>]`;
//! 3. **the manifest's patterns** (`[diagnose] redact`): each whole match replaced.
//!
//! Every removal is counted by rule, so a report can say what was taken out and where.
//! Pure: no I/O.

use std::collections::BTreeMap;

use regex::Regex;

/// Secrets shorter than this are not searched for: a 1–3 character value would match
/// everywhere and say nothing (a secret that short protects nothing either).
pub const MIN_SECRET_LEN: usize = 4;

/// Around a removal's rule name until the end of [`Redactor::redact`].
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// One pattern rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    regex: Regex,
    /// Replace only the `value` group (the key stays); otherwise the whole match.
    value_only: bool,
}

/// What was removed from one text: the number of removals by rule
/// (`secret:db_password`, `password-assignment`, `manifest:0`…).
pub type Counts = BTreeMap<String, usize>;

/// The rules for one instance.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// (name, forms), longest forms first.
    secrets: Vec<(String, Vec<String>)>,
    rules: Vec<Rule>,
    /// Secrets too short to be searched for, by name.
    too_short: Vec<String>,
}

/// A manifest pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    /// Its index in the manifest's list.
    pub index: usize,
    /// Why.
    pub why: String,
}

/// berth's own patterns: (name, regex with a `value` group).
const OWN: [(&str, &str); 7] = [
    // `password = x`, `"api_key": "x"`, `'PASSWORD': 'x'`, `SECRET_KEY=x`.
    (
        "password-assignment",
        r#"(?i)(?:pass(?:word|wd|phrase)?|pwd|secret(?:[_-]?key)?|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|auth[_-]?key|pepper|salt)["']?\s*[:=]\s*(?:b?["'])?(?P<value>[^\s"',;}\]]{3,})"#,
    ),
    // `--password x`, `--token=x` on a command line.
    (
        "password-option",
        r"(?i)--(?:pass(?:word|wd)?|secret|token|api-key|key)[= ](?P<value>[^\s]{3,})",
    ),
    (
        "authorization-header",
        r"(?i)\b(?:proxy-)?authorization\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?(?P<value>[^\s,;]+)",
    ),
    (
        "url-credentials",
        r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]*:(?P<value>[^/\s@]+)@",
    ),
    (
        "private-key",
        r"(?s)(?P<value>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----)",
    ),
    (
        "age-secret-key",
        r"(?P<value>AGE-SECRET-KEY-1[0-9A-Z]{20,})",
    ),
    // A bearer or API token on its own: long runs of token characters after `Token `.
    (
        "token-prefix",
        r"\b(?:Token|Bearer)\s+(?P<value>[A-Za-z0-9._~+/=-]{16,})",
    ),
];

/// The forms a secret value takes in the texts: as written, URL-encoded, JSON-escaped.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned()];
    let url: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let json = value.replace('\\', r"\\").replace('"', "\\\"");
    for f in [url, json] {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

impl Redactor {
    /// Rules for the secrets `secrets` (name, value) and the manifest's `patterns`.
    ///
    /// # Errors
    /// A manifest pattern that is not a valid regular expression.
    pub fn new(
        secrets: impl IntoIterator<Item = (String, String)>,
        patterns: &[String],
    ) -> Result<Self, BadPattern> {
        let mut kept = Vec::new();
        let mut too_short = Vec::new();
        for (name, value) in secrets {
            let value = value.trim_end_matches(['\n', '\r']).to_owned();
            if value.chars().count() < MIN_SECRET_LEN {
                if !value.is_empty() {
                    too_short.push(name);
                }
                continue;
            }
            kept.push((name, forms(&value)));
        }
        // Longest first: a secret inside another is not left half-replaced.
        kept.sort_by_key(|(_, f)| std::cmp::Reverse(f[0].len()));
        let mut rules: Vec<Rule> = OWN
            .iter()
            .map(|(name, re)| Rule {
                name: (*name).to_owned(),
                regex: Regex::new(re).unwrap_or_else(|e| panic!("rule {name}: {e}")),
                value_only: true,
            })
            .collect();
        for (index, p) in patterns.iter().enumerate() {
            let regex = Regex::new(p).map_err(|e| BadPattern {
                index,
                why: e.to_string(),
            })?;
            rules.push(Rule {
                name: format!("manifest:{index}"),
                regex,
                value_only: false,
            });
        }
        Ok(Self {
            secrets: kept,
            rules,
            too_short,
        })
    }

    /// Secrets not searched for because they are shorter than [`MIN_SECRET_LEN`].
    pub fn too_short(&self) -> &[String] {
        &self.too_short
    }

    /// `text` with every secret and match taken out, and what was taken out.
    ///
    /// Each removal first leaves a marker no rule matches (private-use characters
    /// around the rule's name), so a later rule never rewrites an earlier one's
    /// placeholder; the markers become `[REDACTED <rule>]` at the end.
    pub fn redact(&self, text: &str) -> (String, Counts) {
        let marker = |rule: &str| format!("{OPEN}{rule}{CLOSE}");
        let mut counts = Counts::new();
        // Markers in the input itself are not ours: they are taken out first.
        let mut out = text.replace([OPEN, CLOSE], "\u{FFFD}");
        for (name, forms) in &self.secrets {
            for form in forms {
                let n = out.matches(form.as_str()).count();
                if n > 0 {
                    out = out.replace(form.as_str(), &marker(&format!("secret:{name}")));
                    *counts.entry(format!("secret:{name}")).or_default() += n;
                }
            }
        }
        for rule in &self.rules {
            let mut n = 0;
            let replaced = rule.regex.replace_all(&out, |caps: &regex::Captures<'_>| {
                let whole = caps.get(0).map_or("", |m| m.as_str());
                match caps.name("value") {
                    // What an earlier rule already took out stays as it is.
                    Some(v) if v.as_str().contains(OPEN) || v.as_str().contains(CLOSE) => {
                        whole.to_owned()
                    }
                    Some(v) if rule.value_only => {
                        n += 1;
                        let start = v.start() - caps.get(0).map_or(0, |m| m.start());
                        format!(
                            "{}{}{}",
                            &whole[..start],
                            marker(&rule.name),
                            &whole[start + v.len()..]
                        )
                    }
                    _ if whole.contains(OPEN) || whole.contains(CLOSE) => whole.to_owned(),
                    _ => {
                        n += 1;
                        marker(&rule.name)
                    }
                }
            });
            if n > 0 {
                out = replaced.into_owned();
                *counts.entry(rule.name.clone()).or_default() += n;
            }
        }
        let out = out.replace(OPEN, "[REDACTED ").replace(CLOSE, "]");
        (out, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::{Redactor, forms};

    fn redactor() -> Redactor {
        Redactor::new(
            [
                ("db_password".to_owned(), "s3cr3t-Db/pw+1\n".to_owned()),
                (
                    "secret_key".to_owned(),
                    "k\"ey\\with-quotes-0123456789".to_owned(),
                ),
                ("pin".to_owned(), "123".to_owned()),
            ],
            &["CANARY-[0-9]+".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn secret_values_go_in_every_form_they_take() {
        assert_eq!(forms("a/b c"), ["a/b c".to_owned(), "a%2Fb%20c".to_owned()]);
        let r = redactor();
        assert_eq!(r.too_short(), ["pin".to_owned()]);
        let text = "dsn=postgres://netbox:s3cr3t-Db%2Fpw%2B1@127.0.0.1/netbox\n\
                    {\"SECRET_KEY\": \"k\\\"ey\\\\with-quotes-0123456789\"}\n\
                    plain s3cr3t-Db/pw+1 here\n";
        let (out, counts) = r.redact(text);
        insta::assert_snapshot!(out);
        assert_eq!(counts["secret:db_password"], 2, "{counts:?}");
        assert_eq!(counts["secret:secret_key"], 1, "{counts:?}");
        assert!(!out.contains("s3cr3t") && !out.contains("with-quotes"));
    }

    /// berth's own patterns keep the key and take the value; the manifest's take the
    /// whole match; nothing is counted twice.
    #[test]
    fn patterns_take_values_after_their_keys() {
        let r = Redactor::new(
            Vec::<(String, String)>::new(),
            &["CANARY-[0-9]+".to_owned()],
        )
        .unwrap();
        let text = "\
password = hunter22
    'PASSWORD': 'django-db-pw',
export API_KEY=abcdef123456
Authorization: Token 0123456789abcdef0123456789abcdef
curl -H 'authorization: Bearer eyJhbGciOi.JIUzI1N.iIsInR5cCI6'
redis://:redispw99@127.0.0.1:6379/0
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmU=
-----END OPENSSH PRIVATE KEY-----
AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ
a vendor's CANARY-42 value
the password field is required
";
        let (out, counts) = r.redact(text);
        insta::assert_snapshot!(out);
        insta::assert_debug_snapshot!(counts);
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_named() {
        let err = Redactor::new(
            Vec::<(String, String)>::new(),
            &["ok".to_owned(), "(".to_owned()],
        )
        .unwrap_err();
        assert_eq!(err.index, 1);
    }
}
