//! What the metric listeners ([`super::statsd`], [`super::line_protocol`])
//! share: their counters ([`ListenerStats`]) and the board the status model
//! reads them from ([`ListenerBoard`]), the log-once rule for bad input, and
//! handing samples to the dispatcher's inbox (the path of `komlogd -u` and of
//! the control socket's `samples` request: validated, stored, firing impulses,
//! queued for the server).
//!
//! A bad line is never fatal: it is counted by kind, and the first of each
//! kind is logged (with the line), the next ones only counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::{LineProtocolConfig, StatsdConfig};
use crate::impulses::Inbox;
use crate::model::Sample;

/// The longest uri a listener writes; a longer name is a bad uri.
pub const MAX_URI_BYTES: usize = 512;

/// The most samples handed to the inbox in one upload.
const UPLOAD_CHUNK: usize = 10_000;

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// Not the protocol's syntax.
    Syntax,
    /// A value that is not a (finite) number, a bad sample rate or timestamp.
    Value,
    /// A name that gives no uri: empty, or longer than [`MAX_URI_BYTES`].
    Uri,
    /// A line (or request body) over the size limit.
    TooLong,
}

impl BadKind {
    /// Every kind, in the order of the counters.
    pub const ALL: [BadKind; 4] = [
        BadKind::Syntax,
        BadKind::Value,
        BadKind::Uri,
        BadKind::TooLong,
    ];

    /// The kind's name in the status report and the metrics' `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            BadKind::Syntax => "syntax",
            BadKind::Value => "value",
            BadKind::Uri => "uri",
            BadKind::TooLong => "too_long",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A refused line: its kind and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The counter it goes to.
    pub kind: BadKind,
    /// What is wrong, for the log and the HTTP answer.
    pub reason: String,
}

impl BadLine {
    /// A bad line of `kind`.
    pub fn new(kind: BadKind, reason: impl Into<String>) -> Self {
        BadLine {
            kind,
            reason: reason.into(),
        }
    }
}

/// The live counters of one listener. Shared between its threads and the
/// status model; every counter only grows.
#[derive(Debug)]
pub struct ListenerStats {
    /// `statsd` or `line_protocol`.
    pub protocol: &'static str,
    listen: Mutex<Option<SocketAddr>>,
    lines: AtomicU64,
    samples: AtomicU64,
    refused: AtomicU64,
    bad: [AtomicU64; 4],
    logged: [AtomicBool; 4],
}

impl ListenerStats {
    /// Counters for a listener of `protocol`, not bound yet.
    pub fn new(protocol: &'static str) -> Arc<Self> {
        Arc::new(ListenerStats {
            protocol,
            listen: Mutex::new(None),
            lines: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bad: Default::default(),
            logged: Default::default(),
        })
    }

    /// Record the address the listener is bound to (none: not bound).
    pub fn set_listen(&self, addr: Option<SocketAddr>) {
        if let Ok(mut l) = self.listen.lock() {
            *l = addr;
        }
    }

    /// Count `n` lines received (good and bad).
    pub fn add_lines(&self, n: u64) {
        self.lines.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a bad line; log the first of its kind (with `line`, cut to 200
    /// bytes), then count silently.
    pub fn bad(&self, bad: &BadLine, line: &[u8]) {
        let i = bad.kind.index();
        self.bad[i].fetch_add(1, Ordering::Relaxed);
        if !self.logged[i].swap(true, Ordering::Relaxed) {
            let shown = String::from_utf8_lossy(&line[..line.len().min(200)]);
            tracing::warn!(
                listener = self.protocol,
                kind = bad.kind.as_str(),
                "bad line {shown:?}: {}; further bad lines of this kind are only counted",
                bad.reason
            );
        }
    }

    /// The listener's counters now.
    pub fn report(&self) -> ListenerReport {
        let get = |k: BadKind| self.bad[k.index()].load(Ordering::Relaxed);
        ListenerReport {
            protocol: self.protocol.to_owned(),
            listen: self
                .listen
                .lock()
                .ok()
                .and_then(|l| *l)
                .map(|a| a.to_string()),
            lines: self.lines.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bad_syntax: get(BadKind::Syntax),
            bad_value: get(BadKind::Value),
            bad_uri: get(BadKind::Uri),
            bad_too_long: get(BadKind::TooLong),
        }
    }

    /// Store `samples` through `inbox`, in uploads of at most 10,000; count
    /// the stored and refused ones (the first refusal is logged). Blocks until
    /// they are committed: call it off the async runtime. Returns how many
    /// were stored, or `Err` when the dispatcher has stopped.
    pub fn ingest(
        &self,
        inbox: &Inbox,
        mut samples: Vec<Sample>,
    ) -> Result<usize, crate::impulses::Closed> {
        let mut stored = 0;
        while !samples.is_empty() {
            let rest = samples.split_off(samples.len().min(UPLOAD_CHUNK));
            let receipt = inbox.upload(std::mem::replace(&mut samples, rest))?;
            stored += receipt.accepted;
            self.samples
                .fetch_add(receipt.accepted as u64, Ordering::Relaxed);
            if let Some(first) = receipt.rejected.first() {
                self.refused
                    .fetch_add(receipt.rejected.len() as u64, Ordering::Relaxed);
                tracing::debug!(
                    listener = self.protocol,
                    uri = %first.uri,
                    refused = receipt.rejected.len(),
                    "samples refused: {}",
                    first.reason
                );
            }
        }
        Ok(stored)
    }
}

/// One listener in the status report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerReport {
    /// `statsd` or `line_protocol`.
    pub protocol: String,
    /// The address it is bound to (none while it could not bind).
    #[serde(default)]
    pub listen: Option<String>,
    /// Lines received, good and bad.
    pub lines: u64,
    /// Samples stored (after aggregation, for StatsD).
    pub samples: u64,
    /// Samples the agent refused (e.g. a uri already holding text).
    pub refused: u64,
    /// Lines refused for their syntax.
    pub bad_syntax: u64,
    /// Lines refused for a value (a number, rate or timestamp).
    pub bad_value: u64,
    /// Lines refused for a name that gives no uri.
    pub bad_uri: u64,
    /// Lines (or request bodies) over the size limit.
    pub bad_too_long: u64,
}

impl ListenerReport {
    /// The bad-line counters by kind name.
    pub fn bad_by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("syntax", self.bad_syntax),
            ("value", self.bad_value),
            ("uri", self.bad_uri),
            ("too_long", self.bad_too_long),
        ]
    }
}

/// The running listeners, as the status model reads them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ListenerBoard {
    listeners: Arc<Mutex<Vec<Arc<ListenerStats>>>>,
}

impl ListenerBoard {
    /// Add a listener's counters.
    pub fn add(&self, stats: Arc<ListenerStats>) {
        if let Ok(mut l) = self.listeners.lock() {
            l.push(stats);
        }
    }

    /// Every listener's counters now, in the order they were added.
    pub fn snapshot(&self) -> Vec<ListenerReport> {
        self.listeners
            .lock()
            .map(|l| l.iter().map(|s| s.report()).collect())
            .unwrap_or_default()
    }

    /// Take the listener of `protocol` off the board (its block was removed).
    pub fn remove(&self, protocol: &str) {
        if let Ok(mut l) = self.listeners.lock() {
            l.retain(|s| s.protocol != protocol);
        }
    }

    /// The counters of the listener of `protocol`, if one runs.
    pub fn get(&self, protocol: &str) -> Option<ListenerReport> {
        self.snapshot().into_iter().find(|r| r.protocol == protocol)
    }
}

/// `name` (already a uri) under `prefix`: `prefix.name`.
pub fn prefixed(prefix: Option<&str>, uri: String) -> String {
    match prefix {
        Some(p) => {
            let mut out = String::with_capacity(p.len() + 1 + uri.len());
            out.push_str(p);
            out.push('.');
            out.push_str(&uri);
            out
        }
        None => uri,
    }
}

/// A running listener: its configuration, counters, stop signal and task.
struct Running<C, H> {
    config: C,
    stats: Arc<ListenerStats>,
    stop: watch::Sender<bool>,
    handle: H,
}

/// The listeners a configuration asks for, once started. A reload restarts the
/// ones whose block changed ([`Listeners::apply`]); their counters go on.
pub struct Listeners {
    statsd: Option<Running<StatsdConfig, super::statsd::StatsdListener>>,
    line_protocol: Option<Running<LineProtocolConfig, tokio::task::JoinHandle<()>>>,
    inbox: Inbox,
    board: ListenerBoard,
    shutdown: watch::Receiver<bool>,
}

impl Listeners {
    /// Bind and start the `statsd` and `line_protocol` listeners of `config`,
    /// adding their counters to `board`. One that cannot bind is logged and
    /// left out; the agent runs on. They stop when `shutdown` turns true. Must
    /// be called inside a tokio runtime.
    pub async fn start(
        config: &crate::config::Config,
        inbox: &Inbox,
        board: &ListenerBoard,
        shutdown: &watch::Receiver<bool>,
    ) -> Listeners {
        let mut running = Listeners {
            statsd: None,
            line_protocol: None,
            inbox: inbox.clone(),
            board: board.clone(),
            shutdown: shutdown.clone(),
        };
        running
            .apply(config.statsd.as_ref(), config.line_protocol.as_ref())
            .await;
        running
    }

    /// Follow a new configuration: a listener whose block changed is stopped
    /// (StatsD stores its last interval) and started again with the new block,
    /// keeping its counters; a removed one is stopped and leaves the status; a
    /// new one starts. Unchanged ones run on untouched.
    pub async fn apply(
        &mut self,
        statsd: Option<&StatsdConfig>,
        line_protocol: Option<&LineProtocolConfig>,
    ) {
        if self.statsd.as_ref().map(|r| &r.config) != statsd {
            let stats = match self.statsd.take() {
                Some(old) => {
                    let stats = old.stop().await;
                    tracing::info!("StatsD listener stopped");
                    Some(stats)
                }
                None => None,
            };
            match statsd {
                Some(c) => self.statsd = self.start_statsd(c, stats),
                None => self.board.remove("statsd"),
            }
        }
        if self.line_protocol.as_ref().map(|r| &r.config) != line_protocol {
            let stats = match self.line_protocol.take() {
                Some(old) => {
                    let stats = old.stop().await;
                    tracing::info!("line protocol listener stopped");
                    Some(stats)
                }
                None => None,
            };
            match line_protocol {
                Some(c) => self.line_protocol = self.start_line_protocol(c, stats).await,
                None => self.board.remove("line_protocol"),
            }
        }
    }

    /// A stop signal that also turns true with the agent's shutdown.
    fn stop_signal(&self) -> (watch::Sender<bool>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(*self.shutdown.borrow());
        let mut shutdown = self.shutdown.clone();
        let forward = tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => { let _ = forward.send(true); }
                _ = forward.closed() => {}
            }
        });
        (tx, rx)
    }

    /// A listener started on `config`. Its counters go on the board if `new`;
    /// kept ones (a restart) are there already, shown unbound if the new address
    /// could not be bound.
    fn running<C: Clone, H>(
        &self,
        config: &C,
        stats: Arc<ListenerStats>,
        new: bool,
        stop: watch::Sender<bool>,
        handle: H,
    ) -> Running<C, H> {
        if new {
            self.board.add(Arc::clone(&stats));
        }
        Running {
            config: config.clone(),
            stats,
            stop,
            handle,
        }
    }

    fn start_statsd(
        &self,
        c: &StatsdConfig,
        kept: Option<Arc<ListenerStats>>,
    ) -> Option<Running<StatsdConfig, super::statsd::StatsdListener>> {
        let new = kept.is_none();
        let stats = kept.unwrap_or_else(|| ListenerStats::new("statsd"));
        let (stop, stopped) = self.stop_signal();
        let started = super::statsd::bind(c).and_then(|socket| {
            let addr = socket.local_addr()?;
            stats.set_listen(Some(addr));
            super::statsd::StatsdListener::start(
                socket,
                c,
                self.inbox.clone(),
                Arc::clone(&stats),
                stopped,
            )
            .map(|l| (l, addr))
        });
        match started {
            Ok((handle, addr)) => {
                tracing::info!(listen = %addr, "taking StatsD metrics over UDP");
                Some(self.running(c, stats, new, stop, handle))
            }
            Err(e) => {
                stats.set_listen(None);
                tracing::error!(listen = %c.listen, "cannot take StatsD metrics: {e}");
                None
            }
        }
    }

    async fn start_line_protocol(
        &self,
        c: &LineProtocolConfig,
        kept: Option<Arc<ListenerStats>>,
    ) -> Option<Running<LineProtocolConfig, tokio::task::JoinHandle<()>>> {
        let new = kept.is_none();
        let stats = kept.unwrap_or_else(|| ListenerStats::new("line_protocol"));
        match tokio::net::TcpListener::bind(c.listen).await {
            Ok(listener) => {
                let addr = listener.local_addr().ok();
                stats.set_listen(addr);
                tracing::info!(listen = ?addr, "taking InfluxDB line protocol writes over HTTP");
                let (stop, stopped) = self.stop_signal();
                let handle = tokio::spawn(super::line_protocol::serve(
                    listener,
                    c.prefix.clone(),
                    self.inbox.clone(),
                    Arc::clone(&stats),
                    stopped,
                ));
                Some(self.running(c, stats, new, stop, handle))
            }
            Err(e) => {
                stats.set_listen(None);
                tracing::error!(listen = %c.listen, "cannot take line protocol writes: {e}");
                None
            }
        }
    }

    /// Wait for the listeners to end after the shutdown signal (StatsD
    /// stores its last interval first).
    pub async fn join(self) {
        if let Some(l) = self.statsd {
            l.stop().await;
        }
        if let Some(l) = self.line_protocol {
            l.stop().await;
        }
    }
}

impl Running<StatsdConfig, super::statsd::StatsdListener> {
    /// Stop the listener (it stores its last interval first); its counters.
    async fn stop(self) -> Arc<ListenerStats> {
        let _ = self.stop.send(true);
        let listener = self.handle;
        let _ = tokio::task::spawn_blocking(move || listener.join()).await;
        self.stats
    }
}

impl Running<LineProtocolConfig, tokio::task::JoinHandle<()>> {
    /// Stop the listener; its counters.
    async fn stop(self) -> Arc<ListenerStats> {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_status_and_metrics() {
        let board = ListenerBoard::default();
        let stats = ListenerStats::new("statsd");
        stats.set_listen(Some(SocketAddr::from(([127, 0, 0, 1], 8125))));
        board.add(Arc::clone(&stats));
        stats.add_lines(3);
        stats.bad(&BadLine::new(BadKind::Uri, "empty"), b":1|c");
        stats.bad(&BadLine::new(BadKind::Uri, "empty"), b":2|c");
        let report = board.get("statsd").expect("listed");
        assert_eq!(report.listen.as_deref(), Some("127.0.0.1:8125"));
        assert_eq!((report.lines, report.bad_uri, report.bad_syntax), (3, 2, 0));

        let boards = crate::agent::status::Boards {
            listeners: board,
            ..Default::default()
        };
        assert_eq!(
            boards.report(std::time::Duration::ZERO).listeners,
            vec![report]
        );
        let text = boards.prometheus_text();
        for line in [
            "komlogd_listener_lines_total{listener=\"statsd\"} 3",
            "komlogd_listener_bad_lines_total{listener=\"statsd\",kind=\"uri\"} 2",
            "komlogd_listener_bad_lines_total{listener=\"statsd\",kind=\"too_long\"} 0",
            "komlogd_listener_samples_total{listener=\"statsd\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
