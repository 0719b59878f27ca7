#!/usr/bin/env bash
# Build the JavaScript example impulses (summary, threshold, counter) as WebAssembly
# components with componentize-js, from wit/impulse.wit and the JS SDK module
# guest-sdk/js/komlog_impulse.js.
#
#   examples/js/build.sh              # from any directory
#
# componentize-js is pinned by package.json + package-lock.json here and
# installed with `npm ci` into target/js-tools on first use (needs node and
# npm). The lock also lists, as optional entries with no download, the
# other platforms' native packages that the registry does not carry at the
# declared version: without them `npm ci` refuses the lock as out of sync.
# componentize-js is called through its own CLI with wasi:http disabled
# (`-d http fetch-event`): the agent links plain WASI 0.2, not wasi:http.
# Output: examples/target/js/<name>.wasm. A component is rebuilt only when its
# sources, the SDK, the WIT or the lock file changed (a .stamp file beside it
# holds the hash of those inputs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/target/js-tools"
cli="$tools/node_modules/@bytecodealliance/componentize-js/src/cli.js"
out_dir="$root/examples/target/js"

mkdir -p "$tools"
if [[ ! -f "$cli" ]] || ! cmp -s "$here/package-lock.json" "$tools/package-lock.json"; then
    echo "installing componentize-js (npm ci) into $tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$out_dir"
# Each example and its world.
for entry in summary:impulse threshold:impulse counter:stateful-impulse; do
    name="${entry%%:*}"
    world="${entry#*:}"
    out="$out_dir/$name.wasm"
    stamp="$( (cd "$root" && sha256sum wit/impulse.wit guest-sdk/js/komlog_impulse.js examples/js/$name/*.js examples/js/package-lock.json) | sha256sum | cut -d' ' -f1)"
    if [[ -f "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
        printf '%-48s %10d  (up to date)\n' "$out" "$(wc -c <"$out")"
        continue
    fi
    start=$(date +%s.%N)
    # The app imports './komlog_impulse.js': put both side by side.
    stage="$out_dir/$name.src"
    rm -rf "$stage"
    mkdir -p "$stage"
    cp "$here/$name/"*.js "$root/guest-sdk/js/komlog_impulse.js" "$stage/"
    node "$cli" "$stage/app.js" --wit "$root/wit" --world-name "$world" \
        -d http fetch-event -o "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
    end=$(date +%s.%N)
    awk -v f="$out" -v b="$(wc -c <"$out")" -v s="$start" -v e="$end" \
        'BEGIN { printf "%-48s %10d  built in %.1f s\n", f, b, e - s }'
done
