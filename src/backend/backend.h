// backend.h — the small interface every compute backend implements (CPU now; CUDA and Metal later).
// Model code calls these entries and never #ifdefs on a device. Pointers to activations are backend memory:
// the model code computes offsets but never dereferences them.
#ifndef LL_BACKEND_H
#define LL_BACKEND_H

#include "core/core.h"
#include "types/types.h"

// A weight matrix or vector: ne0 elements per row (the input dimension), ne1 rows.
typedef struct ll_weight {
    const void *data; // host: into the map; device backends keep their own copy keyed by this pointer
    uint32_t type;
    int64_t ne0, ne1;
    const char *name;
    bool mapped;      // data lies in a read-only file mapping: its pages may be let go and are read again on use
} ll_weight;

typedef enum ll_op {
    LL_OP_MATMUL,
    LL_OP_RMSNORM,
    LL_OP_ROPE,
    LL_OP_ATTENTION,
    LL_OP_SWIGLU,
    LL_OP_ADD,
    LL_OP_GET_ROWS,
} ll_op;

typedef struct ll_backend ll_backend;

#define LL_BACKEND_TOPK_MAX 512 // the most candidates topk returns

typedef struct ll_rope_params {
    int n_head, head_dim, n_rot; // rotate the first n_rot dims of each head
    float base;
    bool neox;                   // pairs (i, i + n_rot/2) instead of (2i, 2i+1)
    const float *freq_factors;   // NULL or (n_rot/2) divisors of theta (host memory)
} ll_rope_params;

typedef struct ll_attn_params {
    int n_head, n_head_kv, head_dim;
    int n_ctx;      // rows of the cache
    int n_past;     // cached positions before this batch
    float scale;    // 1/sqrt(head_dim)
} ll_attn_params;

typedef struct ll_backend_ops {
    const char *name;
    bool (*supports)(ll_backend *b, ll_op op, uint32_t type);
    void *(*alloc)(ll_backend *b, size_t bytes, ll_error *err);
    void (*free)(ll_backend *b, void *p);
    void (*upload)(ll_backend *b, void *dst, const void *src, size_t bytes);
    void (*download)(ll_backend *b, void *dst, const void *src, size_t bytes);
    // y (n_tok, w.ne1) = x (n_tok, w.ne0) W^T
    void (*matmul)(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok);
    // Optional (NULL: three matmuls): y[i] (n_tok, w[i].ne1) = x W[i]^T for three weights on one x (q, k, v)
    void (*matmul3)(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3], int n_tok);
    // Optional: y (n_tok, w.ne1) += x W^T (the residual add folded into the matmul); NULL: matmul, then add
    void (*matmul_add)(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok);
    // Optional (NULL: matmul_add, then rmsnorm): x (n_tok, w.ne1) += in W^T, then y = x / rms(x) * g per row (g
    // F32, w.ne1 values): the residual add and the norm that follows it as one op
    void (*matmul_add_rmsnorm)(ll_backend *b, const ll_weight *w, const float *in, float *x, const ll_weight *g,
                               float *y, int n_tok, float eps);
    // y = x / rms(x) * w, per row of n (w F32); y may alias x
    void (*rmsnorm)(ll_backend *b, float *y, const float *x, const ll_weight *w, int n, int n_tok, float eps);
    // x (n_tok, n) += bias (n), bias F32 weight
    void (*add_bias)(ll_backend *b, float *x, const ll_weight *bias, int n, int n_tok);
    // rotate q or k rows in place: x (n_tok, n_head*head_dim) at positions pos (n_tok, host memory)
    void (*rope)(ll_backend *b, float *x, const int32_t *pos, int n_tok, const ll_rope_params *p);
    // causal attention of q (n_tok, n_head*hd) over the cache rows [0, n_past + t] for token t; out like q
    void (*attention)(ll_backend *b, float *out, const float *q, const float *k_cache, const float *v_cache,
                      int n_tok, const ll_attn_params *p);
    // Optional (NULL: rope q, rope k, kv_store): RoPE of q (n_tok, p->n_head*hd) and k (n_tok, n_head_kv*hd) in
    // place, then rows [n_past, n_past + n_tok) of the caches = k, v, as one op
    void (*rope_kv_store)(ll_backend *b, float *q, float *k, const float *v, float *k_cache, float *v_cache,
                          const int32_t *pos, int n_tok, int n_past, const ll_rope_params *p, int n_head_kv);
    // Optional (NULL: matmul3 or three matmuls, then rope_kv_store or rope, rope, kv_store): y[0..2] (q, k, v) =
    // x W[i]^T, RoPE of q and k at positions n_past + t, then cache rows [n_past, n_past + n_tok) = k, v: the
    // attention block's first half as one op (for layers without q/k/v biases)
    void (*qkv_rope_store)(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3],
                           float *k_cache, float *v_cache, int n_tok, int n_past, const ll_rope_params *p,
                           int n_head_kv);
    // Optional (NULL: two matmuls and swiglu): g (n_tok, w_gate.ne1) = silu(x W_gate^T) * (x W_up^T); u is
    // scratch of g's size the backend may use
    void (*matmul_swiglu)(ll_backend *b, const ll_weight *w_gate, const ll_weight *w_up, const float *x, float *g,
                          float *u, int n_tok);
    // rows [n_past, n_past + n_tok) of one layer's caches (n_ctx, kvd) = k and v (n_tok, kvd)
    void (*kv_store)(ll_backend *b, float *k_cache, float *v_cache, const float *k, const float *v, int kvd,
                     int n_tok, int n_past);
    // g (n_tok, n) = silu(g) * u
    void (*swiglu)(ll_backend *b, float *g, const float *u, int n, int n_tok);
    // y += x, n floats
    void (*add)(ll_backend *b, float *y, const float *x, size_t n);
    // y (n_tok, w.ne0) = rows ids of w (any type with a to_float)
    void (*get_rows)(ll_backend *b, float *y, const ll_weight *w, const int32_t *ids, int n_tok);
    // Optional (NULL: the caller downloads x): the k best of x (n floats, backend memory; k <= LL_BACKEND_TOPK_MAX)
    // by value, the lower index first among equals, into vals and ids (host memory), best first. NaN and -inf
    // are left out, +inf counts as FLT_MAX and -0 as +0 (as the sampler loads logits): returns how many were
    // found (< k when x holds fewer). Waits for the result. Sampling reads these instead of the whole row.
    int (*topk)(ll_backend *b, const float *x, int n, int k, float *vals, int32_t *ids);
    void (*synchronize)(ll_backend *b);
    // Optional (NULL: nothing to gain): a forward step as one replayable unit. step_begin gets the step's token
    // ids and n_past before its first op and returns true when it has already run the whole step (the model code
    // then goes straight to the logits download); false: the model code issues the ops (which the backend may
    // record, reading ids and n_past from its own copies, so that the record replays at any n_past).
    // step_end closes a step whose ops were issued; run false abandons it (interrupted).
    bool (*step_begin)(ll_backend *b, const int32_t *ids, int n_tok, int n_past);
    void (*step_end)(ll_backend *b, bool run);
    // Once, before the first token: device backends upload every weight in ws (and later find them by
    // their host pointer); all size their scratch for batches of max_tok tokens and max_ctx positions.
    ll_status (*prepare)(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, ll_error *err);
    void (*destroy)(ll_backend *b);
} ll_backend_ops;

struct ll_backend {
    const ll_backend_ops *ops;
    void *impl;
};

// A backend by name: "cpu", "cuda" (builds with CUDA and a device present), or NULL/"auto" (CUDA when a
// device is found, else CPU). LL_ERR_UNSUPPORTED with a message when the name cannot be served here.
ll_status ll_backend_init(ll_backend **out, const char *device, int n_threads, ll_error *err);
void ll_backend_free(ll_backend *b);

// CPU backend with n_threads workers. Its scratch (matmul workspace for the largest weight at max_tok tokens,
// attention scratch per thread) is sized once in prepare, where it also repacks the weights its kernels read
// faster in another layout (Q4_0, Q5_0, Q8_0, Q4_K on AVX-512 VNNI; their mapped pages are handed back). For the
// memory plan: ll_backend_cpu_scratch says how much scratch (ws: one weight of each kind),
// ll_backend_cpu_repack_extra how much the repacked copies of ws (every weight) take beyond the mapped bytes they
// replace (Q4_K: 64 per 2304; all of a copy whose original is not in a file mapping).
ll_backend *ll_backend_cpu_init(int n_threads, ll_error *err);
size_t ll_backend_cpu_scratch(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, int n_threads);
size_t ll_backend_cpu_repack_extra(const ll_weight *const *ws, int n_ws);

#endif
