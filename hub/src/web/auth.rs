//! Who is asking: web passwords, browser sessions, API tokens, CSRF and the
//! limit on failed logins.
//!
//! **Owns:**
//! - passwords: argon2id PHC strings ([`hash_password`], [`verify_password`]),
//!   set with `komlog-hub user passwd NAME`; a user without one cannot log in
//!   to the web;
//! - browser sessions: `POST /api/v1/login` with the right password sets the
//!   cookie [`COOKIE_NAME`] (`HttpOnly; SameSite=Strict; Path=/`, and `Secure`
//!   when the hub serves TLS); the session ends at log-out, after
//!   [`SESSION_IDLE`] without a request, when the user's password changes or is
//!   cleared, and when the user is removed. Sessions live in memory: a hub
//!   restart logs everyone out;
//! - CSRF: a request that changes something and comes with the cookie must
//!   carry the session's token in the `X-CSRF-Token` header (the page reads it
//!   from `POST /login` or `GET /me`); a token in a header cannot be forged by
//!   another site, and the cookie is not sent cross-site at all (SameSite);
//! - API tokens for scripts: `Authorization: Bearer kt_…`, made with
//!   `komlog-hub token add USER NAME`; the store keeps only their SHA-256;
//! - failed logins: at most [`MAX_FAILS_PER_USER`] per user and
//!   [`MAX_FAILS_PER_ADDRESS`] per address within [`FAIL_WINDOW`]; past that,
//!   429 with `Retry-After` until the window ends, right password or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use komlog_protocol::Username;
use sha2::{Digest, Sha256};

/// The browser session cookie.
pub const COOKIE_NAME: &str = "komlog_web";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A browser session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins counted per user and per address over this window.
pub const FAIL_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins of one user allowed within [`FAIL_WINDOW`].
pub const MAX_FAILS_PER_USER: u32 = 5;
/// Failed logins from one address allowed within [`FAIL_WINDOW`].
pub const MAX_FAILS_PER_ADDRESS: u32 = 20;
/// The prefix of API tokens.
pub const TOKEN_PREFIX: &str = "kt_";

/// Hash a password for storage: an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Does `password` match the stored PHC string?
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string of a password nobody knows, verified against when the user
/// does not exist or has no password, so that the answer takes as long.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// `n` random bytes as hex (empty if the system has no randomness, which
/// makes every comparison against it fail).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new API token: `kt_` and 64 hex digits.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

/// The SHA-256 of a token, which is what the store keeps.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two byte strings of equal length.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One browser session.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// Who.
    pub user: Username,
    /// The token a changing request must echo in `X-CSRF-Token`.
    pub csrf: String,
    /// The password hash at login: a changed password ends the session.
    pub phc: String,
    last_seen: Instant,
}

/// The live browser sessions, by cookie value.
#[derive(Default)]
pub struct WebSessions {
    by_id: Mutex<HashMap<String, WebSession>>,
}

impl WebSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WebSession>> {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start a session; returns the cookie value and the CSRF token.
    pub fn create(&self, user: &Username, phc: &str) -> (String, String) {
        let (id, csrf) = (random_hex(32), random_hex(32));
        let mut all = self.lock();
        let now = Instant::now();
        all.retain(|_, s| now.duration_since(s.last_seen) < SESSION_IDLE);
        all.insert(
            id.clone(),
            WebSession {
                user: user.clone(),
                csrf: csrf.clone(),
                phc: phc.to_owned(),
                last_seen: now,
            },
        );
        (id, csrf)
    }

    /// The session of a cookie value, refreshed; none when unknown or idle
    /// for too long.
    pub fn touch(&self, id: &str) -> Option<WebSession> {
        let mut all = self.lock();
        let now = Instant::now();
        let session = all.get_mut(id)?;
        if now.duration_since(session.last_seen) >= SESSION_IDLE {
            all.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// End one session.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// End every session of `user`; returns how many.
    pub fn end_user(&self, user: &Username) -> usize {
        let mut all = self.lock();
        let before = all.len();
        all.retain(|_, s| &s.user != user);
        before - all.len()
    }
}

/// Failed-login counters.
#[derive(Default)]
pub struct LoginLimiter {
    fails: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.fails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keys(user: &str, addr: IpAddr) -> [(String, u32); 2] {
        [
            (format!("u:{user}"), MAX_FAILS_PER_USER),
            (format!("a:{addr}"), MAX_FAILS_PER_ADDRESS),
        ]
    }

    /// How long until `user` may try again from `addr`; none when allowed now.
    pub fn blocked_for(&self, user: &str, addr: IpAddr) -> Option<Duration> {
        let mut fails = self.lock();
        let now = Instant::now();
        fails.retain(|_, (_, since)| now.duration_since(*since) < FAIL_WINDOW);
        Self::keys(user, addr)
            .iter()
            .filter_map(|(key, max)| {
                let (count, since) = fails.get(key)?;
                (count >= max).then(|| FAIL_WINDOW.saturating_sub(now.duration_since(*since)))
            })
            .max()
    }

    /// Count a failed login.
    pub fn failed(&self, user: &str, addr: IpAddr) {
        let mut fails = self.lock();
        let now = Instant::now();
        for (key, _) in Self::keys(user, addr) {
            let entry = fails.entry(key).or_insert((0, now));
            entry.0 += 1;
        }
    }

    /// A successful login clears the user's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.lock().remove(&format!("u:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("username")
    }

    #[test]
    fn a_password_verifies_against_its_hash_and_no_other() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horse ", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert_ne!(phc, hash_password("correct horse").expect("hash"), "salted");
    }

    #[test]
    fn failed_logins_block_the_user_and_then_the_address() {
        let limiter = LoginLimiter::default();
        let addr: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..MAX_FAILS_PER_USER {
            assert_eq!(limiter.blocked_for("alice", addr), None);
            limiter.failed("alice", addr);
        }
        let wait = limiter.blocked_for("alice", addr).expect("blocked");
        assert!(wait <= FAIL_WINDOW && wait > FAIL_WINDOW / 2, "{wait:?}");
        // Another user from the same address is not blocked yet...
        assert_eq!(limiter.blocked_for("bob", addr), None);
        // ...until the address has failed often enough.
        for i in MAX_FAILS_PER_USER..MAX_FAILS_PER_ADDRESS {
            limiter.failed(&format!("user{i}"), addr);
        }
        assert!(limiter.blocked_for("bob", addr).is_some());
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        assert!(limiter.blocked_for("bob", other).is_none());
        assert!(
            limiter.blocked_for("alice", other).is_some(),
            "per user too"
        );
    }

    #[test]
    fn sessions_end_at_logout_and_with_their_user() {
        let sessions = WebSessions::default();
        let (a1, csrf) = sessions.create(&user("alice"), "phc");
        let (a2, _) = sessions.create(&user("alice"), "phc");
        let (b, _) = sessions.create(&user("bob"), "phc");
        assert_eq!(sessions.touch(&a1).expect("a1").csrf, csrf);
        sessions.end(&a1);
        assert!(sessions.touch(&a1).is_none());
        assert_eq!(sessions.end_user(&user("alice")), 1);
        assert!(sessions.touch(&a2).is_none());
        assert!(sessions.touch(&b).is_some());
    }

    #[test]
    fn tokens_are_random_and_kept_as_digests() {
        let t = new_api_token();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 67, "{t}");
        assert_ne!(t, new_api_token());
        assert_eq!(token_digest(&t), token_digest(&t));
        assert_ne!(token_digest(&t), token_digest(&new_api_token()));
    }
}
