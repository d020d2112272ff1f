// hw_cuda_gemm.cu — dense GEMM through cuBLASLt in every precision the tensor cores take (fp32, tf32, fp16,
// bf16, fp8 e4m3, int8). Each configuration is checked against a double-precision host reference first.
#include "bench/hw_cuda_util.h"

#include <stdlib.h>

#include "core/half.h"

#define GEMM_SAMPLES 64
#define GEMM_WORKSPACE (64u << 20) // bytes cuBLASLt may use (Hopper kernels want up to 32 MiB)

typedef enum { G_FP32, G_TF32, G_FP16, G_BF16, G_FP8, G_INT8, G_N } gemm_kind;

typedef struct gemm_desc {
    const char *name;
    cudaDataType_t ab, c;           // input and output types
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int ab_bytes, c_bytes;
    int min_cc;                     // major*10 + minor
    double tol;                     // |C - ref| / sum|A B|: the rounding bound of the inputs/output, see below
} gemm_desc;

// Tolerances: fp32 accumulation over k terms; tf32 rounds inputs to 10-bit mantissas (2^-11 each, two per
// product); fp16 output rounds to 2^-11 of |C| <= sum|AB|; bf16 output to 2^-8; fp8 inputs are exact (the
// generator draws e4m3 values) and the output is bf16; int8 is exact.
static const gemm_desc k_gemm[G_N] = {
    {"fp32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, 4, 4, 50, 1e-5},
    {"tf32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F, 4, 4, 80, 4e-3},
    {"fp16", CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F, 2, 2, 70, 1.5e-3},
    {"bf16", CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, 2, 2, 80, 8e-3},
    {"fp8_e4m3", CUDA_R_8F_E4M3, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, 1, 2, 89, 8e-3},
    {"int8", CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, 1, 4, 75, 0},
};

// e4m3 (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no infinities) -> float.
static float e4m3_to_f32(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

// The e4m3 byte of q/8 for integer q in [-16, 16]: all exactly representable (at most 3 mantissa bits).
static uint8_t e4m3_of_eighths(int q) {
    uint8_t sign = q < 0 ? 0x80 : 0;
    int a = q < 0 ? -q : q;
    if (a == 0) return sign;
    int e = 0;
    while ((a >> e) >= 2) e++; // a in [2^e, 2^(e+1))
    int m = e >= 3 ? (a >> (e - 3)) & 7 : (a << (3 - e)) & 7;
    return (uint8_t)(sign | ((e - 3 + 7) << 3) | m); // value a/8 = 2^(e-3) * (1 + m/8)
}

static uint64_t rng_next(uint64_t *s) { // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Fill a host array of n elements of kind g with random values; keep their exact float values in f.
static void gen_inputs(gemm_kind g, void *h, float *f, size_t n, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next(&s);
        float u = (float)((r >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        switch (g) {
        case G_FP32: case G_TF32: ((float *)h)[i] = u; f[i] = u; break;
        case G_FP16: ((uint16_t *)h)[i] = ll_fp32_to_fp16(u); f[i] = ll_fp16_to_fp32(((uint16_t *)h)[i]); break;
        case G_BF16: ((uint16_t *)h)[i] = ll_fp32_to_bf16(u); f[i] = ll_bf16_to_fp32(((uint16_t *)h)[i]); break;
        case G_FP8: ((uint8_t *)h)[i] = e4m3_of_eighths((int)(r % 33) - 16); f[i] = e4m3_to_f32(((uint8_t *)h)[i]); break;
        default: ((int8_t *)h)[i] = (int8_t)((int)(r % 255) - 127); f[i] = (float)((int8_t *)h)[i]; break;
        }
    }
}

static double c_value(gemm_kind g, const void *c, size_t at) {
    switch (g) {
    case G_FP16: return ll_fp16_to_fp32(((const uint16_t *)c)[at]);
    case G_BF16: case G_FP8: return ll_bf16_to_fp32(((const uint16_t *)c)[at]);
    case G_INT8: return (double)((const int32_t *)c)[at];
    default: return ((const float *)c)[at];
    }
}

typedef struct gemm_res {
    const hw_blas *B;
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
    void *a, *b, *c, *ws;
    void *ha, *hb, *hc;
    float *fa, *fb;
    cudaStream_t s;
} gemm_res;

static void gemm_res_free(gemm_res *r) {
    if (!r->B) return;
    if (r->pref) r->B->p_cublasLtMatmulPreferenceDestroy(r->pref);
    if (r->la) r->B->p_cublasLtMatrixLayoutDestroy(r->la);
    if (r->lb) r->B->p_cublasLtMatrixLayoutDestroy(r->lb);
    if (r->lc) r->B->p_cublasLtMatrixLayoutDestroy(r->lc);
    if (r->op) r->B->p_cublasLtMatmulDescDestroy(r->op);
    cudaFree(r->a);
    cudaFree(r->b);
    cudaFree(r->c);
    free(r->ha);
    free(r->hb);
    free(r->hc);
    free(r->fa);
    free(r->fb);
    r->op = NULL; r->la = r->lb = r->lc = NULL; r->pref = NULL;
    r->a = r->b = r->c = NULL; r->ha = r->hb = r->hc = NULL; r->fa = r->fb = NULL;
    cudaGetLastError();
}

// Largest error over GEMM_SAMPLES entries of the host copy of C (two corners, the rest random), against the
// product of the exact input values in double; |C - ref| / sum |a b|.
static double gemm_error(gemm_kind g, const gemm_res *r, size_t n) {
    uint64_t rs = 77;
    double worst = 0;
    for (int t = 0; t < GEMM_SAMPLES; t++) {
        size_t i = t == 0 ? 0 : t == 1 ? n - 1 : rng_next(&rs) % n, j = t == 0 ? 0 : t == 1 ? n - 1 : rng_next(&rs) % n;
        double ref = 0, mag = 0;
        for (size_t l = 0; l < n; l++) {
            double p = (double)r->fa[l + i * n] * (double)r->fb[l + j * n];
            ref += p;
            mag += fabs(p);
        }
        double e = fabs(c_value(g, r->hc, i + j * n) - ref) / (mag > 1e-30 ? mag : 1e-30);
        if (!isnan(worst) && !(e <= worst)) worst = e; // a NaN stays: a failure
    }
    return worst;
}

// One size and kind. Column-major: A is stored k x m (lda = k) and used transposed, B k x n (ldb = k),
// C m x n (ldc = m): C[i + j m] = sum_l A[l + i k] B[l + j k]. Returns false on a CUDA error; a configuration
// this device or library cannot run is recorded as skipped (t.reps = 0) instead.
static bool gemm_one(int dev, gemm_kind g, int size, int cc, double min_time, gemm_res *r, ll_hw_meas *m, char *why,
                     size_t whycap) {
    const gemm_desc *d = &k_gemm[g];
    size_t n = (size_t)size, nab = n * n;
    memset(m, 0, sizeof *m);
    snprintf(m->kind, sizeof m->kind, "gemm");
    snprintf(m->dtype, sizeof m->dtype, "%s", d->name);
    snprintf(m->impl, sizeof m->impl, "cuBLASLt (TN, %s compute)", g == G_INT8 ? "int32" : g == G_TF32 ? "tf32" : "fp32");
    m->m = m->n = m->k = size;
    m->work = 2.0 * (double)n * n * n;
    m->err = NAN;
    m->tol = d->tol;
    m->validated = 0;
    if (cc < d->min_cc) {
        m->validated = -1;
        hw_note(m, "skipped: needs compute capability %d.%d", d->min_cc / 10, d->min_cc % 10);
        return true;
    }
    r->ha = malloc(nab * d->ab_bytes);
    r->hb = malloc(nab * d->ab_bytes);
    r->hc = malloc(nab * d->c_bytes);
    r->fa = (float *)malloc(nab * sizeof(float));
    r->fb = (float *)malloc(nab * sizeof(float));
    if (!r->ha || !r->hb || !r->hc || !r->fa || !r->fb) return hw_fail(why, whycap, __FILE__, __LINE__, "malloc", "out of host memory");
    gen_inputs(g, r->ha, r->fa, nab, 1000 + (uint64_t)size);
    gen_inputs(g, r->hb, r->fb, nab, 2000 + (uint64_t)size);
    CK(cudaMalloc(&r->a, nab * d->ab_bytes));
    CK(cudaMalloc(&r->b, nab * d->ab_bytes));
    CK(cudaMalloc(&r->c, nab * d->c_bytes));
    CK(cudaMemcpy(r->a, r->ha, nab * d->ab_bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(r->b, r->hb, nab * d->ab_bytes, cudaMemcpyHostToDevice));
    CK(cudaMemset(r->c, 0xff, nab * d->c_bytes)); // poison: a kernel that skips an output is caught

    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKB(r->B->p_cublasLtMatmulDescCreate(&r->op, d->compute, d->scale));
    CKB(r->B->p_cublasLtMatmulDescSetAttribute(r->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKB(r->B->p_cublasLtMatmulDescSetAttribute(r->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CKB(r->B->p_cublasLtMatrixLayoutCreate(&r->la, d->ab, n, n, n));
    CKB(r->B->p_cublasLtMatrixLayoutCreate(&r->lb, d->ab, n, n, n));
    CKB(r->B->p_cublasLtMatrixLayoutCreate(&r->lc, d->c, n, n, n));
    CKB(r->B->p_cublasLtMatmulPreferenceCreate(&r->pref));
    size_t wsb = GEMM_WORKSPACE;
    CKB(r->B->p_cublasLtMatmulPreferenceSetAttribute(r->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    // cuBLASLt's first heuristic is often not its fastest at large sizes: validate and briefly time up to
    // GEMM_ALGOS candidates, then time the fastest valid one properly.
    enum { GEMM_ALGOS = 8 };
    cublasLtMatmulHeuristicResult_t heur[GEMM_ALGOS];
    int found = 0;
    cublasStatus_t hs = r->B->p_cublasLtMatmulAlgoGetHeuristic(r->lt, r->op, r->la, r->lb, r->lc, r->lc, r->pref,
                                                              GEMM_ALGOS, heur, &found);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
        m->validated = -1;
        hw_note(m, "skipped: cuBLASLt has no algorithm for %s at %d (%s)", d->name, size,
                hs != CUBLAS_STATUS_SUCCESS ? hw_blas_status(hs) : "none returned");
        return true;
    }
    float fone = 1.0f, fzero = 0.0f;
    int32_t ione = 1, izero = 0;
    const void *alpha = g == G_INT8 ? (const void *)&ione : (const void *)&fone;
    const void *beta = g == G_INT8 ? (const void *)&izero : (const void *)&fzero;
    int pick = 0;
    auto launch = [&]() -> bool {
        CKB(r->B->p_cublasLtMatmul(r->lt, r->op, alpha, r->a, r->la, r->b, r->lb, beta, r->c, r->lc, r->c, r->lc,
                                   &heur[pick].algo, r->ws, GEMM_WORKSPACE, r->s));
        return true;
    };
    // Validate every candidate's first product before any timing; keep the fastest valid one.
    int best = -1;
    double best_t = 0, worst_err = 0;
    for (int a = 0; a < found; a++) {
        pick = a;
        CK(cudaMemsetAsync(r->c, 0xff, nab * d->c_bytes, r->s));
        if (!launch()) return false;
        CK(cudaStreamSynchronize(r->s));
        CK(cudaMemcpy(r->hc, r->c, nab * d->c_bytes, cudaMemcpyDeviceToHost));
        double e = gemm_error(g, r, n);
        if (!(e <= d->tol)) { worst_err = e; continue; }
        ll_hw_stats quick;
        if (!hw_time_gpu(launch, r->s, 0.0, &quick, why, whycap)) return false;
        if (best < 0 || quick.median < best_t) { best = a; best_t = quick.median; m->err = e; }
    }
    if (best < 0) {
        m->err = worst_err;
        m->validated = 0;
        hw_note(m, "validation failed for all %d algorithms: error %.3g > tolerance %.3g; not timed", found, worst_err, d->tol);
        return true;
    }
    m->validated = 1;
    pick = best;
    (void)dev;
    // Products of 0.5 ms and more: the peers' method (median of 20 after warm-up, BENCHMARKS.md), which keeps
    // the clocks of a burst; shorter ones in batches (event resolution), for min_time seconds.
    if (best_t >= 5e-4) {
        hw_note(m, "fastest of %d cuBLASLt algorithms; median of 20 launches after 5 warm-ups (BENCHMARKS.md's "
                   "method)", found);
        return hw_time_gpu_reps(launch, r->s, 20, &m->t, why, whycap);
    }
    hw_note(m, "fastest of %d cuBLASLt algorithms", found);
    return hw_time_gpu(launch, r->s, min_time, &m->t, why, whycap);
}

static bool gemm_all(int dev, const int *sizes, int n_sizes, double min_time, gemm_res *r, ll_hw_meas *out, int cap,
                     int *n, char *why, size_t whycap) {
    cudaDeviceProp p;
    CK(cudaSetDevice(dev));
    CK(cudaGetDeviceProperties(&p, dev));
    int cc = p.major * 10 + p.minor;
    if (!(r->B = hw_blas_get(why, whycap))) return false;
    CK(cudaStreamCreateWithFlags(&r->s, cudaStreamNonBlocking));
    CKB(r->B->p_cublasLtCreate(&r->lt));
    CK(cudaMalloc(&r->ws, GEMM_WORKSPACE));
    for (int si = 0; si < n_sizes; si++)
        for (int g = 0; g < G_N && *n < cap; g++) {
            bool ok = gemm_one(dev, (gemm_kind)g, sizes[si], cc, min_time, r, &out[*n], why, whycap);
            gemm_res_free(r);
            if (!ok) return false;
            (*n)++;
        }
    return true;
}

extern "C" int ll_hw_cuda_gemm(int dev, const int *sizes, int n_sizes, double min_time, ll_hw_meas *out, int cap,
                               char *why, size_t whycap) {
    gemm_res r;
    memset(&r, 0, sizeof r);
    int n = 0;
    bool ok = gemm_all(dev, sizes, n_sizes, min_time, &r, out, cap, &n, why, whycap);
    gemm_res_free(&r);
    cudaFree(r.ws);
    if (r.lt) r.B->p_cublasLtDestroy(r.lt);
    if (r.s) cudaStreamDestroy(r.s);
    cudaGetLastError();
    return ok ? n : -1;
}
