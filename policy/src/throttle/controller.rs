//! The control law: pure, clock injected, no FFI.
//!
//! Every [`TICK_NS`] each process's watcher runs [`LaneController::tick`] for each capped
//! device:
//!
//! 1. **Cost calibration** (every process, for itself). Over a sliding window of up to
//!    [`WINDOW_TICKS`] ticks it knows how many launches it made (tokens charged / cost in
//!    force, from its lane) and asks the utilization source (NVML process utilization)
//!    how busy its own pid kept the device. `busy / launches` is the measured device time
//!    per launch; the cost estimate moves towards it geometrically (half the log-distance
//!    per tick, at most x8 per tick; the very first measurement jumps, at most x64). A
//!    window where the pid shows 0 % only bounds the cost from above (0.5 % of the window
//!    spread over its launches). This is a measurement, not a feedback loop: the ratio does
//!    not depend on how fast the process launches, so it cannot oscillate.
//! 2. **Share integral** (one process per container: the lowest active slot). It sums
//!    the busy share of every pid of the container over the same window, `g`, and compares
//!    it with the target `s`. The relative error `e = (s - g) / s` moves the refill-rate
//!    multiplier `k` (`refill_rate = k * s * 1 s`): `k *= 1 + KI * e * dt`, only while the
//!    container is constrained (it was throttled in the window, or is above target: no
//!    wind-up while idle or under-demanding) and only for residual errors (`|e| <`
//!    [`INTEGRAL_BAND`]: large errors are transients the cost calibration removes in a few
//!    ticks). `k` stays in [[`K_MIN`], [`K_MAX`]].
//!
//! Every gain is a fraction of the target or of the measured cost: nothing depends on the
//! number of SMs, the kernel's size or the number of processes.
//!
//! **Device-level sources** (AMD: ROCm SMI's busy counter is the device's, not a pid's;
//! [`UtilSource::device_level`]): the device's busy time `D` is the container's, and the
//! container's launch charges `C` (`DeviceExt::launch_charged_ns`, every process's watcher
//! adds its own) say how much of it each process's launches took:
//! - calibration: over the window, this process's part of `D` is `D x l / L` (`l` its own
//!   launches, `L` the container's, `DeviceExt::launches_milli`): every process's cost
//!   tends to the container's device time per launch `D / L`, exact for processes running
//!   the same kernels; processes whose kernels differ in length are priced alike (the
//!   device's figure cannot tell them apart), the container's total still right;
//! - reconciliation is the container's, run by the leader: `D - C` per tick (the per-pid
//!   balance would carry the attribution's noise, and over-charges are never refunded).
//!
//! With another container's work on the card `D` over-counts ours: the cap errs low
//! (docs/AMD.md).

use std::collections::VecDeque;

/// Watcher period.
pub const TICK_NS: u64 = 100_000_000;
/// Measurement window, in ticks (400 ms: NVML's 1 % resolution of a tick is 1 ms of busy
/// time, and the window sums four of them)...
pub const WINDOW_TICKS: usize = 4;
/// ...stretched up to this many ticks until it holds at least [`MIN_LAUNCHES`] launches.
pub const MAX_WINDOW_TICKS: usize = 20;
pub const MIN_LAUNCHES: f64 = 20.0;
/// Device busy above this fraction of the window counts as saturated.
pub const SATURATED: f64 = 0.95;
/// Cost assumed before the first measurement when the container has no cost hint yet
/// (`DeviceExt::cost_hint_ns`, see `apply_tick` in the parent module): 50 ms per launch,
/// the longest kernel we promise to handle, so that a new process never floods the device
/// queue before anything is measured (short kernels reach their share after a tick or two;
/// the launches that waited behind the guess are re-priced, `bucket::reprice`).
pub const INITIAL_COST_NS: i64 = 50_000_000;
pub const MIN_COST_NS: i64 = 1;
pub const MAX_COST_NS: i64 = 1_000_000_000;
/// Integral gain, per second of relative error.
pub const KI: f64 = 1.0;
/// The integral acts on relative errors smaller than this.
pub const INTEGRAL_BAND: f64 = 0.3;
pub const K_MIN: f64 = 0.5;
pub const K_MAX: f64 = 2.0;

/// Per-process device utilization since a wall-clock time (NVML's
/// `nvmlDeviceGetProcessUtilization`).
pub trait UtilSource {
    /// `(pid, smUtil %)` samples since `since_real_us` (CLOCK_REALTIME µs) up to now;
    /// an empty list when nothing ran; `None` when the source is unavailable.
    fn since(&mut self, since_real_us: u64) -> Option<Vec<(u32, u32)>>;

    /// Whether the figure is the whole device's (reported under the caller's pid), not per
    /// process (see the module docs).
    fn device_level(&self) -> bool {
        false
    }
}

/// This process's part of a device-level busy time `device` (ns): its launches `mine` over
/// the container's `container` (never fewer than its own).
fn device_part(device: f64, mine: f64, container: f64) -> f64 {
    let container = container.max(mine);
    if mine <= 0.0 || container <= 0.0 {
        0.0
    } else {
        device * mine / container
    }
}

fn tick_ns_of(a_us: u64, b_us: u64) -> f64 {
    b_us.saturating_sub(a_us) as f64 * 1e3
}

/// Mean utilization of `pid` over its samples (real NVML may return several per pid).
fn pct_of(samples: &[(u32, u32)], pid: u32) -> Option<f64> {
    let (n, sum) = samples
        .iter()
        .filter(|s| s.0 == pid)
        .fold((0u32, 0u64), |(n, sum), s| (n + 1, sum + u64::from(s.1)));
    (n > 0).then(|| sum as f64 / f64::from(n))
}

#[derive(Debug, Clone, Copy)]
struct Record {
    real_us: u64,
    /// Launches since the previous record.
    launches: f64,
    /// Busy ns of this process, and of the whole container, since the previous record.
    my_busy: f64,
    container_busy: f64,
    /// Busy ns of the whole device (every pid) since the previous record.
    device_busy: f64,
    /// The container's `throttled_launches` at this record.
    throttled: u64,
    /// The container's cumulative launch charges and launches at this record.
    container_charged: i64,
    container_launches: f64,
}

/// What one tick knows.
#[derive(Debug, Clone, Copy)]
pub struct TickIn<'a> {
    /// CLOCK_REALTIME µs now.
    pub real_us: u64,
    /// The lane's `consumed()` now.
    pub consumed: i64,
    /// The cost that was in force since the previous tick.
    pub cost: i64,
    /// The container bucket's `throttled_launches`.
    pub throttled: u64,
    /// This process's pid as the utilization source names it.
    pub my_pid: u32,
    /// Every pid of the container (for the leader).
    pub container_pids: &'a [u32],
    /// Whether this process runs the share integral.
    pub leader: bool,
    /// Target share (0..1).
    pub target: f64,
    /// Current refill multiplier.
    pub k: f64,
    /// The container's cumulative launch charges (`DeviceExt::launch_charged_ns`) and
    /// launches (`launches_milli` / 1000), this process's up to now included; used with a
    /// device-level source only.
    pub container_charged: i64,
    pub container_launches: f64,
}

/// What one tick decided.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickOut {
    /// New cost estimate for the lane.
    pub cost: Option<i64>,
    /// Device time this process used beyond what it was charged in the last tick: to be
    /// taken from the container bucket now (negative: over-charged, given back).
    pub extra_charge: Option<i64>,
    /// New refill multiplier (leader only).
    pub k: Option<f64>,
    /// The container's measured share over the window (leader only).
    pub share: Option<f64>,
}

/// An unpaid balance below this is left alone (NVML's rounding is noise).
pub const RECONCILE_SLACK_NS: f64 = 5_000_000.0;
/// Over-payment carried forward at most (kernels charged but still queued).
pub const MAX_CREDIT_NS: f64 = 500_000_000.0;

/// One process's controller for one device.
#[derive(Debug, Default)]
pub struct LaneController {
    records: VecDeque<Record>,
    last_consumed: Option<i64>,
    measured: u32,
    /// Device time used minus charged, ns (see `tick`).
    balance: f64,
}

impl LaneController {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether this process has measured its own cost yet.
    pub fn calibrated(&self) -> bool {
        self.measured > 0
    }

    /// Forgets the history (the cap was lifted, or the lane changed device).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn tick(&mut self, inp: &TickIn<'_>, util: &mut dyn UtilSource) -> TickOut {
        let charged = (inp.consumed - self.last_consumed.unwrap_or(inp.consumed)).max(0);
        self.last_consumed = Some(inp.consumed);
        let mut out = TickOut::default();
        let prev = self.records.back().copied();
        // This tick's busy time per pid (one query per tick: the window's sums are more
        // precise than one long query, NVML's resolution being 1 % of the window).
        let (my_busy, container_busy, device_busy, ok) = match prev {
            Some(p) if inp.real_us > p.real_us + 1_000 => match util.since(p.real_us) {
                Some(samples) if util.device_level() => {
                    let ns = (inp.real_us - p.real_us) as f64 * 1e3;
                    let d = pct_of(&samples, inp.my_pid).unwrap_or(0.0) / 100.0 * ns;
                    let mine = charged as f64 / inp.cost.max(1) as f64;
                    let container = inp.container_launches - p.container_launches;
                    (device_part(d, mine, container), d, d, true)
                }
                Some(samples) => {
                    let ns = (inp.real_us - p.real_us) as f64 * 1e3;
                    let busy = |pid| pct_of(&samples, pid).unwrap_or(0.0) / 100.0 * ns;
                    let c: f64 = inp.container_pids.iter().map(|&pid| busy(pid)).sum();
                    let mut pids: Vec<u32> = samples.iter().map(|s| s.0).collect();
                    pids.sort_unstable();
                    pids.dedup();
                    let d: f64 = pids.iter().map(|&pid| busy(pid)).sum();
                    (busy(inp.my_pid), c, d, true)
                }
                None => (0.0, 0.0, 0.0, false),
            },
            _ => (0.0, 0.0, 0.0, false),
        };
        if !ok {
            // No usable measurement: start the history again from here.
            self.records.clear();
        }
        self.records.push_back(Record {
            real_us: inp.real_us,
            launches: charged as f64 / inp.cost.max(1) as f64,
            my_busy,
            container_busy,
            device_busy,
            throttled: inp.throttled,
            container_charged: inp.container_charged,
            container_launches: inp.container_launches,
        });
        while self.records.len() > MAX_WINDOW_TICKS + 1 {
            self.records.pop_front();
        }
        let (Some(prev), true) = (prev, ok) else {
            return out;
        };

        // Reconcile: the running balance of device time used but not charged (kernels run
        // after their launch was charged, so a single tick says little; the balance does).
        let tick_ns = (inp.real_us - prev.real_us) as f64 * 1e3;
        let device_level = util.device_level();
        let unpaid = if device_level {
            // The container's balance, kept by the leader (module docs).
            let container = (inp.container_charged - prev.container_charged) as f64;
            if inp.leader {
                device_busy - container
            } else {
                0.0
            }
        } else {
            my_busy - charged as f64
        };
        self.balance = (self.balance + unpaid).max(-MAX_CREDIT_NS);
        if self.balance > RECONCILE_SLACK_NS {
            out.extra_charge = Some(self.balance as i64);
            self.balance = 0.0;
        }

        // The window: the last WINDOW_TICKS ticks, longer (up to MAX_WINDOW_TICKS) until it
        // holds MIN_LAUNCHES launches, so that long kernels are measured over enough of
        // them.
        let n = self.records.len();
        let mut first = n - 1;
        let mut seen = 0.0;
        while first > 0 && (n - first <= WINDOW_TICKS || seen < MIN_LAUNCHES) {
            seen += self.records[first].launches;
            first -= 1;
        }
        let start = self.records[first];
        let window_ns = (inp.real_us - start.real_us) as f64 * 1e3;
        let recent = || self.records.iter().skip(first + 1);
        let launches: f64 = recent().map(|r| r.launches).sum();
        let busy: f64 = if device_level {
            let mine: f64 = recent().map(|r| r.launches).sum();
            let container = inp.container_launches - start.container_launches;
            let device: f64 = recent().map(|r| r.device_busy).sum();
            device_part(device, mine, container)
        } else {
            recent().map(|r| r.my_busy).sum()
        };
        // A saturated device may hold a backlog of our kernels: then busy lags launches
        // and `busy / launches` under-states the cost. On an unsaturated device (work-
        // conserving: a waiting kernel would keep it busy) there is no backlog.
        let saturated = recent().map(|r| r.device_busy).sum::<f64>() >= SATURATED * window_ns
            || device_busy >= SATURATED * tick_ns_of(prev.real_us, inp.real_us);
        if launches >= 1.0 {
            let cost = inp.cost.max(1) as f64;
            let ratio = if busy > 0.0 {
                Some(busy / launches / cost)
            } else if saturated {
                // Our kernels may all be queued: no information.
                None
            } else {
                // Below NVML's resolution: only an upper bound.
                Some(0.005 * window_ns / launches / cost).filter(|&r| r < 1.0)
            };
            if let Some(ratio) = ratio {
                let first = self.measured == 0;
                let trusted = ratio >= 1.0 || !saturated;
                let factor = if first {
                    ratio.clamp(1.0 / 256.0, 64.0)
                } else if ratio > 1.5 && launches >= MIN_LAUNCHES {
                    // Clearly under-charged (the application changed kernels): jump up.
                    ratio.min(8.0)
                } else if !trusted {
                    // A saturated device may hold our backlog: never lower the cost.
                    1.0
                } else {
                    // Halve the log-distance, lowering by at most 1/1.5 a tick: a backlog
                    // makes `busy / launches` read low, and a cost that fell too far would
                    // let the backlog grow.
                    ratio.sqrt().max(1.0 / 1.5)
                };
                self.measured += 1;
                let next = (cost * factor).round() as i64;
                out.cost = Some(next.clamp(MIN_COST_NS, MAX_COST_NS));
                // The start-up guess over-charged the first launches (their kernels have
                // run, unless the device is saturated): give the difference back rather
                // than make the container repay a debt that was never device time.
                if first && factor < 1.0 / 1.5 && !saturated && self.balance < -RECONCILE_SLACK_NS {
                    out.extra_charge = Some(self.balance as i64);
                    self.balance = 0.0;
                }
            }
        }

        if inp.leader && inp.target > 0.0 {
            let g = recent().map(|r| r.container_busy).sum::<f64>() / window_ns;
            out.share = Some(g);
            let e = (inp.target - g) / inp.target;
            let constrained = inp.throttled > start.throttled || g > inp.target;
            if constrained && e.abs() < INTEGRAL_BAND {
                let dt = tick_ns / 1e9;
                let k = (inp.k * (1.0 + KI * e * dt.min(1.0))).clamp(K_MIN, K_MAX);
                out.k = Some(k);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(u32, u32)>);
    impl UtilSource for Fixed {
        fn since(&mut self, _: u64) -> Option<Vec<(u32, u32)>> {
            Some(self.0.clone())
        }
    }

    fn tick(
        c: &mut LaneController,
        t_ms: u64,
        consumed: i64,
        cost: i64,
        util: &mut Fixed,
    ) -> TickOut {
        c.tick(
            &TickIn {
                real_us: 1_000_000_000 + t_ms * 1000,
                consumed,
                cost,
                throttled: t_ms,
                my_pid: 7,
                container_pids: &[7, 8],
                leader: true,
                target: 0.3,
                k: 1.0,
                container_charged: consumed,
                container_launches: consumed as f64 / cost.max(1) as f64,
            },
            util,
        )
    }

    #[test]
    fn cost_jumps_when_far_and_the_balance_is_reconciled() {
        let mut c = LaneController::new();
        // 100 launches charged at 1 ms in 100 ms while the pid was 30 % busy: 300 us each.
        let mut u = Fixed(vec![(7, 30)]);
        assert_eq!(tick(&mut c, 0, 0, 1_000_000, &mut u), TickOut::default());
        let out = tick(&mut c, 100, 100_000_000, 1_000_000, &mut u);
        assert_eq!(out.cost, Some(300_000));
        // A clear over-estimate: the 70 ms charged beyond the device time are given back.
        assert_eq!(out.extra_charge, Some(-70_000_000));
        // Next: 100 launches charged at 300 us (30 ms) while the pid was 90 % busy: the
        // window (200 ms) says 600 us per launch, 2x: far, so it jumps; and the 60 ms used
        // beyond what was charged are charged now.
        let mut u = Fixed(vec![(7, 90)]);
        let out = tick(&mut c, 200, 130_000_000, 300_000, &mut u);
        assert_eq!(out.cost, Some(600_000));
        assert_eq!(out.extra_charge, Some(60_000_000));
        // Close to the measurement: half the log-distance.
        let mut u = Fixed(vec![(7, 72)]);
        // window 300 ms: 300 launches, 30 + 90 + 72 = 192 ms: 640 us, ratio 1.067
        let out = tick(&mut c, 300, 190_000_000, 600_000, &mut u);
        assert_eq!(
            out.cost,
            Some((600_000.0 * (640.0f64 / 600.0).sqrt()).round() as i64)
        );
        assert_eq!(
            out.extra_charge,
            Some(12_000_000),
            "72 ms used, 60 ms charged"
        );
    }

    #[test]
    fn zero_percent_only_bounds_from_above() {
        let mut c = LaneController::new();
        let mut u = Fixed(vec![]);
        tick(&mut c, 0, 0, 1_000_000, &mut u);
        // 36 launches, nothing measurable: cost <= 0.5 % of 100 ms / 36 = 13.9 us.
        let out = tick(&mut c, 100, 36_000_000, 1_000_000, &mut u);
        assert_eq!(out.cost, Some(13_889));
        // With a cost already below the bound, nothing changes.
        let mut c = LaneController::new();
        tick(&mut c, 0, 0, 10, &mut u);
        assert_eq!(tick(&mut c, 100, 360, 10, &mut u).cost, None);
    }

    #[test]
    fn long_kernels_widen_the_window() {
        let mut c = LaneController::new();
        let mut u = Fixed(vec![(7, 50)]);
        tick(&mut c, 0, 0, 50_000_000, &mut u);
        // One 50 ms launch per tick: the window grows past 4 ticks until 20 launches.
        for t in 1..=30u64 {
            let out = tick(&mut c, t * 100, t as i64 * 50_000_000, 50_000_000, &mut u);
            assert_eq!(out.cost.unwrap_or(50_000_000), 50_000_000);
        }
        assert_eq!(c.records.len(), MAX_WINDOW_TICKS + 1);
    }

    #[test]
    fn integral_only_near_target_and_when_constrained() {
        let mut c = LaneController::new();
        let mut u = Fixed(vec![(7, 12), (8, 12), (9, 50)]); // pid 9: another container
        tick(&mut c, 0, 0, 1_000, &mut u);
        let out = tick(&mut c, 100, 0, 1_000, &mut u);
        assert_eq!(out.share, Some(0.24));
        // e = 0.2, dt = 0.1 s: k = 1.02
        assert!((out.k.unwrap() - 1.02).abs() < 1e-9);
        // Far from target: left to the cost calibration.
        let mut u = Fixed(vec![(7, 5)]);
        let out = tick(&mut c, 200, 0, 1_000, &mut u);
        assert_eq!(out.k, None);
        // Not throttled and under target: no wind-up.
        let mut c = LaneController::new();
        let mut u = Fixed(vec![(7, 14), (8, 13)]);
        let t = |c: &mut LaneController, ms: u64, u: &mut Fixed| {
            c.tick(
                &TickIn {
                    real_us: ms * 1000,
                    consumed: 0,
                    cost: 1,
                    throttled: 5,
                    my_pid: 7,
                    container_pids: &[7, 8],
                    leader: true,
                    target: 0.3,
                    k: 1.0,
                    container_charged: 0,
                    container_launches: 0.0,
                },
                u,
            )
        };
        t(&mut c, 1000, &mut u);
        assert_eq!(t(&mut c, 1100, &mut u).k, None);
    }
}
