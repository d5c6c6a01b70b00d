//! cuGetProcAddress_v2 of the simulated driver, queried before cuInit as libcudart does:
//! base name + cudaVersion + flags select the exact variant, and the answer is the very
//! function `dlsym` finds under that variant's name.

mod common;
use common::*;

fn query(style: Style, queries: &[String]) -> Kv {
    let env = SimEnv::new();
    let args: Vec<&str> = std::iter::once("procaddr")
        .chain(queries.iter().map(String::as_str))
        .collect();
    driver_ok(&env, style, &args).expect("client builds")
}

/// (base, version, flags, expected exported symbol)
const KNOWN: &[(&str, i32, u64, &str)] = &[
    ("cuInit", 2000, 0, "cuInit"),
    ("cuMemAlloc", 3020, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 12080, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 7000, 2, "cuMemAlloc_v2"),
    ("cuMemGetInfo", 12080, 0, "cuMemGetInfo_v2"),
    ("cuCtxCreate", 3020, 0, "cuCtxCreate_v2"),
    ("cuCtxCreate", 11040, 0, "cuCtxCreate_v3"),
    ("cuCtxCreate", 12050, 0, "cuCtxCreate_v4"),
    ("cuCtxCreate", 12080, 0, "cuCtxCreate_v4"),
    (
        "cuDevicePrimaryCtxRelease",
        7000,
        0,
        "cuDevicePrimaryCtxRelease",
    ),
    (
        "cuDevicePrimaryCtxRelease",
        11000,
        0,
        "cuDevicePrimaryCtxRelease_v2",
    ),
    ("cuDeviceGetUuid", 9020, 0, "cuDeviceGetUuid"),
    ("cuDeviceGetUuid", 11040, 0, "cuDeviceGetUuid_v2"),
    ("cuGetProcAddress", 11030, 0, "cuGetProcAddress"),
    ("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2"),
    ("cuLaunchKernel", 12000, 0, "cuLaunchKernel"),
    ("cuLaunchKernel", 12000, 1, "cuLaunchKernel"),
    ("cuLaunchKernel", 12000, 2, "cuLaunchKernel_ptsz"),
    ("cuLaunchKernel", 4000, 2, "cuLaunchKernel"),
    ("cuLaunchKernelEx", 12080, 2, "cuLaunchKernelEx_ptsz"),
    (
        "cuLaunchCooperativeKernel",
        12080,
        2,
        "cuLaunchCooperativeKernel_ptsz",
    ),
    ("cuGraphLaunch", 12080, 2, "cuGraphLaunch_ptsz"),
    ("cuGraphLaunch", 12080, 0, "cuGraphLaunch"),
    ("cuMemcpyHtoD", 12080, 0, "cuMemcpyHtoD_v2"),
    ("cuMemcpyHtoD", 12080, 2, "cuMemcpyHtoD_v2_ptds"),
    ("cuMemcpyAsync", 12080, 2, "cuMemcpyAsync_ptsz"),
    ("cuMemsetD8", 12080, 2, "cuMemsetD8_v2_ptds"),
    ("cuStreamSynchronize", 12080, 2, "cuStreamSynchronize_ptsz"),
    ("cuStreamBeginCapture", 12080, 0, "cuStreamBeginCapture_v2"),
    (
        "cuStreamBeginCapture",
        12080,
        2,
        "cuStreamBeginCapture_v2_ptsz",
    ),
    ("cuMemAllocAsync", 11020, 2, "cuMemAllocAsync_ptsz"),
    ("cuMemAllocAsync", 11020, 0, "cuMemAllocAsync"),
    ("cuMemFreeAsync", 12080, 2, "cuMemFreeAsync_ptsz"),
];

fn variant_selection(style: Style) {
    let qs: Vec<String> = KNOWN
        .iter()
        .map(|(b, v, f, e)| format!("{b}:{v}:{f}:{e}"))
        .collect();
    let kv = query(style, &qs);
    let mut wrong = Vec::new();
    for (i, (b, v, f, e)) in KNOWN.iter().enumerate() {
        let (rc, st, m) = (
            kv.i64(&format!("q{i}.rc")),
            kv.i64(&format!("q{i}.status")),
            kv.i64(&format!("q{i}.match")),
        );
        if (rc, st, m) != (0, 0, 1) {
            wrong.push(format!(
                "{b} @{v} flags {f}: rc {rc} status {st}, answered {} (want {e})",
                kv.str(&format!("q{i}.sym"))
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "wrong cuGetProcAddress_v2 answers:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn variant_selection_dlopen() {
    variant_selection(Style::Dlopen)
}

#[test]
fn variant_selection_linked() {
    variant_selection(Style::Linked)
}

#[test]
fn unknown_names_and_too_old_versions() {
    let qs = [
        "cuNoSuchFunction:12080:0",
        "cuMemAlloc_v2:12080:0",
        "cuLaunchKernel_ptsz:12080:2",
        "cuMemAllocAsync:11000:0",
        "cuMemAllocAsync:11000:2",
        "cuCtxCreate_v4:12080:0",
    ];
    let kv = query(Style::Dlopen, &qs.map(String::from));
    // (status, rc): unknown base name -> SYMBOL_NOT_FOUND; known name, no variant old
    // enough -> VERSION_NOT_SUFFICIENT; both with CUDA_ERROR_NOT_FOUND and a NULL pointer.
    let want = [(1, 500), (1, 500), (1, 500), (2, 500), (2, 500), (1, 500)];
    for (i, (st, rc)) in want.iter().enumerate() {
        let q = qs[i];
        assert_eq!(kv.i64(&format!("q{i}.status")), *st, "{q}: status");
        assert_eq!(kv.i64(&format!("q{i}.rc")), *rc, "{q}: result code");
        assert_eq!(
            kv.i64(&format!("q{i}.null")),
            1,
            "{q}: pointer must be NULL"
        );
    }
}

/// Every row of the project's driver table: asking for its base name at the version that
/// introduced it (flag 2 for per-thread rows) returns exactly that exported function.
#[test]
fn every_table_entry_resolves_to_its_own_export() {
    let rows = cuda_headers::DRIVER_PROCS;
    let mut qs = Vec::new();
    for e in rows {
        let flags = if e.per_thread { 2 } else { 0 };
        // sanity of the oracle itself
        assert_eq!(
            cuda_headers::resolve_proc(e.base.as_bytes(), e.since, flags),
            cuda_headers::ProcLookup::Found(
                rows.iter().position(|r| r.symbol == e.symbol).unwrap()
            ),
            "table row {} is not selected by its own version",
            e.symbol
        );
        qs.push(format!("{}:{}:{}:{}", e.base, e.since, flags, e.symbol));
    }
    let kv = query(Style::Dlopen, &qs);
    let mut wrong = Vec::new();
    for (i, e) in rows.iter().enumerate() {
        let (rc, m) = (kv.i64(&format!("q{i}.rc")), kv.i64(&format!("q{i}.match")));
        if rc != 0 || m != 1 {
            wrong.push(format!(
                "{} @{} -> rc {rc}, answered {} (want {})",
                e.base,
                e.since,
                kv.str(&format!("q{i}.sym")),
                e.symbol
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} table entries resolve wrongly:\n  {}",
        wrong.len(),
        rows.len(),
        wrong.join("\n  ")
    );
}
