//! The store's errors. Every one names the database file it is about.

use std::io;
use std::path::PathBuf;

/// Why the store could not do what was asked. When [`super::Store::append`] returns one,
/// nothing of that call was committed and the in-memory cache is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database (redb's `DatabaseAlreadyOpen`).
    #[error(
        "store {path} is locked: another komlogd process is using it; stop that process, \
         or give this agent its own config directory"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// This process already has the database open through another [`super::Store`].
    #[error(
        "store {path} is already open in this process; a store can be opened only once at a time"
    )]
    AlreadyOpen {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a redb database, not a komlogd store, or damaged.
    #[error("store {path} is corrupt or not a komlogd store: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store was written by a komlogd with another on-disk format.
    #[error(
        "store {path} has format version {found}, but this komlogd reads only version {supported}; \
         run a komlogd release that matches it, or move the file away to start an empty store"
    )]
    UnsupportedVersion {
        /// The database file.
        path: PathBuf,
        /// The version found in its `meta` table.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// An operating-system I/O error.
    #[error("store {path}: {op}: {source}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Any other failure reported by the database engine.
    #[error("store {path}: {op}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// The engine's message.
        reason: String,
    },
}

impl StoreError {
    /// The database file this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            StoreError::Locked { path }
            | StoreError::AlreadyOpen { path }
            | StoreError::Corrupt { path, .. }
            | StoreError::UnsupportedVersion { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::Database { path, .. } => path,
        }
    }

    /// Map any redb error to a store error naming `path`; `op` says what was being done.
    pub(super) fn from_redb(
        path: &std::path::Path,
        op: &'static str,
        err: impl Into<redb::Error>,
    ) -> Self {
        let path = path.to_path_buf();
        match err.into() {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked { path },
            redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
            redb::Error::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
                // redb reports a file that is not a redb database as InvalidData
                // ("Not a redb database: magic number mismatch").
                StoreError::Corrupt {
                    path,
                    reason: source.to_string(),
                }
            }
            redb::Error::Io(source) => StoreError::Io { path, op, source },
            e @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TypeDefinitionChanged { .. }) => StoreError::Corrupt {
                path,
                reason: e.to_string(),
            },
            redb::Error::UpgradeRequired(v) => StoreError::Corrupt {
                path,
                reason: format!("the redb file format {v} is too old for this build"),
            },
            other => StoreError::Database {
                path,
                op,
                reason: other.to_string(),
            },
        }
    }
}
