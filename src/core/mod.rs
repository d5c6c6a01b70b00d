//! The vendor-neutral core: process state (`runtime`), the container's shared region
//! (`shared_region`), the launch gate (`gate`), host-pid discovery (`hostpid`) and the
//! controller's utilization probe (`probe`), small `/proc` reads (`procfs`). Backends (`crate::cuda`, `crate::nvml`,
//! `crate::hip`, `crate::amd_smi`) call into it; docs/ARCHITECTURE.md.

pub mod charge;
pub mod gate;
pub mod hostpid;
pub mod namespace;
pub mod pool;
pub mod probe;
pub mod procfs;
pub mod provisional;
pub mod runtime;
pub mod shared_region;
pub mod vendor;
