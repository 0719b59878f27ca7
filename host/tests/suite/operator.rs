//! What an operator reads and relies on: the one-shot `komlogd` binary's
//! output and log records when an impulse traps, the help, what the agent
//! says when it starts, `min_exec_delta` across one-shot uploads and the
//! agent, empty windows, and the order in which a call's outputs fix a new
//! uri's kind.
//!
//! Each test has its own komlogd.yaml in a temporary directory, which is also
//! `HOME`. Every child is killed if it runs for more than a minute.

use crate::common;

use common::guest;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const TIMEOUT: Duration = Duration::from_secs(60);

/// How a child ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A temporary agent directory (also `HOME`) with its komlogd.yaml.
struct Agent {
    dir: tempfile::TempDir,
}

impl Agent {
    fn new(yaml: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("komlogd.yaml"), yaml).expect("write komlogd.yaml");
        Agent { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("komlogd.yaml")
    }

    /// `komlogd -c <its komlogd.yaml> ARGS` with `input` on stdin (none:
    /// `/dev/null`) and `env` set.
    fn run(&self, args: &[&str], input: Option<&str>, env: &[(&str, &str)]) -> Run {
        run(self.dir.path(), &self.config(), args, input, env)
    }

    /// Upload `value` to `uri` as a datapoint at `ts`, expecting success.
    fn upload(&self, uri: &str, ts: i64, value: f64) -> Run {
        let ts = ts.to_string();
        let run = self.run(
            &["-u", uri, "--datapoint", "--ts", &ts],
            Some(&value.to_string()),
            &[],
        );
        assert_eq!(run.code, 0, "upload to {uri} at {ts}: {run:?}");
        run
    }

    /// `query URI -n N --json`, parsed.
    fn query(&self, uri: &str) -> Vec<serde_json::Value> {
        let run = self.run(&["query", uri, "-n", "100", "--json"], None, &[]);
        assert_eq!(run.code, 0, "query {uri}: {run:?}");
        match serde_json::from_str(&run.stdout) {
            Ok(serde_json::Value::Array(rows)) => rows,
            other => panic!("query {uri} printed no JSON array: {other:?}"),
        }
    }
}

fn run(
    home: &Path,
    config: &Path,
    args: &[&str],
    input: Option<&str>,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(KOMLOGD);
    cmd.arg("-c")
        .arg(config)
        .args(args)
        .env("HOME", home)
        .env_remove("KOMLOGD_LOG")
        .envs(env.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run komlogd");
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let code = common::child::wait_or_kill(&mut child, TIMEOUT, &format!("komlogd {args:?}"))
        .code()
        .unwrap_or(-1);
    Run {
        code,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// The probe's reports at `probe.out`, parsed, oldest first.
fn reports(agent: &Agent) -> Vec<serde_json::Value> {
    agent
        .query("probe.out")
        .iter()
        .map(|row| {
            let text = row["value"].as_str().expect("a text report");
            serde_json::from_str(text).expect("a JSON report")
        })
        .collect()
}

#[test]
fn a_trap_is_one_line_on_stderr_and_in_the_log_and_its_backtrace_is_at_debug() {
    let agent = Agent::new(&format!(
        "- username: me\n- impulses:\n    name: flaky\n    filename: {}\n    uris: [in]\n    params: {{mode: panic}}\n",
        guest("misbehave").display()
    ));
    let run = agent.run(&["-u", "in", "--datapoint"], Some("1"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    // Every line is a whole record: a log line or komlogd's own message.
    for line in run.stderr.lines() {
        assert!(
            line.starts_with("komlogd: ") || line.starts_with("20"),
            "a continuation line in\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("backtrace"), "{}", run.stderr);
    let last = run
        .stderr
        .lines()
        .find(|l| l.starts_with("komlogd: impulse flaky: "))
        .unwrap_or_else(|| panic!("no last error in\n{}", run.stderr));
    assert!(
        last.starts_with(
            "komlogd: impulse flaky: trap: wasm `unreachable` instruction executed (guest stderr: thread "
        ),
        "{last}"
    );
    assert!(last.ends_with(": misbehave: asked to panic)"), "{last}");

    // The backtrace is there for whoever asks for debug, on one line too.
    let run = agent.run(
        &["-u", "in", "--datapoint"],
        Some("2"),
        &[("KOMLOGD_LOG", "debug")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let trace = run
        .stderr
        .lines()
        .find(|l| l.contains("DEBUG where it failed: "))
        .unwrap_or_else(|| panic!("no backtrace at debug in\n{}", run.stderr));
    assert!(trace.contains("wasm backtrace: 0: "), "{trace}");
    assert!(trace.contains("; 1: "), "{trace}");
}

#[test]
fn check_and_status_help_mention_packages() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("komlogd.yaml");
    for command in ["check", "status"] {
        let run = run(home.path(), &config, &[command, "--help"], None, &[]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("package"), "{command}: {}", run.stdout);
    }
    let run = run(home.path(), &config, &["--help"], None, &[]);
    for line in ["check", "status"].map(|c| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(c))
            .unwrap_or_else(|| panic!("no {c} in {}", run.stdout))
    }) {
        assert!(line.contains("package"), "{line}");
    }
}

#[test]
fn the_agent_says_on_stderr_what_it_loaded_and_logs_a_readable_last_line() {
    let agent = Agent::new(&format!(
        "- username: me\n\
         - job:\n    uri: j.out\n    command: echo hi\n    schedule: '0 0 1 1 *'\n\
         - impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n\
         - package:\n    install: off.wasm\n    enabled: false\n",
        guest("probe").display()
    ));
    let mut child = Command::new(KOMLOGD)
        .arg("-c")
        .arg(agent.config())
        .env("HOME", agent.dir.path())
        .env_remove("KOMLOGD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run komlogd");
    let socket = agent.dir.path().join("komlogd.sock");
    common::child::wait_for_path(&mut child, &socket, TIMEOUT);
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait for komlogd");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let log = agent.dir.path().join("log").join("komlogd.log");
    // The agent's cache is new: it says that it compiles the probe (with a
    // line every 5 s while it does), then what runs and where it logs.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("komlogd: still compiling probe.wasm: "))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(
        lines[0], "komlogd: compiling probe.wasm (first time, cached afterwards)…",
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("komlogd: compiled probe.wasm in ") && lines[1].ends_with(" s"),
        "{stderr}"
    );
    assert_eq!(
        lines[2],
        format!(
            "komlogd: running in local mode: 1 impulse, 0 packages, 1 job; logging to {} \
             (SIGINT or SIGTERM stops it)",
            log.display()
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(" (SIGINT or SIGTERM stops it)\n"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&log).expect("the log");
    let last = text
        .lines()
        .find(|l| l.contains("komlogd stopped"))
        .unwrap_or_else(|| panic!("no last line in\n{text}"));
    assert!(
        last.ends_with(
            "komlogd stopped: 1 job scheduled, 0 source samples stored, 0 refused, 0 impulse fires"
        ),
        "{last}"
    );
}

// ------------------------------------------------------- the server link

use crate::inproc;

mod link {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::inproc::{self, key, user};

    use komlog_hub::server::{self, HubConfig, RunningHub};
    use komlog_hub::store::Share;
    use komlog_hub::store::redb::RedbStore;
    use komlogd::agent::status::server_prometheus_text;
    use komlogd::model::{Sample, Value, now_us};
    use komlogd::session::{Hook, ServerStatus};
    use komlogd::store::DataReqs;

    const WAIT: Duration = Duration::from_secs(30);

    /// A hub on `port` with alice (and her key) and bob, who shares nothing.
    async fn start_hub(dir: &std::path::Path, port: u16) -> RunningHub {
        let store = RedbStore::open(&dir.join("hub")).expect("hub store");
        let listen = format!("127.0.0.1:{port}").parse().expect("addr");
        let running = server::start(HubConfig::new(listen, dir.join("hub")), Arc::new(store))
            .await
            .expect("hub starts");
        let store = running.hub.store.as_ref();
        inproc::add_alice(store);
        store.add_user(&user("bob")).expect("bob");
        running
    }

    fn hook(uri: &str, impulses: &[&str]) -> Hook {
        Hook {
            uri: uri.into(),
            reqs: DataReqs::default(),
            impulses: impulses.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Alice's agent, linked to the hub on `port`, hooking `hooks`.
    struct Agent(inproc::Agent);

    impl Agent {
        fn start(port: u16, hooks: Vec<Hook>) -> Agent {
            Agent(inproc::Agent::start(port, hooks, Duration::from_secs(20)))
        }

        /// Wait until `ok` holds for the status (polling; bounded).
        async fn until(&self, what: &str, ok: impl Fn(&ServerStatus) -> bool) -> ServerStatus {
            self.0.until(what, WAIT, ok).await
        }

        async fn stop(self) {
            self.0.stop().await
        }
    }

    impl std::ops::Deref for Agent {
        type Target = inproc::Agent;
        fn deref(&self) -> &inproc::Agent {
            &self.0
        }
    }

    /// The value of an unlabelled series in a Prometheus text.
    fn metric(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_link_exports_its_state_and_outbox_and_dates_its_last_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Agent::start(port, vec![hook("mine", &["own"])]);

        // No server yet: the link backs off, and the error has a time.
        let down = agent
            .until("a failed login", |s| {
                s.state == "backoff" && s.last_error.is_some()
            })
            .await;
        let failed_at = down.last_error_ts.expect("the error's time");
        assert!((now_us() - failed_at).abs() < 60_000_000, "{down:?}");
        assert!(!down.last_error_is_past(), "{down:?}");
        // A sample an hour old waits in the outbox.
        let hour = 3_600_000_000;
        let ts = now_us() - hour;
        let receipt = tokio::task::block_in_place(|| {
            agent.inbox.upload(vec![Sample {
                uri: "mine".into(),
                ts,
                value: Value::Datapoint(1.0),
            }])
        })
        .expect("the dispatcher runs");
        assert_eq!(receipt.accepted, 1);
        let waiting = agent.until("a queued sample", |s| s.outbox == 1).await;
        assert_eq!(waiting.outbox_oldest_ts, Some(ts));
        let text = server_prometheus_text(&waiting, ts + hour + 5_000_000);
        assert_eq!(metric(&text, "komlogd_server_connected"), 0.0, "{text}");
        assert_eq!(
            metric(&text, "komlogd_server_outbox_samples"),
            1.0,
            "{text}"
        );
        assert_eq!(
            metric(&text, "komlogd_server_outbox_oldest_age_seconds"),
            3605.0,
            "{text}"
        );
        assert_eq!(metric(&text, "komlogd_server_logins_total"), 0.0, "{text}");
        assert!(
            text.contains(&format!(
                "komlogd_server_state{{url=\"http://127.0.0.1:{port}/\",state=\"backoff\"}} 1\n"
            )),
            "{text}"
        );

        // The server comes: the outbox drains, and the login error is an
        // earlier connection's.
        let hub = start_hub(dir.path(), port).await;
        let up = agent
            .until("connected with the outbox sent", |s| {
                s.state == "connected" && s.outbox == 0 && s.acked == 1
            })
            .await;
        let since = up.connected_since_ts.expect("connected since");
        assert!(up.last_error_ts.is_some_and(|at| at < since), "{up:?}");
        assert!(up.last_error_is_past(), "{up:?}");
        let text = server_prometheus_text(&up, now_us());
        for (name, value) in [
            ("komlogd_server_connected", 1.0),
            ("komlogd_server_logins_total", 1.0),
            ("komlogd_server_outbox_samples", 0.0),
            ("komlogd_server_outbox_oldest_age_seconds", 0.0),
            ("komlogd_server_samples_sent_total", 1.0),
            ("komlogd_server_samples_acked_total", 1.0),
            ("komlogd_server_samples_refused_total", 0.0),
            ("komlogd_server_messages_sent_total", 1.0),
            ("komlogd_server_hooks", 1.0),
            ("komlogd_server_hooks_refused", 0.0),
        ] {
            assert_eq!(metric(&text, name), value, "{name} in\n{text}");
        }
        assert_eq!(
            metric(&text, "komlogd_server_last_error_timestamp_seconds"),
            failed_at as f64 / 1e6,
            "{text}"
        );
        agent.stop().await;
        let _ = hub.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_hook_is_its_impulses_problem_until_the_server_takes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = start_hub(dir.path(), 0).await;
        let agent = Agent::start(
            hub.addr.port(),
            vec![
                hook("mine", &["own"]),
                hook("bob:secret", &["watcher", "other"]),
            ],
        );
        let s = agent
            .until("the refusal", |s| {
                s.state == "connected" && !s.hooks_refused.is_empty()
            })
            .await;
        assert_eq!(s.hooked, 1, "{s:?}");
        let [refusal] = s.hooks_refused.as_slice() else {
            panic!("one refusal: {s:?}");
        };
        assert_eq!(refusal.uri, "bob:secret");
        assert_eq!(refusal.impulses, ["watcher", "other"]);
        assert!(
            refusal.reason.contains("not shared with alice"),
            "{refusal:?}"
        );
        let text = server_prometheus_text(&s, now_us());
        assert_eq!(metric(&text, "komlogd_server_hooks_refused"), 1.0, "{text}");

        // The impulses subscribed to it change: the refusal names the new set.
        agent.hooks.send_replace(vec![
            hook("mine", &["own"]),
            hook("bob:secret", &["watcher"]),
        ]);
        agent
            .until("the refusal naming watcher alone", |s| {
                s.hooks_refused
                    .first()
                    .is_some_and(|r| r.impulses == ["watcher"])
            })
            .await;

        // Bob shares it; the next change hooks it and the refusal is gone.
        hub.hub
            .store
            .add_share(&Share {
                owner: user("bob"),
                prefix: "secret".into(),
                with: user("alice"),
            })
            .expect("share");
        agent.hooks.send_replace(vec![
            hook("mine", &["own", "second"]),
            hook("bob:secret", &["watcher"]),
        ]);
        let s = agent
            .until("the hook taken", |s| {
                s.hooks_refused.is_empty() && s.hooked == 2
            })
            .await;
        assert_eq!(s.state, "connected");
        agent.stop().await;
        let _ = hub.stop().await;
    }

    /// GET `path` from `addr`; the whole response.
    fn http_get(addr: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to /metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("the response");
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn komlogd_status_and_metrics_show_the_link_and_a_refused_hook() {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = start_hub(dir.path(), 0).await;
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let agent = super::Agent::new(&format!(
            "- username: alice\n- server:\n    url: http://127.0.0.1:{}/\n- metrics:\n    listen: {metrics}\n\
             - impulses:\n    name: watcher\n    filename: {probe}\n    uris: ['bob:secret']\n\
             - impulses:\n    name: own\n    filename: {probe}\n    uris: [x]\n",
            hub.addr.port(),
            probe = super::guest("probe").display()
        ));
        let pem = key().to_pkcs8_pem(LineEnding::LF).expect("PEM");
        std::fs::write(agent.dir.path().join("key.priv"), pem.as_bytes()).expect("key.priv");
        let running = super::start_agent(&agent);
        let start = Instant::now();
        let table = loop {
            let run = agent.run(&["status"], None, &[]);
            assert_eq!(run.code, 0, "{run:?}");
            if run.stdout.contains("hook-refused") {
                break run.stdout;
            }
            assert!(
                start.elapsed() < WAIT,
                "no refused hook within {WAIT:?}:\n{}",
                run.stdout
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let state = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("no {name} in\n{table}"))
                .to_owned()
        };
        assert_eq!(state("watcher"), "hook-refused", "{table}");
        assert_eq!(state("own"), "running", "{table}");
        assert!(
            table.lines().any(|l| l
                .starts_with("watcher: hook refused by the server for bob:secret (")
                && l.contains("not shared with alice")),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.starts_with(&format!(
                "server: http://127.0.0.1:{}/ connected, outbox 0,",
                hub.addr.port()
            )) && l.ends_with(", hooked 1, hooks refused 1")),
            "{table}"
        );
        let text = http_get(&metrics.to_string(), "/metrics");
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        for line in [
            "komlogd_server_connected 1\n",
            "komlogd_server_logins_total 1\n",
            "komlogd_server_hooks 1\n",
            "komlogd_server_hooks_refused 1\n",
            "komlogd_server_outbox_samples 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        super::stop_agent(running);
        let _ = hub.stop().await;
    }
}

/// Start the agent of `agent`'s komlogd.yaml; returns once its control
/// socket answers.
fn start_agent(agent: &Agent) -> std::process::Child {
    let mut child = Command::new(KOMLOGD)
        .arg("-c")
        .arg(agent.config())
        .env("HOME", agent.dir.path())
        .env_remove("KOMLOGD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run komlogd");
    let socket = agent.dir.path().join("komlogd.sock");
    common::child::wait_for_path(&mut child, &socket, TIMEOUT);
    child
}

/// Stop an agent with SIGTERM and wait for it.
fn stop_agent(mut child: std::process::Child) {
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for komlogd");
    assert_eq!(status.code(), Some(0));
}

/// The running agent's counters of impulse `name`, once `ok` holds for them.
fn impulse_status(
    agent: &Agent,
    name: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let run = agent.run(&["status", "--json"], None, &[]);
        assert_eq!(run.code, 0, "{run:?}");
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON status");
        let found = report["impulses"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["name"] == name))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if ok(&found) {
            return found;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{name}: not within {TIMEOUT:?}: {found}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn min_exec_delta_holds_across_one_shot_uploads_and_the_agent_alike() {
    let agent = Agent::new(&format!(
        "- username: me\n- impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n    min_exec_delta: 1h\n",
        guest("probe").display()
    ));
    let min = 60_000_000;
    let t0: i64 = 1_700_000_000_000_000;
    let fired = |run: &Run, n: usize| {
        let s = if n == 1 { "" } else { "s" };
        assert!(
            run.stdout.ends_with(&format!(
                ": stored; {n} impulse fire{s}, {n} sample{s} written\n"
            )),
            "{run:?}"
        );
    };
    fired(&agent.upload("x", t0, 1.0), 1);
    // Within the hour of that run, after it and before it: skipped.
    fired(&agent.upload("x", t0 + 10 * min, 2.0), 0);
    fired(&agent.upload("x", t0 - 10 * min, 3.0), 0);

    // The agent knows the one-shot run...
    let running = start_agent(&agent);
    agent.upload("x", t0 + 20 * min, 4.0);
    impulse_status(&agent, "probe", |s| s["skips"] == 1);
    agent.upload("x", t0 + 120 * min, 5.0);
    impulse_status(&agent, "probe", |s| s["fires"] == 1);
    stop_agent(running);
    // ...and a one-shot upload the agent's.
    fired(&agent.upload("x", t0 + 130 * min, 6.0), 0);
    fired(&agent.upload("x", t0 + 240 * min, 7.0), 1);
    let ts: Vec<i64> = reports(&agent)
        .iter()
        .map(|r| r["ts"].as_i64().expect("ts"))
        .collect();
    assert_eq!(ts, [t0, t0 + 120 * min, t0 + 240 * min]);
}

#[test]
fn a_zero_past_count_or_past_delta_gives_an_empty_window() {
    for reqs in [
        "{past_count: 0}",
        "{past_delta: 0s}",
        "{past_count: 0, past_delta: 0s}",
        "{}",
    ] {
        let agent = Agent::new(&format!(
            "- username: me\n- impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n    data_reqs: {reqs}\n",
            guest("probe").display()
        ));
        agent.upload("x", 1_000, 1.0);
        agent.upload("x", 2_000, 2.0);
        let reports = reports(&agent);
        let [_, second] = reports.as_slice() else {
            panic!("{reqs}: two fires: {reports:?}");
        };
        assert_eq!(second["updated"], serde_json::json!(["x"]), "{reqs}");
        let window = second["window"].as_array().expect("a window");
        if reqs == "{}" {
            // Neither set: the latest sample.
            assert_eq!(window.len(), 1, "{reqs}: {second}");
            assert_eq!(window[0]["ts"], 2_000, "{reqs}: {second}");
        } else {
            assert!(window.is_empty(), "{reqs}: {second}");
        }
    }
}

#[test]
fn a_calls_outputs_fix_a_new_uris_kind_in_timestamp_order() {
    // The guest returns a datapoint at 20 before a text at 10: the text,
    // earlier in time, is written first and makes `k` a datasource.
    let agent = Agent::new(&format!(
        "- username: me\n- impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n    \
         params: {{emit: [{{uri: k, ts: 20, datapoint: 1}}, {{uri: k, ts: 10, datasource: t}}]}}\n",
        guest("probe").display()
    ));
    let run = agent.upload("x", 30, 1.0);
    assert!(
        run.stdout
            .ends_with(": stored; 1 impulse fire, 2 samples written\n"),
        "{run:?}"
    );
    let rows = agent.query("k");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ts"], 10, "{rows:?}");
    assert_eq!(rows[0]["kind"], "datasource", "{rows:?}");
    assert_eq!(rows[0]["value"], "t", "{rows:?}");
}
