// hw_cuda_util.h — included by the hardware lab's .cu files only (it includes CUDA headers): status checks
// that report file:line, and the repeat-until-enough timing loops (CUDA events, or the host clock).
#ifndef LL_HW_CUDA_UTIL_H
#define LL_HW_CUDA_UTIL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/hw_cuda.h"

// cuBLAS and cuBLASLt are opened with dlopen the first time a section needs them (hw_cuda_blas.cu): linked
// normally they add 0.2-0.3 s (warm) to seconds (cold) to every start of every program that links the library,
// `llmlab run` included. Entry p_X has the type of the header's X (decltype), so a signature cannot drift.
#define HW_BLAS_FNS(X)                                                                                         \
    X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtGetStatusString) X(cublasLtMatmulDescCreate)                \
    X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate)               \
    X(cublasLtMatrixLayoutDestroy) X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy)        \
    X(cublasLtMatmulPreferenceSetAttribute) X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)                \
    X(cublasCreate) X(cublasDestroy) X(cublasSetStream)

// cublasGemmStridedBatchedEx has a C++ overload in the header, so its type is written out.
typedef cublasStatus_t (*hw_gemm_sb_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                        const void *, const void *, cudaDataType, int, long long, const void *,
                                        cudaDataType, int, long long, const void *, void *, cudaDataType, int,
                                        long long, int, cublasComputeType_t, cublasGemmAlgo_t);

typedef struct hw_blas {
#define HW_BLAS_MEMBER(f) decltype(&f) p_##f;
    HW_BLAS_FNS(HW_BLAS_MEMBER)
#undef HW_BLAS_MEMBER
    hw_gemm_sb_fn gemm_strided_batched;
} hw_blas;

// The loaded table, or NULL with why ("cannot open libcublasLt.so.13: ..."). Loaded once per process.
const hw_blas *hw_blas_get(char *why, size_t whycap);
// A cuBLAS status as text (through the loaded library when it is there).
const char *hw_blas_status(cublasStatus_t s);

// "file:line: call: message" into why. Always returns false, so a check can `return hw_fail(...)`.
static inline bool hw_fail(char *why, size_t cap, const char *file, int line, const char *what, const char *msg) {
    if (why && cap) snprintf(why, cap, "%s:%d: %s: %s", file, line, what, msg);
    return false;
}

// Inside a function that returns bool and has `char *why, size_t whycap` in scope.
#define CK(call)                                                                                               \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return hw_fail(why, whycap, __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)
#define CKB(call)                                                                                              \
    do {                                                                                                       \
        cublasStatus_t s_ = (call);                                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                       \
            return hw_fail(why, whycap, __FILE__, __LINE__, #call, hw_blas_status(s_));                      \
    } while (0)
// The kernel launch just made (launch errors are only visible through cudaGetLastError).
#define CK_LAUNCH() CK(cudaGetLastError())

static inline double hw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void hw_note(ll_hw_meas *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note, sizeof m->note, fmt, ap);
    va_end(ap);
}

#define HW_MAX_REPS 200

// GPU work timed with events on stream s. One repetition is a batch of launches long enough (>= ~1 ms) for
// the event resolution; the recorded time is per launch. Warm-up: two launches. Repeats until at least 5
// batches and min_time seconds, or HW_MAX_REPS batches. launch() returns false (with why filled) on error.
template <class F>
static bool hw_time_gpu(F launch, cudaStream_t s, double min_time, ll_hw_stats *st, char *why, size_t whycap);

// The peers' method (../shared/BENCHMARKS.md: PyTorch, median of 20 timed runs after warm-up): 5 warm-up
// launches, then reps launches timed one by one with events. Short enough that the clocks stay where a burst
// of work finds them (hw_time_gpu's long runs measure the sustained, power-limited rate).
template <class F>
static bool hw_time_gpu_reps(F launch, cudaStream_t s, int reps, ll_hw_stats *st, char *why, size_t whycap) {
    cudaEvent_t e0 = NULL, e1 = NULL;
    double t[HW_MAX_REPS];
    bool ok = false;
    float ms = 0;
    int n = 0;
    if (reps > HW_MAX_REPS) reps = HW_MAX_REPS;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        hw_fail(why, whycap, __FILE__, __LINE__, "cudaEventCreate", "failed");
        goto done;
    }
    for (int w = 0; w < 5; w++)
        if (!launch()) goto done;
    for (; n < reps; n++) {
        if (cudaEventRecord(e0, s) != cudaSuccess || !launch() || cudaEventRecord(e1, s) != cudaSuccess ||
            cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
            if (!why[0]) hw_fail(why, whycap, __FILE__, __LINE__, "timed launch", cudaGetErrorString(cudaGetLastError()));
            goto done;
        }
        t[n] = (double)ms * 1e-3;
    }
    *st = ll_hw_stats_of(t, n);
    ok = true;
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return ok;
}

template <class F>
static bool hw_time_gpu(F launch, cudaStream_t s, double min_time, ll_hw_stats *st, char *why, size_t whycap) {
    cudaEvent_t e0 = NULL, e1 = NULL;
    double t[HW_MAX_REPS];
    int n = 0;
    bool ok = false;
    float ms = 0;
    double total = 0;
    int batch = 1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        hw_fail(why, whycap, __FILE__, __LINE__, "cudaEventCreate", "failed");
        goto done;
    }
    for (int w = 0; w < 2; w++)
        if (!launch()) goto done;
    if (cudaEventRecord(e0, s) != cudaSuccess || !launch() || cudaEventRecord(e1, s) != cudaSuccess ||
        cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
        if (!why[0]) hw_fail(why, whycap, __FILE__, __LINE__, "calibration launch", cudaGetErrorString(cudaGetLastError()));
        goto done;
    }
    batch = ms > 1.0f ? 1 : (int)(1.0 / (ms > 1e-4f ? ms : 1e-4f)) + 1;
    if (batch > 1000) batch = 1000;
    while (n < HW_MAX_REPS && (n < 5 || total < min_time)) {
        if (cudaEventRecord(e0, s) != cudaSuccess) goto fail_event;
        for (int b = 0; b < batch; b++)
            if (!launch()) goto done;
        if (cudaEventRecord(e1, s) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            goto fail_event;
        t[n++] = (double)ms * 1e-3 / batch;
        total += (double)ms * 1e-3;
    }
    *st = ll_hw_stats_of(t, n);
    ok = true;
    goto done;
fail_event:
    hw_fail(why, whycap, __FILE__, __LINE__, "cudaEvent record/synchronize/elapsed", cudaGetErrorString(cudaGetLastError()));
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return ok;
}

// Host-clock timing of op() (which must itself wait for the GPU where that matters): `per` operations per
// repetition; the recorded time is per repetition.
template <class F>
static bool hw_time_host(F op, double min_time, int min_reps, ll_hw_stats *st) {
    double t[HW_MAX_REPS], total = 0;
    int n = 0;
    if (!op()) return false; // warm-up
    while (n < HW_MAX_REPS && (n < min_reps || total < min_time)) {
        double t0 = hw_now();
        if (!op()) return false;
        t[n] = hw_now() - t0;
        total += t[n++];
    }
    *st = ll_hw_stats_of(t, n);
    return true;
}

#endif
