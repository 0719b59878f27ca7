//! A package's job table: when each job runs next, which schedules fired, and
//! how a new job list from a refresh is applied.
//!
//! **Firing.** Each schedule of a job has its own next instant. A job is due
//! when any of its schedules is; [`JobTable::take_due`] returns one run per
//! due job, stamped with the latest of the instants that fired, listing the
//! schedules that fired (in declared order), and moves each fired schedule on:
//! a cron schedule to its next matching minute after the fire, an interval to
//! the first multiple of its period after now (missed fires are skipped, not
//! replayed).
//!
//! **Refresh** (Grafolean's rule). [`JobTable::apply`] compares the new job
//! list with the running one by id: a new id is scheduled, a gone id is
//! cancelled, a job whose schedules or params changed is rescheduled as if new,
//! and an unchanged job keeps its next instants untouched. A newly scheduled
//! interval fires at once, then every period; a cron schedule at its next match.
//!
//! Times are µs since the epoch, UTC; cron expressions are read in the
//! machine's local time zone, as `- job:` schedules are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use croner::Cron;

use super::manifest::{JobSpec, Schedule};
use crate::sources::jobs::{LocalZone, next_fire};

/// One run to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    /// The job.
    pub id: String,
    /// The instant it is stamped with (the latest fired schedule's), µs.
    pub ts: i64,
    /// The schedules that fired, in declared order.
    pub fired: Vec<Schedule>,
    /// The job's params.
    pub params: Vec<(String, String)>,
}

/// What [`JobTable::apply`] changed, by id (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New ids, scheduled.
    pub added: Vec<String>,
    /// Gone ids, cancelled.
    pub removed: Vec<String>,
    /// Ids whose schedules or params changed, rescheduled.
    pub changed: Vec<String>,
    /// Ids left as they were, timing kept.
    pub kept: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    spec: JobSpec,
    crons: Vec<Option<Cron>>,
    /// Next instant per schedule; None: never again (a cron that cannot match).
    next: Vec<Option<i64>>,
}

impl Entry {
    fn new(spec: JobSpec, now: i64) -> Entry {
        let crons = spec.crons();
        let next = spec
            .schedules
            .iter()
            .zip(&crons)
            .map(|(s, cron)| match s {
                Schedule::Every(_) => Some(now),
                Schedule::Cron(_) => cron.as_ref().and_then(|c| cron_after(c, now)),
            })
            .collect();
        Entry { spec, crons, next }
    }
}

/// The next match of `cron` strictly after `after` (µs), local time.
fn cron_after(cron: &Cron, after: i64) -> Option<i64> {
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(after)?;
    let next = next_fire(std::slice::from_ref(cron), &at.with_timezone(&LocalZone))?;
    Some(next.with_timezone(&Utc).timestamp_micros())
}

/// The jobs of one package and their timing.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: BTreeMap<String, Entry>,
}

impl JobTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the job list by `jobs` at `now` (see the module documentation).
    pub fn apply(&mut self, jobs: Vec<JobSpec>, now: i64) -> Changes {
        let mut changes = Changes::default();
        let mut old = std::mem::take(&mut self.jobs);
        for spec in jobs {
            let id = spec.id.clone();
            let entry = match old.remove(&id) {
                Some(entry) if entry.spec == spec => {
                    changes.kept.push(id.clone());
                    entry
                }
                Some(_) => {
                    changes.changed.push(id.clone());
                    Entry::new(spec, now)
                }
                None => {
                    changes.added.push(id.clone());
                    Entry::new(spec, now)
                }
            };
            self.jobs.insert(id, entry);
        }
        changes.removed = old.into_keys().collect();
        changes.added.sort();
        changes.changed.sort();
        changes.kept.sort();
        changes
    }

    /// The earliest next instant of any job, µs.
    pub fn next_due(&self) -> Option<i64> {
        self.jobs
            .values()
            .flat_map(|e| e.next.iter().flatten())
            .min()
            .copied()
    }

    /// The next instants of job `id`, by schedule (for status and tests).
    pub fn next_of(&self, id: &str) -> Option<Vec<Option<i64>>> {
        self.jobs.get(id).map(|e| e.next.clone())
    }

    /// The ids scheduled, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    /// The runs due at `now`, in id order, and the table moved past them.
    pub fn take_due(&mut self, now: i64) -> Vec<DueRun> {
        let mut runs = Vec::new();
        for entry in self.jobs.values_mut() {
            let mut fired = Vec::new();
            let mut ts = i64::MIN;
            for (i, next) in entry.next.iter_mut().enumerate() {
                let Some(at) = *next else { continue };
                if at > now {
                    continue;
                }
                fired.push(entry.spec.schedules[i].clone());
                ts = ts.max(at);
                *next = match &entry.spec.schedules[i] {
                    Schedule::Every(period) => {
                        let period = i64::try_from(*period).unwrap_or(i64::MAX).max(1);
                        // The first multiple of the period after now.
                        let missed = (now - at) / period;
                        Some(at.saturating_add(period.saturating_mul(missed + 1)))
                    }
                    Schedule::Cron(_) => entry.crons[i]
                        .as_ref()
                        .and_then(|c| cron_after(c, now.max(at))),
                };
            }
            if !fired.is_empty() {
                runs.push(DueRun {
                    id: entry.spec.id.clone(),
                    ts,
                    fired,
                    params: entry.spec.params.clone(),
                });
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn every(id: &str, periods: &[i64]) -> JobSpec {
        JobSpec {
            id: id.into(),
            schedules: periods.iter().map(|p| Schedule::Every(*p as u64)).collect(),
            params: vec![],
        }
    }

    #[test]
    fn intervals_fire_at_once_then_every_period_with_the_fired_schedules() {
        let mut t = JobTable::new();
        let t0 = 1_700_000_000 * S;
        t.apply(vec![every("j", &[S, 2 * S])], t0);
        let run = t.take_due(t0);
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].ts, t0);
        assert_eq!(
            run[0].fired,
            vec![Schedule::Every(1_000_000), Schedule::Every(2_000_000)]
        );
        assert!(t.take_due(t0 + S - 1).is_empty());
        let run = t.take_due(t0 + S);
        assert_eq!(run[0].fired, vec![Schedule::Every(1_000_000)]);
        assert_eq!(run[0].ts, t0 + S);
        let run = t.take_due(t0 + 2 * S + 10);
        assert_eq!(run[0].ts, t0 + 2 * S, "stamped with the instant that fired");
        assert_eq!(run[0].fired.len(), 2);
        assert_eq!(t.next_due(), Some(t0 + 3 * S));
    }

    #[test]
    fn a_late_run_skips_the_missed_fires() {
        let mut t = JobTable::new();
        let t0 = 1_700_000_000 * S;
        t.apply(vec![every("j", &[S])], t0);
        t.take_due(t0);
        let runs = t.take_due(t0 + 5 * S + S / 2);
        assert_eq!(runs.len(), 1, "one run, not five");
        assert_eq!(runs[0].ts, t0 + S);
        assert_eq!(t.next_due(), Some(t0 + 6 * S));
    }

    #[test]
    fn refresh_adds_removes_reschedules_and_keeps_timing() {
        let mut t = JobTable::new();
        let t0 = 1_700_000_000 * S;
        t.apply(
            vec![
                every("keep", &[10 * S]),
                every("change", &[10 * S]),
                every("gone", &[10 * S]),
            ],
            t0,
        );
        t.take_due(t0);
        let kept_next = t.next_of("keep").expect("keep");
        assert_eq!(kept_next, vec![Some(t0 + 10 * S)]);
        let later = t0 + 3 * S;
        let changes = t.apply(
            vec![
                every("keep", &[10 * S]),
                every("change", &[20 * S]),
                every("new", &[10 * S]),
            ],
            later,
        );
        assert_eq!(
            changes,
            Changes {
                added: vec!["new".into()],
                removed: vec!["gone".into()],
                changed: vec!["change".into()],
                kept: vec!["keep".into()],
            }
        );
        assert_eq!(
            t.next_of("keep"),
            Some(kept_next),
            "unchanged job keeps its timing"
        );
        assert_eq!(
            t.next_of("change"),
            Some(vec![Some(later)]),
            "rescheduled from now"
        );
        assert_eq!(t.next_of("new"), Some(vec![Some(later)]));
        assert_eq!(t.next_of("gone"), None);
        let due: Vec<_> = t.take_due(later).into_iter().map(|r| r.id).collect();
        assert_eq!(due, vec!["change", "new"]);
        // Params are part of a job's identity.
        let mut with_params = every("keep", &[10 * S]);
        with_params.params = vec![("k".into(), "v".into())];
        let changes = t.apply(
            vec![
                with_params,
                every("change", &[20 * S]),
                every("new", &[10 * S]),
            ],
            later + S,
        );
        assert_eq!(changes.changed, vec!["keep".to_string()]);
        assert_eq!(changes.kept, vec!["change".to_string(), "new".to_string()]);
    }

    #[test]
    fn cron_schedules_fire_on_whole_minutes() {
        let mut t = JobTable::new();
        let t0 = 1_700_000_000 * S + 123_456; // not on a minute
        let spec = JobSpec {
            id: "c".into(),
            schedules: vec![
                Schedule::Cron("* * * * *".into()),
                Schedule::Every(3600 * S as u64),
            ],
            params: vec![],
        };
        t.apply(vec![spec], t0);
        let next = t.next_of("c").expect("c");
        let cron_next = next[0].expect("cron matches");
        assert!(cron_next > t0 && cron_next - t0 <= 60 * S);
        assert_eq!(cron_next % (60 * S), 0, "on a whole minute");
        // The interval fires at once, alone.
        let run = t.take_due(t0);
        assert_eq!(run[0].fired, vec![Schedule::Every(3600 * S as u64)]);
        let run = t.take_due(cron_next);
        assert_eq!(run[0].fired, vec![Schedule::Cron("* * * * *".into())]);
        assert_eq!(run[0].ts, cron_next);
        assert_eq!(t.next_of("c").expect("c")[0], Some(cron_next + 60 * S));
    }
}
