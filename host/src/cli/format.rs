//! Human and JSON renderings of samples and uri listings.

use std::fmt::Write;
use std::time::Duration;

use crate::model::{Sample, Value};
use crate::store::UriInfo;

/// RFC 3339 UTC with microseconds, or the raw number with `us` for a time
/// outside the valid range (see [`crate::model::format_ts`]).
pub fn time(ts: i64) -> String {
    crate::model::format_ts(ts)
}

/// Samples, one per line (multi-line texts indented below their header).
pub fn samples(samples: &[Sample], json: bool) -> String {
    if json {
        let rows: Vec<serde_json::Value> = samples
            .iter()
            .map(|s| {
                let (kind, value) = match &s.value {
                    Value::Datapoint(v) => ("datapoint", serde_json::json!(v)),
                    Value::Datasource(t) => ("datasource", serde_json::json!(t)),
                };
                serde_json::json!({"uri": s.uri, "ts": s.ts, "time": time(s.ts), "kind": kind, "value": value})
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let mut out = String::new();
    for s in samples {
        match &s.value {
            Value::Datapoint(v) => {
                let _ = writeln!(out, "{}  {}  {v}", time(s.ts), s.uri);
            }
            Value::Datasource(t) if !t.contains('\n') => {
                let _ = writeln!(out, "{}  {}  {t}", time(s.ts), s.uri);
            }
            Value::Datasource(t) => {
                let _ = writeln!(out, "{}  {}", time(s.ts), s.uri);
                for line in t.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    out
}

/// The stored uris with their kind, count and time span.
pub fn uris(uris: &[UriInfo], json: bool) -> String {
    if json {
        let rows: Vec<serde_json::Value> = uris
            .iter()
            .map(|u| {
                serde_json::json!({"uri": u.uri, "kind": u.kind.as_str(), "count": u.count,
                    "first_ts": u.first_ts, "last_ts": u.last_ts})
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let mut out = String::new();
    for u in uris {
        let _ = writeln!(
            out,
            "{}  {}  {} sample{}, last {}",
            u.uri,
            u.kind,
            u.count,
            if u.count == 1 { "" } else { "s" },
            time(u.last_ts)
        );
    }
    out
}

/// A running agent's status: a table, one impulse per line, then each impulse's
/// last error; or the JSON answer as received.
pub fn status(report: &crate::agent::status::StatusReport, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
    let num = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0)
    };
    // Counters are integers: summed as such (a float sum of nothing is -0).
    let count = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
    };
    let text = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut out = format!(
        "komlogd pid {}, up {}\n",
        report.pid,
        humantime::format_duration(Duration::from_secs(report.uptime_s as u64))
    );
    // The impulses subscribed to a uri whose hook the server refused.
    let hook_refused = |name: &str| {
        report.server.iter().any(|s| {
            s.hooks_refused
                .iter()
                .any(|r| r.impulses.iter().any(|i| i == name))
        })
    };
    let _ = writeln!(
        out,
        "{:<20} {:<12} {:<12} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "IMPULSE",
        "STATE",
        "VERSION",
        "FIRES",
        "SKIPS",
        "FAILURES",
        "P50",
        "P99",
        "MEMORY",
        "REMOTE"
    );
    for imp in &report.impulses {
        let m = &imp.stats;
        let failures: u64 = m
            .get("failures")
            .and_then(serde_json::Value::as_object)
            .map(|f| f.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0);
        let skips = count(m, "skips")
            + count(m, "backoff_skips")
            + count(m, "disabled_skips")
            + count(m, "queue_full_skips");
        let version = Some(text(m, "version"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "-".to_owned());
        let mut state = text(m, "state");
        if state == "running" && hook_refused(&imp.name) {
            // It runs, but the server sends it nothing for that uri.
            state = "hook-refused".into();
        }
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:<12} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9} {:>7}",
            imp.name,
            state,
            version.get(..12).unwrap_or(&version),
            count(m, "fires"),
            skips,
            failures,
            micros(num(m, "duration_p50_us")),
            micros(num(m, "duration_p99_us")),
            bytes(num(m, "memory_high_water")),
            count(m, "remote_writes_dropped"),
        );
    }
    if let Some(server) = &report.server {
        let state = match server.backoff_ms {
            Some(ms) => format!("{} (retry in {ms} ms)", server.state),
            None => server.state.clone(),
        };
        let oldest = server
            .outbox_oldest_ts
            .map(|ts| format!(" (oldest {})", seconds(ts)))
            .unwrap_or_default();
        let refused_hooks = match server.hooks_refused.len() {
            0 => String::new(),
            n => format!(", hooks refused {n}"),
        };
        // With several servers: which of them this is.
        let which = match server.urls.iter().position(|u| *u == server.url) {
            Some(i) if server.urls.len() > 1 => {
                format!(" (server {} of {})", i + 1, server.urls.len())
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "server: {}{which} {state}, outbox {}{oldest}, sent {}, acked {}, refused {}, logins {}, hooked {}{refused_hooks}",
            server.url,
            server.outbox,
            server.sent,
            server.acked,
            server.refused,
            server.logins,
            server.hooked
        );
        if let Some(err) = &server.last_error {
            let when = match (server.last_error_ts, server.last_error_is_past()) {
                (Some(ts), true) => format!(" ({}, before the current connection)", seconds(ts)),
                (Some(ts), false) => format!(" ({})", seconds(ts)),
                (None, _) => String::new(),
            };
            let _ = writeln!(out, "server: last error{when}: {err}");
        }
    }
    if !report.packages.is_empty() {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<12} {:>5} {:>8} {:>8}  LAST RUN",
            "PACKAGE", "STATE", "VERSION", "JOBS", "RUNS", "FAILURES"
        );
        for p in &report.packages {
            let version = p.version.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<12} {:>5} {:>8} {:>8}  {}",
                p.name,
                p.state,
                version.get(..12).unwrap_or(version),
                p.jobs,
                p.runs,
                p.failures,
                p.last_run_ts.map_or_else(|| "-".to_owned(), time)
            );
        }
    }
    if !report.jobs.is_empty() {
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:>6} {:>8} {:>8} {:>5} {:>9} {:>9}  {:<27}  {:<27}  SCHEDULE",
            "JOB",
            "STATE",
            "RUNS",
            "FAILURES",
            "TIMEOUTS",
            "EXIT",
            "DURATION",
            "SENT",
            "LAST RUN",
            "NEXT RUN"
        );
        for j in &report.jobs {
            let exit = match (j.last_exit_code, j.last_signal) {
                (Some(code), _) => code.to_string(),
                (None, Some(signal)) => format!("sig{signal}"),
                (None, None) => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<20} {:<9} {:>6} {:>8} {:>8} {:>5} {:>9} {:>9}  {:<27}  {:<27}  {}",
                j.name,
                j.state,
                j.runs,
                j.failures,
                j.timeouts,
                exit,
                j.last_duration_us
                    .map_or_else(|| "-".to_owned(), |us| micros(us as f64)),
                bytes(j.bytes as f64),
                j.last_run_ts.map_or_else(|| "-".to_owned(), time),
                j.next_run_ts.map_or_else(|| "-".to_owned(), time),
                j.schedules.join(", ")
            );
        }
    }
    for l in &report.listeners {
        let _ = writeln!(
            out,
            "listener {} on {}: {} lines, {} samples stored, {} refused; bad lines: syntax {}, value {}, uri {}, too long {}",
            l.protocol,
            l.listen.as_deref().unwrap_or("-"),
            l.lines,
            l.samples,
            l.refused,
            l.bad_syntax,
            l.bad_value,
            l.bad_uri,
            l.bad_too_long
        );
    }
    for s in &report.sinks {
        let _ = writeln!(out, "{}", crate::sinks::status_line(s));
    }
    for imp in &report.impulses {
        if let Some(reason) = imp.stats.get("reason").and_then(serde_json::Value::as_str) {
            let _ = writeln!(out, "{}: failed: {reason}", imp.name);
        } else if let Some(err) = imp
            .stats
            .get("last_error")
            .and_then(serde_json::Value::as_str)
        {
            let _ = writeln!(out, "{}: last error: {err}", imp.name);
        }
        if let Some(server) = &report.server {
            for r in server
                .hooks_refused
                .iter()
                .filter(|r| r.impulses.contains(&imp.name))
            {
                let _ = writeln!(
                    out,
                    "{}: hook refused by the server for {} ({}): {}",
                    imp.name,
                    r.uri,
                    seconds(r.ts),
                    r.reason
                );
            }
        }
    }
    for p in &report.packages {
        if let Some(reason) = &p.reason {
            let _ = writeln!(out, "package {}: failed: {reason}", p.name);
        } else if let Some(err) = &p.last_error {
            let _ = writeln!(out, "package {}: last error: {err}", p.name);
        }
    }
    for j in &report.jobs {
        if let Some(err) = &j.last_error {
            let _ = writeln!(out, "job {}: last error: {err}", j.name);
        }
    }
    out
}

/// RFC 3339 UTC to the second, or the raw number with `us` before 1970.
fn seconds(ts: i64) -> String {
    match u64::try_from(ts) {
        Ok(us) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_micros(us))
                .to_string()
        }
        Err(_) => format!("{ts}us"),
    }
}

/// A duration in µs, with the unit that suits it (`12.5µs`, `3.20ms`, `1.50s`).
pub fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}µs")
    }
}

/// A size in bytes, with the unit that suits it (`512B`, `12KiB`, `1.5MiB`).
pub fn bytes(b: f64) -> String {
    if b >= (1u64 << 20) as f64 {
        format!("{:.1}MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.0}KiB", b / 1024.0)
    } else {
        format!("{b:.0}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::{ImpulseStatus, StatusReport};

    fn report(stats: serde_json::Value) -> StatusReport {
        let serde_json::Value::Object(stats) = stats else {
            panic!("stats must be an object");
        };
        StatusReport {
            pid: 1,
            uptime_s: 5.0,
            impulses: vec![ImpulseStatus {
                name: "imp".into(),
                stats,
            }],
            server: None,
            packages: Vec::new(),
            jobs: Vec::new(),
            listeners: Vec::new(),
            sinks: Vec::new(),
        }
    }

    /// The columns of the impulse's row.
    fn row(table: &str) -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with("imp "))
            .unwrap_or_else(|| panic!("no row in {table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_impulse_without_failures_shows_zero_failures_not_minus_zero() {
        let table = status(
            &report(serde_json::json!({
                "version": "abc", "state": "running", "fires": 3, "failures": {},
            })),
            false,
        );
        assert_eq!(row(&table)[3..6], ["3", "0", "0"], "{table}");
        let table = status(
            &report(serde_json::json!({
                "version": "abc", "state": "backoff", "fires": 3, "skips": 1,
                "backoff_skips": 2, "failures": {"trap": 2, "deadline": 1},
            })),
            false,
        );
        assert_eq!(
            row(&table)[1..6],
            ["backoff", "abc", "3", "3", "3"],
            "{table}"
        );
    }

    fn server(state: &str) -> crate::session::ServerStatus {
        crate::session::ServerStatus {
            url: "http://hub:8080/".into(),
            state: state.into(),
            outbox: 2,
            outbox_oldest_ts: Some(1_700_000_000_000_000),
            last_error: Some("cannot log in: connection refused".into()),
            last_error_ts: Some(1_700_000_003_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn the_server_line_dates_the_last_error_and_says_when_it_is_past() {
        let mut r = report(serde_json::json!({"state": "running"}));
        r.server = Some(server("backoff"));
        let table = status(&r, false);
        assert!(
            table.contains(
                "server: http://hub:8080/ backoff, outbox 2 (oldest 2023-11-14T22:13:20Z), sent 0,"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "server: last error (2023-11-14T22:13:23Z): cannot log in: connection refused\n"
            ),
            "{table}"
        );
        let mut up = server("connected");
        up.connected_since_ts = Some(1_700_000_004_000_000);
        r.server = Some(up);
        let table = status(&r, false);
        assert!(
            table.contains(
                "server: last error (2023-11-14T22:13:23Z, before the current connection): cannot log in"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_server_line_names_which_of_several_servers_it_is() {
        let mut r = report(serde_json::json!({"state": "running"}));
        let mut s = server("connected");
        s.urls = vec!["http://other:8080/".into(), "http://hub:8080/".into()];
        r.server = Some(s);
        let table = status(&r, false);
        assert!(
            table.contains("server: http://hub:8080/ (server 2 of 2) connected, outbox 2"),
            "{table}"
        );
    }

    #[test]
    fn an_impulse_whose_hook_was_refused_says_so() {
        let mut r = report(serde_json::json!({"version": "abc", "state": "running"}));
        let mut s = server("connected");
        s.hooks_refused = vec![crate::session::HookRefusal {
            uri: "bob:secret".into(),
            reason: "refused (4403): msg exec denied".into(),
            ts: 1_700_000_005_000_000,
            impulses: vec!["imp".into()],
        }];
        r.server = Some(s);
        let table = status(&r, false);
        assert_eq!(row(&table)[1], "hook-refused", "{table}");
        assert!(table.contains(", hooks refused 1\n"), "{table}");
        assert!(
            table.contains(
                "imp: hook refused by the server for bob:secret (2023-11-14T22:13:25Z): refused (4403): msg exec denied\n"
            ),
            "{table}"
        );
    }
}
