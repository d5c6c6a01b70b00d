/* Launches through every path but plain cuLaunchKernel: cuLaunchKernelEx,
 * cuLaunchCooperativeKernel, the _ptsz variants, and entry points got through
 * cuGetProcAddress_v2 with the per-thread default stream flag (tests/compute_cap.rs).
 * Usage: launch_paths PATH N -> prints rc= and enqueue_ns= (time to enqueue N launches). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "vgpu_cuda.h"
typedef CUresult (*init_t)(unsigned);
typedef CUresult (*retain_t)(CUcontext *, CUdevice);
typedef CUresult (*setcur_t)(CUcontext);
typedef CUresult (*modload_t)(CUmodule *, const void *);
typedef CUresult (*getfn_t)(CUfunction *, CUmodule, const char *);
typedef CUresult (*sync_t)(void);
typedef CUresult (*lk_t)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **);
typedef CUresult (*lkex_t)(const CUlaunchConfig *, CUfunction, void **, void **);
typedef CUresult (*coop_t)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **);
typedef CUresult (*gpa_t)(const char *, void **, int, unsigned long long, int *);
static unsigned long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) return 3;
    ((init_t)dlsym(h, "cuInit"))(0);
    CUcontext ctx; ((retain_t)dlsym(h, "cuDevicePrimaryCtxRetain"))(&ctx, 0);
    ((setcur_t)dlsym(h, "cuCtxSetCurrent"))(ctx);
    CUmodule m; ((modload_t)dlsym(h, "cuModuleLoadData"))(&m, "image");
    CUfunction f; ((getfn_t)dlsym(h, "cuModuleGetFunction"))(&f, m, "k");
    gpa_t gpa = (gpa_t)dlsym(h, "cuGetProcAddress_v2");
    const char *path = argv[1];
    void *p = NULL; int st = 0;
    CUlaunchConfig cfg; memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1; cfg.blockDimX = 32; cfg.blockDimY = cfg.blockDimZ = 1;
    unsigned long long t0 = now();
    CUresult rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!strcmp(path, "ex")) rc = ((lkex_t)dlsym(h, "cuLaunchKernelEx"))(&cfg, f, NULL, NULL);
        else if (!strcmp(path, "ex_ptsz")) rc = ((lkex_t)dlsym(h, "cuLaunchKernelEx_ptsz"))(&cfg, f, NULL, NULL);
        else if (!strcmp(path, "coop")) rc = ((coop_t)dlsym(h, "cuLaunchCooperativeKernel"))(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL);
        else if (!strcmp(path, "coop_ptsz")) rc = ((coop_t)dlsym(h, "cuLaunchCooperativeKernel_ptsz"))(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL);
        else if (!strcmp(path, "lk_ptsz")) rc = ((lk_t)dlsym(h, "cuLaunchKernel_ptsz"))(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
        else if (!strcmp(path, "gpa_lk")) { gpa("cuLaunchKernel", &p, 12080, 2, &st); rc = ((lk_t)p)(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL); }
        else if (!strcmp(path, "gpa_ex")) { gpa("cuLaunchKernelEx", &p, 12080, 2, &st); rc = ((lkex_t)p)(&cfg, f, NULL, NULL); }
        else if (!strcmp(path, "gpa_coop")) { gpa("cuLaunchCooperativeKernel", &p, 12080, 2, &st); rc = ((coop_t)p)(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL); }
        else return 4;
    }
    unsigned long long t1 = now();
    ((sync_t)dlsym(h, "cuCtxSynchronize"))();
    printf("rc=%d\nenqueue_ns=%llu\n", (int)rc, t1 - t0);
    return rc != 0;
}
