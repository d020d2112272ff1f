// test_matmul.c — ll_matmul (every SIMD/threaded path) against ll_matmul_ref for F32/F16/BF16 weights: odd
// shapes, 1-3 threads, poisoned outputs, Inf/NaN propagation, unaligned and page-end weights, workspace bounds.
#include "testutil.h"

#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/matmul.h"
#include "core/half.h"

// Pools live only for the call that uses them: idle workers spin for a while after each job, and on a
// 2-core machine spinning pools would slow the reference computations between calls.
static const uint32_t k_types[] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_BF16};

static size_t esize(uint32_t ty) { return ty == LL_TYPE_F32 ? 4 : 2; }

// W[o][i] as stored, back to double (the test's own conversion, for the error bound).
static double w_at(uint32_t ty, const uint8_t *W, size_t idx) {
    uint16_t h;
    float f;
    if (ty == LL_TYPE_F32) { memcpy(&f, W + idx * 4, 4); return f; }
    memcpy(&h, W + idx * 2, 2);
    return ty == LL_TYPE_F16 ? ll_fp16_to_fp32(h) : ll_bf16_to_fp32(h);
}

static void w_set(uint32_t ty, uint8_t *W, size_t idx, float v) {
    uint16_t h;
    if (ty == LL_TYPE_F32) { memcpy(W + idx * 4, &v, 4); return; }
    h = ty == LL_TYPE_F16 ? ll_fp32_to_fp16(v) : ll_fp32_to_bf16(v);
    memcpy(W + idx * 2, &h, 2);
}

// Random weights in [-1, 1], never 0 (|w| >= 1/64: a product with Inf is then Inf, not NaN). Every 97th
// value is tiny (an fp16 subnormal) so exact conversion of subnormals is exercised.
static void fill_w(uint32_t ty, uint8_t *W, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        float v = tu_rng_uniform(&seed);
        v = v < 0 ? v - 1.0f / 64 : v + 1.0f / 64;
        if (i % 97 == 13) v = v * 3e-6f;
        w_set(ty, W, i, v);
    }
}

static void fill_x(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        float v = tu_rng_uniform(&seed);
        x[i] = v < 0 ? v - 1.0f / 64 : v + 1.0f / 64;
    }
}

// sum_i |W[o][i] x[t][i]|: the scale of the rounding error of any f32 summation order.
static void abs_sums(uint32_t ty, const uint8_t *W, const float *x, int n_in, int n_out, int nt, double *out) {
    for (int t = 0; t < nt; t++)
        for (int o = 0; o < n_out; o++) {
            double s = 0;
            for (int i = 0; i < n_in; i++) s += fabs(w_at(ty, W, (size_t)o * n_in + i) * x[(size_t)t * n_in + i]);
            out[(size_t)t * n_out + o] = s;
        }
}

// ll_matmul with a workspace of exactly ll_matmul_wsize bytes followed by a canary that must survive.
static void run_fast(uint32_t ty, int nth, const void *W, const float *x, float *y, int n_in, int n_out, int nt) {
    size_t ws = ll_matmul_wsize(ty, n_in, nt, nth);
    uint8_t *wsp = ll_aligned_alloc(ws + 64, 64, NULL);
    assert_non_null(wsp);
    memset(wsp + ws, 0xA5, 64);
    tu_poison(y, (size_t)n_out * nt);
    ll_pool *pool = ll_pool_init(nth, NULL);
    assert_non_null(pool);
    ll_matmul(pool, ty, W, x, y, n_in, n_out, nt, wsp);
    ll_pool_free(pool);
    for (int i = 0; i < 64; i++) assert_int_equal(wsp[ws + i], 0xA5);
    ll_aligned_free(wsp);
}

// Tolerance: the kernels accumulate n_in exact products in f32 (FMA) in some order. Worst case that is
// n_in * 2^-24 * sum|w x|; for random-sign inputs it is a few 2^-24 * sum|w x|. 1e-5 (~170 ulp of the
// sum of magnitudes) leaves room for that and still catches a dropped or repeated term (~1/n_in of it).
#define REL_TOL 1e-5

static double g_rel_tol = REL_TOL; // test_f16_long_rows widens it for its f16 activations

static int compare(const float *y, const float *ref, const double *abssum, size_t n, const char *what) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)y[i] - (double)ref[i]), tol = g_rel_tol * abssum[i] + 1e-30;
        if (!isfinite(y[i]) || !(err <= tol)) {
            if (bad++ < 3) printf("# %s: out %zu: got %.9g want %.9g (tol %.3g)\n", what, i, y[i], ref[i], tol);
        }
    }
    return bad;
}

// One shape: reference once, then every thread count, W at byte offset woff of its buffer.
static void check_shape_big(uint32_t ty, int n_in, int n_out, int nt, size_t woff, uint64_t seed, float big) {
    size_t nw = (size_t)n_in * n_out;
    uint8_t *wbuf = malloc(nw * esize(ty) + 64);
    float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
    float *y = ll_aligned_alloc((size_t)n_out * nt * sizeof(float) + 64, 64, NULL);
    float *ref = malloc((size_t)n_out * nt * sizeof(float));
    double *abssum = malloc((size_t)n_out * nt * sizeof(double));
    assert_true(wbuf && x && y && ref && abssum);
    uint8_t *W = wbuf + woff;
    fill_w(ty, W, nw, seed);
    fill_x(x, (size_t)n_in * nt, seed ^ 0x5151);
    if (big != 0) x[n_in / 2] = big;
    ll_matmul_ref(ty, W, x, ref, n_in, n_out, nt);
    abs_sums(ty, W, x, n_in, n_out, nt, abssum);
    for (int nth = 1; nth <= 3; nth++) {
        run_fast(ty, nth, W, x, y, n_in, n_out, nt);
        char what[128];
        snprintf(what, sizeof what, "%s n_in=%d n_out=%d tokens=%d threads=%d woff=%zu", ll_type_name(ty), n_in,
                 n_out, nt, nth, woff);
        int bad = compare(y, ref, abssum, (size_t)n_out * nt, what);
        if (bad) printf("# %s: %d of %d outputs wrong\n", what, bad, n_out * nt);
        assert_int_equal(bad, 0);
    }
    free(wbuf);
    ll_aligned_free(x);
    ll_aligned_free(y);
    free(ref);
    free(abssum);
}

static void check_shape(uint32_t ty, int n_in, int n_out, int nt, size_t woff, uint64_t seed) {
    check_shape_big(ty, n_in, n_out, nt, woff, seed, 0);
}

// One-token F16 rows longer than 4096 take an f16 copy of x (matmul_x86.c, z_dot): each x rounds by up to 2^-11
// of itself, so the bound is 2^-11 of sum |w x| on top of the f32 one. An x past the f16 range (1e5) must keep
// the f32 path: the f32 bound again (an f16 x would be inf).
static void test_f16_long_rows(void **state) {
    (void)state;
    g_rel_tol = REL_TOL + 1.0 / 2048;
    check_shape(LL_TYPE_F16, 8192, 37, 1, 0, 31);
    check_shape(LL_TYPE_F16, 4097, 19, 1, 2, 32);
    g_rel_tol = REL_TOL;
    check_shape_big(LL_TYPE_F16, 8192, 37, 1, 0, 33, 1e5f);
}

// Every type x token count x shape; n_in = 1100 and 4096 (several K blocks) with fewer n_out to stay fast.
static void sweep(uint32_t ty) {
    static const int tokens[] = {1, 2, 3, 5, 7, 16, 17, 33}; // 5: a 1-token remainder group of the dot form
    static const int n_ins[] = {1, 7, 33, 100, 172, 257};
    static const int n_outs[] = {1, 5, 17, 64, 300};
    uint64_t seed = 1000 + ty;
    int c = 0;
    size_t e = esize(ty);
    for (size_t a = 0; a < sizeof tokens / sizeof *tokens; a++) {
        for (size_t b = 0; b < sizeof n_ins / sizeof *n_ins; b++)
            for (size_t d = 0; d < sizeof n_outs / sizeof *n_outs; d++, c++)
                check_shape(ty, n_ins[b], n_outs[d], tokens[a], (size_t)(c % 3) * e, seed++); // offsets 0, e, 2e
        check_shape(ty, 1100, 37, tokens[a], e, seed++);
        check_shape(ty, 4096, 5, tokens[a], 0, seed++);
        check_shape(ty, 4096, 64, tokens[a], e, seed++);
    }
    check_shape(ty, 33, 37, 200, e, seed++); // two token tiles of the prefill path
    printf("# note: %s uses %s\n", ll_type_name(ty), ll_matmul_isa(ty));
}

static void test_f32(void **state) { (void)state; sweep(LL_TYPE_F32); }
static void test_f16(void **state) { (void)state; sweep(LL_TYPE_F16); }
static void test_bf16(void **state) { (void)state; sweep(LL_TYPE_BF16); }

// The reference itself on values whose products and sums are exact.
static void test_ref_exact(void **state) {
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        uint32_t ty = k_types[k];
        uint8_t W[6 * 4];
        float wv[6] = {1, -2, 0.5f, 3, 0.25f, -1}; // (2, 3)
        for (int i = 0; i < 6; i++) w_set(ty, W, (size_t)i, wv[i]);
        float x[6] = {2, 1, 4, -1, 8, 0.5f}; // (2 tokens, 3)
        float y[4];
        ll_matmul_ref(ty, W, x, y, 3, 2, 2);
        assert_true(y[0] == 2 - 2 + 2 && y[1] == 6 + 0.25f - 4);              // token 0
        assert_true(y[2] == -1 - 16 + 0.25f && y[3] == -3 + 2 - 0.5f);        // token 1
    }
}

// Inf and NaN reach the outputs they touch, and only those (masked tails must not read a neighbour's row).
static void check_nonfinite(uint32_t ty, int n_in, int n_out, int nt, int nth) {
    size_t nw = (size_t)n_in * n_out;
    uint8_t *W = malloc(nw * esize(ty));
    float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
    float *y = ll_aligned_alloc((size_t)n_out * nt * sizeof(float), 64, NULL);
    float *ref = malloc((size_t)n_out * nt * sizeof(float));
    assert_true(W && x && y && ref);
    fill_w(ty, W, nw, 77);
    fill_x(x, (size_t)n_in * nt, 78);
    // token 0: NaN in its last element; token 1: +Inf in its first; row 2: Inf in its last column,
    // row 3: NaN in its middle column (row 3 exists when n_out >= 4).
    x[(size_t)n_in - 1] = NAN;
    if (nt > 1) x[(size_t)n_in] = INFINITY;
    if (n_out > 2) w_set(ty, W, 2 * (size_t)n_in + n_in - 1, -INFINITY);
    if (n_out > 3) w_set(ty, W, 3 * (size_t)n_in + n_in / 2, NAN);
    ll_matmul_ref(ty, W, x, ref, n_in, n_out, nt);
    run_fast(ty, nth, W, x, y, n_in, n_out, nt);
    for (int t = 0; t < nt; t++)
        for (int o = 0; o < n_out; o++) {
            float a = y[(size_t)t * n_out + o], r = ref[(size_t)t * n_out + o];
            if (isnan(r)) {
                if (!isnan(a)) printf("# %s n_in=%d t=%d o=%d: got %g want NaN\n", ll_type_name(ty), n_in, t, o, a);
                assert_true(isnan(a));
            } else if (isinf(r)) {
                if (a != r) printf("# %s n_in=%d t=%d o=%d: got %g want %g\n", ll_type_name(ty), n_in, t, o, a, r);
                assert_true(a == r);
            } else {
                assert_true(isfinite(a));
            }
        }
    // The pattern must have produced what it was built for, in the reference as well.
    assert_true(isnan(ref[0]));
    if (nt > 1 && n_out > 1) assert_true(isinf(ref[(size_t)n_out]));
    if (nt > 2 && n_out > 2) assert_true(isinf(ref[2 * (size_t)n_out + 2]));
    free(W);
    ll_aligned_free(x);
    ll_aligned_free(y);
    free(ref);
}

static void test_nonfinite(void **state) {
    (void)state;
    static const int n_ins[] = {7, 33, 100, 4096};
    static const int tokens[] = {3, 33};
    for (size_t k = 0; k < 3; k++)
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 2; b++) check_nonfinite(k_types[k], n_ins[a], 40, tokens[b], 2);
}

// W ending exactly at a PROT_NONE page, at an odd 2-byte alignment: no read past the last row.
static void test_page_end(void **state) {
    (void)state;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t k = 0; k < 3; k++) {
        uint32_t ty = k_types[k];
        int n_in = 37, n_out = 45, nt_list[] = {1, 9, 20};
        size_t bytes = (size_t)n_in * n_out * esize(ty), span = ll_align_up(bytes, pg) + pg;
        uint8_t *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(map != MAP_FAILED);
        assert_int_equal(mprotect(map + span - pg, pg, PROT_NONE), 0);
        uint8_t *W = map + span - pg - bytes; // bytes is odd*2 for 16-bit types: W is 2 mod 4
        fill_w(ty, W, (size_t)n_in * n_out, 99);
        for (int q = 0; q < 3; q++) {
            int nt = nt_list[q];
            float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
            float *y = ll_aligned_alloc((size_t)n_out * nt * sizeof(float), 64, NULL);
            float *ref = malloc((size_t)n_out * nt * sizeof(float));
            double *abssum = malloc((size_t)n_out * nt * sizeof(double));
            fill_x(x, (size_t)n_in * nt, 5);
            ll_matmul_ref(ty, W, x, ref, n_in, n_out, nt);
            abs_sums(ty, W, x, n_in, n_out, nt, abssum);
            run_fast(ty, 2, W, x, y, n_in, n_out, nt);
            assert_int_equal(compare(y, ref, abssum, (size_t)n_out * nt, "page end"), 0);
            ll_aligned_free(x);
            ll_aligned_free(y);
            free(ref);
            free(abssum);
        }
        munmap(map, span);
    }
}

// One workspace sized for the largest batch serves every smaller one (how the CPU backend uses it).
static void test_workspace_reuse(void **state) {
    (void)state;
    int n_in = 300, n_out = 70, max_nt = 40;
    for (size_t k = 0; k < 3; k++) {
        uint32_t ty = k_types[k];
        size_t ws = ll_matmul_wsize(ty, n_in, max_nt, 3);
        for (int nt = 1; nt <= max_nt; nt++) assert_true(ll_matmul_wsize(ty, n_in, nt, 3) <= ws);
        uint8_t *wsp = ll_aligned_alloc(ws + 64, 64, NULL);
        uint8_t *W = malloc((size_t)n_in * n_out * esize(ty));
        float *x = ll_aligned_alloc((size_t)n_in * max_nt * sizeof(float), 64, NULL);
        float *y = ll_aligned_alloc((size_t)n_out * max_nt * sizeof(float), 64, NULL);
        float *ref = malloc((size_t)n_out * max_nt * sizeof(float));
        double *abssum = malloc((size_t)n_out * max_nt * sizeof(double));
        fill_w(ty, W, (size_t)n_in * n_out, 3);
        fill_x(x, (size_t)n_in * max_nt, 4);
        ll_matmul_ref(ty, W, x, ref, n_in, n_out, max_nt);
        abs_sums(ty, W, x, n_in, n_out, max_nt, abssum);
        memset(wsp + ws, 0x5A, 64);
        ll_pool *pool = ll_pool_init(3, NULL);
        assert_non_null(pool);
        for (int nt = 1; nt <= max_nt; nt += 3) {
            tu_poison(y, (size_t)n_out * max_nt);
            ll_matmul(pool, ty, W, x, y, n_in, n_out, nt, wsp);
            assert_int_equal(compare(y, ref, abssum, (size_t)n_out * nt, "reuse"), 0);
            if (nt < max_nt) assert_true(isnan(y[(size_t)n_out * nt])); // nothing written past the batch
        }
        ll_pool_free(pool);
        for (int i = 0; i < 64; i++) assert_int_equal(wsp[ws + i], 0x5A);
        ll_aligned_free(wsp);
        free(W);
        ll_aligned_free(x);
        ll_aligned_free(y);
        free(ref);
        free(abssum);
    }
}

static void test_supports(void **state) {
    (void)state;
    for (size_t k = 0; k < 3; k++) assert_true(ll_matmul_supports(k_types[k]));
    assert_false(ll_matmul_supports(1000));
    assert_false(ll_matmul_supports(LL_TYPE_I32));
    assert_string_equal(ll_matmul_isa(1000), "none");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_exact),   cmocka_unit_test(test_supports),
        cmocka_unit_test(test_f32),         cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_f16_long_rows),
        cmocka_unit_test(test_page_end),    cmocka_unit_test(test_workspace_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
