//! The HIP runtime's implicit per-device context: memory the card takes with no allocation
//! call (the runtime's own buffers, created on a device's first use).
//!
//! How it is counted, like the CUDA side's contexts (`hooks/context.rs`): before the first
//! charged call on a device, the context is made to exist (the real `hipMemGetInfo`
//! initialises the device), then this process's VRAM as the driver sees it
//! (`rsmi_compute_process_info_by_pid_get`, ROCm SMI) minus what the ledger already holds for
//! the process is charged as `Context` overhead (force-charged: the card already took it).
//! Measurements are serialised. Without ROCm SMI nothing can be measured (logged once) and
//! the context is not counted. A context created while the slice is full passes the cap by
//! its size (the card took it before any call we could refuse); the process's allocations
//! are all refused then. The pid is the region's host pid (SMI names host pids), learnt
//! from procfs or from this context's creation (`super::hostpid`), else
//! `getpid()`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use hip_headers::prelude::*;

use crate::config::MAX_DEVICES;
use crate::core::runtime::rt;
use crate::ledger::AllocKind;

/// Per container device: whether this process's context on it is charged (or was tried).
static CHARGED: [AtomicBool; MAX_DEVICES] = [const { AtomicBool::new(false) }; MAX_DEVICES];
static MEASURING: Mutex<()> = Mutex::new(());

/// The ledger key of device `ordinal`'s context.
pub fn context_key(ordinal: c_int) -> u64 {
    0xA3DC_0000_0000_0000 | ordinal as u32 as u64
}

/// Charges the context of (`ordinal`, `device`) once per process (see the module docs).
pub fn ensure_charged(ordinal: c_int, device: usize) {
    let Some(flag) = CHARGED.get(device) else {
        return;
    };
    if flag.load(Ordering::Acquire) {
        return;
    }
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    if flag.load(Ordering::Acquire) {
        return;
    }
    // Set only once measured: every other thread's first charged call waits here, so no
    // allocation of this process is in flight while the card's figure is read.
    let _mark = MarkOnDrop(flag);
    // Inside a container the context's creation tells the host pid SMI names us by.
    let before = super::hostpid::before_context();
    if let Some(meminfo) = super::real::hipMemGetInfo() {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers; creates the device's context if it does not exist.
        unsafe { meminfo(&mut free, &mut total) };
    }
    super::hostpid::after_context(before, device);
    let Some(vram) = process_vram() else {
        return;
    };
    let ledger = &rt().ledger;
    let held: u64 = (0..MAX_DEVICES).map(|d| ledger.usage(d).total()).sum();
    let overhead = vram.saturating_sub(held);
    if overhead > 0 {
        ledger.charge_measured(device, AllocKind::Context, context_key(ordinal), overhead);
    }
}

/// Marks the device charged (or tried) when the measurement ends, whichever way it ends.
struct MarkOnDrop(&'static AtomicBool);

impl Drop for MarkOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// `hipDeviceReset` destroyed the context: credit it, and measure again on next use.
pub fn forget(ordinal: c_int, device: usize) {
    rt().ledger
        .release(AllocKind::Context, context_key(ordinal));
    if let Some(flag) = CHARGED.get(device) {
        flag.store(false, Ordering::Release);
    }
}

/// ROCm SMI's `rsmi_compute_process_info_by_pid_get`, once `rsmi_init` succeeded.
static PROCESS_INFO: OnceLock<usize> = OnceLock::new();
static WARNED: AtomicUsize = AtomicUsize::new(0);

const ROCM_SMI: [&std::ffi::CStr; 4] = [
    c"librocm_smi64.so.7",
    c"librocm_smi64.so.6",
    c"librocm_smi64.so.1",
    c"librocm_smi64.so",
];

fn process_info_fn() -> Option<hip_headers::pfn::rsmi_compute_process_info_by_pid_get> {
    let p = *PROCESS_INFO.get_or_init(|| {
        let Some(h) = ROCM_SMI
            .iter()
            .find_map(|n| crate::interpose::open_library(n))
        else {
            return 0;
        };
        // SAFETY: a dlopen handle and NUL-terminated names.
        let (init, info) = unsafe {
            (
                crate::interpose::real_dlsym(h, c"rsmi_init"),
                crate::interpose::real_dlsym(h, c"rsmi_compute_process_info_by_pid_get"),
            )
        };
        if init.is_null() || info.is_null() {
            return 0;
        }
        // SAFETY: rsmi_init's signature, from the table.
        let init: hip_headers::pfn::rsmi_init = unsafe { std::mem::transmute(init) };
        // SAFETY: plain call with flags 0.
        if unsafe { init(0) } != 0 {
            return 0;
        }
        info as usize
    });
    // SAFETY: the slot only holds rsmi_compute_process_info_by_pid_get.
    (p != 0).then(|| unsafe {
        std::mem::transmute::<usize, hip_headers::pfn::rsmi_compute_process_info_by_pid_get>(p)
    })
}

/// This process's VRAM as the driver counts it (all devices).
fn process_vram() -> Option<u64> {
    let Some(f) = process_info_fn() else {
        if WARNED.swap(1, Ordering::Relaxed) == 0 {
            crate::vlog!(
                crate::log::WARN,
                "ROCm SMI unavailable: the HIP runtime's context memory cannot be measured and is not counted"
            );
        }
        return None;
    };
    let pid = host_pid();
    let mut info = rsmi_process_info_t::default();
    // SAFETY: valid out-pointer.
    (unsafe { f(pid, &mut info) } == 0).then_some(info.vram_usage)
}

/// The pid SMI knows this process by: the region's host pid when known, else `getpid()`.
fn host_pid() -> u32 {
    crate::core::shared_region::SharedRegion::get()
        .and_then(|sr| {
            let slot = sr.slot()?;
            let host = sr.region().v1.procs[slot].hostpid.load(Ordering::Relaxed);
            (host > 0).then_some(host as u32)
        })
        // SAFETY: getpid has no preconditions.
        .unwrap_or_else(|| unsafe { libc::getpid() } as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn context_keys_never_collide_with_device_owners() {
        assert_ne!(super::context_key(0) >> 48, 0xA3D0);
        assert_ne!(super::context_key(0), super::context_key(1));
    }
}
