//! What every configured job has done so far, for `komlogd status` and
//! `/metrics`.
//!
//! **Owns:** the [`JobBoard`] (the jobs the scheduler was given, in order, each
//! with its live counters), the name each job is shown under ([`JobReport::name`]:
//! its uri, `#2`, `#3`… when several jobs write one uri), and what one finished
//! run counts as (a failure, a timeout, the bytes sent).
//!
//! **Does not:** run or schedule anything ([`super::run_job_board`] does and
//! reports here), or render tables and metric lines
//! ([`crate::agent::status`] and the CLI do).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::runner::{JobOutcome, describe_status};
use crate::config::JobConfig;
use crate::model::MAX_DATASOURCE_BYTES;

/// One job in a status report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobReport {
    /// What it is shown and labelled as: its uri, with `#2`, `#3`… for the
    /// second and later jobs writing the same uri.
    pub name: String,
    /// The uri its output is sent to.
    pub uri: String,
    /// The command as written.
    pub command: String,
    /// The file that declares it.
    pub file: String,
    /// The line of its `job` key.
    pub line: usize,
    /// Its cron expressions.
    pub schedules: Vec<String>,
    /// `scheduled` (waiting for its next run), `running`, `disabled`, or
    /// `stopped` (its schedules never match again, or the agent is stopping).
    pub state: String,
    /// When it runs next, µs since the Unix epoch.
    #[serde(default)]
    pub next_run_ts: Option<i64>,
    /// The scheduled minute of the latest run that ended, µs since the Unix epoch.
    #[serde(default)]
    pub last_run_ts: Option<i64>,
    /// How that run ended: `sent`, `no output`, `too large`, `timed out`,
    /// `not started`, `interrupted` or `error`.
    #[serde(default)]
    pub last_outcome: Option<String>,
    /// Its exit status, when it exited.
    #[serde(default)]
    pub last_exit_code: Option<i32>,
    /// The signal that killed it, when one did (not by komlogd's timeout).
    #[serde(default)]
    pub last_signal: Option<i32>,
    /// How long it took, from the start of its command to the end of its output, µs.
    #[serde(default)]
    pub last_duration_us: Option<u64>,
    /// Runs that ended, whatever the outcome.
    pub runs: u64,
    /// Runs that went wrong: a non-zero exit status, a command that could not
    /// start, output over the datasource limit, a timeout, or another error.
    pub failures: u64,
    /// Of those, runs killed by the job's timeout.
    pub timeouts: u64,
    /// Samples sent (one per run that printed something).
    pub samples: u64,
    /// Bytes of output sent, in those samples.
    pub bytes: u64,
    /// The latest problem.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The jobs given to the scheduler, each with its live report. Cheap to
/// clone (shared) and readable from any thread.
#[derive(Debug, Clone, Default)]
pub struct JobBoard {
    entries: Arc<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    job: Arc<JobConfig>,
    report: Mutex<JobReport>,
}

impl JobBoard {
    /// A board for `jobs` (disabled ones included, shown as such), in order.
    pub fn new(jobs: Vec<JobConfig>) -> JobBoard {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let entries = jobs
            .into_iter()
            .map(|job| {
                let name = match seen.iter_mut().find(|(uri, _)| *uri == job.uri) {
                    Some((_, n)) => {
                        *n += 1;
                        format!("{}#{n}", job.uri)
                    }
                    None => {
                        seen.push((job.uri.clone(), 1));
                        job.uri.clone()
                    }
                };
                let report = JobReport {
                    name,
                    uri: job.uri.clone(),
                    command: job.command.clone(),
                    file: job.file.display().to_string(),
                    line: job.line,
                    schedules: job.schedules.clone(),
                    state: if job.enabled { "scheduled" } else { "disabled" }.to_owned(),
                    ..JobReport::default()
                };
                Entry {
                    job: Arc::new(job),
                    report: Mutex::new(report),
                }
            })
            .collect();
        JobBoard {
            entries: Arc::new(entries),
        }
    }

    /// Every job's report, in configuration order.
    pub fn snapshot(&self) -> Vec<JobReport> {
        self.entries
            .iter()
            .map(|e| lock(&e.report).clone())
            .collect()
    }

    /// The jobs with a handle to report on each.
    pub(super) fn jobs(&self) -> impl Iterator<Item = (Arc<JobConfig>, JobTally)> + '_ {
        (0..self.entries.len()).map(|index| {
            (
                self.entries[index].job.clone(),
                JobTally {
                    board: self.clone(),
                    index,
                },
            )
        })
    }
}

fn lock(report: &Mutex<JobReport>) -> MutexGuard<'_, JobReport> {
    report.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the scheduler reports what one job does.
#[derive(Debug, Clone)]
pub(super) struct JobTally {
    board: JobBoard,
    index: usize,
}

impl JobTally {
    fn update(&self, f: impl FnOnce(&mut JobReport)) {
        if let Some(entry) = self.board.entries.get(self.index) {
            f(&mut lock(&entry.report));
        }
    }

    /// Not scheduled: no usable schedule, or no more runs.
    pub(super) fn stopped(&self) {
        self.update(|r| {
            r.state = "stopped".into();
            r.next_run_ts = None;
        });
    }

    /// Its next run is at `next`.
    pub(super) fn next_run(&self, next: DateTime<Utc>) {
        self.update(|r| r.next_run_ts = Some(next.timestamp_micros()));
    }

    /// A run started.
    pub(super) fn started(&self) {
        self.update(|r| r.state = "running".into());
    }

    /// The run of `scheduled` ended with `outcome` after `took`.
    pub(super) fn finished(
        &self,
        job: &JobConfig,
        scheduled: DateTime<Utc>,
        took: Duration,
        outcome: &JobOutcome,
    ) {
        let counted = count(job, outcome);
        self.update(|r| {
            if r.state == "running" {
                r.state = "scheduled".into();
            }
            r.runs += 1;
            r.last_run_ts = Some(scheduled.timestamp_micros());
            r.last_outcome = Some(counted.outcome.into());
            r.last_exit_code = counted.exit_code;
            r.last_signal = counted.signal;
            r.last_duration_us = Some(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            if let Some(problem) = counted.problem {
                r.failures += 1;
                r.last_error = Some(problem);
            }
            if counted.timed_out {
                r.timeouts += 1;
            }
        });
    }

    /// A sample of `bytes` bytes was sent.
    pub(super) fn sent(&self, bytes: usize) {
        self.update(|r| {
            r.samples += 1;
            r.bytes += bytes as u64;
        });
    }
}

/// What one run counts as.
struct Counted {
    outcome: &'static str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    /// Why it is a failure, when it is one.
    problem: Option<String>,
    timed_out: bool,
}

fn count(job: &JobConfig, outcome: &JobOutcome) -> Counted {
    use std::os::unix::process::ExitStatusExt;
    let exited = |status: &std::process::ExitStatus| (status.code(), status.signal());
    let failed_exit = |status: &std::process::ExitStatus, what: &str| {
        (!status.success()).then(|| format!("{:?} {}{what}", job.command, describe_status(*status)))
    };
    let plain = |outcome, problem| Counted {
        outcome,
        exit_code: None,
        signal: None,
        problem,
        timed_out: false,
    };
    match outcome {
        JobOutcome::Sample { status, .. } => {
            let (exit_code, signal) = exited(status);
            Counted {
                outcome: "sent",
                exit_code,
                signal,
                problem: failed_exit(status, "; its output was sent anyway"),
                timed_out: false,
            }
        }
        JobOutcome::NoOutput { status } => {
            let (exit_code, signal) = exited(status);
            Counted {
                outcome: "no output",
                exit_code,
                signal,
                problem: failed_exit(status, " and printed nothing"),
                timed_out: false,
            }
        }
        JobOutcome::TooLarge { bytes, status } => {
            let (exit_code, signal) = exited(status);
            Counted {
                outcome: "too large",
                exit_code,
                signal,
                problem: Some(format!(
                    "the output was {bytes} bytes, over the datasource limit of {MAX_DATASOURCE_BYTES} bytes; dropped"
                )),
                timed_out: false,
            }
        }
        JobOutcome::TimedOut { after } => Counted {
            timed_out: true,
            ..plain(
                "timed out",
                Some(format!(
                    "still going after its timeout of {after:?}; killed, nothing sent"
                )),
            )
        },
        JobOutcome::Interrupted => plain("interrupted", None),
        JobOutcome::SpawnFailed(message) => plain("not started", Some(message.clone())),
        JobOutcome::Error(message) => plain("error", Some(message.clone())),
    }
}
