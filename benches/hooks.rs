//! What a hook adds to a driver call: the same entry point called through the simulated
//! driver's own pointer ("direct") and through libvgpu's export ("hooked"), in one process
//! and one run, over the simulated GPU with zero device time (so the driver side costs only
//! its bookkeeping). Also the start-up cost libvgpu adds to a process that never uses CUDA.
//!
//! Run: `cargo bench --bench hooks` (after `cargo build --release`, which builds the
//! simulator and libvgpu.so). The report in docs/BENCHMARKS.md quotes the medians.

use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// `target/release` (benches run from `target/release/deps`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<bench>")
        .to_path_buf()
}

/// The loader reads LD_LIBRARY_PATH once at start-up: re-exec with the simulator's
/// environment when it is not set yet.
fn ensure_environment() {
    if std::env::var_os("VGPU_BENCH_CHILD").is_some() {
        return;
    }
    let dir = profile_dir();
    let state = std::env::temp_dir().join(format!("vgpu-bench-{}.state", std::process::id()));
    let region = std::env::temp_dir().join(format!("vgpu-bench-{}.cache", std::process::id()));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env("VGPU_BENCH_CHILD", "1")
        .env("LD_LIBRARY_PATH", dir.join("sim"))
        .env("VGPU_SIM_STATE", &state)
        .env("VGPU_SIM_KERNEL_NS", "0")
        .env("VGPU_SIM_CONTEXT_BYTES", "0")
        .env("CUDA_DEVICE_MEMORY_LIMIT", "70g")
        .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region)
        .status()
        .expect("re-exec bench");
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(&region);
    std::process::exit(status.code().unwrap_or(1));
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

fn hooks(c: &mut Criterion) {
    ensure_environment();
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

    let mut g = c.benchmark_group("cuLaunchKernel (no core cap)");
    for (label, f) in [
        ("direct", sim.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel")),
        ("hooked", vgpu.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel")),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| unsafe {
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
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cuMemAlloc_v2 + cuMemFree_v2 (1 MiB)");
    for (label, alloc, free) in [
        (
            "direct",
            sim.sym::<pfn::cuMemAlloc_v2>(c"cuMemAlloc_v2"),
            sim.sym::<pfn::cuMemFree_v2>(c"cuMemFree_v2"),
        ),
        (
            "hooked",
            vgpu.sym::<pfn::cuMemAlloc_v2>(c"cuMemAlloc_v2"),
            vgpu.sym::<pfn::cuMemFree_v2>(c"cuMemFree_v2"),
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| unsafe {
                let mut p: CUdeviceptr = 0;
                ck(alloc(&mut p, 1 << 20), "alloc");
                ck(free(p), "free");
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cuMemGetInfo_v2");
    for (label, f) in [
        (
            "direct",
            sim.sym::<pfn::cuMemGetInfo_v2>(c"cuMemGetInfo_v2"),
        ),
        (
            "hooked",
            vgpu.sym::<pfn::cuMemGetInfo_v2>(c"cuMemGetInfo_v2"),
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| unsafe {
                let (mut free, mut total) = (0usize, 0usize);
                f(&mut free, &mut total)
            })
        });
    }
    g.finish();

    // Start-up: a process that never touches CUDA, with and without the library.
    let lib = dir.join("libvgpu.so");
    let mut g = c.benchmark_group("process start (/bin/true)");
    g.sample_size(50).measurement_time(Duration::from_secs(8));
    g.bench_function("plain", |b| {
        b.iter(|| Command::new("/bin/true").status().unwrap())
    });
    g.bench_function("LD_PRELOAD=libvgpu.so", |b| {
        b.iter(|| {
            Command::new("/bin/true")
                .env("LD_PRELOAD", &lib)
                .status()
                .unwrap()
        })
    });
    // The shipped artifact (scripts/build-release.sh: glibc 2.17 floor, no libgcc_s).
    let shipped = dir.parent().unwrap().join("release-glibc2.17/libvgpu.so");
    if shipped.exists() {
        g.bench_function("LD_PRELOAD=release-glibc2.17/libvgpu.so", |b| {
            b.iter(|| {
                Command::new("/bin/true")
                    .env("LD_PRELOAD", &shipped)
                    .status()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hooks
}
criterion_main!(benches);
