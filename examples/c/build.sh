#!/usr/bin/env bash
# Build the C example impulses (summary, threshold, counter) as WebAssembly components
# with komlog-c (guest-sdk/c): bindings generated from wit/impulse.wit by the
# wit-bindgen-c library, Debian's clang for wasm32-wasi with wasi-libc, and
# the WASI preview1 reactor adapter. No wit-bindgen or wasm-tools CLI needed.
#
#   examples/c/build.sh               # from any directory
#
# Needs clang, lld and wasi-libc (Debian/Ubuntu:
# apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32).
# Output: examples/target/c/<name>.wasm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out_dir="$root/examples/target/c"

(cd "$root" && cargo build --quiet -p komlog-c)
tool="$root/target/debug/komlog-c"

mkdir -p "$out_dir"
# Each example and its world.
for entry in summary:impulse threshold:impulse counter:stateful-impulse; do
    name="${entry%%:*}"
    world="${entry#*:}"
    start=$(date +%s.%N)
    "$tool" build --wit "$root/wit" --world "$world" -o "$out_dir/$name.wasm" "$here/$name/$name.c" >/dev/null
    end=$(date +%s.%N)
    out="$out_dir/$name.wasm"
    awk -v f="$out" -v b="$(wc -c <"$out")" -v s="$start" -v e="$end" \
        'BEGIN { printf "%-48s %10d  built in %.2f s\n", f, b, e - s }'
done
