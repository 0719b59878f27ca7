//! What a package declares ([`Manifest`], [`Job`], [`Schedule`],
//! [`PackageImpulse`]) and what one run receives ([`JobCall`], [`Params`]).
//!
//! The types are the WIT records of `komlog:impulse/package-types`; this
//! module adds builders. komlogd checks the manifest when `load` returns:
//! job ids unique and 1–128 characters, at least one schedule per job, cron
//! expressions valid, intervals and `refresh` at least one second, impulse
//! names of letters, digits, `_` and `-` with valid uris.

use komlog_guest::{Sample, Subscription};

/// When a job runs: `Cron("*/5 * * * *")` (5-field, local time, whole
/// minutes) or `Every(µs)` (a fixed interval, at least one second; it first
/// fires when the job is scheduled).
pub use crate::bindings::komlog::impulse::package_types::Schedule;

/// One job: a stable id, schedules and params. Build it with [`Job::new`].
pub use crate::bindings::komlog::impulse::package_types::Job;

/// What `load` returns. Build it with [`Manifest::new`].
pub use crate::bindings::komlog::impulse::package_types::Manifest;

/// An impulse the package brings: a name, a subscription and params.
pub use crate::bindings::komlog::impulse::package_types::PackageImpulse;

impl Job {
    /// A job with id `id` and no schedule yet.
    pub fn new(id: impl Into<String>) -> Job {
        Job {
            id: id.into(),
            schedules: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Also run every `period` microseconds.
    pub fn every(mut self, period: u64) -> Job {
        self.schedules.push(Schedule::Every(period));
        self
    }

    /// Also run when the cron expression `expr` matches.
    pub fn cron(mut self, expr: impl Into<String>) -> Job {
        self.schedules.push(Schedule::Cron(expr.into()));
        self
    }

    /// Add a parameter passed to every run.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Job {
        self.params.push((name.into(), value.into()));
        self
    }
}

impl Manifest {
    /// No jobs, no impulses, no refresh.
    pub fn new() -> Manifest {
        Manifest {
            jobs: Vec::new(),
            refresh: None,
            impulses: Vec::new(),
        }
    }

    /// Add a job.
    pub fn job(mut self, job: Job) -> Manifest {
        self.jobs.push(job);
        self
    }

    /// Ask komlogd to call `load` again every `period` microseconds.
    pub fn refresh(mut self, period: u64) -> Manifest {
        self.refresh = Some(period);
        self
    }

    /// Add an impulse.
    pub fn impulse(mut self, impulse: PackageImpulse) -> Manifest {
        self.impulses.push(impulse);
        self
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}

impl PackageImpulse {
    /// An impulse named `name` (letters, digits, `_`, `-`) with `subscription`.
    pub fn new(name: impl Into<String>, subscription: Subscription) -> PackageImpulse {
        PackageImpulse {
            name: name.into(),
            subscription,
            params: Vec::new(),
        }
    }

    /// Add a parameter of its fires.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> PackageImpulse {
        self.params.push((name.into(), value.into()));
        self
    }
}

impl Schedule {
    /// `every:<µs>` or `cron:<expr>`: a compact text, handy in logs and samples.
    pub fn label(&self) -> String {
        match self {
            Schedule::Every(us) => format!("every:{us}"),
            Schedule::Cron(expr) => format!("cron:{expr}"),
        }
    }
}

/// Parameters in file order (scalars as their YAML text, lists and maps as JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, String)>);

impl From<Vec<(String, String)>> for Params {
    fn from(v: Vec<(String, String)>) -> Self {
        Params(v)
    }
}

impl Params {
    /// The raw value of `name` (the first one if repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as a finite number: `Ok(None)` if absent, `Err` naming it if not a number.
    pub fn f64(&self, name: &str) -> Result<Option<f64>, String> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("param `{name}` is not a finite number: `{raw}`")),
        }
    }

    /// Every parameter in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCall {
    /// The job's id.
    pub id: String,
    /// When its schedules fired, µs since the epoch (UTC): stamp samples with it.
    pub ts: i64,
    /// The schedules that fired, in the order the job declared them.
    pub fired: Vec<Schedule>,
    /// The job's params.
    pub params: Params,
}

impl JobCall {
    /// A call built by hand, for native tests.
    pub fn new(id: impl Into<String>, ts: i64, fired: Vec<Schedule>) -> JobCall {
        JobCall {
            id: id.into(),
            ts,
            fired,
            params: Params::default(),
        }
    }

    /// The samples of `f`, run with a [`crate::Metrics`] stamped at `ts`.
    pub fn metrics(&self, f: impl FnOnce(&mut crate::Metrics)) -> Vec<Sample> {
        let mut m = crate::Metrics::new(self.ts);
        f(&mut m);
        m.into_samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field() {
        let job = Job::new("j").every(5).cron("* * * * *").param("k", "v");
        assert_eq!(job.id, "j");
        assert_eq!(
            job.schedules,
            vec![Schedule::Every(5), Schedule::Cron("* * * * *".into())]
        );
        assert_eq!(job.params, vec![("k".to_string(), "v".to_string())]);
        let m = Manifest::new()
            .job(job.clone())
            .refresh(7)
            .impulse(PackageImpulse::new("i", Subscription::new(["a.b"])).param("x", "1"));
        assert_eq!(m.jobs, vec![job]);
        assert_eq!(m.refresh, Some(7));
        assert_eq!(m.impulses[0].name, "i");
        assert_eq!(
            m.impulses[0].params,
            vec![("x".to_string(), "1".to_string())]
        );
        assert_eq!(Schedule::Every(5).label(), "every:5");
        let p = Params::from(vec![("n".into(), " 2.5 ".into()), ("s".into(), "x".into())]);
        assert_eq!(p.f64("n"), Ok(Some(2.5)));
        assert!(p.f64("s").is_err());
        assert_eq!(p.f64("none"), Ok(None));
    }
}
