//! Soname `libcuda.so.1`; `target/<profile>/sim/libcuda.so{,.1}` -> `../libcuda.so`.

#[path = "../sim_library_layout.rs"]
mod sim_library_layout;

fn main() {
    sim_library_layout::lay_out("libcuda.so.1", "libcuda.so");
}
