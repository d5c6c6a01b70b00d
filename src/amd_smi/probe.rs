//! AMD's utilization probe for the compute cap's controller (`crate::core::probe`), one of
//! two sources, chosen once per device:
//!
//! - **AMD SMI's per-process GPU time** (preferred): the real `amdsmi_get_gpu_process_list`
//!   (the real library's function, not our hook, which filters the list to the container)
//!   gives each process on the card its `engine_usage.gfx`, a running total of ns (the
//!   driver's fdinfo). Differenced between ticks ([`ProcessTimes`]) it is each pid's busy
//!   share of exactly the tick's window, as NVML's per-process samples are on NVIDIA: the
//!   controller's per-process path, which sums the container's pids and ignores the others'.
//! - **ROCm SMI's device activity** (fallback, logged once, when AMD SMI, the device in it,
//!   its process list or that list's layout is unavailable): the device's busy figure,
//!   which the controller splits among the container's processes by their launches
//!   (`UtilSource::device_level`); another container's work on the card counts as ours.

use std::ffi::c_void;

use crate::core::probe::{DeviceProbe, UtilSource};

use super::hooks::{self, ProcLayout};

/// The probe of the device whose unique id is `uuid`'s (`Vendor::util_probe`).
pub fn find(uuid: &str) -> Option<Box<dyn DeviceProbe>> {
    if let Some(p) = AmdSmiDevice::find(uuid) {
        return Some(Box::new(p));
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::vlog!(
            crate::log::WARN,
            "AMD SMI's per-process GPU time is unavailable for {uuid}: the compute cap reads \
             ROCm SMI's device-wide activity, which counts other containers' work on the card \
             as this container's (the cap errs low)"
        )
    });
    rsmi_index(uuid).map(|index| Box::new(RsmiDevice { index, last: None }) as Box<dyn DeviceProbe>)
}

// ---- AMD SMI: per-process running totals --------------------------------------------------

/// The running GPU-time totals of a device's processes at the previous reading, and what
/// each process ran since (pure: the readings are given).
#[derive(Debug, Default)]
pub struct ProcessTimes {
    /// (monotonic ns, [(pid, total ns)]) of the previous reading.
    last: Option<(u64, Vec<(u32, u64)>)>,
}

impl ProcessTimes {
    /// Takes a reading at `now_ns`; returns each listed process's busy percentage of the time
    /// since the previous reading (`None` for the first, which only starts the difference).
    /// A process not seen before, or whose total went down (restarted under a reused pid, or
    /// its counter reset), ran at most its whole total, and at most the window. A process
    /// gone from the list is forgotten.
    pub fn update(&mut self, now_ns: u64, totals: Vec<(u32, u64)>) -> Option<Vec<(u32, u32)>> {
        let (t0, before) = self.last.replace((now_ns, totals))?;
        let dt = now_ns.checked_sub(t0).filter(|&d| d > 0)?;
        let after = &self.last.as_ref()?.1;
        Some(
            after
                .iter()
                .map(|&(pid, total)| {
                    let ran = match before.iter().find(|b| b.0 == pid) {
                        Some(&(_, b)) if total >= b => total - b,
                        _ => total,
                    }
                    .min(dt);
                    let pct = (u128::from(ran) * 100 + u128::from(dt) / 2) / u128::from(dt);
                    (pid, pct as u32)
                })
                .collect(),
        )
    }

    /// Forgets the previous reading (it could not be taken: the next one starts again).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// A device by its real AMD SMI processor handle (an address, valid while AMD SMI is
/// initialised: never shut down by us), its process list's layout, and two differences:
/// the controller's (every tick) and the node monitor's `sm_util` (every second).
struct AmdSmiDevice {
    handle: usize,
    /// The readings' clock (monotonic).
    epoch: std::time::Instant,
    layout: ProcLayout,
    ticks: ProcessTimes,
    published: ProcessTimes,
}

impl AmdSmiDevice {
    /// The device whose ROCr UUID is `uuid`, when AMD SMI lists its processes in a layout
    /// we know.
    fn find(uuid: &str) -> Option<AmdSmiDevice> {
        use super::amd::real;
        static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let ok = *INIT.get_or_init(|| {
            // SAFETY: plain call with the GPU flag.
            real::amdsmi_init().is_some_and(
                |init| unsafe { init(hip_headers::smi_types::AMDSMI_INIT_AMD_GPUS) } == 0,
            )
        });
        if !ok {
            return None;
        }
        let layout = hooks::process_layout()?;
        let handle = amdsmi_handles()?.into_iter().find(|&h| {
            hooks::amdsmi_uuid(h as *mut c_void).is_some_and(|u| u.eq_ignore_ascii_case(uuid))
        })?;
        let dev = AmdSmiDevice {
            handle,
            epoch: std::time::Instant::now(),
            layout,
            ticks: ProcessTimes::default(),
            published: ProcessTimes::default(),
        };
        dev.totals().map(|_| dev)
    }

    /// `(pid, GFX ns so far)` of every process on the device (every container's).
    fn totals(&self) -> Option<Vec<(u32, u64)>> {
        let real = super::amd::real::amdsmi_get_gpu_process_list()?;
        // SAFETY: the real library's function and a handle it gave.
        let (words, n, _) =
            unsafe { hooks::real_entries(real, self.handle as *mut c_void, self.layout) }.ok()?;
        // SAFETY: the words as bytes (u8 has no alignment or validity requirement).
        let bytes =
            unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
        Some(hooks::pid_gfx(bytes, n as usize, self.layout))
    }

    fn read(&self, times: &mut ProcessTimes) -> Option<Vec<(u32, u32)>> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        match self.totals() {
            Some(t) => times.update(now, t),
            None => {
                times.reset();
                None
            }
        }
    }
}

impl DeviceProbe for AmdSmiDevice {
    fn source(&mut self, my_pid: u32) -> Box<dyn UtilSource + '_> {
        Box::new(AmdSmiTimes {
            dev: self,
            my_pid,
            device_level: false,
        })
    }

    fn per_process_since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        let mut times = std::mem::take(&mut self.published);
        let out = self.read(&mut times);
        self.published = times;
        out
    }
}

/// AMD SMI's per-process figures since the previous tick (host pids, as NVML's). When this
/// process is not among them (its host pid is unknown: `my_pid` is then its own namespace's
/// pid, which the list does not use), the tick's figure is the device's instead, the sum of
/// every listed process's time, reported under `my_pid` as a device-level figure: what the
/// ROCm SMI fallback gives, from the same reading.
struct AmdSmiTimes<'a> {
    dev: &'a mut AmdSmiDevice,
    my_pid: u32,
    device_level: bool,
}

impl UtilSource for AmdSmiTimes<'_> {
    fn since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        let mut times = std::mem::take(&mut self.dev.ticks);
        let out = self.dev.read(&mut times);
        self.dev.ticks = times;
        let samples = out?;
        let (samples, device_level) = own_or_device(samples, self.my_pid);
        if device_level && !self.device_level {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                crate::vlog!(
                    crate::log::INFO,
                    "pid {} is not in AMD SMI's process list (its host pid is not known yet): \
                     the compute cap reads the device's GPU time meanwhile",
                    self.my_pid
                )
            });
        }
        self.device_level = device_level;
        Some(samples)
    }

    fn device_level(&self) -> bool {
        self.device_level
    }
}

/// The per-process `samples` when `my_pid` is among them, else the device's figure (their
/// sum) under `my_pid`; and whether it is the device's.
pub fn own_or_device(samples: Vec<(u32, u32)>, my_pid: u32) -> (Vec<(u32, u32)>, bool) {
    if samples.iter().any(|s| s.0 == my_pid) {
        (samples, false)
    } else {
        let device: u32 = samples.iter().map(|s| s.1).sum();
        (vec![(my_pid, device.min(100))], true)
    }
}

/// The real AMD SMI's processor handles of every socket.
fn amdsmi_handles() -> Option<Vec<usize>> {
    use super::amd::real;
    let (sockets, procs) = (
        real::amdsmi_get_socket_handles()?,
        real::amdsmi_get_processor_handles()?,
    );
    let mut n = 0u32;
    // SAFETY: a count query (NULL list).
    if unsafe { sockets((&raw mut n).cast(), std::ptr::null_mut()) } != 0 {
        return None;
    }
    let mut socket = vec![0usize; n as usize];
    // SAFETY: room for `n` handles.
    if unsafe { sockets((&raw mut n).cast(), socket.as_mut_ptr().cast()) } != 0 {
        return None;
    }
    let mut out = Vec::new();
    for &s in socket.iter().take(n as usize) {
        let mut m = 0u32;
        // SAFETY: a count query (NULL list) of a socket the library gave.
        if unsafe { procs(s as *mut c_void, (&raw mut m).cast(), std::ptr::null_mut()) } != 0 {
            continue;
        }
        let mut h = vec![0usize; m as usize];
        // SAFETY: room for `m` handles.
        if unsafe { procs(s as *mut c_void, (&raw mut m).cast(), h.as_mut_ptr().cast()) } == 0 {
            out.extend(h.into_iter().take(m as usize));
        }
    }
    Some(out)
}

// ---- ROCm SMI: the device's activity (fallback) -------------------------------------------

/// ROCm SMI's device index and its counter's previous reading.
struct RsmiDevice {
    index: u32,
    last: Option<(u64, u64)>,
}

impl DeviceProbe for RsmiDevice {
    fn source(&mut self, my_pid: u32) -> Box<dyn UtilSource + '_> {
        Box::new(RsmiBusy {
            index: self.index,
            pid: my_pid,
            last: &mut self.last,
        })
    }
}

/// ROCm SMI's view of one device's busy time, reported as `pid`'s share. Preferred: the
/// coarse-grain GFX activity counter (`rsmi_utilization_count_get`, accumulated busy ms with
/// its sample timestamp), differenced between ticks, which gives the busy share of exactly
/// the tick's window; without it, `rsmi_dev_busy_percent_get` (a recent window, which lags
/// the tick and makes the calibration oscillate).
pub struct RsmiBusy<'a> {
    index: u32,
    pid: u32,
    /// The previous (busy ms, timestamp ns) reading of the counter (kept by the probe).
    last: &'a mut Option<(u64, u64)>,
}

impl RsmiBusy<'_> {
    fn counter(&self) -> Option<(u64, u64)> {
        let f = super::rocm::real::rsmi_utilization_count_get()?;
        let mut c = hip_headers::smi_types::rsmi_utilization_counter_t::default();
        let mut ts = 0u64;
        // SAFETY: one counter (type 0, coarse-grain GFX activity) and a valid timestamp.
        let rc = unsafe { f(self.index, &mut c, 1, &mut ts) };
        (rc == 0 && ts > 0).then_some((c.value, ts))
    }
}

impl UtilSource for RsmiBusy<'_> {
    /// The device's figure: the controller splits it among the container's processes by
    /// their launches (`controller`'s device-level sources).
    fn device_level(&self) -> bool {
        true
    }

    fn since(&mut self, _since_real_us: u64) -> Option<Vec<(u32, u32)>> {
        if let Some((ms, ts)) = self.counter() {
            let prev = self.last.replace((ms, ts));
            let (pms, pts) = prev?; // the first reading only starts the difference
            let dt = ts.checked_sub(pts).filter(|&d| d > 0)?;
            let pct = (ms.saturating_sub(pms) as f64 * 1e6 / dt as f64 * 100.0).round();
            return Some(vec![(self.pid, pct.min(100.0) as u32)]);
        }
        let f = super::rocm::real::rsmi_dev_busy_percent_get()?;
        let mut busy = 0u32;
        // SAFETY: valid out-pointer; ROCm SMI is initialised (`rsmi_index`).
        (unsafe { f(self.index, &mut busy) } == 0).then(|| vec![(self.pid, busy.min(100))])
    }
}

/// ROCm SMI's index of the device whose unique id is `uuid`'s (`GPU-%016x`), initialising
/// ROCm SMI (once per process: `rsmi_init` counts references).
fn rsmi_index(uuid: &str) -> Option<u32> {
    use super::rocm::real;
    static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INIT.get_or_init(|| {
        // SAFETY: plain call with flags 0.
        real::rsmi_init().is_some_and(|init| unsafe { init(0) } == 0)
    });
    if !ok {
        return None;
    }
    let (count, id) = (
        real::rsmi_num_monitor_devices()?,
        real::rsmi_dev_unique_id_get()?,
    );
    let mut n = 0u32;
    // SAFETY: valid out-pointer.
    if unsafe { count(&mut n) } != 0 {
        return None;
    }
    (0..n).find(|&i| {
        let mut u = 0u64;
        // SAFETY: an index below the count, valid out-pointer.
        let rc = unsafe { id(i, &mut u) };
        rc == 0 && super::hooks::rocr_uuid(u).eq_ignore_ascii_case(uuid)
    })
}

#[cfg(test)]
mod tests {
    use super::ProcessTimes;

    const MS: u64 = 1_000_000;

    #[test]
    fn running_totals_are_differenced_per_process() {
        let mut t = ProcessTimes::default();
        // The first reading only starts the difference.
        assert_eq!(t.update(1_000 * MS, vec![(7, 500 * MS), (8, 0)]), None);
        // 100 ms later: 7 ran 30 ms, 8 ran 60 ms.
        let got = t.update(1_100 * MS, vec![(7, 530 * MS), (8, 60 * MS)]);
        assert_eq!(got, Some(vec![(7, 30), (8, 60)]));
        // 8 is gone (not reported), 9 is new: all its total is since it started.
        let got = t.update(1_200 * MS, vec![(7, 545 * MS), (9, 20 * MS)]);
        assert_eq!(got, Some(vec![(7, 15), (9, 20)]));
        // 7 restarted under the same pid (its total went down): its new total, and a new
        // process's total never counts for more than the window.
        let got = t.update(1_300 * MS, vec![(7, 10 * MS), (9, 900 * MS)]);
        assert_eq!(got, Some(vec![(7, 10), (9, 100)]));
        // A total wrapped past u64::MAX reads as a restart, not a huge figure.
        let mut w = ProcessTimes::default();
        w.update(0, vec![(1, u64::MAX - 5 * MS)]);
        assert_eq!(w.update(100 * MS, vec![(1, 5 * MS)]), Some(vec![(1, 5)]));
    }

    #[test]
    fn without_its_own_pid_listed_a_process_reads_the_devices_figure() {
        use super::own_or_device;
        assert_eq!(
            own_or_device(vec![(7, 30), (8, 60)], 8),
            (vec![(7, 30), (8, 60)], false)
        );
        assert_eq!(
            own_or_device(vec![(7, 30), (8, 60)], 2),
            (vec![(2, 90)], true)
        );
        assert_eq!(
            own_or_device(vec![(7, 70), (8, 60)], 2),
            (vec![(2, 100)], true)
        );
        assert_eq!(own_or_device(vec![], 2), (vec![(2, 0)], true));
    }

    #[test]
    fn a_failed_or_timeless_reading_starts_again() {
        let mut t = ProcessTimes::default();
        t.update(1_000 * MS, vec![(7, 0)]);
        // Same instant: no window.
        assert_eq!(t.update(1_000 * MS, vec![(7, 10 * MS)]), None);
        t.reset();
        assert_eq!(t.update(1_100 * MS, vec![(7, 20 * MS)]), None);
        assert_eq!(
            t.update(1_200 * MS, vec![(7, 70 * MS)]),
            Some(vec![(7, 50)])
        );
    }
}
