#!/usr/bin/env python3
"""Plots the compute cap's busy share over time on the simulated GPU.

Input: target/cap_accuracy/series.csv, written by
    cargo run --release --example cap_accuracy
Output: docs/compute_cap_share.png (or the path given as the first argument).

Uses matplotlib; when it is missing, installs it into the repository's .venv
(scripts/setup-venv.sh makes it) with pip and re-runs itself there.
"""
import csv
import os
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIES = os.path.join(ROOT, "target", "cap_accuracy", "series.csv")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "compute_cap_share.png")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    venv_python = os.path.join(ROOT, ".venv", "bin", "python")
    if os.environ.get("VGPU_PLOT_REEXEC") or not os.path.exists(venv_python):
        sys.exit("matplotlib is not available (run scripts/setup-venv.sh, then pip install matplotlib)")
    subprocess.check_call([venv_python, "-m", "pip", "install", "-q", "matplotlib"])
    os.environ["VGPU_PLOT_REEXEC"] = "1"
    os.execv(venv_python, [venv_python] + sys.argv)

if not os.path.exists(SERIES):
    sys.exit(f"{SERIES} missing: run `cargo run --release --example cap_accuracy` first")

series = defaultdict(list)  # (scenario, container, target) -> [(t, share)]
with open(SERIES) as f:
    for row in csv.DictReader(f):
        key = (row["scenario"], int(row["container"]), int(row["target"]))
        series[key].append((float(row["t"]), float(row["share"])))

panels = [
    ("One process, 1 ms kernels", [("t10-k1000-p1", 0), ("t30-k1000-p1", 0), ("t50-k1000-p1", 0), ("t80-k1000-p1", 0)]),
    ("Four processes in one container, 0.1 ms kernels", [("t10-k100-p4", 0), ("t30-k100-p4", 0), ("t50-k100-p4", 0), ("t80-k100-p4", 0)]),
    ("Two containers (30 % / 60 %), 1 ms kernels", [("two-k1000", 0), ("two-k1000", 1)]),
]
fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), sharex=True)
for ax, (title, wanted) in zip(axes, panels):
    for scenario, container in wanted:
        for (s, c, target), points in series.items():
            if s != scenario or c != container:
                continue
            ts, ys = zip(*points)
            line, = ax.plot(ts, ys, label=f"target {target} %")
            ax.axhline(target, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel("busy share, % (100 ms)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
axes[-1].set_xlabel("seconds since the processes started launching")
fig.suptitle("CUDA_DEVICE_SM_LIMIT on the simulated GPU (ground truth: vgpu-sim busy time)")
fig.tight_layout()
os.makedirs(os.path.dirname(OUT), exist_ok=True)
fig.savefig(OUT, dpi=90)
print(f"wrote {OUT}")
