//! Per-impulse counters and state, shared between an impulse's worker, the
//! dispatcher and the readers (`komlogd status`, the Prometheus endpoint),
//! and the configured impulses that failed to load, with the reason.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// How many recent call durations the percentiles are computed over.
const DURATION_WINDOW: usize = 1024;
/// How many failed events are remembered per impulse.
const FAILED_EVENTS_KEPT: usize = 16;

/// Whether an impulse is taking events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImpulseState {
    /// Taking events.
    #[default]
    Running,
    /// Failed recently: events are skipped until the backoff ends.
    Backoff,
    /// Failed too many times in a row: events are skipped until its module changes.
    Disabled,
}

impl ImpulseState {
    /// A short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImpulseState::Running => "running",
            ImpulseState::Backoff => "backoff",
            ImpulseState::Disabled => "disabled",
        }
    }
}

/// An event whose call failed twice (first try and retry).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedEvent {
    /// The firing timestamp, µs.
    pub ts: i64,
    /// The module version (hash prefix) that failed.
    pub version: String,
    /// Failure kind (trap, deadline, memory, fuel, instantiate).
    pub kind: String,
    /// The failure, as logged.
    pub reason: String,
}

/// What an impulse has done since it was loaded (counters survive module swaps).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImpulseStats {
    /// Hex SHA-256 of the module now serving.
    pub version: String,
    /// Running, backing off or disabled.
    pub state: ImpulseState,
    /// Calls of `on-update` that returned (ok or err).
    pub fires: u64,
    /// Fires skipped because of `min_exec_delta`.
    pub skips: u64,
    /// Fires skipped because the impulse was backing off after a failure.
    pub backoff_skips: u64,
    /// Fires skipped because the impulse was disabled.
    pub disabled_skips: u64,
    /// Fires dropped because those already waiting for the impulse held its
    /// `queue` limit of memory (it could not keep up).
    pub queue_full_skips: u64,
    /// Fires whose guest returned `err`.
    pub guest_errors: u64,
    /// Failed calls by kind (trap, deadline, memory, fuel, instantiate), retries included.
    pub failures: BTreeMap<String, u64>,
    /// Events retried on a fresh instance after a failed call.
    pub retries: u64,
    /// Events that failed on their retry too.
    pub failed_events: u64,
    /// Failures in a row without a successful call.
    pub consecutive_failures: u32,
    /// The latest failed events, oldest first.
    pub recent_failed_events: VecDeque<FailedEvent>,
    /// Output samples accepted.
    pub outputs: u64,
    /// Output samples dropped for breaking a rule (uri, value, kind).
    pub invalid_outputs: u64,
    /// Output samples to another user's uri, dropped.
    pub remote_writes_dropped: u64,
    /// Output samples stored without firing further impulses (chain depth reached).
    pub chain_cut: u64,
    /// Module versions swapped in while running.
    pub swaps: u64,
    /// Swaps whose in-memory state was carried over (`snapshot` / `restore`
    /// of a `stateful-impulse`).
    pub state_carried: u64,
    /// Swaps between two `stateful-impulse` versions whose state could not be
    /// carried over (the new version started fresh).
    pub state_dropped: u64,
    /// New module versions refused by the load check (the previous one kept serving).
    pub rejected_versions: u64,
    /// The last error or failure, if any.
    pub last_error: Option<String>,
    /// The largest linear memory any of its instances reached, bytes.
    pub memory_high_water: u64,
    /// Median duration of the latest calls, µs.
    pub duration_p50_us: f64,
    /// 99th percentile duration of the latest calls, µs.
    pub duration_p99_us: f64,
    /// Median swap stall over the latest swaps, µs: the time to retire the old
    /// version plus the first call on the new one.
    pub swap_stall_p50_us: f64,
    /// 99th percentile swap stall over the latest swaps, µs.
    pub swap_stall_p99_us: f64,
    /// Calls timed since the impulse was loaded.
    pub duration_count: u64,
    /// Their total duration, µs.
    pub duration_sum_us: f64,
}

/// The live stats of one impulse: counters plus the recent call durations.
#[derive(Debug, Default)]
pub struct StatsCell {
    stats: ImpulseStats,
    durations_ns: VecDeque<u64>,
    swap_stalls_ns: VecDeque<u64>,
}

impl StatsCell {
    /// The counters, for updating.
    pub fn stats(&mut self) -> &mut ImpulseStats {
        &mut self.stats
    }

    /// Record one call's duration.
    pub fn record_duration(&mut self, ns: u64) {
        if self.durations_ns.len() == DURATION_WINDOW {
            self.durations_ns.pop_front();
        }
        self.durations_ns.push_back(ns);
        self.stats.duration_count += 1;
        self.stats.duration_sum_us += ns as f64 / 1e3;
    }

    /// Record one swap's stall.
    pub fn record_swap_stall(&mut self, ns: u64) {
        if self.swap_stalls_ns.len() == DURATION_WINDOW {
            self.swap_stalls_ns.pop_front();
        }
        self.swap_stalls_ns.push_back(ns);
    }

    /// Record an event that failed on its retry too.
    pub fn record_failed_event(&mut self, event: FailedEvent) {
        let recent = &mut self.stats.recent_failed_events;
        if recent.len() == FAILED_EVENTS_KEPT {
            recent.pop_front();
        }
        recent.push_back(event);
        self.stats.failed_events += 1;
    }

    /// A copy of the counters with the percentiles filled in.
    pub fn snapshot(&self) -> ImpulseStats {
        let mut out = self.stats.clone();
        (out.duration_p50_us, out.duration_p99_us) = p50_p99_us(&self.durations_ns);
        (out.swap_stall_p50_us, out.swap_stall_p99_us) = p50_p99_us(&self.swap_stalls_ns);
        out
    }
}

/// Median and 99th percentile (nearest rank) of nanosecond figures, in µs; 0 if none.
fn p50_p99_us(ns: &VecDeque<u64>) -> (f64, f64) {
    if ns.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted: Vec<u64> = ns.iter().copied().collect();
    sorted.sort_unstable();
    let at = |q: f64| {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i] as f64 / 1e3
    };
    (at(0.50), at(0.99))
}

/// The shared handle to one impulse's stats.
pub type SharedStats = Arc<Mutex<StatsCell>>;

/// Lock a stats cell; a poisoned lock (a panic while holding it) still yields the data.
pub fn lock(stats: &SharedStats) -> MutexGuard<'_, StatsCell> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An impulse's name and its stats.
type BoardEntry = (Arc<str>, SharedStats);

/// A configured impulse that is not running because it could not be loaded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedImpulse {
    /// Its name.
    pub name: String,
    /// Its module file.
    pub wasm: PathBuf,
    /// Why it could not be loaded, as logged.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Entries {
    /// The running impulses, in load order.
    loaded: Vec<BoardEntry>,
    /// The impulses that failed to load, none of them loaded.
    failed: Vec<FailedImpulse>,
}

/// Every loaded impulse's stats, by name in load order, and the configured
/// impulses that failed to load; cheap to clone and readable from any thread
/// while the agent runs. Loading an impulse (under its name) takes it off the
/// failed list in the same step, so a reader sees it either failed or running.
#[derive(Debug, Clone, Default)]
pub struct StatsBoard {
    entries: Arc<RwLock<Entries>>,
}

impl StatsBoard {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Add (or replace) an impulse's entry; it is no longer failed.
    pub(crate) fn insert(&self, name: Arc<str>, stats: SharedStats) {
        let mut entries = self.write();
        entries.failed.retain(|f| *f.name != *name);
        match entries.loaded.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = stats,
            None => entries.loaded.push((name, stats)),
        }
    }

    /// Remove an impulse's entry.
    pub(crate) fn remove(&self, name: &str) {
        self.write().loaded.retain(|(n, _)| &**n != name);
    }

    /// A consistent copy of every running impulse's stats, in load order.
    pub fn snapshot(&self) -> Vec<(Arc<str>, ImpulseStats)> {
        self.read()
            .loaded
            .iter()
            .map(|(name, stats)| (name.clone(), lock(stats).snapshot()))
            .collect()
    }

    /// Record that the impulse `name` (module `wasm`) could not be loaded, or
    /// why it still cannot. Ignored while an impulse of that name runs: a
    /// refused new version of a running impulse is not a failed impulse.
    pub fn set_failed(&self, name: &str, wasm: PathBuf, reason: String) {
        let mut entries = self.write();
        if entries.loaded.iter().any(|(n, _)| &**n == name) {
            return;
        }
        let failed = FailedImpulse {
            name: name.to_owned(),
            wasm,
            reason,
        };
        match entries.failed.iter_mut().find(|f| f.name == name) {
            Some(entry) => *entry = failed,
            None => entries.failed.push(failed),
        }
    }

    /// Forget that the impulse `name` failed (it left the configuration).
    pub fn clear_failed(&self, name: &str) {
        self.write().failed.retain(|f| f.name != name);
    }

    /// The configured impulses that failed to load, in the order they failed.
    pub fn failed(&self) -> Vec<FailedImpulse> {
        self.read().failed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_recent_durations() {
        let mut cell = StatsCell::default();
        for us in 1..=100u64 {
            cell.record_duration(us * 1000);
        }
        let s = cell.snapshot();
        assert_eq!(s.duration_p50_us, 50.0);
        assert_eq!(s.duration_p99_us, 99.0);
        assert_eq!(s.duration_count, 100);
        assert_eq!(s.duration_sum_us, 5050.0);
    }

    #[test]
    fn only_the_latest_durations_count() {
        let mut cell = StatsCell::default();
        for _ in 0..DURATION_WINDOW {
            cell.record_duration(1_000_000);
        }
        for _ in 0..DURATION_WINDOW {
            cell.record_duration(1_000);
        }
        let s = cell.snapshot();
        assert_eq!(s.duration_p99_us, 1.0);
        assert_eq!(s.duration_count, 2 * DURATION_WINDOW as u64);
    }

    #[test]
    fn failed_events_are_capped() {
        let mut cell = StatsCell::default();
        for ts in 0..40 {
            cell.record_failed_event(FailedEvent {
                ts,
                version: "v".into(),
                kind: "trap".into(),
                reason: "r".into(),
            });
        }
        let s = cell.snapshot();
        assert_eq!(s.failed_events, 40);
        assert_eq!(s.recent_failed_events.len(), FAILED_EVENTS_KEPT);
        assert_eq!(s.recent_failed_events.front().map(|e| e.ts), Some(24));
    }

    #[test]
    fn board_replaces_and_removes_by_name() {
        let board = StatsBoard::default();
        let a: SharedStats = Arc::default();
        lock(&a).stats().fires = 3;
        board.insert("a".into(), a);
        board.insert("b".into(), Arc::default());
        let a2: SharedStats = Arc::default();
        lock(&a2).stats().fires = 7;
        board.insert("a".into(), a2);
        let snap = board.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(&*snap[0].0, "a");
        assert_eq!(snap[0].1.fires, 7);
        board.remove("a");
        assert_eq!(board.snapshot().len(), 1);
    }

    #[test]
    fn a_failed_impulse_is_listed_until_it_loads_or_leaves() {
        let board = StatsBoard::default();
        board.set_failed("late", "late/x.wasm".into(), "no such file".into());
        board.set_failed("gone", "gone.wasm".into(), "not a component".into());
        board.set_failed("late", "late/x.wasm".into(), "still broken".into());
        let reasons: Vec<_> = board.failed().into_iter().map(|f| f.reason).collect();
        assert_eq!(reasons, ["still broken", "not a component"]);
        assert!(
            board.snapshot().is_empty(),
            "failed impulses are not running"
        );

        board.insert("late".into(), Arc::default());
        let names: Vec<_> = board.failed().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["gone"], "loading it took it off the failed list");
        board.set_failed("late", "late/x.wasm".into(), "a refused new version".into());
        assert_eq!(board.failed().len(), 1, "a running impulse is not failed");

        board.clear_failed("gone");
        assert!(board.failed().is_empty());
    }
}
