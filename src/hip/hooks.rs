//! HIP hook bodies: the core's charge protocol (`crate::core::charge`: reserve -> call ->
//! commit; take out -> free -> credit after the real free) through the same ledger and
//! region as CUDA's, with `hipError_t` as its status type ([`Hip`]), by way of
//! `hip_charged`/`hip_credited`. Every hook returns a valid `hipError_t`: the
//! library's own, `hipErrorOutOfMemory` for a refused allocation, or
//! `hipErrorNotInitialized` when there is no HIP library.
//!
//! Where an allocation lands: the calling thread's current HIP device (`hipGetDevice`);
//! the container device index is the HIP ordinal (the runtime already applied
//! `ROCR_VISIBLE_DEVICES`/`HIP_VISIBLE_DEVICES`, so ordinal `i` is the container's `i`th
//! device, which `HIP_DEVICE_MEMORY_LIMIT_<i>` names).

#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::ffi::{c_char, c_void};

use hip_headers::prelude::*;

use super::real_or_return;
use crate::config::MAX_DEVICES;
use crate::core::runtime::rt;
use crate::ledger::AllocKind;

/// HIP's status codes for the charge protocol (`crate::core::charge`).
pub struct Hip;

impl crate::core::charge::Api for Hip {
    type Status = hipError_t;
    const SUCCESS: hipError_t = hipSuccess;
    const OUT_OF_MEMORY: hipError_t = hipErrorOutOfMemory;
}

/// Owner key of allocations made on a HIP device (what `hipDeviceReset` releases): HIP has
/// no context handle, and CUDA's owners are context addresses, which never look like this.
fn device_owner(ordinal: c_int) -> u64 {
    0xA3D0_0000_0000_0000 | ordinal as u32 as u64
}

/// The calling thread's HIP device: (ordinal, container index).
pub(crate) fn current_device() -> Option<(c_int, usize)> {
    let get = super::real::hipGetDevice()?;
    let mut d: c_int = -1;
    // SAFETY: valid out-pointer.
    if unsafe { get(&mut d) } != hipSuccess {
        return None;
    }
    usize::try_from(d)
        .ok()
        .filter(|&i| i < MAX_DEVICES)
        .map(|i| (d, i))
}

/// Charges `bytes` of `kind` on `place` (or the current device) around `call`, which
/// returns the library's result and, on success, the new handle. The core runs the
/// protocol; the library's own `hipError_t` goes back to the caller unchanged.
fn hip_charged(
    what: &str,
    place: Option<(c_int, usize)>,
    bytes: u64,
    kind: AllocKind,
    call: impl FnOnce() -> (hipError_t, u64),
) -> hipError_t {
    let rt = rt();
    let current = current_device();
    let Some((ordinal, device)) = place.or(current).filter(|_| !rt.config.control_disabled) else {
        return call().0;
    };
    // The context is measured on the current device (the real hipMemGetInfo's); a VMM
    // handle for another device waits for that device's own first use.
    if current == Some((ordinal, device)) {
        super::context::ensure_charged(ordinal, device);
    }
    crate::core::charge::charged_on::<Hip>(what, device, device_owner(ordinal), bytes, kind, call)
}

/// Credits `handle` around the library's free `call` (after the real free succeeded; put
/// back if it failed).
fn hip_credited(kind: AllocKind, handle: u64, call: impl FnOnce() -> hipError_t) -> hipError_t {
    crate::core::charge::credited::<Hip>(kind, handle, call)
}

/// Like [`hip_charged`] for allocations whose size the library decides (pitch, 3D):
/// reserves `estimate`, calls, then corrects the reservation to `actual(handle)`; a
/// correction that does not fit frees the allocation and reports out-of-memory.
fn hip_charged_sized(
    what: &str,
    estimate: u64,
    call: impl FnOnce() -> (hipError_t, u64),
    actual: impl FnOnce() -> u64,
) -> hipError_t {
    let rt = rt();
    let Some((ordinal, device)) = current_device().filter(|_| !rt.config.control_disabled) else {
        return call().0;
    };
    super::context::ensure_charged(ordinal, device);
    let mut reservation = match rt.ledger.reserve(device, estimate, AllocKind::Data) {
        Ok(r) => r.owned_by(device_owner(ordinal)),
        Err(e) => {
            crate::core::charge::log_refusal(what, e);
            return hipErrorOutOfMemory;
        }
    };
    let (rc, handle) = call();
    if rc != hipSuccess {
        return rc;
    }
    if !reservation.resize(actual()) {
        if let Some(free) = super::real::hipFree() {
            // SAFETY: the pointer the library just returned.
            unsafe { free(handle as *mut c_void) };
        }
        drop(reservation);
        return hipErrorOutOfMemory;
    }
    reservation.commit(handle);
    rc
}

unsafe fn read<T: Copy + Default>(p: *const T) -> T {
    if p.is_null() {
        T::default()
    } else {
        // SAFETY: the library wrote it on success; non-null.
        unsafe { *p }
    }
}

unsafe fn read_ptr(p: *mut *mut c_void) -> u64 {
    if p.is_null() {
        0
    } else {
        // SAFETY: the library wrote it on success; non-null.
        unsafe { *p as u64 }
    }
}

/// [`hip_charged`] for the common shape: `size` bytes of device data on the current device,
/// the new pointer written by `call` (the library) to `ptr`.
///
/// # Safety
/// `ptr` is null or valid to read once `call` returned (the caller's out-pointer).
unsafe fn hip_charged_data(
    what: &str,
    ptr: *mut *mut c_void,
    size: usize,
    call: impl FnOnce() -> hipError_t,
) -> hipError_t {
    hip_charged(what, None, size as u64, AllocKind::Data, || {
        let rc = call();
        // SAFETY: the caller's promise on `ptr`; `read_ptr` checks for null.
        (rc, unsafe { read_ptr(ptr) })
    })
}

/// [`hip_charged_sized`] for pitched 2D allocations: `width` x `height` bytes reserved,
/// corrected to the `pitch` x `height` the library chose.
///
/// # Safety
/// `ptr` and `pitch` are null or valid to read once `call` returned (the caller's
/// out-pointers).
unsafe fn hip_charged_pitch(
    what: &str,
    ptr: *mut *mut c_void,
    pitch: *mut usize,
    width: usize,
    height: usize,
    call: impl FnOnce() -> hipError_t,
) -> hipError_t {
    let rows = height.max(1) as u64;
    hip_charged_sized(
        what,
        (width as u64).saturating_mul(rows),
        || {
            let rc = call();
            // SAFETY: the caller's promise on `ptr`; `read_ptr` checks for null.
            (rc, unsafe { read_ptr(ptr) })
        },
        // SAFETY: the caller's promise on `pitch`; `read` checks for null.
        || unsafe { read(pitch) as u64 }.saturating_mul(rows),
    )
}

/// [`hip_credited`] for device data at `ptr`; a null pointer (nothing to free) goes to the
/// library uncounted.
fn hip_credited_data(ptr: *mut c_void, call: impl FnOnce() -> hipError_t) -> hipError_t {
    if ptr.is_null() {
        return call();
    }
    hip_credited(AllocKind::Data, ptr as u64, call)
}

// ---- linear device memory -------------------------------------------------------------

pub unsafe fn hipMalloc(ptr: *mut *mut c_void, size: usize) -> hipError_t {
    let real = real_or_return!(hipMalloc);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { hip_charged_data("hipMalloc", ptr, size, || real(ptr, size)) }
}

pub unsafe fn hipExtMallocWithFlags(
    ptr: *mut *mut c_void,
    size: usize,
    flags: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipExtMallocWithFlags);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe {
        hip_charged_data("hipExtMallocWithFlags", ptr, size, || {
            real(ptr, size, flags)
        })
    }
}

pub unsafe fn hipMallocManaged(ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t {
    let real = real_or_return!(hipMallocManaged);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { hip_charged_data("hipMallocManaged", ptr, size, || real(ptr, size, flags)) }
}

pub unsafe fn hipMallocPitch(
    ptr: *mut *mut c_void,
    pitch: *mut usize,
    width: usize,
    height: usize,
) -> hipError_t {
    let real = real_or_return!(hipMallocPitch);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe {
        hip_charged_pitch("hipMallocPitch", ptr, pitch, width, height, || {
            real(ptr, pitch, width, height)
        })
    }
}

pub unsafe fn hipMemAllocPitch(
    dptr: *mut hipDeviceptr_t,
    pitch: *mut usize,
    width_in_bytes: usize,
    height: usize,
    element_size_bytes: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipMemAllocPitch);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe {
        hip_charged_pitch(
            "hipMemAllocPitch",
            dptr.cast(),
            pitch,
            width_in_bytes,
            height,
            || real(dptr, pitch, width_in_bytes, height, element_size_bytes),
        )
    }
}

pub unsafe fn hipMalloc3D(pitched: *mut hipPitchedPtr, extent: hipExtent) -> hipError_t {
    let real = real_or_return!(hipMalloc3D);
    let rows = (extent.height.max(1) as u64).saturating_mul(extent.depth.max(1) as u64);
    hip_charged_sized(
        "hipMalloc3D",
        (extent.width as u64).saturating_mul(rows),
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        || unsafe {
            let rc = real(pitched, extent);
            let p = if pitched.is_null() {
                0
            } else {
                (*pitched).ptr as u64
            };
            (rc, p)
        },
        || {
            if pitched.is_null() {
                0
            } else {
                // SAFETY: filled by the library on success.
                (unsafe { (*pitched).pitch } as u64).saturating_mul(rows)
            }
        },
    )
}

pub unsafe fn hipFree(ptr: *mut c_void) -> hipError_t {
    let real = real_or_return!(hipFree);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited_data(ptr, || unsafe { real(ptr) })
}

// ---- stream-ordered allocation ---------------------------------------------------------

pub unsafe fn hipMallocAsync(
    ptr: *mut *mut c_void,
    size: usize,
    stream: hipStream_t,
) -> hipError_t {
    let real = real_or_return!(hipMallocAsync);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { hip_charged_data("hipMallocAsync", ptr, size, || real(ptr, size, stream)) }
}

pub unsafe fn hipMallocFromPoolAsync(
    ptr: *mut *mut c_void,
    size: usize,
    pool: hipMemPool_t,
    stream: hipStream_t,
) -> hipError_t {
    let real = real_or_return!(hipMallocFromPoolAsync);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe {
        hip_charged_data("hipMallocFromPoolAsync", ptr, size, || {
            real(ptr, size, pool, stream)
        })
    }
}

pub unsafe fn hipFreeAsync(ptr: *mut c_void, stream: hipStream_t) -> hipError_t {
    let real = real_or_return!(hipFreeAsync);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited_data(ptr, || unsafe { real(ptr, stream) })
}

/// Forwarded: allocations still live in a destroyed pool stay charged until their
/// `hipFreeAsync` (see docs/AMD.md).
pub unsafe fn hipMemPoolDestroy(pool: hipMemPool_t) -> hipError_t {
    let real = real_or_return!(hipMemPoolDestroy);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(pool) }
}

// ---- arrays ---------------------------------------------------------------------------

/// The bytes of a `width` x `height` array of `desc` elements (what the elements take;
/// the library may round up further, which is not seen: docs/AMD.md).
pub fn array_element_bytes(desc: &hipChannelFormatDesc, width: usize, height: usize) -> u64 {
    let elem: u64 = [desc.x, desc.y, desc.z, desc.w]
        .iter()
        .map(|&b| b.max(0) as u64 / 8)
        .sum();
    elem.saturating_mul(width as u64)
        .saturating_mul(height.max(1) as u64)
}

pub unsafe fn hipMallocArray(
    array: *mut hipArray_t,
    desc: *const hipChannelFormatDesc,
    width: usize,
    height: usize,
    flags: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipMallocArray);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc, width, height, flags) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let bytes = array_element_bytes(unsafe { &*desc }, width, height);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `read_ptr` skips
    // a null `array`, else reads the caller's out-pointer (an `hipArray_t`, pointer-sized), valid
    // by the HIP contract this hook requires.
    hip_charged("hipMallocArray", None, bytes, AllocKind::Array, || unsafe {
        let rc = real(array, desc, width, height, flags);
        (rc, read_ptr(array.cast()))
    })
}

pub unsafe fn hipFreeArray(array: hipArray_t) -> hipError_t {
    let real = real_or_return!(hipFreeArray);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Array, array as u64, || unsafe { real(array) })
}

// ---- virtual memory management --------------------------------------------------------

pub unsafe fn hipMemCreate(
    handle: *mut hipMemGenericAllocationHandle_t,
    size: usize,
    prop: *const hipMemAllocationProp,
    flags: c_ulonglong,
) -> hipError_t {
    let real = real_or_return!(hipMemCreate);
    // SAFETY: the caller's property struct, read only when non-null.
    let location = (!prop.is_null()).then(|| unsafe { (*prop).location });
    let place = match location {
        Some(l) if l.type_ == HIP_MEM_LOCATION_TYPE_DEVICE => usize::try_from(l.id)
            .ok()
            .filter(|&i| i < MAX_DEVICES)
            .map(|i| (l.id, i)),
        // Host-located (or invalid): never device memory, never charged.
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        _ => return unsafe { real(handle, size, prop, flags) },
    };
    if place.is_none() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(handle, size, prop, flags) };
    }
    hip_charged(
        "hipMemCreate",
        place,
        size as u64,
        AllocKind::Vmm,
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        || unsafe {
            let rc = real(handle, size, prop, flags);
            (rc, read_ptr(handle.cast()))
        },
    )
}

pub unsafe fn hipMemRelease(handle: hipMemGenericAllocationHandle_t) -> hipError_t {
    let real = real_or_return!(hipMemRelease);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Vmm, handle as u64, || unsafe { real(handle) })
}

// ---- IPC (imports are the exporter's memory: not charged again) ------------------------

pub unsafe fn hipIpcOpenMemHandle(
    dev_ptr: *mut *mut c_void,
    handle: hipIpcMemHandle_t,
    flags: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipIpcOpenMemHandle);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(dev_ptr, handle, flags) }
}

pub unsafe fn hipIpcCloseMemHandle(dev_ptr: *mut c_void) -> hipError_t {
    let real = real_or_return!(hipIpcCloseMemHandle);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(dev_ptr) }
}

// ---- device reset ---------------------------------------------------------------------

/// The library frees everything the device held: its entries leave the ledger after the
/// real reset succeeded.
pub unsafe fn hipDeviceReset() -> hipError_t {
    let real = real_or_return!(hipDeviceReset);
    let place = current_device();
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real() };
    if rc == hipSuccess {
        if let Some((ordinal, device)) = place {
            rt().ledger.release_owned_by(device_owner(ordinal));
            super::context::forget(ordinal, device);
        }
    }
    rc
}

// ---- modules (forwarded: module memory is not counted yet, docs/AMD.md) -------------------

pub unsafe fn hipModuleLoad(module: *mut hipModule_t, fname: *const c_char) -> hipError_t {
    let real = real_or_return!(hipModuleLoad);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(module, fname) }
}

pub unsafe fn hipModuleLoadData(module: *mut hipModule_t, image: *const c_void) -> hipError_t {
    let real = real_or_return!(hipModuleLoadData);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(module, image) }
}

pub unsafe fn hipModuleLoadDataEx(
    module: *mut hipModule_t,
    image: *const c_void,
    num_options: c_uint,
    options: *mut hipJitOption,
    option_values: *mut *mut c_void,
) -> hipError_t {
    let real = real_or_return!(hipModuleLoadDataEx);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(module, image, num_options, options, option_values) }
}

pub unsafe fn hipModuleUnload(module: hipModule_t) -> hipError_t {
    let real = real_or_return!(hipModuleUnload);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(module) }
}

pub unsafe fn hipModuleGetGlobal(
    dptr: *mut hipDeviceptr_t,
    bytes: *mut usize,
    module: hipModule_t,
    name: *const c_char,
) -> hipError_t {
    let real = real_or_return!(hipModuleGetGlobal);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(dptr, bytes, module, name) }
}

pub unsafe fn __hipRegisterFatBinary(data: *const c_void) -> *mut *mut c_void {
    let real = real_or_return!(__hipRegisterFatBinary);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(data) }
}

pub unsafe fn __hipUnregisterFatBinary(modules: *mut *mut c_void) {
    let real = real_or_return!(__hipUnregisterFatBinary);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(modules) }
}

// ---- entry points ---------------------------------------------------------------------

/// The real answer, with our hook substituted for every row we hook (matched by the real
/// function's address, so the variant the library chose is the one we hand back).
pub unsafe fn hipGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    hip_version: c_int,
    flags: u64,
    symbol_status: *mut hipDriverProcAddressQueryResult,
) -> hipError_t {
    let real = real_or_return!(hipGetProcAddress);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(symbol, pfn, hip_version, flags, symbol_status) };
    if rc == hipSuccess && !pfn.is_null() {
        // SAFETY: filled by the library on success; non-null.
        unsafe { *pfn = super::substitute_proc(*pfn) };
    }
    rc
}

// ---- what the application sees --------------------------------------------------------

/// The slice of HIP device `ordinal`, when it has a limit.
fn slice_of(ordinal: c_int, physical_total: u64) -> Option<u64> {
    let device = usize::try_from(ordinal).ok().filter(|&i| i < MAX_DEVICES)?;
    let limit = rt().ledger.limit(device)?;
    Some(crate::core::charge::visible_total(limit, physical_total))
}

pub unsafe fn hipMemGetInfo(free: *mut usize, total: *mut usize) -> hipError_t {
    let real = real_or_return!(hipMemGetInfo);
    let Some((ordinal, device)) = current_device() else {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(free, total) };
    };
    if !rt().config.control_disabled {
        super::context::ensure_charged(ordinal, device);
    }
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(free, total) };
    if rc != hipSuccess || free.is_null() || total.is_null() {
        return rc;
    }
    // SAFETY: the library filled both on success.
    unsafe {
        if let Some(slice) = slice_of(ordinal, *total as u64) {
            let slice_free = slice.saturating_sub(rt().ledger.used(device));
            // Never more than the card really has free (other tenants), never below zero.
            *free = slice_free.min(*free as u64) as usize;
            *total = slice as usize;
        }
    }
    rc
}

pub unsafe fn hipDeviceTotalMem(bytes: *mut usize, device: hipDevice_t) -> hipError_t {
    let real = real_or_return!(hipDeviceTotalMem);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(bytes, device) };
    if rc == hipSuccess && !bytes.is_null() {
        // SAFETY: filled by the library on success; non-null.
        unsafe {
            if let Some(slice) = slice_of(device, *bytes as u64) {
                *bytes = slice as usize;
            }
        }
    }
    rc
}

/// A `hipGetDeviceProperties*` hook: the library's answer with `totalGlobalMem` clamped to
/// the slice (the only field written; `$prop` is the layout the row's name binds to).
macro_rules! device_properties_hook {
    ($(#[$doc:meta])* $name:ident, $prop:ty) => {
        $(#[$doc])*
        pub unsafe fn $name(prop: *mut $prop, device: c_int) -> hipError_t {
            let real = real_or_return!($name);
            // SAFETY: the caller's arguments, unchanged, to the real function of this row.
            let rc = unsafe { real(prop, device) };
            if rc == hipSuccess && !prop.is_null() {
                // SAFETY: the struct the library filled; only its own field is written.
                unsafe { clamp_total(&mut (*prop).totalGlobalMem, device) };
            }
            rc
        }
    };
}

device_properties_hook!(
    /// `hipGetDeviceProperties` is the R0000 layout (the name the pre-6.0 ABI binds to).
    hipGetDeviceProperties,
    hipDeviceProp_tR0000
);
device_properties_hook!(hipGetDevicePropertiesR0000, hipDeviceProp_tR0000);
device_properties_hook!(hipGetDevicePropertiesR0600, hipDeviceProp_tR0600);

fn clamp_total(total: &mut usize, device: c_int) {
    if let Some(slice) = slice_of(device, *total as u64) {
        *total = slice as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_bytes_count_every_channel() {
        let d = hipChannelFormatDesc {
            x: 32,
            y: 32,
            z: 0,
            w: 0,
            f: 2,
        };
        assert_eq!(array_element_bytes(&d, 100, 0), 800);
        assert_eq!(array_element_bytes(&d, 100, 3), 2400);
    }

    #[test]
    fn device_owners_are_distinct_per_ordinal() {
        assert_ne!(device_owner(0), device_owner(1));
        assert_eq!(device_owner(0) >> 48, 0xA3D0);
    }
}
