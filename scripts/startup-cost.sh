#!/usr/bin/env bash
# What a preloaded libvgpu adds to the start of a process that never uses the GPU (every `sh`,
# `ls`, `grep` of a container under /etc/ld.so.preload), measured the way users pay it:
# /bin/true spawned by a C parent, variants taking turns round by round, with the environment a
# HAMi container has: LD_LIBRARY_PATH pointing at the driver's directory (plus the two NVIDIA
# directories CUDA images list), and the variables HAMi's device plugin sets.
#
#     scripts/startup-cost.sh [LIB...]     (after cargo build --release && scripts/build-release.sh)
#
# Variants: none, an empty C library (the price of any preload), the shipped build
# (target/release-glibc2.17/libvgpu.so), the plain cargo build, HAMi-core's library when
# $HAMI_LIB (default /work/wt/hamicore/build/libvgpu.so) exists, and any LIB given.
# Environment: ROUNDS (default 200 spawns per variant), REPEAT (default 5 runs),
# VGPU_DRIVER_DIR (default target/release/sim: the simulated driver).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=target/spawn-true
mkdir -p "$out"
cc -O2 -o "$out/spawn-true" scripts/spawn-true.c
printf 'int vgpu_empty(void) { return 0; }\n' >"$out/empty.c"
cc -shared -fPIC -o "$out/libempty.so" "$out/empty.c"

variants=(none "$PWD/$out/libempty.so")
for lib in target/release-glibc2.17/libvgpu.so target/release/libvgpu.so; do
    [[ -f $lib ]] && variants+=("$PWD/$lib")
done
hami="${HAMI_LIB:-/work/wt/hamicore/build/libvgpu.so}"
[[ -f $hami ]] && variants+=("$hami")
variants+=("$@")

driver_dir="$(cd "${VGPU_DRIVER_DIR:-target/release/sim}" && pwd)"
uuid=GPU-5a1d9e2c-0b7f-4c3a-9e61-2f8d4b7a0c11
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
# As HAMi's device plugin lays out a container with one 3000 MiB / 30 % slice.
export LD_LIBRARY_PATH="$driver_dir:/usr/local/nvidia/lib:/usr/local/nvidia/lib64"
export NVIDIA_VISIBLE_DEVICES="$uuid"
export CUDA_DEVICE_MEMORY_LIMIT_0=3000m
export CUDA_DEVICE_SM_LIMIT=30
export CUDA_DEVICE_MEMORY_SHARED_CACHE="$state/$uuid.cache"
export NVIDIA_DRIVER_CAPABILITIES=compute,utility
unset LD_PRELOAD

echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for ((i = 1; i <= ${REPEAT:-5}; i++)); do
    echo "== run $i: ${ROUNDS:-200} spawns per variant"
    "$out/spawn-true" "${ROUNDS:-200}" "${variants[@]}"
done
