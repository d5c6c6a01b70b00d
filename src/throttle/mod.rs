//! The compute cap's pure parts (no FFI): the container token bucket and per-process lanes
//! (`bucket`) and the controller (`controller`: cost calibration and share integral, clock
//! injected), from the `vgpu-policy` crate. The launch gate that
//! uses them is `crate::core::gate`; docs/COMPUTE_CAP.md.

// The pure parts live in the policy crate; these paths keep `crate::throttle::bucket` etc.
pub use vgpu_policy::throttle::{apply_tick, bucket, cap_in_force, controller};
