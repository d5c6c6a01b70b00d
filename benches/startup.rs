//! Start-up at scale (DESIGN §6: 64 and 256 processes of one container starting at one
//! instant, median barrier-to-done within x1.5 of the bare driver's in the same run).
//!
//! Each wave: N processes of one container (one shared region, one simulated GPU) are
//! started and wait, with nothing CUDA done yet, for one CLOCK_MONOTONIC instant (the
//! barrier); then each does `cuInit`, a primary context, one 16 MiB `cuMemAlloc_v2` and its
//! free, and reports the time from the barrier to done (`cap-barrier` in
//! tests/c/cap_scenarios.h). Waves of the variants take turns, several rounds; the figure
//! is the median over all processes of all rounds of a variant, and the ratio is to the
//! bare driver's median in the same run. Beside it, per process: its CPU after the barrier
//! and at its exit (`wait4`), and its main thread's time waiting for a CPU and blocked
//! (`/proc/self/schedstat`), which tell a CPU-bound wave from one queueing on a lock.
//! A report, not a test:
//!
//!     scripts/build-release.sh && cargo bench --bench startup
//!
//! Variants: the bare simulated driver; libvgpu's shipped build
//! (`target/release-glibc2.17/libvgpu.so`, else the plain cargo build of this profile,
//! said so), the same with its eager load off (`VGPU_CORE_EAGER=off`: the core loaded at
//! the first GPU call, after the barrier, as in a program that dlopens the driver), with its
//! core cache off (`VGPU_CORE_CACHE_DIR=off`: a private memfd copy per process) and, beside them, its core (`libvgpu-core.so`) preloaded directly; HAMi-core's `libvgpu.so` when
//! `VGPU_BENCH_HAMI_CORE` names it.
//! `VGPU_STARTUP_PROCS` (default `64,256`), `VGPU_STARTUP_ROUNDS` (default 3).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use testkit::{build_c_client, link_libcuda, target_profile_dir, SimEnv};

fn median(sorted: &[u64]) -> u64 {
    sorted[sorted.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Variant {
    label: String,
    preload: Option<PathBuf>,
    env: Vec<(String, String)>,
}

struct Wave {
    /// Barrier-to-done of the processes that were waiting at the barrier.
    ns: Vec<u64>,
    /// Their phases: cuInit, primary context, allocation + free.
    phases: [Vec<u64>; 3],
    /// Their CPU time (all threads): from the barrier to done, and after done (the exit).
    cpu: [Vec<u64>; 2],
    /// Of their main thread's barrier-to-done: runnable but waiting for a CPU, and blocked.
    sched: [Vec<u64>; 2],
    late: usize,
    failed: usize,
}

/// Reaps `c` with `wait4` and returns its CPU time (user + system, all threads, ns); a
/// child still running at `limit` (a library that hangs) is killed first. Its output is
/// a few lines, far less than a pipe holds, so it never blocks writing before it is read.
fn reap(c: &Child, limit: std::time::Instant) -> Option<u64> {
    let pid = c.id() as i32;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut flags = libc::WNOHANG;
    loop {
        // SAFETY: valid out-pointers; the pid is our child, reaped only here.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
            return Some(ns(ru.ru_utime) + ns(ru.ru_stime));
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
        if r == 0 {
            if std::time::Instant::now() >= limit {
                // SAFETY: the child is not reaped yet, so the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                flags = 0;
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn wave(sim: &SimEnv, client: &Path, n: usize, variant: &Variant, round: usize) -> Wave {
    // A fresh container per wave: its first process creates the region, as in real life.
    let region = sim
        .dir()
        .join(format!("region-{n}-{round}-{}.cache", monotonic_ns()));
    // Time for all N to be started and waiting (spawning is serial here).
    let barrier = monotonic_ns() + 300_000_000 + n as u64 * 8_000_000;
    let children: Vec<Child> = (0..n)
        .map(|_| {
            let mut c = sim.command(client);
            c.arg("cap-barrier")
                .arg(barrier.to_string())
                .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Some(lib) = &variant.preload {
                c.env("LD_PRELOAD", lib);
            }
            for (k, v) in &variant.env {
                c.env(k, v);
            }
            c.spawn().expect("spawn")
        })
        .collect();
    let mut w = Wave {
        ns: Vec::new(),
        phases: Default::default(),
        cpu: Default::default(),
        sched: Default::default(),
        late: 0,
        failed: 0,
    };
    // A process that does not finish within the limit (a library that hangs) is killed
    // and counted as failed. Reaped with wait4 for its whole CPU time (exit included).
    let limit = std::time::Instant::now() + Duration::from_secs(30 + n as u64 / 8);
    for mut c in children {
        let cpu_total = reap(&c, limit);
        let mut text = String::new();
        if let Some(mut out) = c.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        let kv = testkit::Kv::parse(&text);
        match (kv.get("late"), kv.get("barrier_to_done_ns")) {
            (Some("1"), _) => w.late += 1,
            (_, Some(v)) => {
                w.ns.push(v.parse().unwrap_or(0));
                for (i, k) in ["phase.init_ns", "phase.ctx_ns", "phase.alloc_ns"]
                    .iter()
                    .enumerate()
                {
                    w.phases[i].push(kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(0));
                }
                let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
                if let (Some(after), Some(at_done), Some(total)) = (
                    num("cpu.barrier_to_done_ns"),
                    num("cpu.at_done_ns"),
                    cpu_total,
                ) {
                    w.cpu[0].push(after);
                    w.cpu[1].push(total.saturating_sub(at_done));
                }
                if let (Some(queued), Some(blocked)) =
                    (num("sched.queued_ns"), num("sched.blocked_ns"))
                {
                    w.sched[0].push(queued);
                    w.sched[1].push(blocked);
                }
            }
            _ => w.failed += 1,
        }
    }
    let _ = std::fs::remove_file(&region);
    w
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("VGPU_STARTUP_PROCS")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("VGPU_STARTUP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let client = build_c_client("cap_linked", &link_libcuda());
    let profile = target_profile_dir();
    let shipped = profile
        .parent()
        .map(|t| t.join("release-glibc2.17/libvgpu.so"))
        .filter(|p| p.exists());
    let ours: (String, PathBuf) = match shipped {
        Some(p) => ("libvgpu (shipped build)".into(), p),
        None => {
            println!(
                "note: no shipped build (scripts/build-release.sh); using the plain cargo build"
            );
            (
                "libvgpu (plain cargo build)".into(),
                profile.join("libvgpu.so"),
            )
        }
    };
    let core = ours.1.with_file_name("libvgpu-core.so");
    let v = |label: &str, preload: Option<PathBuf>, env: &[(&str, &str)]| Variant {
        label: label.into(),
        preload,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let shipped_build = core.exists();
    let mut variants = vec![
        v("bare driver", None, &[]),
        v(&ours.0, Some(ours.1.clone()), &[]),
    ];
    // The shipped build is a loader that, at the first GPU call, maps the container's cached
    // copy of its embedded core (one file in /dev/shm, written by the first process); with
    // the cache off it copies the core into a private memfd, as before the cache. The core
    // preloaded directly shows what the loader costs on top of the core.
    if shipped_build {
        // A program linked against the driver (this client) gets the core in the loader's
        // constructor, before the barrier; with VGPU_CORE_EAGER=off at its first GPU call,
        // after the barrier, as a program that dlopens the driver (Python) does.
        variants.push(v(
            "libvgpu shipped, eager load off (core loaded at the first call)",
            Some(ours.1.clone()),
            &[("VGPU_CORE_EAGER", "off")],
        ));
        variants.push(v(
            "libvgpu shipped, core cache off (private memfd copy)",
            Some(ours.1.clone()),
            &[("VGPU_CORE_CACHE_DIR", "off")],
        ));
        variants.push(v("libvgpu core preloaded directly", Some(core), &[]));
    }
    match std::env::var_os("VGPU_BENCH_HAMI_CORE").map(PathBuf::from) {
        Some(p) if p.exists() => variants.push(v("HAMi-core libvgpu.so", Some(p), &[])),
        Some(p) => println!("note: VGPU_BENCH_HAMI_CORE={} does not exist", p.display()),
        None => println!("note: VGPU_BENCH_HAMI_CORE not set: HAMi-core not measured"),
    }
    let mut sim = SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", "64m")
        .var("VGPU_SIM_KERNEL_NS", "0")
        .var("CUDA_DEVICE_MEMORY_LIMIT", "70g");
    // The machine's state file exists before the first wave (a machine that is up).
    let _ = sim
        .command(&client)
        .arg("info")
        .stdout(Stdio::null())
        .status();
    // Two container environments: the limit alone, and what HAMi's device plugin gives a
    // container besides (`NVIDIA_VISIBLE_DEVICES` = the allocated GPU's UUID, as NVML
    // spells it).
    let uuid = sim
        .status_json()
        .at("devices/0/uuid")
        .and_then(testkit::Json::as_str)
        .map(str::to_string)
        .expect("the simulated GPU's UUID");
    let envs: Vec<String> = std::env::var("VGPU_STARTUP_ENVS")
        .unwrap_or_else(|_| "plain,hami".into())
        .split(',')
        .map(|e| e.trim().to_string())
        .collect();
    for env in &envs {
        let described = match env.as_str() {
            "hami" => {
                sim.set("NVIDIA_VISIBLE_DEVICES", &uuid);
                "HAMi's environment (NVIDIA_VISIBLE_DEVICES=<the GPU's UUID>, CUDA_DEVICE_MEMORY_LIMIT=70g)"
            }
            _ => {
                sim.set("NVIDIA_VISIBLE_DEVICES", "all");
                "the limit alone (CUDA_DEVICE_MEMORY_LIMIT=70g, NVIDIA_VISIBLE_DEVICES=all)"
            }
        };
        for &n in &sizes {
            run_size(&sim, &client, &variants, n, rounds, described);
        }
    }
}

fn run_size(
    sim: &SimEnv,
    client: &Path,
    variants: &[Variant],
    n: usize,
    rounds: usize,
    described: &str,
) {
    {
        println!(
            "\n{n} processes of one container at one barrier (cuInit, primary context, 16 MiB alloc + free), {rounds} rounds; {described}"
        );
        println!(
            "| variant | processes measured | late / failed | median | p90 | max | median / bare |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let mut all: Vec<Vec<u64>> = vec![Vec::new(); variants.len()];
        let mut phases: Vec<[Vec<u64>; 3]> = vec![Default::default(); variants.len()];
        let mut cpu: Vec<[Vec<u64>; 2]> = vec![Default::default(); variants.len()];
        let mut sched: Vec<[Vec<u64>; 2]> = vec![Default::default(); variants.len()];
        let mut late = vec![(0usize, 0usize); variants.len()];
        for round in 0..rounds {
            for (i, variant) in variants.iter().enumerate() {
                let w = wave(sim, client, n, variant, round);
                all[i].extend(w.ns);
                for (p, v) in phases[i].iter_mut().zip(w.phases) {
                    p.extend(v);
                }
                for (p, v) in cpu[i].iter_mut().zip(w.cpu) {
                    p.extend(v);
                }
                for (p, v) in sched[i].iter_mut().zip(w.sched) {
                    p.extend(v);
                }
                late[i].0 += w.late;
                late[i].1 += w.failed;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let bare = {
            let mut v = all[0].clone();
            v.sort_unstable();
            (!v.is_empty()).then(|| median(&v))
        };
        for (i, Variant { label, .. }) in variants.iter().enumerate() {
            let mut v = all[i].clone();
            v.sort_unstable();
            if v.is_empty() {
                println!(
                    "| {label} | 0 | {} / {} | - | - | - | - |",
                    late[i].0, late[i].1
                );
                continue;
            }
            let m = median(&v);
            println!(
                "| {label} | {} | {} / {} | {:.2} ms | {:.2} ms | {:.2} ms | x{:.2} |",
                v.len(),
                late[i].0,
                late[i].1,
                m as f64 / 1e6,
                percentile(&v, 0.9) as f64 / 1e6,
                *v.last().unwrap() as f64 / 1e6,
                bare.map_or(f64::NAN, |b| m as f64 / b as f64)
            );
        }
        let med = |v: &Vec<u64>| {
            let mut v = v.clone();
            v.sort_unstable();
            (!v.is_empty()).then(|| median(&v))
        };
        println!("\nmedians by phase (cuInit | primary context | 16 MiB alloc + free):");
        for (i, Variant { label, .. }) in variants.iter().enumerate() {
            let m: Vec<String> = phases[i]
                .iter()
                .map(|p| med(p).map_or("-".into(), |m| format!("{:.2} ms", m as f64 / 1e6)))
                .collect();
            println!("- {label}: {}", m.join(" | "));
        }
        // What a process's wall time is made of: the CPU all the processes spend after the
        // barrier (their exits included) competes for the cores, and a process that waits
        // on a lock (the driver's, the region's) is blocked, not queued. Per process, and
        // far less noisy than the wall times.
        println!("\nCPU per process, medians (barrier to done | exit | sum, and the sum / bare):");
        let split: Vec<Option<(u64, u64)>> = cpu
            .iter()
            .map(|[after, exit]| Some((med(after)?, med(exit)?)))
            .collect();
        let bare_sum = split[0].map(|(a, e)| a + e);
        for (i, Variant { label, .. }) in variants.iter().enumerate() {
            match split[i] {
                Some((a, e)) => println!(
                    "- {label}: {} us | {} us | {} us | x{:.2}",
                    a / 1000,
                    e / 1000,
                    (a + e) / 1000,
                    bare_sum.map_or(f64::NAN, |b| (a + e) as f64 / b as f64)
                ),
                None => println!("- {label}: -"),
            }
        }
        // The rest of the wall time: waiting for a CPU, or blocked (a lock, a futex).
        println!("\nmain thread from the barrier to done, medians (runnable, waiting for a CPU | blocked):");
        for (i, Variant { label, .. }) in variants.iter().enumerate() {
            match (med(&sched[i][0]), med(&sched[i][1])) {
                (Some(q), Some(b)) => println!(
                    "- {label}: {:.2} ms | {:.2} ms",
                    q as f64 / 1e6,
                    b as f64 / 1e6
                ),
                _ => println!("- {label}: - (no /proc/self/schedstat)"),
            }
        }
    }
}
