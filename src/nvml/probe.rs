//! NVIDIA's utilization probe for the compute cap's controller (`crate::core::probe`):
//! the real NVML's per-process samples since the previous tick.

use cuda_headers::bindings::*;

use crate::core::probe::{DeviceProbe, UtilSource};

/// The probe of the NVML device with this UUID (`Vendor::util_probe`).
pub fn find(uuid: &str) -> Option<Box<dyn DeviceProbe>> {
    nvml_handle(uuid).map(|h| Box::new(NvmlDevice(h)) as Box<dyn DeviceProbe>)
}

/// A device by its real NVML handle (an address: the handle is NVML's, valid for the
/// process's lifetime, and only read through NVML).
struct NvmlDevice(usize);

impl DeviceProbe for NvmlDevice {
    fn source(&mut self, _my_pid: u32) -> Box<dyn UtilSource + '_> {
        Box::new(NvmlUtil(self.0 as nvmlDevice_t))
    }

    fn per_process_since(&mut self, since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        NvmlUtil(self.0 as nvmlDevice_t).since(since_real_us)
    }
}

/// The real NVML's view of one device's per-process utilization.
pub struct NvmlUtil(pub nvmlDevice_t);

impl UtilSource for NvmlUtil {
    fn since(&mut self, since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        let f = super::real::nvmlDeviceGetProcessUtilization()?;
        let mut buf = vec![nvmlProcessUtilizationSample_t::default(); 64];
        for _ in 0..3 {
            let mut n = buf.len() as std::ffi::c_uint;
            // SAFETY: a buffer of `n` samples.
            let rc = unsafe { f(self.0, buf.as_mut_ptr(), &mut n, since_real_us) };
            match rc {
                NVML_SUCCESS => {
                    return Some(
                        buf[..(n as usize).min(buf.len())]
                            .iter()
                            .map(|s| (s.pid, s.smUtil))
                            .collect(),
                    )
                }
                NVML_ERROR_NOT_FOUND => return Some(Vec::new()),
                NVML_ERROR_INSUFFICIENT_SIZE => {
                    buf.resize(n as usize + 16, nvmlProcessUtilizationSample_t::default())
                }
                _ => return None,
            }
        }
        None
    }
}

/// The real NVML's handle of a device (by UUID).
fn nvml_handle(uuid: &str) -> Option<usize> {
    let _ = super::NvmlProbe::get()?; // initialises the real NVML
    let uuid = std::ffi::CString::new(uuid).ok()?;
    let f = super::real::nvmlDeviceGetHandleByUUID()?;
    let mut h: nvmlDevice_t = std::ptr::null_mut();
    // SAFETY: NUL-terminated UUID, valid out-pointer.
    let rc = unsafe { f(uuid.as_ptr(), &mut h) };
    (rc == NVML_SUCCESS && !h.is_null()).then_some(h as usize)
}
