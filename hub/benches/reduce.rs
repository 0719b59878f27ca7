//! komlog-hub benchmark: reducing a range of a large datapoint metric to plot
//! columns ([`HubStore::reduce`], served from the rollup tiers) against reading
//! the same range's raw rows ([`HubStore::read_oldest`]), in the same run.
//!
//! One metric of 10,000,000 datapoints, one a second, written in batches of
//! 200,000 samples, then ranges of an hour, a day, 30 days and the whole span
//! (ending at the newest sample) reduced to 2,000 columns. Printed: p50 and
//! p99 over 30 reductions, the answer's size as JSON, and the raw read's
//! time and size with the ratio of the two.
//!
//! Run with `cargo bench -p komlog-hub --bench reduce`. Set
//! `KOMLOG_HUB_BENCH_SAMPLES` for another sample count (e.g. 1000000 for a
//! short run).

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{HubStore, NewSample, Reduced};
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use serde::ser::{Serialize, Serializer};

const COLUMNS: u32 = 2_000;
const RUNS: usize = 30;
const BATCH: u64 = 200_000;

/// Median and 99th percentile of per-run times, in ms.
fn time_each(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Counts the bytes written to it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_bytes(value: &impl Serialize) -> u64 {
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("serialise");
    count.0
}

/// A reduction as a web page would get it: per column its index, count, first
/// and last time (µs) and the four M4 points as `[µs, value]`.
struct ColumnsJson<'a>(&'a Reduced);

impl Serialize for ColumnsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.columns.iter().map(|c| {
            let points = c
                .values
                .map(|v| [v.first, v.last, v.min, v.max].map(|p| (p.t.micros(), p.v)));
            (c.index, c.count, c.first.micros(), c.last.micros(), points)
        }))
    }
}

/// Raw rows as `[µs, value]` pairs.
struct RowsJson<'a>(&'a [(TimeUuid, String)]);

impl Serialize for RowsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|(t, c)| (t.micros(), c.parse::<f64>().unwrap_or(f64::NAN))),
        )
    }
}

fn main() {
    let samples: u64 = std::env::var("KOMLOG_HUB_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(&dir.path().join("data")).expect("open store");
    let owner = Username::parse("bench").expect("username");
    store.add_user(&owner).expect("add user");
    let id = MetricId {
        owner: owner.clone(),
        local: "host.cpu".into(),
    };
    let base_us: i64 = 1_700_000_000_000_000;
    let at = |i: u64| TimeUuid::build(base_us + i as i64 * 1_000_000, 1, 1).expect("time");

    println!("komlog-hub reduce benchmark");
    let setup = Instant::now();
    let mut i = 0;
    while i < samples {
        let batch: Vec<NewSample> = (i..(i + BATCH).min(samples))
            .map(|i| {
                // A daily wave with some jitter, one decimal.
                let wave = (i as f64 / 86_400.0 * std::f64::consts::TAU).sin() * 500.0;
                let jitter = (i.wrapping_mul(2_654_435_761) % 1_000) as f64 / 10.0;
                NewSample {
                    uri: id.local.clone(),
                    kind: Kind::Datapoint,
                    t: at(i),
                    content: format!("{:.1}", wave + jitter),
                }
            })
            .collect();
        store.write(&owner, &batch).expect("write");
        i += BATCH;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(store.path()).map_or(0, |m| m.len()) / 1_000_000;
    println!(
        "setup: {samples} datapoints of one metric, 1 per second, batches of {BATCH}: \
         {setup_s:.1} s ({:.0} samples/s), database {file_mb} MB\n",
        samples as f64 / setup_s
    );
    println!(
        "reduce to {COLUMNS} columns ({RUNS} runs) vs reading the raw rows (read_oldest, no limit)"
    );
    println!(
        "bytes: JSON of [index, count, first µs, last µs, [[µs, value] × 4]] per column vs [[µs, value], …] per row"
    );
    println!(
        "   {:>6} {:>9} {:>7} {:>10} {:>10} {:>10} {:>5} {:>11} {:>12} {:>8} {:>8}",
        "range",
        "rows",
        "columns",
        "p50 ms",
        "p99 ms",
        "bytes",
        "raw n",
        "raw p50 ms",
        "raw bytes",
        "time x",
        "bytes x"
    );
    let last = samples.saturating_sub(1);
    let end = at(last);
    let ranges: [(&str, u64); 4] = [
        ("1 h", 3_600),
        ("1 day", 86_400),
        ("30 d", 30 * 86_400),
        ("all", samples),
    ];
    for (name, seconds) in ranges {
        let start = at((last + 1).saturating_sub(seconds));
        let mut reduced = Reduced::default();
        for _ in 0..3 {
            reduced = store.reduce(&id, start, end, COLUMNS).expect("reduce");
        }
        let (p50, p99) = time_each(RUNS, || {
            black_box(store.reduce(&id, start, end, COLUMNS).expect("reduce"));
        });
        let bytes = json_bytes(&ColumnsJson(&reduced));
        // Whole raw reads of millions of rows take seconds: fewer runs.
        let raw_runs = match reduced.rows {
            0..=100_000 => RUNS,
            100_001..=3_000_000 => 3,
            _ => 1,
        };
        let mut rows = Vec::new();
        let (raw_p50, _) = time_each(raw_runs, || {
            rows = black_box(
                store
                    .read_oldest(&id, start, end, usize::MAX)
                    .expect("read"),
            );
        });
        assert_eq!(rows.len() as u64, reduced.rows, "{name}");
        let raw_bytes = json_bytes(&RowsJson(&rows));
        drop(rows);
        println!(
            "   {name:>6} {:>9} {:>7} {p50:>10.2} {p99:>10.2} {bytes:>10} {raw_runs:>5} {raw_p50:>11.1} {raw_bytes:>12} {:>7.1}x {:>7.1}x",
            reduced.rows,
            reduced.columns.len(),
            raw_p50 / p50,
            raw_bytes as f64 / bytes as f64
        );
    }
}
