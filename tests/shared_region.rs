//! The container-wide shared region through real processes: processes racing for the last
//! bytes, the NVML view from pynvml, kill -9 storms, reclamation time, unusable files, and
//! an independent reader of a live region.

mod common;

use std::time::{Duration, Instant};

use common::*;
use testkit::{run_default, Child, Json};

fn device0_used(sim: &testkit::SimEnv) -> u64 {
    inspect(sim)
        .at("devices/0/used_bytes")
        .and_then(Json::as_u64)
        .expect("devices/0/used_bytes")
}

/// N processes get ready, then all grab chunks at once until refused.
fn race(processes: usize) {
    let limit = 2 * GIB;
    let chunk = 5 * MIB;
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", limit.to_string());
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            let mut c = command(&sim, Style::Linked, true);
            c.args(["cap-grab", &chunk.to_string()]);
            Child::spawn(&mut c, Duration::from_secs(120))
        })
        .collect();
    for c in &mut children {
        c.wait_for_kv("ready", "1", Duration::from_secs(60));
    }
    for c in &mut children {
        c.send_line("go");
    }
    let mut total = 0;
    for c in &mut children {
        c.wait_for(Duration::from_secs(60), |l| l.starts_with("grabbed="));
        let kv = c.kv();
        assert_eq!(kv.i64("refusal"), 2, "{}", kv.text());
        total += kv.u64("grabbed");
    }
    assert!(
        total <= limit,
        "{processes} processes together hold {total} > {limit}"
    );
    assert!(
        limit - total < chunk,
        "the slice was filled: {total} of {limit}"
    );
    assert_eq!(
        device0_used(&sim),
        total,
        "the region counts exactly what is held"
    );
    // Every process found its host pid (NVML's pid; the same namespace here) with the
    // probe, although all of them probed at the same moment.
    let view = inspect(&sim);
    let procs = view.get("processes").map(Json::items).unwrap_or(&[]);
    assert_eq!(procs.len(), processes, "one slot per process");
    for p in procs {
        assert_eq!(p.get("hostpid"), p.get("pid"), "host pid discovered: {p:?}");
    }
    for c in &mut children {
        c.close_stdin();
    }
    for c in children {
        c.finish().assert_success("grabber");
    }
    assert_eq!(device0_used(&sim), 0, "clean exits give everything back");
}

#[test]
fn two_processes_race_for_the_last_bytes_never_over() {
    race(2);
}

#[test]
fn sixteen_processes_race_for_the_last_bytes_never_over() {
    race(16);
}

#[test]
fn pynvml_sees_the_slice_and_the_containers_usage() {
    let Some(python) = testkit::require_venv("pynvml_sees_the_slice") else {
        return;
    };
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "3g");
    // Another process of the container holds 700 MiB (+ its 64 MiB context).
    let mut holder = {
        let mut c = command(&sim, Style::Dlopen, true);
        c.args(["alloc-hold", &(700 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    holder.wait_for_kv("ready", "1", Duration::from_secs(30));
    let holder_pid = holder.pid();
    let script = r#"
import os, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
m = pynvml.nvmlDeviceGetMemoryInfo(h)
print(f"total={m.total}\nused={m.used}\nfree={m.free}")
m2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
print(f"v2_total={m2.total}\nv2_used={m2.used}\nv2_free={m2.free}")
for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
    print(f"proc.{p.pid}={p.usedGpuMemory}")
print(f"self={os.getpid()}")
"#;
    let mut c = sim.command(python);
    c.env("LD_PRELOAD", libvgpu()).args(["-c", script]);
    let out = run_default(&mut c);
    out.assert_success("pynvml");
    let kv = out.kv();
    let why = out.describe();
    let held = 700 * MIB + 64 * MIB;
    assert_eq!(kv.u64("total"), 3 * GIB, "{why}");
    assert_eq!(kv.u64("used"), held, "{why}");
    assert_eq!(kv.u64("free"), 3 * GIB - held, "{why}");
    assert_eq!(kv.u64("v2_total"), 3 * GIB, "{why}");
    assert_eq!(kv.u64("v2_used") + kv.u64("v2_free"), 3 * GIB, "{why}");
    assert_eq!(kv.u64(&format!("proc.{holder_pid}")), held, "{why}");
    holder.close_stdin();
    holder.finish().assert_success("holder");

    // Without libvgpu the same script sees the whole card: the view is libvgpu's.
    let mut c = sim.command(testkit::venv_python().unwrap());
    c.args(["-c", script]);
    let out = run_default(&mut c);
    out.assert_success("pynvml without preload");
    assert!(out.kv().u64("total") > 40 * GIB, "{}", out.describe());
}

#[test]
fn a_killed_process_is_reclaimed_within_one_second() {
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let mut victim = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["alloc-hold", &(600 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    victim.wait_for_kv("ready", "1", Duration::from_secs(30));
    // A live process of the same container, watching free memory.
    let mut watcher = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["watch-free", "20", "30"]);
        Child::spawn(&mut c, Duration::from_secs(60))
    };
    watcher.wait_for(Duration::from_secs(30), |l| {
        l.contains("free=") && l.ends_with(&format!("free={}", GIB - 600 * MIB))
    });
    let killed_at = Instant::now();
    victim.kill9();
    watcher.wait_for(Duration::from_secs(5), |l| {
        l.ends_with(&format!("free={GIB}"))
    });
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(1), "reclaimed after {took:?}");
    eprintln!("reclaimed {} MiB of a killed process after {took:?}", 600);
    watcher.close_stdin();
    let _ = watcher.finish();
}

#[test]
fn kill_storm_leaves_no_hang_and_exact_usage() {
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "2g");
    let workers = 6;
    // VGPU_KILL_STORM_KILLS=1000 for the long run quoted in docs/SHARED_REGION.md.
    let kills = env_count("VGPU_KILL_STORM_KILLS", 300);
    let mut next = xorshift(0x9e3779b97f4a7c15);
    let spawn = || {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["cap-churn", "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    let mut pool: Vec<Child> = (0..workers).map(|_| spawn()).collect();
    let start = Instant::now();
    for _ in 0..kills {
        let i = (next() % workers as u64) as usize;
        // Random moment: during start-up (registration, slot claim) or mid-churn.
        std::thread::sleep(Duration::from_micros(next() % 30_000));
        pool[i].kill9();
        pool[i] = spawn();
    }
    for c in &mut pool {
        c.kill9();
    }
    let storm = start.elapsed();
    // A fresh process: its start must not hang on anything the dead left behind, and
    // within a second the region is exact again (everyone who held memory is dead).
    let probe = Instant::now();
    let mut watcher = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["watch-free", "20", "10"]);
        Child::spawn(&mut c, Duration::from_secs(30))
    };
    watcher.wait_for(Duration::from_secs(10), |l| l.starts_with("pid="));
    let started = probe.elapsed();
    assert!(
        started < Duration::from_secs(5),
        "start-up after the storm took {started:?}"
    );
    watcher.wait_for(Duration::from_secs(1), |l| {
        l.ends_with(&format!("free={}", 2 * GIB))
    });
    let exact = probe.elapsed();
    watcher.close_stdin();
    let _ = watcher.finish();
    assert_eq!(device0_used(&sim), 0);
    eprintln!(
        "kill storm: {kills} kills of {workers} churning workers in {storm:?}; a new process started in {started:?} and saw exact usage after {exact:?}"
    );
}

#[test]
fn unusable_region_files_are_left_alone_and_limits_still_hold() {
    let cases: [(&str, Vec<u8>); 3] = [
        ("foreign", b"this is not a region file at all".repeat(100)),
        ("truncated-hami", {
            let mut v = vec![0u8; 4096];
            v[..4].copy_from_slice(&19_920_718i32.to_le_bytes());
            v[4..8].copy_from_slice(&1i32.to_le_bytes());
            v
        }),
        ("wrong-version", {
            let mut v = vec![0u8; 2_008_952];
            v[..4].copy_from_slice(&19_920_718i32.to_le_bytes());
            v[4..8].copy_from_slice(&7i32.to_le_bytes());
            v
        }),
    ];
    for (name, bytes) in cases {
        let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
        std::fs::write(region_path(&sim), &bytes).unwrap();
        let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-fill", &(100 * MIB).to_string()]);
        assert_eq!(
            kv.u64("total"),
            GIB,
            "{name}: still capped\n{}",
            out.describe()
        );
        assert_eq!(kv.i64("one_more_rc"), 2, "{name}\n{}", out.describe());
        let lines = out
            .stderr
            .lines()
            .filter(|l| l.contains("shared region"))
            .count();
        assert_eq!(lines, 1, "{name}: one clear line\n{}", out.stderr);
        assert_eq!(
            std::fs::read(region_path(&sim)).unwrap(),
            bytes,
            "{name}: file untouched"
        );
    }
}

#[test]
fn an_independent_reader_following_spec_md_reads_a_live_region() {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "2g");
    let mut holder = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["alloc-hold", &(300 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    holder.wait_for_kv("ready", "1", Duration::from_secs(30));
    let reader = testkit::workspace_root().join("shm-layout/tests/reader.py");
    let out = run_default(
        std::process::Command::new("python3")
            .arg(reader)
            .arg(region_path(&sim)),
    );
    out.assert_success("reader.py");
    let j = Json::parse(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let pid = holder.pid() as u64;
    let slots = j.get("slots").map(Json::items).unwrap_or(&[]);
    let mine = slots
        .iter()
        .find(|s| s.get("pid").and_then(Json::as_u64) == Some(pid))
        .unwrap_or_else(|| panic!("holder's slot missing:\n{}", out.stdout));
    let text = format!("{mine:?}");
    assert!(
        text.contains(&(300 * MIB).to_string()) && text.contains(&(64 * MIB).to_string()),
        "data 300 MiB and context 64 MiB in the holder's slot: {text}"
    );
    holder.close_stdin();
    holder.finish().assert_success("holder");
}

#[test]
fn a_process_with_a_stricter_limit_tightens_the_container_and_says_so() {
    let sim = machine()
        .var("VGPU_SIM_CONTEXT_BYTES", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "2g");
    let mut first = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["watch-free", "20", "30"]);
        Child::spawn(&mut c, Duration::from_secs(60))
    };
    first.wait_for(Duration::from_secs(30), |l| {
        l.ends_with(&format!("free={}", 2 * GIB))
    });
    // A second process of the container was given 1 GiB.
    let mut c = command(&sim, Style::Linked, true);
    c.env("CUDA_DEVICE_MEMORY_LIMIT", "1g").arg("meminfo");
    let out = run_default(&mut c);
    out.assert_success("meminfo with a stricter limit");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("limits differ"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line about the mismatch:\n{}",
        out.stderr
    );
    assert!(lines[0].contains("stricter"), "{}", lines[0]);
    assert_eq!(out.kv().u64("total"), GIB, "{}", out.describe());
    // The first process now sees the stricter slice too: it is the container's.
    first.wait_for(Duration::from_secs(5), |l| {
        l.ends_with(&format!("free={GIB}"))
    });
    assert_eq!(
        inspect(&sim)
            .at("devices/0/limit_bytes")
            .and_then(Json::as_u64),
        Some(GIB)
    );
    first.close_stdin();
    let _ = first.finish();
}

#[test]
fn each_process_publishes_its_sm_utilization_for_the_monitor() {
    // A process keeping the simulated GPU ~100 % busy with 1 ms kernels; within ~2 s its
    // slot's sm_util (HAMi's device_util[d].sm_util, exported by the node monitor) says so.
    let sim = machine()
        .var("VGPU_SIM_KERNEL_NS", "1000000")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let mut busy = {
        let mut c = command(&sim, Style::Linked, true);
        c.args(["launch-loop", "3000", "wait"]);
        Child::spawn(&mut c, Duration::from_secs(60))
    };
    busy.wait_for_kv("ready", "1", Duration::from_secs(30));
    busy.send_line("go");
    let deadline = Instant::now() + Duration::from_secs(5);
    let util = loop {
        let util = if region_path(&sim).exists() {
            inspect(&sim)
                .at("processes/0/usage/0/sm_util")
                .and_then(Json::as_u64)
                .unwrap_or(0)
        } else {
            0
        };
        if util > 50 || Instant::now() > deadline {
            break util;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(util > 50, "sm_util published: {util}");
    busy.kill9();
}

#[test]
fn nvml_devices_follow_cuda_visible_devices_like_the_driver_api() {
    let Some(python) = testkit::require_venv("nvml_devices_follow_cuda_visible_devices") else {
        return;
    };
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    let script = r#"
import pynvml
pynvml.nvmlInit()
n = pynvml.nvmlDeviceGetCount()
print(f"count={n}")
for i in range(n):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    print(f"uuid{i}={pynvml.nvmlDeviceGetUUID(h)}")
    print(f"index{i}={pynvml.nvmlDeviceGetIndex(h)}")
    print(f"total{i}={pynvml.nvmlDeviceGetMemoryInfo(h).total}")
try:
    pynvml.nvmlDeviceGetHandleByIndex(n)
    print("past_end=ok")
except pynvml.NVMLError as e:
    print(f"past_end={e.value}")
"#;
    let run_py = |visible: Option<&str>, preload: bool| {
        let mut c = sim.command(&python);
        if let Some(v) = visible {
            c.env("CUDA_VISIBLE_DEVICES", v);
        }
        if preload {
            c.env("LD_PRELOAD", libvgpu());
        }
        let out = run_default(c.args(["-c", script]));
        out.assert_success("pynvml");
        out
    };
    let all = run_py(None, false).kv();
    assert_eq!(all.u64("count"), 2);
    let uuid1 = all.str("uuid1").to_string();
    let out = run_py(Some("1"), true);
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.u64("count"), 1, "{why}");
    assert_eq!(
        kv.str("uuid0"),
        uuid1,
        "NVML index 0 is CUDA ordinal 0: {why}"
    );
    assert_eq!(kv.u64("index0"), 0, "{why}");
    assert_eq!(kv.u64("total0"), 2 * GIB, "device 1's slice: {why}");
    assert_eq!(
        kv.str("past_end"),
        "2",
        "NVML_ERROR_INVALID_ARGUMENT: {why}"
    );
    // Unset: NVML's own view, each device with its slice.
    let kv = run_py(None, true).kv();
    assert_eq!(kv.u64("count"), 2);
    assert_eq!((kv.u64("total0"), kv.u64("total1")), (GIB, 2 * GIB));
}

#[test]
fn after_exec_the_new_program_gets_the_slice_back() {
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let (out, kv) = run_scenario(&sim, Style::Linked, &["cap-exec"]);
    assert_eq!(
        kv.i64("pid_before_exec"),
        kv.i64("pid"),
        "same process: {}",
        out.describe()
    );
    // Only the new image's context (64 MiB) is in use: the 300 MiB the old image held
    // went with it, as the driver freed it.
    assert_eq!(kv.u64("free"), GIB - 64 * MIB, "{}", out.describe());
    assert_eq!(
        device0_used(&sim),
        0,
        "and the region is empty after the exit"
    );
}

/// Whether the region file holds a published region naming `uuid` as device 0, and how
/// many process slots were ever claimed in it.
fn prepared_region(sim: &testkit::SimEnv) -> (Option<String>, i32) {
    let mut seen = (None, -1);
    with_region(sim, |r| {
        seen = (
            r.uuid_str(0),
            r.v1.proc_num.load(std::sync::atomic::Ordering::Acquire),
        )
    });
    seen
}

#[test]
fn cuinit_alone_prepares_the_containers_region_and_claims_no_slot() {
    // The container's first process creates the region at `cuInit`, before the driver
    // initialises, so that the processes starting with it find it ready; it holds no slot
    // until it uses the GPU.
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    assert!(!region_path(&sim).exists());
    let mut c = command(&sim, Style::Linked, true);
    c.arg("init-only");
    run_default(&mut c).assert_success("init-only");
    let uuid = sim
        .status_json()
        .at("devices/0/uuid")
        .and_then(Json::as_str)
        .map(str::to_string)
        .expect("the simulated GPU's UUID");
    assert_eq!(prepared_region(&sim), (Some(uuid.clone()), 0));
    // HAMi's environment: the device plugin's UUID list names the device (no NVML needed).
    let sim = machine()
        .var("CUDA_DEVICE_MEMORY_LIMIT", "1g")
        .var("NVIDIA_VISIBLE_DEVICES", &uuid);
    let mut c = command(&sim, Style::Linked, true);
    c.arg("init-only");
    run_default(&mut c).assert_success("init-only, HAMi's environment");
    assert_eq!(prepared_region(&sim), (Some(uuid.clone()), 0));
    // A later process uses the prepared region as any other: one slot, the device's cap.
    let mut c = command(&sim, Style::Linked, true);
    c.arg("meminfo");
    let out = run_default(&mut c);
    out.assert_success("meminfo");
    assert_eq!(out.kv().u64("total"), 1 << 30);
    assert_eq!(prepared_region(&sim), (Some(uuid), 1));
}
