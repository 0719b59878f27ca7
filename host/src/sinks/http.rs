//! A small HTTP/1.1 client for the webhook, InfluxDB and Prometheus remote-write
//! sinks: `http://` and `https://` URLs, one POST at a time over a kept-alive
//! connection (hyper's connection-level client; no connection pool).
//!
//! **Owns:** URL parsing for these sinks, connecting with a timeout, TLS for
//! `https://` (rustls; the server's certificate checked against the Mozilla roots
//! plus the sink's `ca` file, for the URL's host, as komlogd's server link does),
//! and mapping answers to [`SinkError`]s: connection failures, TLS failures,
//! timeouts, 5xx and 429 are retryable; other 4xx are permanent.

use std::path::PathBuf;
use std::sync::Arc;
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

/// An `http://` or `https://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`, as connected to.
    pub authority: String,
    /// The host, for the `Host` header and the TLS server name.
    pub host: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

impl HttpUrl {
    /// Parse `text`, an `http://` or `https://` URL (port 80 or 443 by default).
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let (rest, tls) = match text.split_once("://") {
            Some(("http", rest)) => (rest, false),
            Some(("https", rest)) => (rest, true),
            _ => return Err(format!("{text:?} is not an http:// or https:// URL")),
        };
        let default_port = if tls { 443 } else { 80 };
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
                    (authority, default_port)
                } else {
                    let port: u16 = p
                        .parse()
                        .map_err(|_| format!("{text:?}: the port {p:?} is not a number"))?;
                    (h, port)
                }
            }
            _ => (authority, default_port),
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
            tls,
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
    /// Extra CA certificates (PEM) for `https://`.
    ca: Option<PathBuf>,
    /// The TLS configuration, made on the first `https://` connection.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client that also trusts the CA certificates of `ca` (PEM) for `https://`.
    pub fn with_ca(ca: Option<PathBuf>) -> Client {
        Client {
            ca,
            ..Client::default()
        }
    }

    /// The TLS configuration for `https://`, made once (it reads the `ca` file).
    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, SinkError> {
        if let Some(c) = &self.tls {
            return Ok(Arc::clone(c));
        }
        let c = komlog_session::tls::client_config(self.ca.as_deref())
            .map_err(|e| SinkError::Retryable(e.to_string()))?;
        self.tls = Some(Arc::clone(&c));
        Ok(c)
    }

    async fn connect(&mut self, url: &HttpUrl) -> Result<SendRequest<Full<Bytes>>, SinkError> {
        let tls = if url.tls {
            Some(self.tls_config()?)
        } else {
            None
        };
        let stream = super::connect_tcp(&url.authority, TIMEOUT).await?;
        match tls {
            None => handshake(TokioIo::new(stream), url).await,
            Some(config) => {
                let stream = komlog_session::tls::handshake(
                    stream,
                    &url.host,
                    &config,
                    "in the sink's `ca`",
                )
                .await
                .map_err(|e| SinkError::Retryable(format!("{}: {e}", url.authority)))?;
                handshake(TokioIo::new(stream), url).await
            }
        }
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
        let what = format!("{}: no answer", url.authority);
        let work = self.request_inner(url, method, content_type, headers, body);
        let result = super::within(TIMEOUT, &what, work).await;
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
            _ => self.connect(url).await?,
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

/// HTTP/1.1 over `io` to `url`'s server; the connection is driven by a task of its own.
async fn handshake<T>(io: TokioIo<T>, url: &HttpUrl) -> Result<SendRequest<Full<Bytes>>, SinkError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SinkError::Retryable(format!("{}: {e}", url.authority)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
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
        assert!(!u.tls);
        let u = HttpUrl::parse("https://hooks.example.org/x").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str(), u.tls),
            ("hooks.example.org:443", "hooks.example.org", true)
        );
        assert!(HttpUrl::parse("ftp://x/").is_err());
        assert!(
            HttpUrl::parse("ftp://x/")
                .unwrap_err()
                .contains("is not an http:// or https:// URL")
        );
        assert!(HttpUrl::parse("http://x:port/").is_err());
        assert!(HttpUrl::parse("http:///a").is_err());
    }

    #[test]
    fn an_unreadable_ca_file_is_the_error_before_any_connection() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut client = Client::with_ca(Some("/nonexistent/komlogd-ca.pem".into()));
        // Port 1 on loopback: nothing is connected to, the CA file is read first.
        let url = HttpUrl::parse("https://127.0.0.1:1/hook").unwrap();
        let err = rt
            .block_on(client.post(&url, "application/json", b"{}".to_vec()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the CA file /nonexistent/komlogd-ca.pem"),
            "{err}"
        );
    }
}
