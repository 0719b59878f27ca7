//! One impulse's worker thread: it owns the impulse's module version and
//! instance, runs its fires one at a time in arrival order, validates what the
//! guest returns, applies the failure policy, and swaps module versions at a call
//! boundary.
//!
//! Fires and swaps arrive on one queue, so every fire queued before a swap runs
//! on the old version and every fire queued after it on the new one: each event
//! is handled by exactly one version, none is dropped or run twice.
//!
//! **State across a swap.** When both versions are `stateful-impulse` modules
//! and the old one has a live instance, the swap calls `snapshot` on it and
//! `restore` on the new version's instance (at most [`MAX_STATE_BYTES`]).
//! If anything fails the new version's next event runs on a fresh instance;
//! `state_carried` / `state_dropped` count the outcomes.
//!
//! **Failure policy.** A failed call (trap, deadline, memory cap, fuel, or an
//! instance that cannot be created) discards the instance; the event is retried
//! once on a fresh instance. If the retry fails too, the event is recorded as
//! failed (impulse, version, ts, reason), and the impulse backs off: fires in
//! the next 1 s are skipped, doubling with each failed event in a row up to
//! 30 s. After `disable_after` failed events in a row the impulse is disabled
//! until a new module version is swapped in. A successful call resets the count.
//! Skipped fires are counted. A guest returning `err` is not a failure of the
//! sandbox: it is counted and logged, nothing more. Neither is a call that
//! returns more samples than its `outputs` limit: none of them is written, and
//! they are counted as invalid outputs.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::bindings::{Context, Sample as GuestSample};
use crate::engine::{CallError, Instance, Module};
use crate::model::{Sample, SampleError, Username};

use super::dispatch::{DroppedOutput, FireOutcome, FireRecord, Msg};
use super::output;
use super::spec::ImpulseSpec;
use super::stats::{FailedEvent, ImpulseState, SharedStats, lock};

/// First backoff after a failed event.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Largest state a `stateful-impulse` may carry across a swap (16 MiB).
pub const MAX_STATE_BYTES: usize = 16 << 20;

/// A module version ready to serve: the spec it was checked with, the module,
/// and a warm instance (the one that answered `describe()`), if any.
pub struct Version {
    /// The resolved spec.
    pub spec: ImpulseSpec,
    /// The loaded module.
    pub module: Module,
    /// A warm instance created with `spec.limits`.
    pub instance: Option<Instance>,
}

impl Version {
    /// The warm instance, created first if there is none.
    fn instance(&mut self) -> Result<&mut Instance, CallError> {
        match &mut self.instance {
            Some(instance) => Ok(instance),
            empty @ None => {
                let fresh = self
                    .module
                    .instantiate(self.spec.name.clone(), self.spec.limits)?;
                Ok(empty.insert(fresh))
            }
        }
    }
}

/// One fire, prepared by the dispatcher.
pub(crate) struct FireJob {
    pub ts: i64,
    pub depth: u32,
    /// The server notification that fired it (its outputs answer it).
    pub answers: Option<[u8; 16]>,
    pub updated: Vec<String>,
    pub others: Vec<String>,
    pub window: Vec<u8>,
    /// Filled in and handed back when the dispatcher has a fire tap.
    pub record: Option<Box<FireRecord>>,
}

/// What the worker does next.
pub(crate) enum Job {
    Fire(FireJob),
    /// Serve with this version, the impulse's `generation`-th (counted by the
    /// dispatcher) from the next fire on.
    Swap(Box<Version>, u64),
}

/// What a worker tells the dispatcher about the fires it would skip under the
/// failure policy, so that the dispatcher skips them before cutting a window.
/// It holds for the version of its `generation` only: fires sent after a swap
/// go to the worker, which serves the new version. Neither side holds it
/// while it holds the impulse's stats (or the other way round).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The version (counted by the dispatcher's swaps) that closed it.
    pub generation: u64,
    /// Skip fires until then (backing off).
    pub until: Option<Instant>,
    /// Skip every fire (disabled until the module changes).
    pub disabled: bool,
}

/// A gate shared by a worker and the dispatcher.
pub(crate) type SharedGate = Arc<std::sync::Mutex<Gate>>;

/// Lock a gate; a poisoned one (a panic while held) is still consistent.
pub(crate) fn lock_gate(gate: &SharedGate) -> std::sync::MutexGuard<'_, Gate> {
    gate.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The result of one fire, back to the dispatcher.
pub(crate) struct Done {
    pub slot: usize,
    pub depth: u32,
    /// The fire's [`FireJob::answers`].
    pub answers: Option<[u8; 16]>,
    /// Hash of the module version that ran it.
    pub version: Arc<str>,
    /// Whether `on-update` was called (and returned, ok or err).
    pub called: bool,
    /// When the call that gave `outputs` returned.
    pub returned_at: Option<Instant>,
    /// Valid local writes, in the order returned.
    pub outputs: Vec<Sample>,
    /// The window buffer, handed back for reuse.
    pub window: Vec<u8>,
    /// The fire's record, completed (when the dispatcher asked for one).
    pub record: Option<Box<FireRecord>>,
}

enum Outcome {
    Returned(Result<Vec<GuestSample>, String>),
    Failed(CallError),
}

/// What a worker applies to every fire.
#[derive(Debug, Clone)]
pub(crate) struct FireRules {
    /// The agent's username: `username:uri` outputs are local writes.
    pub username: Option<Username>,
    /// Skip fires for a while after a failed event (not in replays).
    pub backs_off: bool,
}

/// The thread of one impulse. Dropping the job sender ends it after the queued jobs.
pub(crate) fn spawn(
    slot: usize,
    version: Version,
    stats: SharedStats,
    gate: SharedGate,
    rules: FireRules,
    jobs: Receiver<Job>,
    done: SyncSender<Msg>,
) -> std::io::Result<JoinHandle<()>> {
    let name = format!("imp-{}", version.spec.name);
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            let mut worker = Worker::new(slot, version, stats, gate, rules);
            while let Some(job) = super::recv_spinning(&jobs) {
                if let Some(result) = worker.run(job)
                    && done.send(Msg::Done(result)).is_err()
                {
                    return;
                }
            }
        })
}

/// One impulse's module version, instance and failure policy, serving its
/// jobs one at a time: on its own thread ([`spawn`]), or on the caller's
/// (replays run every impulse this way, without a thread to cross).
pub(crate) struct Worker {
    slot: usize,
    version: Version,
    /// `version`'s module hash, shared with every result.
    tag: Arc<str>,
    /// Which of the impulse's versions `version` is (0 for the first).
    generation: u64,
    stats: SharedStats,
    gate: SharedGate,
    username: Option<Username>,
    /// Skip fires for a while after a failed event (not in replays).
    backs_off: bool,
    /// Time in the guest during the current fire.
    call_time: Duration,
    ctx: Context,
    consecutive_failures: u32,
    resume_at: Option<Instant>,
    disabled: bool,
    /// After a swap: how long retiring the old version took, until the first
    /// call on the new one completes the stall measurement.
    swap_stall: Option<Duration>,
}

impl Worker {
    pub(crate) fn new(
        slot: usize,
        version: Version,
        stats: SharedStats,
        gate: SharedGate,
        rules: FireRules,
    ) -> Self {
        let FireRules {
            username,
            backs_off,
        } = rules;
        lock(&stats).stats().version = version.module.hash().to_owned();
        let ctx = Context {
            ts: 0,
            updated: Vec::new(),
            others: Vec::new(),
            params: version.spec.params.clone(),
            window: Vec::new(),
        };
        Worker {
            slot,
            tag: Arc::from(version.module.hash()),
            version,
            generation: 0,
            stats,
            gate,
            username,
            backs_off,
            call_time: Duration::ZERO,
            ctx,
            consecutive_failures: 0,
            resume_at: None,
            disabled: false,
            swap_stall: None,
        }
    }

    /// Run one job: a fire gives its answer, a swap nothing.
    pub(crate) fn run(&mut self, job: Job) -> Option<Done> {
        match job {
            Job::Fire(job) => {
                let (depth, version) = (job.depth, self.tag.clone());
                // A bug in the host must not leave the dispatcher waiting
                // for this fire forever: answer it as not called.
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fire(job)))
                        .unwrap_or_else(|_| {
                            tracing::error!(
                                impulse = self.name(),
                                "internal error while firing; the fire is dropped"
                            );
                            Done {
                                slot: self.slot,
                                depth,
                                answers: None,
                                version,
                                called: false,
                                returned_at: None,
                                outputs: Vec::new(),
                                window: Vec::new(),
                                record: None,
                            }
                        });
                Some(result)
            }
            Job::Swap(version, generation) => {
                self.swap(*version, generation);
                None
            }
        }
    }

    fn name(&self) -> &str {
        &self.version.spec.name
    }

    /// Serve with `version` from the next fire on; re-enables a disabled impulse.
    fn swap(&mut self, version: Version, generation: u64) {
        let started = Instant::now();
        self.generation = generation;
        *lock_gate(&self.gate) = Gate {
            generation,
            ..Gate::default()
        };
        let mut old = std::mem::replace(&mut self.version, version);
        let carried = self.carry_state(&mut old);
        self.tag = Arc::from(self.version.module.hash());
        self.ctx.params = self.version.spec.params.clone();
        self.consecutive_failures = 0;
        self.resume_at = None;
        self.disabled = false;
        {
            let mut cell = lock(&self.stats);
            let s = cell.stats();
            s.version = self.version.module.hash().to_owned();
            s.state = ImpulseState::Running;
            s.consecutive_failures = 0;
            s.swaps += 1;
            match &carried {
                Some(Ok(())) => s.state_carried += 1,
                Some(Err(reason)) => {
                    s.state_dropped += 1;
                    s.last_error = Some(format!("state not carried over at a swap: {reason}"));
                }
                None => {}
            }
        }
        if let Some(Err(reason)) = &carried {
            tracing::warn!(
                impulse = self.name(),
                from = &old.module.hash()[..12],
                to = &self.version.module.hash()[..12],
                "state not carried over ({reason}); the new version starts fresh"
            );
        }
        tracing::info!(
            impulse = self.name(),
            from = &old.module.hash()[..12],
            to = &self.version.module.hash()[..12],
            "new module version serving from the next event"
        );
        // Freeing the old instance and code (unmapping it) takes hundreds of µs:
        // it happens on the retirement thread, not between two events.
        retire(old);
        self.swap_stall = Some(started.elapsed());
    }

    /// Between a serving `old` version and the new `self.version`, both
    /// `stateful-impulse` modules: `snapshot` on the old instance, `restore`
    /// on the new version's (created if needed). None when there is nothing to
    /// carry (either side not stateful, or no live old instance). On failure
    /// the new version is left without an instance, so its first event runs
    /// on a fresh one.
    fn carry_state(&mut self, old: &mut Version) -> Option<Result<(), String>> {
        if !self.version.module.is_stateful() {
            return None;
        }
        let old_instance = old.instance.as_mut()?;
        let state = match old_instance.snapshot()? {
            Ok(state) => state,
            Err(e) => {
                old.instance = None;
                return Some(Err(format!("snapshot failed: {e}")));
            }
        };
        if state.len() > MAX_STATE_BYTES {
            return Some(Err(format!(
                "snapshot of {} bytes is over the {MAX_STATE_BYTES}-byte cap",
                state.len()
            )));
        }
        let version = &mut self.version;
        let instance = match version.instance() {
            Ok(instance) => instance,
            Err(e) => return Some(Err(format!("new instance failed: {e}"))),
        };
        let reason = match instance.restore(&state)? {
            Ok(Ok(())) => {
                tracing::debug!(
                    impulse = &*version.spec.name,
                    bytes = state.len(),
                    "state carried over to the new version"
                );
                return Some(Ok(()));
            }
            Ok(Err(message)) => format!("restore returned an error: {message}"),
            Err(e) => format!("restore failed: {e}"),
        };
        version.instance = None;
        Some(Err(reason))
    }

    fn fire(&mut self, mut job: FireJob) -> Done {
        let mut record = job.record.take();
        self.call_time = Duration::ZERO;
        let mut done = self.fire_inner(job, record.as_deref_mut());
        if let Some(r) = &mut record {
            r.call = self.call_time;
            r.outputs.clone_from(&done.outputs);
        }
        done.record = record;
        done
    }

    /// [`Worker::fire`], noting in `record` how it ended and what was dropped.
    fn fire_inner(&mut self, job: FireJob, mut record: Option<&mut FireRecord>) -> Done {
        let FireJob {
            ts,
            depth,
            answers,
            updated,
            others,
            window,
            record: _,
        } = job;
        let mut note = |outcome: FireOutcome| {
            if let Some(r) = record.as_deref_mut() {
                r.outcome = outcome;
            }
        };
        let mut done = Done {
            slot: self.slot,
            depth,
            answers,
            version: self.tag.clone(),
            called: false,
            returned_at: None,
            outputs: Vec::new(),
            window: Vec::new(),
            record: None,
        };
        self.ctx.ts = ts;
        self.ctx.updated = updated;
        self.ctx.others = others;
        self.ctx.window = window;
        if let Some(why) = self.skipped() {
            note(FireOutcome::Skipped(why));
            done.window = std::mem::take(&mut self.ctx.window);
            return done;
        }
        let returned = match self.call() {
            Outcome::Returned(r) => r,
            Outcome::Failed(first) => {
                lock(&self.stats).stats().retries += 1;
                tracing::warn!(
                    impulse = self.name(),
                    ts,
                    "call failed ({first}); retrying once on a fresh instance"
                );
                match self.call() {
                    Outcome::Returned(r) => r,
                    Outcome::Failed(second) => {
                        note(FireOutcome::Failed {
                            kind: second.kind.as_str().to_owned(),
                            reason: second.to_string(),
                        });
                        self.failed_event(ts, &second);
                        done.window = std::mem::take(&mut self.ctx.window);
                        return done;
                    }
                }
            }
        };
        done.window = std::mem::take(&mut self.ctx.window);
        done.called = true;
        done.returned_at = Some(Instant::now());
        self.consecutive_failures = 0;
        let mut cell = lock(&self.stats);
        let stats = cell.stats();
        stats.fires += 1;
        stats.consecutive_failures = 0;
        stats.state = ImpulseState::Running;
        let samples = match returned {
            Ok(samples) => samples,
            Err(message) => {
                note(FireOutcome::GuestError(message.clone()));
                stats.guest_errors += 1;
                tracing::warn!(
                    impulse = self.version.spec.name.as_ref(),
                    ts,
                    "impulse returned an error: {message}"
                );
                stats.last_error = Some(format!("error at ts {ts}: {message}"));
                return done;
            }
        };
        note(FireOutcome::Returned);
        let limit = self.version.spec.max_outputs;
        if samples.len() > limit {
            let message = format!(
                "returned {} samples, more than its limit of {limit} a call (limits.outputs): none written",
                samples.len()
            );
            if let Some(r) = record.as_deref_mut() {
                r.dropped = samples
                    .iter()
                    .map(|s| DroppedOutput {
                        uri: s.uri.clone(),
                        ts: s.ts,
                        reason: format!("over the limit of {limit} outputs a call"),
                    })
                    .collect();
            }
            stats.invalid_outputs += samples.len() as u64;
            tracing::warn!(impulse = self.version.spec.name.as_ref(), ts, "{message}");
            stats.last_error = Some(format!("at ts {ts}: {message}"));
            return done;
        }
        done.outputs.reserve(samples.len());
        for sample in samples {
            let (uri, sample_ts) = (sample.uri.clone(), sample.ts);
            let result = output::accept(sample, self.username.as_ref());
            if let (Err(reason), Some(r)) = (&result, record.as_deref_mut()) {
                r.dropped.push(DroppedOutput {
                    uri: uri.clone(),
                    ts: sample_ts,
                    reason: reason.to_string(),
                });
            }
            match result {
                Ok(s) => done.outputs.push(s),
                Err(SampleError::RemoteWrite(u)) => {
                    stats.remote_writes_dropped += 1;
                    tracing::info!(impulse = self.version.spec.name.as_ref(), uri = %u, "write to another user's uri dropped: remote uris are read-only");
                }
                Err(reason) => {
                    stats.invalid_outputs += 1;
                    tracing::warn!(impulse = self.version.spec.name.as_ref(), uri = %uri, "output dropped: {reason}");
                    stats.last_error = Some(format!("output to {uri} dropped: {reason}"));
                }
            }
        }
        done
    }

    /// Why this fire is skipped by the failure policy (counted if so).
    fn skipped(&mut self) -> Option<&'static str> {
        if self.disabled {
            lock(&self.stats).stats().disabled_skips += 1;
            return Some("disabled");
        }
        if let Some(at) = self.resume_at {
            if Instant::now() < at {
                lock(&self.stats).stats().backoff_skips += 1;
                return Some("backing off");
            }
            self.resume_at = None;
        }
        None
    }

    /// One call on the current instance (created first if needed).
    fn call(&mut self) -> Outcome {
        let version = &mut self.version;
        let instance = match version.instance() {
            Ok(instance) => instance,
            Err(e) => return self.call_failed(e),
        };
        let started = Instant::now();
        let result = instance.on_update(&self.ctx);
        let elapsed = started.elapsed();
        self.call_time += elapsed;
        let high_water = instance.memory_high_water() as u64;
        {
            let mut cell = lock(&self.stats);
            cell.record_duration(elapsed.as_nanos() as u64);
            if let Some(retire) = self.swap_stall.take() {
                cell.record_swap_stall((retire + elapsed).as_nanos() as u64);
            }
            let s = cell.stats();
            s.memory_high_water = s.memory_high_water.max(high_water);
        }
        match result {
            Ok(r) => Outcome::Returned(r),
            Err(e) => {
                version.instance = None;
                self.call_failed(e)
            }
        }
    }

    fn call_failed(&mut self, e: CallError) -> Outcome {
        let mut cell = lock(&self.stats);
        let s = cell.stats();
        *s.failures.entry(e.kind.as_str().to_owned()).or_default() += 1;
        s.last_error = Some(e.to_string());
        tracing::error!(
            impulse = self.version.spec.name.as_ref(),
            wasm = %self.version.spec.module_path.display(),
            "impulse failed, instance discarded: {e}"
        );
        Outcome::Failed(e)
    }

    fn failed_event(&mut self, ts: i64, e: &CallError) {
        self.consecutive_failures += 1;
        let n = self.consecutive_failures;
        let version = self.version.module.hash()[..12].to_owned();
        let limit = self.version.spec.disable_after;
        let backoff = backoff_after(n);
        let until = Instant::now() + backoff;
        let backing_off = n < limit && self.backs_off;
        // Never held with the stats: the dispatcher takes the gate alone.
        *lock_gate(&self.gate) = Gate {
            generation: self.generation,
            until: backing_off.then_some(until),
            disabled: n >= limit,
        };
        let mut cell = lock(&self.stats);
        cell.record_failed_event(FailedEvent {
            ts,
            version: version.clone(),
            kind: e.kind.as_str().to_owned(),
            reason: e.to_string(),
        });
        let s = cell.stats();
        s.consecutive_failures = n;
        if n >= limit {
            self.disabled = true;
            s.state = ImpulseState::Disabled;
            tracing::error!(
                impulse = self.version.spec.name.as_ref(),
                wasm = %self.version.spec.module_path.display(),
                version,
                ts,
                "event failed twice; impulse disabled after {n} failed events in a row: it runs again when its module file changes"
            );
        } else if !backing_off {
            tracing::error!(
                impulse = self.version.spec.name.as_ref(),
                version,
                ts,
                "event failed twice ({n} in a row)"
            );
        } else {
            self.resume_at = Some(until);
            s.state = ImpulseState::Backoff;
            tracing::error!(
                impulse = self.version.spec.name.as_ref(),
                version,
                ts,
                "event failed twice ({n} in a row); skipping fires for {backoff:?}"
            );
        }
    }
}

/// Free a replaced version away from the event path: on one shared retirement
/// thread (started on first use), or here if that thread cannot be started.
fn retire(old: Version) {
    type Retirement = Option<std::sync::Mutex<std::sync::mpsc::Sender<Version>>>;
    static RETIRE: std::sync::OnceLock<Retirement> = std::sync::OnceLock::new();
    let sender = RETIRE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Version>();
        std::thread::Builder::new()
            .name("komlogd-retire".into())
            .spawn(move || {
                while let Ok(version) = rx.recv() {
                    let hash = version.module.hash()[..12].to_owned();
                    drop(version);
                    tracing::debug!(version = hash, "replaced module version freed");
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let unsent = match sender {
        Some(tx) => match tx.lock() {
            Ok(tx) => tx.send(old).err().map(|e| e.0),
            Err(_) => Some(old),
        },
        None => Some(old),
    };
    drop(unsent);
}

/// The backoff after `n` (≥ 1) failed events in a row: 1 s, 2 s, 4 s … 30 s.
pub fn backoff_after(n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_after(u32::MAX), BACKOFF_MAX);
    }
}
