#!/usr/bin/env bash
# The Windows cross toolchain for rampart-agent: builds Rust for
# x86_64-pc-windows-gnu on Debian 12 and runs the result under Wine.
# Adapted from the planning repository's recipes/windows-cross/.
#
#   source scripts/windows-cross/setup.sh   # installs once (idempotent), then exports the env
#   cargo-win build -p rampart-agent --target x86_64-pc-windows-gnu
#
# Nothing here touches the rustup toolchain: Debian's rustc-web and its
# matching Rust source are unpacked into a private folder ($RAMPART_WINTC,
# default ~/.cache/rampart-wintc), std is built from that source
# (-Z build-std), mingw-w64 links, Wine runs the .exe and its tests. The
# first run installs the apt packages (gcc-mingw-w64-x86-64, wine) and takes
# a few minutes; later runs only export the environment.
#
# Limits: Wine's powershell.exe is a stub that exits 0 and does nothing;
# Windows Defender and Windows Firewall do not exist under Wine. Only the
# registry side can be tested.
RAMPART_WINCROSS_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RAMPART_WINTC="${RAMPART_WINTC:-$HOME/.cache/rampart-wintc}"
export RAMPART_WINTC WINEDEBUG="${WINEDEBUG:--all}"

_rampart_wintc_install() {
  local here="$RAMPART_WINCROSS_HERE" root="$RAMPART_WINTC"
  # Wait for another apt client rather than fail on its lock.
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -qq)
  if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" update || return 1
    "${apt[@]}" install -y --no-install-recommends gcc-mingw-w64-x86-64 wine wine64 \
      libgit2-1.5 libssh2-1 libcurl4 >/dev/null || return 1
  fi
  if [ ! -x "$root/debroot/usr/bin/rustc" ]; then
    # rustc-web and rust-web-src must be the same version: the candidate of rustc-web.
    local v std llvm
    v=$(apt-cache policy rustc-web | awk '/Candidate:/ {print $2}')
    std=$(apt-cache depends "libstd-rust-web-dev=$v" | awk '/Depends: libstd-rust-web-1/ {print $2; exit}')
    llvm=$(apt-cache depends "$std=$v" | awk '/Depends: libllvm/ {print $2; exit}')
    if [ -z "$v" ] || [ -z "$std" ] || [ -z "$llvm" ]; then
      echo "windows-cross: cannot resolve the rustc-web packages (apt-get update?)" >&2
      return 1
    fi
    rm -rf "$root/debs" "$root/debroot.tmp"
    mkdir -p "$root/debs" "$root/debroot.tmp"
    (cd "$root/debs" && apt-get download -qq "rustc-web=$v" "cargo-web=$v" "rust-web-src=$v" \
      "libstd-rust-web-dev=$v" "$std=$v" "$llvm" 2>/dev/null) || return 1
    local f
    for f in "$root"/debs/*.deb; do dpkg -x "$f" "$root/debroot.tmp" || return 1; done
    # Renamed only when complete, so an interrupted unpack is redone.
    rm -rf "$root/debroot" && mv "$root/debroot.tmp" "$root/debroot" || return 1
  fi
  if [ ! -f "$root/bcryptprimitives.dll" ]; then
    # Wine 8.0 lacks bcryptprimitives.dll (ProcessPrng), which Rust's std
    # imports on windows-gnu: a 12 KB test-only stand-in forwards it to
    # RtlGenRandom. Copied into every Wine prefix the tests make.
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$root/bcryptprimitives.dll.tmp" \
      "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32 || return 1
    mv "$root/bcryptprimitives.dll.tmp" "$root/bcryptprimitives.dll"
  fi
}

# Makes a Wine prefix ready for the agent (the stand-in DLL in system32).
rampart_wine_prefix() {
  local prefix="$1"
  mkdir -p "$prefix"
  if [ ! -f "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ]; then
    WINEPREFIX="$prefix" wine wineboot -i >/dev/null 2>&1 || true
    WINEPREFIX="$prefix" wineserver -w 2>/dev/null || true
    cp "$RAMPART_WINTC/bcryptprimitives.dll" "$prefix/drive_c/windows/system32/" || return 1
  fi
}

if ! _rampart_wintc_install; then
  echo "windows-cross: setup failed" >&2
  return 1 2>/dev/null || exit 1
fi

export RAMPART_WIN_DEBROOT="$RAMPART_WINTC/debroot"
export RAMPART_WIN_BCRYPT_DLL="$RAMPART_WINTC/bcryptprimitives.dll"
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
# Debian's cargo and rustc for this target only; the rustup toolchain stays the default.
cargo-win() {
  PATH="$RAMPART_WIN_DEBROOT/usr/bin:$PATH" \
  LD_LIBRARY_PATH="$RAMPART_WIN_DEBROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  RUSTC="$RAMPART_WIN_DEBROOT/usr/bin/rustc" RUSTDOC="$RAMPART_WIN_DEBROOT/usr/bin/rustdoc" RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_DIR="${CARGO_WIN_TARGET_DIR:-$HOME/.cache/rampart-target-win}" \
    "$RAMPART_WIN_DEBROOT/usr/bin/cargo" -Z build-std=std,panic_abort "$@"
}
export -f cargo-win rampart_wine_prefix 2>/dev/null || true
