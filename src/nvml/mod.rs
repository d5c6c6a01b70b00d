//! NVML: its surface (exports for the `hook` rows of `cuda_headers::nvml_api!`, the real
//! functions, `HOOKS`; the bodies in [`hooks`]: the container's view), NVIDIA's answers to
//! the core ([`VENDOR`]), and the probe libvgpu uses to measure what the driver charges this
//! process (context and module overhead appear with no allocation call; [`probe`]: the
//! compute cap's utilization source).
//!
//! The probe calls the *real* NVML through handles from the real `dlsym`, so it is never
//! affected by our own redirection.

#![allow(non_snake_case)]

pub mod hooks;
pub mod probe;

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// The NVML table's rows as the surface generator ([`crate::define_surface!`], the CUDA
/// driver's too) takes them. NVML has no launch rows, and its real functions are looked
/// up lazily, one row at a time ([`real_nvml`]).
macro_rules! nvml_surface {
    ($( $name:ident = [$hook:ident $sim:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        crate::define_surface! {
            status: nvmlReturn_t,
            on_panic: NVML_ERROR_UNKNOWN,
            hooks: hooks,
            pfn: pfn,
            real_at: real_nvml,
            resolve: {},
            not_initialized: NVML_ERROR_UNINITIALIZED,
            before_launch: {},
            rows: [ $( $name [$hook] ( $( $arg : $ty ),* ); )* ]
        }
    };
}
cuda_headers::nvml_api!(nvml_surface);

/// The real NVML's entry points, in table order: 0 = not looked up yet, [`ABSENT`] = the
/// library (or this symbol) is not there.
static REAL_NVML: [AtomicUsize; ROWS] = [const { AtomicUsize::new(0) }; ROWS];

/// A looked-up symbol that is not there.
const ABSENT: usize = 1;

/// The real NVML library's handle (opened once: the already loaded library if any).
fn real_nvml_handle() -> Option<*mut c_void> {
    static HANDLE: OnceLock<usize> = OnceLock::new();
    let h = *HANDLE.get_or_init(|| {
        crate::interpose::open_library(c"libnvidia-ml.so.1").map_or(0, |h| h as usize)
    });
    (h != 0).then_some(h as *mut c_void)
}

/// The real function of table row `i` (0: absent). Looked up on first use, one row at a
/// time: the table holds every NVML entry point, most of which a process never calls.
fn real_nvml(i: usize) -> usize {
    let slot = &REAL_NVML[i];
    let p = slot.load(Ordering::Acquire);
    if p != 0 {
        return if p == ABSENT { 0 } else { p };
    }
    let found = real_nvml_handle()
        // SAFETY: handle from dlopen, NUL-terminated name.
        .map(|h| unsafe { crate::interpose::real_dlsym(h, SYMBOLS[i]) } as usize)
        .unwrap_or(0);
    slot.store(if found == 0 { ABSENT } else { found }, Ordering::Release);
    found
}

/// The real NVML's function for a symbol outside the table (e.g. its private
/// `nvmlInternalGetExportTable`), or null.
pub fn real_nvml_symbol(name: &CStr) -> *mut c_void {
    match real_nvml_handle() {
        // SAFETY: handle from dlopen, NUL-terminated name.
        Some(h) => unsafe { crate::interpose::real_dlsym(h, name) },
        None => std::ptr::null_mut(),
    }
}

/// NVML's private table, wrapped for the container (see `hooks::nvml`). Not a table row:
/// it is no public entry point.
///
/// # Safety
/// NVML's contract: a writable table pointer and a 16-byte GUID.
#[no_mangle]
pub unsafe extern "C" fn nvmlInternalGetExportTable(
    table: *mut *const c_void,
    guid: *const c_void,
) -> nvmlReturn_t {
    // SAFETY: the caller's arguments under the same contract.
    crate::interpose::guard::guard(NVML_ERROR_UNKNOWN, || unsafe {
        crate::nvml::hooks::nvmlInternalGetExportTable(table, guid)
    })
}

/// NVML's family for the `dlsym` redirection (`crate::interpose`).
pub const FAMILY: crate::interpose::Family = crate::interpose::Family {
    symbol_prefixes: &[b"nvml"],
    library_prefix: b"libnvidia-ml.so",
    hook_by_symbol,
};

/// Our NVML hook for an exact symbol, if we hook it.
pub fn hook_by_symbol(symbol: &[u8]) -> Option<*const c_void> {
    if symbol == b"nvmlInternalGetExportTable" {
        return Some(nvmlInternalGetExportTable as *const c_void);
    }
    SYMBOLS
        .iter()
        .zip(HOOKS.0.iter())
        .find(|(n, h)| !h.is_null() && n.to_bytes() == symbol)
        .map(|(_, &h)| h)
}

/// NVIDIA's answers to the core (`crate::core::vendor`): the devices by NVML's UUIDs, the
/// controller's probe from NVML's per-process samples. Registered by CUDA's first call
/// (`crate::cuda::ensure_resolved`) and by NVML's hooks ([`rt`]).
pub static VENDOR: crate::core::vendor::Vendor = crate::core::vendor::Vendor {
    name: "NVIDIA",
    rank: 1,
    device_uuids: nvml_device_uuids,
    util_probe: probe::find,
    reads_rocr_uuids: false,
};

fn nvml_device_uuids() -> Vec<String> {
    NvmlProbe::get()
        .map(NvmlProbe::device_uuids)
        .unwrap_or_default()
}

/// The process state, for NVML's hooks, with NVIDIA's answers registered first.
pub fn rt() -> &'static crate::core::runtime::Runtime {
    crate::core::vendor::register(&VENDOR);
    crate::core::runtime::rt()
}

/// The real NVML, opened once per process on first need ([`NvmlProbe::get`]).
static OPENED: OnceLock<Option<NvmlProbe>> = OnceLock::new();

/// The real NVML, opened for measuring.
pub struct NvmlProbe {
    get_count: pfn::nvmlDeviceGetCount_v2,
    handle_by_index: pfn::nvmlDeviceGetHandleByIndex_v2,
    get_uuid: pfn::nvmlDeviceGetUUID,
    processes: pfn::nvmlDeviceGetComputeRunningProcesses_v3,
}

impl NvmlProbe {
    /// The real NVML, opened and initialised on first need (a library load and the
    /// driver's NVML initialisation); `None` when it is absent or fails.
    pub fn get() -> Option<&'static NvmlProbe> {
        OPENED.get_or_init(NvmlProbe::open).as_ref()
    }

    /// Whether this process has tried to open NVML already.
    pub fn is_open() -> bool {
        OPENED.get().is_some()
    }

    /// Opens and initialises the real NVML; `None` when it is absent or fails.
    fn open() -> Option<NvmlProbe> {
        let init = real::nvmlInit_v2()?;
        // SAFETY: plain NVML call.
        if unsafe { init() } != NVML_SUCCESS {
            return None;
        }
        Some(NvmlProbe {
            get_count: real::nvmlDeviceGetCount_v2()?,
            handle_by_index: real::nvmlDeviceGetHandleByIndex_v2()?,
            get_uuid: real::nvmlDeviceGetUUID()?,
            processes: real::nvmlDeviceGetComputeRunningProcesses_v3()?,
        })
    }

    fn device(&self, index: u32) -> Option<nvmlDevice_t> {
        let mut dev: nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        (unsafe { (self.handle_by_index)(index, &mut dev) } == NVML_SUCCESS).then_some(dev)
    }

    /// UUIDs of the devices NVML shows, in NVML index order (the container's order).
    pub fn device_uuids(&self) -> Vec<String> {
        let mut count: c_uint = 0;
        // SAFETY: valid out-pointer.
        if unsafe { (self.get_count)(&mut count) } != NVML_SUCCESS {
            return Vec::new();
        }
        (0..count)
            .map(|i| {
                let mut buf = [0 as c_char; 96];
                match self.device(i) {
                    Some(d)
                        // SAFETY: `get_uuid` is the real nvmlDeviceGetUUID, `d` a handle it
                        // gave us, and it writes at most `buf.len()` bytes into `buf`.
                        if unsafe { (self.get_uuid)(d, buf.as_mut_ptr(), buf.len() as c_uint) }
                            == NVML_SUCCESS =>
                    {
                        // SAFETY: NVML NUL-terminates within the buffer.
                        unsafe { CStr::from_ptr(buf.as_ptr()) }
                            .to_string_lossy()
                            .into_owned()
                    }
                    _ => String::new(),
                }
            })
            .collect()
    }

    /// Device memory NVML charges to each process on the device at NVML index `index`.
    pub fn process_usage(&self, index: u32) -> Option<std::collections::HashMap<u32, u64>> {
        let dev = self.device(index)?;
        let mut infos = vec![nvmlProcessInfo_v2_t::default(); 1024];
        let mut count = infos.len() as c_uint;
        // SAFETY: buffer of `count` entries.
        let rc = unsafe { (self.processes)(dev, &mut count, infos.as_mut_ptr()) };
        if rc != NVML_SUCCESS {
            return None;
        }
        let mut usage = std::collections::HashMap::new();
        for p in &infos[..(count as usize).min(infos.len())] {
            *usage.entry(p.pid).or_insert(0) += p.usedGpuMemory;
        }
        Some(usage)
    }
}

/// NVML's private export table (`nvmlInternalGetExportTable`), as far as libvgpu touches it:
/// nvidia-smi lists processes through it, not through the public process-list calls, so the
/// container's view of processes needs three of its slots. Everything here is pure; the
/// wrapping itself is in `hooks::nvml`.
///
/// Facts: the table nvidia-smi asks for has the GUID below; word 0 is its size in bytes;
/// the process lists are `fn(device, *mut count, entries, ...) -> nvmlReturn_t` with `count`
/// the room on entry and the number written on return, entries of [`PROCESS_ENTRY_SIZE`](export_table::PROCESS_ENTRY_SIZE)
/// bytes (pid u32 at 0, used bytes u64 at 8, name inline at 32). Established for nvidia-smi
/// 535 over the simulator (one trampoline per slot, `sim/README.md`); the same slots and
/// entry size are published for 580 by NVIDIA's Apache-2.0 mock NVML (NVIDIA/k8s-test-infra).
pub mod export_table {
    /// The GUID of the table nvidia-smi asks for, as its 16 bytes lie in memory.
    pub const GUID: [u8; 16] = [
        0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7,
        0xc4,
    ];

    /// Bytes of one process-list entry.
    pub const PROCESS_ENTRY_SIZE: usize = 4128;
    /// Offset of the pid (u32), the used bytes (u64) and the inline NUL-terminated name.
    pub const PID_OFFSET: usize = 0;
    pub const USED_OFFSET: usize = 8;
    pub const NAME_OFFSET: usize = 32;

    /// The largest table we copy (words beyond are never touched).
    pub const MAX_TABLE_BYTES: usize = 64 * 1024;

    /// The process-list slots (compute, graphics, MPS) of a driver branch whose layout is
    /// known; `None` for every other branch: the table then passes through untouched.
    /// (nvidia-smi also finds devices through the table, slot 81, but takes the handles it
    /// uses from the public `nvmlDeviceGetHandleByIndex`, which libvgpu maps already.)
    pub fn process_list_slots(driver_version: &str) -> Option<[usize; 3]> {
        let branch = driver_version.split('.').next()?;
        match branch {
            "535" | "580" => Some([213, 214, 215]),
            _ => None,
        }
    }

    /// Whether a table whose word 0 says `size_bytes` can be wrapped with these slots.
    pub fn table_fits(size_bytes: usize, slots: &[usize]) -> bool {
        let need = (slots.iter().max().copied().unwrap_or(0) + 1) * std::mem::size_of::<usize>();
        (need..=MAX_TABLE_BYTES).contains(&size_bytes)
            && size_bytes.is_multiple_of(std::mem::size_of::<usize>())
    }

    /// Filters `count` entries of `entries` in place: `used(pid)` is `None` for a process
    /// the container does not see, else the bytes to show for it. Kept entries move to the
    /// front, in order, with their used bytes replaced (pid, ids and the driver's name stay).
    /// Returns the new count.
    pub fn filter_entries(
        entries: &mut [u8],
        count: usize,
        mut used: impl FnMut(u32) -> Option<u64>,
    ) -> usize {
        let count = count.min(entries.len() / PROCESS_ENTRY_SIZE);
        let mut kept = 0;
        for i in 0..count {
            let at = i * PROCESS_ENTRY_SIZE;
            let pid = u32::from_ne_bytes(
                entries[at + PID_OFFSET..at + PID_OFFSET + 4]
                    .try_into()
                    .unwrap_or_default(),
            );
            let Some(bytes) = used(pid) else {
                continue;
            };
            let to = kept * PROCESS_ENTRY_SIZE;
            if to != at {
                entries.copy_within(at..at + PROCESS_ENTRY_SIZE, to);
            }
            entries[to + USED_OFFSET..to + USED_OFFSET + 8].copy_from_slice(&bytes.to_ne_bytes());
            kept += 1;
        }
        kept
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn entry(buf: &mut [u8], i: usize, pid: u32, used: u64, name: &str) {
            let at = i * PROCESS_ENTRY_SIZE;
            buf[at..at + 4].copy_from_slice(&pid.to_ne_bytes());
            buf[at + 8..at + 16].copy_from_slice(&used.to_ne_bytes());
            buf[at + 16..at + 20].copy_from_slice(&u32::MAX.to_ne_bytes());
            buf[at + NAME_OFFSET..at + NAME_OFFSET + name.len()].copy_from_slice(name.as_bytes());
        }

        fn read(buf: &[u8], i: usize) -> (u32, u64, u32, String) {
            let at = i * PROCESS_ENTRY_SIZE;
            let name = &buf[at + NAME_OFFSET..at + PROCESS_ENTRY_SIZE];
            let end = name.iter().position(|&b| b == 0).unwrap();
            (
                u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()),
                u64::from_ne_bytes(buf[at + 8..at + 16].try_into().unwrap()),
                u32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap()),
                String::from_utf8(name[..end].to_vec()).unwrap(),
            )
        }

        #[test]
        fn keeps_only_decided_entries_in_order_with_new_figures() {
            let mut buf = vec![0u8; 4 * PROCESS_ENTRY_SIZE];
            entry(&mut buf, 0, 100, 5, "/host/other-tenant");
            entry(&mut buf, 1, 200, 6, "/usr/bin/python3.11-with-a-long-name");
            entry(&mut buf, 2, 300, 7, "/bin/x");
            entry(&mut buf, 3, 400, 8, "/bin/y");
            let n = filter_entries(&mut buf, 4, |pid| match pid {
                200 => Some(1024),
                400 => Some(2048),
                _ => None,
            });
            assert_eq!(n, 2);
            assert_eq!(
                read(&buf, 0),
                (
                    200,
                    1024,
                    u32::MAX,
                    "/usr/bin/python3.11-with-a-long-name".into()
                )
            );
            assert_eq!(read(&buf, 1), (400, 2048, u32::MAX, "/bin/y".into()));
        }

        #[test]
        fn count_beyond_the_buffer_is_clamped() {
            let mut buf = vec![0u8; PROCESS_ENTRY_SIZE];
            entry(&mut buf, 0, 7, 1, "a");
            assert_eq!(filter_entries(&mut buf, 1000, |_| Some(9)), 1);
            assert_eq!(read(&buf, 0).1, 9);
        }

        #[test]
        fn only_known_branches_and_sane_sizes_are_wrapped() {
            assert_eq!(process_list_slots("535.261.03"), Some([213, 214, 215]));
            assert_eq!(process_list_slots("550.54.15"), None);
            assert_eq!(process_list_slots(""), None);
            let slots = [213, 214, 215];
            assert!(table_fits(216 * 8, &slots));
            assert!(!table_fits(215 * 8, &slots));
            assert!(!table_fits(216 * 8 + 3, &slots));
            assert!(!table_fits(MAX_TABLE_BYTES + 8, &slots));
        }
    }
}
