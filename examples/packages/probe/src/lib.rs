//! `probe-package`: a test package whose jobs come from a text the test
//! controls, and whose runs report what they received.
//!
//! Params of the `- package:` block:
//!
//! * `jobs_file` — a path (inside a granted directory) holding the job list,
//!   read at every `load`; or `jobs` — the list itself, entries separated by `|`.
//!   An entry is `<id> <schedules> [key=value ...]`, where `<schedules>` is a
//!   `,`-separated list of `every:<milliseconds>` and `cron:<expr>` (spaces in
//!   the expression written as `_`), and the key=value pairs become the job's
//!   params.
//! * `refresh` — milliseconds between `load` calls.
//! * `fail_load` — `load` returns `Err` with this text.
//! * `supplies` — datasources and what they supply, declared at every `load`:
//!   `<datasource>=<uri>,<uri>` entries separated by `;`. A refused declaration
//!   makes `load` return the agent's error.
//! * `impulse_on` — a uri: the package also declares its impulse `count` on
//!   it, which writes datapoint `<uri>.fires` = a host-kept counter of the
//!   impulse's fires for each updated uri.
//!
//! What a run returns depends on the job's `kind` param:
//!
//! * `count` (default): datapoint `probe.<id>.runs` = a host-kept counter
//!   incremented by each run, and datasource `probe.<id>.fired` = the labels
//!   of the fired schedules joined by `,` (`every:1000000,cron:* * * * *`).
//! * `metrics`: one call of each metrics-API function under `probe.m.` (see
//!   `metrics_run`).
//! * `env`: datasource `probe.env.<NAME>` = the variable's value, or `<unset>`,
//!   for each name of the `vars` param (`,`-separated).
//! * `write`: tries to create the file `path`; datasource `probe.write` = `ok`
//!   or the error.
//! * `fail`: returns `Err("probe asked to fail")`.
//! * `trap`: panics.
//! * `sleep`: `std::thread::sleep` for an hour (one blocking host wait).
//! * `clock`: datasource `probe.clock` = `wall_us=<µs since the epoch>
//!   random=<32 hex digits>`, from the WASI wall clock and random source.

use komlog_package::komlog_guest::time::MILLISECOND;
use komlog_package::prelude::*;

struct Probe;

fn parse_jobs(text: &str) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::new();
    for entry in text
        .split(['|', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let mut words = entry.split_whitespace();
        let id = words.next().ok_or("empty job entry")?;
        let schedules = words
            .next()
            .ok_or_else(|| format!("job {id}: no schedules"))?;
        let mut job = Job::new(id);
        for s in schedules.split(',') {
            job = if let Some(ms) = s.strip_prefix("every:") {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("job {id}: bad interval {ms}"))?;
                job.every(ms * MILLISECOND)
            } else if let Some(expr) = s.strip_prefix("cron:") {
                job.cron(expr.replace('_', " "))
            } else {
                return Err(format!("job {id}: bad schedule {s}"));
            };
        }
        for kv in words {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("job {id}: bad param {kv}"))?;
            job = job.param(k, v);
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// One call of each metrics-API function, in this order.
fn metrics_run(ts: i64) -> Vec<Sample> {
    let mut m = Metrics::new(ts);
    m.gauge("probe.m.gauge", 2.5, &[("host", "a")]);
    m.increment("probe.m.count", &[("k", "v")]);
    m.increment_by("probe.m.count", 2.0, &[]);
    m.decrement("probe.m.count", &[("k", "v")]);
    m.decrement_by("probe.m.count", 0.5, &[]);
    m.event(
        "probe.m.event",
        "hello",
        &[("sev", "info"), ("bad key", "x")],
    );
    m.timing("probe.m.timing", 12.5, &[("op", "read")]);
    m.timed("probe.m.timed", &[], || std::hint::black_box(1 + 1));
    m.custom(
        "probe.m.custom",
        Value::Datasource("x".into()),
        &[("k", "v")],
    );
    m.into_samples()
}

impl Package for Probe {
    fn load(params: Params) -> Result<Manifest, String> {
        if let Some(why) = params.get("fail_load") {
            return Err(why.to_owned());
        }
        let text = match params.get("jobs_file") {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
            }
            None => params.get("jobs").unwrap_or_default().to_owned(),
        };
        for entry in params
            .get("supplies")
            .unwrap_or_default()
            .split(';')
            .filter(|e| !e.trim().is_empty())
        {
            let (datasource, list) = entry
                .split_once('=')
                .ok_or_else(|| format!("bad supplies entry {entry}"))?;
            let list: Vec<&str> = list.split(',').filter(|u| !u.is_empty()).collect();
            declare_supplies(datasource.trim(), &list)?;
        }
        let mut manifest = Manifest::new();
        for job in parse_jobs(&text)? {
            manifest = manifest.job(job);
        }
        if let Some(ms) = params.f64("refresh")? {
            manifest = manifest.refresh((ms as u64) * MILLISECOND);
        }
        if let Some(uri) = params.get("impulse_on") {
            manifest = manifest.impulse(PackageImpulse::new("count", Subscription::new([uri])));
        }
        Ok(manifest)
    }

    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let mut m = Metrics::new(ctx.ts);
        for uri in &ctx.updated {
            m.increment(&format!("{uri}.fires"), &[]);
        }
        Ok(m.into_samples())
    }

    fn run_job(call: JobCall) -> Result<Vec<Sample>, String> {
        let id = &call.id;
        match call.params.get("kind").unwrap_or("count") {
            "count" => {
                let mut m = Metrics::new(call.ts);
                m.increment(&format!("probe.{id}.runs"), &[]);
                let fired: Vec<String> = call.fired.iter().map(Schedule::label).collect();
                m.event(&format!("probe.{id}.fired"), &fired.join(","), &[]);
                Ok(m.into_samples())
            }
            "metrics" => Ok(metrics_run(call.ts)),
            "env" => Ok(call
                .params
                .get("vars")
                .unwrap_or_default()
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| {
                    let value = std::env::var(v).unwrap_or_else(|_| "<unset>".into());
                    Sample::datasource(format!("probe.env.{v}"), call.ts, value)
                })
                .collect()),
            "write" => {
                let path = call.params.get("path").ok_or("no path")?;
                let result = match std::fs::write(path, b"x") {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                Ok(vec![Sample::datasource("probe.write", call.ts, result)])
            }
            "fail" => Err("probe asked to fail".into()),
            "trap" => panic!("probe asked to trap"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err("probe slept an hour".into())
            }
            "clock" => {
                let wall_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                let random: String = wasip2::random::random::get_random_bytes(16)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let text = format!("wall_us={wall_us} random={random}");
                Ok(vec![Sample::datasource("probe.clock", call.ts, text)])
            }
            other => Err(format!("unknown kind {other}")),
        }
    }
}

komlog_package::export_package!(Probe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_entries_parse() {
        let jobs = parse_jobs("a every:1000,cron:*/5_*_*_*_* kind=count | b every:2000").unwrap();
        assert_eq!(
            jobs[0],
            Job::new("a")
                .every(1_000_000)
                .cron("*/5 * * * *")
                .param("kind", "count")
        );
        assert_eq!(jobs[1], Job::new("b").every(2_000_000));
        assert!(parse_jobs("c nonsense").is_err());
    }
}
