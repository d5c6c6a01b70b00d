//! What a hook adds to a driver call: the same entry point called through the simulated
//! driver's own pointer ("direct") and through libvgpu's export ("hooked"), in one process
//! and one run, over the simulated GPU with zero device time (so the driver side costs only
//! its bookkeeping). Also the start-up cost libvgpu adds to a process that never uses CUDA.
//!
//! Run: `cargo bench --bench hooks` (after `cargo build --release`, which builds the
//! simulator and libvgpu.so). The report in docs/BENCHMARKS.md quotes the medians.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ck, profile_dir, run_in_modes, Setup};
use criterion::{criterion_group, criterion_main, Criterion};
use cuda_headers::bindings::*;
use cuda_headers::pfn;

fn hooks(c: &mut Criterion) {
    run_in_modes(
        "hooks",
        &[("memory cap", &[("CUDA_DEVICE_MEMORY_LIMIT", "70g")])],
    );
    let dir = profile_dir();
    let setup = Setup::new();
    let (sim, vgpu) = (&setup.sim, &setup.vgpu);

    let mut g = c.benchmark_group("cuLaunchKernel (no core cap)");
    for (label, f) in [
        ("direct", sim.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel")),
        ("hooked", vgpu.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel")),
    ] {
        g.bench_function(label, |b| b.iter(|| setup.launch(f)));
    }
    g.finish();

    let mut g = c.benchmark_group("cuMemAlloc_v2 + cuMemFree_v2 (1 MiB)");
    for (label, alloc, free) in [
        (
            "direct",
            sim.sym::<pfn::cuMemAlloc_v2>(c"cuMemAlloc_v2"),
            sim.sym::<pfn::cuMemFree_v2>(c"cuMemFree_v2"),
        ),
        (
            "hooked",
            vgpu.sym::<pfn::cuMemAlloc_v2>(c"cuMemAlloc_v2"),
            vgpu.sym::<pfn::cuMemFree_v2>(c"cuMemFree_v2"),
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| unsafe {
                let mut p: CUdeviceptr = 0;
                ck(alloc(&mut p, 1 << 20), "alloc");
                ck(free(p), "free");
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cuMemGetInfo_v2");
    for (label, f) in [
        (
            "direct",
            sim.sym::<pfn::cuMemGetInfo_v2>(c"cuMemGetInfo_v2"),
        ),
        (
            "hooked",
            vgpu.sym::<pfn::cuMemGetInfo_v2>(c"cuMemGetInfo_v2"),
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| unsafe {
                let (mut free, mut total) = (0usize, 0usize);
                f(&mut free, &mut total)
            })
        });
    }
    g.finish();

    // Start-up: a process that never touches CUDA, with and without the library.
    let lib = dir.join("libvgpu.so");
    let mut g = c.benchmark_group("process start (/bin/true)");
    g.sample_size(50).measurement_time(Duration::from_secs(8));
    g.bench_function("plain", |b| {
        b.iter(|| Command::new("/bin/true").status().unwrap())
    });
    g.bench_function("LD_PRELOAD=libvgpu.so", |b| {
        b.iter(|| {
            Command::new("/bin/true")
                .env("LD_PRELOAD", &lib)
                .status()
                .unwrap()
        })
    });
    // The shipped artifact (scripts/build-release.sh: glibc 2.17 floor, no libgcc_s).
    let shipped = dir.parent().unwrap().join("release-glibc2.17/libvgpu.so");
    if shipped.exists() {
        g.bench_function("LD_PRELOAD=release-glibc2.17/libvgpu.so", |b| {
            b.iter(|| {
                Command::new("/bin/true")
                    .env("LD_PRELOAD", &shipped)
                    .status()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hooks
}
criterion_main!(benches);
