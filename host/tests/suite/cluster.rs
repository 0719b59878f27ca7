//! Agents against a cluster of hubs, with real parts on 127.0.0.1: three
//! `komlog-hub serve` processes on one PostgreSQL (127.0.0.1:5432, database
//! `test`, a schema of the test's own) and one NATS server with JetStream
//! (127.0.0.1:4222, a cluster name and so a stream of the test's own).
//!
//! - A hub SIGKILLed while three `komlogd -u` one-shot uploaders (each with
//!   `- server: urls:` listing every hub, starting on a different one) stream
//!   to it: every upload the server acknowledged (`sent to …`) is stored in
//!   PostgreSQL exactly once, nothing is stored twice or unasked, few uploads
//!   fail and only around the kill, and a hooked session of another user on
//!   another hub is notified of every stored sample, per uri in write order.
//! - The NATS server, then PostgreSQL, restarted while a session writes
//!   steadily (`service_restart_*`): during the outage no write is
//!   acknowledged and `/health` answers 503 naming the bus or the store; after
//!   it every hub recovers by itself (health 200, new writes acknowledged and
//!   notified across hubs), and every acknowledged write is in PostgreSQL.
//! - A komlogd agent whose hub loses PostgreSQL: what it uploads meanwhile
//!   waits in its outbox (none refused or dropped) and is delivered, once,
//!   when PostgreSQL is back.
//!
//! The tests that stop a service do not touch the machine's services: each
//! starts a PostgreSQL (initdb in a temporary directory, as the `postgres`
//! user when the test runs as root) and a NATS server of its own on free
//! ports, and stops and starts those. `.config/nextest.toml` runs this
//! module's tests one at a time (test group `komlogd-cluster`, for the load of
//! their hub processes), beside the rest of the suite; under `cargo test` a
//! lock serializes them. Without PostgreSQL or NATS (or, for the restart
//! tests, their `initdb` and `nats-server`) the tests skip (fail with
//! `KOMLOGD_TESTS_NO_SKIP`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use komlog_hub::store::postgres::PgStore;
use komlog_hub::store::{HubStore, Share};
use komlog_protocol::login::PrivateKey;
use komlog_protocol::{TimeUuid, Username};
use komlog_session::{Endpoint, HookOutcome, Sample, Session, SessionConfig};

use crate::common::child;
use crate::connected::{free_port, hub_bin, now_us};
use crate::sinks::skip;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS: &str = "nats://127.0.0.1:4222";
const PG_ADDR: &str = "127.0.0.1:5432";
const NATS_ADDR: &str = "127.0.0.1:4222";

/// This module's tests one at a time under `cargo test` (nextest runs each
/// test in a process of its own and uses the test group instead).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn up(addr: &str) -> bool {
    addr.parse()
        .is_ok_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

fn services_up() -> bool {
    if !up(PG_ADDR) {
        skip("no PostgreSQL at 127.0.0.1:5432");
        return false;
    }
    if !up(NATS_ADDR) {
        skip("no NATS server at 127.0.0.1:4222");
        return false;
    }
    true
}

/// Poll `f` every 50 ms until it gives Some, at most `limit`.
async fn until<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// The cluster

/// One `komlog-hub serve` process of the cluster.
struct HubProc {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl HubProc {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("serve.log")
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            child::signal(&c, 9);
            let _ = child::wait_within(&mut c, Duration::from_secs(10));
        }
    }
}

/// Hub processes with one schema and one stream, removed on drop.
struct Cluster {
    backends: Backends,
    name: String,
    url: String,
    schema: String,
    hubs: Vec<HubProc>,
    store: Arc<PgStore>,
}

/// Where a cluster keeps its data and sends its events.
#[derive(Clone, Debug)]
struct Backends {
    /// PostgreSQL, `postgres://user@host:port/database`.
    pg: String,
    /// NATS, `nats://host:port`.
    nats: String,
}

impl Backends {
    /// The machine's PostgreSQL and NATS.
    fn shared() -> Backends {
        Backends {
            pg: PG.into(),
            nats: NATS.into(),
        }
    }

    fn nats_addr(&self) -> &str {
        self.nats.trim_start_matches("nats://")
    }
}

async fn sql(pg: &str, batch: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(pg, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to PostgreSQL: {e}"))?;
    let task = tokio::spawn(conn);
    let done = client
        .batch_execute(batch)
        .await
        .map_err(|e| format!("{batch}: {e}"));
    drop(client);
    let _ = task.await;
    done
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Cluster::start_on(n, Backends::shared()).await
    }

    async fn start_on(n: usize, backends: Backends) -> Cluster {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let schema = format!("agentcluster_{tag}");
        let name = format!("agents_{tag}");
        sql(
            &backends.pg,
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        )
        .await
        .expect("a schema of the test's own");
        let url = format!("{}?options=-csearch_path%3D{schema}", backends.pg);
        let store = tokio::task::spawn_blocking({
            let url = url.clone();
            move || PgStore::connect(&url, None)
        })
        .await
        .expect("the store task")
        .expect("the cluster's store");
        let mut cluster = Cluster {
            backends,
            name,
            url,
            schema,
            hubs: Vec::new(),
            store: Arc::new(store),
        };
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("hub dir");
            let child = cluster.spawn_hub(dir.path());
            cluster.hubs.push(HubProc {
                child: Some(child),
                dir,
                addr: "127.0.0.1:0".parse().expect("addr"),
            });
        }
        for i in 0..n {
            cluster.hubs[i].addr = cluster.wait_listening(i).await;
        }
        cluster
    }

    fn spawn_hub(&self, dir: &Path) -> Child {
        let log = std::fs::File::create(HubProc::log_path(dir)).expect("hub log");
        Command::new(hub_bin())
            .arg("--data")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--store", &self.url, "--bus", &self.backends.nats])
            .args(["--cluster", &self.name])
            .env_remove("KOMLOG_HUB_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn komlog-hub serve")
    }

    /// The address hub `i` listens on, from its run file.
    async fn wait_listening(&mut self, i: usize) -> SocketAddr {
        let hub = &mut self.hubs[i];
        let run_file = hub.dir.path().join("hub.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&run_file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(addr) = v["listen"].as_str().and_then(|a| a.parse().ok())
            {
                return addr;
            }
            if let Some(c) = hub.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "hub {i} exited early ({status}):\n{}",
                    std::fs::read_to_string(HubProc::log_path(hub.dir.path())).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "hub {i}: no run file in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url_of(&self, i: usize) -> String {
        format!("http://{}/", self.hubs[i].addr)
    }

    async fn store<T: Send + 'static>(&self, f: impl FnOnce(&PgStore) -> T + Send + 'static) -> T {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .expect("a store call")
    }

    async fn add_user(&self, name: &str, public_lines: Vec<String>) {
        let user = Username::parse(name).expect("a username");
        self.store(move |s| {
            if !s.user_exists(&user).expect("user lookup") {
                s.add_user(&user).expect("add user");
            }
            for line in public_lines {
                s.add_agent(&user, &line).expect("add agent");
            }
        })
        .await;
    }

    async fn share(&self, owner: &str, prefix: &str, with: &str) {
        let share = Share {
            owner: Username::parse(owner).expect("owner"),
            prefix: prefix.into(),
            with: Username::parse(with).expect("reader"),
        };
        self.store(move |s| s.add_share(&share).expect("add share"))
            .await;
    }

    /// `owner`'s samples under `prefix` in PostgreSQL: (uri, t_us, content).
    async fn stored(&self, owner: &str, prefix: &str) -> Vec<(String, i64, String)> {
        let (client, conn) = tokio_postgres::connect(&self.backends.pg, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        let task = tokio::spawn(conn);
        let rows = client
            .query(
                &format!(
                    "SELECT m.uri, s.t_us, s.content FROM {0}.samples s \
                     JOIN {0}.metrics m ON m.id = s.metric \
                     WHERE m.owner = $1 AND m.uri LIKE $2 ORDER BY m.uri, s.t_us, s.k",
                    self.schema
                ),
                &[&owner, &format!("{prefix}%")],
            )
            .await
            .expect("read the samples");
        // No key twice: (metric, k) is one sample.
        let twice = client
            .query(
                &format!(
                    "SELECT metric, k, count(*) FROM {}.samples GROUP BY metric, k HAVING count(*) > 1",
                    self.schema
                ),
                &[],
            )
            .await
            .expect("count the keys");
        assert!(twice.is_empty(), "{} TimeUUIDs stored twice", twice.len());
        drop(client);
        let _ = task.await;
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// The last lines of every hub's log.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, hub) in self.hubs.iter().enumerate() {
            let log =
                std::fs::read_to_string(HubProc::log_path(hub.dir.path())).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "--- hub {i} ({}) log, last {} lines:\n{}\n",
                hub.addr,
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for hub in &mut self.hubs {
            hub.kill9();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let schema = self.schema.clone();
        let backends = self.backends.clone();
        let stream = format!("KOMLOG_{}", self.name.to_ascii_uppercase());
        // On a runtime of its own: drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Err(e) = sql(
                    &backends.pg,
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                )
                .await
                {
                    eprintln!("cleanup: {e}");
                }
                if let Ok(client) = async_nats::connect(backends.nats_addr()).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

/// GET `path` of a hub: (status, body); status 0 when it does not answer.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    match komlog_hub::http_client::request(
        addr,
        "GET",
        path,
        &[],
        Vec::new(),
        Duration::from_secs(5),
    )
    .await
    {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => (0, e.to_string()),
    }
}

/// Key pairs in `root/<name>/key.priv`, made in parallel (RSA-4096).
fn keys(root: &Path, names: &[&str]) -> Vec<komlogd::keys::AgentKey> {
    std::thread::scope(|s| {
        let made: Vec<_> = names
            .iter()
            .map(|name| {
                let dir = root.join(name);
                s.spawn(move || {
                    std::fs::create_dir_all(&dir).expect("agent dir");
                    komlogd::keys::load_or_create(&dir.join("key.priv")).expect("key pair")
                })
            })
            .collect();
        made.into_iter()
            .map(|h| h.join().expect("key thread"))
            .collect()
    })
}

async fn login(addr: SocketAddr, user: &str, key: &PrivateKey) -> Result<Session, String> {
    let endpoint = Endpoint::parse(&format!("http://{addr}/")).map_err(|e| e.to_string())?;
    let mut config = SessionConfig::new(endpoint, user, key.clone()).map_err(|e| e.to_string())?;
    config.reply_timeout = Duration::from_secs(10);
    config.login_timeout = Duration::from_secs(5);
    Session::login(config).await.map_err(|e| e.to_string())
}

/// A notification as received: (uri, t, when).
type Seen = (String, TimeUuid, Instant);

/// Collect `session`'s notifications into `seen` until its connection ends.
fn collect(mut session: Session, seen: Arc<Mutex<Vec<Seen>>>) -> tokio::task::JoinHandle<Session> {
    let mut rx = session
        .take_notifications()
        .expect("the notification channel");
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            let at = Instant::now();
            let mut seen = seen.lock().expect("seen");
            for item in n.items {
                seen.push((item.uri.to_string(), n.t, at));
            }
        }
        session
    })
}

// ---------------------------------------------------------------------------
// 1. kill -9 of a hub while one-shot uploaders stream to it

/// Uploads per agent.
const UPLOADS: usize = 40;
/// Agents (alice's, `load.a0`..).
const AGENTS: usize = 3;

/// How long a service stays down.
const OUTAGE: Duration = Duration::from_secs(6);

/// One `komlogd -u` run.
#[derive(Debug)]
struct Upload {
    agent: usize,
    i: usize,
    ts: i64,
    started: Instant,
    ended: Instant,
    /// The url of `sent to <url>: …` (the server acknowledged the outbox).
    sent_to: Option<String>,
    code: Option<i32>,
    stderr: String,
}

/// `komlogd -c <dir>/komlogd.yaml -u <uri> --datapoint --ts <ts>` with `value`
/// on stdin.
fn one_shot(dir: &Path, uri: &str, ts: i64, value: &str) -> (Option<String>, Option<i32>, String) {
    let mut c = Command::new(KOMLOGD)
        .arg("-c")
        .arg(dir.join("komlogd.yaml"))
        .args(["-u", uri, "--datapoint", "--ts", &ts.to_string()])
        .env("HOME", dir)
        .env_remove("KOMLOGD_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn komlogd -u");
    {
        let mut stdin = c.stdin.take().expect("stdin");
        stdin.write_all(value.as_bytes()).expect("write stdin");
    }
    // komlogd waits at most 10 s for each answer of the server.
    let status = child::wait_or_kill(&mut c, Duration::from_secs(60), "komlogd -u");
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let sent_to = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent to ")?.split(": ").next())
        .map(str::to_owned);
    (sent_to, status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_while_agents_stream_loses_and_doubles_nothing() {
    if !services_up() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tempdir");
    let names = ["a0", "a1", "a2", "bob"];
    let made = tokio::task::block_in_place(|| keys(root.path(), &names));
    let mut cluster = Cluster::start(3).await;
    cluster
        .add_user(
            "alice",
            made[..AGENTS]
                .iter()
                .map(|k| k.public_line.clone())
                .collect(),
        )
        .await;
    cluster
        .add_user("bob", vec![made[AGENTS].public_line.clone()])
        .await;
    cluster.share("alice", "load", "bob").await;
    let urls: Vec<String> = (0..3).map(|i| cluster.url_of(i)).collect();
    for (n, name) in names[..AGENTS].iter().enumerate() {
        let order: Vec<&str> = (0..3).map(|j| urls[(n + j) % 3].as_str()).collect();
        std::fs::write(
            root.path().join(name).join("komlogd.yaml"),
            format!(
                "- username: alice\n- server:\n    urls: [{}]\n",
                order.join(", ")
            ),
        )
        .expect("komlogd.yaml");
    }

    // bob at hub 3, hooked to the uris before they exist (pending hooks).
    let bob = login(cluster.hubs[2].addr, "bob", &made[AGENTS].private)
        .await
        .expect("bob logs in at hub 3");
    for n in 0..AGENTS {
        let hooked = bob
            .hook(&format!("alice:load.a{n}"))
            .await
            .expect("bob hooks");
        assert_eq!(hooked, HookOutcome::Pending);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bob_task = collect(bob, Arc::clone(&seen));

    // Three agents upload at once; hub 1 dies after a third of the uploads.
    let done = Arc::new(AtomicUsize::new(0));
    let base = now_us() - 10_000_000;
    let started = Instant::now();
    let threads: Vec<_> = (0..AGENTS)
        .map(|n| {
            let dir = root.path().join(names[n]);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                (0..UPLOADS)
                    .map(|i| {
                        let ts = base + (i as i64) * 1000;
                        let started = Instant::now();
                        let (sent_to, code, stderr) =
                            one_shot(&dir, &format!("load.a{n}"), ts, &i.to_string());
                        done.fetch_add(1, Ordering::Relaxed);
                        Upload {
                            agent: n,
                            i,
                            ts,
                            started,
                            ended: Instant::now(),
                            sent_to,
                            code,
                            stderr,
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let third = UPLOADS * AGENTS / 3;
    until(
        "a third of the uploads",
        Duration::from_secs(300),
        async || (done.load(Ordering::Relaxed) >= third).then_some(()),
    )
    .await;
    cluster.hubs[0].kill9();
    let killed = Instant::now();
    let killed_after = killed - started;
    until("every upload", Duration::from_secs(600), async || {
        threads.iter().all(|t| t.is_finished()).then_some(())
    })
    .await;
    let uploads: Vec<Upload> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("an agent thread"))
        .collect();
    let took = started.elapsed();

    // What PostgreSQL holds: each sample once, with its value.
    let stored = cluster.stored("alice", "load.a").await;
    let mut held: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for (uri, t, content) in &stored {
        held.entry((uri.clone(), *t))
            .or_default()
            .push(content.clone());
    }
    for ((uri, t), values) in &held {
        assert_eq!(values.len(), 1, "{uri} at {t} stored {values:?}");
    }
    let uploaded: BTreeMap<(String, i64), &Upload> = uploads
        .iter()
        .map(|u| ((format!("load.a{}", u.agent), u.ts), u))
        .collect();
    for key in held.keys() {
        assert!(
            uploaded.contains_key(key),
            "stored, never uploaded: {key:?}"
        );
    }
    // Acknowledged: this upload's run emptied the outbox, so it and every
    // earlier upload of its agent are stored.
    let mut acked = 0;
    for n in 0..AGENTS {
        let mine: Vec<&Upload> = uploads.iter().filter(|u| u.agent == n).collect();
        let last_acked = mine.iter().rposition(|u| u.sent_to.is_some());
        for u in &mine[..last_acked.map_or(0, |p| p + 1)] {
            let key = (format!("load.a{n}"), u.ts);
            let values = held
                .get(&key)
                .unwrap_or_else(|| panic!("acknowledged but not stored: {u:?}"));
            assert_eq!(values, &[u.i.to_string()], "{u:?}");
        }
        acked += mine.iter().filter(|u| u.sent_to.is_some()).count();
    }
    let failed: Vec<&Upload> = uploads.iter().filter(|u| u.sent_to.is_none()).collect();
    for u in &failed {
        eprintln!(
            "not acknowledged: agent a{} upload {} ({:?} .. {:?} after the kill, exit {:?}): {}",
            u.agent,
            u.i,
            u.started.checked_duration_since(killed).map_or_else(
                || format!("-{:?}", killed - u.started),
                |d| format!("{d:?}")
            ),
            u.ended.checked_duration_since(killed),
            u.code,
            u.stderr.trim()
        );
    }
    assert!(
        failed.len() <= 6,
        "{} uploads not acknowledged",
        failed.len()
    );
    for u in &failed {
        assert!(
            u.ended + Duration::from_secs(1) >= killed
                && u.started <= killed + Duration::from_secs(15),
            "an upload not acknowledged away from the kill: {u:?}"
        );
    }
    let mut moved = 0;
    for u in &uploads {
        if u.started > killed
            && let Some(url) = &u.sent_to
        {
            assert_ne!(url, &urls[0], "acknowledged by the killed hub: {u:?}");
        }
        if u.agent == 0 && u.started > killed && u.sent_to.is_some() {
            moved += 1;
        }
    }
    assert!(moved > 0, "agent a0 never got past the killed hub");

    // bob was notified of every stored sample, per uri in write order.
    let stored_keys: BTreeSet<(String, i64)> = held.keys().cloned().collect();
    until(
        "bob's notifications of every stored sample",
        Duration::from_secs(30),
        async || {
            let seen = seen.lock().expect("seen");
            let got: BTreeSet<(String, i64)> = seen
                .iter()
                .filter_map(|(uri, t, _)| {
                    Some((uri.strip_prefix("alice:")?.to_owned(), t.micros()))
                })
                .collect();
            stored_keys.is_subset(&got).then_some(())
        },
    )
    .await;
    let seen = seen.lock().expect("seen").clone();
    let mut last: BTreeMap<&str, TimeUuid> = BTreeMap::new();
    let mut repeats = 0;
    for (uri, t, _) in &seen {
        let local = uri.strip_prefix("alice:").expect("alice's uri");
        assert!(
            stored_keys.contains(&(local.to_owned(), t.micros())),
            "notified of a sample not stored: {uri} {t}"
        );
        if let Some(prev) = last.get(local) {
            assert!(t >= prev, "{uri}: {t} notified after {prev}");
            if t == prev {
                repeats += 1;
            }
        }
        last.insert(local, *t);
    }
    eprintln!(
        "kill -9 of hub 1 after {killed_after:?} ({third} of {} uploads done); all done in {took:?}: \
         {} acknowledged, {} not, {} stored (each once), {} notifications to bob ({repeats} repeated), \
         {moved} uploads of a0 moved past the killed hub",
        uploads.len(),
        acked,
        failed.len(),
        held.len(),
        seen.len()
    );
    bob_task.abort();
}

// ---------------------------------------------------------------------------
// 2. NATS and PostgreSQL restarted mid-stream

#[derive(Clone, Copy, Debug, PartialEq)]
enum Service {
    Nats,
    Postgres,
}

/// A PostgreSQL and a NATS server of the test's own, on free ports, with
/// their data in a temporary directory: stopped and started by the test,
/// stopped and removed when dropped. PostgreSQL runs as the `postgres` user
/// when the test runs as root (it refuses to run as root).
struct Services {
    dir: tempfile::TempDir,
    /// `initdb`, `pg_ctl`: PostgreSQL's binaries.
    pg_bin: PathBuf,
    /// Run PostgreSQL's commands as this user (`runuser -u`), when root.
    pg_user: Option<String>,
    pg_port: u16,
    nats_port: u16,
    nats: Option<Child>,
}

impl Services {
    /// Both services started, or why they cannot be here.
    fn start_private() -> Result<Services, String> {
        let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file())
            .max()
            .ok_or("no PostgreSQL binaries (initdb) in /usr/lib/postgresql/*/bin")?;
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            return Err("no nats-server on the PATH".into());
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("komlogd-services-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let pg_user = root.then(|| "postgres".to_owned());
        if root {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown postgres: {status} (no user postgres?)"));
            }
        }
        let mut services = Services {
            dir,
            pg_bin,
            pg_user,
            pg_port: free_port(),
            nats_port: free_port(),
            nats: None,
        };
        let data = services.dir.path().join("pg");
        services.pg_command("initdb", |cmd| {
            cmd.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data);
        })?;
        services.start(Service::Postgres)?;
        services.start(Service::Nats)?;
        Ok(services)
    }

    fn backends(&self) -> Backends {
        Backends {
            pg: format!("postgres://postgres@127.0.0.1:{}/postgres", self.pg_port),
            nats: format!("nats://127.0.0.1:{}", self.nats_port),
        }
    }

    /// Run PostgreSQL's `program` (as its user when root), set up by `args`.
    fn pg_command(&self, program: &str, args: impl FnOnce(&mut Command)) -> Result<(), String> {
        let mut cmd = match &self.pg_user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(self.pg_bin.join(program));
                cmd
            }
            None => Command::new(self.pg_bin.join(program)),
        };
        args(&mut cmd);
        let out = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program}: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `pg_ctl ACTION` on the test's cluster, waiting for it; a stop in
    /// `mode` (`fast`, or `immediate` when the test is over).
    fn pg_ctl(&self, action: &str, mode: &str) -> Result<(), String> {
        let dir = self.dir.path();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.pg_port,
            dir.display()
        );
        self.pg_command("pg_ctl", |cmd| {
            cmd.arg(action)
                .arg("-D")
                .arg(dir.join("pg"))
                .arg("-l")
                .arg(dir.join("pg.log"))
                .args(["-w", "-t", "30", "-m", mode, "-o", &options]);
        })
    }

    /// Stop the service and wait until it is gone.
    fn stop(&mut self, service: Service) {
        match service {
            Service::Postgres => self.pg_ctl("stop", "fast").expect("PostgreSQL stops"),
            Service::Nats => {
                let mut nats = self.nats.take().expect("the NATS server runs");
                child::signal(&nats, libc::SIGTERM);
                assert!(
                    child::wait_within(&mut nats, Duration::from_secs(15)).is_some(),
                    "nats-server still runs 15 s after SIGTERM"
                );
            }
        }
    }

    /// Start the service (on its port, with its data) and wait until it
    /// takes connections.
    fn start(&mut self, service: Service) -> Result<(), String> {
        match service {
            Service::Postgres => {
                self.pg_ctl("start", "fast")?;
                wait_up(
                    &format!("127.0.0.1:{}", self.pg_port),
                    Duration::from_secs(30),
                )
            }
            Service::Nats => {
                let log = std::fs::File::create(self.dir.path().join("nats.log"))
                    .map_err(|e| format!("the NATS log: {e}"))?;
                let child = Command::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &self.nats_port.to_string(), "-js"])
                    .arg("-sd")
                    .arg(self.dir.path().join("nats"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("cannot start nats-server: {e}"))?;
                self.nats = Some(child);
                wait_up(
                    &format!("127.0.0.1:{}", self.nats_port),
                    Duration::from_secs(20),
                )
            }
        }
    }
}

/// A PostgreSQL and a NATS server of the test's own, or None when they cannot
/// start here (said as a skip).
fn private_services() -> Option<Services> {
    match tokio::task::block_in_place(Services::start_private) {
        Ok(s) => Some(s),
        Err(reason) => {
            skip(&format!(
                "cannot start a PostgreSQL and a NATS server of the test's own: {reason}"
            ));
            None
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some(mut nats) = self.nats.take() {
            let _ = nats.kill();
            let _ = nats.wait();
        }
        if self.dir.path().join("pg/postmaster.pid").exists()
            && let Err(e) = self.pg_ctl("stop", "immediate")
        {
            eprintln!("cannot stop the test's PostgreSQL: {e}");
        }
    }
}

fn wait_up(addr: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !up(addr) {
        if Instant::now() >= deadline {
            return Err(format!("{addr} does not answer after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What the writing session did.
#[derive(Default)]
struct WriterLog {
    /// (value, t, when the 4200 came).
    acked: Vec<(u64, TimeUuid, Instant)>,
    /// When a write was sent (resends included).
    sent: Vec<Instant>,
    /// (when, what): failed writes (close codes, timeouts) and logins.
    errors: Vec<(Instant, String)>,
    /// (value, status) of writes the hub refused (answered, not with 4200).
    refused: Vec<(u64, u16)>,
    logins: u32,
}

/// Write `uri` as `user` at `addr` every 50 ms until `stop`: one write at a
/// time, the same write (value and TimeUUID) again after a failure, logging in
/// again after a lost connection.
async fn write_steadily(
    addr: SocketAddr,
    key: PrivateKey,
    uri: &'static str,
    log: Arc<Mutex<WriterLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut session: Option<Session> = None;
    let mut pending: Option<(u64, TimeUuid)> = None;
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(s) = &session else {
            match login(addr, "alice", &key).await {
                Ok(s) => {
                    session = Some(s);
                    log.lock().expect("log").logins += 1;
                }
                Err(e) => {
                    log.lock()
                        .expect("log")
                        .errors
                        .push((Instant::now(), format!("login: {e}")));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        let (i, t) = *pending.get_or_insert_with(|| {
            next += 1;
            (next, TimeUuid::now())
        });
        // Every other write is a send_multi_data (with a second uri).
        let mut samples = vec![Sample::datapoint(uri, t, i as f64).expect("a sample")];
        if i % 2 == 0 {
            samples
                .push(Sample::datapoint(&format!("{uri}_multi"), t, i as f64).expect("a sample"));
        }
        log.lock().expect("log").sent.push(Instant::now());
        match s.send_samples(&samples).await {
            Ok(()) => {
                log.lock().expect("log").acked.push((i, t, Instant::now()));
                pending = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                if let komlog_session::SessionError::Refused { response, .. } = &e {
                    log.lock()
                        .expect("log")
                        .refused
                        .push((i, response.status.code()));
                }
                let closed = s.disconnected();
                log.lock().expect("log").errors.push((
                    Instant::now(),
                    format!("write {i}: {e} (closed: {closed:?})"),
                ));
                session = None;
            }
        }
    }
}

/// Read `uri`'s notifications as `user` at `addr` until `stop`, logging in
/// and hooking again after a lost connection.
async fn read_steadily(
    addr: SocketAddr,
    key: PrivateKey,
    uri: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    hooked: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut session) = login(addr, "bob", &key).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if session.hook(uri).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        hooked.lock().expect("hooked").push(Instant::now());
        let mut rx = session
            .take_notifications()
            .expect("the notification channel");
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some(n)) => {
                    let at = Instant::now();
                    let mut seen = seen.lock().expect("seen");
                    for item in n.items {
                        seen.push((item.uri.to_string(), n.t, at));
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }
}

/// Both hubs' `/health`: Some(bodies) once every hub answers `status`.
async fn health_of_all(cluster: &Cluster, status: u16, naming: &str) -> Option<Vec<String>> {
    let mut bodies = Vec::new();
    for hub in &cluster.hubs {
        let (s, body) = get(hub.addr, "/health").await;
        if s != status || !body.contains(naming) {
            return None;
        }
        bodies.push(body);
    }
    Some(bodies)
}

async fn restart_mid_stream(service: Service) {
    let _serial = SERIAL.lock().await;
    let Some(mut services) = private_services() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let made = tokio::task::block_in_place(|| keys(root.path(), &["alice", "bob"]));
    let cluster = Cluster::start_on(2, services.backends()).await;
    cluster
        .add_user("alice", vec![made[0].public_line.clone()])
        .await;
    cluster
        .add_user("bob", vec![made[1].public_line.clone()])
        .await;
    cluster.share("alice", "steady", "bob").await;
    const URI: &str = "steady.x";

    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let writer = tokio::spawn(write_steadily(
        cluster.hubs[0].addr,
        made[0].private.clone(),
        URI,
        Arc::clone(&log),
        Arc::clone(&stop),
    ));
    let reader = tokio::spawn(read_steadily(
        cluster.hubs[1].addr,
        made[1].private.clone(),
        "alice:steady.x",
        Arc::clone(&seen),
        Arc::clone(&hooked),
        Arc::clone(&stop_reader),
    ));
    let acked = || log.lock().expect("log").acked.len();
    until(
        "20 writes acknowledged",
        Duration::from_secs(60),
        async || (acked() >= 20).then_some(()),
    )
    .await;
    until(
        "health 200 everywhere",
        Duration::from_secs(10),
        async || health_of_all(&cluster, 200, "\"ok\"").await,
    )
    .await;

    // The outage: a few seconds.
    let (naming, shown) = match service {
        Service::Nats => ("cluster bus", "NATS server"),
        Service::Postgres => ("store", "PostgreSQL"),
    };
    let stopping = Instant::now();
    tokio::task::block_in_place(|| services.stop(service));
    let stopped = Instant::now();
    let unhealthy = until(
        &format!("health 503 naming the {naming}"),
        Duration::from_secs(15),
        async || health_of_all(&cluster, 503, naming).await,
    )
    .await;
    let down_seen = Instant::now();
    let acked_before = acked();
    // Longer than the hub's wait for the bus (PUBLISH_TIMEOUT, 5 s): a write
    // waiting on the bus fails, and its connection closes.
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let restarting = Instant::now();
    tokio::task::block_in_place(|| services.start(service)).expect("the service starts again");
    let restarted = Instant::now();
    {
        let log = log.lock().expect("log");
        let in_outage: Vec<_> = log
            .acked
            .iter()
            .filter(|(_, _, at)| *at > down_seen && *at < restarting)
            .collect();
        assert!(
            in_outage.is_empty(),
            "writes acknowledged while the {shown} was down: {in_outage:?}"
        );
        // The writer kept trying: a write was waiting or failed in the outage.
        let sent = log.sent.iter().filter(|&&at| at < restarting).count();
        let answered = log
            .acked
            .iter()
            .filter(|(_, _, at)| *at < restarting)
            .count();
        assert!(
            sent > answered,
            "no write was waiting while the {shown} was down ({sent} sent, {answered} acknowledged)"
        );
        let failed = log
            .errors
            .iter()
            .filter(|(at, _)| *at > stopping && *at < restarting)
            .count();
        assert!(
            failed > 0,
            "no write or login failed in {:?} of outage",
            restarting - stopping
        );
    }

    // Recovery, by itself.
    let healthy = until(
        "health 200 everywhere after the restart",
        Duration::from_secs(60),
        async || health_of_all(&cluster, 200, "\"ok\"").await,
    )
    .await;
    let recovered_after = restarted.elapsed();
    let recovered = Instant::now();
    until(
        "10 new writes acknowledged after the restart",
        Duration::from_secs(60),
        async || {
            let log = log.lock().expect("log");
            (log.acked
                .iter()
                .filter(|(_, _, at)| *at > recovered)
                .count()
                >= 10)
                .then_some(())
        },
    )
    .await;
    let acks_after = recovered.elapsed();
    let fresh: Vec<TimeUuid> = log
        .lock()
        .expect("log")
        .acked
        .iter()
        .filter(|(_, _, at)| *at > recovered)
        .map(|(_, t, _)| *t)
        .collect();
    until(
        "the new writes notified at the other hub",
        Duration::from_secs(30),
        async || {
            let seen = seen.lock().expect("seen");
            fresh
                .iter()
                .all(|t| seen.iter().any(|(_, s, _)| s == t))
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(20), writer).await;
    // Every write acknowledged while the reader's session was hooked reaches
    // it (at another hub): an acknowledged write's notification is not lost.
    let last_hook = *hooked
        .lock()
        .expect("hooked")
        .last()
        .expect("the reader hooked");
    let owed: Vec<(u64, TimeUuid, Instant)> = log
        .lock()
        .expect("log")
        .acked
        .iter()
        .filter(|(_, _, at)| *at > last_hook + Duration::from_millis(100))
        .cloned()
        .collect();
    let missing = |seen: &[Seen]| -> Vec<String> {
        owed.iter()
            .filter(|(_, t, _)| !seen.iter().any(|(_, s, _)| s == t))
            .map(|(i, _, at)| {
                format!(
                    "{i} (acknowledged {})",
                    at.checked_duration_since(restarted).map_or_else(
                        || format!("{:?} before the restart", restarted - *at),
                        |d| format!("{d:?} after the restart")
                    )
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !missing(&seen.lock().expect("seen")).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let not_notified = missing(&seen.lock().expect("seen"));
    stop_reader.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    assert!(
        not_notified.is_empty(),
        "{} of {} writes acknowledged while the reader was hooked were never notified: {}",
        not_notified.len(),
        owed.len(),
        not_notified.join(", ")
    );

    // Never acknowledged what is not stored.
    let stored: BTreeMap<i64, String> = cluster
        .stored("alice", URI)
        .await
        .into_iter()
        .map(|(_, t, v)| (t, v))
        .collect();
    let log = log.lock().expect("log");
    for (i, t, _) in &log.acked {
        assert_eq!(
            stored.get(&t.micros()),
            Some(&i.to_string()),
            "write {i} at {t} acknowledged but not stored"
        );
    }
    // A write the hub cannot store is not answered (4503 close, sent again),
    // never refused: an agent drops a refused write from its outbox.
    assert!(
        log.refused.is_empty(),
        "writes refused during the {shown} outage (value, status): {:?}",
        log.refused
    );
    let outage_errors: Vec<&String> = log
        .errors
        .iter()
        .filter(|(at, _)| *at > stopping && *at < recovered)
        .map(|(_, e)| e)
        .collect();
    eprintln!(
        "{shown} restart: health 503 {:?} after the stop ({unhealthy:?}); down {:?}; \
         health 200 {recovered_after:?} after the start; 10 new acks {acks_after:?} later. \
         {} writes acknowledged ({acked_before} before the outage), {} stored, {} sends, \
         {} writer logins, {} reader logins, {} notifications; \
         {} errors around the outage, first: {:?}, last: {:?}; health then: {:?}",
        down_seen - stopped,
        restarted - stopped,
        log.acked.len(),
        stored.len(),
        log.sent.len(),
        log.logins,
        hooked.lock().expect("hooked").len(),
        seen.lock().expect("seen").len(),
        outage_errors.len(),
        outage_errors.first(),
        outage_errors.last(),
        healthy.first(),
    );
    drop(cluster);
    drop(services);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_restart_nats_mid_stream_recovers_without_acknowledging_unstored_writes() {
    restart_mid_stream(Service::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_restart_postgres_mid_stream_recovers_without_acknowledging_unstored_writes() {
    restart_mid_stream(Service::Postgres).await;
}

/// A komlogd agent (a process) connected to a hub whose PostgreSQL stops:
/// the samples it uploads meanwhile are not acknowledged (the hub closes with
/// 4503 instead of answering) and stay in the agent's outbox, none refused or
/// dropped; once PostgreSQL is back the agent delivers them by itself, and
/// every sample is stored exactly once with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_what_its_hub_could_not_store_and_delivers_it_after() {
    let _serial = SERIAL.lock().await;
    let Some(mut services) = private_services() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start_on(1, services.backends()).await;
    let url = cluster.url_of(0);
    let (mut agent, public_line) = crate::connected::Agent::with_server(
        root.path(),
        "alice",
        &format!("    urls: [{url}]\n"),
        "",
    );
    cluster.add_user("alice", vec![public_line]).await;
    tokio::task::block_in_place(|| agent.start());
    let status = || tokio::task::block_in_place(|| agent.server());
    until("the agent connected", Duration::from_secs(60), async || {
        (status().state == "connected").then_some(())
    })
    .await;

    const URI: &str = "kept.values";
    let t0 = now_us() - 60_000_000;
    let upload = |i: i64| {
        tokio::task::block_in_place(|| agent.upload(URI, t0 + i * 1000, i as f64));
    };
    for i in 0..20 {
        upload(i);
    }
    until(
        "the first 20 acknowledged",
        Duration::from_secs(30),
        async || (status().outbox == 0).then_some(()),
    )
    .await;

    tokio::task::block_in_place(|| services.stop(Service::Postgres));
    for i in 20..40 {
        upload(i);
    }
    // The hub has seen a write it could not store: the agent's session was
    // closed with 4503 (or its next login failed), and the samples wait.
    let held = until(
        "the agent to report the hub's failure",
        Duration::from_secs(30),
        async || {
            let s = status();
            (s.last_error.is_some() && s.state != "connected").then_some(s)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_later = status();
    assert_eq!(held_later.refused, 0, "nothing refused: {held_later:?}");
    assert!(
        held_later.outbox >= 1 && held_later.outbox <= 20,
        "the samples of the outage wait in the outbox: {held_later:?} (first seen {held:?})"
    );

    tokio::task::block_in_place(|| services.start(Service::Postgres))
        .expect("PostgreSQL starts again");
    let done = until(
        "every sample acknowledged after the restart",
        Duration::from_secs(90),
        async || {
            let s = status();
            (s.outbox == 0 && s.state == "connected").then_some(s)
        },
    )
    .await;
    assert_eq!(done.refused, 0, "{done:?}");
    let stored = cluster.stored("alice", URI).await;
    let values: Vec<(i64, String)> = stored.into_iter().map(|(_, t, v)| (t, v)).collect();
    let expected: Vec<(i64, String)> = (0..40).map(|i| (t0 + i * 1000, i.to_string())).collect();
    assert_eq!(values, expected, "each sample stored once, with its value");
    agent.stop();
    drop(cluster);
    drop(services);
}
