//! SMI hook bodies: the card's figures replaced by the container's view where the device is
//! one the container's region knows and it has a memory cap (VRAM only; other memory types
//! pass). The device is matched by its unique id, the same `GPU-<16 hex digits>` ROCr UUID a
//! HIP process registers in the region (`rsmi_dev_unique_id_get`; AMD SMI's `asic_serial`).

#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_void, CStr};

use hip_headers::prelude::*;

use super::{amd, rocm};
use crate::config::MAX_DEVICES;
use crate::core::runtime::rt;

/// `AMDSMI_MEM_TYPE_VRAM` / `RSMI_MEM_TYPE_VRAM`.
const VRAM: u32 = 0;

/// The container's (slice, usage) of the device with ROCr UUID `uuid`, when it is capped.
fn container_view(uuid: &str, physical_total: u64) -> Option<(u64, u64)> {
    let rt = rt();
    let sr = crate::core::shared_region::SharedRegion::get()?;
    let dev = sr.region().find_device(uuid)?;
    let index = (0..MAX_DEVICES).find(|&i| sr.region_device(i) == Some(dev))?;
    let limit = rt.ledger.limit(index)?;
    let slice = crate::core::charge::visible_total(limit, physical_total);
    Some((slice, rt.ledger.used(index).min(slice)))
}

/// `GPU-%016x` of a unique id (what ROCr and the region call the device).
pub fn rocr_uuid(unique_id: u64) -> String {
    format!("GPU-{unique_id:016x}")
}

/// AMD SMI's `asic_serial` (`0x` + 16 hex digits) as a ROCr UUID.
pub fn uuid_from_serial(serial: &str) -> Option<String> {
    let hex = serial
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X");
    u64::from_str_radix(hex, 16).ok().map(rocr_uuid)
}

fn rsmi_uuid(dv_ind: u32) -> Option<String> {
    let f = rocm::real::rsmi_dev_unique_id_get()?;
    let mut id = 0u64;
    // SAFETY: valid out-pointer.
    (unsafe { f(dv_ind, &mut id) } == 0).then(|| rocr_uuid(id))
}

fn amdsmi_uuid(handle: *mut c_void) -> Option<String> {
    let f = amd::real::amdsmi_get_gpu_asic_info()?;
    // SAFETY: plain C struct, all-zero valid.
    let mut info: amdsmi_asic_info_t = unsafe { std::mem::zeroed() };
    // SAFETY: an out-struct of the layout the library fills.
    if unsafe { f(handle, (&raw mut info).cast()) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = info
        .asic_serial
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    uuid_from_serial(
        CStr::from_bytes_with_nul(&[bytes, vec![0]].concat())
            .ok()?
            .to_str()
            .ok()?,
    )
}

// ---- ROCm SMI ---------------------------------------------------------------------------

pub unsafe fn rsmi_dev_memory_total_get(dv_ind: u32, mem_type: u32, total: *mut u64) -> u32 {
    let Some(real) = rocm::real::rsmi_dev_memory_total_get() else {
        return RSMI_STATUS_INIT_ERROR;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(dv_ind, mem_type, total) };
    if rc == 0 && mem_type == VRAM && !total.is_null() {
        // SAFETY: filled by the library on success; non-null.
        let physical = unsafe { *total };
        if let Some((slice, _)) = rsmi_uuid(dv_ind).and_then(|u| container_view(&u, physical)) {
            // SAFETY: as above.
            unsafe { *total = slice };
        }
    }
    rc
}

pub unsafe fn rsmi_dev_memory_usage_get(dv_ind: u32, mem_type: u32, used: *mut u64) -> u32 {
    let Some(real) = rocm::real::rsmi_dev_memory_usage_get() else {
        return RSMI_STATUS_INIT_ERROR;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(dv_ind, mem_type, used) };
    if rc == 0 && mem_type == VRAM && !used.is_null() {
        if let Some((_, usage)) = rsmi_uuid(dv_ind).and_then(|u| container_view(&u, u64::MAX)) {
            // SAFETY: filled by the library on success; non-null.
            unsafe { *used = usage };
        }
    }
    rc
}

/// The pids of the container's live processes (host pids where known, as SMI names them);
/// `None` when libvgpu has no region (control disabled): then SMI lists pass unfiltered.
fn container_pids() -> Option<Vec<u32>> {
    use std::sync::atomic::Ordering;
    if rt().config.control_disabled {
        return None;
    }
    let sr = crate::core::shared_region::SharedRegion::get()?;
    let region = sr.region();
    let high = (region.ext.header.slot_high_water.load(Ordering::Acquire) as usize)
        .min(shm_layout::MAX_PROCS);
    let mut pids = Vec::new();
    for i in 0..high {
        if region.ext.slots[i].state.load(Ordering::Acquire) != shm_layout::slot_state::ACTIVE {
            continue;
        }
        let host = region.v1.procs[i].hostpid.load(Ordering::Relaxed);
        let pid = if host > 0 {
            host
        } else {
            region.ext.slots[i].pid.load(Ordering::Relaxed)
        };
        if pid > 0 {
            pids.push(pid as u32);
        }
    }
    Some(pids)
}

/// KFD's process list, only the container's processes (other containers' stay hidden, as
/// NVML's process lists do under libvgpu).
pub unsafe fn rsmi_compute_process_info_get(procs: *mut rsmi_process_info_t, n: *mut u32) -> u32 {
    let Some(real) = rocm::real::rsmi_compute_process_info_get() else {
        return RSMI_STATUS_INIT_ERROR;
    };
    let pids = match container_pids() {
        Some(p) if !n.is_null() => p,
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        _ => return unsafe { real(procs, n) },
    };
    let mut all: Vec<rsmi_process_info_t> = Vec::new();
    let mut count = 0u32;
    for _ in 0..3 {
        count = all.len() as u32;
        let buf = if all.is_empty() {
            std::ptr::null_mut()
        } else {
            all.as_mut_ptr()
        };
        // SAFETY: a buffer of `count` entries (or the count query).
        let rc = unsafe { real(buf, &mut count) };
        if buf.is_null() && rc == 0 {
            all = vec![rsmi_process_info_t::default(); count as usize + 8];
            continue;
        }
        if rc == RSMI_STATUS_INSUFFICIENT_SIZE {
            all = vec![rsmi_process_info_t::default(); all.len() * 2 + 8];
            continue;
        }
        if rc != 0 {
            return rc;
        }
        break;
    }
    all.truncate(count as usize);
    all.retain(|p| pids.contains(&p.process_id));
    if procs.is_null() {
        // SAFETY: checked non-null above.
        unsafe { *n = all.len() as u32 };
        return 0;
    }
    // SAFETY: checked non-null; the caller gave room for `*n` entries.
    let cap = unsafe { *n } as usize;
    for (i, p) in all.iter().take(cap).enumerate() {
        // SAFETY: i < cap, inside the caller's array.
        unsafe { procs.add(i).write(*p) };
    }
    // SAFETY: checked non-null.
    unsafe { *n = all.len().min(cap) as u32 };
    if all.len() > cap {
        RSMI_STATUS_INSUFFICIENT_SIZE
    } else {
        0
    }
}

pub unsafe fn rsmi_compute_process_info_by_pid_get(pid: u32, p: *mut rsmi_process_info_t) -> u32 {
    let Some(real) = rocm::real::rsmi_compute_process_info_by_pid_get() else {
        return RSMI_STATUS_INIT_ERROR;
    };
    if container_pids().is_some_and(|pids| !pids.contains(&pid)) {
        return RSMI_STATUS_NOT_FOUND;
    }
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(pid, p) }
}

pub unsafe fn rsmi_compute_process_gpus_get(pid: u32, dv: *mut u32, n: *mut u32) -> u32 {
    let Some(real) = rocm::real::rsmi_compute_process_gpus_get() else {
        return RSMI_STATUS_INIT_ERROR;
    };
    if container_pids().is_some_and(|pids| !pids.contains(&pid)) {
        return RSMI_STATUS_NOT_FOUND;
    }
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(pid, dv, n) }
}

// ---- AMD SMI ----------------------------------------------------------------------------

pub unsafe fn amdsmi_get_gpu_memory_total(
    h: *mut c_void,
    mem_type: u32,
    total: *mut c_void,
) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_memory_total() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(h, mem_type, total) };
    let total = total as *mut u64;
    if rc == 0 && mem_type == VRAM && !total.is_null() {
        // SAFETY: a u64 the library filled on success; non-null.
        let physical = unsafe { *total };
        if let Some((slice, _)) = amdsmi_uuid(h).and_then(|u| container_view(&u, physical)) {
            // SAFETY: as above.
            unsafe { *total = slice };
        }
    }
    rc
}

pub unsafe fn amdsmi_get_gpu_memory_usage(h: *mut c_void, mem_type: u32, used: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_memory_usage() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(h, mem_type, used) };
    let used = used as *mut u64;
    if rc == 0 && mem_type == VRAM && !used.is_null() {
        if let Some((_, usage)) = amdsmi_uuid(h).and_then(|u| container_view(&u, u64::MAX)) {
            // SAFETY: a u64 the library filled on success; non-null.
            unsafe { *used = usage };
        }
    }
    rc
}

/// `amdsmi_vram_usage_t`, in MB.
pub unsafe fn amdsmi_get_gpu_vram_usage(h: *mut c_void, info: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_vram_usage() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(h, info) };
    let info = info as *mut amdsmi_vram_usage_t;
    if rc == 0 && !info.is_null() {
        // SAFETY: the struct the library filled on success; non-null.
        let physical = u64::from(unsafe { (*info).vram_total }) << 20;
        if let Some((slice, usage)) = amdsmi_uuid(h).and_then(|u| container_view(&u, physical)) {
            // SAFETY: as above; only its own two fields are written.
            unsafe {
                (*info).vram_total = (slice >> 20) as u32;
                (*info).vram_used = (usage >> 20) as u32;
            }
        }
    }
    rc
}

pub unsafe fn amdsmi_get_processor_handles(s: *mut c_void, n: *mut c_void, h: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_processor_handles() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(s, n, h) }
}

pub unsafe fn amdsmi_get_gpu_device_uuid(h: *mut c_void, n: *mut c_void, u: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_device_uuid() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(h, n, u) }
}

pub unsafe fn amdsmi_get_gpu_vram_info(h: *mut c_void, info: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_vram_info() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(h, info) }
}

pub unsafe fn amdsmi_get_gpu_process_list(h: *mut c_void, n: *mut c_void, l: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_process_list() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    unsafe { real(h, n, l) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn serials_and_unique_ids_name_the_same_rocr_uuid() {
        assert_eq!(super::rocr_uuid(0x772816553dc2df3a), "GPU-772816553dc2df3a");
        assert_eq!(
            super::uuid_from_serial("0x772816553DC2DF3A").as_deref(),
            Some("GPU-772816553dc2df3a")
        );
        assert_eq!(super::uuid_from_serial("not hex"), None);
    }
}
