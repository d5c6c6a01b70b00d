//! Simulated `libnvidia-ml.so.1`: the "physical" view of the simulated GPU (all devices, all
//! processes of the machine; `CUDA_VISIBLE_DEVICES` is ignored, as by real NVML). Every
//! entry point of `cuda_headers::nvml_api!` is exported here: `sim` rows wrapped so that no
//! panic crosses the FFI boundary, `stub` rows as generated NOT_SUPPORTED bodies;
//! `nvmlErrorString` and `nvmlInternalGetExportTable` are exported by hand.

#![allow(clippy::missing_safety_doc)]

mod internal;
mod nvml;

use cuda_headers::prelude::*;

macro_rules! nvml_exports {
    ($( $name:ident = [$hook:ident $sim:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        $( nvml_exports!(@one $sim $name ( $($arg : $ty),* )); )*
    };
    // A row the simulator answers: its body in `nvml.rs`.
    (@one sim $name:ident ( $($arg:ident : $ty:ty),* )) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> nvmlReturn_t {
            // SAFETY: an export with the row's C signature: the C caller's contract is the
            // body's, whose arguments are passed on unchanged.
            let rc = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                crate::nvml::$name($($arg),*)
            })) {
                Ok(r) => r,
                Err(_) => NVML_ERROR_UNKNOWN,
            };
            if crate::nvml::tracing() {
                eprintln!("vgpu-sim nvml: {} -> {rc}", stringify!($name));
            }
            rc
        }
    };
    // Every other public entry point: exported, touches no argument, answers
    // UNINITIALIZED / NOT_SUPPORTED (see `nvml::unsupported`).
    (@one stub $name:ident ( $($arg:ident : $ty:ty),* )) => {
        #[no_mangle]
        #[allow(non_snake_case)]
        pub unsafe extern "C" fn $name($(_: $ty),*) -> nvmlReturn_t {
            crate::nvml::unsupported(stringify!($name))
        }
    };
}

cuda_headers::nvml_api!(nvml_exports);

/// `nvmlErrorString`: static text of a result code ("Unknown Error" for unknown codes).
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    cuda_headers::nvml_error_string(result).as_ptr()
}

/// `nvmlInternalGetExportTable`: the private table nvidia-smi asks for (see `internal.rs`).
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn nvmlInternalGetExportTable(
    table: *mut *const c_void,
    guid: *const c_void,
) -> nvmlReturn_t {
    // SAFETY: the caller's arguments under the same contract.
    match std::panic::catch_unwind(|| unsafe { internal::get_export_table(table, guid) }) {
        Ok(r) => r,
        Err(_) => NVML_ERROR_UNKNOWN,
    }
}
