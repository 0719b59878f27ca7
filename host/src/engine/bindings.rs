//! Host bindings generated from `wit/impulse.wit` (world `impulse`), in one place.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "impulse",
});

pub use komlog::impulse::host::Level;
pub use komlog::impulse::types::{DataRequirements, Value};
