//! The durable outbox: the samples bound for the server that it has not yet
//! acknowledged, in the store's `outbox` table.
//!
//! **Owns:** the table's rows and their order, reading them for sending, and
//! removing them once acknowledged.
//!
//! * A sample is put in the outbox by [`super::Store::append_queued`] in the
//!   **same durable commit** that stores it, so by the time its producer hears
//!   it is stored, it is also on its way to the server, across disconnects,
//!   restarts and kill -9.
//! * Rows are keyed `(ts, uri)` and read in that order, so samples are sent in
//!   timestamp order; samples of one time go in one message. Writing the same
//!   `(uri, ts)` again replaces the row, as it replaces the stored sample.
//! * Each row carries the generation of the commit that wrote it. A row is
//!   removed ([`Outbox::remove`]) only after the server's 4200/4202, and only if
//!   its generation is still the one that was sent: a newer value written
//!   meanwhile stays queued and is sent in turn.
//! * Each commit that queues samples lowers a shared low-water mark to the
//!   earliest time it queued ([`Outbox::take_low_water`]). A sample committed
//!   with a time the sender has already read past (an impulse output at its
//!   trigger's time, say, under a smaller uri) is found by reading again from
//!   that mark, so nothing committed is left behind the sender's cursor.
//! * A sample may answer a server notification (an impulse fired by it wrote
//!   the sample): the row keeps the notification's `seq`, which the sender puts
//!   in the message's `irt`.
//! * Removals are committed without an fsync: after a crash a removed row may
//!   come back and is sent again. The server keys samples by TimeUUID, and a
//!   sample's TimeUUID is a function of its time and this store's node id
//!   ([`Outbox::time_uuid_parts`]), so a resend overwrites the same row with the
//!   same value.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::StoreError;
use super::disk::{META, OUTBOX, TAG_ANSWERS, decode_value, no_panic};
use crate::model::{Sample, Value};

/// `meta` key of the random 64 bits that make this store's TimeUUIDs.
const NODE_KEY: &[u8] = b"outbox_node";

/// How an accepted sample goes in the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The `seq` (16 bytes) of the server notification it answers, if any.
    pub answers: Option<[u8; 16]>,
}

/// One queued sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The sample (its uri is the store key: a local uri).
    pub sample: Sample,
    /// The generation of the commit that queued it.
    pub generation: u64,
    /// The `seq` of the server notification it answers, if any.
    pub answers: Option<[u8; 16]>,
}

/// The earliest time queued since the sender last asked; `i64::MAX`: none.
/// Shared by the store (which lowers it after each commit) and its outboxes.
#[derive(Clone, Debug)]
pub(super) struct LowWater(Arc<AtomicI64>);

impl Default for LowWater {
    fn default() -> Self {
        LowWater(Arc::new(AtomicI64::new(i64::MAX)))
    }
}

impl LowWater {
    /// A commit queued samples, the earliest at `ts`.
    pub(super) fn lower(&self, ts: i64) {
        self.0.fetch_min(ts, Ordering::AcqRel);
    }
}

/// Where [`Outbox::read`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor<'a> {
    /// At the first row.
    Start,
    /// At the first row of this time.
    At(i64),
    /// Just after this row.
    After(i64, &'a str),
}

/// A handle on the outbox table, usable from any thread.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    path: PathBuf,
    node: u64,
    low_water: LowWater,
}

impl Outbox {
    pub(super) fn open(
        db: Arc<Database>,
        path: PathBuf,
        low_water: LowWater,
    ) -> Result<Outbox, StoreError> {
        let err = |op: &'static str| {
            let path = path.clone();
            move |e: redb::Error| StoreError::from_redb(&path, op, e)
        };
        let node = no_panic(&path, "reading the outbox node id", || {
            let txn = db
                .begin_write()
                .map_err(|e| err("reading the outbox node id")(e.into()))?;
            let node = {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| err("reading the outbox node id")(e.into()))?;
                let found = meta
                    .get(NODE_KEY)
                    .map_err(|e| err("reading the outbox node id")(e.into()))?
                    .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                    .map(u64::from_le_bytes);
                match found {
                    Some(n) => n,
                    None => {
                        let mut b = [0u8; 8];
                        getrandom::fill(&mut b).map_err(|e| StoreError::Io {
                            path: path.clone(),
                            op: "drawing the outbox node id",
                            source: std::io::Error::other(e.to_string()),
                        })?;
                        meta.insert(NODE_KEY, b.as_slice())
                            .map_err(|e| err("writing the outbox node id")(e.into()))?;
                        u64::from_le_bytes(b)
                    }
                }
            };
            txn.commit()
                .map_err(|e| err("writing the outbox node id")(e.into()))?;
            Ok(node)
        })?;
        Ok(Outbox {
            db,
            path,
            node,
            low_water,
        })
    }

    /// The earliest time of the samples queued since the last call (None: no
    /// commit queued anything). A reader that has read past that time must read
    /// again from it: the commit may have put rows behind its cursor.
    pub fn take_low_water(&self) -> Option<i64> {
        Some(self.low_water.0.swap(i64::MAX, Ordering::AcqRel)).filter(|ts| *ts != i64::MAX)
    }

    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| StoreError::from_redb(&self.path, op, e)
    }

    /// The clock sequence (14 bits) and node (48 bits) of this store's TimeUUIDs:
    /// a sample at `ts` is always sent as the TimeUUID (ts, these bits).
    pub fn time_uuid_parts(&self) -> (u16, u64) {
        (
            (self.node & 0x3fff) as u16,
            (self.node >> 14) & 0xffff_ffff_ffff,
        )
    }

    /// How many samples wait for the server's acknowledgement.
    pub fn depth(&self) -> Result<u64, StoreError> {
        no_panic(&self.path, "counting the outbox", || {
            let err = self.err("counting the outbox");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
            table.len().map_err(|e| err(e.into()))
        })
    }

    /// How many samples wait for the server's acknowledgement, and the time of
    /// the oldest (the first row: rows are keyed by time).
    pub fn depth_and_oldest(&self) -> Result<(u64, Option<i64>), StoreError> {
        no_panic(&self.path, "counting the outbox", || {
            let err = self.err("counting the outbox");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
            let depth = table.len().map_err(|e| err(e.into()))?;
            let oldest = table
                .first()
                .map_err(|e| err(e.into()))?
                .map(|(k, _)| k.value().0);
            Ok((depth, oldest))
        })
    }

    /// Up to `limit` queued samples from `from` on, in `(ts, uri)` order,
    /// leaving out those `skip(ts, uri, generation)` names (rows already in
    /// flight); the samples of the last time read are always all read, so a
    /// time is never split between two reads.
    pub fn read(
        &self,
        from: Cursor<'_>,
        limit: usize,
        skip: impl Fn(i64, &str, u64) -> bool,
    ) -> Result<Vec<Queued>, StoreError> {
        no_panic(&self.path, "reading the outbox", || {
            let err = self.err("reading the outbox");
            let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = rtxn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
            let lower = match from {
                Cursor::Start => Bound::Unbounded,
                Cursor::At(ts) => Bound::Included((ts, &b""[..])),
                Cursor::After(ts, uri) => Bound::Excluded((ts, uri.as_bytes())),
            };
            let range = table
                .range((lower, Bound::Unbounded))
                .map_err(|e| err(e.into()))?;
            let mut out: Vec<Queued> = Vec::new();
            for row in range {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let (ts, uri) = k.value();
                if out.len() >= limit && out.last().is_none_or(|q| q.sample.ts != ts) {
                    break;
                }
                let corrupt = |reason: String| StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("outbox row at {ts}: {reason}"),
                };
                let uri = std::str::from_utf8(uri)
                    .map_err(|e| corrupt(format!("uri is not UTF-8: {e}")))?;
                let bytes = v.value();
                let (gen_bytes, rest) = bytes
                    .split_first_chunk::<8>()
                    .ok_or_else(|| corrupt("row shorter than its generation".into()))?;
                let generation = u64::from_le_bytes(*gen_bytes);
                if skip(ts, uri, generation) {
                    continue;
                }
                let (answers, value) = match rest.split_first() {
                    Some((&TAG_ANSWERS, tail)) => {
                        let (seq, value) = tail.split_first_chunk::<16>().ok_or_else(|| {
                            corrupt("row shorter than the notification it answers".into())
                        })?;
                        (Some(*seq), value)
                    }
                    _ => (None, rest),
                };
                let value: Value = decode_value(value).map_err(corrupt)?;
                out.push(Queued {
                    sample: Sample {
                        uri: uri.to_owned(),
                        ts,
                        value,
                    },
                    generation,
                    answers,
                });
            }
            Ok(out)
        })
    }

    /// Remove acknowledged samples: each `(ts, uri, generation)` whose row still
    /// has that generation. Committed without an fsync (see the module docs).
    pub fn remove(&self, acked: &[(i64, String, u64)]) -> Result<(), StoreError> {
        if acked.is_empty() {
            return Ok(());
        }
        no_panic(&self.path, "removing acknowledged samples", || {
            let err = self.err("removing acknowledged samples");
            let mut txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            txn.set_durability(Durability::None)
                .map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(OUTBOX).map_err(|e| err(e.into()))?;
                for (ts, uri, generation) in acked {
                    let key = (*ts, uri.as_bytes());
                    let current = table
                        .get(key)
                        .map_err(|e| err(e.into()))?
                        .and_then(|v| v.value().first_chunk::<8>().copied())
                        .map(u64::from_le_bytes);
                    if current == Some(*generation) {
                        table.remove(key).map_err(|e| err(e.into()))?;
                    }
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::{Cursor, Outgoing};
    use crate::model::Value;
    use crate::test_util::dp;

    const QUEUE: Option<Outgoing> = Some(Outgoing { answers: None });

    fn no_skip(_: i64, _: &str, _: u64) -> bool {
        false
    }

    #[test]
    fn queued_samples_are_read_in_time_order_and_removed_by_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let mut store = Store::open(&path).unwrap();
        let batch = vec![
            dp("b", 20, 1.0),
            dp("a", 20, 2.0),
            dp("c", 10, 3.0),
            dp("local.only", 5, 4.0),
        ];
        // The last sample is stored but not queued.
        let outcomes = store
            .append_queued(&batch, |i| if i < 3 { QUEUE } else { None }, true)
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
        let outbox = store.outbox().unwrap();
        assert_eq!(outbox.depth().unwrap(), 3);
        let rows = outbox.read(Cursor::Start, 10, no_skip).unwrap();
        let keys: Vec<(i64, &str)> = rows
            .iter()
            .map(|q| (q.sample.ts, q.sample.uri.as_str()))
            .collect();
        assert_eq!(keys, vec![(10, "c"), (20, "a"), (20, "b")]);
        assert_eq!(rows[1].sample.value, Value::Datapoint(2.0));
        assert_eq!(
            outbox
                .read(Cursor::After(10, "c"), 10, no_skip)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(outbox.read(Cursor::Start, 1, no_skip).unwrap().len(), 1);
        assert_eq!(outbox.read(Cursor::At(20), 10, no_skip).unwrap().len(), 2);

        // `a` is rewritten after being read: removing the old generation keeps it.
        let sent: Vec<_> = rows
            .iter()
            .map(|q| (q.sample.ts, q.sample.uri.clone(), q.generation))
            .collect();
        store
            .append_queued(&[dp("a", 20, 9.0)], |_| QUEUE, true)
            .unwrap();
        outbox.remove(&sent).unwrap();
        let left = outbox.read(Cursor::Start, 10, no_skip).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].sample, dp("a", 20, 9.0));
        assert!(left[0].generation > rows[1].generation);
        // The store keeps every sample, queued or not.
        assert_eq!(store.latest("local.only", 5).unwrap().len(), 1);
    }

    #[test]
    fn a_read_never_splits_a_time_and_skips_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.redb")).unwrap();
        let batch = vec![
            dp("a", 1, 1.0),
            dp("b", 2, 1.0),
            dp("c", 2, 1.0),
            dp("d", 2, 1.0),
            dp("e", 3, 1.0),
        ];
        store.append_queued(&batch, |_| QUEUE, true).unwrap();
        let outbox = store.outbox().unwrap();
        let uris = |rows: Vec<super::Queued>| -> Vec<String> {
            rows.into_iter().map(|q| q.sample.uri).collect()
        };
        // A limit of 2 ends inside time 2: the read takes the whole time.
        assert_eq!(
            uris(outbox.read(Cursor::Start, 2, no_skip).unwrap()),
            ["a", "b", "c", "d"]
        );
        assert_eq!(uris(outbox.read(Cursor::Start, 1, no_skip).unwrap()), ["a"]);
        // Skipped rows are left out and do not count.
        let skip = |ts: i64, uri: &str, _: u64| uri != "c" && ts < 3;
        assert_eq!(uris(outbox.read(Cursor::Start, 1, skip).unwrap()), ["c"]);
        // Rows are told apart by their generation too.
        let generation = outbox.read(Cursor::Start, 1, no_skip).unwrap()[0].generation;
        let this_one = |_: i64, _: &str, g: u64| g == generation;
        let another = |_: i64, _: &str, g: u64| g != generation;
        assert!(outbox.read(Cursor::Start, 10, this_one).unwrap().is_empty());
        assert_eq!(outbox.read(Cursor::Start, 10, another).unwrap().len(), 5);
    }

    #[test]
    fn a_commit_lowers_the_low_water_mark_to_its_earliest_queued_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.redb")).unwrap();
        let outbox = store.outbox().unwrap();
        assert_eq!(outbox.take_low_water(), None);
        store
            .append_queued(&[dp("a", 30, 1.0), dp("b", 20, 1.0)], |_| QUEUE, true)
            .unwrap();
        store
            .append_queued(&[dp("c", 25, 1.0)], |_| QUEUE, true)
            .unwrap();
        // Not queued: does not count.
        store.append(&[dp("d", 5, 1.0)]).unwrap();
        assert_eq!(outbox.take_low_water(), Some(20));
        assert_eq!(outbox.take_low_water(), None);
        store
            .append_queued(&[dp("e", 40, 1.0)], |_| QUEUE, true)
            .unwrap();
        assert_eq!(outbox.take_low_water(), Some(40));
    }

    #[test]
    fn a_row_keeps_the_notification_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let seq = [7u8; 16];
        {
            let mut store = Store::open(&path).unwrap();
            let answering = Some(Outgoing { answers: Some(seq) });
            store
                .append_queued(
                    &[dp("a", 1, 1.5), dp("b", 1, 2.5)],
                    |i| if i == 0 { answering } else { QUEUE },
                    true,
                )
                .unwrap();
            store.close().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let rows = store
            .outbox()
            .unwrap()
            .read(Cursor::Start, 10, no_skip)
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].sample, dp("a", 1, 1.5));
        assert_eq!(rows[0].answers, Some(seq));
        assert_eq!(rows[1].sample, dp("b", 1, 2.5));
        assert_eq!(rows[1].answers, None);
    }

    #[test]
    fn the_outbox_and_its_node_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (parts, left) = {
            let mut store = Store::open(&path).unwrap();
            store
                .append_queued(&[dp("x", 1, 1.0), dp("y", 2, 2.0)], |_| QUEUE, true)
                .unwrap();
            let outbox = store.outbox().unwrap();
            let parts = outbox.time_uuid_parts();
            drop(outbox);
            store.close().unwrap();
            (parts, 2)
        };
        let store = Store::open(&path).unwrap();
        let outbox = store.outbox().unwrap();
        assert_eq!(outbox.time_uuid_parts(), parts);
        assert_eq!(outbox.depth().unwrap(), left);
        assert!(parts.0 < 0x4000 && parts.1 < (1 << 48));
    }

    #[test]
    fn holds_tells_whether_a_value_is_stored_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.append(&[dp("alice:a", 7, 1.5)]).unwrap();
        assert!(store.holds("alice:a", 7, &Value::Datapoint(1.5)).unwrap());
        assert!(!store.holds("alice:a", 7, &Value::Datapoint(2.5)).unwrap());
        assert!(!store.holds("alice:a", 8, &Value::Datapoint(1.5)).unwrap());
        assert!(!store.holds("nothing", 7, &Value::Datapoint(1.5)).unwrap());
    }
}
