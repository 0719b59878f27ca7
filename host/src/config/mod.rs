//! komlogd.yaml: parsing, validation and defaults.
//!
//! **Owns:** the file format (a YAML list of one-key entries), every key's type and
//! default (one table, `schema.rs`, which the parser's known-key lists and the
//! manual's configuration reference are built from), the resolution of relative
//! paths against the file's directory, the first-run [`TEMPLATE`], and the external
//! job files.
//!
//! **Does not:** create files or keys, load wasm, run jobs or connect anywhere; it
//! only reads files ([`Config::load`], [`load_external_jobs`]).
//!
//! **Inputs → outputs:** text and its path → a [`Config`] with [`ConfigWarning`]s, or
//! [`ConfigErrors`] listing every problem of the file, each as `file:line: message`.
//!
//! **Invariants:** unknown keys are errors, never silently ignored; every error
//! names the file and the 1-based line of the offending node; enabled impulse names
//! are unique.
//!
//! **Tests:** at the bottom of each file; whole-file cases in `tests.rs`.

mod error;
mod file;
mod impulses;
mod jobs;
mod limits;
mod listeners;
mod logging;
mod metrics;
mod packages;
mod params;
mod reference;
mod schema;
mod server;
mod sinks;
mod template;
mod yaml;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use file::{Config, DEFAULT_MAX_CHAIN_DEPTH};
pub use impulses::{DataReqs, ImpulseConfig};
pub use jobs::{
    ExternalJobs, JobConfig, load_external_jobs, parse_cron, read_external_jobs, split_command,
};
pub use limits::Limits;
pub use listeners::{LineProtocolConfig, StatsdConfig};
pub use logging::{LogFormat, LoggingConfig};
pub use metrics::MetricsConfig;
pub use packages::{Grants, PackageConfig, Venv};
pub use reference::reference_markdown;
pub use schema::{Key, Repeat, SECTIONS, Section, Unset};
pub use server::ServerConfig;
pub use sinks::{Destination, FileFormat, SinkConfig};
pub use template::TEMPLATE;
