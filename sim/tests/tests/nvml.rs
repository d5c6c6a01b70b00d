//! The simulated libnvidia-ml through a dlopen client: identity agrees with the driver API,
//! memory agrees with cuMemGetInfo, process lists in the three entry-point versions,
//! per-process utilization, and result codes.

mod common;
use common::*;

use std::time::Duration;

const READY: Duration = Duration::from_secs(60);

#[test]
fn identity_matches_the_driver_api() {
    let env = SimEnv::new().var("VGPU_SIM_DEVICES", "2");
    let n = nvml(&env, &["info"]);
    let c = linked(&env, &["info"]);
    assert_eq!(n.u64("count"), 2);
    assert_eq!(n.i64("cuda_driver_version"), c.i64("driver_version"));
    assert!(!n.str("driver_version").is_empty());
    for i in 0..2 {
        let k = |s: &str| format!("dev{i}.{s}");
        assert_eq!(n.str(&k("name")), H100_NAME);
        assert_eq!(
            n.str(&k("uuid")),
            c.str(&k("uuid")),
            "NVML and CUDA UUID of device {i}"
        );
        assert_eq!(n.i64(&k("by_uuid_same")), 1);
        assert_eq!(n.i64(&k("by_pci_same")), 1);
        assert_eq!(n.u64(&k("index")), i);
        assert_eq!(n.str(&k("cc")), "9.0");
        assert_eq!(
            parse_bus_id(n.str(&k("pci_bus_id"))),
            parse_bus_id(c.str(&k("pci_bus_id"))),
            "NVML and CUDA PCI bus id of device {i}"
        );
        assert_eq!(n.u64(&k("mem.total")), H100_TOTAL);
        assert_eq!(n.u64(&k("mem.used")) + n.u64(&k("mem.free")), H100_TOTAL);
        assert_eq!(n.u64(&k("mem2.total")), H100_TOTAL);
        assert_eq!(
            n.u64(&k("mem2.used")) + n.u64(&k("mem2.free")) + n.u64(&k("mem2.reserved")),
            H100_TOTAL
        );
    }
    assert_ne!(n.u64("dev0.minor"), n.u64("dev1.minor"));
}

#[test]
fn process_lists_in_every_version() {
    let ctx = 100 * MIB;
    let env = SimEnv::new().var("VGPU_SIM_CONTEXT_BYTES", ctx.to_string());
    let empty = nvml(&env, &["procs"]);
    for f in [
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetComputeRunningProcesses_v3",
    ] {
        assert_eq!(
            empty.i64(&format!("{f}.probe_rc")),
            0,
            "{f}: empty list probe"
        );
        assert_eq!(
            empty.u64(&format!("{f}.count")),
            0,
            "{f}: nobody holds a context"
        );
    }
    let sizes = [256 * MIB, 768 * MIB];
    let mut holders: Vec<Child> = sizes
        .iter()
        .map(|s| spawn_linked(&env, &["alloc-hold", &s.to_string(), "60"]))
        .collect();
    for h in &mut holders {
        h.wait_for_kv("ready", "1", READY);
    }
    let kv = nvml(&env, &["procs"]);
    assert_eq!(kv.u64("stride.v1"), 16);
    assert_eq!(kv.u64("stride.v2"), 24);
    for f in [
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetComputeRunningProcesses_v3",
    ] {
        assert_eq!(
            kv.i64(&format!("{f}.probe_rc")),
            7,
            "{f}: a count-0 query must answer NVML_ERROR_INSUFFICIENT_SIZE"
        );
        assert_eq!(kv.u64(&format!("{f}.probe_count")), 2, "{f}: probe count");
        assert_eq!(kv.i64(&format!("{f}.rc")), 0, "{f}");
        assert_eq!(kv.u64(&format!("{f}.count")), 2, "{f}");
        assert_eq!(
            kv.i64(&format!("{f}.no_overrun")),
            1,
            "{f}: wrote past its entries"
        );
        let mut got: Vec<(u64, u64)> = (0..2)
            .map(|i| {
                (
                    kv.u64(&format!("{f}.{i}.pid")),
                    kv.u64(&format!("{f}.{i}.used")),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(u64, u64)> = holders
            .iter()
            .zip(sizes)
            .map(|(h, s)| (u64::from(h.pid()), s + ctx))
            .collect();
        want.sort();
        assert_eq!(got, want, "{f}: (pid, usedGpuMemory) entries");
    }
    for h in holders {
        h.finish().assert_success("holder");
    }
}

#[test]
fn process_utilization_follows_the_timeline() {
    let env = SimEnv::new().var("VGPU_SIM_KERNEL_NS", "1000000");
    let t0 = now_us();
    let idle = nvml(&env, &["util", &t0.to_string()]);
    assert_eq!(idle.i64("probe_rc"), 6, "nothing ran: NVML_ERROR_NOT_FOUND");

    let mut p = spawn_linked(&env, &["launch-loop", "300", "wait"]);
    p.wait_for_kv("ready", "1", READY);
    let t1 = now_us();
    p.send_line("go");
    p.wait_for_kv("done", "1", READY);
    let kv = nvml(&env, &["util", &t1.to_string()]);
    assert_eq!(
        kv.i64("probe_rc"),
        7,
        "samples exist: size probe answers INSUFFICIENT_SIZE"
    );
    assert_eq!(kv.i64("rc"), 0);
    let n = kv.u64("count");
    let pid = u64::from(p.pid());
    let mine: Vec<u64> = (0..n)
        .filter(|i| kv.u64(&format!("s{i}.pid")) == pid)
        .map(|i| {
            let ts = kv.u64(&format!("s{i}.ts"));
            assert!(
                ts >= t1,
                "sample {i} timestamp {ts} before the query's {t1}"
            );
            kv.u64(&format!("s{i}.sm"))
        })
        .collect();
    assert!(
        !mine.is_empty(),
        "no sample for the launching pid {pid}:\n{}",
        kv.text()
    );
    assert!(
        mine.iter().any(|&s| s > 0),
        "launcher's smUtil all zero: {mine:?}"
    );
    assert!(
        mine.iter().all(|&s| s <= 100),
        "smUtil above 100%: {mine:?}"
    );
    // Later than everything: nothing new.
    let later = nvml(&env, &["util", &(now_us() + 1_000_000).to_string()]);
    assert_eq!(later.i64("probe_rc"), 6, "no samples after the last kernel");
    p.finish().assert_success("launcher");
}

#[test]
fn result_codes() {
    let env = SimEnv::new();
    let kv = nvml(&env, &["badargs"]);
    assert_eq!(kv.i64("preinit.count"), 1, "before nvmlInit: UNINITIALIZED");
    assert_eq!(kv.i64("bad.count_null"), 2);
    assert_eq!(kv.i64("bad.handle_index"), 2);
    assert_eq!(kv.i64("bad.handle_uuid"), 6);
    assert_eq!(kv.i64("bad.name_small"), 7);
    assert_eq!(kv.i64("bad.memory_null"), 2);
    assert_eq!(kv.str("ok.error_string_7"), "Insufficient Size");
    assert_eq!(
        kv.i64("shutdown.count"),
        1,
        "after nvmlShutdown: UNINITIALIZED"
    );
}
