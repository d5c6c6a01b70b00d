//! Soname `libamd_smi.so.26` (ROCm 7): `target/<profile>/sim/libamd_smi.so{,.26}`.

#[path = "../sim_library_layout.rs"]
mod sim_library_layout;

fn main() {
    sim_library_layout::lay_out("libamd_smi.so.26", "libamd_smi.so");
}
