/*
 * hasim_hook.c - an LD_PRELOAD time-quota gate for CUDA kernel launches (hasim calibration).
 *
 * Build:  make -C calibration/hook        (or: python -m calibration.hook.build)
 * Use:    LD_PRELOAD=calibration/hook/build/libhasim_hook.so HASIM_QUOTA=0.4 \
 *             HASIM_WINDOW_MS=40 python my_inference.py
 *
 * The rule (hasim's SYSTEMS.md section 1, one pod per GPU): in a window of W ms the
 * process holds a token of q*W ms; a kernel launches while elapsed + 1 ms <= token,
 * otherwise the launch waits. When a token is found expired the gate synchronizes the
 * launching stream: if the GPU was still busy the work ran past the token ("overuse"),
 * which is charged: the next token comes at t0 + W + overuse (the sliding-window rule:
 * GPU time within the last W stays under q*W). The first launch after a grant always
 * goes through. Simplification: HAS-GPU's scheduler arbitrates between the pods of a GPU;
 * here one process is alone on the GPU, so the token holder is always this process and
 * the scheduler is this local rule (no IPC).
 *
 * Intercepted launch paths (each one counted separately, see hasim_hook_get_stats):
 *   - cuLaunchKernel, cuLaunchKernel_ptsz, cuLaunchKernelEx, cuLaunchKernelEx_ptsz
 *     exported here (programs that link libcuda directly);
 *   - the driver's entry-point lookup: cuGetProcAddress / cuGetProcAddress_v2 return
 *     our wrappers for the launch symbols (and for cuGetProcAddress itself). Recent CUDA
 *     runtimes get every driver entry point this way;
 *   - dlsym: the runtime dlopen()s libcuda.so.1 and dlsym()s cuGetProcAddress from that
 *     handle, which LD_PRELOAD alone does not interpose, so dlsym is wrapped too and
 *     hands out our cuGetProcAddress / launch wrappers (HASIM_HOOK_DLSYM=0 turns it off);
 *   - the runtime API: cudaLaunchKernel, cudaLaunchKernelExC and their _ptsz variants
 *     (the <<<>>> launches of a dynamically linked libcudart, e.g. PyTorch's).
 *
 * Environment: HASIM_QUOTA (fraction in (0, 1], default 1 = no gating), HASIM_WINDOW_MS
 * (default 40), HASIM_MARGIN_MS (default 1), HASIM_HOOK_SYNC (default 1: synchronize
 * the stream when a token expires; 0: never, then overuse is not measured),
 * HASIM_HOOK_DLSYM (default 1), HASIM_HOOK_VERBOSE (1: statistics to stderr at exit).
 * Control from the process itself (ctypes): hasim_hook_set_quota, hasim_hook_reset,
 * hasim_hook_get_stats, hasim_hook_version.
 *
 * Written for hasim; builds against CUDA 11.3+ headers with gcc (no nvcc needed).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>
#include <cuda_runtime_api.h>

/* cuda.h renames these (cuGetProcAddress -> cuGetProcAddress_v2, and the _ptsz forms
 * with per-thread default streams); we export each ABI under its own plain name. */
#undef cuGetProcAddress
#undef cuLaunchKernel
#undef cuLaunchKernelEx
#undef cudaLaunchKernel
#undef cudaLaunchKernelExC

#define HASIM_HOOK_VERSION 1
#define EXPORT __attribute__((visibility("default")))

#if CUDA_VERSION >= 11080
#define HAVE_LAUNCH_EX 1
#else
#define HAVE_LAUNCH_EX 0
#endif
#if CUDA_VERSION >= 12000
#define HAVE_PROC_V2 1
#else
#define HAVE_PROC_V2 0
#endif

#ifndef CU_STREAM_PER_THREAD
#define CU_STREAM_PER_THREAD ((CUstream)0x2)
#endif

/* ------------------------------------------------------------------ function types */

typedef CUresult (*launch_fn)(CUfunction, unsigned int, unsigned int, unsigned int,
                              unsigned int, unsigned int, unsigned int, unsigned int,
                              CUstream, void **, void **);
#if HAVE_LAUNCH_EX
typedef CUresult (*launch_ex_fn)(const CUlaunchConfig *, CUfunction, void **, void **);
#endif
typedef CUresult (*proc_v1_fn)(const char *, void **, int, cuuint64_t);
#if HAVE_PROC_V2
typedef CUresult (*proc_v2_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);
#endif
typedef CUresult (*stream_sync_fn)(CUstream);
typedef void *(*dlsym_fn)(void *, const char *);
typedef cudaError_t (*rt_launch_fn)(const void *, dim3, dim3, void **, size_t, cudaStream_t);
#if CUDART_VERSION >= 11080
#define HAVE_RT_LAUNCH_EX 1
typedef cudaError_t (*rt_launch_ex_fn)(const cudaLaunchConfig_t *, const void *, void **);
#else
#define HAVE_RT_LAUNCH_EX 0
#endif
typedef cudaError_t (*rt_sync_fn)(cudaStream_t);

/* ------------------------------------------------------------------ state */

enum { E_DRIVER, E_PROCADDR, E_RUNTIME, E_COUNT };

/* recursive: a synchronization inside the gate may look up entry points (swap_in) */
static pthread_mutex_t g_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static double g_quota = 1.0, g_window_ms = 40.0, g_margin_ms = 1.0;
static int g_sync = 1, g_dlsym = 1, g_verbose = 0;
static int g_held = 0;
static double g_t0 = 0.0, g_next = -1e300, g_last = -1e300;
static double s_launch[E_COUNT], s_tokens, s_waits, s_wait_ms, s_overuse_ms, s_syncs;
static double s_lookups, s_redirects;

static dlsym_fn real_dlsym_p = NULL;
static void *g_libcuda = NULL;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void sleep_until_ms(double t) {
    double ms = t - now_ms();
    if (ms <= 0) return;
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1e3);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1e3) * 1e6);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double env_double(const char *name, double dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end = NULL;
    double d = strtod(v, &end);
    return (end && end != v) ? d : dflt;
}

/* ------------------------------------------------------------------ symbol lookup */

static dlsym_fn real_dlsym(void) {
    if (real_dlsym_p) return real_dlsym_p;
    static const char *versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.0"};
    for (size_t i = 0; i < sizeof versions / sizeof *versions && !real_dlsym_p; i++)
        real_dlsym_p = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", versions[i]);
    return real_dlsym_p;
}

static void *libcuda(void) {
    if (!g_libcuda) g_libcuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!g_libcuda) g_libcuda = dlopen("libcuda.so.1", RTLD_LAZY);
    if (!g_libcuda) g_libcuda = dlopen("libcuda.so", RTLD_LAZY);
    return g_libcuda;
}

static void *cuda_sym(const char *name) {
    void *h = libcuda();
    dlsym_fn ds = real_dlsym();
    return (h && ds) ? ds(h, name) : NULL;
}

/* the loaded libcudart's path, found among the loaded objects */
static int find_cudart_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    base = base ? base + 1 : info->dlpi_name;
    if (base && strncmp(base, "libcudart", 9) == 0) {
        snprintf((char *)data, 4096, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}

static void *runtime_sym(const char *name, void *self) {
    dlsym_fn ds = real_dlsym();
    if (!ds) return NULL;
    void *p = ds(RTLD_NEXT, name);
    if (p && p != self) return p;
    char path[4096] = {0};
    dl_iterate_phdr(find_cudart_cb, path);
    if (path[0]) {
        void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
        if (h) {
            p = ds(h, name);
            if (p && p != self) return p;
        }
    }
    static const char *sonames[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0",
                                    "libcudart.so"};
    for (size_t i = 0; i < sizeof sonames / sizeof *sonames; i++) {
        void *h = dlopen(sonames[i], RTLD_LAZY | RTLD_NOLOAD);
        if (!h) continue;
        p = ds(h, name);
        if (p && p != self) return p;
    }
    return NULL;
}

/* ------------------------------------------------------------------ the gate */

typedef void (*sync_cb)(void *);

/* Blocks until this process may launch. `sync` waits for the launching stream. */
static void gate(int entry, sync_cb sync, void *arg) {
    pthread_mutex_lock(&g_lock);
    s_launch[entry] += 1;
    if (g_quota >= 1.0) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    double token = g_quota * g_window_ms;
    double now = now_ms();
    if (g_held) {
        if ((now - g_t0) + g_margin_ms <= token) {
            g_last = now;
            pthread_mutex_unlock(&g_lock);
            return;
        }
        double busy_end = g_last;
        if (g_sync && sync) {
            double a = now_ms();
            sync(arg);
            double b = now_ms();
            s_syncs += 1;
            busy_end = (b - a > 0.05) ? b : (g_last < now ? g_last : now);
        }
        double over = busy_end - (g_t0 + token);
        if (over < 0) over = 0;
        s_overuse_ms += over;
        g_next = g_t0 + g_window_ms + over;
        g_held = 0;
        now = now_ms();
    }
    if (now < g_next) {
        sleep_until_ms(g_next);
        double after = now_ms();
        s_waits += 1;
        s_wait_ms += after - now;
        now = after;
    }
    g_t0 = now;
    g_held = 1;
    g_last = now;
    s_tokens += 1;
    pthread_mutex_unlock(&g_lock);
}

static stream_sync_fn drv_stream_sync(void) {
    static stream_sync_fn f = NULL;
    if (!f) f = (stream_sync_fn)cuda_sym("cuStreamSynchronize");
    return f;
}

struct drv_sync_arg {
    CUstream stream;
    int ptsz;
};

static void drv_sync(void *p) {
    struct drv_sync_arg *a = (struct drv_sync_arg *)p;
    stream_sync_fn f = drv_stream_sync();
    if (!f) return;
    CUstream s = a->stream;
    if (!s && a->ptsz) s = CU_STREAM_PER_THREAD;
    f(s);
}

static void rt_sync(void *p) {
    static rt_sync_fn f = NULL;
    if (!f) f = (rt_sync_fn)runtime_sym("cudaStreamSynchronize", NULL);
    if (f) f(*(cudaStream_t *)p);
}

/* ------------------------------------------------------------------ driver launches */

static launch_fn dl_launch[2];                    /* [ptsz]: from libcuda's symbol table */
static launch_fn pa_launch[2];                    /* [ptsz]: from cuGetProcAddress */
#if HAVE_LAUNCH_EX
static launch_ex_fn dl_launch_ex[2];
static launch_ex_fn pa_launch_ex[2];
#endif

#define LAUNCH_PARAMS                                                                       \
    CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,       \
        unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,    \
        void **extra
#define LAUNCH_ARGS f, gx, gy, gz, bx, by, bz, shmem, s, params, extra

static CUresult do_launch(launch_fn real, int entry, int ptsz, LAUNCH_PARAMS) {
    if (!real) return CUDA_ERROR_NOT_INITIALIZED;
    struct drv_sync_arg a = {s, ptsz};
    gate(entry, drv_sync, &a);
    return real(LAUNCH_ARGS);
}

EXPORT CUresult cuLaunchKernel(LAUNCH_PARAMS) {
    if (!dl_launch[0]) dl_launch[0] = (launch_fn)cuda_sym("cuLaunchKernel");
    return do_launch(dl_launch[0], E_DRIVER, 0, LAUNCH_ARGS);
}

EXPORT CUresult cuLaunchKernel_ptsz(LAUNCH_PARAMS) {
    if (!dl_launch[1]) dl_launch[1] = (launch_fn)cuda_sym("cuLaunchKernel_ptsz");
    return do_launch(dl_launch[1], E_DRIVER, 1, LAUNCH_ARGS);
}

static CUresult pa_cuLaunchKernel(LAUNCH_PARAMS) {
    return do_launch(pa_launch[0], E_PROCADDR, 0, LAUNCH_ARGS);
}

static CUresult pa_cuLaunchKernel_ptsz(LAUNCH_PARAMS) {
    return do_launch(pa_launch[1], E_PROCADDR, 1, LAUNCH_ARGS);
}

#if HAVE_LAUNCH_EX
static CUresult do_launch_ex(launch_ex_fn real, int entry, int ptsz, const CUlaunchConfig *c,
                             CUfunction f, void **params, void **extra) {
    if (!real) return CUDA_ERROR_NOT_INITIALIZED;
    struct drv_sync_arg a = {c ? c->hStream : NULL, ptsz};
    gate(entry, drv_sync, &a);
    return real(c, f, params, extra);
}

EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    if (!dl_launch_ex[0]) dl_launch_ex[0] = (launch_ex_fn)cuda_sym("cuLaunchKernelEx");
    return do_launch_ex(dl_launch_ex[0], E_DRIVER, 0, c, f, p, e);
}

EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **p,
                                      void **e) {
    if (!dl_launch_ex[1]) dl_launch_ex[1] = (launch_ex_fn)cuda_sym("cuLaunchKernelEx_ptsz");
    return do_launch_ex(dl_launch_ex[1], E_DRIVER, 1, c, f, p, e);
}

static CUresult pa_cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    return do_launch_ex(pa_launch_ex[0], E_PROCADDR, 0, c, f, p, e);
}

static CUresult pa_cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **p,
                                         void **e) {
    return do_launch_ex(pa_launch_ex[1], E_PROCADDR, 1, c, f, p, e);
}
#endif

/* ------------------------------------------------------------------ entry-point lookup */

static proc_v1_fn real_proc_v1 = NULL; /* libcuda's exported cuGetProcAddress */
static proc_v1_fn pa_proc_v1 = NULL;   /* cuGetProcAddress fetched through itself */
#if HAVE_PROC_V2
static proc_v2_fn real_proc_v2 = NULL;
static proc_v2_fn pa_proc_v2 = NULL;
#endif

/* Store `*pfn` (the driver's function) in `slot` and hand out `wrapper` instead. A
 * second, different pointer for the same slot is left unwrapped (never call the wrong
 * function). */
static void swap_in(void **pfn, void **slot, void *wrapper) {
    pthread_mutex_lock(&g_lock);
    if (!*slot) *slot = *pfn;
    if (*slot == *pfn) {
        *pfn = wrapper;
        s_redirects += 1;
    }
    pthread_mutex_unlock(&g_lock);
}

static CUresult pa_cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags);
#if HAVE_PROC_V2
static CUresult pa_cuGetProcAddress_v2(const char *symbol, void **pfn, int ver,
                                       cuuint64_t flags, CUdriverProcAddressQueryResult *st);
#endif

static void after_lookup(const char *symbol, void **pfn, int ver, cuuint64_t flags) {
    if (!symbol || !pfn || !*pfn) return;
    int ptsz = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) ? 1 : 0;
    s_lookups += 1;
    if (strcmp(symbol, "cuLaunchKernel") == 0) {
        swap_in(pfn, (void **)&pa_launch[ptsz],
                ptsz ? (void *)pa_cuLaunchKernel_ptsz : (void *)pa_cuLaunchKernel);
#if HAVE_LAUNCH_EX
    } else if (strcmp(symbol, "cuLaunchKernelEx") == 0) {
        swap_in(pfn, (void **)&pa_launch_ex[ptsz],
                ptsz ? (void *)pa_cuLaunchKernelEx_ptsz : (void *)pa_cuLaunchKernelEx);
#endif
    } else if (strcmp(symbol, "cuGetProcAddress") == 0) {
#if HAVE_PROC_V2
        if (ver >= 12000) { /* the driver hands out the _v2 ABI to 12.0+ callers */
            swap_in(pfn, (void **)&pa_proc_v2, (void *)pa_cuGetProcAddress_v2);
            return;
        }
#endif
        (void)ver;
        swap_in(pfn, (void **)&pa_proc_v1, (void *)pa_cuGetProcAddress);
    }
}

static CUresult proc_v1(proc_v1_fn real, const char *symbol, void **pfn, int ver,
                        cuuint64_t flags) {
    if (!real) return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = real(symbol, pfn, ver, flags);
    if (r == CUDA_SUCCESS) after_lookup(symbol, pfn, ver, flags);
    return r;
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags) {
    if (!real_proc_v1) real_proc_v1 = (proc_v1_fn)cuda_sym("cuGetProcAddress");
    return proc_v1(real_proc_v1, symbol, pfn, ver, flags);
}

static CUresult pa_cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags) {
    return proc_v1(pa_proc_v1, symbol, pfn, ver, flags);
}

#if HAVE_PROC_V2
static CUresult proc_v2(proc_v2_fn real, const char *symbol, void **pfn, int ver,
                        cuuint64_t flags, CUdriverProcAddressQueryResult *st) {
    if (!real) return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = real(symbol, pfn, ver, flags, st);
    if (r == CUDA_SUCCESS) after_lookup(symbol, pfn, ver, flags);
    return r;
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, cuuint64_t flags,
                                    CUdriverProcAddressQueryResult *st) {
    if (!real_proc_v2) real_proc_v2 = (proc_v2_fn)cuda_sym("cuGetProcAddress_v2");
    return proc_v2(real_proc_v2, symbol, pfn, ver, flags, st);
}

static CUresult pa_cuGetProcAddress_v2(const char *symbol, void **pfn, int ver,
                                       cuuint64_t flags, CUdriverProcAddressQueryResult *st) {
    return proc_v2(pa_proc_v2, symbol, pfn, ver, flags, st);
}
#endif

/* ------------------------------------------------------------------ dlsym */

static int hooked_name(const char *s) {
    return s[0] == 'c' && s[1] == 'u' &&
           (strncmp(s, "cuGetProcAddress", 16) == 0 || strncmp(s, "cuLaunchKernel", 14) == 0);
}

/* Looks `symbol` up in a real handle (not RTLD_DEFAULT/RTLD_NEXT) and swaps in our wrapper. */
static __attribute__((noinline)) void *hooked_dlsym(dlsym_fn ds, void *handle,
                                                    const char *symbol) {
    void *p = ds(handle, symbol);
    if (!p) return p;
    void *w = NULL;
    void **slot = NULL;
    if (strcmp(symbol, "cuGetProcAddress") == 0) {
        slot = (void **)&real_proc_v1;
        w = (void *)cuGetProcAddress;
#if HAVE_PROC_V2
    } else if (strcmp(symbol, "cuGetProcAddress_v2") == 0) {
        slot = (void **)&real_proc_v2;
        w = (void *)cuGetProcAddress_v2;
#endif
    } else if (strcmp(symbol, "cuLaunchKernel") == 0) {
        slot = (void **)&dl_launch[0];
        w = (void *)cuLaunchKernel;
    } else if (strcmp(symbol, "cuLaunchKernel_ptsz") == 0) {
        slot = (void **)&dl_launch[1];
        w = (void *)cuLaunchKernel_ptsz;
#if HAVE_LAUNCH_EX
    } else if (strcmp(symbol, "cuLaunchKernelEx") == 0) {
        slot = (void **)&dl_launch_ex[0];
        w = (void *)cuLaunchKernelEx;
    } else if (strcmp(symbol, "cuLaunchKernelEx_ptsz") == 0) {
        slot = (void **)&dl_launch_ex[1];
        w = (void *)cuLaunchKernelEx_ptsz;
#endif
    }
    if (!w || p == w) return p;
    swap_in(&p, slot, w);
    return p;
}

/* glibc resolves RTLD_NEXT and RTLD_DEFAULT relative to the object that called dlsym
 * (its return address). Every lookup we do not redirect therefore leaves through a tail
 * call (a jump: the caller's return address is kept), so the caller's semantics are
 * unchanged; only lookups of the launch / entry-point symbols in an explicit handle (the
 * runtime's dlopen("libcuda.so.1") handle) are redirected. */
EXPORT void *dlsym(void *handle, const char *symbol) {
    dlsym_fn ds = real_dlsym_p ? real_dlsym_p : real_dlsym();
    if (!g_dlsym || handle == RTLD_DEFAULT || handle == RTLD_NEXT || !hooked_name(symbol))
        return ds(handle, symbol); /* sibling call */
    return hooked_dlsym(ds, handle, symbol);
}

/* ------------------------------------------------------------------ runtime launches */

static cudaError_t rt_gate_launch(cudaStream_t stream) {
    gate(E_RUNTIME, rt_sync, &stream);
    return cudaSuccess;
}

EXPORT cudaError_t cudaLaunchKernel(const void *func, dim3 g, dim3 b, void **args, size_t shmem,
                                    cudaStream_t stream) {
    static rt_launch_fn real = NULL;
    if (!real) real = (rt_launch_fn)runtime_sym("cudaLaunchKernel", (void *)cudaLaunchKernel);
    if (!real) return cudaErrorSharedObjectSymbolNotFound;
    rt_gate_launch(stream);
    return real(func, g, b, args, shmem, stream);
}

EXPORT cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 g, dim3 b, void **args,
                                         size_t shmem, cudaStream_t stream) {
    static rt_launch_fn real = NULL;
    if (!real)
        real = (rt_launch_fn)runtime_sym("cudaLaunchKernel_ptsz", (void *)cudaLaunchKernel_ptsz);
    if (!real) return cudaErrorSharedObjectSymbolNotFound;
    rt_gate_launch(stream ? stream : cudaStreamPerThread);
    return real(func, g, b, args, shmem, stream);
}

#if HAVE_RT_LAUNCH_EX
EXPORT cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *c, const void *func,
                                       void **args) {
    static rt_launch_ex_fn real = NULL;
    if (!real)
        real = (rt_launch_ex_fn)runtime_sym("cudaLaunchKernelExC", (void *)cudaLaunchKernelExC);
    if (!real) return cudaErrorSharedObjectSymbolNotFound;
    rt_gate_launch(c ? c->stream : 0);
    return real(c, func, args);
}

EXPORT cudaError_t cudaLaunchKernelExC_ptsz(const cudaLaunchConfig_t *c, const void *func,
                                            void **args) {
    static rt_launch_ex_fn real = NULL;
    if (!real)
        real = (rt_launch_ex_fn)runtime_sym("cudaLaunchKernelExC_ptsz",
                                            (void *)cudaLaunchKernelExC_ptsz);
    if (!real) return cudaErrorSharedObjectSymbolNotFound;
    rt_gate_launch(c && c->stream ? c->stream : cudaStreamPerThread);
    return real(c, func, args);
}
#endif

/* ------------------------------------------------------------------ control API */

EXPORT int hasim_hook_version(void) { return HASIM_HOOK_VERSION; }

EXPORT void hasim_hook_set_quota(double quota, double window_ms) {
    pthread_mutex_lock(&g_lock);
    if (quota > 0.0 && quota <= 1.0) g_quota = quota;
    if (window_ms > 0.0) g_window_ms = window_ms;
    pthread_mutex_unlock(&g_lock);
}

EXPORT void hasim_hook_reset(void) {
    pthread_mutex_lock(&g_lock);
    g_held = 0;
    g_next = -1e300;
    g_last = -1e300;
    for (int i = 0; i < E_COUNT; i++) s_launch[i] = 0;
    s_tokens = s_waits = s_wait_ms = s_overuse_ms = s_syncs = 0;
    pthread_mutex_unlock(&g_lock);
}

/* Writes up to n values in the order of calibration.gate.HOOK_STATS; returns how many. */
EXPORT int hasim_hook_get_stats(double *out, int n) {
    pthread_mutex_lock(&g_lock);
    double v[] = {s_launch[E_DRIVER], s_launch[E_PROCADDR], s_launch[E_RUNTIME], s_tokens,
                  s_waits, s_wait_ms, s_overuse_ms, s_syncs, g_quota, g_window_ms, s_lookups,
                  s_redirects};
    int k = (int)(sizeof v / sizeof *v);
    if (n < k) k = n;
    for (int i = 0; i < k; i++) out[i] = v[i];
    pthread_mutex_unlock(&g_lock);
    return k;
}

__attribute__((constructor)) static void hasim_hook_init(void) {
    double q = env_double("HASIM_QUOTA", 1.0);
    if (q > 0.0 && q <= 1.0) g_quota = q;
    double w = env_double("HASIM_WINDOW_MS", 40.0);
    if (w > 0.0) g_window_ms = w;
    double m = env_double("HASIM_MARGIN_MS", 1.0);
    if (m >= 0.0) g_margin_ms = m;
    g_sync = (int)env_double("HASIM_HOOK_SYNC", 1.0);
    g_dlsym = (int)env_double("HASIM_HOOK_DLSYM", 1.0);
    g_verbose = (int)env_double("HASIM_HOOK_VERBOSE", 0.0);
    real_dlsym();
}

__attribute__((destructor)) static void hasim_hook_fini(void) {
    if (!g_verbose) return;
    fprintf(stderr,
            "[hasim_hook] quota=%.3f window=%.1fms launches driver=%.0f procaddr=%.0f "
            "runtime=%.0f tokens=%.0f waits=%.0f wait=%.1fms overuse=%.1fms lookups=%.0f "
            "redirects=%.0f\n",
            g_quota, g_window_ms, s_launch[E_DRIVER], s_launch[E_PROCADDR],
            s_launch[E_RUNTIME], s_tokens, s_waits, s_wait_ms, s_overuse_ms, s_lookups,
            s_redirects);
}
