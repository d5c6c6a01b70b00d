//! vgpu's extension block, at [`EXT_OFFSET`](crate::EXT_OFFSET) right after HAMi's v1 block.
//!
//! HAMi's monitor never reads past the v1 block, so everything here is ours: the robust
//! lock, container-wide per-device atomics (the memory ledger and the compute token bucket)
//! and one record per process slot, parallel to `procs[]`. Records are 64-byte aligned and
//! hot fields written by different processes sit on different cache lines.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64};

use crate::{EXT_RESERVED_TAIL_WORDS, MAX_DEVICES, MAX_PROCS};

/// Bytes of a glibc x86-64 `pthread_mutex_t`; the lock area reserves 64.
pub const PTHREAD_MUTEX_BYTES: usize = 40;

/// Storage for a process-shared robust `pthread_mutex_t` (64 bytes, 64-aligned).
///
/// The bytes belong to pthread: vgpu only hands out a raw pointer to them.
#[repr(C, align(64))]
pub struct RobustLockArea(UnsafeCell<[u8; 64]>);

// SAFETY: the bytes are only ever accessed through `as_mut_ptr()` by `pthread_mutex_*`
// functions, which synchronise concurrent callers (threads and processes) themselves.
unsafe impl Sync for RobustLockArea {}

impl RobustLockArea {
    /// Pointer to cast to `*mut libc::pthread_mutex_t` (40 bytes on x86-64 glibc).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.0.get().cast()
    }
}

/// Slot lifecycle states (`SlotExt::state`).
pub mod slot_state {
    /// Unused; all counters zero; `owner_token == 0`.
    pub const FREE: u32 = 0;
    /// Claimed (`owner_token` set) but not yet published; `reserved[]` is 0.
    pub const CLAIMING: u32 = 1;
    /// A live process owns the slot.
    pub const ACTIVE: u32 = 2;
    /// Owner dead or gone; its charge is being (or has been) returned. Excluded from audits.
    pub const TOMBSTONE: u32 = 3;
    /// The owner began a clean exit (ext minor 1.5). Its charges stay counted, and its v1
    /// `procs[i]` entry stays as it was, until the process is gone (no longer exists, or a
    /// zombie): until then the driver may still hold its memory (a driver frees what an
    /// exiting process holds when the kernel closes its device files, after every exit
    /// handler and destructor). Then the reaper reclaims it like a dead ACTIVE slot.
    /// Counted by audits like ACTIVE.
    pub const EXITING: u32 = 4;
}

/// `ExtHeader::flags` bits.
pub mod ext_flags {
    /// Container totals may disagree with the slots (a process died mid-operation, or a lock
    /// holder died): the next lock holder should run [`Region::audit_totals`](crate::Region::audit_totals).
    pub const AUDIT_NEEDED: u32 = 1;
    /// An audit is running: ledger operations that see it back off briefly (bounded) so the
    /// auditor finds every live slot between operations. Cleared by the auditor, or by the
    /// next lock holder after `EOWNERDEAD`.
    pub const AUDIT_FREEZE: u32 = 2;
}

/// Header of the extension block (256 bytes at `EXT_OFFSET`).
#[repr(C, align(64))]
pub struct ExtHeader {
    /// [`EXT_MAGIC`](crate::EXT_MAGIC).
    pub ext_magic: AtomicU64,
    /// [`EXT_MAJOR_VERSION`](crate::EXT_MAJOR_VERSION): layout-incompatible changes.
    pub ext_major: AtomicU32,
    /// [`EXT_MINOR_VERSION`](crate::EXT_MINOR_VERSION): compatible additions in reserved space.
    pub ext_minor: AtomicU32,
    /// Bytes from `EXT_OFFSET` to the end of the region ([`EXT_SIZE`](crate::EXT_SIZE)).
    pub ext_size: AtomicU64,
    /// Total region size ([`REGION_SIZE`](crate::REGION_SIZE)).
    pub region_size: AtomicU64,
    /// [`EXT_OFFSET`](crate::EXT_OFFSET), so readers need no constant.
    pub ext_offset: AtomicU64,
    /// Entries in `devices` ([`MAX_DEVICES`]).
    pub device_capacity: AtomicU32,
    /// Entries in `slots` ([`MAX_PROCS`]).
    pub slot_capacity: AtomicU32,
    /// `size_of::<DeviceExt>()` (256).
    pub device_record_size: AtomicU32,
    /// `size_of::<SlotExt>()` (256).
    pub slot_record_size: AtomicU32,
    /// CLOCK_REALTIME nanoseconds when the region was initialized (diagnostic).
    pub created_unix_ns: AtomicU64,
    /// The robust process-shared mutex guarding slot claim/free, reaping, device registration.
    pub lock: RobustLockArea,
    /// Incremented on every slot claim, release, reclaim and limit change.
    pub generation: AtomicU64,
    /// Hash of `/proc/sys/kernel/random/boot_id` at init; a different boot re-initializes.
    pub boot_id_hash: AtomicU64,
    /// CLOCK_MONOTONIC ns of the last reaper pass (any process may reap; CAS to claim a pass).
    pub last_reap_ns: AtomicU64,
    /// [`ext_flags`] bits.
    pub flags: AtomicU32,
    /// One past the highest slot index ever claimed since init (scan bound).
    pub slot_high_water: AtomicU32,
    /// PID (container namespace) of the current lock holder, 0 = none (diagnostic only).
    pub lock_holder_pid: AtomicI32,
    pub(crate) _pad0: AtomicU32,
    pub(crate) _reserved: [AtomicU64; 11],
}

/// `DeviceExt::flags`: a process of the container has a malformed memory limit for this
/// device and refuses every allocation on it (fail closed), while `limit_bytes` stays 0 as
/// HAMi's layout knows it. Readers show it as a 0-byte cap, not as "no cap".
pub const DEVICE_MEMORY_REFUSED: u64 = 1;

/// Container-wide state of one device (256 bytes): four cache lines.
#[repr(C, align(64))]
pub struct DeviceExt {
    // Line 0: configuration, read-mostly.
    /// [`uuid_key`](crate::uuid_key) of the device's UUID, 0 = unregistered. Published last.
    pub uuid_key: AtomicU64,
    /// Memory cap in bytes for the whole container, 0 = no cap. Authoritative.
    pub limit_bytes: AtomicU64,
    /// Compute cap in percent of the device, 0 = no cap.
    pub sm_limit: AtomicU64,
    /// Token-bucket refill rate in tokens per second (unit defined by the compute throttle).
    pub refill_rate: AtomicU64,
    /// Token-bucket capacity (burst), tokens.
    pub bucket_capacity: AtomicI64,
    /// [`DEVICE_MEMORY_REFUSED`] and later bits, set by any process (atomic or).
    pub flags: AtomicU64,
    pub(crate) _reserved0: [AtomicU64; 1],
    /// Compute throttle: the container's latest calibrated device time per launch (ns), the
    /// starting estimate of a process that has not measured its own yet; 0 = none yet.
    pub cost_hint_ns: AtomicI64,
    // Line 1: memory ledger, hot on allocation.
    /// Bytes charged on this device by all processes of the container. Never exceeds
    /// `limit_bytes` when that is non-zero.
    pub reserved_bytes: AtomicU64,
    /// High-water mark of `reserved_bytes` since init.
    pub peak_reserved_bytes: AtomicU64,
    /// Reservations refused because they would pass `limit_bytes`.
    pub reserve_failures: AtomicU64,
    /// The device memory a context costs on this device, as a process of the container
    /// measured it (driver's figure), **plus one**; 0 = none measured yet. Where a new
    /// process's context estimate starts (minor 1.2).
    pub context_bytes_hint: AtomicU64,
    /// CLOCK_MONOTONIC ns until which one process of the container holds the measurement
    /// of the first context on this device (a CAS from a past value): the others wait for
    /// its `context_bytes_hint` instead of each measuring through NVML; 0 or past = free
    /// (minor 1.4).
    pub context_measure_until_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns until which a process of the container may hold a context charge
    /// parked at a conservative size (atomic max when parking): a reservation refused
    /// before then waits (bounded) for those charges to be cut to the measured figure
    /// rather than failing at once (minor 1.5).
    pub context_parked_until_ns: AtomicU64,
    pub(crate) _reserved1: [AtomicU64; 2],
    // Line 2: compute token bucket, hot on launch.
    /// Available tokens; may go negative (debt) when a launch is charged after the fact.
    pub tokens: AtomicI64,
    /// CLOCK_MONOTONIC ns of the last refill.
    pub last_refill_ns: AtomicU64,
    /// Launches that had to wait for tokens.
    pub throttled_launches: AtomicU64,
    /// Total ns launches spent waiting for tokens.
    pub throttle_wait_ns: AtomicU64,
    /// Compute throttle: device time (ns) charged for launches by all processes of the
    /// container, cumulative; each process's watcher adds what its launches were charged
    /// since its previous tick (minor 1.3). With a device-level utilization source (AMD)
    /// the container's device time minus this is what it has not paid for yet.
    pub launch_charged_ns: AtomicI64,
    /// Compute throttle: the container's launches, thousandths, cumulative (added like
    /// `launch_charged_ns`, minor 1.3): with a device-level source, a process's part of the
    /// device's busy time is its part of these.
    pub launches_milli: AtomicI64,
    pub(crate) _reserved2: [AtomicU64; 2],
    // Line 3: room for later minor versions.
    pub(crate) _reserved3: [AtomicU64; 8],
}

/// vgpu's record for process slot `i`, parallel to `procs[i]` (256 bytes).
#[repr(C, align(64))]
pub struct SlotExt {
    /// 0 = free, else the claimer's unique token (see [`owner_token`](crate::owner_token)).
    pub owner_token: AtomicU64,
    /// [`slot_state`] value.
    pub state: AtomicU32,
    /// Owner PID in the container's PID namespace.
    pub pid: AtomicI32,
    /// Owner start time: `/proc/<pid>/stat` field 22 (clock ticks since boot). With `pid`,
    /// identifies the process across PID reuse.
    pub start_time: AtomicU64,
    /// CLOCK_MONOTONIC ns, refreshed by the owner periodically (diagnostic and a liveness hint).
    pub heartbeat_ns: AtomicU64,
    /// Odd while the owner is between the two halves of a ledger operation.
    pub op_seq: AtomicU64,
    /// CLOCK_MONOTONIC ns when the slot was claimed.
    pub claim_ns: AtomicU64,
    /// The claimer's pid namespace (inode of `/proc/self/ns/pid`), 0 = unknown (written
    /// before ext minor 1.5). `pid` and liveness mean something only in that namespace: a
    /// reaper in another one (`vgpuctl inspect` on the host) must leave the slot alone.
    pub pid_ns: AtomicU64,
    pub(crate) _reserved0: [AtomicU64; 1],
    /// Bytes this process has charged per device: authoritative for reclaim and audit.
    pub reserved: [AtomicU64; MAX_DEVICES],
    pub(crate) _reserved1: [AtomicU64; 8],
}

/// The whole extension block.
#[repr(C, align(64))]
pub struct ExtBlock {
    pub header: ExtHeader,
    /// Per-device state, same index as the v1 `uuids`/`limit`/`sm_limit`.
    pub devices: [DeviceExt; MAX_DEVICES],
    /// Per-slot records, same index as the v1 `procs`.
    pub slots: [SlotExt; MAX_PROCS],
    /// Zero; room for later minor versions without changing the region size.
    pub(crate) _reserved_tail: [AtomicU64; EXT_RESERVED_TAIL_WORDS],
}
