//! The per-thread-default-stream twins (`_ptsz`/`_ptds` rows of the driver table), generated:
//! each forwards to the body of its base row ([`cuda_headers::ptds_base`]). The simulator
//! models one default stream per context, which the NULL handle, `CU_STREAM_LEGACY` and
//! `CU_STREAM_PER_THREAD` all name (sim/README.md), so no twin needs a body of its own.
//!
//! How the base is found without naming it: every `dflt` row's body is registered as
//! `Row<index>`'s [`Body`]; a twin calls `Row<ptds_base(its index)>`'s. The index is a
//! compile-time constant, so the call is type-checked against the base's signature (a twin
//! whose arguments differ from its base's does not compile) and compiles to a direct call.

use super::*;
use cuda_headers::DriverFn;

/// Row `I` of the driver table.
pub struct Row<const I: usize>;

/// The simulator's body for a row.
pub trait Body {
    type Sig;
    const BODY: Self::Sig;
}

macro_rules! ptds_twins {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $( ptds_twins!(@$flavor $name ( $($arg : $ty),* )); )*
    };
    (@dflt $name:ident ( $($arg:ident : $ty:ty),* )) => {
        impl Body for Row<{ DriverFn::$name as usize }> {
            type Sig = unsafe fn($($ty),*) -> CUresult;
            const BODY: Self::Sig = $name;
        }
    };
    (@ptds $name:ident ( $($arg:ident : $ty:ty),* )) => {
        pub unsafe fn $name($($arg: $ty),*) -> CUresult {
            const BASE: usize = cuda_headers::ptds_base(DriverFn::$name as usize);
            // SAFETY: the twin's caller contract is its base's (the same entry point on
            // another default stream): the same arguments, passed on unchanged.
            unsafe { (<Row<BASE> as Body>::BODY)($($arg),*) }
        }
    };
}
cuda_headers::cuda_driver_api!(ptds_twins);
