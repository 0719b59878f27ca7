#!/usr/bin/env bash
# Build @NAME@.wasm, a komlogd package component (needs the Rust toolchain;
# the wasm32-wasip2 target is added if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/@CRATE@.wasm" @NAME@.wasm
echo "built $(pwd)/@NAME@.wasm"
