//! The simulated AMD SMI libraries (`libamd_smi.so`, `librocm_smi64.so`) under real clients:
//! AMD's amdsmi Python package (venv) and Debian's rocm-smi 5.2.3 tool
//! (scripts/setup-amd-clients.sh). Both libraries, like the real ones, need the amdgpu driver
//! loaded (`/sys/module/amdgpu/initstate` = `live`): the tests provide it the way a container
//! would, in a private mount namespace (`unshare`), never on the host.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const KERNEL_NS: u64 = 100_000_000;
/// The busy holder queues this many kernels (10 s of device time) and waits 1.2 s before it
/// says ready, so the last second is fully busy while the clients look.
const KERNELS: &str = "100";
const WARMUP_MS: &str = "1200";
const HELD: u64 = 64 * MIB;
const CTX: u64 = 300 * MIB;
/// The holder's program image: its code object is loaded (and charged) at the first launch.
const MODULE: u64 = 2 * MIB;

/// Runs a program with `/sys/module/amdgpu/initstate` = `live` in a private mount namespace.
const WITH_AMDGPU: &str =
    "mount -t tmpfs vgpu-sysmodule /sys/module && mkdir -p /sys/module/amdgpu \
                           && echo live > /sys/module/amdgpu/initstate && exec \"$@\"";

fn unshare_args() -> Vec<String> {
    let mut a = vec![
        "--mount".to_string(),
        "--propagation".into(),
        "private".into(),
    ];
    // SAFETY: getuid has no preconditions.
    if unsafe { libc_getuid() } != 0 {
        a.push("--map-root-user".into());
    }
    a.extend(["sh".into(), "-c".into(), WITH_AMDGPU.into(), "sh".into()]);
    a
}

extern "C" {
    #[link_name = "getuid"]
    fn libc_getuid() -> u32;
}

/// Whether mount namespaces work here (CI is root: they must).
fn namespaces_work() -> bool {
    let ok = Command::new("unshare")
        .args(unshare_args())
        .args(["cat", "/sys/module/amdgpu/initstate"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "live");
    if !ok {
        let msg = "mount namespaces (unshare --mount) are not available";
        if in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
    }
    ok
}

/// `program args` on the machine `env`, inside the amdgpu namespace.
fn in_amdgpu_ns(env: &SimEnv, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut c = env.command("unshare");
    c.args(unshare_args()).arg(program).args(args);
    c
}

fn host_has_amdgpu() -> bool {
    Path::new("/sys/module/amdgpu").exists()
}

fn hip_client() -> PathBuf {
    require_sim();
    build_c_client(
        "hip_client",
        &[
            format!("-L{}", sim_lib_dir().display()),
            "-l:libamdhip64.so.6".to_string(),
        ],
    )
}

/// A HIP process holding 64 MiB and keeping the device busy.
fn busy_holder(env: &SimEnv) -> Child {
    let mut c = env.command(hip_client());
    c.args(["busy", KERNELS, WARMUP_MS]);
    let mut h = Child::spawn(&mut c, Duration::from_secs(120));
    h.wait_for_kv("ready", "1", Duration::from_secs(60));
    h
}

fn amd_env() -> SimEnv {
    SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", CTX.to_string())
        .var("VGPU_SIM_KERNEL_NS", KERNEL_NS.to_string())
        .var("VGPU_SIM_MODULE_BYTES", MODULE.to_string())
}

fn ground_truth_used(env: &SimEnv) -> u64 {
    env.status_json()
        .at("devices/0/used_bytes")
        .and_then(|v| v.as_u64())
        .expect("used_bytes")
}

fn defined_symbols(lib: &Path) -> Vec<String> {
    let out = run(
        Command::new("readelf").args(["--dyn-syms", "-W"]).arg(lib),
        Duration::from_secs(30),
    );
    out.assert_success("readelf");
    out.stdout
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() >= 8 && c[6] != "UND")
                .then(|| c[7].split('@').next().unwrap_or("").to_string())
        })
        .collect()
}

#[test]
fn smi_libraries_export_their_tables_under_the_client_sonames() {
    require_sim();
    let amd = defined_symbols(&sim_lib_dir().join("libamd_smi.so"));
    for s in hip_headers::AMD_SMI_PROCS {
        assert!(amd.iter().any(|a| a == s), "libamd_smi.so lacks {s}");
    }
    let rocm = defined_symbols(&sim_lib_dir().join("librocm_smi64.so"));
    for s in hip_headers::ROCM_SMI_PROCS {
        assert!(rocm.iter().any(|a| a == s), "librocm_smi64.so lacks {s}");
    }
    for n in [
        "libamd_smi.so.26",
        "librocm_smi64.so.1",
        "librocm_smi64.so.7",
    ] {
        assert!(sim_lib_dir().join(n).exists(), "{n} missing");
    }
}

const AMDSMI: &str = r#"
import sys
import amdsmi
from amdsmi import amdsmi_exception as ex
try:
    amdsmi.amdsmi_init()
except ex.AmdSmiLibraryException as e:
    print("init_error=%d" % e.get_error_code())
    print("ok=1")
    sys.exit(0)
hs = amdsmi.amdsmi_get_processor_handles()
print("count=%d" % len(hs))
h = hs[0]
print("uuid=" + amdsmi.amdsmi_get_gpu_device_uuid(h))
a = amdsmi.amdsmi_get_gpu_asic_info(h)
print("market_name=" + a["market_name"])
print("cus=%d" % a["num_compute_units"])
print("gfx=" + a["target_graphics_version"])
VRAM = amdsmi.AmdSmiMemoryType.VRAM
print("total=%d" % amdsmi.amdsmi_get_gpu_memory_total(h, VRAM))
print("used=%d" % amdsmi.amdsmi_get_gpu_memory_usage(h, VRAM))
v = amdsmi.amdsmi_get_gpu_vram_usage(h)
print("vram_total_mb=%d" % v["vram_total"])
print("vram_used_mb=%d" % v["vram_used"])
print("gfx_activity=%s" % amdsmi.amdsmi_get_gpu_activity(h)["gfx_activity"])
vi = amdsmi.amdsmi_get_gpu_vram_info(h)
print("vram_info_size=%d" % vi["vram_size"])
print("driver=" + amdsmi.amdsmi_get_gpu_driver_info(h)["driver_version"])
print("board=" + amdsmi.amdsmi_get_gpu_board_info(h)["product_name"])
print("lib_major=%d" % amdsmi.amdsmi_get_lib_version()["major"])
ps = amdsmi.amdsmi_get_gpu_process_list(h)
print("nprocs=%d" % len(ps))
for i, p in enumerate(ps):
    print("proc%d.pid=%d" % (i, p["pid"]))
    print("proc%d.name=%s" % (i, p["name"]))
    print("proc%d.vram=%d" % (i, p["memory_usage"]["vram_mem"]))
    print("proc%d.gfx_ns=%d" % (i, p["engine_usage"]["gfx"]))
amdsmi.amdsmi_shut_down()
print("ok=1")
"#;

fn amdsmi_kv(env: &SimEnv, py: &Path, namespace: bool) -> Kv {
    let mut c = if namespace {
        in_amdgpu_ns(env, py, &["-c", AMDSMI])
    } else {
        let mut c = env.command(py);
        c.args(["-c", AMDSMI]);
        c
    };
    c.env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(&mut c, Duration::from_secs(120));
    out.assert_success("amdsmi script");
    let kv = out.kv();
    assert_eq!(kv.get("ok"), Some("1"), "{}", out.describe());
    kv
}

#[test]
fn amdsmi_package_imports_and_needs_the_driver() {
    let Some(py) = require_venv("amdsmi") else {
        return;
    };
    require_sim();
    if host_has_amdgpu() {
        eprintln!("SKIP: this host has an amdgpu module; the no-driver case cannot be shown");
        return;
    }
    // The import binds ~180 functions: any missing one fails it. Without the driver,
    // amdsmi_init says so.
    let kv = amdsmi_kv(&amd_env(), &py, false);
    assert_eq!(kv.i64("init_error"), 34, "AMDSMI_STATUS_DRIVER_NOT_LOADED");
}

#[test]
fn amdsmi_package_reports_vram_activity_and_processes() {
    let Some(py) = require_venv("amdsmi") else {
        return;
    };
    if !namespaces_work() {
        return;
    }
    let env = amd_env();
    let h = busy_holder(&env);
    let kv = amdsmi_kv(&env, &py, true);
    let used = ground_truth_used(&env);
    assert_eq!(used, CTX + HELD + MODULE);
    assert_eq!(kv.u64("count"), 1);
    assert_eq!(kv.str("market_name"), "AMD Instinct MI300X");
    assert_eq!(kv.u64("cus"), 304);
    assert_eq!(kv.str("gfx"), "gfx942");
    let uuid = kv.str("uuid");
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
    assert_eq!(&uuid[4..8], "74a1", "amd-smi UUIDs carry the PCI device id");
    assert_eq!(kv.u64("total"), 192 * GIB);
    assert_eq!(kv.u64("used"), used);
    assert_eq!(kv.u64("vram_total_mb"), 192 * 1024);
    assert_eq!(kv.u64("vram_used_mb"), used >> 20);
    assert_eq!(
        kv.u64("gfx_activity"),
        100,
        "queued kernels cover the last second"
    );
    assert_eq!(kv.u64("nprocs"), 1);
    assert_eq!(kv.u64("proc0.pid"), u64::from(h.pid()));
    // comm: the client's file name, truncated to 15 characters by the kernel.
    assert!(
        kv.str("proc0.name").starts_with("hip_client"),
        "{}",
        kv.str("proc0.name")
    );
    assert_eq!(kv.u64("proc0.vram"), used);
    assert!(
        kv.u64("proc0.gfx_ns") >= 900_000_000,
        "{}",
        kv.u64("proc0.gfx_ns")
    );
    h.finish().assert_success("busy holder");
}

fn rocm_smi_out(env: &SimEnv, tool: &Path, namespace: bool) -> String {
    let args = [
        tool.to_str().unwrap(),
        "--showmeminfo",
        "vram",
        "--showuse",
        "--showpids",
    ];
    let mut c = if namespace {
        in_amdgpu_ns(env, "python3", &args)
    } else {
        let mut c = env.command("python3");
        c.args(args);
        c
    };
    c.env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(&mut c, Duration::from_secs(120));
    out.assert_success("rocm-smi");
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn rocm_smi_tool_shows_vram_use_and_pids_and_forgets_a_killed_process() {
    if !namespaces_work() {
        return;
    }
    let env = amd_env();
    let Some(tool) = rocm_smi_tool(&env) else {
        return;
    };
    let mut h = busy_holder(&env);
    let out = rocm_smi_out(&env, &tool, true);
    let used = ground_truth_used(&env);
    assert_eq!(used, CTX + HELD + MODULE);
    assert_eq!(
        rocm_smi_field(&out, "VRAM Total Memory (B)"),
        192 * GIB,
        "{out}"
    );
    assert_eq!(
        rocm_smi_field(&out, "VRAM Total Used Memory (B)"),
        used,
        "{out}"
    );
    assert_eq!(rocm_smi_field(&out, "GPU use (%)"), 100, "{out}");
    // KFD process table: PID, name, GPU(s), VRAM USED, ...
    let pid = h.pid().to_string();
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.as_str()))
        .unwrap_or_else(|| panic!("pid {pid} not listed\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.len(), 6, "{row:?}");
    assert_eq!(cols[2], "1", "GPU(s) of {row:?}");
    assert_eq!(cols[3], used.to_string(), "VRAM USED of {row:?}");
    // kill -9: the next look reclaims the process (liveness sweep).
    h.kill9();
    // Reclaiming sweeps run at most every 100 ms (SWEEP_INTERVAL_NS): let one be due.
    std::thread::sleep(Duration::from_millis(150));
    let after = rocm_smi_out(&env, &tool, true);
    assert_eq!(
        rocm_smi_field(&after, "VRAM Total Used Memory (B)"),
        0,
        "{after}"
    );
    assert!(after.contains("No KFD PIDs currently running"), "{after}");
}

#[test]
fn rocm_smi_tool_refuses_without_the_driver() {
    let env = amd_env();
    let Some(tool) = rocm_smi_tool(&env) else {
        return;
    };
    if host_has_amdgpu() {
        eprintln!("SKIP: this host has an amdgpu module");
        return;
    }
    let out = rocm_smi_out(&env, &tool, false);
    assert!(out.contains("Driver not initialized"), "{out}");
    assert!(!out.contains("VRAM Total Memory"), "{out}");
}
