// ref.h — plain scalar references of every op in ll_backend_ops (backend.h): one thread, float64 accumulation,
// host memory only (weights through ll_type_get(type)->to_float, caches as host rows). What every backend is
// tested against (tests/test_backend_ops.c); never on a hot path. Same arguments and shapes as the ops, less
// the backend; each result is the exact value rounded once to float, except where a note says otherwise.
#ifndef LL_BACKEND_REF_H
#define LL_BACKEND_REF_H

#include "backend/backend.h"

// Bytes of one cache row of kvd values of type (F32, F16, Q8_0; kvd % 32 == 0 for Q8_0).
size_t ll_ref_kv_row_bytes(uint32_t type, int kvd);
// The exact bytes a store writes for one row: F32 as is, F16 by ll_fp32_to_fp16 (core/half.h), Q8_0 by the
// reference quantizer (ll_quant_from_float_ref_q8_0, src/types).
void ll_ref_kv_row_store(uint32_t type, const float *src, void *dst, int kvd);
// One row back to float (the type's to_float).
void ll_ref_kv_row_load(uint32_t type, const void *src, float *dst, int kvd);

// y (n_tok, w.ne1) = x (n_tok, w.ne0) W^T, W's rows dequantized by to_float, x as given (float activations: a
// backend that quantizes x, e.g. to Q8 for integer dots, differs by that rounding).
void ll_ref_matmul(const ll_weight *w, const float *x, float *y, int n_tok);
// y[i] = x W[i]^T for three weights.
void ll_ref_matmul3(const ll_weight *const w[3], const float *x, float *const y[3], int n_tok);
// y += x W^T (the sum and y added in float64, rounded once).
void ll_ref_matmul_add(const ll_weight *w, const float *x, float *y, int n_tok);
// x (n_tok, w.ne1) += in W^T, then y = rmsnorm(x) * g (of the float x).
void ll_ref_matmul_add_rmsnorm(const ll_weight *w, const float *in, float *x, const ll_weight *g, float *y,
                               int n_tok, float eps);
// y = x / sqrt(mean(x^2) + eps) * w per row of n; y may alias x.
void ll_ref_rmsnorm(float *y, const float *x, const ll_weight *w, int n, int n_tok, float eps);
// x (n_tok, n) += bias (n).
void ll_ref_add_bias(float *x, const ll_weight *bias, int n, int n_tok);
// RoPE in place of x (n_tok, n_head*head_dim): pair j of each head (2j, 2j+1), or (j, j + n_rot/2) when neox,
// rotates by pos * base^(-2j/n_rot) / freq_factors[j] (angle, sine and cosine in float64).
void ll_ref_rope(float *x, const int32_t *pos, int n_tok, const ll_rope_params *p);
// Causal attention of q (bp->n_tok, n_head*hd) over kv (host rows): token t's head h reads kv head
// h / (n_head / n_head_kv) of rows row0[t] .. row0[t] + pos[t]; softmax(scale q.k) v in float64.
void ll_ref_attention(float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                      const ll_attn_params *p);
// Rows row0[t] + pos[t] of kv->k and kv->v (host) = k, v (n_tok, kvd) in kv->type (ll_ref_kv_row_store).
void ll_ref_kv_store(const ll_kv_cache *kv, const float *k, const float *v, int kvd, const ll_batch_pos *bp);
// RoPE of q (n_head heads) and k (n_head_kv heads) at bp->pos, then kv_store of k and v.
void ll_ref_rope_kv_store(float *q, float *k, const float *v, const ll_kv_cache *kv, const ll_batch_pos *bp,
                          const ll_rope_params *p, int n_head_kv);
// y[i] = x W[i]^T (q, k, v), then ll_ref_rope_kv_store on them.
void ll_ref_qkv_rope_store(const ll_weight *const w[3], const float *x, float *const y[3], const ll_kv_cache *kv,
                           const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv);
// g (n_tok, w_gate.ne1) = silu(x W_gate^T) * (x W_up^T), from the float64 dots (not rounded in between).
void ll_ref_matmul_swiglu(const ll_weight *w_gate, const ll_weight *w_up, const float *x, float *g, int n_tok);
// g = silu(g) * u, n * n_tok values.
void ll_ref_swiglu(float *g, const float *u, int n, int n_tok);
// y += x.
void ll_ref_add(float *y, const float *x, size_t n);
// y (n_tok, w.ne0) = rows ids of w (to_float: exact).
void ll_ref_get_rows(float *y, const ll_weight *w, const int32_t *ids, int n_tok);
// The k best of x by value (NaN and -inf left out, +inf as FLT_MAX, -0 as +0), the lower index first among
// equals, best first; returns how many (<= k).
int ll_ref_topk(const float *x, int n, int k, float *vals, int32_t *ids);
// dst = src.
void ll_ref_copy(void *dst, const void *src, size_t bytes);

#endif
