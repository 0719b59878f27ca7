//! A minimal HTTP/1.1 client: one POST per connection, with a deadline.
//!
//! The command line uses it to reach a running hub's `/admin`, and tests use it
//! for `/login`. It speaks plain HTTP, or HTTPS with a given TLS configuration
//! ([`post_tls`]). (Agents log in with the `komlog-session` crate, which has its
//! own login client so that it does not depend on the hub.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;

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
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
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
    let exchange = |reason: String| HttpError::Exchange { addr, reason };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| exchange(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| exchange(e.to_string()))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| exchange(e.to_string()))?;
        let name =
            header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| exchange(e.to_string()))?;
        req.headers_mut().insert(name, value);
    }
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| exchange(e.to_string()))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| exchange(e.to_string()))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
