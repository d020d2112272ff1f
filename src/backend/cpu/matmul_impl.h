// matmul_impl.h — private to the CPU matmul: the job the driver (matmul.c) hands to kernels and the
// per-(weight type, ISA) table row. Adding a weight type = one ll_mm_ops row in an ISA's table.
#ifndef LL_MATMUL_IMPL_H
#define LL_MATMUL_IMPL_H

#include "backend/cpu/matmul.h"

// Prefill blocking. K block: a panel of mr rows x LL_MM_KC f32 (32 x 512 x 4 = 64 KB on AVX-512) and the
// tile's activations for that block (192 x 512 x 4 = 384 KB) stay in L2 (1 MB on Zen 4) while every token
// block streams past the panel; a multiple of 256 so quantized blocks never straddle it. Token tile: packed
// activations are built for at most LL_MM_TT tokens at a time (a multiple of every nr).
#define LL_MM_KC 512
#define LL_MM_TT 192

// One call of ll_matmul, as the kernels see it.
typedef struct ll_mm_job {
    uint32_t wtype;
    const uint8_t *W;   // (n_out, n_in) in wtype: row o at W + o * row_bytes (2-byte aligned at least)
    size_t row_bytes;
    const float *x;     // (n_tokens, n_in) f32, 64-byte aligned rows start (row stride n_in floats)
    const void *xa;     // activations for `dot`: x itself, or x converted by xa_conv (row stride xa_stride)
    size_t xa_stride;   // bytes
    float *y;           // (n_tokens, n_out)
    int n_in, n_out, n_tokens;
} ll_mm_job;

// The pieces one weight type provides on one ISA. The driver picks the dot form for n_tokens <=
// dot_max_tokens (W streamed once, memory-bound) and pack + kern above it (compute-bound).
typedef struct ll_mm_ops {
    uint32_t wtype;
    const char *isa;
    int dot_max_tokens;
    // y[t][o] for o in [r0, r1) and every token t. tsp: dot_tsp(n_in) bytes of per-thread scratch.
    void (*dot)(const ll_mm_job *j, int r0, int r1, void *tsp);
    size_t (*dot_tsp)(int n_in); // NULL: none
    // Optional activation format for dot (e.g. Q8 blocks): bytes of one converted row, and the converter.
    size_t (*xa_row)(int n_in);  // NULL: dot reads x as f32
    void (*xa_conv)(const float *x, void *xa, int n_in);
    // Panel of rows [r0, r0 + nr) (nr <= mr), columns [k0, k0 + kc) as f32, k-major:
    // dst[k * mr + r] = W[r0 + r][k0 + k]; rows nr..mr-1 are zero. tmp: LL_MM_KC floats of scratch.
    void (*pack)(const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst, float *tmp);
    // y[t * ldy + r] (+)= sum_k wp[k * mr + r] * xp[k * nr_blk + t] for t < nt (<= nr), r < nrows (<= mr);
    // add to y when accumulate, else store. wp and xp 64-byte aligned.
    void (*kern)(const float *wp, const float *xp, int kc, int nt, float *y, size_t ldy, int nrows,
                 bool accumulate);
    int mr, nr; // panel rows, token block
} ll_mm_ops;

// Each ISA file answers for the types it accelerates in this build, NULL otherwise (a file whose ISA is
// not compiled in answers NULL for every type).
const ll_mm_ops *ll_mm_find_x86(uint32_t wtype);
const ll_mm_ops *ll_mm_find_neon(uint32_t wtype);

// Packed activations for one token block: xp[k * nr + t] = x[t][k] (tokens nt..nr-1 zero), k in [0, n_in).
void ll_mm_pack_x(const float *x, int n_in, int nt, int nr, float *xp);

#endif
