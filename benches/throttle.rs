//! What the compute cap adds to a launch: `cuLaunchKernel` called through the simulated
//! driver's own pointer ("direct") and through libvgpu's export ("hooked"), in one process
//! and one run, over the simulated GPU with zero device time (the driver side costs only its
//! validation). Two runs, each in its own child process (the configuration is read once):
//! - `no cap`: no `CUDA_DEVICE_SM_LIMIT` — the gate is one relaxed load;
//! - `cap, tokens available`: `CUDA_DEVICE_SM_LIMIT=50`, policy `force`. Zero-time kernels
//!   measure as 0 % busy, so after a 5 s warm-up (the estimate falls by at most 1/1.5 a
//!   tick once measured) the controller's cost estimate is tiny
//!   and the lane always has tokens: the launch path is the gate, the lane and one
//!   `fetch_sub`. The bench checks that no launch waited during the measurement.
//!
//! Run: `cargo bench --bench throttle` (after `cargo build --release`). DESIGN §6: <= 5 ns
//! added without a cap, <= 25 ns with a cap and tokens available.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ck, run_in_modes, Setup};
use criterion::{criterion_group, criterion_main, Criterion};
use cuda_headers::pfn;

/// The container bucket's `throttled_launches` (region device 0).
fn throttled(region_path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(region_path) else {
        return 0;
    };
    let off = shm_layout::EXT_OFFSET
        + shm_layout::EXT_DEVICES_OFFSET
        + std::mem::offset_of!(shm_layout::DeviceExt, throttled_launches);
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn throttle(c: &mut Criterion) {
    let mode = run_in_modes(
        "throttle",
        &[
            ("no cap", &[]),
            (
                "cap",
                &[
                    ("CUDA_DEVICE_SM_LIMIT", "50"),
                    ("GPU_CORE_UTILIZATION_POLICY", "force"),
                ],
            ),
        ],
    );
    let setup = Setup::new();
    let direct = setup.sim.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
    let hooked = setup.vgpu.sym::<pfn::cuLaunchKernel>(c"cuLaunchKernel");
    let launch = |f: pfn::cuLaunchKernel| setup.launch(f);
    let region = PathBuf::from(std::env::var_os("CUDA_DEVICE_MEMORY_SHARED_CACHE").unwrap());
    if mode == "cap" {
        // Warm-up: let the controller learn that these kernels cost (almost) nothing.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            for _ in 0..1000 {
                ck(launch(hooked), "warm-up launch");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let before = throttled(&region);
    let mut g = c.benchmark_group(format!("cuLaunchKernel ({mode})"));
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, f) in [("direct", direct), ("hooked", hooked)] {
        g.bench_function(label, |b| b.iter(|| launch(f)));
    }
    g.finish();
    let waited = throttled(&region) - before;
    println!("{mode}: launches that waited for tokens during the measurement: {waited}");
}

criterion_group!(benches, throttle);
criterion_main!(benches);
