//! Our own declarations of the HIP runtime (`libamdhip64.so`) surface vgpu knows.
//!
//! - [`types`]: handle typedefs and the `#[repr(C)]` structs whose layout clients rely on
//!   (both device-property layouts, `R0000` and `R0600`, tested against their known offsets).
//! - [`errors`]: `hipError_t` values with their names and strings.
//! - [`hip_api!`]: the one table of entry points, their symbol version node (`hip_4.2` ...
//!   `hip_7.2`, placed as AMD's own linker map places them) and their signatures. Consumers
//!   (the simulated library, later the interception) generate their exports from it.
//! - [`amd_smi_api!`], [`rocm_smi_api!`]: the SMI libraries' tables (same idea, no versions).
//! - [`pfn`]: one function-pointer type per entry point of the three tables.
//! - [`PROCS`], [`NODES`], [`version_script`], [`resolve_proc`]: what the table implies for
//!   the linker and for `hipGetProcAddress`.

pub mod errors;
mod hip_api;
mod proc_address;
mod smi_api;
pub use smi_api::{AMD_SMI_PROCS, ROCM_SMI_PROCS};
pub mod smi_types;
pub mod types;

pub use errors::{hip_error_name, hip_error_string};
pub use proc_address::{
    node_version, resolve_proc, version_script, ProcLookup, NODES, PROCS, PROC_COUNT,
};

/// Everything a table row's types refer to: `use hip_headers::prelude::*` where a consumer
/// expands [`hip_api!`].
pub mod prelude {
    pub use crate::errors::*;
    pub use crate::smi_types::*;
    pub use crate::types::*;
    pub use core::ffi::{c_char, c_int, c_uchar, c_uint, c_ulonglong, c_void};
}

/// One function-pointer type per HIP and SMI entry point, named after the symbol (what an
/// interposer stores the real functions as).
#[allow(non_camel_case_types)]
pub mod pfn {
    use crate::prelude::*;

    macro_rules! hip_pfn_types {
        ($( $name:ident = $node:literal [$kind:ident]
            ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
            $( pub type $name = unsafe extern "C" fn($($ty),*) -> $ret; )*
        };
    }
    crate::hip_api!(hip_pfn_types);

    macro_rules! smi_pfn_types {
        ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
            $( pub type $name = unsafe extern "C" fn($($ty),*) -> $ret; )*
        };
    }
    crate::amd_smi_api!(smi_pfn_types);
    crate::rocm_smi_api!(smi_pfn_types);
}
