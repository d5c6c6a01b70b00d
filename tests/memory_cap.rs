//! libvgpu's memory cap, through real processes: C clients in the three ways applications
//! reach the driver (linked `-lcuda`, `dlopen`+`dlsym`, `cuGetProcAddress_v2` like
//! libcudart), started with `LD_PRELOAD=libvgpu.so` over the simulated GPU.

mod common;

use common::*;
use testkit::{require_sim, run_default};

#[test]
fn cap_is_enforced_to_the_byte_in_every_client_style() {
    cap_is_enforced_to_the_byte(Injection::Preload);
}

/// The same matrix with libvgpu as an rtld-audit library (`LD_AUDIT`, HAMi's AMD injection):
/// PLT bindings, `dlsym(handle)` and `cuGetProcAddress` all reach the hooks.
#[test]
fn cap_is_enforced_to_the_byte_in_every_client_style_under_ld_audit() {
    cap_is_enforced_to_the_byte(Injection::Audit);
}

fn cap_is_enforced_to_the_byte(how: Injection) {
    for style in [
        Style::Linked,
        Style::Dlopen,
        Style::ProcAddr(0),
        Style::ProcAddr(2),
    ] {
        let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
        let (out, kv) = run_scenario_via(&sim, how, style, &["cap-fill", &(100 * MIB).to_string()]);
        let ctx = 64 * MIB;
        let why = out.describe();
        assert_eq!(
            kv.u64("total"),
            GIB,
            "{style:?}: cuMemGetInfo total is the slice\n{why}"
        );
        assert_eq!(
            kv.u64("device_total_mem"),
            GIB,
            "{style:?}: cuDeviceTotalMem\n{why}"
        );
        assert_eq!(
            kv.u64("free_start"),
            GIB - ctx,
            "{style:?}: the context counts\n{why}"
        );
        assert_eq!(
            kv.u64("chunks"),
            (GIB - ctx) / (100 * MIB),
            "{style:?}\n{why}"
        );
        assert_eq!(
            kv.i64("chunk_refusal"),
            2,
            "{style:?}: CUDA_ERROR_OUT_OF_MEMORY\n{why}"
        );
        assert_eq!(
            kv.i64("exact_rc"),
            0,
            "{style:?}: the last free byte is usable\n{why}"
        );
        assert_eq!(kv.u64("free_when_full"), 0, "{style:?}\n{why}");
        assert_eq!(
            kv.i64("one_more_rc"),
            2,
            "{style:?}: one byte over is refused\n{why}"
        );
        assert_eq!(kv.u64("allocated"), GIB - ctx, "{style:?}\n{why}");
        assert_eq!(
            kv.i64("realloc_rc"),
            0,
            "{style:?}: freed memory is usable again\n{why}"
        );
        assert_eq!(kv.i64("realloc_plus_one_rc"), 2, "{style:?}\n{why}");
        assert_eq!(
            kv.u64("free_end"),
            GIB - ctx,
            "{style:?}: frees credit exactly\n{why}"
        );
    }
}

#[test]
fn without_the_library_the_same_client_sees_the_whole_card() {
    // The control for the test above: proves the cap comes from libvgpu.
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let out = run_default(command(&sim, Style::Linked, false).args(["meminfo"]));
    out.assert_success("meminfo without preload");
    assert!(out.kv().u64("total") > 40 * GIB, "{}", out.describe());
}

#[test]
fn every_allocation_path_is_charged_exactly_and_credited_back() {
    every_allocation_path_charged(Injection::Preload);
}

/// Under `LD_AUDIT`: every driver allocation path, arrays, VMM, graphs and modules.
#[test]
fn every_allocation_path_is_charged_exactly_and_credited_back_under_ld_audit() {
    every_allocation_path_charged(Injection::Audit);
}

fn every_allocation_path_charged(how: Injection) {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "4g");
    let (out, kv) = run_scenario_via(&sim, how, Style::Dlopen, &["cap-paths"]);
    let why = out.describe();
    let expect = [
        ("alloc", 10 * MIB),
        ("pitch", kv.u64("pitch_footprint")),
        ("managed", 5 * MIB),
        ("async", 3 * MIB),
        ("pool", 2 * MIB),
        ("vmm_device", kv.u64("vmm_bytes")),
        ("vmm_host", 0),
        // Arrays are charged what the driver reports they occupy
        // (cuArrayGetMemoryRequirements): the simulator rounds the raw size of all levels
        // up to 2 MiB (sim/README.md), so these differ from the raw element counts
        // (4 MiB, 1 MiB, 84 KiB).
        ("array2d", 4 * MIB),
        ("array3d", 2 * MIB),
        ("mipmapped", 2 * MIB),
        ("host", 0),
        ("module", 2 * MIB),
        ("graph_mem", 6 * MIB),
    ];
    // 1000 bytes wide, 100 rows: the driver picks a pitch of at least the width.
    assert!(kv.u64("pitch_footprint") >= 1000 * 100, "{why}");
    assert_eq!(kv.i64("vmm_host_rc"), 0, "{why}");
    assert_eq!(kv.i64("graph_dptr_set"), 1, "{why}");
    assert_eq!(
        kv.i64("graph_mem_over_rc"),
        2,
        "a graph node past the slice: {why}"
    );
    for (path, bytes) in expect {
        assert_eq!(
            kv.i64(&format!("charged.{path}")),
            bytes as i64,
            "{path} charged\n{why}"
        );
        assert_eq!(
            kv.i64(&format!("left.{path}")),
            0,
            "{path} credited back\n{why}"
        );
    }
}

#[test]
fn unknown_and_double_frees_go_to_the_driver_untouched() {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-unknown-free"]);
    // The simulated driver's own answer for a pointer it does not know.
    assert_eq!(kv.i64("unknown_rc"), 1, "{}", out.describe());
    assert_eq!(kv.i64("double_rc"), 1, "{}", out.describe());
    assert_eq!(kv.i64("used_delta"), 0, "{}", out.describe());
}

#[test]
fn eight_threads_racing_never_pass_the_cap() {
    eight_threads_racing(Injection::Preload);
}

/// Under `LD_AUDIT`: 8 threads at the cap.
#[test]
fn eight_threads_racing_never_pass_the_cap_under_ld_audit() {
    eight_threads_racing(Injection::Audit);
}

fn eight_threads_racing(how: Injection) {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let chunk = 7 * MIB;
    let (out, kv) = run_scenario_via(
        &sim,
        how,
        Style::Linked,
        &["cap-race", "8", &chunk.to_string()],
    );
    let why = out.describe();
    let (total, before, raced) = (kv.u64("total"), kv.u64("used_before"), kv.u64("raced"));
    assert_eq!(total, GIB, "{why}");
    assert!(before + raced <= total, "overshoot\n{why}");
    assert!(
        total - before - raced < chunk,
        "the slice was filled\n{why}"
    );
    assert_eq!(kv.u64("used_full"), before + raced, "{why}");
    assert_eq!(kv.u64("used_end"), before, "{why}");
}

#[test]
fn fork_while_threads_allocate_neither_hangs_nor_skews_accounting() {
    fork_while_threads_allocate(Injection::Preload);
}

/// Under `LD_AUDIT` the fork handlers must be the program's libc's (the audit namespace's
/// own libc never sees the program's `fork`).
#[test]
fn fork_while_threads_allocate_neither_hangs_nor_skews_accounting_under_ld_audit() {
    fork_while_threads_allocate(Injection::Audit);
}

/// A forked child that leaves through `exit()` runs its at-exit handlers; the parent's slot
/// and usage must survive it (the child was given a slot of its own by the fork handler).
#[test]
fn a_forked_child_exiting_leaves_the_parents_usage_counted() {
    fork_exit_keeps_parent_usage(Injection::Preload);
}

#[test]
fn a_forked_child_exiting_leaves_the_parents_usage_counted_under_ld_audit() {
    fork_exit_keeps_parent_usage(Injection::Audit);
}

fn fork_exit_keeps_parent_usage(how: Injection) {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let (out, kv) = run_scenario_via(
        &sim,
        how,
        Style::Linked,
        &["cap-fork-exit", &(200 * MIB).to_string()],
    );
    let why = out.describe();
    assert_eq!(kv.i64("child_ok"), 1, "{why}");
    assert_eq!(
        kv.u64("used_before"),
        64 * MIB + 200 * MIB,
        "context + buffer\n{why}"
    );
    assert_eq!(kv.u64("used_after"), kv.u64("used_before"), "{why}");
}

fn fork_while_threads_allocate(how: Injection) {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let (out, kv) = run_scenario_via(&sim, how, Style::Linked, &["cap-fork", "40"]);
    assert_eq!(kv.i64("forks_ok"), 40, "{}", out.describe());
    assert_eq!(kv.i64("used_delta"), 0, "{}", out.describe());
}

#[test]
fn lookups_reach_exactly_the_hooked_variants() {
    lookups_reach_exactly_the_hooked_variants_via(Injection::Preload, "libvgpu.so");
}

/// Under `LD_AUDIT` (the library mounted as `libamvgpu.so`): `dlsym(handle)` and
/// `cuGetProcAddress` reach exactly the same variants, `RTLD_NEXT`/`RTLD_DEFAULT` stay libc's.
#[test]
fn lookups_reach_exactly_the_hooked_variants_under_ld_audit() {
    lookups_reach_exactly_the_hooked_variants_via(Injection::Audit, "libamvgpu.so");
}

fn lookups_reach_exactly_the_hooked_variants_via(how: Injection, ours: &str) {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let (out, kv) = run_scenario_via(&sim, how, Style::Linked, &["cap-lookups"]);
    let why = out.describe();
    assert_eq!(kv.str("dlsym_handle.cuMemAlloc_v2"), ours, "{why}");
    assert_eq!(kv.str("dlsym_handle.cuLaunchKernel"), ours, "{why}");
    assert_eq!(
        kv.str("dlsym_handle.cuMemcpyHtoD_v2"),
        "libcuda.so.1",
        "{why}"
    );
    assert_eq!(
        kv.str("dlsym_handle.cuDeviceGetName"),
        "libcuda.so.1",
        "{why}"
    );
    assert_eq!(kv.i64("rtld_next_matches_default"), 1, "{why}");
    assert_eq!(kv.i64("rtld_next_malloc_is_libc"), 1, "{why}");
    assert_eq!(kv.i64("rtld_default_printf_is_libc"), 1, "{why}");
    assert_eq!(kv.i64("unknown_symbol_null"), 1, "{why}");
    assert_eq!(kv.str("gpa_lib"), ours, "{why}");
    let expect = [
        ("gpa.cuMemAlloc.12080.0", "libvgpu.so:cuMemAlloc_v2:0:0"),
        ("gpa.cuMemAlloc.3020.0", "libvgpu.so:cuMemAlloc_v2:0:0"),
        (
            "gpa.cuLaunchKernel.12080.0",
            "libvgpu.so:cuLaunchKernel:0:0",
        ),
        (
            "gpa.cuLaunchKernel.12080.1",
            "libvgpu.so:cuLaunchKernel:0:0",
        ),
        (
            "gpa.cuLaunchKernel.12080.2",
            "libvgpu.so:cuLaunchKernel_ptsz:0:0",
        ),
        (
            "gpa.cuMemAllocAsync.12080.2",
            "libvgpu.so:cuMemAllocAsync_ptsz:0:0",
        ),
        ("gpa.cuCtxCreate.3020.0", "libvgpu.so:cuCtxCreate_v2:0:0"),
        ("gpa.cuCtxCreate.11040.0", "libvgpu.so:cuCtxCreate_v3:0:0"),
        ("gpa.cuCtxCreate.12080.0", "libvgpu.so:cuCtxCreate_v4:0:0"),
        (
            "gpa.cuMemcpyHtoD.12080.2",
            "libcuda.so.1:cuMemcpyHtoD_v2_ptds:0:0",
        ),
        ("gpa.cuMemGetInfo.12080.0", "libvgpu.so:cuMemGetInfo_v2:0:0"),
        (
            "gpa.cuGetProcAddress.12080.0",
            "libvgpu.so:cuGetProcAddress_v2:0:0",
        ),
        (
            "gpa.cuDevicePrimaryCtxRelease.11000.0",
            "libvgpu.so:cuDevicePrimaryCtxRelease_v2:0:0",
        ),
        (
            "gpa.cuDevicePrimaryCtxRelease.7000.0",
            "libvgpu.so:cuDevicePrimaryCtxRelease:0:0",
        ),
        (
            "gpa.cuGraphLaunch.12080.2",
            "libvgpu.so:cuGraphLaunch_ptsz:0:0",
        ),
    ];
    for (k, v) in expect {
        // The table names the plain build; `ours` is the file injected.
        let v = v.replacen("libvgpu.so:", &format!("{ours}:"), 1);
        assert_eq!(kv.str(k), v, "{k}\n{why}");
    }

    // Control: without libvgpu every lookup lands in the driver.
    let out = run_default(command(&sim, Style::Linked, false).args(["cap-lookups"]));
    out.assert_success("lookups without preload");
    let kv = out.kv();
    assert_eq!(
        kv.str("dlsym_handle.cuMemAlloc_v2"),
        "libcuda.so.1",
        "{}",
        out.describe()
    );
    assert_eq!(
        kv.str("gpa.cuLaunchKernel.12080.2"),
        "libcuda.so.1:cuLaunchKernel_ptsz:0:0",
        "{}",
        out.describe()
    );
}

#[test]
fn procaddr_client_with_per_thread_flag_is_capped_too() {
    // The procaddr client resolves every entry point through cuGetProcAddress_v2 with the
    // flag; its report names the variant it got for each.
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "512m");
    let (out, kv) = run_scenario(
        &sim,
        Style::ProcAddr(2),
        &["cap-fill", &(64 * MIB).to_string()],
    );
    assert_eq!(
        kv.str("resolved.cuLaunchKernel"),
        "cuLaunchKernel_ptsz",
        "{}",
        out.describe()
    );
    assert_eq!(
        kv.u64("allocated"),
        512 * MIB - 64 * MIB,
        "{}",
        out.describe()
    );
    assert_eq!(kv.i64("one_more_rc"), 2, "{}", out.describe());
}

#[test]
fn no_driver_present_every_hook_answers_not_initialized() {
    let sim = machine();
    let empty = sim.dir().join("no-driver");
    std::fs::create_dir_all(&empty).unwrap();
    let mut c = command(&sim, Style::Dlopen, true);
    c.env("LD_LIBRARY_PATH", &empty)
        .env("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let out = run_default(c.arg("cap-nodriver"));
    out.assert_success("cap-nodriver");
    let kv = out.kv();
    assert_eq!(kv.i64("dlopen_libcuda_null"), 1, "{}", out.describe());
    for k in ["alloc_rc", "meminfo_rc", "launch_rc", "gpa_rc"] {
        assert_eq!(
            kv.i64(k),
            3,
            "{k}: CUDA_ERROR_NOT_INITIALIZED\n{}",
            out.describe()
        );
    }
}

#[test]
fn invalid_limit_fails_closed_with_one_clear_line() {
    // Fail closed means nothing on the GPU at all: not even a context (even a free one).
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "lots");
    let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-ctx"]);
    assert_eq!(kv.i64("primary_rc"), 2, "{}", out.describe());
    assert_eq!(kv.i64("create_rc"), 2, "{}", out.describe());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("CUDA_DEVICE_MEMORY_LIMIT"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line about the variable:\n{}",
        out.stderr
    );
    assert!(lines[0].contains("\"lots\""), "{}", lines[0]);
}

#[test]
fn visible_devices_select_the_limit_of_the_device_they_name() {
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    // By index.
    let mut c = command(&sim, Style::Linked, true);
    let out = run_default(
        c.env("CUDA_VISIBLE_DEVICES", "1")
            .args(["cap-fill", &(256 * MIB).to_string()]),
    );
    out.assert_success("CUDA_VISIBLE_DEVICES=1");
    assert_eq!(out.kv().u64("total"), 2 * GIB, "{}", out.describe());
    // By UUID (HAMi's device plugin may set UUIDs).
    let info = run_default(command(&sim, Style::Linked, false).arg("info"));
    info.assert_success("info");
    let uuid1 = info.kv().str("dev1.uuid").to_string();
    let mut c = command(&sim, Style::Linked, true);
    let out = run_default(
        c.env("CUDA_VISIBLE_DEVICES", &uuid1)
            .args(["cap-fill", &(256 * MIB).to_string()]),
    );
    out.assert_success("CUDA_VISIBLE_DEVICES=<uuid of device 1>");
    assert_eq!(out.kv().u64("total"), 2 * GIB, "{}", out.describe());
}

/// cuda-bindings resolves every entry point with `cuGetProcAddress_v2` (flags 0 at the
/// version each function was introduced, or flag 2 for stream APIs when per-thread default
/// streams are asked for).
fn caching_allocator_pattern(how: Injection, per_thread_default_stream: bool) {
    let Some(python) = testkit::require_venv("caching_allocator_pattern_through_cuda_bindings")
    else {
        return;
    };
    require_sim();
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "3000m");
    let script = testkit::workspace_root().join("tests/python/caching_allocator.py");
    let mut c = sim.command(python);
    how.apply(&mut c, &libvgpu(), sim.dir())
        .arg(script)
        .arg("256");
    if per_thread_default_stream {
        c.env("CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM", "1");
    }
    let out = run_default(&mut c);
    out.assert_success("caching allocator over cuda-bindings");
    let kv = out.kv();
    let why = out.describe();
    let slice = 3000 * MIB;
    let ctx = 64 * MIB;
    let seg = 256 * MIB;
    assert_eq!(kv.u64("total"), slice, "{why}");
    assert_eq!(kv.u64("free_start"), slice - ctx, "{why}");
    let segments = (slice - ctx) / seg;
    assert_eq!(kv.u64("segments"), segments, "{why}");
    assert_eq!(kv.str("refusal_name"), "CUDA_ERROR_OUT_OF_MEMORY", "{why}");
    assert_eq!(kv.u64("free_full"), slice - ctx - segments * seg, "{why}");
    let released = segments.div_ceil(2) * seg;
    assert_eq!(
        kv.u64("free_after_release"),
        kv.u64("free_full") + released,
        "{why}"
    );
    let blocks = kv.u64("free_after_release") / (seg / 4);
    assert_eq!(kv.u64("reuse_blocks"), blocks, "{why}");
    assert_eq!(
        kv.u64("free_after_reuse"),
        kv.u64("free_after_release") - blocks * seg / 4,
        "{why}"
    );
    assert_eq!(kv.i64("async_over_rc"), 2, "{why}");
    assert_eq!(kv.u64("free_end"), slice - ctx, "{why}");
}

#[test]
fn caching_allocator_pattern_through_cuda_bindings_is_capped_exactly() {
    caching_allocator_pattern(Injection::Preload, false);
}

/// NVIDIA's cuda-bindings (every entry point through `cuGetProcAddress_v2`) under `LD_AUDIT`.
#[test]
fn caching_allocator_pattern_through_cuda_bindings_is_capped_exactly_under_ld_audit() {
    caching_allocator_pattern(Injection::Audit, false);
}

#[test]
fn caching_allocator_pattern_with_per_thread_default_streams_is_capped_exactly() {
    caching_allocator_pattern(Injection::Preload, true);
}

#[test]
fn nvml_first_then_cuda_in_one_process_is_capped() {
    nvml_first_then_cuda(Injection::Preload);
}

/// Under `LD_AUDIT`: pynvml then cuda-bindings in one process.
#[test]
fn nvml_first_then_cuda_in_one_process_is_capped_under_ld_audit() {
    nvml_first_then_cuda(Injection::Audit);
}

fn nvml_first_then_cuda(how: Injection) {
    // The order of `import pynvml; ...; import torch`: libvgpu initialises on the NVML call,
    // before the application loads the CUDA driver; CUDA must still be intercepted after.
    let Some(python) = testkit::require_venv("nvml_first_then_cuda") else {
        return;
    };
    require_sim();
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let script = r#"
import pynvml
pynvml.nvmlInit()
print(f"nvml_total={pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total}")
from cuda.bindings import driver as cu
cu.cuInit(0)
err, dev = cu.cuDeviceGet(0)
err, ctx = cu.cuDevicePrimaryCtxRetain(dev)
cu.cuCtxSetCurrent(ctx)
err, free, total = cu.cuMemGetInfo()
print(f"cuda_total={total}")
err, p = cu.cuMemAlloc(2 << 30)
print(f"over_rc={int(err)}")
"#;
    let mut c = sim.command(python);
    how.apply(&mut c, &libvgpu(), sim.dir())
        .args(["-c", script]);
    let out = run_default(&mut c);
    out.assert_success("pynvml then cuda-bindings");
    let kv = out.kv();
    assert_eq!(kv.u64("nvml_total"), GIB, "{}", out.describe());
    assert_eq!(kv.u64("cuda_total"), GIB, "{}", out.describe());
    assert_eq!(kv.i64("over_rc"), 2, "{}", out.describe());
}
