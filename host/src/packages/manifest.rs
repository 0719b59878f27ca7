//! What a package's `load` returns, checked: job ids unique, schedules that
//! parse, intervals and refresh of at least a second, impulse names and uris
//! valid. A manifest with any problem is refused whole, with every problem named.

use std::collections::HashSet;

use croner::Cron;

use super::bindings;
use crate::config::{self, parse_cron};
use crate::model::Uri;

/// Shortest interval schedule and refresh, µs.
pub const MIN_INTERVAL_US: u64 = 1_000_000;
/// Longest job id, in characters.
pub const MAX_JOB_ID_CHARS: usize = 128;

/// When a job runs (see `schedule` in `wit/package.wit`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// A 5-field cron expression, local time.
    Cron(String),
    /// A fixed interval, µs.
    Every(u64),
}

impl From<&Schedule> for bindings::Schedule {
    fn from(s: &Schedule) -> Self {
        match s {
            Schedule::Cron(e) => bindings::Schedule::Cron(e.clone()),
            Schedule::Every(us) => bindings::Schedule::Every(*us),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron(e) => write!(f, "cron {e:?}"),
            Schedule::Every(us) => write!(
                f,
                "every {}",
                humantime::format_duration(std::time::Duration::from_micros(*us))
            ),
        }
    }
}

/// One job, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Its stable id.
    pub id: String,
    /// Its schedules, in declared order (at least one).
    pub schedules: Vec<Schedule>,
    /// Its params.
    pub params: Vec<(String, String)>,
}

impl JobSpec {
    /// The parsed cron expressions, by schedule index (None for intervals).
    pub(crate) fn crons(&self) -> Vec<Option<Cron>> {
        self.schedules
            .iter()
            .map(|s| match s {
                Schedule::Cron(e) => parse_cron(e).ok(),
                Schedule::Every(_) => None,
            })
            .collect()
    }
}

/// One impulse a package brings, as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpulseDecl {
    /// Its name within the package.
    pub name: String,
    /// Its uris.
    pub uris: Vec<Uri>,
    /// Its window.
    pub data_reqs: config::DataReqs,
    /// Its `min-exec-delta`, µs.
    pub min_exec_delta_us: Option<u64>,
    /// Its params (without the `impulse` entry the agent adds).
    pub params: Vec<(String, String)>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The jobs, in declared order.
    pub jobs: Vec<JobSpec>,
    /// How often to call `load` again, µs.
    pub refresh_us: Option<u64>,
    /// The package's impulses.
    pub impulses: Vec<ImpulseDecl>,
}

/// A manifest that was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest from load(): {}", .problems.join("; "))]
pub struct ManifestError {
    /// The problems, one per item.
    pub problems: Vec<String>,
}

/// Check what `load` returned.
pub fn check(raw: bindings::Manifest) -> Result<Manifest, ManifestError> {
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut jobs = Vec::new();
    for job in raw.jobs {
        let id = job.id;
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_JOB_ID_CHARS {
            problems.push(format!(
                "job id {id:?} must have 1 to {MAX_JOB_ID_CHARS} characters"
            ));
        }
        if !ids.insert(id.clone()) {
            problems.push(format!("job id {id:?} is declared twice"));
        }
        if job.schedules.is_empty() {
            problems.push(format!("job {id:?} has no schedule"));
        }
        let mut schedules = Vec::new();
        for s in job.schedules {
            match s {
                bindings::Schedule::Cron(expr) => {
                    if let Err(e) = parse_cron(&expr) {
                        problems.push(format!("job {id:?}: cron {expr:?}: {e}"));
                    }
                    schedules.push(Schedule::Cron(expr));
                }
                bindings::Schedule::Every(us) => {
                    if us < MIN_INTERVAL_US {
                        problems.push(format!(
                            "job {id:?}: an interval of {us} µs is below the minimum of 1 s"
                        ));
                    }
                    schedules.push(Schedule::Every(us));
                }
            }
        }
        jobs.push(JobSpec {
            id,
            schedules,
            params: job.params,
        });
    }
    if let Some(r) = raw.refresh
        && r < MIN_INTERVAL_US
    {
        problems.push(format!("refresh of {r} µs is below the minimum of 1 s"));
    }
    let mut names = HashSet::new();
    let mut impulses = Vec::new();
    for imp in raw.impulses {
        let name = imp.name;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            problems.push(format!(
                "impulse name {name:?}: use letters, digits, `_` and `-`"
            ));
        }
        if !names.insert(name.clone()) {
            problems.push(format!("impulse {name:?} is declared twice"));
        }
        let sub = imp.subscription;
        if sub.uris.is_empty() {
            problems.push(format!("impulse {name:?} has no uris"));
        }
        let mut uris = Vec::new();
        for u in &sub.uris {
            match Uri::parse(u) {
                Ok(uri) => uris.push(uri),
                Err(e) => problems.push(format!("impulse {name:?}: uri {u:?}: {e}")),
            }
        }
        impulses.push(ImpulseDecl {
            name,
            uris,
            data_reqs: config::DataReqs {
                past_delta_us: sub.data_reqs.past_delta,
                past_count: sub.data_reqs.past_count,
            },
            min_exec_delta_us: sub.min_exec_delta,
            params: imp.params,
        });
    }
    if problems.is_empty() {
        Ok(Manifest {
            jobs,
            refresh_us: raw.refresh,
            impulses,
        })
    } else {
        Err(ManifestError { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::{DataRequirements, Subscription};

    fn job(id: &str, schedules: Vec<bindings::Schedule>) -> bindings::Job {
        bindings::Job {
            id: id.into(),
            schedules,
            params: vec![],
        }
    }

    #[test]
    fn a_good_manifest_is_kept_in_order() {
        let m = check(bindings::Manifest {
            jobs: vec![
                job("b", vec![bindings::Schedule::Every(2_000_000)]),
                job(
                    "a",
                    vec![
                        bindings::Schedule::Cron("*/5 * * * *".into()),
                        bindings::Schedule::Every(1_000_000),
                    ],
                ),
            ],
            refresh: Some(60_000_000),
            impulses: vec![bindings::PackageImpulse {
                name: "cpu_anomaly".into(),
                subscription: Subscription {
                    uris: vec!["a.b".into()],
                    data_reqs: DataRequirements {
                        past_delta: None,
                        past_count: Some(2),
                    },
                    min_exec_delta: None,
                },
                params: vec![],
            }],
        })
        .expect("valid");
        assert_eq!(m.jobs[0].id, "b");
        assert_eq!(
            m.jobs[1].schedules,
            vec![
                Schedule::Cron("*/5 * * * *".into()),
                Schedule::Every(1_000_000)
            ]
        );
        assert_eq!(m.impulses[0].data_reqs.past_count, Some(2));
        assert_eq!(m.refresh_us, Some(60_000_000));
    }

    #[test]
    fn every_problem_is_named() {
        let err = check(bindings::Manifest {
            jobs: vec![
                job("a", vec![]),
                job("a", vec![bindings::Schedule::Every(10)]),
                job("", vec![bindings::Schedule::Cron("61 * * * *".into())]),
            ],
            refresh: Some(5),
            impulses: vec![bindings::PackageImpulse {
                name: "bad name".into(),
                subscription: Subscription {
                    uris: vec!["not..valid".into()],
                    data_reqs: DataRequirements {
                        past_delta: None,
                        past_count: None,
                    },
                    min_exec_delta: None,
                },
                params: vec![],
            }],
        })
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "job \"a\" has no schedule",
            "job id \"a\" is declared twice",
            "below the minimum of 1 s",
            "job id \"\" must have 1 to 128 characters",
            "cron \"61 * * * *\"",
            "refresh of 5 µs",
            "impulse name \"bad name\"",
            "uri \"not..valid\"",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }
}
