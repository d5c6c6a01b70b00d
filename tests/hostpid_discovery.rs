//! Host pid discovery needs no headroom in the slice (issue 9 item 2): in a real container
//! (`vgpuctl run --container`: its own pid namespace and its own `/proc`, so procfs cannot
//! tell host pids) whose slice is exactly its processes' contexts plus one allocation each,
//! every process still finds its host pid (the region's `hostpid`, compared with the pid the
//! simulated driver knows it by), its context is charged what the driver measured, and the
//! container never holds more than its slice at the simulator's ground truth.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::{run_default, target_profile_dir, Child, Json, SimEnv};

const GROUP: &str = "discovery-under-test";
/// What a context costs at the simulated driver: the library's default estimate, so that
/// once a first context's estimate is reserved the slice has room for nothing but the
/// process's own allocation (no room for a 2–14 MiB NVML probe).
const CONTEXT: u64 = 256 * MIB;

/// The region file of the run whose script wrote its path to `marker`, host side.
fn region_of(dir: &Path, marker: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = std::fs::read_to_string(marker) {
            let rel = r.trim().trim_start_matches("/usr/local/vgpu/").to_string();
            let found: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("container").join(&rel))
                .filter(|p| p.is_file())
                .collect();
            if let [one] = &found[..] {
                return one.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no region for {marker:?} in {dir:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The region as `vgpuctl inspect --json` shows it; `None` until its first process has
/// initialised it.
fn inspect(region: &Path) -> Option<Json> {
    let mut c = Command::new(target_profile_dir().join("vgpuctl"));
    c.arg("inspect").arg(region).arg("--json");
    let out = run_default(&mut c);
    if !out.status.success() {
        assert!(out.stderr.contains("NeedsInit"), "{}", out.describe());
        return None;
    }
    Some(Json::parse(&out.stdout).expect("inspect --json is JSON"))
}

/// Ground truth: (host pid, total bytes on device 0) of every live process.
fn truth(sim: &SimEnv) -> Vec<(u64, u64)> {
    sim.status_json()
        .get("processes")
        .expect("processes")
        .items()
        .iter()
        .filter(|p| p.get("alive").and_then(Json::as_bool) == Some(true))
        .map(|p| {
            let total = p.at("devices/0/total_bytes").and_then(Json::as_u64);
            (
                p.get("pid").and_then(Json::as_u64).unwrap(),
                total.unwrap_or(0),
            )
        })
        .collect()
}

fn high_water(sim: &SimEnv) -> u64 {
    let st = sim.status_json();
    let g = st
        .get("groups")
        .map(Json::items)
        .unwrap_or(&[])
        .iter()
        .find(|g| g.get("name").and_then(Json::as_str) == Some(GROUP))
        .cloned()
        .unwrap_or_else(|| panic!("no group {GROUP:?}: {st:?}"));
    g.at("high_water_bytes/0").and_then(Json::as_u64).unwrap()
}

/// Starts `sizes.len()` processes at once in one container whose slice is exactly their
/// contexts plus one allocation of `sizes[i]` each; every one holds its allocation for a
/// while. Checks that each finds its own host pid while the slice is full.
/// `discovery`: the debug-build hook `VGPU_DEBUG_HOSTPID` (src/core/hostpid.rs), or the
/// default methods.
fn full_slice_container(sizes: &[u64], discovery: Option<&str>) {
    let mut sim = machine()
        .var("VGPU_SIM_GROUP", GROUP)
        .var("VGPU_SIM_CONTEXT_BYTES", CONTEXT.to_string());
    if let Some(d) = discovery {
        sim.set("VGPU_DEBUG_HOSTPID", d);
        // Debug lines say which way each process found its pid.
        sim.set("LIBCUDA_LOG_LEVEL", "4");
    }
    if !containers_possible(&sim) {
        return;
    }
    let held: u64 = sizes.iter().map(|s| CONTEXT + s).sum();
    // An ambiguous signature charges its context the largest rise among the candidates,
    // which can include another process's allocation made in the same window (at most
    // the largest size): the slice has room for that over-charge whenever several
    // processes start together. Ambiguity is forced by `signature-slow`, but a loaded
    // machine produces it with the other modes too (seen in CI: a 12 MiB over-charge
    // refused the last process's 20 MiB). The cap itself is judged below, exactly.
    let slack = if sizes.len() > 1 {
        sizes.len() as u64 * sizes.iter().max().unwrap()
    } else {
        0
    };
    let slice = held + slack;
    let dir = sim.dir().to_path_buf();
    let marker = dir.join("run.region");
    let client = client(Style::Dlopen);
    let starts: String = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "sleep 12 | {c} alloc-hold {s} 12 > {o}.{i} 2>&1 & ",
                c = client.display(),
                o = dir.join("out").display()
            )
        })
        .collect();
    let script = format!(
        "echo \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" > {m}; {starts} wait",
        m = marker.display()
    );
    let mut c = vgpuctl_cmd(&sim);
    c.args(["run", "--container", "--sim", "--gpumem"])
        .arg(slice.to_string())
        .args(["--", "sh", "-c"])
        .arg(script);
    let run = Child::spawn(&mut c, Duration::from_secs(90));
    let region = region_of(&dir, &marker);
    let outputs = || {
        (0..sizes.len())
            .map(|i| std::fs::read_to_string(dir.join(format!("out.{i}"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    // Every process holds its allocation and knows its host pid (bounded wait: discovery
    // may be narrowed lazily by the watcher thread).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (procs, truth) = loop {
        let j = inspect(&region);
        let procs: Vec<Json> = j
            .as_ref()
            .and_then(|j| j.get("processes"))
            .map(Json::items)
            .unwrap_or(&[])
            .iter()
            .filter(|p| p.get("alive").and_then(Json::as_bool) == Some(true))
            .cloned()
            .collect();
        let ready = procs.len() == sizes.len()
            && procs.iter().all(|p| {
                p.get("hostpid").and_then(Json::as_u64).unwrap_or(0) > 0
                    && p.at("usage/0/data").and_then(Json::as_u64).unwrap_or(0) > 0
            });
        if ready {
            break (procs, truth(&sim));
        }
        assert!(
            Instant::now() < deadline,
            "not every process found its host pid: {j:?}\n{}",
            outputs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut seen = Vec::new();
    for p in &procs {
        let host = p.get("hostpid").and_then(Json::as_u64).unwrap();
        let data = p.at("usage/0/data").and_then(Json::as_u64).unwrap();
        let context = p.at("usage/0/context").and_then(Json::as_u64).unwrap();
        let why = format!("{p:?} truth {truth:?}\n{}", outputs());
        let driver = truth.iter().find(|t| t.0 == host).map(|t| t.1);
        // The pid the driver knows holds exactly this process's context and allocation
        // (the sizes differ, so no other process of the container matches).
        assert_eq!(driver, Some(CONTEXT + data), "the right host pid: {why}");
        assert!(
            (CONTEXT..=CONTEXT + slack).contains(&context),
            "the context charged its measured size (or the measured bound): {why}"
        );
        assert!(!seen.contains(&host), "two processes claim one pid: {why}");
        seen.push(host);
    }
    if discovery == Some("signature-slow") {
        // The overlapping signatures were ambiguous, and narrowed lazily (the path under
        // test; each process starts within the 1 s window of another).
        let lazily = outputs()
            .matches("narrowed lazily from its context")
            .count();
        assert!(lazily >= 1, "no ambiguous signature:\n{}", outputs());
    }
    let out = run.finish();
    out.assert_success("the container run");
    let hw = high_water(&sim);
    assert!(
        hw <= slice,
        "{hw} held for a {slice}-byte slice\n{}",
        outputs()
    );
    assert_eq!(hw, held, "every process held its share at once");
}

#[test]
fn a_container_with_a_full_slice_finds_its_host_pid() {
    // 1 MiB: smaller than any probe the library could make.
    for _ in 0..3 {
        full_slice_container(&[MIB], None);
    }
}

#[test]
fn processes_starting_at_once_in_a_full_slice_each_find_their_own_host_pid() {
    // The creation signatures of processes starting together overlap: each is narrowed
    // by its own allocation (sizes that differ by more than the 2 MiB tolerance) and by
    // the pids the others claim — with the probe ruled out, so it cannot be what worked.
    full_slice_container(&[4 * MIB, 8 * MIB, 12 * MIB, 20 * MIB], Some("signature"));
    // Creation windows held open (debug-build hook) so that every signature sees all
    // four pids appear: the ambiguous case, resolved lazily by the watcher threads.
    full_slice_container(
        &[4 * MIB, 8 * MIB, 12 * MIB, 20 * MIB],
        Some("signature-slow"),
    );
    full_slice_container(&[4 * MIB, 8 * MIB, 12 * MIB, 20 * MIB], None);
}
