//! The log file writer: rotated by size, or a plain appending file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::LoggingError;
use super::rotate::{RotatingFile, open_append};
use crate::config::LoggingConfig;

/// The log file as configured: size-rotated when `rotation` is on, otherwise a
/// plain file that is only appended to. Each `write` call should be one line.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Plain(File),
    Rotating(RotatingFile),
}

/// Create the log directory and open the log file described by `config` (rotated
/// by size when `config.rotation`). Used by [`super::init`]; usable on its own.
pub fn rotating_writer(config: &LoggingConfig) -> Result<LogWriter, LoggingError> {
    std::fs::create_dir_all(&config.dir).map_err(|source| LoggingError::CreateDir {
        path: config.dir.clone(),
        source,
    })?;
    let path = config.file();
    let open_err = |source| LoggingError::Open {
        path: path.clone(),
        source,
    };
    let inner = if config.rotation {
        Inner::Rotating(
            RotatingFile::open(&path, config.max_bytes, config.backup_count).map_err(open_err)?,
        )
    } else {
        Inner::Plain(open_append(&path).map_err(open_err)?)
    };
    Ok(LogWriter { path, inner })
}

impl LogWriter {
    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(f) => {
                f.write_all(buf)?;
                Ok(buf.len())
            }
            Inner::Rotating(r) => r.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(f) => f.flush(),
            Inner::Rotating(r) => r.flush(),
        }
    }
}
