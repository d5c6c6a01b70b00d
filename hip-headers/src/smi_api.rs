//! The SMI libraries' surfaces: AMD SMI (`libamd_smi.so`, as the amdsmi 7.x Python package
//! binds it: every function it looks up at import is a row, so the import cannot fail on a
//! missing symbol) and ROCm SMI (`librocm_smi64.so`, the functions the rocm-smi tool calls
//! for devices, memory, use and processes).
//!
//! Row: `symbol = [hook|pass] (args) -> return type;` (`hook`: vgpu will answer it from its
//! own view of memory and processes; `pass`: let through). The argument types are the C ABI
//! widths (enums as `u32`, handles and out-pointers as `*mut c_void`, the 8-byte
//! `amdsmi_bdf_t` union by value as `u64`); the structs the simulator fills are in
//! [`crate::smi_types`].

/// Calls `$m!` with every AMD SMI entry point the amdsmi 7.x package binds at import.
#[macro_export]
macro_rules! amd_smi_api {
    ($m:path) => {
        $m! {
            amdsmi_free_name_value_pairs = [pass] (a0: *mut c_void) -> ();
            amdsmi_init = [pass] (init_flags: u64) -> amdsmi_status_t;
            amdsmi_shut_down = [pass] () -> amdsmi_status_t;
            amdsmi_get_socket_handles = [pass] (socket_count: *mut c_void, socket_handles: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_handles = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_socket_info = [pass] (socket_handle: *mut c_void, len: u64, name: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_info = [pass] (a0: *mut c_void, a1: u64, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_count_from_handles = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void, a4: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_handles_by_type = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_handles = [hook] (socket_handle: *mut c_void, processor_count: *mut c_void, processor_handles: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpucore_handles = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_type = [pass] (processor_handle: *mut c_void, processor_type: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_processor_handle_from_bdf = [pass] (bdf: u64, processor_handle: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_device_bdf = [pass] (processor_handle: *mut c_void, bdf: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_device_uuid = [hook] (processor_handle: *mut c_void, uuid_length: *mut c_void, uuid: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_enumeration_info = [pass] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_affinity_with_scope = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void, a3: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_virtualization_mode = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_id = [pass] (processor_handle: *mut c_void, id: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_revision = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_vendor_name = [pass] (processor_handle: *mut c_void, name: *mut c_void, len: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_vram_vendor = [pass] (a0: *mut c_void, a1: *mut c_void, a2: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_subsystem_id = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_subsystem_name = [pass] (a0: *mut c_void, a1: *mut c_void, a2: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_pci_bandwidth = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_bdf_id = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_topo_numa_affinity = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_pci_throughput = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_pci_replay_counter = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_pci_bandwidth = [pass] (a0: *mut c_void, a1: u64) -> amdsmi_status_t;
            amdsmi_get_energy_count = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_power_cap = [pass] (a0: *mut c_void, a1: u32, a2: u64) -> amdsmi_status_t;
            amdsmi_set_gpu_power_profile = [pass] (a0: *mut c_void, a1: u32, a2: u64) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_power = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_power_cap = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_power_cap_max = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_pwr_svi_telemetry_all_rails = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_cpu_socket_power_cap = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_set_cpu_pwr_efficiency_mode = [pass] (a0: *mut c_void, a1: u8) -> amdsmi_status_t;
            amdsmi_get_gpu_memory_total = [hook] (processor_handle: *mut c_void, mem_type: u32, total: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_memory_usage = [hook] (processor_handle: *mut c_void, mem_type: u32, used: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_bad_page_info = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_bad_page_threshold = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_validate_ras_eeprom = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_ras_feature_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_ras_block_features_enabled = [pass] (a0: *mut c_void, a1: u64, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_memory_reserved_pages = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_fan_rpms = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_fan_speed = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_fan_speed_max = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_temp_metric = [pass] (a0: *mut c_void, a1: u32, a2: u32, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_cache_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_volt_metric = [pass] (a0: *mut c_void, a1: u32, a2: u32, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_reset_gpu_fan = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_fan_speed = [pass] (a0: *mut c_void, a1: u32, a2: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_busy_percent = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_utilization_count = [pass] (a0: *mut c_void, a1: *mut c_void, a2: u32, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_perf_level = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_perf_determinism_mode = [pass] (a0: *mut c_void, a1: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_overdrive_level = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_mem_overdrive_level = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_clk_freq = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_reset_gpu = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_od_volt_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_metrics_header_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_metrics_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_pm_metrics_info = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_reg_table_info = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_clk_range = [pass] (a0: *mut c_void, a1: u64, a2: u64, a3: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_clk_limit = [pass] (a0: *mut c_void, a1: u32, a2: u32, a3: u64) -> amdsmi_status_t;
            amdsmi_set_gpu_od_clk_info = [pass] (a0: *mut c_void, a1: u32, a2: u64, a3: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_od_volt_info = [pass] (a0: *mut c_void, a1: u32, a2: u64, a3: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_od_volt_curve_regions = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_power_profile_presets = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_perf_level = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_overdrive_level = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_set_clk_freq = [pass] (a0: *mut c_void, a1: u32, a2: u64) -> amdsmi_status_t;
            amdsmi_get_soc_pstate = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_soc_pstate = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_xgmi_plpd = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_xgmi_plpd = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_process_isolation = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_process_isolation = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_clean_gpu_local_data = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_lib_version = [pass] (version: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_ecc_count = [pass] (a0: *mut c_void, a1: u64, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_ecc_enabled = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_total_ecc_count = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_cper_entries = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void, a3: *mut c_void, a4: *mut c_void, a5: *mut c_void, a6: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_afids_from_cper = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_ecc_status = [pass] (a0: *mut c_void, a1: u64, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_status_code_to_string = [pass] (status: u32, status_string: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_counter_group_supported = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_gpu_create_counter = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_destroy_counter = [pass] (a0: u64) -> amdsmi_status_t;
            amdsmi_gpu_control_counter = [pass] (a0: u64, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_read_counter = [pass] (a0: u64, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_available_counters = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_compute_process_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_compute_process_info_by_pid = [pass] (a0: u32, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_compute_process_gpus = [pass] (a0: u32, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_xgmi_error_status = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_reset_gpu_xgmi_error = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_xgmi_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_xgmi_link_status = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_link_metrics = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_topo_get_numa_node_number = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_topo_get_link_weight = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_minmax_bandwidth_between_processors = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_topo_get_link_type = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_link_topology_nearest = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_is_P2P_accessible = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_topo_get_p2p_status = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void, a3: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_compute_partition = [pass] (a0: *mut c_void, a1: *mut c_void, a2: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_compute_partition = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_memory_partition = [pass] (a0: *mut c_void, a1: *mut c_void, a2: u32) -> amdsmi_status_t;
            amdsmi_set_gpu_memory_partition = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_memory_partition_config = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_memory_partition_mode = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_gpu_accelerator_partition_profile_config = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_accelerator_partition_profile = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_accelerator_partition_profile = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_init_gpu_event_notification = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_gpu_event_notification_mask = [pass] (a0: *mut c_void, a1: u64) -> amdsmi_status_t;
            amdsmi_get_gpu_event_notification = [pass] (a0: i32, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_stop_gpu_event_notification = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_driver_info = [pass] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_asic_info = [pass] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_kfd_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_vram_info = [hook] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_board_info = [pass] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_power_cap_info = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_pcie_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_xcd_counter = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_fw_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_vbios_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_activity = [pass] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_power_info = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_is_gpu_power_management_enabled = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_clock_info = [pass] (a0: *mut c_void, a1: u32, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_vram_usage = [hook] (processor_handle: *mut c_void, info: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_violation_status = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_gpu_process_list = [hook] (processor_handle: *mut c_void, max_processes: *mut c_void, list: *mut c_void) -> amdsmi_status_t;
            amdsmi_gpu_driver_reload = [pass] () -> amdsmi_status_t;
            amdsmi_get_cpu_core_energy = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_energy = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_threads_per_core = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_hsmp_driver_version = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_smu_fw_version = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_hsmp_proto_ver = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_prochot_status = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_fclk_mclk = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_cclk_limit = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_current_active_freq_limit = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_freq_range = [pass] (a0: *mut c_void, a1: *mut c_void, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_core_current_freq_limit = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_core_boostlimit = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_c0_residency = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_cpu_core_boostlimit = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_set_cpu_socket_boostlimit = [pass] (a0: *mut c_void, a1: u32) -> amdsmi_status_t;
            amdsmi_get_cpu_ddr_bw = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_temperature = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_dimm_temp_range_and_refresh_rate = [pass] (a0: *mut c_void, a1: u8, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_dimm_power_consumption = [pass] (a0: *mut c_void, a1: u8, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_dimm_thermal_sensor = [pass] (a0: *mut c_void, a1: u8, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_cpu_xgmi_width = [pass] (a0: *mut c_void, a1: u8, a2: u8) -> amdsmi_status_t;
            amdsmi_set_cpu_gmi3_link_width_range = [pass] (a0: *mut c_void, a1: u8, a2: u8) -> amdsmi_status_t;
            amdsmi_cpu_apb_enable = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_cpu_apb_disable = [pass] (a0: *mut c_void, a1: u8) -> amdsmi_status_t;
            amdsmi_set_cpu_socket_lclk_dpm_level = [pass] (a0: *mut c_void, a1: u8, a2: u8, a3: u8) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_lclk_dpm_level = [pass] (a0: *mut c_void, a1: u8, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_cpu_pcie_link_rate = [pass] (a0: *mut c_void, a1: u8, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_set_cpu_df_pstate_range = [pass] (a0: *mut c_void, a1: u8, a2: u8) -> amdsmi_status_t;
            amdsmi_get_cpu_current_io_bandwidth = [pass] (a0: *mut c_void, a1: smi_by_value16, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_current_xgmi_bw = [pass] (a0: *mut c_void, a1: smi_by_value16, a2: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_hsmp_metrics_table_version = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_hsmp_metrics_table = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_first_online_core_on_cpu_socket = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_family = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_model = [pass] (a0: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_model_name = [pass] (a0: *mut c_void, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_esmi_err_msg = [pass] (a0: u32, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_cores_per_socket = [pass] (a0: u32, a1: *mut c_void) -> amdsmi_status_t;
            amdsmi_get_cpu_socket_count = [pass] (a0: *mut c_void) -> amdsmi_status_t;
        }
    };
}

/// Calls `$m!` with every ROCm SMI entry point we know.
#[macro_export]
macro_rules! rocm_smi_api {
    ($m:path) => {
        $m! {
            rsmi_init = [pass] (init_flags: u64) -> rsmi_status_t;
            rsmi_shut_down = [pass] () -> rsmi_status_t;
            rsmi_num_monitor_devices = [pass] (num_devices: *mut u32) -> rsmi_status_t;
            rsmi_version_get = [pass] (version: *mut rsmi_version_t) -> rsmi_status_t;
            rsmi_version_str_get = [pass] (component: u32, version: *mut c_char, len: u32) -> rsmi_status_t;
            rsmi_status_string = [pass] (status: rsmi_status_t, status_string: *mut *const c_char) -> rsmi_status_t;
            rsmi_dev_id_get = [pass] (dv_ind: u32, id: *mut u16) -> rsmi_status_t;
            rsmi_dev_vendor_id_get = [pass] (dv_ind: u32, id: *mut u16) -> rsmi_status_t;
            rsmi_dev_subsystem_id_get = [pass] (dv_ind: u32, id: *mut u16) -> rsmi_status_t;
            rsmi_dev_subsystem_vendor_id_get = [pass] (dv_ind: u32, id: *mut u16) -> rsmi_status_t;
            rsmi_dev_name_get = [pass] (dv_ind: u32, name: *mut c_char, len: usize) -> rsmi_status_t;
            rsmi_dev_vendor_name_get = [pass] (dv_ind: u32, name: *mut c_char, len: usize) -> rsmi_status_t;
            rsmi_dev_subsystem_name_get = [pass] (dv_ind: u32, name: *mut c_char, len: usize) -> rsmi_status_t;
            rsmi_dev_vram_vendor_get = [pass] (dv_ind: u32, name: *mut c_char, len: u32) -> rsmi_status_t;
            rsmi_dev_serial_number_get = [pass] (dv_ind: u32, serial: *mut c_char, len: u32) -> rsmi_status_t;
            rsmi_dev_vbios_version_get = [pass] (dv_ind: u32, vbios: *mut c_char, len: u32) -> rsmi_status_t;
            rsmi_dev_unique_id_get = [pass] (dv_ind: u32, id: *mut u64) -> rsmi_status_t;
            rsmi_dev_pci_id_get = [pass] (dv_ind: u32, bdfid: *mut u64) -> rsmi_status_t;
            rsmi_dev_drm_render_minor_get = [pass] (dv_ind: u32, minor: *mut u32) -> rsmi_status_t;
            rsmi_dev_memory_total_get = [hook] (dv_ind: u32, mem_type: u32, total: *mut u64) -> rsmi_status_t;
            rsmi_dev_memory_usage_get = [hook] (dv_ind: u32, mem_type: u32, used: *mut u64) -> rsmi_status_t;
            rsmi_dev_busy_percent_get = [pass] (dv_ind: u32, busy_percent: *mut u32) -> rsmi_status_t;
            rsmi_dev_memory_busy_percent_get = [pass] (dv_ind: u32, busy_percent: *mut u32) -> rsmi_status_t;
            rsmi_utilization_count_get = [pass] (dv_ind: u32, counters: *mut rsmi_utilization_counter_t, count: u32, timestamp: *mut u64) -> rsmi_status_t;
            rsmi_compute_process_info_get = [hook] (procs: *mut rsmi_process_info_t, num_items: *mut u32) -> rsmi_status_t;
            rsmi_compute_process_info_by_pid_get = [hook] (pid: u32, proc_: *mut rsmi_process_info_t) -> rsmi_status_t;
            rsmi_compute_process_gpus_get = [hook] (pid: u32, dv_indices: *mut u32, num_devices: *mut u32) -> rsmi_status_t;
        }
    };
}

macro_rules! amd_smi_names {
    ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// The symbols of [`amd_smi_api!`], in table order.
        pub const AMD_SMI_PROCS: &[&str] = &[ $( stringify!($name) ),* ];
    };
}
crate::amd_smi_api!(amd_smi_names);

macro_rules! rocm_smi_names {
    ($( $name:ident = [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// The symbols of [`rocm_smi_api!`], in table order.
        pub const ROCM_SMI_PROCS: &[&str] = &[ $( stringify!($name) ),* ];
    };
}
crate::rocm_smi_api!(rocm_smi_names);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smi_tables_have_unique_rows() {
        for t in [AMD_SMI_PROCS, ROCM_SMI_PROCS] {
            for n in t {
                assert_eq!(t.iter().filter(|m| *m == n).count(), 1, "{n} twice");
            }
        }
        assert!(
            AMD_SMI_PROCS.len() >= 180,
            "amdsmi binds ~184 symbols at import"
        );
        assert!(AMD_SMI_PROCS.contains(&"amdsmi_get_gpu_process_list"));
    }
}
