//! A live guest instance: its store state, its limits, calls into it, and the
//! classification of what went wrong when a call fails.
//!
//! A guest gets an empty WASI context: no preopened directories, no environment
//! variables, no arguments, no network addresses, no name lookup; stdin closed.
//! Clocks and randomness work. Its stderr goes to a small in-memory buffer that
//! is attached to failure reports (a panicking Rust guest prints its message there).
//!
//! Each call has a deadline ([`deadline`]): a call still running after
//! [`deadline::DEMOTE_AFTER_TICKS`] epoch ticks has its thread moved to the
//! lowest CPU priority (nice 19) for the rest of the call, so a slow or runaway
//! guest yields the CPU to quick ones (its neighbours' fires, the dispatcher)
//! until its deadline stops it; a wait in a host call (`sleep`) ends at the
//! deadline, so a blocked guest is stopped like a looping one.
//!
//! After a trap an instance cannot be entered again: the caller drops it and
//! instantiates a fresh one from the module's `InstancePre` (tens of µs).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::stateful::{StatefulImpulse, StatefulImpulseIndices};
use super::bindings::{self, Context, Impulse, ImpulseIndices, Level, Sample, Subscription};
use super::deadline::{self, CallDeadline, HasCallDeadline};
use super::guest_log::{GuestLog, Writer};
use super::runtime::Determinism;
use crate::packages::counters::CounterSet;

/// How many bytes of a guest's stderr are kept for failure reports.
const STDERR_CAPTURE_BYTES: usize = 4096;

/// Resource limits of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by epoch interruption.
    pub timeout: Duration,
    /// Cap on the instance's linear memories, in bytes.
    pub memory_bytes: u64,
    /// Optional fuel per call (instructions, roughly); None = unmetered.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    /// 1 s per call, 64 MiB of memory, no fuel metering.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            fuel: None,
        }
    }
}

/// What ended a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The guest trapped on its own: a panic, an abort, an out-of-bounds access.
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The guest tried to grow its memory past the cap.
    Memory,
    /// The call ran out of fuel.
    Fuel,
    /// The instance could not be created.
    Instantiate,
}

impl FailureKind {
    /// A short lowercase name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::Fuel => "fuel",
            FailureKind::Instantiate => "instantiate",
        }
    }
}

/// A call that did not return normally. The instance must be discarded.
///
/// Its text is one line (it is an impulse's last error in `komlogd status`
/// and part of log records): the kind, wasmtime's reason and the guest's
/// stderr. The wasm backtrace a trap carries goes to a debug log record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind_name}: {message}{}", if stderr.is_empty() { String::new() } else { format!(" (guest stderr: {stderr})") })]
pub struct CallError {
    /// What kind of failure.
    pub kind: FailureKind,
    kind_name: &'static str,
    /// wasmtime's reason, on one line, without the backtrace.
    pub message: String,
    /// What the guest wrote to stderr, on one line (often a panic message).
    pub stderr: String,
}

impl CallError {
    fn new(kind: FailureKind, message: String, stderr: String) -> Self {
        CallError {
            kind,
            kind_name: kind.as_str(),
            message,
            stderr,
        }
    }
}

/// wasmtime's reason for a failed call, on one line: the error chain without
/// the wasm backtrace a trap carries (see [`wasm_backtrace`]), e.g. ``wasm trap:
/// wasm `unreachable` instruction executed``.
pub fn error_reason(err: &wasmtime::Error) -> String {
    let trace = wasm_backtrace(err);
    let parts: Vec<String> = err
        .chain()
        .map(ToString::to_string)
        .filter(|part| trace.as_deref() != Some(part.as_str()))
        .collect();
    one_line(&parts.join(": "))
}

/// The wasm backtrace attached to a trap, if any (several lines).
pub fn wasm_backtrace(err: &wasmtime::Error) -> Option<String> {
    err.downcast_ref::<wasmtime::WasmBacktrace>()
        .map(ToString::to_string)
}

/// A guest's stderr (or any text) on one line: its non-blank lines, trimmed,
/// joined with `; ` (or a space after a line ending in `:`, as a Rust panic's
/// location line does). Rust's hint to set `RUST_BACKTRACE`, which a guest
/// cannot follow, is left out.
pub fn one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("note: run with `RUST_BACKTRACE=") {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// Tracks memory growth against the cap and remembers whether the cap was hit.
#[derive(Debug)]
struct MemoryLimiter {
    cap: usize,
    current: usize,
    high_water: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current - current.min(self.current) + desired;
        if total > self.cap {
            self.denied = true;
            return Ok(false);
        }
        self.current = total;
        self.high_water = self.high_water.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The store state of one guest instance.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
    name: Arc<str>,
    deadline: CallDeadline,
    log: GuestLog,
    /// The host-kept counters of this instance's impulse (`komlog:impulse/counters`).
    counters: CounterSet,
}

impl HasCallDeadline for GuestState {
    fn call_deadline(&mut self) -> &mut CallDeadline {
        &mut self.deadline
    }
}

/// The WASI context every guest starts from: stderr captured in a small
/// buffer (returned with it, for failure reports), no sockets, no name lookup,
/// and nothing else granted. Packages add their grants to the builder.
pub(crate) fn sandbox_wasi() -> (WasiCtxBuilder, MemoryOutputPipe) {
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
    let mut builder = WasiCtx::builder();
    builder
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    (builder, stderr)
}

/// Frozen clocks and seeded randomness for `world` (see [`Determinism`]).
fn freeze(builder: &mut WasiCtxBuilder, world: Determinism) {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

    struct FrozenWall(Duration);
    impl HostWallClock for FrozenWall {
        fn resolution(&self) -> Duration {
            Duration::from_micros(1)
        }
        fn now(&self) -> Duration {
            self.0
        }
    }
    struct StoppedMonotonic;
    impl HostMonotonicClock for StoppedMonotonic {
        fn resolution(&self) -> u64 {
            1_000
        }
        fn now(&self) -> u64 {
            0
        }
    }
    // Times before 1970 read as the epoch: WASI's wall clock has no sign.
    let since_epoch = Duration::from_micros(u64::try_from(world.now_us).unwrap_or(0));
    builder
        .wall_clock(FrozenWall(since_epoch))
        .monotonic_clock(StoppedMonotonic)
        .secure_random(StdRng::seed_from_u64(world.seed))
        .insecure_random(StdRng::seed_from_u64(world.seed ^ 0x9e37_79b9_7f4a_7c15))
        .insecure_random_seed(u128::from(world.seed));
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::komlog::impulse::types::Host for GuestState {}

impl bindings::komlog::impulse::host::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        self.log.write(&self.name, level.into(), message);
    }
}

/// Add the host's imports (WASI and `komlog:impulse/host`) to a linker.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<GuestState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    deadline::add_to_linker(linker)?;
    Impulse::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// How a module's instances are made: the linked component and where its
/// exports are, with `snapshot` / `restore` when it is a `stateful-impulse`.
pub(crate) struct Exports {
    pub(crate) pre: wasmtime::component::InstancePre<GuestState>,
    pub(crate) impulse: ImpulseIndices,
    pub(crate) stateful: Option<StatefulImpulseIndices>,
}

/// How an engine runs every instance it makes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InstanceSettings {
    /// The epoch period: the granularity of call deadlines.
    pub(crate) tick: Duration,
    /// Whether fuel is metered.
    pub(crate) fuel_enabled: bool,
    /// Frozen clocks and seeded randomness, for replays.
    pub(crate) determinism: Option<Determinism>,
}

/// A live instance of an impulse module.
pub struct Instance {
    store: Store<GuestState>,
    bindings: Impulse,
    /// The same instance seen through the `stateful-impulse` world, if its module is one.
    stateful: Option<StatefulImpulse>,
    fuel: Option<u64>,
}

impl Instance {
    /// Instantiate `exports` in a fresh store with `limits`, as the engine's
    /// `settings` say; `counters` are the impulse's host-kept counters.
    pub(crate) fn new(
        engine: &wasmtime::Engine,
        exports: &Exports,
        name: Arc<str>,
        limits: Limits,
        settings: InstanceSettings,
        counters: CounterSet,
    ) -> Result<Self, CallError> {
        let InstanceSettings {
            tick,
            fuel_enabled,
            determinism,
        } = settings;
        let (mut wasi, stderr) = sandbox_wasi();
        if let Some(world) = determinism {
            freeze(&mut wasi, world);
        }
        let wasi = wasi.build();
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                current: 0,
                high_water: 0,
                denied: false,
            },
            stderr,
            name,
            deadline: CallDeadline::new(limits.timeout, tick, true),
            log: GuestLog::new(Writer::Impulse),
            counters,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        deadline::watch(&mut store);
        // With fuel metering on, a store starts empty: unmetered impulses get all of it.
        let fuel = fuel_enabled.then(|| limits.fuel.unwrap_or(u64::MAX));
        // Instantiation runs guest start functions: give it the same deadline.
        arm_call(&mut store, fuel);
        let instance = exports.pre.instantiate(&mut store);
        end_call(&mut store);
        let instance = instance.map_err(|e| classify(&store, e, FailureKind::Instantiate))?;
        // One instance, two typed views of its exports.
        let bindings = exports
            .impulse
            .load(&mut store, &instance)
            .map_err(|e| classify(&store, e, FailureKind::Instantiate))?;
        let stateful = match &exports.stateful {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|e| classify(&store, e, FailureKind::Instantiate))?,
            ),
            None => None,
        };
        Ok(Instance {
            store,
            bindings,
            stateful,
            fuel,
        })
    }

    fn arm(&mut self) {
        arm_call(&mut self.store, self.fuel);
    }

    /// Call the module's `describe`.
    pub fn describe(&mut self) -> Result<Option<Subscription>, CallError> {
        self.arm();
        let result = self.bindings.call_describe(&mut self.store);
        end_call(&mut self.store);
        result.map_err(|e| classify(&self.store, e, FailureKind::Trap))
    }

    /// Call the module's `on-update`. The outer error is a failure of the call
    /// (discard the instance); the inner one is the guest's own `err`.
    pub fn on_update(&mut self, ctx: &Context) -> Result<Result<Vec<Sample>, String>, CallError> {
        self.arm();
        let result = self.bindings.call_on_update(&mut self.store, ctx);
        end_call(&mut self.store);
        result.map_err(|e| classify(&self.store, e, FailureKind::Trap))
    }

    /// Call the module's `snapshot`; None when the module is not stateful.
    /// A failure is classified like one of `on-update` (discard the instance).
    pub fn snapshot(&mut self) -> Option<Result<Vec<u8>, CallError>> {
        let guest = self.stateful.as_ref()?;
        arm_call(&mut self.store, self.fuel);
        let result = guest.call_snapshot(&mut self.store);
        end_call(&mut self.store);
        Some(result.map_err(|e| classify(&self.store, e, FailureKind::Trap)))
    }

    /// Call the module's `restore` with `state`; None when the module is not
    /// stateful. The outer error is a failure of the call (discard the
    /// instance); the inner one is the guest's own `err`.
    pub fn restore(&mut self, state: &[u8]) -> Option<Result<Result<(), String>, CallError>> {
        let guest = self.stateful.as_ref()?;
        arm_call(&mut self.store, self.fuel);
        let result = guest.call_restore(&mut self.store, state);
        end_call(&mut self.store);
        Some(result.map_err(|e| classify(&self.store, e, FailureKind::Trap)))
    }

    /// The largest linear-memory size this instance has reached, in bytes.
    pub fn memory_high_water(&self) -> usize {
        self.store.data().limiter.high_water
    }
}

/// Before a call: its deadline, and its fuel when metered.
fn arm_call(store: &mut Store<GuestState>, fuel: Option<u64>) {
    deadline::arm(store);
    if let Some(fuel) = fuel {
        let _ = store.set_fuel(fuel);
    }
}

/// After a call: the deadline is off (see [`deadline`]), the call's held-back
/// log lines are reported.
fn end_call(store: &mut Store<GuestState>) {
    deadline::disarm(store, |state| &state.name);
    let state = store.data_mut();
    state.log.end_call(&state.name);
}

fn classify(store: &Store<GuestState>, err: wasmtime::Error, default: FailureKind) -> CallError {
    let state = store.data();
    let stderr = one_line(&String::from_utf8_lossy(&state.stderr.contents()));
    let kind = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Deadline,
        Some(Trap::OutOfFuel) => FailureKind::Fuel,
        _ if state.limiter.denied => FailureKind::Memory,
        _ => default,
    };
    let message = match kind {
        FailureKind::Memory => format!(
            "memory cap of {} bytes reached ({})",
            state.limiter.cap,
            error_reason(&err)
        ),
        // The kind already says it is a trap.
        _ => {
            let reason = error_reason(&err);
            reason
                .strip_prefix("wasm trap: ")
                .map_or_else(|| reason.clone(), str::to_owned)
        }
    };
    if let Some(trace) = wasm_backtrace(&err) {
        tracing::debug!(
            impulse = &*state.name,
            "where it failed: {}",
            one_line(&trace)
        );
    }
    CallError::new(kind, message, stderr)
}

impl GuestState {
    /// The name the instance logs under: its impulse's.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The host-kept counters of its impulse.
    pub(crate) fn counters(&self) -> &CounterSet {
        &self.counters
    }
}
