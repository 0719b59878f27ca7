//! Building the Rust example guests (`examples/`, a cargo workspace of its own,
//! for wasm32-wasip2, release profile). Shared by `tests/build.rs` and the
//! integration tests of other packages (`host/tests/common`), which include
//! this file with `#[path]`, so that every package's tests build the guests
//! they load instead of trusting whatever an earlier build left behind: cargo
//! decides what is stale and rebuilds only that (a no-op takes well under a
//! second). The guests have their own target directory (`examples/target`), so
//! this never waits for the lock of the build that runs the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the guests land: `<crate_name>.wasm` (`-` becomes `_`).
pub fn out_dir(root: &Path) -> PathBuf {
    root.join("examples/target/wasm32-wasip2/release")
}

/// Path of the guest of crate `name` (`probe`, `wrong-world`, `probe_package`)
/// in `dir`, the output of [`build`]; fails naming it when there is none.
#[allow(dead_code)] // not used by the build script
pub fn guest_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest {name} not found after building examples/ (no such crate?): {}",
        path.display()
    );
    path
}

/// `cargo build --release --target wasm32-wasip2` of `examples/`, with the
/// target added first when it is missing. `cargo` is the cargo to run. The
/// build's output goes to this process's stderr.
pub fn build(cargo: &Path, root: &Path) -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    let manifest = root.join("examples/Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest);
    // Settings meant for the host build must not leak into the guest build.
    let status = without_outer_build_settings(&mut cmd)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !status.success() {
        return Err(format!(
            "building the guests of {} failed ({status}; see the output above)",
            manifest.display()
        ));
    }
    Ok(out_dir(root))
}

/// `cargo test --workspace --target <host> …` of `examples/`, natively, in a
/// target directory of its own (`target/examples-native`, so that it never
/// waits for the lock of the build that runs the tests), with the settings
/// meant for that build kept out. The caller adds `--no-run` (to build them
/// ahead, as `cargo xtask test` does beside the main build) or runs them; both
/// build the same artifacts, so the run finds them current.
#[allow(dead_code)] // not used by the build script
pub fn native_tests(cargo: &Path, root: &Path, host: &str) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--target", host])
        .arg("--manifest-path")
        .arg(root.join("examples/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target/examples-native"));
    without_outer_build_settings(&mut cmd);
    cmd
}

/// Removes from `cmd`'s environment what cargo sets for the build that runs
/// this code (flags, target directory and target, the jobserver), which must
/// not reach a build of `examples/`.
fn without_outer_build_settings(cmd: &mut Command) -> &mut Command {
    for name in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(name);
    }
    cmd
}

/// `rustup target add` is idempotent, but asking first is quicker.
fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    let ok = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed"
                .into(),
        )
    }
}
