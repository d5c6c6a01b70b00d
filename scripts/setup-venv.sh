#!/usr/bin/env bash
# Creates (or refreshes) .venv with the real NVIDIA client libraries the tests run over the
# simulated GPU. Idempotent: when .venv already holds exactly these pins, it only prints paths.
#
#   nvidia-ml-py           pynvml (NVML client; loads libnvidia-ml.so.1 with dlopen)
#   cuda-bindings          cuda.bindings.driver (driver API client; dlopen libcuda.so.1 +
#                          cuGetProcAddress_v2)
#   nvidia-cuda-runtime-cu12  the real libcudart.so.12, and cuda.h (used only at test time as
#                          an ABI cross-check; never copied into the repository)
#   nvidia-nvml-dev-cu12   nvml.h (same purpose)
#   hip-python             AMD's HIP bindings (dlopen libamdhip64.so, dlsym by name): the
#                          simulated AMD GPU's HIP client (ROCm 7.0.2 build)
#   amdsmi                 AMD SMI's Python package (ctypes over libamd_smi.so; 7.x layouts)
#   gpustat, nvitop        NVML monitoring tools (run in a container by tests/nvidia_tools.rs)
#
# Versions match a CUDA 12.8 driver (R570), which is what the simulator reports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VGPU_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

PINS=(
    "nvidia-ml-py==12.570.172"
    "cuda-bindings==12.8.0"
    "nvidia-cuda-runtime-cu12==12.8.90"
    "nvidia-nvml-dev-cu12==12.8.90"
    "hip-python==7.0.2.555.40"
    "amdsmi==7.0.2"
    "gpustat==1.1.1"
    "nvitop==1.7.2"
    "psutil==7.2.2"
    "blessed==1.52.0"
    "wcwidth==0.9.4"
)
STAMP="$VENV/.vgpu-pins"
WANT="$(printf '%s\n' "${PINS[@]}")"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "setup-venv: $VENV up to date"
else
    echo "setup-venv: creating $VENV"
    if [[ ! -x "$VENV/bin/python" ]]; then
        "$PY" -m venv "$VENV"
    fi
    rm -f "$STAMP"
    # Retries and a generous timeout: PyPI can be slow from CI machines.
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --retries 5 --timeout 60 "${PINS[@]}"
    printf '%s\n' "$WANT" >"$STAMP"
fi

# Where things landed (tests find them the same way: testkit::venv_*).
"$VENV/bin/python" - <<'PYEOF'
import glob, os, sys
sp = next(p for p in sys.path if p.endswith("site-packages"))
def one(pattern):
    hits = sorted(glob.glob(os.path.join(sp, pattern)))
    return hits[0] if hits else "(missing)"
print("setup-venv: python         ", sys.executable)
print("setup-venv: libcudart.so.12", one("nvidia/cuda_runtime/lib/libcudart.so.12"))
print("setup-venv: cuda.h         ", one("nvidia/cuda_runtime/include/cuda.h"))
print("setup-venv: nvml.h         ", one("nvidia/nvml_dev/include/nvml.h"))
import pynvml, cuda.bindings
print("setup-venv: pynvml + cuda.bindings", cuda.bindings.__version__, "import ok")
PYEOF
