//! The per-thread-default-stream twins of the hooked rows (`ptds hook` rows of the driver
//! table: `cuMemAllocAsync_ptsz`, ...), generated: each runs the body of its base row
//! ([`cuda_headers::ptds_base`]) with its own real function (the driver's twin, which
//! differs from the base's only in which stream NULL means). The `gate` twins need nothing
//! here: launch shims are generated whole (`crate::define_surface!`).
//!
//! How the base's body is found without naming it, as in the simulator
//! (`sim/cuda/src/driver/ptds.rs`): a base row that has twins registers its body, which
//! takes the real function as its first argument, as `Row<index>`'s [`WithReal`]
//! (`with_real!`); a twin calls `Row<ptds_base(its index)>`'s. The index is a compile-time
//! constant, so the call is type-checked against the base's signature (a twin whose base has
//! no body taking the real function, or whose arguments differ, does not compile) and
//! compiles to a direct call.

use cuda_headers::prelude::*;

use super::real_or_return;

/// Row `I` of the driver table.
pub struct Row<const I: usize>;

/// A hooked row's body taking the real function (its own, or a twin's) as first argument.
pub trait WithReal {
    type Sig;
    const BODY: Self::Sig;
}

/// Registers `body` (`unsafe fn(real, args..) -> CUresult`) as the body of row `$base`.
macro_rules! with_real {
    ($base:ident => $body:path; ( $( $ty:ty ),* )) => {
        impl $crate::cuda::hooks::ptds::WithReal
            for $crate::cuda::hooks::ptds::Row<{ $crate::cuda::Row::$base as usize }>
        {
            type Sig = unsafe fn(cuda_headers::pfn::$base, $($ty),*) -> CUresult;
            const BODY: Self::Sig = $body;
        }
    };
}
pub(crate) use with_real;

macro_rules! ptds_twins {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $( ptds_twins!(@$flavor $hook $name ( $($arg : $ty),* )); )*
    };
    (@ptds hook $name:ident ( $($arg:ident : $ty:ty),* )) => {
        pub unsafe fn $name($($arg: $ty),*) -> CUresult {
            const BASE: usize = cuda_headers::ptds_base(crate::cuda::Row::$name as usize);
            let real = real_or_return!($name);
            // SAFETY: the twin's caller contract is its base's (the same entry point on
            // another default stream), which the base's body requires; `real` is the
            // driver's twin, of the base's type; the arguments go through unchanged.
            unsafe { (<Row<BASE> as WithReal>::BODY)(real, $($arg),*) }
        }
    };
    (@$flavor:ident $kind:ident $name:ident ( $($arg:ident : $ty:ty),* )) => {};
}
cuda_headers::cuda_driver_api!(ptds_twins);
