/*
 * NVML client: dlopen("libnvidia-ml.so.1") + dlsym, as nvidia-smi-style tools, pynvml and the
 * HAMi device plugin do. Usage: nvml_client SCENARIO [ARGS]; prints `key=value` lines.
 *   info                      driver/NVML versions, devices, names, UUIDs, PCI, memory
 *   procs [DEV]               compute process lists through the unversioned (v1 entries),
 *                             _v2 and _v3 entry points, with the count-0 size probe
 *   util SINCE_US [DEV]       per-process utilization samples since a wall-clock µs timestamp
 *   badargs                   result codes for bad input
 *   now_us                    prints the current wall-clock time in µs (no NVML call)
 * Exit codes: 0 ok, 2 usage, 3 library not loadable, 10 a call that must succeed failed.
 */
#include "vgpu_test_api.h"

#include <dlfcn.h>
#include <unistd.h>

/* Our own pointer types for the entry points used (names are resolved as strings, so the
 * versioning macros of a real nvml.h cannot rename them). */
typedef nvmlReturn_t (*pfn_void)(void);
typedef nvmlReturn_t (*pfn_str)(char *, unsigned int);
typedef nvmlReturn_t (*pfn_intp)(int *);
typedef nvmlReturn_t (*pfn_uintp)(unsigned int *);
typedef nvmlReturn_t (*pfn_by_index)(unsigned int, nvmlDevice_t *);
typedef nvmlReturn_t (*pfn_by_str)(const char *, nvmlDevice_t *);
typedef nvmlReturn_t (*pfn_dev_str)(nvmlDevice_t, char *, unsigned int);
typedef nvmlReturn_t (*pfn_dev_uintp)(nvmlDevice_t, unsigned int *);
typedef nvmlReturn_t (*pfn_dev_pci)(nvmlDevice_t, nvmlPciInfo_t *);
typedef nvmlReturn_t (*pfn_dev_mem)(nvmlDevice_t, nvmlMemory_t *);
typedef nvmlReturn_t (*pfn_dev_mem2)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef nvmlReturn_t (*pfn_dev_cc)(nvmlDevice_t, int *, int *);
typedef nvmlReturn_t (*pfn_dev_procs)(nvmlDevice_t, unsigned int *, void *);
typedef nvmlReturn_t (*pfn_dev_util)(nvmlDevice_t, nvmlUtilization_t *);
typedef nvmlReturn_t (*pfn_dev_putil)(nvmlDevice_t, nvmlProcessUtilizationSample_t *,
                                      unsigned int *, unsigned long long);
typedef const char *(*pfn_errstr)(nvmlReturn_t);

static void *lib;

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        printf("missing=%s\n", name);
        fflush(stdout);
        exit(3);
    }
    return p;
}

#define NK(call)                                                                  \
    do {                                                                          \
        nvmlReturn_t rc_ = (call);                                                \
        if (rc_ != NVML_SUCCESS) {                                                \
            printf("error=%s code=%d line=%d\n", #call, (int)rc_, __LINE__);     \
            fflush(stdout);                                                       \
            exit(10);                                                             \
        }                                                                         \
    } while (0)

static nvmlDevice_t handle(unsigned int i) {
    nvmlDevice_t d;
    NK(((pfn_by_index)sym("nvmlDeviceGetHandleByIndex_v2"))(i, &d));
    return d;
}

static int sc_info(void) {
    char buf[256];
    unsigned int n = 0;
    int cuda = 0;
    NK(((pfn_void)sym("nvmlInit_v2"))());
    NK(((pfn_str)sym("nvmlSystemGetDriverVersion"))(buf, sizeof buf));
    printf("driver_version=%s\n", buf);
    NK(((pfn_str)sym("nvmlSystemGetNVMLVersion"))(buf, sizeof buf));
    printf("nvml_version=%s\n", buf);
    NK(((pfn_intp)sym("nvmlSystemGetCudaDriverVersion_v2"))(&cuda));
    printf("cuda_driver_version=%d\n", cuda);
    NK(((pfn_uintp)sym("nvmlDeviceGetCount_v2"))(&n));
    printf("count=%u\n", n);
    for (unsigned int i = 0; i < n; i++) {
        nvmlDevice_t d = handle(i), d2 = NULL;
        unsigned int idx = 99, minor = 99;
        int major = 0, minr = 0;
        NK(((pfn_dev_str)sym("nvmlDeviceGetName"))(d, buf, sizeof buf));
        printf("dev%u.name=%s\n", i, buf);
        NK(((pfn_dev_str)sym("nvmlDeviceGetUUID"))(d, buf, sizeof buf));
        printf("dev%u.uuid=%s\n", i, buf);
        NK(((pfn_by_str)sym("nvmlDeviceGetHandleByUUID"))(buf, &d2));
        printf("dev%u.by_uuid_same=%d\n", i, d2 == d);
        NK(((pfn_dev_uintp)sym("nvmlDeviceGetIndex"))(d, &idx));
        printf("dev%u.index=%u\n", i, idx);
        NK(((pfn_dev_uintp)sym("nvmlDeviceGetMinorNumber"))(d, &minor));
        printf("dev%u.minor=%u\n", i, minor);
        nvmlPciInfo_t pci;
        memset(&pci, 0, sizeof pci);
        NK(((pfn_dev_pci)sym("nvmlDeviceGetPciInfo_v3"))(d, &pci));
        printf("dev%u.pci_bus_id=%s\n", i, pci.busId);
        printf("dev%u.pci_bus=%u\n", i, pci.bus);
        NK(((pfn_by_str)sym("nvmlDeviceGetHandleByPciBusId_v2"))(pci.busId, &d2));
        printf("dev%u.by_pci_same=%d\n", i, d2 == d);
        NK(((pfn_dev_cc)sym("nvmlDeviceGetCudaComputeCapability"))(d, &major, &minr));
        printf("dev%u.cc=%d.%d\n", i, major, minr);
        nvmlMemory_t m;
        NK(((pfn_dev_mem)sym("nvmlDeviceGetMemoryInfo"))(d, &m));
        printf("dev%u.mem.total=%llu\ndev%u.mem.free=%llu\ndev%u.mem.used=%llu\n", i, m.total, i,
               m.free, i, m.used);
        nvmlMemory_v2_t m2;
        memset(&m2, 0, sizeof m2);
        m2.version = nvmlMemory_v2;
        NK(((pfn_dev_mem2)sym("nvmlDeviceGetMemoryInfo_v2"))(d, &m2));
        printf("dev%u.mem2.total=%llu\ndev%u.mem2.reserved=%llu\ndev%u.mem2.free=%llu\n"
               "dev%u.mem2.used=%llu\n",
               i, m2.total, i, m2.reserved, i, m2.free, i, m2.used);
    }
    return 0;
}

/* One process-list entry point: probe with count 0, then fill a buffer whose slack is
 * poisoned, so writes past the reported entries (a wrong stride) are seen. */
static void list_procs(nvmlDevice_t d, const char *fn, size_t stride) {
    pfn_dev_procs f = (pfn_dev_procs)sym(fn);
    unsigned int count = 0;
    nvmlReturn_t rc = f(d, &count, NULL);
    printf("%s.probe_rc=%d\n%s.probe_count=%u\n", fn, (int)rc, fn, count);
    unsigned int cap = count + 4;
    size_t bytes = cap * stride;
    unsigned char *buf = malloc(bytes);
    memset(buf, 0xee, bytes);
    unsigned int n = cap;
    rc = f(d, &n, buf);
    printf("%s.rc=%d\n%s.count=%u\n", fn, (int)rc, fn, n);
    if (rc != NVML_SUCCESS) {
        free(buf);
        return;
    }
    for (unsigned int i = 0; i < n; i++) {
        unsigned char *e = buf + i * stride;
        unsigned int pid;
        unsigned long long used;
        memcpy(&pid, e, 4);
        memcpy(&used, e + 8, 8);
        printf("%s.%u.pid=%u\n%s.%u.used=%llu\n", fn, i, pid, fn, i, used);
    }
    int clean = 1;
    for (size_t b = (size_t)n * stride; b < bytes; b++) clean &= buf[b] == 0xee;
    printf("%s.no_overrun=%d\n", fn, clean);
    free(buf);
}

static int sc_procs(unsigned int dev) {
    NK(((pfn_void)sym("nvmlInit_v2"))());
    nvmlDevice_t d = handle(dev);
    list_procs(d, "nvmlDeviceGetComputeRunningProcesses", sizeof(nvmlProcessInfo_v1_t));
    list_procs(d, "nvmlDeviceGetComputeRunningProcesses_v2", sizeof(nvmlProcessInfo_v2_t));
    list_procs(d, "nvmlDeviceGetComputeRunningProcesses_v3", sizeof(nvmlProcessInfo_v2_t));
    printf("stride.v1=%zu\nstride.v2=%zu\n", sizeof(nvmlProcessInfo_v1_t), sizeof(nvmlProcessInfo_v2_t));
    return 0;
}

static int sc_util(unsigned long long since_us, unsigned int dev) {
    NK(((pfn_void)sym("nvmlInit_v2"))());
    nvmlDevice_t d = handle(dev);
    nvmlUtilization_t u;
    NK(((pfn_dev_util)sym("nvmlDeviceGetUtilizationRates"))(d, &u));
    printf("device.gpu=%u\ndevice.memory=%u\n", u.gpu, u.memory);
    pfn_dev_putil f = (pfn_dev_putil)sym("nvmlDeviceGetProcessUtilization");
    unsigned int count = 0;
    nvmlReturn_t rc = f(d, NULL, &count, since_us);
    printf("probe_rc=%d\nprobe_count=%u\n", (int)rc, count);
    if (rc != NVML_ERROR_INSUFFICIENT_SIZE) return 0;
    nvmlProcessUtilizationSample_t *s = calloc(count + 4, sizeof *s);
    unsigned int n = count + 4;
    rc = f(d, s, &n, since_us);
    printf("rc=%d\ncount=%u\n", (int)rc, n);
    for (unsigned int i = 0; rc == NVML_SUCCESS && i < n; i++)
        printf("s%u.pid=%u\ns%u.sm=%u\ns%u.ts=%llu\n", i, s[i].pid, i, s[i].smUtil, i, s[i].timeStamp);
    free(s);
    return 0;
}

static int sc_badargs(void) {
    unsigned int n = 0;
    nvmlDevice_t d = NULL;
    char buf[256];
    printf("preinit.count=%d\n", (int)((pfn_uintp)sym("nvmlDeviceGetCount_v2"))(&n));
    NK(((pfn_void)sym("nvmlInit_v2"))());
    printf("bad.count_null=%d\n", (int)((pfn_uintp)sym("nvmlDeviceGetCount_v2"))(NULL));
    printf("bad.handle_index=%d\n", (int)((pfn_by_index)sym("nvmlDeviceGetHandleByIndex_v2"))(99, &d));
    printf("bad.handle_uuid=%d\n",
           (int)((pfn_by_str)sym("nvmlDeviceGetHandleByUUID"))("GPU-00000000-0000-0000-0000-000000000000", &d));
    d = handle(0);
    printf("bad.name_small=%d\n", (int)((pfn_dev_str)sym("nvmlDeviceGetName"))(d, buf, 1));
    printf("bad.memory_null=%d\n", (int)((pfn_dev_mem)sym("nvmlDeviceGetMemoryInfo"))(d, NULL));
    const char *s = ((pfn_errstr)sym("nvmlErrorString"))(NVML_ERROR_INSUFFICIENT_SIZE);
    printf("ok.error_string_7=%s\n", s ? s : "(null)");
    NK(((pfn_void)sym("nvmlShutdown"))());
    printf("shutdown.count=%d\n", (int)((pfn_uintp)sym("nvmlDeviceGetCount_v2"))(&n));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s info | procs [DEV] | util SINCE_US [DEV] | badargs | now_us\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "now_us")) {
        printf("now_us=%llu\n", vgpu_now_ns(CLOCK_REALTIME) / 1000ull);
        return 0;
    }
    const char *path = getenv("VGPU_TEST_LIBNVML");
    lib = dlopen(path ? path : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("dlopen_error=%s\n", dlerror());
        return 3;
    }
    printf("pid=%d\n", (int)getpid());
    int rc;
    if (!strcmp(argv[1], "info")) rc = sc_info();
    else if (!strcmp(argv[1], "procs")) rc = sc_procs(argc > 2 ? (unsigned)atoi(argv[2]) : 0);
    else if (!strcmp(argv[1], "util") && argc > 2)
        rc = sc_util(strtoull(argv[2], NULL, 10), argc > 3 ? (unsigned)atoi(argv[3]) : 0);
    else if (!strcmp(argv[1], "badargs")) rc = sc_badargs();
    else {
        fprintf(stderr, "unknown scenario %s\n", argv[1]);
        return 2;
    }
    if (rc == 0) printf("ok=1\n");
    return rc;
}
