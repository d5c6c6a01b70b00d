//! Soname `librocm_smi64.so.7` (upstream); Debian's `.so.1` is another name for it:
//! `target/<profile>/sim/librocm_smi64.so{,.1,.7}` -> `../librocm_smi64.so`.

#[path = "../sim_library_layout.rs"]
mod sim_library_layout;

fn main() {
    sim_library_layout::lay_out("librocm_smi64.so.7", "librocm_smi64.so");
    sim_library_layout::extra_names("librocm_smi64.so", &["librocm_smi64.so.1"]);
}
