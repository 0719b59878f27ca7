//! The real Python agent, komlogd 0.12.0 from PyPI, unmodified, against a real
//! `komlog-hub serve` process on 127.0.0.1.
//!
//! Recipe (everything is installed by the test; a failing step fails the test):
//!
//! 1. Python: pyenv's 3.6.15 (`$PYENV_ROOT`, else `$(pyenv root)`, else
//!    `~/.pyenv`, then `/versions/3.6.15/bin/python`); komlogd 0.12.0 runs only
//!    on 3.5/3.6.
//! 2. A venv with komlogd 0.12.0, cached as `target/tmp/komlogd-py36`
//!    (`tests/support/py36.rs` has the recipe; `cargo xtask test` builds it
//!    beside the main build, and this test when it is missing).
//! 3. The URLs: komlogd hard-codes https://www.komlog.io/login and
//!    https://agents.komlog.io/. `tests/python/sitecustomize.py`, put on
//!    `PYTHONPATH`, rewrites those two constants in the code of
//!    `KomlogSession._auth` and `_ws_connect` when `komlogd.api.session` is
//!    imported, from `KOMLOG_HUB_LOGIN_URL` / `KOMLOG_HUB_WS_URL`. The hub is
//!    reached as `localhost`, not `127.0.0.1`: aiohttp's default cookie jar
//!    ignores cookies from an IP-address host. The hub's cookie has no `Secure`
//!    flag, so it is sent over plain http.
//! 4. The agent's configuration directory is cached as
//!    `target/tmp/komlogd-py36-agent`: its first run creates `key.priv`/`key.pub`
//!    (and stops asking for a username); the key is registered with
//!    `komlog-hub agent add hubtester --pubkey key.pub`. Its `.venvs/default`,
//!    the package virtualenv komlogd builds itself, is kept between runs;
//!    `PIP_CONSTRAINT` gives that build the same constraints.
//! 5. A transfer method of the test's own (`tests/python/hubtest_tm`, a setuptools
//!    package with a `komlogd.package` entry point) is installed by komlogd from
//!    a `- package:` block; it hooks `hubtest.in` and writes `hubtest.out` =
//!    value + 1.
//!
//! Checks: a stdin upload (`echo … | komlogd -u hubtest.stdin`) is stored by the
//! hub; the package's session hooks `hubtest.in`; a stdin upload to `hubtest.in`
//! makes the hub notify it and its transfer method's write of `hubtest.out`
//! arrives; `komlog-hub kick` (close code 4403) makes the agent log in again
//! (a new session re-hooks `hubtest.in`). After a re-login komlogd 0.12.0 stops
//! reading its socket (spec §14.1), so nothing more is checked on that hub.
//!
//! Then a clustered phase (about 5 s more), with the same venv, key and agent
//! directory: two `serve --store --bus --cluster` processes, A and B, on
//! PostgreSQL (127.0.0.1:5432, database `test`, a schema of the test's own) and
//! NATS JetStream (127.0.0.1:4222, a cluster name and so a stream of its own),
//! the key registered straight in PostgreSQL. A new daemon logs in at A and its
//! package hooks `hubtest.in` there; a `komlogd -u hubtest.in` at B logs in and
//! writes it, and the notification reaches the transfer method at A through
//! the bus (its `hubtest.out` = 42). Without PostgreSQL or NATS the phase says
//! `SKIPPED: …` (a failure with KOMLOGD_TESTS_NO_SKIP set); the schema, the
//! stream and the processes are removed even when the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../tests/support/child.rs"]
mod child;
#[path = "../../tests/support/part.rs"]
mod part;
#[path = "../../tests/support/py36.rs"]
mod py36;
use part::part;

const USER: &str = "hubtester";
fn tmp_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Run a command to completion within `limit`; panics (with its output) on a
/// timeout or when `expect_success` and it fails.
fn run(cmd: &mut Command, limit: Duration, what: &str, expect_success: bool) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            kill(pid, 9);
            panic!("{what}: no result within {limit:?}: {cmd:?}");
        }
    };
    if expect_success && !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn kill(pid: u32, sig: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on a child process this test started.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// A background process killed when dropped; its output goes to files.
struct Background {
    child: Child,
    name: &'static str,
    stderr: PathBuf,
}

impl Background {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Background {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Background {
            child,
            name,
            stderr,
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); stderr:\n{}",
                self.name,
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    /// SIGTERM, then wait up to `limit`; returns whether it stopped by itself.
    fn terminate(&mut self, limit: Duration) -> bool {
        child::terminate(&mut self.child, limit).is_some()
    }
}

impl Drop for Background {
    /// Still running (a failed test): SIGTERM first, so that komlogd stops
    /// its package process, then SIGKILL.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate(Duration::from_secs(15));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `komlog-hub --data DATA [--store URL] …`: through the hub serving on DATA,
/// or straight to the store when none does.
struct Hub {
    data: PathBuf,
    store: Option<String>,
}

impl Hub {
    fn cmd(&self, args: &[&str]) -> serde_json::Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_komlog-hub"));
        cmd.arg("--data").arg(&self.data);
        if let Some(url) = &self.store {
            cmd.arg("--store").arg(url);
        }
        let out = run(cmd.args(args), Duration::from_secs(60), "komlog-hub", true);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    }

    fn newest(&self, uri: &str) -> Option<(String, String)> {
        let q = self.cmd(&["query", USER, uri, "-n", "1"]);
        let row = q["rows"].get(0)?;
        Some((
            row["t"].as_str()?.to_owned(),
            // A datapoint's value is a JSON number (its exact decimal), a
            // datasource's a string.
            match &row["value"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            },
        ))
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        self.cmd(&["sessions"])["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `serve` on this hub's data (and store), in the background.
    fn serve(&self, name: &'static str, extra: &[&str], dir: &Path) -> Background {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_komlog-hub"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&self.data);
        if let Some(url) = &self.store {
            cmd.arg("--store").arg(url);
        }
        Background::spawn(name, cmd.args(extra), dir)
    }

    /// The port of the hub serving on this data, from its run file.
    fn port(&self, process: &mut Background) -> u16 {
        wait_for(
            "the hub's run file",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                process.assert_running();
                let text = std::fs::read_to_string(self.data.join("hub.json")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                v["listen"].as_str()?.parse::<std::net::SocketAddr>().ok()
            },
            String::new,
        )
        .port()
    }

    /// Add the user and register the agent's public key.
    fn register(&self, pubkey: &Path) {
        self.cmd(&["user", "add", USER]);
        let registered = self.cmd(&["agent", "add", USER, "--pubkey", pubkey.to_str().unwrap()]);
        assert!(
            registered.to_string().contains("registered agent"),
            "{registered}"
        );
    }
}

/// The clustered phase's PostgreSQL database and NATS server.
const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS: &str = "127.0.0.1:4222";

/// What the clustered phase needs, or why it cannot run: PostgreSQL and NATS
/// answering on 127.0.0.1.
fn cluster_services() -> Result<(), String> {
    for (addr, what) in [("127.0.0.1:5432", "PostgreSQL"), (NATS, "NATS server")] {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            return Err(format!("no {what} at {addr}"));
        }
    }
    Ok(())
}

/// The convention of hub/tests/suite/cluster.rs: say SKIPPED, or fail when
/// KOMLOGD_TESTS_NO_SKIP is set.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

/// A cluster's schema (in PostgreSQL's `test`) and stream (`KOMLOG_<NAME>` in
/// NATS JetStream), and its hub processes; dropping it stops the hubs, then
/// drops the schema and deletes the stream, even when the test fails.
struct Cluster {
    name: String,
    schema: String,
    hubs: Vec<Background>,
}

impl Cluster {
    /// A fresh schema and cluster name of this test's own (an earlier run's
    /// leftovers under the same names are removed first).
    fn create() -> Cluster {
        let tag = format!("pyclient_{}", std::process::id());
        let cluster = Cluster {
            name: tag.clone(),
            schema: tag,
            hubs: Vec::new(),
        };
        cluster.cleanup(true).unwrap_or_else(|e| panic!("{e}"));
        cluster
    }

    /// The store URL of the cluster's schema.
    fn url(&self) -> String {
        format!("{PG}?options=-csearch_path%3D{}", self.schema)
    }

    /// Drop the schema and the stream; `create` the schema again. Each is
    /// retried for a while (other tests restart these services); both are
    /// tried even when one fails.
    fn cleanup(&self, create: bool) -> Result<(), String> {
        let mut sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if create {
            sql += &format!("; CREATE SCHEMA {}", self.schema);
        }
        let stream = format!("KOMLOG_{}", self.name.to_ascii_uppercase());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let schema = retried(&sql, || async {
                let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connect to PostgreSQL: {e:?}"))?;
                let task = tokio::spawn(conn);
                let done = client.batch_execute(&sql).await;
                drop(client);
                let _ = task.await;
                done.map_err(|e| format!("{e:?}"))
            })
            .await;
            let stream = retried(&format!("delete stream {stream}"), || async {
                let nats = async_nats::connect(NATS)
                    .await
                    .map_err(|e| format!("connect to NATS: {e}"))?;
                use async_nats::jetstream::{ErrorCode, context::DeleteStreamErrorKind};
                let deleted = async_nats::jetstream::new(nats)
                    .delete_stream(&stream)
                    .await;
                match deleted {
                    Ok(_) => Ok(()),
                    Err(e) => match e.kind() {
                        DeleteStreamErrorKind::JetStream(j)
                            if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                        {
                            Ok(())
                        }
                        _ => Err(e.to_string()),
                    },
                }
            })
            .await;
            schema.and(stream)
        })
    }
}

/// `step` until it succeeds, each try within 5 s, for about 15 s.
async fn retried<F, Fut>(what: &str, mut step: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(5), step()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no result within 5 s".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(format!("{what}: {error}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The hubs first: they hold connections to the schema.
        self.hubs.clear();
        if let Err(e) = self.cleanup(false) {
            eprintln!("cleaning up cluster {}: {e}", self.name);
        }
    }
}

/// Poll `f` every `every` until it gives `Some`, at most until `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
    on_timeout: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                on_timeout()
            );
        }
        std::thread::sleep(every);
    }
}

fn hooked_sids(sessions: &[serde_json::Value], metric: &str) -> Vec<String> {
    sessions
        .iter()
        .filter(|s| {
            ["hooks", "pending"].iter().any(|k| {
                s[k].as_array()
                    .is_some_and(|a| a.iter().any(|h| h.as_str() == Some(metric)))
            })
        })
        .filter_map(|s| s["sid"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn python_komlogd_0_12_works_against_the_hub() {
    let tmp = tmp_root();
    std::fs::create_dir_all(&tmp).unwrap();
    let constraints = py36::constraints(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let venv = py36::komlogd_venv(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let komlogd = venv.join("bin/komlogd");
    let run_dir = tempfile::tempdir().unwrap();
    let log_dir = run_dir.path().join("log");
    let log_file = log_dir.join("komlogd.log");
    let show_log = || {
        format!(
            "komlogd log ({}):\n{}",
            log_file.display(),
            std::fs::read_to_string(&log_file).unwrap_or_default()
        )
    };

    // The agent's configuration directory; its first run creates the key pair.
    let agent_dir = tmp.join("komlogd-py36-agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let config = agent_dir.join("komlogd.yaml");
    let logging_block = format!(
        "- logging:\n    level: DEBUG\n    rotation: no\n    dirname: {}\n    filename: komlogd.log\n",
        log_dir.display()
    );
    if !agent_dir.join("key.pub").exists() {
        part("komlogd's first run writes its key pair", || {
            std::fs::write(&config, &logging_block).unwrap();
            let out = run(
                Command::new(&komlogd)
                    .arg("-c")
                    .arg(&config)
                    .stdin(Stdio::null()),
                Duration::from_secs(120),
                "komlogd first run",
                true,
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("Set username in configuration file."),
                "{stderr}"
            );
            assert!(
                agent_dir.join("key.pub").exists(),
                "the first run writes key.pub"
            );
        });
    }

    // The hub, serving plain HTTP on 127.0.0.1, reached as localhost.
    let hub = Hub {
        data: run_dir.path().join("hub-data"),
        store: None,
    };
    let pubkey = agent_dir.join("key.pub");
    let mut hub_process = hub.serve("komlog-hub", &[], run_dir.path());
    let port = part("the hub starts and registers the agent's key", || {
        let port = hub.port(&mut hub_process);
        hub.register(&pubkey);
        port
    });

    // The configuration: the user, the log, and the test's package.
    let package_src = run_dir.path().join("hubtest_tm");
    copy_dir(&python_dir().join("hubtest_tm"), &package_src);
    std::fs::write(
        &config,
        format!(
            "- username: {USER}\n{logging_block}- package:\n    install: {}\n    enabled: yes\n    venv: default\n",
            package_src.display()
        ),
    )
    .unwrap();
    // komlogd (`-u`, or the daemon) against the hub on `port`.
    let agent = |port: u16| {
        let mut cmd = Command::new(&komlogd);
        cmd.arg("-c")
            .arg(&config)
            .env("PYTHONPATH", python_dir())
            .env(
                "KOMLOG_HUB_LOGIN_URL",
                format!("http://localhost:{port}/login"),
            )
            .env("KOMLOG_HUB_WS_URL", format!("http://localhost:{port}/"))
            .env("PIP_CONSTRAINT", &constraints)
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME");
        cmd
    };
    let upload = |port: u16, uri: &str, text: &str| {
        let mut cmd = agent(port);
        cmd.args(["-u", uri]).stdin(Stdio::piped());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start komlogd -u");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                kill(pid, 9);
                panic!("komlogd -u {uri} did not finish\n{}", show_log());
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // komlogd exits 0 even on errors (spec §1.3): its stderr tells.
        assert!(
            out.status.success() && !stderr.contains("Error"),
            "komlogd -u {uri}: {}\n{stderr}\n{}",
            out.status,
            show_log()
        );
    };
    let metric = format!("{USER}:hubtest.in");
    // The package's sessions that hook hubtest.in on `hub`, once there are any.
    let hooked = |hub: &Hub, daemon: &mut Background, limit: Duration| {
        wait_for(
            "the package's transfer method to hook hubtest.in",
            limit,
            Duration::from_secs(1),
            || {
                daemon.assert_running();
                let sids = hooked_sids(&hub.sessions(), &metric);
                (!sids.is_empty()).then_some(sids)
            },
            show_log,
        )
    };
    // A sample to hubtest.in through the hub on `port`: the transfer method's
    // hubtest.out = 41 + 1 at the same time, read from `hub`.
    let notified = |port: u16, hub: &Hub| {
        upload(port, "hubtest.in", "41\n");
        let (t_in, _) = hub.newest("hubtest.in").expect("hubtest.in stored");
        let (t_out, value) = wait_for(
            "the transfer method's hubtest.out",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || hub.newest("hubtest.out"),
            show_log,
        );
        assert_eq!((t_out.as_str(), value.as_str()), (t_in.as_str(), "42"));
    };

    // 1. A stdin upload is stored.
    part("1. a stdin upload is stored", || {
        upload(port, "hubtest.stdin", "hello from komlogd 0.12\nline two\n");
        let (_, value) = hub.newest("hubtest.stdin").expect("hubtest.stdin stored");
        assert_eq!(value, "hello from komlogd 0.12\nline two\n");
    });

    // 2. The agent with the package: its package session hooks hubtest.in.
    //    The first run builds .venvs/default (minutes); later runs reuse it.
    let mut daemon = Background::spawn("komlogd", &mut agent(port), run_dir.path());
    let first_sids = part("2. the package's session hooks hubtest.in", || {
        hooked(&hub, &mut daemon, Duration::from_secs(1500))
    });

    // 3. A sample to hubtest.in: the hub notifies the hooked session, the
    //    transfer method writes hubtest.out = 41 + 1 at the same time.
    part("3. a notification runs the transfer method", || {
        notified(port, &hub)
    });

    // 4. A kick (close code 4403) makes the agent log in again: after its fixed
    //    15 s pause, a new session re-hooks hubtest.in.
    part(
        "4. after a kick the agent logs in again and re-hooks",
        || {
            let kicked = hub.cmd(&["kick", USER]);
            assert!(kicked.to_string().contains("kicked"), "{kicked}");
            assert!(
                hub.sessions().is_empty(),
                "every session of {USER} was kicked"
            );
            let new_sids = hooked(&hub, &mut daemon, Duration::from_secs(120));
            assert!(
                new_sids.iter().all(|s| !first_sids.contains(s)),
                "new sessions"
            );
        },
    );

    // Stop the agent (it stops its package process) and the hub.
    if !daemon.terminate(Duration::from_secs(40)) {
        eprintln!("komlogd did not stop on SIGTERM within 40 s; killing it");
    }
    assert!(
        hub_process.terminate(Duration::from_secs(20)),
        "the hub stops on SIGTERM"
    );

    // 5. The same agent (key, directory, package venv) against a clustered
    //    hub: two `serve --store --bus --cluster` processes, A and B, on a
    //    schema and stream of this test's own. The daemon logs in at A and its
    //    package hooks hubtest.in there; a `komlogd -u` at B writes it, and
    //    the notification reaches the package at A through the bus.
    if let Err(reason) = cluster_services() {
        skip(&format!("the clustered phase: {reason}"));
        return;
    }
    let clustered = Instant::now();
    let mut cluster = part("5. a cluster of two hubs starts", Cluster::create);
    let [hub_a, hub_b] = ["cluster-a", "cluster-b"].map(|dir| Hub {
        data: run_dir.path().join(dir),
        store: Some(cluster.url()),
    });
    let [port_a, port_b] = part("5. the cluster's hubs start, the key is registered", || {
        // Straight to PostgreSQL (it also migrates the schema), before the
        // hubs start.
        std::fs::create_dir_all(&hub_a.data).unwrap();
        hub_a.register(&pubkey);
        let bus = [
            "--bus",
            &format!("nats://{NATS}"),
            "--cluster",
            &cluster.name,
        ];
        for (hub, name) in [(&hub_a, "komlog-hub-a"), (&hub_b, "komlog-hub-b")] {
            let process = hub.serve(name, &bus, run_dir.path());
            cluster.hubs.push(process);
        }
        let (a, b) = cluster.hubs.split_at_mut(1);
        [hub_a.port(&mut a[0]), hub_b.port(&mut b[0])]
    });
    let mut daemon = Background::spawn("komlogd-cluster", &mut agent(port_a), run_dir.path());
    part(
        "5a. at hub A, the package's session hooks hubtest.in",
        || {
            hooked(&hub_a, &mut daemon, Duration::from_secs(120));
            assert!(
                hooked_sids(&hub_b.sessions(), &metric).is_empty(),
                "the hook lives at hub A only"
            );
        },
    );
    part(
        "5b. a write at hub B notifies the transfer method at hub A",
        || notified(port_b, &hub_a),
    );
    if !daemon.terminate(Duration::from_secs(40)) {
        eprintln!("komlogd (clustered phase) did not stop on SIGTERM within 40 s; killing it");
    }
    for hub in &mut cluster.hubs {
        assert!(
            hub.terminate(Duration::from_secs(20)),
            "{} stops on SIGTERM",
            hub.name
        );
    }
    eprintln!("the clustered phase took {:?}", clustered.elapsed());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
