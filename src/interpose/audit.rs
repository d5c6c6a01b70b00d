//! LD_AUDIT mode: the same `libvgpu.so` as an rtld-audit library (`man 7 rtld-audit`).
//!
//! HAMi's AMD device plugin injects its library with `LD_AUDIT=/usr/local/vgpu/libamvgpu.so`
//! rather than `LD_PRELOAD`. An audit library is not in the program's symbol scope: it is
//! loaded into a link-map namespace of its own, with its own copy of libc, and reaches the
//! program only through the `la_*` callbacks. So instead of interposing by symbol order:
//!
//! - `la_objopen` (every object the program loads, in any namespace but ours, before it is
//!   relocated) recognises the real vendor libraries by base name, as the preload mode's
//!   `dlsym` does (`libcuda.so*`, `libnvidia-ml.so*`, `libamdhip64.so*`, `libamd_smi.so*`,
//!   `librocm_smi64.so*`; our own file's name is never looked at), and points each export
//!   we hook at its hook in that library's own dynamic symbol table (`patch_exports`):
//!   every later binding to it — PLT, data relocations (`GLOB_DAT`: a function's address
//!   taken, `-fno-plt` code), which `la_symbind64` is never told about (measured on glibc
//!   2.36), `-z now`, `dlsym`, `dlvsym` — yields the hook, as interposition gives a
//!   preloaded library. The real addresses are kept for our own lookups (`unpatched`).
//!   It also asks for `la_symbind64` on bindings from every object (glibc calls it for a
//!   PLT binding only when the referencing object is flagged: measured) and to the real
//!   libraries, and tags the cookie: the link map's address with the object's family (or
//!   "seen, other") in the low bits.
//! - `la_symbind64`, the second line (an export whose page could not be patched): our hook
//!   for a hooked name bound to the real library of its family, for PLT bindings and
//!   `dlsym`/`dlvsym` lookups (`LA_SYMB_DLSYM`), from any object but ours. Our own lookups
//!   come from the audit namespace, whose objects `la_objopen` never sees: their cookie
//!   carries no tag (glibc leaves it 0), and they get the real function.
//! - The real libraries are the program's (the base namespace), opened with
//!   `dlmopen(LM_ID_BASE, ..)` (`dlopen_app`), never a second copy in our namespace. The
//!   process state's side of the namespace (fork handlers with the program's libc, the
//!   program's live environment) is `core::namespace`'s, told by `la_version` through the
//!   crate root (interpose knows no core).
//!
//! Both injections at once (`LD_PRELOAD` and `LD_AUDIT` naming libvgpu): `la_objopen` sees
//! the preloaded copy (an object exporting `la_symbind64` and `cuMemAlloc_v2`) before the
//! real libraries; the audit copy then stands down (one line on stderr), patches nothing and
//! answers every binding unchanged, so one ledger counts. docs/AMD.md, "LD_AUDIT mode".

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::interpose::Family;

/// The audit interface version we implement (glibc's `LAV_CURRENT` since 2.35; version 1
/// has the same callbacks with the same signatures).
const LAV_SUPPORTED: c_uint = 2;
const LA_FLG_BINDTO: c_uint = 0x01;
const LA_FLG_BINDFROM: c_uint = 0x02;
/// `la_symbind64` flags: no `la_pltenter`/`la_pltexit` for this PLT slot (we have none).
const LA_SYMB_NOPLTENTER: c_uint = 0x01;
const LA_SYMB_NOPLTEXIT: c_uint = 0x02;

/// Set by `la_version`: this copy was loaded by `LD_AUDIT`.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Another copy of libvgpu interposes in the program: this one answers every binding
/// unchanged.
static STOOD_DOWN: AtomicBool = AtomicBool::new(false);

/// Whether this copy runs as an audit library (in its own link-map namespace).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

// ---- cookies ------------------------------------------------------------------------------

/// Low bits of a cookie: which object `la_objopen` saw. A cookie is the link map's
/// address (what glibc passes to `la_objopen`), 8-aligned, with the index + 1 of the
/// object's family in the table the crate root registers (`export_audit!`), or
/// `TAG_OTHER`. 0 in the low bits: `la_objopen` never saw the object (one of the audit
/// namespace's, i.e. ours: glibc leaves their cookie 0).
const TAG_MASK: usize = 7;
const TAG_OTHER: usize = 7;

fn tag_of(family: Option<usize>) -> usize {
    match family {
        Some(i) if i + 1 < TAG_OTHER => i + 1,
        _ => TAG_OTHER,
    }
}

/// The family index a tag names, if any.
fn family_of_tag(tag: usize) -> Option<usize> {
    (1..TAG_OTHER).contains(&tag).then(|| tag - 1)
}

/// The family (index in `families`) whose real library a path names, by its base name (as
/// our `dlsym` recognises it). Families past the sixth are not recognised (no tag left).
pub fn family_of_path(families: &[Family], path: &[u8]) -> Option<usize> {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    families
        .iter()
        .take(TAG_OTHER - 1)
        .position(|f| base.starts_with(f.library_prefix))
}

/// Our hook for `name` in `family`, if we hook it.
fn hook_in(family: &Family, name: &[u8]) -> Option<*const c_void> {
    if !family.names(name) {
        return None;
    }
    (family.hook_by_symbol)(name).filter(|h| !h.is_null())
}

/// What `la_symbind64` answers, given the referencing object's tag and the hook of the
/// defining object's family for the name (if it is a real library and we hook the name):
/// the hook, or `None` for the real value. Pure: the decision, tested below.
fn redirect(ref_tag: usize, hook: Option<*const c_void>, value: usize) -> Option<*const c_void> {
    if ref_tag == 0 {
        return None; // our own lookup (the audit namespace): the real function
    }
    hook.filter(|&h| h as usize != value)
}

// ---- the callbacks ------------------------------------------------------------------------

/// The public head of glibc's `struct link_map` (`<link.h>`).
#[repr(C)]
pub struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: *mut c_void,
    l_next: *mut LinkMap,
    l_prev: *mut LinkMap,
}

/// `Elf64_Sym` (`<elf.h>`).
#[repr(C)]
pub struct Elf64Sym {
    st_name: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
    st_value: u64,
    st_size: u64,
}

/// `la_version`, the first callback: the version the dynamic linker offers; we accept it up
/// to ours.
pub fn version(offered: c_uint) -> c_uint {
    ACTIVE.store(true, Ordering::Relaxed);
    offered.min(LAV_SUPPORTED)
}

/// `la_objopen`, a new object: bindings from it are audited; bindings to it too when it is
/// a real library of one of `families`, whose hooked exports are then pointed at the
/// hooks. The cookie gets the object's tag.
///
/// # Safety
/// Called by the dynamic linker with a valid link map and cookie.
pub unsafe fn objopen(families: &[Family], map: *mut LinkMap, cookie: *mut usize) -> c_uint {
    crate::interpose::guard::guard(0, || {
        if map.is_null() || cookie.is_null() {
            return 0;
        }
        // SAFETY: the dynamic linker passes the object's link map; l_name is a NUL-terminated
        // string it owns ("" for the main program).
        let name = unsafe {
            let n = (*map).l_name;
            if n.is_null() {
                &[][..]
            } else {
                CStr::from_ptr(n).to_bytes()
            }
        };
        let family = family_of_path(families, name);
        // SAFETY: the cookie is ours to set; glibc initialises it to the link map's address.
        unsafe { *cookie = (map as usize & !TAG_MASK) | tag_of(family) };
        // SAFETY: the link map of an object the dynamic linker has just mapped.
        let tables = unsafe { DynTables::of(&*map) };
        if let Some(t) = &tables {
            if family.is_none() && is_libvgpu(families, t) {
                stand_down();
            }
        }
        if STOOD_DOWN.load(Ordering::Relaxed) {
            return 0;
        }
        match (family, tables) {
            (Some(f), Some(t)) => {
                // SAFETY: the tables of the object being opened, not yet relocated.
                unsafe { patch_exports(&*map, &t, &families[f]) };
                LA_FLG_BINDFROM | LA_FLG_BINDTO
            }
            (Some(_), None) => LA_FLG_BINDFROM | LA_FLG_BINDTO,
            (None, _) => LA_FLG_BINDFROM,
        }
    })
}

/// `la_symbind64`, a binding (PLT slot, or a `dlsym`/`dlvsym` lookup): our hook for a
/// hooked name bound to its real library, else the real value.
///
/// # Safety
/// Called by the dynamic linker with valid pointers.
pub unsafe fn symbind(
    families: &[Family],
    sym: *mut Elf64Sym,
    refcook: *mut usize,
    defcook: *mut usize,
    flags: *mut c_uint,
    symname: *const c_char,
) -> usize {
    // SAFETY: the dynamic linker's symbol record.
    let value = unsafe { (*sym).st_value } as usize;
    if !flags.is_null() {
        // SAFETY: the dynamic linker's flags word for this binding, ours to add to.
        unsafe { *flags |= LA_SYMB_NOPLTENTER | LA_SYMB_NOPLTEXIT };
    }
    crate::interpose::guard::guard(value, || {
        if STOOD_DOWN.load(Ordering::Relaxed)
            || refcook.is_null()
            || defcook.is_null()
            || symname.is_null()
        {
            return value;
        }
        // SAFETY: cookies are the dynamic linker's per-object words (tagged by la_objopen).
        let (r, d) = unsafe { (*refcook, *defcook) };
        // The common case: a binding to any other library.
        let Some(family) = family_of_tag(d & TAG_MASK).and_then(|i| families.get(i)) else {
            return value;
        };
        // SAFETY: symname is the NUL-terminated symbol name.
        let name = unsafe { CStr::from_ptr(symname) };
        redirect(r & TAG_MASK, hook_in(family, name.to_bytes()), value)
            .map_or(value, |hook| hook as usize)
    })
}

/// Generates the rtld-audit callbacks `la_version`, `la_objopen` and `la_symbind64` over a
/// table of [`Family`]s (`$families`, a static of the crate root, which knows the backends),
/// as [`export_dlsym!`](crate::export_dlsym) generates `dlsym`; `la_version` also calls
/// `$on_audit` (the process state's own audit-mode switch: interpose knows no core).
#[macro_export]
macro_rules! export_audit {
    ($families:path, on_audit = $on_audit:path) => {
        /// rtld-audit: the interface version (see `interpose::audit::version`); tells the
        /// rest of the library (`$on_audit`) that it runs as an audit library.
        #[no_mangle]
        pub extern "C" fn la_version(version: ::std::ffi::c_uint) -> ::std::ffi::c_uint {
            $on_audit();
            $crate::interpose::audit::version(version)
        }

        /// rtld-audit: a new object (see `interpose::audit::objopen`).
        ///
        /// # Safety
        /// Called by the dynamic linker.
        #[no_mangle]
        pub unsafe extern "C" fn la_objopen(
            map: *mut $crate::interpose::audit::LinkMap,
            _lmid: ::std::ffi::c_long,
            cookie: *mut usize,
        ) -> ::std::ffi::c_uint {
            // SAFETY: the dynamic linker's arguments, unchanged.
            unsafe { $crate::interpose::audit::objopen(&$families, map, cookie) }
        }

        /// rtld-audit: a binding (see `interpose::audit::symbind`).
        ///
        /// # Safety
        /// Called by the dynamic linker.
        #[no_mangle]
        pub unsafe extern "C" fn la_symbind64(
            sym: *mut $crate::interpose::audit::Elf64Sym,
            _ndx: ::std::ffi::c_uint,
            refcook: *mut usize,
            defcook: *mut usize,
            flags: *mut ::std::ffi::c_uint,
            symname: *const ::std::ffi::c_char,
        ) -> usize {
            // SAFETY: the dynamic linker's arguments, unchanged.
            unsafe {
                $crate::interpose::audit::symbind(&$families, sym, refcook, defcook, flags, symname)
            }
        }
    };
}

fn stand_down() {
    if !STOOD_DOWN.swap(true, Ordering::Relaxed) {
        crate::log::write_line(format_args!(
            "libvgpu is both an LD_AUDIT library and loaded in the program (LD_PRELOAD or \
             /etc/ld.so.preload): the LD_AUDIT copy stands down, the program's copy enforces"
        ));
    }
}

// ---- the real libraries' exports ------------------------------------------------------------

/// `Elf64_Dyn` (`<elf.h>`).
#[repr(C)]
struct Elf64Dyn {
    d_tag: i64,
    d_val: u64,
}

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

/// An object's dynamic symbol table, read through its link map (mapped, relocated or not).
struct DynTables {
    symtab: *mut Elf64Sym,
    strtab: *const c_char,
    count: usize,
    gnu_hash: *const u32,
}

impl DynTables {
    /// # Safety
    /// `map` is the link map of a mapped object.
    unsafe fn of(map: &LinkMap) -> Option<DynTables> {
        let (mut symtab, mut strtab, mut gnu, mut sysv) = (0usize, 0usize, 0usize, 0usize);
        let mut d = map.l_ld as *const Elf64Dyn;
        if d.is_null() {
            return None;
        }
        loop {
            // SAFETY: the dynamic section ends with DT_NULL.
            let (tag, val) = unsafe { ((*d).d_tag, (*d).d_val as usize) };
            if tag == DT_NULL {
                break;
            }
            // ld.so relocates these in place for libraries; the vDSO's stay relative.
            let p = if val < map.l_addr {
                val + map.l_addr
            } else {
                val
            };
            match tag {
                DT_SYMTAB => symtab = p,
                DT_STRTAB => strtab = p,
                DT_GNU_HASH => gnu = p,
                DT_HASH => sysv = p,
                _ => {}
            }
            // SAFETY: still inside the dynamic section (not past DT_NULL).
            d = unsafe { d.add(1) };
        }
        if symtab == 0 || strtab == 0 {
            return None;
        }
        let count = if gnu != 0 {
            // SAFETY: a GNU hash section: header, bloom words, buckets, chains.
            unsafe { gnu_symbol_count(gnu as *const u32) }
        } else if sysv != 0 {
            // SAFETY: a SysV hash section: nbucket, nchain (= the number of symbols).
            unsafe { *(sysv as *const u32).add(1) as usize }
        } else {
            return None;
        };
        Some(DynTables {
            symtab: symtab as *mut Elf64Sym,
            strtab: strtab as *const c_char,
            count,
            gnu_hash: gnu as *const u32,
        })
    }

    /// The name of symbol `i` (< count).
    fn name(&self, i: usize) -> &CStr {
        // SAFETY: i < count; st_name indexes the string table.
        unsafe { CStr::from_ptr(self.strtab.add((*self.symtab.add(i)).st_name as usize)) }
    }

    /// Whether the object defines `name` (any version): through its GNU hash table when
    /// it has one (every object here is looked at: keep it cheap), else by a scan.
    fn defines(&self, name: &CStr) -> bool {
        let defined = |i: usize| {
            // SAFETY: i < count.
            let sym = unsafe { &*self.symtab.add(i) };
            sym.st_shndx != 0 && sym.st_value != 0 && self.name(i) == name
        };
        if self.gnu_hash.is_null() {
            return (0..self.count).any(defined);
        }
        let h = name.to_bytes().iter().fold(5381u32, |h, &c| {
            h.wrapping_mul(33).wrapping_add(u32::from(c))
        });
        // SAFETY: a GNU hash section (header, bloom, buckets, chains), chains ending with
        // their low bit set, within count.
        unsafe {
            let g = self.gnu_hash;
            let (nbuckets, symoffset, bloom_size) =
                (*g as usize, *g.add(1) as usize, *g.add(2) as usize);
            if nbuckets == 0 {
                return false;
            }
            let buckets = g.add(4 + 2 * bloom_size);
            let chains = buckets.add(nbuckets);
            let mut i = *buckets.add(h as usize % nbuckets) as usize;
            if i < symoffset {
                return false;
            }
            loop {
                let c = *chains.add(i - symoffset);
                if c | 1 == h | 1 && defined(i) {
                    return true;
                }
                if c & 1 != 0 || i + 1 >= self.count {
                    return false;
                }
                i += 1;
            }
        }
    }
}

/// The number of symbols a GNU hash section covers: past the last bucket's chain.
///
/// # Safety
/// `h` points to a GNU hash section.
unsafe fn gnu_symbol_count(h: *const u32) -> usize {
    // SAFETY: the caller's promise: the header, then bloom (u64 words), buckets, chains.
    unsafe {
        let (nbuckets, symoffset, bloom_size) =
            (*h as usize, *h.add(1) as usize, *h.add(2) as usize);
        let buckets = h.add(4 + 2 * bloom_size);
        let chains = buckets.add(nbuckets);
        let last = (0..nbuckets)
            .map(|b| *buckets.add(b) as usize)
            .max()
            .unwrap_or(0);
        if last < symoffset {
            return symoffset;
        }
        let mut i = last;
        while *chains.add(i - symoffset) & 1 == 0 {
            i += 1;
        }
        i + 1
    }
}

/// Whether an object is a copy of libvgpu (the core or the shipped loader): it exports the
/// audit callbacks and a name one of `families` hooks. The scan of its symbols runs only
/// for an object exporting `la_symbind64` (an audit library: rare).
fn is_libvgpu(families: &[Family], t: &DynTables) -> bool {
    t.defines(c"la_symbind64")
        && (0..t.count).any(|i| {
            // SAFETY: i < count.
            let sym = unsafe { &*t.symtab.add(i) };
            let name = t.name(i).to_bytes();
            sym.st_shndx != 0 && families.iter().any(|f| hook_in(f, name).is_some())
        })
}

/// Every export `patch_exports` pointed at a hook: `(hook, real function, the library's
/// link map)`. Written under the dynamic linker's lock (one `la_objopen` at a time), read
/// lock-free: an entry is complete before the length covers it.
const PATCHED_MAX: usize = 2048;
static PATCHED: [[AtomicUsize; 3]; PATCHED_MAX] =
    [const { [const { AtomicUsize::new(0) }; 3] }; PATCHED_MAX];
static PATCHED_LEN: AtomicUsize = AtomicUsize::new(0);

fn record_patch(hook: usize, real: usize, map: usize) -> bool {
    let slot = PATCHED_LEN.load(Ordering::Acquire);
    if slot >= PATCHED_MAX {
        return false;
    }
    for (field, v) in PATCHED[slot].iter().zip([hook, real, map]) {
        field.store(v, Ordering::Release);
    }
    PATCHED_LEN.store(slot + 1, Ordering::Release);
    true
}

/// The real function behind `found`, the answer of a lookup on `handle` (a real library):
/// the address `patch_exports` replaced if `found` is one of our hooks — that library's
/// when it is one of several patched, else the latest — or `found` itself. Newest first:
/// a library closed and opened again (its link map's address reused) was patched again.
pub fn unpatched(found: *mut c_void, handle: *mut c_void) -> *mut c_void {
    if !active() || found.is_null() {
        return found;
    }
    let n = PATCHED_LEN.load(Ordering::Acquire).min(PATCHED_MAX);
    let mut latest = None;
    for [hook, real, map] in PATCHED[..n].iter().rev() {
        if hook.load(Ordering::Acquire) != found as usize {
            continue;
        }
        let real = real.load(Ordering::Acquire) as *mut c_void;
        if map.load(Ordering::Acquire) == handle as usize {
            return real; // a glibc handle is the object's link map
        }
        latest.get_or_insert(real);
    }
    latest.unwrap_or(found)
}

/// Points every hooked export of a real library at its hook, in the library's own symbol
/// table, before anything is bound to it: then every binding to it — PLT, data relocations
/// (`GLOB_DAT`, a function's address taken or `-fno-plt` code) which `la_symbind64` never
/// sees, `-z now` on any glibc, `dlsym`, `dlvsym` — yields the hook, as symbol
/// interposition does for a preloaded library. The real addresses are kept (`unpatched`)
/// for our own lookups. An export whose page cannot be made writable stays as it was
/// (`la_symbind64` still redirects its PLT and `dlsym` bindings).
///
/// # Safety
/// `map`/`t` are the link map and tables of an object being opened.
unsafe fn patch_exports(map: &LinkMap, t: &DynTables, family: &Family) {
    let Some(segments) = SegmentProt::of(map) else {
        return;
    };
    // The page made writable, and the protection it gets back.
    let mut open: Option<(usize, c_int)> = None;
    let close = |open: &mut Option<(usize, c_int)>| {
        if let Some((page, prot)) = open.take() {
            // SAFETY: the page we made writable, given back its segment's protection.
            unsafe { libc::mprotect(page as *mut c_void, PAGE, prot) };
        }
    };
    for i in 0..t.count {
        // SAFETY: i < count.
        let sym = unsafe { &mut *t.symtab.add(i) };
        const STT_FUNC: u8 = 2;
        if sym.st_shndx == 0 || sym.st_value == 0 || sym.st_info & 0xf != STT_FUNC {
            continue;
        }
        let Some(hook) = hook_in(family, t.name(i).to_bytes()) else {
            continue;
        };
        let real = map.l_addr.wrapping_add(sym.st_value as usize);
        if hook as usize == real {
            continue;
        }
        // st_value is 8-aligned (offset 8 of a 24-byte entry): never across two pages.
        let at = &mut sym.st_value as *mut u64 as usize;
        let page = at & !(PAGE - 1);
        if open.is_none_or(|(p, _)| p != page) {
            close(&mut open);
            let Some(prot) = segments.at(at) else {
                continue;
            };
            // SAFETY: a page of the library's private mapping (the file is not touched).
            if unsafe { libc::mprotect(page as *mut c_void, PAGE, prot | libc::PROT_WRITE) } != 0 {
                continue;
            }
            open = Some((page, prot));
        }
        if !record_patch(hook as usize, real, map as *const LinkMap as usize) {
            break;
        }
        // SAFETY: the entry's st_value, on the page made writable above. l_addr + st_value
        // (wrapping, as the dynamic linker computes it) is then the hook.
        unsafe {
            std::ptr::write_volatile(
                &mut sym.st_value,
                (hook as usize).wrapping_sub(map.l_addr) as u64,
            )
        };
    }
    close(&mut open);
}

const PAGE: usize = 4096;

/// The load segments of a shared object, from its program headers (the ELF header is
/// mapped at the load address of every shared object).
struct SegmentProt {
    base: usize,
    phdrs: *const libc::Elf64_Phdr,
    count: usize,
}

impl SegmentProt {
    fn of(map: &LinkMap) -> Option<SegmentProt> {
        let base = map.l_addr;
        if base == 0 {
            return None; // a non-PIE program, never a vendor library
        }
        // SAFETY: a shared object's first load segment maps its ELF header at l_addr.
        unsafe {
            let eh = &*(base as *const libc::Elf64_Ehdr);
            if eh.e_ident[..4] != *b"\x7fELF"
                || eh.e_phentsize as usize != std::mem::size_of::<libc::Elf64_Phdr>()
            {
                return None;
            }
            Some(SegmentProt {
                base,
                phdrs: (base + eh.e_phoff as usize) as *const libc::Elf64_Phdr,
                count: eh.e_phnum as usize,
            })
        }
    }

    /// The protection of the load segment holding `addr`.
    fn at(&self, addr: usize) -> Option<c_int> {
        (0..self.count).find_map(|i| {
            // SAFETY: i < e_phnum, the headers mapped with the ELF header.
            let ph = unsafe { &*self.phdrs.add(i) };
            let start = self.base + ph.p_vaddr as usize;
            (ph.p_type == libc::PT_LOAD && addr >= start && addr < start + ph.p_memsz as usize)
                .then(|| {
                    let mut prot = 0;
                    if ph.p_flags & libc::PF_R != 0 {
                        prot |= libc::PROT_READ;
                    }
                    if ph.p_flags & libc::PF_W != 0 {
                        prot |= libc::PROT_WRITE;
                    }
                    if ph.p_flags & libc::PF_X != 0 {
                        prot |= libc::PROT_EXEC;
                    }
                    prot
                })
        })
    }
}

// ---- the program's namespace --------------------------------------------------------------

/// `dlopen` in the program's namespace: the real libraries are the program's, and in audit
/// mode a plain `dlopen` would load a second copy into ours.
pub fn dlopen_app(name: &CStr, flags: c_int) -> *mut c_void {
    if active() {
        // SAFETY: dlmopen with a valid name; LM_ID_BASE is the program's namespace.
        unsafe { libc::dlmopen(libc::LM_ID_BASE, name.as_ptr(), flags) }
    } else {
        // SAFETY: dlopen with a valid name.
        unsafe { libc::dlopen(name.as_ptr(), flags) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: *const c_void = 0x1000 as *const c_void;

    /// libc's link map, as the dynamic linker keeps it (a glibc handle is the link map).
    fn libc_map() -> &'static LinkMap {
        // SAFETY: dlopen with a valid name; RTLD_NOLOAD only looks (libc is loaded).
        let h = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        assert!(!h.is_null());
        // SAFETY: glibc's dlopen handle is the object's struct link_map, which starts with
        // the public fields LinkMap declares; libc is never unloaded.
        unsafe { &*(h as *const LinkMap) }
    }

    #[test]
    fn the_dynamic_tables_of_a_loaded_library_find_its_exports() {
        // SAFETY: libc's link map.
        let t = unsafe { DynTables::of(libc_map()) }.expect("libc's dynamic tables");
        assert!(t.count > 1000, "libc has thousands of symbols: {}", t.count);
        assert!(!t.gnu_hash.is_null());
        for present in [c"malloc", c"dlsym", c"__register_atfork"] {
            assert!(t.defines(present), "{present:?}");
            // The hash lookup agrees with a scan of the whole table.
            assert!((0..t.count).any(|i| t.name(i) == present), "{present:?}");
        }
        for absent in [
            c"cuMemAlloc_v2",
            c"la_symbind64",
            c"no_such_symbol_anywhere",
        ] {
            assert!(!t.defines(absent), "{absent:?}");
            assert!(!(0..t.count).any(|i| t.name(i) == absent), "{absent:?}");
        }
        assert!(!is_libvgpu(&FAMILIES, &t));
    }

    #[test]
    fn segment_protections_come_from_the_program_headers() {
        let map = libc_map();
        // SAFETY: libc's link map.
        let t = unsafe { DynTables::of(map) }.expect("libc's dynamic tables");
        let seg = SegmentProt::of(map).expect("libc's program headers");
        assert_eq!(
            seg.at(t.symtab as usize),
            Some(libc::PROT_READ),
            "dynsym is read-only"
        );
        let malloc = libc::malloc as *const () as usize;
        assert_eq!(
            seg.at(malloc),
            Some(libc::PROT_READ | libc::PROT_EXEC),
            "text"
        );
        assert_eq!(seg.at(1), None);
    }

    fn hooks_hip_malloc(name: &[u8]) -> Option<*const c_void> {
        (name == b"hipMalloc").then_some(HOOK)
    }

    /// Two families as backends describe theirs (the names and files are examples).
    static FAMILIES: [Family; 2] = [
        Family {
            symbol_prefixes: &[b"cu"],
            library_prefix: b"libcuda.so",
            hook_by_symbol: |_| None,
        },
        Family {
            symbol_prefixes: &[b"hip", b"__hip"],
            library_prefix: b"libamdhip64.so",
            hook_by_symbol: hooks_hip_malloc,
        },
    ];

    #[test]
    fn real_libraries_are_recognised_by_base_name_only() {
        let f = |p: &[u8]| family_of_path(&FAMILIES, p);
        assert_eq!(f(b"/opt/rocm/lib/libamdhip64.so.6"), Some(1));
        assert_eq!(f(b"libamdhip64.so"), Some(1));
        assert_eq!(f(b"libcuda.so.1"), Some(0));
        assert_eq!(f(b"/usr/local/vgpu/libamvgpu.so"), None);
        assert_eq!(f(b"/libcuda.so.1/libc.so.6"), None);
        assert_eq!(f(b""), None);
    }

    #[test]
    fn tags_round_trip_and_zero_is_unseen() {
        for i in 0..TAG_OTHER - 1 {
            assert_eq!(family_of_tag(tag_of(Some(i))), Some(i));
        }
        // A seventh family has no tag left: seen, not recognised.
        assert_eq!(tag_of(Some(TAG_OTHER - 1)), TAG_OTHER);
        assert_eq!(family_of_tag(tag_of(None)), None);
        assert_eq!(family_of_tag(0), None);
        const { assert!(TAG_OTHER <= TAG_MASK) };
    }

    #[test]
    fn a_hooked_name_is_looked_up_in_its_own_family_only() {
        let (cuda, hip) = (&FAMILIES[0], &FAMILIES[1]);
        assert_eq!(hook_in(hip, b"hipMalloc"), Some(HOOK));
        assert_eq!(hook_in(hip, b"hipFree"), None, "not hooked");
        assert_eq!(hook_in(cuda, b"hipMalloc"), None, "another family's prefix");
    }

    #[test]
    fn only_the_programs_bindings_are_redirected_and_only_to_a_hook() {
        let hip = tag_of(Some(1));
        assert_eq!(redirect(TAG_OTHER, Some(HOOK), 0x2000), Some(HOOK));
        // From the real library itself (its own PLT), as the preload mode's interposition.
        assert_eq!(redirect(hip, Some(HOOK), 0x2000), Some(HOOK));
        // Our own lookups (audit namespace: no tag) get the real function.
        assert_eq!(redirect(0, Some(HOOK), 0x2000), None);
        // Not hooked, or already the hook.
        assert_eq!(redirect(TAG_OTHER, None, 0x2000), None);
        assert_eq!(redirect(TAG_OTHER, Some(HOOK), HOOK as usize), None);
    }
}
