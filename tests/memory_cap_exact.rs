//! The slice is never passed at the driver, not even for an instant (issue 9): judged by
//! the simulator's ground truth — the high-water mark of everything the container's
//! processes held on the device at once, recorded by the simulated driver under its lock
//! at every allocation, free, context and module change (`vgpu-sim status --json`,
//! `groups`) — never by libvgpu's own ledger.

mod common;

use std::time::Duration;

use common::*;
use testkit::{Child, Json, SimEnv};

/// The container's processes all carry this group name to the simulator.
const GROUP: &str = "container-under-test";

fn group_of(sim: &SimEnv) -> Json {
    let status = sim.status_json();
    status
        .get("groups")
        .map(Json::items)
        .unwrap_or(&[])
        .iter()
        .find(|g| g.get("name").and_then(Json::as_str) == Some(GROUP))
        .cloned()
        .unwrap_or_else(|| panic!("no group {GROUP:?} in the status: {status:?}"))
}

/// (high-water mark, bytes held now) of the container on device 0, at the driver.
fn ground_truth(sim: &SimEnv) -> (u64, u64) {
    let g = group_of(sim);
    let hw = g.at("high_water_bytes/0").and_then(Json::as_u64);
    let now = g.at("used_bytes/0").and_then(Json::as_u64);
    (hw.expect("high_water_bytes/0"), now.expect("used_bytes/0"))
}

fn churn_machine(slice: u64) -> SimEnv {
    machine()
        .var("VGPU_SIM_GROUP", GROUP)
        .var("CUDA_DEVICE_MEMORY_LIMIT", slice.to_string())
}

#[test]
fn eight_threads_churning_at_the_cap_never_pass_the_slice_at_the_driver() {
    let slice = 1000 * MIB;
    let chunk = 2 * MIB;
    let sim = churn_machine(slice);
    let (out, kv) = run_scenario(
        &sim,
        Style::Linked,
        &["cap-churn-full", "8", &chunk.to_string(), "2"],
    );
    let why = out.describe();
    assert!(kv.u64("churn_allocs") > 100, "the threads churned\n{why}");
    assert!(kv.u64("churn_refusals") > 0, "at the cap\n{why}");
    let (high_water, now) = ground_truth(&sim);
    assert!(
        high_water <= slice,
        "the driver held {high_water} bytes at once for a {slice}-byte slice\n{why}"
    );
    assert!(
        high_water > slice - chunk,
        "the slice was really filled (else the test proves nothing): {high_water}\n{why}"
    );
    assert_eq!(now, 0, "everything given back at exit");
}

#[test]
fn sixteen_processes_churning_at_the_cap_never_pass_the_slice_at_the_driver() {
    let slice = 3000 * MIB;
    let chunk = 4 * MIB;
    let sim = churn_machine(slice);
    let mut children: Vec<Child> = (0..16)
        .map(|_| {
            let mut c = command(&sim, Style::Linked, true);
            c.args(["cap-churn-full", "1", &chunk.to_string(), "2", "wait"]);
            Child::spawn(&mut c, Duration::from_secs(120))
        })
        .collect();
    for c in &mut children {
        c.wait_for_kv("ready", "1", Duration::from_secs(60));
    }
    for c in &mut children {
        c.send_line("go");
    }
    let (mut allocs, mut refusals) = (0, 0);
    for c in children {
        let out = c.finish();
        out.assert_success("churner");
        let kv = out.kv();
        allocs += kv.u64("churn_allocs");
        refusals += kv.u64("churn_refusals");
    }
    assert!(allocs > 100, "the processes churned: {allocs}");
    assert!(refusals > 0, "at the cap");
    let (high_water, now) = ground_truth(&sim);
    assert!(
        high_water <= slice,
        "the driver held {high_water} bytes at once for a {slice}-byte slice"
    );
    assert!(
        high_water > slice - chunk,
        "the slice was really filled: {high_water}"
    );
    assert_eq!(now, 0, "everything given back at exit");
}
