#!/usr/bin/env bash
# What libvgpu adds to the start of a process that never uses CUDA (DESIGN target <= 100 us):
# /bin/true spawned 3000 times per variant with posix_spawn, variants interleaved, medians.
#     scripts/startup-cost.sh            (after cargo build --release && scripts/build-release.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=target/spawn-true
mkdir -p "$out"
cc -O2 -o "$out/spawn-true" scripts/spawn-true.c
printf 'int vgpu_empty(void) { return 0; }\n' >"$out/empty.c"
cc -shared -fPIC -o "$out/libempty.so" "$out/empty.c"
variants=(none "$out/libempty.so")
for lib in target/release/libvgpu.so target/release-glibc2.17/libvgpu.so; do
    [[ -f $lib ]] && variants+=("$PWD/$lib")
done
"$out/spawn-true" "${N:-3000}" "${variants[@]}"
