//! `counter`: a stateful impulse. It counts the fires it has seen and writes
//! the running count to `<uri>.count` for each updated uri. The count lives in
//! a `static`; the impulse exports `snapshot` / `restore`
//! (`stateful-impulse`), so the count carries on when a new version of the
//! module is swapped in.
//!
//! Param `snapshot` (for tests) makes the next `snapshot` go wrong, so the
//! next version starts from zero: `refused` returns a state `restore`
//! refuses, `trap` panics, `loop` never returns (the call deadline stops
//! it) and `huge` returns 17 MiB (over komlogd's 16 MiB cap on a state).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use komlog_guest::prelude::*;

/// Fires seen by this instance (and, through `restore`, its predecessors).
static COUNT: AtomicU64 = AtomicU64::new(0);

/// How the next snapshot goes, set by each fire from its `snapshot` param.
static SNAPSHOT: AtomicU8 = AtomicU8::new(WELL);

const WELL: u8 = 0;
const REFUSED: u8 = 1;
const TRAP: u8 = 2;
const LOOP: u8 = 3;
const HUGE: u8 = 4;

struct Counter;

impl Impulse for Counter {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let mode = match ctx.param("snapshot") {
            None => WELL,
            Some("refused") => REFUSED,
            Some("trap") => TRAP,
            Some("loop") => LOOP,
            Some("huge") => HUGE,
            Some(other) => return Err(format!("unknown snapshot mode `{other}`")),
        };
        SNAPSHOT.store(mode, Ordering::Relaxed);
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
        match SNAPSHOT.load(Ordering::Relaxed) {
            REFUSED => b"bad".to_vec(),
            TRAP => panic!("counter: snapshot asked to trap"),
            LOOP => loop {
                std::hint::spin_loop();
            },
            HUGE => vec![7; 17 << 20],
            _ => COUNT.load(Ordering::Relaxed).to_le_bytes().to_vec(),
        }
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
