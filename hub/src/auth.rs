//! The `/login` handshake (spec §3.2): two form POSTs, a challenge encrypted to
//! the agent's key, and the `kid` cookie.
//!
//! **Owns:** reading the form fields, the answers and their error numbers, and
//! the issued challenges: each is kept as its SHA-256×30 hash with the agent it
//! was issued to and when, answered at most once, and refused once older than
//! the configured validity (60 s by default). Challenges are forgotten once they
//! can only be refused anyway (twice the validity, plus a minute).
//!
//! **Does not:** keep logins; a successful answer creates one in
//! [`crate::sessions::Registry`], whose token is the cookie's value.
//!
//! Answers (all bodies JSON, as the agent calls `resp.json()` on every one):
//!
//! | case | status | body |
//! |---|---|---|
//! | challenge issued | 200 | `{"challenge": base64}` |
//! | challenge answered | 200 | `null`, with `Set-Cookie: kid=…; Path=/; HttpOnly` |
//! | bad `u` / `k` / `pv` / `c`, `s` field | 400 | `{"error": 105200 / 105201 / 105202 / 105203}` |
//! | key unparsable or under 4096 bits | 500 | `{"error": 3701}` |
//! | unknown user / unregistered key | 403 | `{"error": 3702 / 3703}` |
//! | challenge unknown / used / expired / bad signature | 403 | `{"error": 3806 / 3807 / 3808 / 3810}` |
//!
//! The cookie is not marked `Secure` (the hub serves plain HTTP) and has no
//! `Domain`, so clients keep it for the host name they used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use komlog_protocol::Username;
use komlog_protocol::login::{
    self, COOKIE_NAME, FIELD_CHALLENGE, FIELD_KEY, FIELD_PROTOCOL_VERSION, FIELD_SIGNATURE,
    FIELD_USERNAME, LoginCryptoError, PublicKey,
};
use komlog_protocol::openssh::{KeyError, openssh_public_line};
use komlog_protocol::status::login_error;

use crate::server::Hub;
use crate::store::{AgentRecord, SharedLogins, StoreError};

/// An issued challenge.
#[derive(Debug, Clone)]
struct Issued {
    agent_id: String,
    issued: Instant,
    used: bool,
}

/// The challenges issued and not yet forgotten, by hash: in memory on one hub,
/// in the cluster's store ([`SharedLogins`]) when the hub is one of several, so
/// that any hub takes the answer to a challenge another issued, once.
#[derive(Default)]
pub struct Challenges {
    by_hash: Mutex<HashMap<[u8; 32], Issued>>,
    shared: OnceLock<Arc<dyn SharedLogins>>,
}

/// Why an answer to a challenge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeRefusal {
    /// No such challenge was issued to this agent (or it was forgotten).
    NotFound,
    /// It was already answered.
    Used,
    /// It is older than the validity.
    Expired,
    /// The cluster's store did not answer.
    Unavailable,
}

impl Challenges {
    /// Keep challenges in the cluster's store from now on (set once, at start).
    pub fn share_with(&self, logins: Arc<dyn SharedLogins>) {
        let _ = self.shared.set(logins);
    }

    /// Remember a challenge hash issued to `agent_id`.
    pub fn issue(
        &self,
        hash: [u8; 32],
        agent_id: &str,
        validity: Duration,
    ) -> Result<(), ChallengeRefusal> {
        if let Some(shared) = self.shared.get() {
            return shared.issue_challenge(hash, agent_id).map_err(unavailable);
        }
        let now = Instant::now();
        let forget_after = validity * 2 + Duration::from_secs(60);
        let mut map = self.lock();
        map.retain(|_, c| now.duration_since(c.issued) < forget_after);
        map.insert(
            hash,
            Issued {
                agent_id: agent_id.to_owned(),
                issued: now,
                used: false,
            },
        );
        Ok(())
    }

    /// Check that `hash` was issued to `agent_id`, is unused and fresh.
    pub fn check(
        &self,
        hash: &[u8],
        agent_id: &str,
        validity: Duration,
    ) -> Result<(), ChallengeRefusal> {
        let key: [u8; 32] = hash.try_into().map_err(|_| ChallengeRefusal::NotFound)?;
        if let Some(shared) = self.shared.get() {
            return shared
                .check_challenge(key, agent_id, validity)
                .map_err(unavailable)?;
        }
        let map = self.lock();
        let c = map
            .get(&key)
            .filter(|c| c.agent_id == agent_id)
            .ok_or(ChallengeRefusal::NotFound)?;
        if c.used {
            return Err(ChallengeRefusal::Used);
        }
        if c.issued.elapsed() > validity {
            return Err(ChallengeRefusal::Expired);
        }
        Ok(())
    }

    /// Mark a checked challenge as answered: [`ChallengeRefusal::Used`] when
    /// it was answered in the meantime (at another hub of a cluster).
    pub fn mark_used(&self, hash: &[u8]) -> Result<(), ChallengeRefusal> {
        let key = <[u8; 32]>::try_from(hash).map_err(|_| ChallengeRefusal::NotFound)?;
        if let Some(shared) = self.shared.get() {
            return match shared.use_challenge(key).map_err(unavailable)? {
                true => Ok(()),
                false => Err(ChallengeRefusal::Used),
            };
        }
        match self.lock().get_mut(&key) {
            Some(c) if c.used => Err(ChallengeRefusal::Used),
            Some(c) => {
                c.used = true;
                Ok(())
            }
            None => Err(ChallengeRefusal::NotFound),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Issued>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A refused login: HTTP status and error number, sent as `{"error": N}`.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    status: StatusCode,
    error: u32,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.error })),
        )
            .into_response()
    }
}

fn refuse(status: StatusCode, error: u32) -> Refusal {
    Refusal { status, error }
}

fn unavailable(e: StoreError) -> ChallengeRefusal {
    tracing::error!("login challenges: {e}");
    ChallengeRefusal::Unavailable
}

/// The answer to a refused challenge.
fn challenge_refusal(why: ChallengeRefusal) -> Refusal {
    match why {
        ChallengeRefusal::NotFound => {
            refuse(StatusCode::FORBIDDEN, login_error::CHALLENGE_NOT_FOUND)
        }
        ChallengeRefusal::Used => refuse(StatusCode::FORBIDDEN, login_error::CHALLENGE_USED),
        ChallengeRefusal::Expired => refuse(StatusCode::FORBIDDEN, login_error::CHALLENGE_EXPIRED),
        // 503: the agent tries again later, or another hub.
        ChallengeRefusal::Unavailable => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            login_error::CHALLENGE_NOT_FOUND,
        ),
    }
}

/// `POST /login`.
pub async fn login(
    State(hub): State<Arc<Hub>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if hub.is_draining() {
        // 503: the agent logs in again, at another hub of a cluster.
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            login_error::CHALLENGE_NOT_FOUND,
        )
        .into_response();
    }
    match login_inner(&hub, &form).await {
        Ok(r) => r,
        Err(refusal) => {
            hub.metrics.logins_refused.inc();
            refusal.into_response()
        }
    }
}

async fn login_inner(hub: &Arc<Hub>, form: &HashMap<String, String>) -> Result<Response, Refusal> {
    let field = |name: &str| form.get(name).map(String::as_str);
    // The web layer's checks first: u, k, pv (400).
    let user = field(FIELD_USERNAME)
        .and_then(|u| Username::parse(u).ok())
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, login_error::INVALID_USERNAME))?;
    let k = field(FIELD_KEY)
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, login_error::INVALID_KEY_FIELD))?;
    let pv_ok = field(FIELD_PROTOCOL_VERSION)
        .and_then(|pv| pv.trim().parse::<u64>().ok())
        .is_some_and(|pv| pv != 0);
    if !pv_ok {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            login_error::INVALID_PROTOCOL_VERSION,
        ));
    }
    let answer = match (field(FIELD_CHALLENGE), field(FIELD_SIGNATURE)) {
        (None, None) => None,
        (Some(c), Some(s)) => {
            let bad = |_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    login_error::INVALID_CHALLENGE_FIELD,
                )
            };
            Some((
                login::decode_base64("c", c).map_err(bad)?,
                login::decode_base64("s", s).map_err(bad)?,
            ))
        }
        _ => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                login_error::INVALID_CHALLENGE_FIELD,
            ));
        }
    };
    // Then the account layer: the key (500), the user and the key's registration (403).
    let key = match login::parse_key_field(k) {
        Ok(key) => key,
        Err(LoginCryptoError::Base64 { .. }) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                login_error::INVALID_KEY_FIELD,
            ));
        }
        Err(e) => {
            let bits = match &e {
                LoginCryptoError::Key(KeyError::TooSmall { bits }) => Some(*bits),
                _ => None,
            };
            tracing::info!(user = %user, ?bits, "login refused: {e}");
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                login_error::BAD_KEY,
            ));
        }
    };
    // Keys are compared byte for byte in canonical form: a line with a comment or
    // extra whitespace is not the registered key.
    let canonical = openssh_public_line(&key.key) == key.line;
    let agent = find_agent(hub, &user, &key.line, canonical).await?;
    match answer {
        None => issue_challenge(hub, &agent, &key.key),
        Some((hash, signature)) => {
            let answer = answer_challenge(hub, &agent, &key.key, &hash, &signature);
            if answer.is_ok() {
                // For the web's agent list; failing to record it does not stop the login.
                let agent_id = agent.id.clone();
                let now = komlog_protocol::timeuuid::now_micros();
                if let Err(e) = hub.store_call(move |s| s.note_login(&agent_id, now)).await {
                    tracing::warn!("cannot record the login of agent {}: {e}", agent.id);
                }
            }
            answer
        }
    }
}

async fn find_agent(
    hub: &Arc<Hub>,
    user: &Username,
    line: &str,
    canonical: bool,
) -> Result<AgentRecord, Refusal> {
    let unavailable = |e: String| {
        tracing::error!("login: the store failed: {e}");
        refuse(StatusCode::SERVICE_UNAVAILABLE, login_error::BAD_KEY)
    };
    let (u, l) = (user.clone(), line.to_owned());
    let (exists, agent) = hub
        .store_call(move |s| Ok((s.user_exists(&u)?, s.find_agent(&u, &l)?)))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !exists {
        tracing::info!(user = %user, "login refused: no such user");
        return Err(refuse(StatusCode::FORBIDDEN, login_error::USER_NOT_FOUND));
    }
    match agent {
        Some(agent) if canonical => Ok(agent),
        _ => {
            tracing::info!(user = %user, "login refused: key not registered for this user");
            Err(refuse(
                StatusCode::FORBIDDEN,
                login_error::KEY_NOT_REGISTERED,
            ))
        }
    }
}

fn issue_challenge(
    hub: &Arc<Hub>,
    agent: &AgentRecord,
    key: &PublicKey,
) -> Result<Response, Refusal> {
    let internal = |e: LoginCryptoError| {
        tracing::error!("login: {e}");
        refuse(StatusCode::INTERNAL_SERVER_ERROR, login_error::BAD_KEY)
    };
    let challenge = login::new_challenge().map_err(internal)?;
    let ciphertext = login::encrypt_challenge(key, &challenge).map_err(internal)?;
    hub.challenges
        .issue(
            login::challenge_hash(&challenge),
            &agent.id,
            hub.config.challenge_validity,
        )
        .map_err(challenge_refusal)?;
    tracing::debug!(user = %agent.owner, agent = %agent.id, "challenge issued");
    Ok(axum::Json(serde_json::json!({
        "challenge": login::encode_base64(&ciphertext)
    }))
    .into_response())
}

fn answer_challenge(
    hub: &Arc<Hub>,
    agent: &AgentRecord,
    key: &PublicKey,
    hash: &[u8],
    signature: &[u8],
) -> Result<Response, Refusal> {
    let validity = hub.config.challenge_validity;
    if let Err(why) = hub.challenges.check(hash, &agent.id, validity) {
        tracing::info!(user = %agent.owner, agent = %agent.id, ?why, "login refused");
        return Err(challenge_refusal(why));
    }
    if login::verify_challenge_signature(key, hash, signature).is_err() {
        tracing::info!(user = %agent.owner, agent = %agent.id, "login refused: bad signature");
        return Err(refuse(StatusCode::FORBIDDEN, login_error::BAD_SIGNATURE));
    }
    if let Err(why) = hub.challenges.mark_used(hash) {
        tracing::info!(user = %agent.owner, agent = %agent.id, ?why, "login refused");
        return Err(challenge_refusal(why));
    }
    let login = hub.sessions.create_login(&agent.owner, &agent.id);
    hub.metrics.logins.inc();

    tracing::info!(user = %agent.owner, agent = %agent.id, sid = %login.sid, "logged in");
    let cookie = format!("{COOKIE_NAME}={}; Path=/; HttpOnly", login.token);
    let mut response = axum::Json(serde_json::Value::Null).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
            Ok(response)
        }
        Err(_) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            login_error::BAD_KEY,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_single_use_and_expire() {
        let c = Challenges::default();
        let validity = Duration::from_millis(200);
        c.issue([1; 32], "agent", validity).unwrap();
        assert_eq!(
            c.check(&[2; 32], "agent", validity),
            Err(ChallengeRefusal::NotFound)
        );
        assert_eq!(
            c.check(&[1; 32], "other", validity),
            Err(ChallengeRefusal::NotFound)
        );
        assert_eq!(
            c.check(&[1; 31], "agent", validity),
            Err(ChallengeRefusal::NotFound)
        );
        assert_eq!(c.check(&[1; 32], "agent", validity), Ok(()));
        c.mark_used(&[1; 32]).unwrap();
        assert_eq!(c.mark_used(&[1; 32]), Err(ChallengeRefusal::Used));
        assert_eq!(
            c.check(&[1; 32], "agent", validity),
            Err(ChallengeRefusal::Used)
        );
        c.issue([3; 32], "agent", validity).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            c.check(&[3; 32], "agent", validity),
            Err(ChallengeRefusal::Expired)
        );
    }
}
