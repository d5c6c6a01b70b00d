/* A HIP runtime client linked the way ROCm programs are (-lamdhip64, versioned symbols),
 * for the simulated libamdhip64. Our own declarations (no AMD header): the types it uses
 * are opaque pointers, ints and the two device-property layouts, which it reads by the
 * byte offsets the ABI fixes. Prints key=value lines; the last is ok=1.
 *
 *   hip_client props       both property layouts: sizes respected, fields at their offsets
 *   hip_client procaddr    hipGetProcAddress version and flag rules
 *   hip_client hold        one allocation of every kind, print ready=1, wait for stdin
 *   hip_client timeline    streams, events, graphs and stub launches on the device timeline
 *   hip_client errors      error names, last-error semantics
 *   hip_client module      modules and driver-style launches, hipDeviceReset
 *   hip_client alloc BYTES hipMalloc BYTES, print the result and the free memory, ready=1,
 *                          wait for stdin
 *   hip_client extras      limits, priorities, peers, pointer attributes, host callbacks,
 *                          module globals, occupancy (VGPU_SIM_DEVICES >= 2)
 *   hip_client ipc-export  hipMalloc 32 MiB, print its IPC handle (hex), ready=1, wait
 *   hip_client ipc-import HEX  open the handle, copy through it, close it
 *   hip_client busy N MS   hold 64 MiB, queue N kernels, wait MS ms, print ready=1, wait
 *                          for stdin (the device is busy for N x VGPU_SIM_KERNEL_NS)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int hipError_t;
typedef void *hipStream_t;
typedef void *hipEvent_t;
typedef void *hipGraph_t;
typedef void *hipGraphExec_t;
typedef void *hipMemPool_t;
typedef void *hipArray_t;
typedef struct { unsigned x, y, z; } dim3;
typedef struct { size_t width, height, depth; } hipExtent;
typedef struct { void *ptr; size_t pitch, xsize, ysize; } hipPitchedPtr;
typedef struct { int x, y, z, w, f; } hipChannelFormatDesc;
typedef struct {
    int type, requestedHandleType;
    struct { int type, id; } location;
    void *win32HandleMetaData;
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
} hipMemAllocationProp;

hipError_t hipGetDeviceCount(int *);
hipError_t hipDeviceGetName(char *, int, int);
hipError_t hipDeviceGetUuid(char *, int);
hipError_t hipDeviceTotalMem(size_t *, int);
hipError_t hipGetDeviceProperties(void *, int);
hipError_t hipGetDevicePropertiesR0600(void *, int);
hipError_t hipGetProcAddress(const char *, void **, int, uint64_t, int *);
hipError_t hipMalloc(void **, size_t);
hipError_t hipFree(void *);
hipError_t hipExtMallocWithFlags(void **, size_t, unsigned);
hipError_t hipMallocManaged(void **, size_t, unsigned);
hipError_t hipMallocPitch(void **, size_t *, size_t, size_t);
hipError_t hipMalloc3D(hipPitchedPtr *, hipExtent);
hipError_t hipMallocArray(hipArray_t *, const hipChannelFormatDesc *, size_t, size_t, unsigned);
hipError_t hipMallocAsync(void **, size_t, hipStream_t);
hipError_t hipMemCreate(void **, size_t, const hipMemAllocationProp *, unsigned long long);
hipError_t hipMemAddressReserve(void **, size_t, size_t, void *, unsigned long long);
hipError_t hipMemMap(void *, size_t, size_t, void *, unsigned long long);
hipError_t hipHostMalloc(void **, size_t, unsigned);
hipError_t hipMemGetInfo(size_t *, size_t *);
hipError_t hipMemcpy(void *, const void *, size_t, int);
hipError_t hipMemset(void *, int, size_t);
hipError_t hipStreamCreate(hipStream_t *);
hipError_t hipStreamSynchronize(hipStream_t);
hipError_t hipStreamQuery(hipStream_t);
hipError_t hipEventCreate(hipEvent_t *);
hipError_t hipEventRecord(hipEvent_t, hipStream_t);
hipError_t hipEventSynchronize(hipEvent_t);
hipError_t hipEventQuery(hipEvent_t);
hipError_t hipEventElapsedTime(float *, hipEvent_t, hipEvent_t);
hipError_t hipStreamBeginCapture(hipStream_t, int);
hipError_t hipStreamEndCapture(hipStream_t, hipGraph_t *);
hipError_t hipGraphInstantiate(hipGraphExec_t *, hipGraph_t, void *, char *, size_t);
hipError_t hipGraphLaunch(hipGraphExec_t, hipStream_t);
hipError_t hipLaunchKernel(const void *, dim3, dim3, void **, size_t, hipStream_t);
hipError_t hipDeviceSynchronize(void);
hipError_t hipDeviceReset(void);
typedef void *hipModule_t;
typedef void *hipFunction_t;
hipError_t hipModuleLoadData(hipModule_t *, const void *);
hipError_t hipModuleUnload(hipModule_t);
hipError_t hipModuleGetFunction(hipFunction_t *, hipModule_t, const char *);
hipError_t hipModuleLaunchKernel(hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned,
                                 unsigned, unsigned, hipStream_t, void **, void **);
hipError_t hipExtModuleLaunchKernel(hipFunction_t, unsigned, unsigned, unsigned, unsigned,
                                    unsigned, unsigned, size_t, hipStream_t, void **, void **,
                                    hipEvent_t, hipEvent_t, unsigned);
hipError_t hipModuleLaunchCooperativeKernel(hipFunction_t, unsigned, unsigned, unsigned, unsigned,
                                            unsigned, unsigned, unsigned, hipStream_t, void **);
hipError_t hipExtLaunchKernel(const void *, dim3, dim3, void **, size_t, hipStream_t, hipEvent_t,
                              hipEvent_t, int);
hipError_t hipLaunchCooperativeKernel(const void *, dim3, dim3, void **, unsigned, hipStream_t);
hipError_t hipGetLastError(void);
hipError_t hipPeekAtLastError(void);
typedef struct { int type, device; void *devicePointer, *hostPointer; int isManaged; unsigned flags; } hipPointerAttribute_t;
typedef struct { char reserved[64]; } hipIpcMemHandle_t;
hipError_t hipDeviceGetLimit(size_t *, int);
hipError_t hipDeviceSetLimit(int, size_t);
hipError_t hipDeviceGetStreamPriorityRange(int *, int *);
hipError_t hipStreamCreateWithPriority(hipStream_t *, unsigned, int);
hipError_t hipStreamGetPriority(hipStream_t, int *);
int hipGetStreamDeviceId(hipStream_t);
hipError_t hipSetDevice(int);
hipError_t hipDeviceCanAccessPeer(int *, int, int);
hipError_t hipDeviceEnablePeerAccess(int, unsigned);
hipError_t hipDeviceDisablePeerAccess(int);
hipError_t hipMemcpyPeer(void *, int, const void *, int, size_t);
hipError_t hipPointerGetAttributes(hipPointerAttribute_t *, const void *);
hipError_t hipMemAdvise(const void *, size_t, int, int);
hipError_t hipMemPrefetchAsync(const void *, size_t, int, hipStream_t);
hipError_t hipStreamAddCallback(hipStream_t, void (*)(hipStream_t, hipError_t, void *), void *, unsigned);
hipError_t hipLaunchHostFunc(hipStream_t, void (*)(void *), void *);
hipError_t hipModuleGetGlobal(void **, size_t *, void *, const char *);
hipError_t hipOccupancyMaxPotentialBlockSize(int *, int *, const void *, size_t, int);
hipError_t hipIpcGetMemHandle(hipIpcMemHandle_t *, void *);
hipError_t hipIpcOpenMemHandle(void **, hipIpcMemHandle_t, unsigned);
hipError_t hipIpcCloseMemHandle(void *);
const char *hipGetErrorName(hipError_t);
const char *hipGetErrorString(hipError_t);
void **__hipRegisterFatBinary(const void *);
void __hipRegisterFunction(void **, const void *, char *, const char *, unsigned, void *, void *,
                           dim3 *, dim3 *, int *);
hipError_t __hipPushCallConfiguration(dim3, dim3, size_t, hipStream_t);
hipError_t __hipPopCallConfiguration(dim3 *, dim3 *, size_t *, hipStream_t *);

static int failures;
#define CHECK(call)                                                                     \
    do {                                                                                \
        hipError_t e_ = (call);                                                         \
        if (e_ != 0) {                                                                  \
            printf("fail=%s -> %d (%s)\n", #call, e_, hipGetErrorName(e_));             \
            failures++;                                                                 \
        }                                                                               \
    } while (0)
#define EXPECT(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("fail=%s (line %d)\n", #cond, __LINE__);                             \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static int64_t rd_i32(const unsigned char *p, size_t off) { int32_t v; memcpy(&v, p + off, 4); return v; }
static uint64_t rd_u64(const unsigned char *p, size_t off) { uint64_t v; memcpy(&v, p + off, 8); return v; }

static int props(void) {
    enum { R0000 = 792, R0600 = 1472, PAD = 64 };
    unsigned char a[R0000 + PAD], b[R0600 + PAD];
    memset(a, 0xA5, sizeof a);
    memset(b, 0x5A, sizeof b);
    CHECK(hipGetDeviceProperties(a, 0));
    CHECK(hipGetDevicePropertiesR0600(b, 0));
    int canary_a = 1, canary_b = 1;
    for (int i = 0; i < PAD; i++) {
        canary_a &= a[R0000 + i] == 0xA5;
        canary_b &= b[R0600 + i] == 0x5A;
    }
    printf("r0000.canary_intact=%d\nr0600.canary_intact=%d\n", canary_a, canary_b);
    printf("r0000.name=%s\nr0000.total=%llu\nr0000.cus=%lld\nr0000.arch=%s\n", (char *)a,
           (unsigned long long)rd_u64(a, 256), (long long)rd_i32(a, 336), (char *)a + 396);
    printf("r0600.name=%s\nr0600.total=%llu\nr0600.cus=%lld\nr0600.arch=%s\n", (char *)b,
           (unsigned long long)rd_u64(b, 288), (long long)rd_i32(b, 388), (char *)b + 1160);
    printf("r0600.uuid=%.16s\n", (char *)b + 256);
    char uuid[17] = {0};
    CHECK(hipDeviceGetUuid(uuid, 0));
    printf("uuid=%s\n", uuid);
    size_t total = 0;
    CHECK(hipDeviceTotalMem(&total, 0));
    printf("total=%zu\n", total);
    int n = 0;
    CHECK(hipGetDeviceCount(&n));
    printf("count=%d\n", n);
    char name[64];
    CHECK(hipDeviceGetName(name, sizeof name, 0));
    printf("name=%s\n", name);
    return 0;
}

static void show_proc(const char *label, const char *sym, int ver, uint64_t flags) {
    void *p = NULL;
    int status = -1;
    hipError_t e = hipGetProcAddress(sym, &p, ver, flags, &status);
    printf("%s.err=%d\n%s.status=%d\n%s.found=%d\n", label, e, label, status, label, p != NULL);
    if (p) {
        /* Which export: compare with the linked symbols. */
        const char *which = p == (void *)hipGetDeviceProperties       ? "R0000"
                            : p == (void *)hipGetDevicePropertiesR0600 ? "R0600"
                            : p == (void *)hipLaunchKernel             ? "plain"
                                                                       : "other";
        printf("%s.which=%s\n", label, which);
    }
}

static int procaddr(void) {
    show_proc("props601", "hipGetDeviceProperties", 601, 0);
    show_proc("props502", "hipGetDeviceProperties", 502, 0);
    show_proc("r0600at502", "hipGetDevicePropertiesR0600", 502, 0);
    show_proc("launch_dflt", "hipLaunchKernel", 700, 0);
    show_proc("launch_spt", "hipLaunchKernel", 700, 2);
    show_proc("missing", "hipNoSuchFunction", 700, 0);
    show_proc("badflags", "hipMalloc", 700, 7);
    return 0;
}

static void used(const char *label) {
    size_t f = 0, t = 0;
    CHECK(hipMemGetInfo(&f, &t));
    printf("%s.used=%zu\n", label, t - f);
}

static int hold(void) {
    const size_t MB = 1 << 20;
    void *p;
    used("start");
    CHECK(hipMalloc(&p, 100 * MB + 1));
    CHECK(hipExtMallocWithFlags(&p, 10 * MB, 1));
    void *m;
    CHECK(hipMallocManaged(&m, 20 * MB, 1));
    memset(m, 7, 4096); /* managed memory is host-accessible */
    size_t pitch = 0;
    CHECK(hipMallocPitch(&p, &pitch, 1000, 1024));
    printf("pitch=%zu\n", pitch);
    hipPitchedPtr pp;
    hipExtent ext = {1000, 100, 10};
    CHECK(hipMalloc3D(&pp, ext));
    printf("pitch3d=%zu\n", pp.pitch);
    hipArray_t arr;
    hipChannelFormatDesc desc = {32, 0, 0, 0, 2};
    CHECK(hipMallocArray(&arr, &desc, 1024, 1024, 0));
    CHECK(hipMallocAsync(&p, 30 * MB, 0));
    hipMemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = 1;
    prop.location.type = 1; /* device */
    prop.location.id = 0;
    void *handle, *va;
    CHECK(hipMemCreate(&handle, 64 * MB, &prop, 0));
    CHECK(hipMemAddressReserve(&va, 64 * MB, 0, NULL, 0));
    CHECK(hipMemMap(va, 64 * MB, 0, handle, 0));
    char buf[16] = "hello vmm", back[16] = {0};
    CHECK(hipMemcpy(va, buf, sizeof buf, 1));
    CHECK(hipMemcpy(back, va, sizeof back, 2));
    printf("vmm_roundtrip=%s\n", back);
    used("device");
    /* Host memory: never device memory. */
    void *h;
    CHECK(hipHostMalloc(&h, 256 * MB, 0));
    prop.location.type = 0; /* not a device location */
    void *hh;
    CHECK(hipMemCreate(&hh, 32 * MB, &prop, 0));
    used("after_host");
    printf("ready=1\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) { /* stdin closed: done */
    }
    return 0;
}

/* A kernel "host stub" as hipcc emits it: it pops the <<<>>> configuration and calls
 * hipLaunchKernel with its own address. */
static void kernel_stub(void);
static void kernel_stub(void) {
    dim3 g, b;
    size_t shm;
    hipStream_t s;
    CHECK(__hipPopCallConfiguration(&g, &b, &shm, &s));
    CHECK(hipLaunchKernel((const void *)kernel_stub, g, b, NULL, shm, s));
}

static void register_kernel(void);

static int timeline(void) {
    register_kernel();
    hipStream_t s;
    hipEvent_t a, b;
    CHECK(hipStreamCreate(&s));
    CHECK(hipEventCreate(&a));
    CHECK(hipEventCreate(&b));
    CHECK(hipEventRecord(a, s));
    dim3 grid = {4, 1, 1}, block = {64, 1, 1};
    for (int i = 0; i < 5; i++) {
        CHECK(__hipPushCallConfiguration(grid, block, 0, s));
        kernel_stub(); /* kernel<<<grid, block, 0, s>>>() */
    }
    CHECK(hipEventRecord(b, s));
    hipError_t q = hipStreamQuery(s);
    printf("query_while_busy=%d\n", q);
    CHECK(hipEventSynchronize(b));
    float ms = 0;
    CHECK(hipEventElapsedTime(&ms, a, b));
    printf("five_kernels_ms=%.3f\n", ms);
    /* A captured graph of three launches, replayed twice. */
    hipGraph_t g;
    hipGraphExec_t ge;
    CHECK(hipStreamBeginCapture(s, 0));
    for (int i = 0; i < 3; i++) {
        CHECK(__hipPushCallConfiguration(grid, block, 0, s));
        kernel_stub();
    }
    CHECK(hipStreamEndCapture(s, &g));
    CHECK(hipGraphInstantiate(&ge, g, NULL, NULL, 0));
    CHECK(hipEventRecord(a, s));
    CHECK(hipGraphLaunch(ge, s));
    CHECK(hipGraphLaunch(ge, s));
    CHECK(hipEventRecord(b, s));
    CHECK(hipStreamSynchronize(s));
    CHECK(hipEventElapsedTime(&ms, a, b));
    printf("two_graphs_ms=%.3f\n", ms);
    /* An unregistered stub is not a kernel. */
    hipError_t bad = hipLaunchKernel((const void *)timeline, grid, block, NULL, 0, s);
    printf("unregistered=%d\n", bad);
    CHECK(hipDeviceSynchronize());
    return 0;
}

static int module(void) {
    static const char image[] = ".amdgcn_target \"amdgcn-amd-amdhsa--gfx942\"\n"
                                ".amdhsa_kernel saxpy\n.end_amdhsa_kernel\n";
    used("start");
    hipModule_t m;
    CHECK(hipModuleLoadData(&m, image));
    used("loaded");
    hipFunction_t f, missing = NULL;
    CHECK(hipModuleGetFunction(&f, m, "saxpy"));
    printf("missing_function=%d\n", hipModuleGetFunction(&missing, m, "nope"));
    hipStream_t s;
    hipEvent_t a, b;
    CHECK(hipStreamCreate(&s));
    CHECK(hipEventCreate(&a));
    CHECK(hipEventCreate(&b));
    CHECK(hipModuleLaunchKernel(f, 2, 1, 1, 256, 1, 1, 0, s, NULL, NULL));
    /* global work size 512 threads in groups of 256: 2 blocks; events around it */
    CHECK(hipExtModuleLaunchKernel(f, 512, 1, 1, 256, 1, 1, 0, s, NULL, NULL, a, b, 0));
    CHECK(hipModuleLaunchCooperativeKernel(f, 1, 1, 1, 64, 1, 1, 0, s, NULL));
    printf("bad_block=%d\n", hipModuleLaunchKernel(f, 1, 1, 1, 2048, 1, 1, 0, s, NULL, NULL));
    register_kernel();
    dim3 grid = {3, 1, 1}, block = {64, 1, 1};
    CHECK(hipExtLaunchKernel((const void *)kernel_stub, grid, block, NULL, 0, s, NULL, NULL, 0));
    CHECK(hipLaunchCooperativeKernel((const void *)kernel_stub, grid, block, NULL, 0, s));
    /* the per-thread default stream through hipGetProcAddress's flag 2 */
    hipError_t (*launch_spt)(const void *, dim3, dim3, void **, size_t, hipStream_t) = NULL;
    int st = -1;
    CHECK(hipGetProcAddress("hipLaunchKernel", (void **)&launch_spt, 700, 2, &st));
    if (launch_spt)
        CHECK(launch_spt((const void *)kernel_stub, grid, block, NULL, 0, NULL));
    CHECK(hipStreamSynchronize(s));
    CHECK(hipDeviceSynchronize());
    float ms = 0;
    CHECK(hipEventElapsedTime(&ms, a, b));
    printf("ext_module_ms=%.3f\n", ms);
    CHECK(hipModuleUnload(m));
    printf("unload_again=%d\n", hipModuleUnload(m));
    used("unloaded");
    void *p;
    CHECK(hipMalloc(&p, 100 << 20));
    used("allocated");
    CHECK(hipDeviceReset());
    used("after_reset"); /* hipMemGetInfo starts the device's context again */
    printf("free_after_reset=%d\n", hipFree(p));
    return 0;
}

static hipEvent_t cb_event;
static int cb_saw_done = -1, hostfn_calls;
static void on_stream(hipStream_t s, hipError_t status, void *user) {
    (void)s;
    /* Called after the work queued before it: the event recorded before it is complete. */
    cb_saw_done = status == 0 && hipEventQuery(cb_event) == 0 && user == (void *)&cb_saw_done;
}
static void host_fn(void *user) { hostfn_calls += *(int *)user; }

static int extras(void) {
    size_t v = 0;
    CHECK(hipDeviceGetLimit(&v, 2));
    printf("heap_limit=%zu\n", v);
    CHECK(hipDeviceSetLimit(2, 64 << 20));
    CHECK(hipDeviceGetLimit(&v, 2));
    printf("heap_limit_set=%zu\n", v);
    printf("bad_limit=%d\n", hipDeviceGetLimit(&v, 77));
    int least = 9, greatest = 9, prio = 9;
    CHECK(hipDeviceGetStreamPriorityRange(&least, &greatest));
    hipStream_t s;
    CHECK(hipStreamCreateWithPriority(&s, 0, greatest));
    CHECK(hipStreamGetPriority(s, &prio));
    printf("priority_range=%d..%d\nstream_priority=%d\n", least, greatest, prio);
    CHECK(hipSetDevice(1));
    hipStream_t s1;
    CHECK(hipStreamCreate(&s1));
    printf("stream_device=%d\nstream1_device=%d\nbad_stream_device=%d\n", hipGetStreamDeviceId(s),
           hipGetStreamDeviceId(s1), hipGetStreamDeviceId((hipStream_t)0x1234));
    int can01 = -1, can00 = -1;
    CHECK(hipDeviceCanAccessPeer(&can01, 0, 1));
    CHECK(hipDeviceCanAccessPeer(&can00, 0, 0));
    printf("can_access_01=%d\ncan_access_00=%d\n", can01, can00);
    CHECK(hipDeviceEnablePeerAccess(0, 0));
    printf("enable_again=%d\n", hipDeviceEnablePeerAccess(0, 0));
    CHECK(hipDeviceDisablePeerAccess(0));
    printf("disable_again=%d\n", hipDeviceDisablePeerAccess(0));
    void *d1;
    CHECK(hipMalloc(&d1, 4096)); /* on device 1 */
    CHECK(hipSetDevice(0));
    void *d0;
    CHECK(hipMalloc(&d0, 4096));
    int x = 1234, y = 0;
    CHECK(hipMemcpy(d0, &x, 4, 1));
    CHECK(hipMemcpyPeer(d1, 1, d0, 0, 4));
    CHECK(hipMemcpy(&y, d1, 4, 2));
    printf("peer_copy=%d\n", y);
    hipPointerAttribute_t a;
    CHECK(hipPointerGetAttributes(&a, d1));
    printf("attr_dev.type=%d\nattr_dev.device=%d\n", a.type, a.device);
    void *m;
    CHECK(hipMallocManaged(&m, 1 << 20, 1));
    CHECK(hipPointerGetAttributes(&a, (char *)m + 100));
    printf("attr_managed.type=%d\nattr_managed.is_managed=%d\n", a.type, a.isManaged);
    CHECK(hipMemAdvise(m, 1 << 20, 1, 0));
    CHECK(hipMemPrefetchAsync(m, 1 << 20, 0, s));
    printf("advise_device_memory=%d\n", hipMemAdvise(d0, 4096, 1, 0));
    void *h;
    CHECK(hipHostMalloc(&h, 4096, 0));
    CHECK(hipPointerGetAttributes(&a, h));
    printf("attr_host.type=%d\n", a.type);
    int local = 0;
    CHECK(hipPointerGetAttributes(&a, &local));
    printf("attr_stack.type=%d\n", a.type);
    /* host work after queued kernels */
    register_kernel();
    CHECK(hipEventCreate(&cb_event));
    dim3 grid = {1, 1, 1}, block = {64, 1, 1};
    CHECK(__hipPushCallConfiguration(grid, block, 0, s));
    kernel_stub();
    CHECK(hipEventRecord(cb_event, s));
    CHECK(hipStreamAddCallback(s, on_stream, &cb_saw_done, 0));
    int three = 3;
    CHECK(hipLaunchHostFunc(s, host_fn, &three));
    CHECK(hipStreamSynchronize(s));
    printf("callback_after_work=%d\nhost_fn_calls=%d\n", cb_saw_done, hostfn_calls);
    /* a module global: device memory that copies reach */
    static const char image[] = ".amdhsa_kernel k\n";
    hipModule_t mod;
    CHECK(hipModuleLoadData(&mod, image));
    void *g = NULL;
    size_t gsize = 0;
    CHECK(hipModuleGetGlobal(&g, &gsize, mod, "counter"));
    void *g2 = NULL;
    CHECK(hipModuleGetGlobal(&g2, NULL, mod, "counter"));
    int in = 77, out = 0;
    CHECK(hipMemcpy(g, &in, 4, 1));
    CHECK(hipMemcpy(&out, g2, 4, 2));
    printf("global_bytes=%zu\nglobal_same=%d\nglobal_roundtrip=%d\n", gsize, g == g2, out);
    int gs = 0, bs = 0;
    CHECK(hipOccupancyMaxPotentialBlockSize(&gs, &bs, (const void *)kernel_stub, 0, 256));
    printf("occupancy_grid=%d\noccupancy_block=%d\n", gs, bs);
    CHECK(hipModuleUnload(mod));
    return 0;
}

static void hex_of(const hipIpcMemHandle_t *h, char out[129]) {
    for (int i = 0; i < 64; i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)h->reserved[i]);
}

static int ipc_export(void) {
    void *p;
    CHECK(hipMalloc(&p, 32 << 20));
    int v = 4242;
    CHECK(hipMemcpy(p, &v, 4, 1));
    hipIpcMemHandle_t h;
    CHECK(hipIpcGetMemHandle(&h, p));
    char hex[129];
    hex_of(&h, hex);
    printf("ptr=%p\nhandle=%s\nready=1\n", p, hex);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) {
    }
    return 0;
}

static int ipc_import(const char *hex) {
    hipIpcMemHandle_t h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < 64 && hex[2 * i] && hex[2 * i + 1]; i++) {
        unsigned b;
        sscanf(hex + 2 * i, "%2x", &b);
        h.reserved[i] = (char)b;
    }
    void *p = NULL;
    CHECK(hipIpcOpenMemHandle(&p, h, 1));
    printf("ptr=%p\n", p);
    int w = 99, r = 0;
    CHECK(hipMemcpy((char *)p + 1024, &w, 4, 1));
    CHECK(hipMemcpy(&r, (char *)p + 1024, 4, 2));
    printf("import_roundtrip=%d\n", r);
    used("imported");
    CHECK(hipIpcCloseMemHandle(p));
    printf("close_again=%d\n", hipIpcCloseMemHandle(p));
    h.reserved[0] ^= 1;
    printf("bad_handle=%d\n", hipIpcOpenMemHandle(&p, h, 1));
    return 0;
}

static int errors(void) {
    printf("name2=%s\nstring2=%s\nname999=%s\n", hipGetErrorName(2), hipGetErrorString(2),
           hipGetErrorName(999));
    void *p;
    hipError_t e = hipMalloc(&p, (size_t)1 << 62);
    printf("huge=%d\n", e);
    printf("peek=%d\n", hipPeekAtLastError());
    printf("last=%d\n", hipGetLastError());
    printf("last_again=%d\n", hipGetLastError());
    int *dev = NULL;
    CHECK(hipMalloc((void **)&dev, 64));
    int v = 42, back = 0;
    CHECK(hipMemcpy(dev, &v, 4, 1));
    CHECK(hipMemcpy(&back, dev, 4, 2));
    printf("roundtrip=%d\n", back);
    e = hipMemcpy(&back, (char *)dev + 60, 8, 2);
    printf("past_end=%d\n", e);
    CHECK(hipFree(dev));
    e = hipFree(dev);
    printf("double_free=%d\n", e);
    return 0;
}

static void register_kernel(void) {
    static const char fake_fatbin[64] = "__CLANG_OFFLOAD_BUNDLE__";
    static int done;
    if (done++)
        return;
    void **mod = __hipRegisterFatBinary(fake_fatbin);
    __hipRegisterFunction(mod, (const void *)kernel_stub, "kernel", "kernel", (unsigned)-1, NULL,
                          NULL, NULL, NULL, NULL);
}

static int alloc_hold(unsigned long long bytes) {
    void *p = NULL;
    hipError_t e = hipMalloc(&p, (size_t)bytes);
    size_t f = 0, t = 0;
    CHECK(hipMemGetInfo(&f, &t));
    printf("alloc_err=%d\nfree=%zu\ntotal=%zu\nready=1\n", e, f, t);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) {
    }
    CHECK(hipMemGetInfo(&f, &t));
    printf("free_at_end=%zu\n", f);
    return 0;
}

static int busy(int n, int wait_ms) {
    register_kernel();
    void *p;
    CHECK(hipMalloc(&p, 64 << 20));
    hipStream_t s;
    CHECK(hipStreamCreate(&s));
    dim3 grid = {1, 1, 1}, block = {64, 1, 1};
    for (int i = 0; i < n; i++) {
        CHECK(__hipPushCallConfiguration(grid, block, 0, s));
        kernel_stub();
    }
    struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    printf("ready=1\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) {
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "props";
    int rc = !strcmp(what, "props")      ? props()
             : !strcmp(what, "procaddr") ? procaddr()
             : !strcmp(what, "hold")     ? hold()
             : !strcmp(what, "timeline") ? timeline()
             : !strcmp(what, "errors")   ? errors()
             : !strcmp(what, "module")   ? module()
             : !strcmp(what, "extras")   ? extras()
             : !strcmp(what, "ipc-export") ? ipc_export()
             : !strcmp(what, "ipc-import") ? ipc_import(argc > 2 ? argv[2] : "")
             : !strcmp(what, "alloc")    ? alloc_hold(argc > 2 ? strtoull(argv[2], NULL, 0) : 0)
             : !strcmp(what, "busy")     ? busy(argc > 2 ? atoi(argv[2]) : 10, argc > 3 ? atoi(argv[3]) : 0)
                                         : 2;
    if (rc == 2) {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    printf("failures=%d\n", failures);
    printf("ok=%d\n", failures == 0);
    return failures != 0;
}
