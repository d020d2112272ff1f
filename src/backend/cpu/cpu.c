// cpu.c — the CPU backend: the reference every other backend is tested against. Matmuls go to matmul.c's
// SIMD kernels; norms, RoPE, attention and SwiGLU are plain C here, threaded over rows/heads with the pool.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "core/pool.h"

// A weight repacked at prepare into a layout the kernels read faster (ll_matmul_repack_type), found by the
// host pointer of the original (ll_weight.data).
typedef struct cpu_rw {
    const void *host;
    void *data;
    uint32_t type;
} cpu_rw;

typedef struct cpu_impl {
    ll_pool *pool;
    int n_threads;
    cpu_rw *rw; // sorted by host
    int n_rw;
    void *wsp; // matmul workspace
    size_t wsp_size;
    float *scores; // (n_threads, scr_floats): attention scores (decode) or attn_tile's scratch (batches)
    size_t scr_floats;
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
// The pieces of exp_le0: n = round(xc / ln2) for xc <= 0, and e^r for r = xc - n ln2 (|r| <= ln2/2).
static inline int32_t exp_n(float xc) { return -(int32_t)(0.5f - xc * 1.44269504f); }
static inline float exp_r(float xc, int32_t n) {
    float fn = (float)n, r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
               1.6666665459e-1f) * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

static inline float exp_le0(float x) {
    float xc = x < -87.3f ? -87.3f : x;
    int32_t n = exp_n(xc), bits = (n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, 4);
    return x < -87.3f ? 0.0f : exp_r(xc, n) * two_n;
}

// exp_le0 on 16 values in place, as loops of fixed width over arrays (the vectorizer takes those; the scalar
// function's bit cast and branches kept it scalar): the same arithmetic, so the same results.
static inline void exp16_le0(float *x) {
    float xc[16], p[16], two[16];
    int32_t n[16], bits[16];
    for (int i = 0; i < 16; i++) xc[i] = x[i] < -87.3f ? -87.3f : x[i];
    for (int i = 0; i < 16; i++) n[i] = exp_n(xc[i]);
    for (int i = 0; i < 16; i++) p[i] = exp_r(xc[i], n[i]);
    for (int i = 0; i < 16; i++) bits[i] = (n[i] + 127) << 23;
    memcpy(two, bits, sizeof two);
    for (int i = 0; i < 16; i++) x[i] = x[i] < -87.3f ? 0.0f : p[i] * two[i];
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

// Batches (prefill): a work unit is one kv head and a block of up to ATT_TQ tokens, i.e. the tq x G query rows
// that read that head's keys (G = n_head / n_head_kv). Keys go by in tiles of ATT_KT, each transposed once into
// kT (hd x ATT_KT) for every row: a row's ATT_KT scores are hd multiply-adds of 16 lanes (no horizontal sum per
// key), then an online softmax (running max m, sum l, accumulator rescaled when the max grows; Milakov &
// Gimelshein 2018, as in FlashAttention) and P.V as 16-wide steps. A row skips the tiles past its causal limit.
// Scratch per thread: ATT_SCRATCH floats (kT, m, l, the rows' accumulators).
#define ATT_KT 16 // exp16_le0's width
#define ATT_TQ 16
#define ATT_SCRATCH 32768

static int attn_tq(const ll_attn_params *p) {
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim;
    int tq = (ATT_SCRATCH - hd * ATT_KT) / (G * (hd + 2));
    return tq > ATT_TQ ? ATT_TQ : tq;
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize"))) // GCC's -O2 leaves the 16-lane e^x loop scalar (clang vectorizes at -O2)
#endif
static void attn_tile(const attn_job *j, float *scr, int kh, int t0, int tn) {
    const ll_attn_params *p = j->p;
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim, rows = tn * G, kv_stride = p->n_head_kv * hd;
    const int hd16 = hd / 16 * 16;
    float *kT = scr, *m = kT + (size_t)hd * ATT_KT, *l = m + rows, *acc = l + rows;
    for (int r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
    memset(acc, 0, (size_t)rows * hd * sizeof *acc);
    const int n_keys = p->n_past + t0 + tn; // the last token's
    for (int k0 = 0; k0 < n_keys; k0 += ATT_KT) {
        const int nk = n_keys - k0 < ATT_KT ? n_keys - k0 : ATT_KT;
        for (int i = 0; i < ATT_KT; i++) {
            if (i >= nk) {
                for (int d = 0; d < hd; d++) kT[d * ATT_KT + i] = 0.0f;
                continue;
            }
            const float *k = j->kc + (size_t)(k0 + i) * kv_stride + (size_t)kh * hd;
            for (int d = 0; d < hd; d++) kT[d * ATT_KT + i] = k[d];
        }
        for (int r = 0; r < rows; r++) {
            const int t = t0 + r / G, h = kh * G + r % G, vis = p->n_past + t + 1 - k0; // visible keys of the tile
            if (vis <= 0) continue;
            const int nv = vis < nk ? vis : nk;
            const float *q = j->q + ((size_t)t * p->n_head + h) * hd;
            // four independent chains of multiply-adds (one chain of hd was the tile's critical path)
            float s[ATT_KT], s4[4][ATT_KT] = {{0}};
            int e = 0;
            for (; e + 4 <= hd; e += 4)
                for (int c = 0; c < 4; c++)
                    for (int i = 0; i < ATT_KT; i++) s4[c][i] += q[e + c] * kT[(e + c) * ATT_KT + i];
            for (; e < hd; e++)
                for (int i = 0; i < ATT_KT; i++) s4[0][i] += q[e] * kT[e * ATT_KT + i];
            for (int i = 0; i < ATT_KT; i++) s[i] = (s4[0][i] + s4[1][i]) + (s4[2][i] + s4[3][i]);
            // fixed 16-lane loops (masked keys at -inf, e^-inf = 0): the -O2 vectorizer takes those
            float mt = -INFINITY;
            for (int i = 0; i < ATT_KT; i++) {
                s[i] = i < nv ? s[i] * p->scale : -INFINITY;
                mt = s[i] > mt ? s[i] : mt;
            }
            const float mn = mt > m[r] ? mt : m[r], corr = m[r] == -INFINITY ? 0.0f : exp_le0(m[r] - mn);
            float sum = 0.0f;
            for (int i = 0; i < ATT_KT; i++) s[i] -= mn;
            exp16_le0(s);
            for (int i = 0; i < ATT_KT; i++) sum += s[i];
            l[r] = l[r] * corr + sum;
            m[r] = mn;
            // a local copy of the row's accumulator: the compiler knows it aliases neither V nor the scratch, so
            // the 16-wide steps vectorize and stay in registers (through the scratch pointer they did not: 2x slower)
            enum { MAX_HD = 512 };
            LL_ASSERT(hd <= MAX_HD);
            float a[MAX_HD];
            float *ar = acc + (size_t)r * hd;
            for (int d = 0; d < hd; d++) a[d] = ar[d] * corr;
            const float *v0 = j->vc + (size_t)k0 * kv_stride + (size_t)kh * hd;
            for (int d = 0; d < hd16; d += 16) { // 16 dims in one register across the tile's keys: one store each
                float t16[16];
                for (int u = 0; u < 16; u++) t16[u] = a[d + u];
                for (int i = 0; i < nv; i++) {
                    const float *v = v0 + (size_t)i * kv_stride + d, w = s[i];
                    for (int u = 0; u < 16; u++) t16[u] += w * v[u];
                }
                for (int u = 0; u < 16; u++) a[d + u] = t16[u];
            }
            for (int i = 0; i < nv; i++)
                for (int d = hd16; d < hd; d++) a[d] += s[i] * v0[(size_t)i * kv_stride + d];
            memcpy(ar, a, (size_t)hd * sizeof *a);
        }
    }
    for (int r = 0; r < rows; r++) {
        const int t = t0 + r / G, h = kh * G + r % G;
        const float inv = 1.0f / l[r];
        float *o = j->out + ((size_t)t * p->n_head + h) * hd;
        for (int d = 0; d < hd; d++) o[d] = acc[(size_t)r * hd + d] * inv;
    }
}

static void attn_worker(void *vctx, int ith, int nth) {
    attn_job *j = vctx;
    float *sc = j->c->scores + (size_t)ith * j->c->scr_floats;
    const int tq = j->n_tok > 1 ? attn_tq(j->p) : 0;
    if (tq >= 1) {
        // units (kv head, token block), the costliest (last) token blocks first, dealt out in turn
        const int nblk = (j->n_tok + tq - 1) / tq, total = nblk * j->p->n_head_kv;
        for (int u = ith; u < total; u += nth) {
            const int b = nblk - 1 - u / j->p->n_head_kv, kh = u % j->p->n_head_kv, t0 = b * tq;
            attn_tile(j, sc, kh, t0, j->n_tok - t0 < tq ? j->n_tok - t0 : tq);
        }
        return;
    }
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
    free(c);
    free(b);
}

size_t ll_backend_cpu_scratch(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, int n_threads) {
    size_t wsp = 0;
    for (int i = 0; i < n_ws; i++) {
        size_t s = ll_matmul_wsize(ws[i]->type, (int)ws[i]->ne0, max_tok, n_threads);
        uint32_t rt = ws[i]->ne1 > 1 ? ll_matmul_repack_type(ws[i]->type, (int)ws[i]->ne0, (int)ws[i]->ne1) : 0;
        size_t sr = rt ? ll_matmul_wsize(rt, (int)ws[i]->ne0, max_tok, n_threads) : 0;
        if (s > wsp) wsp = s;
        if (sr > wsp) wsp = sr;
    }
    return wsp + (size_t)n_threads * (size_t)(max_ctx > ATT_SCRATCH ? max_ctx : ATT_SCRATCH) * sizeof(float);
}

size_t ll_backend_cpu_repack_extra(const ll_weight *const *ws, int n_ws) {
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

static ll_status cpu_prepare(ll_backend *b, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx,
                             ll_error *err) {
    cpu_impl *c = impl_of(b);
    ll_status st = rw_prepare(c, ws, n_ws, err);
    if (st != LL_OK) return st;
    size_t wsp = 0;
    for (int i = 0; i < n_ws; i++) {
        if (ws[i]->ne1 <= 1 || !ll_matmul_supports(ws[i]->type)) continue; // vectors: norms, biases
        uint32_t t;
        (void)cpu_wdata(c, ws[i], &t);
        size_t s = ll_matmul_wsize(t, (int)ws[i]->ne0, max_tok, c->n_threads);
        if (s > wsp) wsp = s;
    }
    ll_aligned_free(c->wsp);
    ll_aligned_free(c->scores);
    c->wsp = ll_aligned_alloc(wsp ? wsp : 64, 64, err);
    c->scr_floats = (size_t)(max_ctx > ATT_SCRATCH ? max_ctx : ATT_SCRATCH);
    c->scores = ll_aligned_alloc((size_t)c->n_threads * c->scr_floats * sizeof(float), 64, err);
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
