//! The sample log: an append-only record of every sample the store accepts, in commit
//! order, for the sinks ([`crate::sinks`]) to forward, and each sink's durable cursor in it.
//!
//! **Owns:** the `sample_log` and `sink_cursors` tables, the sequence numbers, reading
//! entries from a position, the cursors, and pruning entries every sink has passed.
//!
//! * Each accepted sample gets the next sequence number (u64, from 1, never reused)
//!   and is written to `sample_log` **in the same commit** that stores it (see
//!   [`super::Store::append_queued`]), so a sample in the log is a stored sample and a
//!   reader only ever sees whole commits: every entry below [`SampleLog::head`] is
//!   readable and none is added behind it later.
//! * Writing the log is switched on with [`SampleLog::set_enabled`] (the agent does it
//!   when a sink is configured). While it is off nothing is written, so nothing grows
//!   without a sink.
//! * A cursor is the sequence number of the first entry a sink has not delivered yet.
//!   Cursor moves and pruning are committed without an fsync (they become durable with
//!   the next durable commit): after a crash a cursor may step back and entries be
//!   sent again (at-least-once), never skipped.
//!
//! | table | key | value |
//! |---|---|---|
//! | `sample_log` | `u64`: sequence number | commit time µs i64 LE, ts i64 LE, uri length u32 LE, uri UTF-8, then the value as in `samples` |
//! | `sink_cursors` | `&[u8]`: sink name | `(u64, u64)`: the first sequence number not delivered, and the end of the batch being sent (equal when none is) |

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;
use super::disk::{begin_write, decode_value, encode_value, no_panic};
use crate::model::{Sample, Value};

/// `sample_log`: sequence number → encoded entry (see the module docs).
pub(super) const SAMPLE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("sample_log");
/// `sink_cursors`: sink name → the first sequence number not delivered.
pub(super) const SINK_CURSORS: TableDefinition<&[u8], (u64, u64)> =
    TableDefinition::new("sink_cursors");

/// What the store and the log's readers share.
#[derive(Debug)]
pub(super) struct Shared {
    /// Write the log on commit.
    pub enabled: AtomicBool,
    /// The next sequence number to assign: entries `< head` are committed.
    pub head: AtomicU64,
    /// Woken after each commit that wrote entries.
    pub signal: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new(head: u64) -> Arc<Shared> {
        Arc::new(Shared {
            enabled: AtomicBool::new(false),
            head: AtomicU64::new(head),
            signal: tokio::sync::Notify::new(),
        })
    }
}

/// Encode one entry for `sample_log`.
pub(super) fn encode_entry(
    commit_us: i64,
    sample: &Sample,
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    buf.clear();
    buf.extend_from_slice(&commit_us.to_le_bytes());
    buf.extend_from_slice(&sample.ts.to_le_bytes());
    buf.extend_from_slice(&(sample.uri.len() as u32).to_le_bytes());
    buf.extend_from_slice(sample.uri.as_bytes());
    encode_value(&sample.value, scratch);
    buf.extend_from_slice(scratch);
}

/// Decode an entry written by [`encode_entry`]: (commit time, sample).
fn decode_entry(bytes: &[u8]) -> Result<(i64, Sample), String> {
    let (commit, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("entry shorter than its commit time")?;
    let (ts, rest) = rest
        .split_first_chunk::<8>()
        .ok_or("entry shorter than its timestamp")?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or("entry shorter than its uri length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("entry shorter than its uri".into());
    }
    let (uri, value) = rest.split_at(len);
    let uri = std::str::from_utf8(uri).map_err(|e| format!("uri is not UTF-8: {e}"))?;
    let value: Value = decode_value(value)?;
    Ok((
        i64::from_le_bytes(*commit),
        Sample {
            uri: uri.to_owned(),
            ts: i64::from_le_bytes(*ts),
            value,
        },
    ))
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: u64,
    /// When it was committed (µs since the Unix epoch).
    pub commit_us: i64,
    /// The stored sample (its uri is the store key: local, or `owner:uri`).
    pub sample: Sample,
}

/// A handle on the sample log and the sink cursors, usable from any thread.
#[derive(Clone)]
pub struct SampleLog {
    db: Arc<Database>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SampleLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleLog")
            .field("path", &self.path)
            .field("head", &self.head())
            .finish()
    }
}

impl SampleLog {
    pub(super) fn new(db: Arc<Database>, path: PathBuf, shared: Arc<Shared>) -> SampleLog {
        SampleLog { db, path, shared }
    }

    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| StoreError::from_redb(&self.path, op, e)
    }

    /// Write the log with each commit from now on (or stop writing it).
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Release);
    }

    /// True while commits write the log.
    pub fn enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Acquire)
    }

    /// The next sequence number to be assigned: every entry below it is committed.
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// Woken after every commit that wrote entries (register with
    /// [`tokio::sync::Notified::enable`] before reading [`SampleLog::head`]).
    pub fn signal(&self) -> &tokio::sync::Notify {
        &self.shared.signal
    }

    /// Up to `limit` entries with `seq >= from`, in order.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        no_panic(&self.path, "reading the sample log", || {
            let err = self.err("reading the sample log");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(SAMPLE_LOG).map_err(|e| err(e.into()))?;
            let mut out = Vec::with_capacity(limit.min(4096));
            for row in table.range(from..).map_err(|e| err(e.into()))? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let seq = k.value();
                let (commit_us, sample) =
                    decode_entry(v.value()).map_err(|reason| StoreError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("sample log entry {seq}: {reason}"),
                    })?;
                out.push(LogEntry {
                    seq,
                    commit_us,
                    sample,
                });
            }
            Ok(out)
        })
    }

    /// The sequence number of the oldest entry kept, if any.
    pub fn first(&self) -> Result<Option<u64>, StoreError> {
        no_panic(&self.path, "reading the sample log", || {
            let err = self.err("reading the sample log");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(SAMPLE_LOG).map_err(|e| err(e.into()))?;
            Ok(table
                .first()
                .map_err(|e| err(e.into()))?
                .map(|(k, _)| k.value()))
        })
    }

    /// The commit time of entry `seq`, if it is kept.
    pub fn commit_time(&self, seq: u64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .read(seq, 1)?
            .first()
            .filter(|e| e.seq == seq)
            .map(|e| e.commit_us))
    }

    /// Every stored cursor, by sink name.
    pub fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        no_panic(&self.path, "reading the sink cursors", || {
            let err = self.err("reading the sink cursors");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(SINK_CURSORS).map_err(|e| err(e.into()))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                out.push((String::from_utf8_lossy(k.value()).into_owned(), v.value().0));
            }
            Ok(out)
        })
    }

    /// The cursor of sink `name` and the end of the batch it was sending, if it has one.
    pub fn cursor(&self, name: &str) -> Result<Option<(u64, u64)>, StoreError> {
        no_panic(&self.path, "reading a sink cursor", || {
            let err = self.err("reading a sink cursor");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(SINK_CURSORS).map_err(|e| err(e.into()))?;
            Ok(table
                .get(name.as_bytes())
                .map_err(|e| err(e.into()))?
                .map(|v| v.value()))
        })
    }

    /// Move the cursor of sink `name` to `seq`, recording that entries up to
    /// `sending` (exclusive) may be on their way. With `durable` the commit is
    /// fsynced; without, it becomes durable with the next durable commit.
    pub fn set_cursor(
        &self,
        name: &str,
        seq: u64,
        sending: u64,
        durable: bool,
    ) -> Result<(), StoreError> {
        self.write("moving a sink cursor", durable, |txn| {
            let mut table = txn.open_table(SINK_CURSORS)?;
            table.insert(name.as_bytes(), (seq, sending.max(seq)))?;
            Ok(())
        })
    }

    /// Forget the cursors of every sink not in `keep`.
    pub fn retain_cursors(&self, keep: &[&str]) -> Result<(), StoreError> {
        let gone: Vec<String> = self
            .cursors()?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        self.write("removing sink cursors", false, |txn| {
            let mut table = txn.open_table(SINK_CURSORS)?;
            for n in &gone {
                table.remove(n.as_bytes())?;
            }
            Ok(())
        })
    }

    /// Remove every entry with `seq < below` (committed without an fsync). Returns
    /// how many were removed.
    pub fn prune(&self, below: u64) -> Result<u64, StoreError> {
        match self.first()? {
            Some(first) if first < below => {}
            _ => return Ok(0),
        }
        let mut removed = 0u64;
        self.write("pruning the sample log", false, |txn| {
            let mut table = txn.open_table(SAMPLE_LOG)?;
            table.retain_in(..below, |_, _| {
                removed += 1;
                false
            })?;
            Ok(())
        })?;
        Ok(removed)
    }

    fn write(
        &self,
        op: &'static str,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        no_panic(&self.path, op, || {
            let err = self.err(op);
            let txn = begin_write(&self.db, durable).map_err(&err)?;
            f(&txn).map_err(&err)?;
            txn.commit().map_err(|e| err(e.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use crate::model::{Sample, Value};
    use crate::test_util::dp;

    #[test]
    fn the_log_records_commits_in_order_only_while_enabled_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let mut store = Store::open(&path).unwrap();
            let log = store.sample_log().unwrap();
            store.append(&[dp("off", 1, 1.0)]).unwrap();
            assert_eq!(log.head(), 1);
            log.set_enabled(true);
            store.append(&[dp("a", 5, 1.0), dp("b", 3, 2.0)]).unwrap();
            store
                .append(&[
                    Sample {
                        uri: "t".into(),
                        ts: 9,
                        value: Value::Datasource("ñ".into()),
                    },
                    // Refused (kind change): not logged.
                    dp("t", 10, 1.0),
                ])
                .unwrap();
            assert_eq!(log.head(), 4);
            let got = log.read(0, 10).unwrap();
            let keys: Vec<(u64, &str, i64)> = got
                .iter()
                .map(|e| (e.seq, e.sample.uri.as_str(), e.sample.ts))
                .collect();
            assert_eq!(keys, vec![(1, "a", 5), (2, "b", 3), (3, "t", 9)]);
            assert_eq!(got[2].sample.value, Value::Datasource("ñ".into()));
            assert_eq!(log.read(2, 1).unwrap()[0].seq, 2);
            log.set_cursor("s", 2, 3, true).unwrap();
            assert_eq!(log.prune(2).unwrap(), 1);
            assert_eq!(log.first().unwrap(), Some(2));
        }
        let store = Store::open(&path).unwrap();
        let log = store.sample_log().unwrap();
        assert_eq!(log.head(), 4, "numbering goes on after a reopen");
        assert!(!log.enabled());
        assert_eq!(log.cursor("s").unwrap(), Some((2, 3)));
        log.retain_cursors(&[]).unwrap();
        assert_eq!(log.cursor("s").unwrap(), None);
        assert_eq!(log.prune(u64::MAX).unwrap(), 2);
        assert_eq!(log.first().unwrap(), None);
        // Pruned to empty, numbering still goes on.
        drop(log);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.sample_log().unwrap().head(), 4);
    }
}
