//! The cross-process memory ledger and slot lifecycle, as pure atomic operations on the
//! region (SPEC.md §5). Nothing here blocks or makes a syscall: liveness checks (`/proc`),
//! clocks and the robust mutex are the caller's.
//!
//! Invariant, for every device `d`, whenever no slot is between the two halves of an
//! operation (every live slot's seqlock and `op_seq` even):
//! `devices[d].reserved_bytes == Σ slots[i].reserved[d]` over slots in CLAIMING/ACTIVE/EXITING,
//! and `reserved_bytes <= limit_bytes` when `limit_bytes != 0`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::ext::{ext_flags, slot_state};
use crate::{LayoutError, Region, SlotExt, MAX_DEVICES, MAX_PROCS, SLOT_STATUS_ACTIVE};

/// Why [`Region::try_reserve`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// `reserved + requested` would pass the device's `limit_bytes` (or overflow u64).
    OverLimit {
        limit: u64,
        reserved: u64,
        requested: u64,
    },
    /// Device or slot index out of range.
    BadIndex,
}

/// An audit could not run to completion: some live slot was mid-operation, or the totals
/// moved. Retry later (the reaper's next pass); nothing was left inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditBusy;

/// What [`Region::reclaim_slot`] returned to the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Bytes subtracted from each device's `reserved_bytes`.
    pub returned: [u64; MAX_DEVICES],
    /// The owner died between the two halves of an operation: the totals are corrected by
    /// the next successful [`Region::audit_totals`] instead (`AUDIT_NEEDED` is set).
    pub audit_needed: bool,
}

/// Which claimed slots a reaper may judge ([`Region::reap_gone`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReapScope {
    /// The reaper's pid namespace (inode of `/proc/self/ns/pid`), 0 = unknown. A slot claimed
    /// in another namespace is never judged: its pid means nothing to this reaper.
    pub pid_ns: u64,
    /// Whether slots that do not record their namespace (claimed before ext minor 1.5), or
    /// a reaper that does not know its own, are judged: yes for a process of the container
    /// (all of a region's users share one pid namespace), no for a tool that may run on the
    /// host (`vgpuctl inspect`).
    pub unknown_ns: bool,
    /// Only slots marked EXITING (the cheap pass).
    pub only_exiting: bool,
}

/// The fields of `/proc/<pid>/stat` that slot liveness needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; field 22 is 19 further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Whether the process recorded in a slot (`start_time`) is still the one running as its
/// pid, given the content of `/proc/<pid>/stat`. A zombie is dead: it holds no GPU memory
/// and its robust futexes are already released.
///
/// Pass `None` only when the process provably does not exist (`ENOENT`/`ESRCH`). When the
/// file cannot be read for another reason (`EACCES` under `hidepid=`), treat the owner as
/// alive (e.g. confirm with `kill(pid, 0)`: `EPERM` means it exists): reclaiming a live
/// process's slot would let the container exceed its cap.
pub fn owner_is_alive(slot_start_time: u64, proc_stat: Option<&str>) -> bool {
    match proc_stat.and_then(parse_proc_stat) {
        Some(stat) => stat.state != 'Z' && stat.state != 'X' && stat.start_time == slot_start_time,
        None => false,
    }
}

/// A slot claim token: the claimer's pid in the high 32 bits (so a CLAIMING slot can be
/// checked for liveness before `pid` is written) and a per-claim nonce, forced odd so the
/// token is never 0.
pub fn owner_token(pid: i32, nonce: u32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(nonce | 1)
}

/// `fetch_max` only when `value` is a new peak: the usual case (below the peak) is a plain
/// load instead of a locked read-modify-write on every reservation.
fn raise_peak(peak: &AtomicU64, value: u64) {
    if value > peak.load(Ordering::Relaxed) {
        peak.fetch_max(value, Ordering::Relaxed);
    }
}

fn saturating_sub_atomic(word: &AtomicU64, amount: u64) -> u64 {
    match word.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(amount))
    }) {
        Ok(prev) | Err(prev) => prev.min(amount),
    }
}

/// Spins a ledger operation waits at most for an audit freeze before going ahead anyway
/// (the audit then sees the operation and reports busy): a dead auditor can never block.
const FREEZE_WAIT_SPINS: u32 = 256;
/// Yields after the spins.
const FREEZE_WAIT_YIELDS: u32 = 64;
/// How long an auditor waits for one live slot to finish its operation.
const AUDIT_QUIESCE_SPINS: u32 = 4096;

fn frozen(region: &Region) -> bool {
    region.ext.header.flags.load(Ordering::SeqCst) & ext_flags::AUDIT_FREEZE != 0
}

fn backoff(round: u32) {
    if round < FREEZE_WAIT_SPINS {
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Marks the start of a ledger operation: takes the slot's seqlock (odd), the one locked
/// update per operation that also makes the slot's own counts the operation's alone (only
/// the owner's threads write them, and they take the seqlock in turn).
///
/// SeqCst pairs with the auditor's `AUDIT_FREEZE` store and seqlock loads (Dekker): either
/// this operation sees the freeze and steps back (seqlock even again), or the auditor sees
/// the odd seqlock and waits for it. The wait is bounded, so a frozen flag left by a dead
/// auditor only slows. (Before protocol 2 the mark was an odd `op_seq`; auditors and the
/// reaper still honour that too.)
fn op_begin(region: &Region, slot: usize) -> u64 {
    let v1 = &region.v1.procs[slot];
    let odd = v1.seq_write_begin();
    if !frozen(region) {
        return odd;
    }
    v1.seq_write_end(odd);
    let mut round = 0;
    while frozen(region) && round < FREEZE_WAIT_SPINS + FREEZE_WAIT_YIELDS {
        backoff(round);
        round += 1;
    }
    v1.seq_write_begin()
}

fn op_end(region: &Region, slot: usize, odd: u64) {
    region.v1.procs[slot].seq_write_end(odd);
}

/// Whether slot `index`'s owner is between the two halves of an operation (its seqlock, or
/// a pre-protocol-2 writer's `op_seq`, is odd).
fn mid_operation(region: &Region, index: usize) -> bool {
    region.v1.procs[index].seqlock.load(Ordering::SeqCst) & 1 == 1
        || region.ext.slots[index].op_seq.load(Ordering::SeqCst) & 1 == 1
}

/// What an auditor compares before and after reading a slot: both marks.
fn op_marks(region: &Region, index: usize) -> (u64, u64) {
    (
        region.v1.procs[index].seqlock.load(Ordering::SeqCst),
        region.ext.slots[index].op_seq.load(Ordering::SeqCst),
    )
}

/// Takes `bytes` off a container total that includes them (the slot held them): one
/// `fetch_sub`, no CAS loop. Should the total ever be below them (an audit raced a
/// reaper), it is put back to 0 by what the subtraction passed: until then it reads huge
/// and reservations are refused, the safe side.
fn sub_total(total: &AtomicU64, bytes: u64) {
    let prev = total.fetch_sub(bytes, Ordering::SeqCst);
    if prev < bytes {
        total.fetch_add(bytes - prev, Ordering::SeqCst);
    }
}

/// Adds to a count only its owner writes, inside the owner's seqlock: a plain
/// load and store, no locked read-modify-write.
fn owner_add(word: &AtomicU64, bytes: u64) {
    word.store(
        word.load(Ordering::Relaxed).saturating_add(bytes),
        Ordering::Release,
    );
}

/// Subtracts up to `bytes` from an owner-only count (see [`owner_add`]); returns what was
/// subtracted.
fn owner_sub(word: &AtomicU64, bytes: u64) -> u64 {
    let cur = word.load(Ordering::Relaxed);
    let taken = cur.min(bytes);
    word.store(cur - taken, Ordering::Release);
    taken
}

impl Region {
    /// Charges `bytes` on device `dev` to slot `slot` before the real allocation: a CAS on
    /// the container total against `limit_bytes`, then the slot's own count. Two processes
    /// racing for the last bytes cannot both win. Returns the new container total.
    ///
    /// Lock-free across processes (the slot's seqlock orders only the owner's own threads);
    /// only the slot's owner calls it. On allocation failure, undo with [`Region::release`].
    pub fn try_reserve(&self, slot: usize, dev: usize, bytes: u64) -> Result<u64, ReserveError> {
        self.try_reserve_with_usage(slot, dev, bytes, None)
    }

    /// [`Region::try_reserve`] and, in the same bracket, `used[dev]`'s `kind` part raised by
    /// `bytes` (what the node monitor reads): an allocation costs one bracket, not two. The
    /// slot's `used` and `reserved` then move together, so the monitor's figure for the
    /// process includes a reservation whose driver call is in flight, exactly as the
    /// container total does; a refused call takes both back in one bracket
    /// ([`Region::release_with_usage`]).
    pub fn try_reserve_with_usage(
        &self,
        slot: usize,
        dev: usize,
        bytes: u64,
        kind: Option<crate::MemoryKind>,
    ) -> Result<u64, ReserveError> {
        let (Some(owner), Some(device)) = (self.ext.slots.get(slot), self.ext.devices.get(dev))
        else {
            return Err(ReserveError::BadIndex);
        };
        let odd = op_begin(self, slot);
        let limit = device.limit_bytes.load(Ordering::Acquire);
        let result =
            device
                .reserved_bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |total| {
                    let next = total.checked_add(bytes)?;
                    (limit == 0 || next <= limit).then_some(next)
                });
        let outcome = match result {
            Ok(prev) => {
                owner_add(&owner.reserved[dev], bytes);
                if let Some(kind) = kind {
                    let delta = i64::try_from(bytes).unwrap_or(i64::MAX);
                    self.v1.procs[slot].adjust_usage_locked(dev, kind, delta);
                }
                // No peak yet: the driver may still refuse the allocation (see note_peak).
                Ok(prev + bytes)
            }
            Err(reserved) => {
                device.reserve_failures.fetch_add(1, Ordering::Relaxed);
                Err(ReserveError::OverLimit {
                    limit,
                    reserved,
                    requested: bytes,
                })
            }
        };
        op_end(self, slot, odd);
        outcome
    }

    /// Raises device `dev`'s high-water mark to the current total. Called once the driver has
    /// granted what was reserved, so a reservation the driver refused never counts as a peak.
    pub fn note_peak(&self, dev: usize) {
        if let Some(device) = self.ext.devices.get(dev) {
            let now = device.reserved_bytes.load(Ordering::Acquire);
            raise_peak(&device.peak_reserved_bytes, now);
        }
    }

    /// Charges `bytes` without checking the limit: for memory the driver has already taken
    /// (a refused free restored, overhead measured after the fact). Same two halves and
    /// bracketing as [`Region::try_reserve`]. Returns false on a bad index.
    pub fn force_reserve(&self, slot: usize, dev: usize, bytes: u64) -> bool {
        let (Some(owner), Some(device)) = (self.ext.slots.get(slot), self.ext.devices.get(dev))
        else {
            return false;
        };
        let odd = op_begin(self, slot);
        let prev = device.reserved_bytes.fetch_add(bytes, Ordering::SeqCst);
        owner_add(&owner.reserved[dev], bytes);
        raise_peak(&device.peak_reserved_bytes, prev.saturating_add(bytes));
        op_end(self, slot, odd);
        true
    }

    /// Returns up to `bytes` on device `dev` from slot `slot` to the container: the slot's
    /// count first, then the total, by the amount actually removed from the slot (so a
    /// double free can never push the total below the other slots' charges). Returns the
    /// bytes released. Lock-free across processes; only the slot's owner calls it.
    pub fn release(&self, slot: usize, dev: usize, bytes: u64) -> u64 {
        self.release_with_usage(slot, dev, bytes, None)
    }

    /// [`Region::release`] and, in the same bracket, `used[dev]`'s `kind` part lowered by
    /// `bytes` (what the node monitor reads): a free costs one bracket, not two.
    pub fn release_with_usage(
        &self,
        slot: usize,
        dev: usize,
        bytes: u64,
        kind: Option<crate::MemoryKind>,
    ) -> u64 {
        let (Some(owner), Some(device)) = (self.ext.slots.get(slot), self.ext.devices.get(dev))
        else {
            return 0;
        };
        let odd = op_begin(self, slot);
        if let Some(kind) = kind {
            let delta = i64::try_from(bytes).unwrap_or(i64::MAX);
            self.v1.procs[slot].adjust_usage_locked(dev, kind, -delta);
        }
        let released = owner_sub(&owner.reserved[dev], bytes);
        sub_total(&device.reserved_bytes, released);
        op_end(self, slot, odd);
        released
    }

    /// Claims a free slot for a starting process: CAS `owner_token` 0 → `token`, fill in the
    /// identity, then publish ACTIVE (ext `state`, v1 `status = 1`). Returns the index.
    ///
    /// Call holding the region lock. A claimer that dies midway leaves a CLAIMING slot whose
    /// token names its pid; the reaper frees it.
    pub fn claim_slot(
        &self,
        token: u64,
        pid: i32,
        start_time: u64,
        now_mono_ns: u64,
    ) -> Result<usize, LayoutError> {
        self.claim_slot_from(0, token, pid, start_time, now_mono_ns)
    }

    /// The first slot that looks free, lock-free (a hint for [`Region::claim_slot_from`]:
    /// the look costs a read of every taken slot before it, which under the lock every
    /// process of a container starting together would pay one after the other).
    pub fn free_slot_hint(&self) -> usize {
        (0..MAX_PROCS)
            .find(|&i| {
                let ext = &self.ext.slots[i];
                ext.state.load(Ordering::Relaxed) == slot_state::FREE
                    && ext.owner_token.load(Ordering::Relaxed) == 0
            })
            .unwrap_or(0)
    }

    /// [`Region::claim_slot`], looking from slot `first` on (then from 0): any free slot
    /// is as good; where the look starts only saves reading the taken ones before it.
    pub fn claim_slot_from(
        &self,
        first: usize,
        token: u64,
        pid: i32,
        start_time: u64,
        now_mono_ns: u64,
    ) -> Result<usize, LayoutError> {
        let first = first.min(MAX_PROCS);
        let index = (first..MAX_PROCS)
            .chain(0..first)
            .find(|&i| {
                let ext = &self.ext.slots[i];
                ext.state.load(Ordering::Acquire) == slot_state::FREE
                    && ext
                        .owner_token
                        .compare_exchange(0, token, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
            })
            .ok_or(LayoutError::NoFreeSlot)?;
        let ext = &self.ext.slots[index];
        let v1 = &self.v1.procs[index];
        ext.state.store(slot_state::CLAIMING, Ordering::Release);
        ext.pid.store(pid, Ordering::Relaxed);
        ext.start_time.store(start_time, Ordering::Relaxed);
        ext.claim_ns.store(now_mono_ns, Ordering::Relaxed);
        ext.heartbeat_ns.store(now_mono_ns, Ordering::Relaxed);
        v1.pid.store(pid, Ordering::Relaxed);
        let h = &self.ext.header;
        h.slot_high_water
            .fetch_max(index as u32 + 1, Ordering::AcqRel);
        // The monitor sums procs[..proc_num], so proc_num is a high-water mark, not a count.
        self.v1
            .proc_num
            .fetch_max(index as i32 + 1, Ordering::AcqRel);
        ext.state.store(slot_state::ACTIVE, Ordering::Release);
        v1.status.store(SLOT_STATUS_ACTIVE, Ordering::Release);
        h.generation.fetch_add(1, Ordering::AcqRel);
        Ok(index)
    }

    /// Returns everything slot `index` holds to the container and frees the slot: used by
    /// the reaper for an owner that is gone (killed or exited: [`Region::reap_gone`]). `expected_token` guards
    /// against freeing a slot that was reclaimed and re-claimed since the caller looked.
    ///
    /// Call holding the region lock. Steps: state → TOMBSTONE; if the owner was not mid
    /// operation (`op_seq` even), per device swap the slot's count to 0 and subtract it
    /// from the total; otherwise zero the counts and set `AUDIT_NEEDED`; clear both halves
    /// of the slot; state → FREE; `owner_token` → 0 last.
    pub fn reclaim_slot(
        &self,
        index: usize,
        expected_token: u64,
    ) -> Result<ReclaimReport, LayoutError> {
        let slot = self.slot(index)?;
        if slot.ext.owner_token.load(Ordering::Acquire) != expected_token || expected_token == 0 {
            return Err(LayoutError::NotOwner { slot: index });
        }
        slot.ext
            .state
            .store(slot_state::TOMBSTONE, Ordering::SeqCst);
        let mut report = ReclaimReport::default();
        let mid_operation = mid_operation(self, index);
        for dev in 0..MAX_DEVICES {
            let charged = slot.ext.reserved[dev].swap(0, Ordering::SeqCst);
            if mid_operation {
                continue;
            }
            report.returned[dev] =
                saturating_sub_atomic(&self.ext.devices[dev].reserved_bytes, charged);
        }
        if mid_operation {
            report.audit_needed = true;
            self.mark_audit_needed();
        }
        slot.v1.clear();
        let ext = slot.ext;
        for word in [
            &ext.start_time,
            &ext.heartbeat_ns,
            &ext.op_seq,
            &ext.claim_ns,
            &ext.pid_ns,
        ] {
            word.store(0, Ordering::Relaxed);
        }
        ext.pid.store(0, Ordering::Relaxed);
        ext.state.store(slot_state::FREE, Ordering::Release);
        ext.owner_token.store(0, Ordering::Release);
        self.ext.header.generation.fetch_add(1, Ordering::AcqRel);
        Ok(report)
    }

    /// Marks slot `index` as exiting (its owner began a clean exit): ACTIVE → EXITING, only
    /// when `token` still owns it. Nothing is credited: the charges stay until the process is
    /// gone and a reaper reclaims the slot ([`Region::reap_gone`]), because the driver may
    /// hold the memory until the kernel closes the process's device files. The v1 entry
    /// stays too (HAMi's monitor keeps showing what the driver still holds). Lock-free: an
    /// exiting process must not wait for, or hold, the region lock. Returns whether it
    /// marked the slot.
    pub fn mark_exiting(&self, index: usize, token: u64) -> bool {
        let Ok(slot) = self.slot(index) else {
            return false;
        };
        if token == 0 || slot.ext.owner_token.load(Ordering::Acquire) != token {
            return false;
        }
        let marked = slot
            .ext
            .state
            .compare_exchange(
                slot_state::ACTIVE,
                slot_state::EXITING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if marked {
            self.ext.header.generation.fetch_add(1, Ordering::AcqRel);
        }
        marked
    }

    /// Whether any slot is marked [`slot_state::EXITING`] (lock-free scan up to
    /// `slot_high_water`): what makes a reap worth its `/proc` reads on paths that must stay
    /// cheap (a new process's attach).
    pub fn any_exiting(&self) -> bool {
        let high =
            (self.ext.header.slot_high_water.load(Ordering::Acquire) as usize).min(MAX_PROCS);
        self.ext.slots[..high]
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == slot_state::EXITING)
    }

    /// Reclaims every claimed slot whose owner is gone: the one path by which a process's
    /// charges return to the container, whether it was killed or exited cleanly
    /// (EXITING). `gone(pid, start_time)` is the caller's liveness check (it reads `/proc`):
    /// true only when the process provably no longer runs (does not exist, or is a zombie,
    /// whose files are closed); a process that cannot be inspected counts as alive.
    /// `start_time` is 0 for a CLAIMING slot not filled in yet (judge by the pid alone).
    /// `scope` says which slots this reaper may judge.
    ///
    /// Call holding the region lock. Returns how many slots were reclaimed.
    pub fn reap_gone(&self, scope: ReapScope, gone: &mut dyn FnMut(i32, u64) -> bool) -> usize {
        let mut reclaimed = 0;
        for (i, token, pid, start) in self.reap_candidates(scope) {
            if gone(pid, start) && self.reclaim_slot(i, token).is_ok() {
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Whether [`Region::reap_gone`] with the same arguments would find a slot to reclaim:
    /// the lock-free look before taking the lock (nothing is changed).
    pub fn any_gone(&self, scope: ReapScope, gone: &mut dyn FnMut(i32, u64) -> bool) -> bool {
        self.reap_candidates(scope)
            .any(|(_, _, pid, start)| gone(pid, start))
    }

    /// The claimed slots a reaper may judge: (index, token, pid, start time).
    fn reap_candidates(
        &self,
        scope: ReapScope,
    ) -> impl Iterator<Item = (usize, u64, i32, u64)> + '_ {
        let high =
            (self.ext.header.slot_high_water.load(Ordering::Acquire) as usize).min(MAX_PROCS);
        (0..high).filter_map(move |i| {
            let ext = &self.ext.slots[i];
            let token = ext.owner_token.load(Ordering::Acquire);
            if token == 0
                || (scope.only_exiting && ext.state.load(Ordering::Acquire) != slot_state::EXITING)
            {
                return None;
            }
            let ns = ext.pid_ns.load(Ordering::Acquire);
            let judged = if ns == 0 || scope.pid_ns == 0 {
                scope.unknown_ns
            } else {
                ns == scope.pid_ns
            };
            if !judged {
                return None;
            }
            let pid = match ext.pid.load(Ordering::Acquire) {
                0 => (token >> 32) as i32,
                p => p,
            };
            Some((i, token, pid, ext.start_time.load(Ordering::Acquire)))
        })
    }

    /// Requests an audit: after a lock holder died (`EOWNERDEAD`) or a slot was reclaimed
    /// mid-operation.
    pub fn mark_audit_needed(&self) {
        self.ext
            .header
            .flags
            .fetch_or(ext_flags::AUDIT_NEEDED, Ordering::SeqCst);
    }

    /// Whether an audit has been requested and not yet completed.
    pub fn audit_needed(&self) -> bool {
        self.ext.header.flags.load(Ordering::SeqCst) & ext_flags::AUDIT_NEEDED != 0
    }

    /// Recomputes every device's `reserved_bytes` as the sum of the CLAIMING/ACTIVE/EXITING slots'
    /// counts, exactly, while live processes keep reserving lock-free.
    ///
    /// Sets `AUDIT_FREEZE` (new operations step back for a bounded time) and waits, bounded,
    /// for each live slot's `op_seq` to be even. Then reads the totals, each live slot's
    /// `op_seq` and counts, re-reads every `op_seq` (must be unchanged), and CASes each total
    /// from the value read to the sum. An operation that overlapped anyway changed an
    /// `op_seq` or a total, so the audit reports [`AuditBusy`] instead of writing a wrong
    /// value. Clears `AUDIT_NEEDED` on success and `AUDIT_FREEZE` always.
    ///
    /// Call holding the region lock, after reclaiming dead slots: a dead owner whose `op_seq`
    /// is odd makes every audit busy until its slot is a TOMBSTONE.
    pub fn audit_totals(&self) -> Result<[u64; MAX_DEVICES], AuditBusy> {
        let flags = &self.ext.header.flags;
        flags.fetch_or(ext_flags::AUDIT_FREEZE, Ordering::SeqCst);
        let result = self.audit_frozen();
        flags.fetch_and(!ext_flags::AUDIT_FREEZE, Ordering::SeqCst);
        if result.is_ok() {
            flags.fetch_and(!ext_flags::AUDIT_NEEDED, Ordering::SeqCst);
        }
        result
    }

    fn live_slots(&self) -> impl Iterator<Item = (usize, &SlotExt)> {
        let high_water =
            (self.ext.header.slot_high_water.load(Ordering::SeqCst) as usize).min(MAX_PROCS);
        self.ext.slots[..high_water]
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                let state = slot.state.load(Ordering::SeqCst);
                state == slot_state::ACTIVE
                    || state == slot_state::CLAIMING
                    || state == slot_state::EXITING
            })
    }

    fn audit_frozen(&self) -> Result<[u64; MAX_DEVICES], AuditBusy> {
        for (index, _) in self.live_slots() {
            let mut round = 0;
            while mid_operation(self, index) {
                if round == AUDIT_QUIESCE_SPINS {
                    return Err(AuditBusy);
                }
                backoff(round);
                round += 1;
            }
        }
        let before: [u64; MAX_DEVICES] =
            core::array::from_fn(|d| self.ext.devices[d].reserved_bytes.load(Ordering::SeqCst));
        let mut sums = [0u64; MAX_DEVICES];
        let mut seen: Vec<(usize, (u64, u64))> = Vec::new();
        for (index, slot) in self.live_slots() {
            let seq = op_marks(self, index);
            if seq.0 & 1 == 1 || seq.1 & 1 == 1 {
                return Err(AuditBusy);
            }
            for (sum, charged) in sums.iter_mut().zip(&slot.reserved) {
                *sum = sum.saturating_add(charged.load(Ordering::SeqCst));
            }
            seen.push((index, seq));
        }
        if seen
            .iter()
            .any(|&(index, seq)| op_marks(self, index) != seq)
        {
            return Err(AuditBusy);
        }
        let mut complete = true;
        for (dev, device) in self.ext.devices.iter().enumerate() {
            if device
                .reserved_bytes
                .compare_exchange(before[dev], sums[dev], Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                complete = false;
            }
        }
        if complete {
            Ok(sums)
        } else {
            Err(AuditBusy)
        }
    }
}
