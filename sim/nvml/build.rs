//! Soname `libnvidia-ml.so.1`; `target/<profile>/sim/libnvidia-ml.so{,.1}` ->
//! `../libnvidia_ml.so`.

#[path = "../sim_library_layout.rs"]
mod sim_library_layout;

fn main() {
    sim_library_layout::lay_out("libnvidia-ml.so.1", "libnvidia_ml.so");
}
