//! The one table of CUDA driver entry points this project knows.
//!
//! Every row gives: the exported symbol, the base name `cuGetProcAddress` is asked for, the
//! CUDA version that introduced this variant (`cudaVersion` argument, e.g. 3020 = CUDA 3.2),
//! whether it is the per-thread-default-stream variant (`ptds`, picked with flag 2; its base
//! row is the `dflt` variant of the same name at its version, [`crate::ptds_base`]) or not
//! (`dflt`), whether libvgpu intercepts it with a hand-written hook (`hook`), with the launch
//! gate only (`gate`: the compute cap's `before_launch`, then the real function; no body to
//! write) or lets it through (`pass`), and the argument list. Every function returns
//! `CUresult`.
//!
//! Consumers pass the name of their own `macro_rules!` macro, which receives all rows:
//! the simulated driver turns them into exports, libvgpu into hooks, real-function slots and
//! `cuGetProcAddress` answers, and this crate into [`crate::DRIVER_PROCS`] and the `pfn` types.
//! Argument types are written as the names in [`crate::prelude`]; a consumer imports it.

/// Calls `$m!` with every driver entry point (see the module docs for the row format).
#[macro_export]
macro_rules! cuda_driver_api {
    ($m:path) => {
        $m! {
            // ---- initialisation, versions, errors, entry points ------------------------
            cuInit = "cuInit" @ 2000 [dflt hook] (flags: c_uint);
            cuDriverGetVersion = "cuDriverGetVersion" @ 2020 [dflt pass] (driver_version: *mut c_int);
            cuGetErrorName = "cuGetErrorName" @ 6000 [dflt pass] (error: CUresult, p_str: *mut *const c_char);
            cuGetErrorString = "cuGetErrorString" @ 6000 [dflt pass] (error: CUresult, p_str: *mut *const c_char);
            cuGetExportTable = "cuGetExportTable" @ 3000 [dflt pass] (pp_export_table: *mut *const c_void, table_id: *const CUuuid);
            cuGetProcAddress = "cuGetProcAddress" @ 11030 [dflt hook] (symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64);
            cuGetProcAddress_v2 = "cuGetProcAddress" @ 12000 [dflt hook] (symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64, symbol_status: *mut CUdriverProcAddressQueryResult);

            // ---- devices --------------------------------------------------------------------
            cuDeviceGet = "cuDeviceGet" @ 2000 [dflt pass] (device: *mut CUdevice, ordinal: c_int);
            cuDeviceGetCount = "cuDeviceGetCount" @ 2000 [dflt pass] (count: *mut c_int);
            cuDeviceGetName = "cuDeviceGetName" @ 2000 [dflt pass] (name: *mut c_char, len: c_int, dev: CUdevice);
            cuDeviceGetUuid = "cuDeviceGetUuid" @ 9020 [dflt pass] (uuid: *mut CUuuid, dev: CUdevice);
            cuDeviceGetUuid_v2 = "cuDeviceGetUuid" @ 11040 [dflt pass] (uuid: *mut CUuuid, dev: CUdevice);
            cuDeviceTotalMem_v2 = "cuDeviceTotalMem" @ 3020 [dflt hook] (bytes: *mut usize, dev: CUdevice);
            cuDeviceGetAttribute = "cuDeviceGetAttribute" @ 2000 [dflt pass] (pi: *mut c_int, attrib: CUdevice_attribute, dev: CUdevice);
            cuDeviceComputeCapability = "cuDeviceComputeCapability" @ 2000 [dflt pass] (major: *mut c_int, minor: *mut c_int, dev: CUdevice);
            cuDeviceGetPCIBusId = "cuDeviceGetPCIBusId" @ 4010 [dflt pass] (pci_bus_id: *mut c_char, len: c_int, dev: CUdevice);
            cuDeviceGetByPCIBusId = "cuDeviceGetByPCIBusId" @ 4010 [dflt pass] (dev: *mut CUdevice, pci_bus_id: *const c_char);
            cuDeviceCanAccessPeer = "cuDeviceCanAccessPeer" @ 4000 [dflt pass] (can_access_peer: *mut c_int, dev: CUdevice, peer_dev: CUdevice);
            cuDeviceGetDefaultMemPool = "cuDeviceGetDefaultMemPool" @ 11020 [dflt pass] (pool_out: *mut CUmemoryPool, dev: CUdevice);
            cuDeviceGetMemPool = "cuDeviceGetMemPool" @ 11020 [dflt pass] (pool: *mut CUmemoryPool, dev: CUdevice);
            cuDeviceSetMemPool = "cuDeviceSetMemPool" @ 11020 [dflt pass] (dev: CUdevice, pool: CUmemoryPool);

            // ---- primary and regular contexts -----------------------------------------------
            cuDevicePrimaryCtxRetain = "cuDevicePrimaryCtxRetain" @ 7000 [dflt hook] (pctx: *mut CUcontext, dev: CUdevice);
            cuDevicePrimaryCtxRelease = "cuDevicePrimaryCtxRelease" @ 7000 [dflt hook] (dev: CUdevice);
            cuDevicePrimaryCtxRelease_v2 = "cuDevicePrimaryCtxRelease" @ 11000 [dflt hook] (dev: CUdevice);
            cuDevicePrimaryCtxReset = "cuDevicePrimaryCtxReset" @ 7000 [dflt hook] (dev: CUdevice);
            cuDevicePrimaryCtxReset_v2 = "cuDevicePrimaryCtxReset" @ 11000 [dflt hook] (dev: CUdevice);
            cuDevicePrimaryCtxSetFlags_v2 = "cuDevicePrimaryCtxSetFlags" @ 11000 [dflt pass] (dev: CUdevice, flags: c_uint);
            cuDevicePrimaryCtxGetState = "cuDevicePrimaryCtxGetState" @ 7000 [dflt pass] (dev: CUdevice, flags: *mut c_uint, active: *mut c_int);
            cuCtxCreate_v2 = "cuCtxCreate" @ 3020 [dflt hook] (pctx: *mut CUcontext, flags: c_uint, dev: CUdevice);
            cuCtxCreate_v3 = "cuCtxCreate" @ 11040 [dflt hook] (pctx: *mut CUcontext, params_array: *mut c_void, num_params: c_int, flags: c_uint, dev: CUdevice);
            cuCtxCreate_v4 = "cuCtxCreate" @ 12050 [dflt hook] (pctx: *mut CUcontext, ctx_create_params: *mut c_void, flags: c_uint, dev: CUdevice);
            cuCtxDestroy_v2 = "cuCtxDestroy" @ 4000 [dflt hook] (ctx: CUcontext);
            cuCtxPushCurrent_v2 = "cuCtxPushCurrent" @ 4000 [dflt hook] (ctx: CUcontext);
            cuCtxPopCurrent_v2 = "cuCtxPopCurrent" @ 4000 [dflt hook] (pctx: *mut CUcontext);
            cuCtxSetCurrent = "cuCtxSetCurrent" @ 4000 [dflt hook] (ctx: CUcontext);
            cuCtxGetCurrent = "cuCtxGetCurrent" @ 4000 [dflt pass] (pctx: *mut CUcontext);
            cuCtxGetDevice = "cuCtxGetDevice" @ 2000 [dflt pass] (device: *mut CUdevice);
            cuCtxGetFlags = "cuCtxGetFlags" @ 7000 [dflt pass] (flags: *mut c_uint);
            cuCtxGetApiVersion = "cuCtxGetApiVersion" @ 3020 [dflt pass] (ctx: CUcontext, version: *mut c_uint);
            cuCtxSynchronize = "cuCtxSynchronize" @ 2000 [dflt pass] ();
            cuCtxGetLimit = "cuCtxGetLimit" @ 3010 [dflt pass] (pvalue: *mut usize, limit: CUlimit);
            cuCtxSetLimit = "cuCtxSetLimit" @ 3010 [dflt pass] (limit: CUlimit, value: usize);
            cuCtxGetStreamPriorityRange = "cuCtxGetStreamPriorityRange" @ 5050 [dflt pass] (least_priority: *mut c_int, greatest_priority: *mut c_int);

            // ---- modules and functions ------------------------------------------------------
            cuModuleLoad = "cuModuleLoad" @ 2000 [dflt hook] (module: *mut CUmodule, fname: *const c_char);
            cuModuleLoadData = "cuModuleLoadData" @ 2000 [dflt hook] (module: *mut CUmodule, image: *const c_void);
            cuModuleLoadDataEx = "cuModuleLoadDataEx" @ 2010 [dflt hook] (module: *mut CUmodule, image: *const c_void, num_options: c_uint, options: *mut CUjit_option, option_values: *mut *mut c_void);
            cuModuleLoadFatBinary = "cuModuleLoadFatBinary" @ 2000 [dflt hook] (module: *mut CUmodule, fat_cubin: *const c_void);
            cuModuleUnload = "cuModuleUnload" @ 2000 [dflt hook] (hmod: CUmodule);
            cuModuleGetFunction = "cuModuleGetFunction" @ 2000 [dflt pass] (hfunc: *mut CUfunction, hmod: CUmodule, name: *const c_char);
            cuModuleGetGlobal_v2 = "cuModuleGetGlobal" @ 3020 [dflt pass] (dptr: *mut CUdeviceptr, bytes: *mut usize, hmod: CUmodule, name: *const c_char);
            cuFuncGetAttribute = "cuFuncGetAttribute" @ 2020 [dflt pass] (pi: *mut c_int, attrib: CUfunction_attribute, hfunc: CUfunction);
            cuFuncSetAttribute = "cuFuncSetAttribute" @ 9000 [dflt pass] (hfunc: CUfunction, attrib: CUfunction_attribute, value: c_int);
            cuFuncSetCacheConfig = "cuFuncSetCacheConfig" @ 3000 [dflt pass] (hfunc: CUfunction, config: c_int);
            cuOccupancyMaxActiveBlocksPerMultiprocessor = "cuOccupancyMaxActiveBlocksPerMultiprocessor" @ 6050 [dflt pass] (num_blocks: *mut c_int, func: CUfunction, block_size: c_int, dynamic_smem_size: usize);

            // ---- memory: information, linear device memory, host memory ---------------------
            cuMemGetInfo_v2 = "cuMemGetInfo" @ 3020 [dflt hook] (free: *mut usize, total: *mut usize);
            cuMemAlloc_v2 = "cuMemAlloc" @ 3020 [dflt hook] (dptr: *mut CUdeviceptr, bytesize: usize);
            cuMemAllocPitch_v2 = "cuMemAllocPitch" @ 3020 [dflt hook] (dptr: *mut CUdeviceptr, p_pitch: *mut usize, width_in_bytes: usize, height: usize, element_size_bytes: c_uint);
            cuMemFree_v2 = "cuMemFree" @ 3020 [dflt hook] (dptr: CUdeviceptr);
            cuMemGetAddressRange_v2 = "cuMemGetAddressRange" @ 3020 [dflt pass] (pbase: *mut CUdeviceptr, psize: *mut usize, dptr: CUdeviceptr);
            cuMemAllocManaged = "cuMemAllocManaged" @ 6000 [dflt hook] (dptr: *mut CUdeviceptr, bytesize: usize, flags: c_uint);
            cuMemAllocHost_v2 = "cuMemAllocHost" @ 3020 [dflt pass] (pp: *mut *mut c_void, bytesize: usize);
            cuMemHostAlloc = "cuMemHostAlloc" @ 2020 [dflt pass] (pp: *mut *mut c_void, bytesize: usize, flags: c_uint);
            cuMemFreeHost = "cuMemFreeHost" @ 2000 [dflt pass] (p: *mut c_void);
            cuMemHostGetDevicePointer_v2 = "cuMemHostGetDevicePointer" @ 3020 [dflt pass] (pdptr: *mut CUdeviceptr, p: *mut c_void, flags: c_uint);
            cuMemHostRegister_v2 = "cuMemHostRegister" @ 6050 [dflt pass] (p: *mut c_void, bytesize: usize, flags: c_uint);
            cuMemHostUnregister = "cuMemHostUnregister" @ 4000 [dflt pass] (p: *mut c_void);
            cuPointerGetAttribute = "cuPointerGetAttribute" @ 4000 [dflt pass] (data: *mut c_void, attribute: CUpointer_attribute, ptr: CUdeviceptr);

            // ---- copies and sets ------------------------------------------------------------
            cuMemcpy = "cuMemcpy" @ 4000 [dflt pass] (dst: CUdeviceptr, src: CUdeviceptr, byte_count: usize);
            cuMemcpy_ptds = "cuMemcpy" @ 7000 [ptds pass] (dst: CUdeviceptr, src: CUdeviceptr, byte_count: usize);
            cuMemcpyAsync = "cuMemcpyAsync" @ 4000 [dflt pass] (dst: CUdeviceptr, src: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemcpyAsync_ptsz = "cuMemcpyAsync" @ 7000 [ptds pass] (dst: CUdeviceptr, src: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemcpyHtoD_v2 = "cuMemcpyHtoD" @ 3020 [dflt pass] (dst_device: CUdeviceptr, src_host: *const c_void, byte_count: usize);
            cuMemcpyHtoD_v2_ptds = "cuMemcpyHtoD" @ 7000 [ptds pass] (dst_device: CUdeviceptr, src_host: *const c_void, byte_count: usize);
            cuMemcpyDtoH_v2 = "cuMemcpyDtoH" @ 3020 [dflt pass] (dst_host: *mut c_void, src_device: CUdeviceptr, byte_count: usize);
            cuMemcpyDtoH_v2_ptds = "cuMemcpyDtoH" @ 7000 [ptds pass] (dst_host: *mut c_void, src_device: CUdeviceptr, byte_count: usize);
            cuMemcpyDtoD_v2 = "cuMemcpyDtoD" @ 3020 [dflt pass] (dst_device: CUdeviceptr, src_device: CUdeviceptr, byte_count: usize);
            cuMemcpyDtoD_v2_ptds = "cuMemcpyDtoD" @ 7000 [ptds pass] (dst_device: CUdeviceptr, src_device: CUdeviceptr, byte_count: usize);
            cuMemcpyHtoDAsync_v2 = "cuMemcpyHtoDAsync" @ 3020 [dflt pass] (dst_device: CUdeviceptr, src_host: *const c_void, byte_count: usize, h_stream: CUstream);
            cuMemcpyHtoDAsync_v2_ptsz = "cuMemcpyHtoDAsync" @ 7000 [ptds pass] (dst_device: CUdeviceptr, src_host: *const c_void, byte_count: usize, h_stream: CUstream);
            cuMemcpyDtoHAsync_v2 = "cuMemcpyDtoHAsync" @ 3020 [dflt pass] (dst_host: *mut c_void, src_device: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemcpyDtoHAsync_v2_ptsz = "cuMemcpyDtoHAsync" @ 7000 [ptds pass] (dst_host: *mut c_void, src_device: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemcpyDtoDAsync_v2 = "cuMemcpyDtoDAsync" @ 3020 [dflt pass] (dst_device: CUdeviceptr, src_device: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemcpyDtoDAsync_v2_ptsz = "cuMemcpyDtoDAsync" @ 7000 [ptds pass] (dst_device: CUdeviceptr, src_device: CUdeviceptr, byte_count: usize, h_stream: CUstream);
            cuMemsetD8_v2 = "cuMemsetD8" @ 3020 [dflt pass] (dst_device: CUdeviceptr, uc: c_uchar, n: usize);
            cuMemsetD8_v2_ptds = "cuMemsetD8" @ 7000 [ptds pass] (dst_device: CUdeviceptr, uc: c_uchar, n: usize);
            cuMemsetD32_v2 = "cuMemsetD32" @ 3020 [dflt pass] (dst_device: CUdeviceptr, ui: c_uint, n: usize);
            cuMemsetD32_v2_ptds = "cuMemsetD32" @ 7000 [ptds pass] (dst_device: CUdeviceptr, ui: c_uint, n: usize);
            cuMemsetD8Async = "cuMemsetD8Async" @ 3020 [dflt pass] (dst_device: CUdeviceptr, uc: c_uchar, n: usize, h_stream: CUstream);
            cuMemsetD8Async_ptsz = "cuMemsetD8Async" @ 7000 [ptds pass] (dst_device: CUdeviceptr, uc: c_uchar, n: usize, h_stream: CUstream);
            cuMemsetD32Async = "cuMemsetD32Async" @ 3020 [dflt pass] (dst_device: CUdeviceptr, ui: c_uint, n: usize, h_stream: CUstream);
            cuMemsetD32Async_ptsz = "cuMemsetD32Async" @ 7000 [ptds pass] (dst_device: CUdeviceptr, ui: c_uint, n: usize, h_stream: CUstream);

            // ---- arrays -------------------------------------------------------------------------
            cuArrayCreate_v2 = "cuArrayCreate" @ 3020 [dflt hook] (p_handle: *mut CUarray, p_allocate_array: *const CUDA_ARRAY_DESCRIPTOR);
            cuArray3DCreate_v2 = "cuArray3DCreate" @ 3020 [dflt hook] (p_handle: *mut CUarray, p_allocate_array: *const CUDA_ARRAY3D_DESCRIPTOR);
            cuArrayDestroy = "cuArrayDestroy" @ 2000 [dflt hook] (h_array: CUarray);
            cuMipmappedArrayCreate = "cuMipmappedArrayCreate" @ 5000 [dflt hook] (p_handle: *mut CUmipmappedArray, p_desc: *const CUDA_ARRAY3D_DESCRIPTOR, num_mipmap_levels: c_uint);
            cuMipmappedArrayDestroy = "cuMipmappedArrayDestroy" @ 5000 [dflt hook] (h_mipmapped_array: CUmipmappedArray);
            cuArrayGetMemoryRequirements = "cuArrayGetMemoryRequirements" @ 11060 [dflt pass] (memory_requirements: *mut CUDA_ARRAY_MEMORY_REQUIREMENTS, array: CUarray, device: CUdevice);
            cuMipmappedArrayGetMemoryRequirements = "cuMipmappedArrayGetMemoryRequirements" @ 11060 [dflt pass] (memory_requirements: *mut CUDA_ARRAY_MEMORY_REQUIREMENTS, mipmap: CUmipmappedArray, device: CUdevice);

            // ---- stream-ordered allocation and pools --------------------------------------------
            cuMemAllocAsync = "cuMemAllocAsync" @ 11020 [dflt hook] (dptr: *mut CUdeviceptr, bytesize: usize, h_stream: CUstream);
            cuMemAllocAsync_ptsz = "cuMemAllocAsync" @ 11020 [ptds hook] (dptr: *mut CUdeviceptr, bytesize: usize, h_stream: CUstream);
            cuMemAllocFromPoolAsync = "cuMemAllocFromPoolAsync" @ 11020 [dflt hook] (dptr: *mut CUdeviceptr, bytesize: usize, pool: CUmemoryPool, h_stream: CUstream);
            cuMemAllocFromPoolAsync_ptsz = "cuMemAllocFromPoolAsync" @ 11020 [ptds hook] (dptr: *mut CUdeviceptr, bytesize: usize, pool: CUmemoryPool, h_stream: CUstream);
            cuMemFreeAsync = "cuMemFreeAsync" @ 11020 [dflt hook] (dptr: CUdeviceptr, h_stream: CUstream);
            cuMemFreeAsync_ptsz = "cuMemFreeAsync" @ 11020 [ptds hook] (dptr: CUdeviceptr, h_stream: CUstream);
            cuMemPoolCreate = "cuMemPoolCreate" @ 11020 [dflt pass] (pool: *mut CUmemoryPool, pool_props: *const CUmemPoolProps);
            cuMemPoolDestroy = "cuMemPoolDestroy" @ 11020 [dflt pass] (pool: CUmemoryPool);
            cuMemPoolTrimTo = "cuMemPoolTrimTo" @ 11020 [dflt pass] (pool: CUmemoryPool, min_bytes_to_keep: usize);
            cuMemPoolSetAttribute = "cuMemPoolSetAttribute" @ 11020 [dflt pass] (pool: CUmemoryPool, attr: CUmemPool_attribute, value: *mut c_void);
            cuMemPoolGetAttribute = "cuMemPoolGetAttribute" @ 11020 [dflt pass] (pool: CUmemoryPool, attr: CUmemPool_attribute, value: *mut c_void);

            // ---- virtual memory management ------------------------------------------------------
            cuMemCreate = "cuMemCreate" @ 10020 [dflt hook] (handle: *mut CUmemGenericAllocationHandle, size: usize, prop: *const CUmemAllocationProp, flags: c_ulonglong);
            cuMemRelease = "cuMemRelease" @ 10020 [dflt hook] (handle: CUmemGenericAllocationHandle);
            cuMemAddressReserve = "cuMemAddressReserve" @ 10020 [dflt pass] (ptr: *mut CUdeviceptr, size: usize, alignment: usize, addr: CUdeviceptr, flags: c_ulonglong);
            cuMemAddressFree = "cuMemAddressFree" @ 10020 [dflt pass] (ptr: CUdeviceptr, size: usize);
            cuMemMap = "cuMemMap" @ 10020 [dflt pass] (ptr: CUdeviceptr, size: usize, offset: usize, handle: CUmemGenericAllocationHandle, flags: c_ulonglong);
            cuMemUnmap = "cuMemUnmap" @ 10020 [dflt pass] (ptr: CUdeviceptr, size: usize);
            cuMemSetAccess = "cuMemSetAccess" @ 10020 [dflt pass] (ptr: CUdeviceptr, size: usize, desc: *const CUmemAccessDesc, count: usize);
            cuMemGetAllocationGranularity = "cuMemGetAllocationGranularity" @ 10020 [dflt pass] (granularity: *mut usize, prop: *const CUmemAllocationProp, option: CUmemAllocationGranularity_flags);
            cuMemGetAllocationPropertiesFromHandle = "cuMemGetAllocationPropertiesFromHandle" @ 10020 [dflt pass] (prop: *mut CUmemAllocationProp, handle: CUmemGenericAllocationHandle);
            cuMemRetainAllocationHandle = "cuMemRetainAllocationHandle" @ 11000 [dflt pass] (handle: *mut CUmemGenericAllocationHandle, addr: *mut c_void);

            // ---- streams and events -------------------------------------------------------------
            cuStreamCreate = "cuStreamCreate" @ 2000 [dflt pass] (ph_stream: *mut CUstream, flags: c_uint);
            cuStreamCreateWithPriority = "cuStreamCreateWithPriority" @ 5050 [dflt pass] (ph_stream: *mut CUstream, flags: c_uint, priority: c_int);
            cuStreamDestroy_v2 = "cuStreamDestroy" @ 4000 [dflt pass] (h_stream: CUstream);
            cuStreamSynchronize = "cuStreamSynchronize" @ 2000 [dflt pass] (h_stream: CUstream);
            cuStreamSynchronize_ptsz = "cuStreamSynchronize" @ 7000 [ptds pass] (h_stream: CUstream);
            cuStreamQuery = "cuStreamQuery" @ 2000 [dflt pass] (h_stream: CUstream);
            cuStreamQuery_ptsz = "cuStreamQuery" @ 7000 [ptds pass] (h_stream: CUstream);
            cuStreamWaitEvent = "cuStreamWaitEvent" @ 3020 [dflt pass] (h_stream: CUstream, h_event: CUevent, flags: c_uint);
            cuStreamWaitEvent_ptsz = "cuStreamWaitEvent" @ 7000 [ptds pass] (h_stream: CUstream, h_event: CUevent, flags: c_uint);
            cuStreamGetPriority = "cuStreamGetPriority" @ 5050 [dflt pass] (h_stream: CUstream, priority: *mut c_int);
            cuStreamGetPriority_ptsz = "cuStreamGetPriority" @ 7000 [ptds pass] (h_stream: CUstream, priority: *mut c_int);
            cuStreamGetFlags = "cuStreamGetFlags" @ 5050 [dflt pass] (h_stream: CUstream, flags: *mut c_uint);
            cuStreamGetFlags_ptsz = "cuStreamGetFlags" @ 7000 [ptds pass] (h_stream: CUstream, flags: *mut c_uint);
            cuStreamBeginCapture_v2 = "cuStreamBeginCapture" @ 10010 [dflt pass] (h_stream: CUstream, mode: CUstreamCaptureMode);
            cuStreamBeginCapture_v2_ptsz = "cuStreamBeginCapture" @ 10010 [ptds pass] (h_stream: CUstream, mode: CUstreamCaptureMode);
            cuStreamEndCapture = "cuStreamEndCapture" @ 10000 [dflt pass] (h_stream: CUstream, ph_graph: *mut CUgraph);
            cuStreamEndCapture_ptsz = "cuStreamEndCapture" @ 10000 [ptds pass] (h_stream: CUstream, ph_graph: *mut CUgraph);
            cuEventCreate = "cuEventCreate" @ 2000 [dflt pass] (ph_event: *mut CUevent, flags: c_uint);
            cuEventRecord = "cuEventRecord" @ 2000 [dflt pass] (h_event: CUevent, h_stream: CUstream);
            cuEventRecord_ptsz = "cuEventRecord" @ 7000 [ptds pass] (h_event: CUevent, h_stream: CUstream);
            cuEventQuery = "cuEventQuery" @ 2000 [dflt pass] (h_event: CUevent);
            cuEventSynchronize = "cuEventSynchronize" @ 2000 [dflt pass] (h_event: CUevent);
            cuEventElapsedTime = "cuEventElapsedTime" @ 2000 [dflt pass] (p_milliseconds: *mut f32, h_start: CUevent, h_end: CUevent);
            cuEventElapsedTime_v2 = "cuEventElapsedTime" @ 12080 [dflt pass] (p_milliseconds: *mut f32, h_start: CUevent, h_end: CUevent);
            cuEventDestroy_v2 = "cuEventDestroy" @ 4000 [dflt pass] (h_event: CUevent);

            // ---- launches -----------------------------------------------------------------------
            cuLaunchKernel = "cuLaunchKernel" @ 4000 [dflt gate] (f: CUfunction, grid_dim_x: c_uint, grid_dim_y: c_uint, grid_dim_z: c_uint, block_dim_x: c_uint, block_dim_y: c_uint, block_dim_z: c_uint, shared_mem_bytes: c_uint, h_stream: CUstream, kernel_params: *mut *mut c_void, extra: *mut *mut c_void);
            cuLaunchKernel_ptsz = "cuLaunchKernel" @ 7000 [ptds gate] (f: CUfunction, grid_dim_x: c_uint, grid_dim_y: c_uint, grid_dim_z: c_uint, block_dim_x: c_uint, block_dim_y: c_uint, block_dim_z: c_uint, shared_mem_bytes: c_uint, h_stream: CUstream, kernel_params: *mut *mut c_void, extra: *mut *mut c_void);
            cuLaunchKernelEx = "cuLaunchKernelEx" @ 11060 [dflt gate] (config: *const CUlaunchConfig, f: CUfunction, kernel_params: *mut *mut c_void, extra: *mut *mut c_void);
            cuLaunchKernelEx_ptsz = "cuLaunchKernelEx" @ 11060 [ptds gate] (config: *const CUlaunchConfig, f: CUfunction, kernel_params: *mut *mut c_void, extra: *mut *mut c_void);
            cuLaunchCooperativeKernel = "cuLaunchCooperativeKernel" @ 9000 [dflt gate] (f: CUfunction, grid_dim_x: c_uint, grid_dim_y: c_uint, grid_dim_z: c_uint, block_dim_x: c_uint, block_dim_y: c_uint, block_dim_z: c_uint, shared_mem_bytes: c_uint, h_stream: CUstream, kernel_params: *mut *mut c_void);
            cuLaunchCooperativeKernel_ptsz = "cuLaunchCooperativeKernel" @ 9000 [ptds gate] (f: CUfunction, grid_dim_x: c_uint, grid_dim_y: c_uint, grid_dim_z: c_uint, block_dim_x: c_uint, block_dim_y: c_uint, block_dim_z: c_uint, shared_mem_bytes: c_uint, h_stream: CUstream, kernel_params: *mut *mut c_void);
            cuLaunchHostFunc = "cuLaunchHostFunc" @ 10000 [dflt pass] (h_stream: CUstream, func: CUhostFn, user_data: *mut c_void);
            cuLaunchHostFunc_ptsz = "cuLaunchHostFunc" @ 10000 [ptds pass] (h_stream: CUstream, func: CUhostFn, user_data: *mut c_void);

            // ---- graphs -------------------------------------------------------------------------
            cuGraphCreate = "cuGraphCreate" @ 10000 [dflt pass] (ph_graph: *mut CUgraph, flags: c_uint);
            cuGraphDestroy = "cuGraphDestroy" @ 10000 [dflt hook] (h_graph: CUgraph);
            cuGraphAddKernelNode_v2 = "cuGraphAddKernelNode" @ 12000 [dflt pass] (ph_graph_node: *mut CUgraphNode, h_graph: CUgraph, dependencies: *const CUgraphNode, num_dependencies: usize, node_params: *const CUDA_KERNEL_NODE_PARAMS);
            cuGraphAddMemAllocNode = "cuGraphAddMemAllocNode" @ 11040 [dflt hook] (ph_graph_node: *mut CUgraphNode, h_graph: CUgraph, dependencies: *const CUgraphNode, num_dependencies: usize, node_params: *mut CUDA_MEM_ALLOC_NODE_PARAMS);
            cuGraphAddMemFreeNode = "cuGraphAddMemFreeNode" @ 11040 [dflt pass] (ph_graph_node: *mut CUgraphNode, h_graph: CUgraph, dependencies: *const CUgraphNode, num_dependencies: usize, dptr: CUdeviceptr);
            cuGraphInstantiateWithFlags = "cuGraphInstantiateWithFlags" @ 11040 [dflt pass] (ph_graph_exec: *mut CUgraphExec, h_graph: CUgraph, flags: c_ulonglong);
            cuGraphExecDestroy = "cuGraphExecDestroy" @ 10000 [dflt pass] (h_graph_exec: CUgraphExec);
            cuGraphLaunch = "cuGraphLaunch" @ 10000 [dflt gate] (h_graph_exec: CUgraphExec, h_stream: CUstream);
            cuGraphLaunch_ptsz = "cuGraphLaunch" @ 10000 [ptds gate] (h_graph_exec: CUgraphExec, h_stream: CUstream);
        }
    };
}
