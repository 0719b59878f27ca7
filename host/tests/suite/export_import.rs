//! `komlogd query --format` and `komlogd import` with the real binary:
//!
//! * every format round-trips: samples of several uris (datapoints at the
//!   extremes of the time range, negative, fractional and tiny numbers;
//!   datasources with commas, quotes, line breaks, unicode, empty text, a
//!   number as text and a text of the largest size) imported into store A,
//!   exported, imported into a fresh store B and exported again give the same
//!   bytes, for CSV, JSON Lines, Parquet and Arrow;
//! * what an export holds: every sample oldest first (`-n` the newest N),
//!   within `--from`/`--to`; the loose CSV form; `-o` leaves no file when the
//!   export fails;
//! * bad input (a bad time, a bad uri, a NaN, an oversized text, a truncated
//!   Parquet or Arrow file) is named by file and line or row, exits with
//!   status 2, and imports nothing;
//! * with an agent running, the import goes through its control socket and
//!   the export reads through it, page after page, the same bytes as from the
//!   stopped store; `--no-fire` is refused there;
//! * an import fires the subscribed impulses, and `--no-fire` stores without.
//!
//! Each test has its own komlogd.yaml in a temporary directory (also `HOME`);
//! every child is killed if it runs for more than a minute.

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value as Json, json};

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const TIMEOUT: Duration = Duration::from_secs(60);
/// The valid time range (a TimeUUID's).
const MIN_TS: i64 = -12_219_292_800_000_000;
const MAX_TS: i64 = 103_072_857_660_684_697;
/// The largest sample text, in bytes.
const LIMIT: usize = 131_072;

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("UTF-8 stdout")
    }
}

/// A temporary agent directory (also `HOME`) with its komlogd.yaml.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(yaml: &str) -> Dir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("komlogd.yaml"), yaml).expect("write komlogd.yaml");
        Dir { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KOMLOGD);
        cmd.arg("-c")
            .arg(self.path("komlogd.yaml"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KOMLOGD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `komlogd -c <its komlogd.yaml> ARGS`.
    fn run(&self, args: &[&str]) -> Run {
        let what = format!("komlogd {}", args.join(" "));
        let child = self.command(args).spawn().expect("run komlogd");
        let mut child = child;
        let out = reader(child.stdout.take().expect("stdout"));
        let err = reader(child.stderr.take().expect("stderr"));
        let status = common::child::wait_or_kill(&mut child, TIMEOUT, &what);
        Run {
            code: status.code().unwrap_or(-1),
            stdout: out.join().expect("stdout"),
            stderr: String::from_utf8(err.join().expect("stderr")).expect("UTF-8 stderr"),
        }
    }

    /// Run and expect status 0.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }

    /// `query URI --json -n 100000`, parsed.
    fn rows(&self, uri: &str) -> Vec<Json> {
        let run = self.ok(&["query", uri, "--json", "-n", "100000"]);
        serde_json::from_slice::<Vec<Json>>(&run.stdout).expect("a JSON array")
    }

    /// The stored uris (`query --json`).
    fn uris(&self) -> Vec<String> {
        let run = self.ok(&["query", "--json"]);
        serde_json::from_slice::<Vec<Json>>(&run.stdout)
            .expect("a JSON array")
            .iter()
            .map(|u| u["uri"].as_str().expect("uri").to_owned())
            .collect()
    }

    /// Write `bytes` to a file in the directory; returns its path as text.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write");
        path.display().to_string()
    }
}

fn reader(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

const PLAIN: &str = "- username: me\n";

/// The samples of the round trip, as JSON Lines rows `(uri, ts, value)`;
/// `me:host.me` is stored as `host.me`.
fn rich_samples() -> Vec<(&'static str, i64, Json)> {
    let big = "é".repeat(LIMIT / 2); // exactly the limit in UTF-8 bytes
    vec![
        ("host.cpu", 1_700_000_000_000_000, json!(12.5)),
        ("host.cpu", MIN_TS, json!(-0.25)),
        ("host.cpu", MAX_TS, json!(1e-300)),
        ("host.cpu", -1, json!(0.1 + 0.2)),
        ("host.cpu", 0, json!(-123_456_789.012_345_67)),
        ("host.cpu", 5, json!(f64::MAX)),
        ("host.cpu", 6, json!(-5.0)),
        (
            "host.log",
            1_700_000_000_000_001,
            json!("a, b, \"quoted\"\nsecond line\r\nthird\tline "),
        ),
        ("host.log", 2, json!("ñandú 日本語 ✓ \u{1f600}")),
        ("host.log", 3, json!("")),
        ("host.log", 4, json!("42")),
        ("host.log", 7, json!(" ,\n\"")),
        ("host.log", MAX_TS, json!(big)),
        ("me:host.me", 9, json!(1)),
    ]
}

fn jsonl(rows: &[(&str, i64, Json)]) -> String {
    rows.iter()
        .map(|(uri, ts, value)| {
            let kind = if value.is_string() {
                "datasource"
            } else {
                "datapoint"
            };
            format!(
                "{}\n",
                json!({"uri": uri, "ts": ts, "kind": kind, "value": value})
            )
        })
        .collect()
}

/// The name `query -o` gives the format.
fn name(format: &str) -> &'static str {
    match format {
        "csv" => "CSV",
        "jsonl" => "JSON Lines",
        "parquet" => "Parquet",
        _ => "Arrow",
    }
}

#[test]
fn every_format_round_trips_byte_for_byte() {
    let a = Dir::new(PLAIN);
    let input = a.file("in.jsonl", jsonl(&rich_samples()).as_bytes());
    let run = a.ok(&["import", &input]);
    assert!(
        run.out().starts_with(
            "imported 14 samples from 1 file: 14 stored, 0 already held, 0 refused; 0 impulse fires"
        ),
        "{run:?}"
    );
    assert_eq!(a.uris(), ["host.cpu", "host.log", "host.me"]);

    // The JSON Lines export holds every sample, oldest first, uri after uri,
    // with its exact value.
    let exported = a.ok(&["query", "--format", "jsonl"]).out();
    let got: Vec<Json> = exported
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut expected: Vec<(&str, i64, Json)> = rich_samples()
        .into_iter()
        .map(|(u, t, v)| (if u == "me:host.me" { "host.me" } else { u }, t, v))
        .collect();
    expected.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
    assert_eq!(got.len(), expected.len());
    for (row, (uri, ts, value)) in got.iter().zip(&expected) {
        assert_eq!(row["uri"], json!(uri));
        assert_eq!(row["ts"], json!(ts));
        assert_eq!(
            row["kind"],
            json!(if value.is_string() {
                "datasource"
            } else {
                "datapoint"
            })
        );
        match value.as_f64() {
            Some(v) => assert_eq!(
                row["value"].to_string().parse::<f64>().map(f64::to_bits),
                Ok(v.to_bits()),
                "{row}"
            ),
            None => assert_eq!(&row["value"], value),
        }
    }
    assert!(exported.starts_with(
        "{\"uri\":\"host.cpu\",\"ts\":-12219292800000000,\"kind\":\"datapoint\",\"value\":-0.25}\n"
    ));
    assert!(exported.contains("\"value\":1e-300}\n"), "{exported}");
    assert!(exported.contains("\"value\":0.30000000000000004}\n"));

    for format in ["csv", "jsonl", "parquet", "arrow"] {
        let first = a.path(&format!("a.{format}"));
        let first_text = first.display().to_string();
        let run = a.ok(&["query", "-o", &first_text]);
        assert_eq!(
            run.out(),
            format!("{first_text}: 14 samples of 3 uris ({})\n", name(format)),
            "{format}: {run:?}"
        );
        let b = Dir::new(PLAIN);
        let run = b.ok(&["import", &first_text]);
        assert!(
            run.out()
                .starts_with("imported 14 samples from 1 file: 14 stored"),
            "{format}: {run:?}"
        );
        let second = b.path(&format!("b.{format}"));
        b.ok(&[
            "query",
            "host.cpu",
            "host.log",
            "host.me",
            "--format",
            format,
            "-o",
            &second.display().to_string(),
        ]);
        let (x, y) = (
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
        );
        assert!(x == y, "{format}: the second export differs from the first");
        // Importing the same file again stores nothing new.
        let run = b.ok(&["import", &first_text, "--format", format]);
        assert!(
            run.out()
                .contains(": 0 stored, 14 already held, 0 refused; 0 impulse fires"),
            "{format}: {run:?}"
        );
    }
    // The CSV export is RFC 4180 with the documented header.
    let csv = std::fs::read_to_string(a.path("a.csv")).unwrap();
    assert!(csv.starts_with("uri,ts,kind,value\nhost.cpu,-12219292800000000,datapoint,-0.25\n"));
    assert!(csv.contains(
        "host.log,1700000000000001,datasource,\"a, b, \"\"quoted\"\"\nsecond line\r\nthird\tline \"\n"
    ));
    assert!(csv.contains("host.log,3,datasource,\nhost.log,4,datasource,42\n"));
    assert!(csv.ends_with("host.me,9,datapoint,1.0\n"));
    assert!(
        std::fs::read(a.path("a.parquet"))
            .unwrap()
            .starts_with(b"PAR1")
    );
    assert!(
        std::fs::read(a.path("a.arrow"))
            .unwrap()
            .starts_with(b"ARROW1")
    );
}

#[test]
fn an_export_holds_the_range_or_the_newest_n_oldest_first() {
    let d = Dir::new(PLAIN);
    let rows: Vec<(&str, i64, Json)> = (1..=20).map(|i| ("x", i, json!(i))).collect();
    d.ok(&["import", &d.file("in.jsonl", jsonl(&rows).as_bytes())]);
    let ts = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["query", "x", "--format", "csv"];
        all.extend_from_slice(args);
        d.ok(&all)
            .out()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(ts(&[]), (1..=20).collect::<Vec<_>>());
    assert_eq!(ts(&["--from", "5", "--to", "8"]), [5, 6, 7, 8]);
    assert_eq!(ts(&["-n", "3"]), [18, 19, 20]);
    assert_eq!(ts(&["-n", "2", "--to", "10"]), [9, 10]);
    assert_eq!(ts(&["--from", "21"]), Vec::<i64>::new());
    // Without --format the table's default stays the newest 10.
    assert_eq!(d.rows("x").len(), 20);
    let table = d.ok(&["query", "x", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Vec<Json>>(&table.stdout)
            .unwrap()
            .len(),
        10
    );

    // A failed export leaves no file, not even a partial one.
    let out = d.path("out.parquet").display().to_string();
    let run = d.run(&["query", "x", "nothing.here", "-o", &out]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "komlogd: no samples stored at nothing.here\n");
    let run = d.run(&["query", "x", "-o", "/nonexistent/dir/out.csv"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot create a file in /nonexistent/dir"),
        "{run:?}"
    );
    let left: Vec<_> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let run = d.run(&["query", "x", "-o", &d.path("out.txt").display().to_string()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot tell the format"), "{run:?}");
    let run = d.run(&["query", "x", "--format", "csv", "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn loose_csv_takes_numbers_as_datapoints_and_the_rest_as_text() {
    let d = Dir::new(PLAIN);
    let csv = "room.temp,2024-05-01T12:00:00Z,21.5\n\
               room.temp,1714564860000000,-3\n\
               room.note,2024-05-01T12:00:00.000001+02:00,\"door open, \"\"again\"\"\"\n\
               room.note,2024-05-01T12:02:00Z,\n";
    let run = d.ok(&["import", &d.file("loose.csv", csv.as_bytes())]);
    assert!(
        run.out()
            .starts_with("imported 4 samples from 1 file: 4 stored"),
        "{run:?}"
    );
    let temp = d.rows("room.temp");
    assert_eq!(
        temp.iter()
            .map(|r| (
                r["ts"].as_i64().unwrap(),
                r["kind"].clone(),
                r["value"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (1_714_564_800_000_000, json!("datapoint"), json!(21.5)),
            (1_714_564_860_000_000, json!("datapoint"), json!(-3.0)),
        ]
    );
    let note = d.rows("room.note");
    assert_eq!(note[0]["ts"], json!(1_714_557_600_000_001i64));
    assert_eq!(note[0]["value"], json!("door open, \"again\""));
    assert_eq!(note[1]["value"], json!(""));
    // With its header, the same.
    let d = Dir::new(PLAIN);
    let run = d.ok(&[
        "import",
        &d.file("h.csv", format!("uri,time,value\n{csv}").as_bytes()),
    ]);
    assert!(run.out().starts_with("imported 4 samples"), "{run:?}");
}

#[test]
fn bad_rows_are_named_and_nothing_is_imported() {
    let d = Dir::new(PLAIN);
    d.ok(&[
        "import",
        &d.file("first.jsonl", jsonl(&[("kept", 1, json!(1))]).as_bytes()),
    ]);
    let nothing_more = |d: &Dir| {
        assert_eq!(d.uris(), ["kept"]);
    };

    let big = "x".repeat(LIMIT + 1);
    let csv = format!(
        "uri,time,value\n\
         good.one,2024-05-01T12:00:00Z,1\n\
         bad.time,yesterday,2\n\
         bad..uri,5,3\n\
         bad.nan,6,NaN\n\
         bad.big,7,{big}\n\
         good.two,8,\"two\nlines\"\n\
         bad.range,253402300800000000,4\n"
    );
    let file = d.file("bad.csv", csv.as_bytes());
    let run = d.run(&["import", &file]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, b"");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 6, "{}", run.stderr);
    assert!(lines[0].starts_with(&format!("komlogd: {file}:3: bad time \"yesterday\"")));
    assert!(lines[1].starts_with(&format!("komlogd: {file}:4: bad uri \"bad..uri\"")));
    assert_eq!(
        lines[2],
        format!(
            "komlogd: {file}:5: datapoint value NaN is not finite (NaN and infinities are not allowed)"
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "komlogd: {file}:6: datasource text is 131073 bytes, over the limit of 131072 bytes"
        )
    );
    // Line 7 starts a two-line row; the next row is on line 9.
    assert!(
        lines[4].starts_with(&format!(
            "komlogd: {file}:9: timestamp 253402300800000000 is outside"
        )),
        "{}",
        lines[4]
    );
    assert_eq!(lines[5], "komlogd: 5 bad rows: nothing was imported");
    nothing_more(&d);

    // JSON Lines and the full CSV form name their lines too.
    let bad = "{\"uri\":\"a\",\"ts\":1,\"kind\":\"datapoint\",\"value\":1}\n\n\
               {\"uri\":\"a\",\"ts\":2,\"kind\":\"datapoint\",\"value\":\"abc\"}\n\
               not json\n\
               {\"uri\":\"b\",\"ts\":3,\"kind\":\"datasource\",\"value\":3}\n";
    let file = d.file("bad.jsonl", bad.as_bytes());
    let run = d.run(&["import", &file]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{file}:3: datapoint value \"abc\" is not a number"
        )),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("{file}:4: not an object with uri, ts and value")),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "{file}:5: a datasource's value must be a string, not \"3\""
        )),
        "{run:?}"
    );
    let full = "uri,ts,kind,value\na,1,datapoint,1.0\na,2,datasource,x\nb,x,datapoint,1\nc,4,number,1\nd,5,datapoint\n";
    let file = d.file("full.csv", full.as_bytes());
    let run = d.run(&["import", &file]);
    assert_eq!(run.code, 2, "{run:?}");
    for expected in [
        format!(
            "{file}:3: uri a is a datapoint in this import (its first row: {file}:2); a datasource cannot be written to it"
        ),
        format!("{file}:4: bad time \"x\""),
        format!("{file}:5: kind \"number\" is neither datapoint nor datasource"),
        format!("{file}:6: 3 fields where 4 (uri,ts,kind,value) are expected"),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}\n{}", run.stderr);
    }
    nothing_more(&d);

    // A uri the store holds as the other kind: nothing is stored either.
    let file = d.file(
        "kind.jsonl",
        jsonl(&[("fine", 1, json!(1)), ("kept", 2, json!("text"))]).as_bytes(),
    );
    let run = d.run(&["import", &file]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!("{file}:2: uri kept is a datapoint in the store; this file's datasource rows cannot be written to it")),
        "{run:?}"
    );
    nothing_more(&d);

    // Truncated Parquet and Arrow files, named.
    let source = Dir::new(PLAIN);
    let rows: Vec<(&str, i64, Json)> = (0..100).map(|i| ("s", i, json!(i))).collect();
    source.ok(&["import", &source.file("in.jsonl", jsonl(&rows).as_bytes())]);
    for format in ["parquet", "arrow"] {
        let whole = source.path(&format!("whole.{format}"));
        source.ok(&["query", "-o", &whole.display().to_string()]);
        let bytes = std::fs::read(&whole).unwrap();
        let file = d.file(&format!("cut.{format}"), &bytes[..bytes.len() * 2 / 3]);
        let run = d.run(&["import", &file]);
        assert_eq!(run.code, 2, "{run:?}");
        let name = if format == "parquet" {
            "Parquet"
        } else {
            "Arrow IPC"
        };
        assert!(
            run.stderr
                .starts_with(&format!("komlogd: {file}: not a readable {name} file: ")),
            "{run:?}"
        );
        assert!(
            run.stderr
                .ends_with("komlogd: 1 unreadable file: nothing was imported\n"),
            "{run:?}"
        );
        // The whole file with the cut one: still nothing.
        let run = d.run(&["import", &whole.display().to_string(), &file]);
        assert_eq!(run.code, 2, "{run:?}");
        nothing_more(&d);
    }
    // A file that is not there, and one whose format is unknown.
    let run = d.run(&["import", &d.path("missing.csv").display().to_string()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.csv: cannot open: "), "{run:?}");
    let run = d.run(&["import", "data.txt"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("data.txt: cannot tell the format"),
        "{run:?}"
    );
    nothing_more(&d);
}

#[test]
fn a_running_agent_takes_the_import_and_answers_the_export() {
    let d = Dir::new(PLAIN);
    let mut agent = d.command(&[]).spawn().expect("start the agent");
    common::child::wait_for_path(&mut agent, &d.path("komlogd.sock"), TIMEOUT);
    // More than one page of the agent's reads (1000 samples).
    let rows: Vec<(&str, i64, Json)> = (0..2500)
        .map(|i| ("many", i * 1000, json!(i as f64 / 8.0)))
        .chain([("text", 5, json!("one\ntwo, \"three\""))])
        .collect();
    let input = d.file("in.jsonl", jsonl(&rows).as_bytes());
    let run = d.ok(&["import", &input, "--batch", "700"]);
    assert_eq!(
        run.out().split(" (read").next().unwrap(),
        "imported 2501 samples from 1 file: 2501 stored, 0 already held, 0 refused by the running agent \
         (its impulses fire there; `komlogd status` shows them)"
    );
    let run = d.run(&["import", &input, "--no-fire"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--no-fire: an agent is running"),
        "{run:?}"
    );
    let mut running = Vec::new();
    for format in ["csv", "parquet"] {
        let path = d.path(&format!("running.{format}"));
        d.ok(&["query", "-o", &path.display().to_string()]);
        running.push(std::fs::read(path).unwrap());
    }
    common::child::signal(&agent, common::child::SIGTERM);
    let status = common::child::wait_or_kill(&mut agent, TIMEOUT, "the agent");
    assert!(status.success(), "{status}");
    for (format, bytes) in ["csv", "parquet"].iter().zip(&running) {
        let path = d.path(&format!("stopped.{format}"));
        d.ok(&["query", "-o", &path.display().to_string()]);
        assert!(
            std::fs::read(path).unwrap() == *bytes,
            "{format}: the running agent's export differs from the stopped store's"
        );
    }
    let csv = String::from_utf8(running[0].clone()).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 2501 + 1,
        "header, rows, one line break in a text"
    );
    assert!(
        csv.starts_with("uri,ts,kind,value\nmany,0,datapoint,0.0\nmany,1000,datapoint,0.125\n")
    );
    assert!(csv.ends_with(
        "many,2499000,datapoint,312.375\ntext,5,datasource,\"one\ntwo, \"\"three\"\"\"\n"
    ));
}

#[test]
fn an_import_fires_the_impulses_unless_no_fire() {
    let yaml = format!(
        "- username: me\n- impulses:\n    name: alarm\n    filename: {}\n    uris: [room.temp]\n    params:\n      threshold: 80\n",
        common::guest("threshold").display()
    );
    let d = Dir::new(&yaml);
    let quiet = jsonl(&[("room.temp", 1, json!(90)), ("room.temp", 2, json!(10))]);
    let run = d.ok(&[
        "import",
        &d.file("quiet.jsonl", quiet.as_bytes()),
        "--no-fire",
    ]);
    assert!(
        run.out().starts_with("imported 2 samples from 1 file: 2 stored, 0 already held, 0 refused; no impulse fired (--no-fire)"),
        "{run:?}"
    );
    assert_eq!(d.uris(), ["room.temp"]);
    // Out of order in the file: fired in time order.
    let loud = "room.temp,4,85\nroom.temp,3,50\n";
    let run = d.ok(&["import", &d.file("loud.csv", loud.as_bytes())]);
    assert!(
        run.out().starts_with("imported 2 samples from 1 file: 2 stored, 0 already held, 0 refused; 2 impulse fires, 2 samples written by impulses"),
        "{run:?}"
    );
    let flags: Vec<(i64, f64)> = d
        .rows("room.temp._anomaly")
        .iter()
        .map(|r| (r["ts"].as_i64().unwrap(), r["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(flags, [(3, 0.0), (4, 1.0)]);
    // The same file again: held, nothing fires.
    let run = d.ok(&["import", &d.path("loud.csv").display().to_string()]);
    assert!(
        run.out()
            .contains(": 0 stored, 2 already held, 0 refused; 0 impulse fires"),
        "{run:?}"
    );
}

/// A binary export to a pipe is the file's bytes; an import reads a pipe
/// named `/dev/stdin` with `--format`.
#[test]
fn exports_and_imports_go_through_pipes() {
    let d = Dir::new(PLAIN);
    d.ok(&[
        "import",
        &d.file("in.jsonl", jsonl(&[("p", 1, json!(2.5))]).as_bytes()),
    ]);
    let file = d.path("p.arrow");
    d.ok(&["query", "p", "-o", &file.display().to_string()]);
    let piped = d.ok(&["query", "p", "--format", "arrow"]);
    assert!(piped.stdout == std::fs::read(&file).unwrap());
    assert_eq!(piped.stderr, "");
    let mut import = d.command(&["import", "--format", "csv", "/dev/stdin"]);
    import.stdin(Stdio::piped());
    let mut child = import.spawn().expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"q,1,2\n")
        .expect("write");
    let status = common::child::wait_or_kill(&mut child, TIMEOUT, "import from stdin");
    assert!(status.success());
    assert_eq!(d.uris(), ["p", "q"]);
}
