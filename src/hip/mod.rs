//! The HIP runtime surface (`libamdhip64.so`), generated from the one table
//! (`hip_headers::hip_api!`), the way `crate::cuda` is from CUDA's:
//!
//! - an exported shim for every `hook` row (calling `crate::hip::hooks::<symbol>` inside
//!   the panic guard) and every `gate` row (launches: the compute cap's gate, then the real
//!   call, see docs/COMPUTE_CAP.md), each exported under the row's symbol version
//!   node (`hipMalloc@@hip_4.2`) like the real library's (the version script `build.rs`
//!   generates assigns the nodes), so binaries linked against versioned names reach the hook;
//! - `REAL`, one slot per row holding the real library's function (resolved on the first
//!   HIP call with the real `dlsym` on the real library's handle), typed accessors
//!   `real::<symbol>()`;
//! - `HOOKS`, our function per row (null for `pass` rows), in table order, which answers
//!   `hipGetProcAddress` and the `dlsym` redirection.
//!
//! Nothing here runs in a process that never calls HIP: the real library is looked for
//! on the first hooked HIP call only.

#![allow(non_snake_case)]

pub mod binding;
pub mod context;
pub mod hooks;
pub mod hostpid;
pub mod vendor;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use hip_headers::prelude::*;
use hip_headers::PROC_COUNT;

/// The real library's entry points, in table order (0 = not available).
pub static REAL: [AtomicUsize; PROC_COUNT] = [const { AtomicUsize::new(0) }; PROC_COUNT];

/// Our hooks in table order; null for rows we let through.
pub struct HookTable(pub [*const c_void; PROC_COUNT]);
// SAFETY: function addresses, immutable.
unsafe impl Sync for HookTable {}

/// What a hook returns when its body panicked: an error of the row's return type.
pub trait OnPanic {
    fn on_panic() -> Self;
}
impl OnPanic for hipError_t {
    fn on_panic() -> Self {
        hipErrorUnknown
    }
}
impl OnPanic for *mut *mut c_void {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}
impl OnPanic for () {
    fn on_panic() -> Self {}
}

/// The value a hook returns when the real library is missing.
pub trait NoLibrary {
    fn no_library() -> Self;
}
impl NoLibrary for hipError_t {
    fn no_library() -> Self {
        hipErrorNotInitialized
    }
}
impl NoLibrary for *mut *mut c_void {
    fn no_library() -> Self {
        std::ptr::null_mut()
    }
}
impl NoLibrary for () {
    fn no_library() -> Self {}
}

macro_rules! define_hip_surface {
    ($( $name:ident = $node:literal [$kind:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// The hook bodies behind the exports (inside the panic guard).
        mod shims {
            use super::*;
            $( define_hip_surface!(@shim $kind $name ( $($arg : $ty),* ) -> $ret); )*
        }

        /// The exported symbols (defined in assembly below): what the dynamic linker binds
        /// and what `dlsym`/`hipGetProcAddress` hand out. Referenced through a hidden alias
        /// of each (`__vgpu_hip_<symbol>`, same address): a reference to the exported name
        /// itself would be bound by the dynamic linker, to the real library's function
        /// whenever that comes first in the global scope (libvgpu opened `RTLD_LOCAL`, or
        /// not first), and our hooks would take the real functions for their own.
        mod exported {
            #[allow(non_upper_case_globals, dead_code)]
            extern "C" {
                $(
                    #[link_name = concat!("__vgpu_hip_", stringify!($name))]
                    pub static $name: u8;
                )*
            }
        }

        $( define_hip_surface!(@export $kind $name); )*

        pub static HOOKS: HookTable = HookTable([ $( define_hip_surface!(@ptr $kind $name) ),* ]);

        /// Typed access to the real library's functions (`None` when it lacks one).
        pub mod real {
            use super::*;
            $(
                #[inline(always)]
                pub fn $name() -> Option<hip_headers::pfn::$name> {
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
    (@shim hook $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        /// Hook body (see `crate::hip::hooks`).
        ///
        /// # Safety
        /// The HIP runtime API contract of this entry point.
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's arguments, unchanged, to the hook body of this row (same contract).
            crate::interpose::guard::guard(<$ret as OnPanic>::on_panic(), || unsafe { crate::hip::hooks::$name($($arg),*) })
        }
    };
    (@shim gate $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        /// A launch: the compute cap's gate (the CUDA launches' `crate::core::gate`), then
        /// the real library.
        ///
        /// # Safety
        /// The HIP runtime API contract of this entry point.
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            crate::interpose::guard::guard(<$ret as OnPanic>::on_panic(), || {
                let real = crate::hip::real_or_return!($name);
                crate::hip::before_launch();
                // SAFETY: the caller's arguments, unchanged, to the real function of this row.
                unsafe { real($($arg),*) }
            })
        }
    };
    (@shim pass $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {};
    // The export is a one-instruction stub jumping to the shim. Why not `#[no_mangle]` on
    // the shim: rustc lists its exports in its own (unversioned) version script, which then
    // wins over ours, and `.symver` on a Rust function fails when the function lands in
    // another codegen unit than the directive. A symbol only our script names gets the
    // node it is listed under (build.rs).
    (@export hook $name:ident) => { define_hip_surface!(@stub $name); };
    (@export gate $name:ident) => { define_hip_surface!(@stub $name); };
    (@export pass $name:ident) => {};
    (@stub $name:ident) => {
        std::arch::global_asm!(
            concat!(".globl ", stringify!($name)),
            concat!(".type ", stringify!($name), ",@function"),
            concat!(".globl __vgpu_hip_", stringify!($name)),
            concat!(".hidden __vgpu_hip_", stringify!($name)),
            ".p2align 4",
            concat!(stringify!($name), ":"),
            concat!("__vgpu_hip_", stringify!($name), ":"),
            "jmp {shim}",
            concat!(".size ", stringify!($name), ", .-", stringify!($name)),
            shim = sym shims::$name,
        );
    };
    // The address of the exported symbol (never read through `exported`).
    (@ptr hook $name:ident) => { &raw const exported::$name as *const c_void };
    (@ptr gate $name:ident) => { &raw const exported::$name as *const c_void };
    (@ptr pass $name:ident) => { std::ptr::null() };
}
hip_headers::hip_api!(define_hip_surface);

/// The real function of a row, or return the row type's "no library" value
/// (`hipErrorNotInitialized` for `hipError_t`).
macro_rules! real_or_return {
    ($name:ident) => {
        match crate::hip::real::$name() {
            Some(f) => f,
            None => {
                crate::hip::ensure_resolved();
                match crate::hip::real::$name() {
                    Some(f) => f,
                    None => return crate::hip::NoLibrary::no_library(),
                }
            }
        }
    };
}
pub(crate) use real_or_return;

/// The compute cap's gate for a HIP launch (`crate::core::gate`): routed by the calling
/// thread's current HIP device when the container has several.
#[inline(always)]
pub fn before_launch() {
    // The runtime (region, devices, the gate, the watcher) starts on the first hooked HIP
    // call; a program may launch before it allocates. Initialised: one acquire load.
    let _ = crate::core::runtime::rt();
    crate::core::gate::before_launch(|| hooks::current_device().map(|(_, d)| d));
}

/// The real library's sonames, newest first (ROCm 7, 6, Debian's 5, the dev link).
const SONAMES: [&CStr; 4] = [
    c"libamdhip64.so.7",
    c"libamdhip64.so.6",
    c"libamdhip64.so.5",
    c"libamdhip64.so",
];

static RESOLVED: OnceLock<bool> = OnceLock::new();

/// Finds the real HIP library and fills `REAL` (once), then registers AMD's answers with
/// the core ([`vendor::VENDOR`]). An already-loaded library wins.
pub fn ensure_resolved() -> bool {
    *RESOLVED.get_or_init(|| {
        let handle = SONAMES
            .iter()
            .find_map(|n| crate::interpose::loaded_library(n))
            .or_else(|| {
                SONAMES
                    .iter()
                    .find_map(|n| crate::interpose::open_library(n))
            });
        match handle {
            Some(h) => {
                // SAFETY: h comes from dlopen.
                unsafe { resolve_real(h) };
                crate::core::vendor::register(&vendor::VENDOR);
                true
            }
            None => {
                crate::vlog!(
                    crate::log::WARN,
                    "libamdhip64.so not found: every HIP call will report hipErrorNotInitialized"
                );
                false
            }
        }
    })
}

/// Whether this process has used HIP (the real library was looked for).
pub fn in_use() -> bool {
    RESOLVED.get().copied().unwrap_or(false)
}

/// Fills `REAL` from the real library's handle.
///
/// # Safety
/// `handle` must come from `dlopen`.
unsafe fn resolve_real(handle: *mut c_void) {
    let symbols = hip_headers::PROCS.iter().map(|(symbol, _)| *symbol);
    // SAFETY: our caller's handle from dlopen. Our own export is never taken for the real
    // function (a handle whose lookup reaches libvgpu first).
    unsafe {
        crate::interpose::fill_real_slots(handle, &REAL, symbols, |slot, p| {
            !std::ptr::eq(p as *const c_void, hook_at(slot))
        })
    };
}

fn hook_at(slot: &AtomicUsize) -> *const c_void {
    let i = (slot as *const AtomicUsize as usize - REAL.as_ptr() as usize)
        / std::mem::size_of::<AtomicUsize>();
    HOOKS.0[i]
}

/// HIP's family for the `dlsym` redirection (`crate::interpose`).
pub const FAMILY: crate::interpose::Family = crate::interpose::Family {
    symbol_prefixes: &[b"hip", b"__hip"],
    library_prefix: b"libamdhip64.so",
    hook_by_symbol,
};

/// Our hook for an exact exported HIP symbol name, if we hook it.
pub fn hook_by_symbol(symbol: &[u8]) -> Option<*const c_void> {
    hip_headers::PROCS
        .iter()
        .zip(HOOKS.0.iter())
        .find(|((s, _), h)| !h.is_null() && s.as_bytes() == symbol)
        .map(|(_, &h)| h)
}

/// What `hipGetProcAddress` should hand the application instead of `real_fn`, the real
/// library's answer: our hook for the row whose real function that is, else `real_fn`.
pub fn substitute_proc(real_fn: *mut c_void) -> *mut c_void {
    if real_fn.is_null() {
        return real_fn;
    }
    REAL.iter()
        .zip(HOOKS.0.iter())
        .find(|(r, h)| !h.is_null() && r.load(Ordering::Relaxed) == real_fn as usize)
        .map_or(real_fn, |(_, &h)| h as *mut c_void)
}

/// `GPU-<16 hex digits>` (ROCr's UUID, what `ROCR_VISIBLE_DEVICES` names) of every HIP
/// device this process sees, in HIP ordinal order; empty when HIP is not in use.
pub fn device_uuids() -> Vec<String> {
    if !in_use() {
        return Vec::new();
    }
    let (Some(count), Some(uuid_of)) = (real::hipGetDeviceCount(), real::hipDeviceGetUuid()) else {
        return Vec::new();
    };
    let mut n: c_int = 0;
    // SAFETY: valid out-pointer.
    if unsafe { count(&mut n) } != hipSuccess {
        return Vec::new();
    }
    (0..n)
        .map_while(|d| {
            let mut u = hipUUID::default();
            // SAFETY: valid out-pointer.
            (unsafe { uuid_of(&mut u, d) } == hipSuccess).then(|| rocr_uuid(&u))
        })
        .collect()
}

/// ROCr's UUID of HIP ordinal `ordinal`, `None` when HIP cannot say.
pub fn device_uuid(ordinal: c_int) -> Option<String> {
    let uuid_of = real::hipDeviceGetUuid()?;
    let mut u = hipUUID::default();
    // SAFETY: valid out-pointer.
    (unsafe { uuid_of(&mut u, ordinal) } == hipSuccess).then(|| rocr_uuid(&u))
}

/// `hipDeviceGetUuid`'s 16 bytes are the ASCII hex digits of ROCr's `GPU-...` UUID.
fn rocr_uuid(u: &hipUUID) -> String {
    let digits: String = u
        .bytes
        .iter()
        .map(|&b| b as u8 as char)
        .filter(char::is_ascii_hexdigit)
        .collect();
    format!("GPU-{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hooked_row_has_an_export_and_pass_rows_none() {
        for ((symbol, _), hook) in hip_headers::PROCS.iter().zip(HOOKS.0.iter()) {
            let by_name = hook_by_symbol(symbol.as_bytes());
            assert_eq!(by_name, (!hook.is_null()).then_some(*hook), "{symbol}");
        }
        assert!(hook_by_symbol(b"hipMalloc").is_some());
        assert!(hook_by_symbol(b"hipMemcpy").is_none());
        assert!(hook_by_symbol(b"hipNoSuchThing").is_none());
    }

    #[test]
    fn rocr_uuid_from_hip_bytes() {
        let mut u = hipUUID::default();
        for (d, s) in u.bytes.iter_mut().zip(b"0123456789abcdef") {
            *d = *s as c_char;
        }
        assert_eq!(rocr_uuid(&u), "GPU-0123456789abcdef");
    }
}
