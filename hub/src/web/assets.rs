//! The browser page at `/web/`.
//!
//! **Owns:** the page's files as the binary serves them: `hub/web/dist/`
//! (`index.html`, `app.js`, `app.css`, built from `hub/web/src/` by
//! `hub/web/build.sh` and committed) embedded with `include_bytes!`, and the
//! headers they go out with: the content type, `Cache-Control: no-cache` (a
//! new hub serves a new page at once), a `Content-Security-Policy` that lets
//! the page load and call nothing but this hub (no inline script, no other
//! origin, no framing) and `X-Content-Type-Options: nosniff`. Each file has
//! an `ETag` (a hash of its bytes): a browser that revalidates a file it holds
//! gets `304 Not Modified` and no body. `GET /web` redirects to `/web/`, so
//! the page's relative paths resolve under it.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::server::Hub;

/// What the page may load and call: this hub only.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

const INDEX_HTML: &[u8] = include_bytes!("../../web/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../../web/dist/app.js");
const APP_CSS: &[u8] = include_bytes!("../../web/dist/app.css");

/// One embedded file: its bytes, content type and (once computed) ETag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    /// `"<first 16 bytes of the SHA-256 of the file, hex>"`.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
    }
}

static INDEX: Asset = Asset::new(INDEX_HTML, "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(APP_JS, "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(APP_CSS, "text/css; charset=utf-8");

/// The page's routes (merged into the hub's router).
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/web", get(|| async { Redirect::permanent("/web/") }))
        .route(
            "/web/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route(
            "/web/app.js",
            get(|headers: HeaderMap| async move { serve(&SCRIPT, &headers) }),
        )
        .route(
            "/web/app.css",
            get(|headers: HeaderMap| async move { serve(&STYLE, &headers) }),
        )
}

/// The file, or `304 Not Modified` when the request's `If-None-Match` names
/// its ETag.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let headers: [(HeaderName, HeaderValue); 5] = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::ETAG, etag.clone()),
    ];
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes());
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.body).into_response()
}
