//! Host PID discovery. NVML reports processes by their pid in the *host's* pid namespace;
//! inside a container `getpid()` is another number. Without the host pid, the process's
//! own NVML figures (context and module memory, utilization) cannot be found.
//!
//! Method (a signature, not a guess): with a context current, list NVML's processes,
//! allocate a probe of an unusual size S (a multiple of 2 MiB, so the driver's figure moves
//! by exactly S), list again, free, list again. Our host pid is the one pid whose usage
//! rose by exactly S and then fell by exactly S. A concurrent process of another container
//! would have to allocate and free exactly S in the same microseconds to confuse it; then
//! the candidates are ambiguous and the probe is repeated with another S. Timing-based
//! methods ("the pid that appeared after our cuInit") race with every container starting
//! at the same moment; this one does not.
//!
//! The probe is charged to the ledger like any allocation, so it can never pass the cap.
//! Failure is reported loudly; memory caps never depend on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use cuda_headers::bindings::*;

use crate::ledger::AllocKind;
use crate::runtime::rt;

/// 0 = not discovered yet; u32::MAX = discovery failed (do not retry every call).
static HOST_PID: AtomicU32 = AtomicU32::new(0);
const FAILED: u32 = u32::MAX;
const ATTEMPTS: u32 = 4;
const PROBE_UNIT: u64 = 2 << 20;

/// The host pid, if known.
pub fn host_pid() -> Option<u32> {
    match HOST_PID.load(Ordering::Acquire) {
        0 | FAILED => None,
        p => Some(p),
    }
}

/// Pids whose usage moved by exactly `delta` between two snapshots.
pub fn moved_by(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>, delta: i64) -> Vec<u32> {
    let mut v: Vec<u32> = after
        .iter()
        .filter(|(pid, used)| {
            let was = before.get(pid).copied().unwrap_or(0) as i64;
            **used as i64 - was == delta
        })
        .map(|(pid, _)| *pid)
        .collect();
    if delta < 0 {
        // A pid that vanished entirely had all of its usage freed.
        v.extend(
            before
                .iter()
                .filter(|(pid, used)| !after.contains_key(pid) && -(**used as i64) == delta)
                .map(|(pid, _)| *pid),
        );
    }
    v.sort_unstable();
    v
}

/// Discovers the host pid with the current context on CUDA ordinal `ordinal` (container
/// device `device`), once per process. Returns it, or `None` when it cannot be had.
pub fn discover(ordinal: CUdevice, device: usize) -> Option<u32> {
    match HOST_PID.load(Ordering::Acquire) {
        0 => {}
        FAILED => return None,
        p => return Some(p),
    }
    let rt = rt();
    let nvml = rt.nvml()?;
    let index = rt.nvml_index(ordinal)?;
    let alloc = crate::driver::real::cuMemAlloc_v2()?;
    let free = crate::driver::real::cuMemFree_v2()?;
    let me = std::process::id();
    for attempt in 0..ATTEMPTS {
        let size = PROBE_UNIT * (1 + u64::from((me.wrapping_add(attempt * 7)) % 7));
        let Ok(reservation) = rt.ledger.reserve(device, size, AllocKind::Data) else {
            break;
        };
        let Some(before) = nvml.process_usage(index) else {
            break;
        };
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: a plain allocation in the caller's current context, freed below.
        if unsafe { alloc(&mut ptr, size as usize) } != CUDA_SUCCESS {
            drop(reservation);
            break;
        }
        let during = nvml.process_usage(index);
        // SAFETY: freeing the probe.
        unsafe { free(ptr) };
        drop(reservation);
        let after = nvml.process_usage(index);
        let (Some(during), Some(after)) = (during, after) else {
            break;
        };
        let up = moved_by(&before, &during, size as i64);
        let down = moved_by(&during, &after, -(size as i64));
        let both: Vec<u32> = up.into_iter().filter(|p| down.contains(p)).collect();
        if let [pid] = both[..] {
            HOST_PID.store(pid, Ordering::Release);
            crate::vlog!(
                crate::log::DEBUG,
                "host pid {pid} (pid {me} here), found with a {size}-byte probe"
            );
            return Some(pid);
        }
    }
    HOST_PID.store(FAILED, Ordering::Release);
    crate::log::write_line(format_args!(
        "cannot determine this process's host pid through NVML: context and module memory \
         cannot be measured, and NVML process lists inside the container will miss this \
         process (memory caps are enforced regardless)"
    ));
    None
}

/// In a `fork` child: a new process, a new host pid.
pub fn forget_after_fork() {
    HOST_PID.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(u32, u64)]) -> HashMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn the_pid_that_moved_by_exactly_the_probe() {
        let before = map(&[(10, 100), (20, 300)]);
        let during = map(&[(10, 100 + 6), (20, 300 + 4), (30, 6)]);
        assert_eq!(moved_by(&before, &during, 6), vec![10, 30]);
        let after = map(&[(10, 100), (20, 304)]);
        assert_eq!(moved_by(&during, &after, -6), vec![10, 30]);
        assert_eq!(moved_by(&before, &during, 5), Vec::<u32>::new());
    }
}
