#!/usr/bin/env bash
# Checks libvgpu against a real NVIDIA GPU with PyTorch. Run on a machine with a GPU, from the
# repository root, after `cargo build --release`:
#     scripts/gpu-check.sh [SLICE=4g] | tee gpu-check.log
# Needs: nvidia-smi, python3 with torch (pip install torch). Prints `key=value` lines; the
# figures go into docs/GPU-CHECK.md. Exit status non-zero if a check fails.
set -uo pipefail
SLICE=${1:-4g}
LIB=${VGPU_LIBRARY:-$PWD/target/release/libvgpu.so}
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
exit $fail
