#!/usr/bin/env bash
# The device check: libvgpu against a real NVIDIA GPU, or (--sim) against the simulated one.
# Everything it runs was built by scripts/gpu-check-prepare.sh into target/gpu-check/ (the
# folder the device tool carries); on the GPU machine it uses only that folder, the machine's
# own driver and nvidia-smi, sh/coreutils, util-linux's unshare and python3 (stdlib).
#
#   scripts/gpu-check.sh          on a machine with an NVIDIA GPU (as root: pid namespaces)
#   scripts/gpu-check.sh --sim    over the simulated GPU (checks that need hardware print
#                                 check.<name>=hardware-only); CI runs this
#
# Results go to $OUT (default target/gpu-check-out): raw.txt (every client's key=value lines,
# prefixed by step), results.txt (check.<name>=pass|fail|hardware-only|skipped, then figures),
# report.md, log.txt (stderr). Exit status 1 if any check fails. docs/GPU-CHECK.md says how
# to read each line.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=hardware
[[ "${1:-}" == "--sim" ]] && MODE=sim
GC_DIR="${VGPU_GPU_CHECK_DIR:-$ROOT/target/gpu-check}"
OUT="${OUT:-$ROOT/target/gpu-check-out}"
mkdir -p "$OUT"
RAW="$OUT/raw.txt"
LOG="$OUT/log.txt"
: >"$RAW"
: >"$LOG"
GC="$GC_DIR/gpucheck"
LIB="$GC_DIR/libvgpu.so"
VGPUCTL="$GC_DIR/vgpuctl"
WORK="$(mktemp -d /tmp/vgpu-gpu-check.XXXXXX)"
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT

say() { echo "gpu-check: [${SECONDS}s] $*" | tee -a "$LOG" >&2; }
for f in "$GC" "$LIB" "$VGPUCTL" "$GC_DIR/cudart_check" "$GC_DIR/libcudart.so.12"; do
    [[ -x "$f" || -f "$f" ]] || { say "missing $f: run scripts/gpu-check-prepare.sh first"; exit 2; }
done

if [[ $MODE == sim ]]; then
    # A private simulated H100: its own state file; contexts and modules cost the
    # simulator's defaults; kernels cost no device time except in the compute-cap steps,
    # which make a kernel cost what the spin kernel asks for (VGPU_SIM_KERNEL_NS).
    export LD_LIBRARY_PATH="$GC_DIR/sim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export VGPU_SIM_STATE="$WORK/sim.state"
    export VGPU_SIM_KERNEL_NS=0
else
    command -v nvidia-smi >/dev/null || { say "nvidia-smi not found: no NVIDIA driver here (use --sim)"; exit 2; }
fi
SPIN_NS=2000000

# raw PREFIX CMD...: runs CMD, its stdout lines go to raw.txt as PREFIX.key=value.
# Every client runs under `timeout` (STEP_TIMEOUT seconds), so a hang costs one step, not
# the report.
STEP_TIMEOUT=${VGPU_GPU_CHECK_STEP_TIMEOUT:-150}
bounded() {
    if [[ $(type -t "$1") == function ]]; then "$@"; else timeout -k 5 "$STEP_TIMEOUT" "$@"; fi
}
raw() {
    local prefix=$1
    shift
    bounded "$@" 2>>"$LOG" | sed -u "s/^/$prefix./" >>"$RAW"
    local rc=${PIPESTATUS[0]}
    echo "$prefix.exit=$rc" >>"$RAW"
    return 0
}
put() { echo "$1=$2" >>"$RAW"; }
# under REGION SLICE CORES CMD...: CMD under libvgpu in a container of its own region (CORES
# empty: no compute cap). In a subshell (`under ... &`, a pipeline) it execs, so that $! is
# the command itself and a kill reaches it.
under() {
    local region=$WORK/$1.cache slice=$2 cores=$3
    shift 3
    local vars=(LD_PRELOAD="$LIB" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" CUDA_DEVICE_MEMORY_LIMIT="$slice")
    [[ -n "$cores" ]] && vars+=(CUDA_DEVICE_SM_LIMIT="$cores" GPU_CORE_UTILIZATION_POLICY=force)
    if [[ $BASHPID != "$$" ]]; then
        exec timeout -k 5 "$STEP_TIMEOUT" env "${vars[@]}" "$@"
    fi
    timeout -k 5 "$STEP_TIMEOUT" env "${vars[@]}" "$@"
}
bytes_of() { numfmt --from=iec "${1^^}"; }
# wait_for KEY FILE...: until each file holds the line KEY=1 or an error= line (60 s at most).
wait_for() {
    local key=$1 f i
    shift
    for f in "$@"; do
        for ((i = 0; i < 600; i++)); do
            grep -q -e "^$key=1" -e '^error=' "$f" 2>/dev/null && break
            sleep 0.1
        done
    done
}

put mode "$MODE"
sed 's/^/manifest./' "$GC_DIR/MANIFEST" >>"$RAW"
if [[ $MODE == hardware ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits 2>>"$LOG" |
        head -n1 | awk -F', ' '{print "gpu.name=" $1 "\ngpu.memory_total_mib=" $2 "\ngpu.driver=" $3}' >>"$RAW"
fi
say "mode $MODE, results in $OUT"

# ---- memory cap: every driver allocation path, to the byte -------------------------------
say "memory cap, every allocation path"
raw memcap under memcap 2g "" "$GC" memcap 2g

# ---- context and module memory at several slice sizes -------------------------------------
say "context and module memory"
for s in 64m 1g 4g; do raw "ctxmod.$s" under "ctx$s" "$s" "" "$GC" ctxmod "$s"; done
# A slice just large enough for the context: the module must be refused or still fit.
ctx=$(sed -n 's/^ctxmod\.1g\.ctx_truth=//p' "$RAW")
if [[ "$ctx" =~ ^[0-9]+$ && "$ctx" -gt 0 ]]; then
    tight=$((ctx + 1048576))
    raw ctxmod.tight under ctxtight "$tight" "" "$GC" ctxmod "$tight"
fi

# ---- the real runtime: libcudart.so.12 from the wheel --------------------------------------
# Over the simulator it still runs: it loads the carried libcudart through its rpath and
# stops at the first device call (cudaErrorNotSupported: no private export tables there).
say "the real CUDA runtime"
raw runtime under runtime 2g "" "$GC_DIR/cudart_check" "$(bytes_of 2g)"

# ---- nvidia-smi / NVML under the library, a process of the container holding 1 GiB -------
say "nvidia-smi and NVML under the library"
under smi 4g "" "$GC" hold 1g 60 >"$WORK/holder.txt" 2>>"$LOG" &
holder=$!
wait_for ready "$WORK/holder.txt"
sed 's/^/smi.holder./' "$WORK/holder.txt" >>"$RAW"
raw smi.view under smi 4g "" "$GC" nvmlview
raw smi.pynvml under smi 4g "" env PYTHONPATH="$GC_DIR/py" python3 -c 'import pynvml
pynvml.nvmlInit()
m = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
print(f"nvml_total={m.total}\nnvml_used={m.used}")'
if [[ $MODE == hardware ]]; then
    under smi 4g "" nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits \
        2>>"$LOG" | head -n1 | awk -F', ' '{print "smi.nvidia_smi.total_mib=" $1 "\nsmi.nvidia_smi.used_mib=" $2}' >>"$RAW"
fi
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# Inside `vgpuctl run --container` (the containers work), when this vgpuctl has it.
if "$VGPUCTL" run --help 2>&1 | grep -q -- '--container'; then
    say "nvidia-smi inside vgpuctl run --container"
    put smi_container.available 1
    smi=nvidia-smi
    [[ $MODE == sim ]] && smi=""
    timeout -k 5 "$STEP_TIMEOUT" "$VGPUCTL" run --container --gpumem 4g -- sh -c "
        t=\$(mktemp); '$GC' hold 1g 60 > \$t & h=\$!
        for i in \$(seq 600); do grep -q -e '^ready=1' -e '^error=' \$t && break; sleep 0.1; done
        sed 's/^/holder./' \$t
        '$GC' nvmlview | sed 's/^/view./'
        if [ -n '$smi' ]; then nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits |
            head -n1 | awk -F', ' '{print \"nvidia_smi.total_mib=\" \$1 \"\\nnvidia_smi.used_mib=\" \$2}'; fi
        kill \$h; wait \$h; rm -f \$t" 2>>"$LOG" | sed 's/^/smi_container./' >>"$RAW"
else
    put smi_container.available 0
fi

# ---- compute cap: the spin kernel at 25/50/100 % against uncapped --------------------------
say "compute cap"
# spin LABEL CORES: throughput over 4 s after 1 s of warm-up, NVML utilization meanwhile.
spin() {
    (sleep 1.5; timeout 30 env -u LD_PRELOAD "$GC" util 3 200 >"$WORK/util.$1.txt" 2>>"$LOG") &
    local sampler=$!
    if [[ -z "$2" ]]; then
        raw "cap.$1" env VGPU_SIM_KERNEL_NS=$SPIN_NS "$GC" spin "$SPIN_NS" 4
    else
        raw "cap.$1" under "cap$1" 8g "$2" env VGPU_SIM_KERNEL_NS=$SPIN_NS "$GC" spin "$SPIN_NS" 4
    fi
    wait "$sampler"
    sed "s/^/cap.$1./" "$WORK/util.$1.txt" >>"$RAW"
}
spin plain ""
spin c25 25
spin c50 50
spin c100 100
# Two processes of one container sharing a 50 % cap.
(sleep 1.5; timeout 30 env -u LD_PRELOAD "$GC" util 3 200 >"$WORK/util.pair.txt" 2>>"$LOG") &
sampler=$!
under pair 8g 50 env VGPU_SIM_KERNEL_NS=$SPIN_NS "$GC" spin "$SPIN_NS" 4 >"$WORK/pair1.txt" 2>>"$LOG" &
p1=$!
under pair 8g 50 env VGPU_SIM_KERNEL_NS=$SPIN_NS "$GC" spin "$SPIN_NS" 4 >"$WORK/pair2.txt" 2>>"$LOG"
wait "$p1" "$sampler"
sed 's/^/cap.pair1./' "$WORK/pair1.txt" >>"$RAW"
sed 's/^/cap.pair2./' "$WORK/pair2.txt" >>"$RAW"
sed 's/^/cap.pair./' "$WORK/util.pair.txt" >>"$RAW"

# ---- overhead: hooked vs direct in one process ---------------------------------------------
say "overhead"
raw overhead under overhead 8g "" "$GC" overhead 1000

# ---- start-up: 64 processes at one barrier -------------------------------------------------
say "start-up, 64 processes"
raw startup env CUDA_DEVICE_MEMORY_SHARED_CACHE="$WORK/startup.cache" CUDA_DEVICE_MEMORY_LIMIT=60g \
    "$GC" startup 64 "$LIB"

# ---- two containers at once, each with its own pid namespace -------------------------------
# Each runs two processes that create their contexts, wait for each other, then grab 64 MiB
# pieces until refused. The driver's own per-process figures (NVML, read here without the
# library) must hold each container to its slice, and the host pids in each container's
# region must be exactly NVML's pids of that namespace. Launcher: `vgpuctl run --container`
# when this vgpuctl has it, else `unshare --pid --fork --mount-proc` under LD_PRELOAD on a GPU
# (the simulator refuses such a namespace: it cannot learn host pids there) or, over the
# simulator, plain processes sharing the host's pid namespace.
say "two containers"
# container_ns PID: the pid namespace of PID's first descendant outside our own namespace.
container_ns() {
    local own kids p ns
    own=$(readlink /proc/self/ns/pid)
    kids=$1
    while [[ -n "$kids" ]]; do
        for p in $kids; do
            ns=$(readlink "/proc/$p/ns/pid" 2>/dev/null)
            [[ -n "$ns" && "$ns" != "$own" ]] && { echo "$ns"; return; }
        done
        # cat, not awk over the glob: a process that ends meanwhile must not stop the scan.
        kids=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v k=" $kids " 'index(k, " " $4 " ") {print $1}')
    done
}
# ns_members NS: the host pids of every process in pid namespace NS.
ns_members() {
    local d out=""
    [[ -n "$1" ]] || return 0
    for d in /proc/[0-9]*; do
        [[ "$(readlink "$d/ns/pid" 2>/dev/null)" == "$1" ]] && out+="${d#/proc/} "
    done
    echo "${out% }"
}
launcher=plain
[[ $MODE == hardware ]] && launcher=unshare
"$VGPUCTL" run --help 2>&1 | grep -q -- '--container' && launcher=vgpuctl-container
launcher=${VGPU_GPU_CHECK_LAUNCHER:-$launcher} # plain | unshare | vgpuctl-container
pidns=1
[[ $launcher == plain ]] && pidns=0
put containers.launcher "$launcher"
put containers.pid_namespaces "$pidns"
# Inside each container (its stdout only reaches the host: no shared path is assumed): two
# grabbers, their own start barrier, their lines, the region's host pids, then ready=1.
inner="d=\$(mktemp -d)
'$GC' grab 64m 90 \$d/go > \$d/1 & '$GC' grab 64m 90 \$d/go > \$d/2 &
for f in \$d/1 \$d/2; do for i in \$(seq 600); do grep -q -e '^ctx=1' -e '^error=' \$f && break; sleep 0.1; done; done
touch \$d/go
for f in \$d/1 \$d/2; do for i in \$(seq 600); do grep -q -e '^ready=1' -e '^error=' \$f && break; sleep 0.1; done; done
sed 's/^/p1./' \$d/1; sed 's/^/p2./' \$d/2
'$VGPUCTL' inspect \"\$CUDA_DEVICE_MEMORY_SHARED_CACHE\" --json > \$d/region.json
python3 -c 'import json,sys
print(\"region_hostpids=\" + \" \".join(str(p[\"hostpid\"]) for p in json.load(open(sys.argv[1]))[\"processes\"]))' \$d/region.json
echo ready=1
wait"
declare -A boxes=([A]=2g [B]=3g)
for c in A B; do
    case $launcher in
    vgpuctl-container)
        timeout -k 5 "$STEP_TIMEOUT" "$VGPUCTL" run --container --gpumem "${boxes[$c]}" -- sh -c "$inner" \
            >"$WORK/box$c.txt" 2>>"$LOG" &
        ;;
    unshare)
        under "box$c" "${boxes[$c]}" "" unshare --pid --fork --mount-proc --kill-child sh -c "$inner" \
            >"$WORK/box$c.txt" 2>>"$LOG" &
        ;;
    *)
        under "box$c" "${boxes[$c]}" "" setsid sh -c "$inner" >"$WORK/box$c.txt" 2>>"$LOG" &
        ;;
    esac
    eval "box_$c=\$!"
    put "containers.$c.slice_bytes" "$(bytes_of "${boxes[$c]}")"
done
wait_for ready "$WORK/boxA.txt" "$WORK/boxB.txt"
for c in A B; do
    sed "s/^/containers.$c./" "$WORK/box$c.txt" >>"$RAW"
    # The container's host pids: every process in its pid namespace (without namespaces,
    # the pids its processes report).
    bpid=$(eval echo "\$box_$c")
    if ((pidns)); then
        ns=$(container_ns "$bpid")
        eval "ns_$c=\$ns"
        members=$(ns_members "$ns")
    else
        members="$(sed -n 's/^p[12]\.pid=//p' "$WORK/box$c.txt" | tr '\n' ' ')"
    fi
    put "containers.$c.ns_hostpids" "${members% }"
done
raw containers.truth env -u LD_PRELOAD "$GC" truth
for c in A B; do
    bpid=$(eval echo "\$box_$c")
    if ((pidns)); then
        # SIGKILL of a namespace's init ends every process in it.
        kill -9 $(ns_members "$(eval echo "\$ns_$c")") 2>/dev/null
    else
        kill $(sed -n 's/^p[12]\.pid=//p' "$WORK/box$c.txt") 2>/dev/null
    fi
    wait "$bpid" 2>/dev/null
done

say "done"
# ---- judge ---------------------------------------------------------------------------------
python3 "$ROOT/scripts/gpu-check/report.py" "$RAW" "$OUT/results.txt" "$OUT/report.md"
rc=$?
grep '^check\.' "$OUT/results.txt"
exit $rc
