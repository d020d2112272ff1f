// cpu_internal.h — what the CPU backend's files share: its state (cpu.c owns it) and the attention and KV cache
// entries (attention.c).
#ifndef LL_CPU_INTERNAL_H
#define LL_CPU_INTERNAL_H

#include "backend/backend.h"
#include "core/pool.h"

// A weight repacked at prepare into a layout the kernels read faster (ll_matmul_repack_type), found by the
// host pointer of the original (ll_weight.data).
typedef struct cpu_rw {
    const void *host;
    void *data;
    uint32_t type;
} cpu_rw;

// A matrix shape the matmul workspace must serve: layout (after repacking) and row length.
typedef struct cpu_mm_shape {
    uint32_t type;
    int ne0;
} cpu_mm_shape;

typedef struct cpu_impl {
    ll_pool *pool;
    int n_threads;
    cpu_rw *rw; // sorted by host
    int n_rw;
    void *wsp; // matmul workspace
    size_t wsp_size;
    cpu_mm_shape *mm_shapes; // recorded at prepare, for reserve
    int n_mm_shapes;
    float *scores; // (n_threads, scr_floats): attention scores (decode) or attn_tile's scratch (batches)
    size_t scr_floats;
    int max_tok, max_ctx; // what prepare and reserve sized the scratch for (max_ctx: positions per sequence)
} cpu_impl;

// Floats of attention scratch each thread needs for max_ctx positions per sequence.
size_t ll_cpu_attn_scratch_floats(int max_ctx);

// The backend's attention and kv_store entries (see ll_backend_ops).
void ll_cpu_attention(ll_backend *b, float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                      const ll_attn_params *p);
void ll_cpu_kv_store(ll_backend *b, const ll_kv_cache *kv, const float *k, const float *v, int kvd,
                     const ll_batch_pos *bp);
// The cache types ll_cpu_attention reads and ll_cpu_kv_store writes: F32, F16, Q8_0.
bool ll_cpu_kv_type_ok(uint32_t type);

#endif
