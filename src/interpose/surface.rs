//! One generator for an API surface ([`define_surface!`](crate::define_surface)), used by
//! the CUDA driver's (`crate::cuda`) and NVML's (`crate::nvml`) tables. From the rows
//! `symbol [hook|gate|pass] (args)` of a table it makes:
//!
//! - an exported shim for every `hook` row, calling the backend's `hooks::<symbol>` inside
//!   the export guard; for every `gate` row (launches), the launch gate and the real
//!   function, generated whole;
//! - `Row` (the index of each row), `ROWS`, `SYMBOLS` (NUL-terminated names, table order);
//! - `HOOKS`, our function per row (null for `pass` rows), in table order;
//! - `real::<symbol>()`, typed access to the real library's function (`None` when absent),
//!   through the backend's `real_at(row)` (its slots, filled eagerly or lazily).
//!
//! The backend says what differs: its status type, the code a panic returns, how the real
//! library is resolved before a retry and what a missing one returns, the launch gate.

use std::ffi::c_void;

/// Our hooks of a surface in table order; null for rows we let through.
pub struct HookTable<const N: usize>(pub [*const c_void; N]);
// SAFETY: function addresses, immutable after compilation.
unsafe impl<const N: usize> Sync for HookTable<N> {}

/// Generates a surface (see the module docs). `hooks`, `pfn` and `real_at` are names in
/// scope where it is expanded: the module of hook bodies, the module of function-pointer
/// types (one per row, named after it), and `fn(usize) -> usize` (the real function of a
/// row, 0 when absent).
#[macro_export]
macro_rules! define_surface {
    (
        status: $status:ty,
        on_panic: $on_panic:expr,
        hooks: $hooks:ident,
        pfn: $pfn:ident,
        real_at: $real_at:ident,
        resolve: $resolve:block,
        not_initialized: $not_init:expr,
        before_launch: $gate:block,
        rows: [ $( $name:ident [$kind:ident] ( $( $arg:ident : $ty:ty ),* ) ; )* ]
    ) => {
        /// The index of every row of the table.
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Row { $( $name ),* }

        /// The number of rows.
        pub const ROWS: usize = [ $( stringify!($name) ),* ].len();

        /// Every symbol of the table, NUL-terminated, in table order.
        pub const SYMBOLS: [&::std::ffi::CStr; ROWS] = [ $(
            match ::std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("symbol names have no NUL"),
            }
        ),* ];

        /// Our function per row in table order; null for rows we let through.
        pub static HOOKS: $crate::interpose::surface::HookTable<ROWS> =
            $crate::interpose::surface::HookTable([ $( $crate::define_surface!(@ptr $kind $name) ),* ]);

        $( $crate::define_surface!(@export $kind $name [ $($arg : $ty),* ]
            $status, $on_panic, $hooks, $not_init, $resolve, $gate); )*

        /// Typed access to the real library's functions (`None` when it lacks one).
        pub mod real {
            $(
                #[inline(always)]
                pub fn $name() -> Option<super::$pfn::$name> {
                    let p = super::$real_at(super::Row::$name as usize);
                    // SAFETY: a row's slot only ever holds the real library's function of this
                    // very row, whose type `pfn::<row>` is.
                    (p != 0).then(|| unsafe { ::std::mem::transmute::<usize, super::$pfn::$name>(p) })
                }
            )*
        }
    };
    (@export hook $name:ident [ $($arg:ident : $ty:ty),* ]
        $status:ty, $on_panic:expr, $hooks:ident, $not_init:expr, $resolve:block, $gate:block) => {
        /// Exported hook (its body: the backend's `hooks` module).
        ///
        /// # Safety
        /// The API's contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $status {
            // SAFETY: our caller accepted this entry point's contract (`# Safety` above), the
            // one the hook body requires; arguments go through unchanged.
            $crate::interpose::guard::guard($on_panic, || unsafe { $hooks::$name($($arg),*) })
        }
    };
    (@export gate $name:ident [ $($arg:ident : $ty:ty),* ]
        $status:ty, $on_panic:expr, $hooks:ident, $not_init:expr, $resolve:block, $gate:block) => {
        /// Exported launch hook: the launch gate, then the real function.
        ///
        /// # Safety
        /// The API's contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $status {
            $crate::interpose::guard::guard($on_panic, || {
                let real = match real::$name() {
                    Some(f) => f,
                    None => {
                        $resolve;
                        match real::$name() {
                            Some(f) => f,
                            None => return $not_init,
                        }
                    }
                };
                $gate;
                // SAFETY: `real` is the real library's function of this very row (its slot
                // holds nothing else), called with the caller's arguments under the contract
                // it accepted.
                unsafe { real($($arg),*) }
            })
        }
    };
    (@export pass $name:ident [ $($arg:ident : $ty:ty),* ]
        $status:ty, $on_panic:expr, $hooks:ident, $not_init:expr, $resolve:block, $gate:block) => {};
    (@ptr hook $name:ident) => { $name as *const ::std::ffi::c_void };
    (@ptr gate $name:ident) => { $name as *const ::std::ffi::c_void };
    (@ptr pass $name:ident) => { ::std::ptr::null() };
}
