/*
 * Scenarios shared by the three driver-API client styles (linked.c, dlopen_client.c,
 * procaddr_client.c). Each client defines, before including this file:
 *   API(sym)                 how to call entry point `sym` (direct call or through a pointer)
 *   static const char *CLIENT_STYLE;
 *   static int client_load(void);            resolves the entry points; 0 on success
 *   static void *client_dlsym(const char *); dlsym on the loaded libcuda
 *
 * Usage: <client> SCENARIO [ARGS...]. Output: one `key=value` per line on stdout.
 * Exit codes: 0 success; 2 usage; 3 libcuda could not be loaded/resolved;
 * 10 a call that must succeed failed (the line `error=<call> code=<CUresult>` says which);
 * 11 a result the client checks itself was wrong (`check_failed=<what>`).
 */
#ifndef VGPU_DRIVER_SCENARIOS_H
#define VGPU_DRIVER_SCENARIOS_H

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)

#define CK(call)                                                                  \
    do {                                                                          \
        CUresult rc_ = (call);                                                    \
        if (rc_ != CUDA_SUCCESS) {                                                \
            printf("error=%s code=%d line=%d\n", #call, (int)rc_, __LINE__);     \
            fflush(stdout);                                                       \
            exit(10);                                                             \
        }                                                                         \
    } while (0)

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            printf("check_failed=%s line=%d\n", #cond, __LINE__);                \
            fflush(stdout);                                                       \
            exit(11);                                                             \
        }                                                                         \
    } while (0)

#define KV(key, fmt, ...) printf("%s=" fmt "\n", key, __VA_ARGS__)

static void kvi(const char *key, long long v) { printf("%s=%lld\n", key, v); }
static void kvu(const char *key, unsigned long long v) { printf("%s=%llu\n", key, v); }

static unsigned long long parse_u64(const char *s) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "bad number: %s\n", s);
        exit(2);
    }
    return v;
}

/* Waits until stdin reaches EOF (the test closes it or dies) or `seconds` pass. */
static void wait_stdin_eof(double seconds) {
    unsigned long long deadline = vgpu_now_ns(CLOCK_MONOTONIC) + (unsigned long long)(seconds * 1e9);
    char buf[256];
    for (;;) {
        unsigned long long now = vgpu_now_ns(CLOCK_MONOTONIC);
        if (now >= deadline) return;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int ms = (int)((deadline - now) / 1000000ull) + 1;
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;
        ssize_t n = read(0, buf, sizeof buf);
        if (n <= 0) return;
    }
}

/* Blocks until one line (or EOF) arrives on stdin. */
static void wait_stdin_line(void) {
    char c;
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
}

static CUcontext setup_ctx(int ordinal) {
    CUdevice dev;
    CUcontext ctx;
    CK(API(cuInit)(0));
    CK(API(cuDeviceGet)(&dev, ordinal));
    CK(API(cuDevicePrimaryCtxRetain)(&ctx, dev));
    CK(API(cuCtxSetCurrent)(ctx));
    return ctx;
}

static size_t mem_free(void) {
    size_t f = 0, t = 0;
    CK(API(cuMemGetInfo_v2)(&f, &t));
    return f;
}

static void format_uuid(const CUuuid *u, char out[64]) {
    const unsigned char *b = (const unsigned char *)u->bytes;
    snprintf(out, 64,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static CUfunction load_kernel(CUmodule *mod_out) {
    CUmodule mod;
    CUfunction fn;
    CK(API(cuModuleLoadData)(&mod, VGPU_TEST_PTX));
    CK(API(cuModuleGetFunction)(&fn, mod, VGPU_TEST_KERNEL));
    if (mod_out) *mod_out = mod;
    return fn;
}

static CUresult launch1(CUfunction fn, CUstream s, CUdeviceptr arg) {
    void *params[] = {&arg};
    return API(cuLaunchKernel)(fn, 1, 1, 1, 32, 1, 1, 0, s, params, NULL);
}

/* ---- info: devices, attributes, primary context --------------------------------------- */
/* cuInit alone: what a process that initialises the driver and does nothing else leaves. */
static int sc_init_only(void) {
    CK(API(cuInit)(0));
    return 0;
}

static int sc_info(void) {
    int ver = 0, count = 0;
    CK(API(cuInit)(0));
    CK(API(cuDriverGetVersion)(&ver));
    CK(API(cuDeviceGetCount)(&count));
    kvi("driver_version", ver);
    kvi("count", count);
    for (int i = 0; i < count; i++) {
        CUdevice d;
        char key[64], name[256], bus[64], uuid[64];
        int v, major, minor;
        size_t total;
        CUuuid u;
        CK(API(cuDeviceGet)(&d, i));
        CK(API(cuDeviceGetName)(name, sizeof name, d));
        snprintf(key, sizeof key, "dev%d.name", i);
        KV(key, "%s", name);
        CK(API(cuDeviceGetUuid_v2)(&u, d));
        format_uuid(&u, uuid);
        snprintf(key, sizeof key, "dev%d.uuid", i);
        KV(key, "%s", uuid);
        CK(API(cuDeviceGetPCIBusId)(bus, sizeof bus, d));
        snprintf(key, sizeof key, "dev%d.pci_bus_id", i);
        KV(key, "%s", bus);
        CK(API(cuDeviceTotalMem_v2)(&total, d));
        snprintf(key, sizeof key, "dev%d.total_mem", i);
        kvu(key, total);
        CK(API(cuDeviceComputeCapability)(&major, &minor, d));
        snprintf(key, sizeof key, "dev%d.cc", i);
        KV(key, "%d.%d", major, minor);
        static const struct {
            const char *name;
            CUdevice_attribute attr;
        } attrs[] = {
            {"sms", CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT},
            {"cc_major", CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR},
            {"cc_minor", CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR},
            {"threads_per_sm", CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR},
            {"threads_per_block", CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK},
            {"warp_size", CU_DEVICE_ATTRIBUTE_WARP_SIZE},
            {"pci_bus", CU_DEVICE_ATTRIBUTE_PCI_BUS_ID},
            {"pci_device", CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID},
            {"pci_domain", CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID},
            {"managed", CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY},
            {"vmm", CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED},
            {"pools", CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED},
            {"unified_addressing", CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING},
        };
        for (size_t a = 0; a < sizeof attrs / sizeof attrs[0]; a++) {
            CK(API(cuDeviceGetAttribute)(&v, attrs[a].attr, d));
            snprintf(key, sizeof key, "dev%d.%s", i, attrs[a].name);
            kvi(key, v);
        }
        /* Primary context: retain makes it active, current, and bound to this device. */
        unsigned int flags = 0;
        int active = -1;
        CK(API(cuDevicePrimaryCtxGetState)(d, &flags, &active));
        snprintf(key, sizeof key, "dev%d.primary_active_before", i);
        kvi(key, active);
        CUcontext ctx = NULL, cur = NULL;
        CUdevice cd = -1;
        CK(API(cuDevicePrimaryCtxRetain)(&ctx, d));
        CK(API(cuDevicePrimaryCtxGetState)(d, &flags, &active));
        snprintf(key, sizeof key, "dev%d.primary_active_after", i);
        kvi(key, active);
        CK(API(cuCtxSetCurrent)(ctx));
        CK(API(cuCtxGetCurrent)(&cur));
        CK(API(cuCtxGetDevice)(&cd));
        snprintf(key, sizeof key, "dev%d.ctx_current_ok", i);
        kvi(key, ctx != NULL && cur == ctx);
        snprintf(key, sizeof key, "dev%d.ctx_device", i);
        kvi(key, cd);
        CUcontext again = NULL;
        CK(API(cuDevicePrimaryCtxRetain)(&again, d));
        snprintf(key, sizeof key, "dev%d.primary_same_handle", i);
        kvi(key, again == ctx);
        CK(API(cuDevicePrimaryCtxRelease_v2)(d));
        CK(API(cuCtxSetCurrent)(NULL));
        CK(API(cuDevicePrimaryCtxRelease_v2)(d));
    }
    return 0;
}

/* ---- memory: every allocation path, measured with cuMemGetInfo ------------------------- */
static int sc_memory(int ordinal) {
    setup_ctx(ordinal);
    size_t f0 = 0, total = 0, g;
    CK(API(cuMemGetInfo_v2)(&f0, &total));
    kvu("total", total);
    kvu("free0", f0);

    /* linear */
    const size_t n = 64 * MiB;
    CUdeviceptr p = 0, base = 0;
    size_t range = 0;
    CK(API(cuMemAlloc_v2)(&p, n));
    kvi("alloc.ptr_nonzero", p != 0);
    kvu("alloc.delta", f0 - mem_free());
    CK(API(cuMemGetAddressRange_v2)(&base, &range, p + 100));
    kvi("alloc.range_base_ok", base == p);
    kvu("alloc.range_size", range);
    CK(API(cuMemFree_v2)(p));
    kvu("alloc.after_free_delta", f0 - mem_free());

    /* odd size */
    CK(API(cuMemAlloc_v2)(&p, 1000001));
    kvu("odd.delta", f0 - mem_free());
    CK(API(cuMemFree_v2)(p));
    kvu("odd.after_free_delta", f0 - mem_free());

    /* device data round trip */
    {
        unsigned char out[4096], in[4096];
        for (int i = 0; i < 4096; i++) out[i] = (unsigned char)(i * 7 + 3);
        CK(API(cuMemAlloc_v2)(&p, sizeof out));
        CK(API(cuMemcpyHtoD_v2)(p, out, sizeof out));
        memset(in, 0, sizeof in);
        CK(API(cuMemcpyDtoH_v2)(in, p, sizeof in));
        kvi("copy.roundtrip", memcmp(in, out, sizeof in) == 0);
        CK(API(cuMemsetD8_v2)(p, 0xab, 100));
        CK(API(cuMemcpyDtoH_v2)(in, p, sizeof in));
        kvi("copy.memset", in[0] == 0xab && in[99] == 0xab && in[100] == out[100]);
        CK(API(cuMemFree_v2)(p));
    }

    /* pitch */
    size_t pitch = 0;
    CK(API(cuMemAllocPitch_v2)(&p, &pitch, 1000, 100, 4));
    kvu("pitch.pitch", pitch);
    kvu("pitch.delta", f0 - mem_free());
    CK(API(cuMemFree_v2)(p));
    kvu("pitch.after_free_delta", f0 - mem_free());

    /* managed: usable from the host */
    CK(API(cuMemAllocManaged)(&p, 8 * MiB, CU_MEM_ATTACH_GLOBAL));
    kvu("managed.delta", f0 - mem_free());
    {
        volatile unsigned char *h = (volatile unsigned char *)(uintptr_t)p;
        h[0] = 0x5a;
        h[8 * MiB - 1] = 0xa5;
        unsigned char a = 0, b = 0;
        CK(API(cuMemcpyDtoH_v2)(&a, p, 1));
        CK(API(cuMemcpyDtoH_v2)(&b, p + 8 * MiB - 1, 1));
        CK(API(cuMemsetD8_v2)(p + 1, 0x33, 1));
        kvi("managed.host_rw", a == 0x5a && b == 0xa5 && h[1] == 0x33);
    }
    CK(API(cuMemFree_v2)(p));
    kvu("managed.after_free_delta", f0 - mem_free());

    /* host memory is not device memory */
    void *hp = NULL;
    CK(API(cuMemAllocHost_v2)(&hp, 32 * MiB));
    memset(hp, 1, 32 * MiB);
    kvu("host.delta", f0 - mem_free());
    CK(API(cuMemFreeHost)(hp));

    /* VMM: device handles are device memory, host handles are not */
    {
        CUmemAllocationProp prop;
        memset(&prop, 0, sizeof prop);
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id = ordinal;
        CK(API(cuMemGetAllocationGranularity)(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        kvu("vmm.granularity", g);
        size_t sz = 4 * g;
        vgpu_mem_handle h = 0;
        CK(API(cuMemCreate)(&h, sz, &prop, 0));
        kvu("vmm.size", sz);
        kvu("vmm.device.delta", f0 - mem_free());
        CUdeviceptr va = 0;
        CK(API(cuMemAddressReserve)(&va, sz, 0, 0, 0));
        kvu("vmm.reserve.delta", f0 - mem_free());
        CK(API(cuMemMap)(va, sz, 0, h, 0));
        CUmemAccessDesc acc;
        memset(&acc, 0, sizeof acc);
        acc.location = prop.location;
        acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        CK(API(cuMemSetAccess)(va, sz, &acc, 1));
        kvu("vmm.mapped.delta", f0 - mem_free());
        CK(API(cuMemUnmap)(va, sz));
        CK(API(cuMemAddressFree)(va, sz));
        CK(API(cuMemRelease)(h));
        kvu("vmm.device.after_release_delta", f0 - mem_free());

        CUmemAllocationProp hprop = prop;
        hprop.location.type = CU_MEM_LOCATION_TYPE_HOST;
        hprop.location.id = 0;
        size_t hg = 0;
        CK(API(cuMemGetAllocationGranularity)(&hg, &hprop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        vgpu_mem_handle hh = 0;
        CK(API(cuMemCreate)(&hh, 4 * hg, &hprop, 0));
        kvu("vmm.host.size", 4 * hg);
        kvu("vmm.host.delta", f0 - mem_free());
        CK(API(cuMemRelease)(hh));
    }

    /* arrays */
    {
        CUDA_ARRAY_DESCRIPTOR d2;
        memset(&d2, 0, sizeof d2);
        d2.Width = 1024;
        d2.Height = 1024;
        d2.Format = CU_AD_FORMAT_FLOAT;
        d2.NumChannels = 1;
        CUarray a2 = NULL, a3 = NULL;
        CK(API(cuArrayCreate_v2)(&a2, &d2));
        kvu("array2d.bytes", 1024ull * 1024ull * 4ull);
        kvu("array2d.delta", f0 - mem_free());
        CK(API(cuArrayDestroy)(a2));
        kvu("array2d.after_destroy_delta", f0 - mem_free());

        CUDA_ARRAY3D_DESCRIPTOR d3;
        memset(&d3, 0, sizeof d3);
        d3.Width = 256;
        d3.Height = 256;
        d3.Depth = 256;
        d3.Format = CU_AD_FORMAT_UNSIGNED_INT8;
        d3.NumChannels = 1;
        CK(API(cuArray3DCreate_v2)(&a3, &d3));
        kvu("array3d.bytes", 256ull * 256ull * 256ull);
        kvu("array3d.delta", f0 - mem_free());
        CK(API(cuArrayDestroy)(a3));
        kvu("array3d.after_destroy_delta", f0 - mem_free());

        CUDA_ARRAY3D_DESCRIPTOR dm = d3;
        dm.Width = 2048;
        dm.Height = 2048;
        dm.Depth = 0;
        CUmipmappedArray mm = NULL;
        CK(API(cuMipmappedArrayCreate)(&mm, &dm, 4));
        kvu("mipmap.level0_bytes", 2048ull * 2048ull);
        kvu("mipmap.delta", f0 - mem_free());
        CK(API(cuMipmappedArrayDestroy)(mm));
        kvu("mipmap.after_destroy_delta", f0 - mem_free());
    }

    /* stream-ordered allocation: default pool and an explicit pool */
    {
        CUstream s;
        CK(API(cuStreamCreate)(&s, CU_STREAM_NON_BLOCKING));
        CK(API(cuMemAllocAsync)(&p, 32 * MiB, s));
        CK(API(cuStreamSynchronize)(s));
        kvu("async.delta", f0 - mem_free());
        CK(API(cuMemFreeAsync)(p, s));
        CK(API(cuStreamSynchronize)(s));
        CUdevice dev;
        CUmemoryPool dflt;
        CK(API(cuCtxGetDevice)(&dev));
        CK(API(cuDeviceGetDefaultMemPool)(&dflt, dev));
        CK(API(cuMemPoolTrimTo)(dflt, 0));
        kvu("async.after_free_trim_delta", f0 - mem_free());

        CUmemPoolProps pp;
        memset(&pp, 0, sizeof pp);
        pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
        pp.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
        pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        pp.location.id = ordinal;
        CUmemoryPool pool;
        CK(API(cuMemPoolCreate)(&pool, &pp));
        CK(API(cuMemAllocFromPoolAsync)(&p, 16 * MiB, pool, s));
        CK(API(cuStreamSynchronize)(s));
        kvu("pool.delta", f0 - mem_free());
        CK(API(cuMemFreeAsync)(p, s));
        CK(API(cuStreamSynchronize)(s));
        CK(API(cuMemPoolTrimTo)(pool, 0));
        kvu("pool.after_trim_delta", f0 - mem_free());
        CK(API(cuMemPoolDestroy)(pool));
        CK(API(cuStreamDestroy_v2)(s));
    }
    kvu("final_delta", f0 - mem_free());
    return 0;
}

/* ---- meminfo / alloc-hold / watch-free / fill-until-oom -------------------------------- */
static int sc_meminfo(int ordinal) {
    setup_ctx(ordinal);
    size_t f = 0, t = 0;
    CK(API(cuMemGetInfo_v2)(&f, &t));
    kvi("pid", getpid());
    kvu("free", f);
    kvu("total", t);
    return 0;
}

static int sc_alloc_hold(int ordinal, size_t bytes, double seconds) {
    setup_ctx(ordinal);
    size_t f0 = mem_free();
    CUdeviceptr p = 0;
    CK(API(cuMemAlloc_v2)(&p, bytes));
    kvi("pid", getpid());
    kvu("free_before", f0);
    kvu("free", mem_free());
    printf("ready=1\n");
    fflush(stdout);
    wait_stdin_eof(seconds);
    CK(API(cuMemFree_v2)(p));
    printf("freed=1\n");
    return 0;
}

static int sc_watch_free(int interval_ms, double seconds) {
    setup_ctx(0);
    kvi("pid", getpid());
    fflush(stdout);
    unsigned long long deadline = vgpu_now_ns(CLOCK_MONOTONIC) + (unsigned long long)(seconds * 1e9);
    while (vgpu_now_ns(CLOCK_MONOTONIC) < deadline) {
        size_t f = mem_free();
        printf("t=%llu free=%zu\n", vgpu_now_ns(CLOCK_REALTIME), f);
        fflush(stdout);
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        if (poll(&pfd, 1, interval_ms) > 0) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0) break;
        }
    }
    return 0;
}

static int sc_fill_until_oom(size_t chunk) {
    setup_ctx(0);
    size_t f0 = mem_free(), max = f0 / chunk + 16, n = 0;
    CUdeviceptr *ps = calloc(max, sizeof *ps);
    CUresult rc = CUDA_SUCCESS;
    while (n < max) {
        rc = API(cuMemAlloc_v2)(&ps[n], chunk);
        if (rc != CUDA_SUCCESS) break;
        n++;
    }
    kvu("free0", f0);
    kvu("chunks", n);
    kvi("oom_code", rc);
    kvu("free_at_oom", mem_free());
    /* a smaller request can still fit the remainder */
    for (size_t i = 0; i < n; i++) CK(API(cuMemFree_v2)(ps[i]));
    kvu("free_after", mem_free());
    free(ps);
    return 0;
}

/* ---- launches, streams, events, graphs --------------------------------------------------- */
static int sc_launch_loop(unsigned long long n, int wait) {
    setup_ctx(0);
    CUfunction fn = load_kernel(NULL);
    CUstream s;
    CK(API(cuStreamCreate)(&s, CU_STREAM_NON_BLOCKING));
    kvi("pid", getpid());
    printf("ready=1\n");
    fflush(stdout);
    if (wait) wait_stdin_line();
    unsigned long long t0 = vgpu_now_ns(CLOCK_REALTIME);
    for (unsigned long long i = 0; i < n; i++) CK(launch1(fn, s, 0));
    unsigned long long t1 = vgpu_now_ns(CLOCK_REALTIME);
    CK(API(cuStreamSynchronize)(s));
    unsigned long long t2 = vgpu_now_ns(CLOCK_REALTIME);
    kvu("launches", n);
    kvu("start_ns", t0);
    kvu("enqueued_ns", t1);
    kvu("end_ns", t2);
    printf("done=1\n");
    fflush(stdout);
    if (wait) wait_stdin_eof(60);
    return 0;
}

static int sc_streams(void) {
    setup_ctx(0);
    CUfunction fn = load_kernel(NULL);
    CUstream s;
    CUevent e0, e1;
    CK(API(cuStreamCreate)(&s, CU_STREAM_NON_BLOCKING));
    CK(API(cuEventCreate)(&e0, CU_EVENT_DEFAULT));
    CK(API(cuEventCreate)(&e1, CU_EVENT_DEFAULT));
    kvi("stream_query_idle", API(cuStreamQuery)(s));
    CK(API(cuEventRecord)(e0, s));
    unsigned long long t0 = vgpu_now_ns(CLOCK_MONOTONIC);
    CK(launch1(fn, s, 0));
    unsigned long long t_launch = vgpu_now_ns(CLOCK_MONOTONIC);
    CK(API(cuEventRecord)(e1, s));
    kvi("event_query_busy", API(cuEventQuery)(e1));
    kvi("stream_query_busy", API(cuStreamQuery)(s));
    CK(API(cuEventSynchronize)(e1));
    unsigned long long t_sync = vgpu_now_ns(CLOCK_MONOTONIC);
    kvi("event_query_done", API(cuEventQuery)(e1));
    kvi("stream_query_done", API(cuStreamQuery)(s));
    float ms = -1;
    CK(API(cuEventElapsedTime)(&ms, e0, e1));
    printf("elapsed_ms=%.6f\n", ms);
    kvu("launch_call_ns", t_launch - t0);
    kvu("event_sync_wall_ns", t_sync - t0);
    /* several kernels on the legacy default stream; cuCtxSynchronize waits for all */
    const int k = 4;
    t0 = vgpu_now_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < k; i++) CK(launch1(fn, NULL, 0));
    CK(API(cuCtxSynchronize)());
    kvi("ctx_sync_kernels", k);
    kvu("ctx_sync_wall_ns", vgpu_now_ns(CLOCK_MONOTONIC) - t0);
    CK(API(cuEventDestroy_v2)(e0));
    CK(API(cuEventDestroy_v2)(e1));
    CK(API(cuStreamDestroy_v2)(s));
    return 0;
}

static int sc_graph(int launches) {
    setup_ctx(0);
    CUfunction fn = load_kernel(NULL);
    CUgraph g;
    CUgraphNode nodes[3];
    CUdeviceptr arg = 0;
    void *params[] = {&arg};
    CK(API(cuGraphCreate)(&g, 0));
    for (int i = 0; i < 3; i++) {
        CUDA_KERNEL_NODE_PARAMS np;
        memset(&np, 0, sizeof np);
        np.func = fn;
        np.gridDimX = np.gridDimY = np.gridDimZ = 1;
        np.blockDimX = 32;
        np.blockDimY = np.blockDimZ = 1;
        np.kernelParams = params;
        CK(API(cuGraphAddKernelNode_v2)(&nodes[i], g, i ? &nodes[i - 1] : NULL, i ? 1 : 0, &np));
    }
    CUgraphExec ge;
    CK(API(cuGraphInstantiateWithFlags)(&ge, g, 0));
    CUstream s;
    CK(API(cuStreamCreate)(&s, CU_STREAM_NON_BLOCKING));
    unsigned long long t0 = vgpu_now_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < launches; i++) CK(API(cuGraphLaunch)(ge, s));
    CK(API(cuStreamSynchronize)(s));
    kvi("graph_nodes", 3);
    kvi("graph_launches", launches);
    kvu("wall_ns", vgpu_now_ns(CLOCK_MONOTONIC) - t0);
    CK(API(cuGraphExecDestroy)(ge));
    CK(API(cuGraphDestroy)(g));
    CK(API(cuStreamDestroy_v2)(s));
    return 0;
}

/* ---- bad input: every line is `bad.<case>=<CUresult>`, judged by the test --------------- */
static int sc_badargs(void) {
    CUdevice d = 0;
    CUdeviceptr p = 0;
    size_t f = 0, t = 0;
    int n = 0;
    CUcontext c = NULL;
    /* before cuInit */
    kvi("preinit.cuDeviceGetCount", API(cuDeviceGetCount)(&n));
    kvi("preinit.cuDeviceGet", API(cuDeviceGet)(&d, 0));
    kvi("preinit.cuMemAlloc", API(cuMemAlloc_v2)(&p, 1024));
    kvi("preinit.cuMemGetInfo", API(cuMemGetInfo_v2)(&f, &t));
    kvi("preinit.cuCtxGetCurrent", API(cuCtxGetCurrent)(&c));
    {
        vgpu_pfn_cuGetProcAddress_v2 gpa =
            (vgpu_pfn_cuGetProcAddress_v2)client_dlsym("cuGetProcAddress_v2");
        void *fp = NULL;
        CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        kvi("preinit.cuGetProcAddress", gpa ? (int)gpa("cuMemAlloc", &fp, 12080, 0, &st) : -1);
        kvi("preinit.cuGetProcAddress_matches_dlsym", fp != NULL && fp == client_dlsym("cuMemAlloc_v2"));
    }
    kvi("bad.cuInit_flags", API(cuInit)(1));
    CK(API(cuInit)(0));
    kvi("bad.cuInit_twice", API(cuInit)(0));
    kvi("bad.cuDeviceGetCount_null", API(cuDeviceGetCount)(NULL));
    kvi("bad.cuDeviceGet_null", API(cuDeviceGet)(NULL, 0));
    kvi("bad.cuDeviceGet_ordinal", API(cuDeviceGet)(&d, 99));
    kvi("bad.cuDeviceGet_negative", API(cuDeviceGet)(&d, -1));
    kvi("bad.cuDeviceGetName_null", API(cuDeviceGetName)(NULL, 64, 0));
    kvi("bad.cuDeviceGetAttribute_device", API(cuDeviceGetAttribute)(&n, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 99));
    kvi("bad.cuDeviceGetAttribute_null", API(cuDeviceGetAttribute)(NULL, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0));
    kvi("bad.cuDeviceTotalMem_device", API(cuDeviceTotalMem_v2)(&t, 99));
    kvi("bad.cuDevicePrimaryCtxRetain_device", API(cuDevicePrimaryCtxRetain)(&c, 99));
    {
        const char *s = NULL;
        kvi("bad.cuGetErrorName_unknown", API(cuGetErrorName)((CUresult)987654, &s));
        kvi("ok.cuGetErrorName_201", API(cuGetErrorName)(CUDA_ERROR_INVALID_CONTEXT, &s));
        KV("ok.cuGetErrorName_201_text", "%s", s ? s : "(null)");
    }
    {
        const void *table = NULL;
        CUuuid id;
        memset(&id, 0x42, sizeof id);
        kvi("bad.cuGetExportTable_unknown", API(cuGetExportTable)(&table, &id));
    }
    /* no current context */
    c = (CUcontext)1;
    kvi("noctx.cuCtxGetCurrent", API(cuCtxGetCurrent)(&c));
    kvi("noctx.current_is_null", c == NULL);
    kvi("noctx.cuMemAlloc", API(cuMemAlloc_v2)(&p, 1024));
    kvi("noctx.cuMemGetInfo", API(cuMemGetInfo_v2)(&f, &t));
    kvi("noctx.cuCtxSynchronize", API(cuCtxSynchronize)());
    {
        CUmodule m;
        kvi("noctx.cuModuleLoadData", API(cuModuleLoadData)(&m, VGPU_TEST_PTX));
        CUstream s;
        kvi("noctx.cuStreamCreate", API(cuStreamCreate)(&s, 0));
    }
    /* with a context */
    setup_ctx(0);
    kvi("bad.cuMemAlloc_null", API(cuMemAlloc_v2)(NULL, 1024));
    kvi("bad.cuMemAlloc_zero", API(cuMemAlloc_v2)(&p, 0));
    CK(API(cuMemGetInfo_v2)(&f, &t));
    kvi("bad.cuMemAlloc_too_big", API(cuMemAlloc_v2)(&p, t + 1));
    kvi("bad.cuMemGetInfo_null", API(cuMemGetInfo_v2)(NULL, NULL));
    kvi("bad.cuMemFree_unknown", API(cuMemFree_v2)((CUdeviceptr)0xdead0000ull));
    CK(API(cuMemAlloc_v2)(&p, 4096));
    kvi("bad.cuMemFree_interior", API(cuMemFree_v2)(p + 16));
    kvi("ok.cuMemFree_first", API(cuMemFree_v2)(p));
    kvi("bad.cuMemFree_double", API(cuMemFree_v2)(p));
    kvi("bad.cuCtxSetCurrent_unknown", API(cuCtxSetCurrent)((CUcontext)(uintptr_t)0x1234560ull));
    setup_ctx(0);
    CUmodule m;
    CUfunction fn;
    CK(API(cuModuleLoadData)(&m, VGPU_TEST_PTX));
    kvi("bad.cuModuleGetFunction_name", API(cuModuleGetFunction)(&fn, m, "no_such_kernel"));
    kvi("bad.cuModuleLoadData_null", API(cuModuleLoadData)(&m, NULL));
    kvi("bad.cuModuleUnload_unknown", API(cuModuleUnload)((CUmodule)(uintptr_t)0x7777000ull));
    kvi("bad.cuStreamSynchronize_unknown", API(cuStreamSynchronize)((CUstream)(uintptr_t)0x7777100ull));
    kvi("bad.cuStreamDestroy_unknown", API(cuStreamDestroy_v2)((CUstream)(uintptr_t)0x7777200ull));
    kvi("bad.cuEventQuery_unknown", API(cuEventQuery)((CUevent)(uintptr_t)0x7777300ull));
    kvi("bad.cuLaunchKernel_unknown_function",
        API(cuLaunchKernel)((CUfunction)(uintptr_t)0x7777400ull, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
    kvi("bad.cuGraphLaunch_unknown", API(cuGraphLaunch)((CUgraphExec)(uintptr_t)0x7777500ull, NULL));
    kvi("bad.cuMemRelease_unknown", API(cuMemRelease)((vgpu_mem_handle)0x7777600ull));
    kvi("bad.cuArrayDestroy_unknown", API(cuArrayDestroy)((CUarray)(uintptr_t)0x7777700ull));
    {
        CUevent e;
        CK(API(cuEventCreate)(&e, CU_EVENT_DEFAULT));
        CK(API(cuEventDestroy_v2)(e));
        kvi("bad.cuEventDestroy_twice", API(cuEventDestroy_v2)(e));
    }
    return 0;
}

/* ---- cuGetProcAddress_v2: each argument `base:version:flags[:expected_symbol]` -------------
 * prints q<i>.rc, q<i>.status, q<i>.sym (dladdr name of the answer, "-" for none) and, with an
 * expected symbol, q<i>.match (pointer == dlsym(expected)). */
static int sc_procaddr(int argc, char **argv) {
    vgpu_pfn_cuGetProcAddress_v2 gpa =
        (vgpu_pfn_cuGetProcAddress_v2)client_dlsym("cuGetProcAddress_v2");
    if (!gpa) {
        printf("error=no cuGetProcAddress_v2\n");
        return 3;
    }
    for (int i = 0; i < argc; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", argv[i]);
        char *base = strtok(buf, ":");
        char *ver = strtok(NULL, ":");
        char *fl = strtok(NULL, ":");
        char *expect = strtok(NULL, ":");
        if (!base || !ver || !fl) {
            fprintf(stderr, "bad query %s\n", argv[i]);
            return 2;
        }
        void *fp = NULL;
        CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)77;
        CUresult rc = gpa(base, &fp, atoi(ver), strtoull(fl, NULL, 10), &st);
        Dl_info info;
        const char *sym = "-";
        if (fp && dladdr(fp, &info) && info.dli_sname) sym = info.dli_sname;
        printf("q%d.rc=%d\nq%d.status=%d\nq%d.sym=%s\nq%d.null=%d\n", i, (int)rc, i, (int)st, i,
               sym, i, fp == NULL);
        if (expect) {
            void *want = client_dlsym(expect);
            printf("q%d.match=%d\n", i, want != NULL && want == fp);
        }
    }
    return 0;
}

static int usage(const char *prog) {
    fprintf(stderr,
            "usage: %s info | init-only | memory [DEV] | meminfo [DEV] | alloc-hold BYTES SECONDS [DEV] |\n"
            "  watch-free INTERVAL_MS SECONDS | fill-until-oom CHUNK | launch-loop N [wait] |\n"
            "  streams | graph LAUNCHES | badargs | procaddr base:ver:flags[:expect]...\n",
            prog);
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return usage(argv[0]);
    if (client_load() != 0) {
        printf("error=client_load\n");
        return 3;
    }
    printf("style=%s\n", CLIENT_STYLE);
    const char *sc = argv[1];
    int rc;
    if (!strcmp(sc, "info")) rc = sc_info();
    else if (!strcmp(sc, "init-only")) rc = sc_init_only();
    else if (!strcmp(sc, "memory")) rc = sc_memory(argc > 2 ? atoi(argv[2]) : 0);
    else if (!strcmp(sc, "meminfo")) rc = sc_meminfo(argc > 2 ? atoi(argv[2]) : 0);
    else if (!strcmp(sc, "alloc-hold") && argc >= 4)
        rc = sc_alloc_hold(argc > 4 ? atoi(argv[4]) : 0, parse_u64(argv[2]), atof(argv[3]));
    else if (!strcmp(sc, "watch-free") && argc >= 4) rc = sc_watch_free(atoi(argv[2]), atof(argv[3]));
    else if (!strcmp(sc, "fill-until-oom") && argc >= 3) rc = sc_fill_until_oom(parse_u64(argv[2]));
    else if (!strcmp(sc, "launch-loop") && argc >= 3)
        rc = sc_launch_loop(parse_u64(argv[2]), argc > 3 && !strcmp(argv[3], "wait"));
    else if (!strcmp(sc, "streams")) rc = sc_streams();
    else if (!strcmp(sc, "graph") && argc >= 3) rc = sc_graph(atoi(argv[2]));
    else if (!strcmp(sc, "badargs")) rc = sc_badargs();
    else if (!strcmp(sc, "procaddr")) rc = sc_procaddr(argc - 2, argv + 2);
    else return usage(argv[0]);
    if (rc == 0) printf("ok=1\n");
    fflush(stdout);
    return rc;
}

#endif /* VGPU_DRIVER_SCENARIOS_H */
