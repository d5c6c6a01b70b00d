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
//! - policy, pure and unit-tested: `config` (the env contract), `ledger` (the memory cap),
//!   `throttle` (the launch gate).

pub mod amd_smi;
pub mod audit;
pub mod clock;
pub mod config;
pub mod driver;
mod ffi;
pub mod hip;
pub mod hooks;
pub mod hostpid;
pub mod ledger;
pub mod log;
pub mod nvml;
pub mod preload;
pub mod runtime;
pub mod shared_region;
pub mod throttle;
