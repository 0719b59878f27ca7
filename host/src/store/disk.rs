//! The redb database: table definitions, the byte encodings of keys and values, and the
//! few transactions the store runs (open/check, group commit, range scans).
//!
//! Every value read from disk is decoded here with bounds-checked code that returns
//! [`StoreError::Corrupt`] on anything unexpected; nothing here panics on file contents.
//! Keys hold the uri as raw bytes (`&[u8]`, not `&str`) for the same reason: redb's `&str`
//! decoder unwraps its UTF-8 check.

use std::collections::HashMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::sample_log::{SAMPLE_LOG, SINK_CURSORS, Shared, encode_entry};
use super::{Outgoing, StoreError, StoreOptions};
use crate::model::{Kind, Sample, Value};

/// The on-disk format this build reads and writes, kept in `meta` under `format_version`.
pub const FORMAT_VERSION: u32 = 1;

/// `meta`: `b"format_version"` → u32 little-endian.
pub(super) const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const VERSION_KEY: &[u8] = b"format_version";
/// `meta`: the next sample log sequence number, u64 LE (kept so numbering goes on
/// after the log is pruned empty).
const LOG_HEAD_KEY: &[u8] = b"sample_log_head";

/// `samples`: (uri UTF-8 bytes, ts µs) → tagged value (see [`encode_value`]).
pub(super) const SAMPLES: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("samples");

/// `uris`: uri UTF-8 bytes → [`UriStats`] in 25 bytes (see [`UriStats::encode`]).
pub(super) const URIS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uris");

/// `outbox`: (ts µs, uri UTF-8 bytes) → generation u64 LE, then optionally
/// [`TAG_ANSWERS`] and the 16 bytes of the notification the sample answers, then the
/// tagged value: the samples not yet acknowledged by the server (see
/// [`super::outbox`]).
pub(super) const OUTBOX: TableDefinition<(i64, &[u8]), &[u8]> = TableDefinition::new("outbox");

const TAG_DATAPOINT: u8 = 0;
const TAG_DATASOURCE: u8 = 1;
/// In an outbox row, before the value: the 16 bytes of the notification (its
/// `seq` TimeUUID) that the sample answers follow. Rows without it answer none.
pub(super) const TAG_ANSWERS: u8 = 2;

/// Encode a value: one tag byte, then 8 bytes of f64 little-endian (datapoint) or the
/// UTF-8 text (datasource).
pub(super) fn encode_value(value: &Value, buf: &mut Vec<u8>) {
    buf.clear();
    match value {
        Value::Datapoint(v) => {
            buf.push(TAG_DATAPOINT);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        Value::Datasource(s) => {
            buf.push(TAG_DATASOURCE);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// Decode a value written by [`encode_value`].
pub(super) fn decode_value(bytes: &[u8]) -> Result<Value, String> {
    match bytes.split_first() {
        Some((&TAG_DATAPOINT, rest)) => {
            let raw: [u8; 8] = rest
                .try_into()
                .map_err(|_| format!("datapoint value of {} bytes, expected 8", rest.len()))?;
            Ok(Value::Datapoint(f64::from_le_bytes(raw)))
        }
        Some((&TAG_DATASOURCE, rest)) => std::str::from_utf8(rest)
            .map(|s| Value::Datasource(s.to_owned()))
            .map_err(|e| format!("datasource value is not UTF-8: {e}")),
        Some((tag, _)) => Err(format!("unknown value tag {tag}")),
        None => Err("empty value".to_owned()),
    }
}

fn kind_tag(kind: Kind) -> u8 {
    match kind {
        Kind::Datapoint => TAG_DATAPOINT,
        Kind::Datasource => TAG_DATASOURCE,
    }
}

/// What the store keeps per uri, on disk in `uris` and mirrored in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UriStats {
    /// Fixed by the first write.
    pub kind: Kind,
    /// Number of distinct timestamps stored.
    pub count: u64,
    /// Oldest stored timestamp.
    pub first_ts: i64,
    /// Newest stored timestamp.
    pub last_ts: i64,
}

impl UriStats {
    const LEN: usize = 25;

    pub(super) fn empty(kind: Kind) -> Self {
        UriStats {
            kind,
            count: 0,
            first_ts: i64::MAX,
            last_ts: i64::MIN,
        }
    }

    /// kind tag (u8) | count (u64 LE) | first_ts (i64 LE) | last_ts (i64 LE).
    fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = kind_tag(self.kind);
        out[1..9].copy_from_slice(&self.count.to_le_bytes());
        out[9..17].copy_from_slice(&self.first_ts.to_le_bytes());
        out[17..25].copy_from_slice(&self.last_ts.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let b: &[u8; Self::LEN] = bytes.try_into().map_err(|_| {
            format!(
                "uri record of {} bytes, expected {}",
                bytes.len(),
                Self::LEN
            )
        })?;
        let kind = match b[0] {
            TAG_DATAPOINT => Kind::Datapoint,
            TAG_DATASOURCE => Kind::Datasource,
            t => return Err(format!("unknown kind tag {t}")),
        };
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            w
        };
        Ok(UriStats {
            kind,
            count: u64::from_le_bytes(word(1)),
            first_ts: i64::from_le_bytes(word(9)),
            last_ts: i64::from_le_bytes(word(17)),
        })
    }

    /// Account for a newly inserted timestamp.
    pub(super) fn add(&mut self, ts: i64) {
        self.count += 1;
        self.first_ts = self.first_ts.min(ts);
        self.last_ts = self.last_ts.max(ts);
    }
}

/// The open database and its path (for error messages).
pub(super) struct Disk {
    db: Arc<Database>,
    path: PathBuf,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// The sample log's switch, head and signal (see [`super::sample_log`]).
    log: Arc<Shared>,
}

impl Disk {
    /// Open or create the database at `path`, create the tables of a new store, check the
    /// format version of an existing one, and load the `uris` table.
    pub fn open(
        path: &Path,
        options: StoreOptions,
    ) -> Result<(Disk, HashMap<String, UriStats>), StoreError> {
        no_panic(path, "opening the database", || {
            Disk::open_inner(path, options)
        })
    }

    fn open_inner(
        path: &Path,
        options: StoreOptions,
    ) -> Result<(Disk, HashMap<String, UriStats>), StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(options.page_cache_bytes)
            .set_check_integrity_on_open(options.check_integrity)
            .create(path)
            .map_err(|e| StoreError::from_redb(path, "opening the database", e))?;
        let disk = Disk {
            db: Arc::new(db),
            path: path.to_path_buf(),
            buf: Vec::with_capacity(64),
            log: Shared::new(0),
        };
        let stats = disk.check_or_init()?;
        Ok((disk, stats))
    }

    /// Close the database, reporting what a drop would ignore.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path;
        match Arc::try_unwrap(self.db) {
            Ok(db) => db
                .close()
                .map_err(|e| StoreError::from_redb(&path, "closing the database", e)),
            // The outbox reader still holds it; the database closes with its last handle.
            Err(_) => Ok(()),
        }
    }

    /// The database, shared with the outbox reader.
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// The sample log's shared state, its tables created and its head read on the
    /// first call (a store that never has a sink never touches them).
    pub fn log_shared(&self) -> Result<Arc<Shared>, StoreError> {
        if self.log.head.load(std::sync::atomic::Ordering::Acquire) == 0 {
            let head = no_panic(&self.path, "opening the sample log", || self.open_log())?;
            self.log
                .head
                .store(head, std::sync::atomic::Ordering::Release);
        }
        Ok(Arc::clone(&self.log))
    }

    /// Create the sample log tables if missing; the next sequence number.
    fn open_log(&self) -> Result<u64, StoreError> {
        let err = self.err("opening the sample log");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let exists = |r: Result<_, TableError>| match r {
            Ok(_) => Ok(true),
            Err(TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(err(e.into())),
        };
        let has_log = exists(rtxn.open_table(SAMPLE_LOG).map(|_| ()))?;
        let has_cursors = exists(rtxn.open_table(SINK_CURSORS).map(|_| ()))?;
        if !(has_log && has_cursors) {
            drop(rtxn);
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            txn.open_table(SAMPLE_LOG).map_err(|e| err(e.into()))?;
            txn.open_table(SINK_CURSORS).map_err(|e| err(e.into()))?;
            txn.commit().map_err(|e| err(e.into()))?;
            return self.open_log();
        }
        let log = rtxn.open_table(SAMPLE_LOG).map_err(|e| err(e.into()))?;
        let meta = rtxn.open_table(META).map_err(|e| err(e.into()))?;
        let kept = meta
            .get(LOG_HEAD_KEY)
            .map_err(|e| err(e.into()))?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map_or(1, u64::from_le_bytes);
        let last = log
            .last()
            .map_err(|e| err(e.into()))?
            .map_or(0, |(k, _)| k.value());
        Ok(kept.max(last + 1).max(1))
    }

    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| StoreError::from_redb(&self.path, op, e)
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn check_or_init(&self) -> Result<HashMap<String, UriStats>, StoreError> {
        let op = "checking the store format";
        let rtxn = self.db.begin_read().map_err(|e| self.err(op)(e.into()))?;
        match rtxn.open_table(META) {
            Ok(meta) => {
                let guard = meta
                    .get(VERSION_KEY)
                    .map_err(|e| self.err(op)(e.into()))?
                    .ok_or_else(|| self.corrupt("the meta table has no format_version".into()))?;
                let bytes = guard.value();
                let raw: [u8; 4] = bytes.try_into().map_err(|_| {
                    self.corrupt(format!(
                        "format_version of {} bytes, expected 4",
                        bytes.len()
                    ))
                })?;
                let found = u32::from_le_bytes(raw);
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {
                let has_tables = rtxn
                    .list_tables()
                    .map_err(|e| self.err(op)(e.into()))?
                    .next()
                    .is_some();
                if has_tables {
                    return Err(
                        self.corrupt("it is a redb database without a komlogd meta table".into())
                    );
                }
                drop(rtxn);
                self.init()?;
                return Ok(HashMap::new());
            }
            Err(e) => return Err(self.err(op)(e.into())),
        }
        let missing = |e: TableError| match e {
            TableError::TableDoesNotExist(t) => self.corrupt(format!("table {t} is missing")),
            e => self.err(op)(e.into()),
        };
        // Opening checks the key and value types of both tables.
        rtxn.open_table(SAMPLES).map_err(missing)?;
        let uris = rtxn.open_table(URIS).map_err(missing)?;
        let has_outbox = match rtxn.open_table(OUTBOX) {
            Ok(_) => true,
            Err(TableError::TableDoesNotExist(_)) => false,
            Err(e) => return Err(self.err(op)(e.into())),
        };
        let mut out = HashMap::new();
        for row in uris
            .iter()
            .map_err(|e| self.err("loading uris")(e.into()))?
        {
            let (k, v) = row.map_err(|e| self.err("loading uris")(e.into()))?;
            let uri = std::str::from_utf8(k.value())
                .map_err(|e| self.corrupt(format!("a uri key is not UTF-8: {e}")))?
                .to_owned();
            let stats =
                UriStats::decode(v.value()).map_err(|r| self.corrupt(format!("uri {uri}: {r}")))?;
            out.insert(uri, stats);
        }
        drop(uris);
        drop(rtxn);
        if !has_outbox {
            self.add_outbox()?;
        }
        Ok(out)
    }

    fn init(&self) -> Result<(), StoreError> {
        let err = self.err("creating the store tables");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            meta.insert(VERSION_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
                .map_err(|e| err(e.into()))?;
            txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
            txn.open_table(URIS).map_err(|e| err(e.into()))?;
            txn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    /// Create the `outbox` table in a store written before it existed.
    fn add_outbox(&self) -> Result<(), StoreError> {
        let err = self.err("adding the outbox table");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))
    }

    /// Write `accepted` in one durable write transaction and return the new stats of every
    /// uri it touched. `known` gives a uri's stats before this call (None for a new uri,
    /// whose kind is then its first sample's). On error nothing is committed.
    ///
    /// Samples with an [`Outgoing`] are also put in the `outbox` table, in the
    /// same transaction, with generation `generation`. With `durable` false the
    /// commit is not fsynced (redb's `Durability::None`): it becomes durable with the
    /// next durable commit and is lost by a crash before that.
    pub fn commit<'s>(
        &mut self,
        accepted: &[(&'s Sample, Option<Outgoing>)],
        generation: u64,
        durable: bool,
        known: impl Fn(&str) -> Option<UriStats>,
    ) -> Result<HashMap<&'s str, UriStats>, StoreError> {
        let path = self.path.clone();
        // A panic drops the write transaction uncommitted, which redb aborts.
        no_panic(&path, "writing samples", || {
            self.commit_inner(accepted, generation, durable, known)
        })
    }

    fn commit_inner<'s>(
        &mut self,
        accepted: &[(&'s Sample, Option<Outgoing>)],
        generation: u64,
        durable: bool,
        known: impl Fn(&str) -> Option<UriStats>,
    ) -> Result<HashMap<&'s str, UriStats>, StoreError> {
        let path = &self.path;
        let err = |e: redb::Error| StoreError::from_redb(path, "writing samples", e);
        let mut touched: HashMap<&'s str, UriStats> = HashMap::new();
        let logging = self.log.enabled.load(std::sync::atomic::Ordering::Acquire);
        let head = self.log.head.load(std::sync::atomic::Ordering::Acquire);
        let next_head = head + accepted.len() as u64;
        let txn = begin_write(&self.db, durable).map_err(err)?;
        {
            let mut samples = txn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
            let mut outbox = txn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
            let mut queued_buf = Vec::new();
            for &(s, queued) in accepted {
                encode_value(&s.value, &mut self.buf);
                if let Some(outgoing) = queued {
                    queued_buf.clear();
                    queued_buf.extend_from_slice(&generation.to_le_bytes());
                    if let Some(answers) = outgoing.answers {
                        queued_buf.push(TAG_ANSWERS);
                        queued_buf.extend_from_slice(&answers);
                    }
                    queued_buf.extend_from_slice(&self.buf);
                    outbox
                        .insert((s.ts, s.uri.as_bytes()), queued_buf.as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                let existed = samples
                    .insert((s.uri.as_bytes(), s.ts), self.buf.as_slice())
                    .map_err(|e| err(e.into()))?
                    .is_some();
                let st = touched
                    .entry(s.uri.as_str())
                    .or_insert_with(|| known(&s.uri).unwrap_or(UriStats::empty(s.value.kind())));
                if !existed {
                    st.add(s.ts);
                }
            }
            let mut uris = txn.open_table(URIS).map_err(|e| err(e.into()))?;
            for (uri, st) in &touched {
                uris.insert(uri.as_bytes(), st.encode().as_slice())
                    .map_err(|e| err(e.into()))?;
            }
        }
        if logging {
            let mut log = txn.open_table(SAMPLE_LOG).map_err(|e| err(e.into()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            let mut entry = Vec::with_capacity(64);
            for (i, &(s, _)) in accepted.iter().enumerate() {
                encode_entry(now, s, &mut entry, &mut self.buf);
                log.insert(head + i as u64, entry.as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            meta.insert(LOG_HEAD_KEY, next_head.to_le_bytes().as_slice())
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        if logging {
            self.log
                .head
                .store(next_head, std::sync::atomic::Ordering::Release);
            self.log.signal.notify_waiters();
        }
        Ok(touched)
    }

    /// Decode the stored value of `uri` at `ts` (as passed to a [`Disk::scan`] callback).
    pub fn decode(&self, uri: &str, ts: i64, bytes: &[u8]) -> Result<Value, StoreError> {
        decode_value(bytes).map_err(|r| self.corrupt(format!("sample {uri} at {ts}: {r}")))
    }

    /// Visit the samples of `uri` within the `lower`..`upper` timestamp bounds, newest first
    /// if `rev`, until `f` returns `Ok(false)`. `f` gets the timestamp and the encoded
    /// value (see [`Disk::decode`]), so it can stop before a sample without decoding it.
    pub fn scan(
        &self,
        uri: &str,
        lower: Bound<i64>,
        upper: Bound<i64>,
        rev: bool,
        f: impl FnMut(i64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        no_panic(&self.path, "reading samples", || {
            self.scan_inner(uri, lower, upper, rev, f)
        })
    }

    fn scan_inner(
        &self,
        uri: &str,
        lower: Bound<i64>,
        upper: Bound<i64>,
        rev: bool,
        mut f: impl FnMut(i64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let op = "reading samples";
        let err = self.err(op);
        let key = |b: Bound<i64>, unbounded: i64| match b {
            Bound::Included(t) => Bound::Included((uri.as_bytes(), t)),
            Bound::Excluded(t) => Bound::Excluded((uri.as_bytes(), t)),
            Bound::Unbounded => Bound::Included((uri.as_bytes(), unbounded)),
        };
        let range = (key(lower, i64::MIN), key(upper, i64::MAX));
        if is_empty(&range) {
            return Ok(());
        }
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = rtxn.open_table(SAMPLES).map_err(|e| err(e.into()))?;
        let mut iter = table.range(range).map_err(|e| err(e.into()))?;
        loop {
            let row = if rev { iter.next_back() } else { iter.next() };
            let Some(row) = row else { return Ok(()) };
            let (k, v) = row.map_err(|e| err(e.into()))?;
            if !f(k.value().1, v.value())? {
                return Ok(());
            }
        }
    }
}

/// Run `f`, turning a panic into [`StoreError::Corrupt`]. redb trusts the pages of a file
/// it shut down cleanly and can panic on one damaged outside it (measured: an index out of
/// range in its tuple decoder after 64 flipped bytes) unless it was opened with the
/// integrity check; a damaged store must not take the agent down. Needs `panic = "unwind"`
/// (the default); the panic message still reaches the panic hook (stderr).
/// A write transaction that is fsynced at commit when `durable`, and not
/// when not (a later durable commit makes it durable).
pub(super) fn begin_write(
    db: &Database,
    durable: bool,
) -> Result<redb::WriteTransaction, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    Ok(txn)
}

pub(super) fn no_panic<T>(
    path: &Path,
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "the database engine failed while {op} ({msg}); the file is damaged: \
                 open it with the integrity check to verify it"
            ),
        })
    })
}

/// True when the key range selects nothing; redb refuses ranges whose start is after
/// their end, so such a range must not reach it.
fn is_empty<T: Ord>(range: &(Bound<T>, Bound<T>)) -> bool {
    match range {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_encoding_round_trips_and_rejects_garbage() {
        let mut buf = Vec::new();
        for v in [
            Value::Datapoint(-1.25),
            Value::Datasource("ñandú".into()),
            Value::Datasource(String::new()),
        ] {
            encode_value(&v, &mut buf);
            assert_eq!(decode_value(&buf).unwrap(), v);
        }
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[0, 1, 2]).is_err());
        assert!(decode_value(&[1, 0xff]).is_err());
        assert_eq!(decode_value(&[7]).unwrap_err(), "unknown value tag 7");
    }

    #[test]
    fn stats_encoding_round_trips_and_rejects_garbage() {
        let s = UriStats {
            kind: Kind::Datasource,
            count: 3,
            first_ts: -5,
            last_ts: 9,
        };
        assert_eq!(UriStats::decode(&s.encode()).unwrap(), s);
        assert!(UriStats::decode(&[0; 24]).is_err());
        let mut bad = s.encode();
        bad[0] = 9;
        assert!(UriStats::decode(&bad).is_err());
    }
}
