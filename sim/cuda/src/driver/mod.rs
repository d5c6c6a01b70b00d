//! Hand-written implementations of every driver entry point, one `pub unsafe fn` per row of
//! `cuda_driver_api!` with the row's name and signature; the per-thread-default-stream twins
//! are generated from their base rows (`ptds.rs`). The exports in `lib.rs` call these.

#![allow(non_snake_case, clippy::too_many_arguments, clippy::missing_safety_doc)]

mod ctx;
mod exec;
mod mem;
mod ptds;

pub use ctx::*;
pub use exec::*;
pub use mem::*;
pub use ptds::*;

use crate::rt::{self, code, rt, Res};
use cuda_headers::prelude::*;
use cuda_headers::{resolve_proc, ProcLookup};
use vgpu_sim_core::state::DeviceInfo;

/// CUDA 12.8.
pub const DRIVER_VERSION: c_int = 12080;

/// Writes through an out-pointer, failing with `CUDA_ERROR_INVALID_VALUE` when it is NULL.
#[inline]
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> Res {
    if p.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: `p` is checked non-NULL above; the caller's contract (`p` is a C out-pointer
    // argument) makes a non-NULL one valid for a write of `T`. `write` drops no old value, which
    // may be uninitialised.
    unsafe { p.write(v) };
    Ok(())
}

/// Copies a string into a C buffer of `len` bytes (truncating, always NUL-terminated).
pub(crate) unsafe fn put_str(buf: *mut c_char, len: c_int, s: &str) -> Res {
    if buf.is_null() || len <= 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: `buf` is non-NULL (checked) and `len` bytes long by the caller's contract; `n` <
    // `len`, so these `n` bytes and the NUL after them fit. The source is our own string and cannot
    // overlap the caller's buffer.
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, n) };
    // SAFETY: `n` < `len`: the NUL lands inside the caller's buffer (see above).
    unsafe { *buf.add(n) = 0 };
    Ok(())
}

// ---- initialisation, versions, errors, entry points ------------------------------------

pub unsafe fn cuInit(flags: c_uint) -> CUresult {
    if flags != 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    rt::init()
}

pub unsafe fn cuDriverGetVersion(driver_version: *mut c_int) -> CUresult {
    // SAFETY: `driver_version` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code(unsafe { put(driver_version, DRIVER_VERSION) })
}

pub unsafe fn cuGetErrorName(error: CUresult, p_str: *mut *const c_char) -> CUresult {
    if p_str.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match cuda_headers::cu_error_name(error) {
        Some(s) => {
            // SAFETY: `p_str` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *p_str = s.as_ptr() };
            CUDA_SUCCESS
        }
        None => {
            // SAFETY: `p_str` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *p_str = std::ptr::null() };
            CUDA_ERROR_INVALID_VALUE
        }
    }
}

pub unsafe fn cuGetErrorString(error: CUresult, p_str: *mut *const c_char) -> CUresult {
    if p_str.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match cuda_headers::cu_error_string(error) {
        Some(s) => {
            // SAFETY: `p_str` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *p_str = s.as_ptr() };
            CUDA_SUCCESS
        }
        None => {
            // SAFETY: `p_str` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *p_str = std::ptr::null() };
            CUDA_ERROR_INVALID_VALUE
        }
    }
}

/// The simulator has no private export tables.
pub unsafe fn cuGetExportTable(
    pp_export_table: *mut *const c_void,
    table_id: *const CUuuid,
) -> CUresult {
    if pp_export_table.is_null() || table_id.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: `pp_export_table` is an out-pointer argument, checked non-NULL above; by the C API's
    // contract a non-NULL one is valid for this write.
    unsafe { *pp_export_table = std::ptr::null() };
    CUDA_ERROR_NOT_SUPPORTED
}

unsafe fn get_proc(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    status: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    if !pfn.is_null() {
        // SAFETY: `pfn` is an out-pointer argument, checked non-NULL above; by the C API's contract
        // a non-NULL one is valid for this write.
        unsafe { *pfn = std::ptr::null_mut() };
    }
    if symbol.is_null() || pfn.is_null() || flags > 2 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: `symbol` is a C-string argument of the API, checked non-NULL above; its NUL
    // termination is the caller's contract.
    let name = unsafe { std::ffi::CStr::from_ptr(symbol) }.to_bytes();
    let look = resolve_proc(name, cuda_version, flags);
    if !status.is_null() {
        // SAFETY: `status` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *status = look.status() };
    }
    match look {
        ProcLookup::Found(i) => {
            // SAFETY: `pfn` is an out-pointer argument, checked non-NULL above; by the C API's
            // contract a non-NULL one is valid for this write.
            unsafe { *pfn = crate::proc_ptr(i) };
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_NOT_FOUND,
    }
}

pub unsafe fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CUresult {
    // SAFETY: `get_proc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe { get_proc(symbol, pfn, cuda_version, flags, std::ptr::null_mut()) }
}

pub unsafe fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    symbol_status: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    // SAFETY: `get_proc` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe { get_proc(symbol, pfn, cuda_version, flags, symbol_status) }
}

// ---- devices ----------------------------------------------------------------------------

pub unsafe fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    code((|| {
        let r = rt()?;
        if device.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        r.phys(ordinal)?;
        // SAFETY: `device` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(device, ordinal) }
    })())
}

pub unsafe fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    code((|| {
        let r = rt()?;
        // SAFETY: `count` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(count, r.visible.len() as c_int) }
    })())
}

pub unsafe fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if name.is_null() || len <= 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `name` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(name, len, &r.info(dev)?.name) }
    })())
}

pub unsafe fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if uuid.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let info = r.info(dev)?;
        let mut u = CUuuid::default();
        for (d, s) in u.bytes.iter_mut().zip(info.uuid.iter()) {
            *d = *s as c_char;
        }
        // SAFETY: `uuid` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(uuid, u) }
    })())
}

pub unsafe fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    // SAFETY: `cuDeviceGetUuid` requires only what our own caller guarantees: the pointer arguments
    // are passed on unchanged, valid as the C API specifies.
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

pub unsafe fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if bytes.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `bytes` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(bytes, r.info(dev)?.total_mem as usize) }
    })())
}

/// Value of a device attribute (numbering of the public `CUdevice_attribute` enum).
pub(crate) fn attribute(d: &DeviceInfo, a: u32) -> Option<i32> {
    let hopper = d.cc_major >= 9;
    let v: i64 = match a {
        1 => 1024,
        2 | 3 => 1024,
        4 => 64,
        5 => i32::MAX as i64,
        6 | 7 => 65535,
        8 => 49152,
        9 => 65536,
        10 => 32,
        11 => i32::MAX as i64,
        12 => 65536,
        13 => d.clock_khz as i64,
        14 => 512,
        15 => 1,
        16 => d.sms as i64,
        17 | 18 => 0,
        19 => 1,
        20 => 0,
        21 | 22 => 131072,
        23 => 65536,
        24..=26 => 16384,
        27 | 28 => 32768,
        29 => 2048,
        30 => 512,
        31 | 32 => 1,
        33 => d.pci_bus as i64,
        34 | 35 => 0,
        36 => d.mem_clock_khz as i64,
        37 => d.bus_width as i64,
        38 => d.l2_bytes as i64,
        39 => d.threads_per_sm as i64,
        40 => 2,
        41 => 1,
        42 => 32768,
        43 => 2048,
        44 => 0,
        45 | 46 => 32768,
        47 | 48 => 8192,
        49 => 32768,
        50 => 0,
        51 => 32,
        52 | 53 => 32768,
        54 => 2046,
        55 => 32768,
        56 => 131072,
        57 => 65536,
        58..=60 => 16384,
        61 => 32768,
        62 => 2048,
        63 | 64 => 32768,
        65 => 2048,
        66 | 67 => 32768,
        68 => 2046,
        69 => 268_435_456,
        70 => 131072,
        71 => 65000,
        72 => 2_097_120,
        73 | 74 => 32768,
        75 => d.cc_major as i64,
        76 => d.cc_minor as i64,
        77 => 32768,
        78..=80 => 1,
        81 => d.smem_per_sm as i64,
        82 => 65536,
        83 => 1,
        84 => 0,
        85 => d.index as i64,
        86 => 0,
        87 => 2,
        88 => 0,
        89..=91 => 1,
        92..=94 => 0,
        95 | 96 => 1,
        97 => d.smem_optin as i64,
        98 => 0,
        99 => 1,
        100 | 101 => 0,
        102 | 103 => 1,
        104 | 105 => 0,
        106 => {
            if d.threads_per_sm >= 2048 {
                32
            } else {
                24
            }
        }
        107 => 1,
        108 => (d.l2_bytes as i64 * 3) / 4,
        109 => 134_213_632,
        110 => 1,
        111 => 1024,
        112..=117 => 1,
        118 => 0,
        119 => 1,
        120 => hopper as i64,
        121..=125 => 1,
        126 => {
            if hopper {
                4
            } else {
                1
            }
        }
        127 => hopper as i64,
        128 => 0,
        129 => 1,
        130 => 0,
        131 => -1,
        132 | 133 => 0,
        134 => -1,
        135..=140 => 0,
        _ => return None,
    };
    Some(v as i32)
}

pub unsafe fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: CUdevice_attribute,
    dev: CUdevice,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if pi.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let info = r.info(dev)?;
        // SAFETY: `pi` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe { put(pi, attribute(info, attrib).ok_or(CUDA_ERROR_INVALID_VALUE)?) }
    })())
}

pub unsafe fn cuDeviceComputeCapability(
    major: *mut c_int,
    minor: *mut c_int,
    dev: CUdevice,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if major.is_null() || minor.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let info = r.info(dev)?;
        // SAFETY: `major` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(major, info.cc_major as c_int) }?;
        // SAFETY: `minor` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(minor, info.cc_minor as c_int) }
    })())
}

pub unsafe fn cuDeviceGetPCIBusId(pci_bus_id: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    code((|| {
        let r = rt()?;
        if pci_bus_id.is_null() || len <= 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pci_bus_id` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(pci_bus_id, len, &r.info(dev)?.pci_bus_id_legacy) }
    })())
}

pub unsafe fn cuDeviceGetByPCIBusId(dev: *mut CUdevice, pci_bus_id: *const c_char) -> CUresult {
    code((|| {
        let r = rt()?;
        if dev.is_null() || pci_bus_id.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `pci_bus_id` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let s = unsafe { std::ffi::CStr::from_ptr(pci_bus_id) }.to_string_lossy();
        let (dom, bus, d, f) =
            vgpu_sim_core::ids::parse_pci_bus_id(&s).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        for (ord, &p) in r.visible.iter().enumerate() {
            let info = &r.shm.devices()[p as usize];
            if dom == 0 && d == 0 && f == 0 && bus == info.pci_bus {
                // SAFETY: `dev` is an out-pointer argument of the C API: `put` rejects NULL, and a
                // non-NULL one is valid for a write by the caller's contract.
                return unsafe { put(dev, ord as CUdevice) };
            }
        }
        Err(CUDA_ERROR_INVALID_DEVICE)
    })())
}

pub unsafe fn cuDeviceCanAccessPeer(
    can_access_peer: *mut c_int,
    dev: CUdevice,
    peer_dev: CUdevice,
) -> CUresult {
    code((|| {
        let r = rt()?;
        if can_access_peer.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        r.phys(dev)?;
        r.phys(peer_dev)?;
        // SAFETY: `can_access_peer` is an out-pointer argument of the C API: `put` rejects NULL,
        // and a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(can_access_peer, (dev != peer_dev) as c_int) }
    })())
}
