//! Hot reload and sandbox benchmarks on a running agent (real components, real
//! store, the daemon's threads):
//!
//! 1. module swaps under a steady stream of samples: lost and doubled events, the
//!    latency an event sees at a swap vs the stream's usual latency;
//! 2. resident memory after many swaps vs after the first few;
//! 3. the watched-file path: time from a module file replaced to the new version serving;
//! 4. the cost of epoch deadlines: calls per second with and without them;
//! 5. a runaway neighbour: a healthy impulse's latency (send → its call returned)
//!    with and without an endless loop beside it, in alternating rounds; the
//!    ratio compares the median of each configuration's p99s. Also how long the
//!    runaway's calls ran before their deadline stopped them.
//!
//! `cargo bench -p komlogd-tests --bench reload [-- SECTION…]` (sections: swaps,
//! memory, watch, epoch, runaway); `KOMLOGD_BENCH_QUICK=1` for a short run. Every figure is printed with the baseline measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use komlogd::agent::load_impulse;
use komlogd::engine::bindings::Context;
use komlogd::engine::{Engine, EngineConfig, Limits};
use komlogd::impulses::Control;
use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;
use komlogd_tests::{AgentDir, RunningAgent, dp, guest, replace_file, rss_bytes};

fn quick() -> bool {
    std::env::var_os("KOMLOGD_BENCH_QUICK").is_some()
}

/// Median and 99th percentile of `v` (sorted in place).
fn p50_p99(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Sends `total` single-sample batches to `in`, `per_ms` of them every millisecond;
/// the sample's ts is its sequence number (1..=total). Records each send time.
fn stream(
    agent: &RunningAgent,
    total: usize,
    per_ms: usize,
    sent_ns: Arc<Vec<AtomicU64>>,
    origin: Instant,
) -> std::thread::JoinHandle<()> {
    let inbox = agent.inbox.clone();
    std::thread::spawn(move || {
        let mut next = 1usize;
        let mut tick = 0u64;
        while next <= total {
            tick += 1;
            let due = origin + Duration::from_millis(tick);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for _ in 0..per_ms {
                if next > total {
                    break;
                }
                sent_ns[next].store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
                inbox
                    .samples(vec![dp("in", next as i64, 0.0)])
                    .expect("agent running");
                next += 1;
            }
        }
    })
}

fn tagged_dir() -> (AgentDir, std::path::PathBuf) {
    let dir = AgentDir::new("");
    let module = dir.path().join("tag.wasm");
    std::fs::copy(guest("tagged_a"), &module).expect("copy");
    dir.write_config("- impulses:\n    name: tag\n    filename: tag.wasm\n    uris: [in]\n");
    (dir, module)
}

fn swaps_under_load() {
    let swaps = if quick() { 100 } else { 1_000 };
    let rate_per_ms = 10; // 10k events/s
    let swap_every = Duration::from_millis(20);
    let total = (swaps as u128 * swap_every.as_millis() * rate_per_ms as u128) as usize + 2_000;
    println!(
        "1. {swaps} module swaps (one every {swap_every:?}) under {}k events/s ({total} events)",
        rate_per_ms
    );
    let (dir, _module) = tagged_dir();
    let config = dir.config();
    let agent = RunningAgent::start(&dir);
    let versions = [guest("tagged_a"), guest("tagged_b")];
    let mut block = config.impulses[0].clone();

    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..=total).map(|_| AtomicU64::new(0)).collect());
    // Per event: outputs seen, tag of the last one, latency (µs).
    let mut outputs = vec![0u8; total + 1];
    let mut tags = vec![0u8; total + 1];
    let mut latency_us = vec![0f64; total + 1];
    let origin = Instant::now();
    let driver = stream(&agent, total, rate_per_ms, sent_ns.clone(), origin);

    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let engine = agent.engine.clone();
        let inbox = agent.inbox.clone();
        let limits = config.limits.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..swaps {
                std::thread::sleep(swap_every);
                block.filename = versions[(i + 1) % 2].clone();
                let version = load_impulse(&engine, &block, &limits).expect("load");
                inbox
                    .control(Control::Swap(Box::new(version)))
                    .expect("running");
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut received = 0usize;
    let mut order_ok = true;
    let mut last_ts = 0i64;
    let mut rss_after_10 = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received < total && Instant::now() < deadline {
        let Ok(t) = agent.tap.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        let ts = t.sample.ts as usize;
        if ts == 0 || ts > total {
            continue;
        }
        order_ok &= t.sample.ts > last_ts;
        last_ts = t.sample.ts;
        received += 1;
        outputs[ts] = outputs[ts].saturating_add(1);
        tags[ts] = match t.sample.value {
            Value::Datapoint(v) => v as u8,
            Value::Datasource(_) => 0,
        };
        let at = t.at.duration_since(origin).as_nanos() as f64;
        latency_us[ts] = (at - sent_ns[ts].load(Ordering::Relaxed) as f64) / 1e3;
        if rss_after_10 == 0 && agent.stats("tag").swaps >= 10 {
            rss_after_10 = rss_bytes();
        }
    }
    driver.join().expect("driver");
    swapper.join().expect("swapper");
    let rss_end = rss_bytes();
    let s = agent.wait_for("tag", Duration::from_secs(30), |s| s.swaps == swaps as u64);
    let lost = outputs[1..].iter().filter(|&&c| c == 0).count();
    let doubled = outputs[1..].iter().filter(|&&c| c > 1).count();
    // The first event served by each new version, and its latency.
    let mut at_swap = Vec::new();
    let mut all = Vec::new();
    for ts in 1..=total {
        if outputs[ts] == 0 {
            continue;
        }
        all.push(latency_us[ts]);
        if ts > 1 && outputs[ts - 1] > 0 && tags[ts] != tags[ts - 1] {
            at_swap.push(latency_us[ts]);
        }
    }
    let (all_p50, all_p99) = p50_p99(&mut all);
    let version_changes = at_swap.len();
    let (swap_p50, swap_p99) = p50_p99(&mut at_swap);
    println!(
        "   swaps done {}   version changes seen in outputs {version_changes}   lost {lost}   doubled {doubled}   in order {order_ok}",
        s.swaps
    );
    println!("   event latency (send → output stored) p50 {all_p50:.0} µs  p99 {all_p99:.0} µs");
    println!(
        "   first event on each new version      p50 {swap_p50:.0} µs  p99 {swap_p99:.0} µs   ratio p99 {:.2}x",
        swap_p99 / all_p99
    );
    println!(
        "   swap stall in the worker (retire old version + first call on the new one): p50 {:.1} µs  p99 {:.1} µs",
        s.swap_stall_p50_us, s.swap_stall_p99_us
    );
    println!(
        "   vs an ordinary call:                                                      p50 {:.1} µs  p99 {:.1} µs   ratio p99 {:.1}x",
        s.duration_p50_us,
        s.duration_p99_us,
        s.swap_stall_p99_us / s.duration_p99_us
    );
    println!(
        "   RSS after 10 swaps {:.1} MiB, after {} swaps {:.1} MiB ({:+.1} %; includes the store's page cache filling with {total} samples)",
        rss_after_10 as f64 / 1048576.0,
        s.swaps,
        rss_end as f64 / 1048576.0,
        (rss_end as f64 / rss_after_10.max(1) as f64 - 1.0) * 100.0
    );
    drop(agent);
}

fn memory_across_swaps() {
    let swaps = if quick() { 100 } else { 1_000 };
    println!("\n2. Resident memory across {swaps} swaps (one event per swap, no other load)");
    let (dir, _module) = tagged_dir();
    let config = dir.config();
    let agent = RunningAgent::start(&dir);
    let versions = [guest("tagged_a"), guest("tagged_b")];
    let mut block = config.impulses[0].clone();
    let mut rss_10 = 0;
    let started = Instant::now();
    for i in 1..=swaps {
        block.filename = versions[i % 2].clone();
        let version = load_impulse(&agent.engine, &block, &config.limits).expect("load");
        agent
            .inbox
            .control(Control::Swap(Box::new(version)))
            .expect("running");
        agent
            .inbox
            .samples(vec![dp("in", i as i64, 0.0)])
            .expect("running");
        agent
            .tap
            .recv_timeout(Duration::from_secs(10))
            .expect("output");
        if i == 10 {
            rss_10 = rss_bytes();
        }
    }
    let per_swap = started.elapsed() / swaps as u32;
    let rss_end = rss_bytes();
    println!(
        "   after 10 swaps {:.2} MiB   after {swaps} swaps {:.2} MiB   ratio {:.3}x   ({per_swap:?} per swap, load + check + swap + one fire)",
        rss_10 as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        rss_end as f64 / rss_10 as f64
    );
}

fn file_watch_latency() {
    let n = if quick() { 5 } else { 20 };
    println!("\n3. Module file replaced (write + rename) → new version serving, {n} times");
    let (dir, module) = tagged_dir();
    let agent = RunningAgent::start(&dir);
    let versions = [guest("tagged_a"), guest("tagged_b")];
    let mut times = Vec::new();
    for i in 1..=n {
        let started = Instant::now();
        replace_file(&versions[i % 2], &module);
        agent.wait_for("tag", Duration::from_secs(20), |s| s.swaps == i as u64);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = p50_p99(&mut times);
    println!(
        "   p50 {p50:.0} ms  max {p99:.0} ms   (of which 100 ms is the quiet time that ends a burst of file events)"
    );
}

fn epoch_cost() {
    println!(
        "\n4. Cost of epoch deadlines: calls per second of the same instance, with and without"
    );
    let budget = Duration::from_millis(if quick() { 1_000 } else { 6_000 });
    let mut encoder = WindowEncoder::new();
    for t in 1..=100 {
        encoder.push("a", t, &Value::Datapoint(t as f64));
    }
    let mut window = Vec::new();
    encoder.finish_into(&mut window).expect("encode");
    let ctx = Context {
        ts: 100,
        updated: vec!["a".into()],
        others: vec![],
        params: vec![],
        window,
    };
    for name in ["trivial", "summary"] {
        // One instance on an engine with deadlines, one on an engine without,
        // run in turns of 20 ms: each pair of turns gives a ratio, and the
        // median ratio is the cost. Adjacent turns see the same machine, so
        // its drifts (large on these virtual machines) cancel out.
        let mut instances: Vec<_> = [false, true]
            .into_iter()
            .map(|deadlines| {
                let engine = Engine::new(&EngineConfig {
                    epoch_deadlines: deadlines,
                    ..EngineConfig::default()
                })
                .expect("engine");
                let module = engine.load(&guest(name)).expect("load");
                let mut instance = module
                    .instantiate(Arc::from("bench"), Limits::default())
                    .expect("instantiate");
                for _ in 0..500 {
                    let _ = instance.on_update(&ctx);
                }
                (engine, instance)
            })
            .collect();
        let turn = Duration::from_millis(20);
        let mut ratios = Vec::new();
        let mut rates = [Vec::new(), Vec::new()];
        let start = Instant::now();
        while start.elapsed() < budget {
            let mut pair = [0f64; 2];
            for (slot, (_, instance)) in instances.iter_mut().enumerate() {
                let began = Instant::now();
                let mut calls = 0u64;
                while began.elapsed() < turn {
                    for _ in 0..20 {
                        let _ = black_box(instance.on_update(&ctx));
                    }
                    calls += 20;
                }
                pair[slot] = calls as f64 / began.elapsed().as_secs_f64();
                rates[slot].push(pair[slot]);
            }
            ratios.push(pair[0] / pair[1]);
        }
        let pairs = ratios.len();
        let [without, with] = rates.map(|mut r| p50_p99(&mut r).0);
        println!(
            "   {name:<8} (100-sample window)  without {without:>9.0}/s   with {with:>9.0}/s   cost {:+.1} %   (median of {pairs} paired 20 ms turns)",
            (p50_p99(&mut ratios).0 - 1.0) * 100.0
        );
    }
}

fn runaway_neighbour() {
    let events = if quick() { 2_000 } else { 5_000 };
    let rounds = if quick() { 3 } else { 5 };
    println!(
        "\n5. A healthy impulse's latency (send → its call returned) over {events} events at 1k/s,"
    );
    println!(
        "   alone and beside an impulse stuck in an endless loop (1 s deadline), {rounds} alternating rounds,"
    );
    println!("   store on /dev/shm (fsync times out of both arms)");
    // p99 to the fire, per configuration, one per round.
    let mut p99s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (slot, with_runaway) in [(0, false), (1, true)] {
            let (fire, stored, busy) = healthy_latency(events, with_runaway);
            let (mut fire, mut stored) = (fire, stored);
            let n = fire.len();
            let (p50, p99) = p50_p99(&mut fire);
            let (_, stored99) = p50_p99(&mut stored);
            p99s[slot].push(p99);
            println!(
                "   round {round} {:<13} events {n:>5}   p50 {p50:>5.0} µs   p99 {p99:>6.0} µs   (to its output stored: p99 {stored99:>6.0} µs){busy}",
                if with_runaway {
                    "with runaway"
                } else {
                    "alone"
                }
            );
        }
    }
    let median = |v: &mut Vec<f64>| p50_p99(v).0;
    let (alone, with) = (median(&mut p99s[0]), median(&mut p99s[1]));
    println!(
        "   median p99: alone {alone:.0} µs, with the runaway {with:.0} µs   ratio {:.2}x",
        with / alone
    );
}

/// One run of the healthy impulse at 1k events/s, with or without the runaway
/// beside it: latencies (µs) from each send to the healthy call's return and to
/// its output stored, and a note on the runaway's activity.
fn healthy_latency(events: usize, with_runaway: bool) -> (Vec<f64>, Vec<f64>, String) {
    let runaway = if with_runaway {
        "- impulses:\n    name: runaway\n    filename: {guest:misbehave}\n    uris: [in]\n    params: {mode: spin}\n    limits: {timeout: 1s, disable_after: 1000}\n"
    } else {
        ""
    };
    // The store goes on a tmpfs when there is one: the disk's fsync times, which
    // vary by milliseconds on these machines, then stay out of both arms.
    let yaml = format!(
        "- impulses:\n    name: healthy\n    filename: {{guest:tagged_a}}\n    uris: [in]\n{runaway}"
    );
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        AgentDir::new_in(shm, &yaml)
    } else {
        AgentDir::new(&yaml)
    };
    let agent = RunningAgent::start(&dir);
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..=events).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let driver = stream(&agent, events, 1, sent_ns.clone(), origin);
    let mut fire = Vec::with_capacity(events);
    let mut stored = Vec::with_capacity(events);
    while fire.len() < events {
        let Ok(t) = agent.tap.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        if &*t.impulse != "healthy" {
            continue;
        }
        let sent = sent_ns[t.sample.ts as usize].load(Ordering::Relaxed) as f64;
        let micros = |at: Instant| (at.duration_since(origin).as_nanos() as f64 - sent) / 1e3;
        fire.push(micros(t.fired_at));
        stored.push(micros(t.at));
    }
    driver.join().expect("driver");
    let busy = if with_runaway {
        let s = agent.stats("runaway");
        format!(
            "   runaway: {} deadline stops after p50 {:.0} ms, p99 {:.0} ms (deadline 1000 ms)",
            s.failures.get("deadline").copied().unwrap_or(0),
            s.duration_p50_us / 1e3,
            s.duration_p99_us / 1e3,
        )
    } else {
        String::new()
    };
    agent.stop();
    (fire, stored, busy)
}

fn main() {
    // `cargo bench -p komlogd-tests --bench reload -- epoch runaway` runs only those.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sections: [(&str, fn()); 5] = [
        ("swaps", swaps_under_load),
        ("memory", memory_across_swaps),
        ("watch", file_watch_latency),
        ("epoch", epoch_cost),
        ("runaway", runaway_neighbour),
    ];
    println!("komlogd reload and sandbox benchmarks\n");
    for (name, run) in sections {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            run();
        }
    }
}
