//! vgpu's policy, vendor-neutral and pure: no FFI, no `unsafe`, no clock read (every
//! function that needs the time takes it as an argument), so every rule is unit-tested
//! here and shared by libvgpu, `vgpuctl` and the simulator.
//!
//! - [`config`]: the environment contract (DESIGN §2) parsed into a typed `Config`, the
//!   size and percent parsers;
//! - [`ledger`]: the memory cap's protocol (reserve -> real call -> commit / roll back) over
//!   a `CapacityPool`, and the lock-free live-allocation table;
//! - [`throttle`]: the compute cap's token bucket (container bucket in the shared region's
//!   `DeviceExt`, per-process lanes) and its controller (cost calibration, share integral);
//! - [`device`]: the device index newtypes and the one [`MAX_DEVICES`].
//!
//! What touches the process (the environment aside: `Config::from_env`), the driver or the
//! shared region's file stays in libvgpu.

#![forbid(unsafe_code)]

pub mod config;
pub mod device;
pub mod ledger;
pub mod throttle;

pub use device::MAX_DEVICES;
