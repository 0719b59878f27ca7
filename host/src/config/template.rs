//! The commented komlogd.yaml written on first run.
//!
//! Every line is a comment. Example lines start with `#- ` or `#  `: removing their
//! leading `#` gives a valid configuration with every block present (the tests do
//! exactly that). Explanations start with `# ` and a word, or are a bare `#`.

/// The first-run configuration file: every key, commented out, with a one-line
/// explanation each.
pub const TEMPLATE: &str = r#"# komlogd configuration file.
#
# The file is a YAML list: each entry is a one-key map, `- key: value`.
# Lines starting with `#- ` or `#  ` are examples: delete the leading `#` to use one.
# Relative paths are relative to the directory of this file.
# Booleans can be written yes/no, true/false or on/off.

# ------------------------------------------------------------------ user
# Your Komlog username: set it and uncomment the line.
#- username: username

# The agent's private key, created on first run if missing (default key.priv here).
#- keyfile: key.priv

# ------------------------------------------------------------------ server
# A Komlog-compatible server, such as a komlog-hub; without one komlogd runs alone.
# The url is http, https, ws or wss: for a hub serving plain HTTP on this machine
# (`komlog-hub serve --listen 127.0.0.1:8080`) it is http://127.0.0.1:8080/.
# With https or wss the server's certificate must chain to a public CA, or to one
# of the CA certificates in ca_file (PEM; optional).
#- server:
#    url: https://localhost:8443/   # a komlog-hub serving TLS (serve --tls-cert ... --tls-key ...)
#    ca_file: ca.pem                # optional: the CA that signed its certificate
#    # Several servers with the same user and key, tried in turn, instead of url:
#    # urls: [https://hub1.example.org:8443/, https://hub2.example.org:8443/]

# ------------------------------------------------------------------ logging
# Where and how much komlogd logs; the values shown are the defaults.
#- logging:
#    level: info             # trace, debug, info, warn or error
#    rotation: yes           # start a new file when this one reaches max_bytes
#    max_bytes: 10000000     # bytes, or a size such as 10MB
#    backup_count: 3         # rotated files to keep
#    dirname: log            # directory of the log file
#    filename: komlogd.log   # file name only
#    format: text            # text, or json: one JSON object per line

# ------------------------------------------------------------------ metrics
# Serve the agent's counters at GET /metrics in the Prometheus text format.
# Default: none, no port is opened.
#- metrics:
#    listen: 127.0.0.1:9108      # address and port

# ------------------------------------------------------------------ listeners
# Take application metrics from StatsD clients (UDP) and InfluxDB line
# protocol writers (HTTP) as samples. Default: none, no port is opened.
#- statsd:
#    listen: 127.0.0.1:8125      # UDP address and port
#    flush: 1s                   # how often the aggregates are written
#    prefix: app                 # put before every metric's uri
#- line_protocol:
#    listen: 127.0.0.1:8186      # HTTP address and port
#    prefix: influx              # put before every point's uri

# ------------------------------------------------------------------ sinks
# Forward the samples the agent stores to other systems, at least once, in
# batches. uris are patterns: `*` is one level, `**` any number. Default: none.
#- sink:
#    name: archive               # default: the type
#    type: file
#    path: sinks/samples.jsonl   # default: sinks/<name>.jsonl
#    format: jsonl               # jsonl or csv
#    rotate: {size: 10MB, keep: 5}
#    uris: ["host.**"]           # default: every local uri
#    kinds: [datapoint, datasource]
#    batch: {size: 5000, age: 1s}
#    max_lag: 1000000            # samples behind before the oldest are dropped
#- sink:
#    type: webhook
#    url: https://hooks.example.org/komlog  # POST {"samples": [...]}; http:// too
#    ca: /etc/komlogd/ca.pem     # https only: a private CA to trust too
#- sink:
#    type: postgres
#    url: postgres://postgres@127.0.0.1:5432/metrics
#    table: komlog_samples       # created if missing
#- sink:
#    type: influxdb
#    url: http://127.0.0.1:8086
#    database: komlog
#    measurement: komlog         # default: the uri's first level
#- sink:
#    type: redis
#    url: redis://127.0.0.1:6379
#    stream: komlog_samples      # XADD'ed to
#- sink:
#    type: mqtt
#    url: mqtt://127.0.0.1:1883
#    topic: komlog               # host.cpu goes to komlog/host/cpu, QoS 1
#- sink:
#    type: nats
#    url: nats://127.0.0.1:4222
#    subject: komlog             # host.cpu goes to komlog.host.cpu
#    jetstream: KOMLOG           # optional: a stream, created when missing
#- sink:
#    type: prometheus_exporter   # latest datapoints on GET /metrics (needs - metrics:)
#- sink:
#    type: prometheus_remote_write
#    url: http://127.0.0.1:9090/api/v1/write

# ------------------------------------------------------------------ jobs
# A job runs a command on a cron schedule and sends what it prints, if anything,
# as a text sample to its uri. Commands run without a shell: for pipes or
# redirections, write a script and run the script.
#- job:
#    uri: system.info.disk       # one of your own uris (no `user:` prefix)
#    command: df -k              # program and arguments, quoted as in a shell
#    enabled: yes                # default yes
#    schedule: ['0 * * * *']     # minute hour day-of-month month day-of-week, or @hourly
#    timeout: 30s                # optional: stop the command after this long
#    supplies: [system.info.disk.root_used]   # optional: datapoints the text carries (told to the server)

# Jobs can also come from other files (only their `job` entries are read) when
# allow_external_jobs appears exactly once and is yes.
#- allow_external_jobs: yes
#- external_job_file: jobs/more-jobs.yaml

# ------------------------------------------------------------------ impulses
# An impulse is a WebAssembly component run whenever one of its uris gets a sample.
#- impulses:
#    enabled: yes                         # default yes
#    filename: impulses/cpu_alarm.wasm    # the component
#    name: cpu_alarm                      # optional; default: the file name without .wasm
#    uris: [host.cpu.system, 'alice:host.cpu.system']   # own uris, or `user:uri` of others
#    data_reqs:                           # recent data handed to each run
#      past_delta: 1h                     # the samples of the last hour
#      past_count: 10                     # and at least the last 10 of each uri
#    min_exec_delta: 1min                 # skip runs closer together than this
#    params: {threshold: 90, hosts: [a, b]}   # passed to the component as text
#    limits: {timeout: 2s, memory: 64MiB, fuel: 1000000000}   # this impulse's sandbox

# ------------------------------------------------------------------ packages
# A package is a WebAssembly collector with its own jobs and impulses. `venv` picks
# the instance it runs in: default (shared), isolated (its own) or a pool name.
#- package:
#    install: packages/linux.wasm         # the component
#    enabled: yes                         # default yes
#    venv: default                        # default, isolated or a shared pool name
#    params: {interval: 5min}             # passed to the package as text
#    limits: {timeout: 10s, memory: 128MiB}   # its sandbox (venv: isolated only)
#    grants:                              # what the sandbox may see; nothing by default
#      dirs: [/proc, /sys]                # directories, read-only
#      env: [HOSTNAME]                    # environment variables
#    refresh: 1h                          # optional: reload the package this often

# ------------------------------------------------------------------ limits
# Default sandbox limits for every impulse; an impulse's own limits take precedence.
#- limits:
#    timeout: 5s                          # wall-clock time per run (default 1s; a loaded machine may let a runaway run up to 2x this)
#    memory: 64MiB                        # largest memory
#    fuel: 10000000000                    # roughly, instructions per run
#    disable_after: 5                     # failed events in a row before it is disabled
#    queue: 64MiB                         # memory its waiting fires may hold; more are dropped
#    outputs: 10000                       # samples one call may return; more and none are written

# How many impulses a sample may pass through, one feeding the next (1 to 64).
#- max_chain_depth: 8
"#;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Venv};

    /// The template with its example lines uncommented.
    fn uncommented() -> String {
        TEMPLATE
            .lines()
            .map(|l| {
                if l.starts_with("#- ") || l.starts_with("#  ") {
                    &l[1..]
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_line_is_a_comment_or_blank() {
        for l in TEMPLATE.lines() {
            assert!(l.is_empty() || l.starts_with('#'), "{l:?}");
            let example = l.starts_with("#- ") || l.starts_with("#  ");
            let explanation = l == "#" || (l.starts_with("# ") && !l.starts_with("#  "));
            assert!(example || explanation || l.is_empty(), "{l:?}");
        }
    }

    #[test]
    fn template_parses_to_an_empty_config() {
        let cfg = Config::parse(TEMPLATE, Path::new("/home/u/.komlogd/komlogd.yaml")).unwrap();
        assert_eq!(cfg.username, None);
        assert!(cfg.warnings.is_empty());
        assert!(cfg.jobs.is_empty() && cfg.impulses.is_empty() && cfg.packages.is_empty());
        assert!(cfg.logging.rotation);
        assert_eq!(cfg.max_chain_depth, 8);
    }

    #[test]
    fn uncommented_template_is_complete_and_valid() {
        let text = uncommented();
        let cfg = Config::parse(&text, Path::new("/home/u/.komlogd/komlogd.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let dir = Path::new("/home/u/.komlogd");
        assert_eq!(cfg.username.as_ref().map(|u| u.as_str()), Some("username"));
        assert_eq!(cfg.keyfile.as_deref(), Some(dir.join("key.priv").as_path()));
        // The public Komlog service is gone: the example is a komlog-hub.
        assert_eq!(
            cfg.server.as_ref().map(|s| s.url()),
            Some("https://localhost:8443/")
        );
        assert!(TEMPLATE.contains("http://127.0.0.1:8080/"));
        assert!(!TEMPLATE.contains("komlog.io"));
        assert_eq!(
            cfg.metrics
                .as_ref()
                .map(|m| m.listen.to_string())
                .as_deref(),
            Some("127.0.0.1:9108")
        );
        assert_eq!(
            cfg.server.as_ref().and_then(|s| s.ca_file.as_deref()),
            Some(dir.join("ca.pem").as_path())
        );
        assert_eq!(cfg.logging, crate::config::LoggingConfig::defaults(dir));
        assert_eq!(cfg.jobs.len(), 1);
        assert_eq!(cfg.jobs[0].argv, ["df", "-k"]);
        assert_eq!(cfg.jobs[0].timeout_us, Some(30_000_000));
        assert_eq!(cfg.jobs[0].supplies, ["system.info.disk.root_used"]);
        assert!(cfg.allow_external_jobs);
        assert_eq!(cfg.external_job_files, [dir.join("jobs/more-jobs.yaml")]);
        assert_eq!(cfg.impulses.len(), 1);
        let imp = &cfg.impulses[0];
        assert_eq!(imp.name, "cpu_alarm");
        assert_eq!(imp.uris.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            imp.params[1],
            ("hosts".to_owned(), r#"["a","b"]"#.to_owned())
        );
        assert_eq!(imp.limits.memory_bytes, Some(64 << 20));
        assert!(imp.data_reqs.is_some() && imp.min_exec_delta_us.is_some());
        assert_eq!(cfg.packages.len(), 1);
        let pkg = &cfg.packages[0];
        assert_eq!(pkg.venv, Venv::Default);
        assert_eq!(pkg.grants.dirs.len(), 2);
        assert_eq!(pkg.grants.env, ["HOSTNAME"]);
        assert_eq!(pkg.refresh_us, Some(3_600_000_000));
        assert_eq!(cfg.limits.fuel, Some(10_000_000_000));
        assert_eq!(cfg.max_chain_depth, 8);
    }
}
