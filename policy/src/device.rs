//! Device numbering. One device has several numbers, and taking one for another charges or
//! caps the wrong device (HAMi-core's bug under `CUDA_VISIBLE_DEVICES`, DESIGN §2), so the
//! policy keeps them apart by type:
//!
//! - [`ContainerIndex`]: the device's position among the container's devices, the `<i>` of
//!   `CUDA_DEVICE_MEMORY_LIMIT_<i>` (HAMi's device plugin numbers them in the order of
//!   `NVIDIA_VISIBLE_DEVICES`). Limits, the ledger's devices and the throttle's lanes are
//!   indexed by it. Always below [`MAX_DEVICES`].
//! - [`Ordinal`]: the number the vendor's runtime gives the application for the device
//!   (CUDA's `CUdevice`, HIP's device id), counted after `CUDA_VISIBLE_DEVICES` /
//!   `HIP_VISIBLE_DEVICES`: what the application passes in.
//!
//! The shared region's own device records (`shm_layout::DeviceExt`, found by UUID) and the
//! management libraries' indices (NVML, SMI) are numbered again differently; they are
//! libvgpu's and the region's business, not the policy's.

/// Most devices a container can address: the shared region's per-device arrays (HAMi's
/// layout v1 holds 16, `CUDA_DEVICE_MAX_COUNT`). Defined once, by the region's layout;
/// everything indexed per device (limits, the ledger, the lanes, the simulator's devices)
/// uses this one.
pub use shm_layout::MAX_DEVICES;

/// A container device index (see the module docs): below [`MAX_DEVICES`] by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerIndex(usize);

impl ContainerIndex {
    /// The index `i`, if a container can have that many devices.
    pub const fn new(i: usize) -> Option<ContainerIndex> {
        if i < MAX_DEVICES {
            Some(ContainerIndex(i))
        } else {
            None
        }
    }

    /// The index, for the per-device arrays (always below [`MAX_DEVICES`]).
    pub const fn get(self) -> usize {
        self.0
    }

    /// Every index a container can have, in order.
    pub fn all() -> impl Iterator<Item = ContainerIndex> {
        (0..MAX_DEVICES).map(ContainerIndex)
    }
}

impl std::fmt::Display for ContainerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A device ordinal as the application sees it (see the module docs). Signed like the
/// vendors' `int` device numbers: a negative one names no device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ordinal(pub i32);

impl Ordinal {
    /// The ordinal as a position (in `CUDA_VISIBLE_DEVICES`' list); `None` when negative.
    pub fn position(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }
}

impl std::fmt::Display for Ordinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_indices_stay_below_max_devices() {
        assert_eq!(ContainerIndex::new(0).map(ContainerIndex::get), Some(0));
        assert_eq!(
            ContainerIndex::new(MAX_DEVICES - 1).map(ContainerIndex::get),
            Some(MAX_DEVICES - 1)
        );
        assert_eq!(ContainerIndex::new(MAX_DEVICES), None);
        assert_eq!(ContainerIndex::new(usize::MAX), None);
        let all: Vec<usize> = ContainerIndex::all().map(ContainerIndex::get).collect();
        assert_eq!(all, (0..MAX_DEVICES).collect::<Vec<_>>());
    }

    #[test]
    fn negative_ordinals_name_no_position() {
        assert_eq!(Ordinal(3).position(), Some(3));
        assert_eq!(Ordinal(-1).position(), None);
        assert_eq!(Ordinal(7).to_string(), "7");
    }
}
