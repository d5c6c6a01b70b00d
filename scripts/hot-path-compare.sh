#!/usr/bin/env bash
# The hot paths per process, the way applications pay them, libvgpu beside HAMi-core's
# library (issue 9 item 6 compares them): scripts/hot-path.c linked against the simulated
# libcuda.so.1 (zero-time kernels, no context cost, CUDA_DEVICE_MEMORY_LIMIT=70g), run under
# each LD_PRELOAD variant in turn for ROUNDS rounds (default 7); per variant the median over
# rounds of the fastest batch's mean per cuLaunchKernel and per cuMemAlloc_v2+cuMemFree_v2.
# The criterion benches (cargo bench --bench hooks) are the in-process figures.
#
#     scripts/hot-path-compare.sh      (after cargo build --release && scripts/build-release.sh)
#
# HAMI_LIB (default /work/wt/hamicore/build/libvgpu.so) is used when it exists; it is not
# built here. Each variant gets its own region file (the two libraries' layouts differ).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=target/hot-path
mkdir -p "$out"
sim="$PWD/target/release/sim"
cc -O2 -Itests/c -Icuda-headers/include -o "$out/hot-path" scripts/hot-path.c \
    -L"$sim" -l:libcuda.so.1
variants=(none)
[[ -f target/release-glibc2.17/libvgpu.so ]] && variants+=("$PWD/target/release-glibc2.17/libvgpu.so")
[[ -f target/release/libvgpu.so ]] && variants+=("$PWD/target/release/libvgpu.so")
hami="${HAMI_LIB:-/work/wt/hamicore/build/libvgpu.so}"
[[ -f $hami ]] && variants+=("$hami")
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
export LD_LIBRARY_PATH="$sim" VGPU_SIM_STATE="$state/sim.state" VGPU_SIM_KERNEL_NS=0 \
    VGPU_SIM_CONTEXT_BYTES=0 CUDA_DEVICE_MEMORY_LIMIT=70g
unset LD_PRELOAD
for ((r = 0; r < ${ROUNDS:-7}; r++)); do
    for i in "${!variants[@]}"; do
        v="${variants[$i]}"
        pre=()
        [[ $v == none ]] || pre=(env "LD_PRELOAD=$v")
        CUDA_DEVICE_MEMORY_SHARED_CACHE="$state/region-$i.cache" \
            timeout 120 "${pre[@]}" "$out/hot-path" "${N:-100000}" 2>/dev/null \
            | sed "s|^|$i |" || echo "$i error=run"
    done
done | awk -v names="${variants[*]}" '
    { split($2, kv, "="); v[$1, kv[1], ++n[$1, kv[1]]] = kv[2] }
    function median(i, k,    m, a, j, t) {
        m = n[i, k]; for (j = 1; j <= m; j++) a[j] = v[i, k, j]
        for (j = 1; j <= m; j++) for (t = j + 1; t <= m; t++) if (a[t] < a[j]) { x = a[j]; a[j] = a[t]; a[t] = x }
        return a[int((m + 1) / 2)]
    }
    END {
        c = split(names, name, " ")
        printf "%-60s %12s %12s %14s %14s\n", "LD_PRELOAD", "launch", "added", "alloc+free", "added"
        for (i = 0; i < c; i++) {
            l = median(i, "launch_ns"); p = median(i, "pair_ns")
            if (i == 0) { l0 = l; p0 = p }
            printf "%-60s %10.1fns %+10.1fns %12.1fns %+12.1fns\n", name[i + 1], l, l - l0, p, p - p0
        }
    }'
