//! New samples for open pages: `GET /api/v1/live?uri=A&uri=B` answers a
//! stream of server-sent events.
//!
//! **Owns:** the feed every committed write is published to ([`Live`], fed
//! where the hub notifies hooked agents, after the write is durable) and the
//! per-request stream. Events:
//! - `sample`: `{"owner", "uri", "t", "id", "value"}`, one per written sample
//!   of a followed uri (datapoint values are JSON numbers, digit for digit);
//! - `lagged`: the stream fell more than [`FEED_CAPACITY`] writes behind and
//!   skipped some; the page should read the range again;
//! - `revoked`: a followed uri may no longer be read (a share withdrawn); the
//!   stream ends.
//!
//! A comment line is sent every 15 s to keep proxies from closing the stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use komlog_protocol::{Kind, MetricId, TimeUuid};
use tokio::sync::broadcast;

use super::api::{self, ApiError, MAX_LIVE_URIS, Viewer};
use crate::server::Hub;
use crate::sessions::Written;

/// Writes kept for slow streams before they lag.
pub const FEED_CAPACITY: usize = 4096;

/// One committed write: its time and samples.
#[derive(Debug)]
pub struct LiveWrite {
    /// The samples' time.
    pub t: TimeUuid,
    /// The samples.
    pub samples: Vec<Written>,
}

/// The feed of committed writes.
pub struct Live {
    tx: broadcast::Sender<Arc<LiveWrite>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            tx: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Live {
    /// Publish a committed write (nothing is kept when no page listens).
    pub fn publish(&self, t: TimeUuid, samples: &[Written]) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(LiveWrite {
                t,
                samples: samples.to_vec(),
            }));
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveWrite>> {
        self.tx.subscribe()
    }
}

struct Following {
    hub: Arc<Hub>,
    viewer: Viewer,
    ids: Vec<(MetricId, Kind)>,
    rx: broadcast::Receiver<Arc<LiveWrite>>,
    done: bool,
}

fn sample_event(id: &MetricId, kind: Kind, t: TimeUuid, content: &str) -> Event {
    Event::default().event("sample").data(format!(
        "{{\"owner\":{},\"uri\":{},\"t\":{},\"id\":\"{}\",\"value\":{}}}",
        serde_json::Value::String(id.owner.to_string()),
        serde_json::Value::String(id.local.clone()),
        t.micros(),
        t.hex(),
        api::value_json(kind, content)
    ))
}

impl Following {
    /// The events for the next write that concerns a followed uri.
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        loop {
            let write = match self.rx.recv().await {
                Ok(w) => w,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some(vec![
                        Event::default()
                            .event("lagged")
                            .data(format!("{{\"skipped_writes\":{n}}}")),
                    ]);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let matching: Vec<&Written> = write
                .samples
                .iter()
                .filter(|w| self.ids.iter().any(|(id, _)| id == &w.id))
                .collect();
            if matching.is_empty() {
                continue;
            }
            // Still readable? A withdrawn share ends the stream.
            let (reader, ids) = (self.viewer.user.clone(), self.ids.clone());
            let still = self
                .hub
                .store_call(move |s| {
                    ids.iter()
                        .map(|(id, _)| api::may_read(s, &reader, id).map(|k| k.is_some()))
                        .collect::<Result<Vec<bool>, _>>()
                })
                .await
                .unwrap_or_default();
            if still.len() != self.ids.len() || still.iter().any(|ok| !ok) {
                self.done = true;
                return Some(vec![
                    Event::default()
                        .event("revoked")
                        .data("{\"reason\":\"a followed uri may no longer be read\"}"),
                ]);
            }
            return Some(
                matching
                    .into_iter()
                    .map(|w| sample_event(&w.id, w.kind, write.t, &w.content))
                    .collect(),
            );
        }
    }
}

/// `GET /live?uri=A&uri=B…`: follow up to [`MAX_LIVE_URIS`] readable uris.
pub async fn stream(
    State(hub): State<Arc<Hub>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut texts = Vec::new();
    for (k, v) in api::query_pairs(q.as_deref()) {
        if k != "uri" {
            return Err(ApiError::bad(format!(
                "unknown parameter {k:?} (known: uri, repeated)"
            )));
        }
        texts.push(v);
    }
    if texts.is_empty() || texts.len() > MAX_LIVE_URIS {
        return Err(ApiError::bad(format!(
            "give 1 to {MAX_LIVE_URIS} uri parameters, not {}",
            texts.len()
        )));
    }
    // Subscribe first: nothing written after the checks below is missed.
    let rx = hub.web.live.subscribe();
    let mut ids = Vec::new();
    for text in &texts {
        ids.push(api::readable_id(&hub, &viewer, text).await?);
    }
    let following = Following {
        hub,
        viewer,
        ids,
        rx,
        done: false,
    };
    let events = futures_util::stream::unfold(following, |mut f| async move {
        let batch = f.next_events().await?;
        Some((futures_util::stream::iter(batch.into_iter().map(Ok)), f))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(events.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
