// hw_int8.c — the lab's int8 GEMM (the engine has no int8 matmul yet): C (n x m, int32) = B (n x k) A^T with
// A (m x k) and B int8 in [-127, 127], on AVX-512 VNNI, AVX-VNNI, AVX2, NEON dot-product or scalar code.
#include "bench/hw_internal.h"

#include <string.h>

#if !defined(LL_PORTABLE) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define I8_AVX512VNNI 1
#define I8_VL 64
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__AVXVNNI__) && defined(__AVX2__)
#define I8_AVXVNNI 1
#define I8_VL 32
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__AVX2__)
#define I8_AVX2 1
#define I8_VL 32
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define I8_NEON 1
#define I8_VL 16
#include <arm_neon.h>
#else
#define I8_VL 0
#endif

// VNNI multiplies unsigned by signed bytes: B is shifted to u8 (B + 128) once per call and the shift is taken
// back out with the row sums of A: sum (b + 128) a = sum b a + 128 sum a.
#if defined(I8_AVX512VNNI) || defined(I8_AVXVNNI)
#define I8_OFFSET 1
#endif

#define I8_TB 32 // tokens per block: 32 rows of B (k bytes each) stay in L2 while every row quad of A passes

const char *ll_hw_i8_isa(void) {
#if defined(I8_AVX512VNNI)
    return "avx512-vnni (vpdpbusd, u8 x s8 with offset)";
#elif defined(I8_AVXVNNI)
    return "avx-vnni (vpdpbusd ymm, u8 x s8 with offset)";
#elif defined(I8_AVX2)
    return "avx2 (vpmaddubsw + vpmaddwd, sign trick)";
#elif defined(I8_NEON)
    return "neon dotprod (sdot)";
#else
    return "scalar";
#endif
}

void ll_hw_i8_gemm_ref(const int8_t *A, const int8_t *B, int32_t *C, int m, int n, int k) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            int64_t s = 0;
            for (int l = 0; l < k; l++) s += (int32_t)A[(size_t)i * k + l] * B[(size_t)j * k + l];
            C[(size_t)j * m + i] = (int32_t)s;
        }
}

size_t ll_hw_i8_wsize(int m, int n, int k, int n_threads) {
    (void)n_threads;
    return ll_align_up((size_t)n * (size_t)k, 64) + ll_align_up((size_t)m * sizeof(int32_t), 64);
}

typedef struct i8_job {
    const int8_t *A, *B;
    int32_t *C;
    int m, n, k, kv;   // kv: elements done in vectors (a multiple of I8_VL); the rest is scalar
    uint8_t *Bp;       // prepared B (n x k): B + 128 (offset ISAs) or |B| (AVX2), else unused
    int32_t *rowsum;   // offset ISAs: sum of A[i][0..kv)
} i8_job;

static void i8_prep(void *arg, int ith, int nth) {
    i8_job *j = arg;
    int64_t lo, hi;
#if defined(I8_OFFSET) || defined(I8_AVX2)
    ll_split_range(j->n, ith, nth, 1, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        for (int l = 0; l < j->k; l++) {
            int8_t b = j->B[t * j->k + l];
#if defined(I8_OFFSET)
            j->Bp[t * j->k + l] = (uint8_t)(b + 128);
#else
            j->Bp[t * j->k + l] = (uint8_t)(b < 0 ? -b : b);
#endif
        }
#endif
    ll_split_range(j->m, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        int32_t s = 0;
        for (int l = 0; l < j->kv; l++) s += j->A[i * j->k + l];
        j->rowsum[i] = s;
    }
}

#if I8_VL > 0
// R rows of A x T tokens, k in [0, kv) with vectors, the rest scalar: C[t][r] for r < R, t < T.
static inline __attribute__((always_inline)) void i8_tile(const i8_job *j, int i0, int t0, const int R, const int T) {
    const size_t k = (size_t)j->k;
#if defined(I8_AVX512VNNI)
    __m512i acc[4][4];
#elif defined(I8_AVXVNNI) || defined(I8_AVX2)
    __m256i acc[4][4];
#else
    int32x4_t acc[4][4];
#endif
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
#if defined(I8_AVX512VNNI)
            acc[r][t] = _mm512_setzero_si512();
#elif defined(I8_NEON)
            acc[r][t] = vdupq_n_s32(0);
#else
            acc[r][t] = _mm256_setzero_si256();
#endif
        }
    for (int l = 0; l < j->kv; l += I8_VL) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const size_t bo = (size_t)(t0 + t) * k + (size_t)l;
#if defined(I8_AVX512VNNI)
            __m512i b = _mm512_loadu_si512((const void *)(j->Bp + bo));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], b, _mm512_loadu_si512((const void *)(j->A + (size_t)(i0 + r) * k + l)));
#elif defined(I8_AVXVNNI)
            __m256i b = _mm256_loadu_si256((const __m256i *)(j->Bp + bo));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_dpbusd_avx_epi32(acc[r][t], b, _mm256_loadu_si256((const __m256i *)(j->A + (size_t)(i0 + r) * k + l)));
#elif defined(I8_AVX2)
            // |b| (u8) times a with b's sign (s8): pair sums <= 2 * 127 * 127, no 16-bit saturation.
            __m256i babs = _mm256_loadu_si256((const __m256i *)(j->Bp + bo));
            __m256i braw = _mm256_loadu_si256((const __m256i *)(j->B + bo)), ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(j->A + (size_t)(i0 + r) * k + l));
                __m256i p = _mm256_maddubs_epi16(babs, _mm256_sign_epi8(a, braw));
                acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(p, ones));
            }
#else
            int8x16_t b = vld1q_s8(j->B + bo);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = vdotq_s32(acc[r][t], b, vld1q_s8(j->A + (size_t)(i0 + r) * k + l));
#endif
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
#if defined(I8_AVX512VNNI)
            int32_t s = _mm512_reduce_add_epi32(acc[r][t]);
#elif defined(I8_NEON)
            int32_t s = vaddvq_s32(acc[r][t]);
#else
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc[r][t]), _mm256_extracti128_si256(acc[r][t], 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
            int32_t s = _mm_cvtsi128_si32(h);
#endif
#if defined(I8_OFFSET)
            s -= 128 * j->rowsum[i0 + r];
#endif
            const int8_t *a = j->A + (size_t)(i0 + r) * k, *b = j->B + (size_t)(t0 + t) * k;
            for (int l = j->kv; l < j->k; l++) s += (int32_t)a[l] * b[l];
            j->C[(size_t)(t0 + t) * (size_t)j->m + (size_t)(i0 + r)] = s;
        }
}
#endif

// Rows [lo, hi) of A against every token, token block by token block.
static void i8_rows(const i8_job *j, int lo, int hi) {
    for (int tb = 0; tb < j->n; tb += I8_TB) {
        int te = tb + I8_TB < j->n ? tb + I8_TB : j->n;
        for (int i = lo; i < hi; i += 4) {
            int R = hi - i < 4 ? hi - i : 4;
            for (int t = tb; t < te; t += 4) {
                int T = te - t < 4 ? te - t : 4;
#if I8_VL > 0
                if (R == 4 && T == 4) i8_tile(j, i, t, 4, 4);
                else
                    for (int r = 0; r < R; r++)
                        for (int u = 0; u < T; u++) i8_tile(j, i + r, t + u, 1, 1);
#else
                for (int r = 0; r < R; r++)
                    for (int u = 0; u < T; u++) {
                        const int8_t *a = j->A + (size_t)(i + r) * j->k, *b = j->B + (size_t)(t + u) * j->k;
                        int32_t s = 0;
                        for (int l = 0; l < j->k; l++) s += (int32_t)a[l] * b[l];
                        j->C[(size_t)(t + u) * (size_t)j->m + (size_t)(i + r)] = s;
                    }
#endif
            }
        }
    }
}

static void i8_worker(void *arg, int ith, int nth) {
    const i8_job *j = arg;
    int64_t lo, hi;
    ll_split_range(j->m, ith, nth, 4, &lo, &hi);
    if (lo < hi) i8_rows(j, (int)lo, (int)hi);
}

void ll_hw_i8_gemm(ll_pool *pool, const int8_t *A, const int8_t *B, int32_t *C, int m, int n, int k, void *wsp) {
    LL_ASSERT(m >= 0 && n >= 0 && k >= 0 && wsp != NULL);
    i8_job j = {A, B, C, m, n, k, 0, wsp, NULL};
    j.rowsum = (int32_t *)((uint8_t *)wsp + ll_align_up((size_t)n * (size_t)k, 64));
#if I8_VL > 0
    j.kv = k / I8_VL * I8_VL;
#endif
    ll_pool_run(pool, i8_prep, &j);
    ll_pool_run(pool, i8_worker, &j);
}
