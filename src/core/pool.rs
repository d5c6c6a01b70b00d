//! The ledger's capacity pool as a process has it: the container-wide region, or (control
//! disabled) a process-local one. Its own module so that what holds reservations beside
//! the runtime (`core::provisional`) names the pool without the runtime.

use crate::core::shared_region::SharedPool;
use crate::ledger::{CapacityPool, LocalPool};

/// Where capacity lives: the container-wide region, or (control disabled) nowhere.
#[allow(clippy::large_enum_variant)] // one per process; boxing would add an indirection to every reservation
pub enum Pool {
    Local(LocalPool),
    Shared(SharedPool),
}

macro_rules! pool_dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            Pool::Local($p) => $e,
            Pool::Shared($p) => $e,
        }
    };
}

impl CapacityPool for Pool {
    fn try_reserve(&self, device: usize, bytes: u64) -> bool {
        pool_dispatch!(self, p => p.try_reserve(device, bytes))
    }
    fn try_reserve_usage(&self, device: usize, bucket: usize, bytes: u64) -> Option<bool> {
        pool_dispatch!(self, p => p.try_reserve_usage(device, bucket, bytes))
    }
    fn on_granted(&self, device: usize) {
        pool_dispatch!(self, p => p.on_granted(device))
    }
    fn force_reserve(&self, device: usize, bytes: u64) {
        pool_dispatch!(self, p => p.force_reserve(device, bytes))
    }
    fn release(&self, device: usize, bytes: u64) {
        pool_dispatch!(self, p => p.release(device, bytes))
    }
    fn used(&self, device: usize) -> u64 {
        pool_dispatch!(self, p => p.used(device))
    }
    fn limit(&self, device: usize) -> Option<u64> {
        pool_dispatch!(self, p => p.limit(device))
    }
    fn on_usage(&self, device: usize, bucket: usize, delta: i64) -> bool {
        pool_dispatch!(self, p => p.on_usage(device, bucket, delta))
    }
    fn release_with_usage(&self, device: usize, bucket: usize, bytes: u64) -> bool {
        pool_dispatch!(self, p => p.release_with_usage(device, bucket, bytes))
    }
    fn published_usage(&self, device: usize) -> Option<crate::ledger::Usage> {
        pool_dispatch!(self, p => p.published_usage(device))
    }
    fn after_fork_child(&self) {
        pool_dispatch!(self, p => p.after_fork_child())
    }
}
