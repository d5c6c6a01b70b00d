/* Hot-path cost per process, the way an application pays it (scripts/hot-path-compare.sh):
 * linked against libcuda.so.1, run with or without a preloaded library; context made current
 * with cuCtxSetCurrent; N cuLaunchKernel and N cuMemAlloc_v2+cuMemFree_v2 (1 MiB) pairs,
 * 5 batches, the fastest batch's mean per call.
 *   hot-path N */
#include "vgpu_test_api.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction fn;
    if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&ctx, dev) ||
        cuCtxSetCurrent(ctx) || cuModuleLoadData(&mod, VGPU_TEST_PTX) ||
        cuModuleGetFunction(&fn, mod, "vgpu_test_kernel")) {
        printf("error=setup\n");
        return 1;
    }
    CUdeviceptr p;
    double launch = 1e18, pair = 1e18;
    for (int b = 0; b < 6; b++) {
        double t0 = now_ns();
        for (int i = 0; i < n; i++)
            if (cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL)) return 2;
        double t1 = now_ns();
        for (int i = 0; i < n; i++) {
            if (cuMemAlloc_v2(&p, 1 << 20)) return 3;
            cuMemFree_v2(p);
        }
        double t2 = now_ns();
        if (b == 0) continue; /* warm-up */
        if ((t1 - t0) / n < launch) launch = (t1 - t0) / n;
        if ((t2 - t1) / n < pair) pair = (t2 - t1) / n;
    }
    cuCtxSynchronize();
    printf("launch_ns=%.1f\npair_ns=%.1f\n", launch, pair);
    return 0;
}
