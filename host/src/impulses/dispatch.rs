//! The dispatcher: the straight line source → store → impulses → validation → store.
//!
//! [`Dispatcher::ingest`] takes a batch of samples from a source, writes it to the
//! store in one durable commit, and then, for each distinct timestamp in the batch
//! (ascending), fires every impulse subscribed to any uri written at that
//! timestamp **once**, with `ts` = that timestamp, `updated` = its uris written in
//! that group, `others` = its other uris, and a window cut relative to `ts`.
//! Valid outputs form a new batch that goes through the same line.
//!
//! **Loop rule.** Every sample carries a chain depth: 0 when it comes from a source,
//! one more than its trigger's when an impulse wrote it. Samples at depth
//! `max_chain_depth` are stored but fire nothing (counted as `chain_cut` on the
//! impulse that wrote them, and logged). So an impulse that writes to a uri it
//! subscribes to — directly or through a chain — runs at most `max_chain_depth`
//! times per source sample and cannot spin forever.
//!
//! **min_exec_delta.** A fire whose timestamp is closer than `min_exec_delta` to the
//! timestamp of the impulse's previous run (before or after it) is skipped and
//! counted. Using sample timestamps rather than the wall clock keeps replays exact.
//!
//! Impulses run one at a time on the caller's thread, in subscription order; a
//! failed call (trap, deadline, memory cap) discards the instance, is logged with
//! the impulse's name and reason, and the next fire gets a fresh instance.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::engine::bindings::Context;
use crate::engine::{Instance, Module};
use crate::model::{Sample, SampleError, Uri, Username};
use crate::store::{DataReqs, Store, StoreError};

use super::output;
use super::spec::ImpulseSpec;
use super::stats::ImpulseStats;
use super::window::WindowEncoder;

/// Agent-wide dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The agent's own username: `username:uri` is a local write. None: every
    /// `user:uri` is remote.
    pub username: Option<Username>,
    /// How many impulse hops a sample may pass before it stops firing impulses.
    pub max_chain_depth: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            username: None,
            max_chain_depth: 8,
        }
    }
}

/// A source sample that was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The uri as given.
    pub uri: String,
    /// Its timestamp.
    pub ts: i64,
    /// Why.
    pub reason: SampleError,
}

/// What one [`Dispatcher::ingest`] call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Source samples stored.
    pub accepted: usize,
    /// Source samples refused, with reasons.
    pub rejected: Vec<Rejected>,
    /// Impulse calls made (including those that failed).
    pub fires: u64,
    /// Impulse output samples stored.
    pub outputs: u64,
}

struct Slot {
    spec: ImpulseSpec,
    module: Module,
    instance: Option<Instance>,
    /// Store keys of the subscribed uris, in subscription order.
    keys: Vec<String>,
    /// The subscribed uris as written, in the same order.
    uri_texts: Vec<String>,
    last_run_ts: Option<i64>,
    stats: ImpulseStats,
    ctx: Context,
}

struct Pending {
    samples: Vec<Sample>,
    depth: u32,
    origin: Option<usize>,
}

/// Runs impulses over a store. See the module documentation for the semantics.
pub struct Dispatcher {
    store: Store,
    config: DispatcherConfig,
    slots: Vec<Slot>,
    /// Store key → indexes of the slots subscribed to it.
    index: HashMap<String, Vec<usize>>,
    encoder: WindowEncoder,
    queue: VecDeque<Pending>,
}

impl Dispatcher {
    /// A dispatcher over `store` with no impulses yet.
    pub fn new(store: Store, config: DispatcherConfig) -> Self {
        Dispatcher {
            store,
            config,
            slots: Vec::new(),
            index: HashMap::new(),
            encoder: WindowEncoder::new(),
            queue: VecDeque::new(),
        }
    }

    /// Add an impulse. `instance` may be the warm instance that answered `describe()`.
    pub fn add_impulse(&mut self, spec: ImpulseSpec, module: Module, instance: Option<Instance>) {
        let me = self.config.username.as_ref();
        let keys: Vec<String> = spec.uris.iter().map(|u| u.store_key(me)).collect();
        let uri_texts = spec.uris.iter().map(Uri::to_string).collect();
        let idx = self.slots.len();
        for key in &keys {
            let subscribers = self.index.entry(key.clone()).or_default();
            if !subscribers.contains(&idx) {
                subscribers.push(idx);
            }
        }
        let ctx = Context {
            ts: 0,
            updated: Vec::new(),
            others: Vec::new(),
            params: spec.params.clone(),
            window: Vec::new(),
        };
        self.slots.push(Slot {
            spec,
            module,
            instance,
            keys: keys.clone(),
            uri_texts,
            last_run_ts: None,
            stats: ImpulseStats::default(),
            ctx,
        });
        for key in keys {
            let reqs = self.retention_for(&key);
            self.store.set_retention(&key, reqs);
        }
    }

    /// The largest data requirement over the impulses subscribed to `key`.
    fn retention_for(&self, key: &str) -> DataReqs {
        let mut out = DataReqs::default();
        for &i in self.index.get(key).map(Vec::as_slice).unwrap_or(&[]) {
            let r = self.slots[i].spec.data_reqs;
            out.past_delta_us = out.past_delta_us.max(r.past_delta_us);
            out.past_count = out.past_count.max(r.past_count);
        }
        out
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The loaded impulses and their counters, in load order.
    pub fn stats(&self) -> Vec<(Arc<str>, ImpulseStats)> {
        self.slots
            .iter()
            .map(|s| (s.spec.name.clone(), s.stats.clone()))
            .collect()
    }

    /// The specs of the loaded impulses, in load order.
    pub fn specs(&self) -> impl Iterator<Item = &ImpulseSpec> {
        self.slots.iter().map(|s| &s.spec)
    }

    /// Write a batch of source samples (local writes) and run every impulse it
    /// fires, and everything their outputs fire, to completion.
    ///
    /// Source samples are validated like impulse outputs: a malformed uri, an
    /// invalid value, a write to another user's uri or a kind change is refused
    /// alone and reported; the rest is stored.
    pub fn ingest(&mut self, samples: Vec<Sample>) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let me = self.config.username.clone();
        let mut valid = Vec::with_capacity(samples.len());
        for sample in samples {
            let (uri, ts) = (sample.uri.clone(), sample.ts);
            match output::check_local_write(sample, me.as_ref()) {
                Ok(sample) => valid.push(sample),
                Err(reason) => report.rejected.push(Rejected { uri, ts, reason }),
            }
        }
        self.queue.push_back(Pending {
            samples: valid,
            depth: 0,
            origin: None,
        });
        while let Some(pending) = self.queue.pop_front() {
            self.process(pending, &mut report)?;
        }
        Ok(report)
    }

    /// Fire the impulses subscribed to `uri` as if a sample had just arrived there
    /// at `ts`, over the data already stored, without writing anything first.
    /// Their outputs go through the usual line. Useful to re-run impulses over
    /// recorded data (backfill) and to measure a fire alone.
    pub fn refire(&mut self, uri: &str, ts: i64) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let key = match Uri::parse(uri) {
            Ok(u) => u.store_key(self.config.username.as_ref()),
            Err(e) => {
                report.rejected.push(Rejected {
                    uri: uri.to_owned(),
                    ts,
                    reason: e.into(),
                });
                return Ok(report);
            }
        };
        let subscribers = self.index.get(&key).cloned().unwrap_or_default();
        for i in subscribers {
            report.fires += u64::from(self.fire(i, ts, &[key.as_str()], 0)?);
        }
        while let Some(pending) = self.queue.pop_front() {
            self.process(pending, &mut report)?;
        }
        Ok(report)
    }

    fn process(
        &mut self,
        mut pending: Pending,
        report: &mut IngestReport,
    ) -> Result<(), StoreError> {
        if pending.samples.is_empty() {
            return Ok(());
        }
        pending.samples.sort_by_key(|s| s.ts);
        let outcomes = self.store.append(&pending.samples)?;
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        for (sample, outcome) in pending.samples.iter().zip(outcomes) {
            match (outcome, pending.origin) {
                (Ok(()), origin) => {
                    match origin {
                        Some(o) => {
                            self.slots[o].stats.outputs += 1;
                            report.outputs += 1;
                        }
                        None => report.accepted += 1,
                    }
                    let subscribers = match self.index.get(&sample.uri) {
                        Some(s) => s,
                        None => continue,
                    };
                    match groups.last_mut() {
                        Some((ts, fired)) if *ts == sample.ts => {
                            for &i in subscribers {
                                if !fired.contains(&i) {
                                    fired.push(i);
                                }
                            }
                        }
                        _ => groups.push((sample.ts, subscribers.clone())),
                    }
                }
                (Err(reason), Some(o)) => {
                    let slot = &mut self.slots[o];
                    slot.stats.invalid_outputs += 1;
                    tracing::warn!(impulse = &*slot.spec.name, uri = %sample.uri, "output dropped: {reason}");
                    slot.stats.last_error =
                        Some(format!("output to {} dropped: {reason}", sample.uri));
                }
                (Err(reason), None) => report.rejected.push(Rejected {
                    uri: sample.uri.clone(),
                    ts: sample.ts,
                    reason,
                }),
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        if pending.depth >= self.config.max_chain_depth {
            if let Some(o) = pending.origin {
                let slot = &mut self.slots[o];
                slot.stats.chain_cut += 1;
                tracing::warn!(
                    impulse = &*slot.spec.name,
                    depth = pending.depth,
                    "outputs stored but not fired further: chain depth limit {} reached (an impulse loop?)",
                    self.config.max_chain_depth
                );
            }
            return Ok(());
        }
        for (ts, mut fired) in groups {
            fired.sort_unstable();
            // The samples are sorted by ts: this group is a contiguous range.
            let start = pending.samples.partition_point(|s| s.ts < ts);
            let end = pending.samples.partition_point(|s| s.ts <= ts);
            let batch: Vec<&str> = pending.samples[start..end]
                .iter()
                .map(|s| s.uri.as_str())
                .collect();
            for i in fired {
                report.fires += u64::from(self.fire(i, ts, &batch, pending.depth)?);
            }
        }
        Ok(())
    }

    /// Fire one impulse; returns whether it was called.
    fn fire(&mut self, i: usize, ts: i64, batch: &[&str], depth: u32) -> Result<bool, StoreError> {
        let slot = &mut self.slots[i];
        if let (Some(delta), Some(last)) = (slot.spec.min_exec_delta_us, slot.last_run_ts)
            && ts.abs_diff(last) < delta
        {
            slot.stats.skips += 1;
            tracing::debug!(
                impulse = &*slot.spec.name,
                ts,
                last,
                "skipped: within min_exec_delta"
            );
            return Ok(false);
        }
        slot.last_run_ts = Some(ts);
        let ctx = &mut slot.ctx;
        ctx.ts = ts;
        ctx.updated.clear();
        ctx.others.clear();
        for (key, text) in slot.keys.iter().zip(&slot.uri_texts) {
            if batch.contains(&key.as_str()) {
                ctx.updated.push(text.clone());
            } else {
                ctx.others.push(text.clone());
            }
            for entry in self.store.window(key, ts, slot.spec.data_reqs)? {
                self.encoder.push(text, entry.ts, &entry.value);
            }
        }
        if let Err(e) = self.encoder.finish_into(&mut ctx.window) {
            // Cannot happen with the fixed schema; refuse the fire rather than panic.
            tracing::error!(impulse = &*slot.spec.name, "cannot encode the window: {e}");
            return Ok(false);
        }
        if slot.instance.is_none() {
            match slot
                .module
                .instantiate(slot.spec.name.clone(), slot.spec.limits)
            {
                Ok(instance) => slot.instance = Some(instance),
                Err(e) => {
                    record_failure(slot, &e);
                    return Ok(true);
                }
            }
        }
        let Some(instance) = slot.instance.as_mut() else {
            return Ok(false);
        };
        let result = instance.on_update(&slot.ctx);
        slot.stats.memory_high_water = instance.memory_high_water() as u64;
        let returned = match result {
            Ok(Ok(samples)) => {
                slot.stats.fires += 1;
                samples
            }
            Ok(Err(message)) => {
                slot.stats.fires += 1;
                slot.stats.guest_errors += 1;
                tracing::warn!(
                    impulse = &*slot.spec.name,
                    ts,
                    "impulse returned an error: {message}"
                );
                slot.stats.last_error = Some(format!("error at ts {ts}: {message}"));
                return Ok(true);
            }
            Err(e) => {
                slot.instance = None;
                record_failure(slot, &e);
                return Ok(true);
            }
        };
        let me = self.config.username.as_ref();
        let mut outputs = Vec::with_capacity(returned.len());
        for sample in returned {
            let uri = sample.uri.clone();
            match output::accept(sample, me) {
                Ok(s) => outputs.push(s),
                Err(SampleError::RemoteWrite(u)) => {
                    slot.stats.remote_writes_dropped += 1;
                    tracing::info!(impulse = &*slot.spec.name, uri = %u, "write to another user's uri dropped: remote uris are read-only");
                }
                Err(reason) => {
                    slot.stats.invalid_outputs += 1;
                    tracing::warn!(impulse = &*slot.spec.name, uri = %uri, "output dropped: {reason}");
                    slot.stats.last_error = Some(format!("output to {uri} dropped: {reason}"));
                }
            }
        }
        if !outputs.is_empty() {
            self.queue.push_back(Pending {
                samples: outputs,
                depth: depth + 1,
                origin: Some(i),
            });
        }
        Ok(true)
    }
}

fn record_failure(slot: &mut Slot, e: &crate::engine::CallError) {
    *slot
        .stats
        .failures
        .entry(e.kind.as_str().to_owned())
        .or_default() += 1;
    tracing::error!(
        impulse = &*slot.spec.name,
        wasm = %slot.spec.module_path.display(),
        "impulse failed, instance discarded: {e}"
    );
    slot.stats.last_error = Some(e.to_string());
}
