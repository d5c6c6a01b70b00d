//! Which link-map namespace libvgpu runs in, and what that changes for the process state.
//!
//! Preloaded (`LD_PRELOAD`, `/etc/ld.so.preload`), libvgpu shares the program's libc. As an
//! rtld-audit library (`LD_AUDIT`: docs/AMD.md, "LD_AUDIT mode") it runs in a namespace of
//! its own with its own libc copy, whose `pthread_atfork` list the program's `fork` never
//! runs and whose environment is a copy of the process's at start (both measured). The crate
//! root's `la_version` calls [`set_audit_mode`]; the runtime then registers its fork
//! handlers and its at-exit release with the program's libc ([`register_atfork`],
//! [`register_at_exit`]), creates its watcher thread with the program's libc
//! ([`spawn_program_thread`]) and reads the program's live environment
//! ([`adopt_program_environ`]).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

static AUDIT: AtomicBool = AtomicBool::new(false);

/// Called by `la_version`: this copy of libvgpu is an audit library.
pub fn set_audit_mode() {
    AUDIT.store(true, Ordering::Relaxed);
}

/// Whether this copy runs as an audit library (in a link-map namespace of its own).
pub fn audit_mode() -> bool {
    AUDIT.load(Ordering::Relaxed)
}

/// `dlmopen` in the program's namespace (`LM_ID_BASE`), `RTLD_NOLOAD`: only looks. A null
/// `name` is the program's main object (its global scope).
fn program_object(name: Option<&CStr>) -> *mut c_void {
    let name = name.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: dlmopen with a valid name or null (the namespace's main object).
    unsafe { libc::dlmopen(libc::LM_ID_BASE, name, libc::RTLD_NOW | libc::RTLD_NOLOAD) }
}

/// A symbol of the program's namespace (`handle` from `program_object`). Not a hooked name:
/// no lookup we redirect.
fn program_symbol(handle: *mut c_void, name: &CStr) -> *mut c_void {
    if handle.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a handle from dlmopen, a NUL-terminated name.
    unsafe { libc::dlsym(handle, name.as_ptr()) }
}

/// A fork handler (`pthread_atfork`'s).
pub type ForkHandler = Option<unsafe extern "C" fn()>;

/// Registers fork handlers where the program's `fork` runs them: in audit mode with the
/// program's libc (`__register_atfork`, what `pthread_atfork` calls; a null DSO handle,
/// never unregistered: libvgpu is never unloaded). Returns false when not in audit mode
/// (the caller uses `pthread_atfork`) or when that failed (logged).
pub fn register_atfork(prepare: ForkHandler, parent: ForkHandler, child: ForkHandler) -> bool {
    if !audit_mode() {
        return false;
    }
    type RegisterAtfork =
        unsafe extern "C" fn(ForkHandler, ForkHandler, ForkHandler, *mut c_void) -> c_int;
    let f = program_symbol(program_object(Some(c"libc.so.6")), c"__register_atfork");
    if f.is_null() {
        crate::vlog!(
            crate::log::WARN,
            "LD_AUDIT mode: the program's __register_atfork not found: a forked child keeps \
             the parent's ledger"
        );
        return false;
    }
    // SAFETY: glibc's __register_atfork(prepare, parent, child, dso_handle).
    let f: RegisterAtfork = unsafe { std::mem::transmute::<*mut c_void, RegisterAtfork>(f) };
    // SAFETY: plain extern "C" handlers, a null DSO handle.
    unsafe { f(prepare, parent, child, std::ptr::null_mut()) == 0 }
}

/// Registers an at-exit handler where the program's `exit` runs it: in audit mode with the
/// program's libc (`__cxa_atexit`, a null DSO handle: never unregistered). Our libc's list
/// runs only through our own destructors' `__cxa_finalize`, which the shipped core (linked
/// by zig) does not call: its region slot stayed behind at exit (measured). Returns false
/// when not in audit mode (the caller uses `atexit`) or when that failed (logged).
pub fn register_at_exit(handler: extern "C" fn(*mut c_void)) -> bool {
    if !audit_mode() {
        return false;
    }
    type CxaAtexit =
        unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, *mut c_void) -> c_int;
    let f = program_symbol(program_object(Some(c"libc.so.6")), c"__cxa_atexit");
    if f.is_null() {
        crate::vlog!(
            crate::log::WARN,
            "LD_AUDIT mode: the program's __cxa_atexit not found: the region slot is reclaimed \
             by the container's watchers, not at exit"
        );
        return false;
    }
    // SAFETY: glibc's __cxa_atexit(func, arg, dso_handle).
    let f: CxaAtexit = unsafe { std::mem::transmute::<*mut c_void, CxaAtexit>(f) };
    // SAFETY: a plain extern "C" handler, no argument, a null DSO handle.
    unsafe { f(handler, std::ptr::null_mut(), std::ptr::null_mut()) == 0 }
}

/// In audit mode, makes our libc read the program's environment: a variable the program
/// sets after start (`setenv`, Python's `os.environ[..] = ..`) lives in the program's
/// array only. Called before the environment contract is read (the runtime's first use);
/// libvgpu never writes the environment. The program's `environ` is found in its global
/// scope: an executable that names it holds the live copy (a copy relocation), else the
/// program's libc does (measured).
pub fn adopt_program_environ() {
    if !audit_mode() {
        return;
    }
    extern "C" {
        static mut environ: *mut *mut c_char;
    }
    let var = program_symbol(program_object(None), c"environ") as *const *mut *mut c_char;
    if var.is_null() {
        return;
    }
    // SAFETY: `var` is the program's `char **environ`; ours is replaced by the same pointer
    // (read-only use: nothing in libvgpu sets a variable).
    unsafe {
        let live = *var;
        if !live.is_null() {
            environ = live;
        }
    }
}

/// A thread's start routine (`pthread_create`'s).
pub type ThreadStart = extern "C" fn(*mut c_void) -> *mut c_void;

/// In audit mode, starts a detached thread with the **program's** `pthread_create`.
/// Returns `None` when not in audit mode or when the program has no `pthread_create` in
/// its scope (glibc before 2.34 without libpthread: the caller uses `std::thread`), else
/// whether the thread started.
///
/// Why: a libc learns that the process is multi-threaded only from its own
/// `pthread_create`. A thread our libc created is unknown to the program's: its
/// `__libc_single_threaded` stayed 1 (measured: a HIP client with our watcher running), so
/// its `malloc` took no arena lock and its stdio no stream lock, while our watcher calls
/// into the program's namespace (the vendors' utilisation and process queries, `dlmopen`,
/// whose allocations are the program's `malloc`) as the program's own thread calls it:
/// the heap was corrupted under load (SIGSEGV in a HIP client, nvidia-smi's "malloc
/// assertion failure in sysmalloc"). Created by the program's libc, the thread is known to
/// it (and to its `setxid` signal handler); our libc, a secondary namespace's, never
/// assumes a single thread (`__libc_early_init`). The stack is `stack_size` plus what the
/// program's libc takes from it for static TLS (`__pthread_get_minstack`, as Rust's std).
///
/// # Safety
/// `start` must be sound to run on a new thread with `arg`, and `arg` must stay valid for
/// that thread's whole life.
pub unsafe fn spawn_program_thread(
    start: ThreadStart,
    arg: *mut c_void,
    stack_size: usize,
) -> Option<bool> {
    if !audit_mode() {
        return None;
    }
    type PthreadCreate = unsafe extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        ThreadStart,
        *mut c_void,
    ) -> c_int;
    type GetMinstack = unsafe extern "C" fn(*const libc::pthread_attr_t) -> usize;
    // The program's global scope: libc.so.6 since glibc 2.34, libpthread.so.0 before.
    let scope = program_object(None);
    let create = program_symbol(scope, c"pthread_create");
    if create.is_null() {
        // Older glibc, a program without libpthread: its libc has no threads to know of.
        crate::vlog!(
            crate::log::DEBUG,
            "LD_AUDIT mode: the program has no pthread_create; the watcher is our libc's"
        );
        return None;
    }
    // SAFETY: glibc's pthread_create(thread, attr, start, arg).
    let create: PthreadCreate =
        unsafe { std::mem::transmute::<*mut c_void, PthreadCreate>(create) };
    let minstack = program_symbol(scope, c"__pthread_get_minstack");
    // SAFETY: a zeroed pthread_attr_t is initialised by pthread_attr_init before any use;
    // the attribute functions only write that caller-owned struct (the same glibc build
    // as the program's: one layout). The thread gets `arg`, which the caller keeps alive.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return Some(false);
        }
        let tls = if minstack.is_null() {
            libc::PTHREAD_STACK_MIN
        } else {
            std::mem::transmute::<*mut c_void, GetMinstack>(minstack)(&attr)
        };
        let page = 4096;
        let size = stack_size.saturating_add(tls).div_ceil(page) * page;
        let mut ok = libc::pthread_attr_setstacksize(&mut attr, size) == 0
            && libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED) == 0;
        if ok {
            let mut thread: libc::pthread_t = 0;
            ok = create(&mut thread, &attr, start, arg) == 0;
        }
        libc::pthread_attr_destroy(&mut attr);
        Some(ok)
    }
}
