// q_legacy.c — the block-of-32 formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1: dequantize, llama.cpp's reference
// quantizers (quantize_row_*_ref semantics, byte-identical), and scalar integer dots against Q8_0/Q8_1.
#include "types/quant.h"

// Byte identity with llama-quantize needs every float operation rounded as written: no fused multiply-add
// contraction (GCC's gnu modes and clang contract by default; -std=c11 does not). -ffast-math breaks it too.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>
#include <math.h>

#include "core/half.h"

#define FP16(h) ll_fp16_to_fp32(h)

// C's float -> int8 conversion (truncation toward zero), as the reference casts. The range check only turns
// a NaN (which would be undefined behaviour) into 0; for finite blocks the values are always in range.
static inline int trunc_small(float f) { return f > -128.0f && f < 128.0f ? (int)f : 0; }
// roundf (half away from zero) to an int8, as Q8_0/Q8_1 use; NaN -> 0.
static inline int8_t round_i8(float f) { return f > -128.5f && f < 127.5f ? (int8_t)roundf(f) : 0; }

// ---- Q4_0 ---------------------------------------------------------------------------------------------
// d = (signed value of largest magnitude) / -8, so that value maps to code 0 exactly; codes = trunc(x/d + 8.5).
void ll_quant_from_float_ref_q4_0(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK4_0 == 0);
    ll_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / LL_QK4_0; i++, src += LL_QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LL_QK4_0; j++)
            if (amax < fabsf(src[j])) { amax = fabsf(src[j]); max = src[j]; }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        for (int j = 0; j < LL_QK4_0 / 2; j++) {
            int q0 = trunc_small(src[j] * id + 8.5f), q1 = trunc_small(src[j + LL_QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void ll_quant_to_float_q4_0(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK4_0 == 0);
    const ll_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / LL_QK4_0; i++, dst += LL_QK4_0) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < LL_QK4_0 / 2; j++) {
            dst[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            dst[j + LL_QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// ---- Q4_1 ---------------------------------------------------------------------------------------------
// d = (max - min) / 15, m = min; codes = trunc((x - min)/d + 0.5), at most 15.
void ll_quant_from_float_ref_q4_1(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK4_1 == 0);
    ll_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / LL_QK4_1; i++, src += LL_QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < LL_QK4_1; j++) {
            if (src[j] < min) min = src[j];
            if (src[j] > max) max = src[j];
        }
        const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        y[i].m = ll_fp32_to_fp16(min);
        for (int j = 0; j < LL_QK4_1 / 2; j++) {
            int q0 = trunc_small((src[j] - min) * id + 0.5f), q1 = trunc_small((src[j + LL_QK4_1 / 2] - min) * id + 0.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void ll_quant_to_float_q4_1(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK4_1 == 0);
    const ll_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / LL_QK4_1; i++, dst += LL_QK4_1) {
        const float d = FP16(x[i].d), m = FP16(x[i].m);
        for (int j = 0; j < LL_QK4_1 / 2; j++) {
            dst[j] = (x[i].qs[j] & 0xF) * d + m;
            dst[j + LL_QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

// ---- Q5_0 / Q5_1: the fifth bit of element j is bit j of qh (little-endian u32) ----------------------------
static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void store_u32le(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

// d = (signed value of largest magnitude) / -16; codes = trunc(x/d + 16.5), at most 31.
void ll_quant_from_float_ref_q5_0(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK5_0 == 0);
    ll_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / LL_QK5_0; i++, src += LL_QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LL_QK5_0; j++)
            if (amax < fabsf(src[j])) { amax = fabsf(src[j]); max = src[j]; }
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < LL_QK5_0 / 2; j++) {
            int q0 = trunc_small(src[j] * id + 16.5f), q1 = trunc_small(src[j + LL_QK5_0 / 2] * id + 16.5f);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + LL_QK5_0 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

void ll_quant_to_float_q5_0(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK5_0 == 0);
    const ll_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / LL_QK5_0; i++, dst += LL_QK5_0) {
        const float d = FP16(x[i].d);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < LL_QK5_0 / 2; j++) {
            int q0 = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (q0 - 16) * d;
            dst[j + LL_QK5_0 / 2] = (q1 - 16) * d;
        }
    }
}

// d = (max - min) / 31, m = min; codes = trunc((x - min)/d + 0.5).
void ll_quant_from_float_ref_q5_1(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK5_1 == 0);
    ll_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / LL_QK5_1; i++, src += LL_QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < LL_QK5_1; j++) {
            if (src[j] < min) min = src[j];
            if (src[j] > max) max = src[j];
        }
        const float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        y[i].m = ll_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < LL_QK5_1 / 2; j++) {
            int q0 = trunc_small((src[j] - min) * id + 0.5f) & 0xFF;
            int q1 = trunc_small((src[j + LL_QK5_1 / 2] - min) * id + 0.5f) & 0xFF;
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + LL_QK5_1 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

void ll_quant_to_float_q5_1(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK5_1 == 0);
    const ll_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / LL_QK5_1; i++, dst += LL_QK5_1) {
        const float d = FP16(x[i].d), m = FP16(x[i].m);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < LL_QK5_1 / 2; j++) {
            int q0 = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = q0 * d + m;
            dst[j + LL_QK5_1 / 2] = q1 * d + m;
        }
    }
}

// ---- Q8_0 / Q8_1: d = amax / 127, codes = roundf(x / d) ---------------------------------------------------
void ll_quant_from_float_ref_q8_0(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK8_0 == 0);
    ll_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / LL_QK8_0; i++, src += LL_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < LL_QK8_0; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        for (int j = 0; j < LL_QK8_0; j++) y[i].qs[j] = round_i8(src[j] * id);
    }
}

void ll_quant_to_float_q8_0(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK8_0 == 0);
    const ll_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / LL_QK8_0; i++, dst += LL_QK8_0) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < LL_QK8_0; j++) dst[j] = x[i].qs[j] * d;
    }
}

// As Q8_0, plus s = fp16(d * sum of the codes).
void ll_quant_from_float_ref_q8_1(const float *src, void *dst, int64_t n) {
    LL_ASSERT(n % LL_QK8_1 == 0);
    ll_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / LL_QK8_1; i++, src += LL_QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < LL_QK8_1; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = ll_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < LL_QK8_1; j++) {
            y[i].qs[j] = round_i8(src[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = ll_fp32_to_fp16((float)sum * d);
    }
}

void ll_quant_to_float_q8_1(const void *src, float *dst, int64_t n) {
    LL_ASSERT(n % LL_QK8_1 == 0);
    const ll_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / LL_QK8_1; i++, dst += LL_QK8_1) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < LL_QK8_1; j++) dst[j] = x[i].qs[j] * d;
    }
}

// ---- dots: integer sums per block, one float scale multiply per block ------------------------------------
void ll_quant_vec_dot_q4_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK8_0 == 0);
    const ll_block_q4_0 *x = vx;
    const ll_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n / LL_QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < LL_QK8_0 / 2; j++)
            isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + LL_QK8_0 / 2];
        sum += (float)isum * FP16(x[i].d) * FP16(y[i].d);
    }
    *s = sum;
}

// sum_j (d_x q_j + m_x) d_y r_j = d_x d_y sum(q r) + m_x (d_y sum r), and d_y sum r is y's s.
void ll_quant_vec_dot_q4_1_q8_1(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK8_1 == 0);
    const ll_block_q4_1 *x = vx;
    const ll_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n / LL_QK8_1; i++) {
        int isum = 0;
        for (int j = 0; j < LL_QK8_1 / 2; j++)
            isum += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + LL_QK8_1 / 2];
        sum += FP16(x[i].d) * FP16(y[i].d) * (float)isum + FP16(x[i].m) * FP16(y[i].s);
    }
    *s = sum;
}

void ll_quant_vec_dot_q5_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK8_0 == 0);
    const ll_block_q5_0 *x = vx;
    const ll_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n / LL_QK8_0; i++) {
        const uint32_t qh = load_u32le(x[i].qh);
        int isum = 0;
        for (int j = 0; j < LL_QK8_0 / 2; j++) {
            int q0 = ((x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - 16;
            int q1 = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + LL_QK8_0 / 2];
        }
        sum += (float)isum * FP16(x[i].d) * FP16(y[i].d);
    }
    *s = sum;
}

void ll_quant_vec_dot_q5_1_q8_1(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK8_1 == 0);
    const ll_block_q5_1 *x = vx;
    const ll_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n / LL_QK8_1; i++) {
        const uint32_t qh = load_u32le(x[i].qh);
        int isum = 0;
        for (int j = 0; j < LL_QK8_1 / 2; j++) {
            int q0 = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + LL_QK8_1 / 2];
        }
        sum += FP16(x[i].d) * FP16(y[i].d) * (float)isum + FP16(x[i].m) * FP16(y[i].s);
    }
    *s = sum;
}

void ll_quant_vec_dot_q8_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    LL_ASSERT(n % LL_QK8_0 == 0);
    const ll_block_q8_0 *x = vx;
    const ll_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n / LL_QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < LL_QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += (float)isum * FP16(x[i].d) * FP16(y[i].d);
    }
    *s = sum;
}
