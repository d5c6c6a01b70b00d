/* Driver-API client that, like libcudart, dlopens libcuda.so.1, takes only
 * cuGetProcAddress_v2 from dlsym and resolves every other entry point by base name through it.
 * Environment: VGPU_TEST_CUDA_VERSION (cudaVersion argument, default 12080) and
 * VGPU_TEST_PROCADDR_FLAGS (0 default, 1 legacy stream, 2 per-thread default stream).
 * Prints `resolved.<member>=<symbol the answer belongs to>` for each entry point. */
#include "vgpu_test_api.h"

#include <dlfcn.h>

static void *lib;

#define VGPU_MEMBER(sym, base, params) vgpu_pfn_##sym sym;
static struct {
    VGPU_DRIVER_FUNCS(VGPU_MEMBER)
} api;
#undef VGPU_MEMBER

#define API(sym) api.sym
static const char *CLIENT_STYLE = "procaddr";

static void *client_dlsym(const char *name) { return dlsym(lib, name); }

static int client_load(void) {
    const char *path = getenv("VGPU_TEST_LIBCUDA");
    const char *ver_s = getenv("VGPU_TEST_CUDA_VERSION");
    const char *flags_s = getenv("VGPU_TEST_PROCADDR_FLAGS");
    int ver = ver_s ? atoi(ver_s) : 12080;
    uint64_t flags = flags_s ? strtoull(flags_s, NULL, 10) : 0;
    lib = dlopen(path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("dlopen_error=%s\n", dlerror());
        return 1;
    }
    vgpu_pfn_cuGetProcAddress_v2 gpa = (vgpu_pfn_cuGetProcAddress_v2)dlsym(lib, "cuGetProcAddress_v2");
    if (!gpa) {
        printf("missing=cuGetProcAddress_v2\n");
        return 1;
    }
    printf("procaddr.version=%d\nprocaddr.flags=%llu\n", ver, (unsigned long long)flags);
    int bad = 0;
#define VGPU_RESOLVE(sym, basename, params)                                                 \
    {                                                                                       \
        void *fp = NULL;                                                                    \
        CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)77;             \
        CUresult rc = gpa(basename, &fp, ver, flags, &st);                                  \
        Dl_info info;                                                                       \
        const char *name = "-";                                                             \
        if (fp && dladdr(fp, &info) && info.dli_sname) name = info.dli_sname;               \
        printf("resolved.%s=%s\n", #sym, name);                                             \
        if (rc != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS || !fp) {               \
            printf("unresolved=%s rc=%d status=%d\n", #sym, (int)rc, (int)st);              \
            bad++;                                                                          \
        }                                                                                   \
        api.sym = (vgpu_pfn_##sym)fp;                                                       \
    }
    VGPU_DRIVER_FUNCS(VGPU_RESOLVE)
#undef VGPU_RESOLVE
    return bad ? 1 : 0;
}

#include "driver_scenarios.h"
