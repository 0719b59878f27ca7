//! komlogd benchmarks: the cost of a fire against a bare wasmtime call moving the
//! same bytes, trivial fires per second, samples per second through the whole
//! local pipeline, and resident memory per idle impulse. Each figure is printed
//! with a ratio to a baseline measured in the same run.
//!
//! Run with `cargo bench -p komlogd` after building the guests (`examples/build.sh`).
//! Set `KOMLOGD_BENCH_QUICK=1` for a short smoke run.

mod common;

use common::{guest, quick};

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use komlogd::agent::{Agent, AgentOptions};
use komlogd::config::Config;
use komlogd::engine::bindings::Context;
use komlogd::engine::{Engine, EngineConfig, Limits};
use komlogd::impulses::window::WindowEncoder;
use komlogd::model::{Sample, Value};

fn dp(uri: &str, ts: i64, v: f64) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    }
}

/// Median and 99th percentile of per-iteration times, in µs.
fn time_each(iterations: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// Calls per second of `f` over about `budget`.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            f();
        }
        n += 256;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Bench {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Bench {
    fn agent(&self, name: &str, yaml: &str) -> Agent {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let path = dir.join("komlogd.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let agent = Agent::open_with(
            &config,
            &AgentOptions {
                cache_dir: Some(self.cache.clone()),
                ..AgentOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(agent.load_errors.is_empty(), "{:?}", agent.load_errors);
        agent
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let bench = Bench { dir, cache };
    let trivial = guest("trivial");
    let iterations = if quick() { 2_000 } else { 20_000 };

    println!("komlogd benchmarks ({} iterations per row)\n", iterations);
    println!("1. One fire (store window + Arrow encode + call + output handling) vs a bare");
    println!("   wasmtime call of the same component with the same window bytes; trivial guest.");
    println!(
        "   {:>7} {:>9} {:>12} {:>12} {:>12} {:>7} {:>14}",
        "samples", "bytes", "fire p50 µs", "fire p99 µs", "bare p50 µs", "ratio", "encode p50 µs"
    );
    for n in [0usize, 100, 1_000, 10_000] {
        let mut agent = bench.agent(
            &format!("fire{n}"),
            &format!(
                "- impulses:\n    filename: {}\n    uris: [a]\n    data_reqs: {{past_count: {n}}}\n",
                trivial.display()
            ),
        );
        let samples: Vec<Sample> = (1..=n as i64).map(|t| dp("a", t, t as f64)).collect();
        agent.dispatcher.ingest(samples.clone()).expect("preload");
        let ts = n as i64 + 1;
        for _ in 0..200 {
            agent.dispatcher.refire("a", ts).expect("refire");
        }
        let (fire_p50, fire_p99) = time_each(iterations, || {
            black_box(agent.dispatcher.refire("a", ts).expect("refire"));
        });
        // The bare call: same module, same bytes, no dispatcher.
        let module = agent.engine.load(&trivial).expect("load");
        let mut instance = module
            .instantiate(Arc::from("bare"), Limits::default())
            .expect("instantiate");
        let mut encoder = WindowEncoder::new();
        for s in &samples {
            encoder.push("a", s.ts, &s.value);
        }
        let mut window = Vec::new();
        encoder.finish_into(&mut window).expect("encode");
        let bytes = window.len();
        let ctx = Context {
            ts,
            updated: vec!["a".into()],
            others: vec![],
            params: vec![],
            window,
        };
        for _ in 0..200 {
            let _ = instance.on_update(&ctx);
        }
        let (bare_p50, _) = time_each(iterations, || {
            let _ = black_box(instance.on_update(&ctx));
        });
        // The window encoding alone, the largest part of the host's share.
        let mut out = Vec::new();
        let (encode_p50, _) = time_each(iterations, || {
            for s in &samples {
                encoder.push("a", s.ts, &s.value);
            }
            encoder.finish_into(&mut out).expect("encode");
            black_box(&out);
        });
        println!(
            "   {n:>7} {bytes:>9} {fire_p50:>12.2} {fire_p99:>12.2} {bare_p50:>12.2} {:>6.2}x {encode_p50:>14.2}",
            fire_p50 / bare_p50
        );
    }

    println!("\n2. Trivial fires per second on one thread (default window: the latest sample)");
    let mut agent = bench.agent(
        "rate",
        &format!(
            "- impulses:\n    filename: {}\n    uris: [a]\n",
            trivial.display()
        ),
    );
    agent
        .dispatcher
        .ingest(vec![dp("a", 1, 1.0)])
        .expect("preload");
    let budget = Duration::from_millis(if quick() { 300 } else { 2_000 });
    let fires = rate(budget, || {
        black_box(agent.dispatcher.refire("a", 1).expect("refire"));
    });
    let module = agent.engine.load(&trivial).expect("load");
    let mut instance = module
        .instantiate(Arc::from("bare"), Limits::default())
        .expect("instantiate");
    let mut encoder = WindowEncoder::new();
    encoder.push("a", 1, &Value::Datapoint(1.0));
    let mut window = Vec::new();
    encoder.finish_into(&mut window).expect("encode");
    let ctx = Context {
        ts: 1,
        updated: vec!["a".into()],
        others: vec![],
        params: vec![],
        window,
    };
    let bare = rate(budget, || {
        let _ = black_box(instance.on_update(&ctx));
    });
    println!(
        "   fires/s {fires:>10.0}   bare calls/s {bare:>10.0}   ratio {:.2}x",
        fires / bare
    );

    println!("\n3. Samples per second through the whole local pipeline (durable store commit +");
    println!(
        "   one subscribed trivial impulse fired per sample) vs the same store with no impulse"
    );
    println!(
        "   {:>6} {:>9} {:>16} {:>16} {:>7}",
        "batch", "batches", "pipeline smp/s", "store-only smp/s", "ratio"
    );
    for (batch, batches) in [
        (1usize, if quick() { 20 } else { 100 }),
        (1_000, if quick() { 3 } else { 10 }),
    ] {
        let mut with = bench.agent(
            &format!("pipe{batch}"),
            &format!(
                "- impulses:\n    filename: {}\n    uris: [p]\n",
                trivial.display()
            ),
        );
        let mut without = bench.agent(&format!("store{batch}"), "");
        let mut ts = 0i64;
        let mut run = |agent: &mut Agent| {
            let start = Instant::now();
            for _ in 0..batches {
                let samples: Vec<Sample> = (0..batch)
                    .map(|_| {
                        ts += 1;
                        dp("p", ts, ts as f64)
                    })
                    .collect();
                let report = agent.dispatcher.ingest(samples).expect("ingest");
                assert_eq!(report.accepted, batch);
            }
            (batch * batches) as f64 / start.elapsed().as_secs_f64()
        };
        let pipeline = run(&mut with);
        let store_only = run(&mut without);
        let fired = with.dispatcher.stats()[0].1.fires;
        assert_eq!(fired as usize, batch * batches, "one fire per sample");
        println!(
            "   {batch:>6} {batches:>9} {pipeline:>16.0} {store_only:>16.0} {:>6.2}x",
            pipeline / store_only
        );
    }

    println!("\n4. Resident memory per loaded idle impulse (warm instance after describe),");
    println!("   vs a bare instance of the same module");
    let count = 100;
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(bench.cache.clone()),
        ..EngineConfig::default()
    })
    .expect("engine");
    let module = engine.load(&trivial).expect("load");
    let before = rss_bytes();
    let bare: Vec<_> = (0..count)
        .map(|_| {
            let mut i = module
                .instantiate(Arc::from("bare"), Limits::default())
                .expect("instantiate");
            let _ = i.describe();
            i
        })
        .collect();
    let bare_per = (rss_bytes().saturating_sub(before)) as f64 / count as f64;
    drop(bare);
    let mut yaml = String::new();
    for i in 0..count {
        yaml.push_str(&format!(
            "- impulses:\n    name: t{i}\n    filename: {}\n    uris: [m{i}]\n",
            trivial.display()
        ));
    }
    let before = rss_bytes();
    let agent = bench.agent("memory", &yaml);
    let per = (rss_bytes().saturating_sub(before)) as f64 / count as f64;
    assert_eq!(agent.dispatcher.stats().len(), count);
    println!(
        "   {count} impulses: {:.1} KiB each   bare instance: {:.1} KiB each   ratio {:.2}x",
        per / 1024.0,
        bare_per / 1024.0,
        per / bare_per.max(1.0)
    );
}
