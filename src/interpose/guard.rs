//! The FFI boundary: no panic ever unwinds into the host application.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs a hook body; a panic becomes `on_panic` (and one log line), never an unwind
/// across `extern "C"`. Costs nothing when no panic happens.
#[inline(always)]
pub fn guard<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            crate::log::write_line(format_args!(
                "internal error in a hook (panic caught); returning an error code"
            ));
            on_panic
        }
    }
}
