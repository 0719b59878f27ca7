//! The agent's single wasmtime engine and the loading of modules into it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::ImpulseIndices;
use super::bindings::stateful::StatefulImpulseIndices;
use super::cache::{ArtifactCache, engine_fingerprint, module_hash};
use super::function_cache::{CompileReport, FunctionCache};
use super::instance::{self, CallError, Exports, GuestState, Instance, Limits};
use crate::packages::counters::ImpulseCounters;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled artifacts are cached; None disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Period of the epoch ticker: the granularity of call deadlines.
    pub epoch_tick: Duration,
    /// Meter fuel in every call (needed for any impulse with a `fuel` limit).
    pub fuel: bool,
    /// Largest memory cap any instance may have; the pooling allocator reserves
    /// (virtual, not resident) address space of this size per memory slot.
    pub max_memory_bytes: u64,
    /// How many instances may be alive at once.
    pub max_instances: u32,
    /// Enforce call deadlines with epoch interruption (default on). Off, an
    /// endless loop in a guest is never stopped: it exists only to measure what
    /// the deadlines cost.
    pub epoch_deadlines: bool,
    /// Told when a module is compiled (not found in the compiled cache), while
    /// it compiles and when it is done: a large guest takes seconds to a
    /// minute the first time, which a command should not spend in silence.
    pub compile_notice: Option<CompileNotice>,
    /// Compile a module's functions on several threads (default on). Off and
    /// `optimize` off exist to measure what they buy (`--bench languages`).
    pub parallel_compilation: bool,
    /// Let Cranelift optimise the code it generates (default on).
    pub optimize: bool,
    /// Freeze the impulses' clocks and seed their randomness (`komlogd
    /// impulse test`), so a replay gives the same outputs every run. None
    /// (the agent): the real clocks and the system's randomness.
    pub determinism: Option<Determinism>,
}

/// What an impulse's instance sees instead of the real clocks and randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Determinism {
    /// The wall clock reads this time, µs since the Unix epoch, at every read.
    pub now_us: i64,
    /// Seeds both random sources (`wasi:random/random` and `insecure`); the
    /// monotonic clock stands still at 0.
    pub seed: u64,
}

/// What a [`CompileNotice`] is told about one compilation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompileProgress {
    /// The module is not in the compiled cache: compiling starts.
    Started,
    /// Still compiling after this long (every [`COMPILE_NOTICE_PERIOD`]).
    Running(Duration),
    /// Compiled (or refused) after this long.
    Finished(Duration),
}

/// How often a [`CompileNotice`] hears that a compilation is still running.
pub const COMPILE_NOTICE_PERIOD: Duration = Duration::from_secs(5);

/// The function a [`CompileNotice`] calls: the module's path and the progress.
pub type CompileCallback = dyn Fn(&Path, CompileProgress) + Send + Sync;

/// A callback told about compilations.
#[derive(Clone)]
pub struct CompileNotice(pub Arc<CompileCallback>);

impl std::fmt::Debug for CompileNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompileNotice")
    }
}

impl CompileNotice {
    /// Run `compile`, telling this notice when it starts, every
    /// [`COMPILE_NOTICE_PERIOD`] while it runs, and when it ends.
    fn around<T>(&self, path: &Path, compile: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        (self.0)(path, CompileProgress::Started);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let out = std::thread::scope(|scope| {
            let notice = &self.0;
            scope.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(COMPILE_NOTICE_PERIOD)
                {
                    notice(path, CompileProgress::Running(started.elapsed()));
                }
            });
            let out = compile();
            drop(done_tx);
            out
        });
        (self.0)(path, CompileProgress::Finished(started.elapsed()));
        out
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            fuel: false,
            max_memory_bytes: 1 << 30,
            max_instances: 256,
            epoch_deadlines: true,
            compile_notice: None,
            parallel_compilation: true,
            optimize: true,
            determinism: None,
        }
    }
}

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read module: {source}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The module file.
        path: PathBuf,
        /// wasmtime's reason.
        reason: String,
    },
    /// A valid component that does not implement the `impulse` world.
    #[error(
        "{path}: does not implement the komlog:impulse@0.1.0 `impulse` world (build it against wit/impulse.wit): {reason}"
    )]
    WrongWorld {
        /// The module file.
        path: PathBuf,
        /// What is missing or mistyped.
        reason: String,
    },
    /// The component instantiates but its `describe` failed.
    #[error("{path}: `describe` failed: {source}")]
    Describe {
        /// The module file.
        path: PathBuf,
        /// The failure.
        source: CallError,
    },
    /// The engine itself could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Increments the engine's epoch every tick, on its own thread, until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("komlogd-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<GuestState>,
    cache: Option<ArtifactCache>,
    /// Compiled functions, for compiling a module that shares code with one
    /// compiled before; beside `cache`.
    functions: Option<Arc<FunctionCache>>,
    tick: Duration,
    fuel: bool,
    max_memory_bytes: u64,
    /// Modules alive somewhere, by (hash, path): blocks naming one module share
    /// its compiled code. Weak, so a module nobody uses any more is freed.
    loaded: Mutex<HashMap<(String, PathBuf), Weak<ModuleInner>>>,
    /// The host-kept counters of this agent's impulses.
    counters: ImpulseCounters,
    compile_notice: Option<CompileNotice>,
    determinism: Option<Determinism>,
    _ticker: EpochTicker,
}

/// The agent's WebAssembly engine. Cheap to clone; one per agent.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// Create the engine, its linker and its epoch ticker.
    pub fn new(config: &EngineConfig) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        let mut wasm_config = Config::new();
        wasm_config
            .epoch_interruption(config.epoch_deadlines)
            .consume_fuel(config.fuel)
            .parallel_compilation(config.parallel_compilation)
            .cranelift_opt_level(if config.optimize {
                wasmtime::OptLevel::Speed
            } else {
                wasmtime::OptLevel::None
            })
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let functions = config
            .cache_dir
            .as_ref()
            .map(|dir| Arc::new(FunctionCache::new(dir.join("functions"))));
        if let Some(functions) = &functions {
            wasm_config
                .enable_incremental_compilation(functions.clone())
                .map_err(engine_err)?;
        }
        let engine = wasmtime::Engine::new(&wasm_config).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        instance::add_to_linker(&mut linker).map_err(engine_err)?;
        // Packages' own impulses run as impulses and import the counters.
        crate::packages::counters::add_to_impulse_linker(&mut linker).map_err(engine_err)?;
        let cache = config
            .cache_dir
            .clone()
            .map(|dir| ArtifactCache::new(dir, engine_fingerprint(&engine)));
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cache,
                functions,
                tick: config.epoch_tick,
                fuel: config.fuel,
                max_memory_bytes: config.max_memory_bytes,
                loaded: Mutex::new(HashMap::new()),
                counters: ImpulseCounters::default(),
                compile_notice: config.compile_notice.clone(),
                determinism: config.determinism,
                _ticker: ticker,
            }),
        })
    }

    /// Load a module file: from the compiled cache when possible, otherwise compile
    /// it (and cache the result); then check it implements the `impulse` world.
    pub fn load(&self, path: &Path) -> Result<Module, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(&bytes, path)
    }

    /// Like [`Engine::load`] for bytes already in memory; `path` names them in errors.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<Module, LoadError> {
        let started = Instant::now();
        let hash = module_hash(bytes);
        let key = (hash.clone(), path.to_owned());
        if let Some(inner) = self.live_module(&key) {
            return Ok(Module { inner });
        }
        let (component, origin) = self.component(bytes, &hash, path)?;
        let from_cache = origin == Origin::Cache;
        let (pre, impulse) = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| ImpulseIndices::new(&pre).map(|indices| (pre, indices)))
            .map_err(|e| LoadError::WrongWorld {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        // A `stateful-impulse` also exports `snapshot` and `restore`; any other
        // impulse is served as one of the plain world.
        let stateful = StatefulImpulseIndices::new(&pre).ok();
        let exports = Exports {
            pre,
            impulse,
            stateful,
        };
        tracing::debug!(
            wasm = %path.display(),
            version = &hash[..12],
            from_cache,
            stateful = exports.stateful.is_some(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "module loaded"
        );
        let inner = Arc::new(ModuleInner {
            path: path.to_owned(),
            hash,
            exports,
            engine: self.clone(),
            origin,
        });
        if let Ok(mut loaded) = self.inner.loaded.lock() {
            loaded.retain(|_, m| m.strong_count() > 0);
            loaded.insert(key, Arc::downgrade(&inner));
        }
        Ok(Module { inner })
    }

    fn live_module(&self, key: &(String, PathBuf)) -> Option<Arc<ModuleInner>> {
        self.inner.loaded.lock().ok()?.get(key)?.upgrade()
    }

    fn component(
        &self,
        bytes: &[u8],
        hash: &str,
        path: &Path,
    ) -> Result<(Component, Origin), LoadError> {
        let engine = &self.inner.engine;
        let cache = self.inner.cache.as_ref();
        if let Some(component) = cache.and_then(|cache| Self::cached(engine, cache, hash)) {
            return Ok((component, Origin::Cache));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::Invalid {
                path: path.to_owned(),
                reason: "the file does not start with the WebAssembly magic bytes \\0asm".into(),
            });
        }
        // One compile per module at a time in this cache directory: whoever
        // waited for the lock usually finds the artifact its holder wrote.
        let _compiling = match cache.map(|cache| cache.compile_lock(hash)) {
            Some(Ok(lock)) => {
                if let Some(component) = cache.and_then(|cache| Self::cached(engine, cache, hash)) {
                    return Ok((component, Origin::Cache));
                }
                Some(lock)
            }
            Some(Err(e)) => {
                tracing::warn!(wasm = %path.display(), "cannot lock the compiled cache, compiling without it: {e}");
                None
            }
            None => None,
        };
        let compile = || {
            let functions = self
                .inner
                .functions
                .as_deref()
                .map(FunctionCache::compiling);
            let compiled = Component::new(engine, bytes);
            let report = functions.map(|f| f.finish());
            if let Some(report) = &report {
                tracing::debug!(
                    wasm = %path.display(),
                    reused = report.reused,
                    compiled = report.compiled,
                    added = report.added,
                    replaced = report.replaced,
                    "functions of the compiled cache"
                );
            }
            compiled.map(|component| (component, report))
        };
        let compiled = match &self.inner.compile_notice {
            Some(notice) => notice.around(path, compile),
            None => compile(),
        };
        let (component, functions) = compiled.map_err(|e| LoadError::Invalid {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        if let Some(cache) = &self.inner.cache {
            match component.serialize() {
                Ok(artifact) => {
                    if let Err(e) = cache.store(hash, &artifact) {
                        tracing::warn!(wasm = %path.display(), "cannot cache the compiled module: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(wasm = %path.display(), "cannot serialize the compiled module: {e:#}")
                }
            }
        }
        Ok((component, Origin::Compiled(functions)))
    }

    /// The cached artifact of `hash`, if there is one that loads; one that does
    /// not is removed.
    fn cached(engine: &wasmtime::Engine, cache: &ArtifactCache, hash: &str) -> Option<Component> {
        let artifact = cache.path_for(hash);
        if !artifact.exists() {
            return None;
        }
        // SAFETY: artifacts in the cache directory are written only by this
        // code (atomically, from `Component::serialize` of an engine with the
        // same fingerprint, which is part of the file name). wasmtime still
        // checks the header and engine compatibility.
        match unsafe { Component::deserialize_file(engine, &artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), "discarding unusable compiled artifact: {e:#}");
                cache.evict(hash);
                None
            }
        }
    }

    /// Read and compile (or load from the compiled cache) a component without
    /// checking its world: for the package runtime, which links its own world.
    /// Returns the component and the hex SHA-256 of the file.
    pub(crate) fn compile_file(&self, path: &Path) -> Result<(Component, String), LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let hash = module_hash(&bytes);
        let (component, _) = self.component(&bytes, &hash, path)?;
        Ok((component, hash))
    }

    /// The period of the epoch ticker: the granularity of call deadlines.
    pub fn epoch_tick(&self) -> Duration {
        self.inner.tick
    }

    /// Whether calls are metered with fuel (set when the engine is created).
    pub fn fuel_enabled(&self) -> bool {
        self.inner.fuel
    }

    /// The largest memory cap an instance of this engine may have.
    pub fn max_memory_bytes(&self) -> u64 {
        self.inner.max_memory_bytes
    }

    /// Whether an instance with `limits` can run on this engine: a fuel limit
    /// needs fuel metering and a memory cap must not exceed the engine's, both
    /// fixed when the engine is created. The error says what to do.
    pub fn admits(&self, limits: &super::Limits) -> Result<(), String> {
        if limits.fuel.is_some() && !self.fuel_enabled() {
            return Err("a fuel limit needs fuel metering, which is set when the agent starts: restart komlogd to apply it".into());
        }
        if limits.memory_bytes > self.max_memory_bytes() {
            return Err(format!(
                "memory limit of {} bytes is above the {} bytes this run was started with: restart komlogd to apply it",
                limits.memory_bytes,
                self.max_memory_bytes()
            ));
        }
        Ok(())
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }
}

struct ModuleInner {
    path: PathBuf,
    hash: String,
    exports: Exports,
    engine: Engine,
    origin: Origin,
}

/// Where a module's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The artifact cache.
    Cache,
    /// Compiled, with what the compiled functions' cache gave when there is one.
    Compiled(Option<CompileReport>),
}

/// A loaded, checked impulse module. Cheap to clone; instantiate it as often as needed.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

impl Module {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Hex SHA-256 of the module bytes: its version.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// True when it came from the compiled cache (no compilation).
    pub fn from_cache(&self) -> bool {
        self.inner.origin == Origin::Cache
    }

    /// For a module that was compiled, with a cache directory: how many of
    /// its functions were taken from the compiled functions' cache, and how
    /// many compiled.
    pub fn compiled_functions(&self) -> Option<CompileReport> {
        match self.inner.origin {
            Origin::Compiled(report) => report,
            Origin::Cache => None,
        }
    }

    /// Whether it is a `stateful-impulse` (exports `snapshot` and `restore`).
    pub fn is_stateful(&self) -> bool {
        self.inner.exports.stateful.is_some()
    }

    /// A fresh instance with `limits`, logging under `name`.
    pub fn instantiate(&self, name: Arc<str>, limits: Limits) -> Result<Instance, CallError> {
        let e = &self.inner.engine.inner;
        let counters = e.counters.of(&name);
        Instance::new(
            &e.engine,
            &self.inner.exports,
            name,
            limits,
            instance::InstanceSettings {
                tick: e.tick,
                fuel_enabled: e.fuel,
                determinism: e.determinism,
            },
            counters,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_beyond_the_engine_are_refused_with_the_way_out() {
        let engine = Engine::new(&EngineConfig {
            max_instances: 2,
            ..EngineConfig::default()
        })
        .expect("engine");
        assert_eq!(engine.admits(&Limits::default()), Ok(()));
        let fuel = engine
            .admits(&Limits {
                fuel: Some(1_000),
                ..Limits::default()
            })
            .expect_err("fuel without metering");
        assert!(
            fuel.contains("fuel metering") && fuel.contains("restart komlogd"),
            "{fuel}"
        );
        let memory = engine
            .admits(&Limits {
                memory_bytes: 2 << 30,
                ..Limits::default()
            })
            .expect_err("a cap above the engine's");
        assert!(
            memory.contains("2147483648 bytes is above the 1073741824 bytes")
                && memory.contains("restart komlogd"),
            "{memory}"
        );
        let metered = Engine::new(&EngineConfig {
            fuel: true,
            max_instances: 2,
            ..EngineConfig::default()
        })
        .expect("engine");
        assert_eq!(
            metered.admits(&Limits {
                fuel: Some(1_000),
                ..Limits::default()
            }),
            Ok(())
        );
    }
}
