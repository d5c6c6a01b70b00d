//! The one table of NVML entry points this project knows (same row idea as
//! [`crate::cuda_driver_api`], without versions: NVML is resolved with `dlsym`).
//! Row: `symbol [hook|pass] (args)`; every function returns `nvmlReturn_t`.
//! `nvmlErrorString` returns a string, not a code, and is written by hand where needed.

/// Calls `$m!` with every NVML entry point.
#[macro_export]
macro_rules! nvml_api {
    ($m:path) => {
        $m! {
            nvmlInit = [pass] ();
            nvmlInit_v2 = [pass] ();
            nvmlInitWithFlags = [pass] (flags: c_uint);
            nvmlShutdown = [pass] ();
            nvmlSystemGetDriverVersion = [pass] (version: *mut c_char, length: c_uint);
            nvmlSystemGetNVMLVersion = [pass] (version: *mut c_char, length: c_uint);
            nvmlSystemGetCudaDriverVersion = [pass] (cuda_driver_version: *mut c_int);
            nvmlSystemGetCudaDriverVersion_v2 = [pass] (cuda_driver_version: *mut c_int);
            nvmlDeviceGetCount = [hook] (device_count: *mut c_uint);
            nvmlDeviceGetCount_v2 = [hook] (device_count: *mut c_uint);
            nvmlDeviceGetHandleByIndex = [hook] (index: c_uint, device: *mut nvmlDevice_t);
            nvmlDeviceGetHandleByIndex_v2 = [hook] (index: c_uint, device: *mut nvmlDevice_t);
            nvmlDeviceGetHandleByUUID = [pass] (uuid: *const c_char, device: *mut nvmlDevice_t);
            nvmlDeviceGetHandleByPciBusId = [pass] (pci_bus_id: *const c_char, device: *mut nvmlDevice_t);
            nvmlDeviceGetHandleByPciBusId_v2 = [pass] (pci_bus_id: *const c_char, device: *mut nvmlDevice_t);
            nvmlDeviceGetName = [pass] (device: nvmlDevice_t, name: *mut c_char, length: c_uint);
            nvmlDeviceGetUUID = [pass] (device: nvmlDevice_t, uuid: *mut c_char, length: c_uint);
            nvmlDeviceGetIndex = [hook] (device: nvmlDevice_t, index: *mut c_uint);
            nvmlDeviceGetMinorNumber = [pass] (device: nvmlDevice_t, minor_number: *mut c_uint);
            nvmlDeviceGetPciInfo = [pass] (device: nvmlDevice_t, pci: *mut nvmlPciInfo_t);
            nvmlDeviceGetPciInfo_v2 = [pass] (device: nvmlDevice_t, pci: *mut nvmlPciInfo_t);
            nvmlDeviceGetPciInfo_v3 = [pass] (device: nvmlDevice_t, pci: *mut nvmlPciInfo_t);
            nvmlDeviceGetMemoryInfo = [hook] (device: nvmlDevice_t, memory: *mut nvmlMemory_t);
            nvmlDeviceGetMemoryInfo_v2 = [hook] (device: nvmlDevice_t, memory: *mut nvmlMemory_v2_t);
            nvmlDeviceGetComputeRunningProcesses = [hook] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v1_t);
            nvmlDeviceGetComputeRunningProcesses_v2 = [hook] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v2_t);
            nvmlDeviceGetComputeRunningProcesses_v3 = [hook] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v2_t);
            nvmlDeviceGetGraphicsRunningProcesses = [pass] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v1_t);
            nvmlDeviceGetGraphicsRunningProcesses_v2 = [pass] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v2_t);
            nvmlDeviceGetGraphicsRunningProcesses_v3 = [pass] (device: nvmlDevice_t, info_count: *mut c_uint, infos: *mut nvmlProcessInfo_v2_t);
            nvmlDeviceGetUtilizationRates = [pass] (device: nvmlDevice_t, utilization: *mut nvmlUtilization_t);
            nvmlDeviceGetProcessUtilization = [pass] (device: nvmlDevice_t, utilization: *mut nvmlProcessUtilizationSample_t, process_samples_count: *mut c_uint, last_seen_time_stamp: c_ulonglong);
            nvmlDeviceGetCudaComputeCapability = [pass] (device: nvmlDevice_t, major: *mut c_int, minor: *mut c_int);
            nvmlDeviceGetMultiGpuBoard = [pass] (device: nvmlDevice_t, multi_gpu_bool: *mut c_uint);
            nvmlDeviceGetTemperature = [pass] (device: nvmlDevice_t, sensor_type: c_int, temp: *mut c_uint);
            nvmlDeviceGetPowerUsage = [pass] (device: nvmlDevice_t, power: *mut c_uint);
            nvmlDeviceGetFanSpeed = [pass] (device: nvmlDevice_t, speed: *mut c_uint);
            nvmlDeviceGetPersistenceMode = [pass] (device: nvmlDevice_t, mode: *mut c_int);
            nvmlDeviceGetComputeMode = [pass] (device: nvmlDevice_t, mode: *mut c_int);
        }
    };
}
