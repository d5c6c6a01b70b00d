//! The container-wide shared region: its `#[repr(C)]` layout, attach-time validation and the
//! lock-free ledger primitives that operate on it. The bytes are specified in `SPEC.md`
//! next to this crate; this file and the spec must agree (the layout tests pin every offset).
//!
//! Layout (x86-64, little-endian):
//!
//! | bytes                     | content                                              |
//! |---------------------------|------------------------------------------------------|
//! | `0 .. 2_008_952`          | HAMi-core layout v1 ([`HamiV1Region`]), byte-exact    |
//! | `2_008_952 .. 2_009_088`  | zero gap (aligns the extension to 2048)               |
//! | `2_009_088 .. 3_145_728`  | vgpu extension ([`ExtBlock`])                         |
//!
//! Every field is an atomic type (or `UnsafeCell` for the pthread mutex bytes), so a
//! `&Region` over memory that other processes write concurrently is sound: nothing in the
//! region is ever assumed immutable behind a shared reference.

mod ext;
mod ledger;
#[cfg(feature = "lock")]
mod lock;
mod v1;
mod validate;

#[cfg(test)]
mod layout_tests;

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub use ext::{
    ext_flags, slot_state, DeviceExt, ExtBlock, ExtHeader, RobustLockArea, SlotExt,
    DEVICE_MEMORY_REFUSED, PTHREAD_MUTEX_BYTES,
};
pub use ledger::{
    owner_is_alive, owner_token, parse_proc_stat, AuditBusy, ProcStat, ReapScope, ReclaimReport,
    ReserveError,
};
#[cfg(feature = "lock")]
pub use lock::RegionLock;
pub use v1::{
    DeviceMemory, DeviceUtil, HamiV1Region, MemoryKind, OpaqueSem, ProcSlot, SlotUsage, UuidBytes,
};
pub use validate::{classify, AttachAction, HeaderView, RegionStatus, EXT_PROBE_LEN, V1_PROBE_LEN};

/// HAMi's `initialized_flag` value (`MULTIPROCESS_SHARED_REGION_MAGIC_FLAG`).
pub const HAMI_MAGIC: i32 = 19_920_718;
/// Layout major version HAMi's monitor requires.
pub const HAMI_MAJOR_VERSION: i32 = 1;
/// Layout minor version written by vgpu (HAMi-core writes 1; the monitor ignores it).
pub const HAMI_MINOR_VERSION: i32 = 1;
/// Device entries in every per-device array (`CUDA_DEVICE_MAX_COUNT`).
pub const MAX_DEVICES: usize = 16;
/// Process slots (`SHARED_REGION_MAX_PROCESS_NUM`).
pub const MAX_PROCS: usize = 1024;
/// Bytes of one UUID string buffer, NUL terminator included.
pub const UUID_LEN: usize = 96;
/// Size of HAMi's v1 `shared_region_t`.
pub const V1_SIZE: usize = 2_008_952;
/// Size of one HAMi process slot.
pub const PROC_SLOT_SIZE: usize = 1960;
/// Offset of the vgpu extension block (first multiple of 2048 after `V1_SIZE`).
pub const EXT_OFFSET: usize = 2_009_088;
/// Total region (and file) size: 3 MiB.
pub const REGION_SIZE: usize = 3 * 1024 * 1024;
/// Size of the extension block, its reserved tail included.
pub const EXT_SIZE: usize = REGION_SIZE - EXT_OFFSET;
/// Size of the extension header.
pub const EXT_HEADER_SIZE: usize = 256;
/// Size of one [`DeviceExt`] record.
pub const DEVICE_EXT_SIZE: usize = 256;
/// Size of one [`SlotExt`] record.
pub const SLOT_EXT_SIZE: usize = 256;
/// Offset of `devices[0]` inside the extension block.
pub const EXT_DEVICES_OFFSET: usize = EXT_HEADER_SIZE;
/// Offset of `slots[0]` inside the extension block.
pub const EXT_SLOTS_OFFSET: usize = EXT_DEVICES_OFFSET + MAX_DEVICES * DEVICE_EXT_SIZE;
/// Offset of the reserved tail inside the extension block.
pub const EXT_TAIL_OFFSET: usize = EXT_SLOTS_OFFSET + MAX_PROCS * SLOT_EXT_SIZE;
/// 64-bit words in the extension's reserved tail.
pub const EXT_RESERVED_TAIL_WORDS: usize = (EXT_SIZE - EXT_TAIL_OFFSET) / 8;
/// Extension magic: the ASCII bytes `VGPU_EXT` read as a little-endian u64.
pub const EXT_MAGIC: u64 = u64::from_le_bytes(*b"VGPU_EXT");
/// Extension major version: bumped only for layout-incompatible changes.
pub const EXT_MAJOR_VERSION: u32 = 1;
/// Extension minor version: compatible additions inside reserved space.
pub const EXT_MINOR_VERSION: u32 = 5;
/// Region file path when `CUDA_DEVICE_MEMORY_SHARED_CACHE` is unset.
pub const DEFAULT_REGION_PATH: &str = "/tmp/cudevshr.cache";
/// Mode of a created region file, set with `fchmod` (umask-independent): every user of
/// the container may attach.
pub const REGION_FILE_MODE: u32 = 0o666;
/// `recent_kernel` value the monitor writes to hold launches.
pub const RECENT_KERNEL_HOLD: i32 = -1;
/// `recent_kernel` written at init (HAMi-core's value).
pub const RECENT_KERNEL_INIT: i32 = 2;
/// `utilization_switch` written at init (HAMi-core's value: enforce).
pub const UTILIZATION_SWITCH_INIT: i32 = 1;
/// `priority` when `CUDA_TASK_PRIORITY` is unset (HAMi's default).
pub const DEFAULT_PRIORITY: i32 = 1;
/// `ProcSlot::status` of an active process.
pub const SLOT_STATUS_ACTIVE: i32 = 1;

// The layout is also checked at compile time, so no build can produce misplaced bytes;
// `layout_tests` pins every individual field.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<ProcSlot>() == PROC_SLOT_SIZE);
    assert!(size_of::<HamiV1Region>() == V1_SIZE);
    assert!(offset_of!(Region, ext) == EXT_OFFSET);
    assert!(size_of::<ExtBlock>() == EXT_SIZE);
    assert!(size_of::<Region>() == REGION_SIZE);
    assert!(REGION_SIZE <= 4 * 1024 * 1024);
};

/// Errors of the layout accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `from_ptr` got a null pointer.
    NullPointer,
    /// The mapping is not aligned to `align_of::<Region>()` (64).
    Misaligned { addr: usize, align: usize },
    /// The mapping is shorter than [`REGION_SIZE`].
    TooSmall { len: usize, needed: usize },
    /// A device index `>= MAX_DEVICES`.
    DeviceIndex(usize),
    /// A slot index `>= MAX_PROCS`.
    SlotIndex(usize),
    /// A UUID of `UUID_LEN` bytes or more (no room for the NUL), or containing a NUL.
    BadUuid { len: usize },
    /// All `MAX_DEVICES` device entries hold other UUIDs.
    NoFreeDevice,
    /// All `MAX_PROCS` slots are claimed.
    NoFreeSlot,
    /// The slot's `owner_token` is not the expected one (someone else reclaimed/reused it).
    NotOwner { slot: usize },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NullPointer => write!(f, "shared region pointer is null"),
            Self::Misaligned { addr, align } => {
                write!(f, "shared region at {addr:#x} is not {align}-byte aligned")
            }
            Self::TooSmall { len, needed } => {
                write!(f, "shared region mapping is {len} bytes, needs {needed}")
            }
            Self::DeviceIndex(i) => write!(f, "device index {i} >= {MAX_DEVICES}"),
            Self::SlotIndex(i) => write!(f, "slot index {i} >= {MAX_PROCS}"),
            Self::BadUuid { len } => {
                write!(
                    f,
                    "UUID of {len} bytes does not fit {UUID_LEN} NUL-terminated"
                )
            }
            Self::NoFreeDevice => write!(f, "all {MAX_DEVICES} device entries are in use"),
            Self::NoFreeSlot => write!(f, "all {MAX_PROCS} process slots are in use"),
            Self::NotOwner { slot } => write!(f, "slot {slot} has another owner"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// The whole shared region (`REGION_SIZE` bytes, 64-byte aligned).
#[repr(C, align(64))]
pub struct Region {
    /// HAMi's v1 block, read (and partly written) by HAMi's node monitor.
    pub v1: HamiV1Region,
    pub(crate) _v1_gap: [AtomicU8; EXT_OFFSET - V1_SIZE],
    /// vgpu's own state.
    pub ext: ExtBlock,
}

/// One device's configuration for [`Region::init_unpublished`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInit {
    /// `GPU-…` / `MIG-…` UUID string.
    pub uuid: String,
    /// Memory cap in bytes, 0 = none.
    pub limit_bytes: u64,
    /// Compute cap in percent, 0 = none.
    pub sm_limit: u64,
}

/// What [`Region::init_unpublished`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitParams {
    /// Devices in container index order (at most `MAX_DEVICES`).
    pub devices: Vec<DeviceInit>,
    /// `CUDA_TASK_PRIORITY` ([`DEFAULT_PRIORITY`] when unset).
    pub priority: i32,
    /// CLOCK_REALTIME ns now (diagnostic `created_unix_ns`).
    pub created_unix_ns: u64,
    /// [`boot_id_hash`] of `/proc/sys/kernel/random/boot_id`, 0 if unreadable.
    pub boot_id_hash: u64,
}

/// A borrowed process slot: HAMi's part and vgpu's part, same index.
#[derive(Clone, Copy)]
pub struct SlotRef<'a> {
    pub index: usize,
    pub v1: &'a ProcSlot,
    pub ext: &'a SlotExt,
}

/// FNV-1a 64 of the UUID string's bytes, with 0 mapped to 1 (0 means "no device").
pub fn uuid_key(uuid: &str) -> u64 {
    let hash = fnv1a64(uuid.as_bytes());
    if hash == 0 {
        1
    } else {
        hash
    }
}

/// FNV-1a 64 of the boot id text with surrounding whitespace trimmed, 0 mapped to 1.
pub fn boot_id_hash(boot_id: &str) -> u64 {
    uuid_key(boot_id.trim())
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Region {
    /// Views `len` mapped bytes at `ptr` as the region.
    ///
    /// Checks null, 64-byte alignment (any `mmap` result qualifies) and `len >= REGION_SIZE`.
    /// Does not validate the content: use [`classify`] on [`Region::header_view`].
    ///
    /// # Safety
    /// `ptr..ptr+len` must be readable and writable memory (typically a `MAP_SHARED` mapping
    /// of the region file, at least `REGION_SIZE` bytes long) that stays mapped for `'a`, and
    /// is only ever accessed through atomic operations or pthread mutex calls — which is what
    /// every other vgpu process and HAMi's monitor do.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8, len: usize) -> Result<&'a Region, LayoutError> {
        if ptr.is_null() {
            return Err(LayoutError::NullPointer);
        }
        let align = core::mem::align_of::<Region>();
        if !(ptr as usize).is_multiple_of(align) {
            return Err(LayoutError::Misaligned {
                addr: ptr as usize,
                align,
            });
        }
        if len < REGION_SIZE {
            return Err(LayoutError::TooSmall {
                len,
                needed: REGION_SIZE,
            });
        }
        // SAFETY: non-null, aligned, large enough (checked above); valid for 'a and only
        // accessed atomically (caller's contract). All-bit-patterns are valid for every field
        // (integers, atomics, bytes), so any content is a valid `Region`.
        Ok(unsafe { &*ptr.cast::<Region>() })
    }

    /// A zeroed region on the heap: the process-local fallback when the shared file is
    /// unusable, and the fixture of tests. Zero bytes are the state [`classify`] calls
    /// `NeedsInit`.
    pub fn new_boxed() -> Box<Region> {
        let layout = std::alloc::Layout::new::<Region>();
        // SAFETY: the layout has non-zero size. All-zero bytes are a valid `Region` (atomics
        // and integers), so `Box::from_raw` on the zeroed allocation of exactly this layout
        // is sound; allocation failure is routed to `handle_alloc_error`.
        unsafe {
            let ptr = std::alloc::alloc_zeroed(layout).cast::<Region>();
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(ptr)
        }
    }

    /// The region as 64-bit words, for zeroing and whole-region checks.
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `Region` is `REGION_SIZE` bytes (a multiple of 8), 64-aligned, and every
        // byte of it is inside an `UnsafeCell` (atomics, the lock area), so viewing it as
        // `AtomicU64`s for the lifetime of `&self` aliases nothing immutable.
        unsafe {
            core::slice::from_raw_parts(
                (self as *const Region).cast::<AtomicU64>(),
                REGION_SIZE / 8,
            )
        }
    }

    /// True when every byte of the region is zero.
    pub fn is_all_zero(&self) -> bool {
        self.words().iter().all(|w| w.load(Ordering::Relaxed) == 0)
    }

    /// Writes a fresh region except the v1 magic: zeroes everything (only words that are not
    /// already zero are written, so untouched pages of a sparse file stay unallocated), then
    /// the extension header, devices, and the v1 header fields.
    ///
    /// Call it holding the file's exclusive `flock` on a region that [`classify`] called
    /// `NeedsInit` (or `StaleBoot`). Then initialize the robust mutex at
    /// `ext.header.lock.as_mut_ptr()` and call [`Region::publish`]. Readers treat a region
    /// whose magic is not yet written as not there.
    pub fn init_unpublished(&self, params: &InitParams) -> Result<(), LayoutError> {
        self.init(params, true)
    }

    /// [`init_unpublished`](Self::init_unpublished) of a region whose bytes are all zero
    /// already: a file the caller just grew from length 0, so nobody can have written it.
    /// Clearing reads every word of the region, and on a file system that backs the file
    /// with a page cache each read of a hole faults in a zeroed page: ~3 MiB of faults, the
    /// most CPU a container's first process spent at start (issue 9 item 4).
    pub fn init_fresh_unpublished(&self, params: &InitParams) -> Result<(), LayoutError> {
        self.init(params, false)
    }

    fn init(&self, params: &InitParams, clear: bool) -> Result<(), LayoutError> {
        if params.devices.len() > MAX_DEVICES {
            return Err(LayoutError::DeviceIndex(params.devices.len() - 1));
        }
        for dev in &params.devices {
            check_uuid(&dev.uuid)?;
        }
        // The magic goes first so a concurrent lock-free attacher stops trusting the region
        // before we tear it down.
        self.v1.magic.store(0, Ordering::SeqCst);
        if clear {
            for word in self.words() {
                if word.load(Ordering::Relaxed) != 0 {
                    word.store(0, Ordering::Relaxed);
                }
            }
        }
        let h = &self.ext.header;
        h.ext_magic.store(EXT_MAGIC, Ordering::Relaxed);
        h.ext_major.store(EXT_MAJOR_VERSION, Ordering::Relaxed);
        h.ext_minor.store(EXT_MINOR_VERSION, Ordering::Relaxed);
        h.ext_size.store(EXT_SIZE as u64, Ordering::Relaxed);
        h.region_size.store(REGION_SIZE as u64, Ordering::Relaxed);
        h.ext_offset.store(EXT_OFFSET as u64, Ordering::Relaxed);
        h.device_capacity
            .store(MAX_DEVICES as u32, Ordering::Relaxed);
        h.slot_capacity.store(MAX_PROCS as u32, Ordering::Relaxed);
        h.device_record_size
            .store(DEVICE_EXT_SIZE as u32, Ordering::Relaxed);
        h.slot_record_size
            .store(SLOT_EXT_SIZE as u32, Ordering::Relaxed);
        h.created_unix_ns
            .store(params.created_unix_ns, Ordering::Relaxed);
        h.boot_id_hash.store(params.boot_id_hash, Ordering::Relaxed);

        let v1 = &self.v1;
        v1.major_version
            .store(HAMI_MAJOR_VERSION, Ordering::Relaxed);
        v1.minor_version
            .store(HAMI_MINOR_VERSION, Ordering::Relaxed);
        v1.sm_init_flag.store(0, Ordering::Relaxed);
        v1.owner_pid.store(0, Ordering::Relaxed);
        v1.utilization_switch
            .store(UTILIZATION_SWITCH_INIT, Ordering::Relaxed);
        v1.recent_kernel
            .store(RECENT_KERNEL_INIT, Ordering::Relaxed);
        v1.priority.store(params.priority, Ordering::Relaxed);
        for dev in &params.devices {
            self.register_device(&dev.uuid, dev.limit_bytes, dev.sm_limit)?;
        }
        Ok(())
    }

    /// Publishes an initialized region: writes the v1 magic with release ordering, after
    /// which any process that loads the magic with acquire ordering sees every field.
    pub fn publish(&self) {
        self.v1.magic.store(HAMI_MAGIC, Ordering::Release);
    }

    /// The header fields [`classify`] needs, read from this (fully mapped) region.
    pub fn header_view(&self) -> HeaderView {
        HeaderView::from_region(self)
    }

    /// Process slot `index`, both halves.
    pub fn slot(&self, index: usize) -> Result<SlotRef<'_>, LayoutError> {
        match (self.v1.procs.get(index), self.ext.slots.get(index)) {
            (Some(v1), Some(ext)) => Ok(SlotRef { index, v1, ext }),
            _ => Err(LayoutError::SlotIndex(index)),
        }
    }

    /// Container-wide state of device `dev`.
    pub fn device(&self, dev: usize) -> Result<&DeviceExt, LayoutError> {
        self.ext
            .devices
            .get(dev)
            .ok_or(LayoutError::DeviceIndex(dev))
    }

    /// The UUID registered at device index `dev`, `None` when unset or out of range.
    pub fn uuid_str(&self, dev: usize) -> Option<String> {
        let uuid = self.v1.uuids.get(dev)?.to_string_lossless()?;
        (!uuid.is_empty()).then_some(uuid)
    }

    /// Writes the UUID string of device `dev` (v1 `uuids[dev]`), then publishes its key in
    /// `ext.devices[dev].uuid_key` with release ordering.
    ///
    /// Call holding the region lock (or while initializing): the 96 bytes are not written
    /// atomically as a whole.
    pub fn set_uuid(&self, dev: usize, uuid: &str) -> Result<(), LayoutError> {
        check_uuid(uuid)?;
        let bytes = self
            .v1
            .uuids
            .get(dev)
            .ok_or(LayoutError::DeviceIndex(dev))?;
        bytes.store(uuid);
        self.ext.devices[dev]
            .uuid_key
            .store(uuid_key(uuid), Ordering::Release);
        Ok(())
    }

    /// Index of the device registered with `uuid`, lock-free.
    pub fn find_device(&self, uuid: &str) -> Option<usize> {
        let key = uuid_key(uuid);
        (0..MAX_DEVICES).find(|&dev| {
            self.ext.devices[dev].uuid_key.load(Ordering::Acquire) == key
                && self.uuid_str(dev).as_deref() == Some(uuid)
        })
    }

    /// Finds `uuid` or registers it in the first free device entry, setting its limits in
    /// both the extension (authoritative) and HAMi's v1 mirrors. An already registered
    /// device keeps its limits (the first process's configuration wins; use
    /// [`Region::set_device_limits`] to change them). Call holding the region lock.
    pub fn register_device(
        &self,
        uuid: &str,
        limit_bytes: u64,
        sm_limit: u64,
    ) -> Result<usize, LayoutError> {
        check_uuid(uuid)?;
        if let Some(dev) = self.find_device(uuid) {
            return Ok(dev);
        }
        let dev = (0..MAX_DEVICES)
            .find(|&dev| self.ext.devices[dev].uuid_key.load(Ordering::Acquire) == 0)
            .ok_or(LayoutError::NoFreeDevice)?;
        self.set_device_limits(dev, limit_bytes, sm_limit)?;
        self.set_uuid(dev, uuid)?;
        self.v1
            .device_num
            .fetch_max(dev as u64 + 1, Ordering::Release);
        Ok(dev)
    }

    /// Sets device `dev`'s memory cap (bytes, 0 = none) and compute cap (percent, 0 = none)
    /// in the extension and in HAMi's v1 mirrors, and bumps `generation`.
    pub fn set_device_limits(
        &self,
        dev: usize,
        limit_bytes: u64,
        sm_limit: u64,
    ) -> Result<(), LayoutError> {
        let state = self.device(dev)?;
        state.limit_bytes.store(limit_bytes, Ordering::Release);
        state.sm_limit.store(sm_limit, Ordering::Release);
        self.v1.limit[dev].store(limit_bytes, Ordering::Relaxed);
        self.v1.sm_limit[dev].store(sm_limit, Ordering::Relaxed);
        self.ext.header.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn check_uuid(uuid: &str) -> Result<(), LayoutError> {
    if uuid.len() >= UUID_LEN || uuid.as_bytes().contains(&0) {
        return Err(LayoutError::BadUuid { len: uuid.len() });
    }
    Ok(())
}

/// Initializes and publishes `region` in one step (see [`Region::init_unpublished`]).
///
/// For regions whose robust mutex is initialized by the caller *before* other processes
/// can see the region (process-local fallback, tests); a shared file should use
/// `init_unpublished` → `pthread_mutex_init` → `publish` instead.
pub fn init(region: &Region, params: &InitParams) -> Result<(), LayoutError> {
    region.init_unpublished(params)?;
    region.publish();
    Ok(())
}
