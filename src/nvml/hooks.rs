//! The NVML view inside the container (what `nvidia-smi` and pynvml show).
//!
//! - Memory info (`nvmlDeviceGetMemoryInfo`, `_v2`): total = the container's slice of that
//!   device, used = the container's usage (every process, from the shared region), free =
//!   total - used, clamped at 0 (never a petabyte underflow). Devices without a cap show
//!   the card.
//! - Running compute processes (unversioned: 16-byte v1 entries; `_v2`/`_v3`: 24-byte):
//!   only this container's processes (matched by host pid with the region's slots), each
//!   with the memory the container ledger charges it, so the list adds up to "used".
//!   Other tenants of the GPU are not shown to the container. Pids stay the host pids NVML
//!   reports (as with a real driver in a container: the numbers are not the container's
//!   own `getpid()`), so every client in the container agrees on them.
//! - nvidia-smi lists processes through NVML's private table, not the calls above:
//!   `nvmlInternalGetExportTable` hands out a copy of that table whose process-list slots
//!   apply the same filter, for driver branches whose slot layout is known; any other table
//!   passes through untouched (then nvidia-smi shows the whole GPU's processes, and libvgpu
//!   says so once on stderr). The copy is taken once per process: the real table is static.
//! - Device count, handles by index and indices follow `CUDA_VISIBLE_DEVICES` when it is
//!   set (NVML itself ignores it): NVML index i is CUDA ordinal i, so `nvidia-smi` and the
//!   application agree on "GPU 0". Utilization is the driver's (a property of the device).

#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cuda_headers::bindings::*;

use crate::core::shared_region::SharedRegion;
use crate::nvml::{export_table, real};

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
        let rt = super::rt();
        let spec = rt.config.visible_devices.as_deref()?;
        let uuids = super::NvmlProbe::get()?.device_uuids();
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
    // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments under
    // the NVML contract this hook itself requires; `visible_count` writes `*count` only after
    // NVML's success and when non-null, the caller's out-pointer.
    unsafe { visible_count(f(count), count) }
}

pub unsafe fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetCount_v2);
    // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments under
    // the NVML contract this hook itself requires; `visible_count` writes `*count` only after
    // NVML's success and when non-null, the caller's out-pointer.
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
        // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments
        // under the NVML contract this hook itself requires (only the index is remapped, to one
        // NVML itself enumerated).
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
        // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments
        // under the NVML contract this hook itself requires (only the index is remapped, to one
        // NVML itself enumerated).
        Ok(i) => unsafe { f(i, device) },
        Err(()) => NVML_ERROR_INVALID_ARGUMENT,
    }
}

pub unsafe fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetIndex);
    // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments under
    // the NVML contract this hook itself requires.
    let rc = unsafe { f(device, index) };
    if rc == NVML_SUCCESS && !index.is_null() {
        if let Some(map) = visible_nvml_indices() {
            // SAFETY: filled by NVML on success.
            let real_index = unsafe { *index } as usize;
            match map.iter().position(|&i| i == real_index) {
                // SAFETY: `index` is non-null (checked above), the caller's out-pointer, which NVML
                // just filled.
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
    let _ = super::rt();
    let shared = SharedRegion::get()?;
    let get_uuid = real::nvmlDeviceGetUUID()?;
    let mut buf = [0 as c_char; 96];
    // SAFETY: buffer and its length.
    if unsafe { get_uuid(device, buf.as_mut_ptr(), buf.len() as c_uint) } != NVML_SUCCESS {
        return None;
    }
    // SAFETY: NVML NUL-terminates within the buffer.
    let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    // A process of the container that exited counts until it is gone: not a moment longer
    // (and a killed one until the periodic reap, which this process's watcher runs).
    shared.ensure_watcher();
    shared.reap_exited();
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
    let oversubscribe = super::rt().config.oversubscribe;
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
    // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments under
    // the NVML contract this hook itself requires.
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
    // SAFETY: `f` is the real NVML function of this row, called with our caller's arguments under
    // the NVML contract this hook itself requires.
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
        // SAFETY: `real` is the real NVML process-list function for entries of type `T` (our
        // callers' promise), given the caller's own arguments unchanged.
        return unsafe { real(device, count, infos) };
    };
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let mut all = vec![T::default(); MAX_LISTED];
    let mut n = MAX_LISTED as c_uint;
    // SAFETY: `real` is the real NVML process-list function for entries of type `T`; `all` holds
    // `n` = MAX_LISTED entries, the room we declare.
    let rc = unsafe { real(device, &mut n, all.as_mut_ptr()) };
    if rc != NVML_SUCCESS {
        return rc;
    }
    let region = SharedRegion::get().map(|s| s.region());
    let mut mine: Vec<T> = Vec::new();
    for entry in &all[..(n as usize).min(MAX_LISTED)] {
        let slot = region.and_then(|r| container_slot_of(r, entry.pid()));
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
    // SAFETY: `f` is the real NVML process-list function whose entries are `T`;
    // `container_processes` reads `*count` only when non-null and writes at most that many entries
    // to `infos`, the caller's buffer by its NVML contract.
    unsafe { container_processes(device, count, infos, f) }
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetComputeRunningProcesses_v2);
    // SAFETY: `f` is the real NVML process-list function whose entries are `T`;
    // `container_processes` reads `*count` only when non-null and writes at most that many entries
    // to `infos`, the caller's buffer by its NVML contract.
    unsafe { container_processes(device, count, infos, f) }
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    let f = real_or_uninitialized!(nvmlDeviceGetComputeRunningProcesses_v3);
    // SAFETY: `f` is the real NVML process-list function whose entries are `T`;
    // `container_processes` reads `*count` only when non-null and writes at most that many entries
    // to `infos`, the caller's buffer by its NVML contract.
    unsafe { container_processes(device, count, infos, f) }
}

// ---- nvidia-smi's private table ---------------------------------------------------------------

/// The container's region slot of a process NVML lists by its host pid.
fn container_slot_of(region: &shm_layout::Region, host_pid: u32) -> Option<&shm_layout::ProcSlot> {
    region.v1.procs.iter().find(|p| {
        p.status.load(Ordering::Acquire) != 0
            && p.hostpid.load(Ordering::Acquire) as u32 == host_pid
    })
}

/// `nvmlInternalGetExportTable` (not a table row: NVML's private entry point). The real
/// table is returned untouched unless all of these hold: the GUID is the one nvidia-smi
/// asks for, this process is in a container (a region exists), the driver branch is one
/// whose process-list slots are known ([`export_table::process_list_slots`]), the table's
/// size word covers them, and those slots point into the same library as this function.
/// Then the caller gets a copy of the table whose process-list slots filter the real answer
/// down to the container's processes (as the public process lists do).
pub unsafe fn nvmlInternalGetExportTable(
    table: *mut *const c_void,
    guid: *const c_void,
) -> nvmlReturn_t {
    let real = crate::nvml::real_nvml_symbol(c"nvmlInternalGetExportTable");
    if real.is_null() {
        return NVML_ERROR_UNINITIALIZED;
    }
    // SAFETY: the real NVML's function of that name.
    let f: cuda_headers::pfn::nvmlInternalGetExportTable = unsafe { std::mem::transmute(real) };
    // SAFETY: `f` is the real NVML's nvmlInternalGetExportTable (looked up by that name), called
    // with our caller's arguments under the contract this hook requires.
    let rc = unsafe { f(table, guid) };
    if rc != NVML_SUCCESS || table.is_null() || guid.is_null() {
        return rc;
    }
    // SAFETY: the caller passed a 16-byte GUID (the real function just read it).
    let asked = unsafe { std::ptr::read_unaligned(guid as *const [u8; 16]) };
    // SAFETY: filled by the real function on success.
    let real_table = unsafe { *table };
    if asked != export_table::GUID || real_table.is_null() {
        return rc;
    }
    // SAFETY: the real function's table on success; `real` is that function.
    if let Some(ours) = unsafe { wrapped_table(real_table, real) } {
        // SAFETY: checked non-null above.
        unsafe { *table = ours };
    }
    rc
}

/// The real process-list functions behind our three slots (compute, graphics, MPS).
static ORIGINAL_SLOTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

/// Our copy of the table: (the real table's address, the copy).
static WRAPPED: OnceLock<Option<(usize, Box<[usize]>)>> = OnceLock::new();

/// Our copy of `real_table` with the process-list slots wrapped, or `None` (pass through).
///
/// # Safety
/// `real_table`: the table the real `nvmlInternalGetExportTable` (`real_fn`) just returned.
unsafe fn wrapped_table(real_table: *const c_void, real_fn: *mut c_void) -> Option<*const c_void> {
    // SAFETY: as this function's caller: the real NVML's table and export-table function.
    let wrapped = WRAPPED.get_or_init(|| unsafe { build_wrapped(real_table, real_fn) });
    match wrapped {
        Some((addr, copy)) if *addr == real_table as usize => Some(copy.as_ptr() as *const c_void),
        _ => None,
    }
}

/// # Safety
/// As [`wrapped_table`]; word 0 of the table is its size in bytes (checked before use).
unsafe fn build_wrapped(
    real_table: *const c_void,
    real_fn: *mut c_void,
) -> Option<(usize, Box<[usize]>)> {
    let _ = super::rt();
    SharedRegion::get()?;
    let mut buf = [0 as c_char; 96];
    let get_version = real::nvmlSystemGetDriverVersion()?;
    // SAFETY: buffer and its length.
    if unsafe { get_version(buf.as_mut_ptr(), buf.len() as c_uint) } != NVML_SUCCESS {
        return None;
    }
    // SAFETY: NVML NUL-terminates within the buffer.
    let version = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let Some(slots) = export_table::process_list_slots(&version) else {
        crate::vlog!(
            crate::log::INFO,
            "NVML's private table of driver {version} passes through unchanged (its layout \
             is not known): nvidia-smi's process list is the whole GPU's"
        );
        return None;
    };
    // SAFETY: word 0 of the table is its size in bytes (NVML's private contract).
    let size = unsafe { *(real_table as *const usize) };
    if !export_table::table_fits(size, &slots) {
        return None;
    }
    let words = size / std::mem::size_of::<usize>();
    // SAFETY: the table holds `size` bytes, checked to be a whole number of words.
    let mut copy: Box<[usize]> =
        unsafe { std::slice::from_raw_parts(real_table as *const usize, words) }.into();
    let library = object_base(real_fn)?;
    let wrappers: [usize; 3] = [
        process_list_slot::<0> as SlotFn as usize,
        process_list_slot::<1> as SlotFn as usize,
        process_list_slot::<2> as SlotFn as usize,
    ];
    for (k, &slot) in slots.iter().enumerate() {
        let original = copy[slot];
        if original == 0 || object_base(original as *mut c_void) != Some(library) {
            return None;
        }
        ORIGINAL_SLOTS[k].store(original, Ordering::Release);
    }
    for (k, &slot) in slots.iter().enumerate() {
        copy[slot] = wrappers[k];
    }
    crate::vlog!(
        crate::log::DEBUG,
        "NVML's private table (driver {version}): process-list slots {slots:?} show this \
         container's processes"
    );
    Some((real_table as usize, copy))
}

/// The load address of the object holding `addr` (`dladdr`).
fn object_base(addr: *mut c_void) -> Option<usize> {
    // SAFETY: an all-zero Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    (unsafe { libc::dladdr(addr, &mut info) } != 0 && !info.dli_fbase.is_null())
        .then_some(info.dli_fbase as usize)
}

type SlotFn = unsafe extern "C" fn(usize, usize, usize, usize, usize, usize) -> nvmlReturn_t;

/// Wrapper of process-list slot `K`: `fn(device, *mut count, entries, ...)`. The six
/// integer-register arguments go to the real function unchanged; after a successful answer
/// the entries are filtered to this container's processes.
unsafe extern "C" fn process_list_slot<const K: usize>(
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
) -> nvmlReturn_t {
    let original = ORIGINAL_SLOTS[K].load(Ordering::Acquire);
    // SAFETY: installed before the table was handed out; the real slot function.
    let f: SlotFn = unsafe { std::mem::transmute::<usize, SlotFn>(original) };
    let count = a1 as *mut c_uint;
    let room = if count.is_null() {
        0
    } else {
        // SAFETY: `count` is non-null (checked just above), the caller's own count pointer in its
        // first register argument.
        unsafe { *count }
    };
    // SAFETY: the real slot function with the caller's own register arguments.
    let rc = unsafe { f(a0, a1, a2, a3, a4, a5) };
    if rc != NVML_SUCCESS || count.is_null() || a2 == 0 {
        return rc;
    }
    crate::interpose::guard::guard(rc, || {
        // SAFETY: written by the real function on success.
        let n = unsafe { *count };
        if n > room {
            return rc;
        }
        let Some((dev, _, _)) = container_view(a0 as nvmlDevice_t) else {
            return rc;
        };
        let Some(region) = SharedRegion::get().map(|s| s.region()) else {
            return rc;
        };
        // SAFETY: the caller's array holds `room` >= n entries of that size.
        let entries = unsafe {
            std::slice::from_raw_parts_mut(
                a2 as *mut u8,
                n as usize * export_table::PROCESS_ENTRY_SIZE,
            )
        };
        let kept = export_table::filter_entries(entries, n as usize, |pid| {
            container_slot_of(region, pid).map(|slot| slot.load_usage(dev).1)
        });
        // SAFETY: the caller's count.
        unsafe { *count = kept as c_uint };
        rc
    })
}
