//! The simulated GPU's machine-wide state and its pure logic.
//!
//! - [`amd`]: AMD-only model facts and device identities (ROCr, HIP, SMI forms).
//! - [`config`]: device models, env parsing (`VGPU_SIM_*`), per-process costs.
//! - [`ids`]: UUIDs, PCI bus ids, `CUDA_VISIBLE_DEVICES`.
//! - [`image`]: kernel names declared by PTX module images.
//! - [`procfs`]: process liveness (pid + start time).
//! - [`process`]: a simulated library's process attaching to the state and leaving it.
//! - [`alloc`]: the first-fit allocator over fake device address ranges.
//! - [`timeline`]: kernel scheduling and utilization windows.
//! - [`state`]: the shared state file (robust lock, processes, memory, timeline).
//! - [`handles`]: lock-free-validated process-local handle tables.
//! - [`report`]: the ground-truth report (`vgpu-sim status`, `vgpuctl sim`).
//! - [`shadow`]: device-memory contents for copies (CUDA and HIP simulators).

pub mod alloc;
pub mod amd;
pub mod clock;
pub mod config;
pub mod handles;
pub mod ids;
pub mod image;
pub mod process;
pub mod procfs;
pub mod report;
pub mod shadow;
pub mod state;
pub mod timeline;

pub use report::status_report;
pub use state::{default_state_path, SimState};
