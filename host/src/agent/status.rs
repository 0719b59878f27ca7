//! What a running agent tells about itself: the control socket that
//! `komlogd status` asks, and the Prometheus text endpoint.
//!
//! The control socket is a Unix socket beside komlogd.yaml (`komlogd.sock`, mode
//! 0600: only the agent's user may ask). A client writes one request line and
//! reads one JSON line back:
//!
//! - `status` → a [`StatusReport`] (with the server link's state and counters in
//!   connected mode);
//! - `upload {"uri": …, "ts": …, "datapoint": 1.5}` (or `"datasource": "text"`) →
//!   `{"accepted": 1, "held": 0, "rejected": []}` once the sample is committed to
//!   the store (this is how `komlogd -u` hands a sample to a running agent), or
//!   `{"rejected": [{"uri", "ts", "reason"}]}`; `held` counts accepted samples
//!   the store already held (the same value at the same time: a retried
//!   upload), which are not stored, fired or queued again;
//! - `query {"uri": …, "limit": 10}` (no `uri`: every stored uri) → a
//!   [`ReadAnswer`] read from the store by the dispatcher, as `komlogd query`
//!   reads a stopped agent's store (see [`crate::store::read`]);
//! - anything else → `{"error": "…"}`.
//!
//! The Prometheus endpoint answers `GET /metrics` on the configured address with
//! the same counters in the text exposition format 0.0.4; anything else gets 404.
//!
//! Both show the packages too, from the [`PackageBoard`]: state (running,
//! loading, failed with its reason, disabled), version, jobs, runs, failures,
//! last error and last run; and the configured jobs, from the [`JobBoard`]:
//! schedule, next and last run, exit status, duration, runs, failures,
//! timeouts and bytes sent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::impulses::{FailedImpulse, ImpulseStats, Inbox, StatsBoard};
use crate::model::{Sample, Value};
use crate::packages::{PackageBoard, PackagePhase};
use crate::session::{ServerBoard, ServerStatus};
use crate::sources::jobs::{JobBoard, JobReport};
use crate::store::read::{ReadAnswer, ReadRequest};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest HTTP head read.
const MAX_REQUEST_BYTES: u64 = 8192;
/// Longest control request: an upload of the largest datasource sample, JSON-escaped.
const MAX_CONTROL_BYTES: u64 = 8 * crate::model::MAX_DATASOURCE_BYTES as u64 + 4096;

/// The sample of an `upload` request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UploadRequest {
    /// The uri.
    pub uri: String,
    /// Its timestamp, µs since the Unix epoch.
    pub ts: i64,
    /// A number, for a datapoint sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoint: Option<f64>,
    /// A text, for a datasource sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
}

/// A refused sample in an `upload` answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefusedSample {
    /// Its uri.
    pub uri: String,
    /// Its timestamp.
    pub ts: i64,
    /// Why.
    pub reason: String,
}

/// The answer to an `upload` request.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UploadAnswer {
    /// Samples committed, held ones included.
    #[serde(default)]
    pub accepted: usize,
    /// Of those, samples the store already held (the same value at the same
    /// time): not stored, fired or queued again.
    #[serde(default)]
    pub held: usize,
    /// Samples refused.
    #[serde(default)]
    pub rejected: Vec<RefusedSample>,
    /// A failure of the request itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The control socket of the configuration in `config_dir`.
pub fn control_socket_path(config_dir: &Path) -> PathBuf {
    config_dir.join("komlogd.sock")
}

/// One impulse in a status report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImpulseStatus {
    /// Its name.
    pub name: String,
    /// Its counters.
    #[serde(flatten)]
    pub stats: serde_json::Map<String, serde_json::Value>,
}

/// One package in a status report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PackageReport {
    /// Its name (the `.wasm` file stem).
    pub name: String,
    /// `running`, `loading`, `failed` or `disabled`.
    pub state: String,
    /// Why it failed, when `state` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `.wasm`.
    pub install: String,
    /// SHA-256 of the running version.
    #[serde(default)]
    pub version: Option<String>,
    /// Scheduled jobs.
    pub jobs: usize,
    /// Job runs since the package started, failed ones included (across
    /// refreshes and new versions: jobs no longer scheduled count too).
    pub runs: u64,
    /// Job runs that failed.
    pub failures: u64,
    /// Samples returned by the jobs.
    pub samples: u64,
    /// The latest problem.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Timestamp (µs since the Unix epoch) of the latest job run.
    #[serde(default)]
    pub last_run_ts: Option<i64>,
}

/// The packages on `board`, by name.
pub fn package_reports(board: &PackageBoard) -> Vec<PackageReport> {
    board
        .snapshot()
        .into_iter()
        .map(|(name, s)| PackageReport {
            name,
            state: s.phase.as_str().to_owned(),
            reason: s
                .last_error
                .clone()
                .filter(|_| s.phase == PackagePhase::Failed),
            install: s.install.display().to_string(),
            version: s.version,
            jobs: s.jobs.len(),
            runs: s.runs,
            failures: s.failures,
            samples: s.samples,
            last_error: s.last_error,
            last_run_ts: s.last_run_ts,
        })
        .collect()
}

/// A configured impulse that failed to load, as a status entry: state
/// `failed`, its `reason` and its `wasm`, no version and no counters.
fn failed_impulse_status(failed: FailedImpulse) -> ImpulseStatus {
    let mut stats = serde_json::Map::new();
    stats.insert("state".into(), "failed".into());
    stats.insert("reason".into(), failed.reason.into());
    stats.insert("wasm".into(), failed.wasm.display().to_string().into());
    ImpulseStatus {
        name: failed.name,
        stats,
    }
}

/// What `status` answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// The agent's process id.
    pub pid: u32,
    /// Seconds since the agent started.
    pub uptime_s: f64,
    /// Every running impulse, in load order, then every configured impulse
    /// that failed to load (state `failed`, with its `reason` and `wasm`).
    pub impulses: Vec<ImpulseStatus>,
    /// The server link, in connected mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerStatus>,
    /// Every configured package, by name.
    #[serde(default)]
    pub packages: Vec<PackageReport>,
    /// Every configured job, in configuration order.
    #[serde(default)]
    pub jobs: Vec<JobReport>,
}

/// Build the report from the board.
pub fn report(board: &StatsBoard, uptime: Duration) -> StatusReport {
    report_with(board, None, None, None, uptime)
}

/// Build the report from the board and, in connected mode, the server link's
/// board, with the packages and jobs when given.
pub fn report_with(
    board: &StatsBoard,
    server: Option<&ServerBoard>,
    packages: Option<&PackageBoard>,
    jobs: Option<&JobBoard>,
    uptime: Duration,
) -> StatusReport {
    let mut impulses: Vec<ImpulseStatus> = board
        .snapshot()
        .into_iter()
        .map(|(name, stats)| ImpulseStatus {
            name: name.to_string(),
            stats: match serde_json::to_value(stats) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            },
        })
        .collect();
    impulses.extend(board.failed().into_iter().map(failed_impulse_status));
    StatusReport {
        pid: std::process::id(),
        uptime_s: uptime.as_secs_f64(),
        impulses,
        server: server.map(ServerBoard::snapshot),
        packages: packages.map(package_reports).unwrap_or_default(),
        jobs: jobs.map(JobBoard::snapshot).unwrap_or_default(),
    }
}

/// Everything a running agent shows, as the control socket and the
/// Prometheus endpoint read it. Cheap to clone (every board is shared).
#[derive(Clone, Default)]
pub struct Boards {
    /// The impulses.
    pub impulses: StatsBoard,
    /// The server link, in connected mode.
    pub server: Option<ServerBoard>,
    /// The packages.
    pub packages: PackageBoard,
    /// The jobs.
    pub jobs: JobBoard,
}

impl Boards {
    /// The status report.
    pub fn report(&self, uptime: Duration) -> StatusReport {
        report_with(
            &self.impulses,
            self.server.as_ref(),
            Some(&self.packages),
            Some(&self.jobs),
            uptime,
        )
    }

    /// Every series, in the Prometheus text format. In connected mode this
    /// reads the outbox from the store: call it off the async runtime.
    pub fn prometheus_text(&self) -> String {
        let server = self
            .server
            .as_ref()
            .map(|s| server_prometheus_text(&s.snapshot(), crate::model::now_us()))
            .unwrap_or_default();
        prometheus_text(&self.impulses)
            + &packages_prometheus_text(&self.packages)
            + &jobs_prometheus_text(&self.jobs)
            + &server
    }
}

/// Why a status request failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing listens on the socket.
    #[error("no komlogd agent is running for this configuration (nothing answers on {0})")]
    NotRunning(PathBuf),
    /// The exchange failed.
    #[error("{path}: {reason}")]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The request was sent whole but no answer came (the agent stopped or
    /// died while handling it, or took longer than [`ANSWER_TIMEOUT`]): what
    /// was asked may or may not have been done.
    #[error("{path}: the request was sent, but no answer came: {reason}")]
    Unanswered {
        /// The socket.
        path: PathBuf,
        /// What happened instead of an answer.
        reason: String,
    },
}

/// Ask the agent listening on `socket` for its status.
pub fn query(socket: &Path) -> Result<StatusReport, StatusError> {
    let line = request(socket, "status\n")?;
    serde_json::from_str(&line).map_err(|e| StatusError::Exchange {
        path: socket.to_owned(),
        reason: format!("unreadable answer: {e}"),
    })
}

/// Hand a sample to the agent listening on `socket`; returns once it is stored.
pub fn upload(socket: &Path, sample: &UploadRequest) -> Result<UploadAnswer, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let body = serde_json::to_string(sample).map_err(|e| exchange(e.to_string()))?;
    let line = request(socket, &format!("upload {body}\n"))?;
    let answer: UploadAnswer =
        serde_json::from_str(&line).map_err(|e| exchange(format!("unreadable answer: {e}")))?;
    match answer.error {
        Some(e) => Err(exchange(e)),
        None => Ok(answer),
    }
}

/// Read the store of the agent listening on `socket` (see [`crate::store::read`]).
pub fn read(socket: &Path, request: &ReadRequest) -> Result<ReadAnswer, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let body = serde_json::to_string(request).map_err(|e| exchange(e.to_string()))?;
    let line = self::request(socket, &format!("query {body}\n"))?;
    let answer: ReadAnswer =
        serde_json::from_str(&line).map_err(|e| exchange(format!("unreadable answer: {e}")))?;
    match answer.error {
        Some(e) => Err(exchange(e)),
        None => Ok(answer),
    }
}

/// How long a client waits for the answer to a request it sent.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Send one request line and read the answer line. A failure after the whole
/// request was sent (a reset, an end of stream without an answer, the timeout)
/// is [`StatusError::Unanswered`]: the agent may have acted on it.
fn request(socket: &Path, text: &str) -> Result<String, StatusError> {
    let exchange = |reason: String| StatusError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    let unanswered = |reason: String| StatusError::Unanswered {
        path: socket.to_owned(),
        reason,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(StatusError::NotRunning(socket.to_owned()));
        }
        Err(e) => return Err(exchange(format!("cannot connect: {e}"))),
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    stream
        .write_all(text.as_bytes())
        .map_err(|e| exchange(format!("cannot send the request: {e}")))?;
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => Ok(line),
        Ok(0) => Err(unanswered("the agent closed the connection".into())),
        Ok(_) => Err(unanswered(format!(
            "the agent closed the connection after {} bytes of its answer",
            line.len()
        ))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(unanswered(format!(
                "none within {} s",
                ANSWER_TIMEOUT.as_secs()
            )))
        }
        Err(e) => Err(unanswered(e.to_string())),
    }
}

/// Serve the control socket until `shutdown` turns true, then remove it.
/// A stale socket left by a killed agent is replaced.
pub async fn serve_control(
    path: PathBuf,
    boards: Boards,
    inbox: Inbox,
    started: std::time::Instant,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another agent answers on it", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let boards = boards.clone();
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    let _ = answer_control(stream, boards, inbox, started.elapsed()).await;
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn answer_control(
    stream: tokio::net::UnixStream,
    boards: Boards,
    inbox: Inbox,
    uptime: Duration,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_CONTROL_BYTES));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let request = line.trim_end_matches(['\n', '\r']);
    let answer = if request == "status" {
        // Counting the outbox reads the store.
        let report = tokio::task::spawn_blocking(move || boards.report(uptime))
            .await
            .map_err(std::io::Error::other)?;
        serde_json::to_string(&report).map_err(std::io::Error::other)?
    } else if let Some(body) = request.strip_prefix("upload ") {
        let answer = match serde_json::from_str::<UploadRequest>(body) {
            Ok(req) => tokio::task::spawn_blocking(move || store_upload(&inbox, req))
                .await
                .unwrap_or_else(|e| UploadAnswer {
                    error: Some(format!("upload failed: {e}")),
                    ..UploadAnswer::default()
                }),
            Err(e) => UploadAnswer {
                error: Some(format!("malformed upload request: {e}")),
                ..UploadAnswer::default()
            },
        };
        serde_json::to_string(&answer).map_err(std::io::Error::other)?
    } else if let Some(body) = request.strip_prefix("query ") {
        let answer = match serde_json::from_str::<ReadRequest>(body) {
            Ok(req) => tokio::task::spawn_blocking(move || inbox.read(req))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .unwrap_or_else(|e| ReadAnswer {
                    error: Some(format!("the agent could not read its store: {e}")),
                    ..ReadAnswer::default()
                }),
            Err(e) => ReadAnswer {
                error: Some(format!("malformed query request: {e}")),
                ..ReadAnswer::default()
            },
        };
        serde_json::to_string(&answer).map_err(std::io::Error::other)?
    } else {
        let shown: String = request.chars().take(40).collect();
        serde_json::json!({ "error": format!("unknown request {shown:?}; known: status, upload, query") })
            .to_string()
    };
    write.write_all(answer.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// A counter's metric name suffix, help text and reader.
type Counter = (&'static str, &'static str, fn(&ImpulseStats) -> u64);

fn store_upload(inbox: &Inbox, req: UploadRequest) -> UploadAnswer {
    let value = match (req.datapoint, req.datasource) {
        (Some(v), None) => Value::Datapoint(v),
        (None, Some(t)) => Value::Datasource(t),
        _ => {
            return UploadAnswer {
                error: Some("an upload needs exactly one of `datapoint` and `datasource`".into()),
                ..UploadAnswer::default()
            };
        }
    };
    let sample = Sample {
        uri: req.uri,
        ts: req.ts,
        value,
    };
    match inbox.upload(vec![sample]) {
        Ok(receipt) => UploadAnswer {
            accepted: receipt.accepted,
            held: receipt.held,
            rejected: receipt
                .rejected
                .into_iter()
                .map(|r| RefusedSample {
                    uri: r.uri,
                    ts: r.ts,
                    reason: r.reason.to_string(),
                })
                .collect(),
            error: None,
        },
        Err(_) => UploadAnswer {
            error: Some("the agent could not store the sample (its log says why)".into()),
            ..UploadAnswer::default()
        },
    }
}

/// The counters of every impulse in the Prometheus text format.
pub fn prometheus_text(board: &StatsBoard) -> String {
    let snapshot = board.snapshot();
    let mut out = String::new();
    let counters: &[Counter] = &[
        ("fires_total", "Calls of on-update that returned.", |s| {
            s.fires
        }),
        ("skips_total", "Fires skipped by min_exec_delta.", |s| {
            s.skips
        }),
        (
            "backoff_skips_total",
            "Fires skipped while backing off after a failure.",
            |s| s.backoff_skips,
        ),
        (
            "disabled_skips_total",
            "Fires skipped while disabled.",
            |s| s.disabled_skips,
        ),
        (
            "queue_full_skips_total",
            "Fires dropped because the fires waiting for the impulse held its queue limit.",
            |s| s.queue_full_skips,
        ),
        (
            "guest_errors_total",
            "Fires whose guest returned err.",
            |s| s.guest_errors,
        ),
        (
            "retries_total",
            "Events retried on a fresh instance.",
            |s| s.retries,
        ),
        (
            "failed_events_total",
            "Events that failed on their retry too.",
            |s| s.failed_events,
        ),
        ("outputs_total", "Output samples stored.", |s| s.outputs),
        (
            "invalid_outputs_total",
            "Output samples dropped for breaking a rule.",
            |s| s.invalid_outputs,
        ),
        (
            "remote_writes_dropped_total",
            "Output samples to another user's uri, dropped.",
            |s| s.remote_writes_dropped,
        ),
        (
            "chain_cut_total",
            "Outputs stored without firing further (chain depth).",
            |s| s.chain_cut,
        ),
        (
            "swaps_total",
            "Module versions swapped in while running.",
            |s| s.swaps,
        ),
        (
            "state_carried_total",
            "Swaps whose in-memory state was carried over.",
            |s| s.state_carried,
        ),
        (
            "state_dropped_total",
            "Swaps whose state could not be carried over.",
            |s| s.state_dropped,
        ),
        (
            "rejected_versions_total",
            "New module versions refused by the load check.",
            |s| s.rejected_versions,
        ),
    ];
    for (name, help, get) in counters {
        out.push_str(&format!(
            "# HELP komlogd_impulse_{name} {help}\n# TYPE komlogd_impulse_{name} counter\n"
        ));
        for (imp, s) in &snapshot {
            out.push_str(&format!(
                "komlogd_impulse_{name}{{impulse=\"{}\"}} {}\n",
                escape_label(imp),
                get(s)
            ));
        }
    }
    out.push_str("# HELP komlogd_impulse_failures_total Failed calls by kind.\n# TYPE komlogd_impulse_failures_total counter\n");
    for (imp, s) in &snapshot {
        for kind in ["trap", "deadline", "memory", "fuel", "instantiate"] {
            out.push_str(&format!(
                "komlogd_impulse_failures_total{{impulse=\"{}\",kind=\"{kind}\"}} {}\n",
                escape_label(imp),
                s.failures.get(kind).copied().unwrap_or(0)
            ));
        }
    }
    out.push_str("# HELP komlogd_impulse_memory_high_water_bytes Largest linear memory reached.\n# TYPE komlogd_impulse_memory_high_water_bytes gauge\n");
    for (imp, s) in &snapshot {
        out.push_str(&format!(
            "komlogd_impulse_memory_high_water_bytes{{impulse=\"{}\"}} {}\n",
            escape_label(imp),
            s.memory_high_water
        ));
    }
    out.push_str("# HELP komlogd_impulse_info Module version (hash) and state (failed: it could not be loaded); always 1.\n# TYPE komlogd_impulse_info gauge\n");
    for (imp, s) in &snapshot {
        out.push_str(&format!(
            "komlogd_impulse_info{{impulse=\"{}\",version=\"{}\",state=\"{}\"}} 1\n",
            escape_label(imp),
            escape_label(&s.version),
            s.state.as_str()
        ));
    }
    for failed in board.failed() {
        out.push_str(&format!(
            "komlogd_impulse_info{{impulse=\"{}\",version=\"\",state=\"failed\"}} 1\n",
            escape_label(&failed.name)
        ));
    }
    out.push_str("# HELP komlogd_impulse_duration_seconds Call durations (quantiles over the latest 1024 calls).\n# TYPE komlogd_impulse_duration_seconds summary\n");
    for (imp, s) in &snapshot {
        let imp = escape_label(imp);
        for (q, v) in [("0.5", s.duration_p50_us), ("0.99", s.duration_p99_us)] {
            out.push_str(&format!(
                "komlogd_impulse_duration_seconds{{impulse=\"{imp}\",quantile=\"{q}\"}} {}\n",
                v / 1e6
            ));
        }
        out.push_str(&format!(
            "komlogd_impulse_duration_seconds_sum{{impulse=\"{imp}\"}} {}\nkomlogd_impulse_duration_seconds_count{{impulse=\"{imp}\"}} {}\n",
            s.duration_sum_us / 1e6,
            s.duration_count
        ));
    }
    out
}

/// The server link in the Prometheus text format (connected mode), at
/// `now_us`: its state, logins, the outbox's depth and the age of its oldest
/// sample (by the sample's own time; 0 when empty, never negative), the
/// samples sent, acknowledged and refused, the write messages, the hooks held
/// and refused, the samples notified and fetched as history, and the time
/// of the last error.
pub fn server_prometheus_text(s: &ServerStatus, now_us: i64) -> String {
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP komlogd_server_{name} {help}\n# TYPE komlogd_server_{name} {kind}\nkomlogd_server_{name} {value}\n"
        ));
    };
    series(
        "connected",
        "gauge",
        "1 while the link to the server is connected, else 0.",
        u8::from(s.state == "connected").to_string(),
    );
    let age = s
        .outbox_oldest_ts
        .map_or(0.0, |ts| (now_us.saturating_sub(ts)).max(0) as f64 / 1e6);
    let counters: [(&str, &str, &str, u64); 11] = [
        ("logins_total", "counter", "Successful logins.", s.logins),
        (
            "outbox_samples",
            "gauge",
            "Samples in the outbox, waiting for the server's acknowledgement.",
            s.outbox,
        ),
        (
            "samples_sent_total",
            "counter",
            "Samples sent (resends included).",
            s.sent,
        ),
        (
            "samples_acked_total",
            "counter",
            "Samples the server acknowledged.",
            s.acked,
        ),
        (
            "samples_refused_total",
            "counter",
            "Samples the server refused (dropped from the outbox).",
            s.refused,
        ),
        (
            "messages_sent_total",
            "counter",
            "Write messages sent (resends included); the samples of one time go in one.",
            s.messages,
        ),
        ("hooks", "gauge", "Uris hooked at the server now.", s.hooked),
        (
            "hooks_refused",
            "gauge",
            "Uris whose hook the server refused.",
            s.hooks_refused.len() as u64,
        ),
        (
            "notified_samples_total",
            "counter",
            "Samples the server notified (handed to the impulses).",
            s.notified,
        ),
        (
            "history_samples_total",
            "counter",
            "Samples fetched from the server's history.",
            s.history,
        ),
        (
            "supplies_sent_total",
            "counter",
            "Datasource supply lists the server acknowledged.",
            s.supplies_sent,
        ),
    ];
    for (name, kind, help, value) in counters {
        series(name, kind, help, value.to_string());
    }
    series(
        "outbox_oldest_age_seconds",
        "gauge",
        "Now minus the time of the oldest sample in the outbox (0 when empty).",
        age.to_string(),
    );
    if let Some(ts) = s.last_error_ts {
        series(
            "last_error_timestamp_seconds",
            "gauge",
            "When the link's last error happened.",
            (ts as f64 / 1e6).to_string(),
        );
    }
    out.push_str(
        "# HELP komlogd_server_state The link's state: 1 for the current one.\n# TYPE komlogd_server_state gauge\n",
    );
    for state in ["connecting", "connected", "backoff", "stopped"] {
        out.push_str(&format!(
            "komlogd_server_state{{url=\"{}\",state=\"{state}\"}} {}\n",
            escape_label(&s.url),
            u8::from(s.state == state)
        ));
    }
    out
}

/// The packages on `board` in the Prometheus text format.
pub fn packages_prometheus_text(board: &PackageBoard) -> String {
    let reports = package_reports(board);
    let mut out = String::from(
        "# HELP komlogd_package_info Package version (hash) and state; always 1.\n# TYPE komlogd_package_info gauge\n",
    );
    for p in &reports {
        out.push_str(&format!(
            "komlogd_package_info{{package=\"{}\",version=\"{}\",state=\"{}\"}} 1\n",
            escape_label(&p.name),
            escape_label(p.version.as_deref().unwrap_or("")),
            p.state
        ));
    }
    type Gauge = (
        &'static str,
        &'static str,
        &'static str,
        fn(&PackageReport) -> f64,
    );
    let series: &[Gauge] = &[
        ("jobs", "gauge", "Scheduled jobs.", |p| p.jobs as f64),
        (
            "runs_total",
            "counter",
            "Job runs, failed ones included.",
            |p| p.runs as f64,
        ),
        ("failures_total", "counter", "Job runs that failed.", |p| {
            p.failures as f64
        }),
        (
            "samples_total",
            "counter",
            "Samples returned by jobs.",
            |p| p.samples as f64,
        ),
    ];
    for (name, kind, help, get) in series {
        out.push_str(&format!(
            "# HELP komlogd_package_{name} {help}\n# TYPE komlogd_package_{name} {kind}\n"
        ));
        for p in &reports {
            out.push_str(&format!(
                "komlogd_package_{name}{{package=\"{}\"}} {}\n",
                escape_label(&p.name),
                get(p)
            ));
        }
    }
    out.push_str("# HELP komlogd_package_last_run_timestamp_seconds Time of the latest job run.\n# TYPE komlogd_package_last_run_timestamp_seconds gauge\n");
    for p in &reports {
        if let Some(ts) = p.last_run_ts {
            out.push_str(&format!(
                "komlogd_package_last_run_timestamp_seconds{{package=\"{}\"}} {}\n",
                escape_label(&p.name),
                ts as f64 / 1e6
            ));
        }
    }
    out
}

/// The jobs on `board` in the Prometheus text format, labelled by `uri` (the
/// job's name: its uri, `#2`… for a second job writing the same uri).
pub fn jobs_prometheus_text(board: &JobBoard) -> String {
    let reports = board.snapshot();
    let mut out = String::new();
    type Series = (&'static str, &'static str, fn(&JobReport) -> u64);
    let counters: &[Series] = &[
        (
            "runs_total",
            "Job runs that ended, failed ones included.",
            |j| j.runs,
        ),
        (
            "failures_total",
            "Job runs that failed (non-zero exit, not started, output too large, timeout, error).",
            |j| j.failures,
        ),
        ("timeouts_total", "Job runs killed by their timeout.", |j| {
            j.timeouts
        }),
        ("bytes_total", "Bytes of job output sent as samples.", |j| {
            j.bytes
        }),
    ];
    for (name, help, get) in counters {
        out.push_str(&format!(
            "# HELP komlogd_job_{name} {help}\n# TYPE komlogd_job_{name} counter\n"
        ));
        for j in &reports {
            out.push_str(&format!(
                "komlogd_job_{name}{{uri=\"{}\"}} {}\n",
                escape_label(&j.name),
                get(j)
            ));
        }
    }
    out.push_str("# HELP komlogd_job_last_run_timestamp_seconds Scheduled time of the latest job run that ended.\n# TYPE komlogd_job_last_run_timestamp_seconds gauge\n");
    for j in &reports {
        if let Some(ts) = j.last_run_ts {
            out.push_str(&format!(
                "komlogd_job_last_run_timestamp_seconds{{uri=\"{}\"}} {}\n",
                escape_label(&j.name),
                ts as f64 / 1e6
            ));
        }
    }
    out.push_str("# HELP komlogd_job_last_duration_seconds How long the latest job run took.\n# TYPE komlogd_job_last_duration_seconds gauge\n");
    for j in &reports {
        if let Some(us) = j.last_duration_us {
            out.push_str(&format!(
                "komlogd_job_last_duration_seconds{{uri=\"{}\"}} {}\n",
                escape_label(&j.name),
                us as f64 / 1e6
            ));
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serve `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    boards: Boards,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let boards = boards.clone();
                tokio::spawn(async move {
                    let _ = answer_http(stream, &boards).await;
                });
            }
        }
    }
}

async fn answer_http(stream: tokio::net::TcpStream, boards: &Boards) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut request_line = String::new();
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        reader.read_line(&mut request_line).await?;
        // Read the rest of the head; the body (none for GET) is ignored.
        let mut header = String::new();
        loop {
            header.clear();
            if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, target) {
        (Some("GET"), Some("/metrics")) => {
            // Counting the outbox reads the store.
            let boards = boards.clone();
            let text = tokio::task::spawn_blocking(move || boards.prometheus_text())
                .await
                .map_err(std::io::Error::other)?;
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "komlogd serves GET /metrics only\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await?;
    write.write_all(body.as_bytes()).await?;
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_skip_counter_is_exported() {
        let board = StatsBoard::default();
        let stats = crate::impulses::stats::SharedStats::default();
        {
            let mut cell = crate::impulses::stats::lock(&stats);
            let s = cell.stats();
            (
                s.skips,
                s.backoff_skips,
                s.disabled_skips,
                s.queue_full_skips,
            ) = (1, 2, 3, 4);
        }
        board.insert("x".into(), stats);
        let text = prometheus_text(&board);
        for line in [
            "komlogd_impulse_skips_total{impulse=\"x\"} 1\n",
            "komlogd_impulse_backoff_skips_total{impulse=\"x\"} 2\n",
            "komlogd_impulse_disabled_skips_total{impulse=\"x\"} 3\n",
            "komlogd_impulse_queue_full_skips_total{impulse=\"x\"} 4\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn empty_board_still_has_help_lines() {
        let text = prometheus_text(&StatsBoard::default());
        assert!(text.contains("# TYPE komlogd_impulse_fires_total counter"));
        assert!(!text.contains("impulse=\""));
    }
}
