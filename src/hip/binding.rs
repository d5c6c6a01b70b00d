//! Which container device (the `<i>` of `HIP_DEVICE_MEMORY_LIMIT_<i>`, the ledger's and the
//! region's index) a HIP ordinal is.
//!
//! HAMi's amd-device-plugin lists the container's GPUs by UUID in `ROCR_VISIBLE_DEVICES`,
//! in the order of its limits. When that list (or `NVIDIA_VISIBLE_DEVICES`) names UUIDs
//! (`Config::limit_uuids_for`), limit `i` belongs to the i-th UUID: ordinal `d` is matched by
//! its ROCr UUID (`hipDeviceGetUuid`), so a limit stays with its GPU whatever
//! `HIP_VISIBLE_DEVICES` the application sets (it renumbers the ordinals ROCr left).
//! Without such a list ordinal `d` is container device `d`. A device the list does not
//! name has no limit; using it while other devices of the container have one is said in
//! one stderr line, as on the CUDA side.

use std::sync::atomic::{AtomicI32, Ordering};

use hip_headers::prelude::*;

use crate::config::MAX_DEVICES;
use crate::core::runtime::rt;

const UNKNOWN: i32 = -1;
const NONE: i32 = -2;

/// Per HIP ordinal: its container index, `NONE`, or `UNKNOWN` (not asked yet).
static INDEX: [AtomicI32; MAX_DEVICES] = [const { AtomicI32::new(UNKNOWN) }; MAX_DEVICES];

/// The container index of HIP ordinal `ordinal`; `None`: no limit of the container
/// applies to it.
pub fn container_index(ordinal: c_int) -> Option<usize> {
    let slot = INDEX.get(usize::try_from(ordinal).ok()?)?;
    match slot.load(Ordering::Relaxed) {
        NONE => return None,
        i if i >= 0 => return Some(i as usize),
        _ => {}
    }
    let uuid = super::device_uuid(ordinal);
    let config = &rt().config;
    let index = index_of(config.limit_uuids_for(true), ordinal, uuid.as_deref());
    if let Some(note) = unlimited_note(config, index, uuid.as_deref().unwrap_or("?")) {
        crate::log::write_line(format_args!("{note}"));
    }
    slot.store(index.map_or(NONE, |i| i as i32), Ordering::Relaxed);
    index
}

/// The rule (pure): by UUID when the container lists UUIDs and the device's is known, else
/// by ordinal.
pub fn index_of(listed: Option<&[String]>, ordinal: c_int, uuid: Option<&str>) -> Option<usize> {
    match (listed, uuid) {
        (Some(listed), Some(uuid)) => crate::config::limit_index_of(listed, uuid)
            .map(vgpu_policy::device::ContainerIndex::get),
        _ => usize::try_from(ordinal).ok().filter(|&i| i < MAX_DEVICES),
    }
}

/// The one line for a device used with no limit while the container's others have one.
pub fn unlimited_note(
    config: &crate::config::Config,
    index: Option<usize>,
    uuid: &str,
) -> Option<String> {
    if !config.any_limit() || config.control_disabled {
        return None;
    }
    match index {
        Some(i)
            if config.memory_limit.get(i).copied().flatten().is_some()
                || config.sm_limit.get(i).copied().flatten().is_some() =>
        {
            None
        }
        Some(i) => Some(format!(
            "HIP device {uuid} (HIP_DEVICE_MEMORY_LIMIT_{i} / HIP_DEVICE_SM_LIMIT_{i}) has no \
             limit while other devices of this container have one: it is used uncapped"
        )),
        None => Some(format!(
            "HIP device {uuid} is not in ROCR_VISIBLE_DEVICES, so no HIP_DEVICE_*_LIMIT_<i> \
             applies to it while other devices of this container have one: it is used uncapped"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_uuids_bind_limits_to_devices_whatever_the_ordinal() {
        let listed: Vec<String> = vec!["GPU-bbbb".into(), "GPU-aaaa".into()];
        assert_eq!(index_of(Some(&listed), 0, Some("GPU-aaaa")), Some(1));
        assert_eq!(index_of(Some(&listed), 0, Some("GPU-BBBB")), Some(0));
        assert_eq!(index_of(Some(&listed), 1, Some("GPU-cccc")), None);
        // No list, or the device's UUID unreadable: by ordinal.
        assert_eq!(index_of(None, 1, Some("GPU-aaaa")), Some(1));
        assert_eq!(index_of(Some(&listed), 1, None), Some(1));
        assert_eq!(index_of(None, MAX_DEVICES as c_int, None), None);
    }

    #[test]
    fn an_unlimited_device_beside_limited_ones_is_named() {
        let c = crate::config::Config::from_lookup(|k| {
            (k == "CUDA_DEVICE_MEMORY_LIMIT_0").then(|| "1g".to_string())
        });
        assert_eq!(unlimited_note(&c, Some(0), "GPU-a"), None);
        assert!(unlimited_note(&c, Some(1), "GPU-b")
            .unwrap()
            .contains("HIP_DEVICE_MEMORY_LIMIT_1"));
        assert!(unlimited_note(&c, None, "GPU-c")
            .unwrap()
            .contains("not in ROCR_VISIBLE_DEVICES"));
        let none = crate::config::Config::from_lookup(|_| None);
        assert_eq!(unlimited_note(&none, Some(1), "GPU-b"), None);
    }
}
