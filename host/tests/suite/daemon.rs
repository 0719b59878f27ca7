//! The agent as a daemon, as a user runs it: the first run in an empty HOME, a
//! run with a real cron job feeding a real impulse, a clean stop on SIGTERM,
//! uploads and queries answered by the running agent, `komlogd status`, the Prometheus
//! endpoint, and the cap on what a guest may write to the log.

use crate::common;
use crate::common::part::part;

use common::guest;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");

fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(KOMLOGD);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("KOMLOGD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Wait for the child to exit within `limit`; kill it and fail otherwise.
fn wait(mut child: Child, limit: Duration) -> (i32, String, String) {
    let status = common::child::wait_or_kill(&mut child, limit, "komlogd");
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    (status.code().unwrap_or(-1), out, err)
}

/// Run `komlogd -c CONFIG ARGS` with `input` on stdin.
fn upload(home: &Path, config: &str, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = command(home, &[&["-c", config], args].concat());
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    wait(child, Duration::from_secs(60))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_run_creates_config_keys_and_asks_for_a_username() {
    let home = tempfile::tempdir().unwrap();
    let child = command(home.path(), &[]).spawn().unwrap();
    let (code, out, err) = wait(child, Duration::from_secs(120));
    let dir = home.path().join(".komlogd");
    let config = dir.join("komlogd.yaml");
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(
        err.contains(&format!(
            "Set username in configuration file. Edit {} and add `- username: <your user>`.",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        komlogd::config::TEMPLATE
    );
    assert!(dir.join("log").is_dir());

    let private = dir.join("key.priv");
    let public = dir.join("key.pub");
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o644);
    assert!(
        std::fs::read_to_string(&private)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let line = std::fs::read_to_string(&public).unwrap();
    assert!(line.starts_with("ssh-rsa ") && !line.ends_with('\n') && line.split(' ').count() == 2);
    let key = komlogd::keys::parse_openssh_public(&line).expect("key.pub parses");
    assert_eq!(rsa::traits::PublicKeyParts::size(&key) * 8, 4096);
    assert!(err.contains(&line), "the public key is shown: {err}");

    // Still no username: the same message, and the key pair is kept as it is.
    let child = command(home.path(), &[]).spawn().unwrap();
    let (code, _, err) = wait(child, Duration::from_secs(60));
    assert_eq!(code, 2);
    assert!(err.contains("Set username in configuration file."), "{err}");
    assert_eq!(std::fs::read_to_string(&public).unwrap(), line);
}

#[test]
fn a_real_job_feeds_an_impulse_until_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("komlogd.yaml");
    std::fs::write(
        &config,
        format!(
            "- username: me\n- logging:\n    level: debug\n\
             - job:\n    uri: host.disk\n    command: df -k\n    schedule: '* * * * *'\n\
             - impulses:\n    filename: {}\n    uris: [host.disk]\n",
            guest("df").display()
        ),
    )
    .unwrap();
    let c = config.display().to_string();
    let child = command(home.path(), &["-c", &c]).spawn().unwrap();
    let log = dir.join("log").join("komlogd.log");

    // The job runs at the next minute boundary (at most ~60 s away).
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < Duration::from_secs(90) {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("impulses answered") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(text.contains("komlogd running in local mode"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("stored=1 ") && l.ends_with("batch stored")),
        "{text}"
    );
    assert!(text.contains("fires=1 outputs="), "{text}");
    assert!(
        !text.contains("cranelift"),
        "debug is for komlogd's own lines, not its dependencies'"
    );

    // While it runs it holds the store: a query is answered by it...
    let q = command(home.path(), &["-c", &c, "query"]).spawn().unwrap();
    let (code, out, err) = wait(q, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("host.disk  datasource  1 sample, last "),
        "{out}"
    );
    // ...and an upload is handed to it through its control socket.
    let (code, out, err) = upload(home.path(), &c, &["-u", "x"], "hello");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("x: stored by the running agent"), "{out}");

    // SIGTERM stops it cleanly.
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _, err) = wait(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("SIGTERM received: stopping"), "{text}");
    assert!(text.contains("stopped cleanly"), "{text}");

    // What the job and the impulse wrote is in the store, stamped at the minute.
    let q = command(
        home.path(),
        &["-c", &c, "query", "host.disk.root.used_pct", "--json"],
    )
    .spawn()
    .unwrap();
    let (code, out, err) = wait(q, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["ts"].as_i64().unwrap() % 60_000_000, 0, "{row}");
    let pct = row["value"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&pct), "{row}");
}

/// GET `path` from `addr` with a plain HTTP/1.1 request; returns the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn status_metrics_and_uploads_reach_the_running_agent() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("komlogd.yaml");
    std::fs::write(
        &config,
        format!(
            "- username: me\n- metrics:\n    listen: {addr}\n\
             - impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n\
             - package:\n    install: {}\n    params: {{jobs: \"a every:1000\"}}\n\
             - package:\n    install: broken.wasm\n\
             - package:\n    install: off.wasm\n    enabled: false\n",
            guest("probe").display(),
            guest("probe_package").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("broken.wasm"), b"not a component").unwrap();
    let c = config.display().to_string();

    part("status before the agent runs", || {
        // Not running yet: status says so.
        let st = command(home.path(), &["-c", &c, "status"]).spawn().unwrap();
        let (code, _, err) = wait(st, Duration::from_secs(60));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("no komlogd agent is running"), "{err}");
    });

    let (child, socket) = part("the agent starts with its control socket", || {
        let mut child = command(home.path(), &["-c", &c]).spawn().unwrap();
        let socket = dir.join("komlogd.sock");
        common::child::wait_for_path(&mut child, &socket, Duration::from_secs(60));
        assert_eq!(mode(&socket), 0o600);
        (child, socket)
    });

    part("uploads through the control socket", || {
        let (code, out, err) = upload(
            home.path(),
            &c,
            &["-u", "x", "--datapoint", "--ts", "1000"],
            "5\n",
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("stored by the running agent"), "{out}");
        // The same upload again (its answer lost, say) is the same sample: it is
        // not fired again (the probe's fires stay at 1 below).
        let (code, out, err) = upload(
            home.path(),
            &c,
            &["-u", "x", "--datapoint", "--ts", "1000"],
            "5\n",
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            "1970-01-01T00:00:00.001000Z x: already stored by the running agent (the same value at this time); nothing fired or queued again\n"
        );
        // A refusal by the agent is reported as such: x holds datapoints now.
        let (code, _, err) = upload(home.path(), &c, &["-u", "x", "--ts", "2000"], "text");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("x: not uploaded"), "{err}");
    });

    let (report, table) = part("status: the impulse", || {
        // status: the impulse fired once on the uploaded sample.
        let mut report = serde_json::Value::Null;
        let start = Instant::now();
        // Bounded generously: a loaded machine starts the package's job late.
        while start.elapsed() < Duration::from_secs(120) {
            let st = command(home.path(), &["-c", &c, "status", "--json"])
                .spawn()
                .unwrap();
            let (code, out, err) = wait(st, Duration::from_secs(60));
            assert_eq!(code, 0, "{err}");
            report = serde_json::from_str(&out).unwrap();
            let probe_runs = report["packages"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "probe_package"))
                .and_then(|p| p["runs"].as_u64())
                .unwrap_or(0);
            if report["impulses"][0]["fires"] == 1 && probe_runs >= 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let probe = &report["impulses"][0];
        assert_eq!(probe["name"], "probe", "{report}");
        assert_eq!(probe["fires"], 1, "{report}");
        assert_eq!(probe["state"], "running", "{report}");
        assert_eq!(probe["version"].as_str().unwrap().len(), 64, "{report}");
        let st = command(home.path(), &["-c", &c, "status"]).spawn().unwrap();
        let (code, table, err) = wait(st, Duration::from_secs(60));
        assert_eq!(code, 0, "{err}");
        let row = table
            .lines()
            .find(|l| l.starts_with("probe "))
            .unwrap_or_else(|| panic!("{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "running", "{table}");
        assert_eq!(
            cols[2],
            &probe["version"].as_str().unwrap()[..12],
            "{table}"
        );
        assert_eq!(cols[3], "1", "{table}");
        (report, table)
    });

    let pkg_version = part("status: the packages", || {
        // Packages: running with its job, failed with the reason, disabled.
        let packages = report["packages"].as_array().expect("packages");
        let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["broken", "off", "probe_package"], "{report}");
        let (broken, off, pkg) = (&packages[0], &packages[1], &packages[2]);
        assert_eq!(pkg["state"], "running", "{report}");
        assert_eq!(pkg["version"].as_str().unwrap().len(), 64, "{report}");
        assert_eq!(pkg["jobs"], 1, "{report}");
        assert!(pkg["runs"].as_u64().unwrap() >= 1, "{report}");
        assert_eq!(pkg["failures"], 0, "{report}");
        assert!(pkg["last_run_ts"].as_i64().unwrap() > 0, "{report}");
        assert_eq!(broken["state"], "failed", "{report}");
        let reason = broken["reason"].as_str().unwrap();
        assert!(reason.contains("package not loaded"), "{report}");
        assert_eq!(broken["version"], serde_json::Value::Null, "{report}");
        assert_eq!(off["state"], "disabled", "{report}");
        assert_eq!(off["runs"], 0, "{report}");
        let row = table
            .lines()
            .find(|l| l.starts_with("probe_package "))
            .unwrap_or_else(|| panic!("{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "running", "{table}");
        assert_eq!(cols[2], &pkg["version"].as_str().unwrap()[..12], "{table}");
        assert_eq!(cols[3], "1", "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("off ") && l.split_whitespace().nth(1) == Some("disabled")),
            "{table}"
        );
        assert!(
            table.contains(&format!("package broken: failed: {reason}")),
            "{table}"
        );
        pkg["version"].as_str().unwrap().to_owned()
    });

    part("the same counters at /metrics", || {
        // Prometheus: the same counters.
        let metrics = http_get(&addr, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(
            metrics.contains("komlogd_impulse_fires_total{impulse=\"probe\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("komlogd_impulse_failures_total{impulse=\"probe\",kind=\"trap\"} 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "komlogd_package_info{{package=\"probe_package\",version=\"{}\",state=\"running\"}} 1\n",
                pkg_version
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "komlogd_package_info{package=\"broken\",version=\"\",state=\"failed\"} 1\n"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "komlogd_package_info{package=\"off\",version=\"\",state=\"disabled\"} 1\n"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains("komlogd_package_jobs{package=\"probe_package\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("komlogd_package_failures_total{package=\"probe_package\"} 0\n"),
            "{metrics}"
        );
        assert!(http_get(&addr, "/").starts_with("HTTP/1.1 404"));
    });

    part(
        "SIGTERM, then the store read by a stopped agent",
        move || {
            // SIGTERM: it stops and takes its socket with it.
            // SAFETY: kill(2) with the pid of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let (code, _, err) = wait(child, Duration::from_secs(30));
            assert_eq!(code, 0, "{err}");
            assert!(!socket.exists());
            let q = command(home.path(), &["-c", &c, "query", "probe.out", "--json"])
                .spawn()
                .unwrap();
            let (code, out, err) = wait(q, Duration::from_secs(60));
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("\"ts\":1000"), "{out}");
        },
    );
}

#[test]
fn a_chatty_impulse_writes_at_most_its_share_of_log_lines_a_call() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("komlogd.yaml");
    std::fs::write(
        &config,
        format!(
            "- username: me\n\
             - impulses:\n    name: chatty\n    filename: {}\n    uris: [x]\n    params: {{mode: chatty}}\n",
            guest("misbehave").display()
        ),
    )
    .unwrap();
    let c = config.display().to_string();
    // Two fires of 1,000 lines each; a one-shot upload logs to stderr.
    let mut log = String::new();
    for value in ["1", "2"] {
        use std::io::Write;
        let mut cmd = command(home.path(), &["-c", &c, "-u", "x", "--datapoint"]);
        cmd.env("KOMLOGD_LOG", "info").stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(value.as_bytes()).unwrap();
        drop(stdin);
        let (code, _, err) = wait(child, Duration::from_secs(60));
        assert_eq!(code, 0, "{err}");
        log.push_str(&err);
    }
    let written = log
        .lines()
        .filter(|l| l.contains("misbehave chatty "))
        .count();
    assert_eq!(written, 2 * 100, "100 lines a call are written");
    let held_back: Vec<_> = log
        .lines()
        .filter(|l| l.contains("900 more log lines of this call not written (at most 100 a call)"))
        .collect();
    assert_eq!(held_back.len(), 2, "{log}");
    assert!(
        held_back
            .iter()
            .all(|l| l.contains("WARN") && l.contains("impulse=\"chatty\"")),
        "{held_back:?}"
    );
    // The call itself went on: its output is stored.
    let q = command(
        home.path(),
        &["-c", &c, "query", "misbehave.chatty", "--json"],
    )
    .spawn()
    .unwrap();
    let (code, out, err) = wait(q, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"value\": 1.0") || out.contains("\"value\":1.0"),
        "{out}"
    );
}

/// A free TCP port on 127.0.0.1, as `127.0.0.1:PORT`.
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

#[test]
fn jobs_show_in_status_and_metrics() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("errjob.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'half done'\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let addr = free_addr();
    let config = dir.join("komlogd.yaml");
    let every = "    schedule: '* * * * *'\n";
    std::fs::write(
        &config,
        format!(
            "- username: me\n- metrics:\n    listen: {addr}\n\
             - job:\n    uri: host.ok\n    command: printf hello\n{every}\
             - job:\n    uri: host.err\n    command: ./errjob.sh\n{every}\
             - job:\n    uri: host.missing\n    command: no-such-komlogd-command -x\n{every}\
             - job:\n    uri: host.slow\n    command: sleep 30\n    timeout: 1s\n{every}\
             - job:\n    uri: host.off\n    command: printf never\n    enabled: no\n{every}"
        ),
    )
    .unwrap();
    let c = config.display().to_string();
    // Started from another directory: `./errjob.sh` is found beside komlogd.yaml.
    let child = command(home.path(), &["-c", &c])
        .current_dir(home.path())
        .spawn()
        .unwrap();

    // The jobs run at the next minute boundary (at most ~60 s away).
    let status_json = || {
        let st = command(home.path(), &["-c", &c, "status", "--json"])
            .spawn()
            .unwrap();
        let (code, out, err) = wait(st, Duration::from_secs(60));
        (code == 0).then(|| {
            serde_json::from_str::<serde_json::Value>(&out)
                .unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
        })
    };
    let mut report = serde_json::Value::Null;
    let start = Instant::now();
    loop {
        if let Some(r) = status_json() {
            report = r;
            let ran = report["jobs"].as_array().is_some_and(|jobs| {
                jobs.iter()
                    .filter(|j| j["runs"].as_u64().unwrap_or(0) >= 1 && j["bytes"] != 0)
                    .count()
                    == 2
                    && jobs
                        .iter()
                        .filter(|j| j["runs"].as_u64().unwrap_or(0) >= 1)
                        .count()
                        == 4
            });
            if ran {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(100),
            "the jobs did not run: {report}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let jobs = report["jobs"].as_array().unwrap();
    let job = |uri: &str| {
        jobs.iter()
            .find(|j| j["name"] == uri)
            .unwrap_or_else(|| panic!("no job {uri} in {report}"))
    };
    let names: Vec<&str> = jobs.iter().filter_map(|j| j["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "host.ok",
            "host.err",
            "host.missing",
            "host.slow",
            "host.off"
        ]
    );
    let ok = job("host.ok");
    assert_eq!(ok["schedules"], serde_json::json!(["* * * * *"]), "{ok}");
    assert_eq!(ok["last_exit_code"], 0, "{ok}");
    assert_eq!(ok["bytes"], 5, "{ok}");
    assert_eq!(ok["failures"], 0, "{ok}");
    let last = ok["last_run_ts"].as_i64().unwrap();
    assert_eq!(last % 60_000_000, 0, "{ok}");
    assert!(ok["next_run_ts"].as_i64().unwrap() > last, "{ok}");
    assert!(ok["last_duration_us"].as_u64().is_some(), "{ok}");
    let err = job("host.err");
    assert_eq!(err["last_exit_code"], 3, "{err}");
    assert_eq!(err["bytes"], "half done\n".len(), "{err}");
    assert_eq!(err["failures"], 1, "{err}");
    let missing = job("host.missing");
    assert_eq!(missing["last_outcome"], "not started", "{missing}");
    assert_eq!(missing["failures"], 1, "{missing}");
    let slow = job("host.slow");
    assert_eq!(
        (&slow["timeouts"], &slow["failures"]),
        (&1.into(), &1.into()),
        "{slow}"
    );
    let off = job("host.off");
    assert_eq!(
        (&off["state"], &off["runs"]),
        (&"disabled".into(), &0.into()),
        "{off}"
    );

    // The table: one row per job, then the last errors.
    let st = command(home.path(), &["-c", &c, "status"]).spawn().unwrap();
    let (code, table, stderr) = wait(st, Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("JOB ") && l.contains("NEXT RUN")),
        "{table}"
    );
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in {table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // JOB STATE RUNS FAILURES TIMEOUTS EXIT DURATION SENT …
    let err_row = row("host.err");
    assert_eq!(err_row[3..6], ["1", "0", "3"], "{table}");
    assert_eq!(err_row[7], "10B", "{table}");
    let slow_row = row("host.slow");
    assert_eq!(slow_row[3..6], ["1", "1", "-"], "{table}");
    assert_eq!(row("host.off")[1], "disabled", "{table}");
    assert!(
        table.contains("job host.missing: last error: ")
            && table.contains("job host.missing: cannot run"),
        "{table}"
    );

    // Prometheus: a series per job, labelled by its uri.
    let metrics = http_get(&addr, "/metrics");
    for line in [
        "komlogd_job_runs_total{uri=\"host.ok\"} ",
        "komlogd_job_failures_total{uri=\"host.err\"} 1\n",
        "komlogd_job_failures_total{uri=\"host.ok\"} 0\n",
        "komlogd_job_timeouts_total{uri=\"host.slow\"} 1\n",
        "komlogd_job_bytes_total{uri=\"host.ok\"} 5\n",
        "komlogd_job_runs_total{uri=\"host.off\"} 0\n",
        &format!(
            "komlogd_job_last_run_timestamp_seconds{{uri=\"host.ok\"}} {}\n",
            last / 1_000_000
        ),
        "komlogd_job_last_duration_seconds{uri=\"host.missing\"} ",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _, err) = wait(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
}

/// `komlogd status --json`, parsed; `None` while no agent answers.
fn status_json(home: &Path, config: &str) -> Option<serde_json::Value> {
    let st = command(home, &["-c", config, "status", "--json"])
        .spawn()
        .unwrap();
    let (code, out, err) = wait(st, Duration::from_secs(60));
    (code == 0).then(|| serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}")))
}

/// Poll `status --json` until `done` holds for it (bounded); returns it.
fn status_until(
    home: &Path,
    config: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(report) = status_json(home, config) {
            if done(&report) {
                return report;
            }
            last = report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s; last status: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The entry of impulse `name` in a status report.
fn impulse<'a>(report: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    report["impulses"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

#[test]
fn impulses_that_failed_to_load_show_as_failed_until_they_load() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let addr = free_addr();
    let config = dir.join("komlogd.yaml");
    let late = dir.join("late.wasm");
    std::fs::write(&late, b"not yet").unwrap();
    let base = format!(
        "- username: me\n- metrics:\n    listen: {addr}\n\
         - impulses:\n    name: probe\n    filename: {}\n    uris: [x]\n\
         - impulses:\n    name: late\n    filename: late.wasm\n    uris: [x]\n",
        guest("probe").display()
    );
    std::fs::write(&config, &base).unwrap();
    let c = config.display().to_string();
    let child = command(home.path(), &["-c", &c]).spawn().unwrap();

    // Failed at start: listed, with the reason, in --json, the table and /metrics.
    let report = status_until(home.path(), &c, "the agent answers", |_| true);
    let entry = impulse(&report, "late").unwrap_or_else(|| panic!("late missing: {report}"));
    assert_eq!(entry["state"], "failed", "{report}");
    let reason = entry["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("late.wasm"), "{report}");
    assert_eq!(entry["wasm"], late.display().to_string(), "{report}");
    assert_eq!(impulse(&report, "probe").unwrap()["state"], "running");
    let st = command(home.path(), &["-c", &c, "status"]).spawn().unwrap();
    let (code, table, err) = wait(st, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("late "))
        .unwrap_or_else(|| panic!("no row for late in {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..4], ["failed", "-", "0"], "{table}");
    assert!(
        table.contains(&format!("late: failed: {reason}\n")),
        "{table}"
    );
    let metrics = http_get(&addr, "/metrics");
    assert!(
        metrics
            .contains("komlogd_impulse_info{impulse=\"late\",version=\"\",state=\"failed\"} 1\n"),
        "{metrics}"
    );

    // An impulse added by a reload that does not load is listed the same way,
    // and goes when its block goes.
    std::fs::write(
        &config,
        format!("{base}- impulses:\n    name: added\n    filename: added.wasm\n    uris: [x]\n"),
    )
    .unwrap();
    let report = status_until(home.path(), &c, "added listed as failed", |r| {
        impulse(r, "added").is_some()
    });
    let added = impulse(&report, "added").unwrap();
    assert_eq!(added["state"], "failed", "{report}");
    assert!(
        added["reason"]
            .as_str()
            .is_some_and(|r| r.contains("added.wasm")),
        "{report}"
    );
    std::fs::write(&config, &base).unwrap();
    status_until(home.path(), &c, "added gone with its block", |r| {
        impulse(r, "added").is_none()
    });

    // Fixed on disk: it loads and becomes a running impulse like the others.
    let staged = dir.join("late.wasm.new");
    std::fs::copy(guest("probe"), &staged).unwrap();
    std::fs::rename(&staged, &late).unwrap();
    let report = status_until(home.path(), &c, "late running", |r| {
        impulse(r, "late").is_some_and(|i| i["state"] == "running")
    });
    let entry = impulse(&report, "late").unwrap();
    assert_eq!(entry["version"].as_str().unwrap().len(), 64, "{report}");
    assert!(entry.get("reason").is_none(), "{report}");
    let names: Vec<&str> = report["impulses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["probe", "late"], "listed once: {report}");
    let metrics = http_get(&addr, "/metrics");
    assert!(
        metrics.contains(&format!(
            "komlogd_impulse_info{{impulse=\"late\",version=\"{}\",state=\"running\"}} 1\n",
            entry["version"].as_str().unwrap()
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("state=\"failed\""), "{metrics}");
    assert!(
        metrics.contains("komlogd_impulse_fires_total{impulse=\"late\"} 0\n"),
        "{metrics}"
    );

    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _, err) = wait(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
}

/// Every `query` form, as (exit status, stdout, stderr).
fn queries(home: &Path, config: &str) -> Vec<(i32, String, String)> {
    let forms: &[&[&str]] = &[
        &["query"],
        &["query", "--json"],
        &["query", "x"],
        &["query", "x", "-n", "2"],
        &["query", "x", "-n", "2", "--json"],
        &["query", "x", "-n", "0"],
        &["query", "t", "--json"],
        &["query", "t"],
        &["query", "nothing.here"],
        &[
            "query",
            "x",
            "--from",
            "1970-01-01T00:00:00.001Z",
            "--to",
            "1970-01-01T00:00:00.002Z",
        ],
        &["query", "x", "--to", "-1h", "-n", "1", "--json"],
        &["query", "x", "--from", "now"],
        &["query", "--from", "-1h"],
    ];
    forms
        .iter()
        .map(|args| {
            let q = command(home, &[&["-c", config], *args].concat())
                .spawn()
                .unwrap();
            wait(q, Duration::from_secs(60))
        })
        .collect()
}

#[test]
fn a_running_agent_answers_queries_as_its_stopped_store_does() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("komlogd.yaml");
    std::fs::write(&config, "- username: me\n").unwrap();
    let c = config.display().to_string();
    let mut child = command(home.path(), &["-c", &c]).spawn().unwrap();
    let socket = dir.join("komlogd.sock");
    common::child::wait_for_path(&mut child, &socket, Duration::from_secs(60));
    for (args, input) in [
        (&["-u", "x", "--datapoint", "--ts", "1000"][..], "5\n"),
        (
            &["-u", "x", "--datapoint", "--ts", "2000"],
            "0.30000000000000004",
        ),
        (&["-u", "x", "--datapoint", "--ts", "-3000"], "-1e-300"),
        (&["-u", "t", "--ts", "1500"], "one line"),
        (
            &["-u", "t", "--ts", "2500"],
            "two\nlines \"quoted\" \u{e9}\n",
        ),
    ] {
        let (code, out, err) = upload(home.path(), &c, args, input);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("stored by the running agent"), "{out}");
    }
    let running = queries(home.path(), &c);

    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _, err) = wait(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    assert!(!socket.exists());
    let stopped = queries(home.path(), &c);

    assert_eq!(running, stopped);
    assert_eq!(
        stopped[3],
        (
            0,
            "1970-01-01T00:00:00.001000Z  x  5\n1970-01-01T00:00:00.002000Z  x  0.30000000000000004\n"
                .to_owned(),
            String::new()
        )
    );
    assert!(
        stopped[0].1.contains("x  datapoint  3 samples, last "),
        "{stopped:?}"
    );
    assert_eq!(stopped[5], (0, String::new(), String::new()));
    assert_eq!(
        stopped[8],
        (
            1,
            String::new(),
            "komlogd: no samples stored at nothing.here\n".to_owned()
        )
    );
    assert_eq!(stopped[9], stopped[3]);
    let rows: serde_json::Value = serde_json::from_str(&stopped[10].1).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["ts"], 2000, "{rows}");
    assert_eq!(stopped[11], (0, String::new(), String::new()));
    assert_eq!(stopped[12].0, 2, "{:?}", stopped[12]);
}
