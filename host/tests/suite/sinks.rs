//! Sinks against real destinations: a real `komlogd` fed through its control
//! socket forwards what it stores to a file, a webhook (a small HTTP server here),
//! PostgreSQL (127.0.0.1:5432, through a TCP relay the test starts and stops) and
//! InfluxDB 1.x (an `influxd` the test starts). Each test checks that exactly the
//! matching samples arrive with their values and times, that a destination down
//! for a while loses nothing, and that a kill -9 loses nothing either (and
//! doubles nothing where the destination dedupes; elsewhere at most `resent`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::influxd::Influxd;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");

/// Skip (or fail, with `KOMLOGD_TESTS_NO_SKIP` set) when a tool is missing.
pub(crate) fn skip(reason: &str) {
    assert!(
        std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
        "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

/// A komlogd child with its own directory.
pub(crate) struct Agent {
    home: tempfile::TempDir,
    child: Option<Child>,
}

impl Agent {
    fn dir(&self) -> PathBuf {
        self.home.path().join("agent")
    }

    fn config(&self) -> PathBuf {
        self.dir().join("komlogd.yaml")
    }

    /// Write komlogd.yaml with `sinks` (YAML `- sink:` blocks) and start the agent.
    pub(crate) fn start(sinks: &str) -> Agent {
        let home = tempfile::tempdir().unwrap();
        let agent = Agent { home, child: None };
        std::fs::create_dir_all(agent.dir()).unwrap();
        std::fs::write(agent.config(), format!("- username: me\n{sinks}")).unwrap();
        let mut agent = agent;
        agent.spawn();
        agent
    }

    pub(crate) fn spawn(&mut self) {
        let socket = self.dir().join("komlogd.sock");
        let _ = std::fs::remove_file(&socket);
        let mut child = Command::new(KOMLOGD)
            .args(["-c", &self.config().display().to_string()])
            .env("HOME", self.home.path())
            .env_remove("KOMLOGD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::child::wait_for_path(&mut child, &socket, Duration::from_secs(60));
        self.child = Some(child);
    }

    /// Store `samples` through the control socket; panics unless all are accepted.
    pub(crate) fn feed(&self, samples: &[(String, i64, Val)]) {
        let body: Vec<serde_json::Value> = samples
            .iter()
            .map(|(uri, ts, v)| match v {
                Val::D(x) => serde_json::json!({"uri": uri, "ts": ts, "datapoint": x}),
                Val::T(t) => serde_json::json!({"uri": uri, "ts": ts, "datasource": t}),
            })
            .collect();
        let answer = self.request(&format!("samples {}\n", serde_json::Value::from(body)));
        assert_eq!(
            answer["accepted"].as_u64(),
            Some(samples.len() as u64),
            "{answer}"
        );
    }

    fn request(&self, line: &str) -> serde_json::Value {
        let mut s = UnixStream::connect(self.dir().join("komlogd.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// The sink `name` in `status`.
    fn sink(&self, name: &str) -> serde_json::Value {
        let st = self.request("status\n");
        st["sinks"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no sink {name} in {st}"))
    }

    /// Poll the sink's status until `pred` holds (at most 60 s).
    pub(crate) fn sink_until(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.sink(name);
            if pred(&s) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `komlogd -c CONFIG ARGS`: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut child = Command::new(KOMLOGD)
            .args(["-c", &self.config().display().to_string()])
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KOMLOGD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = common::child::wait_or_kill(&mut child, Duration::from_secs(60), "komlogd");
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.take().map(|mut s| s.read_to_string(&mut out));
        child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        (status.code().unwrap_or(-1), out, err)
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            common::child::signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = common::child::terminate(&mut c, Duration::from_secs(30));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    D(f64),
    T(String),
}

/// A sample: (uri, ts µs, value).
pub(crate) type S = (String, i64, Val);

/// A row of the PostgreSQL sink's table: (uri, ts µs, kind, value, text).
type Row = (String, i64, String, Option<f64>, Option<String>);

pub(crate) fn dp(uri: &str, ts: i64, v: f64) -> (String, i64, Val) {
    (uri.to_owned(), ts, Val::D(v))
}

fn ds(uri: &str, ts: i64, t: &str) -> (String, i64, Val) {
    (uri.to_owned(), ts, Val::T(t.to_owned()))
}

/// Wait (at most 60 s) until `read` returns `want` entries or more; the last read.
pub(crate) fn until_count<T>(what: &str, want: usize, mut read: impl FnMut() -> Vec<T>) -> Vec<T> {
    let start = Instant::now();
    loop {
        let got = read();
        if got.len() >= want {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: {} of {want} after 60 s",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Feed 20 rounds of 100 datapoints of `uri` (1 ms apart, from `base` + 1 s),
/// with a kill -9 of the agent and a restart after the 15th round: what was fed.
pub(crate) fn feed_through_a_kill(agent: &mut Agent, uri: &str, base: i64) -> Vec<S> {
    feed_through_an_outage_and_a_kill(agent, None, uri, base)
}

/// [`feed_through_a_kill`], with `relay` (the way to the destination) cut after
/// the 6th round and back after the 10th.
pub(crate) fn feed_through_an_outage_and_a_kill(
    agent: &mut Agent,
    relay: Option<&mut Relay>,
    uri: &str,
    base: i64,
) -> Vec<S> {
    feed_through_an_outage_and_a_kill_of(agent, relay, uri, base, None).0
}

/// [`feed_through_an_outage_and_a_kill`], also giving the `retried` count of
/// the sink `sink` just before the kill (the restarted agent counts from 0).
pub(crate) fn feed_through_an_outage_and_a_kill_of(
    agent: &mut Agent,
    mut relay: Option<&mut Relay>,
    uri: &str,
    base: i64,
    sink: Option<&str>,
) -> (Vec<S>, u64) {
    let mut retried_before_kill = 0;
    let mut sent = Vec::new();
    for round in 0..20i64 {
        let batch: Vec<_> = (0..100)
            .map(|i| dp(uri, base + (1000 + round * 100 + i) * 1000, i as f64))
            .collect();
        agent.feed(&batch);
        sent.extend(batch);
        match (round, relay.as_deref_mut()) {
            (5, Some(r)) => r.stop(),
            (9, Some(r)) => r.start(),
            (14, _) => {
                if let Some(name) = sink {
                    retried_before_kill = agent.sink(name)["retried"].as_u64().unwrap_or(0);
                }
                agent.kill9();
                agent.spawn();
            }
            _ => {}
        }
    }
    (sent, retried_before_kill)
}

/// Each sample of `got` once, in time order; and how many more there were.
pub(crate) fn distinct(got: &[S]) -> (Vec<S>, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for s in got {
        if seen.insert((s.1, s.0.clone(), format!("{:?}", s.2))) {
            out.push(s.clone());
        }
    }
    out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let doubled = got.len() - out.len();
    (out, doubled)
}

/// A mixed set of samples: which ones match `uris: ["host.*"]` with
/// `kinds: [datapoint]` is known.
pub(crate) fn mixed(base: i64) -> (Vec<S>, Vec<S>) {
    let all = vec![
        dp("host.cpu", base + 1, 0.25),
        dp("host.mem", base + 2, 1e9),
        dp("host.cpu.user", base + 3, 3.0), // two levels: not host.*
        ds("host.log", base + 4, "text"),   // a datasource: not this kind
        dp("app.requests", base + 5, 7.0),
        dp("host.cpu", base + 6, -1.5),
    ];
    let matching = vec![all[0].clone(), all[1].clone(), all[5].clone()];
    (all, matching)
}

/// Parse the jsonl lines of a file sink into (uri, ts, value).
fn jsonl(path: &Path) -> Vec<(String, i64, Val)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let val = match v["kind"].as_str() {
                Some("datapoint") => Val::D(v["value"].as_f64().unwrap()),
                _ => Val::T(v["value"].as_str().unwrap().to_owned()),
            };
            (
                v["uri"].as_str().unwrap().to_owned(),
                v["ts"].as_i64().unwrap(),
                val,
            )
        })
        .collect()
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[test]
fn file_sinks_get_exactly_the_matching_samples_and_survive_a_blocked_directory_and_a_kill() {
    let base = now_us();
    let mut agent = Agent::start(
        "- sink:\n    name: hosts\n    type: file\n    path: out/hosts.jsonl\n    uris: [\"host.*\"]\n    kinds: [datapoint]\n    batch: {size: 100, age: 50ms}\n\
         - sink:\n    name: all\n    type: file\n    format: csv\n    path: out/all.csv\n    batch: {size: 100, age: 50ms}\n",
    );
    let out = agent.dir().join("out");
    let hosts = out.join("hosts.jsonl");
    let (all, matching) = mixed(base);
    agent.feed(&all);
    let got = until_count("hosts.jsonl", matching.len(), || jsonl(&hosts));
    assert_eq!(got, matching);
    let csv = until_count("all.csv", all.len() + 1, || {
        std::fs::read_to_string(out.join("all.csv"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    });
    assert_eq!(csv[0], "uri,ts,kind,value");
    assert_eq!(csv[4], format!("host.log,{},datasource,text", base + 4));
    assert_eq!(
        csv[2],
        format!("host.mem,{},datapoint,1000000000", base + 2)
    );

    // The directory goes away and a file stands in its way: the sink retries, then
    // writes everything once the path is usable again.
    let moved = agent.dir().join("out-moved");
    std::fs::rename(&out, &moved).unwrap();
    std::fs::write(&out, b"in the way").unwrap();
    let batch: Vec<_> = (0..50)
        .map(|i| dp("host.disk", base + 100 + i, i as f64))
        .collect();
    agent.feed(&batch);
    let s = agent.sink_until("hosts", "retrying", |s| s["retried"].as_u64() > Some(0));
    assert!(
        s["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("hosts.jsonl"),
        "{s}"
    );
    std::fs::remove_file(&out).unwrap();
    let got = until_count("hosts.jsonl after the block", batch.len(), || jsonl(&hosts));
    assert_eq!(got, batch, "nothing lost, nothing doubled");
    agent.sink_until("hosts", "running again", |s| {
        s["state"] == "running" && s["lag_samples"] == 0
    });

    // kill -9 while samples flow: after the restart every accepted sample is in
    // the file; duplicates only where the sink says it may have resent.
    let mut sent = Vec::new();
    for round in 0..20 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                dp(
                    "host.net",
                    base + 1000 + round * 100 + i,
                    (round * 100 + i) as f64,
                )
            })
            .collect();
        agent.feed(&batch);
        sent.extend(batch);
        if round == 10 {
            agent.kill9();
            agent.spawn();
        }
    }
    let net = || {
        jsonl(&hosts)
            .into_iter()
            .filter(|(u, _, _)| u == "host.net")
            .collect::<Vec<_>>()
    };
    // Resent duplicates may make up the count before every sample is there:
    // wait for the distinct ones.
    let distinct = || {
        let mut got = net();
        got.sort_by_key(|(_, ts, _)| *ts);
        got.dedup_by_key(|(_, ts, _)| *ts);
        got
    };
    until_count("host.net after kill -9", sent.len(), distinct);
    let got = net();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, ts, _) in &got {
        *counts.entry(*ts).or_default() += 1;
    }
    for (_, ts, _) in &sent {
        assert!(counts.contains_key(ts), "sample at {ts} missing");
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let s = agent.sink("hosts");
    assert!(
        duplicates as u64 <= s["resent"].as_u64().unwrap(),
        "{duplicates} duplicates, status {s}"
    );
    agent.stop();
}

/// A small HTTP server: answers 503 while `refuse` is set, 200 otherwise, and
/// keeps the samples of every batch it accepted.
struct Hook {
    port: u16,
    refuse: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU16>,
}

impl Hook {
    fn start() -> Hook {
        Hook::start_tls(None)
    }

    /// A webhook server, over TLS with `tls`.
    fn start_tls(tls: Option<Arc<rustls::ServerConfig>>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let hook = Hook {
            port: listener.local_addr().unwrap().port(),
            refuse: Arc::default(),
            got: Arc::default(),
            stop: Arc::default(),
            refused: Arc::default(),
        };
        let (refuse, got, stop, refused) = (
            hook.refuse.clone(),
            hook.got.clone(),
            hook.stop.clone(),
            hook.refused.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (refuse, got, stop, refused) =
                            (refuse.clone(), got.clone(), stop.clone(), refused.clone());
                        let _ = s.set_nonblocking(false);
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let tls = tls.clone();
                        std::thread::spawn(move || match tls {
                            None => serve(s, &refuse, &got, &stop, &refused),
                            Some(config) => {
                                let Ok(conn) = rustls::ServerConnection::new(config) else {
                                    return;
                                };
                                let s = rustls::StreamOwned::new(conn, s);
                                serve(s, &refuse, &got, &stop, &refused)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        hook
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serve one keep-alive connection.
fn serve(
    s: impl Read + Write,
    refuse: &AtomicBool,
    got: &Mutex<Vec<serde_json::Value>>,
    stop: &AtomicBool,
    refused: &AtomicU16,
) {
    let mut r = BufReader::new(s);
    while !stop.load(Ordering::SeqCst) {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let status = if refuse.load(Ordering::SeqCst) {
            refused.fetch_add(1, Ordering::SeqCst);
            "503 Service Unavailable"
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            got.lock()
                .unwrap()
                .extend(v["samples"].as_array().unwrap().iter().cloned());
            "200 OK"
        };
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if r.get_mut().write_all(answer.as_bytes()).is_err() || r.get_mut().flush().is_err() {
            return;
        }
    }
}

#[test]
fn a_webhook_gets_exactly_the_matching_samples_and_everything_after_refusing_for_a_while_and_a_kill()
 {
    let hook = Hook::start();
    let base = now_us();
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut agent = Agent::start(&format!(
        "- metrics: {metrics}\n\
         - sink:\n    name: hook\n    type: webhook\n    url: http://127.0.0.1:{}/samples\n    uris: [\"host.*\"]\n    kinds: [datapoint]\n    batch: {{size: 10, age: 50ms}}\n",
        hook.port
    ));
    let (all, matching) = mixed(base);
    agent.feed(&all);
    let as_tuples = |v: &[serde_json::Value]| -> Vec<(String, i64, Val)> {
        v.iter()
            .map(|s| {
                assert_eq!(s["kind"], "datapoint", "{s}");
                (
                    s["uri"].as_str().unwrap().to_owned(),
                    s["ts"].as_i64().unwrap(),
                    Val::D(s["value"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    let got = until_count("webhook", matching.len(), || {
        hook.got.lock().unwrap().clone()
    });
    assert_eq!(as_tuples(&got), matching);

    hook.refuse.store(true, Ordering::SeqCst);
    let batch: Vec<_> = (0..35)
        .map(|i| dp("host.disk", base + 100 + i, i as f64))
        .collect();
    agent.feed(&batch);
    agent.sink_until("hook", "retrying", |s| {
        s["retried"].as_u64() >= Some(2) && s["state"] == "retrying"
    });
    hook.refuse.store(false, Ordering::SeqCst);
    let got = until_count("webhook after 503s", matching.len() + batch.len(), || {
        hook.got.lock().unwrap().clone()
    });
    assert_eq!(
        as_tuples(&got[matching.len()..]),
        batch,
        "nothing lost, nothing doubled"
    );
    assert!(hook.refused.load(Ordering::SeqCst) >= 2);
    let s = agent.sink_until("hook", "caught up", |s| {
        s["lag_samples"] == 0 && s["state"] == "running"
    });
    assert_eq!(
        s["sent"].as_u64(),
        Some((matching.len() + batch.len()) as u64),
        "{s}"
    );
    assert!(
        s["last_error"].as_str().unwrap_or("").contains("503"),
        "{s}"
    );

    // The same counters in /metrics and `komlogd status`; `komlogd check` tries the sink.
    let text = http_get(&metrics.to_string(), "/metrics");
    assert!(
        text.contains("komlogd_sink_sent_samples_total{sink=\"hook\",type=\"webhook\"} 38"),
        "{text}"
    );
    assert!(
        text.contains("komlogd_sink_lag_samples{sink=\"hook\",type=\"webhook\"} 0"),
        "{text}"
    );
    let (code, out, err) = agent.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sink hook (webhook http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("running, 38 sent"), "{out}");
    // `check` opens the store: the agent must be stopped.
    agent.stop();
    let (code, out, err) = agent.cli(&["check"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("sink hook (webhook http://127.0.0.1:"),
        "{out}"
    );
    hook.refuse.store(true, Ordering::SeqCst);
    let (code, _, err) = agent.cli(&["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sink hook cannot write"), "{err}");
    assert!(err.contains("503"), "{err}");

    // A kill -9 mid-stream: nothing missing after the restart. A webhook cannot
    // dedupe: what was sent again arrives again, at most as many as `resent`.
    hook.refuse.store(false, Ordering::SeqCst);
    agent.spawn();
    let before = hook.got.lock().unwrap().len();
    let sent = feed_through_a_kill(&mut agent, "host.net", base);
    let got = until_count("webhook after the kill", sent.len(), || {
        distinct(&as_tuples(&hook.got.lock().unwrap()[before..])).0
    });
    assert_eq!(got, sent, "every sample after the kill");
    let s = agent.sink_until("hook", "caught up after the kill", |s| {
        s["lag_samples"] == 0
    });
    let (_, doubled) = distinct(&as_tuples(&hook.got.lock().unwrap()[before..]));
    assert!(
        doubled as u64 <= s["resent"].as_u64().unwrap_or(0),
        "{doubled} doubled: {s}"
    );
    agent.stop();
}

use crate::certs;

#[test]
fn a_webhook_over_https_trusts_the_ca_its_block_names() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::write_test_certs(dir.path());
    let tls = komlog_hub::tls::HubTls::load(&certs.cert, &certs.key).unwrap();
    let hook = Hook::start_tls(Some(tls.config));
    let block = |ca: &str| {
        format!(
            "- sink:\n    name: hook\n    type: webhook\n    url: https://localhost:{}/samples\n    batch: {{size: 10, age: 20ms}}\n{ca}",
            hook.port
        )
    };
    // Without `ca` the test CA is unknown: the handshake fails and is retried.
    let agent = Agent::start(&block(""));
    let base = now_us();
    agent.feed(&[dp("host.cpu", base, 0.5)]);
    let s = agent.sink_until("hook", "a failed handshake", |s| {
        s["retried"].as_u64() > Some(0)
    });
    let error = s["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("TLS handshake with localhost failed")
            && error.contains("give the certificate of the CA that signed it in the sink's `ca`"),
        "{s}"
    );
    assert!(hook.got.lock().unwrap().is_empty());
    // With the CA named the same sink (its cursor kept) delivers over https.
    let with_ca = block(&format!("    ca: {}\n", certs.ca.display()));
    std::fs::write(agent.config(), format!("- username: me\n{with_ca}")).unwrap();
    let got = until_count("samples over https", 1, || hook.got.lock().unwrap().clone());
    assert_eq!(got[0]["uri"], "host.cpu");
    assert_eq!(got[0]["ts"], base);
    assert_eq!(got[0]["value"], 0.5);
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A TCP relay from a port of its own to `target`, started and stopped at will.
pub(crate) struct Relay {
    pub(crate) port: u16,
    target: String,
    running: Option<Arc<AtomicBool>>,
}

impl Relay {
    pub(crate) fn new(target: &str) -> Relay {
        // A port that is free now; nothing listens on it until `start`.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Relay {
            port,
            target: target.to_owned(),
            running: None,
        }
    }

    pub(crate) fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let on = Arc::new(AtomicBool::new(true));
        self.running = Some(on.clone());
        let target = self.target.clone();
        std::thread::spawn(move || {
            while on.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let on = on.clone();
                    from.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while on.load(Ordering::SeqCst) {
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
    }

    /// Stop accepting and cut every connection.
    pub(crate) fn stop(&mut self) {
        if let Some(on) = self.running.take() {
            on.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

const POSTGRES: &str = "127.0.0.1:5432";

/// Rows of `table` as (uri, ts µs, kind, value, text), ordered by ts.
fn pg_rows(table: &str) -> Vec<Row> {
    let mut c = postgres_client();
    let rows = c
        .query(
            &format!(
                "SELECT uri, (extract(epoch from ts) * 1000000)::bigint, kind, value, text FROM {table} ORDER BY ts, uri"
            ),
            &[],
        )
        .unwrap_or_default();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// A blocking client: a tokio-postgres client on a runtime of its own.
struct Pg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Pg {
    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.rt.block_on(self.client.query(sql, params))
    }

    fn execute(&mut self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap();
    }
}

fn postgres_client() -> Pg {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client
    });
    Pg { rt, client }
}

/// A table of this test process's own (`prefix_<pid>`), dropped when made and
/// when the guard goes.
struct PgTable(String);

impl PgTable {
    fn new(prefix: &str) -> PgTable {
        let name = format!("{prefix}_{}", std::process::id());
        postgres_client().execute(&format!("DROP TABLE IF EXISTS {name}"));
        PgTable(name)
    }
}

impl Drop for PgTable {
    fn drop(&mut self) {
        postgres_client().execute(&format!("DROP TABLE IF EXISTS {}", self.0));
    }
}

fn postgres_up() -> bool {
    TcpStream::connect_timeout(&POSTGRES.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

#[test]
fn postgres_gets_the_matching_samples_once_through_outages_and_a_kill() {
    if !postgres_up() {
        return skip("no PostgreSQL at 127.0.0.1:5432");
    }
    let table = PgTable::new("komlog_sink_test");
    let table = table.0.as_str();
    // Nothing listens at the relay's port yet: the sink starts by retrying.
    let mut relay = Relay::new(POSTGRES);
    let base = now_us();
    let mut agent = Agent::start(&format!(
        "- sink:\n    name: pg\n    type: postgres\n    url: postgres://postgres@127.0.0.1:{}/test\n    table: {table}\n    uris: [\"host.*\", \"app.**\"]\n    batch: {{size: 200, age: 50ms}}\n",
        relay.port
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);
    agent.sink_until("pg", "retrying", |s| s["retried"].as_u64() > Some(0));
    relay.start();
    // host.* and app.**, both kinds: all but host.cpu.user.
    let want: Vec<_> = all
        .iter()
        .filter(|(u, _, _)| u != "host.cpu.user")
        .cloned()
        .collect();
    let rows = until_count("rows", want.len(), || pg_rows(table));
    let as_sample = |r: &Row| {
        let v = match (r.2.as_str(), r.3, &r.4) {
            ("datapoint", Some(v), None) => Val::D(v),
            ("datasource", None, Some(t)) => Val::T(t.clone()),
            other => panic!("bad row {other:?}"),
        };
        (r.0.clone(), r.1, v)
    };
    assert_eq!(rows.iter().map(as_sample).collect::<Vec<_>>(), want);

    // The database goes away mid-stream (every connection cut) and comes back;
    // then a kill -9 mid-stream. Rows are keyed (uri, ts): resends dedupe.
    let mut sent = want.clone();
    sent.extend(feed_through_an_outage_and_a_kill(
        &mut agent,
        Some(&mut relay),
        "host.net",
        base,
    ));
    let rows = until_count("rows after the outage and the kill", sent.len(), || {
        pg_rows(table)
    });
    sent.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(rows.iter().map(as_sample).collect::<Vec<_>>(), sent);
    agent.stop();
}

/// The PostgreSQL sink writes a batch with `COPY`; a batch holding a row the table
/// has already (a sample overwritten in the store, a resend) fails that `COPY` on
/// the primary key and is upserted instead: the new value wins and the batch's
/// other rows go in. The batches after it (upserted straight away) and a later
/// `COPY` go in too.
#[test]
fn postgres_takes_a_batch_with_rows_it_has_by_upserting_it() {
    use komlogd::model::{Sample, Value};
    use komlogd::sinks::Sink;
    use komlogd::sinks::postgres::{PostgresSink, UPSERTS_AFTER_A_CONFLICT};
    if !postgres_up() {
        return skip("no PostgreSQL at 127.0.0.1:5432");
    }
    let table = PgTable::new("komlog_sink_upsert");
    let table = table.0.as_str();
    let sample = |uri: &str, ts: i64, value: Value| Sample {
        uri: uri.into(),
        ts,
        value,
    };
    let mut sink = PostgresSink::new("postgres://postgres@127.0.0.1:5432/test", table);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut send = |batch: Vec<Sample>| rt.block_on(sink.send(&batch));
    // A fresh table: COPY.
    send(vec![
        sample("a.b", 1_000_000, Value::Datapoint(1.0)),
        sample("a.b", 2_000_000, Value::Datapoint(2.0)),
        sample("a.t", 1_000_000, Value::Datasource("one".into())),
    ])
    .unwrap();
    // a.b at 2 s again with another value, and a.t at 1 s again: the batch is
    // upserted, its new rows stored.
    send(vec![
        sample("a.b", 2_000_000, Value::Datapoint(20.0)),
        sample("a.b", 3_000_000, Value::Datapoint(3.0)),
        sample("a.t", 1_000_000, Value::Datasource("uno".into())),
    ])
    .unwrap();
    // The next batches: upserted without trying COPY, then COPY again.
    for i in 0..=UPSERTS_AFTER_A_CONFLICT as i64 {
        send(vec![sample(
            "a.c",
            i * 1_000_000,
            Value::Datapoint(i as f64),
        )])
        .unwrap();
    }
    send(vec![sample("a.b", 4_000_000, Value::Datapoint(4.0))]).unwrap();
    let rows = pg_rows(table);
    let d = |uri: &str, s: i64, v: f64| -> Row {
        (uri.into(), s * 1_000_000, "datapoint".into(), Some(v), None)
    };
    let mut want = vec![
        d("a.b", 1, 1.0),
        d("a.b", 2, 20.0),
        d("a.b", 3, 3.0),
        d("a.b", 4, 4.0),
        (
            "a.t".into(),
            1_000_000,
            "datasource".into(),
            None,
            Some("uno".into()),
        ),
    ];
    want.extend((0..=UPSERTS_AFTER_A_CONFLICT as i64).map(|i| d("a.c", i, i as f64)));
    want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(rows, want);
}

/// Every point of `measurement` in the database `sinktest`: (uri tag, time µs,
/// value or text).
fn influx_points(influx: &Influxd, measurement: &str) -> Vec<S> {
    let v = influx.query(
        "sinktest",
        &format!("SELECT%20*%20FROM%20%22{measurement}%22"),
    );
    let Some(series) = v["results"][0]["series"][0].as_object() else {
        return Vec::new();
    };
    let cols: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let val = match col("value").map(|i| &row[i]) {
                Some(serde_json::Value::Number(n)) => Val::D(n.as_f64().unwrap()),
                _ => Val::T(row[col("text").unwrap()].as_str().unwrap().to_owned()),
            };
            (
                row[col("uri").unwrap()].as_str().unwrap().to_owned(),
                row[0].as_i64().unwrap(),
                val,
            )
        })
        .collect()
}

#[test]
fn influxdb_gets_the_matching_points_through_an_outage_and_a_kill() {
    let Some(influx) = Influxd::start() else {
        return skip(
            "influxd is not installed (apt-get install influxdb; cargo xtask check-tools)",
        );
    };
    influx.create_database("sinktest");
    let mut relay = Relay::new(&format!("127.0.0.1:{}", influx.port));
    relay.start();
    let base = now_us();
    let agent = Agent::start(&format!(
        "- sink:\n    name: influx\n    type: influxdb\n    url: http://127.0.0.1:{}\n    database: sinktest\n    uris: [\"host.*\"]\n    batch: {{size: 50, age: 50ms}}\n",
        relay.port
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);
    // host.*, both kinds: measurement `host`, the uri as a tag.
    let want: Vec<_> = all
        .iter()
        .filter(|(u, _, _)| u.starts_with("host.") && u != "host.cpu.user")
        .cloned()
        .collect();
    let got = until_count("points", want.len(), || influx_points(&influx, "host"));
    let mut sorted = want.clone();
    sorted.sort_by_key(|s| s.1);
    assert_eq!(got, sorted);

    relay.stop();
    let batch: Vec<_> = (0..120)
        .map(|i| dp("host.disk", base + 100 + i, i as f64 / 4.0))
        .collect();
    agent.feed(&batch);
    agent.sink_until("influx", "retrying", |s| s["retried"].as_u64() > Some(0));
    relay.start();
    sorted.extend(batch);
    sorted.sort_by_key(|s| s.1);
    let got = until_count("points after the outage", sorted.len(), || {
        influx_points(&influx, "host")
    });
    assert_eq!(got, sorted);

    // A kill -9 mid-stream: nothing missing, nothing doubled (a point sent
    // again overwrites itself).
    let mut agent = agent;
    sorted.extend(feed_through_a_kill(&mut agent, "host.net", base));
    sorted.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let got = until_count("points after the kill", sorted.len(), || {
        influx_points(&influx, "host")
    });
    assert_eq!(got, sorted, "every point once");
    agent.stop();
}

#[test]
fn a_sink_added_to_the_running_agents_configuration_starts_and_a_removed_one_stops() {
    let base = now_us();
    let agent = Agent::start("");
    agent.feed(&[dp("host.cpu", base, 1.0)]);
    let path = agent.dir().join("added.jsonl");
    std::fs::write(
        agent.config(),
        "- username: me\n- sink:\n    name: added\n    type: file\n    path: added.jsonl\n    batch: {size: 10, age: 20ms}\n",
    )
    .unwrap();
    let start = Instant::now();
    while agent.request("status\n")["sinks"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the sink did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It forwards what is stored from now on.
    let batch: Vec<_> = (1..=5)
        .map(|i| dp("host.cpu", base + i, i as f64))
        .collect();
    agent.feed(&batch);
    assert_eq!(
        until_count("added.jsonl", batch.len(), || jsonl(&path)),
        batch
    );
    std::fs::write(agent.config(), "- username: me\n").unwrap();
    let start = Instant::now();
    while agent.request("status\n")["sinks"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the sink did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A witness sink added now takes what is stored next; once it has written
    // it, a removed sink still running (same batch age) would have too.
    let witness = agent.dir().join("witness.jsonl");
    std::fs::write(
        agent.config(),
        "- username: me\n- sink:\n    name: witness\n    type: file\n    path: witness.jsonl\n    batch: {size: 10, age: 20ms}\n",
    )
    .unwrap();
    let start = Instant::now();
    while agent.request("status\n")["sinks"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the witness sink did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let later = [
        dp("host.cpu", base + 10, 10.0),
        dp("host.cpu", base + 11, 11.0),
    ];
    agent.feed(&later);
    assert_eq!(
        until_count("witness.jsonl", later.len(), || jsonl(&witness)),
        later
    );
    assert_eq!(jsonl(&path), batch, "a removed sink writes nothing");
}

/// Every entry of a Redis stream as (uri, ts, value), through the sink's own client.
fn redis_entries(stream: &str) -> Vec<S> {
    use komlogd::sinks::redis::{Conn, RedisUrl, Reply};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
        let mut c = Conn::open(&url).await.unwrap();
        let Reply::Array(Some(entries)) = c.command(&["XRANGE", stream, "-", "+"]).await.unwrap()
        else {
            return Vec::new();
        };
        let text = |r: &Reply| match r {
            Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        entries
            .iter()
            .map(|e| {
                let Reply::Array(Some(parts)) = e else {
                    panic!("{e:?}")
                };
                let Reply::Array(Some(fields)) = &parts[1] else {
                    panic!("{e:?}")
                };
                let f: Vec<String> = fields.iter().map(text).collect();
                let get = |k: &str| f[f.iter().position(|x| x == k).unwrap() + 1].clone();
                let value = match get("kind").as_str() {
                    "datapoint" => Val::D(get("value").parse().unwrap()),
                    _ => Val::T(get("value")),
                };
                (get("uri"), get("ts").parse().unwrap(), value)
            })
            .collect()
    })
}

fn redis_del(stream: &str) {
    use komlogd::sinks::redis::{Conn, RedisUrl};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
        let mut c = Conn::open(&url).await.unwrap();
        c.command(&["DEL", stream]).await.unwrap();
    });
}

#[test]
fn a_redis_stream_gets_the_matching_samples_through_an_outage_and_a_kill() {
    if TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(2))
        .is_err()
    {
        return skip("no Redis at 127.0.0.1:6379");
    }
    let stream = format!("komlog_sink_test_{}", std::process::id());
    redis_del(&stream);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            redis_del(&self.0);
        }
    }
    let _cleanup = Del(stream.clone());
    let mut relay = Relay::new("127.0.0.1:6379");
    relay.start();
    let base = now_us();
    let agent = Agent::start(&format!(
        "- sink:\n    name: redis\n    type: redis\n    url: redis://127.0.0.1:{}/0\n    stream: {stream}\n    uris: [\"host.*\"]\n    batch: {{size: 50, age: 50ms}}\n",
        relay.port
    ));
    let (all, _) = mixed(base);
    agent.feed(&all);
    let mut want: Vec<_> = all
        .iter()
        .filter(|(u, _, _)| u.starts_with("host.") && u != "host.cpu.user")
        .cloned()
        .collect();
    assert_eq!(
        until_count("entries", want.len(), || redis_entries(&stream)),
        want
    );
    // The outage starts once the sink has the last EXEC's reply: cut in
    // flight, that reply would make it send the batch again, which a stream
    // appends again (at least once, as after a kill below).
    agent.sink_until("redis", "caught up", |s| {
        s["lag_samples"] == 0 && s["sent"].as_u64() == Some(want.len() as u64)
    });
    relay.stop();
    let batch: Vec<_> = (0..120)
        .map(|i| dp("host.disk", base + 100 + i, i as f64 / 4.0))
        .collect();
    agent.feed(&batch);
    agent.sink_until("redis", "retrying", |s| s["retried"].as_u64() > Some(0));
    relay.start();
    want.extend(batch);
    assert_eq!(
        until_count("entries after the outage", want.len(), || redis_entries(
            &stream
        )),
        want,
        "nothing lost, nothing doubled (a batch is one MULTI/EXEC)"
    );

    // A kill -9 mid-stream: nothing missing after the restart. A stream cannot
    // dedupe: what was sent again is appended again, at most as many as `resent`.
    let mut agent = agent;
    let before = want.len();
    let sent = feed_through_a_kill(&mut agent, "host.net", base);
    let got = until_count("entries after the kill", sent.len(), || {
        distinct(&redis_entries(&stream)[before..]).0
    });
    assert_eq!(got, sent, "every sample after the kill");
    let s = agent.sink_until("redis", "caught up after the kill", |s| {
        s["lag_samples"] == 0
    });
    let (_, doubled) = distinct(&redis_entries(&stream)[before..]);
    assert!(
        doubled as u64 <= s["resent"].as_u64().unwrap_or(0),
        "{doubled} doubled: {s}"
    );
    agent.stop();
}
