//! Shared by the build scripts of the simulated libraries (included with `#[path]`): sets
//! the library's soname and lays out `target/<profile>/sim/` with the names real clients
//! load (`<soname>` and the unversioned name) as links to the file cargo writes.

use std::path::{Path, PathBuf};

fn link(target: &str, at: &Path) {
    let _ = std::fs::remove_file(at);
    if let Err(e) = std::os::unix::fs::symlink(target, at) {
        println!("cargo:warning=cannot create {}: {e}", at.display());
    }
}

/// `soname` e.g. `libcuda.so.1`; `cargo_file` the cdylib cargo writes, e.g. `libcuda.so`.
pub fn lay_out(soname: &str, cargo_file: &str) {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../sim_library_layout.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let sim = profile_dir.join("sim");
    if let Err(e) = std::fs::create_dir_all(&sim) {
        println!("cargo:warning=cannot create {}: {e}", sim.display());
        return;
    }
    let target = format!("../{cargo_file}");
    let unversioned = soname.rsplit_once('.').map_or(soname, |(base, _)| base);
    link(&target, &sim.join(soname));
    link(&target, &sim.join(unversioned));
}

/// More names for the same library in `target/<profile>/sim/` (e.g. older sonames clients
/// were linked against: `libamdhip64.so.5` on Debian, `.so.6` on ROCm 6).
#[allow(dead_code)]
pub fn extra_names(cargo_file: &str, names: &[&str]) {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let sim = profile_dir.join("sim");
    let target = format!("../{cargo_file}");
    for n in names {
        link(&target, &sim.join(n));
    }
}
