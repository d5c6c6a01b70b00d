//! What a hook adds to a driver call: the same entry point called through the simulated
//! driver's own pointer ("direct") and through libvgpu's export ("hooked"), in one process
//! and one run, over the simulated GPU with zero device time (so the driver side costs only
//! its bookkeeping). Also the start-up cost libvgpu adds to a process that never uses CUDA.
//!
//! The same for HIP (`hipLaunchKernel`, `hipMalloc` + `hipFree`) over the simulated AMD GPU,
//! in a mode of its own (an AMD machine state; the simulated libamdhip64 and libvgpu side
//! by side).
//!
//! Run: `cargo bench --bench hooks` (after `cargo build --release`, which builds the
//! simulator and libvgpu.so). The report in docs/BENCHMARKS.md quotes the medians.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ck, profile_dir, run_in_modes, Lib, Setup};
use criterion::{criterion_group, criterion_main, Criterion};
use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// The HIP mode (see [`hooks`]).
const HIP_MODE: &str = "hip memory cap";

fn hooks(c: &mut Criterion) {
    let mode = run_in_modes(
        "hooks",
        &[
            ("memory cap", &[("CUDA_DEVICE_MEMORY_LIMIT", "70g")]),
            (HIP_MODE, &[("HIP_DEVICE_MEMORY_LIMIT", "70g")]),
        ],
    );
    if mode == HIP_MODE {
        return hip_hooks(c);
    }
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

    let alloc_free = [
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
    ];
    let mut g = c.benchmark_group("cuMemAlloc_v2 + cuMemFree_v2 (1 MiB)");
    for (label, alloc, free) in alloc_free {
        g.bench_function(label, |b| b.iter(|| alloc_free_pair(alloc, free)));
    }
    g.finish();

    // The same pair on N threads at once, each with the context current (set through
    // libvgpu, as an application's call goes): time per pair on one thread while the
    // others run theirs.
    let set_current = vgpu.sym::<pfn::cuCtxSetCurrent>(c"cuCtxSetCurrent");
    let ctx = setup.ctx;
    for threads in [2usize, 8] {
        let mut g = c.benchmark_group(format!(
            "cuMemAlloc_v2 + cuMemFree_v2 (1 MiB), {threads} threads"
        ));
        for (label, alloc, free) in alloc_free {
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, ctx as usize, set_current, iters, alloc, free)
                })
            });
        }
        g.finish();
    }

    // Interleaved: direct and hooked take turns in batches, so a load change on this shared
    // machine hits both alike; medians of the per-batch means, and of their differences.
    let setup_ref = &setup;
    paired("cuLaunchKernel (no core cap)", 2000, || {
        let setup = setup_ref;
        let d = sim.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
        let h = vgpu.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
        (
            Box::new(move || {
                setup.launch(d);
            }) as Box<dyn Fn() + '_>,
            Box::new(move || {
                setup.launch(h);
            }) as Box<dyn Fn() + '_>,
        )
    });
    paired("cuMemAlloc_v2 + cuMemFree_v2 (1 MiB)", 500, || {
        let (_, da, df) = alloc_free[0];
        let (_, ha, hf) = alloc_free[1];
        (
            Box::new(move || alloc_free_pair(da, df)) as Box<dyn Fn()>,
            Box::new(move || alloc_free_pair(ha, hf)) as Box<dyn Fn()>,
        )
    });

    for threads in [2usize, 8] {
        let (_, da, df) = alloc_free[0];
        let (_, ha, hf) = alloc_free[1];
        paired_threads(threads, ctx as usize, set_current, (da, df), (ha, hf));
    }

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
            // SAFETY: `f` is cuMemGetInfo_v2 of the simulator or of libvgpu, both open for
            // the whole run, given two live out-pointers.
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

/// `hipLaunchKernel` (no core cap) and `hipMalloc` + `hipFree` (1 MiB), direct (the
/// simulated libamdhip64's own functions) and hooked (libvgpu's exports), criterion's runs
/// and interleaved ones, as for CUDA above.
fn hip_hooks(c: &mut Criterion) {
    use hip_headers::pfn as hip;
    use hip_headers::types::dim3;
    let dir = profile_dir();
    let sim = Lib::open(
        &dir.join("sim/libamdhip64.so.7"),
        libc::RTLD_NOW | libc::RTLD_GLOBAL,
    );
    let vgpu = Lib::open(&dir.join("libvgpu.so"), libc::RTLD_NOW | libc::RTLD_LOCAL);
    // A kernel the runtime knows by its host stub, as a hipcc-built program's constructor
    // registers it: a wrapper that is no offload bundle (runs on any device).
    static WRAPPER: [u64; 3] = [1 << 32, 0, 0];
    extern "C" fn stub() {}
    // SAFETY: the registration calls with a wrapper and a stub that live for the whole run.
    unsafe {
        let register = sim.sym::<hip::__hipRegisterFatBinary>(c"__hipRegisterFatBinary");
        let modules = register(WRAPPER.as_ptr().cast());
        let function = sim.sym::<hip::__hipRegisterFunction>(c"__hipRegisterFunction");
        function(
            modules,
            stub as *const std::ffi::c_void,
            c"k".as_ptr().cast_mut(),
            c"k".as_ptr(),
            u32::MAX,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
    let one = dim3 { x: 1, y: 1, z: 1 };
    let block = dim3 { x: 32, y: 1, z: 1 };
    let launch = move |f: hip::hipLaunchKernel| {
        // SAFETY: a registered stub, default stream, no arguments.
        let rc = unsafe {
            f(
                stub as *const std::ffi::c_void,
                one,
                block,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "hipLaunchKernel: {rc}");
    };
    let pair = |alloc: hip::hipMalloc, free: hip::hipFree| {
        // SAFETY: valid out-pointer; freeing what was just allocated.
        unsafe {
            let mut p = std::ptr::null_mut();
            assert_eq!(alloc(&mut p, 1 << 20), 0, "hipMalloc");
            assert_eq!(free(p), 0, "hipFree");
        }
    };
    let launches = [
        (
            "direct",
            sim.sym::<hip::hipLaunchKernel>(c"hipLaunchKernel"),
        ),
        (
            "hooked",
            vgpu.sym::<hip::hipLaunchKernel>(c"hipLaunchKernel"),
        ),
    ];
    let allocs = [
        (
            "direct",
            sim.sym::<hip::hipMalloc>(c"hipMalloc"),
            sim.sym::<hip::hipFree>(c"hipFree"),
        ),
        (
            "hooked",
            vgpu.sym::<hip::hipMalloc>(c"hipMalloc"),
            vgpu.sym::<hip::hipFree>(c"hipFree"),
        ),
    ];
    // The first hooked calls start the runtime (region, devices, the context measurement).
    launch(launches[1].1);
    pair(allocs[1].1, allocs[1].2);

    let mut g = c.benchmark_group("hipLaunchKernel (no core cap)");
    for (label, f) in launches {
        g.bench_function(label, |b| b.iter(|| launch(f)));
    }
    g.finish();
    let mut g = c.benchmark_group("hipMalloc + hipFree (1 MiB)");
    for (label, alloc, free) in allocs {
        g.bench_function(label, |b| b.iter(|| pair(alloc, free)));
    }
    g.finish();

    paired("hipLaunchKernel (no core cap)", 2000, || {
        let (d, h) = (launches[0].1, launches[1].1);
        (
            Box::new(move || launch(d)) as Box<dyn Fn()>,
            Box::new(move || launch(h)) as Box<dyn Fn()>,
        )
    });
    paired("hipMalloc + hipFree (1 MiB)", 500, || {
        let ((_, da, df), (_, ha, hf)) = (allocs[0], allocs[1]);
        (
            Box::new(move || pair(da, df)) as Box<dyn Fn()>,
            Box::new(move || pair(ha, hf)) as Box<dyn Fn()>,
        )
    });
}

fn alloc_free_pair(alloc: pfn::cuMemAlloc_v2, free: pfn::cuMemFree_v2) {
    // SAFETY: valid out-pointer; freeing what was just allocated.
    unsafe {
        let mut p: CUdeviceptr = 0;
        ck(alloc(&mut p, 1 << 20), "alloc");
        ck(free(p), "free");
    }
}

/// `iters` alloc+free pairs on each of `threads` threads started together; the slowest
/// thread's time (criterion divides by `iters`: time per pair on one thread under load).
fn on_threads(
    threads: usize,
    ctx: usize,
    set_current: pfn::cuCtxSetCurrent,
    iters: u64,
    alloc: pfn::cuMemAlloc_v2,
    free: pfn::cuMemFree_v2,
) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    // SAFETY: a live context handle.
                    ck(unsafe { set_current(ctx as CUcontext) }, "set current");
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        alloc_free_pair(alloc, free);
                    }
                    t0.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

/// [`paired`] for `threads` threads at once: rounds of [`on_threads`] alternating direct
/// and hooked, per-pair time of the slowest thread, medians.
fn paired_threads(
    threads: usize,
    ctx: usize,
    set_current: pfn::cuCtxSetCurrent,
    direct: (pfn::cuMemAlloc_v2, pfn::cuMemFree_v2),
    hooked: (pfn::cuMemAlloc_v2, pfn::cuMemFree_v2),
) {
    let iters = 2000u64;
    let rounds = 60;
    let per_pair = |(a, f): (pfn::cuMemAlloc_v2, pfn::cuMemFree_v2)| {
        on_threads(threads, ctx, set_current, iters, a, f).as_nanos() as f64 / iters as f64
    };
    per_pair(direct);
    per_pair(hooked);
    let (md, mh, mdiff) = interleaved_medians(rounds, || per_pair(direct), || per_pair(hooked));
    println!(
        "paired cuMemAlloc_v2 + cuMemFree_v2 (1 MiB), {threads} threads: direct {md:.1} ns, hooked {mh:.1} ns, added {mdiff:+.1} ns per pair per thread (median of {rounds} interleaved rounds of {iters})"
    );
}

/// `rounds` measurements of `direct` and `hooked`, taken in alternating order (each round's
/// first call alternates), as medians: (direct, hooked, per-round difference).
fn interleaved_medians(
    rounds: usize,
    mut direct: impl FnMut() -> f64,
    mut hooked: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut d, mut h, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (x, y) = if r % 2 == 0 {
            let x = direct();
            (x, hooked())
        } else {
            let y = hooked();
            (direct(), y)
        };
        d.push(x);
        h.push(y);
        diff.push(y - x);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    (median(&mut d), median(&mut h), median(&mut diff))
}

/// Prints medians of direct and hooked batch means measured in alternation, and the median
/// of the per-round differences.
fn paired<'a>(
    name: &str,
    batch: u32,
    make: impl FnOnce() -> (Box<dyn Fn() + 'a>, Box<dyn Fn() + 'a>),
) {
    let (direct, hooked) = make();
    let rounds = 400;
    let time = |f: &dyn Fn()| {
        let t0 = Instant::now();
        for _ in 0..batch {
            f();
        }
        t0.elapsed().as_nanos() as f64 / f64::from(batch)
    };
    for _ in 0..20 {
        time(&*direct);
        time(&*hooked);
    }
    let (md, mh, mdiff) = interleaved_medians(rounds, || time(&*direct), || time(&*hooked));
    println!(
        "paired {name}: direct {md:.2} ns, hooked {mh:.2} ns, added {mdiff:+.2} ns (median of {rounds} interleaved rounds of {batch})"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hooks
}
criterion_main!(benches);
