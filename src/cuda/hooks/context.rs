//! Contexts and modules: memory the driver takes with no allocation call.
//!
//! Reserve before, measure after: before a context is created (or a primary context first
//! retained) or a module loaded, an *estimate* of what the driver will take is reserved in
//! the ledger — the size this process measured for its last context on that device, else
//! [`DEFAULT_CONTEXT_BYTES`]; [`DEFAULT_MODULE_BYTES`] for a module. If the estimate does
//! not fit in the slice the call fails with `CUDA_ERROR_OUT_OF_MEMORY` and the driver is
//! never called, so whatever the slice size (3000 bytes, 1 MiB, 64 MiB, a fail-closed 0),
//! a context that cannot fit never exists, not even for an instant.
//!
//! After the driver's call the reservation is corrected to the driver's own figure: NVML's
//! used memory for this process's host pid on that device, minus the data the ledger holds,
//! minus the overhead already charged. If the measured size does not fit, the context or
//! module is destroyed again (driver first, then the credit) and the call fails with
//! out-of-memory. When the figure cannot be had (no NVML, host pid unknown, or this process
//! not in NVML's list) a conservative figure is charged, never nothing:
//! [`UNMEASURED_CONTEXT_BYTES`] for a context (or the size measured for an earlier one on
//! that device), [`DEFAULT_MODULE_BYTES`] for a module.
//! Creation, measurement and correction are serialised per process, so two concurrent
//! creations never both claim the same overhead.

use std::ffi::{c_char, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use cuda_headers::bindings::*;

use super::{contexts_changed, real_or_return};
use crate::config::MAX_DEVICES;
use crate::cuda::rt;
use crate::ledger::AllocKind;

/// Reserved before a context is created until this process has measured one on the
/// device: CUDA 12 contexts on datacenter GPUs take a few hundred MiB (the simulator's
/// default is 300 MiB), so a slice smaller than this can never hold a context.
pub const DEFAULT_CONTEXT_BYTES: u64 = 256 << 20;
/// Charged for a context whose size cannot be measured (no NVML, host pid unknown) when no
/// context was measured on the device before: on the high side of what contexts cost, so
/// an unmeasured context is over-charged rather than under-charged.
pub const UNMEASURED_CONTEXT_BYTES: u64 = 512 << 20;
/// Reserved before a module is loaded, and charged when it cannot be measured (the driver
/// maps module code and data in 2 MiB pages).
pub const DEFAULT_MODULE_BYTES: u64 = 2 << 20;

/// The last measured context cost per container device (u64::MAX: none measured yet).
static CONTEXT_BYTES_SEEN: [AtomicU64; MAX_DEVICES] =
    [const { AtomicU64::new(u64::MAX) }; MAX_DEVICES];

/// Longest a first context waits for the estimates of its container's processes starting
/// with it to shrink to the measured size (see `create_charged`).
const BURST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a process measuring its container's first context on a device holds the
/// claim, and the longest the processes starting with it wait for its figure (when their
/// charge cannot be parked) before each measuring for itself.
const FIRST_MEASURE_HOLD: std::time::Duration = crate::core::provisional::SETTLE_WAIT;

/// Serialises creation + measurement so two concurrent context/module loads never both
/// claim the same overhead.
static MEASURE: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    MEASURE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Key under which a primary context's overhead is charged (primary contexts are per
/// device; their handle is stable while retained).
fn primary_key(device: usize) -> u64 {
    0xC0DE_0000_0000_0000 | device as u64
}

/// What a context costs on container device `device` as measured by another process of
/// the container (the shared region's hint).
fn container_context_bytes(device: usize) -> Option<u64> {
    crate::core::shared_region::SharedRegion::get()?.context_bytes_hint(device)
}

/// What to reserve before creating a `kind` on container device `device`: what this
/// process measured for a context there, else what the container measured, else the
/// default.
pub fn estimate(device: usize, kind: AllocKind) -> u64 {
    estimate_from(device, kind, container_context_bytes(device))
}

fn estimate_from(device: usize, kind: AllocKind, container: Option<u64>) -> u64 {
    match kind {
        AllocKind::Context => match CONTEXT_BYTES_SEEN[device].load(Ordering::Relaxed) {
            u64::MAX => container.unwrap_or(DEFAULT_CONTEXT_BYTES),
            seen => seen,
        },
        _ => DEFAULT_MODULE_BYTES,
    }
}

/// What to charge for a `kind` on `device` that cannot be measured: the size measured for
/// the last context there, else the conservative figure.
pub fn unmeasured(device: usize, kind: AllocKind) -> u64 {
    match kind {
        AllocKind::Context => match CONTEXT_BYTES_SEEN[device].load(Ordering::Relaxed) {
            u64::MAX => UNMEASURED_CONTEXT_BYTES,
            seen => seen,
        },
        _ => DEFAULT_MODULE_BYTES,
    }
}

/// What to charge once the driver's figure `measured` (this process's total on the device,
/// `None` when it cannot be had) is known, given the ledger's `usage` before the new
/// object: the overhead not charged yet, or `fallback` when nothing was measured.
pub fn overhead_to_charge(
    measured: Option<u64>,
    usage: crate::ledger::Usage,
    fallback: u64,
) -> u64 {
    match measured {
        Some(total) => total
            .saturating_sub(usage.data)
            .saturating_sub(usage.context + usage.module),
        None => fallback,
    }
}

/// Creates a context or module (`create` returns the driver's result and the handle) with
/// its memory charged to `(kind, key_of(handle))` on CUDA ordinal `ordinal`: reserve the
/// estimate, create, measure (`measure(handle)`), correct; `undo(handle)` destroys it again
/// when the measured size does not fit. Call holding [`serial`].
fn create_charged(
    ordinal: CUdevice,
    kind: AllocKind,
    create: impl FnOnce() -> (CUresult, u64),
    key_of: impl FnOnce(u64) -> u64,
    measure: impl FnOnce(u64, usize, u64) -> Option<u64>,
    undo: impl FnOnce(u64),
) -> CUresult {
    let rt = rt();
    let Some(device) =
        crate::cuda::placement::container_index(ordinal).filter(|_| !rt.config.control_disabled)
    else {
        return create().0;
    };
    // A context charge of this process parked on the device is settled first: what is
    // measured next is told apart from it by the ledger's figures.
    crate::core::provisional::settle(device, Some(FIRST_MEASURE_HOLD));
    let deadline = std::time::Instant::now() + BURST_WAIT;
    let (mut reservation, container, estimate) = loop {
        let container = container_context_bytes(device);
        let estimate = estimate_from(device, kind, container);
        let e = match rt.ledger.reserve(device, estimate, kind) {
            Ok(r) => break (r, container, estimate),
            Err(e) => e,
        };
        if crate::core::provisional::settle_all(Some(FIRST_MEASURE_HOLD)) > 0 {
            continue;
        }
        // Processes of a container starting together all reserve the default estimate
        // before the first of them has measured a context, and some park theirs at the
        // conservative size until the figure comes (core::provisional): a slice that can
        // hold a context waits (bounded) for those charges to shrink to the measured size.
        let first_contexts = kind == AllocKind::Context
            && container.is_none()
            && CONTEXT_BYTES_SEEN[device].load(Ordering::Relaxed) == u64::MAX;
        let parked_elsewhere = crate::core::shared_region::SharedRegion::get()
            .is_some_and(|r| r.context_parked(device));
        let in_burst = (first_contexts || parked_elsewhere)
            && e.limit >= estimate
            && std::time::Instant::now() < deadline;
        if !in_burst {
            crate::core::charge::log_refusal("context/module (estimated before creation)", e);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    // Start-up at scale: a process whose container already measured a context on this
    // device, that has not opened NVML yet and whose host pid procfs tells, is charged
    // that figure without opening NVML (a library load and the driver's NVML
    // initialisation per process).
    let cheaply = kind == AllocKind::Context
        && !crate::nvml::NvmlProbe::is_open()
        && record_host_pid(crate::core::hostpid::discover_cheaply()).is_some();
    let take_containers = cheaply && container.is_some();
    // The container's first contexts on the device (its processes starting together, none
    // measured yet): one process claims the measurement — usually the one that created the
    // region, NVML open already — and the others that could start without NVML create
    // theirs meanwhile, then wait (bounded) for its figure instead of each opening NVML.
    let region = crate::core::shared_region::SharedRegion::get();
    let first = kind == AllocKind::Context
        && container.is_none()
        && CONTEXT_BYTES_SEEN[device].load(Ordering::Relaxed) == u64::MAX;
    let (measuring, follower) = match region.filter(|_| first) {
        Some(r) if r.claim_context_measurement(device, FIRST_MEASURE_HOLD) => (Some(r), None),
        Some(r) if cheaply => (None, Some(r)),
        _ => (None, None),
    };
    // Host pid discovery with no headroom: the context's creation is the signature (the
    // pid that appeared in NVML's list with it), see hostpid.rs.
    let signature = match kind {
        AllocKind::Context if !take_containers && follower.is_none() => {
            crate::core::hostpid::BeforeContext::take(|| pid_probe(ordinal), device)
        }
        AllocKind::Module => {
            crate::core::hostpid::rebase_pending();
            None
        }
        _ => None,
    };
    let (rc, handle) = create();
    if rc != CUDA_SUCCESS {
        if let Some(r) = measuring {
            r.end_context_measurement(device);
        }
        return rc;
    }
    // Several pids could be ours: the largest of their rises bounds the new context's
    // size (ours is among them), a figure the driver measured, charged when nothing
    // better can be had.
    let bound = signature.and_then(|s| s.after(&rt.ledger));
    let key = key_of(handle);
    // The container's figure: there before, or measured meanwhile by the process that
    // claimed the first measurement.
    let mut containers = container
        .filter(|_| take_containers)
        .or_else(|| follower.and_then(|r| r.context_bytes_hint(device)));
    if let (Some(r), None) = (follower, containers) {
        // Not there yet: the charge is parked at a conservative size (at least what an
        // unmeasured context is charged) and cut to the figure when it comes, rather than
        // this process waiting for the measuring one (core::provisional).
        if reservation.resize(estimate.max(UNMEASURED_CONTEXT_BYTES)) {
            match crate::core::provisional::park(device, reservation, key) {
                Ok(()) => return rc,
                Err(back) => reservation = back,
            }
        }
        // No room for that size, or a charge already parked here: wait for the figure
        // (none when the claimer gave up or ran out of time: this process then measures
        // for itself, as the claimer would have).
        containers = r.wait_for_context_bytes_hint(device, FIRST_MEASURE_HOLD);
    }
    let fallback = match (containers, bound) {
        (Some(bytes), _) => bytes,
        (None, Some(bound)) => bound,
        (None, None) => unmeasured(device, kind),
    };
    // What the driver may hold beyond the estimate until the measurement says otherwise.
    let measured = if containers.is_some() {
        None
    } else {
        measure(handle, device, fallback.saturating_sub(estimate))
    };
    if measured.is_none() && containers.is_none() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            crate::vlog!(
                crate::log::WARN,
                "context/module memory cannot be measured here: charging conservative \
                 figures ({fallback} bytes for this {kind:?})"
            )
        });
    }
    let usage = rt.ledger.usage(device);
    let bytes = overhead_to_charge(measured, usage, fallback);
    if kind == AllocKind::Context && measured.is_some() {
        CONTEXT_BYTES_SEEN[device].store(bytes, Ordering::Relaxed);
        if let Some(region) = region {
            region.set_context_bytes_hint(device, bytes);
        }
    }
    if let Some(r) = measuring {
        r.end_context_measurement(device);
    }
    if !reservation.resize(bytes) {
        // The driver's destroy first, then the credit: never more than the slice held.
        undo(handle);
        drop(reservation);
        crate::vlog!(
            3,
            "{kind:?} of {bytes} bytes does not fit in the slice on device {device}: undone"
        );
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    crate::vlog!(
        crate::log::DEBUG,
        "charged {bytes} bytes of {kind:?} overhead on device {device} (estimate {estimate}, measured {measured:?})"
    );
    reservation.commit(key);
    rc
}

/// The driver's figure for this process on a device (NVML, by host pid), if it can be
/// had: `None` without NVML, without a host pid, or when NVML does not list this process
/// (then the pid is not the one NVML knows us by, and no figure is trusted).
fn measure_process_usage(ordinal: CUdevice, device: usize, unaccounted: u64) -> Option<u64> {
    if crate::nvml::NvmlProbe::get().is_none() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            crate::vlog!(
                crate::log::WARN,
                "NVML unavailable: context and module memory cannot be measured; the \
                 conservative figures are charged"
            )
        });
        return None;
    }
    let ledger = &rt().ledger;
    crate::core::hostpid::retry_pending(ledger);
    let host_pid = record_host_pid(crate::core::hostpid::discover(
        ledger,
        || pid_probe(ordinal),
        device,
        unaccounted,
    ))?;
    let usage = crate::nvml::NvmlProbe::get()?
        .process_usage(crate::cuda::placement::nvml_index(ordinal)?)?;
    usage.get(&host_pid).copied()
}

/// NVIDIA's probe for host-pid discovery (`crate::core::hostpid`): NVML's process list of
/// the ordinal's device, and `cuMemAlloc_v2`/`cuMemFree_v2` in the current context.
fn pid_probe(ordinal: CUdevice) -> Option<crate::core::hostpid::PidProbe> {
    crate::nvml::NvmlProbe::get()?;
    let index = crate::cuda::placement::nvml_index(ordinal)?;
    crate::cuda::real::cuMemAlloc_v2()?;
    crate::cuda::real::cuMemFree_v2()?;
    Some(crate::core::hostpid::PidProbe {
        index,
        usage: |index| crate::nvml::NvmlProbe::get()?.process_usage(index),
        alloc: probe_alloc,
        free: probe_free,
    })
}

fn probe_alloc(bytes: u64) -> Option<u64> {
    let alloc = crate::cuda::real::cuMemAlloc_v2()?;
    let mut ptr: CUdeviceptr = 0;
    // SAFETY: a plain allocation in the caller's current context, freed by `probe_free`.
    (unsafe { alloc(&mut ptr, bytes as usize) } == CUDA_SUCCESS).then_some(ptr)
}

fn probe_free(ptr: u64) {
    if let Some(free) = crate::cuda::real::cuMemFree_v2() {
        // SAFETY: `ptr` is the probe `probe_alloc` just allocated.
        unsafe { free(ptr) };
    }
}

/// Publishes a discovered host pid in this process's slot (the monitor and the
/// container's NVML process lists read it).
fn record_host_pid(pid: Option<u32>) -> Option<u32> {
    if let (Some(pid), Some(shared)) = (pid, crate::core::shared_region::SharedRegion::get()) {
        shared.set_host_pid(pid);
    }
    pid
}

fn destroy_context(ctx: u64) {
    if let Some(destroy) = crate::cuda::real::cuCtxDestroy_v2() {
        // SAFETY: destroying the context the driver just created for us.
        unsafe { destroy(ctx as CUcontext) };
    }
    contexts_changed();
}

/// `cuCtxCreate*`: the new context is current on this thread (the probe, if any, uses it).
unsafe fn ctx_create(
    pctx: *mut CUcontext,
    dev: CUdevice,
    real: impl FnOnce() -> CUresult,
) -> CUresult {
    let _serial = serial();
    let rc = create_charged(
        dev,
        AllocKind::Context,
        || {
            let rc = real();
            let ctx = if rc == CUDA_SUCCESS && !pctx.is_null() {
                // SAFETY: filled by the driver on success.
                unsafe { *pctx as u64 }
            } else {
                0
            };
            (rc, ctx)
        },
        |ctx| ctx,
        |_, device, unaccounted| measure_process_usage(dev, device, unaccounted),
        destroy_context,
    );
    if rc == CUDA_ERROR_OUT_OF_MEMORY && !pctx.is_null() {
        // SAFETY: caller's out-pointer.
        unsafe { *pctx = std::ptr::null_mut() };
    }
    rc
}

pub unsafe fn cuCtxCreate_v2(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v2);
    // SAFETY: `pctx` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `ctx_create` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { ctx_create(pctx, dev, || real(pctx, flags, dev)) }
}

pub unsafe fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params: *mut c_void,
    n: std::ffi::c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v3);
    // SAFETY: `pctx` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `ctx_create` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { ctx_create(pctx, dev, || real(pctx, params, n, flags, dev)) }
}

pub unsafe fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    params: *mut c_void,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real_or_return!(cuCtxCreate_v4);
    // SAFETY: `pctx` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `ctx_create` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { ctx_create(pctx, dev, || real(pctx, params, flags, dev)) }
}

pub unsafe fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    let real = real_or_return!(cuCtxDestroy_v2);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(ctx) };
    if rc == CUDA_SUCCESS {
        // The driver freed everything the context owned.
        let ledger = &rt().ledger;
        ledger.release(AllocKind::Context, ctx as u64);
        crate::core::provisional::forget_key(ctx as u64);
        ledger.release_owned_by(ctx as u64);
        contexts_changed();
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRetain);
    let rt = rt();
    let Some(device) = crate::cuda::placement::container_index(dev) else {
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires.
        return unsafe { real(pctx, dev) };
    };
    let _serial = serial();
    if rt.primary_refs[device].load(Ordering::Acquire) > 0 {
        // A live primary context: already charged.
        // SAFETY: `real` is the real driver function of this row, called with our caller's
        // arguments under the CUDA contract this hook itself requires.
        let rc = unsafe { real(pctx, dev) };
        if rc == CUDA_SUCCESS {
            rt.primary_refs[device].fetch_add(1, Ordering::AcqRel);
        }
        return rc;
    }
    let release = || {
        if let Some(release) = crate::cuda::real::cuDevicePrimaryCtxRelease_v2()
            .or(crate::cuda::real::cuDevicePrimaryCtxRelease())
        {
            // SAFETY: giving back the reference just taken (the driver frees the context
            // at zero).
            unsafe { release(dev) };
        }
        contexts_changed();
    };
    let rc = create_charged(
        dev,
        AllocKind::Context,
        || {
            // SAFETY: the caller's out-pointer.
            let rc = unsafe { real(pctx, dev) };
            let ctx = if rc == CUDA_SUCCESS && !pctx.is_null() {
                // SAFETY: filled by the driver on success.
                unsafe { *pctx as u64 }
            } else {
                0
            };
            (rc, ctx)
        },
        |_| primary_key(device),
        |ctx, device, unaccounted| {
            // Measuring may need the context current on this thread (the NVML probe).
            let pushed = crate::cuda::real::cuCtxPushCurrent_v2()
                // SAFETY: the context the driver just gave us.
                .is_some_and(|push| unsafe { push(ctx as CUcontext) } == CUDA_SUCCESS);
            let measured = measure_process_usage(dev, device, unaccounted);
            if pushed {
                if let Some(pop) = crate::cuda::real::cuCtxPopCurrent_v2() {
                    let mut popped: CUcontext = std::ptr::null_mut();
                    // SAFETY: popping what we pushed.
                    unsafe { pop(&mut popped) };
                }
            }
            measured
        },
        |_| release(),
    );
    if rc == CUDA_SUCCESS {
        rt.primary_refs[device].fetch_add(1, Ordering::AcqRel);
    } else if rc == CUDA_ERROR_OUT_OF_MEMORY && !pctx.is_null() {
        // SAFETY: caller's out-pointer.
        unsafe { *pctx = std::ptr::null_mut() };
    }
    rc
}

/// The primary context went away (last release, or reset): credit its overhead and all
/// memory allocated in it.
fn primary_gone(dev: CUdevice, ctx: Option<CUcontext>) {
    let rt = rt();
    if let Some(device) = crate::cuda::placement::container_index(dev) {
        rt.ledger.release(AllocKind::Context, primary_key(device));
        crate::core::provisional::forget(device, primary_key(device));
    }
    if let Some(ctx) = ctx {
        rt.ledger.release_owned_by(ctx as u64);
    }
    contexts_changed();
}

/// The primary context of a device, if it is active (without retaining it).
fn active_primary(dev: CUdevice) -> Option<CUcontext> {
    let state = crate::cuda::real::cuDevicePrimaryCtxGetState()?;
    let retain = crate::cuda::real::cuDevicePrimaryCtxRetain()?;
    let release = crate::cuda::real::cuDevicePrimaryCtxRelease_v2()
        .or(crate::cuda::real::cuDevicePrimaryCtxRelease())?;
    let (mut flags, mut active) = (0u32, 0i32);
    let mut ctx: CUcontext = std::ptr::null_mut();
    // SAFETY: plain queries; the extra reference is given back at once.
    unsafe {
        if state(dev, &mut flags, &mut active) != CUDA_SUCCESS || active == 0 {
            return None;
        }
        if retain(&mut ctx, dev) != CUDA_SUCCESS {
            return None;
        }
        release(dev);
    }
    Some(ctx)
}

unsafe fn primary_release(rc_of: impl FnOnce() -> CUresult, dev: CUdevice) -> CUresult {
    let rt = rt();
    let ctx = active_primary(dev);
    let rc = rc_of();
    if rc != CUDA_SUCCESS {
        return rc;
    }
    let Some(device) = crate::cuda::placement::container_index(dev) else {
        return rc;
    };
    let before = rt.primary_refs[device]
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            Some(r.saturating_sub(1))
        })
        .unwrap_or(0);
    if before <= 1 {
        primary_gone(dev, ctx);
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRelease);
    // SAFETY: `primary_release` only calls the closure, which calls the real driver function of
    // this row with our caller's device (a plain value).
    unsafe { primary_release(|| real(dev), dev) }
}

pub unsafe fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxRelease_v2);
    // SAFETY: `primary_release` only calls the closure, which calls the real driver function of
    // this row with our caller's device (a plain value).
    unsafe { primary_release(|| real(dev), dev) }
}

unsafe fn primary_reset(rc_of: impl FnOnce() -> CUresult, dev: CUdevice) -> CUresult {
    let ctx = active_primary(dev);
    let rc = rc_of();
    if rc == CUDA_SUCCESS {
        primary_gone(dev, ctx);
    }
    rc
}

pub unsafe fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxReset);
    // SAFETY: `primary_reset` only calls the closure, which calls the real driver function of this
    // row with our caller's device (a plain value).
    unsafe { primary_reset(|| real(dev), dev) }
}

pub unsafe fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    let real = real_or_return!(cuDevicePrimaryCtxReset_v2);
    // SAFETY: `primary_reset` only calls the closure, which calls the real driver function of this
    // row with our caller's device (a plain value).
    unsafe { primary_reset(|| real(dev), dev) }
}

// ---- modules ------------------------------------------------------------------------------

/// Loads a module (`real` fills `module`) with its memory charged to the current device.
unsafe fn module_load(module: *mut CUmodule, real: impl FnOnce() -> CUresult) -> CUresult {
    let Some(place) = super::current_placement() else {
        return real();
    };
    let _serial = serial();
    let rc = create_charged(
        place.ordinal,
        AllocKind::Module,
        || {
            let rc = real();
            let m = if rc == CUDA_SUCCESS && !module.is_null() {
                // SAFETY: filled by the driver on success.
                unsafe { *module as u64 }
            } else {
                0
            };
            (rc, m)
        },
        |m| m,
        |_, device, unaccounted| measure_process_usage(place.ordinal, device, unaccounted),
        |m| {
            if let Some(unload) = crate::cuda::real::cuModuleUnload() {
                // SAFETY: unloading the module the driver just loaded for us.
                unsafe { unload(m as CUmodule) };
            }
        },
    );
    if rc == CUDA_ERROR_OUT_OF_MEMORY && !module.is_null() {
        // SAFETY: caller's out-pointer.
        unsafe { *module = std::ptr::null_mut() };
    }
    rc
}

pub unsafe fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) -> CUresult {
    let real = real_or_return!(cuModuleLoad);
    // SAFETY: `module` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `module_load` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { module_load(module, || real(module, fname)) }
}

pub unsafe fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    let real = real_or_return!(cuModuleLoadData);
    // SAFETY: `module` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `module_load` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { module_load(module, || real(module, image)) }
}

pub unsafe fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    n: c_uint,
    options: *mut CUjit_option,
    values: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuModuleLoadDataEx);
    // SAFETY: `module` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `module_load` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { module_load(module, || real(module, image, n, options, values)) }
}

pub unsafe fn cuModuleLoadFatBinary(module: *mut CUmodule, fat: *const c_void) -> CUresult {
    let real = real_or_return!(cuModuleLoadFatBinary);
    // SAFETY: `module` is the caller's out-pointer (null or valid for writes by its CUDA contract),
    // which `module_load` needs; the closure calls the real driver function of this row with the
    // caller's arguments under that contract.
    unsafe { module_load(module, || real(module, fat)) }
}

pub unsafe fn cuModuleUnload(module: CUmodule) -> CUresult {
    let real = real_or_return!(cuModuleUnload);
    // SAFETY: `real` is the real driver function of this row, called with our caller's arguments
    // under the CUDA contract this hook itself requires.
    let rc = unsafe { real(module) };
    if rc == CUDA_SUCCESS {
        rt().ledger.release(AllocKind::Module, module as u64);
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Usage;

    #[test]
    fn what_is_charged_after_creation() {
        let none = Usage::default();
        // Measured: the driver's figure beyond data and overhead already charged.
        assert_eq!(
            overhead_to_charge(Some(300 << 20), none, 256 << 20),
            300 << 20
        );
        let held = Usage {
            data: 10 << 20,
            context: 300 << 20,
            module: 0,
        };
        assert_eq!(overhead_to_charge(Some(312 << 20), held, 2 << 20), 2 << 20);
        // Concurrent data not counted yet can only make the figure larger than true, and
        // a figure below what is charged charges nothing more.
        assert_eq!(overhead_to_charge(Some(5 << 20), held, 2 << 20), 0);
        // Nothing measured: the conservative figure, never nothing.
        assert_eq!(overhead_to_charge(None, held, 512 << 20), 512 << 20);
    }

    #[test]
    fn estimates_learn_the_measured_context_cost() {
        let dev = MAX_DEVICES - 1;
        assert_eq!(estimate(dev, AllocKind::Context), DEFAULT_CONTEXT_BYTES);
        assert_eq!(estimate(dev, AllocKind::Module), DEFAULT_MODULE_BYTES);
        assert_eq!(
            unmeasured(dev, AllocKind::Context),
            UNMEASURED_CONTEXT_BYTES
        );
        assert_eq!(unmeasured(dev, AllocKind::Module), DEFAULT_MODULE_BYTES);
        CONTEXT_BYTES_SEEN[dev].store(64 << 20, Ordering::Relaxed);
        assert_eq!(estimate(dev, AllocKind::Context), 64 << 20);
        assert_eq!(unmeasured(dev, AllocKind::Context), 64 << 20);
        CONTEXT_BYTES_SEEN[dev].store(u64::MAX, Ordering::Relaxed);
    }
}
