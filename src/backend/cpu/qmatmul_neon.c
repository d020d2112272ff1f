// qmatmul_neon.c — aarch64 NEON kernels for quantized weights (sdot, the dotprod extension): signed int8 dots per
// 32 elements, scales in f32; tiles of 4 rows x up to 4 tokens so each weight block serves several tokens.
#include "backend/cpu/matmul_q.h"

#if !defined(LL_PORTABLE) && defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))
#define QN_NT 4

static inline size_t al64(size_t n) { return ll_align_up(n, 64); }

INLINE float fp16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

// ---- legacy blocks of 32 (Q8_0, Q4_0, Q5_0; activations Q8_0): weights as signed int8, sdot against x -------------
INLINE void leg_unpack(uint32_t ty, const uint8_t *blk, int8x16_t *w0, int8x16_t *w1, float *d) {
    *d = fp16_at(blk);
    if (ty == LL_TYPE_Q8_0) {
        *w0 = vld1q_s8((const int8_t *)blk + 2);
        *w1 = vld1q_s8((const int8_t *)blk + 18);
        return;
    }
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const uint8_t *qs = blk + (ty == LL_TYPE_Q4_0 ? 2 : 6);
    uint8x16_t q = vld1q_u8(qs), lo = vandq_u8(q, m4), hi = vshrq_n_u8(q, 4);
    if (ty == LL_TYPE_Q4_0) {
        *w0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
        *w1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
        return;
    }
    // Q5_0: bit j of the little-endian qh is bit 4 of element j.
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bm = vld1q_u8(bit), b16 = vdupq_n_u8(0x10);
    const uint8_t *qh = blk + 2;
    uint8x16_t h0 = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bm), b16);
    uint8x16_t h1 = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bm), b16);
    *w0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h0)), vdupq_n_s8(16));
    *w1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h1)), vdupq_n_s8(16));
}

static inline size_t leg_bytes(uint32_t ty) { return ty == LL_TYPE_Q8_0 ? 34 : ty == LL_TYPE_Q4_0 ? 18 : 22; }

INLINE void leg_tile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = leg_bytes(ty);
    const uint8_t *w = j->W + (size_t)o * j->row_bytes, *xq[QN_NT];
    const float *xd[QN_NT];
    for (int t = 0; t < T; t++) {
        xq[t] = (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride + 2;
        xd[t] = (const float *)((const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride + al64((size_t)nb * 34));
    }
    float32x4_t acc[4][QN_NT];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0);
    for (int b = 0; b < nb; b++) {
        int8x16_t w0[4], w1[4];
        float dw[4];
        for (int r = 0; r < R; r++) leg_unpack(ty, w + (size_t)r * j->row_bytes + (size_t)b * bs, &w0[r], &w1[r], &dw[r]);
        for (int t = 0; t < T; t++) {
            const int8_t *xp = (const int8_t *)xq[t] + (size_t)b * 34;
            int8x16_t x0 = vld1q_s8(xp), x1 = vld1q_s8(xp + 16);
            float dx = xd[t][b];
            for (int r = 0; r < R; r++) {
                int32x4_t dp = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(dp), dw[r] * dx);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = vaddvq_f32(acc[r][t]);
}

// ---- Q4_1 / Q5_1 (activations Q8_1): codes 0..31 as int8, sdot against x; the min term m * s (s: the
// activations' fp16 d * sum of codes) per block in scalar f32.
INLINE void leg1_unpack(uint32_t ty, const uint8_t *blk, int8x16_t *w0, int8x16_t *w1, float *d, float *m) {
    *d = fp16_at(blk);
    *m = fp16_at(blk + 2);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    uint8x16_t q = vld1q_u8(blk + (ty == LL_TYPE_Q4_1 ? 4 : 8)), lo = vandq_u8(q, m4), hi = vshrq_n_u8(q, 4);
    if (ty == LL_TYPE_Q5_1) {
        static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t bm = vld1q_u8(bit), b16 = vdupq_n_u8(0x10);
        const uint8_t *qh = blk + 4;
        lo = vorrq_u8(lo, vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bm), b16));
        hi = vorrq_u8(hi, vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bm), b16));
    }
    *w0 = vreinterpretq_s8_u8(lo);
    *w1 = vreinterpretq_s8_u8(hi);
}

INLINE void leg1_tile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = ty == LL_TYPE_Q4_1 ? 20 : 24;
    const uint8_t *w = j->W + (size_t)o * j->row_bytes, *xq[QN_NT];
    const float *xd[QN_NT], *xs[QN_NT];
    for (int t = 0; t < T; t++) {
        const uint8_t *row = (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride;
        xq[t] = row + 4;
        xd[t] = (const float *)(row + al64((size_t)nb * 36));
        xs[t] = xd[t] + nb;
    }
    float32x4_t acc[4][QN_NT];
    float mn[4][QN_NT] = {{0}};
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0);
    for (int b = 0; b < nb; b++) {
        int8x16_t w0[4], w1[4];
        float dw[4], mw[4];
        for (int r = 0; r < R; r++) leg1_unpack(ty, w + (size_t)r * j->row_bytes + (size_t)b * bs, &w0[r], &w1[r], &dw[r], &mw[r]);
        for (int t = 0; t < T; t++) {
            const int8_t *xp = (const int8_t *)xq[t] + (size_t)b * 36;
            int8x16_t x0 = vld1q_s8(xp), x1 = vld1q_s8(xp + 16);
            float dx = xd[t][b], sx = xs[t][b];
            for (int r = 0; r < R; r++) {
                int32x4_t dp = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(dp), dw[r] * dx);
                mn[r][t] += mw[r] * sx;
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++)
            j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = vaddvq_f32(acc[r][t]) + mn[r][t];
}

// ---- K-quants (Q4_K, Q5_K, Q6_K; activations Q8_K) ----------------------------------------------------------------
// Each row's super-block is unpacked to int8 codes (Q6_K: q - 32, signed) with 16 int32 scales (one per 16
// elements); Q4_K/Q5_K's min term -dmin sum_j m_j (bsum_2j + bsum_2j+1) is summed apart in float.
typedef struct kq_row {
    int8_t q[LL_QK_K];
    int32_t sc[16];
    int16_t m[8];
    float d, dmin;
} kq_row;

static void kq_unpack(uint32_t ty, const uint8_t *blk, kq_row *k) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    if (ty == LL_TYPE_Q6_K) {
        const ll_block_q6_K *b = (const ll_block_q6_K *)blk;
        const uint8x16_t m2 = vdupq_n_u8(3);
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 2; c++) { // 16 of the 32 columns l at a time
                uint8x16_t l0 = vld1q_u8(b->ql + 64 * h + 16 * c), l1 = vld1q_u8(b->ql + 64 * h + 32 + 16 * c);
                uint8x16_t qh = vld1q_u8(b->qh + 32 * h + 16 * c);
                uint8x16_t v[4] = {
                    vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(qh, m2), 4)),
                    vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m2), 4)),
                    vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m2), 4)),
                    vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)),
                };
                for (int p = 0; p < 4; p++)
                    vst1q_s8(k->q + 128 * h + 32 * p + 16 * c, vsubq_s8(vreinterpretq_s8_u8(v[p]), vdupq_n_s8(32)));
            }
        for (int i = 0; i < 16; i++) k->sc[i] = b->scales[i];
        k->d = fp16_at((const uint8_t *)&b->d);
        k->dmin = 0;
        return;
    }
    const ll_block_q4_K *b = (const ll_block_q4_K *)blk;
    const uint8_t *qs = ty == LL_TYPE_Q5_K ? ((const ll_block_q5_K *)blk)->qs : b->qs;
    for (int q = 0; q < 8; q++) {
        uint8_t sc, m;
        ll_quant_k4_scale_min(q, b->scales, &sc, &m);
        k->sc[2 * q] = k->sc[2 * q + 1] = sc;
        k->m[q] = m;
    }
    const uint8x16_t one = vdupq_n_u8(1);
    for (int g = 0; g < 4; g++)
        for (int c = 0; c < 2; c++) {
            uint8x16_t q = vld1q_u8(qs + 32 * g + 16 * c), lo = vandq_u8(q, m4), hi = vshrq_n_u8(q, 4);
            if (ty == LL_TYPE_Q5_K) {
                uint8x16_t qh = vld1q_u8(((const ll_block_q5_K *)blk)->qh + 16 * c);
                lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * g))), one), 4));
                hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * g - 1))), one), 4));
            }
            vst1q_s8(k->q + 64 * g + 16 * c, vreinterpretq_s8_u8(lo));
            vst1q_s8(k->q + 64 * g + 32 + 16 * c, vreinterpretq_s8_u8(hi));
        }
    k->d = fp16_at((const uint8_t *)&b->d);
    k->dmin = fp16_at((const uint8_t *)&b->dmin);
}

INLINE void kq_tile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / LL_QK_K;
    const size_t bs = ll_type_get(ty)->size;
    const uint8_t *w = j->W + (size_t)o * j->row_bytes;
    const ll_block_q8_K *xb[QN_NT];
    for (int t = 0; t < T; t++) xb[t] = (const ll_block_q8_K *)((const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride);
    float32x4_t acc[4][QN_NT];
    float mins[4][QN_NT] = {{0}};
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0);
    kq_row k[4];
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < R; r++) kq_unpack(ty, w + (size_t)r * j->row_bytes + (size_t)b * bs, &k[r]);
        for (int t = 0; t < T; t++) {
            const ll_block_q8_K *x = &xb[t][b];
            int32x4_t is[4];
            for (int r = 0; r < R; r++) is[r] = vdupq_n_s32(0);
            for (int i = 0; i < 16; i++) {
                int8x16_t xv = vld1q_s8(x->qs + 16 * i);
                for (int r = 0; r < R; r++)
                    is[r] = vmlaq_n_s32(is[r], vdotq_s32(vdupq_n_s32(0), vld1q_s8(k[r].q + 16 * i), xv), k[r].sc[i]);
            }
            for (int r = 0; r < R; r++) {
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(is[r]), k[r].d * x->d);
                if (ty != LL_TYPE_Q6_K) {
                    int summ = 0;
                    for (int q = 0; q < 8; q++) summ += k[r].m[q] * (x->bsums[2 * q] + x->bsums[2 * q + 1]);
                    mins[r][t] -= k[r].dmin * x->d * (float)summ;
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++)
            j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = vaddvq_f32(acc[r][t]) + mins[r][t];
}

// ---- driver and table ----------------------------------------------------------------------------------------------
typedef void (*qn_tile_fn)(const ll_mm_job *j, int o, int t0);

// Rows [r0, r1) in groups of 16 x token tiles of QN_NT x 4-row tiles (t4[n - 1] / t1[n - 1]: n tokens).
static void q_rows(const ll_mm_job *j, int r0, int r1, const qn_tile_fn *t4, const qn_tile_fn *t1) {
    for (int rb = r0; rb < r1; rb += 16) {
        int re = rb + 16 < r1 ? rb + 16 : r1;
        for (int t0 = 0; t0 < j->n_tokens; t0 += QN_NT) {
            int tn = j->n_tokens - t0 < QN_NT ? j->n_tokens - t0 : QN_NT;
            int o = rb;
            for (; o + 4 <= re; o += 4) t4[tn - 1](j, o, t0);
            for (; o < re; o++) t1[tn - 1](j, o, t0);
        }
    }
}

#define QN_FN(tile, name, ty, R, T)                                                                            \
    static void name##_##R##x##T(const ll_mm_job *j, int o, int t0) { tile(ty, j, o, t0, R, T); }
#define QN_FNS(tile, name, ty, R)                                                                              \
    QN_FN(tile, name, ty, R, 1) QN_FN(tile, name, ty, R, 2) QN_FN(tile, name, ty, R, 3) QN_FN(tile, name, ty, R, 4)
#define QN_LIST(name, R) {name##_##R##x1, name##_##R##x2, name##_##R##x3, name##_##R##x4}
#define QN_TYPE(tile, name, ty)                                                                                \
    QN_FNS(tile, name, ty, 4)                                                                                  \
    QN_FNS(tile, name, ty, 1)                                                                                  \
    static void name##_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                    \
        (void)tsp;                                                                                             \
        static const qn_tile_fn t4[QN_NT] = QN_LIST(name, 4), t1[QN_NT] = QN_LIST(name, 1);                    \
        q_rows(j, r0, r1, t4, t1);                                                                             \
    }                                                                                                          \
    static size_t name##_xrow(int n_in) { return ll_mmq_act_row(ty, n_in); }                                   \
    static void name##_xconv(const float *x, void *xa, int n_in) { ll_mmq_act_quantize(ty, x, xa, n_in); }

QN_TYPE(leg_tile, q8_0, LL_TYPE_Q8_0)
QN_TYPE(leg_tile, q4_0, LL_TYPE_Q4_0)
QN_TYPE(leg_tile, q5_0, LL_TYPE_Q5_0)
QN_TYPE(leg1_tile, q4_1, LL_TYPE_Q4_1)
QN_TYPE(leg1_tile, q5_1, LL_TYPE_Q5_1)
QN_TYPE(kq_tile, q4_K, LL_TYPE_Q4_K)
QN_TYPE(kq_tile, q5_K, LL_TYPE_Q5_K)
QN_TYPE(kq_tile, q6_K, LL_TYPE_Q6_K)

#define QN_ROW(name, ty) {ty, "neon", INT32_MAX, name##_dot, NULL, name##_xrow, name##_xconv, NULL, NULL, 0, 0}
static const ll_mm_ops k_qn_ops[] = {
    QN_ROW(q8_0, LL_TYPE_Q8_0), QN_ROW(q4_0, LL_TYPE_Q4_0), QN_ROW(q5_0, LL_TYPE_Q5_0),
    QN_ROW(q4_1, LL_TYPE_Q4_1), QN_ROW(q5_1, LL_TYPE_Q5_1),
    QN_ROW(q4_K, LL_TYPE_Q4_K), QN_ROW(q5_K, LL_TYPE_Q5_K), QN_ROW(q6_K, LL_TYPE_Q6_K),
};
#endif

const ll_mm_ops *ll_mmq_find_neon(uint32_t wtype) {
#if !defined(LL_PORTABLE) && defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
    for (size_t i = 0; i < sizeof k_qn_ops / sizeof k_qn_ops[0]; i++)
        if (k_qn_ops[i].wtype == wtype) return &k_qn_ops[i];
#endif
    (void)wtype;
    return NULL;
}
