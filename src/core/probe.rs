//! The controller's utilization source, one probe per vendor (the seam
//! [`UtilSource`] the controller reads through), registered by the vendor
//! (`crate::core::vendor::Vendor::util_probe`):
//!
//! - **NVIDIA** (`crate::nvml::probe`): the real NVML's per-process samples
//!   (`nvmlDeviceGetProcessUtilization` since the previous tick), each pid's SM share.
//! - **AMD** (`crate::amd_smi::probe`): the real AMD SMI's per-process GPU time
//!   (`amdsmi_get_gpu_process_list`'s `engine_usage.gfx`, a running total of ns)
//!   differenced per pid between ticks: each pid's busy share of exactly the tick's
//!   window, like NVML's samples, so the controller's per-process path serves both. Where
//!   AMD SMI cannot give it (logged once), ROCm SMI's coarse-grain GFX activity counter
//!   (`rsmi_utilization_count_get`), else `rsmi_dev_busy_percent_get`: the device's figure
//!   (`UtilSource::device_level`), which the controller splits among the container's
//!   processes by their launches (exact when the container is alone on its card); with
//!   another container's work on the card its part is over-counted, so the cap errs low
//!   (down to nothing: docs/AMD.md), never above the limit.
//!
//! One source per device, chosen when the probe is made: the controller's path follows the
//! source's `device_level`, never both.

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
