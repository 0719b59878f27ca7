#!/usr/bin/env bash
# Check that every `komlogd new` template builds and runs: for each impulse
# language it creates a project with the real komlogd binary and runs the
# project's own build.sh (the Rust one's unit tests too, natively with `cargo
# test`); it does the same for the package template (`komlogd new package`).
# Then it loads all four impulses and the package in one agent (`komlogd
# check`), uploads two readings per language and checks the value each impulse
# wrote (the mean of its window), and runs the agent until the package's job
# has written its samples.
#
#   tests/templates.sh            # from any directory; run by .ci/run
#
# Each route is the one a user takes: the Python build.sh creates the
# project's .venv and installs componentize-py into it, and the JavaScript one
# runs `npm ci` from the template's package-lock.json (pip's and npm's caches
# keep the downloads to the first run). komlog-c comes from this workspace.
# The Rust projects build in examples/target with the examples' Cargo.lock,
# and run their unit tests in target/examples-native, reusing the compiled
# dependencies of the examples' builds and tests.
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
rm -rf "$work"/mean-* "$work"/pkg-* "$work/data" "$work/komlogd.yaml"
mkdir -p "$work"
unset COMPONENTIZE_PY COMPONENTIZE_JS
export KOMLOG_C="$root/target/debug/komlog-c"
host_target="$(rustc -vV | sed -n 's/^host: //p')"

# Build a Rust project (impulse or package) for wasm32-wasip2 and run its unit
# tests natively; fail, with cargo's output, if either fails or no test ran.
build_rust() {
    local project="$1" tests
    cp "$root/examples/Cargo.lock" "$project/"
    CARGO_TARGET_DIR="$root/examples/target" "$project/build.sh" >/dev/null 2>&1 ||
        { CARGO_TARGET_DIR="$root/examples/target" "$project/build.sh"; exit 1; }
    if ! tests="$(cd "$project" && CARGO_TARGET_DIR="$root/target/examples-native" \
        cargo test --target "$host_target" 2>&1)"; then
        echo "$tests" >&2
        echo "$(basename "$project"): cargo test failed" >&2
        exit 1
    fi
    if ! grep -Eq '^test result: ok\. [1-9][0-9]* passed; 0 failed' <<<"$tests"; then
        echo "$tests" >&2
        echo "$(basename "$project"): cargo test ran no test" >&2
        exit 1
    fi
    grep -E '^test result:' <<<"$tests" | sed "s/^/$(basename "$project") unit tests: /"
}

config="$work/komlogd.yaml"
echo "- username: templates" >"$config"
for lang in rust python js c; do
    name="mean-$lang"
    start=$(date +%s.%N)
    "$komlogd" new impulse --lang "$lang" --dir "$work" "$name" >/dev/null
    if [[ "$lang" == rust ]]; then
        build_rust "$work/$name"
    else
        "$work/$name/build.sh" >/dev/null
    fi
    end=$(date +%s.%N)
    wasm="$work/$name/$name.wasm"
    awk -v l="$lang" -v b="$(wc -c <"$wasm")" -v s="$start" -v e="$end" \
        'BEGIN { printf "template %-7s built: %9d bytes in %.1f s\n", l, b, e - s }'
    # The project's own golden test, as its README gives it.
    (cd "$work/$name" && "$komlogd" impulse test "$name.wasm" --data testdata/cpu.csv \
        --uris cpu.system --data-reqs past_count=10 --expect testdata/expected.jsonl) ||
        { echo "template $lang: its golden test failed" >&2; exit 1; }
    cat >>"$config" <<YAML
- impulses:
    filename: $wasm
    uris: [t.$lang]
    data_reqs: {past_count: 10}
YAML
done

# The package template: Rust only; other languages are refused.
if out="$("$komlogd" new package --lang python --dir "$work" pkg-python 2>&1)" ||
    ! grep -q "packages are written in Rust only" <<<"$out" || [[ -e "$work/pkg-python" ]]; then
    echo "komlogd new package --lang python: expected a refusal, got: $out" >&2
    exit 1
fi
package=pkg-load
start=$(date +%s.%N)
"$komlogd" new package --lang rust --dir "$work" "$package" >/dev/null
build_rust "$work/$package"
end=$(date +%s.%N)
wasm="$work/$package/$package.wasm"
awk -v b="$(wc -c <"$wasm")" -v s="$start" -v e="$end" \
    'BEGIN { printf "template package built: %9d bytes in %.1f s\n", b, e - s }'
cat >>"$config" <<YAML
- package:
    install: $wasm
    params: {interval: 1}
    grants: {dirs: [/proc]}
YAML

start=$(date +%s.%N)
checked="$("$komlogd" -c "$config" check)"
end=$(date +%s.%N)
echo "$checked"
awk -v s="$start" -v e="$end" 'BEGIN { printf "komlogd check (load all four and the package): %.1f s\n", e - s }'
if ! grep -q "job loadavg: " <<<"$checked"; then
    echo "komlogd check did not list the package's job loadavg" >&2
    exit 1
fi
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

# One run of the package's job, in a running agent: its first fire is at once.
"$komlogd" -c "$config" >"$work/agent.out" 2>&1 &
agent=$!
trap 'kill "$agent" 2>/dev/null || true' EXIT
got=""
for _ in $(seq 120); do
    got="$("$komlogd" -c "$config" query "$package.load15" --json -n 1 2>/dev/null || true)"
    grep -Eq '"value":[0-9.e+-]+}' <<<"$got" && break
    sleep 0.5
done
kill -TERM "$agent"
wait "$agent" || { echo "the agent exited with status $?:" >&2; cat "$work/agent.out" >&2; exit 1; }
trap - EXIT
if ! grep -Eq '"value":[0-9.e+-]+}' <<<"$got"; then
    echo "package $package: no sample at $package.load15 after 60 s; found: $got" >&2
    cat "$work/agent.out" >&2
    exit 1
fi
echo "package $package: $package.load15 = $(sed -E 's/.*"value":([0-9.e+-]+)}.*/\1/' <<<"$got")"
