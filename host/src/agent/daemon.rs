//! The running agent: sources feed the dispatcher until shutdown.
//!
//! Scheduled jobs run as tokio tasks and send their samples through a bounded
//! channel to one dispatcher thread, which owns the store and the impulses. The
//! dispatcher drains everything pending into one batch (one durable commit) before
//! running impulses, so bursts cost one fsync. On shutdown the jobs stop first
//! (running children are killed and reaped), then the dispatcher finishes what is
//! queued and closes the store: nothing is left half-written.

use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};
use crate::model::Sample;
use crate::sources::jobs::{self, Clock};

use super::Agent;

/// How many batches may wait for the dispatcher before sources wait in turn.
const QUEUE_BATCHES: usize = 1024;

/// What a run did, for the final log line and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Jobs scheduled (enabled ones, external files included).
    pub jobs: usize,
    /// Source samples stored.
    pub stored: u64,
    /// Source samples refused.
    pub refused: u64,
    /// Impulse fires.
    pub fires: u64,
}

/// The jobs of a configuration: its own, plus external job files when allowed.
/// Problems with external files are logged; the good files still count.
pub fn jobs_of(config: &Config) -> Vec<config::JobConfig> {
    let mut jobs: Vec<_> = config.jobs.iter().filter(|j| j.enabled).cloned().collect();
    if config.allow_external_jobs {
        let (external, errors) = config::load_external_jobs(config);
        for e in errors {
            tracing::error!("{e}");
        }
        jobs.extend(external.into_iter().filter(|j| j.enabled));
    }
    jobs
}

/// Run `agent` with the jobs of `config` until `shutdown` turns true, then stop
/// cleanly. Must be called inside a tokio runtime.
pub async fn run(
    agent: Agent,
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> RunSummary {
    let jobs = jobs_of(config);
    let job_count = jobs.len();
    tracing::info!(
        jobs = job_count,
        impulses = agent.dispatcher.stats().len(),
        "komlogd running in local mode"
    );
    let (tx, rx) = mpsc::channel::<Vec<Sample>>(QUEUE_BATCHES);
    let dispatcher = thread::Builder::new()
        .name("komlogd-dispatch".into())
        .spawn(move || dispatch_loop(agent, rx));
    let dispatcher = match dispatcher {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot start the dispatcher thread: {e}");
            return RunSummary::default();
        }
    };
    let mut stop = shutdown.clone();
    jobs::run_jobs(jobs, clock, tx, shutdown).await;
    // With no jobs (or once they are all done) the agent still runs until told to stop.
    let _ = stop.wait_for(|stopped| *stopped).await;
    // The sender is gone: the dispatcher drains the queue and returns.
    let mut summary = tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    summary.jobs = job_count;
    tracing::info!(?summary, "komlogd stopped");
    summary
}

fn dispatch_loop(mut agent: Agent, mut rx: mpsc::Receiver<Vec<Sample>>) -> RunSummary {
    let mut summary = RunSummary::default();
    while let Some(mut batch) = rx.blocking_recv() {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        match agent.dispatcher.ingest(batch) {
            Ok(report) => {
                tracing::debug!(
                    stored = report.accepted,
                    fires = report.fires,
                    outputs = report.outputs,
                    "batch stored"
                );
                summary.stored += report.accepted as u64;
                summary.refused += report.rejected.len() as u64;
                summary.fires += report.fires;
                for r in report.rejected {
                    tracing::warn!(uri = %r.uri, ts = r.ts, "sample refused: {}", r.reason);
                }
            }
            Err(e) => tracing::error!("cannot store samples: {e}"),
        }
    }
    summary
}
