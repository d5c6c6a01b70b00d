//! The launch gate the compute cap plugs into. Without a core cap the launch path pays one
//! relaxed load of `THROTTLE_ACTIVE` and a predictable branch.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when any device of the container has an active core cap.
pub static THROTTLE_ACTIVE: AtomicBool = AtomicBool::new(false);

#[inline(always)]
pub fn before_launch() {
    if THROTTLE_ACTIVE.load(Ordering::Relaxed) {
        wait_for_tokens();
    }
}

#[cold]
#[inline(never)]
fn wait_for_tokens() {}
