//! Streams, events, launches (the device timeline), host functions and graphs.

use super::put;
use crate::rt::{
    self, code, cur_ctx, lock, rt, stream_obj, Ctx, Node, Res, Runtime, Stream, EVENTS, EXECS,
    FUNCS, GRAPHS, STREAMS,
};
use cuda_headers::prelude::*;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{mpsc, Mutex, OnceLock};
use vgpu_sim_core::clock;

// ---- the timeline ---------------------------------------------------------------------

/// Puts `cost` ns of work on the device of `c`, on stream `s` (None: the default stream).
fn submit(r: &Runtime, c: &Ctx, s: Option<&Stream>, cost: u64) -> CUresult {
    if cost == 0 {
        return CUDA_SUCCESS;
    }
    let dev = c.dev.load(Relaxed);
    let not_before = s.map(|s| s.wait_until.load(Relaxed)).unwrap_or(0);
    let now = clock::mono_ns();
    let end = match r.with_state(|g| g.launch(r.slot, dev, cost, not_before, now)) {
        Ok(e) => e,
        Err(e) => return e,
    };
    if let Some(s) = s {
        s.last_end.fetch_max(end, AcqRel);
    }
    c.last_end.fetch_max(end, AcqRel);
    CUDA_SUCCESS
}

/// The common launch path. With zero device time it validates and returns without taking
/// any lock or allocating.
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn launch(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    smem: c_uint,
    h_stream: CUstream,
    cooperative: bool,
) -> CUresult {
    let r = match rt() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (ch, c, inst) = match cur_ctx() {
        Ok(x) => x,
        Err(e) => return e,
    };
    match FUNCS.get(f as u64) {
        Some(fo) if fo.inst.load(Relaxed) == inst && fo.ctx.load(Relaxed) == ch => {}
        _ => return CUDA_ERROR_INVALID_HANDLE,
    }
    if gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let threads = bx as u64 * by as u64 * bz as u64;
    if bx > 1024
        || by > 1024
        || bz > 64
        || threads > 1024
        || gx > i32::MAX as u32
        || gy > 65535
        || gz > 65535
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let s = match stream_obj(h_stream) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Some(s) = s {
        if s.inst.load(Relaxed) != inst {
            return CUDA_ERROR_INVALID_HANDLE;
        }
    }
    let blocks = gx as u64 * gy as u64 * gz as u64;
    if smem > 0 || cooperative {
        let info = &r.shm.devices()[c.dev.load(Relaxed) as usize];
        if smem > info.smem_optin {
            return CUDA_ERROR_INVALID_VALUE;
        }
        if cooperative {
            let per_sm = (info.threads_per_sm as u64 / threads.div_ceil(32).max(1) / 32).min(32);
            if blocks > per_sm * info.sms as u64 {
                return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
            }
        }
    }
    if let Some(s) = s {
        if s.capturing.load(Acquire) {
            lock(&s.captured).push(Node {
                func: f as u64,
                blocks,
            });
            return CUDA_SUCCESS;
        }
    }
    if r.costs.zero() {
        return CUDA_SUCCESS;
    }
    submit(r, c, s, r.costs.kernel_cost(blocks))
}

pub unsafe fn cuLaunchKernel(
    f: CUfunction,
    grid_dim_x: c_uint,
    grid_dim_y: c_uint,
    grid_dim_z: c_uint,
    block_dim_x: c_uint,
    block_dim_y: c_uint,
    block_dim_z: c_uint,
    shared_mem_bytes: c_uint,
    h_stream: CUstream,
    _kernel_params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> CUresult {
    // SAFETY: `launch` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe {
        launch(
            f,
            grid_dim_x,
            grid_dim_y,
            grid_dim_z,
            block_dim_x,
            block_dim_y,
            block_dim_z,
            shared_mem_bytes,
            h_stream,
            false,
        )
    }
}

pub unsafe fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    f: CUfunction,
    _kernel_params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> CUresult {
    if config.is_null() {
        return if rt().is_err() {
            CUDA_ERROR_NOT_INITIALIZED
        } else {
            CUDA_ERROR_INVALID_VALUE
        };
    }
    // SAFETY: `config` is an input-struct argument, checked non-NULL above; by the C API's contract
    // it points at an initialised struct that outlives this call.
    let c = unsafe { &*config };
    if c.numAttrs > 0 && c.attrs.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let mut cooperative = false;
    if c.numAttrs > 0 {
        // SAFETY: `attrs` is checked non-NULL above with `numAttrs` > 0; by the C API's contract it
        // is an array of `numAttrs` initialised attributes that outlives this call.
        for a in unsafe { std::slice::from_raw_parts(c.attrs, c.numAttrs as usize) } {
            // SAFETY: read only when `id` says COOPERATIVE, the member the caller set; any
            // initialised bytes are a valid `c_int` anyway.
            if a.id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE && unsafe { a.value.cooperative } != 0 {
                cooperative = true;
            }
        }
    }
    // SAFETY: `launch` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe {
        launch(
            f,
            c.gridDimX,
            c.gridDimY,
            c.gridDimZ,
            c.blockDimX,
            c.blockDimY,
            c.blockDimZ,
            c.sharedMemBytes,
            c.hStream,
            cooperative,
        )
    }
}

pub unsafe fn cuLaunchCooperativeKernel(
    f: CUfunction,
    grid_dim_x: c_uint,
    grid_dim_y: c_uint,
    grid_dim_z: c_uint,
    block_dim_x: c_uint,
    block_dim_y: c_uint,
    block_dim_z: c_uint,
    shared_mem_bytes: c_uint,
    h_stream: CUstream,
    _kernel_params: *mut *mut c_void,
) -> CUresult {
    // SAFETY: `launch` requires only what our own caller guarantees: the pointer arguments are
    // passed on unchanged, valid as the C API specifies.
    unsafe {
        launch(
            f,
            grid_dim_x,
            grid_dim_y,
            grid_dim_z,
            block_dim_x,
            block_dim_y,
            block_dim_z,
            shared_mem_bytes,
            h_stream,
            true,
        )
    }
}

// ---- host functions ---------------------------------------------------------------------

struct HostJob {
    due: u64,
    f: unsafe extern "C" fn(*mut c_void),
    data: usize,
    counters: Vec<&'static AtomicU32>,
}

/// One helper thread runs host functions in submission order, each once its stream's
/// earlier work has ended.
fn host_queue() -> &'static Mutex<mpsc::Sender<HostJob>> {
    static Q: OnceLock<Mutex<mpsc::Sender<HostJob>>> = OnceLock::new();
    Q.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<HostJob>();
        std::thread::Builder::new()
            .name("vgpu-sim-hostfn".into())
            .spawn(move || {
                for job in rx {
                    clock::sleep_until(job.due);
                    let f = job.f;
                    let data = job.data;
                    // SAFETY: the user's callback with the user's data, as cuLaunchHostFunc
                    // promises.
                    let _ = std::panic::catch_unwind(|| unsafe { f(data as *mut c_void) });
                    for c in job.counters {
                        c.fetch_sub(1, Release);
                    }
                }
            })
            .expect("spawn host function thread");
        Mutex::new(tx)
    })
}

pub unsafe fn cuLaunchHostFunc(
    h_stream: CUstream,
    func: CUhostFn,
    user_data: *mut c_void,
) -> CUresult {
    code((|| {
        rt()?;
        let f = func.ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let s = stream_obj(h_stream)?;
        let c: &'static Ctx = match s {
            Some(s) => rt::ctx_obj(s.ctx.load(Relaxed))?.0,
            None => cur_ctx()?.1,
        };
        if s.is_some_and(|s| s.capturing.load(Acquire)) {
            return Ok(());
        }
        let due = s
            .map(|s| s.last_end.load(Acquire))
            .unwrap_or_else(|| c.last_end.load(Acquire));
        let mut counters: Vec<&'static AtomicU32> = vec![&c.pending_host];
        if let Some(s) = s {
            counters.push(&s.pending_host);
        }
        for x in &counters {
            x.fetch_add(1, AcqRel);
        }
        let job = HostJob {
            due,
            f,
            data: user_data as usize,
            counters,
        };
        if let Err(mpsc::SendError(job)) = lock(host_queue()).send(job) {
            for x in job.counters {
                x.fetch_sub(1, Release);
            }
            return Err(CUDA_ERROR_UNKNOWN);
        }
        Ok(())
    })())
}

// ---- streams ------------------------------------------------------------------------------

unsafe fn stream_create(ph: *mut CUstream, flags: c_uint, priority: c_int) -> Res {
    rt()?;
    if ph.is_null() || flags & !CU_STREAM_NON_BLOCKING != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let (h, _, inst) = cur_ctx()?;
    let s = STREAMS
        .create(|s| {
            s.ctx.store(h, Relaxed);
            s.inst.store(inst, Relaxed);
            s.flags.store(flags, Relaxed);
            s.priority.store(priority.clamp(-5, 0), Relaxed);
            s.last_end.store(0, Relaxed);
            s.wait_until.store(0, Relaxed);
            s.pending_host.store(0, Relaxed);
            s.capturing.store(false, Relaxed);
            lock(&s.captured).clear();
        })
        .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    // SAFETY: `ph` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL one
    // is valid for a write by the caller's contract.
    unsafe { put(ph, s as CUstream) }
}

pub unsafe fn cuStreamCreate(ph_stream: *mut CUstream, flags: c_uint) -> CUresult {
    // SAFETY: `stream_create` requires only what our own caller guarantees: the pointer arguments
    // are passed on unchanged, valid as the C API specifies.
    code(unsafe { stream_create(ph_stream, flags, 0) })
}

pub unsafe fn cuStreamCreateWithPriority(
    ph_stream: *mut CUstream,
    flags: c_uint,
    priority: c_int,
) -> CUresult {
    // SAFETY: `stream_create` requires only what our own caller guarantees: the pointer arguments
    // are passed on unchanged, valid as the C API specifies.
    code(unsafe { stream_create(ph_stream, flags, priority) })
}

pub unsafe fn cuStreamDestroy_v2(h_stream: CUstream) -> CUresult {
    code((|| {
        rt()?;
        if stream_obj(h_stream)?.is_none() || !STREAMS.destroy(h_stream as u64) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        Ok(())
    })())
}

/// `(end of pending work, host-function counters)` of a stream argument.
fn stream_pending(s: Option<&'static Stream>) -> Res<(u64, Vec<&'static AtomicU32>)> {
    Ok(match s {
        Some(s) => (s.last_end.load(Acquire), vec![&s.pending_host]),
        None => {
            let (_, c, _) = cur_ctx()?;
            (c.last_end.load(Acquire), vec![&c.pending_host])
        }
    })
}

pub unsafe fn cuStreamSynchronize(h_stream: CUstream) -> CUresult {
    code((|| {
        rt()?;
        let s = stream_obj(h_stream)?;
        if s.is_some_and(|s| s.capturing.load(Acquire)) {
            return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        let (end, counters) = stream_pending(s)?;
        rt::wait_for(end, &counters);
        Ok(())
    })())
}

pub unsafe fn cuStreamQuery(h_stream: CUstream) -> CUresult {
    code((|| {
        rt()?;
        let s = stream_obj(h_stream)?;
        let (end, counters) = stream_pending(s)?;
        if clock::mono_ns() < end || counters.iter().any(|c| c.load(Acquire) > 0) {
            return Err(CUDA_ERROR_NOT_READY);
        }
        Ok(())
    })())
}

pub unsafe fn cuStreamWaitEvent(h_stream: CUstream, h_event: CUevent, _flags: c_uint) -> CUresult {
    code((|| {
        rt()?;
        let e = EVENTS
            .get(h_event as u64)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let s = stream_obj(h_stream)?;
        if s.is_none() {
            cur_ctx()?;
        }
        if let Some(s) = s {
            s.wait_until.fetch_max(e.time.load(Acquire), AcqRel);
        }
        Ok(())
    })())
}

pub unsafe fn cuStreamGetPriority(h_stream: CUstream, priority: *mut c_int) -> CUresult {
    code((|| {
        rt()?;
        if priority.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let v = match stream_obj(h_stream)? {
            Some(s) => s.priority.load(Relaxed),
            None => 0,
        };
        // SAFETY: `priority` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(priority, v) }
    })())
}

pub unsafe fn cuStreamGetFlags(h_stream: CUstream, flags: *mut c_uint) -> CUresult {
    code((|| {
        rt()?;
        if flags.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let v = match stream_obj(h_stream)? {
            Some(s) => s.flags.load(Relaxed),
            None => 0,
        };
        // SAFETY: `flags` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(flags, v) }
    })())
}

pub unsafe fn cuStreamBeginCapture_v2(h_stream: CUstream, mode: CUstreamCaptureMode) -> CUresult {
    code((|| {
        rt()?;
        if mode > CU_STREAM_CAPTURE_MODE_RELAXED {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let s = stream_obj(h_stream)?.ok_or(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)?;
        let mut nodes = lock(&s.captured);
        if s.capturing.load(Acquire) {
            return Err(CUDA_ERROR_ILLEGAL_STATE);
        }
        nodes.clear();
        s.capturing.store(true, Release);
        Ok(())
    })())
}

pub unsafe fn cuStreamEndCapture(h_stream: CUstream, ph_graph: *mut CUgraph) -> CUresult {
    code((|| {
        rt()?;
        if ph_graph.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let s = stream_obj(h_stream)?.ok_or(CUDA_ERROR_ILLEGAL_STATE)?;
        let nodes = {
            let mut n = lock(&s.captured);
            if !s.capturing.swap(false, AcqRel) {
                return Err(CUDA_ERROR_ILLEGAL_STATE);
            }
            std::mem::take(&mut *n)
        };
        let g = GRAPHS
            .create(|g| *lock(&g.nodes) = nodes)
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `ph_graph` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph, g as CUgraph) }
    })())
}

// ---- events ------------------------------------------------------------------------------

pub unsafe fn cuEventCreate(ph_event: *mut CUevent, flags: c_uint) -> CUresult {
    code((|| {
        rt()?;
        if ph_event.is_null() || flags & !0x7 != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (h, _, inst) = cur_ctx()?;
        let e = EVENTS
            .create(|e| {
                e.ctx.store(h, Relaxed);
                e.inst.store(inst, Relaxed);
                e.flags.store(flags, Relaxed);
                e.time.store(0, Relaxed);
            })
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `ph_event` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_event, e as CUevent) }
    })())
}

pub unsafe fn cuEventRecord(h_event: CUevent, h_stream: CUstream) -> CUresult {
    code((|| {
        rt()?;
        let e = EVENTS
            .get(h_event as u64)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let s = stream_obj(h_stream)?;
        if s.is_some_and(|s| s.capturing.load(Acquire)) {
            return Ok(());
        }
        let (end, _) = stream_pending(s)?;
        e.time.store(end.max(clock::mono_ns()), Release);
        Ok(())
    })())
}

pub unsafe fn cuEventQuery(h_event: CUevent) -> CUresult {
    code((|| {
        rt()?;
        let e = EVENTS
            .get(h_event as u64)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        if clock::mono_ns() < e.time.load(Acquire) {
            return Err(CUDA_ERROR_NOT_READY);
        }
        Ok(())
    })())
}

pub unsafe fn cuEventSynchronize(h_event: CUevent) -> CUresult {
    code((|| {
        rt()?;
        let e = EVENTS
            .get(h_event as u64)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        clock::sleep_until(e.time.load(Acquire));
        Ok(())
    })())
}

pub unsafe fn cuEventElapsedTime(
    p_milliseconds: *mut f32,
    h_start: CUevent,
    h_end: CUevent,
) -> CUresult {
    code((|| {
        rt()?;
        if p_milliseconds.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let a = EVENTS
            .get(h_start as u64)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let b = EVENTS.get(h_end as u64).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        if (a.flags.load(Relaxed) | b.flags.load(Relaxed)) & CU_EVENT_DISABLE_TIMING != 0 {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let (ta, tb) = (a.time.load(Acquire), b.time.load(Acquire));
        if ta == 0 || tb == 0 {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        if clock::mono_ns() < ta.max(tb) {
            return Err(CUDA_ERROR_NOT_READY);
        }
        // SAFETY: `?` is an out-pointer argument of the C API: `put` rejects NULL, and a non-NULL
        // one is valid for a write by the caller's contract.
        unsafe {
            put(
                p_milliseconds,
                ((tb as i128 - ta as i128) as f64 / 1e6) as f32,
            )
        }
    })())
}

/// CUDA 12.8's variant: same contract, what `cuGetProcAddress` gives from version 12080.
pub unsafe fn cuEventElapsedTime_v2(
    p_milliseconds: *mut f32,
    h_start: CUevent,
    h_end: CUevent,
) -> CUresult {
    // SAFETY: the same arguments, passed on unchanged to the entry point with this contract.
    unsafe { cuEventElapsedTime(p_milliseconds, h_start, h_end) }
}

pub unsafe fn cuEventDestroy_v2(h_event: CUevent) -> CUresult {
    code((|| {
        rt()?;
        if !EVENTS.destroy(h_event as u64) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        Ok(())
    })())
}

// ---- graphs -------------------------------------------------------------------------------

pub unsafe fn cuGraphCreate(ph_graph: *mut CUgraph, flags: c_uint) -> CUresult {
    code((|| {
        rt()?;
        if ph_graph.is_null() || flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let g = GRAPHS
            .create(|g| {
                lock(&g.nodes).clear();
                lock(&g.allocs).clear();
            })
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `ph_graph` is an out-pointer argument of the C API: `put` rejects NULL, and a
        // non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph, g as CUgraph) }
    })())
}

pub unsafe fn cuGraphDestroy(h_graph: CUgraph) -> CUresult {
    code((|| {
        let r = rt()?;
        let allocs = match GRAPHS.get(h_graph as u64) {
            Some(g) => std::mem::take(&mut *lock(&g.allocs)),
            None => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        if !GRAPHS.destroy(h_graph as u64) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // Graph memory not freed by the application goes with the graph.
        for p in allocs {
            let _ = super::mem::free_local(r, p, &[vgpu_sim_core::alloc::kind::ASYNC]);
        }
        Ok(())
    })())
}

pub unsafe fn cuGraphAddMemAllocNode(
    ph_graph_node: *mut CUgraphNode,
    h_graph: CUgraph,
    dependencies: *const CUgraphNode,
    num_dependencies: usize,
    node_params: *mut CUDA_MEM_ALLOC_NODE_PARAMS,
) -> CUresult {
    code((|| {
        let r = rt()?;
        cur_ctx()?;
        if ph_graph_node.is_null()
            || node_params.is_null()
            || (num_dependencies > 0 && dependencies.is_null())
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let g = GRAPHS.get(h_graph as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: `node_params` is an input-struct argument, checked non-NULL above; by the C API's
        // contract it points at an initialised struct that outlives this call.
        let params = unsafe { &mut *node_params };
        if params.bytesize == 0 || params.poolProps.location.type_ != CU_MEM_LOCATION_TYPE_DEVICE {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = super::mem::linear_alloc(
            r,
            vgpu_sim_core::alloc::kind::ASYNC,
            params.bytesize as u64,
            0,
        )?;
        params.dptr = p;
        lock(&g.allocs).push(p);
        // SAFETY: `ph_graph_node` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph_node, rt::new_node_handle() as CUgraphNode) }
    })())
}

pub unsafe fn cuGraphAddMemFreeNode(
    ph_graph_node: *mut CUgraphNode,
    h_graph: CUgraph,
    dependencies: *const CUgraphNode,
    num_dependencies: usize,
    dptr: CUdeviceptr,
) -> CUresult {
    code((|| {
        rt()?;
        if ph_graph_node.is_null() || dptr == 0 || (num_dependencies > 0 && dependencies.is_null())
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        GRAPHS.get(h_graph as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // The freed memory returns to the graph's pool, which the driver keeps until the
        // graph is destroyed (or trimmed): nothing changes on the device here.
        // SAFETY: `ph_graph_node` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph_node, rt::new_node_handle() as CUgraphNode) }
    })())
}

pub unsafe fn cuGraphAddKernelNode_v2(
    ph_graph_node: *mut CUgraphNode,
    h_graph: CUgraph,
    dependencies: *const CUgraphNode,
    num_dependencies: usize,
    node_params: *const CUDA_KERNEL_NODE_PARAMS,
) -> CUresult {
    code((|| {
        rt()?;
        if ph_graph_node.is_null()
            || node_params.is_null()
            || (num_dependencies > 0 && dependencies.is_null())
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let g = GRAPHS.get(h_graph as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: `node_params` is an input-struct argument, checked non-NULL above; by the C API's
        // contract it points at an initialised struct that outlives this call.
        let p = unsafe { &*node_params };
        let func = if !p.func.is_null() {
            p.func as u64
        } else {
            p.kern as u64
        };
        if func == 0 || (!p.func.is_null() && !FUNCS.is_live(func)) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if p.gridDimX == 0
            || p.gridDimY == 0
            || p.gridDimZ == 0
            || p.blockDimX == 0
            || p.blockDimY == 0
            || p.blockDimZ == 0
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let blocks = p.gridDimX as u64 * p.gridDimY as u64 * p.gridDimZ as u64;
        lock(&g.nodes).push(Node { func, blocks });
        // SAFETY: `ph_graph_node` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph_node, rt::new_node_handle() as CUgraphNode) }
    })())
}

pub unsafe fn cuGraphInstantiateWithFlags(
    ph_graph_exec: *mut CUgraphExec,
    h_graph: CUgraph,
    _flags: c_ulonglong,
) -> CUresult {
    code((|| {
        rt()?;
        if ph_graph_exec.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let g = GRAPHS.get(h_graph as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let nodes = lock(&g.nodes).clone();
        let e = EXECS
            .create(|e| *lock(&e.nodes) = nodes)
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: `ph_graph_exec` is an out-pointer argument of the C API: `put` rejects NULL, and
        // a non-NULL one is valid for a write by the caller's contract.
        unsafe { put(ph_graph_exec, e as CUgraphExec) }
    })())
}

pub unsafe fn cuGraphExecDestroy(h_graph_exec: CUgraphExec) -> CUresult {
    code((|| {
        rt()?;
        if !EXECS.destroy(h_graph_exec as u64) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(())
    })())
}

/// A graph launch costs the sum of its kernel nodes' costs, as one piece of device work.
pub unsafe fn cuGraphLaunch(h_graph_exec: CUgraphExec, h_stream: CUstream) -> CUresult {
    code((|| {
        let r = rt()?;
        let (_, c, inst) = cur_ctx()?;
        let e = EXECS
            .get(h_graph_exec as u64)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let s = stream_obj(h_stream)?;
        if s.is_some_and(|s| s.inst.load(Relaxed) != inst) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let nodes = lock(&e.nodes);
        if let Some(s) = s {
            if s.capturing.load(Acquire) {
                lock(&s.captured).extend(nodes.iter().copied());
                return Ok(());
            }
        }
        if r.costs.zero() {
            return Ok(());
        }
        let cost: u64 = nodes
            .iter()
            .map(|n| r.costs.kernel_cost(n.blocks))
            .fold(0, u64::saturating_add);
        drop(nodes);
        code_to_res(submit(r, c, s, cost))
    })())
}

fn code_to_res(c: CUresult) -> Res {
    if c == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(c)
    }
}
