//! A simulated library's own process: attaching it to the machine's state (open or create
//! the state file, register the process image), releasing it at normal exit, and the small
//! glue both the CUDA and the HIP simulators' runtimes need around that. What differs per
//! vendor (which devices it accepts, which result code a failure is) stays in each library.

use std::sync::{Mutex, MutexGuard};

use crate::config::SimConfig;
use crate::procfs;
use crate::state::{Guard, OpenError, SimState};

/// Prints configuration warnings, one `vgpu-sim:` line each.
pub fn warn(lines: &[String]) {
    for l in lines {
        eprintln!("vgpu-sim: {l}");
    }
}

/// The guard of a process-local mutex, poisoned or not: a panic caught at the FFI boundary
/// must not turn every later call into another panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the machine's state at the default path, creating it from `cfg` when there is none
/// (`cfg_warnings` are printed only then: the machine-wide settings only matter to the
/// process that creates the state). `None`: no usable state (the reason printed), so the
/// library sees no device.
pub fn open_machine_state(cfg: &SimConfig, cfg_warnings: &[String]) -> Option<SimState> {
    let path = crate::default_state_path();
    if !path.exists() {
        warn(cfg_warnings);
    }
    match SimState::open_or_create(&path, cfg) {
        Ok(s) => Some(s),
        Err(OpenError::Mismatch(m)) | Err(OpenError::Io(m)) => {
            eprintln!("{m}");
            None
        }
        Err(OpenError::Missing) => None,
    }
}

/// Why [`register_process`] failed (the reason printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The state's lock could not be taken.
    Lock,
    /// The process table is full.
    Full,
}

/// Puts `slot` in the group `VGPU_SIM_GROUP` names (the ground truth per group of
/// processes, e.g. one container: `vgpu-sim status`); a full group table is said once.
/// The `in_lock` of [`register_process`] for the simulated runtimes.
pub fn join_group_from_env(g: &mut Guard<'_>, slot: u32) {
    let Some(group) = std::env::var("VGPU_SIM_GROUP")
        .ok()
        .filter(|g| !g.is_empty())
    else {
        return;
    };
    if !g.set_group(slot, &group) {
        eprintln!(
            "vgpu-sim: the group table is full ({} groups): this process belongs to none",
            crate::state::MAX_GROUPS
        );
    }
}

/// Registers the calling process's image in the state and returns its slot; `in_lock` runs
/// under the same lock with the new slot (for what must be set before anyone sees it).
pub fn register_process(
    shm: &SimState,
    in_lock: impl FnOnce(&mut Guard<'_>, u32),
) -> Result<u32, RegisterError> {
    let me = shm.caller();
    let mut g = shm.lock().map_err(|m| {
        eprintln!("{m}");
        RegisterError::Lock
    })?;
    let slot = g
        .register_image(me.pid, me.start_time, &procfs::self_comm())
        .map_err(|m| {
            eprintln!("{m}");
            RegisterError::Full
        })?;
    in_lock(&mut g, slot);
    Ok(slot)
}

/// Installs the process callbacks of a simulated library: `after_fork_in_child` in a child
/// after `fork()`, `at_exit` at normal exit.
pub fn install_process_callbacks(after_fork_in_child: extern "C" fn(), at_exit: extern "C" fn()) {
    // SAFETY: plain registrations of extern "C" callbacks without arguments.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
        libc::atexit(at_exit);
    }
}

/// At normal exit the process's device memory is released at once (a killed process is
/// reclaimed by the next liveness sweep instead). Only in the process that registered
/// (`pid`): a forked child exiting leaves its parent's registration alone. Test hook
/// `VGPU_SIM_FREE_AT_CLOSE=1`: nothing is released here; the memory stays held until the
/// process is gone, as a driver does that frees at descriptor close
/// ([`crate::state::Guard::hold_until_gone`]).
pub fn unregister_at_exit(shm: &SimState, slot: u32, pid: u32, machine_pid: u32) {
    if std::process::id() == pid {
        if let Ok(mut g) = shm.lock() {
            if free_at_close() {
                g.hold_until_gone();
                CLOSE_PENDING.store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                g.unregister(slot, machine_pid);
            }
        }
    }
}

/// Set when an exit left the memory to be freed at descriptor close.
static CLOSE_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a simulated library's ELF destructor: with `VGPU_SIM_FREE_AT_CLOSE=1` and
/// `VGPU_SIM_CLOSE_DELAY_MS=N`, an exiting process takes N ms more before it is gone, its
/// memory held all that while — what a real exit spends between the last destructors and
/// the kernel's closing of the device files (unmapping a large address space, other
/// libraries' destructors). `exit` runs a library's destructor after those of the
/// libraries loaded after it, so this runs after libvgpu's when the program links the
/// driver (libvgpu is preloaded). Prints `sim_closing=1` on stdout first.
pub fn delay_close_at_exit() {
    if !CLOSE_PENDING.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let ms = std::env::var("VGPU_SIM_CLOSE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if ms > 0 {
        let line = b"sim_closing=1\n";
        // SAFETY: writes a static buffer to fd 1 (no std stdout lock at exit).
        unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// `VGPU_SIM_FREE_AT_CLOSE=1`: the simulated driver frees an exiting process's memory only
/// when the process is gone.
fn free_at_close() -> bool {
    std::env::var("VGPU_SIM_FREE_AT_CLOSE").is_ok_and(|v| v == "1")
}
