//! The dispatcher: the straight line source → store → impulses → validation → store.
//!
//! Batches of samples (from [`Dispatcher::ingest`], or through an [`Inbox`] from
//! sources) are written to the store in one durable commit; then, for each
//! distinct timestamp in the batch (ascending), every impulse subscribed to any
//! uri written at that timestamp is fired **once**, with `ts` = that timestamp,
//! `updated` = its uris written in that group, `others` = its other uris, and a
//! window cut relative to `ts`. Valid outputs form a new batch that goes through
//! the same line.
//!
//! **Threads.** The dispatcher owns the store and cuts every window; each impulse
//! runs on its own worker thread ([`super::worker`]), so a slow, looping or failing
//! impulse delays nobody else. An impulse's fires run in the order they were
//! dispatched. Outputs that arrive together are committed together.
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
//! The previous run is kept in the store ([`Store::last_run`]): read when the
//! impulse is added, saved after each one-shot call ([`Dispatcher::ingest`],
//! [`Dispatcher::upload`], [`Dispatcher::refire`]) and when the dispatcher
//! closes, so one-shot `komlogd -u` runs and the agent skip by the same run.
//!
//! **Skips.** A worker backing off or disabled by the failure policy
//! ([`super::worker`]) says so through a gate: the dispatcher skips (and
//! counts) such fires before cutting their windows. The gate holds for the
//! version that closed it; fires sent after a swap go to the worker.
//!
//! **Queue limit.** The fires sent to a worker and not yet answered are
//! charged to its impulse (window, uris, bookkeeping); while they hold the
//! impulse's `queue` bytes, a new fire is dropped before its window is cut and
//! counted as `queue_full_skips`, so an impulse slower than its input sheds
//! load instead of taking the agent's memory.
//!
//! **Changes while running.** [`Control`] messages add, remove and swap impulses
//! between batches: events dispatched before a swap run on the old version, events
//! after it on the new one (see [`super::worker`]). Every change to the running
//! set passes through [`Dispatcher::apply`]; a watcher set with
//! [`Dispatcher::watch_specs`] is shown the new set once the messages received
//! together are handled (the agent hooks its uris at the server from it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::model::{Sample, SampleError, Uri, Username};
use crate::store::read::{ReadAnswer, ReadRequest};
use crate::store::{DataReqs, Outgoing, Store, StoreError};

use super::output;
use super::spec::ImpulseSpec;
use super::stats::{ImpulseStats, SharedStats, StatsBoard, lock};
use super::window::WindowEncoder;
use super::worker::{self, Done, FireJob, Job, SharedGate, Version, lock_gate};

/// How many batches may wait in the inbox before senders wait in turn.
const INBOX_CAPACITY: usize = 1024;
/// How many inbox messages are committed together at most.
const MAX_GROUP: usize = 256;
/// How many window buffers answered fires leave for reuse at most.
const MAX_SPARE_BUFFERS: usize = 64;

/// Agent-wide dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The agent's own username: `username:uri` is a local write. None: every
    /// `user:uri` is remote.
    pub username: Option<Username>,
    /// How many impulse hops a sample may pass before it stops firing impulses.
    pub max_chain_depth: u32,
    /// Connected mode: every local write (source samples and impulse outputs) is
    /// also put in the store's outbox, in the same commit, for the server.
    pub queue_for_server: bool,
    /// Replay mode (`komlogd impulse test`, over a scratch store): commits are
    /// not fsynced; a failed event does not back off (wall time means nothing
    /// at replay speed; `disable_after` still applies); and every impulse runs
    /// on the dispatcher's thread, the outputs of the fires of one wave
    /// committed together in impulse load order, so the same input gives the
    /// same fires in the same order.
    pub replay: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            username: None,
            max_chain_depth: 8,
            queue_for_server: false,
            replay: false,
        }
    }
}

/// Shown the specs of the loaded impulses, in load order, after the set changed.
pub type SpecsWatcher = Box<dyn FnMut(&[&ImpulseSpec]) + Send>;

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

/// What the dispatcher did: per [`Dispatcher::ingest`] call, or accumulated while serving.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Source samples stored (for [`Dispatcher::upload`], held ones included).
    pub accepted: usize,
    /// Of those, uploaded samples the store already held (see [`Dispatcher::upload`]).
    pub held: usize,
    /// Source samples refused, with reasons.
    pub rejected: Vec<Rejected>,
    /// Impulse calls made (including those that failed).
    pub fires: u64,
    /// Impulse output samples stored.
    pub outputs: u64,
}

/// A change to the running set of impulses.
pub enum Control {
    /// Start a new impulse (its name must not be in use).
    Add(Box<Version>),
    /// Replace the module and/or spec of the impulse of the same name.
    Swap(Box<Version>),
    /// Stop the impulse of this name once its queued fires are done.
    Remove(Arc<str>),
    /// A new version of this impulse was refused; the running one stays.
    Rejected {
        /// The impulse.
        name: Arc<str>,
        /// Why, as logged.
        reason: String,
    },
}

/// What became of an upload: stored durably, or refused sample by sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadReceipt {
    /// Samples stored (committed), held ones included.
    pub accepted: usize,
    /// Of those, samples the store already held: the same value at the same
    /// time (a retry of an upload that was stored). They are not stored, fired
    /// or queued for the server again.
    pub held: usize,
    /// Samples refused, with reasons.
    pub rejected: Vec<Rejected>,
}

/// Everything the dispatcher thread receives.
pub(crate) enum Msg {
    Samples(Vec<Sample>),
    /// Samples the server notified (other users' shared uris, or own uris written
    /// elsewhere), with the notification's `seq`: stored and fired, never queued
    /// for the server; the outputs of the impulses they fire answer that `seq`.
    Remote(Vec<Sample>, Option<[u8; 16]>),
    /// History from the server (request_data): stored like `Remote`, fires nothing.
    History(Vec<Sample>),
    Upload(Vec<Sample>, Sender<UploadReceipt>),
    /// A read of the store (`komlogd query` while the agent runs).
    Read(ReadRequest, Sender<ReadAnswer>),
    Done(Done),
    Control(Control),
    Stop,
}

/// The dispatcher is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the dispatcher has stopped")]
pub struct Closed;

/// A handle to send work to a dispatcher from other threads. Cheap to clone;
/// sending waits while the dispatcher's inbox is full.
#[derive(Clone)]
pub struct Inbox {
    tx: SyncSender<Msg>,
}

impl Inbox {
    /// Queue a batch of source samples.
    pub fn samples(&self, samples: Vec<Sample>) -> Result<(), Closed> {
        self.tx.send(Msg::Samples(samples)).map_err(|_| Closed)
    }

    /// Store a batch of source samples and wait until they are committed (the
    /// impulses they fire run afterwards). A sample the store already holds
    /// (the same value at the same time) is reported as accepted and `held`,
    /// and is not stored, fired or queued again. An error means the dispatcher
    /// stopped or could not store them (its log says why).
    pub fn upload(&self, samples: Vec<Sample>) -> Result<UploadReceipt, Closed> {
        let (reply, receipt) = mpsc::channel();
        self.tx
            .send(Msg::Upload(samples, reply))
            .map_err(|_| Closed)?;
        receipt.recv().map_err(|_| Closed)
    }

    /// Read the store as it is committed (what `komlogd query` shows); one read
    /// is bounded (see [`crate::store::read`]) so that ingestion waits little.
    /// A store failure is the answer's `error`.
    pub fn read(&self, request: ReadRequest) -> Result<ReadAnswer, Closed> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(Msg::Read(request, reply))
            .map_err(|_| Closed)?;
        answer.recv().map_err(|_| Closed)
    }

    /// Queue samples that came from the server in the notification `seq` (16
    /// bytes, when known). Each is stored unless the store already holds that
    /// value at that time, and fires the impulses like a source sample; none is
    /// sent back to the server. The outputs of the impulses they fire are sent
    /// as answers to `seq` (the message's `irt`).
    pub fn remote(&self, samples: Vec<Sample>, seq: Option<[u8; 16]>) -> Result<(), Closed> {
        self.tx.send(Msg::Remote(samples, seq)).map_err(|_| Closed)
    }

    /// [`Inbox::remote`] without waiting: the samples come back when the inbox is
    /// full or the dispatcher has stopped.
    pub fn try_remote(
        &self,
        samples: Vec<Sample>,
        seq: Option<[u8; 16]>,
    ) -> Result<(), Vec<Sample>> {
        match self.tx.try_send(Msg::Remote(samples, seq)) {
            Ok(()) => Ok(()),
            Err(
                TrySendError::Full(Msg::Remote(s, _))
                | TrySendError::Disconnected(Msg::Remote(s, _)),
            ) => Err(s),
            Err(_) => Err(Vec::new()),
        }
    }

    /// Queue history that came from the server: stored like [`Inbox::remote`]
    /// samples (values already held are skipped), but it fires nothing; it is there
    /// for the windows of later fires.
    pub fn history(&self, samples: Vec<Sample>) -> Result<(), Closed> {
        self.tx.send(Msg::History(samples)).map_err(|_| Closed)
    }

    /// Queue a change to the running impulses.
    pub fn control(&self, control: Control) -> Result<(), Closed> {
        self.tx.send(Msg::Control(control)).map_err(|_| Closed)
    }

    /// Ask [`Dispatcher::serve`] to finish what is queued and return.
    pub fn stop(&self) -> Result<(), Closed> {
        self.tx.send(Msg::Stop).map_err(|_| Closed)
    }
}

/// An impulse output, as stored: for observers of the line (tests, benchmarks).
#[derive(Debug, Clone)]
pub struct Tapped {
    /// The impulse that wrote it.
    pub impulse: Arc<str>,
    /// Hash of the module version that wrote it.
    pub version: Arc<str>,
    /// The sample.
    pub sample: Sample,
    /// When it was committed.
    pub at: Instant,
    /// When the impulse's call that returned it ended (its fire).
    pub fired_at: Instant,
}

/// One fire as a fire tap sees it ([`Dispatcher::set_fire_tap`]): what went
/// in and what came out. For replays (`komlogd impulse test`).
#[derive(Debug, Clone, PartialEq)]
pub struct FireRecord {
    /// The impulse.
    pub impulse: Arc<str>,
    /// The fire's timestamp.
    pub ts: i64,
    /// Impulse hops before it: 0 when a source sample fired it.
    pub depth: u32,
    /// Its uris written at `ts` (as subscribed).
    pub updated: Vec<String>,
    /// Its other uris.
    pub others: Vec<String>,
    /// Rows in its window, over all its uris.
    pub window_rows: usize,
    /// How it ended.
    pub outcome: FireOutcome,
    /// Outputs written, in the order returned.
    pub outputs: Vec<Sample>,
    /// Outputs not written, and why.
    pub dropped: Vec<DroppedOutput>,
    /// Time spent in the guest (both calls when it was retried).
    pub call: std::time::Duration,
}

/// How a fire ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// `on-update` returned samples (maybe none).
    Returned,
    /// `on-update` returned `err`.
    GuestError(String),
    /// The call failed twice (trap, deadline, memory cap, fuel, instantiation).
    Failed {
        /// The kind of failure (`trap`, `deadline`, …).
        kind: String,
        /// The failure.
        reason: String,
    },
    /// Not called: `min_exec_delta`, the failure policy or the queue limit.
    Skipped(&'static str),
}

/// An output that was not written.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedOutput {
    /// Its uri, as returned.
    pub uri: String,
    /// Its timestamp.
    pub ts: i64,
    /// Why.
    pub reason: String,
}

struct Slot {
    spec: ImpulseSpec,
    version: Arc<str>,
    /// Store keys of the subscribed uris, in subscription order.
    keys: Vec<String>,
    /// The subscribed uris as written, in the same order.
    uri_texts: Vec<String>,
    last_run_ts: Option<i64>,
    stats: SharedStats,
    /// Where its fires run.
    runner: Runner,
    /// What each fire sent and not yet answered holds, in bytes, oldest first
    /// (a worker answers its fires in order).
    waiting: VecDeque<usize>,
    /// Their sum.
    waiting_bytes: usize,
    /// Fires dropped since the queue last had room.
    dropping: u64,
    /// Which of its versions was sent last (0 for the first, +1 a swap).
    generation: u64,
    /// The fires its worker would skip (backing off, disabled).
    gate: SharedGate,
}

/// Where an impulse's fires run.
enum Runner {
    /// On its own thread (the agent).
    Thread {
        /// Its queue; dropping it ends the thread after the queued jobs.
        jobs: Sender<Job>,
        thread: Option<JoinHandle<()>>,
    },
    /// On the dispatcher's thread, as they are sent (replays).
    Inline(Box<worker::Worker>),
}

struct Pending {
    samples: Vec<Sample>,
    depth: u32,
    /// The slot and version that wrote them; None for source samples.
    origin: Option<(usize, Arc<str>)>,
    /// When the call that wrote them returned (impulse outputs).
    returned_at: Option<Instant>,
    /// For an upload: its receipt so far, and where to send it once committed.
    upload: Option<(UploadReceipt, Sender<UploadReceipt>)>,
    /// Put in the outbox for the server (local writes in connected mode).
    queued: bool,
    /// Fire the impulses subscribed to these samples (false for history).
    fires: bool,
    /// Samples the server sent (notifications, history).
    from_server: bool,
    /// The fire record (in `Dispatcher::records`) of the fire that wrote them.
    record: Option<usize>,
    /// The server notification these samples are, or answer: the `seq` that
    /// the outputs of the impulses they fire answer (kept for one hop).
    answers: Option<[u8; 16]>,
}

/// Runs impulses over a store. See the module documentation for the semantics.
pub struct Dispatcher {
    store: Store,
    config: DispatcherConfig,
    /// By slot number; a removed impulse leaves `None` (numbers are never reused).
    slots: Vec<Option<Slot>>,
    /// Store key → slots subscribed to it.
    index: HashMap<String, Vec<usize>>,
    encoder: WindowEncoder,
    inbox_tx: SyncSender<Msg>,
    inbox_rx: Receiver<Msg>,
    /// Fires sent to workers and not yet answered.
    in_flight: usize,
    report: IngestReport,
    board: StatsBoard,
    buffers: Vec<Vec<u8>>,
    stopping: bool,
    tap: Option<Sender<Tapped>>,
    /// Woken after a commit that put samples in the outbox.
    outbox_signal: Option<Arc<tokio::sync::Notify>>,
    /// Samples from the server not stored again because the store held them.
    remote_duplicates: u64,
    /// Shown the running set after it changes.
    specs_watcher: Option<SpecsWatcher>,
    /// The running set changed since the watcher last saw it.
    specs_changed: bool,
    /// An impulse with a `min_exec_delta` ran since the last runs were saved.
    last_runs_changed: bool,
    /// Shown every fire, once its outputs are committed.
    fire_tap: Option<Sender<FireRecord>>,
    /// Fire records whose outputs are not committed yet.
    records: Vec<FireRecord>,
    /// Answers of the fires run inline, not taken yet.
    inline_done: Vec<Done>,
}

impl Dispatcher {
    /// A dispatcher over `store` with no impulses yet.
    pub fn new(store: Store, config: DispatcherConfig) -> Self {
        let (inbox_tx, inbox_rx) = mpsc::sync_channel(INBOX_CAPACITY);
        Dispatcher {
            store,
            config,
            slots: Vec::new(),
            index: HashMap::new(),
            encoder: WindowEncoder::new(),
            inbox_tx,
            inbox_rx,
            in_flight: 0,
            report: IngestReport::default(),
            board: StatsBoard::default(),
            buffers: Vec::new(),
            stopping: false,
            tap: None,
            outbox_signal: None,
            remote_duplicates: 0,
            specs_watcher: None,
            specs_changed: false,
            last_runs_changed: false,
            fire_tap: None,
            records: Vec::new(),
            inline_done: Vec::new(),
        }
    }

    /// A handle for sending samples and changes from other threads.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            tx: self.inbox_tx.clone(),
        }
    }

    /// The live stats of every impulse, readable from any thread.
    pub fn board(&self) -> StatsBoard {
        self.board.clone()
    }

    /// Send every stored impulse output to `tap` from now on.
    pub fn set_tap(&mut self, tap: Sender<Tapped>) {
        self.tap = Some(tap);
    }

    /// Wake `signal` after every commit that puts samples in the outbox.
    pub fn set_outbox_signal(&mut self, signal: Arc<tokio::sync::Notify>) {
        self.outbox_signal = Some(signal);
    }

    /// Show `watcher` the loaded impulses' specs now, and again after every
    /// change to the set while serving (once per group of inbox messages
    /// handled together).
    pub fn watch_specs(&mut self, mut watcher: SpecsWatcher) {
        watcher(&self.specs().collect::<Vec<_>>());
        self.specs_watcher = Some(watcher);
        self.specs_changed = false;
    }

    /// Show the watcher the running set if it changed.
    fn tell_specs(&mut self) {
        if !std::mem::take(&mut self.specs_changed) {
            return;
        }
        if let Some(mut watcher) = self.specs_watcher.take() {
            watcher(&self.specs().collect::<Vec<_>>());
            self.specs_watcher = Some(watcher);
        }
    }

    /// Samples from the server that were not stored again (already held).
    pub fn remote_duplicates(&self) -> u64 {
        self.remote_duplicates
    }

    /// Add an impulse. `instance` may be the warm instance that answered `describe()`.
    pub fn add_impulse(
        &mut self,
        spec: ImpulseSpec,
        module: crate::engine::Module,
        instance: Option<crate::engine::Instance>,
    ) {
        self.apply(Control::Add(Box::new(Version {
            spec,
            module,
            instance,
        })));
    }

    /// Apply a change to the running impulses now (see [`Control`]).
    pub fn apply(&mut self, control: Control) {
        match control {
            Control::Add(version) => {
                self.add(*version);
                self.specs_changed = true;
            }
            Control::Swap(version) => {
                self.swap(*version);
                self.specs_changed = true;
            }
            Control::Remove(name) => {
                self.remove(&name);
                self.specs_changed = true;
            }
            Control::Rejected { name, reason } => {
                if let Some(slot) = self.slot_named(&name) {
                    let mut cell = lock(&slot.stats);
                    cell.stats().rejected_versions += 1;
                    cell.stats().last_error = Some(reason);
                }
            }
        }
    }

    fn slot_named(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().flatten().find(|s| &*s.spec.name == name)
    }

    fn add(&mut self, version: Version) {
        let name = version.spec.name.clone();
        if self.slot_named(&name).is_some() {
            tracing::error!(
                impulse = &*name,
                "an impulse of this name is already running; not added"
            );
            return;
        }
        let i = self.slots.len();
        let stats = SharedStats::default();
        let gate = SharedGate::default();
        let spec = version.spec.clone();
        let hash: Arc<str> = Arc::from(version.module.hash());
        let rules = worker::FireRules {
            username: self.config.username.clone(),
            backs_off: !self.config.replay,
        };
        let runner = if self.config.replay {
            Runner::Inline(Box::new(worker::Worker::new(
                i,
                version,
                stats.clone(),
                gate.clone(),
                rules,
            )))
        } else {
            let (jobs, jobs_rx) = mpsc::channel();
            let thread = worker::spawn(
                i,
                version,
                stats.clone(),
                gate.clone(),
                rules,
                jobs_rx,
                self.inbox_tx.clone(),
            );
            match thread {
                Ok(t) => Runner::Thread {
                    jobs,
                    thread: Some(t),
                },
                Err(e) => {
                    tracing::error!(impulse = &*name, "cannot start the impulse's thread: {e}");
                    return;
                }
            }
        };
        self.board.insert(name, stats.clone());
        let (keys, uri_texts) = self.keys_of(&spec);
        let last_run_ts = self.saved_last_run(&spec);
        self.slots.push(Some(Slot {
            spec,
            version: hash,
            keys: keys.clone(),
            uri_texts,
            last_run_ts,
            stats,
            runner,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            dropping: 0,
            generation: 0,
            gate,
        }));
        self.subscribe(i, &keys);
    }

    fn swap(&mut self, version: Version) {
        let name = version.spec.name.clone();
        let Some(i) = self.slot_index(&name) else {
            tracing::warn!(
                impulse = &*name,
                "no running impulse of this name to swap; adding it"
            );
            return self.add(version);
        };
        let (keys, uri_texts) = self.keys_of(&version.spec);
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        let old_keys = std::mem::replace(&mut slot.keys, keys.clone());
        slot.uri_texts = uri_texts;
        slot.spec = version.spec.clone();
        slot.version = Arc::from(version.module.hash());
        // A send fails only if the worker died; the next fire would fail the same way.
        slot.generation += 1;
        let swap = Job::Swap(Box::new(version), slot.generation);
        match &mut slot.runner {
            Runner::Thread { jobs, .. } => {
                let _ = jobs.send(swap);
            }
            Runner::Inline(worker) => {
                let _ = worker.run(swap);
            }
        }
        self.unsubscribe(i, &old_keys);
        self.subscribe(i, &keys);
    }

    fn remove(&mut self, name: &str) {
        let Some(i) = self.slot_index(name) else {
            return;
        };
        if let Some(slot) = self.slots[i].take() {
            self.unsubscribe(i, &slot.keys);
            self.board.remove(name);
            tracing::info!(impulse = name, "impulse removed");
            // Dropping `slot.jobs` ends the worker after its queued fires.
        }
    }

    fn slot_index(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| &*s.spec.name == name))
    }

    fn keys_of(&self, spec: &ImpulseSpec) -> (Vec<String>, Vec<String>) {
        let me = self.config.username.as_ref();
        let keys = spec.uris.iter().map(|u| u.store_key(me)).collect();
        let texts = spec.uris.iter().map(Uri::to_string).collect();
        (keys, texts)
    }

    fn subscribe(&mut self, i: usize, keys: &[String]) {
        for key in keys {
            let subscribers = self.index.entry(key.clone()).or_default();
            if !subscribers.contains(&i) {
                subscribers.push(i);
                subscribers.sort_unstable();
            }
        }
        for key in keys {
            let reqs = self.retention_for(key);
            self.store.set_retention(key, reqs);
        }
    }

    fn unsubscribe(&mut self, i: usize, keys: &[String]) {
        for key in keys {
            if let Some(subscribers) = self.index.get_mut(key) {
                subscribers.retain(|&s| s != i);
                if subscribers.is_empty() {
                    self.index.remove(key);
                    self.store.clear_retention(key);
                    continue;
                }
            }
            let reqs = self.retention_for(key);
            self.store.set_retention(key, reqs);
        }
    }

    /// The largest data requirement over the impulses subscribed to `key`.
    fn retention_for(&self, key: &str) -> DataReqs {
        let mut out = DataReqs::default();
        for &i in self.index.get(key).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(slot) = &self.slots[i] {
                out = out.union(slot.spec.data_reqs);
            }
        }
        out
    }

    /// Show every fire to `tap` once its outputs are committed: for replays,
    /// where it costs a copy of each fire's inputs and outputs.
    pub fn set_fire_tap(&mut self, tap: Sender<FireRecord>) {
        self.fire_tap = Some(tap);
    }

    /// Send the fire records whose outputs are committed to the fire tap.
    fn flush_records(&mut self) {
        if let Some(tap) = &self.fire_tap {
            for record in self.records.drain(..) {
                let _ = tap.send(record);
            }
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The loaded impulses and their counters, in load order.
    pub fn stats(&self) -> Vec<(Arc<str>, ImpulseStats)> {
        self.board.snapshot()
    }

    /// The specs of the loaded impulses, in load order.
    pub fn specs(&self) -> impl Iterator<Item = &ImpulseSpec> {
        self.slots.iter().flatten().map(|s| &s.spec)
    }

    /// Write a batch of source samples (local writes) and run every impulse it
    /// fires, and everything their outputs fire, to completion.
    ///
    /// Source samples are validated like impulse outputs: a malformed uri, an
    /// invalid value, a write to another user's uri or a kind change is refused
    /// alone and reported; the rest is stored.
    pub fn ingest(&mut self, samples: Vec<Sample>) -> Result<IngestReport, StoreError> {
        self.report = IngestReport::default();
        let pending = self.validate_source(samples);
        self.process(vec![pending])?;
        self.settle()?;
        Ok(std::mem::take(&mut self.report))
    }

    /// [`Dispatcher::ingest`] for an upload (`komlogd -u`): a sample the store
    /// already holds — the same value at the same time, as when an upload whose
    /// answer was lost is retried — counts as accepted (and `held`) but is not
    /// stored, fired or queued for the server again. The control socket's
    /// uploads ([`Inbox::upload`]) follow the same rule.
    pub fn upload(&mut self, samples: Vec<Sample>) -> Result<IngestReport, StoreError> {
        self.upload_firing(samples, true)
    }

    /// [`Dispatcher::upload`] that fires nothing: the samples are validated,
    /// stored and (in connected mode) queued for the server like an upload's,
    /// but no impulse fires for them (`komlogd import --no-fire`).
    pub fn upload_quietly(&mut self, samples: Vec<Sample>) -> Result<IngestReport, StoreError> {
        self.upload_firing(samples, false)
    }

    fn upload_firing(
        &mut self,
        samples: Vec<Sample>,
        fires: bool,
    ) -> Result<IngestReport, StoreError> {
        self.report = IngestReport::default();
        let mut pending = self.validate_source(samples);
        pending.fires = fires;
        let held = self.drop_held(&mut pending)?;
        self.process(vec![pending])?;
        self.settle()?;
        let mut report = std::mem::take(&mut self.report);
        report.accepted += held;
        report.held = held;
        Ok(report)
    }

    /// Replay mode: a batch of recorded samples run to completion, like
    /// [`Dispatcher::ingest`], except that samples of other users' uris
    /// (`user:uri`) are taken as the server would have sent them (stored,
    /// firing the impulses subscribed to them) instead of refused as writes.
    pub fn replay(&mut self, samples: Vec<Sample>) -> Result<IngestReport, StoreError> {
        self.report = IngestReport::default();
        let me = self.config.username.clone();
        let (local, remote): (Vec<Sample>, Vec<Sample>) = samples
            .into_iter()
            .partition(|s| Uri::parse(&s.uri).map_or(true, |uri| !uri.is_remote_for(me.as_ref())));
        let local = self.validate_source(local);
        let remote = self.validate_remote(remote, true)?;
        self.process(vec![local, remote])?;
        self.settle()?;
        Ok(std::mem::take(&mut self.report))
    }

    /// Take out of an upload's valid samples those the store already holds
    /// (the same value at the same time); returns how many.
    fn drop_held(&mut self, pending: &mut Pending) -> Result<usize, StoreError> {
        let before = pending.samples.len();
        let mut kept = Vec::with_capacity(before);
        for sample in std::mem::take(&mut pending.samples) {
            if !self.store.holds(&sample.uri, sample.ts, &sample.value)? {
                kept.push(sample);
            }
        }
        pending.samples = kept;
        Ok(before - pending.samples.len())
    }

    /// Fire the impulses subscribed to `uri` as if a sample had just arrived there
    /// at `ts`, over the data already stored, without writing anything first.
    /// Their outputs go through the usual line. Useful to re-run impulses over
    /// recorded data (backfill) and to measure a fire alone.
    pub fn refire(&mut self, uri: &str, ts: i64) -> Result<IngestReport, StoreError> {
        self.report = IngestReport::default();
        let key = match Uri::parse(uri) {
            Ok(u) => u.store_key(self.config.username.as_ref()),
            Err(e) => {
                self.report.rejected.push(Rejected {
                    uri: uri.to_owned(),
                    ts,
                    reason: e.into(),
                });
                return Ok(std::mem::take(&mut self.report));
            }
        };
        let subscribers = self.index.get(&key).cloned().unwrap_or_default();
        for i in subscribers {
            self.fire(i, ts, &[key.as_str()], 0, None)?;
        }
        self.settle()?;
        Ok(std::mem::take(&mut self.report))
    }

    /// Handle inbox messages until every fire sent has been answered and its
    /// outputs processed, then save the impulses' last runs.
    fn settle(&mut self) -> Result<(), StoreError> {
        // Replays answer every fire inline; the agent's workers through the inbox.
        while !self.inline_done.is_empty() {
            self.next_wave()?;
        }
        while self.in_flight > 0 {
            self.pump(true)?;
        }
        self.flush_records();
        self.save_last_runs();
        Ok(())
    }

    /// Replay mode: take the answers of the fires run inline, commit their
    /// outputs together, in impulse load order (each impulse's in the order it
    /// fired), and fire what they fire: the next wave.
    fn next_wave(&mut self) -> Result<(), StoreError> {
        let mut answers = std::mem::take(&mut self.inline_done);
        // Stable: an impulse's fires keep their order.
        answers.sort_by_key(|done| done.slot);
        let mut pendings = Vec::with_capacity(answers.len());
        for done in answers {
            self.take(Msg::Done(done), &mut pendings)?;
        }
        self.process(pendings)
    }

    /// The last run of `spec`'s impulse saved in the store, when it has a
    /// `min_exec_delta`: a one-shot `komlogd -u` and the agent skip by the
    /// same previous run.
    fn saved_last_run(&self, spec: &ImpulseSpec) -> Option<i64> {
        spec.min_exec_delta_us?;
        self.store.last_run(&spec.name).unwrap_or_else(|e| {
            tracing::warn!(impulse = &*spec.name, "cannot read its last run: {e}");
            None
        })
    }

    /// Save the last runs of the impulses with a `min_exec_delta`, if any ran.
    fn save_last_runs(&mut self) {
        if !std::mem::take(&mut self.last_runs_changed) {
            return;
        }
        let runs: Vec<(&str, i64)> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.spec.min_exec_delta_us.is_some())
            .filter_map(|s| Some((&*s.spec.name, s.last_run_ts?)))
            .collect();
        if let Err(e) = self.store.save_last_runs(&runs) {
            tracing::warn!("cannot save the impulses' last runs (min_exec_delta): {e}");
        }
    }

    /// Serve the inbox until [`Inbox::stop`], then finish every queued fire.
    /// `each` is called after every processed group with what it did (its
    /// rejections are not kept). A store failure is passed to `failed` and the
    /// dispatcher goes on.
    pub fn serve(
        &mut self,
        mut each: impl FnMut(IngestReport),
        mut failed: impl FnMut(StoreError),
    ) {
        self.stopping = false;
        while !(self.stopping && self.in_flight == 0) {
            self.report = IngestReport::default();
            if let Err(e) = self.pump(true) {
                failed(e);
            }
            self.tell_specs();
            each(std::mem::take(&mut self.report));
        }
    }

    /// Stop every worker after its queued fires and close the store.
    pub fn close(mut self) -> Result<(), StoreError> {
        let _ = self.settle();
        let threads: Vec<_> = self
            .slots
            .iter_mut()
            .flatten()
            .filter_map(|s| match &mut s.runner {
                Runner::Thread { thread, .. } => thread.take(),
                Runner::Inline(_) => None,
            })
            .collect();
        self.slots.clear();
        for t in threads {
            let _ = t.join();
        }
        self.store.close()
    }

    /// Receive one message (waiting for it when `block`) and everything already
    /// queued behind it (up to a bound), and process them as one group.
    fn pump(&mut self, block: bool) -> Result<(), StoreError> {
        let first = if block {
            match super::recv_spinning(&self.inbox_rx) {
                Some(m) => m,
                None => return Ok(()),
            }
        } else {
            match self.inbox_rx.try_recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        };
        let mut pendings = Vec::new();
        self.take(first, &mut pendings)?;
        while pendings.len() < MAX_GROUP {
            match self.inbox_rx.try_recv() {
                Ok(m) => self.take(m, &mut pendings)?,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.process(pendings)
    }

    fn take(&mut self, msg: Msg, pendings: &mut Vec<Pending>) -> Result<(), StoreError> {
        match msg {
            Msg::Samples(samples) => pendings.push(self.validate_source(samples)),
            Msg::Remote(samples, seq) => {
                let mut pending = self.validate_remote(samples, true)?;
                pending.answers = seq;
                pendings.push(pending);
            }
            Msg::History(samples) => pendings.push(self.validate_remote(samples, false)?),
            Msg::Upload(samples, reply) => {
                let before = self.report.rejected.len();
                let mut pending = self.validate_source(samples);
                let rejected = self.report.rejected[before..].to_vec();
                let held = self.drop_held(&mut pending)?;
                pending.upload = Some((
                    UploadReceipt {
                        accepted: held,
                        held,
                        rejected,
                    },
                    reply,
                ));
                pendings.push(pending);
            }
            Msg::Read(request, reply) => {
                let answer = crate::store::read::read(&self.store, &request).unwrap_or_else(|e| {
                    ReadAnswer {
                        error: Some(e.to_string()),
                        ..ReadAnswer::default()
                    }
                });
                let _ = reply.send(answer);
            }
            Msg::Done(done) => {
                self.in_flight -= 1;
                if let Some(slot) = self.slots.get_mut(done.slot).and_then(Option::as_mut)
                    && let Some(bytes) = slot.waiting.pop_front()
                {
                    slot.waiting_bytes -= bytes;
                }
                if self.buffers.len() < MAX_SPARE_BUFFERS {
                    self.buffers.push(done.window);
                }
                if done.called {
                    self.report.fires += 1;
                }
                let record = done.record.map(|r| {
                    self.records.push(*r);
                    self.records.len() - 1
                });
                if !done.outputs.is_empty() {
                    pendings.push(Pending {
                        samples: done.outputs,
                        depth: done.depth + 1,
                        origin: Some((done.slot, done.version)),
                        returned_at: done.returned_at,
                        upload: None,
                        queued: self.config.queue_for_server,
                        fires: true,
                        from_server: false,
                        answers: done.answers,
                        record,
                    });
                }
            }
            Msg::Control(control) => {
                // Everything received before the change is dispatched before it.
                self.process(std::mem::take(pendings))?;
                self.apply(control);
            }
            Msg::Stop => self.stopping = true,
        }
        Ok(())
    }

    fn validate_source(&mut self, samples: Vec<Sample>) -> Pending {
        let me = self.config.username.clone();
        let mut valid = Vec::with_capacity(samples.len());
        for sample in samples {
            let (uri, ts) = (sample.uri.clone(), sample.ts);
            match output::check_local_write(sample, me.as_ref()) {
                Ok(sample) => valid.push(sample),
                Err(reason) => self.report.rejected.push(Rejected { uri, ts, reason }),
            }
        }
        Pending {
            samples: valid,
            depth: 0,
            origin: None,
            returned_at: None,
            upload: None,
            queued: self.config.queue_for_server,
            fires: true,
            from_server: false,
            answers: None,
            record: None,
        }
    }

    /// Samples from the server: a valid uri (another user's is fine), time and
    /// value, turned into store keys; those the store already holds are dropped.
    fn validate_remote(
        &mut self,
        samples: Vec<Sample>,
        fires: bool,
    ) -> Result<Pending, StoreError> {
        let me = self.config.username.clone();
        let mut valid = Vec::with_capacity(samples.len());
        for mut sample in samples {
            // The sample rules (uri, time range, value), as for every entry.
            let uri = match sample.validate() {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(uri = %sample.uri, ts = sample.ts, "sample from the server refused: {e}");
                    continue;
                }
            };
            sample.uri = uri.store_key(me.as_ref());
            if self.store.holds(&sample.uri, sample.ts, &sample.value)? {
                self.remote_duplicates += 1;
                continue;
            }
            valid.push(sample);
        }
        Ok(Pending {
            samples: valid,
            depth: 0,
            origin: None,
            returned_at: None,
            upload: None,
            queued: false,
            fires,
            from_server: true,
            answers: None,
            record: None,
        })
    }

    /// Commit every pending batch in one store transaction, then fire what each fires.
    fn process(&mut self, mut pendings: Vec<Pending>) -> Result<(), StoreError> {
        pendings.retain_mut(|p| {
            if !p.samples.is_empty() {
                return true;
            }
            if let Some((receipt, reply)) = p.upload.take() {
                let _ = reply.send(receipt);
            }
            false
        });
        if pendings.is_empty() {
            return Ok(());
        }
        let total = pendings.iter().map(|p| p.samples.len()).sum();
        let mut all = Vec::with_capacity(total);
        let mut queued: Vec<Option<Outgoing>> = Vec::with_capacity(total);
        let mut ranges = Vec::with_capacity(pendings.len());
        for p in &mut pendings {
            p.samples.sort_by_key(|s| s.ts);
            let start = all.len();
            all.append(&mut p.samples);
            // Source samples and impulse outputs are queued; the outputs of a
            // fire on a notification answer it.
            let outgoing = p.queued.then_some(Outgoing {
                answers: p.answers.filter(|_| p.origin.is_some()),
            });
            queued.resize(all.len(), outgoing);
            ranges.push(start..all.len());
        }
        // Only copies of the server's data skip the fsync: they can be fetched again.
        let durable = !self.config.replay && pendings.iter().any(|p| !p.from_server);
        let outcomes = self.store.append_queued(&all, |i| queued[i], durable)?;
        if let Some(signal) = &self.outbox_signal
            && outcomes
                .iter()
                .zip(&queued)
                .any(|(o, q)| q.is_some() && o.is_ok())
        {
            signal.notify_one();
        }
        let at = Instant::now();
        let mut firing = Vec::with_capacity(pendings.len());
        for (mut p, range) in pendings.into_iter().zip(ranges) {
            if let Some((mut receipt, reply)) = p.upload.take() {
                for (sample, outcome) in all[range.clone()].iter().zip(&outcomes[range.clone()]) {
                    match outcome {
                        Ok(()) => receipt.accepted += 1,
                        Err(reason) => receipt.rejected.push(Rejected {
                            uri: sample.uri.clone(),
                            ts: sample.ts,
                            reason: reason.clone(),
                        }),
                    }
                }
                let _ = reply.send(receipt);
            }
            let groups = self.account(&p, &all[range.clone()], &outcomes[range.clone()], at);
            firing.push((p, range, groups));
        }
        // Every fire's outputs are accounted for before the fires they cause.
        self.flush_records();
        for (p, range, groups) in firing {
            self.fire_groups(&p, &all[range], groups)?;
        }
        Ok(())
    }

    /// Count and tap what a commit did with `pending`'s samples; returns the
    /// fires they cause: per timestamp (ascending), the subscribed slots.
    fn account(
        &mut self,
        pending: &Pending,
        samples: &[Sample],
        outcomes: &[Result<(), SampleError>],
        at: Instant,
    ) -> Vec<(i64, Vec<usize>)> {
        let origin = pending
            .origin
            .as_ref()
            .and_then(|(i, version)| Some((self.slots[*i].as_ref()?, version)));
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        for (sample, outcome) in samples.iter().zip(outcomes) {
            match (outcome, &pending.origin) {
                (Ok(()), from) => {
                    match from {
                        Some(_) => {
                            self.report.outputs += 1;
                            if let Some((slot, version)) = origin {
                                lock(&slot.stats).stats().outputs += 1;
                                if let Some(tap) = &self.tap {
                                    let _ = tap.send(Tapped {
                                        impulse: slot.spec.name.clone(),
                                        version: version.clone(),
                                        sample: sample.clone(),
                                        at,
                                        fired_at: pending.returned_at.unwrap_or(at),
                                    });
                                }
                            }
                        }
                        None => self.report.accepted += 1,
                    }
                    let Some(subscribers) = self.index.get(&sample.uri) else {
                        continue;
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
                (Err(reason), Some(_)) => {
                    if let Some(record) = pending.record.and_then(|i| self.records.get_mut(i)) {
                        if let Some(at) = record.outputs.iter().position(|s| s == sample) {
                            record.outputs.remove(at);
                        }
                        record.dropped.push(DroppedOutput {
                            uri: sample.uri.clone(),
                            ts: sample.ts,
                            reason: reason.to_string(),
                        });
                    }
                    if let Some((slot, _)) = origin {
                        let mut cell = lock(&slot.stats);
                        let stats = cell.stats();
                        stats.invalid_outputs += 1;
                        tracing::warn!(impulse = &*slot.spec.name, uri = %sample.uri, "output dropped: {reason}");
                        stats.last_error =
                            Some(format!("output to {} dropped: {reason}", sample.uri));
                    }
                }
                (Err(reason), None) => self.report.rejected.push(Rejected {
                    uri: sample.uri.clone(),
                    ts: sample.ts,
                    reason: reason.clone(),
                }),
            }
        }
        groups
    }

    /// Fire the slots of each group (from [`Dispatcher::account`]), under the
    /// chain-depth rule.
    fn fire_groups(
        &mut self,
        pending: &Pending,
        samples: &[Sample],
        groups: Vec<(i64, Vec<usize>)>,
    ) -> Result<(), StoreError> {
        if groups.is_empty() || !pending.fires {
            return Ok(());
        }
        if pending.depth >= self.config.max_chain_depth {
            if let Some((i, _)) = &pending.origin
                && let Some(slot) = &self.slots[*i]
            {
                lock(&slot.stats).stats().chain_cut += 1;
                tracing::warn!(
                    impulse = &*slot.spec.name,
                    depth = pending.depth,
                    "outputs stored but not fired further: chain depth limit {} reached (an impulse loop?)",
                    self.config.max_chain_depth
                );
            }
            return Ok(());
        }
        // The outputs of a fire on a notification answer it; further hops are
        // fired by local samples and answer nothing.
        let answers = pending.answers.filter(|_| pending.origin.is_none());
        for (ts, mut fired) in groups {
            fired.sort_unstable();
            // The samples are sorted by ts: this group is a contiguous range.
            let start = samples.partition_point(|s| s.ts < ts);
            let end = samples.partition_point(|s| s.ts <= ts);
            let batch: Vec<&str> = samples[start..end].iter().map(|s| s.uri.as_str()).collect();
            for i in fired {
                self.fire(i, ts, &batch, pending.depth, answers)?;
            }
        }
        Ok(())
    }

    /// Cut the window of one fire and send it to the impulse's worker, unless
    /// `min_exec_delta` skips it.
    fn fire(
        &mut self,
        i: usize,
        ts: i64,
        batch: &[&str],
        depth: u32,
        answers: Option<[u8; 16]>,
    ) -> Result<(), StoreError> {
        let Some(slot) = self.slots[i].as_mut() else {
            return Ok(());
        };
        if let (Some(delta), Some(last)) = (slot.spec.min_exec_delta_us, slot.last_run_ts)
            && ts.abs_diff(last) < delta
        {
            lock(&slot.stats).stats().skips += 1;
            if self.fire_tap.is_some() {
                self.records.push(fire_record(
                    slot,
                    ts,
                    depth,
                    FireOutcome::Skipped("within min_exec_delta"),
                ));
            }
            tracing::debug!(
                impulse = &*slot.spec.name,
                ts,
                last,
                "skipped: within min_exec_delta"
            );
            return Ok(());
        }
        // Skipped by the failure policy: counted as the worker would, but
        // without cutting a window or waking the worker. (The gate is let go
        // before the stats are taken: the worker takes them in that order.)
        let (disabled, backing_off) = {
            let gate = lock_gate(&slot.gate);
            let current = gate.generation == slot.generation;
            (
                current && gate.disabled,
                current && gate.until.is_some_and(|until| Instant::now() < until),
            )
        };
        if disabled {
            lock(&slot.stats).stats().disabled_skips += 1;
            if self.fire_tap.is_some() {
                self.records.push(fire_record(
                    slot,
                    ts,
                    depth,
                    FireOutcome::Skipped("disabled"),
                ));
            }
            return Ok(());
        }
        if backing_off {
            lock(&slot.stats).stats().backoff_skips += 1;
            if self.fire_tap.is_some() {
                self.records.push(fire_record(
                    slot,
                    ts,
                    depth,
                    FireOutcome::Skipped("backing off"),
                ));
            }
            return Ok(());
        }
        if slot.waiting_bytes >= usize::try_from(slot.spec.queue_bytes).unwrap_or(usize::MAX) {
            // The impulse cannot keep up: shed this fire rather than let its
            // queue take the agent's memory (nothing else waits on it).
            let mut cell = lock(&slot.stats);
            let stats = cell.stats();
            stats.queue_full_skips += 1;
            if slot.dropping == 0 {
                let reason = format!(
                    "fires dropped: the {} fires waiting for it hold {} bytes, its queue limit is {}",
                    slot.waiting.len(),
                    slot.waiting_bytes,
                    slot.spec.queue_bytes
                );
                tracing::warn!(impulse = &*slot.spec.name, ts, "{reason}");
                stats.last_error = Some(reason);
            }
            slot.dropping += 1;
            if self.fire_tap.is_some() {
                self.records.push(fire_record(
                    slot,
                    ts,
                    depth,
                    FireOutcome::Skipped("queue full"),
                ));
            }
            return Ok(());
        }
        if slot.dropping > 0 {
            tracing::info!(
                impulse = &*slot.spec.name,
                ts,
                dropped = slot.dropping,
                "its queue has room again; firing resumes"
            );
            slot.dropping = 0;
        }
        slot.last_run_ts = Some(ts);
        self.last_runs_changed |= slot.spec.min_exec_delta_us.is_some();
        let mut updated = Vec::new();
        let mut others = Vec::new();
        let mut window_rows = 0;
        for (key, text) in slot.keys.iter().zip(&slot.uri_texts) {
            if batch.contains(&key.as_str()) {
                updated.push(text.clone());
            } else {
                others.push(text.clone());
            }
            let entries = self.store.window(key, ts, slot.spec.data_reqs)?;
            window_rows += entries.len();
            for entry in entries {
                self.encoder.push(text, entry.ts, &entry.value);
            }
        }
        let record = self.fire_tap.is_some().then(|| {
            Box::new(FireRecord {
                window_rows,
                updated: updated.clone(),
                others: others.clone(),
                // The worker notes how the call ended.
                ..fire_record(slot, ts, depth, FireOutcome::Returned)
            })
        });
        let mut window = self.buffers.pop().unwrap_or_default();
        if let Err(e) = self.encoder.finish_into(&mut window) {
            // Cannot happen with the fixed schema; refuse the fire rather than panic.
            tracing::error!(impulse = &*slot.spec.name, "cannot encode the window: {e}");
            return Ok(());
        }
        let bytes = std::mem::size_of::<FireJob>()
            + window.capacity()
            + updated
                .iter()
                .chain(&others)
                .map(String::capacity)
                .sum::<usize>();
        let job = Job::Fire(FireJob {
            ts,
            depth,
            answers,
            updated,
            others,
            record,
            window,
        });
        let sent = match &mut slot.runner {
            Runner::Thread { jobs, .. } => jobs.send(job).is_ok(),
            Runner::Inline(worker) => {
                self.inline_done.extend(worker.run(job));
                true
            }
        };
        if sent {
            self.in_flight += 1;
            slot.waiting.push_back(bytes);
            slot.waiting_bytes += bytes;
        } else {
            tracing::error!(
                impulse = &*slot.spec.name,
                "the impulse's thread has ended; fire dropped"
            );
        }
        Ok(())
    }
}

/// The record of a fire of `slot` at `ts` that ended as `outcome`, with no
/// inputs or outputs yet (see [`FireRecord`]).
fn fire_record(slot: &Slot, ts: i64, depth: u32, outcome: FireOutcome) -> FireRecord {
    FireRecord {
        impulse: slot.spec.name.clone(),
        ts,
        depth,
        updated: Vec::new(),
        others: Vec::new(),
        window_rows: 0,
        outcome,
        outputs: Vec::new(),
        dropped: Vec::new(),
        call: std::time::Duration::ZERO,
    }
}
