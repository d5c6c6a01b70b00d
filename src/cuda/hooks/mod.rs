//! Hook bodies: a few lines each, calling the core (`crate::core`: the charge protocol,
//! the ledger, the region) and the real driver (`crate::cuda::real`). The exported shims
//! in `crate::cuda` call these inside the panic guard. Every hook returns a valid `CUresult`: the driver's own, or
//! `CUDA_ERROR_OUT_OF_MEMORY` for a refused allocation, or `CUDA_ERROR_NOT_INITIALIZED`
//! when there is no driver.

#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

mod context;
mod memory;
mod procaddr;
pub mod ptds;

pub use context::*;
pub use memory::*;
pub use procaddr::*;
pub use ptds::*;

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use cuda_headers::bindings::*;

/// The real function of a row, or return `CUDA_ERROR_NOT_INITIALIZED` (no driver).
macro_rules! real_or_return {
    ($name:ident) => {
        match crate::cuda::real::$name() {
            Some(f) => f,
            None => {
                crate::cuda::ensure_resolved();
                match crate::cuda::real::$name() {
                    Some(f) => f,
                    None => return cuda_headers::bindings::CUDA_ERROR_NOT_INITIALIZED,
                }
            }
        }
    };
}
pub(crate) use real_or_return;

/// Where an allocation made now lands: the current context, its CUDA ordinal, and the
/// container device index limits are keyed by.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub ctx: u64,
    pub ordinal: CUdevice,
    pub device: usize,
}

/// Bumped whenever a context is destroyed or reset, so per-thread caches of
/// context -> device never outlive the context.
static CONTEXT_EPOCH: AtomicU64 = AtomicU64::new(0);

/// How far a thread's cached current context can be believed without asking the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// The context was not set through a hook on this thread (a new thread, or one whose
    /// context the application set before we saw it): ask `cuCtxGetCurrent` every time.
    No,
    /// A hooked pop (or set to NULL) left the new current context to the driver: ask once,
    /// then believe the answer.
    AskOnce,
    /// Set through a hook (`cuCtxSetCurrent`, `cuCtxPushCurrent`, `cuCtxCreate`) and not
    /// changed since: the driver's answer would be the cached context.
    Yes,
}

/// A thread's current context as far as libvgpu knows it, and that context's placement.
#[derive(Debug, Clone, Copy)]
struct Current {
    /// `epoch` when the cache may answer without the driver (`known == Yes` and looked
    /// up), else `u64::MAX` (`CONTEXT_EPOCH` never gets there): the fast path's one test.
    fast: u64,
    ctx: u64,
    known: Known,
    /// `CONTEXT_EPOCH` when `ordinal`/`device` were looked up (`u64::MAX`: not yet).
    epoch: u64,
    ordinal: CUdevice,
    device: usize,
}

thread_local! {
    static CURRENT: Cell<Current> = const {
        Cell::new(Current { fast: u64::MAX, ctx: 0, known: Known::No, epoch: u64::MAX, ordinal: -1, device: 0 })
    };
}

/// Stores `cur`, deriving its `fast` field.
fn keep(c: &Cell<Current>, mut cur: Current) {
    cur.fast = if cur.known == Known::Yes {
        cur.epoch
    } else {
        u64::MAX
    };
    c.set(cur)
}

pub(crate) fn contexts_changed() {
    CONTEXT_EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// The calling thread's current context is now `ctx` (a hooked call made it current).
pub(crate) fn current_is(ctx: CUcontext) {
    let ctx = ctx as u64;
    CURRENT.with(|c| {
        let mut cur = c.get();
        if cur.ctx != ctx {
            cur.epoch = u64::MAX;
        }
        cur.ctx = ctx;
        cur.known = if ctx == 0 { Known::AskOnce } else { Known::Yes };
        keep(c, cur)
    });
}

/// The calling thread's current context changed to one the driver knows (a hooked pop).
pub(crate) fn current_unknown() {
    CURRENT.with(|c| {
        let mut cur = c.get();
        cur.known = Known::AskOnce;
        keep(c, cur)
    });
}

fn ask_current() -> Option<u64> {
    let get_current = crate::cuda::real::cuCtxGetCurrent()?;
    let mut ctx: CUcontext = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    (unsafe { get_current(&mut ctx) } == CUDA_SUCCESS).then_some(ctx as u64)
}

/// The current context's placement; `None` when there is no current context (the hook
/// then forwards and the driver reports its own error).
///
/// A thread whose context was set through our hooks is answered from its thread-local
/// cache: no driver call, no lock, the context epoch and three fields of the cache.
#[inline]
pub fn current_placement() -> Option<Placement> {
    let epoch = CONTEXT_EPOCH.load(Ordering::Acquire);
    let hit = CURRENT.with(|c| {
        // SAFETY: this thread's own cell; nothing else borrows it during this read (the
        // field reads avoid copying the whole cache on the fast path).
        let cur = unsafe { &*c.as_ptr() };
        (cur.fast == epoch).then_some(Placement {
            ctx: cur.ctx,
            ordinal: cur.ordinal,
            device: cur.device,
        })
    });
    match hit {
        Some(place) => (place.ctx != 0).then_some(place),
        None => current_placement_slow(CURRENT.with(Cell::get), epoch),
    }
}

/// The container device of the calling thread's current context (a launch's route).
#[inline]
pub fn current_device() -> Option<usize> {
    current_placement().map(|p| p.device)
}

#[cold]
fn current_placement_slow(mut cur: Current, epoch: u64) -> Option<Placement> {
    let epoch_moved = cur.epoch != u64::MAX && cur.epoch != epoch;
    if cur.known != Known::Yes || epoch_moved {
        // A destroyed or reset context (epoch moved) may have been this thread's current
        // one, and the driver then moved on: ask again. A context a hook just made current
        // needs only its device looked up.
        let ctx = ask_current()?;
        if ctx != cur.ctx {
            cur.epoch = u64::MAX;
        }
        cur.ctx = ctx;
        if cur.known == Known::AskOnce || cur.known == Known::Yes {
            cur.known = Known::Yes;
        }
    }
    if cur.ctx == 0 {
        CURRENT.with(|c| keep(c, cur));
        return None;
    }
    if cur.epoch != epoch {
        let get_device = crate::cuda::real::cuCtxGetDevice()?;
        let mut ordinal: CUdevice = -1;
        // SAFETY: valid out-pointer.
        if unsafe { get_device(&mut ordinal) } != CUDA_SUCCESS {
            return None;
        }
        cur.device = crate::cuda::placement::container_index(ordinal)?;
        cur.ordinal = ordinal;
        cur.epoch = epoch;
    }
    CURRENT.with(|c| keep(c, cur));
    Some(Placement {
        ctx: cur.ctx,
        ordinal: cur.ordinal,
        device: cur.device,
    })
}

// ---- initialisation --------------------------------------------------------------------

/// `cuInit`: the container's region is mapped — created, when this is the container's first
/// process — before the driver initialises (`core::runtime::prepare_region`: it never waits
/// for a process creating it), so the processes of a container starting together find it
/// ready at their first charged call rather than all waiting, after their drivers'
/// initialisation, for the one that creates it. The process state is made later, at the
/// first call that needs it.
pub unsafe fn cuInit(flags: c_uint) -> CUresult {
    crate::core::vendor::register(&crate::nvml::VENDOR);
    crate::core::runtime::prepare_region();
    let real = match crate::cuda::real::cuInit() {
        Some(f) => f,
        None => {
            crate::cuda::resolve_driver();
            match crate::cuda::real::cuInit() {
                Some(f) => f,
                None => return CUDA_ERROR_NOT_INITIALIZED,
            }
        }
    };
    // SAFETY: `real` is the real driver function of this row, called with our caller's argument
    // (a plain value).
    unsafe { real(flags) }
}

// ---- the calls that change a thread's current context -----------------------------------

pub unsafe fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    let real = real_or_return!(cuCtxSetCurrent);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(ctx) };
    if rc == CUDA_SUCCESS {
        // NULL pops (when a stack exists): what is current then is the driver's to say.
        current_is(ctx);
    }
    rc
}

pub unsafe fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    let real = real_or_return!(cuCtxPushCurrent_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(ctx) };
    if rc == CUDA_SUCCESS {
        current_is(ctx);
    }
    rc
}

/// `cuCtxCreate*` make the new context current on the calling thread: the charging lives
/// in `context.rs`, these wrappers (which shadow its glob-exported names) note the change.
unsafe fn created(rc: CUresult, pctx: *mut CUcontext) -> CUresult {
    if rc == CUDA_SUCCESS && !pctx.is_null() {
        // SAFETY: the driver filled the caller's out-pointer on success.
        current_is(unsafe { *pctx });
    } else {
        // A creation refused after the fact was destroyed again: ask the driver.
        current_unknown();
    }
    rc
}

pub unsafe fn cuCtxCreate_v2(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> CUresult {
    // SAFETY: `context::cuCtxCreate_v2` takes the same CUDA contract our caller accepted; `created`
    // only reads `pctx` when non-null and the call succeeded, when the driver has filled it.
    unsafe { created(context::cuCtxCreate_v2(pctx, flags, dev), pctx) }
}

pub unsafe fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params: *mut c_void,
    n: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: `context::cuCtxCreate_v3` takes the same CUDA contract our caller accepted; `created`
    // only reads `pctx` when non-null and the call succeeded, when the driver has filled it.
    unsafe { created(context::cuCtxCreate_v3(pctx, params, n, flags, dev), pctx) }
}

pub unsafe fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    params: *mut c_void,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: `context::cuCtxCreate_v4` takes the same CUDA contract our caller accepted; `created`
    // only reads `pctx` when non-null and the call succeeded, when the driver has filled it.
    unsafe { created(context::cuCtxCreate_v4(pctx, params, flags, dev), pctx) }
}

pub unsafe fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    let real = real_or_return!(cuCtxPopCurrent_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(pctx) };
    if rc == CUDA_SUCCESS {
        current_unknown();
    }
    rc
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` of a CUDA ordinal, from the real driver.
pub fn device_uuid(ordinal: CUdevice) -> Option<String> {
    let mut uuid = CUuuid::default();
    let rc = if let Some(f) = crate::cuda::real::cuDeviceGetUuid_v2() {
        // SAFETY: valid out-pointer.
        unsafe { f(&mut uuid, ordinal) }
    } else {
        let f = crate::cuda::real::cuDeviceGetUuid()?;
        // SAFETY: valid out-pointer.
        unsafe { f(&mut uuid, ordinal) }
    };
    (rc == CUDA_SUCCESS).then(|| format_uuid(&uuid.bytes.map(|b| b as u8)))
}

/// Formats 16 UUID bytes the way NVML and nvidia-smi print them.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

/// The CUDA driver API's status codes for the charge protocol (`crate::core::charge`).
pub struct Cuda;

impl crate::core::charge::Api for Cuda {
    type Status = CUresult;
    const SUCCESS: CUresult = CUDA_SUCCESS;
    const OUT_OF_MEMORY: CUresult = CUDA_ERROR_OUT_OF_MEMORY;
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_format() {
        let b: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(
            super::format_uuid(&b),
            "GPU-00112233-4455-6677-8899-aabbccddeeff"
        );
    }
}
