//! Process-local runtime of the simulated driver: the mapped machine state, this process's
//! slot, visible devices, handle tables, the per-thread context stack, and local memory
//! bookkeeping (host backings, shadows for copies).

use cuda_headers::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use vgpu_sim_core::config::{Costs, SimConfig};
use vgpu_sim_core::handles::HandleTable;
pub use vgpu_sim_core::process::lock;
use vgpu_sim_core::process::{self, RegisterError};
pub use vgpu_sim_core::shadow::Loc;
use vgpu_sim_core::shadow::{self, containing, Mapped, Shadows};
use vgpu_sim_core::state::{DeviceInfo, SimState};
use vgpu_sim_core::{clock, ids};

pub type Res<T = ()> = Result<T, CUresult>;

/// Turns a `Res<()>` into the code returned to C.
#[inline]
pub fn code(r: Res) -> CUresult {
    match r {
        Ok(()) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// Primary context bookkeeping of one CUDA ordinal.
#[derive(Default)]
pub struct Primary {
    pub handle: u64,
    pub refs: u32,
    pub flags: u32,
}

pub struct Runtime {
    pub shm: SimState,
    pub slot: u32,
    /// The process that initialised, by `getpid()` (a forked child is not it).
    pub pid: u32,
    /// Its pid in the machine's pid namespace: how the state file and NVML know it.
    pub machine_pid: u32,
    /// CUDA ordinal -> physical device index.
    pub visible: Vec<u32>,
    pub costs: Costs,
    pub primaries: Vec<Mutex<Primary>>,
    pub mem: Mutex<LocalMem>,
    /// Per ordinal: (default pool, current pool).
    pub pools: Mutex<Vec<(u64, u64)>>,
}

static RT: OnceLock<Result<Runtime, CUresult>> = OnceLock::new();
/// Set in a child after `fork()`: the parent's driver state is unusable there (as with the
/// real driver, every call then fails with `CUDA_ERROR_NOT_INITIALIZED`).
static FORKED: AtomicBool = AtomicBool::new(false);

/// The runtime, or `CUDA_ERROR_NOT_INITIALIZED` before a successful `cuInit`.
#[inline]
pub fn rt() -> Res<&'static Runtime> {
    match RT.get() {
        Some(Ok(r)) if !FORKED.load(Ordering::Relaxed) => Ok(r),
        _ => Err(CUDA_ERROR_NOT_INITIALIZED),
    }
}

/// `cuInit`: builds the runtime once; a failure is sticky.
pub fn init() -> CUresult {
    if FORKED.load(Ordering::Relaxed) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    match RT.get_or_init(build) {
        Ok(_) => CUDA_SUCCESS,
        Err(e) => *e,
    }
}

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::Relaxed);
}

/// At normal process exit the driver tears the process down. Test hook
/// `VGPU_SIM_TEARDOWN_DELAY_MS`: the teardown first says `sim_teardown=1` on stdout, then
/// holds the process's memory that long (a real driver's teardown takes time too), so a
/// test can act while a process exits with memory the driver still holds.
extern "C" fn at_exit() {
    if let Some(Ok(r)) = RT.get() {
        let delay_ms = std::env::var("VGPU_SIM_TEARDOWN_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if delay_ms > 0 {
            let line = b"sim_teardown=1\n";
            // SAFETY: writes a static buffer to fd 1 (no std stdout lock at exit).
            unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        process::unregister_at_exit(&r.shm, r.slot, r.pid, r.machine_pid);
    }
}

/// The simulated driver's ELF destructor (see `process::delay_close_at_exit`).
extern "C" fn close_at_exit() {
    process::delay_close_at_exit();
}

/// `.fini_array`: what `exit` runs per shared object once the at-exit list is done;
/// `#[used]` keeps the otherwise unreferenced entry.
#[used]
#[link_section = ".fini_array"]
static CLOSE_AT_EXIT: extern "C" fn() = close_at_exit;

fn build() -> Result<Runtime, CUresult> {
    let (costs, w) = Costs::from_env();
    process::warn(&w);
    let (cfg, w) = SimConfig::from_env();
    let shm = process::open_machine_state(&cfg, &w).ok_or(CUDA_ERROR_NO_DEVICE)?;
    if shm.devices().is_empty() {
        return Err(CUDA_ERROR_NO_DEVICE);
    }
    let pid = std::process::id();
    let me = shm.caller();
    let slot =
        process::register_process(&shm, process::join_group_from_env).map_err(|e| match e {
            RegisterError::Lock => CUDA_ERROR_UNKNOWN,
            RegisterError::Full => CUDA_ERROR_OUT_OF_MEMORY,
        })?;
    let uuids: Vec<String> = shm.devices().iter().map(|d| d.uuid_str.clone()).collect();
    let cvd = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let visible: Vec<u32> = ids::parse_visible_devices(cvd.as_deref(), &uuids)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    if visible.is_empty() {
        return Err(CUDA_ERROR_NO_DEVICE);
    }
    let n = visible.len();
    process::install_process_callbacks(after_fork_in_child, at_exit);
    Ok(Runtime {
        shm,
        slot,
        pid,
        machine_pid: me.pid,
        visible,
        costs,
        primaries: (0..n).map(|_| Mutex::new(Primary::default())).collect(),
        mem: Mutex::new(LocalMem::default()),
        pools: Mutex::new(vec![(0, 0); n]),
    })
}

impl Runtime {
    /// Physical index of a CUDA ordinal.
    pub fn phys(&self, ordinal: CUdevice) -> Res<u32> {
        if ordinal < 0 {
            return Err(CUDA_ERROR_INVALID_DEVICE);
        }
        self.visible
            .get(ordinal as usize)
            .copied()
            .ok_or(CUDA_ERROR_INVALID_DEVICE)
    }

    pub fn info(&self, ordinal: CUdevice) -> Res<&DeviceInfo> {
        let p = self.phys(ordinal)?;
        self.shm
            .devices()
            .get(p as usize)
            .ok_or(CUDA_ERROR_INVALID_DEVICE)
    }

    /// CUDA ordinal of a physical index, if visible.
    pub fn ordinal_of(&self, phys: u32) -> Option<CUdevice> {
        self.visible
            .iter()
            .position(|&p| p == phys)
            .map(|i| i as CUdevice)
    }

    /// Runs `f` under the machine-wide lock.
    pub fn with_state<T>(
        &self,
        f: impl FnOnce(&mut vgpu_sim_core::state::Guard<'_>) -> T,
    ) -> Res<T> {
        let mut g = self.shm.lock().map_err(|m| {
            eprintln!("{m}");
            CUDA_ERROR_UNKNOWN
        })?;
        Ok(f(&mut g))
    }
}

// ---- objects --------------------------------------------------------------------------

#[derive(Default)]
pub struct Ctx {
    pub ordinal: AtomicI32,
    pub dev: AtomicU32,
    pub flags: AtomicU32,
    pub primary: AtomicBool,
    /// Unique id of the live incarnation (0: destroyed / inactive primary).
    pub instance: AtomicU64,
    /// End of the latest work submitted in this context.
    pub last_end: AtomicU64,
    pub pending_host: AtomicU32,
    pub limits: Mutex<[usize; 7]>,
    /// Module bytes currently charged for this context's modules.
    pub module_bytes: AtomicU64,
    pub modules: AtomicU32,
}

#[derive(Default)]
pub struct Module {
    pub ctx: AtomicU64,
    pub inst: AtomicU64,
    /// Kernels a PTX image declares (None: any name, for binary or unknown images).
    pub entries: Mutex<Option<Vec<String>>>,
    pub funcs: Mutex<HashMap<String, u64>>,
    /// (globals region base, name -> offset)
    pub globals: Mutex<(u64, HashMap<String, u64>)>,
}

#[derive(Default)]
pub struct Func {
    pub module: AtomicU64,
    pub ctx: AtomicU64,
    pub inst: AtomicU64,
    pub attrs: Mutex<HashMap<u32, i32>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Node {
    /// The kernel (kept for inspection; the cost depends only on the grid).
    #[allow(dead_code)]
    pub func: u64,
    pub blocks: u64,
}

#[derive(Default)]
pub struct Stream {
    pub ctx: AtomicU64,
    pub inst: AtomicU64,
    pub flags: AtomicU32,
    pub priority: AtomicI32,
    pub last_end: AtomicU64,
    /// Not before this time (cross-device event waits).
    pub wait_until: AtomicU64,
    pub pending_host: AtomicU32,
    pub capturing: AtomicBool,
    pub captured: Mutex<Vec<Node>>,
}

#[derive(Default)]
pub struct Event {
    pub ctx: AtomicU64,
    pub inst: AtomicU64,
    pub flags: AtomicU32,
    /// Completion time of the recorded work; 0 = never recorded.
    pub time: AtomicU64,
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Mutex<Vec<Node>>,
    /// Device pointers of the graph's memory-allocation nodes: the simulator allocates them
    /// when the node is added (the real driver reserves them then and backs them at the
    /// first launch) and frees those still live when the graph is destroyed.
    pub allocs: Mutex<Vec<u64>>,
}

#[derive(Default)]
pub struct Exec {
    pub nodes: Mutex<Vec<Node>>,
}

#[derive(Default)]
pub struct Pool {
    pub ordinal: AtomicI32,
    pub dev: AtomicU32,
    pub is_default: AtomicBool,
    pub used: AtomicU64,
    pub high: AtomicU64,
    pub threshold: AtomicU64,
    pub reuse: [AtomicU64; 3],
}

pub static CTXS: HandleTable<Ctx> = HandleTable::new(0x11);
pub static MODULES: HandleTable<Module> = HandleTable::new(0x12);
pub static FUNCS: HandleTable<Func> = HandleTable::new(0x13);
pub static STREAMS: HandleTable<Stream> = HandleTable::new(0x14);
pub static EVENTS: HandleTable<Event> = HandleTable::new(0x15);
pub static GRAPHS: HandleTable<Graph> = HandleTable::new(0x16);
pub static EXECS: HandleTable<Exec> = HandleTable::new(0x17);
pub static POOLS: HandleTable<Pool> = HandleTable::new(0x18);

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

pub fn new_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

pub fn new_node_handle() -> u64 {
    (0x19u64 << 48) | NEXT_NODE.fetch_add(1, Ordering::Relaxed)
}

/// Default limits: stack, printf FIFO, malloc heap, sync depth, pending launches,
/// L2 fetch granularity, persisting L2.
pub const DEFAULT_LIMITS: [usize; 7] = [1024, 1 << 20, 8 << 20, 2, 2048, 32, 0];

// ---- per-thread context stack -----------------------------------------------------------

thread_local! {
    static CUR: Cell<u64> = const { Cell::new(0) };
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Handle of the calling thread's current context (0: none).
#[inline]
pub fn current_handle() -> u64 {
    CUR.with(|c| c.get())
}

fn sync_top(stack: &[u64]) {
    CUR.with(|c| c.set(stack.last().copied().unwrap_or(0)));
}

pub fn push_ctx(h: u64) {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        s.push(h);
        sync_top(&s);
    });
}

pub fn pop_ctx() -> u64 {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        let h = s.pop().unwrap_or(0);
        sync_top(&s);
        h
    })
}

/// `cuCtxSetCurrent`: replaces the top (or pushes onto an empty stack); 0 pops.
pub fn set_ctx(h: u64) {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        if h == 0 {
            s.pop();
        } else if let Some(top) = s.last_mut() {
            *top = h;
        } else {
            s.push(h);
        }
        sync_top(&s);
    });
}

/// Removes a destroyed context from the calling thread's stack.
pub fn forget_ctx(h: u64) {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        if s.last() == Some(&h) {
            s.pop();
        }
        sync_top(&s);
    });
}

/// A live (active) context by handle.
#[inline]
pub fn ctx_obj(h: u64) -> Res<(&'static Ctx, u64)> {
    let c = CTXS.get(h).ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
    let inst = c.instance.load(Ordering::Acquire);
    if inst == 0 {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    Ok((c, inst))
}

/// The calling thread's current context: `(handle, object, instance)`.
#[inline]
pub fn cur_ctx() -> Res<(u64, &'static Ctx, u64)> {
    let h = current_handle();
    if h == 0 {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    let (c, inst) = ctx_obj(h)?;
    Ok((h, c, inst))
}

/// Whether an object created in context incarnation `inst` of `ctx` is still valid.
#[inline]
pub fn ctx_alive(ctx: u64, inst: u64) -> bool {
    CTXS.get(ctx)
        .is_some_and(|c| c.instance.load(Ordering::Acquire) == inst)
}

/// A stream argument: `None` for the NULL / legacy / per-thread default stream.
#[inline]
pub fn stream_obj(h: CUstream) -> Res<Option<&'static Stream>> {
    let v = h as u64;
    if v <= 2 {
        return Ok(None);
    }
    let s = STREAMS.get(v).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if !ctx_alive(
        s.ctx.load(Ordering::Relaxed),
        s.inst.load(Ordering::Relaxed),
    ) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    Ok(Some(s))
}

/// Sleeps until `end`, then until the given host-function counters drain.
pub fn wait_for(end: u64, pending: &[&AtomicU32]) {
    clock::sleep_until(end);
    let mut spins = 0u32;
    while pending.iter().any(|p| p.load(Ordering::Acquire) > 0) {
        std::thread::sleep(std::time::Duration::from_micros(if spins < 100 {
            20
        } else {
            500
        }));
        spins = spins.saturating_add(1);
    }
}

// ---- local memory ----------------------------------------------------------------------

/// A device-visible allocation of this process, keyed by the pointer the user holds.
#[derive(Debug, Clone, Copy)]
pub struct LocalAlloc {
    /// Base of the entry in the shared table.
    pub shm_base: u64,
    pub bytes: u64,
    pub span: u64,
    pub ordinal: CUdevice,
    pub ctx: u64,
    pub inst: u64,
    pub kind: u8,
    /// Host backing of managed memory: (address, mapped length).
    pub host: Option<(usize, usize)>,
    pub pool: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct HostRec {
    pub len: usize,
    /// Registered user memory (not ours to unmap).
    pub registered: bool,
    pub ctx: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Reserve {
    pub size: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub size: u64,
    pub handle: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct VmmHandle {
    pub size: u64,
    pub dev: u32,
    /// References held by the user: the creation plus each cuMemRetainAllocationHandle.
    pub refs: u32,
    /// Live mappings of the handle.
    pub maps: u32,
    pub prop: CUmemAllocationProp,
}

// SAFETY: the only pointer inside (win32HandleMetaData) is never dereferenced.
unsafe impl Send for VmmHandle {}
// SAFETY: as for `Send`: the pointer is plain data here, never dereferenced.
unsafe impl Sync for VmmHandle {}

#[derive(Debug, Clone, Copy)]
pub struct ArrayRec {
    pub inst: u64,
    pub mipmap: bool,
    /// Device memory the array occupies (what `cuArrayGetMemoryRequirements` reports).
    pub span: u64,
}

#[derive(Default)]
pub struct LocalMem {
    pub allocs: BTreeMap<u64, LocalAlloc>,
    pub hosts: BTreeMap<u64, HostRec>,
    pub reserves: BTreeMap<u64, Reserve>,
    pub maps: BTreeMap<u64, Mapping>,
    pub handles: HashMap<u64, VmmHandle>,
    pub arrays: HashMap<u64, ArrayRec>,
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

    pub fn find_reserve(&self, addr: u64) -> Option<(u64, Reserve)> {
        containing(&self.reserves, addr, |r| r.size)
    }

    /// Resolves a device-side range of `len` bytes at `addr`. With `generic`, unknown
    /// addresses outside the fake device ranges are taken as pageable host memory.
    pub fn resolve(&self, addr: u64, len: u64, generic: bool, ndev: u32) -> Res<Loc> {
        let alloc = self
            .find_alloc(addr)
            .map(|(k, a)| Mapped::allocation(k, a.bytes, a.host, a.shm_base, a.span));
        let map = self.find_map(addr).map(|(k, m)| {
            let handle_size = self.handles.get(&m.handle).map(|h| h.size).unwrap_or(0);
            Mapped::mapping(k, m.size, m.handle, handle_size, m.offset)
        });
        let host = self
            .find_host(addr)
            .map(|(k, h)| Mapped::host(k, h.len as u64));
        shadow::resolve(addr, len, [alloc, map, host], generic, ndev)
            .ok_or(CUDA_ERROR_INVALID_VALUE)
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

    /// Fills `count` elements of `pattern` (1 or 4 bytes) at a location.
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `count * pattern.len()` bytes.
    pub unsafe fn fill(&mut self, loc: Loc, pattern: &[u8], count: usize) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.shadows.fill(loc, pattern, count) }
    }
}
