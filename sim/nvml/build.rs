//! Sets the soname `libnvidia-ml.so.1` and lays out `target/<profile>/sim/` with the names real
//! clients load (`libnvidia-ml.so.1`, `libnvidia-ml.so`) as links to `../libnvidia_ml.so`.

use std::path::{Path, PathBuf};

fn link(target: &str, at: &Path) {
    let _ = std::fs::remove_file(at);
    if let Err(e) = std::os::unix::fs::symlink(target, at) {
        println!("cargo:warning=cannot create {}: {e}", at.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
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
    link("../libnvidia_ml.so", &sim.join("libnvidia-ml.so.1"));
    link("../libnvidia_ml.so", &sim.join("libnvidia-ml.so"));
}
