//! The bodies of every row of `hip_headers::hip_api!` (the exports in `lib.rs` call these
//! inside `catch_unwind`). Pointers from the caller are checked for NULL; handles are
//! validated against process-local tables and never dereferenced.
#![allow(non_snake_case, clippy::too_many_arguments)]

use crate::rt::*;
use hip_headers::prelude::*;
use hip_headers::{hip_error_name, hip_error_string, resolve_proc, ProcLookup};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use vgpu_sim_core::alloc::{kind, ALLOC_ALIGN, VMM_GRANULARITY};
use vgpu_sim_core::amd;
use vgpu_sim_core::clock;
use vgpu_sim_core::state::{AllocReq, MemError, SWEEP_INTERVAL_NS};

/// ROCm 7.0 (HIP `major * 10^7 + minor * 10^5 + patch`).
pub const HIP_VERSION: c_int = 70_051_831;

unsafe fn put<T>(p: *mut T, v: T) -> Res {
    if p.is_null() {
        return Err(hipErrorInvalidValue);
    }
    // SAFETY: non-NULL out-pointer from the caller, who guarantees it is writable.
    unsafe { p.write(v) };
    Ok(())
}

fn mem_err(e: MemError) -> hipError_t {
    match e {
        MemError::OutOfMemory | MemError::NoSpace => hipErrorOutOfMemory,
        MemError::BadDevice => hipErrorInvalidDevice,
    }
}

fn align_up(v: u64, a: u64) -> Res<u64> {
    vgpu_sim_core::alloc::align_up(v, a).ok_or(hipErrorOutOfMemory)
}

unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: a non-NULL C string from the caller.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok()
}

unsafe fn copy_name(dst: *mut c_char, len: c_int, s: &str) -> Res {
    if dst.is_null() || len <= 0 {
        return Err(hipErrorInvalidValue);
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: the caller gave `len` writable bytes at `dst`.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), dst as *mut u8, n);
        *dst.add(n) = 0;
    }
    Ok(())
}

fn fill_chars(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.bytes().take(n)) {
        *d = b as c_char;
    }
    dst[n..].fill(0);
}

// ---- initialisation, versions, errors, entry points ---------------------------------------

pub unsafe fn hipInit(flags: c_uint) -> hipError_t {
    if flags != 0 {
        return hipErrorInvalidValue;
    }
    code(rt().map(|_| ()))
}

pub unsafe fn hipDriverGetVersion(v: *mut c_int) -> hipError_t {
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    code(unsafe { put(v, HIP_VERSION) })
}

pub unsafe fn hipRuntimeGetVersion(v: *mut c_int) -> hipError_t {
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    code(unsafe { put(v, HIP_VERSION) })
}

pub unsafe fn hipGetErrorName(e: hipError_t) -> *const c_char {
    hip_error_name(e).as_ptr() as *const c_char
}

pub unsafe fn hipGetErrorString(e: hipError_t) -> *const c_char {
    hip_error_string(e).as_ptr() as *const c_char
}

fn known_error(e: hipError_t) -> bool {
    hip_headers::errors::HIP_ERRORS.iter().any(|r| r.0 == e)
}

pub unsafe fn hipDrvGetErrorName(e: hipError_t, p: *mut *const c_char) -> hipError_t {
    if !known_error(e) {
        return hipErrorInvalidValue;
    }
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    code(unsafe { put(p, hipGetErrorName(e)) })
}

pub unsafe fn hipDrvGetErrorString(e: hipError_t, p: *mut *const c_char) -> hipError_t {
    if !known_error(e) {
        return hipErrorInvalidValue;
    }
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    code(unsafe { put(p, hipGetErrorString(e)) })
}

pub unsafe fn hipGetLastError() -> hipError_t {
    last_error(true)
}

pub unsafe fn hipPeekAtLastError() -> hipError_t {
    last_error(false)
}

pub unsafe fn hipExtGetLastError() -> hipError_t {
    last_error(true)
}

pub unsafe fn hipGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    hip_version: c_int,
    flags: u64,
    status: *mut hipDriverProcAddressQueryResult,
) -> hipError_t {
    let set_status = |s: c_int| {
        if !status.is_null() {
            // SAFETY: optional out-pointer from the caller.
            unsafe { status.write(s) };
        }
    };
    // SAFETY: a C string argument of the API (NULL-checked).
    let Some(name) = (unsafe { cstr(symbol) }) else {
        return hipErrorInvalidValue;
    };
    if pfn.is_null() || name.is_empty() {
        return hipErrorInvalidValue;
    }
    // SAFETY: checked non-NULL above.
    unsafe { pfn.write(std::ptr::null_mut()) };
    match resolve_proc(name, hip_version, flags) {
        ProcLookup::Found(i) => {
            // SAFETY: as above.
            unsafe { pfn.write(crate::proc_ptr(i)) };
            set_status(HIP_GET_PROC_ADDRESS_SUCCESS);
            hipSuccess
        }
        ProcLookup::NotFound => {
            set_status(HIP_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
            hipErrorInvalidValue
        }
        ProcLookup::VersionNotSufficient => {
            set_status(HIP_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
            hipErrorInvalidValue
        }
        ProcLookup::BadFlags => hipErrorInvalidValue,
    }
}

/// `hipGetDriverEntryPoint`: `hipGetProcAddress` at the runtime's own version (every row),
/// with the same flags and statuses.
unsafe fn driver_entry_point(
    symbol: *const c_char,
    func_ptr: *mut *mut c_void,
    flags: c_ulonglong,
    status: *mut hipDriverEntryPointQueryResult,
) -> hipError_t {
    let newest = hip_headers::NODES
        .iter()
        .map(|n| hip_headers::node_version(n))
        .max()
        .unwrap_or(0);
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipGetProcAddress(symbol, func_ptr, newest, flags, status) }
}

pub unsafe fn hipGetDriverEntryPoint(
    symbol: *const c_char,
    func_ptr: *mut *mut c_void,
    flags: c_ulonglong,
    status: *mut hipDriverEntryPointQueryResult,
) -> hipError_t {
    // SAFETY: the caller's arguments and contract, passed on.
    unsafe { driver_entry_point(symbol, func_ptr, flags, status) }
}

/// The per-thread-stream twin: the default flags mean the per-thread default stream.
pub unsafe fn hipGetDriverEntryPoint_spt(
    symbol: *const c_char,
    func_ptr: *mut *mut c_void,
    flags: c_ulonglong,
    status: *mut hipDriverEntryPointQueryResult,
) -> hipError_t {
    let flags = if flags == HIP_GET_PROC_ADDRESS_DEFAULT {
        HIP_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
    } else {
        flags
    };
    // SAFETY: the caller's arguments and contract, passed on.
    unsafe { driver_entry_point(symbol, func_ptr, flags, status) }
}

// ---- devices ------------------------------------------------------------------------------

pub unsafe fn hipGetDeviceCount(count: *mut c_int) -> hipError_t {
    if count.is_null() {
        return hipErrorInvalidValue;
    }
    match rt() {
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        Ok(r) => code(unsafe { put(count, r.devs.len() as c_int) }),
        Err(e) => {
            // SAFETY: checked non-NULL.
            unsafe { count.write(0) };
            if e == hipErrorNotInitialized {
                e
            } else {
                hipErrorNoDevice
            }
        }
    }
}

pub unsafe fn hipGetDevice(device: *mut c_int) -> hipError_t {
    code((|| {
        rt()?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(device, current_device()) }
    })())
}

pub unsafe fn hipSetDevice(device: c_int) -> hipError_t {
    code((|| {
        rt()?.dev(device)?;
        set_current_device(device);
        Ok(())
    })())
}

// ---- contexts (deprecated): a per-thread stack of devices' primary contexts ------------

pub unsafe fn hipCtxCreate(ctx: *mut hipCtx_t, _flags: c_uint, device: hipDevice_t) -> hipError_t {
    code((|| {
        rt()?.dev(device)?;
        // SAFETY: out-pointer argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(ctx, ctx_of(device)) }?;
        with_ctx_stack(|s| s.push(device));
        Ok(())
    })())
}

/// A context on top of the stack is popped (the thread moves to the one below).
pub unsafe fn hipCtxDestroy(ctx: hipCtx_t) -> hipError_t {
    code((|| {
        let d = ctx_device(ctx).ok_or(hipErrorInvalidContext)?;
        rt()?.dev(d)?;
        with_ctx_stack(|s| {
            if s.last() == Some(&d) {
                s.pop();
            }
        });
        Ok(())
    })())
}

/// Replaces the top of the stack (NULL: pops it).
pub unsafe fn hipCtxSetCurrent(ctx: hipCtx_t) -> hipError_t {
    code((|| {
        if ctx.is_null() {
            with_ctx_stack(|s| s.pop());
            return Ok(());
        }
        let d = ctx_device(ctx).ok_or(hipErrorInvalidContext)?;
        rt()?.dev(d)?;
        with_ctx_stack(|s| {
            s.pop();
            s.push(d);
        });
        Ok(())
    })())
}

pub unsafe fn hipCtxPushCurrent(ctx: hipCtx_t) -> hipError_t {
    code((|| {
        let d = ctx_device(ctx).ok_or(hipErrorInvalidContext)?;
        rt()?.dev(d)?;
        with_ctx_stack(|s| s.push(d));
        Ok(())
    })())
}

pub unsafe fn hipCtxPopCurrent(ctx: *mut hipCtx_t) -> hipError_t {
    code((|| {
        let d = with_ctx_stack(|s| s.pop()).ok_or(hipErrorInvalidContext)?;
        if !ctx.is_null() {
            // SAFETY: non-NULL out-pointer, its validity is the caller's contract.
            unsafe { ctx.write(ctx_of(d)) };
        }
        Ok(())
    })())
}

/// The top of the stack, else the current device's primary context.
pub unsafe fn hipCtxGetCurrent(ctx: *mut hipCtx_t) -> hipError_t {
    code((|| {
        rt()?;
        let d = with_ctx_stack(|s| s.last().copied()).unwrap_or_else(current_device);
        // SAFETY: out-pointer argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(ctx, ctx_of(d)) }
    })())
}

pub unsafe fn hipDeviceGet(device: *mut hipDevice_t, ordinal: c_int) -> hipError_t {
    code((|| {
        rt()?.dev(ordinal)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(device, ordinal) }
    })())
}

pub unsafe fn hipDeviceGetName(name: *mut c_char, len: c_int, device: hipDevice_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let info = r.info(device)?;
        // SAFETY: a name buffer argument of the API: `len` writable bytes are the caller's contract.
        unsafe { copy_name(name, len, &info.name) }
    })())
}

pub unsafe fn hipDeviceGetUuid(uuid: *mut hipUUID, device: hipDevice_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let b = amd::hip_uuid_bytes(&r.info(device)?.uuid);
        let mut u = hipUUID::default();
        for (d, s) in u.bytes.iter_mut().zip(b) {
            *d = s as c_char;
        }
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(uuid, u) }
    })())
}

pub unsafe fn hipDeviceGetPCIBusId(bus_id: *mut c_char, len: c_int, device: c_int) -> hipError_t {
    code((|| {
        let r = rt()?;
        let id = format!("{:04x}:{:02x}:00.0", 0, r.info(device)?.pci_bus);
        // SAFETY: a name buffer argument of the API: `len` writable bytes are the caller's contract.
        unsafe { copy_name(bus_id, len, &id) }
    })())
}

fn attribute(r: &Runtime, a: hipDeviceAttribute_t, device: c_int) -> Res<c_int> {
    use hip_headers::types::attr::*;
    let i = r.info(device)?;
    let x = r.amd(device)?;
    let clamp = |v: u64| v.min(i32::MAX as u64) as c_int;
    Ok(match a {
        ECC_ENABLED => 1,
        CAN_MAP_HOST_MEMORY | CONCURRENT_KERNELS | COOPERATIVE_LAUNCH | MANAGED_MEMORY => 1,
        UNIFIED_ADDRESSING | MEMORY_POOLS_SUPPORTED | VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED => 1,
        IS_LARGE_BAR => 1,
        CLOCK_RATE => i.clock_khz as c_int,
        COMPUTE_MODE | INTEGRATED => 0,
        L2_CACHE_SIZE => i.l2_bytes as c_int,
        COMPUTE_CAPABILITY_MAJOR => i.cc_major as c_int,
        COMPUTE_CAPABILITY_MINOR => i.cc_minor as c_int,
        MAX_BLOCK_DIM_X | MAX_BLOCK_DIM_Y | MAX_BLOCK_DIM_Z | MAX_THREADS_PER_BLOCK => 1024,
        MAX_GRID_DIM_X | MAX_GRID_DIM_Y | MAX_GRID_DIM_Z => i32::MAX,
        MAX_THREADS_PER_MULTIPROCESSOR => i.threads_per_sm as c_int,
        MEMORY_BUS_WIDTH => i.bus_width as c_int,
        MEMORY_CLOCK_RATE => i.mem_clock_khz as c_int,
        MULTIPROCESSOR_COUNT | PHYSICAL_MULTIPROCESSOR_COUNT => i.sms as c_int,
        PCI_BUS_ID => i.pci_bus as c_int,
        PCI_DEVICE_ID | PCI_DOMAIN_ID => 0,
        MAX_REGISTERS_PER_BLOCK => 65536,
        MAX_SHARED_MEMORY_PER_BLOCK | MAX_SHARED_MEMORY_PER_MULTIPROCESSOR => {
            i.smem_per_sm as c_int
        }
        TOTAL_GLOBAL_MEM => clamp(i.total_mem),
        WARP_SIZE => x.wavefront as c_int,
        _ => return Err(hipErrorInvalidValue),
    })
}

pub unsafe fn hipDeviceGetAttribute(
    pi: *mut c_int,
    a: hipDeviceAttribute_t,
    device: c_int,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        let v = attribute(r, a, device)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(pi, v) }
    })())
}

pub unsafe fn hipDeviceComputeCapability(
    major: *mut c_int,
    minor: *mut c_int,
    device: hipDevice_t,
) -> hipError_t {
    code((|| {
        let i = rt()?.info(device)?;
        if major.is_null() || minor.is_null() {
            return Err(hipErrorInvalidValue);
        }
        // SAFETY: out-pointer arguments of the C API: NULL-checked by `put`, their validity is the caller's contract.
        unsafe {
            put(major, i.cc_major as c_int)?;
            put(minor, i.cc_minor as c_int)
        }
    })())
}

pub unsafe fn hipDeviceTotalMem(bytes: *mut usize, device: hipDevice_t) -> hipError_t {
    code((|| {
        let i = rt()?.info(device)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(bytes, i.total_mem as usize) }
    })())
}

/// The R0600 properties of an ordinal (the R0000 ones are copied from these).
fn props_r0600(r: &Runtime, device: c_int) -> Res<hipDeviceProp_tR0600> {
    let i = r.info(device)?;
    let x = r.amd(device)?;
    // SAFETY: an all-zero bit pattern is valid for this plain C struct (ints, arrays, NULL
    // pointers).
    let mut p: hipDeviceProp_tR0600 = unsafe { std::mem::zeroed() };
    fill_chars(&mut p.name, &i.name);
    for (d, s) in p.uuid.bytes.iter_mut().zip(amd::hip_uuid_bytes(&i.uuid)) {
        *d = s as c_char;
    }
    p.totalGlobalMem = i.total_mem as usize;
    p.sharedMemPerBlock = i.smem_per_sm as usize;
    p.regsPerBlock = 65536;
    p.warpSize = x.wavefront as c_int;
    p.memPitch = i32::MAX as usize;
    p.maxThreadsPerBlock = 1024;
    p.maxThreadsDim = [1024, 1024, 1024];
    p.maxGridSize = [i32::MAX, i32::MAX, i32::MAX];
    p.clockRate = i.clock_khz as c_int;
    p.totalConstMem = i.total_mem.min(i32::MAX as u64) as usize;
    p.major = i.cc_major as c_int;
    p.minor = i.cc_minor as c_int;
    p.textureAlignment = 256;
    p.texturePitchAlignment = 256;
    p.deviceOverlap = 1;
    p.multiProcessorCount = i.sms as c_int;
    p.canMapHostMemory = 1;
    p.maxTexture1D = 65536;
    p.maxTexture1DLinear = i32::MAX;
    p.maxTexture2D = [16384, 16384];
    p.maxTexture3D = [16384, 16384, 8192];
    p.concurrentKernels = 1;
    p.ECCEnabled = 1;
    p.pciBusID = i.pci_bus as c_int;
    p.asyncEngineCount = 2;
    p.unifiedAddressing = 1;
    p.memoryClockRate = i.mem_clock_khz as c_int;
    p.memoryBusWidth = i.bus_width as c_int;
    p.l2CacheSize = i.l2_bytes as c_int;
    p.maxThreadsPerMultiProcessor = i.threads_per_sm as c_int;
    p.sharedMemPerMultiprocessor = i.smem_per_sm as usize;
    p.regsPerMultiprocessor = 65536;
    p.managedMemory = 1;
    p.isMultiGpuBoard = 1;
    p.concurrentManagedAccess = 1;
    p.cooperativeLaunch = 1;
    p.cooperativeMultiDeviceLaunch = 1;
    p.sharedMemPerBlockOptin = i.smem_optin as usize;
    p.maxBlocksPerMultiProcessor = 2;
    p.hostRegisterSupported = 1;
    p.memoryPoolsSupported = 1;
    fill_chars(&mut p.gcnArchName, x.gcn_arch_name);
    p.maxSharedMemoryPerMultiProcessor = i.smem_per_sm as usize;
    p.clockInstructionRate = 100_000;
    p.cooperativeMultiDeviceUnmatchedFunc = 1;
    p.cooperativeMultiDeviceUnmatchedGridDim = 1;
    p.cooperativeMultiDeviceUnmatchedBlockDim = 1;
    p.cooperativeMultiDeviceUnmatchedSharedMem = 1;
    p.isLargeBar = 1;
    p.asicRevision = 1;
    Ok(p)
}

fn props_r0000(r: &Runtime, device: c_int) -> Res<hipDeviceProp_tR0000> {
    let n = props_r0600(r, device)?;
    let x = r.amd(device)?;
    // SAFETY: as in `props_r0600`.
    let mut p: hipDeviceProp_tR0000 = unsafe { std::mem::zeroed() };
    p.name = n.name;
    p.totalGlobalMem = n.totalGlobalMem;
    p.sharedMemPerBlock = n.sharedMemPerBlock;
    p.regsPerBlock = n.regsPerBlock;
    p.warpSize = n.warpSize;
    p.maxThreadsPerBlock = n.maxThreadsPerBlock;
    p.maxThreadsDim = n.maxThreadsDim;
    p.maxGridSize = n.maxGridSize;
    p.clockRate = n.clockRate;
    p.memoryClockRate = n.memoryClockRate;
    p.memoryBusWidth = n.memoryBusWidth;
    p.totalConstMem = n.totalConstMem;
    p.major = n.major;
    p.minor = n.minor;
    p.multiProcessorCount = n.multiProcessorCount;
    p.l2CacheSize = n.l2CacheSize;
    p.maxThreadsPerMultiProcessor = n.maxThreadsPerMultiProcessor;
    p.clockInstructionRate = n.clockInstructionRate;
    p.concurrentKernels = n.concurrentKernels;
    p.pciBusID = n.pciBusID;
    p.maxSharedMemoryPerMultiProcessor = n.maxSharedMemoryPerMultiProcessor;
    p.isMultiGpuBoard = n.isMultiGpuBoard;
    p.canMapHostMemory = n.canMapHostMemory;
    p.gcnArch = x.gcn_arch;
    p.gcnArchName = n.gcnArchName;
    p.cooperativeLaunch = n.cooperativeLaunch;
    p.cooperativeMultiDeviceLaunch = n.cooperativeMultiDeviceLaunch;
    p.maxTexture1DLinear = n.maxTexture1DLinear;
    p.maxTexture1D = n.maxTexture1D;
    p.maxTexture2D = n.maxTexture2D;
    p.maxTexture3D = n.maxTexture3D;
    p.memPitch = n.memPitch;
    p.textureAlignment = n.textureAlignment;
    p.texturePitchAlignment = n.texturePitchAlignment;
    p.ECCEnabled = n.ECCEnabled;
    p.cooperativeMultiDeviceUnmatchedFunc = 1;
    p.cooperativeMultiDeviceUnmatchedGridDim = 1;
    p.cooperativeMultiDeviceUnmatchedBlockDim = 1;
    p.cooperativeMultiDeviceUnmatchedSharedMem = 1;
    p.isLargeBar = n.isLargeBar;
    p.asicRevision = n.asicRevision;
    p.managedMemory = n.managedMemory;
    p.concurrentManagedAccess = n.concurrentManagedAccess;
    Ok(p)
}

pub unsafe fn hipGetDeviceProperties(prop: *mut hipDeviceProp_tR0000, device: c_int) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipGetDevicePropertiesR0000(prop, device) }
}

pub unsafe fn hipGetDevicePropertiesR0000(
    prop: *mut hipDeviceProp_tR0000,
    device: c_int,
) -> hipError_t {
    code((|| {
        let p = props_r0000(rt()?, device)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(prop, p) }
    })())
}

pub unsafe fn hipGetDevicePropertiesR0600(
    prop: *mut hipDeviceProp_tR0600,
    device: c_int,
) -> hipError_t {
    code((|| {
        let p = props_r0600(rt()?, device)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(prop, p) }
    })())
}

pub unsafe fn hipDeviceSynchronize() -> hipError_t {
    code((|| {
        let r = rt()?;
        clock::sleep_until(r.dev(current_device())?.last_end.load(Acquire));
        Ok(())
    })())
}

/// Frees everything the process holds on the current device and ends its context there.
pub unsafe fn hipDeviceReset() -> hipError_t {
    code((|| {
        let r = rt()?;
        let ord = current_device();
        let d = r.dev(ord)?;
        clock::sleep_until(d.last_end.load(Acquire));
        let inst = d.inst.swap(0, AcqRel);
        if inst == 0 {
            return Ok(());
        }
        let modules = d.modules.swap(0, Relaxed);
        let module_bytes = d.module_bytes.swap(0, Relaxed);
        r.with_state(|g| {
            g.free_ctx(r.slot, inst);
            let _ = g.charge(
                r.slot,
                d.phys,
                -(r.costs.context_bytes as i64),
                -(module_bytes as i64),
                -1,
                -(modules as i32),
            );
        })?;
        let mut m = lock(&r.mem);
        let gone: Vec<u64> = m
            .allocs
            .iter()
            .filter(|(_, a)| a.ordinal == ord as u32)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(a) = m.allocs.remove(&k) {
                m.shadows.remove(&a.shm_base);
                if let Some((h, len)) = a.host {
                    // SAFETY: our own mapping of managed memory.
                    unsafe { libc::munmap(h as *mut c_void, len) };
                }
            }
        }
        drop(m);
        for f in crate::rt::fatbins_mut().iter() {
            f.loaded.fetch_and(!(1u32 << ord), Relaxed);
        }
        Ok(())
    })())
}

use std::sync::atomic::Ordering::AcqRel;

pub unsafe fn hipGetDeviceFlags(flags: *mut c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        let f = r.dev(current_device())?.flags.load(Relaxed);
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(flags, f) }
    })())
}

pub unsafe fn hipSetDeviceFlags(flags: c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        if flags & !0x1F != 0 {
            return Err(hipErrorInvalidValue);
        }
        r.dev(current_device())?.flags.store(flags, Relaxed);
        Ok(())
    })())
}

// ---- device memory --------------------------------------------------------------------------

/// Allocates `span` bytes of kind `k` on ordinal `ord`, records it locally, returns the base.
fn dev_alloc(
    r: &Runtime,
    ord: c_int,
    k: u8,
    bytes: u64,
    span: u64,
    align: u64,
    pool: u64,
) -> Res<u64> {
    let inst = r.activate(ord)?;
    let d = r.dev(ord)?;
    let q = AllocReq {
        slot: r.slot,
        dev: d.phys,
        kind: k,
        bytes,
        span,
        align,
        charged: span,
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
            ordinal: ord as u32,
            kind: k,
            host: None,
            graph: 0,
        },
    );
    Ok(base)
}

/// Frees a local allocation of one of `kinds`; `None` when `ptr` is not one.
fn dev_free(r: &Runtime, ptr: u64, kinds: &[u8]) -> Res {
    let ordinal = match lock(&r.mem).allocs.get(&ptr) {
        Some(a) if kinds.contains(&a.kind) => a.ordinal,
        _ => return Err(hipErrorInvalidValue),
    };
    // Freeing waits for the device's work, as hipFree does (without holding the local lock).
    if let Ok(d) = r.dev(ordinal as c_int) {
        clock::sleep_until(d.last_end.load(Acquire));
    }
    let mut m = lock(&r.mem);
    // Another thread may have freed it meanwhile.
    let a = match m.allocs.get(&ptr) {
        Some(a) if kinds.contains(&a.kind) => *a,
        _ => return Err(hipErrorInvalidValue),
    };
    m.allocs.remove(&ptr);
    m.shadows.remove(&a.shm_base);
    drop(m);
    r.with_state(|g| g.free(r.slot, a.shm_base, &[a.kind]))?;
    if let Some((h, len)) = a.host {
        // SAFETY: our own mapping of managed memory, no longer reachable from the tables.
        unsafe { libc::munmap(h as *mut c_void, len) };
    }
    Ok(())
}

fn plain_alloc(ptr: *mut *mut c_void, size: usize, k: u8) -> Res {
    let r = rt()?;
    if ptr.is_null() {
        return Err(hipErrorInvalidValue);
    }
    if size == 0 {
        // SAFETY: checked non-NULL.
        unsafe { ptr.write(std::ptr::null_mut()) };
        return Ok(());
    }
    let span = align_up(size as u64, ALLOC_ALIGN)?;
    let base = dev_alloc(r, current_device(), k, size as u64, span, ALLOC_ALIGN, 0)?;
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(ptr, base as *mut c_void) }
}

pub unsafe fn hipMalloc(ptr: *mut *mut c_void, size: usize) -> hipError_t {
    code(plain_alloc(ptr, size, kind::ALLOC))
}

pub unsafe fn hipExtMallocWithFlags(
    ptr: *mut *mut c_void,
    size: usize,
    flags: c_uint,
) -> hipError_t {
    // Default, fine-grained, signal, uncached, contiguous: all device memory.
    if flags > 4 {
        return hipErrorInvalidValue;
    }
    code(plain_alloc(ptr, size, kind::ALLOC))
}

unsafe fn anon_map(len: usize) -> Res<*mut u8> {
    // SAFETY: an anonymous private mapping; no existing memory is touched.
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
        return Err(hipErrorOutOfMemory);
    }
    Ok(p as *mut u8)
}

/// Managed memory: host memory the program can touch, charged to the device.
pub unsafe fn hipMallocManaged(ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        if ptr.is_null() || size == 0 || !(flags == 1 || flags == 2) {
            return Err(hipErrorInvalidValue);
        }
        let ord = current_device();
        let inst = r.activate(ord)?;
        let d = r.dev(ord)?;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let host = unsafe { anon_map(size)? };
        let span = align_up(size as u64, ALLOC_ALIGN)?;
        let q = AllocReq {
            slot: r.slot,
            dev: d.phys,
            kind: kind::MANAGED,
            bytes: size as u64,
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
                // SAFETY: the mapping made above.
                unsafe { libc::munmap(host as *mut c_void, size) };
                return Err(mem_err(e));
            }
        };
        lock(&r.mem).allocs.insert(
            host as u64,
            LocalAlloc {
                shm_base: base,
                bytes: size as u64,
                span,
                ordinal: ord as u32,
                kind: kind::MANAGED,
                host: Some((host as usize, size)),
                graph: 0,
            },
        );
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(ptr, host as *mut c_void) }
    })())
}

/// Pitched allocation: the pitch is the row width rounded up to 512 bytes.
fn pitched(width: usize, height: usize, depth: usize) -> Res<(u64, u64)> {
    let pitch = align_up(width.max(1) as u64, ALLOC_ALIGN)?;
    let bytes = pitch
        .checked_mul(height.max(1) as u64)
        .and_then(|v| v.checked_mul(depth.max(1) as u64))
        .ok_or(hipErrorOutOfMemory)?;
    Ok((pitch, bytes))
}

pub unsafe fn hipMallocPitch(
    ptr: *mut *mut c_void,
    pitch: *mut usize,
    width: usize,
    height: usize,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if ptr.is_null() || pitch.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let (p, bytes) = pitched(width, height, 1)?;
        let base = dev_alloc(
            r,
            current_device(),
            kind::PITCH,
            bytes,
            bytes,
            ALLOC_ALIGN,
            0,
        )?;
        // SAFETY: out-pointer arguments of the C API: NULL-checked by `put`, their validity is the caller's contract.
        unsafe {
            put(pitch, p as usize)?;
            put(ptr, base as *mut c_void)
        }
    })())
}

pub unsafe fn hipMemAllocPitch(
    dptr: *mut hipDeviceptr_t,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: c_uint,
) -> hipError_t {
    if !matches!(elem, 4 | 8 | 16) {
        return hipErrorInvalidValue;
    }
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipMallocPitch(dptr, pitch, width, height) }
}

pub unsafe fn hipMalloc3D(pitched_ptr: *mut hipPitchedPtr, extent: hipExtent) -> hipError_t {
    code((|| {
        let r = rt()?;
        if pitched_ptr.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let (p, bytes) = pitched(extent.width, extent.height, extent.depth)?;
        let base = dev_alloc(
            r,
            current_device(),
            kind::PITCH,
            bytes,
            bytes,
            ALLOC_ALIGN,
            0,
        )?;
        // SAFETY: out-pointer arguments of the C API: NULL-checked by `put`, their validity is the caller's contract.
        unsafe {
            put(
                pitched_ptr,
                hipPitchedPtr {
                    ptr: base as *mut c_void,
                    pitch: p as usize,
                    xsize: extent.width,
                    ysize: extent.height,
                },
            )
        }
    })())
}

/// Bytes of one element of a channel descriptor (each channel 0, 8, 16 or 32 bits, the
/// first one set).
fn channel_bytes(desc: &hipChannelFormatDesc) -> Res<u64> {
    let bits = [desc.x, desc.y, desc.z, desc.w];
    if bits
        .iter()
        .any(|&b| !(b == 0 || b == 8 || b == 16 || b == 32))
        || bits[0] == 0
    {
        return Err(hipErrorInvalidValue);
    }
    Ok(bits.iter().map(|&b| b as u64 / 8).sum())
}

/// Bytes of one element of a driver-style descriptor (a known format, 1, 2 or 4 channels).
fn format_bytes(format: hipArray_Format, channels: c_uint) -> Res<u64> {
    let fb = hip_headers::types::array_format_bytes(format).ok_or(hipErrorInvalidValue)?;
    if !matches!(channels, 1 | 2 | 4) {
        return Err(hipErrorInvalidValue);
    }
    Ok(fb * channels as u64)
}

/// One level: width x max(height, 1) x max(depth, 1) elements; a depth needs a height.
fn level_bytes(elem: u64, w: usize, h: usize, d: usize) -> Res<u64> {
    if w == 0 || (d > 0 && h == 0) {
        return Err(hipErrorInvalidValue);
    }
    (w as u64)
        .checked_mul(h.max(1) as u64)
        .and_then(|v| v.checked_mul(d.max(1) as u64))
        .and_then(|v| v.checked_mul(elem))
        .ok_or(hipErrorOutOfMemory)
}

/// Every level of a mipmapped array: each dimension halves per level (at least 1 where it
/// exists), except a layered or cubemap array's depth, which counts layers.
fn mipmap_bytes(elem: u64, e: hipExtent, levels: c_uint, flags: c_uint) -> Res<u64> {
    if levels == 0 {
        return Err(hipErrorInvalidValue);
    }
    let layered = flags & (HIP_ARRAY_LAYERED | HIP_ARRAY_CUBEMAP) != 0;
    let halve = |v: usize, l: u32| if v == 0 { 0 } else { (v >> l).max(1) };
    let mut sum: u64 = 0;
    for l in 0..levels.min(64) {
        let d = if layered { e.depth } else { halve(e.depth, l) };
        let b = level_bytes(elem, (e.width >> l).max(1), halve(e.height, l), d)?;
        sum = sum.checked_add(b).ok_or(hipErrorOutOfMemory)?;
    }
    Ok(sum)
}

/// An array (or mipmapped array) of `raw` bytes on the current device: the card takes it
/// rounded up to 2 MiB (the footprint rule of the simulated GPU's arrays). The handle is the
/// allocation's base, opaque to the caller.
fn create_array(raw: u64, mipmap: bool) -> Res<u64> {
    let r = rt()?;
    let span = align_up(raw.max(1), VMM_GRANULARITY)?;
    let k = if mipmap { kind::MIPMAP } else { kind::ARRAY };
    let base = dev_alloc(r, current_device(), k, span, span, VMM_GRANULARITY, 0)?;
    let mut m = lock(&r.mem);
    if mipmap {
        m.mipmaps.insert(base, base);
    } else {
        m.arrays.insert(base, base);
    }
    Ok(base)
}

fn destroy_array(h: u64, mipmap: bool) -> Res {
    let r = rt()?;
    let known = {
        let mut m = lock(&r.mem);
        let table = if mipmap {
            &mut m.mipmaps
        } else {
            &mut m.arrays
        };
        table.remove(&h).is_some()
    };
    if !known {
        return Err(hipErrorInvalidValue);
    }
    dev_free(r, h, &[if mipmap { kind::MIPMAP } else { kind::ARRAY }])
}

/// `*out = create_array(...)` for the array entry points.
unsafe fn put_array(out: *mut *mut c_void, raw: Res<u64>, mipmap: bool) -> hipError_t {
    code((|| {
        rt()?;
        if out.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let base = create_array(raw?, mipmap)?;
        // SAFETY: out-pointer argument of the C API, checked non-NULL; its validity is the
        // caller's contract.
        unsafe { put(out, base as *mut c_void) }
    })())
}

/// # Safety
/// `desc` is null or a valid descriptor (the caller's).
unsafe fn desc_ref<'a, T>(desc: *const T) -> Res<&'a T> {
    // SAFETY: the caller's promise; null is refused.
    unsafe { desc.as_ref() }.ok_or(hipErrorInvalidValue)
}

pub unsafe fn hipMallocArray(
    array: *mut hipArray_t,
    desc: *const hipChannelFormatDesc,
    width: usize,
    height: usize,
    _flags: c_uint,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw =
        unsafe { desc_ref(desc) }.and_then(|d| level_bytes(channel_bytes(d)?, width, height, 0));
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, false) }
}

pub unsafe fn hipMalloc3DArray(
    array: *mut hipArray_t,
    desc: *const hipChannelFormatDesc,
    extent: hipExtent,
    _flags: c_uint,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw = unsafe { desc_ref(desc) }
        .and_then(|d| level_bytes(channel_bytes(d)?, extent.width, extent.height, extent.depth));
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, false) }
}

pub unsafe fn hipArrayCreate(
    array: *mut hipArray_t,
    desc: *const HIP_ARRAY_DESCRIPTOR,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw = unsafe { desc_ref(desc) }
        .and_then(|d| level_bytes(format_bytes(d.Format, d.NumChannels)?, d.Width, d.Height, 0));
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, false) }
}

pub unsafe fn hipArray3DCreate(
    array: *mut hipArray_t,
    desc: *const HIP_ARRAY3D_DESCRIPTOR,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw = unsafe { desc_ref(desc) }.and_then(|d| {
        level_bytes(
            format_bytes(d.Format, d.NumChannels)?,
            d.Width,
            d.Height,
            d.Depth,
        )
    });
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, false) }
}

pub unsafe fn hipMallocMipmappedArray(
    array: *mut hipMipmappedArray_t,
    desc: *const hipChannelFormatDesc,
    extent: hipExtent,
    num_levels: c_uint,
    flags: c_uint,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw = unsafe { desc_ref(desc) }
        .and_then(|d| mipmap_bytes(channel_bytes(d)?, extent, num_levels, flags));
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, true) }
}

pub unsafe fn hipMipmappedArrayCreate(
    array: *mut hipMipmappedArray_t,
    desc: *mut HIP_ARRAY3D_DESCRIPTOR,
    num_levels: c_uint,
) -> hipError_t {
    // SAFETY: the caller's descriptor (null refused).
    let raw = unsafe { desc_ref(desc as *const HIP_ARRAY3D_DESCRIPTOR) }.and_then(|d| {
        let e = hipExtent {
            width: d.Width,
            height: d.Height,
            depth: d.Depth,
        };
        mipmap_bytes(
            format_bytes(d.Format, d.NumChannels)?,
            e,
            num_levels,
            d.Flags,
        )
    });
    // SAFETY: the caller's out-pointer.
    unsafe { put_array(array.cast(), raw, true) }
}

pub unsafe fn hipFreeArray(array: hipArray_t) -> hipError_t {
    code(destroy_array(array as u64, false))
}

pub unsafe fn hipArrayDestroy(array: hipArray_t) -> hipError_t {
    code(destroy_array(array as u64, false))
}

pub unsafe fn hipFreeMipmappedArray(array: hipMipmappedArray_t) -> hipError_t {
    code(destroy_array(array as u64, true))
}

pub unsafe fn hipMipmappedArrayDestroy(array: hipMipmappedArray_t) -> hipError_t {
    code(destroy_array(array as u64, true))
}

pub unsafe fn hipFree(ptr: *mut c_void) -> hipError_t {
    code((|| {
        let r = rt()?;
        if ptr.is_null() {
            return Ok(());
        }
        dev_free(
            r,
            ptr as u64,
            &[kind::ALLOC, kind::PITCH, kind::MANAGED, kind::ASYNC],
        )
    })())
}

pub unsafe fn hipMemGetInfo(free: *mut usize, total: *mut usize) -> hipError_t {
    code((|| {
        let r = rt()?;
        if free.is_null() || total.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let ord = current_device();
        r.activate(ord)?;
        let phys = r.dev(ord)?.phys;
        let (used, tot) = r
            .with_state(|g| {
                g.sweep(now(), SWEEP_INTERVAL_NS);
                g.mem_info(phys)
            })?
            .ok_or(hipErrorInvalidDevice)?;
        // SAFETY: out-pointer arguments of the C API: NULL-checked by `put`, their validity is the caller's contract.
        unsafe {
            put(free, tot.saturating_sub(used) as usize)?;
            put(total, tot as usize)
        }
    })())
}

pub unsafe fn hipMemGetAddressRange(
    base: *mut hipDeviceptr_t,
    size: *mut usize,
    dptr: hipDeviceptr_t,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        let m = lock(&r.mem);
        let (k, a) = m.find_alloc(dptr as u64).ok_or(hipErrorNotFound)?;
        if !base.is_null() {
            // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
            unsafe { put(base, k as hipDeviceptr_t)? };
        }
        if !size.is_null() {
            // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
            unsafe { put(size, a.bytes as usize)? };
        }
        Ok(())
    })())
}

// ---- stream-ordered allocation and pools ----------------------------------------------------

/// The ordinal a stream belongs to (the null and per-thread streams: the current device).
fn stream_ordinal(s: hipStream_t) -> Res<c_int> {
    let h = s as usize;
    if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
        return Ok(current_device());
    }
    STREAMS
        .get(h as u64)
        .map(|st| st.ordinal.load(Relaxed) as c_int)
        .ok_or(hipErrorInvalidHandle)
}

fn default_pool(r: &Runtime, ord: c_int) -> Res<u64> {
    let d = r.dev(ord)?;
    let p = d.default_pool.load(Acquire);
    if p != 0 {
        return Ok(p);
    }
    let h = POOLS
        .create(|p| p.ordinal.store(ord as u32, Relaxed))
        .ok_or(hipErrorOutOfMemory)?;
    match d.default_pool.compare_exchange(0, h, AcqRel, Acquire) {
        Ok(_) => Ok(h),
        Err(existing) => {
            POOLS.destroy(h);
            Ok(existing)
        }
    }
}

fn pool_alloc(ptr: *mut *mut c_void, size: usize, pool: u64, ord: c_int) -> Res {
    let r = rt()?;
    if ptr.is_null() {
        return Err(hipErrorInvalidValue);
    }
    let span = align_up(size.max(1) as u64, ALLOC_ALIGN)?;
    let base = dev_alloc(r, ord, kind::ASYNC, size as u64, span, ALLOC_ALIGN, pool)?;
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(ptr, base as *mut c_void) }
}

pub unsafe fn hipMallocAsync(
    ptr: *mut *mut c_void,
    size: usize,
    stream: hipStream_t,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        let ord = stream_ordinal(stream)?;
        let pool = default_pool(r, ord)?;
        pool_alloc(ptr, size, pool, ord)
    })())
}

pub unsafe fn hipMallocFromPoolAsync(
    ptr: *mut *mut c_void,
    size: usize,
    pool: hipMemPool_t,
    stream: hipStream_t,
) -> hipError_t {
    code((|| {
        rt()?;
        stream_ordinal(stream)?;
        let p = POOLS.get(pool as u64).ok_or(hipErrorInvalidValue)?;
        pool_alloc(ptr, size, pool as u64, p.ordinal.load(Relaxed) as c_int)
    })())
}

pub unsafe fn hipFreeAsync(ptr: *mut c_void, stream: hipStream_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        stream_ordinal(stream)?;
        dev_free(r, ptr as u64, &[kind::ASYNC, kind::ALLOC])
    })())
}

pub unsafe fn hipDeviceGetDefaultMemPool(pool: *mut hipMemPool_t, device: c_int) -> hipError_t {
    code((|| {
        let h = default_pool(rt()?, device)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(pool, h as hipMemPool_t) }
    })())
}

pub unsafe fn hipDeviceGetMemPool(pool: *mut hipMemPool_t, device: c_int) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipDeviceGetDefaultMemPool(pool, device) }
}

pub unsafe fn hipMemPoolCreate(pool: *mut hipMemPool_t, props: *const c_void) -> hipError_t {
    code((|| {
        let r = rt()?;
        if pool.is_null() || props.is_null() {
            return Err(hipErrorInvalidValue);
        }
        // hipMemPoolProps: allocType, handleTypes, location { type, id }, ...
        // SAFETY: the caller passes a hipMemPoolProps (at least 16 bytes).
        let loc = unsafe { (props as *const hipMemLocation).add(1).read() };
        if loc.type_ != HIP_MEM_LOCATION_TYPE_DEVICE {
            return Err(hipErrorInvalidValue);
        }
        r.dev(loc.id)?;
        let h = POOLS
            .create(|p| p.ordinal.store(loc.id as u32, Relaxed))
            .ok_or(hipErrorOutOfMemory)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(pool, h as hipMemPool_t) }
    })())
}

/// Destroying a pool releases its cached memory only: allocations still live stay valid
/// (each holds a reference on the pool, as in AMD's runtime) until freed.
pub unsafe fn hipMemPoolDestroy(pool: hipMemPool_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let h = pool as u64;
        let p = POOLS.get(h).ok_or(hipErrorInvalidValue)?;
        let ord = p.ordinal.load(Relaxed) as c_int;
        if r.dev(ord)?.default_pool.load(Acquire) == h {
            return Err(hipErrorInvalidValue);
        }
        POOLS.destroy(h);
        Ok(())
    })())
}

pub unsafe fn hipMemPoolTrimTo(pool: hipMemPool_t, _min: usize) -> hipError_t {
    code((|| {
        rt()?;
        POOLS.get(pool as u64).ok_or(hipErrorInvalidValue)?;
        Ok(())
    })())
}

// ---- virtual memory management ------------------------------------------------------------------

pub unsafe fn hipMemCreate(
    handle: *mut hipMemGenericAllocationHandle_t,
    size: usize,
    prop: *const hipMemAllocationProp,
    flags: c_ulonglong,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if handle.is_null() || prop.is_null() || flags != 0 || size == 0 {
            return Err(hipErrorInvalidValue);
        }
        if !(size as u64).is_multiple_of(VMM_GRANULARITY) {
            return Err(hipErrorInvalidValue);
        }
        // SAFETY: non-NULL property struct from the caller.
        let p = unsafe { prop.read() };
        let device = p.location.type_ == HIP_MEM_LOCATION_TYPE_DEVICE;
        let ord = if device {
            p.location.id
        } else {
            current_device()
        };
        let inst = r.activate(ord)?;
        let d = r.dev(ord)?;
        let q = AllocReq {
            slot: r.slot,
            dev: d.phys,
            kind: if device { kind::VMM } else { kind::VMM_HOST },
            bytes: size as u64,
            span: size as u64,
            align: VMM_GRANULARITY,
            // Host-located handles are host memory: not charged to the device.
            charged: if device { size as u64 } else { 0 },
            ctx: inst,
            aux: 0,
            phys: true,
            fixed: None,
        };
        let base = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
        lock(&r.mem).handles.insert(
            base,
            VmmHandle {
                size: size as u64,
                device,
            },
        );
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(handle, base as hipMemGenericAllocationHandle_t) }
    })())
}

pub unsafe fn hipMemRelease(handle: hipMemGenericAllocationHandle_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let h = handle as u64;
        let v = lock(&r.mem)
            .handles
            .remove(&h)
            .ok_or(hipErrorInvalidValue)?;
        lock(&r.mem).shadows.remove(&h);
        let k = if v.device { kind::VMM } else { kind::VMM_HOST };
        r.with_state(|g| g.free(r.slot, h, &[k]))?;
        Ok(())
    })())
}

pub unsafe fn hipMemAddressReserve(
    ptr: *mut *mut c_void,
    size: usize,
    alignment: usize,
    _addr: *mut c_void,
    _flags: c_ulonglong,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if ptr.is_null() || size == 0 || !(size as u64).is_multiple_of(VMM_GRANULARITY) {
            return Err(hipErrorInvalidValue);
        }
        let ord = current_device();
        let inst = r.activate(ord)?;
        let d = r.dev(ord)?;
        let q = AllocReq {
            slot: r.slot,
            dev: d.phys,
            kind: kind::RESERVE,
            bytes: size as u64,
            span: size as u64,
            align: (alignment as u64).max(VMM_GRANULARITY),
            charged: 0,
            ctx: inst,
            aux: 0,
            phys: false,
            fixed: None,
        };
        let base = r.with_state(|g| g.alloc(&q))?.map_err(mem_err)?;
        lock(&r.mem).reserves.insert(base, size as u64);
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(ptr, base as *mut c_void) }
    })())
}

pub unsafe fn hipMemAddressFree(ptr: *mut c_void, size: usize) -> hipError_t {
    code((|| {
        let r = rt()?;
        let b = ptr as u64;
        let mut m = lock(&r.mem);
        match m.reserves.get(&b) {
            Some(&s) if s == size as u64 => {}
            _ => return Err(hipErrorInvalidValue),
        }
        if m.maps.range(b..b + size as u64).next().is_some() {
            return Err(hipErrorInvalidValue);
        }
        m.reserves.remove(&b);
        drop(m);
        r.with_state(|g| g.free(r.slot, b, &[kind::RESERVE]))?;
        Ok(())
    })())
}

pub unsafe fn hipMemMap(
    ptr: *mut c_void,
    size: usize,
    offset: usize,
    handle: hipMemGenericAllocationHandle_t,
    flags: c_ulonglong,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        let (a, h) = (ptr as u64, handle as u64);
        let mut m = lock(&r.mem);
        let hs = m.handles.get(&h).copied().ok_or(hipErrorInvalidValue)?;
        let in_reserve = m
            .reserves
            .range(..=a)
            .next_back()
            .is_some_and(|(&b, &s)| a + size as u64 <= b + s);
        if flags != 0 || size == 0 || !in_reserve || offset as u64 + size as u64 > hs.size {
            return Err(hipErrorInvalidValue);
        }
        if m.maps.range(a..a + size as u64).next().is_some() || m.find_map(a).is_some() {
            return Err(hipErrorInvalidValue);
        }
        m.maps.insert(
            a,
            Mapping {
                size: size as u64,
                handle: h,
                offset: offset as u64,
            },
        );
        Ok(())
    })())
}

pub unsafe fn hipMemUnmap(ptr: *mut c_void, size: usize) -> hipError_t {
    code((|| {
        let r = rt()?;
        let mut m = lock(&r.mem);
        match m.maps.get(&(ptr as u64)) {
            Some(mp) if mp.size == size as u64 => {}
            _ => return Err(hipErrorInvalidValue),
        }
        m.maps.remove(&(ptr as u64));
        Ok(())
    })())
}

pub unsafe fn hipMemSetAccess(
    ptr: *mut c_void,
    size: usize,
    desc: *const c_void,
    count: usize,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if desc.is_null() || count == 0 {
            return Err(hipErrorInvalidValue);
        }
        let m = lock(&r.mem);
        match m.find_map(ptr as u64) {
            Some((k, mp)) if ptr as u64 + size as u64 <= k + mp.size => Ok(()),
            _ => Err(hipErrorInvalidValue),
        }
    })())
}

pub unsafe fn hipMemGetAllocationGranularity(
    g: *mut usize,
    prop: *const hipMemAllocationProp,
    _option: hipMemAllocationGranularity_flags,
) -> hipError_t {
    code((|| {
        rt()?;
        if prop.is_null() {
            return Err(hipErrorInvalidValue);
        }
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(g, VMM_GRANULARITY as usize) }
    })())
}

// ---- host memory --------------------------------------------------------------------------------

fn host_alloc(ptr: *mut *mut c_void, size: usize) -> Res {
    let r = rt()?;
    if ptr.is_null() {
        return Err(hipErrorInvalidValue);
    }
    if size == 0 {
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        return unsafe { put(ptr, std::ptr::null_mut()) };
    }
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe { anon_map(size)? };
    lock(&r.mem).hosts.insert(
        p as u64,
        HostRec {
            len: size,
            registered: false,
        },
    );
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(ptr, p as *mut c_void) }
}

fn host_free(ptr: *mut c_void) -> Res {
    let r = rt()?;
    if ptr.is_null() {
        return Ok(());
    }
    let mut m = lock(&r.mem);
    match m.hosts.get(&(ptr as u64)) {
        Some(h) if !h.registered => {
            let len = h.len;
            m.hosts.remove(&(ptr as u64));
            // SAFETY: our own mapping.
            unsafe { libc::munmap(ptr, len) };
            Ok(())
        }
        _ => Err(hipErrorInvalidValue),
    }
}

pub unsafe fn hipHostMalloc(ptr: *mut *mut c_void, size: usize, _flags: c_uint) -> hipError_t {
    code(host_alloc(ptr, size))
}

pub unsafe fn hipHostAlloc(ptr: *mut *mut c_void, size: usize, _flags: c_uint) -> hipError_t {
    code(host_alloc(ptr, size))
}

pub unsafe fn hipMallocHost(ptr: *mut *mut c_void, size: usize) -> hipError_t {
    code(host_alloc(ptr, size))
}

pub unsafe fn hipMemAllocHost(ptr: *mut *mut c_void, size: usize) -> hipError_t {
    code(host_alloc(ptr, size))
}

pub unsafe fn hipHostFree(ptr: *mut c_void) -> hipError_t {
    code(host_free(ptr))
}

pub unsafe fn hipFreeHost(ptr: *mut c_void) -> hipError_t {
    code(host_free(ptr))
}

pub unsafe fn hipHostRegister(ptr: *mut c_void, size: usize, _flags: c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        if ptr.is_null() || size == 0 {
            return Err(hipErrorInvalidValue);
        }
        let mut m = lock(&r.mem);
        if m.find_host(ptr as u64).is_some() {
            return Err(hipErrorHostMemoryAlreadyRegistered);
        }
        m.hosts.insert(
            ptr as u64,
            HostRec {
                len: size,
                registered: true,
            },
        );
        Ok(())
    })())
}

pub unsafe fn hipHostUnregister(ptr: *mut c_void) -> hipError_t {
    code((|| {
        let r = rt()?;
        let mut m = lock(&r.mem);
        match m.hosts.get(&(ptr as u64)) {
            Some(h) if h.registered => {
                m.hosts.remove(&(ptr as u64));
                Ok(())
            }
            _ => Err(hipErrorHostMemoryNotRegistered),
        }
    })())
}

// ---- copies and sets ----------------------------------------------------------------------------

const CHUNK: usize = 1 << 20;

fn ndev(r: &Runtime) -> u32 {
    r.shm.devices().len() as u32
}

/// Copies `size` bytes (any direction: unified addressing) after the device's queued work.
fn copy(dst: u64, src: u64, size: usize, stream: Option<hipStream_t>) -> Res {
    let r = rt()?;
    if let Some(s) = stream {
        stream_ordinal(s)?;
    }
    if size == 0 {
        return Ok(());
    }
    if dst == 0 || src == 0 {
        return Err(hipErrorInvalidValue);
    }
    if stream.is_none() {
        // A blocking copy waits for the work queued before it.
        clock::sleep_until(r.dev(current_device())?.last_end.load(Acquire));
    }
    let mut m = lock(&r.mem);
    let s = m.resolve(src, size as u64, ndev(r))?;
    let d = m.resolve(dst, size as u64, ndev(r))?;
    let mut buf = vec![0u8; size.min(CHUNK)];
    let mut done = 0usize;
    while done < size {
        let n = (size - done).min(CHUNK);
        let at = |l: Loc| match l {
            Loc::Host(p) => Loc::Host(p.wrapping_add(done)),
            Loc::Shadow { base, span, off } => Loc::Shadow {
                base,
                span,
                off: off + done as u64,
            },
        };
        // SAFETY: host pointers come from the caller with `size` valid bytes.
        unsafe {
            m.read(at(s), &mut buf[..n]);
            m.write(at(d), &buf[..n]);
        }
        done += n;
    }
    Ok(())
}

fn fill(
    dst: u64,
    byte: u8,
    pattern: Option<[u8; 4]>,
    count: usize,
    stream: Option<hipStream_t>,
) -> Res {
    let r = rt()?;
    if let Some(s) = stream {
        stream_ordinal(s)?;
    }
    let len = count * if pattern.is_some() { 4 } else { 1 };
    if len == 0 {
        return Ok(());
    }
    let mut m = lock(&r.mem);
    let d = m.resolve(dst, len as u64, ndev(r))?;
    if let Loc::Shadow { base, span, .. } = d {
        if span > SHADOW_MAX || (byte == 0 && pattern.is_none() && !m.shadows.contains_key(&base)) {
            return Ok(()); // reads as zeros already / not backed
        }
    }
    let mut buf = vec![0u8; len.min(CHUNK)];
    match pattern {
        Some(p) => buf.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&p)),
        None => buf.fill(byte),
    }
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(CHUNK);
        let at = match d {
            Loc::Host(p) => Loc::Host(p.wrapping_add(done)),
            Loc::Shadow { base, span, off } => Loc::Shadow {
                base,
                span,
                off: off + done as u64,
            },
        };
        // SAFETY: host pointers come from the caller with `len` valid bytes.
        unsafe { m.write(at, &buf[..n]) };
        done += n;
    }
    Ok(())
}

fn check_kind(k: hipMemcpyKind) -> Res {
    match k {
        HIP_MEMCPY_HOST_TO_HOST..=HIP_MEMCPY_DEFAULT | HIP_MEMCPY_DEVICE_TO_DEVICE_NO_CU => Ok(()),
        _ => Err(hipErrorInvalidMemcpyDirection),
    }
}

pub unsafe fn hipMemcpy(
    dst: *mut c_void,
    src: *const c_void,
    size: usize,
    k: hipMemcpyKind,
) -> hipError_t {
    code(check_kind(k).and_then(|_| copy(dst as u64, src as u64, size, None)))
}

pub unsafe fn hipMemcpy_spt(
    dst: *mut c_void,
    src: *const c_void,
    size: usize,
    k: hipMemcpyKind,
) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipMemcpy(dst, src, size, k) }
}

pub unsafe fn hipMemcpyAsync(
    dst: *mut c_void,
    src: *const c_void,
    size: usize,
    k: hipMemcpyKind,
    s: hipStream_t,
) -> hipError_t {
    code(check_kind(k).and_then(|_| copy(dst as u64, src as u64, size, Some(s))))
}

pub unsafe fn hipMemcpyAsync_spt(
    dst: *mut c_void,
    src: *const c_void,
    size: usize,
    k: hipMemcpyKind,
    s: hipStream_t,
) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipMemcpyAsync(dst, src, size, k, s) }
}

pub unsafe fn hipMemcpyHtoD(dst: hipDeviceptr_t, src: *const c_void, size: usize) -> hipError_t {
    code(copy(dst as u64, src as u64, size, None))
}

pub unsafe fn hipMemcpyDtoH(dst: *mut c_void, src: hipDeviceptr_t, size: usize) -> hipError_t {
    code(copy(dst as u64, src as u64, size, None))
}

pub unsafe fn hipMemcpyDtoD(dst: hipDeviceptr_t, src: hipDeviceptr_t, size: usize) -> hipError_t {
    code(copy(dst as u64, src as u64, size, None))
}

pub unsafe fn hipMemset(dst: *mut c_void, value: c_int, size: usize) -> hipError_t {
    code(fill(dst as u64, value as u8, None, size, None))
}

pub unsafe fn hipMemset_spt(dst: *mut c_void, value: c_int, size: usize) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipMemset(dst, value, size) }
}

pub unsafe fn hipMemsetAsync(
    dst: *mut c_void,
    value: c_int,
    size: usize,
    s: hipStream_t,
) -> hipError_t {
    code(fill(dst as u64, value as u8, None, size, Some(s)))
}

pub unsafe fn hipMemsetAsync_spt(
    dst: *mut c_void,
    value: c_int,
    size: usize,
    s: hipStream_t,
) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipMemsetAsync(dst, value, size, s) }
}

pub unsafe fn hipMemsetD8(dst: hipDeviceptr_t, value: u8, count: usize) -> hipError_t {
    code(fill(dst as u64, value, None, count, None))
}

pub unsafe fn hipMemsetD32(dst: hipDeviceptr_t, value: c_int, count: usize) -> hipError_t {
    code(fill(dst as u64, 0, Some(value.to_ne_bytes()), count, None))
}

// ---- streams and events -------------------------------------------------------------------------

/// Stream priorities: 0 (lowest) to -1 (greatest), as HIP reports them.
const PRIORITY_LEAST: c_int = 0;
const PRIORITY_GREATEST: c_int = -1;

fn stream_create(out: *mut hipStream_t, flags: c_uint, priority: c_int) -> Res {
    let r = rt()?;
    if out.is_null() || flags & !1 != 0 {
        return Err(hipErrorInvalidValue);
    }
    let ord = current_device();
    r.activate(ord)?;
    let h = STREAMS
        .create(|s| {
            s.ordinal.store(ord as u32, Relaxed);
            s.flags.store(flags, Relaxed);
            s.priority
                .store(priority.clamp(PRIORITY_GREATEST, PRIORITY_LEAST), Relaxed);
        })
        .ok_or(hipErrorOutOfMemory)?;
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(out, h as hipStream_t) }
}

pub unsafe fn hipStreamCreate(s: *mut hipStream_t) -> hipError_t {
    code(stream_create(s, 0, 0))
}

pub unsafe fn hipStreamCreateWithFlags(s: *mut hipStream_t, flags: c_uint) -> hipError_t {
    code(stream_create(s, flags, 0))
}

pub unsafe fn hipStreamCreateWithPriority(
    s: *mut hipStream_t,
    flags: c_uint,
    priority: c_int,
) -> hipError_t {
    code(stream_create(s, flags, priority))
}

pub unsafe fn hipStreamDestroy(s: hipStream_t) -> hipError_t {
    code((|| {
        rt()?;
        let st = STREAMS.get(s as u64).ok_or(hipErrorInvalidHandle)?;
        clock::sleep_until(st.last_end.load(Acquire));
        STREAMS.destroy(s as u64);
        Ok(())
    })())
}

/// When the work queued on a stream ends (the null / per-thread stream: the device's).
fn stream_end(r: &Runtime, s: hipStream_t) -> Res<u64> {
    let h = s as usize;
    if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
        return Ok(r.dev(current_device())?.last_end.load(Acquire));
    }
    let st = STREAMS.get(h as u64).ok_or(hipErrorInvalidHandle)?;
    Ok(st.last_end.load(Acquire))
}

pub unsafe fn hipStreamSynchronize(s: hipStream_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        clock::sleep_until(stream_end(r, s)?);
        Ok(())
    })())
}

pub unsafe fn hipStreamSynchronize_spt(s: hipStream_t) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipStreamSynchronize(s) }
}

pub unsafe fn hipStreamQuery(s: hipStream_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        if stream_end(r, s)? > now() {
            return Err(hipErrorNotReady);
        }
        Ok(())
    })())
}

pub unsafe fn hipStreamQuery_spt(s: hipStream_t) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipStreamQuery(s) }
}

pub unsafe fn hipStreamWaitEvent(s: hipStream_t, e: hipEvent_t, flags: c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        if flags != 0 {
            return Err(hipErrorInvalidValue);
        }
        let ev = EVENTS.get(e as u64).ok_or(hipErrorInvalidHandle)?;
        let t = ev.time.load(Acquire);
        let h = s as usize;
        if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
            r.dev(current_device())?.last_end.fetch_max(t, AcqRel);
        } else {
            let st = STREAMS.get(h as u64).ok_or(hipErrorInvalidHandle)?;
            st.wait_until.fetch_max(t, AcqRel);
        }
        Ok(())
    })())
}

pub unsafe fn hipStreamWaitEvent_spt(s: hipStream_t, e: hipEvent_t, flags: c_uint) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipStreamWaitEvent(s, e, flags) }
}

pub unsafe fn hipStreamGetFlags(s: hipStream_t, flags: *mut c_uint) -> hipError_t {
    code((|| {
        rt()?;
        let h = s as usize;
        let f = if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
            0
        } else {
            STREAMS
                .get(h as u64)
                .ok_or(hipErrorInvalidHandle)?
                .flags
                .load(Relaxed)
        };
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(flags, f) }
    })())
}

fn event_create(out: *mut hipEvent_t, flags: c_uint) -> Res {
    rt()?;
    // Blocking sync, disable timing, interprocess; disable system fence, release to
    // device / system.
    if out.is_null() || flags & !0xE000_0007 != 0 {
        return Err(hipErrorInvalidValue);
    }
    let h = EVENTS
        .create(|e| e.flags.store(flags, Relaxed))
        .ok_or(hipErrorOutOfMemory)?;
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(out, h as hipEvent_t) }
}

pub unsafe fn hipEventCreate(e: *mut hipEvent_t) -> hipError_t {
    code(event_create(e, 0))
}

pub unsafe fn hipEventCreateWithFlags(e: *mut hipEvent_t, flags: c_uint) -> hipError_t {
    code(event_create(e, flags))
}

pub unsafe fn hipEventDestroy(e: hipEvent_t) -> hipError_t {
    code((|| {
        rt()?;
        if !EVENTS.destroy(e as u64) {
            return Err(hipErrorInvalidHandle);
        }
        Ok(())
    })())
}

/// Records the end of the stream's queued work (now, when it is idle).
pub unsafe fn hipEventRecord(e: hipEvent_t, s: hipStream_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let ev = EVENTS.get(e as u64).ok_or(hipErrorInvalidHandle)?;
        let t = stream_end(r, s)?.max(now());
        ev.time.store(t, Release);
        Ok(())
    })())
}

pub unsafe fn hipEventRecord_spt(e: hipEvent_t, s: hipStream_t) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipEventRecord(e, s) }
}

pub unsafe fn hipEventSynchronize(e: hipEvent_t) -> hipError_t {
    code((|| {
        rt()?;
        let ev = EVENTS.get(e as u64).ok_or(hipErrorInvalidHandle)?;
        clock::sleep_until(ev.time.load(Acquire));
        Ok(())
    })())
}

pub unsafe fn hipEventQuery(e: hipEvent_t) -> hipError_t {
    code((|| {
        rt()?;
        let ev = EVENTS.get(e as u64).ok_or(hipErrorInvalidHandle)?;
        if ev.time.load(Acquire) > now() {
            return Err(hipErrorNotReady);
        }
        Ok(())
    })())
}

pub unsafe fn hipEventElapsedTime(ms: *mut f32, start: hipEvent_t, stop: hipEvent_t) -> hipError_t {
    code((|| {
        rt()?;
        let a = EVENTS.get(start as u64).ok_or(hipErrorInvalidHandle)?;
        let b = EVENTS.get(stop as u64).ok_or(hipErrorInvalidHandle)?;
        let (t0, t1) = (a.time.load(Acquire), b.time.load(Acquire));
        if t0 == 0 || t1 == 0 {
            return Err(hipErrorInvalidHandle);
        }
        if t0.max(t1) > now() {
            return Err(hipErrorNotReady);
        }
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(ms, (t1 as f64 - t0 as f64) as f32 / 1e6) }
    })())
}

// ---- modules ------------------------------------------------------------------------------------

fn charge_module(r: &Runtime, ord: c_int, sign: i64) -> Res {
    let d = r.dev(ord)?;
    let bytes = r.costs.module_bytes as i64 * sign;
    r.with_state(|g| g.charge(r.slot, d.phys, 0, bytes, 0, sign as i32))?
        .map_err(|_| hipErrorOutOfMemory)?;
    if sign > 0 {
        d.module_bytes.fetch_add(r.costs.module_bytes, Relaxed);
        d.modules.fetch_add(1, Relaxed);
    } else {
        let _ = d.module_bytes.fetch_update(Relaxed, Relaxed, |v| {
            Some(v.saturating_sub(r.costs.module_bytes))
        });
        let _ = d
            .modules
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }
    Ok(())
}

fn module_load(out: *mut hipModule_t, entries: Option<Vec<String>>) -> Res {
    let r = rt()?;
    if out.is_null() {
        return Err(hipErrorInvalidValue);
    }
    let ord = current_device();
    r.activate(ord)?;
    charge_module(r, ord, 1)?;
    let h = MODULES
        .create(|m| {
            m.ordinal.store(ord as u32, Relaxed);
            *lock(&m.entries) = entries;
        })
        .ok_or(hipErrorOutOfMemory)?;
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    unsafe { put(out, h as hipModule_t) }
}

/// Kernel names of a text image (`.globl name` / `.amdhsa_kernel name` lines); `None` for
/// binary code objects, which answer any name.
fn text_entries(image: *const c_void) -> Option<Vec<String>> {
    // SAFETY: a text image is NUL-terminated; binary images start with ELF magic, which we
    // check on the first 4 bytes before reading further.
    let head = unsafe { std::slice::from_raw_parts(image as *const u8, 4) };
    if head == b"\x7fELF" || head.starts_with(b"__CL") {
        return None;
    }
    // SAFETY: a non-ELF image is a NUL-terminated text image (the API's contract for text).
    let text = unsafe { std::ffi::CStr::from_ptr(image as *const c_char) }
        .to_str()
        .ok()?;
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".amdhsa_kernel "))
        .map(|n| n.trim().to_string())
        .collect();
    (!names.is_empty()).then_some(names)
}

pub unsafe fn hipModuleLoad(module: *mut hipModule_t, fname: *const c_char) -> hipError_t {
    code((|| {
        // SAFETY: a C string argument of the API (NULL-checked).
        let path = unsafe { cstr(fname) }.ok_or(hipErrorInvalidValue)?;
        if !std::path::Path::new(path).is_file() {
            return Err(hipErrorFileNotFound);
        }
        module_load(module, None)
    })())
}

pub unsafe fn hipModuleLoadData(module: *mut hipModule_t, image: *const c_void) -> hipError_t {
    code((|| {
        if image.is_null() {
            return Err(hipErrorInvalidValue);
        }
        module_load(module, text_entries(image))
    })())
}

pub unsafe fn hipModuleLoadDataEx(
    module: *mut hipModule_t,
    image: *const c_void,
    _n: c_uint,
    _o: *mut hipJitOption,
    _v: *mut *mut c_void,
) -> hipError_t {
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipModuleLoadData(module, image) }
}

pub unsafe fn hipModuleUnload(module: hipModule_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let m = MODULES.get(module as u64).ok_or(hipErrorInvalidHandle)?;
        let ord = m.ordinal.load(Relaxed) as c_int;
        clock::sleep_until(r.dev(ord)?.last_end.load(Acquire));
        for (_, f) in lock(&m.funcs).drain() {
            FUNCS.destroy(f);
        }
        let globals: Vec<u64> = lock(&m.globals).drain().map(|(_, a)| a).collect();
        for g in globals {
            let _ = dev_free(r, g, &[kind::GLOBAL]);
        }
        MODULES.destroy(module as u64);
        charge_module(r, ord, -1)
    })())
}

pub unsafe fn hipModuleGetFunction(
    function: *mut hipFunction_t,
    module: hipModule_t,
    name: *const c_char,
) -> hipError_t {
    code((|| {
        rt()?;
        // SAFETY: a C string argument of the API (NULL-checked).
        let n = unsafe { cstr(name) }.ok_or(hipErrorInvalidValue)?;
        if function.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let m = MODULES.get(module as u64).ok_or(hipErrorInvalidHandle)?;
        if let Some(e) = lock(&m.entries).as_ref() {
            if !e.iter().any(|k| k == n) {
                return Err(hipErrorNotFound);
            }
        }
        let mut funcs = lock(&m.funcs);
        let h = match funcs.get(n) {
            Some(&h) => h,
            None => {
                let h = FUNCS
                    .create(|f| f.module.store(module as u64, Relaxed))
                    .ok_or(hipErrorOutOfMemory)?;
                funcs.insert(n.to_string(), h);
                h
            }
        };
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(function, h as hipFunction_t) }
    })())
}

// ---- launches -----------------------------------------------------------------------------------

fn blocks(g: dim3) -> Res<u64> {
    if g.x == 0 || g.y == 0 || g.z == 0 {
        return Err(hipErrorInvalidConfiguration);
    }
    Ok(g.x as u64 * g.y as u64 * g.z as u64)
}

fn check_block(b: dim3) -> Res {
    let threads = b.x as u64 * b.y as u64 * b.z as u64;
    if threads == 0 || threads > 1024 {
        return Err(hipErrorInvalidConfiguration);
    }
    Ok(())
}

/// Puts a kernel of `nblocks` blocks on `stream`'s queue (and the shared device timeline).
/// With zero costs this only validates (atomic loads, no lock, no allocation).
fn enqueue(r: &Runtime, stream: hipStream_t, nblocks: u64, cost_override: Option<u64>) -> Res {
    let h = stream as usize;
    let st = if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
        None
    } else {
        Some(STREAMS.get(h as u64).ok_or(hipErrorInvalidHandle)?)
    };
    if let Some(s) = st {
        if s.capturing.load(Acquire) {
            lock(&s.captured).push(Node { blocks: nblocks });
            return Ok(());
        }
    }
    let ord = match st {
        Some(s) => s.ordinal.load(Relaxed) as c_int,
        None => current_device(),
    };
    let d = r.dev(ord)?;
    if d.inst.load(Acquire) == 0 {
        r.activate(ord)?;
    }
    let cost = cost_override.unwrap_or_else(|| r.costs.kernel_cost(nblocks));
    if cost == 0 {
        return Ok(());
    }
    let not_before = match st {
        Some(s) => s.last_end.load(Acquire).max(s.wait_until.load(Acquire)),
        None => d.last_end.load(Acquire),
    };
    let t = now();
    let end = r.with_state(|g| g.launch(r.slot, d.phys, cost, not_before, t))?;
    if let Some(s) = st {
        s.last_end.fetch_max(end, AcqRel);
    }
    d.last_end.fetch_max(end, AcqRel);
    Ok(())
}

fn module_launch(f: hipFunction_t, grid: dim3, block: dim3, stream: hipStream_t) -> Res {
    let r = rt()?;
    let func = FUNCS.get(f as u64).ok_or(hipErrorInvalidHandle)?;
    if !MODULES.is_live(func.module.load(Relaxed)) {
        return Err(hipErrorInvalidHandle);
    }
    check_block(block)?;
    enqueue(r, stream, blocks(grid)?, None)
}

pub unsafe fn hipModuleLaunchKernel(
    f: hipFunction_t,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    _shm: c_uint,
    stream: hipStream_t,
    _params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> hipError_t {
    code(module_launch(
        f,
        dim3 {
            x: gx,
            y: gy,
            z: gz,
        },
        dim3 {
            x: bx,
            y: by,
            z: bz,
        },
        stream,
    ))
}

/// HIP's extended launch takes the global work size in threads: blocks = ceil(global / local).
pub unsafe fn hipExtModuleLaunchKernel(
    f: hipFunction_t,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    lx: c_uint,
    ly: c_uint,
    lz: c_uint,
    _shm: usize,
    stream: hipStream_t,
    _params: *mut *mut c_void,
    _extra: *mut *mut c_void,
    start: hipEvent_t,
    stop: hipEvent_t,
    _flags: c_uint,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if lx == 0 || ly == 0 || lz == 0 {
            return Err(hipErrorInvalidConfiguration);
        }
        let grid = dim3 {
            x: gx.div_ceil(lx),
            y: gy.div_ceil(ly),
            z: gz.div_ceil(lz),
        };
        if !start.is_null() {
            // SAFETY: delegates to another entry point with this one's arguments and contract.
            unsafe { code_res(hipEventRecord(start, stream))? };
        }
        module_launch(
            f,
            grid,
            dim3 {
                x: lx,
                y: ly,
                z: lz,
            },
            stream,
        )?;
        if !stop.is_null() {
            // SAFETY: delegates to another entry point with this one's arguments and contract.
            unsafe { code_res(hipEventRecord(stop, stream))? };
        }
        let _ = r;
        Ok(())
    })())
}

fn code_res(e: hipError_t) -> Res {
    if e == hipSuccess {
        Ok(())
    } else {
        Err(e)
    }
}

pub unsafe fn hipModuleLaunchCooperativeKernel(
    f: hipFunction_t,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    _shm: c_uint,
    stream: hipStream_t,
    _params: *mut *mut c_void,
) -> hipError_t {
    code(module_launch(
        f,
        dim3 {
            x: gx,
            y: gy,
            z: gz,
        },
        dim3 {
            x: bx,
            y: by,
            z: bz,
        },
        stream,
    ))
}

/// A launch by host stub (`hipLaunchKernel`, what `<<<>>>` compiles to): the stub must have
/// been registered; its program's code object is loaded (and charged) on the device at the
/// first launch there.
fn stub_launch(stub: *const c_void, grid: dim3, block: dim3, stream: hipStream_t) -> Res {
    let r = rt()?;
    let fatbin = {
        let map = HOST_FUNCS.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(stub as usize))
            .map(|f| f.fatbin)
            .ok_or(hipErrorInvalidDeviceFunction)?
    };
    check_block(block)?;
    let nblocks = blocks(grid)?;
    let ord = stream_ordinal(stream)?;
    // SAFETY: `fatbin` is a leaked `FatBin` registered by `__hipRegisterFatBinary`.
    let fb = unsafe { &*(fatbin as *const FatBin) };
    // A program built for other GPUs has no code object for this one.
    if !runs_on(&fb.targets, r.amd(ord)?.gcn_arch_name) {
        return Err(hipErrorNoBinaryForGpu);
    }
    let bit = 1u32 << (ord as u32 & 31);
    if fb.loaded.load(Acquire) & bit == 0 {
        r.activate(ord)?;
        if fb.loaded.fetch_or(bit, AcqRel) & bit == 0 {
            if let Err(e) = charge_module(r, ord, 1) {
                fb.loaded.fetch_and(!bit, AcqRel);
                return Err(e);
            }
        }
    }
    enqueue(r, stream, nblocks, None)
}

/// What an `_spt` entry point passes on: the per-thread default stream where the caller
/// gave the null (default) stream, the caller's stream otherwise.
fn per_thread_default(stream: hipStream_t) -> hipStream_t {
    if stream.is_null() {
        HIP_STREAM_PER_THREAD as hipStream_t
    } else {
        stream
    }
}

pub unsafe fn hipLaunchKernel(
    f: *const c_void,
    grid: dim3,
    block: dim3,
    _args: *mut *mut c_void,
    _shm: usize,
    stream: hipStream_t,
) -> hipError_t {
    code(stub_launch(f, grid, block, stream))
}

pub unsafe fn hipLaunchKernel_spt(
    f: *const c_void,
    grid: dim3,
    block: dim3,
    args: *mut *mut c_void,
    shm: usize,
    stream: hipStream_t,
) -> hipError_t {
    let s = per_thread_default(stream);
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipLaunchKernel(f, grid, block, args, shm, s) }
}

/// The launch-config form of `hipLaunchKernel` (attributes accepted, not modelled).
pub unsafe fn hipLaunchKernelExC(
    config: *const hipLaunchConfig_t,
    f: *const c_void,
    _args: *mut *mut c_void,
) -> hipError_t {
    // SAFETY: an input struct of the C API; null refused.
    let Some(c) = (unsafe { config.as_ref() }) else {
        return hipErrorInvalidValue;
    };
    if c.numAttrs > 0 && c.attrs.is_null() {
        return hipErrorInvalidValue;
    }
    code(stub_launch(f, c.gridDim, c.blockDim, c.stream))
}

/// The launch-config form of `hipModuleLaunchKernel` (attributes accepted, not modelled).
pub unsafe fn hipDrvLaunchKernelEx(
    config: *const HIP_LAUNCH_CONFIG,
    f: hipFunction_t,
    _params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> hipError_t {
    // SAFETY: an input struct of the C API; null refused.
    let Some(c) = (unsafe { config.as_ref() }) else {
        return hipErrorInvalidValue;
    };
    if c.numAttrs > 0 && c.attrs.is_null() {
        return hipErrorInvalidValue;
    }
    let grid = dim3 {
        x: c.gridDimX,
        y: c.gridDimY,
        z: c.gridDimZ,
    };
    let block = dim3 {
        x: c.blockDimX,
        y: c.blockDimY,
        z: c.blockDimZ,
    };
    code(module_launch(f, grid, block, c.hStream))
}

pub unsafe fn hipExtLaunchKernel(
    f: *const c_void,
    grid: dim3,
    block: dim3,
    _args: *mut *mut c_void,
    _shm: usize,
    stream: hipStream_t,
    start: hipEvent_t,
    stop: hipEvent_t,
    _flags: c_int,
) -> hipError_t {
    code((|| {
        if !start.is_null() {
            // SAFETY: delegates to another entry point with this one's arguments and contract.
            unsafe { code_res(hipEventRecord(start, stream))? };
        }
        stub_launch(f, grid, block, stream)?;
        if !stop.is_null() {
            // SAFETY: delegates to another entry point with this one's arguments and contract.
            unsafe { code_res(hipEventRecord(stop, stream))? };
        }
        Ok(())
    })())
}

pub unsafe fn hipLaunchCooperativeKernel(
    f: *const c_void,
    grid: dim3,
    block: dim3,
    _params: *mut *mut c_void,
    _shm: c_uint,
    stream: hipStream_t,
) -> hipError_t {
    code(stub_launch(f, grid, block, stream))
}

pub unsafe fn hipLaunchCooperativeKernel_spt(
    f: *const c_void,
    grid: dim3,
    block: dim3,
    params: *mut *mut c_void,
    shm: c_uint,
    stream: hipStream_t,
) -> hipError_t {
    let s = per_thread_default(stream);
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipLaunchCooperativeKernel(f, grid, block, params, shm, s) }
}

// ---- the compiler ABI of `<<<>>>` ---------------------------------------------------------------

pub unsafe fn __hipPushCallConfiguration(
    grid: dim3,
    block: dim3,
    shared: usize,
    stream: hipStream_t,
) -> hipError_t {
    push_call_config(CallConfig {
        grid,
        block,
        shared,
        stream,
    });
    hipSuccess
}

pub unsafe fn __hipPopCallConfiguration(
    grid: *mut dim3,
    block: *mut dim3,
    shared: *mut usize,
    stream: *mut hipStream_t,
) -> hipError_t {
    code((|| {
        let c = pop_call_config().ok_or(hipErrorMissingConfiguration)?;
        // SAFETY: out-pointer arguments of the C API: NULL-checked by `put`, their validity is the caller's contract.
        unsafe {
            put(grid, c.grid)?;
            put(block, c.block)?;
            put(shared, c.shared)?;
            put(stream, c.stream)
        }
    })())
}

/// Records a program's fat binary; the runtime itself starts at the first real call (this
/// runs in a static constructor, before `main`).
pub unsafe fn __hipRegisterFatBinary(data: *const c_void) -> *mut *mut c_void {
    if data.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the compiler passes its fat binary wrapper {magic, version, binary, _}; the
    // bundle it points at is static data of the program, read only within what its own
    // header declares (bounded by `bundle_targets`).
    let targets = unsafe {
        let w = data as *const u32;
        if w.read_unaligned() == HIP_FATBIN_MAGIC {
            let bin = (data as *const *const u8).add(1).read_unaligned();
            if bin.is_null() {
                None
            } else {
                bundle_targets(|o, n| std::slice::from_raw_parts(bin.add(o), n).to_vec())
            }
        } else {
            None
        }
    };
    let fb: &'static FatBin = Box::leak(Box::new(FatBin {
        targets,
        loaded: std::sync::atomic::AtomicU32::new(0),
        live: std::sync::atomic::AtomicBool::new(true),
    }));
    fatbins_mut().push(fb);
    // The handle the compiler passes back to __hipRegisterFunction: a cell holding the FatBin.
    Box::leak(Box::new(fb as *const FatBin as *mut c_void)) as *mut *mut c_void
}

pub unsafe fn __hipRegisterFunction(
    modules: *mut *mut c_void,
    host_function: *const c_void,
    _device_function: *mut c_char,
    device_name: *const c_char,
    _thread_limit: c_uint,
    _tid: *mut c_void,
    _bid: *mut c_void,
    _block_dim: *mut dim3,
    _grid_dim: *mut dim3,
    _w_size: *mut c_int,
) {
    if modules.is_null() || host_function.is_null() {
        return;
    }
    // SAFETY: `modules` is the cell __hipRegisterFatBinary returned.
    let fb = unsafe { *modules } as usize;
    if !fatbins_mut()
        .iter()
        .any(|f| std::ptr::eq(*f, fb as *const FatBin))
    {
        return;
    }
    // SAFETY: a C string argument of the API (NULL-checked).
    let name = unsafe { cstr(device_name) }.unwrap_or("").to_string();
    HOST_FUNCS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(host_function as usize, HostFunc { fatbin: fb, name });
}

pub unsafe fn __hipRegisterVar(
    _modules: *mut *mut c_void,
    _var: *mut c_void,
    _host_var: *mut c_char,
    _device_var: *mut c_char,
    _ext: c_int,
    _size: usize,
    _constant: c_int,
    _global: c_int,
) {
}

/// Unloads a program's code objects (charged on the devices where it ran) and forgets its
/// kernels.
pub unsafe fn __hipUnregisterFatBinary(modules: *mut *mut c_void) {
    if modules.is_null() {
        return;
    }
    // SAFETY: as in __hipRegisterFunction.
    let fb = unsafe { *modules } as usize;
    let Some(f) = fatbins_mut()
        .iter()
        .find(|f| std::ptr::eq(**f, fb as *const FatBin))
        .copied()
    else {
        return;
    };
    if !f.live.swap(false, AcqRel) {
        return;
    }
    HOST_FUNCS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, h| h.fatbin != fb);
    let loaded = f.loaded.swap(0, AcqRel);
    if let Some(Ok(r)) = Some(rt()) {
        for ord in 0..32 {
            if loaded & (1 << ord) != 0 {
                let _ = charge_module(r, ord, -1);
            }
        }
    }
}

// ---- graphs -------------------------------------------------------------------------------------

pub unsafe fn hipStreamBeginCapture(s: hipStream_t, _mode: hipStreamCaptureMode) -> hipError_t {
    code((|| {
        rt()?;
        let st = STREAMS.get(s as u64).ok_or(hipErrorInvalidHandle)?;
        if st.capturing.swap(true, AcqRel) {
            return Err(hipErrorStreamCaptureUnsupported);
        }
        lock(&st.captured).clear();
        Ok(())
    })())
}

pub unsafe fn hipStreamEndCapture(s: hipStream_t, graph: *mut hipGraph_t) -> hipError_t {
    code((|| {
        rt()?;
        let st = STREAMS.get(s as u64).ok_or(hipErrorInvalidHandle)?;
        if graph.is_null() {
            return Err(hipErrorInvalidValue);
        }
        if !st.capturing.swap(false, AcqRel) {
            return Err(hipErrorInvalidValue);
        }
        let nodes = std::mem::take(&mut *lock(&st.captured));
        let h = GRAPHS
            .create(|g| *lock(&g.nodes) = nodes)
            .ok_or(hipErrorOutOfMemory)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(graph, h as hipGraph_t) }
    })())
}

pub unsafe fn hipStreamIsCapturing(
    s: hipStream_t,
    status: *mut hipStreamCaptureStatus,
) -> hipError_t {
    code((|| {
        rt()?;
        let h = s as usize;
        let capturing = if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
            false
        } else {
            STREAMS
                .get(h as u64)
                .ok_or(hipErrorInvalidHandle)?
                .capturing
                .load(Acquire)
        };
        let v = if capturing {
            HIP_STREAM_CAPTURE_STATUS_ACTIVE
        } else {
            HIP_STREAM_CAPTURE_STATUS_NONE
        };
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(status, v) }
    })())
}

pub unsafe fn hipGraphInstantiate(
    exec: *mut hipGraphExec_t,
    graph: hipGraph_t,
    _err: *mut hipGraphNode_t,
    _log: *mut c_char,
    _size: usize,
) -> hipError_t {
    code((|| {
        rt()?;
        let g = GRAPHS.get(graph as u64).ok_or(hipErrorInvalidValue)?;
        if exec.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let nodes = lock(&g.nodes).clone();
        let h = EXECS
            .create(|e| *lock(&e.nodes) = nodes)
            .ok_or(hipErrorOutOfMemory)?;
        // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
        unsafe { put(exec, h as hipGraphExec_t) }
    })())
}

/// A graph launch costs the sum of its kernel nodes, as one span of device time.
pub unsafe fn hipGraphLaunch(exec: hipGraphExec_t, stream: hipStream_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let e = EXECS.get(exec as u64).ok_or(hipErrorInvalidValue)?;
        let (nblocks, cost) = lock(&e.nodes).iter().fold((0u64, 0u64), |(b, c), n| {
            (b + n.blocks, c + r.costs.kernel_cost(n.blocks))
        });
        enqueue(r, stream, nblocks, Some(cost))
    })())
}

pub unsafe fn hipGraphLaunch_spt(exec: hipGraphExec_t, stream: hipStream_t) -> hipError_t {
    let s = per_thread_default(stream);
    // SAFETY: delegates to another entry point with this one's arguments and contract.
    unsafe { hipGraphLaunch(exec, s) }
}

pub unsafe fn hipGraphExecDestroy(exec: hipGraphExec_t) -> hipError_t {
    code((|| {
        rt()?;
        if !EXECS.destroy(exec as u64) {
            return Err(hipErrorInvalidValue);
        }
        Ok(())
    })())
}

pub unsafe fn hipGraphDestroy(graph: hipGraph_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let h = graph as u64;
        let allocs = match GRAPHS.get(h) {
            Some(g) => std::mem::take(&mut *lock(&g.allocs)),
            None => return Err(hipErrorInvalidValue),
        };
        if !GRAPHS.destroy(h) {
            return Err(hipErrorInvalidValue);
        }
        // Graph memory the application did not free goes with the graph (only what is still
        // this graph's: an address freed and reused since belongs to someone else).
        for p in allocs {
            let ours = lock(&r.mem).allocs.get(&p).is_some_and(|a| a.graph == h);
            if ours {
                let _ = dev_free(r, p, &[kind::ASYNC]);
            }
        }
        Ok(())
    })())
}

pub unsafe fn hipGraphCreate(graph: *mut hipGraph_t, flags: c_uint) -> hipError_t {
    code((|| {
        rt()?;
        if graph.is_null() || flags != 0 {
            return Err(hipErrorInvalidValue);
        }
        let h = GRAPHS.create(|_| {}).ok_or(hipErrorOutOfMemory)?;
        // SAFETY: out-pointer argument of the C API, checked non-NULL.
        unsafe { put(graph, h as hipGraph_t) }
    })())
}

/// The node's memory is taken when the node is added (and kept by the graph).
pub unsafe fn hipGraphAddMemAllocNode(
    node: *mut hipGraphNode_t,
    graph: hipGraph_t,
    dependencies: *const hipGraphNode_t,
    num_dependencies: usize,
    params: *mut hipMemAllocNodeParams,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if node.is_null() || params.is_null() || (num_dependencies > 0 && dependencies.is_null()) {
            return Err(hipErrorInvalidValue);
        }
        let h = graph as u64;
        let g = GRAPHS.get(h).ok_or(hipErrorInvalidValue)?;
        // SAFETY: an in/out struct argument of the C API, checked non-NULL.
        let p = unsafe { &mut *params };
        let loc = p.poolProps.location;
        if p.bytesize == 0 || loc.type_ != HIP_MEM_LOCATION_TYPE_DEVICE {
            return Err(hipErrorInvalidValue);
        }
        let span = align_up(p.bytesize as u64, ALLOC_ALIGN)?;
        let base = dev_alloc(
            r,
            loc.id,
            kind::ASYNC,
            p.bytesize as u64,
            span,
            ALLOC_ALIGN,
            0,
        )?;
        if let Some(a) = lock(&r.mem).allocs.get_mut(&base) {
            a.graph = h;
        }
        lock(&g.allocs).push(base);
        p.dptr = base as *mut c_void;
        // SAFETY: out-pointer argument of the C API, checked non-NULL.
        unsafe { put(node, crate::rt::new_node_handle() as hipGraphNode_t) }
    })())
}

/// The freed memory goes back to the graph's pool, which the graph keeps until destroyed:
/// nothing changes on the device here.
pub unsafe fn hipGraphAddMemFreeNode(
    node: *mut hipGraphNode_t,
    graph: hipGraph_t,
    dependencies: *const hipGraphNode_t,
    num_dependencies: usize,
    dev_ptr: *mut c_void,
) -> hipError_t {
    code((|| {
        rt()?;
        if node.is_null() || dev_ptr.is_null() || (num_dependencies > 0 && dependencies.is_null()) {
            return Err(hipErrorInvalidValue);
        }
        GRAPHS.get(graph as u64).ok_or(hipErrorInvalidValue)?;
        // SAFETY: out-pointer argument of the C API, checked non-NULL.
        unsafe { put(node, crate::rt::new_node_handle() as hipGraphNode_t) }
    })())
}

// ---- devices: limits, peers, PCI ---------------------------------------------------------------

pub unsafe fn hipDeviceGetByPCIBusId(device: *mut c_int, pci_bus_id: *const c_char) -> hipError_t {
    code((|| {
        let r = rt()?;
        // SAFETY: a C string argument of the API (NULL-checked).
        let id = unsafe { cstr(pci_bus_id) }.ok_or(hipErrorInvalidValue)?;
        let (dom, bus, dev, func) =
            vgpu_sim_core::ids::parse_pci_bus_id(id).ok_or(hipErrorInvalidValue)?;
        let ord = (0..r.devs.len() as c_int)
            .find(|&o| {
                r.info(o).is_ok_and(|i| i.pci_bus == bus) && dom == 0 && dev == 0 && func == 0
            })
            .ok_or(hipErrorInvalidDevice)?;
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(device, ord) }
    })())
}

pub unsafe fn hipDeviceGetLimit(value: *mut usize, limit: hipLimit_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        let v = *lock(&r.limits)
            .get(limit as usize)
            .ok_or(hipErrorUnsupportedLimit)?;
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(value, v) }
    })())
}

pub unsafe fn hipDeviceSetLimit(limit: hipLimit_t, value: usize) -> hipError_t {
    code((|| {
        let r = rt()?;
        let mut l = lock(&r.limits);
        let slot = l.get_mut(limit as usize).ok_or(hipErrorUnsupportedLimit)?;
        *slot = value;
        Ok(())
    })())
}

pub unsafe fn hipDeviceGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> hipError_t {
    code((|| {
        rt()?;
        if !least.is_null() {
            // SAFETY: optional out-pointer of the C API (NULL-checked).
            unsafe { least.write(PRIORITY_LEAST) };
        }
        if !greatest.is_null() {
            // SAFETY: as above.
            unsafe { greatest.write(PRIORITY_GREATEST) };
        }
        Ok(())
    })())
}

/// Every pair of distinct simulated devices can reach each other (XGMI on an MI300X node).
pub unsafe fn hipDeviceCanAccessPeer(
    can_access: *mut c_int,
    device: c_int,
    peer: c_int,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        r.dev(device)?;
        r.dev(peer)?;
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(can_access, (device != peer) as c_int) }
    })())
}

pub unsafe fn hipDeviceEnablePeerAccess(peer: c_int, flags: c_uint) -> hipError_t {
    code((|| {
        let r = rt()?;
        let cur = current_device();
        r.dev(peer)?;
        if flags != 0 || peer == cur {
            return Err(hipErrorInvalidValue);
        }
        if !lock(&r.peers).insert((cur, peer)) {
            return Err(hipErrorPeerAccessAlreadyEnabled);
        }
        Ok(())
    })())
}

pub unsafe fn hipDeviceDisablePeerAccess(peer: c_int) -> hipError_t {
    code((|| {
        let r = rt()?;
        r.dev(peer)?;
        if !lock(&r.peers).remove(&(current_device(), peer)) {
            return Err(hipErrorPeerAccessNotEnabled);
        }
        Ok(())
    })())
}

// ---- pointers, advice, IPC ----------------------------------------------------------------------

pub unsafe fn hipPointerGetAttributes(
    attributes: *mut hipPointerAttribute_t,
    ptr: *const c_void,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if attributes.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let addr = ptr as u64;
        let m = lock(&r.mem);
        let mut a = hipPointerAttribute_t {
            type_: HIP_MEMORY_TYPE_UNREGISTERED,
            device: -1,
            devicePointer: std::ptr::null_mut(),
            hostPointer: std::ptr::null_mut(),
            isManaged: 0,
            allocationFlags: 0,
        };
        if let Some((_, l)) = m.find_alloc(addr) {
            a.device = l.ordinal as c_int;
            a.devicePointer = ptr as *mut c_void;
            if l.kind == kind::MANAGED {
                a.type_ = HIP_MEMORY_TYPE_MANAGED;
                a.isManaged = 1;
                a.hostPointer = ptr as *mut c_void;
            } else {
                a.type_ = HIP_MEMORY_TYPE_DEVICE;
            }
        } else if m.find_host(addr).is_some() {
            a.type_ = HIP_MEMORY_TYPE_HOST;
            a.device = current_device();
            a.hostPointer = ptr as *mut c_void;
            a.devicePointer = ptr as *mut c_void;
        } else if m.find_map(addr).is_some()
            || m.ipc
                .range(..=addr)
                .next_back()
                .is_some_and(|(&k, &s)| addr < k + s)
        {
            a.type_ = HIP_MEMORY_TYPE_DEVICE;
            a.device = current_device();
            a.devicePointer = ptr as *mut c_void;
        }
        // SAFETY: checked non-NULL; the caller's out-struct.
        unsafe { attributes.write(a) };
        Ok(())
    })())
}

/// Advice and prefetch only apply to managed memory; the simulator validates and accepts
/// them (no migration is modelled).
fn check_managed(r: &Runtime, ptr: *const c_void, count: usize, device: c_int) -> Res {
    // hipCpuDeviceId (-1) is a valid target.
    if device != -1 {
        r.dev(device)?;
    }
    let m = lock(&r.mem);
    match m.find_alloc(ptr as u64) {
        Some((k, a)) if a.kind == kind::MANAGED && ptr as u64 + count as u64 <= k + a.bytes => {
            Ok(())
        }
        _ => Err(hipErrorInvalidValue),
    }
}

pub unsafe fn hipMemAdvise(
    ptr: *const c_void,
    count: usize,
    advice: hipMemoryAdvise,
    device: c_int,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if !(1..=6).contains(&advice) && !(100..=103).contains(&advice) {
            return Err(hipErrorInvalidValue);
        }
        check_managed(r, ptr, count, device)
    })())
}

pub unsafe fn hipMemPrefetchAsync(
    ptr: *const c_void,
    count: usize,
    device: c_int,
    stream: hipStream_t,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        stream_ordinal(stream)?;
        check_managed(r, ptr, count, device)
    })())
}

const IPC_MAGIC: &[u8; 8] = b"VGPUIPC\0";

/// A handle names the exporter's allocation: magic, pid, slot, base, size.
pub unsafe fn hipIpcGetMemHandle(
    handle: *mut hipIpcMemHandle_t,
    dev_ptr: *mut c_void,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if handle.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let m = lock(&r.mem);
        let (k, a) = m.find_alloc(dev_ptr as u64).ok_or(hipErrorInvalidValue)?;
        if k != dev_ptr as u64 || a.host.is_some() {
            return Err(hipErrorInvalidValue);
        }
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(IPC_MAGIC);
        b[8..12].copy_from_slice(&r.machine_pid.to_le_bytes());
        b[12..16].copy_from_slice(&r.slot.to_le_bytes());
        b[16..24].copy_from_slice(&a.shm_base.to_le_bytes());
        b[24..32].copy_from_slice(&a.bytes.to_le_bytes());
        let mut h = hipIpcMemHandle_t { reserved: [0; 64] };
        for (d, s) in h.reserved.iter_mut().zip(b) {
            *d = s as c_char;
        }
        // SAFETY: checked non-NULL; the caller's out-struct.
        unsafe { handle.write(h) };
        Ok(())
    })())
}

/// Opens another process's allocation: the same device address (one address space per
/// machine), valid while the exporter holds it; not charged to the importer.
pub unsafe fn hipIpcOpenMemHandle(
    dev_ptr: *mut *mut c_void,
    handle: hipIpcMemHandle_t,
    _flags: c_uint,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        let b: Vec<u8> = handle.reserved.iter().map(|&c| c as u8).collect();
        if &b[..8] != IPC_MAGIC {
            return Err(hipErrorInvalidValue);
        }
        let word = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let quad = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let (pid, slot, base, size) = (word(8), word(12), quad(16), quad(24));
        if pid == r.machine_pid {
            return Err(hipErrorInvalidContext);
        }
        let live = r
            .with_state(|g| g.lookup(slot, base))?
            .is_some_and(|e| e.pid == pid && e.bytes == size);
        if !live {
            return Err(hipErrorInvalidHandle);
        }
        r.activate(current_device())?;
        lock(&r.mem).ipc.insert(base, size);
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(dev_ptr, base as *mut c_void) }
    })())
}

pub unsafe fn hipIpcCloseMemHandle(dev_ptr: *mut c_void) -> hipError_t {
    code((|| {
        let r = rt()?;
        let mut m = lock(&r.mem);
        if m.ipc.remove(&(dev_ptr as u64)).is_none() {
            return Err(hipErrorInvalidValue);
        }
        m.shadows.remove(&(dev_ptr as u64));
        Ok(())
    })())
}

pub unsafe fn hipMemcpyPeer(
    dst: *mut c_void,
    dst_device: c_int,
    src: *const c_void,
    src_device: c_int,
    size: usize,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        r.dev(dst_device)?;
        r.dev(src_device)?;
        copy(dst as u64, src as u64, size, None)
    })())
}

pub unsafe fn hipMemcpyPeerAsync(
    dst: *mut c_void,
    dst_device: c_int,
    src: *const c_void,
    src_device: c_int,
    size: usize,
    stream: hipStream_t,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        r.dev(dst_device)?;
        r.dev(src_device)?;
        copy(dst as u64, src as u64, size, Some(stream))
    })())
}

// ---- streams: priority, device, host callbacks ---------------------------------------------------

pub unsafe fn hipStreamGetPriority(s: hipStream_t, priority: *mut c_int) -> hipError_t {
    code((|| {
        rt()?;
        let h = s as usize;
        let p = if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
            PRIORITY_LEAST
        } else {
            STREAMS
                .get(h as u64)
                .ok_or(hipErrorInvalidHandle)?
                .priority
                .load(Relaxed)
        };
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(priority, p) }
    })())
}

/// The stream's device, or -1 for an invalid stream.
pub unsafe fn hipGetStreamDeviceId(s: hipStream_t) -> hipDeviceOrdinal {
    hipDeviceOrdinal(rt().and_then(|_| stream_ordinal(s)).unwrap_or(-1))
}

/// Host work queued on a stream runs when the work before it has ended. The simulator runs
/// it then on the calling thread (the call returns after it), which keeps stream order.
fn host_work(stream: hipStream_t, f: impl FnOnce(hipError_t)) -> Res {
    let r = rt()?;
    stream_ordinal(stream)?;
    clock::sleep_until(stream_end(r, stream)?);
    f(hipSuccess);
    Ok(())
}

pub unsafe fn hipStreamAddCallback(
    stream: hipStream_t,
    callback: hipStreamCallback_t,
    user_data: *mut c_void,
    flags: c_uint,
) -> hipError_t {
    code((|| {
        let cb = callback.ok_or(hipErrorInvalidValue)?;
        if flags != 0 {
            return Err(hipErrorInvalidValue);
        }
        // SAFETY: the caller's callback with its own user data, as the API promises to call it.
        host_work(stream, |status| unsafe { cb(stream, status, user_data) })
    })())
}

pub unsafe fn hipLaunchHostFunc(
    stream: hipStream_t,
    func: hipHostFn_t,
    user_data: *mut c_void,
) -> hipError_t {
    code((|| {
        let f = func.ok_or(hipErrorInvalidValue)?;
        // SAFETY: the caller's function with its own user data, as the API promises to call it.
        host_work(stream, |_| unsafe { f(user_data) })
    })())
}

// ---- modules: globals, attributes, occupancy ------------------------------------------------------

pub unsafe fn hipModuleGetGlobal(
    dptr: *mut hipDeviceptr_t,
    bytes: *mut usize,
    module: hipModule_t,
    name: *const c_char,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        // SAFETY: a C string argument of the API (NULL-checked).
        let n = unsafe { cstr(name) }.ok_or(hipErrorInvalidValue)?;
        let m = MODULES.get(module as u64).ok_or(hipErrorInvalidHandle)?;
        const GLOBAL_BYTES: u64 = 256;
        let mut g = lock(&m.globals);
        let addr = match g.get(n) {
            Some(&a) => a,
            None => {
                let ord = m.ordinal.load(Relaxed) as c_int;
                let a = dev_alloc(
                    r,
                    ord,
                    kind::GLOBAL,
                    GLOBAL_BYTES,
                    ALLOC_ALIGN,
                    ALLOC_ALIGN,
                    0,
                )?;
                g.insert(n.to_string(), a);
                a
            }
        };
        if !dptr.is_null() {
            // SAFETY: optional out-pointer of the C API (NULL-checked).
            unsafe { dptr.write(addr as hipDeviceptr_t) };
        }
        if !bytes.is_null() {
            // SAFETY: as above.
            unsafe { bytes.write(GLOBAL_BYTES as usize) };
        }
        Ok(())
    })())
}

pub unsafe fn hipFuncGetAttribute(
    value: *mut c_int,
    attrib: hipFunction_attribute,
    function: hipFunction_t,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        FUNCS.get(function as u64).ok_or(hipErrorInvalidHandle)?;
        let i = r.info(current_device())?;
        let smem = i.smem_per_sm as c_int;
        let isa = (i.cc_major * 10 + i.cc_minor) as c_int;
        let v = match attrib {
            0 => 1024,    // max threads per block
            1..=3 => 0,   // static shared, const, local bytes
            4 => 32,      // registers
            5 | 6 => isa, // PTX / binary version: major * 10 + minor of the device
            7 => 0,
            8 => smem, // max dynamic shared bytes
            9 => -1,   // preferred carveout
            _ => return Err(hipErrorInvalidValue),
        };
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(value, v) }
    })())
}

fn registered(f: *const c_void) -> Res {
    let map = HOST_FUNCS.read().unwrap_or_else(|e| e.into_inner());
    map.contains_key(&(f as usize))
        .then_some(())
        .ok_or(hipErrorInvalidDeviceFunction)
}

/// Resident blocks per CU: limited by threads (the model's threads per CU) and 32 blocks.
fn blocks_per_cu(threads_per_cu: u32, block: c_int) -> c_int {
    ((threads_per_cu as c_int) / block.max(1)).clamp(0, 32)
}

pub unsafe fn hipOccupancyMaxActiveBlocksPerMultiprocessor(
    num_blocks: *mut c_int,
    f: *const c_void,
    block_size: c_int,
    _dyn_shared: usize,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        registered(f)?;
        if block_size <= 0 || block_size > 1024 {
            return Err(hipErrorInvalidValue);
        }
        let i = r.info(current_device())?;
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(num_blocks, blocks_per_cu(i.threads_per_sm, block_size)) }
    })())
}

pub unsafe fn hipOccupancyMaxPotentialBlockSize(
    grid_size: *mut c_int,
    block_size: *mut c_int,
    f: *const c_void,
    _dyn_shared: usize,
    limit: c_int,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        registered(f)?;
        if grid_size.is_null() || block_size.is_null() {
            return Err(hipErrorInvalidValue);
        }
        let i = r.info(current_device())?;
        let b = if limit > 0 { limit.min(1024) } else { 1024 };
        // SAFETY: both out-pointers checked non-NULL above.
        unsafe {
            block_size.write(b);
            grid_size.write(i.sms as c_int * blocks_per_cu(i.threads_per_sm, b));
        }
        Ok(())
    })())
}

pub unsafe fn hipCreateSurfaceObject(
    surface: *mut hipSurfaceObject_t,
    res_desc: *const c_void,
) -> hipError_t {
    code((|| {
        let r = rt()?;
        if surface.is_null() || res_desc.is_null() {
            return Err(hipErrorInvalidValue);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let h = NEXT.fetch_add(1, Relaxed);
        lock(&r.mem).surfaces.insert(h);
        // SAFETY: checked non-NULL; the caller's out-pointer.
        unsafe { surface.write(h) };
        Ok(())
    })())
}

pub unsafe fn hipDestroySurfaceObject(surface: hipSurfaceObject_t) -> hipError_t {
    code((|| {
        let r = rt()?;
        if !lock(&r.mem).surfaces.remove(&surface) {
            return Err(hipErrorInvalidHandle);
        }
        Ok(())
    })())
}

// ---- capture info, graph dump ----------------------------------------------------------------------

fn capture_status(s: hipStream_t) -> Res<(c_int, u64)> {
    let h = s as usize;
    if h == HIP_STREAM_LEGACY || h == HIP_STREAM_PER_THREAD {
        return Ok((HIP_STREAM_CAPTURE_STATUS_NONE, 0));
    }
    let st = STREAMS.get(h as u64).ok_or(hipErrorInvalidHandle)?;
    Ok(if st.capturing.load(Acquire) {
        (HIP_STREAM_CAPTURE_STATUS_ACTIVE, h as u64)
    } else {
        (HIP_STREAM_CAPTURE_STATUS_NONE, 0)
    })
}

pub unsafe fn hipStreamGetCaptureInfo(
    s: hipStream_t,
    status: *mut hipStreamCaptureStatus,
    id: *mut c_ulonglong,
) -> hipError_t {
    code((|| {
        rt()?;
        let (st, cid) = capture_status(s)?;
        // SAFETY: out-pointer argument of the C API: NULL-checked by `put`.
        unsafe { put(status, st)? };
        if !id.is_null() {
            // SAFETY: optional out-pointer (NULL-checked).
            unsafe { id.write(cid) };
        }
        Ok(())
    })())
}

pub unsafe fn hipStreamGetCaptureInfo_v2(
    s: hipStream_t,
    status: *mut hipStreamCaptureStatus,
    id: *mut c_ulonglong,
    graph: *mut hipGraph_t,
    deps: *mut hipGraphNode_const_ptr,
    num_deps: *mut usize,
) -> hipError_t {
    code((|| {
        // SAFETY: same arguments and contract.
        code_res(unsafe { hipStreamGetCaptureInfo(s, status, id) })?;
        // The graph being built is not visible before hipStreamEndCapture; no dependencies.
        // SAFETY: optional out-pointers (NULL-checked).
        unsafe {
            if !graph.is_null() {
                graph.write(std::ptr::null_mut());
            }
            if !deps.is_null() {
                deps.write(std::ptr::null());
            }
            if !num_deps.is_null() {
                num_deps.write(0);
            }
        }
        Ok(())
    })())
}

/// Writes the graph as DOT: one node per kernel with its block count, in capture order.
pub unsafe fn hipGraphDebugDotPrint(
    graph: hipGraph_t,
    path: *const c_char,
    _flags: c_uint,
) -> hipError_t {
    code((|| {
        rt()?;
        let g = GRAPHS.get(graph as u64).ok_or(hipErrorInvalidValue)?;
        // SAFETY: a C string argument of the API (NULL-checked).
        let p = unsafe { cstr(path) }.ok_or(hipErrorInvalidValue)?;
        let mut dot = String::from("digraph hipGraph {\n");
        let nodes = lock(&g.nodes).clone();
        for (i, n) in nodes.iter().enumerate() {
            dot.push_str(&format!("  n{i} [label=\"kernel {} blocks\"];\n", n.blocks));
            if i > 0 {
                dot.push_str(&format!("  n{} -> n{i};\n", i - 1));
            }
        }
        dot.push_str("}\n");
        std::fs::write(p, dot).map_err(|_| hipErrorInvalidValue)
    })())
}
