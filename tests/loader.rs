//! The shipped artifact's two halves (docs/RELEASE.md): `target/release-glibc2.17/libvgpu.so`
//! is a small loader with the core embedded, brought in on the first CUDA/NVML call. Tested
//! through real processes preloading the artifact itself:
//! * the memory cap holds in every client style (linked, dlopen+dlsym, cuGetProcAddress),
//!   and lookups answer the same hooks, named `libvgpu.so`, as the plain build does;
//! * a process that never uses the GPU maps the loader and nothing else of ours: no core, no
//!   libdl/libpthread brought in, and no output.
//!
//! Under CI the artifact must exist (scripts/build-release.sh runs first); elsewhere a
//! missing artifact is a skip note.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use testkit::{in_ci, run_default, target_profile_dir};

fn shipped() -> Option<PathBuf> {
    let mut dir = target_profile_dir();
    dir.pop();
    let lib = dir.join("release-glibc2.17").join("libvgpu.so");
    if lib.exists() {
        return Some(lib);
    }
    assert!(
        !in_ci(),
        "{} missing: under CI scripts/build-release.sh runs before the tests",
        lib.display()
    );
    eprintln!(
        "SKIP: {} not built (scripts/build-release.sh)",
        lib.display()
    );
    None
}

#[test]
fn shipped_loader_enforces_the_cap_in_every_client_style() {
    let Some(lib) = shipped() else { return };
    for style in [
        Style::Linked,
        Style::Dlopen,
        Style::ProcAddr(0),
        Style::ProcAddr(2),
    ] {
        let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
        let mut c = command(&sim, style, true);
        c.env("LD_PRELOAD", &lib);
        let out = run_default(c.args(["cap-fill", &(100 * MIB).to_string()]));
        out.assert_success(&format!("{style:?} under the shipped loader"));
        let kv = out.kv();
        let why = out.describe();
        let ctx = 64 * MIB;
        assert_eq!(kv.u64("total"), GIB, "{style:?}: the slice\n{why}");
        assert_eq!(kv.u64("allocated"), GIB - ctx, "{style:?}\n{why}");
        assert_eq!(kv.i64("one_more_rc"), 2, "{style:?}: one byte over\n{why}");
        assert_eq!(kv.u64("free_end"), GIB - ctx, "{style:?}\n{why}");
    }
}

#[test]
fn shipped_loader_answers_lookups_with_its_own_exports() {
    let Some(lib) = shipped() else { return };
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let mut c = command(&sim, Style::Linked, true);
    c.env("LD_PRELOAD", &lib);
    let out = run_default(c.arg("cap-lookups"));
    out.assert_success("cap-lookups under the shipped loader");
    let kv = out.kv();
    let why = out.describe();
    assert_eq!(kv.str("dlsym_handle.cuMemAlloc_v2"), "libvgpu.so", "{why}");
    assert_eq!(
        kv.str("dlsym_handle.cuMemcpyHtoD_v2"),
        "libcuda.so.1",
        "{why}"
    );
    assert_eq!(kv.i64("rtld_next_matches_default"), 1, "{why}");
    assert_eq!(kv.i64("rtld_next_malloc_is_libc"), 1, "{why}");
    assert_eq!(kv.i64("unknown_symbol_null"), 1, "{why}");
    assert_eq!(
        kv.str("gpa.cuLaunchKernel.12080.2"),
        "libvgpu.so:cuLaunchKernel_ptsz:0:0",
        "{why}"
    );
    assert_eq!(
        kv.str("gpa.cuMemAlloc.12080.0"),
        "libvgpu.so:cuMemAlloc_v2:0:0",
        "{why}"
    );
}

#[test]
fn a_process_that_never_uses_the_gpu_maps_only_the_loader() {
    let Some(lib) = shipped() else { return };
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    // /bin/cat of its own maps: what the loader brought into a plain program.
    let mut c = sim.command("/bin/cat");
    c.arg("/proc/self/maps").env("LD_PRELOAD", &lib);
    let out = run_default(&mut c);
    out.assert_success("cat /proc/self/maps under the shipped loader");
    assert!(out.stderr.is_empty(), "no output: {}", out.stderr);
    let maps = &out.stdout;
    assert!(
        maps.contains(lib.to_str().unwrap()),
        "the loader is mapped:\n{maps}"
    );
    for absent in [
        "libvgpu-core",
        "memfd:",
        "libdl.so",
        "libpthread.so",
        "libcuda",
    ] {
        assert!(
            !maps.contains(absent),
            "{absent} mapped in a process without GPU use:\n{maps}"
        );
    }
    // Control: the same probe sees a preloaded library (so the absences above are real).
    let mut c = Command::new("/bin/cat");
    c.envs(sim.envs())
        .arg("/proc/self/maps")
        .env("LD_PRELOAD", libvgpu());
    let plain = run_default(&mut c);
    plain.assert_success("cat under the plain build");
    assert!(plain.stdout.contains("libvgpu.so"), "{}", plain.stdout);
}

#[test]
fn the_loader_embeds_exactly_the_core_built_beside_it() {
    let Some(lib) = shipped() else { return };
    let core = lib.with_file_name("libvgpu-core.so");
    let loader = std::fs::read(&lib).unwrap();
    let core = std::fs::read(&core).unwrap_or_else(|e| panic!("{}: {e}", core.display()));
    assert!(core.len() > 100_000, "a real core");
    assert!(
        loader.windows(core.len()).any(|w| w == core.as_slice()),
        "the loader's embedded core is not libvgpu-core.so (a stale build?)"
    );
}

/// The cached core (docs/RELEASE.md, "The cached core"): the first process of a container
/// writes the core once into `$VGPU_CORE_CACHE_DIR` (default /dev/shm) and every process
/// maps that file from the page cache. An entry that could have been written by anyone but
/// root or this uid — a symlink, another user's file, a group- or other-writable file, or a
/// file of the wrong size — is never mapped: the loader writes a trusted copy over it where
/// it may, else loads a private memfd copy. Observed with a planted library whose
/// constructor says it was mapped; the control (a planted file that passes every check) shows
/// that the observation can fail.
#[test]
fn a_cached_core_that_cannot_be_trusted_is_refused_and_the_memfd_used() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(lib) = shipped() else { return };
    let core = std::fs::read(lib.with_file_name("libvgpu-core.so")).unwrap();
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let cache = sim.dir().join("core-cache");
    std::fs::create_dir(&cache).unwrap();
    let run = |dir: &std::path::Path| {
        let mut c = command(&sim, Style::Linked, true);
        c.env("LD_PRELOAD", &lib).env("VGPU_CORE_CACHE_DIR", dir);
        run_default(c.args(["cap-fill", &(100 * MIB).to_string()]))
    };
    let entries = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let works = |what: &str, out: &testkit::Output| {
        out.assert_success(what);
        assert!(
            out.stderr.is_empty(),
            "{what}: no output\n{}",
            out.describe()
        );
        assert_eq!(
            out.kv().u64("allocated"),
            GIB - 64 * MIB,
            "{what}: the cap\n{}",
            out.describe()
        );
    };

    // A clean cache: the first process writes the core there, read-only, nothing else left.
    works("first process, empty cache", &run(&cache));
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let names = entries(&cache);
    assert_eq!(
        names.len(),
        1,
        "one cached core, no temporary left: {names:?}"
    );
    let name = &names[0];
    assert!(
        name.starts_with("libvgpu-core-") && name.ends_with(&format!("-{euid}.so")),
        "{name}"
    );
    let cached = cache.join(name);
    let check_cached_is_the_core = |what: &str| {
        let meta = std::fs::symlink_metadata(&cached).unwrap();
        assert!(meta.file_type().is_file(), "{what}: a regular file");
        assert_eq!(meta.mode() & 0o222, 0, "{what}: read-only");
        assert!(
            std::fs::read(&cached).unwrap() == core,
            "{what}: holds the core"
        );
        assert_eq!(entries(&cache).len(), 1, "{what}: {:?}", entries(&cache));
    };
    check_cached_is_the_core("written by the first process");
    works("second process, cached core", &run(&cache));
    check_cached_is_the_core("after a reader");

    // A library that says so when mapped, padded to the core's size.
    let src = sim.dir().join("planted.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\n__attribute__((constructor)) static void said(void) \
         { (void)!write(2, \"planted-core-mapped\\n\", 20); }\n",
    )
    .unwrap();
    let planted_small = sim.dir().join("planted-small.so");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let st = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&planted_small)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "cc planted.c");
    let planted = sim.dir().join("planted.so");
    std::fs::copy(&planted_small, &planted).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&planted)
        .unwrap();
    f.set_len(core.len() as u64).unwrap();
    drop(f);
    let plant = |from: &std::path::Path, mode: u32| {
        let _ = std::fs::remove_file(&cached);
        std::fs::copy(from, &cached).unwrap();
        std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    // Control: a file that passes every check is mapped (so "not mapped" below is real).
    plant(&planted, 0o444);
    let out = run(&cache);
    assert!(
        out.stderr.contains("planted-core-mapped"),
        "a trusted cached file is the one mapped\n{}",
        out.describe()
    );

    // Group- or other-writable, or the wrong size: refused, and a trusted copy replaces it.
    for (what, from, mode) in [
        ("other-writable", &planted, 0o646),
        ("group-writable", &planted, 0o464),
        ("wrong size", &planted_small, 0o444),
    ] {
        plant(from, mode);
        let out = run(&cache);
        assert!(
            !out.stderr.contains("planted"),
            "{what}: mapped\n{}",
            out.describe()
        );
        works(what, &out);
        check_cached_is_the_core(what);
    }
    // A symlink (to a file that would pass): not followed.
    let _ = std::fs::remove_file(&cached);
    let target = sim.dir().join("planted-target.so");
    std::fs::copy(&planted, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::os::unix::fs::symlink(&target, &cached).unwrap();
    let out = run(&cache);
    assert!(
        !out.stderr.contains("planted"),
        "symlink: mapped\n{}",
        out.describe()
    );
    works("symlink", &out);
    check_cached_is_the_core("symlink replaced");

    // Another user's file: refused (as root only: others cannot give a file away).
    if euid == 0 {
        plant(&planted, 0o444);
        std::os::unix::fs::chown(&cached, Some(65534), Some(65534)).unwrap();
        let out = run(&cache);
        assert!(
            !out.stderr.contains("planted"),
            "foreign-owned: mapped\n{}",
            out.describe()
        );
        works("foreign-owned", &out);
    } else {
        eprintln!("SKIP (not root): the foreign-owned cached core case");
    }

    // No usable cache directory: the private memfd copy, silently.
    let out = run(&sim.dir().join("no-such-dir"));
    works("no cache directory", &out);
    assert!(!sim.dir().join("no-such-dir").exists());
}

/// A program linked against a driver is a GPU process from its start: the loader's
/// constructor (it runs once every library of the program's start is mapped) loads the core
/// there, before main, as a preloaded core would be, so the processes of a container
/// starting together do not all pay the core's `dlopen` at their first call
/// (docs/BENCHMARKS.md, "64 and 256 processes"). Loading is all it does: the runtime (the
/// shared region, the watcher thread) still starts at the first hooked call. A program
/// that `dlopen`s the driver later (Python) keeps the lazy load, and so does the linked
/// program under `VGPU_CORE_EAGER=off` (the control on the same binary); that the probe can
/// see the core (and the region) is each program's second look, after its first calls.
#[test]
fn a_program_linked_against_a_driver_gets_the_core_before_main_and_others_at_first_use() {
    let Some(lib) = shipped() else { return };
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let cache = sim.dir().join("core-cache");
    std::fs::create_dir(&cache).unwrap();
    let src = sim.dir().join("core-probe.c");
    std::fs::write(
        &src,
        r#"#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int core_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "libvgpu-core")) found = 1;
    if (f) fclose(f);
    return found;
}
static int threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}
/* CUDA: cuInit and a primary context (which starts libvgpu's runtime: the region). */
typedef int (*init_fn)(unsigned);
typedef int (*device_get_fn)(int *, int);
typedef int (*retain_fn)(void **, int);
static int cuda_start(init_fn init, device_get_fn device_get, retain_fn retain) {
    int dev = 0, rc;
    void *ctx = NULL;
    if (!init || !device_get || !retain) return -1;
    if ((rc = init(0)) || (rc = device_get(&dev, 0))) return rc;
    return retain(&ctx, dev);
}
#if defined(LINKED_CUDA)
int cuInit(unsigned);
int cuDeviceGet(int *, int);
int cuDevicePrimaryCtxRetain(void **, int);
static int first_call(void) { return cuda_start(cuInit, cuDeviceGet, cuDevicePrimaryCtxRetain); }
#elif defined(LINKED_NVML)
int nvmlInit_v2(void);
static int first_call(void) { return nvmlInit_v2(); }
#else
static int first_call(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) return -1;
    return cuda_start((init_fn)dlsym(h, "cuInit"), (device_get_fn)dlsym(h, "cuDeviceGet"),
                      (retain_fn)dlsym(h, "cuDevicePrimaryCtxRetain"));
}
#endif
int main(void) {
    const char *region = getenv("CUDA_DEVICE_MEMORY_SHARED_CACHE");
    printf("core_at_main=%d\n", core_mapped());
    printf("threads_at_main=%d\n", threads());
    printf("region_at_main=%d\n", region && access(region, F_OK) == 0);
    printf("first_call_rc=%d\n", first_call());
    printf("core_after_first_call=%d\n", core_mapped());
    printf("region_after_first_call=%d\n", region && access(region, F_OK) == 0);
    return 0;
}
"#,
    )
    .unwrap();
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let lib_dir = testkit::sim_lib_dir();
    let build = |name: &str, flags: &[&str]| {
        let out = sim.dir().join(name);
        let st = Command::new(&cc)
            .args(["-std=gnu11", "-O1", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .args(flags)
            .arg(format!("-L{}", lib_dir.display()))
            .args(["-Wl,--no-as-needed", "-ldl"])
            .status()
            .expect("cc");
        assert!(st.success(), "cc core-probe.c {flags:?}");
        out
    };
    let run = |program: &std::path::Path, eager: &str| {
        let mut c = sim.command(program);
        c.env("LD_PRELOAD", &lib)
            .env("VGPU_CORE_CACHE_DIR", &cache)
            .env("VGPU_CORE_EAGER", eager);
        let out = run_default(&mut c);
        out.assert_success(&program.display().to_string());
        assert!(out.stderr.is_empty(), "no output\n{}", out.describe());
        out
    };
    // VGPU_CORE_EAGER=off: the same linked program loads the core at its first call.
    for (name, flags, eager, knob) in [
        (
            "linked-cuda",
            &["-DLINKED_CUDA", "-l:libcuda.so.1"][..],
            true,
            "on",
        ),
        (
            "linked-cuda",
            &["-DLINKED_CUDA", "-l:libcuda.so.1"][..],
            false,
            "off",
        ),
        (
            "linked-nvml",
            &["-DLINKED_NVML", "-l:libnvidia-ml.so.1"][..],
            true,
            "on",
        ),
        ("dlopen-cuda", &[][..], false, "on"),
    ] {
        let out = run(&build(name, flags), knob);
        let kv = out.kv();
        let why = out.describe();
        let name = format!("{name} (VGPU_CORE_EAGER={knob})");
        assert_eq!(kv.i64("core_at_main"), i64::from(eager), "{name}\n{why}");
        // Nothing of the runtime before the first call, eager or not.
        assert_eq!(kv.i64("threads_at_main"), 1, "{name}: no thread\n{why}");
        assert_eq!(kv.i64("region_at_main"), 0, "{name}: no region yet\n{why}");
        assert_eq!(kv.i64("first_call_rc"), 0, "{name}\n{why}");
        assert_eq!(kv.i64("core_after_first_call"), 1, "{name}\n{why}");
        if !name.starts_with("linked-nvml") {
            assert_eq!(kv.i64("region_after_first_call"), 1, "{name}\n{why}");
        }
        let _ = std::fs::remove_file(region_path(&sim));
    }
}
