//! A minimal HTTP/1.1 client: one POST per connection, with a deadline.
//!
//! The command line uses it to reach a running hub's `/admin`, and tests use it
//! for `/login`. It speaks plain HTTP, or HTTPS with a given TLS configuration
//! ([`post_tls`]). The exchange itself is `komlog_protocol::http`, which the
//! `komlog-session` login uses too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

/// A response: status, headers, whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::BadBody(e.to_string()))
    }

    /// The value of cookie `name` set by this response, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        komlog_protocol::http::set_cookie(&self.headers, name)
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("HTTP request to {addr} failed: {reason}")]
    Exchange {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// No answer within the deadline.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The address.
        addr: SocketAddr,
        /// The deadline.
        timeout: Duration,
    },
    /// The body is not what was expected.
    #[error("unexpected response body: {0}")]
    BadBody(String),
}

/// `application/x-www-form-urlencoded` text of `fields`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Send `method` `path` to `http://localhost` at `addr` with `headers` and
/// `body` (the web API's requests in tests and scripts).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect { addr, source })?;
        komlog_protocol::http::request(stream, method, "localhost", path, headers, body)
            .await
            .map(|r| HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| HttpError::Exchange {
                addr,
                reason: e.to_string(),
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout { addr, timeout })?
}

/// POST `body` to `http://{host}{path}` at `addr`, with extra `headers`.
pub async fn post(
    addr: SocketAddr,
    host: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    post_tls(addr, None, host, path, content_type, headers, body, timeout).await
}

/// POST `body` to `{http|https}://{host}{path}` at `addr`: HTTPS with `tls`.
#[allow(clippy::too_many_arguments)]
pub async fn post_tls(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    host: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let request = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect { addr, source })?;
        let Some(tls) = tls else {
            return exchange(stream, addr, host, path, content_type, headers, body).await;
        };
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| HttpError::Exchange {
                addr,
                reason: format!("TLS handshake failed: {e}"),
            })?;
        exchange(stream, addr, host, path, content_type, headers, body).await
    };
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| HttpError::Timeout { addr, timeout })?
}

async fn exchange<S>(
    stream: S,
    addr: SocketAddr,
    host: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<HttpResponse, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let resp = komlog_protocol::http::post(stream, host, path, content_type, headers, body)
        .await
        .map_err(|e| HttpError::Exchange {
            addr,
            reason: e.to_string(),
        })?;
    Ok(HttpResponse {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
    })
}
