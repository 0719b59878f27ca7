//! The cross-crate integration tests, one module per topic, in one test binary:
//! each binary that links the agent (and so wasmtime) costs a long link, so the
//! topics share one. `reload_memory` stays a binary of its own because it reads
//! the process's RSS, which other tests in the same process would disturb
//! under plain `cargo test` (nextest runs every test in a process of its own).
//! Run one topic with `cargo nextest run -p komlogd-tests -E 'test(/^reload::/)'`
//! or `cargo test -p komlogd-tests --test suite reload::`.

mod arrow_interop;
mod compiled_cache;
mod conformance;
mod examples;
mod failure_policy;
mod fire_semantics;
mod guest_unit_tests;
mod listeners;
mod metrics_clients;
mod output_rules;
mod package_pools;
mod packages;
mod reload;
mod replay;
mod sandbox;
mod sdk_window;
