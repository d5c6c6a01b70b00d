//! Allocation paths (DESIGN §4) and what the application sees of memory.
//!
//! Every allocation: find where it lands, reserve in the ledger (refuse with
//! `CUDA_ERROR_OUT_OF_MEMORY` without calling the driver), call the driver, commit or roll
//! back. Every free: take the entry out of the ledger's map first (so an address the driver
//! reuses at once cannot be confused with the old one), call the driver, credit the
//! capacity only once the driver's free succeeded, and put the entry back if the driver
//! refused. Unknown pointers go to the driver untouched.

use std::ffi::c_uint;

use cuda_headers::bindings::*;

use super::{current_placement, real_or_return, Cuda};
use crate::core::charge::{charged_on, credited, log_refusal, visible_total};
use crate::cuda::rt;
use crate::ledger::AllocKind;

/// Charges `bytes` of `kind` on the current device around `call`, which returns the
/// driver's result and, on success, the new handle.
fn charged(
    what: &str,
    bytes: u64,
    kind: AllocKind,
    call: impl FnOnce() -> (CUresult, u64),
) -> CUresult {
    let rt = rt();
    let Some(place) = current_placement().filter(|_| !rt.config.control_disabled) else {
        return call().0;
    };
    charged_on::<Cuda>(what, place.device, place.ctx, bytes, kind, call)
}

/// Like [`charged`] for allocations whose real size the driver decides (pitch, arrays):
/// reserves `estimate`, calls the driver, then corrects the reservation to `actual(handle,
/// ordinal)` when it can be had. A correction that does not fit undoes the allocation and
/// reports out-of-memory: the slice is never passed.
fn charged_sized(
    what: &str,
    estimate: u64,
    kind: AllocKind,
    call: impl FnOnce() -> (CUresult, u64),
    actual: impl FnOnce(u64, CUdevice) -> Option<u64>,
    undo: impl FnOnce(u64),
) -> CUresult {
    let rt = rt();
    let Some(place) = current_placement().filter(|_| !rt.config.control_disabled) else {
        return call().0;
    };
    let mut reservation = match rt.ledger.reserve(place.device, estimate, kind) {
        Ok(r) => r.owned_by(place.ctx),
        Err(e) => {
            log_refusal(what, e);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
    };
    let (rc, handle) = call();
    if rc != CUDA_SUCCESS {
        return rc;
    }
    if let Some(size) = actual(handle, place.ordinal) {
        if !reservation.resize(size) {
            // The driver's free first, then the credit: never more than the slice held.
            undo(handle);
            drop(reservation);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    reservation.commit(handle);
    rc
}

/// What the driver says an array occupies (`cuArrayGetMemoryRequirements`, CUDA 11.6+).
fn array_size(array: u64, ordinal: CUdevice, mipmapped: bool) -> Option<u64> {
    let mut req = CUDA_ARRAY_MEMORY_REQUIREMENTS::default();
    // SAFETY: valid out-pointer; a handle the driver just returned.
    let rc = unsafe {
        if mipmapped {
            crate::cuda::real::cuMipmappedArrayGetMemoryRequirements()?(
                &mut req,
                array as CUmipmappedArray,
                ordinal,
            )
        } else {
            crate::cuda::real::cuArrayGetMemoryRequirements()?(&mut req, array as CUarray, ordinal)
        }
    };
    (rc == CUDA_SUCCESS && req.size > 0).then_some(req.size as u64)
}

unsafe fn read<T: Copy + Default>(p: *const T) -> T {
    if p.is_null() {
        T::default()
    } else {
        // SAFETY: the driver wrote it on success.
        unsafe { *p }
    }
}

// ---- linear device memory -------------------------------------------------------------

pub unsafe fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    let real = real_or_return!(cuMemAlloc_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires; `read` skips a null out-pointer, else
    // reads the caller's out-pointer, valid for a write by that contract.
    charged("cuMemAlloc", bytesize as u64, AllocKind::Data, || unsafe {
        (real(dptr, bytesize), read(dptr))
    })
}

/// Pitch the driver will most likely choose; the real one is charged after the call.
const PITCH_ALIGN: u64 = 512;

pub unsafe fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: c_uint,
) -> CUresult {
    let real = real_or_return!(cuMemAllocPitch_v2);
    let estimate = (width as u64).div_ceil(PITCH_ALIGN) * PITCH_ALIGN * height as u64;
    charged_sized(
        "cuMemAllocPitch",
        estimate,
        AllocKind::Data,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(dptr, pitch, width, height, elem), read(dptr)) },
        // What the driver really took: its pitch times the rows.
        // SAFETY: `read` skips a null `pitch`, else reads the caller's out-pointer, which the
        // driver filled (this runs after its success).
        |_, _| Some(unsafe { read(pitch) } as u64 * height as u64),
        |ptr| {
            if let Some(free) = crate::cuda::real::cuMemFree_v2() {
                // SAFETY: freeing what the driver just returned.
                unsafe { free(ptr) };
            }
        },
    )
}

pub unsafe fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    flags: c_uint,
) -> CUresult {
    let real = real_or_return!(cuMemAllocManaged);
    charged(
        "cuMemAllocManaged",
        bytesize as u64,
        AllocKind::Data,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(dptr, bytesize, flags), read(dptr)) },
    )
}

pub unsafe fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    let real = real_or_return!(cuMemFree_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    credited::<Cuda>(AllocKind::Data, dptr, || unsafe { real(dptr) })
}

// ---- stream-ordered allocation ----------------------------------------------------------

pub unsafe fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    stream: CUstream,
) -> CUresult {
    let real = real_or_return!(cuMemAllocAsync);
    // SAFETY: the caller's contract is this hook's, the one `mem_alloc_async` requires.
    unsafe { mem_alloc_async(real, dptr, bytesize, stream) }
}

/// `cuMemAllocAsync` over `real` (its own or its `_ptsz` twin's: `hooks::ptds`).
unsafe fn mem_alloc_async(
    real: cuda_headers::pfn::cuMemAllocAsync,
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    stream: CUstream,
) -> CUresult {
    charged(
        "cuMemAllocAsync",
        bytesize as u64,
        AllocKind::Data,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(dptr, bytesize, stream), read(dptr)) },
    )
}

super::ptds::with_real!(cuMemAllocAsync => mem_alloc_async; (*mut CUdeviceptr, usize, CUstream));

pub unsafe fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> CUresult {
    let real = real_or_return!(cuMemAllocFromPoolAsync);
    // SAFETY: the caller's contract is this hook's, the one `mem_alloc_from_pool_async`
    // requires.
    unsafe { mem_alloc_from_pool_async(real, dptr, bytesize, pool, stream) }
}

/// `cuMemAllocFromPoolAsync` over `real` (its own or its `_ptsz` twin's: `hooks::ptds`).
unsafe fn mem_alloc_from_pool_async(
    real: cuda_headers::pfn::cuMemAllocFromPoolAsync,
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> CUresult {
    charged(
        "cuMemAllocFromPoolAsync",
        bytesize as u64,
        AllocKind::Data,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(dptr, bytesize, pool, stream), read(dptr)) },
    )
}

super::ptds::with_real!(cuMemAllocFromPoolAsync => mem_alloc_from_pool_async;
    (*mut CUdeviceptr, usize, CUmemoryPool, CUstream));

pub unsafe fn cuMemFreeAsync(dptr: CUdeviceptr, stream: CUstream) -> CUresult {
    let real = real_or_return!(cuMemFreeAsync);
    // SAFETY: the caller's contract is this hook's, the one `mem_free_async` requires.
    unsafe { mem_free_async(real, dptr, stream) }
}

/// `cuMemFreeAsync` over `real` (its own or its `_ptsz` twin's: `hooks::ptds`).
unsafe fn mem_free_async(
    real: cuda_headers::pfn::cuMemFreeAsync,
    dptr: CUdeviceptr,
    stream: CUstream,
) -> CUresult {
    // SAFETY: `real` is the real driver function of this row (or its twin), called with our
    // caller's arguments under the CUDA contract this hook itself requires.
    credited::<Cuda>(AllocKind::Data, dptr, || unsafe { real(dptr, stream) })
}

super::ptds::with_real!(cuMemFreeAsync => mem_free_async; (CUdeviceptr, CUstream));

// ---- arrays -------------------------------------------------------------------------------

/// Bytes per element of an array format (unknown formats count as 4, the widest common).
fn format_bytes(format: CUarray_format) -> u64 {
    match format {
        CU_AD_FORMAT_UNSIGNED_INT8 | CU_AD_FORMAT_SIGNED_INT8 => 1,
        CU_AD_FORMAT_UNSIGNED_INT16 | CU_AD_FORMAT_SIGNED_INT16 | CU_AD_FORMAT_HALF => 2,
        _ => 4,
    }
}

/// An array's footprint: elements x channels x element size, each dimension at least 1.
pub fn array_footprint(
    width: usize,
    height: usize,
    depth: usize,
    format: CUarray_format,
    channels: c_uint,
) -> u64 {
    (width.max(1) as u64)
        .saturating_mul(height.max(1) as u64)
        .saturating_mul(depth.max(1) as u64)
        .saturating_mul(channels.max(1) as u64)
        .saturating_mul(format_bytes(format))
}

/// A mipmapped array's footprint: every level halves each dimension (min 1).
pub fn mipmapped_footprint(desc: &CUDA_ARRAY3D_DESCRIPTOR, levels: c_uint) -> u64 {
    let (mut w, mut h, mut d) = (desc.Width, desc.Height, desc.Depth);
    let mut total = 0u64;
    for _ in 0..levels.max(1) {
        total = total.saturating_add(array_footprint(w, h, d, desc.Format, desc.NumChannels));
        w = (w / 2).max(1);
        h = if h == 0 { 0 } else { (h / 2).max(1) };
        d = if d == 0 { 0 } else { (d / 2).max(1) };
    }
    total
}

pub unsafe fn cuArrayCreate_v2(
    handle: *mut CUarray,
    desc: *const CUDA_ARRAY_DESCRIPTOR,
) -> CUresult {
    let real = real_or_return!(cuArrayCreate_v2);
    if desc.is_null() {
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires (the driver itself answers a
        // null descriptor).
        return unsafe { real(handle, desc) };
    }
    // SAFETY: `desc` is non-null (checked above) and the caller's contract makes it point to a
    // valid descriptor for the call.
    let d = unsafe { &*desc };
    let estimate = array_footprint(d.Width, d.Height, 1, d.Format, d.NumChannels);
    charged_sized(
        "cuArrayCreate",
        estimate,
        AllocKind::Array,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(handle, desc), read(handle) as u64) },
        |array, ordinal| array_size(array, ordinal, false),
        destroy_array,
    )
}

pub unsafe fn cuArray3DCreate_v2(
    handle: *mut CUarray,
    desc: *const CUDA_ARRAY3D_DESCRIPTOR,
) -> CUresult {
    let real = real_or_return!(cuArray3DCreate_v2);
    if desc.is_null() {
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires (the driver itself answers a
        // null descriptor).
        return unsafe { real(handle, desc) };
    }
    // SAFETY: `desc` is non-null (checked above) and the caller's contract makes it point to a
    // valid descriptor for the call.
    let d = unsafe { &*desc };
    let estimate = array_footprint(d.Width, d.Height, d.Depth, d.Format, d.NumChannels);
    charged_sized(
        "cuArray3DCreate",
        estimate,
        AllocKind::Array,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(handle, desc), read(handle) as u64) },
        |array, ordinal| array_size(array, ordinal, false),
        destroy_array,
    )
}

fn destroy_array(array: u64) {
    if let Some(destroy) = crate::cuda::real::cuArrayDestroy() {
        // SAFETY: destroying what the driver just created.
        unsafe { destroy(array as CUarray) };
    }
}

pub unsafe fn cuArrayDestroy(array: CUarray) -> CUresult {
    let real = real_or_return!(cuArrayDestroy);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    credited::<Cuda>(AllocKind::Array, array as u64, || unsafe { real(array) })
}

pub unsafe fn cuMipmappedArrayCreate(
    handle: *mut CUmipmappedArray,
    desc: *const CUDA_ARRAY3D_DESCRIPTOR,
    levels: c_uint,
) -> CUresult {
    let real = real_or_return!(cuMipmappedArrayCreate);
    if desc.is_null() {
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires (the driver itself answers a
        // null descriptor).
        return unsafe { real(handle, desc, levels) };
    }
    // SAFETY: `desc` is non-null (checked above) and the caller's contract makes it point to a
    // valid descriptor for the call.
    let estimate = mipmapped_footprint(unsafe { &*desc }, levels);
    charged_sized(
        "cuMipmappedArrayCreate",
        estimate,
        AllocKind::Array,
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires; `read` skips a null
        // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
        || unsafe { (real(handle, desc, levels), read(handle) as u64) },
        |array, ordinal| array_size(array, ordinal, true),
        |array| {
            if let Some(destroy) = crate::cuda::real::cuMipmappedArrayDestroy() {
                // SAFETY: destroying what the driver just created.
                unsafe { destroy(array as CUmipmappedArray) };
            }
        },
    )
}

pub unsafe fn cuMipmappedArrayDestroy(array: CUmipmappedArray) -> CUresult {
    let real = real_or_return!(cuMipmappedArrayDestroy);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    credited::<Cuda>(AllocKind::Array, array as u64, || unsafe { real(array) })
}

// ---- virtual memory management ------------------------------------------------------------

/// `cuMemCreate`: only device-located physical memory is charged, to the device the
/// properties name (NCCL and vLLM create host-located handles too: those are not ours).
pub unsafe fn cuMemCreate(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: std::ffi::c_ulonglong,
) -> CUresult {
    let real = real_or_return!(cuMemCreate);
    let rt = rt();
    let device = (!prop.is_null() && !rt.config.control_disabled)
        // SAFETY: only reached for a non-null `prop` (the `then` condition), which the caller's
        // contract makes point to a valid allocation property.
        .then(|| unsafe { &*prop })
        .filter(|p| p.location.type_ == CU_MEM_LOCATION_TYPE_DEVICE)
        .and_then(|p| crate::cuda::placement::container_index(p.location.id));
    match device {
        Some(dev) => charged_on::<Cuda>(
            "cuMemCreate",
            dev,
            0,
            size as u64,
            AllocKind::Vmm,
            // SAFETY: `real` is the real driver function of this row, called with our caller's
            // arguments under the CUDA contract this hook itself requires; `read` skips a null
            // out-pointer, else reads the caller's out-pointer, valid for a write by that contract.
            || unsafe { (real(handle, size, prop, flags), read(handle)) },
        ),
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires.
        None => unsafe { real(handle, size, prop, flags) },
    }
}

pub unsafe fn cuMemRelease(handle: CUmemGenericAllocationHandle) -> CUresult {
    let real = real_or_return!(cuMemRelease);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    credited::<Cuda>(AllocKind::Vmm, handle, || unsafe { real(handle) })
}

// ---- graph memory nodes --------------------------------------------------------------------

/// `cuGraphAddMemAllocNode`: the driver reserves the node's memory for the graph (and keeps
/// it in the graph's pool until the graph is destroyed), so it is charged when the node is
/// added, to the graph: an explicit `cuMemFree(Async)` of the pointer credits it like any
/// allocation, destroying the graph credits what is left.
pub unsafe fn cuGraphAddMemAllocNode(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    params: *mut CUDA_MEM_ALLOC_NODE_PARAMS,
) -> CUresult {
    let real = real_or_return!(cuGraphAddMemAllocNode);
    let rt = rt();
    let device = (!params.is_null() && !rt.config.control_disabled)
        // SAFETY: only reached for a non-null `params` (the `then` condition), which the caller's
        // contract makes point to valid node parameters.
        .then(|| unsafe { &*params })
        .filter(|p| p.poolProps.location.type_ == CU_MEM_LOCATION_TYPE_DEVICE)
        .and_then(|p| {
            Some((
                crate::cuda::placement::container_index(p.poolProps.location.id)?,
                p.bytesize as u64,
            ))
        });
    match device {
        Some((dev, bytes)) => charged_on::<Cuda>(
            "cuGraphAddMemAllocNode",
            dev,
            graph as u64,
            bytes,
            AllocKind::Data,
            // SAFETY: `real` is the real driver function of this row, called with our caller's
            // arguments under the CUDA contract this hook itself requires; `params` is non-null on
            // this arm (`device` is `Some` only then) and the driver writes `dptr` into it.
            || unsafe { (real(node, graph, deps, ndeps, params), (*params).dptr) },
        ),
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires.
        None => unsafe { real(node, graph, deps, ndeps, params) },
    }
}

pub unsafe fn cuGraphDestroy(graph: CUgraph) -> CUresult {
    let real = real_or_return!(cuGraphDestroy);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(graph) };
    if rc == CUDA_SUCCESS {
        rt().ledger.release_owned_by(graph as u64);
    }
    rc
}

// ---- what the application sees ------------------------------------------------------------

pub unsafe fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    let real = real_or_return!(cuMemGetInfo_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(free, total) };
    if rc != CUDA_SUCCESS || free.is_null() || total.is_null() {
        return rc;
    }
    let rt = rt();
    let Some(place) = current_placement() else {
        return rc;
    };
    let Some(limit) = rt.ledger.limit(place.device) else {
        return rc;
    };
    // SAFETY: the driver filled both on success.
    unsafe {
        let slice = visible_total(limit, *total as u64);
        let slice_free = slice.saturating_sub(rt.ledger.used(place.device));
        // Never more than the card really has free (other tenants), never below zero.
        *free = slice_free.min(*free as u64) as usize;
        *total = slice as usize;
    }
    rc
}

pub unsafe fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDeviceTotalMem_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(bytes, dev) };
    if rc != CUDA_SUCCESS || bytes.is_null() {
        return rc;
    }
    let rt = rt();
    if let Some(limit) =
        crate::cuda::placement::container_index(dev).and_then(|d| rt.ledger.limit(d))
    {
        // SAFETY: filled by the driver.
        unsafe { *bytes = visible_total(limit, *bytes as u64) as usize };
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprints() {
        assert_eq!(array_footprint(100, 0, 0, CU_AD_FORMAT_FLOAT, 4), 1600);
        assert_eq!(array_footprint(64, 32, 2, CU_AD_FORMAT_HALF, 1), 8192);
        let desc = CUDA_ARRAY3D_DESCRIPTOR {
            Width: 8,
            Height: 8,
            Depth: 0,
            Format: CU_AD_FORMAT_UNSIGNED_INT8,
            NumChannels: 1,
            Flags: 0,
        };
        // 64 + 16 + 4 + 1
        assert_eq!(mipmapped_footprint(&desc, 4), 85);
    }
}
