#!/usr/bin/env bash
# Build every guest of this workspace as a WebAssembly component
# (wasm32-wasip2, release profile) and list the .wasm files with their sizes.
#
#   examples/build.sh                 # from any directory
#   examples/build.sh -p probe        # extra arguments go to `cargo build`
#
# Output: examples/target/wasm32-wasip2/release/<crate_name>.wasm (or under
# $CARGO_TARGET_DIR if set). Each file must start with the component magic
# `\0asm` + `0d 00 01 00`; the script fails if one is missing or is a core
# module.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# Crate names with `-` turned into `_`: the names of the produced files.
guests=(summary threshold df trivial probe misbehave wrong_world tagged_a tagged_b counter)

# Idempotent; quiet unless it fails.
if ! out="$(rustup target add wasm32-wasip2 2>&1)"; then
    echo "$out" >&2
    echo "build.sh: could not install the wasm32-wasip2 target" >&2
    exit 1
fi

start=$(date +%s.%N)
cargo build --release --target wasm32-wasip2 --workspace "$@"
end=$(date +%s.%N)

target_dir="${CARGO_TARGET_DIR:-$here/target}"
out_dir="$target_dir/wasm32-wasip2/release"
status=0
printf '\n%-64s %10s\n' "component" "bytes"
for g in "${guests[@]}"; do
    f="$out_dir/$g.wasm"
    if [[ ! -f "$f" ]]; then
        # Not an error when `-p` selected other crates.
        [[ $# -gt 0 ]] && continue
        echo "missing: $f" >&2
        status=1
        continue
    fi
    magic="$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')"
    if [[ "$magic" != "0061736d0d000100" ]]; then
        echo "not a component (header $magic): $f" >&2
        status=1
        continue
    fi
    printf '%-64s %10d\n' "$f" "$(wc -c <"$f")"
done
awk -v s="$start" -v e="$end" 'BEGIN { printf "\nbuild time: %.1f s\n", e - s }'
exit $status
