//! The CUDA driver surface, generated from the one table (`cuda_headers::cuda_driver_api!`)
//! by the surface generator NVML's uses too ([`crate::define_surface!`]):
//!
//! - an exported shim for every `hook` row, calling `crate::cuda::hooks::<symbol>` inside the
//!   panic guard, and for every `gate` row (launches), the compute cap's gate and the real
//!   function;
//! - `REAL`, one slot per row holding the real driver's function (looked up on the row's
//!   first use with the real `dlsym` on the real library's handle, which CUDA's first call
//!   opens, [`ensure_resolved`]), and typed accessors `real::<symbol>()`;
//! - `HOOKS`, our function per row (null for `pass` rows), in table order, which answers
//!   `cuGetProcAddress` and the `dlsym` redirection.

#![allow(non_snake_case)]

pub mod hooks;
pub mod placement;

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cuda_headers::prelude::*;
use cuda_headers::{pfn, DRIVER_PROCS, DRIVER_PROC_COUNT};

/// The real driver's entry points, in table order: 0 = not looked up yet, `ABSENT` = the
/// driver has none.
pub static REAL: [AtomicUsize; DRIVER_PROC_COUNT] =
    [const { AtomicUsize::new(0) }; DRIVER_PROC_COUNT];

/// A [`REAL`] slot's value for a function the real driver lacks.
const ABSENT: usize = 1;

/// The real driver's handle, once CUDA's first call opened it ([`resolve_driver`]).
static DRIVER: OnceLock<usize> = OnceLock::new();

/// The real function of row `i` (0: none), for the generated `real::<symbol>()`.
///
/// Looked up on the row's first use, one row at a time: the table has some three hundred
/// rows, most of which a process never calls, and a `dlsym` of each at the first CUDA call
/// was a tenth of what the library added to a process's start-up (issue 9 item 4). The
/// fast path is one load and one compare, as before.
#[inline(always)]
fn real_at(i: usize) -> usize {
    let p = REAL[i].load(Ordering::Relaxed);
    if p > ABSENT {
        p
    } else if p == ABSENT {
        0
    } else {
        look_up_row(i)
    }
}

/// Looks row `i` up in the real driver, once it is open (before that: 0, nothing stored,
/// so that the hook's resolve-and-retry finds it).
#[cold]
#[inline(never)]
fn look_up_row(i: usize) -> usize {
    let Some(&handle) = DRIVER.get() else {
        return 0;
    };
    let mut name = [0u8; 96];
    let bytes = DRIVER_PROCS[i].symbol.as_bytes();
    let found = if bytes.len() < name.len() {
        name[..bytes.len()].copy_from_slice(bytes);
        match std::ffi::CStr::from_bytes_with_nul(&name[..=bytes.len()]) {
            // SAFETY: the handle from dlopen and a NUL-terminated name.
            Ok(c) => unsafe { crate::interpose::real_dlsym(handle as *mut c_void, c) as usize },
            Err(_) => 0,
        }
    } else {
        0
    };
    // A concurrent look-up stores the same answer; one the driver's `cuGetProcAddress` gave
    // (`substitute_proc`) is kept.
    let stored = if found == 0 { ABSENT } else { found };
    match REAL[i].compare_exchange(0, stored, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => found,
        Err(now) if now == ABSENT => 0,
        Err(now) => now,
    }
}

/// The driver table's rows as the surface generator takes them.
macro_rules! driver_surface {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        crate::define_surface! {
            status: CUresult,
            on_panic: CUDA_ERROR_UNKNOWN,
            hooks: hooks,
            pfn: pfn,
            real_at: real_at,
            resolve: { crate::cuda::ensure_resolved(); },
            not_initialized: CUDA_ERROR_NOT_INITIALIZED,
            before_launch: { crate::core::gate::before_launch(hooks::current_device) },
            rows: [ $( $name [$hook] ( $( $arg : $ty ),* ); )* ]
        }
    };
}
cuda_headers::cuda_driver_api!(driver_surface);

/// The CUDA driver's family for the `dlsym` redirection (`crate::interpose`).
pub const FAMILY: crate::interpose::Family = crate::interpose::Family {
    symbol_prefixes: &[b"cu"],
    library_prefix: b"libcuda.so",
    hook_by_symbol,
};

/// Our hook for an exact exported driver symbol name, if we hook it.
pub fn hook_by_symbol(symbol: &[u8]) -> Option<*const c_void> {
    DRIVER_PROCS
        .iter()
        .zip(HOOKS.0.iter())
        .find(|(e, h)| !h.is_null() && e.symbol.as_bytes() == symbol)
        .map(|(_, &h)| h)
}

/// The process state, for CUDA's hooks: one load once it exists; else the driver is
/// resolved first ([`ensure_resolved`], which registers NVIDIA's answers with the core
/// before the state is created).
#[inline]
pub fn rt() -> &'static crate::core::runtime::Runtime {
    match crate::core::runtime::get() {
        Some(rt) => rt,
        None => {
            ensure_resolved();
            crate::core::runtime::rt()
        }
    }
}

/// Resolves the real CUDA driver once: registers NVIDIA's answers with the core
/// (`crate::nvml::VENDOR`), creates the process state (whose configuration sets the log
/// level), then fills `REAL` from `libcuda.so.1`. Whether it was found.
pub fn ensure_resolved() -> bool {
    crate::core::vendor::register(&crate::nvml::VENDOR);
    let _ = crate::core::runtime::rt();
    resolve_driver()
}

/// [`ensure_resolved`] without the process state: `cuInit`'s, which must not wait for the
/// container's region before the driver initialises (`hooks::cuInit`).
pub fn resolve_driver() -> bool {
    static RESOLVED: OnceLock<bool> = OnceLock::new();
    *RESOLVED.get_or_init(|| {
        crate::core::vendor::register(&crate::nvml::VENDOR);
        // A process of another vendor (its HIP runtime resolved) only looks for a CUDA
        // driver already loaded: loading one would initialise a second vendor's stack for
        // nothing.
        let other_vendor = crate::core::vendor::outranked(&crate::nvml::VENDOR);
        let driver = if other_vendor {
            crate::interpose::loaded_library(c"libcuda.so.1")
        } else {
            crate::interpose::open_library(c"libcuda.so.1")
        };
        match driver {
            Some(h) => {
                let _ = DRIVER.set(h as usize);
                true
            }
            // A HIP process on an AMD node has no CUDA driver, and needs none.
            None if other_vendor => false,
            None => {
                crate::vlog!(
                    crate::log::WARN,
                    "libcuda.so.1 not found: every CUDA call will report CUDA_ERROR_NOT_INITIALIZED"
                );
                false
            }
        }
    })
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
        if real_at(i) == real_fn as usize {
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
            // Remember the driver's function for this variant if dlsym did not give it (the
            // loop above looked every variant of the base up, once the driver was open).
            for missing in [ABSENT, 0] {
                if REAL[i]
                    .compare_exchange(
                        missing,
                        real_fn as usize,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    break;
                }
            }
            HOOKS.0[i] as *mut c_void
        }
        _ => real_fn,
    }
}
