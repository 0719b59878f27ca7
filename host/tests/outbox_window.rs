//! The outbox's sender against a real komlog-hub (in process, on 127.0.0.1):
//! at most 64 messages are in flight before it waits for a reply, and a sample
//! the server refuses is logged, counted and removed from the outbox.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use komlog_hub::server::{self, HubConfig, RunningHub};
use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{
    AgentRecord, HubStore, NewSample, Share, StoreError, TokenRecord, WriteOutcome,
};
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use komlogd::model::{Sample, Value};

#[path = "common/inproc.rs"]
mod inproc;

use inproc::{add_alice, alice};

const LIMIT: Duration = Duration::from_secs(30);

/// Every log line of this test binary (the link logs from its own tasks).
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || W(buf))
            .init();
        buf
    })
}

/// The redb store, whose writes wait while the gate is closed.
struct GatedStore {
    inner: RedbStore,
    open: Mutex<bool>,
    opened: Condvar,
}

impl GatedStore {
    fn wait_open(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn set_open(&self, value: bool) {
        *self.open.lock().unwrap() = value;
        self.opened.notify_all();
    }
}

impl HubStore for GatedStore {
    fn add_user(&self, name: &komlog_protocol::Username) -> Result<(), StoreError> {
        self.inner.add_user(name)
    }
    fn user_exists(&self, name: &komlog_protocol::Username) -> Result<bool, StoreError> {
        self.inner.user_exists(name)
    }
    fn users(&self) -> Result<Vec<komlog_protocol::Username>, StoreError> {
        self.inner.users()
    }
    fn add_agent(
        &self,
        owner: &komlog_protocol::Username,
        public_line: &str,
    ) -> Result<AgentRecord, StoreError> {
        self.inner.add_agent(owner, public_line)
    }
    fn find_agent(
        &self,
        owner: &komlog_protocol::Username,
        public_line: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.find_agent(owner, public_line)
    }
    fn agents_of(&self, owner: &komlog_protocol::Username) -> Result<Vec<AgentRecord>, StoreError> {
        self.inner.agents_of(owner)
    }
    fn add_share(&self, share: &Share) -> Result<(), StoreError> {
        self.inner.add_share(share)
    }
    fn shares_of(&self, owner: &komlog_protocol::Username) -> Result<Vec<Share>, StoreError> {
        self.inner.shares_of(owner)
    }
    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError> {
        self.inner.metric_kind(id)
    }
    fn metrics_of(
        &self,
        owner: &komlog_protocol::Username,
    ) -> Result<Vec<(String, Kind)>, StoreError> {
        self.inner.metrics_of(owner)
    }
    fn write(
        &self,
        owner: &komlog_protocol::Username,
        samples: &[NewSample],
    ) -> Result<WriteOutcome, StoreError> {
        self.wait_open();
        self.inner.write(owner, samples)
    }
    fn write_group(
        &self,
        writes: &[(komlog_protocol::Username, Vec<NewSample>)],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        self.wait_open();
        self.inner.write_group(writes)
    }
    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError> {
        self.inner.set_supplies(id, supplies)
    }
    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.supplies(id)
    }
    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.inner.read_newest(id, start, end, limit)
    }
    fn read_oldest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.inner.read_oldest(id, start, end, limit)
    }
    fn set_password(&self, user: &Username, phc: Option<&str>) -> Result<(), StoreError> {
        self.inner.set_password(user, phc)
    }
    fn password(&self, user: &Username) -> Result<Option<String>, StoreError> {
        self.inner.password(user)
    }
    fn add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        self.inner.add_token(owner, name, digest)
    }
    fn find_token(&self, digest: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.find_token(digest)
    }
    fn tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens_of(owner)
    }
    fn remove_token(&self, owner: &Username, name: &str) -> Result<bool, StoreError> {
        self.inner.remove_token(owner, name)
    }
    fn note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError> {
        self.inner.note_login(agent_id, at_us)
    }
    fn last_logins(
        &self,
        owner: &Username,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.inner.last_logins(owner)
    }
}

/// A hub with a fresh store in `dir` (writes gated, the gate open), alice and her key.
async fn start_hub(dir: &std::path::Path) -> (RunningHub, Arc<GatedStore>) {
    let store = Arc::new(GatedStore {
        inner: RedbStore::open(&dir.join("hub")).expect("hub store"),
        open: Mutex::new(true),
        opened: Condvar::new(),
    });
    let config = HubConfig::new("127.0.0.1:0".parse().expect("addr"), dir.join("hub"));
    let running = server::start(config, Arc::clone(&store) as Arc<dyn HubStore>)
        .await
        .expect("hub starts");
    add_alice(store.as_ref());
    (running, store)
}

/// Alice's agent, linked to the hub on `port`.
fn agent(port: u16) -> inproc::Agent {
    inproc::Agent::start(port, Vec::new(), Duration::from_secs(60))
}

fn dp(uri: &str, ts: i64, v: f64) -> Sample {
    Sample {
        uri: uri.into(),
        ts,
        value: Value::Datapoint(v),
    }
}

fn hub_rows(hub: &RunningHub, uri: &str) -> Vec<(i64, String)> {
    let id = MetricId {
        owner: alice(),
        local: uri.into(),
    };
    let mut rows: Vec<_> = hub
        .hub
        .store
        .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 1_000_000)
        .expect("hub read")
        .into_iter()
        .map(|(t, v)| (t.micros(), v))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_64_messages_are_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, gate) = start_hub(dir.path()).await;
    let agent = agent(hub.addr.port());
    agent
        .until("connected", LIMIT, |s| s.state == "connected")
        .await;
    // The hub holds every write: no reply comes until the gate opens.
    gate.set_open(false);
    let base = 1_700_000_000_000_000;
    // 200 times: 200 messages of one sample each.
    agent.commit((0..200).map(|i| dp("w", base + i, i as f64)).collect());
    let held = agent
        .until("64 messages sent", LIMIT, |s| s.sent >= 64)
        .await;
    // The sender sends its window at once: had it no limit, it would have
    // sent all 200 by the time it had sent 64. (`sent` counts samples, here
    // one per message.)
    assert_eq!((held.sent, held.acked), (64, 0), "{held:?}");
    assert_eq!(held.outbox, 200, "{held:?}");
    gate.set_open(true);
    let done = agent
        .until("the outbox drained", LIMIT, |s| {
            s.outbox == 0 && s.acked == 200
        })
        .await;
    assert_eq!((done.sent, done.refused), (200, 0), "{done:?}");
    assert_eq!(hub_rows(&hub, "w").len(), 200);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_the_server_refuses_is_logged_counted_and_removed() {
    let log = log();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, _gate) = start_hub(dir.path()).await;
    // At the hub, `r` is a datasource: a datapoint to it is refused.
    let base = 1_700_000_000_000_000;
    hub.hub
        .store
        .write(
            &alice(),
            &[NewSample {
                uri: "r".into(),
                kind: Kind::Datasource,
                t: TimeUuid::random_at(base - 1).expect("a time"),
                content: "text".into(),
            }],
        )
        .expect("seed");
    let agent = agent(hub.addr.port());
    agent.commit(vec![dp("r", base, 1.0), dp("ok", base + 1, 2.0)]);
    let done = agent
        .until("both answered", LIMIT, |s| {
            s.acked + s.refused >= 2 && s.outbox == 0
        })
        .await;
    assert_eq!(
        (done.acked, done.refused, done.outbox),
        (1, 1, 0),
        "{done:?}"
    );
    let error = done.last_error.clone().unwrap_or_default();
    assert!(error.starts_with("server refused"), "{error}");
    assert_eq!(hub_rows(&hub, "ok"), vec![(base + 1, "2".to_owned())]);
    assert_eq!(hub_rows(&hub, "r"), vec![(base - 1, "text".to_owned())]);
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.contains("the server refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("ERROR")
            && lines[0].contains("dropped from the outbox")
            && lines[0].contains("\"r\""),
        "{}",
        lines[0]
    );
    // Removed, not resent: a reconnect sends nothing more.
    hub.hub.sessions.kick(&alice(), None);
    let again = agent
        .until("logged in again", LIMIT, |s| {
            s.logins >= 2 && s.state == "connected"
        })
        .await;
    assert_eq!((again.sent, again.refused), (2, 1), "{again:?}");
    agent.stop().await;
}
