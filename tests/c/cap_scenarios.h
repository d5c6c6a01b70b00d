/*
 * Scenarios for libvgpu's memory cap, run by the same three client styles as the
 * simulator's scenarios (cap_linked.c, cap_dlopen.c, cap_procaddr.c include the matching
 * client, whose own main() is renamed to sim_scenarios_main, then this file).
 *
 * Usage: <client> SCENARIO [ARGS...]; output: `key=value` lines; exit codes as in
 * driver_scenarios.h. Scenarios not listed here fall through to the simulator's.
 */
#ifndef VGPU_CAP_SCENARIOS_H
#define VGPU_CAP_SCENARIOS_H

#include <dirent.h>
#include <pthread.h>
#include <sys/wait.h>

static size_t used_now(size_t *total_out) {
    size_t f = 0, t = 0;
    CK(API(cuMemGetInfo_v2)(&f, &t));
    if (total_out) *total_out = t;
    return t - f;
}

/* Fill the slice in chunks, then to the byte, then one byte more; free; check free again. */
static int cap_fill(size_t chunk) {
    setup_ctx(0);
    size_t total = 0, f0 = 0;
    CK(API(cuMemGetInfo_v2)(&f0, &total));
    kvu("total", total);
    kvu("free_start", f0);
    CUdevice dev;
    size_t total_mem = 0;
    CK(API(cuDeviceGet)(&dev, 0));
    CK(API(cuDeviceTotalMem_v2)(&total_mem, dev));
    kvu("device_total_mem", total_mem);
    static CUdeviceptr ptrs[100000];
    int n = 0;
    CUresult rc = CUDA_SUCCESS;
    unsigned long long got = 0;
    while (n < 100000) {
        rc = API(cuMemAlloc_v2)(&ptrs[n], chunk);
        if (rc != CUDA_SUCCESS) break;
        got += chunk;
        n++;
    }
    kvu("chunks", n);
    kvu("chunk_bytes", got);
    kvi("chunk_refusal", rc);
    size_t f = 0, t = 0;
    CK(API(cuMemGetInfo_v2)(&f, &t));
    kvu("free_after_chunks", f);
    if (f > 0) {
        rc = API(cuMemAlloc_v2)(&ptrs[n], f);
        kvi("exact_rc", rc);
        if (rc == CUDA_SUCCESS) {
            got += f;
            n++;
        }
    }
    CK(API(cuMemGetInfo_v2)(&f, &t));
    kvu("free_when_full", f);
    CUdeviceptr extra = 0;
    kvi("one_more_rc", API(cuMemAlloc_v2)(&extra, 1));
    kvu("allocated", got);
    /* Free one chunk and take it again: the slice gives back exactly what was freed. */
    if (n > 1) {
        CK(API(cuMemFree_v2)(ptrs[0]));
        kvi("realloc_rc", API(cuMemAlloc_v2)(&ptrs[0], chunk));
        kvi("realloc_plus_one_rc", API(cuMemAlloc_v2)(&extra, 1));
    }
    for (int i = 0; i < n; i++) CK(API(cuMemFree_v2)(ptrs[i]));
    CK(API(cuMemGetInfo_v2)(&f, &t));
    kvu("free_end", f);
    return 0;
}

/* Every allocation path: the slice's used bytes after allocating and after freeing. */
static void report(const char *path, size_t before, size_t during, size_t after) {
    char k[96];
    snprintf(k, sizeof k, "charged.%s", path);
    kvi(k, (long long)during - (long long)before);
    snprintf(k, sizeof k, "left.%s", path);
    kvi(k, (long long)after - (long long)before);
}

static int cap_paths(void) {
    setup_ctx(0);
    size_t b, d;
    CUdeviceptr p;
    CUstream s0 = NULL;

    b = used_now(NULL);
    CK(API(cuMemAlloc_v2)(&p, 10 * MiB));
    d = used_now(NULL);
    CK(API(cuMemFree_v2)(p));
    report("alloc", b, d, used_now(NULL));

    size_t pitch = 0;
    b = used_now(NULL);
    CK(API(cuMemAllocPitch_v2)(&p, &pitch, 1000, 100, 4));
    d = used_now(NULL);
    kvu("pitch_footprint", (unsigned long long)pitch * 100);
    CK(API(cuMemFree_v2)(p));
    report("pitch", b, d, used_now(NULL));

    b = used_now(NULL);
    CK(API(cuMemAllocManaged)(&p, 5 * MiB, CU_MEM_ATTACH_GLOBAL));
    d = used_now(NULL);
    CK(API(cuMemFree_v2)(p));
    report("managed", b, d, used_now(NULL));

    b = used_now(NULL);
    CK(API(cuMemAllocAsync)(&p, 3 * MiB, s0));
    d = used_now(NULL);
    CK(API(cuMemFreeAsync)(p, s0));
    CK(API(cuStreamSynchronize)(s0));
    report("async", b, d, used_now(NULL));

    CUmemoryPool pool;
    CUdevice dev;
    CK(API(cuDeviceGet)(&dev, 0));
    CK(API(cuDeviceGetDefaultMemPool)(&pool, dev));
    b = used_now(NULL);
    CK(API(cuMemAllocFromPoolAsync)(&p, 2 * MiB, pool, s0));
    d = used_now(NULL);
    CK(API(cuMemFreeAsync)(p, s0));
    CK(API(cuStreamSynchronize)(s0));
    report("pool", b, d, used_now(NULL));

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran = 0;
    CK(API(cuMemGetAllocationGranularity)(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    vgpu_mem_handle h;
    b = used_now(NULL);
    CK(API(cuMemCreate)(&h, 2 * gran, &prop, 0));
    d = used_now(NULL);
    kvu("vmm_bytes", 2 * gran);
    CK(API(cuMemRelease)(h));
    report("vmm_device", b, d, used_now(NULL));

    prop.location.type = CU_MEM_LOCATION_TYPE_HOST;
    b = used_now(NULL);
    CUresult hrc = API(cuMemCreate)(&h, 2 * gran, &prop, 0);
    kvi("vmm_host_rc", hrc);
    d = used_now(NULL);
    if (hrc == CUDA_SUCCESS) CK(API(cuMemRelease)(h));
    report("vmm_host", b, d, used_now(NULL));

    CUarray arr;
    CUDA_ARRAY_DESCRIPTOR ad = {1024, 1024, CU_AD_FORMAT_FLOAT, 1};
    b = used_now(NULL);
    CK(API(cuArrayCreate_v2)(&arr, &ad));
    d = used_now(NULL);
    CK(API(cuArrayDestroy)(arr));
    report("array2d", b, d, used_now(NULL));

    CUDA_ARRAY3D_DESCRIPTOR a3 = {64, 64, 64, CU_AD_FORMAT_UNSIGNED_INT8, 4, 0};
    b = used_now(NULL);
    CK(API(cuArray3DCreate_v2)(&arr, &a3));
    d = used_now(NULL);
    CK(API(cuArrayDestroy)(arr));
    report("array3d", b, d, used_now(NULL));

    CUmipmappedArray mm;
    CUDA_ARRAY3D_DESCRIPTOR md = {256, 256, 0, CU_AD_FORMAT_UNSIGNED_INT8, 1, 0};
    b = used_now(NULL);
    CK(API(cuMipmappedArrayCreate)(&mm, &md, 3));
    d = used_now(NULL);
    CK(API(cuMipmappedArrayDestroy)(mm));
    report("mipmapped", b, d, used_now(NULL));

    /* A graph's memory-allocation node: charged to the graph, credited with it. */
    CUgraph graph;
    CUgraphNode gnode;
    CUDA_MEM_ALLOC_NODE_PARAMS gp;
    memset(&gp, 0, sizeof gp);
    gp.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    gp.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    gp.poolProps.location.id = 0;
    gp.bytesize = 6 * MiB;
    CK(API(cuGraphCreate)(&graph, 0));
    b = used_now(NULL);
    CK(API(cuGraphAddMemAllocNode)(&gnode, graph, NULL, 0, &gp));
    d = used_now(NULL);
    kvi("graph_dptr_set", gp.dptr != 0);
    CK(API(cuGraphDestroy)(graph));
    report("graph_mem", b, d, used_now(NULL));
    size_t total = 0;
    used_now(&total);
    gp.bytesize = total + MiB;
    CK(API(cuGraphCreate)(&graph, 0));
    kvi("graph_mem_over_rc", API(cuGraphAddMemAllocNode)(&gnode, graph, NULL, 0, &gp));
    CK(API(cuGraphDestroy)(graph));

    /* Host memory is not device memory. */
    void *hp = NULL;
    b = used_now(NULL);
    CK(API(cuMemAllocHost_v2)(&hp, 8 * MiB));
    d = used_now(NULL);
    CK(API(cuMemFreeHost)(hp));
    report("host", b, d, used_now(NULL));

    /* A module's memory counts while it is loaded. */
    CUmodule mod;
    b = used_now(NULL);
    CK(API(cuModuleLoadData)(&mod, VGPU_TEST_PTX));
    d = used_now(NULL);
    CK(API(cuModuleUnload)(mod));
    report("module", b, d, used_now(NULL));
    return 0;
}

/* A pointer the driver never gave out, and a double free. */
static int cap_unknown_free(void) {
    setup_ctx(0);
    size_t b = used_now(NULL);
    kvi("unknown_rc", API(cuMemFree_v2)((CUdeviceptr)0x1234500ull));
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, 4 * MiB));
    CK(API(cuMemFree_v2)(p));
    kvi("double_rc", API(cuMemFree_v2)(p));
    kvi("used_delta", (long long)used_now(NULL) - (long long)b);
    return 0;
}

/* Threads racing for the last bytes of the slice. */
struct racer {
    size_t chunk;
    unsigned long long got;
    int n;
    CUcontext ctx;
    CUdeviceptr ptrs[4096];
};

static void *race_thread(void *arg) {
    struct racer *r = arg;
    API(cuCtxSetCurrent)(r->ctx);
    while (r->n < 4096) {
        if (API(cuMemAlloc_v2)(&r->ptrs[r->n], r->chunk) != CUDA_SUCCESS) break;
        r->got += r->chunk;
        r->n++;
    }
    return NULL;
}

static int cap_race(int threads, size_t chunk) {
    CUcontext ctx = setup_ctx(0);
    size_t total = 0;
    size_t before = used_now(&total);
    static struct racer rs[64];
    pthread_t th[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) {
        rs[i].chunk = chunk;
        rs[i].ctx = ctx;
        pthread_create(&th[i], NULL, race_thread, &rs[i]);
    }
    unsigned long long got = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        got += rs[i].got;
    }
    kvu("total", total);
    kvu("used_before", before);
    kvu("raced", got);
    kvu("used_full", used_now(NULL));
    for (int i = 0; i < threads; i++)
        for (int j = 0; j < rs[i].n; j++) CK(API(cuMemFree_v2)(rs[i].ptrs[j]));
    kvu("used_end", used_now(NULL));
    return 0;
}

/* fork() while other threads allocate and free: no child may hang on a lock the parent's
 * threads held, and the parent's accounting stays exact. */
static volatile int fork_stop;
static void *churn(void *arg) {
    API(cuCtxSetCurrent)((CUcontext)arg);
    while (!fork_stop) {
        CUdeviceptr p;
        if (API(cuMemAlloc_v2)(&p, 1 * MiB) == CUDA_SUCCESS) API(cuMemFree_v2)(p);
    }
    return NULL;
}

static int cap_fork(int forks) {
    CUcontext ctx = setup_ctx(0);
    size_t before = used_now(NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, churn, ctx);
    int ok = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* In the child: dlsym and the allocator must still work. */
            void *m = dlsym(RTLD_DEFAULT, "malloc");
            void *x = malloc(100);
            free(x);
            _exit(m ? 0 : 1);
        }
        int st = 0;
        if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
    }
    fork_stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    kvi("forks_ok", ok);
    kvi("used_delta", (long long)used_now(NULL) - (long long)before);
    return 0;
}

/* Holds `bytes`, then forks a child that leaves through exit() (its at-exit handlers run):
 * the parent's usage must still be counted after (the child is a process of its own). */
static int cap_fork_exit(size_t bytes) {
    setup_ctx(0);
    CUdeviceptr p = 0;
    CK(API(cuMemAlloc_v2)(&p, bytes));
    kvu("used_before", used_now(NULL));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) exit(0);
    int st = 0;
    kvi("child_ok", pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    kvu("used_after", used_now(NULL));
    CK(API(cuMemFree_v2)(p));
    return 0;
}

static const char *lib_of(void *p) {
    Dl_info info;
    if (!p || !dladdr(p, &info) || !info.dli_fname) return "-";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

static const char *sym_of(void *p) {
    Dl_info info;
    if (!p || !dladdr(p, &info) || !info.dli_sname) return "-";
    return info.dli_sname;
}

/* Who answers which lookup: dlsym on the driver's handle, RTLD_NEXT, cuGetProcAddress. */
static int cap_lookups(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 3;
    KV("dlsym_handle.cuMemAlloc_v2", "%s", lib_of(dlsym(h, "cuMemAlloc_v2")));
    KV("dlsym_handle.cuLaunchKernel", "%s", lib_of(dlsym(h, "cuLaunchKernel")));
    KV("dlsym_handle.cuMemcpyHtoD_v2", "%s", lib_of(dlsym(h, "cuMemcpyHtoD_v2")));
    KV("dlsym_handle.cuDeviceGetName", "%s", lib_of(dlsym(h, "cuDeviceGetName")));
    /* RTLD_NEXT is relative to the caller (this executable): the next definition after us
     * in the global scope, exactly as without libvgpu's dlsym. */
    void *next_alloc = dlsym(RTLD_NEXT, "cuMemAlloc_v2");
    void *dflt_alloc = dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
    kvi("rtld_next_matches_default", next_alloc == dflt_alloc);
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    kvi("rtld_next_malloc_is_libc", libc && dlsym(RTLD_NEXT, "malloc") == dlsym(libc, "malloc"));
    kvi("rtld_default_printf_is_libc", libc && dlsym(RTLD_DEFAULT, "printf") == dlsym(libc, "printf"));
    kvi("unknown_symbol_null", dlsym(h, "cuNoSuchFunction") == NULL);

    vgpu_pfn_cuGetProcAddress_v2 gpa = (vgpu_pfn_cuGetProcAddress_v2)dlsym(h, "cuGetProcAddress_v2");
    KV("gpa_lib", "%s", lib_of((void *)gpa));
    static const struct {
        const char *name;
        int version;
        unsigned flags;
    } q[] = {
        {"cuMemAlloc", 12080, 0},       {"cuMemAlloc", 3020, 0},      {"cuLaunchKernel", 12080, 0},
        {"cuLaunchKernel", 12080, 1},   {"cuLaunchKernel", 12080, 2}, {"cuMemAllocAsync", 12080, 2},
        {"cuCtxCreate", 11040, 0},      {"cuCtxCreate", 12080, 0},    {"cuCtxCreate", 3020, 0},
        {"cuMemcpyHtoD", 12080, 2},     {"cuMemGetInfo", 12080, 0},   {"cuGetProcAddress", 12080, 0},
        {"cuDevicePrimaryCtxRelease", 11000, 0}, {"cuDevicePrimaryCtxRelease", 7000, 0},
        {"cuGraphLaunch", 12080, 2},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        void *fp = NULL;
        CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)77;
        CUresult rc = gpa(q[i].name, &fp, q[i].version, q[i].flags, &st);
        char key[128];
        snprintf(key, sizeof key, "gpa.%s.%d.%u", q[i].name, q[i].version, q[i].flags);
        printf("%s=%s:%s:%d:%d\n", key, lib_of(fp), sym_of(fp), (int)rc, (int)st);
    }
    return 0;
}

/* libvgpu preloaded and no driver at all: our exports must answer, not crash. */
static int cap_nodriver(void) {
    kvi("dlopen_libcuda_null", dlopen("libcuda.so.1", RTLD_NOW) == NULL);
    vgpu_pfn_cuMemAlloc_v2 alloc = (vgpu_pfn_cuMemAlloc_v2)dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
    vgpu_pfn_cuMemGetInfo_v2 info = (vgpu_pfn_cuMemGetInfo_v2)dlsym(RTLD_DEFAULT, "cuMemGetInfo_v2");
    vgpu_pfn_cuLaunchKernel launch = (vgpu_pfn_cuLaunchKernel)dlsym(RTLD_DEFAULT, "cuLaunchKernel");
    vgpu_pfn_cuGetProcAddress_v2 gpa = (vgpu_pfn_cuGetProcAddress_v2)dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2");
    if (!alloc || !info || !launch || !gpa) {
        printf("exports_missing=1\n");
        return 11;
    }
    CUdeviceptr p = 0;
    size_t f = 0, t = 0;
    void *fp = NULL;
    kvi("alloc_rc", alloc(&p, 100));
    kvi("meminfo_rc", info(&f, &t));
    kvi("launch_rc", launch(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
    kvi("gpa_rc", gpa("cuMemAlloc", &fp, 12080, 0, NULL));
    return 0;
}

/* Several processes race for the last bytes: each gets ready, waits for the start line,
 * grabs chunks until refused, reports, and holds until stdin closes. */
static int cap_grab(size_t chunk) {
    setup_ctx(0);
    kvi("pid", getpid());
    printf("ready=1\n");
    fflush(stdout);
    wait_stdin_line();
    unsigned long long got = 0;
    int n = 0;
    CUdeviceptr p;
    CUresult rc;
    while ((rc = API(cuMemAlloc_v2)(&p, chunk)) == CUDA_SUCCESS) {
        got += chunk;
        n++;
    }
    kvi("refusal", rc);
    kvu("grabbed", got);
    fflush(stdout);
    wait_stdin_eof(120);
    return 0;
}

/* A neighbour waiting for memory: the start line is TARGET (bytes, decimal); then
 * cuMemAlloc of CHUNK in a tight loop (no sleep between refusals) until it holds TARGET
 * bytes or MS milliseconds passed. Prints refused=1 at its first refusal, then grabbed,
 * refusals and waited_ms (start line to target, -1 if never reached), then holds until
 * stdin closes. */
static int cap_grab_until(size_t chunk, unsigned long long ms) {
    setup_ctx(0);
    kvi("pid", getpid());
    printf("ready=1\n");
    fflush(stdout);
    unsigned long long target = 0;
    char c;
    while (read(0, &c, 1) == 1 && c != '\n')
        if (c >= '0' && c <= '9') target = target * 10 + (unsigned long long)(c - '0');
    unsigned long long t0 = vgpu_now_ns(CLOCK_MONOTONIC), deadline = t0 + ms * 1000000ull;
    unsigned long long got = 0, refusals = 0;
    long long waited = -1;
    CUdeviceptr p;
    while (got < target && vgpu_now_ns(CLOCK_MONOTONIC) < deadline) {
        if (API(cuMemAlloc_v2)(&p, chunk) == CUDA_SUCCESS) got += chunk;
        else if (++refusals == 1) {
            printf("refused=1\n"); /* it is asking: the test may let the holder go now */
            fflush(stdout);
        }
    }
    if (got >= target) waited = (long long)((vgpu_now_ns(CLOCK_MONOTONIC) - t0) / 1000000ull);
    kvu("refusals", refusals);
    printf("waited_ms=%lld\n", waited);
    kvu("grabbed", got);
    fflush(stdout);
    wait_stdin_eof(120);
    return 0;
}

/* Allocation churn for kill storms: random sizes, a few held at a time, forever (until
 * `seconds` pass). Prints `ready=1` once the context exists. */
static int cap_churn(double seconds) {
    setup_ctx(0);
    printf("ready=1\n");
    fflush(stdout);
    unsigned long long deadline = vgpu_now_ns(CLOCK_MONOTONIC) + (unsigned long long)(seconds * 1e9);
    CUdeviceptr held[8] = {0};
    unsigned int seed = (unsigned int)getpid();
    while (vgpu_now_ns(CLOCK_MONOTONIC) < deadline) {
        int i = rand_r(&seed) % 8;
        if (held[i]) {
            CK(API(cuMemFree_v2)(held[i]));
            held[i] = 0;
        } else if (API(cuMemAlloc_v2)(&held[i], (size_t)(1 + rand_r(&seed) % 32) * MiB) != CUDA_SUCCESS) {
            held[i] = 0;
        }
    }
    return 0;
}

/* Churn at the cap: every thread first takes chunks until refused, then repeatedly frees
 * one chunk and allocates up to two, so the slice stays full while frees and allocations
 * of all threads (and of all processes of the container) interleave. The ground truth
 * (the simulator's high-water mark) must never pass the slice. With `wait`, prints
 * `ready=1` after the context exists and waits for a line on stdin before churning. */
struct churner {
    CUcontext ctx;
    size_t chunk;
    unsigned long long deadline, allocs, refusals;
    unsigned int seed;
    int n;
    CUdeviceptr held[1024];
};

static void *full_churn_thread(void *arg) {
    struct churner *c = arg;
    API(cuCtxSetCurrent)(c->ctx);
    while (c->n < 1024 && API(cuMemAlloc_v2)(&c->held[c->n], c->chunk) == CUDA_SUCCESS) c->n++;
    while (vgpu_now_ns(CLOCK_MONOTONIC) < c->deadline) {
        if (c->n > 0) {
            int i = rand_r(&c->seed) % c->n;
            CK(API(cuMemFree_v2)(c->held[i]));
            c->held[i] = c->held[--c->n];
        }
        for (int k = 0; k < 2 && c->n < 1024; k++) {
            CUresult rc = API(cuMemAlloc_v2)(&c->held[c->n], c->chunk);
            if (rc == CUDA_SUCCESS) {
                c->n++;
                c->allocs++;
            } else if (rc == CUDA_ERROR_OUT_OF_MEMORY) {
                c->refusals++;
            } else {
                fprintf(stderr, "cuMemAlloc_v2: %d\n", (int)rc);
                exit(4);
            }
        }
    }
    for (int i = 0; i < c->n; i++) CK(API(cuMemFree_v2)(c->held[i]));
    return NULL;
}

static int cap_churn_full(int threads, size_t chunk, double seconds, int wait) {
    CUcontext ctx = setup_ctx(0);
    if (wait) {
        printf("ready=1\n");
        fflush(stdout);
        wait_stdin_line();
    }
    static struct churner cs[64];
    pthread_t th[64];
    if (threads > 64) threads = 64;
    unsigned long long deadline = vgpu_now_ns(CLOCK_MONOTONIC) + (unsigned long long)(seconds * 1e9);
    for (int i = 0; i < threads; i++) {
        cs[i].ctx = ctx;
        cs[i].chunk = chunk;
        cs[i].deadline = deadline;
        cs[i].seed = (unsigned int)getpid() * 131u + (unsigned int)i;
        pthread_create(&th[i], NULL, full_churn_thread, &cs[i]);
    }
    unsigned long long allocs = 0, refusals = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        allocs += cs[i].allocs;
        refusals += cs[i].refusals;
    }
    kvu("churn_allocs", allocs);
    kvu("churn_refusals", refusals);
    return 0;
}

/* Contexts and modules at a slice: primary context (then a module in it), then a created
 * context (then a module in it). Reports each result code; whatever fits is released at
 * the end. `used.*` are the container's usage as cuMemGetInfo shows it. */
typedef CUresult (*cap_ctx_create_fn)(CUcontext *, unsigned int, CUdevice);
typedef CUresult (*cap_ctx_destroy_fn)(CUcontext);

static void cap_ctx_module(const char *key) {
    CUmodule m = NULL;
    CUresult rc = API(cuModuleLoadData)(&m, VGPU_TEST_PTX);
    kvi(key, rc);
    if (rc == CUDA_SUCCESS) {
        size_t t = 0;
        char k[64];
        snprintf(k, sizeof k, "%s.used", key);
        kvu(k, used_now(&t));
        CK(API(cuModuleUnload)(m));
    }
}

static int cap_ctx(void) {
    CUdevice dev;
    CK(API(cuInit)(0));
    CK(API(cuDeviceGet)(&dev, 0));
    CUcontext p = NULL;
    CUresult rc = API(cuDevicePrimaryCtxRetain)(&p, dev);
    kvi("primary_rc", rc);
    if (rc == CUDA_SUCCESS) {
        CK(API(cuCtxSetCurrent)(p));
        size_t t = 0;
        kvu("primary.used", used_now(&t));
        cap_ctx_module("primary.module_rc");
        CK(API(cuCtxSetCurrent)(NULL));
        CK(API(cuDevicePrimaryCtxRelease_v2)(dev));
    } else {
        kvi("primary_null", p == NULL);
    }
    cap_ctx_create_fn create = (cap_ctx_create_fn)client_dlsym("cuCtxCreate_v2");
    cap_ctx_destroy_fn destroy = (cap_ctx_destroy_fn)client_dlsym("cuCtxDestroy_v2");
    if (!create || !destroy) return 3;
    CUcontext c = NULL;
    rc = create(&c, 0, dev);
    kvi("create_rc", rc);
    if (rc == CUDA_SUCCESS) {
        size_t t = 0;
        kvu("create.used", used_now(&t));
        cap_ctx_module("create.module_rc");
        CK(destroy(c));
    } else {
        kvi("create_null", c == NULL);
    }
    return 0;
}

/* Start-up at one barrier: nothing CUDA before CLOCK_MONOTONIC reaches `t` (the same
 * instant for every process of the wave), then cuInit, a primary context, one 16 MiB
 * allocation and its free. Reports the time from the barrier to done, and whether the
 * process arrived after the barrier (then its figure is not a barrier start). */
/* The main thread's /proc/self/schedstat: time on a CPU and time runnable but waiting
 * for one (ns); 0s when it cannot be read (no schedstats). */
static void sched_times(unsigned long long *run, unsigned long long *queued) {
    *run = *queued = 0;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (!f) return;
    if (fscanf(f, "%llu %llu", run, queued) != 2) *run = *queued = 0;
    fclose(f);
}

static int cap_barrier(unsigned long long t) {
    unsigned long long now = vgpu_now_ns(CLOCK_MONOTONIC);
    kvi("late", now > t);
    if (now < t) {
        struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull), .tv_nsec = (long)(t % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
    unsigned long long start = now > t ? now : t;
    /* The process's CPU (all its threads) from the barrier on: in a wave on few cores the
     * CPU of all the processes competes for the cores. */
    unsigned long long cpu_start = vgpu_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    unsigned long long run0, queued0, run1, queued1;
    sched_times(&run0, &queued0);
    CUdevice dev;
    CUcontext ctx;
    CK(API(cuInit)(0));
    unsigned long long inited = vgpu_now_ns(CLOCK_MONOTONIC);
    CK(API(cuDeviceGet)(&dev, 0));
    CK(API(cuDevicePrimaryCtxRetain)(&ctx, dev));
    CK(API(cuCtxSetCurrent)(ctx));
    unsigned long long ctx_done = vgpu_now_ns(CLOCK_MONOTONIC);
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, 16 * MiB));
    CK(API(cuMemFree_v2)(p));
    unsigned long long done = vgpu_now_ns(CLOCK_MONOTONIC);
    unsigned long long cpu_done = vgpu_now_ns(CLOCK_PROCESS_CPUTIME_ID);
    sched_times(&run1, &queued1);
    /* Of the main thread's wall time from the barrier to done: on a CPU, runnable and
     * waiting for one, and the rest, blocked (sleeping on a lock, a futex, I/O). */
    if (run1 || queued1) {
        unsigned long long wall = done - start, on = run1 - run0, queued = queued1 - queued0;
        kvu("sched.queued_ns", queued);
        kvu("sched.blocked_ns", wall > on + queued ? wall - on - queued : 0);
    }
    kvu("barrier_to_done_ns", done - start);
    kvu("cpu.barrier_to_done_ns", cpu_done - cpu_start);
    kvu("cpu.at_done_ns", cpu_done);
    kvu("phase.init_ns", inited - start);
    kvu("phase.ctx_ns", ctx_done - inited);
    kvu("phase.alloc_ns", done - ctx_done);
    return 0;
}

static int thread_count(void) {
    int threads = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));) threads += e->d_name[0] != '.';
    if (d) closedir(d);
    return threads;
}

/* When libvgpu's watcher thread starts: the process's threads after a context and an
 * allocation, then after a memory query. */
static int cap_watcher_start(void) {
    setup_ctx(0);
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, MiB));
    CK(API(cuMemFree_v2)(p));
    kvi("threads_after_alloc", thread_count());
    used_now(NULL);
    kvi("threads_after_query", thread_count());
    return 0;
}

/* Start-up cost: from main() to the first allocation done (cuInit, primary context,
 * cuMemAlloc: under libvgpu this includes attaching the region and claiming a slot). */
static int cap_startup(unsigned long long t0) {
    setup_ctx(0);
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, MiB));
    kvu("first_call_us", (vgpu_now_ns(CLOCK_MONOTONIC) - t0) / 1000);
    CK(API(cuMemFree_v2)(p));
    return 0;
}

/* exec() with memory still allocated: the driver frees the old image's memory, and the new
 * image (same pid) must see the whole slice again. */
static int cap_exec(const char *self) {
    setup_ctx(0);
    CUdeviceptr p;
    CK(API(cuMemAlloc_v2)(&p, 300 * MiB));
    kvi("pid_before_exec", getpid());
    fflush(stdout);
    execl(self, self, "meminfo", (char *)NULL);
    return 12;
}

int main(int argc, char **argv) {
    unsigned long long t0 = vgpu_now_ns(CLOCK_MONOTONIC);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "cap-nodriver")) return cap_nodriver();
    if (argc >= 2 && !strcmp(argv[1], "cap-lookups")) return cap_lookups();
    if (argc < 2 || strncmp(argv[1], "cap-", 4)) return sim_scenarios_main(argc, argv);
    if (client_load() != 0) {
        printf("error=client_load\n");
        return 3;
    }
    printf("style=%s\n", CLIENT_STYLE);
    const char *sc = argv[1];
    int rc;
    if (!strcmp(sc, "cap-fill") && argc >= 3) rc = cap_fill(parse_u64(argv[2]));
    else if (!strcmp(sc, "cap-paths")) rc = cap_paths();
    else if (!strcmp(sc, "cap-unknown-free")) rc = cap_unknown_free();
    else if (!strcmp(sc, "cap-race") && argc >= 4) rc = cap_race(atoi(argv[2]), parse_u64(argv[3]));
    else if (!strcmp(sc, "cap-fork") && argc >= 3) rc = cap_fork(atoi(argv[2]));
    else if (!strcmp(sc, "cap-fork-exit") && argc >= 3) rc = cap_fork_exit(parse_u64(argv[2]));
    else if (!strcmp(sc, "cap-grab") && argc >= 3) rc = cap_grab(parse_u64(argv[2]));
    else if (!strcmp(sc, "cap-grab-until") && argc >= 4)
        rc = cap_grab_until(parse_u64(argv[2]), parse_u64(argv[3]));
    else if (!strcmp(sc, "cap-churn") && argc >= 3) rc = cap_churn(atof(argv[2]));
    else if (!strcmp(sc, "cap-churn-full") && argc >= 5)
        rc = cap_churn_full(atoi(argv[2]), parse_u64(argv[3]), atof(argv[4]), argc > 5 && !strcmp(argv[5], "wait"));
    else if (!strcmp(sc, "cap-ctx")) rc = cap_ctx();
    else if (!strcmp(sc, "cap-startup")) rc = cap_startup(t0);
    else if (!strcmp(sc, "cap-barrier") && argc >= 3) rc = cap_barrier(parse_u64(argv[2]));
    else if (!strcmp(sc, "cap-watcher-start")) rc = cap_watcher_start();
    else if (!strcmp(sc, "cap-exec")) rc = cap_exec(argv[0]);
    else {
        fprintf(stderr, "unknown cap scenario %s\n", sc);
        return 2;
    }
    if (rc == 0) printf("ok=1\n");
    fflush(stdout);
    return rc;
}

#endif /* VGPU_CAP_SCENARIOS_H */
