//! Process identity and liveness in the machine's pid namespace.
//!
//! The simulated GPU, like the kernel driver, knows processes by their pid in one pid
//! namespace, the machine's (recorded in the state file when it is created). A process in
//! that namespace is `getpid()` and uses `/proc`. A process in a container (its own pid
//! namespace, its own `/proc`) learns its machine pid from a procfs of the machine's
//! namespace made visible to it at `$VGPU_SIM_HOST_PROC` (default [`DEFAULT_HOST_PROC`]; `vgpuctl
//! run --container` bind-mounts the outer `/proc` there before mounting the container's
//! own): `NSpid` of `<host proc>/self/status` starts with the pid in that procfs's
//! namespace. Liveness of every process is then read from that procfs too. A process that
//! is in another namespace and has no such procfs is refused: guessing would merge it with
//! whichever process has the same pid elsewhere.

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatInfo {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub state: u8,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(content: &str) -> Option<StatInfo> {
    let close = content.rfind(')')?;
    let rest = content[close + 1..]
        .split_ascii_whitespace()
        .collect::<Vec<_>>();
    // rest[0] is field 3 (state); field 22 is rest[19].
    let state = *rest.first()?.as_bytes().first()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(StatInfo { state, start_time })
}

/// Reads a procfs text file. Not `read_to_string`: the command name in `stat` and `status`
/// is whatever bytes the program was named with (`prctl(PR_SET_NAME)`, a file name in
/// Latin-1), and such a process must not become unreadable — unidentifiable in a container,
/// and of unknown start time, so a reuse of its pid would pass for it.
fn read_proc(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Whether a parsed stat means the process is gone (zombie or dead).
pub fn is_dead_state(state: u8) -> bool {
    matches!(state, b'Z' | b'X' | b'x')
}

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a container's processes find the machine's procfs unless `VGPU_SIM_HOST_PROC` says.
pub const DEFAULT_HOST_PROC: &str = "/usr/local/vgpu/host-proc";

/// The procfs whose pids are the machine's, once this process is identified (else `/proc`).
static MACHINE_PROC: OnceLock<PathBuf> = OnceLock::new();

fn machine_proc() -> &'static Path {
    MACHINE_PROC
        .get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("/proc"))
}

/// The calling process as the simulated GPU knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Pid in the machine's pid namespace (what NVML reports).
    pub pid: u32,
    /// Start time of the process (field 22 of its stat), to tell a reused pid.
    pub start_time: u64,
}

/// The pid namespace of a `ns/pid` link (its nsfs inode), `None` when unreadable.
pub fn pidns_of(link: &Path) -> Result<u64, std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(link).map(|m| m.ino())
}

/// This process's pid namespace.
pub fn own_pidns() -> u64 {
    pidns_of(Path::new("/proc/self/ns/pid")).unwrap_or(0)
}

/// The `NSpid:` line of a `status` file: the pid in each namespace, outermost (the procfs's
/// own namespace) first.
pub fn parse_nspid(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let v: Option<Vec<u32>> = line["NSpid:".len()..]
        .split_ascii_whitespace()
        .map(|t| t.parse().ok())
        .collect();
    v.filter(|v| !v.is_empty())
}

/// The parent pid (field 4) of a stat line.
pub fn parse_ppid(content: &str) -> Option<u32> {
    let close = content.rfind(')')?;
    content[close + 1..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The configured host procfs of a container.
pub fn host_proc_path() -> PathBuf {
    std::env::var_os("VGPU_SIM_HOST_PROC")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOST_PROC))
}

/// How to make a container's processes known, for refusals.
const HOW: &str = "run it with `vgpuctl run --container`, or bind-mount the machine's /proc \
                   into the container (at $VGPU_SIM_HOST_PROC, default /usr/local/vgpu/host-proc) \
                   before mounting the container's own";

/// The pid namespace a procfs belongs to: that of a process of that namespace seen through
/// it — its pid 1 (the namespace's init), else the nearest ancestor of `first` (our pid in
/// it) whose `NSpid` there has one entry (it lives in that very namespace). Reading a
/// process's `ns/pid` needs ptrace-read rights over it: root may be denied pid 1 (a more
/// privileged init), and an unprivileged caller has them over its own launcher. `None`: not
/// determinable.
fn procfs_pidns(proc: &Path, first: u32) -> Option<u64> {
    if let Ok(ns) = pidns_of(&proc.join("1/ns/pid")) {
        return Some(ns);
    }
    let mut pid = first;
    for _ in 0..64 {
        let stat = read_proc(proc.join(format!("{pid}/stat"))).ok()?;
        pid = parse_ppid(&stat)?;
        if pid <= 1 {
            return None;
        }
        let depth = read_proc(proc.join(format!("{pid}/status")))
            .ok()
            .and_then(|s| parse_nspid(&s))
            .map_or(0, |v| v.len());
        if depth == 1 {
            if let Ok(ns) = pidns_of(&proc.join(format!("{pid}/ns/pid"))) {
                return Some(ns);
            }
        }
    }
    None
}

/// Identifies the calling process in the machine's pid namespace `machine_ns` (0: a state
/// file that records none — the caller's own namespace is taken) and from now on reads
/// liveness through the procfs that gave its pid. `Err`: one line saying why and what to do.
pub fn identify(machine_ns: u64) -> Result<Caller, String> {
    let own = own_pidns();
    if machine_ns == 0 || own == machine_ns || own == 0 {
        return Ok(Caller {
            pid: std::process::id(),
            start_time: self_start_time(),
        });
    }
    let proc = host_proc_path();
    let refuse = |why: String| {
        Err(format!(
            "vgpu-sim: this process is in pid namespace pid:[{own}], not the simulated GPU's \
             machine namespace pid:[{machine_ns}], and {why}: its machine pid cannot be learned, \
             so it is refused (no device) rather than mistaken for another process; {HOW}"
        ))
    };
    let Ok(status) = read_proc(proc.join("self/status")) else {
        return refuse(format!("there is no machine procfs at {}", proc.display()));
    };
    let Some(nspid) = parse_nspid(&status) else {
        return refuse(format!("{}/self/status has no NSpid line", proc.display()));
    };
    if nspid.len() < 2 {
        return refuse(format!(
            "{} is this namespace's own procfs, not the machine's",
            proc.display()
        ));
    }
    let pid = nspid[0];
    if let Some(ns) = procfs_pidns(&proc, pid) {
        if ns != machine_ns {
            return refuse(format!(
                "the procfs at {} belongs to pid namespace pid:[{ns}]",
                proc.display()
            ));
        }
    }
    let start_time = read_proc(proc.join(format!("{pid}/stat")))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map(|s| s.start_time)
        .unwrap_or(0);
    let _ = MACHINE_PROC.set(proc);
    Ok(Caller { pid, start_time })
}

/// The pid namespace a new state file records as the machine's: the creator's own, unless
/// the creator is itself in a container that sees a machine procfs (then that procfs's
/// namespace, when it can be determined).
pub fn machine_pidns_for_new_state() -> Result<u64, String> {
    let own = own_pidns();
    let proc = host_proc_path();
    let nspid = read_proc(proc.join("self/status"))
        .ok()
        .and_then(|s| parse_nspid(&s));
    match nspid {
        Some(v) if v.len() >= 2 => procfs_pidns(&proc, v[0]).ok_or_else(|| {
            "vgpu-sim: cannot tell the machine's pid namespace from inside this container \
             to create the simulated GPU's state; create it from the machine first \
             (`vgpuctl run` does)"
                .to_string()
        }),
        _ => Ok(own),
    }
}

/// Reads the stat of machine pid `pid`. `None` when the process does not exist.
pub fn read_stat(pid: u32) -> Option<StatInfo> {
    let s = read_proc(machine_proc().join(format!("{pid}/stat"))).ok()?;
    parse_stat(&s)
}

/// Whether process `pid` that started at `start_time` is still running. A missing process, a
/// zombie, or a different start time (the pid was reused) all count as dead.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match read_stat(pid) {
        Some(st) => !is_dead_state(st.state) && (start_time == 0 || st.start_time == start_time),
        None if MACHINE_PROC.get().is_some() => {
            // A container process: kill() would address its own namespace's pids.
            machine_proc().join(pid.to_string()).exists()
        }
        None => {
            // Unreadable for another reason than absence (e.g. hidepid, which also hides the
            // directory of another user's process): trust kill(pid, 0), for which EPERM means
            // that the process exists and is not ours to signal.
            // SAFETY: signal 0 only checks for existence.
            let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// This process's start time (field 22 of `/proc/self/stat`), 0 when unreadable.
pub fn self_start_time() -> u64 {
    read_proc("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map(|s| s.start_time)
        .unwrap_or(0)
}

/// This process's command name (`/proc/self/comm`), trimmed.
pub fn self_comm() -> String {
    read_proc("/proc/self/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, b'S');
        assert_eq!(st.start_time, 987654);
        let z = "77 (a b) Z 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55 0 0";
        let st = parse_stat(z).unwrap();
        assert!(is_dead_state(st.state));
        assert_eq!(st.start_time, 55);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_nspid_and_ppid() {
        let st = "Name:\tsh\nTgid:\t7\nNgid:\t0\nPid:\t7\nPPid:\t1\nNSpid:\t4242\t7\n";
        assert_eq!(parse_nspid(st), Some(vec![4242, 7]));
        assert_eq!(parse_nspid("NSpid:\t12\n"), Some(vec![12]));
        assert_eq!(parse_nspid("Pid:\t12\n"), None);
        assert_eq!(parse_nspid("NSpid:\tx\n"), None);
        let s = "1234 (a ) b) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 9 1 1";
        assert_eq!(parse_ppid(s), Some(77));
    }

    #[test]
    fn identified_as_itself_in_the_machine_namespace() {
        let me = identify(own_pidns()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.start_time, self_start_time());
        assert_eq!(machine_pidns_for_new_state(), Ok(own_pidns()));
    }

    #[test]
    fn a_process_with_a_non_utf8_name_is_read() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("vgpu-procfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(std::ffi::OsStr::from_bytes(b"sl\xffep"));
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let pid = child.id();
        // Its comm (in stat and status) is the file name, byte 0xff included.
        let raw = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
        assert!(std::str::from_utf8(&raw).is_err());
        let st = read_stat(pid).expect("stat of a non-UTF-8 name");
        assert!(st.start_time > 0);
        assert!(is_alive(pid, st.start_time));
        // A reused pid (another start time) is told apart.
        assert!(!is_alive(pid, st.start_time + 1));
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_is_alive() {
        let me = std::process::id();
        let st = self_start_time();
        assert!(st > 0);
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
        assert!(!is_alive(0, 0));
        assert!(!is_alive(0x3fff_fff0, 0));
    }
}
