//! The controller's utilization source, one probe per vendor (the seam
//! [`UtilSource`] the controller reads through):
//!
//! - **NVIDIA** ([`NvmlUtil`]): the real NVML's per-process samples
//!   (`nvmlDeviceGetProcessUtilization` since the previous tick), each pid's SM share.
//! - **AMD** ([`RsmiBusy`]): ROCm SMI's coarse-grain GFX activity counter
//!   (`rsmi_utilization_count_get`, accumulated busy ms with its sample's timestamp)
//!   differenced between ticks: the device's busy share of exactly the tick's window, like
//!   NVML's samples since the previous tick. Fallback when the counter is unsupported:
//!   `rsmi_dev_busy_percent_get` (a recent window: the simulator's last second), which lags
//!   the tick; with it the calibration oscillates (measured: a 30 % cap gave 33-36 %).
//!   Not AMD SMI's per-process `engine_usage.gfx`: a running total of ns in the real
//!   library, the last second's ns in the simulator, so one reader cannot read both
//!   honestly. Both ROCm SMI figures are the device's, reported as this process's: exact
//!   for a process alone on its card; with other processes on the card it is over-counted,
//!   so the cap errs low (throttles more), never above the limit (docs/AMD.md).

use cuda_headers::bindings::*;
use shm_layout::Region;

use crate::throttle::controller::UtilSource;

/// The probe of one region device, by the vendor of the process's runtime.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    Nvml(usize),
    /// ROCm SMI's device index and its counter's previous reading.
    Rsmi(u32, Option<(u64, u64)>),
}

impl Probe {
    /// The probe of region device `dev` (by UUID): ROCm SMI's device in a HIP process,
    /// NVML's otherwise. `None` when the vendor's library or the device is missing.
    pub fn find(region: &Region, dev: usize) -> Option<Probe> {
        let uuid = region.uuid_str(dev)?;
        if crate::hip::in_use() {
            rsmi_index(&uuid).map(|i| Probe::Rsmi(i, None))
        } else {
            nvml_handle(&uuid).map(Probe::Nvml)
        }
    }

    /// The per-process source the controller reads; `my_pid` is this process's pid as
    /// the vendor names it (the device-level AMD figure is reported as its).
    pub fn source(&mut self, my_pid: u32) -> Box<dyn UtilSource + '_> {
        match self {
            Probe::Nvml(h) => Box::new(NvmlUtil(*h as nvmlDevice_t)),
            Probe::Rsmi(i, last) => Box::new(RsmiBusy {
                index: *i,
                pid: my_pid,
                last,
            }),
        }
    }
}

/// The real NVML's view of one device's per-process utilization.
pub struct NvmlUtil(pub nvmlDevice_t);

impl UtilSource for NvmlUtil {
    fn since(&mut self, since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        let f = crate::nvml::real::nvmlDeviceGetProcessUtilization()?;
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
    let _ = crate::core::runtime::rt().nvml()?; // initialises the real NVML
    let uuid = std::ffi::CString::new(uuid).ok()?;
    let f = crate::nvml::real::nvmlDeviceGetHandleByUUID()?;
    let mut h: nvmlDevice_t = std::ptr::null_mut();
    // SAFETY: NUL-terminated UUID, valid out-pointer.
    let rc = unsafe { f(uuid.as_ptr(), &mut h) };
    (rc == NVML_SUCCESS && !h.is_null()).then_some(h as usize)
}

/// ROCm SMI's view of one device's busy time, reported as `pid`'s share. Preferred: the
/// coarse-grain GFX activity counter (`rsmi_utilization_count_get`, accumulated busy ms with
/// its sample timestamp), differenced between ticks, which gives the busy share of exactly
/// the tick's window; without it, `rsmi_dev_busy_percent_get` (a recent window, which lags
/// the tick and makes the calibration oscillate).
pub struct RsmiBusy<'a> {
    index: u32,
    pid: u32,
    /// The previous (busy ms, timestamp ns) reading of the counter (kept by the probe).
    last: &'a mut Option<(u64, u64)>,
}

impl RsmiBusy<'_> {
    fn counter(&self) -> Option<(u64, u64)> {
        let f = crate::amd_smi::rocm::real::rsmi_utilization_count_get()?;
        let mut c = hip_headers::smi_types::rsmi_utilization_counter_t::default();
        let mut ts = 0u64;
        // SAFETY: one counter (type 0, coarse-grain GFX activity) and a valid timestamp.
        let rc = unsafe { f(self.index, &mut c, 1, &mut ts) };
        (rc == 0 && ts > 0).then_some((c.value, ts))
    }
}

impl UtilSource for RsmiBusy<'_> {
    fn since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        if let Some((ms, ts)) = self.counter() {
            let prev = self.last.replace((ms, ts));
            let (pms, pts) = prev?; // the first reading only starts the difference
            let dt = ts.checked_sub(pts).filter(|&d| d > 0)?;
            let pct = (ms.saturating_sub(pms) as f64 * 1e6 / dt as f64 * 100.0).round();
            return Some(vec![(self.pid, pct.min(100.0) as u32)]);
        }
        let f = crate::amd_smi::rocm::real::rsmi_dev_busy_percent_get()?;
        let mut busy = 0u32;
        // SAFETY: valid out-pointer; ROCm SMI is initialised (`rsmi_index`).
        (unsafe { f(self.index, &mut busy) } == 0).then(|| vec![(self.pid, busy.min(100))])
    }
}

/// ROCm SMI's index of the device whose unique id is `uuid`'s (`GPU-%016x`), initialising
/// ROCm SMI (once per process: `rsmi_init` counts references).
fn rsmi_index(uuid: &str) -> Option<u32> {
    use crate::amd_smi::rocm::real;
    static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INIT.get_or_init(|| {
        // SAFETY: plain call with flags 0.
        real::rsmi_init().is_some_and(|init| unsafe { init(0) } == 0)
    });
    if !ok {
        return None;
    }
    let (count, id) = (
        real::rsmi_num_monitor_devices()?,
        real::rsmi_dev_unique_id_get()?,
    );
    let mut n = 0u32;
    // SAFETY: valid out-pointer.
    if unsafe { count(&mut n) } != 0 {
        return None;
    }
    (0..n).find(|&i| {
        let mut u = 0u64;
        // SAFETY: an index below the count, valid out-pointer.
        let rc = unsafe { id(i, &mut u) };
        rc == 0 && crate::amd_smi::hooks::rocr_uuid(u).eq_ignore_ascii_case(uuid)
    })
}
