//! The compute cap over the simulated GPU, with real processes: loose bounds that still fail
//! when the cap is broken (a 30 % cap must give 20-40 %, not 100 % nor 5 %), every launch
//! path, the policies and the monitor's hold. The precise figures come from
//! `examples/cap_accuracy.rs` (docs/COMPUTE_CAP.md), not from timed tests.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use testkit::{run, Child, SimEnv};

const MS: u64 = 1_000_000;

/// A machine whose kernels take 1 ms of device time, with its own region (one container).
fn capped_machine(limit: &str, policy: &str) -> SimEnv {
    machine()
        .var("VGPU_SIM_KERNEL_NS", MS.to_string())
        .var("CUDA_DEVICE_SM_LIMIT", limit)
        .var("GPU_CORE_UTILIZATION_POLICY", policy)
}

/// Starts `launch-loop N wait` and returns it once it is ready (region attached, gate set).
fn spawn_loop(sim: &SimEnv, style: Style, launches: u64) -> Child {
    spawn_loop_via(sim, Injection::Preload, style, launches)
}

fn spawn_loop_via(sim: &SimEnv, how: Injection, style: Style, launches: u64) -> Child {
    let mut c = command_via(sim, style, Some(how));
    c.args(["launch-loop", &launches.to_string(), "wait"]);
    let mut child = Child::spawn(&mut c, Duration::from_secs(60));
    child.wait_for_kv("ready", "1", Duration::from_secs(20));
    child
}

#[test]
fn a_30_percent_cap_yields_20_to_40_percent() {
    a_30_percent_cap(Injection::Preload);
}

/// The CUDA launch gate under `LD_AUDIT` (the NVML-fed controller included).
#[test]
fn a_30_percent_cap_yields_20_to_40_percent_under_ld_audit() {
    a_30_percent_cap(Injection::Audit);
}

fn a_30_percent_cap(how: Injection) {
    let sim = capped_machine("30", "force");
    let mut child = spawn_loop_via(&sim, how, Style::Linked, 100_000);
    let share = share_over(&sim, &mut child, 1.0, 3.0);
    child.kill9();
    eprintln!(
        "cuLaunchKernel at a 30 % cap ({how:?}): {:.1} %",
        share * 100.0
    );
    assert!(
        (0.20..=0.40).contains(&share),
        "30 % cap gave {:.1} %",
        share * 100.0
    );
}

#[test]
fn per_device_limit_and_default_policy_cap_a_container_alone() {
    // CUDA_DEVICE_SM_LIMIT_0 wins; `default` follows utilization_switch, which starts at 1.
    let sim = machine()
        .var("VGPU_SIM_KERNEL_NS", MS.to_string())
        .var("CUDA_DEVICE_SM_LIMIT", "90")
        .var("CUDA_DEVICE_SM_LIMIT_0", "20");
    let mut child = spawn_loop(&sim, Style::Linked, 100_000);
    let share = share_over(&sim, &mut child, 1.0, 2.0);
    child.kill9();
    assert!(
        (0.12..=0.28).contains(&share),
        "20 % cap gave {:.1} %",
        share * 100.0
    );
}

#[test]
fn disable_policy_and_no_limit_do_not_throttle() {
    for sim in [
        capped_machine("30", "disable"),
        machine().var("VGPU_SIM_KERNEL_NS", MS.to_string()),
    ] {
        // 2000 launches of 1 ms: enqueued at once (asynchronous launches), whatever the cap.
        let (_, kv) = run_scenario(&sim, Style::Linked, &["launch-loop", "2000"]);
        let enqueue = kv.u64("enqueued_ns") - kv.u64("start_ns");
        assert!(
            enqueue < 300 * MS,
            "launches were held for {} ms",
            enqueue / MS
        );
    }
}

#[test]
fn the_monitor_switch_turns_the_default_policy_off() {
    let sim = capped_machine("30", "default");
    let mut child = spawn_loop(&sim, Style::Linked, 2000);
    with_region(&sim, |r| {
        r.v1.utilization_switch.store(0, Ordering::Release)
    });
    std::thread::sleep(Duration::from_millis(400)); // a few watcher ticks
    child.send_line("go");
    child.wait_for_kv("done", "1", Duration::from_secs(30));
    child.close_stdin();
    let kv = child.finish().kv();
    let enqueue = kv.u64("enqueued_ns") - kv.u64("start_ns");
    assert!(
        enqueue < 300 * MS,
        "switch 0 still throttled: {} ms",
        enqueue / MS
    );
}

#[test]
fn a_held_recent_kernel_blocks_launches_until_released() {
    // No core cap at all: the hold alone opens the gate.
    let sim = machine();
    let mut child = spawn_loop(&sim, Style::Linked, 10);
    with_region(&sim, |r| {
        r.v1.recent_kernel
            .store(shm_layout::RECENT_KERNEL_HOLD, Ordering::Release)
    });
    std::thread::sleep(Duration::from_millis(400));
    child.send_line("go");
    // Held: no `done` within a second.
    let end = Instant::now() + Duration::from_secs(1);
    while let Some(line) = child.next_line(end.saturating_duration_since(Instant::now())) {
        assert_ne!(
            line, "done=1",
            "launches went through a recent_kernel = -1 hold"
        );
    }
    with_region(&sim, |r| r.v1.recent_kernel.store(0, Ordering::Release));
    child.wait_for_kv("done", "1", Duration::from_secs(10));
    child.close_stdin();
    child.finish();
}

/// The client of tests/c/launch_paths.c: every launch path but plain `cuLaunchKernel`,
/// through `dlsym` and through `cuGetProcAddress_v2` (per-thread default stream flag).
fn paths_client() -> PathBuf {
    testkit::build_c_client("launch_paths", &[])
}

fn enqueue_ms(sim: &SimEnv, exe: &Path, path: &str, n: u32) -> u64 {
    let mut c = sim.command(exe);
    c.env("LD_PRELOAD", libvgpu()).args([path, &n.to_string()]);
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success(path);
    out.kv().u64("enqueue_ns") / MS
}

#[test]
fn every_launch_path_is_throttled() {
    let exe = paths_client();
    // 20 % of 1 ms kernels: 200 launches need about 1 s of budget (less the 4 ms burst).
    let sim = capped_machine("20", "force");
    let free = machine().var("VGPU_SIM_KERNEL_NS", MS.to_string());
    for path in [
        "ex",
        "ex_ptsz",
        "coop",
        "coop_ptsz",
        "lk_ptsz",
        "gpa_lk",
        "gpa_ex",
        "gpa_coop",
    ] {
        let capped = enqueue_ms(&sim, &exe, path, 200);
        assert!(
            capped >= 500,
            "{path}: 200 launches enqueued in {capped} ms under a 20 % cap"
        );
        let uncapped = enqueue_ms(&free, &exe, path, 200);
        assert!(uncapped < 300, "{path}: {uncapped} ms without a cap");
    }
    let _ = std::fs::remove_file(exe);
}

#[test]
fn graph_launches_are_throttled() {
    // A graph of 3 kernel nodes of 1 ms: 100 launches = 300 ms of device time, 1.5 s at 20 %.
    let sim = capped_machine("20", "force");
    let (_, kv) = run_scenario(&sim, Style::Linked, &["graph", "100"]);
    let wall = kv.u64("wall_ns") / MS;
    assert!(
        wall >= 900,
        "100 graph launches took {wall} ms under a 20 % cap"
    );
}

#[test]
fn the_container_shares_one_budget_across_processes() {
    // Four processes of one container at 40 %: together 30-50 %, each one well below.
    let sim = capped_machine("40", "force");
    let mut children: Vec<Child> = (0..4)
        .map(|_| spawn_loop(&sim, Style::Linked, 100_000))
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::pid).collect();
    for c in &mut children {
        c.send_line("go");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let total = |s: &SimEnv| pids.iter().map(|&p| busy_of(s, p)).sum::<u64>();
    let (b0, t0) = (total(&sim), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (total(&sim) - b0) as f64 / t0.elapsed().as_nanos() as f64;
    for c in &mut children {
        c.kill9();
    }
    assert!(
        (0.30..=0.50).contains(&share),
        "4 processes at 40 % gave {:.1} %",
        share * 100.0
    );
}
