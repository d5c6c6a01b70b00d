//! `nvmlInternalGetExportTable`: NVML's private table that nvidia-smi fetches before anything
//! else (without it: "Mismatch in versions between nvidia-smi and NVML").
//!
//! Facts (published in NVIDIA's Apache-2.0 mock NVML, NVIDIA/k8s-test-infra
//! `pkg/gpu/mocknvml/bridge/internal.go`, for nvidia-smi 580): one table, asked for by the GUID
//! `6c3efec4-8fc9-4e6c-a327-ee696e12f7c4` (in memory as a Windows `GUID`: the first three
//! fields little-endian); word 0 holds the table's size in bytes, every other word a function.
//! What each slot does was established here for nvidia-smi 535 the same way: every slot is
//! its own trampoline, and `VGPU_SIM_NVML_TRACE=1` logs which slot each view calls with which
//! arguments (`sim/README.md` has the findings).

use cuda_headers::prelude::*;

/// The GUID nvidia-smi asks for, as its 16 bytes lie in memory.
pub const EXPORT_TABLE_GUID: [u8; 16] = [
    0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4,
];

/// Words in our table (slot 0 is the size).
pub const SLOTS: usize = 512;

type SlotFn = unsafe extern "C" fn(usize, usize, usize, usize, usize, usize) -> nvmlReturn_t;

/// One distinct function per slot, so a call tells which slot it came through. The six
/// integer-register arguments are read as words (registers the caller did not set hold
/// garbage, never dereferenced unless the slot's contract says so).
unsafe extern "C" fn slot<const N: usize>(
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
) -> nvmlReturn_t {
    // SAFETY: the caller's arguments, interpreted only by the slot's established contract.
    match std::panic::catch_unwind(|| unsafe { dispatch(N, [a0, a1, a2, a3, a4, a5]) }) {
        Ok(r) => r,
        Err(_) => NVML_ERROR_UNKNOWN,
    }
}

macro_rules! slot_row {
    ($hi:literal) => {
        [
            slot::<{ $hi * 16 }>,
            slot::<{ $hi * 16 + 1 }>,
            slot::<{ $hi * 16 + 2 }>,
            slot::<{ $hi * 16 + 3 }>,
            slot::<{ $hi * 16 + 4 }>,
            slot::<{ $hi * 16 + 5 }>,
            slot::<{ $hi * 16 + 6 }>,
            slot::<{ $hi * 16 + 7 }>,
            slot::<{ $hi * 16 + 8 }>,
            slot::<{ $hi * 16 + 9 }>,
            slot::<{ $hi * 16 + 10 }>,
            slot::<{ $hi * 16 + 11 }>,
            slot::<{ $hi * 16 + 12 }>,
            slot::<{ $hi * 16 + 13 }>,
            slot::<{ $hi * 16 + 14 }>,
            slot::<{ $hi * 16 + 15 }>,
        ]
    };
}

static TRAMPOLINES: [[SlotFn; 16]; SLOTS / 16] = [
    slot_row!(0),
    slot_row!(1),
    slot_row!(2),
    slot_row!(3),
    slot_row!(4),
    slot_row!(5),
    slot_row!(6),
    slot_row!(7),
    slot_row!(8),
    slot_row!(9),
    slot_row!(10),
    slot_row!(11),
    slot_row!(12),
    slot_row!(13),
    slot_row!(14),
    slot_row!(15),
    slot_row!(16),
    slot_row!(17),
    slot_row!(18),
    slot_row!(19),
    slot_row!(20),
    slot_row!(21),
    slot_row!(22),
    slot_row!(23),
    slot_row!(24),
    slot_row!(25),
    slot_row!(26),
    slot_row!(27),
    slot_row!(28),
    slot_row!(29),
    slot_row!(30),
    slot_row!(31),
];

/// The table handed out: word 0 the size in bytes, word i the trampoline of slot i.
fn table() -> &'static [usize; SLOTS] {
    static TABLE: std::sync::OnceLock<[usize; SLOTS]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0usize; SLOTS];
        t[0] = SLOTS * std::mem::size_of::<usize>();
        for (i, w) in t.iter_mut().enumerate().skip(1) {
            *w = TRAMPOLINES[i / 16][i % 16] as usize;
        }
        t
    })
}

/// # Safety
/// `table` and `guid` as NVML's private contract: writable pointer, 16 readable bytes.
pub unsafe fn get_export_table(table_out: *mut *const c_void, guid: *const c_void) -> nvmlReturn_t {
    if table_out.is_null() || guid.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller passes a 16-byte GUID.
    let asked = unsafe { std::ptr::read_unaligned(guid as *const [u8; 16]) };
    if crate::nvml::tracing() {
        eprintln!("vgpu-sim nvml: nvmlInternalGetExportTable({asked:02x?})");
    }
    if asked != EXPORT_TABLE_GUID {
        return NVML_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: checked non-null; the table is static.
    unsafe { *table_out = table().as_ptr() as *const c_void };
    NVML_SUCCESS
}

/// # Safety
/// As [`serve`].
unsafe fn dispatch(slot: usize, a: [usize; 6]) -> nvmlReturn_t {
    // SAFETY: as `serve`'s contract: the arguments of that slot's call.
    let rc = unsafe { serve(slot, a) };
    if crate::nvml::tracing() {
        eprintln!("vgpu-sim nvml: internal slot {slot} args {a:x?} -> {rc}");
    }
    rc
}

/// # Safety
/// `a` holds the register arguments of a call through slot `slot`; only the slots with an
/// established contract (the constants below) read them, as that contract says.
unsafe fn serve(slot: usize, a: [usize; 6]) -> nvmlReturn_t {
    // Every arm: the arguments are what the slot's contract says they are (this fn's own
    // contract); the functions called check pointers for null and handles against the
    // simulator's tables.
    match slot {
        // SAFETY: slot contract `fn(index, *mut nvmlDevice_t, 0x22)` (checked), as above.
        SLOT_HANDLE_BY_INDEX if a[2] == 0x22 => unsafe {
            crate::nvml::nvmlDeviceGetHandleByIndex_v2(a[0] as c_uint, a[1] as *mut nvmlDevice_t)
        },
        SLOT_LOG => NVML_SUCCESS,
        // SAFETY: slot contract `fn(device, *mut count, entries, ...)`, as above.
        SLOT_GRAPHICS_PROCESS_LIST | SLOT_MPS_PROCESS_LIST => unsafe {
            no_processes(a[0] as nvmlDevice_t, a[1] as *mut c_uint)
        },
        // SAFETY: slot contract `fn(device, *mut c_uint, 1)`, as above.
        SLOT_HOST_MAX_PCIE_GEN => unsafe {
            crate::nvml::nvmlDeviceGetMaxPcieLinkGeneration(
                a[0] as nvmlDevice_t,
                a[1] as *mut c_uint,
            )
        },
        // SAFETY: slot contract `fn(device, *mut count, entries, ...)`, as above.
        SLOT_PROCESS_LIST => unsafe {
            process_list(a[0] as nvmlDevice_t, a[1] as *mut c_uint, a[2] as *mut u8)
        },
        _ => NVML_ERROR_NOT_SUPPORTED,
    }
}

/// `fn(index, *mut nvmlDevice_t, 0x22)`: the device at an NVML index (as in 580).
const SLOT_HANDLE_BY_INDEX: usize = 81;
/// `fn(format, text, ...)`: nvidia-smi hands its own error lines to NVML's log.
const SLOT_LOG: usize = 26;

/// `fn(device, *mut count, entries, ...)`: the running processes nvidia-smi shows.
const SLOT_PROCESS_LIST: usize = 213;

/// `fn(device, *mut c_uint, 1)`: the host side's maximum PCIe generation (`-q`'s "Host Max";
/// the simulated host matches the board).
const SLOT_HOST_MAX_PCIE_GEN: usize = 230;
/// `fn(device, *mut count, entries, ...)`: graphics processes (none on the simulator).
const SLOT_GRAPHICS_PROCESS_LIST: usize = 214;
/// `fn(device, *mut count, entries, ...)`: MPS processes (none on the simulator).
const SLOT_MPS_PROCESS_LIST: usize = 215;

/// # Safety
/// `count`: null or writable.
unsafe fn no_processes(device: nvmlDevice_t, count: *mut c_uint) -> nvmlReturn_t {
    if let Err(e) = crate::nvml::process_rows(device) {
        return e;
    }
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller's count, checked non-null.
    unsafe { *count = 0 };
    NVML_SUCCESS
}

/// One entry of the internal process list (4128 bytes): pid at 0, used bytes at 8, GPU and
/// compute instance ids at 16 and 20 (all ones: not MIG), protected memory at 24, then the
/// process name inline, NUL-terminated, at 32.
pub const PROCESS_ENTRY_SIZE: usize = 4128;
const PROCESS_NAME_OFFSET: usize = 32;

/// # Safety
/// `count`: null or the room of `entries` (in entries), writable; `entries`: that many
/// writable entries of [`PROCESS_ENTRY_SIZE`] bytes.
unsafe fn process_list(device: nvmlDevice_t, count: *mut c_uint, entries: *mut u8) -> nvmlReturn_t {
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let rows = match crate::nvml::process_rows(device) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // SAFETY: the caller's count.
    let room = unsafe { *count } as usize;
    if crate::nvml::tracing() {
        eprintln!(
            "vgpu-sim nvml: process list room {room}, {} rows",
            rows.len()
        );
    }
    // SAFETY: the caller's count, checked non-null above.
    unsafe { *count = rows.len() as c_uint };
    if rows.len() > room || (entries.is_null() && !rows.is_empty()) {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (i, &(pid, used)) in rows.iter().enumerate() {
        let mut e = [0u8; PROCESS_ENTRY_SIZE];
        e[0..4].copy_from_slice(&pid.to_ne_bytes());
        e[8..16].copy_from_slice(&used.to_ne_bytes());
        e[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        e[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        let name = process_name(pid);
        let n = name.len().min(PROCESS_ENTRY_SIZE - PROCESS_NAME_OFFSET - 1);
        e[PROCESS_NAME_OFFSET..PROCESS_NAME_OFFSET + n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: the caller's array holds `room` >= rows.len() entries.
        unsafe {
            std::ptr::copy_nonoverlapping(e.as_ptr(), entries.add(i * PROCESS_ENTRY_SIZE), e.len())
        };
    }
    NVML_SUCCESS
}

/// What the driver names a process (by its machine pid): its executable's path, else its
/// `comm`. Read from the machine's procfs: a container's own `/proc` does not show machine
/// pids (the driver knows every process, whatever namespace asks).
pub fn process_name(pid: u32) -> String {
    let proc = machine_procfs();
    std::fs::read_link(proc.join(format!("{pid}/exe")))
        .map(|p| p.to_string_lossy().into_owned())
        .or_else(|_| {
            std::fs::read_to_string(proc.join(format!("{pid}/comm"))).map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

/// The procfs of the machine's pid namespace: the one a container sees at
/// `VGPU_SIM_HOST_PROC` (its `self` has more than one `NSpid`: it is an outer namespace's),
/// else `/proc`.
fn machine_procfs() -> std::path::PathBuf {
    static PROC: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROC.get_or_init(|| {
        let host = vgpu_sim_core::procfs::host_proc_path();
        let outer = std::fs::read_to_string(host.join("self/status"))
            .ok()
            .and_then(|s| vgpu_sim_core::procfs::parse_nspid(&s))
            .is_some_and(|v| v.len() >= 2);
        if outer {
            host
        } else {
            std::path::PathBuf::from("/proc")
        }
    })
    .clone()
}
