//! The process's libvgpu state, created lazily on the first hooked call (idempotent,
//! thread-safe), never in a constructor: an eager init would run before a `dlopen`ed
//! libcuda exists and cache nothing.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cuda_headers::bindings::*;

use crate::config::{Config, MAX_DEVICES};
use crate::core::shared_region::{SharedPool, SharedRegion};
use crate::ledger::{CapacityPool, LocalPool, MemoryLedger};
use crate::nvml::NvmlProbe;
use vgpu_policy::device::{ContainerIndex, Ordinal};

/// Where capacity lives: the container-wide region, or (control disabled) nowhere.
#[allow(clippy::large_enum_variant)] // one per process; boxing would add an indirection to every reservation
pub enum Pool {
    Local(LocalPool),
    Shared(SharedPool),
}

macro_rules! pool_dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            Pool::Local($p) => $e,
            Pool::Shared($p) => $e,
        }
    };
}

impl CapacityPool for Pool {
    fn try_reserve(&self, device: usize, bytes: u64) -> bool {
        pool_dispatch!(self, p => p.try_reserve(device, bytes))
    }
    fn try_reserve_usage(&self, device: usize, bucket: usize, bytes: u64) -> Option<bool> {
        pool_dispatch!(self, p => p.try_reserve_usage(device, bucket, bytes))
    }
    fn on_granted(&self, device: usize) {
        pool_dispatch!(self, p => p.on_granted(device))
    }
    fn force_reserve(&self, device: usize, bytes: u64) {
        pool_dispatch!(self, p => p.force_reserve(device, bytes))
    }
    fn release(&self, device: usize, bytes: u64) {
        pool_dispatch!(self, p => p.release(device, bytes))
    }
    fn used(&self, device: usize) -> u64 {
        pool_dispatch!(self, p => p.used(device))
    }
    fn limit(&self, device: usize) -> Option<u64> {
        pool_dispatch!(self, p => p.limit(device))
    }
    fn on_usage(&self, device: usize, bucket: usize, delta: i64) -> bool {
        pool_dispatch!(self, p => p.on_usage(device, bucket, delta))
    }
    fn release_with_usage(&self, device: usize, bucket: usize, bytes: u64) -> bool {
        pool_dispatch!(self, p => p.release_with_usage(device, bucket, bytes))
    }
    fn published_usage(&self, device: usize) -> Option<crate::ledger::Usage> {
        pool_dispatch!(self, p => p.published_usage(device))
    }
    fn after_fork_child(&self) {
        pool_dispatch!(self, p => p.after_fork_child())
    }
}

/// Everything the hooks share.
pub struct Runtime {
    pub config: Config,
    pub ledger: MemoryLedger<Pool>,
    /// CUDA ordinal -> container device index (-1 = not computed yet).
    ordinal_map: [AtomicI32; MAX_DEVICES],
    /// Primary-context references this process holds per container device.
    pub primary_refs: [AtomicU32; MAX_DEVICES],
    nvml: OnceLock<Option<NvmlProbe>>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// `ordinal_map` entry of a device no container limit applies to (-1: not looked up yet).
const NO_CONTAINER_DEVICE: i32 = -2;

/// The runtime, initialising it on first use.
pub fn rt() -> &'static Runtime {
    RUNTIME.get_or_init(Runtime::init)
}

impl Runtime {
    fn init() -> Runtime {
        let started = std::time::Instant::now();
        // LD_AUDIT mode: read the program's environment, not our libc's copy of the initial one.
        crate::interpose::audit::adopt_program_environ();
        let config = Config::from_env();
        crate::log::set_level(config.log_level);
        for issue in &config.issues {
            crate::log::write_line(format_args!("{issue}"));
        }
        if let Some(warning) = crate::config::tiny_memory_limit_warning(&config) {
            crate::log::write_line(format_args!("{warning}"));
        }
        // A HIP process (its first hooked call was HIP's) only looks for a CUDA driver
        // already loaded: loading one would initialise a second vendor's stack for nothing.
        let driver = if crate::hip::in_use() {
            crate::interpose::loaded_library(c"libcuda.so.1")
        } else {
            crate::interpose::open_library(c"libcuda.so.1")
        };
        match driver {
            // SAFETY: h comes from dlopen.
            Some(h) => unsafe { crate::cuda::resolve_real(h) },
            // A HIP process on an AMD node has no CUDA driver, and needs none.
            None if crate::hip::in_use() => {}
            None => crate::vlog!(
                crate::log::WARN,
                "libcuda.so.1 not found: every CUDA call will report CUDA_ERROR_NOT_INITIALIZED"
            ),
        }
        let nvml: OnceLock<Option<NvmlProbe>> = OnceLock::new();
        crate::core::gate::set_policy(config.core_policy);
        let pool = if config.control_disabled {
            Pool::Local(LocalPool::new([None; MAX_DEVICES]))
        } else {
            // A container whose region already lists its devices needs no NVML to start.
            let region = SharedRegion::attach(
                &config.shared_cache,
                |known| {
                    // A HIP process (its first hooked call was HIP's): its devices by
                    // ROCr UUID, the names ROCR_VISIBLE_DEVICES uses; else NVML's.
                    let uuids = known.unwrap_or_else(|| {
                        let hip = crate::hip::device_uuids();
                        if !hip.is_empty() {
                            return hip;
                        }
                        nvml.get_or_init(NvmlProbe::open)
                            .as_ref()
                            .map(NvmlProbe::device_uuids)
                            .unwrap_or_default()
                    });
                    container_devices(&config, uuids)
                },
                config.task_priority,
            );
            // The gate must be right before the first launch, not one watcher tick later.
            crate::core::gate::open_gate(region);
            region.start_reaper();
            crate::core::shared_region::release_slot_at_exit();
            let shared = SharedPool {
                region,
                refused: config.memory_limit.map(|l| l == Some(0)),
            };
            shared.publish_refusals();
            Pool::Shared(shared)
        };
        let memory_capped = (0..MAX_DEVICES).any(|d| pool.limit(d).is_some());
        register_fork_handlers();
        crate::vlog!(
            crate::log::DEBUG,
            "initialised in {} us: driver={} memory_capped={memory_capped}",
            started.elapsed().as_micros(),
            driver.is_some()
        );
        Runtime {
            ledger: MemoryLedger::new(pool),
            ordinal_map: [const { AtomicI32::new(-1) }; MAX_DEVICES],
            primary_refs: [const { AtomicU32::new(0) }; MAX_DEVICES],
            nvml,
            config,
        }
    }

    /// The real NVML, opened on first need.
    pub fn nvml(&self) -> Option<&NvmlProbe> {
        self.nvml.get_or_init(NvmlProbe::open).as_ref()
    }

    /// Whether this process has opened NVML already (opening it costs a library load and
    /// the driver's NVML initialisation).
    pub fn nvml_opened(&self) -> bool {
        self.nvml.get().is_some()
    }

    /// The container device index for a CUDA ordinal: the position of the device's UUID in
    /// `NVIDIA_VISIBLE_DEVICES` when that lists UUIDs, else by `CUDA_VISIBLE_DEVICES` over
    /// NVML's order (see `config::map_visible_devices`). `None`: no limit of the container
    /// applies to the device (said once on stderr when other devices have one).
    pub fn container_index(&self, ordinal: CUdevice) -> Option<usize> {
        let slot = self.ordinal_map.get(usize::try_from(ordinal).ok()?)?;
        match slot.load(Ordering::Relaxed) {
            NO_CONTAINER_DEVICE => return None,
            cached if cached >= 0 => return Some(cached as usize),
            _ => {}
        }
        let idx = self.compute_container_index(ordinal as usize);
        let uuid =
            crate::cuda::hooks::device_uuid(ordinal).unwrap_or_else(|| format!("#{ordinal}"));
        if let Some(note) = self
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

    fn compute_container_index(&self, ordinal: usize) -> Option<usize> {
        if let Some(uuids) = self.config.limit_uuids.as_deref() {
            match crate::cuda::hooks::device_uuid(ordinal as CUdevice) {
                Some(uuid) => {
                    return crate::config::limit_index_of(uuids, &uuid).map(ContainerIndex::get)
                }
                None => crate::vlog!(
                    crate::log::ERROR,
                    "cannot read the UUID of CUDA device {ordinal}: its limit follows NVML's device order"
                ),
            }
        }
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
        crate::config::visible_container_index(spec, &uuids, Ordinal(ordinal as i32))
            .map(ContainerIndex::get)
    }

    /// The NVML index of a CUDA ordinal (matched by UUID).
    pub fn nvml_index(&self, ordinal: CUdevice) -> Option<u32> {
        let nvml = self.nvml()?;
        let uuid = crate::cuda::hooks::device_uuid(ordinal)?;
        nvml.device_uuids()
            .iter()
            .position(|u| *u == uuid)
            .map(|i| i as u32)
    }
}

/// The container's devices in container index order, with this process's limits: UUIDs
/// from NVML (which shows the container's devices in container order), or stand-in names
/// when NVML is unavailable (then only devices with a limit are registered).
fn container_devices(config: &Config, uuids: Vec<String>) -> Vec<shm_layout::DeviceInit> {
    if let Some(listed) = config.limit_uuids.as_deref() {
        // NVIDIA_VISIBLE_DEVICES order: limit i is the i-th UUID's (spelled as NVML spells
        // it when NVML knows the device, so NVML's and CUDA's views find the same entry).
        return listed
            .iter()
            .take(MAX_DEVICES)
            .enumerate()
            .map(|(i, u)| shm_layout::DeviceInit {
                uuid: uuids
                    .iter()
                    .find(|n| crate::config::same_uuid(n, u))
                    .cloned()
                    .unwrap_or_else(|| u.clone()),
                limit_bytes: config.memory_limit[i].unwrap_or(0),
                sm_limit: config.sm_limit[i].map_or(0, u64::from),
            })
            .collect();
    }
    let count = if uuids.is_empty() {
        // No NVML: the devices this process can name — per-device variables, the entries
        // of CUDA_VISIBLE_DEVICES — and at least device 0.
        let named = (0..MAX_DEVICES)
            .rev()
            .find(|&i| {
                let var = |p: &str| std::env::var_os(format!("{p}_{i}")).is_some();
                var("CUDA_DEVICE_MEMORY_LIMIT") || var("CUDA_DEVICE_SM_LIMIT")
            })
            .map_or(1, |i| i + 1);
        let visible = config
            .visible_devices
            .as_deref()
            .map_or(0, |v| crate::config::parse_visible_devices(v).len());
        named.max(visible).min(MAX_DEVICES)
    } else {
        uuids.len().min(MAX_DEVICES)
    };
    (0..count)
        .map(|i| shm_layout::DeviceInit {
            uuid: uuids
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("vgpu-device-index-{i}")),
            limit_bytes: config.memory_limit[i].unwrap_or(0),
            sm_limit: config.sm_limit[i].map_or(0, u64::from),
        })
        .collect()
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
        let (prepare, parent, child): (
            crate::interpose::audit::ForkHandler,
            crate::interpose::audit::ForkHandler,
            crate::interpose::audit::ForkHandler,
        ) = (Some(fork_prepare), Some(fork_parent), Some(fork_child));
        // LD_AUDIT mode: our libc's list is not the one the program's fork runs.
        if !crate::interpose::audit::register_atfork(prepare, parent, child) {
            // SAFETY: registering plain extern "C" handlers.
            unsafe {
                libc::pthread_atfork(prepare, parent, child);
            }
        }
    }
}

extern "C" fn fork_prepare() {
    if let Some(rt) = RUNTIME.get() {
        let guard = rt
            .ledger
            .live_mutex()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
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
        crate::core::hostpid::forget_after_fork();
        for r in &rt.primary_refs {
            r.store(0, Ordering::Relaxed);
        }
    }
}
