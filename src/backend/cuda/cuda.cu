// cuda.cu — the CUDA backend's ops table: device memory, the weight upload (once, through two pinned staging
// buffers) and the host-pointer -> device-weight table, host int arrays to the device, cuBLAS opened at run time.
#include "backend/cuda/cuda_internal.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>


void cu_die(const char *file, int line, const char *call, const char *msg) {
    char what[512];
    snprintf(what, sizeof what, "CUDA: %s: %s", call, msg);
    ll_panic(file, line, what);
}

extern "C" int ll_backend_cuda_device_count(char *why, size_t cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && cap) snprintf(why, cap, "no CUDA device found (%s)", cudaGetErrorString(e));
        (void)cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return 0;
    }
    if (n == 0 && why && cap) snprintf(why, cap, "no CUDA device found");
    return n;
}

// ---- cuBLAS, opened at run time: linked normally it adds 0.2 s (warm) to seconds (cold) to every start of
// every program that links the library (see the Makefile's CUDA section). Without it batches run the matvec.
static void *open_cublas(char *why, size_t cap) {
    char names[3][128];
    snprintf(names[0], sizeof names[0], "libcublas.so.%d", CUBLAS_VER_MAJOR);
    snprintf(names[1], sizeof names[1], "libcublas.so");
    snprintf(names[2], sizeof names[2], "/usr/local/cuda/lib64/libcublas.so.%d", CUBLAS_VER_MAJOR);
    for (int i = 0; i < 3; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    const char *e = dlerror();
    snprintf(why, cap, "cannot open %s: %s", names[0], e ? e : "not found");
    return NULL;
}

static void blas_open(cu_impl *c) {
    cu_blas *b = &c->blas;
    void *h = open_cublas(c->blas_why, sizeof c->blas_why);
    if (!h) return;
    b->create = (decltype(b->create))dlsym(h, "cublasCreate_v2");
    b->destroy = (decltype(b->destroy))dlsym(h, "cublasDestroy_v2");
    b->set_stream = (decltype(b->set_stream))dlsym(h, "cublasSetStream_v2");
    b->set_math_mode = (decltype(b->set_math_mode))dlsym(h, "cublasSetMathMode");
    decltype(b->gemm) gemm = (decltype(b->gemm))dlsym(h, "cublasGemmEx");
    if (!b->create || !b->destroy || !b->set_stream || !b->set_math_mode || !gemm) {
        snprintf(c->blas_why, sizeof c->blas_why, "libcublas lacks cublasCreate_v2/cublasGemmEx");
        return;
    }
    if (b->create(&b->h) != CUBLAS_STATUS_SUCCESS || b->set_stream(b->h, c->stream) != CUBLAS_STATUS_SUCCESS ||
        b->set_math_mode(b->h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) { // no TF32 for F32 weights
        snprintf(c->blas_why, sizeof c->blas_why, "cublasCreate/SetStream failed");
        return;
    }
    b->gemm = gemm; // the handle stays open for the backend's life; the library for the process's
}

// ---- weights ----------------------------------------------------------------------------------------------
static const cu_weight *find_ptr(cu_impl *c, const void *host) {
    int lo = 0, hi = c->n_w - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uintptr_t k = (uintptr_t)c->w[mid].host;
        if (k == (uintptr_t)host) return &c->w[mid];
        if (k < (uintptr_t)host) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const cu_wview *cu_weight_find(cu_impl *c, const ll_weight *w) {
    const cu_weight *e = find_ptr(c, w->data);
    if (!e) {
        char what[256];
        snprintf(what, sizeof what, "weight %s was not uploaded (prepare did not list it)", w->name ? w->name : "?");
        ll_panic(__FILE__, __LINE__, what);
    }
    return &e->v;
}

static const float *weight_f32(cu_impl *c, const ll_weight *w) {
    LL_ASSERT(w->type == LL_TYPE_F32);
    return (const float *)cu_weight_find(c, w)->q;
}

// ---- host int arrays -> device --------------------------------------------------------------------------
const int32_t *cu_ids_to_device(cu_impl *c, const int32_t *ids, int n) {
    LL_ASSERT(n >= 1 && n <= c->max_tok);
    int slot = c->ids_next++ % CU_ID_SLOTS;
    int32_t *pin = c->ids_pinned + (size_t)slot * c->max_tok, *dev = c->ids_dev + (size_t)slot * c->max_tok;
    CU_CHECK(cudaEventSynchronize(c->ids_ev[slot])); // the copy that last read this slot (long done)
    memcpy(pin, ids, (size_t)n * sizeof *ids);
    CU_CHECK(cudaMemcpyAsync(dev, pin, (size_t)n * sizeof *ids, cudaMemcpyHostToDevice, c->stream));
    CU_CHECK(cudaEventRecord(c->ids_ev[slot], c->stream));
    return dev;
}

// ---- where a step's tokens sit (ll_batch_pos) --------------------------------------------------------------
// One run of one sequence (every token's row0 equal, positions consecutive): its first position and first row.
static bool bp_run(const ll_batch_pos *bp, int *n_past, int *r0) {
    *n_past = bp->single ? bp->n_past : bp->pos[0];
    *r0 = bp->row0[0];
    if (bp->single) return true;
    for (int t = 1; t < bp->n_tok; t++)
        if (bp->row0[t] != bp->row0[0] || bp->pos[t] != bp->pos[0] + t) return false;
    return true;
}

// Every token's rows lie in the cache: 0 <= pos < n_ctx, its row inside the n_rows.
static void bp_check(const ll_kv_cache *kv, const ll_batch_pos *bp) {
    LL_ASSERT(bp->n_tok >= 1 && kv->n_ctx >= 1 && kv->n_rows >= kv->n_ctx);
    for (int t = 0; t < bp->n_tok; t++) {
        const int p = bp->single ? bp->n_past + t : bp->pos[t];
        LL_ASSERT(p >= 0 && p < kv->n_ctx && bp->row0[t] >= 0 && (int64_t)bp->row0[t] + p < kv->n_rows);
        LL_ASSERT(!bp->single || (bp->row0[t] == bp->row0[0] && bp->pos[t] == bp->n_past + t));
    }
}

// n positions and first rows on the device (a bp slot: pos, then row0): a slot that holds them already, else the
// next slot of the ring (its last copy, CU_BP_SLOTS uploads ago, has long finished: the wait is no stall).
static void bp_upload(cu_impl *c, const int32_t *pos, const int32_t *row0, int n, const int32_t **pd,
                      const int32_t **rd) {
    LL_ASSERT(n >= 1 && n <= c->max_tok && c->bp_dev);
    const size_t stride = (size_t)2 * c->max_tok;
    int slot = -1;
    for (int i = 0; i < CU_BP_SLOTS && slot < 0; i++) {
        const int32_t *h = c->bp_host + i * stride;
        if (c->bp_n[i] == n && !memcmp(h, pos, (size_t)n * 4) && !memcmp(h + n, row0, (size_t)n * 4)) slot = i;
    }
    if (slot < 0) {
        slot = c->bp_next++ % CU_BP_SLOTS;
        int32_t *pin = c->bp_pin + slot * stride;
        CU_CHECK(cudaEventSynchronize(c->bp_ev[slot])); // the last copy from this pinned slot is done
        memcpy(pin, pos, (size_t)n * 4);
        memcpy(pin + n, row0, (size_t)n * 4);
        memcpy(c->bp_host + slot * stride, pin, (size_t)2 * n * 4);
        CU_CHECK(cudaMemcpyAsync(c->bp_dev + slot * stride, pin, (size_t)2 * n * 4, cudaMemcpyHostToDevice,
                                 c->stream));
        CU_CHECK(cudaEventRecord(c->bp_ev[slot], c->stream));
        c->bp_n[slot] = n;
    }
    *pd = c->bp_dev + slot * stride, *rd = c->bp_dev + slot * stride + n;
}

// While a step is recorded, its ops must see the step's tokens (step_begin's copy, which the graph reads).
static void step_match(const cu_impl *c, const ll_batch_pos *bp) {
    LL_ASSERT(bp->n_tok == c->step_ntok);
    for (int t = 0; t < bp->n_tok; t++)
        LL_ASSERT((bp->single ? bp->n_past + t : bp->pos[t]) == c->step_pos[t] && bp->row0[t] == c->step_row0[t]);
}

// The device view of bp for kernels: the recorded step's arrays; one run at host values; or the arrays uploaded.
static cu_bpos bpos_of(cu_impl *c, const ll_batch_pos *bp) {
    int n_past, r0;
    if (c->recording) {
        step_match(c, bp);
        return cu_bpos{cu_step_pos(c), cu_step_row0(c), 0, 0, !c->step_single};
    }
    if (bp_run(bp, &n_past, &r0)) return cu_bpos{NULL, NULL, n_past, r0, false};
    cu_bpos d = {NULL, NULL, 0, 0, true};
    bp_upload(c, bp->pos, bp->row0, bp->n_tok, &d.pos, &d.row0);
    return d;
}

// The cache's row type, checked: F32, F16, or Q8_0 with rows of whole blocks per head (head_dim % 32 == 0).
static uint32_t kv_type(const ll_kv_cache *kv, int head_dim) {
    if (kv->type != LL_TYPE_F32 && kv->type != LL_TYPE_F16 && kv->type != LL_TYPE_Q8_0)
        ll_panic(__FILE__, __LINE__, "the CUDA backend reads F32, F16 and Q8_0 KV caches only (supports() says so)");
    if (kv->type == LL_TYPE_Q8_0 && head_dim % 32 != 0)
        ll_panic(__FILE__, __LINE__, "a Q8_0 KV cache needs head_dim % 32 == 0 (backend.h)");
    return kv->type;
}

// ---- the pending norm (cu_norm_in, cuda_internal.h) ---------------------------------------------------------
static bool overlaps(const void *a, size_t na, const void *b, size_t nb) {
    const char *p = (const char *)a, *q = (const char *)b;
    return a && b && p < q + nb && q < p + na;
}

void cu_norm_settle(cu_impl *c) {
    if (!c->pend.on) return;
    c->pend.on = false;
    const cu_norm_in ni = {c->norm_part, c->pend.n / 32, c->pend.n, c->pend.eps};
    cu_norm_apply(c, c->pend.y, c->pend.x, c->pend.g, ni, c->pend.n_tok);
    cu_x8_forget(c); // x8 holds the codes of x * g, not of y
}

// An op is about to touch bytes [p, p + n): a pending norm whose x or y they overlap is written first.
void cu_norm_guard(cu_impl *c, const void *p, size_t n) {
    if (!c->pend.on) return;
    const size_t nb = (size_t)c->pend.n_tok * (size_t)c->pend.n * sizeof(float);
    if (overlaps(p, n, c->pend.y, nb) || overlaps(p, n, c->pend.x, nb)) cu_norm_settle(c);
}

cu_norm_in cu_norm_take(cu_impl *c, const float *x, int n_tok, int64_t ne0) {
    if (c->pend.on && x == c->pend.y && n_tok == c->pend.n_tok && ne0 == c->pend.n && c->x8_src == x &&
        c->x8_ntok == n_tok && c->x8_ne0 == ne0)
        return cu_norm_in{c->norm_part, c->pend.n / 32, c->pend.n, c->pend.eps};
    cu_norm_guard(c, x, (size_t)n_tok * (size_t)ne0 * sizeof(float));
    return cu_norm_in{NULL, 0, 0, 0.0f};
}

static size_t fbytes(int64_t rows, int64_t cols) { return (size_t)rows * (size_t)cols * sizeof(float); }

// ---- ops ------------------------------------------------------------------------------------------------
static bool op_supports(ll_backend *b, ll_op op, uint32_t type) {
    if (op == LL_OP_MATMUL || op == LL_OP_GET_ROWS) return cu_matmul_supports(type);
    if (op == LL_OP_ATTENTION) // the KV cache's row type
        return type == LL_TYPE_F32 || type == LL_TYPE_F16 || type == LL_TYPE_Q8_0;
    return type == LL_TYPE_F32;
}

static void *op_alloc(ll_backend *b, size_t bytes, ll_error *err) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        ll_err_set(err, LL_ERR_NOMEM, "cudaMalloc of %.1f MiB failed (%s): %.1f of %.1f MiB free on the GPU",
                   bytes / 1048576.0, cudaGetErrorString(e), fr / 1048576.0, tot / 1048576.0);
        return NULL;
    }
    return p;
}

// ---- the recorded steps (graph_tab) -------------------------------------------------------------------------
// Drops the records of key (NULL: every record). A replay in flight finishes: cudaGraphExecDestroy frees the
// executable graph once it completes.
static void graph_drop(cu_impl *c, const void *key) {
    for (int i = 0; i < CU_GRAPHS; i++) {
        if (!c->graph_tab[i].exec || (key && c->graph_tab[i].key != key)) continue;
        CU_CHECK(cudaGraphExecDestroy(c->graph_tab[i].exec));
        c->graph_tab[i].exec = NULL;
        c->graph_tab[i].key = NULL;
    }
}

static int graph_find(const cu_impl *c, const void *key, int n_tok, bool single) {
    for (int i = 0; i < CU_GRAPHS; i++)
        if (c->graph_tab[i].exec && c->graph_tab[i].key == key && c->graph_tab[i].n_tok == n_tok &&
            c->graph_tab[i].single == single)
            return i;
    return -1;
}

// A free slot, else the least recently replayed record's (dropped).
static int graph_slot(cu_impl *c) {
    int best = 0;
    for (int i = 0; i < CU_GRAPHS; i++) {
        if (!c->graph_tab[i].exec) return i;
        if (c->graph_tab[i].used < c->graph_tab[best].used) best = i;
    }
    CU_CHECK(cudaGraphExecDestroy(c->graph_tab[best].exec));
    c->graph_tab[best].exec = NULL;
    return best;
}

// A recorded step holds the addresses of the buffers it used: freeing any buffer drops every record.
static void op_free(ll_backend *b, void *p) {
    cu_norm_settle(cu_of(b)); // while its buffers live
    graph_drop(cu_of(b), NULL);
    CU_CHECK(cudaFree(p));
}

static void op_copy(ll_backend *b, void *dst, const void *src, size_t n) {
    cu_impl *c = cu_of(b);
    LL_ASSERT(!c->recording);
    cu_norm_guard(c, dst, n);
    cu_norm_guard(c, src, n);
    cu_x8_forget(c);
    if (n) CU_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->stream));
}

static void op_upload(ll_backend *b, void *dst, const void *src, size_t n) {
    cu_norm_guard(cu_of(b), dst, n);
    cu_x8_forget(cu_of(b));
    CU_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, cu_of(b)->stream));
}

static void op_download(ll_backend *b, void *dst, const void *src, size_t n) {
    cu_norm_guard(cu_of(b), src, n);
    CU_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, cu_of(b)->stream));
}

static void op_matmul(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok) {
    cu_impl *c = cu_of(b);
    const cu_wview *v = cu_weight_find(c, w);
    cu_norm_guard(c, y, fbytes(n_tok, v->ne1));
    cu_matmul(c, v, x, y, n_tok, false);
}

static void op_matmul3(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3], int n_tok) {
    cu_impl *c = cu_of(b);
    const cu_wview *v[3] = {cu_weight_find(c, w[0]), cu_weight_find(c, w[1]), cu_weight_find(c, w[2])};
    for (int i = 0; i < 3; i++) cu_norm_guard(c, y[i], fbytes(n_tok, v[i]->ne1));
    if (cu_mmvq3_ok(c, v, n_tok)) { // decode of a quantized model: one launch (outputs never overlap x here)
        cu_mmvq3(c, v, x, y, n_tok, NULL);
        return;
    }
    if (cu_matvec3_ok(v, n_tok)) { // decode of a float model: likewise
        cu_matvec3(c, v, x, y, NULL);
        return;
    }
    for (int i = 0; i < 3; i++) cu_matmul(c, v[i], x, y[i], n_tok, false);
}

static void op_matmul_add(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok) {
    cu_impl *c = cu_of(b);
    const cu_wview *v = cu_weight_find(c, w);
    cu_norm_guard(c, y, fbytes(n_tok, v->ne1));
    cu_matmul(c, v, x, y, n_tok, true);
}

// x += in W^T, y = rmsnorm(x) * g. Decode of an int8 type: one launch, the norm left pending for its int8 readers
// (cu_mmvq_add_norm); else matmul_add and rmsnorm.
static void op_matmul_add_rmsnorm(ll_backend *b, const ll_weight *w, const float *in, float *x, const ll_weight *g,
                                  float *y, int n_tok, float eps) {
    cu_impl *c = cu_of(b);
    const cu_wview *v = cu_weight_find(c, w);
    const size_t nb = fbytes(n_tok, v->ne1);
    // a pending norm of this same x into this same y is superseded: y is about to be replaced
    if (c->pend.on && c->pend.y == y && c->pend.x == x && c->pend.n_tok == n_tok && c->pend.n == v->ne1)
        c->pend.on = false;
    cu_norm_guard(c, in, fbytes(n_tok, v->ne0));
    cu_norm_guard(c, x, nb);
    cu_norm_guard(c, y, nb);
    const float *gd = weight_f32(c, g);
    const bool apart = !overlaps(in, fbytes(n_tok, v->ne0), x, nb) && !overlaps(in, fbytes(n_tok, v->ne0), y, nb) &&
                       !overlaps(x, nb, y, nb);
    if (apart && cu_mmvq_add_norm(c, v, in, x, gd, y, n_tok, eps)) return;
    cu_matmul(c, v, in, x, n_tok, true);
    cu_x8_forget(c);
    cu_rmsnorm(c, y, x, gd, (int)v->ne1, n_tok, eps);
}

static void op_rmsnorm(ll_backend *b, float *y, const float *x, const ll_weight *w, int n, int n_tok, float eps) {
    cu_impl *c = cu_of(b);
    cu_norm_guard(c, x, fbytes(n_tok, n));
    cu_norm_guard(c, y, fbytes(n_tok, n));
    cu_x8_forget(c);
    cu_rmsnorm(c, y, x, weight_f32(c, w), n, n_tok, eps);
}

static void op_add_bias(ll_backend *b, float *x, const ll_weight *bias, int n, int n_tok) {
    cu_impl *c = cu_of(b);
    cu_norm_guard(c, x, fbytes(n_tok, n));
    cu_x8_forget(c);
    cu_add_bias(c, x, weight_f32(c, bias), n, n_tok);
}

// The device copy of the RoPE frequency divisors, or NULL when the model has none.
static const float *rope_ff(cu_impl *c, const ll_rope_params *p) {
    if (!p->freq_factors) return NULL;
    const cu_weight *e = find_ptr(c, p->freq_factors);
    if (!e) ll_panic(__FILE__, __LINE__, "rope frequency factors were not uploaded (prepare did not list them)");
    return (const float *)e->v.q;
}

// Positions n_past + t travel as one kernel argument, others as an array (a recorded step: the step's, on the
// device).
static void op_rope(ll_backend *b, float *x, const int32_t *pos, int n_tok, const ll_rope_params *p) {
    cu_impl *c = cu_of(b);
    cu_norm_guard(c, x, fbytes(n_tok, (int64_t)p->n_head * p->head_dim));
    cu_x8_forget(c);
    if (c->recording) {
        LL_ASSERT(n_tok == c->step_ntok && !memcmp(pos, c->step_pos, (size_t)n_tok * sizeof *pos));
        cu_rope(c, x, cu_step_pos(c), 0, n_tok, p, rope_ff(c, p));
        return;
    }
    bool run = true;
    for (int t = 1; t < n_tok && run; t++) run = pos[t] == pos[0] + t;
    const int32_t *pos_dev = run ? NULL : cu_ids_to_device(c, pos, n_tok);
    cu_rope(c, x, pos_dev, pos[0], n_tok, p, rope_ff(c, p));
}

static size_t kv_bytes(const ll_kv_cache *kv, int kvd) { return (size_t)kv->n_rows * cu_kv_row_bytes(kv->type, kvd); }

// The end of the run of one sequence that starts at token t (consecutive positions, one row0).
static int run_end(const ll_batch_pos *bp, int t) {
    int e = t + 1;
    while (e < bp->n_tok && bp->row0[e] == bp->row0[t] && bp->pos[e] == bp->pos[e - 1] + 1) e++;
    return e;
}

// One sequence (bp_run): the split kernels sharing K/V tiles, or the tensor cores for batches. Several sequences:
// runs of CU_ATTN_MMA_MIN_TOK tokens or more of one sequence as one sequence, the tokens between them in segments
// of per-token blocks (decode of N sequences: one segment, one launch). A recorded step: the step's arrays, split
// for the cache's n_ctx (the graph replays at any position).
static void op_attention(ll_backend *b, float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                         const ll_attn_params *p) {
    cu_impl *c = cu_of(b);
    const int n_tok = bp->n_tok, hq = p->n_head * p->head_dim, kvd = p->n_head_kv * p->head_dim;
    const size_t qb = fbytes(n_tok, hq);
    const uint32_t ct = kv_type(kv, p->head_dim);
    cu_norm_guard(c, out, qb);
    cu_norm_guard(c, q, qb);
    cu_norm_guard(c, kv->k, kv_bytes(kv, kvd));
    cu_norm_guard(c, kv->v, kv_bytes(kv, kvd));
    cu_x8_forget(c);
    bp_check(kv, bp);
    int n_past, r0;
    if (c->recording || bp_run(bp, &n_past, &r0)) {
        const cu_bpos d = bpos_of(c, bp);
        cu_attention(c, out, q, kv->k, kv->v, ct, n_tok, d, c->recording ? kv->n_ctx : n_past + n_tok, p);
        return;
    }
    int launches = 0;
    for (int t = 0; t < n_tok; launches++) {
        int e = run_end(bp, t);
        if (e - t >= CU_ATTN_MMA_MIN_TOK) {
            const cu_bpos d = {NULL, NULL, bp->pos[t], bp->row0[t], false};
            cu_attention(c, out + (size_t)t * hq, q + (size_t)t * hq, kv->k, kv->v, ct, e - t, d, bp->pos[e - 1] + 1, p);
            t = e;
            continue;
        }
        const int s = t;
        int max_keys = 0;
        for (; t < n_tok && (e = run_end(bp, t)) - t < CU_ATTN_MMA_MIN_TOK; t = e)
            for (int i = t; i < e; i++) max_keys = bp->pos[i] + 1 > max_keys ? bp->pos[i] + 1 : max_keys;
        cu_bpos d = {NULL, NULL, 0, 0, true};
        bp_upload(c, bp->pos + s, bp->row0 + s, t - s, &d.pos, &d.row0);
        cu_attention(c, out + (size_t)s * hq, q + (size_t)s * hq, kv->k, kv->v, ct, t - s, d, max_keys, p);
    }
    if (launches > 1) cu_x8_forget(c); // the int8 / f16 copies of out, if any, cover one part of it
}

static void op_matmul_swiglu(ll_backend *b, const ll_weight *wg, const ll_weight *wu, const float *x, float *g,
                             float *u, int n_tok) {
    cu_impl *c = cu_of(b);
    const cu_wview *vg = cu_weight_find(c, wg), *vu = cu_weight_find(c, wu);
    cu_norm_guard(c, g, fbytes(n_tok, vg->ne1));
    cu_norm_guard(c, u, fbytes(n_tok, vu->ne1));
    cu_matmul_swiglu(c, vg, vu, x, g, u, n_tok);
}

static void op_rope_kv_store(ll_backend *b, float *q, float *k, const float *v, const ll_kv_cache *kv,
                             const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv) {
    cu_impl *c = cu_of(b);
    const int n_tok = bp->n_tok, kvd = n_head_kv * p->head_dim;
    const uint32_t ct = kv_type(kv, p->head_dim);
    cu_norm_guard(c, q, fbytes(n_tok, (int64_t)p->n_head * p->head_dim));
    cu_norm_guard(c, k, fbytes(n_tok, kvd));
    cu_norm_guard(c, v, fbytes(n_tok, kvd));
    cu_norm_guard(c, kv->k, kv_bytes(kv, kvd));
    cu_norm_guard(c, kv->v, kv_bytes(kv, kvd));
    cu_x8_forget(c);
    bp_check(kv, bp);
    const cu_bpos d = bpos_of(c, bp);
    cu_rope_kv_store(c, q, k, v, kv->k, kv->v, ct, d, n_tok, p, n_head_kv, rope_ff(c, p));
}

// q/k/v, RoPE and the cache store. Where the q/k/v matvec runs (decode) and the rotated pairs are adjacent rows
// (not NeoX), the matvec rotates and stores its own rows: one launch instead of two.
static void op_qkv_rope_store(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3],
                              const ll_kv_cache *kv, const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv) {
    cu_impl *c = cu_of(b);
    const cu_wview *v[3] = {cu_weight_find(c, w[0]), cu_weight_find(c, w[1]), cu_weight_find(c, w[2])};
    const int n_tok = bp->n_tok, hd = p->head_dim, kvd = n_head_kv * hd;
    const uint32_t ct = kv_type(kv, hd);
    for (int i = 0; i < 3; i++) cu_norm_guard(c, y[i], fbytes(n_tok, v[i]->ne1));
    cu_norm_guard(c, kv->k, kv_bytes(kv, kvd));
    cu_norm_guard(c, kv->v, kv_bytes(kv, kvd));
    bp_check(kv, bp);
    LL_ASSERT(p->n_rot % 2 == 0 && p->n_rot <= hd && p->n_rot / 2 <= ROPE_MAX_HALF);
    // (a Q8_0 cache row is quantized by blocks of 32 values, which the matvec's blocks of 2 or 4 rows do not hold)
    const bool shapes = c->fuse_rope && !p->neox && ct != LL_TYPE_Q8_0 && v[0]->ne1 == (int64_t)p->n_head * hd &&
                        v[1]->ne1 == kvd && v[2]->ne1 == kvd;
    // the int8 matvec's blocks are 4 rows, the float matvec's 2: a head (and so each pair) within whole blocks
    const bool q8 = shapes && hd % 4 == 0 && cu_mmvq3_ok(c, v, n_tok);
    const bool f = shapes && hd % 2 == 0 && cu_matvec3_ok(v, n_tok);
    const float *ff = rope_ff(c, p);
    if (!q8 && !f) {
        op_matmul3(b, w, x, y, n_tok);
        cu_x8_forget(c);
        cu_rope_kv_store(c, y[0], y[1], y[2], kv->k, kv->v, ct, bpos_of(c, bp), n_tok, p, n_head_kv, ff);
        return;
    }
    const cu_rope_epi re = {kv->k, kv->v, ff, bpos_of(c, bp), 0, hd, p->n_rot, kvd, p->base, ct == LL_TYPE_F16};
    if (q8) cu_mmvq3(c, v, x, y, n_tok, &re); // x's int8 copy stays valid: the outputs never overlap x here
    else cu_matvec3(c, v, x, y, &re);
}

static void op_kv_store(ll_backend *b, const ll_kv_cache *kv, const float *k, const float *v, int kvd,
                        const ll_batch_pos *bp) {
    cu_impl *c = cu_of(b);
    const int n_tok = bp->n_tok;
    if (kv->type == LL_TYPE_Q8_0 && kvd % 32 != 0) ll_panic(__FILE__, __LINE__, "a Q8_0 KV cache needs kvd % 32 == 0");
    const uint32_t ct = kv_type(kv, 32);
    cu_norm_guard(c, k, fbytes(n_tok, kvd));
    cu_norm_guard(c, v, fbytes(n_tok, kvd));
    cu_norm_guard(c, kv->k, kv_bytes(kv, kvd));
    cu_norm_guard(c, kv->v, kv_bytes(kv, kvd));
    cu_x8_forget(c);
    bp_check(kv, bp);
    cu_kv_store(c, kv->k, kv->v, ct, k, v, kvd, n_tok, bpos_of(c, bp));
}

static void op_swiglu(ll_backend *b, float *g, const float *u, int n, int n_tok) {
    cu_norm_guard(cu_of(b), g, fbytes(n_tok, n));
    cu_norm_guard(cu_of(b), u, fbytes(n_tok, n));
    cu_x8_forget(cu_of(b));
    cu_swiglu(cu_of(b), g, u, n, n_tok);
}
static void op_add(ll_backend *b, float *y, const float *x, size_t n) {
    cu_norm_guard(cu_of(b), y, n * sizeof(float));
    cu_norm_guard(cu_of(b), x, n * sizeof(float));
    cu_x8_forget(cu_of(b));
    cu_add(cu_of(b), y, x, n);
}

static void op_get_rows(ll_backend *b, float *y, const ll_weight *w, const int32_t *ids, int n_tok) {
    cu_impl *c = cu_of(b);
    cu_norm_guard(c, y, fbytes(n_tok, w->ne0));
    cu_x8_forget(c);
    for (int i = 0; i < n_tok; i++) LL_ASSERT(ids[i] >= 0 && ids[i] < w->ne1);
    // a recorded step reads its token ids where step_begin put them
    LL_ASSERT(!c->recording || n_tok == c->step_ntok);
    const int32_t *dev = c->recording ? cu_step_ids(c) : cu_ids_to_device(c, ids, n_tok);
    cu_dequant_rows(c, cu_weight_find(c, w), dev, n_tok, y);
}

static int op_topk(ll_backend *b, const float *x, int n, int k, float *vals, int32_t *ids) {
    cu_norm_guard(cu_of(b), x, (size_t)n * sizeof(float));
    return cu_topk(cu_of(b), x, n, k, vals, ids);
}

static void op_sync(ll_backend *b) { CU_CHECK(cudaStreamSynchronize(cu_of(b)->stream)); }

// ---- decode steps as CUDA graphs ----------------------------------------------------------------------------
// A step's whole forward (about 16 kernels per layer) is recorded once and replayed with one launch: no per-kernel
// launch cost on the host, shorter gaps on the GPU. Steps of up to CU_STEP_MAX tokens: one sequence's token (or run
// of tokens), or one token of each of several sequences. Kernels that depend on the tokens (get_rows, RoPE, the
// cache store, attention) read the ids, positions and first rows from step_dev, so a record is valid at every
// position and for any sequences of its context; the buffers it uses are the context's (key): a record is
// replayed for its key, n_tok and shape (one run or not) only, and dropped by step_forget(key), op_free, prepare
// and reserve. Longer batches (prefill) run op by op.
static bool op_step_begin(ll_backend *b, const void *key, const int32_t *ids, const ll_batch_pos *bp) {
    cu_impl *c = cu_of(b);
    const int n = bp->n_tok;
    LL_ASSERT(!c->recording);
    if (!c->graphs || !c->step_pin || n < 1 || n > c->graph_max || n > c->max_tok) return false;
    int n_past, r0;
    const bool single = bp_run(bp, &n_past, &r0);
    CU_CHECK(cudaEventSynchronize(c->step_ev)); // the last copy from step_pin is done
    for (int t = 0; t < n; t++) {
        c->step_pin[t] = ids[t];
        c->step_pin[CU_STEP_MAX + t] = c->step_pos[t] = single ? n_past + t : bp->pos[t];
        c->step_pin[2 * CU_STEP_MAX + t] = c->step_row0[t] = bp->row0[t];
    }
    c->step_ntok = n, c->step_single = single, c->step_key = key;
    CU_CHECK(cudaMemcpyAsync(c->step_dev, c->step_pin, 3 * CU_STEP_MAX * sizeof(int32_t), cudaMemcpyHostToDevice,
                             c->stream));
    CU_CHECK(cudaEventRecord(c->step_ev, c->stream));
    cu_norm_settle(c); // not into the record (nor left for after a replay)
    cu_x8_forget(c);   // a replay rewrites the int8 and f16 copies
    const int i = graph_find(c, key, n, single);
    if (i >= 0) {
        c->graph_tab[i].used = ++c->graph_clock;
        CU_CHECK(cudaGraphLaunch(c->graph_tab[i].exec, c->stream));
        return true;
    }
    CU_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->recording = true;
    return false;
}

static void op_step_end(ll_backend *b, bool run) {
    cu_impl *c = cu_of(b);
    if (!c->recording) return;
    cudaGraph_t g = NULL;
    c->recording = false;
    CU_CHECK(cudaStreamEndCapture(c->stream, &g));
    cu_x8_forget(c);
    if (run) {
        const int i = graph_slot(c);
        CU_CHECK(cudaGraphInstantiate(&c->graph_tab[i].exec, g, 0));
        c->graph_tab[i].key = c->step_key;
        c->graph_tab[i].n_tok = c->step_ntok;
        c->graph_tab[i].single = c->step_single;
        c->graph_tab[i].used = ++c->graph_clock;
        CU_CHECK(cudaGraphLaunch(c->graph_tab[i].exec, c->stream));
    } else {
        c->pend.on = false; // a norm left pending by the record: its kernels never ran
    }
    CU_CHECK(cudaGraphDestroy(g));
}

static void op_step_forget(ll_backend *b, const void *key) {
    cu_impl *c = cu_of(b);
    LL_ASSERT(!c->recording);
    if (key) graph_drop(c, key);
}

static ll_status op_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                            ll_error *err) {
    cu_norm_settle(cu_of(b)); // before its buffers (and norm_part) are replaced
    graph_drop(cu_of(b), NULL);
    cu_x8_forget(cu_of(b));
    return cu_prepare(cu_of(b), ws, n_ws, max_tok, max_ctx, err);
}

static ll_status op_reserve(ll_backend *b, int max_tok, int max_ctx, ll_error *err) {
    cu_impl *c = cu_of(b);
    LL_ASSERT(!c->recording);
    if (max_tok <= c->max_tok && max_ctx <= c->max_ctx) return LL_OK;
    cu_norm_settle(c);
    graph_drop(c, NULL); // records hold the scratch's addresses and split counts
    cu_x8_forget(c);
    return cu_reserve(c, max_tok, max_ctx, err);
}

static void op_mem_info(ll_backend *b, uint64_t *free_bytes, uint64_t *total_bytes) {
    size_t fr = 0, tot = 0;
    CU_CHECK(cudaMemGetInfo(&fr, &tot));
    if (free_bytes) *free_bytes = fr;
    if (total_bytes) *total_bytes = tot;
}

static uint64_t op_plan_bytes(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx) {
    (void)b;
    return cu_plan_bytes(ws, n_ws, max_tok, max_ctx);
}
static void op_destroy(ll_backend *b);

static const ll_backend_ops k_cuda_ops = {
    .name = "cuda",
    .supports = op_supports,
    .alloc = op_alloc,
    .free = op_free,
    .upload = op_upload,
    .download = op_download,
    .matmul = op_matmul,
    .matmul3 = op_matmul3,
    .matmul_add = op_matmul_add,
    .matmul_add_rmsnorm = op_matmul_add_rmsnorm,
    .rmsnorm = op_rmsnorm,
    .add_bias = op_add_bias,
    .rope = op_rope,
    .attention = op_attention,
    .rope_kv_store = op_rope_kv_store,
    .qkv_rope_store = op_qkv_rope_store,
    .matmul_swiglu = op_matmul_swiglu,
    .kv_store = op_kv_store,
    .copy = op_copy,
    .swiglu = op_swiglu,
    .add = op_add,
    .get_rows = op_get_rows,
    .topk = op_topk,
    .synchronize = op_sync,
    .step_begin = op_step_begin,
    .step_end = op_step_end,
    .step_forget = op_step_forget,
    .prepare = op_prepare,
    .reserve = op_reserve,
    .mem_info = op_mem_info,
    .plan_bytes = op_plan_bytes,
    .destroy = op_destroy,
};

// word w in the list s (words separated by spaces, commas or '+'); s may be NULL
static bool has_word(const char *s, const char *w) {
    const size_t n = strlen(w);
    for (const char *p = s; p && *p;) {
        const size_t k = strcspn(p, " ,+");
        if (k == n && !strncmp(p, w, n)) return true;
        p += k + (p[k] != 0);
    }
    return false;
}

static ll_status init_device(cu_impl *c, ll_error *err) {
    char why[256];
    if (ll_backend_cuda_device_count(why, sizeof why) < 1) return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s", why);
    c->dev = 0;
    CU_TRY(cudaSetDevice(c->dev));
    CU_TRY(cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, c->dev));
    CU_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    for (int i = 0; i < CU_ID_SLOTS; i++) CU_TRY(cudaEventCreateWithFlags(&c->ids_ev[i], cudaEventDisableTiming));
    cudaDeviceProp prop;
    CU_TRY(cudaGetDeviceProperties(&prop, c->dev));
    blas_open(c);
    const char *mv = getenv("LLMLAB_CUDA_MV_ROWS"); // a tuning knob for bench/cuda_bench.sh (2, 4 or 8)
    c->mv_rows = mv && (atoi(mv) == 4 || atoi(mv) == 8) ? atoi(mv) : 2;
    const char *mq = getenv("LLMLAB_CUDA_MVQ_ROWS"); // likewise for the single int8 matvec (o, down)
    c->mvq_rows = mq && (atoi(mq) == 2 || atoi(mq) == 4 || atoi(mq) == 8) ? atoi(mq) : 0;
    const char *pd = getenv("LLMLAB_CUDA_PDL"); // 0: kernels start only when the previous one ended
    c->pdl = prop.major >= 9 && !(pd && !strcmp(pd, "0"));
    const char *pl = getenv("LLMLAB_CUDA_PRELOAD"); // 0: int8 matvecs load their weights after waiting for x
    c->mv_preload = !(pl && !strcmp(pl, "0"));
    // LLMLAB_CUDA_NOFUSE: fusions to leave out (words, separated by spaces, commas or '+'): "rope": q/k/v, RoPE
    // and the cache store as two launches; "mixed": q/k/v of two types (Q4_K + Q6_K) as three matvecs; "swq8": the
    // int8 copy of SwiGLU's output by a launch of its own; "norm": the residual matvec and the next RMSNorm as two
    // launches; "attn2": the decode attention's splits walk their keys one by one (k_attn_split)
    const char *nf = getenv("LLMLAB_CUDA_NOFUSE");
    c->fuse_rope = !has_word(nf, "rope");
    c->attn_dec2 = !has_word(nf, "attn2");
    c->mv_mixed = !has_word(nf, "mixed");
    c->swiglu_q8 = !has_word(nf, "swq8");
    c->fuse_norm = !has_word(nf, "norm");
    const char *aw = getenv("LLMLAB_CUDA_AN_WARPS"); // a tuning knob (16 or 32)
    c->an_warps = aw && (atoi(aw) == 16 || atoi(aw) == 32) ? atoi(aw) : 0; // 0: by type (an_default)
    const char *ak = getenv("LLMLAB_CUDA_AN_KS"); // likewise (1, 2 or 4; 4 only at 32 warps)
    c->an_ks = ak && (atoi(ak) == 1 || atoi(ak) == 2 || atoi(ak) == 4) ? atoi(ak) : 0;
    // which residual matvecs take the norm: "all" (the default), "o" (rows no longer than the output), "down" (rows
    // longer)
    const char *ao = getenv("LLMLAB_CUDA_AN_ONLY");
    c->an_only = !ao ? 0 : !strcmp(ao, "o") ? 1 : !strcmp(ao, "down") ? 2 : 0;
    const char *gm = getenv("LLMLAB_CUDA_GEMM_MIN_TOK"); // quantized batches from this many tokens take the GEMM
    c->gemm_min_q = gm && atoi(gm) >= 2 && atoi(gm) <= 1024 ? atoi(gm) : CU_GEMM_MIN_TOK_QUANT;
    const char *gr = getenv("LLMLAB_CUDA_GRAPHS"); // 0: decode op by op (for comparison)
    c->graphs = !(gr && !strcmp(gr, "0"));
    const char *gx = getenv("LLMLAB_CUDA_GRAPH_MAX"); // most tokens of a recorded step (1 to CU_STEP_MAX)
    c->graph_max = gx && atoi(gx) >= 1 && atoi(gx) <= CU_STEP_MAX ? atoi(gx) : CU_STEP_MAX;
    CU_TRY(cudaMallocHost((void **)&c->step_pin, 3 * CU_STEP_MAX * sizeof(int32_t)));
    CU_TRY(cudaMalloc((void **)&c->step_dev, 3 * CU_STEP_MAX * sizeof(int32_t)));
    CU_TRY(cudaEventCreateWithFlags(&c->step_ev, cudaEventDisableTiming));
    for (int i = 0; i < CU_BP_SLOTS; i++) CU_TRY(cudaEventCreateWithFlags(&c->bp_ev[i], cudaEventDisableTiming));
    ll_log(LL_LOG_INFO, "cuda: %s (sm_%d%d, %d SMs, %.1f GiB)%s%s", prop.name, prop.major, prop.minor, c->n_sm,
           prop.totalGlobalMem / 1073741824.0, c->blas.gemm ? "" : "; no cuBLAS, batches use the matvec: ",
           c->blas.gemm ? "" : c->blas_why);
    return LL_OK;
}

extern "C" ll_backend *ll_backend_cuda_init(int n_threads, ll_error *err) {
    (void)n_threads;
    ll_backend *b = (ll_backend *)ll_calloc(1, sizeof *b, err);
    cu_impl *c = (cu_impl *)ll_calloc(1, sizeof *c, err);
    if (!b || !c) {
        free(b);
        free(c);
        return NULL;
    }
    b->ops = &k_cuda_ops;
    b->impl = c;
    if (init_device(c, err) != LL_OK) {
        op_destroy(b);
        return NULL;
    }
    return b;
}

void cu_release(cu_impl *c) {
    if (c->stream) (void)cudaStreamSynchronize(c->stream); // nothing in flight reads what goes
    void *dev[] = {c->wmem, c->deq, c->xh, c->attn_part, c->ids_dev, c->x8_mem, c->norm_part, c->bp_dev};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) CU_CHECK(cudaFree(dev[i]));
    if (c->ids_pinned) CU_CHECK(cudaFreeHost(c->ids_pinned));
    if (c->bp_pin) CU_CHECK(cudaFreeHost(c->bp_pin));
    free(c->w);
    free(c->bp_host);
    c->wmem = c->deq = c->xh = NULL;
    c->attn_part = NULL;
    c->ids_dev = c->ids_pinned = NULL;
    c->bp_dev = c->bp_pin = c->bp_host = NULL;
    memset(c->bp_n, 0, sizeof c->bp_n);
    c->x8 = c->x8b = cu_x8{NULL, NULL, NULL, 0};
    c->x8_mem = NULL;
    c->norm_part = NULL;
    c->pend.on = false;
    c->w = NULL;
    c->n_w = 0;
}

static void op_destroy(ll_backend *b) {
    cu_impl *c = cu_of(b);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    for (int i = 0; i < CU_GRAPHS; i++)
        if (c->graph_tab[i].exec) (void)cudaGraphExecDestroy(c->graph_tab[i].exec);
    if (c->step_pin) (void)cudaFreeHost(c->step_pin);
    if (c->step_ev) (void)cudaEventDestroy(c->step_ev);
    for (int i = 0; i < CU_BP_SLOTS; i++)
        if (c->bp_ev[i]) (void)cudaEventDestroy(c->bp_ev[i]);
    if (c->topk_buf) (void)cudaFree(c->topk_buf);
    if (c->topk_host) (void)cudaFreeHost(c->topk_host);
    if (c->step_dev) (void)cudaFree(c->step_dev);
    cu_release(c);
    if (c->blas.gemm) c->blas.destroy(c->blas.h);
    for (int i = 0; i < CU_ID_SLOTS; i++)
        if (c->ids_ev[i]) (void)cudaEventDestroy(c->ids_ev[i]);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    free(c);
    free(b);
}
