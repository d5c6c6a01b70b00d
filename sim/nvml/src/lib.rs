//! Simulated `libnvidia-ml.so.1`: the "physical" view of the simulated GPU (all devices, all
//! processes of the machine; `CUDA_VISIBLE_DEVICES` is ignored, as by real NVML). Every
//! entry point of `cuda_headers::nvml_api!` is exported here, wrapped so that no panic
//! crosses the FFI boundary; `nvmlErrorString` is exported by hand.

#![allow(clippy::missing_safety_doc)]

mod nvml;

use cuda_headers::prelude::*;

macro_rules! nvml_exports {
    ($( $name:ident = [$hook:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $(
            #[no_mangle]
            #[allow(non_snake_case)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> nvmlReturn_t {
                // SAFETY: an export with the row's C signature: the C caller's contract is
                // the body's, whose arguments are passed on unchanged.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    crate::nvml::$name($($arg),*)
                })) {
                    Ok(r) => r,
                    Err(_) => NVML_ERROR_UNKNOWN,
                }
            }
        )*
    };
}

cuda_headers::nvml_api!(nvml_exports);

/// `nvmlErrorString`: static text of a result code ("Unknown Error" for unknown codes).
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    cuda_headers::nvml_error_string(result).as_ptr()
}
