//! The interposition layer: our `dlsym`, the real `dlsym`, the registry of preloadable
//! library families, finding the real libraries, and the export guard ([`guard`]). It knows
//! no vendor and no policy: each backend describes its family in a [`Family`] (symbol
//! prefixes, the real library's file name, its hook lookup), and the crate root hands the
//! table of them to [`export_dlsym!`](crate::export_dlsym), which generates the
//! exported `dlsym` over it.
//!
//! Why a `dlsym` override at all: applications that `dlopen("libcuda.so.1")` and then
//! `dlsym(handle, "cuMemAlloc_v2")` search only libcuda's own scope, so our exported hook
//! would never be found. We redirect *exactly* the names we hook, and only when the symbol
//! the real `dlsym` found lives in the library of the name's family; everything else,
//! `RTLD_NEXT` lookups in particular, behaves exactly as without us.
//!
//! Why a naked trampoline: `RTLD_NEXT` (and `dlsym`'s idea of "the caller") is resolved
//! from the return address. A Rust forwarding function would make libvgpu the caller.
//! The trampoline saves the arguments, asks `decide` (plain Rust, no lazy state, no
//! allocation: `std::thread::spawn` itself calls `dlsym` and must not deadlock on us),
//! and either returns the hook or *jumps* to the real `dlsym` with the caller's frame
//! untouched.

pub mod audit;
pub mod guard;
pub mod surface;

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The real `dlsym`, resolved once without recursion (never through our own export). Public
/// for the trampoline [`export_dlsym!`](crate::export_dlsym) generates.
pub static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

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

/// Looks each of `symbols` up on `handle` with the real `dlsym` and stores what is found,
/// when `accept(slot, address)` agrees, in the matching slot of `slots` (a backend's
/// `REAL` table). A name too long for the stack buffer is skipped; nothing allocates (it
/// runs inside an application's first call).
///
/// # Safety
/// `handle` must come from `dlopen`.
pub unsafe fn fill_real_slots<'a>(
    handle: *mut c_void,
    slots: &[AtomicUsize],
    symbols: impl IntoIterator<Item = &'a str>,
    accept: impl Fn(&AtomicUsize, *mut c_void) -> bool,
) {
    let mut name = [0u8; 96];
    for (slot, symbol) in slots.iter().zip(symbols) {
        let bytes = symbol.as_bytes();
        if bytes.len() >= name.len() {
            continue;
        }
        name[..bytes.len()].copy_from_slice(bytes);
        name[bytes.len()] = 0;
        let Ok(cname) = CStr::from_bytes_with_nul(&name[..=bytes.len()]) else {
            continue;
        };
        // SAFETY: our caller's handle from dlopen and a NUL-terminated name.
        let p = unsafe { real_dlsym(handle, cname) };
        if !p.is_null() && accept(slot, p) {
            slot.store(p as usize, Ordering::Release);
        }
    }
}

/// A family of preloadable libraries (libcuda, libnvidia-ml, libamdhip64, the SMI
/// libraries), as a backend describes it for the `dlsym` redirection. Static data and a
/// function over static tables: the decision must not allocate or take locks.
pub struct Family {
    /// Every hooked name of the family starts with one of these (the cheap first test).
    pub symbol_prefixes: &'static [&'static [u8]],
    /// The start of the real library's file name (`libcuda.so`): a lookup is redirected
    /// only when the real `dlsym` found the name in such a file.
    pub library_prefix: &'static [u8],
    /// Our hook for an exact symbol name of the family, if we hook it.
    pub hook_by_symbol: fn(&[u8]) -> Option<*const c_void>,
}

impl Family {
    fn names(&self, symbol: &[u8]) -> bool {
        self.symbol_prefixes.iter().any(|p| symbol.starts_with(p))
    }
}

/// The decision half of `dlsym` over `families`: returns our hook for `name` when the
/// lookup must be redirected, or null to let the real `dlsym` answer. Touches only atomics
/// and static tables.
///
/// # Safety
/// Called from the trampoline with `dlsym`'s own arguments.
pub unsafe fn decide(families: &[Family], handle: *mut c_void, name: *const c_char) -> *mut c_void {
    if resolve_real_dlsym() == 0 || name.is_null() || handle == libc::RTLD_NEXT {
        return std::ptr::null_mut();
    }
    // SAFETY: dlsym's contract: name is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    let bytes = name.to_bytes();
    let Some((family, hook)) = families
        .iter()
        .filter(|f| f.names(bytes))
        .find_map(|f| (f.hook_by_symbol)(bytes).map(|h| (f, h)))
    else {
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

/// Whether `addr` is inside a library of `family` (by the file name `dladdr` reports).
fn symbol_lives_in(addr: *mut c_void, family: &Family) -> bool {
    // SAFETY: `Dl_info` is plain C data (pointers and integers): all-zero is a valid value of it.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    base.starts_with(family.library_prefix)
}

/// Generates our `dlsym` export over a table of [`Family`]s (`$families`, a static of
/// the crate root, which knows the backends): a trampoline that keeps the caller's return
/// address intact.
#[macro_export]
macro_rules! export_dlsym {
    ($families:path) => {
        /// The decision over the crate's families (see `interpose::decide`).
        ///
        /// # Safety
        /// Called from the trampoline with `dlsym`'s own arguments.
        unsafe extern "C" fn vgpu_dlsym_decide(
            handle: *mut ::std::ffi::c_void,
            name: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: our caller (the trampoline) passes dlsym's own arguments.
            unsafe { $crate::interpose::decide(&$families, handle, name) }
        }

        /// Our `dlsym` export: a trampoline that keeps the caller's return address intact.
        ///
        /// # Safety
        /// Same contract as glibc's `dlsym`.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn dlsym(
            handle: *mut ::std::ffi::c_void,
            symbol: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            ::core::arch::naked_asm!(
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
                decide = sym vgpu_dlsym_decide,
                real = sym $crate::interpose::REAL_DLSYM,
            )
        }
    };
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
