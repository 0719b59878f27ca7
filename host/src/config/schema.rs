//! The definition of every key of komlogd.yaml: for each block, its keys with their
//! type, default, an example value and a short description.
//!
//! This table is the single source of the keys: the parser's known-key lists (the
//! unknown-key check and its "did you mean" hint) are built from it, and the
//! configuration reference in the manual is generated from it
//! ([`reference_markdown`](super::reference_markdown)).

/// One block of the file: the top level, a block such as `logging`, or a map nested
/// in a block such as `impulses.data_reqs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// The block as the parser names it in messages: `""` for the top level,
    /// `logging`, `impulses.data_reqs`… (`limits` also stands for the `limits` of an
    /// impulses or package block).
    pub path: &'static str,
    /// What the block is and where it goes, for the reference.
    pub about: &'static str,
    /// Its keys, in the order the parser lists them.
    pub keys: &'static [Key],
}

/// One key of a [`Section`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key as written in the file.
    pub name: &'static str,
    /// Whether the entry may repeat (top-level keys; a key inside a block is once).
    pub repeat: Repeat,
    /// The values it takes.
    pub kind: &'static str,
    /// What applies when the key is absent.
    pub unset: Unset,
    /// A valid YAML value, in flow style; empty for a top-level block, whose
    /// example is its section's.
    pub example: &'static str,
    /// One or two sentences: what it does.
    pub about: &'static str,
}

/// How often a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// At most once; a repeat is an error (or, for `allow_external_jobs`, ignored
    /// with a warning).
    Once,
    /// Any number of times, each entry on its own.
    Many,
}

/// What applies when a key is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// The key must be given.
    Required,
    /// The parser fills in this value, written as it would be in the file: setting
    /// the key to it changes nothing.
    Is(&'static str),
    /// The engine applies this value, written as it would be in the file.
    Builtin(&'static str),
    /// Nothing is set; the text says what that means.
    Means(&'static str),
}

use Repeat::{Many, Once};
use Unset::{Builtin, Is, Means, Required};

const fn key(
    name: &'static str,
    repeat: Repeat,
    kind: &'static str,
    unset: Unset,
    example: &'static str,
    about: &'static str,
) -> Key {
    Key {
        name,
        repeat,
        kind,
        unset,
        example,
        about,
    }
}

/// The top level: the one-key entries of the file's list.
pub const TOP: Section = Section {
    path: "",
    about: "The file is a YAML list; each entry is a one-key map, `- key: value`. Blocks are described in their own sections below.",
    keys: &[
        key(
            "username",
            Once,
            "a Komlog username",
            Means("none: the agent does not log in to a server"),
            "alice",
            "Your Komlog user. A uri written `username:uri` is then one of your own (the name is compared case-insensitively).",
        ),
        key(
            "keyfile",
            Once,
            "path",
            Means("`key.priv` beside this file"),
            "key.priv",
            "The agent's private key, created if missing. It must be RSA of at least 4096 bits; PKCS#8 and PKCS#1 PEM files load.",
        ),
        key(
            "server",
            Once,
            "map, or a URL",
            Means("none: the agent runs alone on its local store"),
            "",
            "A Komlog-compatible server to connect to; see [`server`](#server).",
        ),
        key(
            "logging",
            Once,
            "map",
            Means("the defaults of each key"),
            "",
            "Log level, rotation and where the log file goes; see [`logging`](#logging).",
        ),
        key(
            "job",
            Many,
            "map",
            Means("none"),
            "",
            "A command run on cron schedules whose output becomes a sample; see [`job`](#job).",
        ),
        key(
            "allow_external_jobs",
            Once,
            "boolean",
            Is("no"),
            "yes",
            "Read the jobs of every `external_job_file`. Honoured only when it appears exactly once; a repeat is ignored with a warning.",
        ),
        key(
            "external_job_file",
            Many,
            "path",
            Means("none"),
            "jobs/more-jobs.yaml",
            "A YAML file of the same form whose `job` entries are read when `allow_external_jobs` is yes (other known keys are ignored with a warning). A file with an error, an unknown key included, is skipped with an error naming it.",
        ),
        key(
            "impulses",
            Many,
            "map",
            Means("none"),
            "",
            "A WebAssembly component run on the samples of its uris; see [`impulses`](#impulses).",
        ),
        key(
            "package",
            Many,
            "map",
            Means("none"),
            "",
            "A WebAssembly collector with its own jobs and impulses; see [`package`](#package) and [Packages](packages.md).",
        ),
        key(
            "limits",
            Once,
            "map",
            Means("the built-in values"),
            "",
            "Default sandbox limits for every impulse; see [`limits`](#limits).",
        ),
        key(
            "max_chain_depth",
            Once,
            "integer, 1 to 64",
            Is("8"),
            "8",
            "How many impulses a sample may pass through, one feeding the next: samples at this depth are stored but fire nothing (the loop rule, see [Semantics](semantics.md)).",
        ),
        key(
            "metrics",
            Once,
            "map, or an address",
            Means("none: no port is opened"),
            "",
            "Serve the agent's counters in the Prometheus text format; see [`metrics`](#metrics).",
        ),
        key(
            "statsd",
            Once,
            "map, or an address",
            Means("none: no StatsD port is opened"),
            "",
            "Take StatsD (and DogStatsD) metrics over UDP as samples; see [`statsd`](#statsd) and [Listeners](listeners.md).",
        ),
        key(
            "line_protocol",
            Once,
            "map, or an address",
            Means("none: no line protocol port is opened"),
            "",
            "Take InfluxDB line protocol writes over HTTP as samples; see [`line_protocol`](#line_protocol) and [Listeners](listeners.md).",
        ),
        key(
            "sink",
            Many,
            "map",
            Means("none: samples stay in the local store only"),
            "",
            "Forward the samples the agent stores to a file, a webhook, PostgreSQL, InfluxDB or a Redis stream; see [`sink`](#sink) and [Sinks](sinks.md).",
        ),
    ],
};

/// `- server:`.
pub const SERVER: Section = Section {
    path: "server",
    about: "The Komlog-compatible server, such as a komlog-hub: with one the agent runs in connected mode (see [Connected mode](connected.md)). `- server: URL` is short for a map with only `url`. Give `url` for one server or `urls` for several, not both.",
    keys: &[
        key(
            "url",
            Once,
            "an `http://`, `https://`, `ws://` or `wss://` URL",
            Means("required, unless `urls` is given"),
            "https://localhost:8443/",
            "Where the server is. The port defaults to 80, or 443 with TLS (`https`, `wss`).",
        ),
        // No example value: the examples show `url`, which it cannot go beside.
        key(
            "urls",
            Once,
            "a list of URLs, as `url`",
            Means("none: the one `url`"),
            "",
            "Several servers holding the same user and key, such as `urls: [wss://hub1.example.org/, wss://hub2.example.org/]`: the agent logs in to the first, and moves to the next when a login fails or the connection is lost or closed with 4503 (the server is stopping); after every url failed in turn it backs off. See [Several servers](connected.md#several-servers).",
        ),
        key(
            "ca_file",
            Once,
            "path to a PEM file",
            Means("none: the public roots only"),
            "ca.pem",
            "CA certificates trusted for `https`/`wss` besides the public roots, for a private CA or a self-signed certificate. A file that cannot be read or holds no certificate is named in a warning, fails `komlogd check` and makes logins fail until it is fixed.",
        ),
    ],
};

/// `- logging:`.
pub const LOGGING: Section = Section {
    path: "logging",
    about: "Where and how much komlogd logs. Every key is optional.",
    keys: &[
        key(
            "level",
            Once,
            "`trace`, `debug`, `info`, `warn` or `error`",
            Is("info"),
            "info",
            "The least severe level written, for komlogd's own lines (dependencies log warn and up). `warning` and `critical` read as `warn` and `error`.",
        ),
        key(
            "rotation",
            Once,
            "boolean",
            Is("yes"),
            "yes",
            "Start a new file when the log reaches `max_bytes`.",
        ),
        key(
            "max_bytes",
            Once,
            "size",
            Is("10000000"),
            "10MB",
            "Size at which the log file rotates.",
        ),
        key(
            "backup_count",
            Once,
            "integer",
            Is("3"),
            "3",
            "Rotated files kept.",
        ),
        key(
            "dirname",
            Once,
            "path",
            Is("log"),
            "log",
            "Directory of the log file.",
        ),
        key(
            "filename",
            Once,
            "file name",
            Is("komlogd.log"),
            "komlogd.log",
            "Name of the log file in `dirname`; a directory here is an error.",
        ),
        key(
            "format",
            Once,
            "`text` or `json`",
            Is("text"),
            "text",
            "The line format of the log file and stderr: text, or one JSON object per line for log collectors.",
        ),
    ],
};

/// `- metrics:`.
pub const METRICS: Section = Section {
    path: "metrics",
    about: "The Prometheus endpoint: the agent serves its counters at `GET /metrics` (see [Status and metrics](status.md)). `- metrics: ADDR:PORT` is short for a map with only `listen`.",
    keys: &[key(
        "listen",
        Once,
        "address and port",
        Required,
        "127.0.0.1:9108",
        "Where the endpoint listens.",
    )],
};

/// `- statsd:`.
pub const STATSD: Section = Section {
    path: "statsd",
    about: "The StatsD listener: counters, gauges, timers, histograms and sets over UDP, aggregated and written as datapoints every `flush` (see [Listeners](listeners.md)). `- statsd:` alone takes the defaults; `- statsd: ADDR:PORT` is short for a map with only `listen`. A reload that changes the block restarts the listener with it (its last interval stored first, its counters kept); a removed block stops it.",
    keys: &[
        key(
            "listen",
            Once,
            "address and port",
            Is("127.0.0.1:8125"),
            "127.0.0.1:8125",
            "The UDP address the listener binds.",
        ),
        key(
            "flush",
            Once,
            "duration, 10ms to 1h",
            Is("1s"),
            "1s",
            "How often the metrics received are aggregated and written.",
        ),
        key(
            "prefix",
            Once,
            "a uri",
            Means("none"),
            "app",
            "Put before every metric's uri: `app.requests`.",
        ),
    ],
};

/// `- line_protocol:`.
pub const LINE_PROTOCOL: Section = Section {
    path: "line_protocol",
    about: "The InfluxDB line protocol listener: `POST /write` (1.x) and `POST /api/v2/write` (2.x) over HTTP, each field of a point written as a sample of `measurement.field` (see [Listeners](listeners.md)). `- line_protocol:` alone takes the defaults; `- line_protocol: ADDR:PORT` is short for a map with only `listen`. A reload that changes the block restarts the listener with it (its counters kept); a removed block stops it.",
    keys: &[
        key(
            "listen",
            Once,
            "address and port",
            Is("127.0.0.1:8186"),
            "127.0.0.1:8186",
            "The TCP address the HTTP endpoint binds.",
        ),
        key(
            "prefix",
            Once,
            "a uri",
            Means("none"),
            "influx",
            "Put before every point's uri: `influx.cpu.usage`.",
        ),
    ],
};

/// `- job:`.
pub const JOB: Section = Section {
    path: "job",
    about: "A command run on cron schedules; what it prints becomes a datasource sample of its uri. The rules for a run are in [Configuration](configuration.md).",
    keys: &[
        key(
            "uri",
            Once,
            "one of your own uris",
            Required,
            "system.info.disk",
            "The uri the output is sent to, without a `user:` prefix.",
        ),
        key(
            "command",
            Once,
            "program and arguments",
            Required,
            "df -k",
            "Quoted as in a shell but run without one: pipes and redirections are refused. A relative program path is found beside the file that declares the job; a bare name is looked up in `PATH`.",
        ),
        key(
            "enabled",
            Once,
            "boolean",
            Is("yes"),
            "yes",
            "A disabled job is kept but never scheduled.",
        ),
        key(
            "schedule",
            Once,
            "a cron expression, or a list",
            Required,
            "['0 * * * *']",
            "Five fields (minute hour day-of-month month day-of-week) or a macro such as `@hourly`, in local time; the job runs when any of them matches.",
        ),
        key(
            "timeout",
            Once,
            "duration",
            Means("none"),
            "30s",
            "Kill the command's process group after this long.",
        ),
        key(
            "supplies",
            Once,
            "a list of your own uris",
            Means("none"),
            "[system.info.disk.root_used]",
            "The datapoints the output's text carries; told to the server (see [Connected mode](connected.md)).",
        ),
    ],
};

/// `- impulses:`.
pub const IMPULSES: Section = Section {
    path: "impulses",
    about: "A WebAssembly component run whenever one of its uris gets a sample (see [Writing an impulse](impulses.md)). Keys the block leaves out may be given by the module's `describe()`.",
    keys: &[
        key(
            "enabled",
            Once,
            "boolean",
            Is("yes"),
            "yes",
            "A disabled block is kept but never run.",
        ),
        key(
            "filename",
            Once,
            "path to a `.wasm` component",
            Required,
            "impulses/cpu_alarm.wasm",
            "The component to run.",
        ),
        key(
            "name",
            Once,
            "letters, digits, `_`, `.` and `-`",
            Means("the file name without `.wasm`"),
            "cpu_alarm",
            "Unique among enabled impulses: a repeat is called `name#2`, `name#3`… in file order.",
        ),
        key(
            "uris",
            Once,
            "a uri, or a list",
            Means("the module's own"),
            "[host.cpu.system, 'alice:host.cpu.system']",
            "The uris whose samples fire it: your own, or `user:uri` of another user. A uri listed twice is dropped with a warning.",
        ),
        key(
            "data_reqs",
            Once,
            "map",
            Means("the module's own, if any"),
            "{past_delta: 1h, past_count: 10}",
            "The window of past data each call receives; see [`impulses.data_reqs`](#impulsesdata_reqs).",
        ),
        key(
            "min_exec_delta",
            Once,
            "duration",
            Means("the module's own, if any"),
            "1min",
            "Runs closer together than this are skipped.",
        ),
        key(
            "params",
            Once,
            "map",
            Means("none"),
            "{threshold: 90, hosts: [a, b]}",
            "Settings passed to the component as text: scalars as written, lists and maps as JSON.",
        ),
        key(
            "limits",
            Once,
            "map",
            Means("the `- limits:` entry's"),
            "{timeout: 2s, memory: 64MiB}",
            "This impulse's sandbox limits; see [`limits`](#limits).",
        ),
    ],
};

/// `data_reqs` in an impulses block.
pub const DATA_REQS: Section = Section {
    path: "impulses.data_reqs",
    about: "How much past data an impulse receives with each call, besides the firing sample.",
    keys: &[
        key(
            "past_delta",
            Once,
            "duration",
            Means("none"),
            "1h",
            "The samples newer than the firing sample's time minus this.",
        ),
        key(
            "past_count",
            Once,
            "integer",
            Means("none"),
            "10",
            "At least this many of the latest samples of each uri.",
        ),
    ],
};

/// `- limits:`, and `limits` in an impulses or package block.
pub const LIMITS: Section = Section {
    path: "limits",
    about: "Sandbox limits. The `- limits:` entry sets them for every impulse; `limits` in an impulses block sets them for that impulse, and in a package block for an `isolated` package. A key left out falls back to the `- limits:` entry, then to the built-in value. Every value must be greater than zero.",
    keys: &[
        key(
            "timeout",
            Once,
            "duration",
            Builtin("1s"),
            "5s",
            "Wall-clock time one call may take. On a loaded machine a runaway call may run up to twice this before it is stopped.",
        ),
        key(
            "memory",
            Once,
            "size",
            Builtin("64MiB"),
            "64MiB",
            "The largest linear memory of an instance.",
        ),
        key(
            "fuel",
            Once,
            "integer",
            Means("none: calls are not metered"),
            "10000000000",
            "Fuel one call may burn: roughly, its WebAssembly instructions.",
        ),
        key(
            "disable_after",
            Once,
            "integer",
            Builtin("5"),
            "5",
            "Failed events in a row after which the impulse is disabled until its module changes.",
        ),
        key(
            "queue",
            Once,
            "size",
            Builtin("64MiB"),
            "64MiB",
            "Memory the fires waiting for the impulse may hold; fires beyond it are dropped and counted.",
        ),
        key(
            "outputs",
            Once,
            "integer",
            Builtin("10000"),
            "10000",
            "Samples one call may return; a call returning more has none written.",
        ),
    ],
};

/// `- package:`.
pub const PACKAGE: Section = Section {
    path: "package",
    about: "A WebAssembly collector with its own jobs and impulses (see [Packages](packages.md)).",
    keys: &[
        key(
            "install",
            Once,
            "path to a `.wasm` component",
            Required,
            "packages/linux.wasm",
            "The package's component. A value that looks like a pip requirement is refused with an explanation.",
        ),
        key(
            "enabled",
            Once,
            "boolean",
            Is("yes"),
            "yes",
            "A disabled package is not run.",
        ),
        key(
            "venv",
            Once,
            "`default`, `isolated` or a pool name",
            Is("default"),
            "default",
            "The instance it runs in: the shared default pool, one of its own (`isolated`, or `unique`), or a pool shared by every package naming it.",
        ),
        key(
            "params",
            Once,
            "map",
            Means("none"),
            "{interval: 5min}",
            "Settings passed to the package as text: scalars as written, lists and maps as JSON.",
        ),
        key(
            "limits",
            Once,
            "map",
            Means("the `- limits:` entry's"),
            "{timeout: 10s, memory: 128MiB}",
            "The sandbox limits of an `isolated` package; see [`limits`](#limits).",
        ),
        key(
            "grants",
            Once,
            "map",
            Means("nothing"),
            "{dirs: [/proc, /sys], env: [HOSTNAME]}",
            "What the sandbox may see; see [`package.grants`](#packagegrants).",
        ),
        key(
            "refresh",
            Once,
            "duration",
            Means("the package's own, if any"),
            "1h",
            "Call the package's `load` again this often.",
        ),
    ],
};

/// `grants` in a package block.
pub const GRANTS: Section = Section {
    path: "package.grants",
    about: "What a package's sandbox may see; nothing unless granted here.",
    keys: &[
        key(
            "dirs",
            Once,
            "a path, or a list",
            Means("none"),
            "[/proc, /sys]",
            "Directories opened read-only inside the sandbox.",
        ),
        key(
            "env",
            Once,
            "a variable name, or a list",
            Means("none"),
            "[HOSTNAME]",
            "Environment variables passed in.",
        ),
    ],
};

/// `- sink:`.
pub const SINK: Section = Section {
    path: "sink",
    about: "Forward the samples the agent stores whose uris match `uris` to one destination (a file, a webhook, PostgreSQL, InfluxDB 1.x, a Redis stream, an MQTT broker, NATS, or Prometheus by scrape or remote write), in batches, at least once (see [Sinks](sinks.md)). Keys of another type than the block's are errors. Added, changed and removed sinks take effect without a restart.",
    keys: &[
        key(
            "name",
            Once,
            "letters, digits, `_`, `-`, `.`",
            Means("the type (`file`, `webhook`…)"),
            "archive",
            "The sink's name: the key of its delivery cursor and its label in status and metrics. Two sinks need two names; renaming a sink starts it afresh.",
        ),
        key(
            "type",
            Once,
            "`file`, `webhook`, `postgres`, `influxdb`, `redis`, `mqtt`, `nats`, `prometheus_exporter` or `prometheus_remote_write`",
            Required,
            "file",
            "The destination.",
        ),
        key(
            "uris",
            Once,
            "list of uri patterns",
            Is("[\"**\"]"),
            "[\"host.**\", \"alice:*\"]",
            "Which samples go: a level `*` matches one level of a uri, `**` any number; `user:` patterns select that user's uris (those the agent stores from the server).",
        ),
        key(
            "kinds",
            Once,
            "list of `datapoint`, `datasource`",
            Is("[datapoint, datasource]"),
            "[datapoint]",
            "Which kinds of samples go (`prometheus_exporter` and `prometheus_remote_write` take datapoints only).",
        ),
        key(
            "path",
            Once,
            "path",
            Means("`sinks/<name>.jsonl` (or `.csv`) beside this file"),
            "sinks/samples.jsonl",
            "`file` only: the file samples are appended to; its directory is created.",
        ),
        key(
            "format",
            Once,
            "`jsonl` or `csv`",
            Is("jsonl"),
            "jsonl",
            "`file` only: one JSON object a line, or `uri,ts,kind,value` lines.",
        ),
        key(
            "rotate",
            Once,
            "map",
            Means("no rotation"),
            "{size: 10MB, keep: 5}",
            "`file` only: rotation by size; see [`sink.rotate`](#sinkrotate).",
        ),
        key(
            "url",
            Once,
            "URL",
            Means("required for every type but `file` and `prometheus_exporter`"),
            "",
            "`webhook`: the `http://` or `https://` URL batches are POSTed to. `influxdb`: the `http://` or `https://` base URL of InfluxDB 1.x. `postgres`: a connection string, `postgres://user@host:5432/db` or `host=… dbname=…`. `redis`: `redis://[[user]:password@]host[:port][/db]`. `mqtt`: `mqtt://[user[:password]@]host[:port]` (port 1883 by default). `nats`: `nats://[user[:password]@]host[:port]` (port 4222 by default). `prometheus_remote_write`: the receiver's `http://` or `https://` URL, such as `http://127.0.0.1:9090/api/v1/write`.",
        ),
        key(
            "table",
            Once,
            "`table` or `schema.table`",
            Means("`komlog_samples`"),
            "",
            "`postgres` only: the table written, created if missing.",
        ),
        key(
            "database",
            Once,
            "string",
            Means("required for `influxdb`"),
            "",
            "`influxdb` only: the database written to (it must exist).",
        ),
        key(
            "measurement",
            Once,
            "string",
            Means("the uri's first level"),
            "",
            "`influxdb` only: write every sample to this measurement instead.",
        ),
        key(
            "stream",
            Once,
            "string",
            Means("`komlog_samples`"),
            "",
            "`redis` only: the stream samples are appended to (`XADD`).",
        ),
        key(
            "topic",
            Once,
            "MQTT topic levels",
            Means("`komlog`"),
            "",
            "`mqtt` only: the topic prefix; a sample of `host.cpu` goes to `<topic>/host/cpu` at QoS 1.",
        ),
        key(
            "subject",
            Once,
            "NATS subject tokens",
            Means("`komlog`"),
            "",
            "`nats` only: the subject prefix; a sample of `host.cpu` goes to `<subject>.host.cpu`.",
        ),
        key(
            "jetstream",
            Once,
            "stream name",
            Means("core NATS, no stream"),
            "",
            "`nats` only: publish into this JetStream stream (created with the subjects `<subject>.>` when missing), each message acknowledged and deduplicated by the server.",
        ),
        key(
            "ca",
            Once,
            "path to a PEM file",
            Means("the Mozilla roots only"),
            "",
            "`webhook`, `influxdb` and `prometheus_remote_write` with an `https://` url: CA certificates to trust besides the Mozilla roots (for a private CA or a self-signed server).",
        ),
        key(
            "batch",
            Once,
            "map",
            Means("the defaults of each key"),
            "{size: 5000, age: 1s}",
            "How samples are grouped; see [`sink.batch`](#sinkbatch).",
        ),
        key(
            "max_lag",
            Once,
            "integer",
            Is("1000000"),
            "1000000",
            "How many samples the sink may fall behind; past that the oldest are dropped (and counted).",
        ),
    ],
};

/// `batch` in a `- sink:` block.
pub const SINK_BATCH: Section = Section {
    path: "sink.batch",
    about: "A batch is sent when it holds `size` samples or its first sample has waited `age`, whichever comes first.",
    keys: &[
        key(
            "size",
            Once,
            "integer, 1 to 1000000",
            Is("5000"),
            "5000",
            "The most samples in one batch.",
        ),
        key(
            "age",
            Once,
            "duration, at most 1h",
            Is("1s"),
            "1s",
            "How long a sample may wait for others before its batch goes.",
        ),
    ],
};

/// `rotate` in a `- sink:` block of type `file`.
pub const SINK_ROTATE: Section = Section {
    path: "sink.rotate",
    about: "The file is renamed `<path>.1` (older ones shifted to `.2`, …) when a write would take it past `size`.",
    keys: &[
        key(
            "size",
            Once,
            "size",
            Means("no rotation"),
            "10MB",
            "The size at which the file rotates.",
        ),
        key(
            "keep",
            Once,
            "integer",
            Is("5"),
            "5",
            "Rotated files kept; older ones are deleted.",
        ),
    ],
};

/// Every section, in the order of the reference.
pub const SECTIONS: &[Section] = &[
    TOP,
    SERVER,
    LOGGING,
    METRICS,
    STATSD,
    LINE_PROTOCOL,
    JOB,
    IMPULSES,
    DATA_REQS,
    LIMITS,
    PACKAGE,
    GRANTS,
    SINK,
    SINK_BATCH,
    SINK_ROTATE,
];

/// The names of `keys`, in order: a known-key list for the parser.
const fn names<const N: usize>(keys: &[Key]) -> [&'static str; N] {
    assert!(keys.len() == N);
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = keys[i].name;
        i += 1;
    }
    out
}

/// The known-key list of a section.
macro_rules! known_keys {
    ($section:expr) => {
        &names::<{ $section.keys.len() }>($section.keys)
    };
}

/// The top-level keys.
pub(super) const TOP_KEYS: &[&str] = known_keys!(TOP);
/// The keys of a `server` block.
pub(super) const SERVER_KEYS: &[&str] = known_keys!(SERVER);
/// The keys of a `logging` block.
pub(super) const LOGGING_KEYS: &[&str] = known_keys!(LOGGING);
/// The keys of a `metrics` block.
pub(super) const METRICS_KEYS: &[&str] = known_keys!(METRICS);
/// The keys of a `statsd` block.
pub(super) const STATSD_KEYS: &[&str] = known_keys!(STATSD);
/// The keys of a `line_protocol` block.
pub(super) const LINE_PROTOCOL_KEYS: &[&str] = known_keys!(LINE_PROTOCOL);
/// The keys of a `job` block.
pub(super) const JOB_KEYS: &[&str] = known_keys!(JOB);
/// The keys of an `impulses` block.
pub(super) const IMPULSE_KEYS: &[&str] = known_keys!(IMPULSES);
/// The keys of `data_reqs` in an `impulses` block.
pub(super) const DATA_REQS_KEYS: &[&str] = known_keys!(DATA_REQS);
/// The keys of a `limits` map.
pub(super) const LIMIT_KEYS: &[&str] = known_keys!(LIMITS);
/// The keys of a `package` block.
pub(super) const PACKAGE_KEYS: &[&str] = known_keys!(PACKAGE);
/// The keys of `grants` in a `package` block.
pub(super) const GRANT_KEYS: &[&str] = known_keys!(GRANTS);
/// The keys of a `sink` block.
pub(super) const SINK_KEYS: &[&str] = known_keys!(SINK);
/// The keys of `batch` in a `sink` block.
pub(super) const SINK_BATCH_KEYS: &[&str] = known_keys!(SINK_BATCH);
/// The keys of `rotate` in a `sink` block.
pub(super) const SINK_ROTATE_KEYS: &[&str] = known_keys!(SINK_ROTATE);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::super::reference::{example, render, required};
    use super::super::template::TEMPLATE;
    use super::super::yaml::reads;
    use super::*;
    use crate::config::{Config, ConfigErrors};

    const FILE: &str = "/home/u/.komlogd/komlogd.yaml";

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new(FILE))
    }

    /// Parse `text`, which must have no error and no warning.
    fn clean(text: &str) -> Config {
        let cfg = parse(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
        assert!(cfg.warnings.is_empty(), "{:?}\n---\n{text}", cfg.warnings);
        cfg
    }

    /// The section a block path recorded by the parser belongs to
    /// (`impulses.limits` is the `limits` section).
    fn section_of(block: &str) -> &'static str {
        if block.ends_with(".limits") {
            "limits"
        } else {
            SECTIONS
                .iter()
                .find(|s| s.path == block)
                .map(|s| s.path)
                .unwrap_or_else(|| panic!("the parser reads a block `{block}` the table lacks"))
        }
    }

    /// Every (section, key) pair of the table, top level excluded.
    fn table_pairs() -> BTreeSet<(String, String)> {
        SECTIONS
            .iter()
            .filter(|s| !s.path.is_empty())
            .flat_map(|s| {
                s.keys
                    .iter()
                    .map(|k| (s.path.to_owned(), k.name.to_owned()))
            })
            .collect()
    }

    fn by_section(pairs: Vec<(String, String)>) -> BTreeSet<(String, String)> {
        pairs
            .into_iter()
            .map(|(block, key)| (section_of(&block).to_owned(), key))
            .collect()
    }

    /// The example of every block parses cleanly, and the parser reads every key
    /// of the table in the block the table puts it (and no other key: reading a
    /// key missing from the table trips the assertion in `Block::raw`).
    #[test]
    fn every_key_is_accepted_and_read_where_the_table_puts_it() {
        reads::take();
        for section in SECTIONS {
            if let Some(text) = example(section) {
                clean(&text);
            }
        }
        let read = by_section(reads::take());
        assert_eq!(read, table_pairs());
        // The top level: each key with a value of its own is in TOP's example.
        let top = example(&TOP).expect("a top-level example");
        let cfg = clean(&top);
        assert!(cfg.username.is_some() && cfg.keyfile.is_some() && cfg.allow_external_jobs);
        assert_eq!(cfg.external_job_files.len(), 1);
        // A top-level block key has its section.
        for key in TOP.keys.iter().filter(|k| k.example.is_empty()) {
            assert!(
                SECTIONS.iter().any(|s| s.path == key.name),
                "no section for the top-level block `{}`",
                key.name
            );
        }
    }

    /// The known-key lists are the table's, in its order.
    #[test]
    fn known_key_lists_are_the_table() {
        let lists: &[(&[&str], &Section)] = &[
            (TOP_KEYS, &TOP),
            (SERVER_KEYS, &SERVER),
            (LOGGING_KEYS, &LOGGING),
            (METRICS_KEYS, &METRICS),
            (STATSD_KEYS, &STATSD),
            (LINE_PROTOCOL_KEYS, &LINE_PROTOCOL),
            (JOB_KEYS, &JOB),
            (IMPULSE_KEYS, &IMPULSES),
            (DATA_REQS_KEYS, &DATA_REQS),
            (LIMIT_KEYS, &LIMITS),
            (PACKAGE_KEYS, &PACKAGE),
            (GRANT_KEYS, &GRANTS),
            (SINK_KEYS, &SINK),
            (SINK_BATCH_KEYS, &SINK_BATCH),
            (SINK_ROTATE_KEYS, &SINK_ROTATE),
        ];
        assert_eq!(lists.len(), SECTIONS.len());
        for &(list, section) in lists {
            let names: Vec<&str> = section.keys.iter().map(|k| k.name).collect();
            assert_eq!(list, names.as_slice(), "{}", section.path);
        }
        let err = parse("- logging:\n    levle: info\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "known keys: {}; did you mean `level`?",
                LOGGING_KEYS.join(", ")
            )),
            "{err}"
        );
    }

    /// The first-run template shows every key of the table, and no other.
    #[test]
    fn template_shows_every_key() {
        let text: String = TEMPLATE
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with("- ") || rest.starts_with("  ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        reads::take_present();
        clean(&text);
        // `server.urls` cannot go beside the `url` the template shows: the
        // template names it in a comment.
        let mut shown = table_pairs();
        assert!(shown.remove(&("server".to_owned(), "urls".to_owned())));
        assert!(
            TEMPLATE.contains("# urls: "),
            "the template does not mention server.urls"
        );
        assert_eq!(by_section(reads::take_present()), shown);
        for key in TOP.keys {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("- {}:", key.name))),
                "the template lacks `- {}:`",
                key.name
            );
        }
    }

    /// The entry `- key: …` for a top-level key: its example, or its block's.
    fn entry(key: &Key) -> String {
        if key.example.is_empty() {
            let section = SECTIONS
                .iter()
                .find(|s| s.path == key.name)
                .expect("a section for a top-level block");
            example(section).expect("a block example")
        } else {
            render(&TOP, &[(key.name, key.example)])
        }
    }

    /// A key the table says appears once is refused (or ignored) when repeated;
    /// one that repeats is accepted twice.
    #[test]
    fn top_level_repeats_follow_the_table() {
        for key in TOP.keys {
            let mut text = entry(key).repeat(2);
            if key.name == "external_job_file" {
                text.push_str("- allow_external_jobs: yes\n");
            }
            if key.name == "sink" {
                // Two sinks need two names.
                text = text.replacen("name: archive", "name: archive2", 1);
            }
            match key.repeat {
                Many => {
                    let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
                    let kept = match key.name {
                        "job" => cfg.jobs.len(),
                        "impulses" => cfg.impulses.len(),
                        "package" => cfg.packages.len(),
                        "external_job_file" => cfg.external_job_files.len(),
                        "sink" => cfg.sinks.len(),
                        other => panic!("`{other}` repeats: no check of its entries"),
                    };
                    assert_eq!(kept, 2, "`{}` twice", key.name);
                }
                Once => {
                    let said = match parse(&text) {
                        Ok(cfg) => cfg
                            .warnings
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                        Err(e) => e.to_string(),
                    };
                    assert!(
                        said.to_ascii_lowercase().contains("more than once")
                            || said.to_ascii_lowercase().contains("more than one"),
                        "`{}` twice: {said}",
                        key.name
                    );
                }
            }
        }
    }

    /// A default the parser fills in is the value the table gives: writing it
    /// changes nothing.
    #[test]
    fn written_defaults_change_nothing() {
        let mut checked = 0;
        for section in SECTIONS {
            let needed: Vec<(&str, &str)> = match section.path.split_once('.') {
                Some(_) => continue,
                None => required(section.path)
                    .map(|k| (k.name, k.example))
                    .collect(),
            };
            for key in section.keys {
                let Is(value) = key.unset else { continue };
                let mut with = needed.clone();
                with.push((key.name, value));
                let without = if section.path.is_empty() {
                    String::new()
                } else {
                    render(section, &needed)
                };
                assert_eq!(
                    clean(&render(section, &with)),
                    clean(&without),
                    "{}.{}: {value}",
                    section.path,
                    key.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "{checked}");
    }

    /// The built-in limits the table gives are the engine's.
    #[test]
    fn builtin_defaults_are_the_engines() {
        use crate::impulses::spec::{
            DEFAULT_DISABLE_AFTER, DEFAULT_MAX_OUTPUTS, DEFAULT_QUEUE_BYTES,
        };
        let builtin = crate::engine::Limits::default();
        for section in SECTIONS {
            for key in section.keys {
                let Builtin(value) = key.unset else { continue };
                assert_eq!(
                    section.path, "limits",
                    "{}: no check for its default",
                    key.name
                );
                let limits = clean(&render(section, &[(key.name, value)])).limits;
                let (got, want) = match key.name {
                    "timeout" => (limits.timeout_us, builtin.timeout.as_micros() as u64),
                    "memory" => (limits.memory_bytes, builtin.memory_bytes),
                    "disable_after" => (
                        limits.disable_after.map(u64::from),
                        u64::from(DEFAULT_DISABLE_AFTER),
                    ),
                    "queue" => (limits.queue_bytes, DEFAULT_QUEUE_BYTES),
                    "outputs" => (limits.outputs, DEFAULT_MAX_OUTPUTS),
                    other => panic!("limits.{other}: no check for its built-in default"),
                };
                assert_eq!(got, Some(want), "limits.{}: {value}", key.name);
            }
        }
        assert_eq!(builtin.fuel, None);
    }
}
