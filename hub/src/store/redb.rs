//! The embedded store: one redb database file, `hub.redb`, in the data directory.
//!
//! Tables (all keys sort bytewise):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` name | `u64` (`format_version`, `next_metric_id`) |
//! | `users` | username | registration time, µs |
//! | `agents` | (owner, key line) | agent id |
//! | `shares` | (owner, prefix, with) | grant time, µs |
//! | `metrics` | (owner, local uri) | (metric id, kind letter) |
//! | `supplies` | metric id | JSON list of local uris |
//! | `samples` | (metric id, [`TimeUuid::sort_key`]) | content |
//! | `metric_stats` | metric id | (count, first and last sort key) |
//! | `rollups` | (metric id, tier, bucket) | count, first, last, min, max |
//!
//! `metric_stats` and `rollups` are kept in the samples' write transaction and
//! built at open for a store written before them (see [`rollup`]'s doc for the
//! tiers); the web tables are described in `web`.
//!
//! The sort key makes a range scan of one metric come out in TimeUUID order,
//! and is turned back into the TimeUUID on reading, so the uuid is not stored
//! twice. Every write transaction is committed durably (redb's default
//! immediate durability): when a call returns `Ok`, the data is on disk.
//! [`HubStore::write_group`] puts many independent writes in one transaction,
//! so one fsync covers them all (see [`super::group`]).

use std::path::{Path, PathBuf};

use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{
    AgentRecord, HubStore, MetricSummary, NewSample, Reduced, Share, StoreError, TokenRecord,
    UserRemoval, WriteOutcome,
};

mod rollup;
mod web;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "hub.redb";

/// The layout version written in `meta`.
const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, u64> = TableDefinition::new("users");
const AGENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("agents");
const SHARES: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("shares");
const METRICS: TableDefinition<(&str, &str), (u64, &str)> = TableDefinition::new("metrics");
const SUPPLIES: TableDefinition<u64, &str> = TableDefinition::new("supplies");
const SAMPLES: TableDefinition<(u64, [u8; 16]), &str> = TableDefinition::new("samples");

/// The redb-backed [`HubStore`].
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// Open (or create) the store in `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<RedbStore, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database {
            path: path.clone(),
            op: "creating the data directory",
            reason: e.to_string(),
        })?;
        let db = Database::create(&path).map_err(|e| from_redb(&path, "opening", e))?;
        let store = RedbStore { db, path };
        store.check_or_init()?;
        store.web_init()?;
        store.rollup_init()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| from_redb(&self.path, op, e)
    }

    fn check_or_init(&self) -> Result<(), StoreError> {
        let err = self.err("checking the format");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        match rtxn.open_table(META) {
            Ok(meta) => {
                let version = meta
                    .get("format_version")
                    .map_err(|e| err(e.into()))?
                    .map(|v| v.value());
                if version != Some(FORMAT_VERSION) {
                    return Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        reason: format!(
                            "format version {version:?}; this komlog-hub reads version {FORMAT_VERSION}"
                        ),
                    });
                }
                Ok(())
            }
            Err(TableError::TableDoesNotExist(_)) => {
                let has_tables = rtxn
                    .list_tables()
                    .map_err(|e| err(e.into()))?
                    .next()
                    .is_some();
                if has_tables {
                    return Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        reason: "it is a redb database without a hub meta table".into(),
                    });
                }
                drop(rtxn);
                let err = self.err("creating the tables");
                let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
                {
                    let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(|e| err(e.into()))?;
                    meta.insert("next_metric_id", 1)
                        .map_err(|e| err(e.into()))?;
                    txn.open_table(USERS).map_err(|e| err(e.into()))?;
                    txn.open_table(AGENTS).map_err(|e| err(e.into()))?;
                    txn.open_table(SHARES).map_err(|e| err(e.into()))?;
                    txn.open_table(METRICS).map_err(|e| err(e.into()))?;
                    txn.open_table(SUPPLIES).map_err(|e| err(e.into()))?;
                    txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
                }
                txn.commit().map_err(|e| err(e.into()))
            }
            Err(e) => Err(err(e.into())),
        }
    }

    fn metric_row(&self, id: &MetricId) -> Result<Option<(u64, Kind)>, StoreError> {
        let err = self.err("reading a metric");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let metrics = rtxn.open_table(METRICS).map_err(|e| err(e.into()))?;
        let row = metrics
            .get((id.owner.as_str(), id.local.as_str()))
            .map_err(|e| err(e.into()))?;
        match row {
            None => Ok(None),
            Some(v) => {
                let (mid, letter) = v.value();
                Ok(Some((mid, self.kind_of(letter)?)))
            }
        }
    }

    /// Refuse with [`StoreError::NoSuchUser`] unless `name` is a user, inside `txn`.
    fn require_user(
        &self,
        txn: &redb::WriteTransaction,
        name: &Username,
    ) -> Result<(), StoreError> {
        let err = self.err("reading users");
        let users = txn.open_table(USERS).map_err(|e| err(e.into()))?;
        match users.get(name.as_str()).map_err(|e| err(e.into()))? {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchUser(name.clone())),
        }
    }

    fn username(&self, name: &str) -> Result<Username, StoreError> {
        Username::parse(name).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Up to `limit` rows of a metric with `start <= t <= end`, newest or
    /// oldest first.
    fn read_rows(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        if start > end {
            return Ok(Vec::new());
        }
        let Some((mid, _)) = self.metric_row(id)? else {
            return Ok(Vec::new());
        };
        let err = self.err("reading samples");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let rows = rtxn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
        let range = rows
            .range((mid, start.sort_key())..=(mid, end.sort_key()))
            .map_err(|e| err(e.into()))?;
        let ordered: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for row in ordered.take(limit) {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let t = TimeUuid::from_sort_key(k.value().1).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("a sample key of {id} is not a TimeUUID"),
            })?;
            out.push((t, v.value().to_owned()));
        }
        Ok(out)
    }

    fn kind_of(&self, letter: &str) -> Result<Kind, StoreError> {
        Kind::from_letter(letter).ok_or_else(|| StoreError::Corrupt {
            path: self.path.clone(),
            reason: format!("a metric has the unknown kind {letter:?}"),
        })
    }
}

fn now_us() -> u64 {
    u64::try_from(komlog_protocol::timeuuid::now_micros()).unwrap_or(0)
}

/// A new agent id: 32 hex digits.
pub(super) fn random_id() -> String {
    let mut b = [0u8; 16];
    // Ids only need to be distinct; the clock is a fallback if the RNG fails.
    if getrandom::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&now_us().to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_redb(path: &Path, op: &'static str, err: impl Into<redb::Error>) -> StoreError {
    let path = path.to_path_buf();
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                path,
                reason: source.to_string(),
            }
        }
        e @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => StoreError::Corrupt {
            path,
            reason: e.to_string(),
        },
        other => StoreError::Database {
            path,
            op,
            reason: other.to_string(),
        },
    }
}

impl HubStore for RedbStore {
    fn add_user(&self, name: &Username) -> Result<(), StoreError> {
        let err = self.err("adding a user");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut users = txn.open_table(USERS).map_err(|e| err(e.into()))?;
            if users
                .get(name.as_str())
                .map_err(|e| err(e.into()))?
                .is_some()
            {
                return Err(StoreError::UserExists(name.clone()));
            }
            users
                .insert(name.as_str(), now_us())
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    fn user_exists(&self, name: &Username) -> Result<bool, StoreError> {
        let err = self.err("reading users");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let users = rtxn.open_table(USERS).map_err(|e| err(e.into()))?;
        Ok(users
            .get(name.as_str())
            .map_err(|e| err(e.into()))?
            .is_some())
    }

    fn users(&self) -> Result<Vec<Username>, StoreError> {
        let err = self.err("listing users");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let users = rtxn.open_table(USERS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in users.iter().map_err(|e| err(e.into()))? {
            let (k, _) = row.map_err(|e| err(e.into()))?;
            let name = Username::parse(k.value()).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            out.push(name);
        }
        Ok(out)
    }

    fn add_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        let err = self.err("registering an agent");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let id = random_id();
        {
            self.require_user(&txn, owner)?;
            let mut agents = txn.open_table(AGENTS).map_err(|e| err(e.into()))?;
            // One key identifies one agent across all users.
            for row in agents.iter().map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let (other_owner, line) = k.value();
                if line == public_line {
                    return Err(StoreError::KeyRegistered {
                        owner: Username::parse(other_owner).map_err(|e| StoreError::Corrupt {
                            path: self.path.clone(),
                            reason: e.to_string(),
                        })?,
                        id: v.value().to_owned(),
                    });
                }
            }
            agents
                .insert((owner.as_str(), public_line), id.as_str())
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(AgentRecord {
            id,
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        })
    }

    fn find_agent(
        &self,
        owner: &Username,
        public_line: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let err = self.err("reading agents");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let agents = rtxn.open_table(AGENTS).map_err(|e| err(e.into()))?;
        let found = agents
            .get((owner.as_str(), public_line))
            .map_err(|e| err(e.into()))?;
        Ok(found.map(|id| AgentRecord {
            id: id.value().to_owned(),
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        }))
    }

    fn agents_of(&self, owner: &Username) -> Result<Vec<AgentRecord>, StoreError> {
        let err = self.err("listing agents");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let agents = rtxn.open_table(AGENTS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        let start = (owner.as_str(), "");
        for row in agents.range(start..).map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (o, line) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push(AgentRecord {
                id: v.value().to_owned(),
                owner: owner.clone(),
                public_line: line.to_owned(),
            });
        }
        Ok(out)
    }

    fn add_share(&self, share: &Share) -> Result<(), StoreError> {
        let err = self.err("adding a share");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            self.require_user(&txn, &share.owner)?;
            self.require_user(&txn, &share.with)?;
            let mut shares = txn.open_table(SHARES).map_err(|e| err(e.into()))?;
            shares
                .insert(
                    (
                        share.owner.as_str(),
                        share.prefix.as_str(),
                        share.with.as_str(),
                    ),
                    now_us(),
                )
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    fn shares_of(&self, owner: &Username) -> Result<Vec<Share>, StoreError> {
        let err = self.err("reading shares");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let shares = rtxn.open_table(SHARES).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in shares
            .range((owner.as_str(), "", "")..)
            .map_err(|e| err(e.into()))?
        {
            let (k, _) = row.map_err(|e| err(e.into()))?;
            let (o, prefix, with) = k.value();
            if o != owner.as_str() {
                break;
            }
            let with = Username::parse(with).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            out.push(Share {
                owner: owner.clone(),
                prefix: prefix.to_owned(),
                with,
            });
        }
        Ok(out)
    }

    fn all_shares(&self) -> Result<Vec<Share>, StoreError> {
        let err = self.err("reading shares");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let shares = rtxn.open_table(SHARES).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in shares.iter().map_err(|e| err(e.into()))? {
            let (k, _) = row.map_err(|e| err(e.into()))?;
            let (owner, prefix, with) = k.value();
            out.push(Share {
                owner: self.username(owner)?,
                prefix: prefix.to_owned(),
                with: self.username(with)?,
            });
        }
        Ok(out)
    }

    fn remove_share(&self, share: &Share) -> Result<(), StoreError> {
        let err = self.err("removing a share");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut shares = txn.open_table(SHARES).map_err(|e| err(e.into()))?;
            let key = (
                share.owner.as_str(),
                share.prefix.as_str(),
                share.with.as_str(),
            );
            if shares.remove(key).map_err(|e| err(e.into()))?.is_none() {
                return Err(StoreError::NoSuchShare(share.clone()));
            }
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    fn remove_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        let err = self.err("removing an agent");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let id = {
            self.require_user(&txn, owner)?;
            let mut agents = txn.open_table(AGENTS).map_err(|e| err(e.into()))?;
            let removed = agents
                .remove((owner.as_str(), public_line))
                .map_err(|e| err(e.into()))?;
            match removed {
                Some(id) => id.value().to_owned(),
                None => {
                    return Err(StoreError::NoSuchAgent {
                        owner: owner.clone(),
                        key: public_line.to_owned(),
                    });
                }
            }
        };
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(AgentRecord {
            id,
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        })
    }

    fn remove_user(&self, name: &Username) -> Result<UserRemoval, StoreError> {
        let err = self.err("removing a user");
        let me = name.as_str();
        // The smallest string after every key part equal to `me`.
        let after = format!("{me}\0");
        let mut removed = UserRemoval::default();
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut users = txn.open_table(USERS).map_err(|e| err(e.into()))?;
            if users.remove(me).map_err(|e| err(e.into()))?.is_none() {
                return Err(StoreError::NoSuchUser(name.clone()));
            }
            let mut agents = txn.open_table(AGENTS).map_err(|e| err(e.into()))?;
            let mut agent_ids = Vec::new();
            for row in agents
                .extract_from_if((me, "")..(after.as_str(), ""), |_, _| true)
                .map_err(|e| err(e.into()))?
            {
                let (_, id) = row.map_err(|e| err(e.into()))?;
                agent_ids.push(id.value().to_owned());
                removed.agents += 1;
            }
            self.web_remove_user(&txn, name, &agent_ids)?;
            let mut shares = txn.open_table(SHARES).map_err(|e| err(e.into()))?;
            for row in shares
                .extract_if(|(owner, _, with), _| owner == me || with == me)
                .map_err(|e| err(e.into()))?
            {
                let (k, _) = row.map_err(|e| err(e.into()))?;
                if k.value().0 == me {
                    removed.shares_given += 1;
                } else {
                    removed.shares_received += 1;
                }
            }
            let mut metrics = txn.open_table(METRICS).map_err(|e| err(e.into()))?;
            let mut ids = Vec::new();
            for row in metrics
                .extract_from_if((me, "")..(after.as_str(), ""), |_, _| true)
                .map_err(|e| err(e.into()))?
            {
                let (_, v) = row.map_err(|e| err(e.into()))?;
                ids.push(v.value().0);
            }
            removed.metrics = ids.len();
            self.rollup_remove(&txn, &ids)?;
            let mut supplies = txn.open_table(SUPPLIES).map_err(|e| err(e.into()))?;
            let mut samples = txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
            for mid in ids {
                supplies.remove(mid).map_err(|e| err(e.into()))?;
                let range = (mid, [0u8; 16])..=(mid, [0xffu8; 16]);
                for row in samples
                    .extract_from_if(range, |_, _| true)
                    .map_err(|e| err(e.into()))?
                {
                    row.map_err(|e| err(e.into()))?;
                    removed.samples += 1;
                }
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(removed)
    }

    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError> {
        Ok(self.metric_row(id)?.map(|(_, kind)| kind))
    }

    fn metrics_of(&self, owner: &Username) -> Result<Vec<(String, Kind)>, StoreError> {
        let err = self.err("listing metrics");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let metrics = rtxn.open_table(METRICS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in metrics
            .range((owner.as_str(), "")..)
            .map_err(|e| err(e.into()))?
        {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (o, uri) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push((uri.to_owned(), self.kind_of(v.value().1)?));
        }
        Ok(out)
    }

    fn write(&self, owner: &Username, samples: &[NewSample]) -> Result<WriteOutcome, StoreError> {
        let writes = [(owner.clone(), samples.to_vec())];
        self.write_group(&writes)?
            .pop()
            .unwrap_or_else(|| Ok(WriteOutcome::default()))
    }

    fn write_group(
        &self,
        writes: &[(Username, Vec<NewSample>)],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        let err = self.err("writing samples");
        let mut results = Vec::with_capacity(writes.len());
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let mut metrics = txn.open_table(METRICS).map_err(|e| err(e.into()))?;
            let mut rows = txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
            let mut changes = rollup::Changes::default();
            let mut next = meta
                .get("next_metric_id")
                .map_err(|e| err(e.into()))?
                .map(|v| v.value())
                .unwrap_or(1);
            let users = txn.open_table(USERS).map_err(|e| err(e.into()))?;
            for (owner, samples) in writes {
                // A user removed while one of their writes was queued gets nothing back.
                if users
                    .get(owner.as_str())
                    .map_err(|e| err(e.into()))?
                    .is_none()
                {
                    results.push(Err(StoreError::NoSuchUser(owner.clone())));
                    continue;
                }
                // Check the whole write first: a refused write leaves nothing behind,
                // and the other writes of the group go on.
                let mut ids: Vec<Option<u64>> = Vec::with_capacity(samples.len());
                let mut fresh: Vec<(&str, Kind)> = Vec::new();
                let mut refused = None;
                let mut values: Vec<Option<f64>> = Vec::with_capacity(samples.len());
                for s in samples {
                    let key = (owner.as_str(), s.uri.as_str());
                    let row = metrics.get(key).map_err(|e| err(e.into()))?.map(|v| {
                        let (mid, letter) = v.value();
                        (mid, letter.to_owned())
                    });
                    let existing = match row {
                        Some((mid, letter)) => Some((Some(mid), self.kind_of(&letter)?)),
                        None => fresh
                            .iter()
                            .find(|(u, _)| *u == s.uri.as_str())
                            .map(|(_, k)| (None, *k)),
                    };
                    match existing {
                        Some((_, kind)) if kind != s.kind => {
                            refused = Some(StoreError::KindMismatch {
                                uri: s.uri.clone(),
                                existing: kind,
                                written: s.kind,
                            });
                            break;
                        }
                        Some((mid, _)) => ids.push(mid),
                        None => {
                            fresh.push((s.uri.as_str(), s.kind));
                            ids.push(None);
                        }
                    }
                    let value = match s.kind {
                        Kind::Datapoint => match rollup::datapoint_value(&s.content) {
                            Some(v) => Some(v),
                            None => {
                                refused = Some(StoreError::Unsupported(
                                    "store a datapoint that is not a finite number",
                                ));
                                break;
                            }
                        },
                        Kind::Datasource => None,
                    };
                    values.push(value);
                }
                if let Some(e) = refused {
                    results.push(Err(e));
                    continue;
                }
                let mut outcome = WriteOutcome::default();
                for ((s, id), value) in samples.iter().zip(ids).zip(values) {
                    let key = (owner.as_str(), s.uri.as_str());
                    // A new uri may have been created by an earlier sample of this write.
                    let earlier = match id {
                        Some(_) => None,
                        None => metrics
                            .get(key)
                            .map_err(|e| err(e.into()))?
                            .map(|v| v.value().0),
                    };
                    let metric_id = match id.or(earlier) {
                        Some(mid) => mid,
                        None => {
                            let mid = next;
                            next += 1;
                            metrics
                                .insert(key, (mid, s.kind.letter()))
                                .map_err(|e| err(e.into()))?;
                            outcome.created.push(s.uri.clone());
                            mid
                        }
                    };
                    let prior = match rows
                        .insert((metric_id, s.t.sort_key()), s.content.as_str())
                        .map_err(|e| err(e.into()))?
                    {
                        None => rollup::Prior::New,
                        Some(old) if old.value() == s.content => rollup::Prior::Same,
                        Some(_) => rollup::Prior::Changed,
                    };
                    changes.note(metric_id, s.t, value, prior);
                }
                results.push(Ok(outcome));
            }
            meta.insert("next_metric_id", next)
                .map_err(|e| err(e.into()))?;
            changes.flush(self, &txn, &rows)?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(results)
    }

    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError> {
        let Some((mid, _)) = self.metric_row(id)? else {
            return Ok(());
        };
        let json = serde_json::to_string(supplies).map_err(|e| StoreError::Database {
            path: self.path.clone(),
            op: "encoding supplies",
            reason: e.to_string(),
        })?;
        let err = self.err("writing supplies");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn.open_table(SUPPLIES).map_err(|e| err(e.into()))?;
            table
                .insert(mid, json.as_str())
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError> {
        let Some((mid, _)) = self.metric_row(id)? else {
            return Ok(None);
        };
        let err = self.err("reading supplies");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = rtxn.open_table(SUPPLIES).map_err(|e| err(e.into()))?;
        let Some(v) = table.get(mid).map_err(|e| err(e.into()))? else {
            return Ok(None);
        };
        serde_json::from_str(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("supplies of {id}: {e}"),
            })
    }

    fn read_oldest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.read_rows(id, start, end, limit, false)
    }

    fn summaries_of(&self, owner: &Username) -> Result<Vec<MetricSummary>, StoreError> {
        self.rollup_summaries(owner)
    }

    fn reduce(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        columns: u32,
    ) -> Result<Reduced, StoreError> {
        self.rollup_reduce(id, start, end, columns)
    }

    fn set_password(&self, user: &Username, phc: Option<&str>) -> Result<(), StoreError> {
        self.web_set_password(user, phc)
    }

    fn password(&self, user: &Username) -> Result<Option<String>, StoreError> {
        self.web_password(user)
    }

    fn add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        self.web_add_token(owner, name, digest)
    }

    fn find_token(&self, digest: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.web_find_token(digest)
    }

    fn tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError> {
        self.web_tokens_of(owner)
    }

    fn token_digests_of(
        &self,
        owner: &Username,
    ) -> Result<Vec<([u8; 32], TokenRecord)>, StoreError> {
        self.web_token_digests_of(owner)
    }

    fn remove_token(&self, owner: &Username, name: &str) -> Result<bool, StoreError> {
        self.web_remove_token(owner, name)
    }

    fn note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError> {
        self.web_note_login(agent_id, at_us)
    }

    fn last_logins(
        &self,
        owner: &Username,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.web_last_logins(owner)
    }

    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.read_rows(id, start, end, limit, true)
    }
}
