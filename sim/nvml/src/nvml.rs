//! Implementations of the NVML entry points over the shared simulator state.

#![allow(non_snake_case)]

use cuda_headers::prelude::*;
use std::sync::{Mutex, OnceLock};
use vgpu_sim_core::clock;
use vgpu_sim_core::config::SimConfig;
use vgpu_sim_core::config::MAX_DEVICES;
use vgpu_sim_core::state::{DeviceInfo, Guard, OpenError, SimState, SWEEP_INTERVAL_NS};

/// Driver version the simulator reports by default (the R570 / CUDA 12.8 generation).
pub const DEFAULT_DRIVER_VERSION: &str = "570.124.06";
pub const CUDA_DRIVER_VERSION: c_int = 12080;

/// The driver version this process reports: `VGPU_SIM_DRIVER_VERSION` (digits and dots, e.g.
/// `535.261.03`, what a given nvidia-smi insists on) or [`DEFAULT_DRIVER_VERSION`]; a bad value
/// prints one line and falls back to the default.
pub fn driver_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| match std::env::var("VGPU_SIM_DRIVER_VERSION") {
        Ok(v) if valid_driver_version(&v) => v,
        Ok(v) => {
            eprintln!(
                "vgpu-sim: VGPU_SIM_DRIVER_VERSION={v:?} is not a driver version like 535.261.03; \
                 using {DEFAULT_DRIVER_VERSION}"
            );
            DEFAULT_DRIVER_VERSION.to_string()
        }
        Err(_) => DEFAULT_DRIVER_VERSION.to_string(),
    })
}

/// `<major>.<minor>[.<patch>]`, decimal, at most 32 characters (NVML's buffers are 80).
pub fn valid_driver_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    v.len() <= 32
        && (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// NVML's own version: "12." followed by the driver version, as NVML 12 reports it.
pub fn nvml_version() -> String {
    format!("12.{}", driver_version())
}

/// Whether `VGPU_SIM_NVML_TRACE` asks for one stderr line per unsupported call.
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VGPU_SIM_NVML_TRACE").is_some_and(|v| v != "0"))
}

/// The body of every `stub` row: `NVML_ERROR_UNINITIALIZED` before `nvmlInit`, then
/// `NVML_ERROR_NOT_SUPPORTED`. Touches none of the caller's arguments.
pub fn unsupported(name: &str) -> nvmlReturn_t {
    if tracing() {
        eprintln!("vgpu-sim nvml: {name} -> not supported");
    }
    if *refs() == 0 {
        NVML_ERROR_UNINITIALIZED
    } else {
        NVML_ERROR_NOT_SUPPORTED
    }
}

type R<T = ()> = Result<T, nvmlReturn_t>;

fn code(r: R) -> nvmlReturn_t {
    match r {
        Ok(()) => NVML_SUCCESS,
        Err(e) => e,
    }
}

/// The state, opened by the first successful `nvmlInit` (None: no usable state = no devices).
static STATE: OnceLock<Option<SimState>> = OnceLock::new();
static REFS: Mutex<u32> = Mutex::new(0);

fn refs() -> std::sync::MutexGuard<'static, u32> {
    REFS.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_state() -> Option<SimState> {
    let path = vgpu_sim_core::default_state_path();
    let (cfg, warnings) = SimConfig::from_env();
    if !path.exists() {
        for w in warnings {
            eprintln!("vgpu-sim: {w}");
        }
    }
    match SimState::open_or_create(&path, &cfg) {
        Ok(s) => Some(s),
        Err(OpenError::Mismatch(m)) | Err(OpenError::Io(m)) => {
            eprintln!("{m}");
            None
        }
        Err(OpenError::Missing) => None,
    }
}

/// The state when NVML is initialised.
fn st() -> R<Option<&'static SimState>> {
    if *refs() == 0 {
        return Err(NVML_ERROR_UNINITIALIZED);
    }
    Ok(STATE.get().and_then(|s| s.as_ref()))
}

fn devices() -> R<&'static [DeviceInfo]> {
    Ok(st()?.map(|s| s.devices()).unwrap_or(&[]))
}

/// Distinct addresses used as device handles.
#[repr(C)]
pub struct DevTag(u64);
static HANDLES: [DevTag; MAX_DEVICES] = [const { DevTag(0x4e564d4c) }; MAX_DEVICES];

fn handle_of(i: usize) -> nvmlDevice_t {
    &HANDLES[i] as *const DevTag as nvmlDevice_t
}

/// The device behind a handle: `(state, info)`.
fn dev(d: nvmlDevice_t) -> R<(&'static SimState, &'static DeviceInfo)> {
    let s = st()?.ok_or(NVML_ERROR_INVALID_ARGUMENT)?;
    let base = HANDLES.as_ptr() as usize;
    let p = d as usize;
    let size = std::mem::size_of::<DevTag>();
    if p < base || !(p - base).is_multiple_of(size) {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    let i = (p - base) / size;
    let info = s.devices().get(i).ok_or(NVML_ERROR_INVALID_ARGUMENT)?;
    Ok((s, info))
}

fn with<T>(s: &SimState, f: impl FnOnce(&mut Guard<'_>) -> T) -> R<T> {
    let mut g = s.lock().map_err(|m| {
        eprintln!("{m}");
        NVML_ERROR_UNKNOWN
    })?;
    Ok(f(&mut g))
}

unsafe fn put<T>(p: *mut T, v: T) -> R {
    if p.is_null() {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    // SAFETY: `p` is checked non-NULL above; the caller's contract (`p` is a C out-pointer
    // argument) makes a non-NULL one valid for a write of `T`. `write` drops no old value, which
    // may be uninitialised.
    unsafe { p.write(v) };
    Ok(())
}

/// NVML string out-parameter: INSUFFICIENT_SIZE when `len` cannot hold it with its NUL.
unsafe fn put_str(buf: *mut c_char, len: c_uint, s: &str) -> R {
    if buf.is_null() {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    if (len as usize) < s.len() + 1 {
        return Err(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` is non-NULL (checked) and `len` bytes long by the caller's contract; `len` >
    // `s.len()` (checked), so these bytes and the NUL after them fit. The source is our own string
    // and cannot overlap the caller's buffer.
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, s.len()) };
    // SAFETY: `s.len()` < `len`: the NUL lands inside the caller's buffer (see above).
    unsafe { *buf.add(s.len()) = 0 };
    Ok(())
}

fn fill_chars(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.bytes().take(n)) {
        *d = b as c_char;
    }
    dst[n] = 0;
}

// ---- init ------------------------------------------------------------------------------

pub unsafe fn nvmlInit() -> nvmlReturn_t {
    // SAFETY: `nvmlInitWithFlags` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlInitWithFlags(0) }
}

pub unsafe fn nvmlInit_v2() -> nvmlReturn_t {
    // SAFETY: `nvmlInitWithFlags` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlInitWithFlags(0) }
}

pub unsafe fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    let mut n = refs();
    STATE.get_or_init(open_state);
    *n += 1;
    NVML_SUCCESS
}

pub unsafe fn nvmlShutdown() -> nvmlReturn_t {
    let mut n = refs();
    if *n == 0 {
        return NVML_ERROR_UNINITIALIZED;
    }
    *n -= 1;
    NVML_SUCCESS
}

// ---- system ----------------------------------------------------------------------------

pub unsafe fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    code((|| {
        st()?;
        // SAFETY: `version` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(version, length, driver_version()) }
    })())
}

pub unsafe fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    code((|| {
        st()?;
        // SAFETY: `version` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(version, length, &nvml_version()) }
    })())
}

pub unsafe fn nvmlSystemGetCudaDriverVersion(cuda_driver_version: *mut c_int) -> nvmlReturn_t {
    code((|| {
        st()?;
        // SAFETY: `cuda_driver_version` is an out-pointer argument of the C API: `put` rejects
        // NULL, and a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(cuda_driver_version, CUDA_DRIVER_VERSION) }
    })())
}

pub unsafe fn nvmlSystemGetCudaDriverVersion_v2(cuda_driver_version: *mut c_int) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlSystemGetCudaDriverVersion(cuda_driver_version) }
}

// ---- devices -----------------------------------------------------------------------------

pub unsafe fn nvmlDeviceGetCount(device_count: *mut c_uint) -> nvmlReturn_t {
    // SAFETY: `device_count` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code((|| unsafe {
        put(device_count, devices()?.len() as c_uint)
    })())
}

pub unsafe fn nvmlDeviceGetCount_v2(device_count: *mut c_uint) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetCount` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetCount(device_count) }
}

pub unsafe fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    code((|| {
        let n = devices()?.len();
        if device.is_null() || index as usize >= n {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `device` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(device, handle_of(index as usize)) }
    })())
}

pub unsafe fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetHandleByIndex` requires only what our own caller guarantees: the
    // pointer arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetHandleByIndex(index, device) }
}

pub unsafe fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    code((|| {
        let devs = devices()?;
        if uuid.is_null() || device.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `uuid` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let want = unsafe { std::ffi::CStr::from_ptr(uuid) }.to_string_lossy();
        let i = devs
            .iter()
            .position(|d| d.uuid_str.eq_ignore_ascii_case(want.trim()))
            .ok_or(NVML_ERROR_NOT_FOUND)?;
        // SAFETY: `device` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(device, handle_of(i)) }
    })())
}

pub unsafe fn nvmlDeviceGetHandleByPciBusId(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    code((|| {
        let devs = devices()?;
        if pci_bus_id.is_null() || device.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `pci_bus_id` is a C-string argument of the API, checked non-NULL above; its NUL
        // termination is the caller's contract.
        let s = unsafe { std::ffi::CStr::from_ptr(pci_bus_id) }.to_string_lossy();
        let (dom, bus, d, f) =
            vgpu_sim_core::ids::parse_pci_bus_id(&s).ok_or(NVML_ERROR_INVALID_ARGUMENT)?;
        let i = devs
            .iter()
            .position(|x| dom == 0 && d == 0 && f == 0 && x.pci_bus == bus)
            .ok_or(NVML_ERROR_NOT_FOUND)?;
        // SAFETY: `device` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(device, handle_of(i)) }
    })())
}

pub unsafe fn nvmlDeviceGetHandleByPciBusId_v2(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetHandleByPciBusId(pci_bus_id, device) }
}

pub unsafe fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: `name` is an output buffer argument of the C API with its length: `put_str` rejects
    // NULL and writes at most that many bytes.
    code((|| unsafe { put_str(name, length, &dev(device)?.1.name) })())
}

pub unsafe fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: `uuid` is an output buffer argument of the C API with its length: `put_str` rejects
    // NULL and writes at most that many bytes.
    code((|| unsafe {
        put_str(uuid, length, &dev(device)?.1.uuid_str)
    })())
}

pub unsafe fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    // SAFETY: `index` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    code((|| unsafe { put(index, dev(device)?.1.index) })())
}

pub unsafe fn nvmlDeviceGetMinorNumber(
    device: nvmlDevice_t,
    minor_number: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `minor_number` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code((|| unsafe { put(minor_number, dev(device)?.1.index) })())
}

pub unsafe fn nvmlDeviceGetPciInfo(device: nvmlDevice_t, pci: *mut nvmlPciInfo_t) -> nvmlReturn_t {
    code((|| {
        let (_, d) = dev(device)?;
        let mut p = nvmlPciInfo_t::default();
        fill_chars(&mut p.busIdLegacy, &d.pci_bus_id_legacy);
        fill_chars(&mut p.busId, &d.pci_bus_id);
        p.domain = 0;
        p.bus = d.pci_bus;
        p.device = 0;
        p.pciDeviceId = (d.pci_device_id << 16) | 0x10DE;
        p.pciSubSystemId = (d.pci_subsystem_id << 16) | 0x10DE;
        // SAFETY: `pci` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe { put(pci, p) }
    })())
}

pub unsafe fn nvmlDeviceGetPciInfo_v2(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetPciInfo` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetPciInfo(device, pci) }
}

pub unsafe fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetPciInfo` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetPciInfo(device, pci) }
}

/// `(used, total)` after a rate-limited liveness sweep.
fn mem_of(s: &SimState, d: &DeviceInfo) -> R<(u64, u64)> {
    with(s, |g| {
        g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
        g.mem_info(d.index)
    })?
    .ok_or(NVML_ERROR_INVALID_ARGUMENT)
}

pub unsafe fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if memory.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        let (used, total) = mem_of(s, d)?;
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                memory,
                nvmlMemory_t {
                    total,
                    free: total.saturating_sub(used),
                    used,
                },
            )
        }
    })())
}

/// Reserved memory reported by `nvmlDeviceGetMemoryInfo_v2` (none: total = used + free, the
/// same ledger as `cuMemGetInfo`).
const RESERVED_BYTES: u64 = 0;

pub unsafe fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if memory.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `memory` is checked non-NULL above and points at an nvmlMemory_v2_t by the C
        // API's contract; only its `version` field is read (a place read, no copy of the struct).
        if unsafe { (*memory).version } != nvmlMemory_v2 {
            return Err(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        }
        let (used, total) = mem_of(s, d)?;
        let used = used.min(total - RESERVED_BYTES);
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                memory,
                nvmlMemory_v2_t {
                    version: nvmlMemory_v2,
                    total,
                    reserved: RESERVED_BYTES,
                    free: total - RESERVED_BYTES - used,
                    used,
                },
            )
        }
    })())
}

/// `(pid, used bytes)` of every process holding memory or a context on the device behind a
/// handle (after a rate-limited liveness sweep).
pub fn process_rows(device: nvmlDevice_t) -> R<Vec<(u32, u64)>> {
    let (s, d) = dev(device)?;
    Ok(with(s, |g| {
        g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
        g.processes(d.index)
    })?
    .into_iter()
    .map(|p| (p.pid, p.usage.total()))
    .collect())
}

/// The size-query protocol of the process lists: `(pid, used bytes)` rows written by `write`.
unsafe fn process_list(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos_null: bool,
    write: impl FnOnce(&[(u32, u64)]),
) -> R {
    if count.is_null() {
        dev(device)?;
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    let rows = process_rows(device)?;
    let n = rows.len() as c_uint;
    if n == 0 {
        // SAFETY: `count` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *count = 0 };
        return Ok(());
    }
    // SAFETY: `count` is an in/out count argument, checked non-NULL above; readable and writable by
    // the C API's contract.
    if infos_null || unsafe { *count } < n {
        // SAFETY: `count` is an out-pointer argument, checked non-NULL above; by the C API's
        // contract a non-NULL one is valid for this write.
        unsafe { *count = n };
        return Err(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    write(&rows);
    // SAFETY: `count` is an out-pointer argument, checked non-NULL above; by the C API's contract a
    // non-NULL one is valid for this write.
    unsafe { *count = n };
    Ok(())
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    // SAFETY: `process_list` requires only what our own caller guarantees: the pointer arguments
    // are passed on unchanged, valid as the C API specifies.
    code(unsafe {
        process_list(device, info_count, infos.is_null(), |rows| {
            for (i, &(pid, used)) in rows.iter().enumerate() {
                infos.add(i).write(nvmlProcessInfo_v1_t {
                    pid,
                    usedGpuMemory: used,
                });
            }
        })
    })
}

fn v2_rows(infos: *mut nvmlProcessInfo_v2_t) -> impl FnOnce(&[(u32, u64)]) {
    move |rows| {
        for (i, &(pid, used)) in rows.iter().enumerate() {
            // SAFETY: the caller's array holds at least `rows.len()` entries (checked by count).
            unsafe {
                infos.add(i).write(nvmlProcessInfo_v2_t {
                    pid,
                    usedGpuMemory: used,
                    gpuInstanceId: 0xFFFF_FFFF,
                    computeInstanceId: 0xFFFF_FFFF,
                })
            };
        }
    }
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: `process_list` requires only what our own caller guarantees: the pointer arguments
    // are passed on unchanged, valid as the C API specifies.
    code(unsafe { process_list(device, info_count, infos.is_null(), v2_rows(infos)) })
}

pub unsafe fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetComputeRunningProcesses_v2(device, info_count, infos) }
}

/// No graphics processes run on the simulated device.
unsafe fn no_graphics(device: nvmlDevice_t, info_count: *mut c_uint) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `info_count` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(info_count, 0) }
    })())
}

pub unsafe fn nvmlDeviceGetGraphicsRunningProcesses(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    _infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    // SAFETY: `no_graphics` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe { no_graphics(device, info_count) }
}

pub unsafe fn nvmlDeviceGetGraphicsRunningProcesses_v2(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    _infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: `no_graphics` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe { no_graphics(device, info_count) }
}

pub unsafe fn nvmlDeviceGetGraphicsRunningProcesses_v3(
    device: nvmlDevice_t,
    info_count: *mut c_uint,
    _infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: `no_graphics` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe { no_graphics(device, info_count) }
}

const UTIL_WINDOW_NS: u64 = 1_000_000_000;

fn gpu_util(s: &SimState, d: &DeviceInfo) -> R<u32> {
    with(s, |g| {
        g.utilization(d.index, clock::mono_ns(), UTIL_WINDOW_NS)
    })
}

pub unsafe fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if utilization.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        let gpu = gpu_util(s, d)?;
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                utilization,
                nvmlUtilization_t {
                    gpu,
                    memory: gpu * 2 / 5,
                },
            )
        }
    })())
}

/// One sample per pid that ran kernels since `last_seen_time_stamp` (CLOCK_REALTIME µs; 0: the
/// last second; a future value: nothing, NOT_FOUND); smUtil = that pid's busy share of the
/// window.
pub unsafe fn nvmlDeviceGetProcessUtilization(
    device: nvmlDevice_t,
    utilization: *mut nvmlProcessUtilizationSample_t,
    process_samples_count: *mut c_uint,
    last_seen_time_stamp: c_ulonglong,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if process_samples_count.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        let now_mono = clock::mono_ns();
        let now_real_us = clock::real_ns() / 1000;
        if last_seen_time_stamp >= now_real_us {
            // SAFETY: `process_samples_count` is an out-pointer argument, checked non-NULL above;
            // by the C API's contract a non-NULL one is valid for this write.
            unsafe { *process_samples_count = 0 };
            return Err(NVML_ERROR_NOT_FOUND);
        }
        let window_ns = if last_seen_time_stamp == 0 {
            UTIL_WINDOW_NS
        } else {
            ((now_real_us - last_seen_time_stamp) * 1000).clamp(1_000_000, 60 * UTIL_WINDOW_NS)
        };
        let t0 = now_mono.saturating_sub(window_ns);
        let busy = with(s, |g| g.process_busy(d.index, t0, now_mono))?;
        let n = busy.len() as c_uint;
        if n == 0 {
            // SAFETY: `process_samples_count` is an out-pointer argument, checked non-NULL above;
            // by the C API's contract a non-NULL one is valid for this write.
            unsafe { *process_samples_count = 0 };
            return Err(NVML_ERROR_NOT_FOUND);
        }
        // SAFETY: `process_samples_count` is an in/out count argument, checked non-NULL above;
        // readable and writable by the C API's contract.
        if utilization.is_null() || unsafe { *process_samples_count } < n {
            // SAFETY: `process_samples_count` is an out-pointer argument, checked non-NULL above;
            // by the C API's contract a non-NULL one is valid for this write.
            unsafe { *process_samples_count = n };
            return Err(NVML_ERROR_INSUFFICIENT_SIZE);
        }
        for (i, &(pid, b)) in busy.iter().enumerate() {
            let sm = vgpu_sim_core::timeline::percent(b, window_ns);
            // SAFETY: `utilization` is non-NULL (checked) and holds `*process_samples_count` >= `n`
            // entries (checked above, by the caller's contract); `i` < `n`.
            unsafe {
                utilization.add(i).write(nvmlProcessUtilizationSample_t {
                    pid,
                    timeStamp: now_real_us,
                    smUtil: sm,
                    memUtil: sm * 2 / 5,
                    encUtil: 0,
                    decUtil: 0,
                })
            };
        }
        // SAFETY: `process_samples_count` is an out-pointer argument, checked non-NULL above; by
        // the C API's contract a non-NULL one is valid for this write.
        unsafe { *process_samples_count = n };
        Ok(())
    })())
}

pub unsafe fn nvmlDeviceGetCudaComputeCapability(
    device: nvmlDevice_t,
    major: *mut c_int,
    minor: *mut c_int,
) -> nvmlReturn_t {
    code((|| {
        let (_, d) = dev(device)?;
        if major.is_null() || minor.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `major` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(major, d.cc_major as c_int) }?;
        // SAFETY: `minor` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(minor, d.cc_minor as c_int) }
    })())
}

pub unsafe fn nvmlDeviceGetMultiGpuBoard(
    device: nvmlDevice_t,
    multi_gpu_bool: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `multi_gpu_bool` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(multi_gpu_bool, 0) }
    })())
}

pub unsafe fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor_type: c_int,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if sensor_type != 0 || temp.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `temp` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(temp, 33 + gpu_util(s, d)? * 2 / 5) }
    })())
}

/// Board power in milliwatts: ~10% of the limit idle, up to ~90% at full load.
pub unsafe fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power: *mut c_uint) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if power.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        let u = gpu_util(s, d)?;
        // SAFETY: `power` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(power, d.power_w * (100 + 8 * u)) }
    })())
}

pub unsafe fn nvmlDeviceGetFanSpeed(device: nvmlDevice_t, speed: *mut c_uint) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `speed` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(speed, 30) }
    })())
}

pub unsafe fn nvmlDeviceGetPersistenceMode(device: nvmlDevice_t, mode: *mut c_int) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `mode` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(mode, 1) }
    })())
}

pub unsafe fn nvmlDeviceGetComputeMode(device: nvmlDevice_t, mode: *mut c_int) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `mode` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(mode, 0) }
    })())
}

// ---- events --------------------------------------------------------------------------------
// The simulated device raises no events (no Xid, no clock changes): sets exist so clients that
// create one (nvidia-smi does, for every view) work, and a wait times out after its timeout.

/// Event sets a process may hold at once.
const EVENT_SETS: usize = 64;
static EVENT_SET_USED: [std::sync::atomic::AtomicBool; EVENT_SETS] =
    [const { std::sync::atomic::AtomicBool::new(false) }; EVENT_SETS];
static EVENT_SET_TAGS: [DevTag; EVENT_SETS] = [const { DevTag(0x45564e54) }; EVENT_SETS];

fn event_set_index(set: nvmlEventSet_t) -> R<usize> {
    let base = EVENT_SET_TAGS.as_ptr() as usize;
    let p = set as usize;
    let size = std::mem::size_of::<DevTag>();
    if p < base || !(p - base).is_multiple_of(size) || (p - base) / size >= EVENT_SETS {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    let i = (p - base) / size;
    if !EVENT_SET_USED[i].load(std::sync::atomic::Ordering::Acquire) {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    Ok(i)
}

pub unsafe fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    code((|| {
        st()?;
        let i = EVENT_SET_USED
            .iter()
            .position(|u| {
                u.compare_exchange(
                    false,
                    true,
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
            })
            .ok_or(NVML_ERROR_MEMORY)?;
        // SAFETY: `set` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe { put(set, &EVENT_SET_TAGS[i] as *const DevTag as nvmlEventSet_t) }
    })())
}

pub unsafe fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    code((|| {
        st()?;
        let i = event_set_index(set)?;
        EVENT_SET_USED[i].store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    })())
}

/// No event type is supported; registering for any is refused as NVML refuses unsupported ones.
pub unsafe fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    event_types: *mut c_ulonglong,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `event_types` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(event_types, 0) }
    })())
}

pub unsafe fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    event_types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        event_set_index(set)?;
        if event_types != 0 {
            return Err(NVML_ERROR_NOT_SUPPORTED);
        }
        Ok(())
    })())
}

/// Nothing ever happens: sleeps the timeout (at most 10 s per call) and says so.
pub unsafe fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeoutms: c_uint,
) -> nvmlReturn_t {
    code((|| {
        st()?;
        event_set_index(set)?;
        if data.is_null() {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        std::thread::sleep(std::time::Duration::from_millis(
            timeoutms.min(10_000) as u64
        ));
        Err(NVML_ERROR_TIMEOUT)
    })())
}

pub unsafe fn nvmlEventSetWait(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeoutms: c_uint,
) -> nvmlReturn_t {
    // SAFETY: `nvmlEventSetWait_v2` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlEventSetWait_v2(set, data, timeoutms) }
}

// ---- identity and board -------------------------------------------------------------------

/// `NVML_BRAND_NVIDIA`: what data-centre boards of the Hopper/Ada generations report.
const BRAND_NVIDIA: c_uint = 14;

/// NVML's architecture code from the compute capability (`NVML_DEVICE_ARCH_*`).
fn architecture(d: &DeviceInfo) -> c_uint {
    match (d.cc_major, d.cc_minor) {
        (9, _) => 9,           // Hopper
        (8, m) if m >= 9 => 8, // Ada
        (8, _) => 7,           // Ampere
        (7, 5) => 6,           // Turing
        (7, _) => 5,           // Volta
        _ => 0xffff_ffff,      // unknown
    }
}

pub unsafe fn nvmlDeviceGetBrand(device: nvmlDevice_t, kind: *mut nvmlBrandType_t) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `kind` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(kind, BRAND_NVIDIA) }
    })())
}

pub unsafe fn nvmlDeviceGetArchitecture(
    device: nvmlDevice_t,
    arch: *mut nvmlDeviceArchitecture_t,
) -> nvmlReturn_t {
    // SAFETY: `arch` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    code((|| unsafe { put(arch, architecture(dev(device)?.1)) })())
}

/// A 13-digit board serial derived from the UUID (stable per device).
fn serial_of(d: &DeviceInfo) -> String {
    let n = u64::from_le_bytes(d.uuid[..8].try_into().unwrap_or_default());
    format!("{:013}", n % 10_000_000_000_000)
}

pub unsafe fn nvmlDeviceGetSerial(
    device: nvmlDevice_t,
    serial: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: `serial` is an output buffer argument of the C API with its length: `put_str` rejects
    // NULL and writes at most that many bytes.
    code((|| unsafe {
        put_str(serial, length, &serial_of(dev(device)?.1))
    })())
}

pub unsafe fn nvmlDeviceGetBoardId(device: nvmlDevice_t, board_id: *mut c_uint) -> nvmlReturn_t {
    // SAFETY: `board_id` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code((|| unsafe { put(board_id, dev(device)?.1.pci_bus << 8) })())
}

/// FP32 cores: 128 per SM on Hopper and Ada, 64 on Ampere GA100.
pub unsafe fn nvmlDeviceGetNumGpuCores(
    device: nvmlDevice_t,
    num_cores: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        let d = dev(device)?.1;
        let per_sm = if architecture(d) == 7 { 64 } else { 128 };
        // SAFETY: `num_cores` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(num_cores, d.sms * per_sm) }
    })())
}

pub unsafe fn nvmlDeviceGetMemoryBusWidth(
    device: nvmlDevice_t,
    bus_width: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `bus_width` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code((|| unsafe { put(bus_width, dev(device)?.1.bus_width) })())
}

/// No display engine on these boards.
pub unsafe fn nvmlDeviceGetDisplayMode(
    device: nvmlDevice_t,
    display: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `display` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(display, 0) }
    })())
}

pub unsafe fn nvmlDeviceGetDisplayActive(
    device: nvmlDevice_t,
    is_active: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetDisplayMode` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetDisplayMode(device, is_active) }
}

/// Bare metal: `NVML_GPU_VIRTUALIZATION_MODE_NONE`.
pub unsafe fn nvmlDeviceGetVirtualizationMode(
    device: nvmlDevice_t,
    p_virtual_mode: *mut nvmlGpuVirtualizationMode_t,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `p_virtual_mode` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(p_virtual_mode, 0) }
    })())
}

/// MIG is off (current and pending), as on a board nobody partitioned.
pub unsafe fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current_mode: *mut c_uint,
    pending_mode: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `current_mode` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(current_mode, 0) }?;
        // SAFETY: `pending_mode` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pending_mode, 0) }
    })())
}

/// Every handle the simulator gives out is a whole GPU.
pub unsafe fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig_device: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `is_mig_device` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(is_mig_device, 0) }
    })())
}

/// ECC on (HBM boards ship with it on) and no error ever counted.
pub unsafe fn nvmlDeviceGetEccMode(
    device: nvmlDevice_t,
    current: *mut nvmlEnableState_t,
    pending: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `current` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(current, 1) }?;
        // SAFETY: `pending` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(pending, 1) }
    })())
}

pub unsafe fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: nvmlMemoryErrorType_t,
    counter_type: nvmlEccCounterType_t,
    ecc_counts: *mut c_ulonglong,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        if error_type > 1 || counter_type > 1 {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        // SAFETY: `ecc_counts` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ecc_counts, 0) }
    })())
}

/// The BAR1 aperture: the device memory rounded up to a power of two (what these boards
/// expose with resizable BAR), 1 MiB of it mapped by the driver.
pub unsafe fn nvmlDeviceGetBAR1MemoryInfo(
    device: nvmlDevice_t,
    bar1_memory: *mut nvmlBAR1Memory_t,
) -> nvmlReturn_t {
    code((|| {
        let d = dev(device)?.1;
        let total = d.total_mem.next_power_of_two();
        let used = 1 << 20;
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                bar1_memory,
                nvmlBAR1Memory_t {
                    bar1Total: total,
                    bar1Free: total - used,
                    bar1Used: used,
                },
            )
        }
    })())
}

// ---- PCIe ------------------------------------------------------------------------------------

/// PCIe generation of the board: 5 on Hopper, 4 before.
fn pcie_gen(d: &DeviceInfo) -> c_uint {
    if d.cc_major >= 9 {
        5
    } else {
        4
    }
}

pub unsafe fn nvmlDeviceGetMaxPcieLinkGeneration(
    device: nvmlDevice_t,
    max_link_gen: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `max_link_gen` is an out-pointer argument of the C API: `put` rejects NULL, and a
    // non-NULL one is valid for a write by the caller's contract.
    code((|| unsafe { put(max_link_gen, pcie_gen(dev(device)?.1)) })())
}

pub unsafe fn nvmlDeviceGetGpuMaxPcieLinkGeneration(
    device: nvmlDevice_t,
    max_link_gen_device: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetMaxPcieLinkGeneration(device, max_link_gen_device) }
}

pub unsafe fn nvmlDeviceGetCurrPcieLinkGeneration(
    device: nvmlDevice_t,
    curr_link_gen: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetMaxPcieLinkGeneration(device, curr_link_gen) }
}

pub unsafe fn nvmlDeviceGetMaxPcieLinkWidth(
    device: nvmlDevice_t,
    max_link_width: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `max_link_width` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(max_link_width, 16) }
    })())
}

pub unsafe fn nvmlDeviceGetCurrPcieLinkWidth(
    device: nvmlDevice_t,
    curr_link_width: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetMaxPcieLinkWidth(device, curr_link_width) }
}

// ---- clocks, performance, power ---------------------------------------------------------------

const CLOCK_GRAPHICS: c_uint = 0;
const CLOCK_SM: c_uint = 1;
const CLOCK_MEM: c_uint = 2;

/// Maximum clock of a domain in MHz (video and others: not simulated).
fn max_clock_mhz(d: &DeviceInfo, kind: c_uint) -> R<c_uint> {
    match kind {
        CLOCK_GRAPHICS | CLOCK_SM => Ok(d.clock_khz / 1000),
        CLOCK_MEM => Ok(d.mem_clock_khz / 1000),
        _ => Err(NVML_ERROR_NOT_SUPPORTED),
    }
}

/// The simulated board never lowers its clocks: current = maximum.
pub unsafe fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    kind: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `clock` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    code((|| unsafe {
        put(clock, max_clock_mhz(dev(device)?.1, kind)?)
    })())
}

pub unsafe fn nvmlDeviceGetMaxClockInfo(
    device: nvmlDevice_t,
    kind: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `nvmlDeviceGetClockInfo` requires only what our own caller guarantees: the pointer
    // arguments are passed on unchanged, valid as the C API specifies.
    unsafe { nvmlDeviceGetClockInfo(device, kind, clock) }
}

/// Clock event reasons: `GpuIdle` (0x1) while the device ran nothing in the last second.
pub unsafe fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    clocks_event_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        let idle = gpu_util(s, d)? == 0;
        // SAFETY: `clocks_event_reasons` is an out-pointer argument of the C API: `put` rejects
        // NULL, and a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(clocks_event_reasons, if idle { 0x1 } else { 0 }) }
    })())
}

pub unsafe fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    clocks_throttle_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetCurrentClocksEventReasons(device, clocks_throttle_reasons) }
}

/// The reasons NVML defines up to display clock setting (0x1..0x100).
pub unsafe fn nvmlDeviceGetSupportedClocksEventReasons(
    device: nvmlDevice_t,
    supported_clocks_event_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `supported_clocks_event_reasons` is an out-pointer argument of the C API: `put`
        // rejects NULL, and a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(supported_clocks_event_reasons, 0x1ff) }
    })())
}

pub unsafe fn nvmlDeviceGetSupportedClocksThrottleReasons(
    device: nvmlDevice_t,
    supported_clocks_throttle_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetSupportedClocksEventReasons(device, supported_clocks_throttle_reasons) }
}

/// P0 (maximum performance) at all times, as these boards report under persistence mode.
pub unsafe fn nvmlDeviceGetPerformanceState(
    device: nvmlDevice_t,
    p_state: *mut nvmlPstates_t,
) -> nvmlReturn_t {
    code((|| {
        dev(device)?;
        // SAFETY: `p_state` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(p_state, 0) }
    })())
}

pub unsafe fn nvmlDeviceGetPowerState(
    device: nvmlDevice_t,
    p_state: *mut nvmlPstates_t,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetPerformanceState(device, p_state) }
}

/// Power limit in milliwatts: the model's board power (default = enforced = maximum).
fn power_limit_mw(d: &DeviceInfo) -> c_uint {
    d.power_w * 1000
}

pub unsafe fn nvmlDeviceGetPowerManagementLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: `limit` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
    // one is valid for a write by the caller's contract.
    code((|| unsafe { put(limit, power_limit_mw(dev(device)?.1)) })())
}

pub unsafe fn nvmlDeviceGetEnforcedPowerLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetPowerManagementLimit(device, limit) }
}

pub unsafe fn nvmlDeviceGetPowerManagementDefaultLimit(
    device: nvmlDevice_t,
    default_limit: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the versioned alias passes its arguments on unchanged to the same entry point, whose
    // contract is this one's.
    unsafe { nvmlDeviceGetPowerManagementLimit(device, default_limit) }
}

/// Settable range: 30% of the board power up to the board power.
pub unsafe fn nvmlDeviceGetPowerManagementLimitConstraints(
    device: nvmlDevice_t,
    min_limit: *mut c_uint,
    max_limit: *mut c_uint,
) -> nvmlReturn_t {
    code((|| {
        let max = power_limit_mw(dev(device)?.1);
        // SAFETY: `min_limit` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(min_limit, max / 10 * 3) }?;
        // SAFETY: `max_limit` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(max_limit, max) }
    })())
}

/// The executable of a process, as the driver names it (empty: `NVML_ERROR_NOT_FOUND`).
pub unsafe fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    code((|| {
        st()?;
        let n = crate::internal::process_name(pid);
        if n.is_empty() {
            return Err(NVML_ERROR_NOT_FOUND);
        }
        // SAFETY: `name` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(name, length, &n) }
    })())
}

// ---- field values -----------------------------------------------------------------------------

const FI_DEV_POWER_INSTANT: c_uint = 186;
const FI_DEV_POWER_MIN_LIMIT: c_uint = 187;
const FI_DEV_POWER_MAX_LIMIT: c_uint = 188;
const FI_DEV_POWER_DEFAULT_LIMIT: c_uint = 189;
const FI_DEV_POWER_CURRENT_LIMIT: c_uint = 190;
const FI_DEV_POWER_REQUESTED_LIMIT: c_uint = 192;
/// `NVML_POWER_SCOPE_GPU`: the GPU's own power (module scope is not simulated).
const POWER_SCOPE_GPU: c_uint = 0;
const VALUE_TYPE_UNSIGNED_INT: c_uint = 1;

/// The power fields (milliwatts, GPU scope); every other field answers NOT_SUPPORTED in its
/// own `nvmlReturn`, as NVML does (the call itself succeeds).
pub unsafe fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    values_count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    code((|| {
        let (s, d) = dev(device)?;
        if values.is_null() || values_count < 0 {
            return Err(NVML_ERROR_INVALID_ARGUMENT);
        }
        let now_us = (clock::real_ns() / 1000) as i64;
        let limit = power_limit_mw(d);
        for i in 0..values_count as usize {
            // SAFETY: `values` is non-NULL (checked) and the caller's array of `values_count`
            // entries; `i` < `values_count`, and no other reference to entry `i` exists.
            let v = unsafe { &mut *values.add(i) };
            let value = match (v.fieldId, v.scopeId) {
                (_, scope) if scope != POWER_SCOPE_GPU => None,
                (FI_DEV_POWER_INSTANT, _) => Some(d.power_w * (100 + 8 * gpu_util(s, d)?)),
                (FI_DEV_POWER_MIN_LIMIT, _) => Some(limit / 10 * 3),
                (FI_DEV_POWER_MAX_LIMIT, _)
                | (FI_DEV_POWER_DEFAULT_LIMIT, _)
                | (FI_DEV_POWER_CURRENT_LIMIT, _)
                | (FI_DEV_POWER_REQUESTED_LIMIT, _) => Some(limit),
                _ => None,
            };
            v.timestamp = now_us;
            v.latencyUsec = 0;
            match value {
                Some(x) => {
                    v.valueType = VALUE_TYPE_UNSIGNED_INT;
                    v.value = x as u64;
                    v.nvmlReturn = NVML_SUCCESS;
                }
                None => v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED,
            }
        }
        Ok(())
    })())
}

#[cfg(test)]
mod tests {
    use super::valid_driver_version;

    #[test]
    fn driver_versions_are_two_or_three_decimal_fields() {
        for ok in ["535.261.03", "570.124.06", "580.65", "1.2.3"] {
            assert!(valid_driver_version(ok), "{ok}");
        }
        for bad in [
            "",
            "535",
            "535.x",
            "535..03",
            "535.261.03.1",
            "v535.1",
            " 535.1",
            "5.".repeat(20).as_str(),
        ] {
            assert!(!valid_driver_version(bad), "{bad:?}");
        }
    }
}
