#!/usr/bin/env bash
# Fetches the AMD command-line clients the simulated AMD GPU is tested with into
# .amd-clients/ (git-ignored). Idempotent: nothing is downloaded when the pinned version is
# already unpacked.
#
#   rocm-smi 5.2.3-2 (Debian 12)   .amd-clients/rocm-smi/usr/libexec/rocm_smi/rocm_smi.py; it
#                                  loads ../../lib/librocm_smi64.so.1, which the tests point
#                                  at the simulated library.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.amd-clients"
RSMI_VERSION="5.2.3-2"
STAMP="$DIR/.rocm-smi-$RSMI_VERSION"

if [[ -f "$STAMP" && -f "$DIR/rocm-smi/usr/libexec/rocm_smi/rocm_smi.py" ]]; then
    echo "setup-amd-clients: rocm-smi $RSMI_VERSION present"
    exit 0
fi
mkdir -p "$DIR"
cd "$DIR"
rm -f rocm-smi_*.deb
ok=0
for i in 1 2 3; do
    if timeout 300 apt-get download -q "rocm-smi=$RSMI_VERSION" 2>/dev/null; then
        ok=1
        break
    fi
    # A fresh machine has no package lists yet.
    if [[ "$(id -u)" == 0 ]]; then
        timeout 600 apt-get update -q >/dev/null || true
    fi
    echo "setup-amd-clients: apt-get download failed (try $i)" >&2
    sleep 5
done
if [[ "$ok" != 1 ]]; then
    echo "setup-amd-clients: cannot download rocm-smi $RSMI_VERSION" >&2
    exit 1
fi
rm -rf rocm-smi
dpkg-deb -x rocm-smi_*.deb rocm-smi
touch "$STAMP"
echo "setup-amd-clients: rocm-smi $RSMI_VERSION in $DIR/rocm-smi"
