/*
 * The real CUDA runtime under libvgpu (scripts/gpu-check.sh): linked against the
 * nvidia-cuda-runtime-cu12 wheel's libcudart.so.12 (found next to this binary through its
 * $ORIGIN rpath), with our own prototypes of the few runtime functions it calls (no NVIDIA
 * header). libcudart reaches the driver through cuGetProcAddress and private export tables:
 * this proves those pass through the interposer intact, which the simulator cannot.
 *
 * Usage: cudart_check SLICE_BYTES; prints `key=value` lines.
 *   cudaMemGetInfo total; cudaMalloc in 64 MiB pieces until refused (the error code must be
 *   cudaErrorMemoryAllocation = 2); a kernel from PTX text loaded with cuModuleLoadData
 *   (entry points from cudaGetDriverEntryPointByVersion), its result read back.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, int kind);
cudaError_t cudaMemset(void *p, int v, size_t n);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int version,
                                             unsigned long long flags, int *status);

#define MEMCPY_DEVICE_TO_HOST 2
#define MiB (1024ull * 1024ull)

typedef int (*module_load_t)(void **module, const void *image);
typedef int (*get_function_t)(void **fn, void *module, const char *name);
typedef int (*launch_t)(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shmem, void *stream, void **params, void **extra);

static const char FILL_PTX[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    "\n"
    "// p[threadIdx.x] = v\n"
    ".visible .entry vgpu_fill(\n"
    "    .param .u64 vgpu_fill_p,\n"
    "    .param .u32 vgpu_fill_v\n"
    ")\n"
    "{\n"
    "    .reg .b32 %r<3>;\n"
    "    .reg .b64 %rd<5>;\n"
    "    ld.param.u64 %rd1, [vgpu_fill_p];\n"
    "    ld.param.u32 %r1, [vgpu_fill_v];\n"
    "    cvta.to.global.u64 %rd2, %rd1;\n"
    "    mov.u32 %r2, %tid.x;\n"
    "    mul.wide.u32 %rd3, %r2, 4;\n"
    "    add.s64 %rd4, %rd2, %rd3;\n"
    "    st.global.u32 [%rd4], %r1;\n"
    "    ret;\n"
    "}\n";

static const char *lib_of(void *p) {
    Dl_info info;
    if (!p || !dladdr(p, &info) || !info.dli_fname) return "-";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

#define RT(call)                                                                       \
    do {                                                                               \
        cudaError_t e_ = (call);                                                       \
        if (e_) {                                                                      \
            printf("error=%s code=%d name=%s\n", #call, e_, cudaGetErrorName(e_));     \
            return 10;                                                                 \
        }                                                                              \
    } while (0)

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: cudart_check SLICE_BYTES\n");
        return 2;
    }
    unsigned long long slice = strtoull(argv[1], NULL, 10);
    int rv = 0, dv = 0, n = 0;
    RT(cudaRuntimeGetVersion(&rv));
    RT(cudaDriverGetVersion(&dv));
    printf("runtime_version=%d\ndriver_version=%d\n", rv, dv);
    RT(cudaGetDeviceCount(&n));
    printf("devices=%d\n", n);
    size_t f = 0, t = 0;
    RT(cudaMemGetInfo(&f, &t));
    printf("meminfo_total=%zu\nmeminfo_free=%zu\nslice=%llu\n", t, f, slice);

    int max_pieces = (int)(slice / (64 * MiB)) + 2;
    void **pieces = calloc((size_t)max_pieces, sizeof *pieces);
    int got = 0;
    cudaError_t e = 0;
    while (got < max_pieces && (e = cudaMalloc(&pieces[got], 64 * MiB)) == 0) got++;
    printf("malloc_pieces=%d\nmalloc_refusal=%d\nmalloc_refusal_name=%s\n", got,
           got >= max_pieces ? -1 : e, got >= max_pieces ? "none" : cudaGetErrorName(e));
    cudaGetLastError(); /* the refusal is not sticky */
    RT(cudaMemGetInfo(&f, &t));
    printf("free_when_full=%zu\n", f);
    for (int i = 0; i < got; i++) RT(cudaFree(pieces[i]));
    free(pieces);
    RT(cudaMemGetInfo(&f, &t));
    printf("free_after=%zu\n", f);

    module_load_t load = NULL;
    get_function_t getfn = NULL;
    launch_t launch = NULL;
    int st = 0;
    RT(cudaGetDriverEntryPointByVersion("cuModuleLoadData", (void **)&load, 12000, 0, &st));
    RT(cudaGetDriverEntryPointByVersion("cuModuleGetFunction", (void **)&getfn, 12000, 0, &st));
    RT(cudaGetDriverEntryPointByVersion("cuLaunchKernel", (void **)&launch, 12000, 0, &st));
    printf("entry_module_load_lib=%s\nentry_launch_lib=%s\n", lib_of((void *)load), lib_of((void *)launch));
    void *mod = NULL, *fn = NULL;
    int rc = load(&mod, FILL_PTX);
    printf("module_rc=%d\n", rc);
    if (rc) return 10;
    rc = getfn(&fn, mod, "vgpu_fill");
    printf("function_rc=%d\n", rc);
    if (rc) return 10;
    void *buf = NULL;
    RT(cudaMalloc(&buf, 256 * sizeof(uint32_t)));
    RT(cudaMemset(buf, 0, 256 * sizeof(uint32_t)));
    uint32_t magic = 0x5eed1234u;
    void *params[] = {&buf, &magic};
    rc = launch(fn, 1, 1, 1, 256, 1, 1, 0, NULL, params, NULL);
    printf("launch_rc=%d\n", rc);
    if (rc) return 10;
    RT(cudaDeviceSynchronize());
    uint32_t host[256];
    RT(cudaMemcpy(host, buf, sizeof host, MEMCPY_DEVICE_TO_HOST));
    int right = 0;
    for (int i = 0; i < 256; i++) right += host[i] == magic;
    printf("kernel_values_right=%d\n", right);
    RT(cudaFree(buf));
    printf("ok=1\n");
    return 0;
}
