//! Counters kept by the host across calls (`komlog:impulse/counters`): the
//! state behind the metrics API's `increment` and `decrement`.
//!
//! A package's counters live in its [`CounterSet`], shared by every instance
//! of the package in one agent, so they survive an instance being replaced.
//! Impulses (a package's own included) keep theirs in the [`ImpulseCounters`]
//! of the agent's engine, one set per impulse name. Counters are in memory
//! only, and belong to one agent: each agent (and each restart) starts them at
//! 0, even beside another agent in the same process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::bindings::komlog::impulse::counters;
use crate::engine::instance::GuestState;

/// Longest counter name accepted; longer names are cut (at a char boundary).
const MAX_NAME_BYTES: usize = 1024;
/// Most counters one owner may keep; adding a new one past this is refused
/// (the call returns the delta alone and logs a warning).
const MAX_COUNTERS: usize = 100_000;

/// One owner's counters. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct CounterSet {
    values: Arc<Mutex<HashMap<String, f64>>>,
}

impl CounterSet {
    /// Add `delta` to `name` (created at 0) and return the new value. A
    /// non-finite result is not stored: the counter keeps its value.
    pub fn add(&self, owner: &str, name: &str, delta: f64) -> f64 {
        let name = cut(name);
        let Ok(mut values) = self.values.lock() else {
            return delta;
        };
        let full = values.len() >= MAX_COUNTERS;
        match values.get_mut(name) {
            Some(v) => {
                let next = *v + delta;
                if next.is_finite() {
                    *v = next;
                }
                *v
            }
            None if full => {
                tracing::warn!(
                    owner,
                    counter = name,
                    "too many counters ({MAX_COUNTERS}); this one is not kept"
                );
                delta
            }
            None => {
                let start = if delta.is_finite() { delta } else { 0.0 };
                values.insert(name.to_owned(), start);
                start
            }
        }
    }

    /// The value of `name`, 0 if it was never added to.
    pub fn get(&self, name: &str) -> f64 {
        self.values
            .lock()
            .ok()
            .and_then(|v| v.get(cut(name)).copied())
            .unwrap_or(0.0)
    }
}

fn cut(name: &str) -> &str {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The counters of every impulse of one agent, by impulse name: a version
/// swapped in, or an instance replaced after a trap, finds its impulse's
/// counters. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ImpulseCounters {
    sets: Arc<Mutex<HashMap<String, CounterSet>>>,
}

impl ImpulseCounters {
    /// The counters of the impulse `name` (created empty on first use).
    pub fn of(&self, name: &str) -> CounterSet {
        match self.sets.lock() {
            Ok(mut sets) => sets.entry(name.to_owned()).or_default().clone(),
            Err(_) => CounterSet::default(),
        }
    }
}

impl counters::Host for GuestState {
    fn add(&mut self, name: String, delta: f64) -> f64 {
        let owner = self.name().to_owned();
        self.counters().add(&owner, &name, delta)
    }

    fn get(&mut self, name: String) -> f64 {
        self.counters().get(&name)
    }
}

impl super::bindings::komlog::impulse::package_types::Host for GuestState {}

/// A package's impulses are instances of the package's component, which may
/// import `datasources`; declaring is for its `load` and job runs (the
/// package's instances), so an impulse's call is refused.
impl super::bindings::komlog::impulse::datasources::Host for GuestState {
    fn declare_supplies(&mut self, uri: String, _supplies: Vec<String>) -> Result<(), String> {
        Err(format!(
            "cannot declare what {uri} supplies from an impulse: declare it in the package's load or a job run"
        ))
    }
}

/// Link what a package's own impulses import beyond the `impulse` world
/// (`komlog:impulse/counters`, `komlog:impulse/datasources`, and the types of
/// `komlog:impulse/package-types`) for impulse instances.
pub(crate) fn add_to_impulse_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    counters::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    super::bindings::komlog::impulse::datasources::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    super::bindings::komlog::impulse::package_types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_keep_their_value() {
        let set = CounterSet::default();
        assert_eq!(set.get("a"), 0.0);
        assert_eq!(set.add("o", "a", 1.0), 1.0);
        assert_eq!(set.add("o", "a", 2.5), 3.5);
        assert_eq!(set.add("o", "a", -4.0), -0.5);
        assert_eq!(set.get("a"), -0.5);
        let shared = set.clone();
        assert_eq!(shared.add("o", "a", 0.5), 0.0);
        assert_eq!(set.add("o", "b", f64::NAN), 0.0);
        assert_eq!(
            set.add("o", "a", f64::INFINITY),
            0.0,
            "non-finite sums are not kept"
        );
    }

    #[test]
    fn impulse_counters_are_per_name_and_per_owner_of_the_registry() {
        let agent = ImpulseCounters::default();
        agent.of("p/a").add("p/a", "n", 2.0);
        assert_eq!(agent.of("p/a").get("n"), 2.0, "the same set again");
        assert_eq!(agent.of("p/b").get("n"), 0.0, "another impulse");
        let other_agent = ImpulseCounters::default();
        assert_eq!(other_agent.of("p/a").get("n"), 0.0, "another agent");
        assert_eq!(agent.clone().of("p/a").get("n"), 2.0, "a clone shares");
    }
}
