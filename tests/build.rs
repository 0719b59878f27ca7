//! Builds the guest components in `examples/` so the integration tests run real
//! `.wasm` files, and tells the tests where they are:
//!
//! * the Rust guests (their own cargo workspace, target wasm32-wasip2, release)
//!   → `KOMLOG_GUESTS_DIR`;
//! * the C, Python and JavaScript examples → `KOMLOG_LANG_GUESTS_DIR`
//!   (`<dir>/<lang>/<name>.wasm`). C is built with the `komlog-c` library
//!   (clang + wasi-libc), Python and JavaScript by `examples/{python,js}/build.sh`,
//!   which install their pinned tools under `target/` on first use and rebuild
//!   only what changed.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/rust_guests.rs"]
mod rust_guests;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ lives in the repository root")
        .to_owned();
    let examples = root.join("examples");
    watch(&root.join("wit"));
    watch(&root.join("guest-sdk"));
    watch(&examples);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = rust_guests::build(Path::new(&cargo), &root).unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rustc-env=KOMLOG_GUESTS_DIR={}", out.display());

    let lang_dir = examples.join("target");
    build_c_examples(&root, &lang_dir.join("c"));
    for lang in ["python", "js"] {
        let script = examples.join(lang).join("build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} failed (see the output above)",
            script.display()
        );
    }
    println!(
        "cargo:rustc-env=KOMLOG_LANG_GUESTS_DIR={}",
        lang_dir.display()
    );
    println!("cargo:rustc-env=KOMLOG_REPO_ROOT={}", root.display());
    // The platform the tests run on, for the guests' native unit tests.
    let host = std::env::var("TARGET").expect("set by cargo");
    println!("cargo:rustc-env=KOMLOG_HOST_TARGET={host}");
}

/// The C examples, `examples/c/<name>/<name>.c`, as `out/<name>.wasm`.
fn build_c_examples(root: &Path, out: &Path) {
    std::fs::create_dir_all(out).expect("create the C output directory");
    for (name, world) in [
        ("summary", komlog_c::WORLD),
        ("threshold", komlog_c::WORLD),
        ("counter", komlog_c::STATEFUL_WORLD),
    ] {
        let options = komlog_c::BuildOptions {
            sources: vec![root.join("examples/c").join(name).join(format!("{name}.c"))],
            output: out.join(format!("{name}.wasm")),
            wit: Some(root.join("wit")),
            world: Some(world.to_owned()),
            ..komlog_c::BuildOptions::default()
        };
        if let Err(e) = komlog_c::build(&options) {
            panic!("building the C example {name}: {e:#}");
        }
    }
}

/// Ask cargo to rerun this script when sources under `dir` change (skipping build output).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // The directory itself too: a file added to it changes its mtime.
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
