/* Driver-API client that loads libcuda.so.1 with dlopen and resolves every entry point with
 * dlsym of its exact exported name (as NCCL-style and Python ctypes clients do). */
#include "vgpu_test_api.h"

#include <dlfcn.h>

static void *lib;

#define VGPU_MEMBER(sym, base, params) vgpu_pfn_##sym sym;
static struct {
    VGPU_DRIVER_FUNCS(VGPU_MEMBER)
} api;
#undef VGPU_MEMBER

#define API(sym) api.sym
static const char *CLIENT_STYLE = "dlopen";

static void *client_dlsym(const char *name) { return dlsym(lib, name); }

static int client_load(void) {
    const char *path = getenv("VGPU_TEST_LIBCUDA");
    lib = dlopen(path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("dlopen_error=%s\n", dlerror());
        return 1;
    }
    int missing = 0;
#define VGPU_RESOLVE(sym, base, params)                \
    api.sym = (vgpu_pfn_##sym)dlsym(lib, #sym);        \
    if (!api.sym) {                                    \
        printf("missing=%s\n", #sym);                  \
        missing++;                                     \
    }
    VGPU_DRIVER_FUNCS(VGPU_RESOLVE)
#undef VGPU_RESOLVE
    return missing ? 1 : 0;
}

#include "driver_scenarios.h"
