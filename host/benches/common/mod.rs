//! What the agent's benchmarks share: the example guests and the quick mode.

use std::path::{Path, PathBuf};

/// Where `examples/build.sh` puts the guests.
pub fn guests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/target/wasm32-wasip2/release")
}

/// A built example guest; exits with status 2 and a hint when it is missing.
pub fn guest(name: &str) -> PathBuf {
    let p = guests().join(format!("{name}.wasm"));
    if !p.exists() {
        eprintln!(
            "{} is missing: build the guests first with examples/build.sh",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

/// `KOMLOGD_BENCH_QUICK` is set: a short run.
pub fn quick() -> bool {
    std::env::var_os("KOMLOGD_BENCH_QUICK").is_some()
}
