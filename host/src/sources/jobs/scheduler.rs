//! The loop that runs every enabled job on its schedules until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::board::{JobBoard, JobTally};
use super::clock::Clock;
use super::runner::{JobOutcome, describe_status, run_job};
use super::schedule::{LocalZone, next_fire};
use crate::config::{JobConfig, parse_cron};
use crate::model::{MAX_DATASOURCE_BYTES, Sample};

/// How late a wake-up may be and still run its minute. Later than this (the wall
/// clock was set forward, or the machine slept), the minute is skipped with a
/// warning and the schedule goes on from the current time.
pub const MAX_LATENESS: TimeDelta = TimeDelta::seconds(60);

/// Run every enabled job of `jobs` on its schedules until `shutdown` is true (or
/// its sender is dropped), then kill the commands still running, reap them, and
/// return.
///
/// * Schedules follow the machine's **local time zone** ([`LocalZone`]; see [`next_fire`] for the
///   daylight saving time rules). Each run is stamped with its scheduled minute.
/// * A job's stdout is sent to `sink` as one sample (see [`JobOutcome`]); every
///   other outcome is logged: a non-zero exit status and invalid UTF-8 at warn
///   (the output is still sent), an empty output at info (nothing sent), output
///   over [`MAX_DATASOURCE_BYTES`] at warn with its size (dropped), a timeout at warn
///   (the command and its process group are killed, nothing sent), and a command
///   that cannot be started at error, naming the job's file:line and command. The
///   job stays scheduled in every case.
/// * **A job never runs twice at once**: a run is going from the spawn until the
///   command has exited and its output has been read; a scheduled minute that
///   comes while it is going is skipped and logged. Sending the sample waits for
///   room in `sink` but does not hold back the next run. Different jobs run
///   independently and concurrently.
/// * Disabled jobs, and jobs with no usable schedule, are not scheduled (logged).
pub async fn run_jobs(
    jobs: Vec<JobConfig>,
    clock: Arc<dyn Clock>,
    sink: mpsc::Sender<Vec<Sample>>,
    shutdown: watch::Receiver<bool>,
) {
    run_job_board(JobBoard::new(jobs), clock, sink, shutdown).await;
}

/// [`run_jobs`] over the jobs of `board`, reporting there what each one does
/// (its next run, each run's outcome, the samples sent).
pub async fn run_job_board(
    board: JobBoard,
    clock: Arc<dyn Clock>,
    sink: mpsc::Sender<Vec<Sample>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    for (job, tally) in board.jobs() {
        if !job.enabled {
            tracing::info!(
                "job {}: disabled ({}:{}); not scheduled",
                job.uri,
                job.file.display(),
                job.line
            );
            continue;
        }
        let Some(crons) = compile(&job) else {
            tally.stopped();
            continue;
        };
        tasks.spawn(job_loop(
            job,
            tally,
            crons,
            clock.clone(),
            sink.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a job task ended abnormally: {e}");
        }
    }
}

/// The job's schedules; `None` (logged) when none can be used.
fn compile(job: &JobConfig) -> Option<Vec<Cron>> {
    let mut crons = Vec::new();
    for expr in &job.schedules {
        match parse_cron(expr) {
            Ok(cron) => crons.push(cron),
            Err(e) => tracing::error!(
                "{}:{}: job {}: schedule {expr:?} ignored: {e}",
                job.file.display(),
                job.line,
                job.uri
            ),
        }
    }
    if crons.is_empty() {
        tracing::error!(
            "{}:{}: job {}: no usable schedule; not scheduled",
            job.file.display(),
            job.line,
            job.uri
        );
        return None;
    }
    Some(crons)
}

/// Resolves when `shutdown` becomes true or its sender is dropped.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A scheduled minute as written in logs: local time with its UTC offset.
fn minute_text(at: DateTime<Utc>) -> String {
    at.with_timezone(&LocalZone)
        .format("%Y-%m-%d %H:%M%:z")
        .to_string()
}

/// One job's schedule loop.
async fn job_loop(
    job: Arc<JobConfig>,
    tally: JobTally,
    crons: Vec<Cron>,
    clock: Arc<dyn Clock>,
    sink: mpsc::Sender<Vec<Sample>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let busy = Arc::new(AtomicBool::new(false));
    let mut runs = JoinSet::new();
    let mut after = clock.now();
    loop {
        while runs.try_join_next().is_some() {}
        let Some(next) = next_fire(&crons, &after.with_timezone(&LocalZone)) else {
            tracing::warn!(
                "{}:{}: job {}: its schedules never match again; no more runs",
                job.file.display(),
                job.line,
                job.uri
            );
            break;
        };
        let next = next.to_utc();
        tally.next_run(next);
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            () = clock.sleep_until(next) => {}
        }
        let now = clock.now();
        if now - next > MAX_LATENESS {
            tracing::warn!(
                "job {}: woke up {}s after the run of {} was due (the clock was changed or the machine slept); skipping it",
                job.uri,
                (now - next).num_seconds(),
                minute_text(next)
            );
            after = now;
            continue;
        }
        after = next;
        if busy.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "job {}: previous run still going, skipping the run of {}",
                job.uri,
                minute_text(next)
            );
            continue;
        }
        runs.spawn(run_and_send(
            job.clone(),
            tally.clone(),
            next,
            busy.clone(),
            sink.clone(),
            shutdown.clone(),
        ));
    }
    tally.stopped();
    // The runs see the same shutdown signal and kill their commands.
    while runs.join_next().await.is_some() {}
}

/// One run: run the command, report the outcome, send the sample.
async fn run_and_send(
    job: Arc<JobConfig>,
    tally: JobTally,
    scheduled: DateTime<Utc>,
    busy: Arc<AtomicBool>,
    sink: mpsc::Sender<Vec<Sample>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    tally.started();
    let began = std::time::Instant::now();
    let outcome = run_job(&job, scheduled, stopped(&mut stop)).await;
    tally.finished(&job, scheduled, began.elapsed(), &outcome);
    busy.store(false, Ordering::Release);
    let Some(sample) = report(&job, scheduled, outcome) else {
        return;
    };
    let bytes = match &sample.value {
        crate::model::Value::Datasource(text) => text.len(),
        crate::model::Value::Datapoint(_) => 0,
    };
    tokio::select! {
        biased;
        sent = sink.send(vec![sample]) => {
            if sent.is_ok() {
                tally.sent(bytes);
            } else {
                tracing::warn!(
                    "job {}: the sample of the run of {} was dropped: nobody receives samples any more",
                    job.uri,
                    minute_text(scheduled)
                );
            }
        }
        () = stopped(&mut shutdown) => tracing::info!(
            "job {}: the sample of the run of {} was dropped: shutting down",
            job.uri,
            minute_text(scheduled)
        ),
    }
}

/// Log an outcome; the sample to send, if any.
pub(super) fn report(
    job: &JobConfig,
    scheduled: DateTime<Utc>,
    outcome: JobOutcome,
) -> Option<Sample> {
    let uri = &job.uri;
    let minute = minute_text(scheduled);
    match outcome {
        JobOutcome::Sample {
            sample, warnings, ..
        } => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            tracing::debug!("job {uri}: the run of {minute} gave a sample");
            return Some(sample);
        }
        JobOutcome::NoOutput { status } if status.success() => {
            tracing::info!("job {uri}: the run of {minute} printed nothing; nothing sent");
        }
        JobOutcome::NoOutput { status } => tracing::warn!(
            "job {uri}: the run of {minute}: {:?} {} and printed nothing; nothing sent",
            job.command,
            describe_status(status)
        ),
        JobOutcome::TooLarge { bytes, status } => {
            let exit = if status.success() {
                String::new()
            } else {
                format!(" (the command {})", describe_status(status))
            };
            tracing::warn!(
                "job {uri}: the output of the run of {minute} is {bytes} bytes, over the datasource limit of {MAX_DATASOURCE_BYTES} bytes; dropped{exit}"
            );
        }
        JobOutcome::TimedOut { after } => tracing::warn!(
            "job {uri}: the run of {minute} was still going after its timeout of {after:?}; killed it, nothing sent"
        ),
        JobOutcome::Interrupted => {
            tracing::info!("job {uri}: the run of {minute} was killed by shutdown; nothing sent");
        }
        JobOutcome::SpawnFailed(message) => {
            tracing::error!("{message}; the job stays scheduled");
        }
        JobOutcome::Error(message) => tracing::error!("{message} (the run of {minute})"),
    }
    None
}
