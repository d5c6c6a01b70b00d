//! The one table of HIP runtime entry points this project knows.
//!
//! Row: `symbol = "node" [hook|gate|pass] (args) -> return type;`
//! - `node`: the symbol version node the real `libamdhip64.so` exports the symbol under,
//!   placed as AMD's linker map (`hipamd/src/hip_hcc.map.in`) places it; each node inherits
//!   the previous one (see [`crate::NODES`]).
//! - `hook`: vgpu intercepts it with a hand-written body (memory: charge or credit; device
//!   memory queries); `gate`: a launch (the compute cap's gate, then the real call); `pass`:
//!   let through.
//!
//! Consumers pass the name of their own `macro_rules!` macro, which receives every row: the
//! simulated library turns rows into exports and `.symver` directives, this crate into
//! [`crate::PROCS`] (the `hipGetProcAddress` table and the linker version script).

/// Calls `$m!` with every HIP entry point (see the module docs for the row format).
#[macro_export]
macro_rules! hip_api {
    ($m:path) => {
        $m! {
            // ---- initialisation, versions, errors, entry points ----------------------------
            hipInit = "hip_4.2" [pass] (flags: c_uint) -> hipError_t;
            hipDriverGetVersion = "hip_4.2" [pass] (driver_version: *mut c_int) -> hipError_t;
            hipRuntimeGetVersion = "hip_4.2" [pass] (runtime_version: *mut c_int) -> hipError_t;
            hipGetErrorName = "hip_4.2" [pass] (error: hipError_t) -> *const c_char;
            hipGetErrorString = "hip_4.2" [pass] (error: hipError_t) -> *const c_char;
            hipDrvGetErrorName = "hip_5.3" [pass] (error: hipError_t, p_str: *mut *const c_char) -> hipError_t;
            hipDrvGetErrorString = "hip_5.3" [pass] (error: hipError_t, p_str: *mut *const c_char) -> hipError_t;
            hipGetLastError = "hip_4.2" [pass] () -> hipError_t;
            hipPeekAtLastError = "hip_4.2" [pass] () -> hipError_t;
            hipExtGetLastError = "hip_6.0" [pass] () -> hipError_t;
            hipGetProcAddress = "hip_6.1" [hook] (symbol: *const c_char, pfn: *mut *mut c_void, hip_version: c_int, flags: u64, symbol_status: *mut hipDriverProcAddressQueryResult) -> hipError_t;
            hipGetDriverEntryPoint = "hip_7.1" [hook] (symbol: *const c_char, func_ptr: *mut *mut c_void, flags: c_ulonglong, driver_status: *mut hipDriverEntryPointQueryResult) -> hipError_t;
            hipGetDriverEntryPoint_spt = "hip_7.1" [hook] (symbol: *const c_char, func_ptr: *mut *mut c_void, flags: c_ulonglong, driver_status: *mut hipDriverEntryPointQueryResult) -> hipError_t;

            // ---- devices ---------------------------------------------------------------------
            hipGetDeviceCount = "hip_4.2" [pass] (count: *mut c_int) -> hipError_t;
            hipGetDevice = "hip_4.2" [pass] (device: *mut c_int) -> hipError_t;
            hipSetDevice = "hip_4.2" [hook] (device: c_int) -> hipError_t;
            hipDeviceGet = "hip_4.2" [pass] (device: *mut hipDevice_t, ordinal: c_int) -> hipError_t;
            hipDeviceGetName = "hip_4.2" [pass] (name: *mut c_char, len: c_int, device: hipDevice_t) -> hipError_t;
            hipDeviceGetUuid = "hip_5.1" [pass] (uuid: *mut hipUUID, device: hipDevice_t) -> hipError_t;
            hipDeviceGetPCIBusId = "hip_4.2" [pass] (pci_bus_id: *mut c_char, len: c_int, device: c_int) -> hipError_t;
            hipDeviceGetAttribute = "hip_4.2" [pass] (pi: *mut c_int, attr: hipDeviceAttribute_t, device: c_int) -> hipError_t;
            hipDeviceComputeCapability = "hip_4.2" [pass] (major: *mut c_int, minor: *mut c_int, device: hipDevice_t) -> hipError_t;
            hipDeviceTotalMem = "hip_4.2" [hook] (bytes: *mut usize, device: hipDevice_t) -> hipError_t;
            hipGetDeviceProperties = "hip_4.2" [hook] (prop: *mut hipDeviceProp_tR0000, device: c_int) -> hipError_t;
            hipGetDevicePropertiesR0000 = "hip_4.2" [hook] (prop: *mut hipDeviceProp_tR0000, device: c_int) -> hipError_t;
            hipGetDevicePropertiesR0600 = "hip_6.0" [hook] (prop: *mut hipDeviceProp_tR0600, device: c_int) -> hipError_t;
            hipDeviceSynchronize = "hip_4.2" [pass] () -> hipError_t;
            hipDeviceReset = "hip_4.2" [hook] () -> hipError_t;
            hipGetDeviceFlags = "hip_4.2" [pass] (flags: *mut c_uint) -> hipError_t;
            hipSetDeviceFlags = "hip_4.2" [pass] (flags: c_uint) -> hipError_t;
            hipDeviceGetByPCIBusId = "hip_4.2" [pass] (device: *mut c_int, pci_bus_id: *const c_char) -> hipError_t;
            hipDeviceGetLimit = "hip_4.2" [pass] (value: *mut usize, limit: hipLimit_t) -> hipError_t;
            hipDeviceSetLimit = "hip_5.3" [pass] (limit: hipLimit_t, value: usize) -> hipError_t;
            hipDeviceGetStreamPriorityRange = "hip_4.2" [pass] (least_priority: *mut c_int, greatest_priority: *mut c_int) -> hipError_t;
            hipDeviceCanAccessPeer = "hip_4.2" [pass] (can_access: *mut c_int, device: c_int, peer_device: c_int) -> hipError_t;
            hipDeviceEnablePeerAccess = "hip_4.2" [pass] (peer_device: c_int, flags: c_uint) -> hipError_t;
            hipDeviceDisablePeerAccess = "hip_4.2" [pass] (peer_device: c_int) -> hipError_t;

            // ---- contexts (deprecated): each moves the calling thread's current device --------
            hipCtxCreate = "hip_4.2" [hook] (ctx: *mut hipCtx_t, flags: c_uint, device: hipDevice_t) -> hipError_t;
            hipCtxDestroy = "hip_4.2" [hook] (ctx: hipCtx_t) -> hipError_t;
            hipCtxSetCurrent = "hip_4.2" [hook] (ctx: hipCtx_t) -> hipError_t;
            hipCtxPushCurrent = "hip_4.2" [hook] (ctx: hipCtx_t) -> hipError_t;
            hipCtxPopCurrent = "hip_4.2" [hook] (ctx: *mut hipCtx_t) -> hipError_t;
            hipCtxGetCurrent = "hip_4.2" [pass] (ctx: *mut hipCtx_t) -> hipError_t;

            // ---- device memory -----------------------------------------------------------------
            hipMalloc = "hip_4.2" [hook] (ptr: *mut *mut c_void, size: usize) -> hipError_t;
            hipExtMallocWithFlags = "hip_4.2" [hook] (ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t;
            hipMallocManaged = "hip_4.2" [hook] (ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t;
            hipMallocPitch = "hip_4.2" [hook] (ptr: *mut *mut c_void, pitch: *mut usize, width: usize, height: usize) -> hipError_t;
            hipMemAllocPitch = "hip_4.2" [hook] (dptr: *mut hipDeviceptr_t, pitch: *mut usize, width_in_bytes: usize, height: usize, element_size_bytes: c_uint) -> hipError_t;
            hipMalloc3D = "hip_4.2" [hook] (pitched: *mut hipPitchedPtr, extent: hipExtent) -> hipError_t;
            hipMallocArray = "hip_4.2" [hook] (array: *mut hipArray_t, desc: *const hipChannelFormatDesc, width: usize, height: usize, flags: c_uint) -> hipError_t;
            hipFreeArray = "hip_4.2" [hook] (array: hipArray_t) -> hipError_t;
            hipMalloc3DArray = "hip_4.2" [hook] (array: *mut hipArray_t, desc: *const hipChannelFormatDesc, extent: hipExtent, flags: c_uint) -> hipError_t;
            hipArrayCreate = "hip_4.2" [hook] (array: *mut hipArray_t, desc: *const HIP_ARRAY_DESCRIPTOR) -> hipError_t;
            hipArray3DCreate = "hip_4.2" [hook] (array: *mut hipArray_t, desc: *const HIP_ARRAY3D_DESCRIPTOR) -> hipError_t;
            hipArrayDestroy = "hip_4.3" [hook] (array: hipArray_t) -> hipError_t;
            hipMallocMipmappedArray = "hip_4.2" [hook] (array: *mut hipMipmappedArray_t, desc: *const hipChannelFormatDesc, extent: hipExtent, num_levels: c_uint, flags: c_uint) -> hipError_t;
            hipMipmappedArrayCreate = "hip_4.2" [hook] (array: *mut hipMipmappedArray_t, desc: *mut HIP_ARRAY3D_DESCRIPTOR, num_levels: c_uint) -> hipError_t;
            hipFreeMipmappedArray = "hip_4.2" [hook] (array: hipMipmappedArray_t) -> hipError_t;
            hipMipmappedArrayDestroy = "hip_4.2" [hook] (array: hipMipmappedArray_t) -> hipError_t;
            hipFree = "hip_4.2" [hook] (ptr: *mut c_void) -> hipError_t;
            hipMemGetInfo = "hip_4.2" [hook] (free: *mut usize, total: *mut usize) -> hipError_t;
            hipMemGetAddressRange = "hip_4.2" [pass] (base: *mut hipDeviceptr_t, size: *mut usize, dptr: hipDeviceptr_t) -> hipError_t;
            hipPointerGetAttributes = "hip_4.2" [pass] (attributes: *mut hipPointerAttribute_t, ptr: *const c_void) -> hipError_t;
            hipMemAdvise = "hip_4.2" [pass] (dev_ptr: *const c_void, count: usize, advice: hipMemoryAdvise, device: c_int) -> hipError_t;
            hipMemPrefetchAsync = "hip_4.2" [pass] (dev_ptr: *const c_void, count: usize, device: c_int, stream: hipStream_t) -> hipError_t;
            hipIpcGetMemHandle = "hip_4.2" [pass] (handle: *mut hipIpcMemHandle_t, dev_ptr: *mut c_void) -> hipError_t;
            hipIpcOpenMemHandle = "hip_4.2" [hook] (dev_ptr: *mut *mut c_void, handle: hipIpcMemHandle_t, flags: c_uint) -> hipError_t;
            hipIpcCloseMemHandle = "hip_4.2" [hook] (dev_ptr: *mut c_void) -> hipError_t;

            // ---- stream-ordered allocation and pools ----------------------------------------
            hipMallocAsync = "hip_5.1" [hook] (ptr: *mut *mut c_void, size: usize, stream: hipStream_t) -> hipError_t;
            hipMallocFromPoolAsync = "hip_5.1" [hook] (ptr: *mut *mut c_void, size: usize, pool: hipMemPool_t, stream: hipStream_t) -> hipError_t;
            hipFreeAsync = "hip_5.1" [hook] (ptr: *mut c_void, stream: hipStream_t) -> hipError_t;
            hipDeviceGetDefaultMemPool = "hip_5.1" [pass] (pool: *mut hipMemPool_t, device: c_int) -> hipError_t;
            hipDeviceGetMemPool = "hip_5.1" [pass] (pool: *mut hipMemPool_t, device: c_int) -> hipError_t;
            hipMemPoolCreate = "hip_5.1" [pass] (pool: *mut hipMemPool_t, props: *const c_void) -> hipError_t;
            hipMemPoolDestroy = "hip_5.1" [hook] (pool: hipMemPool_t) -> hipError_t;
            hipMemPoolTrimTo = "hip_5.1" [pass] (pool: hipMemPool_t, min_bytes_to_hold: usize) -> hipError_t;

            // ---- virtual memory management ---------------------------------------------------
            hipMemCreate = "hip_5.1" [hook] (handle: *mut hipMemGenericAllocationHandle_t, size: usize, prop: *const hipMemAllocationProp, flags: c_ulonglong) -> hipError_t;
            hipMemRelease = "hip_5.1" [hook] (handle: hipMemGenericAllocationHandle_t) -> hipError_t;
            hipMemAddressReserve = "hip_5.1" [pass] (ptr: *mut *mut c_void, size: usize, alignment: usize, addr: *mut c_void, flags: c_ulonglong) -> hipError_t;
            hipMemAddressFree = "hip_5.1" [pass] (ptr: *mut c_void, size: usize) -> hipError_t;
            hipMemMap = "hip_5.1" [pass] (ptr: *mut c_void, size: usize, offset: usize, handle: hipMemGenericAllocationHandle_t, flags: c_ulonglong) -> hipError_t;
            hipMemUnmap = "hip_5.1" [pass] (ptr: *mut c_void, size: usize) -> hipError_t;
            hipMemSetAccess = "hip_5.1" [pass] (ptr: *mut c_void, size: usize, desc: *const c_void, count: usize) -> hipError_t;
            hipMemGetAllocationGranularity = "hip_5.1" [pass] (granularity: *mut usize, prop: *const hipMemAllocationProp, option: hipMemAllocationGranularity_flags) -> hipError_t;

            // ---- host memory (never device memory) ---------------------------------------------
            hipHostMalloc = "hip_4.2" [pass] (ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t;
            hipHostAlloc = "hip_4.2" [pass] (ptr: *mut *mut c_void, size: usize, flags: c_uint) -> hipError_t;
            hipMallocHost = "hip_4.2" [pass] (ptr: *mut *mut c_void, size: usize) -> hipError_t;
            hipMemAllocHost = "hip_4.2" [pass] (ptr: *mut *mut c_void, size: usize) -> hipError_t;
            hipHostFree = "hip_4.2" [pass] (ptr: *mut c_void) -> hipError_t;
            hipFreeHost = "hip_4.2" [pass] (ptr: *mut c_void) -> hipError_t;
            hipHostRegister = "hip_4.2" [pass] (ptr: *mut c_void, size: usize, flags: c_uint) -> hipError_t;
            hipHostUnregister = "hip_4.2" [pass] (ptr: *mut c_void) -> hipError_t;

            // ---- copies and sets -------------------------------------------------------------
            hipMemcpy = "hip_4.2" [pass] (dst: *mut c_void, src: *const c_void, size: usize, kind: hipMemcpyKind) -> hipError_t;
            hipMemcpy_spt = "hip_5.2" [pass] (dst: *mut c_void, src: *const c_void, size: usize, kind: hipMemcpyKind) -> hipError_t;
            hipMemcpyAsync = "hip_4.2" [pass] (dst: *mut c_void, src: *const c_void, size: usize, kind: hipMemcpyKind, stream: hipStream_t) -> hipError_t;
            hipMemcpyAsync_spt = "hip_5.2" [pass] (dst: *mut c_void, src: *const c_void, size: usize, kind: hipMemcpyKind, stream: hipStream_t) -> hipError_t;
            hipMemcpyHtoD = "hip_4.2" [pass] (dst: hipDeviceptr_t, src: *const c_void, size: usize) -> hipError_t;
            hipMemcpyDtoH = "hip_4.2" [pass] (dst: *mut c_void, src: hipDeviceptr_t, size: usize) -> hipError_t;
            hipMemcpyDtoD = "hip_4.2" [pass] (dst: hipDeviceptr_t, src: hipDeviceptr_t, size: usize) -> hipError_t;
            hipMemcpyPeer = "hip_4.2" [pass] (dst: *mut c_void, dst_device: c_int, src: *const c_void, src_device: c_int, size: usize) -> hipError_t;
            hipMemcpyPeerAsync = "hip_4.2" [pass] (dst: *mut c_void, dst_device: c_int, src: *const c_void, src_device: c_int, size: usize, stream: hipStream_t) -> hipError_t;
            hipMemset = "hip_4.2" [pass] (dst: *mut c_void, value: c_int, size: usize) -> hipError_t;
            hipMemset_spt = "hip_5.2" [pass] (dst: *mut c_void, value: c_int, size: usize) -> hipError_t;
            hipMemsetAsync = "hip_4.2" [pass] (dst: *mut c_void, value: c_int, size: usize, stream: hipStream_t) -> hipError_t;
            hipMemsetAsync_spt = "hip_5.3" [pass] (dst: *mut c_void, value: c_int, size: usize, stream: hipStream_t) -> hipError_t;
            hipMemsetD8 = "hip_4.2" [pass] (dst: hipDeviceptr_t, value: u8, count: usize) -> hipError_t;
            hipMemsetD32 = "hip_4.2" [pass] (dst: hipDeviceptr_t, value: c_int, count: usize) -> hipError_t;

            // ---- streams and events ----------------------------------------------------------
            hipStreamCreate = "hip_4.2" [pass] (stream: *mut hipStream_t) -> hipError_t;
            hipStreamCreateWithFlags = "hip_4.2" [pass] (stream: *mut hipStream_t, flags: c_uint) -> hipError_t;
            hipStreamCreateWithPriority = "hip_4.2" [pass] (stream: *mut hipStream_t, flags: c_uint, priority: c_int) -> hipError_t;
            hipStreamDestroy = "hip_4.2" [pass] (stream: hipStream_t) -> hipError_t;
            hipStreamSynchronize = "hip_4.2" [pass] (stream: hipStream_t) -> hipError_t;
            hipStreamSynchronize_spt = "hip_5.2" [pass] (stream: hipStream_t) -> hipError_t;
            hipStreamQuery = "hip_4.2" [pass] (stream: hipStream_t) -> hipError_t;
            hipStreamQuery_spt = "hip_5.2" [pass] (stream: hipStream_t) -> hipError_t;
            hipStreamWaitEvent = "hip_4.2" [pass] (stream: hipStream_t, event: hipEvent_t, flags: c_uint) -> hipError_t;
            hipStreamWaitEvent_spt = "hip_5.2" [pass] (stream: hipStream_t, event: hipEvent_t, flags: c_uint) -> hipError_t;
            hipStreamGetFlags = "hip_4.2" [pass] (stream: hipStream_t, flags: *mut c_uint) -> hipError_t;
            hipStreamGetPriority = "hip_4.2" [pass] (stream: hipStream_t, priority: *mut c_int) -> hipError_t;
            hipGetStreamDeviceId = "hip_4.2" [pass] (stream: hipStream_t) -> hipDeviceOrdinal;
            hipStreamAddCallback = "hip_4.2" [pass] (stream: hipStream_t, callback: hipStreamCallback_t, user_data: *mut c_void, flags: c_uint) -> hipError_t;
            hipLaunchHostFunc = "hip_5.3" [pass] (stream: hipStream_t, func: hipHostFn_t, user_data: *mut c_void) -> hipError_t;
            hipEventCreate = "hip_4.2" [pass] (event: *mut hipEvent_t) -> hipError_t;
            hipEventCreateWithFlags = "hip_4.2" [pass] (event: *mut hipEvent_t, flags: c_uint) -> hipError_t;
            hipEventDestroy = "hip_4.2" [pass] (event: hipEvent_t) -> hipError_t;
            hipEventRecord = "hip_4.2" [pass] (event: hipEvent_t, stream: hipStream_t) -> hipError_t;
            hipEventRecord_spt = "hip_5.2" [pass] (event: hipEvent_t, stream: hipStream_t) -> hipError_t;
            hipEventSynchronize = "hip_4.2" [pass] (event: hipEvent_t) -> hipError_t;
            hipEventQuery = "hip_4.2" [pass] (event: hipEvent_t) -> hipError_t;
            hipEventElapsedTime = "hip_4.2" [pass] (ms: *mut f32, start: hipEvent_t, stop: hipEvent_t) -> hipError_t;

            // ---- modules ---------------------------------------------------------------------
            hipModuleLoad = "hip_4.2" [hook] (module: *mut hipModule_t, fname: *const c_char) -> hipError_t;
            hipModuleLoadData = "hip_4.2" [hook] (module: *mut hipModule_t, image: *const c_void) -> hipError_t;
            hipModuleLoadDataEx = "hip_4.2" [hook] (module: *mut hipModule_t, image: *const c_void, num_options: c_uint, options: *mut hipJitOption, option_values: *mut *mut c_void) -> hipError_t;
            hipModuleUnload = "hip_4.2" [hook] (module: hipModule_t) -> hipError_t;
            hipModuleGetFunction = "hip_4.2" [pass] (function: *mut hipFunction_t, module: hipModule_t, name: *const c_char) -> hipError_t;
            hipModuleGetGlobal = "hip_4.2" [hook] (dptr: *mut hipDeviceptr_t, bytes: *mut usize, module: hipModule_t, name: *const c_char) -> hipError_t;
            hipFuncGetAttribute = "hip_4.2" [pass] (value: *mut c_int, attrib: hipFunction_attribute, function: hipFunction_t) -> hipError_t;
            hipOccupancyMaxActiveBlocksPerMultiprocessor = "hip_4.2" [pass] (num_blocks: *mut c_int, f: *const c_void, block_size: c_int, dyn_shared_mem: usize) -> hipError_t;
            hipOccupancyMaxPotentialBlockSize = "hip_4.2" [pass] (grid_size: *mut c_int, block_size: *mut c_int, f: *const c_void, dyn_shared_mem: usize, block_size_limit: c_int) -> hipError_t;
            hipCreateSurfaceObject = "hip_4.2" [pass] (surface: *mut hipSurfaceObject_t, res_desc: *const c_void) -> hipError_t;
            hipDestroySurfaceObject = "hip_4.2" [pass] (surface: hipSurfaceObject_t) -> hipError_t;

            // ---- launches ----------------------------------------------------------------------
            hipModuleLaunchKernel = "hip_4.2" [gate] (f: hipFunction_t, grid_x: c_uint, grid_y: c_uint, grid_z: c_uint, block_x: c_uint, block_y: c_uint, block_z: c_uint, shared_mem_bytes: c_uint, stream: hipStream_t, kernel_params: *mut *mut c_void, extra: *mut *mut c_void) -> hipError_t;
            hipExtModuleLaunchKernel = "hip_4.2" [gate] (f: hipFunction_t, global_x: c_uint, global_y: c_uint, global_z: c_uint, local_x: c_uint, local_y: c_uint, local_z: c_uint, shared_mem_bytes: usize, stream: hipStream_t, kernel_params: *mut *mut c_void, extra: *mut *mut c_void, start_event: hipEvent_t, stop_event: hipEvent_t, flags: c_uint) -> hipError_t;
            hipModuleLaunchCooperativeKernel = "hip_5.5" [gate] (f: hipFunction_t, grid_x: c_uint, grid_y: c_uint, grid_z: c_uint, block_x: c_uint, block_y: c_uint, block_z: c_uint, shared_mem_bytes: c_uint, stream: hipStream_t, kernel_params: *mut *mut c_void) -> hipError_t;
            hipLaunchKernel = "hip_4.2" [gate] (function_address: *const c_void, num_blocks: dim3, dim_blocks: dim3, args: *mut *mut c_void, shared_mem_bytes: usize, stream: hipStream_t) -> hipError_t;
            hipLaunchKernel_spt = "hip_5.2" [gate] (function_address: *const c_void, num_blocks: dim3, dim_blocks: dim3, args: *mut *mut c_void, shared_mem_bytes: usize, stream: hipStream_t) -> hipError_t;
            hipLaunchKernelExC = "hip_6.5" [gate] (config: *const hipLaunchConfig_t, function_address: *const c_void, args: *mut *mut c_void) -> hipError_t;
            hipDrvLaunchKernelEx = "hip_6.5" [gate] (config: *const HIP_LAUNCH_CONFIG, f: hipFunction_t, params: *mut *mut c_void, extra: *mut *mut c_void) -> hipError_t;
            hipExtLaunchKernel = "hip_4.2" [gate] (function_address: *const c_void, num_blocks: dim3, dim_blocks: dim3, args: *mut *mut c_void, shared_mem_bytes: usize, stream: hipStream_t, start_event: hipEvent_t, stop_event: hipEvent_t, flags: c_int) -> hipError_t;
            hipLaunchCooperativeKernel = "hip_4.2" [gate] (f: *const c_void, grid_dim: dim3, block_dim: dim3, kernel_params: *mut *mut c_void, shared_mem_bytes: c_uint, stream: hipStream_t) -> hipError_t;
            hipLaunchCooperativeKernel_spt = "hip_5.2" [gate] (f: *const c_void, grid_dim: dim3, block_dim: dim3, kernel_params: *mut *mut c_void, shared_mem_bytes: c_uint, stream: hipStream_t) -> hipError_t;

            // ---- the compiler ABI of `<<<>>>` (hipcc-built programs) ---------------------------
            __hipPushCallConfiguration = "hip_4.2" [pass] (grid_dim: dim3, block_dim: dim3, shared_mem: usize, stream: hipStream_t) -> hipError_t;
            __hipPopCallConfiguration = "hip_4.2" [pass] (grid_dim: *mut dim3, block_dim: *mut dim3, shared_mem: *mut usize, stream: *mut hipStream_t) -> hipError_t;
            __hipRegisterFatBinary = "hip_4.2" [hook] (data: *const c_void) -> *mut *mut c_void;
            __hipRegisterFunction = "hip_4.2" [pass] (modules: *mut *mut c_void, host_function: *const c_void, device_function: *mut c_char, device_name: *const c_char, thread_limit: c_uint, tid: *mut c_void, bid: *mut c_void, block_dim: *mut dim3, grid_dim: *mut dim3, w_size: *mut c_int) -> ();
            __hipRegisterVar = "hip_4.2" [pass] (modules: *mut *mut c_void, var: *mut c_void, host_var: *mut c_char, device_var: *mut c_char, ext: c_int, size: usize, constant: c_int, global: c_int) -> ();
            __hipUnregisterFatBinary = "hip_4.2" [hook] (modules: *mut *mut c_void) -> ();

            // ---- graphs (stream capture of launches) -----------------------------------------
            hipStreamBeginCapture = "hip_4.3" [pass] (stream: hipStream_t, mode: hipStreamCaptureMode) -> hipError_t;
            hipStreamEndCapture = "hip_4.3" [pass] (stream: hipStream_t, graph: *mut hipGraph_t) -> hipError_t;
            hipStreamIsCapturing = "hip_4.3" [pass] (stream: hipStream_t, status: *mut hipStreamCaptureStatus) -> hipError_t;
            hipStreamGetCaptureInfo = "hip_4.5" [pass] (stream: hipStream_t, status: *mut hipStreamCaptureStatus, id: *mut c_ulonglong) -> hipError_t;
            hipStreamGetCaptureInfo_v2 = "hip_4.5" [pass] (stream: hipStream_t, status: *mut hipStreamCaptureStatus, id: *mut c_ulonglong, graph: *mut hipGraph_t, dependencies: *mut hipGraphNode_const_ptr, num_dependencies: *mut usize) -> hipError_t;
            hipGraphInstantiate = "hip_4.3" [pass] (exec: *mut hipGraphExec_t, graph: hipGraph_t, error_node: *mut hipGraphNode_t, log_buffer: *mut c_char, buffer_size: usize) -> hipError_t;
            hipGraphLaunch = "hip_4.3" [gate] (exec: hipGraphExec_t, stream: hipStream_t) -> hipError_t;
            hipGraphLaunch_spt = "hip_5.3" [gate] (exec: hipGraphExec_t, stream: hipStream_t) -> hipError_t;
            hipGraphExecDestroy = "hip_4.3" [pass] (exec: hipGraphExec_t) -> hipError_t;
            hipGraphDestroy = "hip_4.3" [hook] (graph: hipGraph_t) -> hipError_t;
            hipGraphCreate = "hip_4.3" [pass] (graph: *mut hipGraph_t, flags: c_uint) -> hipError_t;
            hipGraphAddMemAllocNode = "hip_5.5" [hook] (node: *mut hipGraphNode_t, graph: hipGraph_t, dependencies: *const hipGraphNode_t, num_dependencies: usize, params: *mut hipMemAllocNodeParams) -> hipError_t;
            hipGraphAddMemFreeNode = "hip_5.5" [pass] (node: *mut hipGraphNode_t, graph: hipGraph_t, dependencies: *const hipGraphNode_t, num_dependencies: usize, dev_ptr: *mut c_void) -> hipError_t;
            hipGraphDebugDotPrint = "hip_5.3" [pass] (graph: hipGraph_t, path: *const c_char, flags: c_uint) -> hipError_t;
        }
    };
}
