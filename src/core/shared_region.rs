//! The container-wide shared region (layout: `shm-layout`, spec: `shm-layout/SPEC.md`):
//! attaching to the file, the robust lock, this process's slot, reaping dead processes, and
//! [`SharedPool`], the ledger's capacity pool over it.
//!
//! Attach (SPEC §6): open/create the file 0666; fast path without any lock when it is
//! already a valid region; otherwise, under an exclusive `flock` (released by the kernel if
//! we die), classify again and initialise, share, or fall back to a process-local region.
//! A file we cannot use (foreign, torn, wrong version, HAMi-core's own, no permission) is
//! reported once on stderr and the limits are still enforced, per process. Never `exit()`.
//!
//! Liveness: a slot belongs to (pid, start time). Every process with CUDA in use runs a
//! watcher thread; each 250 ms one of them (CAS on `last_reap_ns`) frees the slots of dead
//! processes and repairs totals. A failed reservation also reaps at once before refusing.
//! A clean exit only marks the slot EXITING: its charges come back through the same reaper
//! once the process is gone (the driver may hold its memory until then); memory queries
//! reap exited processes at once.
//! The watcher's ticks run under a panic guard: a panic is logged once and the loop goes
//! on after a backoff, so reaping and the core cap never die silently.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use shm_layout::{
    classify, owner_is_alive, owner_token, AttachAction, DeviceInit, HeaderView, InitParams,
    MemoryKind, Region, RegionLock, RegionStatus, EXT_OFFSET, EXT_PROBE_LEN, MAX_DEVICES,
    MAX_PROCS, REGION_SIZE, V1_PROBE_LEN,
};

use crate::ledger::CapacityPool;

/// How often the reaper looks for dead processes.
const REAP_PERIOD: Duration = Duration::from_millis(250);
/// How often the watcher thread runs (the compute cap's controller tick; reaping keeps
/// its own period).
const WATCH_PERIOD: Duration = Duration::from_nanos(crate::throttle::controller::TICK_NS);
/// The watcher's per-tick work beyond reaping (`SharedRegion::set_watcher_tick`).
static TICK: std::sync::OnceLock<fn(&'static SharedRegion)> = std::sync::OnceLock::new();
/// Longest wait for the region lock; past it the operation is skipped (retried later).
const LOCK_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait for another process initialising the file.
const INIT_WAIT: Duration = Duration::from_secs(5);

/// No region device for a container index.
const NO_DEVICE: usize = usize::MAX;

/// This process's view of the region.
pub struct SharedRegion {
    region: &'static Region,
    /// Whether the region is the shared file (false: process-local fallback).
    pub shared: bool,
    pub path: String,
    slot: AtomicUsize,
    token: std::sync::atomic::AtomicU64,
    /// Container device index -> region device index.
    dev_map: [AtomicUsize; MAX_DEVICES],
}

static REGION: OnceLock<SharedRegion> = OnceLock::new();
/// Set in a `fork` child: it must claim a slot of its own before charging anything.
static CHILD_NEEDS_SLOT: AtomicBool = AtomicBool::new(false);
static REAPER_PID: AtomicI32 = AtomicI32::new(0);
/// Whether this process's watcher thread was started (false again in a `fork` child).
static WATCHER_STARTED: AtomicBool = AtomicBool::new(false);
/// Set in a `fork` child whose parent's watcher ran: the child starts its own with its slot.
static CHILD_HAD_WATCHER: AtomicBool = AtomicBool::new(false);

/// Starts this process's watcher unless it runs ([`SharedRegion::ensure_watcher`]), for
/// callers without the region at hand; nothing before the region is attached.
#[inline]
pub fn ensure_watcher() {
    if !WATCHER_STARTED.load(Ordering::Acquire) {
        if let Some(region) = REGION.get() {
            region.spawn_watcher();
        }
    }
}

/// Start time (field 22 of `/proc/<pid>/stat`) of a process, `None` if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let mut buf = [0u8; PROC_STAT_BUF];
    let text = crate::core::procfs::read_of_pid(pid, "stat", &mut buf).ok()?;
    shm_layout::parse_proc_stat(text).map(|s| s.start_time)
}

/// Room for a `/proc/<pid>/stat` (52 numbers and a command name of at most 64 bytes).
const PROC_STAT_BUF: usize = 1536;

/// Whether the process recorded in a slot is alive. Only "does not exist" counts as dead:
/// a `/proc` we may not read (hidepid) must never free a live process's memory.
fn slot_owner_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let mut buf = [0u8; PROC_STAT_BUF];
    match crate::core::procfs::read_of_pid(pid, "stat", &mut buf) {
        Ok(text) => owner_is_alive(start_time, Some(text)),
        Err(libc::ENOENT) => false,
        Err(_) => {
            // SAFETY: signal 0 only checks existence.
            let r = unsafe { libc::kill(pid, 0) };
            r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// Whether a slot's owner is gone (the liveness `Region::reap_gone` asks for): it no longer
/// exists or is a zombie, whose files the kernel has closed, so the driver let go of its
/// memory. A CLAIMING slot not filled in yet (`start_time` 0) is judged by its pid alone.
fn slot_owner_gone(pid: i32, start_time: u64) -> bool {
    if start_time == 0 {
        process_start_time(pid).is_none()
    } else {
        !slot_owner_alive(pid, start_time)
    }
}

/// This process's pid namespace (the inode of `/proc/self/ns/pid`), 0 if unknown. Read once:
/// `setns` on a pid namespace changes only the children's.
pub fn own_pid_ns() -> u64 {
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
    })
}

fn boot_hash() -> u64 {
    // Read once: attaching needs it twice, and every process of a container starting at
    // once pays for each read.
    static HASH: OnceLock<u64> = OnceLock::new();
    *HASH.get_or_init(|| {
        let mut buf = [0u8; 64];
        crate::core::procfs::read(c"/proc/sys/kernel/random/boot_id", &mut buf)
            .map(shm_layout::boot_id_hash)
            .unwrap_or(0)
    })
}

/// Takes the region's robust lock (`shm_layout::Region::lock_timed`), saying so once when
/// a process died holding it (the state is repaired and an audit requested).
fn lock_region(region: &Region) -> Option<RegionLock<'_>> {
    let lock = region.lock_timed(LOCK_TIMEOUT)?;
    if lock.repaired() {
        crate::vlog!(
            crate::log::WARN,
            "a process died holding the region lock; repairing"
        );
    }
    Some(lock)
}

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn read_header(fd: i32) -> HeaderView {
    let mut v1 = [0u8; V1_PROBE_LEN];
    let mut ext = [0u8; EXT_PROBE_LEN];
    // SAFETY: reading into owned buffers; short reads leave zeros.
    unsafe {
        libc::pread(fd, v1.as_mut_ptr().cast(), v1.len(), 0);
        libc::pread(
            fd,
            ext.as_mut_ptr().cast(),
            ext.len(),
            EXT_OFFSET as libc::off_t,
        );
    }
    HeaderView::from_bytes(&v1, &ext)
}

fn map(fd: i32) -> Option<&'static Region> {
    // SAFETY: mapping REGION_SIZE bytes of a file at least that long; the mapping is never
    // unmapped, so the 'static reference stays valid.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            REGION_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        // No read-ahead on faults: the file is mostly holes, and with the disk's
        // read-ahead (8 MiB here) the first touch of a fresh region zero-filled all 3 MiB
        // of it into the page cache — most of the creating process's start-up, which the
        // container's other processes wait for (issue 9 item 4). Each page is faulted in
        // when touched instead. Advice only: its failure changes nothing else.
        libc::madvise(p, REGION_SIZE, libc::MADV_RANDOM);
        Region::from_ptr(p.cast(), REGION_SIZE).ok()
    }
}

fn file_len(fd: i32) -> u64 {
    // SAFETY: fstat into an owned struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return 0;
        }
        st.st_size as u64
    }
}

/// Why the shared file could not be used.
enum AttachFailure {
    Io(String),
    Unusable(RegionStatus),
    /// Another process is initialising the region, and the caller would not wait.
    Busy,
}

/// The region a process mapped early (`prepare`), with its path: what `attach` then uses.
static PREPARED: OnceLock<Option<(String, &'static Region)>> = OnceLock::new();

/// Maps the container's region early — at the process's first driver call, before the
/// driver's own initialisation — creating it when nobody has yet, but never waiting for a
/// process that is creating it: the container's first process then creates the region
/// while the others initialise their drivers, instead of all of them waiting for it after
/// (issue 9 item 4: processes starting together). `attach` uses the mapping.
pub fn prepare(path: &str, devices: impl Fn() -> Vec<DeviceInit>, priority: i32) {
    if REGION.get().is_some() {
        return;
    }
    PREPARED.get_or_init(|| {
        let params = || InitParams {
            devices: devices(),
            priority,
            created_unix_ns: crate::clock::unix_ns(),
            boot_id_hash: boot_hash(),
        };
        attach_file(path, &params, false)
            .ok()
            .map(|r| (path.to_string(), r))
    });
}

fn attach_file(
    path: &str,
    params: &dyn Fn() -> InitParams,
    wait: bool,
) -> Result<&'static Region, AttachFailure> {
    let cpath = CString::new(path).map_err(|_| AttachFailure::Io("path has a NUL byte".into()))?;
    // SAFETY: open/fchmod/flock on our own descriptor.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            shm_layout::REGION_FILE_MODE,
        )
    };
    if fd < 0 {
        return Err(AttachFailure::Io(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let fd = Fd(fd);
    // Several users may share a container: the file must be writable by all of them.
    // SAFETY: fchmod on our descriptor (fails harmlessly when we are not the owner).
    unsafe { libc::fchmod(fd.0, shm_layout::REGION_FILE_MODE as libc::mode_t) };
    let boot = boot_hash();

    // Fast path: an already valid region needs no lock at all.
    let len = file_len(fd.0);
    if len >= REGION_SIZE as u64 && classify(len, &read_header(fd.0), boot) == RegionStatus::Valid {
        return map(fd.0).ok_or_else(|| AttachFailure::Io("mmap failed".into()));
    }

    // Slow path, under the file lock (the kernel drops it if we die). The processes of a
    // container starting together all wait here for the first one, which initialises the
    // region, and map it without the lock as soon as it is published, instead of queueing
    // for the lock (issue 9 item 4: a wave of 64 processes). Once the file has its size
    // they sleep on the region's magic word, which the initialising process wakes when it
    // publishes (`wake_publish_waiters`): no polling that would take the CPU from the one
    // process they wait for; before that, short sleeps (50 µs doubling to 2 ms).
    let deadline = std::time::Instant::now() + INIT_WAIT;
    let mut pause = Duration::from_micros(50);
    // The mapping a waiter sleeps on, kept for the region it returns (a mapping is never
    // unmapped: one per process).
    let mut waited_on: Option<&'static Region> = None;
    let mut looked_again = false;
    let mapped = |waited_on: Option<&'static Region>| {
        waited_on
            .or_else(|| map(fd.0))
            .ok_or_else(|| AttachFailure::Io("mmap failed".into()))
    };
    // SAFETY: flock on our descriptor.
    while unsafe { libc::flock(fd.0, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let len = file_len(fd.0);
        if len >= REGION_SIZE as u64
            && classify(len, &read_header(fd.0), boot) == RegionStatus::Valid
        {
            return mapped(waited_on);
        }
        if !wait {
            return Err(AttachFailure::Busy);
        }
        let now = std::time::Instant::now();
        if now > deadline {
            return Err(AttachFailure::Io(
                "timed out waiting for the initialising process".into(),
            ));
        }
        if len >= REGION_SIZE as u64 && waited_on.is_none() {
            waited_on = map(fd.0);
        }
        let unpublished = waited_on
            .map(|r| (r, r.v1.magic.load(Ordering::Acquire)))
            .filter(|&(_, magic)| magic != shm_layout::HAMI_MAGIC);
        match unpublished {
            // Not published when looked at here: the publisher's wake comes after this
            // load, and if it comes before the sleep starts the kernel finds the word
            // changed and does not sleep. Bounded all the same.
            Some((region, magic)) => wait_for_publish(
                region,
                magic,
                (deadline - now).min(Duration::from_millis(20)),
            ),
            // Published since the look above (looked at again at once), or being
            // initialised again by another process (a stale region): short sleeps.
            None if waited_on.is_some() && !looked_again => looked_again = true,
            None => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
    }
    let len = file_len(fd.0);
    let status = classify(len, &read_header(fd.0), boot);
    let result = match status.action() {
        AttachAction::Share => mapped(waited_on),
        AttachAction::Initialize => {
            // SAFETY: sizing our own file.
            if unsafe { libc::ftruncate(fd.0, REGION_SIZE as libc::off_t) } != 0 {
                Err(AttachFailure::Io(
                    std::io::Error::last_os_error().to_string(),
                ))
            } else {
                // A file grown from nothing under our lock is all zeros: no clearing pass
                // (on a page-cached file system it faults in every page of the region).
                let init = if len == 0 {
                    Region::init_fresh_unpublished
                } else {
                    Region::init_unpublished
                };
                match mapped(waited_on) {
                    Ok(region) => match init(region, &params()) {
                        Ok(()) => {
                            region.init_lock();
                            region.publish();
                            wake_publish_waiters(region);
                            Ok(region)
                        }
                        Err(e) => Err(AttachFailure::Io(e.to_string())),
                    },
                    Err(e) => Err(e),
                }
            }
        }
        AttachAction::ProcessLocal => Err(AttachFailure::Unusable(status)),
    };
    // SAFETY: unlocking our descriptor's flock.
    unsafe { libc::flock(fd.0, libc::LOCK_UN) };
    result
}

/// Wakes the processes sleeping until the region is published (`wait_for_publish`).
fn wake_publish_waiters(region: &Region) {
    // SAFETY: FUTEX_WAKE on a 4-byte-aligned word of our live shared mapping; not the
    // PRIVATE variant: the sleepers are other processes mapping the same file.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            region.v1.magic.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Sleeps until the region's magic is no longer `seen` (its publication wakes us), or
/// `limit` has passed.
fn wait_for_publish(region: &Region, seen: i32, limit: Duration) {
    let timeout = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a 4-byte-aligned word of our live shared mapping with a
    // relative timeout: it returns at once when the word is not `seen` any more.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            region.v1.magic.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &timeout as *const libc::timespec,
        );
    }
}

fn local_region(params: &InitParams) -> &'static Region {
    let region: &'static Region = Box::leak(Region::new_boxed());
    let _ = region.init_unpublished(params);
    region.init_lock();
    region.publish();
    region
}

impl SharedRegion {
    /// The region, once attached.
    pub fn get() -> Option<&'static SharedRegion> {
        REGION.get()
    }

    /// Attaches (once per process) and claims this process's slot. `devices(known)` gives
    /// the container's devices in container index order; `known` is the UUID list the
    /// container's region already holds (a container whose first process registered its
    /// devices), `None` when there is none: then the devices must be found otherwise (NVML),
    /// which a later process of the container is spared.
    pub fn attach(
        path: &str,
        devices: impl Fn(Option<Vec<String>>) -> Vec<DeviceInit>,
        priority: i32,
    ) -> &'static SharedRegion {
        REGION.get_or_init(|| {
            let fresh: std::cell::OnceCell<Vec<DeviceInit>> = std::cell::OnceCell::new();
            let params = || InitParams {
                devices: fresh.get_or_init(|| devices(None)).clone(),
                priority,
                created_unix_ns: crate::clock::unix_ns(),
                boot_id_hash: boot_hash(),
            };
            let attached = match PREPARED.get() {
                Some(Some((p, region))) if p == path => Ok(*region),
                _ => attach_file(path, &params, true),
            };
            let (region, shared) = match attached {
                Ok(r) => (r, true),
                // (Busy only comes from `prepare`, which does not wait.)
                Err(AttachFailure::Busy) => {
                    crate::log::write_line(format_args!(
                        "cannot use the shared region {path:?} (another process is initialising it): limits are enforced per process, not container-wide"
                    ));
                    (local_region(&params()), false)
                }
                Err(AttachFailure::Io(e)) => {
                    crate::log::write_line(format_args!(
                        "cannot use the shared region {path:?} ({e}): limits are enforced per process, not container-wide"
                    ));
                    (local_region(&params()), false)
                }
                Err(AttachFailure::Unusable(status)) => {
                    crate::log::write_line(format_args!(
                        "the shared region {path:?} is not one this library can share ({status:?}); it is left untouched and limits are enforced per process"
                    ));
                    (local_region(&params()), false)
                }
            };
            let known: Vec<String> = (0..MAX_DEVICES).map_while(|d| region.uuid_str(d)).collect();
            let devices = match fresh.get() {
                Some(d) => d.clone(),
                None if !known.is_empty() => devices(Some(known)),
                None => devices(None),
            };
            let me = SharedRegion {
                region,
                shared,
                path: path.to_string(),
                slot: AtomicUsize::new(usize::MAX),
                token: std::sync::atomic::AtomicU64::new(0),
                dev_map: [const { AtomicUsize::new(NO_DEVICE) }; MAX_DEVICES],
            };
            me.register_devices(&devices);
            // No reap here: a process that exited just before this one started counts until
            // a reservation that would not fit, a memory query, `vgpuctl inspect` or a
            // watcher reaps it, each at once when it matters. Reaped at every start as well,
            // the processes of a container starting while others exit each read `/proc` for
            // every exiting slot (40 µs a process in a wave of 256, issue 9 item 4).
            me.claim_own_slot();
            me
        })
    }

    pub fn region(&self) -> &'static Region {
        self.region
    }

    /// This process's slot index, if it holds one.
    pub fn slot(&self) -> Option<usize> {
        let s = self.slot.load(Ordering::Acquire);
        (s < MAX_PROCS).then_some(s)
    }

    /// Registers the container's devices; the stricter of this process's limit and the
    /// region's wins (a mismatch is reported once).
    fn register_devices(&self, devices: &[DeviceInit]) {
        // Every process of a container but its first finds its devices registered with
        // its own limits: nothing to write, so no lock (lock-free: a device's limits are
        // stored before its UUID key is published). Under the lock otherwise, as before.
        let registered: Option<Vec<usize>> = devices
            .iter()
            .take(MAX_DEVICES)
            .map(|d| {
                let dev = self.region.find_device(&d.uuid)?;
                let state = self.region.device(dev).ok()?;
                (state.limit_bytes.load(Ordering::Acquire) == d.limit_bytes
                    && state.sm_limit.load(Ordering::Acquire) == d.sm_limit)
                    .then_some(dev)
            })
            .collect();
        if let Some(registered) = registered {
            for (slot, dev) in self.dev_map.iter().zip(registered) {
                slot.store(dev, Ordering::Release);
            }
            return;
        }
        let Some(_lock) = lock_region(self.region) else {
            crate::log::write_line(format_args!(
                "region lock unavailable: devices not registered"
            ));
            return;
        };
        for (i, d) in devices.iter().enumerate().take(MAX_DEVICES) {
            let dev = match self
                .region
                .register_device(&d.uuid, d.limit_bytes, d.sm_limit)
            {
                Ok(dev) => dev,
                Err(e) => {
                    crate::log::write_line(format_args!(
                        "cannot register device {} in the shared region {:?} ({e}): allocations on it are refused",
                        d.uuid, self.path
                    ));
                    continue;
                }
            };
            self.dev_map[i].store(dev, Ordering::Release);
            let Ok(state) = self.region.device(dev) else {
                continue;
            };
            let theirs = state.limit_bytes.load(Ordering::Acquire);
            let theirs_sm = state.sm_limit.load(Ordering::Acquire);
            let stricter = |a: u64, b: u64| match (a, b) {
                (0, x) | (x, 0) => x,
                (a, b) => a.min(b),
            };
            let (limit, sm) = (
                stricter(theirs, d.limit_bytes),
                stricter(theirs_sm, d.sm_limit),
            );
            if (limit, sm) != (theirs, theirs_sm) || (limit, sm) != (d.limit_bytes, d.sm_limit) {
                crate::log::write_line(format_args!(
                    "device {} limits differ between this process (memory {} B, cores {}%) and the container's region (memory {theirs} B, cores {theirs_sm}%): using the stricter (memory {limit} B, cores {sm}%)",
                    d.uuid, d.limit_bytes, d.sm_limit
                ));
                let _ = self.region.set_device_limits(dev, limit, sm);
            }
        }
    }

    fn claim_own_slot(&self) {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let start = process_start_time(pid).unwrap_or(0);
        let nonce = (crate::clock::mono_ns() as u32) ^ (pid as u32).rotate_left(16);
        let token = owner_token(pid, nonce);
        // Looked up before the lock, which the processes of a container starting together
        // take one after the other: the reads of every taken slot (where a free one is,
        // whether this pid's former image holds one) are not made under it (issue 9 item
        // 4: 256 processes).
        let former_image = self.former_image_slots(pid, start);
        let hint = self.region.free_slot_hint();
        for attempt in 0..2 {
            let claimed = {
                let Some(_lock) = lock_region(self.region) else {
                    break;
                };
                if former_image {
                    self.reclaim_own_former_image(pid, start);
                }
                let claimed =
                    self.region
                        .claim_slot_from(hint, token, pid, start, crate::clock::mono_ns());
                if let Ok(i) = claimed {
                    // Under the same lock hold: no reaper sees the slot without it.
                    self.region.ext.slots[i]
                        .pid_ns
                        .store(own_pid_ns(), Ordering::Release);
                }
                claimed
            };
            match claimed {
                Ok(i) => {
                    self.token.store(token, Ordering::Release);
                    self.slot.store(i, Ordering::Release);
                    // The host pid is unknown until discovered (see hostpid.rs).
                    self.region.v1.procs[i].hostpid.store(0, Ordering::Relaxed);
                    return;
                }
                Err(_) if attempt == 0 => self.reap(true),
                Err(_) => {}
            }
        }
        crate::log::write_line(format_args!(
            "no free process slot in the shared region {:?}: this process's memory is not counted container-wide",
            self.path
        ));
    }

    /// After `exec`, the process keeps its pid and start time but the driver has freed
    /// everything the old program image held: a slot with our identity belongs to that
    /// image, which no longer exists. Call holding the region lock.
    fn reclaim_own_former_image(&self, pid: i32, start: u64) {
        for (i, token) in self.former_image(pid, start) {
            let _ = self.region.reclaim_slot(i, token);
        }
    }

    /// The slots (index, token) with this process's identity: its former program image's,
    /// after `exec` (none otherwise). Only this process could claim another with it.
    fn former_image(&self, pid: i32, start: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let high = (self
            .region
            .ext
            .header
            .slot_high_water
            .load(Ordering::Acquire) as usize)
            .min(MAX_PROCS);
        (0..high).filter(move |_| start != 0).filter_map(move |i| {
            let ext = &self.region.ext.slots[i];
            let token = ext.owner_token.load(Ordering::Acquire);
            (token != 0
                && ext.pid.load(Ordering::Acquire) == pid
                && ext.start_time.load(Ordering::Acquire) == start)
                .then_some((i, token))
        })
    }

    /// Whether a former image of this process holds a slot (lock-free: no other process
    /// can give this pid and start time a slot, so what is seen here stays true until
    /// this process reclaims it).
    fn former_image_slots(&self, pid: i32, start: u64) -> bool {
        self.former_image(pid, start).next().is_some()
    }

    /// Frees the slots of processes that are gone — killed, or exited cleanly (EXITING) —
    /// and repairs totals if needed: the one path by which a process's charges return to
    /// the container. With `force`, runs now; otherwise only if no process reaped in the
    /// last period. The periodic pass takes the lock only when a lock-free look found a
    /// slot to reclaim (or an audit is due); a forced one (a reservation about to be
    /// refused) always takes it, so it also waits for a reclaim another process has under
    /// way before the caller retries.
    pub fn reap(&self, force: bool) {
        let h = &self.region.ext.header;
        let now = crate::clock::mono_ns();
        let last = h.last_reap_ns.load(Ordering::Acquire);
        if !force
            && (now.saturating_sub(last) < REAP_PERIOD.as_nanos() as u64 * 4 / 5
                || h.last_reap_ns
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err())
        {
            return;
        }
        self.reap_gone(false, !force);
    }

    /// The cheap reap: only slots marked EXITING (a lock-free scan of the slot states
    /// first, usually finding none), for paths that must stay cheap — a new process's
    /// attach, a memory query — so a process that has exited stops counting as soon as a
    /// neighbour looks.
    pub fn reap_exited(&self) {
        if self.region.any_exiting() {
            self.reap_gone(true, true);
        }
    }

    /// Reclaims the slots of gone processes under the lock; with `look_first`, only when a
    /// lock-free look found one (or an audit is due).
    fn reap_gone(&self, only_exiting: bool, look_first: bool) {
        if EXITING.load(Ordering::SeqCst) {
            return;
        }
        // All users of a region share one pid namespace (SPEC §5.4): a slot that does not
        // record its own is judged too.
        let scope = shm_layout::ReapScope {
            pid_ns: own_pid_ns(),
            unknown_ns: true,
            only_exiting,
        };
        // Look first, without the lock: a reclaim needs it, a look does not.
        if look_first
            && !self.region.audit_needed()
            && !self
                .region
                .any_gone(scope, &mut |pid, start| slot_owner_gone(pid, start))
        {
            return;
        }
        let Some(_lock) = lock_region(self.region) else {
            return;
        };
        if EXITING.load(Ordering::SeqCst) {
            return; // the process is exiting: hold the lock no longer than this
        }
        let n = self
            .region
            .reap_gone(scope, &mut |pid, start| slot_owner_gone(pid, start));
        if n > 0 {
            crate::vlog!(crate::log::DEBUG, "reclaimed {n} slot(s) of gone processes");
        }
        if self.region.audit_needed() {
            let _ = self.region.audit_totals();
        }
    }

    /// Marks this process's slot EXITING (clean exit): lock-free, nothing credited.
    fn mark_own_slot_exiting(&self) {
        if let Some(slot) = self.slot() {
            self.region
                .mark_exiting(slot, self.token.load(Ordering::Acquire));
        }
    }

    /// Records this process's host pid (what NVML reports) in its slot, for the monitor
    /// and for the container's NVML process lists.
    pub fn set_host_pid(&self, pid: u32) {
        if let Some(slot) = self.slot() {
            self.region.v1.procs[slot]
                .hostpid
                .store(pid as i32, Ordering::Relaxed);
        }
    }

    /// The host pids the container's other processes have discovered (their slots'
    /// `hostpid`): never ours, so host pid discovery leaves them out.
    pub fn host_pids_of_others(&self) -> Vec<u32> {
        let mine = self.slot();
        self.region
            .v1
            .procs
            .iter()
            .enumerate()
            .filter(|(i, p)| Some(*i) != mine && p.status.load(Ordering::Acquire) != 0)
            .map(|(_, p)| p.hostpid.load(Ordering::Acquire))
            .filter(|&h| h > 0)
            .map(|h| h as u32)
            .collect()
    }

    /// What a context costs on container device `device`, as a process of the container
    /// measured it; `None` before any did.
    pub fn context_bytes_hint(&self, device: usize) -> Option<u64> {
        let d = self.region.device(self.region_device(device)?).ok()?;
        d.context_bytes_hint.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Records a measured context cost for the container's later processes.
    pub fn set_context_bytes_hint(&self, device: usize, bytes: u64) {
        if let Some(d) = self
            .region_device(device)
            .and_then(|d| self.region.device(d).ok())
        {
            d.context_bytes_hint
                .store(bytes.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// Claims the measurement of the first context on container device `device` for
    /// `hold` (the container's processes starting together: one measures through NVML, the
    /// others wait for its figure, `wait_for_context_bytes_hint`). `false`: another process
    /// holds it, or the region does not know the device.
    pub fn claim_context_measurement(&self, device: usize, hold: Duration) -> bool {
        let Some(d) = self
            .region_device(device)
            .and_then(|d| self.region.device(d).ok())
        else {
            return false;
        };
        let now = crate::clock::mono_ns();
        let held = d.context_measure_until_ns.load(Ordering::Acquire);
        held <= now
            && d.context_measure_until_ns
                .compare_exchange(
                    held,
                    now.saturating_add(hold.as_nanos() as u64),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Gives the claim back (measured, published or not: the waiting processes then stop
    /// waiting and measure for themselves).
    pub fn end_context_measurement(&self, device: usize) {
        if let Some(d) = self
            .region_device(device)
            .and_then(|d| self.region.device(d).ok())
        {
            d.context_measure_until_ns.store(0, Ordering::Release);
        }
    }

    /// Waits, at most `limit`, for the container's figure of a context on `device` while
    /// another process holds its measurement: the figure, or `None` when the claim was given
    /// back or ran out without one.
    pub fn wait_for_context_bytes_hint(&self, device: usize, limit: Duration) -> Option<u64> {
        let d = self
            .region_device(device)
            .and_then(|d| self.region.device(d).ok())?;
        let deadline = std::time::Instant::now() + limit;
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(bytes) = self.context_bytes_hint(device) {
                return Some(bytes);
            }
            let claimed =
                d.context_measure_until_ns.load(Ordering::Acquire) > crate::clock::mono_ns();
            if !claimed || std::time::Instant::now() >= deadline {
                return self.context_bytes_hint(device);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Says that this process holds a context charge parked on container device `device`
    /// for at most `hold` (`core::provisional`).
    pub fn note_context_parked(&self, device: usize, hold: Duration) {
        if let Some(d) = self
            .region_device(device)
            .and_then(|d| self.region.device(d).ok())
        {
            d.context_parked_until_ns.fetch_max(
                crate::clock::mono_ns().saturating_add(hold.as_nanos() as u64),
                Ordering::AcqRel,
            );
        }
    }

    /// Whether a process of the container may still hold a context charge parked on
    /// container device `device` (a refused reservation then waits for it to be settled).
    pub fn context_parked(&self, device: usize) -> bool {
        self.region_device(device)
            .and_then(|d| self.region.device(d).ok())
            .is_some_and(|d| {
                d.context_parked_until_ns.load(Ordering::Acquire) > crate::clock::mono_ns()
            })
    }

    /// Region device index of a container device index.
    pub fn region_device(&self, device: usize) -> Option<usize> {
        let d = self.dev_map.get(device)?.load(Ordering::Acquire);
        (d != NO_DEVICE).then_some(d)
    }

    /// Sets what the watcher thread runs each tick after its own work (the runtime's: the
    /// launch gate's controller, the settling of parked charges, the host pid's lazy
    /// narrowing). The thread itself starts at the process's first need of it
    /// ([`SharedRegion::ensure_watcher`]).
    pub fn set_watcher_tick(&self, tick: fn(&'static SharedRegion)) {
        let _ = TICK.set(tick);
    }

    /// Starts this process's watcher thread unless it runs (once per process, again in a
    /// `fork` child whose parent had one): each tick it beats the slot's heartbeat, reaps
    /// dead processes, then runs the tick set by [`SharedRegion::set_watcher_tick`].
    ///
    /// Started when first needed, not with the process's state: a thread's start and its
    /// teardown at exit were a fifth of what the library added to a short process of a
    /// container starting together (issue 9 item 4). It is needed — and started — by the
    /// first kernel launch (activity and utilization published for the monitor, the
    /// controller's ticks), a compute cap configured (at start), a memory query or a
    /// refusal (the container's usage kept exact for those who look: the periodic reap), a context
    /// charge parked at start, and a host pid left to narrow.
    /// Whether this process's watcher thread was started.
    pub fn watcher_started(&self) -> bool {
        WATCHER_STARTED.load(Ordering::Acquire)
    }

    #[inline]
    pub fn ensure_watcher(&'static self) {
        if !WATCHER_STARTED.load(Ordering::Acquire) {
            self.spawn_watcher();
        }
    }

    #[cold]
    #[inline(never)]
    fn spawn_watcher(&'static self) {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        if REAPER_PID.swap(pid, Ordering::AcqRel) == pid {
            return;
        }
        WATCHER_STARTED.store(true, Ordering::Release);
        quiet_watcher_panics();
        // LD_AUDIT mode: created by the program's libc, which must know of every thread
        // that calls into its namespace (`core::namespace::spawn_program_thread`).
        let arg = self as *const SharedRegion as *mut std::ffi::c_void;
        // SAFETY: `arg` is `&'static self`, what `program_thread_watch` reads.
        let program_thread = unsafe {
            crate::core::namespace::spawn_program_thread(program_thread_watch, arg, WATCHER_STACK)
        };
        let spawned = match program_thread {
            Some(started) => started,
            None => std::thread::Builder::new()
                .name(WATCHER_NAME.into())
                .stack_size(WATCHER_STACK)
                .spawn(move || self.watch())
                .is_ok(),
        };
        if !spawned {
            WATCHER_STARTED.store(false, Ordering::Release);
            REAPER_PID.store(0, Ordering::Release);
        }
    }

    /// The watcher thread's life: one guarded tick per period, forever. A panicking tick
    /// must not end reaping and the compute cap's controller for the rest of the process
    /// (nobody would notice): it is caught, the first one is logged, and the loop starts
    /// again after a backoff that doubles with each consecutive panic (50 ms .. 2 s) and
    /// resets after a good tick. All the watcher's state lives in statics and the region,
    /// so the next tick starts from a consistent state.
    ///
    /// The first tick comes one period after the start, not at once: nothing in it is due
    /// earlier (the attach opened the gate; a refusal or a query reaps at once), and the processes
    /// of a container starting together would otherwise all tick in their start-up, one
    /// of them scanning every slot's process (issue 9 item 4).
    fn watch(&'static self) {
        IN_WATCHER.with(|w| w.set(true));
        let mut consecutive = 0u32;
        std::thread::sleep(WATCH_PERIOD);
        loop {
            // AssertUnwindSafe: a tick leaves nothing half-done that the next one relies
            // on (atomics in the region and in statics, each update complete on its own).
            let tick = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                debug_inject_watcher_panic();
                self.watcher_tick();
            }));
            match tick {
                Ok(()) => {
                    consecutive = 0;
                    std::thread::sleep(WATCH_PERIOD);
                }
                Err(payload) => {
                    consecutive = consecutive.saturating_add(1);
                    let total = WATCHER_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
                    if total == 1 {
                        crate::log::write_line(format_args!(
                            "the watcher thread panicked ({}); restarting it (reaping and the \
                             core cap continue); further panics are counted, not logged",
                            panic_message(&*payload)
                        ));
                    }
                    std::thread::sleep(watcher_backoff(consecutive));
                }
            }
        }
    }

    fn watcher_tick(&'static self) {
        if let Some(slot) = self.slot() {
            self.region.ext.slots[slot]
                .heartbeat_ns
                .store(crate::clock::mono_ns(), Ordering::Relaxed);
        }
        self.reap(false);
        if let Some(tick) = TICK.get() {
            tick(self);
        }
    }

    /// In a `fork` child: claim a slot of its own (the parent's stays the parent's).
    fn ensure_own_slot(&'static self) {
        // A load first: the swap (a locked RMW) only in a fork child that needs its slot.
        if CHILD_NEEDS_SLOT.load(Ordering::Acquire)
            && CHILD_NEEDS_SLOT.swap(false, Ordering::AcqRel)
        {
            self.slot.store(usize::MAX, Ordering::Release);
            self.claim_own_slot();
            if CHILD_HAD_WATCHER.swap(false, Ordering::AcqRel) {
                self.spawn_watcher();
            }
        }
    }
}

const WATCHER_NAME: &str = "vgpu-watcher";
const WATCHER_STACK: usize = 64 * 1024;

thread_local! {
    /// Set on the watcher thread (however it was created: `std::thread` names it, the
    /// program's `pthread_create` in LD_AUDIT mode does not), for the panic hook.
    static IN_WATCHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The watcher's start routine when the program's libc creates it (LD_AUDIT mode).
extern "C" fn program_thread_watch(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes (the thread's
    // comm, as `std::thread::Builder::name` sets it).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"vgpu-watcher".as_ptr());
    }
    // SAFETY: `arg` is the `&'static SharedRegion` spawn_watcher passed.
    let region: &'static SharedRegion = unsafe { &*(arg as *const SharedRegion) };
    // No panic crosses into the program's libc: `watch` catches each tick's; this catches
    // anything else (the thread then ends; the region stays usable). AssertUnwindSafe: the
    // region is shared state built to survive a torn tick (see `watch`).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| region.watch()));
    std::ptr::null_mut()
}
/// Panics the watcher thread caught (over the process's life).
static WATCHER_PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many watcher panics were caught so far.
pub fn watcher_panics() -> u64 {
    WATCHER_PANICS.load(Ordering::Relaxed)
}

/// Pause before the watcher's next tick after `consecutive` panics in a row.
pub fn watcher_backoff(consecutive: u32) -> Duration {
    let ms = 50u64 << consecutive.saturating_sub(1).min(6);
    Duration::from_millis(ms.min(2000))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// The default panic hook would print every watcher panic to the host's stderr; the
/// watcher logs the first one itself. Other threads' panics keep the previous hook.
fn quiet_watcher_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_watcher = IN_WATCHER.try_with(|w| w.get()).unwrap_or(false);
            if !in_watcher && std::thread::current().name() != Some(WATCHER_NAME) {
                previous(info);
            }
        }));
    });
}

/// Test hook, in debug builds only (the shipped release build has no such code):
/// `VGPU_DEBUG_WATCHER_PANICS=N` makes the watcher's first N ticks panic, so the tests can
/// show the thread survives. Read once.
#[cfg(debug_assertions)]
fn debug_inject_watcher_panic() {
    static LEFT: OnceLock<std::sync::atomic::AtomicU32> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var("VGPU_DEBUG_WATCHER_PANICS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::sync::atomic::AtomicU32::new(n)
    });
    if left
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
    {
        panic!("injected by VGPU_DEBUG_WATCHER_PANICS");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
fn debug_inject_watcher_panic() {}

/// `pthread_atfork` child hook: the child is a new process and needs its own slot.
pub fn after_fork_in_child() {
    // The parent's threads are not the child's: its watcher, if any, is started again with
    // the child's slot.
    CHILD_HAD_WATCHER.store(
        WATCHER_STARTED.swap(false, Ordering::AcqRel),
        Ordering::Release,
    );
    CHILD_NEEDS_SLOT.store(true, Ordering::Release);
}

/// Set by the clean-exit handler: from then on the watcher keeps off the region lock. A
/// watcher the process's exit kills while it holds the lock would leave it to the next
/// process to repair (and say so on stderr) after a clean exit.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The clean-exit handler (our libc's `atexit`, or the program's `__cxa_atexit` in LD_AUDIT
/// mode). It gives nothing back: it marks the slot EXITING and leaves every charge in it.
/// The driver may still hold the process's memory well after any handler or destructor of
/// ours has run — its own at-exit teardown may run later, and a driver that frees what an
/// exiting process holds when the kernel closes its device files (the real NVIDIA driver
/// does) lets go only after every destructor. Credited earlier, a neighbour of the container
/// could allocate into memory the driver still holds (issue 9 item 1). The charges come back
/// when the process is gone, through the reaper (`SharedRegion::reap`), which a neighbour's
/// refused reservation, its memory queries, `vgpuctl inspect` and the watchers run.
extern "C" fn mark_exiting_at_exit() {
    // Before anything else: a reap in progress finishes first, and none starts after it.
    EXITING.store(true, Ordering::SeqCst);
    // A fork child that never claimed a slot of its own still names its parent's: the
    // parent's, not ours to mark.
    if CHILD_NEEDS_SLOT.load(Ordering::Acquire) {
        return;
    }
    if let Some(r) = REGION.get() {
        r.mark_own_slot_exiting();
    }
}

/// Registers the clean-exit mark of this process's slot.
pub fn mark_slot_exiting_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // LD_AUDIT mode: our libc's at-exit list is not the one the program's exit runs.
        if crate::core::namespace::register_at_exit(mark_exiting_at_exit_with_arg) {
            return;
        }
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(mark_exiting_at_exit);
        }
    });
}

/// The clean-exit mark in LD_AUDIT mode (the program's `__cxa_atexit`, its argument unused).
/// When it runs relative to the driver's teardown does not matter: it credits nothing.
extern "C" fn mark_exiting_at_exit_with_arg(_: *mut std::ffi::c_void) {
    mark_exiting_at_exit();
}

/// The ledger's capacity pool over the region: container-wide, lock-free reservations.
pub struct SharedPool {
    pub region: &'static SharedRegion,
    /// Devices this process must not allocate on at all: a malformed limit fails closed at
    /// 0 bytes, which the region cannot express (0 there means "no cap").
    pub refused: [bool; MAX_DEVICES],
}

impl SharedPool {
    fn target(&self, device: usize) -> Option<(usize, usize)> {
        self.region.ensure_own_slot();
        Some((self.region.slot()?, self.region.region_device(device)?))
    }
}

fn memory_kind(bucket: usize) -> MemoryKind {
    match bucket {
        1 => MemoryKind::Context,
        2 => MemoryKind::Module,
        _ => MemoryKind::Data,
    }
}

impl SharedPool {
    /// Marks in the region the devices this process refuses every allocation on (a
    /// malformed limit, fail closed), so `vgpuctl inspect` and readers show a 0-byte cap
    /// rather than "no cap".
    pub fn publish_refusals(&self) {
        for (i, _) in self.refused.iter().enumerate().filter(|(_, &r)| r) {
            if let Some(state) = self
                .region
                .region_device(i)
                .and_then(|d| self.region.region().device(d).ok())
            {
                state
                    .flags
                    .fetch_or(shm_layout::DEVICE_MEMORY_REFUSED, Ordering::AcqRel);
            }
        }
    }
}

impl CapacityPool for SharedPool {
    fn try_reserve(&self, device: usize, bytes: u64) -> bool {
        if self.refused.get(device).copied().unwrap_or(true) {
            return false;
        }
        let Some((slot, dev)) = self.target(device) else {
            return false;
        };
        let r = self.region.region();
        if r.try_reserve(slot, dev, bytes).is_ok() {
            return true;
        }
        // Memory held by processes that died is the container's again: reap, then retry.
        self.region.reap(true);
        r.try_reserve(slot, dev, bytes).is_ok()
    }

    fn try_reserve_usage(&self, device: usize, bucket: usize, bytes: u64) -> Option<bool> {
        if self.refused.get(device).copied().unwrap_or(true) {
            return None;
        }
        let (slot, dev) = self.target(device)?;
        let r = self.region.region();
        let kind = Some(memory_kind(bucket));
        if r.try_reserve_with_usage(slot, dev, bytes, kind).is_ok() {
            return Some(true);
        }
        // Memory held by processes that died is the container's again: reap, then retry.
        self.region.reap(true);
        r.try_reserve_with_usage(slot, dev, bytes, kind)
            .is_ok()
            .then_some(true)
    }

    fn on_granted(&self, device: usize) {
        if let Some((_, dev)) = self.target(device) {
            self.region.region().note_peak(dev);
        }
    }

    fn force_reserve(&self, device: usize, bytes: u64) {
        if let Some((slot, dev)) = self.target(device) {
            self.region.region().force_reserve(slot, dev, bytes);
        }
    }

    fn release(&self, device: usize, bytes: u64) {
        if let Some((slot, dev)) = self.target(device) {
            self.region.region().release(slot, dev, bytes);
        }
    }

    fn used(&self, device: usize) -> u64 {
        // Memory queries (cuMemGetInfo and kin) and a refusal's report only, never an
        // allocation that fits: an exited process counts until it is gone, not until the
        // next watcher tick, and a killed one until the next periodic reap, which this
        // process's watcher runs from now on.
        self.region.ensure_watcher();
        self.region.reap_exited();
        self.region
            .region_device(device)
            .and_then(|d| self.region.region().device(d).ok())
            .map_or(0, |d| d.reserved_bytes.load(Ordering::Acquire))
    }

    fn limit(&self, device: usize) -> Option<u64> {
        if self.refused.get(device).copied().unwrap_or(false) {
            return Some(0);
        }
        let d = self.region.region_device(device)?;
        let limit = self
            .region
            .region()
            .device(d)
            .ok()?
            .limit_bytes
            .load(Ordering::Acquire);
        (limit != 0).then_some(limit)
    }

    fn on_usage(&self, device: usize, bucket: usize, delta: i64) -> bool {
        let Some((slot, dev)) = self.target(device) else {
            return false;
        };
        let r = self.region.region();
        r.v1.procs[slot].adjust_usage(dev, memory_kind(bucket), delta);
        if delta > 0 {
            // The driver granted it: now it may count as the container's peak.
            r.note_peak(dev);
        }
        true
    }

    fn release_with_usage(&self, device: usize, bucket: usize, bytes: u64) -> bool {
        let Some((slot, dev)) = self.target(device) else {
            return false;
        };
        // One bracket for the monitor's figure and the capacity (shm-layout ledger.rs).
        self.region
            .region()
            .release_with_usage(slot, dev, bytes, Some(memory_kind(bucket)));
        true
    }

    fn published_usage(&self, device: usize) -> Option<crate::ledger::Usage> {
        let (slot, dev) = self.target(device)?;
        let (u, _) = self.region.region().v1.procs[slot].load_usage(dev);
        Some(crate::ledger::Usage {
            data: u.data_size,
            context: u.context_size,
            module: u.module_size,
        })
    }

    fn after_fork_child(&self) {
        after_fork_in_child();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_backoff_doubles_and_is_bounded() {
        let ms: Vec<u128> = (1..=9).map(|k| watcher_backoff(k).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn panic_messages_of_both_payload_kinds() {
        let a = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*a), "plain");
        let b = std::panic::catch_unwind(|| panic!("{}", 7)).unwrap_err();
        assert_eq!(panic_message(&*b), "7");
    }
}
