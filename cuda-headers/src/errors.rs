//! Names and descriptions of result codes, as NUL-terminated static strings so FFI code can
//! hand them out without allocating (`cuGetErrorName`, `cuGetErrorString`, `nvmlErrorString`).

use crate::bindings::*;
use core::ffi::CStr;

/// A NUL-terminated literal as a `CStr`, checked at compile time (an interior NUL in a
/// table text fails the build instead of needing an unchecked conversion).
const fn nul_terminated(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(s) => s,
        Err(_) => panic!("result-code text with an interior NUL"),
    }
}

macro_rules! code_table {
    ($fn_name:ident, $ty:ty, $( $code:ident => $text:literal ),* $(,)?) => {
        /// `(name, description)` for a known code, `None` for an unknown one.
        pub fn $fn_name(code: $ty) -> Option<(&'static CStr, &'static CStr)> {
            match code {
                $( $code => Some((
                    const { nul_terminated(concat!(stringify!($code), "\0").as_bytes()) },
                    const { nul_terminated(concat!($text, "\0").as_bytes()) },
                )), )*
                _ => None,
            }
        }
    };
}

code_table!(cu_error, CUresult,
    CUDA_SUCCESS => "no error",
    CUDA_ERROR_INVALID_VALUE => "invalid argument",
    CUDA_ERROR_OUT_OF_MEMORY => "out of memory",
    CUDA_ERROR_NOT_INITIALIZED => "initialization error",
    CUDA_ERROR_DEINITIALIZED => "driver shutting down",
    CUDA_ERROR_STUB_LIBRARY => "CUDA driver is a stub library",
    CUDA_ERROR_NO_DEVICE => "no CUDA-capable device is detected",
    CUDA_ERROR_INVALID_DEVICE => "invalid device ordinal",
    CUDA_ERROR_INVALID_IMAGE => "device kernel image is invalid",
    CUDA_ERROR_INVALID_CONTEXT => "invalid device context",
    CUDA_ERROR_CONTEXT_ALREADY_CURRENT => "context already current",
    CUDA_ERROR_MAP_FAILED => "mapping of buffer object failed",
    CUDA_ERROR_UNMAP_FAILED => "unmapping of buffer object failed",
    CUDA_ERROR_ALREADY_MAPPED => "resource already mapped",
    CUDA_ERROR_NO_BINARY_FOR_GPU => "no kernel image is available for execution on the device",
    CUDA_ERROR_NOT_MAPPED => "resource not mapped",
    CUDA_ERROR_UNSUPPORTED_LIMIT => "operation not supported",
    CUDA_ERROR_INVALID_SOURCE => "device kernel image is invalid",
    CUDA_ERROR_FILE_NOT_FOUND => "file not found",
    CUDA_ERROR_INVALID_HANDLE => "invalid resource handle",
    CUDA_ERROR_ILLEGAL_STATE => "the operation cannot be performed in the present state",
    CUDA_ERROR_NOT_FOUND => "named symbol not found",
    CUDA_ERROR_NOT_READY => "device not ready",
    CUDA_ERROR_ILLEGAL_ADDRESS => "an illegal memory access was encountered",
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES => "too many resources requested for launch",
    CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE => "primary context active",
    CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED => "part or all of the requested memory range is already mapped",
    CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED => "pointer does not correspond to a registered memory region",
    CUDA_ERROR_CONTEXT_IS_DESTROYED => "context is destroyed",
    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE => "too many blocks in cooperative launch",
    CUDA_ERROR_NOT_PERMITTED => "operation not permitted",
    CUDA_ERROR_NOT_SUPPORTED => "operation not supported",
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED => "operation not permitted when stream is capturing",
    CUDA_ERROR_UNKNOWN => "unknown error",
);

code_table!(nvml_error, nvmlReturn_t,
    NVML_SUCCESS => "Success",
    NVML_ERROR_UNINITIALIZED => "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT => "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED => "Not Supported",
    NVML_ERROR_NO_PERMISSION => "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED => "Already Initialized",
    NVML_ERROR_NOT_FOUND => "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE => "Insufficient Size",
    NVML_ERROR_INSUFFICIENT_POWER => "Insufficient External Power",
    NVML_ERROR_DRIVER_NOT_LOADED => "Driver Not Loaded",
    NVML_ERROR_TIMEOUT => "Timeout",
    NVML_ERROR_IRQ_ISSUE => "Interrupt Request Issue",
    NVML_ERROR_LIBRARY_NOT_FOUND => "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND => "Function Not Found",
    NVML_ERROR_CORRUPTED_INFOROM => "Corrupted infoROM",
    NVML_ERROR_GPU_IS_LOST => "GPU is lost",
    NVML_ERROR_RESET_REQUIRED => "GPU requires restart",
    NVML_ERROR_OPERATING_SYSTEM => "The operating system has blocked the request.",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH => "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_IN_USE => "In use by another client",
    NVML_ERROR_MEMORY => "Insufficient Memory",
    NVML_ERROR_NO_DATA => "No data",
    NVML_ERROR_VGPU_ECC_NOT_ENABLED => "ECC is not enabled on the vGPU",
    NVML_ERROR_INSUFFICIENT_RESOURCES => "Insufficient resources",
    NVML_ERROR_FREQ_NOT_SUPPORTED => "Frequency not supported",
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH => "Argument version mismatch",
    NVML_ERROR_DEPRECATED => "Deprecated",
    NVML_ERROR_NOT_READY => "Not Ready",
    NVML_ERROR_GPU_NOT_FOUND => "GPU not found",
    NVML_ERROR_INVALID_STATE => "Invalid state",
    NVML_ERROR_UNKNOWN => "Unknown Error",
);

/// `cuGetErrorName` text of a code, `None` when the code is not a known `CUresult`.
pub fn cu_error_name(code: CUresult) -> Option<&'static CStr> {
    cu_error(code).map(|(n, _)| n)
}

/// `cuGetErrorString` text of a code, `None` when the code is not a known `CUresult`.
pub fn cu_error_string(code: CUresult) -> Option<&'static CStr> {
    cu_error(code).map(|(_, s)| s)
}

/// `nvmlErrorString` text of a code (unknown codes read "Unknown Error", as NVML does).
pub fn nvml_error_string(code: nvmlReturn_t) -> &'static CStr {
    nvml_error(code).map(|(_, s)| s).unwrap_or(c"Unknown Error")
}
