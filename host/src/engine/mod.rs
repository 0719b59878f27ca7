//! The WebAssembly side of the agent: one wasmtime engine, modules compiled once
//! and cached on disk, and sandboxed instances with a call deadline and a memory cap.
//!
//! What this module owns:
//! - the engine configuration (pooling allocator, epoch interruption with one
//!   ticker thread) — [`runtime`];
//! - the on-disk cache of compiled artifacts, keyed by the module's SHA-256 and the
//!   engine's compatibility hash, so a restart never recompiles — [`cache`];
//! - the on-disk cache of compiled functions, so a new version of a module
//!   compiles only the functions not seen before — [`function_cache`];
//! - loading a `.wasm` and checking that it implements the `impulse` world — [`runtime`];
//! - a call's deadline: epoch ticks, demotion of long calls, and the monotonic
//!   clock guests see, whose waits end at the deadline — [`deadline`];
//! - what guests write to the log, cut and capped per call — [`guest_log`];
//! - instances: the guest's store state (an empty WASI context: no filesystem,
//!   sockets, environment or arguments), limits, and the classification of traps —
//!   [`instance`].
//!
//! What it does not do: decide *when* to call a guest or what to do with its output
//! (that is `impulses`), or build windows.

pub mod bindings;
pub mod cache;
pub(crate) mod deadline;
pub mod function_cache;
pub mod guest_log;
pub mod instance;
pub mod runtime;

pub use function_cache::CompileReport;
pub use instance::{
    CallError, FailureKind, Instance, Limits, error_reason, one_line, wasm_backtrace,
};
pub use runtime::{
    COMPILE_NOTICE_PERIOD, CompileNotice, CompileProgress, Determinism, Engine, EngineConfig,
    LoadError, Module,
};
