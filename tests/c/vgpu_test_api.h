/*
 * Declarations the C test clients need, written for this project (no NVIDIA header text).
 * Types come from our own cuda-headers/include/vgpu_cuda.h. Built with -DVGPU_REAL_HEADERS,
 * the same clients take their types from the real cuda.h / nvml.h found in the test venv
 * instead, and the prototypes below are then checked by the compiler against NVIDIA's own
 * declarations (an ABI cross-check of our header and of the simulator's exports).
 *
 * VGPU_DRIVER_FUNCS(X) lists every driver entry point the clients call, as
 *   X(exported symbol, base name for cuGetProcAddress, return type, (parameter list))
 */
#ifndef VGPU_TEST_API_H
#define VGPU_TEST_API_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef VGPU_REAL_HEADERS
#include <cuda.h>
#include <nvml.h>
typedef CUmemGenericAllocationHandle vgpu_mem_handle;
#else
#include "vgpu_cuda.h"
typedef CUmemGenericAllocationHandle vgpu_mem_handle;
#endif

/* clang-format off */
#define VGPU_DRIVER_FUNCS(X) \
    X(cuInit, "cuInit", (unsigned int flags)) \
    X(cuDriverGetVersion, "cuDriverGetVersion", (int *v)) \
    X(cuGetErrorName, "cuGetErrorName", (CUresult e, const char **s)) \
    X(cuGetExportTable, "cuGetExportTable", (const void **table, const CUuuid *id)) \
    X(cuDeviceGet, "cuDeviceGet", (CUdevice *d, int ordinal)) \
    X(cuDeviceGetCount, "cuDeviceGetCount", (int *n)) \
    X(cuDeviceGetName, "cuDeviceGetName", (char *name, int len, CUdevice d)) \
    X(cuDeviceGetUuid_v2, "cuDeviceGetUuid", (CUuuid *u, CUdevice d)) \
    X(cuDeviceTotalMem_v2, "cuDeviceTotalMem", (size_t *bytes, CUdevice d)) \
    X(cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *v, CUdevice_attribute a, CUdevice d)) \
    X(cuDeviceComputeCapability, "cuDeviceComputeCapability", (int *major, int *minor, CUdevice d)) \
    X(cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId", (char *id, int len, CUdevice d)) \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *c, CUdevice d)) \
    X(cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease", (CUdevice d)) \
    X(cuDevicePrimaryCtxGetState, "cuDevicePrimaryCtxGetState", (CUdevice d, unsigned int *flags, int *active)) \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", (CUcontext c)) \
    X(cuCtxGetCurrent, "cuCtxGetCurrent", (CUcontext *c)) \
    X(cuCtxPushCurrent_v2, "cuCtxPushCurrent", (CUcontext c)) \
    X(cuCtxPopCurrent_v2, "cuCtxPopCurrent", (CUcontext *c)) \
    X(cuCtxGetDevice, "cuCtxGetDevice", (CUdevice *d)) \
    X(cuCtxSynchronize, "cuCtxSynchronize", (void)) \
    X(cuModuleLoadData, "cuModuleLoadData", (CUmodule *m, const void *image)) \
    X(cuModuleGetFunction, "cuModuleGetFunction", (CUfunction *f, CUmodule m, const char *name)) \
    X(cuModuleUnload, "cuModuleUnload", (CUmodule m)) \
    X(cuMemGetInfo_v2, "cuMemGetInfo", (size_t *free_b, size_t *total_b)) \
    X(cuMemAlloc_v2, "cuMemAlloc", (CUdeviceptr *p, size_t n)) \
    X(cuMemAllocPitch_v2, "cuMemAllocPitch", (CUdeviceptr *p, size_t *pitch, size_t w, size_t h, unsigned int elem)) \
    X(cuMemFree_v2, "cuMemFree", (CUdeviceptr p)) \
    X(cuMemGetAddressRange_v2, "cuMemGetAddressRange", (CUdeviceptr *base, size_t *size, CUdeviceptr p)) \
    X(cuMemAllocManaged, "cuMemAllocManaged", (CUdeviceptr *p, size_t n, unsigned int flags)) \
    X(cuMemAllocHost_v2, "cuMemAllocHost", (void **p, size_t n)) \
    X(cuMemFreeHost, "cuMemFreeHost", (void *p)) \
    X(cuMemcpyHtoD_v2, "cuMemcpyHtoD", (CUdeviceptr dst, const void *src, size_t n)) \
    X(cuMemcpyDtoH_v2, "cuMemcpyDtoH", (void *dst, CUdeviceptr src, size_t n)) \
    X(cuMemsetD8_v2, "cuMemsetD8", (CUdeviceptr dst, unsigned char v, size_t n)) \
    X(cuArrayCreate_v2, "cuArrayCreate", (CUarray *a, const CUDA_ARRAY_DESCRIPTOR *d)) \
    X(cuArray3DCreate_v2, "cuArray3DCreate", (CUarray *a, const CUDA_ARRAY3D_DESCRIPTOR *d)) \
    X(cuArrayDestroy, "cuArrayDestroy", (CUarray a)) \
    X(cuMipmappedArrayCreate, "cuMipmappedArrayCreate", (CUmipmappedArray *a, const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned int levels)) \
    X(cuMipmappedArrayDestroy, "cuMipmappedArrayDestroy", (CUmipmappedArray a)) \
    X(cuMemAllocAsync, "cuMemAllocAsync", (CUdeviceptr *p, size_t n, CUstream s)) \
    X(cuMemFreeAsync, "cuMemFreeAsync", (CUdeviceptr p, CUstream s)) \
    X(cuDeviceGetDefaultMemPool, "cuDeviceGetDefaultMemPool", (CUmemoryPool *pool, CUdevice d)) \
    X(cuMemPoolCreate, "cuMemPoolCreate", (CUmemoryPool *pool, const CUmemPoolProps *props)) \
    X(cuMemPoolDestroy, "cuMemPoolDestroy", (CUmemoryPool pool)) \
    X(cuMemPoolTrimTo, "cuMemPoolTrimTo", (CUmemoryPool pool, size_t keep)) \
    X(cuMemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", (CUdeviceptr *p, size_t n, CUmemoryPool pool, CUstream s)) \
    X(cuMemCreate, "cuMemCreate", (vgpu_mem_handle *h, size_t n, const CUmemAllocationProp *prop, unsigned long long flags)) \
    X(cuMemRelease, "cuMemRelease", (vgpu_mem_handle h)) \
    X(cuMemAddressReserve, "cuMemAddressReserve", (CUdeviceptr *p, size_t n, size_t align, CUdeviceptr addr, unsigned long long flags)) \
    X(cuMemAddressFree, "cuMemAddressFree", (CUdeviceptr p, size_t n)) \
    X(cuMemMap, "cuMemMap", (CUdeviceptr p, size_t n, size_t offset, vgpu_mem_handle h, unsigned long long flags)) \
    X(cuMemUnmap, "cuMemUnmap", (CUdeviceptr p, size_t n)) \
    X(cuMemSetAccess, "cuMemSetAccess", (CUdeviceptr p, size_t n, const CUmemAccessDesc *desc, size_t count)) \
    X(cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity", (size_t *g, const CUmemAllocationProp *prop, CUmemAllocationGranularity_flags opt)) \
    X(cuStreamCreate, "cuStreamCreate", (CUstream *s, unsigned int flags)) \
    X(cuStreamDestroy_v2, "cuStreamDestroy", (CUstream s)) \
    X(cuStreamSynchronize, "cuStreamSynchronize", (CUstream s)) \
    X(cuStreamQuery, "cuStreamQuery", (CUstream s)) \
    X(cuEventCreate, "cuEventCreate", (CUevent *e, unsigned int flags)) \
    X(cuEventRecord, "cuEventRecord", (CUevent e, CUstream s)) \
    X(cuEventQuery, "cuEventQuery", (CUevent e)) \
    X(cuEventSynchronize, "cuEventSynchronize", (CUevent e)) \
    X(cuEventElapsedTime, "cuEventElapsedTime", (float *ms, CUevent a, CUevent b)) \
    X(cuEventDestroy_v2, "cuEventDestroy", (CUevent e)) \
    X(cuLaunchKernel, "cuLaunchKernel", (CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params, void **extra)) \
    X(cuGraphCreate, "cuGraphCreate", (CUgraph *g, unsigned int flags)) \
    X(cuGraphAddKernelNode_v2, "cuGraphAddKernelNode", (CUgraphNode *n, CUgraph g, const CUgraphNode *deps, size_t ndeps, const CUDA_KERNEL_NODE_PARAMS *p)) \
    X(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", (CUgraphExec *e, CUgraph g, unsigned long long flags)) \
    X(cuGraphLaunch, "cuGraphLaunch", (CUgraphExec e, CUstream s)) \
    X(cuGraphExecDestroy, "cuGraphExecDestroy", (CUgraphExec e)) \
    X(cuGraphDestroy, "cuGraphDestroy", (CUgraph g)) \
    X(cuGraphAddMemAllocNode, "cuGraphAddMemAllocNode", (CUgraphNode *n, CUgraph g, const CUgraphNode *deps, size_t ndeps, CUDA_MEM_ALLOC_NODE_PARAMS *p))
/* clang-format on */

/* Prototypes (the linked client calls these directly; with VGPU_REAL_HEADERS the compiler
 * checks each one against cuda.h). */
#define VGPU_DECLARE_PROTO(sym, base, params) CUresult sym params;
VGPU_DRIVER_FUNCS(VGPU_DECLARE_PROTO)
#undef VGPU_DECLARE_PROTO

/* cuGetProcAddress_v2 is only ever reached through dlsym by the clients. */
typedef CUresult (*vgpu_pfn_cuGetProcAddress_v2)(const char *symbol, void **pfn, int cuda_version,
                                                 uint64_t flags,
                                                 CUdriverProcAddressQueryResult *status);

/* Function-pointer types, one per entry: vgpu_pfn_<symbol>. */
#define VGPU_DECLARE_PFN(sym, base, params) typedef CUresult(*vgpu_pfn_##sym) params;
VGPU_DRIVER_FUNCS(VGPU_DECLARE_PFN)
#undef VGPU_DECLARE_PFN

/* ---- helpers shared by the clients ------------------------------------------------------ */
static inline unsigned long long vgpu_now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* A PTX module with one kernel, as a real client would hand to cuModuleLoadData. */
static const char VGPU_TEST_PTX[] =
    ".version 8.0\n"
    ".target sm_90\n"
    ".address_size 64\n"
    "\n"
    ".visible .entry vgpu_test_kernel(\n"
    "    .param .u64 vgpu_test_kernel_param_0\n"
    ")\n"
    "{\n"
    "    ret;\n"
    "}\n";
#define VGPU_TEST_KERNEL "vgpu_test_kernel"

#endif /* VGPU_TEST_API_H */
