//! Process-local handle tables: opaque handles (contexts, streams, events, ...) that can be
//! validated with a couple of atomic loads, without a lock and without dereferencing
//! whatever value the caller passed. A handle encodes a table tag, the slot index and a
//! generation, so a destroyed handle stays invalid even after its slot is reused.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

const CHUNK: usize = 1024;
const MAX_CHUNKS: usize = 4096;

struct Slot<T> {
    /// `generation << 1 | live`.
    state: AtomicU64,
    data: T,
}

struct Alloc {
    next: u32,
    free: Vec<u32>,
}

/// A table of objects of type `T` addressed by encoded handles. `T` carries its own interior
/// mutability (atomics, mutexes); slots are never freed, only reused.
pub struct HandleTable<T> {
    tag: u64,
    chunks: [AtomicPtr<Slot<T>>; MAX_CHUNKS],
    alloc: Mutex<Alloc>,
}

const TAG_SHIFT: u32 = 48;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u64 = 0xFFFF;

impl<T: Default + Send + Sync> HandleTable<T> {
    /// A new, empty table whose handles carry `tag` (1..=127) in bits 48..56.
    pub const fn new(tag: u8) -> Self {
        HandleTable {
            tag: tag as u64,
            chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS],
            alloc: Mutex::new(Alloc {
                next: 0,
                free: Vec::new(),
            }),
        }
    }

    fn slot(&self, idx: usize) -> Option<&Slot<T>> {
        let c = self.chunks.get(idx / CHUNK)?.load(Ordering::Acquire);
        if c.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer points at CHUNK slots that are never freed.
        Some(unsafe { &*c.add(idx % CHUNK) })
    }

    fn decode(&self, h: u64) -> Option<(usize, u64)> {
        if h >> TAG_SHIFT != self.tag {
            return None;
        }
        let low = h & 0xFFFF_FFFF;
        if low == 0 {
            return None;
        }
        Some(((low - 1) as usize, (h >> GEN_SHIFT) & GEN_MASK))
    }

    fn encode(&self, idx: usize, gen: u64) -> u64 {
        (self.tag << TAG_SHIFT) | (gen << GEN_SHIFT) | (idx as u64 + 1)
    }

    /// Creates an object: `init` sets its fields before the handle becomes valid.
    /// `None` when the table is full.
    pub fn create(&self, init: impl FnOnce(&T)) -> Option<u64> {
        let idx = {
            let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
            match a.free.pop() {
                Some(i) => i as usize,
                None => {
                    let i = a.next as usize;
                    if i >= CHUNK * MAX_CHUNKS {
                        return None;
                    }
                    let ci = i / CHUNK;
                    if self.chunks[ci].load(Ordering::Acquire).is_null() {
                        let v: Vec<Slot<T>> = (0..CHUNK)
                            .map(|_| Slot {
                                state: AtomicU64::new(0),
                                data: T::default(),
                            })
                            .collect();
                        let p = Box::leak(v.into_boxed_slice()).as_mut_ptr();
                        self.chunks[ci].store(p, Ordering::Release);
                    }
                    a.next += 1;
                    i
                }
            }
        };
        let slot = self.slot(idx)?;
        let gen = ((slot.state.load(Ordering::Acquire) >> 1) + 1) & GEN_MASK;
        init(&slot.data);
        slot.state.store((gen << 1) | 1, Ordering::Release);
        Some(self.encode(idx, gen))
    }

    /// The object behind a live handle.
    #[inline]
    pub fn get(&self, h: u64) -> Option<&T> {
        let (idx, gen) = self.decode(h)?;
        let slot = self.slot(idx)?;
        (slot.state.load(Ordering::Acquire) == (gen << 1) | 1).then_some(&slot.data)
    }

    /// Whether `h` is a live handle of this table.
    #[inline]
    pub fn is_live(&self, h: u64) -> bool {
        self.get(h).is_some()
    }

    /// Invalidates a handle; `false` when it was not live (unknown or already destroyed).
    pub fn destroy(&self, h: u64) -> bool {
        let Some((idx, gen)) = self.decode(h) else {
            return false;
        };
        let Some(slot) = self.slot(idx) else {
            return false;
        };
        let live = (gen << 1) | 1;
        if slot
            .state
            .compare_exchange(live, gen << 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.alloc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .push(idx as u32);
        true
    }

    /// Handles of all live objects (a snapshot).
    pub fn live_handles(&self) -> Vec<u64> {
        let n = self.alloc.lock().unwrap_or_else(|e| e.into_inner()).next as usize;
        (0..n)
            .filter_map(|i| {
                let s = self.slot(i)?;
                let st = s.state.load(Ordering::Acquire);
                (st & 1 == 1).then(|| self.encode(i, st >> 1))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Default)]
    struct Obj {
        v: AtomicU32,
    }

    static T1: HandleTable<Obj> = HandleTable::new(0x21);
    static T2: HandleTable<Obj> = HandleTable::new(0x22);

    #[test]
    fn create_get_destroy_reuse() {
        let a = T1.create(|o| o.v.store(7, Ordering::Relaxed)).unwrap();
        assert_ne!(a, 0);
        assert!(
            a > 2,
            "handles never collide with CU_STREAM_LEGACY/PER_THREAD"
        );
        assert_eq!(T1.get(a).unwrap().v.load(Ordering::Relaxed), 7);
        assert!(T2.get(a).is_none(), "tag is checked");
        assert!(T1.get(0).is_none());
        assert!(T1.get(a + 5000).is_none());
        assert!(T1.get(u64::MAX).is_none());
        assert!(T1.destroy(a));
        assert!(!T1.destroy(a));
        assert!(T1.get(a).is_none());
        let b = T1.create(|o| o.v.store(8, Ordering::Relaxed)).unwrap();
        assert_ne!(a, b, "slot reuse bumps the generation");
        assert!(T1.get(a).is_none());
        assert_eq!(T1.get(b).unwrap().v.load(Ordering::Relaxed), 8);
        assert!(T1.live_handles().contains(&b));
        assert!(!T1.live_handles().contains(&a));
    }

    #[test]
    fn many_handles_across_chunks() {
        let hs: Vec<u64> = (0..3000)
            .map(|i| T2.create(|o| o.v.store(i, Ordering::Relaxed)).unwrap())
            .collect();
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(T2.get(*h).unwrap().v.load(Ordering::Relaxed), i as u32);
        }
        for h in &hs {
            assert!(T2.destroy(*h));
        }
        assert!(T2.live_handles().is_empty());
    }
}
