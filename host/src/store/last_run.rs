//! The time of each impulse's last run, for `min_exec_delta`, kept in the
//! `meta` table under `last_run:<impulse name>` (i64 little-endian, µs).
//!
//! The dispatcher reads it when it adds an impulse and writes it back when it
//! closes and after each one-shot call ([`crate::impulses::Dispatcher::ingest`]
//! and the like), so one-shot `komlogd -u` runs and the agent apply the rule
//! to the same previous run.

use redb::ReadableDatabase;

use super::disk::{META, no_panic};
use super::{Store, StoreError};

/// The `meta` key of an impulse's last run.
fn key(impulse: &str) -> Vec<u8> {
    [b"last_run:".as_slice(), impulse.as_bytes()].concat()
}

impl Store {
    /// The time of the last run of the impulse named `impulse` that was
    /// saved, if any.
    pub fn last_run(&self, impulse: &str) -> Result<Option<i64>, StoreError> {
        let path = self.path.clone();
        let db = self.disk.database();
        no_panic(&path, "reading an impulse's last run", || {
            let err =
                |e: redb::Error| StoreError::from_redb(&path, "reading an impulse's last run", e);
            let rtxn = db.begin_read().map_err(|e| err(e.into()))?;
            let meta = rtxn.open_table(META).map_err(|e| err(e.into()))?;
            let Some(found) = meta
                .get(key(impulse).as_slice())
                .map_err(|e| err(e.into()))?
            else {
                return Ok(None);
            };
            let raw: [u8; 8] = found.value().try_into().map_err(|_| StoreError::Corrupt {
                path: path.clone(),
                reason: format!("the last run of impulse {impulse} is not 8 bytes"),
            })?;
            Ok(Some(i64::from_le_bytes(raw)))
        })
    }

    /// Save the last run of each of `runs` (impulse name, time), in one
    /// durable commit.
    pub fn save_last_runs(&mut self, runs: &[(&str, i64)]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let db = self.disk.database();
        no_panic(&path, "saving the impulses' last runs", || {
            let err =
                |e: redb::Error| StoreError::from_redb(&path, "saving the impulses' last runs", e);
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                for (impulse, ts) in runs {
                    meta.insert(key(impulse).as_slice(), ts.to_le_bytes().as_slice())
                        .map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_runs_survive_a_reopen_and_are_kept_per_impulse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let mut store = Store::open(&path).expect("store");
        assert_eq!(store.last_run("a").expect("read"), None);
        store
            .save_last_runs(&[("a", -5), ("a/b", 1_700_000_000_000_000)])
            .expect("save");
        store.save_last_runs(&[("a", 7)]).expect("save again");
        store.close().expect("close");
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.last_run("a").expect("read"), Some(7));
        assert_eq!(
            store.last_run("a/b").expect("read"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(store.last_run("b").expect("read"), None);
    }
}
