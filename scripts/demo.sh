#!/usr/bin/env bash
# Several processes of one container sharing one 3000 MiB slice of the (simulated) GPU:
# the first takes 1.5 GiB and holds it, the second gets only what is left of the slice,
# nvidia-smi's view (vgpuctl smi) and the region (vgpuctl inspect) show both, and the
# simulator's ground truth shows what the "physical" GPU holds.
#     scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q
T=target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CUDA_DEVICE_MEMORY_SHARED_CACHE=$work/cudevshr.cache   # the container's region
export VGPU_SIM_STATE=$work/sim.state                         # the simulated machine
run() { "$T/vgpuctl" run --gpumem 3000m -- "$@"; }

echo "== process A: 512 MiB chunks, stops at 1.5 GiB by holding 3 of them"
run "$T/vgpu-demo" --chunk 512 --max 1536 --hold 4 --launches 2000 >"$work/a.log" 2>&1 &
sleep 1
echo "== process B, same container, 256 MiB chunks until the slice is full"
run "$T/vgpu-demo" --chunk 256 --hold 2 --launches 2000 >"$work/b.log" 2>&1 &
sleep 1
echo "== the container's nvidia-smi view"
run "$T/vgpuctl" smi 2>/dev/null
echo "== the container's shared region"
"$T/vgpuctl" inspect "$CUDA_DEVICE_MEMORY_SHARED_CACHE"
echo "== the simulated GPU's ground truth"
"$T/vgpuctl" sim status
wait
echo "== A"; cat "$work/a.log"
echo "== B"; cat "$work/b.log"
