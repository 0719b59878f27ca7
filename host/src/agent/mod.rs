//! Assembly of a local agent from a configuration: the embedded store, the engine
//! with its compiled-module cache, and every enabled impulse, ready to ingest.
//!
//! Files live beside komlogd.yaml: `data/store.redb` (the embedded store) and
//! `cache/compiled/` (compiled modules). An impulse that fails to load is reported
//! and left out, and listed as failed on the dispatcher's board (so `status`
//! shows it); the others load.

pub mod daemon;
pub mod reload;
pub mod status;

use std::path::{Path, PathBuf};

use crate::config::{self, Config, ImpulseConfig};
use crate::engine::{Engine, EngineConfig, LoadError};
use crate::impulses::{Dispatcher, DispatcherConfig, SpecError, Version, spec};
use crate::store::{Store, StoreError};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not be created.
    #[error(transparent)]
    Engine(#[from] LoadError),
}

/// Warnings about the configuration that parsing cannot give: a `server`
/// block's `ca_file` that cannot be used.
pub fn config_notices(config: &Config) -> Vec<String> {
    ca_file_problem(config).into_iter().collect()
}

/// Why the `server` block's `ca_file` cannot be used (it cannot be read or
/// holds no certificate), naming the file; `None` when it is fine or absent.
pub fn ca_file_problem(config: &Config) -> Option<String> {
    let server = config.server.as_ref()?;
    let path = server.ca_file.as_deref()?;
    if !server.is_tls() {
        return None;
    }
    komlog_session::tls::client_config(Some(path))
        .err()
        .map(|e| {
            format!(
                "the `server` block ({}): {e}; logins fail until it is fixed",
                server.describe()
            )
        })
}

/// Where the embedded store of a configuration lives.
pub fn store_path(config_dir: &Path) -> PathBuf {
    config_dir.join("data").join("store.redb")
}

/// Where compiled modules of a configuration are cached.
pub fn cache_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("cache").join("compiled")
}

/// An impulse that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("impulse {name}: {error}")]
pub struct LoadFailure {
    /// The impulse's name.
    pub name: String,
    /// Why.
    pub error: SpecError,
}

/// A local agent: a dispatcher over the embedded store with the configured impulses.
pub struct Agent {
    /// The dispatcher (store + impulses).
    pub dispatcher: Dispatcher,
    /// The engine the impulses run in.
    pub engine: Engine,
    /// Impulses that could not be loaded, with reasons; the caller reports them.
    pub load_errors: Vec<LoadFailure>,
    /// The state of the packages, once the daemon runs them.
    pub packages: crate::packages::PackageBoard,
    /// What hot reload has handled, once the daemon runs.
    pub reload: reload::ReloadStats,
}

/// Settings that are not in the configuration file.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Where compiled modules are cached; default `<config dir>/cache/compiled`.
    pub cache_dir: Option<PathBuf>,
    /// Told about modules compiled because the cache did not hold them.
    pub compile_notice: Option<crate::engine::CompileNotice>,
}

/// The engine settings a configuration needs.
pub fn engine_config(config: &Config, options: &AgentOptions) -> EngineConfig {
    let fuel = config.limits.fuel.is_some()
        || config.impulses.iter().any(|i| i.limits.fuel.is_some())
        || config.packages.iter().any(|p| p.limits.fuel.is_some());
    let largest_cap = config
        .impulses
        .iter()
        .filter_map(|i| i.limits.memory_bytes)
        .chain(config.packages.iter().filter_map(|p| p.limits.memory_bytes))
        .chain(config.limits.memory_bytes)
        .max()
        .unwrap_or(0);
    let defaults = EngineConfig::default();
    EngineConfig {
        cache_dir: Some(
            options
                .cache_dir
                .clone()
                .unwrap_or_else(|| cache_dir(&config.dir)),
        ),
        fuel,
        max_memory_bytes: defaults.max_memory_bytes.max(largest_cap),
        compile_notice: options.compile_notice.clone(),
        ..defaults
    }
}

impl Agent {
    /// Open the store and load the enabled impulses of `config`.
    pub fn open(config: &Config) -> Result<Agent, AgentError> {
        Self::open_with(config, &AgentOptions::default())
    }

    /// [`Agent::open`] with options.
    pub fn open_with(config: &Config, options: &AgentOptions) -> Result<Agent, AgentError> {
        let store = Store::open(&store_path(&config.dir))?;
        let engine = Engine::new(&engine_config(config, options))?;
        let mut dispatcher = Dispatcher::new(
            store,
            DispatcherConfig {
                username: config.username.clone(),
                max_chain_depth: config.max_chain_depth,
                queue_for_server: config.server.is_some(),
                replay: false,
            },
        );
        let mut load_errors = Vec::new();
        for block in config.impulses.iter().filter(|b| b.enabled) {
            match load_impulse(&engine, block, &config.limits) {
                Ok(version) => {
                    log_loaded(&version, "impulse loaded");
                    dispatcher.add_impulse(version.spec, version.module, version.instance);
                }
                Err(error) => {
                    dispatcher.board().set_failed(
                        &block.name,
                        block.filename.clone(),
                        error.to_string(),
                    );
                    load_errors.push(LoadFailure {
                        name: block.name.clone(),
                        error,
                    });
                }
            }
        }
        Ok(Agent {
            dispatcher,
            engine,
            load_errors,
            packages: crate::packages::PackageBoard::default(),
            reload: reload::ReloadStats::default(),
        })
    }
}

/// Load, check and resolve one `- impulses:` block: the module (from the compiled
/// cache when possible) implements the `impulse` world, instantiates, answers
/// `describe()` with valid subscriptions, and its limits fit the running engine.
pub fn load_impulse(
    engine: &Engine,
    block: &ImpulseConfig,
    agent_limits: &config::Limits,
) -> Result<Version, SpecError> {
    let module = engine.load(&block.filename)?;
    let (spec, instance) = spec::resolve(block, agent_limits, &module)?;
    if let Err(reason) = engine.admits(&spec.limits) {
        return Err(SpecError::NeedsRestart {
            name: block.name.clone(),
            path: block.filename.clone(),
            reason,
        });
    }
    Ok(Version {
        spec,
        module,
        instance: Some(instance),
    })
}

fn log_loaded(version: &Version, what: &str) {
    tracing::info!(
        impulse = &*version.spec.name,
        wasm = %version.spec.module_path.display(),
        version = &version.module.hash()[..12],
        uris = ?version.spec.uris.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "{what}"
    );
}
