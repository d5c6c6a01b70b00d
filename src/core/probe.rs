//! The controller's utilization source, one probe per vendor (the seam
//! [`UtilSource`] the controller reads through), registered by the vendor
//! (`crate::core::vendor::Vendor::util_probe`):
//!
//! - **NVIDIA** (`crate::nvml::probe`): the real NVML's per-process samples
//!   (`nvmlDeviceGetProcessUtilization` since the previous tick), each pid's SM share.
//! - **AMD** (`crate::amd_smi::probe`): ROCm SMI's coarse-grain GFX activity counter
//!   (`rsmi_utilization_count_get`, accumulated busy ms with its sample's timestamp)
//!   differenced between ticks: the device's busy share of exactly the tick's window, like
//!   NVML's samples since the previous tick. Fallback when the counter is unsupported:
//!   `rsmi_dev_busy_percent_get` (a recent window: the simulator's last second), which lags
//!   the tick; with it the calibration oscillates (measured: a 30 % cap gave 33-36 %).
//!   Not AMD SMI's per-process `engine_usage.gfx`: a running total of ns in the real
//!   library, the last second's ns in the simulator, so one reader cannot read both
//!   honestly. Both ROCm SMI figures are the device's (`UtilSource::device_level`): the
//!   controller splits them among the container's processes by their launches (exact when
//!   the container is alone on its card, however many processes it has); with another
//!   container's work on the card the container's part is over-counted, so the cap errs
//!   low (throttles more, down to nothing: docs/AMD.md), never above the limit.

pub use crate::throttle::controller::UtilSource;

/// A vendor's utilization probe of one device (kept by the watcher thread).
pub trait DeviceProbe: Send {
    /// The per-process source the controller reads; `my_pid` is this process's pid as
    /// the vendor names it (a device-level figure is reported as its).
    fn source(&mut self, my_pid: u32) -> Box<dyn UtilSource + '_>;

    /// Per-process SM utilization samples since `since_real_us` (wall µs), for the node
    /// monitor's `sm_util`, where the vendor has per-process figures (NVIDIA); `None`
    /// otherwise or when they cannot be read now.
    fn per_process_since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        None
    }
}
