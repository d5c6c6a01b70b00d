//! The HIP runtime's implicit per-device context, and loaded code objects: memory the card
//! takes with no allocation call.
//!
//! The CUDA side's rule (`cuda/hooks/context.rs`), for HIP. Reserve before, measure after:
//! before the first charged call on a device (an allocation, `hipMemGetInfo`) the runtime's
//! context is made to exist, and before that an *estimate* of what it takes is reserved in
//! the ledger: the size this process measured for its last context there, else the one a
//! process of the container measured (the region's hint), else [`DEFAULT_CONTEXT_BYTES`].
//! If the estimate does not fit in the slice the call fails with `hipErrorOutOfMemory` and
//! the library is never called, so whatever the slice (3000 bytes, 1 MiB, a fail-closed 0)
//! a context that cannot fit is not created by that call.
//!
//! Creation: the real `hipMemGetInfo` (it initialises the device). Then the reservation is
//! corrected to the card's own figure: this process's VRAM as the driver sees it
//! (`rsmi_compute_process_info_by_pid_get`, ROCm SMI, by host pid) minus what the ledger
//! holds for the process. Without that figure (no ROCm SMI, or SMI does not list our pid) a
//! conservative one is charged, never nothing: the size measured earlier (this process,
//! else the container), else [`UNMEASURED_CONTEXT_BYTES`]. A correction that does not fit
//! is rolled back: the real `hipDeviceReset` (the only call that destroys HIP's implicit
//! context) when the ledger holds nothing of this process on the device, then the credit,
//! and the call fails with `hipErrorOutOfMemory`; the measured size is remembered, so the
//! next try is refused before the library is called.
//!
//! Modules (`hipModuleLoad*`, [`module_charged`]): [`DEFAULT_MODULE_BYTES`] reserved before,
//! corrected after to the rise of the process's VRAM (ROCm SMI), else kept; a correction
//! that does not fit unloads the module and refuses. Credited after `hipModuleUnload`.
//! Measurements are serialised. The pid is the region's host pid (SMI names host pids),
//! learnt from procfs or from this context's creation (`super::hostpid`), else `getpid()`.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use hip_headers::prelude::*;

use crate::config::MAX_DEVICES;
use crate::core::runtime::rt;
use crate::ledger::AllocKind;

/// Reserved before the runtime's context is created until a context was measured on the
/// device (by this process or its container): the CUDA side's figure (contexts take a few
/// hundred MiB; the simulator's default is 300 MiB).
pub const DEFAULT_CONTEXT_BYTES: u64 = 256 << 20;
/// Charged for a context whose size cannot be measured (no ROCm SMI, host pid unknown)
/// when none was measured on the device before: on the high side, so an unmeasured context
/// is over-charged rather than under-charged.
pub const UNMEASURED_CONTEXT_BYTES: u64 = 512 << 20;
/// Reserved before a module is loaded, and charged when it cannot be measured (code
/// objects are mapped in 2 MiB pages).
pub const DEFAULT_MODULE_BYTES: u64 = 2 << 20;
// An unmeasured context is charged at least what is reserved for one.
const _: () = assert!(UNMEASURED_CONTEXT_BYTES >= DEFAULT_CONTEXT_BYTES);

/// Longest a first context waits for the estimates of its container's processes starting
/// with it to shrink to the measured size (the CUDA side's burst rule).
const BURST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Per container device: whether this process's context on it is charged.
static CHARGED: [AtomicBool; MAX_DEVICES] = [const { AtomicBool::new(false) }; MAX_DEVICES];
/// The last context size this process measured per container device (u64::MAX: none).
static CONTEXT_BYTES_SEEN: [AtomicU64; MAX_DEVICES] =
    [const { AtomicU64::new(u64::MAX) }; MAX_DEVICES];
/// The HIP ordinal each charged container device was charged under.
static ORDINAL: [AtomicI32; MAX_DEVICES] = [const { AtomicI32::new(0) }; MAX_DEVICES];
static MEASURING: Mutex<()> = Mutex::new(());

/// The ledger key of device `ordinal`'s context.
pub fn context_key(ordinal: c_int) -> u64 {
    0xA3DC_0000_0000_0000 | ordinal as u32 as u64
}

fn seen(device: usize) -> Option<u64> {
    Some(CONTEXT_BYTES_SEEN[device].load(Ordering::Relaxed)).filter(|&b| b != u64::MAX)
}

fn container_hint(device: usize) -> Option<u64> {
    crate::core::shared_region::SharedRegion::get()?.context_bytes_hint(device)
}

/// What to reserve before the context exists: measured here, else by the container, else
/// the default.
pub fn estimate(seen: Option<u64>, container: Option<u64>) -> u64 {
    seen.or(container).unwrap_or(DEFAULT_CONTEXT_BYTES)
}

/// What to charge for a context the card's figure is `measured` for (`None`: cannot be
/// had), given what the ledger holds for the process (`held`): the figure less `held`, or
/// the earlier measured size, or the conservative figure.
pub fn context_charge(
    measured: Option<u64>,
    held: u64,
    seen: Option<u64>,
    container: Option<u64>,
) -> u64 {
    match measured {
        Some(vram) => vram.saturating_sub(held),
        None => seen.or(container).unwrap_or(UNMEASURED_CONTEXT_BYTES),
    }
}

/// What the ledger holds for this process, every device.
fn held() -> u64 {
    let ledger = &rt().ledger;
    (0..MAX_DEVICES).map(|d| ledger.usage(d).total()).sum()
}

/// Charges the context of (`ordinal`, `device`, current on this thread) once per process
/// (see the module docs). `false`: it does not fit; the caller refuses with
/// `hipErrorOutOfMemory` without calling the library.
pub fn ensure_charged(ordinal: c_int, device: usize) -> bool {
    let Some(flag) = CHARGED.get(device) else {
        return true;
    };
    if flag.load(Ordering::Acquire) {
        return true;
    }
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    if flag.load(Ordering::Acquire) {
        return true;
    }
    let ledger = &rt().ledger;
    let deadline = std::time::Instant::now() + BURST_WAIT;
    let mut reservation = loop {
        let (seen, container) = (seen(device), container_hint(device));
        let estimate = estimate(seen, container);
        let e = match ledger.reserve(device, estimate, AllocKind::Context) {
            Ok(r) => break r,
            Err(e) => e,
        };
        // Processes of a container starting together all reserve the default before the
        // first of them measured a context: a slice that can hold one waits (bounded) for
        // their estimates to shrink to the measured size.
        let in_burst = seen.is_none()
            && container.is_none()
            && e.limit >= estimate
            && std::time::Instant::now() < deadline;
        if !in_burst {
            crate::core::charge::log_refusal("HIP context (estimated before creation)", e);
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    // The program's code objects (its registered fat binaries), loaded on this device by
    // the runtime at the first launch there: reserved with the context.
    let fatbins = lock_fatbins().clone();
    let mut code = Vec::with_capacity(fatbins.len());
    for _ in &fatbins {
        match ledger.reserve(device, DEFAULT_MODULE_BYTES, AllocKind::Module) {
            Ok(r) => code.push(r.owned_by(super::hooks::device_owner(ordinal))),
            Err(e) => {
                crate::core::charge::log_refusal("HIP code objects (before the context)", e);
                return false;
            }
        }
    }
    // Inside a container the context's creation tells the host pid SMI names us by.
    let before = super::hostpid::before_context();
    if let Some(meminfo) = super::real::hipMemGetInfo() {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers; creates the device's context if it does not exist.
        unsafe { meminfo(&mut free, &mut total) };
    }
    super::hostpid::after_context(before, device);
    let measured = process_vram();
    let bytes = context_charge(measured, held(), seen(device), container_hint(device));
    if measured.is_some() {
        CONTEXT_BYTES_SEEN[device].store(bytes, Ordering::Relaxed);
        if let Some(region) = crate::core::shared_region::SharedRegion::get() {
            region.set_context_bytes_hint(device, bytes);
        }
    }
    if !reservation.resize(bytes) {
        let ours_on_device = ledger.usage(device).total();
        // Remembered (this process only: the region's hint holds measured figures), so
        // the next call is refused before the library is called.
        CONTEXT_BYTES_SEEN[device].store(bytes, Ordering::Relaxed);
        if ours_on_device == 0 {
            // The library's destroy first, then the credit: never more than the slice held.
            if let Some(reset) = super::real::hipDeviceReset() {
                // SAFETY: no arguments; destroys this process's (empty) context on the
                // current device.
                unsafe { reset() };
            }
            drop(reservation);
            crate::vlog!(
                3,
                "HIP context of {bytes} bytes does not fit in the slice on device {device}: undone"
            );
            return false;
        }
        // Something of ours lives on the device (a VMM handle made from another device):
        // a reset would destroy it. The card holds the context: charged, the call refused.
        drop(reservation);
        ledger.charge_measured(device, AllocKind::Context, context_key(ordinal), bytes);
        ORDINAL[device].store(ordinal, Ordering::Relaxed);
        for (r, &fatbin) in code.into_iter().zip(&fatbins) {
            r.commit(code_object_key(fatbin, device));
        }
        flag.store(true, Ordering::Release);
        charge_code_objects_registered_since(device, &fatbins);
        return false;
    }
    crate::vlog!(
        crate::log::DEBUG,
        "charged {bytes} bytes of HIP context on device {device} (measured {measured:?})"
    );
    reservation.commit(context_key(ordinal));
    ORDINAL[device].store(ordinal, Ordering::Relaxed);
    for (r, &fatbin) in code.into_iter().zip(&fatbins) {
        r.commit(code_object_key(fatbin, device));
    }
    flag.store(true, Ordering::Release);
    charge_code_objects_registered_since(device, &fatbins);
    true
}

/// Fat binaries this process registered (`__hipRegisterFatBinary`'s handles).
static FATBINS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn lock_fatbins() -> std::sync::MutexGuard<'static, Vec<u64>> {
    FATBINS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ledger key of fat binary `fatbin`'s code object on container device `device`
/// (user-space addresses stay below bit 56).
pub fn code_object_key(fatbin: u64, device: usize) -> u64 {
    fatbin ^ ((device as u64 + 1) << 56)
}

/// `__hipRegisterFatBinary` returned `fatbin`: its code object is charged
/// ([`DEFAULT_MODULE_BYTES`]) with the context of every device, and now on the devices
/// whose context is charged already. Runs in static constructors (the program's, a
/// `dlopen`ed library's, under the loader's lock): takes only the list's lock, never held
/// across a library call, and touches nothing else while no context is charged.
pub fn fatbin_registered(fatbin: u64) {
    if fatbin == 0 {
        return;
    }
    let mut list = lock_fatbins();
    list.push(fatbin);
    for (device, flag) in CHARGED.iter().enumerate() {
        if flag.load(Ordering::Acquire) {
            charge_code_object(device, fatbin);
        }
    }
}

/// Charges `fatbin`'s code object on container device `device`, whose context is charged.
/// Call holding the list's lock.
fn charge_code_object(device: usize, fatbin: u64) {
    let ledger = &rt().ledger;
    let owner = super::hooks::device_owner(ORDINAL[device].load(Ordering::Relaxed));
    let key = code_object_key(fatbin, device);
    match ledger.reserve(device, DEFAULT_MODULE_BYTES, AllocKind::Module) {
        Ok(r) => r.owned_by(owner).commit(key),
        // The registration cannot be refused (a constructor): charged, so the process's
        // next allocations are refused instead.
        Err(_) => ledger.charge_measured(device, AllocKind::Module, key, DEFAULT_MODULE_BYTES),
    }
}

/// The context of `device` is charged now, with the code objects of `reserved`: charges
/// those registered meanwhile (by another thread).
fn charge_code_objects_registered_since(device: usize, reserved: &[u64]) {
    let list = lock_fatbins();
    for &fatbin in list.iter().filter(|f| !reserved.contains(f)) {
        charge_code_object(device, fatbin);
    }
}

/// `__hipUnregisterFatBinary(fatbin)` returned: its code objects are credited.
pub fn fatbin_unregistered(fatbin: u64) {
    let mut list = lock_fatbins();
    list.retain(|&f| f != fatbin);
    if !CHARGED.iter().any(|f| f.load(Ordering::Acquire)) {
        return;
    }
    for device in 0..MAX_DEVICES {
        rt().ledger
            .release(AllocKind::Module, code_object_key(fatbin, device));
    }
}

/// Loads a module (`load` returns the library's result and the handle) with its memory
/// charged on (`ordinal`, `device`, current on this thread), owned by `owner` (what
/// `hipDeviceReset` releases); see the module docs.
pub fn module_charged(
    ordinal: c_int,
    device: usize,
    owner: u64,
    load: impl FnOnce() -> (hipError_t, u64),
) -> hipError_t {
    if !ensure_charged(ordinal, device) {
        return hipErrorOutOfMemory;
    }
    let ledger = &rt().ledger;
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut reservation = match ledger.reserve(device, DEFAULT_MODULE_BYTES, AllocKind::Module) {
        Ok(r) => r.owned_by(owner),
        Err(e) => {
            crate::core::charge::log_refusal("HIP module (estimated before loading)", e);
            return hipErrorOutOfMemory;
        }
    };
    let before = process_vram();
    let (rc, handle) = load();
    if rc != hipSuccess {
        return rc;
    }
    let bytes = match (before, process_vram()) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => DEFAULT_MODULE_BYTES,
    };
    if !reservation.resize(bytes) {
        if let Some(unload) = super::real::hipModuleUnload() {
            // SAFETY: the module the library just loaded for us.
            unsafe { unload(handle as hipModule_t) };
        }
        drop(reservation);
        crate::vlog!(
            3,
            "HIP module of {bytes} bytes does not fit in the slice on device {device}: unloaded"
        );
        return hipErrorOutOfMemory;
    }
    reservation.commit(handle);
    rc
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
                "ROCm SMI unavailable: HIP context and module memory cannot be measured; the \
                 conservative figures are charged"
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

    #[test]
    fn the_estimate_is_the_measured_size_else_the_containers_else_the_default() {
        use super::*;
        assert_eq!(estimate(None, None), DEFAULT_CONTEXT_BYTES);
        assert_eq!(estimate(None, Some(300)), 300);
        assert_eq!(estimate(Some(100), Some(300)), 100);
    }

    #[test]
    fn an_unmeasured_context_is_charged_a_conservative_figure_never_nothing() {
        use super::*;
        // Measured: the card's figure less what the ledger holds.
        assert_eq!(context_charge(Some(500), 200, None, None), 300);
        assert_eq!(context_charge(Some(100), 200, None, None), 0);
        // Unmeasured: an earlier measurement, else the conservative figure.
        assert_eq!(
            context_charge(None, 0, None, None),
            UNMEASURED_CONTEXT_BYTES
        );
        assert_eq!(context_charge(None, 0, None, Some(300)), 300);
        assert_eq!(context_charge(None, 0, Some(310), Some(300)), 310);
    }

    #[test]
    fn code_object_keys_are_distinct_per_device_and_fat_binary() {
        use super::code_object_key;
        let (a, b) = (0x7f00_1234_5000u64, 0x7f00_1234_6000u64);
        assert_ne!(code_object_key(a, 0), code_object_key(a, 1));
        assert_ne!(code_object_key(a, 0), code_object_key(b, 0));
        assert_ne!(code_object_key(a, 0), a);
    }
}
