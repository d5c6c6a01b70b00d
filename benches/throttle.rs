//! What the compute cap adds to a launch: `cuLaunchKernel` called through the simulated
//! driver's own pointer ("direct") and through libvgpu's export ("hooked"), in one process
//! and one run, over the simulated GPU with zero device time (the driver side costs only its
//! validation). Two runs, each in its own child process (the configuration is read once):
//! - `no cap`: no `CUDA_DEVICE_SM_LIMIT` — the gate is one relaxed load;
//! - `cap, tokens available`: `CUDA_DEVICE_SM_LIMIT=50`, policy `force`. Zero-time kernels
//!   measure as 0 % busy, so after a 5 s warm-up (the estimate falls by at most 1/1.5 a
//!   tick once measured) the controller's cost estimate is tiny
//!   and the lane always has tokens: the launch path is the gate, the lane and one
//!   `fetch_sub`. The bench checks that no launch waited during the measurement.
//!
//! Run: `cargo bench --bench throttle` (after `cargo build --release`). DESIGN §6: <= 5 ns
//! added without a cap, <= 25 ns with a cap and tokens available.

use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use cuda_headers::bindings::*;
use cuda_headers::pfn;

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<bench>")
        .to_path_buf()
}

/// Re-executes itself once per mode with the simulator's environment.
fn ensure_environment() -> Option<String> {
    if let Ok(mode) = std::env::var("VGPU_BENCH_MODE") {
        return Some(mode);
    }
    let dir = profile_dir();
    let mut code = 0;
    for mode in ["no cap", "cap"] {
        let tag = format!("{}-{}", std::process::id(), mode.replace(' ', "-"));
        let state = std::env::temp_dir().join(format!("vgpu-bench-throttle-{tag}.state"));
        let region = std::env::temp_dir().join(format!("vgpu-bench-throttle-{tag}.cache"));
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(std::env::args_os().skip(1))
            .env("VGPU_BENCH_MODE", mode)
            .env("LD_LIBRARY_PATH", dir.join("sim"))
            .env("VGPU_SIM_STATE", &state)
            .env("VGPU_SIM_KERNEL_NS", "0")
            .env("VGPU_SIM_CONTEXT_BYTES", "0")
            .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region)
            .env_remove("CUDA_DEVICE_SM_LIMIT");
        if mode == "cap" {
            c.env("CUDA_DEVICE_SM_LIMIT", "50")
                .env("GPU_CORE_UTILIZATION_POLICY", "force");
        }
        let status = c.status().expect("re-exec bench");
        let _ = std::fs::remove_file(&state);
        let _ = std::fs::remove_file(&region);
        code = code.max(status.code().unwrap_or(1));
    }
    std::process::exit(code);
}

struct Lib(*mut c_void);

impl Lib {
    fn open(path: &Path, flags: i32) -> Lib {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: dlopen with a valid path.
        let h = unsafe { libc::dlopen(c.as_ptr(), flags) };
        assert!(!h.is_null(), "dlopen {} failed", path.display());
        Lib(h)
    }

    fn sym<T: Copy>(&self, name: &CStr) -> T {
        // SAFETY: T is the function-pointer type of `name`.
        let p = unsafe { libc::dlsym(self.0, name.as_ptr()) };
        assert!(!p.is_null(), "missing {name:?}");
        unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) }
    }
}

fn ck(rc: CUresult, what: &str) {
    assert_eq!(rc, CUDA_SUCCESS, "{what}");
}

/// The container bucket's `throttled_launches` (region device 0).
fn throttled(region_path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(region_path) else {
        return 0;
    };
    let off = shm_layout::EXT_OFFSET
        + shm_layout::EXT_DEVICES_OFFSET
        + std::mem::offset_of!(shm_layout::DeviceExt, throttled_launches);
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn throttle(c: &mut Criterion) {
    let Some(mode) = ensure_environment() else {
        return;
    };
    let dir = profile_dir();
    let sim = Lib::open(
        &dir.join("sim/libcuda.so.1"),
        libc::RTLD_NOW | libc::RTLD_GLOBAL,
    );
    let vgpu = Lib::open(&dir.join("libvgpu.so"), libc::RTLD_NOW | libc::RTLD_LOCAL);
    // SAFETY: plain driver calls with valid out-pointers.
    let func = unsafe {
        ck(sim.sym::<pfn::cuInit>(c"cuInit")(0), "cuInit");
        let mut ctx: CUcontext = std::ptr::null_mut();
        ck(
            vgpu.sym::<pfn::cuDevicePrimaryCtxRetain>(c"cuDevicePrimaryCtxRetain")(&mut ctx, 0),
            "retain",
        );
        ck(
            sim.sym::<pfn::cuCtxSetCurrent>(c"cuCtxSetCurrent")(ctx),
            "set current",
        );
        let mut module: CUmodule = std::ptr::null_mut();
        ck(
            sim.sym::<pfn::cuModuleLoadData>(c"cuModuleLoadData")(
                &mut module,
                c"bench".as_ptr().cast(),
            ),
            "module",
        );
        let mut func: CUfunction = std::ptr::null_mut();
        ck(
            sim.sym::<pfn::cuModuleGetFunction>(c"cuModuleGetFunction")(
                &mut func,
                module,
                c"k".as_ptr(),
            ),
            "function",
        );
        func
    };
    let direct = sim.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
    let hooked = vgpu.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
    let launch = |f: pfn::cuLaunchKernel| unsafe {
        f(
            func,
            1,
            1,
            1,
            32,
            1,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    let region = PathBuf::from(std::env::var_os("CUDA_DEVICE_MEMORY_SHARED_CACHE").unwrap());
    if mode == "cap" {
        // Warm-up: let the controller learn that these kernels cost (almost) nothing.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            for _ in 0..1000 {
                ck(launch(hooked), "warm-up launch");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let before = throttled(&region);
    let mut g = c.benchmark_group(format!("cuLaunchKernel ({mode})"));
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, f) in [("direct", direct), ("hooked", hooked)] {
        g.bench_function(label, |b| b.iter(|| launch(f)));
    }
    g.finish();
    let waited = throttled(&region) - before;
    println!("{mode}: launches that waited for tokens during the measurement: {waited}");
}

criterion_group!(benches, throttle);
criterion_main!(benches);
