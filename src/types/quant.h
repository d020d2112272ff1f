// quant.h — GGUF/ggml block quantization formats laid out byte for byte as ggml-common.h defines them, with
// the scalar references: dequantize, the llama-quantize reference quantizer (no imatrix) and integer dot.
#ifndef LL_QUANT_H
#define LL_QUANT_H

#include <stdint.h>
#include <string.h>

#include "types/types.h"

// Elements per block. fp16 fields are raw IEEE binary16 bits (core/half.h converts them).
#define LL_QK4_0 32
#define LL_QK4_1 32
#define LL_QK5_0 32
#define LL_QK5_1 32
#define LL_QK8_0 32
#define LL_QK8_1 32
#define LL_QK_K 256
#define LL_K_SCALE_SIZE 12 // Q4_K/Q5_K: 8 six-bit scales + 8 six-bit mins packed into 12 bytes

// ---- legacy formats: blocks of 32 --------------------------------------------------------------------
// x[j] = d * (q[j] - 8); qs[j] holds element j (low nibble) and element j+16 (high nibble).
typedef struct ll_block_q4_0 {
    uint16_t d;
    uint8_t qs[LL_QK4_0 / 2];
} ll_block_q4_0;
_Static_assert(sizeof(ll_block_q4_0) == 18, "Q4_0 block is 18 bytes");

// x[j] = d * q[j] + m.
typedef struct ll_block_q4_1 {
    uint16_t d, m;
    uint8_t qs[LL_QK4_1 / 2];
} ll_block_q4_1;
_Static_assert(sizeof(ll_block_q4_1) == 20, "Q4_1 block is 20 bytes");

// x[j] = d * (q[j] - 16); bit 4 of element j is bit j of the little-endian 32-bit qh.
typedef struct ll_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[LL_QK5_0 / 2];
} ll_block_q5_0;
_Static_assert(sizeof(ll_block_q5_0) == 22, "Q5_0 block is 22 bytes");

// x[j] = d * q[j] + m (5-bit q as in Q5_0).
typedef struct ll_block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[LL_QK5_1 / 2];
} ll_block_q5_1;
_Static_assert(sizeof(ll_block_q5_1) == 24, "Q5_1 block is 24 bytes");

// x[j] = d * qs[j].
typedef struct ll_block_q8_0 {
    uint16_t d;
    int8_t qs[LL_QK8_0];
} ll_block_q8_0;
_Static_assert(sizeof(ll_block_q8_0) == 34, "Q8_0 block is 34 bytes");

// Activations for Q4_1/Q5_1: as Q8_0 plus s = d * sum(qs) (fp16), which folds the weights' min into the dot.
typedef struct ll_block_q8_1 {
    uint16_t d, s;
    int8_t qs[LL_QK8_1];
} ll_block_q8_1;
_Static_assert(sizeof(ll_block_q8_1) == 36, "Q8_1 block is 36 bytes");

// ---- K-quants: super-blocks of 256 ---------------------------------------------------------------------
// 8 sub-blocks of 32: x = d*sc[j]*q - dmin*m[j], 6-bit sc/m packed in scales (see ll_quant_k4_scale_min).
// qs: 4 groups of 64 elements; byte l of group g holds element 64g+l (low) and 64g+32+l (high nibble).
typedef struct ll_block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[LL_K_SCALE_SIZE];
    uint8_t qs[LL_QK_K / 2];
} ll_block_q4_K;
_Static_assert(sizeof(ll_block_q4_K) == 144, "Q4_K block is 144 bytes");

// As Q4_K with a fifth bit: bit (2g) of qh[l] for element 64g+l, bit (2g+1) for element 64g+32+l.
typedef struct ll_block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[LL_K_SCALE_SIZE];
    uint8_t qh[LL_QK_K / 8];
    uint8_t qs[LL_QK_K / 2];
} ll_block_q5_K;
_Static_assert(sizeof(ll_block_q5_K) == 176, "Q5_K block is 176 bytes");

// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q 6 bits (low 4 in ql, high 2 in qh).
typedef struct ll_block_q6_K {
    uint8_t ql[LL_QK_K / 2];
    uint8_t qh[LL_QK_K / 4];
    int8_t scales[LL_QK_K / 16];
    uint16_t d;
} ll_block_q6_K;
_Static_assert(sizeof(ll_block_q6_K) == 210, "Q6_K block is 210 bytes");

// Activations for K-quants: float scale, 256 int8, and sums of each 16 quants (for the min terms).
typedef struct ll_block_q8_K {
    float d;
    int8_t qs[LL_QK_K];
    int16_t bsums[LL_QK_K / 16];
} ll_block_q8_K;
_Static_assert(sizeof(ll_block_q8_K) == 292, "Q8_K block is 292 bytes");

// ---- shared helpers ---------------------------------------------------------------------------------------
// ggml's rounding: add 1.5*2^23 and read the mantissa (round half to even); valid for |f| <= 4194303.
static inline int ll_quant_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// Scale and min of sub-block j (0..7) from the 12-byte Q4_K/Q5_K packing: j < 4 in the low 6 bits of
// bytes j and j+4; j >= 4 in the nibbles of byte j+4 with their top 2 bits in bits 6-7 of bytes j-4 / j.
static inline void ll_quant_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// ---- per-format functions (n = element count, a multiple of the block size) ----------------------------
// to_float: dequantize. from_float_ref: llama.cpp's reference quantizer, byte for byte.
// vec_dot: x blocks of the format, y blocks of its activation type (noted), *s = sum over n elements.
void ll_quant_to_float_q4_0(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q4_1(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q5_0(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q5_1(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q8_0(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q8_1(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q4_K(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q5_K(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q6_K(const void *src, float *dst, int64_t n);
void ll_quant_to_float_q8_K(const void *src, float *dst, int64_t n);

void ll_quant_from_float_ref_q4_0(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q4_1(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q5_0(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q5_1(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q8_0(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q8_1(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q4_K(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q5_K(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q6_K(const float *src, void *dst, int64_t n);
void ll_quant_from_float_ref_q8_K(const float *src, void *dst, int64_t n);

void ll_quant_vec_dot_q4_0_q8_0(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q4_1_q8_1(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q5_0_q8_0(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q5_1_q8_1(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q8_0_q8_0(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q4_K_q8_K(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q5_K_q8_K(int n, float *s, const void *x, const void *y);
void ll_quant_vec_dot_q6_K_q8_K(int n, float *s, const void *x, const void *y);

#endif
