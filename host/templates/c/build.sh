#!/usr/bin/env bash
# Build @NAME@.wasm, a komlogd impulse component, with komlog-c: it generates
# the bindings from the impulse WIT, compiles with clang for wasm32-wasi and
# adds the WASI adapter. Needs clang, lld and wasi-libc (Debian/Ubuntu:
# apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32) and komlog-c
# (cargo install --locked --path <komlogd source>/guest-sdk/c --profile tool,
# about 40 s; or set KOMLOG_C to its path).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tool="${KOMLOG_C:-komlog-c}"
if ! command -v "$tool" >/dev/null; then
    echo "build.sh: komlog-c not found: cargo install --locked --path <komlogd source>/guest-sdk/c --profile tool (or set KOMLOG_C)" >&2
    exit 1
fi
"$tool" build -o @NAME@.wasm impulse.c >/dev/null
echo "built $(pwd)/@NAME@.wasm"
