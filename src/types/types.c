// types.c — the traits table: one row per ggml type id. Block geometry for every known id (so any GGUF
// can be parsed and sized), conversion and dot functions for the types the engine computes with.
#include "types/types.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/half.h"
#include "types/quant.h"

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ll_fp16_to_fp32(s[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = ll_fp32_to_fp16(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ll_bf16_to_fp32(s[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = ll_fp32_to_bf16(src[i]);
}

// Geometry from ggml's block structs (ggml-common.h): e.g. Q4_K = 2*fp16 + 12 scale bytes + 128 nibble bytes.
static const ll_type_traits k_traits[LL_TYPE_COUNT] = {
    [LL_TYPE_F32] = {"F32", 1, 4, true, f32_to_float, f32_from_float, NULL, LL_TYPE_F32},
    [LL_TYPE_F16] = {"F16", 1, 2, true, f16_to_float, f16_from_float, NULL, LL_TYPE_F32},
    [LL_TYPE_Q4_0] = {"Q4_0", 32, 18, true, ll_quant_to_float_q4_0, ll_quant_from_float_ref_q4_0, ll_quant_vec_dot_q4_0_q8_0, LL_TYPE_Q8_0},
    [LL_TYPE_Q4_1] = {"Q4_1", 32, 20, true, ll_quant_to_float_q4_1, ll_quant_from_float_ref_q4_1, ll_quant_vec_dot_q4_1_q8_1, LL_TYPE_Q8_1},
    [LL_TYPE_Q5_0] = {"Q5_0", 32, 22, true, ll_quant_to_float_q5_0, ll_quant_from_float_ref_q5_0, ll_quant_vec_dot_q5_0_q8_0, LL_TYPE_Q8_0},
    [LL_TYPE_Q5_1] = {"Q5_1", 32, 24, true, ll_quant_to_float_q5_1, ll_quant_from_float_ref_q5_1, ll_quant_vec_dot_q5_1_q8_1, LL_TYPE_Q8_1},
    [LL_TYPE_Q8_0] = {"Q8_0", 32, 34, true, ll_quant_to_float_q8_0, ll_quant_from_float_ref_q8_0, ll_quant_vec_dot_q8_0_q8_0, LL_TYPE_Q8_0},
    [LL_TYPE_Q8_1] = {"Q8_1", 32, 36, false, ll_quant_to_float_q8_1, ll_quant_from_float_ref_q8_1, NULL, LL_TYPE_Q8_1},
    [LL_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [LL_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [LL_TYPE_Q4_K] = {"Q4_K", 256, 144, true, ll_quant_to_float_q4_K, ll_quant_from_float_ref_q4_K, ll_quant_vec_dot_q4_K_q8_K, LL_TYPE_Q8_K},
    [LL_TYPE_Q5_K] = {"Q5_K", 256, 176, true, ll_quant_to_float_q5_K, ll_quant_from_float_ref_q5_K, ll_quant_vec_dot_q5_K_q8_K, LL_TYPE_Q8_K},
    [LL_TYPE_Q6_K] = {"Q6_K", 256, 210, true, ll_quant_to_float_q6_K, ll_quant_from_float_ref_q6_K, ll_quant_vec_dot_q6_K_q8_K, LL_TYPE_Q8_K},
    [LL_TYPE_Q8_K] = {"Q8_K", 256, 292, false, ll_quant_to_float_q8_K, ll_quant_from_float_ref_q8_K, NULL, LL_TYPE_Q8_K},
    [LL_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [LL_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [LL_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [LL_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [LL_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [LL_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [LL_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [LL_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [LL_TYPE_I8] = {"I8", 1, 1},
    [LL_TYPE_I16] = {"I16", 1, 2},
    [LL_TYPE_I32] = {"I32", 1, 4},
    [LL_TYPE_I64] = {"I64", 1, 8},
    [LL_TYPE_F64] = {"F64", 1, 8},
    [LL_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [LL_TYPE_BF16] = {"BF16", 1, 2, true, bf16_to_float, bf16_from_float, NULL, LL_TYPE_F32},
    [LL_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [LL_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [LL_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const ll_type_traits *ll_type_get(uint32_t type) {
    if (type >= LL_TYPE_COUNT || k_traits[type].blck == 0) return NULL;
    return &k_traits[type];
}

const char *ll_type_name(uint32_t type) {
    const ll_type_traits *t = ll_type_get(type);
    return t ? t->name : "unknown";
}

bool ll_type_from_name(const char *name, ll_type *out) {
    for (uint32_t i = 0; i < LL_TYPE_COUNT; i++) {
        if (!k_traits[i].blck) continue;
        if (strcasecmp(name, k_traits[i].name) == 0) {
            *out = (ll_type)i;
            return true;
        }
    }
    return false;
}

bool ll_type_row_size(uint32_t type, uint64_t n, uint64_t *out) {
    const ll_type_traits *t = ll_type_get(type);
    if (!t || n % (uint64_t)t->blck != 0) return false;
    return ll_mul_u64(n / (uint64_t)t->blck, t->size, out);
}
