//! Connected-mode benchmarks on loopback, with a komlog-hub and komlogd agents
//! in this process (real sockets, real stores, durable commits):
//!
//! 1. Samples per second from an agent's outbox to the hub, durable end to end
//!    (outbox persisted, hub stored, acknowledged, removed from the outbox), one
//!    sample per message. Baseline: a bare `komlog-session` sending the same
//!    messages with the same window of replies in flight (no outbox).
//! 2. Latency from a write of agent A (an upload handed to its control socket)
//!    to the fire of agent B's impulse subscribed to that uri (the `misbehave`
//!    guest in mode `ok`: a fire that writes one datapoint), taken when the
//!    call returns; also to A's upload committed and to B's output stored.
//!    Baseline: one bare session writing, another hooked on the uri: the time
//!    to its notification (the hub's durable commit and two hops).
//!
//! Run with `cargo bench -p komlogd --bench connected` after building the guests
//! (`examples/build.sh`). `KOMLOGD_BENCH_QUICK=1` gives a short run.

mod common;

use common::{guest, quick};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use komlog_hub::server::{self, HubConfig};
use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{HubStore, Share};
use komlog_protocol::{TimeUuid, Username};
use komlog_session::{Endpoint, Session, SessionConfig};
use komlogd::agent::status::{self, UploadRequest};
use komlogd::agent::{Agent, AgentOptions};
use komlogd::config::Config;
use komlogd::model::{Sample, Value, now_us};

fn user(name: &str) -> Username {
    Username::parse(name).expect("username")
}

struct Bench {
    root: tempfile::TempDir,
    url: String,
    endpoint: Endpoint,
    hub_store: Arc<RedbStore>,
}

impl Bench {
    /// An agent directory for `name` with its key registered at the hub.
    fn agent_dir(&self, name: &str, yaml: &str) -> (PathBuf, Config) {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let key = komlogd::keys::load_or_create(&dir.join("key.priv")).expect("key");
        self.hub_store
            .add_agent(&user(name), &key.public_line)
            .expect("register the key");
        let path = dir.join("komlogd.yaml");
        std::fs::write(
            &path,
            format!(
                "- username: {name}\n- logging:\n    level: warn\n- server:\n    url: {}\n{yaml}",
                self.url
            ),
        )
        .expect("config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        (dir, config)
    }

    fn open(&self, config: &Config) -> Agent {
        let agent = Agent::open_with(
            config,
            &AgentOptions {
                cache_dir: Some(self.root.path().join("cache")),
                ..AgentOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(agent.load_errors.is_empty(), "{:?}", agent.load_errors);
        agent
    }

    fn session_config(&self, name: &str) -> SessionConfig {
        let key = komlogd::keys::load_or_create(&self.root.path().join(name).join("key.priv"))
            .expect("key");
        SessionConfig::new(self.endpoint.clone(), name, key.private).expect("session config")
    }
}

/// A daemon in a thread, stopped on drop of `stop`.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
}

impl Running {
    fn start(agent: Agent, config: Config, dir: &Path) -> Running {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let clock = Arc::new(komlogd::sources::jobs::SystemClock);
            runtime.block_on(komlogd::agent::daemon::run(agent, &config, clock, shutdown));
        });
        let socket = status::control_socket_path(dir);
        let start = Instant::now();
        while status::query(&socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agent did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Running {
            stop,
            thread: Some(thread),
            socket,
        }
    }

    fn server(&self) -> komlogd::session::ServerStatus {
        status::query(&self.socket)
            .expect("status")
            .server
            .expect("server line")
    }

    fn wait_connected(&self) {
        let start = Instant::now();
        while self.server().state != "connected" {
            assert!(start.elapsed() < Duration::from_secs(30), "not connected");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn main() {
    let n: usize = if quick() { 5_000 } else { 50_000 };
    let rounds: usize = if quick() { 100 } else { 500 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let root = tempfile::tempdir().expect("temp dir");
    let hub_dir = root.path().join("hub");
    let hub_store = Arc::new(RedbStore::open(&hub_dir).expect("hub store"));
    for name in ["alice", "bob", "carol"] {
        hub_store.add_user(&user(name)).expect("user");
    }
    for with in ["bob", "carol"] {
        hub_store
            .add_share(&Share {
                owner: user("alice"),
                prefix: "shared".into(),
                with: user(with),
            })
            .expect("share");
    }
    let running_hub = runtime
        .block_on(server::start(
            HubConfig::new("127.0.0.1:0".parse().expect("addr"), hub_dir),
            hub_store.clone() as Arc<dyn HubStore>,
        ))
        .expect("hub");
    let url = format!("http://127.0.0.1:{}/", running_hub.addr.port());
    let bench = Bench {
        root,
        endpoint: Endpoint::parse(&url).expect("endpoint"),
        url,
        hub_store,
    };

    println!(
        "komlogd connected-mode benchmarks (loopback, durable commits; {n} samples, {rounds} latency rounds)\n"
    );

    // 1. Outbox drain.
    let (dir_a, config_a) = bench.agent_dir("alice", "");
    let bare_rate = runtime.block_on(bare_drain(&bench, n));
    let mut agent = bench.open(&config_a);
    let t0 = now_us();
    let samples: Vec<Sample> = (0..n)
        .map(|i| Sample {
            uri: "drain.values".into(),
            ts: t0 + i as i64,
            value: Value::Datapoint(i as f64),
        })
        .collect();
    let fill = Instant::now();
    agent.dispatcher.ingest(samples).expect("fill the outbox");
    let fill_time = fill.elapsed();
    let a = Running::start(agent, config_a.clone(), &dir_a);
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let end = loop {
        let s = a.server();
        let now = Instant::now();
        if first.is_none() && s.acked > 0 {
            first = Some((now, s.acked));
        }
        if s.outbox == 0 && s.acked >= n as u64 {
            break now;
        }
        assert!(now < deadline, "the outbox did not drain: {s:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    let (t_first, acked_first) = first.expect("acks");
    let drained = (n as u64 - acked_first) as f64;
    let rate = drained / end.duration_since(t_first).as_secs_f64().max(1e-9);
    println!("1. Outbox → hub, one sample per message, 64 messages in flight, durable end to end");
    println!(
        "   agent outbox drain: {:>9.0} samples/s   bare session baseline: {:>9.0} samples/s   ratio {:.2}×",
        rate,
        bare_rate,
        rate / bare_rate
    );
    println!(
        "   (filling the outbox with {n} samples in one commit took {:.1} ms)",
        fill_time.as_secs_f64() * 1e3
    );

    // 2. Write-to-fire latency.
    let (dir_b, config_b) = bench.agent_dir(
        "bob",
        &format!(
            "- impulses:\n    filename: {}\n    uris: [alice:shared.lat]\n    params: {{mode: ok}}\n",
            guest("misbehave").display()
        ),
    );
    let mut agent_b = bench.open(&config_b);
    let (tap_tx, tap) = std::sync::mpsc::channel();
    agent_b.dispatcher.set_tap(tap_tx);
    // The uri must exist for the hook to be active at once.
    let _ = status::upload(
        &a.socket,
        &UploadRequest {
            uri: "shared.lat".into(),
            ts: now_us(),
            datapoint: Some(0.0),
            datasource: None,
        },
    );
    let b = Running::start(agent_b, config_b, &dir_b);
    b.wait_connected();
    while tap.try_recv().is_ok() {}
    let mut lat = Vec::with_capacity(rounds);
    let mut committed = Vec::with_capacity(rounds);
    let mut stored = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        status::upload(
            &a.socket,
            &UploadRequest {
                uri: "shared.lat".into(),
                ts: now_us(),
                datapoint: Some(i as f64),
                datasource: None,
            },
        )
        .expect("upload");
        committed.push(start.elapsed().as_secs_f64() * 1e3);
        let tapped = tap
            .recv_timeout(Duration::from_secs(10))
            .expect("bob's impulse fired");
        lat.push(tapped.fired_at.duration_since(start).as_secs_f64() * 1e3);
        stored.push(tapped.at.duration_since(start).as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(5));
    }
    for v in [&mut lat, &mut committed, &mut stored] {
        v.sort_by(|x, y| x.total_cmp(y));
    }
    let (bare50, bare99) = runtime.block_on(bare_latency(&bench, rounds));
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!("\n2. Write → fire: agent A's upload to agent B's impulse call returning its output");
    println!(
        "   agents: p50 {p50:.2} ms  p99 {p99:.2} ms   bare sessions write → notification: p50 {bare50:.2} ms  p99 {bare99:.2} ms   ratio p50 {:.1}×",
        p50 / bare50
    );
    println!(
        "   (on the way: A's upload committed p50 {:.2} ms; B's output stored p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&committed, 0.5),
        percentile(&stored, 0.5),
        percentile(&stored, 0.99)
    );
    let commit = fsync_cost(bench.root.path());
    println!(
        "   (one durable redb commit of one sample here: p50 {:.2} ms; the agents' path holds three: A's upload, the hub's write, B's output)",
        commit
    );
    drop(b);
    drop(a);
    let _ = runtime.block_on(running_hub.stop());
}

/// Samples per second of a bare session, one sample per message, 64 in flight.
async fn bare_drain(bench: &Bench, n: usize) -> f64 {
    let session = Session::login(bench.session_config("alice"))
        .await
        .expect("login");
    let t0 = now_us() - 3_600_000_000;
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    for i in 0..n {
        let t = TimeUuid::random_at(t0 + i as i64).expect("time");
        let s = komlog_session::Sample::datapoint("bare.values", t, i as f64).expect("sample");
        in_flight.push_back(session.submit_samples(t, &[s]).await.expect("send"));
        if in_flight.len() >= komlogd::session::WINDOW
            && let Some(p) = in_flight.pop_front()
        {
            p.wait().await.expect("reply");
        }
    }
    while let Some(p) = in_flight.pop_front() {
        p.wait().await.expect("reply");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    session.close().await;
    rate
}

/// p50/p99 in ms from a bare session's write to another bare session's notification.
async fn bare_latency(bench: &Bench, rounds: usize) -> (f64, f64) {
    let writer = Session::login(bench.session_config("alice"))
        .await
        .expect("login");
    let mut reader = Session::login(bench.session_config("bob"))
        .await
        .expect("login");
    let mut notes = reader.take_notifications().expect("notifications");
    reader.hook("alice:shared.lat").await.expect("hook");
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = TimeUuid::now();
        let s = komlog_session::Sample::datapoint("shared.lat", t, i as f64).expect("sample");
        let start = Instant::now();
        writer.send_samples(&[s]).await.expect("send");
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), notes.recv())
                .await
                .expect("a notification in time")
                .expect("connected");
            if n.t == t {
                break;
            }
        }
        lat.push(start.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.close().await;
    reader.close().await;
    lat.sort_by(|x, y| x.total_cmp(y));
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// p50 in ms of one durable commit of one sample in an agent store.
fn fsync_cost(dir: &Path) -> f64 {
    let mut store =
        komlogd::store::Store::open(&dir.join("fsync").join("store.redb")).expect("store");
    let mut times = Vec::new();
    for i in 0..100 {
        let s = Sample {
            uri: "x".into(),
            ts: i,
            value: Value::Datapoint(1.0),
        };
        let start = Instant::now();
        store.append(&[s]).expect("append");
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    percentile(&times, 0.5)
}
