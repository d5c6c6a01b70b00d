//! The physical view both simulated SMI libraries answer from (included with `#[path]` by
//! `sim/rocmsmi` and `sim/amdsmi`): every AMD device of the machine (no `*_VISIBLE_DEVICES`),
//! its memory, busy time and processes, read from the shared state. Like the real
//! libraries, they refuse to initialise unless the amdgpu driver is loaded
//! (`/sys/module/amdgpu/initstate` reads `live`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use vgpu_sim_core::amd::{self, AmdSpec};
use vgpu_sim_core::clock;
use vgpu_sim_core::state::{DeviceInfo, OpenError, ProcMem, SimState, SWEEP_INTERVAL_NS};

/// The amdgpu kernel driver version both SMI libraries report.
pub const DRIVER_VERSION: &str = "6.12.12";
/// VRAM vendor both report.
pub const VRAM_VENDOR: &str = "HYNIX";

/// Where the kernel says whether amdgpu finished initialising.
pub const AMDGPU_INITSTATE: &str = "/sys/module/amdgpu/initstate";

pub fn driver_loaded() -> bool {
    std::fs::read_to_string(AMDGPU_INITSTATE).is_ok_and(|s| s.trim() == "live")
}

/// The mapped state and its AMD devices (empty when the machine has none).
pub struct View {
    pub shm: Option<SimState>,
}

static VIEW: OnceLock<View> = OnceLock::new();
static REFS: AtomicU32 = AtomicU32::new(0);

fn open() -> View {
    let path = vgpu_sim_core::default_state_path();
    let (cfg, w) = amd::sim_config_from_env();
    if !path.exists() {
        for l in w {
            eprintln!("vgpu-sim: {l}");
        }
    }
    let shm = match SimState::open_or_create(&path, &cfg) {
        Ok(s) => Some(s),
        Err(OpenError::Mismatch(m)) | Err(OpenError::Io(m)) => {
            eprintln!("{m}");
            None
        }
        Err(OpenError::Missing) => None,
    };
    View { shm }
}

/// `*_init`: counts a reference and opens the state once.
pub fn init() {
    VIEW.get_or_init(open);
    REFS.fetch_add(1, Ordering::AcqRel);
}

/// `*_shut_down`: `false` when not initialised.
pub fn shut_down() -> bool {
    REFS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
        .is_ok()
}

/// The view while initialised.
pub fn view() -> Option<&'static View> {
    if REFS.load(Ordering::Acquire) == 0 {
        return None;
    }
    VIEW.get()
}

impl View {
    /// The machine's AMD devices (a machine of NVIDIA models has none).
    pub fn devices(&self) -> &[DeviceInfo] {
        match &self.shm {
            Some(s)
                if s.devices()
                    .first()
                    .is_some_and(|d| amd::amd_spec(&d.model_key).is_some()) =>
            {
                s.devices()
            }
            _ => &[],
        }
    }

    pub fn device(&self, i: u32) -> Option<&DeviceInfo> {
        self.devices().get(i as usize)
    }

    pub fn spec(&self, i: u32) -> Option<&'static AmdSpec> {
        amd::amd_spec(&self.device(i)?.model_key)
    }

    /// `(used, total)` bytes; dead processes are reclaimed first (at most every 100 ms).
    pub fn mem(&self, i: u32) -> Option<(u64, u64)> {
        self.device(i)?;
        let mut g = self.shm.as_ref()?.lock().ok()?;
        g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
        g.mem_info(i)
    }

    /// Busy percentage of the last second.
    pub fn busy_percent(&self, i: u32) -> Option<u32> {
        self.device(i)?;
        let g = self.shm.as_ref()?.lock().ok()?;
        Some(g.utilization(i, clock::mono_ns(), 1_000_000_000))
    }

    /// Device time spent on kernels since the machine started (ns).
    pub fn busy_total_ns(&self, i: u32) -> Option<u64> {
        self.device(i)?;
        let g = self.shm.as_ref()?.lock().ok()?;
        g.snapshot(clock::mono_ns())
            .devices
            .get(i as usize)
            .map(|d| d.busy_total_ns)
    }

    /// Processes holding memory or a context on device `i`.
    pub fn processes(&self, i: u32) -> Vec<ProcMem> {
        if self.device(i).is_none() {
            return Vec::new();
        }
        let Some(Ok(mut g)) = self.shm.as_ref().map(|s| s.lock()) else {
            return Vec::new();
        };
        g.sweep(clock::mono_ns(), SWEEP_INTERVAL_NS);
        g.processes(i)
    }

    /// [`View::processes`] with the command name each process registered with (the state
    /// file's record: right for processes in containers too).
    pub fn processes_named(&self, i: u32) -> Vec<(ProcMem, String)> {
        let procs = self.processes(i);
        let Some(Ok(g)) = self.shm.as_ref().map(|s| s.lock()) else {
            return Vec::new();
        };
        let snap = g.snapshot(clock::mono_ns());
        procs
            .into_iter()
            .map(|p| {
                let name = snap
                    .procs
                    .iter()
                    .find(|s| s.slot == p.slot)
                    .map(|s| s.comm.clone())
                    .unwrap_or_default();
                (p, name)
            })
            .collect()
    }

    /// Device time the kernels of the process in `slot` have run on device `i` (ns, a
    /// running total since it started, as the driver's fdinfo counts it).
    pub fn process_run_ns(&self, i: u32, slot: u32) -> u64 {
        let Some(Ok(g)) = self.shm.as_ref().map(|s| s.lock()) else {
            return 0;
        };
        g.process_run_ns(i, slot, clock::mono_ns())
    }

    /// Every process using any device: `(pid, [(device, bytes)])`, by pid.
    pub fn all_processes(&self) -> Vec<(u32, Vec<(u32, u64)>)> {
        let mut out: Vec<(u32, Vec<(u32, u64)>)> = Vec::new();
        for i in 0..self.devices().len() as u32 {
            for p in self.processes(i) {
                let bytes = p.usage.total();
                match out.iter_mut().find(|(pid, _)| *pid == p.pid) {
                    Some((_, v)) => v.push((i, bytes)),
                    None => out.push((p.pid, vec![(i, bytes)])),
                }
            }
        }
        out.sort_by_key(|(p, _)| *p);
        out
    }
}

/// Copies `s` NUL-terminated into `len` bytes at `dst`; `false` when it does not fit.
///
/// # Safety
/// `dst` must be valid for `len` bytes.
pub unsafe fn put_str(dst: *mut std::ffi::c_char, len: usize, s: &str) -> bool {
    if dst.is_null() || len == 0 {
        return false;
    }
    let n = s.len().min(len - 1);
    // SAFETY: the caller vouches for `len` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), dst as *mut u8, n);
        *dst.add(n) = 0;
    }
    n == s.len()
}

/// Writes through a non-NULL out-pointer.
///
/// # Safety
/// A non-NULL `p` must be valid for writing a `T`.
pub unsafe fn put<T>(p: *mut T, v: T) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: as documented.
    unsafe { p.write(v) };
    true
}
