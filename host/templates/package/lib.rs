//! `@NAME@`: a komlogd package (a collector).
//!
//! When the agent loads it (a `- package:` block in komlogd.yaml), `load`
//! declares one job, `loadavg`, which runs every `interval` seconds (a param
//! of the block; 60 by default). Each run reads /proc/loadavg and writes the
//! 1, 5 and 15 minute load averages as the datapoints `@NAME@.load1`,
//! `@NAME@.load5` and `@NAME@.load15`, stamped with the run's time.
//!
//! A package sees only what its block grants: this one needs read access to
//! /proc (`grants: {dirs: [/proc]}`).

use komlog_package::prelude::*;

/// The file each run reads.
const LOADAVG: &str = "/proc/loadavg";

struct Collector;

impl Package for Collector {
    fn load(params: Params) -> Result<Manifest, String> {
        manifest(&params)
    }

    fn run_job(call: JobCall) -> Result<Vec<Sample>, String> {
        let text = std::fs::read_to_string(LOADAVG).map_err(|e| {
            format!(
                "cannot read {LOADAVG}: {e}; grant the package read access to /proc \
                 (grants: {{dirs: [/proc]}})"
            )
        })?;
        load_samples(&text, call.ts)
    }
}

komlog_package::export_package!(Collector);

/// The jobs for the block's params: `loadavg`, every `interval` seconds.
fn manifest(params: &Params) -> Result<Manifest, String> {
    let interval = params.f64("interval")?.unwrap_or(60.0);
    if interval < 1.0 {
        return Err(format!(
            "param `interval` is {interval}: use at least 1 (seconds)"
        ));
    }
    let period = (interval * SECOND as f64) as u64;
    Ok(Manifest::new().job(Job::new("loadavg").every(period)))
}

/// The samples of one run at `ts`, from the text of /proc/loadavg
/// (`0.52 0.58 0.59 1/467 12345`).
fn load_samples(text: &str, ts: i64) -> Result<Vec<Sample>, String> {
    let mut fields = text.split_whitespace();
    let mut m = Metrics::new(ts);
    for name in ["load1", "load5", "load15"] {
        let value: f64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("unexpected {LOADAVG}: {:?}", text.trim_end()))?;
        m.gauge(&format!("@NAME@.{name}"), value, &[]);
    }
    Ok(m.into_samples())
}

// The package's logic is plain Rust: `cargo test` runs these natively.
#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000_000;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn one_job_every_interval_seconds() {
        let m = manifest(&params(&[("interval", "5")])).unwrap();
        assert_eq!(m.jobs.len(), 1);
        assert_eq!(m.jobs[0].id, "loadavg");
        assert_eq!(m.jobs[0].schedules, vec![Schedule::Every(5 * SECOND)]);
        let default = manifest(&params(&[])).unwrap();
        assert_eq!(default.jobs[0].schedules, vec![Schedule::Every(60 * SECOND)]);
    }

    #[test]
    fn a_bad_interval_is_refused() {
        assert_eq!(
            manifest(&params(&[("interval", "0.5")])).unwrap_err(),
            "param `interval` is 0.5: use at least 1 (seconds)"
        );
        assert!(manifest(&params(&[("interval", "often")])).is_err());
    }

    #[test]
    fn a_run_writes_the_three_load_averages() {
        let out = load_samples("0.52 0.58 0.59 1/467 12345\n", T).unwrap();
        assert_eq!(
            out,
            vec![
                Sample::datapoint("@NAME@.load1", T, 0.52),
                Sample::datapoint("@NAME@.load5", T, 0.58),
                Sample::datapoint("@NAME@.load15", T, 0.59),
            ]
        );
    }

    #[test]
    fn unexpected_text_is_an_error() {
        assert_eq!(
            load_samples("0.52 x\n", T).unwrap_err(),
            "unexpected /proc/loadavg: \"0.52 x\""
        );
    }
}
