//! Resolution of an `- impulses:` block into a runnable [`ImpulseSpec`].
//!
//! A module may carry defaults through its `describe()` export; each field the
//! block sets overrides the module's (field by field for `data_reqs`). A uri
//! listed more than once is subscribed once, with a warning. Two blocks
//! naming one module are two independent impulses with their own instances,
//! counters and `min_exec_delta` clocks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ImpulseConfig};
use crate::engine::{self, Instance, Module};
use crate::model::{Uri, repeated_uris};
use crate::store::DataReqs;

/// Everything the dispatcher needs to run one impulse.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpulseSpec {
    /// Its name in logs and counters.
    pub name: Arc<str>,
    /// The module file.
    pub module_path: PathBuf,
    /// The uris that fire it, as written (local or `user:uri`), in order.
    pub uris: Vec<Uri>,
    /// Its window.
    pub data_reqs: DataReqs,
    /// Minimum distance between the timestamps of two runs, µs.
    pub min_exec_delta_us: Option<u64>,
    /// The block's params, in file order.
    pub params: Vec<(String, String)>,
    /// Its sandbox limits.
    pub limits: engine::Limits,
    /// Failed events in a row after which it is disabled until its module changes.
    pub disable_after: u32,
    /// Memory its waiting fires may hold, bytes; fires beyond it are dropped.
    pub queue_bytes: u64,
    /// Samples one call may return; a call returning more has none written.
    pub max_outputs: usize,
}

/// Failed events in a row after which an impulse is disabled, unless configured.
pub const DEFAULT_DISABLE_AFTER: u32 = 5;
/// Memory the fires waiting for one impulse may hold, unless configured: 64 MiB.
pub const DEFAULT_QUEUE_BYTES: u64 = 64 << 20;
/// Samples one call may return, unless configured.
pub const DEFAULT_MAX_OUTPUTS: u64 = 10_000;

/// Why an impulse could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The module could not be loaded.
    #[error(transparent)]
    Load(#[from] engine::LoadError),
    /// The module's first instance failed.
    #[error("impulse {name} ({path}): {source}")]
    Instantiate {
        /// The impulse.
        name: String,
        /// Its module.
        path: PathBuf,
        /// What went wrong.
        source: engine::CallError,
    },
    /// Neither the block nor the module names any uri.
    #[error(
        "impulse {name} ({path}): no uris to subscribe to: set `uris` in its `- impulses:` block (the module declares no default)"
    )]
    NoUris {
        /// The impulse.
        name: String,
        /// Its module.
        path: PathBuf,
    },
    /// The limits ask for something the running engine was not set up for.
    #[error("impulse {name} ({path}): {reason}")]
    NeedsRestart {
        /// The impulse.
        name: String,
        /// Its module.
        path: PathBuf,
        /// What and why.
        reason: String,
    },
    /// The module's `describe()` returned an invalid uri.
    #[error("impulse {name} ({path}): its describe() returned an invalid uri: {reason}")]
    BadDefault {
        /// The impulse.
        name: String,
        /// Its module.
        path: PathBuf,
        /// The reason.
        reason: String,
    },
}

/// Combine the block's limits, the agent-wide defaults and the built-in defaults.
pub fn limits(block: &config::Limits, agent: &config::Limits) -> engine::Limits {
    let builtin = engine::Limits::default();
    engine::Limits {
        timeout: block
            .timeout_us
            .or(agent.timeout_us)
            .map(Duration::from_micros)
            .unwrap_or(builtin.timeout),
        memory_bytes: block
            .memory_bytes
            .or(agent.memory_bytes)
            .unwrap_or(builtin.memory_bytes),
        fuel: block.fuel.or(agent.fuel),
    }
}

/// Samples one call (or package run) may return under `limits` (already
/// merged with the agent-wide ones), or the default.
pub fn max_outputs(limits: &config::Limits) -> usize {
    usize::try_from(limits.outputs.unwrap_or(DEFAULT_MAX_OUTPUTS)).unwrap_or(usize::MAX)
}

/// Resolve a block against its loaded module. Returns the spec and the instance
/// that answered `describe()`, warm for the first fire.
pub fn resolve(
    block: &ImpulseConfig,
    agent_limits: &config::Limits,
    module: &Module,
) -> Result<(ImpulseSpec, Instance), SpecError> {
    let name: Arc<str> = Arc::from(block.name.as_str());
    let path = module.path().to_owned();
    let limits = limits(&block.limits, agent_limits);
    let mut instance =
        module
            .instantiate(name.clone(), limits)
            .map_err(|source| SpecError::Instantiate {
                name: block.name.clone(),
                path: path.clone(),
                source,
            })?;
    let defaults = instance
        .describe()
        .map_err(|source| engine::LoadError::Describe {
            path: path.clone(),
            source,
        })?;
    let mut uris = match (&block.uris, &defaults) {
        (Some(uris), _) => uris.clone(),
        (None, Some(d)) if !d.uris.is_empty() => d
            .uris
            .iter()
            .map(|u| Uri::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SpecError::BadDefault {
                name: block.name.clone(),
                path: path.clone(),
                reason: e.to_string(),
            })?,
        _ => {
            return Err(SpecError::NoUris {
                name: block.name.clone(),
                path,
            });
        }
    };
    // A uri listed twice (by describe(), or by a package's manifest; a
    // komlogd.yaml block is cleaned when the file is read) is subscribed once.
    let repeats = repeated_uris(&uris, None);
    let from = if block.uris.is_some() {
        "its uris list"
    } else {
        "its describe() lists"
    };
    for &(repeat, _) in &repeats {
        tracing::warn!(
            impulse = &*name,
            wasm = %path.display(),
            "{from} {} more than once; the repeat is ignored (an impulse subscribes to each uri once)",
            uris[repeat]
        );
    }
    for &(repeat, _) in repeats.iter().rev() {
        uris.remove(repeat);
    }
    let default_reqs = defaults.as_ref().map(|d| d.data_reqs);
    let block_reqs = block.data_reqs.as_ref();
    let data_reqs = DataReqs {
        past_delta_us: block_reqs
            .and_then(|r| r.past_delta_us)
            .or(default_reqs.and_then(|r| r.past_delta)),
        past_count: block_reqs
            .and_then(|r| r.past_count)
            .or(default_reqs.and_then(|r| r.past_count)),
    };
    let min_exec_delta_us = block
        .min_exec_delta_us
        .or(defaults.as_ref().and_then(|d| d.min_exec_delta));
    let spec = ImpulseSpec {
        name,
        module_path: path,
        uris,
        data_reqs,
        min_exec_delta_us,
        params: block.params.clone(),
        limits,
        disable_after: block
            .limits
            .disable_after
            .or(agent_limits.disable_after)
            .unwrap_or(DEFAULT_DISABLE_AFTER),
        queue_bytes: block
            .limits
            .queue_bytes
            .or(agent_limits.queue_bytes)
            .unwrap_or(DEFAULT_QUEUE_BYTES),
        max_outputs: max_outputs(&block.limits.or(agent_limits)),
    };
    Ok((spec, instance))
}
