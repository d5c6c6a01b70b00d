//! Simulated `libamd_smi.so` (AMD SMI, ROCm 7 / amdsmi 7.x layouts): every row of
//! `hip_headers::amd_smi_api!` is exported, so the amdsmi Python package's import (which
//! binds all of them) succeeds. The rows the simulator models (init, sockets and processor
//! handles, identities, VRAM total/usage, activity, process list, versions) are answered
//! from the machine-wide simulated AMD GPU; every other row is a valid call that returns
//! `AMDSMI_STATUS_NOT_SUPPORTED`, as the real library does for features a device lacks.

#![allow(clippy::missing_safety_doc, non_snake_case)]

#[path = "../../smi_view.rs"]
#[allow(dead_code)]
mod smi_view;

use hip_headers::prelude::*;
use smi_view::{put, put_str, view, View};
use vgpu_sim_core::amd;
use vgpu_sim_core::state::DeviceInfo;

#[no_mangle]
#[used]
pub static vgpu_sim_marker: u8 = 1;

/// The answer of a row the simulator does not model.
trait Unsupported {
    fn unsupported() -> Self;
    fn on_panic() -> Self;
}

impl Unsupported for amdsmi_status_t {
    fn unsupported() -> Self {
        AMDSMI_STATUS_NOT_SUPPORTED
    }
    fn on_panic() -> Self {
        AMDSMI_STATUS_INTERNAL_EXCEPTION
    }
}

impl Unsupported for () {
    fn unsupported() -> Self {}
    fn on_panic() -> Self {}
}

macro_rules! amdsmi_exports {
    ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// One method per row; the default body is "not supported". [`Sim`] overrides the
        /// rows the simulator models.
        #[allow(unused_variables, clippy::too_many_arguments, clippy::unused_unit)]
        trait AmdSmi {
            $( unsafe fn $name($($arg: $ty),*) -> $ret { <$ret as Unsupported>::unsupported() } )*
        }

        $(
            #[no_mangle]
            #[allow(clippy::too_many_arguments, clippy::unused_unit)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the export passes its C arguments through unchanged; the body has the same contract.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    <Sim as AmdSmi>::$name($($arg),*)
                }))
                .unwrap_or_else(|_| <$ret as Unsupported>::on_panic())
            }
        )*
    };
}

hip_headers::amd_smi_api!(amdsmi_exports);

struct Sim;

type R = Result<(), amdsmi_status_t>;

fn code(r: R) -> amdsmi_status_t {
    r.err().unwrap_or(AMDSMI_STATUS_SUCCESS)
}

/// Socket handle (one socket holds every GPU) and processor handles (index + 1, tagged).
const SOCKET: usize = 0x50C0_0001;
const PROC_TAG: usize = 0xA3D0_0000;

fn proc_handle(i: u32) -> *mut c_void {
    (PROC_TAG | (i as usize + 1)) as *mut c_void
}

fn dev(h: *mut c_void) -> Result<(&'static View, u32, &'static DeviceInfo), amdsmi_status_t> {
    let v = view().ok_or(AMDSMI_STATUS_NOT_INIT)?;
    let raw = h as usize;
    if raw & !0xFFFF != PROC_TAG || raw & 0xFFFF == 0 {
        return Err(AMDSMI_STATUS_INVAL);
    }
    let i = (raw & 0xFFFF) as u32 - 1;
    let d = v.device(i).ok_or(AMDSMI_STATUS_INVAL)?;
    Ok((v, i, d))
}

fn out<T>(p: *mut T, val: T) -> R {
    // SAFETY: non-NULL out-pointers from the caller.
    if unsafe { put(p, val) } {
        Ok(())
    } else {
        Err(AMDSMI_STATUS_INVAL)
    }
}

fn fill(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.bytes().take(n)) {
        *d = b as c_char;
    }
    dst[n..].fill(0);
}

/// `amdsmi_bdf_t`: function 3 bits, device 5, bus 8, domain 48 (low to high).
fn bdf(d: &DeviceInfo) -> u64 {
    (d.pci_bus as u64) << 8
}

/// The library version (`libamd_smi.so.26`, ROCm 7.0.2).
const LIB_VERSION: (u32, u32, u32) = (26, 0, 2);
static LIB_BUILD: &std::ffi::CStr = c"26.0.2+vgpu-sim";

const VENDOR: &str = "Advanced Micro Devices Inc. [AMD/ATI]";

impl AmdSmi for Sim {
    unsafe fn amdsmi_init(init_flags: u64) -> amdsmi_status_t {
        if !smi_view::driver_loaded() {
            return AMDSMI_STATUS_DRIVER_NOT_LOADED;
        }
        if init_flags & AMDSMI_INIT_AMD_GPUS == 0 {
            return AMDSMI_STATUS_NOT_SUPPORTED;
        }
        smi_view::init();
        AMDSMI_STATUS_SUCCESS
    }

    unsafe fn amdsmi_shut_down() -> amdsmi_status_t {
        if smi_view::shut_down() {
            AMDSMI_STATUS_SUCCESS
        } else {
            AMDSMI_STATUS_NOT_INIT
        }
    }

    unsafe fn amdsmi_get_lib_version(version: *mut c_void) -> amdsmi_status_t {
        code(out(
            version as *mut amdsmi_version_t,
            amdsmi_version_t {
                major: LIB_VERSION.0,
                minor: LIB_VERSION.1,
                release: LIB_VERSION.2,
                build: LIB_BUILD.as_ptr(),
            },
        ))
    }

    unsafe fn amdsmi_status_code_to_string(
        status: amdsmi_status_t,
        status_string: *mut c_void,
    ) -> amdsmi_status_t {
        let m: &'static std::ffi::CStr = match status {
            AMDSMI_STATUS_SUCCESS => c"AMDSMI_STATUS_SUCCESS: Call succeeded",
            AMDSMI_STATUS_INVAL => c"AMDSMI_STATUS_INVAL: Invalid parameters",
            AMDSMI_STATUS_NOT_SUPPORTED => c"AMDSMI_STATUS_NOT_SUPPORTED: Command not supported",
            AMDSMI_STATUS_OUT_OF_RESOURCES => c"AMDSMI_STATUS_OUT_OF_RESOURCES: Not enough memory",
            AMDSMI_STATUS_NOT_FOUND => c"AMDSMI_STATUS_NOT_FOUND: Device Not found",
            AMDSMI_STATUS_NOT_INIT => c"AMDSMI_STATUS_NOT_INIT: Device not initialized",
            AMDSMI_STATUS_DRIVER_NOT_LOADED => c"AMDSMI_STATUS_DRIVER_NOT_LOADED: Driver not loaded",
            AMDSMI_STATUS_INSUFFICIENT_SIZE => c"AMDSMI_STATUS_INSUFFICIENT_SIZE: Not enough resources were available for the operation",
            _ => c"AMDSMI_STATUS_UNKNOWN_ERROR: An unknown error occurred",
        };
        code(out(status_string as *mut *const c_char, m.as_ptr()))
    }

    unsafe fn amdsmi_get_socket_handles(
        socket_count: *mut c_void,
        socket_handles: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            view().ok_or(AMDSMI_STATUS_NOT_INIT)?;
            let count = socket_count as *mut u32;
            if count.is_null() {
                return Err(AMDSMI_STATUS_INVAL);
            }
            if !socket_handles.is_null() {
                // SAFETY: checked non-NULL; room for `*count` handles.
                if unsafe { *count } < 1 {
                    return Err(AMDSMI_STATUS_INSUFFICIENT_SIZE);
                }
                // SAFETY: non-NULL handle array with room for `*count` (>= 1) entries, the caller's contract.
                unsafe { (socket_handles as *mut *mut c_void).write(SOCKET as *mut c_void) };
            }
            out(count, 1)
        })())
    }

    unsafe fn amdsmi_get_socket_info(
        socket_handle: *mut c_void,
        len: u64,
        name: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let v = view().ok_or(AMDSMI_STATUS_NOT_INIT)?;
            if socket_handle as usize != SOCKET {
                return Err(AMDSMI_STATUS_INVAL);
            }
            let id = v
                .device(0)
                .map_or_else(String::new, |d| d.pci_bus_id_legacy.to_lowercase());
            // SAFETY: the caller gave `len` bytes.
            if unsafe { put_str(name as *mut c_char, len as usize, &id) } {
                Ok(())
            } else {
                Err(AMDSMI_STATUS_INSUFFICIENT_SIZE)
            }
        })())
    }

    unsafe fn amdsmi_get_processor_handles(
        socket_handle: *mut c_void,
        processor_count: *mut c_void,
        processor_handles: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let v = view().ok_or(AMDSMI_STATUS_NOT_INIT)?;
            let count = processor_count as *mut u32;
            if count.is_null() || socket_handle as usize != SOCKET {
                return Err(AMDSMI_STATUS_INVAL);
            }
            let n = v.devices().len() as u32;
            if !processor_handles.is_null() {
                // SAFETY: checked non-NULL; room for `*count` handles.
                let cap = unsafe { *count };
                for i in 0..n.min(cap) {
                    // SAFETY: room for `*count` handles, the caller's contract.
                    unsafe {
                        (processor_handles as *mut *mut c_void)
                            .add(i as usize)
                            .write(proc_handle(i))
                    };
                }
                if cap < n {
                    out(count, n)?;
                    return Err(AMDSMI_STATUS_INSUFFICIENT_SIZE);
                }
            }
            out(count, n)
        })())
    }

    unsafe fn amdsmi_get_processor_type(
        processor_handle: *mut c_void,
        processor_type: *mut c_void,
    ) -> amdsmi_status_t {
        code(
            dev(processor_handle)
                .and_then(|_| out(processor_type as *mut u32, AMDSMI_PROCESSOR_TYPE_AMD_GPU)),
        )
    }

    unsafe fn amdsmi_get_processor_handle_from_bdf(
        bdf_value: u64,
        processor_handle: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let v = view().ok_or(AMDSMI_STATUS_NOT_INIT)?;
            let i = v
                .devices()
                .iter()
                .position(|d| bdf(d) == bdf_value)
                .ok_or(AMDSMI_STATUS_NOT_FOUND)?;
            out(processor_handle as *mut *mut c_void, proc_handle(i as u32))
        })())
    }

    unsafe fn amdsmi_get_gpu_device_bdf(
        processor_handle: *mut c_void,
        bdf_out: *mut c_void,
    ) -> amdsmi_status_t {
        code(dev(processor_handle).and_then(|(_, _, d)| out(bdf_out as *mut u64, bdf(d))))
    }

    unsafe fn amdsmi_get_gpu_device_uuid(
        processor_handle: *mut c_void,
        uuid_length: *mut c_void,
        uuid: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (_, _, d) = dev(processor_handle)?;
            let len = uuid_length as *mut u32;
            if len.is_null() || uuid.is_null() {
                return Err(AMDSMI_STATUS_INVAL);
            }
            let s = amd::amdsmi_uuid(&d.uuid, d.pci_device_id);
            // SAFETY: the caller gave `*len` bytes.
            let cap = unsafe { *len } as usize;
            // SAFETY: `uuid` has `cap` bytes, the caller's contract.
            if !unsafe { put_str(uuid as *mut c_char, cap, &s) } {
                return Err(AMDSMI_STATUS_INSUFFICIENT_SIZE);
            }
            out(len, s.len() as u32 + 1)
        })())
    }

    unsafe fn amdsmi_get_gpu_enumeration_info(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (_, i, d) = dev(processor_handle)?;
            // SAFETY: plain C struct, all-zero valid.
            let mut e: amdsmi_enumeration_info_t = unsafe { std::mem::zeroed() };
            e.drm_render = 128 + i;
            e.drm_card = i;
            e.hsa_id = i + 1;
            e.hip_id = i;
            fill(&mut e.hip_uuid, &amd::rocr_uuid(&d.uuid));
            out(info as *mut amdsmi_enumeration_info_t, e)
        })())
    }

    unsafe fn amdsmi_get_gpu_id(processor_handle: *mut c_void, id: *mut c_void) -> amdsmi_status_t {
        code(
            dev(processor_handle).and_then(|(_, _, d)| out(id as *mut u16, d.pci_device_id as u16)),
        )
    }

    unsafe fn amdsmi_get_gpu_vendor_name(
        processor_handle: *mut c_void,
        name: *mut c_void,
        len: u64,
    ) -> amdsmi_status_t {
        code(dev(processor_handle).and_then(|_| {
            // SAFETY: the caller gave `len` bytes.
            if unsafe { put_str(name as *mut c_char, len as usize, VENDOR) } {
                Ok(())
            } else {
                Err(AMDSMI_STATUS_INSUFFICIENT_SIZE)
            }
        }))
    }

    unsafe fn amdsmi_get_gpu_asic_info(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, d) = dev(processor_handle)?;
            let spec = v.spec(i).ok_or(AMDSMI_STATUS_INVAL)?;
            // SAFETY: plain C struct, all-zero valid.
            let mut a: amdsmi_asic_info_t = unsafe { std::mem::zeroed() };
            fill(&mut a.market_name, spec.market_name);
            a.vendor_id = 0x1002;
            fill(&mut a.vendor_name, VENDOR);
            a.subvendor_id = 0x1002;
            a.device_id = d.pci_device_id as u64;
            a.rev_id = 0;
            fill(
                &mut a.asic_serial,
                &format!("0x{:016X}", amd::unique_id(&d.uuid)),
            );
            a.oam_id = i;
            a.num_of_compute_units = d.sms;
            a.target_graphics_version = spec.gfx_target_version as u64;
            a.subsystem_id = d.pci_subsystem_id;
            out(info as *mut amdsmi_asic_info_t, a)
        })())
    }

    unsafe fn amdsmi_get_gpu_driver_info(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            dev(processor_handle)?;
            // SAFETY: a plain C struct for which all-zero bytes are valid.
            let mut d: amdsmi_driver_info_t = unsafe { std::mem::zeroed() };
            fill(&mut d.driver_version, smi_view::DRIVER_VERSION);
            fill(&mut d.driver_date, "2025/06/01 00:00");
            fill(&mut d.driver_name, "amdgpu");
            out(info as *mut amdsmi_driver_info_t, d)
        })())
    }

    unsafe fn amdsmi_get_gpu_vram_info(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (_, _, d) = dev(processor_handle)?;
            // SAFETY: a plain C struct for which all-zero bytes are valid.
            let mut v: amdsmi_vram_info_t = unsafe { std::mem::zeroed() };
            v.vram_type = AMDSMI_VRAM_TYPE_HBM3;
            fill(&mut v.vram_vendor, smi_view::VRAM_VENDOR);
            v.vram_size = d.total_mem >> 20;
            v.vram_bit_width = d.bus_width;
            // Bus width x memory clock x 2 (DDR), in GB/s.
            v.vram_max_bandwidth = d.bus_width as u64 * d.mem_clock_khz as u64 * 2 / 8 / 1_000_000;
            out(info as *mut amdsmi_vram_info_t, v)
        })())
    }

    unsafe fn amdsmi_get_gpu_board_info(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, d) = dev(processor_handle)?;
            let spec = v.spec(i).ok_or(AMDSMI_STATUS_INVAL)?;
            // SAFETY: a plain C struct for which all-zero bytes are valid.
            let mut b: amdsmi_board_info_t = unsafe { std::mem::zeroed() };
            fill(
                &mut b.model_number,
                &format!("102-{:04X}-SIM", d.pci_device_id),
            );
            fill(
                &mut b.product_serial,
                &format!("{:016X}", amd::unique_id(&d.uuid)),
            );
            fill(&mut b.product_name, spec.market_name);
            fill(&mut b.manufacturer_name, "AMD");
            out(info as *mut amdsmi_board_info_t, b)
        })())
    }

    unsafe fn amdsmi_get_gpu_memory_total(
        processor_handle: *mut c_void,
        mem_type: u32,
        total: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, _) = dev(processor_handle)?;
            // VRAM and visible VRAM (a large-BAR device); GTT is not modelled.
            if mem_type > 1 {
                return Err(AMDSMI_STATUS_NOT_SUPPORTED);
            }
            let (_, t) = v.mem(i).ok_or(AMDSMI_STATUS_INVAL)?;
            out(total as *mut u64, t)
        })())
    }

    unsafe fn amdsmi_get_gpu_memory_usage(
        processor_handle: *mut c_void,
        mem_type: u32,
        used: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, _) = dev(processor_handle)?;
            if mem_type > 1 {
                return Err(AMDSMI_STATUS_NOT_SUPPORTED);
            }
            let (u, _) = v.mem(i).ok_or(AMDSMI_STATUS_INVAL)?;
            out(used as *mut u64, u)
        })())
    }

    /// MB (2^20 bytes), rounded down.
    unsafe fn amdsmi_get_gpu_vram_usage(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, _) = dev(processor_handle)?;
            let (u, t) = v.mem(i).ok_or(AMDSMI_STATUS_INVAL)?;
            out(
                info as *mut amdsmi_vram_usage_t,
                amdsmi_vram_usage_t {
                    vram_total: (t >> 20) as u32,
                    vram_used: (u >> 20) as u32,
                    reserved: [0; 2],
                },
            )
        })())
    }

    /// gfx: the device's busy percentage over the last second; umc and mm: 0 (copies and
    /// media engines are not modelled).
    unsafe fn amdsmi_get_gpu_activity(
        processor_handle: *mut c_void,
        info: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, _) = dev(processor_handle)?;
            out(
                info as *mut amdsmi_engine_usage_t,
                amdsmi_engine_usage_t {
                    gfx_activity: v.busy_percent(i).unwrap_or(0),
                    umc_activity: 0,
                    mm_activity: 0,
                    reserved: [0; 13],
                },
            )
        })())
    }

    /// The processes on a device (amdsmi 7.x `amdsmi_proc_info_t`), as the real library
    /// answers: `*max_processes == 0` (or no process) asks the count; a NULL list otherwise
    /// is `AMDSMI_STATUS_INVAL`; else fills up to `*max_processes` and sets it to the
    /// number found (`AMDSMI_STATUS_OUT_OF_RESOURCES` when they did not all fit).
    unsafe fn amdsmi_get_gpu_process_list(
        processor_handle: *mut c_void,
        max_processes: *mut c_void,
        list: *mut c_void,
    ) -> amdsmi_status_t {
        code((|| {
            let (v, i, _) = dev(processor_handle)?;
            let max = max_processes as *mut u32;
            if max.is_null() {
                return Err(AMDSMI_STATUS_INVAL);
            }
            let procs = v.processes_named(i);
            let n = procs.len() as u32;
            // SAFETY: checked non-NULL.
            let cap = unsafe { *max };
            if cap == 0 || n == 0 {
                return out(max, n);
            }
            if list.is_null() {
                return Err(AMDSMI_STATUS_INVAL);
            }
            for (k, (p, name)) in procs.iter().take(cap as usize).enumerate() {
                // SAFETY: plain C struct, all-zero valid.
                let mut e: amdsmi_proc_info_t = unsafe { std::mem::zeroed() };
                fill(&mut e.name, name);
                e.pid = p.pid;
                e.mem = p.usage.total();
                // The real library's figure: a running total (the driver's fdinfo), not a rate.
                e.engine_usage.gfx = v.process_run_ns(i, p.slot);
                e.memory_usage.vram_mem = p.usage.total();
                // SAFETY: the caller gave room for `*max` entries.
                unsafe { (list as *mut amdsmi_proc_info_t).add(k).write(e) };
            }
            out(max, n)?;
            if n > cap {
                return Err(AMDSMI_STATUS_OUT_OF_RESOURCES);
            }
            Ok(())
        })())
    }
}
