//! The Prometheus sinks. Prometheus holds numbers only, so both take datapoints
//! (a datasource is passed over, neither sent nor counted as failed).
//!
//! * `type: prometheus_exporter`: the latest datapoint of each matching uri is
//!   exposed as a gauge on the agent's own `GET /metrics` (the `- metrics:`
//!   listener), for Prometheus to scrape. A sample older than the one exposed
//!   for its uri does not replace it.
//! * `type: prometheus_remote_write`: batches are POSTed to a remote-write
//!   receiver (`/api/v1/write` of a Prometheus started with
//!   `--web.enable-remote-write-receiver`, Mimir, Thanos, VictoriaMetrics…) as
//!   a snappy-compressed protobuf `WriteRequest` (remote write 1.0).
//!
//! **Owns:** the mapping of a uri to a series: the metric name is the uri's local
//! part with every character Prometheus does not allow replaced by `_`
//! (`host.cpu.user` → `host_cpu_user`; `_` first when it starts with a digit),
//! and the label `uri` holds the whole uri (`alice:host.cpu` → `host_cpu{uri="alice:host.cpu"}`),
//! so two uris never share a series. Times go as milliseconds (µs truncated).
//!
//! Remote write: a 2xx answer delivers the batch; 5xx and 429 are retried; any
//! other answer (a 400 for samples out of order or too old for the receiver)
//! refuses the batch for good, counted in `failed`. Prometheus keeps one value
//! per series and millisecond and drops an identical resend silently, so a batch
//! sent again after a crash does not double anything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::http::{Client, HttpUrl};
use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// The metric name of `uri`.
pub fn metric_name(uri: &str) -> String {
    let local = uri.split_once(':').map_or(uri, |(_, u)| u);
    let mut name: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// One exporter sink's values: uri → (value, ts µs).
type Latest = BTreeMap<String, (f64, i64)>;

/// Exposed values, one map for each exporter sink by name.
#[derive(Debug, Clone, Default)]
pub struct Exposition(Arc<Mutex<BTreeMap<String, Latest>>>);

impl Exposition {
    /// Keep the values of the sinks named in `names` only.
    pub fn retain(&self, names: &[&str]) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|k, _| names.contains(&k.as_str()));
    }

    /// Expose the newest datapoint of each uri of `batch` under sink `sink`.
    fn put(&self, sink: &str, batch: &[Sample]) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let values = all.entry(sink.to_owned()).or_default();
        for s in batch {
            if let Value::Datapoint(v) = s.value {
                match values.get(&s.uri) {
                    Some((_, ts)) if *ts > s.ts => {}
                    _ => {
                        values.insert(s.uri.clone(), (v, s.ts));
                    }
                }
            }
        }
    }

    /// The exposed values in the text format 0.0.4: a gauge family a name, one
    /// series a uri (when two exporter sinks expose one uri, the newer value).
    pub fn text(&self) -> String {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut merged: BTreeMap<&str, (f64, i64)> = BTreeMap::new();
        for values in all.values() {
            for (uri, &(v, ts)) in values {
                match merged.get(uri.as_str()) {
                    Some((_, t)) if *t >= ts => {}
                    _ => {
                        merged.insert(uri, (v, ts));
                    }
                }
            }
        }
        let mut families: BTreeMap<String, Vec<(&str, f64)>> = BTreeMap::new();
        for (uri, (v, _)) in merged {
            families.entry(metric_name(uri)).or_default().push((uri, v));
        }
        let mut out = String::new();
        for (name, series) in families {
            out.push_str(&format!(
                "# HELP {name} The latest datapoint of komlog uris.\n# TYPE {name} gauge\n"
            ));
            for (uri, v) in series {
                out.push_str(&format!(
                    "{name}{{uri=\"{}\"}} {}\n",
                    uri.replace('\\', "\\\\").replace('"', "\\\""),
                    number(v)
                ));
            }
        }
        out
    }
}

/// A float as the text format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:?}")
    }
}

/// Exposes the latest datapoints on the agent's `/metrics`.
pub struct ExporterSink {
    name: String,
    exposition: Exposition,
}

impl ExporterSink {
    /// The exporter sink `name`, writing into `exposition`.
    pub fn new(name: &str, exposition: Exposition) -> ExporterSink {
        ExporterSink {
            name: name.to_owned(),
            exposition,
        }
    }
}

impl Sink for ExporterSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.exposition.put(&self.name, batch);
            Ok(())
        })
    }
}

/// Writes batches to a remote-write receiver.
pub struct RemoteWriteSink {
    url: Result<HttpUrl, String>,
    client: Client,
}

impl RemoteWriteSink {
    /// A sink writing to `url`, trusting the CA certificates of `ca` too for
    /// `https://`.
    pub fn new(url: &str, ca: Option<std::path::PathBuf>) -> RemoteWriteSink {
        RemoteWriteSink {
            url: HttpUrl::parse(url),
            client: Client::with_ca(ca),
        }
    }
}

impl Sink for RemoteWriteSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let url = self.url.clone().map_err(SinkError::Permanent)?;
            // An empty WriteRequest: accepted by a receiver, refused by anything else.
            let body = snappy(&[])?;
            self.client
                .post_with(&url, "application/x-protobuf", REMOTE_WRITE_HEADERS, body)
                .await
        })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let url = self.url.clone().map_err(SinkError::Permanent)?;
            let body = snappy(&write_request(batch))?;
            self.client
                .post_with(&url, "application/x-protobuf", REMOTE_WRITE_HEADERS, body)
                .await
        })
    }
}

/// The headers remote write 1.0 asks for, besides the content type.
const REMOTE_WRITE_HEADERS: &[(&str, &str)] = &[
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

fn snappy(bytes: &[u8]) -> Result<Vec<u8>, SinkError> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .map_err(|e| SinkError::Permanent(format!("cannot compress the request: {e}")))
}

/// The protobuf `prometheus.WriteRequest` of the datapoints of `batch`: one
/// series a uri (labels `__name__` and `uri`), its samples in time order.
pub fn write_request(batch: &[Sample]) -> Vec<u8> {
    let mut series: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for s in batch {
        if let Value::Datapoint(v) = s.value {
            series
                .entry(s.uri.as_str())
                .or_default()
                .push((s.ts.div_euclid(1000), v));
        }
    }
    let mut request = Vec::new();
    for (uri, mut samples) in series {
        samples.sort_by_key(|(ms, _)| *ms);
        let mut ts = Vec::new();
        for (name, value) in [("__name__", metric_name(uri).as_str()), ("uri", uri)] {
            let mut label = Vec::new();
            field_bytes(&mut label, 1, name.as_bytes());
            field_bytes(&mut label, 2, value.as_bytes());
            field_bytes(&mut ts, 1, &label);
        }
        for (ms, v) in samples {
            let mut sample = Vec::new();
            key(&mut sample, 1, 1);
            sample.extend_from_slice(&v.to_le_bytes());
            key(&mut sample, 2, 0);
            varint(&mut sample, ms as u64);
            field_bytes(&mut ts, 2, &sample);
        }
        field_bytes(&mut request, 1, &ts);
    }
    request
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(uri: &str, ts: i64, v: f64) -> Sample {
        Sample {
            uri: uri.into(),
            ts,
            value: Value::Datapoint(v),
        }
    }

    #[test]
    fn names_follow_the_uri() {
        assert_eq!(metric_name("host.cpu.user"), "host_cpu_user");
        assert_eq!(metric_name("alice:host.cpu-x"), "host_cpu_x");
        assert_eq!(metric_name("9lives"), "_9lives");
    }

    #[test]
    fn the_exposition_keeps_the_newest_value_of_each_uri() {
        let e = Exposition::default();
        e.put("a", &[dp("host.cpu", 2, 0.5), dp("host.cpu", 1, 9.0)]);
        e.put(
            "b",
            &[dp("alice:host.cpu", 5, 1e21), dp("x.y", 1, f64::NAN)],
        );
        e.put(
            "b",
            &[Sample {
                uri: "t".into(),
                ts: 1,
                value: Value::Datasource("text".into()),
            }],
        );
        assert_eq!(
            e.text(),
            "# HELP host_cpu The latest datapoint of komlog uris.\n# TYPE host_cpu gauge\n\
             host_cpu{uri=\"alice:host.cpu\"} 1e21\nhost_cpu{uri=\"host.cpu\"} 0.5\n\
             # HELP x_y The latest datapoint of komlog uris.\n# TYPE x_y gauge\nx_y{uri=\"x.y\"} NaN\n"
        );
        e.retain(&["a"]);
        assert!(!e.text().contains("x_y"));
    }

    #[test]
    fn a_write_request_is_the_protobuf_prometheus_reads() {
        // One series, two samples out of order, and a datasource left out.
        let bytes = write_request(&[
            dp("a.b", 2_000, 2.0),
            dp("a.b", 1_999, 1.0),
            Sample {
                uri: "t".into(),
                ts: 1,
                value: Value::Datasource("x".into()),
            },
        ]);
        let mut want = vec![0x0a];
        let mut ts = Vec::new();
        for (n, v) in [("__name__", "a_b"), ("uri", "a.b")] {
            let mut l = vec![0x0a, n.len() as u8];
            l.extend_from_slice(n.as_bytes());
            l.push(0x12);
            l.push(v.len() as u8);
            l.extend_from_slice(v.as_bytes());
            ts.push(0x0a);
            ts.push(l.len() as u8);
            ts.extend(l);
        }
        for (v, ms) in [(1.0f64, 1u8), (2.0, 2)] {
            let mut s = vec![0x09];
            s.extend_from_slice(&v.to_le_bytes());
            s.extend([0x10, ms]);
            ts.push(0x12);
            ts.push(s.len() as u8);
            ts.extend(s);
        }
        want.push(ts.len() as u8);
        want.extend(ts);
        assert_eq!(bytes, want);
    }
}
