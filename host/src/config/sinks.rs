//! The `- sink:` entries: where the agent forwards the samples it stores (files, a
//! webhook, PostgreSQL, InfluxDB 1.x). Each block names one destination, the uris
//! and kinds it takes, and how samples are batched; the delivery itself is
//! [`crate::sinks`]' business.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{SINK_BATCH_KEYS, SINK_KEYS, SINK_ROTATE_KEYS};
use super::yaml::{Ctx, Node, line};
use crate::sinks::UriPattern;

/// The default batch size (samples).
pub const DEFAULT_SINK_BATCH_SIZE: usize = 5000;
/// The default batch age.
pub const DEFAULT_SINK_BATCH_AGE: Duration = Duration::from_secs(1);
/// The default `max_lag` (samples).
pub const DEFAULT_SINK_MAX_LAG: u64 = 1_000_000;
/// The default PostgreSQL table.
pub const DEFAULT_SINK_TABLE: &str = "komlog_samples";
/// The default number of rotated files kept.
pub const DEFAULT_SINK_KEEP: u32 = 5;

/// One `- sink:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Its name (default: its type): the key of its cursor, and its label in status
    /// and metrics. Unique.
    pub name: String,
    /// Where the samples go.
    pub destination: Destination,
    /// The uri patterns; a sample goes when its uri matches any.
    pub uris: Vec<UriPattern>,
    /// Forward datapoints.
    pub datapoints: bool,
    /// Forward datasources.
    pub datasources: bool,
    /// The most samples in one batch.
    pub batch_size: usize,
    /// How long the first sample of a batch may wait for more.
    pub batch_age: Duration,
    /// How many samples the sink may fall behind before the oldest are dropped.
    pub max_lag: u64,
    /// More CA certificates (PEM) to trust for an `https://` URL.
    pub ca: Option<PathBuf>,
}

/// The format of a file sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// `uri,ts,kind,value` lines.
    Csv,
}

/// A sink's destination, by `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `type: file`.
    File {
        /// The file written.
        path: PathBuf,
        /// Its format.
        format: FileFormat,
        /// Rotate when the file reaches this size.
        rotate_bytes: Option<u64>,
        /// Rotated files kept.
        keep: u32,
    },
    /// `type: webhook`.
    Webhook {
        /// The `http://` URL batches are POSTed to.
        url: String,
    },
    /// `type: postgres`.
    Postgres {
        /// The connection string (URL or key=value).
        url: String,
        /// The table, created if missing.
        table: String,
    },
    /// `type: redis`.
    Redis {
        /// `redis://[[user]:password@]host[:port][/db]`.
        url: String,
        /// The stream appended to.
        stream: String,
    },
    /// `type: mqtt`.
    Mqtt {
        /// `mqtt://[user[:password]@]host[:port]`.
        url: String,
        /// The topic prefix.
        topic: String,
    },
    /// `type: nats`.
    Nats {
        /// `nats://[user[:password]@]host[:port]`.
        url: String,
        /// The subject prefix.
        subject: String,
        /// The JetStream stream published into, if any.
        jetstream: Option<String>,
    },
    /// `type: prometheus_exporter`: the latest datapoints on the agent's `/metrics`.
    PrometheusExporter,
    /// `type: prometheus_remote_write`.
    PrometheusRemoteWrite {
        /// The receiver's `http://` URL (`…/api/v1/write`).
        url: String,
    },
    /// `type: influxdb`.
    Influxdb {
        /// The `http://` base URL of InfluxDB 1.x.
        url: String,
        /// The database written to.
        database: String,
        /// A fixed measurement instead of the uri's first level.
        measurement: Option<String>,
    },
}

impl Destination {
    /// The block's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Destination::File { .. } => "file",
            Destination::Webhook { .. } => "webhook",
            Destination::Postgres { .. } => "postgres",
            Destination::Influxdb { .. } => "influxdb",
            Destination::Redis { .. } => "redis",
            Destination::Mqtt { .. } => "mqtt",
            Destination::Nats { .. } => "nats",
            Destination::PrometheusExporter => "prometheus_exporter",
            Destination::PrometheusRemoteWrite { .. } => "prometheus_remote_write",
        }
    }
}

const TYPES: &[&str] = &[
    "file",
    "webhook",
    "postgres",
    "influxdb",
    "redis",
    "mqtt",
    "nats",
    "prometheus_exporter",
    "prometheus_remote_write",
];
/// The default Redis stream.
pub const DEFAULT_SINK_STREAM: &str = "komlog_samples";
/// The default MQTT topic prefix and NATS subject prefix.
pub const DEFAULT_SINK_PREFIX: &str = "komlog";

/// Read one `sink` entry.
pub(super) fn parse_sink(ctx: &mut Ctx<'_>, key_line: usize, node: &Node) -> Option<SinkConfig> {
    let block = ctx.block("sink", node, SINK_KEYS)?;
    // Every key is looked at, whatever the type, so a key of another type is named.
    let name_n = block.get("name");
    let type_n = block.get("type");
    let uris_n = block.get("uris");
    let kinds_n = block.get("kinds");
    let path_n = block.get("path");
    let format_n = block.get("format");
    let rotate_n = block.get("rotate");
    let url_n = block.get("url");
    let table_n = block.get("table");
    let database_n = block.get("database");
    let measurement_n = block.get("measurement");
    let stream_n = block.get("stream");
    let topic_n = block.get("topic");
    let subject_n = block.get("subject");
    let jetstream_n = block.get("jetstream");
    let ca_n = block.get("ca");
    let batch_n = block.get("batch");
    let max_lag_n = block.get("max_lag");

    let Some(type_n) = type_n else {
        ctx.error(
            key_line,
            format!("sink: missing required key `type` ({})", TYPES.join(", ")),
        );
        return None;
    };
    let kind = ctx.string("sink.type", type_n)?;
    if !TYPES.contains(&kind.as_str()) {
        ctx.error(
            line(type_n),
            format!(
                "sink.type: {kind:?} is not a sink type; expected one of {}",
                TYPES.join(", ")
            ),
        );
        return None;
    }
    let mut ok = true;
    // Keys that belong to other types.
    let owners: [(&str, Option<&Node>, &[&str]); 12] = [
        ("path", path_n, &["file"]),
        ("format", format_n, &["file"]),
        ("rotate", rotate_n, &["file"]),
        (
            "url",
            url_n,
            &[
                "webhook",
                "postgres",
                "influxdb",
                "redis",
                "mqtt",
                "nats",
                "prometheus_remote_write",
            ],
        ),
        ("table", table_n, &["postgres"]),
        ("database", database_n, &["influxdb"]),
        ("measurement", measurement_n, &["influxdb"]),
        ("stream", stream_n, &["redis"]),
        ("topic", topic_n, &["mqtt"]),
        ("subject", subject_n, &["nats"]),
        ("jetstream", jetstream_n, &["nats"]),
        (
            "ca",
            ca_n,
            &["webhook", "influxdb", "prometheus_remote_write"],
        ),
    ];
    for (key, n, types) in owners {
        if let Some(n) = n
            && !types.contains(&kind.as_str())
        {
            ctx.error(
                line(n),
                format!(
                    "sink.{key}: not a key of a {kind} sink (only of type {})",
                    types.join(", ")
                ),
            );
            ok = false;
        }
    }

    let name = match name_n {
        Some(n) => {
            let name = ctx.string("sink.name", n)?;
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                ctx.error(
                    line(n),
                    format!("sink.name: {name:?} may hold only letters, digits, `_`, `-` and `.`"),
                );
                ok = false;
            }
            name
        }
        None => kind.clone(),
    };

    let mut uris = Vec::new();
    match uris_n {
        Some(n) => {
            for item in ctx.list("sink.uris", n) {
                if let Some(text) = ctx.string("sink.uris", item) {
                    match UriPattern::parse(&text) {
                        Ok(p) => uris.push(p),
                        Err(e) => {
                            ctx.error(line(item), format!("sink.uris: {e}"));
                            ok = false;
                        }
                    }
                }
            }
            if uris.is_empty() && ok {
                ctx.error(line(n), "sink.uris: the list is empty: give at least one pattern, or leave the key out for every local uri");
                ok = false;
            }
        }
        None => {
            if let Ok(all) = UriPattern::parse("**") {
                uris.push(all);
            }
        }
    }

    // Prometheus holds numbers only.
    let numbers_only = kind.starts_with("prometheus_");
    let (mut datapoints, mut datasources) = (true, !numbers_only);
    if let Some(n) = kinds_n {
        datapoints = false;
        datasources = false;
        for item in ctx.list("sink.kinds", n) {
            match ctx.string("sink.kinds", item).as_deref() {
                Some("datapoint") => datapoints = true,
                Some("datasource") => datasources = true,
                Some(other) => {
                    ctx.error(
                        line(item),
                        format!(
                            "sink.kinds: {other:?} is not a kind; expected datapoint or datasource"
                        ),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if !(datapoints || datasources) && ok {
            ctx.error(line(n), "sink.kinds: the list is empty");
            ok = false;
        }
        if numbers_only && datasources {
            ctx.error(
                line(n),
                format!(
                    "sink.kinds: a {kind} sink takes datapoints only (Prometheus holds numbers)"
                ),
            );
            ok = false;
        }
    }

    let (mut batch_size, mut batch_age) = (DEFAULT_SINK_BATCH_SIZE, DEFAULT_SINK_BATCH_AGE);
    if let Some(n) = batch_n
        && let Some(b) = ctx.block("sink.batch", n, SINK_BATCH_KEYS)
    {
        if let Some(n) = b.get("size") {
            match ctx.uint("sink.batch.size", n) {
                Some(s) if (1..=1_000_000).contains(&s) => batch_size = s as usize,
                Some(s) => {
                    ctx.error(
                        line(n),
                        format!("sink.batch.size: {s} is out of range: expected 1 to 1000000"),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(n) = b.get("age") {
            match ctx.duration_us("sink.batch.age", n) {
                Some(us) if us <= 3_600_000_000 => batch_age = Duration::from_micros(us),
                Some(_) => {
                    ctx.error(line(n), "sink.batch.age: at most 1h");
                    ok = false;
                }
                None => ok = false,
            }
        }
    }

    let mut max_lag = DEFAULT_SINK_MAX_LAG;
    if let Some(n) = max_lag_n {
        match ctx.uint("sink.max_lag", n) {
            Some(0) => {
                ctx.error(line(n), "sink.max_lag: must be at least 1");
                ok = false;
            }
            Some(v) => max_lag = v,
            None => ok = false,
        }
    }

    let need_url = |ctx: &mut Ctx<'_>, scheme: &str| -> Option<String> {
        let Some(n) = url_n else {
            ctx.error(key_line, format!("sink: a {kind} sink needs `url`"));
            return None;
        };
        let url = ctx.string("sink.url", n)?;
        let checked = match scheme {
            "http" => crate::sinks::http::HttpUrl::parse(&url).map(|_| ()),
            "redis" => crate::sinks::redis::RedisUrl::parse(&url).map(|_| ()),
            "mqtt" => crate::sinks::NetUrl::parse(&url, "mqtt", crate::sinks::mqtt::DEFAULT_PORT)
                .map(|_| ()),
            "nats" => crate::sinks::NetUrl::parse(&url, "nats", crate::sinks::nats::DEFAULT_PORT)
                .map(|_| ()),
            _ => Ok(()),
        };
        if let Err(why) = checked {
            ctx.error(line(n), format!("sink.url: {why}"));
            return None;
        }
        if scheme == "postgres"
            && let Err(e) = url.parse::<tokio_postgres::Config>()
        {
            ctx.error(
                line(n),
                format!("sink.url: not a PostgreSQL connection string: {e}"),
            );
            return None;
        }
        Some(url)
    };

    let destination = match kind.as_str() {
        "file" => {
            let format = match format_n {
                None => FileFormat::Jsonl,
                Some(n) => match ctx.string("sink.format", n).as_deref() {
                    Some("jsonl") => FileFormat::Jsonl,
                    Some("csv") => FileFormat::Csv,
                    Some(other) => {
                        ctx.error(
                            line(n),
                            format!("sink.format: {other:?}: expected jsonl or csv"),
                        );
                        return None;
                    }
                    None => return None,
                },
            };
            let ext = match format {
                FileFormat::Jsonl => "jsonl",
                FileFormat::Csv => "csv",
            };
            let path = match path_n {
                Some(n) => ctx.path("sink.path", n)?,
                None => ctx.resolve(&PathBuf::from(format!("sinks/{name}.{ext}"))),
            };
            let (mut rotate_bytes, mut keep) = (None, DEFAULT_SINK_KEEP);
            if let Some(n) = rotate_n
                && let Some(b) = ctx.block("sink.rotate", n, SINK_ROTATE_KEYS)
            {
                if let Some(n) = b.get("size") {
                    match ctx.bytes("sink.rotate.size", n) {
                        Some(0) => {
                            ctx.error(line(n), "sink.rotate.size: must be more than 0");
                            ok = false;
                        }
                        Some(s) => rotate_bytes = Some(s),
                        None => ok = false,
                    }
                }
                if let Some(n) = b.get("keep") {
                    match ctx.uint32("sink.rotate.keep", n) {
                        Some(k) => keep = k,
                        None => ok = false,
                    }
                }
            }
            Destination::File {
                path,
                format,
                rotate_bytes,
                keep,
            }
        }
        "webhook" => Destination::Webhook {
            url: need_url(ctx, "http")?,
        },
        "postgres" => {
            let url = need_url(ctx, "postgres")?;
            let table = match table_n {
                Some(n) => {
                    let t = ctx.string("sink.table", n)?;
                    if !valid_table(&t) {
                        ctx.error(
                            line(n),
                            format!("sink.table: {t:?} is not a table name (letters, digits and `_`, optionally `schema.table`)"),
                        );
                        return None;
                    }
                    t
                }
                None => DEFAULT_SINK_TABLE.to_owned(),
            };
            Destination::Postgres { url, table }
        }
        "redis" => {
            let url = need_url(ctx, "redis")?;
            let stream = match stream_n {
                Some(n) => ctx.string("sink.stream", n)?,
                None => DEFAULT_SINK_STREAM.to_owned(),
            };
            Destination::Redis { url, stream }
        }
        "mqtt" => {
            let url = need_url(ctx, "mqtt")?;
            let topic = match topic_n {
                Some(n) => {
                    let t = ctx.string("sink.topic", n)?;
                    if t.is_empty() || t.contains(['+', '#', '\0']) {
                        ctx.error(
                            line(n),
                            format!("sink.topic: {t:?} is not a topic prefix (not empty, no `+`, `#` or NUL)"),
                        );
                        return None;
                    }
                    t
                }
                None => DEFAULT_SINK_PREFIX.to_owned(),
            };
            Destination::Mqtt { url, topic }
        }
        "prometheus_exporter" => Destination::PrometheusExporter,
        "prometheus_remote_write" => Destination::PrometheusRemoteWrite {
            url: need_url(ctx, "http")?,
        },
        "nats" => {
            let url = need_url(ctx, "nats")?;
            let subject = match subject_n {
                Some(n) => {
                    let s = ctx.string("sink.subject", n)?;
                    let bad = s.is_empty()
                        || s.split('.').any(|t| {
                            t.is_empty() || t == "*" || t == ">" || t.contains(char::is_whitespace)
                        });
                    if bad {
                        ctx.error(
                            line(n),
                            format!("sink.subject: {s:?} is not a subject prefix (tokens between dots, no spaces, no `*` or `>`)"),
                        );
                        return None;
                    }
                    s
                }
                None => DEFAULT_SINK_PREFIX.to_owned(),
            };
            let jetstream = match jetstream_n {
                Some(n) => {
                    let s = ctx.string("sink.jetstream", n)?;
                    if s.is_empty()
                        || !s
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        ctx.error(
                            line(n),
                            format!("sink.jetstream: {s:?} is not a stream name (letters, digits, `_` and `-`)"),
                        );
                        return None;
                    }
                    Some(s)
                }
                None => None,
            };
            Destination::Nats {
                url,
                subject,
                jetstream,
            }
        }
        _ => {
            let url = need_url(ctx, "http")?;
            let Some(db_n) = database_n else {
                ctx.error(key_line, "sink: an influxdb sink needs `database`");
                return None;
            };
            let database = ctx.string("sink.database", db_n)?;
            let measurement = match measurement_n {
                Some(n) => Some(ctx.string("sink.measurement", n)?),
                None => None,
            };
            Destination::Influxdb {
                url,
                database,
                measurement,
            }
        }
    };
    let ca = match ca_n {
        Some(n) if ok => {
            let ca = ctx.path("sink.ca", n)?;
            let https = url_n
                .and_then(|u| ctx.scalar_text(u))
                .is_some_and(|u| u.starts_with("https://"));
            if !https {
                ctx.error(
                    line(n),
                    "sink.ca: the sink's url is not https://, so no certificate is checked",
                );
                return None;
            }
            Some(ca)
        }
        _ => None,
    };
    ok.then_some(SinkConfig {
        name,
        destination,
        uris,
        datapoints,
        datasources,
        batch_size,
        batch_age,
        max_lag,
        ca,
    })
}

/// `name` or `schema.name`, each of ASCII letters, digits and `_`, not starting with a digit.
fn valid_table(t: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match t.split_once('.') {
        Some((s, n)) => part(s) && part(n),
        None => part(t),
    }
}

/// Refuse a `prometheus_exporter` sink when the agent serves no `/metrics`.
pub(super) fn check_exporters_have_a_listener(
    ctx: &mut Ctx<'_>,
    sinks: &[(usize, SinkConfig)],
    metrics_configured: bool,
) {
    if metrics_configured {
        return;
    }
    for (at, s) in sinks {
        if s.destination == Destination::PrometheusExporter {
            ctx.error(
                *at,
                format!(
                    "sink: {:?} exposes its datapoints on the agent's /metrics, which is off: add `- metrics:` with `listen: 127.0.0.1:9108` (or another address)",
                    s.name
                ),
            );
        }
    }
}

/// Refuse a second sink with the same name, naming both lines.
pub(super) fn check_unique_names(ctx: &mut Ctx<'_>, sinks: &[(usize, SinkConfig)]) {
    for (i, (at, s)) in sinks.iter().enumerate() {
        if let Some((first, _)) = sinks[..i].iter().find(|(_, o)| o.name == s.name) {
            ctx.error(
                *at,
                format!(
                    "sink: the name {:?} is taken by the sink at line {first}; give each sink its own `name`",
                    s.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Destination, FileFormat};

    const FILE: &str = "/etc/komlogd/komlogd.yaml";

    fn err(text: &str) -> String {
        Config::parse(text, Path::new(FILE))
            .err()
            .unwrap_or_else(|| panic!("no error for\n{text}"))
            .to_string()
    }

    #[test]
    fn sinks_parse_with_their_defaults() {
        let cfg = Config::parse(
            "- sink:\n    type: file\n\
             - sink:\n    name: hook\n    type: webhook\n    url: http://127.0.0.1:9/x\n    uris: [\"host.*\", \"alice:**\"]\n    kinds: [datasource]\n    batch: {size: 10, age: 250ms}\n    max_lag: 7\n\
             - sink:\n    type: postgres\n    url: postgres://postgres@127.0.0.1/test\n\
             - sink:\n    type: influxdb\n    url: http://127.0.0.1:8086\n    database: db\n",
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(cfg.sinks.len(), 4);
        let f = &cfg.sinks[0];
        assert_eq!(f.name, "file");
        assert_eq!(
            f.destination,
            Destination::File {
                path: "/etc/komlogd/sinks/file.jsonl".into(),
                format: FileFormat::Jsonl,
                rotate_bytes: None,
                keep: 5
            }
        );
        assert!(f.datapoints && f.datasources);
        assert_eq!(f.uris[0].as_str(), "**");
        assert_eq!(
            (f.batch_size, f.batch_age.as_millis(), f.max_lag),
            (5000, 1000, 1_000_000)
        );
        let h = &cfg.sinks[1];
        assert_eq!(h.name, "hook");
        assert!(!h.datapoints && h.datasources);
        assert_eq!(
            (h.batch_size, h.batch_age.as_millis(), h.max_lag),
            (10, 250, 7)
        );
        assert_eq!(h.uris.len(), 2);
        assert_eq!(
            cfg.sinks[2].destination,
            Destination::Postgres {
                url: "postgres://postgres@127.0.0.1/test".into(),
                table: "komlog_samples".into()
            }
        );
        assert_eq!(cfg.sinks[3].name, "influxdb");
    }

    #[test]
    fn broker_sinks_parse_with_their_defaults() {
        let cfg = Config::parse(
            "- sink:\n    type: mqtt\n    url: mqtt://me:pw@127.0.0.1\n\
             - sink:\n    type: nats\n    url: nats://127.0.0.1:4222\n\
             - sink:\n    name: js\n    type: nats\n    url: nats://127.0.0.1\n    subject: a.b\n    jetstream: KOMLOG\n",
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(
            cfg.sinks[0].destination,
            Destination::Mqtt {
                url: "mqtt://me:pw@127.0.0.1".into(),
                topic: "komlog".into()
            }
        );
        assert_eq!(
            cfg.sinks[1].destination,
            Destination::Nats {
                url: "nats://127.0.0.1:4222".into(),
                subject: "komlog".into(),
                jetstream: None
            }
        );
        assert_eq!(
            cfg.sinks[2].destination,
            Destination::Nats {
                url: "nats://127.0.0.1".into(),
                subject: "a.b".into(),
                jetstream: Some("KOMLOG".into())
            }
        );
        assert_eq!(
            crate::sinks::describe(&cfg.sinks[0]),
            "mqtt://me@127.0.0.1:1883 topic komlog/…"
        );
        assert_eq!(
            crate::sinks::describe(&cfg.sinks[2]),
            "nats://127.0.0.1:4222 subject a.b.… stream KOMLOG"
        );
        let cfg = Config::parse(
            "- metrics: {listen: 127.0.0.1:9108}\n\
             - sink:\n    type: prometheus_exporter\n\
             - sink:\n    type: prometheus_remote_write\n    url: http://127.0.0.1:9090/api/v1/write\n",
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(cfg.sinks[0].destination, Destination::PrometheusExporter);
        assert!(cfg.sinks[0].datapoints && !cfg.sinks[0].datasources);
        assert!(!cfg.sinks[1].datasources, "numbers only");
    }

    #[test]
    fn sink_errors_name_the_line_and_the_problem() {
        for (text, want) in [
            (
                "- sink:\n    path: x\n",
                "komlogd.yaml:1: sink: missing required key `type`",
            ),
            (
                "- sink:\n    type: kafka\n",
                ":2: sink.type: \"kafka\" is not a sink type",
            ),
            (
                "- sink:\n    type: file\n    url: http://x/\n",
                ":3: sink.url: not a key of a file sink",
            ),
            (
                "- sink:\n    type: webhook\n",
                ":1: sink: a webhook sink needs `url`",
            ),
            (
                "- sink:\n    type: webhook\n    url: http://x/\n    ca: ca.pem\n",
                ":4: sink.ca: the sink's url is not https://",
            ),
            (
                "- sink:\n    type: redis\n    url: redis://x\n    ca: ca.pem\n",
                ":4: sink.ca: not a key of a redis sink",
            ),
            (
                "- sink:\n    type: influxdb\n    url: http://x/\n",
                "an influxdb sink needs `database`",
            ),
            (
                "- sink:\n    type: postgres\n    url: postgres://x\n    table: a-b\n",
                ":4: sink.table: \"a-b\" is not a table name",
            ),
            (
                "- sink:\n    type: file\n    uris: [\"a..b\"]\n",
                ":3: sink.uris: uri pattern \"a..b\": it has an empty level",
            ),
            (
                "- sink:\n    type: file\n    kinds: [number]\n",
                ":3: sink.kinds: \"number\" is not a kind",
            ),
            (
                "- sink:\n    type: file\n    batch: {size: 0}\n",
                ":3: sink.batch.size: 0 is out of range",
            ),
            (
                "- sink:\n    type: file\n    batch: {sise: 3}\n",
                "unknown key `sise` in sink.batch block",
            ),
            (
                "- sink:\n    type: file\n    formt: csv\n",
                "did you mean `format`?",
            ),
            (
                "- sink:\n    type: file\n    format: xml\n",
                ":3: sink.format: \"xml\": expected jsonl or csv",
            ),
            (
                "- sink:\n    type: file\n    max_lag: 0\n",
                ":3: sink.max_lag: must be at least 1",
            ),
            (
                "- sink:\n    type: file\n- sink:\n    type: file\n",
                ":3: sink: the name \"file\" is taken by the sink at line 1",
            ),
            (
                "- sink:\n    type: file\n    name: a/b\n",
                ":3: sink.name: \"a/b\" may hold only",
            ),
            (
                "- sink:\n    type: redis\n    url: redis://h:x\n",
                ":3: sink.url: \"redis://h:x\": the port",
            ),
            (
                "- sink:\n    type: file\n    stream: s\n",
                ":3: sink.stream: not a key of a file sink (only of type redis)",
            ),
            (
                "- sink:\n    type: mqtt\n    url: mqtt://h:x\n",
                ":3: sink.url: \"mqtt://h:x\": the port \"x\"",
            ),
            (
                "- sink:\n    type: mqtt\n    url: nats://h\n",
                ":3: sink.url: \"nats://h\" is not a mqtt:// URL",
            ),
            (
                "- sink:\n    type: mqtt\n    url: mqtt://h\n    topic: a/#\n",
                ":4: sink.topic: \"a/#\" is not a topic prefix",
            ),
            (
                "- sink:\n    type: mqtt\n    url: mqtt://h\n    subject: a\n",
                ":4: sink.subject: not a key of a mqtt sink (only of type nats)",
            ),
            (
                "- sink:\n    type: nats\n    url: nats://h\n    subject: a..b\n",
                ":4: sink.subject: \"a..b\" is not a subject prefix",
            ),
            (
                "- sink:\n    type: nats\n    url: nats://h\n    jetstream: a.b\n",
                ":4: sink.jetstream: \"a.b\" is not a stream name",
            ),
            (
                "- sink:\n    type: nats\n",
                ":1: sink: a nats sink needs `url`",
            ),
            (
                "- sink:\n    type: prometheus_exporter\n",
                ":1: sink: \"prometheus_exporter\" exposes its datapoints on the agent's /metrics, which is off",
            ),
            (
                "- metrics:\n    listen: 127.0.0.1:9108\n- sink:\n    type: prometheus_exporter\n    kinds: [datasource]\n",
                ":5: sink.kinds: a prometheus_exporter sink takes datapoints only",
            ),
            (
                "- sink:\n    type: prometheus_remote_write\n",
                ":1: sink: a prometheus_remote_write sink needs `url`",
            ),
            (
                "- sink:\n    type: prometheus_exporter\n    url: http://x/\n",
                ":3: sink.url: not a key of a prometheus_exporter sink",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text}\n→ {e}\nwanted {want}");
        }
    }
}
