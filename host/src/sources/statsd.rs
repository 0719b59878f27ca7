//! The StatsD listener: StatsD (and DogStatsD) lines over UDP, aggregated
//! per flush interval and written as datapoints.
//!
//! A packet holds one or more lines `name:value|type[|@rate][|#tag:v,tag2]`
//! separated by newlines. Types:
//!
//! - `c` counter: the values (each divided by its sample rate) are summed;
//!   each flush writes one datapoint of the sum at the metric's uri (a counter
//!   with no line since the previous flush writes nothing);
//! - `g` gauge: the last value; `+N` and `-N` change the value held (from 0
//!   for a new gauge). A flush writes the value of every gauge that got a
//!   line since the previous one;
//! - `ms`, `h`, `d` timer, histogram, distribution: a flush writes
//!   `<name>.count` (lines, divided by their sample rates), `.mean`, `.min`,
//!   `.max`, `.p50`, `.p90` and `.p99` (nearest rank over the first 65,536
//!   values of the interval);
//! - `s` set: a flush writes the number of distinct values seen (at most
//!   65,536 are told apart).
//!
//! Names and DogStatsD tags become uris by the naming rule of the application
//! metrics clients ([`komlog_metrics::uri`]); a timer's statistic goes after
//! the name and before the tags (`db.query.p99.host_a`); the configured
//! `prefix` goes first. Every datapoint of a flush has the flush's time.
//! DogStatsD's container (`|c:…`) and timestamp (`|T…`) fields are ignored.
//!
//! One thread receives and aggregates; a flush hands the interval's samples
//! to a second thread that stores them through the inbox, so a slow commit
//! does not stop the socket being read. Bad lines are counted
//! ([`ListenerStats`]) and never stop the listener.

use std::collections::{HashMap, HashSet};
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::listen::{BadKind, BadLine, ListenerStats, MAX_URI_BYTES, prefixed};
use crate::config::StatsdConfig;
use crate::impulses::Inbox;
use crate::model::{Sample, Value, now_us};

/// The longest line taken.
pub const MAX_LINE_BYTES: usize = 8192;
/// The most values of one timer kept per interval for its percentiles.
const MAX_TIMER_VALUES: usize = 65_536;
/// The most distinct values of one set told apart per interval.
const MAX_SET_VALUES: usize = 65_536;
/// How often the receiving thread looks at the shutdown signal.
const POLL: Duration = Duration::from_millis(50);
/// The receive buffer asked of the kernel (it may grant less).
const RECV_BUFFER_BYTES: libc::c_int = 8 << 20;
/// Flushes that may wait for the storing thread.
const PENDING_FLUSHES: usize = 16;

/// A StatsD metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `c`.
    Counter,
    /// `g`.
    Gauge,
    /// `ms`, `h` or `d`.
    Timer,
    /// `s`.
    Set,
}

/// One parsed line, borrowing from the packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// The metric name as sent.
    pub name: &'a str,
    /// The value as sent (a number, `+N`/`-N` for a gauge, any text for a set).
    pub value: &'a str,
    /// Its type.
    pub kind: MetricType,
    /// The sample rate, in (0, 1].
    pub rate: f64,
    /// DogStatsD tags (`key:value`, or `flag` as `(flag, "")`).
    pub tags: Vec<(&'a str, &'a str)>,
}

/// Parse one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, BadLine> {
    if line.len() > MAX_LINE_BYTES {
        return Err(BadLine::new(
            BadKind::TooLong,
            format!("line of {} bytes, over {MAX_LINE_BYTES}", line.len()),
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| BadLine::new(BadKind::Syntax, "not UTF-8"))?;
    let Some((name, rest)) = text.split_once(':') else {
        return Err(BadLine::new(BadKind::Syntax, "expected name:value|type"));
    };
    let mut parts = rest.split('|');
    let value = parts.next().unwrap_or_default();
    let kind = match parts.next() {
        Some("c") => MetricType::Counter,
        Some("g") => MetricType::Gauge,
        Some("ms" | "h" | "d") => MetricType::Timer,
        Some("s") => MetricType::Set,
        Some(other) => {
            return Err(BadLine::new(
                BadKind::Syntax,
                format!("unknown type {other:?} (c, g, ms, h, d or s)"),
            ));
        }
        None => return Err(BadLine::new(BadKind::Syntax, "expected name:value|type")),
    };
    let mut rate = 1.0;
    let mut tags = Vec::new();
    for part in parts {
        if let Some(r) = part.strip_prefix('@') {
            rate = match r.parse::<f64>() {
                Ok(r) if r > 0.0 && r <= 1.0 => r,
                _ => {
                    return Err(BadLine::new(
                        BadKind::Value,
                        format!("sample rate {r:?} is not a number in (0, 1]"),
                    ));
                }
            };
        } else if let Some(t) = part.strip_prefix('#') {
            tags.extend(
                t.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.split_once(':').unwrap_or((t, ""))),
            );
        } else if part.starts_with("c:") || part.starts_with('T') {
            // DogStatsD's container id and timestamp: not used.
        } else {
            return Err(BadLine::new(
                BadKind::Syntax,
                format!("unknown field {part:?}"),
            ));
        }
    }
    if name.is_empty() {
        return Err(BadLine::new(BadKind::Uri, "empty metric name"));
    }
    if name.len() > MAX_URI_BYTES {
        return Err(BadLine::new(
            BadKind::Uri,
            format!("metric name of {} bytes, over {MAX_URI_BYTES}", name.len()),
        ));
    }
    if value.is_empty() {
        return Err(BadLine::new(BadKind::Value, "empty value"));
    }
    Ok(Line {
        name,
        value,
        kind,
        rate,
        tags,
    })
}

/// A finite number, or a bad value.
fn number(text: &str) -> Result<f64, BadLine> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(BadLine::new(
            BadKind::Value,
            format!("{text:?} is not a finite number"),
        )),
    }
}

/// The aggregate of one uri over an interval.
#[derive(Debug)]
enum Agg {
    Counter(f64),
    Gauge { value: f64, touched: bool },
    Timer(Box<Timer>),
    Set(HashSet<String>),
}

#[derive(Debug)]
struct Timer {
    /// Where the name ends in the uri: the statistic goes there.
    split: usize,
    count: f64,
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
    values: Vec<f64>,
}

impl Agg {
    fn kind(&self) -> MetricType {
        match self {
            Agg::Counter(_) => MetricType::Counter,
            Agg::Gauge { .. } => MetricType::Gauge,
            Agg::Timer(_) => MetricType::Timer,
            Agg::Set(_) => MetricType::Set,
        }
    }
}

/// The metrics of one interval, by uri. Gauges are kept across flushes (for
/// `+N`/`-N`); the rest start again after each flush.
#[derive(Debug, Default)]
pub struct Aggregator {
    prefix: Option<String>,
    map: HashMap<String, Agg>,
}

impl Aggregator {
    /// An empty aggregator putting `prefix` (a uri) before every uri.
    pub fn new(prefix: Option<String>) -> Self {
        Aggregator {
            prefix,
            map: HashMap::new(),
        }
    }

    /// Parse `line` and add it.
    pub fn add(&mut self, line: &[u8]) -> Result<(), BadLine> {
        let line = parse_line(line)?;
        let uri = prefixed(
            self.prefix.as_deref(),
            komlog_metrics::uri(line.name, &line.tags),
        );
        if uri.len() > MAX_URI_BYTES {
            return Err(BadLine::new(
                BadKind::Uri,
                format!("uri of {} bytes, over {MAX_URI_BYTES}", uri.len()),
            ));
        }
        // Check the value before touching the map.
        let parsed = match line.kind {
            MetricType::Set => 0.0,
            MetricType::Gauge => number(line.value.trim_start_matches('+'))?,
            _ => number(line.value)?,
        };
        let relative = line.kind == MetricType::Gauge
            && (line.value.starts_with('+') || line.value.starts_with('-'));
        if let Some(agg) = self.map.get_mut(&uri) {
            if agg.kind() != line.kind {
                return Err(BadLine::new(
                    BadKind::Value,
                    format!("{uri} already has lines of another type"),
                ));
            }
            update(agg, &line, parsed, relative);
            return Ok(());
        }
        let mut agg = match line.kind {
            MetricType::Counter => Agg::Counter(0.0),
            MetricType::Gauge => Agg::Gauge {
                value: 0.0,
                touched: false,
            },
            MetricType::Timer => {
                let name_len = komlog_metrics::uri(line.name, &[]).len();
                let split = self.prefix.as_ref().map_or(0, |p| p.len() + 1) + name_len;
                Agg::Timer(Box::new(Timer {
                    split,
                    count: 0.0,
                    n: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    values: Vec::new(),
                }))
            }
            MetricType::Set => Agg::Set(HashSet::new()),
        };
        update(&mut agg, &line, parsed, relative);
        self.map.insert(uri, agg);
        Ok(())
    }

    /// The samples of the interval, at `ts`; the interval starts again.
    pub fn flush(&mut self, ts: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        let point = |out: &mut Vec<Sample>, uri: String, v: f64| {
            if v.is_finite() {
                out.push(Sample {
                    uri,
                    ts,
                    value: Value::Datapoint(v),
                });
            }
        };
        self.map.retain(|uri, agg| match agg {
            Agg::Counter(sum) => {
                point(&mut out, uri.clone(), *sum);
                false
            }
            Agg::Gauge { value, touched } => {
                if *touched {
                    point(&mut out, uri.clone(), *value);
                    *touched = false;
                }
                true
            }
            Agg::Set(values) => {
                point(&mut out, uri.clone(), values.len() as f64);
                false
            }
            Agg::Timer(t) => {
                t.values.sort_unstable_by(f64::total_cmp);
                let rank = |p: f64| {
                    let n = t.values.len();
                    let i = ((p * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
                    t.values.get(i).copied().unwrap_or(f64::NAN)
                };
                let stats = [
                    ("count", t.count),
                    ("mean", t.sum / t.n.max(1) as f64),
                    ("min", t.min),
                    ("max", t.max),
                    ("p50", rank(0.5)),
                    ("p90", rank(0.9)),
                    ("p99", rank(0.99)),
                ];
                let (name, tags) = uri.split_at(t.split.min(uri.len()));
                for (stat, v) in stats {
                    point(&mut out, format!("{name}.{stat}{tags}"), v);
                }
                false
            }
        });
        out
    }
}

fn update(agg: &mut Agg, line: &Line<'_>, parsed: f64, relative: bool) {
    match agg {
        Agg::Counter(sum) => *sum += parsed / line.rate,
        Agg::Gauge { value, touched } => {
            *value = if relative { *value + parsed } else { parsed };
            *touched = true;
        }
        Agg::Timer(t) => {
            t.count += 1.0 / line.rate;
            t.n += 1;
            t.sum += parsed;
            t.min = t.min.min(parsed);
            t.max = t.max.max(parsed);
            if t.values.len() < MAX_TIMER_VALUES {
                t.values.push(parsed);
            }
        }
        Agg::Set(values) => {
            if values.len() < MAX_SET_VALUES && !values.contains(line.value) {
                values.insert(line.value.to_owned());
            }
        }
    }
}

/// Feed every line of `packet` to `agg`, counting lines and bad ones.
pub fn feed(agg: &mut Aggregator, packet: &[u8], stats: &ListenerStats) {
    let mut lines = 0;
    for line in packet.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if let Err(bad) = agg.add(line) {
            stats.bad(&bad, line);
        }
    }
    stats.add_lines(lines);
}

/// Bind the listener's UDP socket (with a large receive buffer when the
/// kernel grants it).
pub fn bind(config: &StatsdConfig) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(config.listen)?;
    grow_receive_buffer(&socket);
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size = RECV_BUFFER_BYTES;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "statsd: cannot grow the receive buffer: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A running StatsD listener: its receiving and storing threads.
pub struct StatsdListener {
    receiver: JoinHandle<()>,
    storer: JoinHandle<()>,
}

impl StatsdListener {
    /// Serve `socket` until `shutdown` turns true; the last interval is
    /// flushed and stored before the threads end.
    pub fn start(
        socket: UdpSocket,
        config: &StatsdConfig,
        inbox: Inbox,
        stats: Arc<ListenerStats>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<StatsdListener> {
        let (tx, rx) = mpsc::sync_channel::<Vec<Sample>>(PENDING_FLUSHES);
        let store_stats = Arc::clone(&stats);
        let storer = std::thread::Builder::new()
            .name("komlogd-statsd-store".into())
            .spawn(move || {
                while let Ok(samples) = rx.recv() {
                    if store_stats.ingest(&inbox, samples).is_err() {
                        tracing::warn!("statsd: the agent is stopping; samples dropped");
                        break;
                    }
                }
            })?;
        let flush = config.flush;
        let prefix = config.prefix.clone();
        let receiver = std::thread::Builder::new()
            .name("komlogd-statsd".into())
            .spawn(move || receive(socket, flush, prefix, &stats, tx, shutdown))?;
        Ok(StatsdListener { receiver, storer })
    }

    /// Wait for both threads to end (after the shutdown signal).
    pub fn join(self) {
        let _ = self.receiver.join();
        let _ = self.storer.join();
    }
}

fn receive(
    socket: UdpSocket,
    flush: Duration,
    prefix: Option<String>,
    stats: &ListenerStats,
    tx: mpsc::SyncSender<Vec<Sample>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut agg = Aggregator::new(prefix);
    let mut buf = vec![0u8; 65_536];
    let mut next_flush = Instant::now() + flush;
    let mut next_poll = Instant::now() + POLL;
    let mut error_logged = false;
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => feed(&mut agg, &buf[..n], stats),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                if !error_logged {
                    tracing::warn!("statsd: receive failed: {e}");
                    error_logged = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let now = Instant::now();
        let stopping = now >= next_poll && {
            next_poll = now + POLL;
            *shutdown.borrow()
        };
        if now >= next_flush || stopping {
            let samples = agg.flush(now_us());
            if !samples.is_empty() && tx.send(samples).is_err() {
                break;
            }
            next_flush = (next_flush + flush).max(now);
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(samples: &[Sample]) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = samples
            .iter()
            .map(|s| match s.value {
                Value::Datapoint(d) => (s.uri.clone(), d),
                _ => panic!("text"),
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn kind_of(line: &str) -> BadKind {
        parse_line(line.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn parses_lines() {
        let l = parse_line(b"req.count:3|c|@0.5|#host:web-1,canary").unwrap();
        assert_eq!(l.name, "req.count");
        assert_eq!(l.value, "3");
        assert_eq!(l.kind, MetricType::Counter);
        assert_eq!(l.rate, 0.5);
        assert_eq!(l.tags, vec![("host", "web-1"), ("canary", "")]);
        assert_eq!(parse_line(b"t:1.5|ms").unwrap().kind, MetricType::Timer);
        assert_eq!(
            parse_line(b"t:1.5|d|c:abc|T1700000000").unwrap().kind,
            MetricType::Timer
        );
        assert_eq!(parse_line(b"u:joe|s").unwrap().value, "joe");
    }

    #[test]
    fn bad_lines_by_kind() {
        assert_eq!(kind_of("garbage"), BadKind::Syntax);
        assert_eq!(kind_of("a:1"), BadKind::Syntax);
        assert_eq!(kind_of("a:1|x"), BadKind::Syntax);
        assert_eq!(kind_of("a:1|c|zz"), BadKind::Syntax);
        assert_eq!(kind_of("a:1|c|@2"), BadKind::Value);
        assert_eq!(kind_of("a:1|c|@x"), BadKind::Value);
        assert_eq!(kind_of("a:|c"), BadKind::Value);
        assert_eq!(kind_of(":1|c"), BadKind::Uri);
        assert_eq!(kind_of(&format!("{}:1|c", "a".repeat(600))), BadKind::Uri);
        assert_eq!(
            kind_of(&format!("a:1|c|#{}", "t".repeat(9000))),
            BadKind::TooLong
        );
        assert_eq!(parse_line(b"\xff:1|c").unwrap_err().kind, BadKind::Syntax);
        let mut agg = Aggregator::new(None);
        for bad in ["a:x|c", "a:nan|g", "a:inf|ms", "a:1e999|c"] {
            assert_eq!(
                agg.add(bad.as_bytes()).unwrap_err().kind,
                BadKind::Value,
                "{bad}"
            );
        }
        agg.add(b"a:1|c").unwrap();
        assert_eq!(agg.add(b"a:1|g").unwrap_err().kind, BadKind::Value);
    }

    #[test]
    fn aggregates_per_flush() {
        let mut agg = Aggregator::new(None);
        for line in [
            "hits:1|c",
            "hits:2|c",
            "hits:1|c|@0.1",
            "temp:20|g",
            "temp:+5|g",
            "temp:-2|g",
            "users:a|s",
            "users:b|s",
            "users:a|s",
            "req:1|c|#route:/a,host:web-1",
        ] {
            agg.add(line.as_bytes()).unwrap();
        }
        for v in 1..=100 {
            agg.add(format!("lat:{v}|ms").as_bytes()).unwrap();
        }
        let got = values(&agg.flush(1));
        let want = [
            ("hits", 13.0),
            ("lat.count", 100.0),
            ("lat.max", 100.0),
            ("lat.mean", 50.5),
            ("lat.min", 1.0),
            ("lat.p50", 50.0),
            ("lat.p90", 90.0),
            ("lat.p99", 99.0),
            ("req.host_web-1.route__a", 1.0),
            ("temp", 23.0),
            ("users", 2.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((u, v), (wu, wv)) in got.iter().zip(want) {
            assert_eq!(u, wu);
            assert!((v - wv).abs() < 1e-9, "{u}: {v} != {wv}");
        }
        // The next interval: only the gauge survives, and only when touched.
        assert!(agg.flush(2).is_empty());
        agg.add(b"temp:+1|g").unwrap();
        assert_eq!(values(&agg.flush(3)), vec![("temp".to_owned(), 24.0)]);
    }

    #[test]
    fn timers_put_the_statistic_before_the_tags_and_prefix_first() {
        let mut agg = Aggregator::new(Some("app".into()));
        agg.add(b"db query:4|ms|#host:a").unwrap();
        let uris: Vec<String> = values(&agg.flush(1)).into_iter().map(|(u, _)| u).collect();
        assert!(
            uris.contains(&"app.db_query.p99.host_a".to_owned()),
            "{uris:?}"
        );
        assert!(
            uris.contains(&"app.db_query.count.host_a".to_owned()),
            "{uris:?}"
        );
    }

    #[test]
    fn feed_counts_lines_and_keeps_going() {
        let stats = ListenerStats::new("statsd");
        let mut agg = Aggregator::new(None);
        feed(&mut agg, b"a:1|c\ngarbage\n:1|c\r\nb:x|g\n\na:2|c", &stats);
        let r = stats.report();
        assert_eq!(
            (r.lines, r.bad_syntax, r.bad_uri, r.bad_value),
            (5, 1, 1, 1)
        );
        assert_eq!(values(&agg.flush(1)), vec![("a".to_owned(), 3.0)]);
    }
}
