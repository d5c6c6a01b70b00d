//! Status codes and the structs the SMI libraries fill (layouts of the client versions the
//! tests use: amdsmi 7.x, rocm-smi 5.2.3).
#![allow(non_camel_case_types, non_snake_case)]

use core::ffi::c_char;

pub type amdsmi_status_t = u32;
pub type rsmi_status_t = u32;

pub const AMDSMI_STATUS_SUCCESS: u32 = 0;
pub const AMDSMI_STATUS_INVAL: u32 = 1;
pub const AMDSMI_STATUS_NOT_SUPPORTED: u32 = 2;
pub const AMDSMI_STATUS_OUT_OF_RESOURCES: u32 = 15;
pub const AMDSMI_STATUS_INTERNAL_EXCEPTION: u32 = 16;
pub const AMDSMI_STATUS_INIT_ERROR: u32 = 18;
pub const AMDSMI_STATUS_NOT_FOUND: u32 = 31;
pub const AMDSMI_STATUS_NOT_INIT: u32 = 32;
pub const AMDSMI_STATUS_DRIVER_NOT_LOADED: u32 = 34;
pub const AMDSMI_STATUS_INSUFFICIENT_SIZE: u32 = 41;
pub const AMDSMI_STATUS_UNKNOWN_ERROR: u32 = 0xFFFF_FFFF;

pub const AMDSMI_PROCESSOR_TYPE_AMD_GPU: u32 = 1;
pub const AMDSMI_INIT_AMD_GPUS: u64 = 2;
pub const AMDSMI_MEM_TYPE_VRAM: u32 = 0;

pub const RSMI_STATUS_SUCCESS: u32 = 0;
pub const RSMI_STATUS_INVALID_ARGS: u32 = 1;
pub const RSMI_STATUS_NOT_SUPPORTED: u32 = 2;
pub const RSMI_STATUS_INIT_ERROR: u32 = 8;
pub const RSMI_STATUS_NOT_FOUND: u32 = 10;
pub const RSMI_STATUS_INSUFFICIENT_SIZE: u32 = 11;
pub const RSMI_STATUS_UNKNOWN_ERROR: u32 = 0xFFFF_FFFF;
pub const RSMI_MEM_TYPE_VRAM: u32 = 0;

/// A 16-byte struct passed by value (`amdsmi_link_id_bw_type_t`): two integer words.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct smi_by_value16 {
    pub lo: u64,
    pub hi: u64,
}

/// `rsmi_process_info_t` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rsmi_process_info_t {
    pub process_id: u32,
    pub pasid: u32,
    pub vram_usage: u64,
    pub sdma_usage: u64,
    pub cu_occupancy: u32,
}

/// `rsmi_utilization_counter_t`: type 0 coarse-grain GFX activity, 1 memory activity.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rsmi_utilization_counter_t {
    pub type_: u32,
    pub value: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rsmi_version_t {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub build: *const c_char,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct amdsmi_engine_usage_t {
    pub gfx_activity: u32,
    pub umc_activity: u32,
    pub mm_activity: u32,
    pub reserved: [u32; 13],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct amdsmi_vram_usage_t {
    /// MB.
    pub vram_total: u32,
    pub vram_used: u32,
    pub reserved: [u32; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct amdsmi_version_t {
    pub major: u32,
    pub minor: u32,
    pub release: u32,
    pub build: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_asic_info_t {
    pub market_name: [c_char; 256],
    pub vendor_id: u32,
    pub vendor_name: [c_char; 256],
    pub subvendor_id: u32,
    pub device_id: u64,
    pub rev_id: u32,
    pub asic_serial: [c_char; 256],
    pub oam_id: u32,
    pub num_of_compute_units: u32,
    pub target_graphics_version: u64,
    pub subsystem_id: u32,
    pub reserved: [u32; 21],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_enumeration_info_t {
    pub drm_render: u32,
    pub drm_card: u32,
    pub hsa_id: u32,
    pub hip_id: u32,
    pub hip_uuid: [c_char; 256],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct amdsmi_proc_engine_usage_t {
    pub gfx: u64,
    pub enc: u64,
    pub reserved: [u32; 12],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct amdsmi_proc_memory_usage_t {
    pub gtt_mem: u64,
    pub cpu_mem: u64,
    pub vram_mem: u64,
    pub reserved: [u32; 10],
}

/// `amdsmi_proc_info_t` of amdsmi 6.4 / 7.x (704 bytes). amdsmi 6.2 has another struct
/// (224 bytes: 32-byte name and container name, no `cu_occupancy`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_proc_info_t {
    pub name: [c_char; 256],
    pub pid: u32,
    pub mem: u64,
    pub engine_usage: amdsmi_proc_engine_usage_t,
    pub memory_usage: amdsmi_proc_memory_usage_t,
    pub container_name: [c_char; 256],
    pub cu_occupancy: u32,
    pub reserved: [u32; 11],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_driver_info_t {
    pub driver_version: [c_char; 256],
    pub driver_date: [c_char; 256],
    pub driver_name: [c_char; 256],
}

pub const AMDSMI_VRAM_TYPE_HBM3: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_vram_info_t {
    pub vram_type: u32,
    pub vram_vendor: [c_char; 256],
    /// MB.
    pub vram_size: u64,
    pub vram_bit_width: u32,
    /// GB/s.
    pub vram_max_bandwidth: u64,
    pub reserved: [u64; 37],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct amdsmi_board_info_t {
    pub model_number: [c_char; 256],
    pub product_serial: [c_char; 256],
    pub fru_id: [c_char; 256],
    pub product_name: [c_char; 256],
    pub manufacturer_name: [c_char; 256],
    pub reserved: [u64; 64],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_clients() {
        assert_eq!(size_of::<rsmi_process_info_t>(), 32);
        assert_eq!(size_of::<rsmi_utilization_counter_t>(), 16);
        assert_eq!(size_of::<amdsmi_engine_usage_t>(), 64);
        assert_eq!(size_of::<amdsmi_vram_usage_t>(), 16);
        assert_eq!(size_of::<amdsmi_version_t>(), 24);
        assert_eq!(size_of::<amdsmi_asic_info_t>(), 896);
        assert_eq!(offset_of!(amdsmi_asic_info_t, num_of_compute_units), 792);
        assert_eq!(offset_of!(amdsmi_asic_info_t, target_graphics_version), 800);
        assert_eq!(size_of::<amdsmi_enumeration_info_t>(), 272);
        assert_eq!(size_of::<amdsmi_proc_info_t>(), 704);
        assert_eq!(size_of::<amdsmi_driver_info_t>(), 768);
        assert_eq!(size_of::<amdsmi_vram_info_t>(), 584);
        assert_eq!(offset_of!(amdsmi_vram_info_t, vram_size), 264);
        assert_eq!(offset_of!(amdsmi_vram_info_t, vram_max_bandwidth), 280);
        assert_eq!(size_of::<amdsmi_board_info_t>(), 1792);
        assert_eq!(offset_of!(amdsmi_board_info_t, product_name), 768);
        assert_eq!(offset_of!(amdsmi_proc_info_t, mem), 264);
        assert_eq!(offset_of!(amdsmi_proc_info_t, engine_usage), 272);
        assert_eq!(offset_of!(amdsmi_proc_info_t, memory_usage), 336);
        assert_eq!(offset_of!(amdsmi_proc_info_t, container_name), 400);
        assert_eq!(offset_of!(amdsmi_proc_info_t, cu_occupancy), 656);
    }
}
