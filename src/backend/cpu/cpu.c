// cpu.c — the CPU backend: the reference every other backend is tested against. Matmuls go to matmul.c's
// SIMD kernels, attention and the KV cache store to attention.c; norms, RoPE and SwiGLU are plain C here, threaded
// over rows with the pool. Scratch is sized in prepare and grown by reserve.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/matmul.h"
#include "core/pool.h"

static cpu_impl *impl_of(ll_backend *b) { return b->impl; }

static bool cpu_supports(ll_backend *b, ll_op op, uint32_t type) {
    (void)b;
    if (op == LL_OP_MATMUL) return ll_matmul_supports(type);
    if (op == LL_OP_GET_ROWS) {
        const ll_type_traits *t = ll_type_get(type);
        return t && t->to_float;
    }
    if (op == LL_OP_ATTENTION) return ll_cpu_kv_type_ok(type);
    return type == LL_TYPE_F32;
}

static void *cpu_alloc(ll_backend *b, size_t bytes, ll_error *err) { return ll_aligned_alloc(bytes, 64, err); }
static void cpu_free(ll_backend *b, void *p) { ll_aligned_free(p); }
static void cpu_copy(ll_backend *b, void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_sync(ll_backend *b) {}

static int rw_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const cpu_rw *)a)->host, y = (uintptr_t)((const cpu_rw *)b)->host;
    return x < y ? -1 : x > y;
}

// The data and layout ll_matmul gets for w: its repacked copy where prepare made one, else w itself.
static const void *cpu_wdata(const cpu_impl *c, const ll_weight *w, uint32_t *type) {
    *type = w->type;
    if (!c->n_rw) return w->data;
    cpu_rw key = {w->data, NULL, 0};
    const cpu_rw *r = bsearch(&key, c->rw, (size_t)c->n_rw, sizeof key, rw_cmp);
    if (!r) return w->data;
    *type = r->type;
    return r->data;
}

static void cpu_matmul(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok) {
    cpu_impl *c = impl_of(b);
    uint32_t t;
    const void *W = cpu_wdata(c, w, &t);
    ll_matmul(c->pool, t, W, x, y, (int)w->ne0, (int)w->ne1, n_tok, c->wsp);
}

// q, k, v (or gate, up) on one x: ll_matmul_multi when the types and row lengths agree (activations converted
// once, one dispatch at decode), else one matmul each.
static void cpu_matmul_n(ll_backend *b, int n, const ll_weight *const *w, const float *x, float *const *y, int n_tok) {
    cpu_impl *c = impl_of(b);
    const void *W[LL_MM_MULTI];
    uint32_t t[LL_MM_MULTI];
    int n_out[LL_MM_MULTI];
    bool same = true;
    for (int i = 0; i < n; i++) {
        W[i] = cpu_wdata(c, w[i], &t[i]);
        n_out[i] = (int)w[i]->ne1;
        same &= t[i] == t[0] && w[i]->ne0 == w[0]->ne0;
    }
    if (!same) {
        for (int i = 0; i < n; i++) cpu_matmul(b, w[i], x, y[i], n_tok);
        return;
    }
    ll_matmul_multi(c->pool, t[0], n, W, x, y, (int)w[0]->ne0, n_out, n_tok, c->wsp);
}

static void cpu_matmul3(ll_backend *b, const ll_weight *const w[3], const float *x, float *const y[3], int n_tok) {
    cpu_matmul_n(b, 3, w, x, y, n_tok);
}

static void cpu_swiglu(ll_backend *b, float *g, const float *u, int n, int n_tok);

static void cpu_matmul_swiglu(ll_backend *b, const ll_weight *w_gate, const ll_weight *w_up, const float *x, float *g,
                              float *u, int n_tok) {
    const ll_weight *w[2] = {w_gate, w_up};
    float *y[2] = {g, u};
    cpu_matmul_n(b, 2, w, x, y, n_tok);
    cpu_swiglu(b, g, u, (int)w_gate->ne1, n_tok);
}

static void cpu_rmsnorm(ll_backend *b, float *y, const float *x, const ll_weight *w, int n, int n_tok, float eps) {
    const float *g = w->data;
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (size_t)t * n;
        float *yr = y + (size_t)t * n;
        double ss = 0; // double: the sum of squares of 8k values must not lose the small ones
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) yr[i] = xr[i] * scale * g[i];
    }
}

static void cpu_add_bias(ll_backend *b, float *x, const ll_weight *bias, int n, int n_tok) {
    const float *bv = bias->data;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) x[(size_t)t * n + i] += bv[i];
}

// RoPE (Su et al. 2021, arXiv:2104.09864): pair j of a head rotates by pos * base^(-2j/n_rot).
static void cpu_rope(ll_backend *b, float *x, const int32_t *pos, int n_tok, const ll_rope_params *p) {
    enum { MAX_PAIRS = 512 };
    int half = p->n_rot / 2;
    LL_ASSERT(half <= MAX_PAIRS);
    double freq[MAX_PAIRS]; // theta_j = base^(-2j/n_rot) / factor_j, once per call
    for (int j = 0; j < half; j++)
        freq[j] = pow((double)p->base, -2.0 * j / p->n_rot) / (p->freq_factors ? p->freq_factors[j] : 1.0);
    for (int t = 0; t < n_tok; t++) {
        for (int j = 0; j < half; j++) {
            double ang = (double)pos[t] * freq[j];
            float cs = (float)cos(ang), sn = (float)sin(ang);
            for (int h = 0; h < p->n_head; h++) {
                float *v = x + ((size_t)t * p->n_head + h) * p->head_dim;
                int i0 = p->neox ? j : 2 * j, i1 = p->neox ? j + half : 2 * j + 1;
                float a = v[i0], c = v[i1];
                v[i0] = a * cs - c * sn;
                v[i1] = a * sn + c * cs;
            }
        }
    }
}

typedef struct swiglu_job {
    float *g;
    const float *u;
    size_t n;
} swiglu_job;

static void swiglu_worker(void *vctx, int ith, int nth) {
    swiglu_job *j = vctx;
    int64_t lo, hi;
    ll_split_range((int64_t)j->n, ith, nth, 64, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->g[i] = j->g[i] / (1.0f + expf(-j->g[i])) * j->u[i];
}

// g = silu(g) * u (Shazeer 2020, arXiv:2002.05202); threaded when the batch makes it worth a dispatch.
static void cpu_swiglu(ll_backend *b, float *g, const float *u, int n, int n_tok) {
    swiglu_job j = {g, u, (size_t)n * n_tok};
    if (j.n >= 32768) ll_pool_run(impl_of(b)->pool, swiglu_worker, &j);
    else swiglu_worker(&j, 0, 1);
}

static void cpu_add(ll_backend *b, float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_get_rows(ll_backend *b, float *y, const ll_weight *w, const int32_t *ids, int n_tok) {
    const ll_type_traits *t = ll_type_get(w->type);
    uint64_t row_bytes;
    LL_ASSERT(t && t->to_float && ll_type_row_size(w->type, (uint64_t)w->ne0, &row_bytes));
    for (int i = 0; i < n_tok; i++) {
        LL_ASSERT(ids[i] >= 0 && ids[i] < w->ne1);
        t->to_float((const uint8_t *)w->data + (size_t)ids[i] * row_bytes, y + (size_t)i * w->ne0, w->ne0);
    }
}

static void cpu_mem_info(ll_backend *b, uint64_t *free_bytes, uint64_t *total_bytes) {
    *free_bytes = ll_sys_mem_available();
    *total_bytes = ll_sys_mem_total();
}

static ll_status cpu_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                             ll_error *err);
static ll_status cpu_reserve(ll_backend *b, int max_tok, int max_ctx, ll_error *err);
static uint64_t cpu_plan_bytes(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx);
static void cpu_destroy(ll_backend *b);

static const ll_backend_ops k_cpu_ops = {
    .name = "cpu",
    .supports = cpu_supports,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .matmul = cpu_matmul,
    .matmul3 = cpu_matmul3,
    .matmul_swiglu = cpu_matmul_swiglu,
    .rmsnorm = cpu_rmsnorm,
    .add_bias = cpu_add_bias,
    .rope = cpu_rope,
    .attention = ll_cpu_attention,
    .kv_store = ll_cpu_kv_store,
    .copy = cpu_copy,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .get_rows = cpu_get_rows,
    .synchronize = cpu_sync,
    .prepare = cpu_prepare,
    .reserve = cpu_reserve,
    .mem_info = cpu_mem_info,
    .plan_bytes = cpu_plan_bytes,
    .destroy = cpu_destroy,
};

ll_backend *ll_backend_cpu_init(int n_threads, ll_error *err) {
    ll_backend *b = ll_calloc(1, sizeof *b, err);
    cpu_impl *c = ll_calloc(1, sizeof *c, err);
    if (!b || !c) { free(b); free(c); return NULL; }
    c->n_threads = n_threads < 1 ? 1 : n_threads;
    c->pool = ll_pool_init(c->n_threads, err);
    if (!c->pool) { free(b); free(c); return NULL; }
    b->ops = &k_cpu_ops;
    b->impl = c;
    return b;
}

static void rw_free(cpu_impl *c) {
    for (int i = 0; i < c->n_rw; i++) ll_aligned_free(c->rw[i].data);
    free(c->rw);
    c->rw = NULL;
    c->n_rw = 0;
}

static void cpu_destroy(ll_backend *b) {
    cpu_impl *c = b->impl;
    rw_free(c);
    ll_pool_free(c->pool);
    ll_aligned_free(c->wsp);
    ll_aligned_free(c->scores);
    free(c->mm_shapes);
    free(c);
    free(b);
}

// The scratch prepare and reserve allocate for ws at max_tok tokens and max_ctx positions per sequence: the
// largest matmul workspace (of the original or the repacked layout) and the attention scratch of every thread.
static size_t cpu_scratch_bytes(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, int n_threads) {
    size_t wsp = 0;
    for (int i = 0; i < n_ws; i++) {
        size_t s = ll_matmul_wsize(ws[i]->type, (int)ws[i]->ne0, max_tok, n_threads);
        uint32_t rt = ws[i]->ne1 > 1 ? ll_matmul_repack_type(ws[i]->type, (int)ws[i]->ne0, (int)ws[i]->ne1) : 0;
        size_t sr = rt ? ll_matmul_wsize(rt, (int)ws[i]->ne0, max_tok, n_threads) : 0;
        if (s > wsp) wsp = s;
        if (sr > wsp) wsp = sr;
    }
    return wsp + (size_t)n_threads * ll_cpu_attn_scratch_floats(max_ctx) * sizeof(float);
}

// Bytes the repacked copies add to the resident size: a copy less the mapped pages it lets go.
static size_t cpu_repack_extra(const ll_weight *const *ws, int n_ws) {
    size_t grow = 0;
    for (int i = 0; i < n_ws; i++) {
        uint32_t rt = ws[i]->ne1 > 1 ? ll_matmul_repack_type(ws[i]->type, (int)ws[i]->ne0, (int)ws[i]->ne1) : 0;
        uint64_t rb;
        bool dup = false; // tied embeddings: listed twice, repacked once
        for (int k = 0; k < i && rt; k++) dup |= ws[k]->data == ws[i]->data;
        if (!rt || dup || !ll_type_row_size(ws[i]->type, (uint64_t)ws[i]->ne0, &rb)) continue;
        size_t a = ll_matmul_repack_bytes(rt, (int)ws[i]->ne0, (int)ws[i]->ne1), b = (size_t)rb * (size_t)ws[i]->ne1;
        if (!ws[i]->mapped) grow += a; // the original stays resident beside its copy
        else if (a > b) grow += a - b;
    }
    return grow;
}

// Repack of one weight, its groups of rows split over the pool's threads.
typedef struct rw_job {
    const ll_weight *w;
    cpu_rw *r;
} rw_job;

static void rw_thread(void *vctx, int ith, int nth) {
    const rw_job *j = vctx;
    int64_t lo, hi, G = LL_MM_X16_ROWS; // in groups of rows
    ll_split_range(j->w->ne1 / G, ith, nth, 1, &lo, &hi);
    if (hi <= lo) return;
    uint64_t rb;
    LL_ASSERT(ll_type_row_size(j->w->type, (uint64_t)j->w->ne0, &rb));
    ll_matmul_repack(j->r->type, (const uint8_t *)j->w->data + (size_t)(G * lo) * rb,
                     (uint8_t *)j->r->data + ll_matmul_repack_bytes(j->r->type, (int)j->w->ne0, (int)(G * lo)),
                     (int)j->w->ne0, (int)(G * (hi - lo)));
}

// The weights this build multiplies faster in another layout (Q4_0, Q5_0, Q8_0, Q4_K on AVX-512 VNNI: 16-row
// groups; Q4_K takes 2.8% more bytes, its scales unpacked) are copied into it once. Where the original lies in the
// model file's mapping (ll_weight.mapped), its pages are then let go (MADV_DONTNEED on a read-only shared file
// mapping: the page cache keeps them, so the next load stays warm, and a later read, e.g. a tied embedding's
// get_rows, maps them again), so the resident size stays about the file's. (MADV_PAGEOUT, tried first, evicted
// the page cache too: the next load of a 1.1 GB file read it from disk, 1.4 s of repack instead of 0.4.)
static ll_status rw_prepare(cpu_impl *c, const ll_weight *const *ws, int n_ws, ll_error *err) {
    rw_free(c);
    int n = 0;
    for (int i = 0; i < n_ws; i++)
        if (ws[i]->ne1 > 1 && ll_matmul_repack_type(ws[i]->type, (int)ws[i]->ne0, (int)ws[i]->ne1)) n++;
    if (!n) return LL_OK;
    c->rw = calloc((size_t)n, sizeof *c->rw);
    if (!c->rw) return ll_err_set(err, LL_ERR_NOMEM, "out of memory for the repacked weights' table");
    size_t total = 0;
    const double t0 = ll_time_s();
    for (int i = 0; i < n_ws; i++) {
        const ll_weight *w = ws[i];
        uint32_t to = w->ne1 > 1 ? ll_matmul_repack_type(w->type, (int)w->ne0, (int)w->ne1) : 0;
        if (!to) continue;
        bool dup = false; // the same tensor listed twice (tied embeddings)
        for (int k = 0; k < c->n_rw; k++) dup |= c->rw[k].host == w->data;
        if (dup) continue;
        uint64_t rb;
        LL_ASSERT(ll_type_row_size(w->type, (uint64_t)w->ne0, &rb));
        size_t bytes = ll_matmul_repack_bytes(to, (int)w->ne0, (int)w->ne1), orig = (size_t)rb * (size_t)w->ne1;
        cpu_rw *r = &c->rw[c->n_rw];
        r->data = ll_aligned_alloc(bytes, 64, err);
        if (!r->data) {
            rw_free(c);
            return ll_err_set(err, LL_ERR_NOMEM, "out of memory repacking %s (%zu bytes; %zu done)",
                              w->name ? w->name : "a weight", bytes, total);
        }
        r->host = w->data;
        r->type = to;
        c->n_rw++;
        rw_job j = {w, r};
        ll_pool_run(c->pool, rw_thread, &j);
        total += bytes;
        if (w->mapped) { // our page table entries go; the page cache keeps the file's data for the next load
            uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)w->data + pg - 1) / pg * pg,
                      e = ((uintptr_t)w->data + orig) / pg * pg;
            if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
        }
    }
    qsort(c->rw, (size_t)c->n_rw, sizeof *c->rw, rw_cmp);
    ll_log(LL_LOG_INFO, "cpu: %d weights repacked for the SIMD kernels (%.2f GB in %.2f s)", c->n_rw, total / 1e9,
           ll_time_s() - t0);
    return LL_OK;
}

// The matmul workspace for batches of max_tok tokens: the largest any recorded (layout, row length) needs.
static size_t cpu_wsp_bytes(const cpu_impl *c, int max_tok) {
    size_t wsp = 0;
    for (int i = 0; i < c->n_mm_shapes; i++) {
        size_t s = ll_matmul_wsize(c->mm_shapes[i].type, c->mm_shapes[i].ne0, max_tok, c->n_threads);
        if (s > wsp) wsp = s;
    }
    return wsp;
}

// The distinct (layout after repacking, row length) pairs of the matrices in ws, for reserve to size the
// workspace by without the weights.
static ll_status cpu_record_shapes(cpu_impl *c, const ll_weight *const *ws, int n_ws, ll_error *err) {
    free(c->mm_shapes);
    c->mm_shapes = NULL;
    c->n_mm_shapes = 0;
    if (n_ws <= 0) return LL_OK;
    c->mm_shapes = calloc((size_t)n_ws, sizeof *c->mm_shapes);
    if (!c->mm_shapes) return ll_err_set(err, LL_ERR_NOMEM, "out of memory for the matmul shapes (%d weights)", n_ws);
    for (int i = 0; i < n_ws; i++) {
        if (ws[i]->ne1 <= 1 || !ll_matmul_supports(ws[i]->type)) continue; // vectors: norms, biases
        uint32_t t;
        (void)cpu_wdata(c, ws[i], &t);
        bool seen = false;
        for (int k = 0; k < c->n_mm_shapes; k++)
            seen |= c->mm_shapes[k].type == t && c->mm_shapes[k].ne0 == (int)ws[i]->ne0;
        if (!seen) c->mm_shapes[c->n_mm_shapes++] = (cpu_mm_shape){t, (int)ws[i]->ne0};
    }
    return LL_OK;
}

static ll_status cpu_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                             ll_error *err) {
    cpu_impl *c = impl_of(b);
    ll_status st = rw_prepare(c, ws, n_ws, err);
    if (st == LL_OK) st = cpu_record_shapes(c, ws, n_ws, err);
    if (st != LL_OK) return st;
    ll_aligned_free(c->wsp);
    ll_aligned_free(c->scores);
    c->wsp = NULL, c->scores = NULL;
    c->wsp_size = c->scr_floats = 0;
    c->max_tok = c->max_ctx = 0;
    return cpu_reserve(b, max_tok, max_ctx, err);
}

// Grows the matmul workspace and the attention scratch; the old buffers stay when a new one cannot be had.
static ll_status cpu_reserve(ll_backend *b, int max_tok, int max_ctx, ll_error *err) {
    cpu_impl *c = impl_of(b);
    if (max_tok < 1) max_tok = 1;
    if (max_ctx < 1) max_ctx = 1;
    size_t wsp = cpu_wsp_bytes(c, max_tok), scr = ll_cpu_attn_scratch_floats(max_ctx);
    if (!c->wsp || wsp > c->wsp_size) {
        void *p = ll_aligned_alloc(wsp ? wsp : 64, 64, NULL);
        if (!p)
            return ll_err_set(err, LL_ERR_NOMEM, "out of memory for the CPU matmul workspace: %zu bytes for %d tokens",
                              wsp, max_tok);
        ll_aligned_free(c->wsp);
        c->wsp = p;
        c->wsp_size = wsp;
    }
    if (!c->scores || scr > c->scr_floats) {
        size_t bytes = (size_t)c->n_threads * scr * sizeof(float);
        float *p = ll_aligned_alloc(bytes, 64, NULL);
        if (!p)
            return ll_err_set(err, LL_ERR_NOMEM,
                              "out of memory for the CPU attention scratch: %zu bytes for %d positions, %d threads",
                              bytes, max_ctx, c->n_threads);
        ll_aligned_free(c->scores);
        c->scores = p;
        c->scr_floats = scr;
    }
    if (max_tok > c->max_tok) c->max_tok = max_tok;
    if (max_ctx > c->max_ctx) c->max_ctx = max_ctx;
    return LL_OK;
}

static uint64_t cpu_plan_bytes(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx) {
    const cpu_impl *c = impl_of(b);
    return (uint64_t)cpu_scratch_bytes(ws, n_ws, max_tok, max_ctx, c->n_threads) + cpu_repack_extra(ws, n_ws);
}
