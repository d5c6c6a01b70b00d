//! AMD's utilization probe for the compute cap's controller (`crate::core::probe`): ROCm
//! SMI's GFX activity of the device, a device-level figure the controller splits among the
//! container's processes (see `crate::core::probe`).

use crate::core::probe::{DeviceProbe, UtilSource};

/// The probe of the ROCm SMI device whose unique id is `uuid`'s (`Vendor::util_probe`).
pub fn find(uuid: &str) -> Option<Box<dyn DeviceProbe>> {
    rsmi_index(uuid).map(|index| Box::new(RsmiDevice { index, last: None }) as Box<dyn DeviceProbe>)
}

/// ROCm SMI's device index and its counter's previous reading.
struct RsmiDevice {
    index: u32,
    last: Option<(u64, u64)>,
}

impl DeviceProbe for RsmiDevice {
    fn source(&mut self, my_pid: u32) -> Box<dyn UtilSource + '_> {
        Box::new(RsmiBusy {
            index: self.index,
            pid: my_pid,
            last: &mut self.last,
        })
    }
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
        let f = super::rocm::real::rsmi_utilization_count_get()?;
        let mut c = hip_headers::smi_types::rsmi_utilization_counter_t::default();
        let mut ts = 0u64;
        // SAFETY: one counter (type 0, coarse-grain GFX activity) and a valid timestamp.
        let rc = unsafe { f(self.index, &mut c, 1, &mut ts) };
        (rc == 0 && ts > 0).then_some((c.value, ts))
    }
}

impl UtilSource for RsmiBusy<'_> {
    /// The device's figure: the controller splits it among the container's processes by
    /// their launches (`controller`'s device-level sources).
    fn device_level(&self) -> bool {
        true
    }

    fn since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        if let Some((ms, ts)) = self.counter() {
            let prev = self.last.replace((ms, ts));
            let (pms, pts) = prev?; // the first reading only starts the difference
            let dt = ts.checked_sub(pts).filter(|&d| d > 0)?;
            let pct = (ms.saturating_sub(pms) as f64 * 1e6 / dt as f64 * 100.0).round();
            return Some(vec![(self.pid, pct.min(100.0) as u32)]);
        }
        let f = super::rocm::real::rsmi_dev_busy_percent_get()?;
        let mut busy = 0u32;
        // SAFETY: valid out-pointer; ROCm SMI is initialised (`rsmi_index`).
        (unsafe { f(self.index, &mut busy) } == 0).then(|| vec![(self.pid, busy.min(100))])
    }
}

/// ROCm SMI's index of the device whose unique id is `uuid`'s (`GPU-%016x`), initialising
/// ROCm SMI (once per process: `rsmi_init` counts references).
fn rsmi_index(uuid: &str) -> Option<u32> {
    use super::rocm::real;
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
        rc == 0 && super::hooks::rocr_uuid(u).eq_ignore_ascii_case(uuid)
    })
}
