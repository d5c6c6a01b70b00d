//! libvgpu's memory cap over HIP, through real processes on the simulated AMD GPU: a C
//! client linked `-lamdhip64` (bound to the versioned names, `hipMalloc@hip_4.2`) under
//! `LD_PRELOAD=libvgpu.so`, judged at the simulator's ground truth (`vgpu-sim status`, and
//! the simulator's own `hipMemGetInfo` reached past libvgpu), and AMD's `hip-python`.
//!
//! The simulated card takes `CTX` bytes per process for the HIP runtime's implicit context
//! (16 MiB where 16 processes race): libvgpu measures it through ROCm SMI and counts it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::{
    build_c_client, rocm_smi_field, rocm_smi_tool, run_default, sim_lib_dir, Child, SimEnv,
};

/// The simulated runtime's context cost per process.
const CTX: u64 = 300 * MIB;

fn amd_machine(limit: &str) -> SimEnv {
    amd_machine_ctx(limit, CTX)
}

fn amd_machine_ctx(limit: &str, ctx: u64) -> SimEnv {
    let sim = SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", ctx.to_string())
        .var("VGPU_SIM_KERNEL_NS", "0");
    let region = sim.dir().join("cudevshr.cache");
    sim.var("CUDA_DEVICE_MEMORY_SHARED_CACHE", region)
        .var("HIP_DEVICE_MEMORY_LIMIT", limit)
}

fn hip_cap_client() -> std::path::PathBuf {
    hip_cap_client_built(&[])
}

/// The client built with `extra` compiler flags.
fn hip_cap_client_built(extra: &[&str]) -> std::path::PathBuf {
    testkit::require_sim();
    let mut args = vec![
        format!("-L{}", sim_lib_dir().display()),
        "-l:libamdhip64.so.7".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    build_c_client("hip_cap", &args)
}

/// Runs `program` with `/sys/module/amdgpu/initstate` = `live` in a private mount namespace
/// (ROCm SMI, which measures the runtime's context, needs the amdgpu driver loaded, like the
/// real one): the way a container would provide it, never on the host. `unshare` and `sh`
/// exec, so the child's pid is the program's.
fn in_amdgpu_ns(sim: &SimEnv, program: impl AsRef<std::ffi::OsStr>) -> Command {
    const WITH_AMDGPU: &str =
        "mount -t tmpfs vgpu-sysmodule /sys/module && mkdir -p /sys/module/amdgpu \
                               && echo live > /sys/module/amdgpu/initstate && exec \"$@\"";
    let mut c = sim.command("unshare");
    c.args(["--mount", "--propagation", "private"]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        c.arg("--map-root-user");
    }
    c.args(["sh", "-c", WITH_AMDGPU, "sh"]).arg(program);
    c
}

fn hip_command(sim: &SimEnv, args: &[&str]) -> Command {
    hip_command_via(sim, Injection::Preload, args)
}

fn hip_command_via(sim: &SimEnv, how: Injection, args: &[&str]) -> Command {
    let mut c = in_amdgpu_ns(sim, hip_cap_client());
    how.apply(&mut c, &libvgpu(), sim.dir()).args(args);
    c
}

fn device_used(sim: &SimEnv) -> u64 {
    sim.status_json()
        .at("devices/0/used_bytes")
        .and_then(|v| v.as_u64())
        .expect("devices/0/used_bytes")
}

#[test]
fn hip_malloc_is_capped_to_the_byte_and_every_query_reports_the_slice() {
    hip_malloc_is_capped_to_the_byte(Injection::Preload);
}

/// The same under `LD_AUDIT` (HAMi's AMD injection): the versioned PLT bindings reach the
/// hooks through `la_symbind64`.
#[test]
fn hip_malloc_is_capped_to_the_byte_and_every_query_reports_the_slice_under_ld_audit() {
    hip_malloc_is_capped_to_the_byte(Injection::Audit);
}

fn hip_malloc_is_capped_to_the_byte(how: Injection) {
    // HAMi's amd-device-plugin form: one value, "<MiB>m".
    let sim = amd_machine("1024m");
    let mut c = hip_command_via(&sim, how, &["fill", &(100 * MIB).to_string()]);
    let mut h = Child::spawn(&mut c, Duration::from_secs(120));
    h.wait_for_kv("ready", "1", Duration::from_secs(60));
    let kv = h.kv();
    let why = h.lines_seen().join("\n");
    for key in ["total", "device_total_mem", "props_total", "props600_total"] {
        assert_eq!(kv.u64(key), GIB, "{key} is the slice\n{why}");
    }
    assert_eq!(kv.i64("props_past_end_intact"), 1, "{why}");
    assert_eq!(kv.u64("free_start"), GIB - CTX, "the context counts\n{why}");
    assert_eq!(kv.u64("chunks"), (GIB - CTX) / (100 * MIB), "{why}");
    assert_eq!(kv.i64("chunk_refusal"), 2, "hipErrorOutOfMemory\n{why}");
    assert_eq!(kv.i64("exact_rc"), 0, "the last free byte is usable\n{why}");
    assert_eq!(kv.u64("free_when_full"), 0, "{why}");
    assert_eq!(kv.i64("one_more_rc"), 2, "one byte over is refused\n{why}");
    // Ground truth: the card holds exactly the slice (context included), not a byte more.
    assert_eq!(device_used(&sim), GIB, "{why}");
    h.send_line("go");
    let out = h.finish();
    out.assert_success("hip_cap fill");
    let kv = out.kv();
    assert_eq!(
        kv.u64("free_after_release"),
        GIB - CTX,
        "{}",
        out.describe()
    );
    assert_eq!(kv.i64("realloc_rc"), 0, "{}", out.describe());
    assert_eq!(device_used(&sim), 0);
}

/// A client built `-fno-plt -Wl,-z,now`: every call to HIP goes through a GOT slot filled
/// at start by a data relocation (`GLOB_DAT`), which `la_symbind64` is never told about;
/// under `LD_AUDIT` the real library's own exports point at the hooks (audit::patch_exports).
#[test]
fn a_client_without_plt_bound_at_start_is_capped_under_both_injections() {
    for how in Injection::BOTH {
        let sim = amd_machine("1g");
        let exe = hip_cap_client_built(&["-fno-plt", "-Wl,-z,now"]);
        let gotpcrel = run_default(Command::new("readelf").args(["-rW"]).arg(&exe));
        assert!(
            gotpcrel
                .stdout
                .lines()
                .any(|l| l.contains("R_X86_64_GLOB_DAT") && l.contains("hipMalloc@"))
                && !gotpcrel
                    .stdout
                    .lines()
                    .any(|l| l.contains("JUMP_SLOT") && l.contains("hipMalloc@")),
            "the client binds hipMalloc through GLOB_DAT only\n{}",
            gotpcrel.stdout
        );
        let mut c = in_amdgpu_ns(&sim, &exe);
        how.apply(&mut c, &libvgpu(), sim.dir())
            .args(["fill", &(100 * MIB).to_string()])
            .stdin(std::process::Stdio::null());
        let out = run_default(&mut c);
        out.assert_success(&format!("hip_cap -fno-plt under {how:?}"));
        let kv = out.kv();
        let why = out.describe();
        assert_eq!(kv.u64("total"), GIB, "{how:?}\n{why}");
        assert_eq!(kv.u64("props600_total"), GIB, "{how:?}\n{why}");
        assert_eq!(kv.u64("free_start"), GIB - CTX, "{how:?}\n{why}");
        assert_eq!(kv.i64("one_more_rc"), 2, "{how:?}\n{why}");
        assert_eq!(kv.u64("allocated"), GIB - CTX, "{how:?}\n{why}");
    }
}

/// Both injections at once (`LD_PRELOAD` and `LD_AUDIT` naming libvgpu): the audit copy
/// stands down with one line, the preloaded one enforces, and the slice is charged once
/// (a second ledger would count the context twice).
#[test]
fn preloaded_and_audit_copies_together_charge_the_slice_once() {
    // The client alone (not under in_amdgpu_ns, whose every process would print its line):
    // no ROCm SMI, so the context is charged the conservative figure, and a second ledger
    // would charge it and every allocation twice.
    let sim = amd_machine("1g");
    let mut c = sim.command(hip_cap_client());
    Injection::Audit
        .apply(&mut c, &libvgpu(), sim.dir())
        .env("LD_PRELOAD", libvgpu())
        .args(["fill", &(100 * MIB).to_string()])
        .stdin(std::process::Stdio::null());
    let out = run_default(&mut c);
    out.assert_success("hip_cap fill under LD_PRELOAD and LD_AUDIT");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(
        out.stderr.matches("the LD_AUDIT copy stands down").count(),
        1,
        "one line\n{why}"
    );
    assert_eq!(kv.u64("total"), GIB, "{why}");
    assert_eq!(kv.u64("free_start"), GIB - UNMEASURED_CTX, "{why}");
    assert_eq!(
        kv.u64("allocated"),
        GIB - UNMEASURED_CTX,
        "charged once\n{why}"
    );
    assert_eq!(kv.i64("one_more_rc"), 2, "{why}");
    // Ground truth: the card held the slice (context included) and got it all back.
    assert_eq!(device_used(&sim), 0, "{why}");
}

#[test]
fn every_hip_allocation_path_is_charged_as_the_card_charges_it_and_host_memory_is_not() {
    let half = 512 * MIB;
    let sim = amd_machine("1g");
    let out = run_default(&mut hip_command(&sim, &["paths", &half.to_string()]));
    out.assert_success("hip_cap paths");
    let kv = out.kv();
    let why = out.describe();
    for path in [
        "malloc", "managed", "extflags", "pitch", "3d", "async", "array", "vmm",
    ] {
        let k = |s: &str| format!("{path}.{s}");
        assert_eq!(kv.i64(&k("over_rc")), 2, "{path}: over the cap\n{why}");
        assert_eq!(
            kv.u64(&k("card_after_over")),
            0,
            "{path}: refused before the card\n{why}"
        );
        assert_eq!(kv.i64(&k("rc")), 0, "{path}\n{why}");
        assert_eq!(
            kv.u64(&k("card")),
            half,
            "{path}: the card took half\n{why}"
        );
        assert_eq!(
            kv.u64(&k("charged")),
            kv.u64(&k("card")),
            "{path}: charged what the card took\n{why}"
        );
        assert_eq!(kv.i64(&k("free_rc")), 0, "{path}\n{why}");
        assert_eq!(kv.u64(&k("card_after_free")), 0, "{path}\n{why}");
        assert_eq!(kv.u64(&k("after_free")), 0, "{path}: credited\n{why}");
    }
    // The other array paths: what the elements take (chosen on the simulated card's 2 MiB
    // array granularity), charged exactly as the card took it; over the cap refused first.
    for path in [
        "array3d",
        "arraycreate",
        "array3dcreate",
        "mipmap",
        "mipmapcreate",
    ] {
        let k = |s: &str| format!("{path}.{s}");
        assert_eq!(kv.i64(&k("over_rc")), 2, "{path}: over the cap\n{why}");
        assert_eq!(
            kv.u64(&k("card_after_over")),
            0,
            "{path}: refused before the card\n{why}"
        );
        assert_eq!(kv.i64(&k("rc")), 0, "{path}\n{why}");
        assert_eq!(
            kv.u64(&k("card")),
            kv.u64(&k("want")),
            "{path}: the card took the elements' bytes\n{why}"
        );
        assert_eq!(
            kv.u64(&k("charged")),
            kv.u64(&k("card")),
            "{path}: charged what the card took\n{why}"
        );
        assert_eq!(kv.i64(&k("free_rc")), 0, "{path}\n{why}");
        assert_eq!(kv.u64(&k("card_after_free")), 0, "{path}\n{why}");
        assert_eq!(kv.u64(&k("after_free")), 0, "{path}: credited\n{why}");
    }
    assert_eq!(kv.u64("pitch.pitch"), 1024, "{why}");
    assert_eq!(
        kv.i64("host.rc"),
        0,
        "host memory over the slice is fine\n{why}"
    );
    assert_eq!(kv.u64("host.charged"), 0, "{why}");
    assert_eq!(kv.u64("host.card"), 0, "{why}");
}

/// `hipMemPoolDestroy` with an allocation still live (what AMD's runtime and CUDA's driver
/// do): the allocation stays on the card and charged, and its own `hipFreeAsync` credits it.
#[test]
fn a_destroyed_pools_live_allocation_stays_charged_until_freed() {
    let half = 512 * MIB;
    let sim = amd_machine("1g");
    let out = run_default(&mut hip_command(&sim, &["pool", &half.to_string()]));
    out.assert_success("hip_cap pool");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.i64("create_rc"), 0, "{why}");
    assert_eq!(kv.i64("over_rc"), 2, "over the cap from a pool\n{why}");
    assert_eq!(kv.u64("card_after_over"), 0, "{why}");
    assert_eq!(kv.i64("rc"), 0, "{why}");
    assert_eq!(kv.u64("card"), half, "{why}");
    assert_eq!(kv.u64("charged"), half, "{why}");
    assert_eq!(kv.i64("destroy_rc"), 0, "{why}");
    assert_eq!(kv.u64("card_after_destroy"), half, "still live\n{why}");
    assert_eq!(
        kv.u64("charged_after_destroy"),
        half,
        "still charged\n{why}"
    );
    assert_eq!(kv.i64("free_rc"), 0, "{why}");
    assert_eq!(kv.u64("card_after_free"), 0, "{why}");
    assert_eq!(kv.u64("after_free"), 0, "credited by its free\n{why}");
}

/// Graph memory nodes, CUDA's rule: charged to the graph when the node is added (over the
/// cap refused before the card moved), credited when the graph is destroyed, or by an
/// explicit `hipFree` first and then not again.
#[test]
fn graph_memory_nodes_are_charged_to_the_graph_and_credited_once() {
    let half = 512 * MIB;
    let sim = amd_machine("1g");
    let out = run_default(&mut hip_command(&sim, &["graphmem", &half.to_string()]));
    out.assert_success("hip_cap graphmem");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.i64("create_rc"), 0, "{why}");
    assert_eq!(kv.i64("over_rc"), 2, "{why}");
    assert_eq!(kv.u64("card_after_over"), 0, "{why}");
    assert_eq!(kv.i64("rc"), 0, "{why}");
    assert_eq!(kv.u64("card"), half, "{why}");
    assert_eq!(kv.u64("charged"), half, "{why}");
    assert_eq!(kv.i64("destroy_rc"), 0, "{why}");
    assert_eq!(kv.u64("card_after_destroy"), 0, "{why}");
    assert_eq!(kv.u64("after_destroy"), 0, "{why}");
    assert_eq!(kv.i64("rc2"), 0, "{why}");
    assert_eq!(kv.u64("card2"), half, "{why}");
    assert_eq!(kv.u64("charged2"), half, "{why}");
    assert_eq!(kv.i64("free_rc"), 0, "{why}");
    assert_eq!(kv.u64("card_after_free"), 0, "{why}");
    assert_eq!(kv.u64("after_free"), 0, "{why}");
    assert_eq!(kv.i64("destroy2_rc"), 0, "{why}");
    assert_eq!(kv.u64("card_after_destroy2"), 0, "{why}");
    assert_eq!(kv.u64("after_destroy2"), 0, "credited once\n{why}");
    assert_eq!(kv.i64("refill_rc"), 0, "the slice is whole again\n{why}");
    assert_eq!(kv.i64("over_after_rc"), 2, "and not a byte more\n{why}");
}

#[test]
fn per_device_variable_and_cuda_name_are_honoured() {
    // HIP_DEVICE_MEMORY_LIMIT_0 wins over the global value; CUDA_DEVICE_MEMORY_LIMIT wins
    // over HIP's when both are set.
    for (vars, want) in [
        (&[("HIP_DEVICE_MEMORY_LIMIT_0", "620m")][..], 620 * MIB),
        (&[("CUDA_DEVICE_MEMORY_LIMIT", "556m")][..], 556 * MIB),
    ] {
        let mut sim = amd_machine("1g");
        for (k, v) in vars {
            sim.set(k, v);
        }
        let out = run_default(
            hip_command(&sim, &["fill", &(64 * MIB).to_string()])
                .stdin(std::process::Stdio::null()),
        );
        out.assert_success("hip_cap fill");
        let kv = out.kv();
        assert_eq!(kv.u64("total"), want, "{vars:?}\n{}", out.describe());
        assert_eq!(
            kv.u64("allocated"),
            want - CTX,
            "{vars:?}\n{}",
            out.describe()
        );
    }
}

#[test]
fn two_hip_processes_share_one_slice_through_the_region() {
    two_hip_processes_share_one_slice(Injection::Preload);
}

/// Under `LD_AUDIT`: two audit-mode processes share the container's region.
#[test]
fn two_hip_processes_share_one_slice_through_the_region_under_ld_audit() {
    two_hip_processes_share_one_slice(Injection::Audit);
}

fn two_hip_processes_share_one_slice(how: Injection) {
    let sim = amd_machine("1g");
    let mut c = hip_command_via(&sim, how, &["hold", &(300 * MIB).to_string()]);
    let mut holder = Child::spawn(&mut c, Duration::from_secs(120));
    holder.wait_for_kv("ready", "1", Duration::from_secs(60));
    assert_eq!(holder.kv().i64("hold_rc"), 0);
    let out = run_default(
        hip_command_via(&sim, how, &["fill", &(100 * MIB).to_string()])
            .stdin(std::process::Stdio::null()),
    );
    out.assert_success("second process");
    let kv = out.kv();
    // The holder's 300 MiB and context, then this process's own context.
    let left = GIB - 300 * MIB - 2 * CTX;
    assert_eq!(kv.u64("free_start"), left, "{}", out.describe());
    assert_eq!(kv.u64("allocated"), left, "{}", out.describe());
    // The region (what `vgpuctl inspect` shows) keys the AMD device by its ROCr UUID and
    // counts the holder's memory there.
    let report = inspect(&sim);
    let dev = report.at("devices/0").expect("a device in the region");
    assert_eq!(
        dev.at("uuid").and_then(|v| v.as_str()),
        Some(holder.kv().str("uuid")),
        "{report}"
    );
    assert_eq!(
        dev.at("limit_bytes").and_then(|v| v.as_u64()),
        Some(GIB),
        "{report}"
    );
    assert_eq!(
        dev.at("used_bytes").and_then(|v| v.as_u64()),
        Some(300 * MIB + CTX),
        "{report}"
    );
    holder.close_stdin();
    holder.finish().assert_success("holder");
}

const HIP_PYTHON_FILL: &str = r#"
from hip import hip
OK = hip.hipError_t.hipSuccess
def ck(r):
    err, *rest = r if isinstance(r, tuple) else (r,)
    assert err == OK, err
    return rest[0] if len(rest) == 1 else rest
props = hip.hipDeviceProp_t()
ck(hip.hipGetDeviceProperties(props, 0))
print("props_total=%d" % props.totalGlobalMem)
free0, total = ck(hip.hipMemGetInfo())
print("free0=%d" % free0)
print("total=%d" % total)
ptrs = []
while True:
    err, p = hip.hipMalloc(100 << 20)
    if err != OK:
        print("stop_err=%d" % int(err))
        break
    ptrs.append(p)
print("chunks=%d" % len(ptrs))
free1, _ = ck(hip.hipMemGetInfo())
print("free1=%d" % free1)
print("ready=1", flush=True)
import sys
sys.stdin.readline()
for p in ptrs:
    ck(hip.hipFree(p))
print("free2=%d" % ck(hip.hipMemGetInfo())[0])
print("ok=1")
"#;

/// hip-python loads `libamdhip64.so` with `dlopen` and finds each function with
/// `dlsym(handle, ...)`: our `dlsym` answers those with the hooks.
#[test]
fn hip_python_allocates_until_the_slice_is_full() {
    hip_python_allocates_until_full(Injection::Preload);
}

/// hip-python's `dlsym(handle)` lookups under `LD_AUDIT`: answered through `la_symbind64`
/// (`LA_SYMB_DLSYM`), the program's own `dlsym` untouched.
#[test]
fn hip_python_allocates_until_the_slice_is_full_under_ld_audit() {
    hip_python_allocates_until_full(Injection::Audit);
}

fn hip_python_allocates_until_full(how: Injection) {
    let Some(py) = testkit::require_venv("hip-python under libvgpu") else {
        return;
    };
    let sim = amd_machine("1g");
    let mut c = in_amdgpu_ns(&sim, &py);
    c.args(["-c", HIP_PYTHON_FILL])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    how.apply(&mut c, &libvgpu(), sim.dir());
    let mut h = Child::spawn(&mut c, Duration::from_secs(120));
    h.wait_for_kv("ready", "1", Duration::from_secs(90));
    let kv = h.kv();
    let why = h.lines_seen().join("\n");
    assert_eq!(kv.u64("props_total"), GIB, "{why}");
    assert_eq!(kv.u64("total"), GIB, "{why}");
    assert_eq!(kv.u64("free0"), GIB - CTX, "{why}");
    assert_eq!(kv.u64("chunks"), (GIB - CTX) / (100 * MIB), "{why}");
    assert_eq!(kv.i64("stop_err"), 2, "hipErrorOutOfMemory\n{why}");
    assert_eq!(kv.u64("free1"), (GIB - CTX) % (100 * MIB), "{why}");
    // Ground truth while held: the context and the chunks.
    assert_eq!(
        device_used(&sim),
        CTX + kv.u64("chunks") * 100 * MIB,
        "{why}"
    );
    h.close_stdin();
    let out = h.finish();
    out.assert_success("hip-python under libvgpu");
    assert_eq!(out.kv().u64("free2"), GIB - CTX, "{}", out.describe());
}

/// A limit the program sets itself before its first HIP call (not in its initial
/// environment) applies under both injections: under `LD_AUDIT` our libc's environment is a
/// copy of the initial one, so libvgpu reads the program's.
#[test]
fn a_limit_the_program_sets_before_its_first_hip_call_applies_under_both_injections() {
    let Some(py) = testkit::require_venv("hip-python setting its own limit") else {
        return;
    };
    const SETS_ITS_LIMIT: &str = r#"
import os
os.environ["HIP_DEVICE_MEMORY_LIMIT"] = "1g"
from hip import hip
err, free, total = hip.hipMemGetInfo()
assert err == hip.hipError_t.hipSuccess, err
print("total=%d" % total)
"#;
    for how in Injection::BOTH {
        let sim = amd_machine("1g");
        let mut c = sim.command(&py);
        c.env_remove("HIP_DEVICE_MEMORY_LIMIT")
            .args(["-c", SETS_ITS_LIMIT])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        how.apply(&mut c, &libvgpu(), sim.dir());
        let out = run_default(&mut c);
        out.assert_success(&format!("hip-python setting its limit under {how:?}"));
        assert_eq!(out.kv().u64("total"), GIB, "{how:?}\n{}", out.describe());
    }
}

/// `readelf --dyn-syms -W`: `name -> version` of every defined versioned export.
fn versioned_exports(file: &std::path::Path) -> std::collections::HashMap<String, String> {
    let out = run_default(Command::new("readelf").args(["--dyn-syms", "-W"]).arg(file));
    out.assert_success("readelf");
    out.stdout
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.get(6) == Some(&"UND") {
                return None;
            }
            let (name, ver) = cols.get(7)?.split_once('@')?;
            Some((name.to_string(), ver.trim_start_matches('@').to_string()))
        })
        .collect()
}

/// Every HIP function libvgpu exports carries the node the real library defines it under
/// (a binary linked against `hipMalloc@hip_4.2` binds to ours), and the CUDA/NVML exports
/// stay unversioned.
#[test]
fn hip_exports_carry_the_real_librarys_version_nodes() {
    testkit::require_sim();
    let real = versioned_exports(&sim_lib_dir().join("libamdhip64.so"));
    let ours = versioned_exports(&libvgpu());
    let hip: Vec<_> = ours.keys().filter(|n| n.contains("hip")).collect();
    assert!(hip.len() > 30, "our HIP exports: {hip:?}");
    for name in hip {
        assert_eq!(
            ours.get(name),
            real.get(name),
            "{name}: our node vs the real library's"
        );
    }
    for name in ["hipMalloc", "hipFree", "hipMemGetInfo", "hipLaunchKernel"] {
        assert!(ours.contains_key(name), "{name} exported");
    }
    assert_eq!(
        ours.get("hipGetDevicePropertiesR0600").map(String::as_str),
        Some("hip_6.0")
    );
    assert!(
        !ours
            .keys()
            .any(|n| n.starts_with("cu") || n.starts_with("nvml") || n == "dlsym"),
        "CUDA/NVML exports are unversioned"
    );
}

#[test]
fn hip_get_proc_address_answers_with_the_hook_of_a_hooked_row_only() {
    let sim = amd_machine("1g");
    let out = run_default(&mut hip_command(&sim, &["procaddr"]));
    out.assert_success("hip_cap procaddr");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.i64("malloc.rc"), 0, "{why}");
    assert_eq!(
        kv.i64("malloc.status"),
        0,
        "HIP_GET_PROC_ADDRESS_SUCCESS\n{why}"
    );
    assert_eq!(kv.i64("malloc.is_hook"), 1, "{why}");
    assert_eq!(kv.i64("malloc.is_sim"), 0, "{why}");
    assert_eq!(
        kv.i64("malloc.over_rc"),
        2,
        "capped through the pointer\n{why}"
    );
    assert_eq!(kv.i64("memcpy.rc"), 0, "{why}");
    assert_eq!(
        kv.i64("memcpy.is_sim"),
        1,
        "a pass row: the real function\n{why}"
    );
    assert_eq!(kv.i64("r0600.is_hook"), 1, "{why}");
    // A launch row (a gate) is handed out as our export too.
    assert_eq!(kv.i64("exc.rc"), 0, "{why}");
    assert_eq!(kv.i64("exc.is_hook"), 1, "{why}");
}

/// `hipGetDriverEntryPoint` (ROCm 7.1) is answered like `hipGetProcAddress`: the hook of a
/// hooked or gated row (the `_spt` twin for the per-thread flag and for the `_spt` entry
/// point), the real function of a row we let through, the library's status otherwise.
#[test]
fn hip_get_driver_entry_point_answers_with_the_hook_of_a_hooked_row_only() {
    let sim = amd_machine("1g");
    let out = run_default(&mut hip_command(&sim, &["procaddr"]));
    out.assert_success("hip_cap procaddr");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.i64("entry_malloc.rc"), 0, "{why}");
    assert_eq!(kv.i64("entry_malloc.status"), 0, "{why}");
    assert_eq!(kv.i64("entry_malloc.is_hook"), 1, "{why}");
    assert_eq!(
        kv.i64("entry_malloc.over_rc"),
        2,
        "capped through the pointer\n{why}"
    );
    assert_eq!(kv.i64("entry_launch.rc"), 0, "{why}");
    assert_eq!(kv.i64("entry_launch.is_hook"), 1, "{why}");
    assert_eq!(kv.i64("entry_launch_spt.is_hook"), 1, "{why}");
    assert_eq!(kv.i64("entry_spt_launch.is_hook"), 1, "{why}");
    assert_eq!(kv.i64("entry_drv_ex.is_hook"), 1, "{why}");
    assert_eq!(kv.i64("entry_memcpy.rc"), 0, "{why}");
    assert_eq!(kv.i64("entry_memcpy.is_sim"), 1, "a pass row\n{why}");
    assert_eq!(kv.i64("entry_missing.rc"), 1, "hipErrorInvalidValue\n{why}");
    assert_eq!(
        kv.i64("entry_missing.status"),
        1,
        "hipDriverEntryPointSymbolNotFound\n{why}"
    );
}

/// 8 threads of one process and 16 processes of one container race at the cap: the card
/// never holds more than the slice, and the slice is used to the chunk.
#[test]
fn threads_and_processes_racing_at_the_cap_never_pass_it() {
    racing_at_the_cap(Injection::Preload);
}

/// Under `LD_AUDIT`: 8 threads and 16 processes x 2 threads at the cap.
#[test]
fn threads_and_processes_racing_at_the_cap_never_pass_it_under_ld_audit() {
    racing_at_the_cap(Injection::Audit);
}

fn racing_at_the_cap(how: Injection) {
    let chunk = 16 * MIB;
    let ctx = 16 * MIB;
    let sim = amd_machine_ctx("1g", ctx);
    let mut c = hip_command_via(&sim, how, &["race", "8", &chunk.to_string()]);
    let mut one = Child::spawn(&mut c, Duration::from_secs(120));
    one.wait_for_kv("inited", "1", Duration::from_secs(60));
    one.send_line("go");
    one.wait_for_kv("ready", "1", Duration::from_secs(60));
    assert_eq!(
        one.kv().u64("got"),
        GIB - ctx,
        "8 threads fill the slice exactly"
    );
    assert_eq!(device_used(&sim), GIB);
    one.close_stdin();
    one.finish().assert_success("race 8");

    let mut procs: Vec<Child> = (0..16)
        .map(|_| {
            let mut c = hip_command_via(&sim, how, &["race", "2", &chunk.to_string()]);
            Child::spawn(&mut c, Duration::from_secs(120))
        })
        .collect();
    // Every racer's runtime context exists (and is charged) before anyone allocates.
    for p in &mut procs {
        p.wait_for_kv("inited", "1", Duration::from_secs(90));
    }
    for p in &mut procs {
        p.send_line("go");
    }
    let mut got = 0;
    for p in &mut procs {
        p.wait_for_kv("ready", "1", Duration::from_secs(90));
        got += p.kv().u64("got");
    }
    assert_eq!(got, GIB - 16 * ctx, "16 processes share the slice exactly");
    assert_eq!(device_used(&sim), GIB, "ground truth: never over");
    for mut p in procs {
        p.close_stdin();
        p.finish().assert_success("race 2");
    }
    assert_eq!(device_used(&sim), 0);
}

/// A process killed with SIGKILL holding memory: its share comes back to the container
/// within a second.
#[test]
fn a_killed_hip_process_is_reclaimed_within_one_second() {
    killed_process_reclaimed(Injection::Preload);
}

/// Under `LD_AUDIT`: a kill -9 under LD_AUDIT leaves nothing behind.
#[test]
fn a_killed_hip_process_is_reclaimed_within_one_second_under_ld_audit() {
    killed_process_reclaimed(Injection::Audit);
}

/// The program's libc knows of libvgpu's watcher thread under both injections: a libc that
/// takes the process for single-threaded (`__libc_single_threaded`) skips `malloc`'s arena
/// locks, and the watcher calls into the program's namespace (vendor queries, `dlmopen`).
/// Under `LD_AUDIT` the watcher once came from the audit namespace's own libc, unknown to
/// the program's: its heap was corrupted under load (a SIGSEGV in `hip_cap hold`,
/// nvidia-smi's `malloc assertion failure in sysmalloc`). Deterministic: the flag is read,
/// no race needs to happen.
#[test]
fn the_programs_libc_knows_of_the_watcher_thread_under_both_injections() {
    for how in Injection::BOTH {
        let sim = amd_machine_ctx("1g", 16 * MIB);
        let mut c = hip_command_via(&sim, how, &["threads-known"]);
        let out = run_default(c.stdin(std::process::Stdio::null()));
        out.assert_success(&format!("hip_cap threads-known under {how:?}"));
        let kv = out.kv();
        let why = format!("{how:?}\n{}", out.describe());
        assert_eq!(kv.i64("malloc_rc"), 0, "{why}");
        assert!(kv.i64("threads") >= 2, "the watcher runs\n{why}");
        assert_eq!(kv.i64("libc_single_threaded"), 0, "{why}");
    }
}

fn killed_process_reclaimed(how: Injection) {
    let ctx = 16 * MIB;
    let sim = amd_machine_ctx("1g", ctx);
    let mut victim = Child::spawn(
        &mut hip_command_via(&sim, how, &["hold", &(600 * MIB).to_string()]),
        Duration::from_secs(90),
    );
    victim.wait_for_kv("ready", "1", Duration::from_secs(30));
    let mut watcher = Child::spawn(
        &mut hip_command_via(&sim, how, &["watch-free", "20", "30"]),
        Duration::from_secs(60),
    );
    watcher.wait_for(Duration::from_secs(30), |l| {
        l == format!("free={}", GIB - 600 * MIB - 2 * ctx)
    });
    let killed_at = std::time::Instant::now();
    victim.kill9();
    watcher.wait_for(Duration::from_secs(5), |l| {
        l == format!("free={}", GIB - ctx)
    });
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(1), "reclaimed after {took:?}");
    watcher.kill9();
}

/// A kill -9 storm of HIP processes of one container, killed at random moments (during
/// start-up: region slot, context measurement; or mid-allocation): afterwards a new
/// process starts at once, the region holds only its own context, the whole slice can be
/// allocated again and not a byte more, and the card (the ground truth) holds exactly
/// that, then nothing.
#[test]
fn a_kill_storm_of_hip_processes_leaves_the_slice_whole() {
    let ctx = 16 * MIB;
    let sim = amd_machine_ctx("1g", ctx);
    let workers = 6;
    // VGPU_HIP_KILL_STORM_KILLS=500 for a longer run.
    let kills = env_count("VGPU_HIP_KILL_STORM_KILLS", 150);
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let spawn = || {
        Child::spawn(
            &mut hip_command(&sim, &["churn", "60"]),
            Duration::from_secs(90),
        )
    };
    let mut pool: Vec<Child> = (0..workers).map(|_| spawn()).collect();
    let start = std::time::Instant::now();
    for _ in 0..kills {
        let i = (next() % workers as u64) as usize;
        std::thread::sleep(Duration::from_micros(next() % 100_000));
        pool[i].kill9();
        pool[i] = spawn();
    }
    // They are mid-churn, holding memory, when the storm ends.
    std::thread::sleep(Duration::from_millis(300));
    let held = device_used(&sim);
    assert!(
        held > workers as u64 * ctx,
        "the killed hold memory: {held}"
    );
    for c in &mut pool {
        c.kill9();
    }
    let storm = start.elapsed();
    let probe = std::time::Instant::now();
    // Watches for 3 s, then exits (and leaves the region).
    let mut watcher = Child::spawn(
        &mut hip_command(&sim, &["watch-free", "20", "3"]),
        Duration::from_secs(30),
    );
    watcher.wait_for(Duration::from_secs(10), |l| l.starts_with("pid="));
    let started = probe.elapsed();
    assert!(
        started < Duration::from_secs(5),
        "start-up after the storm took {started:?}"
    );
    // Only the watcher's own context is left in the region.
    watcher.wait_for(Duration::from_secs(2), |l| {
        l == format!("free={}", GIB - ctx)
    });
    let exact = probe.elapsed();
    watcher.finish().assert_success("watcher after the storm");
    // The slice is whole: a new process fills it to the byte, one byte more is refused,
    // and the card holds exactly the slice.
    let mut c = hip_command(&sim, &["fill", &(64 * MIB).to_string()]);
    let mut fill = Child::spawn(&mut c, Duration::from_secs(60));
    fill.wait_for_kv("ready", "1", Duration::from_secs(30));
    let kv = fill.kv();
    let why = fill.lines_seen().join("\n");
    assert_eq!(kv.u64("free_start"), GIB - ctx, "{why}");
    assert_eq!(kv.u64("allocated"), GIB - ctx, "{why}");
    assert_eq!(kv.i64("one_more_rc"), 2, "{why}");
    assert_eq!(
        device_used(&sim),
        GIB,
        "ground truth: the slice, no more\n{why}"
    );
    fill.close_stdin();
    fill.finish().assert_success("fill after the storm");
    assert_eq!(device_used(&sim), 0, "ground truth: nothing left");
    eprintln!(
        "HIP kill storm: {kills} kills of {workers} churning processes in {storm:?}; a new process started in {started:?} and saw exact usage after {exact:?}"
    );
}

/// The shipped file (loader + embedded core, scripts/build-release.sh): the same HIP exports
/// under the same nodes, and the cap enforced through them.
#[test]
fn shipped_loader_caps_hip_through_its_versioned_exports() {
    shipped_loader_caps_hip(Injection::Preload);
}

/// The shipped file as an audit library: the loader answers `la_version` by loading the
/// core, whose callbacks then redirect the bindings.
#[test]
fn shipped_loader_caps_hip_under_ld_audit() {
    shipped_loader_caps_hip(Injection::Audit);
}

fn shipped_loader_caps_hip(how: Injection) {
    let mut dir = testkit::target_profile_dir();
    dir.pop();
    let lib = dir.join("release-glibc2.17").join("libvgpu.so");
    if !lib.exists() {
        assert!(
            !testkit::in_ci(),
            "{} missing: under CI scripts/build-release.sh runs before the tests",
            lib.display()
        );
        eprintln!(
            "SKIP: {} not built (scripts/build-release.sh)",
            lib.display()
        );
        return;
    }
    let ours = versioned_exports(&lib);
    let core = versioned_exports(&libvgpu());
    let hip = |m: &std::collections::HashMap<String, String>| {
        let mut v: Vec<(String, String)> = m
            .iter()
            .filter(|(n, _)| n.contains("hip"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        hip(&ours),
        hip(&core),
        "the loader exports the core's HIP names and nodes"
    );
    let sim = amd_machine("1g");
    let mut c = in_amdgpu_ns(&sim, hip_cap_client());
    how.apply(&mut c, &lib, sim.dir())
        .args(["fill", &(100 * MIB).to_string()])
        .stdin(std::process::Stdio::null());
    let out = run_default(&mut c);
    out.assert_success("hip_cap fill under the shipped loader");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.u64("total"), GIB, "{why}");
    assert_eq!(kv.u64("props600_total"), GIB, "{why}");
    assert_eq!(kv.i64("one_more_rc"), 2, "{why}");
    assert_eq!(kv.u64("allocated"), GIB - CTX, "{why}");
    // The clean exit released the process's region slot (under LD_AUDIT through the
    // program's libc: the zig-linked core never runs our libc's at-exit list).
    let region = inspect(&sim);
    assert_eq!(
        region.get("processes").map(|p| p.items().len()),
        Some(0),
        "no slot left behind at exit\n{region}"
    );
}

/// `tests/hip/vector_add.hip` built with Debian's hipcc (`.ci/run` installs it) for gfx90a,
/// run on a simulated MI210: the compiler ABI (`__hipRegisterFatBinary`, `<<<>>>` through
/// `hipLaunchKernel`) goes through our exports, and its buffers are capped.
fn vector_add() -> Option<std::path::PathBuf> {
    testkit::require_hipcc().map(|hipcc| testkit::hip_vector_add(&hipcc))
}

#[test]
fn a_hipcc_built_program_runs_under_the_cap_and_is_refused_over_it() {
    hipcc_program_capped(Injection::Preload);
}

/// The hipcc-built program under `LD_AUDIT`: `__hipRegisterFatBinary`, `<<<>>>`'s
/// `hipLaunchKernel` and the allocations, bound through `la_symbind64`.
#[test]
fn a_hipcc_built_program_runs_under_the_cap_and_is_refused_over_it_under_ld_audit() {
    hipcc_program_capped(Injection::Audit);
}

fn hipcc_program_capped(how: Injection) {
    let Some(exe) = vector_add() else { return };
    // Three 4 MiB buffers and the program's code object (2 MiB, charged with the context:
    // the card takes it at the first launch) after the 300 MiB context: 314 MiB fit in
    // 320, not in 310.
    for (limit, fits) in [("320m", true), ("310m", false)] {
        let mut sim = amd_machine(limit);
        sim.set("VGPU_SIM_MODEL", "mi210");
        sim.set("VGPU_SIM_GROUP", EDGE_GROUP);
        let mut c = in_amdgpu_ns(&sim, &exe);
        how.apply(&mut c, &libvgpu(), sim.dir());
        let out = run_default(&mut c);
        let kv = out.kv();
        let why = out.describe();
        if fits {
            out.assert_success("vector_add under the cap");
            assert_eq!(kv.i64("launched"), 6, "{why}");
            assert_eq!(kv.i64("sync"), 0, "{why}");
            assert_eq!(
                kv.u64("used"),
                CTX + MODULE + 12 * MIB,
                "our view: context + code object + buffers\n{why}"
            );
            assert_eq!(kv.get("ok"), Some("1"), "{why}");
        } else {
            assert_eq!(
                kv.get("malloc_failed"),
                Some("1"),
                "refused over the cap\n{why}"
            );
        }
        assert_eq!(device_used(&sim), 0, "everything freed at exit");
        let slice: u64 = limit.trim_end_matches('m').parse::<u64>().unwrap() * MIB;
        let peak = device_peak(&sim);
        assert!(peak <= slice, "the card held {peak} bytes at most\n{why}");
    }
}

const SMI_VIEW: &str = r#"
import ctypes
import amdsmi
amdsmi.amdsmi_init()
h = amdsmi.amdsmi_get_processor_handles()[0]
VRAM = amdsmi.AmdSmiMemoryType.VRAM
print("amdsmi.total=%d" % amdsmi.amdsmi_get_gpu_memory_total(h, VRAM))
print("amdsmi.used=%d" % amdsmi.amdsmi_get_gpu_memory_usage(h, VRAM))
v = amdsmi.amdsmi_get_gpu_vram_usage(h)
print("amdsmi.vram_total_mb=%d" % v["vram_total"])
print("amdsmi.vram_used_mb=%d" % v["vram_used"])
amdsmi.amdsmi_shut_down()
# ROCm SMI the way rocm-smi's Python front end binds it: CDLL + dlsym(handle).
r = ctypes.CDLL("librocm_smi64.so.7")
assert r.rsmi_init(ctypes.c_uint64(0)) == 0
total, used = ctypes.c_uint64(), ctypes.c_uint64()
assert r.rsmi_dev_memory_total_get(0, 0, ctypes.byref(total)) == 0
assert r.rsmi_dev_memory_usage_get(0, 0, ctypes.byref(used)) == 0
print("rsmi.total=%d" % total.value)
print("rsmi.used=%d" % used.value)
print("ok=1")
"#;

/// amdsmi (AMD's Python package) and ROCm SMI (bound by `dlsym(handle)`) inside the
/// container show the slice and the container's usage, while a HIP process holds memory.
#[test]
fn smi_views_show_the_slice_and_the_containers_usage() {
    smi_views_show_the_slice(Injection::Preload);
}

/// Under `LD_AUDIT`: amdsmi and ROCm SMI bound through ctypes (`dlsym(handle)`).
#[test]
fn smi_views_show_the_slice_and_the_containers_usage_under_ld_audit() {
    smi_views_show_the_slice(Injection::Audit);
}

fn smi_views_show_the_slice(how: Injection) {
    let Some(py) = testkit::require_venv("amdsmi under libvgpu") else {
        return;
    };
    let sim = amd_machine("1g");
    let mut holder = Child::spawn(
        &mut hip_command_via(&sim, how, &["hold", &(100 * MIB).to_string()]),
        Duration::from_secs(90),
    );
    holder.wait_for_kv("ready", "1", Duration::from_secs(30));
    let mut c = in_amdgpu_ns(&sim, &py);
    c.args(["-c", SMI_VIEW]).env("PYTHONDONTWRITEBYTECODE", "1");
    how.apply(&mut c, &libvgpu(), sim.dir());
    let out = run_default(&mut c);
    out.assert_success("SMI view script");
    let kv = out.kv();
    let why = out.describe();
    let used = 100 * MIB + CTX;
    // Ground truth: the card really holds what the view says the container uses.
    assert_eq!(device_used(&sim), used, "{why}");
    assert_eq!(kv.u64("amdsmi.total"), GIB, "{why}");
    assert_eq!(kv.u64("amdsmi.used"), used, "{why}");
    assert_eq!(kv.u64("amdsmi.vram_total_mb"), 1024, "{why}");
    assert_eq!(kv.u64("amdsmi.vram_used_mb"), used >> 20, "{why}");
    assert_eq!(kv.u64("rsmi.total"), GIB, "{why}");
    assert_eq!(kv.u64("rsmi.used"), used, "{why}");
    holder.close_stdin();
    holder.finish().assert_success("holder");
}

#[test]
fn rocm_smi_tool_shows_the_slice_and_the_containers_usage() {
    rocm_smi_tool_shows_the_slice(Injection::Preload);
}

/// Under `LD_AUDIT`: Debian's rocm-smi.
#[test]
fn rocm_smi_tool_shows_the_slice_and_the_containers_usage_under_ld_audit() {
    rocm_smi_tool_shows_the_slice(Injection::Audit);
}

fn rocm_smi_tool_shows_the_slice(how: Injection) {
    let sim = amd_machine("1g");
    let Some(tool) = rocm_smi_tool(&sim) else {
        return;
    };
    let mut holder = Child::spawn(
        &mut hip_command_via(&sim, how, &["hold", &(100 * MIB).to_string()]),
        Duration::from_secs(90),
    );
    holder.wait_for_kv("ready", "1", Duration::from_secs(30));
    let mut c = in_amdgpu_ns(&sim, "python3");
    c.arg(&tool)
        .args(["--showmeminfo", "vram"])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    how.apply(&mut c, &libvgpu(), sim.dir());
    let out = run_default(&mut c);
    out.assert_success("rocm-smi");
    let text = format!("{}{}", out.stdout, out.stderr);
    let used = 100 * MIB + CTX;
    assert_eq!(device_used(&sim), used, "ground truth\n{text}");
    assert_eq!(
        rocm_smi_field(&text, "VRAM Total Memory (B)"),
        GIB,
        "{text}"
    );
    assert_eq!(
        rocm_smi_field(&text, "VRAM Total Used Memory (B)"),
        used,
        "{text}"
    );
    holder.close_stdin();
    holder.finish().assert_success("holder");
}

/// rocm-smi's KFD process list inside a container shows the container's processes only: a
/// HIP process of another container (another region, the same card) stays hidden.
#[test]
fn rocm_smi_tool_lists_only_the_containers_processes() {
    let sim = amd_machine("1g");
    let Some(tool) = rocm_smi_tool(&sim) else {
        return;
    };
    let mut ours = Child::spawn(
        &mut hip_command(&sim, &["hold", &(100 * MIB).to_string()]),
        Duration::from_secs(90),
    );
    ours.wait_for_kv("ready", "1", Duration::from_secs(30));
    let mut theirs = {
        let mut c = hip_command(&sim, &["hold", &(50 * MIB).to_string()]);
        c.env(
            "CUDA_DEVICE_MEMORY_SHARED_CACHE",
            sim.dir().join("other-container.cache"),
        );
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    theirs.wait_for_kv("ready", "1", Duration::from_secs(30));
    let listed = |preload: bool| {
        let mut c = in_amdgpu_ns(&sim, "python3");
        c.arg(&tool)
            .arg("--showpids")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        if preload {
            c.env("LD_PRELOAD", libvgpu());
        }
        let out = run_default(&mut c);
        out.assert_success("rocm-smi --showpids");
        let text = format!("{}{}", out.stdout, out.stderr);
        let has = |pid: u32| {
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()))
        };
        (has(ours.pid()), has(theirs.pid()), text)
    };
    // Without libvgpu the tool sees the whole card: both.
    let (a, b, text) = listed(false);
    assert!(a && b, "the card's view lists both\n{text}");
    let (a, b, text) = listed(true);
    assert!(a, "our container's process is listed\n{text}");
    assert!(!b, "the other container's process is hidden\n{text}");
    ours.close_stdin();
    theirs.close_stdin();
    ours.finish().assert_success("ours");
    theirs.finish().assert_success("theirs");
}

/// The per-thread cache of the current HIP device (`hip::hooks::current_device`) charges
/// every allocation to the device it lands on: two threads and the main one on a 2-device
/// machine switch with `hipSetDevice` (one that fails included) and the `hipCtx*` stack in
/// lockstep; each device's charge in the region equals the simulator's ground truth.
#[test]
fn the_cached_current_device_follows_every_switch_of_every_thread() {
    let sim = amd_machine_ctx("8g", 0).var("VGPU_SIM_DEVICES", "2");
    let mut c = hip_command(&sim, &["devices", &MIB.to_string()]);
    let mut client = Child::spawn(&mut c, Duration::from_secs(120));
    client.wait_for_kv("ready", "1", Duration::from_secs(60));
    let kv = client.kv();
    assert_eq!(kv.i64("bad"), 0, "a switch or an allocation failed");
    // The client's sums, by `hipGetDevice` (not hooked) before each allocation.
    let want = [kv.u64("want0"), kv.u64("want1")];
    assert_eq!(want, [2725 * MIB, 1370 * MIB]);
    let truth = sim.status_json();
    let report = inspect(&sim);
    for (i, want) in want.into_iter().enumerate() {
        let at_sim = truth
            .at(&format!("devices/{i}/used_bytes"))
            .and_then(|v| v.as_u64());
        assert_eq!(at_sim, Some(want), "device {i} at the simulator:\n{truth}");
        let charged = report
            .at(&format!("devices/{i}/used_bytes"))
            .and_then(|v| v.as_u64());
        assert_eq!(charged, Some(want), "device {i} in the region:\n{report}");
    }
    client.close_stdin();
    client.finish().assert_success("hip_cap devices");
}

/// What libvgpu charges for a context it cannot measure (no ROCm SMI): docs/AMD.md.
const UNMEASURED_CTX: u64 = 512 * MIB;
/// What the simulated card takes per loaded module (`VGPU_SIM_MODULE_BYTES`'s default).
const MODULE: u64 = 2 * MIB;

/// Runs `hip_cap edges` (1 MiB, `hipMemGetInfo`, a module) under `limit`, with ROCm SMI or
/// without; returns its first figures and the card's ground truth while it holds them,
/// then its figures after the module's unload and the card's high-water mark.
fn edges(limit: &str, with_smi: bool) -> (testkit::Kv, u64, testkit::Kv, String) {
    let (first, held, after, _, why) = edges_peak(limit, with_smi);
    (first, held, after, why)
}

const EDGE_GROUP: &str = "hip-edges";

/// The high-water mark of what the processes of group [`EDGE_GROUP`] held on device 0, at
/// the simulated card.
fn device_peak(sim: &SimEnv) -> u64 {
    let status = sim.status_json();
    status
        .get("groups")
        .map(testkit::Json::items)
        .unwrap_or(&[])
        .iter()
        .find(|g| g.get("name").and_then(testkit::Json::as_str) == Some(EDGE_GROUP))
        .and_then(|g| g.at("high_water_bytes/0").and_then(testkit::Json::as_u64))
        .unwrap_or_else(|| panic!("no group {EDGE_GROUP:?} in the status: {status:?}"))
}

fn edges_peak(limit: &str, with_smi: bool) -> (testkit::Kv, u64, testkit::Kv, u64, String) {
    let sim = amd_machine(limit).var("VGPU_SIM_GROUP", EDGE_GROUP);
    let mut c = if with_smi {
        in_amdgpu_ns(&sim, hip_cap_client())
    } else {
        sim.command(hip_cap_client())
    };
    c.env("LD_PRELOAD", libvgpu()).arg("edges");
    let mut h = Child::spawn(&mut c, Duration::from_secs(60));
    h.wait_for_kv("ready", "1", Duration::from_secs(30));
    let held = device_used(&sim);
    let first = h.kv();
    h.send_line("go");
    let out = h.finish();
    out.assert_success("hip_cap edges");
    let why = out.describe();
    assert_eq!(device_used(&sim), 0, "everything freed at exit\n{why}");
    (first, held, out.kv(), device_peak(&sim), why)
}

/// Issue 9 item 2, for HIP: whatever the slice, the runtime's context (300 MiB on this
/// card) and a module that do not fit are refused with `hipErrorOutOfMemory` before the
/// card takes them: below the reserved estimate the card never holds a byte (its
/// high-water mark stays 0); between the estimate and the context's size the context is
/// rolled back at once (docs/AMD.md) and every call refused.
#[test]
fn no_hip_context_or_module_passes_a_slice_of_any_size() {
    for round in 0..3 {
        for limit in ["3000", "1m", "4m", "8m", "12m", "64m", "299m"] {
            let (kv, held, _, peak, why) = edges_peak(limit, true);
            let why = format!("slice {limit}, round {round}\n{why}");
            assert_eq!(held, 0, "no context held\n{why}");
            if limit != "299m" {
                assert_eq!(peak, 0, "the card never held a byte\n{why}");
            }
            for key in ["malloc_rc", "meminfo_rc", "module_rc"] {
                assert_eq!(kv.i64(key), 2, "{key}: hipErrorOutOfMemory\n{why}");
            }
        }
        // The context and the 1 MiB fit in 302 MiB, the module does not: refused.
        let (kv, held, _, peak, why) = edges_peak("302m", true);
        assert_eq!(kv.i64("malloc_rc"), 0, "{why}");
        assert_eq!(kv.i64("meminfo_rc"), 0, "{why}");
        assert_eq!(kv.u64("free"), 302 * MIB - CTX - MIB, "{why}");
        assert_eq!(kv.i64("module_rc"), 2, "the module does not fit\n{why}");
        assert_eq!(held, CTX + MIB, "{why}");
        assert!(
            peak <= 302 * MIB,
            "never more than the slice: {peak}\n{why}"
        );
    }
}

/// A module that fits is charged what the card took for it (ROCm SMI's figure) and credited
/// at `hipModuleUnload`.
#[test]
fn a_hip_module_is_charged_what_the_card_takes_and_credited_at_unload() {
    let slice = 320 * MIB;
    let (kv, held, after, why) = edges("320m", true);
    assert_eq!(kv.i64("module_rc"), 0, "{why}");
    assert_eq!(held, CTX + MIB + MODULE, "ground truth\n{why}");
    assert_eq!(kv.u64("free"), slice - CTX - MIB, "{why}");
    assert_eq!(
        kv.u64("free_with_module"),
        slice - CTX - MIB - MODULE,
        "the module counts\n{why}"
    );
    assert_eq!(after.i64("unload_rc"), 0, "{why}");
    assert_eq!(
        after.u64("free_after_unload"),
        slice - CTX - MIB,
        "credited at unload\n{why}"
    );
}

/// Without ROCm SMI (no `/sys/module/amdgpu/initstate` here) the context cannot be
/// measured: the conservative figure is charged, never nothing; a slice that cannot hold
/// that figure refuses, and the context the runtime created is rolled back.
#[test]
fn without_rocm_smi_the_conservative_context_figure_is_charged() {
    let (kv, held, _, why) = edges("1024m", false);
    assert_eq!(kv.i64("malloc_rc"), 0, "{why}");
    assert_eq!(kv.u64("free"), GIB - UNMEASURED_CTX - MIB, "{why}");
    assert_eq!(kv.i64("module_rc"), 0, "{why}");
    assert!(held <= GIB, "{why}");
    let charged_ctx = GIB - kv.u64("free") - MIB;
    assert!(
        charged_ctx >= held - MIB - MODULE,
        "the context is over-charged, never under: {charged_ctx} against the card's\n{why}"
    );
    for _ in 0..2 {
        let (kv, held, _, why) = edges("400m", false);
        for key in ["malloc_rc", "meminfo_rc", "module_rc"] {
            assert_eq!(kv.i64(key), 2, "{key}: hipErrorOutOfMemory\n{why}");
        }
        assert_eq!(held, 0, "the context was rolled back\n{why}");
    }
}
