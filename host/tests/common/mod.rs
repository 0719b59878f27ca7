//! What the agent's integration tests share: where the example guests are.

use std::path::{Path, PathBuf};

/// Path of a built example guest (`df`, `threshold`, `probe_package`, …).
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "guest {} not found: run `cargo test --workspace` (the komlogd-tests crate builds the guests)",
        path.display()
    );
    path
}
