//! komlog-hub cluster benchmark: bounded load on loopback against three
//! `komlog-hub serve --store postgres://… --bus nats://… --cluster …`
//! processes on one PostgreSQL (127.0.0.1:5432, database `test`, a fresh schema
//! `hubbench_<pid>`) and one NATS server with JetStream (127.0.0.1:4222, the
//! cluster `bench_<pid>` and so the stream `KOMLOG_BENCH_<pid>`), both removed
//! at the end, also when the bench panics.
//!
//! The load: 1,000 agent sessions (`komlog-session`, as komlogd uses it), spread
//! round-robin over the hubs, logged in as 10 users `u0`..`u9` (one RSA-4096 key
//! each; every login is a session of its own). Session `i` is user `u{i % 10}`
//! on hub `i % 3` and writes its own 10 datapoints `s.s<i>.m0`..`s.s<i>.m9` in
//! one `send_multi_data` per message, the value being the send time in µs.
//! Each user shares `s` with the next one (`u0` with `u1`, …, `u9` with `u0`);
//! the first 100 sessions are also hooked to `m0` and `m1` of session `i + 19`
//! (a session of the previous user, writing on another hub), and each
//! notification's latency is its arrival time minus the send time in its value.
//!
//! Two load points, each for 20 s (`KOMLOGD_BENCH_QUICK=1`: 5 s):
//!
//! - (a) maximum: every session keeps 8 messages in flight (a window of
//!   replies, as komlogd does) → samples/s accepted (acknowledged with 4200)
//!   and durable. Durable is checked at the end of the run: the rows of the
//!   samples table in PostgreSQL (for the embedded hub: the sample counts of
//!   its redb store, read after it stopped) must equal every sample
//!   acknowledged; `lost` = acknowledged − stored must be 0 (asserted).
//! - (b) a fixed 20,000 samples/s in total (quick: 5,000): every session sends
//!   one message on a fixed period, staggered → notification p50/p99.
//!
//! For each load point: CPU (utime + stime deltas from /proc/<pid>/stat over
//! the load point) and RSS (VmRSS at its end, VmHWM) of each hub process, and
//! of PostgreSQL: the sum over every process named `postgres` in /proc (its
//! RSS sum counts shared buffers once per process; its CPU includes anything
//! else using that server at the time, such as other test runs).
//!
//! Baseline in the same run: one embedded hub (`komlog-hub --data DIR serve`,
//! redb, no --store/--bus) with the same sessions, load points and
//! measurements. The sessions, their login and the latency clock live in this
//! process and share the machine's cores with the hubs and PostgreSQL: the
//! figures are of the whole loopback system, client included.
//!
//! Run with `cargo bench -p komlog-hub --bench cluster`: cargo builds the
//! package's `komlog-hub` binary (in the same profile) before its benches and
//! gives its path as `CARGO_BIN_EXE_komlog-hub`. Without PostgreSQL or NATS on
//! 127.0.0.1 the bench says so and does nothing. The hubs' logs go to
//! `komlog-hub-bench-*/` in the temporary directory, kept only when the bench
//! panics. `KOMLOG_HUB_BENCH_SESSIONS` sets another number of sessions (a
//! multiple of 10, at least 30) for a smaller run.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Served;
use komlog_hub::store::HubStore;
use komlog_protocol::login::PrivateKey;
use komlog_protocol::openssh::openssh_public_line;
use komlog_protocol::timeuuid::now_micros;
use komlog_protocol::{TimeUuid, Username};
use komlog_session::{Endpoint, HookOutcome, Sample, Session, SessionConfig};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS: &str = "nats://127.0.0.1:4222";
/// Users `u0`..`u9`.
const USERS: usize = 10;
/// Samples per message.
const PER_MESSAGE: usize = 10;
/// Messages in flight per session.
const WINDOW: usize = 8;
/// Hubs of the cluster.
const HUBS: usize = 3;
/// Uris each hooked session hooks (`m0`, `m1` of its target).
const HOOKED_URIS: usize = 2;
/// Concurrent logins while setting up.
const LOGINS_IN_FLIGHT: usize = 8;
/// The longest wait for any one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The targets this bench reports on (never asserted, except no loss).
const TARGET_DURABLE: f64 = 50_000.0;
const TARGET_P99_MS: f64 = 20.0;
const TARGET_RATE: u64 = 20_000;

fn quick() -> bool {
    std::env::var_os("KOMLOGD_BENCH_QUICK").is_some()
}

struct Params {
    sessions: usize,
    duration: Duration,
    /// Samples per second of load point (b), in total.
    rate: u64,
}

impl Params {
    fn hooked(&self) -> usize {
        self.sessions / 10
    }

    /// Session `i`'s user index.
    fn user_of(i: usize) -> usize {
        i % USERS
    }

    /// The session whose uris hooked session `i` hooks: one of the previous
    /// user (who shares `s` with `i`'s user), on another hub.
    fn target_of(i: usize) -> usize {
        i + 19
    }
}

fn up(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(2))
        .is_ok()
}

// ---------------------------------------------------------------------------
// /proc

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
}

/// Clock ticks per second of /proc/<pid>/stat.
fn clk_tck() -> f64 {
    const SC_CLK_TCK: i32 = 2;
    // SAFETY: sysconf(3) with a valid name has no preconditions.
    let t = unsafe { sysconf(SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm…:` line of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// Every process named `postgres`.
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == "postgres").then_some(pid)
    })
    .collect()
}

struct Snapshot {
    at: Instant,
    hubs: Vec<u64>,
    pg: HashMap<u32, u64>,
}

fn snapshot(hub_pids: &[u32]) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        hubs: hub_pids
            .iter()
            .map(|&p| cpu_ticks(p).unwrap_or(0))
            .collect(),
        pg: postgres_pids()
            .into_iter()
            .filter_map(|p| Some((p, cpu_ticks(p)?)))
            .collect(),
    }
}

/// CPU and memory over a load point.
struct Usage {
    /// Per hub: CPU % of one core.
    hub_cpu: Vec<f64>,
    /// Per hub: VmRSS and VmHWM in kB.
    hub_rss: Vec<(u64, u64)>,
    /// PostgreSQL: CPU % of one core, RSS sum in kB, processes.
    pg: Option<(f64, u64, usize)>,
}

fn usage_since(start: &Snapshot, hub_pids: &[u32], with_pg: bool) -> Usage {
    let wall = start.at.elapsed().as_secs_f64().max(1e-9);
    let tck = clk_tck();
    let pct = |ticks: u64| ticks as f64 / tck / wall * 100.0;
    let hub_cpu = hub_pids
        .iter()
        .zip(&start.hubs)
        .map(|(&p, &t0)| pct(cpu_ticks(p).unwrap_or(t0).saturating_sub(t0)))
        .collect();
    let hub_rss = hub_pids
        .iter()
        .map(|&p| {
            (
                status_kb(p, "VmRSS").unwrap_or(0),
                status_kb(p, "VmHWM").unwrap_or(0),
            )
        })
        .collect();
    let pg = with_pg
        .then(|| {
            let pids = postgres_pids();
            if pids.is_empty() {
                return None;
            }
            let mut ticks = 0;
            let mut rss = 0;
            for &p in &pids {
                let now = cpu_ticks(p).unwrap_or(0);
                ticks += now.saturating_sub(start.pg.get(&p).copied().unwrap_or(0));
                rss += status_kb(p, "VmRSS").unwrap_or(0);
            }
            Some((pct(ticks), rss, pids.len()))
        })
        .flatten();
    Usage {
        hub_cpu,
        hub_rss,
        pg,
    }
}

// ---------------------------------------------------------------------------
// Resources

/// The temporary directory of the run (keys, hub data and logs); kept when
/// the bench panics, for the hubs' logs.
struct Root(Option<tempfile::TempDir>);

impl Root {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("the root directory").path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("the hubs' logs are kept in {}", dir.keep().display());
        }
    }
}

async fn sql(batch: &str) -> Result<(), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    let r = client.batch_execute(batch).await;
    drop(client);
    let _ = task.await;
    r
}

/// The cluster's schema and stream, dropped when this is (after the hubs,
/// which are declared after it), also on a panic.
struct ClusterGuard {
    schema: String,
    stream: String,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        let stream = self.stream.clone();
        // A runtime of its own: this may run while another is unwinding.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                match tokio::time::timeout(Duration::from_secs(60), sql(&statement)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("cannot drop schema {schema}: {e}"),
                    Err(_) => eprintln!("cannot drop schema {schema}: no answer in 60 s"),
                }
                let delete = async {
                    let client = async_nats::connect(NATS).await.ok()?;
                    let js = async_nats::jetstream::new(client);
                    js.delete_stream(&stream).await.ok()
                };
                if tokio::time::timeout(Duration::from_secs(30), delete)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    eprintln!("note: stream {stream} was not deleted (absent or unreachable)");
                }
            });
        })
        .join();
    }
}

/// Hub processes (killed when dropped, by [`Served`]).
struct Hubs {
    served: Vec<Served>,
    addrs: Vec<SocketAddr>,
    dirs: Vec<PathBuf>,
}

impl Hubs {
    fn start(root: &Path, label: &str, n: usize, extra: &[&str]) -> Hubs {
        let mut hubs = Hubs {
            served: Vec::new(),
            addrs: Vec::new(),
            dirs: Vec::new(),
        };
        for i in 0..n {
            let dir = root.join(format!("{label}{i}"));
            std::fs::create_dir_all(&dir).expect("hub dir");
            let log = std::fs::File::create(root.join(format!("{label}{i}.log"))).expect("log");
            let mut served = Served::start_logging(&dir, extra, Stdio::from(log));
            hubs.addrs.push(served.addr());
            hubs.served.push(served);
            hubs.dirs.push(dir);
        }
        hubs
    }

    fn pids(&self) -> Vec<u32> {
        self.served.iter().map(|s| s.child.id()).collect()
    }

    /// `komlog-hub --data <hub 0> args…`, through the running hub 0.
    fn admin(&self, args: &[&str]) {
        let out = common::hub_cmd(&self.dirs[0], args);
        common::ok(&out);
    }

    /// Users, keys and shares, through hub 0.
    fn add_users(&self, key_files: &[PathBuf]) {
        for (u, file) in key_files.iter().enumerate() {
            let name = format!("u{u}");
            self.admin(&["user", "add", &name]);
            self.admin(&[
                "agent",
                "add",
                &name,
                "--pubkey",
                file.to_str().expect("utf-8 path"),
            ]);
        }
        for u in 0..USERS {
            let next = format!("u{}", (u + 1) % USERS);
            self.admin(&["share", &format!("u{u}"), "s", "--with", &next]);
        }
    }

    /// The sum of `komlog_hub_samples_total` over the hubs.
    async fn samples_total(&self) -> Vec<u64> {
        let mut totals = Vec::new();
        for &addr in &self.addrs {
            let r = komlog_hub::http_client::request(
                addr,
                "GET",
                "/metrics",
                &[],
                Vec::new(),
                Duration::from_secs(10),
            )
            .await;
            let n = r
                .ok()
                .and_then(|r| {
                    String::from_utf8_lossy(&r.body).lines().find_map(|l| {
                        l.strip_prefix("komlog_hub_samples_total ")?
                            .trim()
                            .parse()
                            .ok()
                    })
                })
                .unwrap_or(0);
            totals.push(n);
        }
        totals
    }
}

// ---------------------------------------------------------------------------
// Sessions and load

fn uri_of(session: usize, k: usize) -> String {
    format!("s.s{session}.m{k}")
}

/// Log in the sessions, `i` as `u{i % 10}` at hub `i % hubs`, in order.
async fn login_all(addrs: &[SocketAddr], keys: &[PrivateKey], n: usize) -> Vec<Session> {
    let gate = Arc::new(tokio::sync::Semaphore::new(LOGINS_IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let addr = addrs[i % addrs.len()];
        let key = keys[Params::user_of(i)].clone();
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let endpoint = Endpoint::parse(&format!("http://{addr}/")).expect("endpoint");
            let mut config = SessionConfig::new(endpoint, &format!("u{}", Params::user_of(i)), key)
                .expect("session config");
            config.reply_timeout = REPLY_TIMEOUT;
            config.login_timeout = REPLY_TIMEOUT;
            let mut last = None;
            for _ in 0..3 {
                match Session::login(config.clone()).await {
                    Ok(s) => return s,
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("session {i} cannot log in at {addr}: {last:?}");
        }));
    }
    let mut sessions = Vec::with_capacity(n);
    for t in tasks {
        sessions.push(t.await.expect("login task"));
    }
    sessions
}

/// One message of session `index`'s samples at `t`, valued with the send time.
fn message(uris: &[String], t: TimeUuid) -> Vec<Sample> {
    let sent = now_micros() as f64;
    uris.iter()
        .map(|u| Sample::datapoint(u, t, sent).expect("sample"))
        .collect()
}

/// What one session did in a load point.
#[derive(Default, Clone, Copy)]
struct Driven {
    acked: u64,
    errors: u64,
}

/// Session `index` writes until `deadline` (and at most `max_messages`): as
/// fast as its window allows, or one message per `period` from `first`.
async fn drive(
    session: Arc<Session>,
    index: usize,
    deadline: tokio::time::Instant,
    pace: Option<(tokio::time::Instant, Duration)>,
    max_messages: usize,
) -> Driven {
    let uris: Vec<String> = (0..PER_MESSAGE).map(|k| uri_of(index, k)).collect();
    let mut ticker = pace.map(|(first, period)| {
        let mut t = tokio::time::interval_at(first, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    let mut done = Driven::default();
    for _ in 0..max_messages {
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let t = TimeUuid::now();
        match session.submit_samples(t, &message(&uris, t)).await {
            Ok(p) => in_flight.push_back(p),
            Err(_) => {
                done.errors += 1;
                break;
            }
        }
        while in_flight.len() >= WINDOW {
            let p = in_flight.pop_front().expect("in flight");
            match p.wait().await {
                Ok(()) => done.acked += PER_MESSAGE as u64,
                Err(_) => done.errors += 1,
            }
        }
    }
    while let Some(p) = in_flight.pop_front() {
        match p.wait().await {
            Ok(()) => done.acked += PER_MESSAGE as u64,
            Err(_) => done.errors += 1,
        }
    }
    done
}

/// One load point's outcome.
struct Phase {
    acked: u64,
    errors: u64,
    /// From the start to the last reply.
    elapsed: Duration,
    /// Send times (µs) of this load point's messages lie in [from_us, to_us].
    from_us: i64,
    to_us: i64,
    usage: Usage,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn run_phase(
    sessions: &[Arc<Session>],
    params: &Params,
    paced: bool,
    hub_pids: &[u32],
    with_pg: bool,
) -> Phase {
    let n = sessions.len();
    // (b): every session sends one message per period, staggered over it.
    let period = Duration::from_secs_f64((n * PER_MESSAGE) as f64 / params.rate as f64);
    let max_messages = if paced {
        (params.duration.as_secs_f64() / period.as_secs_f64()).ceil() as usize + 1
    } else {
        // Far above what a window of 8 allows on loopback.
        params.duration.as_secs() as usize * 2_000
    };
    let before = snapshot(hub_pids);
    let from_us = now_micros();
    let start = tokio::time::Instant::now();
    let deadline = start + params.duration;
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let pace = paced.then(|| (start + period.mul_f64(i as f64 / n as f64), period));
            tokio::spawn(drive(Arc::clone(s), i, deadline, pace, max_messages))
        })
        .collect();
    let mut acked = 0;
    let mut errors = 0;
    let join_by = deadline + REPLY_TIMEOUT * (WINDOW as u32 + 1);
    for t in tasks {
        match tokio::time::timeout_at(join_by, t).await {
            Ok(Ok(d)) => {
                acked += d.acked;
                errors += d.errors;
            }
            Ok(Err(e)) => panic!("a session's task failed: {e}"),
            Err(_) => panic!("a session's task did not end in time"),
        }
    }
    let elapsed = start.elapsed();
    let to_us = now_micros();
    let usage = usage_since(&before, hub_pids, with_pg);
    Phase {
        acked,
        errors,
        elapsed,
        from_us,
        to_us,
        usage,
    }
}

/// (send µs, arrival µs) of every notification of the hooked sessions.
type Arrivals = Arc<Mutex<Vec<(i64, i64)>>>;

/// Percentiles (ms) of the notifications sent within a load point.
fn latency(arrivals: &Arrivals, phase: &Phase) -> Option<(f64, f64, usize)> {
    let mut lat: Vec<f64> = arrivals
        .lock()
        .expect("arrivals")
        .iter()
        .filter(|(sent, _)| (phase.from_us..=phase.to_us).contains(sent))
        .map(|(sent, at)| (at - sent) as f64 / 1e3)
        .collect();
    if lat.is_empty() {
        return None;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    Some((pick(0.5), pick(0.99), lat.len()))
}

/// A whole setup's figures.
struct Run {
    label: &'static str,
    hubs: usize,
    warmup_acked: u64,
    a: Phase,
    b: Phase,
    lat_a: Option<(f64, f64, usize)>,
    lat_b: Option<(f64, f64, usize)>,
    acked_total: u64,
    stored: u64,
    stored_how: String,
    metrics_total: Vec<u64>,
}

impl Run {
    fn lost(&self) -> i64 {
        self.acked_total as i64 - self.stored as i64
    }

    fn durable_rate(&self, p: &Phase) -> f64 {
        if self.acked_total == 0 {
            return 0.0;
        }
        p.rate() * (self.stored.min(self.acked_total) as f64 / self.acked_total as f64)
    }
}

/// Log in, warm up, hook, run both load points; the caller verifies and stops.
async fn load(
    label: &'static str,
    hubs: &Hubs,
    keys: &[PrivateKey],
    params: &Params,
    with_pg: bool,
) -> (Run, Vec<Arc<Session>>, Vec<tokio::task::JoinHandle<()>>) {
    let started = Instant::now();
    let mut sessions = login_all(&hubs.addrs, keys, params.sessions).await;
    println!(
        "   {label}: {} sessions logged in over {} hub(s) in {:.1} s",
        sessions.len(),
        hubs.addrs.len(),
        started.elapsed().as_secs_f64()
    );
    let notes: Vec<_> = sessions[..params.hooked()]
        .iter_mut()
        .map(|s| s.take_notifications().expect("notifications"))
        .collect();
    let sessions: Vec<Arc<Session>> = sessions.drain(..).map(Arc::new).collect();
    // Warm-up: one message per session creates its uris.
    let warm: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = Arc::clone(s);
            tokio::spawn(async move {
                let uris: Vec<String> = (0..PER_MESSAGE).map(|k| uri_of(i, k)).collect();
                let t = TimeUuid::now();
                s.submit_samples(t, &message(&uris, t))
                    .await
                    .expect("warm-up write")
                    .wait()
                    .await
                    .expect("warm-up write acknowledged");
            })
        })
        .collect();
    let mut warmup_acked = 0;
    for w in warm {
        tokio::time::timeout(REPLY_TIMEOUT * 2, w)
            .await
            .expect("warm-up in time")
            .expect("warm-up task");
        warmup_acked += PER_MESSAGE as u64;
    }
    // Hooks, and a receiver per hooked session.
    let arrivals: Arrivals = Arc::default();
    let mut receivers = Vec::new();
    for (i, mut notes) in notes.into_iter().enumerate() {
        let target = Params::target_of(i);
        let owner = Params::user_of(target);
        for k in 0..HOOKED_URIS {
            let uri = format!("u{owner}:{}", uri_of(target, k));
            let outcome = sessions[i]
                .hook(&uri)
                .await
                .unwrap_or_else(|e| panic!("session {i} hooks {uri}: {e}"));
            assert_eq!(
                outcome,
                HookOutcome::Hooked,
                "{uri} exists after the warm-up"
            );
        }
        let arrivals = Arc::clone(&arrivals);
        receivers.push(tokio::spawn(async move {
            // Ends when the session closes.
            while let Some(n) = notes.recv().await {
                let at = now_micros();
                if let Some(sent) = n.items.first().and_then(|i| i.content.parse::<i64>().ok()) {
                    arrivals.lock().expect("arrivals").push((sent, at));
                }
            }
        }));
    }
    let pids = hubs.pids();
    let a = run_phase(&sessions, params, false, &pids, with_pg).await;
    println!(
        "   {label} (a): {} samples acknowledged in {:.1} s, {} errors",
        a.acked,
        a.elapsed.as_secs_f64(),
        a.errors
    );
    // Let the notifications of (a) arrive before (b).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = run_phase(&sessions, params, true, &pids, with_pg).await;
    println!(
        "   {label} (b): {} samples acknowledged in {:.1} s, {} errors",
        b.acked,
        b.elapsed.as_secs_f64(),
        b.errors
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lat_a = latency(&arrivals, &a);
    let lat_b = latency(&arrivals, &b);
    let acked_total = warmup_acked + a.acked + b.acked;
    let metrics_total = hubs.samples_total().await;
    let run = Run {
        label,
        hubs: hubs.addrs.len(),
        warmup_acked,
        a,
        b,
        lat_a,
        lat_b,
        acked_total,
        stored: 0,
        stored_how: String::new(),
        metrics_total,
    };
    (run, sessions, receivers)
}

async fn close_all(sessions: Vec<Arc<Session>>, receivers: Vec<tokio::task::JoinHandle<()>>) {
    let closes: Vec<_> = sessions
        .into_iter()
        .filter_map(|s| Arc::into_inner(s).map(|s| tokio::spawn(s.close())))
        .collect();
    for c in closes {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    for r in receivers {
        r.abort();
    }
}

/// Rows of the samples table in `schema`.
async fn pg_stored(schema: &str) -> (String, u64) {
    let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    let task = tokio::spawn(conn);
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("list the tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    // `samples` (partitioned by month: counting it counts its partitions).
    let candidates: Vec<&String> = tables.iter().filter(|t| t.contains("sample")).collect();
    let table = match candidates.as_slice() {
        _ if tables.iter().any(|t| t == "samples") => "samples".to_owned(),
        [one] => (*one).clone(),
        _ => panic!("which table holds the samples in {schema}? tables: {tables:?}"),
    };
    let row = client
        .query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[])
        .await
        .expect("count the samples");
    let n: i64 = row.get(0);
    drop(client);
    let _ = task.await;
    (format!("SELECT count(*) FROM {schema}.{table}"), n as u64)
}

/// Samples in an embedded hub's store (read after the hub stopped).
fn redb_stored(data: &Path) -> u64 {
    let store = komlog_hub::store::redb::RedbStore::open(data).expect("open the embedded store");
    (0..USERS)
        .map(|u| {
            let user = Username::parse(&format!("u{u}")).expect("username");
            store
                .summaries_of(&user)
                .expect("summaries")
                .iter()
                .map(|m| m.count)
                .sum::<u64>()
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Report

fn ms(l: Option<(f64, f64, usize)>) -> String {
    match l {
        Some((p50, p99, n)) => format!("{p50:>7.2} / {p99:>7.2} ms (n={n})"),
        None => format!("{:>26}", "no notifications"),
    }
}

fn hub_cpu(u: &Usage) -> String {
    let each: Vec<String> = u.hub_cpu.iter().map(|c| format!("{c:.0}")).collect();
    each.join("/")
}

fn hub_rss(u: &Usage) -> String {
    let each: Vec<String> = u
        .hub_rss
        .iter()
        .map(|(rss, hwm)| format!("{}({})", rss / 1024, hwm / 1024))
        .collect();
    each.join("/")
}

fn pg(u: &Usage) -> String {
    match u.pg {
        Some((cpu, rss, n)) => format!("{cpu:>4.0}% {:>5} MB ({n} procs)", rss / 1024),
        None => "-".into(),
    }
}

fn ratio(x: f64, y: f64) -> String {
    if y > 0.0 {
        format!("{:.2}×", x / y)
    } else {
        "n/a".into()
    }
}

fn report(runs: &[&Run], params: &Params) {
    let head = [
        "setup",
        "load",
        "accepted/s",
        "durable/s",
        "lost",
        "notify p50 / p99",
        "hub CPU %",
        "hub RSS MB (HWM)",
        "PostgreSQL CPU % RSS",
    ];
    println!(
        "\n{:<10} {:<4} {:>12} {:>12} {:>5} {:>34} {:>14} {:>26} {}",
        head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7], head[8]
    );
    for r in runs {
        for (name, p, l) in [("(a)", &r.a, r.lat_a), ("(b)", &r.b, r.lat_b)] {
            println!(
                "{:<10} {:<4} {:>12.0} {:>12.0} {:>5} {:>34} {:>14} {:>26} {}",
                r.label,
                name,
                p.rate(),
                r.durable_rate(p),
                r.lost(),
                ms(l),
                hub_cpu(&p.usage),
                hub_rss(&p.usage),
                pg(&p.usage)
            );
        }
    }
    println!(
        "\n(a) = every session keeps {WINDOW} messages of {PER_MESSAGE} samples in flight; \
         (b) = {} samples/s in total, one message per session every {:.2} s.",
        params.rate,
        (params.sessions * PER_MESSAGE) as f64 / params.rate as f64
    );
    println!(
        "CPU % is of one core, over each load point; hub figures are per hub process (h0/h1/…)."
    );
    for r in runs {
        println!(
            "{}: {} hub(s); acknowledged {} samples in all ({} warm-up, {} errors in (a), {} in (b)); \
             stored {} [{}]; lost {}; hubs' komlog_hub_samples_total {:?} (sum {})",
            r.label,
            r.hubs,
            r.acked_total,
            r.warmup_acked,
            r.a.errors,
            r.b.errors,
            r.stored,
            r.stored_how,
            r.lost(),
            r.metrics_total,
            r.metrics_total.iter().sum::<u64>()
        );
    }
    if let [cluster, embedded] = runs {
        let cpu = |p: &Phase| p.usage.hub_cpu.iter().sum::<f64>();
        println!(
            "\ncluster / embedded: accepted (a) {}, durable (a) {}, notify (b) p50 {} p99 {}, \
             hubs' CPU (a) {} (b) {}",
            ratio(cluster.a.rate(), embedded.a.rate()),
            ratio(
                cluster.durable_rate(&cluster.a),
                embedded.durable_rate(&embedded.a)
            ),
            ratio(
                cluster.lat_b.map_or(0.0, |l| l.0),
                embedded.lat_b.map_or(0.0, |l| l.0)
            ),
            ratio(
                cluster.lat_b.map_or(0.0, |l| l.1),
                embedded.lat_b.map_or(0.0, |l| l.1)
            ),
            ratio(cpu(&cluster.a), cpu(&embedded.a)),
            ratio(cpu(&cluster.b), cpu(&embedded.b)),
        );
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let durable = cluster.durable_rate(&cluster.a);
        println!("\ntargets (cluster):");
        println!(
            "  ≥ {TARGET_DURABLE:.0} samples/s durable across the cluster: {durable:.0} → {}",
            met(durable >= TARGET_DURABLE)
        );
        let p99 = cluster.lat_b.map(|l| l.1);
        let at = if params.rate == TARGET_RATE {
            String::new()
        } else {
            format!(" (measured at {} samples/s: a quick run)", params.rate)
        };
        println!(
            "  notification p99 ≤ {TARGET_P99_MS:.0} ms at {TARGET_RATE} samples/s: {}{at} → {}",
            p99.map_or("none".into(), |p| format!("{p:.2} ms")),
            met(p99.is_some_and(|p| p <= TARGET_P99_MS) && params.rate == TARGET_RATE)
        );
        println!(
            "  0 lost: {} → {}",
            cluster.lost(),
            met(cluster.lost() == 0)
        );
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let sessions = std::env::var("KOMLOG_HUB_BENCH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000usize);
    assert!(
        sessions >= 30 && sessions.is_multiple_of(10),
        "KOMLOG_HUB_BENCH_SESSIONS must be a multiple of 10, at least 30"
    );
    let params = Params {
        sessions,
        duration: Duration::from_secs(if quick() { 5 } else { 20 }),
        rate: if quick() { 5_000 } else { TARGET_RATE },
    };
    if !up("127.0.0.1:5432") || !up("127.0.0.1:4222") {
        println!(
            "komlog-hub cluster bench: SKIPPED, it needs PostgreSQL at 127.0.0.1:5432 and NATS with JetStream at 127.0.0.1:4222"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let root = Root(Some(
        tempfile::Builder::new()
            .prefix("komlog-hub-bench-")
            .tempdir()
            .expect("temp dir"),
    ));
    println!(
        "komlog-hub cluster bench (loopback; {} sessions as {USERS} users, {} hooked; {PER_MESSAGE} samples per message; {} s per load point)",
        params.sessions,
        params.hooked(),
        params.duration.as_secs()
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_komlog-hub"));
    assert!(bin.is_file(), "{} is not built", bin.display());
    println!("   hub binary: {}", bin.display());

    // Keys, once: 10 RSA-4096 keys on two threads.
    let started = Instant::now();
    let keys: Vec<PrivateKey> = std::thread::scope(|s| {
        let halves: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    (0..USERS / 2)
                        .map(|_| PrivateKey::new(&mut getrandom::SysRng, 4096).expect("keygen"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("keygen thread"))
            .collect()
    });
    let key_files: Vec<PathBuf> = keys
        .iter()
        .enumerate()
        .map(|(u, k)| {
            let path = root.path().join(format!("u{u}.pub"));
            std::fs::write(&path, openssh_public_line(k.as_public_key())).expect("key file");
            path
        })
        .collect();
    println!(
        "   {USERS} RSA-4096 keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The cluster.
    let pid = std::process::id();
    let schema = format!("hubbench_{pid}");
    let name = format!("bench_{pid}");
    let guard = ClusterGuard {
        schema: schema.clone(),
        stream: format!("KOMLOG_{}", name.to_ascii_uppercase()),
    };
    runtime
        .block_on(sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        )))
        .expect("create the bench schema");
    let url = format!("{PG}?options=-csearch_path%3D{schema}");
    let cluster_hubs = Hubs::start(
        root.path(),
        "cluster",
        HUBS,
        &["--store", &url, "--bus", NATS, "--cluster", &name],
    );
    cluster_hubs.add_users(&key_files);
    let cluster = runtime.block_on(async {
        let (mut run, sessions, receivers) =
            load("cluster", &cluster_hubs, &keys, &params, true).await;
        close_all(sessions, receivers).await;
        let (how, stored) = pg_stored(&schema).await;
        run.stored = stored;
        run.stored_how = how;
        run
    });
    drop(cluster_hubs);
    drop(guard);

    // The baseline: one embedded hub.
    let mut embedded_hubs = Hubs::start(root.path(), "embedded", 1, &[]);
    embedded_hubs.add_users(&key_files);
    let mut embedded = runtime.block_on(async {
        let (run, sessions, receivers) =
            load("embedded", &embedded_hubs, &keys, &params, false).await;
        close_all(sessions, receivers).await;
        run
    });
    let data = embedded_hubs.dirs[0].clone();
    let served = embedded_hubs.served.pop().expect("the embedded hub");
    let status = served.stop();
    assert!(status.success(), "the embedded hub stopped with {status}");
    embedded.stored = redb_stored(&data);
    embedded.stored_how = "sample counts of the redb store".into();

    report(&[&cluster, &embedded], &params);
    assert_eq!(
        cluster.lost(),
        0,
        "samples acknowledged by the cluster but not stored"
    );
    assert_eq!(
        embedded.lost(),
        0,
        "samples acknowledged by the embedded hub but not stored"
    );
}
