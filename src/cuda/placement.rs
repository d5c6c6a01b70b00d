//! CUDA's placement: which container device a CUDA ordinal is. The container index is the
//! position of the device's UUID in `NVIDIA_VISIBLE_DEVICES` when that lists UUIDs, else by
//! `CUDA_VISIBLE_DEVICES` over NVML's order (see `config::visible_container_index`).

use std::sync::atomic::{AtomicI32, Ordering};

use cuda_headers::bindings::CUdevice;

use super::rt;
use crate::config::MAX_DEVICES;
use crate::nvml::NvmlProbe;
use vgpu_policy::device::{ContainerIndex, Ordinal};

/// CUDA ordinal -> container device index (-1 = not computed yet).
static ORDINAL_MAP: [AtomicI32; MAX_DEVICES] = [const { AtomicI32::new(-1) }; MAX_DEVICES];

/// `ORDINAL_MAP` entry of a device no container limit applies to (-1: not looked up yet).
const NO_CONTAINER_DEVICE: i32 = -2;

/// The container device index for a CUDA ordinal. `None`: no limit of the container
/// applies to the device (said once on stderr when other devices have one).
pub fn container_index(ordinal: CUdevice) -> Option<usize> {
    let slot = ORDINAL_MAP.get(usize::try_from(ordinal).ok()?)?;
    match slot.load(Ordering::Relaxed) {
        NO_CONTAINER_DEVICE => return None,
        cached if cached >= 0 => return Some(cached as usize),
        _ => {}
    }
    let idx = compute_container_index(ordinal as usize);
    let uuid = super::hooks::device_uuid(ordinal).unwrap_or_else(|| format!("#{ordinal}"));
    if let Some(note) = rt()
        .config
        .unlimited_device_note(idx.and_then(ContainerIndex::new), &uuid)
    {
        crate::log::write_line(format_args!("{note}"));
    }
    slot.store(
        idx.map_or(NO_CONTAINER_DEVICE, |i| i as i32),
        Ordering::Relaxed,
    );
    idx
}

fn compute_container_index(ordinal: usize) -> Option<usize> {
    let config = &rt().config;
    if let Some(uuids) = config.limit_uuids_for(false) {
        match super::hooks::device_uuid(ordinal as CUdevice) {
            Some(uuid) => {
                return crate::config::limit_index_of(uuids, &uuid).map(ContainerIndex::get)
            }
            None => crate::vlog!(
                crate::log::ERROR,
                "cannot read the UUID of CUDA device {ordinal}: its limit follows NVML's device order"
            ),
        }
    }
    let Some(spec) = config.visible_devices.as_deref() else {
        return Some(ordinal);
    };
    let needs_uuids = spec.contains('-');
    let uuids = if needs_uuids {
        match NvmlProbe::get() {
            Some(n) => n.device_uuids(),
            None => {
                crate::vlog!(
                    crate::log::ERROR,
                    "CUDA_VISIBLE_DEVICES={spec:?} names UUIDs but NVML is unavailable: limits are applied by CUDA ordinal"
                );
                return Some(ordinal);
            }
        }
    } else {
        (0..MAX_DEVICES).map(|i| format!("#{i}")).collect()
    };
    crate::config::visible_container_index(spec, &uuids, Ordinal(ordinal as i32))
        .map(ContainerIndex::get)
}

/// The NVML index of a CUDA ordinal (matched by UUID).
pub fn nvml_index(ordinal: CUdevice) -> Option<u32> {
    let nvml = NvmlProbe::get()?;
    let uuid = super::hooks::device_uuid(ordinal)?;
    nvml.device_uuids()
        .iter()
        .position(|u| *u == uuid)
        .map(|i| i as u32)
}
