//! Clocks. Everything machine-wide uses CLOCK_MONOTONIC nanoseconds (shared by all processes
//! of the machine, containers included); NVML timestamps use CLOCK_REALTIME microseconds.

fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds.
#[inline]
pub fn mono_ns() -> u64 {
    now(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds.
pub fn real_ns() -> u64 {
    now(libc::CLOCK_REALTIME)
}

/// Sleeps (never spins) until CLOCK_MONOTONIC reaches `deadline_ns`.
pub fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        if mono_ns() >= deadline_ns {
            return;
        }
        // SAFETY: valid timespec; absolute sleep restarts cleanly after EINTR.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 && rc != libc::EINTR {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_deadline() {
        let t0 = mono_ns();
        sleep_until(t0 + 2_000_000);
        let t1 = mono_ns();
        assert!(t1 >= t0 + 2_000_000);
        sleep_until(t0); // past deadline returns at once
        assert!(real_ns() > 1_600_000_000_000_000_000);
    }
}
