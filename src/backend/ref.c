// ref.c — the scalar references of the backend ops (ref.h): the spec each backend's kernels are held to. Plain
// loops, float64 sums, one rounding to float at the end; speed only as far as the conformance suite needs it.
#include "backend/ref.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "types/quant.h"

static void *ref_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    LL_ASSERT(p); // references run in tests only: no memory is a broken test machine
    return p;
}

// ---- cache rows -----------------------------------------------------------------------------------------------

size_t ll_ref_kv_row_bytes(uint32_t type, int kvd) {
    uint64_t rb;
    LL_ASSERT((type == LL_TYPE_F32 || type == LL_TYPE_F16 || type == LL_TYPE_Q8_0) &&
              ll_type_row_size(type, (uint64_t)kvd, &rb));
    return (size_t)rb;
}

void ll_ref_kv_row_store(uint32_t type, const float *src, void *dst, int kvd) {
    if (type == LL_TYPE_F32) {
        memcpy(dst, src, (size_t)kvd * sizeof(float));
    } else if (type == LL_TYPE_F16) {
        uint16_t *d = dst;
        for (int i = 0; i < kvd; i++) d[i] = ll_fp32_to_fp16(src[i]);
    } else {
        LL_ASSERT(type == LL_TYPE_Q8_0 && kvd % LL_QK8_0 == 0);
        ll_quant_from_float_ref_q8_0(src, dst, kvd);
    }
}

void ll_ref_kv_row_load(uint32_t type, const void *src, float *dst, int kvd) {
    (void)ll_ref_kv_row_bytes(type, kvd); // checks type and kvd
    ll_type_get(type)->to_float(src, dst, kvd);
}

// ---- matmuls --------------------------------------------------------------------------------------------------

// Row o of w as float.
static void w_row(const ll_weight *w, int64_t o, float *dst) {
    const ll_type_traits *t = ll_type_get(w->type);
    uint64_t rb;
    LL_ASSERT(t && t->to_float && ll_type_row_size(w->type, (uint64_t)w->ne0, &rb) && o >= 0 && o < w->ne1);
    t->to_float((const uint8_t *)w->data + (size_t)o * rb, dst, w->ne0);
}

// Four partial float64 sums (independent chains: the reference of a 8192 x 2048 matrix stays well under a second).
static double dot_f64(const float *a, const float *b, int64_t n) {
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int u = 0; u < 4; u++) s[u] += (double)a[i + u] * b[i + u];
    for (; i < n; i++) s[0] += (double)a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

// d (n_tok, w.ne1) = x W^T in float64.
static double *matmul_f64(const ll_weight *w, const float *x, int n_tok) {
    double *d = ref_alloc((size_t)n_tok * (size_t)w->ne1 * sizeof *d);
    float *row = ref_alloc((size_t)w->ne0 * sizeof *row);
    for (int64_t o = 0; o < w->ne1; o++) {
        w_row(w, o, row);
        for (int t = 0; t < n_tok; t++)
            d[(size_t)t * (size_t)w->ne1 + (size_t)o] = dot_f64(row, x + (size_t)t * (size_t)w->ne0, w->ne0);
    }
    free(row);
    return d;
}

void ll_ref_matmul(const ll_weight *w, const float *x, float *y, int n_tok) {
    double *d = matmul_f64(w, x, n_tok);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)w->ne1; i++) y[i] = (float)d[i];
    free(d);
}

void ll_ref_matmul3(const ll_weight *const w[3], const float *x, float *const y[3], int n_tok) {
    for (int i = 0; i < 3; i++) ll_ref_matmul(w[i], x, y[i], n_tok);
}

void ll_ref_matmul_add(const ll_weight *w, const float *x, float *y, int n_tok) {
    double *d = matmul_f64(w, x, n_tok);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)w->ne1; i++) y[i] = (float)((double)y[i] + d[i]);
    free(d);
}

void ll_ref_matmul_add_rmsnorm(const ll_weight *w, const float *in, float *x, const ll_weight *g, float *y,
                               int n_tok, float eps) {
    ll_ref_matmul_add(w, in, x, n_tok);
    ll_ref_rmsnorm(y, x, g, (int)w->ne1, n_tok, eps);
}

static double silu(double g) { return g / (1.0 + exp(-g)); }

void ll_ref_matmul_swiglu(const ll_weight *w_gate, const ll_weight *w_up, const float *x, float *g, int n_tok) {
    LL_ASSERT(w_gate->ne0 == w_up->ne0 && w_gate->ne1 == w_up->ne1);
    double *dg = matmul_f64(w_gate, x, n_tok), *du = matmul_f64(w_up, x, n_tok);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)w_gate->ne1; i++) g[i] = (float)(silu(dg[i]) * du[i]);
    free(dg);
    free(du);
}

// ---- element-wise ops -----------------------------------------------------------------------------------------

void ll_ref_rmsnorm(float *y, const float *x, const ll_weight *w, int n, int n_tok, float eps) {
    LL_ASSERT(w->type == LL_TYPE_F32 && w->ne0 * w->ne1 >= n);
    const float *g = w->data;
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (size_t)t * n;
        float *yr = y + (size_t)t * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const double inv = 1.0 / sqrt(ss / n + (double)eps);
        for (int i = 0; i < n; i++) yr[i] = (float)((double)xr[i] * inv * g[i]);
    }
}

void ll_ref_add_bias(float *x, const ll_weight *bias, int n, int n_tok) {
    LL_ASSERT(bias->type == LL_TYPE_F32 && bias->ne0 * bias->ne1 >= n);
    const float *b = bias->data;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) x[(size_t)t * n + i] = (float)((double)x[(size_t)t * n + i] + b[i]);
}

void ll_ref_swiglu(float *g, const float *u, int n, int n_tok) {
    for (size_t i = 0; i < (size_t)n * (size_t)n_tok; i++) g[i] = (float)(silu(g[i]) * u[i]);
}

void ll_ref_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = (float)((double)y[i] + x[i]);
}

void ll_ref_get_rows(float *y, const ll_weight *w, const int32_t *ids, int n_tok) {
    for (int t = 0; t < n_tok; t++) w_row(w, ids[t], y + (size_t)t * (size_t)w->ne0);
}

void ll_ref_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

// ---- RoPE, the cache, attention -------------------------------------------------------------------------------

void ll_ref_rope(float *x, const int32_t *pos, int n_tok, const ll_rope_params *p) {
    const int half = p->n_rot / 2;
    LL_ASSERT(p->n_rot % 2 == 0 && p->n_rot <= p->head_dim);
    for (int t = 0; t < n_tok; t++)
        for (int j = 0; j < half; j++) {
            double theta = pow((double)p->base, -2.0 * j / p->n_rot);
            if (p->freq_factors) theta /= p->freq_factors[j];
            const double ang = (double)pos[t] * theta, cs = cos(ang), sn = sin(ang);
            const int i0 = p->neox ? j : 2 * j, i1 = p->neox ? j + half : 2 * j + 1;
            for (int h = 0; h < p->n_head; h++) {
                float *v = x + ((size_t)t * p->n_head + h) * p->head_dim;
                const double a = v[i0], b = v[i1];
                v[i0] = (float)(a * cs - b * sn);
                v[i1] = (float)(a * sn + b * cs);
            }
        }
}

static void check_rows(const ll_kv_cache *kv, const ll_batch_pos *bp, int t) {
    LL_ASSERT(bp->pos[t] >= 0 && bp->pos[t] < kv->n_ctx && bp->row0[t] >= 0 &&
              bp->row0[t] + bp->pos[t] < kv->n_rows);
}

void ll_ref_kv_store(const ll_kv_cache *kv, const float *k, const float *v, int kvd, const ll_batch_pos *bp) {
    const size_t rb = ll_ref_kv_row_bytes(kv->type, kvd);
    for (int t = 0; t < bp->n_tok; t++) {
        check_rows(kv, bp, t);
        const size_t r = (size_t)(bp->row0[t] + bp->pos[t]);
        ll_ref_kv_row_store(kv->type, k + (size_t)t * kvd, (uint8_t *)kv->k + r * rb, kvd);
        ll_ref_kv_row_store(kv->type, v + (size_t)t * kvd, (uint8_t *)kv->v + r * rb, kvd);
    }
}

void ll_ref_rope_kv_store(float *q, float *k, const float *v, const ll_kv_cache *kv, const ll_batch_pos *bp,
                          const ll_rope_params *p, int n_head_kv) {
    ll_rope_params pk = *p;
    pk.n_head = n_head_kv;
    ll_ref_rope(q, bp->pos, bp->n_tok, p);
    ll_ref_rope(k, bp->pos, bp->n_tok, &pk);
    ll_ref_kv_store(kv, k, v, n_head_kv * p->head_dim, bp);
}

void ll_ref_qkv_rope_store(const ll_weight *const w[3], const float *x, float *const y[3], const ll_kv_cache *kv,
                           const ll_batch_pos *bp, const ll_rope_params *p, int n_head_kv) {
    ll_ref_matmul3(w, x, y, bp->n_tok);
    ll_ref_rope_kv_store(y[0], y[1], y[2], kv, bp, p, n_head_kv);
}

// One token: its n_keys rows of K and V (all kv heads) as float, then every head's softmax(scale q.k) v.
static void attn_token(float *out, const float *q, const ll_kv_cache *kv, const ll_attn_params *p, int row0,
                       int n_keys, float *kf, float *vf, double *sc) {
    const int hd = p->head_dim, kvd = p->n_head_kv * hd, G = p->n_head / p->n_head_kv;
    const size_t rb = ll_ref_kv_row_bytes(kv->type, kvd);
    for (int s = 0; s < n_keys; s++) {
        ll_ref_kv_row_load(kv->type, (const uint8_t *)kv->k + (size_t)(row0 + s) * rb, kf + (size_t)s * kvd, kvd);
        ll_ref_kv_row_load(kv->type, (const uint8_t *)kv->v + (size_t)(row0 + s) * rb, vf + (size_t)s * kvd, kvd);
    }
    for (int h = 0; h < p->n_head; h++) {
        const float *qh = q + (size_t)h * hd;
        const int kh = h / G;
        double mx = -INFINITY, sum = 0;
        for (int s = 0; s < n_keys; s++) {
            sc[s] = (double)p->scale * dot_f64(qh, kf + (size_t)s * kvd + (size_t)kh * hd, hd);
            if (sc[s] > mx) mx = sc[s];
        }
        for (int s = 0; s < n_keys; s++) sum += sc[s] = exp(sc[s] - mx);
        for (int d = 0; d < hd; d++) {
            double a = 0;
            for (int s = 0; s < n_keys; s++) a += sc[s] * vf[(size_t)s * kvd + (size_t)kh * hd + d];
            out[(size_t)h * hd + d] = (float)(a / sum);
        }
    }
}

void ll_ref_attention(float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                      const ll_attn_params *p) {
    LL_ASSERT(p->n_head_kv > 0 && p->n_head % p->n_head_kv == 0);
    const int kvd = p->n_head_kv * p->head_dim, qd = p->n_head * p->head_dim;
    int max_keys = 1;
    for (int t = 0; t < bp->n_tok; t++) {
        check_rows(kv, bp, t);
        if (bp->pos[t] + 1 > max_keys) max_keys = bp->pos[t] + 1;
    }
    float *kf = ref_alloc((size_t)max_keys * kvd * sizeof *kf), *vf = ref_alloc((size_t)max_keys * kvd * sizeof *vf);
    double *sc = ref_alloc((size_t)max_keys * sizeof *sc);
    for (int t = 0; t < bp->n_tok; t++)
        attn_token(out + (size_t)t * qd, q + (size_t)t * qd, kv, p, bp->row0[t], bp->pos[t] + 1, kf, vf, sc);
    free(kf);
    free(vf);
    free(sc);
}

// ---- topk -----------------------------------------------------------------------------------------------------

typedef struct ref_cand {
    float v;
    int32_t i;
} ref_cand;

static int cand_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

int ll_ref_topk(const float *x, int n, int k, float *vals, int32_t *ids) {
    ref_cand *c = ref_alloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    int m = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i];
        if (!(v > -INFINITY)) continue; // NaN and -inf
        if (v == INFINITY) v = FLT_MAX;
        c[m++] = (ref_cand){v == 0.0f ? 0.0f : v, i};
    }
    qsort(c, (size_t)m, sizeof *c, cand_cmp);
    const int got = m < k ? m : k;
    for (int i = 0; i < got; i++) vals[i] = c[i].v, ids[i] = c[i].i;
    free(c);
    return got;
}
