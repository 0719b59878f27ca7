#!/usr/bin/env bash
# Build @NAME@.wasm, a komlogd impulse component, with componentize-py 0.25.1
# from the project's own virtual environment, created on first use:
#
#     python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1
#
# (a venv, because the Python of Debian and Ubuntu refuses a bare
# `pip install`: PEP 668). Set COMPONENTIZE_PY to use another componentize-py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version=0.25.1
tool="${COMPONENTIZE_PY:-.venv/bin/componentize-py}"
if [[ -z "${COMPONENTIZE_PY:-}" && ! -x "$tool" ]]; then
    if ! python3 -m venv .venv; then
        echo "build.sh: cannot create .venv: needs python3 with venv (Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi
if ! command -v "$tool" >/dev/null; then
    echo "build.sh: componentize-py not found at $tool" >&2
    exit 1
fi
"$tool" -d wit -w impulse componentize app -p . -o @NAME@.wasm >/dev/null
echo "built $(pwd)/@NAME@.wasm"
