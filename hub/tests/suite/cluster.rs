//! Three `komlog-hub serve` processes on one PostgreSQL (127.0.0.1:5432,
//! database `test`, a schema of the test's own) and one NATS server with
//! JetStream (127.0.0.1:4222, a cluster name and so a stream of the test's
//! own), as one service: logins, shares, hooks, notifications, kicks and reads
//! across hubs, `/health` and `/metrics`, and a drain on SIGTERM.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use komlog_hub::store::{HubStore, Share};
use komlog_protocol::{
    Body, DpData, Kind, MultiData, MultiItem, RequestData, Status, TimeUuid, Uri, UriPayload,
};

use crate::common::{self, Client, Served, WAIT, key, public_line, skip, up, user};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS: &str = "nats://127.0.0.1:4222";

/// A cluster of hub processes with its own schema and stream, removed on drop.
pub struct Cluster {
    pub name: String,
    pub url: String,
    schema: String,
    pub hubs: Vec<Option<Served>>,
    pub addrs: Vec<SocketAddr>,
    pub dirs: Vec<tempfile::TempDir>,
    pub store: komlog_hub::store::postgres::PgStore,
}

async fn sql(batch: &str) {
    let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    let task = tokio::spawn(conn);
    client.batch_execute(batch).await.expect(batch);
    drop(client);
    let _ = task.await;
}

impl Cluster {
    /// `n` hubs, or none (the test skips) without PostgreSQL or NATS.
    pub async fn start(n: usize) -> Option<Cluster> {
        if !up("127.0.0.1:5432") {
            skip("no PostgreSQL at 127.0.0.1:5432");
            return None;
        }
        if !up("127.0.0.1:4222") {
            skip("no NATS server at 127.0.0.1:4222");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}_{seq}", std::process::id());
        let schema = format!("hubcluster_{tag}");
        let name = format!("test_{tag}");
        sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await;
        let url = format!("{PG}?options=-csearch_path%3D{schema}");
        let store = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                komlog_hub::store::postgres::PgStore::connect(&url, None)
            })
            .await
            .unwrap()
            .expect("the cluster's store")
        };
        let mut cluster = Cluster {
            name,
            url,
            schema,
            hubs: Vec::new(),
            addrs: Vec::new(),
            dirs: Vec::new(),
            store,
        };
        for _ in 0..n {
            cluster.add_hub();
        }
        Some(cluster)
    }

    /// Start one more hub of the cluster; returns its index.
    pub fn add_hub(&mut self) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Served::start_logging(
            dir.path(),
            &["--store", &self.url, "--bus", NATS, "--cluster", &self.name],
            std::process::Stdio::inherit(),
        );
        self.addrs.push(hub.addr());
        self.hubs.push(Some(hub));
        self.dirs.push(dir);
        self.hubs.len() - 1
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// A user with agent key `key_index`, in the cluster's store.
    pub fn add_user_with_key(&self, name: &str, key_index: usize) -> String {
        let u = user(name);
        if !self.store.user_exists(&u).unwrap() {
            self.store.add_user(&u).unwrap();
        }
        self.store
            .add_agent(&u, &public_line(key(key_index)))
            .unwrap()
            .id
    }

    pub fn share(&self, owner: &str, prefix: &str, with: &str) {
        self.store
            .add_share(&Share {
                owner: user(owner),
                prefix: prefix.into(),
                with: user(with),
            })
            .unwrap();
    }

    /// Log in at hub `i` and open a websocket there.
    pub async fn connect(&self, i: usize, name: &str, key_index: usize) -> Client {
        let cookie = common::login_ok(self.addr(i), name, key(key_index)).await;
        Client::open(self.addr(i), Some(&cookie)).await
    }

    /// `komlog-hub --data <hub i's data> args…` (through the running hub i).
    pub fn admin(&self, i: usize, args: &[&str]) -> std::process::Output {
        common::hub_cmd(self.dirs[i].path(), args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for hub in self.hubs.iter_mut().filter_map(Option::take) {
            drop(hub);
        }
        let schema = self.schema.clone();
        let stream = format!("KOMLOG_{}", self.name.to_ascii_uppercase());
        // Clean up on a runtime of its own: drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                if let Ok(client) = async_nats::connect("127.0.0.1:4222").await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = komlog_hub::http_client::request(addr, "GET", path, &[], Vec::new(), WAIT)
        .await
        .expect(path);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn dp(uri: &str, t: TimeUuid, v: &str) -> Body {
    Body::SendDpData(DpData {
        uri: Uri::parse(uri).unwrap(),
        t,
        content: v.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_share_logins_hooks_notifications_and_reads() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    cluster.add_user_with_key("alice", 0);
    cluster.add_user_with_key("bob", 1);
    cluster.share("alice", "host", "bob");

    // A challenge issued by hub 0 is answered at hub 1, once: hub 2 refuses
    // the same answer as used.
    let asked = common::ask_challenge(cluster.addr(0), "alice", key(0)).await;
    assert_eq!(asked.status, 200, "{:?}", asked.json());
    let challenge = asked.json().unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, s) = komlog_protocol::login::answer_challenge(key(0), &challenge).unwrap();
    let answered = common::answer(cluster.addr(1), "alice", key(0), &c, &s).await;
    assert_eq!(answered.status, 200, "{:?}", answered.json());
    let again = common::answer(cluster.addr(2), "alice", key(0), &c, &s).await;
    assert_eq!(again.status, 403);
    assert_eq!(common::login_error(&again), 3807, "used at another hub");
    // The cookie hub 1 set opens a websocket at hub 2.
    let cookie = answered.set_cookie("kid").expect("kid cookie");
    let mut alice = Client::open(cluster.addr(2), Some(&cookie)).await;

    // bob on hub 0 hooks alice's existing uri and one that does not exist yet.
    let mut bob = cluster.connect(0, "bob", 1).await;
    let t0 = TimeUuid::now();
    let r = alice.request(dp("host.cpu", t0, "1.5")).await;
    common::assert_status(&r, Status::OK, "first write");
    let _ = bob_hook(&mut bob, "alice:host.cpu").await;
    let pending = bob_hook(&mut bob, "alice:host.mem").await;
    assert_eq!(pending, Status::NOT_FOUND, "a pending hook");

    // Writes at hub 2 reach bob at hub 0, in write order.
    let mut sent = Vec::new();
    for i in 0..20 {
        let t = TimeUuid::now();
        let r = alice.request(dp("host.cpu", t, &format!("{i}"))).await;
        common::assert_status(&r, Status::OK, "write");
        sent.push((t, format!("{i}")));
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < sent.len() && Instant::now() < deadline {
        if let Body::SendMultiData(m) = bob.next().await.body {
            for item in m.uris {
                assert_eq!(item.uri.to_string(), "alice:host.cpu");
                got.push((m.t, item.content));
            }
        }
    }
    assert_eq!(got, sent, "every notification once, in write order");

    // A write creating the pending uri activates bob's hook on another hub.
    let t = TimeUuid::now();
    let r = alice
        .request(Body::SendMultiData(MultiData {
            t,
            uris: vec![MultiItem {
                uri: Uri::parse("host.mem").unwrap(),
                kind: Kind::Datapoint,
                content: "7".into(),
            }],
        }))
        .await;
    common::assert_status(&r, Status::OK, "multi write");
    let note = bob.next().await;
    match note.body {
        Body::SendMultiData(m) => {
            assert_eq!(m.t, t);
            assert_eq!(m.uris[0].uri.to_string(), "alice:host.mem");
            assert_eq!(m.uris[0].content, "7");
        }
        other => panic!("expected the activated hook's notification, got {other:?}"),
    }

    // Reads at hub 1 see what was written at hub 2, paged as on one hub.
    let mut reader = cluster.connect(1, "bob", 1).await;
    let seq = reader
        .send(Body::RequestData(RequestData {
            uri: Uri::parse("alice:host.cpu").unwrap(),
            start: Some(TimeUuid::MIN),
            end: Some(TimeUuid::MAX),
            count: None,
        }))
        .await;
    let first = reader.reply_to(seq).await;
    assert_eq!(first.status, Status::ACCEPTED);
    let mut rows = Vec::new();
    while rows.len() < 21 {
        if let Body::SendDataInterval(d) = reader.next().await.body {
            rows.extend(d.data.into_iter().map(|row| row.1));
        }
    }
    assert_eq!(rows.len(), 21);
    assert_eq!(rows[0], "19", "newest first");

    // Health and metrics of each hub.
    for i in 0..3 {
        let (status, body) = get(cluster.addr(i), "/health").await;
        assert_eq!(status, 200, "hub {i}: {body}");
        let (status, body) = get(cluster.addr(i), "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("# TYPE komlog_hub_bus_received_total counter"),
            "{body}"
        );
    }
    let (_, metrics2) = get(cluster.addr(2), "/metrics").await;
    assert!(
        metrics2.contains("komlog_hub_writes_total 22\n"),
        "{metrics2}"
    );
    assert!(
        metrics2.contains("komlog_hub_samples_total 22\n"),
        "{metrics2}"
    );
}

async fn bob_hook(bob: &mut Client, uri: &str) -> Status {
    bob.request(Body::HookToUri(UriPayload {
        uri: Uri::parse(uri).unwrap(),
    }))
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_kicks_its_session_on_another_hub_within_a_second() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let id = cluster.add_user_with_key("carol", 2);
    let mut carol = cluster.connect(1, "carol", 2).await;
    let r = carol.request(dp("x.y", TimeUuid::now(), "1")).await;
    common::assert_status(&r, Status::OK, "write before the removal");
    let started = Instant::now();
    let out = cluster.admin(0, &["agent", "remove", "carol", "--id", &id]);
    common::ok(&out);
    carol.expect_close(4403).await;
    assert!(
        started.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
        "kicked after {:?}",
        started.elapsed()
    );
    // The key no longer logs in anywhere.
    let refused = common::ask_challenge(cluster.addr(1), "carol", key(2)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(common::login_error(&refused), 3703, "key not registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_hub_closes_with_4503_and_its_agents_log_in_elsewhere() {
    let Some(mut cluster) = Cluster::start(2).await else {
        return;
    };
    cluster.add_user_with_key("dave", 3);
    let mut on0 = cluster.connect(0, "dave", 3).await;
    let hub0 = cluster.hubs[0].take().unwrap();
    let stopper = std::thread::spawn(move || hub0.stop());
    on0.expect_close(4503).await;
    let status = stopper.join().unwrap();
    assert!(status.success(), "{status}");
    let mut on1 = cluster.connect(1, "dave", 3).await;
    let r = on1.request(dp("x.y", TimeUuid::now(), "2")).await;
    common::assert_status(&r, Status::OK, "write at the other hub");
}
