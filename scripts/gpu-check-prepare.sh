#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs on a lent GPU machine into one carried folder,
# target/gpu-check/ (ignored by git; name it in the device tool's `carry`, docs/GPU-CHECK.md):
#
#   libvgpu.so        the shipped build (scripts/build-release.sh, rebuilt when stale: glibc
#                     2.17 floor)
#   vgpuctl           release build (finds libvgpu.so beside itself)
#   gpucheck          the driver-API client (scripts/gpu-check/gpucheck.c; dlopen only)
#   cudart_check      linked against the wheel's libcudart.so.12 (rpath $ORIGIN)
#   libcudart.so.12   from the nvidia-cuda-runtime-cu12 wheel in .venv (scripts/setup-venv.sh)
#   py/pynvml.py      nvidia-ml-py's pynvml from .venv (a real NVML client)
#   sim/              the simulated libcuda.so.1 / libnvidia-ml.so.1 (only gpu-check.sh --sim
#                     uses them)
#   MANIFEST          commit, sizes and sha256 of the above
#
#   scripts/gpu-check-prepare.sh        idempotent; fails if the set passes 64 MiB
# Environment: CC (default cc), VGPU_VENV (default .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" = /* ]] || TARGET="$ROOT/$TARGET"
DEST="$TARGET/gpu-check"
VENV="${VGPU_VENV:-$ROOT/.venv}"
CC="${CC:-cc}"
log() { echo "gpu-check-prepare: $*"; }

# Always (a no-op when up to date): a stale shipped build must never be carried.
scripts/build-release.sh >/dev/null
log "cargo build --release (vgpuctl, simulated GPU)"
cargo build --release -q -p vgpuctl -p vgpu-sim-cuda -p vgpu-sim-nvml
cudart=$(ls "$VENV"/lib/python3*/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12 2>/dev/null | head -n1 || true)
if [[ -z "$cudart" ]]; then
    scripts/setup-venv.sh
    cudart=$(ls "$VENV"/lib/python3*/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12 | head -n1)
fi

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/sim"
cp "$TARGET/release-glibc2.17/libvgpu.so" "$TARGET/release/vgpuctl" "$DEST.tmp/"
cp -L "$TARGET/release/sim/libcuda.so.1" "$TARGET/release/sim/libnvidia-ml.so.1" "$DEST.tmp/sim/"
cp -L "$cudart" "$DEST.tmp/libcudart.so.12"
# pynvml (nvidia-ml-py, one pure-Python file): a real third-party NVML client.
mkdir -p "$DEST.tmp/py"
cp "$(dirname "$(dirname "$cudart")")/../../pynvml.py" "$DEST.tmp/py/pynvml.py"
CFLAGS=(-O2 -Wall -Wextra -Werror -std=gnu11)
"$CC" "${CFLAGS[@]}" -Itests/c -Icuda-headers/include -o "$DEST.tmp/gpucheck" \
    scripts/gpu-check/gpucheck.c -ldl
"$CC" "${CFLAGS[@]}" -o "$DEST.tmp/cudart_check" scripts/gpu-check/cudart_check.c \
    -L"$DEST.tmp" -l:libcudart.so.12 -Wl,-rpath,'$ORIGIN' -ldl
{
    echo "commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # The newest glibc symbol version any carried binary needs (the GPU machine must have it).
    echo "glibc_needed=$(objdump -T "$DEST.tmp"/vgpuctl "$DEST.tmp"/gpucheck "$DEST.tmp"/cudart_check \
        "$DEST.tmp"/libvgpu.so 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)"
    (cd "$DEST.tmp" && find . -type f ! -name MANIFEST | sort | while read -r f; do
        echo "file=${f#./} $(stat -c %s "$f") $(sha256sum "$f" | cut -d' ' -f1)"
    done)
} >"$DEST.tmp/MANIFEST"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
bytes=$(du -sb "$DEST" | cut -f1)
log "carry set $DEST: $bytes bytes"
if ((bytes > 60 * 1024 * 1024)); then
    log "the carry set passes 60 MiB (the device tool carries 64 MiB with the working tree)"
    exit 1
fi
