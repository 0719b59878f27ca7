//! Failover between several servers (`- server: urls: [...]`) with real parts:
//! komlog-hubs in this process, each with its own data directory and the same
//! user and agent key, and a `komlogd` agent process configured with their
//! urls. A hub stopping (`RunningHub::stop` closes its sessions with 4503)
//! sends the agent to the next hub at once, not after a backoff, and every
//! sample the agent reported stored is held by exactly one of the hubs, under
//! the TimeUUID the agent gave it; a first url that refuses connections is
//! skipped at once for the next.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use komlog_hub::server::{self, Hub, HubConfig, RunningHub};
use komlog_hub::store::redb::RedbStore;
use komlog_protocol::{MetricId, TimeUuid};
use komlogd::session::ServerStatus;

use crate::connected::{Agent, now_us};
use crate::inproc::alice;

const URI: &str = "failover.values";

/// A hub with a fresh store in `dir`, alice, and the agent key `public_line`.
async fn start_hub(dir: &Path, public_line: &str) -> RunningHub {
    let data = dir.join("hub");
    std::fs::create_dir_all(&data).expect("hub dir");
    let store = RedbStore::open(&data).expect("hub store");
    let listen = "127.0.0.1:0".parse().expect("addr");
    let running = server::start(HubConfig::new(listen, data), Arc::new(store))
        .await
        .expect("hub starts");
    let store = running.hub.store.as_ref();
    store.add_user(&alice()).expect("user");
    store.add_agent(&alice(), public_line).expect("agent key");
    running
}

fn url_of(hub: &RunningHub) -> String {
    format!("http://127.0.0.1:{}/", hub.addr.port())
}

/// What a hub holds for alice's `URI`: TimeUUID → value.
fn rows(hub: &Hub) -> BTreeMap<TimeUuid, String> {
    let id = MetricId {
        owner: alice(),
        local: URI.into(),
    };
    hub.store
        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 1_000_000)
        .expect("hub read")
        .into_iter()
        .collect()
}

/// Alice's key pair, made before her agent so the hubs can register it.
fn alice_key(root: &Path) -> String {
    std::fs::create_dir_all(root.join("alice")).expect("agent dir");
    komlogd::keys::load_or_create(&root.join("alice").join("key.priv"))
        .expect("key")
        .public_line
}

/// Alice's agent (a process) with the `- server:` block `server`.
fn agent(root: &Path, server: &str) -> Agent {
    let (mut agent, _) = Agent::with_server(root, "alice", server, "");
    tokio::task::block_in_place(|| agent.start());
    agent
}

/// Watches the agent's server status (polled from the test) for a backoff.
struct Watch<'a> {
    agent: &'a Agent,
    backoffs: Vec<ServerStatus>,
}

impl Watch<'_> {
    fn status(&mut self) -> ServerStatus {
        let s = tokio::task::block_in_place(|| self.agent.server());
        if s.state == "backoff" {
            self.backoffs.push(s.clone());
        }
        s
    }

    /// Poll every 5 ms until `ok` holds, at most `limit`.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&ServerStatus) -> bool,
    ) -> ServerStatus {
        let start = Instant::now();
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_hub_sends_the_agent_to_the_next_at_once_and_loses_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let public_line = alice_key(root.path());
    let hub1 = start_hub(&root.path().join("h1"), &public_line).await;
    let hub2 = start_hub(&root.path().join("h2"), &public_line).await;
    let (url1, url2) = (url_of(&hub1), url_of(&hub2));
    let mut agent = agent(root.path(), &format!("    urls: [{url1}, {url2}]\n"));
    let mut watch = Watch {
        agent: &agent,
        backoffs: Vec::new(),
    };
    let first = watch
        .until("connected to the first hub", Duration::from_secs(60), |s| {
            s.state == "connected"
        })
        .await;
    assert_eq!(first.url, url1, "the first url first: {first:?}");
    assert_eq!(first.urls, [url1.clone(), url2.clone()]);
    assert_eq!(first.logins, 1);

    let t0 = now_us() - 60_000_000;
    let n: i64 = 300;
    let upload = |i: i64| {
        tokio::task::block_in_place(|| agent.upload(URI, t0 + i * 1000, i as f64));
    };
    // Samples flow to the first hub; the stop comes when it has answered
    // everything sent, and the next samples come once the agent has seen the
    // close (a write in flight when a hub closes may be stored by it
    // unanswered, and then by the next one too: the agent cannot know).
    for i in 0..n / 2 {
        upload(i);
    }
    watch
        .until(
            "the first half acknowledged",
            Duration::from_secs(30),
            |s| s.outbox == 0,
        )
        .await;
    let hub1_state = Arc::clone(&hub1.hub);
    let stopped_at = Instant::now();
    let stopping = tokio::spawn(hub1.stop());
    // Once the agent has let go of the first hub, samples keep coming while
    // it moves (and after).
    watch
        .until("the first hub let go", Duration::from_secs(10), |s| {
            s.state != "connected" || s.url != url1
        })
        .await;
    let mut moved = None;
    for i in n / 2..n {
        upload(i);
        let s = watch.status();
        if moved.is_none() && s.state == "connected" && s.url == url2 {
            moved = Some(stopped_at.elapsed());
        }
    }
    let moved = match moved {
        Some(d) => d,
        None => {
            watch
                .until(
                    "connected to the second hub",
                    Duration::from_secs(30),
                    |s| s.state == "connected" && s.url == url2,
                )
                .await;
            stopped_at.elapsed()
        }
    };
    stopping
        .await
        .expect("the stop task")
        .expect("the first hub stops");
    let done = watch
        .until("every sample acknowledged", Duration::from_secs(60), |s| {
            s.outbox == 0 && s.state == "connected"
        })
        .await;

    // At once: no backoff (its first delay is 125 to 250 ms) and one login more.
    assert!(
        watch.backoffs.is_empty(),
        "the agent backed off ({} polls in backoff), first: {:?}",
        watch.backoffs.len(),
        watch.backoffs.first()
    );
    assert!(moved < Duration::from_secs(5), "moved after {moved:?}");
    assert_eq!(done.url, url2, "{done:?}");
    assert_eq!(done.logins, 2, "{done:?}");
    assert_eq!(done.refused, 0, "{done:?}");
    let error = done.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&url1) && error.contains("4503"),
        "the last error names the first hub and its close code: {done:?}"
    );
    let log = agent.log();
    assert!(
        log.contains(&format!("logged in to the server at {url2}")),
        "the log names the new server"
    );
    assert!(
        log.contains(&format!("trying {url2} at once")),
        "the log says the move was at once"
    );

    // Each sample exactly once across both hubs, under one TimeUUID.
    let (held1, held2) = (rows(&hub1_state), rows(&hub2.hub));
    assert!(
        !held1.is_empty() && !held2.is_empty(),
        "both hubs got samples"
    );
    let twice: Vec<&TimeUuid> = held1.keys().filter(|t| held2.contains_key(t)).collect();
    assert!(twice.is_empty(), "held by both hubs: {twice:?}");
    let mut by_time: BTreeMap<i64, Vec<(TimeUuid, String)>> = BTreeMap::new();
    for (t, v) in held1.into_iter().chain(held2) {
        by_time.entry(t.micros()).or_default().push((t, v));
    }
    for i in 0..n {
        let ts = t0 + i * 1000;
        let held = by_time.remove(&ts).unwrap_or_default();
        assert_eq!(held.len(), 1, "sample {i} at {ts}: {held:?}");
        assert_eq!(held[0].1, i.to_string(), "sample {i}");
    }
    assert!(by_time.is_empty(), "samples never uploaded: {by_time:?}");

    drop(watch);
    agent.stop();
    hub2.stop().await.expect("the second hub stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_url_refusing_connections_is_skipped_for_the_next() {
    let root = tempfile::tempdir().expect("tempdir");
    let public_line = alice_key(root.path());
    // A port nothing listens on: connections to it are refused.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("http://127.0.0.1:{}/", l.local_addr().expect("addr").port())
    };
    let hub = start_hub(&root.path().join("h"), &public_line).await;
    let url = url_of(&hub);
    let mut agent = agent(
        root.path(),
        &format!("    urls:\n      - {closed}\n      - {url}\n"),
    );
    let mut watch = Watch {
        agent: &agent,
        backoffs: Vec::new(),
    };
    let up = watch
        .until(
            "connected to the second url",
            Duration::from_secs(60),
            |s| s.state == "connected",
        )
        .await;
    assert_eq!(up.url, url, "{up:?}");
    assert_eq!(up.logins, 1, "{up:?}");
    let error = up.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with(&format!("{closed}: cannot log in")),
        "the last error names the refusing url: {up:?}"
    );
    assert!(up.last_error_is_past(), "{up:?}");
    let log = agent.log();
    assert!(
        log.contains(&format!("trying {url} at once")),
        "no backoff before the second url"
    );
    assert!(!log.contains("retry_in_ms"), "the agent backed off:\n{log}");
    assert!(
        watch.backoffs.is_empty(),
        "the agent backed off: {:?}",
        watch.backoffs.first()
    );

    let ts = now_us();
    tokio::task::block_in_place(|| agent.upload(URI, ts, 7.0));
    watch
        .until("the sample acknowledged", Duration::from_secs(30), |s| {
            s.outbox == 0 && s.acked == 1
        })
        .await;
    let held: Vec<(i64, String)> = rows(&hub.hub)
        .into_iter()
        .map(|(t, v)| (t.micros(), v))
        .collect();
    assert_eq!(held, [(ts, "7".to_owned())]);
    drop(watch);
    agent.stop();
    hub.stop().await.expect("the hub stops");
}
