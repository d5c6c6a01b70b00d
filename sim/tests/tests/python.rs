//! NVIDIA's own Python clients from the venv (scripts/setup-venv.sh) over the simulator:
//! pynvml (nvidia-ml-py), cuda.bindings.driver (cuda-bindings), and the real libcudart.so.12
//! through ctypes. Without a venv these tests print a skip note, or fail under CI.

mod common;
use common::*;

use std::time::Duration;

const READY: Duration = Duration::from_secs(60);

fn python(env: &SimEnv, py: &std::path::Path, script: &str) -> Output {
    let mut c = env.command(py);
    c.args(["-c", script]);
    // never pick up a real driver's libraries from the venv or the system first
    c.env("PYTHONDONTWRITEBYTECODE", "1");
    run(&mut c, Duration::from_secs(120))
}

const PYNVML: &str = r#"
import pynvml as n
n.nvmlInit()
def s(v): return v.decode() if isinstance(v, bytes) else v
print("count=%d" % n.nvmlDeviceGetCount())
h = n.nvmlDeviceGetHandleByIndex(0)
print("name=" + s(n.nvmlDeviceGetName(h)))
print("uuid=" + s(n.nvmlDeviceGetUUID(h)))
m = n.nvmlDeviceGetMemoryInfo(h)
print("total=%d\nfree=%d\nused=%d" % (m.total, m.free, m.used))
maj, mnr = n.nvmlDeviceGetCudaComputeCapability(h)
print("cc=%d.%d" % (maj, mnr))
print("cuda_driver_version=%d" % n.nvmlSystemGetCudaDriverVersion())
ps = n.nvmlDeviceGetComputeRunningProcesses(h)
print("nprocs=%d" % len(ps))
for i, p in enumerate(ps):
    print("proc%d.pid=%d\nproc%d.used=%d" % (i, p.pid, i, p.usedGpuMemory))
n.nvmlShutdown()
print("ok=1")
"#;

#[test]
fn pynvml_reports_device_memory_and_processes() {
    let Some(py) = require_venv("pynvml") else {
        return;
    };
    require_sim();
    let ctx = 100 * MIB;
    let held = 512 * MIB;
    let env = SimEnv::new().var("VGPU_SIM_CONTEXT_BYTES", ctx.to_string());
    let mut h = spawn_linked(&env, &["alloc-hold", &held.to_string(), "60"]);
    h.wait_for_kv("ready", "1", READY);
    let out = python(&env, &py, PYNVML);
    out.assert_success("pynvml script");
    let kv = out.kv();
    let c = linked(&env, &["info"]);
    assert_eq!(kv.u64("count"), 1);
    assert_eq!(kv.str("name"), H100_NAME);
    assert_eq!(kv.str("uuid"), c.str("dev0.uuid"));
    assert_eq!(kv.str("cc"), "9.0");
    assert_eq!(kv.i64("cuda_driver_version"), c.i64("driver_version"));
    assert_eq!(kv.u64("total"), H100_TOTAL);
    assert_eq!(kv.u64("used") + kv.u64("free"), H100_TOTAL);
    assert!(
        kv.u64("used") >= held + ctx,
        "used {}",
        fmt_bytes(kv.u64("used"))
    );
    assert_eq!(kv.u64("nprocs"), 1, "only the holder holds a context");
    assert_eq!(kv.u64("proc0.pid"), u64::from(h.pid()));
    assert_eq!(kv.u64("proc0.used"), held + ctx, "per-process memory");
    h.finish().assert_success("holder");
}

const CUDA_BINDINGS: &str = r#"
import ctypes
try:
    from cuda.bindings import driver as d
except ImportError:
    from cuda import cuda as d
OK = d.CUresult.CUDA_SUCCESS
def call(name, *args):
    r = getattr(d, name)(*args)
    err = r[0]
    print("rc.%s=%d" % (name, int(err)))
    if err != OK:
        raise SystemExit("%s failed: %s" % (name, err))
    return r[1:] if len(r) > 2 else (r[1] if len(r) == 2 else None)
call("cuInit", 0)
print("driver_version=%d" % call("cuDriverGetVersion"))
print("count=%d" % call("cuDeviceGetCount"))
dev = call("cuDeviceGet", 0)
print("name=" + call("cuDeviceGetName", 256, dev).split(b"\0")[0].decode())
sms = call("cuDeviceGetAttribute", d.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)
print("sms=%d" % sms)
ctx = call("cuDevicePrimaryCtxRetain", dev)
call("cuCtxSetCurrent", ctx)
free0, total = call("cuMemGetInfo")
ptr = call("cuMemAlloc", 64 << 20)
free1, _ = call("cuMemGetInfo")
print("total=%d\nalloc_delta=%d" % (total, free0 - free1))
ptx = b""".version 8.0
.target sm_90
.address_size 64

.visible .entry vgpu_test_kernel(
    .param .u64 vgpu_test_kernel_param_0
)
{
    ret;
}
\0"""
mod = call("cuModuleLoadData", ptx)
free_mod, _ = call("cuMemGetInfo")
print("module_delta=%d" % (free1 - free_mod))
fn = call("cuModuleGetFunction", mod, b"vgpu_test_kernel")
arg = ctypes.c_uint64(int(ptr))
params = (ctypes.c_void_p * 1)(ctypes.addressof(arg))
stream = call("cuStreamCreate", 0)
for _ in range(3):
    call("cuLaunchKernel", fn, 1, 1, 1, 32, 1, 1, 0, stream, ctypes.addressof(params), 0)
call("cuStreamSynchronize", stream)
call("cuCtxSynchronize")
call("cuMemFree", ptr)
call("cuModuleUnload", mod)
call("cuStreamDestroy", stream)
free2, _ = call("cuMemGetInfo")
print("after_free_delta=%d" % (free0 - free2))
call("cuDevicePrimaryCtxRelease", dev)
print("ok=1")
"#;

#[test]
fn cuda_bindings_driver_api() {
    let Some(py) = require_venv("cuda-bindings") else {
        return;
    };
    require_sim();
    let module = 3 * MIB;
    let env = SimEnv::new()
        .var("VGPU_SIM_KERNEL_NS", "1000000")
        .var("VGPU_SIM_MODULE_BYTES", module.to_string());
    let out = python(&env, &py, CUDA_BINDINGS);
    out.assert_success("cuda-bindings script");
    let kv = out.kv();
    assert_eq!(kv.get("ok"), Some("1"), "{}", out.describe());
    assert_eq!(kv.u64("count"), 1);
    assert_eq!(kv.str("name"), H100_NAME);
    assert_eq!(kv.i64("sms"), H100_SMS);
    assert_eq!(kv.u64("total"), H100_TOTAL);
    assert_eq!(
        kv.u64("alloc_delta"),
        64 * MIB,
        "cuMemAlloc(64 MiB) through cuda.bindings"
    );
    assert_eq!(
        kv.u64("module_delta"),
        module,
        "a loaded module costs VGPU_SIM_MODULE_BYTES"
    );
    assert_eq!(
        kv.u64("after_free_delta"),
        0,
        "after cuMemFree and cuModuleUnload"
    );
    let c = linked(&env, &["info"]);
    assert_eq!(kv.i64("driver_version"), c.i64("driver_version"));
}

const CUDART: &str = r#"
import ctypes, sys
rt = ctypes.CDLL(sys.argv[1])
rt.cudaGetErrorName.restype = ctypes.c_char_p
def show(name, rc):
    print("%s=%d" % (name, rc))
    print("%s.name=%s" % (name, rt.cudaGetErrorName(rc).decode()))
v = ctypes.c_int(-1)
show("cudaRuntimeGetVersion", rt.cudaRuntimeGetVersion(ctypes.byref(v)))
print("runtime_version=%d" % v.value)
v = ctypes.c_int(-1)
show("cudaDriverGetVersion", rt.cudaDriverGetVersion(ctypes.byref(v)))
print("driver_version=%d" % v.value)
n = ctypes.c_int(-1)
show("cudaGetDeviceCount", rt.cudaGetDeviceCount(ctypes.byref(n)))
print("count=%d" % n.value)
p = ctypes.c_void_p()
show("cudaMalloc", rt.cudaMalloc(ctypes.byref(p), 1 << 20))
f = ctypes.c_size_t(0); t = ctypes.c_size_t(0)
show("cudaMemGetInfo", rt.cudaMemGetInfo(ctypes.byref(f), ctypes.byref(t)))
print("free=%d\ntotal=%d" % (f.value, t.value))
show("cudaGetLastError", rt.cudaGetLastError())
print("ok=1")
"#;

fn cudart_run(env: &SimEnv, py: &std::path::Path, cudart: &std::path::Path) -> Output {
    let mut c = env.command(py);
    c.arg("-c").arg(CUDART).arg(cudart);
    let out = run(&mut c, Duration::from_secs(120));
    out.assert_success("libcudart ctypes script");
    out
}

/// The real libcudart.so.12 over the simulator. libcudart initialises itself on the first
/// call that needs the device: it resolves the driver through cuGetProcAddress_v2, calls
/// cuInit, then asks `cuGetExportTable` for private tables. The simulator has none and
/// answers CUDA_ERROR_NOT_SUPPORTED (801); libcudart then fails that call and every later
/// one with cudaErrorNotSupported (801). Calls that need no device (runtime and driver
/// version) work. A tracing stand-in for libcuda.so.1 (tests/c/driver_trace_shim.c) shows
/// that cuGetExportTable is the one driver call that fails. This pins the behaviour exactly,
/// so any change (e.g. the simulator gaining export tables) is noticed and reviewed.
#[test]
fn real_libcudart_documented_behaviour() {
    let Some(py) = require_venv("libcudart") else {
        return;
    };
    let Some(cudart) = require_venv_file("libcudart", "libcudart.so.12", venv_libcudart()) else {
        return;
    };
    require_sim();
    let env = SimEnv::new();
    let out = cudart_run(&env, &py, &cudart);
    let kv = out.kv();
    assert_eq!(kv.i64("cudaRuntimeGetVersion"), 0, "{}", out.describe());
    assert_eq!(kv.i64("runtime_version"), 12080);
    assert_eq!(kv.i64("cudaDriverGetVersion"), 0);
    let c = linked(&env, &["info"]);
    assert_eq!(kv.i64("driver_version"), c.i64("driver_version"));
    for call in [
        "cudaGetDeviceCount",
        "cudaMalloc",
        "cudaMemGetInfo",
        "cudaGetLastError",
    ] {
        assert_eq!(kv.i64(call), 801, "{call}\n{}", out.describe());
        assert_eq!(
            kv.str(&format!("{call}.name")),
            "cudaErrorNotSupported",
            "{call}"
        );
    }
    assert!(
        kv.i64("count") <= 0,
        "no device can be usable: count {}",
        kv.i64("count")
    );
    assert_eq!((kv.u64("free"), kv.u64("total")), (0, 0));

    // The same run through the tracing stand-in.
    let shim = build_c_client(
        "driver_trace_shim",
        &[
            "-shared".into(),
            "-fPIC".into(),
            "-Wl,-soname,libcuda.so.1".into(),
        ],
    );
    let shim_dir = env.dir().join("shim");
    std::fs::create_dir_all(&shim_dir).unwrap();
    std::os::unix::fs::symlink(&shim, shim_dir.join("libcuda.so.1")).unwrap();
    let mut ld = shim_dir.into_os_string();
    ld.push(":");
    ld.push(sim_lib_dir());
    let traced_env = env
        .sibling()
        .var("LD_LIBRARY_PATH", ld)
        .var("VGPU_SHIM_REAL", sim_lib_dir().join("libcuda.so.1"));
    let traced = cudart_run(&traced_env, &py, &cudart);
    assert_eq!(
        traced.stdout, out.stdout,
        "the tracing stand-in changed the outcome"
    );
    let trace: Vec<&str> = traced
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("shim: "))
        .collect();
    let procaddr = trace.iter().filter(|l| l.starts_with("procaddr ")).count();
    assert!(
        procaddr > 100,
        "libcudart resolved only {procaddr} entry points:\n{}",
        traced.stderr
    );
    let calls: Vec<&str> = trace
        .iter()
        .copied()
        .filter(|l| l.starts_with("call "))
        .collect();
    assert!(
        calls
            .iter()
            .any(|l| l.starts_with("call cuInit ") && l.ends_with(" rc=0")),
        "cuInit not called or failed: {calls:?}"
    );
    let failing: Vec<&&str> = calls.iter().filter(|l| !l.ends_with(" rc=0")).collect();
    assert!(!failing.is_empty(), "no failing driver call: {calls:?}");
    assert!(
        failing
            .iter()
            .all(|l| l.starts_with("call cuGetExportTable ") && l.ends_with(" rc=801")),
        "expected only cuGetExportTable to fail (801): {failing:?}"
    );
    eprintln!("libcudart trace: {procaddr} cuGetProcAddress queries; calls: {calls:?}");
}
