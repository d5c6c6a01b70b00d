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
