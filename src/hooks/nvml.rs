//! The NVML view inside the container (what `nvidia-smi` and pynvml show).
//!
//! - Memory info (`nvmlDeviceGetMemoryInfo`, `_v2`): total = the container's slice of that
//!   device, used = the container's usage (every process, from the shared region), free =
//!   total - used, clamped at 0 (never a petabyte underflow). Devices without a cap show
//!   the card.
//! - Running compute processes (unversioned: 16-byte v1 entries; `_v2`/`_v3`: 24-byte):
//!   only this container's processes (matched by host pid with the region's slots), each
//!   with the memory the container ledger charges it, so the list adds up to "used".
//!   Other tenants of the GPU are not shown to the container.
//! - Device count, handles by index and indices follow `CUDA_VISIBLE_DEVICES` when it is
//!   set (NVML itself ignores it): NVML index i is CUDA ordinal i, so `nvidia-smi` and the
//!   application agree on "GPU 0". Utilization is the driver's (a property of the device).

use std::ffi::{c_char, c_uint, CStr};
use std::sync::atomic::Ordering;

use cuda_headers::bindings::*;

use crate::nvml::real;
use crate::shared_region::SharedRegion;

/// The real NVML function, or return `NVML_ERROR_UNINITIALIZED` (no NVML library).
macro_rules! real_or_uninitialized {
    ($name:ident) => {
        match real::$name() {
            Some(f) => f,
            None => return NVML_ERROR_UNINITIALIZED,
        }
    };
}

/// The NVML indices visible through `CUDA_VISIBLE_DEVICES`, in CUDA ordinal order; `None`
/// when it is unset (NVML's own view then). Computed once per process.
fn visible_nvml_indices() -> Option<&'static [usize]> {
    static MAP: std::sync::OnceLock<Option<Vec<usize>>> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let rt = crate::runtime::rt();
        let spec = rt.config.visible_devices.as_deref()?;
        let uuids = rt.nvml()?.device_uuids();
        Some(crate::config::map_visible_devices(Some(spec), &uuids))
    })
    .as_deref()
}

unsafe fn visible_count(rc: nvmlReturn_t, count: *mut c_uint) -> nvmlReturn_t {
    if rc == NVML_SUCCESS && !count.is_null() {
        if let Some(map) = visible_nvml_indices() {
            // SAFETY: the caller's out-pointer, checked non-null.
            unsafe { *count = map.len() as c_uint };
        }
    }
    rc
}

pub unsafe fn nvmlDeviceGetCount(count: *mut c_uint) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetCount);
    unsafe { visible_count(f(count), count) }
}

pub unsafe fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetCount_v2);
    unsafe { visible_count(f(count), count) }
}

/// The NVML index behind a visible index, or `None` (out of range) when a map applies.
fn nvml_index_of(index: c_uint) -> Result<c_uint, ()> {
    match visible_nvml_indices() {
        None => Ok(index),
        Some(map) => map.get(index as usize).map(|&i| i as c_uint).ok_or(()),
    }
}

pub unsafe fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetHandleByIndex);
    match nvml_index_of(index) {
        Ok(i) => unsafe { f(i, device) },
        Err(()) => NVML_ERROR_INVALID_ARGUMENT,
    }
}

pub unsafe fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetHandleByIndex_v2);
    match nvml_index_of(index) {
        Ok(i) => unsafe { f(i, device) },
        Err(()) => NVML_ERROR_INVALID_ARGUMENT,
    }
}

pub unsafe fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetIndex);
    let rc = unsafe { f(device, index) };
    if rc == NVML_SUCCESS && !index.is_null() {
        if let Some(map) = visible_nvml_indices() {
            // SAFETY: filled by NVML on success.
            let real_index = unsafe { *index } as usize;
            match map.iter().position(|&i| i == real_index) {
                Some(visible) => unsafe { *index = visible as c_uint },
                // A device hidden by CUDA_VISIBLE_DEVICES (reached by UUID or PCI id).
                None => return NVML_ERROR_NOT_FOUND,
            }
        }
    }
    rc
}

/// The container's view of an NVML device: (limit, used) in bytes, limit 0 = no cap.
fn container_view(device: nvmlDevice_t) -> Option<(usize, u64, u64)> {
    let _ = crate::runtime::rt();
    let shared = SharedRegion::get()?;
    let get_uuid = real::nvmlDeviceGetUUID()?;
    let mut buf = [0 as c_char; 96];
    // SAFETY: buffer and its length.
    if unsafe { get_uuid(device, buf.as_mut_ptr(), buf.len() as c_uint) } != NVML_SUCCESS {
        return None;
    }
    // SAFETY: NVML NUL-terminates within the buffer.
    let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    let region = shared.region();
    let dev = region.find_device(&uuid)?;
    let state = region.device(dev).ok()?;
    Some((
        dev,
        state.limit_bytes.load(Ordering::Acquire),
        state.reserved_bytes.load(Ordering::Acquire),
    ))
}

/// (total, used, free) as the container sees them, from the card's total.
fn slice_figures(card_total: u64, limit: u64, used: u64) -> (u64, u64, u64) {
    let oversubscribe = crate::runtime::rt().config.oversubscribe;
    let total = if oversubscribe {
        limit
    } else {
        limit.min(card_total)
    };
    (total, used, total.saturating_sub(used))
}

pub unsafe fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetMemoryInfo);
    let rc = unsafe { f(device, memory) };
    if rc != NVML_SUCCESS || memory.is_null() {
        return rc;
    }
    if let Some((_, limit, used)) = container_view(device).filter(|v| v.1 != 0) {
        // SAFETY: filled by NVML on success.
        let m = unsafe { &mut *memory };
        (m.total, m.used, m.free) = slice_figures(m.total, limit, used);
    }
    rc
}

pub unsafe fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetMemoryInfo_v2);
    let rc = unsafe { f(device, memory) };
    if rc != NVML_SUCCESS || memory.is_null() {
        return rc;
    }
    if let Some((_, limit, used)) = container_view(device).filter(|v| v.1 != 0) {
        // SAFETY: filled by NVML on success.
        let m = unsafe { &mut *memory };
        let (total, used, free) = slice_figures(m.total, limit, used);
        (m.total, m.reserved, m.used, m.free) = (total, 0, used, free);
    }
    rc
}

/// One process entry, either NVML layout.
trait ProcessEntry: Copy + Default {
    fn pid(&self) -> u32;
    fn set_used(&mut self, bytes: u64);
}

impl ProcessEntry for nvmlProcessInfo_v1_t {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn set_used(&mut self, bytes: u64) {
        self.usedGpuMemory = bytes;
    }
}

impl ProcessEntry for nvmlProcessInfo_v2_t {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn set_used(&mut self, bytes: u64) {
        self.usedGpuMemory = bytes;
    }
}

/// Most processes one device lists (HAMi's slot count).
const MAX_LISTED: usize = 1024;

/// The container's processes on `device`, with the NVML size protocol: `*count` too small
/// (or `infos` null) gives `NVML_ERROR_INSUFFICIENT_SIZE` and the count needed.
unsafe fn container_processes<T: ProcessEntry>(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut T,
    real: unsafe extern "C" fn(nvmlDevice_t, *mut c_uint, *mut T) -> nvmlReturn_t,
) -> nvmlReturn_t {
    let Some((dev, _, _)) = container_view(device) else {
        return unsafe { real(device, count, infos) };
    };
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let mut all = vec![T::default(); MAX_LISTED];
    let mut n = MAX_LISTED as c_uint;
    let rc = unsafe { real(device, &mut n, all.as_mut_ptr()) };
    if rc != NVML_SUCCESS {
        return rc;
    }
    let region = SharedRegion::get().map(|s| s.region());
    let mut mine: Vec<T> = Vec::new();
    for entry in &all[..(n as usize).min(MAX_LISTED)] {
        let slot = region.and_then(|r| {
            r.v1.procs.iter().find(|p| {
                p.status.load(Ordering::Acquire) != 0
                    && p.hostpid.load(Ordering::Acquire) as u32 == entry.pid()
            })
        });
        if let Some(slot) = slot {
            let mut e = *entry;
            e.set_used(slot.load_usage(dev).1);
            mine.push(e);
        }
    }
    // SAFETY: caller's buffer of *count entries.
    unsafe {
        let room = *count as usize;
        *count = mine.len() as c_uint;
        if mine.is_empty() {
            return NVML_SUCCESS;
        }
        if infos.is_null() || room < mine.len() {
            return NVML_ERROR_INSUFFICIENT_SIZE;
        }
        std::ptr::copy_nonoverlapping(mine.as_ptr(), infos, mine.len());
    }
    NVML_SUCCESS
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetComputeRunningProcesses);
    unsafe { container_processes(device, count, infos, f) }
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetComputeRunningProcesses_v2);
    unsafe { container_processes(device, count, infos, f) }
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetComputeRunningProcesses_v3);
    unsafe { container_processes(device, count, infos, f) }
}
