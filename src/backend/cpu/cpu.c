// cpu.c — the CPU backend: the reference every other backend is tested against. Matmuls go to matmul.c's
// SIMD kernels; norms, RoPE, attention and SwiGLU are plain C here, threaded over rows/heads with the pool.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "core/pool.h"

typedef struct cpu_impl {
    ll_pool *pool;
    int n_threads;
    void *wsp; // matmul workspace
    size_t wsp_size;
    float *scores; // (n_threads, max_ctx) attention scores
    int max_ctx;
} cpu_impl;

static cpu_impl *impl_of(ll_backend *b) { return b->impl; }

static bool cpu_supports(ll_backend *b, ll_op op, uint32_t type) {
    (void)b;
    if (op == LL_OP_MATMUL) return ll_matmul_supports(type);
    if (op == LL_OP_GET_ROWS) {
        const ll_type_traits *t = ll_type_get(type);
        return t && t->to_float;
    }
    return type == LL_TYPE_F32;
}

static void *cpu_alloc(ll_backend *b, size_t bytes, ll_error *err) { return ll_aligned_alloc(bytes, 64, err); }
static void cpu_free(ll_backend *b, void *p) { ll_aligned_free(p); }
static void cpu_copy(ll_backend *b, void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_sync(ll_backend *b) {}

static void cpu_matmul(ll_backend *b, const ll_weight *w, const float *x, float *y, int n_tok) {
    cpu_impl *c = impl_of(b);
    ll_matmul(c->pool, w->type, w->data, x, y, (int)w->ne0, (int)w->ne1, n_tok, c->wsp);
}

// q, k, v (or gate, up) on one x: ll_matmul_multi when the types and row lengths agree (activations converted
// once, one dispatch at decode), else one matmul each.
static void cpu_matmul_n(ll_backend *b, int n, const ll_weight *const *w, const float *x, float *const *y, int n_tok) {
    cpu_impl *c = impl_of(b);
    bool same = true;
    for (int i = 1; i < n; i++) same &= w[i]->type == w[0]->type && w[i]->ne0 == w[0]->ne0;
    if (!same) {
        for (int i = 0; i < n; i++) cpu_matmul(b, w[i], x, y[i], n_tok);
        return;
    }
    const void *W[LL_MM_MULTI];
    int n_out[LL_MM_MULTI];
    for (int i = 0; i < n; i++) {
        W[i] = w[i]->data;
        n_out[i] = (int)w[i]->ne1;
    }
    ll_matmul_multi(c->pool, w[0]->type, n, W, x, y, (int)w[0]->ne0, n_out, n_tok, c->wsp);
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

typedef struct attn_job {
    cpu_impl *c;
    float *out;
    const float *q, *kc, *vc;
    int n_tok;
    const ll_attn_params *p;
} attn_job;

// q . k over hd values with 16 independent partial sums: a plain loop is one serial FMA chain (C forbids
// reassociating it), this form vectorizes to one 16-lane FMA per step.
static float attn_dot(const float *q, const float *k, int hd) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= hd; i += 16)
        for (int u = 0; u < 16; u++) acc[u] += q[i + u] * k[i + u];
    for (; i < hd; i++) acc[0] += q[i] * k[i];
    // halving steps of fixed width (8, 4, 2, 1 lanes): vector adds, where a running sum was 16 dependent adds
    for (int u = 0; u < 8; u++) acc[u] += acc[u + 8];
    for (int u = 0; u < 4; u++) acc[u] += acc[u + 4];
    for (int u = 0; u < 2; u++) acc[u] += acc[u + 2];
    return acc[0] + acc[1];
}

// e^x for x <= 0 (softmax after subtracting the maximum), inline instead of a libm call per score: x = n ln2 + r
// with |r| <= ln2/2 (ln2 in two parts), e^r by Cephes' expf polynomial (relative error ~1e-7; test_model compares
// whole forwards with a float64 reference), times 2^n in the exponent bits. x < -87.3 gives 0.
static inline float exp_le0(float x) {
    float xc = x < -87.3f ? -87.3f : x;
    int n = -(int)(0.5f - xc * 1.44269504f); // round(x / ln2) for x <= 0
    float fn = (float)n, r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
               1.6666665459e-1f) * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, 4);
    return x < -87.3f ? 0.0f : p * two_n;
}

// One (token, head) pair: softmax(q k^T * scale) v over the positions the token may see.
static void attn_one(const attn_job *j, float *sc, int t, int h) {
    const ll_attn_params *p = j->p;
    int hd = p->head_dim, kvh = h / (p->n_head / p->n_head_kv), kv_stride = p->n_head_kv * hd;
    int n_keys = p->n_past + t + 1;
    const float *q = j->q + ((size_t)t * p->n_head + h) * hd;
    float mx = -INFINITY;
    for (int s = 0; s < n_keys; s++) {
        sc[s] = attn_dot(q, j->kc + (size_t)s * kv_stride + (size_t)kvh * hd, hd) * p->scale;
        if (sc[s] > mx) mx = sc[s];
    }
    double sum = 0;
    for (int s = 0; s < n_keys; s++) {
        sc[s] = exp_le0(sc[s] - mx);
        sum += sc[s];
    }
    float inv = (float)(1.0 / sum);
    enum { MAX_HD = 512 };
    LL_ASSERT(hd <= MAX_HD);
    float acc[MAX_HD]; // a local accumulator: the compiler knows it aliases nothing, so the loop vectorizes
    for (int i = 0; i < hd; i++) acc[i] = 0;
    // 16-wide steps of a fixed trip count (the -O2 vectorizer takes those; a loop to hd stayed scalar)
    int hd16 = hd / 16 * 16;
    for (int s = 0; s < n_keys; s++) {
        const float *v = j->vc + (size_t)s * kv_stride + (size_t)kvh * hd;
        float w = sc[s] * inv;
        for (int i = 0; i < hd16; i += 16)
            for (int u = 0; u < 16; u++) acc[i + u] += w * v[i + u];
        for (int i = hd16; i < hd; i++) acc[i] += w * v[i];
    }
    memcpy(j->out + ((size_t)t * p->n_head + h) * hd, acc, (size_t)hd * sizeof(float));
}

static void attn_worker(void *vctx, int ith, int nth) {
    attn_job *j = vctx;
    float *sc = j->c->scores + (size_t)ith * j->c->max_ctx;
    // (token, head) pairs dealt out in turn: under the causal mask token t costs n_past + t + 1 keys, so
    // contiguous ranges gave the last thread about three times the first one's work in a prefill
    int64_t total = (int64_t)j->n_tok * j->p->n_head;
    for (int64_t u = ith; u < total; u += nth) attn_one(j, sc, (int)(u / j->p->n_head), (int)(u % j->p->n_head));
}

static void cpu_attention(ll_backend *b, float *out, const float *q, const float *kc, const float *vc, int n_tok,
                          const ll_attn_params *p) {
    cpu_impl *c = impl_of(b);
    LL_ASSERT(p->n_past + n_tok <= c->max_ctx && p->n_head % p->n_head_kv == 0);
    attn_job j = {c, out, q, kc, vc, n_tok, p};
    ll_pool_run(c->pool, attn_worker, &j);
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

static void cpu_kv_store(ll_backend *b, float *k_cache, float *v_cache, const float *k, const float *v, int kvd,
                         int n_tok, int n_past) {
    memcpy(k_cache + (size_t)n_past * kvd, k, (size_t)n_tok * kvd * sizeof *k);
    memcpy(v_cache + (size_t)n_past * kvd, v, (size_t)n_tok * kvd * sizeof *v);
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

static ll_status cpu_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                             ll_error *err);
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
    .attention = cpu_attention,
    .kv_store = cpu_kv_store,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .get_rows = cpu_get_rows,
    .synchronize = cpu_sync,
    .prepare = cpu_prepare,
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

static void cpu_destroy(ll_backend *b) {
    cpu_impl *c = b->impl;
    ll_pool_free(c->pool);
    ll_aligned_free(c->wsp);
    ll_aligned_free(c->scores);
    free(c);
    free(b);
}

size_t ll_backend_cpu_scratch(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, int n_threads) {
    size_t wsp = 0;
    for (int i = 0; i < n_ws; i++) {
        size_t s = ll_matmul_wsize(ws[i]->type, (int)ws[i]->ne0, max_tok, n_threads);
        if (s > wsp) wsp = s;
    }
    return wsp + (size_t)n_threads * (size_t)max_ctx * sizeof(float);
}

static ll_status cpu_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                             ll_error *err) {
    cpu_impl *c = impl_of(b);
    size_t wsp = 0;
    for (int i = 0; i < n_ws; i++) {
        if (ws[i]->ne1 <= 1 || !ll_matmul_supports(ws[i]->type)) continue; // vectors: norms, biases
        size_t s = ll_matmul_wsize(ws[i]->type, (int)ws[i]->ne0, max_tok, c->n_threads);
        if (s > wsp) wsp = s;
    }
    ll_aligned_free(c->wsp);
    ll_aligned_free(c->scores);
    c->wsp = ll_aligned_alloc(wsp ? wsp : 64, 64, err);
    c->scores = ll_aligned_alloc((size_t)c->n_threads * (size_t)max_ctx * sizeof(float), 64, err);
    c->max_ctx = max_ctx;
    c->wsp_size = wsp;
    if (!c->wsp || !c->scores) return err ? err->status : LL_ERR_NOMEM;
    return LL_OK;
}

ll_status ll_backend_init(ll_backend **out, const char *device, int n_threads, ll_error *err) {
    *out = NULL;
    bool want_cuda = device && !strcmp(device, "cuda");
    if (device && strcmp(device, "cpu") && strcmp(device, "auto") && !want_cuda)
        return ll_err_set(err, LL_ERR_ARG, "unknown device '%s' (cpu, cuda or auto)", device);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    // "cuda" must get the GPU; auto takes it when a device answers, else falls back to the CPU.
    bool want_auto = !device || !strcmp(device, "auto");
    if (want_cuda || (want_auto && ll_backend_cuda_device_count(NULL, 0) > 0)) {
        *out = ll_backend_cuda_init(n_threads, err);
        if (*out || want_cuda) return *out ? LL_OK : (err && err->status != LL_OK ? err->status : LL_ERR_UNSUPPORTED);
        ll_log(LL_LOG_WARN, "CUDA device present but unusable (%s): using the CPU", err ? err->message : "?");
    }
#else
    if (want_cuda)
        return ll_err_set(err, LL_ERR_UNSUPPORTED, "this build has no CUDA (no nvcc at build time): use --device cpu");
#endif
    *out = ll_backend_cpu_init(n_threads, err);
    return *out ? LL_OK : LL_ERR_NOMEM;
}

void ll_backend_free(ll_backend *b) {
    if (!b) return;
    b->ops->destroy(b);
}
