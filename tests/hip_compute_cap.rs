//! The compute cap over HIP launches, with real processes over the simulated AMD GPU: the
//! same gate, bucket and controller as CUDA's (tests/compute_cap.rs), reached from every HIP
//! launch path. Loose bounds that still fail when the cap is broken (30 % must give 20-40 %,
//! not 100 % nor 5 %); precise figures belong in `examples/cap_accuracy.rs`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::{build_c_client, sim_lib_dir, Child, SimEnv};

const MS: u64 = 1_000_000;

/// An AMD machine whose kernels take 1 ms of device time, its own region, HIP's limit names.
fn amd_machine(limit: Option<&str>) -> SimEnv {
    let sim = SimEnv::new()
        .var("VGPU_SIM_KERNEL_NS", MS.to_string())
        .var("GPU_CORE_UTILIZATION_POLICY", "force");
    let region = sim.dir().join("cudevshr.cache");
    let sim = sim.var("CUDA_DEVICE_MEMORY_SHARED_CACHE", region);
    match limit {
        Some(l) => sim.var("HIP_DEVICE_SM_LIMIT", l),
        None => sim,
    }
}

fn hip_cap_client() -> std::path::PathBuf {
    testkit::require_sim();
    build_c_client(
        "hip_cap",
        &[
            format!("-L{}", sim_lib_dir().display()),
            "-l:libamdhip64.so.7".to_string(),
        ],
    )
}

/// `program` with `/sys/module/amdgpu/initstate` = `live` in a private mount namespace (the
/// SMI libraries need the amdgpu driver loaded), as in tests/hip_memory_cap.rs; `unshare`
/// and `sh` exec, so the child's pid is the program's.
fn in_amdgpu_ns(sim: &SimEnv, program: impl AsRef<std::ffi::OsStr>) -> Command {
    const WITH_AMDGPU: &str =
        "mount -t tmpfs vgpu-sysmodule /sys/module && mkdir -p /sys/module/amdgpu \
                               && echo live > /sys/module/amdgpu/initstate && exec \"$@\"";
    let mut c = sim.command("unshare");
    c.args(["--mount", "--propagation", "private"]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        c.arg("--map-root-user");
    }
    c.args(["sh", "-c", WITH_AMDGPU, "sh"]).arg(program);
    c
}

/// Starts `hip_cap launch-loop N PATH` and returns it once it is ready.
fn spawn_loop(sim: &SimEnv, path: &str, launches: u64) -> Child {
    spawn_loop_via(sim, Injection::Preload, path, launches)
}

fn spawn_loop_via(sim: &SimEnv, how: Injection, path: &str, launches: u64) -> Child {
    let mut c = in_amdgpu_ns(sim, hip_cap_client());
    how.apply(&mut c, &libvgpu(), sim.dir())
        .args(["launch-loop", &launches.to_string(), path]);
    let mut child = Child::spawn(&mut c, Duration::from_secs(60));
    child.wait_for_kv("ready", "1", Duration::from_secs(20));
    child
}

#[test]
fn a_30_percent_hip_cap_yields_20_to_40_percent() {
    a_30_percent_hip_cap(Injection::Preload);
}

/// The launch gate under `LD_AUDIT`: `hipLaunchKernel` bound through the patched export.
#[test]
fn a_30_percent_hip_cap_yields_20_to_40_percent_under_ld_audit() {
    a_30_percent_hip_cap(Injection::Audit);
}

fn a_30_percent_hip_cap(how: Injection) {
    let sim = amd_machine(Some("30"));
    let mut child = spawn_loop_via(&sim, how, "launch", 100_000);
    let share = share_over(&sim, &mut child, 1.0, 3.0);
    child.kill9();
    eprintln!(
        "hipLaunchKernel at a 30 % cap ({how:?}): {:.1} %",
        share * 100.0
    );
    assert!(
        (0.20..=0.40).contains(&share),
        "30 % cap on hipLaunchKernel gave {:.1} %",
        share * 100.0
    );
}

/// Four processes of one container: the AMD probe reads each pid's GPU time (AMD SMI's
/// process list) and the leader sums the container's pids, so the container, not each
/// process, gets the 30 %.
#[test]
fn four_hip_processes_of_one_container_share_the_30_percent() {
    let sim = amd_machine(Some("30"));
    let mut children: Vec<Child> = (0..4)
        .map(|_| spawn_loop(&sim, "launch_async", 100_000))
        .collect();
    for c in &mut children {
        c.send_line("go");
    }
    let busy = |sim: &SimEnv, children: &[Child]| -> u64 {
        children.iter().map(|c| busy_of(sim, c.pid())).sum()
    };
    std::thread::sleep(Duration::from_secs_f64(1.5));
    let (b0, t0) = (busy(&sim, &children), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (b1, t1) = (busy(&sim, &children), std::time::Instant::now());
    for c in &mut children {
        c.kill9();
    }
    let share = (b1 - b0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!(
        "4 HIP processes at a 30 % cap: {:.1} % together",
        share * 100.0
    );
    assert!(
        (0.24..=0.36).contains(&share),
        "4 processes of one container at a 30 % cap gave {:.1} % together",
        share * 100.0
    );
}

/// Two containers (two region files, two limits) on one simulated card, both launching
/// flat out: each container's probe reads AMD SMI's per-process GPU time of its own pids,
/// so neither takes the other's work for its own (read as the device's figure, the 30 %
/// one got 0 % and the 60 % one 62 %: docs/AMD.md). Judged at the simulator's ground truth.
#[test]
fn two_hip_containers_on_one_card_each_get_their_own_cap() {
    let sim = amd_machine(None);
    let mut children: Vec<(u64, Child)> = [30u64, 60]
        .into_iter()
        .map(|limit| {
            let mut c = in_amdgpu_ns(&sim, hip_cap_client());
            c.env("LD_PRELOAD", libvgpu())
                .env(
                    "CUDA_DEVICE_MEMORY_SHARED_CACHE",
                    sim.dir().join(format!("container-{limit}.cache")),
                )
                .env("HIP_DEVICE_SM_LIMIT", limit.to_string())
                .args(["launch-loop", "100000", "launch_async"]);
            let mut child = Child::spawn(&mut c, Duration::from_secs(60));
            child.wait_for_kv("ready", "1", Duration::from_secs(20));
            (limit, child)
        })
        .collect();
    for (_, c) in &mut children {
        c.send_line("go");
    }
    std::thread::sleep(Duration::from_secs_f64(1.5));
    let busy = |sim: &SimEnv, children: &[(u64, Child)]| -> Vec<u64> {
        children
            .iter()
            .map(|(_, c)| busy_of(sim, c.pid()))
            .collect()
    };
    let (b0, t0) = (busy(&sim, &children), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (b1, t1) = (busy(&sim, &children), std::time::Instant::now());
    for (_, c) in &mut children {
        c.kill9();
    }
    let window = (t1 - t0).as_nanos() as f64;
    let shares: Vec<f64> = (0..2).map(|i| (b1[i] - b0[i]) as f64 / window).collect();
    eprintln!(
        "two HIP containers at 30 % and 60 % on one card: {:.1} % and {:.1} %",
        shares[0] * 100.0,
        shares[1] * 100.0
    );
    // The file's loose bounds (±10 points: 30 % gives 20-40 %, 60 % 50-70 %); the device's
    // figure fails them (0 % for the 30 % container). Precise figures: cap_accuracy.
    for ((limit, _), share) in children.iter().zip(&shares) {
        let target = *limit as f64 / 100.0;
        assert!(
            (share - target).abs() <= 0.10,
            "the {limit} % container got {:.1} % with another container on its card",
            share * 100.0
        );
    }
}

/// Without AMD SMI (the simulator's libraries less `libamd_smi`), the probe falls back to
/// ROCm SMI's device activity, says so once, and a container alone on its card still gets
/// its cap.
#[test]
fn without_amd_smi_the_hip_cap_reads_rocm_smis_device_activity() {
    let sim = amd_machine(Some("30"));
    let libs = sim.dir().join("libs-without-amd-smi");
    std::fs::create_dir(&libs).unwrap();
    for entry in std::fs::read_dir(sim_lib_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if !name.to_string_lossy().starts_with("libamd_smi") {
            std::os::unix::fs::symlink(&path, libs.join(name)).unwrap();
        }
    }
    let mut c = in_amdgpu_ns(&sim, hip_cap_client());
    // 1 ms kernels at 30 %: about 4 s.
    c.env("LD_PRELOAD", libvgpu())
        .env("LD_LIBRARY_PATH", &libs)
        .args(["launch-loop", "1200", "launch_async"]);
    let mut child = Child::spawn(&mut c, Duration::from_secs(60));
    child.wait_for_kv("ready", "1", Duration::from_secs(20));
    let share = share_over(&sim, &mut child, 1.0, 2.0);
    let out = child.finish();
    out.assert_success("hip_cap launch-loop");
    eprintln!("30 % cap read from ROCm SMI: {:.1} %", share * 100.0);
    let warned = out
        .stderr
        .matches("per-process GPU time is unavailable")
        .count();
    assert_eq!(warned, 1, "{}", out.stderr);
    assert!(
        (0.24..=0.36).contains(&share),
        "a 30 % cap over ROCm SMI's activity gave {:.1} %",
        share * 100.0
    );
}

#[test]
fn every_hip_launch_path_is_throttled() {
    // A 10 % cap: whatever the controller's calibration, a path that bypasses the gate
    // runs near 100 % (1 ms kernels back to back); a gated one stays far below.
    for path in [
        "launch_spt",
        "ext",
        "coop",
        "coop_spt",
        "module",
        "ext_module",
        "module_coop",
        "graph",
        "graph_spt",
        "launch_exc",
        "drv_ex",
    ] {
        let sim = amd_machine(Some("10"));
        let mut child = spawn_loop(&sim, path, 100_000);
        let share = share_over(&sim, &mut child, 0.5, 1.5);
        child.kill9();
        assert!(
            share > 0.0 && share < 0.35,
            "{path}: a 10 % cap gave {:.1} %",
            share * 100.0
        );
    }
}

#[test]
fn no_hip_cap_no_throttling() {
    let sim = amd_machine(None);
    let mut child = spawn_loop(&sim, "module", 100_000);
    let share = share_over(&sim, &mut child, 0.5, 1.5);
    child.kill9();
    assert!(
        share > 0.7,
        "uncapped HIP launches ran only {:.1} %",
        share * 100.0
    );
}

#[test]
fn the_cuda_name_caps_hip_launches_too() {
    let sim = amd_machine(None).var("CUDA_DEVICE_SM_LIMIT", "30");
    let mut child = spawn_loop(&sim, "launch", 100_000);
    let share = share_over(&sim, &mut child, 1.0, 2.0);
    child.kill9();
    assert!(
        (0.20..=0.40).contains(&share),
        "CUDA_DEVICE_SM_LIMIT=30 on HIP gave {:.1} %",
        share * 100.0
    );
}
