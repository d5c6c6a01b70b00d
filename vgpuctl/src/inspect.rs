//! `vgpuctl inspect PATH [--json]`: what a container's shared region holds — devices,
//! limits, and every process slot with its usage by kind and whether its owner still runs.
//! Reads the file lock-free, as HAMi's monitor does, but into a private copy rather than
//! through a shared mapping: the file belongs to the container, which may truncate it at
//! any moment, and a load from a shared mapping past the file's new end is SIGBUS — a
//! hostile container could kill the node's `top` or exporter.
//!
//! [`read`] is the one region reader of vgpuctl: `top` and `exporter` use it too.
//!
//! `inspect` first reaps ([`reap_gone`]): a process that exited keeps its charges until it
//! is gone (its driver memory may be held until then), and the reaper is what gives them
//! back. When no process of the container is left to reap, `inspect` does it, so it never
//! shows an exited process's usage as the container's. Only slots of vgpuctl's own pid
//! namespace are judged: on the host (`top`, `exporter`, `inspect` of a container's file)
//! nothing is reclaimed and a gone process shows as `stale`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use shm_layout::{
    classify, HeaderView, Region, RegionStatus, EXT_OFFSET, EXT_PROBE_LEN, MAX_DEVICES,
    REGION_SIZE, V1_PROBE_LEN,
};

struct Mapping {
    ptr: *mut libc::c_void,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr, REGION_SIZE) };
    }
}

/// One registered device of a region.
#[derive(Clone, Debug)]
pub struct Device {
    pub index: usize,
    pub uuid: String,
    /// Container memory cap in bytes, 0 = none.
    pub limit: u64,
    /// A process refuses every allocation (malformed limit): a 0-byte cap, not "no cap".
    pub refused: bool,
    /// Compute cap in percent, 0 = none.
    pub sm_limit: u64,
    /// Bytes the container's ledger holds on the device.
    pub used: u64,
    pub peak: u64,
}

/// One process slot (status != 0) of a region.
#[derive(Clone, Debug)]
pub struct Process {
    pub slot: usize,
    pub pid: i32,
    pub hostpid: i32,
    /// Its owner still runs (pid and start time match); a stale slot waits for the reaper.
    pub alive: bool,
    /// Per registered device: (device index, usage, sm_util percent).
    pub usage: Vec<(usize, shm_layout::SlotUsage, u64)>,
}

/// Everything a reader needs from one region, read at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub recent_kernel: i32,
    pub utilization_switch: i32,
    pub priority: i32,
    /// Unix seconds of the container's latest kernel launch, 0 = none yet.
    pub last_kernel_time: u64,
    pub devices: Vec<Device>,
    pub processes: Vec<Process>,
}

fn alive(pid: i32, start_time: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    match stat {
        Some(s) => shm_layout::owner_is_alive(start_time, Some(&s)),
        None => false,
    }
}

impl Mapping {
    /// The region the mapping holds (REGION_SIZE bytes, page-aligned).
    fn region(&self) -> Result<&Region, String> {
        // SAFETY: every Mapping maps REGION_SIZE bytes, page-aligned, for its whole life;
        // the view borrows the mapping, so it cannot outlive it.
        unsafe { Region::from_ptr(self.ptr.cast(), REGION_SIZE) }.map_err(|e| e.to_string())
    }
}

/// Copies `path` into private memory and checks it is a vgpu region.
fn read_copy(path: &str) -> Result<Mapping, String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{path}: no shared region there. A container's region is made by its first CUDA or HIP \
             process, at $CUDA_DEVICE_MEMORY_SHARED_CACHE (default /tmp/cudevshr.cache): run \
             `vgpuctl inspect` inside the container (e.g. `vgpuctl run -- sh -c '<job> & \
             vgpuctl inspect'`), or give the path; `vgpuctl run --container` prints its \
             region's host path"
        ),
        _ => format!("{path}: {e}"),
    })?;
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut v1 = [0u8; V1_PROBE_LEN];
    let mut ext = [0u8; EXT_PROBE_LEN];
    let _ = file.read_at(&mut v1, 0);
    let _ = file.read_at(&mut ext, EXT_OFFSET as u64);
    let status = classify(len, &HeaderView::from_bytes(&v1, &ext), 0);
    if status != RegionStatus::Valid {
        return Err(format!("{path}: not a vgpu shared region: {status:?}"));
    }
    // SAFETY: a fresh private anonymous mapping (page-aligned, zero-filled, ours alone).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(format!("{path}: mmap failed"));
    }
    let map = Mapping { ptr };
    {
        // SAFETY: REGION_SIZE writable bytes mapped above; no other reference to them yet.
        let copy = unsafe { std::slice::from_raw_parts_mut(map.ptr.cast::<u8>(), REGION_SIZE) };
        file.read_exact_at(copy, 0)
            .map_err(|e| format!("{path}: changed while being read: {e}"))?;
    }
    map.region()?;
    Ok(map)
}

/// Copies `path` into private memory, checks it is a vgpu region and reads a [`Snapshot`].
pub fn read(path: &str) -> Result<Snapshot, String> {
    let map = read_copy(path)?;
    let r = map.region()?;

    let devices: Vec<Device> = (0..MAX_DEVICES)
        .filter_map(|d| {
            let state = r.device(d).ok()?;
            (state.uuid_key.load(Ordering::Acquire) != 0).then(|| Device {
                index: d,
                uuid: r.uuid_str(d).unwrap_or_default(),
                limit: state.limit_bytes.load(Ordering::Acquire),
                refused: state.flags.load(Ordering::Acquire) & shm_layout::DEVICE_MEMORY_REFUSED
                    != 0,
                sm_limit: state.sm_limit.load(Ordering::Acquire),
                used: state.reserved_bytes.load(Ordering::Acquire),
                peak: state.peak_reserved_bytes.load(Ordering::Acquire),
            })
        })
        .collect();
    let high = r.v1.proc_num.load(Ordering::Acquire).clamp(0, 1024) as usize;
    let processes: Vec<Process> = (0..high)
        .filter_map(|i| {
            let slot = r.slot(i).ok()?;
            if slot.v1.status.load(Ordering::Acquire) == 0 {
                return None;
            }
            let pid = slot.ext.pid.load(Ordering::Acquire);
            let hostpid = slot.v1.hostpid.load(Ordering::Acquire);
            let start = slot.ext.start_time.load(Ordering::Acquire);
            Some(Process {
                slot: i,
                pid,
                hostpid,
                // Inside the container `pid` names the process; on the host (top, exporter)
                // `hostpid` does. The start time is the same in every pid namespace.
                alive: alive(pid, start)
                    || (hostpid > 0 && hostpid != pid && alive(hostpid, start)),
                usage: devices
                    .iter()
                    .map(|d| {
                        let util = slot.v1.device_util[d.index].sm_util.load(Ordering::Relaxed);
                        (d.index, slot.v1.load_usage(d.index).0, util)
                    })
                    .collect(),
            })
        })
        .collect();
    let h = &r.v1;
    Ok(Snapshot {
        recent_kernel: h.recent_kernel.load(Ordering::Acquire),
        utilization_switch: h.utilization_switch.load(Ordering::Acquire),
        priority: h.priority.load(Ordering::Acquire),
        last_kernel_time: h.last_kernel_time.load(Ordering::Acquire),
        devices,
        processes,
    })
}

/// This process's pid namespace (inode of `/proc/self/ns/pid`), 0 if unknown.
fn own_pid_ns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Whether the process of a slot is gone: it no longer exists or is a zombie (whose files,
/// the driver's included, the kernel has closed). A process we may not inspect (hidepid,
/// EPERM) counts as alive. `start_time` 0: a slot being claimed, judged by its pid alone.
fn owner_gone(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) if start_time == 0 => {
            shm_layout::parse_proc_stat(&text).is_some_and(|st| st.state == 'Z' || st.state == 'X')
        }
        Ok(text) => !shm_layout::owner_is_alive(start_time, Some(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => {
            // SAFETY: signal 0 only checks existence.
            let r = unsafe { libc::kill(pid, 0) };
            r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
    }
}

/// Reclaims the slots of the region's processes that are gone (SPEC §5.4), under the
/// region's robust lock, as a process of the container would: what a user runs when no
/// process is left to do it. Only when a lock-free look at a private copy ([`read_copy`])
/// found such a slot of vgpuctl's own pid namespace; anything else (not ours to judge, no
/// write permission, lock busy) leaves the file untouched. Returns the slots reclaimed.
pub fn reap_gone(path: &str) -> usize {
    // Only slots that name vgpuctl's own namespace: on the host, a container's pids (or
    // those of a writer too old to record its namespace) mean nothing.
    let scope = shm_layout::ReapScope {
        pid_ns: own_pid_ns(),
        unknown_ns: false,
        only_exiting: false,
    };
    let Ok(copy) = read_copy(path) else {
        return 0;
    };
    let Ok(region) = copy.region() else {
        return 0;
    };
    if !region.any_gone(scope, &mut owner_gone) && !region.audit_needed() {
        return 0;
    }
    drop(copy);
    use std::os::unix::io::AsRawFd;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return 0;
    };
    let fd = file.as_raw_fd();
    // SAFETY: a shared mapping of the file, REGION_SIZE bytes (read_copy checked its size);
    // unmapped by `Mapping`'s drop.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return 0;
    }
    let map = Mapping { ptr };
    // Shared with the container's processes: every field is an atomic or the mutex's bytes.
    let Ok(r) = map.region() else {
        return 0;
    };
    let Some(_lock) = r.lock_timed(std::time::Duration::from_millis(500)) else {
        return 0;
    };
    let n = r.reap_gone(scope, &mut owner_gone);
    if r.audit_needed() {
        let _ = r.audit_totals();
    }
    n
}

pub fn inspect(path: &str, json: bool) -> Result<String, String> {
    reap_gone(path);
    let Snapshot {
        recent_kernel: recent,
        utilization_switch: switch,
        priority: prio,
        last_kernel_time: last,
        devices,
        processes,
    } = read(path)?;

    let mut out = String::new();
    if json {
        let _ = write!(
            out,
            "{{\"path\":{path:?},\"recent_kernel\":{recent},\"utilization_switch\":{switch},\"priority\":{prio},\"last_kernel_time\":{last},\"devices\":["
        );
        for (i, d) in devices.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"index\":{},\"uuid\":{:?},\"limit_bytes\":{},\"memory_refused\":{},\"sm_limit\":{},\"used_bytes\":{},\"peak_bytes\":{}}}",
                if i > 0 { "," } else { "" },
                d.index,
                d.uuid,
                d.limit,
                d.refused,
                d.sm_limit,
                d.used,
                d.peak
            );
        }
        out.push_str("],\"processes\":[");
        for (i, p) in processes.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"slot\":{},\"pid\":{},\"hostpid\":{},\"alive\":{},\"usage\":[",
                if i > 0 { "," } else { "" },
                p.slot,
                p.pid,
                p.hostpid,
                p.alive
            );
            for (j, (d, u, util)) in p.usage.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}{{\"device\":{d},\"context\":{},\"module\":{},\"data\":{},\"total\":{},\"sm_util\":{util}}}",
                    if j > 0 { "," } else { "" },
                    u.context_size,
                    u.module_size,
                    u.data_size,
                    u.total()
                );
            }
            out.push_str("]}");
        }
        out.push_str("]}\n");
    } else {
        let mib = |b: u64| b as f64 / 1048576.0;
        let _ = writeln!(
            out,
            "region {path}: recent_kernel={recent} utilization_switch={switch} priority={prio}"
        );
        let _ = writeln!(
            out,
            "{:<4} {:<42} {:>12} {:>12} {:>12} {:>6}",
            "dev", "uuid", "limit MiB", "used MiB", "peak MiB", "cores"
        );
        for d in &devices {
            let limit = if d.refused {
                "0 (refused)".to_string()
            } else if d.limit == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", mib(d.limit))
            };
            let cores = if d.sm_limit == 0 {
                "-".to_string()
            } else {
                format!("{}%", d.sm_limit)
            };
            let _ = writeln!(
                out,
                "{:<4} {:<42} {:>12} {:>12.1} {:>12.1} {:>6}",
                d.index,
                d.uuid,
                limit,
                mib(d.used),
                mib(d.peak),
                cores
            );
        }
        let _ = writeln!(
            out,
            "{:<5} {:>8} {:>8} {:<6} {:<4} {:>11} {:>11} {:>11} {:>11} {:>6}",
            "slot",
            "pid",
            "hostpid",
            "state",
            "dev",
            "context",
            "module",
            "data",
            "total MiB",
            "sm%"
        );
        for p in &processes {
            for (d, u, util) in &p.usage {
                let _ = writeln!(
                    out,
                    "{:<5} {:>8} {:>8} {:<6} {:<4} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>6}",
                    p.slot,
                    p.pid,
                    p.hostpid,
                    if p.alive { "alive" } else { "stale" },
                    d,
                    mib(u.context_size),
                    mib(u.module_size),
                    mib(u.data_size),
                    mib(u.total()),
                    util
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A published region of one device (1 GiB cap, `sm_limit` % cores).
    fn one_device_region(sm_limit: u64) -> Box<Region> {
        let r = Region::new_boxed();
        let params = shm_layout::InitParams {
            devices: vec![shm_layout::DeviceInit {
                uuid: "GPU-aaaaaaaa-0000-0000-0000-000000000001".into(),
                limit_bytes: 1 << 30,
                sm_limit,
            }],
            priority: shm_layout::DEFAULT_PRIORITY,
            created_unix_ns: 1,
            boot_id_hash: 0,
        };
        shm_layout::init(&r, &params).unwrap();
        r
    }

    fn region_bytes() -> Vec<u8> {
        let r = one_device_region(50);
        // SAFETY: a Region is REGION_SIZE bytes of plain integers (atomics), all initialized.
        unsafe { std::slice::from_raw_parts((&*r as *const Region).cast::<u8>(), REGION_SIZE) }
            .to_vec()
    }

    #[test]
    fn inspect_reaps_gone_processes_of_its_own_pid_namespace_only() {
        let path = std::env::temp_dir().join(format!("vgpuctl-reap-{}.cache", std::process::id()));
        let path_str = path.to_str().unwrap().to_string();
        let region = one_device_region(0);
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        let gone = 1 << 23;
        let me = std::process::id() as i32;
        let my_start =
            shm_layout::parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").unwrap())
                .unwrap()
                .start_time;
        let exited = region
            .claim_slot(shm_layout::owner_token(gone, 1), gone, 5, 0)
            .unwrap();
        let live = region
            .claim_slot(shm_layout::owner_token(me, 1), me, my_start, 0)
            .unwrap();
        for (slot, bytes) in [(exited, 300 << 20), (live, 100 << 20)] {
            region.try_reserve(slot, 0, bytes).unwrap();
            region.ext.slots[slot]
                .pid_ns
                .store(own_pid_ns(), Ordering::Relaxed);
        }
        assert!(region.mark_exiting(exited, shm_layout::owner_token(gone, 1)));
        // The exited process's slot names another pid namespace: not ours to judge.
        region.ext.slots[exited]
            .pid_ns
            .store(own_pid_ns() ^ 1, Ordering::Relaxed);
        let write = |r: &Region| {
            // SAFETY: a Region is REGION_SIZE bytes of plain integers (atomics), all initialized.
            let bytes = unsafe {
                std::slice::from_raw_parts((r as *const Region).cast::<u8>(), REGION_SIZE)
            };
            std::fs::write(&path, bytes).unwrap();
        };
        write(&region);
        assert_eq!(reap_gone(&path_str), 0);
        assert_eq!(read(&path_str).unwrap().devices[0].used, 400 << 20);
        // Ours (as every process of a container records it): reclaimed, the live one kept.
        region.ext.slots[exited]
            .pid_ns
            .store(own_pid_ns(), Ordering::Relaxed);
        write(&region);
        let inspected = inspect(&path_str, true).unwrap();
        assert!(
            inspected.contains("\"used_bytes\":104857600"),
            "{inspected}"
        );
        let snap = read(&path_str).unwrap();
        assert_eq!(snap.processes.len(), 1);
        assert_eq!(snap.processes[0].pid, me);
        assert!(snap.processes[0].alive);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_region_truncated_while_it_is_read_is_an_error_not_a_crash() {
        let path = std::env::temp_dir().join(format!("vgpuctl-trunc-{}.cache", std::process::id()));
        let bytes = Arc::new(region_bytes());
        std::fs::write(&path, &*bytes).unwrap();
        let snap = read(path.to_str().unwrap()).unwrap();
        assert_eq!(snap.devices.len(), 1);
        assert_eq!(snap.devices[0].limit, 1 << 30);

        // What a hostile container can do to its own region while the node's exporter reads
        // it: cut it to nothing and write it back, over and over.
        let stop = Arc::new(AtomicBool::new(false));
        let cutter = {
            let (path, bytes, stop) = (path.clone(), Arc::clone(&bytes), Arc::clone(&stop));
            std::thread::spawn(move || {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    f.set_len(0).unwrap();
                    // Back to full length with valid headers (the rest reads as zeros).
                    f.set_len(REGION_SIZE as u64).unwrap();
                    f.write_all_at(&bytes[..V1_PROBE_LEN], 0).unwrap();
                    let ext = EXT_OFFSET..EXT_OFFSET + EXT_PROBE_LEN;
                    f.write_all_at(&bytes[ext], EXT_OFFSET as u64).unwrap();
                }
            })
        };
        let mut refused = 0;
        for _ in 0..10_000 {
            if read(path.to_str().unwrap()).is_err() {
                refused += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        cutter.join().unwrap();
        // Still here (no SIGBUS), and some reads saw the file cut.
        assert!(refused > 0, "the file was never seen truncated");
        assert!(read(path.to_str().unwrap()).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
