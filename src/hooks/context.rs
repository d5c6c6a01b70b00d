//! Contexts and modules: memory the driver takes with no allocation call.
//!
//! How it is measured: after a context is created (or a primary context first retained)
//! or a module loaded, the driver's own per-process figure (NVML's used memory for this
//! pid on that device) minus the data this ledger holds is the process's overhead; what
//! exceeds the overhead already charged is charged to the new context or module. The
//! ledger counts data from the moment it is reserved, so a concurrent allocation can only
//! make the measurement smaller, never charge more than the driver took. If the overhead
//! does not fit in the slice, the context or module is destroyed again and the call fails
//! with `CUDA_ERROR_OUT_OF_MEMORY`: a slice is never exceeded, not even by the price of
//! using the GPU at all. Without NVML nothing can be measured (logged once).

use std::ffi::{c_char, c_uint, c_void};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use cuda_headers::bindings::*;

use super::{contexts_changed, real_or_return};
use crate::ledger::AllocKind;
use crate::runtime::rt;

/// Serialises measurements so two concurrent context/module loads never both claim the
/// same overhead.
static MEASURE: Mutex<()> = Mutex::new(());

/// Key under which a primary context's overhead is charged (primary contexts are per
/// device; their handle is stable while retained).
fn primary_key(device: usize) -> u64 {
    0xC0DE_0000_0000_0000 | device as u64
}

/// Measures and charges new overhead on `ordinal` to `(kind, key)`. Returns false when it
/// does not fit in the slice (nothing charged then).
fn charge_overhead(ordinal: CUdevice, kind: AllocKind, key: u64) -> bool {
    let rt = rt();
    if rt.config.control_disabled {
        return true;
    }
    let Some(device) = rt.container_index(ordinal) else {
        return true;
    };
    let _serial = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(measured) = measure_process_usage(ordinal, device) else {
        return true;
    };
    let usage = rt.ledger.usage(device);
    let overhead = measured.saturating_sub(usage.data);
    let new = overhead.saturating_sub(usage.context + usage.module);
    if new == 0 {
        return true;
    }
    match rt.ledger.reserve(device, new, kind) {
        Ok(r) => {
            r.commit(key);
            crate::vlog!(
                crate::log::DEBUG,
                "charged {new} bytes of {kind:?} overhead on device {device}"
            );
            true
        }
        Err(e) => {
            super::log_refusal("context/module overhead", e);
            false
        }
    }
}

/// The driver's figure for this process on a device (NVML, by host pid), if it can be
/// had. Needs a current context on that device (host pid discovery allocates a probe).
fn measure_process_usage(ordinal: CUdevice, device: usize) -> Option<u64> {
    let rt = rt();
    if rt.nvml().is_none() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            crate::vlog!(
                crate::log::WARN,
                "NVML unavailable: context and module memory cannot be measured and is not counted"
            )
        });
        return None;
    }
    let host_pid = crate::hostpid::discover(ordinal, device)?;
    if let Some(shared) = crate::shared_region::SharedRegion::get() {
        shared.set_host_pid(host_pid);
    }
    let usage = rt.nvml()?.process_usage(rt.nvml_index(ordinal)?)?;
    Some(usage.get(&host_pid).copied().unwrap_or(0))
}

/// After a context was created: charge it, or destroy it again if it does not fit.
unsafe fn after_ctx_create(rc: CUresult, pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    if rc != CUDA_SUCCESS || pctx.is_null() {
        return rc;
    }
    let ctx = unsafe { *pctx };
    if charge_overhead(dev, AllocKind::Context, ctx as u64) {
        return rc;
    }
    if let Some(destroy) = crate::driver::real::cuCtxDestroy_v2() {
        // SAFETY: destroying the context the driver just created for us.
        unsafe { destroy(ctx) };
    }
    contexts_changed();
    unsafe { *pctx = std::ptr::null_mut() };
    CUDA_ERROR_OUT_OF_MEMORY
}

pub unsafe fn cuCtxCreate_v2(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v2);
    unsafe { after_ctx_create(real(pctx, flags, dev), pctx, dev) }
}

pub unsafe fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params: *mut c_void,
    n: std::ffi::c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v3);
    unsafe { after_ctx_create(real(pctx, params, n, flags, dev), pctx, dev) }
}

pub unsafe fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    params: *mut c_void,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v4);
    unsafe { after_ctx_create(real(pctx, params, flags, dev), pctx, dev) }
}

pub unsafe fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    let real = real_or_return!(cuCtxDestroy_v2);
    let rc = unsafe { real(ctx) };
    if rc == CUDA_SUCCESS {
        // The driver freed everything the context owned.
        let ledger = &rt().ledger;
        ledger.release(AllocKind::Context, ctx as u64);
        ledger.release_owned_by(ctx as u64);
        contexts_changed();
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRetain);
    let rc = unsafe { real(pctx, dev) };
    let rt = rt();
    let Some(device) = rt.container_index(dev).filter(|_| rc == CUDA_SUCCESS) else {
        return rc;
    };
    if rt.primary_refs[device].fetch_add(1, Ordering::AcqRel) > 0 {
        return rc;
    }
    // Measuring needs the context current on this thread (the host pid probe allocates).
    let ctx = unsafe { *pctx };
    let pushed = crate::driver::real::cuCtxPushCurrent_v2()
        .is_some_and(|push| unsafe { push(ctx) } == CUDA_SUCCESS);
    let fits = charge_overhead(dev, AllocKind::Context, primary_key(device));
    if pushed {
        if let Some(pop) = crate::driver::real::cuCtxPopCurrent_v2() {
            let mut popped: CUcontext = std::ptr::null_mut();
            // SAFETY: popping what we pushed.
            unsafe { pop(&mut popped) };
        }
    }
    if fits {
        return rc;
    }
    // Does not fit: give the reference back (the driver frees the context at zero).
    rt.primary_refs[device].fetch_sub(1, Ordering::AcqRel);
    if let Some(release) = crate::driver::real::cuDevicePrimaryCtxRelease_v2()
        .or(crate::driver::real::cuDevicePrimaryCtxRelease())
    {
        // SAFETY: releasing the reference just taken.
        unsafe { release(dev) };
    }
    contexts_changed();
    CUDA_ERROR_OUT_OF_MEMORY
}

/// The primary context went away (last release, or reset): credit its overhead and all
/// memory allocated in it.
fn primary_gone(dev: CUdevice, ctx: Option<CUcontext>) {
    let rt = rt();
    if let Some(device) = rt.container_index(dev) {
        rt.ledger.release(AllocKind::Context, primary_key(device));
    }
    if let Some(ctx) = ctx {
        rt.ledger.release_owned_by(ctx as u64);
    }
    contexts_changed();
}

/// The primary context of a device, if it is active (without retaining it).
fn active_primary(dev: CUdevice) -> Option<CUcontext> {
    let state = crate::driver::real::cuDevicePrimaryCtxGetState()?;
    let retain = crate::driver::real::cuDevicePrimaryCtxRetain()?;
    let release = crate::driver::real::cuDevicePrimaryCtxRelease_v2()
        .or(crate::driver::real::cuDevicePrimaryCtxRelease())?;
    let (mut flags, mut active) = (0u32, 0i32);
    let mut ctx: CUcontext = std::ptr::null_mut();
    // SAFETY: plain queries; the extra reference is given back at once.
    unsafe {
        if state(dev, &mut flags, &mut active) != CUDA_SUCCESS || active == 0 {
            return None;
        }
        if retain(&mut ctx, dev) != CUDA_SUCCESS {
            return None;
        }
        release(dev);
    }
    Some(ctx)
}

unsafe fn primary_release(rc_of: impl FnOnce() -> CUresult, dev: CUdevice) -> CUresult {
    let rt = rt();
    let ctx = active_primary(dev);
    let rc = rc_of();
    if rc != CUDA_SUCCESS {
        return rc;
    }
    let Some(device) = rt.container_index(dev) else {
        return rc;
    };
    let before = rt.primary_refs[device]
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            Some(r.saturating_sub(1))
        })
        .unwrap_or(0);
    if before <= 1 {
        primary_gone(dev, ctx);
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRelease);
    unsafe { primary_release(|| real(dev), dev) }
}

pub unsafe fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRelease_v2);
    unsafe { primary_release(|| real(dev), dev) }
}

unsafe fn primary_reset(rc_of: impl FnOnce() -> CUresult, dev: CUdevice) -> CUresult {
    let ctx = active_primary(dev);
    let rc = rc_of();
    if rc == CUDA_SUCCESS {
        primary_gone(dev, ctx);
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxReset);
    unsafe { primary_reset(|| real(dev), dev) }
}

pub unsafe fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxReset_v2);
    unsafe { primary_reset(|| real(dev), dev) }
}

// ---- modules ------------------------------------------------------------------------------

unsafe fn after_module_load(rc: CUresult, module: *mut CUmodule) -> CUresult {
    if rc != CUDA_SUCCESS || module.is_null() {
        return rc;
    }
    let m = unsafe { *module };
    let Some(place) = super::current_placement() else {
        return rc;
    };
    if charge_overhead(place.ordinal, AllocKind::Module, m as u64) {
        return rc;
    }
    if let Some(unload) = crate::driver::real::cuModuleUnload() {
        // SAFETY: unloading the module the driver just loaded for us.
        unsafe { unload(m) };
    }
    unsafe { *module = std::ptr::null_mut() };
    CUDA_ERROR_OUT_OF_MEMORY
}

pub unsafe fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) -> CUresult {
    let real = real_or_return!(cuModuleLoad);
    unsafe { after_module_load(real(module, fname), module) }
}

pub unsafe fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    let real = real_or_return!(cuModuleLoadData);
    unsafe { after_module_load(real(module, image), module) }
}

pub unsafe fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    n: c_uint,
    options: *mut CUjit_option,
    values: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuModuleLoadDataEx);
    unsafe { after_module_load(real(module, image, n, options, values), module) }
}

pub unsafe fn cuModuleLoadFatBinary(module: *mut CUmodule, fat: *const c_void) -> CUresult {
    let real = real_or_return!(cuModuleLoadFatBinary);
    unsafe { after_module_load(real(module, fat), module) }
}

pub unsafe fn cuModuleUnload(module: CUmodule) -> CUresult {
    let real = real_or_return!(cuModuleUnload);
    let rc = unsafe { real(module) };
    if rc == CUDA_SUCCESS {
        rt().ledger.release(AllocKind::Module, module as u64);
    }
    rc
}
