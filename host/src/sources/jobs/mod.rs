//! Scheduled jobs (`- job:` blocks): run a command without a shell on cron
//! schedules and send its stdout as one datasource sample.
//!
//! **Owns:** when a job runs ([`next_fire`], local time), running its command
//! ([`run_job_once`]: process group, timeout, stdout cap, stderr logging), the
//! one-run-at-a-time rule, the loop over all jobs ([`run_jobs`]), and what each
//! job has done so far ([`JobBoard`], shown by `komlogd status` and `/metrics`),
//! and whether a job's program can be found ([`find_program`], for `komlogd check`).
//!
//! **Does not:** parse or validate job blocks (that is [`crate::config`]), or store
//! or forward samples: they go to the `mpsc` channel the caller gives.
//!
//! **Inputs → outputs:** [`JobConfig`](crate::config::JobConfig)s, a [`Clock`] and a
//! shutdown signal → `Vec<Sample>` batches (one sample each) on the channel, and
//! log lines for everything else.
//!
//! **Invariants:** a job never runs twice at once (a minute that comes while its
//! run is going is skipped and logged); a sample's timestamp is its scheduled
//! minute (µs since the epoch, UTC); a sample never exceeds
//! [`MAX_DATASOURCE_BYTES`](crate::model::MAX_DATASOURCE_BYTES); nothing is sent
//! for a run that was killed; a failing job stays scheduled.
//!
//! **Fixed from the original agent** (spec §7.A, §12): stderr is read (a chatty
//! command no longer blocks), invalid UTF-8 is replaced instead of stopping the
//! job for good, oversized output is dropped with a warning giving its size,
//! cron fields are POSIX (not `minute hour dow month dom`), and a timeout exists.
//!
//! **Tests:** `schedule.rs` (cron table, local zone and DST in a child process with
//! `TZ`), `tests.rs` (real commands, and the loop under a [`ManualClock`]).

mod board;
mod clock;
mod program;
mod runner;
mod schedule;
mod scheduler;

#[cfg(test)]
mod tests;

pub use board::{JobBoard, JobReport};
pub use clock::{Clock, ManualClock, SleepFuture, SystemClock};
pub use program::find_program;
pub use runner::{JobOutcome, STDERR_LINE_BYTES, STDERR_LINES_LOGGED, run_job_once};
pub use schedule::{LocalZone, next_fire};
pub use scheduler::{MAX_LATENESS, run_job_board, run_jobs};
