//! Soname `libamdhip64.so.7`; exports carry the symbol version nodes of AMD's map: the
//! version script is generated here from `hip_headers::hip_api!` (the `.symver` directives
//! that bind each export to its node come from the same table, in `src/lib.rs`).
//! `target/<profile>/sim/libamdhip64.so{,.5,.6,.7}` -> `../libamdhip64.so`.

#[path = "../sim_library_layout.rs"]
mod sim_library_layout;

fn main() {
    sim_library_layout::lay_out("libamdhip64.so.7", "libamdhip64.so");
    sim_library_layout::extra_names("libamdhip64.so", &["libamdhip64.so.5", "libamdhip64.so.6"]);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let script = out.join("libamdhip64.map");
    std::fs::write(&script, hip_headers::version_script()).expect("write version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}
