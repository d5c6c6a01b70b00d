// A HIP program as users write it: <<<>>> launches compiled by hipcc (clang's HIP
// frontend emits __hipRegisterFatBinary / __hipRegisterFunction in a constructor and
// __hipPushCallConfiguration + a host stub calling hipLaunchKernel at each launch).
// Prints key=value lines; with "hold" it waits for stdin before freeing its memory.
#include <hip/hip_runtime.h>
#include <stdio.h>
#include <string.h>

__global__ void vector_add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

__global__ void scale(float *x, float f, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= f;
}

int main(int argc, char **argv) {
    int hold = argc > 1 && !strcmp(argv[1], "hold");
    hipDeviceProp_t p;
    if (hipGetDeviceProperties(&p, 0) != hipSuccess) {
        printf("props_failed=1\n");
        return 1;
    }
    printf("name=%s\narch=%s\ncus=%d\n", p.name, p.gcnArchName, p.multiProcessorCount);
    const int n = 1 << 20;
    const size_t bytes = n * sizeof(float);
    float *a, *b, *c;
    if (hipMalloc(&a, bytes) || hipMalloc(&b, bytes) || hipMalloc(&c, bytes)) {
        printf("malloc_failed=1\n");
        return 1;
    }
    hipStream_t s;
    hipEvent_t t0, t1;
    hipStreamCreate(&s);
    hipEventCreate(&t0);
    hipEventCreate(&t1);
    hipEventRecord(t0, s);
    int launched = 0;
    for (int k = 0; k < 3; k++) {
        vector_add<<<n / 256, 256, 0, s>>>(a, b, c, n);
        hipError_t e = hipGetLastError();
        if (e != hipSuccess) {
            printf("launch_error=%d\nlaunch_error_name=%s\n", e, hipGetErrorName(e));
            break;
        }
        launched++;
        hipLaunchKernelGGL(scale, dim3(n / 256), dim3(256), 0, s, c, 2.0f, n);
        if (hipGetLastError() == hipSuccess) launched++;
    }
    hipEventRecord(t1, s);
    hipError_t sync = hipStreamSynchronize(s);
    float ms = 0;
    hipEventElapsedTime(&ms, t0, t1);
    size_t freeb = 0, total = 0;
    hipMemGetInfo(&freeb, &total);
    printf("launched=%d\nsync=%d\nelapsed_ms=%.3f\nused=%zu\n", launched, sync, ms, total - freeb);
    if (hold) {
        printf("ready=1\n");
        fflush(stdout);
        char line[8];
        if (!fgets(line, sizeof line, stdin)) {
        }
    }
    hipFree(a);
    hipFree(b);
    hipFree(c);
    printf("ok=1\n");
    return 0;
}
