//! Implementations of the NVML entry points over the shared simulator state.

#![allow(non_snake_case)]

use cuda_headers::prelude::*;
use std::sync::{Mutex, OnceLock};
use vgpu_sim_core::clock;
use vgpu_sim_core::config::SimConfig;
use vgpu_sim_core::config::MAX_DEVICES;
use vgpu_sim_core::state::{DeviceInfo, Guard, OpenError, SimState, SWEEP_INTERVAL_NS};

/// Driver branch the simulator reports (CUDA 12.8 generation).
pub const DRIVER_VERSION: &str = "570.124.06";
pub const NVML_VERSION: &str = "12.570.124.06";
pub const CUDA_DRIVER_VERSION: c_int = 12080;

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
        unsafe { put_str(version, length, DRIVER_VERSION) }
    })())
}

pub unsafe fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    code((|| {
        st()?;
        // SAFETY: `version` is an output buffer argument of the C API with its length: `put_str`
        // rejects NULL and writes at most that many bytes.
        unsafe { put_str(version, length, NVML_VERSION) }
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

/// The size-query protocol of the process lists: `(pid, used bytes)` rows written by `write`.
unsafe fn process_list(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos_null: bool,
    write: impl FnOnce(&[(u32, u64)]),
) -> R {
    let (s, d) = dev(device)?;
    if count.is_null() {
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    }
    let rows: Vec<(u32, u64)> = with(s, |g| {
        g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
        g.processes(d.index)
    })?
    .into_iter()
    .map(|p| (p.pid, p.usage.total()))
    .collect();
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
