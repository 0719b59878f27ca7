//! Packages: collectors compiled to WebAssembly components of the `package`
//! world (`wit/package.wit`), configured by `- package:` blocks.
//!
//! What this module owns:
//! - the package world's host bindings — [`bindings`];
//! - the host-kept counters behind the metrics API — [`counters`];
//! - loading a package in its sandbox with exactly its grants (read-only
//!   preopened directories, named environment variables) — [`instance`];
//! - checking what `load` declares — [`manifest`];
//! - the job table: which schedules fired, and the refresh rule that keeps the
//!   timing of unchanged jobs — [`schedule`];
//! - running packages on pool threads: jobs on time, refresh, the package's
//!   own impulses handed to the dispatcher, reloading a changed `.wasm`, and
//!   the [`PackageBoard`] of their state, and loading each one for
//!   `komlogd check` — [`runner`].
//!
//! Samples a job returns go into the dispatcher's [`Inbox`](crate::impulses::Inbox)
//! as source samples: the same validation, store and impulses as any other
//! source. A package's impulses are ordinary impulses (`<package>/<name>`)
//! whose module is the package's `.wasm`.

pub mod bindings;
pub mod counters;
pub mod instance;
pub mod manifest;
pub mod runner;
pub mod schedule;

pub use instance::PackageError;
pub use manifest::{JobSpec, Manifest, Schedule};
pub use runner::{
    JobStats, PackageBoard, PackageCheck, PackagePhase, PackageStatus, Packages, check, start,
};
