//! HAMi-core's layout v1: the first [`V1_SIZE`](crate::V1_SIZE) bytes of the region.
//!
//! Every field is an atomic (or an array of `AtomicU8` for byte strings) because other
//! processes — our own and HAMi's node monitor — read and write this memory while we hold a
//! `&` reference to it. The atomics have exactly the size and alignment of the C integer
//! types HAMi declares, so the bytes are identical to HAMi's `shared_region_t`.

use core::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

use crate::{MAX_DEVICES, MAX_PROCS, UUID_LEN};

/// A glibc `sem_t` (32 bytes on x86-64) that HAMi-core uses as its region lock.
///
/// vgpu never touches these bytes: a semaphore held by a killed process is exactly the
/// minutes-long stall we replace with a robust mutex in the extension block. They exist
/// only to keep HAMi's offsets.
#[repr(transparent)]
pub struct OpaqueSem(pub(crate) [AtomicU8; 32]);

/// One device UUID as HAMi stores it: a NUL-terminated C string in a 96-byte buffer.
#[repr(transparent)]
pub struct UuidBytes(pub [AtomicU8; UUID_LEN]);

/// HAMi `device_memory_t`: one process's memory on one device, in bytes.
///
/// Invariant kept by [`ProcSlot::store_usage`] / [`ProcSlot::adjust_usage`]:
/// `total == context_size + module_size + data_size` whenever `ProcSlot::seqlock` is even.
#[repr(C)]
pub struct DeviceMemory {
    /// Bytes held by CUDA contexts (context creation, lazily grown).
    pub context_size: AtomicU64,
    /// Bytes held by loaded modules (code, constants).
    pub module_size: AtomicU64,
    /// Bytes of data allocations (HAMi calls it `buffer_size`).
    pub data_size: AtomicU64,
    /// HAMi bookkeeping field; vgpu writes 0.
    pub offset: AtomicU64,
    /// `context_size + module_size + data_size`; the value HAMi's monitor exports.
    pub total: AtomicU64,
    pub(crate) _reserved: [AtomicU64; 3],
}

/// HAMi `device_util_t`: utilization percentages of one process on one device.
#[repr(C)]
pub struct DeviceUtil {
    /// Decoder utilization, percent.
    pub dec_util: AtomicU64,
    /// Encoder utilization, percent.
    pub enc_util: AtomicU64,
    /// SM (compute) utilization, percent.
    pub sm_util: AtomicU64,
    pub(crate) _reserved: [AtomicU64; 3],
}

/// HAMi `shrreg_proc_slot_t`: one process of the container (1960 bytes).
#[repr(C)]
pub struct ProcSlot {
    /// PID in the container's PID namespace (`getpid()`); 0 when free.
    pub pid: AtomicI32,
    /// PID in the host namespace, 0 while unknown.
    pub hostpid: AtomicI32,
    /// Memory per device index.
    pub used: [DeviceMemory; MAX_DEVICES],
    /// Memory per device as last observed through NVML, bytes.
    pub monitorused: [AtomicU64; MAX_DEVICES],
    /// Utilization per device index.
    pub device_util: [DeviceUtil; MAX_DEVICES],
    /// 0 = free (the monitor skips it), 1 = active process.
    pub status: AtomicI32,
    pub(crate) _status_pad: AtomicI32,
    /// Odd while `used[]` is being rewritten; see [`ProcSlot::store_usage`].
    pub seqlock: AtomicU64,
    pub(crate) _reserved: [AtomicU64; 2],
}

/// HAMi `shared_region_t`, layout v1 (2,008,952 bytes).
#[repr(C)]
pub struct HamiV1Region {
    /// [`HAMI_MAGIC`](crate::HAMI_MAGIC) once the region is initialized; written last.
    pub magic: AtomicI32,
    /// [`HAMI_MAJOR_VERSION`](crate::HAMI_MAJOR_VERSION) (1).
    pub major_version: AtomicI32,
    /// [`HAMI_MINOR_VERSION`](crate::HAMI_MINOR_VERSION); ignored by the monitor.
    pub minor_version: AtomicI32,
    /// HAMi-core internal flag; vgpu writes 0.
    pub sm_init_flag: AtomicI32,
    /// HAMi-core: pid holding `sem`. vgpu writes 0 (the semaphore is never used).
    pub owner_pid: AtomicU64,
    /// HAMi-core's semaphore; opaque, never used by vgpu.
    pub sem: OpaqueSem,
    /// Number of leading entries of `uuids`/`limit`/`sm_limit` in use.
    pub device_num: AtomicU64,
    /// Device UUID strings (`GPU-…`/`MIG-…`), by container device index.
    pub uuids: [UuidBytes; MAX_DEVICES],
    /// Memory cap per device in bytes, 0 = no cap (mirror of the extension's `limit_bytes`).
    pub limit: [AtomicU64; MAX_DEVICES],
    /// Compute cap per device in percent, 0 = no cap (mirror of the extension's `sm_limit`).
    pub sm_limit: [AtomicU64; MAX_DEVICES],
    /// Process slots. Never moved or compacted while mapped.
    pub procs: [ProcSlot; MAX_PROCS],
    /// One past the highest slot index used since init (the monitor sums `procs[..proc_num]`).
    pub proc_num: AtomicI32,
    /// Written by the monitor: 1 = enforce the compute cap now.
    pub utilization_switch: AtomicI32,
    /// Written by the monitor: -1 = hold launches (a higher-priority container is busy).
    pub recent_kernel: AtomicI32,
    /// `CUDA_TASK_PRIORITY` of the container; lower = higher priority.
    pub priority: AtomicI32,
    /// Unix time in seconds of the most recent kernel launch in the container.
    pub last_kernel_time: AtomicU64,
    /// HAMi-core's second semaphore (`unused[4]` in older headers); opaque.
    pub sem_postinit: OpaqueSem,
}

/// One process's memory on one device, the three parts HAMi distinguishes (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotUsage {
    pub context_size: u64,
    pub module_size: u64,
    pub data_size: u64,
}

impl SlotUsage {
    /// The value stored in `DeviceMemory::total` (saturating: never wraps to petabytes).
    pub fn total(&self) -> u64 {
        self.context_size
            .saturating_add(self.module_size)
            .saturating_add(self.data_size)
    }
}

/// Which part of [`SlotUsage`] a change applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    Context,
    Module,
    Data,
}

/// How many times a reader retries a torn seqlock snapshot before taking the last one: the
/// first `SEQLOCK_READ_SPINS` with a spin hint, the rest yielding the CPU (a writer may be
/// preempted mid-update on a loaded machine; only a writer killed mid-update — seqlock odd
/// forever — makes the reader give up, after a few milliseconds).
const SEQLOCK_READ_RETRIES: u32 = 64 + 4096;
const SEQLOCK_READ_SPINS: u32 = 64;

impl UuidBytes {
    /// The UUID up to the first NUL (or all 96 bytes); `None` when not UTF-8.
    pub fn to_string_lossless(&self) -> Option<String> {
        let bytes: Vec<u8> = self
            .0
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8(bytes).ok()
    }

    /// Stores `uuid` NUL-terminated, zero-filling the rest. The caller guarantees
    /// `uuid.len() < UUID_LEN` and that it holds the region lock (or initializes).
    pub(crate) fn store(&self, uuid: &str) {
        let src = uuid.as_bytes();
        for (i, cell) in self.0.iter().enumerate() {
            cell.store(src.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
    }
}

impl ProcSlot {
    /// Takes the slot's seqlock for writing: spins until it turns it from even to odd.
    ///
    /// Only threads of the owning process write a slot, so contention is between a few
    /// threads for a few nanoseconds. If the owner is killed while odd, the slot is dead and
    /// the reaper resets `seqlock` to 0 when it frees the slot.
    ///
    /// SeqCst: the ledger's operations (ledger.rs) use the odd seqlock as their "operation in
    /// flight" mark, ordered against the auditor's freeze flag (Dekker).
    pub(crate) fn seq_write_begin(&self) -> u64 {
        let mut spins = 0u32;
        loop {
            let seq = self.seqlock.load(Ordering::Relaxed);
            if seq & 1 == 0
                && self
                    .seqlock
                    .compare_exchange_weak(seq, seq + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                return seq + 1;
            }
            spins += 1;
            if spins < 128 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    pub(crate) fn seq_write_end(&self, odd: u64) {
        self.seqlock.store(odd + 1, Ordering::Release);
    }

    /// Overwrites the three parts of `used[dev]` and then `total`, inside the seqlock.
    ///
    /// Readers that honour the seqlock (vgpu, `reader.py`) never see `total` disagree with the
    /// parts; HAMi's monitor ignores the seqlock and may, for a few nanoseconds, read new parts
    /// with the old total — it exports `total`, so it shows either the old or the new value.
    pub fn store_usage(&self, dev: usize, usage: &SlotUsage) {
        let mem = &self.used[dev];
        let odd = self.seq_write_begin();
        mem.context_size
            .store(usage.context_size, Ordering::Relaxed);
        mem.module_size.store(usage.module_size, Ordering::Relaxed);
        mem.data_size.store(usage.data_size, Ordering::Relaxed);
        mem.total.store(usage.total(), Ordering::Relaxed);
        self.seq_write_end(odd);
    }

    /// Adds `delta` (negative = frees) to one part of `used[dev]`, saturating at 0 and
    /// `u64::MAX`, then rewrites `total`. Returns the usage after the change.
    pub fn adjust_usage(&self, dev: usize, kind: MemoryKind, delta: i64) -> SlotUsage {
        let odd = self.seq_write_begin();
        let usage = self.adjust_usage_locked(dev, kind, delta);
        self.seq_write_end(odd);
        usage
    }

    /// [`ProcSlot::adjust_usage`] for a caller that holds the seqlock.
    pub(crate) fn adjust_usage_locked(
        &self,
        dev: usize,
        kind: MemoryKind,
        delta: i64,
    ) -> SlotUsage {
        let mem = &self.used[dev];
        let part = match kind {
            MemoryKind::Context => &mem.context_size,
            MemoryKind::Module => &mem.module_size,
            MemoryKind::Data => &mem.data_size,
        };
        let old = part.load(Ordering::Relaxed);
        let new = if delta >= 0 {
            old.saturating_add(delta as u64)
        } else {
            old.saturating_sub(delta.unsigned_abs())
        };
        part.store(new, Ordering::Relaxed);
        let usage = SlotUsage {
            context_size: mem.context_size.load(Ordering::Relaxed),
            module_size: mem.module_size.load(Ordering::Relaxed),
            data_size: mem.data_size.load(Ordering::Relaxed),
        };
        mem.total.store(usage.total(), Ordering::Relaxed);
        usage
    }

    /// A consistent snapshot of `used[dev]` (parts and total) using the seqlock.
    ///
    /// Retries while a writer is active (spinning, then yielding); after
    /// `SEQLOCK_READ_RETRIES` attempts (a writer killed mid-update leaves the seqlock odd
    /// forever) returns the last values read.
    pub fn load_usage(&self, dev: usize) -> (SlotUsage, u64) {
        let mem = &self.used[dev];
        let mut last = (SlotUsage::default(), 0);
        for attempt in 0..SEQLOCK_READ_RETRIES {
            let before = self.seqlock.load(Ordering::Acquire);
            last = (
                SlotUsage {
                    context_size: mem.context_size.load(Ordering::Relaxed),
                    module_size: mem.module_size.load(Ordering::Relaxed),
                    data_size: mem.data_size.load(Ordering::Relaxed),
                },
                mem.total.load(Ordering::Relaxed),
            );
            core::sync::atomic::fence(Ordering::Acquire);
            let after = self.seqlock.load(Ordering::Relaxed);
            if before & 1 == 0 && before == after {
                return last;
            }
            if attempt < SEQLOCK_READ_SPINS {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        last
    }

    /// Zeroes every field of the slot, `status` first so the monitor stops reading it.
    /// Only for the reaper / the owner releasing the slot, under the region lock.
    pub(crate) fn clear(&self) {
        self.status.store(0, Ordering::Release);
        for mem in &self.used {
            for word in [
                &mem.context_size,
                &mem.module_size,
                &mem.data_size,
                &mem.offset,
                &mem.total,
            ] {
                word.store(0, Ordering::Relaxed);
            }
        }
        for word in &self.monitorused {
            word.store(0, Ordering::Relaxed);
        }
        for util in &self.device_util {
            util.dec_util.store(0, Ordering::Relaxed);
            util.enc_util.store(0, Ordering::Relaxed);
            util.sm_util.store(0, Ordering::Relaxed);
        }
        self.hostpid.store(0, Ordering::Relaxed);
        self.seqlock.store(0, Ordering::Relaxed);
        self.pid.store(0, Ordering::Release);
    }
}
