#!/usr/bin/env bash
# The Windows agent, tested from this Linux machine (README, "Windows agent"):
#
# 1. sets up the cross toolchain (scripts/windows-cross/setup.sh: mingw-w64,
#    Wine, Debian's rustc-web with its Rust source; installed once);
# 2. builds rampart-agent.exe for x86_64-pc-windows-gnu;
# 3. runs the agent's Windows-only unit tests (the registry provider
#    against the real registry, the Windows facts) under Wine;
# 4. runs the end-to-end test crates/agent/tests/windows_wine.rs: a real
#    Linux rampart-server, rampart-agent.exe under Wine onboarded over
#    mutual TLS, policies of every family, `wine reg query` read-back.
#
# Without the toolchain or Wine it prints SKIPPED and exits 0, unless
# RAMPART_REQUIRE_WINDOWS_TESTS=1 (CI): then it fails. Every Wine prefix is
# a temporary one, and its wineserver is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

require="${RAMPART_REQUIRE_WINDOWS_TESTS:-0}"
unavailable() {
  if [ "$require" = 1 ]; then
    echo "FAILED: RAMPART_REQUIRE_WINDOWS_TESTS=1 but $1" >&2
    exit 1
  fi
  echo "SKIPPED: the Windows agent tests ($1)"
  exit 0
}

# shellcheck source=windows-cross/setup.sh
source scripts/windows-cross/setup.sh || unavailable "the Windows cross toolchain could not be set up"
command -v wine >/dev/null || unavailable "wine is not installed"

export CARGO_WIN_TARGET_DIR="${CARGO_WIN_TARGET_DIR:-$HOME/.cache/rampart-target-win}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rampart-target}"
target=x86_64-pc-windows-gnu

work=$(mktemp -d /tmp/rampart-windows-test.XXXXXX)
export WINEPREFIX="$work/wineprefix"
cleanup() {
  WINEPREFIX="$work/wineprefix" wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== windows: build rampart-agent.exe and the agent's Windows test binaries"
start=$(date +%s)
# One `cargo test --no-run` builds both: the integration test targets need
# the .exe, and `cargo build` then `cargo test` would build std (and every
# dependency after it) twice, once without and once with the `test` crate.
cargo-win test --locked -p rampart-agent --target "$target" --no-run
exe="$CARGO_WIN_TARGET_DIR/$target/debug/rampart-agent.exe"
[ -f "$exe" ] || { echo "FAILED: $exe was not built" >&2; exit 1; }

echo "== windows: the agent's Windows unit tests under Wine"
rampart_wine_prefix "$WINEPREFIX"
# The registry provider against the real (Wine) registry, and the parts
# that differ on Windows; the rest of the library is tested on Linux.
cargo-win test --locked -p rampart-agent --lib --target "$target" -- \
  providers::windows windows_facts

echo "== windows: end to end (Linux server, rampart-agent.exe under Wine)"
RAMPART_WINDOWS_AGENT_EXE="$exe" RAMPART_REQUIRE_WINDOWS_TESTS="$require" \
  cargo test --locked -p rampart-agent --test windows_wine -- --nocapture
echo "== windows: done in $(( $(date +%s) - start )) s"
