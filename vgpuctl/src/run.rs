//! `vgpuctl run`: run a command under a GPU slice, as one container.
//!
//! Without `--container` the command gets the environment contract HAMi's device plugin sets
//! (DESIGN §2) and libvgpu in `LD_PRELOAD`. With `--container` it runs in new pid and mount
//! namespaces laid out as HAMi's device plugin lays out a container (see `container.rs` and
//! docs/CONTAINERS.md). Either way vgpuctl behaves as a launcher: it forwards SIGINT,
//! SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the command (those sent with kill(2);
//! the terminal's own, which the command receives as well, are not doubled), passes its exit status
//! back, binds the command's life to its own (the command is killed if vgpuctl is), and
//! removes the private region (or container directory) it made on every exit path; one left
//! behind by a vgpuctl that was killed is removed by the next `vgpuctl run`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::config;

pub const RUN_USAGE: &str = "\
usage: vgpuctl run [--container] [--gpumem SIZE] [--gpucores PCT] [--device LIST]
                   [--vendor nvidia|amd] [--inject preload|audit] [--shared-cache PATH]
                   [--sim | --no-sim] [--] CMD [ARGS...]

Run CMD with libvgpu enforcing a GPU slice. CMD and its children are one container: they
share the slice through a region of their own (removed at the end).

  --container       run CMD in new pid and mount namespaces laid out as HAMi's device plugin
                    lays out a container: the library at /usr/local/vgpu/libvgpu.so, injected
                    by a read-only /etc/ld.so.preload (no LD_PRELOAD), the region in
                    /usr/local/vgpu. As root, or unprivileged where user namespaces are allowed.
  --gpumem SIZE     memory per device: 3000m, 8g, 1073741824 (bytes; k/m/g/t = x1024^n)
  --gpucores PCT    share of the device's time, 1-100
  --device LIST     the devices: indices or GPU- UUIDs, comma-separated (0 or 0,1)
  --shared-cache P  use region file P instead of a private one (kept at the end; not with
                    --container)
  --vendor V        nvidia (CUDA: HAMi's device plugin's contract) or amd (HIP: HAMi's
                    amd-device-plugin's, HIP_DEVICE_MEMORY_LIMIT and ROCR_VISIBLE_DEVICES
                    with UUIDs, the library also at /usr/local/vgpu/libamvgpu.so; over the
                    simulated AMD GPU --container also provides the amdgpu driver's
                    /sys/module/amdgpu/initstate, which ROCm SMI needs). Default: nvidia,
                    or amd on a machine with an AMD driver and no NVIDIA one
  --inject HOW      preload (default: LD_PRELOAD; with --container /etc/ld.so.preload) or
                    audit (LD_AUDIT, as HAMi's amd-device-plugin injects its library: with
                    --container LD_AUDIT=/usr/local/vgpu/libamvgpu.so for amd, .../libvgpu.so
                    for nvidia, and an empty /etc/ld.so.preload)
  --sim / --no-sim  force / forbid the simulated GPU (default: simulated when the vendor's
                    driver is not installed)
  -h, --help        this text

Signals (INT, TERM, HUP, QUIT, USR1, USR2) are forwarded to CMD; vgpuctl exits with CMD's
status (128+N when CMD was killed by signal N; 125 when the container cannot be set up,
127 when CMD cannot be run).";

/// Whose GPUs (and whose device plugin's environment contract) a run is for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// CUDA: HAMi's device plugin (`NVIDIA_VISIBLE_DEVICES`, `CUDA_DEVICE_*`).
    #[default]
    Nvidia,
    /// HIP: HAMi's amd-device-plugin (`ROCR_VISIBLE_DEVICES`, `HIP_DEVICE_*`).
    Amd,
}

impl Vendor {
    /// The driver library whose presence in the simulator's directory says it is built.
    fn sim_library(self) -> &'static str {
        match self {
            Vendor::Nvidia => "libcuda.so.1",
            Vendor::Amd => "libamdhip64.so",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "NVIDIA",
            Vendor::Amd => "AMD",
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct RunOptions {
    pub gpumem: Option<String>,
    pub gpucores: Option<u32>,
    pub device: Option<String>,
    pub shared_cache: Option<String>,
    pub sim: Option<bool>,
    pub vendor: Option<Vendor>,
    pub container: bool,
    /// `--inject audit`: `LD_AUDIT` instead of `LD_PRELOAD` / `/etc/ld.so.preload`.
    pub inject: crate::container::Inject,
    pub help: bool,
    pub command: Vec<OsString>,
}

pub fn parse_run(args: &[OsString]) -> Result<RunOptions, String> {
    let mut o = RunOptions::default();
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .and_then(|v| v.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{name} needs a value"))
    };
    while i < args.len() {
        let a = args[i].to_str().unwrap_or("");
        match a {
            "--" => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            "-h" | "--help" => {
                o.help = true;
                return Ok(o);
            }
            "--gpumem" => {
                let v = value(&mut i, a)?;
                if config::parse_size(&v).is_none() {
                    return Err(format!(
                        "--gpumem {v:?}: expected a size like 3000m, 8g or 1073741824"
                    ));
                }
                o.gpumem = Some(v);
            }
            "--gpucores" => {
                let v = value(&mut i, a)?;
                match config::parse_percent(&v) {
                    Some(p) if p > 0 => o.gpucores = Some(p),
                    _ => return Err(format!("--gpucores {v:?}: expected 1-100")),
                }
            }
            "--device" => o.device = Some(value(&mut i, a)?),
            "--shared-cache" => o.shared_cache = Some(value(&mut i, a)?),
            "--vendor" => {
                let v = value(&mut i, a)?;
                o.vendor = Some(match v.to_ascii_lowercase().as_str() {
                    "nvidia" | "cuda" => Vendor::Nvidia,
                    "amd" | "hip" | "rocm" => Vendor::Amd,
                    _ => return Err(format!("--vendor {v:?}: expected nvidia or amd")),
                });
            }
            "--sim" => o.sim = Some(true),
            "--no-sim" => o.sim = Some(false),
            "--container" => o.container = true,
            "--inject" => {
                let v = value(&mut i, a)?;
                o.inject = match v.as_str() {
                    "preload" => crate::container::Inject::Preload,
                    "audit" => crate::container::Inject::Audit,
                    _ => return Err(format!("--inject {v:?}: expected preload or audit")),
                };
            }
            other if !other.starts_with('-') => {
                o.command = args[i..].to_vec();
                break;
            }
            other => return Err(format!("unknown option {other:?} (see vgpuctl run --help)")),
        }
        i += 1;
    }
    if o.command.is_empty() {
        return Err("no command given (see vgpuctl run --help)".into());
    }
    if o.container && o.shared_cache.is_some() {
        return Err(
            "--shared-cache and --container: a container's region is in its /usr/local/vgpu".into(),
        );
    }
    Ok(o)
}

/// The directory holding this executable (where cargo also puts libvgpu.so and sim/).
fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VGPU_LIBRARY") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        exe_dir().join("libvgpu.so"),
        PathBuf::from("/usr/local/vgpu/libvgpu.so"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            format!(
                "libvgpu.so not found next to vgpuctl or in /usr/local/vgpu (set VGPU_LIBRARY); looked at {candidates:?}"
            )
        })
}

/// Whether `vendor`'s real driver is on this machine (our simulator does not count).
fn real_driver_present(vendor: Vendor) -> bool {
    match vendor {
        Vendor::Nvidia => real_nvidia_driver_present(),
        Vendor::Amd => real_amd_driver_present(),
    }
}

/// The amdgpu kernel driver is loaded and the KFD (what ROCr opens) is there.
fn real_amd_driver_present() -> bool {
    Path::new("/dev/kfd").exists()
        && std::fs::read_to_string("/sys/module/amdgpu/initstate").is_ok_and(|s| s.trim() == "live")
}

/// The vendor when `--vendor` is not given: AMD on a machine with an AMD driver and no
/// NVIDIA one, else NVIDIA.
fn default_vendor() -> Vendor {
    if !real_nvidia_driver_present() && real_amd_driver_present() {
        Vendor::Amd
    } else {
        Vendor::Nvidia
    }
}

/// Whether a real NVIDIA driver can be loaded (our simulator does not count).
fn real_nvidia_driver_present() -> bool {
    // SAFETY: dlopen/dlsym/dlclose with valid strings; the handle is closed again.
    unsafe {
        let h = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if h.is_null() {
            return false;
        }
        let is_sim = !libc::dlsym(h, c"vgpu_sim_marker".as_ptr()).is_null();
        libc::dlclose(h);
        !is_sim
    }
}

fn prepend_path(var: &str, dir: &Path) -> OsString {
    let mut v = OsString::from(dir.as_os_str());
    if let Some(old) = std::env::var_os(var).filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

/// The machine's GPUs by UUID: the simulated GPU's (its state is created here, from the
/// machine's pid namespace, if no process has used it yet) or the real driver's (NVML; ROCm
/// SMI for AMD). AMD devices are named by ROCr's UUID (`GPU-<16 hex digits>`, what
/// `ROCR_VISIBLE_DEVICES` takes and the region keys them by).
fn machine_devices(use_sim: bool, vendor: Vendor) -> Result<Vec<String>, String> {
    if use_sim {
        let path = vgpu_sim_core::default_state_path();
        let (cfg, warnings) = match vendor {
            Vendor::Nvidia => vgpu_sim_core::config::SimConfig::from_env(),
            Vendor::Amd => vgpu_sim_core::amd::sim_config_from_env(),
        };
        if !path.exists() {
            for w in warnings {
                eprintln!("vgpu-sim: {w}");
            }
        }
        let st = vgpu_sim_core::SimState::open_or_create(&path, &cfg).map_err(|e| match e {
            vgpu_sim_core::state::OpenError::Mismatch(m)
            | vgpu_sim_core::state::OpenError::Io(m) => m,
            vgpu_sim_core::state::OpenError::Missing => format!("{}: missing", path.display()),
        })?;
        let devices = st.devices();
        let amd = devices
            .iter()
            .any(|d| vgpu_sim_core::amd::amd_spec(&d.model_key).is_some());
        if amd != (vendor == Vendor::Amd) {
            return Err(format!(
                "the simulated machine at {} has {} GPUs ({}), not {} ones: use --vendor {}, \
                 or another machine (VGPU_SIM_STATE)",
                path.display(),
                if amd { "AMD" } else { "NVIDIA" },
                devices.first().map_or("", |d| d.name.as_str()),
                vendor.name(),
                if amd { "amd" } else { "nvidia" },
            ));
        }
        return Ok(devices
            .iter()
            .map(|d| match vendor {
                Vendor::Nvidia => d.uuid_str.clone(),
                Vendor::Amd => vgpu_sim_core::amd::rocr_uuid(&d.uuid),
            })
            .collect());
    }
    match vendor {
        Vendor::Nvidia => crate::smi::device_uuids(),
        Vendor::Amd => crate::smi::rocm_device_uuids(),
    }
}

/// Over the simulated AMD GPU without `--container`: the amdgpu driver's marker
/// (`/sys/module/amdgpu/initstate`), which ROCm SMI needs, in a mount namespace of
/// vgpuctl's own that the command inherits. Only as root; otherwise one line says what is
/// missing (libvgpu then cannot measure the HIP runtime's context, and the SMI tools refuse
/// to start).
fn amdgpu_initstate_for_command() {
    if std::fs::read_to_string(crate::container::AMDGPU_INITSTATE).is_ok_and(|s| s.trim() == "live")
    {
        return;
    }
    // SAFETY: plain id query.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "vgpuctl: not root: no {} for the simulated AMD GPU (ROCm SMI refuses to start, \
             the HIP runtime's context is not counted); use --container",
            crate::container::AMDGPU_INITSTATE
        );
        return;
    }
    // SAFETY: unshare with a constant flag; vgpuctl is single-threaded here.
    let r = if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        Err(format!(
            "cannot create a mount namespace: {}",
            std::io::Error::last_os_error()
        ))
    } else {
        crate::container::make_mounts_private()
            .and_then(|()| crate::container::provide_amdgpu_initstate())
    };
    if let Err(e) = r {
        eprintln!(
            "vgpuctl: no {} for the simulated AMD GPU: {e}",
            crate::container::AMDGPU_INITSTATE
        );
    }
}

/// `--device LIST` against the machine's devices: the chosen indices, or why not.
pub fn select_devices(list: Option<&str>, uuids: &[String]) -> Result<Vec<usize>, String> {
    let Some(list) = list else {
        return Ok((0..uuids.len()).collect());
    };
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let chosen = vgpu_sim_core::ids::parse_visible_devices(Some(list), uuids);
    if chosen.len() == entries.len() && !chosen.is_empty() {
        return Ok(chosen);
    }
    let bad = entries.get(chosen.len()).copied().unwrap_or(list);
    let n = uuids.len();
    let have = match n {
        0 => "no GPU".to_string(),
        1 => "1 GPU (index 0)".to_string(),
        n => format!("{n} GPUs (indices 0-{})", n - 1),
    };
    Err(format!(
        "--device {list:?}: {bad:?} is not a device of this machine, which has {have}{}",
        if entries.len() > 1 {
            " (or it repeats an earlier entry)"
        } else {
            ""
        }
    ))
}

/// Where a `vgpuctl run` keeps its private region or container directory:
/// `$TMPDIR/vgpuctl-run-<pid>-<start time>-<pid namespace>[.cache]`, so a dead owner can be
/// told (and a live one in another pid namespace, whose pid means nothing here, is left be).
fn private_name(pid: u32, start_time: u64, pidns: u64) -> String {
    format!("vgpuctl-run-{pid}-{start_time}-{pidns}")
}

/// `(pid, start time, pid namespace)` of a private name
/// (`vgpuctl-run-<pid>[-<start>[-<pidns>]][.cache]`; missing parts are 0).
pub fn parse_private_name(name: &str) -> Option<(u32, u64, u64)> {
    let rest = name.strip_prefix("vgpuctl-run-")?;
    let rest = rest.strip_suffix(".cache").unwrap_or(rest);
    let mut it = rest.splitn(3, '-');
    let pid = it.next()?.parse().ok()?;
    let mut num = || match it.next() {
        Some(s) => s.parse().ok(),
        None => Some(0),
    };
    let start = num()?;
    let ns = num()?;
    Some((pid, start, ns))
}

/// Removes the private regions and container directories of `vgpuctl run`s that are gone.
fn remove_stale(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let own_ns = vgpu_sim_core::procfs::own_pidns();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some((pid, start, ns)) = name.to_str().and_then(parse_private_name) else {
            continue;
        };
        if (ns != 0 && ns != own_ns) || vgpu_sim_core::procfs::is_alive(pid, start) {
            continue;
        }
        let p = e.path();
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if removed.is_ok() {
            eprintln!(
                "vgpuctl: removed {} left by a vgpuctl run that is gone (pid {pid})",
                p.display()
            );
        }
    }
}

/// What vgpuctl made for this run and removes when it ends.
struct Private(Option<PathBuf>);

impl Drop for Private {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The child signals are forwarded to (0: none yet), and a signal that came before it.
static CHILD: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// `si_code` of a signal the kernel sent itself, e.g. the terminal's SIGINT to the whole
/// foreground process group, which the child has received too.
const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL {
        return; // Ctrl-C and friends: the command got it from the terminal already.
    }
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Forward the launcher's signals to whatever [`set_child`] names.
pub fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Names the process signals go to, and hands it one that arrived before it existed.
pub fn set_child(pid: libc::pid_t) {
    CHILD.store(pid, Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Restores default dispositions (in a child about to exec).
pub fn reset_signals() {
    for sig in FORWARDED {
        // SAFETY: plain signal(2) calls.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Waits for `pid`, reaping any other child meanwhile (an init must), and returns the exit
/// code a shell would show: the status, or 128+N for signal N.
pub fn wait_for(pid: libc::pid_t, reap_others: bool) -> u8 {
    loop {
        let mut status = 0;
        let target = if reap_others { -1 } else { pid };
        // SAFETY: waitpid with a valid status pointer.
        let got = unsafe { libc::waitpid(target, &mut status, 0) };
        if got < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return 125;
        }
        if got != pid {
            continue;
        }
        if libc::WIFEXITED(status) {
            return libc::WEXITSTATUS(status) as u8;
        }
        if libc::WIFSIGNALED(status) {
            return (128 + libc::WTERMSIG(status)).clamp(0, 255) as u8;
        }
    }
}

pub fn run(args: &[OsString]) -> Result<ExitCode, String> {
    let o = parse_run(args)?;
    if o.help {
        println!("{RUN_USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let lib = find_library()?;
    let vendor = o.vendor.unwrap_or_else(default_vendor);
    let use_sim = match o.sim {
        Some(s) => s,
        None => !real_driver_present(vendor),
    };
    let sim_dir = exe_dir().join("sim");
    if use_sim && !sim_dir.join(vendor.sim_library()).exists() {
        return Err(format!(
            "no {} driver here and no simulated {} GPU at {} (build it with cargo build --release)",
            vendor.name(),
            vendor.name(),
            sim_dir.display()
        ));
    }
    // The machine's devices, before anything runs: a wrong --device is refused here.
    let uuids = machine_devices(use_sim, vendor)?;
    let chosen = select_devices(o.device.as_deref(), &uuids)?;
    if use_sim {
        eprintln!(
            "vgpuctl: no {} driver in use: running over the simulated {}GPU ({})",
            vendor.name(),
            if vendor == Vendor::Amd { "AMD " } else { "" },
            sim_dir.display()
        );
    }
    let tmp = std::env::temp_dir();
    remove_stale(&tmp);
    let me = vgpu_sim_core::procfs::Caller {
        pid: std::process::id(),
        start_time: vgpu_sim_core::procfs::self_start_time(),
    };
    let private_base = tmp.join(private_name(
        me.pid,
        me.start_time,
        vgpu_sim_core::procfs::own_pidns(),
    ));

    if o.container {
        let spec = crate::container::Spec {
            lib,
            vendor,
            sim_dir: use_sim.then_some(sim_dir),
            gpumem: o.gpumem.clone(),
            gpucores: o.gpucores,
            uuids: chosen.iter().map(|&i| uuids[i].clone()).collect(),
            restrict_devices: o.device.is_some(),
            inject: o.inject,
            command: o.command.clone(),
        };
        let private = Private(Some(private_base.clone()));
        let code = crate::container::run(&spec, &private_base)?;
        drop(private);
        return Ok(ExitCode::from(code));
    }

    let mut cmd = Command::new(&o.command[0]);
    cmd.args(&o.command[1..]);
    if use_sim {
        cmd.env("LD_LIBRARY_PATH", prepend_path("LD_LIBRARY_PATH", &sim_dir));
    }
    let var = match o.inject {
        crate::container::Inject::Preload => "LD_PRELOAD",
        crate::container::Inject::Audit => "LD_AUDIT",
    };
    let mut injected = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os(var).filter(|o| !o.is_empty()) {
        injected.push(":");
        injected.push(old);
    }
    cmd.env(var, injected);
    match vendor {
        Vendor::Nvidia => {
            if let Some(m) = &o.gpumem {
                cmd.env("CUDA_DEVICE_MEMORY_LIMIT", m);
            }
            if let Some(c) = o.gpucores {
                cmd.env("CUDA_DEVICE_SM_LIMIT", c.to_string());
            }
            if let Some(d) = &o.device {
                cmd.env("CUDA_VISIBLE_DEVICES", d);
            }
        }
        Vendor::Amd => {
            // The amd-device-plugin's names; the devices by ROCr UUID (ROCr applies it).
            if let Some(m) = &o.gpumem {
                cmd.env("HIP_DEVICE_MEMORY_LIMIT", crate::container::plugin_mib(m));
            }
            if let Some(c) = o.gpucores {
                cmd.env("HIP_DEVICE_SM_LIMIT", c.to_string());
            }
            if o.device.is_some() {
                let list: Vec<&str> = chosen.iter().map(|&i| uuids[i].as_str()).collect();
                cmd.env("ROCR_VISIBLE_DEVICES", list.join(","));
            }
        }
    }
    if use_sim && vendor == Vendor::Amd {
        amdgpu_initstate_for_command();
    }
    // One `vgpuctl run` is one container: unless a region is named (option or
    // environment), the command tree gets a region of its own, removed when it ends.
    let region = match (
        &o.shared_cache,
        std::env::var_os("CUDA_DEVICE_MEMORY_SHARED_CACHE"),
    ) {
        (Some(s), _) => {
            cmd.env("CUDA_DEVICE_MEMORY_SHARED_CACHE", s);
            None
        }
        (None, Some(_)) => None,
        (None, None) => {
            let p = private_base.with_extension("cache");
            cmd.env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &p);
            Some(p)
        }
    };
    let Some(region) = region else {
        // Nothing to clean up: become the command (signals reach it directly).
        let err = cmd.exec();
        return Err(format!("cannot run {:?}: {err}", o.command[0]));
    };
    let private = Private(Some(region));
    install_forwarding();
    let parent = me.pid as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, signal, _exit).
    unsafe {
        cmd.pre_exec(move || {
            reset_signals();
            // The command dies with vgpuctl: it must not outlive the region removed for it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(125);
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(private);
            eprintln!("vgpuctl: cannot run {:?}: {e}", o.command[0]);
            return Ok(ExitCode::from(127));
        }
    };
    set_child(child.id() as libc::pid_t);
    let code = wait_for(child.id() as libc::pid_t, false);
    drop(private);
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_run_options() {
        let o = parse_run(&os(&[
            "--gpumem",
            "3000m",
            "--gpucores",
            "30",
            "--",
            "python3",
            "-V",
        ]))
        .unwrap();
        assert_eq!(o.gpumem.as_deref(), Some("3000m"));
        assert_eq!(o.gpucores, Some(30));
        assert_eq!(o.command, os(&["python3", "-V"]));
        let o = parse_run(&os(&["--sim", "--container", "app"])).unwrap();
        assert_eq!(o.sim, Some(true));
        assert!(o.container);
        assert_eq!(o.command, os(&["app"]));
        assert!(parse_run(&os(&["--help"])).unwrap().help);
        let o = parse_run(&os(&["--vendor", "amd", "--sim", "app"])).unwrap();
        assert_eq!(o.vendor, Some(Vendor::Amd));
        assert_eq!(o.command, os(&["app"]));
        let o = parse_run(&os(&["--vendor", "NVIDIA", "app"])).unwrap();
        assert_eq!(o.vendor, Some(Vendor::Nvidia));
        assert_eq!(parse_run(&os(&["app"])).unwrap().vendor, None);
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse_run(&os(&["--gpumem", "lots", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpucores", "0", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpucores", "101", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpumem", "1g"])).is_err());
        assert!(parse_run(&os(&["--frobnicate", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--vendor", "intel", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--vendor"])).is_err());
        assert!(parse_run(&os(&["--container", "--shared-cache", "/x", "--", "x"])).is_err());
    }

    #[test]
    fn devices_are_validated_against_the_machine() {
        let uuids: Vec<String> = ["GPU-aaaa-1", "GPU-bbbb-2"].map(String::from).to_vec();
        assert_eq!(select_devices(None, &uuids), Ok(vec![0, 1]));
        assert_eq!(select_devices(Some("1"), &uuids), Ok(vec![1]));
        assert_eq!(select_devices(Some("GPU-bbbb,0"), &uuids), Ok(vec![1, 0]));
        let e = select_devices(Some("5"), &uuids[..1]).unwrap_err();
        assert!(e.contains("\"5\"") && e.contains("1 GPU"), "{e}");
        let e = select_devices(Some("0,7"), &uuids).unwrap_err();
        assert!(e.contains("\"7\"") && e.contains("indices 0-1"), "{e}");
        assert!(select_devices(Some("0,0"), &uuids).is_err());
        assert!(select_devices(Some("GPU-zz"), &uuids).is_err());
        assert!(select_devices(Some(""), &uuids).is_err());
    }

    #[test]
    fn private_names_carry_their_owner() {
        let n = private_name(42, 777, 4026531836);
        assert_eq!(parse_private_name(&n), Some((42, 777, 4026531836)));
        assert_eq!(
            parse_private_name(&format!("{n}.cache")),
            Some((42, 777, 4026531836))
        );
        assert_eq!(parse_private_name("vgpuctl-run-42.cache"), Some((42, 0, 0)));
        assert_eq!(
            parse_private_name("vgpuctl-run-42-9.cache"),
            Some((42, 9, 0))
        );
        assert_eq!(parse_private_name("vgpuctl-run-x.cache"), None);
        assert_eq!(parse_private_name("cudevshr.cache"), None);
    }
}
