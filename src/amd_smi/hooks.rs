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

pub(super) fn amdsmi_uuid(handle: *mut c_void) -> Option<String> {
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

/// `vram_size` (MB) of `amdsmi_vram_info_t`: the slice, as NVML's total is, where the
/// library's layout is known (the struct differs between versions: 7.x has a 256-byte
/// vendor string before it, ROCm 6.2 a vendor enum); other fields unchanged.
pub unsafe fn amdsmi_get_gpu_vram_info(h: *mut c_void, info: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_vram_info() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    // SAFETY: the caller's arguments, unchanged, to the real function of this row.
    let rc = unsafe { real(h, info) };
    let offset = lib_version_words().and_then(vram_size_offset);
    if let (0, false, Some(offset)) = (rc, info.is_null(), offset) {
        // SAFETY: the struct the library filled on success, of the layout its version has.
        let size = unsafe { info.cast::<u8>().add(offset).cast::<u64>() };
        // SAFETY: as above (read and written unaligned: the caller's buffer may be bytes).
        let physical = unsafe { size.read_unaligned() } << 20;
        if let Some((slice, _)) = amdsmi_uuid(h).and_then(|u| container_view(&u, physical)) {
            // SAFETY: as above; only this field is written.
            unsafe { size.write_unaligned(slice >> 20) };
        }
    }
    rc
}

/// Where `vram_size` sits in `amdsmi_vram_info_t`, by the library's version words.
pub fn vram_size_offset(words: [u32; 4]) -> Option<usize> {
    match words {
        [26, ..] => Some(std::mem::offset_of!(amdsmi_vram_info_t, vram_size)),
        [24, 6, 2, _] => Some(8),
        _ => None,
    }
}

/// The real library's `amdsmi_get_lib_version` as four words (asked once): 7.x fills
/// {major, minor, release}, 6.x {year, major, minor, release}; a pointer follows in both.
fn lib_version_words() -> Option<[u32; 4]> {
    static WORDS: std::sync::OnceLock<Option<[u32; 4]>> = std::sync::OnceLock::new();
    *WORDS.get_or_init(|| {
        let f = amd::real::amdsmi_get_lib_version()?;
        // Room for either version struct (4 u32 then a pointer: 24 bytes).
        let mut v = [0u64; 3];
        // SAFETY: an out-struct at least as large as either layout the library fills.
        if unsafe { f(v.as_mut_ptr().cast()) } != 0 {
            return None;
        }
        // x86-64 is little-endian: word 0 is the low half of the first u64.
        let w = |i: usize| (v[i / 2] >> (32 * (i % 2))) as u32;
        Some([w(0), w(1), w(2), w(3)])
    })
}

/// Where the pid sits in an entry of `amdsmi_get_gpu_process_list`, and how long an entry
/// is: the struct differs between library versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcLayout {
    pub stride: usize,
    pub pid_offset: usize,
    /// `engine_usage.gfx`: the process's GFX time, a running total of ns (u64).
    pub gfx_offset: usize,
}

/// amdsmi 7.x (library 26.x; the amdsmi 7.0 package binds it, the simulator implements it):
/// `hip_headers::smi_types::amdsmi_proc_info_t`, 256-byte names.
pub const PROC_LAYOUT_7: ProcLayout = ProcLayout {
    stride: std::mem::size_of::<amdsmi_proc_info_t>(),
    pid_offset: std::mem::offset_of!(amdsmi_proc_info_t, pid),
    gfx_offset: std::mem::offset_of!(amdsmi_proc_info_t, engine_usage)
        + std::mem::offset_of!(amdsmi_proc_engine_usage_t, gfx),
};

/// amdsmi of ROCm 6.2 (library 24.6.x): 32-byte name and container name, no CU occupancy:
/// `name[32]`, pid u32 at 32, mem u64 at 40, engine usage (2 u64 + 12 u32) at 48, memory usage
/// (3 u64 + 10 u32) at 112, `container_name[32]` at 176, 4 reserved u32: 224 bytes.
pub const PROC_LAYOUT_6_2: ProcLayout = ProcLayout {
    stride: 224,
    pid_offset: 32,
    gfx_offset: 48,
};

/// The layout of a library by its `amdsmi_get_lib_version` words: 7.x fills
/// {major, minor, release} (26 for ROCm 7), 6.x {year, major, minor, release} (24, 6, 2 for
/// ROCm 6.2). Any other version (ROCm 6.0/6.1 list process handles; 6.3 and 6.4 are not
/// verified here): `None`, the list passes through unfiltered.
pub fn proc_layout(words: [u32; 4]) -> Option<ProcLayout> {
    match words {
        [26, ..] => Some(PROC_LAYOUT_7),
        [24, 6, 2, _] => Some(PROC_LAYOUT_6_2),
        _ => None,
    }
}

/// The real library's process-entry layout (asked once).
pub fn process_layout() -> Option<ProcLayout> {
    static LAYOUT: std::sync::OnceLock<Option<ProcLayout>> = std::sync::OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let words = lib_version_words();
        let layout = words.and_then(proc_layout);
        if layout.is_none() {
            crate::vlog!(
                crate::log::INFO,
                "AMD SMI library version {words:?}: its process list's layout is not known, so \
                 amdsmi_get_gpu_process_list shows the whole GPU's processes"
            );
        }
        layout
    })
}

/// Keeps the entries of `buf` (`n` entries of `layout`) whose pid `keep` accepts, moved to
/// the front in order; returns how many.
pub fn keep_entries(
    buf: &mut [u8],
    n: usize,
    layout: ProcLayout,
    keep: impl Fn(u32) -> bool,
) -> usize {
    let mut kept = 0;
    for i in 0..n {
        let at = i * layout.stride;
        let Some(entry) = buf.get(at..at + layout.stride) else {
            break;
        };
        let pid_bytes = &entry[layout.pid_offset..layout.pid_offset + 4];
        let pid = u32::from_ne_bytes([pid_bytes[0], pid_bytes[1], pid_bytes[2], pid_bytes[3]]);
        if keep(pid) {
            if kept != i {
                buf.copy_within(at..at + layout.stride, kept * layout.stride);
            }
            kept += 1;
        }
    }
    kept
}

/// Every entry of the real `amdsmi_get_gpu_process_list` of `h` (no filtering) in u64
/// words of `layout`: `(words, entries, status)`, the status success or NO_PERM (the entries
/// are there, some processes' names could not be read); any other status is the error.
///
/// # Safety
/// `real` is the real library's function and `h` a processor handle it gave (or any value
/// it rejects).
pub unsafe fn real_entries(
    real: hip_headers::pfn::amdsmi_get_gpu_process_list,
    h: *mut c_void,
    layout: ProcLayout,
) -> Result<(Vec<u64>, u32, u32), u32> {
    // u64 words: the entries' alignment (8) for the library's writes.
    let mut words = vec![0u64; 64 * layout.stride / 8];
    for _ in 0..4 {
        let room = (words.len() * 8 / layout.stride) as u32;
        let mut count = room;
        // SAFETY: a buffer of `room` entries of the library's layout.
        let rc = unsafe { real(h, (&raw mut count).cast(), words.as_mut_ptr().cast()) };
        if rc == AMDSMI_STATUS_OUT_OF_RESOURCES || (rc == 0 && count > room) {
            words = vec![0u64; (count as usize + 16) * layout.stride / 8];
            continue;
        }
        if rc != 0 && rc != AMDSMI_STATUS_NO_PERM {
            return Err(rc);
        }
        return Ok((words, count.min(room), rc));
    }
    Err(AMDSMI_STATUS_OUT_OF_RESOURCES)
}

/// `(pid, engine_usage.gfx)` of each of the first `n` entries of `buf` (of `layout`).
pub fn pid_gfx(buf: &[u8], n: usize, layout: ProcLayout) -> Vec<(u32, u64)> {
    buf.chunks_exact(layout.stride)
        .take(n)
        .map(|e| {
            let word = |at: usize, len: usize| {
                let mut b = [0u8; 8];
                b[..len].copy_from_slice(&e[at..at + len]);
                u64::from_ne_bytes(b)
            };
            (
                word(layout.pid_offset, 4) as u32,
                word(layout.gfx_offset, 8),
            )
        })
        .collect()
}

/// The device's processes, only the container's (other containers' stay hidden, as ROCm
/// SMI's and NVML's lists do under libvgpu). Same contract as the real call: `*max == 0`
/// asks the count; otherwise up to `*max` entries are written, `*max` becomes the number
/// there are, and `AMDSMI_STATUS_OUT_OF_RESOURCES` says they did not all fit.
pub unsafe fn amdsmi_get_gpu_process_list(h: *mut c_void, n: *mut c_void, l: *mut c_void) -> u32 {
    let Some(real) = amd::real::amdsmi_get_gpu_process_list() else {
        return AMDSMI_STATUS_NOT_INIT;
    };
    let max = n as *mut u32;
    let (pids, layout) = match (container_pids(), process_layout()) {
        (Some(p), Some(layout)) if !max.is_null() => (p, layout),
        // SAFETY: the caller's arguments, unchanged, to the real function of this row.
        _ => return unsafe { real(h, n, l) },
    };
    // SAFETY: the real function and the caller's handle.
    let (mut words, count, filled) = match unsafe { real_entries(real, h, layout) } {
        Ok(list) => list,
        Err(rc) => return rc,
    };
    // SAFETY: the words as bytes (u8 has no alignment or validity requirement).
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
    let room = bytes.len() / layout.stride;
    let kept = keep_entries(bytes, (count as usize).min(room), layout, |pid| {
        pids.contains(&pid)
    });
    // SAFETY: checked non-null.
    let cap = unsafe { *max } as usize;
    // SAFETY: as above.
    unsafe { *max = kept as u32 };
    if cap == 0 {
        return 0;
    }
    if l.is_null() {
        return AMDSMI_STATUS_INVAL;
    }
    let copied = kept.min(cap) * layout.stride;
    // SAFETY: the caller's array holds `cap` entries of this layout; `copied` fits in both.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), l.cast::<u8>(), copied) };
    if kept > cap {
        AMDSMI_STATUS_OUT_OF_RESOURCES
    } else {
        filled
    }
}

/// `AMDSMI_STATUS_NO_PERM`: the process list is filled, some names could not be read.
const AMDSMI_STATUS_NO_PERM: u32 = 10;

#[cfg(test)]
mod tests {
    #[test]
    fn process_entries_of_either_layout_are_filtered_by_pid() {
        use super::*;
        assert_eq!(
            PROC_LAYOUT_7,
            ProcLayout {
                stride: 704,
                pid_offset: 256,
                gfx_offset: 272
            }
        );
        assert_eq!(proc_layout([26, 0, 2, 0]), Some(PROC_LAYOUT_7));
        assert_eq!(proc_layout([24, 6, 2, 0]), Some(PROC_LAYOUT_6_2));
        // ROCm 6.0/6.1 (a list of process handles), unverified 6.x: unfiltered.
        assert_eq!(proc_layout([24, 5, 0, 0]), None);
        assert_eq!(proc_layout([23, 4, 0, 0]), None);
        assert_eq!(proc_layout([25, 3, 0, 0]), None);
        assert_eq!(vram_size_offset([26, 0, 2, 0]), Some(264));
        assert_eq!(vram_size_offset([24, 6, 2, 0]), Some(8));
        assert_eq!(vram_size_offset([24, 5, 0, 0]), None);
        for layout in [PROC_LAYOUT_7, PROC_LAYOUT_6_2] {
            let pids = [7u32, 8, 9, 10];
            let mut buf = vec![0u8; layout.stride * (pids.len() + 1)];
            for (i, pid) in pids.iter().enumerate() {
                let e = &mut buf[i * layout.stride..(i + 1) * layout.stride];
                e.fill(*pid as u8 | 0x80);
                e[layout.pid_offset..layout.pid_offset + 4].copy_from_slice(&pid.to_ne_bytes());
            }
            let kept = keep_entries(&mut buf, pids.len(), layout, |p| p == 8 || p == 10);
            assert_eq!(kept, 2);
            for (i, want) in [8u32, 10].iter().enumerate() {
                let e = &buf[i * layout.stride..(i + 1) * layout.stride];
                let pid = u32::from_ne_bytes(
                    e[layout.pid_offset..layout.pid_offset + 4]
                        .try_into()
                        .unwrap(),
                );
                assert_eq!(pid, *want);
                // The whole entry moved, not only its pid.
                assert_eq!(e[0], *want as u8 | 0x80);
                assert_eq!(e[layout.stride - 1], *want as u8 | 0x80);
            }
            // A count past the buffer stops at its end.
            assert_eq!(keep_entries(&mut buf, 99, layout, |_| true), pids.len() + 1);
            // pid and GFX ns read from their own offsets.
            let mut buf = vec![0u8; layout.stride * 2];
            for (i, (pid, ns)) in [(41u32, 5u64 << 40), (42, 7)].into_iter().enumerate() {
                let e = &mut buf[i * layout.stride..(i + 1) * layout.stride];
                e[layout.pid_offset..layout.pid_offset + 4].copy_from_slice(&pid.to_ne_bytes());
                e[layout.gfx_offset..layout.gfx_offset + 8].copy_from_slice(&ns.to_ne_bytes());
            }
            assert_eq!(pid_gfx(&buf, 2, layout), [(41, 5 << 40), (42, 7)]);
            assert_eq!(pid_gfx(&buf, 9, layout).len(), 2);
        }
    }

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
