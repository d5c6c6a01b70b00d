//! Accuracy of the compute cap over the simulated GPU, with real processes.
//!
//! For each scenario it starts fresh simulated machine, the C client `cap_linked
//! launch-loop N wait` (one kernel after another, asynchronously, as fast as the throttle
//! lets it) in one or more containers (a container = a shared-region file and its
//! `CUDA_DEVICE_SM_LIMIT`, policy `force`), releases them together and samples the
//! simulator's ground truth (`vgpu-sim status --json`: device time per process) every
//! ~100 ms. Reported per container: mean busy share over [1 s, end], standard deviation
//! of its 0.5 s windows, and the settle time (from when the trailing 0.5 s share stays
//! within 2 points of the target).
//!
//! The `hip-*` scenarios do the same over the simulated AMD GPU: the C client `hip_cap
//! launch-loop N launch_async` (back-to-back `hipLaunchKernel` on a stream), the limit as
//! `HIP_DEVICE_SM_LIMIT`, each process in a private mount namespace where
//! `/sys/module/amdgpu/initstate` reads `live` (AMD SMI, whose per-process GPU time feeds
//! the controller on AMD, needs the amdgpu driver), as tests/hip_compute_cap.rs runs them.
//!
//! Run (after `cargo build --workspace --release`):
//!     cargo run --release --example cap_accuracy [-- --quick] [--seconds S] [--only A,B]
//! (`--only`: scenarios whose name contains one of the comma-separated parts, e.g.
//! `--only p4,two-k1000`, or `--only hip` for the AMD ones.)
//! Writes `target/cap_accuracy/{results.csv,results.md,series.csv}`; `series.csv` feeds
//! `scripts/plot-share.py`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::Json;

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe path");
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "examples") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Cuda,
    Hip,
}

/// Compiles `tests/c/hip_cap.c` against the simulated libamdhip64.
fn build_hip_client(out_dir: &Path) -> PathBuf {
    let out = out_dir.join("hip_cap");
    let status = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
        .args(["-std=gnu11", "-O1", "-w"])
        .arg(root().join("tests/c/hip_cap.c"))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", profile_dir().join("sim").display()))
        .args(["-l:libamdhip64.so.7", "-ldl", "-lpthread"])
        .status()
        .expect("cc");
    assert!(status.success(), "compiling hip_cap failed");
    out
}

/// `client args` for a vendor: HIP processes run in a private mount namespace where
/// `/sys/module/amdgpu/initstate` reads `live` (`unshare` and `sh` exec, so the child's pid
/// is the client's).
fn client_command(vendor: Vendor, client: &Path, launches: u64) -> Command {
    match vendor {
        Vendor::Cuda => {
            let mut c = Command::new(client);
            c.args(["launch-loop", &launches.to_string(), "wait"]);
            c
        }
        Vendor::Hip => {
            const WITH_AMDGPU: &str = "mount -t tmpfs vgpu-sysmodule /sys/module && \
                 mkdir -p /sys/module/amdgpu && echo live > /sys/module/amdgpu/initstate && \
                 exec \"$@\"";
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private"]);
            // SAFETY: getuid has no preconditions.
            if unsafe { libc::getuid() } != 0 {
                c.arg("--map-root-user");
            }
            c.args(["sh", "-c", WITH_AMDGPU, "sh"]).arg(client).args([
                "launch-loop",
                &launches.to_string(),
                "launch_async",
            ]);
            c
        }
    }
}

/// Compiles `tests/c/cap_linked.c` against the simulated libcuda.
fn build_client(out_dir: &Path) -> PathBuf {
    let out = out_dir.join("cap_linked");
    let r = root();
    let status = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
        .args(["-std=gnu11", "-O1", "-w"])
        .arg(format!("-I{}", r.join("tests/c").display()))
        .arg(format!("-I{}", r.join("cuda-headers/include").display()))
        .arg(r.join("tests/c/cap_linked.c"))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", profile_dir().join("sim").display()))
        .args(["-l:libcuda.so.1", "-ldl", "-lpthread"])
        .status()
        .expect("cc");
    assert!(status.success(), "compiling cap_linked failed");
    out
}

struct Scenario {
    name: String,
    vendor: Vendor,
    kernel_ns: u64,
    /// (target %, processes) per container.
    containers: Vec<(u64, usize)>,
}

struct Clients {
    cuda: PathBuf,
    hip: PathBuf,
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    container: usize,
}

/// Per container: samples of (seconds since release, cumulative busy ns).
type Series = Vec<Vec<(f64, u64)>>;

fn busy_by_pid(status: &Json) -> Vec<(u32, u64)> {
    status
        .get("processes")
        .map(|p| p.items().to_vec())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let pid = p.get("pid")?.as_u64()? as u32;
            let busy = p
                .get("devices")?
                .items()
                .iter()
                .filter_map(|d| d.get("busy_ns")?.as_u64())
                .sum();
            Some((pid, busy))
        })
        .collect()
}

fn run(s: &Scenario, clients: &Clients, work: &Path, seconds: f64) -> Series {
    let client = match s.vendor {
        Vendor::Cuda => &clients.cuda,
        Vendor::Hip => &clients.hip,
    };
    let limit_var = match s.vendor {
        Vendor::Cuda => "CUDA_DEVICE_SM_LIMIT",
        Vendor::Hip => "HIP_DEVICE_SM_LIMIT",
    };
    let dir = profile_dir();
    let state = work.join(format!("{}.state", s.name));
    let _ = std::fs::remove_file(&state);
    let mut procs = Vec::new();
    for (c, &(target, n)) in s.containers.iter().enumerate() {
        let region = work.join(format!("{}-c{c}.cache", s.name));
        let _ = std::fs::remove_file(&region);
        for _ in 0..n {
            let launches = ((seconds + 2.0) * 1e9 / s.kernel_ns as f64) as u64;
            let mut child = client_command(s.vendor, client, launches)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("LD_LIBRARY_PATH", dir.join("sim"))
                .env("LD_PRELOAD", dir.join("libvgpu.so"))
                .env("VGPU_SIM_STATE", &state)
                .env("VGPU_SIM_KERNEL_NS", s.kernel_ns.to_string())
                .env("VGPU_SIM_CONTEXT_BYTES", "64m")
                .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &region)
                .env(limit_var, target.to_string())
                .env("GPU_CORE_UTILIZATION_POLICY", "force")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn client");
            let stdout = child.stdout.take().expect("stdout");
            let mut lines = BufReader::new(stdout).lines();
            let mut pid = 0;
            for line in lines.by_ref() {
                let line = line.expect("client output");
                if let Some(p) = line.strip_prefix("pid=") {
                    pid = p.parse().expect("pid");
                }
                if line == "ready=1" {
                    break;
                }
            }
            assert!(pid > 0, "client did not start");
            // Keep draining its output so it never blocks.
            std::thread::spawn(move || for _ in lines {});
            let stdin = child.stdin.take();
            procs.push(Proc {
                child,
                stdin,
                pid,
                container: c,
            });
        }
    }
    let status = || {
        let out = Command::new(dir.join("vgpu-sim"))
            .args(["status", "--json"])
            .env("VGPU_SIM_STATE", &state)
            .output()
            .expect("vgpu-sim status");
        busy_by_pid(&Json::parse(&String::from_utf8_lossy(&out.stdout)).expect("status JSON"))
    };
    // Let every watcher see its cap, then release all processes at once.
    std::thread::sleep(Duration::from_millis(300));
    let base = status();
    let t0 = Instant::now();
    for p in &mut procs {
        if let Some(mut stdin) = p.stdin.take() {
            let _ = writeln!(stdin, "go");
            p.stdin = Some(stdin);
        }
    }
    let mut series: Series = vec![Vec::new(); s.containers.len()];
    for (c, ser) in series.iter_mut().enumerate() {
        let _ = c;
        ser.push((0.0, 0));
    }
    while t0.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_millis(100));
        let before = t0.elapsed().as_secs_f64();
        let now = status();
        let t = (before + t0.elapsed().as_secs_f64()) / 2.0;
        for (c, ser) in series.iter_mut().enumerate() {
            let busy: u64 = procs
                .iter()
                .filter(|p| p.container == c)
                .map(|p| {
                    let b = |v: &[(u32, u64)]| v.iter().find(|x| x.0 == p.pid).map_or(0, |x| x.1);
                    b(&now).saturating_sub(b(&base))
                })
                .sum();
            ser.push((t, busy));
        }
    }
    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let _ = std::fs::remove_file(&state);
    series
}

/// Busy share over [a, b] from a cumulative series (linear interpolation).
fn share(ser: &[(f64, u64)], a: f64, b: f64) -> f64 {
    let at = |t: f64| -> f64 {
        let i = ser.partition_point(|x| x.0 < t);
        if i == 0 {
            return ser[0].1 as f64;
        }
        if i >= ser.len() {
            return ser[ser.len() - 1].1 as f64;
        }
        let (t0, b0) = ser[i - 1];
        let (t1, b1) = ser[i];
        b0 as f64 + (b1 as f64 - b0 as f64) * (t - t0) / (t1 - t0)
    };
    (at(b) - at(a)) / ((b - a) * 1e9)
}

struct Stats {
    mean: f64,
    std: f64,
    settle: f64,
}

fn stats(ser: &[(f64, u64)], target: f64, seconds: f64) -> Stats {
    let end = ser.last().map_or(seconds, |x| x.0);
    let mean = share(ser, 1.0, end) * 100.0;
    let windows: Vec<f64> = (0..)
        .map(|k| 1.0 + 0.5 * k as f64)
        .take_while(|&a| a + 0.5 <= end + 1e-9)
        .map(|a| share(ser, a, a + 0.5) * 100.0)
        .collect();
    let m = windows.iter().sum::<f64>() / windows.len().max(1) as f64;
    let std = (windows.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
        / windows.len().max(1) as f64)
        .sqrt();
    let mut settle = 0.0;
    let mut t = 0.5;
    while t <= end {
        if (share(ser, t - 0.5, t) * 100.0 - target).abs() > 2.0 {
            settle = t;
        }
        t += 0.1;
    }
    Stats { mean, std, settle }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let out_dir = profile_dir().parent().expect("target").join("cap_accuracy");
    std::fs::create_dir_all(&out_dir).expect("output dir");
    let work = std::env::temp_dir().join(format!("vgpu-cap-accuracy-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let clients = Clients {
        cuda: build_client(&work),
        hip: build_hip_client(&work),
    };

    let kernels: &[u64] = if quick {
        &[1_000_000]
    } else {
        &[100_000, 1_000_000, 5_000_000]
    };
    let targets: &[u64] = if quick { &[30] } else { &[10, 30, 50, 80] };
    let mut scenarios = Vec::new();
    for &k in kernels {
        for &t in targets {
            for n in [1, 4] {
                scenarios.push(Scenario {
                    name: format!("t{t}-k{}-p{n}", k / 1000),
                    vendor: Vendor::Cuda,
                    kernel_ns: k,
                    containers: vec![(t, n)],
                });
            }
        }
        scenarios.push(Scenario {
            name: format!("two-k{}", k / 1000),
            vendor: Vendor::Cuda,
            kernel_ns: k,
            containers: vec![(30, 1), (60, 1)],
        });
    }
    // AMD: 30 % and 60 %, one process and four of one container (the AMD probe reads each
    // process's GPU time from AMD SMI's process list, as NVML's samples on NVIDIA).
    let hip_kernels: &[u64] = if quick {
        &[1_000_000]
    } else {
        &[100_000, 1_000_000, 5_000_000]
    };
    for &k in hip_kernels {
        for t in [30, 60] {
            for n in [1, 4] {
                scenarios.push(Scenario {
                    name: format!("hip-t{t}-k{}-p{n}", k / 1000),
                    vendor: Vendor::Hip,
                    kernel_ns: k,
                    containers: vec![(t, n)],
                });
            }
        }
    }
    // Two containers on one AMD card: each container's probe reads its own processes' GPU
    // time (AMD SMI's per-process running totals), not the device's, so each gets its own
    // target with the other's work on the card.
    scenarios.push(Scenario {
        name: "hip-two-k1000".to_string(),
        vendor: Vendor::Hip,
        kernel_ns: 1_000_000,
        containers: vec![(30, 1), (60, 1)],
    });

    scenarios.retain(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())));
    let mut csv =
        String::from("scenario,kernel_us,container,target,processes,mean,std,settle_s,ok\n");
    let mut md = String::from(
        "| vendor | kernel | target % | processes | mean share % (after 1 s) | std of 0.5 s windows | settle (±2 pt) | |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut series_csv = String::from("scenario,container,target,t,share\n");
    let mut failures = 0;
    for s in &scenarios {
        let series = run(s, &clients, &work, seconds);
        for (c, ser) in series.iter().enumerate() {
            let (target, n) = s.containers[c];
            let st = stats(ser, target as f64, seconds);
            let ok = (st.mean - target as f64).abs() <= 2.0 && st.std <= 3.0;
            failures += usize::from(!ok);
            let label = if s.containers.len() > 1 {
                format!("{n} (container {} of 30/60)", c + 1)
            } else {
                n.to_string()
            };
            println!(
                "{:<14} kernel {:>5} us  container {c}  target {target:>2} %  procs {n}: mean {:6.2}  std {:5.2}  settle {:.1} s  {}",
                s.name,
                s.kernel_ns / 1000,
                st.mean,
                st.std,
                st.settle,
                if ok { "ok" } else { "MISS" }
            );
            csv.push_str(&format!(
                "{},{},{c},{target},{n},{:.2},{:.2},{:.1},{}\n",
                s.name,
                s.kernel_ns / 1000,
                st.mean,
                st.std,
                st.settle,
                ok
            ));
            md.push_str(&format!(
                "| {} | {} ms | {target} | {label} | {:.1} | {:.2} | {:.1} s | {} |\n",
                match s.vendor {
                    Vendor::Cuda => "CUDA",
                    Vendor::Hip => "HIP",
                },
                s.kernel_ns as f64 / 1e6,
                st.mean,
                st.std,
                st.settle,
                if ok { "✓" } else { "✗" }
            ));
            // 100 ms shares for the plot.
            let end = ser.last().map_or(0.0, |x| x.0);
            let mut t = 0.0;
            while t + 0.1 <= end {
                series_csv.push_str(&format!(
                    "{},{c},{target},{:.2},{:.2}\n",
                    s.name,
                    t + 0.1,
                    share(ser, t, t + 0.1) * 100.0
                ));
                t += 0.1;
            }
        }
    }
    std::fs::write(out_dir.join("results.csv"), csv).expect("write csv");
    std::fs::write(out_dir.join("results.md"), &md).expect("write md");
    std::fs::write(out_dir.join("series.csv"), series_csv).expect("write series");
    let _ = std::fs::remove_dir_all(&work);
    println!("\n{md}");
    println!("wrote {}", out_dir.display());
    if failures > 0 {
        println!("{failures} result(s) outside mean ±2 points / std <= 3 points");
    }
}
