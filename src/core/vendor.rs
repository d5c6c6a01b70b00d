//! Registration: what the core asks of a vendor, without naming one.
//!
//! A backend family registers its [`Vendor`] table when it resolves its real library (the
//! NVIDIA one from `crate::cuda` and `crate::nvml`, the AMD one from `crate::hip`); the
//! core reads the tables from its own paths (process start-up, the watcher thread). No
//! constructor registers anything: until a backend has resolved its library, no vendor is
//! known, and the core falls back to what needs none (stand-in device names, no
//! utilization probe).

use std::sync::atomic::{AtomicPtr, Ordering};

use super::probe::DeviceProbe;

/// A vendor's answers to the core.
pub struct Vendor {
    /// For log lines.
    pub name: &'static str,
    /// Which registered vendor answers: the highest rank (a process whose HIP runtime is
    /// resolved is an AMD process even when a CUDA library is loaded too).
    pub rank: u8,
    /// The UUIDs of the devices this process sees, in the vendor's enumeration order (the
    /// container's order), named as the vendor names them; empty when unknown.
    pub device_uuids: fn() -> Vec<String>,
    /// The controller's utilization probe of the device with this UUID (as the region
    /// names it); `None` when the vendor's library or the device is missing.
    pub util_probe: fn(&str) -> Option<Box<dyn DeviceProbe>>,
    /// Whether a device plugin's UUID list in `ROCR_VISIBLE_DEVICES` names this vendor's
    /// devices (`Config::limit_uuids_for`): AMD's does, NVIDIA's does not (a CUDA process
    /// given that list would find none of its devices in it and run uncapped).
    pub reads_rocr_uuids: bool,
}

/// Whether the vendor that answers now reads the ROCr UUID list (see
/// [`Vendor::reads_rocr_uuids`]); `false` while no vendor is registered.
pub fn reads_rocr_uuids() -> bool {
    active().is_some_and(|v| v.reads_rocr_uuids)
}

/// Registered vendors (a handful of families: a fixed table, no allocation).
static REGISTERED: [AtomicPtr<Vendor>; 4] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 4];

/// Registers `vendor` (idempotent; a full table drops it, said on stderr).
pub fn register(vendor: &'static Vendor) {
    let want = vendor as *const Vendor as *mut Vendor;
    for slot in &REGISTERED {
        match slot.compare_exchange(
            std::ptr::null_mut(),
            want,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            Err(p) if p == want => return,
            Err(_) => {}
        }
    }
    crate::log::write_line(format_args!(
        "internal: no room to register vendor {}",
        vendor.name
    ));
}

/// The registered vendors, highest rank first.
fn ranked() -> impl Iterator<Item = &'static Vendor> {
    let mut all: [Option<&'static Vendor>; 4] = std::array::from_fn(|i| {
        let p = REGISTERED[i].load(Ordering::Acquire);
        // SAFETY: only `&'static Vendor`s are ever stored (`register`).
        (!p.is_null()).then(|| unsafe { &*p })
    });
    all.sort_by_key(|v| std::cmp::Reverse(v.map(|v| v.rank)));
    all.into_iter().flatten()
}

/// The vendor that answers now (highest rank registered), if any.
pub fn active() -> Option<&'static Vendor> {
    ranked().next()
}

/// Whether a vendor ranked above `vendor` is registered.
pub fn outranked(vendor: &Vendor) -> bool {
    active().is_some_and(|v| v.rank > vendor.rank)
}

/// This process's devices' UUIDs: the highest-ranked vendor that knows any.
pub fn device_uuids() -> Vec<String> {
    ranked()
        .map(|v| (v.device_uuids)())
        .find(|u| !u.is_empty())
        .unwrap_or_default()
}

/// The utilization probe of region device `dev` (by its UUID), from the vendor that
/// answers now. `None` when no vendor, its library or the device is missing.
pub fn util_probe(region: &shm_layout::Region, dev: usize) -> Option<Box<dyn DeviceProbe>> {
    let uuid = region.uuid_str(dev)?;
    (active()?.util_probe)(&uuid)
}
