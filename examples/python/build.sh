#!/usr/bin/env bash
# Build the Python example impulses (summary, threshold, counter) as WebAssembly
# components with componentize-py, from wit/impulse.wit and the Python SDK
# module guest-sdk/python/komlog_impulse.py.
#
#   examples/python/build.sh          # from any directory
#
# componentize-py (pinned below) is installed from PyPI into
# target/componentize-py-venv on first use; needs python3 with venv.
# Output: examples/target/python/<name>.wasm. A component is rebuilt only when
# its sources, the SDK, the WIT or the tool version changed (a .stamp file
# beside it holds the hash of those inputs).
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/componentize-py-venv"
tool="$venv/bin/componentize-py"
out_dir="$root/examples/target/python"
sdk="$root/guest-sdk/python"

if ! "$tool" --version 2>/dev/null | grep -q " $COMPONENTIZE_PY_VERSION\$"; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

mkdir -p "$out_dir"
# Each example and its world.
for entry in summary:impulse threshold:impulse counter:stateful-impulse; do
    name="${entry%%:*}"
    world="${entry#*:}"
    src="$here/$name"
    out="$out_dir/$name.wasm"
    stamp="$( (cd "$root" && sha256sum wit/impulse.wit guest-sdk/python/komlog_impulse.py examples/python/$name/*.py; echo "$COMPONENTIZE_PY_VERSION") | sha256sum | cut -d' ' -f1)"
    if [[ -f "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
        printf '%-48s %10d  (up to date)\n' "$out" "$(wc -c <"$out")"
        continue
    fi
    start=$(date +%s.%N)
    "$tool" -d "$root/wit" -w "$world" componentize app -p "$src" -p "$sdk" -o "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
    end=$(date +%s.%N)
    awk -v f="$out" -v b="$(wc -c <"$out")" -v s="$start" -v e="$end" \
        'BEGIN { printf "%-48s %10d  built in %.1f s\n", f, b, e - s }'
done
