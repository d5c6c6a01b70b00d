/* libvgpu's memory cap over HIP: a client linked the way ROCm programs are
 * (-lamdhip64, so it binds to the versioned names hipMalloc@hip_4.2 ...), run under
 * LD_PRELOAD=libvgpu.so. Prints key=value lines; "ready=1" then waits for a line on stdin
 * (the test reads the simulator's ground truth meanwhile).
 *
 *   hip_cap fill CHUNK   fill the slice with CHUNK-byte hipMallocs, then to the byte
 *   hip_cap paths HALF   every other allocation path: over the cap, HALF bytes, freed
 *   hip_cap pool HALF    HALF from a created pool; the pool destroyed while it is live;
 *                        then freed
 *   hip_cap graphmem HALF  graph memory nodes of HALF: freed with the graph, freed by
 *                        hipFree
 *   hip_cap churn SECONDS  hipMalloc/hipFree of 1-32 MiB, up to 8 live, for SECONDS
 *   hip_cap hold BYTES   hold BYTES of hipMalloc until stdin closes
 *   hip_cap devices N    two threads and the main one allocating multiples of N on two
 *                        devices, switching with hipSetDevice and the hipCtx* stack in
 *                        lockstep; prints what each device should hold (want0, want1),
 *                        "ready=1", holds until stdin closes
 *   hip_cap threads-known  one hipMalloc/hipFree and a hipMemGetInfo (which starts
 *                        libvgpu's watcher), then how many threads the process has and
 *                        whether the program's libc believes it is single-threaded
 *   hip_cap edges        a process's first charged calls, whatever the slice: hipMalloc of
 *                        1 MiB, hipMemGetInfo, a module (each rc); "ready=1", waits; then
 *                        the module unloaded (free after it)
 *   hip_cap launch-loop N PATH   "ready=1", waits for a line, then N launches through PATH
 *                        (launch, launch_spt, ext, coop, coop_spt, module, ext_module,
 *                        module_coop, graph, graph_spt, launch_exc, drv_ex), each
 *                        synchronised; launch_async: hipLaunchKernel on a stream of its
 *                        own, back to back, synchronised once at the end (as fast as the
 *                        throttle lets it: what examples/cap_accuracy.rs measures)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int hipError_t;
typedef void *hipStream_t;
typedef void *hipArray_t;
typedef struct { size_t width, height, depth; } hipExtent;
typedef struct { void *ptr; size_t pitch, xsize, ysize; } hipPitchedPtr;
typedef struct { int x, y, z, w, f; } hipChannelFormatDesc;
typedef void *hipMipmappedArray_t;
typedef void *hipMemPool_t;
typedef struct { size_t Width, Height; int Format; unsigned NumChannels; } HIP_ARRAY_DESCRIPTOR;
typedef struct {
    size_t Width, Height, Depth;
    int Format;
    unsigned NumChannels, Flags;
} HIP_ARRAY3D_DESCRIPTOR;
#define HIP_AD_FORMAT_FLOAT 0x20
#define HIP_ARRAY_LAYERED 1
typedef struct {
    int allocType, handleTypes;
    struct { int type, id; } location;
    void *win32SecurityAttributes;
    size_t maxSize;
    unsigned char reserved[56];
} hipMemPoolProps;
typedef struct {
    int type, requestedHandleType;
    struct { int type, id; } location;
    void *win32HandleMetaData;
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
} hipMemAllocationProp;

hipError_t hipMalloc(void **, size_t);
hipError_t hipSetDevice(int);
hipError_t hipGetDevice(int *);
typedef void *hipCtx_t;
hipError_t hipCtxCreate(hipCtx_t *, unsigned, int);
hipError_t hipCtxSetCurrent(hipCtx_t);
hipError_t hipCtxPushCurrent(hipCtx_t);
hipError_t hipCtxPopCurrent(hipCtx_t *);
hipError_t hipFree(void *);
hipError_t hipExtMallocWithFlags(void **, size_t, unsigned);
hipError_t hipMallocManaged(void **, size_t, unsigned);
hipError_t hipMallocPitch(void **, size_t *, size_t, size_t);
hipError_t hipMalloc3D(hipPitchedPtr *, hipExtent);
hipError_t hipMallocArray(hipArray_t *, const hipChannelFormatDesc *, size_t, size_t, unsigned);
hipError_t hipFreeArray(hipArray_t);
hipError_t hipMalloc3DArray(hipArray_t *, const hipChannelFormatDesc *, hipExtent, unsigned);
hipError_t hipArrayCreate(hipArray_t *, const HIP_ARRAY_DESCRIPTOR *);
hipError_t hipArray3DCreate(hipArray_t *, const HIP_ARRAY3D_DESCRIPTOR *);
hipError_t hipArrayDestroy(hipArray_t);
hipError_t hipMallocMipmappedArray(hipMipmappedArray_t *, const hipChannelFormatDesc *, hipExtent,
                                   unsigned, unsigned);
hipError_t hipMipmappedArrayCreate(hipMipmappedArray_t *, HIP_ARRAY3D_DESCRIPTOR *, unsigned);
hipError_t hipFreeMipmappedArray(hipMipmappedArray_t);
hipError_t hipMipmappedArrayDestroy(hipMipmappedArray_t);
hipError_t hipMemPoolCreate(hipMemPool_t *, const hipMemPoolProps *);
hipError_t hipMemPoolDestroy(hipMemPool_t);
hipError_t hipMallocFromPoolAsync(void **, size_t, hipMemPool_t, hipStream_t);
hipError_t hipMallocAsync(void **, size_t, hipStream_t);
hipError_t hipFreeAsync(void *, hipStream_t);
hipError_t hipStreamSynchronize(hipStream_t);
hipError_t hipMemCreate(void **, size_t, const hipMemAllocationProp *, unsigned long long);
hipError_t hipMemRelease(void *);
hipError_t hipHostMalloc(void **, size_t, unsigned);
hipError_t hipHostFree(void *);
hipError_t hipMemGetInfo(size_t *, size_t *);
hipError_t hipDeviceGetUuid(char *, int);
hipError_t hipGetProcAddress(const char *, void **, int, uint64_t, int *);
hipError_t hipGetDriverEntryPoint(const char *, void **, unsigned long long, int *);
hipError_t hipGetDriverEntryPoint_spt(const char *, void **, unsigned long long, int *);
hipError_t hipMemcpy(void *, const void *, size_t, int);
hipError_t hipDeviceTotalMem(size_t *, int);
hipError_t hipGetDeviceProperties(void *, int);
hipError_t hipGetDevicePropertiesR0600(void *, int);

typedef struct { unsigned x, y, z; } dim3;
typedef void *hipModule_t;
typedef void *hipFunction_t;
typedef void *hipGraph_t;
typedef void *hipGraphExec_t;
typedef void *hipEvent_t;
void **__hipRegisterFatBinary(const void *);
void __hipRegisterFunction(void **, const void *, char *, const char *, unsigned, void *, void *,
                           dim3 *, dim3 *, int *);
hipError_t hipLaunchKernel(const void *, dim3, dim3, void **, size_t, hipStream_t);
hipError_t hipLaunchKernel_spt(const void *, dim3, dim3, void **, size_t, hipStream_t);
hipError_t hipExtLaunchKernel(const void *, dim3, dim3, void **, size_t, hipStream_t, hipEvent_t,
                              hipEvent_t, int);
hipError_t hipLaunchCooperativeKernel(const void *, dim3, dim3, void **, unsigned, hipStream_t);
hipError_t hipLaunchCooperativeKernel_spt(const void *, dim3, dim3, void **, unsigned, hipStream_t);
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
typedef struct { int id; char pad[4]; unsigned long long val[8]; } hipLaunchAttribute;
typedef struct {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    hipStream_t stream;
    hipLaunchAttribute *attrs;
    unsigned numAttrs;
} hipLaunchConfig_t;
typedef struct {
    unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
    hipStream_t hStream;
    hipLaunchAttribute *attrs;
    unsigned numAttrs;
} HIP_LAUNCH_CONFIG;
hipError_t hipLaunchKernelExC(const hipLaunchConfig_t *, const void *, void **);
hipError_t hipDrvLaunchKernelEx(const HIP_LAUNCH_CONFIG *, hipFunction_t, void **, void **);
hipError_t hipStreamCreate(hipStream_t *);
hipError_t hipStreamBeginCapture(hipStream_t, int);
hipError_t hipStreamEndCapture(hipStream_t, hipGraph_t *);
hipError_t hipGraphInstantiate(hipGraphExec_t *, hipGraph_t, void *, char *, size_t);
hipError_t hipGraphLaunch(hipGraphExec_t, hipStream_t);
hipError_t hipGraphLaunch_spt(hipGraphExec_t, hipStream_t);
hipError_t hipDeviceSynchronize(void);

#define R0000_SIZE 792
#define R0000_TOTAL 256
#define R0600_SIZE 1472
#define R0600_TOTAL 288
#define CANARY 0xA5

/* The simulator's own hipMemGetInfo, reached with dlvsym (which libvgpu does not
 * redirect): the card's real free bytes, the ground truth the charges are judged by. */
static hipError_t (*sim_meminfo)(size_t *, size_t *);
static size_t card_free(void) {
    if (!sim_meminfo) {
        void *h = dlopen("libamdhip64.so.7", RTLD_NOW | RTLD_NOLOAD);
        sim_meminfo = h ? (hipError_t(*)(size_t *, size_t *))dlvsym(h, "hipMemGetInfo", "hip_4.2") : NULL;
        if (!sim_meminfo) { fprintf(stderr, "no simulator hipMemGetInfo\n"); exit(3); }
    }
    size_t f = 0, t = 0;
    sim_meminfo(&f, &t);
    return f;
}

static size_t free_now(void) {
    size_t f = 0, t = 0;
    hipMemGetInfo(&f, &t);
    return f;
}

/* Both property layouts, each read at its own offset; bytes past the struct untouched. */
static void props(void) {
    static unsigned char a[R0000_SIZE + 256], b[R0600_SIZE + 256];
    memset(a, CANARY, sizeof a);
    memset(b, CANARY, sizeof b);
    printf("props_rc=%d\n", hipGetDeviceProperties(a, 0));
    printf("props600_rc=%d\n", hipGetDevicePropertiesR0600(b, 0));
    size_t t0, t6;
    memcpy(&t0, a + R0000_TOTAL, sizeof t0);
    memcpy(&t6, b + R0600_TOTAL, sizeof t6);
    int intact = 1;
    for (size_t i = R0000_SIZE; i < sizeof a; i++) intact &= a[i] == CANARY;
    for (size_t i = R0600_SIZE; i < sizeof b; i++) intact &= b[i] == CANARY;
    printf("props_total=%zu\nprops600_total=%zu\nprops_past_end_intact=%d\n", t0, t6, intact);
    size_t dt = 0;
    hipDeviceTotalMem(&dt, 0);
    printf("device_total_mem=%zu\n", dt);
    size_t f = 0, t = 0;
    printf("meminfo_rc=%d\n", hipMemGetInfo(&f, &t));
    printf("total=%zu\nfree_start=%zu\n", t, f);
}

static void wait_stdin(void) {
    printf("ready=1\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) { /* closed: go on */ }
}

static int fill(size_t chunk) {
    props();
    void *ptrs[4096];
    int n = 0;
    hipError_t rc = 0;
    while (n < 4096 && (rc = hipMalloc(&ptrs[n], chunk)) == 0) n++;
    printf("chunks=%d\nchunk_refusal=%d\n", n, rc);
    size_t rest = free_now();
    printf("free_after_chunks=%zu\n", rest);
    void *exact = NULL, *over = NULL;
    printf("exact_rc=%d\n", rest ? hipMalloc(&exact, rest) : 0);
    printf("free_when_full=%zu\n", free_now());
    printf("one_more_rc=%d\n", hipMalloc(&over, 1));
    printf("allocated=%zu\n", (size_t)n * chunk + rest);
    wait_stdin();
    for (int i = 0; i < n; i++) hipFree(ptrs[i]);
    if (exact) hipFree(exact);
    printf("free_after_release=%zu\n", free_now());
    void *again = NULL;
    printf("realloc_rc=%d\n", hipMalloc(&again, chunk));
    hipFree(again);
    return 0;
}

/* One allocation path: over the cap refused; HALF taken (free drops by what it charged);
 * freed (free back). */
#define PATH(name, over_call, half_call, free_call)                                  \
    do {                                                                             \
        size_t before = free_now(), card = card_free();                              \
        printf(name ".over_rc=%d\n", (over_call));                                   \
        printf(name ".card_after_over=%zu\n", card - card_free());                   \
        printf(name ".rc=%d\n", (half_call));                                        \
        printf(name ".charged=%zu\n", before - free_now());                          \
        printf(name ".card=%zu\n", card - card_free());                              \
        printf(name ".free_rc=%d\n", (free_call));                                   \
        printf(name ".after_free=%zu\n", before - free_now());                       \
        printf(name ".card_after_free=%zu\n", card - card_free());                   \
    } while (0)

static int paths(size_t half) {
    props();
    size_t cap = 0, tmp;
    hipMemGetInfo(&tmp, &cap);
    void *p = NULL, *q = NULL;
    size_t pitch = 0;
    PATH("malloc", hipMalloc(&q, cap + 512), hipMalloc(&p, half), hipFree(p));
    PATH("managed", hipMallocManaged(&q, cap + 512, 1), hipMallocManaged(&p, half, 1), hipFree(p));
    PATH("extflags", hipExtMallocWithFlags(&q, cap + 512, 0), hipExtMallocWithFlags(&p, half, 0),
         hipFree(p));
    PATH("pitch", hipMallocPitch(&q, &pitch, 1024, cap / 1024 + 1),
         hipMallocPitch(&p, &pitch, 1000, half / 1024), hipFree(p));
    printf("pitch.pitch=%zu\n", pitch);
    hipPitchedPtr pp = {0}, pq = {0};
    hipExtent over3 = {1024, cap / 1024 / 2 + 1, 2}, half3 = {1000, half / 1024 / 4, 4};
    PATH("3d", hipMalloc3D(&pq, over3), hipMalloc3D(&pp, half3), hipFree(pp.ptr));
    PATH("async", hipMallocAsync(&q, cap + 512, NULL), hipMallocAsync(&p, half, NULL),
         (hipFreeAsync(p, NULL) | hipStreamSynchronize(NULL)));
    hipChannelFormatDesc f4 = {32, 0, 0, 0, 2};
    hipArray_t arr = NULL, arr2 = NULL;
    PATH("array", hipMallocArray(&arr2, &f4, 1024, cap / 4096 + 1024, 0),
         hipMallocArray(&arr, &f4, 1024, half / 4096, 0), hipFreeArray(arr));
    /* The other array paths, each with the bytes its elements take (a multiple of the
     * simulated card's 2 MiB array granularity, so the card takes exactly that). */
    hipExtent a3_over = {1024, cap / 4096 / 2 + 1, 2}, a3 = {1024, half / 4096 / 4, 4};
    printf("array3d.want=%zu\n", half);
    PATH("array3d", hipMalloc3DArray(&arr2, &f4, a3_over, 0), hipMalloc3DArray(&arr, &f4, a3, 0),
         hipFreeArray(arr));
    HIP_ARRAY_DESCRIPTOR ad_over = {1024, cap / 4096 + 1, HIP_AD_FORMAT_FLOAT, 1},
                         ad = {1024, half / 4096, HIP_AD_FORMAT_FLOAT, 1};
    printf("arraycreate.want=%zu\n", half);
    PATH("arraycreate", hipArrayCreate(&arr2, &ad_over), hipArrayCreate(&arr, &ad),
         hipArrayDestroy(arr));
    HIP_ARRAY3D_DESCRIPTOR a3d_over = {1024, cap / 4096 / 2 + 1, 2, HIP_AD_FORMAT_FLOAT, 1, 0},
                           a3d = {1024, half / 4096 / 4, 4, HIP_AD_FORMAT_FLOAT, 1, 0};
    printf("array3dcreate.want=%zu\n", half);
    PATH("array3dcreate", hipArray3DCreate(&arr2, &a3d_over), hipArray3DCreate(&arr, &a3d),
         hipArrayDestroy(arr));
    /* Mipmapped, two levels of 1024x1024xD float texels: 4 MiB x D + 1 MiB x D/2. */
    hipMipmappedArray_t mm = NULL, mm2 = NULL;
    hipExtent mm_over = {1024, 1024, cap / (4u << 20) + 1}, mm_e = {1024, 1024, 112};
    printf("mipmap.want=%zu\n", (size_t)112 * (4u << 20) + (size_t)56 * (1u << 20));
    PATH("mipmap", hipMallocMipmappedArray(&mm2, &f4, mm_over, 2, 0),
         hipMallocMipmappedArray(&mm, &f4, mm_e, 2, 0), hipFreeMipmappedArray(mm));
    /* Layered: 64 layers at both levels, (4 MiB + 1 MiB) x 64. */
    HIP_ARRAY3D_DESCRIPTOR ml_over = {1024, 1024, cap / (5u << 20) + 1, HIP_AD_FORMAT_FLOAT, 1,
                                      HIP_ARRAY_LAYERED},
                           ml = {1024, 1024, 64, HIP_AD_FORMAT_FLOAT, 1, HIP_ARRAY_LAYERED};
    printf("mipmapcreate.want=%zu\n", (size_t)64 * (5u << 20));
    PATH("mipmapcreate", hipMipmappedArrayCreate(&mm2, &ml_over, 2),
         hipMipmappedArrayCreate(&mm, &ml, 2), hipMipmappedArrayDestroy(mm));
    hipMemAllocationProp dev = {0}, host = {0};
    dev.type = 1;
    dev.location.type = 1; /* device */
    host.type = 1;
    host.location.type = 0; /* not device-located */
    void *h = NULL, *h2 = NULL;
    size_t vmm_over = (cap / (2u << 20) + 1) * (2u << 20);
    PATH("vmm", hipMemCreate(&h2, vmm_over, &dev, 0), hipMemCreate(&h, half, &dev, 0),
         hipMemRelease(h));
    /* Host memory: never charged, however large. */
    void *hp = NULL;
    size_t before = free_now(), card = card_free();
    printf("host.rc=%d\n", hipHostMalloc(&hp, cap + half, 0));
    printf("host.charged=%zu\n", before - free_now());
    printf("host.card=%zu\n", card - card_free());
    hipHostFree(hp);
    return 0;
}

typedef void *hipGraphNode_t;
typedef struct {
    hipMemPoolProps poolProps;
    const void *accessDescs;
    size_t accessDescCount, bytesize;
    void *dptr;
} hipMemAllocNodeParams;
hipError_t hipGraphCreate(void **, unsigned);
hipError_t hipGraphDestroy(void *);
hipError_t hipGraphAddMemAllocNode(hipGraphNode_t *, void *, const hipGraphNode_t *, size_t,
                                   hipMemAllocNodeParams *);

/* Graph memory nodes: charged when added (to the graph), credited when the graph goes or
 * when the pointer is freed first (then not again with the graph). */
static int graphmem(size_t half) {
    size_t cap = 0, tmp;
    hipMemGetInfo(&tmp, &cap);
    hipMemAllocNodeParams np;
    memset(&np, 0, sizeof np);
    np.poolProps.allocType = 1;
    np.poolProps.location.type = 1; /* device 0 */
    void *g = NULL;
    hipGraphNode_t node = NULL;
    printf("create_rc=%d\n", hipGraphCreate(&g, 0));
    size_t before = free_now(), card = card_free();
    np.bytesize = cap + 512;
    printf("over_rc=%d\n", hipGraphAddMemAllocNode(&node, g, NULL, 0, &np));
    printf("card_after_over=%zu\n", card - card_free());
    np.bytesize = half;
    printf("rc=%d\n", hipGraphAddMemAllocNode(&node, g, NULL, 0, &np));
    printf("charged=%zu\ncard=%zu\n", before - free_now(), card - card_free());
    printf("destroy_rc=%d\n", hipGraphDestroy(g));
    printf("after_destroy=%zu\ncard_after_destroy=%zu\n", before - free_now(), card - card_free());
    void *g2 = NULL;
    hipGraphCreate(&g2, 0);
    printf("rc2=%d\n", hipGraphAddMemAllocNode(&node, g2, NULL, 0, &np));
    printf("charged2=%zu\ncard2=%zu\n", before - free_now(), card - card_free());
    printf("free_rc=%d\n", hipFree(np.dptr));
    printf("after_free=%zu\ncard_after_free=%zu\n", before - free_now(), card - card_free());
    printf("destroy2_rc=%d\n", hipGraphDestroy(g2));
    printf("after_destroy2=%zu\ncard_after_destroy2=%zu\n", before - free_now(),
           card - card_free());
    /* The slice is whole again: the cap's worth fits (not credited twice, not leaked). */
    void *p = NULL;
    printf("refill_rc=%d\n", hipMalloc(&p, free_now()));
    printf("over_after_rc=%d\n", hipMalloc(&g, 1));
    return 0;
}

/* A pool's allocation outlives the pool: destroyed while HALF is live, the memory stays
 * on the card (and charged) until its own hipFreeAsync. */
static int pool(size_t half) {
    size_t cap = 0, tmp;
    hipMemGetInfo(&tmp, &cap);
    hipMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = 1; /* pinned */
    props.location.type = 1; /* device 0 */
    hipMemPool_t pl = NULL;
    printf("create_rc=%d\n", hipMemPoolCreate(&pl, &props));
    size_t before = free_now(), card = card_free();
    void *p = NULL, *q = NULL;
    printf("over_rc=%d\n", hipMallocFromPoolAsync(&q, cap + 512, pl, NULL));
    printf("card_after_over=%zu\n", card - card_free());
    printf("rc=%d\n", hipMallocFromPoolAsync(&p, half, pl, NULL));
    hipStreamSynchronize(NULL);
    printf("charged=%zu\ncard=%zu\n", before - free_now(), card - card_free());
    printf("destroy_rc=%d\n", hipMemPoolDestroy(pl));
    printf("charged_after_destroy=%zu\ncard_after_destroy=%zu\n", before - free_now(),
           card - card_free());
    printf("free_rc=%d\n", hipFreeAsync(p, NULL) | hipStreamSynchronize(NULL));
    printf("after_free=%zu\ncard_after_free=%zu\n", before - free_now(), card - card_free());
    return 0;
}

/* hipGetProcAddress hands out our hook for a hooked row (the same function the linker
 * bound), the real library's function for a row we let through. */
static int procaddr(void) {
    void *sim = dlopen("libamdhip64.so.7", RTLD_NOW | RTLD_NOLOAD);
    size_t f = 0, cap = 0;
    hipMemGetInfo(&f, &cap);
    void *fn = NULL;
    int status = -1;
    printf("malloc.rc=%d\n", hipGetProcAddress("hipMalloc", &fn, 600, 0, &status));
    printf("malloc.status=%d\n", status);
    printf("malloc.is_hook=%d\n", fn == (void *)hipMalloc);
    printf("malloc.is_sim=%d\n", fn == dlvsym(sim, "hipMalloc", "hip_4.2"));
    void *p = NULL;
    hipError_t (*m)(void **, size_t) = (hipError_t(*)(void **, size_t))fn;
    printf("malloc.over_rc=%d\n", m ? m(&p, cap + 512) : -1);
    void *cp = NULL;
    printf("memcpy.rc=%d\n", hipGetProcAddress("hipMemcpy", &cp, 600, 0, &status));
    printf("memcpy.is_sim=%d\n", cp && cp == dlvsym(sim, "hipMemcpy", "hip_4.2"));
    void *r6 = NULL;
    hipGetProcAddress("hipGetDevicePropertiesR0600", &r6, 600, 0, &status);
    printf("r0600.is_hook=%d\n", r6 == (void *)hipGetDevicePropertiesR0600);
    /* The launch rows (gates) and the ROCm 7.1 entry-point lookups. */
    void *lx = NULL;
    printf("exc.rc=%d\n", hipGetProcAddress("hipLaunchKernelExC", &lx, 700, 0, &status));
    printf("exc.is_hook=%d\n", lx == (void *)hipLaunchKernelExC);
    void *e = NULL;
    int estatus = -1;
    printf("entry_malloc.rc=%d\n", hipGetDriverEntryPoint("hipMalloc", &e, 0, &estatus));
    printf("entry_malloc.status=%d\n", estatus);
    printf("entry_malloc.is_hook=%d\n", e == (void *)hipMalloc);
    hipError_t (*em)(void **, size_t) = (hipError_t(*)(void **, size_t))e;
    printf("entry_malloc.over_rc=%d\n", em ? em(&p, cap + 512) : -1);
    e = NULL;
    printf("entry_launch.rc=%d\n", hipGetDriverEntryPoint("hipLaunchKernel", &e, 0, &estatus));
    printf("entry_launch.is_hook=%d\n", e == (void *)hipLaunchKernel);
    e = NULL;
    hipGetDriverEntryPoint("hipLaunchKernel", &e, 2, &estatus);
    printf("entry_launch_spt.is_hook=%d\n", e == (void *)hipLaunchKernel_spt);
    e = NULL;
    hipGetDriverEntryPoint_spt("hipLaunchKernel", &e, 0, &estatus);
    printf("entry_spt_launch.is_hook=%d\n", e == (void *)hipLaunchKernel_spt);
    e = NULL;
    hipGetDriverEntryPoint("hipDrvLaunchKernelEx", &e, 0, &estatus);
    printf("entry_drv_ex.is_hook=%d\n", e == (void *)hipDrvLaunchKernelEx);
    e = NULL;
    printf("entry_memcpy.rc=%d\n", hipGetDriverEntryPoint("hipMemcpy", &e, 0, &estatus));
    printf("entry_memcpy.is_sim=%d\n", e && e == dlvsym(sim, "hipMemcpy", "hip_4.2"));
    e = NULL;
    printf("entry_missing.rc=%d\n", hipGetDriverEntryPoint("hipNoSuchCall", &e, 0, &estatus));
    printf("entry_missing.status=%d\n", estatus);
    return 0;
}

/* THREADS threads, each taking CHUNK-byte hipMallocs until refused; holds until stdin. */
static size_t race_chunk;
static void *race_thread(void *arg) {
    size_t *got = arg;
    void *p;
    while (hipMalloc(&p, race_chunk) == 0) *got += race_chunk;
    return NULL;
}

static int race(int threads, size_t chunk) {
    pthread_t t[64];
    size_t got[64] = {0};
    race_chunk = chunk;
    if (threads > 64) threads = 64;
    /* The runtime's context first (charged when it appears), then wait for "go": every
     * racer's context exists before anyone allocates. */
    free_now();
    printf("inited=1\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, race_thread, &got[i]);
    size_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += got[i];
    }
    printf("got=%zu\n", total);
    wait_stdin();
    return 0;
}

/* Prints hipMemGetInfo's free every PERIOD ms for SECONDS s (or until stdin closes). */
static int watch_free(int period_ms, int seconds) {
    printf("pid=%d\n", (int)getpid());
    struct timespec d = {period_ms / 1000, (long)(period_ms % 1000) * 1000000L};
    for (long i = 0; i < (long)seconds * 1000 / (period_ms ? period_ms : 1); i++) {
        printf("free=%zu\n", free_now());
        nanosleep(&d, NULL);
    }
    return 0;
}

/* Allocates and frees (1-32 MiB, up to 8 live) for SECONDS: killed at any moment, it may
 * hold anything from nothing to a full set, mid-call or between calls. */
static int churn(int seconds) {
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    void *live[8] = {0};
    unsigned long long x = 0x9e3779b97f4a7c15ull ^ (unsigned long long)getpid();
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int i = (int)(x % 8);
        if (live[i]) {
            hipFree(live[i]);
            live[i] = NULL;
        } else if (hipMalloc(&live[i], ((x >> 8) % 32 + 1) << 20) != 0) {
            live[i] = NULL;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < seconds);
    return 0;
}

static int hold(size_t bytes) {
    void *p = NULL;
    char uuid[17] = {0};
    hipDeviceGetUuid(uuid, 0);
    printf("uuid=GPU-%s\n", uuid);
    printf("hold_rc=%d\n", hipMalloc(&p, bytes));
    printf("free=%zu\n", free_now());
    wait_stdin();
    hipFree(p);
    return 0;
}

/* Device switching, in lockstep between two threads (each step after a barrier, so a
 * thread's switch lands between the other's allocations). Each allocation's device is the
 * one hipGetDevice names right before it, summed per device: what the simulator must show. */
static size_t dev_unit;
static size_t dev_want[2];
static int dev_bad;
static pthread_barrier_t dev_step;
static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER;

static void dev_alloc(size_t units, int expect) {
    int d = -1;
    void *p = NULL;
    hipGetDevice(&d);
    if (d != expect) dev_bad = 1;
    if (hipMalloc(&p, units * dev_unit) != 0 || d < 0 || d > 1) {
        dev_bad = 1;
        return;
    }
    pthread_mutex_lock(&dev_lock);
    dev_want[d] += units * dev_unit;
    pthread_mutex_unlock(&dev_lock);
}

static void *dev_set_thread(void *arg) {
    (void)arg;
    pthread_barrier_wait(&dev_step);
    if (hipSetDevice(1) != 0) dev_bad = 1;
    dev_alloc(2, 1);
    pthread_barrier_wait(&dev_step);
    if (hipSetDevice(0) != 0) dev_bad = 1;
    dev_alloc(4, 0);
    pthread_barrier_wait(&dev_step);
    if (hipSetDevice(1) != 0) dev_bad = 1;
    dev_alloc(8, 1);
    pthread_barrier_wait(&dev_step);
    if (hipSetDevice(7) == 0) dev_bad = 1; /* no such device: the thread stays on 1 */
    dev_alloc(16, 1);
    return NULL;
}

static void *dev_ctx_thread(void *arg) {
    (void)arg;
    hipCtx_t c0 = NULL, c1 = NULL, popped = NULL;
    dev_alloc(32, 0); /* a new thread starts on device 0, whatever the other one set */
    pthread_barrier_wait(&dev_step);
    if (hipCtxCreate(&c1, 0, 1) != 0) dev_bad = 1;
    dev_alloc(64, 1);
    pthread_barrier_wait(&dev_step);
    if (hipCtxCreate(&c0, 0, 0) != 0) dev_bad = 1;
    dev_alloc(128, 0);
    pthread_barrier_wait(&dev_step);
    if (hipCtxPopCurrent(&popped) != 0 || popped != c0) dev_bad = 1;
    dev_alloc(256, 1);
    pthread_barrier_wait(&dev_step);
    if (hipCtxSetCurrent(c0) != 0) dev_bad = 1;
    dev_alloc(512, 0);
    if (hipCtxPushCurrent(c1) != 0) dev_bad = 1;
    dev_alloc(1024, 1);
    return NULL;
}

static int devices(size_t unit) {
    pthread_t a, b;
    dev_unit = unit;
    dev_alloc(1, 0);
    pthread_barrier_init(&dev_step, NULL, 2);
    pthread_create(&a, NULL, dev_set_thread, NULL);
    pthread_create(&b, NULL, dev_ctx_thread, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    dev_alloc(2048, 0); /* the main thread never switched */
    printf("want0=%zu\nwant1=%zu\nbad=%d\n", dev_want[0], dev_want[1], dev_bad);
    wait_stdin();
    return dev_bad;
}

/* After the library's start-up (its watcher thread runs from then on): a libc that takes
 * the process for single-threaded skips malloc's arena locks, so a thread it does not know
 * of must never call into it. */
static int threads_known(void) {
    void *p = NULL;
    printf("malloc_rc=%d\n", hipMalloc(&p, 1 << 20));
    hipFree(p);
    size_t f = 0, t = 0;
    printf("meminfo_rc=%d\n", hipMemGetInfo(&f, &t));
    int threads = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));) threads += e->d_name[0] != '.';
    if (d) closedir(d);
    printf("threads=%d\n", threads);
    printf("libc_single_threaded=%d\n", (int)__libc_single_threaded);
    return 0;
}

static int edges(void) {
    void *p = NULL;
    printf("malloc_rc=%d\n", hipMalloc(&p, 1u << 20));
    size_t f = 0, t = 0;
    printf("meminfo_rc=%d\n", hipMemGetInfo(&f, &t));
    printf("free=%zu\n", f);
    hipModule_t mod = NULL;
    int mrc = hipModuleLoadData(&mod, ".amdhsa_kernel k\n");
    printf("module_rc=%d\n", mrc);
    printf("free_with_module=%zu\n", free_now());
    wait_stdin();
    if (mrc == 0) printf("unload_rc=%d\n", hipModuleUnload(mod));
    printf("free_after_unload=%zu\n", free_now());
    if (p) hipFree(p);
    return 0;
}

/* A host stub the runtime knows by address (what the compiler's registration does). */
static void kernel_stub(void) {}

static int launch_loop(unsigned long n, const char *path) {
    static const unsigned fake_wrapper[4] = {0, 1, 0, 0}; /* not a clang bundle: runs anywhere */
    void **fatbin = __hipRegisterFatBinary(fake_wrapper);
    __hipRegisterFunction(fatbin, (const void *)kernel_stub, (char *)"k", "k", (unsigned)-1, NULL,
                          NULL, NULL, NULL, NULL);
    hipModule_t mod = NULL;
    hipFunction_t fn = NULL;
    int rc = hipModuleLoadData(&mod, ".amdhsa_kernel k\n");
    if (rc == 0) rc = hipModuleGetFunction(&fn, mod, "k");
    if (rc) { printf("setup_rc=%d\n", rc); return 1; }
    hipStream_t stream = NULL;
    hipGraph_t graph = NULL;
    hipGraphExec_t exec = NULL;
    dim3 grid = {1, 1, 1}, block = {64, 1, 1};
    if (!strncmp(path, "graph", 5) || !strcmp(path, "launch_async")) {
        rc = hipStreamCreate(&stream);
        if (!rc && path[0] == 'g') {
            rc = hipStreamBeginCapture(stream, 0);
            if (!rc) rc = hipLaunchKernel((const void *)kernel_stub, grid, block, NULL, 0, stream);
            if (!rc) rc = hipStreamEndCapture(stream, &graph);
            if (!rc) rc = hipGraphInstantiate(&exec, graph, NULL, NULL, 0);
        }
        if (rc) { printf("setup_rc=%d\n", rc); return 1; }
    }
    printf("pid=%d\n", (int)getpid());
    wait_stdin();
    if (!strcmp(path, "launch_async")) {
        for (unsigned long i = 0; i < n; i++) {
            rc = hipLaunchKernel((const void *)kernel_stub, grid, block, NULL, 0, stream);
            if (rc) { printf("launch_rc=%d\n", rc); return 1; }
        }
        hipStreamSynchronize(stream);
        printf("launched=%lu\n", n);
        return 0;
    }
    const void *k = (const void *)kernel_stub;
    /* One attribute each (cooperative, off): the structs travel whole. */
    hipLaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = 2;
    hipLaunchConfig_t cfg = {grid, block, 0, NULL, &attr, 1};
    HIP_LAUNCH_CONFIG dcfg = {1, 1, 1, 64, 1, 1, 0, NULL, &attr, 1};
    for (unsigned long i = 0; i < n; i++) {
        rc = !strcmp(path, "launch")        ? hipLaunchKernel(k, grid, block, NULL, 0, NULL)
           : !strcmp(path, "launch_spt")    ? hipLaunchKernel_spt(k, grid, block, NULL, 0, NULL)
           : !strcmp(path, "ext")           ? hipExtLaunchKernel(k, grid, block, NULL, 0, NULL, NULL, NULL, 0)
           : !strcmp(path, "coop")          ? hipLaunchCooperativeKernel(k, grid, block, NULL, 0, NULL)
           : !strcmp(path, "coop_spt")      ? hipLaunchCooperativeKernel_spt(k, grid, block, NULL, 0, NULL)
           : !strcmp(path, "module")        ? hipModuleLaunchKernel(fn, 1, 1, 1, 64, 1, 1, 0, NULL, NULL, NULL)
           : !strcmp(path, "ext_module")    ? hipExtModuleLaunchKernel(fn, 64, 1, 1, 64, 1, 1, 0, NULL, NULL, NULL, NULL, NULL, 0)
           : !strcmp(path, "module_coop")   ? hipModuleLaunchCooperativeKernel(fn, 1, 1, 1, 64, 1, 1, 0, NULL, NULL)
           : !strcmp(path, "graph")         ? hipGraphLaunch(exec, stream)
           : !strcmp(path, "graph_spt")     ? hipGraphLaunch_spt(exec, stream)
           : !strcmp(path, "launch_exc")    ? hipLaunchKernelExC(&cfg, k, NULL)
           : !strcmp(path, "drv_ex")        ? hipDrvLaunchKernelEx(&dcfg, fn, NULL, NULL)
                                            : -1;
        if (rc) { printf("launch_rc=%d\n", rc); return 1; }
        hipDeviceSynchronize();
    }
    printf("launched=%lu\n", n);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "fill";
    size_t n = argc > 2 ? strtoull(argv[2], NULL, 0) : (100u << 20);
    int rc = !strcmp(what, "fill")    ? fill(n)
             : !strcmp(what, "paths") ? paths(n)
             : !strcmp(what, "hold")  ? hold(n)
             : !strcmp(what, "devices") ? devices(n)
             : !strcmp(what, "threads-known") ? threads_known()
             : !strcmp(what, "edges") ? edges()
             : !strcmp(what, "pool")  ? pool(n)
             : !strcmp(what, "churn") ? churn((int)n)
             : !strcmp(what, "graphmem") ? graphmem(n)
             : !strcmp(what, "launch-loop") ? launch_loop(n, argc > 3 ? argv[3] : "launch")
             : !strcmp(what, "procaddr") ? procaddr()
             : !strcmp(what, "race")  ? race((int)n, argc > 3 ? strtoull(argv[3], NULL, 0) : (64u << 20))
             : !strcmp(what, "watch-free") ? watch_free((int)n, argc > 3 ? atoi(argv[3]) : 10)
                                      : 2;
    printf("ok=%d\n", rc == 0);
    return rc;
}
