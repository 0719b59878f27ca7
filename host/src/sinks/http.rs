//! A small HTTP/1.1 client for the webhook, InfluxDB and Prometheus remote-write sinks: `http://` URLs, one
//! POST at a time over a kept-alive connection (hyper's connection-level client, so
//! no connection pool or TLS stack is pulled in).
//!
//! **Owns:** URL parsing for these sinks, connecting with a timeout, and mapping
//! answers to [`SinkError`]s: connection failures, timeouts, 5xx and 429 are
//! retryable; other 4xx are permanent.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::SinkError;

/// How long a connection, or one request and its answer, may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error answer's body kept for the message.
const MAX_ERROR_BODY: usize = 512;

/// An `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`, as connected to.
    pub authority: String,
    /// The host, for the `Host` header.
    pub host: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parse `text`; only `http://` is accepted.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let rest = match text.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "{text:?}: https is not supported by this sink yet; use http:// (on a trusted network or through a local TLS proxy)"
                ));
            }
            _ => return Err(format!("{text:?} is not an http:// URL")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{text:?}: expected http://host[:port]/path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                if h.contains(':') && !h.starts_with('[') {
                    (authority, 80)
                } else {
                    let port: u16 = p
                        .parse()
                        .map_err(|_| format!("{text:?}: the port {p:?} is not a number"))?;
                    (h, port)
                }
            }
            _ => (authority, 80),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(HttpUrl {
            authority: format!("{host}:{port}"),
            host: host.to_owned(),
            path,
        })
    }

    /// This URL with `path_and_query` instead of its path.
    pub fn with_path(&self, path_and_query: &str) -> HttpUrl {
        HttpUrl {
            path: path_and_query.to_owned(),
            ..self.clone()
        }
    }
}

/// A connection to one server, opened on first use and again after an error.
#[derive(Default)]
pub struct Client {
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn connect(url: &HttpUrl) -> Result<SendRequest<Full<Bytes>>, SinkError> {
        let stream = super::connect_tcp(&url.authority, TIMEOUT).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SinkError::Retryable(format!("{}: {e}", url.authority)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// POST `body` to `url` with `content_type`; `Ok` on a 2xx answer.
    pub async fn post(
        &mut self,
        url: &HttpUrl,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), SinkError> {
        self.post_with(url, content_type, &[], body).await
    }

    /// POST `body` to `url` with `content_type` and `headers`; `Ok` on a 2xx answer.
    pub async fn post_with(
        &mut self,
        url: &HttpUrl,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(), SinkError> {
        let (status, text) = self
            .request_with(url, "POST", content_type, headers, body)
            .await?;
        classify(url, status, &text)
    }

    /// Send one request; the status and (a bounded part of) the body.
    pub async fn request(
        &mut self,
        url: &HttpUrl,
        method: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, String), SinkError> {
        self.request_with(url, method, content_type, &[], body)
            .await
    }

    /// [`Client::request`] with more headers.
    pub async fn request_with(
        &mut self,
        url: &HttpUrl,
        method: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, String), SinkError> {
        let result = tokio::time::timeout(
            TIMEOUT,
            self.request_inner(url, method, content_type, headers, body),
        )
        .await
        .unwrap_or_else(|_| {
            Err(SinkError::Retryable(format!(
                "{}: no answer within {}s",
                url.authority,
                TIMEOUT.as_secs()
            )))
        });
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn request_inner(
        &mut self,
        url: &HttpUrl,
        method: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, String), SinkError> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => Client::connect(url).await?,
        };
        conn.ready()
            .await
            .map_err(|e| SinkError::Retryable(format!("{}: {e}", url.authority)))?;
        let mut request = Request::builder()
            .method(method)
            .uri(&url.path)
            .header(hyper::header::HOST, &url.host)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(
                hyper::header::USER_AGENT,
                concat!("komlogd/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SinkError::Permanent(format!("cannot build the request: {e}")))?;
        let answer = conn
            .send_request(request)
            .await
            .map_err(|e| SinkError::Retryable(format!("{}: {e}", url.authority)))?;
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                SinkError::Retryable(format!("{}: reading the answer: {e}", url.authority))
            })?
            .to_bytes();
        let keep = &body[..body.len().min(MAX_ERROR_BODY)];
        self.conn = Some(conn);
        Ok((status, String::from_utf8_lossy(keep).trim().to_owned()))
    }
}

/// 2xx: delivered; 5xx, 429 and 408: retryable; any other: permanent.
pub fn classify(url: &HttpUrl, status: StatusCode, body: &str) -> Result<(), SinkError> {
    if status.is_success() {
        return Ok(());
    }
    let msg = format!("{}{} answered {status}: {body}", url.authority, url.path);
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(SinkError::Retryable(msg))
    } else {
        Err(SinkError::Permanent(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_port_and_path() {
        let u = HttpUrl::parse("http://127.0.0.1:8086").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:8086", "/")
        );
        let u = HttpUrl::parse("http://example.org/hook?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str(), u.path.as_str()),
            ("example.org:80", "example.org", "/hook?x=1")
        );
        let u = HttpUrl::parse("http://[::1]:9000/a").unwrap();
        assert_eq!(u.authority, "[::1]:9000");
        assert!(
            HttpUrl::parse("https://x/")
                .unwrap_err()
                .contains("https is not supported")
        );
        assert!(HttpUrl::parse("ftp://x/").is_err());
        assert!(HttpUrl::parse("http://x:port/").is_err());
        assert!(HttpUrl::parse("http:///a").is_err());
    }
}
