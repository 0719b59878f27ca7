//! What the agent's integration tests share: the example guests, built (or
//! found current) by the first test that needs one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "../../../tests/support/rust_guests.rs"]
mod rust_guests;

#[path = "../../../tests/support/child.rs"]
pub mod child;

#[path = "../../../tests/support/part.rs"]
pub mod part;

#[path = "../../../tests/support/units.rs"]
pub mod units;

/// The cargo running these tests (cargo sets `CARGO` for test processes).
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .unwrap_or_else(|| env!("CARGO").into())
        .into()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ lives in the repository root")
        .to_owned()
}

/// Path of an example guest (`df`, `threshold`, `probe_package`, …). The first
/// call in a test binary builds the Rust guests of `examples/` (cargo rebuilds
/// only what changed), so a test never loads a stale or missing guest.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| rust_guests::build(&cargo(), &repo_root()))
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    rust_guests::guest_in(dir, name)
}
