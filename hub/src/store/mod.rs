//! What the hub keeps: users, agent keys, shares, metrics and their samples.
//!
//! **Owns:** the [`HubStore`] trait, the records it deals in, and the rules
//! that must hold inside one transaction (a metric's kind is fixed by its first
//! write; a write of several samples is all or nothing). [`redb::RedbStore`] is
//! the embedded, persistent implementation in a data directory; a networked
//! database can implement the same trait.
//!
//! **Does not:** decide who may read or write what (the session layer does, with
//! [`HubStore::shares_of`]), nor hold anything about live connections.
//!
//! Samples are keyed by metric and TimeUUID: writing the same TimeUUID again
//! replaces the value (an upsert), as on the original server. Reads return rows
//! newest first in TimeUUID order (spec §6.4).

pub mod group;
pub mod redb;

use std::path::PathBuf;

use komlog_protocol::{Kind, MetricId, TimeUuid, Username};

/// A registered agent key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentRecord {
    /// The agent's id: 32 hex digits, drawn at registration.
    pub id: String,
    /// The user the agent logs in as.
    pub owner: Username,
    /// The canonical OpenSSH public key line, compared byte for byte at login.
    pub public_line: String,
}

/// A read-only grant: `with` may read `owner`'s metrics at `prefix` and below.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// The user sharing.
    pub owner: Username,
    /// A local uri; the share covers it and every uri below it.
    pub prefix: String,
    /// The user it is shared with.
    pub with: Username,
}

/// One sample to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSample {
    /// The metric's local uri (the owner is given to [`HubStore::write`]).
    pub uri: String,
    /// The kind the write needs; a new metric is created with it.
    pub kind: Kind,
    /// The sample time.
    pub t: TimeUuid,
    /// The value as text (datapoints in canonical decimal form).
    pub content: String,
}

/// What a successful write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Local uris created by this write, in first-write order.
    pub created: Vec<String>,
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The user does not exist.
    #[error("user {0} does not exist")]
    NoSuchUser(Username),
    /// The user already exists.
    #[error("user {0} already exists")]
    UserExists(Username),
    /// The key is already registered (for this or another user).
    #[error("this key is already registered as agent {id} of user {owner}")]
    KeyRegistered {
        /// Its owner.
        owner: Username,
        /// Its agent id.
        id: String,
    },
    /// A write to a uri of the other kind; nothing was written.
    #[error("uri {uri} is a {existing}; a {written} cannot be written to it")]
    KindMismatch {
        /// The local uri.
        uri: String,
        /// Its kind, fixed by its first write.
        existing: Kind,
        /// The kind of the refused sample.
        written: Kind,
    },
    /// Another process holds the data directory.
    #[error(
        "the data directory {} is in use by another process (a running komlog-hub?)",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file is not a hub database, or is damaged.
    #[error("the hub database {} is not usable: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Any other database or I/O failure.
    #[error("hub database {}: {op} failed: {reason}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        reason: String,
    },
}

/// The hub's storage. Every method is one transaction; implementations are
/// shared across connections and must be safe to call from several threads.
pub trait HubStore: Send + Sync + 'static {
    /// Create a user.
    fn add_user(&self, name: &Username) -> Result<(), StoreError>;

    /// True when the user exists.
    fn user_exists(&self, name: &Username) -> Result<bool, StoreError>;

    /// Every user, sorted.
    fn users(&self) -> Result<Vec<Username>, StoreError>;

    /// Register an agent key (a canonical OpenSSH line) for an existing user.
    fn add_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError>;

    /// The agent of `owner` whose key line is exactly `public_line`.
    fn find_agent(
        &self,
        owner: &Username,
        public_line: &str,
    ) -> Result<Option<AgentRecord>, StoreError>;

    /// Every agent of a user.
    fn agents_of(&self, owner: &Username) -> Result<Vec<AgentRecord>, StoreError>;

    /// Grant a read-only share; both users must exist. Granting twice is not an error.
    fn add_share(&self, share: &Share) -> Result<(), StoreError>;

    /// Every share granted by `owner`.
    fn shares_of(&self, owner: &Username) -> Result<Vec<Share>, StoreError>;

    /// The kind of a metric, or none when it does not exist.
    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError>;

    /// Every metric of a user with its kind, sorted by uri.
    fn metrics_of(&self, owner: &Username) -> Result<Vec<(String, Kind)>, StoreError>;

    /// Write samples of `owner` in one transaction, creating missing metrics with
    /// the sample's kind. A sample of the other kind than its metric's refuses the
    /// whole write with [`StoreError::KindMismatch`].
    fn write(&self, owner: &Username, samples: &[NewSample]) -> Result<WriteOutcome, StoreError>;

    /// Several independent writes committed together (a group commit): each is
    /// all or nothing on its own, as [`HubStore::write`], and gets its own
    /// result; the outer error means nothing of the group was written. The
    /// default runs them one by one; a store whose commit is expensive (a
    /// durable fsync) commits them in one transaction.
    fn write_group(
        &self,
        writes: &[(Username, Vec<NewSample>)],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        Ok(writes
            .iter()
            .map(|(owner, samples)| self.write(owner, samples))
            .collect())
    }

    /// Replace the datapoints a datasource supplies.
    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError>;

    /// The datapoints a datasource supplies, if ever set.
    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError>;

    /// Up to `limit` rows of a metric with `start <= t <= end`, newest first.
    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError>;
}

#[cfg(test)]
mod tests;
