//! Host PID discovery. NVML reports processes by their pid in the *host's* (the initial)
//! pid namespace; inside a container `getpid()` is another number. Without the host pid,
//! the process's own NVML figures (context and module memory, utilization) cannot be found.
//!
//! Three methods, the cheap exact one first; none needs headroom in the slice but the last:
//!
//! 1. **procfs** (no driver call, no allocation, no headroom in the slice): a process in the
//!    initial pid namespace (`readlink /proc/self/ns/pid` is `pid:[4026531836]`, a fixed
//!    kernel constant) has `getpid()` as its host pid. A process in a child namespace whose
//!    `/proc` is the host's (pid 1 there is in the initial namespace) finds its host pid as
//!    the first `NSpid` entry of `/proc/self/status` (one pid per namespace level visible
//!    to that procfs, outermost first).
//! 2. **The context's creation as the signature** ([`BeforeContext`]), where procfs cannot
//!    tell (a container with its own `/proc`): NVML's process list before and after the
//!    driver creates a context; the pids whose usage rose with it (ours always does),
//!    less those the region's other slots claim, are the candidates. One: found. Several:
//!    the context is charged the largest rise (ours is among them) and the candidates are
//!    narrowed lazily ([`retry_pending`], from the watcher thread and before the next
//!    measurement): by other slots' claims, by leaving NVML's list, and by not following
//!    this process's own allocations (known sizes, already charged).
//! 3. **NVML signature probe**, the last resort, only when the slice has room for it: with a
//!    context current, list NVML's processes, allocate a probe of an unusual size S (a
//!    multiple of 2 MiB, so the driver's figure moves by exactly S), list again, free, list
//!    again. Our host pid is the one pid whose usage rose by exactly S and then fell by
//!    exactly S; ambiguous candidates make it repeat with another S. The probe is reserved in
//!    the ledger like any allocation (with the margin between a new context's estimate and
//!    its charge when the slice has room for it); when the slice has no room for the probe
//!    it is not made (put off to the next context or module).
//!
//! Vendor-neutral: the vendor's per-pid view of a device and its way to allocate come in a
//! [`PidProbe`] (NVIDIA's: NVML's process list and `cuMemAlloc_v2`, `crate::cuda::hooks`).
//!
//! Memory caps never depend on discovery: what cannot be measured is charged a documented
//! conservative figure (see cuda/hooks/context.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::ledger::{AllocKind, CapacityPool, MemoryLedger};

/// 0 = not discovered yet; u32::MAX = discovery failed (do not retry every call).
static HOST_PID: AtomicU32 = AtomicU32::new(0);
const FAILED: u32 = u32::MAX;
const ATTEMPTS: u32 = 4;
const PROBE_UNIT: u64 = 2 << 20;

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO` in the kernel).
pub const INIT_PID_NS_INODE: u64 = 4026531836;

/// A vendor's view of one device for discovery: memory per host pid (its process list) and
/// an allocation in the calling thread's current context (the signature probe's).
#[derive(Clone, Copy)]
pub struct PidProbe {
    /// The vendor's index of the device (NVML's), handed to `usage`.
    pub index: u32,
    /// Device memory the vendor charges to each host pid on device `index`.
    pub usage: fn(u32) -> Option<HashMap<u32, u64>>,
    /// Allocates `bytes` in the calling thread's current context: a handle for `free`, or
    /// `None` when the allocation failed.
    pub alloc: fn(u64) -> Option<u64>,
    /// Frees what `alloc` returned.
    pub free: fn(u64),
}

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
    let mut buf = [0u8; 4096];
    let status = crate::core::procfs::read(c"/proc/self/status", &mut buf).ok()?;
    let nspid = parse_nspid(status);
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

/// Discovers the host pid with the current context on container device `device`, once per
/// process: procfs first, else the signature probe through `probe` (the vendor's, of the
/// current context's device; asked for only then). Returns it, or `None` when it cannot be
/// had (now). `unaccounted`: bytes the driver may hold on the device beyond what the
/// ledger counts (a context just created, charged only its estimate so far): reserved with
/// the probe when the slice has room for them.
pub fn discover<P: CapacityPool>(
    ledger: &MemoryLedger<P>,
    probe: impl FnOnce() -> Option<PidProbe>,
    device: usize,
    unaccounted: u64,
) -> Option<u32> {
    match HOST_PID.load(Ordering::Acquire) {
        0 => {}
        FAILED => return None,
        p => return Some(p),
    }
    let forced = debug_forced_method();
    if matches!(
        forced,
        Forced::Unknown | Forced::Signature | Forced::SignatureSlow
    ) {
        return None;
    }
    if forced != Forced::Probe {
        if let Some(pid) = discover_cheaply() {
            return Some(pid);
        }
    }
    let probe = probe()?;
    let me = std::process::id();
    for attempt in 0..ATTEMPTS {
        let size = PROBE_UNIT * (1 + u64::from((me.wrapping_add(attempt * 7)) % 7));
        let Ok(reservation) = ledger.reserve(device, size, AllocKind::Data) else {
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
        let margin = ledger.reserve(device, unaccounted, AllocKind::Data).ok();
        let Some(before) = (probe.usage)(probe.index) else {
            break;
        };
        let Some(handle) = (probe.alloc)(size) else {
            break;
        };
        let during = (probe.usage)(probe.index);
        // The probe is freed before its reservation is given back.
        (probe.free)(handle);
        drop(reservation);
        drop(margin);
        let after = (probe.usage)(probe.index);
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

// ---- the context-creation signature (no headroom needed) -----------------------------

/// The vendor's per-pid usage on one device just before this process created a context there.
pub struct BeforeContext {
    probe: PidProbe,
    device: usize,
    usage: HashMap<u32, u64>,
}

/// The pids that could be ours after an ambiguous creation signature, retried lazily.
struct Pending {
    probe: PidProbe,
    device: usize,
    /// (pid, NVML usage at the baseline).
    candidates: Vec<(u32, u64)>,
    /// This process's ledger data + module bytes at the baseline; `None`: take a new
    /// baseline at the next check (a module was loaded meanwhile).
    ledger_then: Option<u64>,
    /// Candidates that did not follow the ledger at the last check, and the ledger figure
    /// then: eliminated only when they miss again with the ledger unchanged (an allocation
    /// or free in flight between the ledger and the driver can make our own pid miss once).
    missed: Vec<u32>,
    missed_at: u64,
}

static PENDING: std::sync::Mutex<Option<Pending>> = std::sync::Mutex::new(None);
/// Whether [`PENDING`] holds something: the watcher's check costs one load otherwise.
static HAS_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How far our pid's NVML figure may drift from the ledger's between two checks and still
/// count as following it (the driver maps memory in pages up to 2 MiB).
const FOLLOW_TOLERANCE: u64 = 2 << 20;

/// The candidates of a creation signature: the pids whose NVML usage rose across it
/// (appearing in the list counts as rising from 0), less the pids other processes of the
/// container already claim. Ours rose (the driver took the context's memory), so it is
/// always among them. (pid, usage after, rise).
pub fn signature_candidates(
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
    claimed_by_others: &[u32],
) -> Vec<(u32, u64, u64)> {
    let mut v: Vec<(u32, u64, u64)> = after
        .iter()
        .filter(|(pid, _)| !claimed_by_others.contains(pid))
        .filter_map(|(&pid, &now)| {
            let was = before.get(&pid).copied().unwrap_or(0);
            (now > was).then(|| (pid, now, now - was))
        })
        .collect();
    v.sort_unstable();
    v
}

/// One lazy check of ambiguous candidates: keeps those whose NVML usage followed this
/// process's ledger (data + modules) since the baseline, within [`FOLLOW_TOLERANCE`]; a
/// candidate is dropped when it missed twice with the ledger at the same figure, vanished
/// from NVML's list, or another process of the container claims it.
fn narrow(p: &mut Pending, now: &HashMap<u32, u64>, ledger_now: u64, claimed_by_others: &[u32]) {
    p.candidates
        .retain(|(pid, _)| now.contains_key(pid) && !claimed_by_others.contains(pid));
    let Some(then) = p.ledger_then else {
        for c in &mut p.candidates {
            c.1 = now[&c.0];
        }
        p.ledger_then = Some(ledger_now);
        p.missed.clear();
        return;
    };
    let ours = ledger_now as i128 - then as i128;
    let missed: Vec<u32> = p
        .candidates
        .iter()
        .filter(|(pid, base)| {
            let grew = now[pid] as i128 - *base as i128;
            (grew - ours).unsigned_abs() > u128::from(FOLLOW_TOLERANCE)
        })
        .map(|(pid, _)| *pid)
        .collect();
    if p.missed_at == ledger_now && !p.missed.is_empty() {
        let twice: Vec<u32> = missed
            .iter()
            .copied()
            .filter(|m| p.missed.contains(m))
            .collect();
        p.candidates.retain(|(pid, _)| !twice.contains(pid));
    }
    p.missed = missed;
    p.missed_at = ledger_now;
}

fn ledger_data_and_modules<P: CapacityPool>(ledger: &MemoryLedger<P>, device: usize) -> u64 {
    let u = ledger.usage(device);
    u.data + u.module
}

impl BeforeContext {
    /// The vendor's process list (through `probe`, asked for only then) before a context
    /// is created on container device `device`, when the host pid is unknown and procfs
    /// cannot tell it.
    pub fn take(probe: impl FnOnce() -> Option<PidProbe>, device: usize) -> Option<Self> {
        if host_pid().is_some() {
            return None;
        }
        match debug_forced_method() {
            Forced::Unknown => return None,
            Forced::No if discover_cheaply().is_some() => return None,
            _ => {}
        }
        let probe = probe()?;
        let usage = (probe.usage)(probe.index)?;
        Some(BeforeContext {
            probe,
            device,
            usage,
        })
    }

    /// After the context exists: our host pid when one pid alone can be ours (then it is
    /// recorded, and `None` returned); else an upper bound of what the new context costs
    /// (the largest rise among the candidates, ours among them) to charge, with the
    /// candidates kept for [`retry_pending`].
    pub fn after<P: CapacityPool>(self, ledger: &MemoryLedger<P>) -> Option<u64> {
        if debug_forced_method() == Forced::SignatureSlow {
            std::thread::sleep(std::time::Duration::from_millis(1000));
        }
        let after = (self.probe.usage)(self.probe.index)?;
        let claimed = claimed_by_others();
        let c = signature_candidates(&self.usage, &after, &claimed);
        match c[..] {
            [] => None,
            [(pid, _, rise)] => {
                found(
                    pid,
                    format_args!("from its context creation (+{rise} bytes)"),
                );
                None
            }
            _ => {
                let bound = c.iter().map(|c| c.2).max();
                crate::vlog!(
                    crate::log::DEBUG,
                    "{} pids could be ours after the context creation: narrowed lazily",
                    c.len()
                );
                let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
                *pending = Some(Pending {
                    probe: self.probe,
                    device: self.device,
                    candidates: c.iter().map(|c| (c.0, c.1)).collect(),
                    ledger_then: Some(ledger_data_and_modules(ledger, self.device)),
                    missed: Vec::new(),
                    missed_at: 0,
                });
                HAS_PENDING.store(true, Ordering::Release);
                // The watcher narrows it, tick by tick.
                crate::core::shared_region::ensure_watcher();
                bound
            }
        }
    }
}

fn claimed_by_others() -> Vec<u32> {
    crate::core::shared_region::SharedRegion::get()
        .map(|r| r.host_pids_of_others())
        .unwrap_or_default()
}

/// A module is being loaded: its driver size is not what the ledger charges until
/// measured, so the pending candidates take a new baseline at their next check.
pub fn rebase_pending() {
    if HAS_PENDING.load(Ordering::Acquire) {
        if let Some(p) = PENDING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            p.ledger_then = None;
        }
    }
}

/// Narrows an ambiguous creation signature by one check (one NVML process list): from the
/// watcher thread, and before a context or module is measured. Never blocks (a check in
/// progress elsewhere is skipped); one load when nothing is pending. Returns the host pid
/// when it became known.
pub fn retry_pending<P: CapacityPool>(ledger: &MemoryLedger<P>) -> Option<u32> {
    if !HAS_PENDING.load(Ordering::Acquire) {
        return None;
    }
    let Ok(mut guard) = PENDING.try_lock() else {
        return None;
    };
    let p = guard.as_mut()?;
    if let Some(pid) = host_pid() {
        *guard = None;
        HAS_PENDING.store(false, Ordering::Release);
        return Some(pid);
    }
    let before = ledger_data_and_modules(ledger, p.device);
    let now = (p.probe.usage)(p.probe.index)?;
    if ledger_data_and_modules(ledger, p.device) != before {
        return None; // the ledger moved during the list: check again next time
    }
    narrow(p, &now, before, &claimed_by_others());
    let result = match p.candidates[..] {
        [(pid, _)] => found(
            pid,
            format_args!("narrowed lazily from its context creation"),
        ),
        [] => {
            crate::vlog!(
                crate::log::DEBUG,
                "no candidate host pid left: the next context tries again"
            );
            None
        }
        _ => return None,
    };
    *guard = None;
    HAS_PENDING.store(false, Ordering::Release);
    if let Some(pid) = result {
        if let Some(shared) = crate::core::shared_region::SharedRegion::get() {
            shared.set_host_pid(pid);
        }
    }
    result
}

#[derive(Clone, Copy, PartialEq, Eq)]
// A release build forces nothing: only `No` is constructed there.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
enum Forced {
    No,
    /// Skip procfs: the NVML probe only.
    Probe,
    /// As if no method worked.
    Unknown,
    /// The context-creation signature only (no procfs, no probe).
    Signature,
    /// As `Signature`, with 1 s between the creation and the list after it, so that the
    /// signatures of processes starting together overlap (the ambiguous case).
    SignatureSlow,
}

/// Test hook, in debug builds only (the shipped release build has no such code):
/// `VGPU_DEBUG_HOSTPID=probe` skips the procfs method, `=signature` skips procfs and the
/// probe (the context-creation signature alone; `=signature-slow` also waits 1 s between
/// the creation and the list after it), `=unknown` makes discovery fail, so the
/// tests can show each method works and the cap holds whatever discovery does. Read once.
#[cfg(debug_assertions)]
fn debug_forced_method() -> Forced {
    static FORCED: std::sync::OnceLock<Forced> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("VGPU_DEBUG_HOSTPID").as_deref() {
        Ok("probe") => Forced::Probe,
        Ok("unknown") => Forced::Unknown,
        Ok("signature") => Forced::Signature,
        Ok("signature-slow") => Forced::SignatureSlow,
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
    HAS_PENDING.store(false, Ordering::Relaxed);
    if let Ok(mut p) = PENDING.try_lock() {
        *p = None;
    }
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
    fn a_context_creation_signature_names_the_pids_that_appeared() {
        let before = map(&[(10, 500), (20, 300)]);
        let after = map(&[(10, 500), (20, 364), (30, 256), (40, 256)]);
        // Pids that appeared or rose, less those other slots claim.
        assert_eq!(
            signature_candidates(&before, &after, &[]),
            vec![(20, 364, 64), (30, 256, 256), (40, 256, 256)]
        );
        assert_eq!(
            signature_candidates(&before, &after, &[20, 40]),
            vec![(30, 256, 256)]
        );
        // Nothing moved, or only down: no candidate.
        assert_eq!(signature_candidates(&before, &before, &[]), vec![]);
        let fell = map(&[(10, 400)]);
        assert_eq!(signature_candidates(&before, &fell, &[]), vec![]);
    }

    fn pending(candidates: &[(u32, u64)], ledger: u64) -> Pending {
        Pending {
            probe: PidProbe {
                index: 0,
                usage: |_| None,
                alloc: |_| None,
                free: |_| {},
            },
            device: 0,
            candidates: candidates.to_vec(),
            ledger_then: Some(ledger),
            missed: Vec::new(),
            missed_at: 0,
        }
    }

    #[test]
    fn ambiguous_candidates_are_narrowed_by_our_own_allocations() {
        const M: u64 = 1 << 20;
        let mut p = pending(&[(30, 256 * M), (40, 256 * M)], 0);
        // Nobody allocated: nothing can be told apart.
        narrow(&mut p, &map(&[(30, 256 * M), (40, 256 * M)]), 0, &[]);
        assert_eq!(p.candidates.len(), 2);
        // We allocated 8 MiB and pid 40 followed: 30 missed once — kept (an allocation in
        // flight between the ledger and the driver can make our own pid miss once) ...
        let now = map(&[(30, 256 * M), (40, 264 * M)]);
        narrow(&mut p, &now, 8 * M, &[]);
        assert_eq!(p.candidates.len(), 2);
        // ... and dropped when it misses again with the ledger unchanged.
        narrow(&mut p, &now, 8 * M, &[]);
        assert_eq!(p.candidates, vec![(40, 256 * M)]);
    }

    #[test]
    fn a_miss_while_the_ledger_moves_is_not_an_elimination() {
        const M: u64 = 1 << 20;
        let mut p = pending(&[(30, 256 * M), (40, 256 * M)], 0);
        narrow(&mut p, &map(&[(30, 256 * M), (40, 256 * M)]), 8 * M, &[]);
        // The driver caught up: our pid (40) now follows; 30 missed at another figure.
        narrow(&mut p, &map(&[(30, 256 * M), (40, 272 * M)]), 16 * M, &[]);
        assert_eq!(p.candidates.len(), 2);
        narrow(&mut p, &map(&[(30, 256 * M), (40, 272 * M)]), 16 * M, &[]);
        assert_eq!(p.candidates, vec![(40, 256 * M)]);
        // Within the page tolerance a candidate still follows.
        let mut p = pending(&[(30, 256 * M)], 0);
        for _ in 0..2 {
            narrow(&mut p, &map(&[(30, 258 * M)]), M, &[]);
        }
        assert_eq!(p.candidates.len(), 1);
    }

    #[test]
    fn claimed_vanished_and_rebased_candidates() {
        const M: u64 = 1 << 20;
        let mut p = pending(&[(30, 256 * M), (40, 256 * M), (50, 256 * M)], 0);
        // 50 exited (gone from NVML's list), 30 is claimed by another slot.
        narrow(&mut p, &map(&[(30, 256 * M), (40, 256 * M)]), 0, &[30]);
        assert_eq!(p.candidates, vec![(40, 256 * M)]);
        // A module was loaded: a new baseline, no elimination at that check.
        let mut p = pending(&[(30, 256 * M), (40, 256 * M)], 0);
        p.ledger_then = None;
        narrow(&mut p, &map(&[(30, 300 * M), (40, 258 * M)]), 2 * M, &[]);
        assert_eq!(p.candidates, vec![(30, 300 * M), (40, 258 * M)]);
        assert_eq!(p.ledger_then, Some(2 * M));
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
