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
