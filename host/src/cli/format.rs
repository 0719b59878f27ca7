//! Human and JSON renderings of samples and uri listings.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::model::{Sample, Value};
use crate::store::UriInfo;

/// RFC 3339 UTC with microseconds, or the raw number for pre-1970 times.
pub fn time(ts: i64) -> String {
    match u64::try_from(ts) {
        Ok(us) => {
            humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(us)).to_string()
        }
        Err(_) => format!("{ts}us"),
    }
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
