//! Real containers: `vgpuctl run --container` (new pid and mount namespaces laid out as
//! HAMi's device plugin lays them out, the library injected by `/etc/ld.so.preload`), the
//! simulated GPU telling their processes apart by host pid, and `vgpuctl run` as a launcher
//! (signals, cleanup). Judged at the simulator's ground truth and the host's /proc.
//!
//! Needs root (CI runs as root) or unprivileged user namespaces; elsewhere these tests say
//! why and pass, except under CI where they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::{run_default, target_profile_dir, Child, Json, SimEnv};

/// Opens a FIFO for writing once its reader (a process in a container) has it open.
fn open_writer(p: &Path, timeout: Duration) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no reader opened {p:?}: {e}"),
        }
    }
}

/// Waits until file `p` has a line satisfying `pred`; returns the whole file.
fn wait_file(p: &Path, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    wait_file_after(p, 0, timeout, pred)
}

/// Same, considering only what was written past byte `offset`.
fn wait_file_after(
    p: &Path,
    offset: usize,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        if s.get(offset..).unwrap_or("").lines().any(&pred) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{p:?} never had the line expected; it has:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `NSpid` of host pid `pid` (host first, the container's pid last) and its pid namespace.
fn host_view(pid: u64) -> (Vec<u64>, u64) {
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .map(|m| m.ino())
        .unwrap_or(0);
    (nspid, ns)
}

/// The one region file a container run keeps in its per-container directory, host side.
fn container_region(dir: &Path, name: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("container"))
            .filter(|c| c.is_dir())
            .flat_map(|c| std::fs::read_dir(c).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cache"))
            .filter(|p| {
                // This run's region: a process of it has it open.
                std::fs::read_to_string(dir.join(format!("{name}.region")))
                    .map(|r| p.ends_with(r.trim().trim_start_matches("/usr/local/vgpu/")))
                    .unwrap_or(false)
            })
            .collect();
        if let [one] = &found[..] {
            return one.clone();
        }
        assert!(Instant::now() < deadline, "no region for {name} in {dir:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn inspect_json(region: &Path) -> Json {
    let mut c = Command::new(target_profile_dir().join("vgpuctl"));
    c.arg("inspect").arg(region).arg("--json");
    let out = run_default(&mut c);
    out.assert_success("vgpuctl inspect --json");
    Json::parse(&out.stdout).expect("inspect --json is JSON")
}

/// Ground truth: host pid -> bytes on device 0 (total, context) of every live process.
fn truth(sim: &SimEnv) -> BTreeMap<u64, (u64, u64)> {
    let st = sim.status_json();
    st.get("processes")
        .expect("processes")
        .items()
        .iter()
        .filter(|p| p.get("alive").and_then(Json::as_bool) == Some(true))
        .map(|p| {
            let d = p.at("devices/0").expect("device 0");
            let n = |k: &str| d.get(k).and_then(Json::as_u64).unwrap_or(0);
            (
                p.get("pid").and_then(Json::as_u64).unwrap(),
                (n("total_bytes"), n("context_bytes")),
            )
        })
        .collect()
}

const CHUNK: u64 = 32 * MIB;
const SLICE: u64 = GIB;

/// One container: two processes grabbing memory and one watching `cuMemGetInfo`, each
/// driven through a FIFO from the test.
struct Container {
    name: String,
    run: Child,
    fifos: Vec<std::fs::File>,
    dir: PathBuf,
}

impl Container {
    fn start(sim: &SimEnv, name: &str) -> Container {
        let dir = sim.dir().to_path_buf();
        let client = client(Style::Dlopen);
        for f in ["g1", "g2", "w"] {
            mkfifo(&dir.join(format!("{name}.{f}")));
        }
        let d = dir.join(name);
        let script = format!(
            "echo \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" > {d}.region; \
             C={c}; \
             $C cap-grab {CHUNK} < {d}.g1 > {d}.o1 2>&1 & \
             $C cap-grab {CHUNK} < {d}.g2 > {d}.o2 2>&1 & \
             $C watch-free 10 120 < {d}.w > {d}.ow 2>&1 & \
             wait",
            d = d.display(),
            c = client.display()
        );
        let mut c = vgpuctl_cmd(sim);
        c.args([
            "run",
            "--container",
            "--sim",
            "--gpumem",
            "1g",
            "--",
            "sh",
            "-c",
        ])
        .arg(script);
        let run = Child::spawn(&mut c, Duration::from_secs(120));
        let fifos = ["g1", "g2", "w"]
            .iter()
            .map(|f| open_writer(&dir.join(format!("{name}.{f}")), Duration::from_secs(30)))
            .collect();
        Container {
            name: name.into(),
            run,
            fifos,
            dir,
        }
    }

    fn out(&self, f: &str) -> PathBuf {
        self.dir.join(format!("{}.{f}", self.name))
    }
}

#[test]
fn two_containers_with_coinciding_pids_each_get_their_slice_of_one_gpu() {
    let sim = machine();
    if !containers_possible(&sim) {
        return;
    }
    let mut cs = [Container::start(&sim, "a"), Container::start(&sim, "b")];
    for c in &cs {
        for o in ["o1", "o2"] {
            wait_file(&c.out(o), Duration::from_secs(30), |l| l == "ready=1");
        }
        // The watcher has its context (and its host pid) before the slices fill up.
        wait_file(&c.out("ow"), Duration::from_secs(30), |l| {
            l.starts_with("pid=")
        });
    }
    // Both containers race for their slices at the same moment.
    for c in &mut cs {
        for f in &mut c.fifos[..2] {
            use std::io::Write;
            f.write_all(b"go\n").unwrap();
        }
    }
    let mut by_ns: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut ns_pids: Vec<BTreeSet<u64>> = Vec::new();
    for c in &cs {
        let mut mine = BTreeSet::new();
        for o in ["o1", "o2"] {
            let s = wait_file(&c.out(o), Duration::from_secs(30), |l| {
                l.starts_with("grabbed=")
            });
            let kv = testkit::Kv::parse(&s);
            assert_eq!(kv.i64("refusal"), 2, "refused with OUT_OF_MEMORY: {s}");
            mine.insert(kv.u64("pid"));
        }
        let s = wait_file(&c.out("ow"), Duration::from_secs(30), |l| {
            l.starts_with("pid=")
        });
        mine.insert(testkit::Kv::parse(&s).u64("pid"));
        ns_pids.push(mine);
    }
    // The premise: the two containers' processes have the same pids in their namespaces.
    assert!(
        !ns_pids[0].is_disjoint(&ns_pids[1]),
        "namespace pids coincide: {ns_pids:?}"
    );
    let gt = truth(&sim);
    for &pid in gt.keys() {
        let (nspid, ns) = host_view(pid);
        assert!(nspid.len() >= 2, "{pid} is a container process: {nspid:?}");
        by_ns.entry(ns).or_default().insert(pid);
    }
    assert_eq!(by_ns.len(), 2, "two containers' processes: {gt:?}");
    let mut hosts_of: Vec<BTreeMap<u64, u64>> = Vec::new(); // ns pid -> host pid
    let mut region_use: BTreeMap<u64, u64> = BTreeMap::new(); // host pid -> region bytes
    for (c, want) in cs.iter().zip(&ns_pids) {
        let region = container_region(sim.dir(), &c.name);
        let insp = inspect_json(&region);
        let procs = insp.get("processes").unwrap().items();
        let mut hosts = BTreeMap::new();
        let mut ledger = 0;
        for p in procs {
            let pid = p.get("pid").and_then(Json::as_u64).unwrap();
            let hostpid = p.get("hostpid").and_then(Json::as_u64).unwrap();
            let (nspid, _) = host_view(hostpid);
            assert_eq!(
                (nspid.first(), nspid.last()),
                (Some(&hostpid), Some(&pid)),
                "region slot of pid {pid}: hostpid {hostpid} is that process on the host"
            );
            let u = p.at("usage/0").unwrap();
            assert_eq!(
                u.get("context").and_then(Json::as_u64),
                Some(64 * MIB),
                "context charged: {p:?}"
            );
            let total = u.get("total").and_then(Json::as_u64).unwrap();
            ledger += total;
            region_use.insert(hostpid, total);
            hosts.insert(pid, hostpid);
        }
        let in_region: BTreeSet<u64> = hosts.keys().copied().collect();
        assert_eq!(&in_region, want, "{}: its three processes", c.name);
        let host_set: BTreeSet<u64> = hosts.values().copied().collect();
        let (_, ns) = host_view(*host_set.iter().next().unwrap());
        assert_eq!(
            by_ns[&ns], host_set,
            "{}: the simulator knows them by host pid",
            c.name
        );
        let held: u64 = host_set.iter().map(|p| gt[p].0).sum();
        for p in &host_set {
            assert_eq!(gt[p].1, 64 * MIB, "one context each, at the ground truth");
        }
        assert!(
            held <= SLICE,
            "{}: {held} bytes held, slice {SLICE}",
            c.name
        );
        assert!(
            SLICE - held < CHUNK,
            "{}: the slice is used up to the last chunk",
            c.name
        );
        assert_eq!(ledger, held, "{}: region ledger = ground truth", c.name);
        eprintln!(
            "{}: pids {want:?} in its namespace, host pids {host_set:?}, {held} of {SLICE} bytes",
            c.name
        );
        hosts_of.push(hosts);
    }
    // A killed process of container a is reclaimed within a second, seen by a's watcher;
    // container b is untouched.
    let a_grabber =
        testkit::Kv::parse(&std::fs::read_to_string(cs[0].out("o1")).unwrap()).u64("pid");
    let victim = hosts_of[0][&a_grabber];
    let free_before = last_free(&cs[0].out("ow"));
    let seen = std::fs::read_to_string(cs[0].out("ow"))
        .unwrap()
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let killed = Instant::now();
    // SAFETY: SIGKILL to a process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let want = free_before + region_use[&victim];
    wait_file_after(&cs[0].out("ow"), seen, Duration::from_secs(5), |l| {
        l.split("free=").nth(1).and_then(|f| f.parse::<u64>().ok()) == Some(want)
    });
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(1), "reclaimed after {took:?}");
    eprintln!(
        "reclaimed {} bytes of killed host pid {victim} (pid {a_grabber} in its container) after {took:?}",
        region_use[&victim]
    );
    let after = truth(&sim);
    assert!(!after.contains_key(&victim), "gone from the ground truth");
    for p in hosts_of[1].values() {
        assert_eq!(after.get(p), gt.get(p), "the other container is untouched");
    }
    for c in cs {
        drop(c.fifos);
        let out = c.run.finish();
        assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    }
    let left: Vec<_> = std::fs::read_dir(sim.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("vgpuctl-run-"))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "run directories removed: {left:?}");
}

fn last_free(p: &Path) -> u64 {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    // Complete lines only (the watcher may be writing the last one).
    let complete = &s[..s.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .rev()
        .find_map(|l| l.split("free=").nth(1).and_then(|f| f.parse().ok()))
        .expect("the watcher printed free memory")
}

#[test]
fn inside_a_container_every_process_runs_under_the_library_and_only_cuda_ones_notice() {
    let sim = machine().var("LIBCUDA_LOG_LEVEL", "4");
    if !containers_possible(&sim) {
        return;
    }
    let Some(py) = testkit::require_venv("container pynvml") else {
        return;
    };
    let d = sim.dir();
    let nvml = "import pynvml\n\
                pynvml.nvmlInit()\n\
                h = pynvml.nvmlDeviceGetHandleByIndex(0)\n\
                m = pynvml.nvmlDeviceGetMemoryInfo(h)\n\
                print('nvml_total=%d' % m.total)\n\
                print('nvml_used=%d' % m.used)\n\
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):\n\
                \x20   print('nvml_pid=%d' % p.pid)\n\
                \x20   print('nvml_pid_used=%d' % p.usedGpuMemory)\n\
                \x20   host = '/usr/local/vgpu/host-proc/%d/' % p.pid\n\
                \x20   st = open(host + 'status').read().split('NSpid:')[1].split('\\n')[0].split()\n\
                \x20   print('nvml_pid_nspid=%s' % st[-1])\n\
                \x20   import os\n\
                \x20   print('nvml_pid_here=%d' % (os.readlink(host + 'ns/pid') == os.readlink('/proc/self/ns/pid')))\n";
    std::fs::write(d.join("nvml.py"), nvml).unwrap();
    // Non-CUDA processes' stderr goes to files that must stay empty.
    let script = format!(
        "D={d}; \
         echo preload=$(cat /etc/ld.so.preload); \
         echo ld_preload=${{LD_PRELOAD-unset}}; \
         (echo x > /etc/ld.so.preload) 2>/dev/null && echo preload_ro=0 || echo preload_ro=1; \
         (echo x > /usr/local/vgpu/libvgpu.so) 2>/dev/null && echo lib_ro=0 || echo lib_ro=1; \
         touch /usr/local/vgpu/probe && echo vgpu_rw=1 && rm /usr/local/vgpu/probe; \
         echo maps=$(grep -c libvgpu.so /proc/self/maps 2>$D/grep.err); \
         echo cat_threads=$(cat /proc/self/status 2>$D/cat.err | grep Threads: | tr -dc 0-9); \
         echo files_before=$(ls /usr/local/vgpu 2>$D/ls.err | grep -c cache); \
         echo pipeline=$(seq 1 100 2>$D/seq.err | sort -n 2>$D/sort.err | tail -n 1 2>$D/tail.err); \
         python3 -c 'import os; print(\"python_pid=%d\" % os.getpid())' 2>$D/py.err; \
         sleep 2 | {c} alloc-hold 104857600 5 > $D/hold.out 2>$D/hold.err & \
         until grep -q ready=1 $D/hold.out; do sleep 0.01; done; \
         {py} $D/nvml.py 2>$D/nvml.err; \
         echo files_after=$(ls /usr/local/vgpu | grep -c cache); \
         wait; cat $D/hold.out",
        d = d.display(),
        c = client(Style::Dlopen).display(),
        py = py.display()
    );
    let host_preload = std::fs::read("/etc/ld.so.preload").ok();
    let out = run_default(
        vgpuctl_cmd(&sim)
            .args([
                "run",
                "--container",
                "--sim",
                "--gpumem",
                "1g",
                "--",
                "sh",
                "-c",
            ])
            .arg(&script),
    );
    out.assert_success("the container's script");
    let kv = out.kv();
    assert_eq!(
        std::fs::read("/etc/ld.so.preload").ok(),
        host_preload,
        "the machine's /etc/ld.so.preload is untouched"
    );
    assert_eq!(kv.u64("preload_ro"), 1, "/etc/ld.so.preload is read-only");
    assert_eq!(kv.u64("lib_ro"), 1, "the library is read-only");
    assert_eq!(kv.u64("vgpu_rw"), 1, "/usr/local/vgpu is writable");
    assert_eq!(kv.str("preload"), "/usr/local/vgpu/libvgpu.so");
    assert_eq!(kv.str("ld_preload"), "unset", "injected without LD_PRELOAD");
    assert!(kv.u64("maps") >= 1, "grep itself runs under the library");
    assert_eq!(kv.u64("cat_threads"), 1, "no thread in cat");
    assert_eq!(kv.u64("files_before"), 0, "no file from non-CUDA processes");
    assert_eq!(kv.u64("pipeline"), 100);
    assert!(kv.u64("python_pid") > 2, "python ran in the container");
    for f in ["grep", "cat", "ls", "seq", "sort", "tail", "py", "nvml"] {
        let err = std::fs::read_to_string(d.join(format!("{f}.err"))).unwrap_or_default();
        let lib_lines: Vec<&str> = err.lines().filter(|l| l.contains("vgpu")).collect();
        if f == "nvml" {
            continue; // an NVML client is a GPU client: the library may speak there
        }
        assert!(err.is_empty(), "{f} got output: {err:?} {lib_lines:?}");
    }
    // The CUDA client and the NVML client see the container's slice and its process.
    assert_eq!(kv.u64("ok"), 1, "{}", out.describe());
    assert_eq!(kv.u64("nvml_total"), GIB, "{}", out.describe());
    // The pid NVML lists is, in the machine's procfs, the holder: its pid in the container
    // is the holder's, and it lives in this container's pid namespace.
    let holder_ns_pid = kv.u64("pid");
    let listed = kv.u64("nvml_pid");
    assert_eq!(
        kv.u64("nvml_pid_nspid"),
        holder_ns_pid,
        "{}",
        out.describe()
    );
    assert_eq!(kv.u64("nvml_pid_here"), 1, "{}", out.describe());
    assert_ne!(listed, holder_ns_pid, "a host pid, not the container's");
    assert_eq!(kv.u64("nvml_pid_used"), 64 * MIB + 100 * MIB);
    assert_eq!(kv.u64("nvml_used"), 64 * MIB + 100 * MIB);
    assert_eq!(kv.u64("files_after"), 1, "the CUDA client made the region");
}

/// Copies what `vgpuctl run --container` needs (vgpuctl, libvgpu.so, sim/, vgpu-demo) into
/// `dir`, readable by every user (the build tree may not be).
fn world_readable_build(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = target_profile_dir();
    let bin = dir.join("bin");
    std::fs::create_dir_all(bin.join("sim")).unwrap();
    for f in ["vgpuctl", "libvgpu.so", "vgpu-demo"] {
        std::fs::copy(src.join(f), bin.join(f)).unwrap();
    }
    for f in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        std::fs::copy(src.join("sim").join(f), bin.join("sim").join(f)).unwrap();
    }
    for d in [dir, &bin, &bin.join("sim")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    bin
}

#[test]
fn without_root_a_container_runs_in_a_user_namespace_or_is_refused_clearly() {
    testkit::require_sim();
    let sim = machine();
    let bin = world_readable_build(sim.dir());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As root, drop to `nobody` (setpriv is util-linux's, like unshare).
    let as_user = |program: &Path| {
        let mut c = sim.command(if root { Path::new("setpriv") } else { program });
        if root {
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(program);
        }
        c.env_remove("LD_LIBRARY_PATH")
            .env_remove("CUDA_DEVICE_MEMORY_SHARED_CACHE")
            .env("TMPDIR", sim.dir())
            .env("VGPU_SIM_STATE", sim.dir().join("user.state"));
        c
    };
    // Does the kernel let this user make a user namespace at all?
    let probe = run_default(as_user(Path::new("/usr/bin/unshare")).args([
        "--user",
        "--map-current-user",
        "true",
    ]));
    let mut c = as_user(&bin.join("vgpuctl"));
    c.args([
        "run",
        "--container",
        "--sim",
        "--gpumem",
        "1g",
        "--",
        "sh",
        "-c",
    ])
    .arg(format!(
        "echo pid=$$; echo uid=$(id -u); echo preload=$(cat /etc/ld.so.preload); {}",
        bin.join("vgpu-demo").display()
    ));
    let out = run_default(&mut c);
    if !probe.status.success() {
        assert_eq!(out.status.code(), Some(2), "{}", out.describe());
        assert!(
            out.stderr
                .contains("needs root, or unprivileged user namespaces"),
            "a clear message: {}",
            out.describe()
        );
        eprintln!(
            "this kernel refuses unprivileged user namespaces: {}",
            out.stderr
        );
        return;
    }
    out.assert_success("an unprivileged container");
    let kv = out.kv();
    assert_eq!(
        kv.u64("pid"),
        2,
        "the command is pid 2, under the container's init"
    );
    assert_ne!(kv.u64("uid"), 0, "not root inside either");
    assert_eq!(kv.str("preload"), "/usr/local/vgpu/libvgpu.so");
    assert!(
        out.stdout.contains("cuDeviceTotalMem says 1024 MiB"),
        "held to its slice: {}",
        out.describe()
    );
    assert_eq!(run_entries(sim.dir()), Vec::<String>::new(), "cleaned up");
}

#[test]
fn busy_time_of_two_containers_with_coinciding_pids_is_kept_apart() {
    let sim = machine().var("VGPU_SIM_KERNEL_NS", "100000");
    if !containers_possible(&sim) {
        return;
    }
    const KERNELS: u64 = 200;
    let client = client(Style::Dlopen);
    let start = |name: &str| {
        let d = sim.dir().join(name);
        // The client launches at once ("go"), then holds until `sleep` closes its stdin.
        let script = format!(
            "(echo go; sleep 3) | {c} launch-loop {KERNELS} wait > {d}.out 2>&1",
            c = client.display(),
            d = d.display()
        );
        let mut c = vgpuctl_cmd(&sim);
        c.args(["run", "--container", "--sim", "--", "sh", "-c"])
            .arg(script);
        Child::spawn(&mut c, Duration::from_secs(60))
    };
    let runs = [start("a"), start("b")];
    let mut ns_pids = Vec::new();
    for name in ["a", "b"] {
        let s = wait_file(
            &sim.dir().join(format!("{name}.out")),
            Duration::from_secs(30),
            |l| l == "done=1",
        );
        ns_pids.push(testkit::Kv::parse(&s).u64("pid"));
    }
    assert_eq!(ns_pids[0], ns_pids[1], "the same pid in both containers");
    let st = sim.status_json();
    let procs = st.get("processes").unwrap().items();
    let mut seen = BTreeSet::new();
    for p in procs {
        let pid = p.get("pid").and_then(Json::as_u64).unwrap();
        let (nspid, ns) = host_view(pid);
        assert_eq!(
            nspid.last(),
            Some(&ns_pids[0]),
            "host pid {pid} is a client"
        );
        let d = p.at("devices/0").unwrap();
        assert_eq!(
            d.get("kernels").and_then(Json::as_u64),
            Some(KERNELS),
            "{p:?}"
        );
        assert_eq!(
            d.get("busy_ns").and_then(Json::as_u64),
            Some(KERNELS * 100_000),
            "its own kernels' device time, no one else's: {p:?}"
        );
        seen.insert(ns);
    }
    assert_eq!(seen.len(), 2, "one process per container: {procs:?}");
    for r in runs {
        let out = r.finish();
        assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    }
}

#[test]
fn a_container_inside_a_container_still_knows_its_processes_by_host_pid() {
    let sim = machine();
    if !containers_possible(&sim) {
        return;
    }
    let inner = format!(
        "{v} run --container --sim --gpumem 1g -- sh -c 'echo inner_pid=$$; {c} meminfo'",
        v = target_profile_dir().join("vgpuctl").display(),
        c = client(Style::Dlopen).display()
    );
    let out = run_default(
        vgpuctl_cmd(&sim)
            .args([
                "run",
                "--container",
                "--sim",
                "--gpumem",
                "2g",
                "--",
                "sh",
                "-c",
            ])
            .arg(inner),
    );
    out.assert_success("a nested container");
    let kv = out.kv();
    assert_eq!(kv.u64("inner_pid"), 2, "{}", out.describe());
    assert_eq!(kv.u64("total"), GIB, "the inner slice: {}", out.describe());
    assert!(!out.stderr.contains("refused"), "{}", out.stderr);
}
