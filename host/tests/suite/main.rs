//! The agent's integration tests with real processes, one module per topic,
//! in one test binary: each binary that links the agent (and so wasmtime)
//! costs a long link, so the topics share one. `outbox_window` stays a binary
//! of its own because it installs a process-wide log subscriber.
//! Run one topic with `cargo nextest run -p komlogd -E 'test(/^daemon::/)'`
//! or `cargo test -p komlogd --test suite daemon::`.

/// Test certificates, shared with the hub's tests.
#[path = "../../../hub/tests/common/certs.rs"]
mod certs;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/influxd.rs"]
mod influxd;
#[path = "../common/inproc.rs"]
mod inproc;

mod cli;
mod cluster;
mod connected;
mod daemon;
mod export_import;
mod failover;
mod impulse_test;
mod install;
mod operator;
mod outbox;
mod sinks;
mod sinks_brokers;
mod sinks_prometheus;
mod web;
