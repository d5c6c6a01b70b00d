//! One simulated machine shared by several processes: memory, the device timeline, cleanup
//! after kill -9, several devices and CUDA_VISIBLE_DEVICES, models and sizes.

mod common;
use common::*;

use std::collections::HashMap;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);

/// Per-pid busy time (ns) on device 0 from `vgpu-sim status --json`
/// (`processes[] = {pid, devices[] = {index, busy_ns, ...}}`).
fn busy_by_pid(status: &Json) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    let procs = status
        .get("processes")
        .unwrap_or_else(|| panic!("status without processes: {status}"));
    for p in procs.items() {
        let pid = p.get("pid").and_then(Json::as_u64).expect("process pid");
        for d in p.get("devices").map(Json::items).unwrap_or_default() {
            if d.get("index").and_then(Json::as_u64) == Some(0) {
                let busy = d
                    .get("busy_ns")
                    .and_then(Json::as_u64)
                    .unwrap_or_else(|| panic!("process device entry without busy_ns: {d}"));
                m.insert(pid, busy);
            }
        }
    }
    m
}

#[test]
fn memory_held_by_one_process_is_seen_by_another() {
    let ctx = 100 * MIB;
    let held = GIB;
    let env = SimEnv::new().var("VGPU_SIM_CONTEXT_BYTES", ctx.to_string());
    let alone = linked(&env, &["meminfo"]);
    let free_alone = alone.u64("free");
    assert_eq!(
        alone.u64("total") - free_alone,
        ctx,
        "only B's own context is in use"
    );

    let mut a = spawn_linked(&env, &["alloc-hold", &held.to_string(), "60"]);
    a.wait_for_kv("ready", "1", READY);
    let with_a = linked(&env, &["meminfo"]);
    assert_eq!(
        free_alone - with_a.u64("free"),
        held + ctx,
        "B must see A's allocation and A's context as used"
    );
    // A's own view agrees with B's (one ledger)
    assert_eq!(
        a.kv().u64("free"),
        with_a.u64("free") + ctx,
        "A's free vs B's free"
    );

    let out = a.finish();
    out.assert_success("holder");
    assert!(out.stdout.contains("freed=1"));
    let after = linked(&env, &["meminfo"]);
    assert_eq!(
        after.u64("free"),
        free_alone,
        "A exited: all of its memory is back"
    );
}

#[test]
fn kernels_of_two_processes_share_one_timeline() {
    let kernel_ns: u64 = 2_000_000;
    let n: u64 = 150;
    let env = SimEnv::new().var("VGPU_SIM_KERNEL_NS", kernel_ns.to_string());
    let mut a = spawn_linked(&env, &["launch-loop", &n.to_string(), "wait"]);
    let mut b = spawn_linked(&env, &["launch-loop", &n.to_string(), "wait"]);
    a.wait_for_kv("ready", "1", READY);
    b.wait_for_kv("ready", "1", READY);
    a.send_line("go");
    b.send_line("go");
    a.wait_for_kv("done", "1", READY);
    b.wait_for_kv("done", "1", READY);
    // both still alive (holding until stdin closes): ask the ground truth
    let status = env.status_json();
    let busy = busy_by_pid(&status);
    let (ka, kb) = (a.kv(), b.kv());
    let (pa, pb) = (ka.u64("pid"), kb.u64("pid"));
    let one = n * kernel_ns;

    let (sa, ea) = (ka.u64("start_ns"), ka.u64("end_ns"));
    let (sb, eb) = (kb.u64("start_ns"), kb.u64("end_ns"));
    // The two loops really competed for the device (else the next check proves nothing).
    let overlap = ea.min(eb).saturating_sub(sa.max(sb));
    assert!(
        overlap >= one / 2,
        "the two launch loops barely overlapped ({overlap} ns); test setup problem"
    );
    // Kernels never overlapped: together they took at least the sum of their device time.
    let span = ea.max(eb) - sa.min(sb);
    assert!(
        span >= 2 * one * 9 / 10,
        "two processes x {n} kernels x {kernel_ns} ns finished in {span} ns: kernels overlapped"
    );
    assert!(
        span < 2 * one + 10_000_000_000,
        "timeline far too slow: {span} ns"
    );
    for (k, s, e) in [("A", sa, ea), ("B", sb, eb)] {
        assert!(
            e - s >= one * 95 / 100,
            "{k}: its own {n} kernels finished in {} ns",
            e - s
        );
    }
    // Busy time is charged to each process: about n * kernel_ns each.
    let (ba, bb) = (
        *busy
            .get(&pa)
            .unwrap_or_else(|| panic!("pid {pa} not in status: {status}")),
        *busy
            .get(&pb)
            .unwrap_or_else(|| panic!("pid {pb} not in status: {status}")),
    );
    for (k, v) in [("A", ba), ("B", bb)] {
        assert!(
            v >= one * 9 / 10 && v <= one * 11 / 10,
            "{k}: busy {v} ns, expected about {one} ns ({n} x {kernel_ns})"
        );
    }
    let ratio = ba as f64 / bb as f64;
    assert!((0.8..1.25).contains(&ratio), "busy split A/B = {ratio:.3}");
    a.finish().assert_success("A");
    b.finish().assert_success("B");
}

#[test]
fn memory_of_a_killed_process_is_reclaimed_within_a_second() {
    let held = 2 * GIB;
    let env = SimEnv::new().var("VGPU_SIM_CONTEXT_BYTES", (64 * MIB).to_string());
    // A watcher polls cuMemGetInfo every 10 ms and prints `t=<realtime ns> free=<bytes>`.
    let mut w = spawn_linked(&env, &["watch-free", "10", "90"]);
    let parse = |l: &str| -> Option<(u64, u64)> {
        let (t, f) = l.split_once(' ')?;
        Some((
            t.strip_prefix("t=")?.parse().ok()?,
            f.strip_prefix("free=")?.parse().ok()?,
        ))
    };
    let first = w.wait_for(READY, |l| l.starts_with("t="));
    let (_, base) = parse(&first).unwrap();

    let mut a = spawn_linked(&env, &["alloc-hold", &held.to_string(), "90"]);
    a.wait_for_kv("ready", "1", READY);
    w.wait_for(
        READY,
        |l| matches!(parse(l), Some((_, f)) if f + held <= base),
    );

    let t_kill = now_ns();
    a.kill9();
    let back = w.wait_for(
        Duration::from_secs(30),
        |l| matches!(parse(l), Some((_, f)) if f == base),
    );
    let (t_back, _) = parse(&back).unwrap();
    let took = Duration::from_nanos(t_back.saturating_sub(t_kill));
    assert!(
        took <= Duration::from_millis(1500),
        "a kill -9'd holder's memory came back after {took:?} (target: within 1 s)"
    );
    // and the ledger is exact afterwards: a new process sees the watcher's context only
    let m = linked(&env, &["meminfo"]);
    assert_eq!(
        m.u64("free"),
        base - 64 * MIB,
        "ledger after reclaim (watcher + this ctx)"
    );
    drop(w);
}

#[test]
fn out_of_memory_is_reported_and_recoverable() {
    let mem = 4 * GIB;
    let env = SimEnv::new()
        .var("VGPU_SIM_MEMORY", mem.to_string())
        .var("VGPU_SIM_CONTEXT_BYTES", (100 * MIB).to_string());
    let chunk = 256 * MIB;
    let kv = linked(&env, &["fill-until-oom", &chunk.to_string()]);
    let free0 = kv.u64("free0");
    assert_eq!(free0, mem - 100 * MIB);
    assert_eq!(kv.u64("chunks"), free0 / chunk, "allocations that fit");
    assert_eq!(kv.i64("oom_code"), 2, "CUDA_ERROR_OUT_OF_MEMORY");
    assert_eq!(kv.u64("free_at_oom"), free0 - kv.u64("chunks") * chunk);
    assert_eq!(kv.u64("free_after"), free0);
}

#[test]
fn two_devices_and_cuda_visible_devices() {
    let env = SimEnv::new().var("VGPU_SIM_DEVICES", "2");
    let all = linked(&env, &["info"]);
    assert_eq!(all.i64("count"), 2);
    let (u0, u1) = (
        all.str("dev0.uuid").to_string(),
        all.str("dev1.uuid").to_string(),
    );
    let (b0, b1) = (
        all.str("dev0.pci_bus_id").to_string(),
        all.str("dev1.pci_bus_id").to_string(),
    );
    assert_ne!(u0, u1, "devices need distinct UUIDs");
    assert_ne!(b0, b1, "devices need distinct PCI bus ids");

    for cvd in ["1".to_string(), u1.clone()] {
        let e1 = env.sibling().var("CUDA_VISIBLE_DEVICES", &cvd);
        let kv = linked(&e1, &["info"]);
        assert_eq!(kv.i64("count"), 1, "CUDA_VISIBLE_DEVICES={cvd}");
        assert_eq!(
            kv.str("dev0.uuid"),
            u1,
            "CUDA_VISIBLE_DEVICES={cvd}: ordinal 0 is device 1"
        );
        assert_eq!(kv.str("dev0.pci_bus_id"), b1, "CUDA_VISIBLE_DEVICES={cvd}");
    }
    let rev = env.sibling().var("CUDA_VISIBLE_DEVICES", "1,0");
    let kv = linked(&rev, &["info"]);
    assert_eq!(kv.i64("count"), 2);
    assert_eq!(
        (kv.str("dev0.uuid"), kv.str("dev1.uuid")),
        (u1.as_str(), u0.as_str())
    );

    // Memory allocated on CUDA ordinal 0 under CUDA_VISIBLE_DEVICES=1 is charged to device 1
    // (NVML ignores CUDA_VISIBLE_DEVICES and sees both).
    let before = nvml(&env, &["info"]);
    let holder_env = env.sibling().var("CUDA_VISIBLE_DEVICES", "1");
    let mut h = spawn_linked(&holder_env, &["alloc-hold", &(512 * MIB).to_string(), "60"]);
    h.wait_for_kv("ready", "1", READY);
    let during = nvml(&env, &["info"]);
    assert_eq!(during.str("dev1.uuid"), u1);
    let d0 = during.u64("dev0.mem.used") as i64 - before.u64("dev0.mem.used") as i64;
    let d1 = during.u64("dev1.mem.used") - before.u64("dev1.mem.used");
    assert_eq!(d0, 0, "device 0 must not be charged");
    assert!(d1 >= 512 * MIB, "device 1 charged only {}", fmt_bytes(d1));
    let procs1 = nvml(&env, &["procs", "1"]);
    let procs0 = nvml(&env, &["procs", "0"]);
    let pid = h.pid().to_string();
    let pids = |kv: &Kv| -> Vec<String> {
        kv.keys_with_prefix("nvmlDeviceGetComputeRunningProcesses_v3.")
            .into_iter()
            .filter(|k| k.ends_with(".pid"))
            .map(|k| kv.str(k).to_string())
            .collect()
    };
    assert!(
        pids(&procs1).contains(&pid),
        "holder not listed on device 1"
    );
    assert!(!pids(&procs0).contains(&pid), "holder listed on device 0");
    h.finish().assert_success("holder");
}

#[test]
fn models_and_memory_override() {
    let env = SimEnv::new().var("VGPU_SIM_MODEL", "a100-40gb");
    let kv = linked(&env, &["info"]);
    assert!(
        kv.str("dev0.name").contains("A100"),
        "name {}",
        kv.str("dev0.name")
    );
    assert_eq!(kv.i64("dev0.sms"), 108);
    assert_eq!(kv.str("dev0.cc"), "8.0");
    let a100_total = kv.u64("dev0.total_mem");
    assert!(
        (39 * GIB..41 * GIB).contains(&a100_total),
        "A100 40GB total {a100_total}"
    );

    let mem = 16 * GIB + 12345 * 4096;
    let env = SimEnv::new().var("VGPU_SIM_MEMORY", mem.to_string());
    let kv = linked(&env, &["info"]);
    assert_eq!(kv.u64("dev0.total_mem"), mem);
    assert_eq!(kv.str("dev0.name"), H100_NAME);
    let n = nvml(&env, &["info"]);
    assert_eq!(n.u64("dev0.mem.total"), mem);
}

#[test]
fn context_and_module_memory_count_without_allocation_calls() {
    let ctx = 40 * MIB;
    let module = 6 * MIB;
    let env = SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", ctx.to_string())
        .var("VGPU_SIM_MODULE_BYTES", module.to_string());
    let before = nvml(&env, &["info"]);
    // launch-loop ... wait: context + one module, no cuMemAlloc; holds after `ready`
    let mut p = spawn_linked(&env, &["launch-loop", "1", "wait"]);
    p.wait_for_kv("ready", "1", READY);
    let during = nvml(&env, &["info"]);
    assert_eq!(
        during.u64("dev0.mem.used") - before.u64("dev0.mem.used"),
        ctx + module,
        "a process with a context and one module"
    );
    let procs = nvml(&env, &["procs"]);
    let f = "nvmlDeviceGetComputeRunningProcesses_v3";
    let n = procs.u64(&format!("{f}.count"));
    let pid = p.pid().to_string();
    let i = (0..n)
        .find(|i| procs.str(&format!("{f}.{i}.pid")) == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in the NVML process list:\n{}", procs.text()));
    assert_eq!(procs.u64(&format!("{f}.{i}.used")), ctx + module);
    p.send_line("go");
    p.wait_for_kv("done", "1", READY);
    p.finish().assert_success("launcher");
    let t0 = Instant::now();
    let after = nvml(&env, &["info"]);
    assert_eq!(
        after.u64("dev0.mem.used"),
        before.u64("dev0.mem.used"),
        "exited process still charged ({:?} after exit)",
        t0.elapsed()
    );
}
