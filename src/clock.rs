//! Clocks the library reads, in one place: CLOCK_MONOTONIC in ns (vDSO, no syscall) for
//! intervals and the region's timestamps, wall-clock time for what NVML and HAMi's monitor
//! expect (NVML samples in µs, `last_kernel_time` in seconds).

/// CLOCK_MONOTONIC, nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer (vDSO, no syscall).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Wall clock, nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    since_epoch().as_nanos() as u64
}

/// Wall clock, microseconds since the Unix epoch (NVML's sample timestamps).
pub fn unix_us() -> u64 {
    since_epoch().as_micros() as u64
}

/// Wall clock, seconds since the Unix epoch (HAMi's `last_kernel_time`).
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}
