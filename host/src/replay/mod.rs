//! Replays of recorded samples through impulses (`komlogd impulse test`).
//!
//! A replay runs the agent's own line — the [`Dispatcher`], its window code,
//! `min_exec_delta`, stacking, chains and the loop rule, output validation,
//! the remote-write drop and the sandbox limits — over a scratch store in a
//! temporary directory that is deleted afterwards; the real store is never
//! opened. The scratch store holds its writes back in memory and writes them
//! in large commits ([`Store::hold_back_writes`]): windows come from its cache
//! as in the agent. The samples go in by sample time, not wall time: all the samples
//! of one timestamp as one batch, and each batch runs to completion (every
//! fire, and every fire its outputs cause) before the next.
//!
//! **Deterministic.** The same modules and samples give the same fires with
//! the same outputs, in the same order, every run: the dispatcher runs in
//! replay mode (the outputs of concurrent fires are committed in impulse load
//! order, and a failed event does not back off for a wall-clock while), and
//! the guests' clocks are frozen and their randomness seeded
//! ([`Determinism`]). Only the call durations differ between runs, so they
//! are kept out of the [`FireRecord`]s' rendering ([`golden`]).

pub mod golden;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::agent::{self, AgentOptions, LoadFailure};
use crate::config::Config;
use crate::engine::{Determinism, Engine, LoadError};
use crate::impulses::dispatch::{FireOutcome, FireRecord};
use crate::impulses::{Dispatcher, DispatcherConfig, ImpulseStats, Rejected};
use crate::model::Sample;
use crate::store::{Store, StoreError};

/// How many samples a replay's scratch store holds in memory before it writes
/// them to its file in one commit (see [`Store::hold_back_writes`]).
const HELD_SAMPLES: usize = 65_536;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The scratch directory could not be created.
    #[error("cannot create the replay's scratch store: {0}")]
    Scratch(std::io::Error),
    /// The scratch store failed.
    #[error("the replay's scratch store failed: {0}")]
    Store(#[from] StoreError),
    /// The engine could not be set up.
    #[error(transparent)]
    Engine(#[from] LoadError),
    /// An impulse did not load: a replay runs all of them or none.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadFailure>),
    /// Nothing to replay through.
    #[error("no enabled impulse to replay through")]
    NoImpulse,
}

/// Impulses loaded over a scratch store, ready to replay samples.
pub struct Replay {
    dispatcher: Dispatcher,
    records: Receiver<FireRecord>,
    /// Kept alive while instances may exist.
    _engine: Engine,
    /// The scratch store's directory, removed on drop.
    _scratch: tempfile::TempDir,
}

/// What a replay did, besides its fires.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayReport {
    /// Source samples stored.
    pub accepted: usize,
    /// Source samples refused, with reasons.
    pub rejected: Vec<Rejected>,
}

impl Replay {
    /// Load the enabled impulses of `config` (its limits, username and
    /// `max_chain_depth` apply) over a fresh scratch store, with the guests'
    /// clocks and randomness fixed by `determinism`. Every impulse must load.
    pub fn open(
        config: &Config,
        options: &AgentOptions,
        determinism: Determinism,
    ) -> Result<Replay, ReplayError> {
        let scratch = tempfile::Builder::new()
            .prefix("komlogd-replay-")
            .tempdir()
            .map_err(ReplayError::Scratch)?;
        let mut store = Store::open(&scratch.path().join("replay.redb"))?;
        // Nothing reads the scratch file but the windows that reach past the
        // cache: one commit per time would cost more than the fires.
        store.hold_back_writes(HELD_SAMPLES);
        let engine = Engine::new(&crate::engine::EngineConfig {
            determinism: Some(determinism),
            ..agent::engine_config(config, options)
        })?;
        let mut dispatcher = Dispatcher::new(
            store,
            DispatcherConfig {
                username: config.username.clone(),
                max_chain_depth: config.max_chain_depth,
                queue_for_server: false,
                replay: true,
            },
        );
        let (tap, records) = mpsc::channel();
        dispatcher.set_fire_tap(tap);
        let mut failures = Vec::new();
        for block in config.impulses.iter().filter(|b| b.enabled) {
            match agent::load_impulse(&engine, block, &config.limits) {
                Ok(version) => {
                    dispatcher.add_impulse(version.spec, version.module, version.instance);
                }
                Err(error) => failures.push(LoadFailure {
                    name: block.name.clone(),
                    error,
                }),
            }
        }
        if !failures.is_empty() {
            return Err(ReplayError::Load(failures));
        }
        if dispatcher.specs().next().is_none() {
            return Err(ReplayError::NoImpulse);
        }
        Ok(Replay {
            dispatcher,
            records,
            _engine: engine,
            _scratch: scratch,
        })
    }

    /// Replay `samples` in timestamp order (a stable sort: samples of one
    /// time keep their order, and the last of one uri and time wins, as in
    /// one upload), showing every fire to `each` as it completes.
    pub fn run(
        &mut self,
        mut samples: Vec<Sample>,
        mut each: impl FnMut(FireRecord),
    ) -> Result<ReplayReport, ReplayError> {
        samples.sort_by_key(|s| s.ts);
        let mut report = ReplayReport::default();
        let mut rest = samples.into_iter().peekable();
        while let Some(first) = rest.next() {
            let ts = first.ts;
            let mut batch = vec![first];
            while let Some(next) = rest.next_if(|s| s.ts == ts) {
                batch.push(next);
            }
            let done = self.dispatcher.replay(batch)?;
            report.accepted += done.accepted;
            report.rejected.extend(done.rejected);
            for record in self.records.try_iter() {
                each(record);
            }
        }
        Ok(report)
    }

    /// The impulses' counters, in load order.
    pub fn stats(&self) -> Vec<(Arc<str>, ImpulseStats)> {
        self.dispatcher.stats()
    }

    /// Stop the impulses' threads and drop the scratch store.
    pub fn close(self) -> Result<(), ReplayError> {
        self.dispatcher.close()?;
        Ok(())
    }
}

/// One impulse's totals over a replay.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImpulseSummary {
    /// Calls that returned (ok or err).
    pub fires: u64,
    /// Fires not called, by reason.
    pub skips: BTreeMap<&'static str, u64>,
    /// Calls that returned `err`.
    pub guest_errors: u64,
    /// Fires whose call failed twice, by kind.
    pub failures: BTreeMap<String, u64>,
    /// Outputs written.
    pub outputs: u64,
    /// Outputs not written, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Median time in the guest of a called fire.
    pub call_p50: Duration,
    /// 99th percentile of the same.
    pub call_p99: Duration,
    /// The most linear memory one of its instances used, bytes.
    pub memory_high_water: u64,
}

/// Totals per impulse (in `order`) from the fire records of a replay and the
/// impulses' counters.
pub fn summarize(
    records: &[FireRecord],
    stats: &[(Arc<str>, ImpulseStats)],
) -> Vec<(Arc<str>, ImpulseSummary)> {
    stats
        .iter()
        .map(|(name, stats)| {
            let mut summary = ImpulseSummary {
                memory_high_water: stats.memory_high_water,
                ..ImpulseSummary::default()
            };
            let mut calls = Vec::new();
            for r in records.iter().filter(|r| r.impulse == *name) {
                match &r.outcome {
                    FireOutcome::Returned => summary.fires += 1,
                    FireOutcome::GuestError(_) => {
                        summary.fires += 1;
                        summary.guest_errors += 1;
                    }
                    FireOutcome::Failed { kind, .. } => {
                        *summary.failures.entry(kind.clone()).or_default() += 1;
                    }
                    FireOutcome::Skipped(why) => *summary.skips.entry(why).or_default() += 1,
                }
                if !matches!(r.outcome, FireOutcome::Skipped(_)) {
                    calls.push(r.call);
                }
                summary.outputs += r.outputs.len() as u64;
                for d in &r.dropped {
                    *summary.dropped.entry(d.reason.clone()).or_default() += 1;
                }
            }
            calls.sort_unstable();
            summary.call_p50 = percentile(&calls, 50);
            summary.call_p99 = percentile(&calls, 99);
            (name.clone(), summary)
        })
        .collect()
}

/// The `p`th percentile (nearest rank) of sorted `values`; zero when empty.
fn percentile(values: &[Duration], p: usize) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let values: Vec<Duration> = (1..=200).map(ms).collect();
        assert_eq!(percentile(&values, 50), ms(100));
        assert_eq!(percentile(&values, 99), ms(198));
        assert_eq!(percentile(&[ms(7)], 99), ms(7));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
