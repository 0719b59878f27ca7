//! Several hubs as one service: what a hub tells the others, and what it
//! learns from them.
//!
//! **Owns:** the cluster bus on NATS JetStream and the sharing of logins.
//!
//! * **The bus.** One stream per cluster (`KOMLOG_<NAME>`, subject
//!   `komlog.<name>.events`, file storage, kept an hour) carries every accepted
//!   write and every kick and withdrawn share. A hub's writer publishes each
//!   group commit's writes (in events of at most 512 KiB) and waits for the
//!   stream's acknowledgement before any of them is answered, so an
//!   acknowledged write's notification cannot be lost. Every hub reads the stream
//!   with its own ordered consumer from the moment it starts, so every hub sees
//!   every event once and in the one order of the stream: a write accepted by
//!   hub 1 reaches the sessions hooked to its uri on hubs 1..N in write order.
//!   When the NATS server restarts, the consumer resumes after the last event it
//!   saw.
//! * **Logins.** Challenges and sessions live in the cluster's store
//!   ([`SharedLogins`]): a challenge issued by one hub is answered once, at any
//!   hub; a `kid` cookie from one hub opens a websocket at any; a kick removes the
//!   session from the store and reaches the hub where it is connected.
//!
//! **Does not:** decide anything about a write (the store and the actions do);
//! the events only replay, on every hub, what one hub already did.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::StreamExt;
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use sha2::Digest;

use crate::metrics::HubMetrics;
use crate::server::Hub;
use crate::sessions::{SessionSharing, Written};
use crate::store::{NewSample, SessionRecord, SharedLogins};

/// How long a publish may wait for the stream's acknowledgement.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the bus keeps an event (a hub that was away longer than this
/// cannot catch up on it; its sessions were closed anyway).
const KEEP_EVENTS: Duration = Duration::from_secs(3600);

/// Where the bus is.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `nats://host:port` (user and password in the url when the server wants them).
    pub url: String,
    /// The cluster's name: hubs with the same bus and name are one cluster
    /// (letters, digits, `_` and `-`).
    pub name: String,
}

/// Why the bus failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The cluster name cannot name a stream.
    #[error("cluster name {0:?} is not usable: use 1 to 64 letters, digits, '_' or '-'")]
    BadName(String),
    /// The NATS server did not answer.
    #[error(
        "cannot connect to the NATS server at {url}: {reason} (is nats-server running with JetStream, `-js`?)"
    )]
    Connect {
        /// The server.
        url: String,
        /// The error.
        reason: String,
    },
    /// The stream could not be created or read.
    #[error("NATS JetStream stream {stream}: {reason}")]
    Stream {
        /// The stream.
        stream: String,
        /// The error.
        reason: String,
    },
    /// A publish was not acknowledged.
    #[error("the cluster bus did not take an event: {0}")]
    Publish(String),
}

/// One thing a hub tells the others.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Write messages committed together (one group commit, or a part of
    /// one), in commit order.
    Writes {
        /// The writes.
        writes: Vec<WriteEvent>,
    },
    /// Sessions were kicked: those of `user`, only `sid` or only those opened
    /// by `agent_id` when given.
    Kick {
        /// The user.
        user: Username,
        /// One session only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<String>,
        /// The sessions of one agent key only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<String>,
    },
    /// `owner`'s shares changed or `owner` was removed: hooks of other users
    /// on `owner`'s metrics are checked again against the store.
    SharesChanged {
        /// The user whose shares changed.
        owner: Username,
    },
}

/// One committed write message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteEvent {
    /// The writer (every written uri is theirs).
    pub owner: Username,
    /// The message's time.
    pub t: TimeUuid,
    /// The samples, as stored.
    pub items: Vec<WrittenItem>,
    /// Local uris the write created (they activate pending hooks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
}

/// One sample of a [`WriteEvent`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WrittenItem {
    /// The local uri.
    pub uri: String,
    /// `"d"` or `"p"`.
    pub kind: String,
    /// The value as stored.
    pub content: String,
}

impl WriteEvent {
    /// The event of a committed write message: its samples (which share one
    /// time) and the uris it created.
    pub fn of(owner: &Username, samples: &[NewSample], created: &[String]) -> Option<WriteEvent> {
        Some(WriteEvent {
            owner: owner.clone(),
            t: samples.first()?.t,
            items: samples
                .iter()
                .map(|x| WrittenItem {
                    uri: x.uri.clone(),
                    kind: x.kind.letter().to_owned(),
                    content: x.content.clone(),
                })
                .collect(),
            created: created.to_vec(),
        })
    }

    fn size(&self) -> usize {
        64 + self
            .items
            .iter()
            .map(|i| i.uri.len() + i.content.len() + 32)
            .sum::<usize>()
            + self.created.iter().map(|c| c.len() + 4).sum::<usize>()
    }
}

/// The largest event payload published (NATS refuses messages over 1 MiB by
/// default): a group commit's writes go in as many events as needed.
const MAX_EVENT_BYTES: usize = 512 * 1024;

/// Split writes into [`Event::Writes`] of at most [`MAX_EVENT_BYTES`] each
/// (a single larger write goes alone), keeping their order.
pub fn write_events(writes: Vec<WriteEvent>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for w in writes {
        let size = w.size();
        if !current.is_empty() && bytes + size > MAX_EVENT_BYTES {
            events.push(Event::Writes {
                writes: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += size;
        current.push(w);
    }
    if !current.is_empty() {
        events.push(Event::Writes { writes: current });
    }
    events
}

/// A connection to the cluster bus.
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    subject: String,
    url: String,
    metrics: Arc<HubMetrics>,
    /// False while the hub's consumer has lost the stream.
    listening: AtomicBool,
}

fn check_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BusError::BadName(name.to_owned()))
    }
}

/// The url without its password, for messages.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Bus {
    /// Connect to the NATS server and create the cluster's stream when missing.
    pub async fn connect(config: &BusConfig, metrics: Arc<HubMetrics>) -> Result<Bus, BusError> {
        check_name(&config.name)?;
        let url = shown_url(&config.url);
        let connect_error = |reason: String| BusError::Connect {
            url: url.clone(),
            reason,
        };
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(5))
                .connect(config.url.as_str()),
        )
        .await
        .map_err(|_| connect_error("no answer in 10 s".into()))?
        .map_err(|e| connect_error(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(PUBLISH_TIMEOUT);
        let stream = format!("KOMLOG_{}", config.name.to_ascii_uppercase());
        let subject = format!("komlog.{}.events", config.name);
        js.get_or_create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            storage: jetstream::stream::StorageType::File,
            max_age: KEEP_EVENTS,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Stream {
            stream: stream.clone(),
            reason: e.to_string(),
        })?;
        Ok(Bus {
            client,
            js,
            stream,
            subject,
            url,
            metrics,
            listening: AtomicBool::new(false),
        })
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// True while the connection to the NATS server is up and the hub's
    /// consumer reads the stream.
    pub fn healthy(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
            && self.listening.load(Ordering::Relaxed)
    }

    /// Publish an event and wait for the stream to acknowledge it.
    pub async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    /// Publish events in order and wait until the stream acknowledged them all.
    pub async fn publish_all(&self, events: &[Event]) -> Result<(), BusError> {
        let started = Instant::now();
        let result = self.publish_in_order(events).await;
        match &result {
            Ok(()) => self.metrics.bus_publish.observe(started.elapsed()),
            Err(e) => {
                self.metrics.bus_errors.inc();
                tracing::warn!("{e}");
            }
        }
        result
    }

    async fn publish_in_order(&self, events: &[Event]) -> Result<(), BusError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, async {
            // Sent one after the other on one connection (the stream keeps
            // their order), then every acknowledgement awaited.
            let mut acks = Vec::with_capacity(events.len());
            for event in events {
                let payload =
                    serde_json::to_vec(event).map_err(|e| BusError::Publish(e.to_string()))?;
                acks.push(
                    self.js
                        .publish(self.subject.clone(), payload.into())
                        .await
                        .map_err(|e| BusError::Publish(e.to_string()))?,
                );
            }
            for ack in acks {
                ack.await.map_err(|e| BusError::Publish(e.to_string()))?;
            }
            Ok::<(), BusError>(())
        })
        .await
        .map_err(|_| {
            BusError::Publish(format!(
                "no acknowledgement from {} in {} s",
                self.url,
                PUBLISH_TIMEOUT.as_secs()
            ))
        })?
    }

    /// Read the stream from now on and apply every event to `hub`, until the
    /// hub is dropped. Restarts its consumer after the last event seen when the
    /// stream is lost (a NATS restart).
    pub fn listen(self: &Arc<Bus>, hub: Weak<Hub>) -> tokio::task::JoinHandle<()> {
        let bus = Arc::clone(self);
        tokio::spawn(async move {
            let mut next: Option<u64> = None;
            let mut failures = 0u32;
            loop {
                if hub.strong_count() == 0 {
                    return;
                }
                match bus.consume(&hub, &mut next).await {
                    Ok(()) => return,
                    Err(e) => {
                        bus.listening.store(false, Ordering::Relaxed);
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!("cluster bus: {e}; reading the stream again");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// Create an ordered consumer starting at `next` (or at new events) and
    /// apply what it delivers. `Ok` when the hub is gone.
    async fn consume(&self, hub: &Weak<Hub>, next: &mut Option<u64>) -> Result<(), BusError> {
        let stream_error = |e: &dyn std::fmt::Display| BusError::Stream {
            stream: self.stream.clone(),
            reason: e.to_string(),
        };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| stream_error(&e))?;
        let deliver_policy = match *next {
            Some(seq) => DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            },
            None => DeliverPolicy::New,
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy,
                filter_subject: self.subject.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| stream_error(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| stream_error(&e))?;
        self.listening.store(true, Ordering::Relaxed);
        if next.is_none() {
            // From here on, a restart resumes after the last event applied.
            let info = stream.get_info().await.map_err(|e| stream_error(&e))?;
            *next = Some(info.state.last_sequence + 1);
        }
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| stream_error(&e))?;
            let Some(hub) = hub.upgrade() else {
                return Ok(());
            };
            if let Ok(info) = message.info() {
                *next = Some(info.stream_sequence + 1);
            }
            match serde_json::from_slice::<Event>(&message.payload) {
                Ok(event) => {
                    hub.metrics.bus_received.inc();
                    apply(&hub, event).await;
                }
                Err(e) => tracing::warn!("cluster bus: an event that is not understood: {e}"),
            }
        }
        Err(stream_error(&"the consumer ended"))
    }
}

/// Apply an event of the bus to this hub's sessions.
async fn apply(hub: &Arc<Hub>, event: Event) {
    match event {
        Event::Writes { writes } => {
            for w in writes {
                apply_write(hub, w);
            }
        }
        Event::Kick {
            user,
            sid,
            agent_id,
        } => {
            hub.sessions
                .kick_here(&user, sid.as_deref(), agent_id.as_deref());
        }
        Event::SharesChanged { owner } => {
            let lookup = owner.clone();
            match hub.store_call(move |s| s.shares_of(&lookup)).await {
                Ok(remaining) => {
                    hub.sessions.drop_hooks_here(&owner, |reader, id| {
                        remaining.iter().any(|sh| sh.lets_read(reader, id))
                    });
                }
                Err(e) => tracing::warn!(%owner, "cluster bus: cannot read the shares: {e}"),
            }
        }
    }
}

/// Notify this hub's sessions of one write of the bus.
fn apply_write(hub: &Hub, w: WriteEvent) {
    let WriteEvent {
        owner,
        t,
        items,
        created,
    } = w;
    let written: Vec<Written> = items
        .into_iter()
        .filter_map(|i| {
            Some(Written {
                id: MetricId {
                    owner: owner.clone(),
                    local: i.uri,
                },
                kind: Kind::from_letter(&i.kind)?,
                content: i.content,
            })
        })
        .collect();
    let created: Vec<MetricId> = created
        .into_iter()
        .map(|local| MetricId {
            owner: owner.clone(),
            local,
        })
        .collect();
    hub.notify_here(t, &written, &created);
}

/// The SHA-256 of a session token: the store keeps only that.
pub fn token_digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Sessions shared through the cluster's store, kicks through the bus.
pub struct ClusterSessions {
    /// The cluster's store.
    pub logins: Arc<dyn SharedLogins>,
    /// The bus.
    pub bus: Arc<Bus>,
    /// The runtime the bus runs on (kicks are published from blocking threads).
    pub runtime: tokio::runtime::Handle,
}

impl SessionSharing for ClusterSessions {
    fn login_created(&self, token: &str, sid: &str, user: &Username, agent_id: &str) {
        let record = SessionRecord {
            sid: sid.to_owned(),
            user: user.clone(),
            agent_id: agent_id.to_owned(),
        };
        if let Err(e) = self.logins.add_session(token_digest(token), &record) {
            tracing::warn!(%user, sid, "the session is known to this hub only: {e}");
        }
    }

    fn find_login(&self, token: &str) -> Option<SessionRecord> {
        match self.logins.find_session(token_digest(token)) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("cannot look up a session in the cluster's store: {e}");
                None
            }
        }
    }

    fn kicked(&self, user: &Username, sid: Option<&str>, agent_id: Option<&str>) -> Vec<String> {
        let removed = self
            .logins
            .remove_sessions(user, sid, agent_id)
            .unwrap_or_else(|e| {
                tracing::warn!(%user, "cannot remove sessions from the cluster's store: {e}");
                Vec::new()
            });
        self.broadcast(Event::Kick {
            user: user.clone(),
            sid: sid.map(str::to_owned),
            agent_id: agent_id.map(str::to_owned),
        });
        removed
    }

    fn shares_changed(&self, owner: &Username) {
        self.broadcast(Event::SharesChanged {
            owner: owner.clone(),
        });
    }
}

impl ClusterSessions {
    /// Publish in the background: callers may be on async or blocking threads.
    fn broadcast(&self, event: Event) {
        let bus = Arc::clone(&self.bus);
        self.runtime.spawn(async move {
            if let Err(e) = bus.publish(&event).await {
                tracing::error!("cluster bus: {event:?} reaches this hub only: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json() {
        let owner = Username::parse("alice").unwrap();
        let t = TimeUuid::now();
        let written = vec![NewSample {
            uri: "host.cpu".into(),
            kind: Kind::Datapoint,
            t,
            content: "1.5".into(),
        }];
        let created = vec!["host.cpu".to_owned()];
        let write = WriteEvent::of(&owner, &written, &created).unwrap();
        let events = write_events(vec![write.clone(), write.clone()]);
        assert_eq!(events.len(), 1, "small writes share an event");
        let text = serde_json::to_string(&events[0]).unwrap();
        assert!(
            text.starts_with(r#"{"event":"writes","writes":[{"owner":"alice""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), events[0]);
        // A group larger than one event is split, in order.
        let big = WriteEvent {
            items: vec![
                WrittenItem {
                    uri: "host.log".into(),
                    kind: "d".into(),
                    content: "x".repeat(100_000),
                };
                2
            ],
            ..write.clone()
        };
        let events = write_events(vec![write.clone(), big.clone(), big.clone(), big, write]);
        let sizes: Vec<usize> = events
            .iter()
            .map(|e| match e {
                Event::Writes { writes } => writes.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![3, 2]);
        assert!(
            events
                .iter()
                .all(|e| serde_json::to_vec(e).unwrap().len() < 1 << 20)
        );
        let kick = Event::Kick {
            user: owner,
            sid: None,
            agent_id: Some("ab".into()),
        };
        let text = serde_json::to_string(&kick).unwrap();
        assert_eq!(text, r#"{"event":"kick","user":"alice","agent_id":"ab"}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), kick);
    }

    #[test]
    fn names_and_urls() {
        assert!(check_name("prod-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a.b").is_err());
        assert_eq!(
            shown_url("nats://u:secret@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(shown_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
