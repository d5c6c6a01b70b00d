/*
 * The device check's driver-API client (scripts/gpu-check.sh). Built against nothing but
 * dlopen: it loads libcuda.so.1 / libnvidia-ml.so.1 at run time and takes its types from our
 * own cuda-headers/include/vgpu_cuda.h (through tests/c/vgpu_test_api.h), so the same binary
 * runs over a real NVIDIA driver and over the simulated GPU.
 *
 * Usage: gpucheck SCENARIO [ARGS]; prints `key=value` lines on stdout.
 *   memcap SLICE             every allocation path filled until refused, against the slice
 *   ctxmod SLICE             context + module memory charged (or refused) in this slice
 *   spin NS SECONDS          a PTX kernel spinning NS ns (1 thread), launched in a loop, two in flight
 *                            in a loop for SECONDS: launches per second
 *   overhead N               ns per cuLaunchKernel and per cuMemAlloc+cuMemFree pair, through
 *                            libvgpu's hook and through the driver's own pointer, one process
 *   startup N LIB            N child processes at one barrier, without and with LD_PRELOAD=LIB
 *                            (alternating rounds): barrier-to-first-allocation medians
 *   hold BYTES SECONDS       allocates BYTES (in 64 MiB pieces), prints ready=1, holds until
 *                            SIGTERM or SECONDS
 *   grab CHUNK SECONDS GO    creates its context, prints ctx=1, waits for the file GO, then
 *                            allocates CHUNK pieces until refused, prints, holds like hold
 *   truth [PID...]           the driver's per-process figures (NVML, read by this process:
 *                            run it without libvgpu): pid.<pid>=bytes, or all processes
 *   util SECONDS PERIOD_MS   samples NVML device utilization: util.mean, util.samples
 *   nvmlview                 what NVML shows this process: memory total/used, processes
 * Exit codes: 0 ok, 2 usage, 3 library not loadable, 10 a call that must succeed failed.
 */
#include "vgpu_test_api.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)

#define VGPU_MEMBER(sym, base, params) vgpu_pfn_##sym sym;
static struct {
    VGPU_DRIVER_FUNCS(VGPU_MEMBER)
} api;
#undef VGPU_MEMBER
#define API(sym) api.sym

static void *cuda_lib;

#define CK(call)                                                                  \
    do {                                                                          \
        CUresult rc_ = (call);                                                    \
        if (rc_ != CUDA_SUCCESS) {                                                \
            printf("error=%s code=%d line=%d\n", #call, (int)rc_, __LINE__);     \
            fflush(stdout);                                                       \
            exit(10);                                                             \
        }                                                                         \
    } while (0)

static void kvi(const char *key, long long v) { printf("%s=%lld\n", key, v); }
static void kvu(const char *key, unsigned long long v) { printf("%s=%llu\n", key, v); }
static void kvf(const char *key, double v) { printf("%s=%.3f\n", key, v); }

static unsigned long long now_ns(void) { return vgpu_now_ns(CLOCK_MONOTONIC); }

static unsigned long long parse_size(const char *s) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) {
        fprintf(stderr, "gpucheck: bad size %s\n", s);
        exit(2);
    }
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end) {
        fprintf(stderr, "gpucheck: bad size %s\n", s);
        exit(2);
    }
    return v;
}

static int cuda_load(void) {
    cuda_lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cuda_lib) {
        printf("dlopen_error=%s\n", dlerror());
        return 3;
    }
    int missing = 0;
#define VGPU_RESOLVE(sym, base, params)                \
    api.sym = (vgpu_pfn_##sym)dlsym(cuda_lib, #sym);   \
    if (!api.sym) {                                    \
        printf("missing=%s\n", #sym);                  \
        missing++;                                     \
    }
    VGPU_DRIVER_FUNCS(VGPU_RESOLVE)
#undef VGPU_RESOLVE
    return missing ? 3 : 0;
}

static CUcontext setup_ctx(void) {
    CK(API(cuInit)(0));
    CUdevice dev;
    CK(API(cuDeviceGet)(&dev, 0));
    CUcontext ctx;
    CK(API(cuDevicePrimaryCtxRetain)(&ctx, dev));
    CK(API(cuCtxSetCurrent)(ctx));
    return ctx;
}

static size_t used_now(size_t *total_out) {
    size_t f = 0, t = 0;
    CK(API(cuMemGetInfo_v2)(&f, &t));
    if (total_out) *total_out = t;
    return t - f;
}

/* ---- the driver's own figures (NVML in a child process without libvgpu) -------------- */

typedef nvmlReturn_t (*nvml_init_t)(void);
typedef nvmlReturn_t (*nvml_by_index_t)(unsigned int, nvmlDevice_t *);
typedef nvmlReturn_t (*nvml_procs_t)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_v2_t *);
typedef nvmlReturn_t (*nvml_mem_t)(nvmlDevice_t, nvmlMemory_t *);
typedef nvmlReturn_t (*nvml_util_t)(nvmlDevice_t, nvmlUtilization_t *);

static void *nvml_lib;
static nvmlDevice_t nvml_dev;

static int nvml_load(void) {
    nvml_lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml_lib) {
        printf("nvml_dlopen_error=%s\n", dlerror());
        return 3;
    }
    nvml_init_t init = (nvml_init_t)dlsym(nvml_lib, "nvmlInit_v2");
    nvml_by_index_t by_index = (nvml_by_index_t)dlsym(nvml_lib, "nvmlDeviceGetHandleByIndex_v2");
    if (!init || !by_index || init() != NVML_SUCCESS || by_index(0, &nvml_dev) != NVML_SUCCESS) {
        printf("nvml_error=init\n");
        return 3;
    }
    return 0;
}

/* All compute processes on device 0: count, and pid/bytes in `out` (at most `max`). */
static int nvml_procs(nvmlProcessInfo_v2_t *out, unsigned int max) {
    nvml_procs_t f = (nvml_procs_t)dlsym(nvml_lib, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!f) f = (nvml_procs_t)dlsym(nvml_lib, "nvmlDeviceGetComputeRunningProcesses_v2");
    if (!f) return -1;
    unsigned int n = max;
    nvmlReturn_t rc = f(nvml_dev, &n, out);
    if (rc != NVML_SUCCESS) return -1;
    return (int)n;
}

static int truth_main(int argc, char **argv) {
    if (nvml_load()) return 3;
    static nvmlProcessInfo_v2_t procs[1024];
    int n = nvml_procs(procs, 1024);
    if (n < 0) {
        printf("nvml_error=procs\n");
        return 10;
    }
    char key[64];
    if (argc <= 2) {
        kvi("procs", n);
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof key, "pid.%u", procs[i].pid);
            kvu(key, procs[i].usedGpuMemory);
        }
        return 0;
    }
    for (int a = 2; a < argc; a++) {
        unsigned long long sum = 0;
        unsigned int pid = (unsigned int)atoi(argv[a]);
        for (int i = 0; i < n; i++)
            if (procs[i].pid == pid) sum += procs[i].usedGpuMemory;
        snprintf(key, sizeof key, "pid.%u", pid);
        kvu(key, sum);
    }
    return 0;
}

static const char *self_exe = "/proc/self/exe";

/* Runs `gpucheck truth PID` with libvgpu taken out of the environment; returns its figure
 * for PID, or -1 when it could not be had. */
static long long truth_of(pid_t pid) {
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t c = fork();
    if (c < 0) return -1;
    if (c == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        unsetenv("LD_PRELOAD");
        char arg[32];
        snprintf(arg, sizeof arg, "%d", (int)pid);
        execl(self_exe, "gpucheck", "truth", arg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof buf && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
    buf[len] = 0;
    close(fds[0]);
    int st = 0;
    waitpid(c, &st, 0);
    char want[48];
    snprintf(want, sizeof want, "pid.%d=", (int)pid);
    char *p = strstr(buf, want);
    if (!p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    return atoll(p + strlen(want));
}

/* ---- memory cap: every allocation path --------------------------------------------- */

enum path { P_ALLOC, P_PITCH, P_MANAGED, P_ASYNC, P_POOL, P_VMM, P_ARRAY2D, P_ARRAY3D, P_MIPMAP, P_COUNT };
static const char *path_name[P_COUNT] = {"alloc", "pitch", "managed", "async", "pool",
                                         "vmm_device", "array2d", "array3d", "mipmapped"};

struct piece {
    CUdeviceptr ptr;
    vgpu_mem_handle handle;
    CUarray array;
    CUmipmappedArray mipmap;
};

static CUmemoryPool made_pool;
static size_t vmm_granularity;

static CUmemAllocationProp vmm_prop(CUmemLocationType where) {
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = where;
    prop.location.id = 0;
    return prop;
}

/* One piece on `path`: `bytes` on the linear paths (alloc, managed, async, pool), else a
 * fixed 64 MiB-sized one (the driver's figure may round it). */
static int linear(enum path p) { return p == P_ALLOC || p == P_MANAGED || p == P_ASYNC || p == P_POOL; }

static CUresult alloc_piece(enum path p, struct piece *out, size_t bytes) {
    memset(out, 0, sizeof *out);
    size_t pitch = 0;
    switch (p) {
    case P_ALLOC: return API(cuMemAlloc_v2)(&out->ptr, bytes);
    case P_PITCH: return API(cuMemAllocPitch_v2)(&out->ptr, &pitch, 8192, 8192, 4);
    case P_MANAGED: return API(cuMemAllocManaged)(&out->ptr, bytes, CU_MEM_ATTACH_GLOBAL);
    case P_ASYNC: return API(cuMemAllocAsync)(&out->ptr, bytes, NULL);
    case P_POOL: return API(cuMemAllocFromPoolAsync)(&out->ptr, bytes, made_pool, NULL);
    case P_VMM: {
        CUmemAllocationProp prop = vmm_prop(CU_MEM_LOCATION_TYPE_DEVICE);
        size_t n = (64 * MiB + vmm_granularity - 1) / vmm_granularity * vmm_granularity;
        return API(cuMemCreate)(&out->handle, n, &prop, 0);
    }
    case P_ARRAY2D: {
        CUDA_ARRAY_DESCRIPTOR d = {4096, 4096, CU_AD_FORMAT_FLOAT, 1};
        return API(cuArrayCreate_v2)(&out->array, &d);
    }
    case P_ARRAY3D: {
        CUDA_ARRAY3D_DESCRIPTOR d = {256, 256, 256, CU_AD_FORMAT_UNSIGNED_INT8, 4, 0};
        return API(cuArray3DCreate_v2)(&out->array, &d);
    }
    case P_MIPMAP: {
        CUDA_ARRAY3D_DESCRIPTOR d = {4096, 4096, 0, CU_AD_FORMAT_FLOAT, 1, 0};
        return API(cuMipmappedArrayCreate)(&out->mipmap, &d, 2);
    }
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

static void free_piece(enum path p, struct piece *x) {
    switch (p) {
    case P_ASYNC:
    case P_POOL:
        CK(API(cuMemFreeAsync)(x->ptr, NULL));
        break;
    case P_VMM: CK(API(cuMemRelease)(x->handle)); break;
    case P_ARRAY2D:
    case P_ARRAY3D: CK(API(cuArrayDestroy)(x->array)); break;
    case P_MIPMAP: CK(API(cuMipmappedArrayDestroy)(x->mipmap)); break;
    default: CK(API(cuMemFree_v2)(x->ptr)); break;
    }
}

static int memcap_main(unsigned long long slice) {
    CUcontext ctx = setup_ctx();
    (void)ctx;
    CUdevice dev;
    CK(API(cuDeviceGet)(&dev, 0));
    size_t total = 0, dtotal = 0;
    size_t base = used_now(&total);
    CK(API(cuDeviceTotalMem_v2)(&dtotal, dev));
    kvu("slice", slice);
    kvu("meminfo_total", total);
    kvu("device_total_mem", dtotal);
    kvu("used_at_start", base);
    kvi("truth_at_start", truth_of(getpid()));

    CUmemPoolProps pp;
    memset(&pp, 0, sizeof pp);
    pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    pp.location.id = 0;
    CK(API(cuMemPoolCreate)(&made_pool, &pp));
    CUmemAllocationProp prop = vmm_prop(CU_MEM_LOCATION_TYPE_DEVICE);
    CK(API(cuMemGetAllocationGranularity)(&vmm_granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));

    /* Never more pieces than the slice holds, plus two: a cap that does not hold must not
     * fill the card (managed memory past the card can hang a real GPU). */
    int max_pieces = (int)(slice / (64 * MiB)) + 2;
    struct piece *pieces = calloc((size_t)max_pieces + 1, sizeof *pieces);
    char key[96];
    for (int p = 0; p < P_COUNT; p++) {
        int n = 0;
        CUresult rc = CUDA_SUCCESS;
        while (n < max_pieces && (rc = alloc_piece((enum path)p, &pieces[n], 64 * MiB)) == CUDA_SUCCESS) n++;
        if (p == P_ASYNC || p == P_POOL) API(cuStreamSynchronize)(NULL);
        size_t used_full = used_now(NULL);
        long long truth_full = truth_of(getpid());
        /* To the byte on the linear paths: what is left fits exactly, one byte more does not. */
        if (linear((enum path)p) && rc == CUDA_ERROR_OUT_OF_MEMORY) {
            size_t left = total - used_full;
            snprintf(key, sizeof key, "path.%s.left_before_exact", path_name[p]);
            kvu(key, left);
            CUresult erc = CUDA_SUCCESS;
            if (left > 0) {
                erc = alloc_piece((enum path)p, &pieces[n], left);
                if (erc == CUDA_SUCCESS) n++;
            }
            snprintf(key, sizeof key, "path.%s.exact_rc", path_name[p]);
            kvi(key, erc);
            struct piece one;
            CUresult orc = alloc_piece((enum path)p, &one, 1);
            if (orc == CUDA_SUCCESS) free_piece((enum path)p, &one);
            snprintf(key, sizeof key, "path.%s.one_more_rc", path_name[p]);
            kvi(key, orc);
            if (p == P_ASYNC || p == P_POOL) API(cuStreamSynchronize)(NULL);
            used_full = used_now(NULL);
            truth_full = truth_of(getpid());
        }
        snprintf(key, sizeof key, "path.%s.pieces", path_name[p]);
        kvi(key, n);
        snprintf(key, sizeof key, "path.%s.refusal_rc", path_name[p]);
        kvi(key, n >= max_pieces ? -1 : (long long)rc);
        snprintf(key, sizeof key, "path.%s.used_full", path_name[p]);
        kvu(key, used_full);
        snprintf(key, sizeof key, "path.%s.truth_full", path_name[p]);
        kvi(key, truth_full);
        for (int i = 0; i < n; i++) free_piece((enum path)p, &pieces[i]);
        API(cuStreamSynchronize)(NULL);
        if (p == P_POOL) API(cuMemPoolTrimTo)(made_pool, 0);
        snprintf(key, sizeof key, "path.%s.left_after_free", path_name[p]);
        kvi(key, (long long)used_now(NULL) - (long long)base);
    }
    free(pieces);
    CK(API(cuMemPoolDestroy)(made_pool));

    /* Host-located VMM handles are host memory: not charged to the slice. */
    CUmemAllocationProp hprop = vmm_prop(CU_MEM_LOCATION_TYPE_HOST);
    size_t hg = 0;
    CUresult grc = API(cuMemGetAllocationGranularity)(&hg, &hprop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    vgpu_mem_handle hh;
    size_t before = used_now(NULL);
    CUresult hrc = grc == CUDA_SUCCESS ? API(cuMemCreate)(&hh, 32 * hg, &hprop, 0) : grc;
    kvi("path.vmm_host.rc", hrc);
    kvi("path.vmm_host.charged", (long long)used_now(NULL) - (long long)before);
    if (hrc == CUDA_SUCCESS) CK(API(cuMemRelease)(hh));
    printf("ok=1\n");
    return 0;
}

/* ---- context and module memory ----------------------------------------------------- */

static const char SPIN_PTX[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    "\n"
    "// Spins for the number of nanoseconds in its parameter (by the global timer).\n"
    ".visible .entry vgpu_spin(\n"
    "    .param .u64 vgpu_spin_ns\n"
    ")\n"
    "{\n"
    "    .reg .pred %p<2>;\n"
    "    .reg .b64 %rd<5>;\n"
    "    ld.param.u64 %rd1, [vgpu_spin_ns];\n"
    "    mov.u64 %rd2, %globaltimer;\n"
    "SPIN:\n"
    "    mov.u64 %rd3, %globaltimer;\n"
    "    sub.u64 %rd4, %rd3, %rd2;\n"
    "    setp.lt.u64 %p1, %rd4, %rd1;\n"
    "    @%p1 bra SPIN;\n"
    "    ret;\n"
    "}\n";

static int ctxmod_main(unsigned long long slice) {
    kvu("slice", slice);
    CK(API(cuInit)(0));
    CUdevice dev;
    CK(API(cuDeviceGet)(&dev, 0));
    CUcontext ctx;
    CUresult rc = API(cuDevicePrimaryCtxRetain)(&ctx, dev);
    kvi("ctx_rc", rc);
    kvi("ctx_truth", truth_of(getpid()));
    if (rc != CUDA_SUCCESS) {
        printf("ok=1\n");
        return 0;
    }
    CK(API(cuCtxSetCurrent)(ctx));
    kvu("ctx_used", used_now(NULL));
    CUmodule mod;
    rc = API(cuModuleLoadData)(&mod, SPIN_PTX);
    kvi("module_rc", rc);
    if (rc == CUDA_SUCCESS) {
        CUfunction f;
        CK(API(cuModuleGetFunction)(&f, mod, "vgpu_spin"));
        unsigned long long ns = 1000;
        void *args[] = {&ns};
        CK(API(cuLaunchKernel)(f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
        CK(API(cuCtxSynchronize)());
    }
    kvu("module_used", used_now(NULL));
    kvi("module_truth", truth_of(getpid()));
    printf("ok=1\n");
    return 0;
}

/* ---- compute: the spin kernel in a loop -------------------------------------------- */

static CUfunction load_spin(void) {
    CUmodule mod;
    CK(API(cuModuleLoadData)(&mod, SPIN_PTX));
    CUfunction f;
    CK(API(cuModuleGetFunction)(&f, mod, "vgpu_spin"));
    return f;
}

static int spin_main(unsigned long long ns, double seconds) {
    setup_ctx();
    CUfunction f = load_spin();
    void *args[] = {&ns};
    /* Two kernels in flight (an event after each): the next one is queued while the GPU runs
     * the current one, so a launching thread descheduled for a moment (a loaded machine) does
     * not leave the GPU idle and the uncapped run measures the GPU, not the CPU. Under a cap
     * the throttle still decides when each launch may go. */
    CUevent ev[2];
    CK(API(cuEventCreate)(&ev[0], 0));
    CK(API(cuEventCreate)(&ev[1], 0));
    /* Warm-up: a second of launches (the throttle calibrates its cost estimate). */
    unsigned long long n = 0, t = now_ns(), end = t + 1000000000ull;
    for (int warm = 1; warm >= 0; warm--) {
        unsigned long long t0 = now_ns();
        if (!warm) {
            n = 0;
            end = t0 + (unsigned long long)(seconds * 1e9);
        }
        unsigned long long i = 0;
        while (now_ns() < end) {
            if (i >= 2) CK(API(cuEventSynchronize)(ev[i % 2]));
            CK(API(cuLaunchKernel)(f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
            CK(API(cuEventRecord)(ev[i % 2], NULL));
            i++;
        }
        CK(API(cuCtxSynchronize)());
        if (warm) continue;
        n = i;
        double el = (double)(now_ns() - t0) / 1e9;
        kvu("launches", n);
        kvf("seconds", el);
        kvf("per_s", (double)n / el);
        kvf("busy_share", (double)n * (double)ns / 1e9 / el);
    }
    CK(API(cuEventDestroy_v2)(ev[0]));
    CK(API(cuEventDestroy_v2)(ev[1]));
    return 0;
}

/* ---- overhead: hooked vs the driver's own pointer ----------------------------------- */

/* The address of `name` as libcuda itself defines it, read from its ELF dynamic symbol
 * table (dlsym would answer with libvgpu's hook when it is preloaded). */
struct elf_query {
    const char *name;
    void *found;
};

static uint32_t gnu_hash(const char *s) {
    uint32_t h = 5381;
    for (; *s; s++) h = (h << 5) + h + (unsigned char)*s;
    return h;
}

static int elf_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct elf_query *q = data;
    const char *slash = strrchr(info->dlpi_name, '/');
    const char *base = slash ? slash + 1 : info->dlpi_name;
    if (strncmp(base, "libcuda.so", 10)) return 0;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const uint32_t *gnu = NULL, *sysv = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        /* glibc relocates these in place on x86-64; be safe where it does not. */
        ElfW(Addr) a = dyn->d_un.d_ptr;
        if (a < info->dlpi_addr) a += info->dlpi_addr;
        if (dyn->d_tag == DT_SYMTAB) symtab = (const ElfW(Sym) *)a;
        else if (dyn->d_tag == DT_STRTAB) strtab = (const char *)a;
        else if (dyn->d_tag == DT_GNU_HASH) gnu = (const uint32_t *)a;
        else if (dyn->d_tag == DT_HASH) sysv = (const uint32_t *)a;
    }
    if (!symtab || !strtab) return 0;
    if (!gnu && sysv) {
        /* SysV hash only: its chain count is the number of symbols; a plain scan will do. */
        for (uint32_t i = 0; i < sysv[1]; i++)
            if (symtab[i].st_value && !strcmp(q->name, strtab + symtab[i].st_name)) {
                q->found = (void *)(info->dlpi_addr + symtab[i].st_value);
                return 1;
            }
        return 0;
    }
    if (!gnu) return 0;
    uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom_size = gnu[2];
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&gnu[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    const uint32_t *chain = &buckets[nbuckets];
    uint32_t h = gnu_hash(q->name);
    uint32_t idx = buckets[h % nbuckets];
    if (idx < symoffset) return 0;
    for (;; idx++) {
        uint32_t h2 = chain[idx - symoffset];
        if ((h | 1) == (h2 | 1) && !strcmp(q->name, strtab + symtab[idx].st_name) && symtab[idx].st_value) {
            q->found = (void *)(info->dlpi_addr + symtab[idx].st_value);
            return 1;
        }
        if (h2 & 1) break;
    }
    return 0;
}

static void *driver_own(const char *name) {
    struct elf_query q = {name, NULL};
    dl_iterate_phdr(elf_cb, &q);
    return q.found;
}

static const char *lib_of(void *p) {
    Dl_info info;
    if (!p || !dladdr(p, &info) || !info.dli_fname) return "-";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define ROUNDS 41
static int overhead_main(int batch) {
    setup_ctx();
    CUfunction f = load_spin();
    unsigned long long zero = 0;
    void *args[] = {&zero};
    vgpu_pfn_cuLaunchKernel launch[2] = {api.cuLaunchKernel, (vgpu_pfn_cuLaunchKernel)driver_own("cuLaunchKernel")};
    vgpu_pfn_cuMemAlloc_v2 alloc[2] = {api.cuMemAlloc_v2, (vgpu_pfn_cuMemAlloc_v2)driver_own("cuMemAlloc_v2")};
    vgpu_pfn_cuMemFree_v2 mfree[2] = {api.cuMemFree_v2, (vgpu_pfn_cuMemFree_v2)driver_own("cuMemFree_v2")};
    printf("hooked_lib=%s\ndirect_lib=%s\n", lib_of((void *)launch[0]), lib_of((void *)launch[1]));
    if (!launch[1] || !alloc[1] || !mfree[1]) {
        printf("error=driver_own_lookup\n");
        return 10;
    }
    kvi("hooked_differs", launch[0] != launch[1]);
    static double lk[2][ROUNDS], al[2][ROUNDS];
    /* Rounds interleave the two variants so drift (clocks, other load) hits both alike. */
    for (int r = 0; r < ROUNDS; r++) {
        for (int v = 0; v < 2; v++) {
            unsigned long long t0 = now_ns();
            for (int i = 0; i < batch; i++) CK(launch[v](f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
            unsigned long long t1 = now_ns();
            CK(API(cuCtxSynchronize)());
            lk[v][r] = (double)(t1 - t0) / batch;
            t0 = now_ns();
            for (int i = 0; i < batch; i++) {
                CUdeviceptr p;
                CK(alloc[v](&p, MiB));
                CK(mfree[v](p));
            }
            al[v][r] = (double)(now_ns() - t0) / batch;
        }
    }
    double lh = median(lk[0], ROUNDS), ld = median(lk[1], ROUNDS);
    double ah = median(al[0], ROUNDS), ad = median(al[1], ROUNDS);
    kvf("launch_hooked_ns", lh);
    kvf("launch_direct_ns", ld);
    kvf("launch_added_ns", lh - ld);
    kvf("alloc_free_hooked_ns", ah);
    kvf("alloc_free_direct_ns", ad);
    kvf("alloc_free_added_ns", ah - ad);
    return 0;
}

/* ---- start-up: N processes at one barrier ------------------------------------------ */

static int startup_child(int barrier_fd) {
    char c;
    /* The barrier: the parent closes the pipe's write end; every child's read returns. */
    while (read(barrier_fd, &c, 1) > 0) {
    }
    if (cuda_load()) return 3;
    setup_ctx();
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, MiB));
    unsigned long long done = now_ns();
    CK(API(cuMemFree_v2)(p));
    printf("%llu\n", done);
    return 0;
}

/* One round: N children (LD_PRELOAD=lib when lib is set), released at once; the median and
 * the slowest barrier-to-first-allocation time in µs. */
static int startup_round(int n, const char *lib, double *median_us, double *max_us) {
    int barrier[2], results[2];
    if (pipe(barrier) || pipe(results)) return -1;
    pid_t *kids = calloc((size_t)n, sizeof *kids);
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(barrier[1]);
            close(results[0]);
            dup2(results[1], 1);
            close(results[1]);
            char fd[16];
            snprintf(fd, sizeof fd, "%d", barrier[0]);
            if (lib && *lib) setenv("LD_PRELOAD", lib, 1);
            else unsetenv("LD_PRELOAD");
            execl(self_exe, "gpucheck", "startup-child", fd, (char *)NULL);
            _exit(127);
        }
    }
    close(barrier[0]);
    close(results[1]);
    usleep(500000); /* every child reaches its read (exec and library load are not timed) */
    unsigned long long released = now_ns();
    close(barrier[1]);
    FILE *in = fdopen(results[0], "r");
    double *us = calloc((size_t)n, sizeof *us);
    int got = 0;
    unsigned long long done;
    while (got < n && fscanf(in, "%llu", &done) == 1) us[got++] = (double)(done - released) / 1000.0;
    fclose(in);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int st = 0;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
    }
    if (got > 0) {
        *median_us = median(us, got);
        *max_us = us[got - 1];
    }
    free(us);
    free(kids);
    return bad || got != n ? -1 : 0;
}

static int startup_main(int n, const char *lib) {
    double m[2][3], mx[2][3];
    int failed = 0;
    for (int r = 0; r < 3; r++)
        for (int v = 0; v < 2; v++)
            if (startup_round(n, v ? lib : NULL, &m[v][r], &mx[v][r])) failed++;
    kvi("processes", n);
    kvi("failed_rounds", failed);
    double plain = median(m[0], 3), hooked = median(m[1], 3);
    kvf("plain_median_us", plain);
    kvf("hooked_median_us", hooked);
    kvf("plain_max_us", median(mx[0], 3));
    kvf("hooked_max_us", median(mx[1], 3));
    kvf("ratio", plain > 0 ? hooked / plain : 0);
    return failed ? 10 : 0;
}

/* ---- holders: memory held by a process of a container ------------------------------ */

static volatile sig_atomic_t stop;
static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

static void hold_until(double seconds) {
    signal(SIGTERM, on_term);
    unsigned long long end = now_ns() + (unsigned long long)(seconds * 1e9);
    while (!stop && now_ns() < end) usleep(20000);
}

static int hold_main(unsigned long long bytes, double seconds) {
    setup_ctx();
    unsigned long long got = 0;
    while (got < bytes) {
        unsigned long long n = bytes - got < 64 * MiB ? bytes - got : 64 * MiB;
        CUdeviceptr p;
        CK(API(cuMemAlloc_v2)(&p, n));
        got += n;
    }
    kvi("pid", getpid());
    kvu("held", got);
    kvu("used", used_now(NULL));
    printf("ready=1\n");
    fflush(stdout);
    hold_until(seconds);
    return 0;
}

static int grab_main(unsigned long long chunk, double seconds, const char *go) {
    setup_ctx();
    /* Every process of the race has its context before anyone grabs (the script creates
     * the file `go` once all have printed ctx=1). */
    printf("ctx=1\n");
    fflush(stdout);
    unsigned long long deadline = now_ns() + (unsigned long long)(seconds * 1e9);
    while (access(go, F_OK) != 0 && now_ns() < deadline) usleep(10000);
    unsigned long long got = 0;
    CUresult rc;
    CUdeviceptr p;
    int n = 0;
    while ((rc = API(cuMemAlloc_v2)(&p, chunk)) == CUDA_SUCCESS && n < 100000) {
        got += chunk;
        n++;
    }
    kvi("pid", getpid());
    kvi("refusal", rc);
    kvu("grabbed", got);
    printf("ready=1\n");
    fflush(stdout);
    hold_until(seconds);
    return 0;
}

/* ---- NVML: utilization sampler and the process's own view -------------------------- */

static int util_main(double seconds, int period_ms) {
    if (nvml_load()) return 3;
    nvml_util_t util = (nvml_util_t)dlsym(nvml_lib, "nvmlDeviceGetUtilizationRates");
    if (!util) return 3;
    unsigned long long end = now_ns() + (unsigned long long)(seconds * 1e9);
    double sum = 0;
    int n = 0;
    while (now_ns() < end) {
        usleep((useconds_t)period_ms * 1000);
        nvmlUtilization_t u;
        if (util(nvml_dev, &u) == NVML_SUCCESS) {
            sum += u.gpu;
            n++;
        }
    }
    kvi("util_samples", n);
    kvf("util_mean", n ? sum / n : -1);
    return 0;
}

static int nvmlview_main(void) {
    if (nvml_load()) return 3;
    nvml_mem_t mem = (nvml_mem_t)dlsym(nvml_lib, "nvmlDeviceGetMemoryInfo");
    nvmlMemory_t m;
    if (!mem || mem(nvml_dev, &m) != NVML_SUCCESS) return 10;
    kvu("nvml_total", m.total);
    kvu("nvml_used", m.used);
    kvu("nvml_free", m.free);
    static nvmlProcessInfo_v2_t procs[1024];
    int n = nvml_procs(procs, 1024);
    kvi("nvml_procs", n);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "nvml_pid.%u", procs[i].pid);
        kvu(key, procs[i].usedGpuMemory);
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: gpucheck SCENARIO [ARGS] (see the source's header)\n");
        return 2;
    }
    const char *sc = argv[1];
    if (!strcmp(sc, "truth")) return truth_main(argc, argv);
    if (!strcmp(sc, "util") && argc >= 4) return util_main(atof(argv[2]), atoi(argv[3]));
    if (!strcmp(sc, "nvmlview")) return nvmlview_main();
    if (!strcmp(sc, "startup-child") && argc >= 3) return startup_child(atoi(argv[2]));
    if (!strcmp(sc, "startup") && argc >= 4) return startup_main(atoi(argv[2]), argv[3]);
    int rc = cuda_load();
    if (rc) return rc;
    if (!strcmp(sc, "memcap") && argc >= 3) return memcap_main(parse_size(argv[2]));
    if (!strcmp(sc, "ctxmod") && argc >= 3) return ctxmod_main(parse_size(argv[2]));
    if (!strcmp(sc, "spin") && argc >= 4) return spin_main(parse_size(argv[2]), atof(argv[3]));
    if (!strcmp(sc, "overhead") && argc >= 3) return overhead_main(atoi(argv[2]));
    if (!strcmp(sc, "hold") && argc >= 4) return hold_main(parse_size(argv[2]), atof(argv[3]));
    if (!strcmp(sc, "grab") && argc >= 5) return grab_main(parse_size(argv[2]), atof(argv[3]), argv[4]);
    fprintf(stderr, "gpucheck: unknown scenario %s\n", sc);
    return 2;
}
