//! AMD's answers to the core (`crate::core::vendor`), registered once the HIP runtime is
//! resolved (`super::ensure_resolved`): the devices by ROCr UUID (the names
//! `ROCR_VISIBLE_DEVICES` uses), the controller's probe from ROCm SMI's GFX activity.

use crate::core::vendor::Vendor;

/// Ranked above NVIDIA's: a process whose HIP runtime is resolved is an AMD process, even
/// with a CUDA library loaded too.
pub static VENDOR: Vendor = Vendor {
    name: "AMD",
    rank: 2,
    device_uuids: super::device_uuids,
    util_probe: crate::amd_smi::probe::find,
    reads_rocr_uuids: true,
};
