//! Sinks: forwarding the samples the agent stores to other systems (files, a
//! webhook, PostgreSQL, InfluxDB 1.x, Redis Streams, MQTT, NATS), one `- sink:`
//! block each.
//!
//! **Owns:** the [`Sink`] trait every destination implements, and the one delivery
//! loop they all share: reading the store's sample log
//! ([`crate::store::SampleLog`]) after commit, filtering by uri pattern and kind,
//! batching by size and age, retrying with backoff, keeping a durable cursor per
//! sink, dropping the oldest past `max_lag`, and the counters `komlogd status` and
//! `/metrics` show ([`SinkBoard`]). [`Sinks`] starts, reconfigures and stops them.
//!
//! **Guarantees:** at least once. A sink's cursor only moves past a batch once the
//! destination accepted it (or refused it for good: a permanent error is counted in
//! `failed` and the batch skipped). Before a batch is sent, the end of the batch is
//! recorded durably beside the cursor, so after a kill -9 the samples that may have
//! been delivered already are sent again and counted in `resent`. Ingestion never
//! waits for a sink: each runs on its own thread and reads what is committed.
//!
//! **Pipelined:** one batch is in flight at a time, sent by the sink runtime's one
//! worker thread, while the loop reads (and marks durably) the next one; the cursor
//! moves in order, after each batch.
//!
//! **Does not:** decide what is stored (the dispatcher does) or parse the blocks
//! ([`crate::config`]).

pub mod file;
pub mod http;
pub mod influxdb;
pub mod mqtt;
pub mod nats;
mod net_url;
mod pattern;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use net_url::NetUrl;
pub use pattern::{PatternError, UriPattern};

use crate::config::{Destination, SinkConfig};
use crate::model::{Sample, Value};
use crate::store::{SampleLog, StoreError};

/// A boxed future, as [`Sink`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest wait between two tries of a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first wait after a failed try.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How often a sink with nothing to send saves its cursor and prunes the log.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long [`Sink::check`] may take in `komlogd check`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a destination did not take a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again (the destination is down, busy or unreachable).
    #[error("{0}")]
    Retryable(String),
    /// Trying again would fail the same way (the destination refuses the data).
    #[error("{0}")]
    Permanent(String),
}

/// A TCP connection to `authority` (`host:port`) within `timeout`, with
/// Nagle's delay off; failures are [`SinkError::Retryable`].
pub(crate) async fn connect_tcp(
    authority: &str,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, SinkError> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| SinkError::Retryable(format!("connecting to {authority}: timed out")))?
        .map_err(|e| SinkError::Retryable(format!("connecting to {authority}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// `work`, given at most `timeout`: past it, a retryable error saying that
/// `what` did not happen within the time.
pub(crate) async fn within<T>(
    timeout: Duration,
    what: &str,
    work: impl Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(SinkError::Retryable(format!(
                "{what} within {}s",
                timeout.as_secs()
            )))
        })
}

/// A destination.
pub trait Sink: Send {
    /// Connect (or open) and check that batches can be written, preparing what is
    /// needed (a table, a directory).
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>>;
    /// Write `batch` (never empty). `Ok` means the destination has it.
    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// The destination of `config`, not yet connected (an exporter sink exposes
/// into `exposition`).
pub fn open(config: &SinkConfig, exposition: &prometheus::Exposition) -> Box<dyn Sink> {
    match &config.destination {
        Destination::File {
            path,
            format,
            rotate_bytes,
            keep,
        } => Box::new(file::FileSink::new(
            path.clone(),
            *format,
            *rotate_bytes,
            *keep,
        )),
        Destination::Webhook { url } => Box::new(webhook::WebhookSink::new(url, config.ca.clone())),
        Destination::Postgres { url, table } => Box::new(postgres::PostgresSink::new(url, table)),
        Destination::Influxdb {
            url,
            database,
            measurement,
        } => Box::new(influxdb::InfluxSink::new(
            url,
            database,
            measurement.clone(),
            config.ca.clone(),
        )),
        Destination::Redis { url, stream } => Box::new(redis::RedisSink::new(url, stream)),
        Destination::Mqtt { url, topic } => Box::new(mqtt::MqttSink::new(url, topic, &config.name)),
        Destination::Nats {
            url,
            subject,
            jetstream,
        } => Box::new(nats::NatsSink::new(
            url,
            subject,
            jetstream.as_deref(),
            &config.name,
        )),
        Destination::PrometheusExporter => Box::new(prometheus::ExporterSink::new(
            &config.name,
            exposition.clone(),
        )),
        Destination::PrometheusRemoteWrite { url } => {
            Box::new(prometheus::RemoteWriteSink::new(url, config.ca.clone()))
        }
    }
}

/// Where a sink writes, for status and logs (no password).
pub fn describe(config: &SinkConfig) -> String {
    match &config.destination {
        Destination::File { path, .. } => path.display().to_string(),
        Destination::Webhook { url } => url.clone(),
        Destination::Postgres { url, table } => format!("{} table {table}", postgres::redact(url)),
        Destination::Influxdb { url, database, .. } => format!("{url} database {database}"),
        Destination::Redis { url, stream } => {
            format!("{} stream {stream}", postgres::redact(url))
        }
        Destination::Mqtt { url, topic } => {
            let url = NetUrl::parse(url, "mqtt", mqtt::DEFAULT_PORT)
                .map_or_else(|_| url.clone(), |u| u.redacted("mqtt"));
            format!("{url} topic {topic}/…")
        }
        Destination::Nats {
            url,
            subject,
            jetstream,
        } => {
            let url = NetUrl::parse(url, "nats", nats::DEFAULT_PORT)
                .map_or_else(|_| url.clone(), |u| u.redacted("nats"));
            match jetstream {
                Some(stream) => format!("{url} subject {subject}.… stream {stream}"),
                None => format!("{url} subject {subject}.…"),
            }
        }
        Destination::PrometheusExporter => "GET /metrics of the agent".into(),
        Destination::PrometheusRemoteWrite { url } => url.clone(),
    }
}

/// Try `config`'s destination once, within [`CHECK_TIMEOUT`] (for `komlogd check`).
pub fn check(config: &SinkConfig) -> Result<(), SinkError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Retryable(format!("cannot start a runtime: {e}")))?;
    rt.block_on(async {
        let mut sink = open(config, &prometheus::Exposition::default());
        match tokio::time::timeout(CHECK_TIMEOUT, sink.check()).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Retryable(format!(
                "no answer within {}s",
                CHECK_TIMEOUT.as_secs()
            ))),
        }
    })
}

/// A sample as the JSON sinks write it: `{"uri", "ts" (µs), "kind", "value"}`.
pub fn sample_json(s: &Sample) -> serde_json::Value {
    let (kind, value) = match &s.value {
        Value::Datapoint(v) => ("datapoint", serde_json::json!(v)),
        Value::Datasource(t) => ("datasource", serde_json::json!(t)),
    };
    serde_json::json!({"uri": s.uri, "ts": s.ts, "kind": kind, "value": value})
}

/// One sink in status and metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SinkReport {
    /// Its name.
    pub name: String,
    /// Its type: `file`, `webhook`, `postgres`, `influxdb`, `redis`, `mqtt`, `nats`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it writes.
    pub destination: String,
    /// `running` (delivering or waiting for samples), or `retrying` (the
    /// destination failed; the batch is tried again).
    pub state: String,
    /// Samples delivered.
    pub sent: u64,
    /// Failed tries of a batch that were tried again.
    pub retried: u64,
    /// Samples the destination refused for good (skipped).
    pub failed: u64,
    /// Samples skipped because the sink fell more than `max_lag` behind.
    pub dropped: u64,
    /// Samples sent again after a restart that the destination may have had already.
    pub resent: u64,
    /// Samples of the log not yet passed (sent or skipped).
    pub lag_samples: u64,
    /// Age of the oldest sample waiting to be sent, in seconds.
    pub lag_seconds: f64,
    /// The latest error, if any.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The sinks' counters, shared by their threads, status and metrics; and what
/// the exporter sinks expose on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct SinkBoard {
    reports: Arc<Mutex<Vec<SinkReport>>>,
    exposition: prometheus::Exposition,
}

impl SinkBoard {
    /// The latest datapoints the `prometheus_exporter` sinks expose.
    pub fn exposition(&self) -> &prometheus::Exposition {
        &self.exposition
    }

    /// Every sink, in configuration order.
    pub fn snapshot(&self) -> Vec<SinkReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SinkReport)) {
        let mut all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = all.iter_mut().find(|r| r.name == name) {
            f(r);
        }
    }

    /// Keep (in this order) the reports of `configs`, new ones zeroed; counters of a
    /// sink that stays (even reconfigured) go on.
    fn arrange(&self, configs: &[SinkConfig]) {
        let mut all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(configs.len());
        for c in configs {
            let mut r = all
                .iter()
                .position(|r| r.name == c.name)
                .map(|i| all.swap_remove(i))
                .unwrap_or_else(|| SinkReport {
                    name: c.name.clone(),
                    state: "running".into(),
                    ..SinkReport::default()
                });
            r.kind = c.destination.type_name().into();
            r.destination = describe(c);
            out.push(r);
        }
        *all = out;
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        self.exposition.retain(&names);
    }
}

/// A running sink.
struct Running {
    config: SinkConfig,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

/// The running sinks of an agent.
pub struct Sinks {
    log: SampleLog,
    board: SinkBoard,
    me: Option<String>,
    running: Mutex<HashMap<String, Running>>,
}

impl Sinks {
    /// Start the sinks of `configs` over `log`. `me` is the agent's username (its own
    /// `me:` patterns match local uris). The log is written only while a sink is
    /// configured; with none, what it holds is pruned.
    pub fn start(
        log: SampleLog,
        configs: &[SinkConfig],
        me: Option<String>,
        board: SinkBoard,
    ) -> Sinks {
        let sinks = Sinks {
            log,
            board,
            me,
            running: Mutex::new(HashMap::new()),
        };
        sinks.apply(configs);
        sinks
    }

    /// The counters.
    pub fn board(&self) -> SinkBoard {
        self.board.clone()
    }

    /// Follow a new configuration: stop the sinks that are gone or changed, start
    /// the new and changed ones (a changed sink keeps its cursor), forget the cursors
    /// of removed ones.
    pub fn apply(&self, configs: &[SinkConfig]) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| !configs.iter().any(|c| &c.name == *name && *c == r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                let _ = r.thread.join();
                if !configs.iter().any(|c| c.name == name) {
                    tracing::info!(sink = name, "sink no longer in the configuration: stopped");
                }
            }
        }
        self.board.arrange(configs);
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        if let Err(e) = self.log.retain_cursors(&names) {
            tracing::error!("cannot forget the cursors of removed sinks: {e}");
        }
        if configs.is_empty() {
            self.log.set_enabled(false);
            match self.log.prune(u64::MAX) {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "no sink configured: sample log emptied"),
                Err(e) => tracing::error!("cannot empty the sample log: {e}"),
            }
            return;
        }
        self.log.set_enabled(true);
        for c in configs {
            if running.contains_key(&c.name) {
                continue;
            }
            // A new sink starts at the head: it forwards what is stored from now on.
            match self.log.cursor(&c.name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let head = self.log.head();
                    if let Err(e) = self.log.set_cursor(&c.name, head, head, true) {
                        tracing::error!(sink = c.name, "cannot save the sink's cursor: {e}");
                    }
                }
                Err(e) => tracing::error!(sink = c.name, "cannot read the sink's cursor: {e}"),
            }
            let (stop, stopped) = watch::channel(false);
            let worker = Worker {
                config: c.clone(),
                log: self.log.clone(),
                board: self.board.clone(),
                me: self.me.clone(),
                stop: stopped,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("komlogd-sink-{}", c.name))
                .spawn(move || worker.run());
            match spawned {
                Ok(thread) => {
                    tracing::info!(
                        sink = c.name,
                        r#type = c.destination.type_name(),
                        destination = describe(c),
                        "sink started"
                    );
                    running.insert(
                        c.name.clone(),
                        Running {
                            config: c.clone(),
                            stop,
                            thread,
                        },
                    );
                }
                Err(e) => tracing::error!(sink = c.name, "cannot start the sink's thread: {e}"),
            }
        }
    }

    /// Stop every sink (a batch in flight is abandoned and sent again next time).
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (_, r) in running.drain() {
            let _ = r.stop.send(true);
            let _ = r.thread.join();
        }
    }
}

impl Sinks {
    /// The sinks of `config` over `store`'s sample log (started even when none is
    /// configured, so that a reload can add one and the log is pruned). None, with
    /// the reason logged, when the log cannot be opened.
    pub fn for_store(
        store: &crate::store::Store,
        config: &crate::config::Config,
        board: SinkBoard,
    ) -> Option<Sinks> {
        match store.sample_log() {
            Ok(log) => Some(Sinks::start(
                log,
                &config.sinks,
                config.username.as_ref().map(ToString::to_string),
                board,
            )),
            Err(e) => {
                tracing::error!("cannot open the sample log: {e}; no sink runs");
                None
            }
        }
    }
}

/// Try each sink of `config` (`komlogd check`), printing one line each; the
/// problems found.
pub fn check_all(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if !config.sinks.is_empty() {
        println!(
            "{}: {} sink{}",
            config.path.display(),
            config.sinks.len(),
            if config.sinks.len() == 1 { "" } else { "s" }
        );
    }
    for c in &config.sinks {
        let kind = c.destination.type_name();
        match check(c) {
            Ok(()) => println!("  sink {} ({kind} {}): ok", c.name, describe(c)),
            Err(e) => {
                eprintln!("komlogd: sink {} ({kind} {}): {e}", c.name, describe(c));
                problems.push(format!("sink {} cannot write: {e}", c.name));
            }
        }
    }
    problems
}

/// One sink in `komlogd status`.
pub fn status_line(r: &SinkReport) -> String {
    let mut line = format!(
        "sink {} ({} {}): {}, {} sent, {} retried, {} failed, {} dropped, {} resent, lag {} samples / {:.1}s",
        r.name,
        r.kind,
        r.destination,
        r.state,
        r.sent,
        r.retried,
        r.failed,
        r.dropped,
        r.resent,
        r.lag_samples,
        r.lag_seconds
    );
    if let Some(e) = &r.last_error {
        line.push_str("; last error: ");
        line.push_str(e);
    }
    line
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The delivery loop of one sink.
struct Worker {
    config: SinkConfig,
    log: SampleLog,
    board: SinkBoard,
    me: Option<String>,
    stop: watch::Receiver<bool>,
}

/// Where a worker is in the log.
struct Position {
    /// The first entry not delivered (nor skipped).
    cursor: u64,
    /// The next entry to read.
    read: u64,
    /// Entries below this may have been delivered before a restart.
    resend_until: u64,
    /// Matching samples read and not yet sent, with their sequence numbers.
    pending: Vec<(u64, Sample)>,
    /// Commit time (µs) of the first pending sample.
    first_commit_us: Option<i64>,
    /// The cursor last saved, and when.
    saved: (u64, Instant),
    /// The cursor the log was last pruned to.
    pruned: u64,
    /// Entries below this may be on their way (or delivered): recorded durably
    /// beside the cursor before they are sent.
    marked: u64,
}

/// A batch on its way to the destination. It is sent by the sink runtime's
/// worker thread while the loop reads the next batch from the log.
struct InFlight {
    /// The log position just past the batch: the cursor once it is passed.
    end: u64,
    task: tokio::task::JoinHandle<(Box<dyn Sink>, Outcome)>,
}

/// What became of a batch.
enum Outcome {
    /// Delivered, refused for good, or dropped for lag: the cursor moves past it.
    Passed,
    /// The sink was stopped first: the batch is sent again next time.
    Stopped,
}

/// What a batch's task needs to send it: the counters, the log's head (for
/// `max_lag`) and the stop signal.
#[derive(Clone)]
struct Sender {
    name: String,
    board: SinkBoard,
    log: SampleLog,
    max_lag: u64,
    stop: watch::Receiver<bool>,
}

fn now_us() -> i64 {
    crate::model::now_us()
}

impl Worker {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn run(mut self) {
        // The loop runs on this thread; the batch in flight on the runtime's one
        // worker thread, so that reading the next batch overlaps sending this one.
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("komlogd-sink-{}-send", self.config.name))
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(sink = self.name(), "cannot start the sink's runtime: {e}");
                return;
            }
        };
        rt.block_on(self.deliver());
    }

    fn matches(&self, s: &Sample) -> bool {
        let kind_ok = match s.value {
            Value::Datapoint(_) => self.config.datapoints,
            Value::Datasource(_) => self.config.datasources,
        };
        kind_ok
            && self
                .config
                .uris
                .iter()
                .any(|p| p.matches(&s.uri, self.me.as_deref()))
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn sender(&self) -> Sender {
        Sender {
            name: self.config.name.clone(),
            board: self.board.clone(),
            log: self.log.clone(),
            max_lag: self.config.max_lag,
            stop: self.stop.clone(),
        }
    }

    /// Save the cursor, not durably (that comes with the next durable commit).
    fn save_cursor(&self, pos: &mut Position) {
        self.save(pos, false);
    }

    /// Record durably that the entries below `end` may reach the destination
    /// before the cursor passes them (unless that is recorded already).
    fn mark(&self, pos: &mut Position, end: u64) {
        if pos.marked < end {
            pos.marked = end;
            self.save(pos, true);
        }
    }

    /// Save the cursor and the mark.
    fn save(&self, pos: &mut Position, durable: bool) {
        let sending = pos.marked.max(pos.cursor);
        match self
            .log
            .set_cursor(self.name(), pos.cursor, sending, durable)
        {
            Ok(()) => pos.saved = (pos.cursor, Instant::now()),
            Err(e) => tracing::error!(sink = self.name(), "cannot save the sink's cursor: {e}"),
        }
    }

    /// Remove the log entries every sink has passed.
    fn prune(&self, pos: &mut Position) {
        pos.pruned = pos.cursor;
        match self.log.cursors() {
            Ok(cursors) => {
                if let Some(min) = cursors.iter().map(|(_, c)| *c).min()
                    && let Err(e) = self.log.prune(min)
                {
                    tracing::warn!(sink = self.name(), "cannot prune the sample log: {e}");
                }
            }
            Err(e) => tracing::warn!(sink = self.name(), "cannot read the sink cursors: {e}"),
        }
    }

    /// Read entries from `pos.read` into `pos.pending`, the matching ones, until
    /// it holds a batch or the log's `head` is reached (nothing to do when it does
    /// already). False, with the error logged and noted, when the log cannot be read.
    fn read_more(&self, pos: &mut Position, head: u64) -> bool {
        if pos.pending.len() >= self.config.batch_size || pos.read >= head {
            return true;
        }
        match self.read_entries(pos, head) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(sink = self.name(), "cannot read the sample log: {e}");
                self.note_error(e.to_string());
                false
            }
        }
    }

    fn read_entries(&self, pos: &mut Position, head: u64) -> Result<(), StoreError> {
        let size = self.config.batch_size;
        let entries = self.log.read(pos.read, size)?;
        if entries.is_empty() {
            pos.read = head;
        }
        for e in entries {
            pos.read = e.seq + 1;
            if self.matches(&e.sample) {
                pos.first_commit_us.get_or_insert(e.commit_us);
                pos.pending.push((e.seq, e.sample));
                if pos.pending.len() >= size {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn deliver(&mut self) {
        let mut sink = Some(open(&self.config, self.board.exposition()));
        let head = self.log.head();
        let (cursor, sending) = match self.log.cursor(self.name()) {
            Ok(Some(c)) => c,
            Ok(None) => (head, head),
            Err(e) => {
                tracing::error!(
                    sink = self.name(),
                    "cannot read the sink's cursor: {e}; starting at the head"
                );
                (head, head)
            }
        };
        let mut pos = Position {
            cursor,
            read: cursor,
            resend_until: sending,
            pending: Vec::new(),
            first_commit_us: None,
            saved: (cursor, Instant::now()),
            pruned: cursor,
            marked: cursor,
        };
        let mut in_flight: Option<InFlight> = None;
        let size = self.config.batch_size;
        let age_us = self.config.batch_age.as_micros() as i64;
        while !self.stopped() {
            if let Some(flight) = in_flight.take() {
                // While the batch is on its way: read the next one, and prune what
                // the last one passed.
                self.read_more(&mut pos, self.log.head());
                if pos.pending.len() >= size {
                    // The next batch is ready: its mark's fsync overlaps this send.
                    let end = pos.read;
                    self.mark(&mut pos, end);
                }
                if pos.pruned != pos.cursor {
                    self.prune(&mut pos);
                }
                match flight.task.await {
                    Ok((s, Outcome::Passed)) => {
                        sink = Some(s);
                        pos.cursor = flight.end;
                        self.save_cursor(&mut pos);
                        if pos.pending.len() < size {
                            // No batch follows at once to prune beside.
                            self.prune(&mut pos);
                        }
                    }
                    Ok((_, Outcome::Stopped)) => break,
                    Err(e) => {
                        // The destination's code panicked: start it again, and the
                        // batch (and what was read after it) from the cursor.
                        tracing::error!(sink = self.name(), "the sink's sending task failed: {e}");
                        self.note_error(format!("the sending task failed: {e}"));
                        sink = Some(open(&self.config, self.board.exposition()));
                        pos.pending.clear();
                        pos.first_commit_us = None;
                        pos.read = pos.cursor;
                        self.pause(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            let signal = self.log.signal().notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            let head = self.log.head();
            self.drop_past_max_lag(&mut pos, head);
            if !self.read_more(&mut pos, head) {
                self.pause(Duration::from_secs(1)).await;
                continue;
            }
            let lag_us = pos.first_commit_us.map_or(0, |t| (now_us() - t).max(0));
            self.board.update(self.name(), |r| {
                r.lag_samples = head.saturating_sub(pos.cursor);
                r.lag_seconds = lag_us as f64 / 1e6;
            });
            if pos.pending.len() >= size || (!pos.pending.is_empty() && lag_us >= age_us) {
                let Some(s) = sink.take() else {
                    break;
                };
                in_flight = Some(self.send(s, &mut pos));
                continue;
            }
            if pos.pending.is_empty() && pos.read > pos.cursor {
                // Everything read so far was for other sinks: move on.
                pos.cursor = pos.read;
            }
            if pos.cursor != pos.saved.0 && pos.saved.1.elapsed() >= SAVE_EVERY {
                self.save_cursor(&mut pos);
                self.prune(&mut pos);
            }
            if pos.read < head && pos.pending.len() < size {
                continue;
            }
            let wait = match pos.first_commit_us {
                Some(_) => Duration::from_micros((age_us - lag_us).max(1_000) as u64),
                None => SAVE_EVERY,
            };
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = signal => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        if let Some(flight) = in_flight {
            // Stopped: the batch in flight is abandoned, sent again next time.
            flight.task.abort();
        }
        if pos.cursor != pos.saved.0 {
            self.save_cursor(&mut pos);
        }
    }

    fn note_error(&self, text: String) {
        self.board
            .update(self.name(), |r| r.last_error = Some(text));
    }

    /// Hand the pending batch to `sink` on the runtime's worker thread, having
    /// recorded durably that it may reach the destination.
    fn send(&self, sink: Box<dyn Sink>, pos: &mut Position) -> InFlight {
        let end = pos.read;
        // The batch may reach the destination before the cursor moves: say so first.
        self.mark(pos, end);
        let resent = pos
            .pending
            .iter()
            .filter(|(seq, _)| *seq < pos.resend_until)
            .count() as u64;
        let batch: Vec<Sample> = std::mem::take(&mut pos.pending)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        pos.first_commit_us = None;
        let task = tokio::spawn(self.sender().send(sink, batch, resent, pos.cursor));
        InFlight { end, task }
    }

    /// Skip the oldest entries when the sink is more than `max_lag` behind `head`.
    fn drop_past_max_lag(&self, pos: &mut Position, head: u64) {
        let max = self.config.max_lag;
        if head.saturating_sub(pos.cursor) <= max {
            return;
        }
        let new = head - max;
        let skipped = new - pos.cursor;
        pos.pending.retain(|(seq, _)| *seq >= new);
        pos.first_commit_us = None;
        pos.cursor = new;
        pos.read = pos.read.max(new);
        if !pos.pending.is_empty() {
            // Their commit times are not kept: send them soon.
            pos.first_commit_us = Some(0);
        }
        tracing::warn!(
            sink = self.name(),
            skipped,
            max_lag = max,
            "sink more than max_lag samples behind: the oldest are dropped"
        );
        self.board.update(self.name(), |r| r.dropped += skipped);
        self.save_cursor(pos);
    }

    /// Sleep `d`, or less if stopped.
    async fn pause(&self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }
}

impl Sender {
    /// Send `batch` (`resent` of its samples perhaps delivered before a restart;
    /// `cursor` the sink's cursor, at its start) until it is delivered, refused for
    /// good, dropped for lag, or the sink stops. Gives the sink back.
    async fn send(
        mut self,
        mut sink: Box<dyn Sink>,
        batch: Vec<Sample>,
        resent: u64,
        cursor: u64,
    ) -> (Box<dyn Sink>, Outcome) {
        let name = self.name.clone();
        let n = batch.len() as u64;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = tokio::select! {
                r = sink.send(&batch) => r,
                _ = self.stop.changed() => return (sink, Outcome::Stopped),
            };
            match result {
                Ok(()) => {
                    self.board.update(&name, |r| {
                        r.sent += n;
                        r.resent += resent;
                        r.state = "running".into();
                    });
                    return (sink, Outcome::Passed);
                }
                Err(SinkError::Permanent(e)) => {
                    tracing::error!(
                        sink = name.as_str(),
                        samples = n,
                        "batch refused for good, skipped: {e}"
                    );
                    self.board.update(&name, |r| {
                        r.last_error = Some(e);
                        r.failed += n;
                        r.state = "running".into();
                    });
                    return (sink, Outcome::Passed);
                }
                Err(SinkError::Retryable(e)) => {
                    tracing::warn!(
                        sink = name.as_str(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot send a batch: {e}"
                    );
                    self.board.update(&name, |r| {
                        r.last_error = Some(e);
                        r.retried += 1;
                        r.state = "retrying".into();
                    });
                    if self.log.head().saturating_sub(cursor) > self.max_lag {
                        self.board.update(&name, |r| r.dropped += n);
                        tracing::warn!(
                            sink = name.as_str(),
                            samples = n,
                            "sink more than max_lag samples behind: the batch is dropped"
                        );
                        return (sink, Outcome::Passed);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.changed() => return (sink, Outcome::Stopped),
                    }
                    if *self.stop.borrow() {
                        return (sink, Outcome::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
