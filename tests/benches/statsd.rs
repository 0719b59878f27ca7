//! StatsD ingest throughput: N counter and gauge lines (default 1,000,000)
//! sent over UDP in packets of 20 lines from a sender thread to the StatsD
//! listener of a running in-process agent (the daemon's dispatcher and store;
//! the listener stores through its inbox), against a bare UDP receive loop
//! (same socket, no parsing) in the same run.
//!
//! The sender keeps at most a window of lines in flight (sent but not yet
//! received) so that no datagram is dropped and both sides move the same
//! lines. Figures: lines/s received and parsed, and lines/s end to end (until
//! a marker line sent last is stored, i.e. the last flush is committed).
//!
//! `cargo bench -p komlogd-tests --bench statsd`; `KOMLOGD_BENCH_LINES=N` to
//! change N.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use komlogd::config::StatsdConfig;
use komlogd::sources::listen::ListenerStats;
use komlogd::sources::statsd::{self, StatsdListener};
use komlogd::store::read::ReadRequest;
use komlogd_tests::{AgentDir, RunningAgent};

const LINES_PER_PACKET: usize = 20;
/// Lines sent but not yet received, at most.
const WINDOW: u64 = 4_000;
/// The longest a side may take.
const LIMIT: Duration = Duration::from_secs(300);

/// The packets of the run: counters and gauges over 100 names each.
fn packets(total: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(total / LINES_PER_PACKET + 1);
    let mut packet = Vec::new();
    for i in 0..total {
        if i % 2 == 0 {
            packet.extend_from_slice(format!("bench.c{}:1|c\n", i % 100).as_bytes());
        } else {
            packet.extend_from_slice(format!("bench.g{}:{}|g\n", i % 100, i).as_bytes());
        }
        if (i + 1) % LINES_PER_PACKET == 0 || i + 1 == total {
            packet.pop();
            out.push(std::mem::take(&mut packet));
        }
    }
    out
}

/// Send every packet to `to`, keeping at most [`WINDOW`] lines in flight
/// (`received` counts the lines taken). Returns when all are sent.
fn send(packets: &[Vec<u8>], to: std::net::SocketAddr, received: impl Fn() -> u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    socket.connect(to).expect("connect");
    let deadline = Instant::now() + LIMIT;
    let mut sent = 0u64;
    for p in packets {
        while sent.saturating_sub(received()) > WINDOW {
            assert!(Instant::now() < deadline, "the receiver stalled");
            std::hint::spin_loop();
        }
        socket.send(p).expect("send");
        sent += p.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    }
}

/// The bare loop: receive and count lines, nothing else.
fn baseline(packets: &[Vec<u8>], total: u64) -> Duration {
    let config = StatsdConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        flush: Duration::from_secs(1),
        prefix: None,
    };
    let socket = statsd::bind(&config).expect("bind");
    let addr = socket.local_addr().expect("addr");
    let lines = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (l, s) = (lines.clone(), stop.clone());
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !s.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                let count = buf[..n].iter().filter(|b| **b == b'\n').count() as u64 + 1;
                l.fetch_add(count, Ordering::Relaxed);
            }
        }
    });
    let start = Instant::now();
    send(packets, addr, || lines.load(Ordering::Relaxed));
    let deadline = Instant::now() + LIMIT;
    while lines.load(Ordering::Relaxed) < total {
        assert!(Instant::now() < deadline, "baseline: lines lost");
        std::hint::spin_loop();
    }
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    took
}

struct Agentside {
    parsed: Duration,
    stored: Duration,
    samples: u64,
    counter_sum: f64,
}

fn agent_run(packets: &[Vec<u8>], total: u64) -> Agentside {
    let tmp = if std::path::Path::new("/dev/shm").is_dir() {
        AgentDir::new_in(std::path::Path::new("/dev/shm"), "")
    } else {
        AgentDir::new("")
    };
    let agent = RunningAgent::start(&tmp);
    let config = StatsdConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        flush: Duration::from_millis(100),
        prefix: None,
    };
    let socket = statsd::bind(&config).expect("bind");
    let addr = socket.local_addr().expect("addr");
    let stats = ListenerStats::new("statsd");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener = StatsdListener::start(
        socket,
        &config,
        agent.inbox.clone(),
        Arc::clone(&stats),
        stop_rx,
    )
    .expect("start");
    let start = Instant::now();
    send(packets, addr, || stats.report().lines);
    let deadline = Instant::now() + LIMIT;
    while stats.report().lines < total {
        assert!(Instant::now() < deadline, "statsd: lines lost");
        std::thread::sleep(Duration::from_micros(200));
    }
    let parsed = start.elapsed();
    // The marker goes after every line: once stored, so is everything before.
    let marker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    marker.send_to(b"bench.done:1|c", addr).expect("send");
    let read = |uri: &str| {
        agent
            .inbox
            .read(ReadRequest {
                uri: Some(uri.into()),
                limit: 1000,
                from: None,
                to: None,
                oldest_first: false,
            })
            .expect("read")
            .samples
    };
    while read("bench.done").is_empty() {
        assert!(Instant::now() < deadline, "the marker was not stored");
        std::thread::sleep(Duration::from_millis(1));
    }
    let stored = start.elapsed();
    let counter_sum: f64 = (0..100)
        .flat_map(|i| read(&format!("bench.c{i}")))
        .filter_map(|r| r.datapoint.and_then(|d| d.parse::<f64>().ok()))
        .sum();
    let _ = stop_tx.send(true);
    listener.join();
    let report = stats.report();
    drop(agent);
    Agentside {
        parsed,
        stored,
        samples: report.samples,
        counter_sum,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: usize = std::env::var("KOMLOGD_BENCH_LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let packets = packets(total);
    let total = total as u64;
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "statsd ingest: {total} lines (half counters, half gauges, 200 names), {} packets of {LINES_PER_PACKET} lines, window {WINDOW} lines",
        packets.len()
    );
    let base = baseline(&packets, total);
    let run = agent_run(&packets, total);
    println!(
        "  bare UDP receive loop:      {:>10.0} lines/s ({:.2} s)",
        rate(base),
        base.as_secs_f64()
    );
    println!(
        "  listener, received+parsed:  {:>10.0} lines/s ({:.2} s, {:.0}% of the bare loop)",
        rate(run.parsed),
        run.parsed.as_secs_f64(),
        100.0 * base.as_secs_f64() / run.parsed.as_secs_f64()
    );
    println!(
        "  listener, end to end:       {:>10.0} lines/s ({:.2} s, until the last flush was stored; flush 100ms)",
        rate(run.stored),
        run.stored.as_secs_f64()
    );
    println!(
        "  samples stored: {}; counters' datapoints sum to {} (sent {})",
        run.samples,
        run.counter_sum,
        total.div_ceil(2)
    );
    assert_eq!(
        run.counter_sum,
        total.div_ceil(2) as f64,
        "counter lines lost"
    );
}
