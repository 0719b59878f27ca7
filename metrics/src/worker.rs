//! The background thread: drains the queue, sums counters per flush, batches
//! samples and sends them to the agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::wire::{Connection, SendError, WireSample};

/// Roughly the most JSON one `samples` request carries (the agent takes up to
/// 16 MiB); a batch is cut before it.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// A value as queued.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Text(String),
}

/// What the application threads send the worker.
pub(crate) enum Msg {
    /// A sample with its time (gauge, timing, event, custom).
    Sample { uri: String, ts: i64, value: Value },
    /// A counter change, summed until the next flush.
    Count { uri: String, delta: i64 },
    /// Send everything queued before this, then answer.
    Flush(SyncSender<Result<(), SendError>>),
    /// Like `Flush`, then stop.
    Stop(SyncSender<Result<(), SendError>>),
}

/// The counters the application reads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub dropped: AtomicU64,
    pub send_failures: AtomicU64,
    pub lost: AtomicU64,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
}

/// Settings the worker needs.
pub(crate) struct Settings {
    pub flush_interval: Duration,
    pub batch_size: usize,
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The state between flushes.
pub(crate) struct Aggregator {
    /// Samples waiting, in arrival order.
    pending: Vec<WireSample>,
    /// Counter sums since the last flush, by uri.
    counts: HashMap<String, i64>,
    /// The last time written per uri: two samples of one uri never share a
    /// time (the store keeps one value per uri and time), the later is moved
    /// one µs on.
    last_ts: HashMap<String, i64>,
}

impl Aggregator {
    pub fn new() -> Self {
        Aggregator {
            pending: Vec::new(),
            counts: HashMap::new(),
            last_ts: HashMap::new(),
        }
    }

    /// Take in a sample.
    pub fn sample(&mut self, uri: String, ts: i64, value: Value) {
        let ts = self.unique_ts(&uri, ts);
        let (datapoint, datasource) = match value {
            Value::Number(v) => (Some(v), None),
            Value::Text(t) => (None, Some(t)),
        };
        self.pending.push(WireSample {
            uri,
            ts,
            datapoint,
            datasource,
        });
    }

    /// Take in a counter change.
    pub fn count(&mut self, uri: String, delta: i64) {
        *self.counts.entry(uri).or_insert(0) += delta;
    }

    /// Samples waiting (counters not included).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Close the counters at `ts` (one datapoint per counter, its sum since
    /// the last flush) and take everything waiting.
    pub fn drain(&mut self, ts: i64) -> Vec<WireSample> {
        let counts: Vec<(String, i64)> = self.counts.drain().collect();
        for (uri, sum) in counts {
            self.sample(uri, ts, Value::Number(sum as f64));
        }
        std::mem::take(&mut self.pending)
    }

    fn unique_ts(&mut self, uri: &str, ts: i64) -> i64 {
        match self.last_ts.get_mut(uri) {
            Some(last) => {
                let ts = ts.max(last.saturating_add(1));
                *last = ts;
                ts
            }
            None => {
                self.last_ts.insert(uri.to_owned(), ts);
                ts
            }
        }
    }
}

/// Split `samples` into requests of at most `batch_size` samples and about
/// [`MAX_REQUEST_BYTES`], each a whole `samples […]\n` line.
pub(crate) fn requests(samples: &[WireSample], batch_size: usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = String::from("samples [");
    let mut n = 0;
    for s in samples {
        let Ok(json) = serde_json::to_string(s) else {
            continue;
        };
        if n > 0 && (n >= batch_size || line.len() + json.len() > MAX_REQUEST_BYTES) {
            line.push_str("]\n");
            out.push((std::mem::replace(&mut line, String::from("samples [")), n));
            n = 0;
        }
        if n > 0 {
            line.push(',');
        }
        line.push_str(&json);
        n += 1;
    }
    if n > 0 {
        line.push_str("]\n");
        out.push((line, n));
    }
    out
}

/// The worker thread's loop.
pub(crate) fn run(
    rx: Receiver<Msg>,
    mut conn: Connection,
    settings: Settings,
    counters: Arc<Counters>,
) {
    let mut agg = Aggregator::new();
    let mut next_flush = Instant::now() + settings.flush_interval;
    let mut failing = false;
    // A batch that did not reach the agent: counted, dropped, logged once
    // until the agent answers again.
    let fail_counters = Arc::clone(&counters);
    let fail = move |failing: &mut bool, n: usize, e: &SendError| {
        fail_counters.send_failures.fetch_add(1, Ordering::Relaxed);
        fail_counters.lost.fetch_add(n as u64, Ordering::Relaxed);
        if !*failing {
            tracing::warn!("komlog metrics: {e}; samples are dropped until it answers");
            *failing = true;
        }
    };
    let mut send = |agg: &mut Aggregator| -> Result<(), SendError> {
        let samples = agg.drain(now_us());
        if samples.is_empty() {
            return Ok(());
        }
        if let Err(e) = conn.ready() {
            fail(&mut failing, samples.len(), &e);
            return Err(e);
        }
        let mut result = Ok(());
        for (line, n) in requests(&samples, settings.batch_size) {
            match conn.send(&line) {
                Ok(answer) => {
                    if failing {
                        tracing::info!("komlog metrics: the agent takes samples again");
                        failing = false;
                    }
                    let rejected = answer.rejected.len() as u64;
                    counters
                        .sent
                        .fetch_add(answer.accepted as u64, Ordering::Relaxed);
                    counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                    if let Some(r) = answer.rejected.first() {
                        tracing::warn!(
                            "komlog metrics: the agent refused {rejected} samples, e.g. {}: {}",
                            r.uri,
                            r.reason
                        );
                    }
                }
                Err(e) => {
                    fail(&mut failing, n, &e);
                    result = Err(e);
                }
            }
        }
        result
    };
    loop {
        let wait = next_flush.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Sample { uri, ts, value }) => {
                agg.sample(uri, ts, value);
                if agg.pending() >= settings.batch_size {
                    let _ = send(&mut agg);
                }
            }
            Ok(Msg::Count { uri, delta }) => agg.count(uri, delta),
            Ok(Msg::Flush(reply)) => {
                let _ = reply.try_send(send(&mut agg));
                next_flush = Instant::now() + settings.flush_interval;
            }
            Ok(Msg::Stop(reply)) => {
                let _ = reply.try_send(send(&mut agg));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = send(&mut agg);
                next_flush = Instant::now() + settings.flush_interval;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = send(&mut agg);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_per_flush() {
        let mut agg = Aggregator::new();
        for _ in 0..5 {
            agg.count("hits".into(), 1);
        }
        agg.count("hits".into(), -2);
        agg.count("misses".into(), 1);
        let mut out = agg.drain(1_000);
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].uri.as_str(), out[0].datapoint), ("hits", Some(3.0)));
        assert_eq!(
            (out[1].uri.as_str(), out[1].datapoint),
            ("misses", Some(1.0))
        );
        // The next flush starts from zero: nothing counted, nothing sent.
        assert!(agg.drain(2_000).is_empty());
        agg.count("hits".into(), 1);
        let out = agg.drain(3_000);
        assert_eq!(out[0].datapoint, Some(1.0));
        assert_eq!(out[0].ts, 3_000);
    }

    #[test]
    fn one_uri_never_repeats_a_time() {
        let mut agg = Aggregator::new();
        agg.sample("t".into(), 10, Value::Number(1.0));
        agg.sample("t".into(), 10, Value::Number(2.0));
        agg.sample("t".into(), 5, Value::Number(3.0));
        agg.sample("u".into(), 10, Value::Text("x".into()));
        let out = agg.drain(0);
        let ts: Vec<(&str, i64)> = out.iter().map(|s| (s.uri.as_str(), s.ts)).collect();
        assert_eq!(ts, [("t", 10), ("t", 11), ("t", 12), ("u", 10)]);
        assert_eq!(out[3].datasource.as_deref(), Some("x"));
        // A counter closed at a time its uri already used moves on too.
        agg.count("t".into(), 1);
        assert_eq!(agg.drain(12)[0].ts, 13);
    }

    #[test]
    fn requests_are_cut_by_count() {
        let samples: Vec<WireSample> = (0..25)
            .map(|i| WireSample {
                uri: "a".into(),
                ts: i,
                datapoint: Some(i as f64),
                datasource: None,
            })
            .collect();
        let reqs = requests(&samples, 10);
        let counts: Vec<usize> = reqs.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [10, 10, 5]);
        for (line, n) in &reqs {
            let body = line
                .strip_prefix("samples ")
                .and_then(|l| l.strip_suffix('\n'))
                .expect("a samples line");
            let parsed: Vec<serde_json::Value> = serde_json::from_str(body).expect("json");
            assert_eq!(parsed.len(), *n);
        }
        assert!(
            reqs[0]
                .0
                .starts_with("samples [{\"uri\":\"a\",\"ts\":0,\"datapoint\":0.0},"),
            "{}",
            reqs[0].0
        );
        assert!(requests(&[], 10).is_empty());
    }
}
