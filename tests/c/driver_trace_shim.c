/*
 * A tracing stand-in for libcuda.so.1, used to document what a closed client (the real
 * libcudart.so.12) asks of the driver. Built with -shared and placed first on
 * LD_LIBRARY_PATH under the name libcuda.so.1; it dlopens the real (simulated) library from
 * VGPU_SHIM_REAL and forwards. Every line it writes goes to stderr prefixed "shim: ":
 *   shim: procaddr <symbol> <version> <flags> rc=<CUresult> status=<status>
 *   shim: call cuInit rc=<CUresult>
 *   shim: call cuGetExportTable <uuid hex> rc=<CUresult>
 * cuGetProcAddress(_v2) answers for cuGetProcAddress, cuInit and cuGetExportTable are
 * replaced by the tracing functions below; every other answer is the real library's pointer.
 */
#include "vgpu_test_api.h"

#include <dlfcn.h>

typedef CUresult (*pfn_gpa_v1)(const char *, void **, int, uint64_t);

static void *real_lib(void) {
    static void *h;
    if (!h) {
        const char *p = getenv("VGPU_SHIM_REAL");
        h = p ? dlopen(p, RTLD_NOW | RTLD_LOCAL) : NULL;
        if (!h) {
            fprintf(stderr, "shim: cannot load VGPU_SHIM_REAL=%s\n", p ? p : "(unset)");
            abort();
        }
    }
    return h;
}

static void *real(const char *name) { return dlsym(real_lib(), name); }

__attribute__((visibility("default"))) CUresult cuInit(unsigned int flags) {
    CUresult rc = ((vgpu_pfn_cuInit)real("cuInit"))(flags);
    fprintf(stderr, "shim: call cuInit rc=%d\n", (int)rc);
    return rc;
}

__attribute__((visibility("default"))) CUresult cuGetExportTable(const void **table,
                                                                 const CUuuid *id) {
    CUresult rc = ((vgpu_pfn_cuGetExportTable)real("cuGetExportTable"))(table, id);
    char hex[33] = "null";
    if (id)
        for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned char)id->bytes[i]);
    fprintf(stderr, "shim: call cuGetExportTable %s rc=%d\n", hex, (int)rc);
    return rc;
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int ver, uint64_t flags);
CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, uint64_t flags,
                             CUdriverProcAddressQueryResult *st);

/* Answers that must stay inside the tracer: cuInit, cuGetExportTable and cuGetProcAddress
 * itself (libcudart fetches cuGetProcAddress_v2 through cuGetProcAddress). */
static void *wrap(const char *symbol, int ver, void *fp) {
    if (fp && !strcmp(symbol, "cuGetProcAddress"))
        return ver >= 12000 ? (void *)cuGetProcAddress_v2 : (void *)cuGetProcAddress;
    if (fp && !strcmp(symbol, "cuInit")) return (void *)cuInit;
    if (fp && !strcmp(symbol, "cuGetExportTable")) return (void *)cuGetExportTable;
    return fp;
}

__attribute__((visibility("default"))) CUresult cuGetProcAddress_v2(
    const char *symbol, void **pfn, int ver, uint64_t flags, CUdriverProcAddressQueryResult *st) {
    CUresult rc = ((vgpu_pfn_cuGetProcAddress_v2)real("cuGetProcAddress_v2"))(symbol, pfn, ver,
                                                                              flags, st);
    fprintf(stderr, "shim: procaddr %s %d %llu rc=%d status=%d\n", symbol ? symbol : "(null)", ver,
            (unsigned long long)flags, (int)rc, st ? (int)*st : -1);
    if (rc == CUDA_SUCCESS && pfn && symbol) *pfn = wrap(symbol, ver, *pfn);
    return rc;
}

__attribute__((visibility("default"))) CUresult cuGetProcAddress(const char *symbol, void **pfn,
                                                                 int ver, uint64_t flags) {
    CUresult rc = ((pfn_gpa_v1)real("cuGetProcAddress"))(symbol, pfn, ver, flags);
    fprintf(stderr, "shim: procaddr %s %d %llu rc=%d status=-1\n", symbol ? symbol : "(null)", ver,
            (unsigned long long)flags, (int)rc);
    if (rc == CUDA_SUCCESS && pfn && symbol) *pfn = wrap(symbol, ver, *pfn);
    return rc;
}

__attribute__((visibility("default"))) CUresult cuDriverGetVersion(int *v) {
    CUresult rc = ((vgpu_pfn_cuDriverGetVersion)real("cuDriverGetVersion"))(v);
    fprintf(stderr, "shim: call cuDriverGetVersion rc=%d\n", (int)rc);
    return rc;
}
