//! The InfluxDB 1.x sink (`type: influxdb`): batches written as line protocol to
//! `POST <url>/write?db=<database>&precision=u`.
//!
//! **Owns:** the mapping of samples to points:
//!
//! * measurement: the uri's first level (`host` for `host.cpu.user`, `host` for
//!   `alice:host.cpu`), or `measurement:` when set;
//! * tag `uri`: the whole uri as stored (`host.cpu.user`, `alice:host.cpu`);
//! * field `value` (a float) for a datapoint, field `text` (a string) for a
//!   datasource: two fields, because InfluxDB fixes a field's type per measurement;
//! * the timestamp in microseconds.
//!
//! One point per (measurement, uri, time): a resend overwrites the same point, so
//! InfluxDB dedupes. A 2xx answer delivers the batch; 400 (a point InfluxDB refuses,
//! such as a field type conflict) refuses it for good; 404 (no such database), 5xx
//! and connection errors are retried.

use std::fmt::Write;

use hyper::StatusCode;

use super::http::{Client, HttpUrl, classify};
use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// Writes batches to InfluxDB 1.x.
pub struct InfluxSink {
    base: Result<HttpUrl, String>,
    database: String,
    measurement: Option<String>,
    client: Client,
}

impl InfluxSink {
    /// A sink writing to `database` at `url`, trusting the CA certificates of
    /// `ca` too for `https://`.
    pub fn new(
        url: &str,
        database: &str,
        measurement: Option<String>,
        ca: Option<std::path::PathBuf>,
    ) -> InfluxSink {
        InfluxSink {
            base: HttpUrl::parse(url),
            database: database.to_owned(),
            measurement,
            client: Client::with_ca(ca),
        }
    }

    fn endpoint(&self, path_and_query: &str) -> Result<HttpUrl, SinkError> {
        let base = self.base.clone().map_err(SinkError::Permanent)?;
        let prefix = base
            .path
            .split('?')
            .next()
            .unwrap_or("/")
            .trim_end_matches('/')
            .to_owned();
        Ok(base.with_path(&format!("{prefix}{path_and_query}")))
    }
}

/// Escape a measurement name (commas and spaces).
fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escape a tag value (commas, equals signs and spaces).
fn escape_tag(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// One line of line protocol for `s`.
pub fn line(s: &Sample, measurement: Option<&str>, out: &mut String) {
    let uri = s.uri.split_once(':').map_or(s.uri.as_str(), |(_, u)| u);
    let m = measurement.unwrap_or_else(|| uri.split('.').next().unwrap_or(uri));
    escape_measurement(m, out);
    out.push_str(",uri=");
    escape_tag(&s.uri, out);
    match &s.value {
        Value::Datapoint(v) => {
            out.push_str(" value=");
            // Always a float: `1` would be an integer to InfluxDB.
            let _ = write!(out, "{v:?}");
        }
        Value::Datasource(t) => {
            out.push_str(" text=\"");
            for c in t.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
    let _ = writeln!(out, " {}", s.ts);
}

impl Sink for InfluxSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let ping = self.endpoint("/ping")?;
            let (status, body) = self
                .client
                .request(&ping, "GET", "text/plain", Vec::new())
                .await?;
            classify(&ping, status, &body)
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let db: String = percent_encoding::utf8_percent_encode(
                &self.database,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            let url = self.endpoint(&format!("/write?db={db}&precision=u"))?;
            let mut body = String::with_capacity(batch.len() * 48);
            for s in batch {
                line(s, self.measurement.as_deref(), &mut body);
            }
            let (status, text) = self
                .client
                .request(&url, "POST", "text/plain; charset=utf-8", body.into_bytes())
                .await?;
            if status == StatusCode::NOT_FOUND {
                return Err(SinkError::Retryable(format!(
                    "{}: {status}: {text} (create the database {:?})",
                    url.authority, self.database
                )));
            }
            classify(&url, status, &text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_map_to_points_by_first_level_with_the_uri_as_a_tag() {
        let mut out = String::new();
        let dp = Sample {
            uri: "host.cpu.user".into(),
            ts: 1_700_000_000_000_001,
            value: Value::Datapoint(2.0),
        };
        let ds = Sample {
            uri: "alice:app.log".into(),
            ts: 5,
            value: Value::Datasource("a \"b\" \\c".into()),
        };
        line(&dp, None, &mut out);
        line(&ds, None, &mut out);
        line(&dp, Some("my m"), &mut out);
        assert_eq!(
            out,
            "host,uri=host.cpu.user value=2.0 1700000000000001\n\
             app,uri=alice:app.log text=\"a \\\"b\\\" \\\\c\" 5\n\
             my\\ m,uri=host.cpu.user value=2.0 1700000000000001\n"
        );
    }
}
