//! The charge protocol, once for every vendor: reserve in the ledger before the real
//! allocation (a refusal is the vendor's out-of-memory code, the library is not called),
//! commit after it succeeded, roll back when it failed; take a freed handle out of the live
//! map before the real free and credit its capacity only after the free succeeded (put it
//! back when it failed). Generic over the vendor's status type through [`Api`]: CUDA's
//! `CUresult` (`crate::cuda`), HIP's `hipError_t` (`crate::hip`).

use crate::core::runtime::rt;
use crate::ledger::{AllocKind, OverLimit};

/// A vendor API's status codes, as the protocol needs them (implemented by a marker type
/// of each backend: the status types themselves are plain integers, so they cannot tell
/// the vendors apart).
pub trait Api {
    /// The API's result type (`CUresult`, `hipError_t`).
    type Status: Copy + PartialEq;
    /// Success.
    const SUCCESS: Self::Status;
    /// What a refused allocation returns.
    const OUT_OF_MEMORY: Self::Status;
}

/// Charges `bytes` of `kind` on container device `device` for `owner` (a context, or a
/// device's owner key) around `call`, which returns the real library's status and, on
/// success, the new handle. Refused: `A::OUT_OF_MEMORY`, `call` not made.
pub fn charged_on<A: Api>(
    what: &str,
    device: usize,
    owner: u64,
    bytes: u64,
    kind: AllocKind,
    call: impl FnOnce() -> (A::Status, u64),
) -> A::Status {
    let reservation = match rt().ledger.reserve_with_usage(device, bytes, kind) {
        Ok(r) => r.owned_by(owner),
        Err(e) => match reserve_after_refusal(device, bytes, kind, e) {
            Ok(r) => r.owned_by(owner),
            Err(e) => {
                log_refusal(what, e);
                return A::OUT_OF_MEMORY;
            }
        },
    };
    let (rc, handle) = call();
    if rc == A::SUCCESS {
        reservation.commit(handle);
    }
    rc
}

/// A refused reservation, once more after the context charges parked at their
/// conservative sizes (`core::provisional`) had their chance to be cut to the measured
/// figure: this process's are settled (waiting a bounded time for the figure), and while
/// another process of the container may hold one (`context_parked_until_ns`, a start-up
/// burst) the reservation is retried until it fits or that time has passed.
#[cold]
#[inline(never)]
fn reserve_after_refusal(
    device: usize,
    bytes: u64,
    kind: AllocKind,
    refused: OverLimit,
) -> Result<crate::ledger::Reservation<'static, crate::core::pool::Pool>, OverLimit> {
    use crate::core::provisional::{settle_all, PARKED_AT_MOST, SETTLE_WAIT};
    let ledger = &rt().ledger;
    let settled = settle_all(Some(SETTLE_WAIT)) > 0;
    let parked_elsewhere = || {
        crate::core::shared_region::SharedRegion::get().is_some_and(|r| r.context_parked(device))
    };
    if !settled && !parked_elsewhere() {
        return Err(refused);
    }
    let deadline = std::time::Instant::now() + PARKED_AT_MOST;
    let mut pause = std::time::Duration::from_micros(100);
    loop {
        match ledger.reserve_with_usage(device, bytes, kind) {
            Ok(r) => return Ok(r),
            Err(e) if !parked_elsewhere() || std::time::Instant::now() >= deadline => {
                return Err(e)
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Credits `handle` around the real free `call`: the entry leaves the live map before the
/// call (an address the library reuses at once is never confused with the old one), the
/// capacity is credited only after the free succeeded (until then the library still
/// holds the memory, and no other thread or process may reserve it), and the entry goes
/// back if the library refused.
pub fn credited<A: Api>(
    kind: AllocKind,
    handle: u64,
    call: impl FnOnce() -> A::Status,
) -> A::Status {
    let pending = rt().ledger.begin_free(kind, handle);
    let rc = call();
    if let Some(p) = pending {
        if rc == A::SUCCESS {
            p.freed();
        } else {
            p.failed();
        }
    }
    rc
}

/// Logs a refused allocation (level 3: on when asked for, off by default).
pub fn log_refusal(what: &str, e: OverLimit) {
    crate::vlog!(
        3,
        "{what}: refusing {} bytes on device {}: {} of {} bytes in use",
        e.requested,
        e.device,
        e.used,
        e.limit
    );
}

/// The slice as the application sees it: the cap, or the card when the cap is larger and
/// oversubscription is off.
pub fn visible_total(limit: u64, physical_total: u64) -> u64 {
    if rt().config.oversubscribe {
        limit
    } else {
        limit.min(physical_total)
    }
}
