//! Host bindings generated from `wit/package.wit` (world `package`), in one
//! place. The types and the `host` interface are the impulse world's
//! ([`crate::engine::bindings`]), so samples and subscriptions are one type.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "%package",
    with: {
        "komlog:impulse/types": crate::engine::bindings::komlog::impulse::types,
        "komlog:impulse/host": crate::engine::bindings::komlog::impulse::host,
    },
});

pub use komlog::impulse::package_types::{Job, PackageImpulse};
