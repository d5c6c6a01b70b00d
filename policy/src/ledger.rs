//! The memory ledger: what this process holds on each device, and the capacity check.
//!
//! Pure: no FFI, no dlsym. Capacity lives behind [`CapacityPool`] so it can be process-local
//! ([`LocalPool`]) or container-wide in the shared region without changing the ledger.
//!
//! Protocol, per allocation path: [`MemoryLedger::reserve`] *before* the real call (fails
//! when the cap would be passed: the hook returns out-of-memory without calling the driver),
//! then [`Reservation::commit`] with the handle the driver returned, or drop the
//! reservation (it rolls back) if the driver failed. Frees credit exactly what was charged,
//! and only once the driver's free has succeeded ([`MemoryLedger::begin_free`]): the driver
//! never holds more than the slice, not even for the instant between its free and ours.
//! A free of something the ledger never saw is reported as `None` and the hook passes it
//! to the driver untouched.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::MAX_DEVICES;

mod live;
pub use live::LiveTable;

/// What an allocation is, for accounting by kind (the monitor shows context, module and
/// data sizes separately) and to keep handle spaces apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AllocKind {
    /// Linear device memory (`cuMemAlloc`, pitch, async/pool, managed) keyed by address.
    Data = 0,
    /// CUDA arrays and mipmapped arrays, keyed by handle.
    Array = 1,
    /// VMM physical allocations (`cuMemCreate`), keyed by handle.
    Vmm = 2,
    /// Context overhead, keyed by context handle.
    Context = 3,
    /// Module overhead, keyed by module handle.
    Module = 4,
}

impl AllocKind {
    /// Which usage bucket the kind is reported in.
    fn bucket(self) -> usize {
        match self {
            AllocKind::Data | AllocKind::Array | AllocKind::Vmm => BUCKET_DATA,
            AllocKind::Context => BUCKET_CONTEXT,
            AllocKind::Module => BUCKET_MODULE,
        }
    }
}

const BUCKET_DATA: usize = 0;
const BUCKET_CONTEXT: usize = 1;
const BUCKET_MODULE: usize = 2;

/// A device's usage by this process, split the way HAMi's monitor reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub data: u64,
    pub context: u64,
    pub module: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.data + self.context + self.module
    }
}

/// Where capacity is checked and counted. Implementations must make `try_reserve` atomic:
/// two callers racing for the last bytes can never both succeed.
pub trait CapacityPool: Send + Sync {
    /// Adds `bytes` to the device's usage if that stays within its limit.
    fn try_reserve(&self, device: usize, bytes: u64) -> bool;
    /// Adds `bytes` regardless of the limit (memory the driver already took, e.g. a
    /// context's overhead measured after the fact).
    fn force_reserve(&self, device: usize, bytes: u64);
    /// Gives `bytes` back.
    fn release(&self, device: usize, bytes: u64);
    /// Bytes counted against the device's limit now.
    fn used(&self, device: usize) -> u64;
    /// The device's limit in bytes, `None` when uncapped.
    fn limit(&self, device: usize) -> Option<u64>;
    /// This process's usage of `bucket` (0 data, 1 context, 2 module) changed by `delta`
    /// bytes: for pools that publish per-process usage (the node monitor reads it). Returns
    /// true when the pool recorded it, and [`CapacityPool::published_usage`] then answers
    /// for the process: the ledger keeps no second count (one locked update fewer per
    /// allocation and per free).
    fn on_usage(&self, _device: usize, _bucket: usize, _delta: i64) -> bool {
        false
    }
    /// Gives `bytes` of `bucket` back: [`CapacityPool::on_usage`] with `-bytes`, then
    /// [`CapacityPool::release`]; a pool may do both in one step. Returns what `on_usage`
    /// would.
    fn release_with_usage(&self, device: usize, bucket: usize, bytes: u64) -> bool {
        let published = self.on_usage(device, bucket, -(bytes.min(i64::MAX as u64) as i64));
        self.release(device, bytes);
        published
    }
    /// [`CapacityPool::try_reserve`] and, for a pool that publishes usage, `bytes` of
    /// `bucket` published in the same step (one bracket in the shared region instead of a
    /// second one at commit). `None`: refused. `Some(true)`: published, so the commit
    /// publishes nothing more and a rollback goes through
    /// [`CapacityPool::release_with_usage`]. `Some(false)`: reserved only.
    fn try_reserve_usage(&self, device: usize, _bucket: usize, bytes: u64) -> Option<bool> {
        self.try_reserve(device, bytes).then_some(false)
    }
    /// The driver granted a reservation whose usage [`CapacityPool::try_reserve_usage`]
    /// published: now it may count as a peak.
    fn on_granted(&self, _device: usize) {}
    /// This process's usage of `device` as the pool published it, if it publishes usage.
    fn published_usage(&self, _device: usize) -> Option<Usage> {
        None
    }
    /// Called in a `fork` child (async-signal context: atomics only). The child holds
    /// no device memory; whatever the parent charged stays the parent's.
    fn after_fork_child(&self) {}
}

/// Capacity counted in this process only.
pub struct LocalPool {
    limits: [Option<u64>; MAX_DEVICES],
    used: [AtomicU64; MAX_DEVICES],
}

impl LocalPool {
    pub fn new(limits: [Option<u64>; MAX_DEVICES]) -> Self {
        LocalPool {
            limits,
            used: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Forgets all usage (a `fork` child holds no device memory).
    pub fn reset(&self) {
        for u in &self.used {
            u.store(0, Ordering::Relaxed);
        }
    }
}

impl CapacityPool for LocalPool {
    fn try_reserve(&self, device: usize, bytes: u64) -> bool {
        let Some(used) = self.used.get(device) else {
            return false;
        };
        let limit = self.limits[device].unwrap_or(u64::MAX);
        used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            cur.checked_add(bytes).filter(|&next| next <= limit)
        })
        .is_ok()
    }

    fn force_reserve(&self, device: usize, bytes: u64) {
        if let Some(used) = self.used.get(device) {
            used.fetch_add(bytes, Ordering::AcqRel);
        }
    }

    fn release(&self, device: usize, bytes: u64) {
        if let Some(used) = self.used.get(device) {
            // Saturating: a release can never take usage below zero.
            let _ = used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_sub(bytes))
            });
        }
    }

    fn used(&self, device: usize) -> u64 {
        self.used
            .get(device)
            .map_or(0, |u| u.load(Ordering::Acquire))
    }

    fn limit(&self, device: usize) -> Option<u64> {
        self.limits.get(device).copied().flatten()
    }

    fn after_fork_child(&self) {
        self.reset();
    }
}

/// One charged allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub device: usize,
    pub bytes: u64,
    pub kind: AllocKind,
    /// The context the memory belongs to (0 = none): destroying a context frees its
    /// memory in the driver, so the ledger credits everything it owned.
    pub owner: u64,
}

/// Multiplicative hashing for handle keys: addresses and handles are already unique, the
/// map only needs to spread them; SipHash would cost more than the rest of the hook.
#[derive(Default)]
pub struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.0 = (self.0 ^ v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

pub type Key = (AllocKind, u64);
/// Live allocations by (kind, handle).
pub type AllocationMap = HashMap<Key, Allocation, BuildHasherDefault<HandleHasher>>;

/// The process's ledger: live allocations by handle, usage by device and kind, and the
/// capacity pool that enforces the cap.
pub struct MemoryLedger<P: CapacityPool> {
    pool: P,
    live: LiveTable,
    usage: [[AtomicU64; 3]; MAX_DEVICES],
}

/// Bytes reserved on a device, not yet tied to a handle. Rolls back when dropped.
#[must_use = "a reservation is rolled back when dropped; commit it after the driver succeeds"]
pub struct Reservation<'a, P: CapacityPool> {
    ledger: &'a MemoryLedger<P>,
    device: usize,
    bytes: u64,
    kind: AllocKind,
    owner: u64,
    /// The pool published the usage with the reservation ([`CapacityPool::try_reserve_usage`]).
    published: bool,
}

impl<P: CapacityPool> Reservation<'_, P> {
    /// Ties the reserved bytes to the handle the driver returned.
    pub fn commit(self, handle: u64) {
        let this = std::mem::ManuallyDrop::new(self);
        let ledger = this.ledger;
        let alloc = Allocation {
            device: this.device,
            bytes: this.bytes,
            kind: this.kind,
            owner: this.owner,
        };
        if this.published {
            ledger.pool.on_granted(alloc.device);
        } else if !ledger
            .pool
            .on_usage(alloc.device, alloc.kind.bucket(), alloc.bytes as i64)
        {
            ledger.usage[alloc.device][alloc.kind.bucket()]
                .fetch_add(alloc.bytes, Ordering::AcqRel);
        }
        let previous = ledger.lock_live().insert((alloc.kind, handle), alloc);
        if let Some(old) = previous {
            // The driver handed out a handle we still thought live: it was freed behind
            // our back (e.g. by destroying its context). Credit the stale entry.
            ledger.credit(old);
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Changes the reserved amount once the driver told the real size (e.g. the pitch it
    /// chose). Growing can fail like a new reservation; shrinking always succeeds.
    pub fn resize(&mut self, bytes: u64) -> bool {
        let pool = &self.ledger.pool;
        let bucket = self.kind.bucket();
        if bytes > self.bytes {
            let extra = bytes - self.bytes;
            if !self.published {
                if !pool.try_reserve(self.device, extra) {
                    return false;
                }
            } else {
                match pool.try_reserve_usage(self.device, bucket, extra) {
                    None => return false,
                    Some(true) => {}
                    // Not published this time: keep the published figure whole.
                    Some(false) => {
                        pool.on_usage(self.device, bucket, extra.min(i64::MAX as u64) as i64);
                    }
                }
            }
        } else if self.published {
            pool.release_with_usage(self.device, bucket, self.bytes - bytes);
        } else {
            pool.release(self.device, self.bytes - bytes);
        }
        self.bytes = bytes;
        true
    }

    /// Marks the context the memory will belong to.
    pub fn owned_by(mut self, owner: u64) -> Self {
        self.owner = owner;
        self
    }
}

impl<P: CapacityPool> Drop for Reservation<'_, P> {
    fn drop(&mut self) {
        if self.published {
            self.ledger
                .pool
                .release_with_usage(self.device, self.kind.bucket(), self.bytes);
        } else {
            self.ledger.pool.release(self.device, self.bytes);
        }
    }
}

/// An allocation whose free is in flight: out of the live map, still counted against the
/// cap. Exactly one of [`PendingFree::freed`] (the driver freed it: credit now) or
/// [`PendingFree::failed`] (the driver refused: the entry goes back) ends it; dropping it
/// unresolved keeps the charge (the safe side: never credit what may still be held).
#[must_use = "call freed() after the driver's free succeeded, or failed() if it did not"]
pub struct PendingFree<'a, P: CapacityPool> {
    ledger: &'a MemoryLedger<P>,
    handle: u64,
    alloc: Allocation,
}

impl<P: CapacityPool> PendingFree<'_, P> {
    /// The driver has given the memory back: credit it.
    #[inline]
    pub fn freed(self) -> Allocation {
        let this = std::mem::ManuallyDrop::new(self);
        this.ledger.credit(this.alloc);
        this.alloc
    }

    /// The driver refused the free: the allocation is still live, put its entry back.
    pub fn failed(self) {
        let this = std::mem::ManuallyDrop::new(self);
        let previous = this
            .ledger
            .lock_live()
            .insert((this.alloc.kind, this.handle), this.alloc);
        if let Some(old) = previous {
            this.ledger.credit(old);
        }
    }

    pub fn allocation(&self) -> Allocation {
        self.alloc
    }
}

impl<P: CapacityPool> Drop for PendingFree<'_, P> {
    fn drop(&mut self) {
        // Unresolved (a panic between the halves): put the entry back, charge kept.
        self.ledger
            .lock_live()
            .insert((self.alloc.kind, self.handle), self.alloc);
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub device: usize,
    pub requested: u64,
    pub used: u64,
    pub limit: u64,
}

impl<P: CapacityPool> MemoryLedger<P> {
    pub fn new(pool: P) -> Self {
        MemoryLedger {
            pool,
            live: LiveTable::default(),
            usage: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// The live map (lock-free on its fast path: see [`LiveTable`]).
    fn lock_live(&self) -> &LiveTable {
        &self.live
    }

    /// The live map's overflow lock, for the `fork` handlers (held across `fork`, released
    /// in both).
    pub fn live_mutex(&self) -> &Mutex<AllocationMap> {
        self.live.overflow_mutex()
    }

    /// Reserves `bytes` on `device` before the real allocation; the usage is published at
    /// commit.
    pub fn reserve(
        &self,
        device: usize,
        bytes: u64,
        kind: AllocKind,
    ) -> Result<Reservation<'_, P>, OverLimit> {
        self.reserve_as(device, bytes, kind, false)
    }

    /// [`MemoryLedger::reserve`] that publishes the usage with the reservation (one bracket
    /// in the shared region for both, not a second one at commit): the published figure
    /// then includes the allocation while the driver's call is in flight, as the container
    /// total does, and loses it again if the driver refuses. For allocations of a known
    /// size (`cuMemAlloc` and kin); not for callers that read the published usage around
    /// their own reservation (context and module measurement, the host-pid probe).
    #[inline]
    pub fn reserve_with_usage(
        &self,
        device: usize,
        bytes: u64,
        kind: AllocKind,
    ) -> Result<Reservation<'_, P>, OverLimit> {
        self.reserve_as(device, bytes, kind, true)
    }

    // Inlined into the allocation hooks, the refusal out of line: returned through memory,
    // the `Result<Reservation>` was written with 8-byte stores and reloaded with 16-byte
    // loads by the hook, a store-forwarding stall on every allocation (perf annotate,
    // docs/BENCHMARKS.md).
    #[inline]
    fn reserve_as(
        &self,
        device: usize,
        bytes: u64,
        kind: AllocKind,
        with_usage: bool,
    ) -> Result<Reservation<'_, P>, OverLimit> {
        let published = if device >= MAX_DEVICES {
            None
        } else if with_usage {
            self.pool.try_reserve_usage(device, kind.bucket(), bytes)
        } else {
            self.pool.try_reserve(device, bytes).then_some(false)
        };
        let Some(published) = published else {
            return Err(self.over_limit(device, bytes));
        };
        Ok(Reservation {
            ledger: self,
            device,
            bytes,
            kind,
            owner: 0,
            published,
        })
    }

    /// Why `bytes` on `device` was refused.
    #[cold]
    #[inline(never)]
    fn over_limit(&self, device: usize, bytes: u64) -> OverLimit {
        OverLimit {
            device,
            requested: bytes,
            used: self.pool.used(device),
            limit: self.pool.limit(device).unwrap_or(0),
        }
    }

    /// Charges memory the driver has already taken (measured overhead), cap or not.
    pub fn charge_measured(&self, device: usize, kind: AllocKind, handle: u64, bytes: u64) {
        if device >= MAX_DEVICES {
            return;
        }
        self.pool.force_reserve(device, bytes);
        Reservation {
            ledger: self,
            device,
            bytes,
            kind,
            owner: 0,
            published: false,
        }
        .commit(handle);
    }

    /// Credits what `handle` was charged; `None` if the ledger never saw it. Only for
    /// memory the driver has already given back (see [`MemoryLedger::begin_free`]).
    pub fn release(&self, kind: AllocKind, handle: u64) -> Option<Allocation> {
        let alloc = self.lock_live().remove(&(kind, handle))?;
        self.credit(alloc);
        Some(alloc)
    }

    /// First half of a free: takes `handle`'s entry out of the live map *without*
    /// crediting it. The capacity stays counted until [`PendingFree::freed`] says the
    /// driver's free succeeded: between the two the driver still holds the memory, and a
    /// reservation made in that window by another thread or process must not be able to
    /// use it. Taking the entry out first means an address the driver hands out again at
    /// once can never be confused with the old one. `None`: the ledger never saw it.
    // Inlined into the free hooks: returned through memory, the 48-byte `PendingFree` was
    // written with 8-byte stores and read back with 16-byte loads, a store-forwarding
    // stall on every free (perf annotate, docs/BENCHMARKS.md).
    #[inline]
    pub fn begin_free(&self, kind: AllocKind, handle: u64) -> Option<PendingFree<'_, P>> {
        let alloc = self.lock_live().remove(&(kind, handle))?;
        Some(PendingFree {
            ledger: self,
            handle,
            alloc,
        })
    }

    /// Credits everything `owner` (a context) held, e.g. when the driver destroyed it.
    /// Returns the bytes credited.
    pub fn release_owned_by(&self, owner: u64) -> u64 {
        if owner == 0 {
            return 0;
        }
        let freed = self.live.remove_owned_by(owner);
        freed.iter().for_each(|a| self.credit(*a));
        freed.iter().map(|a| a.bytes).sum()
    }

    fn credit(&self, alloc: Allocation) {
        if !self
            .pool
            .release_with_usage(alloc.device, alloc.kind.bucket(), alloc.bytes)
        {
            let bucket = &self.usage[alloc.device][alloc.kind.bucket()];
            let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_sub(alloc.bytes))
            });
        }
    }

    /// This process's usage of `device`, by kind.
    pub fn usage(&self, device: usize) -> Usage {
        if let Some(published) = self.pool.published_usage(device) {
            return published;
        }
        let Some(u) = self.usage.get(device) else {
            return Usage::default();
        };
        Usage {
            data: u[BUCKET_DATA].load(Ordering::Acquire),
            context: u[BUCKET_CONTEXT].load(Ordering::Acquire),
            module: u[BUCKET_MODULE].load(Ordering::Acquire),
        }
    }

    /// Bytes counted against `device`'s limit (all holders the pool knows of).
    pub fn used(&self, device: usize) -> u64 {
        self.pool.used(device)
    }

    pub fn limit(&self, device: usize) -> Option<u64> {
        self.pool.limit(device)
    }

    /// Number of live charged handles.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// In a `fork` child, with the map already locked by the caller: the child holds no
    /// device memory, so every entry and usage figure is dropped, and the pool is told
    /// (the parent's charges stay the parent's).
    pub fn forget_all_locked(&self, map: &mut AllocationMap) {
        self.live.clear_locked(map);
        for device in &self.usage {
            for bucket in device {
                bucket.store(0, Ordering::Relaxed);
            }
        }
        self.pool.after_fork_child();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ledger(limit0: Option<u64>) -> MemoryLedger<LocalPool> {
        let mut limits = [None; MAX_DEVICES];
        limits[0] = limit0;
        MemoryLedger::new(LocalPool::new(limits))
    }

    #[test]
    fn reserve_commit_release_to_the_byte() {
        let l = ledger(Some(1000));
        l.reserve(0, 600, AllocKind::Data).unwrap().commit(0xa000);
        assert_eq!(l.used(0), 600);
        let e = l.reserve(0, 401, AllocKind::Data).err().unwrap();
        assert_eq!((e.used, e.limit, e.requested), (600, 1000, 401));
        l.reserve(0, 400, AllocKind::Data).unwrap().commit(0xb000);
        assert_eq!(l.used(0), 1000);
        assert!(l.reserve(0, 1, AllocKind::Data).is_err());
        assert_eq!(l.release(AllocKind::Data, 0xa000).unwrap().bytes, 600);
        assert_eq!(l.used(0), 400);
        assert_eq!(l.usage(0).data, 400);
        assert!(l.release(AllocKind::Data, 0xa000).is_none(), "double free");
        assert!(l.release(AllocKind::Data, 0xdead).is_none(), "unknown");
        assert_eq!(l.used(0), 400);
    }

    #[test]
    fn dropped_reservation_rolls_back() {
        let l = ledger(Some(100));
        {
            let r = l.reserve(0, 100, AllocKind::Data).unwrap();
            assert_eq!(r.bytes(), 100);
            assert_eq!(l.used(0), 100);
        }
        assert_eq!(l.used(0), 0);
        assert_eq!(l.live_count(), 0);
    }

    #[test]
    fn kinds_are_separate_spaces_and_buckets() {
        let l = ledger(None);
        l.reserve(0, 10, AllocKind::Data).unwrap().commit(1);
        l.reserve(0, 20, AllocKind::Array).unwrap().commit(1);
        l.charge_measured(0, AllocKind::Context, 1, 300);
        l.charge_measured(0, AllocKind::Module, 7, 5);
        assert_eq!(
            l.usage(0),
            Usage {
                data: 30,
                context: 300,
                module: 5
            }
        );
        assert_eq!(l.usage(0).total(), 335);
        assert_eq!(l.used(0), 335);
        assert_eq!(l.release(AllocKind::Array, 1).unwrap().bytes, 20);
        assert_eq!(l.release(AllocKind::Context, 1).unwrap().bytes, 300);
        assert_eq!(l.usage(0).total(), 15);
    }

    #[test]
    fn measured_charge_may_exceed_the_cap_but_blocks_further_reservations() {
        let l = ledger(Some(100));
        l.charge_measured(0, AllocKind::Context, 9, 150);
        assert_eq!(l.used(0), 150);
        assert!(l.reserve(0, 1, AllocKind::Data).is_err());
    }

    #[test]
    fn reused_handle_credits_the_stale_entry() {
        let l = ledger(None);
        l.reserve(0, 10, AllocKind::Data).unwrap().commit(5);
        l.reserve(0, 7, AllocKind::Data).unwrap().commit(5);
        assert_eq!(l.used(0), 7);
        assert_eq!(l.usage(0).data, 7);
    }

    #[test]
    fn resize_and_owner_release() {
        let l = ledger(Some(1000));
        let mut r = l.reserve(0, 100, AllocKind::Data).unwrap().owned_by(7);
        assert!(r.resize(900));
        assert!(!r.resize(1001));
        assert!(r.resize(512));
        r.commit(1);
        assert_eq!(l.used(0), 512);
        l.reserve(0, 10, AllocKind::Data)
            .unwrap()
            .owned_by(8)
            .commit(2);
        l.reserve(0, 20, AllocKind::Array)
            .unwrap()
            .owned_by(7)
            .commit(3);
        assert_eq!(l.release_owned_by(7), 532);
        assert_eq!(l.used(0), 10);
        assert_eq!(l.release_owned_by(0), 0);
    }

    #[test]
    fn a_pending_free_keeps_the_charge_until_the_driver_freed() {
        let l = ledger(Some(100));
        l.reserve(0, 100, AllocKind::Data).unwrap().commit(1);
        let pending = l.begin_free(AllocKind::Data, 1).unwrap();
        assert_eq!(
            l.live_count(),
            0,
            "out of the map: the address may be reused"
        );
        assert_eq!(l.used(0), 100, "still counted while the driver frees");
        assert!(l.reserve(0, 1, AllocKind::Data).is_err());
        assert_eq!(pending.freed().bytes, 100);
        assert_eq!(l.used(0), 0);
        assert_eq!(l.usage(0).data, 0);

        l.reserve(0, 60, AllocKind::Data).unwrap().commit(2);
        l.begin_free(AllocKind::Data, 2).unwrap().failed();
        assert_eq!(l.used(0), 60, "a refused free keeps its charge");
        assert_eq!(l.usage(0).data, 60);
        assert_eq!(
            l.release(AllocKind::Data, 2).unwrap().bytes,
            60,
            "and its entry"
        );
        assert!(l.begin_free(AllocKind::Data, 2).is_none(), "unknown");

        l.reserve(0, 10, AllocKind::Data).unwrap().commit(3);
        drop(l.begin_free(AllocKind::Data, 3).unwrap());
        assert_eq!(l.used(0), 10, "unresolved: kept");
        assert_eq!(l.live_count(), 1);
    }

    #[test]
    fn bad_device_is_refused() {
        let l = ledger(None);
        assert!(l.reserve(MAX_DEVICES, 1, AllocKind::Data).is_err());
    }

    #[test]
    fn racing_threads_never_overshoot() {
        let limit = 1_000_000u64;
        let l = Arc::new(ledger(Some(limit)));
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let mut won = 0u64;
                    for i in 0..10_000u64 {
                        let bytes = 1 + (i * 7919 + t) % 997;
                        if let Ok(r) = l.reserve(0, bytes, AllocKind::Data) {
                            assert!(l.used(0) <= limit);
                            r.commit(t << 32 | i);
                            won += bytes;
                        }
                    }
                    won
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(total <= limit);
        assert_eq!(l.used(0), total);
        assert!(
            limit - total < 997,
            "pool should be filled up to the last fit"
        );
    }

    #[test]
    fn fork_child_forgets_everything() {
        let l = ledger(Some(100));
        l.reserve(0, 60, AllocKind::Data).unwrap().commit(1);
        let m = l.live_mutex();
        let mut g = m.lock().unwrap();
        l.forget_all_locked(&mut g);
        drop(g);
        assert_eq!(l.used(0), 0);
        assert_eq!(l.usage(0).total(), 0);
        assert!(l.release(AllocKind::Data, 1).is_none());
    }

    /// A pool that publishes usage, the way the shared region does (device 0 only).
    struct PublishingPool {
        inner: LocalPool,
        published: [AtomicU64; 3],
    }

    impl CapacityPool for PublishingPool {
        fn try_reserve(&self, device: usize, bytes: u64) -> bool {
            self.inner.try_reserve(device, bytes)
        }
        fn force_reserve(&self, device: usize, bytes: u64) {
            self.inner.force_reserve(device, bytes)
        }
        fn release(&self, device: usize, bytes: u64) {
            self.inner.release(device, bytes)
        }
        fn used(&self, device: usize) -> u64 {
            self.inner.used(device)
        }
        fn limit(&self, device: usize) -> Option<u64> {
            self.inner.limit(device)
        }
        fn on_usage(&self, _device: usize, bucket: usize, delta: i64) -> bool {
            let p = &self.published[bucket];
            let _ = p.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_add_signed(delta))
            });
            true
        }
        fn try_reserve_usage(&self, device: usize, bucket: usize, bytes: u64) -> Option<bool> {
            self.inner.try_reserve(device, bytes).then(|| {
                self.on_usage(device, bucket, bytes as i64);
                true
            })
        }
        fn published_usage(&self, _device: usize) -> Option<Usage> {
            let [data, context, module] =
                [0, 1, 2].map(|b| self.published[b].load(Ordering::Acquire));
            Some(Usage {
                data,
                context,
                module,
            })
        }
    }

    #[test]
    fn usage_published_with_the_reservation_is_counted_once_and_rolled_back_whole() {
        let mut limits = [None; MAX_DEVICES];
        limits[0] = Some(1000);
        let l = MemoryLedger::new(PublishingPool {
            inner: LocalPool::new(limits),
            published: Default::default(),
        });
        // Refused: nothing published.
        assert!(l.reserve_with_usage(0, 1001, AllocKind::Data).is_err());
        assert_eq!(l.usage(0).total(), 0);
        // In flight: published with the reservation; the driver refused: all gone.
        let r = l.reserve_with_usage(0, 300, AllocKind::Data).unwrap();
        assert_eq!((l.usage(0).data, l.used(0)), (300, 300));
        drop(r);
        assert_eq!((l.usage(0).data, l.used(0)), (0, 0));
        // Granted: the commit publishes nothing more.
        l.reserve_with_usage(0, 300, AllocKind::Data)
            .unwrap()
            .commit(0xa000);
        assert_eq!((l.usage(0).data, l.used(0)), (300, 300));
        // Resized both ways, usage and capacity together; a growth that does not fit moves
        // neither.
        let mut r = l.reserve_with_usage(0, 100, AllocKind::Data).unwrap();
        assert!(r.resize(400));
        assert_eq!((l.usage(0).data, l.used(0)), (700, 700));
        assert!(!r.resize(800));
        assert_eq!((l.usage(0).data, l.used(0)), (700, 700));
        assert!(r.resize(50));
        assert_eq!((l.usage(0).data, l.used(0)), (350, 350));
        r.commit(0xb000);
        // The plain reservation still publishes at commit only.
        let r = l.reserve(0, 10, AllocKind::Module).unwrap();
        assert_eq!(l.usage(0).module, 0);
        r.commit(0xc000);
        assert_eq!((l.usage(0).module, l.used(0)), (10, 360));
        // Frees credit both.
        let p = l.begin_free(AllocKind::Data, 0xa000).unwrap();
        assert_eq!(
            l.usage(0).data,
            350,
            "credited only once the driver freed it"
        );
        p.freed();
        assert_eq!(l.release(AllocKind::Data, 0xb000).unwrap().bytes, 50);
        assert_eq!(l.release(AllocKind::Module, 0xc000).unwrap().bytes, 10);
        assert_eq!((l.usage(0).total(), l.used(0)), (0, 0));
    }
}
