// matmul_q.h — private to the CPU matmul: quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).
// Activations are quantized once per call, as llama.cpp does on x86, into rows the kernels and the tests share.
#ifndef LL_MATMUL_Q_H
#define LL_MATMUL_Q_H

#include "backend/cpu/matmul_impl.h"
#include "types/quant.h"

// One quantized activation row of n_in elements (64-byte aligned), in the activation type of the weights'
// vec_dot (Q8_0, Q8_1 or Q8_K; ggml block layout, so the scalar vec_dot reads it as is), then per block of
// that type two 4-byte side arrays the SIMD kernels use instead of the fp16 fields:
//   [blocks: nb * block bytes][pad to 64][float d[nb]][aux[nb]]
// Q8_0: d = fp16 scale as float, aux = int32 sum of the 32 codes. Q8_1: d as Q8_0, aux = float(fp16 s).
// Q8_K: d = the block's float scale, aux unused (0).
// Then, for the prefill kernels, [pad to 64][int32 c[n_in / sub]][float s[n_in / 32]] where sub is the span of
// one integer sum of the weight type (ll_mmq_sub: 16 for Q6_K, else 32): c = -(the offset that makes the
// weight codes unsigned: Q8_0 128, Q4_0 8, Q5_0 16, Q6_K 32; 0 for the others) * sum of the activation codes
// of that span, so an integer sum that starts at c over unsigned codes equals the signed one; s = the sum of
// each 32 activation codes as float (Q4_K/Q5_K's min term; 0 for the others).
typedef struct ll_mmq_row {
    const uint8_t *blocks;
    const float *d;
    const void *aux;
    const int32_t *c;
    const float *s;
} ll_mmq_row;

// Elements per integer sum of the prefill kernels (one scale each): 16 for Q6_K, 32 for the others.
int ll_mmq_sub(uint32_t wtype);
// The weight code offset of c above (0 where none).
int ll_mmq_code_offset(uint32_t wtype);

// Activation type for this weight type (LL_TYPE_Q8_0/Q8_1/Q8_K), 0 when it is not a quantized matmul type.
uint32_t ll_mmq_act_type(uint32_t wtype);
// Bytes of one activation row (a multiple of 64).
size_t ll_mmq_act_row(uint32_t wtype, int n_in);
// Quantize n_in floats (a multiple of the block) to one activation row: Q8_0/Q8_1 as llama.cpp's x86
// quantize_row_q8_0/_1 (d = amax/127, codes = round-half-even(x * 127/amax)), Q8_K as its reference.
void ll_mmq_act_quantize(uint32_t wtype, const float *x, void *row, int n_in);
ll_mmq_row ll_mmq_act_view(uint32_t wtype, const void *row, int n_in);

// The scalar kernels (traits vec_dot per row and token): every build has them.
const ll_mm_ops *ll_mmq_find_scalar(uint32_t wtype);
// AVX-512 VNNI prefill (qgemm_x86.c): rows [r0, r1) of a job with several tokens, through 16-row panels of
// unsigned codes (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K); tsp: ll_qgemm_x86_tsp(n_in) bytes. supports is false for
// other types and in builds without VNNI. act: the SIMD ll_mmq_act_quantize (bit-identical); false where it
// has none (the caller then uses ll_mmq_act_quantize).
bool ll_qgemm_x86_supports(uint32_t wtype);
size_t ll_qgemm_x86_tsp(int n_in);
void ll_qgemm_x86(const ll_mm_job *j, int r0, int r1, void *tsp);
bool ll_qgemm_x86_act(uint32_t wtype, const float *x, void *row, int n_in);

// SIMD kernels for quantized types, NULL where the ISA or the type is not compiled in.
const ll_mm_ops *ll_mmq_find_x86(uint32_t wtype);
const ll_mm_ops *ll_mmq_find_neon(uint32_t wtype);

#endif
