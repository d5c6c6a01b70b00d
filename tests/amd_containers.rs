//! The AMD environment contract (limits bound to `ROCR_VISIBLE_DEVICES`' UUIDs) and AMD
//! containers: `vgpuctl run --container --vendor amd` over the simulated AMD GPU (new
//! pid and mount namespaces, the library injected by `/etc/ld.so.preload`, HAMi's
//! amd-device-plugin environment), with AMD's own clients inside: Debian's rocm-smi, AMD's
//! amdsmi Python package and hip-python. Judged at the simulator's ground truth while a
//! HIP process of the container holds memory and another tenant of the card, outside the
//! container, holds some too.
//!
//! Needs root (CI runs as root) or unprivileged user namespaces; elsewhere these tests say
//! why and pass, except under CI where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::{
    build_c_client, rocm_smi_field, rocm_smi_tool, run_default, sim_lib_dir, Child, Json, Kv,
    SimEnv,
};

/// The simulated HIP runtime's context per process on these machines.
const CTX: u64 = 64 * MIB;

/// An AMD machine of its own (state file and directory), small contexts, free kernels.
fn amd_machine() -> SimEnv {
    SimEnv::new()
        .var("VGPU_SIM_MODEL", "mi300x")
        .var("VGPU_SIM_CONTEXT_BYTES", CTX.to_string())
        .var("VGPU_SIM_KERNEL_NS", "0")
}

fn hip_cap_client() -> PathBuf {
    testkit::require_sim();
    build_c_client(
        "hip_cap",
        &[
            format!("-L{}", sim_lib_dir().display()),
            "-l:libamdhip64.so.7".to_string(),
        ],
    )
}

/// `vgpuctl run --container --vendor amd --sim ARGS... -- sh -c SCRIPT`.
fn amd_container(sim: &SimEnv, args: &[&str], script: &str) -> Command {
    let mut c = vgpuctl_cmd(sim);
    c.args(["run", "--container", "--vendor", "amd", "--sim"])
        .args(args)
        .args(["--", "sh", "-c", script]);
    c
}

/// Whether AMD containers can be made here (see `common::containers_possible_with`).
fn containers_possible(sim: &SimEnv) -> bool {
    containers_possible_with(
        &mut amd_container(sim, &[], "true"),
        "vgpuctl run --container --vendor amd",
    )
}

/// Waits until file `p` exists and has a line `line`; returns the file.
fn wait_line(p: &Path, line: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        if s.lines().any(|l| l == line) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{p:?} never had {line:?}; it has:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The live processes of the machine: host pid -> bytes on device 0.
fn truth(sim: &SimEnv) -> std::collections::BTreeMap<u64, u64> {
    sim.status_json()
        .get("processes")
        .expect("processes")
        .items()
        .iter()
        .filter(|p| p.get("alive").and_then(Json::as_bool) == Some(true))
        .map(|p| {
            (
                p.get("pid").and_then(Json::as_u64).unwrap(),
                p.at("devices/0/total_bytes")
                    .and_then(Json::as_u64)
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// Runs `program` with `/sys/module/amdgpu/initstate` = `live` in a private mount namespace
/// and no libvgpu: the card's own view, outside any container.
fn on_the_card(sim: &SimEnv, program: impl AsRef<std::ffi::OsStr>) -> Command {
    const WITH_AMDGPU: &str = "mount -t tmpfs vgpu-sysmodule /sys/module && mkdir -p \
                               /sys/module/amdgpu && echo live > /sys/module/amdgpu/initstate \
                               && exec \"$@\"";
    let mut c = sim.command("unshare");
    c.args(["--mount", "--propagation", "private"]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        c.arg("--map-root-user");
    }
    c.args(["sh", "-c", WITH_AMDGPU, "sh"]).arg(program);
    c.env_remove("LD_PRELOAD");
    c
}

/// amdsmi (AMD's Python package, `libamd_smi.so` through ctypes): memory views and the
/// process list of device 0.
const AMDSMI_VIEW: &str = r#"
import amdsmi
amdsmi.amdsmi_init()
h = amdsmi.amdsmi_get_processor_handles()[0]
VRAM = amdsmi.AmdSmiMemoryType.VRAM
print("amdsmi.total=%d" % amdsmi.amdsmi_get_gpu_memory_total(h, VRAM))
print("amdsmi.used=%d" % amdsmi.amdsmi_get_gpu_memory_usage(h, VRAM))
v = amdsmi.amdsmi_get_gpu_vram_usage(h)
print("amdsmi.vram_total_mb=%d" % v["vram_total"])
print("amdsmi.vram_used_mb=%d" % v["vram_used"])
print("amdsmi.vram_size_mb=%d" % amdsmi.amdsmi_get_gpu_vram_info(h)["vram_size"])
procs = amdsmi.amdsmi_get_gpu_process_list(h)
print("amdsmi.nprocs=%d" % len(procs))
# The count query of the C call (max 0, no list), as C callers size their buffer.
import ctypes
from amdsmi import amdsmi_wrapper
n = ctypes.c_uint32(0)
print("amdsmi.count_rc=%d" % amdsmi_wrapper.amdsmi_get_gpu_process_list(h, ctypes.byref(n), None))
print("amdsmi.count=%d" % n.value)
for p in procs:
    print("amdsmi.pid=%d" % p["pid"])
    print("amdsmi.pid_vram=%d" % p["memory_usage"]["vram_mem"])
a = amdsmi.amdsmi_get_gpu_activity(h)
print("amdsmi.gfx_activity=%d" % a["gfx_activity"])
amdsmi.amdsmi_shut_down()
print("ok=1")
"#;

/// hip-python (`dlopen` + `dlsym(handle)`): what the application sees.
const HIP_PYTHON_VIEW: &str = r#"
from hip import hip
OK = hip.hipError_t.hipSuccess
err, free, total = hip.hipMemGetInfo()
assert err == OK, err
print("hip.total=%d" % total)
print("hip.free=%d" % free)
props = hip.hipDeviceProp_t()
assert hip.hipGetDeviceProperties(props, 0)[0] == OK
print("hip.props_total=%d" % props.totalGlobalMem)
err, p = hip.hipMalloc(total)
print("hip.over_rc=%d" % int(err))
print("ok=1")
"#;

/// Inside an AMD container the three AMD clients show the container's slice, its usage and
/// its processes only, while another tenant of the card holds memory outside it; the
/// environment and the mounts are the amd-device-plugin's.
#[test]
fn in_an_amd_container_rocm_smi_amdsmi_and_hip_python_show_the_slice() {
    amd_container_views_show_the_slice("preload");
}

/// The same container with HAMi's amd-device-plugin's own injection:
/// `LD_AUDIT=/usr/local/vgpu/libamvgpu.so`, no `/etc/ld.so.preload` entry.
#[test]
fn in_an_amd_container_rocm_smi_amdsmi_and_hip_python_show_the_slice_under_ld_audit() {
    amd_container_views_show_the_slice("audit");
}

fn amd_container_views_show_the_slice(inject: &str) {
    let sim = amd_machine();
    if !containers_possible(&sim) {
        return;
    }
    let Some(py) = testkit::require_venv("amdsmi and hip-python in an AMD container") else {
        return;
    };
    let Some(tool) = rocm_smi_tool(&sim) else {
        return;
    };
    let hip = hip_cap_client();
    let d = sim.dir().to_path_buf();
    let held = 100 * MIB;
    let other_held = 50 * MIB;

    // Another tenant of the card, outside the container, without libvgpu.
    let mut other = Child::spawn(
        sim.command(&hip)
            .args(["hold", &other_held.to_string()])
            .env_remove("LD_PRELOAD"),
        Duration::from_secs(120),
    );
    other.wait_for_kv("ready", "1", Duration::from_secs(60));

    std::fs::write(d.join("smi_view.py"), AMDSMI_VIEW).unwrap();
    std::fs::write(d.join("hip_view.py"), HIP_PYTHON_VIEW).unwrap();
    mkfifo(&d.join("release"));
    let script = format!(
        "D={d}; \
         echo \"rocr=$ROCR_VISIBLE_DEVICES\" > $D/env; \
         echo \"hip_limit=$HIP_DEVICE_MEMORY_LIMIT\" >> $D/env; \
         echo \"nvidia=${{NVIDIA_VISIBLE_DEVICES:-none}}\" >> $D/env; \
         echo \"preload=$(cat /etc/ld.so.preload)\" >> $D/env; \
         echo \"ld_preload=${{LD_PRELOAD:-none}}\" >> $D/env; \
         echo \"ld_audit=${{LD_AUDIT:-none}}\" >> $D/env; \
         echo \"initstate=$(cat /sys/module/amdgpu/initstate)\" >> $D/env; \
         cmp -s /usr/local/vgpu/libamvgpu.so /usr/local/vgpu/libvgpu.so && echo amvgpu=same >> $D/env; \
         mkfifo $D/hold.in; \
         {hip} hold {held} < $D/hold.in > $D/hold.out 2>&1 & \
         exec 3> $D/hold.in; \
         n=0; until grep -q ready=1 $D/hold.out || [ $n -ge 600 ]; do sleep 0.1; n=$((n+1)); done; \
         python3 {tool} --showmeminfo vram > $D/meminfo.out 2>&1; \
         python3 {tool} --showpids > $D/pids.out 2>&1; \
         python3 {tool} --showuse > $D/use.out 2>&1; \
         {py} $D/smi_view.py > $D/amdsmi.out 2>&1; \
         {py} $D/hip_view.py > $D/hippy.out 2>&1; \
         {vgpuctl} inspect \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" --json > $D/inspect.json 2>&1; \
         {vgpuctl} inspect \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" > $D/inspect.txt 2>&1; \
         {vgpuctl} smi > $D/smi.out 2>&1; \
         echo done=1 > $D/done; \
         read x < $D/release; \
         exec 3>&-; wait",
        d = d.display(),
        hip = hip.display(),
        tool = tool.display(),
        py = py.display(),
        vgpuctl = testkit::target_profile_dir().join("vgpuctl").display(),
    );
    let run = Child::spawn(
        &mut amd_container(&sim, &["--gpumem", "1g", "--inject", inject], &script),
        Duration::from_secs(240),
    );
    wait_line(&d.join("done"), "done=1", Duration::from_secs(180));
    // Ground truth while both hold: the card has both tenants.
    let gt = truth(&sim);
    let other_pid = u64::from(other.pid());
    assert_eq!(gt.get(&other_pid), Some(&(other_held + CTX)), "{gt:?}");

    let env = Kv::parse(&read(&d, "env"));
    let hold = Kv::parse(&read(&d, "hold.out"));
    let why = format!("env:\n{}\nhold:\n{}", read(&d, "env"), read(&d, "hold.out"));
    assert_eq!(hold.i64("hold_rc"), 0, "{why}");
    assert_eq!(env.str("rocr"), hold.str("uuid"), "ROCr UUIDs\n{why}");
    assert_eq!(env.str("hip_limit"), "1024m", "the plugin's <MiB>m\n{why}");
    assert_eq!(env.str("nvidia"), "none", "{why}");
    assert_eq!(env.str("ld_preload"), "none", "{why}");
    if inject == "audit" {
        assert_eq!(env.str("preload"), "", "{why}");
        assert_eq!(env.str("ld_audit"), "/usr/local/vgpu/libamvgpu.so", "{why}");
    } else {
        assert_eq!(env.str("preload"), "/usr/local/vgpu/libvgpu.so", "{why}");
        assert_eq!(env.str("ld_audit"), "none", "{why}");
    }
    assert_eq!(env.str("initstate"), "live", "{why}");
    assert_eq!(
        env.get("amvgpu"),
        Some("same"),
        "libamvgpu.so mounted\n{why}"
    );
    assert_eq!(hold.u64("free"), GIB - held - CTX, "{why}");

    // The region knows the AMD device by its ROCr UUID and the holder by its host pid.
    let insp = Json::parse(&read(&d, "inspect.json")).expect("inspect --json");
    let dev = insp.at("devices/0").expect("a device");
    assert_eq!(
        dev.at("uuid").and_then(Json::as_str),
        Some(hold.str("uuid")),
        "{insp}"
    );
    assert_eq!(dev.at("limit_bytes").and_then(Json::as_u64), Some(GIB));
    let used = held + CTX;
    assert_eq!(
        dev.at("used_bytes").and_then(Json::as_u64),
        Some(used),
        "{insp}"
    );
    let procs = insp.get("processes").unwrap().items();
    let hosts: Vec<u64> = procs
        .iter()
        .filter(|p| p.at("usage/0/total").and_then(Json::as_u64) == Some(used))
        .filter_map(|p| p.get("hostpid").and_then(Json::as_u64))
        .collect();
    let [holder] = hosts[..] else {
        panic!("one holder in the region: {insp}")
    };
    assert_eq!(
        gt.get(&holder),
        Some(&used),
        "the region's host pid is the holder at the ground truth: {gt:?}"
    );
    let text = read(&d, "inspect.txt");
    assert!(
        text.contains(hold.str("uuid")) && !text.contains("CUDA") && !text.contains("NVIDIA"),
        "inspect names the AMD device without CUDA/NVIDIA labels:\n{text}"
    );

    let listed = |text: &str, pid: u64| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()))
    };
    // vgpuctl smi (ROCm SMI: no NVIDIA GPU here) shows the container's view.
    let smi = read(&d, "smi.out");
    let row = smi
        .lines()
        .find(|l| l.starts_with("0 ") && l.contains(hold.str("uuid")))
        .unwrap_or_else(|| panic!("GPU 0 by its ROCr UUID:\n{smi}"));
    assert!(
        row.contains(&format!("{}MiB /   1024MiB", used >> 20)),
        "the slice and the container's usage:\n{smi}"
    );
    assert!(listed(&smi, holder) && !listed(&smi, other_pid), "{smi}");

    // rocm-smi: the slice, the container's usage, the container's processes.
    let mem = read(&d, "meminfo.out");
    assert_eq!(rocm_smi_field(&mem, "VRAM Total Memory (B)"), GIB, "{mem}");
    assert_eq!(
        rocm_smi_field(&mem, "VRAM Total Used Memory (B)"),
        used,
        "{mem}"
    );
    let pids = read(&d, "pids.out");
    assert!(listed(&pids, holder), "the holder is listed\n{pids}");
    assert!(
        !listed(&pids, other_pid),
        "the other tenant is hidden\n{pids}"
    );
    let usage = read(&d, "use.out");
    assert!(
        rocm_smi_field(&usage, "GPU use (%)") <= 100,
        "the device's busy percentage\n{usage}"
    );

    // amdsmi: the same figures and the container's processes only.
    let a = Kv::parse(&read(&d, "amdsmi.out"));
    let why = read(&d, "amdsmi.out");
    assert_eq!(a.get("ok"), Some("1"), "{why}");
    assert_eq!(a.u64("amdsmi.total"), GIB, "{why}");
    assert_eq!(a.u64("amdsmi.used"), used, "{why}");
    assert_eq!(a.u64("amdsmi.vram_total_mb"), 1024, "{why}");
    assert_eq!(a.u64("amdsmi.vram_used_mb"), used >> 20, "{why}");
    assert_eq!(a.u64("amdsmi.vram_size_mb"), 1024, "{why}");
    assert_eq!(a.u64("amdsmi.nprocs"), 1, "{why}");
    assert_eq!(a.i64("amdsmi.count_rc"), 0, "{why}");
    assert_eq!(a.u64("amdsmi.count"), 1, "{why}");
    assert_eq!(a.u64("amdsmi.pid"), holder, "{why}");
    assert_eq!(a.u64("amdsmi.pid_vram"), used, "{why}");

    // hip-python: the slice, what is left of it, refused over it.
    let h = Kv::parse(&read(&d, "hippy.out"));
    let why = read(&d, "hippy.out");
    assert_eq!(h.get("ok"), Some("1"), "{why}");
    assert_eq!(h.u64("hip.total"), GIB, "{why}");
    assert_eq!(h.u64("hip.props_total"), GIB, "{why}");
    assert_eq!(
        h.u64("hip.free"),
        GIB - used - CTX,
        "its own context too\n{why}"
    );
    assert_eq!(h.i64("hip.over_rc"), 2, "hipErrorOutOfMemory\n{why}");

    // The card's own view (no libvgpu, outside the container) lists both tenants: the
    // filter above is libvgpu's, not the simulator's.
    let out = run_default(on_the_card(&sim, &py).arg(d.join("smi_view.py")));
    out.assert_success("amdsmi on the card");
    let card = out.kv();
    assert_eq!(card.u64("amdsmi.nprocs"), 2, "{}", out.describe());
    assert_eq!(card.u64("amdsmi.count"), 2, "{}", out.describe());
    assert_eq!(
        card.u64("amdsmi.vram_size_mb"),
        192 * 1024,
        "{}",
        out.describe()
    );
    assert_eq!(
        card.u64("amdsmi.used"),
        gt.values().sum::<u64>(),
        "{}",
        out.describe()
    );

    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("release"))
            .unwrap();
        use std::io::Write;
        f.write_all(b"go\n").unwrap();
    }
    let out = run.finish();
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    other.close_stdin();
    other.finish().assert_success("other tenant");
}

/// The ROCr UUID of the simulated AMD device HIP shows as ordinal 0 under `visible`
/// (`HIP_VISIBLE_DEVICES`), without libvgpu.
fn uuid_of(sim: &SimEnv, visible: &str) -> String {
    let out = run_default(
        sim.command(hip_cap_client())
            .args(["hold", "0"])
            .env("HIP_VISIBLE_DEVICES", visible)
            .env_remove("LD_PRELOAD")
            .stdin(std::process::Stdio::null()),
    );
    out.assert_success("hold 0");
    out.kv().str("uuid").to_string()
}

/// `hip_cap fill` under libvgpu with the amdgpu marker (so the context is measured), and
/// the application's `HIP_VISIBLE_DEVICES`.
fn fill_on(sim: &SimEnv, visible: Option<&str>, chunk: u64) -> testkit::Output {
    let mut c = on_the_card(sim, hip_cap_client());
    c.args(["fill", &chunk.to_string()])
        .env("LD_PRELOAD", libvgpu())
        .stdin(std::process::Stdio::null());
    if let Some(v) = visible {
        c.env("HIP_VISIBLE_DEVICES", v);
    }
    let out = run_default(&mut c);
    out.assert_success(&format!("fill HIP_VISIBLE_DEVICES={visible:?}"));
    out
}

fn vgpu_lines(out: &testkit::Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("vgpu["))
        .collect()
}

/// HAMi's amd-device-plugin lists the container's GPUs by UUID in `ROCR_VISIBLE_DEVICES`:
/// `HIP_DEVICE_MEMORY_LIMIT_<i>` is the i-th UUID's, whatever `HIP_VISIBLE_DEVICES` the
/// application sets (which renumbers the devices ROCr left); a device used with no limit
/// while another has one says so in one line.
#[test]
fn hip_limits_follow_the_uuids_of_rocr_visible_devices() {
    let probe = amd_machine().var("VGPU_SIM_DEVICES", "2");
    let (uuid0, uuid1) = (uuid_of(&probe, "0"), uuid_of(&probe, "1"));
    assert_ne!(uuid0, uuid1);
    let region = |sim: SimEnv| {
        let r = sim.dir().join("cudevshr.cache");
        sim.var("CUDA_DEVICE_MEMORY_SHARED_CACHE", r)
    };
    // The plugin lists device 1 first: limit _0 (512 MiB) is device 1's, _1 (1 GiB)
    // device 0's.
    let bound = || {
        region(
            amd_machine()
                .var("VGPU_SIM_DEVICES", "2")
                .var("ROCR_VISIBLE_DEVICES", format!("{uuid1},{uuid0}"))
                .var("HIP_DEVICE_MEMORY_LIMIT_0", "512m")
                .var("HIP_DEVICE_MEMORY_LIMIT_1", "1g"),
        )
    };
    for (visible, expect, what) in [
        (None, 512 * MIB, "ordinal 0 is the first listed, device 1"),
        (Some("1"), GIB, "ordinal 0 is the second listed, device 0"),
        (Some("0"), 512 * MIB, "ordinal 0 is the first listed"),
    ] {
        let sim = bound();
        let out = fill_on(&sim, visible, 64 * MIB);
        let kv = out.kv();
        assert_eq!(
            kv.u64("total"),
            expect,
            "{what} (HIP_VISIBLE_DEVICES={visible:?})\n{}",
            out.describe()
        );
        assert_eq!(kv.u64("allocated"), expect - CTX, "{}", out.describe());
        assert!(
            vgpu_lines(&out).is_empty(),
            "no warning\n{}",
            out.describe()
        );
        // The region names the device by the UUID the limit was given for.
        let used_uuid = if expect == GIB { &uuid0 } else { &uuid1 };
        let insp = inspect(&sim);
        let dev = insp
            .get("devices")
            .unwrap()
            .items()
            .iter()
            .find(|d| d.get("uuid").and_then(Json::as_str) == Some(used_uuid.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("{used_uuid} in the region: {insp}"));
        assert_eq!(dev.get("limit_bytes").and_then(Json::as_u64), Some(expect));
    }
    // Control: without the UUID list the same limits go by the ordinal, so the
    // application's HIP_VISIBLE_DEVICES moves them to the other GPU.
    let by_ordinal = region(
        amd_machine()
            .var("VGPU_SIM_DEVICES", "2")
            .var("HIP_DEVICE_MEMORY_LIMIT_0", "512m")
            .var("HIP_DEVICE_MEMORY_LIMIT_1", "1g"),
    );
    assert_eq!(
        fill_on(&by_ordinal, Some("1"), 64 * MIB).kv().u64("total"),
        512 * MIB
    );

    // Only _0 set, the application on the second listed device: one line, uncapped.
    let sim = region(
        amd_machine()
            .var("VGPU_SIM_DEVICES", "2")
            .var("ROCR_VISIBLE_DEVICES", format!("{uuid0},{uuid1}"))
            .var("HIP_DEVICE_MEMORY_LIMIT_0", "1g"),
    );
    let out = fill_on(&sim, Some("1"), 16 * GIB);
    let lines = vgpu_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.describe());
    assert!(
        lines[0].contains(&uuid1) && lines[0].contains("HIP_DEVICE_MEMORY_LIMIT_1"),
        "{}",
        out.describe()
    );
    assert!(
        out.kv().u64("total") > 100 * GIB,
        "the card: {}",
        out.describe()
    );

    // ROCr UUIDs name no CUDA device: a CUDA process with that list (and no
    // NVIDIA_VISIBLE_DEVICES) keeps its limits by device order, capped, no warning.
    let cuda = machine()
        .var("ROCR_VISIBLE_DEVICES", format!("{uuid1},{uuid0}"))
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g");
    let out = run_default(command(&cuda, Style::Linked, true).arg("meminfo"));
    out.assert_success("CUDA meminfo with ROCR_VISIBLE_DEVICES");
    assert_eq!(out.kv().u64("total"), GIB, "{}", out.describe());
    assert!(vgpu_lines(&out).is_empty(), "{}", out.describe());
}

/// `vgpuctl run --vendor amd` without a container: the amd-device-plugin's variables over
/// the simulated AMD GPU (`--device` by ROCr UUID through `ROCR_VISIBLE_DEVICES`), the
/// amdgpu marker in a mount namespace of vgpuctl's own as root (so the context is
/// measured); the other vendor's contract on this machine is refused in one line.
#[test]
fn vgpuctl_run_vendor_amd_gives_a_hip_process_its_slice() {
    let sim = amd_machine().var("VGPU_SIM_DEVICES", "2");
    let uuid1 = uuid_of(&sim, "1");
    let hip = hip_cap_client();
    let run = |args: &[&str], program: &[&str]| {
        let mut c = vgpuctl_cmd(&sim);
        c.args(["run", "--vendor", "amd", "--sim"])
            .args(args)
            .arg("--")
            .arg(&hip)
            .args(program)
            .stdin(std::process::Stdio::null());
        run_default(&mut c)
    };
    let out = run(&["--gpumem", "1g"], &["fill", &(64 * MIB).to_string()]);
    out.assert_success("vgpuctl run --vendor amd -- hip_cap fill");
    let kv = out.kv();
    assert_eq!(kv.u64("total"), GIB, "{}", out.describe());
    assert_eq!(kv.i64("one_more_rc"), 2, "{}", out.describe());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            kv.u64("free_start"),
            GIB - CTX,
            "the context measured through ROCm SMI\n{}",
            out.describe()
        );
    } else {
        assert!(out.stderr.contains("not root"), "{}", out.describe());
    }
    // --device 1: the process sees that GPU only, by its ROCr UUID.
    let out = run(&["--gpumem", "1g", "--device", "1"], &["hold", "0"]);
    out.assert_success("--device 1");
    assert_eq!(out.kv().str("uuid"), uuid1, "{}", out.describe());
    // The NVIDIA contract on an AMD machine: refused before anything runs.
    let mut c = vgpuctl_cmd(&sim);
    c.args(["run", "--vendor", "nvidia", "--sim", "--", "true"]);
    let out = run_default(&mut c);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("has AMD GPUs") && out.stderr.contains("--vendor amd"),
        "{}",
        out.describe()
    );
}

/// `--gpucores` in an AMD container: `HIP_DEVICE_SM_LIMIT` (the time cap HAMi's
/// amd-device-plugin does not have) holds 1 ms HIP kernels launched back to back to about
/// the share asked, the utilization read through ROCm SMI inside the container's
/// namespaces. Loose bounds, as tests/hip_compute_cap.rs: 30 % must give 20-40 %.
#[test]
fn gpucores_caps_hip_launches_in_an_amd_container() {
    let sim = amd_machine()
        .var("VGPU_SIM_KERNEL_NS", "1000000")
        .var("GPU_CORE_UTILIZATION_POLICY", "force");
    if !containers_possible(&sim) {
        return;
    }
    let hip = hip_cap_client();
    let d = sim.dir().to_path_buf();
    mkfifo(&d.join("go"));
    let script = format!(
        "echo sm_limit=$HIP_DEVICE_SM_LIMIT > {d}/limit; \
         exec {hip} launch-loop 100000 launch < {d}/go > {d}/loop.out 2>&1",
        d = d.display(),
        hip = hip.display()
    );
    let run = Child::spawn(
        &mut amd_container(&sim, &["--gpucores", "30"], &script),
        Duration::from_secs(120),
    );
    let mut go = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(d.join("go"))
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the loop never opened its FIFO: {e}"),
            }
        }
    };
    wait_line(&d.join("loop.out"), "ready=1", Duration::from_secs(30));
    assert_eq!(Kv::parse(&read(&d, "limit")).u64("sm_limit"), 30);
    // The container's one HIP process, by host pid at the ground truth.
    let pids: Vec<u64> = truth(&sim).into_keys().collect();
    let [pid] = pids[..] else {
        panic!("one process on the card: {pids:?}")
    };
    let busy = || busy_of(&sim, pid as u32);
    {
        use std::io::Write;
        go.write_all(b"go\n").unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let (b0, t0) = (busy(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (b1, t1) = (busy(), Instant::now());
    let share = (b1 - b0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("--gpucores 30 in an AMD container: {:.1} %", share * 100.0);
    // SAFETY: SIGKILL to the container's command, which this test started (its host pid).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    drop(go);
    let out = run.finish();
    assert_eq!(out.status.code(), Some(137), "{}", out.describe());
    assert!(
        (0.20..=0.40).contains(&share),
        "a 30 % cap in the container gave {:.1} %\n{}",
        share * 100.0,
        read(&d, "loop.out")
    );
}

/// Host pids inside an AMD container, three HIP processes starting together: each learns
/// its own (the context's signature in ROCm SMI's process list, or the probe allocation
/// when that is ambiguous; debug builds are made to take each way), so every context is
/// counted and the region's ledger equals the card's ground truth.
#[test]
fn hip_processes_of_a_container_learn_their_host_pids() {
    for method in ["probe", "signature"] {
        let sim = amd_machine()
            .var("VGPU_DEBUG_HOSTPID", method)
            .var("LIBCUDA_LOG_LEVEL", "4");
        if !containers_possible(&sim) {
            return;
        }
        let hip = hip_cap_client();
        let d = sim.dir().to_path_buf();
        mkfifo(&d.join("release"));
        let ready = "n=0; until grep -q ready=1 $D/h$i.out || [ $n -ge 600 ]; do sleep 0.05; \
                     n=$((n+1)); done;";
        let script = format!(
            "D={d}; \
             for i in 1 2 3; do {hip} hold $((i * 32 * 1048576)) < $D/release > $D/h$i.out 2>&1 & {one_by_one} done; \
             for i in 1 2 3; do {ready} done; \
             {vgpuctl} inspect \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" --json > $D/inspect.json 2>&1; \
             echo done=1 > $D/done; wait",
            d = d.display(),
            hip = hip.display(),
            vgpuctl = testkit::target_profile_dir().join("vgpuctl").display(),
            // The probe's run starts the three at once; the signature's one after another
            // (contexts created at the same moment are what the probe is for).
            one_by_one = if method == "probe" { "" } else { ready },
        );
        let run = Child::spawn(
            &mut amd_container(&sim, &["--gpumem", "1g"], &script),
            Duration::from_secs(120),
        );
        let release = {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(d.join("release"))
                {
                    Ok(f) => break f,
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("the holders never opened their FIFO: {e}"),
                }
            }
        };
        wait_line(&d.join("done"), "done=1", Duration::from_secs(60));
        let gt = truth(&sim);
        let insp = Json::parse(&read(&d, "inspect.json")).expect("inspect --json");
        let procs = insp.get("processes").unwrap().items();
        assert_eq!(procs.len(), 3, "{method}: {insp}");
        let mut ledger = 0;
        for p in procs {
            let host = p.get("hostpid").and_then(Json::as_u64).unwrap_or(0);
            let total = p.at("usage/0/total").and_then(Json::as_u64).unwrap();
            let context = p.at("usage/0/context").and_then(Json::as_u64).unwrap();
            assert_eq!(context, CTX, "{method}: the context is counted\n{insp}");
            assert_eq!(
                gt.get(&host),
                Some(&total),
                "{method}: the slot's host pid is that process at the ground truth: {gt:?}\n{insp}"
            );
            ledger += total;
        }
        assert_eq!(ledger, gt.values().sum::<u64>(), "{method}");
        // The plain (debug) build takes the way it is told to.
        if std::env::var_os("VGPU_TEST_LIBVGPU").is_none() {
            let how = match method {
                "probe" => "found with a probe allocation",
                _ => "from the HIP context's creation",
            };
            for i in 1..=3 {
                let log = read(&d, &format!("h{i}.out"));
                assert!(log.contains(how), "{method}: {how:?} in\n{log}");
            }
        }
        drop(release);
        let out = run.finish();
        assert_eq!(out.status.code(), Some(0), "{method}: {}", out.describe());
    }
}

/// A HIP process of an AMD container killed with SIGKILL: the container's other process
/// sees its memory back within a second (the region's reaper, by pid inside the
/// container), and the card has let it go.
#[test]
fn a_killed_hip_process_of_an_amd_container_is_reclaimed_within_one_second() {
    let sim = amd_machine();
    if !containers_possible(&sim) {
        return;
    }
    let hip = hip_cap_client();
    let d = sim.dir().to_path_buf();
    let held = 200 * MIB;
    let script = format!(
        "D={d}; \
         sleep 600 | {hip} hold {held} > $D/holder.out 2>&1 & \
         n=0; until grep -q ready=1 $D/holder.out || [ $n -ge 600 ]; do sleep 0.05; n=$((n+1)); done; \
         {hip} watch-free 10 60 > $D/watch.out 2>&1 & \
         wait $!",
        d = d.display(),
        hip = hip.display(),
    );
    let run = Child::spawn(
        &mut amd_container(&sim, &["--gpumem", "1g"], &script),
        Duration::from_secs(120),
    );
    let want_before = GIB - held - 2 * CTX;
    let free_line = |l: &str, v: u64| l.strip_prefix("free=") == Some(v.to_string().as_str());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read_or_empty(&d.join("watch.out"))
        .lines()
        .any(|l| free_line(l, want_before))
    {
        assert!(
            Instant::now() < deadline,
            "the watcher never saw {want_before} free:\n{}",
            read_or_empty(&d.join("watch.out"))
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let gt = truth(&sim);
    let holder = gt
        .iter()
        .find(|(_, &b)| b == held + CTX)
        .map(|(&p, _)| p)
        .unwrap_or_else(|| panic!("the holder at the ground truth: {gt:?}"));
    let watcher = gt
        .iter()
        .find(|(_, &b)| b == CTX)
        .map(|(&p, _)| p)
        .unwrap_or_else(|| panic!("the watcher at the ground truth: {gt:?}"));
    let seen = read_or_empty(&d.join("watch.out")).len();
    let killed = Instant::now();
    // SAFETY: SIGKILL to a process of the container this test started (its host pid).
    unsafe { libc::kill(holder as i32, libc::SIGKILL) };
    let want_after = GIB - CTX;
    loop {
        let s = read_or_empty(&d.join("watch.out"));
        if s[seen.min(s.len())..]
            .lines()
            .any(|l| free_line(l, want_after))
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "never reclaimed:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(1), "reclaimed after {took:?}");
    eprintln!("a killed HIP process's {held} bytes reclaimed after {took:?}");
    assert!(!truth(&sim).contains_key(&holder), "the card let it go");
    // SAFETY: as above, the container's last HIP process: the command's status, and the
    // container ends with it.
    unsafe { libc::kill(watcher as i32, libc::SIGKILL) };
    let out = run.finish();
    assert_eq!(out.status.code(), Some(137), "{}", out.describe());
    assert!(truth(&sim).is_empty(), "the card has no process left");
}

fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
