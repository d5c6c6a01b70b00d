//! Shared by libvgpu's process-level tests: the library, the C clients, a simulated machine
//! with known costs, and commands that run a client under `LD_PRELOAD=libvgpu.so`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{
    build_c_client, link_libcuda, require_sim, run_default, target_profile_dir, Child, Kv, Output,
    SimEnv,
};

pub const MIB: u64 = 1 << 20;

/// Whether containers can be made here (root, or unprivileged user namespaces), judged by
/// `probe` (a `vgpuctl run --container ... -- true`); under CI they must be.
pub fn containers_possible_with(probe: &mut Command, what: &str) -> bool {
    let out = run_default(probe);
    if out.status.success() {
        return true;
    }
    assert!(
        !testkit::in_ci() && out.stderr.contains("needs root"),
        "{what} fails: {}",
        out.describe()
    );
    eprintln!(
        "SKIP: no containers here (not root, no user namespaces): {}",
        out.stderr
    );
    false
}

/// Whether `vgpuctl run --container --sim` works here (see [`containers_possible_with`]).
pub fn containers_possible(sim: &SimEnv) -> bool {
    containers_possible_with(
        vgpuctl_cmd(sim).args(["run", "--container", "--sim", "--", "true"]),
        "vgpuctl run --container",
    )
}

/// A deterministic xorshift64 sequence from `seed` (kill storms pick their victims and
/// moments with it, the same every run).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// A count a longer run sets in `var` (e.g. a kill storm's kills), else `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Makes a FIFO at `p` (a test's rendezvous with a process in a container).
pub fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        // SAFETY: mkfifo on a NUL-terminated path (`c` outlives the call).
        unsafe { libc::mkfifo(c.as_ptr(), 0o666) },
        0,
        "mkfifo {p:?}"
    );
}
pub const GIB: u64 = 1 << 30;

/// The library under test: the plain build, or `VGPU_TEST_LIBVGPU` (e.g. the shipped
/// `target/release-glibc2.17/libvgpu.so`, to run the whole suite through the loader).
pub fn libvgpu() -> PathBuf {
    let p = std::env::var_os("VGPU_TEST_LIBVGPU")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_profile_dir().join("libvgpu.so"));
    assert!(
        p.exists(),
        "{} missing: build the workspace first",
        p.display()
    );
    p
}

#[derive(Clone, Copy, Debug)]
pub enum Style {
    Linked,
    Dlopen,
    ProcAddr(u64),
}

pub fn client(style: Style) -> PathBuf {
    require_sim();
    match style {
        Style::Linked => build_c_client("cap_linked", &link_libcuda()),
        Style::Dlopen => build_c_client("cap_dlopen", &[]),
        Style::ProcAddr(_) => build_c_client("cap_procaddr", &[]),
    }
}

/// A simulated machine with small, known context and module costs, zero-cost kernels, and
/// its own shared-region file (so tests never share a container by accident).
pub fn machine() -> SimEnv {
    let sim = SimEnv::new()
        .var("VGPU_SIM_CONTEXT_BYTES", "64m")
        .var("VGPU_SIM_MODULE_BYTES", "2m")
        .var("VGPU_SIM_KERNEL_NS", "0");
    let region = sim.dir().join("cudevshr.cache");
    sim.var("CUDA_DEVICE_MEMORY_SHARED_CACHE", region)
}

/// `vgpuctl` as the launcher tests run it: it finds the simulator next to itself (no
/// inherited `LD_LIBRARY_PATH` or region), and its private files go to the test's directory.
pub fn vgpuctl_cmd(sim: &SimEnv) -> Command {
    let mut c = sim.command(target_profile_dir().join("vgpuctl"));
    c.env_remove("LD_LIBRARY_PATH")
        .env_remove("CUDA_DEVICE_MEMORY_SHARED_CACHE")
        .env("TMPDIR", sim.dir());
    c
}

/// What `vgpuctl run` left in `dir` (its `$TMPDIR`): private regions and container directories.
pub fn run_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vgpuctl-run-"))
        .collect()
}

/// The machine's shared-region path.
pub fn region_path(sim: &SimEnv) -> PathBuf {
    sim.dir().join("cudevshr.cache")
}

/// Maps the machine's region file and runs `f` on it.
pub fn with_region(sim: &SimEnv, f: impl FnOnce(&shm_layout::Region)) {
    let path = region_path(sim);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("region");
    use std::os::fd::AsRawFd;
    // SAFETY: mapping the whole region file shared; unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            shm_layout::REGION_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let region =
            shm_layout::Region::from_ptr(p.cast(), shm_layout::REGION_SIZE).expect("valid region");
        f(region);
        libc::munmap(p, shm_layout::REGION_SIZE);
    }
}

/// How a client gets libvgpu: `LD_PRELOAD`, or `LD_AUDIT` the way HAMi's AMD device plugin
/// injects its library (`LD_AUDIT=/usr/local/vgpu/libamvgpu.so`: the file under another
/// name, so nothing may key on ours). The same tests run under both (`BOTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    Preload,
    Audit,
}

impl Injection {
    pub const BOTH: [Injection; 2] = [Injection::Preload, Injection::Audit];

    /// Injects `lib` into `c`. `Audit` copies it into `dir` as `libamvgpu.so` first: under
    /// a temporary name, renamed into place, so a process of the same test that already
    /// maps the file keeps its copy intact (rewriting a mapped library in place can kill it).
    pub fn apply<'c>(self, c: &'c mut Command, lib: &Path, dir: &Path) -> &'c mut Command {
        match self {
            Injection::Preload => c.env("LD_PRELOAD", lib),
            Injection::Audit => {
                let mounted = dir.join("libamvgpu.so");
                let tmp = dir.join(format!("libamvgpu.so.tmp.{}", std::process::id()));
                std::fs::copy(lib, &tmp)
                    .and_then(|_| std::fs::rename(&tmp, &mounted))
                    .unwrap_or_else(|e| {
                        panic!("copy {} to {}: {e}", lib.display(), mounted.display())
                    });
                c.env("LD_AUDIT", mounted)
            }
        }
    }
}

pub fn command(sim: &SimEnv, style: Style, preload: bool) -> Command {
    command_via(sim, style, preload.then_some(Injection::Preload))
}

/// `command`, libvgpu injected by `how` (none: the bare client).
pub fn command_via(sim: &SimEnv, style: Style, how: Option<Injection>) -> Command {
    let mut c = sim.command(client(style));
    if let Some(how) = how {
        how.apply(&mut c, &libvgpu(), sim.dir());
    }
    if let Style::ProcAddr(flags) = style {
        c.env("VGPU_TEST_PROCADDR_FLAGS", flags.to_string());
    }
    c
}

pub fn run_scenario(sim: &SimEnv, style: Style, args: &[&str]) -> (Output, Kv) {
    run_scenario_via(sim, Injection::Preload, style, args)
}

pub fn run_scenario_via(sim: &SimEnv, how: Injection, style: Style, args: &[&str]) -> (Output, Kv) {
    let out = run_default(command_via(sim, style, Some(how)).args(args));
    out.assert_success(&format!("{how:?} {style:?} {args:?}"));
    let kv = out.kv();
    (out, kv)
}

/// `vgpuctl inspect --json` of the machine's region, parsed.
pub fn inspect(sim: &SimEnv) -> testkit::Json {
    let mut c = Command::new(target_profile_dir().join("vgpuctl"));
    c.arg("inspect").arg(region_path(sim)).arg("--json");
    let out = run_default(&mut c);
    out.assert_success("vgpuctl inspect");
    testkit::Json::parse(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", out.stdout))
}

/// Busy ns of `pid` on device 0 per the simulator's ground truth.
pub fn busy_of(sim: &SimEnv, pid: u32) -> u64 {
    let status = sim.status_json();
    status
        .get("processes")
        .map(|p| p.items().to_vec())
        .unwrap_or_default()
        .iter()
        .find(|p| p.get("pid").and_then(|x| x.as_u64()) == Some(u64::from(pid)))
        .and_then(|p| p.get("devices")?.items().first()?.get("busy_ns")?.as_u64())
        .unwrap_or(0)
}

/// Releases a ready loop and measures its busy share over `seconds` (after `warmup`).
pub fn share_over(sim: &SimEnv, child: &mut Child, warmup: f64, seconds: f64) -> f64 {
    let pid = child.pid();
    child.send_line("go");
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (b0, t0) = (busy_of(sim, pid), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (b1, t1) = (busy_of(sim, pid), Instant::now());
    (b1 - b0) as f64 / (t1 - t0).as_nanos() as f64
}
