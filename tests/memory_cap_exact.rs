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

/// A process exiting with memory the driver still holds (its context, chunks it never
/// freed) gives none of it to its neighbours until the driver's teardown freed it: the
/// clean-exit release of its region slot comes after the driver's at-exit teardown, not
/// before (docs/SHARED_REGION.md). The simulated teardown holds the memory for a while
/// (`VGPU_SIM_TEARDOWN_DELAY_MS`), and a neighbour grabs all it can meanwhile.
#[test]
fn an_exiting_process_frees_its_memory_at_the_driver_before_neighbours_get_it() {
    let slice = 400 * MIB;
    let chunk = 4 * MIB;
    let sim = churn_machine(slice).var("VGPU_SIM_TEARDOWN_DELAY_MS", "1500");
    let spawn = || {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["cap-grab", &chunk.to_string()]);
        Child::spawn(&mut c, Duration::from_secs(120))
    };
    // One after the other: the container's first context is gated by an estimate larger
    // than the simulated one (docs/MEMORY_CAP.md), the second by the measured size.
    let mut leaver = spawn();
    leaver.wait_for_kv("ready", "1", Duration::from_secs(60));
    let mut neighbour = spawn();
    neighbour.wait_for_kv("ready", "1", Duration::from_secs(60));
    leaver.send_line("go");
    leaver.wait_for(Duration::from_secs(60), |l| l.starts_with("grabbed="));
    let held = ground_truth(&sim).1;
    assert!(held > slice - chunk, "the slice is full: {held}");
    // The leaver exits holding its context and its chunks; the neighbour grabs while the
    // driver is still tearing the leaver down.
    leaver.close_stdin();
    leaver.wait_for_kv("sim_teardown", "1", Duration::from_secs(60));
    neighbour.send_line("go");
    neighbour.wait_for(Duration::from_secs(60), |l| l.starts_with("grabbed="));
    finish_leaver_and_neighbour(&sim, slice, leaver, neighbour);
    let (_, now) = ground_truth(&sim);
    assert_eq!(now, 0, "everything given back at exit");
}

/// The end of an exit race: the neighbour stops, both finish successfully, and the
/// container never held more than `slice` at the driver. Returns both outputs described.
fn finish_leaver_and_neighbour(
    sim: &SimEnv,
    slice: u64,
    leaver: Child,
    mut neighbour: Child,
) -> String {
    let (high_water, _) = ground_truth(sim);
    neighbour.close_stdin();
    let (leaver, neighbour) = (leaver.finish(), neighbour.finish());
    leaver.assert_success("leaver");
    neighbour.assert_success("neighbour");
    let why = format!("{}\n{}", leaver.describe(), neighbour.describe());
    assert!(
        high_water <= slice,
        "the driver held {high_water} bytes at once for a {slice}-byte slice\n{why}"
    );
    why
}

/// A driver that frees what an exiting process holds only when the kernel closes its device
/// files — after every exit handler and destructor, as NVIDIA's does
/// (`VGPU_SIM_FREE_AT_CLOSE=1`) — still holds the memory while the process exits; here the
/// exit takes 300 ms more after libvgpu's destructor (`VGPU_SIM_CLOSE_DELAY_MS`, what
/// unmapping a large address space costs a real exit). The leaver holds most of the slice
/// and exits cleanly while its neighbour allocates in a tight loop: the driver never holds
/// more than the slice, and the neighbour gets the memory as soon as the leaver is gone (a
/// zombie: this test, its parent, waits for it only at the end), within 2 s of asking.
/// Under LD_PRELOAD and LD_AUDIT. With the slot given back at exit (before this rule) the
/// driver held 672 MiB (704,643,072 bytes) at once for the 400 MiB slice, in both modes.
fn an_exiting_process_credits_only_once_gone(how: Injection) {
    let slice = 400 * MIB;
    let chunk = 4 * MIB;
    let sim = churn_machine(slice)
        .var("VGPU_SIM_FREE_AT_CLOSE", "1")
        .var("VGPU_SIM_CLOSE_DELAY_MS", "300");
    // One after the other: the container's first context is gated by an estimate larger
    // than the simulated one (docs/MEMORY_CAP.md), the second by the measured size.
    let mut c = command_via(&sim, Style::Linked, Some(how));
    c.args(["cap-grab", &chunk.to_string()]);
    let mut leaver = Child::spawn(&mut c, Duration::from_secs(120));
    leaver.wait_for_kv("ready", "1", Duration::from_secs(60));
    let mut c = command_via(&sim, Style::Linked, Some(how));
    c.args(["cap-grab-until", &chunk.to_string(), "2000"]);
    let mut neighbour = Child::spawn(&mut c, Duration::from_secs(120));
    neighbour.wait_for_kv("ready", "1", Duration::from_secs(60));
    leaver.send_line("go");
    let line = leaver.wait_for(Duration::from_secs(60), |l| l.starts_with("grabbed="));
    let grabbed: u64 = line["grabbed=".len()..].parse().expect("grabbed=N");
    let held = ground_truth(&sim).1;
    assert!(held > slice - chunk, "the slice is full: {held}");
    // The neighbour asks for all the leaver grabbed, in a tight loop; once it has been
    // refused (it is asking), the leaver exits.
    neighbour.send_line(&grabbed.to_string());
    neighbour.wait_for_kv("refused", "1", Duration::from_secs(60));
    leaver.close_stdin();
    let line = neighbour.wait_for(Duration::from_secs(60), |l| l.starts_with("waited_ms="));
    let waited: i64 = line["waited_ms=".len()..].parse().expect("waited_ms=N");
    let why = finish_leaver_and_neighbour(&sim, slice, leaver, neighbour);
    assert!(
        (0..=2000).contains(&waited),
        "the neighbour got the {grabbed} bytes the leaver held within 2 s of starting to ask \
         (waited_ms={waited}, -1: never)\n{why}"
    );
    // Both gone, nobody left to reap: `vgpuctl inspect` reaps before it reports.
    let inspected = inspect(&sim);
    assert_eq!(
        inspected.at("devices/0/used_bytes").and_then(Json::as_u64),
        Some(0),
        "{inspected:?}"
    );
    assert_eq!(
        inspected.get("processes").map(|p| p.items().len()),
        Some(0),
        "{inspected:?}"
    );
}

#[test]
fn an_exiting_process_is_credited_only_once_gone_preload() {
    an_exiting_process_credits_only_once_gone(Injection::Preload);
}

#[test]
fn an_exiting_process_is_credited_only_once_gone_audit() {
    an_exiting_process_credits_only_once_gone(Injection::Audit);
}

/// Bytes of a `CUDA_DEVICE_MEMORY_LIMIT` value as the tests below use them (a malformed
/// value fails closed at 0).
fn slice_bytes(value: &str) -> u64 {
    match value.strip_suffix('m') {
        Some(m) => m.parse::<u64>().unwrap() * MIB,
        None => value.parse().unwrap_or(0),
    }
}

/// Host pid discovery as each run gets it: procfs (what this machine allows), the NVML
/// probe only, or none at all (debug-build test hook `VGPU_DEBUG_HOSTPID`).
const DISCOVERY: [Option<&str>; 3] = [None, Some("probe"), Some("unknown")];

/// Whether procfs tells this machine's processes their host pid (src/core/hostpid.rs: the
/// initial pid namespace, or a child one whose `/proc` is the host's). Elsewhere (a CI
/// container with its own `/proc`) the default discovery is the NVML probe.
fn procfs_tells_host_pid() -> bool {
    let ns = |p: &str| std::fs::read_link(p).map(|t| t.to_string_lossy().into_owned());
    let init = "pid:[4026531836]";
    if ns("/proc/self/ns/pid").is_ok_and(|t| t == init) {
        return true;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let levels = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map_or(0, |l| l.split_whitespace().count());
    levels >= 2 && ns("/proc/1/ns/pid").is_ok_and(|t| t == init)
}

fn ctx_machine(context: &str, slice: &str, discovery: Option<&str>) -> SimEnv {
    let mut sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", context)
        .var("VGPU_SIM_GROUP", GROUP)
        .var("CUDA_DEVICE_MEMORY_LIMIT", slice);
    if let Some(d) = discovery {
        sim.set("VGPU_DEBUG_HOSTPID", d);
    }
    sim
}

#[test]
fn no_context_or_module_escapes_a_small_slice_whatever_the_host_pid_discovery() {
    // Contexts cost 300 MiB at the driver: none of these slices can hold one.
    for discovery in DISCOVERY {
        for slice in ["3000", "1m", "4m", "8m", "12m", "64m", "lots"] {
            for run in 0..3 {
                let sim = ctx_machine("300m", slice, discovery);
                let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-ctx"]);
                let why = format!(
                    "slice {slice}, discovery {discovery:?}, run {run}\n{}",
                    out.describe()
                );
                assert_eq!(kv.i64("primary_rc"), 2, "primary context refused: {why}");
                assert_eq!(kv.i64("primary_null"), 1, "{why}");
                assert_eq!(kv.i64("create_rc"), 2, "created context refused: {why}");
                assert_eq!(kv.i64("create_null"), 1, "{why}");
                let (high_water, _) = ground_truth(&sim);
                assert!(high_water <= slice_bytes(slice), "{high_water} held: {why}");
                assert_eq!(high_water, 0, "the driver was never asked: {why}");
                let tiny = out
                    .stderr
                    .lines()
                    .filter(|l| l.contains("under 1 MiB"))
                    .count();
                let expect = usize::from((1..MIB).contains(&slice_bytes(slice)));
                assert_eq!(tiny, expect, "one warning line below 1 MiB: {why}");
            }
        }
    }
}

#[test]
fn a_context_that_fits_with_no_room_for_its_module() {
    // 300 MiB contexts in a 301 MiB slice: the measured context fits, a module does not.
    // When the context cannot be measured it is charged the conservative figure, which
    // does not fit: the context is destroyed again (rolled back) and refused. (The NVML
    // probe is not run here: in a slice with no room for its margin it falls in the
    // documented first-context gap, docs/MEMORY_CAP.md.)
    for discovery in [None, Some("unknown")] {
        if discovery.is_none() && !procfs_tells_host_pid() {
            eprintln!("procfs does not tell host pids here: only the unmeasured case runs");
            continue;
        }
        let sim = ctx_machine("300m", "301m", discovery);
        let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-ctx"]);
        let why = format!("discovery {discovery:?}\n{}", out.describe());
        if discovery.is_some() && cfg!(debug_assertions) {
            assert_eq!(kv.i64("primary_rc"), 2, "{why}");
            assert_eq!(kv.i64("create_rc"), 2, "{why}");
        } else {
            assert_eq!(kv.i64("primary_rc"), 0, "{why}");
            assert_eq!(kv.u64("primary.used"), 300 * MIB, "measured: {why}");
            assert_eq!(kv.i64("primary.module_rc"), 2, "{why}");
            assert_eq!(kv.i64("create_rc"), 0, "{why}");
            assert_eq!(kv.u64("create.used"), 300 * MIB, "{why}");
            assert_eq!(kv.i64("create.module_rc"), 2, "{why}");
        }
        let (high_water, now) = ground_truth(&sim);
        assert!(high_water <= 301 * MIB, "{high_water} held: {why}");
        assert_eq!(now, 0, "{why}");
    }
}

#[test]
fn contexts_and_modules_are_charged_whether_or_not_the_host_pid_is_known() {
    for discovery in DISCOVERY {
        let sim = ctx_machine("64m", "1g", discovery);
        let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-ctx"]);
        let why = format!("discovery {discovery:?}\n{}", out.describe());
        assert_eq!(kv.i64("primary_rc"), 0, "{why}");
        assert_eq!(kv.i64("primary.module_rc"), 0, "{why}");
        assert_eq!(kv.i64("create_rc"), 0, "{why}");
        assert_eq!(kv.i64("create.module_rc"), 0, "{why}");
        let ctx = if discovery == Some("unknown") && cfg!(debug_assertions) {
            // Nothing can be measured: the documented conservative figures.
            512 * MIB
        } else {
            64 * MIB
        };
        assert_eq!(kv.u64("primary.used"), ctx, "{why}");
        assert_eq!(kv.u64("primary.module_rc.used"), ctx + 2 * MIB, "{why}");
        assert_eq!(kv.u64("create.used"), ctx, "{why}");
        assert_eq!(kv.u64("create.module_rc.used"), ctx + 2 * MIB, "{why}");
        let (high_water, now) = ground_truth(&sim);
        assert!(
            (66 * MIB..=GIB).contains(&high_water),
            "{high_water}: {why}"
        );
        assert_eq!(now, 0, "{why}");
    }
}

#[test]
fn a_later_process_is_charged_the_context_size_its_container_measured() {
    // The first process of the container measures its context through NVML and leaves the
    // figure in the region; a later one starts without opening NVML, charged that figure
    // — exactly what the driver holds for it.
    let sim = ctx_machine("64m", "1g", None);
    let mut first = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["alloc-hold", &(10 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    first.wait_for_kv("ready", "1", Duration::from_secs(30));
    let mut c = command(&sim, Style::Linked, true);
    c.env("LIBCUDA_LOG_LEVEL", "4").arg("cap-ctx");
    let out = testkit::run_default(&mut c);
    out.assert_success("cap-ctx");
    let kv = out.kv();
    let why = out.describe();
    let held = 64 * MIB + 10 * MIB;
    assert_eq!(kv.u64("primary.used"), held + 64 * MIB, "{why}");
    // Without procfs discovery the later process measures (the probe): exact as well.
    if procfs_tells_host_pid() {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("Context overhead") && l.contains("measured None")),
            "the primary context was charged the container's figure: {why}"
        );
    }
    let (high_water, _) = ground_truth(&sim);
    assert!(high_water <= GIB, "{why}");
    first.close_stdin();
    first.finish().assert_success("first");
}

/// The container's charged total on device 0 (its region's own count).
fn charged(sim: &SimEnv) -> u64 {
    let mut total = 0;
    with_region(sim, |r| {
        total = r
            .device(0)
            .expect("device 0")
            .reserved_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    });
    total
}

/// A container whose region knows its device but no context figure, while another process
/// of it (standing in: the claim written into the region) is still measuring its first
/// context, as when its processes start together.
fn measurement_in_progress(slice: &str) -> SimEnv {
    use std::sync::atomic::Ordering;
    let sim = ctx_machine("64m", slice, None);
    let mut c = command(&sim, Style::Linked, true);
    c.arg("cap-ctx");
    testkit::run_default(&mut c).assert_success("first process");
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    with_region(&sim, |r| {
        let d = r.device(0).expect("device 0");
        d.context_bytes_hint.store(0, Ordering::Release);
        d.context_measure_until_ns
            .store(now + 120_000_000_000, Ordering::Release);
    });
    sim
}

#[test]
fn a_context_created_while_its_container_measures_is_parked_high_then_cut_to_the_figure() {
    use std::sync::atomic::Ordering;
    let sim = measurement_in_progress("2g");
    let mut held = {
        let mut c = command(&sim, Style::Linked, true);
        c.env("LIBCUDA_LOG_LEVEL", "4")
            .args(["alloc-hold", &(10 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    held.wait_for_kv("ready", "1", Duration::from_secs(30));
    if procfs_tells_host_pid() {
        // It did not wait for the figure: its context is charged the conservative size
        // meanwhile (over, never under, what the driver holds).
        assert_eq!(charged(&sim), 512 * MIB + 10 * MIB);
        // The measuring process publishes its figure: the watcher cuts the charge to it.
        with_region(&sim, |r| {
            r.device(0)
                .expect("device 0")
                .context_bytes_hint
                .store(64 * MIB + 1, Ordering::Release)
        });
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while charged(&sim) != 74 * MIB && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Without procfs discovery the process measures its own context (the NVML probe).
    assert_eq!(
        charged(&sim),
        74 * MIB,
        "the context charged what the driver holds"
    );
    let (high_water, now) = ground_truth(&sim);
    assert_eq!(now, 74 * MIB);
    assert!(high_water <= 2 * GIB);
    held.close_stdin();
    held.finish().assert_success("held");
}

#[test]
fn a_context_that_cannot_be_parked_high_waits_for_the_figure_then_measures_itself() {
    // 300 MiB: room for the context (64 MiB) and 10 MiB, not for the conservative 512 MiB.
    let sim = measurement_in_progress("300m");
    let mut c = command(&sim, Style::Linked, true);
    c.env("LIBCUDA_LOG_LEVEL", "4")
        .args(["alloc-hold", &(10 * MIB).to_string(), "60"]);
    let mut held = Child::spawn(&mut c, Duration::from_secs(90));
    held.wait_for_kv("ready", "1", Duration::from_secs(30));
    // The claim never ends (its holder stands still): after the bounded wait the process
    // measured its context itself, exactly.
    assert_eq!(charged(&sim), 74 * MIB);
    let (high_water, now) = ground_truth(&sim);
    assert_eq!(now, 74 * MIB);
    assert!(high_water <= 300 * MIB);
    held.close_stdin();
    let out = held.finish();
    out.assert_success("held");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("Context overhead") && l.contains("measured Some")),
        "{}",
        out.describe()
    );
}
