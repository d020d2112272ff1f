// types.h — every GGUF/ggml tensor type by number and name, with its block geometry, and (for the types the
// engine computes with) the functions that convert and multiply it. Adding a format = one row in types.c.
#ifndef LL_TYPES_H
#define LL_TYPES_H

#include "core/core.h"

// Numbers are ggml's (the GGUF on-disk type ids).
typedef enum ll_type {
    LL_TYPE_F32 = 0,
    LL_TYPE_F16 = 1,
    LL_TYPE_Q4_0 = 2,
    LL_TYPE_Q4_1 = 3,
    LL_TYPE_Q5_0 = 6,
    LL_TYPE_Q5_1 = 7,
    LL_TYPE_Q8_0 = 8,
    LL_TYPE_Q8_1 = 9,
    LL_TYPE_Q2_K = 10,
    LL_TYPE_Q3_K = 11,
    LL_TYPE_Q4_K = 12,
    LL_TYPE_Q5_K = 13,
    LL_TYPE_Q6_K = 14,
    LL_TYPE_Q8_K = 15,
    LL_TYPE_IQ2_XXS = 16,
    LL_TYPE_IQ2_XS = 17,
    LL_TYPE_IQ3_XXS = 18,
    LL_TYPE_IQ1_S = 19,
    LL_TYPE_IQ4_NL = 20,
    LL_TYPE_IQ3_S = 21,
    LL_TYPE_IQ2_S = 22,
    LL_TYPE_IQ4_XS = 23,
    LL_TYPE_I8 = 24,
    LL_TYPE_I16 = 25,
    LL_TYPE_I32 = 26,
    LL_TYPE_I64 = 27,
    LL_TYPE_F64 = 28,
    LL_TYPE_IQ1_M = 29,
    LL_TYPE_BF16 = 30,
    LL_TYPE_TQ1_0 = 34,
    LL_TYPE_TQ2_0 = 35,
    LL_TYPE_MXFP4 = 39,
    LL_TYPE_COUNT = 40,
} ll_type;

// Convert n values (n a multiple of blck) of this type to float.
typedef void (*ll_to_float_fn)(const void *src, float *dst, int64_t n);
// Reference quantizer: n floats (multiple of blck) to blocks. Byte-identical to llama.cpp where stated.
typedef void (*ll_from_float_fn)(const float *src, void *dst, int64_t n);
// Dot product of n elements: x in this type, y in vec_dot_type. Result in *s.
typedef void (*ll_vec_dot_fn)(int n, float *s, const void *x, const void *y);

typedef struct ll_type_traits {
    const char *name;  // ggml's name: "F32", "Q4_K", ...
    int blck;          // elements per block (0 = removed/unknown id)
    size_t size;       // bytes per block
    bool compute;      // the engine can compute with this type (else: "type X is not supported yet")
    ll_to_float_fn to_float;
    ll_from_float_fn from_float_ref;
    ll_vec_dot_fn vec_dot;
    ll_type vec_dot_type; // the activation type vec_dot expects
} ll_type_traits;

// NULL for ids that are not a known ggml type.
const ll_type_traits *ll_type_get(uint32_t type);
const char *ll_type_name(uint32_t type); // "type 123" style fallback for unknown ids (static buffer-free)
// Parse "Q4_K", "q4_k", "F16" ...; returns false when unknown.
bool ll_type_from_name(const char *name, ll_type *out);
// Bytes of a row of n elements (overflow-checked; false when n is not a multiple of the block size).
bool ll_type_row_size(uint32_t type, uint64_t n, uint64_t *out);

#endif
