//! Jobs with real commands (`sh`, `printf`, `sleep`, `yes`, `head`), one at a time
//! with [`run_job_once`] and together under [`run_jobs`] with a [`ManualClock`].
//! Every wait is bounded so that a failing test cannot hang.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::scheduler::report;
use super::*;
use crate::config::JobConfig;
use crate::model::{MAX_DATASOURCE_BYTES, Sample, Value};

/// The bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(BOUND, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Poll `cond` every 10 ms until it holds (bounded).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn job(uri: &str, argv: &[&str], schedules: &[&str], timeout_us: Option<u64>) -> JobConfig {
    JobConfig {
        line: 7,
        file: PathBuf::from("/etc/komlogd/komlogd.yaml"),
        uri: uri.to_owned(),
        command: argv.join(" "),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        enabled: true,
        schedules: schedules.iter().map(|s| (*s).to_owned()).collect(),
        timeout_us,
        supplies: Vec::new(),
    }
}

fn sh(uri: &str, script: &str) -> JobConfig {
    job(uri, &["sh", "-c", script], &["* * * * *"], None)
}

/// 2026-01-01 00:00:30 UTC, where the test clocks start.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap()
}

/// Minute `n` of 2026-01-01 00:xx UTC.
fn minute(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, n, 0).unwrap()
}

fn text(sample: &Sample) -> &str {
    match &sample.value {
        Value::Datasource(text) => text,
        Value::Datapoint(v) => panic!("a datapoint {v}"),
    }
}

/// Log lines captured from `tracing` on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture the logs of this thread (every task of a current-thread runtime).
fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Whether process `pid` is gone (no longer exists, or is a zombie waiting for a
/// parent that is not ours to reap it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).expect("the pid file");
    text.trim().parse().expect("a pid")
}

/// `run_jobs` running on its own task, with its channel and controls.
struct Harness {
    clock: Arc<ManualClock>,
    samples: mpsc::Receiver<Vec<Sample>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(jobs: Vec<JobConfig>) -> Self {
        Self::start_board(JobBoard::new(jobs))
    }

    /// Run the jobs of `board`, reporting there.
    fn start_board(board: JobBoard) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let (sink, samples) = mpsc::channel(16);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run_job_board(board, clock.clone(), sink, shutdown));
        Harness {
            clock,
            samples,
            stop,
            task,
        }
    }

    /// Wait until the scheduler sleeps until `at`, then move the clock there.
    async fn tick(&self, at: DateTime<Utc>) {
        bounded(
            &format!("the scheduler to sleep until {at}"),
            self.clock.sleeping_until(at),
        )
        .await;
        self.clock.set(at);
    }

    async fn next_sample(&mut self) -> Sample {
        let mut batch = bounded("a sample", self.samples.recv())
            .await
            .expect("the channel is open");
        assert_eq!(batch.len(), 1, "one sample per run");
        batch.remove(0)
    }

    /// Shut down and wait for `run_jobs` to return; nothing more may have been sent.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.stop.send_replace(true);
        bounded("run_jobs to return", self.task)
            .await
            .expect("no panic");
        let took = started.elapsed();
        assert!(
            self.samples.try_recv().is_err(),
            "no sample left in the channel"
        );
        took
    }
}

#[tokio::test]
async fn every_minute_three_samples_stamped_with_their_minute() {
    let mut disabled = job("host.never", &["printf", "never"], &["* * * * *"], None);
    disabled.enabled = false;
    let mut h = Harness::start(vec![
        job(
            "host.up",
            &["printf", "up %s\\n", "42"],
            &["* * * * *"],
            None,
        ),
        disabled,
    ]);
    for n in 1..=3 {
        h.tick(minute(n)).await;
        let sample = h.next_sample().await;
        assert_eq!(sample.uri, "host.up");
        assert_eq!(sample.ts, minute(n).timestamp_micros());
        assert_eq!(text(&sample), "up 42\n");
    }
    assert_eq!(minute(3).timestamp_micros(), 1_767_225_780_000_000);
    h.stop().await;
}

#[tokio::test]
async fn a_run_still_going_skips_the_next_minute_and_other_jobs_go_on() {
    let (logs, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let release = dir.path().join("release");
    let script = format!(
        "echo $$ >> '{}'; while [ ! -e '{}' ]; do sleep 0.01; done; echo ran",
        starts.display(),
        release.display()
    );
    let mut h = Harness::start(vec![
        sh("slow", &script),
        job("fast", &["printf", "quick"], &["* * * * *"], None),
    ]);
    let start_count = || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    h.tick(minute(1)).await;
    wait_until("the first start", || start_count() == 1).await;
    let fast = h.next_sample().await;
    assert_eq!(
        (fast.uri.as_str(), fast.ts),
        ("fast", minute(1).timestamp_micros())
    );

    // Minute 2 comes while the slow run waits: skipped; the other job runs.
    h.tick(minute(2)).await;
    let fast = h.next_sample().await;
    assert_eq!(
        (fast.uri.as_str(), fast.ts),
        ("fast", minute(2).timestamp_micros())
    );
    bounded("minute 2 to be handled", h.clock.sleeping_until(minute(3))).await;
    wait_until("the skip to be logged", || {
        logs.count("job slow: previous run still going, skipping the run of 2026-01-01") == 1
    })
    .await;
    assert_eq!(start_count(), 1, "no second start while the first runs");

    // Let the first run end: its sample carries minute 1.
    std::fs::write(&release, "").unwrap();
    let slow = h.next_sample().await;
    assert_eq!(
        (slow.uri.as_str(), slow.ts),
        ("slow", minute(1).timestamp_micros())
    );
    assert_eq!(text(&slow), "ran\n");

    // Minute 3 runs again.
    h.tick(minute(3)).await;
    let mut got = [h.next_sample().await, h.next_sample().await];
    got.sort_by(|a, b| a.uri.cmp(&b.uri));
    assert_eq!(
        got.iter()
            .map(|s| (s.uri.as_str(), s.ts))
            .collect::<Vec<_>>(),
        [
            ("fast", minute(3).timestamp_micros()),
            ("slow", minute(3).timestamp_micros())
        ]
    );
    assert_eq!(start_count(), 2);
    h.stop().await;
    assert_eq!(logs.count("previous run still going"), 1);
}

#[tokio::test]
async fn a_stderr_flood_does_not_block_the_command() {
    let (logs, _guard) = capture();
    // 100,000 lines of 50 bytes = 5,000,000 bytes on stderr, then `done` on stdout.
    let flood = sh(
        "flood",
        "yes 0123456789012345678901234567890123456789012345678 | head -c 5000000 >&2; echo done",
    );
    let outcome = bounded("the flooding command", run_job_once(&flood, minute(1))).await;
    let JobOutcome::Sample {
        sample, warnings, ..
    } = outcome
    else {
        panic!("a sample, got {outcome:?}");
    };
    assert_eq!(text(&sample), "done\n");
    assert_eq!(sample.ts, minute(1).timestamp_micros());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        logs.count("job flood: stderr: 0123456789012345678901234567890123456789012345678\n"),
        STDERR_LINES_LOGGED as usize
    );
    assert_eq!(
        logs.count("job flood: 99936 more stderr lines of this run were not logged"),
        1
    );
}

#[tokio::test]
async fn long_stderr_lines_are_cut() {
    let (logs, _guard) = capture();
    let long = sh(
        "long",
        "head -c 5000 /dev/zero | tr '\\0' x >&2; printf '\\nlast' >&2",
    );
    let outcome = bounded("the command", run_job_once(&long, minute(1))).await;
    assert!(matches!(outcome, JobOutcome::NoOutput { status } if status.success()));
    let cut = format!("job long: stderr: {}…\n", "x".repeat(STDERR_LINE_BYTES));
    assert_eq!(logs.count(&cut), 1, "{}", logs.text());
    assert_eq!(logs.count("job long: stderr: last\n"), 1);
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("sh.pid");
    let child = dir.path().join("sleep.pid");
    let script = format!(
        "echo $$ > '{}'; sleep 30 & echo $! > '{}'; wait",
        shell.display(),
        child.display()
    );
    let mut timed = sh("slow", &script);
    timed.timeout_us = Some(200_000);
    let started = Instant::now();
    let outcome = bounded("the timed-out command", run_job_once(&timed, minute(1))).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        outcome,
        JobOutcome::TimedOut {
            after: Duration::from_millis(200)
        }
    );
    let (shell, child) = (read_pid(&shell), read_pid(&child));
    wait_until("the shell and its sleep to be gone", || {
        gone(shell) && gone(child)
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_run_sends_nothing_and_the_job_goes_on() {
    let (logs, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let script = format!(
        "echo partial; if [ ! -e '{0}' ]; then touch '{0}'; sleep 30; fi; echo second",
        first.display()
    );
    let mut timed = sh("timed", &script);
    timed.timeout_us = Some(200_000);
    let mut h = Harness::start(vec![timed]);
    h.tick(minute(1)).await;
    wait_until("the timeout to be logged", || {
        logs.count("was still going after its timeout of 200ms; killed it, nothing sent") == 1
    })
    .await;
    assert!(logs.text().contains("job timed: the run of 2026-01-01"));
    assert!(
        h.samples.try_recv().is_err(),
        "nothing sent for a killed run"
    );
    h.tick(minute(2)).await;
    let sample = h.next_sample().await;
    assert_eq!(
        (sample.ts, text(&sample)),
        (minute(2).timestamp_micros(), "partial\nsecond\n")
    );
    h.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_replaced_with_a_warning() {
    let bad = job("bytes", &["printf", "a\\377b\\n"], &["* * * * *"], None);
    let outcome = bounded("printf", run_job_once(&bad, minute(1))).await;
    let JobOutcome::Sample {
        sample, warnings, ..
    } = outcome
    else {
        panic!("a sample, got {outcome:?}");
    };
    assert_eq!(text(&sample), "a\u{FFFD}b\n");
    assert_eq!(
        warnings,
        [
            "job bytes: the output is not valid UTF-8 (first invalid byte at offset 1); invalid bytes were replaced with U+FFFD"
        ]
    );
}

#[tokio::test]
async fn invalid_utf8_does_not_stop_the_job() {
    let (logs, _guard) = capture();
    let mut h = Harness::start(vec![job(
        "bytes",
        &["printf", "\\377"],
        &["* * * * *"],
        None,
    )]);
    for n in 1..=2 {
        h.tick(minute(n)).await;
        assert_eq!(text(&h.next_sample().await), "\u{FFFD}");
    }
    h.stop().await;
    assert_eq!(
        logs.count("job bytes: the output is not valid UTF-8"),
        2,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn oversized_output_is_dropped_with_its_size() {
    let big = job(
        "big",
        &["head", "-c", "200000", "/dev/zero"],
        &["* * * * *"],
        None,
    );
    let outcome = bounded("head", run_job_once(&big, minute(1))).await;
    let JobOutcome::TooLarge { bytes, status } = outcome else {
        panic!("too large, got {outcome:?}");
    };
    assert_eq!(bytes, 200_000);
    assert!(status.success());

    // The limit itself is fine; one byte more is not.
    let at_limit = job(
        "edge",
        &["head", "-c", "131072", "/dev/zero"],
        &["* * * * *"],
        None,
    );
    let outcome = bounded("head", run_job_once(&at_limit, minute(1))).await;
    assert!(
        matches!(&outcome, JobOutcome::Sample { sample, .. } if text(sample).len() == MAX_DATASOURCE_BYTES)
    );
    let over = job(
        "edge",
        &["head", "-c", "131073", "/dev/zero"],
        &["* * * * *"],
        None,
    );
    let outcome = bounded("head", run_job_once(&over, minute(1))).await;
    assert!(matches!(
        outcome,
        JobOutcome::TooLarge { bytes: 131_073, .. }
    ));

    // 20 MB: read and thrown away, the command is not blocked.
    let huge = job(
        "huge",
        &["head", "-c", "20000000", "/dev/zero"],
        &["* * * * *"],
        None,
    );
    let outcome = bounded("head", run_job_once(&huge, minute(1))).await;
    assert!(
        matches!(outcome, JobOutcome::TooLarge { bytes: 20_000_000, status } if status.success())
    );

    // The warning gives the size and the limit.
    let (logs, _guard) = capture();
    let dropped = report(
        &big,
        minute(1),
        JobOutcome::TooLarge {
            bytes: 200_000,
            status,
        },
    );
    assert!(dropped.is_none());
    assert!(logs.text().contains(" WARN "), "{}", logs.text());
    assert!(
        logs.text()
            .contains("job big: the output of the run of 2026-01-01"),
        "{}",
        logs.text()
    );
    assert!(
        logs.text()
            .contains(" is 200000 bytes, over the datasource limit of 131072 bytes; dropped\n")
    );
}

#[tokio::test]
async fn invalid_utf8_that_grows_past_the_limit_is_dropped() {
    // 131,072 bytes of 0xff: each becomes U+FFFD (3 bytes).
    let grows = sh("grows", "head -c 131072 /dev/zero | tr '\\0' '\\377'");
    let outcome = bounded("the command", run_job_once(&grows, minute(1))).await;
    assert!(
        matches!(outcome, JobOutcome::TooLarge { bytes: 393_216, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_non_zero_exit_still_sends_its_output() {
    let failing = sh("fails", "echo partial; echo oops >&2; exit 3");
    let outcome = bounded("the command", run_job_once(&failing, minute(1))).await;
    let JobOutcome::Sample {
        sample, warnings, ..
    } = outcome
    else {
        panic!("a sample, got {outcome:?}");
    };
    assert_eq!(text(&sample), "partial\n");
    assert_eq!(
        warnings,
        [
            "job fails: \"sh -c echo partial; echo oops >&2; exit 3\" exited with status 3; its output is sent anyway"
        ]
    );

    let silent = sh("silent", "exit 4");
    let outcome = bounded("the command", run_job_once(&silent, minute(1))).await;
    assert!(matches!(outcome, JobOutcome::NoOutput { status } if status.code() == Some(4)));
    let quiet = job("quiet", &["true"], &["* * * * *"], None);
    let outcome = bounded("the command", run_job_once(&quiet, minute(1))).await;
    assert!(matches!(outcome, JobOutcome::NoOutput { status } if status.success()));
}

#[tokio::test]
async fn a_missing_program_fails_to_spawn_and_the_job_stays_scheduled() {
    let (logs, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("report.sh");
    let path = program.to_str().unwrap().to_owned();
    let missing = job("later", &[&path, "--now"], &["* * * * *"], None);

    let outcome = bounded("spawn", run_job_once(&missing, minute(1))).await;
    let JobOutcome::SpawnFailed(message) = outcome else {
        panic!("a spawn failure, got {outcome:?}");
    };
    assert!(
        message.starts_with(&format!(
            "/etc/komlogd/komlogd.yaml:7: job later: cannot run \"{path} --now\" (program \"{path}\"): No such file or directory"
        )),
        "{message}"
    );

    let mut h = Harness::start(vec![missing]);
    h.tick(minute(1)).await;
    wait_until("the spawn failure to be logged", || {
        logs.count("ERROR") == 1
    })
    .await;
    assert!(
        logs.text()
            .contains("No such file or directory (os error 2); the job stays scheduled")
    );

    // Not executable: also a spawn failure.
    std::fs::write(&program, "#!/bin/sh\necho \"ok $1\"\n").unwrap();
    h.tick(minute(2)).await;
    wait_until("the second spawn failure", || logs.count("ERROR") == 2).await;
    assert!(logs.text().contains("Permission denied"), "{}", logs.text());

    // The program appears: the next minute runs it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    h.tick(minute(3)).await;
    let sample = h.next_sample().await;
    assert_eq!(
        (sample.ts, text(&sample)),
        (minute(3).timestamp_micros(), "ok --now\n")
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_kills_running_commands_and_returns() {
    let (logs, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let child = dir.path().join("sleep.pid");
    let script = format!("sleep 30 & echo $! > '{}'; wait", child.display());
    let h = Harness::start(vec![sh("long", &script)]);
    h.tick(minute(1)).await;
    wait_until("the pid file", || {
        std::fs::read_to_string(&child).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let pid = read_pid(&child);
    assert!(!gone(pid));
    let took = h.stop().await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    wait_until("the sleep to be gone", || gone(pid)).await;
    assert!(logs.text().contains("job long: the run of 2026-01-01"));
    assert!(logs.text().contains("was killed by shutdown; nothing sent"));
}

#[tokio::test]
async fn a_late_wake_up_skips_the_missed_minutes() {
    let (logs, _guard) = capture();
    let mut h = Harness::start(vec![job("late", &["printf", "x"], &["* * * * *"], None)]);
    bounded("the first sleep", h.clock.sleeping_until(minute(1))).await;
    // The clock jumps from 00:00:30 to 00:05:00: minute 1 is 4 minutes late.
    h.clock.set(minute(5));
    h.tick(minute(6)).await;
    let sample = h.next_sample().await;
    assert_eq!(sample.ts, minute(6).timestamp_micros());
    assert!(
        logs.text()
            .contains("job late: woke up 240s after the run of 2026-01-01")
    );
    h.stop().await;
}

#[tokio::test]
async fn stopping_before_anything_runs_returns_at_once() {
    let h = Harness::start(vec![sh("idle", "echo never")]);
    bounded("the first sleep", h.clock.sleeping_until(minute(1))).await;
    h.stop().await;
    // No jobs at all: returns at once too.
    let (sink, _samples) = mpsc::channel(1);
    let (_stop, shutdown) = watch::channel(false);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    bounded(
        "run_jobs with no jobs",
        run_jobs(Vec::new(), clock, sink, shutdown),
    )
    .await;
}

/// A script beside a komlogd.yaml in a fresh directory, and the configuration
/// naming it as `command`.
fn config_with_script(command: &str, script: &str) -> (tempfile::TempDir, crate::config::Config) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(script);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, "#!/bin/sh\necho \"ran $0\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = dir.path().join("komlogd.yaml");
    std::fs::write(
        &yaml,
        format!("- job:\n    uri: rel\n    command: {command}\n    schedule: '* * * * *'\n"),
    )
    .unwrap();
    let config = crate::config::Config::load(&yaml).unwrap();
    (dir, config)
}

#[tokio::test]
async fn a_relative_command_runs_from_the_configuration_folder_not_the_working_directory() {
    for (command, script) in [("./errjob.sh", "errjob.sh"), ("bin/job", "bin/job")] {
        let (dir, config) = config_with_script(command, script);
        let cwd = std::env::current_dir().unwrap();
        assert!(!cwd.starts_with(dir.path()), "the test runs elsewhere");
        assert!(!cwd.join(script).exists());
        let outcome = bounded("the job", run_job_once(&config.jobs[0], minute(1))).await;
        let JobOutcome::Sample { sample, .. } = outcome else {
            panic!("{command}: a sample, got {outcome:?}");
        };
        let ran = dir.path().join(script);
        assert_eq!(
            text(&sample),
            format!("ran {}\n", ran.display()),
            "{command}"
        );
    }
}

#[tokio::test]
async fn the_board_shows_each_jobs_schedule_runs_exit_status_failures_timeouts_and_bytes() {
    let mut timed = sh("slow", "sleep 30");
    timed.timeout_us = Some(200_000);
    let mut off = job("off", &["printf", "never"], &["0 * * * *"], None);
    off.enabled = false;
    let board = JobBoard::new(vec![
        job("ok", &["printf", "12345"], &["* * * * *"], None),
        sh("bad", "echo half; exit 3"),
        job("gone", &["/nonexistent/komlogd-job"], &["* * * * *"], None),
        timed,
        off,
        job("ok", &["printf", "again"], &["*/5 * * * *"], None),
    ]);
    let names: Vec<String> = board.snapshot().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["ok", "bad", "gone", "slow", "off", "ok#2"]);
    let mut h = Harness::start_board(board.clone());
    h.tick(minute(1)).await;
    let mut sent = [h.next_sample().await, h.next_sample().await];
    sent.sort_by(|a, b| a.uri.cmp(&b.uri));
    assert_eq!(text(&sent[0]), "half\n");
    assert_eq!(text(&sent[1]), "12345");
    let ran = |j: &JobReport| j.runs == 1 && j.state == "scheduled";
    wait_until("the four runs of minute 1 to be counted", || {
        let jobs = board.snapshot();
        [0, 1, 2, 3].iter().all(|&i| ran(&jobs[i]))
    })
    .await;
    // The bytes are counted once the sample is handed over.
    wait_until("the bytes sent", || board.snapshot()[1].bytes == 5).await;
    let jobs = board.snapshot();
    let (ok, bad, gone, slow, off, every5) =
        (&jobs[0], &jobs[1], &jobs[2], &jobs[3], &jobs[4], &jobs[5]);
    let m1 = Some(minute(1).timestamp_micros());
    let m2 = Some(minute(2).timestamp_micros());

    assert_eq!(ok.schedules, ["* * * * *"]);
    assert_eq!((ok.last_run_ts, ok.next_run_ts), (m1, m2));
    assert_eq!(ok.last_outcome.as_deref(), Some("sent"));
    assert_eq!((ok.last_exit_code, ok.last_signal), (Some(0), None));
    assert!(ok.last_duration_us.is_some());
    assert_eq!((ok.failures, ok.timeouts), (0, 0));
    assert_eq!((ok.samples, ok.bytes), (1, 5));
    assert_eq!(ok.last_error, None);

    assert_eq!(bad.last_exit_code, Some(3));
    assert_eq!(
        (bad.failures, bad.timeouts, bad.samples, bad.bytes),
        (1, 0, 1, 5)
    );
    assert_eq!(
        bad.last_error.as_deref(),
        Some("\"sh -c echo half; exit 3\" exited with status 3; its output was sent anyway")
    );

    assert_eq!(gone.last_outcome.as_deref(), Some("not started"));
    assert_eq!(
        (gone.last_exit_code, gone.failures, gone.samples),
        (None, 1, 0)
    );
    assert!(
        gone.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("/etc/komlogd/komlogd.yaml:7: job gone: cannot run")),
        "{gone:?}"
    );

    assert_eq!(slow.last_outcome.as_deref(), Some("timed out"));
    assert_eq!((slow.failures, slow.timeouts, slow.bytes), (1, 1, 0));

    assert_eq!(
        (off.state.as_str(), off.runs, off.next_run_ts),
        ("disabled", 0, None)
    );
    assert_eq!(every5.next_run_ts, Some(minute(5).timestamp_micros()));
    assert_eq!((every5.runs, every5.last_run_ts), (0, None));

    let metrics = crate::agent::status::jobs_prometheus_text(&board);
    for line in [
        "komlogd_job_runs_total{uri=\"ok\"} 1\n",
        "komlogd_job_runs_total{uri=\"ok#2\"} 0\n",
        "komlogd_job_failures_total{uri=\"bad\"} 1\n",
        "komlogd_job_failures_total{uri=\"ok\"} 0\n",
        "komlogd_job_timeouts_total{uri=\"slow\"} 1\n",
        "komlogd_job_bytes_total{uri=\"ok\"} 5\n",
        "komlogd_job_runs_total{uri=\"off\"} 0\n",
        &format!(
            "komlogd_job_last_run_timestamp_seconds{{uri=\"gone\"}} {}\n",
            minute(1).timestamp()
        ),
        "# TYPE komlogd_job_last_duration_seconds gauge\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("komlogd_job_last_duration_seconds{uri=\"slow\"} "));
    assert!(!metrics.contains("komlogd_job_last_duration_seconds{uri=\"off\"}"));
    h.stop().await;
    assert!(board.snapshot().iter().all(|j| j.next_run_ts.is_none()));
}
