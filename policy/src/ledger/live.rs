//! The live-allocation map without a lock on its fast path.
//!
//! Every hooked allocation inserts its handle and every free removes one; with a mutex
//! around a hash map that is two locked operations per call plus the lock's cache line
//! bouncing between the threads of a process. Here the common case is a bounded linear
//! probe in a fixed open-addressing table, each insert and remove one compare-and-swap on
//! the slot's `info` word; what does not fit (a probe window full, a size that does not
//! fit in 48 bits) goes to a mutex-guarded overflow map, touched only while it holds
//! something.
//!
//! Slot protocol: `info` packs the state (EMPTY, BUSY, FULL, TOMB), the kind, the device,
//! a 7-bit generation and the byte count. An insert claims an EMPTY or TOMB slot by CAS to
//! BUSY, writes `key` and `owner`, then publishes FULL with a Release store. A remove
//! matches FULL + kind + key and CASes that exact `info` to TOMB, so of two removers of
//! one entry exactly one wins; the generation (bumped by every insert into the slot) keeps
//! a slot that was freed and refilled in between from matching a stale `info`. A probe
//! never stops at TOMB or BUSY, only at EMPTY or the end of its window, so an entry stays
//! findable whatever happened around it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{AllocKind, Allocation, AllocationMap, Key};

/// Slots in the table (a power of two). 24 bytes each, zeroed memory: pages a process
/// never probes are never touched.
const CAPACITY: usize = 1 << 15;
/// Slots probed from the home slot before an insert overflows to the map.
const WINDOW: usize = 32;

const STATE_BITS: u32 = 2;
const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const FULL: u64 = 2;
const TOMB: u64 = 3;
const KIND_SHIFT: u32 = STATE_BITS;
const DEVICE_SHIFT: u32 = KIND_SHIFT + 3;
/// Bits of the device index in `info`: every container device index fits.
const DEVICE_BITS: u32 = 4;
const _: () = assert!(crate::MAX_DEVICES <= 1 << DEVICE_BITS);
const GEN_SHIFT: u32 = DEVICE_SHIFT + DEVICE_BITS;
const BYTES_SHIFT: u32 = GEN_SHIFT + 7;
const MAX_BYTES: u64 = (1 << (64 - BYTES_SHIFT)) - 1;

fn state(info: u64) -> u64 {
    info & ((1 << STATE_BITS) - 1)
}

fn generation(info: u64) -> u64 {
    (info >> GEN_SHIFT) & 0x7f
}

fn kind_of(info: u64) -> AllocKind {
    match (info >> KIND_SHIFT) & 0x7 {
        0 => AllocKind::Data,
        1 => AllocKind::Array,
        2 => AllocKind::Vmm,
        3 => AllocKind::Context,
        _ => AllocKind::Module,
    }
}

fn pack(alloc: &Allocation, gen: u64) -> Option<u64> {
    (alloc.device < 1 << DEVICE_BITS && alloc.bytes <= MAX_BYTES).then_some(
        FULL | (alloc.kind as u64) << KIND_SHIFT
            | (alloc.device as u64) << DEVICE_SHIFT
            | (gen & 0x7f) << GEN_SHIFT
            | alloc.bytes << BYTES_SHIFT,
    )
}

fn unpack(info: u64, owner: u64) -> Allocation {
    Allocation {
        device: ((info >> DEVICE_SHIFT) & ((1 << DEVICE_BITS) - 1)) as usize,
        bytes: info >> BYTES_SHIFT,
        kind: kind_of(info),
        owner,
    }
}

#[derive(Default)]
struct Entry {
    info: AtomicU64,
    key: AtomicU64,
    owner: AtomicU64,
}

/// Live allocations by (kind, handle). Same contract as a map: one entry per key.
pub struct LiveTable {
    slots: Box<[Entry]>,
    overflow: Mutex<AllocationMap>,
    /// Entries in `overflow`: while 0, lookups never take its lock.
    overflow_len: AtomicUsize,
}

fn home(kind: AllocKind, handle: u64) -> usize {
    let h = (handle ^ (kind as u64).wrapping_mul(0x5851_f42d_4c95_7f2d))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - CAPACITY.trailing_zeros())) as usize
}

impl Default for LiveTable {
    fn default() -> Self {
        LiveTable {
            slots: (0..CAPACITY).map(|_| Entry::default()).collect(),
            overflow: Mutex::new(HashMap::default()),
            overflow_len: AtomicUsize::new(0),
        }
    }
}

impl LiveTable {
    fn window(&self, kind: AllocKind, handle: u64) -> impl Iterator<Item = &Entry> {
        let start = home(kind, handle);
        (0..WINDOW).map(move |i| &self.slots[(start + i) & (CAPACITY - 1)])
    }

    /// The overflow map's lock (also what the `fork` handlers hold across `fork`).
    pub fn overflow_mutex(&self) -> &Mutex<AllocationMap> {
        &self.overflow
    }

    fn lock_overflow(&self) -> MutexGuard<'_, AllocationMap> {
        // Every critical section is one insert/remove: a poisoned map is still consistent.
        self.overflow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts `alloc` under `key`, returning the entry it replaced (a handle the driver
    /// handed out again while the ledger still thought it live).
    ///
    /// One pass over the probe window: a live entry for `key` is taken out on the way (no
    /// insert of that key can run concurrently: the driver hands a handle to one caller),
    /// the first EMPTY or TOMB slot is claimed; the scan for a stale entry stops at EMPTY.
    pub fn insert(&self, key: Key, alloc: Allocation) -> Option<Allocation> {
        let (kind, handle) = key;
        let mut previous = None;
        let mut claimed = false;
        if pack(&alloc, 0).is_some() {
            for e in self.window(kind, handle) {
                let mut info = e.info.load(Ordering::Acquire);
                if state(info) == FULL
                    && kind_of(info) == kind
                    && e.key.load(Ordering::Relaxed) == handle
                {
                    let owner = e.owner.load(Ordering::Relaxed);
                    let tomb = TOMB | (generation(info) << GEN_SHIFT);
                    if e.info
                        .compare_exchange(info, tomb, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        previous = Some(unpack(info, owner));
                    }
                    info = e.info.load(Ordering::Acquire);
                }
                while !claimed && matches!(state(info), EMPTY | TOMB) {
                    let busy = BUSY | (generation(info) << GEN_SHIFT);
                    match e.info.compare_exchange_weak(
                        info,
                        busy,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            e.key.store(handle, Ordering::Relaxed);
                            e.owner.store(alloc.owner, Ordering::Relaxed);
                            let full = pack(&alloc, generation(info) + 1).unwrap_or(FULL);
                            e.info.store(full, Ordering::Release);
                            claimed = true;
                        }
                        Err(now) => info = now,
                    }
                }
                // Nothing of this key lies past an EMPTY slot (`info` is the value last
                // seen: the EMPTY we claimed, or what beat us to it).
                if state(info) == EMPTY {
                    break;
                }
            }
        }
        if claimed {
            // A stale entry can also sit past the claimed slot (up to the first EMPTY),
            // or in the overflow map.
            return previous.or_else(|| self.remove_overflow(&key));
        }
        previous = previous.or_else(|| self.remove(&key));
        let mut map = self.lock_overflow();
        let replaced = map.insert(key, alloc);
        self.overflow_len.store(map.len(), Ordering::Release);
        previous.or(replaced)
    }

    fn remove_overflow(&self, key: &Key) -> Option<Allocation> {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut map = self.lock_overflow();
        let found = map.remove(key);
        self.overflow_len.store(map.len(), Ordering::Release);
        found
    }

    /// Takes `key`'s entry out.
    ///
    /// Inlined into its callers: returned through memory, the 32-byte result is written
    /// with 8-byte stores and read back with 16-byte loads, a store-forwarding stall on
    /// every free (measured: several ns of the hooked pair).
    #[inline(always)]
    pub fn remove(&self, key: &Key) -> Option<Allocation> {
        let (kind, handle) = *key;
        for e in self.window(kind, handle) {
            let info = e.info.load(Ordering::Acquire);
            match state(info) {
                EMPTY => break,
                FULL if kind_of(info) == kind && e.key.load(Ordering::Relaxed) == handle => {
                    let owner = e.owner.load(Ordering::Relaxed);
                    let tomb = TOMB | (generation(info) << GEN_SHIFT);
                    if e.info
                        .compare_exchange(info, tomb, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Some(unpack(info, owner));
                    }
                    // Lost to another remover of the same entry (or it changed): gone.
                    return None;
                }
                _ => {}
            }
        }
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut map = self.lock_overflow();
        let found = map.remove(key);
        self.overflow_len.store(map.len(), Ordering::Release);
        found
    }

    /// Takes out every entry `owner` holds.
    pub fn remove_owned_by(&self, owner: u64) -> Vec<Allocation> {
        let mut out = Vec::new();
        for e in self.slots.iter() {
            let info = e.info.load(Ordering::Acquire);
            if state(info) == FULL && e.owner.load(Ordering::Relaxed) == owner {
                let tomb = TOMB | (generation(info) << GEN_SHIFT);
                if e.info
                    .compare_exchange(info, tomb, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    out.push(unpack(info, owner));
                }
            }
        }
        if self.overflow_len.load(Ordering::Acquire) != 0 {
            let mut map = self.lock_overflow();
            let keys: Vec<Key> = map
                .iter()
                .filter(|(_, a)| a.owner == owner)
                .map(|(k, _)| *k)
                .collect();
            out.extend(keys.iter().filter_map(|k| map.remove(k)));
            self.overflow_len.store(map.len(), Ordering::Release);
        }
        out
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        let in_table = self
            .slots
            .iter()
            .filter(|e| state(e.info.load(Ordering::Acquire)) == FULL)
            .count();
        in_table + self.overflow_len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything, with the overflow map already locked by the caller (a `fork`
    /// child, whose only thread this is: an insert the parent had in flight left a BUSY
    /// slot that must not survive either).
    pub fn clear_locked(&self, overflow: &mut AllocationMap) {
        for e in self.slots.iter() {
            e.info.store(EMPTY, Ordering::Relaxed);
        }
        overflow.clear();
        self.overflow_len.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn a(device: usize, bytes: u64, kind: AllocKind, owner: u64) -> Allocation {
        Allocation {
            device,
            bytes,
            kind,
            owner,
        }
    }

    #[test]
    fn insert_remove_by_kind_and_handle() {
        let t = LiveTable::default();
        assert!(t
            .insert((AllocKind::Data, 0x1000), a(3, 77, AllocKind::Data, 9))
            .is_none());
        assert!(t
            .insert((AllocKind::Vmm, 0x1000), a(1, 5, AllocKind::Vmm, 0))
            .is_none());
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(&(AllocKind::Array, 0x1000)), None, "another kind");
        assert_eq!(
            t.remove(&(AllocKind::Data, 0x1000)),
            Some(a(3, 77, AllocKind::Data, 9))
        );
        assert_eq!(t.remove(&(AllocKind::Data, 0x1000)), None, "only once");
        assert_eq!(
            t.remove(&(AllocKind::Vmm, 0x1000)),
            Some(a(1, 5, AllocKind::Vmm, 0))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn reinserting_a_live_key_returns_the_stale_entry() {
        let t = LiveTable::default();
        t.insert((AllocKind::Data, 8), a(0, 10, AllocKind::Data, 0));
        let old = t.insert((AllocKind::Data, 8), a(0, 7, AllocKind::Data, 0));
        assert_eq!(old.map(|o| o.bytes), Some(10));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(&(AllocKind::Data, 8)).map(|o| o.bytes), Some(7));
    }

    #[test]
    fn colliding_keys_and_huge_sizes_overflow_and_stay_findable() {
        let t = LiveTable::default();
        // Keys that share a home slot: many more than a probe window.
        let same_home: Vec<u64> = (1u64..)
            .filter(|&h| home(AllocKind::Data, h) == home(AllocKind::Data, 1))
            .take(WINDOW + 8)
            .collect();
        for (i, &h) in same_home.iter().enumerate() {
            t.insert((AllocKind::Data, h), a(0, i as u64 + 1, AllocKind::Data, 0));
        }
        t.insert((AllocKind::Data, 42), a(0, 1 << 60, AllocKind::Data, 0));
        assert_eq!(t.len(), WINDOW + 9);
        assert_eq!(
            t.remove(&(AllocKind::Data, 42)).map(|x| x.bytes),
            Some(1 << 60)
        );
        for (i, &h) in same_home.iter().enumerate().rev() {
            assert_eq!(
                t.remove(&(AllocKind::Data, h)).map(|x| x.bytes),
                Some(i as u64 + 1),
                "key {h:#x}"
            );
        }
        assert!(t.is_empty());
    }

    #[test]
    fn remove_owned_by_takes_table_and_overflow_entries() {
        let t = LiveTable::default();
        t.insert((AllocKind::Data, 1), a(0, 1, AllocKind::Data, 7));
        t.insert((AllocKind::Data, 2), a(0, 2, AllocKind::Data, 8));
        t.insert((AllocKind::Array, 3), a(0, 1 << 50, AllocKind::Array, 7));
        let mut got: Vec<u64> = t.remove_owned_by(7).iter().map(|x| x.bytes).collect();
        got.sort();
        assert_eq!(got, vec![1, 1 << 50]);
        assert_eq!(t.len(), 1);
        let mut g = t.overflow_mutex().lock().unwrap();
        t.clear_locked(&mut g);
        drop(g);
        assert!(t.is_empty());
    }

    #[test]
    fn threads_inserting_and_removing_lose_nothing() {
        let t = Arc::new(LiveTable::default());
        let workers: Vec<_> = (0..8u64)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut sum = 0u64;
                    for round in 0..2_000u64 {
                        // 64 live per thread at a time, addresses 512-aligned like the
                        // driver's, some of them shared between threads' windows.
                        let h = ((w << 20) | (round % 64)) << 9;
                        if let Some(old) = t.remove(&(AllocKind::Data, h)) {
                            assert_eq!(old.owner, w);
                            sum -= old.bytes;
                        }
                        t.insert((AllocKind::Data, h), a(0, round + 1, AllocKind::Data, w));
                        sum += round + 1;
                    }
                    sum
                })
            })
            .collect();
        let expected: u64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
        let mut left = 0u64;
        for w in 0..8u64 {
            left += t.remove_owned_by(w).iter().map(|x| x.bytes).sum::<u64>();
        }
        assert_eq!(left, expected);
        assert!(t.is_empty());
    }
}
