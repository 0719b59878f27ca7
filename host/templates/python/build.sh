#!/usr/bin/env bash
# Build @NAME@.wasm, a komlogd impulse component, with componentize-py
# (`pip install componentize-py==0.25.1`; or set COMPONENTIZE_PY to its path).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tool="${COMPONENTIZE_PY:-componentize-py}"
if ! command -v "$tool" >/dev/null; then
    echo "build.sh: componentize-py not found: pip install componentize-py==0.25.1 (or set COMPONENTIZE_PY)" >&2
    exit 1
fi
"$tool" -d wit -w impulse componentize app -p . -o @NAME@.wasm >/dev/null
echo "built $(pwd)/@NAME@.wasm"
