//! The process's libvgpu state, created lazily on the first hooked call (idempotent,
//! thread-safe), never in a constructor: an eager init would run before a `dlopen`ed
//! libcuda exists and cache nothing.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cuda_headers::bindings::*;

use crate::config::{map_visible_devices, Config, MAX_DEVICES};
use crate::ledger::{LocalPool, MemoryLedger};
use crate::nvml::NvmlProbe;

/// Everything the hooks share.
pub struct Runtime {
    pub config: Config,
    pub ledger: MemoryLedger<LocalPool>,
    /// The real driver's `dlopen` handle, 0 when there is no driver.
    driver: usize,
    /// CUDA ordinal -> container device index (-1 = not computed yet).
    ordinal_map: [AtomicI32; MAX_DEVICES],
    /// Primary-context references this process holds per container device.
    pub primary_refs: [AtomicU32; MAX_DEVICES],
    nvml: OnceLock<Option<NvmlProbe>>,
    /// Whether any memory cap is configured (else memory hooks only forward).
    pub memory_capped: bool,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Set once `RUNTIME` is initialised: the hot paths read this instead of the OnceLock.
static READY: AtomicBool = AtomicBool::new(false);

/// The runtime, initialising it on first use.
pub fn rt() -> &'static Runtime {
    RUNTIME.get_or_init(Runtime::init)
}

/// Whether init has completed (plain load; for fast paths).
#[inline(always)]
pub fn is_ready() -> bool {
    READY.load(Ordering::Acquire)
}

impl Runtime {
    fn init() -> Runtime {
        let config = Config::from_env();
        crate::log::set_level(config.log_level);
        for issue in &config.issues {
            crate::log::write_line(format_args!("{issue}"));
        }
        let driver = crate::preload::open_library(c"libcuda.so.1");
        match driver {
            // SAFETY: h comes from dlopen.
            Some(h) => unsafe { crate::driver::resolve_real(h) },
            None => crate::vlog!(
                crate::log::WARN,
                "libcuda.so.1 not found: every CUDA call will report CUDA_ERROR_NOT_INITIALIZED"
            ),
        }
        let limits = if config.control_disabled {
            [None; MAX_DEVICES]
        } else {
            config.memory_limit
        };
        let memory_capped = limits.iter().any(Option::is_some);
        register_fork_handlers();
        crate::vlog!(
            crate::log::DEBUG,
            "initialised: driver={} limits={:?}",
            driver.is_some(),
            limits
        );
        READY.store(true, Ordering::Release);
        Runtime {
            ledger: MemoryLedger::new(LocalPool::new(limits)),
            driver: driver.map_or(0, |h| h as usize),
            ordinal_map: [const { AtomicI32::new(-1) }; MAX_DEVICES],
            primary_refs: [const { AtomicU32::new(0) }; MAX_DEVICES],
            nvml: OnceLock::new(),
            memory_capped,
            config,
        }
    }

    pub fn has_driver(&self) -> bool {
        self.driver != 0
    }

    /// The real NVML, opened on first need.
    pub fn nvml(&self) -> Option<&NvmlProbe> {
        self.nvml.get_or_init(NvmlProbe::open).as_ref()
    }

    /// The container device index for a CUDA ordinal (see `config::map_visible_devices`).
    pub fn container_index(&self, ordinal: CUdevice) -> Option<usize> {
        let slot = self.ordinal_map.get(usize::try_from(ordinal).ok()?)?;
        let cached = slot.load(Ordering::Relaxed);
        if cached >= 0 {
            return Some(cached as usize);
        }
        let idx = self.compute_container_index(ordinal as usize)?;
        slot.store(idx as i32, Ordering::Relaxed);
        Some(idx)
    }

    fn compute_container_index(&self, ordinal: usize) -> Option<usize> {
        let Some(spec) = self.config.visible_devices.as_deref() else {
            return Some(ordinal);
        };
        let needs_uuids = spec.contains('-');
        let uuids = if needs_uuids {
            match self.nvml() {
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
        let map = map_visible_devices(Some(spec), &uuids);
        map.get(ordinal).copied().filter(|&i| i < MAX_DEVICES)
    }

    /// The NVML index of a CUDA ordinal (matched by UUID).
    pub fn nvml_index(&self, ordinal: CUdevice) -> Option<u32> {
        let nvml = self.nvml()?;
        let uuid = crate::hooks::device_uuid(ordinal)?;
        nvml.device_uuids()
            .iter()
            .position(|u| *u == uuid)
            .map(|i| i as u32)
    }
}

/// Handle of the real driver, as a pointer (null when absent).
pub fn driver_handle() -> *mut c_void {
    rt().driver as *mut c_void
}

// ---- fork ------------------------------------------------------------------------------

static FORK_HANDLERS: AtomicUsize = AtomicUsize::new(0);
/// The ledger's map lock, held from `prepare` to `parent`/`child` so a child never inherits
/// it locked by a thread that does not exist there.
static FORK_GUARD: Mutex<Option<ForkGuard>> = Mutex::new(None);

struct ForkGuard(MutexGuard<'static, crate::ledger::AllocationMap>);
// SAFETY: the guard is created and dropped by the forking thread (prepare -> parent) or
// by the only thread of the child.
unsafe impl Send for ForkGuard {}

fn register_fork_handlers() {
    if FORK_HANDLERS.swap(1, Ordering::AcqRel) == 0 {
        // SAFETY: registering plain extern "C" handlers.
        unsafe {
            libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        }
    }
}

extern "C" fn fork_prepare() {
    if let Some(rt) = RUNTIME.get() {
        let guard = rt.ledger.live_mutex().lock().unwrap_or_else(|e| e.into_inner());
        *FORK_GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(ForkGuard(guard));
    }
}

extern "C" fn fork_parent() {
    drop(FORK_GUARD.lock().unwrap_or_else(|e| e.into_inner()).take());
}

extern "C" fn fork_child() {
    // The child holds no device memory and no context: start its accounting from zero.
    let taken = FORK_GUARD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let (Some(rt), Some(mut guard)) = (RUNTIME.get(), taken) {
        rt.ledger.forget_all_locked(&mut guard.0);
        for r in &rt.primary_refs {
            r.store(0, Ordering::Relaxed);
        }
    }
}
