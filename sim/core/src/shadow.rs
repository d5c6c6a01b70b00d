//! What the simulated device memory holds, for copies: each allocation of up to
//! [`SHADOW_MAX`] bytes gets a host buffer (its "shadow") on its first write; larger ones read
//! as zeros and drop writes. Shared by the CUDA and HIP simulators' process-local memory.

use std::collections::{BTreeMap, HashMap};

/// Largest allocation that gets real backing for copies.
pub const SHADOW_MAX: u64 = 64 << 20;

/// Where the bytes of a device-side range live.
#[derive(Debug, Clone, Copy)]
pub enum Loc {
    /// Plain host memory (managed, pinned, registered, or a pageable pointer).
    Host(*mut u8),
    /// A shadow buffer: shared-table base, its span, offset into it.
    Shadow { base: u64, span: u64, off: u64 },
}

impl Loc {
    /// The location `by` bytes further on.
    pub fn offset(self, by: u64) -> Loc {
        match self {
            Loc::Host(p) => Loc::Host((p as u64 + by) as *mut u8),
            Loc::Shadow { base, span, off } => Loc::Shadow {
                base,
                span,
                off: off + by,
            },
        }
    }
}

/// A range of a process's memory map: `[start, start + len)`, its first byte at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Mapped {
    pub start: u64,
    pub len: u64,
    pub at: Loc,
}

impl Mapped {
    /// A device allocation at `start`: its host backing (managed memory) when it has one,
    /// else its shadow (by shared-table base `shm_base`, of `span` bytes).
    pub fn allocation(
        start: u64,
        bytes: u64,
        host: Option<(usize, usize)>,
        shm_base: u64,
        span: u64,
    ) -> Mapped {
        let at = match host {
            Some((h, _)) => Loc::Host(h as *mut u8),
            None => Loc::Shadow {
                base: shm_base,
                span,
                off: 0,
            },
        };
        Mapped {
            start,
            len: bytes,
            at,
        }
    }

    /// A virtual-memory mapping at `start` of `size` bytes of the physical handle `handle`
    /// (`handle_size` bytes, 0 if unknown) from `offset` on; its shadow is keyed by the handle.
    pub fn mapping(start: u64, size: u64, handle: u64, handle_size: u64, offset: u64) -> Mapped {
        Mapped {
            start,
            len: size,
            at: Loc::Shadow {
                base: handle,
                span: handle_size,
                off: offset,
            },
        }
    }

    /// Host memory the library knows (pinned or registered): the address itself.
    pub fn host(start: u64, len: u64) -> Mapped {
        Mapped {
            start,
            len,
            at: Loc::Host(start as *mut u8),
        }
    }
}

/// Resolves `len` bytes at `addr` against a process's memory map, `ranges` in the order the
/// library looks (each the range of one kind of record that holds `addr`, if any): the first
/// that holds `addr` must hold all `len` bytes. An address none holds is pageable host memory
/// where `pageable` says so and it lies outside the fake device ranges of `ndev` devices.
/// `None`: an invalid range.
pub fn resolve(
    addr: u64,
    len: u64,
    ranges: impl IntoIterator<Item = Option<Mapped>>,
    pageable: bool,
    ndev: u32,
) -> Option<Loc> {
    let end = addr.checked_add(len)?;
    if let Some(m) = ranges.into_iter().flatten().next() {
        return (end <= m.start + m.len).then(|| m.at.offset(addr - m.start));
    }
    (pageable && addr != 0 && !crate::alloc::is_fake_device_addr(addr, ndev))
        .then_some(Loc::Host(addr as *mut u8))
}

/// The entry of `m` whose range `[key, key + len(value))` holds `addr` (a zero-length entry
/// holds its key).
pub fn containing<V: Copy>(
    m: &BTreeMap<u64, V>,
    addr: u64,
    len: impl Fn(&V) -> u64,
) -> Option<(u64, V)> {
    let (&k, &v) = m.range(..=addr).next_back()?;
    (addr - k < len(&v).max(1)).then_some((k, v))
}

/// The shadow buffers, by shared-table base.
#[derive(Debug, Default)]
pub struct Shadows(HashMap<u64, Vec<u8>>);

impl Shadows {
    /// Forgets an allocation's contents (it was freed).
    pub fn remove(&mut self, base: &u64) -> Option<Vec<u8>> {
        self.0.remove(base)
    }

    /// Whether the allocation at `base` has been written (else it reads as zeros).
    pub fn contains_key(&self, base: &u64) -> bool {
        self.0.contains_key(base)
    }

    /// The `len` bytes at `off` of the buffer of `base`, made on first use; `None` for an
    /// allocation too large to shadow or a range outside it.
    fn range_mut(&mut self, base: u64, span: u64, off: u64, len: usize) -> Option<&mut [u8]> {
        if span == 0 || span > SHADOW_MAX {
            return None;
        }
        let v = self
            .0
            .entry(base)
            .or_insert_with(|| vec![0u8; span as usize]);
        let o = usize::try_from(off).ok()?;
        v.get_mut(o..o.checked_add(len)?)
    }

    /// Reads `dst.len()` bytes from a location (zeros where nothing was written).
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `dst.len()` bytes.
    pub unsafe fn read(&self, loc: Loc, dst: &mut [u8]) {
        match loc {
            // SAFETY: the caller vouches for host pointers.
            Loc::Host(p) => unsafe { std::ptr::copy(p, dst.as_mut_ptr(), dst.len()) },
            Loc::Shadow { base, off, .. } => {
                let src = usize::try_from(off)
                    .ok()
                    .and_then(|o| self.0.get(&base)?.get(o..o.checked_add(dst.len())?));
                match src {
                    Some(s) => dst.copy_from_slice(s),
                    None => dst.fill(0),
                }
            }
        }
    }

    /// Writes bytes to a location (dropped where there is no shadow).
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `src.len()` bytes.
    pub unsafe fn write(&mut self, loc: Loc, src: &[u8]) {
        match loc {
            // SAFETY: the caller vouches for host pointers.
            Loc::Host(p) => unsafe { std::ptr::copy(src.as_ptr(), p, src.len()) },
            Loc::Shadow { base, span, off } => {
                if let Some(d) = self.range_mut(base, span, off, src.len()) {
                    d.copy_from_slice(src);
                }
            }
        }
    }

    /// Fills `count` elements of `pattern` at a location.
    ///
    /// # Safety
    /// A `Loc::Host` pointer must be valid for `count * pattern.len()` bytes.
    pub unsafe fn fill(&mut self, loc: Loc, pattern: &[u8], count: usize) {
        let Some(total) = count.checked_mul(pattern.len()) else {
            return;
        };
        if total == 0 {
            return;
        }
        let apply = |dst: &mut [u8]| {
            if pattern.iter().all(|&b| b == pattern[0]) {
                dst.fill(pattern[0]);
            } else {
                for ch in dst.chunks_exact_mut(pattern.len()) {
                    ch.copy_from_slice(pattern);
                }
            }
        };
        match loc {
            // SAFETY: the caller vouches for host pointers.
            Loc::Host(p) => apply(unsafe { std::slice::from_raw_parts_mut(p, total) }),
            Loc::Shadow { base, span, off } => {
                if pattern.iter().all(|&b| b == 0) && !self.0.contains_key(&base) {
                    return; // already reads as zeros
                }
                if let Some(d) = self.range_mut(base, span, off, total) {
                    apply(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(off: u64) -> Loc {
        Loc::Shadow {
            base: 0x1000,
            span: 16,
            off,
        }
    }

    fn shadow_of(loc: Option<Loc>) -> Option<(u64, u64, u64)> {
        match loc? {
            Loc::Shadow { base, span, off } => Some((base, span, off)),
            Loc::Host(p) => panic!("host {p:?}"),
        }
    }

    #[test]
    fn resolve_takes_the_first_range_that_holds_the_address_and_bounds_it() {
        let dev = crate::alloc::DEV_VA_BASE;
        let alloc = Some(Mapped {
            start: dev,
            len: 16,
            at: at(0),
        });
        let map = Some(Mapped {
            start: dev + 4,
            len: 100,
            at: Loc::Shadow {
                base: 0x2000,
                span: 200,
                off: 50,
            },
        });
        // The first range holding the address wins, at its offset.
        let got = resolve(dev + 4, 12, [alloc, map], false, 1);
        assert_eq!(shadow_of(got), Some((0x1000, 16, 4)));
        // Past its end: refused, not handed to the next range.
        assert!(resolve(dev + 4, 13, [alloc, map], false, 1).is_none());
        // A range's own offset is kept.
        let got = resolve(dev + 10, 8, [None, map], false, 1);
        assert_eq!(shadow_of(got), Some((0x2000, 200, 56)));
        // A host range: the address itself.
        let host = Some(Mapped {
            start: 0x5000,
            len: 64,
            at: Loc::Host(0x5000 as *mut u8),
        });
        assert!(matches!(
            resolve(0x5010, 48, [host], false, 1),
            Some(Loc::Host(p)) if p as u64 == 0x5010
        ));
        // Unknown: pageable host memory only where allowed and outside the device ranges.
        assert!(matches!(
            resolve(0x7000, 8, [None], true, 1),
            Some(Loc::Host(p)) if p as u64 == 0x7000
        ));
        assert!(resolve(0x7000, 8, [None], false, 1).is_none());
        assert!(resolve(dev + 64, 8, [None], true, 1).is_none());
        assert!(resolve(0, 8, [None], true, 1).is_none());
        assert!(resolve(u64::MAX, 2, [alloc], true, 1).is_none(), "overflow");
    }

    #[test]
    fn shadows_hold_what_was_written_and_read_zeros_elsewhere() {
        let mut s = Shadows::default();
        let mut buf = [9u8; 4];
        // SAFETY: no host locations in this test.
        unsafe {
            s.read(at(0), &mut buf);
            assert_eq!(buf, [0; 4]);
            s.fill(at(0), &[0], 16);
            assert!(
                !s.contains_key(&0x1000),
                "zero fill of an unwritten buffer makes none"
            );
            s.write(at(2), &[1, 2, 3]);
            s.read(at(1), &mut buf);
            assert_eq!(buf, [0, 1, 2, 3]);
            s.fill(at(8), &[0xab, 0xcd], 2);
            s.read(at(8), &mut buf);
            assert_eq!(buf, [0xab, 0xcd, 0xab, 0xcd]);
            // Past the end of the buffer: writes are dropped, reads are zeros, nothing panics.
            s.write(at(14), &[7, 7, 7, 7]);
            s.fill(at(15), &[5], 4);
            s.fill(at(u64::MAX), &[5], 1);
            s.read(at(14), &mut buf);
            assert_eq!(buf, [0; 4]);
            s.read(at(u64::MAX), &mut buf);
            assert_eq!(buf, [0; 4]);
            let mut b2 = [0u8; 2];
            s.read(at(14), &mut b2);
            assert_eq!(b2, [0, 0]);
            // Too large to shadow.
            let big = Loc::Shadow {
                base: 0x2000,
                span: SHADOW_MAX + 1,
                off: 0,
            };
            s.write(big, &[1]);
            assert!(!s.contains_key(&0x2000));
            assert!(s.remove(&0x1000).is_some());
            s.read(at(2), &mut buf);
            assert_eq!(buf, [0; 4]);
        }
    }

    #[test]
    fn containing_finds_the_range_of_an_address() {
        let m: BTreeMap<u64, u64> = [(100, 10), (200, 0)].into_iter().collect();
        assert_eq!(containing(&m, 105, |l| *l), Some((100, 10)));
        assert_eq!(containing(&m, 110, |l| *l), None);
        assert_eq!(containing(&m, 200, |l| *l), Some((200, 0)));
        assert_eq!(containing(&m, 99, |l| *l), None);
    }
}
