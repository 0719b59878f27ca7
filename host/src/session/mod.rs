//! Connected mode: the agent's link to a Komlog server, when komlogd.yaml has a
//! `- server:` block.
//!
//! **Owns:** logging in with the agent's key (through `komlog-session`),
//! reconnecting, hooking the impulses' uris, filling their data requirements
//! from the server's history, handing the server's notifications to the
//! dispatcher, and sending the store's outbox.
//!
//! * **Reconnect.** Every attempt is a full challenge login and a new
//!   websocket, so a session closed with 4403 (kicked, or a cookie the server
//!   no longer knows) logs in again like any other. A failed attempt — the
//!   first one included — is retried after an exponential backoff with jitter:
//!   250 ms doubling up to 30 s, each delay drawn in `[d/2, d]`; a successful
//!   login resets it.
//! * **Several servers** (`urls:`). The urls are tried round robin, starting
//!   with the first. A failed login moves to the next url at once until every
//!   url has failed in this round; then the link backs off as above (one
//!   backoff step per round) and starts the next round where it stopped. A lost
//!   connection (one that was up: logged in, hooked, history fetched) moves to
//!   the next url at once, the lost one counting as tried in the new round; a
//!   connection lost before it was up counts as a failed attempt. A close with
//!   4503 (the server is stopping or shedding load) of a connection that was
//!   up reconnects at once, to the next url, with one url as with several.
//!   The status's `url` is the server connected to (or being tried). The
//!   outbox makes a move lose nothing: what was not acknowledged is sent to
//!   the next server under the same TimeUUIDs (a write the old server stored
//!   but did not answer before it closed is then held by both).
//! * **Hooks and history.** After every login each uri an impulse subscribes
//!   to (local, or `user:uri`) is hooked again (hooks belong to the server's
//!   session, which changes at each login). For each, `request_data` fetches
//!   what the impulses' windows need (`past_delta` back from now, the last
//!   `past_count`, or the latest sample), which goes into the store without
//!   firing anything; values the store already holds are skipped. Only then are
//!   the notifications that arrived meanwhile forwarded, so the first fire's
//!   window already holds the history.
//! * **Hooks follow the running impulses.** The uris to hook come through a
//!   watch channel that the agent updates whenever the running set of impulses
//!   changes (a configuration reload, a module swap, a package's impulses). While
//!   connected the link hooks the new uris and fetches their history the same
//!   way as at login (and fetches again when a uri's data requirements change),
//!   and unhooks the uris no impulse subscribes to any more. A change made while
//!   disconnected is picked up at the next login, which hooks the current set.
//! * **Notifications** (`send_multi_data` from the server) become samples for
//!   the dispatcher ([`crate::impulses::Inbox::remote`]): stored unless already
//!   held, and fired like any source sample. They are never sent back.
//! * **Outbox.** Samples go to the server only from the store's outbox
//!   ([`crate::store::Outbox`]), where the dispatcher put them in the same
//!   commit that stored them. They are read in `(ts, uri)` order, each time's
//!   samples in one message with this store's TimeUUID for that time, and up to
//!   [`WINDOW`] messages are in flight before the link waits for a reply. A
//!   sample leaves the outbox after the server's 4200/4202; one the server
//!   refuses (4400/4430, which a resend would not change) is logged, counted
//!   and removed; an answer 4501/4503 (the server's trouble) ends the link
//!   instead, and the samples stay. After a disconnect everything still in the
//!   outbox is sent again, under the same TimeUUIDs.
//! * **Supplies.** After the server acknowledges a write to a datasource that
//!   declares what it supplies ([`Supplies`]: a job's `supplies:`, or a
//!   package's declaration), the link sends the list (`send_ds_info`) unless
//!   it sent the same list on this connection; a refusal is logged once per
//!   list. Every new connection sends each list again with the datasource's
//!   next write.
//! * Writes to other users' uris never reach the outbox: the dispatcher drops
//!   them (`remote_writes_dropped`).

mod link;
mod supplies;

pub use link::Delivery;
pub use supplies::Supplies;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use komlog_protocol::login::PrivateKey;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::impulses::Inbox;
use crate::store::{DataReqs, Outbox};

/// Messages sent and not yet answered, at most.
pub const WINDOW: usize = 64;
/// The first reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A uri to hook, as an impulse subscribes to it, with what its windows need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The uri as written (`cpu.user` or `alice:shared.cpu`).
    pub uri: String,
    /// The union of the subscribed impulses' data requirements.
    pub reqs: DataReqs,
    /// The impulses subscribed to it (named in a refusal of the hook).
    pub impulses: Vec<String>,
}

/// A hook the server refused: its impulses get no notification for the uri
/// until a later login or change hooks it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookRefusal {
    /// The uri as subscribed.
    pub uri: String,
    /// The server's answer.
    pub reason: String,
    /// When it was refused, µs since the Unix epoch.
    pub ts: i64,
    /// The impulses subscribed to it.
    pub impulses: Vec<String>,
}

/// How to reach the server.
#[derive(Clone)]
pub struct LinkConfig {
    /// The server's URLs from komlogd.yaml (`url`, or `urls`), in the order
    /// tried; at least one.
    pub urls: Vec<String>,
    /// For `https`/`wss`: extra CA certificates (PEM), read at each login.
    pub ca_file: Option<std::path::PathBuf>,
    /// The agent's user.
    pub username: String,
    /// The agent's key.
    pub key: PrivateKey,
    /// The uris to hook, kept current by the agent as its impulses change.
    pub hooks: watch::Receiver<Vec<Hook>>,
    /// What the datasources supply, sent after writes to them.
    pub supplies: Supplies,
    /// The longest wait for one reply (default 30 s).
    pub reply_timeout: Duration,
}

/// What `komlogd status` shows about the server link.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerStatus {
    /// The server connected to; while connecting, the one being tried; in
    /// backoff, the one tried last.
    pub url: String,
    /// Every configured server, in the order tried (one unless `urls` lists
    /// several).
    #[serde(default)]
    pub urls: Vec<String>,
    /// `connecting`, `connected`, `backoff` or `stopped`.
    pub state: String,
    /// While in backoff: the delay before the next attempt, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Samples waiting in the outbox for the server's acknowledgement.
    pub outbox: u64,
    /// Samples sent (resends included).
    pub sent: u64,
    /// Write messages sent (resends included): the samples of one time go in one.
    #[serde(default)]
    pub messages: u64,
    /// Samples acknowledged by the server.
    pub acked: u64,
    /// Samples the server refused (logged and removed from the outbox).
    pub refused: u64,
    /// Successful logins.
    pub logins: u64,
    /// Uris hooked now (active or pending at the server).
    pub hooked: u64,
    /// Notified samples handed to the impulses.
    pub notified: u64,
    /// History samples fetched.
    pub history: u64,
    /// Datasource supply lists the server acknowledged (`send_ds_info`).
    #[serde(default)]
    pub supplies_sent: u64,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last error happened, µs since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_ts: Option<i64>,
    /// While connected: since when, µs since the Unix epoch. A last error
    /// before it belongs to an earlier connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since_ts: Option<i64>,
    /// The time of the oldest sample in the outbox (its own time, not when it
    /// was queued), µs since the Unix epoch; none when the outbox is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_oldest_ts: Option<i64>,
    /// The hooks the server refused on this connection (or the last one), by uri.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_refused: Vec<HookRefusal>,
}

impl ServerStatus {
    /// Record an error now.
    pub fn error(&mut self, text: String) {
        self.last_error = Some(text);
        self.last_error_ts = Some(crate::model::now_us());
    }

    /// True when the last error happened before the current connection: it
    /// is history, not what is wrong now.
    pub fn last_error_is_past(&self) -> bool {
        matches!(
            (self.last_error_ts, self.connected_since_ts),
            (Some(at), Some(since)) if self.state == "connected" && at < since
        )
    }
}

/// Log in once and send the whole outbox, waiting for each answer, within
/// `within` (login included): what a one-shot `komlogd -u` does when no agent
/// runs. Answered rows leave the outbox; the rest stay for the next run.
/// `config.hooks` is not used.
pub async fn deliver(
    config: LinkConfig,
    outbox: Outbox,
    inbox: Inbox,
    within: Duration,
) -> Delivery {
    link::deliver(config, outbox, inbox, within).await
}

/// The link's live status, readable from any thread.
#[derive(Clone)]
pub struct ServerBoard {
    inner: Arc<Mutex<ServerStatus>>,
    outbox: Outbox,
}

impl ServerBoard {
    fn new(urls: &[String], outbox: Outbox) -> ServerBoard {
        ServerBoard {
            inner: Arc::new(Mutex::new(ServerStatus {
                url: urls.first().cloned().unwrap_or_default(),
                urls: urls.to_vec(),
                state: "connecting".into(),
                ..ServerStatus::default()
            })),
            outbox,
        }
    }

    /// The status now, with the outbox depth and its oldest sample's time
    /// read from the store.
    pub fn snapshot(&self) -> ServerStatus {
        let mut s = self.lock().clone();
        match self.outbox.depth_and_oldest() {
            Ok((depth, oldest)) => (s.outbox, s.outbox_oldest_ts) = (depth, oldest),
            Err(e) => s.error(format!("cannot count the outbox: {e}")),
        }
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerStatus> {
        // Counters stay usable even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut ServerStatus)) {
        f(&mut self.lock());
    }
}

/// A running link.
pub struct Link {
    /// Its status.
    pub board: ServerBoard,
    task: JoinHandle<()>,
}

impl Link {
    /// Start the link: it logs in, hooks, fills history and sends the outbox
    /// until `shutdown` turns true. `signal` is woken by the dispatcher when it
    /// puts samples in the outbox. Must be called inside a tokio runtime.
    pub fn start(
        config: LinkConfig,
        outbox: Outbox,
        signal: Arc<Notify>,
        inbox: Inbox,
        shutdown: watch::Receiver<bool>,
    ) -> Link {
        let board = ServerBoard::new(&config.urls, outbox.clone());
        let task = tokio::spawn(link::run(
            config,
            outbox,
            signal,
            inbox,
            board.clone(),
            shutdown,
        ));
        Link { board, task }
    }

    /// Wait for the link to end (after shutdown).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// The delay before reconnect attempt `attempt` (0 for the first retry):
/// 250 ms doubling up to 30 s, drawn in `[d/2, d]` with `random`.
pub fn backoff_delay(attempt: u32, random: u64) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let half = base / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(random % (spread + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let ms = Duration::from_millis;
        // The ceiling d of each attempt: 250 ms doubling, capped at 30 s. The
        // delay is d/2 plus `random` µs modulo d/2 + 1, so in [d/2, d].
        let ceilings: [(u32, u64); 11] = [
            (0, 250),
            (1, 500),
            (2, 1_000),
            (3, 2_000),
            (4, 4_000),
            (5, 8_000),
            (6, 16_000),
            (7, 30_000),
            (8, 30_000),
            (16, 30_000),
            (u32::MAX, 30_000),
        ];
        for (attempt, ceiling) in ceilings {
            assert_eq!(backoff_delay(attempt, 0), ms(ceiling / 2), "{attempt}");
            assert_eq!(
                backoff_delay(attempt, ceiling * 500),
                ms(ceiling),
                "{attempt}: the top of the range"
            );
            assert_eq!(
                backoff_delay(attempt, ceiling * 500 + 1),
                ms(ceiling / 2),
                "{attempt}: past the top wraps to the bottom"
            );
            for r in [1, 12345, 999_999_999, u64::MAX] {
                let d = backoff_delay(attempt, r);
                assert!(
                    d >= ms(ceiling / 2) && d <= ms(ceiling),
                    "{attempt} {r} {d:?}"
                );
            }
        }
        // u64::MAX % 125_001 = 44_115
        assert_eq!(backoff_delay(0, u64::MAX), Duration::from_micros(169_115));
        // (u64::MAX / 3) % 1_000_001 = 974_878
        assert_eq!(
            backoff_delay(3, u64::MAX / 3),
            Duration::from_micros(1_974_878)
        );
    }
}
