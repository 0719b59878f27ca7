//! Per-impulse counters, readable while the agent runs.

use std::collections::BTreeMap;

/// What an impulse has done since it was loaded.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImpulseStats {
    /// Calls of `on-update` that returned (ok or err).
    pub fires: u64,
    /// Fires skipped because of `min_exec_delta`.
    pub skips: u64,
    /// Fires whose guest returned `err`.
    pub guest_errors: u64,
    /// Failed calls by kind (trap, deadline, memory, fuel, instantiate).
    pub failures: BTreeMap<String, u64>,
    /// Output samples accepted.
    pub outputs: u64,
    /// Output samples dropped for breaking a rule (uri, value, kind).
    pub invalid_outputs: u64,
    /// Output samples to another user's uri, dropped.
    pub remote_writes_dropped: u64,
    /// Output samples stored without firing further impulses (chain depth reached).
    pub chain_cut: u64,
    /// The last error or failure, if any.
    pub last_error: Option<String>,
    /// The largest linear memory the current instance reached, bytes.
    pub memory_high_water: u64,
}
