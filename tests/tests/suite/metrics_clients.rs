//! The application metrics clients against a running agent: the control
//! socket's `samples` request (batches, kept-open connections, its bounds and
//! errors), the Rust crate `komlog-metrics` (counters from many threads add
//! up, every kind of call lands at its uri, a stopped agent never blocks the
//! application) and the Python package in `metrics-py/`, whose pytest suite
//! runs against the same kind of agent.
//!
//! The Python test makes a venv in `target/metrics-py-venv` on first use
//! (`python3 -m venv`, then `pip install pytest ./metrics-py`); it needs
//! python3 with venv.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use komlog_metrics::Metrics;
use komlogd::agent::status::control::MAX_BATCH_SAMPLES;
use komlogd::agent::status::{self, UploadAnswer, UploadRequest, control_socket_path};
use komlogd::store::read::{ReadRequest, Row};
use komlogd_tests::{AgentDir, RunningAgent, repo_root};

const WAIT: Duration = Duration::from_secs(60);

/// Every stored sample of `uri`, newest first, read through the agent's
/// `query` request page by page (at most 100 pages).
fn stored(socket: &Path, uri: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut to = None;
    for _ in 0..100 {
        let answer = status::read(
            socket,
            &ReadRequest {
                uri: Some(uri.into()),
                limit: 1000,
                from: None,
                to,
                oldest_first: false,
            },
        )
        .expect("query");
        let n = answer.samples.len();
        to = answer.samples.last().map(|r| r.ts - 1);
        rows.extend(answer.samples);
        if n < 1000 {
            return rows;
        }
    }
    panic!("{uri}: more than 100 pages");
}

fn numbers(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| {
            r.datapoint
                .as_deref()
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("not a datapoint: {r:?}"))
        })
        .collect()
}

/// A connection to the control socket that sends lines and reads answers.
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let writer = stream.try_clone().unwrap();
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Send `line` (a newline is added) and read the answer line.
    fn ask(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        let mut answer = String::new();
        self.reader.read_line(&mut answer).expect("answer");
        assert!(answer.ends_with('\n'), "no whole answer: {answer:?}");
        answer
    }

    fn samples(&mut self, batch: &serde_json::Value) -> UploadAnswer {
        let answer = self.ask(&format!("samples {batch}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// True when the agent has closed the connection (end of stream).
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.reader.read_line(&mut rest), Ok(0))
    }

    /// True when the agent has closed the connection, cleanly or by a reset.
    fn closed_or_reset(&mut self) -> bool {
        let mut rest = String::new();
        match self.reader.read_line(&mut rest) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn samples_request_takes_batches_on_one_connection() {
    let dir = AgentDir::new("");
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());

    let mut client = Client::connect(&socket);
    // One batch: two good samples, one with neither value, one bad uri.
    let answer = client.samples(&serde_json::json!([
        {"uri": "batch.a", "ts": 1_000_000, "datapoint": 1.5},
        {"uri": "batch.b", "ts": 1_000_000, "datasource": "hello"},
        {"uri": "batch.c", "ts": 1_000_000},
        {"uri": "bad uri", "ts": 1_000_000, "datapoint": 1.0},
    ]));
    assert_eq!((answer.accepted, answer.held, answer.error), (2, 0, None));
    let refused: Vec<(&str, &str)> = answer
        .rejected
        .iter()
        .map(|r| (r.uri.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(
        refused[0],
        (
            "batch.c",
            "an upload needs exactly one of `datapoint` and `datasource`"
        )
    );
    assert_eq!(refused[1].0, "bad uri");

    // The same connection takes a second batch; a repeat is held.
    let answer = client.samples(&serde_json::json!([
        {"uri": "batch.a", "ts": 1_000_000, "datapoint": 1.5},
        {"uri": "batch.a", "ts": 2_000_000, "datapoint": 2.5},
    ]));
    assert_eq!((answer.accepted, answer.held), (2, 1), "{answer:?}");

    // Too many samples: refused whole, and the connection stays usable.
    let many: Vec<serde_json::Value> = (0..=MAX_BATCH_SAMPLES as i64)
        .map(|i| serde_json::json!({"uri": "batch.many", "ts": i + 1, "datapoint": 1.0}))
        .collect();
    let answer = client.samples(&serde_json::Value::Array(many));
    assert_eq!(answer.accepted, 0);
    let error = answer.error.expect("an error");
    assert!(
        error.contains("at most 10000 samples, this one 10001"),
        "{error}"
    );
    let answer = client.samples(&serde_json::json!("not an array"));
    let error = answer.error.expect("an error");
    assert!(error.starts_with("malformed samples request"), "{error}");

    // A status answer ends the connection, as it always did.
    let report: serde_json::Value = serde_json::from_str(&client.ask("status")).unwrap();
    assert!(
        report.is_object() && report.get("error").is_none(),
        "{report}"
    );
    assert!(client.closed(), "the connection closes after `status`");

    // One-shot clients work as before: upload, query, an unknown request.
    let answer = status::upload(
        &socket,
        &UploadRequest {
            uri: "batch.a".into(),
            ts: 3_000_000,
            datapoint: Some(3.5),
            datasource: None,
        },
    )
    .expect("upload");
    assert_eq!(answer.accepted, 1);
    assert_eq!(numbers(&stored(&socket, "batch.a")), [3.5, 2.5, 1.5]);
    let rows = stored(&socket, "batch.b");
    assert_eq!(rows[0].datasource.as_deref(), Some("hello"));
    let mut client = Client::connect(&socket);
    let answer = client.ask("hello");
    assert!(
        answer.contains("known: status, upload, samples, query"),
        "{answer}"
    );
    assert!(client.closed());

    // A request line longer than the bound: a clear error, then the end.
    let mut client = Client::connect(&socket);
    let writer = client.writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        let chunk = vec![b' '; 1 << 20];
        let _ = writer.write_all(b"samples [");
        for _ in 0..20 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut answer = String::new();
    client.reader.read_line(&mut answer).expect("answer");
    assert!(
        answer.contains("samples request longer than 16") && answer.contains("smaller batches"),
        "{answer}"
    );
    // The agent closes with the rest of the request unread, so the end may
    // come as a reset rather than an end of stream.
    assert!(client.closed_or_reset());
    sender.join().unwrap();
}

#[test]
fn increments_from_eight_threads_add_up() {
    let dir = AgentDir::new("");
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125_000;
    let metrics = Metrics::builder(&socket)
        .queue_capacity(THREADS * PER_THREAD)
        .flush_interval(Duration::from_millis(100))
        .build()
        .expect("metrics");
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let metrics = &metrics;
            s.spawn(move || {
                let tag = t.to_string();
                for i in 0..PER_THREAD {
                    metrics.increment("app.hits", &[]);
                    // Tagged counters aggregate apart from the untagged one.
                    if i % 1000 == 0 {
                        metrics.increment("app.hits", &[("thread", &tag)]);
                    }
                }
            });
        }
    });
    let calls = start.elapsed();
    metrics.flush(WAIT).expect("flush");
    eprintln!(
        "{} increments from {THREADS} threads: {calls:?} of calls, flushed after {:?}",
        THREADS * PER_THREAD,
        start.elapsed()
    );
    assert_eq!(metrics.dropped(), 0);
    assert_eq!((metrics.send_failures(), metrics.rejected()), (0, 0));
    let rows = stored(&socket, "app.hits");
    // One datapoint per flush, whose value is the sum since the last one.
    assert!(!rows.is_empty() && rows.len() < 1000, "{} rows", rows.len());
    let total: f64 = numbers(&rows).iter().sum();
    assert_eq!(
        total,
        (THREADS * PER_THREAD) as f64 - metrics.dropped() as f64
    );
    for t in 0..THREADS {
        let rows = stored(&socket, &format!("app.hits.thread_{t}"));
        assert_eq!(numbers(&rows).iter().sum::<f64>(), 125.0, "thread {t}");
    }
}

#[test]
fn every_call_lands_at_its_uri() {
    let dir = AgentDir::new("");
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let metrics = Metrics::new(&socket).expect("metrics");
    let before = komlogd_now();
    metrics.gauge("queue depth", 42.0, &[("queue", "mail"), ("host", "a.b")]);
    metrics.timing("db.query", Duration::from_micros(1500), &[]);
    metrics.timing("db.query", 12.5, &[]);
    metrics.event("deploys", "v1.2.3 rolled out", &[("env", "prod")]);
    metrics.custom("db", "pool size", 7.0, &[]);
    metrics.custom("db", "state", "draining", &[]);
    metrics.decrement("jobs", &[]);
    metrics.decrement("jobs", &[]);
    {
        let _timer = metrics.timed("block", &[]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metrics.time("closure", &[], || 6 * 7), 42);
    metrics.flush(WAIT).expect("flush");
    assert_eq!(metrics.rejected(), 0);

    let gauge = stored(&socket, "queue_depth.host_a_b.queue_mail");
    assert_eq!(numbers(&gauge), [42.0]);
    assert!(gauge[0].ts >= before && gauge[0].ts <= komlogd_now());
    // Two timings: the later one is the newer; both in ms.
    assert_eq!(numbers(&stored(&socket, "db.query")), [12.5, 1.5]);
    let event = stored(&socket, "deploys.env_prod");
    assert_eq!(event[0].datasource.as_deref(), Some("v1.2.3 rolled out"));
    assert_eq!(numbers(&stored(&socket, "db.pool_size")), [7.0]);
    let state = stored(&socket, "db.state");
    assert_eq!(state[0].datasource.as_deref(), Some("draining"));
    assert_eq!(numbers(&stored(&socket, "jobs")), [-2.0]);
    let block = numbers(&stored(&socket, "block"));
    assert!(block.len() == 1 && block[0] >= 20.0, "{block:?}");
    assert_eq!(stored(&socket, "closure").len(), 1);

    // A text at a uri holding numbers is refused by the agent, and counted.
    metrics.event("jobs", "text", &[]);
    metrics.flush(WAIT).expect("flush");
    assert_eq!(metrics.rejected(), 1);
}

fn komlogd_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    d.as_micros() as i64
}

#[test]
fn a_stopped_agent_never_blocks_the_application() {
    let dir = AgentDir::new("");
    let socket = control_socket_path(dir.path());
    let agent = RunningAgent::start(&dir);
    // Batches go when 100 samples wait, counters only at a flush.
    let metrics = Metrics::builder(&socket)
        .queue_capacity(10_000)
        .batch_size(100)
        .flush_interval(Duration::from_secs(600))
        .build()
        .expect("metrics");
    metrics.gauge("up", 1.0, &[]);
    metrics.flush(WAIT).expect("flush while the agent runs");

    // The agent stops (its socket goes) under the kept-open connection.
    agent.stop();
    assert!(!socket.exists());
    let start = Instant::now();
    for i in 0..200_000 {
        metrics.gauge("down", f64::from(i), &[]);
        metrics.increment("down.count", &[]);
    }
    let calls = start.elapsed();
    eprintln!("400,000 calls with no agent: {calls:?}");
    assert!(calls < Duration::from_secs(10), "{calls:?}");
    // Whatever still waits (the queue may have been full), then a counter.
    let _ = metrics.flush(Duration::from_secs(10));
    metrics.increment("down.count", &[]);
    let start = Instant::now();
    let err = metrics
        .flush(Duration::from_secs(10))
        .expect_err("no agent to flush to");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string().contains("no komlogd agent answers"),
        "{err}"
    );
    assert!(metrics.send_failures() >= 1);
    // The gauges' batches failed whole and were dropped, counted.
    assert!(metrics.lost() >= 100, "lost {}", metrics.lost());
    eprintln!(
        "with no agent: {} send failures, {} samples lost, {} measurements dropped at the queue",
        metrics.send_failures(),
        metrics.lost(),
        metrics.dropped()
    );

    // The agent comes back: the next flush reaches it on a new connection.
    let _agent = RunningAgent::start(&dir);
    metrics.gauge("up", 2.0, &[]);
    metrics.flush(WAIT).expect("flush after the restart");
    assert_eq!(numbers(&stored(&socket, "up")), [2.0, 1.0]);

    // Dropping a client whose agent is gone returns within its bound.
    let orphan = Metrics::builder(dir.path().join("nobody.sock"))
        .drop_timeout(Duration::from_millis(500))
        .build()
        .expect("metrics");
    orphan.gauge("x", 1.0, &[]);
    let start = Instant::now();
    drop(orphan);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn naming_cases_are_shared_with_the_python_package() {
    let path = repo_root().join("metrics-py/tests/naming_cases.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("naming cases")).unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let tags: Vec<(&str, &str)> = case["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t[0].as_str().unwrap(), t[1].as_str().unwrap()))
            .collect();
        assert_eq!(
            komlog_metrics::uri(name, &tags),
            case["uri"].as_str().unwrap(),
            "{case}"
        );
    }
}

/// A Python with pytest and `metrics-py` installed, once per checkout (the
/// package again each run, so the tests see its current source).
fn python_with_package() -> Option<PathBuf> {
    let venv = repo_root().join("target").join("metrics-py-venv");
    let python = venv.join("bin").join("python");
    let ok = |cmd: &mut Command| cmd.status().map(|s| s.success()).unwrap_or(false);
    if !ok(Command::new(&python).args(["-c", "import pytest"])) {
        if !ok(Command::new("python3").args(["-m", "venv"]).arg(&venv)) {
            komlogd_tests::skip("python3 with venv is needed for the Python metrics package");
            return None;
        }
        assert!(
            ok(Command::new(&python).args(["-m", "pip", "install", "--quiet", "pytest"])),
            "pip install pytest failed"
        );
    }
    assert!(
        ok(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall"
            ])
            .arg(repo_root().join("metrics-py"))),
        "pip install ./metrics-py failed"
    );
    Some(python)
}

#[test]
fn python_package_against_a_running_agent() {
    let Some(python) = python_with_package() else {
        return;
    };
    let dir = AgentDir::new("");
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("pytest.log");
    let stdout = std::fs::File::create(&log).unwrap();
    let stderr = stdout.try_clone().unwrap();
    let mut child = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(repo_root().join("metrics-py"))
        .env("KOMLOGD_TEST_AGENT_SOCKET", &socket)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("run pytest");
    let status = komlogd_tests::child::wait_or_kill(&mut child, Duration::from_secs(300), "pytest");
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{report}");
    assert!(status.success(), "pytest failed:\n{report}");
    assert!(report.contains(" passed"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
}
