// hw_peak.c — the CPU's measured fp32 ceiling: twelve independent FMA chains per thread in the widest vectors
// this build has (enough chains to cover FMA latency x pipes on current cores), on every thread at once.
#include "bench/hw_internal.h"

#if !defined(LL_PORTABLE) && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#define CHAINS 12

// acc = acc * m + b stays bounded (m < 1), so no overflow or denormal slows it. Returns flops done.
static double fma_chains(long iters, float *sink) {
#if !defined(LL_PORTABLE) && defined(__AVX512F__)
    __m512 a[CHAINS], m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_fmadd_ps(a[c], m, b);
    for (int c = 1; c < CHAINS; c++) a[0] = _mm512_add_ps(a[0], a[c]);
    *sink = _mm512_reduce_add_ps(a[0]);
    return (double)iters * CHAINS * 16 * 2;
#elif !defined(LL_PORTABLE) && defined(__AVX2__) && defined(__FMA__)
    __m256 a[CHAINS], m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    for (int c = 0; c < CHAINS; c++) a[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) a[c] = _mm256_fmadd_ps(a[c], m, b);
    for (int c = 1; c < CHAINS; c++) a[0] = _mm256_add_ps(a[0], a[c]);
    float t[8];
    _mm256_storeu_ps(t, a[0]);
    *sink = t[0] + t[7];
    return (double)iters * CHAINS * 8 * 2;
#elif !defined(LL_PORTABLE) && defined(__ARM_NEON)
    float32x4_t a[CHAINS], m = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-6f);
    for (int c = 0; c < CHAINS; c++) a[c] = vdupq_n_f32((float)c);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) a[c] = vfmaq_f32(b, a[c], m);
    for (int c = 1; c < CHAINS; c++) a[0] = vaddq_f32(a[0], a[c]);
    *sink = vaddvq_f32(a[0]);
    return (double)iters * CHAINS * 4 * 2;
#else
    float a[CHAINS];
    for (int c = 0; c < CHAINS; c++) a[c] = (float)c;
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) a[c] = a[c] * 0.999999f + 1e-6f;
    float s = 0;
    for (int c = 0; c < CHAINS; c++) s += a[c];
    *sink = s;
    return (double)iters * CHAINS * 2;
#endif
}

typedef struct peak_job {
    long iters;
    float sink[64];
    double flops[64];
} peak_job;

static void peak_thread(void *arg, int ith, int nth) {
    peak_job *j = arg;
    double f = fma_chains(j->iters, &j->sink[ith & 63]);
    if (ith < 64) j->flops[ith] = f;
}

double ll_hw_cpu_fma_peak(ll_pool *pool, double seconds) {
    peak_job j = {.iters = 20000};
    int nth = ll_pool_size(pool);
    // Calibrate on one burst, then three bursts of about seconds/3 each; the best is the ceiling.
    double t0 = ll_time_s();
    ll_pool_run(pool, peak_thread, &j);
    double dt = ll_time_s() - t0;
    double scale = dt > 0 ? seconds / 3 / dt : 1;
    if (scale > 1) j.iters = (long)(j.iters * scale);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        t0 = ll_time_s();
        ll_pool_run(pool, peak_thread, &j);
        dt = ll_time_s() - t0;
        double total = 0;
        for (int i = 0; i < nth && i < 64; i++) total += j.flops[i];
        if (dt > 0 && total / dt > best) best = total / dt;
    }
    return best / 1e9;
}
