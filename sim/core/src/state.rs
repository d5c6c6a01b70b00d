//! The machine-wide state file: devices, processes, allocations and the device timeline,
//! mmap'ed by every process that uses the simulated GPU and guarded by one robust,
//! process-shared mutex (a process killed while holding it does not stall the others).
//!
//! The file is created race-free: a temporary file is fully initialised, then `link`ed into
//! place (losers of the race open the winner's file). A file with the wrong magic, version,
//! size or layout is refused with one clear message; callers then behave as "no device".

use crate::alloc::{self, find_row, kind, AllocEntry, Table, TableError};
use crate::config::{SimConfig, MAX_DEVICES};
use crate::ids;
use crate::procfs;
use crate::timeline::{self, Interval, Ring, RingView};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::{addr_of, addr_of_mut};

/// File magic ("VGPUSIM\0" little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"VGPUSIM\0");
/// Layout version; bump on any change of the structs below.
pub const VERSION: u32 = 1;
/// Process-table slots.
pub const MAX_PROCS: usize = 1024;
/// Live allocations, all devices together.
pub const MAX_ALLOCS: usize = 65536;
/// Busy intervals kept per device.
pub const RING_LEN: usize = 8192;
/// Least time between two liveness sweeps triggered by queries.
pub const SWEEP_INTERVAL_NS: u64 = 100_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct SpecRaw {
    name: [u8; 96],
    key: [u8; 32],
    mem_bytes: u64,
    sms: u32,
    threads_per_sm: u32,
    cc_major: u32,
    cc_minor: u32,
    clock_khz: u32,
    mem_clock_khz: u32,
    bus_width: u32,
    l2_bytes: u32,
    smem_per_sm: u32,
    smem_optin: u32,
    pci_device_id: u32,
    pci_subsystem_id: u32,
    power_w: u32,
    _pad: u32,
}

/// The start of the file: identification, written once by the creator before it publishes
/// the file, and the machine-wide lock. While the file is shared, no reference ever covers
/// this part (every locker writes the mutex): it is read and locked through raw places.
#[repr(C)]
struct Prefix {
    magic: u64,
    version: u32,
    init_done: u32,
    total_size: u64,
    layout: u64,
    mutex: libc::pthread_mutex_t,
    _mutex_pad: [u8; 24],
}

/// The rest of the header (right after [`Prefix`], no padding between: see `Region`).
#[repr(C)]
struct Header {
    ndev: u32,
    creator_pid: u32,
    created_real_ns: u64,
    last_sweep_ns: u64,
    alloc_len: u64,
    generation: u64,
    spec: SpecRaw,
    /// The machine's pid namespace (nsfs inode): the pids of the process table are in it.
    machine_pidns: u64,
    /// Non-zero once a process exited leaving its memory to be freed when it is gone
    /// (`VGPU_SIM_FREE_AT_CLOSE`): from then on every charge first drops gone processes.
    free_at_close: u64,
    _reserved: [u64; 30],
}

#[repr(C)]
struct DevState {
    uuid: [u8; 16],
    pci_bus: u32,
    _pad: u32,
    total: u64,
    used: u64,
    busy_until: u64,
    busy_total: u64,
    kernels: u64,
    ring_head: u32,
    ring_len: u32,
    _reserved: [u64; 8],
    ring: [Interval; RING_LEN],
}

/// One process's usage of one device.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcUsage {
    pub ctx_bytes: u64,
    pub module_bytes: u64,
    /// Charged bytes of all allocations (every kind).
    pub data_bytes: u64,
    pub busy_ns: u64,
    pub kernels: u64,
    pub ctx_count: u32,
    pub module_count: u32,
}

impl ProcUsage {
    /// Everything this process holds on the device.
    pub fn total(&self) -> u64 {
        self.ctx_bytes + self.module_bytes + self.data_bytes
    }
}

#[repr(C)]
struct ProcSlot {
    pid: u32,
    /// 0 free, 1 in use.
    status: u32,
    start_time: u64,
    registered_real_ns: u64,
    comm: [u8; 16],
    usage: [ProcUsage; MAX_DEVICES],
}

/// Everything the lock guards: what a [`Guard`] hands out references to.
#[repr(C)]
struct Body {
    header: Header,
    devs: [DevState; MAX_DEVICES],
    procs: [ProcSlot; MAX_PROCS],
    allocs: [AllocEntry; MAX_ALLOCS],
    groups: Groups,
}

/// Process groups (e.g. the processes of one container), named by the `VGPU_SIM_GROUP`
/// each process had at `cuInit`.
pub const MAX_GROUPS: usize = 64;
/// Longest group name kept (bytes, NUL excluded).
pub const GROUP_NAME_LEN: usize = 119;

/// Ground truth per group of processes: what all of them hold together on each device
/// now, and the most they ever held at once (updated under the lock at every change, so
/// no transient escapes it). Groups outlive their processes, so a test can read the
/// high-water mark after everything exited.
#[repr(C)]
struct GroupSlot {
    name: [u8; GROUP_NAME_LEN + 1],
    /// Processes registered with this group so far.
    members: u64,
    used: [u64; MAX_DEVICES],
    high_water: [u64; MAX_DEVICES],
}

#[repr(C)]
struct Groups {
    /// Group of each process slot: 0 none, else group index + 1.
    of_slot: [u32; MAX_PROCS],
    len: u32,
    _pad: u32,
    slots: [GroupSlot; MAX_GROUPS],
}

/// The whole file. The split into prefix and body changes no offset: the prefix's size is a
/// multiple of the body's alignment, so the body follows it without padding (checked here).
#[repr(C)]
struct Region {
    prefix: Prefix,
    body: Body,
}

const _: () = assert!(
    std::mem::offset_of!(Region, body) == std::mem::size_of::<Prefix>()
        && std::mem::size_of::<Prefix>().is_multiple_of(std::mem::align_of::<Body>())
        && std::mem::size_of::<Region>()
            == std::mem::size_of::<Prefix>() + std::mem::size_of::<Body>()
);

/// Size of the state file.
pub const STATE_SIZE: usize = std::mem::size_of::<Region>();

fn layout_signature() -> u64 {
    use std::mem::size_of;
    let parts = [
        // the header as one part (prefix and rest), as before the split
        size_of::<Prefix>() + size_of::<Header>(),
        size_of::<DevState>(),
        size_of::<ProcSlot>(),
        size_of::<AllocEntry>(),
        size_of::<Interval>(),
        MAX_DEVICES,
        MAX_PROCS,
        MAX_ALLOCS,
        RING_LEN,
        size_of::<Groups>(),
    ];
    parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &p| {
        (h ^ p as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Static description of one device, read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub model_key: String,
    pub total_mem: u64,
    pub uuid: [u8; 16],
    pub uuid_str: String,
    pub pci_bus: u32,
    pub pci_bus_id: String,
    pub pci_bus_id_legacy: String,
    pub sms: u32,
    pub threads_per_sm: u32,
    pub cc_major: u32,
    pub cc_minor: u32,
    pub clock_khz: u32,
    pub mem_clock_khz: u32,
    pub bus_width: u32,
    pub l2_bytes: u32,
    pub smem_per_sm: u32,
    pub smem_optin: u32,
    pub pci_device_id: u32,
    pub pci_subsystem_id: u32,
    pub power_w: u32,
}

/// Why the state could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No file at the path (only from [`SimState::open_existing`]).
    Missing,
    /// The file is not a state file of this version: the message says why.
    Mismatch(String),
    /// A system call failed.
    Io(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing => write!(f, "no state file"),
            OpenError::Mismatch(m) | OpenError::Io(m) => f.write_str(m),
        }
    }
}

/// Why a memory operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    OutOfMemory,
    /// The allocation table or address range is exhausted.
    NoSpace,
    BadDevice,
}

/// The state file path: `$VGPU_SIM_STATE`, else `/dev/shm/vgpu-sim-<uid>.state`.
pub fn default_state_path() -> PathBuf {
    match std::env::var_os("VGPU_SIM_STATE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        // SAFETY: getuid takes no arguments, cannot fail and touches no memory of ours.
        _ => PathBuf::from(format!("/dev/shm/vgpu-sim-{}.state", unsafe {
            libc::getuid()
        })),
    }
}

fn errno_str() -> String {
    std::io::Error::last_os_error().to_string()
}

fn cpath(p: &Path) -> Result<CString, OpenError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| OpenError::Io(format!("bad path {p:?}")))
}

fn copy_str(dst: &mut [u8], s: &str) {
    let n = s.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    dst[n..].fill(0);
}

fn read_str(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// A mapped state file.
pub struct SimState {
    ptr: *mut Region,
    path: PathBuf,
    devices: Vec<DeviceInfo>,
    /// The calling process as the machine knows it (host pid).
    caller: procfs::Caller,
    /// Liveness test used by sweeps (replaceable in tests).
    pub liveness: fn(u32, u64) -> bool,
}

// SAFETY: the region is only mutated under the process-shared mutex (through a `Guard`),
// and what is read without it (devices, namespace) is fixed at creation; the other fields
// are owned values.
unsafe impl Send for SimState {}
// SAFETY: as for `Send`: shared `&SimState` only reads immutable data or takes the lock.
unsafe impl Sync for SimState {}

impl Drop for SimState {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from our mmap.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, STATE_SIZE) };
    }
}

impl SimState {
    /// Opens the state at `path`, creating it from `cfg` when it does not exist yet.
    pub fn open_or_create(path: &Path, cfg: &SimConfig) -> Result<SimState, OpenError> {
        for _ in 0..5 {
            match Self::open_existing(path) {
                Err(OpenError::Missing) => create_file(path, cfg)?,
                other => return other,
            }
        }
        Err(OpenError::Io(format!(
            "{}: keeps disappearing while being opened",
            path.display()
        )))
    }

    /// Opens an existing state file (never creates one).
    pub fn open_existing(path: &Path) -> Result<SimState, OpenError> {
        let c = cpath(path)?;
        // SAFETY: plain syscalls on a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Err(OpenError::Missing);
            }
            return Err(OpenError::Io(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
        let res = map_and_check(fd, path);
        // SAFETY: `fd` is the descriptor opened above, closed once; the mapping outlives it.
        unsafe { libc::close(fd) };
        let ptr = res?;
        // SAFETY: mapped and checked; the spec, device ids and namespace never change after
        // creation.
        let (devices, machine_pidns) =
            unsafe { (read_devices(ptr), (*ptr).body.header.machine_pidns) };
        let caller = match procfs::identify(machine_pidns) {
            Ok(c) => c,
            Err(m) => {
                // SAFETY: unmapping our own mapping; nothing refers to it.
                unsafe { libc::munmap(ptr as *mut libc::c_void, STATE_SIZE) };
                return Err(OpenError::Io(m));
            }
        };
        Ok(SimState {
            ptr,
            path: path.to_path_buf(),
            devices,
            caller,
            liveness: procfs::is_alive,
        })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The calling process in the machine's pid namespace (what NVML reports as its pid).
    pub fn caller(&self) -> procfs::Caller {
        self.caller
    }

    /// The devices of this machine (fixed when the file was created).
    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// Takes the machine-wide lock. A lock whose holder died is recovered and the state repaired.
    pub fn lock(&self) -> Result<Guard<'_>, String> {
        // SAFETY: the mutex lives in the mapped region and was initialised by the creator.
        let m = unsafe { addr_of_mut!((*self.ptr).prefix.mutex) };
        // SAFETY: `m` points at the initialised process-shared mutex of our live mapping; no
        // reference to the region exists here, the pthread call is its only accessor.
        let rc = unsafe { libc::pthread_mutex_lock(m) };
        let mut g = Guard {
            st: self,
            r: self.ptr,
        };
        match rc {
            0 => Ok(g),
            libc::EOWNERDEAD => {
                // SAFETY: we own the robust mutex (EOWNERDEAD hands it to us); marking it
                // consistent is the documented recovery, before any reference is made.
                unsafe { libc::pthread_mutex_consistent(m) };
                g.repair();
                Ok(g)
            }
            e => {
                std::mem::forget(g);
                Err(format!(
                    "vgpu-sim: cannot lock {}: {}",
                    self.path.display(),
                    std::io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

/// The devices described by a mapped region.
///
/// # Safety
/// `ptr` must point at a mapped, checked region (see `map_and_check`).
unsafe fn read_devices(ptr: *const Region) -> Vec<DeviceInfo> {
    // SAFETY: the caller passes a live checked mapping. Only fields written once before
    // `init_done` and never again are read (spec, device count, and per device its uuid, bus
    // and total), each through a place expression, so no reference covers the fields other
    // processes update (mutex, counters) and nothing races.
    let (s, ndev) = unsafe { (&(*ptr).body.header.spec, (*ptr).body.header.ndev) };
    let key = read_str(&s.key);
    (0..ndev.min(MAX_DEVICES as u32))
        .map(|i| {
            // SAFETY: as above; `i` < MAX_DEVICES indexes the fixed-size array in bounds.
            let (uuid, pci_bus, total) = unsafe {
                let d = addr_of!((*ptr).body.devs[i as usize]);
                ((*d).uuid, (*d).pci_bus, (*d).total)
            };
            DeviceInfo {
                index: i,
                name: read_str(&s.name),
                model_key: key.clone(),
                total_mem: total,
                uuid,
                uuid_str: ids::format_uuid(&uuid),
                pci_bus,
                pci_bus_id: ids::pci_bus_id(i),
                pci_bus_id_legacy: ids::pci_bus_id_legacy(i),
                sms: s.sms,
                threads_per_sm: s.threads_per_sm,
                cc_major: s.cc_major,
                cc_minor: s.cc_minor,
                clock_khz: s.clock_khz,
                mem_clock_khz: s.mem_clock_khz,
                bus_width: s.bus_width,
                l2_bytes: s.l2_bytes,
                smem_per_sm: s.smem_per_sm,
                smem_optin: s.smem_optin,
                pci_device_id: s.pci_device_id,
                pci_subsystem_id: s.pci_subsystem_id,
                power_w: s.power_w,
            }
        })
        .collect()
}

/// The identification fields of a mapped file, copied out for checking.
struct Ident {
    magic: u64,
    version: u32,
    init_done: u32,
    total_size: u64,
    layout: u64,
    ndev: u32,
}

fn map_and_check(fd: libc::c_int, path: &Path) -> Result<*mut Region, OpenError> {
    let mismatch = |why: &str| {
        OpenError::Mismatch(format!(
            "vgpu-sim: {} is not a usable vgpu-sim state file ({why}); remove it (vgpu-sim reset) \
             or point VGPU_SIM_STATE elsewhere; acting as a machine without GPUs",
            path.display()
        ))
    };
    // SAFETY: `stat` is plain C data for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable `stat`; fstat on a bad fd only returns an error.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(OpenError::Io(format!(
            "cannot stat {}: {}",
            path.display(),
            errno_str()
        )));
    }
    if (st.st_size as u64) < std::mem::size_of::<Prefix>() as u64 {
        return Err(mismatch(&format!("{} bytes, too small", st.st_size)));
    }
    if st.st_size as u64 != STATE_SIZE as u64 {
        return Err(mismatch(&format!(
            "{} bytes, expected {STATE_SIZE}",
            st.st_size
        )));
    }
    // SAFETY: mapping a regular file of the checked size.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STATE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(OpenError::Io(format!(
            "cannot map {}: {}",
            path.display(),
            errno_str()
        )));
    }
    let r = p as *mut Region;
    // SAFETY: the mapping is STATE_SIZE bytes, page-aligned, so a `Region` lies at its start.
    // Read without the lock, field by field through places (no reference covers the mutex
    // or the counters other processes update): the fields checked are written only by the
    // creator, before it publishes the file with `link`.
    let h = unsafe {
        let p = addr_of!((*r).prefix);
        Ident {
            magic: (*p).magic,
            version: (*p).version,
            init_done: (*p).init_done,
            total_size: (*p).total_size,
            layout: (*p).layout,
            ndev: (*r).body.header.ndev,
        }
    };
    let why = if h.magic != MAGIC {
        Some("bad magic".to_string())
    } else if h.version != VERSION {
        Some(format!(
            "layout version {}, this library reads {VERSION}",
            h.version
        ))
    } else if h.total_size != STATE_SIZE as u64 || h.layout != layout_signature() {
        Some("layout differs from this build".to_string())
    } else if h.init_done != 1 {
        Some("not initialised".to_string())
    } else if h.ndev as usize > MAX_DEVICES {
        Some(format!("{} devices", h.ndev))
    } else {
        None
    };
    if let Some(w) = why {
        // SAFETY: unmapping the mapping made above; `h` is not used after this.
        unsafe { libc::munmap(p, STATE_SIZE) };
        return Err(mismatch(&w));
    }
    Ok(r)
}

fn create_file(path: &Path, cfg: &SimConfig) -> Result<(), OpenError> {
    let machine_pidns = procfs::machine_pidns_for_new_state().map_err(OpenError::Io)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        crate::clock::mono_ns()
    ));
    let ctmp = cpath(&tmp)?;
    let cfinal = cpath(path)?;
    let io = |what: &str| {
        OpenError::Io(format!(
            "vgpu-sim: cannot {what} {}: {}",
            tmp.display(),
            errno_str()
        ))
    };
    // SAFETY: plain syscalls on NUL-terminated paths and on the descriptor opened here; the
    // new file is private to us (O_EXCL, a unique temporary name) until `link` publishes it,
    // so `init_region` is the only accessor of the fresh, zero-filled, STATE_SIZE mapping.
    unsafe {
        let fd = libc::open(
            ctmp.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o666,
        );
        if fd < 0 {
            return Err(io("create"));
        }
        libc::fchmod(fd, 0o666);
        let cleanup = |fd| {
            libc::close(fd);
            libc::unlink(ctmp.as_ptr());
        };
        if libc::ftruncate(fd, STATE_SIZE as libc::off_t) != 0 {
            let e = io("size");
            cleanup(fd);
            return Err(e);
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            STATE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            let e = io("map");
            cleanup(fd);
            return Err(e);
        }
        init_region(p as *mut Region, cfg, machine_pidns);
        libc::munmap(p, STATE_SIZE);
        libc::close(fd);
        let rc = libc::link(ctmp.as_ptr(), cfinal.as_ptr());
        let err = std::io::Error::last_os_error();
        libc::unlink(ctmp.as_ptr());
        if rc != 0 && err.raw_os_error() != Some(libc::EEXIST) {
            return Err(OpenError::Io(format!(
                "vgpu-sim: cannot publish {}: {err}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Initialises a zero-filled region.
///
/// # Safety
/// `r` must point at a writable, zero-filled mapping of STATE_SIZE bytes that no other
/// process or thread can reach yet.
unsafe fn init_region(r: *mut Region, cfg: &SimConfig, machine_pidns: u64) {
    // SAFETY: the caller's contract: the region is ours alone, so these `&mut`s to its
    // prefix and header (and below, to its devices: disjoint fields) are unique.
    let (pre, h) = unsafe { (&mut (*r).prefix, &mut (*r).body.header) };
    pre.magic = MAGIC;
    pre.version = VERSION;
    pre.total_size = STATE_SIZE as u64;
    pre.layout = layout_signature();
    // SAFETY: a zeroed attribute object is then initialised by pthread_mutexattr_init before
    // use; the mutex lies in our private mapping and is initialised exactly once, before
    // the file is published.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        libc::pthread_mutex_init(addr_of_mut!(pre.mutex), &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    h.ndev = cfg.devices.min(MAX_DEVICES as u32);
    h.creator_pid = std::process::id();
    h.machine_pidns = machine_pidns;
    h.created_real_ns = crate::clock::real_ns();
    let m = cfg.model;
    let s = &mut h.spec;
    copy_str(&mut s.name, m.name);
    copy_str(&mut s.key, m.key);
    s.mem_bytes = cfg.mem_bytes;
    s.sms = m.sms;
    s.threads_per_sm = m.threads_per_sm;
    s.cc_major = m.cc_major;
    s.cc_minor = m.cc_minor;
    s.clock_khz = m.clock_khz;
    s.mem_clock_khz = m.mem_clock_khz;
    s.bus_width = m.bus_width;
    s.l2_bytes = m.l2_bytes;
    s.smem_per_sm = m.smem_per_sm;
    s.smem_optin = m.smem_optin;
    s.pci_device_id = m.pci_device_id;
    s.pci_subsystem_id = m.pci_subsystem_id;
    s.power_w = m.power_w;
    for i in 0..h.ndev {
        // SAFETY: as above; `devs` is disjoint from the header `h` borrows, `i` < MAX_DEVICES.
        let d = unsafe { &mut (*r).body.devs[i as usize] };
        d.uuid = ids::uuid_bytes(m.key, i);
        d.pci_bus = ids::pci_bus(i);
        d.total = cfg.mem_bytes;
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: as above; `pre` is no longer used, so this write aliases no live reference.
    unsafe { (*r).prefix.init_done = 1 };
}

/// A request for [`Guard::alloc`].
#[derive(Debug, Clone, Copy)]
pub struct AllocReq {
    pub slot: u32,
    pub dev: u32,
    pub kind: u8,
    /// Bytes asked for.
    pub bytes: u64,
    /// Address range to occupy (>= bytes).
    pub span: u64,
    pub align: u64,
    /// Bytes counted against the device.
    pub charged: u64,
    pub ctx: u64,
    pub aux: u64,
    /// Allocate in the "physical" half (VMM handles) instead of the address half.
    pub phys: bool,
    /// Wanted address (honoured when free, else first fit).
    pub fixed: Option<u64>,
}

/// One process on one device, as NVML lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcMem {
    pub pid: u32,
    pub slot: u32,
    pub usage: ProcUsage,
}

/// Everything the status report shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub path: PathBuf,
    pub version: u32,
    pub creator_pid: u32,
    pub devices: Vec<DevSnap>,
    pub procs: Vec<ProcSnap>,
    pub allocations: usize,
    pub groups: Vec<GroupSnap>,
}

/// One group's ground truth, per device index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnap {
    pub name: String,
    pub members: u64,
    pub used: Vec<u64>,
    pub high_water: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct DevSnap {
    pub info: DeviceInfo,
    pub used: u64,
    pub busy_total_ns: u64,
    pub kernels: u64,
    pub util_1s: u32,
}

#[derive(Debug, Clone)]
pub struct ProcSnap {
    pub slot: u32,
    pub pid: u32,
    pub comm: String,
    pub alive: bool,
    /// `(device, usage, charged bytes by kind in kind::ALL order, allocation count)`.
    pub devices: Vec<(u32, ProcUsage, [u64; 10], u64)>,
}

/// The allocation table over a region's storage.
fn region_table(r: &mut Body) -> Table<'_> {
    Table::new(&mut r.allocs, &mut r.header.alloc_len)
}

/// The busy-interval ring of a device, read-only.
fn dev_ring(d: &DevState) -> RingView<'_> {
    RingView::new(&d.ring, d.ring_head, d.ring_len)
}

/// The locked state. Dropping it unlocks.
pub struct Guard<'a> {
    st: &'a SimState,
    r: *mut Region,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: we hold the lock.
        unsafe { libc::pthread_mutex_unlock(addr_of_mut!((*self.r).prefix.mutex)) };
    }
}

impl Guard<'_> {
    /// The locked state, read-only. Shared borrows of the guard only ever make shared
    /// references, so any number of them may coexist.
    fn reg(&self) -> &Body {
        // SAFETY: `r` is our live mapping of the whole region (it outlives the guard). We hold
        // the machine-wide lock, so no other process or thread writes the body while this
        // guard lives; no `&mut Body` can exist while `self` is borrowed shared (see
        // `reg_mut`); and the reference covers the body only, not the prefix's mutex, which
        // other lockers do write meanwhile.
        unsafe { &(*self.r).body }
    }

    /// The locked state, writable. Taking `&mut self` makes it the only reference to the
    /// body derived from this guard for as long as it lives.
    fn reg_mut(&mut self) -> &mut Body {
        // SAFETY: as for `reg`: the lock excludes every other writer of the body, the mutex
        // lies outside it, and the exclusive borrow of the guard excludes every other
        // reference made through it, so this one is unique.
        unsafe { &mut (*self.r).body }
    }

    /// The allocation table, writable.
    fn table(&mut self) -> Table<'_> {
        region_table(self.reg_mut())
    }

    /// The live allocation rows, sorted by base (the stored length clamped to the storage
    /// the same way [`Table::new`] clamps it, without writing it back).
    fn rows(&self) -> &[AllocEntry] {
        let r = self.reg();
        &r.allocs[..(r.header.alloc_len as usize).min(r.allocs.len())]
    }

    fn ndev(&self) -> u32 {
        self.reg().header.ndev
    }

    fn dev_ok(&self, dev: u32) -> bool {
        dev < self.ndev()
    }

    fn slot_ok(&self, slot: u32) -> bool {
        (slot as usize) < MAX_PROCS && self.reg().procs[slot as usize].status == 1
    }

    /// Recomputes derived counters from the allocation table after a crash under the lock.
    fn repair(&mut self) {
        let r = self.reg_mut();
        region_table(r).repair();
        for p in r.procs.iter_mut() {
            for u in p.usage.iter_mut() {
                u.data_bytes = 0;
            }
        }
        let n = r.header.alloc_len as usize;
        for e in &r.allocs[..n] {
            if (e.slot as usize) < MAX_PROCS && (e.dev as usize) < MAX_DEVICES {
                r.procs[e.slot as usize].usage[e.dev as usize].data_bytes += e.charged;
            }
        }
        for d in 0..MAX_DEVICES {
            let used: u64 = r
                .procs
                .iter()
                .filter(|p| p.status == 1)
                .map(|p| p.usage[d].total())
                .sum();
            r.devs[d].used = used;
        }
        r.header.generation += 1;
        self.recompute_groups();
    }

    /// Group usage from the process table (after a repair).
    fn recompute_groups(&mut self) {
        let r = self.reg_mut();
        let g = &mut r.groups;
        for slot in g.slots.iter_mut() {
            slot.used = [0; MAX_DEVICES];
        }
        for (i, p) in r.procs.iter().enumerate() {
            let gi = g.of_slot[i] as usize;
            if p.status != 1 || gi == 0 || gi > MAX_GROUPS {
                continue;
            }
            for d in 0..MAX_DEVICES {
                g.slots[gi - 1].used[d] += p.usage[d].total();
            }
        }
        for slot in g.slots.iter_mut() {
            for d in 0..MAX_DEVICES {
                slot.high_water[d] = slot.high_water[d].max(slot.used[d]);
            }
        }
    }

    /// What `slot` holds on `dev` changed by `delta` bytes: its group's figure follows,
    /// and the group's high-water mark with it.
    fn group_delta(&mut self, slot: u32, dev: usize, delta: i64) {
        let g = &mut self.reg_mut().groups;
        let Some(&gi) = g.of_slot.get(slot as usize) else {
            return;
        };
        if gi == 0 || gi as usize > MAX_GROUPS || dev >= MAX_DEVICES || delta == 0 {
            return;
        }
        let e = &mut g.slots[gi as usize - 1];
        e.used[dev] = if delta > 0 {
            e.used[dev].saturating_add(delta as u64)
        } else {
            e.used[dev].saturating_sub(delta.unsigned_abs())
        };
        e.high_water[dev] = e.high_water[dev].max(e.used[dev]);
    }

    /// Puts process `slot` in the group `name` (created on first use). Call right after
    /// registering, before the process holds anything. Returns false when the group table
    /// is full (the process then belongs to no group).
    pub fn set_group(&mut self, slot: u32, name: &str) -> bool {
        if slot as usize >= MAX_PROCS || name.is_empty() {
            return false;
        }
        let g = &mut self.reg_mut().groups;
        let mut key = [0u8; GROUP_NAME_LEN + 1];
        copy_str(&mut key, name);
        let len = (g.len as usize).min(MAX_GROUPS);
        let index = match g.slots[..len].iter().position(|e| e.name == key) {
            Some(i) => i,
            None if len < MAX_GROUPS => {
                let e = &mut g.slots[len];
                e.name = key;
                e.members = 0;
                e.used = [0; MAX_DEVICES];
                e.high_water = [0; MAX_DEVICES];
                g.len = len as u32 + 1;
                len
            }
            None => return false,
        };
        g.slots[index].members += 1;
        g.of_slot[slot as usize] = index as u32 + 1;
        true
    }

    /// Registers (or finds) the calling process; returns its slot.
    pub fn register(&mut self, pid: u32, start_time: u64, comm: &str) -> Result<u32, String> {
        let r = self.reg_mut();
        let mut free = None;
        let mut stale = Vec::new();
        for (i, p) in r.procs.iter().enumerate() {
            if p.status == 1 && p.pid == pid {
                if p.start_time == start_time {
                    return Ok(i as u32);
                }
                stale.push(i as u32);
            } else if p.status == 0 && free.is_none() {
                free = Some(i as u32);
            }
        }
        for s in stale {
            self.cleanup_slot(s);
            free = free.or(Some(s));
        }
        if free.is_none() {
            self.sweep(crate::clock::mono_ns(), 0);
            free = self
                .reg()
                .procs
                .iter()
                .position(|p| p.status == 0)
                .map(|i| i as u32);
        }
        let s =
            free.ok_or_else(|| format!("vgpu-sim: all {MAX_PROCS} process slots are in use"))?;
        let r = self.reg_mut();
        let p = &mut r.procs[s as usize];
        p.pid = pid;
        p.start_time = start_time;
        p.registered_real_ns = crate::clock::real_ns();
        copy_str(&mut p.comm, comm);
        p.usage = [ProcUsage::default(); MAX_DEVICES];
        p.status = 1;
        r.groups.of_slot[s as usize] = 0;
        r.header.generation += 1;
        Ok(s)
    }

    /// Registers a new program image of the calling process. An entry with the same pid and
    /// start time belongs to an image that `exec` replaced: the driver freed its device
    /// memory then (its descriptors are close-on-exec), so it is cleaned up first.
    pub fn register_image(&mut self, pid: u32, start_time: u64, comm: &str) -> Result<u32, String> {
        let former: Vec<u32> = self
            .reg()
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status == 1 && p.pid == pid && p.start_time == start_time)
            .map(|(i, _)| i as u32)
            .collect();
        for s in former {
            self.cleanup_slot(s);
        }
        self.register(pid, start_time, comm)
    }

    /// Releases the slot of process `pid` (normal exit) if it still is that process's.
    pub fn unregister(&mut self, slot: u32, pid: u32) {
        if (slot as usize) < MAX_PROCS {
            let p = &self.reg().procs[slot as usize];
            if p.status == 1 && p.pid == pid {
                self.cleanup_slot(slot);
            }
        }
    }

    /// Frees everything a process slot holds and releases the slot.
    pub fn cleanup_slot(&mut self, slot: u32) {
        if slot as usize >= MAX_PROCS {
            return;
        }
        let r = self.reg_mut();
        region_table(r).remove_where(|e| e.slot as u32 == slot, |_| {});
        let p = &mut r.procs[slot as usize];
        let mut held = [0u64; MAX_DEVICES];
        if p.status == 1 {
            for (d, u) in p.usage.iter().enumerate() {
                r.devs[d].used = r.devs[d].used.saturating_sub(u.total());
                held[d] = u.total();
            }
        }
        let p = &mut r.procs[slot as usize];
        p.status = 0;
        p.pid = 0;
        p.usage = [ProcUsage::default(); MAX_DEVICES];
        r.header.generation += 1;
        for (d, bytes) in held.into_iter().enumerate() {
            self.group_delta(slot, d, -(bytes as i64));
        }
    }

    /// Drops processes that are gone (exited, zombie, or pid reused), freeing their memory
    /// "as the driver does at teardown". Runs at most once per `min_interval_ns` (0: always).
    /// Returns the number of processes dropped.
    pub fn sweep(&mut self, now: u64, min_interval_ns: u64) -> usize {
        let alive = self.st.liveness;
        let r = self.reg_mut();
        if min_interval_ns > 0
            && r.header.last_sweep_ns != 0
            && now.saturating_sub(r.header.last_sweep_ns) < min_interval_ns
        {
            return 0;
        }
        r.header.last_sweep_ns = now;
        let dead: Vec<u32> = r
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status == 1 && !alive(p.pid, p.start_time))
            .map(|(i, _)| i as u32)
            .collect();
        for &s in &dead {
            self.cleanup_slot(s);
        }
        dead.len()
    }

    /// At normal exit, leaves the process's memory held until the process is gone (a
    /// driver that frees what an exiting process holds when the kernel closes its device
    /// files, after every exit handler and destructor): it is freed by the first charge
    /// anyone makes once the process no longer exists or is a zombie — before that charge
    /// counts, so the ground truth never holds both.
    pub fn hold_until_gone(&mut self) {
        self.reg_mut().header.free_at_close = 1;
    }

    fn check_capacity(&mut self, dev: u32, bytes: u64) -> Result<(), MemError> {
        if bytes == 0 {
            return Ok(());
        }
        if self.reg().header.free_at_close != 0 {
            self.sweep(crate::clock::mono_ns(), 0);
        }
        let fits = |g: &Self| {
            let d = &g.reg().devs[dev as usize];
            d.used.checked_add(bytes).is_some_and(|u| u <= d.total)
        };
        if fits(self) {
            return Ok(());
        }
        // Dead processes may still hold memory: reclaim before failing.
        if self.sweep(crate::clock::mono_ns(), 0) > 0 && fits(self) {
            return Ok(());
        }
        Err(MemError::OutOfMemory)
    }

    /// Adds (or with negative deltas removes) context/module charges of a process.
    pub fn charge(
        &mut self,
        slot: u32,
        dev: u32,
        ctx_bytes: i64,
        module_bytes: i64,
        ctx_count: i32,
        module_count: i32,
    ) -> Result<(), MemError> {
        if !self.dev_ok(dev) || !self.slot_ok(slot) {
            return Err(MemError::BadDevice);
        }
        let add = ctx_bytes.max(0) as u64 + module_bytes.max(0) as u64;
        self.check_capacity(dev, add)?;
        let r = self.reg_mut();
        let u = &mut r.procs[slot as usize].usage[dev as usize];
        let apply = |v: u64, d: i64| {
            if d >= 0 {
                v + d as u64
            } else {
                v.saturating_sub(d.unsigned_abs())
            }
        };
        let before = u.total();
        u.ctx_bytes = apply(u.ctx_bytes, ctx_bytes);
        u.module_bytes = apply(u.module_bytes, module_bytes);
        u.ctx_count = (u.ctx_count as i64 + ctx_count as i64).max(0) as u32;
        u.module_count = (u.module_count as i64 + module_count as i64).max(0) as u32;
        let after = u.total();
        let d = &mut r.devs[dev as usize];
        d.used = (d.used + after).saturating_sub(before);
        r.header.generation += 1;
        self.group_delta(slot, dev as usize, after as i64 - before as i64);
        Ok(())
    }

    /// Allocates a range and charges it. Returns the base address.
    pub fn alloc(&mut self, q: &AllocReq) -> Result<u64, MemError> {
        if !self.dev_ok(q.dev) || !self.slot_ok(q.slot) {
            return Err(MemError::BadDevice);
        }
        self.check_capacity(q.dev, q.charged)?;
        let (lo, hi) = if q.phys {
            alloc::phys_range(q.dev)
        } else {
            alloc::va_range(q.dev)
        };
        let r = self.reg_mut();
        let pid = r.procs[q.slot as usize].pid;
        let e = AllocEntry {
            base: 0,
            span: q.span.max(1),
            bytes: q.bytes,
            charged: q.charged,
            ctx: q.ctx,
            aux: q.aux,
            pid,
            slot: q.slot as u16,
            dev: q.dev as u8,
            kind: q.kind,
        };
        let mut t = region_table(r);
        let placed = match q.fixed {
            Some(a)
                if a >= lo
                    && a.checked_add(e.span).is_some_and(|x| x <= hi)
                    && a % q.align == 0
                    && t.is_free(a, e.span) =>
            {
                t.insert(AllocEntry { base: a, ..e }).map(|_| a)
            }
            _ => t.place(e, lo, hi, q.align.max(1)),
        };
        let base = placed.map_err(|e| match e {
            TableError::Full | TableError::NoSpace => MemError::NoSpace,
        })?;
        r.procs[q.slot as usize].usage[q.dev as usize].data_bytes += q.charged;
        r.devs[q.dev as usize].used += q.charged;
        r.header.generation += 1;
        self.group_delta(q.slot, q.dev as usize, q.charged as i64);
        Ok(base)
    }

    fn uncharge(&mut self, e: &AllocEntry) {
        let r = self.reg_mut();
        if (e.slot as usize) < MAX_PROCS && (e.dev as usize) < MAX_DEVICES {
            let u = &mut r.procs[e.slot as usize].usage[e.dev as usize];
            let before = u.data_bytes;
            u.data_bytes = u.data_bytes.saturating_sub(e.charged);
            let freed = before - u.data_bytes;
            let d = &mut r.devs[e.dev as usize];
            d.used = d.used.saturating_sub(e.charged);
            self.group_delta(e.slot as u32, e.dev as usize, -(freed as i64));
        }
    }

    /// Frees the allocation of `slot` starting at `base` if its kind is in `kinds`.
    pub fn free(&mut self, slot: u32, base: u64, kinds: &[u8]) -> Option<AllocEntry> {
        let mut t = self.table();
        let i = t.find(base)?;
        let e = t.rows()[i];
        if e.slot as u32 != slot || !kinds.contains(&e.kind) {
            return None;
        }
        t.remove(i);
        self.uncharge(&e);
        self.reg_mut().header.generation += 1;
        Some(e)
    }

    /// The allocation of `slot` that starts at `base`.
    pub fn lookup(&self, slot: u32, base: u64) -> Option<AllocEntry> {
        let rows = self.rows();
        let e = rows[find_row(rows, base)?];
        (e.slot as u32 == slot).then_some(e)
    }

    /// Frees every allocation of context instance `ctx` of `slot`; returns the bytes uncharged.
    pub fn free_ctx(&mut self, slot: u32, ctx: u64) -> u64 {
        let mut freed = Vec::new();
        self.table().remove_where(
            |e| e.slot as u32 == slot && e.ctx == ctx,
            |e| freed.push(*e),
        );
        let mut bytes = 0;
        for e in &freed {
            bytes += e.charged;
            self.uncharge(e);
        }
        self.reg_mut().header.generation += 1;
        bytes
    }

    /// `(used, total)` bytes of a device, all processes together.
    pub fn mem_info(&self, dev: u32) -> Option<(u64, u64)> {
        if !self.dev_ok(dev) {
            return None;
        }
        let d = &self.reg().devs[dev as usize];
        Some((d.used.min(d.total), d.total))
    }

    /// Puts a kernel of `cost` ns on the device timeline; returns its end time.
    pub fn launch(&mut self, slot: u32, dev: u32, cost: u64, not_before: u64, now: u64) -> u64 {
        if !self.dev_ok(dev) || !self.slot_ok(slot) {
            return now;
        }
        let r = self.reg_mut();
        let pid = r.procs[slot as usize].pid;
        let d = &mut r.devs[dev as usize];
        let (start, end) = timeline::schedule(now, d.busy_until, not_before, cost);
        d.busy_until = end;
        d.busy_total += cost;
        d.kernels += 1;
        Ring::new(&mut d.ring, &mut d.ring_head, &mut d.ring_len).push(Interval {
            start,
            end,
            pid,
            slot,
        });
        let u = &mut r.procs[slot as usize].usage[dev as usize];
        u.busy_ns += cost;
        u.kernels += 1;
        end
    }

    /// When the device's queued work ends.
    pub fn busy_until(&self, dev: u32) -> u64 {
        if !self.dev_ok(dev) {
            return 0;
        }
        self.reg().devs[dev as usize].busy_until
    }

    /// Processes that hold a context or memory on `dev` (the NVML running-process view).
    pub fn processes(&self, dev: u32) -> Vec<ProcMem> {
        if !self.dev_ok(dev) {
            return Vec::new();
        }
        self.reg()
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status == 1)
            .filter_map(|(i, p)| {
                let u = p.usage[dev as usize];
                (u.ctx_count > 0 || u.total() > 0).then_some(ProcMem {
                    pid: p.pid,
                    slot: i as u32,
                    usage: u,
                })
            })
            .collect()
    }

    /// Busy percentage of `dev` over the `window` ns before `now`.
    pub fn utilization(&self, dev: u32, now: u64, window: u64) -> u32 {
        if !self.dev_ok(dev) {
            return 0;
        }
        let ring = dev_ring(&self.reg().devs[dev as usize]);
        timeline::utilization(ring, now, window, |_| true)
    }

    /// Busy ns per pid on `dev` within `[t0, now)`, for pids that ran anything there.
    pub fn process_busy(&self, dev: u32, t0: u64, now: u64) -> Vec<(u32, u64)> {
        if !self.dev_ok(dev) {
            return Vec::new();
        }
        let ring = dev_ring(&self.reg().devs[dev as usize]);
        let mut out: Vec<(u32, u64)> = Vec::new();
        for iv in ring.newest_first() {
            if iv.end <= t0 {
                break;
            }
            let b = timeline::busy_in_window(std::iter::once(iv), t0, now, |_| true);
            if b == 0 {
                continue;
            }
            match out.iter_mut().find(|(p, _)| *p == iv.pid) {
                Some((_, v)) => *v += b,
                None => out.push((iv.pid, b)),
            }
        }
        out
    }

    /// Device time the kernels of slot `slot` have run on `dev` up to `now` (ns, a running
    /// total): its charged busy time less the part of its queued kernels still ahead of
    /// `now`. What the amdgpu driver's fdinfo (`drm-engine-gfx`) counts, and AMD SMI's
    /// process list reports as `engine_usage.gfx`.
    pub fn process_run_ns(&self, dev: u32, slot: u32, now: u64) -> u64 {
        if !self.dev_ok(dev) || !self.slot_ok(slot) {
            return 0;
        }
        let r = self.reg();
        let total = r.procs[slot as usize].usage[dev as usize].busy_ns;
        // Ends only grow along the ring (each kernel ends after the device's queue), so the
        // intervals not finished by `now` are the newest ones.
        let ahead: u64 = dev_ring(&r.devs[dev as usize])
            .newest_first()
            .take_while(|iv| iv.end > now)
            .filter(|iv| iv.slot == slot)
            .map(|iv| iv.end - iv.start.max(now))
            .sum();
        total.saturating_sub(ahead)
    }

    /// A full picture of the state for reports. Does not clean anything up; `alive` is
    /// computed with the liveness test.
    pub fn snapshot(&self, now: u64) -> Snapshot {
        let r = self.reg();
        let devices = self
            .st
            .devices
            .iter()
            .map(|info| {
                let d = &r.devs[info.index as usize];
                DevSnap {
                    info: info.clone(),
                    used: d.used,
                    busy_total_ns: d.busy_total,
                    kernels: d.kernels,
                    util_1s: self.utilization(info.index, now, 1_000_000_000),
                }
            })
            .collect();
        let rows = self.rows();
        let procs = r
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status == 1)
            .map(|(i, p)| {
                let mut devs = Vec::new();
                for d in 0..r.header.ndev {
                    let mut by_kind = [0u64; 10];
                    let mut count = 0;
                    for e in rows
                        .iter()
                        .filter(|e| e.slot as usize == i && e.dev as u32 == d)
                    {
                        if let Some(k) = kind::ALL.iter().position(|&k| k == e.kind) {
                            by_kind[k] += e.charged;
                        }
                        count += 1;
                    }
                    let u = p.usage[d as usize];
                    if u.ctx_count > 0 || u.total() > 0 || u.kernels > 0 || count > 0 {
                        devs.push((d, u, by_kind, count));
                    }
                }
                ProcSnap {
                    slot: i as u32,
                    pid: p.pid,
                    comm: read_str(&p.comm),
                    alive: (self.st.liveness)(p.pid, p.start_time),
                    devices: devs,
                }
            })
            .collect();
        let ndev = (r.header.ndev as usize).min(MAX_DEVICES);
        let groups = r.groups.slots[..(r.groups.len as usize).min(MAX_GROUPS)]
            .iter()
            .map(|g| GroupSnap {
                name: read_str(&g.name),
                members: g.members,
                used: g.used[..ndev].to_vec(),
                high_water: g.high_water[..ndev].to_vec(),
            })
            .collect();
        Snapshot {
            path: self.st.path.clone(),
            // SAFETY: a place read of a prefix field written once before the file was
            // published (and checked equal to VERSION when it was opened).
            version: unsafe { (*self.r).prefix.version },
            creator_pid: r.header.creator_pid,
            devices,
            procs,
            allocations: r.header.alloc_len as usize,
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn tmp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "vgpu-sim-test-{tag}-{}-{}",
            std::process::id(),
            crate::clock::mono_ns()
        ))
    }

    fn cfg(n: u32, mem: u64) -> SimConfig {
        SimConfig {
            devices: n,
            model: model("h100").unwrap(),
            mem_bytes: mem,
        }
    }

    static DEAD_PID: AtomicU32 = AtomicU32::new(0);
    fn fake_alive(pid: u32, _st: u64) -> bool {
        pid != DEAD_PID.load(Ordering::SeqCst)
    }

    fn req(slot: u32, dev: u32, bytes: u64, ctx: u64) -> AllocReq {
        AllocReq {
            slot,
            dev,
            kind: kind::ALLOC,
            bytes,
            span: bytes,
            align: 512,
            charged: bytes,
            ctx,
            aux: 0,
            phys: false,
            fixed: None,
        }
    }

    #[test]
    fn create_open_and_account() {
        let p = tmp_path("acct");
        let mut st = SimState::open_or_create(&p, &cfg(2, 1 << 30)).unwrap();
        st.liveness = fake_alive;
        assert_eq!(st.devices().len(), 2);
        assert_eq!(st.devices()[0].name, "NVIDIA H100 80GB HBM3");
        assert_ne!(st.devices()[0].uuid, st.devices()[1].uuid);
        // a second open (other config) sees the creator's config
        let st2 = SimState::open_or_create(&p, &cfg(4, 2 << 30)).unwrap();
        assert_eq!(st2.devices().len(), 2);
        assert_eq!(st2.devices()[1].total_mem, 1 << 30);

        let mut g = st.lock().unwrap();
        let a = g.register(1001, 5, "a").unwrap();
        let b = g.register(1002, 6, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(g.register(1001, 5, "a").unwrap(), a);
        g.charge(a, 0, 300 << 20, 2 << 20, 1, 1).unwrap();
        let x = g.alloc(&req(a, 0, 100 << 20, 7)).unwrap();
        let y = g.alloc(&req(b, 0, 200 << 20, 9)).unwrap();
        assert_ne!(x, y);
        assert_eq!(g.mem_info(0).unwrap().0, (602) << 20);
        assert_eq!(g.mem_info(1).unwrap().0, 0);
        // over capacity
        assert_eq!(
            g.alloc(&req(b, 0, 500 << 20, 9)),
            Err(MemError::OutOfMemory)
        );
        let procs = g.processes(0);
        assert_eq!(procs.len(), 2);
        assert_eq!(
            procs.iter().find(|p| p.pid == 1001).unwrap().usage.total(),
            402 << 20
        );
        // wrong owner / kind cannot free
        assert!(g.free(b, x, &[kind::ALLOC]).is_none());
        assert!(g.free(a, x, &[kind::ARRAY]).is_none());
        assert!(g.free(a, x, &[kind::ALLOC]).is_some());
        assert!(g.free(a, x, &[kind::ALLOC]).is_none());
        // context teardown frees its allocations
        g.alloc(&req(b, 0, 1 << 20, 10)).unwrap();
        assert_eq!(g.free_ctx(b, 9), 200 << 20);
        assert_eq!(g.mem_info(0).unwrap().0, (302 + 1) << 20);
        g.charge(a, 0, -(300 << 20), -(2 << 20), -1, -1).unwrap();
        assert_eq!(g.mem_info(0).unwrap().0, 1 << 20);
        assert_eq!(g.processes(0).len(), 1);
        // exec(): the same pid and start time register a new image; the former image's
        // memory is gone with it.
        let b2 = g.register_image(1002, 6, "b").unwrap();
        assert_eq!(g.mem_info(0).unwrap().0, 0);
        assert_eq!(g.register(1002, 6, "b").unwrap(), b2);
        drop(g);
        drop(st2);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn memory_held_until_gone_is_dropped_before_the_next_charge_counts() {
        let p = tmp_path("heldgone");
        let mut st = SimState::open_or_create(&p, &cfg(1, 4 << 30)).unwrap();
        st.liveness = fake_alive;
        let mut g = st.lock().unwrap();
        let a = g.register(5001, 1, "a").unwrap();
        let b = g.register(5002, 1, "b").unwrap();
        assert!(g.set_group(a, "box"));
        assert!(g.set_group(b, "box"));
        g.alloc(&req(a, 0, 900 << 20, 1)).unwrap();
        // a exits: nothing is freed while it is still there (its files not closed yet).
        g.hold_until_gone();
        g.alloc(&req(b, 0, 100 << 20, 1)).unwrap();
        let high = |g: &Guard<'_>| {
            let snap = g.snapshot(crate::clock::mono_ns());
            let boxed = snap.groups.iter().find(|g| g.name == "box").unwrap();
            (boxed.used[0], boxed.high_water[0])
        };
        assert_eq!(high(&g), (1000 << 20, 1000 << 20));
        // Gone: b's next charge frees a's memory first, so the group never holds both.
        DEAD_PID.store(5001, Ordering::SeqCst);
        g.alloc(&req(b, 0, 800 << 20, 1)).unwrap();
        assert_eq!(high(&g), (900 << 20, 1000 << 20));
        DEAD_PID.store(0, Ordering::SeqCst);
        drop(g);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn groups_record_their_high_water_mark_at_every_change() {
        let p = tmp_path("groups");
        let mut st = SimState::open_or_create(&p, &cfg(2, 4 << 30)).unwrap();
        st.liveness = fake_alive;
        let mut g = st.lock().unwrap();
        let a = g.register(4001, 1, "a").unwrap();
        let b = g.register(4002, 1, "b").unwrap();
        let c = g.register(4003, 1, "c").unwrap();
        assert!(g.set_group(a, "box"));
        assert!(g.set_group(b, "box"));
        assert!(g.set_group(c, "other"));
        g.charge(a, 0, 300 << 20, 0, 1, 0).unwrap();
        let x = g.alloc(&req(a, 0, 100 << 20, 1)).unwrap();
        let y = g.alloc(&req(b, 1, 50 << 20, 1)).unwrap();
        g.alloc(&req(c, 0, 700 << 20, 1)).unwrap();
        g.free(a, x, &[kind::ALLOC]).unwrap();
        g.alloc(&req(b, 0, 20 << 20, 1)).unwrap();
        let snap = g.snapshot(crate::clock::mono_ns());
        let boxed = snap.groups.iter().find(|g| g.name == "box").unwrap();
        assert_eq!(boxed.members, 2);
        assert_eq!(boxed.used, vec![320 << 20, 50 << 20]);
        assert_eq!(boxed.high_water, vec![400 << 20, 50 << 20]);
        let other = snap.groups.iter().find(|g| g.name == "other").unwrap();
        assert_eq!(other.high_water, vec![700 << 20, 0]);
        // A dead member's memory leaves the group; the mark stays.
        DEAD_PID.store(4002, Ordering::SeqCst);
        g.sweep(crate::clock::mono_ns(), 0);
        let _ = y;
        let snap = g.snapshot(crate::clock::mono_ns());
        let boxed = snap.groups.iter().find(|g| g.name == "box").unwrap();
        assert_eq!(boxed.used, vec![300 << 20, 0]);
        assert_eq!(boxed.high_water, vec![400 << 20, 50 << 20]);
        // A repair recomputes usage and keeps the mark.
        g.repair();
        let snap = g.snapshot(crate::clock::mono_ns());
        let boxed = snap.groups.iter().find(|g| g.name == "box").unwrap();
        assert_eq!(boxed.used, vec![300 << 20, 0]);
        assert_eq!(boxed.high_water, vec![400 << 20, 50 << 20]);
        // The slot of a new process starts outside any group.
        let d = g.register(4004, 1, "d").unwrap();
        g.alloc(&req(d, 0, 1 << 20, 1)).unwrap();
        let snap = g.snapshot(crate::clock::mono_ns());
        assert_eq!(snap.groups.iter().map(|g| g.members).sum::<u64>(), 3);
        DEAD_PID.store(0, Ordering::SeqCst);
        drop(g);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn dead_processes_are_reclaimed() {
        let p = tmp_path("dead");
        let mut st = SimState::open_or_create(&p, &cfg(1, 1 << 30)).unwrap();
        st.liveness = fake_alive;
        let mut g = st.lock().unwrap();
        let a = g.register(2001, 1, "a").unwrap();
        let b = g.register(2002, 1, "b").unwrap();
        g.alloc(&req(a, 0, 800 << 20, 1)).unwrap();
        assert_eq!(
            g.alloc(&req(b, 0, 300 << 20, 1)),
            Err(MemError::OutOfMemory)
        );
        DEAD_PID.store(2001, Ordering::SeqCst);
        // the failing allocation sweeps and succeeds
        g.alloc(&req(b, 0, 300 << 20, 1)).unwrap();
        assert_eq!(g.mem_info(0).unwrap().0, 300 << 20);
        assert_eq!(g.processes(0).len(), 1);
        // rate-limited sweep
        let now = crate::clock::mono_ns();
        g.sweep(now, 0);
        DEAD_PID.store(2002, Ordering::SeqCst);
        assert_eq!(g.sweep(now + 1000, SWEEP_INTERVAL_NS), 0);
        assert_eq!(g.sweep(now + SWEEP_INTERVAL_NS, SWEEP_INTERVAL_NS), 1);
        assert_eq!(g.mem_info(0).unwrap().0, 0);
        DEAD_PID.store(0, Ordering::SeqCst);
        drop(g);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn timeline_and_utilization() {
        let p = tmp_path("tl");
        let mut st = SimState::open_or_create(&p, &cfg(1, 1 << 30)).unwrap();
        st.liveness = |_, _| true;
        let mut g = st.lock().unwrap();
        let a = g.register(3001, 1, "a").unwrap();
        let b = g.register(3002, 1, "b").unwrap();
        let t = 1_000_000_000;
        assert_eq!(g.launch(a, 0, 100, 0, t), t + 100);
        assert_eq!(
            g.launch(b, 0, 100, 0, t),
            t + 200,
            "kernels of all processes serialize"
        );
        assert_eq!(g.launch(a, 0, 100, t + 1000, t), t + 1100);
        assert_eq!(g.busy_until(0), t + 1100);
        let busy = g.process_busy(0, t, t + 2000);
        assert_eq!(busy.iter().find(|x| x.0 == 3001).unwrap().1, 200);
        assert_eq!(busy.iter().find(|x| x.0 == 3002).unwrap().1, 100);
        // Running totals count only what has run: a's first kernel half done, b's queued.
        assert_eq!(g.process_run_ns(0, a, t + 50), 50);
        assert_eq!(g.process_run_ns(0, b, t + 50), 0);
        assert_eq!(g.process_run_ns(0, b, t + 150), 50);
        assert_eq!(g.process_run_ns(0, a, t + 1050), 150);
        assert_eq!(g.process_run_ns(0, a, t + 2000), 200);
        assert_eq!(g.utilization(0, t + 2000, 2000), 15);
        let snap = g.snapshot(t + 2000);
        assert_eq!(snap.devices[0].kernels, 3);
        drop(g);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn concurrent_creation_yields_one_file() {
        let p = tmp_path("race");
        let handles: Vec<_> = (0..8u32)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let st = SimState::open_or_create(&p, &cfg(1 + i % 3, (1 + i as u64) << 30))
                        .unwrap();
                    (st.devices().len(), st.devices()[0].total_mem)
                })
            })
            .collect();
        let seen: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            seen.iter().all(|s| *s == seen[0]),
            "all openers see the creator's config: {seen:?}"
        );
        let leftovers = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("{}.tmp", p.file_name().unwrap().to_string_lossy()))
            })
            .count();
        assert_eq!(leftovers, 0, "temporary files are removed");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn bad_files_are_refused() {
        let p = tmp_path("bad");
        std::fs::write(&p, b"not a state file at all").unwrap();
        assert!(matches!(
            SimState::open_existing(&p),
            Err(OpenError::Mismatch(_))
        ));
        assert!(matches!(
            SimState::open_or_create(&p, &cfg(1, 1 << 30)),
            Err(OpenError::Mismatch(_))
        ));
        std::fs::write(&p, vec![0u8; STATE_SIZE]).unwrap();
        match SimState::open_existing(&p) {
            Err(OpenError::Mismatch(m)) => assert!(m.contains("bad magic"), "{m}"),
            _ => panic!("zero file accepted"),
        }
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            SimState::open_existing(&p),
            Err(OpenError::Missing)
        ));
    }

    #[test]
    fn lock_survives_a_killed_holder() {
        let p = tmp_path("robust");
        let st = SimState::open_or_create(&p, &cfg(1, 1 << 30)).unwrap();
        // SAFETY: fork in a test; the child only takes the lock and exits without unlocking.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let g = st.lock().unwrap();
            std::mem::forget(g);
            // SAFETY: ends the forked child at once, running no destructors of the parent's.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a writable c_int.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let g = st.lock().expect("lock recovered from a dead owner");
        drop(g);
        let _g2 = st.lock().unwrap();
        drop(_g2);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }
}
