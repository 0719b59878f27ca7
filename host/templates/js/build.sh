#!/usr/bin/env bash
# Build @NAME@.wasm, a komlogd impulse component, with componentize-js,
# installed on first use by `npm ci` from package-lock.json (the exact versions
# komlogd is tested with); or set COMPONENTIZE_JS to the path of its src/cli.js.
# wasi:http is left out: komlogd links plain WASI 0.2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cli="${COMPONENTIZE_JS:-node_modules/@bytecodealliance/componentize-js/src/cli.js}"
if [[ ! -f "$cli" ]]; then
    npm ci --no-audit --no-fund
fi
node "$cli" app.js --wit wit --world-name impulse -d http fetch-event -o @NAME@.wasm >/dev/null
echo "built $(pwd)/@NAME@.wasm"
