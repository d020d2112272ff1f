// backend_ops.h — the harness of the backend conformance suite (test_backend_ops.c: matmuls and element-wise ops;
// test_backend_kv.c: the KV cache ops and attention): the backend under test and its memory, random weights of
// every type, the error model of matmuls, row comparisons, and the runner over the registry (ll_backend_list). Every
// op is checked against the scalar references of src/backend/ref.c on random inputs, through the backend's own
// memory (alloc/upload/download), outputs poisoned with NaN first. A backend whose probe finds no device is skipped
// with its reason; an optional op a backend leaves NULL is skipped with a note.
#ifndef LL_TEST_BACKEND_OPS_H
#define LL_TEST_BACKEND_OPS_H

#include "testutil.h"

#include <float.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/ref.h"
#include "core/half.h"
#include "types/quant.h"

// ---- tolerances -------------------------------------------------------------------------------------------------
// Matmuls (and the matmul halves of the fused ops), per token row of outputs and per output:
//  row:  ||y - ref||^2 <= 9 V + (MM_REL ||ref||)^2, V = sum over outputs of sum_i w_i^2 s_i^2 / 12 for quantized
//        weights (0 else), s_i = amax of x over x_i's aligned block of 256 / 127: a backend may quantize x to 8 bits
//        for integer dots (CPU: Q8_0 / Q8_1 blocks of 32 or Q8_K of 256; CUDA: blocks of 32), a rounding error
//        uniform in +-s/2 per value, so V is its expected squared error (blocks of 32 have a smaller s) and 9 V
//        is three standard deviations. The reference takes the float activations (ref.c).
//  element: |y - ref| <= 6 sqrt(v) + MM_ELEM sum_i |w_i x_i| (v: the output's share of V).
// MM_REL / MM_ELEM per weight type: F32 1e-5 / 1e-5 (f32 sums in any order: ~2^-24 sqrt(n) of the row, 170 ulp of
// sum |w x| per output, test_matmul's bound); F16 and quantized 2e-3 / 2^-9 (batched GEMMs round x, and a
// quantized weight dequantized, to f16: 2^-11 each, rms ~3e-4; the Q8 blocks' fp16 scale, 2^-11 of x); BF16 1e-2
// / 2^-7 (x to bf16: 2^-8 each, rms ~1.5e-3).
#define MM_REL_F32 1e-5
#define MM_REL_F16 2e-3
#define MM_REL_BF16 1e-2
#define MM_ELEM_F32 1e-5
#define MM_ELEM_F16 (1.0 / 512)
#define MM_ELEM_BF16 (1.0 / 128)
// Element-wise float ops, rel L2 per row: add, add_bias: 0 (one f32 add, correctly rounded: the reference's
// float64 sum rounded once is the same float); rmsnorm, swiglu: 2e-6 (a few ulp: the 1/rms or expf and the
// products); rope: 5e-6 (sine and cosine of angles up to 8e3 rad, reduced in float64, a few ulp of f32);
// get_rows: F32/F16/BF16 exact, quantized 1e-6 (d * q - m with or without an FMA: 1 ulp).
#define TOL_NORM 2e-6
#define TOL_SWIGLU 2e-6
#define TOL_ROPE 5e-6
#define TOL_GET_ROWS_Q 1e-6
// Attention, rel L2 per token (all heads): 3e-3. Batched kernels may run q.k and p.v on f16 operands (CUDA's mma
// kernels: q, k, p, v each rounded to f16, 2^-11; the scores here have std ~2 so their error, ~1e-3 absolute,
// moves the weights by ~1e-3 relative); an f32 kernel is at ~1e-6. The cache rows are the reference's own bytes,
// so F16 and Q8_0 caches add no error of their own; rows no token of the step may see hold NaN and must not reach
// any output.
#define TOL_ATTN 3e-3
// kv_store: the exact bytes (ref.h: ll_ref_kv_row_store); the rows it must not write keep their bytes.
// rope_kv_store: q and k as rope; V rows exact; K rows per value within one f16 ulp (F16) or one code of its
// block (Q8_0: amax/127) of the reference, at most 1% of them off (a rotated value 1 f32 ulp away flips a
// rounding); F32 K rows rel L2 TOL_ROPE.
// qkv_rope_store: q, k, v as matmuls (rotation keeps row norms, so the row bound holds); cached rows decoded, rel
// L2 per row <= a + c: a = the k/v row's allowed relative error, c = 0 (F32), 2^-10 (F16: one more rounding),
// 3 sqrt(a / 73) (Q8_0: values a apart change code with probability a/step, step ~ 1/73 of a row's rms).
// matmul_swiglu: rel L2 per row <= 1.5 sqrt(a_gate^2 + a_up^2) + TOL_SWIGLU, a_* the gate's and up's allowed
// row errors (silu(g) u moves by about the independent relative errors of g and u; d ln silu(g) / d ln g is 1 to
// 1.3 for g >= -1, the larger factors below that fall on small values; f16 storage of g and u is in MM_REL_F16).
// matmul_add_rmsnorm: x as matmul_add; y rel L2 per row <= 2 (x's measured row error) + TOL_NORM.
// topk, copy: exact (ids, values, bytes).

// ---- the backend under test, its memory -------------------------------------------------------------------------

typedef struct tb {
    const ll_backend_entry *e;
    ll_backend *b;
    const ll_backend_ops *o;
} tb;

// The worst error / allowed ratio seen per label in the current test (printed at its end).
typedef struct meas {
    char label[96];
    double ratio, err, allowed;
} meas;
static meas g_meas[64]; // per program: one test runs at a time
static int g_n_meas;

static inline void note_err(const char *label, double err, double allowed) {
    int i = 0;
    while (i < g_n_meas && strcmp(g_meas[i].label, label)) i++;
    if (i == g_n_meas) {
        if (g_n_meas == 64) return;
        snprintf(g_meas[g_n_meas].label, sizeof g_meas[0].label, "%s", label);
        g_meas[g_n_meas++].ratio = -1;
    }
    double r = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0);
    if (r > g_meas[i].ratio) g_meas[i].ratio = r, g_meas[i].err = err, g_meas[i].allowed = allowed;
}

static inline void *d_alloc(tb *t, size_t bytes) {
    ll_error err = {0};
    void *p = t->o->alloc(t->b, bytes ? bytes : 4, &err);
    if (!p) fail_msg("%s: alloc of %zu bytes failed: %s", t->e->name, bytes, err.message);
    return p;
}

static inline void *d_up(tb *t, const void *h, size_t bytes) {
    void *d = d_alloc(t, bytes);
    t->o->upload(t->b, d, h, bytes);
    return d;
}

static inline float *d_nan(tb *t, size_t n) {
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    tu_poison(h, n);
    float *d = d_up(t, h, n * sizeof *h);
    free(h);
    return d;
}

static inline void d_down(tb *t, void *h, const void *d, size_t bytes) {
    t->o->synchronize(t->b);
    t->o->download(t->b, h, d, bytes);
}

static inline void d_free(tb *t, void *d) { t->o->free(t->b, d); }

static inline void tb_prepare(tb *t, const ll_weight *const *ws, int n, int max_tok, int max_ctx) {
    ll_error err = {0};
    if (t->o->prepare(t->b, ws, n, max_tok, max_ctx, &err) != LL_OK)
        fail_msg("%s: prepare (%d weights, max_tok %d, max_ctx %d): %s", t->e->name, n, max_tok, max_ctx, err.message);
}

static inline float *h_rand(size_t n, uint64_t *s, float scale) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = tu_rng_uniform(s) * scale;
    return x;
}

static inline float *h_floats(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    return x;
}

// rel L2 of one row, NaN when got holds a non-finite value.
static inline double row_rel(const float *got, const float *ref, size_t n) {
    if (tu_count_nonfinite(got, n)) return NAN;
    return tu_rel_l2(got, ref, n);
}

// Every row of n values within tol rel L2 (tol 0: bit-equal floats).
static inline void check_rows(const char *what, const char *label, const float *got, const float *ref, int rows,
                              size_t n, double tol) {
    for (int r = 0; r < rows; r++) {
        const float *g = got + (size_t)r * n, *f = ref + (size_t)r * n;
        double e = row_rel(g, f, n);
        if (tol == 0 && e == e) e = memcmp(g, f, n * sizeof *g) ? 1 : 0;
        note_err(label, e == e ? e : INFINITY, tol);
        if (!(e <= tol)) fail_msg("%s: row %d of %d: rel L2 %.3g (tolerance %.3g)%s", what, r, rows, e, tol,
                                  tu_count_nonfinite(g, n) ? ", non-finite values" : "");
    }
}

// ---- weights ----------------------------------------------------------------------------------------------------

static const uint32_t k_wtypes[] = {LL_TYPE_F32,  LL_TYPE_F16,  LL_TYPE_BF16, LL_TYPE_Q8_0,
                                    LL_TYPE_Q4_0, LL_TYPE_Q4_1, LL_TYPE_Q5_0, LL_TYPE_Q5_1,
                                    LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};
#define N_WTYPES (int)(sizeof k_wtypes / sizeof k_wtypes[0])

static inline bool is_quant(uint32_t ty) { return ty != LL_TYPE_F32 && ty != LL_TYPE_F16 && ty != LL_TYPE_BF16; }

static inline void set_f16(uint8_t *p, float v) {
    uint16_t h = ll_fp32_to_fp16(v);
    memcpy(p, &h, 2);
}

// A quantized block of random bytes (every code, Q8_0's -128 included: a file may hold it), its fp16 scales set
// to sizes that give weights of about +-1 (random bytes there could be inf or NaN), and the mins of Q4_1, Q5_1,
// Q4_K, Q5_K to about the mean code times the scale, so that weights average about 0 as trained ones do (rows of
// one sign make every output share the error of the token's quantized x: a single draw, not an average).
static inline void fix_scales(uint32_t ty, uint8_t *blk, uint64_t *s) {
    const float u = 0.5f + 0.5f * (tu_rng_uniform(s) + 1.0f), m = 1.0f + 0.2f * tu_rng_uniform(s);
    switch (ty) {
    case LL_TYPE_Q4_0: case LL_TYPE_Q5_0: set_f16(blk, 0.1f * u); break;
    case LL_TYPE_Q4_1: set_f16(blk, 0.1f * u), set_f16(blk + 2, -7.5f * 0.1f * u * m); break;
    case LL_TYPE_Q5_1: set_f16(blk, 0.05f * u), set_f16(blk + 2, -15.5f * 0.05f * u * m); break;
    case LL_TYPE_Q8_0: set_f16(blk, 0.008f * u); break;
    // x = d sc q - dmin mn, sc and mn 6-bit codes (mean 31.5 each), q 4 or 5 bits
    case LL_TYPE_Q4_K: set_f16(blk, 0.004f * u), set_f16(blk + 2, 7.5f * 0.004f * u * m); break;
    case LL_TYPE_Q5_K: set_f16(blk, 0.002f * u), set_f16(blk + 2, 15.5f * 0.002f * u * m); break;
    case LL_TYPE_Q6_K: set_f16(blk + 208, 0.0005f * u); break;
    default: fail_msg("fix_scales: type %s not handled", ll_type_name(ty));
    }
}

static inline ll_weight w_make(uint32_t ty, int ne0, int ne1, uint64_t seed) {
    uint64_t rb;
    assert_true(ll_type_row_size(ty, (uint64_t)ne0, &rb));
    size_t bytes = (size_t)rb * (size_t)ne1;
    uint8_t *d = malloc(bytes);
    assert_non_null(d);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + ty;
    if (is_quant(ty)) {
        const ll_type_traits *tt = ll_type_get(ty);
        for (size_t i = 0; i < bytes; i += 8) {
            uint64_t r = tu_rng_u64(&s);
            memcpy(d + i, &r, bytes - i < 8 ? bytes - i : 8);
        }
        for (size_t b = 0; b < bytes / tt->size; b++) fix_scales(ty, d + b * tt->size, &s);
    } else {
        float *f = h_rand((size_t)ne0 * ne1, &s, 1.0f);
        ll_type_get(ty)->from_float_ref(f, d, (int64_t)ne0 * ne1);
        free(f);
    }
    ll_weight w = {d, ty, ne0, ne1, "test", false};
    return w;
}

static inline ll_weight w_vec(int n, uint64_t seed, float lo, float hi) { // an F32 vector (norm gains, biases)
    uint64_t s = seed;
    float *f = h_floats((size_t)n);
    for (int i = 0; i < n; i++) f[i] = lo + (hi - lo) * 0.5f * (tu_rng_uniform(&s) + 1.0f);
    ll_weight w = {f, LL_TYPE_F32, n, 1, "test vector", false};
    return w;
}

static inline void w_free(ll_weight *w) { free((void *)w->data); }

static inline bool w_fits(uint32_t ty, int ne0) { return ne0 % ll_type_get(ty)->blck == 0; }

// Whether the backend takes type ty for op; a note when it does not (the cases of that type are left out).
static inline bool type_ok(tb *t, ll_op op, uint32_t ty, const char *opname) {
    if (t->o->supports(t->b, op, ty)) return true;
    printf("# note: %s: %s does not support %s: not tested\n", t->e->name, opname, ll_type_name(ty));
    return false;
}

// Activations: uniform +-1, every 61st value x3 (the 8-bit blocks' amax is then not always ~1).
static inline float *x_make(int n_in, int n_tok, uint64_t seed) {
    uint64_t s = seed;
    float *x = h_rand((size_t)n_in * n_tok, &s, 1.0f);
    for (size_t i = 0; i < (size_t)n_in * n_tok; i += 61) x[i] *= 3.0f;
    return x;
}

// ---- the matmul error model (see the tolerances) -----------------------------------------------------------------

typedef struct mm_model {
    const ll_weight *w;
    int n_tok;
    double *v, *A; // (n_tok, ne1): expected squared error of 8-bit x, sum |w x|
    double rel, elem;
} mm_model;

static inline mm_model mm_model_make(const ll_weight *w, const float *x, int n_tok) {
    const int n = (int)w->ne0, nb = (n + 255) / 256;
    const size_t ny = (size_t)n_tok * (size_t)w->ne1;
    mm_model m = {w, n_tok, calloc(ny, sizeof(double)), calloc(ny, sizeof(double)), MM_REL_F16, MM_ELEM_F16};
    assert_true(m.v && m.A);
    if (w->type == LL_TYPE_F32) m.rel = MM_REL_F32, m.elem = MM_ELEM_F32;
    if (w->type == LL_TYPE_BF16) m.rel = MM_REL_BF16, m.elem = MM_ELEM_BF16;
    double *s2 = calloc((size_t)n_tok * nb, sizeof *s2), *wb = calloc((size_t)nb, sizeof *wb);
    float *row = h_floats((size_t)n);
    assert_true(s2 && wb);
    for (int t = 0; t < n_tok && is_quant(w->type); t++)
        for (int b = 0; b < nb; b++) {
            double amax = 0;
            for (int i = b * 256; i < n && i < (b + 1) * 256; i++) amax = fmax(amax, fabs(x[(size_t)t * n + i]));
            s2[(size_t)t * nb + b] = (amax / 127) * (amax / 127) / 12;
        }
    uint64_t rb;
    assert_true(ll_type_row_size(w->type, (uint64_t)n, &rb));
    for (int64_t o = 0; o < w->ne1; o++) {
        ll_type_get(w->type)->to_float((const uint8_t *)w->data + (size_t)o * rb, row, n);
        for (int b = 0; b < nb; b++) {
            wb[b] = 0;
            for (int i = b * 256; i < n && i < (b + 1) * 256; i++) wb[b] += (double)row[i] * row[i];
        }
        for (int t = 0; t < n_tok; t++) {
            const float *xt = x + (size_t)t * n;
            double v = 0, a = 0;
            for (int b = 0; b < nb; b++) v += wb[b] * s2[(size_t)t * nb + b];
            for (int i = 0; i < n; i++) a += fabs((double)row[i] * xt[i]);
            m.v[(size_t)t * w->ne1 + o] = v, m.A[(size_t)t * w->ne1 + o] = a;
        }
    }
    free(s2);
    free(wb);
    free(row);
    return m;
}

static inline void mm_model_free(mm_model *m) {
    free(m->v);
    free(m->A);
}

// Allowed relative L2 error of row t of a result with reference ref (n_tok, ne1).
static inline double mm_row_allow(const mm_model *m, const float *ref, int t) {
    double V = 0, R = 0;
    for (int64_t o = 0; o < m->w->ne1; o++) {
        V += m->v[(size_t)t * m->w->ne1 + o];
        R += (double)ref[(size_t)t * m->w->ne1 + o] * ref[(size_t)t * m->w->ne1 + o];
    }
    return R > 0 ? sqrt((9 * V + m->rel * m->rel * R) / R) : 0;
}

// got against ref (n_tok, ne1) by the row bound (plus extra, relative) and (elem) the per-output bound; allow[t]
// (may be NULL) gets each row's allowed relative error.
static inline void mm_check(const char *what, const char *label, const mm_model *m, const float *got, const float *ref,
                     bool elem, double extra, double *allow) {
    const size_t n = (size_t)m->w->ne1;
    for (int t = 0; t < m->n_tok; t++) {
        const float *g = got + t * n, *f = ref + t * n;
        const double a = mm_row_allow(m, ref, t) + extra, e = row_rel(g, f, n);
        if (allow) allow[t] = a;
        note_err(label, e == e ? e : INFINITY, a);
        if (!(e <= a)) fail_msg("%s: token %d: rel L2 %.3g (allowed %.3g)%s", what, t, e, a,
                                e != e ? ", non-finite values" : "");
        double worst = 0, worst_b = 0;
        for (size_t o = 0; o < n && elem; o++) {
            const double d = fabs((double)g[o] - f[o]);
            const double b = 6 * sqrt(m->v[t * n + o]) + m->elem * m->A[t * n + o] + 1e-30;
            if (d / b > worst / (worst_b + 1e-300)) worst = d, worst_b = b;
            if (!(d <= b)) fail_msg("%s: token %d output %zu: got %.9g want %.9g (|error| %.3g > bound %.3g)", what, t,
                                    o, g[o], f[o], d, b);
        }
        if (elem) {
            char l2[96];
            snprintf(l2, sizeof l2, "%s per output", label);
            note_err(l2, worst, worst_b);
        }
    }
}

// ---- the suite: every op of a list on every backend -----------------------------------------------------------

typedef struct op_test {
    const char *name;
    void (*fn)(tb *t);
} op_test;


typedef struct run_state {
    const ll_backend_entry *e;
    const op_test *op;
    char name[64];
} run_state;

static inline void run_op(void **state) {
    const run_state *rs = *state;
    char why[256] = "";
    if (rs->e->probe(why, sizeof why) < 1) TU_SKIP("%s: no device answers (%s)", rs->e->name, why);
    tb t = {rs->e, NULL, NULL};
    ll_error err = {0};
    if (ll_backend_init(&t.b, rs->e->name, 2, &err) != LL_OK) fail_msg("%s: init: %s", rs->e->name, err.message);
    t.o = t.b->ops;
    g_n_meas = 0;
    const double t0 = ll_time_s(), c0 = (double)clock() / CLOCKS_PER_SEC;
    rs->op->fn(&t);
    for (int i = 0; i < g_n_meas; i++)
        printf("# %s %s: worst error %.3g (allowed %.3g)\n", rs->e->name, g_meas[i].label, g_meas[i].err,
               g_meas[i].allowed);
    printf("# %s %s: %.2f s (%.2f s of CPU time)\n", rs->e->name, rs->op->name, ll_time_s() - t0,
           (double)clock() / CLOCKS_PER_SEC - c0);
    ll_backend_free(t.b);
}

// Every op of ops on every backend of the registry, one cmocka test each ("cpu_matmul"); LLMLAB_BACKEND_OPS=name
// runs that op alone.
static inline int bo_run(const char *group, const op_test *ops, int n_ops) {
    int nb;
    const ll_backend_entry *list = ll_backend_list(&nb);
    struct CMUnitTest *tests = calloc((size_t)nb * n_ops, sizeof *tests);
    run_state *rs = calloc((size_t)nb * n_ops, sizeof *rs);
    if (!tests || !rs) return 1;
    const char *only = getenv("LLMLAB_BACKEND_OPS");
    int n = 0;
    for (int b = 0; b < nb; b++)
        for (int o = 0; o < n_ops; o++) {
            if (only && *only && strcmp(only, ops[o].name)) continue;
            rs[n].e = &list[b], rs[n].op = &ops[o];
            snprintf(rs[n].name, sizeof rs[n].name, "%s_%s", list[b].name, ops[o].name);
            tests[n] = (struct CMUnitTest){rs[n].name, run_op, NULL, NULL, &rs[n]};
            n++;
        }
    int rc = _cmocka_run_group_tests(group, tests, (size_t)n, NULL, NULL);
    free(tests);
    free(rs);
    return rc;
}

#endif
