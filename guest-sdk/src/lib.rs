//! Write komlogd impulses in Rust.
//!
//! An *impulse* is a function komlogd calls whenever one of the uris it
//! subscribes to receives a sample. It is compiled to a WebAssembly component
//! (`cargo build --release --target wasm32-wasip2`) that implements the
//! `impulse` world of the WIT package `komlog:impulse@0.1.0` (`wit/impulse.wit`
//! in the komlogd repository). This crate hides the generated bindings: you
//! write one [`Impulse`] impl and call [`export_impulse!`] once.
//!
//! What the crate gives you:
//!
//! * [`Impulse`], the trait your type implements, and [`export_impulse!`], the
//!   macro that exports it as the component's `describe` / `on-update`;
//! * [`Context`]: what one fire receives (timestamp, updated and other uris,
//!   parameters, and the window decoded on demand);
//! * [`window`]: the Arrow IPC window decoder ([`Window`], [`Series`],
//!   [`Values`]), which also works natively so you can unit-test impulses;
//! * builders for [`Sample`], [`Subscription`] and [`DataRequirements`], and
//!   durations in [`time`];
//! * [`log`]: lines in the agent's log;
//! * [`Stateful`] and [`export_stateful_impulse!`]: an impulse whose
//!   in-memory state survives a module swap (world `stateful-impulse`).
//!
//! # Example
//!
//! Write `<uri>.high` = 1.0 whenever the latest value of an updated datapoint
//! uri is above the `limit` parameter (default 90):
//!
//! ```
//! use komlog_guest::prelude::*;
//!
//! struct High;
//!
//! impl Impulse for High {
//!     // Optional: defaults komlogd.yaml may override. Without it the
//!     // `- impulses:` block must name the uris.
//!     fn describe() -> Option<Subscription> {
//!         Some(Subscription::new(["cpu.system", "cpu.user"]).with_past_delta(minutes(10)))
//!     }
//!
//!     fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
//!         let limit = ctx.param_f64("limit")?.unwrap_or(90.0);
//!         let window = ctx.window()?;
//!         let mut out = Vec::new();
//!         for uri in &ctx.updated {
//!             let Some(series) = window.series(uri) else { continue };
//!             let Some((_, ValueRef::Datapoint(v))) = series.last() else {
//!                 log::warn(&format!("{uri} is not a datapoint series"));
//!                 continue;
//!             };
//!             let high = if v > limit { 1.0 } else { 0.0 };
//!             out.push(Sample::datapoint(format!("{uri}.high"), ctx.ts, high));
//!         }
//!         Ok(out)
//!     }
//! }
//!
//! komlog_guest::export_impulse!(High);
//! # fn main() {
//! #     let bytes = komlog_guest::window::encode(&[
//! #         Series::datapoint("cpu.user", vec![10, 20], vec![50.0, 95.0]),
//! #     ]).unwrap();
//! #     let ctx = Context::new(20, vec!["cpu.user".into()], vec![], vec![], bytes);
//! #     let out = High::on_update(ctx).unwrap();
//! #     assert_eq!(out, vec![Sample::datapoint("cpu.user.high", 20, 1.0)]);
//! # }
//! ```
//!
//! `Cargo.toml` of such a guest:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! komlog-guest = { path = "../guest-sdk" }
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! codegen-units = 1
//! strip = true
//! ```
//!
//! # State across a module swap
//!
//! komlogd replaces an impulse's instance when its module file changes, and
//! `static` state is lost with it. An impulse that implements [`Stateful`] as
//! well and is exported with [`export_stateful_impulse!`] (instead of
//! [`export_impulse!`]) hands its state over: at the swap komlogd calls
//! `snapshot` on the old version and passes the bytes (at most 16 MiB) to
//! `restore` of the new one before its first fire. If either fails, the new
//! version starts fresh.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use komlog_guest::prelude::*;
//!
//! static SEEN: AtomicU64 = AtomicU64::new(0);
//!
//! struct Counter;
//!
//! impl Impulse for Counter {
//!     fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
//!         let n = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
//!         Ok(vec![Sample::datapoint("seen", ctx.ts, n as f64)])
//!     }
//! }
//!
//! impl Stateful for Counter {
//!     fn snapshot() -> Vec<u8> {
//!         SEEN.load(Ordering::Relaxed).to_le_bytes().to_vec()
//!     }
//!
//!     fn restore(state: Vec<u8>) -> Result<(), String> {
//!         let bytes: [u8; 8] = state.try_into().map_err(|_| "expected 8 bytes".to_string())?;
//!         SEEN.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//!
//! komlog_guest::export_stateful_impulse!(Counter);
//! # fn main() {
//! #     assert!(Counter::restore(vec![1, 2]).is_err());
//! #     Counter::restore(41u64.to_le_bytes().to_vec()).unwrap();
//! #     let out = Counter::on_update(Context::new(7, vec![], vec![], vec![], vec![])).unwrap();
//! #     assert_eq!(out, vec![Sample::datapoint("seen", 7, 42.0)]);
//! #     assert_eq!(Counter::snapshot(), 42u64.to_le_bytes().to_vec());
//! # }
//! ```
//!
//! # Testing impulses natively
//!
//! Everything except the host import works on any target: build a window with
//! [`window::encode`], a [`Context`] with [`Context::new`], and call your
//! `on_update` from an ordinary `#[test]`. Off wasm, [`log`] writes to stderr.

#![warn(missing_docs)]

pub mod context;
pub mod log;
pub mod sample;
pub mod subscription;
pub mod time;
pub mod window;

pub use context::Context;
pub use window::{Series, ValueRef, Values, Window, WindowError};

/// The generated bindings for the `impulse` world (raw WIT types, the `Guest`
/// trait and the export macro). Not part of the stable API: use
/// [`export_impulse!`] and the re-exports at the crate root instead.
#[doc(hidden)]
#[allow(
    clippy::too_many_arguments,
    reason = "generated: the flattened canonical ABI of `on-update` takes 9 arguments"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "impulse",
        pub_export_macro: true,
        export_macro_name: "__export_impulse_world",
        default_bindings_module: "komlog_guest::bindings",
        additional_derives: [PartialEq],
    });

    /// The bindings of the `stateful-impulse` world, sharing the types above.
    pub mod stateful {
        wit_bindgen::generate!({
            path: "../wit",
            world: "stateful-impulse",
            with: {
                "komlog:impulse/types@0.1.0": crate::bindings::komlog::impulse::types,
                "komlog:impulse/host@0.1.0": crate::bindings::komlog::impulse::host,
            },
            pub_export_macro: true,
            export_macro_name: "__export_stateful_impulse_world",
            default_bindings_module: "komlog_guest::bindings::stateful",
        });
    }
}

/// One sample an impulse returns: a [`Value`] of a uri at a timestamp. Build
/// it with [`Sample::datapoint`] or [`Sample::datasource`].
pub use bindings::komlog::impulse::types::Sample;

/// The value of a [`Sample`]; its case fixes the metric kind of the uri.
pub use bindings::komlog::impulse::types::Value;

/// The kind of a metric: text (`Datasource`) or number (`Datapoint`).
pub use bindings::komlog::impulse::types::Kind;

/// A module's default subscription, returned by [`Impulse::describe`]. Build it
/// with [`Subscription::new`] and the `with_*` methods.
pub use bindings::komlog::impulse::types::Subscription;

/// How much history the window holds per uri (`past_delta` in µs,
/// `past_count` samples).
pub use bindings::komlog::impulse::types::DataRequirements;

/// A point in time: microseconds since the Unix epoch, UTC.
pub use bindings::komlog::impulse::types::Timestamp;

/// A span of time in microseconds (see [`time`] for helpers).
pub use bindings::komlog::impulse::types::Duration;

/// The Arrow crates this SDK decodes windows with, re-exported so authors who
/// use [`Window::record_batches`] get matching versions.
pub mod arrow {
    #[doc(no_inline)]
    pub use arrow_array as array;
    #[doc(no_inline)]
    pub use arrow_ipc as ipc;
    #[doc(no_inline)]
    pub use arrow_schema as schema;
}

/// An impulse method: implement it on a type of yours and export that type
/// with [`export_impulse!`].
///
/// Both functions are associated functions (no `self`): komlogd may keep an
/// instance warm between fires, so `static` state survives across calls of
/// one instance, but the instance can be replaced at any time (after a trap,
/// on reload) and must not be relied upon.
pub trait Impulse {
    /// The module's default subscription: uris, window size and minimum
    /// delay between runs. The `- impulses:` block of komlogd.yaml overrides
    /// each field it sets. Called once when the module is loaded.
    ///
    /// The default returns `None`: the configuration must then give `uris`.
    fn describe() -> Option<Subscription> {
        None
    }

    /// Called for each fire. Return the samples to write (possibly none), or
    /// `Err` with a message to report a failure of this fire: komlogd logs and
    /// counts it and discards the samples. A panic traps the instance, which
    /// komlogd then replaces.
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String>;
}

/// An impulse whose in-memory state is carried over when komlogd swaps in a
/// new version of its module. Implement it besides [`Impulse`] and export the
/// type with [`export_stateful_impulse!`].
///
/// At a swap komlogd calls [`Stateful::snapshot`] on the instance of the old
/// version, then [`Stateful::restore`] with those bytes on the new version's
/// instance, before its first fire. Nothing else calls them: an instance
/// replaced after a trap starts empty. Both run with the deadline and fuel of
/// one fire.
pub trait Stateful {
    /// The instance's state, in a format of your choosing. At most 16 MiB:
    /// komlogd refuses a bigger snapshot and the new version starts fresh.
    fn snapshot() -> Vec<u8>;

    /// Load a state written by `snapshot` — possibly by an older version of
    /// the module, so check what you read. `Err` (or a panic) makes komlogd
    /// log a warning and serve the next fire from a fresh instance.
    fn restore(state: Vec<u8>) -> Result<(), String>;
}

/// Export a type implementing [`Impulse`] as the component's `describe` and
/// `on-update` functions. Call it exactly once per guest crate, at module
/// level:
///
/// ```
/// # use komlog_guest::prelude::*;
/// # struct MyImpulse;
/// # impl Impulse for MyImpulse {
/// #     fn on_update(_: Context) -> Result<Vec<Sample>, String> { Ok(vec![]) }
/// # }
/// komlog_guest::export_impulse!(MyImpulse);
/// # fn main() {}
/// ```
///
/// The argument is any type path (`MyImpulse`, `crate::impls::MyImpulse`).
#[macro_export]
macro_rules! export_impulse {
    ($ty:ty) => {
        const _: () = {
            struct KomlogGuestExportAdapter;

            impl $crate::bindings::Guest for KomlogGuestExportAdapter {
                fn describe() -> ::core::option::Option<$crate::Subscription> {
                    <$ty as $crate::Impulse>::describe()
                }

                fn on_update(
                    ctx: $crate::bindings::Context,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Sample>, ::std::string::String>
                {
                    <$ty as $crate::Impulse>::on_update($crate::Context::from(ctx))
                }
            }

            $crate::bindings::__export_impulse_world!(
                KomlogGuestExportAdapter with_types_in $crate::bindings
            );
        };
    };
}

/// Export a type implementing [`Impulse`] and [`Stateful`] as a component of
/// the `stateful-impulse` world: `describe` and `on-update` as with
/// [`export_impulse!`], plus `snapshot` and `restore`. Use it instead of
/// [`export_impulse!`], exactly once per guest crate, at module level:
///
/// ```
/// # use komlog_guest::prelude::*;
/// # struct MyImpulse;
/// # impl Impulse for MyImpulse {
/// #     fn on_update(_: Context) -> Result<Vec<Sample>, String> { Ok(vec![]) }
/// # }
/// # impl Stateful for MyImpulse {
/// #     fn snapshot() -> Vec<u8> { Vec::new() }
/// #     fn restore(_: Vec<u8>) -> Result<(), String> { Ok(()) }
/// # }
/// komlog_guest::export_stateful_impulse!(MyImpulse);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_stateful_impulse {
    ($ty:ty) => {
        const _: () = {
            struct KomlogGuestStatefulExportAdapter;

            impl $crate::bindings::stateful::Guest for KomlogGuestStatefulExportAdapter {
                fn describe() -> ::core::option::Option<$crate::Subscription> {
                    <$ty as $crate::Impulse>::describe()
                }

                fn on_update(
                    ctx: $crate::bindings::Context,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Sample>, ::std::string::String>
                {
                    <$ty as $crate::Impulse>::on_update($crate::Context::from(ctx))
                }

                fn snapshot() -> ::std::vec::Vec<u8> {
                    <$ty as $crate::Stateful>::snapshot()
                }

                fn restore(
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Stateful>::restore(state)
                }
            }

            $crate::bindings::stateful::__export_stateful_impulse_world!(
                KomlogGuestStatefulExportAdapter with_types_in $crate::bindings::stateful
            );
        };
    };
}

/// Everything a guest usually needs: `use komlog_guest::prelude::*;`.
pub mod prelude {
    pub use crate::context::Context;
    pub use crate::export_impulse;
    pub use crate::export_stateful_impulse;
    pub use crate::log;
    pub use crate::time::{DAY, HOUR, MINUTE, SECOND, days, hours, minutes, seconds};
    pub use crate::window::{Series, ValueRef, Values, Window, WindowError};
    pub use crate::{DataRequirements, Impulse, Kind, Sample, Stateful, Subscription, Value};
}
