//! HIP hook bodies: the core's charge protocol (`crate::core::charge`: reserve -> call ->
//! commit; take out -> free -> credit after the real free) through the same ledger and
//! region as CUDA's, with `hipError_t` as its status type ([`Hip`]), by way of
//! `hip_charged`/`hip_credited`. Every hook returns a valid `hipError_t`: the
//! library's own, `hipErrorOutOfMemory` for a refused allocation, or
//! `hipErrorNotInitialized` when there is no HIP library.
//!
//! Where an allocation lands: the calling thread's current HIP device (`hipGetDevice`, kept
//! per thread: `current_device`);
//! its container device index is `binding::container_index` (by ROCr UUID when
//! `ROCR_VISIBLE_DEVICES` lists UUIDs, else the HIP ordinal).

#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::ffi::{c_char, c_void};

use hip_headers::prelude::*;

use super::real_or_return;
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
pub(super) fn device_owner(ordinal: c_int) -> u64 {
    0xA3D0_0000_0000_0000 | ordinal as u32 as u64
}

/// [`CURRENT_ORDINAL`]'s "not known: ask the library".
const UNKNOWN_ORDINAL: c_int = -1;

thread_local! {
    /// The calling thread's current HIP ordinal as the library last answered it, or as a
    /// hooked `hipSetDevice` set it; [`UNKNOWN_ORDINAL`] until asked, and again after any
    /// hooked call that may move the thread's device (`hipSetDevice` that failed,
    /// `hipDeviceReset`, the `hipCtx*` calls that change the thread's context stack). Every
    /// call that changes a thread's device in HIP is in that list, so the cache answers
    /// what `hipGetDevice` would, with no call. A const thread-local without `Drop`: no
    /// allocation and no destructor registration in the preloaded library.
    static CURRENT_ORDINAL: std::cell::Cell<c_int> = const { std::cell::Cell::new(UNKNOWN_ORDINAL) };
}

/// The calling thread's device may have moved (a hooked call that changes it): ask the
/// library on the next charged call.
pub(crate) fn current_device_unknown() {
    CURRENT_ORDINAL.set(UNKNOWN_ORDINAL);
}

/// The calling thread's HIP device: (ordinal, container index). From the thread's cache
/// ([`CURRENT_ORDINAL`]): the real `hipGetDevice` only on a thread's first charged call
/// and after a call that moved its device.
#[inline]
pub(crate) fn current_device() -> Option<(c_int, usize)> {
    let mut d = CURRENT_ORDINAL.get();
    if d == UNKNOWN_ORDINAL {
        d = ask_current_device()?;
    }
    super::binding::container_index(d).map(|i| (d, i))
}

/// The real `hipGetDevice`'s answer, kept in the thread's cache.
#[cold]
fn ask_current_device() -> Option<c_int> {
    let get = super::real::hipGetDevice()?;
    let mut d: c_int = UNKNOWN_ORDINAL;
    // SAFETY: valid out-pointer.
    if unsafe { get(&mut d) } != hipSuccess || d < 0 {
        return None;
    }
    CURRENT_ORDINAL.set(d);
    Some(d)
}

/// The library changes the thread's device; the cache follows: the ordinal on success,
/// asked again otherwise.
pub unsafe fn hipSetDevice(device: c_int) -> hipError_t {
    let real = real_or_return!(hipSetDevice);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(device) };
    CURRENT_ORDINAL.set(if rc == hipSuccess && device >= 0 {
        device
    } else {
        UNKNOWN_ORDINAL
    });
    rc
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
    hip_charged_to(what, place, None, bytes, kind, call)
}

/// [`hip_charged`] with the entry's owner given (what a later `release_owned_by` frees all
/// at once); `None`: the device's owner, released by `hipDeviceReset`.
fn hip_charged_to(
    what: &str,
    place: Option<(c_int, usize)>,
    owner: Option<u64>,
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
    if current == Some((ordinal, device)) && !super::context::ensure_charged(ordinal, device) {
        return hipErrorOutOfMemory;
    }
    let owner = owner.unwrap_or(device_owner(ordinal));
    crate::core::charge::charged_on::<Hip>(what, device, owner, bytes, kind, call)
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
    if !super::context::ensure_charged(ordinal, device) {
        return hipErrorOutOfMemory;
    }
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

/// Forwarded, as CUDA's `cuMemPoolDestroy` is: the runtime releases only the pool's cached
/// (already freed, already credited) memory; every allocation still live keeps a reference
/// on the pool (clr's `MemoryPool::AllocateMemory` retains it) and stays valid, and charged,
/// until its own `hipFree`/`hipFreeAsync` credits it (docs/AMD.md).
pub unsafe fn hipMemPoolDestroy(pool: hipMemPool_t) -> hipError_t {
    let real = real_or_return!(hipMemPoolDestroy);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(pool) }
}

// ---- graph memory nodes (CUDA's rule, `hooks::memory::cuGraphAddMemAllocNode`) ----------

/// The node's memory is charged when the node is added, to the graph (AMD's runtime reserves
/// the address then and backs it from the graph's pool when the graph runs; the graph keeps
/// it until destroyed): an explicit `hipFree`/`hipFreeAsync` of the pointer credits it like
/// any allocation, destroying the graph credits what is left.
pub unsafe fn hipGraphAddMemAllocNode(
    node: *mut hipGraphNode_t,
    graph: hipGraph_t,
    dependencies: *const hipGraphNode_t,
    num_dependencies: usize,
    params: *mut hipMemAllocNodeParams,
) -> hipError_t {
    let real = real_or_return!(hipGraphAddMemAllocNode);
    // SAFETY: the caller's node parameters, read only when non-null.
    let device = (!params.is_null())
        .then(|| unsafe { ((*params).poolProps.location, (*params).bytesize) })
        .filter(|(l, _)| l.type_ == HIP_MEM_LOCATION_TYPE_DEVICE)
        .and_then(|(l, bytes)| {
            let i = super::binding::container_index(l.id)?;
            Some(((l.id, i), bytes as u64))
        });
    match device {
        Some((place, bytes)) => hip_charged_to(
            "hipGraphAddMemAllocNode",
            Some(place),
            Some(graph as u64),
            bytes,
            AllocKind::Data,
            // SAFETY: the caller's arguments, unchanged, to the real function of this row;
            // `params` is non-null on this arm and the library writes `dptr` into it.
            || unsafe {
                let rc = real(node, graph, dependencies, num_dependencies, params);
                (rc, (*params).dptr as u64)
            },
        ),
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        None => unsafe { real(node, graph, dependencies, num_dependencies, params) },
    }
}

/// What the graph's memory nodes still hold is credited once the real destroy succeeded.
pub unsafe fn hipGraphDestroy(graph: hipGraph_t) -> hipError_t {
    let real = real_or_return!(hipGraphDestroy);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(graph) };
    if rc == hipSuccess && !graph.is_null() {
        rt().ledger.release_owned_by(graph as u64);
    }
    rc
}

// ---- arrays ---------------------------------------------------------------------------
//
// HIP has no call that says what an array occupies on the card (CUDA's
// `cuArrayGetMemoryRequirements` has no HIP twin), so every array is charged its elements'
// bytes: the library's own rounding (2 MiB in the simulator, the texture alignment on
// hardware) is not seen and can pass the cap by that much (docs/AMD.md).

/// Bytes of one element of `desc` (the four channels' bits).
fn channel_element_bytes(desc: &hipChannelFormatDesc) -> u64 {
    [desc.x, desc.y, desc.z, desc.w]
        .iter()
        .map(|&b| b.max(0) as u64 / 8)
        .sum()
}

/// Bytes of one element of a driver-style descriptor: an unknown format counts as the
/// widest (4 bytes a channel), so a descriptor the library accepts is never under-charged.
fn format_element_bytes(format: hipArray_Format, channels: c_uint) -> u64 {
    hip_headers::types::array_format_bytes(format)
        .unwrap_or(4)
        .saturating_mul(channels as u64)
}

/// The bytes of a `width` x `height` x `depth` array of `elem`-byte elements (0 height or
/// depth: a 1D or 2D array).
pub fn array_element_bytes(elem: u64, width: usize, height: usize, depth: usize) -> u64 {
    elem.saturating_mul(width as u64)
        .saturating_mul(height.max(1) as u64)
        .saturating_mul(depth.max(1) as u64)
}

/// The bytes of every level of a mipmapped array: level `l` is `width >> l` x `height >> l`
/// x `depth >> l` (each at least 1 where the dimension exists); a layered or cubemap array's
/// depth counts layers, which levels do not halve.
pub fn mipmap_element_bytes(elem: u64, extent: hipExtent, levels: c_uint, flags: c_uint) -> u64 {
    let layered = flags & (HIP_ARRAY_LAYERED | HIP_ARRAY_CUBEMAP) != 0;
    let halve = |v: usize, l: u32| if v == 0 { 0 } else { (v >> l).max(1) };
    (0..levels.min(64)).fold(0u64, |sum, l| {
        let depth = if layered {
            extent.depth
        } else {
            halve(extent.depth, l)
        };
        sum.saturating_add(array_element_bytes(
            elem,
            (extent.width >> l).max(1),
            halve(extent.height, l),
            depth,
        ))
    })
}

/// [`hip_charged`] for an array of `bytes` on the current device, the new handle written by
/// `call` (the library) to `array`.
///
/// # Safety
/// `array` is null or valid to read once `call` returned (the caller's out-pointer).
unsafe fn hip_charged_array(
    what: &str,
    array: *mut *mut c_void,
    bytes: u64,
    call: impl FnOnce() -> hipError_t,
) -> hipError_t {
    hip_charged(what, None, bytes, AllocKind::Array, || {
        let rc = call();
        // SAFETY: the caller's promise on `array`; `read_ptr` checks for null.
        (rc, unsafe { read_ptr(array) })
    })
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
    let elem = channel_element_bytes(unsafe { &*desc });
    let bytes = array_element_bytes(elem, width, height, 0);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe {
        hip_charged_array("hipMallocArray", array.cast(), bytes, || {
            real(array, desc, width, height, flags)
        })
    }
}

pub unsafe fn hipMalloc3DArray(
    array: *mut hipArray_t,
    desc: *const hipChannelFormatDesc,
    extent: hipExtent,
    flags: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipMalloc3DArray);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc, extent, flags) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let elem = channel_element_bytes(unsafe { &*desc });
    let bytes = array_element_bytes(elem, extent.width, extent.height, extent.depth);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe {
        hip_charged_array("hipMalloc3DArray", array.cast(), bytes, || {
            real(array, desc, extent, flags)
        })
    }
}

pub unsafe fn hipArrayCreate(
    array: *mut hipArray_t,
    desc: *const HIP_ARRAY_DESCRIPTOR,
) -> hipError_t {
    let real = real_or_return!(hipArrayCreate);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let d = unsafe { *desc };
    let elem = format_element_bytes(d.Format, d.NumChannels);
    let bytes = array_element_bytes(elem, d.Width, d.Height, 0);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe { hip_charged_array("hipArrayCreate", array.cast(), bytes, || real(array, desc)) }
}

pub unsafe fn hipArray3DCreate(
    array: *mut hipArray_t,
    desc: *const HIP_ARRAY3D_DESCRIPTOR,
) -> hipError_t {
    let real = real_or_return!(hipArray3DCreate);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let d = unsafe { *desc };
    let elem = format_element_bytes(d.Format, d.NumChannels);
    let bytes = array_element_bytes(elem, d.Width, d.Height, d.Depth);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe {
        hip_charged_array("hipArray3DCreate", array.cast(), bytes, || {
            real(array, desc)
        })
    }
}

pub unsafe fn hipMallocMipmappedArray(
    array: *mut hipMipmappedArray_t,
    desc: *const hipChannelFormatDesc,
    extent: hipExtent,
    num_levels: c_uint,
    flags: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipMallocMipmappedArray);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc, extent, num_levels, flags) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let elem = channel_element_bytes(unsafe { &*desc });
    let bytes = mipmap_element_bytes(elem, extent, num_levels, flags);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe {
        hip_charged_array("hipMallocMipmappedArray", array.cast(), bytes, || {
            real(array, desc, extent, num_levels, flags)
        })
    }
}

pub unsafe fn hipMipmappedArrayCreate(
    array: *mut hipMipmappedArray_t,
    desc: *mut HIP_ARRAY3D_DESCRIPTOR,
    num_levels: c_uint,
) -> hipError_t {
    let real = real_or_return!(hipMipmappedArrayCreate);
    if desc.is_null() {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(array, desc, num_levels) };
    }
    // SAFETY: non-null, the caller's descriptor.
    let d = unsafe { *desc };
    let elem = format_element_bytes(d.Format, d.NumChannels);
    let extent = hipExtent {
        width: d.Width,
        height: d.Height,
        depth: d.Depth,
    };
    let bytes = mipmap_element_bytes(elem, extent, num_levels, d.Flags);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row; `array`
    // is the caller's out-pointer.
    unsafe {
        hip_charged_array("hipMipmappedArrayCreate", array.cast(), bytes, || {
            real(array, desc, num_levels)
        })
    }
}

pub unsafe fn hipFreeArray(array: hipArray_t) -> hipError_t {
    let real = real_or_return!(hipFreeArray);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Array, array as u64, || unsafe { real(array) })
}

pub unsafe fn hipArrayDestroy(array: hipArray_t) -> hipError_t {
    let real = real_or_return!(hipArrayDestroy);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Array, array as u64, || unsafe { real(array) })
}

pub unsafe fn hipFreeMipmappedArray(array: hipMipmappedArray_t) -> hipError_t {
    let real = real_or_return!(hipFreeMipmappedArray);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Array, array as u64, || unsafe { real(array) })
}

pub unsafe fn hipMipmappedArrayDestroy(array: hipMipmappedArray_t) -> hipError_t {
    let real = real_or_return!(hipMipmappedArrayDestroy);
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
        Some(l) if l.type_ == HIP_MEM_LOCATION_TYPE_DEVICE => {
            super::binding::container_index(l.id).map(|i| (l.id, i))
        }
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

// ---- contexts (deprecated): they move the thread's device ------------------------------

/// A `hipCtx*` call that changes the calling thread's context stack, and so its current
/// device: the real call, then the thread's cached device is asked again.
macro_rules! moves_current_device {
    ($name:ident ( $( $arg:ident : $ty:ty ),* )) => {
        pub unsafe fn $name($($arg: $ty),*) -> hipError_t {
            let real = real_or_return!($name);
            // SAFETY: the caller's arguments, unchanged, to the real function of this row.
            let rc = unsafe { real($($arg),*) };
            current_device_unknown();
            rc
        }
    };
}
moves_current_device!(hipCtxCreate(ctx: *mut hipCtx_t, flags: c_uint, device: hipDevice_t));
moves_current_device!(hipCtxDestroy(ctx: hipCtx_t));
moves_current_device!(hipCtxSetCurrent(ctx: hipCtx_t));
moves_current_device!(hipCtxPushCurrent(ctx: hipCtx_t));
moves_current_device!(hipCtxPopCurrent(ctx: *mut hipCtx_t));

// ---- device reset ---------------------------------------------------------------------

/// The library frees everything the device held: its entries leave the ledger after the
/// real reset succeeded.
pub unsafe fn hipDeviceReset() -> hipError_t {
    let real = real_or_return!(hipDeviceReset);
    let place = current_device();
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real() };
    current_device_unknown();
    if rc == hipSuccess {
        if let Some((ordinal, device)) = place {
            rt().ledger.release_owned_by(device_owner(ordinal));
            super::context::forget(ordinal, device);
        }
    }
    rc
}

// ---- modules (charged: `context::module_charged`) --------------------------------------

/// Charges the module `load` writes to `module` on the current device (docs/AMD.md).
///
/// # Safety
/// `module` is null or valid to read once `load` returned (the caller's out-pointer).
unsafe fn hip_module_loaded(
    module: *mut hipModule_t,
    load: impl FnOnce() -> hipError_t,
) -> hipError_t {
    let Some((ordinal, device)) = current_device().filter(|_| !rt().config.control_disabled) else {
        return load();
    };
    super::context::module_charged(ordinal, device, device_owner(ordinal), || {
        let rc = load();
        // SAFETY: the caller's out-pointer, filled by the library on success.
        (rc, unsafe { read_ptr(module) })
    })
}

pub unsafe fn hipModuleLoad(module: *mut hipModule_t, fname: *const c_char) -> hipError_t {
    let real = real_or_return!(hipModuleLoad);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { hip_module_loaded(module, || real(module, fname)) }
}

pub unsafe fn hipModuleLoadData(module: *mut hipModule_t, image: *const c_void) -> hipError_t {
    let real = real_or_return!(hipModuleLoadData);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { hip_module_loaded(module, || real(module, image)) }
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
    unsafe {
        hip_module_loaded(module, || {
            real(module, image, num_options, options, option_values)
        })
    }
}

/// Credited after the library unloaded it.
pub unsafe fn hipModuleUnload(module: hipModule_t) -> hipError_t {
    let real = real_or_return!(hipModuleUnload);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    hip_credited(AllocKind::Module, module as u64, || unsafe { real(module) })
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
    let modules = unsafe { real(data) };
    super::context::fatbin_registered(modules as u64);
    modules
}

pub unsafe fn __hipUnregisterFatBinary(modules: *mut *mut c_void) {
    let real = real_or_return!(__hipUnregisterFatBinary);
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(modules) };
    super::context::fatbin_unregistered(modules as u64);
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

/// `hipGetDriverEntryPoint`(`_spt`): answered like [`hipGetProcAddress`], the real answer
/// with our hook substituted for a row we hook.
macro_rules! driver_entry_point_hook {
    ($name:ident) => {
        pub unsafe fn $name(
            symbol: *const c_char,
            func_ptr: *mut *mut c_void,
            flags: c_ulonglong,
            driver_status: *mut hipDriverEntryPointQueryResult,
        ) -> hipError_t {
            let real = real_or_return!($name);
            // SAFETY: the caller's arguments, unchanged, to the real function of this row.
            let rc = unsafe { real(symbol, func_ptr, flags, driver_status) };
            if rc == hipSuccess && !func_ptr.is_null() {
                // SAFETY: filled by the library on success; non-null.
                unsafe { *func_ptr = super::substitute_proc(*func_ptr) };
            }
            rc
        }
    };
}
driver_entry_point_hook!(hipGetDriverEntryPoint);
driver_entry_point_hook!(hipGetDriverEntryPoint_spt);

// ---- what the application sees --------------------------------------------------------

/// The slice of HIP device `ordinal`, when it has a limit.
fn slice_of(ordinal: c_int, physical_total: u64) -> Option<u64> {
    let device = super::binding::container_index(ordinal)?;
    let limit = rt().ledger.limit(device)?;
    Some(crate::core::charge::visible_total(limit, physical_total))
}

pub unsafe fn hipMemGetInfo(free: *mut usize, total: *mut usize) -> hipError_t {
    let real = real_or_return!(hipMemGetInfo);
    let Some((ordinal, device)) = current_device() else {
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        return unsafe { real(free, total) };
    };
    if !rt().config.control_disabled && !super::context::ensure_charged(ordinal, device) {
        return hipErrorOutOfMemory;
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
    fn array_bytes_count_every_channel_and_dimension() {
        let d = hipChannelFormatDesc {
            x: 32,
            y: 32,
            z: 0,
            w: 0,
            f: 2,
        };
        let elem = channel_element_bytes(&d);
        assert_eq!(elem, 8);
        assert_eq!(array_element_bytes(elem, 100, 0, 0), 800);
        assert_eq!(array_element_bytes(elem, 100, 3, 0), 2400);
        assert_eq!(array_element_bytes(elem, 100, 3, 5), 12000);
        assert_eq!(format_element_bytes(HIP_AD_FORMAT_HALF, 4), 8);
        assert_eq!(format_element_bytes(HIP_AD_FORMAT_UNSIGNED_INT8, 2), 2);
        assert_eq!(
            format_element_bytes(0x77, 1),
            4,
            "unknown format: the widest"
        );
    }

    #[test]
    fn mipmap_levels_halve_each_dimension_but_not_layers() {
        let e = |w, h, d| hipExtent {
            width: w,
            height: h,
            depth: d,
        };
        // 2D 8x4 of 4-byte texels, 4 levels: 8x4 + 4x2 + 2x1 + 1x1 (height floors at 1).
        assert_eq!(
            mipmap_element_bytes(4, e(8, 4, 0), 4, 0),
            4 * (32 + 8 + 2 + 1)
        );
        // 1D stays 1D.
        assert_eq!(mipmap_element_bytes(1, e(8, 0, 0), 3, 0), 8 + 4 + 2);
        // 3D: depth halves too.
        assert_eq!(mipmap_element_bytes(1, e(4, 4, 4), 2, 0), 64 + 8);
        // Layered: 6 layers at every level.
        assert_eq!(
            mipmap_element_bytes(1, e(4, 4, 6), 2, HIP_ARRAY_LAYERED),
            6 * (16 + 4)
        );
        assert_eq!(mipmap_element_bytes(4, e(8, 4, 0), 0, 0), 0);
    }

    #[test]
    fn device_owners_are_distinct_per_ordinal() {
        assert_ne!(device_owner(0), device_owner(1));
        assert_eq!(device_owner(0) >> 48, 0xA3D0);
    }
}
