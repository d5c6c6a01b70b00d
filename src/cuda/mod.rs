//! The CUDA driver surface, generated from the one table (`cuda_headers::cuda_driver_api!`):
//!
//! - an exported shim for every `hook` row, calling `crate::cuda::hooks::<symbol>` inside the
//!   panic guard, and for every `gate` row (launches), the compute cap's gate and the real
//!   function;
//! - `REAL`, one slot per row holding the real driver's function (resolved at init with the
//!   real `dlsym` on the real library's handle), and typed accessors `real::<symbol>()`;
//! - `HOOKS`, our function per row (null for `pass` rows), in table order, which answers
//!   `cuGetProcAddress` and the `dlsym` redirection.

#![allow(non_snake_case)]

pub mod hooks;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use cuda_headers::prelude::*;
use cuda_headers::{DriverFn, DRIVER_PROCS, DRIVER_PROC_COUNT};

use crate::interpose::Family;

/// The real driver's entry points, in table order (0 = not available).
pub static REAL: [AtomicUsize; DRIVER_PROC_COUNT] =
    [const { AtomicUsize::new(0) }; DRIVER_PROC_COUNT];

/// Our hooks in table order; null for rows we let through.
pub struct HookTable(pub [*const c_void; DRIVER_PROC_COUNT]);
// SAFETY: function addresses, immutable.
unsafe impl Sync for HookTable {}

macro_rules! define_driver_surface {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $( define_driver_surface!(@export $hook $name ( $($arg : $ty),* )); )*

        pub static HOOKS: HookTable = HookTable([ $( define_driver_surface!(@ptr $hook $name) ),* ]);

        /// Typed access to the real driver's functions (`None` when the driver lacks one).
        pub mod real {
            use super::*;
            $(
                #[inline(always)]
                pub fn $name() -> Option<cuda_headers::pfn::$name> {
                    let p = REAL[DriverFn::$name as usize].load(Ordering::Relaxed);
                    // SAFETY: slots only ever hold the real driver's function of this row.
                    (p != 0).then(|| unsafe { std::mem::transmute::<usize, cuda_headers::pfn::$name>(p) })
                }
            )*
        }
    };
    (@export hook $name:ident ( $($arg:ident : $ty:ty),* )) => {
        /// Exported hook (see `crate::cuda::hooks`).
        ///
        /// # Safety
        /// The CUDA driver API contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> CUresult {
            // SAFETY: our caller accepted this entry point's CUDA contract (`# Safety` above), the
            // one `hooks::$name` requires; arguments go through unchanged.
            crate::interpose::guard::guard_cu(|| unsafe { crate::cuda::hooks::$name($($arg),*) })
        }
    };
    (@export gate $name:ident ( $($arg:ident : $ty:ty),* )) => {
        /// Exported launch hook: the compute cap's gate, then the real driver.
        ///
        /// # Safety
        /// The CUDA driver API contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> CUresult {
            crate::interpose::guard::guard_cu(|| {
                let real = crate::cuda::hooks::real_or_return!($name);
                crate::core::gate::before_launch();
                // SAFETY: `real` is the real driver's function of this very row (`REAL` holds
                // nothing else), called with the caller's arguments under the contract it accepted.
                unsafe { real($($arg),*) }
            })
        }
    };
    (@export pass $name:ident ( $($arg:ident : $ty:ty),* )) => {};
    (@ptr hook $name:ident) => { $name as *const c_void };
    (@ptr gate $name:ident) => { $name as *const c_void };
    (@ptr pass $name:ident) => { std::ptr::null() };
}
cuda_headers::cuda_driver_api!(define_driver_surface);

/// Our hook for an exact exported symbol name, if we hook it.
pub fn hook_by_symbol(symbol: &[u8]) -> Option<(Family, *const c_void)> {
    if symbol.starts_with(b"nvml") {
        return crate::nvml::hook_by_symbol(symbol).map(|p| (Family::Nvml, p));
    }
    if symbol.starts_with(b"amdsmi_") || symbol.starts_with(b"rsmi_") {
        return crate::amd_smi::hook_by_symbol(symbol);
    }
    if symbol.starts_with(b"hip") || symbol.starts_with(b"__hip") {
        return crate::hip::hook_by_symbol(symbol).map(|p| (Family::Hip, p));
    }
    DRIVER_PROCS
        .iter()
        .zip(HOOKS.0.iter())
        .find(|(e, h)| !h.is_null() && e.symbol.as_bytes() == symbol)
        .map(|(_, &h)| (Family::Cuda, h))
}

/// Fills `REAL` from the real driver's handle. Idempotent.
///
/// # Safety
/// `handle` must come from `dlopen`.
pub unsafe fn resolve_real(handle: *mut c_void) {
    let mut name = [0u8; 96];
    for (slot, entry) in REAL.iter().zip(DRIVER_PROCS) {
        let bytes = entry.symbol.as_bytes();
        if bytes.len() >= name.len() {
            continue;
        }
        name[..bytes.len()].copy_from_slice(bytes);
        name[bytes.len()] = 0;
        let Ok(cname) = CStr::from_bytes_with_nul(&name[..=bytes.len()]) else {
            continue;
        };
        // SAFETY: a valid handle from dlopen and a NUL-terminated name.
        let p = unsafe { crate::interpose::real_dlsym(handle, cname) };
        if !p.is_null() {
            slot.store(p as usize, Ordering::Release);
        }
    }
}

/// What `cuGetProcAddress` should hand the application instead of `real_fn`, the real
/// driver's answer for `symbol` (a base name) at `version`/`flags`: our hook for exactly
/// the variant the driver chose, or `real_fn` itself when we do not hook that variant.
///
/// The variant is identified first by address (the driver's answer is the function it
/// exports under that variant's name: exact, whatever the driver's version rules), then,
/// when the driver answers with an address we have not seen, by the table's rules.
pub fn substitute_proc(
    symbol: &[u8],
    version: i32,
    flags: u64,
    real_fn: *mut c_void,
) -> *mut c_void {
    if real_fn.is_null() {
        return real_fn;
    }
    let mut same_base = false;
    for (i, entry) in DRIVER_PROCS.iter().enumerate() {
        if entry.base.as_bytes() != symbol {
            continue;
        }
        same_base = true;
        if REAL[i].load(Ordering::Relaxed) == real_fn as usize {
            let hook = HOOKS.0[i];
            return if hook.is_null() {
                real_fn
            } else {
                hook as *mut c_void
            };
        }
    }
    if !same_base {
        return real_fn;
    }
    match cuda_headers::resolve_proc(symbol, version, flags) {
        cuda_headers::ProcLookup::Found(i) if !HOOKS.0[i].is_null() => {
            // Remember the driver's function for this variant if dlsym did not give it.
            let _ =
                REAL[i].compare_exchange(0, real_fn as usize, Ordering::AcqRel, Ordering::Relaxed);
            HOOKS.0[i] as *mut c_void
        }
        _ => real_fn,
    }
}
