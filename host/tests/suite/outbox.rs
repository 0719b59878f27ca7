//! The outbox against a real komlog-hub (in process, on 127.0.0.1): whatever
//! the order in which samples are committed — same and different times, any
//! uri order, commits while earlier sends are in flight, the session kicked
//! and logged in again in between — the outbox drains to zero with no further
//! event, and the hub then holds exactly the samples committed (the last value
//! of each uri and time). Cases are drawn from seeds; a failure names its
//! seed, and `KOMLOGD_OUTBOX_SEED=N` runs that case alone.
//!
//! Also: the samples of one time go in one message, even when they are more
//! than one read of the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use komlog_hub::server::{self, HubConfig, RunningHub};
use komlog_hub::store::redb::RedbStore;
use komlog_protocol::{MetricId, TimeUuid};
use komlogd::model::{Sample, Value};
use komlogd::session::ServerStatus;

use crate::inproc;

use inproc::{add_alice, alice};

/// How long a drained outbox may take after the last commit (a reconnect
/// waits up to 250 ms; the rest is the machine's load).
const DRAIN: Duration = Duration::from_secs(30);

async fn start_hub(dir: &std::path::Path) -> RunningHub {
    start_hub_on(dir, 0).await
}

/// A hub with a fresh store in `dir` on `port` (0: any), alice and her key.
async fn start_hub_on(dir: &std::path::Path, port: u16) -> RunningHub {
    let store = RedbStore::open(&dir.join("hub")).expect("hub store");
    let listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let config = HubConfig::new(listen, dir.join("hub"));
    let running = server::start(config, Arc::new(store))
        .await
        .expect("hub starts");
    add_alice(running.hub.store.as_ref());
    running
}

/// Alice's agent, linked to the hub on `port`.
fn agent(port: u16) -> inproc::Agent {
    inproc::Agent::start(port, Vec::new(), Duration::from_secs(20))
}

/// Wait until the outbox is empty, with nothing committed meanwhile.
async fn drained(agent: &inproc::Agent, what: &str) -> ServerStatus {
    agent
        .until(&format!("{what}: the outbox drained"), DRAIN, |s| {
            s.outbox == 0 && s.state == "connected"
        })
        .await
}

/// A small deterministic generator (xorshift64*), so a case is its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the hub holds for `uri` of alice: time (µs) → value text.
fn hub_rows(hub: &RunningHub, uri: &str) -> BTreeMap<i64, String> {
    let id = MetricId {
        owner: alice(),
        local: uri.into(),
    };
    hub.hub
        .store
        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 1_000_000)
        .expect("hub read")
        .into_iter()
        .map(|(t, v)| (t.micros(), v))
        .collect()
}

/// One case: random batches at a few times over a few uris (so later commits
/// land behind the sender's cursor, at its own time and before it), random
/// pauses, sometimes a kick; then the outbox must drain by itself and the hub
/// must hold the last value of every (uri, time).
async fn run_case(hub: &RunningHub, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let agent = agent(hub.addr.port());
    let prefix = format!("case{seed}");
    let uris: Vec<String> = ["a1", "b2", "m3", "t1", "z9"]
        .iter()
        .map(|u| format!("{prefix}.{u}"))
        .collect();
    let base: i64 = 1_700_000_000_000_000 + (seed as i64) * 1_000;
    let mut expected: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let steps = 10 + rng.below(40);
    for _ in 0..steps {
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let uri = uris[rng.below(uris.len() as u64) as usize].clone();
            let ts = base + rng.below(8) as i64;
            let value = rng.below(1000) as f64;
            expected.insert((uri.clone(), ts), value);
            batch.push(Sample {
                uri,
                ts,
                value: Value::Datapoint(value),
            });
        }
        // The dispatcher stores a batch's samples of one (uri, time) once:
        // the last one wins, as in `expected`.
        agent.commit(batch);
        match rng.below(10) {
            0..=3 => {}
            4..=8 => tokio::time::sleep(Duration::from_micros(rng.below(3_000))).await,
            _ => {
                hub.hub.sessions.kick(&alice(), None);
            }
        }
    }
    let status = drained(&agent, &format!("seed {seed}")).await;
    for uri in &uris {
        let want: BTreeMap<i64, String> = expected
            .iter()
            .filter(|((u, _), _)| u == uri)
            .map(|((_, ts), v)| (*ts, format!("{v}")))
            .collect();
        assert_eq!(
            hub_rows(hub, uri),
            want,
            "seed {seed}: the hub's rows of {uri} (agent: {status:?})"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_drains_by_itself_whatever_the_order_of_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let seeds: Vec<u64> = match std::env::var("KOMLOGD_OUTBOX_SEED") {
        Ok(s) => vec![s.parse().expect("KOMLOGD_OUTBOX_SEED is a number")],
        Err(_) => (1..=40).collect(),
    };
    for seed in seeds {
        run_case(&hub, seed).await;
    }
    hub.stop().await.expect("hub stops");
}

/// The case, exactly: a sample at t1.in, then (as an impulse would,
/// after t1.in was sent) one at the same time under a uri that sorts before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_committed_behind_the_cursor_at_the_same_time_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let agent = agent(hub.addr.port());
    let ts = 1_700_000_123_000_000;
    let dp = |uri: &str, v: f64| Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    };
    agent.commit(vec![dp("t1.in", 5.0)]);
    let first = drained(&agent, "t1.in").await;
    assert_eq!(first.acked, 1);
    agent.commit(vec![dp("a1.before", 6.0)]);
    let second = drained(&agent, "a1.before").await;
    assert_eq!(second.acked, 2, "{second:?}");
    assert_eq!(
        hub_rows(&hub, "a1.before").get(&ts).map(String::as_str),
        Some("6")
    );
    agent.stop().await;
    hub.stop().await.expect("hub stops");
}

/// 2,100 samples of one time (more than one read of the outbox) and 10 of the
/// next go in two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_of_one_time_go_in_one_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    // No server yet: the samples wait in the outbox, then go at the login.
    let port = hub.addr.port();
    hub.stop().await.expect("hub stops");
    let agent = agent(port);
    let ts = 1_700_000_456_000_000;
    let mut batch: Vec<Sample> = (0..2_100)
        .map(|i| Sample {
            uri: format!("many.u{i:04}"),
            ts,
            value: Value::Datapoint(i as f64),
        })
        .collect();
    batch.extend((0..10).map(|i| Sample {
        uri: format!("many.u{i:04}"),
        ts: ts + 1,
        value: Value::Datapoint(-(i as f64)),
    }));
    agent.commit(batch);
    let second = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_on(second.path(), port).await;
    let status = drained(&agent, "2,110 samples").await;
    assert_eq!(status.acked, 2_110, "{status:?}");
    assert_eq!(status.messages, 2, "one message per time: {status:?}");
    assert_eq!(hub_rows(&hub, "many.u2099").len(), 1);
    assert_eq!(hub_rows(&hub, "many.u0009").len(), 2);
    agent.stop().await;
    hub.stop().await.expect("hub stops");
}

/// Run `komlogd -c CONFIG -u URI --datapoint` with `value` on stdin.
fn upload(config: &std::path::Path, uri: &str, value: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_komlogd"))
        .arg("-c")
        .arg(config)
        .args(["-u", uri, "--datapoint"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("komlogd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("komlogd ends")
}

/// A one-shot `komlogd -u` with a server configured and no agent running sends
/// the outbox before it exits; with the server down it says the sample is only
/// queued, and the next upload sends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_upload_sends_the_outbox_or_says_it_is_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    let key = komlogd::keys::load_or_create(&agent_dir.join("key.priv")).expect("agent key");
    let hub = start_hub(&dir.path().join("h1")).await;
    hub.hub
        .store
        .add_agent(&alice(), &key.public_line)
        .expect("agent key registered");
    let port = hub.addr.port();
    let config = agent_dir.join("komlogd.yaml");
    std::fs::write(
        &config,
        format!("- username: alice\n- server:\n    url: http://127.0.0.1:{port}/\n"),
    )
    .expect("config");

    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || upload(&config, "one.shot", "5")
    })
    .await
    .expect("upload");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "sent to http://127.0.0.1:{port}/: 1 sample acknowledged, outbox empty"
        )),
        "{stdout}{stderr}"
    );
    assert_eq!(
        hub_rows(&hub, "one.shot").values().collect::<Vec<_>>(),
        ["5"]
    );

    // The hub is down: the sample is stored and queued, and the user is told.
    hub.stop().await.expect("hub stops");
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || upload(&config, "one.shot", "6")
    })
    .await
    .expect("upload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("not sent to http://127.0.0.1:{port}/"))
            && stderr.contains("stored and queued: 1 sample in the outbox"),
        "{stderr}"
    );

    // Back up: the next upload sends the queued sample and its own.
    let hub = start_hub_on(&dir.path().join("h2"), port).await;
    hub.hub
        .store
        .add_agent(&alice(), &key.public_line)
        .expect("agent key registered");
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || upload(&config, "one.shot", "7")
    })
    .await
    .expect("upload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 samples acknowledged, outbox empty"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut values: Vec<String> = hub_rows(&hub, "one.shot").into_values().collect();
    values.sort();
    assert_eq!(values, ["6", "7"]);
    hub.stop().await.expect("hub stops");
}
