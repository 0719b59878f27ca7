//! What operators and load balancers ask a running hub: `GET /metrics` and
//! `GET /health`.
//!
//! **Owns:** the two endpoints. `/metrics` is the Prometheus text of
//! [`crate::metrics::HubMetrics`] with the session gauges. `/health` answers
//! 200 `{"status": "ok"}` while the hub takes work, and 503 with the reasons
//! when it does not: it is stopping, its store does not answer within two
//! seconds, or (in a cluster) it has lost the bus. Neither needs a login: they
//! show counts and states, never data.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use komlog_protocol::Username;
use serde_json::json;

use crate::server::Hub;

/// How long `/health` waits for the store.
const STORE_CHECK: Duration = Duration::from_secs(2);

/// `GET /metrics`.
pub async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let (connected, sessions) = hub.sessions.counts();
    let text = hub.metrics.render(connected, sessions, hub.is_draining());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /health`.
pub async fn health(State(hub): State<Arc<Hub>>) -> Response {
    let mut problems = Vec::new();
    if hub.is_draining() {
        problems.push("the hub is stopping".to_owned());
    }
    let probe = Username::parse("health-check").ok();
    let store = tokio::time::timeout(
        STORE_CHECK,
        hub.store_call(move |s| match &probe {
            Some(name) => s.user_exists(name).map(|_| ()),
            None => Ok(()),
        }),
    )
    .await;
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the store fails: {e}")),
        Err(_) => problems.push(format!(
            "the store did not answer in {} s",
            STORE_CHECK.as_secs()
        )),
    }
    if let Some(bus) = &hub.bus
        && !bus.healthy()
    {
        problems.push(format!(
            "the cluster bus ({}) is not connected",
            bus.stream()
        ));
    }
    if problems.is_empty() {
        axum::Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "problems": problems})),
        )
            .into_response()
    }
}
