//! HIP handle types and the structs whose layout crosses the ABI (x86-64).
#![allow(non_camel_case_types, non_snake_case)]

use core::ffi::{c_char, c_int, c_uint, c_void};

pub type hipError_t = c_int;
pub type hipDevice_t = c_int;
pub type hipDeviceptr_t = *mut c_void;
pub type hipStream_t = *mut c_void;
/// A (deprecated) HIP context: which device a thread's calls go to.
pub type hipCtx_t = *mut c_void;
pub type hipEvent_t = *mut c_void;
pub type hipModule_t = *mut c_void;
pub type hipFunction_t = *mut c_void;
pub type hipMemPool_t = *mut c_void;
pub type hipArray_t = *mut c_void;
pub type hipMipmappedArray_t = *mut c_void;
/// `hipArray_Format` (an enum: `HIP_AD_FORMAT_*`).
pub type hipArray_Format = c_int;
/// `hipDriverEntryPointQueryResult`: 0 success, 1 symbol not found, 2 version not sufficient.
pub type hipDriverEntryPointQueryResult = c_int;
pub type hipGraph_t = *mut c_void;
pub type hipGraphExec_t = *mut c_void;
pub type hipGraphNode_t = *mut c_void;
pub type hipMemGenericAllocationHandle_t = *mut c_void;
pub type hipMemcpyKind = c_int;
pub type hipDeviceAttribute_t = c_int;
pub type hipStreamCaptureMode = c_int;
pub type hipStreamCaptureStatus = c_int;
pub type hipJitOption = c_int;
pub type hipMemAllocationGranularity_flags = c_int;
pub type hipDriverProcAddressQueryResult = c_int;
pub type hipLimit_t = c_int;
pub type hipFunction_attribute = c_int;
pub type hipMemoryAdvise = c_int;
pub type hipSurfaceObject_t = u64;
pub type hipGraphNode_const_ptr = *const hipGraphNode_t;
/// `void (*)(void* userData)`.
pub type hipHostFn_t = Option<unsafe extern "C" fn(*mut c_void)>;
/// `void (*)(hipStream_t stream, hipError_t status, void* userData)`.
pub type hipStreamCallback_t = Option<unsafe extern "C" fn(hipStream_t, hipError_t, *mut c_void)>;

/// The device ordinal `hipGetStreamDeviceId` returns (an `int`, not an error code: a
/// distinct type so the export wrapper does not take it for one).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct hipDeviceOrdinal(pub c_int);

/// `hipIpcMemHandle_t` / `hipIpcEventHandle_t`: 64 opaque bytes, passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipIpcMemHandle_t {
    pub reserved: [c_char; 64],
}

/// `hipMemoryType` values `hipPointerGetAttributes` reports.
pub const HIP_MEMORY_TYPE_UNREGISTERED: c_int = 0;
pub const HIP_MEMORY_TYPE_HOST: c_int = 1;
pub const HIP_MEMORY_TYPE_DEVICE: c_int = 2;
pub const HIP_MEMORY_TYPE_MANAGED: c_int = 3;

/// `hipPointerAttribute_t` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipPointerAttribute_t {
    pub type_: c_int,
    pub device: c_int,
    pub devicePointer: *mut c_void,
    pub hostPointer: *mut c_void,
    pub isManaged: c_int,
    pub allocationFlags: c_uint,
}

/// The legacy default stream (`0`) and the per-thread default stream (`hipStreamPerThread`).
pub const HIP_STREAM_LEGACY: usize = 0;
pub const HIP_STREAM_PER_THREAD: usize = 2;

/// `hipGetProcAddress` flags and symbol statuses.
pub const HIP_GET_PROC_ADDRESS_DEFAULT: u64 = 0;
pub const HIP_GET_PROC_ADDRESS_LEGACY_STREAM: u64 = 1;
pub const HIP_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 2;
pub const HIP_GET_PROC_ADDRESS_SUCCESS: c_int = 0;
pub const HIP_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND: c_int = 1;
pub const HIP_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT: c_int = 2;

/// `hipMemcpyKind`.
pub const HIP_MEMCPY_HOST_TO_HOST: c_int = 0;
pub const HIP_MEMCPY_HOST_TO_DEVICE: c_int = 1;
pub const HIP_MEMCPY_DEVICE_TO_HOST: c_int = 2;
pub const HIP_MEMCPY_DEVICE_TO_DEVICE: c_int = 3;
pub const HIP_MEMCPY_DEFAULT: c_int = 4;
pub const HIP_MEMCPY_DEVICE_TO_DEVICE_NO_CU: c_int = 1024;

/// `hipMemLocationType`: only device-located VMM handles are device memory.
pub const HIP_MEM_LOCATION_TYPE_DEVICE: c_int = 1;

/// `hipStreamCaptureStatus`.
pub const HIP_STREAM_CAPTURE_STATUS_NONE: c_int = 0;
pub const HIP_STREAM_CAPTURE_STATUS_ACTIVE: c_int = 1;

/// Device attributes the simulator answers (`hipDeviceAttribute_t`).
pub mod attr {
    pub const ECC_ENABLED: i32 = 0;
    pub const CAN_MAP_HOST_MEMORY: i32 = 3;
    pub const CLOCK_RATE: i32 = 5;
    pub const COMPUTE_MODE: i32 = 6;
    pub const CONCURRENT_KERNELS: i32 = 8;
    pub const COOPERATIVE_LAUNCH: i32 = 10;
    pub const INTEGRATED: i32 = 16;
    pub const L2_CACHE_SIZE: i32 = 19;
    pub const COMPUTE_CAPABILITY_MAJOR: i32 = 23;
    pub const MANAGED_MEMORY: i32 = 24;
    pub const MAX_BLOCK_DIM_X: i32 = 26;
    pub const MAX_BLOCK_DIM_Y: i32 = 27;
    pub const MAX_BLOCK_DIM_Z: i32 = 28;
    pub const MAX_GRID_DIM_X: i32 = 29;
    pub const MAX_GRID_DIM_Y: i32 = 30;
    pub const MAX_GRID_DIM_Z: i32 = 31;
    pub const MAX_THREADS_PER_BLOCK: i32 = 56;
    pub const MAX_THREADS_PER_MULTIPROCESSOR: i32 = 57;
    pub const MEMORY_BUS_WIDTH: i32 = 59;
    pub const MEMORY_CLOCK_RATE: i32 = 60;
    pub const COMPUTE_CAPABILITY_MINOR: i32 = 61;
    pub const MULTIPROCESSOR_COUNT: i32 = 63;
    pub const PCI_BUS_ID: i32 = 67;
    pub const PCI_DEVICE_ID: i32 = 68;
    pub const PCI_DOMAIN_ID: i32 = 69;
    pub const MAX_REGISTERS_PER_BLOCK: i32 = 71;
    pub const MAX_SHARED_MEMORY_PER_BLOCK: i32 = 74;
    pub const TOTAL_GLOBAL_MEM: i32 = 84;
    pub const UNIFIED_ADDRESSING: i32 = 85;
    pub const WARP_SIZE: i32 = 87;
    pub const MEMORY_POOLS_SUPPORTED: i32 = 88;
    pub const VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: i32 = 89;
    pub const MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: i32 = 10002;
    pub const IS_LARGE_BAR: i32 = 10011;
    pub const PHYSICAL_MULTIPROCESSOR_COUNT: i32 = 10015;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct hipUUID {
    pub bytes: [c_char; 16],
}

/// Architectural feature bits (a 32-bit bit-field word in C).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hipDeviceArch_t {
    pub bits: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipExtent {
    pub width: usize,
    pub height: usize,
    pub depth: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipPitchedPtr {
    pub ptr: *mut c_void,
    pub pitch: usize,
    pub xsize: usize,
    pub ysize: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct hipChannelFormatDesc {
    pub x: c_int,
    pub y: c_int,
    pub z: c_int,
    pub w: c_int,
    pub f: c_int,
}

/// `hipArray_Format` values (the element type of a driver-style array).
pub const HIP_AD_FORMAT_UNSIGNED_INT8: c_int = 0x01;
pub const HIP_AD_FORMAT_UNSIGNED_INT16: c_int = 0x02;
pub const HIP_AD_FORMAT_UNSIGNED_INT32: c_int = 0x03;
pub const HIP_AD_FORMAT_SIGNED_INT8: c_int = 0x08;
pub const HIP_AD_FORMAT_SIGNED_INT16: c_int = 0x09;
pub const HIP_AD_FORMAT_SIGNED_INT32: c_int = 0x0a;
pub const HIP_AD_FORMAT_HALF: c_int = 0x10;
pub const HIP_AD_FORMAT_FLOAT: c_int = 0x20;

/// Bytes of one channel of `format` (`None`: not a `hipArray_Format`).
pub const fn array_format_bytes(format: c_int) -> Option<u64> {
    match format {
        HIP_AD_FORMAT_UNSIGNED_INT8 | HIP_AD_FORMAT_SIGNED_INT8 => Some(1),
        HIP_AD_FORMAT_UNSIGNED_INT16 | HIP_AD_FORMAT_SIGNED_INT16 | HIP_AD_FORMAT_HALF => Some(2),
        HIP_AD_FORMAT_UNSIGNED_INT32 | HIP_AD_FORMAT_SIGNED_INT32 | HIP_AD_FORMAT_FLOAT => Some(4),
        _ => None,
    }
}

/// Array flags (`hipArrayLayered`, `hipArrayCubemap`): with either, the depth counts layers
/// (faces), which mipmap levels do not halve.
pub const HIP_ARRAY_LAYERED: c_uint = 1;
pub const HIP_ARRAY_SURFACE_LOAD_STORE: c_uint = 2;
pub const HIP_ARRAY_CUBEMAP: c_uint = 4;
pub const HIP_ARRAY_TEXTURE_GATHER: c_uint = 8;

/// `HIP_ARRAY_DESCRIPTOR` (`hipArrayCreate`, 24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HIP_ARRAY_DESCRIPTOR {
    pub Width: usize,
    pub Height: usize,
    pub Format: hipArray_Format,
    pub NumChannels: c_uint,
}

/// `HIP_ARRAY3D_DESCRIPTOR` (`hipArray3DCreate`, `hipMipmappedArrayCreate`, 40 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HIP_ARRAY3D_DESCRIPTOR {
    pub Width: usize,
    pub Height: usize,
    pub Depth: usize,
    pub Format: hipArray_Format,
    pub NumChannels: c_uint,
    pub Flags: c_uint,
}

/// `hipLaunchAttribute` (72 bytes): an id, padding, and a 64-byte value union (kept as
/// opaque words: vgpu never reads an attribute).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipLaunchAttribute {
    pub id: c_int,
    pub pad: [c_char; 4],
    pub val: [u64; 8],
}

/// `hipLaunchConfig_t` (`hipLaunchKernelExC`, 56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipLaunchConfig_t {
    pub gridDim: dim3,
    pub blockDim: dim3,
    pub dynamicSmemBytes: usize,
    pub stream: hipStream_t,
    pub attrs: *mut hipLaunchAttribute,
    pub numAttrs: c_uint,
}

/// `HIP_LAUNCH_CONFIG` (`hipDrvLaunchKernelEx`, 56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HIP_LAUNCH_CONFIG {
    pub gridDimX: c_uint,
    pub gridDimY: c_uint,
    pub gridDimZ: c_uint,
    pub blockDimX: c_uint,
    pub blockDimY: c_uint,
    pub blockDimZ: c_uint,
    pub sharedMemBytes: c_uint,
    pub hStream: hipStream_t,
    pub attrs: *mut hipLaunchAttribute,
    pub numAttrs: c_uint,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipMemLocation {
    pub type_: c_int,
    pub id: c_int,
}

/// `hipMemPoolProps` (88 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipMemPoolProps {
    pub allocType: c_int,
    pub handleTypes: c_int,
    pub location: hipMemLocation,
    pub win32SecurityAttributes: *mut c_void,
    pub maxSize: usize,
    pub reserved: [u8; 56],
}

/// `hipMemAllocNodeParams` (`hipGraphAddMemAllocNode`, 120 bytes): the library writes
/// `dptr`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipMemAllocNodeParams {
    pub poolProps: hipMemPoolProps,
    pub accessDescs: *const c_void,
    pub accessDescCount: usize,
    pub bytesize: usize,
    pub dptr: *mut c_void,
}

/// `hipMemAllocationProp` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hipMemAllocationProp {
    pub type_: c_int,
    pub requestedHandleType: c_int,
    pub location: hipMemLocation,
    pub win32HandleMetaData: *mut c_void,
    pub compressionType: u8,
    pub gpuDirectRDMACapable: u8,
    pub usage: u16,
}

/// `hipDeviceProp_tR0000`: the layout of `hipGetDeviceProperties` / `...R0000` (792 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct hipDeviceProp_tR0000 {
    pub name: [c_char; 256],
    pub totalGlobalMem: usize,
    pub sharedMemPerBlock: usize,
    pub regsPerBlock: c_int,
    pub warpSize: c_int,
    pub maxThreadsPerBlock: c_int,
    pub maxThreadsDim: [c_int; 3],
    pub maxGridSize: [c_int; 3],
    pub clockRate: c_int,
    pub memoryClockRate: c_int,
    pub memoryBusWidth: c_int,
    pub totalConstMem: usize,
    pub major: c_int,
    pub minor: c_int,
    pub multiProcessorCount: c_int,
    pub l2CacheSize: c_int,
    pub maxThreadsPerMultiProcessor: c_int,
    pub computeMode: c_int,
    pub clockInstructionRate: c_int,
    pub arch: hipDeviceArch_t,
    pub concurrentKernels: c_int,
    pub pciDomainID: c_int,
    pub pciBusID: c_int,
    pub pciDeviceID: c_int,
    pub maxSharedMemoryPerMultiProcessor: usize,
    pub isMultiGpuBoard: c_int,
    pub canMapHostMemory: c_int,
    pub gcnArch: c_int,
    pub gcnArchName: [c_char; 256],
    pub integrated: c_int,
    pub cooperativeLaunch: c_int,
    pub cooperativeMultiDeviceLaunch: c_int,
    pub maxTexture1DLinear: c_int,
    pub maxTexture1D: c_int,
    pub maxTexture2D: [c_int; 2],
    pub maxTexture3D: [c_int; 3],
    pub hdpMemFlushCntl: *mut c_uint,
    pub hdpRegFlushCntl: *mut c_uint,
    pub memPitch: usize,
    pub textureAlignment: usize,
    pub texturePitchAlignment: usize,
    pub kernelExecTimeoutEnabled: c_int,
    pub ECCEnabled: c_int,
    pub tccDriver: c_int,
    pub cooperativeMultiDeviceUnmatchedFunc: c_int,
    pub cooperativeMultiDeviceUnmatchedGridDim: c_int,
    pub cooperativeMultiDeviceUnmatchedBlockDim: c_int,
    pub cooperativeMultiDeviceUnmatchedSharedMem: c_int,
    pub isLargeBar: c_int,
    pub asicRevision: c_int,
    pub managedMemory: c_int,
    pub directManagedMemAccessFromHost: c_int,
    pub concurrentManagedAccess: c_int,
    pub pageableMemoryAccess: c_int,
    pub pageableMemoryAccessUsesHostPageTables: c_int,
}

/// `hipDeviceProp_tR0600`: the layout of `hipGetDevicePropertiesR0600` (1472 bytes), which
/// ROCm >= 6 headers map `hipGetDeviceProperties` to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct hipDeviceProp_tR0600 {
    pub name: [c_char; 256],
    pub uuid: hipUUID,
    pub luid: [c_char; 8],
    pub luidDeviceNodeMask: c_uint,
    pub totalGlobalMem: usize,
    pub sharedMemPerBlock: usize,
    pub regsPerBlock: c_int,
    pub warpSize: c_int,
    pub memPitch: usize,
    pub maxThreadsPerBlock: c_int,
    pub maxThreadsDim: [c_int; 3],
    pub maxGridSize: [c_int; 3],
    pub clockRate: c_int,
    pub totalConstMem: usize,
    pub major: c_int,
    pub minor: c_int,
    pub textureAlignment: usize,
    pub texturePitchAlignment: usize,
    pub deviceOverlap: c_int,
    pub multiProcessorCount: c_int,
    pub kernelExecTimeoutEnabled: c_int,
    pub integrated: c_int,
    pub canMapHostMemory: c_int,
    pub computeMode: c_int,
    pub maxTexture1D: c_int,
    pub maxTexture1DMipmap: c_int,
    pub maxTexture1DLinear: c_int,
    pub maxTexture2D: [c_int; 2],
    pub maxTexture2DMipmap: [c_int; 2],
    pub maxTexture2DLinear: [c_int; 3],
    pub maxTexture2DGather: [c_int; 2],
    pub maxTexture3D: [c_int; 3],
    pub maxTexture3DAlt: [c_int; 3],
    pub maxTextureCubemap: c_int,
    pub maxTexture1DLayered: [c_int; 2],
    pub maxTexture2DLayered: [c_int; 3],
    pub maxTextureCubemapLayered: [c_int; 2],
    pub maxSurface1D: c_int,
    pub maxSurface2D: [c_int; 2],
    pub maxSurface3D: [c_int; 3],
    pub maxSurface1DLayered: [c_int; 2],
    pub maxSurface2DLayered: [c_int; 3],
    pub maxSurfaceCubemap: c_int,
    pub maxSurfaceCubemapLayered: [c_int; 2],
    pub surfaceAlignment: usize,
    pub concurrentKernels: c_int,
    pub ECCEnabled: c_int,
    pub pciBusID: c_int,
    pub pciDeviceID: c_int,
    pub pciDomainID: c_int,
    pub tccDriver: c_int,
    pub asyncEngineCount: c_int,
    pub unifiedAddressing: c_int,
    pub memoryClockRate: c_int,
    pub memoryBusWidth: c_int,
    pub l2CacheSize: c_int,
    pub persistingL2CacheMaxSize: c_int,
    pub maxThreadsPerMultiProcessor: c_int,
    pub streamPrioritiesSupported: c_int,
    pub globalL1CacheSupported: c_int,
    pub localL1CacheSupported: c_int,
    pub sharedMemPerMultiprocessor: usize,
    pub regsPerMultiprocessor: c_int,
    pub managedMemory: c_int,
    pub isMultiGpuBoard: c_int,
    pub multiGpuBoardGroupID: c_int,
    pub hostNativeAtomicSupported: c_int,
    pub singleToDoublePrecisionPerfRatio: c_int,
    pub pageableMemoryAccess: c_int,
    pub concurrentManagedAccess: c_int,
    pub computePreemptionSupported: c_int,
    pub canUseHostPointerForRegisteredMem: c_int,
    pub cooperativeLaunch: c_int,
    pub cooperativeMultiDeviceLaunch: c_int,
    pub sharedMemPerBlockOptin: usize,
    pub pageableMemoryAccessUsesHostPageTables: c_int,
    pub directManagedMemAccessFromHost: c_int,
    pub maxBlocksPerMultiProcessor: c_int,
    pub accessPolicyMaxWindowSize: c_int,
    pub reservedSharedMemPerBlock: usize,
    pub hostRegisterSupported: c_int,
    pub sparseHipArraySupported: c_int,
    pub hostRegisterReadOnlySupported: c_int,
    pub timelineSemaphoreInteropSupported: c_int,
    pub memoryPoolsSupported: c_int,
    pub gpuDirectRDMASupported: c_int,
    pub gpuDirectRDMAFlushWritesOptions: c_uint,
    pub gpuDirectRDMAWritesOrdering: c_int,
    pub memoryPoolSupportedHandleTypes: c_uint,
    pub deferredMappingHipArraySupported: c_int,
    pub ipcEventSupported: c_int,
    pub clusterLaunch: c_int,
    pub unifiedFunctionPointers: c_int,
    pub reserved: [c_int; 63],
    pub hipReserved: [c_int; 32],
    pub gcnArchName: [c_char; 256],
    pub maxSharedMemoryPerMultiProcessor: usize,
    pub clockInstructionRate: c_int,
    pub arch: hipDeviceArch_t,
    pub hdpMemFlushCntl: *mut c_uint,
    pub hdpRegFlushCntl: *mut c_uint,
    pub cooperativeMultiDeviceUnmatchedFunc: c_int,
    pub cooperativeMultiDeviceUnmatchedGridDim: c_int,
    pub cooperativeMultiDeviceUnmatchedBlockDim: c_int,
    pub cooperativeMultiDeviceUnmatchedSharedMem: c_int,
    pub isLargeBar: c_int,
    pub asicRevision: c_int,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn r0000_layout_matches_the_abi() {
        assert_eq!(size_of::<hipDeviceProp_tR0000>(), 792);
        assert_eq!(offset_of!(hipDeviceProp_tR0000, totalGlobalMem), 256);
        assert_eq!(offset_of!(hipDeviceProp_tR0000, multiProcessorCount), 336);
        assert_eq!(offset_of!(hipDeviceProp_tR0000, gcnArchName), 396);
    }

    #[test]
    fn r0600_layout_matches_the_abi() {
        assert_eq!(size_of::<hipDeviceProp_tR0600>(), 1472);
        assert_eq!(offset_of!(hipDeviceProp_tR0600, uuid), 256);
        assert_eq!(offset_of!(hipDeviceProp_tR0600, totalGlobalMem), 288);
        assert_eq!(offset_of!(hipDeviceProp_tR0600, multiProcessorCount), 388);
        assert_eq!(offset_of!(hipDeviceProp_tR0600, gcnArchName), 1160);
    }

    #[test]
    fn small_structs() {
        assert_eq!(size_of::<dim3>(), 12);
        assert_eq!(size_of::<hipMemAllocationProp>(), 32);
        assert_eq!(offset_of!(hipMemAllocationProp, location), 8);
        assert_eq!(size_of::<hipPitchedPtr>(), 32);
        assert_eq!(size_of::<hipPointerAttribute_t>(), 32);
        assert_eq!(size_of::<hipIpcMemHandle_t>(), 64);
        assert_eq!(size_of::<hipMemPoolProps>(), 88);
        assert_eq!(size_of::<hipMemAllocNodeParams>(), 120);
        assert_eq!(offset_of!(hipMemAllocNodeParams, bytesize), 104);
        assert_eq!(offset_of!(hipMemAllocNodeParams, dptr), 112);
        assert_eq!(size_of::<HIP_ARRAY_DESCRIPTOR>(), 24);
        assert_eq!(offset_of!(HIP_ARRAY_DESCRIPTOR, NumChannels), 20);
        assert_eq!(size_of::<HIP_ARRAY3D_DESCRIPTOR>(), 40);
        assert_eq!(offset_of!(HIP_ARRAY3D_DESCRIPTOR, Flags), 32);
        assert_eq!(size_of::<hipLaunchAttribute>(), 72);
        assert_eq!(offset_of!(hipLaunchAttribute, val), 8);
        assert_eq!(size_of::<hipLaunchConfig_t>(), 56);
        assert_eq!(offset_of!(hipLaunchConfig_t, dynamicSmemBytes), 24);
        assert_eq!(offset_of!(hipLaunchConfig_t, stream), 32);
        assert_eq!(offset_of!(hipLaunchConfig_t, numAttrs), 48);
        assert_eq!(size_of::<HIP_LAUNCH_CONFIG>(), 56);
        assert_eq!(offset_of!(HIP_LAUNCH_CONFIG, sharedMemBytes), 24);
        assert_eq!(offset_of!(HIP_LAUNCH_CONFIG, hStream), 32);
        assert_eq!(offset_of!(HIP_LAUNCH_CONFIG, numAttrs), 48);
    }
}
