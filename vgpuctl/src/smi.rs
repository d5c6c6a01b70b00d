//! `vgpuctl smi`: an nvidia-smi-like table through NVML (through ROCm SMI where there is
//! no NVML or it shows no GPU, and first in an AMD container), as this process sees it. Under libvgpu (any
//! process of a capped container) that is the container's view: its slice, its usage, its
//! processes.

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::fmt::Write as _;

use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// `name` of the library `lib` (libnvidia-ml) as a `T`.
///
/// # Safety
/// `lib` is a live `dlopen` handle and `T` is the function pointer type of `name` (from
/// cuda-headers' `pfn` table): every call through a wrong `T` is undefined behaviour.
pub unsafe fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, String> {
    const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<*mut c_void>()) };
    // SAFETY: dlsym on the caller's live handle, with a NUL-terminated name.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return Err(format!("the GPU library has no {name:?}"));
    }
    // SAFETY: T is the function pointer type of `name` (the caller's promise), and of a
    // pointer's size (checked at compile time above).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

fn check(rc: nvmlReturn_t, what: &str) -> Result<(), String> {
    if rc == NVML_SUCCESS {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            cuda_headers::nvml_error_string(rc).to_string_lossy()
        ))
    }
}

fn text(buf: &[c_char]) -> String {
    // SAFETY: NVML NUL-terminates within the buffer (zero-initialised anyway).
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The table through NVML; where NVML cannot be loaded or shows no GPU, through ROCm SMI
/// (AMD GPUs, the same container view under libvgpu). In a container of HAMi's
/// amd-device-plugin (`ROCR_VISIBLE_DEVICES` set, `NVIDIA_VISIBLE_DEVICES` not) ROCm SMI
/// first.
pub fn smi() -> Result<String, String> {
    let amd_container = std::env::var_os("ROCR_VISIBLE_DEVICES").is_some()
        && std::env::var_os("NVIDIA_VISIBLE_DEVICES").is_none();
    if amd_container {
        if let Ok(table) = rocm_smi() {
            return Ok(table);
        }
    }
    match nvml_smi() {
        Ok((table, count)) if count > 0 => Ok(table),
        nvml => rocm_smi().or_else(|rocm| match nvml {
            Ok((table, _)) => Ok(table),
            Err(e) => Err(format!("{e}\n(nor through ROCm SMI: {rocm})")),
        }),
    }
}

/// The NVML table and the number of GPUs in it.
fn nvml_smi() -> Result<(String, u32), String> {
    // SAFETY: loading NVML.
    let lib = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
    if lib.is_null() {
        let sim = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("sim")))
            .unwrap_or_default();
        return Err(format!(
            "cannot load libnvidia-ml.so.1: no NVIDIA driver here. For a container's view over \
             the simulated GPU run it in one: `vgpuctl run -- vgpuctl smi` (or `vgpuctl run \
             -- sh -c '<job> & vgpuctl smi'`); for the whole simulated machine: \
             LD_LIBRARY_PATH={} vgpuctl smi",
            sim.display()
        ));
    }
    let mut out = String::new();
    // SAFETY: `lib` is the handle just opened and each `sym` type is its name's `pfn` type;
    // plain NVML calls with valid out-pointers and buffer lengths.
    unsafe {
        check(
            sym::<pfn::nvmlInit_v2>(lib, c"nvmlInit_v2")?(),
            "nvmlInit_v2",
        )?;
        let mut drv = [0 as c_char; 80];
        check(
            sym::<pfn::nvmlSystemGetDriverVersion>(lib, c"nvmlSystemGetDriverVersion")?(
                drv.as_mut_ptr(),
                80,
            ),
            "driver version",
        )?;
        let mut count: c_uint = 0;
        check(
            sym::<pfn::nvmlDeviceGetCount_v2>(lib, c"nvmlDeviceGetCount_v2")?(&mut count),
            "device count",
        )?;
        let by_index =
            sym::<pfn::nvmlDeviceGetHandleByIndex_v2>(lib, c"nvmlDeviceGetHandleByIndex_v2")?;
        let name = sym::<pfn::nvmlDeviceGetName>(lib, c"nvmlDeviceGetName")?;
        let mem = sym::<pfn::nvmlDeviceGetMemoryInfo>(lib, c"nvmlDeviceGetMemoryInfo")?;
        let util =
            sym::<pfn::nvmlDeviceGetUtilizationRates>(lib, c"nvmlDeviceGetUtilizationRates")?;
        let procs = sym::<pfn::nvmlDeviceGetComputeRunningProcesses_v3>(
            lib,
            c"nvmlDeviceGetComputeRunningProcesses_v3",
        )?;
        let _ = writeln!(out, "Driver Version: {}   GPUs: {count}", text(&drv));
        let _ = writeln!(
            out,
            "{:<4} {:<28} {:>22} {:>6}",
            "GPU", "Name", "Memory-Usage", "Util"
        );
        let mut rows = Vec::new();
        for i in 0..count {
            let mut dev: nvmlDevice_t = std::ptr::null_mut();
            check(by_index(i, &mut dev), "handle")?;
            let mut n = [0 as c_char; 96];
            check(name(dev, n.as_mut_ptr(), 96), "name")?;
            let mut m = nvmlMemory_t::default();
            check(mem(dev, &mut m), "memory info")?;
            let mut u = nvmlUtilization_t::default();
            let gpu_util = if util(dev, &mut u) == NVML_SUCCESS {
                format!("{}%", u.gpu)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:<4} {:<28} {:>9}MiB / {:>6}MiB {:>6}",
                i,
                text(&n),
                m.used >> 20,
                m.total >> 20,
                gpu_util
            );
            let mut infos = [nvmlProcessInfo_v2_t::default(); 256];
            let mut k = infos.len() as c_uint;
            if procs(dev, &mut k, infos.as_mut_ptr()) == NVML_SUCCESS {
                for p in &infos[..k as usize] {
                    rows.push((i, p.pid, p.usedGpuMemory));
                }
            }
        }
        let _ = writeln!(
            out,
            "Processes:\n{:<4} {:>8} {:>14}",
            "GPU", "PID", "GPU Memory"
        );
        for (gpu, pid, used) in rows {
            let _ = writeln!(out, "{gpu:<4} {pid:>8} {:>11}MiB", used >> 20);
        }
        Ok((out, count))
    }
}

/// ROCm SMI, the first of its sonames that loads.
fn open_rocm_smi() -> Result<*mut c_void, String> {
    [
        c"librocm_smi64.so.7",
        c"librocm_smi64.so.6",
        c"librocm_smi64.so.5",
        c"librocm_smi64.so.1",
        c"librocm_smi64.so",
    ]
    .iter()
    // SAFETY: loading ROCm SMI by name.
    .map(|n| unsafe { libc::dlopen(n.as_ptr(), libc::RTLD_NOW) })
    .find(|h| !h.is_null())
    .ok_or_else(|| "cannot load librocm_smi64.so: no AMD GPU library here".to_string())
}

fn rsmi_ok(rc: u32, what: &str) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("ROCm SMI {what}: status {rc}"))
    }
}

/// The same table through ROCm SMI (VRAM, busy percentage, KFD processes by host pid).
fn rocm_smi() -> Result<String, String> {
    use hip_headers::pfn;
    let lib = open_rocm_smi()?;
    let mut out = String::new();
    // SAFETY: `lib` is the handle just opened and each `sym` type is its name's type in
    // hip-headers' ROCm SMI table; plain calls with valid out-pointers and lengths.
    unsafe {
        rsmi_ok(sym::<pfn::rsmi_init>(lib, c"rsmi_init")?(0), "rsmi_init")?;
        let mut count = 0u32;
        rsmi_ok(
            sym::<pfn::rsmi_num_monitor_devices>(lib, c"rsmi_num_monitor_devices")?(&mut count),
            "device count",
        )?;
        let name = sym::<pfn::rsmi_dev_name_get>(lib, c"rsmi_dev_name_get")?;
        let id = sym::<pfn::rsmi_dev_unique_id_get>(lib, c"rsmi_dev_unique_id_get")?;
        let total = sym::<pfn::rsmi_dev_memory_total_get>(lib, c"rsmi_dev_memory_total_get")?;
        let usage = sym::<pfn::rsmi_dev_memory_usage_get>(lib, c"rsmi_dev_memory_usage_get")?;
        let busy = sym::<pfn::rsmi_dev_busy_percent_get>(lib, c"rsmi_dev_busy_percent_get")?;
        let procs =
            sym::<pfn::rsmi_compute_process_info_get>(lib, c"rsmi_compute_process_info_get")?;
        let _ = writeln!(out, "ROCm SMI   GPUs: {count}");
        let _ = writeln!(
            out,
            "{:<4} {:<28} {:<20} {:>22} {:>6}",
            "GPU", "Name", "UUID", "VRAM-Usage", "Use"
        );
        for i in 0..count {
            let mut n = [0 as c_char; 96];
            let dev_name = if name(i, n.as_mut_ptr(), n.len()) == 0 {
                text(&n)
            } else {
                "-".into()
            };
            let mut u = 0u64;
            let uuid = if id(i, &mut u) == 0 {
                format!("GPU-{u:016x}")
            } else {
                "-".into()
            };
            let (mut t, mut used) = (0u64, 0u64);
            rsmi_ok(total(i, 0, &mut t), "VRAM total")?;
            rsmi_ok(usage(i, 0, &mut used), "VRAM usage")?;
            let mut b = 0u32;
            let use_ = if busy(i, &mut b) == 0 {
                format!("{b}%")
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{i:<4} {dev_name:<28} {uuid:<20} {:>9}MiB / {:>6}MiB {use_:>6}",
                used >> 20,
                t >> 20
            );
        }
        let mut list = [hip_headers::smi_types::rsmi_process_info_t::default(); 256];
        let mut k = list.len() as u32;
        let _ = writeln!(out, "Processes:\n{:>8} {:>14}", "PID", "VRAM");
        if procs(list.as_mut_ptr(), &mut k) == 0 {
            for p in &list[..(k as usize).min(list.len())] {
                let _ = writeln!(out, "{:>8} {:>11}MiB", p.process_id, p.vram_usage >> 20);
            }
        }
    }
    Ok(out)
}

/// The UUIDs of the machine's devices through the real NVML (for `vgpuctl run --device`).
pub fn device_uuids() -> Result<Vec<String>, String> {
    // SAFETY: loading NVML.
    let lib = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
    if lib.is_null() {
        return Err("cannot load libnvidia-ml.so.1 to list the machine's GPUs".into());
    }
    let mut out = Vec::new();
    // SAFETY: `lib` is the handle just opened and each `sym` type is its name's `pfn` type;
    // plain NVML calls with valid out-pointers and buffer lengths.
    unsafe {
        check(
            sym::<pfn::nvmlInit_v2>(lib, c"nvmlInit_v2")?(),
            "nvmlInit_v2",
        )?;
        let mut count: c_uint = 0;
        check(
            sym::<pfn::nvmlDeviceGetCount_v2>(lib, c"nvmlDeviceGetCount_v2")?(&mut count),
            "device count",
        )?;
        let by_index =
            sym::<pfn::nvmlDeviceGetHandleByIndex_v2>(lib, c"nvmlDeviceGetHandleByIndex_v2")?;
        let uuid = sym::<pfn::nvmlDeviceGetUUID>(lib, c"nvmlDeviceGetUUID")?;
        for i in 0..count {
            let mut dev: nvmlDevice_t = std::ptr::null_mut();
            check(by_index(i, &mut dev), "handle")?;
            let mut u = [0 as c_char; 96];
            check(uuid(dev, u.as_mut_ptr(), 96), "uuid")?;
            out.push(text(&u));
        }
    }
    Ok(out)
}

/// The ROCr UUIDs (`GPU-<16 hex digits>` of the unique id) of the machine's AMD devices
/// through the real ROCm SMI (for `vgpuctl run --vendor amd --device`).
pub fn rocm_device_uuids() -> Result<Vec<String>, String> {
    let lib = open_rocm_smi()?;
    let mut out = Vec::new();
    // SAFETY: `lib` is the handle just opened and each `sym` type is its name's type in
    // hip-headers' ROCm SMI table; plain calls with valid out-pointers.
    unsafe {
        rsmi_ok(
            sym::<hip_headers::pfn::rsmi_init>(lib, c"rsmi_init")?(0),
            "rsmi_init",
        )?;
        let mut n = 0u32;
        rsmi_ok(
            sym::<hip_headers::pfn::rsmi_num_monitor_devices>(lib, c"rsmi_num_monitor_devices")?(
                &mut n,
            ),
            "device count",
        )?;
        let id = sym::<hip_headers::pfn::rsmi_dev_unique_id_get>(lib, c"rsmi_dev_unique_id_get")?;
        for i in 0..n {
            let mut u = 0u64;
            rsmi_ok(id(i, &mut u), "unique id")?;
            out.push(format!("GPU-{u:016x}"));
        }
    }
    Ok(out)
}
