//! Simulated `libamdhip64.so`: a drop-in HIP runtime for an AMD Instinct GPU over the
//! machine-wide simulated GPU of `vgpu-sim-core`. Every row of `hip_headers::hip_api!` is
//! exported here under its symbol version node (`hipMalloc@@hip_4.2`,
//! `hipGetDevicePropertiesR0600@@hip_6.0`, ...), wrapped so that no panic crosses the FFI
//! boundary, and answered by `hipGetProcAddress` through `hip_headers::resolve_proc`.

#![allow(clippy::missing_safety_doc)]

mod api;
mod rt;

use hip_headers::prelude::*;

/// Marks this library as the simulator (tools tell a real ROCm install from us by it).
#[no_mangle]
#[used]
pub static vgpu_sim_marker: u8 = 1;

/// What an export returns when its body panicked: a valid value of its C type.
trait OnPanic {
    fn on_panic() -> Self;
    /// Remembers a failed call for `hipGetLastError` (HIP's per-thread last error).
    fn record(&self) {}
}

impl OnPanic for hipError_t {
    fn on_panic() -> Self {
        hipErrorUnknown
    }
    #[inline]
    fn record(&self) {
        if *self != hipSuccess {
            rt::set_last_error(*self);
        }
    }
}

impl OnPanic for hipDeviceOrdinal {
    fn on_panic() -> Self {
        hipDeviceOrdinal(-1)
    }
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

impl OnPanic for *const c_char {
    fn on_panic() -> Self {
        c"unknown error".as_ptr()
    }
}

impl OnPanic for *mut *mut c_void {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Functions that read the last error must not overwrite it with their own result.
const fn reads_last_error(name: &str) -> bool {
    same(name, "hipGetLastError")
        || same(name, "hipPeekAtLastError")
        || same(name, "hipExtGetLastError")
}

macro_rules! hip_exports {
    ($( $name:ident = $node:literal [$kind:ident]
        ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        $(
            #[no_mangle]
            #[allow(non_snake_case, clippy::too_many_arguments, clippy::unused_unit)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the export passes its C arguments through unchanged; the body has the same contract.
                let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    crate::api::$name($($arg),*)
                })) {
                    Ok(r) => r,
                    Err(_) => <$ret as OnPanic>::on_panic(),
                };
                const READS_LAST: bool = reads_last_error(stringify!($name));
                if !READS_LAST {
                    OnPanic::record(&r);
                }
                r
            }
        )*

        // Each export is the default version of its symbol in its node of the map.
        std::arch::global_asm!(
            $( concat!(".symver ", stringify!($name), ", ", stringify!($name), "@@", $node), )*
        );

        /// The export for row `i` of the table (the `hipGetProcAddress` answer).
        pub(crate) fn proc_ptr(i: usize) -> *mut c_void {
            let table: [*mut c_void; hip_headers::PROC_COUNT] = [ $( $name as *mut c_void ),* ];
            table.get(i).copied().unwrap_or(std::ptr::null_mut())
        }
    };
}

hip_headers::hip_api!(hip_exports);

#[cfg(test)]
mod tests {
    use super::reads_last_error;

    #[test]
    fn last_error_readers() {
        assert!(reads_last_error("hipGetLastError"));
        assert!(reads_last_error("hipPeekAtLastError"));
        assert!(reads_last_error("hipExtGetLastError"));
        assert!(!reads_last_error("hipMalloc"));
        assert!(!reads_last_error("hipGetErrorString"));
        assert!(!reads_last_error("hipDrvGetErrorName"));
    }
}
