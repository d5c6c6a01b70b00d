//! The process's libvgpu state, created lazily on the first hooked call (idempotent,
//! thread-safe), never in a constructor: an eager init would run before a `dlopen`ed
//! libcuda exists and cache nothing. Vendor-neutral: the devices' UUIDs come from the
//! registered vendor (`crate::core::vendor`); each backend resolves its own real library.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::config::{Config, MAX_DEVICES};
pub use crate::core::pool::Pool;
use crate::core::shared_region::{SharedPool, SharedRegion};
use crate::ledger::{CapacityPool, LocalPool, MemoryLedger};

/// Everything the hooks share.
pub struct Runtime {
    pub config: Config,
    pub ledger: MemoryLedger<Pool>,
    /// Primary-context references this process holds per container device.
    pub primary_refs: [AtomicU32; MAX_DEVICES],
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The configuration read at the process's first driver call (`prepare_region`), which
/// the runtime then takes instead of reading the environment again: every GPU process of a
/// container starting together pays for each read (issue 9 item 4).
static FIRST_CONFIG: OnceLock<Config> = OnceLock::new();

/// The environment's configuration, read once per process (LD_AUDIT mode: the program's
/// environment, not our libc's copy of the initial one).
fn first_config() -> &'static Config {
    FIRST_CONFIG.get_or_init(|| {
        crate::core::namespace::adopt_program_environ();
        Config::from_env()
    })
}

/// The runtime, initialising it on first use. A backend calls it after registering its
/// vendor (`crate::core::vendor::register`), so that the region learns the devices' UUIDs.
pub fn rt() -> &'static Runtime {
    RUNTIME.get_or_init(Runtime::init)
}

/// The runtime if it exists already (a backend's fast path: one load).
#[inline]
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get()
}

impl Runtime {
    fn init() -> Runtime {
        let started = std::time::Instant::now();
        let config = first_config().clone();
        crate::log::set_level(config.log_level);
        for issue in &config.issues {
            crate::log::write_line(format_args!("{issue}"));
        }
        if let Some(warning) = crate::config::tiny_memory_limit_warning(&config) {
            crate::log::write_line(format_args!("{warning}"));
        }
        crate::core::gate::set_policy(config.core_policy);
        let pool = if config.control_disabled {
            Pool::Local(LocalPool::new([None; MAX_DEVICES]))
        } else {
            // A container whose region already lists its devices needs no NVML to start.
            let region = SharedRegion::attach(
                &config.shared_cache,
                |known| region_devices(&config, known),
                config.task_priority,
            );
            // The gate must be right before the first launch, not one watcher tick later.
            let capped = crate::core::gate::open_gate(region);
            region.set_watcher_tick(watcher_tick);
            // A compute cap's controller ticks from the start; otherwise the watcher starts
            // at the first need of it (`SharedRegion::ensure_watcher`).
            if capped || config.sm_limit.iter().any(Option::is_some) {
                region.ensure_watcher();
            }
            crate::core::shared_region::mark_slot_exiting_at_exit();
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
            "initialised in {} us: vendor={} memory_capped={memory_capped}",
            started.elapsed().as_micros(),
            crate::core::vendor::active().map_or("none", |v| v.name)
        );
        Runtime {
            ledger: MemoryLedger::new(pool),
            primary_refs: [const { AtomicU32::new(0) }; MAX_DEVICES],
            config,
        }
    }
}

/// The process's first driver call, before the driver initialises: the container's region
/// mapped, and created when nobody has yet, without waiting for a process creating it
/// (`shared_region::prepare`). The runtime itself is made later, at the first call that
/// needs it.
pub fn prepare_region() {
    if RUNTIME.get().is_some() {
        return;
    }
    let config = first_config();
    if config.control_disabled {
        return;
    }
    crate::core::shared_region::prepare(
        &config.shared_cache,
        || region_devices(config, None),
        config.task_priority,
    );
}

/// The devices to register in the region: `known`, the names the region has already, else
/// the registered vendor's names for them (an AMD process: ROCr UUIDs, the names
/// ROCR_VISIBLE_DEVICES uses; NVIDIA: NVML's) — or the device plugin's list when it spells
/// them as NVML does, so that the container's first process lists them without opening
/// NVML, while the others wait for it (issue 9 item 4).
fn region_devices(config: &Config, known: Option<Vec<String>>) -> Vec<shm_layout::DeviceInit> {
    let uuids = known.unwrap_or_else(|| match config.limit_uuids_for(false) {
        Some(listed)
            if !crate::core::vendor::reads_rocr_uuids()
                && !listed.is_empty()
                && listed.iter().all(|u| crate::config::is_nvml_gpu_uuid(u)) =>
        {
            listed.to_vec()
        }
        _ => crate::core::vendor::device_uuids(),
    });
    container_devices(config, uuids)
}

/// The container's devices in container index order, with this process's limits: UUIDs
/// from the vendor (NVML shows the container's devices in container order), or stand-in
/// names when it cannot tell (then only devices with a limit are registered).
fn container_devices(config: &Config, uuids: Vec<String>) -> Vec<shm_layout::DeviceInit> {
    if let Some(listed) = config.limit_uuids_for(crate::core::vendor::reads_rocr_uuids()) {
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

/// The watcher thread's tick beyond reaping (`SharedRegion::set_watcher_tick`): an ambiguous
/// host pid discovery is narrowed here, off the application's paths, then the launch gate
/// and the compute cap's controller tick.
fn watcher_tick(sr: &'static SharedRegion) {
    if let Some(rt) = RUNTIME.get() {
        crate::core::hostpid::retry_pending(&rt.ledger);
    }
    // Context charges parked at start cut to the container's figure once it is there.
    crate::core::provisional::settle_all(None);
    crate::core::gate::watcher_tick(sr);
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
            crate::core::namespace::ForkHandler,
            crate::core::namespace::ForkHandler,
            crate::core::namespace::ForkHandler,
        ) = (Some(fork_prepare), Some(fork_parent), Some(fork_child));
        // LD_AUDIT mode: our libc's list is not the one the program's fork runs.
        if !crate::core::namespace::register_atfork(prepare, parent, child) {
            // SAFETY: registering plain extern "C" handlers.
            unsafe {
                libc::pthread_atfork(prepare, parent, child);
            }
        }
    }
}

extern "C" fn fork_prepare() {
    // Before the ledger's map lock: settling a parked charge takes them in that order.
    crate::core::provisional::fork_prepare();
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
    crate::core::provisional::fork_parent();
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
    crate::core::provisional::fork_child();
}
