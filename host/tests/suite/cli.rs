//! The real `komlogd` binary run as a child process, as a user or a cron job runs it:
//!
//! * uploads from stdin (`df -k | komlogd -u host.disk`, `--datapoint --ts`) through
//!   the real example guests (`df`, `threshold`), and `query` in text and JSON;
//! * every bad input (no stdin, empty stdin, stdin without `-u`, bad uri, oversized or
//!   non-UTF-8 stdin, a bad number, a time outside the valid range, a missing or broken
//!   configuration, a remote uri, a kind change, an unknown uri) gets its message on
//!   stderr and the documented status (0 ok, 1 runtime failure, 2 usage or configuration
//!   error);
//! * uploads that meet: twenty at once, one waiting for a held store (and an agent
//!   starting meanwhile), an agent dying while it answers, a retried upload;
//! * a store holding times beyond the valid range, as an earlier komlogd let in:
//!   `query` shows them;
//! * a corrupt impulse module: uploads still work, `check` fails and names it;
//! * `--help` and `--version`.
//!
//! Each test has its own komlogd.yaml in a temporary directory, which is also
//! `HOME`. Every child is killed if it runs for more than a minute.

use crate::common;

use common::guest;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest sample text, in bytes.
const LIMIT: usize = 131_072;

/// What a child is given on fd 0.
enum Stdin {
    /// `/dev/null`: no input.
    Null,
    /// A pipe carrying these bytes.
    Pipe(Vec<u8>),
    /// One end of a Unix socket pair carrying these bytes.
    Socket(Vec<u8>),
}

impl Stdin {
    fn text(s: &str) -> Stdin {
        Stdin::Pipe(s.as_bytes().to_vec())
    }
}

/// How a child ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

fn writer(mut sink: impl Write + Send + 'static, data: Vec<u8>) -> JoinHandle<()> {
    // The child may stop reading early (size limit): a broken pipe is expected.
    std::thread::spawn(move || {
        let _ = sink.write_all(&data);
    })
}

/// Wait for `child`, killing it after [`TIMEOUT`].
fn wait_bounded(child: &mut Child, what: &str) -> i32 {
    let status = common::child::wait_or_kill(child, TIMEOUT, what);
    status
        .code()
        .unwrap_or_else(|| panic!("{what}: killed by a signal: {status}"))
}

/// Run `komlogd ARGS` with `HOME` = `home` and the given stdin.
fn komlogd(home: &Path, args: &[&str], stdin: Stdin) -> Run {
    let what = format!("komlogd {}", args.join(" "));
    let mut cmd = Command::new(KOMLOGD);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("KOMLOGD_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut feed = None;
    match stdin {
        Stdin::Null => {
            cmd.stdin(Stdio::null());
        }
        Stdin::Pipe(data) => {
            cmd.stdin(Stdio::piped());
            feed = Some(data);
        }
        Stdin::Socket(data) => {
            let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
            cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
            std::thread::spawn(move || {
                let _ = ours.write_all(&data);
                let _ = ours.shutdown(std::net::Shutdown::Write);
            });
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {KOMLOGD}: {e}"));
    // Close our copy of the child's socket end now that the child holds it.
    drop(cmd);
    let feeder = match (feed, child.stdin.take()) {
        (Some(data), Some(pipe)) => Some(writer(pipe, data)),
        _ => None,
    };
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    let code = wait_bounded(&mut child, &what);
    if let Some(f) = feeder {
        f.join().expect("stdin writer");
    }
    Run {
        code,
        stdout: String::from_utf8(out.join().expect("stdout reader")).expect("UTF-8 stdout"),
        stderr: String::from_utf8(err.join().expect("stderr reader")).expect("UTF-8 stderr"),
    }
}

/// A temporary agent directory (also `HOME`) with its komlogd.yaml.
struct Agent {
    dir: tempfile::TempDir,
}

impl Agent {
    /// `yaml` with `{guest:NAME}` replaced by the path of that guest.
    fn new(yaml: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = Agent { dir };
        std::fs::write(agent.config(), expand(yaml)).expect("write komlogd.yaml");
        agent
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("komlogd.yaml")
    }

    fn config_str(&self) -> String {
        self.config().display().to_string()
    }

    /// `komlogd -c <its komlogd.yaml> ARGS`.
    fn run(&self, args: &[&str], stdin: Stdin) -> Run {
        let config = self.config_str();
        let mut all = vec!["-c", config.as_str()];
        all.extend_from_slice(args);
        komlogd(self.dir.path(), &all, stdin)
    }

    /// Upload `text` to `uri` and expect success.
    fn upload(&self, uri: &str, text: &str) -> Run {
        let run = self.run(&["-u", uri], Stdin::text(text));
        assert_eq!(run.code, 0, "upload to {uri}: {run:?}");
        run
    }

    /// `query ARGS --json`, parsed, expecting success.
    fn query_json(&self, args: &[&str]) -> Vec<Json> {
        let mut all = vec!["query"];
        all.extend_from_slice(args);
        all.push("--json");
        let run = self.run(&all, Stdin::Null);
        assert_eq!(run.code, 0, "{all:?}: {run:?}");
        match serde_json::from_str(&run.stdout) {
            Ok(Json::Array(rows)) => rows,
            other => panic!("{all:?} printed no JSON array: {other:?}\n{}", run.stdout),
        }
    }

    fn store_exists(&self) -> bool {
        self.dir.path().join("data").join("store.redb").exists()
    }
}

fn expand(yaml: &str) -> String {
    let mut out = String::new();
    let mut rest = yaml;
    while let Some(start) = rest.find("{guest:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 7..];
        let end = after.find('}').expect("unclosed {guest:");
        out.push_str(&guest(&after[..end]).display().to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The demo's df → disk_alarm chain.
const DF_AND_THRESHOLD: &str = "\
- username: me
- impulses:
    name: df
    filename: {guest:df}
    uris: [host.disk]
- impulses:
    name: disk_alarm
    filename: {guest:threshold}
    uris: [host.disk.root.used_pct]
    params:
      threshold: 80
";

/// A configuration with no impulses.
const PLAIN: &str = "- username: me\n";

fn real_df_k() -> String {
    let output = Command::new("df")
        .arg("-k")
        .env("LC_ALL", "C")
        .output()
        .expect("run df -k");
    let text = String::from_utf8(output.stdout).expect("df -k prints UTF-8");
    assert!(
        text.starts_with("Filesystem"),
        "df -k printed no table (status {}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn field<'a>(row: &'a Json, key: &str) -> &'a Json {
    row.get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {row}"))
}

// ------------------------------------------------------------------- uploads

#[test]
fn df_k_upload_fires_the_chain_and_query_shows_it() {
    let agent = Agent::new(DF_AND_THRESHOLD);
    let df = real_df_k();
    let run = agent.run(&["-u", "host.disk"], Stdin::text(&df));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(" host.disk: stored; 2 impulse fires, "),
        "{run:?}"
    );
    assert!(run.stdout.ends_with(" samples written\n"), "{run:?}");
    assert!(
        !run.stderr.contains('\x1b'),
        "colour codes: {:?}",
        run.stderr
    );

    // The datasource as uploaded.
    let rows = agent.query_json(&["host.disk"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(field(&rows[0], "kind"), "datasource");
    assert_eq!(field(&rows[0], "uri"), "host.disk");
    assert_eq!(field(&rows[0], "value").as_str(), Some(df.as_str()));
    let ts = field(&rows[0], "ts").as_i64().expect("integer ts");
    let time = field(&rows[0], "time")
        .as_str()
        .expect("time text")
        .to_owned();
    assert!(time.ends_with('Z') && time.len() == 27, "{time}");
    assert!(run.stdout.starts_with(&format!("{time} host.disk: stored")));

    // The root filesystem's percentage, written by df at the same ts.
    let rows = agent.query_json(&["host.disk.root.used_pct"]);
    let last = rows.last().expect("one sample");
    assert_eq!(field(last, "kind"), "datapoint");
    assert_eq!(field(last, "uri"), "host.disk.root.used_pct");
    assert_eq!(field(last, "ts").as_i64(), Some(ts));
    let root = field(last, "value").as_f64().expect("a number");
    assert!((0.0..=100.0).contains(&root), "{root}");

    // disk_alarm's verdict on it.
    let rows = agent.query_json(&["host.disk.root.used_pct._anomaly"]);
    let flag = field(rows.last().expect("one flag"), "value").as_f64();
    assert_eq!(flag, Some(if root > 80.0 { 1.0 } else { 0.0 }));

    // The listing: the datasource, every used_pct and the flag, one sample each.
    let list = agent.run(&["query"], Stdin::Null);
    assert_eq!(list.code, 0, "{list:?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    let suffix = format!("  1 sample, last {time}");
    assert!(
        lines.contains(&format!("host.disk  datasource{suffix}").as_str()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("host.disk.root.used_pct  datapoint{suffix}").as_str()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("host.disk.root.used_pct._anomaly  datapoint{suffix}").as_str()),
        "{lines:?}"
    );
    for line in &lines {
        let uri = line.split("  ").next().unwrap();
        assert!(
            uri == "host.disk"
                || uri == "host.disk.root.used_pct._anomaly"
                || (uri.starts_with("host.disk.") && uri.ends_with(".used_pct")),
            "unexpected uri in {line:?}"
        );
        assert!(line.ends_with(&suffix), "{line:?}");
    }
    let used_pct = lines.iter().filter(|l| l.contains(".used_pct  ")).count();
    assert!(
        run.stdout.contains(&format!(
            "2 impulse fires, {} samples written",
            used_pct + 1
        )),
        "{used_pct} used_pct uris listed; {run:?}"
    );
    let listed = agent.query_json(&[]);
    assert_eq!(listed.len(), lines.len());
    assert!(listed.iter().all(|r| field(r, "count") == 1));

    // The text query shows the df table indented under its header line.
    let shown = agent.run(&["query", "host.disk"], Stdin::Null);
    assert_eq!(shown.code, 0, "{shown:?}");
    let mut expected = format!("{time}  host.disk\n");
    for line in df.lines() {
        expected.push_str(&format!("    {line}\n"));
    }
    assert_eq!(shown.stdout, expected);
    assert_eq!(shown.stderr, "");
}

#[test]
fn datapoint_upload_with_a_timestamp() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(
        &["-u", "cpu.x", "--datapoint", "--ts", "1000000"],
        Stdin::text("42.5\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "1970-01-01T00:00:01.000000Z cpu.x: stored; 0 impulse fires, 0 samples written\n"
    );
    assert_eq!(run.stderr, "");
    let shown = agent.run(&["query", "cpu.x"], Stdin::Null);
    assert_eq!(
        (shown.code, shown.stdout.as_str(), shown.stderr.as_str()),
        (0, "1970-01-01T00:00:01.000000Z  cpu.x  42.5\n", "")
    );
    let rows = agent.query_json(&["cpu.x"]);
    assert_eq!(
        rows,
        [
            serde_json::json!({"uri": "cpu.x", "ts": 1_000_000, "time": "1970-01-01T00:00:01.000000Z",
            "kind": "datapoint", "value": 42.5})
        ]
    );
}

#[test]
fn query_limits_to_the_latest_n_oldest_first() {
    let agent = Agent::new(PLAIN);
    for (i, v) in ["1", "2.5", "-3", "4e2"].iter().enumerate() {
        let ts = ((i + 1) * 1_000_000).to_string();
        let run = agent.run(
            &["-u", "m", "--datapoint", "--ts", &ts],
            Stdin::text(&format!(" {v}\n")),
        );
        assert_eq!(run.code, 0, "{run:?}");
    }
    let shown = agent.run(&["query", "m", "-n", "2"], Stdin::Null);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert_eq!(
        shown.stdout,
        "1970-01-01T00:00:03.000000Z  m  -3\n1970-01-01T00:00:04.000000Z  m  400\n"
    );
}

#[test]
fn stdin_from_a_socket_is_input() {
    // Node.js and some supervisors give their children a socket pair, not a pipe.
    let agent = Agent::new(PLAIN);
    let run = agent.run(
        &["-u", "sock.x", "--datapoint", "--ts", "2000000"],
        Stdin::Socket(b"7\n".to_vec()),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "1970-01-01T00:00:02.000000Z sock.x: stored; 0 impulse fires, 0 samples written\n"
    );
    let rows = agent.query_json(&["sock.x"]);
    assert_eq!(field(&rows[0], "value").as_f64(), Some(7.0));
}

#[test]
fn the_largest_sample_is_accepted() {
    let agent = Agent::new(PLAIN);
    let text = "x".repeat(LIMIT);
    let run = agent.upload("fits", &text);
    assert!(run.stdout.contains(" fits: stored;"), "{run:?}");
    let rows = agent.query_json(&["fits"]);
    assert_eq!(field(&rows[0], "value").as_str().map(str::len), Some(LIMIT));
}

#[test]
fn own_global_uri_is_a_local_write() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(
        &["-u", "ME:own.x", "--datapoint", "--ts", "5"],
        Stdin::text("1"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let rows = agent.query_json(&["own.x"]);
    assert_eq!(field(&rows[0], "uri"), "own.x");
}

// --------------------------------------------------------- usage errors: 2

/// Expect status `code` and exactly `message` (after `komlogd: `) on stderr.
fn assert_fails(run: &Run, code: i32, message: &str) {
    assert_eq!(run.code, code, "{run:?}");
    assert_eq!(run.stderr, format!("komlogd: {message}\n"), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
}

#[test]
fn uri_without_stdin_input_is_a_usage_error() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["-u", "x"], Stdin::Null);
    assert_fails(
        &run,
        2,
        "-u/--uri given, but no input on stdin: pipe the data in, e.g. `df -k | komlogd -u host.disk`",
    );
    assert!(!agent.store_exists());
}

#[test]
fn stdin_without_uri_is_a_usage_error() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&[], Stdin::text("some data\n"));
    assert_fails(
        &run,
        2,
        "data on stdin, but no uri: add -u URI to upload it",
    );
    assert!(!agent.store_exists());
}

#[test]
fn uri_with_a_command_is_a_usage_error() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["-u", "x", "query"], Stdin::text("1"));
    assert_fails(&run, 2, "-u/--uri cannot be combined with a command");
}

#[test]
fn datapoint_without_uri_is_a_usage_error() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["--datapoint"], Stdin::text("1"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("the following required arguments were not provided")
            && run.stderr.contains("--uri <URI>"),
        "{run:?}"
    );
}

#[test]
fn invalid_uri_is_named() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["-u", "bad..uri"], Stdin::text("text"));
    assert_fails(
        &run,
        2,
        "-u bad..uri: invalid uri \"bad..uri\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
    );
    assert!(!agent.store_exists());
}

#[test]
fn oversized_stdin_is_refused_and_nothing_stored() {
    let agent = Agent::new(PLAIN);
    agent.upload("first", "something small");
    for size in [LIMIT + 1, 3 * LIMIT] {
        let run = agent.run(&["-u", "big"], Stdin::Pipe(vec![b'x'; size]));
        assert_fails(
            &run,
            2,
            "stdin holds more than 131072 bytes, the limit of a sample; nothing was uploaded",
        );
    }
    let run = agent.run(&["query", "big"], Stdin::Null);
    assert_fails(&run, 1, "no samples stored at big");
    let uris: Vec<Json> = agent
        .query_json(&[])
        .iter()
        .map(|r| field(r, "uri").clone())
        .collect();
    assert_eq!(uris, ["first"]);
}

#[test]
fn non_utf8_stdin_is_refused() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["-u", "t"], Stdin::Pipe(b"ok\xff\xfe".to_vec()));
    assert_fails(
        &run,
        2,
        "stdin is not UTF-8 text (invalid byte at offset 2); nothing was uploaded",
    );
    assert!(!agent.store_exists());
}

#[test]
fn datapoint_needs_one_finite_number() {
    let agent = Agent::new(PLAIN);
    for (input, shown) in [
        ("abc\n", "\"abc\""),
        ("nan\n", "\"nan\""),
        ("inf", "\"inf\""),
        ("1 2", "\"1 2\""),
        ("\n", "\"\""),
    ] {
        let run = agent.run(&["-u", "n", "--datapoint"], Stdin::text(input));
        assert_fails(
            &run,
            2,
            &format!("--datapoint: stdin must hold one finite number, found {shown}"),
        );
    }
    assert!(!agent.store_exists());
}

#[test]
fn missing_config_file_is_named() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nowhere").join("komlogd.yaml");
    let m = missing.display().to_string();
    let message = format!("{m}: File not found: {m}");
    for (args, stdin) in [
        (vec!["-c", &m, "check"], Stdin::Null),
        (vec!["-c", &m, "query"], Stdin::Null),
        (vec!["-c", &m, "-u", "x"], Stdin::text("1")),
    ] {
        let run = komlogd(home.path(), &args, stdin);
        assert_fails(&run, 2, &message);
    }
    // Without -c a missing ~/.komlogd/komlogd.yaml is a first run instead (tests/daemon.rs).
}

#[test]
fn config_error_names_file_and_line() {
    let agent = Agent::new(
        "- username: me\n- impulses:\n    filename: {guest:threshold}\n    uris: [x]\n    data_reqs:\n      past_count: ten\n",
    );
    let message = format!(
        "{}:6: impulses.data_reqs.past_count: expected a non-negative integer, found \"ten\"",
        agent.config_str()
    );
    let check = agent.run(&["check"], Stdin::Null);
    assert!(check.stderr.contains("komlogd.yaml:6: "), "{check:?}");
    assert_fails(&check, 2, &message);
    assert_fails(&agent.run(&["-u", "x"], Stdin::text("1")), 2, &message);
    assert!(!agent.store_exists());
}

#[test]
fn a_misspelled_key_is_an_error_in_check_and_at_start() {
    // `impulse` for `impulses` used to be a warning: check said "0 impulses loaded"
    // and exited 0, and the agent ran without the impulse.
    let agent = Agent::new("- username: me\n- impulse:\n    filename: a.wasm\n    uris: [x]\n");
    let message = format!(
        "{}:2: unknown key `impulse` at the top level; known keys: username, keyfile, server, logging, job, allow_external_jobs, external_job_file, impulses, package, limits, max_chain_depth, metrics, statsd, line_protocol, sink; did you mean `impulses`?",
        agent.config_str()
    );
    assert_fails(&agent.run(&["check"], Stdin::Null), 2, &message);
    assert_fails(&agent.run(&[], Stdin::Null), 2, &message);
    assert_fails(&agent.run(&["-u", "x"], Stdin::text("1")), 2, &message);
    assert!(!agent.store_exists());

    // A key inside a block too.
    let agent = Agent::new("- username: me\n- limits:\n    timeout: 1s\n    memroy: 32MiB\n");
    let message = format!(
        "{}:4: unknown key `memroy` in limits block; known keys: timeout, memory, fuel, disable_after, queue, outputs; did you mean `memory`?",
        agent.config_str()
    );
    assert_fails(&agent.run(&["check"], Stdin::Null), 2, &message);
    assert_fails(&agent.run(&[], Stdin::Null), 2, &message);
}

// ------------------------------------------------------- runtime errors: 1

#[test]
fn query_of_unknown_uri_fails() {
    let agent = Agent::new(PLAIN);
    let path = agent.dir.path().join("data").join("store.redb");
    assert_fails(
        &agent.run(&["query", "never.written"], Stdin::Null),
        1,
        &format!(
            "no store yet at {}: nothing has been uploaded with this configuration",
            path.display()
        ),
    );
    agent.upload("something", "1");
    assert_fails(
        &agent.run(&["query", "never.written"], Stdin::Null),
        1,
        "no samples stored at never.written",
    );
    assert_fails(
        &agent.run(&["query", "never..valid"], Stdin::Null),
        2,
        "invalid uri \"never..valid\": expected levels of [A-Za-z0-9_-] joined by '.', optionally prefixed by 'user:'",
    );
}

#[test]
fn upload_to_another_users_uri_is_read_only() {
    let agent = Agent::new(PLAIN);
    let run = agent.run(&["-u", "someoneelse:x"], Stdin::text("hello"));
    assert_fails(
        &run,
        1,
        "someoneelse:x: not uploaded: uri someoneelse:x belongs to another user: remote uris are read-only",
    );
    assert!(run.stderr.contains("read-only"));
    let listed = agent.query_json(&[]);
    assert_eq!(listed, Vec::<Json>::new());
}

#[test]
fn kind_change_is_refused() {
    let agent = Agent::new(PLAIN);
    agent.upload("k", "text first");
    let run = agent.run(&["-u", "k", "--datapoint"], Stdin::text("1"));
    assert_fails(
        &run,
        1,
        "k: not uploaded: uri k is a datasource; a datapoint cannot be written to it",
    );
    let rows = agent.query_json(&["k"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(field(&rows[0], "value"), "text first");
}

// ----------------------------------------------------- bad impulse modules

/// df plus an impulse whose module is not WebAssembly.
fn with_corrupt_module() -> (Agent, PathBuf) {
    let agent = Agent::new(
        "- impulses:\n    name: df\n    filename: {guest:df}\n    uris: [host.disk]\n- impulses:\n    name: broken\n    filename: broken.wasm\n    uris: [host.disk]\n",
    );
    let bad = agent.dir.path().join("broken.wasm");
    std::fs::write(&bad, b"\x00asn this is not a component").unwrap();
    (agent, bad)
}

const TINY_DF: &str =
    "Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/sda1 100 25 75 25% /\n";

/// The corrupt module is named, with its impulse, exactly once on stderr.
fn assert_bad_module_reported_once(run: &Run, bad: &Path) {
    assert!(
        run.stderr.contains(&format!(
            "komlogd: not loaded: impulse broken: {}: not a valid WebAssembly component",
            bad.display()
        )),
        "{run:?}"
    );
    assert_eq!(
        run.stderr
            .matches("not a valid WebAssembly component")
            .count(),
        1,
        "reported once: {run:?}"
    );
}

#[test]
fn corrupt_module_is_reported_and_upload_still_works() {
    let (agent, bad) = with_corrupt_module();
    let run = agent.run(
        &["-u", "host.disk", "--ts", "7000000"],
        Stdin::text(TINY_DF),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "1970-01-01T00:00:07.000000Z host.disk: stored; 1 impulse fire, 1 sample written\n"
    );
    assert_bad_module_reported_once(&run, &bad);
    assert!(
        !run.stderr.contains('\x1b'),
        "colour codes: {:?}",
        run.stderr
    );
    let rows = agent.query_json(&["host.disk.root.used_pct"]);
    assert_eq!(field(&rows[0], "value").as_f64(), Some(25.0));
}

#[test]
fn check_fails_on_a_corrupt_module_and_lists_the_good_one() {
    let (agent, bad) = with_corrupt_module();
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "{}: 1 impulse loaded\n  df ({}): host.disk\n",
            agent.config_str(),
            guest("df").display()
        )
    );
    assert_bad_module_reported_once(&run, &bad);
    assert!(
        run.stderr
            .ends_with("komlogd: 1 impulse could not be loaded\n"),
        "{run:?}"
    );

    // Fixed: check passes and lists both.
    std::fs::copy(guest("threshold"), &bad).unwrap();
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "{}: 2 impulses loaded\n  df ({}): host.disk\n  broken ({}): host.disk\n",
            agent.config_str(),
            guest("df").display(),
            bad.display()
        )
    );
}

/// A module compiled for the first time is announced on stderr with the time it
/// took; the second `check` loads it from the compiled cache and says nothing
/// about compiling. (Fails when the engine compiles silently, or when a cached
/// load is announced as a compile.)
#[test]
fn check_says_which_modules_it_compiles_and_only_the_first_time() {
    let agent =
        Agent::new("- impulses:\n    name: df\n    filename: {guest:df}\n    uris: [host.disk]\n");
    let first = agent.run(&["check"], Stdin::Null);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stderr
            .contains("komlogd: compiling df.wasm (first time, cached afterwards)…\n"),
        "{first:?}"
    );
    let done = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("komlogd: compiled df.wasm in "))
        .unwrap_or_else(|| panic!("no end line: {first:?}"));
    // The end line carries the time, in seconds with one decimal.
    done.strip_suffix(" s")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("bad duration {done:?}"));
    let second = agent.run(&["check"], Stdin::Null);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(!second.stderr.contains("compil"), "{second:?}");
    assert_eq!(second.stdout, first.stdout);
}

// ------------------------------------------------------------- help, version

#[test]
fn help_and_version() {
    let home = tempfile::tempdir().unwrap();
    let run = komlogd(home.path(), &["--version"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("komlogd {}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = komlogd(home.path(), &["--help"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    for needle in [
        "Usage: komlogd",
        "query",
        "check",
        "--uri",
        "--datapoint",
        "--ts",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle} missing from {}",
            run.stdout
        );
    }
    let run = komlogd(home.path(), &["query", "--help"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("--json"), "{}", run.stdout);
}

#[test]
fn a_tls_server_url_is_taken_and_a_bad_ca_file_is_named() {
    let agent = Agent::new(
        "- username: me\n- server:\n    url: wss://hub.example:8443/\n- package:\n    install: linux.wasm\n",
    );
    let run = agent.run(&["-u", "x", "--datapoint"], Stdin::text("1"));
    assert_eq!(run.code, 0, "{run:?}");
    // TLS urls and packages are acted on: no notice about either.
    assert!(!run.stderr.contains("warning"), "{run:?}");

    let agent = Agent::new(
        "- username: me\n- server:\n    url: https://hub.example:8443/\n    ca_file: certs/missing.pem\n",
    );
    let ca = agent.dir.path().join("certs/missing.pem");
    let run = agent.run(&["-u", "x", "--datapoint"], Stdin::text("1"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "komlogd: warning: the `server` block (https://hub.example:8443/): cannot read the CA file {}",
            ca.display()
        )),
        "{run:?}"
    );
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot read the CA file {}", ca.display())),
        "{run:?}"
    );
}

#[test]
fn check_loads_each_package_and_names_the_one_that_fails() {
    let agent = Agent::new(
        "- username: me\n\
         - package:\n    install: {guest:probe_package}\n    params: {jobs: \"a every:1000 | b every:2000,cron:*/5_*_*_*_*\"}\n\
         - package:\n    install: {guest:linux}\n    grants: {dirs: [/proc]}\n",
    );
    let config = agent.config_str();
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "{config}: 0 impulses loaded\n{config}: 2 packages loaded\n  linux ({})\n",
            guest("linux").display()
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("\n    job resources: cron \"* * * * *\"\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("\n    impulse linux/cpu_anomaly: "),
        "{run:?}"
    );
    assert!(
        run.stdout.ends_with(&format!(
            "  probe_package ({})\n    job a: every 1s\n    job b: every 2s, cron \"*/5 * * * *\"\n",
            guest("probe_package").display()
        )),
        "{run:?}"
    );

    // A `load` that fails and a missing grant: both named, with the reason.
    std::fs::write(
        agent.config(),
        expand(
            "- username: me\n\
             - package:\n    install: {guest:probe_package}\n    params: {fail_load: no jobs here}\n\
             - package:\n    install: {guest:linux}\n",
        ),
    )
    .expect("write komlogd.yaml");
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{config}: 0 impulses loaded\n{config}: 0 packages loaded\n")
    );
    assert!(
        run.stderr.contains(&format!(
            "komlogd: package probe_package ({}) not loaded: load() returned an error: no jobs here\n",
            guest("probe_package").display()
        )),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "komlogd: package linux ({}) not loaded: ",
            guest("linux").display()
        )),
        "{run:?}"
    );
    assert!(
        run.stderr
            .ends_with("komlogd: 2 packages could not be loaded\n"),
        "{run:?}"
    );
}

// ------------------------------------------------------------- check: jobs

/// Write an executable (`mode`) script at `path`.
fn script(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn check_lists_the_jobs_and_names_each_one_whose_command_cannot_run() {
    let every = "    schedule: '* * * * *'\n";
    let agent = Agent::new(&format!(
        "- job:\n    uri: host.ok\n    command: printf hello\n{every}\
         - job:\n    uri: host.err\n    command: ./errjob.sh\n{every}\
         - job:\n    uri: host.missing\n    command: no-such-komlogd-command -x\n{every}\
         - job:\n    uri: host.plain\n    command: bin/plain.sh\n{every}\
         - job:\n    uri: host.off\n    command: no-such-komlogd-command\n    enabled: no\n{every}"
    ));
    let dir = agent.dir.path();
    // komlogd runs from another directory: the scripts are found beside komlogd.yaml.
    assert!(!std::env::current_dir().unwrap().starts_with(dir));
    script(&dir.join("errjob.sh"), 0o755);
    std::fs::create_dir(dir.join("bin")).unwrap();
    script(&dir.join("bin/plain.sh"), 0o644);
    let printf = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("printf"))
        .find(|p| p.is_file())
        .expect("printf in PATH");

    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 1, "{run:?}");
    let c = agent.config_str();
    let plain = dir.join("bin/plain.sh");
    assert_eq!(
        run.stdout,
        format!(
            "{c}: 0 impulses loaded\n\
             {c}: 5 jobs\n\
             \x20 host.ok: printf hello ({}), schedule * * * * *\n\
             \x20 host.err: ./errjob.sh ({}), schedule * * * * *\n\
             \x20 host.missing: no-such-komlogd-command -x (cannot run), schedule * * * * *\n\
             \x20 host.plain: bin/plain.sh (cannot run), schedule * * * * *\n\
             \x20 host.off: no-such-komlogd-command (disabled), schedule * * * * *\n",
            printf.display(),
            dir.join("errjob.sh").display()
        )
    );
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        run.stderr,
        format!(
            "komlogd: {c}:9: job host.missing: cannot run \"no-such-komlogd-command -x\": `no-such-komlogd-command` is not found in PATH ({path})\n\
             komlogd: {c}:13: job host.plain: cannot run \"bin/plain.sh\": {}: not executable (mode 644): add the executable bit (chmod +x)\n\
             komlogd: 2 jobs cannot run\n",
            plain.display()
        )
    );

    // Fixed: the script made executable and the missing command disabled.
    script(&plain, 0o755);
    std::fs::write(
        agent.config(),
        std::fs::read_to_string(agent.config())
            .unwrap()
            .replace("-x\n", "-x\n    enabled: no\n"),
    )
    .unwrap();
    let run = agent.run(&["check"], Stdin::Null);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "  host.plain: bin/plain.sh ({}), schedule * * * * *\n",
            plain.display()
        )),
        "{run:?}"
    );
    assert_eq!(run.stderr, "", "{run:?}");
}

// ------------------------------------------------------ times out of range

impl Agent {
    fn store_path(&self) -> PathBuf {
        self.dir.path().join("data").join("store.redb")
    }
}

#[test]
fn a_store_holding_times_beyond_the_range_is_queried_without_panicking() {
    // What an earlier komlogd let in: the store API itself keeps any time.
    let agent = Agent::new(PLAIN);
    {
        let mut store = komlogd::store::Store::open(&agent.store_path()).expect("open the store");
        let samples: Vec<komlogd::model::Sample> = [1_000_000, 253_402_300_800_000_000, i64::MAX]
            .into_iter()
            .map(|ts| komlogd::model::Sample {
                uri: "far.x".into(),
                ts,
                value: komlogd::model::Value::Datapoint(1.0),
            })
            .collect();
        let outcomes = store.append(&samples).expect("append");
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
    let listed = agent.run(&["query"], Stdin::Null);
    assert_eq!(
        (listed.code, listed.stdout.as_str(), listed.stderr.as_str()),
        (
            0,
            "far.x  datapoint  3 samples, last 9223372036854775807us\n",
            ""
        )
    );
    let shown = agent.run(&["query", "far.x"], Stdin::Null);
    assert_eq!(
        (shown.code, shown.stdout.as_str(), shown.stderr.as_str()),
        (
            0,
            "1970-01-01T00:00:01.000000Z  far.x  1\n\
             253402300800000000us  far.x  1\n\
             9223372036854775807us  far.x  1\n",
            ""
        )
    );
    let rows = agent.query_json(&["far.x"]);
    assert_eq!(field(&rows[2], "ts"), i64::MAX);
    assert_eq!(field(&rows[2], "time"), "9223372036854775807us");
    // Uploads to it still work.
    let run = agent.run(
        &["-u", "far.x", "--datapoint", "--ts", "2000000"],
        Stdin::text("2"),
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_time_outside_the_valid_range_is_refused_before_anything_is_stored() {
    let agent = Agent::new(PLAIN);
    for ts in [
        "253402300800000000",
        "103072857660684698",
        "9223372036854775807",
        "-12219292800000001",
    ] {
        let run = agent.run(
            &["-u", "far.x", "--datapoint", "--ts", ts],
            Stdin::text("1"),
        );
        assert_fails(
            &run,
            2,
            &format!(
                "--ts {ts}: timestamp {ts} is outside the valid time range \
                 1582-10-15T00:00:00Z ..= 5236-03-31T21:21:00.684697Z \
                 (-12219292800000000 ..= 103072857660684697 µs since the Unix epoch, what a TimeUUID carries)"
            ),
        );
    }
    assert!(!agent.store_exists());
    // The bounds themselves are valid, and shown as times.
    for (ts, time) in [
        ("103072857660684697", "5236-03-31T21:21:00.684697Z"),
        ("-12219292800000000", "1582-10-15T00:00:00.000000Z"),
        ("-1", "1969-12-31T23:59:59.999999Z"),
    ] {
        let run = agent.run(
            &["-u", "far.x", "--datapoint", "--ts", ts],
            Stdin::text("1"),
        );
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stdout.starts_with(&format!("{time} far.x: stored")),
            "{run:?}"
        );
    }
}

// ------------------------------------------------------------ empty input

#[test]
fn empty_stdin_uploads_nothing() {
    let agent = Agent::new(PLAIN);
    for args in [&["-u", "e.x"][..], &["-u", "e.x", "--datapoint"]] {
        let run = agent.run(args, Stdin::Pipe(Vec::new()));
        assert_fails(
            &run,
            2,
            "stdin is empty: nothing was uploaded (an upload needs at least one byte of input)",
        );
    }
    assert!(!agent.store_exists());
    // One byte is input: a newline is a text.
    agent.upload("e.x", "\n");
    let rows = agent.query_json(&["e.x"]);
    assert_eq!(field(&rows[0], "value"), "\n");
}

// ------------------------------------- answers lost, and uploads retried

impl Agent {
    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("komlogd.sock")
    }
}

/// The first connection to `listener`, waiting at most [`TIMEOUT`] for it.
fn accept_bounded(listener: &std::os::unix::net::UnixListener) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).expect("non-blocking");
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(TIMEOUT))
                    .expect("read timeout");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    start.elapsed() < TIMEOUT,
                    "nobody connected within {TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A stand-in agent on the control socket: it reads one request line, and
/// `answer` decides what it does then with the connection.
fn fake_agent(
    socket: &Path,
    answer: impl FnOnce(std::os::unix::net::UnixStream, String) + Send + 'static,
) -> JoinHandle<()> {
    use std::io::BufRead;
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the socket");
    std::thread::spawn(move || {
        let stream = accept_bounded(&listener);
        let mut line = String::new();
        std::io::BufReader::new(stream.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("read the request");
        answer(stream, line);
    })
}

#[test]
fn an_agent_dying_while_answering_leaves_the_upload_open_and_says_so() {
    let agent = Agent::new(PLAIN);
    // The agent reads the request and goes away without an answer.
    let fake = fake_agent(&agent.socket_path(), |stream, _| drop(stream));
    let run = agent.run(&["-u", "amb.x", "--ts", "5000000"], Stdin::text("text"));
    assert_eq!(run.code, 1, "{run:?}");
    fake.join().expect("fake agent");
    std::fs::remove_file(agent.socket_path()).expect("remove the socket");
    assert_fails(
        &run,
        1,
        &format!(
            "{}: the request was sent, but no answer came: the agent closed the connection\n\
             the sample may have been stored (and sent on to the server); running the same upload \
             again with --ts 5000000 is harmless: a sample already stored is not stored, fired or sent again",
            agent.socket_path().display()
        ),
    );
    // It goes away with the request unread: the client sees a reset.
    let listener =
        std::os::unix::net::UnixListener::bind(agent.socket_path()).expect("bind the socket");
    let fake = std::thread::spawn(move || {
        let stream = accept_bounded(&listener);
        std::thread::sleep(Duration::from_millis(200));
        drop(stream);
    });
    let run = agent.run(&["-u", "amb.x", "--ts", "6000000"], Stdin::text("text"));
    assert_eq!(run.code, 1, "{run:?}");
    fake.join().expect("fake agent");
    assert!(
        run.stderr
            .contains("the request was sent, but no answer came: Connection reset by peer"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(
            "the sample may have been stored (and sent on to the server); running the same upload again with --ts 6000000 is harmless"
        ),
        "{run:?}"
    );
    assert!(!agent.store_exists());
}

#[test]
fn a_retried_upload_is_stored_once_and_fires_once() {
    let agent = Agent::new(
        "- username: me\n- impulses:\n    name: alarm\n    filename: {guest:threshold}\n    uris: [r.x]\n    params:\n      threshold: 80\n",
    );
    let args = ["-u", "r.x", "--datapoint", "--ts", "9000000"];
    let first = agent.run(&args, Stdin::text("95"));
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(
        first.stdout,
        "1970-01-01T00:00:09.000000Z r.x: stored; 1 impulse fire, 1 sample written\n"
    );
    // The same command again (its first answer lost, say): the same sample.
    let again = agent.run(&args, Stdin::text("95"));
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout,
        "1970-01-01T00:00:09.000000Z r.x: already stored (the same value at this time); nothing fired or queued again\n"
    );
    assert_eq!(again.stderr, "");
    // Another value at that time is a correction: stored and fired.
    let corrected = agent.run(&args, Stdin::text("50"));
    assert_eq!(
        corrected.stdout,
        "1970-01-01T00:00:09.000000Z r.x: stored; 1 impulse fire, 1 sample written\n"
    );
    let rows = agent.query_json(&["r.x"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(field(&rows[0], "value").as_f64(), Some(50.0));
}

// ------------------------------------------- uploads that meet each other

/// A komlogd child still running.
struct Running {
    what: String,
    child: Child,
    feeder: JoinHandle<()>,
    out: JoinHandle<Vec<u8>>,
    err: JoinHandle<Vec<u8>>,
}

impl Agent {
    /// Start `komlogd -c <its komlogd.yaml> ARGS` with `input` piped to stdin.
    fn start(&self, args: &[&str], input: &str) -> Running {
        let config = self.config_str();
        let what = format!("komlogd {}", args.join(" "));
        let mut child = Command::new(KOMLOGD)
            .args(["-c", config.as_str()])
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KOMLOGD_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {KOMLOGD}: {e}"));
        let feeder = writer(
            child.stdin.take().expect("stdin"),
            input.as_bytes().to_vec(),
        );
        let out = reader(child.stdout.take().expect("stdout"));
        let err = reader(child.stderr.take().expect("stderr"));
        Running {
            what,
            child,
            feeder,
            out,
            err,
        }
    }
}

impl Running {
    /// Wait for it (killing it after [`TIMEOUT`]).
    fn finish(mut self) -> Run {
        let code = wait_bounded(&mut self.child, &self.what);
        self.feeder.join().expect("stdin writer");
        Run {
            code,
            stdout: String::from_utf8(self.out.join().expect("stdout reader")).expect("UTF-8"),
            stderr: String::from_utf8(self.err.join().expect("stderr reader")).expect("UTF-8"),
        }
    }
}

#[test]
fn twenty_concurrent_uploads_all_succeed() {
    let agent = Agent::new(PLAIN);
    let runs: Vec<Running> = (1..=20)
        .map(|i| {
            let ts = (i * 1_000_000).to_string();
            agent.start(
                &["-u", "conc.test", "--datapoint", "--ts", &ts],
                &format!("{i}\n"),
            )
        })
        .collect();
    for run in runs {
        let run = run.finish();
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stderr, "", "{run:?}");
        assert!(run.stdout.contains(" conc.test: stored;"), "{run:?}");
    }
    let values: Vec<f64> = agent
        .query_json(&["conc.test", "-n", "100"])
        .iter()
        .filter_map(|r| field(r, "value").as_f64())
        .collect();
    assert_eq!(values, (1..=20).map(f64::from).collect::<Vec<_>>());
}

#[test]
fn an_upload_waits_for_a_held_store_and_says_so_after_the_wait() {
    let agent = Agent::new(PLAIN);
    agent.upload("first", "1");
    // Another komlogd (here the test itself) holds the store, and no agent answers.
    let store = komlogd::store::Store::open(&agent.store_path()).expect("open the store");
    let started = Instant::now();
    let run = agent.run(&["-u", "w.x", "--wait", "1s"], Stdin::text("2"));
    let waited = started.elapsed();
    assert_fails(
        &run,
        1,
        &format!(
            "store {} stayed locked for 1s: another komlogd process is using it, and no agent answers on {}; nothing was uploaded (--wait sets how long to wait)",
            agent.store_path().display(),
            agent.socket_path().display()
        ),
    );
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    // Let go during the wait: the upload goes through.
    let waiting = agent.start(&["-u", "w.x", "--wait", "30s"], "3");
    std::thread::sleep(Duration::from_millis(300));
    drop(store);
    let run = waiting.finish();
    assert_eq!(run.code, 0, "{run:?}");
    let rows = agent.query_json(&["w.x"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(field(&rows[0], "value"), "3");
}

#[test]
fn an_agent_that_starts_while_an_upload_waits_takes_the_sample() {
    let agent = Agent::new(PLAIN);
    agent.upload("first", "1");
    let store = komlogd::store::Store::open(&agent.store_path()).expect("open the store");
    let waiting = agent.start(&["-u", "late.x", "--datapoint", "--ts", "7000000"], "7");
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let fake = fake_agent(&agent.socket_path(), move |mut stream, line| {
        tx.send(line).expect("send");
        stream
            .write_all(b"{\"accepted\":1,\"held\":0,\"rejected\":[]}\n")
            .expect("answer");
    });
    let run = waiting.finish();
    drop(store);
    assert_eq!(run.code, 0, "{run:?}");
    fake.join().expect("fake agent");
    assert_eq!(
        run.stdout,
        "1970-01-01T00:00:07.000000Z late.x: stored by the running agent (its impulses fire there; `komlogd status` shows them)\n"
    );
    let request = rx.recv().expect("the request");
    assert_eq!(
        request,
        "upload {\"uri\":\"late.x\",\"ts\":7000000,\"datapoint\":7.0}\n"
    );
}
