// test_backend_kv.c — the backend conformance suite, part 2: kv_store, rope_kv_store, qkv_rope_store and attention
// over caches of every row type (F32, F16, Q8_0) and batches of one or several sequences (ll_batch_pos), on every
// backend of the registry against src/backend/ref.c (harness and tolerances: backend_ops.h).
#include "backend_ops.h"

// ---- the cache: kv_store, rope_kv_store, qkv_rope_store, attention --------------------------------------------------

#define N_SEQ 4 // sequences per cache: rows [s * n_ctx, (s + 1) * n_ctx)
#define SC_MAX 80

static const uint32_t k_ctypes[] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_Q8_0};

// A step's token positions. Kinds: prefill of sequence 1 from 0; a chunk of sequence 3 from n_past; the decode of
// sequence 2 at n_past; the decode of 4 sequences at 4 positions (last row of its sequence included); a mixed step
// (two sequences' chunks interleaved and a third's decode); the chunk again with single = false (the general path).
enum { SC_PREFILL, SC_CHUNK, SC_DECODE, SC_DECODE4, SC_MIXED, SC_CHUNK_GENERAL, SC_KINDS };
static const char *const k_sc_names[SC_KINDS] = {"prefill", "chunk", "decode", "decode x4", "mixed", "chunk (general)"};

typedef struct scen {
    int32_t pos[SC_MAX], row0[SC_MAX];
    ll_batch_pos bp;
} scen;

static void scen_make(scen *s, int kind, int n_ctx, int n_tok, int n_past) {
    assert_true(n_tok <= SC_MAX && n_past + n_tok <= n_ctx && n_ctx > 16);
    if (kind == SC_PREFILL) s->bp = ll_batch_pos_single(1 * n_ctx, 0, n_tok, s->pos, s->row0);
    if (kind == SC_CHUNK || kind == SC_CHUNK_GENERAL)
        s->bp = ll_batch_pos_single(3 * n_ctx, n_past, n_tok, s->pos, s->row0);
    if (kind == SC_DECODE) s->bp = ll_batch_pos_single(2 * n_ctx, n_past, 1, s->pos, s->row0);
    if (kind == SC_CHUNK_GENERAL) s->bp.single = false, s->bp.n_past = 0;
    if (kind == SC_DECODE4) {
        static const int seq[4] = {2, 0, 3, 1};
        const int p[4] = {n_past, 0, n_ctx - 1, 5};
        for (int t = 0; t < 4; t++) s->pos[t] = p[t], s->row0[t] = seq[t] * n_ctx;
        s->bp = (ll_batch_pos){4, s->pos, s->row0, false, 0};
    }
    if (kind == SC_MIXED) { // sequence 0 from 10, sequence 1 from 0, taken in turn; sequence 3's decode in the middle
        const int a = n_tok / 2, b = n_tok - a - 1;
        int t = 0, ia = 0, ib = 0;
        while (ia < a || ib < b) {
            if (ia < a) s->pos[t] = 10 + ia++, s->row0[t++] = 0;
            if (ib < b) s->pos[t] = ib++, s->row0[t++] = n_ctx;
            if (t == n_tok / 2) s->pos[t] = n_past, s->row0[t++] = 3 * n_ctx;
        }
        if (t < n_tok) s->pos[t] = n_past, s->row0[t++] = 3 * n_ctx;
        assert_int_equal(t, n_tok);
        s->bp = (ll_batch_pos){n_tok, s->pos, s->row0, false, 0};
    }
}

// Random values for cache rows with edge cases of the conversions: fp16 rounding ties (1 + 2^-11 times a power
// of two), values in fp16's subnormal range, exact zeros.
static float *kv_values(size_t n, uint64_t *s) {
    float *x = h_rand(n, s, 2.0f);
    for (size_t i = 0; i < n; i++) {
        if (i % 17 == 3) x[i] = ldexpf(1.0f + 1.0f / 2048, (int)(tu_rng_u64(s) % 8) - 4) * (i % 2 ? -1.0f : 1.0f);
        if (i % 23 == 5) x[i] *= 3e-6f;
        if (i % 29 == 7) x[i] = 0.0f;
    }
    return x;
}

// A host cache of n_rows rows: every row random values in the row type (visible NULL), or only the rows some
// token may see, the others NaN (F32/F16 NaN values; Q8_0 blocks with a NaN scale).
static uint8_t *cache_make(uint32_t type, int n_rows, int kvd, const bool *visible, uint64_t seed) {
    const size_t rb = ll_ref_kv_row_bytes(type, kvd);
    uint8_t *c = malloc(rb * n_rows);
    assert_non_null(c);
    uint64_t s = seed;
    float *row = h_floats((size_t)kvd);
    for (int r = 0; r < n_rows; r++) {
        uint8_t *dst = c + (size_t)r * rb;
        if (!visible || visible[r]) {
            for (int i = 0; i < kvd; i++) row[i] = tu_rng_uniform(&s);
            ll_ref_kv_row_store(type, row, dst, kvd);
        } else if (type == LL_TYPE_F32) {
            for (int i = 0; i < kvd; i++) row[i] = NAN;
            memcpy(dst, row, rb);
        } else {
            for (size_t i = 0; i < rb; i++) dst[i] = (uint8_t)tu_rng_u64(&s);
            for (size_t i = 0; i < rb; i += type == LL_TYPE_F16 ? 2 : 34) dst[i] = 0x00, dst[i + 1] = 0x7e; // fp16 NaN
        }
    }
    free(row);
    return c;
}

typedef struct dcache {
    ll_kv_cache host, dev;
    size_t bytes;
} dcache;

static dcache dcache_make(tb *t, uint32_t type, int n_ctx, int kvd, const bool *visible, uint64_t seed) {
    dcache c = {{NULL, NULL, type, n_ctx, N_SEQ * n_ctx}, {NULL, NULL, type, n_ctx, N_SEQ * n_ctx}, 0};
    c.bytes = ll_ref_kv_row_bytes(type, kvd) * (size_t)N_SEQ * n_ctx;
    c.host.k = cache_make(type, N_SEQ * n_ctx, kvd, visible, seed);
    c.host.v = cache_make(type, N_SEQ * n_ctx, kvd, visible, seed + 1);
    c.dev.k = d_up(t, c.host.k, c.bytes);
    c.dev.v = d_up(t, c.host.v, c.bytes);
    return c;
}

static void dcache_free(tb *t, dcache *c) {
    d_free(t, c->dev.k), d_free(t, c->dev.v);
    free(c->host.k), free(c->host.v);
}

static bool row_written(const ll_batch_pos *bp, int r) {
    for (int t = 0; t < bp->n_tok; t++)
        if (bp->row0[t] + bp->pos[t] == r) return true;
    return false;
}

// The device cache against the reference's: rows no token writes keep their bytes; a written row either equals
// the reference's bytes (exact: true) or passes row_ok (value tolerances: backend_ops.h).
typedef bool (*row_ok_fn)(uint32_t type, const float *got, const float *ref, int kvd, double tol, int *n_off);

static bool row_ok_close(uint32_t type, const float *got, const float *ref, int kvd, double tol, int *n_off) {
    for (int i = 0; i < kvd; i++) {
        if (!isfinite(got[i]) && isfinite(ref[i])) return false;
        double d = fabs((double)got[i] - ref[i]), unit = 0;
        if (type == LL_TYPE_F16) unit = fmax(fabs(ref[i]), fabs(got[i])) / 1024 + 6e-8; // one ulp (and subnormals')
        if (type == LL_TYPE_Q8_0) {
            double amax = 0;
            for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = fmax(amax, fabs(ref[j]));
            unit = amax / 127 * 1.01 + 1e-30;
        }
        if (type != LL_TYPE_F32 && d > 0) (*n_off)++;
        if (type != LL_TYPE_F32 && d > unit) return false;
    }
    return type != LL_TYPE_F32 || tu_rel_l2(got, ref, (size_t)kvd) <= tol;
}

static bool row_ok_rel(uint32_t type, const float *got, const float *ref, int kvd, double tol, int *n_off) {
    return tu_count_nonfinite(got, (size_t)kvd) == 0 && tu_rel_l2(got, ref, (size_t)kvd) <= tol;
}

// tol: F32 K rows (row_ok_close) or every row's rel L2 (row_ok_rel; tols per token, NULL: tol for all).
static void cache_check(tb *t, const char *what, const char *label, const dcache *c, int kvd, const ll_batch_pos *bp,
                        bool k, bool exact, row_ok_fn ok, double tol, const double *tols) {
    const size_t rb = ll_ref_kv_row_bytes(c->host.type, kvd);
    uint8_t *got = malloc(c->bytes);
    float *a = h_floats((size_t)kvd), *b = h_floats((size_t)kvd);
    assert_non_null(got);
    d_down(t, got, k ? c->dev.k : c->dev.v, c->bytes);
    const uint8_t *ref = k ? c->host.k : c->host.v;
    int n_off = 0, n_vals = 0;
    for (int r = 0; r < c->host.n_rows; r++) {
        const uint8_t *g = got + (size_t)r * rb, *f = ref + (size_t)r * rb;
        const bool w = row_written(bp, r);
        if ((!w || exact) && memcmp(g, f, rb))
            fail_msg("%s: %s cache row %d (%s) differs from the reference's bytes", what, k ? "K" : "V", r,
                     w ? "written" : "not to be written");
        if (!w || exact) continue;
        ll_ref_kv_row_load(c->host.type, g, a, kvd);
        ll_ref_kv_row_load(c->host.type, f, b, kvd);
        double rt = tol;
        for (int i = 0; tols && i < bp->n_tok; i++)
            if (bp->row0[i] + bp->pos[i] == r) rt = tols[i];
        n_vals += kvd;
        if (label && (ok != row_ok_close || c->host.type == LL_TYPE_F32))
            note_err(label, tu_rel_l2(a, b, (size_t)kvd), rt);
        if (!ok(c->host.type, a, b, kvd, rt, &n_off))
            fail_msg("%s: %s cache row %d: values off the reference's (rel L2 %.3g, tolerance %.3g)", what,
                     k ? "K" : "V", r, tu_rel_l2(a, b, (size_t)kvd), rt);
    }
    if (label && ok == row_ok_close && c->host.type != LL_TYPE_F32) note_err(label, (double)n_off / (n_vals + 1), 0.01);
    if (ok == row_ok_close && n_off > n_vals / 100 + 1)
        fail_msg("%s: %d of %d cached values differ from the reference's (at most 1%%)", what, n_off, n_vals);
    free(got), free(a), free(b);
}

static void t_kv_store(tb *t) {
    static const int kvds[] = {64, 192, 1024};
    static const int ctxs[] = {40, 256, 1100};
    for (int ci = 0; ci < 3; ci++) {
        const uint32_t ct = k_ctypes[ci];
        if (!type_ok(t, LL_OP_ATTENTION, ct, "kv_store (cache type, by supports(LL_OP_ATTENTION))")) continue;
        for (int si = 0; si < 3; si++)
            for (int kind = 0; kind < SC_KINDS; kind++) {
                const int kvd = kvds[si], n_ctx = ctxs[si], n_tok = kind == SC_MIXED ? 9 : 7;
                scen sc;
                scen_make(&sc, kind, n_ctx, n_tok, n_ctx - 20);
                tb_prepare(t, NULL, 0, sc.bp.n_tok, n_ctx);
                dcache c = dcache_make(t, ct, n_ctx, kvd, NULL, 1500 + si);
                uint64_t s = 1510 + kind;
                float *k = kv_values((size_t)sc.bp.n_tok * kvd, &s), *v = kv_values((size_t)sc.bp.n_tok * kvd, &s);
                float *dk = d_up(t, k, (size_t)sc.bp.n_tok * kvd * 4), *dv = d_up(t, v, (size_t)sc.bp.n_tok * kvd * 4);
                t->o->kv_store(t->b, &c.dev, dk, dv, kvd, &sc.bp);
                ll_ref_kv_store(&c.host, k, v, kvd, &sc.bp);
                char what[160];
                snprintf(what, sizeof what, "%s kv_store %s kvd %d n_ctx %d %s", t->e->name, ll_type_name(ct), kvd,
                         n_ctx, k_sc_names[kind]);
                cache_check(t, what, NULL, &c, kvd, &sc.bp, true, true, NULL, 0, NULL);
                cache_check(t, what, NULL, &c, kvd, &sc.bp, false, true, NULL, 0, NULL);
                note_err("kv_store (bytes)", 0, 0);
                d_free(t, dk), d_free(t, dv), free(k), free(v), dcache_free(t, &c);
            }
    }
}

// Attention layouts: heads, kv heads, head dim, n_ctx, tokens of a chunk, n_past.
typedef struct attn_shape {
    int n_head, n_head_kv, hd, n_ctx, n_tok, n_past;
} attn_shape;

static const attn_shape k_attn_shapes[] = {
    {4, 2, 32, 64, 7, 20},       // small
    {9, 3, 64, 256, 33, 100},    // SmolLM
    {32, 4, 64, 512, 20, 300},   // 2048 dim, hd 64
    {32, 8, 128, 1100, 16, 1000}, // 4096 dim, GQA 32/8, hd 128
};

static void t_rope_kv_store(tb *t) {
    if (!t->o->rope_kv_store) TU_SKIP("%s: rope_kv_store is optional and NULL (rope, rope, kv_store)", t->e->name);
    static const float ff[64] = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                                 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                                 8, 8, 8, 8, 8, 8, 8, 8};
    for (int ci = 0; ci < 3; ci++) {
        const uint32_t ct = k_ctypes[ci];
        if (!type_ok(t, LL_OP_ATTENTION, ct, "rope_kv_store (cache type)")) continue;
        for (int si = 1; si < 4; si += 2) {
            const attn_shape *a = &k_attn_shapes[si];
            const float base = si == 1 ? 10000.0f : 500000.0f;
            const ll_rope_params p = {a->n_head, a->hd, a->hd, base, si == 3, si == 3 ? ff : NULL};
            const int kvd = a->n_head_kv * a->hd, qd = a->n_head * a->hd;
            for (int kind = 0; kind < SC_KINDS; kind++) {
                scen sc;
                scen_make(&sc, kind, a->n_ctx, a->n_tok, a->n_past);
                const int n = sc.bp.n_tok;
                tb_prepare(t, NULL, 0, n, a->n_ctx);
                dcache c = dcache_make(t, ct, a->n_ctx, kvd, NULL, 1600 + si);
                uint64_t s = 1610 + kind;
                float *q = h_rand((size_t)n * qd, &s, 2.0f), *k = kv_values((size_t)n * kvd, &s);
                float *v = kv_values((size_t)n * kvd, &s);
                float *hq = h_floats((size_t)n * qd), *hk = h_floats((size_t)n * kvd);
                float *dq = d_up(t, q, (size_t)n * qd * 4), *dk = d_up(t, k, (size_t)n * kvd * 4);
                float *dv = d_up(t, v, (size_t)n * kvd * 4);
                t->o->rope_kv_store(t->b, dq, dk, dv, &c.dev, &sc.bp, &p, a->n_head_kv);
                d_down(t, hq, dq, (size_t)n * qd * 4);
                d_down(t, hk, dk, (size_t)n * kvd * 4);
                ll_ref_rope_kv_store(q, k, v, &c.host, &sc.bp, &p, a->n_head_kv);
                char what[160];
                snprintf(what, sizeof what, "%s rope_kv_store %s %d/%d hd %d %s", t->e->name, ll_type_name(ct),
                         a->n_head, a->n_head_kv, a->hd, k_sc_names[kind]);
                check_rows(what, "rope_kv_store q", hq, q, n, (size_t)qd, TOL_ROPE);
                check_rows(what, "rope_kv_store k", hk, k, n, (size_t)kvd, TOL_ROPE);
                char label[64];
                snprintf(label, sizeof label, "rope_kv_store K rows %s%s", ll_type_name(ct),
                         ct == LL_TYPE_F32 ? " (rel L2)" : " (share of values off)");
                cache_check(t, what, label, &c, kvd, &sc.bp, true, false, row_ok_close, TOL_ROPE, NULL);
                cache_check(t, what, NULL, &c, kvd, &sc.bp, false, true, NULL, 0, NULL);
                d_free(t, dq), d_free(t, dk), d_free(t, dv), dcache_free(t, &c);
                free(q), free(k), free(v), free(hq), free(hk);
            }
        }
    }
}

// Cached rows of values a (relative) apart: see the tolerances.
static double cache_extra(uint32_t ct, double a) {
    return ct == LL_TYPE_F16 ? 1.0 / 1024 : ct == LL_TYPE_Q8_0 ? 3 * sqrt(a / 73) : 0;
}

static void one_qkv_rope_store(tb *t, uint32_t wt, uint32_t ct, const attn_shape *a, int kind, uint64_t seed) {
    const int qd = a->n_head * a->hd, kvd = a->n_head_kv * a->hd, dim = qd;
    ll_weight w[3] = {w_make(wt, dim, qd, seed), w_make(wt, dim, kvd, seed + 1), w_make(wt, dim, kvd, seed + 2)};
    const ll_weight *ws[3] = {&w[0], &w[1], &w[2]};
    const ll_rope_params p = {a->n_head, a->hd, a->hd, 10000.0f, kind % 2 == 1, NULL};
    scen sc;
    scen_make(&sc, kind, a->n_ctx, a->n_tok, a->n_past);
    const int n = sc.bp.n_tok;
    tb_prepare(t, ws, 3, n, a->n_ctx);
    dcache c = dcache_make(t, ct, a->n_ctx, kvd, NULL, seed + 3);
    float *x = x_make(dim, n, seed + 4), *dx = d_up(t, x, (size_t)n * dim * 4);
    float *dy[3], *hy[3], *ry[3];
    for (int i = 0; i < 3; i++) {
        const size_t ny = (size_t)n * w[i].ne1;
        dy[i] = d_nan(t, ny), hy[i] = h_floats(ny), ry[i] = h_floats(ny);
    }
    t->o->qkv_rope_store(t->b, ws, dx, dy, &c.dev, &sc.bp, &p, a->n_head_kv);
    ll_ref_qkv_rope_store(ws, x, ry, &c.host, &sc.bp, &p, a->n_head_kv);
    char what[200], label[64];
    snprintf(what, sizeof what, "%s qkv_rope_store %s, cache %s, %d/%d hd %d %s", t->e->name, ll_type_name(wt),
             ll_type_name(ct), a->n_head, a->n_head_kv, a->hd, k_sc_names[kind]);
    snprintf(label, sizeof label, "qkv_rope_store %s", ll_type_name(wt));
    double allow[3][SC_MAX], ctol[2][SC_MAX];
    for (int i = 0; i < 3; i++) {
        d_down(t, hy[i], dy[i], (size_t)n * w[i].ne1 * 4);
        mm_model m = mm_model_make(&w[i], x, n);
        mm_check(what, label, &m, hy[i], ry[i], false, i < 2 ? TOL_ROPE : 0, allow[i]);
        mm_model_free(&m);
    }
    for (int i = 0; i < n; i++)
        for (int kv = 0; kv < 2; kv++) ctol[kv][i] = allow[1 + kv][i] + cache_extra(ct, allow[1 + kv][i]);
    snprintf(label, sizeof label, "qkv_rope_store cache %s", ll_type_name(ct));
    cache_check(t, what, label, &c, kvd, &sc.bp, true, false, row_ok_rel, 0, ctol[0]);
    cache_check(t, what, label, &c, kvd, &sc.bp, false, false, row_ok_rel, 0, ctol[1]);
    for (int i = 0; i < 3; i++) d_free(t, dy[i]), free(hy[i]), free(ry[i]), w_free(&w[i]);
    d_free(t, dx), free(x), dcache_free(t, &c);
}

static void t_qkv_rope_store(tb *t) {
    if (!t->o->qkv_rope_store)
        TU_SKIP("%s: qkv_rope_store is optional and NULL (matmuls, then rope_kv_store)", t->e->name);
    static const attn_shape small = {9, 3, 64, 256, 9, 100}, small_k = {12, 4, 64, 256, 9, 100};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t wt = k_wtypes[ti], ct = k_ctypes[ti % 3];
        if (!type_ok(t, LL_OP_MATMUL, wt, "qkv_rope_store") || !type_ok(t, LL_OP_ATTENTION, ct, "qkv_rope_store cache"))
            continue;
        const attn_shape *a = w_fits(wt, 576) ? &small : &small_k; // K-quants: rows of 768
        for (int kind = SC_PREFILL; kind <= SC_MIXED; kind += 2)
            one_qkv_rope_store(t, wt, ct, a, kind, 1700 + 10 * ti + kind);
    }
    static const uint32_t big[2][2] = {{LL_TYPE_Q4_K, LL_TYPE_F16}, {LL_TYPE_Q8_0, LL_TYPE_Q8_0}};
    for (int i = 0; i < 2; i++)
        if (t->o->supports(t->b, LL_OP_MATMUL, big[i][0]) && t->o->supports(t->b, LL_OP_ATTENTION, big[i][1])) {
            one_qkv_rope_store(t, big[i][0], big[i][1], &k_attn_shapes[3], SC_DECODE4, 1800 + i);
            one_qkv_rope_store(t, big[i][0], big[i][1], &k_attn_shapes[3], SC_CHUNK, 1810 + i);
        }
}

static void one_attention(tb *t, uint32_t ct, const attn_shape *a, int kind, uint64_t seed) {
    scen sc;
    scen_make(&sc, kind, a->n_ctx, a->n_tok, a->n_past);
    const int n = sc.bp.n_tok, qd = a->n_head * a->hd, kvd = a->n_head_kv * a->hd, n_rows = N_SEQ * a->n_ctx;
    bool *vis = calloc((size_t)n_rows, 1);
    assert_non_null(vis);
    for (int i = 0; i < n; i++)
        for (int r = sc.row0[i]; r <= sc.row0[i] + sc.pos[i]; r++) vis[r] = true;
    tb_prepare(t, NULL, 0, n, a->n_ctx);
    dcache c = dcache_make(t, ct, a->n_ctx, kvd, vis, seed);
    uint64_t s = seed + 2;
    float *q = h_rand((size_t)n * qd, &s, 6.0f), *y = h_floats((size_t)n * qd), *ref = h_floats((size_t)n * qd);
    float *dq = d_up(t, q, (size_t)n * qd * 4), *dy = d_nan(t, (size_t)n * qd);
    const ll_attn_params p = {a->n_head, a->n_head_kv, a->hd, 1.0f / sqrtf((float)a->hd)};
    t->o->attention(t->b, dy, dq, &c.dev, &sc.bp, &p);
    d_down(t, y, dy, (size_t)n * qd * 4);
    ll_ref_attention(ref, q, &c.host, &sc.bp, &p);
    char what[160], label[64];
    snprintf(what, sizeof what, "%s attention cache %s %d/%d hd %d n_ctx %d %s (%d tokens)", t->e->name,
             ll_type_name(ct), a->n_head, a->n_head_kv, a->hd, a->n_ctx, k_sc_names[kind], n);
    snprintf(label, sizeof label, "attention %s", ll_type_name(ct));
    check_rows(what, label, y, ref, n, (size_t)qd, TOL_ATTN);
    d_free(t, dq), d_free(t, dy), dcache_free(t, &c);
    free(q), free(y), free(ref), free(vis);
}

static void t_attention(tb *t) {
    for (int ci = 0; ci < 3; ci++) {
        if (!type_ok(t, LL_OP_ATTENTION, k_ctypes[ci], "attention")) continue;
        for (size_t si = 0; si < sizeof k_attn_shapes / sizeof k_attn_shapes[0]; si++)
            for (int kind = 0; kind < SC_KINDS; kind++)
                one_attention(t, k_ctypes[ci], &k_attn_shapes[si], kind, 1900 + si);
    }
}

static const op_test k_ops[] = {
    {"attention", t_attention}, {"kv_store", t_kv_store}, {"rope_kv_store", t_rope_kv_store},
    {"qkv_rope_store", t_qkv_rope_store},
};

int main(void) { return bo_run("backend_kv", k_ops, (int)(sizeof k_ops / sizeof k_ops[0])); }
