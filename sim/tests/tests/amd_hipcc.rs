//! A `<<<>>>` HIP program built with Debian's hipcc 5.2.3 (clang 15; `.ci/run` installs
//! `hipcc libamdhip64-dev`) runs over the simulated libamdhip64: its kernels are registered
//! by the compiler's constructor and launched through the compiler ABI, on the shared device
//! timeline, and its memory is charged. clang 15 does not know gfx942, so the program is
//! built for gfx90a and run on a simulated MI210; on an MI300X it has no code object, which
//! the launch reports as HIP does (`hipErrorNoBinaryForGpu`).

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const KERNEL_NS: u64 = 1_000_000;
const CTX: u64 = 300 * MIB;
const MODULE: u64 = 2 * MIB;
/// Three float buffers of 2^20 elements.
const DATA: u64 = 3 * 4 * MIB;

fn env(model: &str) -> SimEnv {
    SimEnv::new()
        .var("VGPU_SIM_MODEL", model)
        .var("VGPU_SIM_CONTEXT_BYTES", CTX.to_string())
        .var("VGPU_SIM_MODULE_BYTES", MODULE.to_string())
        .var("VGPU_SIM_KERNEL_NS", KERNEL_NS.to_string())
}

#[test]
fn hipcc_built_program_binds_the_debian_soname_and_versioned_symbols() {
    let Some(cc) = require_hipcc() else {
        return;
    };
    require_sim();
    let exe = hip_vector_add(&cc);
    let d = run(
        Command::new("readelf").arg("-d").arg(&exe),
        Duration::from_secs(30),
    );
    assert!(d.stdout.contains("[libamdhip64.so.5]"), "{}", d.stdout);
    let s = run(
        Command::new("readelf").args(["--dyn-syms", "-W"]).arg(&exe),
        Duration::from_secs(30),
    );
    for sym in [
        "__hipRegisterFatBinary@hip_4.2",
        "__hipRegisterFunction@hip_4.2",
        "__hipPushCallConfiguration@hip_4.2",
        "__hipPopCallConfiguration@hip_4.2",
        "hipLaunchKernel@hip_4.2",
    ] {
        assert!(s.stdout.contains(sym), "{sym} not bound:\n{}", s.stdout);
    }
}

#[test]
fn hipcc_built_program_launches_its_kernels_on_the_timeline_and_is_charged() {
    let Some(cc) = require_hipcc() else {
        return;
    };
    require_sim();
    let exe = hip_vector_add(&cc);
    let env = env("mi210");
    let mut c = env.command(&exe);
    c.arg("hold");
    let mut h = Child::spawn(&mut c, Duration::from_secs(120));
    h.wait_for_kv("ready", "1", Duration::from_secs(60));
    let kv = h.kv();
    assert_eq!(kv.str("name"), "AMD Instinct MI210");
    assert_eq!(kv.str("arch"), "gfx90a:sramecc+:xnack-");
    assert_eq!(kv.i64("launched"), 6, "3 x (vector_add<<<>>> + scale)");
    assert_eq!(kv.i64("sync"), 0);
    assert!(kv.f64("elapsed_ms") >= 6.0, "{}", kv.f64("elapsed_ms"));
    // Ground truth: six kernels of device time; context + buffers + the code object.
    let st = env.status_json();
    assert_eq!(st.at("devices/0/kernels").and_then(|v| v.as_u64()), Some(6));
    assert_eq!(
        st.at("devices/0/busy_ns").and_then(|v| v.as_u64()),
        Some(6 * KERNEL_NS)
    );
    let used = st
        .at("devices/0/used_bytes")
        .and_then(|v| v.as_u64())
        .unwrap();
    assert_eq!(used, CTX + DATA + MODULE);
    assert_eq!(kv.u64("used"), used);
    let proc0 = st.at("processes/0").expect("the program is listed");
    assert_eq!(
        proc0.at("pid").and_then(|v| v.as_u64()),
        Some(u64::from(h.pid()))
    );
    assert_eq!(
        proc0.at("devices/0/modules").and_then(|v| v.as_u64()),
        Some(1)
    );
    let out = h.finish();
    out.assert_success("vector_add");
    assert_eq!(out.kv().get("ok"), Some("1"));
    assert_eq!(
        env.status_json()
            .at("devices/0/used_bytes")
            .and_then(|v| v.as_u64()),
        Some(0),
        "exit releases everything"
    );
}

#[test]
fn hipcc_program_for_another_gpu_has_no_code_object_on_an_mi300x() {
    let Some(cc) = require_hipcc() else {
        return;
    };
    require_sim();
    let exe = hip_vector_add(&cc);
    let env = env("mi300x");
    let out = run(&mut env.command(&exe), Duration::from_secs(60));
    out.assert_success("vector_add on mi300x");
    let kv = out.kv();
    assert_eq!(kv.i64("launch_error"), 209, "{}", out.describe());
    assert_eq!(kv.str("launch_error_name"), "hipErrorNoBinaryForGpu");
    assert_eq!(kv.i64("launched"), 0);
    assert_eq!(
        env.status_json()
            .at("devices/0/kernels")
            .and_then(|v| v.as_u64()),
        Some(0)
    );
}
