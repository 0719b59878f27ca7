//! The cost of a `gauge()` call on the application's thread, against an empty
//! function called the same way in the same run: p50 per call, in ns, and the
//! ratio. Run with `cargo bench -p komlog-metrics --bench calls`.
//!
//! The client has no agent to talk to (its socket does not exist), so its
//! background thread drains the queue and drops the batches; the queue holds
//! one measurement's calls and is emptied between measurements, so no call
//! finds it full (the run prints `dropped`, which must be 0).

use std::hint::black_box;
use std::time::{Duration, Instant};

use komlog_metrics::Metrics;

/// Calls per timed round, and rounds.
const PER_ROUND: u32 = 100;
const ROUNDS: usize = 5_000;

struct Empty;

impl Empty {
    #[inline(never)]
    fn gauge(&self, name: &str, value: f64, tags: &[(&str, &str)]) {
        black_box((name, value, tags));
    }
}

/// p50 ns per call of `call`, timed in rounds of [`PER_ROUND`] calls.
fn p50(mut call: impl FnMut(u32)) -> f64 {
    let mut per_call = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            call(i);
        }
        per_call.push(start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND));
    }
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = Metrics::builder(dir.path().join("no-agent.sock"))
        .queue_capacity(ROUNDS * PER_ROUND as usize)
        .drop_timeout(Duration::from_millis(100))
        .build()?;
    let empty = Empty;
    let tags = [("host", "web-1")];
    // Warm both up, then measure them alternately, three times each.
    let _ = p50(|i| empty.gauge(black_box("bench.gauge"), f64::from(i), black_box(&tags)));
    let mut gauge = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..3 {
        baseline.push(p50(|i| {
            empty.gauge(black_box("bench.gauge"), f64::from(i), black_box(&tags))
        }));
        gauge.push(p50(|i| {
            metrics.gauge(black_box("bench.gauge"), f64::from(i), black_box(&tags))
        }));
        // Let the background thread empty the queue (it fails: no agent).
        let _ = metrics.flush(Duration::from_secs(120));
    }
    gauge.sort_by(f64::total_cmp);
    baseline.sort_by(f64::total_cmp);
    let (g, b) = (gauge[1], baseline[1]);
    println!("gauge() with one tag:  p50 {g:.1} ns per call");
    println!("empty #[inline(never)] function, same arguments: p50 {b:.1} ns per call");
    println!(
        "ratio gauge/empty: {:.1}x (target: gauge <= 200 ns)",
        g / b.max(0.1)
    );
    println!("dropped: {}", metrics.dropped());
    Ok(())
}
