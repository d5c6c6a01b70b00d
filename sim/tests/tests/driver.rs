//! The simulated libcuda end to end, through every client style (linked, linked against the
//! real cuda.h, dlopen+dlsym, cuGetProcAddress_v2 with flags 0 and 2): devices, attributes,
//! primary contexts, every allocation path measured with cuMemGetInfo, streams, events,
//! launches, graphs, and the error codes of bad input.

mod common;
use common::*;

/// One `#[test]` per client style for a scenario function `fn(Style)`.
macro_rules! per_style {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;
            #[test]
            fn linked() {
                super::$scenario(Style::Linked)
            }
            #[test]
            fn linked_real_headers() {
                super::$scenario(Style::LinkedRealHeaders)
            }
            #[test]
            fn dlopen() {
                super::$scenario(Style::Dlopen)
            }
            #[test]
            fn procaddr() {
                super::$scenario(Style::Procaddr)
            }
            #[test]
            fn procaddr_ptds() {
                super::$scenario(Style::ProcaddrPtds)
            }
        }
    };
}

fn info(style: Style) {
    let env = SimEnv::new();
    let Some(kv) = driver_ok(&env, style, &["info"]) else {
        return;
    };
    let ver = kv.i64("driver_version");
    assert!((12000..14000).contains(&ver), "driver version {ver}");
    assert_eq!(kv.i64("count"), 1);
    assert_eq!(kv.str("dev0.name"), H100_NAME);
    assert_eq!(kv.i64("dev0.sms"), H100_SMS);
    assert_eq!(kv.str("dev0.cc"), "9.0");
    assert_eq!(kv.i64("dev0.cc_major"), 9);
    assert_eq!(kv.i64("dev0.cc_minor"), 0);
    assert_eq!(kv.i64("dev0.threads_per_sm"), 2048);
    assert_eq!(kv.i64("dev0.threads_per_block"), 1024);
    assert_eq!(kv.i64("dev0.warp_size"), 32);
    assert_eq!(kv.u64("dev0.total_mem"), H100_TOTAL);
    for attr in ["managed", "vmm", "pools", "unified_addressing"] {
        assert_eq!(kv.i64(&format!("dev0.{attr}")), 1, "attribute {attr}");
    }
    assert_uuid_form(kv.str("dev0.uuid"));
    let (dom, bus, dev, func) = parse_bus_id(kv.str("dev0.pci_bus_id"));
    assert_eq!(
        i64::from(dom),
        kv.i64("dev0.pci_domain"),
        "bus id vs domain attribute"
    );
    assert_eq!(
        i64::from(bus),
        kv.i64("dev0.pci_bus"),
        "bus id vs bus attribute"
    );
    assert_eq!(
        i64::from(dev),
        kv.i64("dev0.pci_device"),
        "bus id vs device attribute"
    );
    assert_eq!(func, 0);
    assert_eq!(kv.i64("dev0.primary_active_before"), 0);
    assert_eq!(kv.i64("dev0.primary_active_after"), 1);
    assert_eq!(kv.i64("dev0.ctx_current_ok"), 1);
    assert_eq!(kv.i64("dev0.ctx_device"), 0);
    assert_eq!(kv.i64("dev0.primary_same_handle"), 1);
}
per_style!(info);

fn memory(style: Style) {
    let ctx_bytes = 123 * MIB;
    let env = SimEnv::new().var("VGPU_SIM_CONTEXT_BYTES", ctx_bytes.to_string());
    let Some(kv) = driver_ok(&env, style, &["memory"]) else {
        return;
    };
    let total = kv.u64("total");
    assert_eq!(total, H100_TOTAL);
    assert_eq!(
        total - kv.u64("free0"),
        ctx_bytes,
        "a lone process with only a context must see exactly the context's cost used"
    );
    // linear allocations, to the byte for a page-multiple size
    assert_eq!(kv.i64("alloc.ptr_nonzero"), 1);
    assert_eq!(kv.u64("alloc.delta"), 64 * MIB);
    assert_eq!(kv.i64("alloc.range_base_ok"), 1);
    assert_eq!(kv.u64("alloc.range_size"), 64 * MIB);
    assert_eq!(kv.u64("alloc.after_free_delta"), 0);
    let odd = kv.u64("odd.delta");
    assert!(
        (1_000_001..1_000_001 + 2 * MIB).contains(&odd),
        "1000001-byte allocation charged {}",
        fmt_bytes(odd)
    );
    assert_eq!(kv.u64("odd.after_free_delta"), 0);
    assert_eq!(
        kv.i64("copy.roundtrip"),
        1,
        "HtoD then DtoH must return the data"
    );
    assert_eq!(
        kv.i64("copy.memset"),
        1,
        "cuMemsetD8 must set exactly n bytes"
    );
    // pitch
    let pitch = kv.u64("pitch.pitch");
    assert!(
        (1000..1000 + 4096).contains(&pitch),
        "pitch {pitch} for width 1000"
    );
    let pd = kv.u64("pitch.delta");
    assert!(
        pd >= pitch * 100 && pd < pitch * 100 + 2 * MIB,
        "pitch alloc charged {pd}"
    );
    assert_eq!(kv.u64("pitch.after_free_delta"), 0);
    // managed memory is device memory and is usable from the host
    assert_eq!(
        kv.i64("managed.host_rw"),
        1,
        "managed memory must be host-accessible"
    );
    let md = kv.u64("managed.delta");
    assert!(
        (8 * MIB..10 * MIB).contains(&md),
        "8 MiB managed charged {}",
        fmt_bytes(md)
    );
    assert_eq!(kv.u64("managed.after_free_delta"), 0);
    // pinned host memory is not device memory
    assert_eq!(
        kv.u64("host.delta"),
        0,
        "cuMemAllocHost must not use device memory"
    );
    // VMM: device handles are charged at cuMemCreate, host handles never
    let g = kv.u64("vmm.granularity");
    assert!(g > 0 && g.is_power_of_two(), "granularity {g}");
    let sz = kv.u64("vmm.size");
    assert_eq!(kv.u64("vmm.device.delta"), sz);
    assert_eq!(
        kv.u64("vmm.reserve.delta"),
        sz,
        "reserving address space costs no memory"
    );
    assert_eq!(
        kv.u64("vmm.mapped.delta"),
        sz,
        "mapping costs no extra memory"
    );
    assert_eq!(kv.u64("vmm.device.after_release_delta"), 0);
    assert!(kv.u64("vmm.host.size") > 0);
    assert_eq!(
        kv.u64("vmm.host.delta"),
        0,
        "host-location cuMemCreate is not device memory"
    );
    // arrays
    for a in ["array2d", "array3d"] {
        let bytes = kv.u64(&format!("{a}.bytes"));
        let d = kv.u64(&format!("{a}.delta"));
        assert!(
            d >= bytes && d < 2 * bytes + 2 * MIB,
            "{a}: {bytes} B charged {d}"
        );
        assert_eq!(
            kv.u64(&format!("{a}.after_destroy_delta")),
            0,
            "{a} destroy"
        );
    }
    let l0 = kv.u64("mipmap.level0_bytes");
    let md = kv.u64("mipmap.delta");
    assert!(
        md >= l0 && md < 2 * l0 + 2 * MIB,
        "mipmap level0 {l0} B charged {md}"
    );
    assert_eq!(kv.u64("mipmap.after_destroy_delta"), 0);
    // stream-ordered allocations
    let ad = kv.u64("async.delta");
    assert!(
        (32 * MIB..66 * MIB).contains(&ad),
        "cuMemAllocAsync 32 MiB charged {ad}"
    );
    assert_eq!(
        kv.u64("async.after_free_trim_delta"),
        0,
        "default pool after free + trim"
    );
    let pd = kv.u64("pool.delta");
    assert!(
        (16 * MIB..34 * MIB).contains(&pd),
        "pool alloc 16 MiB charged {pd}"
    );
    assert_eq!(
        kv.u64("pool.after_trim_delta"),
        0,
        "explicit pool after free + trim"
    );
    assert_eq!(kv.u64("final_delta"), 0, "everything freed");
}
per_style!(memory);

fn streams(style: Style) {
    let kernel_ns: u64 = 200_000_000;
    let env = SimEnv::new().var("VGPU_SIM_KERNEL_NS", kernel_ns.to_string());
    let Some(kv) = driver_ok(&env, style, &["streams"]) else {
        return;
    };
    assert_eq!(kv.i64("stream_query_idle"), 0, "an idle stream is complete");
    assert!(
        kv.u64("launch_call_ns") < kernel_ns / 2,
        "cuLaunchKernel must be asynchronous (took {} ns for a {kernel_ns} ns kernel)",
        kv.u64("launch_call_ns")
    );
    assert_eq!(
        kv.i64("event_query_busy"),
        600,
        "event behind a running kernel: NOT_READY"
    );
    assert_eq!(
        kv.i64("stream_query_busy"),
        600,
        "stream with a running kernel: NOT_READY"
    );
    assert_eq!(kv.i64("event_query_done"), 0);
    assert_eq!(kv.i64("stream_query_done"), 0);
    let ms = kv.f64("elapsed_ms");
    let kernel_ms = kernel_ns as f64 / 1e6;
    assert!(
        ms >= kernel_ms * 0.95 && ms < kernel_ms + 5000.0,
        "event elapsed {ms} ms around one {kernel_ms} ms kernel"
    );
    let wall = kv.u64("event_sync_wall_ns");
    assert!(
        wall >= kernel_ns * 95 / 100,
        "cuEventSynchronize returned after {wall} ns"
    );
    let k = kv.u64("ctx_sync_kernels");
    let wall = kv.u64("ctx_sync_wall_ns");
    assert!(
        wall >= k * kernel_ns * 95 / 100 && wall < k * kernel_ns + 5_000_000_000,
        "cuCtxSynchronize after {k} kernels of {kernel_ns} ns returned after {wall} ns"
    );
}
per_style!(streams);

fn graph(style: Style) {
    let kernel_ns: u64 = 20_000_000;
    let env = SimEnv::new().var("VGPU_SIM_KERNEL_NS", kernel_ns.to_string());
    let Some(kv) = driver_ok(&env, style, &["graph", "4"]) else {
        return;
    };
    let kernels = kv.u64("graph_nodes") * kv.u64("graph_launches");
    assert_eq!(kernels, 12);
    let wall = kv.u64("wall_ns");
    assert!(
        wall >= kernels * kernel_ns * 95 / 100 && wall < kernels * kernel_ns + 10_000_000_000,
        "4 launches of a 3-kernel graph ({kernel_ns} ns each) synchronized after {wall} ns"
    );
}
per_style!(graph);

fn launches(style: Style) {
    let kernel_ns: u64 = 100_000;
    let env = SimEnv::new().var("VGPU_SIM_KERNEL_NS", kernel_ns.to_string());
    let Some(kv) = driver_ok(&env, style, &["launch-loop", "500"]) else {
        return;
    };
    assert_eq!(kv.u64("launches"), 500);
    let span = kv.u64("end_ns") - kv.u64("start_ns");
    assert!(
        span >= 500 * kernel_ns * 95 / 100,
        "500 kernels of {kernel_ns} ns synchronized after {span} ns"
    );
}
per_style!(launches);

fn badargs(style: Style) {
    let env = SimEnv::new();
    let Some(kv) = driver_ok(&env, style, &["badargs"]) else {
        return;
    };
    let exact: &[(&str, i64)] = &[
        // before cuInit: CUDA_ERROR_NOT_INITIALIZED, but cuGetProcAddress works
        ("preinit.cuDeviceGetCount", 3),
        ("preinit.cuDeviceGet", 3),
        ("preinit.cuMemAlloc", 3),
        ("preinit.cuMemGetInfo", 3),
        ("preinit.cuCtxGetCurrent", 3),
        ("preinit.cuGetProcAddress", 0),
        ("preinit.cuGetProcAddress_matches_dlsym", 1),
        ("bad.cuInit_flags", 1),
        ("bad.cuInit_twice", 0),
        ("bad.cuDeviceGetCount_null", 1),
        ("bad.cuDeviceGet_null", 1),
        ("bad.cuDeviceGet_ordinal", 101),
        ("bad.cuDeviceGet_negative", 101),
        ("bad.cuDeviceGetName_null", 1),
        ("bad.cuDeviceGetAttribute_device", 101),
        ("bad.cuDeviceGetAttribute_null", 1),
        ("bad.cuDeviceTotalMem_device", 101),
        ("bad.cuDevicePrimaryCtxRetain_device", 101),
        ("bad.cuGetErrorName_unknown", 1),
        ("ok.cuGetErrorName_201", 0),
        // no current context: CUDA_ERROR_INVALID_CONTEXT
        ("noctx.cuCtxGetCurrent", 0),
        ("noctx.current_is_null", 1),
        ("noctx.cuMemAlloc", 201),
        ("noctx.cuMemGetInfo", 201),
        ("noctx.cuCtxSynchronize", 201),
        ("noctx.cuModuleLoadData", 201),
        ("noctx.cuStreamCreate", 201),
        // bad arguments with a context
        ("bad.cuMemAlloc_null", 1),
        ("bad.cuMemAlloc_zero", 1),
        ("bad.cuMemAlloc_too_big", 2),
        ("bad.cuMemGetInfo_null", 1),
        ("bad.cuMemFree_unknown", 1),
        ("bad.cuMemFree_interior", 1),
        ("ok.cuMemFree_first", 0),
        ("bad.cuMemFree_double", 1),
        ("bad.cuCtxSetCurrent_unknown", 201),
        ("bad.cuModuleGetFunction_name", 500),
        ("bad.cuModuleLoadData_null", 1),
        // unknown handles: CUDA_ERROR_INVALID_HANDLE
        ("bad.cuModuleUnload_unknown", 400),
        ("bad.cuStreamSynchronize_unknown", 400),
        ("bad.cuStreamDestroy_unknown", 400),
        ("bad.cuEventQuery_unknown", 400),
        ("bad.cuLaunchKernel_unknown_function", 400),
    ];
    let mut wrong = Vec::new();
    for (key, want) in exact {
        let got = kv.i64(key);
        if got != *want {
            wrong.push(format!("{key}: got {got}, want {want}"));
        }
    }
    // Codes the real driver documents less precisely: invalid value or invalid handle.
    for key in [
        "bad.cuGraphLaunch_unknown",
        "bad.cuMemRelease_unknown",
        "bad.cuArrayDestroy_unknown",
        "bad.cuEventDestroy_twice",
    ] {
        let got = kv.i64(key);
        if got != 1 && got != 400 {
            wrong.push(format!("{key}: got {got}, want 1 or 400"));
        }
    }
    let et = kv.i64("bad.cuGetExportTable_unknown");
    if et == 0 {
        wrong.push("bad.cuGetExportTable_unknown: got 0, want an error code".into());
    }
    assert!(
        wrong.is_empty(),
        "{style:?}: wrong result codes:\n  {}\n",
        wrong.join("\n  ")
    );
    assert_eq!(
        kv.str("ok.cuGetErrorName_201_text"),
        "CUDA_ERROR_INVALID_CONTEXT"
    );
}
per_style!(badargs);

/// Every per-thread entry the procaddr client resolves with flag 2 is the `_ptsz`/`_ptds`
/// variant where one exists, and the plain one otherwise; with flag 0 never a per-thread one.
#[test]
fn procaddr_client_resolves_the_right_variants() {
    let env = SimEnv::new();
    for (style, ptds) in [(Style::Procaddr, false), (Style::ProcaddrPtds, true)] {
        let kv = driver_ok(&env, style, &["info"]).unwrap();
        let members = kv.keys_with_prefix("resolved.");
        assert!(
            members.len() > 60,
            "procaddr client resolved only {} names",
            members.len()
        );
        for key in members {
            let member = &key["resolved.".len()..];
            let got = kv.str(key);
            let base = cuda_headers::DRIVER_PROCS
                .iter()
                .find(|e| e.symbol == member)
                .unwrap_or_else(|| panic!("{member} not in the driver table"))
                .base;
            let want = match cuda_headers::resolve_proc(
                base.as_bytes(),
                12080,
                if ptds { 2 } else { 0 },
            ) {
                cuda_headers::ProcLookup::Found(i) => cuda_headers::DRIVER_PROCS[i].symbol,
                other => panic!("{base}: table says {other:?}"),
            };
            assert_eq!(
                got, want,
                "{style:?}: cuGetProcAddress_v2({base:?}, 12080) answered {got}"
            );
            if !ptds {
                // The client names each entry point by a variant of its base; at 12080 the
                // answer is that variant or a newer one of the same ABI (cuEventElapsedTime
                // -> cuEventElapsedTime_v2 since CUDA 12.8), never a per-thread one.
                assert!(
                    got == member || got.starts_with(&format!("{member}_v")),
                    "flag 0 at 12080 must give the newest plain variant: {member} -> {got}"
                );
            }
        }
        if ptds {
            for (m, want) in [
                ("cuLaunchKernel", "cuLaunchKernel_ptsz"),
                ("cuMemcpyHtoD_v2", "cuMemcpyHtoD_v2_ptds"),
                ("cuStreamSynchronize", "cuStreamSynchronize_ptsz"),
                ("cuGraphLaunch", "cuGraphLaunch_ptsz"),
                ("cuMemAllocAsync", "cuMemAllocAsync_ptsz"),
                ("cuMemAlloc_v2", "cuMemAlloc_v2"),
            ] {
                assert_eq!(kv.str(&format!("resolved.{m}")), want, "flag 2 for {m}");
            }
        }
    }
}
