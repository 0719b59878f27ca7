//! The web side of the hub: the JSON API under `/api/v1/` that a browser page
//! and scripts use to browse, plot, read, export and share time series and to
//! manage agent keys.
//!
//! **Owns:** the routes under `/api/v1/` ([`routes`]), the state they share
//! ([`WebState`]: browser sessions, the failed-login limiter, the live feed).
//! The agents' protocol (`POST /login`, the websocket at `/`, `POST /admin`)
//! is not touched: the web lives under its own paths on the same listener.
//!
//! * [`auth`]: passwords, sessions, tokens, CSRF, failed-login limits.
//! * [`api`]: the endpoints, each answering JSON (errors as
//!   `{"error": "…"}` with a 4xx or 5xx status).
//! * [`live`]: new samples as server-sent events.
//!
//! **Authorization** is the protocol's: a user reads their own uris and those
//! under a prefix another user shared with them, nothing else; a uri that
//! exists but may not be read answers exactly as one that does not exist
//! (404). The API description is `GET /api/v1/openapi.json`
//! (`hub/web/openapi.json`).

pub mod api;
pub mod assets;
pub mod auth;
pub mod live;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::server::Hub;

/// What the web side keeps between requests.
#[derive(Default)]
pub struct WebState {
    /// Browser sessions.
    pub sessions: auth::WebSessions,
    /// Failed-login counters.
    pub limiter: auth::LoginLimiter,
    /// New samples, for live pages.
    pub live: live::Live,
}

/// The API routes (merged into the hub's router), all under `/api/v1/`.
pub fn routes() -> Router<Arc<Hub>> {
    let api = Router::new()
        .route("/openapi.json", get(api::openapi))
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/uris", get(api::uris))
        .route("/series", get(api::series))
        .route("/samples", get(api::samples))
        .route("/text", get(api::text))
        .route("/live", get(live::stream))
        .route(
            "/shares",
            get(api::shares)
                .post(api::add_share)
                .delete(api::remove_share),
        )
        .route("/agents", get(api::agents).post(api::add_agent))
        .route("/agents/{id}", delete(api::remove_agent))
        .fallback(api::not_found);
    Router::new().nest("/api/v1", api).merge(assets::routes())
}
