//! The `- logging:` block: level, rotation and where the log file goes.
//!
//! Rotation is on by default (the original agent's default was the string `'yes'`,
//! which never equalled `True`, so without a logging block it never rotated).

use std::path::{Path, PathBuf};

use super::schema::LOGGING_KEYS;
use super::yaml::{Ctx, Node, line};

/// Log settings, with defaults filled in and the directory resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `trace`, `debug`, `info` (default), `warn` or `error` (`warning` and
    /// `critical` in the file read as `warn` and `error`).
    pub level: String,
    /// Rotate the file when it reaches `max_bytes` (default true).
    pub rotation: bool,
    /// Size at which the file rotates (default 10000000).
    pub max_bytes: u64,
    /// Rotated files kept (default 3).
    pub backup_count: u32,
    /// Directory of the log file, resolved (default `log` beside the config file).
    pub dir: PathBuf,
    /// File name inside `dir` (default `komlogd.log`).
    pub filename: String,
    /// The line format of the log file and stderr (default text).
    pub format: LogFormat,
}

/// `logging.format`: how each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-23T16:05:48.123456Z INFO impulse=df module=komlogd::engine: message`.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`,
    /// the enclosing spans), for log collectors.
    Json,
}

impl LoggingConfig {
    /// The defaults, for a config file in `config_dir`.
    pub fn defaults(config_dir: &Path) -> Self {
        LoggingConfig {
            level: "info".to_owned(),
            rotation: true,
            max_bytes: 10_000_000,
            backup_count: 3,
            dir: config_dir.join("log"),
            filename: "komlogd.log".to_owned(),
            format: LogFormat::Text,
        }
    }

    /// The log file: `dir/filename`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(&self.filename)
    }
}

/// Read a `logging` block.
pub(super) fn parse_logging(ctx: &mut Ctx<'_>, node: &Node) -> LoggingConfig {
    let mut cfg = LoggingConfig::defaults(&ctx.dir);
    let Some(block) = ctx.block("logging", node, LOGGING_KEYS) else {
        return cfg;
    };
    if let Some(n) = block.get("level")
        && let Some(level) = parse_level(ctx, n)
    {
        cfg.level = level;
    }
    if let Some(n) = block.get("rotation") {
        cfg.rotation = ctx.boolean("logging.rotation", n).unwrap_or(cfg.rotation);
    }
    if let Some(n) = block.get("max_bytes") {
        cfg.max_bytes = ctx.bytes("logging.max_bytes", n).unwrap_or(cfg.max_bytes);
    }
    if let Some(n) = block.get("backup_count") {
        cfg.backup_count = ctx
            .uint32("logging.backup_count", n)
            .unwrap_or(cfg.backup_count);
    }
    if let Some(n) = block.get("dirname")
        && let Some(dir) = ctx.path("logging.dirname", n)
    {
        cfg.dir = dir;
    }
    if let Some(n) = block.get("filename")
        && let Some(name) = ctx.string("logging.filename", n)
    {
        if name.contains('/') || name == "." || name == ".." {
            ctx.error(
                line(n),
                format!("logging.filename: {name:?} must be a file name only; put the directory in logging.dirname"),
            );
        } else {
            cfg.filename = name;
        }
    }
    if let Some(n) = block.get("format")
        && let Some(format) = parse_format(ctx, n)
    {
        cfg.format = format;
    }
    cfg
}

fn parse_format(ctx: &mut Ctx<'_>, node: &Node) -> Option<LogFormat> {
    let text = ctx.string("logging.format", node)?;
    match text.to_ascii_lowercase().as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => {
            ctx.error(
                line(node),
                format!("logging.format: expected text or json, found {text:?}"),
            );
            None
        }
    }
}

fn parse_level(ctx: &mut Ctx<'_>, node: &Node) -> Option<String> {
    let text = ctx.string("logging.level", node)?;
    let level = match text.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" => "error",
        _ => {
            ctx.error(
                line(node),
                format!("logging.level: expected one of trace, debug, info, warn, error (or warning, critical), found {text:?}"),
            );
            return None;
        }
    };
    Some(level.to_owned())
}
