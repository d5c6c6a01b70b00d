//! The compute cap's pure parts (docs/COMPUTE_CAP.md): the token bucket ([`bucket`]), the
//! control law ([`controller`]), the decision whether a cap is in force and how a
//! controller tick is applied. The launch gate itself, the watcher and the utilization
//! probes (NVML, ROCm SMI) are libvgpu's (`core::gate`, `core::probe`).

pub mod bucket;
pub mod controller;
#[cfg(test)]
mod model;

use std::sync::atomic::Ordering;

use crate::config::CorePolicy;
use bucket::Lane;

/// Whether a core cap is enforced now: a limit strictly between 0 and 100 %, and the
/// policy says so (`force`: always; `default`: when the monitor's `utilization_switch`
/// is 1; `disable`: never).
pub fn cap_in_force(policy: CorePolicy, utilization_switch: i32, sm_limit: u64) -> bool {
    let limited = sm_limit > 0 && sm_limit < 100;
    limited
        && match policy {
            CorePolicy::Force => true,
            CorePolicy::Default => utilization_switch == 1,
            CorePolicy::Disable => false,
        }
}

/// Adds what this process's launches were charged since its previous tick (`consumed`, the
/// lane's cumulative charges, minus what was `published`) to the container's
/// `launch_charged_ns`, and how many launches that was at `cost` (the cost in force) to its
/// `launches_milli`; returns both container totals now (ns, launches), this process's part
/// included (what a device-level utilization source is split by: `controller`).
pub fn publish_charges(
    ext: &shm_layout::DeviceExt,
    published: &mut Option<i64>,
    consumed: i64,
    cost: i64,
) -> (i64, f64) {
    let delta = consumed - published.unwrap_or(0);
    *published = Some(consumed);
    let milli = (delta as i128 * 1000 / cost.max(1) as i128) as i64;
    let charged = ext.launch_charged_ns.fetch_add(delta, Ordering::AcqRel) + delta;
    let launches = ext.launches_milli.fetch_add(milli, Ordering::AcqRel) + milli;
    (charged, launches as f64 / 1000.0)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_decides_when_the_cap_is_in_force() {
        for sm in [0, 100] {
            assert!(!cap_in_force(CorePolicy::Force, 1, sm), "{sm} % is no cap");
        }
        assert!(
            cap_in_force(CorePolicy::Force, 0, 30),
            "force: also when alone"
        );
        assert!(cap_in_force(CorePolicy::Default, 1, 30));
        assert!(
            !cap_in_force(CorePolicy::Default, 0, 30),
            "default follows the switch"
        );
        assert!(!cap_in_force(CorePolicy::Disable, 1, 30));
    }
}
