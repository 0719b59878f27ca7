//! The agent's metric listeners against real clients: StatsD (`statsd` 4.x
//! from PyPI, and `datadog`'s DogStatsD for tags) and InfluxDB's own Python
//! clients (`influxdb` 5.3 for the 1.x `/write`, `influxdb-client` for the
//! 2.x `/api/v2/write`), each writing to a running agent
//! whose store is then read back; malformed StatsD and line protocol input is
//! counted by kind and the listener keeps serving.
//!
//! The Python tests make a venv in `target/listeners-venv` on first use
//! (`python3 -m venv`, then `pip install statsd datadog influxdb
//! influxdb-client`); they need
//! python3 with venv and the package registry.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use komlogd::agent::status::{self, control_socket_path};
use komlogd::sources::listen::ListenerReport;
use komlogd::store::read::{ReadRequest, Row};
use komlogd_tests::{AgentDir, RunningAgent, repo_root};

const WAIT: Duration = Duration::from_secs(30);

const CONFIG: &str = "- statsd:\n    listen: 127.0.0.1:0\n    flush: 100ms\n- line_protocol:\n    listen: 127.0.0.1:0\n";

/// The stored samples of `uri`, newest first (at most 1000).
fn stored(socket: &Path, uri: &str) -> Vec<Row> {
    status::read(
        socket,
        &ReadRequest {
            uri: Some(uri.into()),
            limit: 1000,
            from: None,
            to: None,
            oldest_first: false,
        },
    )
    .expect("query")
    .samples
}

fn numbers(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| r.datapoint.as_deref().and_then(|d| d.parse().ok()))
        .collect()
}

/// Wait (up to [`WAIT`]) until `check` holds for the samples of `uri`.
fn wait_stored(socket: &Path, uri: &str, check: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = stored(socket, uri);
        if check(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{uri}: not as expected within {WAIT:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The listener of `protocol` in the agent's status (asked up to 10 times:
/// a loaded machine may let one answer time out).
/// The report of the `protocol` listener once `check` holds for it (within 20 s).
fn listener_when(
    socket: &Path,
    protocol: &str,
    check: impl Fn(&ListenerReport) -> bool,
) -> ListenerReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = listener(socket, protocol);
        if check(&report) {
            return report;
        }
        assert!(Instant::now() < deadline, "not within 20 s: {report:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listener(socket: &Path, protocol: &str) -> ListenerReport {
    let mut tries = 0;
    let report = loop {
        tries += 1;
        match status::query(socket) {
            Ok(r) => break r,
            Err(e) if tries < 10 => {
                eprintln!("status: {e}; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("status: {e}"),
        }
    };
    report
        .listeners
        .into_iter()
        .find(|l| l.protocol == protocol)
        .unwrap_or_else(|| panic!("no {protocol} listener in the status"))
}

/// The port the listener of `protocol` is bound to.
fn port(socket: &Path, protocol: &str) -> u16 {
    let listen = listener(socket, protocol).listen.expect("bound");
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// A Python with the client libraries, once per checkout.
fn python_with_clients() -> Option<PathBuf> {
    let venv = repo_root().join("target").join("listeners-venv");
    let python = venv.join("bin").join("python");
    let ok = |cmd: &mut Command| cmd.status().map(|s| s.success()).unwrap_or(false);
    if !ok(Command::new(&python).args(["-c", "import statsd, datadog, influxdb, influxdb_client"]))
    {
        if !ok(Command::new("python3").args(["-m", "venv"]).arg(&venv)) {
            komlogd_tests::skip("python3 with venv is needed for the StatsD and InfluxDB clients");
            return None;
        }
        assert!(
            ok(Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "statsd>=4,<5",
                "datadog",
                "influxdb>=5.3,<5.4",
                "influxdb-client>=1.40,<2",
            ])),
            "pip install statsd datadog influxdb influxdb-client failed"
        );
    }
    Some(python)
}

/// Run `script` with `python`, its arguments after it; it must succeed.
fn run_python(python: &Path, script: &str, args: &[String]) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const STATSD_SCRIPT: &str = r#"
import sys, statsd
from datadog.dogstatsd import DogStatsd
port = int(sys.argv[1])
c = statsd.StatsClient("127.0.0.1", port)
for _ in range(5):
    c.incr("hits")
c.incr("hits", 3)
c.decr("hits")
c.gauge("temp", 20)
c.gauge("temp", 5, delta=True)
with c.pipeline() as p:
    for v in range(1, 101):
        p.timing("db.query", v)
with c.pipeline() as p:
    p.set("users", "a")
    p.set("users", "b")
    p.set("users", "a")
d = DogStatsd(host="127.0.0.1", port=port, disable_telemetry=True)
d.increment("req", tags=["route:/a", "host:web-1"])
d.gauge("queue depth", 7, tags=["queue:mail"])
d.flush()
d.close_socket()
c.incr("done")
"#;

#[test]
fn statsd_clients_write_datapoints() {
    let Some(python) = python_with_clients() else {
        return;
    };
    let dir = AgentDir::new(CONFIG);
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let port = port(&socket, "statsd");
    run_python(&python, STATSD_SCRIPT, &[port.to_string()]);

    wait_stored(&socket, "done", |r| !r.is_empty());
    // Counters: the sum of the datapoints is the total.
    let hits = wait_stored(&socket, "hits", |r| numbers(r).iter().sum::<f64>() >= 7.0);
    assert_eq!(numbers(&hits).iter().sum::<f64>(), 7.0, "{hits:?}");
    // Gauges: the newest is the value, relative changes included.
    let temp = stored(&socket, "temp");
    assert_eq!(numbers(&temp).first(), Some(&25.0), "{temp:?}");
    // Timers: per-flush statistics.
    let count: f64 = numbers(&stored(&socket, "db.query.count")).iter().sum();
    assert_eq!(count, 100.0);
    let min = numbers(&stored(&socket, "db.query.min"))
        .into_iter()
        .fold(f64::MAX, f64::min);
    let max = numbers(&stored(&socket, "db.query.max"))
        .into_iter()
        .fold(f64::MIN, f64::max);
    assert_eq!((min, max), (1.0, 100.0));
    for stat in ["mean", "p50", "p90", "p99"] {
        assert!(
            !stored(&socket, &format!("db.query.{stat}")).is_empty(),
            "{stat}"
        );
    }
    // Sets: distinct values of one packet.
    assert_eq!(numbers(&stored(&socket, "users")), vec![2.0]);
    // DogStatsD tags: levels by the naming rule.
    assert_eq!(
        numbers(&stored(&socket, "req.host_web-1.route__a")),
        vec![1.0]
    );
    assert_eq!(
        numbers(&stored(&socket, "queue_depth.queue_mail")),
        vec![7.0]
    );

    // The listener counts a flush's samples once its upload has returned,
    // which can be just after a query sees them stored.
    let report = listener_when(&socket, "statsd", |r| r.samples >= 13);
    assert!(report.lines >= 115, "{report:?}");
    assert_eq!(
        report.bad_syntax + report.bad_value + report.bad_uri + report.bad_too_long,
        0,
        "{report:?}"
    );
}

const INFLUX_SCRIPT: &str = r#"
import sys
from influxdb import InfluxDBClient
c = InfluxDBClient("127.0.0.1", int(sys.argv[1]), database="telegraf")
version = c.ping()
assert version, version
points = [
    {"measurement": "cpu", "tags": {"host": "web-1"}, "time": 1700000000000,
     "fields": {"usage": 1.5, "n": 3, "up": True, "msg": "hello, world"}},
    {"measurement": "cpu", "tags": {"host": "web-1"}, "time": 1700000001000,
     "fields": {"usage": 2.5}},
]
assert c.write_points(points, time_precision="ms")
assert c.write_points([{"measurement": "mem", "fields": {"free": 10}}])
"#;

#[test]
fn influxdb_client_writes_points() {
    let Some(python) = python_with_clients() else {
        return;
    };
    let dir = AgentDir::new(CONFIG);
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let port = port(&socket, "line_protocol");
    run_python(&python, INFLUX_SCRIPT, &[port.to_string()]);

    let usage = stored(&socket, "cpu.usage.host_web-1");
    let got: Vec<(i64, f64)> = usage
        .iter()
        .map(|r| (r.ts, r.datapoint.as_deref().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![(1_700_000_001_000_000, 2.5), (1_700_000_000_000_000, 1.5)]
    );
    assert_eq!(numbers(&stored(&socket, "cpu.n.host_web-1")), vec![3.0]);
    assert_eq!(numbers(&stored(&socket, "cpu.up.host_web-1")), vec![1.0]);
    let msg = stored(&socket, "cpu.msg.host_web-1");
    assert_eq!(msg[0].datasource.as_deref(), Some("hello, world"));
    assert_eq!(numbers(&stored(&socket, "mem.free")), vec![10.0]);
    let report = listener(&socket, "line_protocol");
    assert_eq!((report.lines, report.samples), (3, 6), "{report:?}");
}

const INFLUX_V2_SCRIPT: &str = r#"
import sys
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url="http://127.0.0.1:" + sys.argv[1], token="t", org="o") as c:
    assert c.ping()
    w = c.write_api(write_options=SYNCHRONOUS)
    p = Point("disk").tag("dev", "sda").field("used", 42.5).time(1700000000, WritePrecision.S)
    w.write(bucket="b", record=p, write_precision=WritePrecision.S)
    w.write(bucket="b", record="disk,dev=sdb used=7i 1700000000000000000")
"#;

#[test]
fn influxdb_v2_client_writes_points() {
    let Some(python) = python_with_clients() else {
        return;
    };
    let dir = AgentDir::new(CONFIG);
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let port = port(&socket, "line_protocol");
    run_python(&python, INFLUX_V2_SCRIPT, &[port.to_string()]);
    for (uri, value) in [("disk.used.dev_sda", 42.5), ("disk.used.dev_sdb", 7.0)] {
        let rows = stored(&socket, uri);
        assert_eq!(rows.len(), 1, "{uri}: {rows:?}");
        assert_eq!(
            (rows[0].ts, numbers(&rows)[0]),
            (1_700_000_000_000_000, value)
        );
    }
}

/// POST `body` to `path` of the listener on `port`: the status and the body.
fn post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let body = body.to_vec();
    // A refused body may be answered before it is all sent: write aside.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

#[test]
fn malformed_input_is_counted_and_the_listeners_keep_serving() {
    let dir = AgentDir::new(CONFIG);
    let _agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());

    // StatsD: garbage, a bad number, a bad uri, a line too long, then good lines.
    let statsd = port(&socket, "statsd");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let long = format!("a:1|c|#{}", "t".repeat(9000));
    for packet in [
        "garbage\n\u{1}\u{2}",
        "a:x|c\nb:nan|g\nc:1|c|@7",
        ":1|c",
        long.as_str(),
        "after.bad:1|c\nafter.bad:2|c",
    ] {
        udp.send_to(packet.as_bytes(), ("127.0.0.1", statsd))
            .unwrap();
    }
    let rows = wait_stored(&socket, "after.bad", |r| {
        numbers(r).iter().sum::<f64>() >= 3.0
    });
    assert_eq!(numbers(&rows).iter().sum::<f64>(), 3.0);
    let r = listener(&socket, "statsd");
    assert_eq!(
        (
            r.lines,
            r.bad_syntax,
            r.bad_value,
            r.bad_uri,
            r.bad_too_long
        ),
        (9, 2, 3, 1, 1),
        "{r:?}"
    );

    // Line protocol: a batch with bad lines stores its good points and says 400.
    let lp = port(&socket, "line_protocol");
    let body = format!(
        "garbage\nm v=abc\n{} v=1\ngood v=2 1000000000\n",
        "m".repeat(600)
    );
    let (code, answer) = post(lp, "/write?db=x", body.as_bytes());
    assert_eq!(code, 400, "{answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).expect("JSON error");
    let error = error["error"].as_str().unwrap();
    assert!(
        error.starts_with("partial write: unable to parse 'garbage': "),
        "{error}"
    );
    let good = stored(&socket, "good.v");
    assert_eq!((good[0].ts, numbers(&good)), (1_000_000, vec![2.0]));
    // Only bad lines: 400 without "partial".
    let (code, answer) = post(lp, "/write", b"nothing here");
    assert_eq!(code, 400);
    assert!(
        answer.contains("\"unable to parse 'nothing here'"),
        "{answer}"
    );
    // A body over 16 MiB is refused whole.
    let (code, answer) = post(lp, "/write", &vec![b'x'; 17 << 20]);
    assert_eq!(code, 413, "{answer}");
    // The v2 path, the ping, and a bad precision.
    let (code, _) = post(
        lp,
        "/api/v2/write?bucket=b&org=o&precision=s",
        b"v2,host=a v=5 10",
    );
    assert_eq!(code, 204);
    assert_eq!(
        stored(&socket, "v2.v.host_a")
            .iter()
            .map(|r| r.ts)
            .collect::<Vec<_>>(),
        vec![10_000_000]
    );
    let (code, _) = post(lp, "/write?precision=weeks", b"m v=1");
    assert_eq!(code, 400);
    let r = listener(&socket, "line_protocol");
    assert_eq!(
        (r.bad_syntax, r.bad_value, r.bad_uri, r.bad_too_long),
        (2, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.samples, 2, "{r:?}");
}

/// The listeners of `socket`'s agent now: (protocol, port) each.
fn listening(socket: &Path) -> Vec<(String, Option<u16>)> {
    let report = status::query(socket).expect("status");
    report
        .listeners
        .into_iter()
        .map(|l| {
            let port = l
                .listen
                .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()));
            (l.protocol, port)
        })
        .collect()
}

/// Wait (up to [`WAIT`]) until the agent's listeners are as `check` wants.
fn wait_listening(socket: &Path, what: &str, check: impl Fn(&[(String, Option<u16>)]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = listening(socket);
        if check(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_moves_adds_and_removes_listeners() {
    let dir = AgentDir::new("- statsd:\n    listen: 127.0.0.1:0\n    flush: 100ms\n");
    let agent = RunningAgent::start(&dir);
    let socket = control_socket_path(dir.path());
    let first = port(&socket, "statsd");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"before:1|c", ("127.0.0.1", first)).unwrap();
    wait_stored(&socket, "before", |r| numbers(r).iter().sum::<f64>() >= 1.0);

    // StatsD moves to another port with a prefix; line protocol is added.
    let moved = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    dir.write_config(&format!(
        "- statsd:\n    listen: 127.0.0.1:{moved}\n    flush: 100ms\n    prefix: moved\n\
         - line_protocol:\n    listen: 127.0.0.1:0\n"
    ));
    wait_listening(&socket, "statsd moved, line protocol added", |l| {
        l.contains(&("statsd".into(), Some(moved)))
            && l.iter()
                .any(|(p, port)| p == "line_protocol" && port.is_some())
    });
    // The old port is let go.
    UdpSocket::bind(("127.0.0.1", first)).expect("the old StatsD port is free");
    udp.send_to(b"after:2|c", ("127.0.0.1", moved)).unwrap();
    wait_stored(&socket, "moved.after", |r| {
        numbers(r).iter().sum::<f64>() >= 2.0
    });
    assert_eq!(
        listener(&socket, "statsd").lines,
        2,
        "the counters go on across the restart"
    );
    let lp = port(&socket, "line_protocol");
    assert_eq!(post(lp, "/write", b"lp v=3 1000000000").0, 204);
    assert_eq!(numbers(&stored(&socket, "lp.v")), vec![3.0]);

    // StatsD's block removed: it stops; line protocol's block is unchanged and
    // keeps its port.
    dir.write_config("- line_protocol:\n    listen: 127.0.0.1:0\n");
    wait_listening(&socket, "statsd removed", |l| {
        l.iter().all(|(p, _)| p != "statsd")
    });
    UdpSocket::bind(("127.0.0.1", moved)).expect("the StatsD port is free");
    assert_eq!(port(&socket, "line_protocol"), lp);
    assert_eq!(post(lp, "/write", b"lp v=4 2000000000").0, 204);
    assert_eq!(numbers(&stored(&socket, "lp.v")), vec![4.0, 3.0]);
    drop(agent);
}
