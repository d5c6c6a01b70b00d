//! Hook bodies: a few lines each, calling the pure policy (`ledger`, `config`) and the
//! real driver (`driver::real`). The exported shims in `driver` call these inside the
//! panic guard. Every hook returns a valid `CUresult`: the driver's own, or
//! `CUDA_ERROR_OUT_OF_MEMORY` for a refused allocation, or `CUDA_ERROR_NOT_INITIALIZED`
//! when there is no driver.

#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

mod context;
mod memory;
pub mod nvml;
mod procaddr;

pub use context::*;
pub use memory::*;
pub use procaddr::*;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use cuda_headers::bindings::*;

use crate::runtime::rt;

/// The real function of a row, or return `CUDA_ERROR_NOT_INITIALIZED` (no driver).
macro_rules! real_or_return {
    ($name:ident) => {
        match crate::driver::real::$name() {
            Some(f) => f,
            None => {
                let _ = crate::runtime::rt();
                match crate::driver::real::$name() {
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

thread_local! {
    /// (context, epoch, ordinal, container index) of this thread's last lookup.
    static LAST_PLACEMENT: Cell<(u64, u64, i32, usize)> = const { Cell::new((0, u64::MAX, -1, 0)) };
}

pub(crate) fn contexts_changed() {
    CONTEXT_EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// The current context's placement; `None` when there is no current context (the hook
/// then forwards and the driver reports its own error).
pub fn current_placement() -> Option<Placement> {
    let get_current = crate::driver::real::cuCtxGetCurrent()?;
    let mut ctx: CUcontext = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    if unsafe { get_current(&mut ctx) } != CUDA_SUCCESS || ctx.is_null() {
        return None;
    }
    let key = ctx as u64;
    let epoch = CONTEXT_EPOCH.load(Ordering::Acquire);
    let (c, e, ordinal, device) = LAST_PLACEMENT.with(Cell::get);
    if c == key && e == epoch {
        return Some(Placement {
            ctx: key,
            ordinal,
            device,
        });
    }
    let get_device = crate::driver::real::cuCtxGetDevice()?;
    let mut ordinal: CUdevice = -1;
    // SAFETY: valid out-pointer.
    if unsafe { get_device(&mut ordinal) } != CUDA_SUCCESS {
        return None;
    }
    let device = rt().container_index(ordinal)?;
    LAST_PLACEMENT.with(|p| p.set((key, epoch, ordinal, device)));
    Some(Placement {
        ctx: key,
        ordinal,
        device,
    })
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` of a CUDA ordinal, from the real driver.
pub fn device_uuid(ordinal: CUdevice) -> Option<String> {
    let mut uuid = CUuuid::default();
    let rc = if let Some(f) = crate::driver::real::cuDeviceGetUuid_v2() {
        // SAFETY: valid out-pointer.
        unsafe { f(&mut uuid, ordinal) }
    } else {
        let f = crate::driver::real::cuDeviceGetUuid()?;
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

/// Logs a refused allocation (level 3: on when asked for, off by default).
pub(crate) fn log_refusal(what: &str, e: crate::ledger::OverLimit) {
    crate::vlog!(
        3,
        "{what}: refusing {} bytes on device {}: {} of {} bytes in use",
        e.requested,
        e.device,
        e.used,
        e.limit
    );
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
