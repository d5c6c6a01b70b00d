//! Host PID discovery. NVML reports processes by their pid in the *host's* (the initial)
//! pid namespace; inside a container `getpid()` is another number. Without the host pid,
//! the process's own NVML figures (context and module memory, utilization) cannot be found.
//!
//! Two methods, the cheap exact one first:
//!
//! 1. **procfs** (no driver call, no allocation, no headroom in the slice): a process in the
//!    initial pid namespace (`readlink /proc/self/ns/pid` is `pid:[4026531836]`, a fixed
//!    kernel constant) has `getpid()` as its host pid. A process in a child namespace whose
//!    `/proc` is the host's (pid 1 there is in the initial namespace) finds its host pid as
//!    the first `NSpid` entry of `/proc/self/status` (one pid per namespace level visible
//!    to that procfs, outermost first).
//! 2. **NVML signature probe**, only where procfs cannot tell (a container with its own
//!    `/proc`): with a context current, list NVML's processes, allocate a probe of an
//!    unusual size S (a multiple of 2 MiB, so the driver's figure moves by exactly S), list
//!    again, free, list again. Our host pid is the one pid whose usage rose by exactly S and
//!    then fell by exactly S. A concurrent process of another container would have to
//!    allocate and free exactly S in the same microseconds to confuse it; then the
//!    candidates are ambiguous and the probe is repeated with another S. The probe is
//!    reserved in the ledger like any allocation (with the margin between a new context's
//!    estimate and its conservative figure when the slice has room for it); when the slice
//!    has no room for the probe, discovery is put off (retried at the next context or
//!    module), and the caller charges its conservative figure meanwhile.
//!
//! Memory caps never depend on discovery: what cannot be measured is charged a documented
//! conservative figure (see hooks/context.rs).

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

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO` in the kernel).
pub const INIT_PID_NS_INODE: u64 = 4026531836;

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

/// The inode in a namespace link's target (`pid:[4026531836]`).
pub fn parse_ns_link(target: &str) -> Option<u64> {
    target
        .trim()
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `NSpid:` pids of a `/proc/<pid>/status` text, outermost namespace first.
pub fn parse_nspid(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The host pid from what procfs shows, when it can tell: `own_ns` is this process's pid
/// namespace inode, `procfs_ns` that of the namespace the mounted `/proc` belongs to (pid
/// 1's there; `None` when unreadable), `nspid` this process's `NSpid` list, `pid` its
/// `getpid()`.
pub fn host_pid_from_procfs(
    own_ns: Option<u64>,
    procfs_ns: Option<u64>,
    nspid: &[u32],
    pid: u32,
) -> Option<u32> {
    if own_ns == Some(INIT_PID_NS_INODE) {
        return Some(pid);
    }
    if procfs_ns == Some(INIT_PID_NS_INODE) && nspid.len() >= 2 && nspid.last() == Some(&pid) {
        return nspid.first().copied().filter(|&p| p > 0);
    }
    None
}

fn ns_of(path: &str) -> Option<u64> {
    std::fs::read_link(path)
        .ok()
        .and_then(|t| parse_ns_link(&t.to_string_lossy()))
}

/// Method 1 (see the module docs): a few small reads of `/proc`, no driver call.
pub fn from_procfs() -> Option<u32> {
    let own = ns_of("/proc/self/ns/pid");
    let me = std::process::id();
    if own == Some(INIT_PID_NS_INODE) {
        return Some(me);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let nspid = parse_nspid(&status);
    if nspid.len() < 2 {
        return None;
    }
    host_pid_from_procfs(own, ns_of("/proc/1/ns/pid"), &nspid, me)
}

fn found(pid: u32, how: std::fmt::Arguments<'_>) -> Option<u32> {
    HOST_PID.store(pid, Ordering::Release);
    crate::vlog!(
        crate::log::DEBUG,
        "host pid {pid} (pid {} here), {how}",
        std::process::id()
    );
    Some(pid)
}

/// The host pid without any driver call, if procfs tells it (cached).
pub fn discover_cheaply() -> Option<u32> {
    match HOST_PID.load(Ordering::Acquire) {
        0 | FAILED => {}
        p => return Some(p),
    }
    let pid = from_procfs()?;
    found(pid, format_args!("from procfs"))
}

/// Discovers the host pid with the current context on CUDA ordinal `ordinal` (container
/// device `device`), once per process: procfs first, else the NVML probe. Returns it, or
/// `None` when it cannot be had (now). `unaccounted`: bytes the driver may hold on the
/// device beyond what the ledger counts (a context just created, charged only its estimate
/// so far): reserved with the probe when the slice has room for them.
pub fn discover(ordinal: CUdevice, device: usize, unaccounted: u64) -> Option<u32> {
    match HOST_PID.load(Ordering::Acquire) {
        0 => {}
        FAILED => return None,
        p => return Some(p),
    }
    let forced = debug_forced_method();
    if forced == Forced::Unknown {
        return None;
    }
    if forced != Forced::Probe {
        if let Some(pid) = discover_cheaply() {
            return Some(pid);
        }
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
            // No room in the slice for the probe now: try again later (next context or
            // module); the caller charges its conservative figure meanwhile.
            crate::vlog!(
                crate::log::DEBUG,
                "no room for a {size}-byte host pid probe: put off"
            );
            return None;
        };
        // Room for what the driver may hold beyond the ledger too, when the slice has it
        // (then the probe can never push the driver past the slice); else the probe alone,
        // and the documented first-context gap (docs/MEMORY_CAP.md) covers the rest.
        let margin = rt.ledger.reserve(device, unaccounted, AllocKind::Data).ok();
        let Some(before) = nvml.process_usage(index) else {
            break;
        };
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: a plain allocation in the caller's current context, freed below.
        if unsafe { alloc(&mut ptr, size as usize) } != CUDA_SUCCESS {
            break;
        }
        let during = nvml.process_usage(index);
        // SAFETY: freeing the probe (before its reservation is given back).
        unsafe { free(ptr) };
        drop(reservation);
        drop(margin);
        let after = nvml.process_usage(index);
        let (Some(during), Some(after)) = (during, after) else {
            break;
        };
        let up = moved_by(&before, &during, size as i64);
        let down = moved_by(&during, &after, -(size as i64));
        let both: Vec<u32> = up.into_iter().filter(|p| down.contains(p)).collect();
        if let [pid] = both[..] {
            return found(pid, format_args!("found with a {size}-byte probe"));
        }
    }
    HOST_PID.store(FAILED, Ordering::Release);
    crate::log::write_line(format_args!(
        "cannot determine this process's host pid through NVML: context and module memory \
         is charged a conservative figure instead of its measured size, and NVML process \
         lists inside the container will miss this process (memory caps are enforced \
         regardless)"
    ));
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Forced {
    No,
    /// Skip procfs: the NVML probe only.
    Probe,
    /// As if no method worked.
    Unknown,
}

/// Test hook, in debug builds only (the shipped release build has no such code):
/// `VGPU_DEBUG_HOSTPID=probe` skips the procfs method, `=unknown` makes discovery fail, so
/// the tests can show the cap holds whatever discovery does. Read once.
#[cfg(debug_assertions)]
fn debug_forced_method() -> Forced {
    static FORCED: std::sync::OnceLock<Forced> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("VGPU_DEBUG_HOSTPID").as_deref() {
        Ok("probe") => Forced::Probe,
        Ok("unknown") => Forced::Unknown,
        _ => Forced::No,
    })
}

#[cfg(not(debug_assertions))]
#[inline(always)]
fn debug_forced_method() -> Forced {
    Forced::No
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

    #[test]
    fn procfs_parsing() {
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(INIT_PID_NS_INODE));
        assert_eq!(parse_ns_link("pid:[4026532571]\n"), Some(4026532571));
        assert_eq!(parse_ns_link("net:[4026531840]"), None);
        assert_eq!(parse_ns_link("pid:[x]"), None);
        let status = "Name:\tcat\nTgid:\t7\nPid:\t7\nNSpid:\t41235\t7\nNSpgid:\t1\n";
        assert_eq!(parse_nspid(status), vec![41235, 7]);
        assert_eq!(parse_nspid("Name:\tx\n"), Vec::<u32>::new());
    }

    #[test]
    fn procfs_tells_the_host_pid_only_where_it_can() {
        let child_ns = Some(4026532571);
        // The initial namespace: getpid() is the host pid.
        assert_eq!(
            host_pid_from_procfs(Some(INIT_PID_NS_INODE), None, &[5], 5),
            Some(5)
        );
        // A child namespace with the host's /proc: the outermost NSpid entry.
        assert_eq!(
            host_pid_from_procfs(child_ns, Some(INIT_PID_NS_INODE), &[41235, 7], 7),
            Some(41235)
        );
        // The container's own /proc: only its own level is visible.
        assert_eq!(host_pid_from_procfs(child_ns, child_ns, &[7], 7), None);
        // A /proc of an intermediate namespace (nested containers): not the host's.
        assert_eq!(
            host_pid_from_procfs(child_ns, Some(4026532000), &[900, 7], 7),
            None
        );
        // pid 1's namespace unreadable: cannot tell.
        assert_eq!(host_pid_from_procfs(child_ns, None, &[41235, 7], 7), None);
        // An NSpid list that is not ours.
        assert_eq!(
            host_pid_from_procfs(child_ns, Some(INIT_PID_NS_INODE), &[41235, 8], 7),
            None
        );
    }

    #[test]
    fn this_process_finds_its_host_pid_from_procfs_when_in_the_initial_namespace() {
        let own = ns_of("/proc/self/ns/pid");
        if own == Some(INIT_PID_NS_INODE) {
            assert_eq!(from_procfs(), Some(std::process::id()));
        } else {
            // In a container: whatever procfs says must be consistent with NSpid.
            let nspid = parse_nspid(&std::fs::read_to_string("/proc/self/status").unwrap());
            assert_eq!(nspid.last().copied(), Some(std::process::id()));
        }
    }
}
