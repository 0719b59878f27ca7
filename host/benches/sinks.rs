//! Sink throughput, end to end: samples appended to a real store (durable
//! commits of 5,000, each also writing the sample log) until the sink has
//! delivered every one, in batches of 5,000, against the destination's own bulk
//! path measured in the same run on the same data:
//!
//! 1. PostgreSQL (127.0.0.1:5432, database `test`): the sink's upsert against
//!    `COPY … FROM` a CSV file into a table of the same layout.
//! 2. InfluxDB 1.x (an `influxd` this bench starts on free ports): the sink
//!    against the same line protocol POSTed directly, 5,000 lines a request.
//! 3. The sample log's cost: the same appends into a store with a sink
//!    configured (the log written in each commit) against one without.
//!
//! Each destination is measured twice: end to end (the appends run beside the
//! sink, on the same cores) and draining a backlog (the samples appended while
//! the destination was unreachable, then the sink pointed at it: its own cost).
//!
//! Run with `cargo bench -p komlogd --bench sinks`; `KOMLOGD_BENCH_QUICK=1`
//! gives a short run. A destination that is not there is skipped, named.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use komlogd::config::{Destination, FileFormat, SinkConfig};
use komlogd::model::{Sample, Value};
use komlogd::sinks::{SinkBoard, SinkReport, Sinks, UriPattern};
use komlogd::store::Store;

#[path = "../tests/common/influxd.rs"]
mod influxd;
use influxd::Influxd;

const BATCH: usize = 5000;

fn samples(n: usize) -> Vec<Sample> {
    let base = 1_700_000_000_000_000i64;
    (0..n)
        .map(|i| Sample {
            uri: format!("bench.m{}", i % 100),
            ts: base + i as i64,
            value: Value::Datapoint(i as f64 * 0.5),
        })
        .collect()
}

fn sink(name: &str, destination: Destination) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        destination,
        uris: vec![UriPattern::parse("**").expect("pattern")],
        datapoints: true,
        datasources: true,
        batch_size: BATCH,
        batch_age: Duration::from_millis(50),
        max_lag: 10_000_000,
        ca: None,
    }
}

/// The sink `name`'s report.
fn report(board: &SinkBoard, name: &str) -> SinkReport {
    board
        .snapshot()
        .into_iter()
        .find(|r| r.name == name)
        .expect("the sink's report")
}

/// Wait (at most 600 s) until the sink `name` has sent `n` samples; say so if
/// tries failed on the way (past the `retried_before` of an earlier phase).
fn wait_until_sent(board: &SinkBoard, name: &str, n: usize, retried_before: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let report = report(board, name);
        if report.sent >= n as u64 {
            if report.retried > retried_before {
                println!(
                    "  ({name}: {} tries of a batch failed and were retried; last error: {})",
                    report.retried - retried_before,
                    report.last_error.as_deref().unwrap_or("none")
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not deliver within 600 s: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Append `data` in commits of [`BATCH`] to a fresh store running `config` as its
/// one sink; the time until the sink has delivered every sample.
fn through_sink(config: SinkConfig, data: &[Sample]) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("store.redb")).expect("store");
    let board = SinkBoard::default();
    let name = config.name.clone();
    let sinks = Sinks::start(
        store.sample_log().expect("log"),
        &[config],
        None,
        board.clone(),
    );
    let t0 = Instant::now();
    for chunk in data.chunks(BATCH) {
        store.append(chunk).expect("append");
    }
    wait_until_sent(&board, &name, data.len(), 0);
    let took = t0.elapsed();
    sinks.stop();
    took
}

/// Append `data` while `config`'s destination is unreachable (`unreachable`: the
/// same sink pointed at a closed port), then point the sink at its destination
/// (a changed sink keeps its cursor): the time until the sink has delivered the
/// backlog. The sink's own cost, without ingestion running beside it.
fn drain(unreachable: SinkConfig, config: SinkConfig, data: &[Sample]) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("store.redb")).expect("store");
    let board = SinkBoard::default();
    let name = config.name.clone();
    let sinks = Sinks::start(
        store.sample_log().expect("log"),
        &[unreachable],
        None,
        board.clone(),
    );
    for chunk in data.chunks(BATCH) {
        store.append(chunk).expect("append");
    }
    let before = report(&board, &name).retried;
    let t0 = Instant::now();
    sinks.apply(&[config]);
    wait_until_sent(&board, &name, data.len(), before);
    let took = t0.elapsed();
    sinks.stop();
    took
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn print(what: &str, n: usize, sink: Duration, direct: Duration, direct_name: &str) {
    let (s, d) = (per_second(n, sink), per_second(n, direct));
    println!(
        "{what}: sink {:.0} samples/s ({:.2} s for {n}); {direct_name} {:.0} samples/s ({:.2} s); ratio {:.2}×",
        s,
        sink.as_secs_f64(),
        d,
        direct.as_secs_f64(),
        s / d
    );
}

fn postgres(data: &[Sample]) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok((client, conn)) = rt.block_on(tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )) else {
        println!("postgres: skipped (no PostgreSQL at 127.0.0.1:5432 with database test)");
        return;
    };
    rt.spawn(conn);
    let pid = std::process::id();
    let (direct_table, sink_table) = (
        format!("komlog_bench_direct_{pid}"),
        format!("komlog_bench_sink_{pid}"),
    );
    let exec = |sql: &str| rt.block_on(client.batch_execute(sql)).expect(sql);
    exec(&format!(
        "DROP TABLE IF EXISTS {direct_table}; DROP TABLE IF EXISTS {sink_table};\
         CREATE TABLE {direct_table} (uri text NOT NULL, ts timestamptz NOT NULL, kind text NOT NULL, \
         value double precision, text text, PRIMARY KEY (uri, ts))"
    ));
    // The direct path: COPY from a CSV file the server reads.
    let csv_dir = tempfile::Builder::new()
        .prefix("komlog-bench")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let csv = csv_dir.path().join("samples.csv");
    let mut text = String::new();
    for s in data {
        let Value::Datapoint(v) = s.value else {
            continue;
        };
        let ts = chrono::DateTime::from_timestamp_micros(s.ts).expect("time");
        text.push_str(&format!(
            "{},{},datapoint,{v},\n",
            s.uri,
            ts.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ));
    }
    std::fs::write(&csv, text).expect("csv");
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(csv_dir.path(), std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o644));
    let t0 = Instant::now();
    exec(&format!(
        "COPY {direct_table} (uri, ts, kind, value, text) FROM '{}' WITH (FORMAT csv)",
        csv.display()
    ));
    let direct = t0.elapsed();
    let sink_time = through_sink(
        sink(
            "pg",
            Destination::Postgres {
                url: "postgres://postgres@127.0.0.1:5432/test".into(),
                table: sink_table.clone(),
            },
        ),
        data,
    );
    let count: i64 = rt
        .block_on(client.query_one(&format!("SELECT count(*) FROM {sink_table}"), &[]))
        .expect("count")
        .get(0);
    assert_eq!(
        count as usize,
        data.len(),
        "every sample in the sink's table"
    );
    print(
        "postgres, end to end",
        data.len(),
        sink_time,
        direct,
        "COPY FROM file",
    );
    exec(&format!("DROP TABLE IF EXISTS {sink_table}"));
    let pg = |port: u16| {
        sink(
            "pg",
            Destination::Postgres {
                url: format!("postgres://postgres@127.0.0.1:{port}/test"),
                table: sink_table.clone(),
            },
        )
    };
    let drained = drain(pg(closed_port()), pg(5432), data);
    print(
        "postgres, backlog drained",
        data.len(),
        drained,
        direct,
        "COPY FROM file",
    );
    exec(&format!(
        "DROP TABLE IF EXISTS {direct_table}; DROP TABLE IF EXISTS {sink_table}"
    ));
}

/// The database `db`'s count of points of the measurement `bench`.
fn count(influx: &Influxd, db: &str) -> u64 {
    influx.query(db, "SELECT%20count(value)%20FROM%20bench")["results"][0]["series"][0]["values"][0]
        [1]
    .as_u64()
    .unwrap_or(0)
}

fn influxdb(data: &[Sample]) {
    let Some(influx) = Influxd::start() else {
        println!("influxdb: skipped (no influxd: apt-get install influxdb)");
        return;
    };
    for db in ["direct", "sink", "drain"] {
        influx.create_database(db);
    }
    // The direct path: the same line protocol, 5,000 lines a request, one
    // keep-alive connection as the sink uses.
    let bodies: Vec<String> = data
        .chunks(BATCH)
        .map(|chunk| {
            let mut body = String::new();
            for s in chunk {
                komlogd::sinks::influxdb::line(s, None, &mut body);
            }
            body
        })
        .collect();
    let mut conn = TcpStream::connect(("127.0.0.1", influx.port)).expect("connect");
    let t0 = Instant::now();
    for body in &bodies {
        let req = format!(
            "POST /write?db=direct&precision=u HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).expect("write");
        read_response(&mut conn);
    }
    let direct = t0.elapsed();
    let sink_time = through_sink(
        sink(
            "influx",
            Destination::Influxdb {
                url: format!("http://127.0.0.1:{}", influx.port),
                database: "sink".into(),
                measurement: None,
            },
        ),
        data,
    );
    assert_eq!(count(&influx, "direct"), data.len() as u64, "direct points");
    assert_eq!(
        count(&influx, "sink"),
        data.len() as u64,
        "the sink's points"
    );
    print(
        "influxdb, end to end",
        data.len(),
        sink_time,
        direct,
        "direct POST",
    );
    let to = |port: u16| {
        sink(
            "influx",
            Destination::Influxdb {
                url: format!("http://127.0.0.1:{port}"),
                database: "drain".into(),
                measurement: None,
            },
        )
    };
    let drained = drain(to(closed_port()), to(influx.port), data);
    assert_eq!(
        count(&influx, "drain"),
        data.len() as u64,
        "the drained points"
    );
    print(
        "influxdb, backlog drained",
        data.len(),
        drained,
        direct,
        "direct POST",
    );
}

/// Read one HTTP/1.1 response with a content-length (or none) and check it is a 2xx.
fn read_response(conn: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 2"), "{head}");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("body");
}

/// The store's appends with the sample log written (a file sink configured) and without.
fn sample_log_cost(data: &[Sample]) {
    let append = |with_log: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("store.redb")).expect("store");
        let sinks = with_log.then(|| {
            Sinks::start(
                store.sample_log().expect("log"),
                &[sink(
                    "file",
                    Destination::File {
                        path: dir.path().join("out.jsonl"),
                        format: FileFormat::Jsonl,
                        rotate_bytes: None,
                        keep: 1,
                    },
                )],
                None,
                SinkBoard::default(),
            )
        });
        let t0 = Instant::now();
        for chunk in data.chunks(BATCH) {
            store.append(chunk).expect("append");
        }
        let took = t0.elapsed();
        if let Some(s) = sinks {
            s.stop();
        }
        took
    };
    let without = append(false);
    let with = append(true);
    println!(
        "sample log: appends with a sink configured {:.0} samples/s ({:.2} s), without {:.0} samples/s ({:.2} s); ratio {:.2}× ({:.2} µs more a sample)",
        per_second(data.len(), with),
        with.as_secs_f64(),
        per_second(data.len(), without),
        without.as_secs_f64(),
        without.as_secs_f64() / with.as_secs_f64(),
        (with.as_secs_f64() - without.as_secs_f64()) * 1e6 / data.len() as f64
    );
}

fn main() {
    let n = if std::env::var_os("KOMLOGD_BENCH_QUICK").is_some() {
        20_000
    } else {
        200_000
    };
    let data = samples(n);
    println!("{n} datapoints of 100 uris, batches and commits of {BATCH}");
    sample_log_cost(&data);
    postgres(&data);
    influxdb(&data);
}
