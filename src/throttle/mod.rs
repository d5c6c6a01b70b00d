//! The compute cap's pure parts (no FFI): the container token bucket and per-process lanes
//! (`bucket`), the controller (`controller`: cost calibration and share integral, clock
//! injected) and, for their tests, a discrete-event GPU (`model`). The launch gate that
//! uses them is `crate::core::gate`; docs/COMPUTE_CAP.md.

pub mod bucket;
pub mod controller;
#[cfg(test)]
mod model;

use std::sync::atomic::Ordering;

use bucket::Lane;

/// Applies what a controller tick decided to the lane and the container bucket, and shares
/// the calibration: a process that measured publishes its cost as the container's hint
/// (`DeviceExt::cost_hint_ns`); one that has not measured yet takes the hint, so that it
/// starts from what its container's kernels cost instead of the 50 ms start-up guess (a
/// launch of it still waiting is re-priced, `bucket::reprice`).
pub fn apply_tick(
    lane: &Lane,
    ext: &shm_layout::DeviceExt,
    out: &controller::TickOut,
    calibrated: bool,
    base: f64,
) {
    if let Some(c) = out.cost {
        lane.cost.store(c, Ordering::Release);
        ext.cost_hint_ns.store(c, Ordering::Relaxed);
    } else if !calibrated {
        let hint = ext.cost_hint_ns.load(Ordering::Relaxed);
        if hint > 0 {
            lane.cost.store(
                hint.clamp(controller::MIN_COST_NS, controller::INITIAL_COST_NS),
                Ordering::Release,
            );
        }
    }
    if let Some(k) = out.k {
        bucket::set_rate(ext, (k * base) as u64);
    }
    if let Some(extra) = out.extra_charge {
        bucket::settle(ext, extra);
    }
}
