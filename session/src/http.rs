//! The HTTP side of the login (spec §3.2): two form POSTs to `/login`, the
//! answer to the challenge, and the `kid` cookie.
//!
//! `komlog_protocol::http` (one request per connection, over plain TCP or TLS)
//! is enough for two POSTs; every request has a deadline.

use std::sync::Arc;
use std::time::Duration;

use komlog_protocol::login::{self, COOKIE_NAME, LOGIN_PATH, PrivateKey};
use komlog_protocol::openssh::openssh_public_line;

use crate::Endpoint;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The server could not be reached or the exchange broke.
    #[error("login at {endpoint}: {reason}")]
    Http {
        /// `host:port`.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The server refused: HTTP status and its `{"error": N}` number.
    #[error("login at {endpoint} refused with HTTP {status} (error {error:?}){hint}")]
    Refused {
        /// `host:port`.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The error number, when the body had one.
        error: Option<u64>,
        /// A hint for the usual causes.
        hint: &'static str,
    },
    /// The answer was not what the protocol says.
    #[error("login at {endpoint}: unexpected answer: {what}")]
    Unexpected {
        /// `host:port`.
        endpoint: String,
        /// What came.
        what: String,
    },
    /// The challenge could not be answered with this key.
    #[error("login: {0}")]
    Crypto(#[from] login::LoginCryptoError),
}

/// Log in as `username` with `key`; returns the `kid` cookie value. `tls` is
/// the TLS configuration for an `https` endpoint ([`crate::tls::client_config`]).
pub async fn login(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    username: &str,
    key: &PrivateKey,
    timeout: Duration,
) -> Result<String, LoginError> {
    let k = login::key_field(&openssh_public_line(key.as_public_key()));
    let mut fields = vec![("u", username.to_owned()), ("k", k), ("pv", "1".to_owned())];
    let (status, _, body) = post_form(endpoint, tls, &fields, timeout).await?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if status != 200 {
        return Err(refused(endpoint, status, &json));
    }
    let challenge = json
        .get("challenge")
        .and_then(|c| c.as_str())
        .ok_or_else(|| LoginError::Unexpected {
            endpoint: display(endpoint),
            what: format!("no challenge in {json}"),
        })?;
    let (c, s) = login::answer_challenge(key, challenge)?;
    fields.push(("c", c));
    fields.push(("s", s));
    let (status, cookie, body) = post_form(endpoint, tls, &fields, timeout).await?;
    if status != 200 {
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        return Err(refused(endpoint, status, &json));
    }
    cookie.ok_or_else(|| LoginError::Unexpected {
        endpoint: display(endpoint),
        what: format!("no {COOKIE_NAME} cookie in the answer"),
    })
}

fn display(e: &Endpoint) -> String {
    format!("{}:{}", e.host, e.port)
}

fn refused(endpoint: &Endpoint, status: u16, json: &serde_json::Value) -> LoginError {
    let error = json.get("error").and_then(|e| e.as_u64());
    let hint = match (status, error) {
        (403, Some(3702)) => ": is the username right?",
        (403, Some(3703)) => ": is this agent's public key registered for the user?",
        (500, Some(3701)) => ": the key must be RSA of at least 4096 bits",
        _ => "",
    };
    LoginError::Refused {
        endpoint: display(endpoint),
        status,
        error,
        hint,
    }
}

/// POST a form to `/login`; returns the status, the `kid` cookie if set, and the body.
async fn post_form(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    fields: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, Option<String>, Vec<u8>), LoginError> {
    let err = |reason: String| LoginError::Http {
        endpoint: display(endpoint),
        reason,
    };
    // The serializer is not Send: finish it before any await, so the login
    // future can run on a multi-threaded runtime's tasks.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let exchange = async {
        let stream = crate::tls::connect(endpoint, tls).await.map_err(err)?;
        let resp = komlog_protocol::http::post(
            stream,
            &format!("{}:{}", endpoint.host, endpoint.port),
            LOGIN_PATH,
            "application/x-www-form-urlencoded",
            &[],
            body.into_bytes(),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
        Ok((resp.status, resp.set_cookie(COOKIE_NAME), resp.body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
}
