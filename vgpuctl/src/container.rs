//! `vgpuctl run --container`: CMD in new pid and mount namespaces, laid out as HAMi's device
//! plugin lays out a container (its `Allocate` response; docs/CONTAINERS.md):
//!
//! | container path | host side | mode |
//! |---|---|---|
//! | `/usr/local/vgpu` | `<run dir>/container` (the per-container directory, holds the region) | rw |
//! | `/usr/local/vgpu/libvgpu.so` | the library | ro |
//! | `/etc/ld.so.preload` | `<run dir>/ld.so.preload`, naming the library | ro |
//! | `/tmp/vgpulock` | `/tmp/vgpulock` (no mount: the container keeps the machine's `/tmp`) | rw |
//!
//! plus the plugin's environment (`NVIDIA_VISIBLE_DEVICES` with UUIDs,
//! `CUDA_DEVICE_MEMORY_LIMIT_<i>`, `CUDA_DEVICE_SM_LIMIT`,
//! `CUDA_DEVICE_MEMORY_SHARED_CACHE=/usr/local/vgpu/<uuid>.cache`) and no `LD_PRELOAD`.
//! For AMD (`--vendor amd`) the amd-device-plugin's instead: `ROCR_VISIBLE_DEVICES` with
//! ROCr UUIDs, `HIP_DEVICE_MEMORY_LIMIT="<MiB>m"`, `HIP_DEVICE_SM_LIMIT`, the same region,
//! and the library also at `/usr/local/vgpu/libamvgpu.so` (the name that plugin mounts);
//! over the simulated AMD GPU, `/sys/module/amdgpu/initstate` reading `live` (a tmpfs on
//! `/sys/module` of the container's mount namespace), which ROCm SMI and AMD SMI need.
//! Over the simulated GPU, the stand-ins for what the NVIDIA container runtime does: the
//! simulated driver's directory in `LD_LIBRARY_PATH`, `CUDA_VISIBLE_DEVICES` for `--device`,
//! and the machine's `/proc` at `/usr/local/vgpu/host-proc` so the simulator learns host
//! pids as the kernel driver does (sim/README.md).
//!
//! Process tree: vgpuctl (machine namespaces; forwards signals, removes the run directory)
//! -> init, pid 1 of the new pid namespace (makes the mount namespace, forwards signals,
//! reaps orphans) -> CMD, pid 2. As root only pid and mount namespaces are new; otherwise a
//! user namespace (the caller's uid and gid mapped to themselves) comes first, where the
//! kernel allows it.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{install_forwarding, reset_signals, set_child, wait_for, Vendor};

/// Where HAMi's device plugin puts the library and the per-container directory.
pub const VGPU_DIR: &str = "/usr/local/vgpu";
/// The name HAMi's amd-device-plugin mounts its library under (`LD_AUDIT` names it there).
pub const AMD_LIBRARY_NAME: &str = "libamvgpu.so";
/// What ROCm SMI and AMD SMI read to know the amdgpu kernel driver is loaded.
pub const AMDGPU_INITSTATE: &str = "/sys/module/amdgpu/initstate";
/// Where the machine's procfs is visible inside (the simulator's host-pid source).
pub const HOST_PROC: &str = "/usr/local/vgpu/host-proc";
/// Exit code when the container cannot be set up (as `docker run`).
const SETUP_FAILED: i32 = 125;

/// What the container gets.
pub struct Spec {
    pub lib: PathBuf,
    /// Whose device plugin's contract the container gets.
    pub vendor: Vendor,
    /// The simulated driver's directory, when running over it.
    pub sim_dir: Option<PathBuf>,
    pub gpumem: Option<String>,
    pub gpucores: Option<u32>,
    /// The container's devices, in container order.
    pub uuids: Vec<String>,
    /// Whether `--device` chose them (then `CUDA_VISIBLE_DEVICES` says so too).
    pub restrict_devices: bool,
    /// How the library is injected into the container's processes.
    pub inject: Inject,
    pub command: Vec<OsString>,
}

/// How a container's processes get the library.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// `/etc/ld.so.preload` names it (HAMi's device plugin's layout).
    #[default]
    Preload,
    /// `LD_AUDIT` names it (HAMi's amd-device-plugin: `/usr/local/vgpu/libamvgpu.so`), and
    /// `/etc/ld.so.preload` is empty.
    Audit,
}

/// A random (version 4) UUID, as HAMi names a container's region.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom into a buffer of the given length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = vgpu_sim_core::clock::real_ns() ^ u64::from(std::process::id()) << 32;
        b[..8].copy_from_slice(&t.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `--gpumem` as HAMi's amd-device-plugin writes `HIP_DEVICE_MEMORY_LIMIT`: `<MiB>m`
/// (the value as given when it is not a whole number of MiB, or not a size at all).
pub fn plugin_mib(gpumem: &str) -> String {
    match crate::config::parse_size(gpumem) {
        Some(b) if b % (1 << 20) == 0 => format!("{}m", b >> 20),
        _ => gpumem.to_string(),
    }
}

/// The container's environment: vgpuctl's, without the library contract of the host (a
/// container gets the plugin's, either vendor's), plus the plugin's.
pub fn environment(spec: &Spec, region: &str) -> Vec<(OsString, OsString)> {
    let ours = |k: &OsStr| {
        let k = k.to_string_lossy();
        k == "LD_PRELOAD"
            || k == "LD_AUDIT"
            || k == "NVIDIA_VISIBLE_DEVICES"
            || k == "CUDA_VISIBLE_DEVICES"
            || k == "ROCR_VISIBLE_DEVICES"
            || k == "HIP_VISIBLE_DEVICES"
            || k == "CUDA_DEVICE_MEMORY_SHARED_CACHE"
            || k.starts_with("CUDA_DEVICE_MEMORY_LIMIT")
            || k.starts_with("CUDA_DEVICE_SM_LIMIT")
            || k.starts_with("HIP_DEVICE_MEMORY_LIMIT")
            || k.starts_with("HIP_DEVICE_SM_LIMIT")
    };
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !ours(k)).collect();
    let mut set = |k: &str, v: OsString| {
        env.retain(|(e, _)| e != k);
        env.push((k.into(), v));
    };
    match spec.vendor {
        Vendor::Nvidia => {
            set("NVIDIA_VISIBLE_DEVICES", spec.uuids.join(",").into());
            if spec.restrict_devices {
                set("CUDA_VISIBLE_DEVICES", spec.uuids.join(",").into());
            }
            if let Some(m) = &spec.gpumem {
                for i in 0..spec.uuids.len() {
                    set(&format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"), m.into());
                }
            }
            if let Some(c) = spec.gpucores {
                set("CUDA_DEVICE_SM_LIMIT", c.to_string().into());
            }
        }
        Vendor::Amd => {
            // internal/pkg/plugin/plugin.go of Project-HAMi/amd-device-plugin: the
            // allocated GPUs' UUIDs in container order (ROCr hides the others, real or
            // simulated), one memory value; the time-based core limit is ours.
            set("ROCR_VISIBLE_DEVICES", spec.uuids.join(",").into());
            if let Some(m) = &spec.gpumem {
                set("HIP_DEVICE_MEMORY_LIMIT", plugin_mib(m).into());
            }
            if let Some(c) = spec.gpucores {
                set("HIP_DEVICE_SM_LIMIT", c.to_string().into());
            }
        }
    }
    if spec.inject == Inject::Audit {
        let name = match spec.vendor {
            Vendor::Nvidia => "libvgpu.so",
            Vendor::Amd => AMD_LIBRARY_NAME,
        };
        set("LD_AUDIT", format!("{VGPU_DIR}/{name}").into());
    }
    set("CUDA_DEVICE_MEMORY_SHARED_CACHE", region.into());
    if let Some(sim) = &spec.sim_dir {
        let mut p = OsString::from(sim.as_os_str());
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
            p.push(":");
            p.push(old);
        }
        set("LD_LIBRARY_PATH", p);
        set("VGPU_SIM_HOST_PROC", HOST_PROC.into());
    }
    env
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL in path", p.display()))
}

fn write_file(path: &str, data: &str) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("write {path}: {e}"))
}

/// Enters a new user namespace (as the caller's own uid and gid) and a pid namespace whose
/// first process will be our next child. As root only the pid namespace.
fn enter_namespaces() -> Result<(), String> {
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        // SAFETY: unshare with constant flags.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(os_err("cannot create a pid namespace (unshare)"));
        }
        return Ok(());
    }
    // SAFETY: unshare with constant flags (we are single-threaded).
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) } != 0 {
        return Err(format!(
            "{}: --container needs root, or unprivileged user namespaces, which this kernel \
             refuses to uid {uid} (see /proc/sys/user/max_user_namespaces, \
             kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns); \
             run it as root",
            os_err("cannot create a user namespace")
        ));
    }
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    Ok(())
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let src_c = src.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fs_c = fstype.map(|f| CString::new(f).unwrap_or_default());
    let data_c = data.map(|d| CString::new(d).unwrap_or_default());
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: NUL-terminated strings or NULL, as mount(2) takes them.
    let rc = unsafe {
        libc::mount(
            ptr(&src_c),
            target_c.as_ptr(),
            ptr(&fs_c),
            flags,
            ptr(&data_c).cast(),
        )
    };
    if rc != 0 {
        return Err(os_err(&format!(
            "mount {} on {} ({})",
            src.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("bind")
        )));
    }
    Ok(())
}

/// Bind-mounts `src` on `target` read-only. The remount keeps the flags the kernel locks on
/// mounts seen from a user namespace (nosuid, nodev, noexec, atime).
fn bind_ro(src: &Path, target: &Path) -> Result<(), String> {
    mount(Some(src), target, None, libc::MS_BIND, None)?;
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
    let t = cstr(target)?;
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statvfs(t.as_ptr(), &mut sv) } != 0 {
        return Err(os_err(&format!("statvfs {}", target.display())));
    }
    let mut keep = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if sv.f_flag & st != 0 {
            keep |= ms;
        }
    }
    mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
}

/// Makes sure `path` exists to be mounted on. A missing one is created in an overlay of its
/// parent (upper layer on a tmpfs of this mount namespace), so the machine's filesystem is
/// never written.
fn ensure_mountpoint(path: &Path, dir: bool, staging: &Path, n: &mut u32) -> Result<(), String> {
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    let parent = path
        .parent()
        .ok_or_else(|| format!("{}: no parent", path.display()))?;
    ensure_mountpoint(parent, true, staging, n)?;
    if *n == 0 {
        mount(
            Some(Path::new("tmpfs")),
            staging,
            Some("tmpfs"),
            0,
            Some("mode=0755"),
        )?;
    }
    *n += 1;
    let upper = staging.join(format!("{n}/upper"));
    let work = staging.join(format!("{n}/work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        parent.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some(Path::new("overlay")),
        parent,
        Some("overlay"),
        0,
        Some(&opts),
    )
    .map_err(|e| format!("{e} (to create {} in the container)", path.display()))?;
    let made = if dir {
        std::fs::create_dir(path)
    } else {
        std::fs::File::create(path).map(drop)
    };
    made.map_err(|e| format!("create {}: {e}", path.display()))
}

/// Nothing mounted in this (new) mount namespace may propagate back to the machine.
pub fn make_mounts_private() -> Result<(), String> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// The mounts of the container (in its new mount namespace, by its init).
fn lay_out(spec: &Spec, run_dir: &Path) -> Result<(), String> {
    // SAFETY: unshare with a constant flag.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(os_err("cannot create a mount namespace (unshare)"));
    }
    make_mounts_private()?;
    let staging = run_dir.join("overlay");
    let mut n = 0;
    let vgpu = Path::new(VGPU_DIR);
    let preload = Path::new("/etc/ld.so.preload");
    ensure_mountpoint(vgpu, true, &staging, &mut n)?;
    ensure_mountpoint(preload, false, &staging, &mut n)?;
    if spec.sim_dir.is_some() {
        // The machine's procfs, while /proc is still the outer one (inside a container
        // already, the machine's is the one that container was given). It goes into the
        // per-container directory, which carries it to /usr/local/vgpu/host-proc.
        let machine_proc = std::env::var_os("VGPU_SIM_HOST_PROC")
            .map(PathBuf::from)
            .filter(|p| p.join("self/status").exists())
            .unwrap_or_else(|| PathBuf::from("/proc"));
        mount(
            Some(&machine_proc),
            &run_dir.join("container/host-proc"),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
    }
    mount(
        Some(&run_dir.join("container")),
        vgpu,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    bind_ro(&spec.lib, &vgpu.join("libvgpu.so"))?;
    if spec.vendor == Vendor::Amd {
        bind_ro(&spec.lib, &vgpu.join(AMD_LIBRARY_NAME))?;
        if spec.sim_dir.is_some() {
            provide_amdgpu_initstate()?;
        }
    }
    bind_ro(&run_dir.join("ld.so.preload"), preload)?;
    mount(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

/// Makes `/sys/module/amdgpu/initstate` read `live` in this mount namespace (which must be
/// a private one), as the amdgpu kernel driver does on a real AMD node: the simulated SMI
/// libraries, like the real ones, refuse to start without it. A tmpfs goes over
/// `/sys/module` (the machine's module entries are not visible below it); nothing is done
/// when the marker is there already.
pub fn provide_amdgpu_initstate() -> Result<(), String> {
    if std::fs::read_to_string(AMDGPU_INITSTATE).is_ok_and(|s| s.trim() == "live") {
        return Ok(());
    }
    mount(
        Some(Path::new("vgpu-sysmodule")),
        Path::new("/sys/module"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    std::fs::create_dir_all("/sys/module/amdgpu")
        .map_err(|e| format!("mkdir /sys/module/amdgpu: {e}"))?;
    write_file(AMDGPU_INITSTATE, "live\n")
}

/// Init of the container (pid 1): lays it out, runs CMD as pid 2, forwards signals to it,
/// reaps every orphan, exits with CMD's status. Never returns.
fn init(spec: &Spec, run_dir: &Path, env: &[(OsString, OsString)]) -> ! {
    // SAFETY: prctl with constant arguments: the container dies with vgpuctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Err(e) = lay_out(spec, run_dir) {
        eprintln!("vgpuctl: cannot set up the container: {e}");
        // SAFETY: ending the child without running the parent's atexit handlers.
        unsafe { libc::_exit(SETUP_FAILED) };
    }
    let mut cmd = Command::new(&spec.command[0]);
    cmd.args(&spec.command[1..])
        .env_clear()
        .envs(env.iter().cloned());
    // SAFETY: only signal(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            reset_signals();
            Ok(())
        });
    }
    let code = match cmd.spawn() {
        Ok(child) => {
            set_child(child.id() as libc::pid_t);
            wait_for(child.id() as libc::pid_t, true)
        }
        Err(e) => {
            eprintln!("vgpuctl: cannot run {:?}: {e}", spec.command[0]);
            127
        }
    };
    // SAFETY: as above.
    unsafe { libc::_exit(i32::from(code)) }
}

/// Creates directory `p` with `mode` (not masked by the umask). It must not exist yet: in a
/// world-writable `$TMPDIR` an existing entry at a name we chose may be another user's (a
/// symlink planted to make root chmod or fill a directory of its choosing), never ours.
fn mkdir_new(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// The plugin's lock directory, shared by every container of the node: created mode 0777
/// when missing; an existing one (whoever made it, whatever it is) is left as it is — a
/// chmod through a symlink at that fixed, world-writable name would open any directory of
/// the machine to everyone when run as root.
fn ensure_lock_dir(p: &Path) {
    if p.symlink_metadata().is_err() {
        let _ = mkdir_new(p, 0o777);
    }
}

/// Runs the container; `run_dir` (created here, removed by the caller) holds what it mounts.
pub fn run(spec: &Spec, run_dir: &Path) -> Result<u8, String> {
    let mk = mkdir_new;
    mk(run_dir, 0o755)?;
    let container = run_dir.join("container");
    // Like the plugin's per-container directory: every user of the container writes there.
    mk(&container, 0o777)?;
    mk(&run_dir.join("overlay"), 0o755)?;
    let names: &[&str] = match spec.vendor {
        Vendor::Nvidia => &["libvgpu.so"],
        Vendor::Amd => &["libvgpu.so", AMD_LIBRARY_NAME],
    };
    for name in names {
        std::fs::File::create(container.join(name))
            .map_err(|e| format!("create {}: {e}", container.join(name).display()))?;
    }
    if spec.sim_dir.is_some() {
        mk(&container.join("host-proc"), 0o555)?;
    }
    let preloaded = match spec.inject {
        Inject::Preload => format!("{VGPU_DIR}/libvgpu.so\n"),
        Inject::Audit => String::new(),
    };
    std::fs::write(run_dir.join("ld.so.preload"), preloaded)
        .map_err(|e| format!("write {}: {e}", run_dir.join("ld.so.preload").display()))?;
    ensure_lock_dir(Path::new("/tmp/vgpulock"));
    let uuid = random_uuid();
    let region = format!("{VGPU_DIR}/{uuid}.cache");
    eprintln!(
        "vgpuctl: container region {} ({region} inside)",
        container.join(format!("{uuid}.cache")).display()
    );
    let env = environment(spec, &region);

    install_forwarding();
    enter_namespaces()?;
    // SAFETY: fork of a single-threaded process; the child only runs `init`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("fork"));
    }
    if pid == 0 {
        init(spec, run_dir, &env);
    }
    set_child(pid);
    Ok(wait_for(pid, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_are_never_reached_through_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("vgpuctl-mkdir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let victim = base.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
        let planted = base.join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();

        // The lock directory: a symlink there is left alone, its target not chmodded.
        ensure_lock_dir(&planted);
        assert_eq!(mode(&victim), 0o700);
        // A run directory at a planted name is refused, the target untouched.
        let e = mkdir_new(&planted, 0o755).unwrap_err();
        assert!(e.contains("planted"), "{e}");
        assert_eq!(mode(&victim), 0o700);
        assert!(std::fs::read_dir(&victim).unwrap().next().is_none());

        // Missing ones are made with the asked mode, whatever the umask.
        let lock = base.join("lock");
        ensure_lock_dir(&lock);
        assert_eq!(mode(&lock), 0o777);
        let run = base.join("run");
        mkdir_new(&run, 0o755).unwrap();
        assert_eq!(mode(&run), 0o755);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
    }

    /// A `vgpuctl run --container` of `sh` with these options, injected by preload.
    fn plugin_spec(
        vendor: Vendor,
        gpumem: &str,
        gpucores: u32,
        uuids: &[&str],
        restrict_devices: bool,
    ) -> Spec {
        Spec {
            lib: "/x/libvgpu.so".into(),
            vendor,
            sim_dir: None,
            gpumem: Some(gpumem.into()),
            gpucores: Some(gpucores),
            uuids: uuids.iter().map(|u| u.to_string()).collect(),
            restrict_devices,
            inject: Inject::Preload,
            command: vec!["sh".into()],
        }
    }

    /// The environment `spec`'s container gets (region at `/usr/local/vgpu/u.cache`), as a
    /// lookup by variable name.
    fn env_of(spec: &Spec) -> impl Fn(&str) -> Option<String> {
        let env = environment(spec, "/usr/local/vgpu/u.cache");
        move |k: &str| {
            env.iter()
                .find(|(e, _)| e == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        }
    }

    #[test]
    fn environment_is_the_plugins() {
        let get = env_of(&plugin_spec(
            Vendor::Nvidia,
            "2000m",
            30,
            &["GPU-a", "GPU-b"],
            false,
        ));
        assert_eq!(
            get("NVIDIA_VISIBLE_DEVICES").as_deref(),
            Some("GPU-a,GPU-b")
        );
        assert_eq!(get("CUDA_DEVICE_MEMORY_LIMIT_0").as_deref(), Some("2000m"));
        assert_eq!(get("CUDA_DEVICE_MEMORY_LIMIT_1").as_deref(), Some("2000m"));
        assert_eq!(get("CUDA_DEVICE_MEMORY_LIMIT"), None);
        assert_eq!(get("CUDA_DEVICE_SM_LIMIT").as_deref(), Some("30"));
        assert_eq!(
            get("CUDA_DEVICE_MEMORY_SHARED_CACHE").as_deref(),
            Some("/usr/local/vgpu/u.cache")
        );
        assert_eq!(get("LD_PRELOAD"), None);
        assert_eq!(get("CUDA_VISIBLE_DEVICES"), None);
        assert_eq!(get("ROCR_VISIBLE_DEVICES"), None);
        assert_eq!(get("HIP_DEVICE_MEMORY_LIMIT"), None);

        // What libvgpu reads from it, through the same parser (the policy crate's): each
        // listed device, keyed by its UUID, capped at 2000 MiB and 30 %, nothing reported.
        let cfg = crate::config::Config::from_lookup(get);
        assert!(cfg.issues.is_empty(), "{:?}", cfg.issues);
        assert_eq!(
            cfg.limit_uuids,
            Some(vec!["GPU-a".to_string(), "GPU-b".to_string()])
        );
        for uuid in ["GPU-a", "GPU-b"] {
            let i =
                crate::config::limit_index_of(cfg.limit_uuids.as_deref().unwrap(), uuid).unwrap();
            assert_eq!(cfg.memory_limit_of(i), Some(2000 << 20), "{uuid}");
            assert_eq!(cfg.sm_limit_of(i), Some(30), "{uuid}");
        }
        assert_eq!(cfg.shared_cache, "/usr/local/vgpu/u.cache");
    }

    #[test]
    fn amd_environment_is_the_amd_device_plugins() {
        let spec = plugin_spec(Vendor::Amd, "2g", 40, &["GPU-aaaa", "GPU-bbbb"], true);
        let get = env_of(&spec);
        assert_eq!(
            get("ROCR_VISIBLE_DEVICES").as_deref(),
            Some("GPU-aaaa,GPU-bbbb")
        );
        assert_eq!(get("HIP_DEVICE_MEMORY_LIMIT").as_deref(), Some("2048m"));
        assert_eq!(get("HIP_DEVICE_SM_LIMIT").as_deref(), Some("40"));
        assert_eq!(
            get("CUDA_DEVICE_MEMORY_SHARED_CACHE").as_deref(),
            Some("/usr/local/vgpu/u.cache")
        );
        for k in [
            "NVIDIA_VISIBLE_DEVICES",
            "CUDA_VISIBLE_DEVICES",
            "CUDA_DEVICE_MEMORY_LIMIT_0",
            "CUDA_DEVICE_SM_LIMIT",
            "LD_PRELOAD",
            "LD_AUDIT",
        ] {
            assert_eq!(get(k), None, "{k}");
        }
        // HAMi's amd-device-plugin's own injection: LD_AUDIT naming the library it mounts.
        let audited = env_of(&Spec {
            inject: Inject::Audit,
            ..spec
        });
        assert_eq!(
            audited("LD_AUDIT").as_deref(),
            Some("/usr/local/vgpu/libamvgpu.so")
        );
        assert_eq!(audited("LD_PRELOAD"), None);
        assert_eq!(plugin_mib("3000m"), "3000m");
        assert_eq!(plugin_mib("1073741824"), "1024m");
        assert_eq!(plugin_mib("1000"), "1000");
    }
}
