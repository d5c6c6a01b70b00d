//! The token bucket, in device-time nanoseconds, with an injected clock.
//!
//! Two levels:
//! - the **container bucket** lives in the shared region (`DeviceExt::tokens`,
//!   `last_refill_ns`, `refill_rate`, `bucket_capacity`): it refills lazily at `refill_rate`
//!   ns of device time per second of wall time, up to `bucket_capacity`, and may go into
//!   debt;
//! - each process holds a small **lane** per device: a local stock of tokens taken from the
//!   container bucket in chunks (about 1 ms of wall time worth of budget), and its current
//!   cost estimate (ns of device time per launch).
//!
//! A launch charges its cost to its lane with one `fetch_sub` (the fast path: no clock, no
//! syscall, no lock, no cache line shared with other processes) and proceeds when the lane
//! covered it. Otherwise (the slow path) the lane takes `debt + chunk` from the container
//! bucket, where debt is allowed: the launch proceeds when the container bucket had tokens
//! *before* the charge, so a 50 ms kernel is never starved (and every long kernel goes
//! through the container bucket: a lane never lends). When the container bucket is empty
//! too, the thread sleeps about
//! `debt / rate` (clamped to [50 µs, 5 ms]) and tries again. Nothing here ever refuses a
//! launch; the caller bounds the total wait.
//!
//! Because every launch of a process goes through its lane, `grabbed - local` is exactly
//! what the process was charged: divided by the cost in force, it is the number of launches,
//! which the controller needs to calibrate the cost — without a second atomic per launch.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use shm_layout::DeviceExt;

/// Shortest sleep of a throttled launch.
pub const MIN_WAIT_NS: u64 = 50_000;
/// Longest single sleep of a throttled launch (it then refills and tries again).
pub const MAX_WAIT_NS: u64 = 5_000_000;
/// Bucket capacity: this much wall time of budget (the largest burst after an idle spell).
pub const BURST_NS: u64 = 20_000_000;
/// A lane takes this much wall time of budget from the container bucket at a time.
pub const CHUNK_NS: u64 = 1_000_000;

/// What the slow path should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The launch may proceed.
    Go,
    /// Sleep this many ns, then call [`acquire_step`] again.
    Wait(u64),
}

/// A process's view of one capped device (process-local, one cache line).
#[repr(C, align(64))]
pub struct Lane {
    /// Whether the cap is in force for this device (written by the watcher).
    pub active: AtomicBool,
    /// Region device index (written by the watcher before `active`).
    pub dev: AtomicUsize,
    /// Current cost estimate, ns of device time per launch (>= 1).
    pub cost: AtomicI64,
    /// Local tokens (ns); may be negative while a launch waits for the container bucket.
    pub local: AtomicI64,
    /// Tokens taken from the container bucket since the lane was created.
    pub grabbed: AtomicI64,
    /// Charges of launches still waiting in the slow path (not launched yet).
    pub pending: AtomicI64,
}

impl Lane {
    pub const fn new(initial_cost: i64) -> Lane {
        Lane {
            active: AtomicBool::new(false),
            dev: AtomicUsize::new(usize::MAX),
            cost: AtomicI64::new(initial_cost),
            local: AtomicI64::new(0),
            grabbed: AtomicI64::new(0),
            pending: AtomicI64::new(0),
        }
    }

    /// Tokens this process has been charged so far for launches that went to the driver
    /// (ns of estimated device time).
    pub fn consumed(&self) -> i64 {
        self.grabbed.load(Ordering::Acquire)
            - self.local.load(Ordering::Acquire)
            - self.pending.load(Ordering::Acquire)
    }
}

/// The fast path: charge one launch; `true` when it may proceed at once. One atomic
/// read-modify-write on process-local memory.
#[inline(always)]
pub fn try_fast(lane: &Lane) -> bool {
    let cost = lane.cost.load(Ordering::Relaxed);
    lane.local.fetch_sub(cost, Ordering::Relaxed) >= cost
}

fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    ((a as u128 * b as u128) / c.max(1) as u128).min(i64::MAX as u128) as u64
}

/// Capacity that goes with a refill rate.
pub fn capacity_for(rate: u64) -> i64 {
    mul_div(rate, BURST_NS, 1_000_000_000).max(1) as i64
}

/// Sets the container bucket's rate and capacity (the first caller also fills it).
pub fn set_rate(dev: &DeviceExt, rate: u64) {
    dev.bucket_capacity
        .store(capacity_for(rate), Ordering::Relaxed);
    dev.refill_rate.store(rate.max(1), Ordering::Release);
}

/// Lazily refills the container bucket up to `now` (CLOCK_MONOTONIC ns). One process wins
/// each interval (CAS on `last_refill_ns`); the others see its tokens.
pub fn refill(dev: &DeviceExt, now: u64) {
    let last = dev.last_refill_ns.load(Ordering::Acquire);
    if now <= last {
        return;
    }
    if dev
        .last_refill_ns
        .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let cap = dev.bucket_capacity.load(Ordering::Relaxed).max(1);
    // The first refill ever starts from a full bucket.
    let add = if last == 0 {
        cap
    } else {
        mul_div(
            now - last,
            dev.refill_rate.load(Ordering::Relaxed),
            1_000_000_000,
        ) as i64
    };
    let _ = dev
        .tokens
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
            Some(if t >= cap {
                t
            } else {
                t.saturating_add(add).min(cap)
            })
        });
}

/// Charges (`ns > 0`) or credits (`ns < 0`) the container bucket after the fact (the
/// controller's reconciliation); a credit never fills it past its capacity.
pub fn settle(dev: &DeviceExt, ns: i64) {
    if ns >= 0 {
        dev.tokens.fetch_sub(ns, Ordering::AcqRel);
        return;
    }
    let cap = dev.bucket_capacity.load(Ordering::Relaxed).max(1);
    let _ = dev
        .tokens
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
            Some(if t >= cap {
                t
            } else {
                t.saturating_sub(ns).min(cap)
            })
        });
}

/// Re-prices a launch that is still waiting in the slow path (charged `*charged` to its
/// lane, `pending` holding it) at the lane's current cost: the watcher may have calibrated
/// the cost meanwhile (the first measurement of a new process, or the container's hint), and
/// a launch that waited behind the start-up guess must not then pay that guess. `consumed()`
/// is unchanged.
pub fn reprice(lane: &Lane, charged: &mut i64) {
    let cost = lane.cost.load(Ordering::Relaxed);
    if cost != *charged {
        lane.local.fetch_add(*charged - cost, Ordering::AcqRel);
        lane.pending.fetch_add(cost - *charged, Ordering::AcqRel);
        *charged = cost;
    }
}

/// One step of the slow path, after the launch's charge left its lane without tokens.
pub fn acquire_step(lane: &Lane, dev: &DeviceExt, now: u64) -> Step {
    refill(dev, now);
    let local = lane.local.load(Ordering::Acquire);
    if local >= 0 {
        // Another thread of this process took a chunk meanwhile.
        return Step::Go;
    }
    let rate = dev.refill_rate.load(Ordering::Relaxed).max(1);
    let chunk = mul_div(rate, CHUNK_NS, 1_000_000_000).max(1) as i64;
    let need = chunk.saturating_sub(local);
    let prev = dev.tokens.fetch_sub(need, Ordering::AcqRel);
    if prev > 0 {
        lane.local.fetch_add(need, Ordering::AcqRel);
        lane.grabbed.fetch_add(need, Ordering::AcqRel);
        return Step::Go;
    }
    dev.tokens.fetch_add(need, Ordering::AcqRel);
    // Time until the bucket is positive again at the refill rate.
    let deficit = (1 - prev) as u64;
    Step::Wait(mul_div(deficit, 1_000_000_000, rate).clamp(MIN_WAIT_NS, MAX_WAIT_NS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Box<shm_layout::Region> {
        shm_layout::Region::new_boxed()
    }

    #[test]
    fn fast_path_spends_local_tokens_and_the_container_allows_debt() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 300_000_000); // 30 %: chunk 0.3 ms, capacity 6 ms
        let lane = Lane::new(100_000); // 100 us kernels
                                       // Empty lane: the first launch goes to the slow path; the bucket starts full.
        assert!(!try_fast(&lane));
        assert_eq!(acquire_step(&lane, dev, 1_000), Step::Go);
        assert_eq!(lane.local.load(Ordering::Relaxed), 300_000);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 6_000_000 - 400_000);
        // Three more launches are covered by the lane; the fourth is not.
        assert!(try_fast(&lane) && try_fast(&lane) && try_fast(&lane));
        assert!(!try_fast(&lane));
        // Its charge stays (it proceeds after the slow path): 5 launches charged.
        assert_eq!(lane.consumed(), 500_000);
    }

    #[test]
    fn empty_bucket_waits_about_debt_over_rate_clamped() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 100_000_000); // 10 %: capacity 2 ms, chunk 0.1 ms
        let lane = Lane::new(50_000_000); // a 50 ms kernel
        let t0 = 1_000_000_000;
        assert!(!try_fast(&lane));
        assert_eq!(
            acquire_step(&lane, dev, t0),
            Step::Go,
            "full bucket: the long kernel goes"
        );
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 2_000_000 - 50_100_000);
        // The lane never lends: the next long kernel goes to the container bucket...
        assert!(!try_fast(&lane));
        // ...which is ~48 ms in debt: 481 ms at 10 %, clamped to one 5 ms sleep.
        assert_eq!(acquire_step(&lane, dev, t0 + 1), Step::Wait(MAX_WAIT_NS));
        assert!(matches!(
            acquire_step(&lane, dev, t0 + 400_000_000),
            Step::Wait(_)
        ));
        assert_eq!(acquire_step(&lane, dev, t0 + 500_000_000), Step::Go);
    }

    #[test]
    fn short_debt_sleeps_at_least_the_minimum() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 800_000_000);
        dev.last_refill_ns.store(10, Ordering::Relaxed);
        dev.tokens.store(-100, Ordering::Relaxed);
        let lane = Lane::new(1_000);
        assert!(!try_fast(&lane));
        assert_eq!(acquire_step(&lane, dev, 10), Step::Wait(MIN_WAIT_NS));
    }

    #[test]
    fn a_waiting_launch_is_repriced_at_the_calibrated_cost() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 100_000_000); // 10 %: capacity 2 ms
        dev.last_refill_ns.store(1, Ordering::Relaxed);
        dev.tokens.store(-48_000_000, Ordering::Relaxed); // another process's first launch
        let lane = Lane::new(50_000_000);
        assert!(!try_fast(&lane));
        let mut charged = lane.cost.load(Ordering::Relaxed);
        lane.pending.fetch_add(charged, Ordering::Relaxed);
        assert!(matches!(acquire_step(&lane, dev, 1), Step::Wait(_)));
        assert_eq!(lane.consumed(), 0);
        // The watcher calibrates (or takes the container's hint): 100 us per launch.
        lane.cost.store(100_000, Ordering::Relaxed);
        dev.tokens.store(1_000_000, Ordering::Relaxed);
        reprice(&lane, &mut charged);
        assert_eq!(charged, 100_000);
        assert_eq!(lane.consumed(), 0, "still not launched");
        assert_eq!(acquire_step(&lane, dev, 1), Step::Go);
        lane.pending.fetch_sub(charged, Ordering::Relaxed);
        // It paid 100 us (plus the chunk it keeps), not the 50 ms guess.
        assert_eq!(lane.consumed(), 100_000);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 1_000_000 - 200_000);
    }

    #[test]
    fn credits_never_overfill() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 500_000_000); // capacity 10 ms
        dev.tokens.store(-3_000_000, Ordering::Relaxed);
        settle(dev, 2_000_000);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), -5_000_000);
        settle(dev, -100_000_000);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 10_000_000);
    }

    #[test]
    fn refill_is_capped_and_lazy() {
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 500_000_000); // capacity 10 ms
        refill(dev, 5);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 10_000_000);
        dev.tokens.store(-4_000_000, Ordering::Relaxed);
        refill(dev, 5 + 4_000_000); // 4 ms at 50 % = 2 ms
        assert_eq!(dev.tokens.load(Ordering::Relaxed), -2_000_000);
        refill(dev, 5 + 10_000_000_000); // a long idle spell: capped
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 10_000_000);
        // The clock going backwards changes nothing.
        refill(dev, 3);
        assert_eq!(dev.tokens.load(Ordering::Relaxed), 10_000_000);
    }

    #[test]
    fn long_run_spending_matches_the_rate() {
        // A launch loop of 100 us kernels at 25 % for 2 simulated seconds.
        let region = device();
        let dev = &region.ext.devices[0];
        set_rate(dev, 250_000_000);
        let lane = Lane::new(100_000);
        let mut now = 1_000u64;
        let mut launches = 0u64;
        while now < 2_000_000_000 {
            if try_fast(&lane) {
                launches += 1;
                now += 1_000;
                continue;
            }
            loop {
                match acquire_step(&lane, dev, now) {
                    Step::Go => break,
                    Step::Wait(d) => now += d,
                }
            }
            launches += 1;
            now += 1_000;
        }
        let share = launches as f64 * 100_000.0 / 2e9;
        assert!((share - 0.25).abs() < 0.015, "share {share}");
    }
}
