#!/usr/bin/env bash
# Builds the release libvgpu.so against an old glibc floor (default 2.17) with cargo-zigbuild,
# and checks it (scripts/check-glibc-floor.sh). See docs/RELEASE.md.
#
#   scripts/build-release.sh            -> target/release-glibc2.17/libvgpu.so (the loader,
#                                          the core embedded) and libvgpu-core.so (the core)
#
# Idempotent. Needs only rustup's stable toolchain (the host target x86_64-unknown-linux-gnu;
# no `rustup target add`), python3 with pip (venv module optional) and binutils. It installs
# pinned ziglang + cargo-zigbuild from PyPI into a tools venv (.venv-tools, or $VGPU_TOOLS_VENV)
# the first time; later runs reuse it. Every cache stays inside the target dir:
#   $TARGET/zig                      cargo's target dir for this build (not shared with the
#                                    normal builds, so it never invalidates them)
#   $TARGET/zig/zig-cache            zig's global and local caches
#   $TARGET/zig/cargo-zigbuild       cargo-zigbuild's linker wrappers
# where $TARGET is $CARGO_TARGET_DIR or <repo>/target.
#
# Environment: VGPU_GLIBC_FLOOR (default 2.17), VGPU_TOOLS_VENV, PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${VGPU_TOOLS_VENV:-$ROOT/.venv-tools}"
PY="${PYTHON:-python3}"
FLOOR="${VGPU_GLIBC_FLOOR:-2.17}"
TRIPLE="x86_64-unknown-linux-gnu"

# Pinned together: cargo-zigbuild 0.24.0 drives zig 0.15.2 (verified: links, bundles
# libunwind in place of libgcc_s, glibc 2.17 stubs).
PINS=(
    "ziglang==0.15.2"
    "cargo-zigbuild==0.24.0"
)
STAMP="$TOOLS/.vgpu-pins"
WANT="$(printf '%s\n' "${PINS[@]}")"

log() { echo "build-release: $*"; }

# --- tools ---------------------------------------------------------------------------------
tools_ok() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$TOOLS/bin/cargo-zigbuild" ]]
}

install_tools() {
    log "installing ${PINS[*]} into $TOOLS"
    rm -rf "$TOOLS"
    # A venv when the interpreter can make one (Debian needs python3-venv for that); else a
    # plain `pip install --target` (allowed even on an externally-managed Debian python).
    if "$PY" -m venv "$TOOLS" >/dev/null 2>&1 && [[ -x "$TOOLS/bin/python" ]] \
        && "$TOOLS/bin/python" -m pip --version >/dev/null 2>&1; then
        "$TOOLS/bin/python" -m pip install --disable-pip-version-check --no-input -q \
            --retries 5 --timeout 60 "${PINS[@]}"
    else
        log "no usable '$PY -m venv'; falling back to pip install --target"
        rm -rf "$TOOLS"
        "$PY" -m pip install --disable-pip-version-check --no-input -q --retries 5 --timeout 60 \
            --target "$TOOLS" "${PINS[@]}"
    fi
    # Keep the ~400 MB tools dir out of git even before .gitignore lists it (a .gitignore
    # inside an untracked directory hides the directory's whole content, itself included).
    printf '*\n' >"$TOOLS/.gitignore"
    printf '%s\n' "$WANT" >"$STAMP"
}

if tools_ok; then
    log "tools in $TOOLS up to date (${PINS[*]})"
else
    install_tools
fi
[[ -f "$TOOLS/.gitignore" ]] || printf '*\n' >"$TOOLS/.gitignore"

# The zig binary the ziglang wheel ships: venv layout or --target layout.
ZIG=""
for cand in "$TOOLS"/lib/python3*/site-packages/ziglang/zig "$TOOLS"/ziglang/zig; do
    if [[ -x "$cand" ]]; then ZIG="$cand"; break; fi
done
[[ -n "$ZIG" ]] || { log "zig binary not found under $TOOLS (delete it and rerun)"; exit 1; }

# --- build ---------------------------------------------------------------------------------
TARGET_BASE="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_BASE" = /* ]] || TARGET_BASE="$ROOT/$TARGET_BASE"
ZIG_TARGET_DIR="$TARGET_BASE/zig"
OUT_DIR="$TARGET_BASE/release-glibc$FLOOR"
mkdir -p "$ZIG_TARGET_DIR/zig-cache" "$ZIG_TARGET_DIR/cargo-zigbuild" "$OUT_DIR"

log "zig $("$ZIG" version), $("$TOOLS/bin/cargo-zigbuild" --version), $(cargo --version)"
log "cargo zigbuild --release -p vgpu --lib --target $TRIPLE.$FLOOR (CARGO_TARGET_DIR=$ZIG_TARGET_DIR)"
(
    cd "$ROOT"
    export CARGO_TARGET_DIR="$ZIG_TARGET_DIR"
    export CARGO_ZIGBUILD_ZIG_PATH="$ZIG"
    export CARGO_ZIGBUILD_CACHE_DIR="$ZIG_TARGET_DIR/cargo-zigbuild"
    export ZIG_GLOBAL_CACHE_DIR="$ZIG_TARGET_DIR/zig-cache"
    export ZIG_LOCAL_CACHE_DIR="$ZIG_TARGET_DIR/zig-cache"
    "$TOOLS/bin/cargo-zigbuild" zigbuild --release -p vgpu --lib --target "$TRIPLE.$FLOOR"
)

BUILT="$ZIG_TARGET_DIR/$TRIPLE/release/libvgpu.so"
[[ -f "$BUILT" ]] || { log "expected $BUILT after the build; not there"; exit 1; }
"$ROOT/scripts/check-glibc-floor.sh" "$BUILT" "$FLOOR" >/dev/null || {
    "$ROOT/scripts/check-glibc-floor.sh" "$BUILT" "$FLOOR"; exit 1; }
cp "$BUILT" "$OUT_DIR/libvgpu-core.so.tmp.$$"
mv -f "$OUT_DIR/libvgpu-core.so.tmp.$$" "$OUT_DIR/libvgpu-core.so"

# --- the loader: the preloaded half, the core embedded (loader/vgpu_loader.c) --------------
# Only libc.so.6 NEEDED, no constructor, lazy binding of its few libc calls: what every
# process of the container pays. The core is loaded on the first CUDA/NVML call.
LOADER_DIR="$ZIG_TARGET_DIR/loader"
mkdir -p "$LOADER_DIR"
"$ROOT/loader/gen-exports.sh" "$OUT_DIR/libvgpu-core.so" "$LOADER_DIR/exports.S"
(
    export ZIG_GLOBAL_CACHE_DIR="$ZIG_TARGET_DIR/zig-cache"
    export ZIG_LOCAL_CACHE_DIR="$ZIG_TARGET_DIR/zig-cache"
    "$ZIG" cc -target "x86_64-linux-gnu.$FLOOR" -shared -fPIC -O2 -fvisibility=hidden \
        -fno-stack-protector -fno-sanitize=all -Wall -Werror \
        -Wl,-soname,libvgpu.so -Wl,-z,lazy -Wl,--hash-style=both -Wl,--no-undefined-version \
        -Wl,--version-script="$LOADER_DIR/exports.map" \
        -o "$LOADER_DIR/libvgpu.so" "$ROOT/loader/vgpu_loader.c" "$LOADER_DIR/exports.S"
)
cp "$LOADER_DIR/libvgpu.so" "$OUT_DIR/libvgpu.so.tmp.$$"
mv -f "$OUT_DIR/libvgpu.so.tmp.$$" "$OUT_DIR/libvgpu.so"

# --- check ---------------------------------------------------------------------------------
"$ROOT/scripts/check-glibc-floor.sh" "$OUT_DIR/libvgpu.so" "$FLOOR"
log "artifact: $OUT_DIR/libvgpu.so ($(stat -c %s "$OUT_DIR/libvgpu.so") bytes, sha256 $(sha256sum "$OUT_DIR/libvgpu.so" | cut -d' ' -f1))"
