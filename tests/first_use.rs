//! What a newcomer meets first: hints when there is nothing to show yet, a fail-closed
//! 0-byte cap shown as such, a peak that only counts what the driver granted, one log prefix.

mod common;

use std::process::Command;

use common::*;
use testkit::{run_default, target_profile_dir, Json};

fn vgpuctl() -> Command {
    let mut c = Command::new(target_profile_dir().join("vgpuctl"));
    c.env_remove("LD_LIBRARY_PATH").env_remove("LD_PRELOAD");
    c
}

#[test]
fn inspect_without_a_region_and_smi_without_a_driver_say_what_to_do() {
    let sim = machine();
    let out = run_default(vgpuctl().arg("inspect").arg(sim.dir().join("none.cache")));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("no shared region there") && out.stderr.contains("vgpuctl run"),
        "{}",
        out.stderr
    );
    let out = run_default(vgpuctl().arg("smi"));
    if out.status.success() {
        // A machine with a real NVIDIA driver: nothing to hint.
        return;
    }
    assert!(
        out.stderr.contains("vgpuctl run -- vgpuctl smi")
            && out.stderr.contains("LD_LIBRARY_PATH="),
        "{}",
        out.stderr
    );
}

fn device0(sim: &testkit::SimEnv) -> Json {
    inspect(sim)
        .at("devices/0")
        .cloned()
        .expect("device 0 in the region")
}

#[test]
fn a_malformed_limit_shows_as_a_refusing_zero_byte_cap_not_as_no_cap() {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "lots");
    let mut c = command(&sim, Style::Linked, true);
    c.args(["alloc-hold", "1048576", "0"]);
    let out = run_default(&mut c);
    assert!(!out.status.success(), "fails closed: {}", out.describe());
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("CUDA_DEVICE_MEMORY_LIMIT"))
        .unwrap_or_else(|| panic!("a line about the variable: {}", out.stderr));
    let prefix = format!(
        "vgpu[{}]: invalid CUDA_DEVICE_MEMORY_LIMIT=\"lots\"",
        out_pid(&out)
    );
    assert!(line.starts_with(&prefix), "one prefix: {line:?}");
    let d = device0(&sim);
    assert_eq!(d.get("memory_refused").and_then(Json::as_bool), Some(true));
    let table = run_default(vgpuctl().arg("inspect").arg(region_path(&sim)));
    assert!(table.stdout.contains("0 (refused)"), "{}", table.stdout);

    // The control: no limit at all shows as no cap.
    let open = machine();
    let mut c = command(&open, Style::Linked, true);
    c.args(["alloc-hold", "1048576", "0"]);
    run_default(&mut c).assert_success("uncapped");
    assert_eq!(
        device0(&open).get("memory_refused").and_then(Json::as_bool),
        Some(false)
    );
    let table = run_default(vgpuctl().arg("inspect").arg(region_path(&open)));
    assert!(!table.stdout.contains("refused"), "{}", table.stdout);
}

/// The pid the client printed (`pid=`), or the one in its log lines.
fn out_pid(out: &testkit::Output) -> String {
    out.stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("vgpu[")?
                .split(']')
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn the_peak_counts_only_what_the_driver_granted() {
    // A slice larger than the card (oversubscription): the cap admits 100 GiB, the 80 GiB
    // card refuses it.
    let sim = machine()
        .var("CUDA_DEVICE_MEMORY_LIMIT", "200g")
        .var("CUDA_OVERSUBSCRIBE", "true");
    let mut c = command(&sim, Style::Linked, true);
    c.args(["fill-until-oom", &(100 * GIB).to_string()]);
    let out = run_default(&mut c);
    out.assert_success("fill-until-oom");
    assert_eq!(out.kv().u64("chunks"), 0, "{}", out.describe());
    let d = device0(&sim);
    let peak = d.get("peak_bytes").and_then(Json::as_u64).unwrap();
    let card = sim
        .status_json()
        .at("devices/0/total_bytes")
        .and_then(Json::as_u64)
        .unwrap();
    assert!(peak < card, "peak {peak} within the {card}-byte card");
    assert_eq!(peak, 64 * MIB, "the context was all it ever held");
}
