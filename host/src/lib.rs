//! komlogd: the Komlog agent, rebuilt around WebAssembly impulses.
//!
//! A sample's path is one straight line: a source (stdin upload, jobs, the
//! server) → the [`impulses::Dispatcher`] → the embedded [`store`] → every
//! subscribed impulse, run in a sandboxed wasmtime instance ([`engine`]) with an
//! Arrow window of recent data → validation of its outputs → the store again.
//!
//! Modules, in the order of that line: [`config`] (komlogd.yaml), [`model`]
//! (uris, samples, rules), [`sources`] (scheduled jobs), [`store`], [`engine`], [`impulses`], [`agent`]
//! (assembly), [`cli`].

pub mod agent;
pub mod cli;
pub mod config;
pub mod engine;
pub mod impulses;
pub mod keys;
pub mod logging;
pub mod model;
pub mod packages;
pub mod replay;
pub mod session;
pub mod sinks;
pub mod sources;
pub mod store;
#[cfg(test)]
mod test_util;
