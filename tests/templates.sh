#!/usr/bin/env bash
# Check that every `komlogd new impulse --lang …` template builds and runs:
# for each language it creates a project with the real komlogd binary, runs the
# project's own build.sh, then loads all four components in one agent
# (`komlogd check`), uploads two readings per language and checks the value
# each impulse wrote (the mean of its window).
#
#   tests/templates.sh            # from any directory; run by .ci/run
#
# The tools come from where the example builds keep them (so nothing is
# installed twice): componentize-py from target/componentize-py-venv,
# componentize-js from target/js-tools (run examples/python/build.sh and
# examples/js/build.sh first), komlog-c from this workspace. The Rust template
# builds in examples/target with the examples' Cargo.lock, reusing their
# compiled dependencies.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$root/target/template-check"
cd "$root"
# The same cargo invocations as the test command and examples/c/build.sh, so
# after them these are up to date and nothing is rebuilt (building komlogd on
# its own would resolve other features of shared dependencies and recompile
# them).
cargo test --quiet --workspace --no-run 2>/dev/null || cargo test --workspace --no-run
cargo build --quiet -p komlog-c
komlogd="$root/target/debug/komlogd"

# Fresh projects and store each run; the agent's compiled cache (cache/) is
# kept, so unchanged components are not compiled again.
rm -rf "$work"/mean-* "$work/data" "$work/komlogd.yaml"
mkdir -p "$work"
export COMPONENTIZE_PY="$root/target/componentize-py-venv/bin/componentize-py"
export COMPONENTIZE_JS="$root/target/js-tools/node_modules/@bytecodealliance/componentize-js/src/cli.js"
export KOMLOG_C="$root/target/debug/komlog-c"

config="$work/komlogd.yaml"
echo "- username: templates" >"$config"
for lang in rust python js c; do
    name="mean-$lang"
    start=$(date +%s.%N)
    "$komlogd" new impulse --lang "$lang" --dir "$work" "$name" >/dev/null
    if [[ "$lang" == rust ]]; then
        cp "$root/examples/Cargo.lock" "$work/$name/"
        CARGO_TARGET_DIR="$root/examples/target" "$work/$name/build.sh" >/dev/null 2>&1 ||
            { CARGO_TARGET_DIR="$root/examples/target" "$work/$name/build.sh"; exit 1; }
    else
        "$work/$name/build.sh" >/dev/null
    fi
    end=$(date +%s.%N)
    wasm="$work/$name/$name.wasm"
    awk -v l="$lang" -v b="$(wc -c <"$wasm")" -v s="$start" -v e="$end" \
        'BEGIN { printf "template %-7s built: %9d bytes in %.1f s\n", l, b, e - s }'
    cat >>"$config" <<YAML
- impulses:
    filename: $wasm
    uris: [t.$lang]
    data_reqs: {past_count: 10}
YAML
done

start=$(date +%s.%N)
"$komlogd" -c "$config" check
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "komlogd check (load all four): %.1f s\n", e - s }'
for lang in rust python js c; do
    echo 4 | "$komlogd" -c "$config" -u "t.$lang" --datapoint --ts 1000000 >/dev/null
    echo 7 | "$komlogd" -c "$config" -u "t.$lang" --datapoint --ts 2000000 >/dev/null
    got="$("$komlogd" -c "$config" query "t.$lang.mean-$lang" --json -n 1)"
    # The window holds both readings: mean (4 + 7) / 2 = 5.5.
    if ! grep -q '"value":5.5}' <<<"$got"; then
        echo "template $lang: expected t.$lang.mean-$lang = 5.5, found: $got" >&2
        exit 1
    fi
    echo "template $lang: t.$lang.mean-$lang = 5.5"
done
