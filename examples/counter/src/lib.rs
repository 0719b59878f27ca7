//! `counter`: a stateful impulse. It counts the fires it has seen and writes
//! the running count to `<uri>.count` for each updated uri. The count lives in
//! a `static`; the impulse exports `snapshot` / `restore`
//! (`stateful-impulse`), so the count carries on when a new version of the
//! module is swapped in.
//!
//! Param `bad_snapshot: true` (for tests) makes the next `snapshot` return a
//! state `restore` refuses, so the next version starts from zero.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use komlog_guest::prelude::*;

/// Fires seen by this instance (and, through `restore`, its predecessors).
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Set by a fire with `bad_snapshot: true`: the snapshot is then unreadable.
static BAD_SNAPSHOT: AtomicBool = AtomicBool::new(false);

struct Counter;

impl Impulse for Counter {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let bad = ctx.param("bad_snapshot") == Some("true");
        BAD_SNAPSHOT.store(bad, Ordering::Relaxed);
        let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(ctx
            .updated
            .iter()
            .map(|uri| Sample::datapoint(format!("{uri}.count"), ctx.ts, n as f64))
            .collect())
    }
}

impl Stateful for Counter {
    fn snapshot() -> Vec<u8> {
        if BAD_SNAPSHOT.load(Ordering::Relaxed) {
            return b"bad".to_vec();
        }
        COUNT.load(Ordering::Relaxed).to_le_bytes().to_vec()
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|s: Vec<u8>| format!("expected 8 bytes of state, got {}", s.len()))?;
        COUNT.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        Ok(())
    }
}

komlog_guest::export_stateful_impulse!(Counter);
