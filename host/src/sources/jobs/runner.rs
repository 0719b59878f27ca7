//! One run of a job: spawn its command without a shell, read its output, and
//! classify what happened as a [`JobOutcome`].
//!
//! * The command runs with stdin from `/dev/null`, the agent's environment and
//!   working directory, in a **process group of its own**. Its program is
//!   `argv[0]` as the configuration resolved it (a relative path is joined to
//!   the declaring file's folder; a bare name is looked up in `PATH`). A timeout or a shutdown
//!   kills the whole group with SIGKILL, so children of the command die too
//!   (unless they moved to another group or session, as daemons do).
//! * **stdout** is the sample. At most [`MAX_DATASOURCE_BYTES`] + 1 bytes are kept in
//!   memory; the rest is read and thrown away so the command never blocks on a full
//!   pipe, and only its size is kept.
//! * **stderr** is read at the same time, line by line, and logged at warn with the
//!   job's uri: the first [`STDERR_LINES_LOGGED`] lines of a run (each cut to
//!   [`STDERR_LINE_BYTES`] bytes), then one line with the count of the rest.
//! * A run ends when stdout and stderr are closed **and** the command has exited. A
//!   command that leaves a background process holding its stdout or stderr open
//!   keeps its run going until that process closes them, or the timeout fires.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::config::JobConfig;
use crate::model::{MAX_DATASOURCE_BYTES, Sample, Value};

/// How many stderr lines of one run are logged.
pub const STDERR_LINES_LOGGED: u64 = 64;

/// The longest stderr line logged, in bytes; longer lines are cut (and marked `…`).
pub const STDERR_LINE_BYTES: usize = 1024;

/// How long to wait for a killed command to be reaped before giving up on it (it
/// is then left to tokio's background reaper).
const REAP_BOUND: Duration = Duration::from_secs(5);

/// The size of one read from a pipe.
const CHUNK: usize = 16 * 1024;

/// What one run of a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The command printed something: its stdout, as one datasource sample at the
    /// job's uri stamped with the scheduled minute, to be sent. It is sent even if
    /// the command exited with a non-zero status; `warnings` then says so, and also
    /// says when invalid UTF-8 was replaced with U+FFFD.
    Sample {
        /// The sample to send.
        sample: Sample,
        /// Warnings to log with it (each names the job's uri).
        warnings: Vec<String>,
        /// How the command exited.
        status: ExitStatus,
    },
    /// The command printed nothing on stdout: nothing is sent (as in the original
    /// agent, an empty output is not a sample).
    NoOutput {
        /// How it exited.
        status: ExitStatus,
    },
    /// stdout was larger than a datasource sample may be ([`MAX_DATASOURCE_BYTES`]):
    /// nothing is sent.
    TooLarge {
        /// Its size in bytes (after invalid UTF-8 was replaced, when that made it grow
        /// past the limit).
        bytes: u64,
        /// How the command exited.
        status: ExitStatus,
    },
    /// The command ran past the job's timeout and was killed with its process group:
    /// nothing is sent.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The command was killed with its process group because the agent is shutting
    /// down: nothing is sent.
    Interrupted,
    /// The command could not be started (not found, not executable, …). The message
    /// names the job's file:line, its uri and command, and the system error.
    SpawnFailed(String),
    /// Something else went wrong (reading a pipe, waiting for the process, building
    /// the sample): nothing is sent. The message names the job.
    Error(String),
}

/// Run `job` once, for the minute `scheduled`, and wait for the command to end (or
/// for its timeout). Its stderr is logged as it arrives; nothing else is logged or
/// sent: the caller reports the outcome and sends the sample.
pub async fn run_job_once(job: &JobConfig, scheduled: DateTime<Utc>) -> JobOutcome {
    run_job(job, scheduled, std::future::pending()).await
}

/// [`run_job_once`], killing the command (and returning
/// [`JobOutcome::Interrupted`]) when `cancel` completes first.
pub(crate) async fn run_job(
    job: &JobConfig,
    scheduled: DateTime<Utc>,
    cancel: impl Future<Output = ()>,
) -> JobOutcome {
    let Some((program, args)) = job.argv.split_first() else {
        return JobOutcome::SpawnFailed(format!(
            "{}:{}: job {}: the command {:?} has no program to run",
            job.file.display(),
            job.line,
            job.uri,
            job.command
        ));
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return JobOutcome::SpawnFailed(format!(
                "{}:{}: job {}: cannot run {:?} (program {program:?}): {e}",
                job.file.display(),
                job.line,
                job.uri,
                job.command
            ));
        }
    };
    let mut child = GroupChild(child);
    let (Some(stdout), Some(stderr)) = (child.0.stdout.take(), child.0.stderr.take()) else {
        return JobOutcome::Error(format!("job {}: the command's pipes are missing", job.uri));
    };

    let timeout = job.timeout_us.map(Duration::from_micros);
    let ended = {
        let collect = async {
            let (out, ()) = tokio::join!(
                read_capped(stdout, MAX_DATASOURCE_BYTES),
                log_stderr(stderr, &job.uri)
            );
            let status = child.0.wait().await;
            (out, status)
        };
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            collected = collect => Ended::Collected(collected),
            () = deadline => Ended::TimedOut,
            () = cancel => Ended::Cancelled,
        }
    };
    let (out, status) = match ended {
        Ended::Collected(collected) => collected,
        Ended::TimedOut | Ended::Cancelled => {
            child.kill_and_reap(&job.uri).await;
            return match (ended, timeout) {
                (Ended::TimedOut, Some(after)) => JobOutcome::TimedOut { after },
                _ => JobOutcome::Interrupted,
            };
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            return JobOutcome::Error(format!("job {}: cannot wait for the command: {e}", job.uri));
        }
    };
    let (bytes, total) = match out {
        Ok(out) => out,
        Err(e) => {
            return JobOutcome::Error(format!(
                "job {}: cannot read the command's output: {e}",
                job.uri
            ));
        }
    };
    classify(job, scheduled, bytes, total, status)
}

/// How the wait for a command ended.
enum Ended<T> {
    /// stdout and stderr closed and the command exited: what was read, and its status.
    Collected(T),
    /// The job's timeout came first.
    TimedOut,
    /// The cancel signal came first.
    Cancelled,
}

/// Turn a finished run's stdout into its outcome.
fn classify(
    job: &JobConfig,
    scheduled: DateTime<Utc>,
    bytes: Vec<u8>,
    total: u64,
    status: ExitStatus,
) -> JobOutcome {
    if total > MAX_DATASOURCE_BYTES as u64 {
        return JobOutcome::TooLarge {
            bytes: total,
            status,
        };
    }
    if bytes.is_empty() {
        return JobOutcome::NoOutput { status };
    }
    let mut warnings = Vec::new();
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            warnings.push(format!(
                "job {}: the output is not valid UTF-8 (first invalid byte at offset {at}); invalid bytes were replaced with U+FFFD",
                job.uri
            ));
            text
        }
    };
    if text.len() > MAX_DATASOURCE_BYTES {
        return JobOutcome::TooLarge {
            bytes: text.len() as u64,
            status,
        };
    }
    if !status.success() {
        warnings.push(format!(
            "job {}: {:?} {}; its output is sent anyway",
            job.uri,
            job.command,
            describe_status(status)
        ));
    }
    match Sample::new(
        &job.uri,
        scheduled.timestamp_micros(),
        Value::Datasource(text),
    ) {
        Ok(sample) => JobOutcome::Sample {
            sample,
            warnings,
            status,
        },
        Err(e) => JobOutcome::Error(format!(
            "job {}: the output is not a valid sample: {e}",
            job.uri
        )),
    }
}

/// "exited with status 3", "was killed by signal 9".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// Read `r` to its end, keeping at most `limit + 1` bytes; returns them and the
/// total size read.
async fn read_capped(mut r: impl AsyncRead + Unpin, limit: usize) -> io::Result<(Vec<u8>, u64)> {
    let keep = limit.saturating_add(1);
    let mut kept = Vec::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, total));
        }
        total += n as u64;
        let room = keep - kept.len().min(keep);
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Read `r` to its end and log its lines at warn with `uri`, at most
/// [`STDERR_LINES_LOGGED`] of them, each cut to [`STDERR_LINE_BYTES`] bytes, then a
/// count of the lines not logged. A read error ends the reading (and is logged).
async fn log_stderr(mut r: impl AsyncRead + Unpin, uri: &str) {
    let mut lines = StderrLines::new(uri);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => lines.push(&buf[..n]),
            Err(e) => {
                tracing::warn!("job {uri}: cannot read the command's stderr: {e}");
                break;
            }
        }
    }
    lines.finish();
}

/// Splits stderr into lines and logs the first ones.
struct StderrLines<'a> {
    /// The job's uri, named in every line logged.
    uri: &'a str,
    /// The start of the current line (at most [`STDERR_LINE_BYTES`] bytes of it).
    line: Vec<u8>,
    /// The current line is longer than what `line` holds.
    cut: bool,
    /// Whether the current line has any byte.
    open: bool,
    /// Lines seen so far.
    count: u64,
}

impl<'a> StderrLines<'a> {
    /// Lines of the job at `uri`.
    fn new(uri: &'a str) -> Self {
        StderrLines {
            uri,
            line: Vec::new(),
            cut: false,
            open: false,
            count: 0,
        }
    }

    /// Take the next bytes read from stderr.
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, ends) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            self.open = true;
            if self.count < STDERR_LINES_LOGGED {
                let room = STDERR_LINE_BYTES - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                self.cut |= part.len() > room;
            }
            if ends {
                self.end_line();
            }
            bytes = rest;
        }
    }

    /// The current line is complete: count it, and log it if within the cap.
    fn end_line(&mut self) {
        self.count += 1;
        if self.count <= STDERR_LINES_LOGGED {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches('\r');
            let more = if self.cut { "…" } else { "" };
            tracing::warn!("job {}: stderr: {text}{more}", self.uri);
        }
        self.line.clear();
        self.cut = false;
        self.open = false;
    }

    /// stderr is closed: end a last line without a newline, and log the count of
    /// the lines not logged.
    fn finish(mut self) {
        if self.open {
            self.end_line();
        }
        if self.count > STDERR_LINES_LOGGED {
            tracing::warn!(
                "job {}: {} more stderr lines of this run were not logged",
                self.uri,
                self.count - STDERR_LINES_LOGGED
            );
        }
    }
}

/// A child that leads its own process group. Dropping it before it has been reaped
/// (the run's future was dropped) kills the group, then `kill_on_drop` the child.
struct GroupChild(Child);

impl GroupChild {
    /// SIGKILL the process group, if the leader has not been reaped yet. While it has
    /// not, its pid (the group id) cannot have been reused, so this cannot hit
    /// another group.
    fn kill_group(&self) {
        if let Some(pid) = self.0.id() {
            kill_process_group(pid);
        }
    }

    /// Kill the group and the child, then reap the child (bounded).
    async fn kill_and_reap(&mut self, uri: &str) {
        self.kill_group();
        if let Err(e) = self.0.start_kill() {
            // Only fails when it has already been reaped or cannot be signalled.
            tracing::debug!("job {uri}: kill: {e}");
        }
        match tokio::time::timeout(REAP_BOUND, self.0.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("job {uri}: cannot wait for the killed command: {e}"),
            Err(_) => tracing::warn!(
                "job {uri}: the killed command has not exited after {REAP_BOUND:?}; leaving it to be reaped in the background"
            ),
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Send SIGKILL to every process of the group `pgid`.
fn kill_process_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "every process" (-1) or our own group (0)
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative
    // pid addresses the process group `pgid`.
    let _ = unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_capped_keeps_limit_plus_one_and_counts_all() {
        let data = vec![7u8; 100_000];
        let (kept, total) = read_capped(&data[..], 10).await.unwrap();
        assert_eq!((kept.len(), total), (11, 100_000));
        let (kept, total) = read_capped(&data[..5], 10).await.unwrap();
        assert_eq!((kept.len(), total), (5, 5));
    }

    #[test]
    fn status_descriptions() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            "was killed by signal 9"
        );
    }
}
