/*
 * How often libvgpu asks the driver for the current context on the alloc/free path
 * (tests/hot_path.rs, under LD_PRELOAD=libvgpu.so over tests/c/count_driver.c):
 *   hooked_calls=       1000 pairs after cuCtxSetCurrent through libvgpu
 *   after_push_calls=   1000 pairs after a pop and a push through libvgpu
 *   unseen_calls=       1000 pairs on a thread whose context was set behind libvgpu's back
 * With a second device (VGPU_SIM_DEVICES=2): contexts switched through libvgpu's hooks are
 * charged to the device they belong to:
 *   used1= used0= used_after_pop=   bytes in use per cuMemGetInfo after 5 MiB on device 1
 *   total1= total0= total_after_pop= (SetCurrent), 7 MiB on device 0 (Push), then Pop
 */
#include "vgpu_test_api.h"

#include <dlfcn.h>
#include <pthread.h>

typedef unsigned long (*count_fn)(void);
typedef CUresult (*set_unseen_fn)(CUcontext);

static CUcontext ctx0;
static count_fn calls;

static int pairs(int n) {
    for (int i = 0; i < n; i++) {
        CUdeviceptr p = 0;
        if (cuMemAlloc_v2(&p, 1 << 20) != CUDA_SUCCESS) return 0;
        if (cuMemFree_v2(p) != CUDA_SUCCESS) return 0;
    }
    return 1;
}

static void *unseen(void *arg) {
    (void)arg;
    set_unseen_fn set = (set_unseen_fn)dlsym(RTLD_DEFAULT, "vgpu_count_set_current_unseen");
    if (!set || set(ctx0) != CUDA_SUCCESS) return NULL;
    unsigned long before = calls();
    int ok = pairs(1000);
    printf("unseen_calls=%lu\nunseen_ok=%d\n", calls() - before, ok);
    return NULL;
}

int main(void) {
    calls = (count_fn)dlsym(RTLD_DEFAULT, "vgpu_count_get_current");
    if (!calls) {
        fprintf(stderr, "not running over count_driver\n");
        return 1;
    }
    CUdevice dev = 0;
    if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&ctx0, dev)) return 2;
    if (cuCtxSetCurrent(ctx0)) return 3;
    unsigned long before = calls();
    int ok = pairs(1000);
    printf("hooked_calls=%lu\nhooked_ok=%d\n", calls() - before, ok);

    CUcontext popped = NULL;
    if (cuCtxPopCurrent_v2(&popped) || popped != ctx0 || cuCtxPushCurrent_v2(ctx0)) return 4;
    before = calls();
    ok = pairs(1000);
    printf("after_push_calls=%lu\nafter_push_ok=%d\n", calls() - before, ok);

    pthread_t t;
    pthread_create(&t, NULL, unseen, NULL);
    pthread_join(t, NULL);

    int count = 0;
    if (cuDeviceGetCount(&count) == CUDA_SUCCESS && count >= 2) {
        CUcontext ctx1 = NULL;
        CUdevice dev1 = 0;
        CUdeviceptr p1 = 0, p0 = 0;
        size_t free_b = 0, total_b = 0;
        if (cuDeviceGet(&dev1, 1) || cuDevicePrimaryCtxRetain(&ctx1, dev1)) return 5;
        if (cuCtxSetCurrent(ctx1) || cuMemAlloc_v2(&p1, 5 << 20)) return 6;
        cuMemGetInfo_v2(&free_b, &total_b);
        printf("used1=%zu\ntotal1=%zu\n", total_b - free_b, total_b);
        if (cuCtxPushCurrent_v2(ctx0) || cuMemAlloc_v2(&p0, 7 << 20)) return 7;
        cuMemGetInfo_v2(&free_b, &total_b);
        printf("used0=%zu\ntotal0=%zu\n", total_b - free_b, total_b);
        CUcontext popped = NULL;
        if (cuCtxPopCurrent_v2(&popped) || popped != ctx0) return 8;
        cuMemGetInfo_v2(&free_b, &total_b);
        printf("used_after_pop=%zu\ntotal_after_pop=%zu\n", total_b - free_b, total_b);
    }
    return 0;
}
