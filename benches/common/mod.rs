//! Shared by the hook benchmarks: re-executing the bench with the simulator's environment
//! (the loader reads `LD_LIBRARY_PATH` once at start-up), and an in-process setup with the
//! simulated driver and libvgpu side by side, so "direct" (the driver's own pointer) and
//! "hooked" (libvgpu's export of the same entry point) are measured in one process and run.

#![allow(dead_code)]

use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;

use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// `target/<profile>` (benches run from `target/<profile>/deps`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<bench>")
        .to_path_buf()
}

/// In the re-executed child: its mode. In the parent: runs the bench once per mode in a
/// child with the simulator's environment (zero-time kernels, no context cost, a private
/// state file and region) plus the mode's variables, then exits with the worst status.
pub fn run_in_modes(bench: &str, modes: &[(&str, &[(&str, &str)])]) -> String {
    if let Ok(mode) = std::env::var("VGPU_BENCH_MODE") {
        return mode;
    }
    let dir = profile_dir();
    let mut code = 0;
    for (mode, vars) in modes {
        let tag = format!("{bench}-{}-{}", std::process::id(), mode.replace(' ', "-"));
        let state = std::env::temp_dir().join(format!("vgpu-bench-{tag}.state"));
        let region = std::env::temp_dir().join(format!("vgpu-bench-{tag}.cache"));
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(std::env::args_os().skip(1))
            .env("VGPU_BENCH_MODE", mode)
            .env("LD_LIBRARY_PATH", dir.join("sim"))
            .env("VGPU_SIM_STATE", &state)
            .env("VGPU_SIM_KERNEL_NS", "0")
            .env("VGPU_SIM_CONTEXT_BYTES", "0")
            .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region)
            .env_remove("CUDA_DEVICE_SM_LIMIT")
            .env_remove("CUDA_DEVICE_MEMORY_LIMIT");
        c.envs(vars.iter().copied());
        let status = c.status().expect("re-exec bench");
        let _ = std::fs::remove_file(&state);
        let _ = std::fs::remove_file(&region);
        code = code.max(status.code().unwrap_or(1));
    }
    std::process::exit(code);
}

pub struct Lib(*mut c_void);

impl Lib {
    pub fn open(path: &Path, flags: i32) -> Lib {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: dlopen with a valid path.
        let h = unsafe { libc::dlopen(c.as_ptr(), flags) };
        assert!(!h.is_null(), "dlopen {} failed", path.display());
        Lib(h)
    }

    pub fn sym<T: Copy>(&self, name: &CStr) -> T {
        // SAFETY: `self.0` is a handle dlopen returned (never closed) and `name` a C string.
        let p = unsafe { libc::dlsym(self.0, name.as_ptr()) };
        assert!(!p.is_null(), "missing {name:?}");
        // SAFETY: `p` is a non-null symbol address and the caller names as `T` the
        // function-pointer type of `name` (pointer-sized, so the copy reads all of `p`).
        unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) }
    }
}

pub fn ck(rc: CUresult, what: &str) {
    assert_eq!(rc, CUDA_SUCCESS, "{what}");
}

/// The simulated driver (global scope, as an application's libcuda) and libvgpu (local),
/// a current primary context retained through libvgpu, and a kernel to launch.
pub struct Setup {
    pub sim: Lib,
    pub vgpu: Lib,
    pub func: CUfunction,
    /// The primary context, current on the thread that made the setup.
    pub ctx: CUcontext,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = profile_dir();
        let sim = Lib::open(
            &dir.join("sim/libcuda.so.1"),
            libc::RTLD_NOW | libc::RTLD_GLOBAL,
        );
        let vgpu = Lib::open(&dir.join("libvgpu.so"), libc::RTLD_NOW | libc::RTLD_LOCAL);
        let mut ctx: CUcontext = std::ptr::null_mut();
        // SAFETY: plain driver calls with valid out-pointers.
        let func = unsafe {
            ck(sim.sym::<pfn::cuInit>(c"cuInit")(0), "cuInit");
            let retain = vgpu.sym::<pfn::cuDevicePrimaryCtxRetain>(c"cuDevicePrimaryCtxRetain");
            ck(retain(&mut ctx, 0), "retain");
            // Through libvgpu, as an application's call would go (its export interposes).
            ck(
                vgpu.sym::<pfn::cuCtxSetCurrent>(c"cuCtxSetCurrent")(ctx),
                "set current",
            );
            let mut module: CUmodule = std::ptr::null_mut();
            let load = sim.sym::<pfn::cuModuleLoadData>(c"cuModuleLoadData");
            ck(load(&mut module, c"bench".as_ptr().cast()), "module");
            let mut func: CUfunction = std::ptr::null_mut();
            let get = sim.sym::<pfn::cuModuleGetFunction>(c"cuModuleGetFunction");
            ck(get(&mut func, module, c"k".as_ptr()), "function");
            func
        };
        Setup {
            sim,
            vgpu,
            func,
            ctx,
        }
    }

    /// One 1x1x1 launch of the kernel through `f`.
    pub fn launch(&self, f: pfn::cuLaunchKernel) -> CUresult {
        let (stream, none) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a valid function handle, default stream, no parameters.
        unsafe { f(self.func, 1, 1, 1, 32, 1, 1, 0, stream, none, none) }
    }
}
