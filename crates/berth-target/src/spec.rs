//! Target text: parsing and printing `/dir`, `file:///dir`, `sftp://`/`ssh://` URLs and
//! scp-like `user@host:dir`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::TargetError;

/// Where backups are kept, as written in configuration or on the command line.
///
/// Its [`Display`](fmt::Display) form parses back to an equal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// A local directory (always absolute).
    Local(PathBuf),
    /// A directory on an SSH server, reached with SFTP.
    Ssh(SshSpec),
}

/// A remote directory reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshSpec {
    /// Login name; `None` leaves it to ssh (its config, then the local user name).
    pub user: Option<String>,
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Port; `None` leaves it to ssh (its config, then 22).
    pub port: Option<u16>,
    /// Directory: absolute (`/srv/backups`), or relative to the remote home directory
    /// (`backups`; empty for the home directory itself).
    pub path: String,
}

const FORMS: &str = "use an absolute directory (/var/backups/berth), file:///dir, \
                     sftp://[user@]host[:port]/dir or [user@]host:dir";

impl TargetSpec {
    /// Parses target text. Accepted forms:
    ///
    /// - `/abs/dir` and `file:///abs/dir`: a local directory;
    /// - `sftp://[user@]host[:port]/abs/dir`, the same with `ssh://`; `/~/dir` in a URL
    ///   means `dir` under the remote home directory;
    /// - scp-like `[user@]host:dir` (relative to the remote home) or `host:/abs/dir`.
    ///
    /// Relative local paths are rejected: a target must not depend on the directory
    /// berth happens to run in.
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        let invalid = |reason: String| TargetError::InvalidSpec {
            input: redact(s),
            reason,
        };
        if s.is_empty() {
            return Err(invalid(format!("it is empty; {FORMS}")));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid("it contains a control character".to_owned()));
        }
        if s.starts_with('/') {
            return Ok(Self::Local(PathBuf::from(s)));
        }
        // Only a real scheme counts, so `host:dir://x` stays an scp-like path.
        if let Some((scheme, _)) = s.split_once("://").filter(|(scheme, _)| is_scheme(scheme)) {
            return match scheme.to_ascii_lowercase().as_str() {
                "file" => parse_file_url(s).map_err(invalid),
                "sftp" | "ssh" => parse_ssh_url(s).map(Self::Ssh).map_err(invalid),
                other => Err(invalid(format!(
                    "unsupported scheme {other:?}; use file://, sftp:// or ssh://"
                ))),
            };
        }
        if let Some(spec) = parse_scp_like(s).map_err(invalid)? {
            return Ok(Self::Ssh(spec));
        }
        Err(invalid(format!("relative paths are not allowed; {FORMS}")))
    }
}

impl FromStr for TargetSpec {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Ssh(spec) => spec.fmt(f),
        }
    }
}

impl fmt::Display for SshSpec {
    /// scp-like `user@host:path` when that is unambiguous (no port, the path not
    /// starting with `~` or `//`), else an `sftp://` URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        // `host://x` would read as a URL, and `host:~/x` as a path under home.
        if self.port.is_none() && !self.path.starts_with('~') && !self.path.starts_with("//") {
            if let Some(user) = &self.user {
                write!(f, "{user}@")?;
            }
            return write!(f, "{host}:{}", self.path);
        }
        f.write_str("sftp://")?;
        if let Some(user) = &self.user {
            write!(f, "{}@", percent_encode(user, false))?;
        }
        f.write_str(&host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if self.path.starts_with('/') {
            f.write_str(&percent_encode(&self.path, true))
        } else if self.path.is_empty() {
            f.write_str("/~")
        } else {
            write!(f, "/~/{}", percent_encode(&self.path, true))
        }
    }
}

impl serde::Serialize for TargetSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn parse_file_url(s: &str) -> Result<TargetSpec, String> {
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a file:// URL takes no query or fragment".to_owned());
    }
    match url.host_str() {
        None | Some("" | "localhost") => {}
        Some(host) => {
            return Err(format!(
                "file:// is for local directories, not host {host:?}; use sftp://{host}/dir"
            ));
        }
    }
    url.to_file_path()
        .map(TargetSpec::Local)
        .map_err(|()| "not an absolute local path".to_owned())
}

fn parse_ssh_url(s: &str) -> Result<SshSpec, String> {
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if url.password().is_some() {
        return Err("passwords are not accepted in target URLs; use an SSH key".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an sftp:// URL takes no query or fragment".to_owned());
    }
    let host = url.host_str().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map_or_else(|| percent_decode(host), |v6| Ok(v6.to_owned()))?;
    check_host(&host)?;
    let user = match url.username() {
        "" => None,
        user => {
            let user = percent_decode(user)?;
            check_user(&user)?;
            Some(user)
        }
    };
    // The raw path decides "relative to home" so that an encoded `%7E` stays a literal
    // directory named `~`.
    let raw = url.path();
    let path = if raw == "/~" {
        String::new()
    } else if let Some(rest) = raw.strip_prefix("/~/") {
        percent_decode(rest)?
    } else if raw.is_empty() {
        String::new()
    } else {
        percent_decode(raw)?
    };
    if path.chars().any(char::is_control) {
        return Err("the path contains a control character".to_owned());
    }
    Ok(SshSpec {
        user,
        host,
        port: url.port(),
        path,
    })
}

/// `[user@]host:path`, recognised like scp does: a colon (outside `[...]`) before any `/`.
fn parse_scp_like(s: &str) -> Result<Option<SshSpec>, String> {
    let mut in_brackets = false;
    let mut colon = None;
    for (i, c) in s.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            '/' if !in_brackets => return Ok(None),
            ':' if !in_brackets => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(colon) = colon else {
        return Ok(None);
    };
    let (login, path) = (&s[..colon], &s[colon + 1..]);
    let (user, host) = match login.rsplit_once('@') {
        Some((user, host)) => {
            check_user(user)?;
            (Some(user.to_owned()), host)
        }
        None => (None, login),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    check_host(host)?;
    // sftp resolves relative paths against the home directory already.
    let path = if path == "~" {
        ""
    } else {
        path.strip_prefix("~/").unwrap_or(path)
    };
    Ok(Some(SshSpec {
        user,
        host: host.to_owned(),
        port: None,
        path: path.to_owned(),
    }))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        Err("the host name is missing".to_owned())
    } else if host.starts_with('-') {
        Err(format!("host {host:?} starts with '-'"))
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        Err(format!(
            "host {host:?} contains a character hosts never have"
        ))
    } else {
        Ok(())
    }
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        Err("the user name before '@' is empty".to_owned())
    } else if user.starts_with('-') {
        Err(format!("user {user:?} starts with '-'"))
    } else if user
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/'))
    {
        Err(format!(
            "user {user:?} contains a character user names never have"
        ))
    } else {
        Ok(())
    }
}

/// Masks the password of a `scheme://user:password@host` text so it never reaches a message.
fn redact(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_owned();
    };
    let authority_end = s[start..].find('/').map_or(s.len(), |i| start + i);
    let authority = &s[start..authority_end];
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let colon = start + authority[..at].find(':').unwrap_or(0);
            format!("{}:***{}", &s[..colon], &s[start + at..])
        }
        _ => s.to_owned(),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Percent-encodes all but unreserved characters (and `/` in paths). `~` is encoded
/// too, since `/~` at the start of a URL path means the home directory.
fn percent_encode(s: &str, path: bool) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') || (path && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> TargetSpec {
        TargetSpec::Ssh(SshSpec {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    #[test]
    fn accepted_forms() {
        let cases = [
            ("/srv/backups", TargetSpec::Local("/srv/backups".into())),
            (
                "file:///srv/backups",
                TargetSpec::Local("/srv/backups".into()),
            ),
            (
                "file://localhost/srv/b%20c",
                TargetSpec::Local("/srv/b c".into()),
            ),
            (
                "sftp://backup@nas:2222/srv/berth",
                ssh(Some("backup"), "nas", Some(2222), "/srv/berth"),
            ),
            ("ssh://nas/srv/berth", ssh(None, "nas", None, "/srv/berth")),
            ("SFTP://nas/~/b", ssh(None, "nas", None, "b")),
            ("sftp://nas/~", ssh(None, "nas", None, "")),
            ("sftp://nas", ssh(None, "nas", None, "")),
            ("sftp://nas/%7E/x", ssh(None, "nas", None, "/~/x")),
            ("sftp://[::1]:22/d", ssh(None, "::1", Some(22), "/d")),
            ("sftp://a%40b@h/d%20e", ssh(Some("a@b"), "h", None, "/d e")),
            (
                "backup@nas:berth",
                ssh(Some("backup"), "nas", None, "berth"),
            ),
            ("nas:/srv/berth", ssh(None, "nas", None, "/srv/berth")),
            ("nas:", ssh(None, "nas", None, "")),
            ("nas:~/b", ssh(None, "nas", None, "b")),
            ("u@[fe80::1]:d", ssh(Some("u"), "fe80::1", None, "d")),
        ];
        for (text, want) in cases {
            let got = TargetSpec::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        let specs = [
            TargetSpec::Local("/srv/backups".into()),
            TargetSpec::Local("/a://b c".into()),
            ssh(Some("backup"), "nas", Some(2222), "/srv/berth"),
            ssh(Some("backup"), "nas", None, "berth"),
            ssh(None, "nas", None, ""),
            ssh(None, "nas", Some(22), ""),
            ssh(None, "nas", Some(22), "rel/dir"),
            ssh(None, "nas", None, "~odd"),
            ssh(None, "::1", None, "/d"),
            ssh(None, "::1", Some(2200), "/d e/%f~"),
            ssh(Some("a@b"), "h", Some(1), "/x"),
            ssh(None, "h", None, "/with:colon @at"),
            ssh(None, "h", None, "rel://x"),
            ssh(None, "h", Some(3), "rel://x"),
        ];
        for spec in specs {
            let text = spec.to_string();
            let back = TargetSpec::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, spec, "{text}");
        }
    }

    #[test]
    fn display_round_trips_awkward_paths() {
        // Every pairing of awkward characters at every position.
        let pieces = [
            "", "a", " ", "%", "%2F", "~", "~/", ":", "@", "/", "//", "[", "]", "é", "#", "?", "-",
        ];
        for first in pieces {
            for second in pieces {
                for lead in ["", "/"] {
                    let path = format!("{lead}{first}x{second}");
                    for port in [None, Some(2222)] {
                        for user in [None, Some("u"), Some("a@b"), Some("a%b.é")] {
                            for host in ["h", "::1", "nas.example"] {
                                let spec = ssh(user, host, port, &path);
                                let text = spec.to_string();
                                let back = TargetSpec::parse(&text);
                                assert_eq!(back.ok(), Some(spec), "{text}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn display_forms() {
        let shown: Vec<String> = [
            "/srv/backups",
            "file:///srv/backups",
            "ssh://backup@nas/srv/berth",
            "sftp://backup@nas:2222/srv/berth",
            "backup@nas:berth",
            "sftp://nas:2222/~/berth",
        ]
        .iter()
        .map(|t| TargetSpec::parse(t).unwrap().to_string())
        .collect();
        assert_eq!(
            shown,
            [
                "/srv/backups",
                "/srv/backups",
                "backup@nas:/srv/berth",
                "sftp://backup@nas:2222/srv/berth",
                "backup@nas:berth",
                "sftp://nas:2222/~/berth",
            ]
        );
    }

    #[test]
    fn rejected_forms() {
        let cases = [
            ("", "empty"),
            ("backups", "relative paths are not allowed"),
            ("./backups", "relative paths are not allowed"),
            ("~/backups", "relative paths are not allowed"),
            ("http://x/y", "unsupported scheme"),
            ("file://nas/x", "use sftp://nas/dir"),
            ("sftp:///x", "host name is missing"),
            ("sftp://u:hunter2@h/x", "passwords are not accepted"),
            ("-oProxyCommand=x:y", "starts with '-'"),
            ("@h:x", "empty"),
            ("/a\nb", "control character"),
        ];
        for (text, fragment) in cases {
            let err = TargetSpec::parse(text).expect_err(text).to_string();
            assert!(err.contains(fragment), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn relative_path_error_gives_a_hint() {
        let err = TargetSpec::parse("backups").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid backup target \"backups\": relative paths are not allowed; use an \
             absolute directory (/var/backups/berth), file:///dir, \
             sftp://[user@]host[:port]/dir or [user@]host:dir"
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let spec = ssh(Some("u"), "h", Some(2), "/d");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#""sftp://u@h:2/d""#);
        let back: TargetSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        let err = serde_json::from_str::<TargetSpec>(r#""relative""#).unwrap_err();
        assert!(err.to_string().contains("relative paths"), "{err}");
    }
}
