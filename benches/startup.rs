//! Start-up at scale (DESIGN §6: 256 processes starting at once in one container add
//! <= 20 ms each): 256 processes of one container start together; each reports the time
//! from its `main()` to its first allocation done (cuInit, primary context, cuMemAlloc —
//! under libvgpu that includes attaching the shared region and claiming a slot under the
//! region's lock). The same run without libvgpu is the baseline. A report, not a test:
//!
//!     cargo bench --bench startup            (VGPU_STARTUP_PROCS=N to change 256)

use std::process::{Child, Stdio};
use std::time::Instant;

use testkit::{build_c_client, link_libcuda, target_profile_dir, SimEnv};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn wave(sim: &SimEnv, client: &std::path::Path, n: usize, preload: bool) -> (Vec<u64>, f64) {
    let lib = target_profile_dir().join("libvgpu.so");
    let start = Instant::now();
    let children: Vec<Child> = (0..n)
        .map(|_| {
            let mut c = sim.command(client);
            c.arg("cap-startup")
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if preload {
                c.env("LD_PRELOAD", &lib);
            }
            c.spawn().expect("spawn")
        })
        .collect();
    let mut us: Vec<u64> = children
        .into_iter()
        .filter_map(|c| {
            let out = c.wait_with_output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("first_call_us="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    us.sort_unstable();
    (us, start.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("VGPU_STARTUP_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let client = build_c_client("cap_linked", &link_libcuda());
    let sim = SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("VGPU_SIM_KERNEL_NS", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "40g");
    let region = sim.dir().join("cudevshr.cache");
    let sim = sim.var("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region);
    println!("{n} processes of one container starting at once; time from main() to first allocation done");
    println!("| run | done | median | p95 | max | wall |");
    println!("|---|---|---|---|---|---|");
    for (label, preload) in [
        ("without libvgpu", false),
        ("with libvgpu", true),
        ("without libvgpu (again)", false),
        ("with libvgpu (again)", true),
    ] {
        let (us, wall) = wave(&sim, &client, n, preload);
        if us.is_empty() {
            println!("| {label} | 0 | - | - | - | {wall:.2} s |");
            continue;
        }
        println!(
            "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {wall:.2} s |",
            us.len(),
            percentile(&us, 0.5) as f64 / 1e3,
            percentile(&us, 0.95) as f64 / 1e3,
            *us.last().unwrap() as f64 / 1e3
        );
    }
}
