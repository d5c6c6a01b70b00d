//! `hipError_t` values (the subset the simulator and vgpu return), names and strings.
#![allow(non_upper_case_globals)]

use core::ffi::c_int;

macro_rules! hip_errors {
    ($( $name:ident = $v:literal, $msg:literal; )*) => {
        $( pub const $name: c_int = $v; )*
        /// `(code, name, message)` of every known error.
        pub const HIP_ERRORS: &[(c_int, &str, &str)] = &[ $( ($v, stringify!($name), $msg) ),* ];
        /// The same rows, NUL-terminated for C callers.
        const HIP_ERRORS_NUL: &[(c_int, &str, &str)] =
            &[ $( ($v, concat!(stringify!($name), "\0"), concat!($msg, "\0")) ),* ];
    };
}

hip_errors! {
    hipSuccess = 0, "no error";
    hipErrorInvalidValue = 1, "invalid argument";
    hipErrorOutOfMemory = 2, "out of memory";
    hipErrorNotInitialized = 3, "initialization error";
    hipErrorDeinitialized = 4, "driver shutting down";
    hipErrorInvalidConfiguration = 9, "invalid configuration argument";
    hipErrorInvalidPitchValue = 12, "invalid pitch argument";
    hipErrorInvalidSymbol = 13, "invalid device symbol";
    hipErrorInvalidDevicePointer = 17, "invalid device pointer";
    hipErrorInvalidDeviceFunction = 98, "invalid device function";
    hipErrorInvalidMemcpyDirection = 21, "invalid copy direction for memcpy";
    hipErrorInsufficientDriver = 35, "driver version is insufficient for runtime version";
    hipErrorMissingConfiguration = 52, "__global__ function call is not configured";
    hipErrorNoDevice = 100, "no ROCm-capable device is detected";
    hipErrorInvalidDevice = 101, "invalid device ordinal";
    hipErrorInvalidImage = 200, "device kernel image is invalid";
    hipErrorInvalidContext = 201, "invalid device context";
    hipErrorNoBinaryForGpu = 209, "no kernel image is available for execution on the device";
    hipErrorUnsupportedLimit = 215, "limit is not supported on this architecture";
    hipErrorFileNotFound = 301, "file not found";
    hipErrorInvalidHandle = 400, "invalid resource handle";
    hipErrorNotFound = 500, "named symbol not found";
    hipErrorNotReady = 600, "device not ready";
    hipErrorPeerAccessAlreadyEnabled = 704, "peer access is already enabled";
    hipErrorPeerAccessNotEnabled = 705, "peer access has not been enabled";
    hipErrorHostMemoryAlreadyRegistered = 712, "part or all of the requested memory range is already mapped";
    hipErrorHostMemoryNotRegistered = 713, "pointer does not correspond to a registered memory region";
    hipErrorLaunchFailure = 719, "unspecified launch failure";
    hipErrorNotSupported = 801, "operation not supported";
    hipErrorStreamCaptureUnsupported = 900, "operation not permitted when stream is capturing";
    hipErrorStreamCaptureInvalidated = 901, "operation failed due to a previous error during capture";
    hipErrorCapturedEvent = 907, "operation not permitted on an event last recorded in a capturing stream";
    hipErrorUnknown = 999, "unknown error";
}

/// NUL-terminated name of an error (`hipErrorUnknown` for a code it does not know).
pub fn hip_error_name(e: c_int) -> &'static str {
    HIP_ERRORS_NUL
        .iter()
        .find(|r| r.0 == e)
        .map_or("hipErrorUnknown\0", |r| r.1)
}

/// NUL-terminated description of an error.
pub fn hip_error_string(e: c_int) -> &'static str {
    HIP_ERRORS_NUL
        .iter()
        .find(|r| r.0 == e)
        .map_or("unknown error\0", |r| r.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_follow_the_table() {
        for &(code, name, msg) in HIP_ERRORS {
            assert_eq!(hip_error_name(code).trim_end_matches('\0'), name);
            assert_eq!(hip_error_string(code).trim_end_matches('\0'), msg);
        }
        assert_eq!(hip_error_name(12345), "hipErrorUnknown\0");
    }
}
