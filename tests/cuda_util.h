// cuda_util.h — shared by the CUDA test programs (test_cuda, test_cuda_seq): whether a GPU answers, NMSE checks,
// random inputs, both backends prepared for the same weights, device copies in and out, the KV cache in F32 or F16.
#ifndef LL_TESTS_CUDA_UTIL_H
#define LL_TESTS_CUDA_UTIL_H

#include "testutil.h"

#include <float.h>

#include "backend/backend.h"
#include "core/half.h"
#include "types/quant.h"
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

// Tolerances (NMSE = ||got - ref||^2 / ||ref||^2):
#define TOL_F32 1e-10   // f32 ops, matvecs (f32 math, only the summation order differs)
#define TOL_GEMM_F16 1e-5 // prefill GEMM on f16 operands (activations rounded to f16: ~2^-11 relative each)
#define TOL_GEMM_BF16 1e-4 // prefill GEMM on bf16 operands (~2^-8 relative each)
// Quantized matvecs take x as int8 codes (blocks of 32, matvec_q8.cu): their reference uses x through the same
// quantization (ll_backend_cuda_x8_roundtrip, host emulation, bit-exact), so TOL_F32 holds for them too.

static char g_why[256];

static inline bool gpu_present(void) {
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    return ll_backend_cuda_device_count(g_why, sizeof g_why) > 0;
#else
    snprintf(g_why, sizeof g_why, "built without CUDA");
    return false;
#endif
}

#define NEED_GPU()                                                                                             \
    if (!gpu_present()) TU_SKIP("%s: CUDA tests skipped", g_why)

static inline double nmse(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

static inline void check_close(const char *what, const float *got, const float *ref, size_t n, double tol) {
    int bad = tu_count_nonfinite(got, n);
    double e = nmse(got, ref, n);
    if (bad || !(e <= tol)) fail_msg("%s: NMSE %.3g (tolerance %.1g), %d non-finite of %zu", what, e, tol, bad, n);
}

static inline float *rand_floats(size_t n, uint64_t *s, float scale) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = tu_rng_uniform(s) * scale;
    return x;
}

// Both backends, prepared for the same weights.
typedef struct duo {
    ll_backend *cpu, *gpu;
} duo;

static inline duo duo_init(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx) {
    duo d = {0};
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    ll_error err = {0};
    d.cpu = ll_backend_cpu_init(2, &err);
    d.gpu = ll_backend_cuda_init(1, &err);
    if (!d.cpu || !d.gpu) fail_msg("backend init: %s", err.message);
    if (d.cpu->ops->prepare(d.cpu, ws, n_ws, max_tok, max_ctx, &err) != LL_OK) fail_msg("cpu prepare: %s", err.message);
    if (d.gpu->ops->prepare(d.gpu, ws, n_ws, max_tok, max_ctx, &err) != LL_OK)
        fail_msg("cuda prepare: %s", err.message);
#endif
    return d;
}

static inline void duo_free(duo *d) {
    ll_backend_free(d->cpu);
    ll_backend_free(d->gpu);
}

// Device copy of n host floats (n may be 0: poison-sized buffers).
static inline float *to_dev(ll_backend *b, const float *x, size_t n) {
    ll_error err = {0};
    float *p = b->ops->alloc(b, n * sizeof *p, &err);
    if (!p) fail_msg("alloc: %s", err.message);
    b->ops->upload(b, p, x, n * sizeof *p);
    return p;
}

static inline float *poisoned_dev(ll_backend *b, size_t n) {
    float *h = malloc(n * sizeof *h);
    tu_poison(h, n);
    float *p = to_dev(b, h, n);
    free(h);
    return p;
}

static inline float *from_dev(ll_backend *b, const float *p, size_t n) {
    float *h = malloc(n * sizeof *h);
    tu_poison(h, n);
    b->ops->download(b, h, p, n * sizeof *h);
    b->ops->synchronize(b);
    return h;
}

static inline ll_weight vec_weight(const float *data, int n, const char *name) {
    return (ll_weight){data, LL_TYPE_F32, n, 1, name, false};
}

// n values (n % 32 == 0) as Q8_0 blocks by the reference quantizer (what the device's stores write); a block whose
// first value is NaN (a row never to be read) gets a NaN scale, so that it reads back as NaN.
static inline uint8_t *q8_blocks(const float *x, size_t n) {
    uint8_t *q = malloc(n / 32 * 34);
    ll_quant_from_float_ref_q8_0(x, q, (int64_t)n);
    for (size_t i = 0; i < n / 32; i++)
        if (isnan(x[i * 32])) q[i * 34] = 0x00, q[i * 34 + 1] = 0x7e;
    return q;
}

// A KV cache of n values (rows of kvd) on the device, of type F32, F16 or Q8_0, from host floats (F16:
// ll_fp32_to_fp16, round to nearest even; Q8_0: q8_blocks; as the device stores).
static inline void *kv_to_dev(ll_backend *b, const float *x, size_t n, uint32_t type) {
    ll_error err = {0};
    const size_t bytes = type == LL_TYPE_Q8_0 ? n / 32 * 34 : n * (type == LL_TYPE_F16 ? 2 : 4);
    void *p = b->ops->alloc(b, bytes, &err);
    if (!p) fail_msg("alloc: %s", err.message);
    if (type == LL_TYPE_Q8_0) {
        uint8_t *q = q8_blocks(x, n);
        b->ops->upload(b, p, q, bytes);
        b->ops->synchronize(b);
        free(q);
    } else if (type == LL_TYPE_F16) {
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++) h[i] = ll_fp32_to_fp16(x[i]);
        b->ops->upload(b, p, h, n * 2);
        b->ops->synchronize(b);
        free(h);
    } else {
        b->ops->upload(b, p, x, n * 4);
    }
    return p;
}

// The cache back as floats.
static inline float *kv_from_dev(ll_backend *b, const void *p, size_t n, uint32_t type) {
    if (type == LL_TYPE_Q8_0) {
        uint8_t *q = malloc(n / 32 * 34);
        b->ops->download(b, q, p, n / 32 * 34);
        b->ops->synchronize(b);
        float *f = malloc(n * sizeof *f);
        ll_quant_to_float_q8_0(q, f, (int64_t)n);
        free(q);
        return f;
    }
    if (type != LL_TYPE_F16) return from_dev(b, (const float *)p, n);
    uint16_t *h = malloc(n * 2);
    b->ops->download(b, h, p, n * 2);
    b->ops->synchronize(b);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = ll_fp16_to_fp32(h[i]);
    free(h);
    return f;
}

// x as an F16 cache holds it: each value rounded to f16 and back (in place).
static inline void round_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = ll_fp16_to_fp32(ll_fp32_to_fp16(x[i]));
}

// x as a cache of type holds it (in place): F16 rounded, Q8_0 through its blocks (q8_blocks; quantizing the result
// again gives the same blocks), F32 as is.
static inline void round_kv(float *x, size_t n, uint32_t type) {
    if (type == LL_TYPE_F16) round_f16(x, n);
    if (type != LL_TYPE_Q8_0) return;
    uint8_t *q = q8_blocks(x, n);
    ll_quant_to_float_q8_0(q, x, (int64_t)n);
    free(q);
}

#endif
