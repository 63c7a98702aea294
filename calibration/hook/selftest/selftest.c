/* Drives the hook through each interception path against the fake libraries.
 * usage: selftest MODE N   (MODE: procaddr | nested | direct | runtime | none)
 * prints one JSON line: elapsed_ms, the fake's launch count, the hook's statistics. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>
#include <cuda_runtime_api.h>
#undef cuGetProcAddress
#undef cuLaunchKernel
#undef cudaLaunchKernel

typedef CUresult (*launch_fn)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void **, void **);
typedef CUresult (*proc_v2_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);
typedef int (*count_fn)(void);
typedef int (*stats_fn)(double *, int);

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "procaddr";
    int n = argc > 2 ? atoi(argv[2]) : 10;
    void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cu) {
        fprintf(stderr, "dlopen libcuda.so.1: %s\n", dlerror());
        return 2;
    }
    launch_fn launch = NULL;
    if (!strcmp(mode, "procaddr") || !strcmp(mode, "nested")) {
        proc_v2_fn gpa = (proc_v2_fn)dlsym(cu, "cuGetProcAddress_v2");
        CUdriverProcAddressQueryResult st;
        if (!strcmp(mode, "nested")) { /* cuGetProcAddress fetched through itself */
            proc_v2_fn inner = NULL;
            if (gpa("cuGetProcAddress", (void **)&inner, 12000, 0, &st) != CUDA_SUCCESS)
                return 3;
            gpa = inner;
        }
        if (gpa("cuLaunchKernel", (void **)&launch, 12000, 0, &st) != CUDA_SUCCESS) return 3;
    } else if (!strcmp(mode, "direct")) {
        launch = (launch_fn)dlsym(cu, "cuLaunchKernel");
    }
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        if (!strcmp(mode, "runtime")) {
            dim3 g = {1, 1, 1}, b = {1, 1, 1};
            if (cudaLaunchKernel(NULL, g, b, NULL, 0, 0) != cudaSuccess) return 4;
        } else if (launch(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL) != CUDA_SUCCESS) {
            return 4;
        }
    }
    double elapsed = now_ms() - t0;
    count_fn fake = (count_fn)dlsym(cu, "fake_cuda_launches");
    count_fn scope_ok = (count_fn)dlsym(cu, "fake_cuda_scope_ok");
    count_fn fake_rt = (count_fn)dlsym(RTLD_DEFAULT, "fake_cudart_launches");
    stats_fn stats = (stats_fn)dlsym(RTLD_DEFAULT, "hasim_hook_get_stats");
    printf("{\"mode\": \"%s\", \"n\": %d, \"elapsed_ms\": %.3f, \"fake_launches\": %d, "
           "\"scope_ok\": %d",
           mode, n, elapsed, (fake ? fake() : 0) + (fake_rt ? fake_rt() : 0),
           scope_ok ? scope_ok() : -1);
    if (stats) {
        double v[32];
        int k = stats(v, 32);
        printf(", \"stats\": [");
        for (int i = 0; i < k; i++) printf("%s%.6f", i ? ", " : "", v[i]);
        printf("]");
    }
    printf("}\n");
    return 0;
}
