//! Host bindings generated from `wit/impulse.wit` (worlds `impulse` and
//! `stateful-impulse`), in one place. The stateful world's types and `host`
//! interface are the impulse world's, so a stateful module is called with the
//! same types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "impulse",
});

pub use komlog::impulse::host::Level;
pub use komlog::impulse::types::{DataRequirements, Value};

/// Bindings of the `stateful-impulse` world: the impulse world plus
/// `snapshot` and `restore`.
pub mod stateful {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "stateful-impulse",
        with: {
            "komlog:impulse/types": crate::engine::bindings::komlog::impulse::types,
            "komlog:impulse/host": crate::engine::bindings::komlog::impulse::host,
        },
    });
}
