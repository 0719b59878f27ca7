#!/usr/bin/env bash
# The komlogd demo, on the embedded store (no server): builds the example guests
# and the agent, then feeds real `df -k` output and a few CPU readings through
# the impulses of examples/demo/komlogd.yaml and shows what they wrote.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
demo="$root/target/demo"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building the example guests (wasm32-wasip2) and komlogd"
bash examples/build.sh >/dev/null
cargo build --quiet -p komlogd
komlogd="$root/target/debug/komlogd"

rm -rf "$demo"
mkdir -p "$demo/impulses"
cp examples/demo/komlogd.yaml "$demo/"
for g in df threshold summary; do
  cp "examples/target/wasm32-wasip2/release/$g.wasm" "$demo/impulses/"
done
cfg=(-c "$demo/komlogd.yaml")

say "komlogd check: the impulses it loads"
"$komlogd" "${cfg[@]}" check

say "df -k | komlogd -u host.disk"
df -k | "$komlogd" "${cfg[@]}" -u host.disk

say "komlogd query host.disk.root.used_pct host.disk.root.used_pct._anomaly"
"$komlogd" "${cfg[@]}" query host.disk.root.used_pct
"$komlogd" "${cfg[@]}" query host.disk.root.used_pct._anomaly

say "Six CPU readings a minute apart, uploaded with --datapoint"
now=$(( $(date +%s) * 1000000 ))
i=0
for v in 12.5 40 33.3 8 75.25 20; do
  ts=$(( now - (5 - i) * 60000000 ))
  echo "$v" | "$komlogd" "${cfg[@]}" -u cpu.system --datapoint --ts "$ts"
  i=$((i + 1))
done

say "komlogd query cpu.system.last_60min_stats -n 1"
"$komlogd" "${cfg[@]}" query cpu.system.last_60min_stats -n 1

say "Everything in the store (komlogd query)"
"$komlogd" "${cfg[@]}" query
