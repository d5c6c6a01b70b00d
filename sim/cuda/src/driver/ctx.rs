//! Primary and regular contexts, modules and functions.

use super::put;
use crate::rt::{
    self, code, ctx_alive, ctx_obj, cur_ctx, lock, rt, Ctx, Res, Runtime, CTXS, FUNCS, MODULES,
};
use cuda_headers::prelude::*;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use vgpu_sim_core::image as ptximage;

/// Creates an (inactive) context object for `ordinal`.
fn new_ctx(r: &Runtime, ordinal: CUdevice, flags: c_uint, primary: bool) -> Res<u64> {
    let dev = r.phys(ordinal)?;
    CTXS.create(|c| {
        c.ordinal.store(ordinal, Relaxed);
        c.dev.store(dev, Relaxed);
        c.flags.store(flags, Relaxed);
        c.primary.store(primary, Relaxed);
        c.instance.store(0, Relaxed);
        c.last_end.store(0, Relaxed);
        c.pending_host.store(0, Relaxed);
        *lock(&c.limits) = rt::DEFAULT_LIMITS;
        c.module_bytes.store(0, Relaxed);
        c.modules.store(0, Relaxed);
    })
    .ok_or(CUDA_ERROR_OUT_OF_MEMORY)
}

/// Charges the context's memory and gives it a fresh incarnation.
fn activate(r: &Runtime, c: &Ctx) -> Res {
    let dev = c.dev.load(Relaxed);
    r.with_state(|g| g.charge(r.slot, dev, r.costs.context_bytes as i64, 0, 1, 0))?
        .map_err(|_| CUDA_ERROR_OUT_OF_MEMORY)?;
    c.last_end.store(0, Relaxed);
    c.module_bytes.store(0, Relaxed);
    c.modules.store(0, Relaxed);
    c.instance.store(rt::new_instance(), Release);
    Ok(())
}

/// Ends the context's incarnation: frees its allocations, modules, streams, events and its
/// own memory charge (as `cuCtxDestroy` / the last primary release / a reset do).
pub(crate) fn deactivate(r: &Runtime, c: &Ctx) {
    let inst = c.instance.swap(0, AcqRel);
    if inst == 0 {
        return;
    }
    let dev = c.dev.load(Relaxed);
    super::mem::drop_ctx_memory(r, inst);
    let mb = c.module_bytes.swap(0, Relaxed);
    let nm = c.modules.swap(0, Relaxed);
    let _ = r.with_state(|g| {
        g.free_ctx(r.slot, inst);
        let _ = g.charge(
            r.slot,
            dev,
            -(r.costs.context_bytes as i64),
            -(mb as i64),
            -1,
            -(nm as i32),
        );
    });
    for h in MODULES.live_handles() {
        if MODULES.get(h).is_some_and(|m| m.inst.load(Relaxed) == inst) {
            MODULES.destroy(h);
        }
    }
    for h in FUNCS.live_handles() {
        if FUNCS.get(h).is_some_and(|f| f.inst.load(Relaxed) == inst) {
            FUNCS.destroy(h);
        }
    }
    for h in rt::STREAMS.live_handles() {
        if rt::STREAMS
            .get(h)
            .is_some_and(|s| s.inst.load(Relaxed) == inst)
        {
            rt::STREAMS.destroy(h);
        }
    }
    for h in rt::EVENTS.live_handles() {
        if rt::EVENTS
            .get(h)
            .is_some_and(|e| e.inst.load(Relaxed) == inst)
        {
            rt::EVENTS.destroy(h);
        }
    }
}

// ---- primary contexts ----------------------------------------------------------------------

pub unsafe fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if pctx.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        r.phys(dev)?;
        let mut p = lock(&r.primaries[dev as usize]);
        if p.handle == 0 {
            p.handle = new_ctx(r, dev, p.flags, true)?;
        }
        let c = CTXS.get(p.handle).ok_or(CUDA_ERROR_UNKNOWN)?;
        if p.refs == 0 {
            c.flags.store(p.flags, Relaxed);
            activate(r, c)?;
        }
        p.refs += 1;
        // SAFETY: `pctx` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pctx, p.handle as CUcontext) }
    })())
}

pub unsafe fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        r.phys(dev)?;
        let mut p = lock(&r.primaries[dev as usize]);
        if p.refs == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        p.refs -= 1;
        if p.refs == 0 {
            if let Some(c) = CTXS.get(p.handle) {
                deactivate(r, c);
            }
        }
        Ok(())
    })())
}

pub unsafe fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    // SAFETY: the call takes no pointer: it is `unsafe` only as every entry point is.
    unsafe { cuDevicePrimaryCtxRelease(dev) }
}

pub unsafe fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        r.phys(dev)?;
        let mut p = lock(&r.primaries[dev as usize]);
        if let Some(c) = CTXS.get(p.handle) {
            deactivate(r, c);
        }
        p.refs = 0;
        Ok(())
    })())
}

pub unsafe fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    // SAFETY: the call takes no pointer: it is `unsafe` only as every entry point is.
    unsafe { cuDevicePrimaryCtxReset(dev) }
}

/// Valid context creation flags: scheduling (0..=4), map host (0x8), lmem resize (0x10),
/// coredump / user coredump / sync memops (0x20, 0x40, 0x80).
const CTX_FLAGS_MASK: c_uint = 0xFF;

pub unsafe fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, flags: c_uint) -> CUresult {
    code((|| {
        let r = rt()?;
        r.phys(dev)?;
        if flags & !CTX_FLAGS_MASK != 0 || flags & 0x7 > 4 || flags & 0x7 == 3 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut p = lock(&r.primaries[dev as usize]);
        p.flags = flags;
        if let Some(c) = CTXS.get(p.handle) {
            c.flags.store(flags, Relaxed);
        }
        Ok(())
    })())
}

pub unsafe fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if flags.is_null() || active.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        r.phys(dev)?;
        let p = lock(&r.primaries[dev as usize]);
        // SAFETY: `flags` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(flags, p.flags) }?;
        // SAFETY: `active` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(active, (p.refs > 0) as c_int) }
    })())
}

// ---- regular contexts ------------------------------------------------------------------------

unsafe fn ctx_create(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> Res {
    let r = rt()?;
    if pctx.is_null() || flags & !CTX_FLAGS_MASK != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let h = new_ctx(r, dev, flags, false)?;
    let c = CTXS.get(h).ok_or(CUDA_ERROR_UNKNOWN)?;
    if let Err(e) = activate(r, c) {
        CTXS.destroy(h);
        return Err(e);
    }
    rt::push_ctx(h);
    // SAFETY: `pctx` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    unsafe { put(pctx, h as CUcontext) }
}

pub unsafe fn cuCtxCreate_v2(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> CUresult {
    // SAFETY: `ctx_create` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { ctx_create(pctx, flags, dev) })
}

pub unsafe fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params_array: *mut c_void,
    num_params: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    if num_params < 0 || (num_params > 0 && params_array.is_null()) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: `ctx_create` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { ctx_create(pctx, flags, dev) })
}

pub unsafe fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    _ctx_create_params: *mut c_void,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: `ctx_create` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { ctx_create(pctx, flags, dev) })
}

pub unsafe fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    code((|| {
        let r = rt()?;
        let h = ctx as u64;
        let c = CTXS.get(h).ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        if c.primary.load(Relaxed) || c.instance.load(Acquire) == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        deactivate(r, c);
        CTXS.destroy(h);
        rt::forget_ctx(h);
        Ok(())
    })())
}

pub unsafe fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    code((|| {
        rt()?;
        let h = ctx as u64;
        if h == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        ctx_obj(h)?;
        rt::push_ctx(h);
        Ok(())
    })())
}

pub unsafe fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    code((|| {
        rt()?;
        if rt::current_handle() == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        let h = rt::pop_ctx();
        if !pctx.is_null() {
            // SAFETY: `pctx` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *pctx = h as CUcontext };
        }
        Ok(())
    })())
}

pub unsafe fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    code((|| {
        rt()?;
        let h = ctx as u64;
        if h != 0 && CTXS.get(h).is_none() {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        rt::set_ctx(h);
        Ok(())
    })())
}

pub unsafe fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    code((|| {
        rt()?;
        // SAFETY: `pctx` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pctx, rt::current_handle() as CUcontext) }
    })())
}

pub unsafe fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    code((|| {
        rt()?;
        if device.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (_, c, _) = cur_ctx()?;
        // SAFETY: `device` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(device, c.ordinal.load(Relaxed)) }
    })())
}

pub unsafe fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    code((|| {
        rt()?;
        if flags.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (_, c, _) = cur_ctx()?;
        // SAFETY: `flags` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(flags, c.flags.load(Relaxed)) }
    })())
}

pub unsafe fn cuCtxGetApiVersion(ctx: CUcontext, version: *mut c_uint) -> CUresult {
    code((|| {
        rt()?;
        if version.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if ctx.is_null() {
            cur_ctx()?;
        } else {
            ctx_obj(ctx as u64)?;
        }
        // SAFETY: `version` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(version, 3020) }
    })())
}

pub unsafe fn cuCtxSynchronize() -> CUresult {
    code((|| {
        rt()?;
        let (_, c, _) = cur_ctx()?;
        rt::wait_for(c.last_end.load(Acquire), &[&c.pending_host]);
        Ok(())
    })())
}

pub unsafe fn cuCtxGetLimit(pvalue: *mut usize, limit: CUlimit) -> CUresult {
    code((|| {
        rt()?;
        if pvalue.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (_, c, _) = cur_ctx()?;
        let l = lock(&c.limits);
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                pvalue,
                *l.get(limit as usize).ok_or(CUDA_ERROR_INVALID_VALUE)?,
            )
        }
    })())
}

pub unsafe fn cuCtxSetLimit(limit: CUlimit, value: usize) -> CUresult {
    code((|| {
        rt()?;
        let (_, c, _) = cur_ctx()?;
        let mut l = lock(&c.limits);
        let slot = l.get_mut(limit as usize).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        *slot = value;
        Ok(())
    })())
}

pub unsafe fn cuCtxGetStreamPriorityRange(
    least_priority: *mut c_int,
    greatest_priority: *mut c_int,
) -> CUresult {
    code((|| {
        rt()?;
        if !least_priority.is_null() {
            // SAFETY: `least_priority` is an out-pointer argument, checked non-NULL above; by the C
            // API's contract a non-NULL one is valid for this write.
            unsafe { *least_priority = 0 };
        }
        if !greatest_priority.is_null() {
            // SAFETY: `greatest_priority` is an out-pointer argument, checked non-NULL above; by
            // the C API's contract a non-NULL one is valid for this write.
            unsafe { *greatest_priority = -5 };
        }
        Ok(())
    })())
}

// ---- modules and functions --------------------------------------------------------------

/// Kernel names of a module image (None: accept any name). PTX text is read up to its NUL
/// as the driver would; binary images are not inspected.
///
/// # Safety
/// `image` is non-NULL and points at a module image as `cuModuleLoadData` takes it.
unsafe fn image_entries(image: *const c_void) -> Option<Vec<String>> {
    let p = image as *const u8;
    let mut prefix = [0u8; 4];
    for (i, b) in prefix.iter_mut().enumerate() {
        // SAFETY: `image` is non-NULL (the caller checks) and points at a module image: a binary
        // one is at least 4 bytes, a PTX text is NUL-terminated, and the loop stops at the first
        // NUL, so no byte past either is read.
        *b = unsafe { *p.add(i) };
        if *b == 0 {
            break;
        }
    }
    if ptximage::is_binary_image(&prefix)
        || !ptximage::looks_like_ptx(&prefix[..prefix.iter().position(|&b| b == 0).unwrap_or(4)])
    {
        return None;
    }
    // SAFETY: `image` is non-NULL (the caller checks) and its prefix says PTX, which the C
    // API's contract makes a NUL-terminated text.
    let text = unsafe { std::ffi::CStr::from_ptr(image as *const c_char) }.to_string_lossy();
    ptximage::ptx_entries(&text)
}

fn file_entries(bytes: &[u8]) -> Option<Vec<String>> {
    if ptximage::is_binary_image(bytes) || !ptximage::looks_like_ptx(bytes) {
        return None;
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    ptximage::ptx_entries(&String::from_utf8_lossy(&bytes[..end]))
}

unsafe fn module_load(module: *mut CUmodule, entries: Option<Vec<String>>) -> Res {
    let r = rt()?;
    if module.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let (h, c, inst) = cur_ctx()?;
    let dev = c.dev.load(Relaxed);
    let mb = r.costs.module_bytes;
    r.with_state(|g| g.charge(r.slot, dev, 0, mb as i64, 0, 1))?
        .map_err(|_| CUDA_ERROR_OUT_OF_MEMORY)?;
    let m = MODULES.create(|m| {
        m.ctx.store(h, Relaxed);
        m.inst.store(inst, Relaxed);
        *lock(&m.entries) = entries;
        lock(&m.funcs).clear();
        *lock(&m.globals) = (0, Default::default());
    });
    let Some(m) = m else {
        let _ = r.with_state(|g| g.charge(r.slot, dev, 0, -(mb as i64), 0, -1));
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    };
    c.module_bytes.fetch_add(mb, Relaxed);
    c.modules.fetch_add(1, Relaxed);
    // SAFETY: `module` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    unsafe { put(module, m as CUmodule) }
}

pub unsafe fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) -> CUresult {
    code((|| {
        rt()?;
        if module.is_null() || fname.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        cur_ctx()?;
        // SAFETY: `fname` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let path = unsafe { std::ffi::CStr::from_ptr(fname) }
            .to_string_lossy()
            .into_owned();
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(CUDA_ERROR_FILE_NOT_FOUND);
        }
        let bytes = std::fs::read(&path).map_err(|_| CUDA_ERROR_FILE_NOT_FOUND)?;
        // SAFETY: `module_load` requires only what our own caller guarantees: the pointer arguments
        // are passed on unchanged, valid as the C API specifies.
        unsafe { module_load(module, file_entries(&bytes)) }
    })())
}

pub unsafe fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    if image.is_null() {
        return if rt().is_err() {
            CUDA_ERROR_NOT_INITIALIZED
        } else {
            CUDA_ERROR_INVALID_VALUE
        };
    }
    if module.is_null() || rt().is_err() || cur_ctx().is_err() {
        // SAFETY: `module_load` requires only what our own caller guarantees: the pointer arguments
        // are passed on unchanged, valid as the C API specifies.
        return code(unsafe { module_load(module, None) });
    }
    // SAFETY: `module_load` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { module_load(module, image_entries(image)) })
}

pub unsafe fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    num_options: c_uint,
    options: *mut CUjit_option,
    option_values: *mut *mut c_void,
) -> CUresult {
    if num_options > 0 && (options.is_null() || option_values.is_null()) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: `cuModuleLoadData` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { cuModuleLoadData(module, image) }
}

pub unsafe fn cuModuleLoadFatBinary(module: *mut CUmodule, fat_cubin: *const c_void) -> CUresult {
    // SAFETY: `cuModuleLoadData` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { cuModuleLoadData(module, fat_cubin) }
}

pub unsafe fn cuModuleUnload(hmod: CUmodule) -> CUresult {
    code((|| {
        let r = rt()?;
        let h = hmod as u64;
        let m = MODULES.get(h).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let (ctx, inst) = (m.ctx.load(Relaxed), m.inst.load(Relaxed));
        if !MODULES.destroy(h) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        for f in lock(&m.funcs).drain() {
            FUNCS.destroy(f.1);
        }
        let globals = std::mem::take(&mut lock(&m.globals).0);
        if ctx_alive(ctx, inst) {
            let c = CTXS.get(ctx).ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
            let dev = c.dev.load(Relaxed);
            let mb = r.costs.module_bytes;
            c.module_bytes
                .fetch_sub(mb.min(c.module_bytes.load(Relaxed)), Relaxed);
            c.modules.fetch_sub(1, Relaxed);
            if globals != 0 {
                let _ = super::mem::free_local(r, globals, &[vgpu_sim_core::alloc::kind::GLOBAL]);
            }
            let _ = r.with_state(|g| g.charge(r.slot, dev, 0, -(mb as i64), 0, -1));
        }
        Ok(())
    })())
}

fn module_obj(h: CUmodule) -> Res<&'static rt::Module> {
    let m = MODULES.get(h as u64).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if !ctx_alive(m.ctx.load(Relaxed), m.inst.load(Relaxed)) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    Ok(m)
}

pub unsafe fn cuModuleGetFunction(
    hfunc: *mut CUfunction,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    code((|| {
        rt()?;
        if hfunc.is_null() || name.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let m = module_obj(hmod)?;
        // SAFETY: `name` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let n = unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        if lock(&m.entries).as_ref().is_some_and(|e| !e.contains(&n)) {
            return Err(CUDA_ERROR_NOT_FOUND);
        }
        let mut funcs = lock(&m.funcs);
        if let Some(&f) = funcs.get(&n) {
            if FUNCS.is_live(f) {
                // SAFETY: `hfunc` is an out-pointer argument of the C API: `put` rejects NULL, and
                // a non-NULL one is valid for a write by the caller's contract.
                return unsafe { put(hfunc, f as CUfunction) };
            }
        }
        let (ctx, inst) = (m.ctx.load(Relaxed), m.inst.load(Relaxed));
        let f = FUNCS
            .create(|f| {
                f.module.store(hmod as u64, Relaxed);
                f.ctx.store(ctx, Relaxed);
                f.inst.store(inst, Relaxed);
                lock(&f.attrs).clear();
            })
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        funcs.insert(n, f);
        // SAFETY: `hfunc` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(hfunc, f as CUfunction) }
    })())
}

/// Size of one module global, and the most globals a module hands out.
const GLOBAL_SIZE: u64 = 256;
const GLOBALS_PER_MODULE: u64 = 256;

pub unsafe fn cuModuleGetGlobal_v2(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if name.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let m = module_obj(hmod)?;
        // SAFETY: `name` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let n = unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let mut g = lock(&m.globals);
        if g.0 == 0 {
            let ctx = m.ctx.load(Relaxed);
            let c = CTXS.get(ctx).ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
            g.0 = super::mem::alloc_globals(
                r,
                ctx,
                c,
                m.inst.load(Relaxed),
                GLOBAL_SIZE * GLOBALS_PER_MODULE,
            )?;
        }
        let count = g.1.len() as u64;
        let off = match g.1.get(&n) {
            Some(&o) => o,
            None if count < GLOBALS_PER_MODULE => {
                g.1.insert(n, count * GLOBAL_SIZE);
                count * GLOBAL_SIZE
            }
            None => return Err(CUDA_ERROR_NOT_FOUND),
        };
        if !dptr.is_null() {
            // SAFETY: `dptr` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *dptr = g.0 + off };
        }
        if !bytes.is_null() {
            // SAFETY: `bytes` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *bytes = GLOBAL_SIZE as usize };
        }
        Ok(())
    })())
}

/// A live function: `(object, its context object)`.
pub(crate) fn func_obj(h: CUfunction) -> Res<(&'static rt::Func, &'static Ctx)> {
    let f = FUNCS.get(h as u64).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    let c = CTXS
        .get(f.ctx.load(Relaxed))
        .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if c.instance.load(Acquire) != f.inst.load(Relaxed) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    Ok((f, c))
}

pub unsafe fn cuFuncGetAttribute(
    pi: *mut c_int,
    attrib: CUfunction_attribute,
    hfunc: CUfunction,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if pi.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (f, c) = func_obj(hfunc)?;
        let info = &r.shm.devices()[c.dev.load(Relaxed) as usize];
        let cc = (info.cc_major * 10 + info.cc_minor) as c_int;
        let attrs = lock(&f.attrs);
        let v = match attrib {
            0 => 1024,
            1..=3 => 0,
            4 => 32,
            5 | 6 => cc,
            7 => 0,
            8 => *attrs.get(&8).unwrap_or(&0),
            9 => *attrs.get(&9).unwrap_or(&-1),
            10..=19 => *attrs.get(&attrib).unwrap_or(&0),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        // SAFETY: `pi` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe { put(pi, v) }
    })())
}

pub unsafe fn cuFuncSetAttribute(
    hfunc: CUfunction,
    attrib: CUfunction_attribute,
    value: c_int,
) -> CUresult {
    code((|| {
        let r = rt()?;
        let (f, c) = func_obj(hfunc)?;
        let info = &r.shm.devices()[c.dev.load(Relaxed) as usize];
        let ok = match attrib {
            8 => value >= 0 && value as u32 <= info.smem_optin,
            9 => (-1..=100).contains(&value),
            10..=19 => true,
            _ => false,
        };
        if !ok {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        lock(&f.attrs).insert(attrib, value);
        Ok(())
    })())
}

pub unsafe fn cuFuncSetCacheConfig(hfunc: CUfunction, config: c_int) -> CUresult {
    code((|| {
        rt()?;
        func_obj(hfunc)?;
        if !(0..=3).contains(&config) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(())
    })())
}

pub unsafe fn cuOccupancyMaxActiveBlocksPerMultiprocessor(
    num_blocks: *mut c_int,
    func: CUfunction,
    block_size: c_int,
    dynamic_smem_size: usize,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if num_blocks.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (_, c) = func_obj(func)?;
        if block_size <= 0 || block_size > 1024 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let info = &r.shm.devices()[c.dev.load(Relaxed) as usize];
        let max_blocks = super::attribute(info, 106).unwrap_or(32) as u64;
        let warps = (block_size as u64).div_ceil(32) * 32;
        let mut n = (info.threads_per_sm as u64 / warps).min(max_blocks);
        if dynamic_smem_size > 0 {
            n = n.min(info.smem_per_sm as u64 / dynamic_smem_size as u64);
        }
        // SAFETY: `num_blocks` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(num_blocks, n as c_int) }
    })())
}
