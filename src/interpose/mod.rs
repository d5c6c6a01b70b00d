//! Preload plumbing: our `dlsym`, the real `dlsym`, and finding the real libraries.
//!
//! Why a `dlsym` override at all: applications that `dlopen("libcuda.so.1")` and then
//! `dlsym(handle, "cuMemAlloc_v2")` search only libcuda's own scope, so our exported hook
//! would never be found. We redirect *exactly* the names we hook, and only when the symbol
//! the real `dlsym` found lives in the CUDA or NVML library; everything else, `RTLD_NEXT`
//! lookups in particular, behaves exactly as without us.
//!
//! Why a naked trampoline: `RTLD_NEXT` (and `dlsym`'s idea of "the caller") is resolved
//! from the return address. A Rust forwarding function would make libvgpu the caller.
//! The trampoline saves the arguments, asks `decide` (plain Rust, no lazy state, no
//! allocation: `std::thread::spawn` itself calls `dlsym` and must not deadlock on us),
//! and either returns the hook or *jumps* to the real `dlsym` with the caller's frame
//! untouched.

pub mod audit;
pub mod guard;

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The real `dlsym`, resolved once without recursion (never through our own export).
static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// Resolves the real `dlsym` with `dlvsym(RTLD_NEXT, "dlsym", version)`: a plain
/// `dlsym(RTLD_NEXT, "dlsym")` would bind to our own export and recurse.
fn resolve_real_dlsym() -> usize {
    let cached = REAL_DLSYM.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    let mut found = 0usize;
    for version in [c"GLIBC_2.34", c"GLIBC_2.2.5"] {
        // SAFETY: dlvsym with valid NUL-terminated strings.
        let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
        if !p.is_null() {
            found = p as usize;
            break;
        }
    }
    if found != 0 {
        REAL_DLSYM.store(found, Ordering::Release);
    }
    found
}

/// Calls the real `dlsym` (our own lookups: not subject to redirection).
///
/// # Safety
/// `handle` must be a valid handle or pseudo-handle and `name` a NUL-terminated string.
pub unsafe fn real_dlsym(handle: *mut c_void, name: &CStr) -> *mut c_void {
    let f = resolve_real_dlsym();
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlsym.
    let f: DlsymFn = unsafe { std::mem::transmute::<usize, DlsymFn>(f) };
    // SAFETY: `f` is glibc's dlsym; our caller guarantees `handle` is a (pseudo-)handle, and `name`
    // is a `&CStr`, so NUL-terminated.
    let found = unsafe { f(handle, name.as_ptr()) };
    // LD_AUDIT mode: a real library's export may point at our hook (audit::patch_exports).
    audit::unpatched(found, handle)
}

/// Which library family a redirected name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Cuda,
    Nvml,
    Hip,
    AmdSmi,
    RocmSmi,
}

impl Family {
    /// The base name the real library's file starts with.
    pub fn library_prefix(self) -> &'static [u8] {
        match self {
            Family::Cuda => b"libcuda.so",
            Family::Nvml => b"libnvidia-ml.so",
            Family::Hip => b"libamdhip64.so",
            Family::AmdSmi => b"libamd_smi.so",
            Family::RocmSmi => b"librocm_smi64.so",
        }
    }
}

/// The decision half of `dlsym`: returns our hook for `name` when the lookup must be
/// redirected, or null to let the real `dlsym` answer. Touches only atomics and
/// static tables.
///
/// # Safety
/// Called from the trampoline with `dlsym`'s own arguments.
unsafe extern "C" fn decide(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    if resolve_real_dlsym() == 0 || name.is_null() || handle == libc::RTLD_NEXT {
        return std::ptr::null_mut();
    }
    // SAFETY: dlsym's contract: name is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    let bytes = name.to_bytes();
    if !may_be_hooked(bytes) {
        return std::ptr::null_mut();
    }
    let Some((family, hook)) = crate::cuda::hook_by_symbol(bytes) else {
        return std::ptr::null_mut();
    };
    // SAFETY: handle comes from the caller of dlsym; name is valid.
    let found = unsafe { real_dlsym(handle, name) };
    if found.is_null() || std::ptr::eq(found as *const c_void, hook) {
        return std::ptr::null_mut();
    }
    if symbol_lives_in(found, family) {
        hook as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

/// Whether a symbol name has one of the prefixes of the names we hook (a cheap filter).
pub fn may_be_hooked(name: &[u8]) -> bool {
    name.starts_with(b"cu")
        || name.starts_with(b"nvml")
        || name.starts_with(b"hip")
        || name.starts_with(b"__hip")
        || name.starts_with(b"amdsmi_")
        || name.starts_with(b"rsmi_")
}

/// Whether `addr` is inside a library of `family` (by the file name `dladdr` reports).
fn symbol_lives_in(addr: *mut c_void, family: Family) -> bool {
    // SAFETY: `Dl_info` is plain C data (pointers and integers): all-zero is a valid value of it.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    base.starts_with(family.library_prefix())
}

/// Our `dlsym` export: a trampoline that keeps the caller's return address intact.
///
/// # Safety
/// Same contract as glibc's `dlsym`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        // Entry: rsp = 8 mod 16. Two pushes + 8 bytes keep the call aligned.
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {decide}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jnz 2f",
        // Not ours: tail-jump to the real dlsym as if we were never here.
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 2f",
        "jmp rax",
        "2:",
        "ret",
        decide = sym decide,
        real = sym REAL_DLSYM,
    )
}

/// Opens a library that may already be loaded: the already-loaded one wins (also when the
/// application loaded it `RTLD_LOCAL` from a custom path), else a normal search. Always in
/// the program's namespace (in LD_AUDIT mode too: `audit::dlopen_app`).
pub fn open_library(soname: &CStr) -> Option<*mut c_void> {
    loaded_library(soname).or_else(|| {
        let h = audit::dlopen_app(soname, libc::RTLD_NOW | libc::RTLD_LOCAL);
        (!h.is_null()).then_some(h)
    })
}

/// The program's copy of a library if it is loaded (`RTLD_NOLOAD`: only looks).
pub fn loaded_library(soname: &CStr) -> Option<*mut c_void> {
    let h = audit::dlopen_app(soname, libc::RTLD_NOW | libc::RTLD_NOLOAD);
    (!h.is_null()).then_some(h)
}
