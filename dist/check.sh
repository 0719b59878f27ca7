#!/usr/bin/env bash
# Checks what docs/src/install.md tells an operator to do, with this checkout:
#
#   dist/check.sh install   `cargo install --locked --debug` of komlogd and
#                           komlog-hub into target/install, runs both with
#                           --version, and writes their completions and man
#                           pages under target/install/share. It builds in
#                           target/, so it reuses every artifact of an earlier
#                           build with the same features. cargo resolves an
#                           installed package's features on its own, so a few
#                           dependencies get other features than in the
#                           workspace-wide test build and are built again with
#                           what lies above them. komlogd's Cargo.toml names
#                           the features the test build enables on its direct
#                           dependencies, which spares Cranelift; wasmtime and
#                           the hub's serde/tokio/axum chain are still rebuilt.
#   dist/check.sh units     `systemd-analyze verify` of dist/systemd/*.service.
#                           Verify needs the programs named in ExecStart= and the
#                           pages named in Documentation=man:..., so it checks
#                           copies of the units whose /usr/local/bin/ is
#                           target/install/bin/, with MANPATH at the pages the
#                           installed binaries wrote. Run `install` first.
#
# Any message from systemd-analyze (it exits 0 on an unknown key) is a failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/target/install"

do_install() {
  local pkg bin
  for pkg in host:komlogd hub:komlog-hub; do
    bin="${pkg#*:}"
    cargo install --locked --debug --path "$root/${pkg%%:*}" \
      --root "$prefix" --target-dir "$root/target" --force
    "$prefix/bin/$bin" --version
    mkdir -p "$prefix/share/man/man1" "$prefix/share/bash-completion/completions" \
      "$prefix/share/zsh/site-functions" "$prefix/share/fish/vendor_completions.d"
    "$prefix/bin/$bin" manpage --dir "$prefix/share/man/man1"
    "$prefix/bin/$bin" completions bash > "$prefix/share/bash-completion/completions/$bin"
    "$prefix/bin/$bin" completions zsh > "$prefix/share/zsh/site-functions/_$bin"
    "$prefix/bin/$bin" completions fish > "$prefix/share/fish/vendor_completions.d/$bin.fish"
  done
  ls -l "$prefix/bin"
}

units() {
  local analyze tmp out unit
  analyze="$(command -v systemd-analyze || true)"
  if [[ -z "$analyze" ]]; then
    echo "dist/check.sh: systemd-analyze not found (Debian: apt-get install systemd)" >&2
    exit 1
  fi
  for bin in komlogd komlog-hub; do
    if [[ ! -x "$prefix/bin/$bin" || ! -f "$prefix/share/man/man1/$bin.1" ]]; then
      echo "dist/check.sh: $prefix/bin/$bin or its man page is missing: run dist/check.sh install first" >&2
      exit 1
    fi
  done
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  for unit in "$root"/dist/systemd/*.service; do
    sed "s|/usr/local/bin/|$prefix/bin/|g" "$unit" > "$tmp/$(basename "$unit")"
    grep -H '^ExecStart=' "$tmp/$(basename "$unit")"
  done
  local man=()
  if ! command -v man >/dev/null; then
    # Without man(1), verify cannot look the Documentation= pages up.
    echo "dist/check.sh: man not found: the Documentation= pages are not checked" >&2
    man=(--man=no)
  fi
  out="$(MANPATH="$prefix/share/man" "$analyze" verify "${man[@]}" "$tmp"/*.service 2>&1)" || {
    echo "$out" >&2
    exit 1
  }
  if [[ -n "$out" ]]; then
    echo "$out" >&2
    echo "dist/check.sh: systemd-analyze verify printed the messages above" >&2
    exit 1
  fi
  echo "systemd-analyze verify: $(cd "$root" && ls dist/systemd/*.service | tr '\n' ' ')ok"
}

case "${1:-}" in
  install) do_install ;;
  units) units ;;
  *) echo "usage: dist/check.sh install|units" >&2; exit 2 ;;
esac
