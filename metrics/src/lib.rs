//! Application metrics for komlog, with Kaneda's API: an application calls
//! [`Metrics::gauge`], [`Metrics::increment`], [`Metrics::decrement`],
//! [`Metrics::timing`], [`Metrics::event`], [`Metrics::custom`] and
//! [`Metrics::timed`], and the measurements reach the local komlogd agent,
//! which stores them as ordinary samples (validated, stored, firing impulses,
//! forwarded to the server).
//!
//! ```no_run
//! use std::time::Duration;
//! use komlog_metrics::Metrics;
//!
//! # fn main() -> Result<(), komlog_metrics::Error> {
//! let metrics = Metrics::new("/etc/komlogd/komlogd.sock")?;
//! metrics.gauge("queue.depth", 42.0, &[("queue", "mail")]);
//! metrics.increment("requests", &[("status", "200")]);
//! metrics.timing("db.query", Duration::from_micros(1500), &[]);
//! metrics.event("deploys", "v1.2.3 rolled out", &[]);
//! {
//!     let _t = metrics.timed("handler", &[]); // a timing when it drops
//! }
//! let answer = metrics.time("parse", &[], || 6 * 7);
//! metrics.flush(Duration::from_secs(2))?; // optional: Drop flushes too
//! # Ok(()) }
//! ```
//!
//! # What reaches the agent
//!
//! Each metric is one uri (see [`uri`] for the naming rule, the same as the
//! Python package `komlog_metrics`):
//!
//! - `gauge(name, v)`: a datapoint `v` at the time of the call;
//! - `increment` / `decrement`: counters are summed per flush, and each flush
//!   writes one datapoint per counter whose value is the sum of its changes
//!   since the previous flush (a counter nobody touched writes nothing);
//! - `timing(name, t)`: a datapoint, `t` in milliseconds;
//! - `event(name, text)`: a datasource sample `text`;
//! - `custom(name, metric, v)`: a datapoint or datasource at uri `name.metric`.
//!
//! A uri keeps the kind of its first sample (the agent refuses a text at a
//! uri holding numbers), so an event's name must not be a gauge's. Two
//! samples of one uri never share a time: the later is moved on by 1 µs.
//!
//! # Never blocking the application
//!
//! A call builds the uri, takes the time and puts the measurement on a
//! bounded in-process queue ([`Builder::queue_capacity`]); a background
//! thread drains it, sends a batch every [`Builder::flush_interval`] (1 s by
//! default) or whenever [`Builder::batch_size`] samples wait, as `samples`
//! requests on one kept-open connection to the agent's control socket. When
//! the queue is full the measurement is dropped and counted
//! ([`Metrics::dropped`]): the call never waits.
//!
//! When the agent is down (no socket, or it does not answer within
//! [`Builder::io_timeout`]), the batch is **dropped, not kept**: the failure
//! is counted ([`Metrics::send_failures`], and its samples in
//! [`Metrics::lost`]), logged once through `tracing` until the agent answers
//! again, and the next flush tries again with new samples. Memory stays
//! bounded by the queue and one batch; the application's calls are not
//! slowed and nothing panics.

mod naming;
mod wire;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub use naming::{custom_uri, uri};
pub use wire::SendError;
use worker::{Counters, Msg, Settings};

/// The environment variable naming the agent's socket ([`Metrics::from_env`]).
pub const SOCKET_ENV: &str = "KOMLOGD_SOCKET";

/// Why a [`Metrics`] could not start or flush.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The background thread could not be started.
    #[error("cannot start the metrics thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// [`SOCKET_ENV`] is not set.
    #[error("{SOCKET_ENV} is not set: give the path of the agent's komlogd.sock")]
    NoSocket,
    /// A flush did not finish in time (the queue stayed full, or the agent
    /// was slow to answer).
    #[error("the flush did not finish within {0:?}")]
    FlushTimeout(Duration),
    /// The background thread has stopped.
    #[error("the metrics thread has stopped")]
    Stopped,
    /// The batch did not reach the agent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A measured value for [`Metrics::custom`]: a number (a datapoint) or a
/// text (a datasource sample).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A datapoint.
    Number(f64),
    /// A datasource sample.
    Text(String),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Number(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Number(v as f64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

/// A duration for [`Metrics::timing`]: a [`Duration`], or milliseconds as a
/// number.
pub trait Millis {
    /// The value in milliseconds.
    fn millis(self) -> f64;
}

impl Millis for Duration {
    fn millis(self) -> f64 {
        self.as_secs_f64() * 1000.0
    }
}

impl Millis for f64 {
    fn millis(self) -> f64 {
        self
    }
}

impl Millis for u64 {
    fn millis(self) -> f64 {
        self as f64
    }
}

impl Millis for u32 {
    fn millis(self) -> f64 {
        f64::from(self)
    }
}

impl Millis for i64 {
    fn millis(self) -> f64 {
        self as f64
    }
}

impl Millis for i32 {
    fn millis(self) -> f64 {
        f64::from(self)
    }
}

/// Settings of a [`Metrics`]; start with [`Metrics::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    socket: PathBuf,
    queue_capacity: usize,
    flush_interval: Duration,
    batch_size: usize,
    io_timeout: Duration,
    drop_timeout: Duration,
}

impl Builder {
    /// How many measurements may wait in the queue (default 10,000); more
    /// are dropped and counted.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// How often the background thread sends what waits (default 1 s).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// The most samples per `samples` request (default 1,000; at most 10,000,
    /// the agent's bound). A flush sends as many requests as it needs.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.clamp(1, 10_000);
        self
    }

    /// How long the background thread waits for the agent to take or answer
    /// a request (default 10 s). The application never waits for it.
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.io_timeout = d;
        self
    }

    /// How long dropping the [`Metrics`] waits for its last flush (default 2 s).
    pub fn drop_timeout(mut self, d: Duration) -> Self {
        self.drop_timeout = d;
        self
    }

    /// Start the background thread.
    pub fn build(self) -> Result<Metrics, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(self.queue_capacity);
        let counters = Arc::new(Counters::default());
        let conn = wire::Connection::new(self.socket, self.io_timeout);
        let settings = Settings {
            flush_interval: self.flush_interval,
            batch_size: self.batch_size,
        };
        let shared = Arc::clone(&counters);
        let worker = std::thread::Builder::new()
            .name("komlog-metrics".into())
            .spawn(move || worker::run(rx, conn, settings, shared))
            .map_err(Error::Spawn)?;
        Ok(Metrics {
            tx,
            counters,
            worker: Some(worker),
            drop_timeout: self.drop_timeout,
        })
    }
}

/// The metrics client: cheap calls that queue measurements for the agent.
/// Share it between threads by reference or in an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    worker: Option<std::thread::JoinHandle<()>>,
    drop_timeout: Duration,
}

impl Metrics {
    /// A client of the agent whose control socket is `socket` (the
    /// `komlogd.sock` beside its komlogd.yaml), with the default settings.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Metrics, Error> {
        Self::builder(socket).build()
    }

    /// A client of the socket named by `KOMLOGD_SOCKET`.
    pub fn from_env() -> Result<Metrics, Error> {
        let socket = std::env::var_os(SOCKET_ENV).ok_or(Error::NoSocket)?;
        Self::new(socket)
    }

    /// Settings for a client of `socket`.
    pub fn builder(socket: impl Into<PathBuf>) -> Builder {
        Builder {
            socket: socket.into(),
            queue_capacity: 10_000,
            flush_interval: Duration::from_secs(1),
            batch_size: 1_000,
            io_timeout: Duration::from_secs(10),
            drop_timeout: Duration::from_secs(2),
        }
    }

    fn queue(&self, msg: Msg) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(msg) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sample(&self, uri: String, value: worker::Value) {
        let ts = worker::now_us();
        self.queue(Msg::Sample { uri, ts, value });
    }

    /// Record `value` as the current value of `name`.
    ///
    /// ```no_run
    /// # let metrics = komlog_metrics::Metrics::new("komlogd.sock").unwrap();
    /// metrics.gauge("memory.rss_mb", 312.5, &[("process", "web")]);
    /// ```
    pub fn gauge(&self, name: &str, value: f64, tags: &[(&str, &str)]) {
        self.sample(uri(name, tags), worker::Value::Number(value));
    }

    /// Add 1 to the counter `name`.
    pub fn increment(&self, name: &str, tags: &[(&str, &str)]) {
        self.count(name, 1, tags);
    }

    /// Take 1 from the counter `name`.
    pub fn decrement(&self, name: &str, tags: &[(&str, &str)]) {
        self.count(name, -1, tags);
    }

    /// Add `delta` to the counter `name`.
    pub fn count(&self, name: &str, delta: i64, tags: &[(&str, &str)]) {
        self.queue(Msg::Count {
            uri: uri(name, tags),
            delta,
        });
    }

    /// Record a duration, in milliseconds: a [`Duration`] or a number of ms.
    ///
    /// ```no_run
    /// # let metrics = komlog_metrics::Metrics::new("komlogd.sock").unwrap();
    /// metrics.timing("db.query", std::time::Duration::from_millis(12), &[]);
    /// metrics.timing("db.query", 12.5, &[]);
    /// ```
    pub fn timing(&self, name: &str, value: impl Millis, tags: &[(&str, &str)]) {
        self.sample(uri(name, tags), worker::Value::Number(value.millis()));
    }

    /// Record a text (a datasource sample) at `name`.
    pub fn event(&self, name: &str, text: &str, tags: &[(&str, &str)]) {
        self.sample(uri(name, tags), worker::Value::Text(text.to_owned()));
    }

    /// Record a number or a text at `name.metric` (Kaneda's `custom`; its
    /// `id_` has no komlog counterpart: the uri and the time identify a
    /// sample).
    pub fn custom(&self, name: &str, metric: &str, value: impl Into<Value>, tags: &[(&str, &str)]) {
        let value = match value.into() {
            Value::Number(v) => worker::Value::Number(v),
            Value::Text(t) => worker::Value::Text(t),
        };
        self.sample(custom_uri(name, metric, tags), value);
    }

    /// A guard that records, when it drops, the time since this call as a
    /// timing of `name`.
    ///
    /// ```no_run
    /// # let metrics = komlog_metrics::Metrics::new("komlogd.sock").unwrap();
    /// {
    ///     let _timer = metrics.timed("request", &[("route", "/")]);
    ///     // … the work being timed …
    /// }
    /// ```
    pub fn timed(&self, name: &str, tags: &[(&str, &str)]) -> Timed<'_> {
        Timed {
            metrics: self,
            uri: uri(name, tags),
            start: Instant::now(),
        }
    }

    /// Run `f` and record its duration as a timing of `name`.
    pub fn time<R>(&self, name: &str, tags: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
        let _timer = self.timed(name, tags);
        f()
    }

    /// Send everything queued so far and wait (at most `timeout`) until the
    /// agent has answered. Other threads' calls go on meanwhile.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.ask(timeout, Msg::Flush)
    }

    fn ask(
        &self,
        timeout: Duration,
        msg: impl Fn(SyncSender<Result<(), SendError>>) -> Msg,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let mut pending = msg(reply);
        // The queue may be full: try again until the deadline, 1 ms apart.
        loop {
            match self.tx.try_send(pending) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return Err(Error::Stopped),
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::FlushTimeout(timeout));
                    }
                    pending = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result.map_err(Error::Send),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::FlushTimeout(timeout)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Stopped),
        }
    }

    /// Measurements dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Batches that did not reach the agent (down, or not answering); while
    /// nothing answers on the socket, one per attempt to send.
    pub fn send_failures(&self) -> u64 {
        self.counters.send_failures.load(Ordering::Relaxed)
    }

    /// Samples in those failed requests, dropped.
    pub fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    /// Samples the agent accepted.
    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Samples the agent refused (a uri of the other kind, a value out of
    /// range); each refusal is logged.
    pub fn rejected(&self) -> u64 {
        self.counters.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for Metrics {
    /// Send what is queued (waiting at most [`Builder::drop_timeout`]) and
    /// stop the background thread; a thread still busy after that is left to
    /// finish on its own.
    fn drop(&mut self) {
        // An answer, even a failed send, means the thread has stopped.
        if let Ok(()) | Err(Error::Send(_)) = self.ask(self.drop_timeout, Msg::Stop)
            && let Some(worker) = self.worker.take()
        {
            let _ = worker.join();
        }
    }
}

/// Records a timing when dropped; see [`Metrics::timed`].
#[must_use = "the timing is recorded when the guard drops"]
pub struct Timed<'a> {
    metrics: &'a Metrics,
    uri: String,
    start: Instant,
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        let ms = self.start.elapsed().millis();
        self.metrics
            .sample(std::mem::take(&mut self.uri), worker::Value::Number(ms));
    }
}
