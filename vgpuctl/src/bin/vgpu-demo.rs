//! vgpu-demo: an ordinary CUDA driver-API client, written the way applications load the
//! driver (`dlopen("libcuda.so.1")` + `dlsym`), used by the README's main job to show what a
//! slice looks like from inside: the memory it reports, where allocations stop, and that
//! kernels run.
//!
//! ```text
//! vgpu-demo [--chunk SIZE_MIB] [--max SIZE_MIB] [--launches N] [--hold SECONDS]
//! ```

use std::ffi::{c_char, c_int, c_void, CStr};
use std::time::Instant;

use cuda_headers::bindings::*;
use cuda_headers::pfn;

struct Driver {
    handle: *mut c_void,
}

impl Driver {
    fn open() -> Result<Driver, String> {
        // SAFETY: dlopen with a valid name.
        let handle = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            return Err(
                "cannot load libcuda.so.1 (no driver and no simulator on LD_LIBRARY_PATH)".into(),
            );
        }
        Ok(Driver { handle })
    }

    /// The driver's `name` as a `T`.
    ///
    /// # Safety
    /// `T` is the function pointer type of `name` (cuda-headers' `pfn` table): every call
    /// through a wrong `T` is undefined behaviour.
    unsafe fn sym<T: Copy>(&self, name: &CStr) -> Result<T, String> {
        const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<*mut c_void>()) };
        // SAFETY: the handle from dlopen, never closed; a NUL-terminated name.
        let p = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        if p.is_null() {
            return Err(format!("libcuda.so.1 has no {name:?}"));
        }
        // SAFETY: T is the function pointer type of `name` (the caller's promise), and of a
        // pointer's size (checked at compile time above).
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
    }
}

fn err_name(d: &Driver, rc: CUresult) -> String {
    // SAFETY: the pfn type of cuGetErrorName.
    let Ok(f) = (unsafe { d.sym::<pfn::cuGetErrorName>(c"cuGetErrorName") }) else {
        return rc.to_string();
    };
    let mut s: *const c_char = std::ptr::null();
    // SAFETY: valid out-pointer; the driver returns a static string.
    if unsafe { f(rc, &mut s) } == CUDA_SUCCESS && !s.is_null() {
        // SAFETY: non-NULL, and the driver's strings are NUL-terminated and static.
        format!("{} ({rc})", unsafe { CStr::from_ptr(s) }.to_string_lossy())
    } else {
        rc.to_string()
    }
}

fn check(d: &Driver, what: &str, rc: CUresult) -> Result<(), String> {
    if rc == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", err_name(d, rc)))
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1048576.0)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // Like a C program: `vgpu-demo | head` ends quietly on a closed pipe instead of panicking.
    // SAFETY: restoring a default signal disposition before anything else runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Err(e) = run() {
        eprintln!("vgpu-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let chunk = arg(&args, "--chunk", 256) << 20;
    let launches = arg(&args, "--launches", 1000);
    let hold = arg(&args, "--hold", 0);
    let max = arg(&args, "--max", u64::MAX >> 20) << 20;
    let d = Driver::open()?;
    // SAFETY: every `sym` type below is its name's `pfn` type, and every call a plain driver
    // call with valid pointers.
    unsafe {
        check(&d, "cuInit", d.sym::<pfn::cuInit>(c"cuInit")?(0))?;
        let mut dev: CUdevice = 0;
        check(
            &d,
            "cuDeviceGet",
            d.sym::<pfn::cuDeviceGet>(c"cuDeviceGet")?(&mut dev, 0),
        )?;
        let mut name = [0 as c_char; 128];
        check(
            &d,
            "cuDeviceGetName",
            d.sym::<pfn::cuDeviceGetName>(c"cuDeviceGetName")?(
                name.as_mut_ptr(),
                128 as c_int,
                dev,
            ),
        )?;
        let mut total_mem = 0usize;
        check(
            &d,
            "cuDeviceTotalMem",
            d.sym::<pfn::cuDeviceTotalMem_v2>(c"cuDeviceTotalMem_v2")?(&mut total_mem, dev),
        )?;
        println!(
            "device 0: {} — cuDeviceTotalMem says {}",
            CStr::from_ptr(name.as_ptr()).to_string_lossy(),
            mib(total_mem as u64)
        );
        let mut ctx: CUcontext = std::ptr::null_mut();
        check(
            &d,
            "cuDevicePrimaryCtxRetain",
            d.sym::<pfn::cuDevicePrimaryCtxRetain>(c"cuDevicePrimaryCtxRetain")?(&mut ctx, dev),
        )?;
        check(
            &d,
            "cuCtxSetCurrent",
            d.sym::<pfn::cuCtxSetCurrent>(c"cuCtxSetCurrent")?(ctx),
        )?;
        let mem_info = d.sym::<pfn::cuMemGetInfo_v2>(c"cuMemGetInfo_v2")?;
        let show = |label: &str| -> (u64, u64) {
            let (mut free, mut total) = (0usize, 0usize);
            let rc = mem_info(&mut free, &mut total);
            if rc == CUDA_SUCCESS {
                println!(
                    "{label}: cuMemGetInfo free {} of {}",
                    mib(free as u64),
                    mib(total as u64)
                );
            }
            (free as u64, total as u64)
        };
        let (free0, total0) = show("after context creation");
        if total0 > free0 {
            println!(
                "  ({} in use before this process allocated anything: its context (the driver \
                 keeps device memory for every context, 300 MiB on the simulated GPU, \
                 VGPU_SIM_CONTEXT_BYTES, a few hundred MiB on real GPUs, and libvgpu charges it \
                 to the slice) and what the container's other processes hold; {} of {} are \
                 left for data.)",
                mib(total0 - free0),
                mib(free0),
                mib(total0)
            );
        }

        let alloc = d.sym::<pfn::cuMemAlloc_v2>(c"cuMemAlloc_v2")?;
        let free = d.sym::<pfn::cuMemFree_v2>(c"cuMemFree_v2")?;
        let mut ptrs = Vec::new();
        let refusal = loop {
            let mut p: CUdeviceptr = 0;
            let rc = alloc(&mut p, chunk as usize);
            if rc != CUDA_SUCCESS {
                break rc;
            }
            ptrs.push(p);
            if ptrs.len() > 100_000 || (ptrs.len() as u64 + 1) * chunk > max {
                break CUDA_SUCCESS;
            }
        };
        println!(
            "allocated {} chunks of {} = {}, then stopped: {}",
            ptrs.len(),
            mib(chunk),
            mib(ptrs.len() as u64 * chunk),
            if refusal == CUDA_SUCCESS {
                "enough taken".to_string()
            } else {
                format!("cuMemAlloc returned {}", err_name(&d, refusal))
            }
        );
        show("while holding them");

        let mut module: CUmodule = std::ptr::null_mut();
        let image = b"vgpu-demo kernel image\0";
        let (before_module, _) = mem_free_quiet(mem_info);
        check(
            &d,
            "cuModuleLoadData",
            d.sym::<pfn::cuModuleLoadData>(c"cuModuleLoadData")?(
                &mut module,
                image.as_ptr().cast(),
            ),
        )?;
        let (after_module, _) = mem_free_quiet(mem_info);
        if before_module > after_module {
            println!(
                "loaded a module: {} of device memory for its code (2 MiB on the simulated GPU, \
                 VGPU_SIM_MODULE_BYTES), charged to the slice until it is unloaded",
                mib(before_module - after_module)
            );
        }
        let mut func: CUfunction = std::ptr::null_mut();
        check(
            &d,
            "cuModuleGetFunction",
            d.sym::<pfn::cuModuleGetFunction>(c"cuModuleGetFunction")?(
                &mut func,
                module,
                c"demo".as_ptr(),
            ),
        )?;
        let launch = d.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel")?;
        let sync = d.sym::<pfn::cuCtxSynchronize>(c"cuCtxSynchronize")?;
        let start = Instant::now();
        for _ in 0..launches {
            let rc = launch(
                func,
                132,
                1,
                1,
                256,
                1,
                1,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            check(&d, "cuLaunchKernel", rc)?;
        }
        check(&d, "cuCtxSynchronize", sync())?;
        println!(
            "ran {launches} kernels in {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        if hold > 0 {
            println!("holding for {hold} s (pid {})", std::process::id());
            std::thread::sleep(std::time::Duration::from_secs(hold));
        }
        for p in ptrs.drain(..) {
            check(&d, "cuMemFree", free(p))?;
        }
        show("after freeing everything");
        println!("  (the context and the module stay charged until the process ends)");
    }
    Ok(())
}

/// `(free, total)` from `cuMemGetInfo`, printing nothing (zeros on failure).
///
/// # Safety
/// `mem_info` is the driver's `cuMemGetInfo_v2` with a current context.
unsafe fn mem_free_quiet(mem_info: pfn::cuMemGetInfo_v2) -> (u64, u64) {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: the caller's contract (a real `cuMemGetInfo_v2`); both out-pointers are ours.
    if unsafe { mem_info(&mut free, &mut total) } == CUDA_SUCCESS {
        (free as u64, total as u64)
    } else {
        (0, 0)
    }
}
