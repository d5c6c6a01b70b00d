//! libvgpu: GPU slicing inside containers.
//!
//! Loaded with `LD_PRELOAD` (or `/etc/ld.so.preload`) into every process of a container,
//! it exports shims for the CUDA driver API, NVML, HIP and the AMD/ROCm SMI libraries,
//! forwards each call to the real library and enforces the container's slice. See
//! `docs/ARCHITECTURE.md` ("Layers and import rules").
//!
//! Layers, top to bottom (each uses only those below it; `scripts/module-graph/check-src.sh`
//! checks it):
//! - this crate root: the composition root, the table of library families our `dlsym`
//!   redirects (one per backend) and the `dlsym` export generated over it;
//! - backends, one folder per API, each a table (the surface generated from its headers
//!   crate: exports, real-function slots, hook addresses), a placement (the vendor's device
//!   -> the container's device index) and a probe: [`cuda`] (driver API, with
//!   `cuGetProcAddress`), [`nvml`], [`hip`], [`amd_smi`];
//! - [`core`], vendor-neutral: process state, the shared region, the launch gate, the
//!   charge protocol generic over the vendor's status type, host-pid discovery generic
//!   over a probe, and the registry the backends register their vendor with;
//! - [`interpose`]: our `dlsym`, the real `dlsym`, the library families, the export guard
//!   (no panic crosses FFI); it knows no vendor;
//! - pure, unit-tested: `config` (the env contract), `ledger` (the memory cap) and
//!   [`throttle`] (the compute cap's bucket and control law), from the `vgpu-policy`
//!   crate, re-exported under the paths they always had; [`clock`], [`log`].

pub mod amd_smi;
pub mod clock;
pub mod core;
pub mod cuda;
pub mod hip;
pub mod interpose;
pub mod log;
pub mod nvml;
pub use vgpu_policy::throttle;

// The policy crate's modules, under the paths libvgpu's code names them by.
pub use vgpu_policy::{config, ledger};

/// The preloadable library families our `dlsym` redirects, one per backend (the
/// composition root: `interpose` knows none of them).
static FAMILIES: [interpose::Family; 5] = [
    cuda::FAMILY,
    nvml::FAMILY,
    hip::FAMILY,
    amd_smi::AMD_SMI_FAMILY,
    amd_smi::ROCM_SMI_FAMILY,
];

export_dlsym!(FAMILIES);
// The same families for LD_AUDIT mode (interpose::audit): la_version, la_objopen,
// la_symbind64; the process state learns the mode from la_version (core::namespace).
export_audit!(FAMILIES, on_audit = crate::core::namespace::set_audit_mode);
