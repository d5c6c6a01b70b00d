//! The host pid of a HIP process, which ROCm SMI and AMD SMI name processes by (the KFD
//! reports pids of the machine's pid namespace, inside containers too).
//!
//! procfs first (`crate::core::hostpid::discover_cheaply`: the initial pid namespace, or a child
//! one whose `/proc` is the machine's). Inside a container with its own `/proc` the HIP
//! runtime's context is the signature, as on the CUDA side without NVML's probe: ROCm SMI's
//! process list just before the runtime creates the context and just after; the pids whose
//! VRAM rose (or that appeared), less the host pids the container's other processes have
//! claimed in the region, are the candidates. One: it is ours, recorded in the region (what
//! the SMI views filter by, what `vgpuctl inspect` and HAMi's monitor read). Several (two
//! processes of the machine creating contexts at the same moment): a probe, as the CUDA
//! side's last resort, when the slice has room for it: an allocation of an unusual size S
//! (a multiple of 2 MiB) through the real `hipMalloc`, reserved in the ledger like any
//! allocation, freed at once; ours is the one pid whose VRAM rose by exactly S and fell
//! back by S. Still ambiguous (or no room): left unknown, logged; the context is then
//! measured by `getpid()` and not found.
//!
//! Debug builds: `VGPU_DEBUG_HOSTPID=probe` skips procfs and the signature,
//! `=signature` skips procfs, `=unknown` learns nothing (as on the CUDA side).

use std::collections::HashMap;

use hip_headers::prelude::*;

use crate::amd_smi::rocm;
use crate::ledger::AllocKind;

/// The debug builds' forced discovery method (`VGPU_DEBUG_HOSTPID`); release builds only
/// ever use `No`, so the others are unconstructed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(debug_assertions), allow(dead_code))]
enum Forced {
    No,
    Signature,
    Probe,
    Unknown,
}

#[cfg(debug_assertions)]
fn forced() -> Forced {
    static FORCED: std::sync::OnceLock<Forced> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("VGPU_DEBUG_HOSTPID").as_deref() {
        Ok("probe") => Forced::Probe,
        Ok("signature") => Forced::Signature,
        Ok("unknown") => Forced::Unknown,
        _ => Forced::No,
    })
}

#[cfg(not(debug_assertions))]
#[inline(always)]
fn forced() -> Forced {
    Forced::No
}

const PROBE_UNIT: u64 = 2 << 20;

/// ROCm SMI's KFD process list: pid -> VRAM bytes. `None` when ROCm SMI cannot tell.
fn process_vram() -> Option<HashMap<u32, u64>> {
    static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ready = *INIT.get_or_init(|| {
        // SAFETY: plain call with flags 0 (reference-counted by ROCm SMI).
        rocm::real::rsmi_init().is_some_and(|f| unsafe { f(0) } == 0)
    });
    let list = rocm::real::rsmi_compute_process_info_get().filter(|_| ready)?;
    let mut procs = vec![rsmi_process_info_t::default(); 64];
    for _ in 0..4 {
        let mut n = procs.len() as u32;
        // SAFETY: a buffer of `n` entries.
        let rc = unsafe { list(procs.as_mut_ptr(), &mut n) };
        if rc == RSMI_STATUS_INSUFFICIENT_SIZE || (rc == 0 && n as usize > procs.len()) {
            procs = vec![rsmi_process_info_t::default(); procs.len() * 4];
            continue;
        }
        if rc != 0 {
            return None;
        }
        procs.truncate(n as usize);
        return Some(procs.iter().map(|p| (p.process_id, p.vram_usage)).collect());
    }
    None
}

/// The processes' VRAM just before this process's context is created, when the host pid
/// must be learnt from it.
pub struct BeforeContext(HashMap<u32, u64>);

/// Called before the HIP runtime creates a context: `None` when the host pid is known
/// already (or learnt from procfs now, and recorded).
pub fn before_context() -> Option<BeforeContext> {
    let sr = crate::core::shared_region::SharedRegion::get()?;
    let slot = sr.slot()?;
    if sr.region().v1.procs[slot]
        .hostpid
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        return None;
    }
    match forced() {
        Forced::Unknown => return None,
        Forced::No => {
            if let Some(pid) = crate::core::hostpid::discover_cheaply() {
                sr.set_host_pid(pid);
                return None;
            }
        }
        Forced::Signature | Forced::Probe => {}
    }
    process_vram().map(BeforeContext)
}

/// The candidates: pids that appeared or whose VRAM rose, less those others claim.
pub fn candidates(
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
    claimed: &[u32],
) -> Vec<u32> {
    let mut v: Vec<u32> = after
        .iter()
        .filter(|(pid, &used)| used > before.get(pid).copied().unwrap_or(0))
        .map(|(&pid, _)| pid)
        .filter(|pid| !claimed.contains(pid))
        .collect();
    v.sort_unstable();
    v
}

/// Called once the context on container device `device` (current on this thread) exists:
/// records the host pid when the signature names one pid, else when a probe does.
pub fn after_context(before: Option<BeforeContext>, device: usize) {
    let Some(BeforeContext(before)) = before else {
        return;
    };
    let Some(sr) = crate::core::shared_region::SharedRegion::get() else {
        return;
    };
    let Some(after) = process_vram() else {
        return;
    };
    let claimed = sr.host_pids_of_others();
    let found = match candidates(&before, &after, &claimed)[..] {
        [pid] if forced() != Forced::Probe => Some((pid, "from the HIP context's creation")),
        ref several => {
            crate::vlog!(
                crate::log::DEBUG,
                "HIP context's creation: host pid candidates {several:?}; probing"
            );
            probe(device, &claimed).map(|pid| (pid, "found with a probe allocation"))
        }
    };
    match found {
        Some((pid, how)) => {
            sr.set_host_pid(pid);
            crate::vlog!(
                crate::log::DEBUG,
                "host pid {pid} (pid {} here), {how}",
                std::process::id()
            );
        }
        None => crate::vlog!(
            crate::log::INFO,
            "cannot tell this process's host pid from its HIP context's creation nor a \
             probe: its context is charged a conservative figure and the SMI views of the \
             container miss it"
        ),
    }
}

/// The probe (see the module docs) on the current device, `device` in the ledger.
fn probe(device: usize, claimed: &[u32]) -> Option<u32> {
    let alloc = super::real::hipMalloc()?;
    let free = super::real::hipFree()?;
    let ledger = &crate::core::runtime::rt().ledger;
    let me = std::process::id();
    for attempt in 0..4u32 {
        let size = PROBE_UNIT * (1 + u64::from(me.wrapping_add(attempt * 7) % 7));
        // Reserved like any allocation: the probe never takes the card past the slice.
        let Ok(reservation) = ledger.reserve(device, size, AllocKind::Data) else {
            crate::vlog!(
                crate::log::DEBUG,
                "no room for a {size}-byte host pid probe"
            );
            return None;
        };
        let before = process_vram()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: a plain allocation on the current device, freed below.
        if unsafe { alloc(&mut ptr, size as usize) } != hipSuccess {
            return None;
        }
        let during = process_vram();
        // SAFETY: freeing the probe (before its reservation is given back).
        unsafe { free(ptr) };
        drop(reservation);
        let (during, after) = (during?, process_vram()?);
        let up = crate::core::hostpid::moved_by(&before, &during, size as i64);
        let down = crate::core::hostpid::moved_by(&during, &after, -(size as i64));
        let both: Vec<u32> = up
            .into_iter()
            .filter(|p| down.contains(p) && !claimed.contains(p))
            .collect();
        if let [pid] = both[..] {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn the_pid_whose_vram_rose_and_that_no_one_claims_is_ours() {
        let before: HashMap<u32, u64> = [(10, 100), (11, 50)].into();
        let after: HashMap<u32, u64> = [(10, 100), (11, 80), (12, 64), (13, 64)].into();
        assert_eq!(super::candidates(&before, &after, &[]), vec![11, 12, 13]);
        assert_eq!(super::candidates(&before, &after, &[11, 13]), vec![12]);
        assert!(super::candidates(&before, &before, &[]).is_empty());
    }
}
