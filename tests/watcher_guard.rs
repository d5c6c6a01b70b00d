//! The watcher thread (reaping, the core cap's controller) cannot die silently: a panic in
//! one of its ticks is logged once and the thread goes on. The panic is injected with a
//! hook that exists in debug builds only (`VGPU_DEBUG_WATCHER_PANICS`, src/core/shared_region.rs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use testkit::Child;

#[test]
fn reaping_still_happens_after_the_watcher_panicked() {
    watcher_survives_its_panics(Injection::Preload);
}

/// Under `LD_AUDIT` the watcher is created by the program's libc (not `std::thread`, so it
/// has no Rust thread name): its panics are still caught, logged once, and not printed.
#[test]
fn reaping_still_happens_after_the_watcher_panicked_under_ld_audit() {
    watcher_survives_its_panics(Injection::Audit);
}

fn watcher_survives_its_panics(how: Injection) {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the panic injection hook exists in debug builds only");
        return;
    }
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    // The only survivor of the container: its watcher's first 5 ticks panic (then it backs
    // off 50 + 100 + 200 + 400 + 800 ms before ticking normally).
    let started = Instant::now();
    let mut survivor = {
        let mut c = command_via(&sim, Style::Linked, Some(how));
        c.env("VGPU_DEBUG_WATCHER_PANICS", "5")
            .args(["watch-free", "20", "30"]);
        Child::spawn(&mut c, Duration::from_secs(60))
    };
    survivor.wait_for(Duration::from_secs(30), |l| {
        l.ends_with(&format!("free={GIB}"))
    });
    let mut victim = {
        let mut c = command_via(&sim, Style::Linked, Some(how));
        c.args(["alloc-hold", &(600 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    victim.wait_for_kv("ready", "1", Duration::from_secs(30));
    survivor.wait_for(Duration::from_secs(30), |l| {
        l.ends_with(&format!("free={}", GIB - 600 * MIB))
    });
    // Past the injected panics and their backoff.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let killed_at = Instant::now();
    victim.kill9();
    survivor.wait_for(Duration::from_secs(10), |l| {
        l.ends_with(&format!("free={GIB}"))
    });
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the panicked watcher reclaimed the killed process's memory after {took:?}"
    );
    survivor.close_stdin();
    let out = survivor.finish();
    let panics: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert_eq!(panics.len(), 1, "one line for five panics:\n{}", out.stderr);
    assert!(
        panics[0].contains("watcher thread") && panics[0].contains("VGPU_DEBUG_WATCHER_PANICS"),
        "{}",
        panics[0]
    );
}

/// The watcher thread starts at the process's first need of it, not with its state: a
/// process that only creates a context and allocates has none (a thread's start and its
/// teardown at exit were a fifth of what libvgpu added to a short process of a container
/// starting together, issue 9 item 4); its first memory query starts it (the periodic reap
/// keeps what it is shown exact), and so does a compute cap, from the start. A first launch
/// starts it too, after setting the gate from the region: compute_cap's
/// `a_held_recent_kernel_blocks_launches_until_released`.
#[test]
fn the_watcher_starts_at_the_first_need_of_it() {
    for how in [Injection::Preload, Injection::Audit] {
        for (sm_limit, at_alloc) in [(None, 1), (Some("50"), 2)] {
            let mut sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
            if let Some(limit) = sm_limit {
                sim = sim.var("CUDA_DEVICE_SM_LIMIT", limit);
            }
            let mut c = command_via(&sim, Style::Linked, Some(how));
            c.arg("cap-watcher-start");
            let out = testkit::run(&mut c, Duration::from_secs(60));
            out.assert_success("cap-watcher-start");
            let kv = out.kv();
            let why = format!("{how:?}, SM limit {sm_limit:?}\n{}", out.describe());
            assert_eq!(kv.i64("threads_after_alloc"), at_alloc, "{why}");
            assert_eq!(kv.i64("threads_after_query"), 2, "{why}");
        }
    }
}
