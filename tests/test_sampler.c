// test_sampler.c — the sampling chain against independent references: argmax by a plain scan, kept sets of
// top-k / top-p / min-p by a full qsort + libm exp, draw frequencies against the softmax (a few sigma and a
// chi-square bound), determinism, the repetition penalty, NaN/inf input, and a pinned id sequence.
#include "testutil.h"

#include <float.h>

#include "core/core.h"
#include "sampler/sampler.h"

#include <time.h>

// Uniform-ish params for the tests: no truncation, temperature 1.
static ll_sampler_params plain_params(uint64_t seed) {
    ll_sampler_params p = ll_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

static int ref_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// The reference softmax in double with libm exp.
static void ref_softmax(const float *x, int n, double temp, double *p) {
    double mx = x[ref_argmax(x, n)], s = 0;
    for (int i = 0; i < n; i++) s += (p[i] = exp(((double)x[i] - mx) / temp));
    for (int i = 0; i < n; i++) p[i] /= s;
}

static void test_defaults_and_bad_params(void **state) {
    (void)state;
    ll_sampler_params d = ll_sampler_default_params();
    assert_true(d.temp == 0.8f && d.top_k == 40 && d.top_p == 0.95f && d.min_p == 0.05f);
    assert_true(d.repeat_penalty == 1.0f && d.repeat_last_n == 64 && d.seed == 42);
    // Each rejection below logs its reason on stderr.
    ll_sampler_params b = d;
    b.top_p = NAN;
    assert_null(ll_sampler_init(&b, 10));
    b = d, b.top_k = -1;
    assert_null(ll_sampler_init(&b, 10));
    b = d, b.min_p = 1.5f;
    assert_null(ll_sampler_init(&b, 10));
    b = d, b.repeat_penalty = 0.0f;
    assert_null(ll_sampler_init(&b, 10));
    b = d, b.repeat_last_n = -1;
    assert_null(ll_sampler_init(&b, 10));
    b = d, b.temp = INFINITY;
    assert_null(ll_sampler_init(&b, 10));
    assert_null(ll_sampler_init(&d, 0));
    ll_sampler *s = ll_sampler_init(NULL, 10); // NULL = defaults
    assert_non_null(s);
    ll_sampler_free(s);
    ll_sampler_free(NULL);
}

// temp 0: argmax of a plain scan, lowest id on ties, NaN never wins; all NaN/-inf -> 0.
static void test_greedy(void **state) {
    (void)state;
    ll_sampler_params p = plain_params(1);
    p.temp = 0.0f;
    enum { N = 1000 };
    ll_sampler *s = ll_sampler_init(&p, N);
    assert_non_null(s);
    float x[N];
    uint64_t r = 7;
    for (int t = 0; t < 50; t++) {
        for (int i = 0; i < N; i++) x[i] = tu_rng_uniform(&r) * 10;
        assert_int_equal(ll_sampler_sample(s, x), ref_argmax(x, N));
    }
    for (int i = 0; i < N; i++) x[i] = (float)(i % 7); // max 6 first at id 6
    assert_int_equal(ll_sampler_sample(s, x), 6);
    x[3] = 6.0f, x[0] = NAN;
    assert_int_equal(ll_sampler_sample(s, x), 3);
    for (int i = 0; i < N; i++) x[i] = i % 2 ? NAN : -INFINITY;
    assert_int_equal(ll_sampler_sample(s, x), 0);
    x[777] = -1e30f;
    assert_int_equal(ll_sampler_sample(s, x), 777);
    ll_sampler_free(s);
}

static void draw_seq(uint64_t seed, const float *x, int n, int32_t *out, int len) {
    ll_sampler_params p = ll_sampler_default_params();
    p.seed = seed;
    ll_sampler *s = ll_sampler_init(&p, n);
    assert_non_null(s);
    for (int i = 0; i < len; i++) out[i] = ll_sampler_sample(s, x);
    ll_sampler_free(s);
}

// Same seed + same logits -> same ids; another seed -> another sequence. The logits are left untouched.
static void test_determinism(void **state) {
    (void)state;
    enum { N = 100, L = 200 };
    float x[N], x0[N];
    for (int i = 0; i < N; i++) x[i] = 0.01f * (float)(i % 13);
    memcpy(x0, x, sizeof x);
    int32_t a[L], b[L], c[L];
    draw_seq(123, x, N, a, L);
    draw_seq(123, x, N, b, L);
    draw_seq(124, x, N, c, L);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    assert_memory_equal(x, x0, sizeof x);
}

// Pinned ids (this implementation, default params, seed 42) so that a platform or compiler that changes a
// single draw is caught: the chain is specified to give these on x86-64 and arm64 alike.
static void test_pinned_sequence(void **state) {
    (void)state;
    enum { N = 64, L = 24 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = 2.0f * sinf(0.37f * (float)i) + 0.05f * (float)(i % 5);
    int32_t got[L];
    draw_seq(42, x, N, got, L);
    static const int32_t want[L] = {38, 55, 57, 18, 42, 19, 40, 36, 19, 20, 57, 54,
                                    53, 54, 6,  58, 23, 36, 6,  6,  38, 39, 56, 20};
    if (memcmp(got, want, sizeof want) != 0)
        for (int i = 0; i < L; i++) printf("%s%d%s", i ? "" : "# got ", got[i], i + 1 < L ? "," : "\n");
    assert_memory_equal(got, want, sizeof want);
}

// top_k = 1 is greedy whatever the temperature; a tiny top_p keeps only the max.
static void test_topk1_and_tiny_topp(void **state) {
    (void)state;
    enum { N = 5000 };
    float *x = malloc(N * sizeof *x);
    ll_sampler_params p1 = plain_params(9), p2 = plain_params(10);
    p1.top_k = 1, p1.temp = 5.0f;
    p2.top_p = 1e-6f, p2.temp = 5.0f;
    ll_sampler *s1 = ll_sampler_init(&p1, N), *s2 = ll_sampler_init(&p2, N);
    uint64_t r = 99;
    for (int t = 0; t < 100; t++) {
        for (int i = 0; i < N; i++) x[i] = tu_rng_uniform(&r) * 0.5f;
        if (t % 3 == 0) x[(t * 131) % N] = x[(t * 37) % N] = 0.6f; // a tie at the top
        int want = ref_argmax(x, N);
        assert_int_equal(ll_sampler_sample(s1, x), want);
        assert_int_equal(ll_sampler_sample(s2, x), want);
    }
    ll_sampler_free(s1);
    ll_sampler_free(s2);
    free(x);
}

// Draw many times at a huge temperature (near-uniform over what the chain kept) and compare the set of ids
// seen with `want` (want[i] = 1 for ids that must be kept).
static void expect_kept_set(ll_sampler_params p, const float *x, int n, const uint8_t *want, int n_want) {
    p.temp = 1e6f;
    ll_sampler *s = ll_sampler_init(&p, n);
    assert_non_null(s);
    uint8_t *seen = calloc((size_t)n, 1);
    int draws = 25 * n_want + 100, distinct = 0; // P(an id of the set unseen) < n e^-25
    for (int i = 0; i < draws; i++) {
        int32_t id = ll_sampler_sample(s, x);
        assert_true(id >= 0 && id < n);
        if (!want[id]) printf("# id %d (logit %g) drawn but not in the reference set\n", id, (double)x[id]);
        assert_true(want[id]);
        distinct += !seen[id];
        seen[id] = 1;
    }
    assert_int_equal(distinct, n_want);
    free(seen);
    ll_sampler_free(s);
}

typedef struct { float v; int id; } ref_pair;
static int ref_cmp(const void *a, const void *b) {
    const ref_pair *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id - y->id;
}

static ref_pair *ref_sorted(const float *x, int n) {
    ref_pair *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++) r[i] = (ref_pair){x[i], i};
    qsort(r, (size_t)n, sizeof *r, ref_cmp);
    return r;
}

// A p strictly between the mass of the first m-1 and of the first m of r[0..n_set) (softmax over that prefix):
// top-p must then keep exactly m.
static float ref_p_for(const ref_pair *r, int n_set, int m) {
    double s = 0, cm = 0, cm1 = 0;
    for (int i = 0; i < n_set; i++) {
        double e = exp((double)r[i].v - r[0].v);
        s += e;
        if (i < m - 1) cm += e;
        if (i < m) cm1 += e;
    }
    return (float)((cm + cm1) / 2 / s);
}

// 128k vocabulary: top-k by partial selection, top-p by quickselect, with and without top-k, against a full
// qsort. Then the time of one sample() at 256k (a note, not a check).
static void test_large_vocab_sets(void **state) {
    (void)state;
    enum { N = 131072, NT = 256000 };
    float *x = malloc(NT * sizeof *x);
    uint8_t *want = calloc(N, 1);
    uint64_t r = 2024;
    for (int i = 0; i < NT; i++) x[i] = tu_rng_uniform(&r) * 12.0f;
    ref_pair *ref = ref_sorted(x, N);
    x[ref[3].id] = x[ref[4].id] = x[ref[5].id] = x[ref[2].id]; // ties inside the sets
    free(ref);
    ref = ref_sorted(x, N);
    ll_sampler_params p = plain_params(5);

    p.top_k = 16; // top-k alone
    for (int i = 0; i < 16; i++) want[ref[i].id] = 1;
    expect_kept_set(p, x, N, want, 16);
    memset(want, 0, N);

    p.top_k = 0; // top-p alone: the 9 best by mass
    p.top_p = ref_p_for(ref, N, 9);
    for (int i = 0; i < 9; i++) want[ref[i].id] = 1;
    expect_kept_set(p, x, N, want, 9);
    memset(want, 0, N);

    p.top_k = 100; // top-p after top-k renormalises over the 100 kept
    p.top_p = ref_p_for(ref, 100, 12);
    for (int i = 0; i < 12; i++) want[ref[i].id] = 1;
    expect_kept_set(p, x, N, want, 12);

    ll_sampler_params d = ll_sampler_default_params();
    ll_sampler *s = ll_sampler_init(&d, NT);
    double t0 = ll_time_s();
    for (int i = 0; i < 10; i++) (void)ll_sampler_sample(s, x);
    double t1 = ll_time_s();
    ll_sampler_free(s);
    d.top_k = 0;
    s = ll_sampler_init(&d, NT);
    double t2 = ll_time_s();
    for (int i = 0; i < 3; i++) (void)ll_sampler_sample(s, x);
    double t3 = ll_time_s();
    ll_sampler_free(s);
    printf("# note: n_vocab 256000, uniform logits: %.2f ms/sample with defaults, %.2f ms with top_k 0 "
           "(top_p 0.95)\n", (t1 - t0) / 10 * 1e3, (t3 - t2) / 3 * 1e3);
    free(ref);
    free(want);
    free(x);
}

// top-p without top-k on flat distributions, where the prefix is most of the vocabulary (the quickselect goes
// many rounds deep), and on all-equal logits, where ties rank by id.
static void test_top_p_flat(void **state) {
    (void)state;
    enum { N = 2048 };
    float *x = malloc(N * sizeof *x);
    uint8_t *want = calloc(N, 1);
    ll_sampler_params p = plain_params(8);
    for (int i = 0; i < N; i++) x[i] = 0.25f;
    p.top_p = 1.0f / 64; // 32 of 2048 equal weights, exactly (sums of 1.0): ids 0..31
    for (int i = 0; i < 32; i++) want[i] = 1;
    expect_kept_set(p, x, N, want, 32);
    p.top_k = 64, p.top_p = 0.5f; // the same 32 through the sorted path (top-k first)
    expect_kept_set(p, x, N, want, 32);
    p.top_k = 0, p.top_p = 0.25f; // a range small enough to be sorted at once: 8 of 32
    memset(want + 8, 0, N - 8);
    expect_kept_set(p, x, 32, want, 8);
    memset(want, 0, N);
    p.top_k = 0;
    uint64_t r = 5;
    for (int i = 0; i < N; i++) x[i] = tu_rng_uniform(&r) * 0.5f;
    ref_pair *ref = ref_sorted(x, N);
    p.top_p = ref_p_for(ref, N, 300);
    for (int i = 0; i < 300; i++) want[ref[i].id] = 1;
    expect_kept_set(p, x, N, want, 300);
    free(ref);
    free(want);
    free(x);
}

// min-p keeps p >= min_p * p_max, before temperature: probabilities (0.4, 0.3, 0.2, 0.1) at temp 1.
static void test_min_p(void **state) {
    (void)state;
    float x[6] = {logf(0.2f), logf(0.4f), logf(0.1f), logf(0.3f), -INFINITY, NAN};
    ll_sampler_params p = plain_params(3);
    uint8_t want[6] = {0};
    p.min_p = 0.6f; // threshold 0.24: ids 1 (0.4) and 3 (0.3)
    want[1] = want[3] = 1;
    expect_kept_set(p, x, 6, want, 2);
    p.min_p = 0.4f; // 0.16: adds id 0 (0.2)
    want[0] = 1;
    expect_kept_set(p, x, 6, want, 3);
    p.min_p = 1.0f; // only the max
    memset(want, 0, sizeof want);
    want[1] = 1;
    expect_kept_set(p, x, 6, want, 1);
    // top-p 0.65 on the same: 0.4 + 0.3 >= 0.65 -> ids 1 and 3 (0.4 alone is short)
    p.min_p = 0.0f, p.top_p = 0.65f;
    want[3] = 1;
    expect_kept_set(p, x, 6, want, 2);
}

// The min-p boundary to the last float: for 200 thresholds, the float logit just above ln(min_p) is kept and the
// one just below is dropped (decided with libm's exp). Checks the sampler's own exp to ~1e-8 over its range.
static void test_min_p_boundary(void **state) {
    (void)state;
    for (int t = 0; t < 200; t++) {
        float mp = 0.995f * powf(0.93f, (float)t); // 0.995 .. 5e-7
        float hi = (float)log((double)mp);
        while (exp((double)hi) < (double)mp) hi = nextafterf(hi, INFINITY);
        while (exp((double)nextafterf(hi, -INFINITY)) >= (double)mp) hi = nextafterf(hi, -INFINITY);
        float x[3] = {0.0f, hi, nextafterf(hi, -INFINITY)};
        ll_sampler_params p = plain_params((uint64_t)t);
        p.min_p = mp;
        uint8_t want[3] = {1, 1, 0};
        expect_kept_set(p, x, 3, want, 2);
    }
}

// CTRL rule: positive logits divided, negative multiplied, once per distinct id in the last repeat_last_n.
static void test_repeat_penalty(void **state) {
    (void)state;
    ll_sampler_params p = plain_params(1);
    p.temp = 0.0f, p.repeat_penalty = 1.25f, p.repeat_last_n = 3;
    ll_sampler *s = ll_sampler_init(&p, 8);
    float x[8] = {2.0f, 1.7f, -5, -5, -5, -5, -5, -5}, x0[8];
    memcpy(x0, x, sizeof x);
    assert_int_equal(ll_sampler_sample(s, x), 0);
    ll_sampler_accept(s, 0);
    ll_sampler_accept(s, 0);
    ll_sampler_accept(s, 0); // 2/1.25 = 1.6 < 1.7 once; three times would be 1.02 (still below 1.7)
    assert_int_equal(ll_sampler_sample(s, x), 1);
    assert_memory_equal(x, x0, sizeof x); // caller's logits untouched
    float y[8] = {2.0f, 1.5f, -5, -5, -5, -5, -5, -5}; // 1.6 > 1.5: applied once, 0 still wins
    assert_int_equal(ll_sampler_sample(s, y), 0);
    ll_sampler_accept(s, 5);
    ll_sampler_accept(s, 6);
    ll_sampler_accept(s, 7); // 0 has left the window of 3
    assert_int_equal(ll_sampler_sample(s, x), 0);
    // Negative logits are multiplied: -1 * 1.25 = -1.25 < -1.2.
    float z[8] = {-1.0f, -1.2f, -5, -5, -5, -5, -5, -5};
    ll_sampler_accept(s, 0);
    assert_int_equal(ll_sampler_sample(s, z), 1);
    ll_sampler_free(s);
}

// temp 1, no truncation: 20000 draws match the softmax per id within 5 sigma and in a chi-square test.
static void test_frequencies(void **state) {
    (void)state;
    enum { N = 12, D = 20000 };
    float x[N];
    uint64_t r = 31337;
    for (int i = 0; i < N; i++) x[i] = tu_rng_uniform(&r) * 2.0f;
    double pr[N];
    ref_softmax(x, N, 1.0, pr);
    ll_sampler_params p = plain_params(77);
    ll_sampler *s = ll_sampler_init(&p, N);
    int cnt[N] = {0};
    for (int i = 0; i < D; i++) cnt[ll_sampler_sample(s, x)]++;
    double chi2 = 0;
    for (int i = 0; i < N; i++) {
        double e = D * pr[i], sd = sqrt(D * pr[i] * (1 - pr[i]));
        if (fabs(cnt[i] - e) > 5 * sd) printf("# id %d: %d draws, expected %.1f +- %.1f\n", i, cnt[i], e, sd);
        assert_true(fabs(cnt[i] - e) <= 5 * sd);
        chi2 += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    assert_true(chi2 < 40.0); // 11 degrees of freedom: P(chi2 > 40) ~ 3e-5
    ll_sampler_free(s);
}

static double draw_entropy(const float *x, int n, float temp, uint64_t seed, int draws) {
    ll_sampler_params p = plain_params(seed);
    p.temp = temp;
    ll_sampler *s = ll_sampler_init(&p, n);
    int *cnt = calloc((size_t)n, sizeof *cnt);
    for (int i = 0; i < draws; i++) cnt[ll_sampler_sample(s, x)]++;
    double h = 0;
    for (int i = 0; i < n; i++)
        if (cnt[i]) h -= (double)cnt[i] / draws * log((double)cnt[i] / draws);
    free(cnt);
    ll_sampler_free(s);
    return h;
}

// Lower temperature sharpens: the empirical entropy falls with temp and is near the softmax's own.
static void test_temperature(void **state) {
    (void)state;
    enum { N = 16 };
    float x[N];
    uint64_t r = 4;
    for (int i = 0; i < N; i++) x[i] = tu_rng_uniform(&r) * 3.0f;
    const float temps[3] = {0.5f, 1.0f, 2.0f};
    double h[3];
    for (int t = 0; t < 3; t++) {
        h[t] = draw_entropy(x, N, temps[t], 11 + t, 20000);
        double pr[N], href = 0;
        ref_softmax(x, N, temps[t], pr);
        for (int i = 0; i < N; i++) href -= pr[i] > 0 ? pr[i] * log(pr[i]) : 0;
        assert_true(fabs(h[t] - href) < 0.03);
    }
    assert_true(h[0] < h[1] && h[1] < h[2]);
}

// NaN and infinities in the stochastic path: NaN/-inf never drawn, +inf takes all the mass, all bad -> 0.
static void test_nonfinite(void **state) {
    (void)state;
    ll_sampler_params p = ll_sampler_default_params();
    ll_sampler *s = ll_sampler_init(&p, 6);
    float a[6] = {NAN, -INFINITY, NAN, 0.5f, NAN, -INFINITY};
    float b[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    float c[6] = {1.0f, INFINITY, 2.0f, NAN, INFINITY, -INFINITY};
    int seen_c[6] = {0};
    for (int i = 0; i < 200; i++) {
        assert_int_equal(ll_sampler_sample(s, a), 3);
        assert_int_equal(ll_sampler_sample(s, b), 0);
        seen_c[ll_sampler_sample(s, c)]++;
    }
    assert_int_equal(seen_c[1] + seen_c[4], 200);
    assert_true(seen_c[1] > 50 && seen_c[4] > 50);
    ll_sampler_free(s);
}

// ---- sampling from the best candidates (what a device backend's topk gives ll_sample) ------------------------
// ll_sampler_sample_top on the candidates against ll_sampler_sample on the row: the same ids draw for draw, over
// chains (greedy, top-k alone, with top-p / min-p, the defaults), rows with ties, NaN and infinities, and rows
// with no more candidates than top_k, where it must decline and leave the RNG as it was.
static void test_sample_top(void **state) {
    (void)state;
    enum { N = 3000 };
    float *x = malloc(N * sizeof *x), vals[LL_SAMPLER_TOP_MAX];
    int32_t ids[LL_SAMPLER_TOP_MAX];
    uint64_t rs = 77;
    for (int variant = 0; variant < 6; variant++) {
        ll_sampler_params p = ll_sampler_default_params();
        if (variant == 0) p.temp = 0.0f;
        if (variant == 1) p.top_k = 1;
        if (variant == 2) p.top_k = 7, p.top_p = 1.0f, p.min_p = 0.0f, p.temp = 1.3f;
        if (variant == 3) p.top_k = 200, p.top_p = 0.5f;
        if (variant == 4) p.top_k = 511, p.min_p = 0.2f;
        if (variant == 5) p.repeat_penalty = 1.2f; // declines (wants 0) once there is history
        p.seed = 99 + (uint64_t)variant;
        ll_sampler *a = ll_sampler_init(&p, N), *b = ll_sampler_init(&p, N);
        int declined = 0;
        for (int step = 0; step < 200; step++) {
            const int kind = step % 4;
            for (int i = 0; i < N; i++) {
                float u = tu_rng_uniform(&rs);
                x[i] = kind == 1 ? roundf(u * 6.0f) : u * 8.0f; // 1: ties
                if (kind == 2) { // specials
                    uint64_t r = tu_rng_u64(&rs) % 64;
                    x[i] = r == 0 ? NAN : r == 1 ? -INFINITY : r == 2 ? INFINITY : x[i];
                }
                if (kind == 3 && i >= 100) x[i] = -INFINITY; // only 100 candidates: top_k >= 100 must decline
            }
            const int want = ll_sampler_top_wanted(a);
            if (variant == 5 && step > 0) assert_int_equal(want, 0);
            int32_t got, ref;
            if (want > 0) {
                const int n = tu_best_of(x, N, want, vals, ids);
                if (!ll_sampler_sample_top(a, vals, ids, n, &got)) {
                    declined++;
                    assert_true(n < want);
                    got = ll_sampler_sample(a, x); // the caller's fallback: same RNG state as b's
                }
            } else {
                got = ll_sampler_sample(a, x);
            }
            ref = ll_sampler_sample(b, x);
            if (got != ref) fail_msg("variant %d step %d (row kind %d): %d from the candidates, %d from the row", variant, step, kind, got, ref);
            ll_sampler_accept(a, got), ll_sampler_accept(b, ref);
        }
        if (variant >= 3 && variant <= 4) assert_int_equal(declined, 50); // every kind-3 row
        if (variant < 3) assert_int_equal(declined, 0);
        ll_sampler_free(a), ll_sampler_free(b);
    }
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_bad_params),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_pinned_sequence),
        cmocka_unit_test(test_topk1_and_tiny_topp),
        cmocka_unit_test(test_large_vocab_sets),
        cmocka_unit_test(test_top_p_flat),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_min_p_boundary),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_sample_top),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
