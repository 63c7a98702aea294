/* A stand-in libcudart.so.13 for testing the hook's runtime-level gate (hasim calibration). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>

#include <cuda_runtime_api.h>
#undef cudaLaunchKernel

static int g_launches = 0;

cudaError_t cudaLaunchKernel(const void *func, dim3 g, dim3 b, void **args, size_t sh,
                             cudaStream_t s) {
    (void)func, (void)g, (void)b, (void)args, (void)sh, (void)s;
    const char *v = getenv("FAKE_KERNEL_MS");
    double ms = v ? atof(v) : 1.0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) * 1e-6 < ms);
    g_launches++;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}
int fake_cudart_launches(void) { return g_launches; }
