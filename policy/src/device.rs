//! Device numbering: how many devices a container addresses.

/// Most devices a container can address: the shared region's per-device arrays (HAMi's
/// layout v1 holds 16, `CUDA_DEVICE_MAX_COUNT`). Defined once, by the region's layout;
/// everything indexed per device (limits, the ledger, the lanes, the simulator's devices)
/// uses this one.
pub use shm_layout::MAX_DEVICES;
