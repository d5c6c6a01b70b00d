//! Memory: information, linear allocations, managed and host memory, copies and sets,
//! arrays, stream-ordered allocation and pools, virtual memory management.

use super::put;
use crate::rt::{
    self, code, cur_ctx, lock, rt, stream_obj, ArrayRec, Ctx, HostRec, Loc, LocalAlloc, Mapping,
    Res, Reserve, Runtime, VmmHandle, POOLS,
};
use cuda_headers::prelude::*;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use vgpu_sim_core::alloc::{align_up, kind, ALLOC_ALIGN, VMM_GRANULARITY};
use vgpu_sim_core::clock;
use vgpu_sim_core::state::{AllocReq, MemError, SWEEP_INTERVAL_NS};

/// Returned when a host range is registered twice.
const CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: CUresult = 712;
/// Returned when unregistering a range that is not registered.
const CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: CUresult = 713;

fn mem_err(e: MemError) -> CUresult {
    match e {
        MemError::OutOfMemory | MemError::NoSpace => CUDA_ERROR_OUT_OF_MEMORY,
        MemError::BadDevice => CUDA_ERROR_INVALID_DEVICE,
    }
}

/// Allocates `bytes` of device memory of `kind` owned by context `ctx` (incarnation `inst`).
#[allow(clippy::too_many_arguments)]
fn device_alloc(
    r: &Runtime,
    kind: u8,
    bytes: u64,
    span: u64,
    align: u64,
    charged: u64,
    ctx: u64,
    c: &Ctx,
    inst: u64,
    pool: u64,
    dev_override: Option<(u32, CUdevice)>,
) -> Res<u64> {
    let (dev, ordinal) = dev_override.unwrap_or((c.dev.load(Relaxed), c.ordinal.load(Relaxed)));
    let q = AllocReq {
        slot: r.slot,
        dev,
        kind,
        bytes,
        span,
        align,
        charged,
        ctx: inst,
        aux: pool,
        phys: false,
        fixed: None,
    };
    let base = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
    lock(&r.mem).allocs.insert(
        base,
        LocalAlloc {
            shm_base: base,
            bytes,
            span,
            ordinal,
            ctx,
            inst,
            kind,
            host: None,
            pool,
        },
    );
    Ok(base)
}

/// Ordinary allocation: 512-byte aligned, size rounded up to 512 and charged as such.
pub(crate) fn linear_alloc(r: &Runtime, kind: u8, bytes: u64, pool: u64) -> Res<u64> {
    let (h, c, inst) = cur_ctx()?;
    let span = align_up(bytes, ALLOC_ALIGN).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    device_alloc(
        r,
        kind,
        bytes,
        span,
        ALLOC_ALIGN,
        span,
        h,
        c,
        inst,
        pool,
        None,
    )
}

/// The module-globals region of a module.
pub(crate) fn alloc_globals(r: &Runtime, ctx: u64, c: &Ctx, inst: u64, size: u64) -> Res<u64> {
    device_alloc(
        r,
        kind::GLOBAL,
        size,
        size,
        ALLOC_ALIGN,
        0,
        ctx,
        c,
        inst,
        0,
        None,
    )
}

fn release_local(r: &Runtime, mem: &mut rt::LocalMem, key: u64) -> Option<LocalAlloc> {
    let a = mem.allocs.remove(&key)?;
    mem.shadows.remove(&a.shm_base);
    if let Some((p, len)) = a.host {
        // SAFETY: our own mapping from cuMemAllocManaged.
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
    }
    if a.pool != 0 {
        if let Some(p) = POOLS.get(a.pool) {
            let _ = p
                .used
                .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(a.span)));
        }
    }
    let _ = r;
    Some(a)
}

/// Frees the allocation the user knows as `ptr` if its kind is one of `kinds`.
pub(crate) fn free_local(r: &Runtime, ptr: u64, kinds: &[u8]) -> Res {
    let mut mem = lock(&r.mem);
    let a = *mem.allocs.get(&ptr).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if !kinds.contains(&a.kind) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    r.with_state(|g| g.free(r.slot, a.shm_base, kinds))?;
    release_local(r, &mut mem, ptr);
    Ok(())
}

/// Forgets every local allocation of a context incarnation (the caller frees the shared side).
pub(crate) fn drop_ctx_memory(r: &Runtime, inst: u64) {
    let mut mem = lock(&r.mem);
    let keys: Vec<u64> = mem
        .allocs
        .iter()
        .filter(|(_, a)| a.inst == inst)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        release_local(r, &mut mem, k);
    }
    mem.arrays.retain(|_, a| a.inst != inst);
}

// ---- information and linear memory -----------------------------------------------------

pub unsafe fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    code((|| {
        let r = rt()?;
        let (_, c, _) = cur_ctx()?;
        if free.is_null() || total.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let dev = c.dev.load(Relaxed);
        let (used, tot) = r
            .with_state(|g| {
                g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
                g.mem_info(dev)
            })?
            .ok_or(CUDA_ERROR_INVALID_DEVICE)?;
        // SAFETY: `free` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *free = tot.saturating_sub(used) as usize };
        // SAFETY: `total` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *total = tot as usize };
        Ok(())
    })())
}

pub unsafe fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if dptr.is_null() || bytesize == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = linear_alloc(r, kind::ALLOC, bytesize as u64, 0)?;
        // SAFETY: `dptr` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(dptr, p) }
    })())
}

pub unsafe fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    p_pitch: *mut usize,
    width_in_bytes: usize,
    height: usize,
    element_size_bytes: c_uint,
) -> CUresult {
    code((|| {
        let r = rt()?;
        let (h, c, inst) = cur_ctx()?;
        if dptr.is_null() || p_pitch.is_null() || width_in_bytes == 0 || height == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if !matches!(element_size_bytes, 4 | 8 | 16) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let pitch = align_up(width_in_bytes as u64, 512).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let bytes = pitch
            .checked_mul(height as u64)
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let p = device_alloc(
            r,
            kind::PITCH,
            bytes,
            bytes,
            ALLOC_ALIGN,
            bytes,
            h,
            c,
            inst,
            0,
            None,
        )?;
        // SAFETY: `p_pitch` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *p_pitch = pitch as usize };
        // SAFETY: `dptr` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(dptr, p) }
    })())
}

pub unsafe fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        free_local(
            r,
            dptr,
            &[kind::ALLOC, kind::PITCH, kind::MANAGED, kind::ASYNC],
        )
    })())
}

pub unsafe fn cuMemGetAddressRange_v2(
    pbase: *mut CUdeviceptr,
    psize: *mut usize,
    dptr: CUdeviceptr,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        let mem = lock(&r.mem);
        let (base, size) = if let Some((k, a)) = mem.find_alloc(dptr) {
            (k, a.bytes)
        } else if let Some((k, m)) = mem.find_map(dptr) {
            (k, m.size)
        } else {
            return Err(CUDA_ERROR_NOT_FOUND);
        };
        if !pbase.is_null() {
            // SAFETY: `pbase` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *pbase = base };
        }
        if !psize.is_null() {
            // SAFETY: `psize` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *psize = size as usize };
        }
        Ok(())
    })())
}

unsafe fn anon_map(len: usize) -> Res<*mut u8> {
    // SAFETY: an anonymous private mapping at an address the kernel picks: it touches no memory
    // that exists yet.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    Ok(p as *mut u8)
}

pub unsafe fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    flags: c_uint,
) -> CUresult {
    code((|| {
        let r = rt()?;
        let (h, c, inst) = cur_ctx()?;
        if dptr.is_null()
            || bytesize == 0
            || !(flags == CU_MEM_ATTACH_GLOBAL || flags == CU_MEM_ATTACH_HOST)
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let span = align_up(bytesize as u64, ALLOC_ALIGN).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `anon_map` requires only what our own caller guarantees: the pointer arguments
        // are passed on unchanged, valid as the C API specifies.
        let host = unsafe { anon_map(bytesize) }?;
        let q = AllocReq {
            slot: r.slot,
            dev: c.dev.load(Relaxed),
            kind: kind::MANAGED,
            bytes: bytesize as u64,
            span,
            align: ALLOC_ALIGN,
            charged: span,
            ctx: inst,
            aux: 0,
            phys: false,
            fixed: None,
        };
        let base = match r.with_state(|g| g.alloc(&q))? {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: `host` is the `bytesize`-byte mapping made just above by `anon_map`, not
                // yet handed to anyone.
                unsafe { libc::munmap(host as *mut libc::c_void, bytesize) };
                return Err(mem_err(e));
            }
        };
        lock(&r.mem).allocs.insert(
            host as u64,
            LocalAlloc {
                shm_base: base,
                bytes: bytesize as u64,
                span,
                ordinal: c.ordinal.load(Relaxed),
                ctx: h,
                inst,
                kind: kind::MANAGED,
                host: Some((host as usize, bytesize)),
                pool: 0,
            },
        );
        // SAFETY: `dptr` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(dptr, host as u64) }
    })())
}

// ---- host memory ---------------------------------------------------------------------------

unsafe fn host_alloc(pp: *mut *mut c_void, bytesize: usize, flags: c_uint) -> Res {
    let r = rt()?;
    let (h, _, _) = cur_ctx()?;
    if pp.is_null() || bytesize == 0 || flags & !0x7 != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: `anon_map` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    let p = unsafe { anon_map(bytesize) }?;
    lock(&r.mem).hosts.insert(
        p as u64,
        HostRec {
            len: bytesize,
            registered: false,
            ctx: h,
        },
    );
    // SAFETY: `pp` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL one
    // is valid for a write by the caller's contract.
    unsafe { put(pp, p as *mut c_void) }
}

pub unsafe fn cuMemAllocHost_v2(pp: *mut *mut c_void, bytesize: usize) -> CUresult {
    // SAFETY: `host_alloc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { host_alloc(pp, bytesize, 0) })
}

pub unsafe fn cuMemHostAlloc(pp: *mut *mut c_void, bytesize: usize, flags: c_uint) -> CUresult {
    // SAFETY: `host_alloc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { host_alloc(pp, bytesize, flags) })
}

pub unsafe fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    code((|| {
        let r = rt()?;
        let mut mem = lock(&r.mem);
        match mem.hosts.get(&(p as u64)) {
            Some(h) if !h.registered => {
                let len = h.len;
                mem.hosts.remove(&(p as u64));
                // SAFETY: `p` is a mapping of `len` bytes that `host_alloc` made (the record just
                // removed says so), not a range the application registered; the application gave it
                // back, so nothing of ours refers to it.
                unsafe { libc::munmap(p, len) };
                Ok(())
            }
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })())
}

pub unsafe fn cuMemHostGetDevicePointer_v2(
    pdptr: *mut CUdeviceptr,
    p: *mut c_void,
    flags: c_uint,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if pdptr.is_null() || p.is_null() || flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mem = lock(&r.mem);
        if mem.find_host(p as u64).is_none()
            && mem
                .find_alloc(p as u64)
                .is_none_or(|(_, a)| a.host.is_none())
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pdptr` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pdptr, p as u64) }
    })())
}

pub unsafe fn cuMemHostRegister_v2(p: *mut c_void, bytesize: usize, flags: c_uint) -> CUresult {
    code((|| {
        let r = rt()?;
        let (h, _, _) = cur_ctx()?;
        if p.is_null() || bytesize == 0 || flags & !0xF != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut mem = lock(&r.mem);
        let start = p as u64;
        let end = start
            .checked_add(bytesize as u64)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if let Some((k, rec)) = mem.hosts.range(..end).next_back() {
            if k + rec.len as u64 > start {
                return Err(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
            }
        }
        mem.hosts.insert(
            start,
            HostRec {
                len: bytesize,
                registered: true,
                ctx: h,
            },
        );
        Ok(())
    })())
}

pub unsafe fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    code((|| {
        let r = rt()?;
        let mut mem = lock(&r.mem);
        match mem.hosts.get(&(p as u64)) {
            Some(h) if h.registered => {
                mem.hosts.remove(&(p as u64));
                Ok(())
            }
            _ => Err(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED),
        }
    })())
}

pub unsafe fn cuPointerGetAttribute(
    data: *mut c_void,
    attribute: CUpointer_attribute,
    ptr: CUdeviceptr,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if data.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mem = lock(&r.mem);
        // (context, memory type, host pointer, managed, ordinal)
        let (ctx, mtype, host, managed, ordinal): (u64, c_uint, Option<u64>, bool, CUdevice) =
            if let Some((_, a)) = mem.find_alloc(ptr) {
                (
                    a.ctx,
                    CU_MEMORYTYPE_DEVICE,
                    a.host.map(|_| ptr),
                    a.host.is_some(),
                    a.ordinal,
                )
            } else if let Some((_, m)) = mem.find_map(ptr) {
                let dev = mem.handles.get(&m.handle).map(|h| h.dev).unwrap_or(0);
                (
                    0,
                    CU_MEMORYTYPE_DEVICE,
                    None,
                    false,
                    r.ordinal_of(dev).unwrap_or(0),
                )
            } else if let Some((_, h)) = mem.find_host(ptr) {
                let ord = rt::ctx_obj(h.ctx)
                    .map(|(c, _)| c.ordinal.load(Relaxed))
                    .unwrap_or(0);
                (h.ctx, CU_MEMORYTYPE_HOST, Some(ptr), false, ord)
            } else {
                return Err(CUDA_ERROR_INVALID_VALUE);
            };
        match attribute {
            // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the requested attribute names, the type written here.
            CU_POINTER_ATTRIBUTE_CONTEXT => unsafe { *(data as *mut CUcontext) = ctx as CUcontext },
            // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the requested attribute names, the type written here.
            CU_POINTER_ATTRIBUTE_MEMORY_TYPE => unsafe { *(data as *mut c_uint) = mtype },
            // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the requested attribute names, the type written here.
            CU_POINTER_ATTRIBUTE_DEVICE_POINTER => unsafe { *(data as *mut CUdeviceptr) = ptr },
            CU_POINTER_ATTRIBUTE_HOST_POINTER => {
                // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
                // storage of the type the requested attribute names, the type written here.
                unsafe {
                    *(data as *mut *mut c_void) =
                        host.ok_or(CUDA_ERROR_INVALID_VALUE)? as *mut c_void
                }
            }
            // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the requested attribute names, the type written here.
            CU_POINTER_ATTRIBUTE_IS_MANAGED => unsafe {
                *(data as *mut c_uint) = managed as c_uint
            },
            // SAFETY: `data` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the requested attribute names, the type written here.
            CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL => unsafe { *(data as *mut c_int) = ordinal },
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })())
}

// ---- copies and sets -------------------------------------------------------------------

/// One side of a copy.
#[derive(Clone, Copy)]
enum Side {
    Dev(CUdeviceptr),
    /// A device pointer that may also be a host pointer (`cuMemcpy`).
    Any(CUdeviceptr),
    Host(*mut u8),
}

fn locate(r: &Runtime, mem: &rt::LocalMem, s: Side, n: u64) -> Res<Loc> {
    let ndev = r.shm.devices().len() as u32;
    match s {
        Side::Dev(p) => mem.resolve(p, n, false, ndev),
        Side::Any(p) => mem.resolve(p, n, true, ndev),
        Side::Host(p) if p.is_null() => Err(CUDA_ERROR_INVALID_VALUE),
        Side::Host(p) => Ok(Loc::Host(p)),
    }
}

/// Copies `n` bytes. `sync`: wait for the context's earlier work first (blocking copies);
/// `stream`: validated for the async variants.
unsafe fn copy(dst: Side, src: Side, n: usize, sync: bool, stream: Option<CUstream>) -> Res {
    let r = rt()?;
    let (_, c, _) = cur_ctx()?;
    if let Some(s) = stream {
        stream_obj(s)?;
    }
    if n == 0 {
        return Ok(());
    }
    if sync {
        rt::wait_for(c.last_end.load(Acquire), &[&c.pending_host]);
    }
    let mut mem = lock(&r.mem);
    let d = locate(r, &mem, dst, n as u64)?;
    let s = locate(r, &mem, src, n as u64)?;
    match (d, s) {
        // SAFETY: both sides are host pointers of the C call (`locate` rejects NULL ones), valid
        // for `n` bytes by the API's contract; `ptr::copy` allows them to overlap.
        (Loc::Host(dp), Loc::Host(sp)) => unsafe { std::ptr::copy(sp, dp, n) },
        // SAFETY: `sp` is a host pointer of the C call (`locate` rejects NULL), valid for `n` bytes
        // by the API's contract; the destination is a shadow `locate` checked to hold `n` bytes.
        (d @ Loc::Shadow { .. }, Loc::Host(sp)) => unsafe {
            mem.write(d, std::slice::from_raw_parts(sp, n))
        },
        (Loc::Host(dp), s @ Loc::Shadow { .. }) => {
            // SAFETY: `dp` is a host pointer of the C call (`locate` rejects NULL), valid for `n`
            // writable bytes by the API's contract and not aliased by our shadows; the source is a
            // checked shadow.
            unsafe { mem.read(s, std::slice::from_raw_parts_mut(dp, n)) }
        }
        (d, s) => {
            let mut tmp = vec![0u8; n];
            // SAFETY: both sides are locations `locate` resolved for `n` bytes; host ones come from
            // the C call, valid by the API's contract (this fn's own contract, passed on).
            unsafe { mem.read(s, &mut tmp) };
            // SAFETY: as above.
            unsafe { mem.write(d, &tmp) };
        }
    }
    Ok(())
}

unsafe fn set(dst: CUdeviceptr, pattern: &[u8], count: usize, stream: Option<CUstream>) -> Res {
    let r = rt()?;
    cur_ctx()?;
    if let Some(s) = stream {
        stream_obj(s)?;
    }
    if count == 0 {
        return Ok(());
    }
    if pattern.len() == 4 && !dst.is_multiple_of(4) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let bytes = count
        .checked_mul(pattern.len())
        .ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let mut mem = lock(&r.mem);
    let loc = mem.resolve(dst, bytes as u64, false, r.shm.devices().len() as u32)?;
    // SAFETY: `loc` was resolved by `locate` for the filled bytes; a host location comes from the C
    // call, valid by the API's contract (this fn's own contract, passed on).
    unsafe { mem.fill(loc, pattern, count) };
    Ok(())
}

pub unsafe fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, byte_count: usize) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe { copy(Side::Any(dst), Side::Any(src), byte_count, true, None) })
}
pub unsafe fn cuMemcpyAsync(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    byte_count: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Any(dst),
            Side::Any(src),
            byte_count,
            false,
            Some(h_stream),
        )
    })
}
pub unsafe fn cuMemcpyHtoD_v2(
    dst_device: CUdeviceptr,
    src_host: *const c_void,
    byte_count: usize,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Dev(dst_device),
            Side::Host(src_host as *mut u8),
            byte_count,
            true,
            None,
        )
    })
}
pub unsafe fn cuMemcpyDtoH_v2(
    dst_host: *mut c_void,
    src_device: CUdeviceptr,
    byte_count: usize,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Host(dst_host as *mut u8),
            Side::Dev(src_device),
            byte_count,
            true,
            None,
        )
    })
}
pub unsafe fn cuMemcpyDtoD_v2(
    dst_device: CUdeviceptr,
    src_device: CUdeviceptr,
    byte_count: usize,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Dev(dst_device),
            Side::Dev(src_device),
            byte_count,
            false,
            None,
        )
    })
}
pub unsafe fn cuMemcpyHtoDAsync_v2(
    dst_device: CUdeviceptr,
    src_host: *const c_void,
    byte_count: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Dev(dst_device),
            Side::Host(src_host as *mut u8),
            byte_count,
            false,
            Some(h_stream),
        )
    })
}
pub unsafe fn cuMemcpyDtoHAsync_v2(
    dst_host: *mut c_void,
    src_device: CUdeviceptr,
    byte_count: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Host(dst_host as *mut u8),
            Side::Dev(src_device),
            byte_count,
            false,
            Some(h_stream),
        )
    })
}
pub unsafe fn cuMemcpyDtoDAsync_v2(
    dst_device: CUdeviceptr,
    src_device: CUdeviceptr,
    byte_count: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `copy` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe {
        copy(
            Side::Dev(dst_device),
            Side::Dev(src_device),
            byte_count,
            false,
            Some(h_stream),
        )
    })
}
pub unsafe fn cuMemsetD8_v2(dst_device: CUdeviceptr, uc: c_uchar, n: usize) -> CUresult {
    // SAFETY: `set` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe { set(dst_device, &[uc], n, None) })
}
pub unsafe fn cuMemsetD32_v2(dst_device: CUdeviceptr, ui: c_uint, n: usize) -> CUresult {
    // SAFETY: `set` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe { set(dst_device, &ui.to_ne_bytes(), n, None) })
}
pub unsafe fn cuMemsetD8Async(
    dst_device: CUdeviceptr,
    uc: c_uchar,
    n: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `set` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe { set(dst_device, &[uc], n, Some(h_stream)) })
}
pub unsafe fn cuMemsetD32Async(
    dst_device: CUdeviceptr,
    ui: c_uint,
    n: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `set` requires only what our own caller guarantees: the pointer arguments are passed
    // on unchanged, valid as the C API specifies.
    code(unsafe { set(dst_device, &ui.to_ne_bytes(), n, Some(h_stream)) })
}

// ---- arrays --------------------------------------------------------------------------------

fn format_bytes(f: CUarray_format) -> Option<u64> {
    match f {
        CU_AD_FORMAT_UNSIGNED_INT8 | CU_AD_FORMAT_SIGNED_INT8 => Some(1),
        CU_AD_FORMAT_UNSIGNED_INT16 | CU_AD_FORMAT_SIGNED_INT16 | CU_AD_FORMAT_HALF => Some(2),
        CU_AD_FORMAT_UNSIGNED_INT32 | CU_AD_FORMAT_SIGNED_INT32 | CU_AD_FORMAT_FLOAT => Some(4),
        _ => None,
    }
}

/// Raw bytes of one array level: width x max(height,1) x max(depth,1) x channels x format size.
fn level_bytes(w: u64, h: u64, d: u64, ch: u64, fb: u64) -> Option<u64> {
    w.checked_mul(h.max(1))?
        .checked_mul(d.max(1))?
        .checked_mul(ch)?
        .checked_mul(fb)
}

/// Validates a descriptor; returns (width, height, depth, channels, format bytes).
fn array_desc(
    w: usize,
    h: usize,
    d: usize,
    f: CUarray_format,
    ch: c_uint,
) -> Res<(u64, u64, u64, u64, u64)> {
    let fb = format_bytes(f).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if w == 0 || !matches!(ch, 1 | 2 | 4) || (d > 0 && h == 0) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok((w as u64, h as u64, d as u64, ch as u64, fb))
}

/// Array footprint rule: the raw size of all levels, rounded up to 2 MiB.
fn create_array(r: &Runtime, raw: u64, mipmap: bool) -> Res<u64> {
    let (_, c, inst) = cur_ctx()?;
    let span = align_up(raw, VMM_GRANULARITY).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    let q = AllocReq {
        slot: r.slot,
        dev: c.dev.load(Relaxed),
        kind: if mipmap { kind::MIPMAP } else { kind::ARRAY },
        bytes: raw,
        span,
        align: VMM_GRANULARITY,
        charged: span,
        ctx: inst,
        aux: 0,
        phys: false,
        fixed: None,
    };
    let base = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
    lock(&r.mem)
        .arrays
        .insert(base, ArrayRec { inst, mipmap, span });
    Ok(base)
}

fn destroy_array(h: u64, mipmap: bool) -> Res {
    let r = rt()?;
    let mut mem = lock(&r.mem);
    match mem.arrays.get(&h) {
        Some(a) if a.mipmap == mipmap => {
            mem.arrays.remove(&h);
            let k = if mipmap { kind::MIPMAP } else { kind::ARRAY };
            r.with_state(|g| g.free(r.slot, h, &[k]))?;
            Ok(())
        }
        _ => Err(CUDA_ERROR_INVALID_HANDLE),
    }
}

unsafe fn array_requirements(
    req: *mut CUDA_ARRAY_MEMORY_REQUIREMENTS,
    h: u64,
    mipmap: bool,
    device: CUdevice,
) -> Res {
    let r = rt()?;
    if req.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    if device < 0 || device as usize >= r.visible.len() {
        return Err(CUDA_ERROR_INVALID_DEVICE);
    }
    let span = match lock(&r.mem).arrays.get(&h) {
        Some(a) if a.mipmap == mipmap => a.span,
        _ => return Err(CUDA_ERROR_INVALID_HANDLE),
    };
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe {
        put(
            req,
            CUDA_ARRAY_MEMORY_REQUIREMENTS {
                size: span as usize,
                alignment: VMM_GRANULARITY as usize,
                reserved: [0; 4],
            },
        )
    }
}

pub unsafe fn cuArrayGetMemoryRequirements(
    memory_requirements: *mut CUDA_ARRAY_MEMORY_REQUIREMENTS,
    array: CUarray,
    device: CUdevice,
) -> CUresult {
    // SAFETY: `array_requirements` requires only what our own caller guarantees: the pointer
    // argument is passed on unchanged, valid as the C API specifies.
    code(unsafe { array_requirements(memory_requirements, array as u64, false, device) })
}

pub unsafe fn cuMipmappedArrayGetMemoryRequirements(
    memory_requirements: *mut CUDA_ARRAY_MEMORY_REQUIREMENTS,
    mipmap: CUmipmappedArray,
    device: CUdevice,
) -> CUresult {
    // SAFETY: `array_requirements` requires only what our own caller guarantees: the pointer
    // argument is passed on unchanged, valid as the C API specifies.
    code(unsafe { array_requirements(memory_requirements, mipmap as u64, true, device) })
}

pub unsafe fn cuArrayCreate_v2(
    p_handle: *mut CUarray,
    p_allocate_array: *const CUDA_ARRAY_DESCRIPTOR,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if p_handle.is_null() || p_allocate_array.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `p_allocate_array` is an input-struct argument, checked non-NULL above; by the C
        // API's contract it points at an initialised struct that outlives this call.
        let d = unsafe { &*p_allocate_array };
        let (w, h, dd, ch, fb) = array_desc(d.Width, d.Height, 0, d.Format, d.NumChannels)?;
        let raw = level_bytes(w, h, dd, ch, fb).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `p_handle` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(p_handle, create_array(r, raw, false)? as CUarray) }
    })())
}

pub unsafe fn cuArray3DCreate_v2(
    p_handle: *mut CUarray,
    p_allocate_array: *const CUDA_ARRAY3D_DESCRIPTOR,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if p_handle.is_null() || p_allocate_array.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `p_allocate_array` is an input-struct argument, checked non-NULL above; by the C
        // API's contract it points at an initialised struct that outlives this call.
        let d = unsafe { &*p_allocate_array };
        let (w, h, dd, ch, fb) = array_desc(d.Width, d.Height, d.Depth, d.Format, d.NumChannels)?;
        let raw = level_bytes(w, h, dd, ch, fb).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `p_handle` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(p_handle, create_array(r, raw, false)? as CUarray) }
    })())
}

pub unsafe fn cuArrayDestroy(h_array: CUarray) -> CUresult {
    code(destroy_array(h_array as u64, false))
}

pub unsafe fn cuMipmappedArrayCreate(
    p_handle: *mut CUmipmappedArray,
    p_desc: *const CUDA_ARRAY3D_DESCRIPTOR,
    num_mipmap_levels: c_uint,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if p_handle.is_null() || p_desc.is_null() || num_mipmap_levels == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `p_desc` is an input-struct argument, checked non-NULL above; by the C API's
        // contract it points at an initialised struct that outlives this call.
        let d = unsafe { &*p_desc };
        let (w, h, dd, ch, fb) = array_desc(d.Width, d.Height, d.Depth, d.Format, d.NumChannels)?;
        let mut raw: u64 = 0;
        for l in 0..num_mipmap_levels.min(64) {
            let lw = (w >> l).max(1);
            let lh = if h == 0 { 0 } else { (h >> l).max(1) };
            let ld = if dd == 0 { 0 } else { (dd >> l).max(1) };
            raw = raw
                .checked_add(level_bytes(lw, lh, ld, ch, fb).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?)
                .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        }
        // SAFETY: `p_handle` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(p_handle, create_array(r, raw, true)? as CUmipmappedArray) }
    })())
}

pub unsafe fn cuMipmappedArrayDestroy(h_mipmapped_array: CUmipmappedArray) -> CUresult {
    code(destroy_array(h_mipmapped_array as u64, true))
}

// ---- pools and stream-ordered allocation -------------------------------------------------

fn new_pool(ordinal: CUdevice, dev: u32, is_default: bool) -> Res<u64> {
    POOLS
        .create(|p| {
            p.ordinal.store(ordinal, Relaxed);
            p.dev.store(dev, Relaxed);
            p.is_default.store(is_default, Relaxed);
            p.used.store(0, Relaxed);
            p.high.store(0, Relaxed);
            p.threshold.store(0, Relaxed);
            for x in &p.reuse {
                x.store(1, Relaxed);
            }
        })
        .ok_or(CUDA_ERROR_OUT_OF_MEMORY)
}

/// (default pool, current pool) of an ordinal, creating the default on first use.
fn pools_of(r: &Runtime, ordinal: CUdevice) -> Res<(u64, u64)> {
    let dev = r.phys(ordinal)?;
    let mut p = lock(&r.pools);
    let e = &mut p[ordinal as usize];
    if e.0 == 0 {
        let h = new_pool(ordinal, dev, true)?;
        *e = (h, h);
    }
    if !POOLS.is_live(e.1) {
        e.1 = e.0;
    }
    Ok(*e)
}

pub unsafe fn cuDeviceGetDefaultMemPool(pool_out: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if pool_out.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pool_out` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pool_out, pools_of(r, dev)?.0 as CUmemoryPool) }
    })())
}

pub unsafe fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if pool.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pool` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pool, pools_of(r, dev)?.1 as CUmemoryPool) }
    })())
}

pub unsafe fn cuDeviceSetMemPool(dev: CUdevice, pool: CUmemoryPool) -> CUresult {
    code((|| {
        let r = rt()?;
        pools_of(r, dev)?;
        let p = POOLS.get(pool as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if p.ordinal.load(Relaxed) != dev {
            return Err(CUDA_ERROR_INVALID_DEVICE);
        }
        lock(&r.pools)[dev as usize].1 = pool as u64;
        Ok(())
    })())
}

pub unsafe fn cuMemPoolCreate(
    pool: *mut CUmemoryPool,
    pool_props: *const CUmemPoolProps,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if pool.is_null() || pool_props.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pool_props` is an input-struct argument, checked non-NULL above; by the C API's
        // contract it points at an initialised struct that outlives this call.
        let p = unsafe { &*pool_props };
        if p.allocType != CU_MEM_ALLOCATION_TYPE_PINNED {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match p.location.type_ {
            CU_MEM_LOCATION_TYPE_DEVICE => {}
            CU_MEM_LOCATION_TYPE_HOST
            | CU_MEM_LOCATION_TYPE_HOST_NUMA
            | CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => return Err(CUDA_ERROR_NOT_SUPPORTED),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        let ordinal = p.location.id;
        let dev = r.phys(ordinal)?;
        let h = new_pool(ordinal, dev, false)?;
        // SAFETY: `pool` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pool, h as CUmemoryPool) }
    })())
}

pub unsafe fn cuMemPoolDestroy(pool: CUmemoryPool) -> CUresult {
    code((|| {
        let r = rt()?;
        let p = POOLS.get(pool as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if p.is_default.load(Relaxed) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // Outstanding allocations stay valid until freed (as the driver documents).
        POOLS.destroy(pool as u64);
        let mut pools = lock(&r.pools);
        for e in pools.iter_mut() {
            if e.1 == pool as u64 {
                e.1 = e.0;
            }
        }
        Ok(())
    })())
}

pub unsafe fn cuMemPoolTrimTo(pool: CUmemoryPool, _min_bytes_to_keep: usize) -> CUresult {
    code((|| {
        rt()?;
        POOLS.get(pool as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        Ok(())
    })())
}

pub unsafe fn cuMemPoolSetAttribute(
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    code((|| {
        rt()?;
        let p = POOLS.get(pool as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if value.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match attr {
            1..=3 => {
                // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
                // a value of the type the attribute names, the type read here.
                p.reuse[attr as usize - 1]
                    .store((unsafe { *(value as *const c_int) } != 0) as u64, Relaxed)
            }
            // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at a
            // value of the type the attribute names, the type read here.
            CU_MEMPOOL_ATTR_RELEASE_THRESHOLD => p
                .threshold
                .store(unsafe { *(value as *const u64) }, Relaxed),
            CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH | CU_MEMPOOL_ATTR_USED_MEM_HIGH => {
                // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
                // a value of the type the attribute names, the type read here.
                if unsafe { *(value as *const u64) } != 0 {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                p.high.store(p.used.load(Relaxed), Relaxed);
            }
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })())
}

pub unsafe fn cuMemPoolGetAttribute(
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    code((|| {
        rt()?;
        let p = POOLS.get(pool as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if value.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match attr {
            // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the attribute names, the type written here.
            1..=3 => unsafe {
                *(value as *mut c_int) = p.reuse[attr as usize - 1].load(Relaxed) as c_int
            },
            // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
            // storage of the type the attribute names, the type written here.
            CU_MEMPOOL_ATTR_RELEASE_THRESHOLD => unsafe {
                *(value as *mut u64) = p.threshold.load(Relaxed)
            },
            CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT | CU_MEMPOOL_ATTR_USED_MEM_CURRENT => {
                // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
                // storage of the type the attribute names, the type written here.
                unsafe { *(value as *mut u64) = p.used.load(Relaxed) }
            }
            CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH | CU_MEMPOOL_ATTR_USED_MEM_HIGH => {
                // SAFETY: `value` is checked non-NULL above and, by the C API's contract, points at
                // storage of the type the attribute names, the type written here.
                unsafe { *(value as *mut u64) = p.high.load(Relaxed) }
            }
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })())
}

unsafe fn pool_alloc(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: u64,
    h_stream: CUstream,
) -> Res {
    let r = rt()?;
    let (h, c, inst) = cur_ctx()?;
    if dptr.is_null() || bytesize == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    stream_obj(h_stream)?;
    let pool = if pool == 0 {
        pools_of(r, c.ordinal.load(Relaxed))?.1
    } else {
        pool
    };
    let p = POOLS.get(pool).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let span = align_up(bytesize as u64, ALLOC_ALIGN).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    let target = Some((p.dev.load(Relaxed), p.ordinal.load(Relaxed)));
    let a = device_alloc(
        r,
        kind::ASYNC,
        bytesize as u64,
        span,
        ALLOC_ALIGN,
        span,
        h,
        c,
        inst,
        pool,
        target,
    )?;
    let used = p.used.fetch_add(span, Relaxed) + span;
    p.high.fetch_max(used, Relaxed);
    // SAFETY: `dptr` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    unsafe { put(dptr, a) }
}

pub unsafe fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    h_stream: CUstream,
) -> CUresult {
    // SAFETY: `pool_alloc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { pool_alloc(dptr, bytesize, 0, h_stream) })
}
pub unsafe fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: CUmemoryPool,
    h_stream: CUstream,
) -> CUresult {
    if pool.is_null() {
        return if rt().is_err() {
            CUDA_ERROR_NOT_INITIALIZED
        } else {
            CUDA_ERROR_INVALID_VALUE
        };
    }
    // SAFETY: `pool_alloc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    code(unsafe { pool_alloc(dptr, bytesize, pool as u64, h_stream) })
}
pub unsafe fn cuMemFreeAsync(dptr: CUdeviceptr, h_stream: CUstream) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        stream_obj(h_stream)?;
        free_local(r, dptr, &[kind::ASYNC, kind::ALLOC, kind::PITCH])
    })())
}

// ---- virtual memory management -----------------------------------------------------------

pub unsafe fn cuMemCreate(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: c_ulonglong,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if handle.is_null() || prop.is_null() || flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let size = size as u64;
        if size == 0 || !size.is_multiple_of(VMM_GRANULARITY) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `prop` is an input-struct argument, checked non-NULL above; by the C API's
        // contract it points at an initialised struct that outlives this call.
        let p = unsafe { *prop };
        if p.type_ != CU_MEM_ALLOCATION_TYPE_PINNED {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (dev, host) = match p.location.type_ {
            CU_MEM_LOCATION_TYPE_DEVICE => (r.phys(p.location.id)?, false),
            CU_MEM_LOCATION_TYPE_HOST
            | CU_MEM_LOCATION_TYPE_HOST_NUMA
            | CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => (r.visible[0], true),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        let q = AllocReq {
            slot: r.slot,
            dev,
            kind: if host { kind::VMM_HOST } else { kind::VMM },
            bytes: size,
            span: size,
            align: VMM_GRANULARITY,
            charged: if host { 0 } else { size },
            ctx: 0,
            aux: 0,
            phys: true,
            fixed: None,
        };
        let h = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
        lock(&r.mem).handles.insert(
            h,
            VmmHandle {
                size,
                dev,
                refs: 1,
                maps: 0,
                prop: p,
            },
        );
        // SAFETY: `handle` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(handle, h) }
    })())
}

fn maybe_free_handle(r: &Runtime, mem: &mut rt::LocalMem, h: u64) {
    if let Some(v) = mem.handles.get(&h) {
        if v.refs == 0 && v.maps == 0 {
            mem.handles.remove(&h);
            mem.shadows.remove(&h);
            let _ = r.with_state(|g| g.free(r.slot, h, &[kind::VMM, kind::VMM_HOST]));
        }
    }
}

pub unsafe fn cuMemRelease(handle: CUmemGenericAllocationHandle) -> CUresult {
    code((|| {
        let r = rt()?;
        let mut mem = lock(&r.mem);
        let v = mem
            .handles
            .get_mut(&handle)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if v.refs == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        v.refs -= 1;
        maybe_free_handle(r, &mut mem, handle);
        Ok(())
    })())
}

pub unsafe fn cuMemAddressReserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    alignment: usize,
    addr: CUdeviceptr,
    _flags: c_ulonglong,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if ptr.is_null() || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let align = if alignment == 0 {
            VMM_GRANULARITY
        } else {
            alignment as u64
        };
        if !align.is_power_of_two() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let align = align.max(VMM_GRANULARITY);
        let size = align_up(size as u64, VMM_GRANULARITY).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let dev = cur_ctx()
            .map(|(_, c, _)| c.dev.load(Relaxed))
            .unwrap_or(r.visible[0]);
        let q = AllocReq {
            slot: r.slot,
            dev,
            kind: kind::RESERVE,
            bytes: size,
            span: size,
            align,
            charged: 0,
            ctx: 0,
            aux: 0,
            phys: false,
            fixed: (addr != 0).then_some(addr),
        };
        let base = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
        lock(&r.mem).reserves.insert(base, Reserve { size });
        // SAFETY: `ptr` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe { put(ptr, base) }
    })())
}

/// Removes the mappings inside `[ptr, ptr + size)`; returns how many.
fn unmap_range(r: &Runtime, mem: &mut rt::LocalMem, ptr: u64, size: u64) -> usize {
    let end = ptr.saturating_add(size);
    let keys: Vec<u64> = mem
        .maps
        .range(..end)
        .filter(|(k, m)| **k + m.size > ptr)
        .map(|(k, _)| *k)
        .collect();
    for k in &keys {
        if let Some(m) = mem.maps.remove(k) {
            if let Some(v) = mem.handles.get_mut(&m.handle) {
                v.maps = v.maps.saturating_sub(1);
            }
            maybe_free_handle(r, mem, m.handle);
        }
    }
    keys.len()
}

pub unsafe fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult {
    code((|| {
        let r = rt()?;
        let mut mem = lock(&r.mem);
        let res = *mem.reserves.get(&ptr).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if align_up(size as u64, VMM_GRANULARITY) != Some(res.size) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        unmap_range(r, &mut mem, ptr, res.size);
        mem.reserves.remove(&ptr);
        r.with_state(|g| g.free(r.slot, ptr, &[kind::RESERVE]))?;
        Ok(())
    })())
}

pub unsafe fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: c_ulonglong,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if flags != 0 || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (size, offset) = (size as u64, offset as u64);
        let end = ptr.checked_add(size).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let mut mem = lock(&r.mem);
        let hsize = mem
            .handles
            .get(&handle)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?
            .size;
        if offset.checked_add(size).is_none_or(|e| e > hsize) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match mem.find_reserve(ptr) {
            Some((k, res)) if end <= k + res.size => {}
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        if let Some((k, m)) = mem.maps.range(..end).next_back() {
            if k + m.size > ptr {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
        }
        mem.maps.insert(
            ptr,
            Mapping {
                size,
                handle,
                offset,
            },
        );
        if let Some(v) = mem.handles.get_mut(&handle) {
            v.maps += 1;
        }
        Ok(())
    })())
}

pub unsafe fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    code((|| {
        let r = rt()?;
        if size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut mem = lock(&r.mem);
        if unmap_range(r, &mut mem, ptr, size as u64) == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(())
    })())
}

pub unsafe fn cuMemSetAccess(
    ptr: CUdeviceptr,
    size: usize,
    desc: *const CUmemAccessDesc,
    count: usize,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if desc.is_null() || count == 0 || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `desc` is checked non-NULL above with `count` > 0; by the C API's contract it is
        // an array of `count` initialised descriptors.
        for d in unsafe { std::slice::from_raw_parts(desc, count) } {
            if d.location.type_ != CU_MEM_LOCATION_TYPE_DEVICE {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            r.phys(d.location.id)?;
            if !matches!(d.flags, 0 | 1 | 3) {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
        }
        let mem = lock(&r.mem);
        let end = ptr.saturating_add(size as u64);
        match mem.maps.range(..end).next_back() {
            Some((k, m)) if k + m.size > ptr => Ok(()),
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })())
}

pub unsafe fn cuMemGetAllocationGranularity(
    granularity: *mut usize,
    prop: *const CUmemAllocationProp,
    _option: CUmemAllocationGranularity_flags,
) -> CUresult {
    code((|| {
        rt()?;
        if granularity.is_null() || prop.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `granularity` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(granularity, VMM_GRANULARITY as usize) }
    })())
}

pub unsafe fn cuMemGetAllocationPropertiesFromHandle(
    prop: *mut CUmemAllocationProp,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if prop.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mem = lock(&r.mem);
        let v = mem.handles.get(&handle).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: `prop` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(prop, v.prop) }
    })())
}

pub unsafe fn cuMemRetainAllocationHandle(
    handle: *mut CUmemGenericAllocationHandle,
    addr: *mut c_void,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if handle.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut mem = lock(&r.mem);
        let (_, m) = mem.find_map(addr as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let v = mem
            .handles
            .get_mut(&m.handle)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        v.refs += 1;
        // SAFETY: `handle` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(handle, m.handle) }
    })())
}
