//! The komlogd.yaml file as a whole: the top-level list of one-key entries, the
//! keys that may appear once, and the [`Config`] they build.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrors, ConfigWarning};
use super::impulses::{ImpulseConfig, assign_unique_names, drop_repeated_uris, parse_impulse};
use super::jobs::{JobConfig, parse_job};
use super::limits::{Limits, parse_limits};
use super::listeners::{LineProtocolConfig, StatsdConfig, parse_line_protocol, parse_statsd};
use super::logging::{LoggingConfig, parse_logging};
use super::metrics::{MetricsConfig, parse_metrics};
use super::packages::{PackageConfig, parse_package};
use super::schema::TOP_KEYS;
use super::server::{ServerConfig, parse_server};
use super::sinks::{SinkConfig, check_exporters_have_a_listener, check_unique_names, parse_sink};
use super::yaml::{Ctx, line, unknown_key_message};
use crate::model::Username;

/// The default and the bounds of `max_chain_depth`.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 8;
const MAX_CHAIN_DEPTH_RANGE: std::ops::RangeInclusive<u64> = 1..=64;

/// A loaded komlogd.yaml: every setting with its default filled in and every
/// relative path resolved against the file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Its directory: the root of relative paths.
    pub dir: PathBuf,
    /// `username`; the agent refuses to log in without one.
    pub username: Option<Username>,
    /// `keyfile`, resolved; see [`Config::key_path`] for the default.
    pub keyfile: Option<PathBuf>,
    /// The `logging` block, or its defaults.
    pub logging: LoggingConfig,
    /// Every `impulses` block, enabled or not, in file order.
    pub impulses: Vec<ImpulseConfig>,
    /// Every `job` block, enabled or not, in file order.
    pub jobs: Vec<JobConfig>,
    /// `allow_external_jobs`, honoured only when it appears exactly once (default false).
    pub allow_external_jobs: bool,
    /// `external_job_file` paths, resolved (read only when `allow_external_jobs`).
    pub external_job_files: Vec<PathBuf>,
    /// Every `package` block, in file order.
    pub packages: Vec<PackageConfig>,
    /// `server`; `None` runs the agent alone on its local store.
    pub server: Option<ServerConfig>,
    /// Agent-wide default limits for impulses (all `None` if absent).
    pub limits: Limits,
    /// `max_chain_depth`: how many impulse hops a sample may pass (1..=64, default 8).
    pub max_chain_depth: u32,
    /// `metrics`: the Prometheus endpoint; `None` opens no port.
    pub metrics: Option<MetricsConfig>,
    /// `statsd`: the StatsD listener; `None` opens no port.
    pub statsd: Option<StatsdConfig>,
    /// `line_protocol`: the InfluxDB line protocol listener; `None` opens no port.
    pub line_protocol: Option<LineProtocolConfig>,
    /// Every `sink` block, in file order.
    pub sinks: Vec<SinkConfig>,
    /// Ignored settings, each with its file and line.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Read and parse the file at `path`. A missing file gives `File not found: <path>`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |message: String| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message,
            }])
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(format!("File not found: {}", path.display())));
            }
            Err(e) => return Err(fail(format!("cannot read the configuration file: {e}"))),
        };
        let text = String::from_utf8(bytes)
            .map_err(|e| fail(format!("the configuration file is not valid UTF-8 ({e})")))?;
        Config::parse(&text, path)
    }

    /// Parse `text`, read from `path`. `path` names the file in messages (as given)
    /// and locates relative paths (made absolute with the working directory).
    /// Every error in the file is reported, not only the first.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut ctx = Ctx::new(path.to_path_buf(), dir.clone(), text);
        let mut cfg = Config {
            path: abs,
            dir: dir.clone(),
            username: None,
            keyfile: None,
            logging: LoggingConfig::defaults(&dir),
            impulses: Vec::new(),
            jobs: Vec::new(),
            allow_external_jobs: false,
            external_job_files: Vec::new(),
            packages: Vec::new(),
            server: None,
            limits: Limits::default(),
            max_chain_depth: DEFAULT_MAX_CHAIN_DEPTH,
            metrics: None,
            statsd: None,
            line_protocol: None,
            sinks: Vec::new(),
            warnings: Vec::new(),
        };

        let doc = ctx.load();
        let entries = ctx.entries(doc.as_ref());
        let mut once = Once::default();
        let mut impulses = Vec::new();
        let mut sinks = Vec::new();
        let mut allow_external = Vec::new();
        let mut external_lines = Vec::new();

        for entry in entries {
            let (key, at, value) = (entry.key.as_str(), entry.line, entry.value);
            match key {
                "username" => {
                    let first = once.first("username", at);
                    if !first {
                        ctx.error(at, "More than one username found in configuration file. Keep only one.");
                    }
                    if let Some(text) = ctx.string("username", value) {
                        match Username::parse(&text) {
                            Ok(u) if first => cfg.username = Some(u),
                            Ok(_) => {}
                            Err(e) => ctx.error(line(value), format!("username: {e}")),
                        }
                    }
                }
                "keyfile" => {
                    let first = once.first("keyfile", at);
                    if !first {
                        ctx.error(at, "More than one key found in configuration file. Keep only one.");
                    }
                    if let Some(p) = ctx.path("keyfile", value)
                        && first {
                            cfg.keyfile = Some(p);
                        }
                }
                "logging" | "server" | "limits" | "max_chain_depth" | "metrics" | "statsd"
                | "line_protocol" => {
                    if let Some(previous) = once.previous(key, at) {
                        let what = match key {
                            "logging" => "logging block",
                            "limits" => "limits block",
                            "metrics" => "metrics block",
                            "statsd" => "statsd block",
                            "line_protocol" => "line_protocol block",
                            _ => key,
                        };
                        ctx.error(
                            at,
                            format!("More than one {what} found (lines {previous} and {at}). Keep only one."),
                        );
                        continue;
                    }
                    match key {
                        "logging" => cfg.logging = parse_logging(&mut ctx, value),
                        "server" => cfg.server = parse_server(&mut ctx, at, value),
                        "limits" => cfg.limits = parse_limits(&mut ctx, "limits", value),
                        "metrics" => cfg.metrics = parse_metrics(&mut ctx, at, value),
                        "statsd" => cfg.statsd = parse_statsd(&mut ctx, value),
                        "line_protocol" => {
                            cfg.line_protocol = parse_line_protocol(&mut ctx, value)
                        }
                        _ => {
                            if let Some(depth) = ctx.uint("max_chain_depth", value) {
                                if MAX_CHAIN_DEPTH_RANGE.contains(&depth) {
                                    cfg.max_chain_depth = depth as u32;
                                } else {
                                    ctx.error(
                                        line(value),
                                        format!("max_chain_depth: {depth} is out of range: expected 1 to 64"),
                                    );
                                }
                            }
                        }
                    }
                }
                "impulses" => {
                    if let Some(parsed) = parse_impulse(&mut ctx, at, value) {
                        impulses.push(parsed);
                    }
                }
                "job" => {
                    if let Some(job) = parse_job(&mut ctx, at, value) {
                        cfg.jobs.push(job);
                    }
                }
                "package" => {
                    if let Some(package) = parse_package(&mut ctx, at, value) {
                        cfg.packages.push(package);
                    }
                }
                "sink" => {
                    if let Some(sink) = parse_sink(&mut ctx, at, value) {
                        sinks.push((at, sink));
                    }
                }
                "allow_external_jobs" => {
                    let allowed = ctx.boolean("allow_external_jobs", value);
                    allow_external.push((at, allowed.unwrap_or(false)));
                }
                "external_job_file" => {
                    if let Some(p) = ctx.path("external_job_file", value) {
                        cfg.external_job_files.push(p);
                        external_lines.push(at);
                    }
                }
                "transfers" => ctx.warn(
                    at,
                    "`transfers` blocks (Python transfer methods) are not supported and are ignored: rewrite the method as a WebAssembly impulse and declare it in an `- impulses:` block",
                ),
                _ => ctx.error(at, unknown_key_message(key, "at the top level", TOP_KEYS)),
            }
        }

        match allow_external.as_slice() {
            [] => {}
            [(_, allowed)] => cfg.allow_external_jobs = *allowed,
            [_, (second, _), ..] => ctx.warn(
                *second,
                "allow_external_jobs option found more than once, ignoring.",
            ),
        }
        if !cfg.allow_external_jobs
            && let Some(first) = external_lines.first()
        {
            ctx.warn(
                    *first,
                    "external_job_file is ignored because allow_external_jobs is not enabled: add `- allow_external_jobs: yes` once to read it",
                );
        }
        drop_repeated_uris(&mut ctx, &mut impulses, cfg.username.as_ref());
        cfg.impulses = assign_unique_names(&mut ctx, impulses);
        check_unique_names(&mut ctx, &sinks);
        check_exporters_have_a_listener(&mut ctx, &sinks, cfg.metrics.is_some());
        cfg.sinks = sinks.into_iter().map(|(_, s)| s).collect();

        if ctx.errors.is_empty() {
            cfg.warnings = ctx.warnings;
            Ok(cfg)
        } else {
            let mut errors = ctx.errors;
            errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(errors))
        }
    }

    /// The private key's path: `keyfile`, or `key.priv` beside the config file.
    pub fn key_path(&self) -> PathBuf {
        self.keyfile
            .clone()
            .unwrap_or_else(|| self.dir.join("key.priv"))
    }
}

/// The first line at which each once-only key appeared.
#[derive(Default)]
struct Once(Vec<(&'static str, usize)>);

impl Once {
    /// The line of an earlier entry with `key`, or `None` (and remember this one).
    fn previous(&mut self, key: &str, at: usize) -> Option<usize> {
        if let Some((_, line)) = self.0.iter().find(|(k, _)| *k == key) {
            return Some(*line);
        }
        if let Some(k) = TOP_KEYS.iter().find(|k| **k == key) {
            self.0.push((k, at));
        }
        None
    }

    /// True the first time `key` is seen.
    fn first(&mut self, key: &str, at: usize) -> bool {
        self.previous(key, at).is_none()
    }
}
