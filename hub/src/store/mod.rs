//! What the hub keeps: users, agent keys, shares, metrics and their samples.
//!
//! **Owns:** the [`HubStore`] trait, the records it deals in, and the rules
//! that must hold inside one transaction (a metric's kind is fixed by its first
//! write; a write of several samples is all or nothing). [`redb::RedbStore`] is
//! the embedded, persistent implementation in a data directory;
//! [`postgres::PgStore`] keeps the same records in PostgreSQL, for several hubs
//! sharing one database (a cluster), and also implements [`SharedLogins`], the
//! login challenges and sessions those hubs share.
//!
//! **Does not:** decide who may read or write what (the session layer does, with
//! [`HubStore::shares_of`]), nor hold anything about live connections.
//!
//! Samples are keyed by metric and TimeUUID: writing the same TimeUUID again
//! replaces the value (an upsert), as on the original server. Reads return rows
//! newest first in TimeUUID order (spec §6.4).

pub mod group;
pub mod postgres;
pub mod redb;

use std::path::PathBuf;
use std::time::Duration;

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

impl Share {
    /// Does this share let `reader` read `id`? (`id` is at or below the
    /// shared prefix of its owner, and the share is with `reader`.)
    pub fn lets_read(&self, reader: &Username, id: &MetricId) -> bool {
        &self.with == reader && id.is_under(&self.owner, &self.prefix)
    }
}

/// What [`HubStore::remove_user`] removed, besides the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRemoval {
    /// Agent keys of the user.
    pub agents: usize,
    /// Shares the user granted.
    pub shares_given: usize,
    /// Shares granted to the user.
    pub shares_received: usize,
    /// Metrics of the user.
    pub metrics: usize,
    /// Samples of those metrics.
    pub samples: u64,
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

/// A metric with its sample count and time span, for listings
/// ([`HubStore::summaries_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSummary {
    /// The local uri.
    pub uri: String,
    /// Datasource or datapoint.
    pub kind: Kind,
    /// Samples stored (a rewrite of a stored TimeUUID does not count again).
    pub count: u64,
    /// The oldest sample's time, if any.
    pub first: Option<TimeUuid>,
    /// The newest sample's time, if any.
    pub last: Option<TimeUuid>,
}

/// A sample of a reduced range: a time and a datapoint value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When.
    pub t: TimeUuid,
    /// The value.
    pub v: f64,
}

/// The values of a datapoint column ([`Column::values`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnValues {
    /// The column's oldest sample.
    pub first: Point,
    /// The column's newest sample.
    pub last: Point,
    /// Its smallest value (the oldest of equals).
    pub min: Point,
    /// Its largest value (the oldest of equals).
    pub max: Point,
}

/// One non-empty column of a reduced range ([`HubStore::reduce`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Which column, 0 ..= columns − 1, oldest first.
    pub index: u32,
    /// Samples in it.
    pub count: u64,
    /// The oldest sample's time.
    pub first: TimeUuid,
    /// The newest sample's time.
    pub last: TimeUuid,
    /// For a datapoint: first, last, min and max (M4); for a datasource none
    /// (its columns are a timeline of when samples came).
    pub values: Option<ColumnValues>,
}

/// A time range reduced to at most a given number of equal columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reduced {
    /// The non-empty columns, oldest first.
    pub columns: Vec<Column>,
    /// Samples in the range.
    pub rows: u64,
}

/// A web API token ([`HubStore::tokens_of`]); the token itself is not kept,
/// only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    /// The user it acts as.
    pub owner: Username,
    /// Its name, unique per user.
    pub name: String,
    /// When it was made, µs since the Unix epoch.
    pub created_us: i64,
}

/// A login session of an agent, shared by the hubs of a cluster
/// ([`SharedLogins::add_session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub sid: String,
    /// The user it is logged in as.
    pub user: Username,
    /// The agent that logged in.
    pub agent_id: String,
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
    /// The user has no agent with this key.
    #[error("user {owner} has no agent {key}")]
    NoSuchAgent {
        /// The user.
        owner: Username,
        /// The key as it was asked for (line, fingerprint or agent id).
        key: String,
    },
    /// The user already has a token of this name.
    #[error("user {owner} already has a token named {name:?}")]
    TokenExists {
        /// The user.
        owner: Username,
        /// The name.
        name: String,
    },
    /// No such share was granted.
    #[error("{} does not share {} with {}", .0.owner, .0.prefix, .0.with)]
    NoSuchShare(Share),
    /// This store cannot do the operation.
    #[error("this store cannot {0}")]
    Unsupported(&'static str),
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
    /// A PostgreSQL store's operation failed (or the database cannot be reached).
    #[error("PostgreSQL store: {op} failed: {reason}")]
    Postgres {
        /// What was being done.
        op: &'static str,
        /// The error, with what to do about it when known.
        reason: String,
    },
    /// The writes were stored, but their notifications could not be
    /// published on the cluster bus (so they are not answered: sent again,
    /// they are stored again, an upsert, and published).
    #[error("the writes are stored but could not be published on the cluster bus: {reason}")]
    Unpublished {
        /// Why.
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

    /// Every share, sorted by owner, prefix, then the user it is shared with.
    fn all_shares(&self) -> Result<Vec<Share>, StoreError> {
        let mut out = Vec::new();
        for owner in self.users()? {
            out.extend(self.shares_of(&owner)?);
        }
        Ok(out)
    }

    /// Withdraw a share granted with [`HubStore::add_share`]: exactly this
    /// owner, prefix and user, or [`StoreError::NoSuchShare`].
    fn remove_share(&self, share: &Share) -> Result<(), StoreError> {
        let _ = share;
        Err(StoreError::Unsupported("remove a share"))
    }

    /// Unregister the agent key `public_line` of `owner`; returns the record
    /// removed, or [`StoreError::NoSuchAgent`].
    fn remove_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        let _ = (owner, public_line);
        Err(StoreError::Unsupported("remove an agent"))
    }

    /// Remove a user and everything of theirs in one transaction: their agent
    /// keys, the shares they granted and those granted to them, their metrics,
    /// supplies and samples. A user added again later under the same name
    /// starts empty. Writes for a user that does not exist are refused, so a
    /// write racing the removal leaves nothing behind.
    fn remove_user(&self, name: &Username) -> Result<UserRemoval, StoreError> {
        let _ = name;
        Err(StoreError::Unsupported("remove a user"))
    }

    /// The kind of a metric, or none when it does not exist.
    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError>;

    /// The kinds of several metrics, in the order given (none for one that does
    /// not exist). The default asks [`HubStore::metric_kind`] for each; a
    /// networked store answers in one round trip.
    fn metric_kinds(&self, ids: &[MetricId]) -> Result<Vec<Option<Kind>>, StoreError> {
        ids.iter().map(|id| self.metric_kind(id)).collect()
    }

    /// Every metric of a user with its kind, sorted by uri.
    fn metrics_of(&self, owner: &Username) -> Result<Vec<(String, Kind)>, StoreError>;

    /// Write samples of `owner` in one transaction, creating missing metrics with
    /// the sample's kind. A sample of the other kind than its metric's refuses the
    /// whole write with [`StoreError::KindMismatch`]; a write for a user that does
    /// not exist is refused with [`StoreError::NoSuchUser`].
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

    /// How long the group writer waits, from a group's first write, for more
    /// writes to commit with it. Zero (the default): a group is whatever
    /// waited while the last commit ran. A store whose every commit costs
    /// another process's CPU and several round trips (PostgreSQL) gathers a
    /// little longer, so that a steady trickle of writes does not become one
    /// transaction each.
    fn group_linger(&self) -> Duration {
        Duration::ZERO
    }

    /// Replace the datapoints a datasource supplies.
    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError>;

    /// The datapoints a datasource supplies, if ever set.
    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError>;

    /// Up to `limit` rows of a metric with `start <= t <= end`, oldest first.
    fn read_oldest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError>;

    /// Every metric of `owner` with its sample count and time span.
    fn summaries_of(&self, owner: &Username) -> Result<Vec<MetricSummary>, StoreError> {
        let _ = owner;
        Err(StoreError::Unsupported("summarise metrics"))
    }

    /// The samples of a metric with `start <= t <= end` reduced to at most
    /// `columns` columns of equal time span, for plotting: per column its count
    /// and, for a datapoint, its first, last, smallest and largest sample (M4).
    fn reduce(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        columns: u32,
    ) -> Result<Reduced, StoreError> {
        let _ = (id, start, end, columns);
        Err(StoreError::Unsupported("reduce a range"))
    }

    /// Set (or with `None` clear) the web password of a user, as a PHC string
    /// (argon2id).
    fn set_password(&self, user: &Username, phc: Option<&str>) -> Result<(), StoreError>;

    /// The web password hash of a user, if set.
    fn password(&self, user: &Username) -> Result<Option<String>, StoreError>;

    /// Keep a web API token's SHA-256 for `owner` under `name`.
    fn add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError>;

    /// Who a token (by its SHA-256) acts as.
    fn find_token(&self, digest: [u8; 32]) -> Result<Option<TokenRecord>, StoreError>;

    /// The tokens of `owner`.
    fn tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError>;

    /// The tokens of `owner` with their SHA-256 digests, sorted by name: what
    /// copying a store to another needs (`komlog-hub migrate`).
    fn token_digests_of(
        &self,
        owner: &Username,
    ) -> Result<Vec<([u8; 32], TokenRecord)>, StoreError> {
        let _ = owner;
        Err(StoreError::Unsupported("list token digests"))
    }

    /// Forget a token; false when `owner` has none of that name.
    fn remove_token(&self, owner: &Username, name: &str) -> Result<bool, StoreError>;

    /// Record that agent `agent_id` logged in at `at_us` (µs since the epoch).
    fn note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError>;

    /// The last login (µs since the epoch) of each agent of `owner` that ever
    /// logged in, by agent id.
    fn last_logins(
        &self,
        owner: &Username,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError>;

    /// Up to `limit` rows of a metric with `start <= t <= end`, newest first.
    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError>;
}

/// Login challenges and agent sessions shared by the hubs of a cluster (one
/// database, several hub processes): a challenge issued by one hub can be
/// answered at another, exactly once; a session cookie made by one hub is
/// known to all. Implemented by [`postgres::PgStore`], not by the embedded
/// store (a single hub keeps these in memory).
pub trait SharedLogins: Send + Sync {
    /// Remember a challenge hash issued to `agent_id`, stamped with the
    /// database's clock; challenges older than an hour are forgotten on the way.
    fn issue_challenge(&self, hash: [u8; 32], agent_id: &str) -> Result<(), StoreError>;

    /// Check that `hash` was issued to `agent_id`, is unused and no older than
    /// `validity` (by the database's clock), as
    /// [`Challenges::check`](crate::auth::Challenges::check) does.
    fn check_challenge(
        &self,
        hash: [u8; 32],
        agent_id: &str,
        validity: Duration,
    ) -> Result<Result<(), crate::auth::ChallengeRefusal>, StoreError>;

    /// Mark a challenge used, atomically: false when it was used already (by
    /// this or another hub) or is unknown.
    fn use_challenge(&self, hash: [u8; 32]) -> Result<bool, StoreError>;

    /// Remember a session under the SHA-256 of its cookie token.
    fn add_session(&self, token_digest: [u8; 32], record: &SessionRecord)
    -> Result<(), StoreError>;

    /// The session of a cookie token (by its SHA-256).
    fn find_session(&self, token_digest: [u8; 32]) -> Result<Option<SessionRecord>, StoreError>;

    /// Forget the sessions of `user`, only the one with `sid` and/or only
    /// those of `agent_id` when given; returns the sids removed, sorted.
    fn remove_sessions(
        &self,
        user: &Username,
        sid: Option<&str>,
        agent_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
mod tests;
