//! Simulated `libcuda.so.1`: a drop-in CUDA driver over the machine-wide simulated GPU of
//! `vgpu-sim-core`. Every entry point of `cuda_headers::cuda_driver_api!` is exported here,
//! wrapped so that no panic crosses the FFI boundary, and answered by `cuGetProcAddress`
//! through `cuda_headers::resolve_proc`.

#![allow(clippy::missing_safety_doc)]

mod driver;
mod rt;

use cuda_headers::prelude::*;

/// Marks this library as the simulator: tools (`vgpuctl run`) look it up to tell a real
/// NVIDIA driver from us.
#[no_mangle]
#[used]
pub static vgpu_sim_marker: u8 = 1;

macro_rules! driver_exports {
    ($( $name:ident = $base:literal @ $ver:literal [$flavor:ident $hook:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $(
            #[no_mangle]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> CUresult {
                // SAFETY: an export with the row's C signature: the C caller's contract is
                // the body's, whose arguments are passed on unchanged.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    crate::driver::$name($($arg),*)
                })) {
                    Ok(r) => r,
                    Err(_) => CUDA_ERROR_UNKNOWN,
                }
            }
        )*

        /// The export for row `i` of the driver table (the `cuGetProcAddress` answer).
        pub(crate) fn proc_ptr(i: usize) -> *mut c_void {
            let table: [*mut c_void; cuda_headers::DRIVER_PROC_COUNT] = [ $( $name as *mut c_void ),* ];
            table.get(i).copied().unwrap_or(std::ptr::null_mut())
        }
    };
}

cuda_headers::cuda_driver_api!(driver_exports);
