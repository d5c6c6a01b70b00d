//! The launch gate: what every launch hook runs before calling the driver.
//!
//! Fast path (no hold, no core cap): two relaxed loads and two predictable branches — one
//! to note "this process launched" for the node monitor, one of the gate. Everything else
//! happens in the per-process watcher thread (`shared_region`), which every 250 ms reads
//! what HAMi's monitor wrote into the region and opens or closes the gate:
//! - `recent_kernel == -1`: a higher-priority container is busy on this GPU; launches of
//!   this container wait (sleeping, bounded) until the monitor clears it;
//! - it also publishes `last_kernel_time` when this process launched since the last tick.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use shm_layout::{Region, RECENT_KERNEL_HOLD};

/// Set when launches must take the slow path (monitor hold, later the core cap).
pub static THROTTLE_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set by launches, cleared by the watcher: "this process launched since the last tick".
static LAUNCHED: AtomicBool = AtomicBool::new(false);
/// Last `recent_kernel` the watcher saw.
static RECENT_KERNEL: AtomicI32 = AtomicI32::new(shm_layout::RECENT_KERNEL_INIT);

/// Longest a single launch is held for the monitor: a monitor that died while holding
/// must not stall the application forever.
const MAX_HOLD: Duration = Duration::from_secs(30);
/// Sleep between checks while held.
const HOLD_POLL: Duration = Duration::from_millis(2);

#[inline(always)]
pub fn before_launch() {
    if !LAUNCHED.load(Ordering::Relaxed) {
        LAUNCHED.store(true, Ordering::Relaxed);
    }
    if THROTTLE_ACTIVE.load(Ordering::Relaxed) {
        slow_path();
    }
}

#[cold]
#[inline(never)]
fn slow_path() {
    let Some(region) = crate::shared_region::SharedRegion::get().map(|s| s.region()) else {
        return;
    };
    let start = Instant::now();
    while region.v1.recent_kernel.load(Ordering::Acquire) == RECENT_KERNEL_HOLD {
        if start.elapsed() > MAX_HOLD {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                crate::vlog!(
                    crate::log::WARN,
                    "launches held by the node monitor (recent_kernel = -1) for {MAX_HOLD:?}: proceeding"
                )
            });
            break;
        }
        std::thread::sleep(HOLD_POLL);
    }
}

/// One watcher tick: read the monitor's fields, open/close the gate, publish activity.
pub fn watcher_tick(region: &Region) {
    let recent = region.v1.recent_kernel.load(Ordering::Acquire);
    RECENT_KERNEL.store(recent, Ordering::Relaxed);
    THROTTLE_ACTIVE.store(recent == RECENT_KERNEL_HOLD, Ordering::Relaxed);
    if LAUNCHED.swap(false, Ordering::Relaxed) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        region.v1.last_kernel_time.store(now, Ordering::Relaxed);
    }
}

/// The monitor's `utilization_switch` as last seen (1 = enforce the core cap now).
pub fn utilization_switch(region: &Region) -> i32 {
    region.v1.utilization_switch.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_opens_and_closes_the_gate_and_publishes_activity() {
        let region = Region::new_boxed();
        shm_layout::init(&region, &shm_layout::InitParams::default()).unwrap();
        region.v1.recent_kernel.store(RECENT_KERNEL_HOLD, Ordering::Relaxed);
        before_launch_without_gate();
        watcher_tick(&region);
        assert!(THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert!(region.v1.last_kernel_time.load(Ordering::Relaxed) > 1_700_000_000);
        region.v1.recent_kernel.store(0, Ordering::Relaxed);
        watcher_tick(&region);
        assert!(!THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert_eq!(utilization_switch(&region), shm_layout::UTILIZATION_SWITCH_INIT);
    }

    fn before_launch_without_gate() {
        LAUNCHED.store(true, Ordering::Relaxed);
    }
}
