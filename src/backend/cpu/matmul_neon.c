// matmul_neon.c — aarch64 NEON kernels for F32/F16/BF16 weights: exact conversion to f32 (fcvtl for fp16,
// << 16 for bf16) and f32 FMA. fp16 arithmetic (FEAT_FP16 FMLA/FMLAL) is not used on purpose: it would round
// the activations to fp16 (11-bit mantissa) and break the f32-accumulation accuracy ll_matmul promises.
#include "backend/cpu/matmul_impl.h"

#include "core/half.h"

#if !defined(LL_PORTABLE) && defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))

// 4 weights from element i of row w, as f32. ty is a constant after inlining.
INLINE float32x4_t n_load(uint32_t ty, const uint8_t *w, int i) {
    if (ty == LL_TYPE_F32) return vld1q_f32((const float *)w + i);
    uint16x4_t h = vld1_u16((const uint16_t *)w + i);
    if (ty == LL_TYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

// The last n < 4 weights, through a small buffer.
static float32x4_t n_load_tail(uint32_t ty, const uint8_t *w, int i, int n) {
    float b[4] = {0, 0, 0, 0};
    for (int q = 0; q < n; q++) {
        uint16_t h;
        if (ty == LL_TYPE_F32) memcpy(&b[q], w + (size_t)(i + q) * 4, 4);
        else {
            memcpy(&h, w + (size_t)(i + q) * 2, 2);
            b[q] = ty == LL_TYPE_F16 ? ll_fp16_to_fp32(h) : ll_bf16_to_fp32(h);
        }
    }
    return vld1q_f32(b);
}

static float32x4_t n_x_tail(const float *x, int n) {
    float b[4] = {0, 0, 0, 0};
    memcpy(b, x, (size_t)n * sizeof(float));
    return vld1q_f32(b);
}

// Dot form tile: R rows x T tokens, two accumulator banks (even/odd 4-element steps) for latency.
INLINE void n_dot_tile(uint32_t ty, const uint8_t *w, size_t ws, const float *x, size_t xs, int n, float *y,
                       size_t ldy, const int R, const int T) {
    float32x4_t a0[4][2], a1[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) a0[r][t] = a1[r][t] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t w0[4], w1[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            w0[r] = n_load(ty, w + r * ws, i);
            w1[r] = n_load(ty, w + r * ws, i + 4);
        }
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            float32x4_t x0 = vld1q_f32(x + t * xs + i), x1 = vld1q_f32(x + t * xs + i + 4);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                a0[r][t] = vfmaq_f32(a0[r][t], w0[r], x0);
                a1[r][t] = vfmaq_f32(a1[r][t], w1[r], x1);
            }
        }
    }
    for (; i < n; i += 4) {
        int rem = n - i;
        float32x4_t wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = rem >= 4 ? n_load(ty, w + r * ws, i) : n_load_tail(ty, w + r * ws, i, rem);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            float32x4_t xv = rem >= 4 ? vld1q_f32(x + t * xs + i) : n_x_tail(x + t * xs + i, rem);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) a0[r][t] = vfmaq_f32(a0[r][t], wv[r], xv);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) y[t * ldy + r] = vaddvq_f32(vaddq_f32(a0[r][t], a1[r][t]));
}

INLINE void n_dot(uint32_t ty, const ll_mm_job *j, int r0, int r1) {
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
                if (two) n_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 2);
                else n_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 4, 1);
            }
            for (; o < re; o++) {
                const uint8_t *w = j->W + (size_t)o * ws;
                if (two) n_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 2);
                else n_dot_tile(ty, w, ws, xt, xs, j->n_in, yt + o, ldy, 1, 1);
            }
        }
    }
}

// 4x4 transpose: v[r] lane c -> v[c] lane r.
INLINE void n_transpose4(float32x4_t v[4]) {
    float32x4_t t0 = vtrn1q_f32(v[0], v[1]), t1 = vtrn2q_f32(v[0], v[1]); // a0 b0 a2 b2 | a1 b1 a3 b3
    float32x4_t t2 = vtrn1q_f32(v[2], v[3]), t3 = vtrn2q_f32(v[2], v[3]);
    v[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    v[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    v[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    v[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

#define N_MR 16
#define N_NR 6

INLINE void n_pack(uint32_t ty, const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst) {
    for (int h = 0; h < N_MR / 4; h++) {
        int valid = nr - h * 4 < 0 ? 0 : nr - h * 4 > 4 ? 4 : nr - h * 4;
        const uint8_t *w = j->W + (size_t)(r0 + h * 4) * j->row_bytes;
        for (int k = 0; k < kc; k += 4) {
            int kn = kc - k < 4 ? kc - k : 4;
            float32x4_t v[4];
            for (int r = 0; r < 4; r++) {
                const uint8_t *wr = w + (size_t)r * j->row_bytes;
                v[r] = r >= valid ? vdupq_n_f32(0) : kn == 4 ? n_load(ty, wr, k0 + k) : n_load_tail(ty, wr, k0 + k, kn);
            }
            n_transpose4(v);
            for (int q = 0; q < kn; q++) vst1q_f32(dst + (size_t)(k + q) * N_MR + h * 4, v[q]);
        }
    }
}

// 16 rows x NT tokens: 4 x NT accumulators (<= 24 of the 32 q registers).
INLINE void n_kern_n(const float *wp, const float *xp, int kc, float *y, size_t ldy, int nrows, bool accumulate,
                     const int NT) {
    float32x4_t c[N_NR][4];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++)
        for (int q = 0; q < 4; q++) c[t][q] = vdupq_n_f32(0);
    for (int k = 0; k < kc; k++) {
        const float *wk = wp + (size_t)k * N_MR, *xk = xp + (size_t)k * N_NR;
        float32x4_t w0 = vld1q_f32(wk), w1 = vld1q_f32(wk + 4), w2 = vld1q_f32(wk + 8), w3 = vld1q_f32(wk + 12);
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            float32x4_t b = vld1q_dup_f32(xk + t);
            c[t][0] = vfmaq_f32(c[t][0], w0, b);
            c[t][1] = vfmaq_f32(c[t][1], w1, b);
            c[t][2] = vfmaq_f32(c[t][2], w2, b);
            c[t][3] = vfmaq_f32(c[t][3], w3, b);
        }
    }
    for (int t = 0; t < NT; t++) {
        float *p = y + (size_t)t * ldy, b[16];
        for (int q = 0; q < 4; q++) vst1q_f32(b + 4 * q, c[t][q]);
        for (int r = 0; r < nrows; r++) p[r] = accumulate ? p[r] + b[r] : b[r];
    }
}

static void n_kern(const float *wp, const float *xp, int kc, int nt, float *y, size_t ldy, int nrows, bool acc) {
    switch (nt) {
    case 1: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 1); break;
    case 2: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 2); break;
    case 3: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 3); break;
    case 4: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 4); break;
    case 5: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 5); break;
    default: n_kern_n(wp, xp, kc, y, ldy, nrows, acc, 6); break;
    }
}

#define N_TYPE(name, ty)                                                                                      \
    static void n_dot_##name(const ll_mm_job *j, int r0, int r1, void *tsp) { (void)tsp; n_dot(ty, j, r0, r1); } \
    static void n_pack_##name(const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst, float *tmp) {  \
        (void)tmp;                                                                                             \
        n_pack(ty, j, r0, nr, k0, kc, dst);                                                                    \
    }
N_TYPE(f32, LL_TYPE_F32)
N_TYPE(f16, LL_TYPE_F16)
N_TYPE(bf16, LL_TYPE_BF16)

static const ll_mm_ops k_ops[] = {
    {LL_TYPE_F32, "neon", 4, n_dot_f32, NULL, NULL, NULL, n_pack_f32, n_kern, N_MR, N_NR},
    {LL_TYPE_F16, "neon", 4, n_dot_f16, NULL, NULL, NULL, n_pack_f16, n_kern, N_MR, N_NR},
    {LL_TYPE_BF16, "neon", 4, n_dot_bf16, NULL, NULL, NULL, n_pack_bf16, n_kern, N_MR, N_NR},
};
#endif

const ll_mm_ops *ll_mm_find_neon(uint32_t wtype) {
#if !defined(LL_PORTABLE) && defined(__aarch64__) && defined(__ARM_NEON)
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (k_ops[i].wtype == wtype) return &k_ops[i];
#endif
    (void)wtype;
    return NULL;
}
