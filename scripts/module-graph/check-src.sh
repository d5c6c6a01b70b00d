#!/usr/bin/env bash
# libvgpu's layering, checked (docs/ARCHITECTURE.md, "Layers and import rules"): the module
# graph of src/ is a DAG at depth 1 and inside core/ at depth 2, and the import rules hold.
# Exit 1 on a cycle or a forbidden edge (the offending file:line is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
graph=scripts/module-graph/module_graph.py
backends=cuda,nvml,hip,amd_smi
python3 "$graph" --fail-on-cycles \
    --forbid "core=interpose,$backends" \
    --forbid "interpose=core,$backends" \
    --forbid "clock,config,ledger,log,throttle=core,interpose,$backends" \
    --forbid "cuda,nvml=hip,amd_smi" \
    --forbid "hip,amd_smi=cuda,nvml" \
    src
python3 "$graph" --depth 2 --within core --fail-on-cycles src
