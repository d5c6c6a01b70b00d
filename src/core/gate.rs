//! The launch gate and the compute cap (`CUDA_DEVICE_SM_LIMIT`), see docs/COMPUTE_CAP.md.
//!
//! Every launch hook calls [`before_launch`]:
//! - **no cap, no hold**: one relaxed load of [`THROTTLE_ACTIVE`] (plus the LAUNCHED note
//!   for the node monitor, a load that is already `true` after the first launch);
//! - **cap in force, tokens available**: the device's lane (the only device of the
//!   container, or the one the backend's placement names) and one `fetch_sub` on it
//!   (`bucket::try_fast`);
//! - **tokens out**: `bucket::acquire_step` takes tokens from the container bucket or says
//!   how long to sleep; the thread sleeps (50 µs .. 5 ms at a time, never spins) for at
//!   most [`MAX_CAP_WAIT`] in all. A launch is never refused.
//!
//! The watcher thread of each process (`shared_region`, every [`controller::TICK_NS`])
//! runs [`watcher_tick`]: it reads what HAMi's monitor wrote (`recent_kernel`,
//! `utilization_switch`), decides which devices are capped (policy, per-device limits),
//! opens or closes the gate, publishes `last_kernel_time`, and runs the controller
//! (cost calibration from NVML process utilization, share integral) for capped devices.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shm_layout::{slot_state, Region, MAX_DEVICES, RECENT_KERNEL_HOLD};

use crate::config::CorePolicy;
use crate::core::probe::DeviceProbe;
use crate::throttle::bucket::{self, Lane, Step};
use crate::throttle::controller::{self, LaneController, TickIn};
use crate::throttle::{apply_tick, cap_in_force, publish_charges};

/// Set when launches must take the gated path (monitor hold or a core cap in force).
pub static THROTTLE_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set by launches, cleared by the watcher: "this process launched since the last tick".
static LAUNCHED: AtomicBool = AtomicBool::new(false);
/// Last `recent_kernel` the watcher saw.
static RECENT_KERNEL: AtomicI32 = AtomicI32::new(shm_layout::RECENT_KERNEL_INIT);
/// Whether the monitor holds this container's launches (`recent_kernel == -1`).
static HOLD: AtomicBool = AtomicBool::new(false);
/// Container index of the container's only device, or [`ROUTE_BY_CONTEXT`].
static ROUTE: AtomicUsize = AtomicUsize::new(ROUTE_BY_CONTEXT);
const ROUTE_BY_CONTEXT: usize = usize::MAX;
/// `GPU_CORE_UTILIZATION_POLICY` (set once by the runtime).
static POLICY: AtomicU8 = AtomicU8::new(POLICY_DEFAULT);
const POLICY_DEFAULT: u8 = 0;
const POLICY_FORCE: u8 = 1;
const POLICY_DISABLE: u8 = 2;

/// This process's lanes, by container device index.
static LANES: [Lane; MAX_DEVICES] = [const { Lane::new(controller::INITIAL_COST_NS) }; MAX_DEVICES];

/// Longest a single launch is held for the monitor: a monitor that died while holding
/// must not stall the application forever.
const MAX_HOLD: Duration = Duration::from_secs(30);
/// Sleep between checks while held.
const HOLD_POLL: Duration = Duration::from_millis(2);
/// Longest a single launch waits for tokens (then it proceeds, logged once): a 100 ms
/// kernel at a 1 % cap legitimately waits 10 s.
pub const MAX_CAP_WAIT: Duration = Duration::from_secs(10);

/// Hands the configured policy to the throttle (before the watcher starts).
pub fn set_policy(policy: CorePolicy) {
    let p = match policy {
        CorePolicy::Default => POLICY_DEFAULT,
        CorePolicy::Force => POLICY_FORCE,
        CorePolicy::Disable => POLICY_DISABLE,
    };
    POLICY.store(p, Ordering::Relaxed);
}

fn policy() -> CorePolicy {
    match POLICY.load(Ordering::Relaxed) {
        POLICY_FORCE => CorePolicy::Force,
        POLICY_DISABLE => CorePolicy::Disable,
        _ => CorePolicy::Default,
    }
}

/// The gate of every launch, CUDA's and HIP's: the same lanes, bucket and controller. With
/// several devices a launch is routed by `current`, the backend's placement of the calling
/// thread's launch (its container device index: CUDA's current context, HIP's current
/// device); with one device it is never called.
#[inline(always)]
pub fn before_launch(current: impl FnOnce() -> Option<usize>) {
    if !LAUNCHED.load(Ordering::Relaxed) {
        first_launch_of_tick();
    }
    if THROTTLE_ACTIVE.load(Ordering::Relaxed) {
        gated(current);
    }
}

/// The first launch since the watcher's last tick (once per tick): noted for the monitor's
/// activity. At the process's first, its watcher is started, and the gate is set from the
/// region first — the monitor's hold (`recent_kernel`) included, which the watcher's
/// first tick would otherwise see only a period later — so that this very launch obeys it.
#[cold]
#[inline(never)]
fn first_launch_of_tick() {
    LAUNCHED.store(true, Ordering::Relaxed);
    if let Some(sr) = crate::core::shared_region::SharedRegion::get() {
        if !sr.watcher_started() {
            open_gate(sr);
            sr.ensure_watcher();
        }
    }
}

#[inline]
fn gated(current: impl FnOnce() -> Option<usize>) {
    gated_routed(current)
}

#[inline(always)]
fn gated_routed(current: impl FnOnce() -> Option<usize>) {
    if HOLD.load(Ordering::Relaxed) {
        hold_wait();
    }
    let route = ROUTE.load(Ordering::Relaxed);
    let index = if route != ROUTE_BY_CONTEXT {
        route
    } else {
        match current() {
            Some(d) => d,
            None => return,
        }
    };
    let Some(lane) = LANES.get(index) else {
        return;
    };
    if !lane.active.load(Ordering::Relaxed) || bucket::try_fast(lane) {
        return;
    }
    capped_wait(lane);
}

#[cold]
#[inline(never)]
fn hold_wait() {
    let Some(region) = crate::core::shared_region::SharedRegion::get().map(|s| s.region()) else {
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

/// The slow path: the lane is out of tokens. Takes tokens from the container bucket,
/// sleeping while it is empty; bounded by [`MAX_CAP_WAIT`].
#[cold]
#[inline(never)]
fn capped_wait(lane: &Lane) {
    let Some(region) = crate::core::shared_region::SharedRegion::get().map(|s| s.region()) else {
        return;
    };
    let Ok(dev) = region.device(lane.dev.load(Ordering::Acquire)) else {
        return;
    };
    let start = crate::clock::mono_ns();
    let mut slept = false;
    // Not launched yet: the controller must not count it before it is.
    let mut cost = lane.cost.load(Ordering::Relaxed);
    lane.pending.fetch_add(cost, Ordering::AcqRel);
    loop {
        if !lane.active.load(Ordering::Relaxed) {
            break;
        }
        bucket::reprice(lane, &mut cost);
        let now = crate::clock::mono_ns();
        match bucket::acquire_step(lane, dev, now) {
            Step::Go => break,
            Step::Wait(ns) => {
                if now.saturating_sub(start) > MAX_CAP_WAIT.as_nanos() as u64 {
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        crate::vlog!(
                            crate::log::WARN,
                            "a launch waited {MAX_CAP_WAIT:?} for the compute cap: proceeding"
                        )
                    });
                    break;
                }
                slept = true;
                std::thread::sleep(Duration::from_nanos(ns));
            }
        }
    }
    lane.pending.fetch_sub(cost, Ordering::AcqRel);
    if slept {
        dev.throttled_launches.fetch_add(1, Ordering::Relaxed);
        dev.throttle_wait_ns.fetch_add(
            crate::clock::mono_ns().saturating_sub(start),
            Ordering::Relaxed,
        );
    }
}

// ---- the watcher ---------------------------------------------------------------------

/// The watcher's own state (only the watcher thread touches it).
struct WatchState {
    controllers: [LaneController; MAX_DEVICES],
    /// The utilization probe of each container device (NVML's or ROCm SMI's).
    probes: [Option<Box<dyn DeviceProbe>>; MAX_DEVICES],
    /// Per container device: when this process last published its `sm_util` (wall µs).
    util_published_us: [u64; MAX_DEVICES],
    /// Per container device: the lane's `consumed()` last added to the container's
    /// `launch_charged_ns` (`publish_charges`).
    charges_published: [Option<i64>; MAX_DEVICES],
}

static WATCH: Mutex<Option<WatchState>> = Mutex::new(None);

impl WatchState {
    fn new() -> WatchState {
        WatchState {
            controllers: std::array::from_fn(|_| LaneController::new()),
            probes: std::array::from_fn(|_| None),
            util_published_us: [0; MAX_DEVICES],
            charges_published: [None; MAX_DEVICES],
        }
    }
}

/// How often a process publishes its per-device `sm_util` for the node monitor.
const SM_UTIL_PERIOD_US: u64 = 1_000_000;

/// Publishes this process's SM utilization per device (HAMi's `device_util[d].sm_util`,
/// which the node monitor exports) from the real NVML's per-process samples, once a second,
/// capped or not. Needs the host pid (NVML's pid); without it nothing is published.
fn publish_sm_util(
    sr: &crate::core::shared_region::SharedRegion,
    map: &[Option<usize>; MAX_DEVICES],
) {
    let region = sr.region();
    let Some(slot) = sr.slot() else { return };
    let host = region.v1.procs[slot].hostpid.load(Ordering::Relaxed);
    if host <= 0 {
        return;
    }
    let mut guard = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let st = guard.get_or_insert_with(WatchState::new);
    let now = crate::clock::unix_us();
    // Indexed by container device like the controllers (`st.nvml[i]` is map[i]'s handle).
    for (i, dev) in map.iter().enumerate() {
        let Some(dev) = *dev else { continue };
        let since = st.util_published_us[i];
        if since == 0 {
            // The first figure one period after start (nothing has run yet): a process
            // that starts does not open NVML for it among all the container's processes
            // starting with it.
            st.util_published_us[i] = now;
            continue;
        }
        if now.saturating_sub(since) < SM_UTIL_PERIOD_US {
            continue;
        }
        st.util_published_us[i] = now;
        if st.probes[i].is_none() {
            st.probes[i] = crate::core::vendor::util_probe(region, dev);
        }
        // Per-process figures: NVML's, or AMD SMI's (none from the ROCm SMI fallback).
        let Some(samples) = st.probes[i]
            .as_mut()
            .and_then(|p| p.per_process_since(since))
        else {
            continue;
        };
        let util = samples
            .iter()
            .filter(|(pid, _)| *pid == host as u32)
            .map(|(_, sm)| u64::from(*sm))
            .max()
            .unwrap_or(0);
        region.v1.procs[slot].device_util[dev]
            .sm_util
            .store(util, Ordering::Relaxed);
    }
}

/// Sets the gate from the region now (at initialisation, before the first launch).
/// Returns whether a device is capped.
pub fn open_gate(sr: &crate::core::shared_region::SharedRegion) -> bool {
    let map: [Option<usize>; MAX_DEVICES] = std::array::from_fn(|i| sr.region_device(i));
    update_gate(sr.region(), &map, policy())
}

/// One watcher tick (see the module docs).
pub fn watcher_tick(sr: &crate::core::shared_region::SharedRegion) {
    let region = sr.region();
    let map: [Option<usize>; MAX_DEVICES] = std::array::from_fn(|i| sr.region_device(i));
    let any_capped = update_gate(region, &map, policy());
    publish_activity(region);
    publish_sm_util(sr, &map);
    if any_capped {
        run_controllers(sr, &map);
    }
}

/// Reads the monitor's fields and the limits, sets the lanes, the route and the gate.
/// Returns whether any device is capped now.
fn update_gate(region: &Region, map: &[Option<usize>; MAX_DEVICES], policy: CorePolicy) -> bool {
    let recent = region.v1.recent_kernel.load(Ordering::Acquire);
    RECENT_KERNEL.store(recent, Ordering::Relaxed);
    let hold = recent == RECENT_KERNEL_HOLD;
    HOLD.store(hold, Ordering::Relaxed);
    let switch = utilization_switch(region);
    let mut any = false;
    for (lane, dev) in LANES.iter().zip(map) {
        let state = dev.and_then(|d| Some((d, region.device(d).ok()?)));
        let capped = state.is_some_and(|(_, ext)| {
            cap_in_force(policy, switch, ext.sm_limit.load(Ordering::Acquire))
        });
        if let Some((d, ext)) = state.filter(|_| capped) {
            lane.dev.store(d, Ordering::Release);
            let sm = ext.sm_limit.load(Ordering::Acquire);
            let base = sm * 10_000_000;
            let rate = ext.refill_rate.load(Ordering::Acquire);
            let k = rate as f64 / base as f64;
            if !(controller::K_MIN..=controller::K_MAX).contains(&k) {
                // Not set yet, or the limit changed: start again from k = 1.
                bucket::set_rate(ext, base);
            }
        }
        lane.active.store(capped, Ordering::Release);
        any |= capped;
    }
    let mapped: Vec<usize> = (0..MAX_DEVICES).filter(|&i| map[i].is_some()).collect();
    ROUTE.store(
        if mapped.len() == 1 {
            mapped[0]
        } else {
            ROUTE_BY_CONTEXT
        },
        Ordering::Relaxed,
    );
    THROTTLE_ACTIVE.store(hold || any, Ordering::Relaxed);
    any
}

fn publish_activity(region: &Region) {
    if LAUNCHED.swap(false, Ordering::Relaxed) {
        region
            .v1
            .last_kernel_time
            .store(crate::clock::unix_secs(), Ordering::Relaxed);
    }
}

/// The container's pids (host pids, as NVML names them) and whether this process is the
/// lowest active slot (the one that runs the share integral).
fn container_pids(sr: &crate::core::shared_region::SharedRegion) -> (Vec<u32>, bool) {
    let region = sr.region();
    let high = (region.ext.header.slot_high_water.load(Ordering::Acquire) as usize)
        .min(shm_layout::MAX_PROCS);
    let mine = sr.slot();
    let mut pids = Vec::new();
    let mut first = None;
    for i in 0..high {
        if region.ext.slots[i].state.load(Ordering::Acquire) != slot_state::ACTIVE {
            continue;
        }
        first.get_or_insert(i);
        let host = region.v1.procs[i].hostpid.load(Ordering::Relaxed);
        let pid = if host > 0 {
            host
        } else {
            region.ext.slots[i].pid.load(Ordering::Relaxed)
        };
        if pid > 0 {
            pids.push(pid as u32);
        }
    }
    (pids, mine.is_some() && first == mine)
}

fn run_controllers(
    sr: &crate::core::shared_region::SharedRegion,
    map: &[Option<usize>; MAX_DEVICES],
) {
    let mut guard = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let st = guard.get_or_insert_with(WatchState::new);
    let region = sr.region();
    let (pids, leader) = container_pids(sr);
    let my_pid = sr
        .slot()
        .map(|s| region.v1.procs[s].hostpid.load(Ordering::Relaxed))
        .filter(|&p| p > 0)
        // SAFETY: getpid has no preconditions.
        .unwrap_or_else(|| unsafe { libc::getpid() }) as u32;
    for (i, lane) in LANES.iter().enumerate() {
        let Some(dev) = map[i] else { continue };
        if !lane.active.load(Ordering::Acquire) {
            st.controllers[i].reset();
            continue;
        }
        let Ok(ext) = region.device(dev) else {
            continue;
        };
        if st.probes[i].is_none() {
            st.probes[i] = crate::core::vendor::util_probe(region, dev);
        }
        let Some(probe) = st.probes[i].as_mut() else {
            continue;
        };
        let sm = ext.sm_limit.load(Ordering::Acquire);
        let base = (sm * 10_000_000) as f64;
        let cost = lane.cost.load(Ordering::Acquire);
        let consumed = lane.consumed();
        let (container_charged, container_launches) =
            publish_charges(ext, &mut st.charges_published[i], consumed, cost);
        let out = st.controllers[i].tick(
            &TickIn {
                real_us: crate::clock::unix_us(),
                consumed,
                container_charged,
                container_launches,
                cost,
                throttled: ext.throttled_launches.load(Ordering::Acquire),
                my_pid,
                container_pids: &pids,
                leader,
                target: sm as f64 / 100.0,
                k: ext.refill_rate.load(Ordering::Acquire) as f64 / base,
            },
            &mut *probe.source(my_pid),
        );
        apply_tick(lane, ext, &out, st.controllers[i].calibrated(), base);
        if let Some(g) = out.share {
            crate::vlog!(
                crate::log::DEBUG,
                "compute cap device {i}: share {:.1} % (target {sm} %), k {:.3}, cost {} ns",
                g * 100.0,
                out.k.unwrap_or(f64::NAN),
                out.cost.unwrap_or(cost)
            );
        }
    }
}

/// The monitor's `utilization_switch` as last seen (1 = enforce the core cap now).
pub fn utilization_switch(region: &Region) -> i32 {
    region.v1.utilization_switch.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the process-wide gate (tests run in parallel threads).
    #[test]
    fn watcher_opens_and_closes_the_gate_and_publishes_activity() {
        let region = Region::new_boxed();
        shm_layout::init(&region, &shm_layout::InitParams::default()).unwrap();
        let mut map = [None; MAX_DEVICES];
        // Hold, no capped device.
        region
            .v1
            .recent_kernel
            .store(RECENT_KERNEL_HOLD, Ordering::Relaxed);
        LAUNCHED.store(true, Ordering::Relaxed);
        assert!(!update_gate(&region, &map, CorePolicy::Force));
        publish_activity(&region);
        assert!(THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert!(HOLD.load(Ordering::Relaxed));
        assert!(region.v1.last_kernel_time.load(Ordering::Relaxed) > 1_700_000_000);
        region.v1.recent_kernel.store(0, Ordering::Relaxed);
        assert!(!update_gate(&region, &map, CorePolicy::Force));
        assert!(!THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert_eq!(
            utilization_switch(&region),
            shm_layout::UTILIZATION_SWITCH_INIT
        );

        // A capped device: the gate opens, the bucket gets its rate, the route is direct.
        let dev = region.register_device("GPU-test", 0, 30).unwrap();
        map[0] = Some(dev);
        assert!(update_gate(&region, &map, CorePolicy::Default));
        assert!(THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert!(LANES[0].active.load(Ordering::Relaxed));
        assert_eq!(ROUTE.load(Ordering::Relaxed), 0);
        let ext = region.device(dev).unwrap();
        assert_eq!(ext.refill_rate.load(Ordering::Relaxed), 300_000_000);
        assert_eq!(ext.bucket_capacity.load(Ordering::Relaxed), 6_000_000);
        // The monitor turns the switch off: default policy stops capping; force does not.
        region.v1.utilization_switch.store(0, Ordering::Relaxed);
        assert!(!update_gate(&region, &map, CorePolicy::Default));
        assert!(!THROTTLE_ACTIVE.load(Ordering::Relaxed));
        assert!(update_gate(&region, &map, CorePolicy::Force));
        assert!(!update_gate(&region, &map, CorePolicy::Disable));
        // Two devices: launches are routed by their context.
        map[1] = Some(region.register_device("GPU-test-2", 0, 0).unwrap());
        assert!(update_gate(&region, &map, CorePolicy::Force));
        assert_eq!(ROUTE.load(Ordering::Relaxed), ROUTE_BY_CONTEXT);
        assert!(
            !LANES[1].active.load(Ordering::Relaxed),
            "no limit on device 1"
        );
        // Leave the process-wide gate closed for other tests.
        assert!(!update_gate(
            &region,
            &[None; MAX_DEVICES],
            CorePolicy::Force
        ));
        assert!(!THROTTLE_ACTIVE.load(Ordering::Relaxed));
    }
}
