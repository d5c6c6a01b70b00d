//! `cuGetProcAddress` / `_v2`: the driver answers, then we hand out our hook for exactly
//! the variant it chose (see `driver::substitute_proc`).

use std::ffi::{c_char, c_int, c_void, CStr};

use cuda_headers::bindings::*;

use super::real_or_return;

unsafe fn substitute(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: u64) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: the driver accepted `symbol` as a C string and wrote `*pfn`.
    let name = unsafe { CStr::from_ptr(symbol) }.to_bytes();
    // SAFETY: `pfn` is non-null (checked above), the caller's out-pointer, which the driver just
    // wrote (the call succeeded).
    unsafe { *pfn = crate::cuda::substitute_proc(name, version, flags, *pfn) };
}

pub unsafe fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> CUresult {
    let real = real_or_return!(cuGetProcAddress);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(symbol, pfn, version, flags) };
    if rc == CUDA_SUCCESS {
        // SAFETY: the driver succeeded, so `symbol` is the caller's C string and `*pfn` is written;
        // `substitute` checks both for null.
        unsafe { substitute(symbol, pfn, version, flags) };
    }
    rc
}

pub unsafe fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    let real = real_or_return!(cuGetProcAddress_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(symbol, pfn, version, flags, status) };
    if rc == CUDA_SUCCESS {
        // SAFETY: the driver succeeded, so `symbol` is the caller's C string and `*pfn` is written;
        // `substitute` checks both for null.
        unsafe { substitute(symbol, pfn, version, flags) };
    }
    rc
}
