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
    float scale;    // 1/sqrt(head_dim)
} ll_attn_params;

// One layer's KV cache. Sequence s owns rows [s*n_ctx, (s+1)*n_ctx); the token at position p of s lives in row
// s*n_ctx + p. A row is kvd = n_head_kv*head_dim values of type: F32, F16 or Q8_0 (Q8_0: head_dim % 32 == 0, so
// that each head is whole blocks). Backend memory.
typedef struct ll_kv_cache {
    void *k, *v;
    uint32_t type; // LL_TYPE_F32 (0), LL_TYPE_F16, LL_TYPE_Q8_0
    int n_ctx;     // rows per sequence
    int n_rows;    // rows in all (n_seq * n_ctx)
} ll_kv_cache;

// Where a step's tokens sit. Token t is at position pos[t] of the sequence whose first cache row is row0[t]: its K
// and V are stored in row row0[t] + pos[t], and it attends to rows row0[t] .. row0[t] + pos[t] (causal within its
// sequence). A sequence's tokens come in the order of their positions within a step, and a token sees the keys
// that the step's earlier tokens of its sequence stored. single: every token of one sequence (row0[t] == row0[0])
// and pos[t] == n_past + t (one prompt chunk, or the decode step of one sequence): kernels may then see the
// sequence's rows as a cache of their own (kv->k + row0[0] rows) and take n_past as one number.
typedef struct ll_batch_pos {
    int n_tok;
    const int32_t *pos;  // (n_tok) host memory
    const int32_t *row0; // (n_tok) host memory
    bool single;
    int n_past;          // single only
} ll_batch_pos;

// bp for one sequence whose rows start at row r0, positions n_past .. n_past + n_tok - 1, over the caller's
// arrays (n_tok each).
static inline ll_batch_pos ll_batch_pos_single(int r0, int n_past, int n_tok, int32_t *pos, int32_t *row0) {
    for (int t = 0; t < n_tok; t++) pos[t] = n_past + t, row0[t] = r0;
    ll_batch_pos bp = {n_tok, pos, row0, true, n_past};
    return bp;
}

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
    // causal attention of q (bp->n_tok, n_head*hd) over each token's rows of kv (see ll_batch_pos); out like q.
    // supports(b, LL_OP_ATTENTION, type) says which cache types it reads.
    void (*attention)(ll_backend *b, float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                      const ll_attn_params *p);
    // Optional (NULL: rope q, rope k, kv_store): RoPE of q (n_tok, p->n_head*hd) and k (n_tok, n_head_kv*hd) at
    // positions bp->pos in place, then each token's cache rows = k, v (converted to kv->type), as one op
    void (*rope_kv_store)(ll_backend *b, float *q, float *k, const float *v, const ll_kv_cache *kv,
                          const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv);
    // Optional (NULL: matmul3 or three matmuls, then rope_kv_store or rope, rope, kv_store): y[0..2] (q, k, v) =
    // x W[i]^T, RoPE of q and k at positions bp->pos, then each token's cache rows = k, v: the attention block's
    // first half as one op (for layers without q/k/v biases)
    void (*qkv_rope_store)(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3],
                           const ll_kv_cache *kv, const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv);
    // Optional (NULL: two matmuls and swiglu): g (n_tok, w_gate.ne1) = silu(x W_gate^T) * (x W_up^T); u is
    // scratch of g's size the backend may use
    void (*matmul_swiglu)(ll_backend *b, const ll_weight *w_gate, const ll_weight *w_up, const float *x, float *g,
                          float *u, int n_tok);
    // each token's cache rows (row0[t] + pos[t]) = its k and v (n_tok, kvd), converted to kv->type
    void (*kv_store)(ll_backend *b, const ll_kv_cache *kv, const float *k, const float *v, int kvd,
                     const ll_batch_pos *bp);
    // dst = src, bytes of backend memory (a sequence's cache rows copied to another: a shared prefix)
    void (*copy)(ll_backend *b, void *dst, const void *src, size_t bytes);
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
    // ids and positions before its first op and returns true when it has already run the whole step (the model
    // code then goes straight to the logits download); false: the model code issues the ops (which the backend
    // may record, reading ids and positions from its own copies, so that the record replays at any position).
    // key names the context whose buffers the ops use: a record made for one key is never replayed for another.
    // step_end closes a step whose ops were issued; run false abandons it (interrupted).
    bool (*step_begin)(ll_backend *b, const void *key, const int32_t *ids, const ll_batch_pos *bp);
    void (*step_end)(ll_backend *b, bool run);
    // Optional: forget what was recorded for key (its context's buffers are about to be freed).
    void (*step_forget)(ll_backend *b, const void *key);
    // Once, before the first token: device backends upload every weight in ws (and later find them by
    // their host pointer); all size their scratch for batches of max_tok tokens and max_ctx positions (per
    // sequence). Several contexts share one prepared backend (the model's engine).
    ll_status (*prepare)(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, ll_error *err);
    // After prepare: grow the scratch to batches of max_tok tokens and max_ctx positions (never shrinks it; a
    // no-op when it is already that large). LL_ERR_NOMEM with the numbers when the device cannot give it.
    ll_status (*reserve)(ll_backend *b, int max_tok, int max_ctx, ll_error *err);
    // Memory of the device the backend allocates from: what it can still give and its size, in bytes (CPU:
    // MemAvailable and MemTotal). For the memory plan.
    void (*mem_info)(ll_backend *b, uint64_t *free_bytes, uint64_t *total_bytes);
    // For the memory plan, before prepare: the bytes prepare and reserve will take on the device beyond what
    // the caller allocates: the weights' device copies (CPU: repacked copies beyond the mapped bytes they
    // replace) and the scratch for max_tok tokens and max_ctx positions (ws: every weight).
    uint64_t (*plan_bytes)(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx);
    void (*destroy)(ll_backend *b);
} ll_backend_ops;

struct ll_backend {
    const ll_backend_ops *ops;
    void *impl;
};

// ---- the registry (backend.c) ----------------------------------------------------------------------------
// Every backend this build has, in order of preference for "auto": name, how many devices answer (0 with why),
// and its constructor.
typedef struct ll_backend_entry {
    const char *name;
    int (*probe)(char *why, size_t cap);
    ll_backend *(*init)(int n_threads, ll_error *err);
} ll_backend_entry;

// The entries (CPU last: it always answers); *n gets the count.
const ll_backend_entry *ll_backend_list(int *n);
// The entry named name, or NULL.
const ll_backend_entry *ll_backend_find(const char *name);
// A backend by name: "cpu", "cuda" (builds with CUDA and a device present), or NULL/"auto" (the first entry whose
// probe finds a device; the CPU last). LL_ERR_UNSUPPORTED with a message when the name cannot be served here,
// LL_ERR_ARG when no backend has that name.
ll_status ll_backend_init(ll_backend **out, const char *device, int n_threads, ll_error *err);
void ll_backend_free(ll_backend *b);

// CPU backend with n_threads workers. Its scratch (matmul workspace for the largest weight at max_tok tokens,
// attention scratch per thread) is sized in prepare and reserve; prepare also repacks the weights its kernels
// read faster in another layout (Q4_0, Q5_0, Q8_0, Q4_K on AVX-512 VNNI; their mapped pages are handed back).
ll_backend *ll_backend_cpu_init(int n_threads, ll_error *err);

#endif
