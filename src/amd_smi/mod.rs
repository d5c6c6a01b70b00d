//! The SMI libraries' surfaces (AMD SMI `libamd_smi.so`, ROCm SMI `librocm_smi64.so`),
//! generated from `hip_headers`' tables like the HIP one: an exported shim for every `hook`
//! row (no symbol versions: the real libraries have none), `REAL` slots resolved on first
//! use, `HOOKS` for the `dlsym` redirection. The bodies (`hooks.rs`) show the container's
//! slice: the memory total is the cap, the usage is the container's (the region's), as the
//! NVML view does for nvidia-smi. Rows marked `hook` in the tables whose view is not done
//! yet (handles, UUIDs, process lists) are forwarded unchanged: docs/AMD.md.

#![allow(non_snake_case)]

pub mod hooks;
pub mod probe;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Our hooks in table order; null for rows we let through.
pub struct HookTable<const N: usize>(pub [*const c_void; N]);
// SAFETY: function addresses, immutable.
unsafe impl<const N: usize> Sync for HookTable<N> {}

macro_rules! define_smi_surface {
    ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// Every row's symbol, in table order.
        pub const SYMBOLS: &[&str] = &[ $( stringify!($name) ),* ];
        const N: usize = SYMBOLS.len();

        /// The real library's entry points, in table order (0 = not available).
        pub static REAL: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];

        $( define_smi_surface!(@export $kind $name ( $($arg : $ty),* ) -> $ret); )*

        pub static HOOKS: HookTable<N> = HookTable([ $( define_smi_surface!(@ptr $kind $name) ),* ]);

        /// Typed access to the real library's functions (`None` when it lacks one).
        pub mod real {
            use super::*;
            $(
                #[inline(always)]
                pub fn $name() -> Option<hip_headers::pfn::$name> {
                    super::ensure_resolved();
                    let p = REAL[RowIndex::$name as usize].load(Ordering::Relaxed);
                    // SAFETY: slots only ever hold the real library's function of this row.
                    (p != 0).then(|| unsafe { std::mem::transmute::<usize, hip_headers::pfn::$name>(p) })
                }
            )*
        }

        /// Row indices, in table order.
        #[allow(non_camel_case_types, dead_code)]
        #[repr(usize)]
        enum RowIndex { $( $name ),* }
    };
    (@export hook $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        /// Exported hook (see `crate::amd_smi::hooks`).
        ///
        /// # Safety
        /// The SMI library's contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's arguments, unchanged, to the hook body of this row.
            crate::interpose::guard::guard(u32::MAX, || unsafe { crate::amd_smi::hooks::$name($($arg),*) })
        }
    };
    (@export pass $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {};
    (@ptr hook $name:ident) => { $name as *const c_void };
    (@ptr pass $name:ident) => { std::ptr::null() };
}

/// Fills `real` from the first of `sonames` that opens (an already-loaded one wins).
fn resolve(real: &[AtomicUsize], symbols: &[&str], sonames: &[&CStr]) -> bool {
    let Some(h) = sonames
        .iter()
        .find_map(|n| crate::interpose::loaded_library(n))
        .or_else(|| {
            sonames
                .iter()
                .find_map(|n| crate::interpose::open_library(n))
        })
    else {
        return false;
    };
    // SAFETY: `h` came from dlopen above.
    unsafe { crate::interpose::fill_real_slots(h, real, symbols.iter().copied(), |_, _| true) };
    true
}

/// AMD SMI (`libamd_smi.so`).
pub mod amd {
    use super::*;
    use hip_headers::prelude::*;
    hip_headers::amd_smi_api!(define_smi_surface);

    static RESOLVED: OnceLock<bool> = OnceLock::new();

    pub fn ensure_resolved() -> bool {
        *RESOLVED.get_or_init(|| {
            super::resolve(&REAL, SYMBOLS, &[c"libamd_smi.so.26", c"libamd_smi.so"])
        })
    }
}

/// ROCm SMI (`librocm_smi64.so`).
pub mod rocm {
    use super::*;
    use hip_headers::prelude::*;
    hip_headers::rocm_smi_api!(define_smi_surface);

    static RESOLVED: OnceLock<bool> = OnceLock::new();

    pub fn ensure_resolved() -> bool {
        *RESOLVED.get_or_init(|| {
            super::resolve(
                &REAL,
                SYMBOLS,
                &[
                    c"librocm_smi64.so.7",
                    c"librocm_smi64.so.6",
                    c"librocm_smi64.so.5",
                    c"librocm_smi64.so.1",
                    c"librocm_smi64.so",
                ],
            )
        })
    }
}

/// AMD SMI's family for the `dlsym` redirection (`crate::interpose`).
pub const AMD_SMI_FAMILY: crate::interpose::Family = crate::interpose::Family {
    symbol_prefixes: &[b"amdsmi_"],
    library_prefix: b"libamd_smi.so",
    hook_by_symbol,
};

/// ROCm SMI's family for the `dlsym` redirection (`crate::interpose`).
pub const ROCM_SMI_FAMILY: crate::interpose::Family = crate::interpose::Family {
    symbol_prefixes: &[b"rsmi_"],
    library_prefix: b"librocm_smi64.so",
    hook_by_symbol,
};

/// Our hook for an exact exported SMI symbol name (AMD SMI's or ROCm SMI's).
pub fn hook_by_symbol(symbol: &[u8]) -> Option<*const c_void> {
    let find = |symbols: &[&str], hooks: &[*const c_void]| {
        symbols
            .iter()
            .zip(hooks)
            .find(|(s, h)| !h.is_null() && s.as_bytes() == symbol)
            .map(|(_, &h)| h)
    };
    if symbol.starts_with(b"amdsmi_") {
        find(amd::SYMBOLS, &amd::HOOKS.0)
    } else if symbol.starts_with(b"rsmi_") {
        find(rocm::SYMBOLS, &rocm::HOOKS.0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_rows_are_hooked_and_pass_rows_are_not() {
        for s in [
            "amdsmi_get_gpu_memory_total",
            "amdsmi_get_gpu_vram_usage",
            "rsmi_dev_memory_total_get",
            "rsmi_dev_memory_usage_get",
        ] {
            assert!(super::hook_by_symbol(s.as_bytes()).is_some(), "{s}");
        }
        assert!(super::hook_by_symbol(b"rsmi_init").is_none());
        assert!(super::hook_by_symbol(b"amdsmi_init").is_none());
    }
}
