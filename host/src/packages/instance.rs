//! A package component in its sandbox: the store state (a WASI context with
//! exactly the granted directories, read-only, and the granted environment
//! variables), limits, and calls to `load` and `run-job`.
//!
//! Packages link their own world (`package`) in a linker of their own, on the
//! agent's one engine, and share its compiled cache. After a failed call
//! (trap, deadline, memory cap, fuel) the instance is discarded; the runtime
//! makes a fresh one for the next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Package, PackagePre};
use super::counters::CounterSet;
use crate::config::Grants;
use crate::engine::bindings::{Level, Sample};
use crate::engine::deadline::{self, CallDeadline, HasCallDeadline};
use crate::engine::guest_log::{GuestLog, Writer};
use crate::engine::instance::sandbox_wasi;
use crate::engine::{Engine, LoadError};
use crate::session::Supplies;

/// Why a package could not be set up or a call into it failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The file could not be read or compiled.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A valid component that is not a package.
    #[error(
        "{path}: does not implement the komlog:impulse@0.1.0 `package` world (build it against wit/package.wit): {reason}"
    )]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// What is missing or mistyped.
        reason: String,
    },
    /// A granted directory cannot be opened.
    #[error("grants.dirs: cannot open {dir}: {reason}")]
    Grant {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A call trapped, hit a limit, or the instance could not be created.
    #[error("{what} failed: {message}{}", if stderr.is_empty() { String::new() } else { format!(" (guest stderr: {stderr})") })]
    Call {
        /// `load`, `run-job` or `instantiation`.
        what: &'static str,
        /// wasmtime's reason, classified.
        message: String,
        /// What the guest wrote to stderr, trimmed.
        stderr: String,
    },
}

/// The store state of one package instance.
pub struct PackageState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    stderr: MemoryOutputPipe,
    name: Arc<str>,
    counters: CounterSet,
    supplies: Supplies,
    deadline: CallDeadline,
    log: GuestLog,
}

impl HasCallDeadline for PackageState {
    fn call_deadline(&mut self) -> &mut CallDeadline {
        &mut self.deadline
    }
}

impl WasiView for PackageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::engine::bindings::komlog::impulse::types::Host for PackageState {}

impl crate::engine::bindings::komlog::impulse::host::Host for PackageState {
    fn log(&mut self, level: Level, message: String) {
        self.log.write(&self.name, level.into(), message);
    }
}

impl bindings::komlog::impulse::counters::Host for PackageState {
    fn add(&mut self, name: String, delta: f64) -> f64 {
        self.counters.add(&self.name, &name, delta)
    }

    fn get(&mut self, name: String) -> f64 {
        self.counters.get(&name)
    }
}

impl bindings::komlog::impulse::package_types::Host for PackageState {}

impl bindings::komlog::impulse::datasources::Host for PackageState {
    fn declare_supplies(&mut self, uri: String, supplies: Vec<String>) -> Result<(), String> {
        let declared = self.supplies.declare_checked(&uri, supplies);
        if let Err(e) = &declared {
            tracing::warn!(package = &*self.name, "declare-supplies refused: {e}");
        }
        declared
    }
}

/// The linker of the package world: WASI (granting only what the store's
/// context grants), `host`, `counters`, `datasources`.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<PackageState>> {
    let mut linker = Linker::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    deadline::add_to_linker(&mut linker)?;
    Package::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A loaded, checked package component.
#[derive(Clone)]
pub struct PackageModule {
    pre: PackagePre<PackageState>,
    hash: String,
    path: PathBuf,
    engine: Engine,
}

impl PackageModule {
    /// Compile (or take from the cache) `path` and check it is a package.
    pub fn load(
        engine: &Engine,
        linker: &Linker<PackageState>,
        path: &Path,
    ) -> Result<PackageModule, PackageError> {
        let (component, hash) = engine.compile_file(path)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PackagePre::new)
            .map_err(|e| PackageError::WrongWorld {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        Ok(PackageModule {
            pre,
            hash,
            path: path.to_owned(),
            engine: engine.clone(),
        })
    }

    /// Hex SHA-256 of the file: its version.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh instance with `grants`, `limits`, the package's counters and
    /// where its datasources' supplies are declared.
    pub fn instantiate(
        &self,
        name: Arc<str>,
        limits: crate::engine::Limits,
        grants: &Grants,
        counters: CounterSet,
        supplies: Supplies,
    ) -> Result<PackageInstance, PackageError> {
        let (mut builder, stderr) = sandbox_wasi();
        for dir in &grants.dirs {
            let guest = dir.to_string_lossy().into_owned();
            builder
                .preopened_dir(dir, guest, FsPerms::ReadOnly)
                .map_err(|e| PackageError::Grant {
                    dir: dir.clone(),
                    reason: format!("{e:#}"),
                })?;
        }
        for var in &grants.env {
            match std::env::var(var) {
                Ok(value) => {
                    builder.env(var, value);
                }
                Err(_) => tracing::debug!(
                    package = &*name,
                    var = var.as_str(),
                    "granted environment variable is not set; not passed"
                ),
            }
        }
        let state = PackageState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
                .trap_on_grow_failure(true)
                .build(),
            stderr,
            name,
            counters,
            supplies,
            // Package threads are shared by a pool: never demoted.
            deadline: CallDeadline::new(limits.timeout, self.engine.epoch_tick(), false),
            log: GuestLog::new(Writer::Package),
        };
        let engine = self.engine.wasmtime();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        deadline::watch(&mut store);
        let fuel = self
            .engine
            .fuel_enabled()
            .then(|| limits.fuel.unwrap_or(u64::MAX));
        let mut instance = PackageInstance {
            store,
            bindings: None,
            fuel,
            timeout: limits.timeout,
            memory_bytes: limits.memory_bytes,
        };
        instance.arm();
        let bindings = self.pre.instantiate(&mut instance.store);
        instance.end_call();
        let bindings = bindings.map_err(|e| instance.failure("instantiation", e))?;
        instance.bindings = Some(bindings);
        Ok(instance)
    }
}

/// A live package instance.
pub struct PackageInstance {
    store: Store<PackageState>,
    bindings: Option<Package>,
    fuel: Option<u64>,
    timeout: Duration,
    memory_bytes: u64,
}

impl PackageInstance {
    fn arm(&mut self) {
        deadline::arm(&mut self.store);
        if let Some(fuel) = self.fuel {
            let _ = self.store.set_fuel(fuel);
        }
    }

    fn end_call(&mut self) {
        deadline::disarm(&mut self.store, |state| &state.name);
        let state = self.store.data_mut();
        state.log.end_call(&state.name);
    }

    fn failure(&self, what: &'static str, err: wasmtime::Error) -> PackageError {
        let stderr = crate::engine::one_line(&String::from_utf8_lossy(
            &self.store.data().stderr.contents(),
        ));
        let full = format!("{err:#}");
        if let Some(trace) = crate::engine::wasm_backtrace(&err) {
            tracing::debug!(
                package = &*self.store.data().name,
                "{what} failed here: {}",
                crate::engine::one_line(&trace)
            );
        }
        let message = match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("deadline of {:?} exceeded", self.timeout),
            Some(Trap::OutOfFuel) => "out of fuel".to_owned(),
            _ if full.contains("forcing trap when growing memory") => {
                format!("memory cap of {} bytes reached", self.memory_bytes)
            }
            _ => crate::engine::error_reason(&err),
        };
        PackageError::Call {
            what,
            message,
            stderr,
        }
    }

    /// Call `load(params)`. The outer error is a failed call (discard the
    /// instance); the inner one is the package's own `err`.
    pub fn load(
        &mut self,
        params: &[(String, String)],
    ) -> Result<Result<bindings::Manifest, String>, PackageError> {
        self.arm();
        let Some(b) = &self.bindings else {
            return Err(PackageError::Call {
                what: "load",
                message: "no instance".into(),
                stderr: String::new(),
            });
        };
        let result = b.call_load(&mut self.store, params);
        self.end_call();
        result.map_err(|e| self.failure("load", e))
    }

    /// Call `run-job`. Errors as for [`PackageInstance::load`].
    pub fn run_job(
        &mut self,
        id: &str,
        ts: i64,
        fired: &[bindings::Schedule],
        params: &[(String, String)],
    ) -> Result<Result<Vec<Sample>, String>, PackageError> {
        self.arm();
        let Some(b) = &self.bindings else {
            return Err(PackageError::Call {
                what: "run-job",
                message: "no instance".into(),
                stderr: String::new(),
            });
        };
        let result = b.call_run_job(&mut self.store, id, ts, fired, params);
        self.end_call();
        result.map_err(|e| self.failure("run-job", e))
    }
}
