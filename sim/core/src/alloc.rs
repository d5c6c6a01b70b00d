//! The device-memory allocator: a table of live allocations sorted by address, with first-fit
//! placement inside a device's fake address range (so freed ranges are reused).
//!
//! The table lives in the shared state file; this module only sees a slice and a length, so
//! it is tested over a plain `Vec`.

/// First byte of device 0's fake address range. Device `i` owns
/// `[DEV_VA_BASE + i * DEV_RANGE, DEV_VA_BASE + (i + 1) * DEV_RANGE)`. The range sits at
/// 16 TiB, far from where Linux places host mappings (PIE images near 0x55.., the heap after
/// them, mmap and stacks near 0x7f..), so device and host pointers never collide.
pub const DEV_VA_BASE: u64 = 0x1000_0000_0000;
/// Size of one device's range (1 TiB): the lower half holds virtual addresses (allocations,
/// reservations), the upper half the "physical" ids of VMM handles.
pub const DEV_RANGE: u64 = 1 << 40;
/// Alignment (and size granularity) of ordinary allocations.
pub const ALLOC_ALIGN: u64 = 512;
/// VMM granularity, array footprint granularity.
pub const VMM_GRANULARITY: u64 = 2 << 20;

/// Kind of an allocation entry.
pub mod kind {
    pub const ALLOC: u8 = 1;
    pub const PITCH: u8 = 2;
    pub const MANAGED: u8 = 3;
    pub const ASYNC: u8 = 4;
    /// VMM physical handle located on the device (charged).
    pub const VMM: u8 = 5;
    /// VMM physical handle located on the host (not charged).
    pub const VMM_HOST: u8 = 6;
    /// VMM address reservation (not charged).
    pub const RESERVE: u8 = 7;
    pub const ARRAY: u8 = 8;
    pub const MIPMAP: u8 = 9;
    /// Module globals region (not charged: the module's cost covers it).
    pub const GLOBAL: u8 = 10;

    /// Short name for reports.
    pub fn name(k: u8) -> &'static str {
        match k {
            ALLOC => "alloc",
            PITCH => "pitch",
            MANAGED => "managed",
            ASYNC => "async",
            VMM => "vmm",
            VMM_HOST => "vmm_host",
            RESERVE => "reserve",
            ARRAY => "array",
            MIPMAP => "mipmap",
            GLOBAL => "global",
            _ => "unknown",
        }
    }

    /// All kinds, in report order.
    pub const ALL: [u8; 10] = [
        ALLOC, PITCH, MANAGED, ASYNC, VMM, VMM_HOST, RESERVE, ARRAY, MIPMAP, GLOBAL,
    ];
}

/// One live allocation (56 bytes, `repr(C)`: it lives in the shared file).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocEntry {
    /// First address (fake device address) of the range this entry occupies.
    pub base: u64,
    /// Bytes of address range occupied (aligned size).
    pub span: u64,
    /// Bytes the caller asked for.
    pub bytes: u64,
    /// Bytes counted against the device's memory (0 for reservations, host handles).
    pub charged: u64,
    /// Owning context instance in the owning process (0: owned by the process).
    pub ctx: u64,
    /// Kind-specific value (e.g. the pool of an async allocation).
    pub aux: u64,
    pub pid: u32,
    /// Process-table slot of the owner.
    pub slot: u16,
    /// Physical device index.
    pub dev: u8,
    /// One of [`kind`].
    pub kind: u8,
}

/// Rounds `v` up to a multiple of `a` (a power of two); `None` on overflow.
pub fn align_up(v: u64, a: u64) -> Option<u64> {
    debug_assert!(a.is_power_of_two());
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

/// Virtual-address half of device `dev`'s range.
pub fn va_range(dev: u32) -> (u64, u64) {
    let lo = DEV_VA_BASE + dev as u64 * DEV_RANGE;
    (lo, lo + DEV_RANGE / 2)
}

/// "Physical" half of device `dev`'s range (VMM handle ids).
pub fn phys_range(dev: u32) -> (u64, u64) {
    let lo = DEV_VA_BASE + dev as u64 * DEV_RANGE + DEV_RANGE / 2;
    (lo, lo + DEV_RANGE / 2)
}

/// Whether `addr` lies in any device's fake range.
pub fn is_fake_device_addr(addr: u64, devices: u32) -> bool {
    addr >= DEV_VA_BASE && addr < DEV_VA_BASE + devices.max(1) as u64 * DEV_RANGE
}

/// Why an insertion failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The table has no free row.
    Full,
    /// No gap of that size in the range (or the fixed address is taken).
    NoSpace,
}

/// Index of the row of `rows` (sorted by `base`) starting exactly at `base`.
pub fn find_row(rows: &[AllocEntry], base: u64) -> Option<usize> {
    let i = rows.partition_point(|e| e.base < base);
    (i < rows.len() && rows[i].base == base).then_some(i)
}

/// A sorted allocation table over borrowed storage.
pub struct Table<'a> {
    rows: &'a mut [AllocEntry],
    len: &'a mut u64,
}

impl<'a> Table<'a> {
    /// Wraps storage; `*len` rows are live (clamped to the storage size).
    pub fn new(rows: &'a mut [AllocEntry], len: &'a mut u64) -> Table<'a> {
        if *len as usize > rows.len() {
            *len = rows.len() as u64;
        }
        Table { rows, len }
    }

    pub fn len(&self) -> usize {
        *self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        *self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.rows.len()
    }

    /// The live rows, sorted by `base`.
    pub fn rows(&self) -> &[AllocEntry] {
        &self.rows[..*self.len as usize]
    }

    /// Index of the first row with `base >= addr`.
    pub fn lower_bound(&self, addr: u64) -> usize {
        self.rows().partition_point(|e| e.base < addr)
    }

    /// Index of the row starting exactly at `base`.
    pub fn find(&self, base: u64) -> Option<usize> {
        find_row(self.rows(), base)
    }

    /// Index of the row whose range contains `addr`.
    pub fn find_containing(&self, addr: u64) -> Option<usize> {
        let i = self.rows().partition_point(|e| e.base <= addr);
        if i == 0 {
            return None;
        }
        let e = &self.rows[i - 1];
        (addr - e.base < e.span.max(1)).then_some(i - 1)
    }

    /// First address in `[lo, hi)` aligned to `align` where `span` bytes fit between rows.
    pub fn first_fit(&self, lo: u64, hi: u64, span: u64, align: u64) -> Option<u64> {
        let mut cursor = align_up(lo, align)?;
        let start = self
            .rows()
            .partition_point(|e| e.base.saturating_add(e.span) <= lo);
        for e in &self.rows()[start..] {
            if e.base >= hi {
                break;
            }
            if e.base >= cursor && e.base - cursor >= span {
                return Some(cursor);
            }
            let after = align_up(e.base.saturating_add(e.span), align)?;
            if after > cursor {
                cursor = after;
            }
        }
        (cursor.checked_add(span)? <= hi).then_some(cursor)
    }

    /// Whether `[base, base + span)` overlaps no row.
    pub fn is_free(&self, base: u64, span: u64) -> bool {
        let Some(end) = base.checked_add(span) else {
            return false;
        };
        let i = self.lower_bound(base);
        if i > 0 {
            let p = &self.rows[i - 1];
            if p.base.saturating_add(p.span) > base {
                return false;
            }
        }
        !(i < self.len() && self.rows[i].base < end)
    }

    /// Inserts a row keeping the order (the caller picked a free range).
    pub fn insert(&mut self, e: AllocEntry) -> Result<usize, TableError> {
        if self.len() >= self.capacity() {
            return Err(TableError::Full);
        }
        let i = self.lower_bound(e.base);
        let n = self.len();
        self.rows.copy_within(i..n, i + 1);
        self.rows[i] = e;
        *self.len += 1;
        Ok(i)
    }

    /// Places `e` (its `base` is ignored) first-fit in `[lo, hi)` and inserts it.
    pub fn place(
        &mut self,
        mut e: AllocEntry,
        lo: u64,
        hi: u64,
        align: u64,
    ) -> Result<u64, TableError> {
        if self.len() >= self.capacity() {
            return Err(TableError::Full);
        }
        let base = self
            .first_fit(lo, hi, e.span, align)
            .ok_or(TableError::NoSpace)?;
        e.base = base;
        self.insert(e)?;
        Ok(base)
    }

    /// Removes row `i` and returns it.
    pub fn remove(&mut self, i: usize) -> AllocEntry {
        let n = self.len();
        let e = self.rows[i];
        self.rows.copy_within(i + 1..n, i);
        *self.len -= 1;
        e
    }

    /// Removes every row for which `pred` holds, calling `on_remove` for each; returns the count.
    pub fn remove_where(
        &mut self,
        mut pred: impl FnMut(&AllocEntry) -> bool,
        mut on_remove: impl FnMut(&AllocEntry),
    ) -> usize {
        let n = self.len();
        let mut w = 0;
        for r in 0..n {
            let e = self.rows[r];
            if pred(&e) {
                on_remove(&e);
            } else {
                self.rows[w] = e;
                w += 1;
            }
        }
        *self.len = w as u64;
        n - w
    }

    /// Restores the invariants after a crash in the middle of an update: sorts the rows and
    /// drops duplicates and zero-sized rows. Returns how many rows were dropped.
    pub fn repair(&mut self) -> usize {
        let n = self.len();
        let rows = &mut self.rows[..n];
        rows.sort_by_key(|e| e.base);
        let mut w = 0;
        for r in 0..n {
            let e = rows[r];
            if e.span == 0 || (w > 0 && rows[w - 1].base == e.base) {
                continue;
            }
            rows[w] = e;
            w += 1;
        }
        *self.len = w as u64;
        n - w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(span: u64) -> AllocEntry {
        AllocEntry {
            span,
            bytes: span,
            charged: span,
            kind: kind::ALLOC,
            ..Default::default()
        }
    }

    #[test]
    fn first_fit_reuses_freed_ranges() {
        let mut rows = vec![AllocEntry::default(); 8];
        let mut len = 0;
        let mut t = Table::new(&mut rows, &mut len);
        let (lo, hi) = va_range(0);
        let a = t.place(entry(1024), lo, hi, 512).unwrap();
        let b = t.place(entry(512), lo, hi, 512).unwrap();
        let c = t.place(entry(4096), lo, hi, 512).unwrap();
        assert_eq!(a, lo);
        assert_eq!(b, lo + 1024);
        assert_eq!(c, lo + 1536);
        // free b, a 512-byte allocation reuses it; a bigger one goes after c
        let i = t.find(b).unwrap();
        t.remove(i);
        let d = t.place(entry(1024), lo, hi, 512).unwrap();
        assert_eq!(d, c + 4096);
        let e = t.place(entry(512), lo, hi, 512).unwrap();
        assert_eq!(e, b);
        assert_eq!(t.find_containing(c + 100), t.find(c));
        assert_eq!(t.find_containing(c + 4096), t.find(d));
        assert_eq!(t.find_containing(lo - 1), None);
        let bases: Vec<u64> = t.rows().iter().map(|e| e.base).collect();
        let mut sorted = bases.clone();
        sorted.sort();
        assert_eq!(bases, sorted);
    }

    #[test]
    fn alignment_and_limits() {
        let mut rows = vec![AllocEntry::default(); 4];
        let mut len = 0;
        let mut t = Table::new(&mut rows, &mut len);
        let lo = 1000;
        let hi = lo + 10 * VMM_GRANULARITY;
        let a = t.place(entry(100), lo, hi, 512).unwrap();
        assert_eq!(a, 1024);
        let b = t
            .place(entry(VMM_GRANULARITY), lo, hi, VMM_GRANULARITY)
            .unwrap();
        assert_eq!(b, VMM_GRANULARITY);
        assert_eq!(
            t.place(entry(20 * VMM_GRANULARITY), lo, hi, 512),
            Err(TableError::NoSpace)
        );
        t.place(entry(512), lo, hi, 512).unwrap();
        t.place(entry(512), lo, hi, 512).unwrap();
        assert_eq!(t.place(entry(512), lo, hi, 512), Err(TableError::Full));
    }

    #[test]
    fn ranges_of_devices_are_separate() {
        let mut rows = vec![AllocEntry::default(); 8];
        let mut len = 0;
        let mut t = Table::new(&mut rows, &mut len);
        let (lo1, hi1) = va_range(1);
        let (lo0, hi0) = va_range(0);
        let x = t.place(entry(512), lo1, hi1, 512).unwrap();
        let y = t.place(entry(512), lo0, hi0, 512).unwrap();
        assert_eq!((x, y), (lo1, lo0));
        let (plo, _) = phys_range(0);
        assert_eq!(plo, hi0);
        assert!(is_fake_device_addr(x, 2));
        assert!(!is_fake_device_addr(0x7f00_0000_0000, 16));
        assert!(t.is_free(lo0 + 512, 512));
        assert!(!t.is_free(lo0 + 256, 512));
        assert!(!t.is_free(lo0 - 256, 512));
    }

    #[test]
    fn remove_where_and_repair() {
        let mut rows = vec![AllocEntry::default(); 8];
        let mut len = 0;
        let mut t = Table::new(&mut rows, &mut len);
        for s in 0..5u16 {
            let mut e = entry(512);
            e.slot = s % 2;
            t.place(e, 0, 1 << 20, 512).unwrap();
        }
        let mut freed = 0;
        let n = t.remove_where(|e| e.slot == 1, |e| freed += e.charged);
        assert_eq!((n, freed, t.len()), (2, 1024, 3));
        // simulate a torn memmove: duplicate row and disorder
        rows[3] = rows[0];
        rows.swap(0, 2);
        len = 4;
        let mut t = Table::new(&mut rows, &mut len);
        assert_eq!(t.repair(), 1);
        assert_eq!(t.len(), 3);
        assert!(t.rows().windows(2).all(|w| w[0].base < w[1].base));
    }
}
