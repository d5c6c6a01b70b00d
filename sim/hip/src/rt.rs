//! Process-local runtime of the simulated HIP library: the mapped machine state, this
//! process's slot, the visible devices and their per-process state, handle tables, the
//! per-thread current device / last error / launch configuration, and local memory
//! bookkeeping (host backings, shadows for copies).

use hip_headers::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock};
use vgpu_sim_core::amd::{self, AmdSpec};
use vgpu_sim_core::config::Costs;
use vgpu_sim_core::handles::HandleTable;
pub use vgpu_sim_core::process::lock;
use vgpu_sim_core::process::{self, RegisterError};
use vgpu_sim_core::shadow::{self, containing, Mapped, Shadows};
pub use vgpu_sim_core::shadow::{Loc, SHADOW_MAX};
use vgpu_sim_core::state::{DeviceInfo, Guard, SimState};
use vgpu_sim_core::{clock, ids};

pub type Res<T = ()> = Result<T, hipError_t>;

/// Turns a `Res<()>` into the code returned to C.
#[inline]
pub fn code(r: Res) -> hipError_t {
    match r {
        Ok(()) => hipSuccess,
        Err(e) => e,
    }
}

/// One visible device as this process sees it.
pub struct Dev {
    /// Physical index in the state file.
    pub phys: u32,
    /// Incarnation of the device's implicit context (0: not yet used / reset).
    pub inst: AtomicU64,
    /// End of the latest work this process submitted to the device (the null stream).
    pub last_end: AtomicU64,
    /// Module bytes charged on this device by this process.
    pub module_bytes: AtomicU64,
    pub modules: AtomicU32,
    pub flags: AtomicU32,
    /// Default memory pool handle (created on first use).
    pub default_pool: AtomicU64,
    activate: Mutex<()>,
}

pub struct Runtime {
    pub shm: SimState,
    pub slot: u32,
    /// The process that initialised (a forked child is not it).
    pub pid: u32,
    /// Its pid in the machine's pid namespace (what the state file and the SMI view know).
    pub machine_pid: u32,
    pub costs: Costs,
    pub devs: Vec<Dev>,
    pub mem: Mutex<LocalMem>,
    /// `(device, peer)` pairs with peer access enabled.
    pub peers: Mutex<std::collections::HashSet<(c_int, c_int)>>,
    /// Stack size, printf FIFO size, malloc heap size (`hipDeviceGetLimit`).
    pub limits: Mutex<[usize; 3]>,
}

/// HIP's default limits: stack 1 KiB per thread, printf FIFO and device heap.
pub const DEFAULT_LIMITS: [usize; 3] = [1024, 1 << 20, 8 << 20];

static RT: OnceLock<Result<Runtime, hipError_t>> = OnceLock::new();
static FORKED: AtomicBool = AtomicBool::new(false);

/// The runtime (HIP initialises implicitly on the first call); a failure is sticky.
#[inline]
pub fn rt() -> Res<&'static Runtime> {
    if FORKED.load(Ordering::Relaxed) {
        return Err(hipErrorNotInitialized);
    }
    match RT.get_or_init(build) {
        Ok(r) => Ok(r),
        Err(e) => Err(*e),
    }
}

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::Relaxed);
}

extern "C" fn at_exit() {
    if let Some(Ok(r)) = RT.get() {
        process::unregister_at_exit(&r.shm, r.slot, r.pid, r.machine_pid);
    }
}

/// Which physical devices HIP sees: `ROCR_VISIBLE_DEVICES` (indices or ROCr UUIDs) first,
/// then `HIP_VISIBLE_DEVICES` (or `CUDA_VISIBLE_DEVICES`) as indices among those.
pub fn visible_devices(rocr: Option<&str>, hip: Option<&str>, rocr_uuids: &[String]) -> Vec<u32> {
    let first: Vec<u32> = ids::parse_visible_devices(rocr, rocr_uuids)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let names: Vec<String> = first
        .iter()
        .map(|&p| rocr_uuids[p as usize].clone())
        .collect();
    ids::parse_visible_devices(hip, &names)
        .into_iter()
        .map(|i| first[i])
        .collect()
}

fn build() -> Result<Runtime, hipError_t> {
    let (costs, w) = Costs::from_env();
    process::warn(&w);
    let (cfg, w) = amd::sim_config_from_env();
    let shm = process::open_machine_state(&cfg, &w).ok_or(hipErrorNoDevice)?;
    let Some(first) = shm.devices().first() else {
        return Err(hipErrorNoDevice);
    };
    if amd::amd_spec(&first.model_key).is_none() {
        eprintln!(
            "vgpu-sim: {} describes {} devices, not AMD ones: the HIP library sees none",
            shm.path().display(),
            first.name
        );
        return Err(hipErrorNoDevice);
    }
    let uuids: Vec<String> = shm
        .devices()
        .iter()
        .map(|d| amd::rocr_uuid(&d.uuid))
        .collect();
    let rocr = std::env::var("ROCR_VISIBLE_DEVICES").ok();
    let hip = std::env::var("HIP_VISIBLE_DEVICES")
        .ok()
        .or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok());
    let visible = visible_devices(rocr.as_deref(), hip.as_deref(), &uuids);
    if visible.is_empty() {
        return Err(hipErrorNoDevice);
    }
    let pid = std::process::id();
    let me = shm.caller();
    let slot =
        process::register_process(&shm, process::join_group_from_env).map_err(|e| match e {
            RegisterError::Lock => hipErrorUnknown,
            RegisterError::Full => hipErrorOutOfMemory,
        })?;
    process::install_process_callbacks(after_fork_in_child, at_exit);
    Ok(Runtime {
        shm,
        slot,
        pid,
        machine_pid: me.pid,
        costs,
        devs: visible
            .into_iter()
            .map(|phys| Dev {
                phys,
                inst: AtomicU64::new(0),
                last_end: AtomicU64::new(0),
                module_bytes: AtomicU64::new(0),
                modules: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                default_pool: AtomicU64::new(0),
                activate: Mutex::new(()),
            })
            .collect(),
        mem: Mutex::new(LocalMem::default()),
        peers: Mutex::new(Default::default()),
        limits: Mutex::new(DEFAULT_LIMITS),
    })
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl Runtime {
    pub fn dev(&self, ordinal: c_int) -> Res<&Dev> {
        if ordinal < 0 {
            return Err(hipErrorInvalidDevice);
        }
        self.devs.get(ordinal as usize).ok_or(hipErrorInvalidDevice)
    }

    pub fn info(&self, ordinal: c_int) -> Res<&DeviceInfo> {
        let d = self.dev(ordinal)?;
        self.shm
            .devices()
            .get(d.phys as usize)
            .ok_or(hipErrorInvalidDevice)
    }

    pub fn amd(&self, ordinal: c_int) -> Res<&'static AmdSpec> {
        amd::amd_spec(&self.info(ordinal)?.model_key).ok_or(hipErrorInvalidDevice)
    }

    /// Runs `f` under the machine-wide lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut Guard<'_>) -> T) -> Res<T> {
        let mut g = self.shm.lock().map_err(|m| {
            eprintln!("{m}");
            hipErrorUnknown
        })?;
        Ok(f(&mut g))
    }

    /// The device's implicit context, charged (`VGPU_SIM_CONTEXT_BYTES`) from the first use
    /// of the device by this process until `hipDeviceReset` or exit. Returns its incarnation.
    pub fn activate(&self, ordinal: c_int) -> Res<u64> {
        let d = self.dev(ordinal)?;
        let inst = d.inst.load(Ordering::Acquire);
        if inst != 0 {
            return Ok(inst);
        }
        let _g = lock(&d.activate);
        let inst = d.inst.load(Ordering::Acquire);
        if inst != 0 {
            return Ok(inst);
        }
        let bytes = self.costs.context_bytes as i64;
        self.with_state(|g| g.charge(self.slot, d.phys, bytes, 0, 1, 0))?
            .map_err(|_| hipErrorOutOfMemory)?;
        let inst = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        d.inst.store(inst, Ordering::Release);
        Ok(inst)
    }
}

// ---- per-thread state ---------------------------------------------------------------------

/// A `<<<>>>` launch configuration pushed by `__hipPushCallConfiguration`.
#[derive(Clone, Copy)]
pub struct CallConfig {
    pub grid: dim3,
    pub block: dim3,
    pub shared: usize,
    pub stream: hipStream_t,
}

thread_local! {
    static CUR_DEV: Cell<c_int> = const { Cell::new(0) };
    static LAST_ERROR: Cell<hipError_t> = const { Cell::new(0) };
    static CALL_CONFIGS: RefCell<Vec<CallConfig>> = const { RefCell::new(Vec::new()) };
    /// The thread's context stack (deprecated `hipCtx*` API), as device ordinals, top last.
    static CTX_STACK: RefCell<Vec<c_int>> = const { RefCell::new(Vec::new()) };
}

/// The context handle of ordinal `d` (one context per device: its primary one).
pub fn ctx_of(d: c_int) -> hipCtx_t {
    (d as isize + 1) as hipCtx_t
}

/// The ordinal of a context handle (`None`: NULL or not one of ours).
pub fn ctx_device(ctx: hipCtx_t) -> Option<c_int> {
    c_int::try_from(ctx as isize - 1).ok().filter(|&d| d >= 0)
}

/// Runs `f` on the thread's context stack; the thread's current device follows its top.
pub fn with_ctx_stack<R>(f: impl FnOnce(&mut Vec<c_int>) -> R) -> R {
    CTX_STACK.with(|s| {
        let mut s = s.borrow_mut();
        let r = f(&mut s);
        if let Some(&top) = s.last() {
            set_current_device(top);
        }
        r
    })
}

#[inline]
pub fn current_device() -> c_int {
    CUR_DEV.with(|c| c.get())
}

pub fn set_current_device(d: c_int) {
    CUR_DEV.with(|c| c.set(d));
}

#[inline]
pub fn set_last_error(e: hipError_t) {
    LAST_ERROR.with(|c| c.set(e));
}

/// The last error; `reset` clears it (`hipGetLastError`) or not (`hipPeekAtLastError`).
pub fn last_error(reset: bool) -> hipError_t {
    LAST_ERROR.with(|c| {
        let e = c.get();
        if reset {
            c.set(hipSuccess);
        }
        e
    })
}

pub fn push_call_config(c: CallConfig) {
    CALL_CONFIGS.with(|s| s.borrow_mut().push(c));
}

pub fn pop_call_config() -> Option<CallConfig> {
    CALL_CONFIGS.with(|s| s.borrow_mut().pop())
}

// ---- objects ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
pub struct Node {
    pub blocks: u64,
}

#[derive(Default)]
pub struct Stream {
    pub ordinal: AtomicU32,
    pub flags: AtomicU32,
    pub priority: std::sync::atomic::AtomicI32,
    pub last_end: AtomicU64,
    /// Not before this time (event waits).
    pub wait_until: AtomicU64,
    pub capturing: AtomicBool,
    pub captured: Mutex<Vec<Node>>,
}

#[derive(Default)]
pub struct Event {
    pub flags: AtomicU32,
    /// Completion time of the recorded work; 0 = never recorded.
    pub time: AtomicU64,
}

#[derive(Default)]
pub struct Module {
    pub ordinal: AtomicU32,
    /// Kernel names a text image declares (None: any name, for binary code objects).
    pub entries: Mutex<Option<Vec<String>>>,
    pub funcs: Mutex<HashMap<String, u64>>,
    /// `hipModuleGetGlobal`: name -> device address of a 256-byte global.
    pub globals: Mutex<HashMap<String, u64>>,
}

#[derive(Default)]
pub struct Func {
    pub module: AtomicU64,
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Mutex<Vec<Node>>,
    /// Memory of the graph's allocation nodes (taken when the node is added, freed with the
    /// graph unless the application freed it first).
    pub allocs: Mutex<Vec<u64>>,
}

#[derive(Default)]
pub struct Pool {
    pub ordinal: AtomicU32,
}

static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

/// A graph node handle: opaque, never looked up (the simulator does not run graph nodes it
/// built by hand; their memory is what it models).
pub fn new_node_handle() -> u64 {
    (0x39u64 << 48) | NEXT_NODE.fetch_add(1, Ordering::Relaxed)
}

pub static STREAMS: HandleTable<Stream> = HandleTable::new(0x31);
pub static EVENTS: HandleTable<Event> = HandleTable::new(0x32);
pub static MODULES: HandleTable<Module> = HandleTable::new(0x33);
pub static FUNCS: HandleTable<Func> = HandleTable::new(0x34);
pub static GRAPHS: HandleTable<Graph> = HandleTable::new(0x35);
pub static EXECS: HandleTable<Graph> = HandleTable::new(0x36);
pub static POOLS: HandleTable<Pool> = HandleTable::new(0x37);

/// A fat binary registered by a hipcc-built program's constructor.
pub struct FatBin {
    /// The GPU processors (`gfx90a`, ...) its code objects are built for; `None` when the
    /// image is not a clang offload bundle we can read (then any device runs it).
    pub targets: Option<Vec<String>>,
    /// Devices (bit per ordinal) whose code object is loaded and charged: HIP loads a
    /// program's code objects on a device at the first launch there.
    pub loaded: AtomicU32,
    pub live: AtomicBool,
}

/// `__hipRegisterFatBinary`'s argument: `{u32 magic "HIPF", u32 version, binary, unused}`.
pub const HIP_FATBIN_MAGIC: u32 = 0x4849_5046;
const BUNDLE_MAGIC: &[u8; 24] = b"__CLANG_OFFLOAD_BUNDLE__";

/// The device processors of a clang offload bundle (`hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-`
/// -> `gfx90a`); `read(offset, len)` gives bytes of the bundle. `None` when it is not one.
pub fn bundle_targets(read: impl Fn(usize, usize) -> Vec<u8>) -> Option<Vec<String>> {
    if read(0, 24) != BUNDLE_MAGIC {
        return None;
    }
    let u64_at = |o: usize| -> u64 {
        let b = read(o, 8);
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
    };
    let n = u64_at(24);
    if n == 0 || n > 256 {
        return None;
    }
    let mut at = 32usize;
    let mut out = Vec::new();
    for _ in 0..n {
        let id_len = u64_at(at + 16) as usize;
        if id_len > 4096 {
            return None;
        }
        let id = String::from_utf8(read(at + 24, id_len)).ok()?;
        at += 24 + id_len;
        if let Some((kind, target)) = id.split_once("--") {
            if kind.contains("amdgcn") {
                let proc_name = target.split(':').next().unwrap_or(target);
                out.push(proc_name.to_string());
            }
        }
    }
    Some(out)
}

/// Whether a bundle's targets include a device's ISA (`gfx942:sramecc+:xnack-` -> `gfx942`).
pub fn runs_on(targets: &Option<Vec<String>>, gcn_arch_name: &str) -> bool {
    let want = gcn_arch_name.split(':').next().unwrap_or(gcn_arch_name);
    targets.as_ref().is_none_or(|t| t.iter().any(|p| p == want))
}

/// A `__global__` function registered with `__hipRegisterFunction`, keyed by its host stub.
#[derive(Clone)]
pub struct HostFunc {
    pub fatbin: usize,
    #[allow(dead_code)]
    pub name: String,
}

/// Host stub address -> registered kernel.
pub static HOST_FUNCS: RwLock<BTreeMap<usize, HostFunc>> = RwLock::new(BTreeMap::new());

// ---- local memory bookkeeping ------------------------------------------------------------

/// A device allocation of this process, keyed by the pointer handed out.
#[derive(Debug, Clone, Copy)]
pub struct LocalAlloc {
    /// Base in the shared allocation table (equals the key except for managed memory).
    pub shm_base: u64,
    pub bytes: u64,
    pub span: u64,
    pub ordinal: u32,
    pub kind: u8,
    /// Host backing (managed memory).
    pub host: Option<(usize, usize)>,
    /// The graph whose memory node made it (0: none).
    pub graph: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct HostRec {
    pub len: usize,
    /// Registered user memory (not ours to unmap).
    pub registered: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct VmmHandle {
    pub size: u64,
    pub device: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub size: u64,
    pub handle: u64,
    pub offset: u64,
}

#[derive(Default)]
pub struct LocalMem {
    pub allocs: BTreeMap<u64, LocalAlloc>,
    pub hosts: BTreeMap<u64, HostRec>,
    pub reserves: BTreeMap<u64, u64>,
    pub maps: BTreeMap<u64, Mapping>,
    pub handles: HashMap<u64, VmmHandle>,
    /// Array handle -> shared-table base.
    pub arrays: HashMap<u64, u64>,
    /// Mipmapped array handle -> shared-table base.
    pub mipmaps: HashMap<u64, u64>,
    /// Another process's allocations opened with `hipIpcOpenMemHandle`: base -> size (not
    /// charged here: the exporter pays for them).
    pub ipc: BTreeMap<u64, u64>,
    pub surfaces: std::collections::HashSet<u64>,
    /// Contents of device allocations up to [`SHADOW_MAX`] bytes, keyed by shared-table base.
    pub shadows: Shadows,
}

impl LocalMem {
    pub fn find_alloc(&self, addr: u64) -> Option<(u64, LocalAlloc)> {
        containing(&self.allocs, addr, |a| a.bytes)
    }

    pub fn find_host(&self, addr: u64) -> Option<(u64, HostRec)> {
        containing(&self.hosts, addr, |h| h.len as u64)
    }

    pub fn find_map(&self, addr: u64) -> Option<(u64, Mapping)> {
        containing(&self.maps, addr, |m| m.size)
    }

    /// Resolves `len` bytes at `addr`. Unknown addresses outside the fake device ranges are
    /// pageable host memory (HIP's unified addressing); unknown device addresses are refused.
    pub fn resolve(&self, addr: u64, len: u64, ndev: u32) -> Res<Loc> {
        let alloc = self
            .find_alloc(addr)
            .map(|(k, a)| Mapped::allocation(k, a.bytes, a.host, a.shm_base, a.span));
        let map = self.find_map(addr).map(|(k, m)| {
            let handle_size = self.handles.get(&m.handle).map_or(0, |h| h.size);
            Mapped::mapping(k, m.size, m.handle, handle_size, m.offset)
        });
        // The bytes of an IPC import are this process's own view: contents are not shared
        // across processes.
        let ipc = containing(&self.ipc, addr, |s| *s)
            .map(|(k, size)| Mapped::allocation(k, size, None, k, size));
        let host = self
            .find_host(addr)
            .map(|(k, h)| Mapped::host(k, h.len as u64));
        shadow::resolve(addr, len, [alloc, map, ipc, host], true, ndev).ok_or(hipErrorInvalidValue)
    }

    /// Reads `dst.len()` bytes from a location.
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `dst.len()` bytes.
    pub unsafe fn read(&self, loc: Loc, dst: &mut [u8]) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.shadows.read(loc, dst) }
    }

    /// Writes bytes to a location.
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `src.len()` bytes.
    pub unsafe fn write(&mut self, loc: Loc, src: &[u8]) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.shadows.write(loc, src) }
    }
}

pub fn now() -> u64 {
    clock::mono_ns()
}

static FATBINS: Mutex<Vec<&'static FatBin>> = Mutex::new(Vec::new());

/// Every fat binary registered in this process (never freed: the compiler keeps its handle).
pub fn fatbins_mut() -> MutexGuard<'static, Vec<&'static FatBin>> {
    lock(&FATBINS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_bundle_targets() {
        let mut b = Vec::new();
        b.extend_from_slice(BUNDLE_MAGIC);
        b.extend_from_slice(&2u64.to_le_bytes());
        for id in [
            "host-x86_64-unknown-linux",
            "hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-",
        ] {
            b.extend_from_slice(&4096u64.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
            b.extend_from_slice(&(id.len() as u64).to_le_bytes());
            b.extend_from_slice(id.as_bytes());
        }
        let read = |o: usize, n: usize| b.get(o..o + n).map_or(vec![0; n], |s| s.to_vec());
        let t = bundle_targets(read);
        assert_eq!(t, Some(vec!["gfx90a".to_string()]));
        assert!(runs_on(&t, "gfx90a:sramecc+:xnack-"));
        assert!(!runs_on(&t, "gfx942:sramecc+:xnack-"));
        assert!(runs_on(&None, "gfx942"));
        assert_eq!(bundle_targets(|_, n| vec![0; n]), None);
    }

    #[test]
    fn rocr_then_hip_visibility() {
        let u: Vec<String> = (0..4)
            .map(|i| format!("GPU-{:016x}", 0x1111 * (i + 1)))
            .collect();
        assert_eq!(visible_devices(None, None, &u), vec![0, 1, 2, 3]);
        assert_eq!(visible_devices(Some("2,3"), None, &u), vec![2, 3]);
        assert_eq!(visible_devices(Some("2,3"), Some("1"), &u), vec![3]);
        assert_eq!(visible_devices(Some(&u[1]), None, &u), vec![1]);
        assert_eq!(visible_devices(Some("7"), None, &u), Vec::<u32>::new());
    }
}
