//! What a running agent tells about itself: the status model that the control
//! socket ([`control`]) and the Prometheus endpoint ([`metrics`]) both read.
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
//!   [`ReadAnswer`](crate::store::read::ReadAnswer) read from the store by the
//!   dispatcher, as `komlogd query` reads a stopped agent's store (see
//!   [`crate::store::read`]);
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

pub mod control;
pub mod metrics;

use std::time::Duration;

use crate::impulses::{FailedImpulse, StatsBoard};
use crate::packages::{PackageBoard, PackagePhase};
use crate::session::{ServerBoard, ServerStatus};
use crate::sources::jobs::{JobBoard, JobReport};
use crate::sources::listen::{ListenerBoard, ListenerReport};

pub use control::{
    ANSWER_TIMEOUT, RefusedSample, StatusError, UploadAnswer, UploadRequest, control_socket_path,
    query, read, serve_control, upload,
};
pub use metrics::{
    jobs_prometheus_text, packages_prometheus_text, prometheus_text, serve_metrics,
    server_prometheus_text,
};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The StatsD and line protocol listeners that run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerReport>,
    /// The sinks, in configuration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<crate::sinks::SinkReport>,
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
        listeners: Vec::new(),
        sinks: Vec::new(),
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
    /// The metric listeners (StatsD, line protocol).
    pub listeners: ListenerBoard,
    /// The sinks.
    pub sinks: crate::sinks::SinkBoard,
}

impl Boards {
    /// The status report.
    pub fn report(&self, uptime: Duration) -> StatusReport {
        let mut report = report_with(
            &self.impulses,
            self.server.as_ref(),
            Some(&self.packages),
            Some(&self.jobs),
            uptime,
        );
        report.listeners = self.listeners.snapshot();
        report.sinks = self.sinks.snapshot();
        report
    }
}
