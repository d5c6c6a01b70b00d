//! Simulated `librocm_smi64.so` (ROCm SMI): every row of `hip_headers::rocm_smi_api!`, over
//! the machine-wide simulated AMD GPU (the physical view: all devices, all processes).
//! Device indices are the machine's; VRAM figures are the simulator's ground truth.

#![allow(clippy::missing_safety_doc, non_snake_case)]

#[path = "../../smi_view.rs"]
#[allow(dead_code)]
mod smi_view;

use hip_headers::prelude::*;
use smi_view::{put, put_str, view, View};
use vgpu_sim_core::amd;

#[no_mangle]
#[used]
pub static vgpu_sim_marker: u8 = 1;

macro_rules! rsmi_exports {
    ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the export passes its C arguments through unchanged; the body has the same contract.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    imp::$name($($arg),*)
                }))
                .unwrap_or(RSMI_STATUS_UNKNOWN_ERROR)
            }
        )*
    };
}

hip_headers::rocm_smi_api!(rsmi_exports);

type R = Result<(), rsmi_status_t>;

fn code(r: R) -> rsmi_status_t {
    r.err().unwrap_or(RSMI_STATUS_SUCCESS)
}

/// The view and a valid device index.
fn dev(
    dv_ind: u32,
) -> Result<(&'static View, &'static vgpu_sim_core::state::DeviceInfo), rsmi_status_t> {
    let v = view().ok_or(RSMI_STATUS_INIT_ERROR)?;
    let d = v.device(dv_ind).ok_or(RSMI_STATUS_INVALID_ARGS)?;
    Ok((v, d))
}

fn out<T>(p: *mut T, val: T) -> R {
    // SAFETY: non-NULL out-pointers from the caller.
    if unsafe { put(p, val) } {
        Ok(())
    } else {
        Err(RSMI_STATUS_INVALID_ARGS)
    }
}

fn text(dst: *mut c_char, len: usize, s: &str) -> R {
    // SAFETY: the caller gave `len` bytes at `dst`.
    if dst.is_null() || len == 0 {
        return Err(RSMI_STATUS_INVALID_ARGS);
    }
    // SAFETY: out-pointer (or buffer) argument of the C API: NULL-checked, its validity is the caller's contract.
    if unsafe { put_str(dst, len, s) } {
        Ok(())
    } else {
        Err(RSMI_STATUS_INSUFFICIENT_SIZE)
    }
}

/// What the simulator reports as the ROCm SMI library version (ROCm 7.0).
const VERSION: (u32, u32, u32) = (7, 7, 0);
static VERSION_BUILD: &std::ffi::CStr = c"7.7.0+vgpu-sim";

mod imp {
    use super::*;

    pub unsafe fn rsmi_init(_flags: u64) -> rsmi_status_t {
        if !smi_view::driver_loaded() {
            return RSMI_STATUS_INIT_ERROR;
        }
        smi_view::init();
        RSMI_STATUS_SUCCESS
    }

    pub unsafe fn rsmi_shut_down() -> rsmi_status_t {
        if smi_view::shut_down() {
            RSMI_STATUS_SUCCESS
        } else {
            RSMI_STATUS_INIT_ERROR
        }
    }

    pub unsafe fn rsmi_num_monitor_devices(n: *mut u32) -> rsmi_status_t {
        code((|| {
            let v = view().ok_or(RSMI_STATUS_INIT_ERROR)?;
            out(n, v.devices().len() as u32)
        })())
    }

    pub unsafe fn rsmi_version_get(version: *mut rsmi_version_t) -> rsmi_status_t {
        code(out(
            version,
            rsmi_version_t {
                major: VERSION.0,
                minor: VERSION.1,
                patch: VERSION.2,
                build: VERSION_BUILD.as_ptr(),
            },
        ))
    }

    pub unsafe fn rsmi_version_str_get(
        component: u32,
        version: *mut c_char,
        len: u32,
    ) -> rsmi_status_t {
        // Component 0: the driver (amdgpu kernel module) version.
        if component != 0 {
            return RSMI_STATUS_INVALID_ARGS;
        }
        code(text(version, len as usize, smi_view::DRIVER_VERSION))
    }

    pub unsafe fn rsmi_status_string(
        status: rsmi_status_t,
        s: *mut *const c_char,
    ) -> rsmi_status_t {
        let m: &'static std::ffi::CStr = match status {
            RSMI_STATUS_SUCCESS => c"RSMI_STATUS_SUCCESS: The function has been executed successfully.",
            RSMI_STATUS_INVALID_ARGS => c"RSMI_STATUS_INVALID_ARGS: The provided arguments do not meet the preconditions required for input by the function.",
            RSMI_STATUS_NOT_SUPPORTED => c"RSMI_STATUS_NOT_SUPPORTED: The requested information or action is not available for the given input.",
            RSMI_STATUS_INIT_ERROR => c"RSMI_STATUS_INIT_ERROR: An error occurred during initialization.",
            RSMI_STATUS_NOT_FOUND => c"RSMI_STATUS_NOT_FOUND: An item was searched for but not found.",
            RSMI_STATUS_INSUFFICIENT_SIZE => c"RSMI_STATUS_INSUFFICIENT_SIZE: Not enough resources were available to fully execute the call.",
            _ => c"RSMI_STATUS_UNKNOWN_ERROR: An unknown error occurred.",
        };
        code(out(s, m.as_ptr()))
    }

    pub unsafe fn rsmi_dev_id_get(dv_ind: u32, id: *mut u16) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| out(id, d.pci_device_id as u16)))
    }

    pub unsafe fn rsmi_dev_vendor_id_get(dv_ind: u32, id: *mut u16) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| out(id, 0x1002)))
    }

    pub unsafe fn rsmi_dev_subsystem_id_get(dv_ind: u32, id: *mut u16) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| out(id, d.pci_subsystem_id as u16)))
    }

    pub unsafe fn rsmi_dev_subsystem_vendor_id_get(dv_ind: u32, id: *mut u16) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| out(id, 0x1002)))
    }

    pub unsafe fn rsmi_dev_name_get(dv_ind: u32, name: *mut c_char, len: usize) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| text(name, len, &d.name)))
    }

    pub unsafe fn rsmi_dev_vendor_name_get(
        dv_ind: u32,
        name: *mut c_char,
        len: usize,
    ) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| text(name, len, "Advanced Micro Devices, Inc. [AMD/ATI]")))
    }

    pub unsafe fn rsmi_dev_subsystem_name_get(
        dv_ind: u32,
        name: *mut c_char,
        len: usize,
    ) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| text(name, len, &d.name)))
    }

    pub unsafe fn rsmi_dev_vram_vendor_get(
        dv_ind: u32,
        name: *mut c_char,
        len: u32,
    ) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| text(name, len as usize, smi_view::VRAM_VENDOR)))
    }

    pub unsafe fn rsmi_dev_serial_number_get(
        dv_ind: u32,
        serial: *mut c_char,
        len: u32,
    ) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| {
            text(
                serial,
                len as usize,
                &format!("{:016X}", amd::unique_id(&d.uuid)),
            )
        }))
    }

    pub unsafe fn rsmi_dev_vbios_version_get(
        dv_ind: u32,
        vbios: *mut c_char,
        len: u32,
    ) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| text(vbios, len as usize, "113-VGPUSIM-001")))
    }

    pub unsafe fn rsmi_dev_unique_id_get(dv_ind: u32, id: *mut u64) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| out(id, amd::unique_id(&d.uuid))))
    }

    /// BDF id: domain << 32 | bus << 8 | device << 3 | function.
    pub unsafe fn rsmi_dev_pci_id_get(dv_ind: u32, bdfid: *mut u64) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(_, d)| out(bdfid, (d.pci_bus as u64) << 8)))
    }

    pub unsafe fn rsmi_dev_drm_render_minor_get(dv_ind: u32, minor: *mut u32) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| out(minor, 128 + dv_ind)))
    }

    fn vram(dv_ind: u32, mem_type: u32) -> Result<(u64, u64), rsmi_status_t> {
        let (v, _) = dev(dv_ind)?;
        // VRAM and visible VRAM are the device memory (a large-BAR device); GTT is host memory
        // the simulator does not model.
        if mem_type > 1 {
            return Err(RSMI_STATUS_NOT_SUPPORTED);
        }
        v.mem(dv_ind).ok_or(RSMI_STATUS_INVALID_ARGS)
    }

    pub unsafe fn rsmi_dev_memory_total_get(
        dv_ind: u32,
        mem_type: u32,
        total: *mut u64,
    ) -> rsmi_status_t {
        code(vram(dv_ind, mem_type).and_then(|(_, t)| out(total, t)))
    }

    pub unsafe fn rsmi_dev_memory_usage_get(
        dv_ind: u32,
        mem_type: u32,
        used: *mut u64,
    ) -> rsmi_status_t {
        code(vram(dv_ind, mem_type).and_then(|(u, _)| out(used, u)))
    }

    pub unsafe fn rsmi_dev_busy_percent_get(dv_ind: u32, busy: *mut u32) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|(v, _)| out(busy, v.busy_percent(dv_ind).unwrap_or(0))))
    }

    /// Memory controller activity: not modelled (copies cost no device time).
    pub unsafe fn rsmi_dev_memory_busy_percent_get(dv_ind: u32, busy: *mut u32) -> rsmi_status_t {
        code(dev(dv_ind).and_then(|_| out(busy, 0)))
    }

    /// Coarse-grain GFX activity: the device's accumulated busy time in ms; memory activity 0
    /// (copies cost no device time).
    pub unsafe fn rsmi_utilization_count_get(
        dv_ind: u32,
        counters: *mut rsmi_utilization_counter_t,
        count: u32,
        timestamp: *mut u64,
    ) -> rsmi_status_t {
        code((|| {
            let (v, _) = dev(dv_ind)?;
            if counters.is_null() || count == 0 || timestamp.is_null() {
                return Err(RSMI_STATUS_INVALID_ARGS);
            }
            let busy_ms = v.busy_total_ns(dv_ind).unwrap_or(0) / 1_000_000;
            for i in 0..count as usize {
                // SAFETY: the caller gave `count` counters.
                let c = unsafe { &mut *counters.add(i) };
                c.value = match c.type_ {
                    0 => busy_ms,
                    1 => 0,
                    _ => return Err(RSMI_STATUS_INVALID_ARGS),
                };
            }
            out(timestamp, vgpu_sim_core::clock::mono_ns())
        })())
    }

    fn info(pid: u32, per_dev: &[(u32, u64)]) -> rsmi_process_info_t {
        rsmi_process_info_t {
            process_id: pid,
            pasid: pid & 0xFFFF,
            vram_usage: per_dev.iter().map(|(_, b)| b).sum(),
            sdma_usage: 0,
            cu_occupancy: 0,
        }
    }

    /// `procs` NULL: the number of processes. Otherwise fills up to `*num_items` and sets it
    /// to the number written (`RSMI_STATUS_INSUFFICIENT_SIZE` when some did not fit).
    pub unsafe fn rsmi_compute_process_info_get(
        procs: *mut rsmi_process_info_t,
        num_items: *mut u32,
    ) -> rsmi_status_t {
        code((|| {
            let v = view().ok_or(RSMI_STATUS_INIT_ERROR)?;
            if num_items.is_null() {
                return Err(RSMI_STATUS_INVALID_ARGS);
            }
            let all = v.all_processes();
            if procs.is_null() {
                return out(num_items, all.len() as u32);
            }
            // SAFETY: checked non-NULL.
            let cap = unsafe { *num_items } as usize;
            for (i, (pid, per_dev)) in all.iter().take(cap).enumerate() {
                // SAFETY: the caller gave room for `*num_items` entries.
                unsafe { procs.add(i).write(info(*pid, per_dev)) };
            }
            out(num_items, all.len().min(cap) as u32)?;
            if all.len() > cap {
                return Err(RSMI_STATUS_INSUFFICIENT_SIZE);
            }
            Ok(())
        })())
    }

    pub unsafe fn rsmi_compute_process_info_by_pid_get(
        pid: u32,
        p: *mut rsmi_process_info_t,
    ) -> rsmi_status_t {
        code((|| {
            let v = view().ok_or(RSMI_STATUS_INIT_ERROR)?;
            let all = v.all_processes();
            let (_, per_dev) = all
                .iter()
                .find(|(q, _)| *q == pid)
                .ok_or(RSMI_STATUS_NOT_FOUND)?;
            out(p, info(pid, per_dev))
        })())
    }

    pub unsafe fn rsmi_compute_process_gpus_get(
        pid: u32,
        dv_indices: *mut u32,
        num_devices: *mut u32,
    ) -> rsmi_status_t {
        code((|| {
            let v = view().ok_or(RSMI_STATUS_INIT_ERROR)?;
            if num_devices.is_null() {
                return Err(RSMI_STATUS_INVALID_ARGS);
            }
            let all = v.all_processes();
            let (_, per_dev) = all
                .iter()
                .find(|(q, _)| *q == pid)
                .ok_or(RSMI_STATUS_NOT_FOUND)?;
            if !dv_indices.is_null() {
                // SAFETY: checked non-NULL.
                let cap = unsafe { *num_devices } as usize;
                for (i, (d, _)) in per_dev.iter().take(cap).enumerate() {
                    // SAFETY: room for `*num_devices` entries.
                    unsafe { dv_indices.add(i).write(*d) };
                }
                if per_dev.len() > cap {
                    out(num_devices, per_dev.len() as u32)?;
                    return Err(RSMI_STATUS_INSUFFICIENT_SIZE);
                }
            }
            out(num_devices, per_dev.len() as u32)
        })())
    }
}
