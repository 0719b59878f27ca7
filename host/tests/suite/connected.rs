//! Connected mode end to end, with real processes on 127.0.0.1: `komlog-hub
//! serve` and `komlogd` agents as child processes, the `probe` guest as the
//! impulse. Two users share a uri; an impulse of bob's agent on `alice:uri`
//! fires when alice's agent writes, its write to alice's uri is dropped and its
//! own write lands at the hub; history written before bob's agent started is in
//! the first fire's window; a 4403 kick makes the agent log in and hook again;
//! the hub SIGKILLed mid-stream and the agent SIGKILLed with a full outbox lose
//! nothing; the uris hooked at the hub follow a reload of the agent's
//! configuration, while connected and across a reconnect; an agent reaches a
//! hub serving TLS with its `ca_file`, and one without it is refused for the
//! unknown issuer; datasources tell the hub what they supply.
//!
//! The hub binary is `komlog-hub` beside `komlogd` in the target directory:
//! `cargo test -p komlogd -p komlog-hub` or `cargo test --workspace` builds it,
//! and these tests build it themselves when it is missing or stale (see
//! [`hub_bin`]).

use crate::common;

use common::guest;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use komlogd::agent::status::{self, UploadRequest};
use serde_json::Value as Json;

use crate::certs;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");

/// The `komlog-hub` binary beside `komlogd`, built first when it is missing or
/// older than a source of the hub (or of the protocol crate it uses): this
/// package cannot depend on another package's binary, so the first test that
/// needs it runs `cargo build -p komlog-hub` into the same target directory
/// and profile (cargo holds no lock on it while tests run), and cargo decides
/// what to rebuild.
pub(crate) fn hub_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = Path::new(KOMLOGD).with_file_name("komlog-hub");
            if let Some(newer) = newer_source(&bin) {
                eprintln!("building komlog-hub: {newer}");
                build_hub(&bin)?;
            }
            Ok(bin)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Why `bin` needs building: it is missing, or a source it is built from is
/// newer (the hub's and the protocol crate's manifests and sources, the web
/// page it embeds, Cargo.lock).
fn newer_source(bin: &Path) -> Option<String> {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return Some(format!("{} is missing", bin.display()));
    };
    let root = common::repo_root();
    let mut inputs = vec![root.join("Cargo.lock")];
    for krate in ["hub", "protocol"] {
        inputs.push(root.join(krate).join("Cargo.toml"));
        files_under(&root.join(krate).join("src"), &mut inputs);
    }
    // The web page the hub embeds.
    files_under(&root.join("hub/web/dist"), &mut inputs);
    inputs.into_iter().find_map(|input| {
        let modified = std::fs::metadata(&input).and_then(|m| m.modified()).ok()?;
        (modified > built).then(|| format!("{} is newer than {}", input.display(), bin.display()))
    })
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// `cargo build -p komlog-hub --bin komlog-hub` into the target directory and
/// profile of `bin` (`<target dir>/<profile dir>/komlog-hub`).
fn build_hub(bin: &Path) -> Result<(), String> {
    let profile_dir = bin.parent().ok_or("no profile directory")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => return Err(format!("unexpected path {}", bin.display())),
    };
    let status = Command::new(common::cargo())
        .args([
            "build",
            "-p",
            "komlog-hub",
            "--bin",
            "komlog-hub",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(common::repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|e| format!("cannot run cargo to build komlog-hub: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build -p komlog-hub` failed ({status}); build it yourself, or run `cargo test -p komlogd -p komlog-hub`"
        ))
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Poll `f` every 20 ms until it gives Some, at most `limit`.
pub(crate) fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

fn term(child: &mut Child) {
    if common::child::terminate(child, Duration::from_secs(20)).is_some() {
        return;
    }
    kill9(child);
    panic!("process {} did not stop on SIGTERM", child.id());
}

/// A `komlog-hub serve` child on a fixed port, restartable.
pub(crate) struct Hub {
    pub(crate) data: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Serve TLS with these files.
    tls: Option<certs::TestCerts>,
}

impl Hub {
    pub(crate) fn new(dir: &Path) -> Hub {
        let data = dir.join("hub");
        std::fs::create_dir_all(&data).unwrap();
        Hub {
            data,
            port: free_port(),
            child: None,
            tls: None,
        }
    }

    /// A started hub with users alice and bob, alice sharing `shared` (and
    /// everything below it) with bob.
    fn sharing(dir: &Path) -> Hub {
        let mut hub = Hub::new(dir);
        hub.cmd(&["user", "add", "alice"]);
        hub.cmd(&["user", "add", "bob"]);
        hub.cmd(&["share", "alice", "shared", "--with", "bob"]);
        hub.start();
        hub
    }

    pub(crate) fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}/", self.port),
            None => format!("http://127.0.0.1:{}/", self.port),
        }
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Output {
        let out = Command::new(hub_bin())
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("KOMLOG_HUB_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "komlog-hub {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.data.join(format!("serve-{}.log", now_us()))).unwrap();
        let child = Command::new(hub_bin())
            .arg("--data")
            .arg(&self.data)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(self.tls.iter().flat_map(|c| {
                [
                    "--tls-cert".as_ref(),
                    c.cert.as_os_str(),
                    "--tls-key".as_ref(),
                    c.key.as_os_str(),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually("the hub to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).ok()
        });
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    /// The values of `owner`'s `uri`, oldest first (empty when it does not exist).
    pub(crate) fn values(&self, owner: &str, uri: &str) -> Vec<String> {
        let out = Command::new(hub_bin())
            .arg("--data")
            .arg(&self.data)
            .args(["query", owner, uri, "-n", "100000"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        let reply: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
        let mut v: Vec<String> = reply["rows"]
            .as_array()
            .map(|a| {
                a.iter()
                    // A datapoint's value is a JSON number written with the
                    // hub's exact decimal; a datasource's is a string.
                    .filter_map(|r| match r.get("value")? {
                        Json::String(s) => Some(s.clone()),
                        Json::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.reverse();
        v
    }

    /// What `owner`'s datasource `uri` supplies, as the hub holds it.
    fn supplies(&self, owner: &str, uri: &str) -> Option<Vec<String>> {
        let out = self.cmd(&["query", owner, uri, "-n", "1"]);
        let reply: Json = serde_json::from_slice(&out.stdout).ok()?;
        let list = reply["supplies"].as_array()?;
        Some(
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// The uris `user`'s connected sessions hook, active or pending, as
    /// `owner:uri`, sorted.
    fn hooks(&self, user: &str) -> Vec<String> {
        let out = self.cmd(&["sessions"]);
        let reply: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
        let mut uris: Vec<String> = reply["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["user"] == user && s["connected"] == true)
            .flat_map(|s| {
                let hooks = s["hooks"].as_array().into_iter().flatten();
                let pending = s["pending"].as_array().into_iter().flatten();
                hooks
                    .chain(pending)
                    .filter_map(Json::as_str)
                    .map(str::to_owned)
            })
            .collect();
        uris.sort();
        uris
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `komlogd` agent child with its own configuration directory.
pub(crate) struct Agent {
    dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// A configuration for `user` pointing at `url`, with `extra` YAML appended;
    /// the key pair is created and registered at the hub.
    pub(crate) fn new(root: &Path, user: &str, hub: &Hub, extra: &str) -> Agent {
        let dir = root.join(user);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("komlogd.yaml"),
            format!(
                "- username: {user}\n- logging:\n    level: debug\n- server:\n    url: {}\n{extra}",
                hub.url()
            ),
        )
        .unwrap();
        komlogd::keys::load_or_create(&dir.join("key.priv")).expect("key pair");
        let pubkey = dir.join("key.pub").display().to_string();
        hub.cmd(&["agent", "add", user, "--pubkey", &pubkey]);
        Agent { dir, child: None }
    }

    /// A configuration for `user` whose `- server:` block is `server` (the
    /// YAML below `- server:`), with `extra` appended; the key pair is created
    /// and its public line returned, for the caller to register.
    pub(crate) fn with_server(
        root: &Path,
        user: &str,
        server: &str,
        extra: &str,
    ) -> (Agent, String) {
        let dir = root.join(user);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("komlogd.yaml"),
            format!("- username: {user}\n- logging:\n    level: debug\n- server:\n{server}{extra}"),
        )
        .unwrap();
        let key = komlogd::keys::load_or_create(&dir.join("key.priv")).expect("key pair");
        (Agent { dir, child: None }, key.public_line)
    }

    fn config(&self) -> String {
        self.dir.join("komlogd.yaml").display().to_string()
    }

    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(KOMLOGD)
            .args(["-c", &self.config()])
            .env("HOME", &self.dir)
            .env_remove("KOMLOGD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let socket = status::control_socket_path(&self.dir);
        eventually(
            "the agent's control socket",
            Duration::from_secs(60),
            || status::query(&socket).ok(),
        );
    }

    pub(crate) fn status(&self) -> status::StatusReport {
        status::query(&status::control_socket_path(&self.dir)).expect("status")
    }

    pub(crate) fn server(&self) -> komlogd::session::ServerStatus {
        self.status()
            .server
            .expect("a server line in connected mode")
    }

    pub(crate) fn wait_connected(&self, logins: u64) {
        eventually("the agent to connect", Duration::from_secs(60), || {
            let s = self.server();
            (s.state == "connected" && s.logins >= logins).then_some(())
        });
    }

    /// Hand a datapoint to the running agent; returns once it is committed.
    pub(crate) fn upload(&self, uri: &str, ts: i64, v: f64) {
        self.upload_sample(uri, ts, Some(v), None);
    }

    /// Hand a datasource sample to the running agent.
    pub(crate) fn upload_text(&self, uri: &str, ts: i64, text: &str) {
        self.upload_sample(uri, ts, None, Some(text.into()));
    }

    fn upload_sample(
        &self,
        uri: &str,
        ts: i64,
        datapoint: Option<f64>,
        datasource: Option<String>,
    ) {
        let answer = status::upload(
            &status::control_socket_path(&self.dir),
            &UploadRequest {
                uri: uri.into(),
                ts,
                datapoint,
                datasource,
            },
        )
        .expect("upload");
        assert_eq!(answer.accepted, 1, "{answer:?}");
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            term(&mut c);
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log").join("komlogd.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) fn now_us() -> i64 {
    komlogd::model::now_us()
}

#[test]
fn a_shared_uri_fires_bobs_impulse_with_history_and_survives_a_kick() {
    let root = tempfile::tempdir().unwrap();
    let hub = Hub::sharing(root.path());
    let mut alice = Agent::new(root.path(), "alice", &hub, "");
    let emit =
        r#"[{"uri":"alice:shared.metric.x","datapoint":1},{"uri":"mine.copy","datapoint":2}]"#;
    let mut bob = Agent::new(
        root.path(),
        "bob",
        &hub,
        &format!(
            "- impulses:\n    name: watcher\n    filename: {}\n    uris: [alice:shared.metric]\n    \
             data_reqs: {{past_count: 10}}\n    params:\n      out: bob.seen\n      emit: '{emit}'\n",
            guest("probe").display()
        ),
    );

    // History: three samples before bob's agent exists.
    alice.start();
    alice.wait_connected(1);
    let t0 = now_us() - 10_000_000;
    for i in 0..3 {
        alice.upload("shared.metric", t0 + i * 1000, i as f64 + 0.5);
    }
    eventually(
        "alice's history at the hub",
        Duration::from_secs(30),
        || (hub.values("alice", "shared.metric").len() == 3).then_some(()),
    );

    bob.start();
    bob.wait_connected(1);
    assert_eq!(bob.server().hooked, 1);
    assert_eq!(bob.server().history, 3);
    let t1 = now_us();
    alice.upload("shared.metric", t1, 42.0);

    // Bob's impulse fired on alice's write: its own write lands at the hub, and
    // its window already held the history.
    let seen = eventually(
        "bob's impulse output at the hub",
        Duration::from_secs(30),
        || hub.values("bob", "bob.seen").pop(),
    );
    let report: Json = serde_json::from_str(&seen).expect("probe writes JSON");
    assert_eq!(report["ts"], t1);
    assert_eq!(
        report["updated"],
        serde_json::json!(["alice:shared.metric"])
    );
    let window = window_of(&report);
    assert_eq!(
        window,
        vec![(t0, 0.5), (t0 + 1000, 1.5), (t0 + 2000, 2.5), (t1, 42.0)]
    );
    eventually(
        "bob's second write at the hub",
        Duration::from_secs(30),
        || (hub.values("bob", "mine.copy") == ["2"]).then_some(()),
    );
    // The write to alice's uri was dropped by bob's agent, counted, never sent.
    let imp = &bob.status().impulses[0];
    assert_eq!(imp.name, "watcher");
    assert_eq!(imp.stats["remote_writes_dropped"], 1);
    assert_eq!(imp.stats["fires"], 1);
    assert!(hub.values("alice", "shared.metric.x").is_empty());
    let b = bob.server();
    assert_eq!((b.refused, b.outbox), (0, 0), "{b:?}");
    assert_eq!(b.acked, 2, "{b:?}");

    // A kick closes bob's session with 4403: the agent logs in again and
    // re-hooks, so the next write of alice fires the impulse again.
    hub.cmd(&["kick", "bob"]);
    bob.wait_connected(2);
    assert!(bob.log().contains("4403"), "the log names the kick");
    let t2 = now_us();
    alice.upload("shared.metric", t2, 43.0);
    eventually("the fire after the kick", Duration::from_secs(30), || {
        let last = hub.values("bob", "bob.seen").pop()?;
        let r: Json = serde_json::from_str(&last).ok()?;
        (r["ts"] == t2).then_some(())
    });
    assert_eq!(bob.status().impulses[0].stats["fires"], 2);
    assert_eq!(bob.status().impulses[0].stats["remote_writes_dropped"], 2);
    bob.stop();
    alice.stop();
}

#[test]
fn a_hub_killed_mid_stream_loses_no_sample() {
    let root = tempfile::tempdir().unwrap();
    let mut hub = Hub::new(root.path());
    hub.cmd(&["user", "add", "alice"]);
    hub.start();
    let mut alice = Agent::new(root.path(), "alice", &hub, "");
    alice.start();
    alice.wait_connected(1);
    let t0 = now_us();
    let n = 600;
    let mut expected = Vec::new();
    for i in 0..n {
        if i == 200 {
            hub.kill9();
        }
        if i == 400 {
            hub.start();
        }
        // i / 4 exactly, as the wire writes it: "0", "0.25", "0.5", "0.75", "1", …
        alice.upload("stream.values", t0 + i * 10, i as f64 * 0.25);
        let quarter = ["", ".25", ".5", ".75"][i as usize % 4];
        expected.push(format!("{}{quarter}", i / 4));
    }
    eventually("every sample at the hub", Duration::from_secs(90), || {
        let s = alice.server();
        (s.outbox == 0 && hub.values("alice", "stream.values").len() == n as usize).then_some(())
    });
    assert_eq!(hub.values("alice", "stream.values"), expected);
    let s = alice.server();
    assert!(s.logins >= 2, "the agent logged in again: {s:?}");
    assert!(s.acked >= n as u64, "{s:?}");
    assert_eq!(s.refused, 0);
    alice.stop();
}

#[test]
fn an_agent_killed_with_a_full_outbox_loses_no_sample() {
    let root = tempfile::tempdir().unwrap();
    let mut hub = Hub::new(root.path());
    hub.cmd(&["user", "add", "alice"]);
    // The hub is down: the first login fails and is retried, and the samples
    // wait in the outbox.
    let mut alice = Agent::new(root.path(), "alice", &hub, "");
    alice.start();
    let t0 = now_us();
    let n = 150;
    let mut expected = Vec::new();
    for i in 0..n {
        // Whole numbers go on the wire without a fraction: "1000", "1001", …
        alice.upload("kept.values", t0 + i * 10, 1000.0 + i as f64);
        expected.push((1000 + i).to_string());
    }
    let s = alice.server();
    assert_eq!(s.outbox, n as u64, "{s:?}");
    assert_eq!(s.logins, 0);
    assert!(
        matches!(s.state.as_str(), "backoff" | "connecting"),
        "{s:?}"
    );
    alice.kill9();

    hub.start();
    alice.start();
    alice.wait_connected(1);
    eventually("the outbox drained", Duration::from_secs(60), || {
        (alice.server().outbox == 0).then_some(())
    });
    assert_eq!(hub.values("alice", "kept.values"), expected);
    alice.stop();
}

#[test]
fn datasources_tell_the_hub_what_they_supply() {
    let root = tempfile::tempdir().unwrap();
    let mut hub = Hub::new(root.path());
    hub.cmd(&["user", "add", "alice"]);
    hub.start();
    // A job declares its datasource's supplies in komlogd.yaml (its schedule
    // is far away: the test writes the datasource itself); the probe package
    // declares its own from its params and writes `probe.a.fired` every second.
    let extra = format!(
        "- job:\n    uri: host.disk\n    command: df -k\n    schedule: '0 0 1 1 *'\n    supplies: [host.disk.used, host.disk.free]\n\
         - package:\n    install: {}\n    params:\n      jobs: a every:1000\n      supplies: probe.a.fired=probe.a.runs,probe.a.runs\n",
        guest("probe_package").display()
    );
    let mut agent = Agent::new(root.path(), "alice", &hub, &extra);
    agent.start();
    agent.wait_connected(1);
    agent.upload_text("host.disk", now_us(), "/dev/root 100 40 60");
    let supplies = |uri: &str| {
        eventually(
            &format!("the hub to hold what {uri} supplies"),
            Duration::from_secs(30),
            || hub.supplies("alice", uri).filter(|l| !l.is_empty()),
        )
    };
    assert_eq!(supplies("host.disk"), ["host.disk.free", "host.disk.used"]);
    assert_eq!(supplies("probe.a.fired"), ["probe.a.runs"]);
    // Each list went once on this connection, however many writes followed.
    eventually(
        "a few more probe runs acknowledged",
        Duration::from_secs(30),
        || (hub.values("alice", "probe.a.fired").len() >= 3).then_some(()),
    );
    agent.upload_text("host.disk", now_us(), "/dev/root 100 41 59");
    eventually("the second disk sample", Duration::from_secs(30), || {
        (hub.values("alice", "host.disk").len() == 2).then_some(())
    });
    assert_eq!(agent.server().supplies_sent, 2, "{:?}", agent.server());
    // A datapoint has no supplies; the hub's answer for it says so.
    assert_eq!(hub.supplies("alice", "probe.a.runs"), None);

    // A new connection sends each list again with the datasource's next write.
    hub.kill9();
    hub.start();
    agent.wait_connected(2);
    eventually("the lists sent again", Duration::from_secs(30), || {
        (agent.server().supplies_sent >= 3).then_some(())
    });
    agent.stop();
}

/// A probe impulse `watcher` on `uri`, reporting to `bob.seen`, with the last
/// 10 samples in its window.
fn watcher_on(uri: &str) -> String {
    format!(
        "- impulses:\n    name: watcher\n    filename: {}\n    uris: [{uri}]\n    \
         data_reqs: {{past_count: 10}}\n    params:\n      out: bob.seen\n",
        guest("probe").display()
    )
}

/// The report of bob's impulse for the fire at `ts`, if it is at the hub.
/// The (ts, datapoint) pairs of the window a probe report shows.
fn window_of(report: &Json) -> Vec<(i64, f64)> {
    report["window"]
        .as_array()
        .expect("a window in the probe's report")
        .iter()
        .map(|r| (r["ts"].as_i64().unwrap(), r["datapoint"].as_f64().unwrap()))
        .collect()
}

fn seen_at(hub: &Hub, ts: i64) -> Option<Json> {
    hub.values("bob", "bob.seen")
        .iter()
        .filter_map(|v| serde_json::from_str::<Json>(v).ok())
        .find(|r| r["ts"] == ts)
}

#[test]
fn hooks_follow_a_reload_while_connected_and_across_a_reconnect() {
    let root = tempfile::tempdir().unwrap();
    let mut hub = Hub::sharing(root.path());
    let mut alice = Agent::new(root.path(), "alice", &hub, "");
    let mut bob = Agent::new(root.path(), "bob", &hub, &watcher_on("bob.local"));
    let url = hub.url();
    let rewrite = |agent: &Agent, impulses: &str| {
        std::fs::write(
            agent.dir.join("komlogd.yaml"),
            format!(
                "- username: bob\n- logging:\n    level: debug\n- server:\n    url: {url}\n{impulses}"
            ),
        )
        .unwrap();
    };
    let reloads = |agent: &Agent| agent.log().matches("configuration reloaded").count();

    alice.start();
    alice.wait_connected(1);
    let t0 = now_us() - 10_000_000;
    alice.upload("shared.metric", t0, 0.5);
    eventually(
        "alice's first sample at the hub",
        Duration::from_secs(30),
        || (hub.values("alice", "shared.metric").len() == 1).then_some(()),
    );
    bob.start();
    bob.wait_connected(1);
    assert_eq!(hub.hooks("bob"), vec!["bob:bob.local"]);
    let history = bob.server().history;

    // A reload points the impulse at alice's shared uri: bob's agent hooks it
    // and unhooks its own uri without logging in again, and fetches the
    // history the impulse's window needs.
    rewrite(&bob, &watcher_on("alice:shared.metric"));
    eventually(
        "bob's session to hook alice's uri after the reload",
        Duration::from_secs(30),
        || (hub.hooks("bob") == vec!["alice:shared.metric"]).then_some(()),
    );
    eventually(
        "the history of alice's uri",
        Duration::from_secs(30),
        || (bob.server().history > history).then_some(()),
    );
    assert_eq!(bob.server().logins, 1, "no new login was needed");
    assert_eq!(bob.server().hooked, 1);
    let t1 = now_us();
    alice.upload("shared.metric", t1, 42.0);
    let report = eventually(
        "bob's impulse fired by alice's write",
        Duration::from_secs(30),
        || seen_at(&hub, t1),
    );
    assert_eq!(
        report["updated"],
        serde_json::json!(["alice:shared.metric"])
    );
    let window = window_of(&report);
    assert_eq!(window, vec![(t0, 0.5), (t1, 42.0)]);
    let log = bob.log();
    assert!(
        log.lines()
            .any(|l| l.contains("uri hooked") && l.contains("alice:shared.metric")),
        "the log names the hooked uri"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("uri unhooked") && l.contains("bob.local")),
        "the log names the unhooked uri"
    );

    // A reload back to the local uri: alice's uri is unhooked, so her next
    // write reaches bob's agent no more.
    let reloaded = reloads(&bob);
    rewrite(&bob, &watcher_on("bob.local"));
    eventually(
        "bob's session to unhook alice's uri",
        Duration::from_secs(30),
        || (hub.hooks("bob") == vec!["bob:bob.local"]).then_some(()),
    );
    assert!(reloads(&bob) > reloaded);
    let notified = bob.server().notified;
    let t2 = now_us();
    alice.upload("shared.metric", t2, 43.0);
    eventually(
        "alice's third sample at the hub",
        Duration::from_secs(30),
        || (hub.values("alice", "shared.metric").len() == 3).then_some(()),
    );
    // The reloaded impulse still fires on its own uri, and the hub notifies
    // bob's session of that write too (it hooks bob.local), after anything
    // alice's earlier write made it send there: once that notification is
    // in, it must be the only one since the unhook.
    let t3 = now_us();
    bob.upload("bob.local", t3, 1.0);
    eventually("the fire on bob's own uri", Duration::from_secs(30), || {
        seen_at(&hub, t3)
    });
    eventually(
        "bob's own write notified back",
        Duration::from_secs(30),
        || (bob.server().notified > notified).then_some(()),
    );
    assert_eq!(
        bob.server().notified,
        notified + 1,
        "no notification of alice's write after the unhook"
    );
    assert!(seen_at(&hub, t2).is_none());

    // A change made while the hub is down is hooked at the next login.
    hub.kill9();
    let reloaded = reloads(&bob);
    rewrite(&bob, &watcher_on("alice:shared.metric"));
    eventually(
        "the reload while disconnected",
        Duration::from_secs(30),
        || (reloads(&bob) > reloaded).then_some(()),
    );
    hub.start();
    bob.wait_connected(2);
    eventually(
        "bob's new session to hook the current uris",
        Duration::from_secs(30),
        || (hub.hooks("bob") == vec!["alice:shared.metric"]).then_some(()),
    );
    alice.wait_connected(2);
    let t4 = now_us();
    alice.upload("shared.metric", t4, 44.0);
    eventually(
        "bob's impulse fired after the reconnect",
        Duration::from_secs(60),
        || seen_at(&hub, t4),
    );
}

#[test]
fn an_agent_reaches_a_tls_hub_with_its_ca_file() {
    let root = tempfile::tempdir().unwrap();
    let certs = certs::write_test_certs(&root.path().join("certs"));
    let ca = certs.ca.clone();
    let mut hub = Hub::new(root.path());
    hub.tls = Some(certs);
    hub.cmd(&["user", "add", "alice"]);
    hub.cmd(&["user", "add", "bob"]);
    hub.start();
    let mut alice = Agent::new(
        root.path(),
        "alice",
        &hub,
        &format!("    ca_file: {}\n", ca.display()),
    );
    let mut bob = Agent::new(root.path(), "bob", &hub, "");
    alice.start();
    bob.start();
    alice.wait_connected(1);
    let t0 = now_us();
    let expected: Vec<String> = (0..3)
        .map(|i| {
            alice.upload("tls.values", t0 + i * 10, 10.0 + i as f64);
            (10 + i).to_string()
        })
        .collect();
    eventually("the samples at the hub", Duration::from_secs(60), || {
        (hub.values("alice", "tls.values") == expected).then_some(())
    });
    assert_eq!(alice.server().url, hub.url());
    // Without the CA file the hub's certificate is refused, and said why.
    let s = eventually("bob's refused login", Duration::from_secs(60), || {
        let s = bob.server();
        s.last_error.is_some().then_some(s)
    });
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("TLS handshake with localhost failed") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(s.logins, 0);
    bob.stop();
    alice.stop();
}
