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
//! processes of the machine creating contexts at the same moment): left unknown, logged
//! once; the context is then measured by `getpid()` and not found.

use std::collections::HashMap;

use hip_headers::prelude::*;

use super::rocm;

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
    if let Some(pid) = crate::core::hostpid::discover_cheaply() {
        sr.set_host_pid(pid);
        return None;
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

/// Called once the context exists: records the host pid when the signature names one pid.
pub fn after_context(before: Option<BeforeContext>) {
    let Some(BeforeContext(before)) = before else {
        return;
    };
    let Some(sr) = crate::core::shared_region::SharedRegion::get() else {
        return;
    };
    let Some(after) = process_vram() else {
        return;
    };
    match candidates(&before, &after, &sr.host_pids_of_others())[..] {
        [pid] => {
            sr.set_host_pid(pid);
            crate::vlog!(
                crate::log::DEBUG,
                "host pid {pid} (pid {} here), from the HIP context's creation",
                std::process::id()
            );
        }
        ref several => crate::vlog!(
            crate::log::INFO,
            "cannot tell this process's host pid from its HIP context's creation \
             (candidates {several:?}): its context is not counted and the SMI views of the \
             container miss it"
        ),
    }
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
