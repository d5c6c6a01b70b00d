//! libvgpu: GPU slicing inside containers.
//!
//! Loaded with `LD_PRELOAD` (or `/etc/ld.so.preload`) into every process of a container,
//! it exports shims for the CUDA driver API (and, later, NVML/HIP/SMI), forwards each call
//! to the real library and enforces the container's slice. See `docs/ARCHITECTURE.md`.
//!
//! Layers, top to bottom:
//! - `preload`: our `dlsym` trampoline, the real `dlsym`, finding the real libraries;
//! - `driver`: exports, real-function slots and `cuGetProcAddress` answers, generated
//!   from the one table in `cuda-headers`;
//! - `hooks`: the few lines per entry point that call into the policy;
//! - `hip`: the HIP runtime surface (exports, real slots, hook bodies), generated from
//!   `hip-headers`' table, charging the same ledger (docs/AMD.md);
//! - `runtime`: lazy, idempotent, fork-aware process state;
//! - `throttle`: the launch gate, the watcher and the utilization probes;
//! - policy, pure and unit-tested, in the `vgpu-policy` crate (re-exported here under the
//!   paths it always had): `config` (the env contract), `ledger` (the memory cap),
//!   `throttle::{bucket, controller}` (the compute cap's bucket and control law).

pub mod amd_smi;
pub mod clock;
pub mod core;
pub mod cuda;
pub mod hip;
pub mod interpose;
pub mod log;
pub mod nvml;
pub mod throttle;

// The policy crate's modules, under the paths libvgpu's code names them by.
pub use vgpu_policy::{config, ledger};
