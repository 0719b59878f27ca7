//! Sandbox limits (`limits:` in an impulse or package block, and the agent-wide
//! `- limits:` defaults): a wall-clock timeout, a memory cap, a fuel budget,
//! the failures that disable an impulse, the memory its waiting fires may hold
//! and the samples one call may return.

use super::schema::LIMIT_KEYS;
use super::yaml::{Ctx, Node, line};

/// Sandbox limits; `None` means "not set here" (fall back to the agent-wide value,
/// then to the engine's built-in default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take, in microseconds (`timeout: 2s`).
    pub timeout_us: Option<u64>,
    /// Largest linear memory, in bytes (`memory: 64MiB` or a plain integer).
    pub memory_bytes: Option<u64>,
    /// Fuel (roughly, WebAssembly instructions) one call may burn (`fuel: 1000000000`).
    pub fuel: Option<u64>,
    /// Failed events in a row after which the impulse is disabled until its module
    /// changes (`disable_after: 5`).
    pub disable_after: Option<u32>,
    /// Memory the fires waiting for an impulse may hold, in bytes (`queue: 64MiB`);
    /// fires beyond it are dropped and counted.
    pub queue_bytes: Option<u64>,
    /// Samples one call may return (`outputs: 10000`); a call returning more
    /// has none written.
    pub outputs: Option<u64>,
}

impl Limits {
    /// Each limit set here, else the one in `defaults`.
    pub fn or(&self, defaults: &Limits) -> Limits {
        Limits {
            timeout_us: self.timeout_us.or(defaults.timeout_us),
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            fuel: self.fuel.or(defaults.fuel),
            disable_after: self.disable_after.or(defaults.disable_after),
            queue_bytes: self.queue_bytes.or(defaults.queue_bytes),
            outputs: self.outputs.or(defaults.outputs),
        }
    }
}

/// Read a `limits` map; `path` names it in messages (`impulses.limits`).
pub(super) fn parse_limits(ctx: &mut Ctx<'_>, path: &str, node: &Node) -> Limits {
    let mut limits = Limits::default();
    let Some(block) = ctx.block(path, node, LIMIT_KEYS) else {
        return limits;
    };
    if let Some(n) = block.get("timeout") {
        limits.timeout_us = positive(ctx, &format!("{path}.timeout"), n, |c, w, n| {
            c.duration_us(w, n)
        });
    }
    if let Some(n) = block.get("memory") {
        limits.memory_bytes = positive(ctx, &format!("{path}.memory"), n, |c, w, n| c.bytes(w, n));
    }
    if let Some(n) = block.get("fuel") {
        limits.fuel = positive(ctx, &format!("{path}.fuel"), n, |c, w, n| c.uint(w, n));
    }
    if let Some(n) = block.get("queue") {
        limits.queue_bytes = positive(ctx, &format!("{path}.queue"), n, |c, w, n| c.bytes(w, n));
    }
    if let Some(n) = block.get("outputs") {
        limits.outputs = positive(ctx, &format!("{path}.outputs"), n, |c, w, n| c.uint(w, n));
    }
    if let Some(n) = block.get("disable_after") {
        let what = format!("{path}.disable_after");
        limits.disable_after =
            positive(ctx, &what, n, |c, w, n| c.uint(w, n)).and_then(|v| match u32::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    ctx.error(line(n), format!("{what}: {v} is too large"));
                    None
                }
            });
    }
    limits
}

/// Read with `read`, then refuse zero (a zero limit would make every call fail).
fn positive(
    ctx: &mut Ctx<'_>,
    what: &str,
    node: &Node,
    read: impl FnOnce(&mut Ctx<'_>, &str, &Node) -> Option<u64>,
) -> Option<u64> {
    match read(ctx, what, node)? {
        0 => {
            ctx.error(line(node), format!("{what}: must be greater than zero"));
            None
        }
        v => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_takes_own_values_first() {
        let own = Limits {
            timeout_us: Some(1),
            memory_bytes: None,
            fuel: None,
            disable_after: Some(2),
            queue_bytes: None,
            outputs: Some(3),
        };
        let defaults = Limits {
            timeout_us: Some(5),
            memory_bytes: Some(6),
            fuel: None,
            disable_after: Some(9),
            queue_bytes: Some(7),
            outputs: Some(8),
        };
        assert_eq!(
            own.or(&defaults),
            Limits {
                timeout_us: Some(1),
                memory_bytes: Some(6),
                fuel: None,
                disable_after: Some(2),
                queue_bytes: Some(7),
                outputs: Some(3),
            }
        );
    }
}
