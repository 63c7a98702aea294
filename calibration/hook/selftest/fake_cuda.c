/* A stand-in libcuda.so.1 for testing the hook without a GPU (hasim calibration).
 * A "kernel" launch spins FAKE_KERNEL_MS (default 1) ms on the CPU, synchronously.
 * Like the real driver, cuGetProcAddress hands out internal (non-exported) functions. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>
#undef cuGetProcAddress
#undef cuLaunchKernel
#undef cuLaunchKernelEx

static int g_launches = 0;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void spin(void) {
    const char *v = getenv("FAKE_KERNEL_MS");
    double ms = v ? atof(v) : 1.0;
    double end = now_ms() + ms;
    while (now_ms() < end) {
    }
    g_launches++;
}

static CUresult launch_impl(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                            unsigned by, unsigned bz, unsigned sh, CUstream s, void **p,
                            void **e) {
    (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)sh, (void)s;
    (void)p, (void)e;
    spin();
    return CUDA_SUCCESS;
}

static CUresult launch_ex_impl(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    (void)c, (void)f, (void)p, (void)e;
    spin();
    return CUDA_SUCCESS;
}

static CUresult sync_impl(CUstream s) {
    (void)s;
    return CUDA_SUCCESS;
}

static CUresult proc_v2_impl(const char *sym, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st);

static CUresult proc_v1_impl(const char *sym, void **pfn, int ver, cuuint64_t flags) {
    return proc_v2_impl(sym, pfn, ver, flags, NULL);
}

static CUresult proc_v2_impl(const char *sym, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st) {
    (void)flags;
    void *p = NULL;
    if (!strcmp(sym, "cuLaunchKernel")) p = (void *)launch_impl;
    else if (!strcmp(sym, "cuLaunchKernelEx")) p = (void *)launch_ex_impl;
    else if (!strcmp(sym, "cuStreamSynchronize")) p = (void *)sync_impl;
    else if (!strcmp(sym, "cuGetProcAddress"))
        p = ver >= 12000 ? (void *)proc_v2_impl : (void *)proc_v1_impl;
    if (st) *st = p ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    *pfn = p;
    return p ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

/* exported like libcuda's */
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned sh, CUstream s, void **p, void **e) {
    return launch_impl(f, gx, gy, gz, bx, by, bz, sh, s, p, e);
}
CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    return launch_ex_impl(c, f, p, e);
}
CUresult cuStreamSynchronize(CUstream s) { return sync_impl(s); }
CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags) {
    return proc_v1_impl(sym, pfn, ver, flags);
}
CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *st) {
    return proc_v2_impl(sym, pfn, ver, flags, st);
}
int fake_cuda_launches(void) { return g_launches; }

/* dlsym(RTLD_DEFAULT) from this RTLD_LOCAL library must still see its own symbols: true
 * only while the hook's dlsym keeps the caller's identity (it tail-calls glibc's). */
int fake_cuda_self_sym = 42;
int fake_cuda_scope_ok(void) {
    int *p = (int *)dlsym(RTLD_DEFAULT, "fake_cuda_self_sym");
    return p && *p == 42;
}
