// q_kquants.c — the K-quant super-block formats Q4_K, Q5_K, Q6_K and the Q8_K activation format: dequantize,
// llama.cpp's reference quantizers without imatrix (byte-identical to llama-quantize), scalar dots vs Q8_K.
#include "types/quant.h"

// Byte identity with llama-quantize needs every float operation rounded as written: no fused multiply-add
// contraction (GCC's gnu modes and clang contract by default; -std=c11 does not). -ffast-math breaks it too.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>

#include "core/half.h"

#define FP16(h) ll_fp16_to_fp32(h)
#define GROUP_MAX_EPS 1e-15f // below this a Q6_K group is treated as all zero (as ggml)

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// Affine fit of one sub-block, x ~ scale * L + min with L in [0, nmax] and min <= 0 (ggml's make_qkx2_quants).
// Start from the plain min/max grid, then try nstep+1 grids with nmax + rmin + rdelta*is levels over the
// range; for each, solve the weighted least-squares (scale, min) for those L and keep the fit with the
// smallest weighted squared error. Returns scale; *neg_min = -min. Float arithmetic and its order follow
// ggml exactly, since every intermediate rounding decides bytes.
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                        float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(ll_quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    uint8_t Laux[32];
    LL_ASSERT(n <= 32);
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(ll_quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best) {
            for (int i = 0; i < n; i++) L[i] = Laux[i];
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

// Symmetric fit x ~ scale * (L - nmax), L - nmax in [-nmax, nmax-1], weights x^2 (ggml's make_qx_quants with
// rmse_type 1 and no imatrix): start at -nmax/max, then try the 18 grids -(nmax + 0.1*is)/max, is = ±1..±9,
// keeping the one maximising sumlx^2/suml2 (the least-squares fit quality). Returns scale.
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(ll_quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(ll_quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(ll_quant_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// ---- Q4_K / Q5_K (shared: 8 sub-blocks of 32, 6-bit scales and mins) --------------------------------------
// Fits each sub-block (weights av_x + |x|, av_x = rms of the sub-block), quantizes the 8 scales and 8 mins to
// 6 bits against their maxima (d = max_scale/63, dmin = max_min/63), packs them, then requantizes every
// element against the rounded scale/min. L gets one code per element (0..nmax).
static void k4_fit_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d, uint16_t *dmin,
                         uint8_t scales[LL_K_SCALE_SIZE], uint8_t L[LL_QK_K]) {
    float sc[LL_QK_K / 32], mn[LL_QK_K / 32], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < LL_QK_K / 32; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xb[l] * xb[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xb[l]);
        sc[j] = fit_affine(32, nmax, xb, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < LL_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)ll_quant_nearest_int(inv_scale * sc[j]);
        uint8_t lm = (uint8_t)ll_quant_nearest_int(inv_min * mn[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            scales[j] = ls;
            scales[j + 4] = lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = ll_fp32_to_fp16(max_scale / 63.f);
    *dmin = ll_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < LL_QK_K / 32; j++) {
        uint8_t s, m;
        ll_quant_k4_scale_min(j, scales, &s, &m);
        const float dj = FP16(*d) * s;
        if (!dj) continue; // keep the fit's codes (they dequantize to -dm either way)
        const float dm = FP16(*dmin) * m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(ll_quant_nearest_int((x[32 * j + l] + dm) / dj), 0, nmax);
    }
}

void ll_quant_from_float_ref_q4_K(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    ll_block_q4_K *y = dst;
    uint8_t L[LL_QK_K];
    for (int64_t i = 0; i < n / LL_QK_K; i++, src += LL_QK_K) {
        k4_fit_block(src, 15, -1.0f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * g + l] = (uint8_t)(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
    }
}

void ll_quant_from_float_ref_q5_K(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    ll_block_q5_K *y = dst;
    uint8_t L[LL_QK_K];
    for (int64_t i = 0; i < n / LL_QK_K; i++, src += LL_QK_K) {
        k4_fit_block(src, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
                y[i].qs[32 * g + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            }
        }
    }
}

void ll_quant_to_float_q4_K(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q4_K *x = src;
    for (int64_t i = 0; i < n / LL_QK_K; i++) {
        const float d = FP16(x[i].d), dmin = FP16(x[i].dmin);
        for (int g = 0; g < 4; g++) {
            uint8_t s, m;
            ll_quant_k4_scale_min(2 * g, x[i].scales, &s, &m);
            const float d1 = d * s, m1 = dmin * m;
            ll_quant_k4_scale_min(2 * g + 1, x[i].scales, &s, &m);
            const float d2 = d * s, m2 = dmin * m;
            const uint8_t *q = x[i].qs + 32 * g;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

void ll_quant_to_float_q5_K(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q5_K *x = src;
    for (int64_t i = 0; i < n / LL_QK_K; i++) {
        const float d = FP16(x[i].d), dmin = FP16(x[i].dmin);
        for (int g = 0; g < 4; g++) {
            uint8_t s, m;
            ll_quant_k4_scale_min(2 * g, x[i].scales, &s, &m);
            const float d1 = d * s, m1 = dmin * m;
            ll_quant_k4_scale_min(2 * g + 1, x[i].scales, &s, &m);
            const float d2 = d * s, m2 = dmin * m;
            const uint8_t *q = x[i].qs + 32 * g, *qh = x[i].qh;
            for (int l = 0; l < 32; l++) *dst++ = d1 * ((q[l] & 0xF) | (((qh[l] >> (2 * g)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * ((q[l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4)) - m2;
        }
    }
}

// ---- Q6_K ---------------------------------------------------------------------------------------------
// 16 symmetric sub-block fits (nmax 32); their scales quantized to int8 against the one of largest magnitude
// (d = -max_scale/128), then every element requantized to 6 bits against d * scale.
// Layout per 128 elements (two halves): ql[l] = q[l] | q[l+64] << 4, ql[l+32] = q[l+32] | q[l+96] << 4,
// qh[l] = high 2 bits of q[l], q[l+32], q[l+64], q[l+96] at bits 0, 2, 4, 6.
void ll_quant_from_float_ref_q6_K(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    ll_block_q6_K *y = dst;
    int8_t L[LL_QK_K];
    float scales[LL_QK_K / 16];
    for (int64_t i = 0; i < n / LL_QK_K; i++, src += LL_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < LL_QK_K / 16; ib++) {
            scales[ib] = fit_symmetric(16, 32, src + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = ll_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < LL_QK_K / 16; ib++) {
            int v = ll_quant_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < LL_QK_K / 16; j++) {
            const float d = FP16(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(clampi(ll_quant_nearest_int(src[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

// The 6-bit code of element e (0..255) of a Q6_K block, 0..63.
static inline int q6_code(const ll_block_q6_K *b, int e) {
    const int h = e / 128, r = e % 128, l = r % 32, part = r / 32; // part 0..3 = +0, +32, +64, +96
    const uint8_t lo = b->ql[64 * h + l + 32 * (part & 1)];
    return ((part < 2 ? lo & 0xF : lo >> 4)) | (((b->qh[32 * h + l] >> (2 * part)) & 3) << 4);
}

void ll_quant_to_float_q6_K(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q6_K *x = src;
    for (int64_t i = 0; i < n / LL_QK_K; i++, dst += LL_QK_K) {
        const float d = FP16(x[i].d);
        for (int e = 0; e < LL_QK_K; e++) dst[e] = d * x[i].scales[e / 16] * (q6_code(&x[i], e) - 32);
    }
}

// ---- Q8_K (activations) -------------------------------------------------------------------------------------
// d = -max/127 where max is the signed value of largest magnitude (so it maps to -127); float d, no fp16.
void ll_quant_from_float_ref_q8_K(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    ll_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / LL_QK_K; i++, src += LL_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < LL_QK_K; j++)
            if (fabsf(src[j]) > amax) { amax = fabsf(src[j]); max = src[j]; }
        memset(&y[i], 0, sizeof y[i]);
        if (!amax) continue;
        const float iscale = -127.f / max;
        for (int j = 0; j < LL_QK_K; j++) {
            int v = ll_quant_nearest_int(iscale * src[j]);
            y[i].qs[j] = (int8_t)clampi(v, -128, 127);
        }
        for (int j = 0; j < LL_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void ll_quant_to_float_q8_K(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q8_K *x = src;
    for (int64_t i = 0; i < n / LL_QK_K; i++, dst += LL_QK_K)
        for (int j = 0; j < LL_QK_K; j++) dst[j] = x[i].d * x[i].qs[j];
}

// ---- dots against Q8_K ------------------------------------------------------------------------------------
// Q4_K/Q5_K: sum = d_y * (d * sum_j sc_j * sum(q r) - dmin * sum_j m_j * sum(r)); sum(r) per 32 comes from
// the two bsums of that sub-block.
static float k4_block_dot(float d, float dmin, const uint8_t *scales, const int *q, const ll_block_q8_K *y) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < LL_QK_K / 32; j++) {
        uint8_t s, m;
        ll_quant_k4_scale_min(j, scales, &s, &m);
        int isum = 0;
        for (int l = 0; l < 32; l++) isum += q[32 * j + l] * y->qs[32 * j + l];
        sumi += s * isum;
        summ += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return y->d * (d * (float)sumi - dmin * (float)summ);
}

void ll_quant_vec_dot_q4_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q4_K *x = vx;
    const ll_block_q8_K *y = vy;
    float sum = 0;
    int q[LL_QK_K];
    for (int i = 0; i < n / LL_QK_K; i++) {
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                q[64 * g + l] = x[i].qs[32 * g + l] & 0xF;
                q[64 * g + 32 + l] = x[i].qs[32 * g + l] >> 4;
            }
        sum += k4_block_dot(FP16(x[i].d), FP16(x[i].dmin), x[i].scales, q, &y[i]);
    }
    *s = sum;
}

void ll_quant_vec_dot_q5_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q5_K *x = vx;
    const ll_block_q8_K *y = vy;
    float sum = 0;
    int q[LL_QK_K];
    for (int i = 0; i < n / LL_QK_K; i++) {
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                q[64 * g + l] = (x[i].qs[32 * g + l] & 0xF) | (((x[i].qh[l] >> (2 * g)) & 1) << 4);
                q[64 * g + 32 + l] = (x[i].qs[32 * g + l] >> 4) | (((x[i].qh[l] >> (2 * g + 1)) & 1) << 4);
            }
        sum += k4_block_dot(FP16(x[i].d), FP16(x[i].dmin), x[i].scales, q, &y[i]);
    }
    *s = sum;
}

// Q6_K: sum = d * d_y * sum_ib scale_ib * sum((q - 32) r) over the 16 sub-blocks of 16.
void ll_quant_vec_dot_q6_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK_K == 0);
    const ll_block_q6_K *x = vx;
    const ll_block_q8_K *y = vy;
    float sum = 0;
    for (int i = 0; i < n / LL_QK_K; i++) {
        int sumi = 0;
        for (int ib = 0; ib < LL_QK_K / 16; ib++) {
            int isum = 0;
            for (int l = 0; l < 16; l++) isum += (q6_code(&x[i], 16 * ib + l) - 32) * y[i].qs[16 * ib + l];
            sumi += x[i].scales[ib] * isum;
        }
        sum += FP16(x[i].d) * y[i].d * (float)sumi;
    }
    *s = sum;
}
