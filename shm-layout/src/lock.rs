//! The region's robust, process-shared lock (SPEC §5.1) as the crates that take it (libvgpu,
//! vgpuctl) need it: initialised once by the creator, taken with a timeout, and repaired
//! when its holder died holding it. Behind the `lock` feature: the layout itself has no FFI.

use core::sync::atomic::Ordering;
use std::time::Duration;

use crate::{ext_flags, Region};

/// Holds the region's lock; dropping it gives it back.
pub struct RegionLock<'a> {
    region: &'a Region,
    repaired: bool,
}

impl RegionLock<'_> {
    /// Whether the previous holder died holding the lock: the state was marked consistent
    /// again and an audit of the totals requested (the caller may say so).
    pub fn repaired(&self) -> bool {
        self.repaired
    }
}

impl Drop for RegionLock<'_> {
    fn drop(&mut self) {
        let h = &self.region.ext.header;
        h.lock_holder_pid.store(0, Ordering::Relaxed);
        // SAFETY: we hold the mutex (a `RegionLock` exists only after it was taken).
        unsafe { libc::pthread_mutex_unlock(h.lock.as_mut_ptr().cast()) };
    }
}

impl Region {
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.ext.header.lock.as_mut_ptr().cast()
    }

    /// Initialises the lock: process-shared and robust. Only for the process creating the
    /// region, before it is published (nobody can use the lock yet).
    pub fn init_lock(&self) {
        let m = self.mutex();
        // SAFETY: the lock area is 64 bytes (>= sizeof pthread_mutex_t), aligned, and nobody
        // uses it yet (the region is not published).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
    }

    /// Takes the lock, waiting at most `timeout`; `None` when it could not be had. A holder
    /// that died leaves `EOWNERDEAD`: the lock is made consistent, an audit requested and
    /// a freeze left by a dead auditor cleared (SPEC §5.1's repair).
    pub fn lock_timed(&self, timeout: Duration) -> Option<RegionLock<'_>> {
        let m = self.mutex();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer; the mutex lives in the region, initialised by its
        // creator before the region was published.
        let rc = unsafe {
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
            let total = ts.tv_nsec as u64 + timeout.as_nanos() as u64;
            ts.tv_sec += (total / 1_000_000_000) as libc::time_t;
            ts.tv_nsec = (total % 1_000_000_000) as _;
            libc::pthread_mutex_timedlock(m, &ts)
        };
        let repaired = match rc {
            0 => false,
            libc::EOWNERDEAD => {
                // SAFETY: we own the mutex now; mark it usable again.
                unsafe { libc::pthread_mutex_consistent(m) };
                self.mark_audit_needed();
                self.ext
                    .header
                    .flags
                    .fetch_and(!ext_flags::AUDIT_FREEZE, Ordering::SeqCst);
                true
            }
            _ => return None,
        };
        self.ext
            .header
            .lock_holder_pid
            .store(std::process::id() as i32, Ordering::Relaxed);
        Some(RegionLock {
            region: self,
            repaired,
        })
    }
}
