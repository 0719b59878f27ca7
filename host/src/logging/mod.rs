//! The agent's log: `tracing` events to a size-rotated file and to stderr.
//!
//! **Owns:** the global `tracing` subscriber ([`init`]), the line format
//! (`2026-11-23T16:05:48.123456Z INFO impulse=df module=komlogd::engine: message`,
//! see `format.rs`; or, with `logging.format: json`, tracing-subscriber's JSON
//! lines with the event's fields at the top level), the log file and its rotation (`rotate.rs`: `komlogd.log` →
//! `komlogd.log.1` → … keeping `backup_count` backups, Python's
//! `RotatingFileHandler` scheme), and the log levels' names.
//!
//! **Does not:** decide the settings (the config's [`LoggingConfig`] does, with
//! rotation on by default) or print the user-facing start-up errors.
//!
//! **Invariants:** writes are synchronous and unbuffered (one `write(2)` per line
//! under a lock), so nothing is lost on exit, normal or not; [`LogGuard`] flushes
//! on drop all the same. The file layer and the stderr layer filter separately.
//!
//! **Tests:** `tests.rs` (the file writer and the line format without a global
//! subscriber), `rotate.rs`, `format.rs`.

mod format;
mod rotate;
mod writer;

#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::Metadata;
use tracing_subscriber::filter::{FilterFn, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

pub use format::{KeyValueFields, LineFormat};
pub use rotate::RotatingFile;
pub use writer::{LogWriter, rotating_writer};

/// The stderr level the command line uses unless told otherwise.
pub const DEFAULT_STDERR_LEVEL: &str = "warn";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log directory could not be created.
    #[error("cannot create the log directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The log file could not be opened for appending.
    #[error("cannot open the log file {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A level name is not one of the known ones.
    #[error(
        "invalid {what} log level {value:?}: expected one of off, error, warn, info, debug, trace"
    )]
    Level {
        /// Which level (`file` or `stderr`).
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A global `tracing` subscriber was installed already.
    #[error("cannot install the logger: a global tracing subscriber is already set")]
    AlreadyInitialized,
}

/// Parse a level name: `off`, `error`, `warn`, `info`, `debug`, `trace`, any case,
/// also Python's `warning` and `critical` (= `error`).
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" | "critical" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Install the global subscriber: lines at `config.level` and above go to
/// `config.file()` (its directory is created; rotated by size when
/// `config.rotation`), lines at `stderr_level` and above to stderr
/// ([`DEFAULT_STDERR_LEVEL`] for the command line). Keep the returned guard until
/// exit.
pub fn init(config: &LoggingConfig, stderr_level: &str) -> Result<LogGuard, LoggingError> {
    let file_level = parse_level(&config.level).ok_or_else(|| LoggingError::Level {
        what: "file",
        value: config.level.clone(),
    })?;
    let stderr_filter = parse_level(stderr_level).ok_or_else(|| LoggingError::Level {
        what: "stderr",
        value: stderr_level.to_owned(),
    })?;
    let writer = rotating_writer(config)?;
    let path = writer.path().to_owned();
    let shared = SharedWriter(Arc::new(Mutex::new(writer)));
    // Spans are kept at the more verbose of the two levels for both outputs, so a
    // warning on stderr still shows the context (e.g. `impulse=df`) of info spans.
    let spans = file_level.max(stderr_filter);
    let file_layer = output(
        config.format,
        shared.clone(),
        level_filter(file_level, spans),
    );
    let stderr_layer = output(
        config.format,
        io::stderr,
        level_filter(stderr_filter, spans),
    );
    tracing_subscriber::registry()
        .with(vec![file_layer, stderr_layer])
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialized)?;
    Ok(LogGuard {
        writer: shared,
        path,
    })
}

/// One output (the file or stderr) in the configured line format, behind its filter.
fn output<W>(
    format: LogFormat,
    writer: W,
    filter: FilterFn<impl Fn(&Metadata<'_>) -> bool + Send + Sync + 'static>,
) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer);
    match format {
        LogFormat::Text => layer
            .event_format(LineFormat)
            .fmt_fields(KeyValueFields)
            .with_filter(filter)
            .boxed(),
        // `timestamp`, `level`, `message` and the event's other fields at the top
        // level, then `target` and the enclosing spans (`span`, `spans`).
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    }
}

/// A per-output filter: events at `events` and above, spans at `spans` and above.
fn level_filter(
    events: LevelFilter,
    spans: LevelFilter,
) -> FilterFn<impl Fn(&Metadata<'_>) -> bool + Clone> {
    filter_fn(move |meta: &Metadata<'_>| {
        let level = if meta.is_span() { spans } else { events };
        // The configured level is for komlogd's own lines (including what guests
        // log through it); dependencies (wasmtime, cranelift, redb...) speak at
        // warn and above only, or debug would drown the log in compiler internals.
        let level = if meta.target().starts_with("komlogd") {
            level
        } else {
            level.min(LevelFilter::WARN)
        };
        *meta.level() <= level
    })
    .with_max_level_hint(events.max(spans))
}

/// Keeps the log file open; flushes it when dropped. Returned by [`init`].
#[must_use = "the guard flushes the log when dropped; keep it until exit"]
#[derive(Debug)]
pub struct LogGuard {
    writer: SharedWriter,
    path: PathBuf,
}

impl LogGuard {
    /// The log file (`Log info: <path>` in start-up error messages).
    pub fn log_file(&self) -> &Path {
        &self.path
    }

    /// Flush the log file.
    pub fn flush(&self) -> io::Result<()> {
        self.writer.lock().flush()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // Nothing can be reported at this point; writes are unbuffered anyway.
        let _ = self.flush();
    }
}

/// The log file shared between the subscriber and the guard.
#[derive(Debug, Clone)]
struct SharedWriter(Arc<Mutex<LogWriter>>);

impl SharedWriter {
    /// Lock the writer; a panic in another writer does not stop logging.
    fn lock(&self) -> MutexGuard<'_, LogWriter> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'a> MakeWriter<'a> for SharedWriter {
    type Writer = MutexGuardWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        MutexGuardWriter(self.lock())
    }
}

/// One line's exclusive access to the log file.
struct MutexGuardWriter<'a>(MutexGuard<'a, LogWriter>);

impl Write for MutexGuardWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
