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

use std::collections::VecDeque;

/// Watcher period.
pub const TICK_NS: u64 = 100_000_000;
/// Measurement window, in ticks (400 ms: NVML's 1 % resolution is 4 ms of busy time).
pub const WINDOW_TICKS: usize = 4;
/// Cost assumed before the first measurement: 1 ms per launch.
pub const INITIAL_COST_NS: i64 = 1_000_000;
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
    /// The container's `throttled_launches` at this record.
    throttled: u64,
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
}

/// What one tick decided.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickOut {
    pub cost: Option<i64>,
    pub k: Option<f64>,
    /// The container's measured share over the window (leader only).
    pub share: Option<f64>,
}

/// One process's controller for one device.
#[derive(Debug, Default)]
pub struct LaneController {
    records: VecDeque<Record>,
    last_consumed: Option<i64>,
    measured: u32,
}

impl LaneController {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the history (the cap was lifted, or the lane changed device).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn tick(&mut self, inp: &TickIn<'_>, util: &mut dyn UtilSource) -> TickOut {
        let charged = inp.consumed - self.last_consumed.unwrap_or(inp.consumed);
        self.last_consumed = Some(inp.consumed);
        let launches = charged.max(0) as f64 / inp.cost.max(1) as f64;
        self.records.push_back(Record {
            real_us: inp.real_us,
            launches,
            throttled: inp.throttled,
        });
        while self.records.len() > WINDOW_TICKS + 1 {
            self.records.pop_front();
        }
        let mut out = TickOut::default();
        let Some(start) = self.records.front().copied() else {
            return out;
        };
        if self.records.len() < 2 || inp.real_us < start.real_us + 1_000 {
            return out;
        }
        let window_ns = (inp.real_us - start.real_us) as f64 * 1e3;
        let launches: f64 = self.records.iter().skip(1).map(|r| r.launches).sum();
        let Some(samples) = util.since(start.real_us) else {
            return out;
        };

        if launches >= 1.0 {
            let cost = inp.cost.max(1) as f64;
            let ratio = match pct_of(&samples, inp.my_pid) {
                Some(p) if p > 0.0 => Some(p / 100.0 * window_ns / launches / cost),
                // Below NVML's resolution: only an upper bound.
                _ => Some(0.005 * window_ns / launches / cost).filter(|&r| r < 1.0),
            };
            if let Some(ratio) = ratio {
                let factor = if self.measured == 0 {
                    ratio.clamp(1.0 / 64.0, 64.0)
                } else {
                    ratio.clamp(1.0 / 8.0, 8.0).sqrt()
                };
                self.measured += 1;
                let next = (cost * factor).round() as i64;
                out.cost = Some(next.clamp(MIN_COST_NS, MAX_COST_NS));
            }
        }

        if inp.leader && inp.target > 0.0 {
            let g: f64 = inp
                .container_pids
                .iter()
                .filter_map(|&pid| pct_of(&samples, pid))
                .sum::<f64>()
                / 100.0;
            out.share = Some(g);
            let e = (inp.target - g) / inp.target;
            let constrained = inp.throttled > start.throttled || g > inp.target;
            if constrained && e.abs() < INTEGRAL_BAND {
                let prev = self.records[self.records.len() - 2].real_us;
                let dt = (inp.real_us - prev) as f64 / 1e6;
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

    fn tick(c: &mut LaneController, t_ms: u64, consumed: i64, cost: i64, util: &mut Fixed) -> TickOut {
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
            },
            util,
        )
    }

    #[test]
    fn first_measurement_jumps_then_moves_half_the_log_distance() {
        let mut c = LaneController::new();
        // 100 launches charged at 1 ms in 100 ms while the pid was 30 % busy: 300 us each.
        let mut u = Fixed(vec![(7, 30)]);
        assert_eq!(tick(&mut c, 0, 0, 1_000_000, &mut u).cost, None);
        let out = tick(&mut c, 100, 100_000_000, 1_000_000, &mut u);
        assert_eq!(out.cost, Some(300_000));
        // Next: the estimate says 300 us but the pid shows 4x that: move x2 (sqrt 4).
        let mut u = Fixed(vec![(7, 60)]);
        let out = tick(&mut c, 200, 100_000_000 + 100 * 300_000, 300_000, &mut u);
        // window 200 ms, launches 200, busy 120 ms: 600 us = 2x; sqrt -> x1.414
        assert_eq!(out.cost, Some(424_264));
    }

    #[test]
    fn zero_percent_only_bounds_from_above() {
        let mut c = LaneController::new();
        let mut u = Fixed(vec![]);
        tick(&mut c, 0, 0, 1_000_000, &mut u);
        // 36 launches, nothing measurable: cost <= 0.5 % of 100 ms / 36 = 13.9 us;
        // the first jump is limited to /64.
        let out = tick(&mut c, 100, 36_000_000, 1_000_000, &mut u);
        assert_eq!(out.cost, Some(15_625));
        // With a cost already below the bound, nothing changes.
        let mut c = LaneController::new();
        tick(&mut c, 0, 0, 10, &mut u);
        assert_eq!(tick(&mut c, 100, 360, 10, &mut u).cost, None);
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
                },
                u,
            )
        };
        t(&mut c, 1000, &mut u);
        assert_eq!(t(&mut c, 1100, &mut u).k, None);
    }
}
