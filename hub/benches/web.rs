//! komlog-hub benchmark of the web page in a real headless Chromium
//! (`/usr/bin/chromium` or `$CHROMIUM`, driven by playwright-core through
//! `hub/web/e2e/bench.mjs`), against an in-process hub on 127.0.0.1.
//!
//! - **Navigation to a drawn chart**: a fresh page load of a chart's address
//!   (`/web/#data?uri=…&from=…&to=…`) until the chart's first draw (the page's
//!   `chart-drawn` Performance mark, from navigation start), for a metric of
//!   10,000,000 datapoints (one a second) over an hour, a day, 30 days and all
//!   of it, against a metric of 100 datapoints in the same run (the baseline:
//!   everything but the data's size).
//! - **Upload to pixel**: 200 datapoints uploaded over the agents' protocol
//!   (a websocket session, 20 a second) to a chart open in follow mode; for
//!   each, from the sample's time (taken just before it is sent) to the draw
//!   that shows it. The baseline, in the same run: the same samples read from
//!   `/api/v1/live` by a plain HTTP client in node, with no browser.
//!
//! Run with `cargo bench -p komlog-hub --bench web`. `KOMLOG_HUB_BENCH_SAMPLES`
//! sets another size for the large metric (e.g. 1000000 for a short run);
//! `KOMLOG_HUB_BENCH_RUNS` the page loads per chart (default 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestHub, user};
use komlog_hub::store::NewSample;
use komlog_hub::web::auth;
use komlog_protocol::{Body, DpData, Kind, Status, TimeUuid, Uri};

const PASSWORD: &str = "a bench password";
const BATCH: u64 = 200_000;
const LIVE: usize = 200;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// `npm ci` in hub/web when playwright-core is not installed there yet.
fn npm_ci(web: &Path) {
    if web
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .status()
        .expect("npm (apt-get install npm)");
    assert!(status.success(), "npm ci in {}", web.display());
}

/// Writes `n` datapoints of `uri`, one a second, the last at `end_us`.
fn seed(hub: &TestHub, uri: &str, n: u64, end_us: i64) {
    let owner = user("bench");
    let mut i = 0;
    while i < n {
        let batch: Vec<NewSample> = (i..(i + BATCH).min(n))
            .map(|i| {
                let wave = (i as f64 / 86_400.0 * std::f64::consts::TAU).sin() * 500.0;
                let jitter = (i.wrapping_mul(2_654_435_761) % 1_000) as f64 / 10.0;
                NewSample {
                    uri: uri.into(),
                    kind: Kind::Datapoint,
                    t: TimeUuid::build(end_us - (n - 1 - i) as i64 * 1_000_000, 1, 1)
                        .expect("time"),
                    content: format!("{:.1}", wave + jitter),
                }
            })
            .collect();
        hub.store().write(&owner, &batch).expect("write");
        i += BATCH;
    }
}

/// A chart's address: `uri` from `from` to `to` (µs).
fn chart(uri: &str, from: i64, to: i64) -> String {
    format!("#data?uri={uri}&from={from}&to={to}")
}

#[tokio::main]
async fn main() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !chromium.exists() {
        eprintln!(
            "no Chromium at {} (apt-get install chromium): the web benchmark cannot run",
            chromium.display()
        );
        std::process::exit(2);
    }
    let samples = env_number("KOMLOG_HUB_BENCH_SAMPLES", 10_000_000);
    let runs = env_number("KOMLOG_HUB_BENCH_RUNS", 20);
    let web = repo_root().join("hub/web");
    npm_ci(&web);

    let hub = TestHub::start().await;
    hub.add_user_with_key("bench", 0);
    let phc = auth::hash_password(PASSWORD).expect("hash");
    hub.store()
        .set_password(&user("bench"), Some(&phc))
        .expect("password");

    println!("komlog-hub web benchmark (Chromium, playwright-core)");
    let end = komlog_protocol::timeuuid::now_micros() / 1_000_000 * 1_000_000;
    let setup = Instant::now();
    seed(&hub, "big.cpu", samples, end);
    seed(&hub, "small.cpu", 100, end);
    // The live chart's uri exists before the page opens it.
    seed(&hub, "live.cpu", 1, end - 10_000_000);
    println!(
        "setup: big.cpu {samples} datapoints (1 a second), small.cpu 100: {:.1} s\n",
        setup.elapsed().as_secs_f64()
    );
    let first = end - (samples as i64 - 1) * 1_000_000;
    let charts = [
        (
            "small.cpu, 100 s (baseline)",
            chart("small.cpu", end - 100_000_000, end + 1),
        ),
        (
            "big.cpu, 1 hour",
            chart("big.cpu", end - 3_600_000_000, end + 1),
        ),
        (
            "big.cpu, 1 day",
            chart("big.cpu", end - 86_400_000_000, end + 1),
        ),
        (
            "big.cpu, 30 days",
            chart("big.cpu", end - 2_592_000_000_000, end + 1),
        ),
        ("big.cpu, all", chart("big.cpu", first, end + 1)),
    ];
    let charts_json = serde_json::to_string(
        &charts
            .iter()
            .map(|(name, hash)| serde_json::json!({"name": name, "hash": hash}))
            .collect::<Vec<_>>(),
    )
    .expect("json");

    let mut bench = Command::new("node")
        .arg(web.join("e2e/bench.mjs"))
        .env("KOMLOG_WEB_URL", format!("http://{}", hub.addr()))
        .env("KOMLOG_WEB_USER", "bench")
        .env("KOMLOG_WEB_PASSWORD", PASSWORD)
        .env("KOMLOG_BENCH_CHARTS", charts_json)
        .env("KOMLOG_BENCH_RUNS", runs.to_string())
        .env("KOMLOG_BENCH_LIVE", LIVE.to_string())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (apt-get install nodejs)");
    let mut answer = bench.stdin.take().expect("stdin");
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = bench.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines_rx.recv().await {
        if line == "need live" {
            let mut agent = hub.connect("bench", 0).await;
            let started = Instant::now();
            for i in 0..LIVE {
                let due = started + Duration::from_millis(50 * i as u64);
                tokio::time::sleep_until(due.into()).await;
                let reply = agent
                    .request(Body::SendDpData(DpData {
                        uri: Uri::parse("live.cpu").expect("uri"),
                        t: TimeUuid::now(),
                        content: format!("{}", i % 97),
                    }))
                    .await;
                assert_eq!(reply.status, Status::OK, "upload {i}: {reply:?}");
            }
            writeln!(answer, "done").expect("answer the script");
        } else {
            println!("{line}");
        }
    }
    let status = bench.wait().expect("node");
    assert!(status.success(), "the browser benchmark failed ({status})");
}
