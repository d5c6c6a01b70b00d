#!/usr/bin/env bash
# Checks libvgpu against a real NVIDIA GPU with PyTorch. Run on a machine with a GPU, from the
# repository root, after `cargo build --release`:
#     scripts/gpu-check.sh [SLICE=4g] | tee gpu-check.log
# Needs: nvidia-smi, python3 with torch (pip install torch). Prints `key=value` lines; the
# figures go into docs/GPU-CHECK.md (compute cap: docs/COMPUTE_CAP.md). Exit status non-zero
# if a check fails.
set -uo pipefail
SLICE=${1:-4g}
# The shipped build (scripts/build-release.sh) when present, else the cargo build.
if [ -n "${VGPU_LIBRARY:-}" ]; then LIB=$VGPU_LIBRARY
elif [ -f "$PWD/target/release-glibc2.17/libvgpu.so" ]; then LIB=$PWD/target/release-glibc2.17/libvgpu.so
else LIB=$PWD/target/release/libvgpu.so; fi
PY=${PYTHON:-python3}
fail=0
[ -f "$LIB" ] || { echo "no $LIB: cargo build --release first"; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: no NVIDIA driver here"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export VGPU_CHECK_SLICE=$SLICE

cat > /tmp/vgpu_gpu_check.py <<'PY'
import os, sys, time, torch
slice_text = os.environ["VGPU_CHECK_SLICE"].lower()
mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
slice_bytes = int(slice_text[:-1]) * mult[slice_text[-1]] if slice_text[-1] in mult else int(slice_text)
mode = sys.argv[1]
free, total = torch.cuda.mem_get_info()
print(f"{mode}.mem_get_info_total={total}")
print(f"{mode}.mem_get_info_free={free}")
if mode == "capped":
    print(f"capped.total_is_slice={int(total == slice_bytes)}")
    blocks, oom = [], False
    try:
        while True:
            blocks.append(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    except torch.cuda.OutOfMemoryError:
        oom = True
    held = len(blocks) * (256 << 20)
    print(f"capped.oom_raised={int(oom)}")
    print(f"capped.held_bytes={held}")
    print(f"capped.held_within_slice={int(held <= slice_bytes)}")
    del blocks
    torch.cuda.empty_cache()
# A small training step: time per step (median of 50 after warm-up).
model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(512, 2048, device="cuda"); y = torch.randint(0, 10, (512,), device="cuda")
times = []
for i in range(70):
    torch.cuda.synchronize(); t = time.perf_counter()
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
    torch.cuda.synchronize(); times.append(time.perf_counter() - t)
times = sorted(times[20:])
print(f"{mode}.train_step_median_us={times[len(times)//2]*1e6:.1f}")
PY

$PY /tmp/vgpu_gpu_check.py plain || fail=1
LD_PRELOAD=$LIB CUDA_DEVICE_MEMORY_LIMIT=$SLICE $PY /tmp/vgpu_gpu_check.py capped | tee /tmp/vgpu_capped.txt || fail=1
grep -q "capped.total_is_slice=1" /tmp/vgpu_capped.txt || { echo "FAIL: mem_get_info total is not the slice"; fail=1; }
grep -q "capped.oom_raised=1" /tmp/vgpu_capped.txt || { echo "FAIL: no OOM past the slice"; fail=1; }
grep -q "capped.held_within_slice=1" /tmp/vgpu_capped.txt || { echo "FAIL: held more than the slice"; fail=1; }
echo "--- nvidia-smi under the library (the container's view) ---"
LD_PRELOAD=$LIB CUDA_DEVICE_MEMORY_LIMIT=$SLICE nvidia-smi --query-gpu=memory.total,memory.used --format=csv || fail=1

# ---- compute cap: a matmul loop at 25/50/100 % (CUDA_DEVICE_SM_LIMIT) ----------------------
# Throughput (matmuls/s over 10 s after a 3 s warm-up) capped vs uncapped, and nvidia-smi's
# utilization sampled while it runs. A 25 % cap should give ~0.25 of the uncapped rate.
cat > /tmp/vgpu_gpu_cap.py <<'PY'
import sys, time, torch
label = sys.argv[1]
a = torch.randn(4096, 4096, device="cuda"); b = torch.randn(4096, 4096, device="cuda")
def run(seconds):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            torch.mm(a, b)
        torch.cuda.synchronize(); n += 10
    return n / (time.perf_counter() - t0)
run(3.0)
print(f"cap.{label}.matmuls_per_s={run(10.0):.2f}")
PY
cap_run() {  # label, limit ("" = uncapped)
    local smi=/tmp/vgpu_smi_$1.txt
    # Samples every 500 ms; the first 10 (the warm-up) are skipped below.
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 500 > "$smi" 2>/dev/null &
    local mon=$!
    if [ -z "$2" ]; then
        $PY /tmp/vgpu_gpu_cap.py "$1"
    else
        LD_PRELOAD=$LIB CUDA_DEVICE_SM_LIMIT=$2 GPU_CORE_UTILIZATION_POLICY=force \
            CUDA_DEVICE_MEMORY_SHARED_CACHE=/tmp/vgpu_cap_$1.cache $PY /tmp/vgpu_gpu_cap.py "$1"
    fi
    kill $mon 2>/dev/null; wait $mon 2>/dev/null
    awk 'NR > 10 { s += $1; n++ } END { if (n) printf "cap.'"$1"'.nvidia_smi_util_mean=%.1f\n", s / n }' "$smi"
    rm -f /tmp/vgpu_cap_$1.cache
}
{ cap_run plain ""; cap_run c25 25; cap_run c50 50; cap_run c100 100; } | tee /tmp/vgpu_cap.txt || fail=1
python3 - /tmp/vgpu_cap.txt <<'PY' || fail=1
import sys
kv = dict(l.strip().split("=", 1) for l in open(sys.argv[1]) if "=" in l)
base = float(kv["cap.plain.matmuls_per_s"])
bad = 0
for label, want in (("c25", 0.25), ("c50", 0.50), ("c100", 1.0)):
    ratio = float(kv[f"cap.{label}.matmuls_per_s"]) / base
    ok = abs(ratio - want) <= 0.05 + 0.1 * want
    print(f"cap.{label}.throughput_ratio={ratio:.3f} (want {want:.2f}) {'ok' if ok else 'FAIL'}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
exit $fail
