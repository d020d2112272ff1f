// matmul_x86.c — x86 kernels for F32/F16/BF16 weights: AVX-512 (F+BW+VL: masked tails, 32-row panels) or
// AVX2+FMA+F16C (16-row panels). Weights are converted exactly to f32 (vcvtph2ps, bf16 << 16); f32 FMA.
// BF16 does not use vdpbf16ps: it needs x rounded to bf16 (8-bit mantissa, ~2e-3 relative error per term) to
// be faster; an exact hi+lo split of x costs two of them per 32 products, no faster than f32 FMA.
#include "backend/cpu/matmul_impl.h"

#include "core/half.h"

#if !defined(LL_PORTABLE) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MM_AVX512 1
#elif !defined(LL_PORTABLE) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MM_AVX2 1
#endif

#if defined(MM_AVX512) || defined(MM_AVX2)
#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))
#endif

#if defined(MM_AVX512)
// ==== AVX-512 ================================================================================================

static inline size_t elt_size(uint32_t ty) { return ty == LL_TYPE_F32 ? 4 : 2; }

// 16 weights from element i of row w, as f32. ty is a constant after inlining.
INLINE __m512 z_load(uint32_t ty, const uint8_t *w, int i) {
    if (ty == LL_TYPE_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (ty == LL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Same for the lanes in m (others 0; masked-off elements are never touched, so no read past the row).
INLINE __m512 z_load_mask(uint32_t ty, const uint8_t *w, int i, __mmask16 m) {
    if (ty == LL_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (ty == LL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Dot form tile: R rows x T tokens of n elements. y[t * ldy + r] = sum_i W[r][i] * x[t][i], one zmm of
// partial sums per (row, token). ws: weight row stride (bytes), xs: x row stride (floats).
INLINE void z_dot_tile(uint32_t ty, const uint8_t *w, size_t ws, const float *x, size_t xs, int n, float *y,
                       size_t ldy, const int R, const int T) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) { // no software prefetch: the hardware's stream prefetch did better (Zen 4)
#pragma GCC unroll 2
        for (int h = 0; h < 32; h += 16) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) wv[r] = z_load(ty, w + r * ws, i + h);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m512 xv = _mm512_loadu_ps(x + t * xs + i + h);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
            }
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = z_load_mask(ty, w + r * ws, i, m);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + t * xs + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// One row against one token, four accumulators. Decode reads W one row after the other: a single
// sequential stream, which the hardware prefetcher follows better than four interleaved rows (measured).
INLINE float z_dot_row(uint32_t ty, const uint8_t *w, const float *x, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(z_load(ty, w, i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(z_load(ty, w, i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(z_load(ty, w, i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(z_load(ty, w, i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(z_load_mask(ty, w, i, m), _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

#define Z_HH_MIN 4096 // one-token F16 rows longer than this use an f16 x (z_dot)
static size_t z_hh_tsp(int n_in) { return (size_t)n_in * 2; }

// F16 rows against an f16 copy of x (xh), n elements.
INLINE float z_dot_row_hh(const uint8_t *w, const uint16_t *xh, int n) {
    const uint8_t *xb = (const uint8_t *)xh;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(z_load(LL_TYPE_F16, w, i), z_load(LL_TYPE_F16, xb, i), a0);
        a1 = _mm512_fmadd_ps(z_load(LL_TYPE_F16, w, i + 16), z_load(LL_TYPE_F16, xb, i + 16), a1);
        a2 = _mm512_fmadd_ps(z_load(LL_TYPE_F16, w, i + 32), z_load(LL_TYPE_F16, xb, i + 32), a2);
        a3 = _mm512_fmadd_ps(z_load(LL_TYPE_F16, w, i + 48), z_load(LL_TYPE_F16, xb, i + 48), a3);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(z_load_mask(LL_TYPE_F16, w, i, m), z_load_mask(LL_TYPE_F16, xb, i, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// x as f16 (round to nearest even) into xh; false when a finite |x| exceeds the f16 range (65504).
static bool z_x_to_f16(const float *x, uint16_t *xh, int n) {
    const __m512 lim = _mm512_set1_ps(65504.0f), inf = _mm512_set1_ps(INFINITY);
    __mmask16 over = 0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        over |= _mm512_cmp_ps_mask(a, lim, _CMP_GT_OQ) & _mm512_cmp_ps_mask(a, inf, _CMP_LT_OQ);
        _mm256_storeu_si256((__m256i *)(xh + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) {
        if (isfinite(x[i]) && fabsf(x[i]) > 65504.0f) over = 1;
        xh[i] = ll_fp32_to_fp16(x[i]);
    }
    return over == 0;
}

// Rows [r0, r1), all tokens: blocks of 16 rows (in L2 after the first token group) x groups of 4 tokens.
INLINE void z_dot(uint32_t ty, const ll_mm_job *j, int r0, int r1, void *tsp) {
    const float *x = j->xa;
    size_t xs = (size_t)j->n_in, ldy = (size_t)j->n_out, ws = j->row_bytes;
    // One token, F16 rows longer than Z_HH_MIN: x in f16 (as llama.cpp's F16 dot), half the L1 footprint. An f32
    // x of 8192 is all of Zen 4's 32 KB L1: the weight stream evicted it and every x load missed (F16 2048 x 8192
    // at one thread: 12 GB/s; with x confined to 8 KB: 25 GB/s; with this f16 x: 14-18 GB/s; column blocks of
    // 4096 instead measured slower: 8 KB runs per row). x past the f16 range keeps the f32 path.
    if (j->n_tokens == 1 && ty == LL_TYPE_F16 && j->n_in > Z_HH_MIN && z_x_to_f16(x, tsp, j->n_in)) {
        for (int o = r0; o < r1; o++) j->y[o] = z_dot_row_hh(j->W + (size_t)o * ws, tsp, j->n_in);
        return;
    }
    if (j->n_tokens == 1) {
        for (int o = r0; o < r1; o++) j->y[o] = z_dot_row(ty, j->W + (size_t)o * ws, x, j->n_in);
        return;
    }
    for (int rb = r0; rb < r1; rb += 16) {
        int re = rb + 16 < r1 ? rb + 16 : r1;
        for (int t0 = 0; t0 < j->n_tokens; t0 += 4) {
            int tn = j->n_tokens - t0 < 4 ? j->n_tokens - t0 : 4;
            const float *xt = x + (size_t)t0 * xs;
            float *yt = j->y + (size_t)t0 * ldy;
            int o = rb;
            for (; o + 4 <= re; o += 4) {
                const uint8_t *w = j->W + (size_t)o * ws;
                switch (tn) {
                case 1: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 1); break;
                case 2: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 2); break;
                case 3: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 3); break;
                default: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 4); break;
                }
            }
            for (; o < re; o++) {
                const uint8_t *w = j->W + (size_t)o * ws;
                switch (tn) {
                case 1: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 1); break;
                case 2: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 2); break;
                case 3: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 3); break;
                default: z_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 4); break;
                }
            }
        }
    }
}

// In-register 16x16 transpose: v[r] lane c -> v[c] lane r. Four rounds of 16 two-source shuffles.
INLINE void z_transpose16(__m512 v[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]); // per 128-bit lane: a0 b0 a1 b1
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]); // a2 b2 a3 b3
    }
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) { // per lane: column j of rows i..i+3 in v[i + j]
        v[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        v[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        v[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        v[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { // gather 128-bit lane L of v[j], v[4+j], v[8+j], v[12+j] -> column 4L + j
        __m512 a02 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0x88), a13 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0xdd);
        __m512 b02 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0x88), b13 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0xdd);
        t[j] = _mm512_shuffle_f32x4(a02, b02, 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(a13, b13, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(a02, b02, 0xdd);
        t[12 + j] = _mm512_shuffle_f32x4(a13, b13, 0xdd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) v[i] = t[i];
}

#define Z_MR 32
#define Z_NR 12
#define Z_PACK_PF 32 // pack: prefetch distance along each of the 16 rows it reads at once (elements)

// Panel of 32 rows x kc columns -> dst[k * 32 + r], 16x16 blocks converted then transposed in registers.
// Rows past nr load nothing (mask 0) and come out as zeros; columns past kc likewise and are not stored.
INLINE void z_pack(uint32_t ty, const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst) {
    for (int h = 0; h < Z_MR / 16; h++) {
        int valid = nr - h * 16 < 0 ? 0 : nr - h * 16 > 16 ? 16 : nr - h * 16;
        const uint8_t *w = j->W + (size_t)(r0 + h * 16) * j->row_bytes;
        size_t rb = j->row_bytes;
        for (int k = 0; k < kc; k += 16) {
            int kn = kc - k < 16 ? kc - k : 16;
            __mmask16 m = (__mmask16)((1u << kn) - 1);
            __m512 v[16];
            if (valid == 16 && kn == 16) {
                if (k + Z_PACK_PF < kc)
#pragma GCC unroll 16
                    for (int r = 0; r < 16; r++) _mm_prefetch((const char *)(w + (size_t)r * rb + (size_t)(k0 + k + Z_PACK_PF) * elt_size(ty)), _MM_HINT_T0);
#pragma GCC unroll 16
                for (int r = 0; r < 16; r++) v[r] = z_load(ty, w + (size_t)r * rb, k0 + k);
            } else {
#pragma GCC unroll 16
                for (int r = 0; r < 16; r++) v[r] = z_load_mask(ty, w + (size_t)(r < valid ? r : 0) * rb, k0 + k, r < valid ? m : 0);
            }
            z_transpose16(v);
            float *d = dst + (size_t)k * Z_MR + h * 16;
            if (kn == 16) {
#pragma GCC unroll 16
                for (int q = 0; q < 16; q++) _mm512_store_ps(d + (size_t)q * Z_MR, v[q]);
            } else {
                for (int q = 0; q < kn; q++) _mm512_store_ps(d + (size_t)q * Z_MR, v[q]);
            }
        }
    }
}

// 32 rows x NT tokens of accumulators (2 x NT zmm, <= 24): per k, two weight loads and NT broadcasts.
INLINE void z_kern_n(const float *wp, const float *xp, int kc, float *y, size_t ldy, int nrows, bool accumulate,
                     const int NT) {
    __m512 c0[Z_NR], c1[Z_NR];
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) c0[t] = c1[t] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(wp + (size_t)k * Z_MR), w1 = _mm512_load_ps(wp + (size_t)k * Z_MR + 16);
        const float *xk = xp + (size_t)k * Z_NR;
#pragma GCC unroll 12
        for (int t = 0; t < NT; t++) {
            __m512 b = _mm512_set1_ps(xk[t]);
            c0[t] = _mm512_fmadd_ps(w0, b, c0[t]);
            c1[t] = _mm512_fmadd_ps(w1, b, c1[t]);
        }
    }
    __mmask16 m0 = nrows >= 16 ? 0xffff : (__mmask16)((1u << nrows) - 1);
    __mmask16 m1 = nrows >= 32 ? 0xffff : nrows > 16 ? (__mmask16)((1u << (nrows - 16)) - 1) : 0;
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) {
        float *p = y + (size_t)t * ldy;
        if (accumulate) {
            c0[t] = _mm512_add_ps(c0[t], _mm512_maskz_loadu_ps(m0, p));
            c1[t] = _mm512_add_ps(c1[t], _mm512_maskz_loadu_ps(m1, p + 16));
        }
        _mm512_mask_storeu_ps(p, m0, c0[t]);
        _mm512_mask_storeu_ps(p + 16, m1, c1[t]);
    }
}

static void z_kern(const float *wp, const float *xp, int kc, int nt, float *y, size_t ldy, int nrows, bool acc) {
    switch (nt) {
    case 1: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 1); break;
    case 2: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 2); break;
    case 3: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 3); break;
    case 4: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 4); break;
    case 5: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 5); break;
    case 6: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 6); break;
    case 7: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 7); break;
    case 8: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 8); break;
    case 9: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 9); break;
    case 10: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 10); break;
    case 11: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 11); break;
    default: z_kern_n(wp, xp, kc, y, ldy, nrows, acc, 12); break;
    }
}

#define Z_TYPE(name, ty)                                                                                      \
    static void z_dot_##name(const ll_mm_job *j, int r0, int r1, void *tsp) { z_dot(ty, j, r0, r1, tsp); }     \
    static void z_pack_##name(const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst, float *tmp) {  \
        (void)tmp;                                                                                             \
        z_pack(ty, j, r0, nr, k0, kc, dst);                                                                    \
    }
Z_TYPE(f32, LL_TYPE_F32)
Z_TYPE(f16, LL_TYPE_F16)
Z_TYPE(bf16, LL_TYPE_BF16)

// dot_max_tokens: the dot form streams W once for 1-4 tokens and re-reads 16-row blocks from L2 for more;
// up to 16 tokens that still beats converting + transposing W into panels (EPYC, 4096x4096 F16, 1 thread:
// 16 tokens 7.5 ms dot vs 9.4 ms panels; about even at 32-48; panels ~13% ahead at 128).
#define Z_DOT_MAX 16
static const ll_mm_ops k_ops[] = {
    {LL_TYPE_F32, "avx512", Z_DOT_MAX, z_dot_f32, NULL, NULL, NULL, z_pack_f32, z_kern, Z_MR, Z_NR},
    {LL_TYPE_F16, "avx512", Z_DOT_MAX, z_dot_f16, z_hh_tsp, NULL, NULL, z_pack_f16, z_kern, Z_MR, Z_NR},
    {LL_TYPE_BF16, "avx512", Z_DOT_MAX, z_dot_bf16, NULL, NULL, NULL, z_pack_bf16, z_kern, Z_MR, Z_NR},
};

#elif defined(MM_AVX2)
// ==== AVX2 + FMA + F16C ======================================================================================

// 8 weights from element i of row w, as f32.
INLINE __m256 y_load(uint32_t ty, const uint8_t *w, int i) {
    if (ty == LL_TYPE_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (ty == LL_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// The last n < 8 weights (no AVX2 masked 16-bit loads: through a small buffer).
static __m256 y_load_tail(uint32_t ty, const uint8_t *w, int i, int n) {
    float b[8] = {0};
    for (int q = 0; q < n; q++) {
        uint16_t h;
        if (ty == LL_TYPE_F32) memcpy(&b[q], w + (size_t)(i + q) * 4, 4);
        else {
            memcpy(&h, w + (size_t)(i + q) * 2, 2);
            b[q] = ty == LL_TYPE_F16 ? ll_fp16_to_fp32(h) : ll_bf16_to_fp32(h);
        }
    }
    return _mm256_loadu_ps(b);
}

static __m256 y_x_tail(const float *x, int n) {
    float b[8] = {0};
    memcpy(b, x, (size_t)n * sizeof(float));
    return _mm256_loadu_ps(b);
}

static inline float y_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Dot form tile: R rows x T tokens (R * T <= 8 accumulators of the 16 ymm).
INLINE void y_dot_tile(uint32_t ty, const uint8_t *w, size_t ws, const float *x, size_t xs, int n, float *y,
                       size_t ldy, const int R, const int T) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
#pragma GCC unroll 2
        for (int h = 0; h < 16; h += 8) {
            __m256 wv[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) wv[r] = y_load(ty, w + r * ws, i + h);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                __m256 xv = _mm256_loadu_ps(x + t * xs + i + h);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
            }
        }
    }
    for (; i < n; i += 8) {
        int rem = n - i;
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = rem >= 8 ? y_load(ty, w + r * ws, i) : y_load_tail(ty, w + r * ws, i, rem);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            __m256 xv = rem >= 8 ? _mm256_loadu_ps(x + t * xs + i) : y_x_tail(x + t * xs + i, rem);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) y[t * ldy + r] = y_hsum(acc[r][t]);
}

INLINE void y_dot(uint32_t ty, const ll_mm_job *j, int r0, int r1) {
    const float *x = j->xa;
    size_t xs = (size_t)j->n_in, ldy = (size_t)j->n_out, ws = j->row_bytes;
    for (int rb = r0; rb < r1; rb += 16) {
        int re = rb + 16 < r1 ? rb + 16 : r1;
        for (int t0 = 0; t0 < j->n_tokens; t0 += 2) {
            bool two = j->n_tokens - t0 >= 2;
            const float *xt = x + (size_t)t0 * xs;
            float *yt = j->y + (size_t)t0 * ldy;
            int o = rb;
            for (; o + 4 <= re; o += 4) {
                const uint8_t *w = j->W + (size_t)o * ws;
                if (two) y_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 2);
                else y_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 1);
            }
            for (; o < re; o++) {
                const uint8_t *w = j->W + (size_t)o * ws;
                if (two) y_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 2);
                else y_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 1);
            }
        }
    }
}

// 8x8 transpose: v[r] lane c -> v[c] lane r.
INLINE void y_transpose8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        v[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

#define Y_MR 16
#define Y_NR 6

INLINE void y_pack(uint32_t ty, const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst) {
    for (int h = 0; h < Y_MR / 8; h++) {
        int valid = nr - h * 8 < 0 ? 0 : nr - h * 8 > 8 ? 8 : nr - h * 8;
        const uint8_t *w = j->W + (size_t)(r0 + h * 8) * j->row_bytes;
        for (int k = 0; k < kc; k += 8) {
            int kn = kc - k < 8 ? kc - k : 8;
            __m256 v[8];
            for (int r = 0; r < 8; r++) {
                const uint8_t *wr = w + (size_t)r * j->row_bytes;
                v[r] = r >= valid ? _mm256_setzero_ps() : kn == 8 ? y_load(ty, wr, k0 + k) : y_load_tail(ty, wr, k0 + k, kn);
            }
            y_transpose8(v);
            for (int q = 0; q < kn; q++) _mm256_store_ps(dst + (size_t)(k + q) * Y_MR + h * 8, v[q]);
        }
    }
}

INLINE void y_kern_n(const float *wp, const float *xp, int kc, float *y, size_t ldy, int nrows, bool accumulate,
                     const int NT) {
    __m256 c0[Y_NR], c1[Y_NR];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) c0[t] = c1[t] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(wp + (size_t)k * Y_MR), w1 = _mm256_load_ps(wp + (size_t)k * Y_MR + 8);
        const float *xk = xp + (size_t)k * Y_NR;
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            __m256 b = _mm256_broadcast_ss(xk + t);
            c0[t] = _mm256_fmadd_ps(w0, b, c0[t]);
            c1[t] = _mm256_fmadd_ps(w1, b, c1[t]);
        }
    }
    for (int t = 0; t < NT; t++) {
        float *p = y + (size_t)t * ldy, b[16];
        _mm256_storeu_ps(b, c0[t]);
        _mm256_storeu_ps(b + 8, c1[t]);
        for (int r = 0; r < nrows; r++) p[r] = accumulate ? p[r] + b[r] : b[r];
    }
}

static void y_kern(const float *wp, const float *xp, int kc, int nt, float *y, size_t ldy, int nrows, bool acc) {
    switch (nt) {
    case 1: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 1); break;
    case 2: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 2); break;
    case 3: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 3); break;
    case 4: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 4); break;
    case 5: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 5); break;
    default: y_kern_n(wp, xp, kc, y, ldy, nrows, acc, 6); break;
    }
}

#define Y_TYPE(name, ty)                                                                                      \
    static void y_dot_##name(const ll_mm_job *j, int r0, int r1, void *tsp) { (void)tsp; y_dot(ty, j, r0, r1); } \
    static void y_pack_##name(const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst, float *tmp) {  \
        (void)tmp;                                                                                             \
        y_pack(ty, j, r0, nr, k0, kc, dst);                                                                    \
    }
Y_TYPE(f32, LL_TYPE_F32)
Y_TYPE(f16, LL_TYPE_F16)
Y_TYPE(bf16, LL_TYPE_BF16)

static const ll_mm_ops k_ops[] = {
    {LL_TYPE_F32, "avx2", 4, y_dot_f32, NULL, NULL, NULL, y_pack_f32, y_kern, Y_MR, Y_NR},
    {LL_TYPE_F16, "avx2", 4, y_dot_f16, NULL, NULL, NULL, y_pack_f16, y_kern, Y_MR, Y_NR},
    {LL_TYPE_BF16, "avx2", 4, y_dot_bf16, NULL, NULL, NULL, y_pack_bf16, y_kern, Y_MR, Y_NR},
};
#endif

const ll_mm_ops *ll_mm_find_x86(uint32_t wtype) {
#if defined(MM_AVX512) || defined(MM_AVX2)
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (k_ops[i].wtype == wtype) return &k_ops[i];
#endif
    (void)wtype;
    return NULL;
}
