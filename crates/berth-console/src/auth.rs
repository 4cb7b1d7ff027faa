//! The console password, sessions, CSRF tokens and the lockout.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_layout::Paths;
use rand::TryRng;
use sha2::{Digest, Sha256};

/// The name of the console password in the instance's secret store.
pub const PASSWORD_SECRET: &str = berth_render::CONSOLE_PASSWORD_SECRET;
/// Failed sign-ins within [`LOCKOUT_WINDOW`] that lock sign-in.
pub const LOCKOUT_FAILURES: usize = 5;
/// How far back failures count, and how long a lockout lasts.
const LOCKOUT_WINDOW: Duration = Duration::from_mins(15);
/// A session's longest life, and its longest idle time.
const SESSION_MAX: Duration = Duration::from_hours(12);
const SESSION_IDLE: Duration = Duration::from_hours(1);

/// The console password: made once (24 letters and digits), kept like any secret.
pub(crate) fn ensure_password(paths: &Paths) -> Result<String, berth_host::HostError> {
    let store = berth_host::secrets::SecretStore::open(&paths.secrets)?;
    let mut values = store.ensure(&berth_render::berth_secret_specs())?;
    Ok(values.remove(PASSWORD_SECRET).unwrap_or_default())
}

/// 256 random bits, hex.
pub(crate) fn token() -> String {
    let mut rng = rand::rngs::SysRng;
    let mut bytes = [0u8; 32];
    // The system's generator does not fail on Linux once booted; if it did, a
    // predictable token must not be handed out.
    rng.try_fill_bytes(&mut bytes)
        .expect("the system's random number generator failed");
    hex::encode(bytes)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    /// The name given at sign-in (may be empty).
    name: String,
    /// The first hex digits of the token's SHA-256: tells sessions apart in the history
    /// without being of any use to a reader of it.
    short: String,
    /// Where it signed in from.
    client: String,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    /// Who the history says made a change from this session.
    pub(crate) fn actor(&self) -> String {
        let name = if self.name.is_empty() {
            "signed-in user"
        } else {
            &self.name
        };
        format!(
            "console: {name} (session {}, from {})",
            self.short, self.client
        )
    }
}

/// A name given at sign-in, as the history keeps it: printable, short.
fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// What a sign-in attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignIn {
    /// The session token to set.
    Ok(String),
    /// Wrong password.
    Wrong,
    /// Locked: refused without looking at the password, for this long.
    Locked(Duration),
}

/// Sessions by the SHA-256 of their token, and recent failures.
#[derive(Debug)]
pub(crate) struct Auth {
    password: [u8; 32],
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl Auth {
    pub(crate) fn new(password: &str) -> Self {
        Self {
            password: digest(password),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(VecDeque::new()),
        }
    }

    /// Check `password`, unless sign-in is locked; the session remembers `name` and
    /// `client` for the history.
    pub(crate) fn sign_in(&self, password: &str, name: &str, client: &str) -> SignIn {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > LOCKOUT_WINDOW)
        {
            failures.pop_front();
        }
        if failures.len() >= LOCKOUT_FAILURES {
            let since = failures[failures.len() - LOCKOUT_FAILURES];
            return SignIn::Locked(LOCKOUT_WINDOW.saturating_sub(now.duration_since(since)));
        }
        if !same(&digest(password), &self.password) {
            failures.push_back(now);
            return SignIn::Wrong;
        }
        failures.clear();
        drop(failures);
        let token = token();
        let key = digest(&token);
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                key,
                Session {
                    csrf: self::token(),
                    name: clean_name(name),
                    short: hex::encode(&key[..4]),
                    client: client.to_owned(),
                    created: now,
                    last_seen: now,
                },
            );
        SignIn::Ok(token)
    }

    /// The live session of `token`, touched.
    pub(crate) fn session(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, s| {
            now.duration_since(s.created) < SESSION_MAX
                && now.duration_since(s.last_seen) < SESSION_IDLE
        });
        let s = sessions.get_mut(&digest(token))?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// End the session of `token`.
    pub(crate) fn sign_out(&self, token: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&digest(token));
    }
}

/// Whether the form's CSRF token is the session's.
pub(crate) fn csrf_ok(session: &Session, given: &str) -> bool {
    same(&digest(&session.csrf), &digest(given))
}

#[cfg(test)]
mod tests {
    use super::{Auth, LOCKOUT_FAILURES, SignIn, csrf_ok};

    #[test]
    fn five_failures_lock_even_the_right_password() {
        let auth = Auth::new("right");
        for _ in 0..LOCKOUT_FAILURES {
            assert_eq!(auth.sign_in("wrong", "", "127.0.0.1"), SignIn::Wrong);
        }
        assert!(matches!(
            auth.sign_in("right", "alice\u{1b}[2J", "127.0.0.1"),
            SignIn::Locked(_)
        ));
    }

    #[test]
    fn a_session_lives_until_sign_out_and_checks_its_csrf() {
        let auth = Auth::new("right");
        let SignIn::Ok(token) = auth.sign_in("right", "alice\u{1b}[2J", "127.0.0.1") else {
            panic!()
        };
        let s = auth.session(&token).unwrap();
        assert!(csrf_ok(&s, &s.csrf.clone()));
        assert!(!csrf_ok(&s, "other"));
        // The name is kept without its escape character, the token not at all.
        let actor = s.actor();
        assert!(actor.starts_with("console: alice[2J (session "), "{actor}");
        assert!(actor.ends_with(", from 127.0.0.1)"), "{actor}");
        assert!(!actor.contains(&token));
        assert!(auth.session("not-a-token").is_none());
        auth.sign_out(&token);
        assert!(auth.session(&token).is_none());
    }
}
