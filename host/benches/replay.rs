//! Replay throughput (`komlogd impulse test`): samples of one uri replayed
//! through the `summary` example with a window of its last 100 samples
//! (`past_count: 100`), against the agent's own local pipeline on the same
//! data in the same run — the same impulse in a `komlogd` agent, the samples
//! uploaded in batches of 1,000 as `komlogd import` does (durable commits,
//! fires dispatched while the next batch is stored).
//!
//! Both fire the impulse once per sample. The replay runs the samples one
//! time at a time to completion (sample-time order, no fsync); the agent
//! stores a batch and fires each of its times in turn.
//!
//! Run with `cargo bench -p komlogd --bench replay`; `KOMLOGD_BENCH_QUICK=1`
//! replays 20,000 samples instead of 1,000,000 (the agent gets a tenth of
//! the replay's samples either way: its rate is steady well before).

mod common;

use std::time::{Duration, Instant};

use komlogd::agent::{Agent, AgentOptions};
use komlogd::config::Config;
use komlogd::engine::Determinism;
use komlogd::model::{Sample, Value};
use komlogd::replay::Replay;

/// One sample a second on `cpu.system`, a slow wave with noise.
fn samples(n: usize) -> Vec<Sample> {
    let base = 1_714_564_800_000_000i64;
    (0..n)
        .map(|i| Sample {
            uri: "cpu.system".into(),
            ts: base + i as i64 * 1_000_000,
            value: Value::Datapoint(50.0 + 30.0 * ((i as f64) / 600.0).sin() + (i % 7) as f64),
        })
        .collect()
}

fn config(dir: &std::path::Path) -> Config {
    let path = dir.join("komlogd.yaml");
    let yaml = format!(
        "- impulses:\n    name: summary\n    filename: {}\n    uris: [cpu.system]\n    \
         data_reqs: {{past_delta: 0s, past_count: 100}}\n",
        common::guest("summary").display()
    );
    std::fs::write(&path, yaml).expect("write komlogd.yaml");
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// What a replay of `data` did.
struct Replayed {
    /// Samples per second.
    rate: f64,
    /// Outputs written.
    outputs: u64,
    /// The share of the replay's time spent in the guest's calls.
    in_guest: f64,
    /// The median guest call.
    call_p50: Duration,
}

fn replay(config: &Config, options: &AgentOptions, data: Vec<Sample>) -> Replayed {
    let n = data.len();
    let determinism = Determinism {
        now_us: data[0].ts,
        seed: 0,
    };
    let mut replay = Replay::open(config, options, determinism).expect("replay");
    let mut outputs = 0u64;
    let mut calls = Vec::with_capacity(n);
    let started = Instant::now();
    replay
        .run(data, |r| {
            outputs += r.outputs.len() as u64;
            calls.push(r.call);
        })
        .expect("run");
    let elapsed = started.elapsed();
    replay.close().expect("close");
    let in_guest = calls.iter().sum::<Duration>().as_secs_f64() / elapsed.as_secs_f64();
    calls.sort_unstable();
    Replayed {
        rate: n as f64 / elapsed.as_secs_f64(),
        outputs,
        in_guest,
        call_p50: calls.get(calls.len() / 2).copied().unwrap_or_default(),
    }
}

/// Samples per second through a local agent fed batches of 1,000.
fn live(config: &Config, options: &AgentOptions, data: Vec<Sample>) -> (f64, u64) {
    let n = data.len();
    let mut agent = Agent::open_with(config, options).expect("agent");
    let mut outputs = 0u64;
    let started = Instant::now();
    let mut rest = data;
    while !rest.is_empty() {
        let batch: Vec<Sample> = rest.drain(..rest.len().min(1000)).collect();
        let report = agent.dispatcher.upload(batch).expect("upload");
        outputs += report.outputs;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    agent.dispatcher.close().expect("close");
    (rate, outputs)
}

fn main() {
    let n = if common::quick() { 20_000 } else { 1_000_000 };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let options = AgentOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..AgentOptions::default()
    };
    // Compile once (cached), outside the timings.
    replay(&config, &options, samples(10));
    let live_n = n / 10;
    println!("replay: summary (past_count 100), one uri, one sample a second");
    for run in 1..=2 {
        let replayed = replay(&config, &options, samples(n));
        assert_eq!(replayed.outputs, n as u64, "one summary per sample");
        // A fresh store: the agent stores (and fires) what it does not hold.
        let _ = std::fs::remove_file(komlogd::agent::store_path(dir.path()));
        let (live_rate, live_out) = live(&config, &options, samples(live_n));
        assert_eq!(live_out, live_n as u64, "one summary per sample");
        println!(
            "  run {run}: replay {n} samples: {:>9.0} samples/s | \
             live agent {live_n} samples: {live_rate:>9.0} samples/s | {:.2}× the live pipeline",
            replayed.rate,
            replayed.rate / live_rate
        );
        // The guest's own time bounds a replay that fires once per sample.
        println!(
            "         in the guest: {:.0} % of the replay, call p50 {:.1} µs \
             (one call per sample: at most {:.0} samples/s on one thread)",
            replayed.in_guest * 100.0,
            replayed.call_p50.as_secs_f64() * 1e6,
            1.0 / replayed.call_p50.as_secs_f64()
        );
    }
}
