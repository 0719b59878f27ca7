#!/bin/sh
# Rebuilds the page and fails when the committed hub/web/dist differs from
# what the sources in hub/web/src give.
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/hub/web/build.sh"
cd "$root"
if ! git diff --exit-code --stat -- hub/web/dist; then
  echo "hub/web/dist differs from what hub/web/build.sh builds from hub/web/src:" >&2
  echo "run hub/web/build.sh and commit hub/web/dist" >&2
  exit 1
fi
if [ -n "$(git ls-files --others --exclude-standard -- hub/web/dist)" ]; then
  echo "hub/web/dist has files that are not committed: run hub/web/build.sh and commit hub/web/dist" >&2
  exit 1
fi
echo "hub/web/dist is current"
