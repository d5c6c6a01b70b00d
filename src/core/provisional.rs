//! Context charges parked until the container's figure for them is known.
//!
//! The processes of a container starting together create their first contexts before any
//! of them has measured what one costs (docs/MEMORY_CAP.md, rule 5). One of them measures
//! it through NVML; waiting for its figure would put every other process behind that one
//! process's NVML start, which on a loaded machine is most of the start-up (issue 9 item
//! 4). Instead a process that cannot have the figure yet keeps its context's reservation
//! at a conservative size — at least the figure charged for an unmeasured context — and
//! parks it here, uncommitted; the reservation is the process's (its slot holds it), so
//! it counts against the slice and is given back if the process dies. It is settled — cut
//! to the container's figure once one is published, and committed under the context's key
//! — by the process's watcher (every tick, without waiting), before a reservation of this
//! process is refused (waiting for the figure, bounded), before the process creates or
//! measures anything else on the device, and it is dropped (credited) when the context
//! goes away first. A figure that does not come keeps the conservative size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::MAX_DEVICES;
use crate::core::pool::Pool;
use crate::core::shared_region::SharedRegion;
use crate::ledger::Reservation;

/// The longest a refused reservation, or a creation on the device, waits for the
/// container's figure before settling a parked charge at its conservative size: the
/// measuring process opens NVML and lists its processes (11-52 ms of wall time in a wave
/// of 64 processes on 2 cores, docs/BENCHMARKS.md).
pub const SETTLE_WAIT: Duration = Duration::from_millis(500);

/// A context reservation waiting for its figure: the reservation, the ledger key it is
/// committed under, and since when it waits.
struct Parked {
    reservation: Reservation<'static, Pool>,
    key: u64,
    since: std::time::Instant,
}

/// The longest a charge stays parked: then, figure or not, the watcher commits it at its
/// conservative size, so the container's other processes (which wait for parked charges
/// before refusing, `context_parked_until_ns`) never wait longer than this and a tick.
pub const PARK_LIMIT: Duration = Duration::from_secs(1);

/// How long after parking a charge may still be held: [`PARK_LIMIT`] and the watcher's
/// tick that commits it (what `context_parked_until_ns` says, and what a refused
/// reservation waits for at most).
pub const PARKED_AT_MOST: Duration = Duration::from_millis(1500);

static PARKED: [Mutex<Option<Parked>>; MAX_DEVICES] = [const { Mutex::new(None) }; MAX_DEVICES];
/// Whether anything may be parked (the watcher's and the refusal path's cheap check).
static ANY: AtomicBool = AtomicBool::new(false);

fn lock(device: usize) -> std::sync::MutexGuard<'static, Option<Parked>> {
    PARKED[device].lock().unwrap_or_else(|e| e.into_inner())
}

/// Parks `reservation` (a context's, container device `device`) to be committed under
/// `key` once settled. Gives it back when the device already has one parked.
pub fn park(
    device: usize,
    reservation: Reservation<'static, Pool>,
    key: u64,
) -> Result<(), Reservation<'static, Pool>> {
    if device >= MAX_DEVICES {
        return Err(reservation);
    }
    let mut slot = lock(device);
    if slot.is_some() {
        return Err(reservation);
    }
    *slot = Some(Parked {
        reservation,
        key,
        since: std::time::Instant::now(),
    });
    ANY.store(true, Ordering::Release);
    if let Some(region) = SharedRegion::get() {
        region.note_context_parked(device, PARKED_AT_MOST);
        // Its watcher settles it (every tick) and commits it after PARK_LIMIT.
        region.ensure_watcher();
    }
    Ok(())
}

/// Settles the reservation parked on `device`: with the container's figure, cut to it and
/// committed; without one, after waiting `wait` for it (`None`: no wait, left parked
/// unless parked for [`PARK_LIMIT`] already), committed at its conservative size. Returns
/// the bytes given back to the slice.
pub fn settle(device: usize, wait: Option<Duration>) -> u64 {
    if device >= MAX_DEVICES || !ANY.load(Ordering::Acquire) {
        return 0;
    }
    let mut slot = lock(device);
    let Some(parked) = slot.as_ref() else {
        return 0;
    };
    let region = SharedRegion::get();
    let figure = match (region.and_then(|r| r.context_bytes_hint(device)), wait) {
        (Some(f), _) => Some(f),
        (None, Some(limit)) => region.and_then(|r| r.wait_for_context_bytes_hint(device, limit)),
        // Parked long enough: committed as it is (see PARK_LIMIT).
        (None, None) if parked.since.elapsed() >= PARK_LIMIT => None,
        (None, None) => return 0,
    };
    let held = parked.reservation.bytes();
    let Some(Parked {
        mut reservation,
        key,
        ..
    }) = slot.take()
    else {
        return 0;
    };
    // Cut to the figure (always possible), or grown to it when the figure is larger than
    // the conservative size and the slice has room (else the larger of what fits).
    if !reservation.resize(figure.unwrap_or(held)) {
        crate::vlog!(
            crate::log::WARN,
            "the container's context figure ({figure:?} bytes) is more than the slice has room for: {held} bytes stay charged"
        );
    }
    let bytes = reservation.bytes();
    reservation.commit(key);
    crate::vlog!(
        crate::log::DEBUG,
        "parked context charge on device {device} settled: {held} -> {bytes} bytes"
    );
    held.saturating_sub(bytes)
}

/// [`settle`] on every device; the bytes given back.
pub fn settle_all(wait: Option<Duration>) -> u64 {
    if !ANY.load(Ordering::Acquire) {
        return 0;
    }
    (0..MAX_DEVICES).map(|d| settle(d, wait)).sum()
}

/// The context parked under `key` on `device` is gone (the driver destroyed or released
/// it): its reservation is credited. Call after the driver's call succeeded.
pub fn forget(device: usize, key: u64) {
    if device >= MAX_DEVICES || !ANY.load(Ordering::Acquire) {
        return;
    }
    let mut slot = lock(device);
    if slot.as_ref().is_some_and(|p| p.key == key) {
        *slot = None;
    }
}

/// [`forget`] on whichever device has `key` parked (a context destroyed by handle).
pub fn forget_key(key: u64) {
    if !ANY.load(Ordering::Acquire) {
        return;
    }
    (0..MAX_DEVICES).for_each(|d| forget(d, key));
}

// ---- fork ------------------------------------------------------------------------------

/// The parked slots' locks, held across `fork` (taken before the ledger's map lock, the
/// order settling takes them in) so a child never inherits one locked by a thread that
/// does not exist there.
struct ForkHeld([Option<std::sync::MutexGuard<'static, Option<Parked>>>; MAX_DEVICES]);
// SAFETY: the guards are taken and dropped by the forking thread (prepare -> parent) or by
// the only thread of the child; the static only carries them between those calls.
unsafe impl Send for ForkHeld {}

static FORK_HELD: Mutex<Option<ForkHeld>> = Mutex::new(None);

/// `pthread_atfork` prepare: takes every parked slot's lock.
pub fn fork_prepare() {
    let held = ForkHeld(std::array::from_fn(|d| Some(lock(d))));
    *FORK_HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
}

/// `pthread_atfork` parent: gives the locks back.
pub fn fork_parent() {
    drop(FORK_HELD.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// `pthread_atfork` child: the child holds no context, and the parked reservations are
/// the parent's (its slot holds them): forgotten here, neither committed nor credited.
pub fn fork_child() {
    let held = FORK_HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut held) = held {
        for guard in held.0.iter_mut().flatten() {
            if let Some(parked) = guard.take() {
                std::mem::forget(parked);
            }
        }
    }
    ANY.store(false, Ordering::Release);
}
