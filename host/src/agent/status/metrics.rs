//! The Prometheus endpoint: every series of the status model in the text
//! exposition format 0.0.4, served on `GET /metrics`.
//!
//! [`StatusCollector`] is a `prometheus-client` collector that reads the boards
//! on every scrape: nothing is counted a second time on the hot path. hyper
//! serves the endpoint, one request per connection.
//!
//! prometheus-client has no summary type, so the one summary
//! (`komlogd_impulse_duration_seconds`, quantiles over the latest calls) is
//! written here, after the collector's families.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, GaugeValueEncoder,
    prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::{Boards, PackageReport, REQUEST_TIMEOUT, package_reports};
use crate::impulses::{ImpulseStats, StatsBoard};
use crate::packages::PackageBoard;
use crate::session::{ServerBoard, ServerStatus};
use crate::sources::jobs::{JobBoard, JobReport};
use crate::sources::listen::ListenerBoard;

/// Longest HTTP request head read.
const MAX_REQUEST_BYTES: usize = 8192;

/// The status model as a prometheus-client [`Collector`]: the boards it holds
/// are read on every scrape. Cheap to clone (every board is shared).
#[derive(Clone, Default)]
pub struct StatusCollector {
    impulses: Option<StatsBoard>,
    packages: Option<PackageBoard>,
    jobs: Option<JobBoard>,
    server: Option<ServerSource>,
    listeners: Option<ListenerBoard>,
    sinks: Option<crate::sinks::SinkBoard>,
}

/// Where the server link's series come from.
#[derive(Clone)]
enum ServerSource {
    /// The live link: snapshot it at scrape time.
    Live(ServerBoard),
    /// A snapshot taken earlier, seen at a given time (µs).
    Snapshot(Box<ServerStatus>, i64),
}

impl fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusCollector")
            .field("impulses", &self.impulses.is_some())
            .field("packages", &self.packages.is_some())
            .field("jobs", &self.jobs.is_some())
            .field("server", &self.server.is_some())
            .finish()
    }
}

impl From<Boards> for StatusCollector {
    fn from(boards: Boards) -> Self {
        StatusCollector {
            impulses: Some(boards.impulses),
            packages: Some(boards.packages),
            jobs: Some(boards.jobs),
            server: boards.server.map(ServerSource::Live),
            listeners: Some(boards.listeners),
            sinks: Some(boards.sinks),
        }
    }
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if let Some(board) = &self.impulses {
            encode_impulses(board, &mut encoder)?;
        }
        if let Some(board) = &self.packages {
            encode_packages(board, &mut encoder)?;
        }
        if let Some(board) = &self.jobs {
            encode_jobs(board, &mut encoder)?;
        }
        if let Some(board) = &self.listeners {
            encode_listeners(board, &mut encoder)?;
        }
        if let Some(board) = &self.sinks {
            encode_sinks(board, &mut encoder)?;
        }
        match &self.server {
            Some(ServerSource::Live(board)) => {
                encode_server(&board.snapshot(), crate::model::now_us(), &mut encoder)
            }
            Some(ServerSource::Snapshot(status, now_us)) => {
                encode_server(status, *now_us, &mut encoder)
            }
            None => Ok(()),
        }
    }
}

impl StatusCollector {
    /// A registry holding this collector alone.
    pub fn registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }

    /// Every series in the text format: the collector's, then the impulses'
    /// call-duration summary. In connected mode this reads the outbox from the
    /// store: call it off the async runtime.
    pub fn text(&self) -> String {
        text_of(
            &self.clone().registry(),
            self.impulses.as_ref(),
            self.sinks.as_ref(),
        )
    }
}

/// `registry` in the text format, then the duration summary of `impulses`, then
/// the datapoints the exporter sinks of `sinks` expose.
fn text_of(
    registry: &Registry,
    impulses: Option<&StatsBoard>,
    sinks: Option<&crate::sinks::SinkBoard>,
) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_text::encode(&mut out, registry) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    if let Some(board) = impulses {
        out.push_str(&duration_summary_text(board));
    }
    if let Some(board) = sinks {
        out.push_str(&board.exposition().text());
    }
    out
}

impl Boards {
    /// Every series, in the Prometheus text format. In connected mode this
    /// reads the outbox from the store: call it off the async runtime.
    pub fn prometheus_text(&self) -> String {
        StatusCollector::from(self.clone()).text()
    }
}

/// The counters of every impulse in the Prometheus text format.
pub fn prometheus_text(board: &StatsBoard) -> String {
    StatusCollector {
        impulses: Some(board.clone()),
        ..StatusCollector::default()
    }
    .text()
}

/// The server link in the Prometheus text format (connected mode), at
/// `now_us`: its state, logins, the outbox's depth and the age of its oldest
/// sample (by the sample's own time; 0 when empty, never negative), the
/// samples sent, acknowledged and refused, the write messages, the hooks held
/// and refused, the samples notified and fetched as history, and the time
/// of the last error.
pub fn server_prometheus_text(s: &ServerStatus, now_us: i64) -> String {
    StatusCollector {
        server: Some(ServerSource::Snapshot(Box::new(s.clone()), now_us)),
        ..StatusCollector::default()
    }
    .text()
}

/// The packages on `board` in the Prometheus text format.
pub fn packages_prometheus_text(board: &PackageBoard) -> String {
    StatusCollector {
        packages: Some(board.clone()),
        ..StatusCollector::default()
    }
    .text()
}

/// The jobs on `board` in the Prometheus text format, labelled by `uri` (the
/// job's name: its uri, `#2`… for a second job writing the same uri).
pub fn jobs_prometheus_text(board: &JobBoard) -> String {
    StatusCollector {
        jobs: Some(board.clone()),
        ..StatusCollector::default()
    }
    .text()
}

/// A gauge value written as an integer when it is whole (a timestamp on the
/// second, a zero age) and as the shortest decimal otherwise.
#[derive(Debug, Clone, Copy)]
struct Number(f64);

impl EncodeGaugeValue for Number {
    fn encode(&self, encoder: &mut GaugeValueEncoder) -> fmt::Result {
        // Below 2^53 every whole f64 is exactly an i64.
        if self.0.fract() == 0.0 && self.0.abs() < 9_007_199_254_740_992.0 {
            (self.0 as i64).encode(encoder)
        } else {
            self.0.encode(encoder)
        }
    }
}

/// Microseconds as seconds.
fn seconds(us: impl Into<f64>) -> Number {
    Number(us.into() / 1e6)
}

/// One family: `name` (a counter's without `_total`, an info's without `_info`:
/// the encoder adds them), then `samples` each with its labels.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// An info family: `name_info{labels} 1` for each label set.
fn info_family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label_sets: impl IntoIterator<Item = L>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Info)?;
    for labels in label_sets {
        metric.encode_info(&labels)?;
    }
    Ok(())
}

/// An unlabelled gauge or counter.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: M,
) -> fmt::Result {
    value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)
}

/// A counter's metric name suffix (without `_total`), help text and reader.
type Counter = (&'static str, &'static str, fn(&ImpulseStats) -> u64);

/// The impulses' families, but the duration summary.
fn encode_impulses(board: &StatsBoard, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let snapshot = board.snapshot();
    let counters: &[Counter] = &[
        ("fires", "Calls of on-update that returned.", |s| s.fires),
        ("skips", "Fires skipped by min_exec_delta.", |s| s.skips),
        (
            "backoff_skips",
            "Fires skipped while backing off after a failure.",
            |s| s.backoff_skips,
        ),
        ("disabled_skips", "Fires skipped while disabled.", |s| {
            s.disabled_skips
        }),
        (
            "queue_full_skips",
            "Fires dropped because the fires waiting for the impulse held its queue limit.",
            |s| s.queue_full_skips,
        ),
        ("guest_errors", "Fires whose guest returned err.", |s| {
            s.guest_errors
        }),
        ("retries", "Events retried on a fresh instance.", |s| {
            s.retries
        }),
        (
            "failed_events",
            "Events that failed on their retry too.",
            |s| s.failed_events,
        ),
        ("outputs", "Output samples stored.", |s| s.outputs),
        (
            "invalid_outputs",
            "Output samples dropped for breaking a rule.",
            |s| s.invalid_outputs,
        ),
        (
            "remote_writes_dropped",
            "Output samples to another user's uri, dropped.",
            |s| s.remote_writes_dropped,
        ),
        (
            "chain_cut",
            "Outputs stored without firing further (chain depth).",
            |s| s.chain_cut,
        ),
        ("swaps", "Module versions swapped in while running.", |s| {
            s.swaps
        }),
        (
            "state_carried",
            "Swaps whose in-memory state was carried over.",
            |s| s.state_carried,
        ),
        (
            "state_dropped",
            "Swaps whose state could not be carried over.",
            |s| s.state_dropped,
        ),
        (
            "rejected_versions",
            "New module versions refused by the load check.",
            |s| s.rejected_versions,
        ),
    ];
    for (name, help, get) in counters {
        family(
            encoder,
            &format!("komlogd_impulse_{name}"),
            help,
            MetricType::Counter,
            snapshot
                .iter()
                .map(|(imp, s)| ([("impulse", imp.as_ref())], ConstCounter::new(get(s)))),
        )?;
    }
    family(
        encoder,
        "komlogd_impulse_failures",
        "Failed calls by kind.",
        MetricType::Counter,
        snapshot.iter().flat_map(|(imp, s)| {
            ["trap", "deadline", "memory", "fuel", "instantiate"].map(|kind| {
                (
                    [("impulse", imp.as_ref()), ("kind", kind)],
                    ConstCounter::new(s.failures.get(kind).copied().unwrap_or(0)),
                )
            })
        }),
    )?;
    family(
        encoder,
        "komlogd_impulse_memory_high_water_bytes",
        "Largest linear memory reached.",
        MetricType::Gauge,
        snapshot.iter().map(|(imp, s)| {
            (
                [("impulse", imp.as_ref())],
                ConstGauge::new(s.memory_high_water),
            )
        }),
    )?;
    let failed = board.failed();
    info_family(
        encoder,
        "komlogd_impulse",
        "Module version (hash) and state (failed: it could not be loaded); always 1.",
        snapshot
            .iter()
            .map(|(imp, s)| {
                [
                    ("impulse", imp.as_ref()),
                    ("version", s.version.as_str()),
                    ("state", s.state.as_str()),
                ]
            })
            .chain(failed.iter().map(|f| {
                [
                    ("impulse", f.name.as_str()),
                    ("version", ""),
                    ("state", "failed"),
                ]
            })),
    )
}

/// The impulses' call durations, a summary, in the text format.
fn duration_summary_text(board: &StatsBoard) -> String {
    let mut out = String::from(
        "# HELP komlogd_impulse_duration_seconds Call durations (quantiles over the latest 1024 calls).\n# TYPE komlogd_impulse_duration_seconds summary\n",
    );
    for (imp, s) in &board.snapshot() {
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

/// The server link's families.
fn encode_server(s: &ServerStatus, now_us: i64, encoder: &mut DescriptorEncoder) -> fmt::Result {
    single(
        encoder,
        "komlogd_server_connected",
        "1 while the link to the server is connected, else 0.",
        ConstGauge::new(u64::from(s.state == "connected")),
    )?;
    let series: [(&str, MetricType, &str, u64); 11] = [
        (
            "logins",
            MetricType::Counter,
            "Successful logins.",
            s.logins,
        ),
        (
            "outbox_samples",
            MetricType::Gauge,
            "Samples in the outbox, waiting for the server's acknowledgement.",
            s.outbox,
        ),
        (
            "samples_sent",
            MetricType::Counter,
            "Samples sent (resends included).",
            s.sent,
        ),
        (
            "samples_acked",
            MetricType::Counter,
            "Samples the server acknowledged.",
            s.acked,
        ),
        (
            "samples_refused",
            MetricType::Counter,
            "Samples the server refused (dropped from the outbox).",
            s.refused,
        ),
        (
            "messages_sent",
            MetricType::Counter,
            "Write messages sent (resends included); the samples of one time go in one.",
            s.messages,
        ),
        (
            "hooks",
            MetricType::Gauge,
            "Uris hooked at the server now.",
            s.hooked,
        ),
        (
            "hooks_refused",
            MetricType::Gauge,
            "Uris whose hook the server refused.",
            s.hooks_refused.len() as u64,
        ),
        (
            "notified_samples",
            MetricType::Counter,
            "Samples the server notified (handed to the impulses).",
            s.notified,
        ),
        (
            "history_samples",
            MetricType::Counter,
            "Samples fetched from the server's history.",
            s.history,
        ),
        (
            "supplies_sent",
            MetricType::Counter,
            "Datasource supply lists the server acknowledged.",
            s.supplies_sent,
        ),
    ];
    for (name, kind, help, value) in series {
        let name = format!("komlogd_server_{name}");
        if kind == MetricType::Counter {
            single(encoder, &name, help, ConstCounter::new(value))?;
        } else {
            single(encoder, &name, help, ConstGauge::new(value))?;
        }
    }
    let age_us = s
        .outbox_oldest_ts
        .map_or(0, |ts| now_us.saturating_sub(ts).max(0));
    single(
        encoder,
        "komlogd_server_outbox_oldest_age_seconds",
        "Now minus the time of the oldest sample in the outbox (0 when empty).",
        ConstGauge::new(seconds(age_us as f64)),
    )?;
    if let Some(ts) = s.last_error_ts {
        single(
            encoder,
            "komlogd_server_last_error_timestamp_seconds",
            "When the link's last error happened.",
            ConstGauge::new(seconds(ts as f64)),
        )?;
    }
    family(
        encoder,
        "komlogd_server_state",
        "The link's state: 1 for the current one.",
        MetricType::Gauge,
        ["connecting", "connected", "backoff", "stopped"].map(|state| {
            (
                [("url", s.url.as_str()), ("state", state)],
                ConstGauge::new(u64::from(s.state == state)),
            )
        }),
    )
}

/// The packages' families.
fn encode_packages(board: &PackageBoard, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let reports = package_reports(board);
    let labels = |p: &PackageReport| [("package", p.name.clone())];
    info_family(
        encoder,
        "komlogd_package",
        "Package version (hash) and state; always 1.",
        reports.iter().map(|p| {
            [
                ("package", p.name.as_str()),
                ("version", p.version.as_deref().unwrap_or("")),
                ("state", p.state.as_str()),
            ]
        }),
    )?;
    family(
        encoder,
        "komlogd_package_jobs",
        "Scheduled jobs.",
        MetricType::Gauge,
        reports
            .iter()
            .map(|p| (labels(p), ConstGauge::new(p.jobs as u64))),
    )?;
    type Series = (&'static str, &'static str, fn(&PackageReport) -> u64);
    let counters: &[Series] = &[
        ("runs", "Job runs, failed ones included.", |p| p.runs),
        ("failures", "Job runs that failed.", |p| p.failures),
        ("samples", "Samples returned by jobs.", |p| p.samples),
    ];
    for (name, help, get) in counters {
        family(
            encoder,
            &format!("komlogd_package_{name}"),
            help,
            MetricType::Counter,
            reports
                .iter()
                .map(|p| (labels(p), ConstCounter::new(get(p)))),
        )?;
    }
    family(
        encoder,
        "komlogd_package_last_run_timestamp_seconds",
        "Time of the latest job run.",
        MetricType::Gauge,
        reports.iter().filter_map(|p| {
            let ts = p.last_run_ts?;
            Some((labels(p), ConstGauge::new(seconds(ts as f64))))
        }),
    )
}

/// The jobs' families, labelled by `uri` (the job's name).
/// The sinks' families, labelled by `sink` (its name) and `type`.
fn encode_sinks(board: &crate::sinks::SinkBoard, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let reports = board.snapshot();
    if reports.is_empty() {
        return Ok(());
    }
    type Report = crate::sinks::SinkReport;
    let labels = |r: &Report| [("sink", r.name.clone()), ("type", r.kind.clone())];
    type Series = (&'static str, &'static str, fn(&Report) -> u64);
    let counters: &[Series] = &[
        ("sent", "Samples the sink delivered.", |r| r.sent),
        (
            "retried",
            "Failed tries of a batch that were tried again.",
            |r| r.retried,
        ),
        ("failed", "Samples the destination refused for good.", |r| {
            r.failed
        }),
        (
            "dropped",
            "Samples skipped because the sink fell more than max_lag behind.",
            |r| r.dropped,
        ),
        (
            "resent",
            "Samples sent again after a restart that the destination may have had.",
            |r| r.resent,
        ),
    ];
    for (name, help, get) in counters {
        family(
            encoder,
            &format!("komlogd_sink_{name}_samples"),
            help,
            MetricType::Counter,
            reports
                .iter()
                .map(|r| (labels(r), ConstCounter::new(get(r)))),
        )?;
    }
    family(
        encoder,
        "komlogd_sink_lag_samples",
        "Samples of the log the sink has not passed yet.",
        MetricType::Gauge,
        reports
            .iter()
            .map(|r| (labels(r), ConstGauge::new(r.lag_samples as f64))),
    )?;
    family(
        encoder,
        "komlogd_sink_lag_seconds",
        "Age of the oldest sample waiting to be sent.",
        MetricType::Gauge,
        reports
            .iter()
            .map(|r| (labels(r), ConstGauge::new(r.lag_seconds))),
    )?;
    family(
        encoder,
        "komlogd_sink_retrying",
        "1 while the sink's destination fails and the batch is being retried.",
        MetricType::Gauge,
        reports
            .iter()
            .map(|r| (labels(r), ConstGauge::new(i64::from(r.state == "retrying")))),
    )
}

/// The metric listeners' families, labelled by `listener` (`statsd`,
/// `line_protocol`).
fn encode_listeners(board: &ListenerBoard, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let snapshot = board.snapshot();
    if snapshot.is_empty() {
        return Ok(());
    }
    type Read = fn(&crate::sources::listen::ListenerReport) -> u64;
    let counters: [(&str, &str, Read); 3] = [
        (
            "komlogd_listener_lines",
            "Lines received, good and bad.",
            |r| r.lines,
        ),
        (
            "komlogd_listener_samples",
            "Samples stored from the lines.",
            |r| r.samples,
        ),
        (
            "komlogd_listener_refused_samples",
            "Samples the agent refused.",
            |r| r.refused,
        ),
    ];
    for (name, help, get) in counters {
        family(
            encoder,
            name,
            help,
            MetricType::Counter,
            snapshot.iter().map(|r| {
                (
                    [("listener", r.protocol.as_str())],
                    ConstCounter::new(get(r)),
                )
            }),
        )?;
    }
    family(
        encoder,
        "komlogd_listener_bad_lines",
        "Lines refused, by kind: syntax, value, uri, too_long.",
        MetricType::Counter,
        snapshot.iter().flat_map(|r| {
            r.bad_by_kind().map(|(kind, n)| {
                (
                    [("listener", r.protocol.as_str()), ("kind", kind)],
                    ConstCounter::new(n),
                )
            })
        }),
    )
}

fn encode_jobs(board: &JobBoard, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let reports = board.snapshot();
    let labels = |j: &JobReport| [("uri", j.name.clone())];
    type Series = (&'static str, &'static str, fn(&JobReport) -> u64);
    let counters: &[Series] = &[
        ("runs", "Job runs that ended, failed ones included.", |j| {
            j.runs
        }),
        (
            "failures",
            "Job runs that failed (non-zero exit, not started, output too large, timeout, error).",
            |j| j.failures,
        ),
        ("timeouts", "Job runs killed by their timeout.", |j| {
            j.timeouts
        }),
        ("bytes", "Bytes of job output sent as samples.", |j| j.bytes),
    ];
    for (name, help, get) in counters {
        family(
            encoder,
            &format!("komlogd_job_{name}"),
            help,
            MetricType::Counter,
            reports
                .iter()
                .map(|j| (labels(j), ConstCounter::new(get(j)))),
        )?;
    }
    family(
        encoder,
        "komlogd_job_last_run_timestamp_seconds",
        "Scheduled time of the latest job run that ended.",
        MetricType::Gauge,
        reports.iter().filter_map(|j| {
            let ts = j.last_run_ts?;
            Some((labels(j), ConstGauge::new(seconds(ts as f64))))
        }),
    )?;
    family(
        encoder,
        "komlogd_job_last_duration_seconds",
        "How long the latest job run took.",
        MetricType::Gauge,
        reports.iter().filter_map(|j| {
            let us = j.last_duration_us?;
            Some((labels(j), ConstGauge::new(seconds(us as f64))))
        }),
    )
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serve `GET /metrics` on `listener` until `shutdown` turns true: one request
/// per connection, its head read within [`REQUEST_TIMEOUT`].
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    boards: Boards,
    mut shutdown: watch::Receiver<bool>,
) {
    let collector = StatusCollector::from(boards);
    let registry = Arc::new(collector.clone().registry());
    let impulses = collector.impulses;
    let sinks = collector.sinks;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let registry = registry.clone();
                let impulses = impulses.clone();
                let sinks = sinks.clone();
                let service = hyper::service::service_fn(move |request| {
                    answer_http(request, registry.clone(), impulses.clone(), sinks.clone())
                });
                tokio::spawn(async move {
                    let served = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .max_buf_size(MAX_REQUEST_BYTES)
                        .timer(TokioTimer::new())
                        .header_read_timeout(REQUEST_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
        }
    }
}

async fn answer_http(
    request: Request<Incoming>,
    registry: Arc<Registry>,
    impulses: Option<StatsBoard>,
    sinks: Option<crate::sinks::SinkBoard>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            // Counting the outbox reads the store.
            let collect = move || text_of(&registry, impulses.as_ref(), sinks.as_ref());
            match tokio::task::spawn_blocking(collect).await {
                Ok(text) => (StatusCode::OK, prometheus_text::CONTENT_TYPE, text),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("cannot collect the metrics: {e}\n"),
                ),
            }
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "komlogd serves GET /metrics only\n".to_owned(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Ok(response)
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

    /// The server link's families, byte for byte as the endpoint has always
    /// written them (label values escaped, whole numbers without a fraction).
    #[test]
    fn server_series_keep_their_names_types_and_values() {
        let s = ServerStatus {
            url: "http://h\"q/".into(),
            state: "backoff".into(),
            outbox: 3,
            sent: 10,
            messages: 4,
            acked: 7,
            refused: 1,
            logins: 2,
            hooked: 5,
            notified: 6,
            history: 8,
            supplies_sent: 9,
            last_error_ts: Some(1_700_000_000_250_000),
            outbox_oldest_ts: Some(1_700_000_000_000_000),
            ..ServerStatus::default()
        };
        let expected = GOLDEN_SERVER;
        assert_eq!(server_prometheus_text(&s, 1_700_000_003_500_000), expected);
        // No error yet: no error time; an empty outbox is 0 s old.
        let quiet = ServerStatus {
            state: "connected".into(),
            ..ServerStatus::default()
        };
        let text = server_prometheus_text(&quiet, 1_700_000_000_000_000);
        assert!(!text.contains("last_error"), "{text}");
        assert!(text.contains("\nkomlogd_server_connected 1\n"), "{text}");
        assert!(
            text.contains("\nkomlogd_server_outbox_oldest_age_seconds 0\n"),
            "{text}"
        );
    }

    #[test]
    fn impulse_series_keep_their_names_types_and_values() {
        let board = StatsBoard::default();
        let stats = crate::impulses::stats::SharedStats::default();
        {
            let mut cell = crate::impulses::stats::lock(&stats);
            let s = cell.stats();
            s.fires = 3;
            s.memory_high_water = 65536;
        }
        board.insert("x".into(), stats);
        assert_eq!(prometheus_text(&board), GOLDEN_IMPULSES);
    }

    const GOLDEN_SERVER: &str = r#"# HELP komlogd_server_connected 1 while the link to the server is connected, else 0.
# TYPE komlogd_server_connected gauge
komlogd_server_connected 0
# HELP komlogd_server_logins_total Successful logins.
# TYPE komlogd_server_logins_total counter
komlogd_server_logins_total 2
# HELP komlogd_server_outbox_samples Samples in the outbox, waiting for the server's acknowledgement.
# TYPE komlogd_server_outbox_samples gauge
komlogd_server_outbox_samples 3
# HELP komlogd_server_samples_sent_total Samples sent (resends included).
# TYPE komlogd_server_samples_sent_total counter
komlogd_server_samples_sent_total 10
# HELP komlogd_server_samples_acked_total Samples the server acknowledged.
# TYPE komlogd_server_samples_acked_total counter
komlogd_server_samples_acked_total 7
# HELP komlogd_server_samples_refused_total Samples the server refused (dropped from the outbox).
# TYPE komlogd_server_samples_refused_total counter
komlogd_server_samples_refused_total 1
# HELP komlogd_server_messages_sent_total Write messages sent (resends included); the samples of one time go in one.
# TYPE komlogd_server_messages_sent_total counter
komlogd_server_messages_sent_total 4
# HELP komlogd_server_hooks Uris hooked at the server now.
# TYPE komlogd_server_hooks gauge
komlogd_server_hooks 5
# HELP komlogd_server_hooks_refused Uris whose hook the server refused.
# TYPE komlogd_server_hooks_refused gauge
komlogd_server_hooks_refused 0
# HELP komlogd_server_notified_samples_total Samples the server notified (handed to the impulses).
# TYPE komlogd_server_notified_samples_total counter
komlogd_server_notified_samples_total 6
# HELP komlogd_server_history_samples_total Samples fetched from the server's history.
# TYPE komlogd_server_history_samples_total counter
komlogd_server_history_samples_total 8
# HELP komlogd_server_supplies_sent_total Datasource supply lists the server acknowledged.
# TYPE komlogd_server_supplies_sent_total counter
komlogd_server_supplies_sent_total 9
# HELP komlogd_server_outbox_oldest_age_seconds Now minus the time of the oldest sample in the outbox (0 when empty).
# TYPE komlogd_server_outbox_oldest_age_seconds gauge
komlogd_server_outbox_oldest_age_seconds 3.5
# HELP komlogd_server_last_error_timestamp_seconds When the link's last error happened.
# TYPE komlogd_server_last_error_timestamp_seconds gauge
komlogd_server_last_error_timestamp_seconds 1700000000.25
# HELP komlogd_server_state The link's state: 1 for the current one.
# TYPE komlogd_server_state gauge
komlogd_server_state{url="http://h\"q/",state="connecting"} 0
komlogd_server_state{url="http://h\"q/",state="connected"} 0
komlogd_server_state{url="http://h\"q/",state="backoff"} 1
komlogd_server_state{url="http://h\"q/",state="stopped"} 0
"#;

    const GOLDEN_IMPULSES: &str = r#"# HELP komlogd_impulse_fires_total Calls of on-update that returned.
# TYPE komlogd_impulse_fires_total counter
komlogd_impulse_fires_total{impulse="x"} 3
# HELP komlogd_impulse_skips_total Fires skipped by min_exec_delta.
# TYPE komlogd_impulse_skips_total counter
komlogd_impulse_skips_total{impulse="x"} 0
# HELP komlogd_impulse_backoff_skips_total Fires skipped while backing off after a failure.
# TYPE komlogd_impulse_backoff_skips_total counter
komlogd_impulse_backoff_skips_total{impulse="x"} 0
# HELP komlogd_impulse_disabled_skips_total Fires skipped while disabled.
# TYPE komlogd_impulse_disabled_skips_total counter
komlogd_impulse_disabled_skips_total{impulse="x"} 0
# HELP komlogd_impulse_queue_full_skips_total Fires dropped because the fires waiting for the impulse held its queue limit.
# TYPE komlogd_impulse_queue_full_skips_total counter
komlogd_impulse_queue_full_skips_total{impulse="x"} 0
# HELP komlogd_impulse_guest_errors_total Fires whose guest returned err.
# TYPE komlogd_impulse_guest_errors_total counter
komlogd_impulse_guest_errors_total{impulse="x"} 0
# HELP komlogd_impulse_retries_total Events retried on a fresh instance.
# TYPE komlogd_impulse_retries_total counter
komlogd_impulse_retries_total{impulse="x"} 0
# HELP komlogd_impulse_failed_events_total Events that failed on their retry too.
# TYPE komlogd_impulse_failed_events_total counter
komlogd_impulse_failed_events_total{impulse="x"} 0
# HELP komlogd_impulse_outputs_total Output samples stored.
# TYPE komlogd_impulse_outputs_total counter
komlogd_impulse_outputs_total{impulse="x"} 0
# HELP komlogd_impulse_invalid_outputs_total Output samples dropped for breaking a rule.
# TYPE komlogd_impulse_invalid_outputs_total counter
komlogd_impulse_invalid_outputs_total{impulse="x"} 0
# HELP komlogd_impulse_remote_writes_dropped_total Output samples to another user's uri, dropped.
# TYPE komlogd_impulse_remote_writes_dropped_total counter
komlogd_impulse_remote_writes_dropped_total{impulse="x"} 0
# HELP komlogd_impulse_chain_cut_total Outputs stored without firing further (chain depth).
# TYPE komlogd_impulse_chain_cut_total counter
komlogd_impulse_chain_cut_total{impulse="x"} 0
# HELP komlogd_impulse_swaps_total Module versions swapped in while running.
# TYPE komlogd_impulse_swaps_total counter
komlogd_impulse_swaps_total{impulse="x"} 0
# HELP komlogd_impulse_state_carried_total Swaps whose in-memory state was carried over.
# TYPE komlogd_impulse_state_carried_total counter
komlogd_impulse_state_carried_total{impulse="x"} 0
# HELP komlogd_impulse_state_dropped_total Swaps whose state could not be carried over.
# TYPE komlogd_impulse_state_dropped_total counter
komlogd_impulse_state_dropped_total{impulse="x"} 0
# HELP komlogd_impulse_rejected_versions_total New module versions refused by the load check.
# TYPE komlogd_impulse_rejected_versions_total counter
komlogd_impulse_rejected_versions_total{impulse="x"} 0
# HELP komlogd_impulse_failures_total Failed calls by kind.
# TYPE komlogd_impulse_failures_total counter
komlogd_impulse_failures_total{impulse="x",kind="trap"} 0
komlogd_impulse_failures_total{impulse="x",kind="deadline"} 0
komlogd_impulse_failures_total{impulse="x",kind="memory"} 0
komlogd_impulse_failures_total{impulse="x",kind="fuel"} 0
komlogd_impulse_failures_total{impulse="x",kind="instantiate"} 0
# HELP komlogd_impulse_memory_high_water_bytes Largest linear memory reached.
# TYPE komlogd_impulse_memory_high_water_bytes gauge
komlogd_impulse_memory_high_water_bytes{impulse="x"} 65536
# HELP komlogd_impulse_info Module version (hash) and state (failed: it could not be loaded); always 1.
# TYPE komlogd_impulse_info gauge
komlogd_impulse_info{impulse="x",version="",state="running"} 1
# HELP komlogd_impulse_duration_seconds Call durations (quantiles over the latest 1024 calls).
# TYPE komlogd_impulse_duration_seconds summary
komlogd_impulse_duration_seconds{impulse="x",quantile="0.5"} 0
komlogd_impulse_duration_seconds{impulse="x",quantile="0.99"} 0
komlogd_impulse_duration_seconds_sum{impulse="x"} 0
komlogd_impulse_duration_seconds_count{impulse="x"} 0
"#;
}
