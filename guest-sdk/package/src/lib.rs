//! Write komlogd packages in Rust.
//!
//! A *package* is a collector: a WebAssembly component of the `package`
//! world (`wit/package.wit`) that declares jobs with stable ids and schedules
//! and returns samples each time a job runs. It may bring impulses of its
//! own. komlogd runs it in a sandbox that sees only what its `- package:`
//! block grants (read-only directories, environment variables by name).
//!
//! This crate sits on [`komlog_guest`] (samples, subscriptions, contexts,
//! windows and logging come from there) and adds:
//!
//! * [`Package`], the trait your type implements, and [`export_package!`];
//! * builders for the [`Manifest`], its [`Job`]s and [`Schedule`]s and its
//!   [`PackageImpulse`]s, and [`JobCall`], what one run receives;
//! * [`declare_supplies`]: what a datasource's text carries, for the server;
//! * [`metrics`]: a Kaneda-style API (`gauge`, `increment`/`decrement` with
//!   counters kept by the host, `event`, `timing`/`timed`, `custom`, tags).
//!
//! # Example
//!
//! ```
//! use komlog_package::prelude::*;
//!
//! struct Uptime;
//!
//! impl Package for Uptime {
//!     fn load(_params: Params) -> Result<Manifest, String> {
//!         Ok(Manifest::new().job(Job::new("uptime").every(minutes(1))))
//!     }
//!
//!     fn run_job(call: JobCall) -> Result<Vec<Sample>, String> {
//!         let text = std::fs::read_to_string("/proc/uptime")
//!             .map_err(|e| format!("cannot read /proc/uptime (grant dirs: [/proc]): {e}"))?;
//!         let secs: f64 = text.split_whitespace().next().and_then(|s| s.parse().ok())
//!             .ok_or("unexpected /proc/uptime")?;
//!         let mut m = Metrics::new(call.ts);
//!         m.gauge("host.uptime", secs, &[]);
//!         Ok(m.into_samples())
//!     }
//! }
//!
//! komlog_package::export_package!(Uptime);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`) and configure it:
//!
//! ```yaml
//! - package:
//!     install: uptime.wasm
//!     grants: {dirs: [/proc]}
//! ```

#![warn(missing_docs)]

pub mod manifest;
pub mod metrics;

pub use komlog_guest;
pub use manifest::{Job, JobCall, Manifest, PackageImpulse, Params, Schedule};
pub use metrics::Metrics;

/// The generated bindings for the `package` world. Not part of the stable
/// API: use [`export_package!`] and the re-exports instead.
#[doc(hidden)]
#[allow(
    clippy::too_many_arguments,
    reason = "generated: the flattened canonical ABI of `on-update` takes 9 arguments"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "%package",
        pub_export_macro: true,
        export_macro_name: "__export_package_world",
        default_bindings_module: "komlog_package::bindings",
        additional_derives: [PartialEq],
        with: {
            "komlog:impulse/types@0.1.0": komlog_guest::bindings::komlog::impulse::types,
            "komlog:impulse/host@0.1.0": komlog_guest::bindings::komlog::impulse::host,
        },
    });
}

/// A package: implement it on a type of yours and export the type with
/// [`export_package!`].
///
/// As for impulses, komlogd keeps an instance warm between calls, so `static`
/// state survives from one call to the next, but the instance may be
/// replaced at any time (after a trap, on reload); komlogd calls `load` on
/// every new instance before its first run.
pub trait Package {
    /// Declare the jobs (and impulses) from the `- package:` block's params.
    /// Called at start, at every refresh and on every new instance. `Err`
    /// stops the package with that message (at a refresh, the previous jobs
    /// stay): say what is missing, e.g. a grant.
    fn load(params: Params) -> Result<Manifest, String>;

    /// Run a job once; return its samples (stamped with `call.ts`, usually).
    fn run_job(call: JobCall) -> Result<Vec<komlog_guest::Sample>, String>;

    /// Default subscription for `on_update` when the package is used as a
    /// plain impulse; packages declare their impulses in the manifest
    /// instead, so the default is `None`.
    fn describe() -> Option<komlog_guest::Subscription> {
        None
    }

    /// The package's impulses: `ctx.param("impulse")` names which one fired.
    /// The default refuses (a package that declares no impulse is never
    /// fired).
    fn on_update(ctx: komlog_guest::Context) -> Result<Vec<komlog_guest::Sample>, String> {
        let _ = ctx;
        Err("this package declares no impulses".into())
    }
}

/// Export a type implementing [`Package`] as the component's `load`,
/// `run-job`, `describe` and `on-update`. Call it once per crate, at module
/// level.
#[macro_export]
macro_rules! export_package {
    ($ty:ty) => {
        const _: () = {
            struct KomlogPackageExportAdapter;

            impl $crate::bindings::Guest for KomlogPackageExportAdapter {
                fn describe() -> ::core::option::Option<$crate::komlog_guest::Subscription> {
                    <$ty as $crate::Package>::describe()
                }

                fn on_update(
                    ctx: $crate::komlog_guest::bindings::Context,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::komlog_guest::Sample>,
                    ::std::string::String,
                > {
                    <$ty as $crate::Package>::on_update($crate::komlog_guest::Context::from(ctx))
                }

                fn load(
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<$crate::Manifest, ::std::string::String> {
                    <$ty as $crate::Package>::load($crate::Params::from(params))
                }

                fn run_job(
                    job_id: ::std::string::String,
                    ts: i64,
                    fired: ::std::vec::Vec<$crate::Schedule>,
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::komlog_guest::Sample>,
                    ::std::string::String,
                > {
                    <$ty as $crate::Package>::run_job($crate::JobCall {
                        id: job_id,
                        ts,
                        fired,
                        params: $crate::Params::from(params),
                    })
                }
            }

            $crate::bindings::__export_package_world!(
                KomlogPackageExportAdapter with_types_in $crate::bindings
            );
        };
    };
}

/// Declare the datapoints (local uris) that the datasource `uri` — a uri the
/// package writes text samples to — supplies: the values its text carries.
/// komlogd sends the list to the server (`send_ds_info`) once the server holds
/// a write to the datasource. A new call for the same datasource replaces the
/// list. Call it from [`Package::load`], which runs on every new instance.
/// `Err` names the invalid uri (a remote `user:uri`, a malformed one, more than
/// 1000 datapoints); nothing is declared then.
///
/// ```no_run
/// # use komlog_package::declare_supplies;
/// declare_supplies("host.disk", &["host.disk.root.used", "host.disk.root.free"])?;
/// # Ok::<(), String>(())
/// ```
pub fn declare_supplies<S: AsRef<str>>(uri: &str, supplies: &[S]) -> Result<(), String> {
    let list: Vec<String> = supplies.iter().map(|s| s.as_ref().to_owned()).collect();
    bindings::komlog::impulse::datasources::declare_supplies(uri, &list)
}

/// Everything a package usually needs: `use komlog_package::prelude::*;`.
pub mod prelude {
    pub use crate::declare_supplies;
    pub use crate::export_package;
    pub use crate::metrics::{Metrics, tag_uri};
    pub use crate::{Job, JobCall, Manifest, Package, PackageImpulse, Params, Schedule};
    pub use komlog_guest::prelude::*;
}
