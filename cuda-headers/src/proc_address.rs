//! How the real driver answers `cuGetProcAddress(symbol, &pfn, cudaVersion, flags)`:
//! `symbol` is a base name (`cuMemAlloc`); among the variants of that name, the per-thread
//! ones (`_ptsz`/`_ptds`) are eligible only with flag 2 (and then preferred), the others
//! only without it; of the eligible variants, the newest one whose version is not above
//! `cudaVersion` wins. A known name with no variant old enough is "version not
//! sufficient"; an unknown name is "symbol not found".

use crate::bindings::{
    CUdriverProcAddressQueryResult, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
    CU_GET_PROC_ADDRESS_SUCCESS, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND,
    CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT,
};

/// One row of the driver table, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    /// The exported symbol, e.g. `cuMemAlloc_v2`.
    pub symbol: &'static str,
    /// The name `cuGetProcAddress` is asked for, e.g. `cuMemAlloc`.
    pub base: &'static str,
    /// The CUDA version that introduced this variant (e.g. 3020).
    pub since: i32,
    /// The per-thread-default-stream variant (`_ptsz` / `_ptds`).
    pub per_thread: bool,
    /// Whether libvgpu intercepts this entry point.
    pub hooked: bool,
}

macro_rules! define_proc_table {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        /// Index of each entry point in [`DRIVER_PROCS`] (and in every consumer's
        /// table generated from the same macro, which keeps the same order).
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum DriverFn { $( $name ),* }

        /// Every driver entry point, in table order.
        pub const DRIVER_PROCS: &[ProcEntry] = &[
            $( ProcEntry {
                symbol: stringify!($name),
                base: $base,
                since: $ver,
                per_thread: define_proc_table!(@pt $flavor),
                hooked: define_proc_table!(@hook $hook),
            } ),*
        ];
    };
    (@pt ptds) => { true };
    (@pt dflt) => { false };
    (@hook hook) => { true };
    (@hook gate) => { true };
    (@hook pass) => { false };
}
crate::cuda_driver_api!(define_proc_table);

/// Number of rows in the driver table.
pub const DRIVER_PROC_COUNT: usize = DRIVER_PROCS.len();

/// The answer to one `cuGetProcAddress` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcLookup {
    /// The variant to return: an index into [`DRIVER_PROCS`].
    Found(usize),
    /// The name is known, but no variant is old enough for the requested version.
    VersionNotSufficient,
    /// The name is not in the table.
    NotFound,
}

impl ProcLookup {
    /// The `CUdriverProcAddressQueryResult` a driver reports for this answer.
    pub fn status(self) -> CUdriverProcAddressQueryResult {
        match self {
            ProcLookup::Found(_) => CU_GET_PROC_ADDRESS_SUCCESS,
            ProcLookup::VersionNotSufficient => CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT,
            ProcLookup::NotFound => CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND,
        }
    }
}

/// Resolves a `cuGetProcAddress` query the way the real driver does (see module docs).
/// `symbol` is the base name without a trailing NUL.
pub fn resolve_proc(symbol: &[u8], cuda_version: i32, flags: u64) -> ProcLookup {
    let per_thread = flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM as u64 != 0;
    let mut known = false;
    let mut best: Option<(usize, bool, i32)> = None;
    for (i, e) in DRIVER_PROCS.iter().enumerate() {
        if e.base.as_bytes() != symbol {
            continue;
        }
        known = true;
        if e.since > cuda_version || (e.per_thread && !per_thread) {
            continue;
        }
        // Prefer the per-thread variant when asked for, then the newest version.
        let better = match best {
            None => true,
            Some((_, bpt, bver)) => (e.per_thread, e.since) > (bpt, bver),
        };
        if better {
            best = Some((i, e.per_thread, e.since));
        }
    }
    match best {
        Some((i, _, _)) => ProcLookup::Found(i),
        None if known => ProcLookup::VersionNotSufficient,
        None => ProcLookup::NotFound,
    }
}

/// The row a per-thread-default-stream row (`ptds`) is the twin of: the default-stream
/// variant of the same base name that `cuGetProcAddress` answers without flag 2 at the twin's
/// own version (a ptds row names its base row by its base name and version). The twin takes
/// the same arguments (consumers that forward to the base are type-checked by the compiler)
/// and has the same hook kind (tested below). A `dflt` row is its own base.
///
/// `const`: consumers generate twins from it at compile time; a ptds row with no base row
/// fails their build.
pub const fn ptds_base(row: usize) -> usize {
    let twin = &DRIVER_PROCS[row];
    if !twin.per_thread {
        return row;
    }
    let mut best = usize::MAX;
    let mut j = 0;
    while j < DRIVER_PROCS.len() {
        let c = &DRIVER_PROCS[j];
        if !c.per_thread
            && str_eq(c.base, twin.base)
            && c.since <= twin.since
            && (best == usize::MAX || c.since > DRIVER_PROCS[best].since)
        {
            best = j;
        }
        j += 1;
    }
    if best == usize::MAX {
        panic!("a ptds row of the driver table has no default-stream base row");
    }
    best
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ptds_row_has_its_base_row() {
        let mut twins = 0;
        for (i, e) in DRIVER_PROCS.iter().enumerate() {
            let b = &DRIVER_PROCS[ptds_base(i)];
            if !e.per_thread {
                assert_eq!(ptds_base(i), i, "{}", e.symbol);
                continue;
            }
            twins += 1;
            // the table's naming convention: the twin is the base symbol plus the suffix
            let stem = e
                .symbol
                .strip_suffix("_ptsz")
                .or_else(|| e.symbol.strip_suffix("_ptds"))
                .unwrap_or_else(|| panic!("{}: a ptds row without _ptsz/_ptds", e.symbol));
            assert_eq!(b.symbol, stem, "base of {}", e.symbol);
            assert!(!b.per_thread && b.base == e.base && b.since <= e.since);
            assert_eq!(
                b.hooked, e.hooked,
                "{}: hook kind differs from its base",
                e.symbol
            );
            // and it is what cuGetProcAddress answers without flag 2 at the twin's version
            assert_eq!(
                resolve_proc(e.base.as_bytes(), e.since, 0),
                ProcLookup::Found(ptds_base(i))
            );
        }
        assert!(twins > 0);
    }

    fn found(sym: &str, ver: i32, flags: u64) -> &'static str {
        match resolve_proc(sym.as_bytes(), ver, flags) {
            ProcLookup::Found(i) => DRIVER_PROCS[i].symbol,
            other => panic!("{sym}@{ver}/{flags}: {other:?}"),
        }
    }

    #[test]
    fn versions_select_suffixed_variants() {
        assert_eq!(found("cuMemAlloc", 3020, 0), "cuMemAlloc_v2");
        assert_eq!(found("cuMemAlloc", 12080, 0), "cuMemAlloc_v2");
        assert_eq!(found("cuCtxCreate", 3020, 0), "cuCtxCreate_v2");
        assert_eq!(found("cuCtxCreate", 11040, 0), "cuCtxCreate_v3");
        assert_eq!(found("cuCtxCreate", 12080, 0), "cuCtxCreate_v4");
        assert_eq!(
            found("cuDevicePrimaryCtxRelease", 7000, 0),
            "cuDevicePrimaryCtxRelease"
        );
        assert_eq!(
            found("cuDevicePrimaryCtxRelease", 11000, 0),
            "cuDevicePrimaryCtxRelease_v2"
        );
        assert_eq!(found("cuGetProcAddress", 12000, 0), "cuGetProcAddress_v2");
        assert_eq!(found("cuGetProcAddress", 11030, 0), "cuGetProcAddress");
        assert_eq!(found("cuEventElapsedTime", 12000, 0), "cuEventElapsedTime");
        assert_eq!(
            found("cuEventElapsedTime", 12080, 0),
            "cuEventElapsedTime_v2"
        );
    }

    #[test]
    fn flags_select_per_thread_variants() {
        assert_eq!(found("cuLaunchKernel", 12000, 0), "cuLaunchKernel");
        assert_eq!(found("cuLaunchKernel", 12000, 1), "cuLaunchKernel");
        assert_eq!(found("cuLaunchKernel", 12000, 2), "cuLaunchKernel_ptsz");
        assert_eq!(found("cuMemcpyHtoD", 7000, 2), "cuMemcpyHtoD_v2_ptds");
        // Per-thread variant introduced later than the legacy one: too old a version
        // falls back to the legacy variant.
        assert_eq!(found("cuLaunchKernel", 4000, 2), "cuLaunchKernel");
        // Names without a per-thread variant answer the same for flag 2.
        assert_eq!(found("cuMemAlloc", 7000, 2), "cuMemAlloc_v2");
    }

    #[test]
    fn unknown_and_too_old() {
        assert_eq!(
            resolve_proc(b"cuNoSuchThing", 12080, 0),
            ProcLookup::NotFound
        );
        assert_eq!(
            resolve_proc(b"cuMemAlloc_v2", 12080, 0),
            ProcLookup::NotFound
        );
        assert_eq!(
            resolve_proc(b"cuMemAllocAsync", 11000, 0),
            ProcLookup::VersionNotSufficient
        );
        assert_eq!(resolve_proc(b"cuMemAllocAsync", 11000, 0).status(), 2);
        assert_eq!(resolve_proc(b"nope", 1, 0).status(), 1);
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<_> = DRIVER_PROCS.iter().map(|e| e.symbol).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            DRIVER_PROCS.len(),
            "duplicate symbol in the table"
        );
        for e in DRIVER_PROCS {
            assert!(
                e.symbol.starts_with(e.base),
                "{} is not a variant of {}",
                e.symbol,
                e.base
            );
            assert_eq!(
                e.per_thread,
                e.symbol.ends_with("_ptsz") || e.symbol.ends_with("_ptds"),
                "{}",
                e.symbol
            );
        }
        assert_eq!(
            DRIVER_PROCS[DriverFn::cuMemAlloc_v2 as usize].symbol,
            "cuMemAlloc_v2"
        );
    }
}
