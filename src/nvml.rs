//! NVML: the probe libvgpu uses to measure what the driver charges this process (context
//! and module overhead appear with no allocation call), and (later) NVML hooks.
//!
//! The probe calls the *real* NVML through handles from the real `dlsym`, so it is never
//! affected by our own redirection.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cuda_headers::bindings::*;
use cuda_headers::pfn;

/// Our NVML hooks and the real NVML's functions, generated from `cuda_headers::nvml_api!`
/// the same way `driver` is generated from the driver table.
macro_rules! define_nvml_surface {
    ($( $name:ident = [$hook:ident $sim:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Clone, Copy)]
        #[repr(usize)]
        enum NvmlFn { $( $name ),* }

        /// Every symbol of the table, NUL-terminated, in table order.
        const NVML_SYMBOLS: &[&CStr] = &[ $(
            match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("symbol names have no NUL"),
            }
        ),* ];

        /// The real NVML's entry points, in table order: 0 = not looked up yet,
        /// [`ABSENT`] = the library (or this symbol) is not there.
        static REAL_NVML: [AtomicUsize; NVML_SYMBOLS.len()] =
            [const { AtomicUsize::new(0) }; NVML_SYMBOLS.len()];

        struct NvmlHooks([*const c_void; NVML_SYMBOLS.len()]);
        // SAFETY: function addresses, immutable.
        unsafe impl Sync for NvmlHooks {}
        static NVML_HOOKS: NvmlHooks = NvmlHooks([ $( define_nvml_surface!(@ptr $hook $name) ),* ]);

        $( define_nvml_surface!(@export $hook $name ( $($arg : $ty),* )); )*

        /// Typed access to the real NVML (`None` when absent).
        pub mod real {
            use super::*;
            $(
                #[inline]
                pub fn $name() -> Option<pfn::$name> {
                    let p = super::real_nvml(NvmlFn::$name as usize);
                    // SAFETY: slots only ever hold the real NVML's function of this row.
                    (p != 0).then(|| unsafe { std::mem::transmute::<usize, pfn::$name>(p) })
                }
            )*
        }
    };
    (@export hook $name:ident ( $($arg:ident : $ty:ty),* )) => {
        /// Exported NVML hook (see `crate::hooks::nvml`).
        ///
        /// # Safety
        /// The NVML contract of this entry point.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> nvmlReturn_t {
            crate::ffi::guard(NVML_ERROR_UNKNOWN, || unsafe { crate::hooks::nvml::$name($($arg),*) })
        }
    };
    (@export pass $name:ident ( $($arg:ident : $ty:ty),* )) => {};
    (@ptr hook $name:ident) => { $name as *const c_void };
    (@ptr pass $name:ident) => { std::ptr::null() };
}
cuda_headers::nvml_api!(define_nvml_surface);

/// A looked-up symbol that is not there.
const ABSENT: usize = 1;

/// The real NVML library's handle (opened once: the already loaded library if any).
fn real_nvml_handle() -> Option<*mut c_void> {
    static HANDLE: OnceLock<usize> = OnceLock::new();
    let h = *HANDLE.get_or_init(|| {
        crate::preload::open_library(c"libnvidia-ml.so.1").map_or(0, |h| h as usize)
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
        .map(|h| unsafe { crate::preload::real_dlsym(h, NVML_SYMBOLS[i]) } as usize)
        .unwrap_or(0);
    slot.store(if found == 0 { ABSENT } else { found }, Ordering::Release);
    found
}

/// The real NVML's function for a symbol outside the table (e.g. its private
/// `nvmlInternalGetExportTable`), or null.
pub fn real_nvml_symbol(name: &CStr) -> *mut c_void {
    match real_nvml_handle() {
        // SAFETY: handle from dlopen, NUL-terminated name.
        Some(h) => unsafe { crate::preload::real_dlsym(h, name) },
        None => std::ptr::null_mut(),
    }
}

/// Our NVML hook for an exact symbol, if we hook it.
pub fn hook_by_symbol(symbol: &[u8]) -> Option<*const c_void> {
    NVML_SYMBOLS
        .iter()
        .zip(NVML_HOOKS.0.iter())
        .find(|(n, h)| !h.is_null() && n.to_bytes() == symbol)
        .map(|(_, &h)| h)
}

/// The real NVML, opened for measuring.
pub struct NvmlProbe {
    get_count: pfn::nvmlDeviceGetCount_v2,
    handle_by_index: pfn::nvmlDeviceGetHandleByIndex_v2,
    get_uuid: pfn::nvmlDeviceGetUUID,
    processes: pfn::nvmlDeviceGetComputeRunningProcesses_v3,
}

impl NvmlProbe {
    /// Opens and initialises the real NVML; `None` when it is absent or fails.
    pub fn open() -> Option<NvmlProbe> {
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
                    // SAFETY: buffer and its length.
                    Some(d)
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
