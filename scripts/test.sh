#!/usr/bin/env bash
# The project's one test command.
#   1. scripts/setup-venv.sh      (.venv with NVIDIA's Python clients, libcudart, headers)
#      scripts/setup-amd-clients.sh (.amd-clients: Debian's rocm-smi)
#      scripts/setup-nvidia-tools.sh  (NVIDIA's nvidia-smi and nvtop, unpacked from Debian)
#   2. cargo build --workspace    (the simulated libcuda/libnvidia-ml and vgpu-sim must exist
#                                  before the process-level tests start)
#   3. cargo nextest run --workspace   (or cargo test --workspace without nextest)
#   VGPU_CHECK_BINDINGS=1 also regenerates cuda-headers/src/bindings.rs with bindgen and fails
#   when it differs from the checked-in file.
# Extra arguments go to the test runner (e.g. scripts/test.sh -E 'test(memory)' for nextest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ci() { [[ -n "${CI:-}" && "${CI:-}" != "false" && "${CI:-}" != "0" ]]; }

echo "== setup-venv"
if ! scripts/setup-venv.sh; then
    if ci; then
        echo "test.sh: scripts/setup-venv.sh failed (required under CI)" >&2
        exit 1
    fi
    echo "test.sh: warning: no venv; the Python-client tests will be skipped" >&2
fi

echo "== setup-amd-clients"
if ! scripts/setup-amd-clients.sh; then
    if ci; then
        echo "test.sh: scripts/setup-amd-clients.sh failed (required under CI)" >&2
        exit 1
    fi
    echo "test.sh: warning: no rocm-smi; its tests will be skipped" >&2
fi

echo "== setup-nvidia-tools"
if ! scripts/setup-nvidia-tools.sh; then
    if ci; then
        echo "test.sh: scripts/setup-nvidia-tools.sh failed (required under CI)" >&2
        exit 1
    fi
    echo "test.sh: warning: no nvidia-smi/nvtop; tests/nvidia_tools.rs will be skipped" >&2
fi

if [[ "${VGPU_CHECK_BINDINGS:-0}" == "1" ]]; then
    echo "== bindings check"
    cargo build -p cuda-headers --features regen-bindings
    git diff --exit-code -- cuda-headers/src/bindings.rs
fi

echo "== cargo build --workspace"
cargo build --workspace

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
