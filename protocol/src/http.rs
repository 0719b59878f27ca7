//! A minimal HTTP/1.1 client for the login, the hub's `/admin` and its web API:
//! one request on
//! a stream the caller has already connected (plain TCP or TLS), the whole
//! answer read back. Behind the `http-client` feature.
//!
//! The caller sets the deadline and maps [`ExchangeError`] to its own error.

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
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
    /// The value of cookie `name` set by this response, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        set_cookie(&self.headers, name)
    }
}

/// The value of cookie `name` set by the `Set-Cookie` headers in `headers`.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Why the exchange on a connected stream failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExchangeError(String);

/// POST `body` to `path` on `stream`, with `Host: host`, the content type and
/// the extra `headers`; returns the whole response.
pub async fn post<S>(
    stream: S,
    host: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<HttpResponse, ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut all = vec![(header::CONTENT_TYPE.as_str(), content_type.to_owned())];
    all.extend(headers.iter().cloned());
    request(stream, "POST", host, path, &all, body).await
}

/// Send `method` `path` with `Host: host`, the `headers` and `body` on
/// `stream`; returns the whole response.
pub async fn request<S>(
    stream: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<HttpResponse, ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fail = |e: &dyn std::fmt::Display| ExchangeError(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    let driver = tokio::spawn(conn);
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| fail(&e))?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| fail(&e))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| fail(&e))?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| fail(&e))?;
        req.headers_mut().append(name, value);
    }
    let resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(&e))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
