// test_quant.c — quant formats: SHA-256 vectors, block geometry, golden byte-for-byte conformance of the
// reference quantizers with llama-quantize (tensors.tsv), dequantizer rmse, vec_dot vs float, error bounds.
#include "testutil.h"

#include <stddef.h>

#include "core/half.h"
#include "core/sha256.h"
#include "formats/gguf.h"
#include "types/quant.h"
#include "types/types.h"

// ---- SHA-256 (FIPS 180-2 appendix / NIST example vectors) --------------------------------------------------
static void sha_hex(const void *p, size_t n, char hex[65]) {
    uint8_t d[32];
    ll_sha256_hash(p, n, d);
    ll_sha256_hex(d, hex);
}

static void test_sha256_vectors(void **state) {
    (void)state;
    char hex[65];
    sha_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; // 448 bits: padding spills a block
    sha_hex(m2, strlen(m2), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // One million 'a', fed in uneven pieces through the streaming interface.
    static char a[1000000];
    memset(a, 'a', sizeof a);
    ll_sha256 c;
    ll_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
        size_t k = step < sizeof a - off ? step : sizeof a - off;
        ll_sha256_update(&c, a + off, k);
        off += k;
        step = step * 7 % 1013 + 1;
    }
    uint8_t d[32];
    ll_sha256_final(&c, d);
    ll_sha256_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---- geometry: every known ggml type id with its block size and bytes (ggml-common.h block structs) ---------
static void test_type_sizes(void **state) {
    (void)state;
    static const struct { uint32_t id; const char *name; int blck; size_t size; } want[] = {
        {0, "F32", 1, 4},        {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
        {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},  {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
        {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
        {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
        {26, "I32", 1, 4},       {27, "I64", 1, 8},       {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
        {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},  {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
    };
    int n_known = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ll_type_traits *t = ll_type_get(want[i].id);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->blck, want[i].blck);
        assert_int_equal(t->size, want[i].size);
    }
    for (uint32_t id = 0; id < 64; id++) n_known += ll_type_get(id) != NULL;
    assert_int_equal(n_known, (int)(sizeof want / sizeof want[0])); // removed ids (4, 5, 31-33, 36-38) stay NULL
    assert_int_equal(ll_type_get(LL_TYPE_Q8_K)->size, sizeof(ll_block_q8_K));
    assert_int_equal(ll_type_get(LL_TYPE_Q6_K)->size, sizeof(ll_block_q6_K));
}

// ---- helpers for the random-data tests ------------------------------------------------------------------
static const ll_type k_quant_types[] = {LL_TYPE_Q4_0, LL_TYPE_Q4_1, LL_TYPE_Q5_0, LL_TYPE_Q5_1, LL_TYPE_Q8_0,
                                        LL_TYPE_Q8_1, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K, LL_TYPE_Q8_K};
#define N_QUANT_TYPES (sizeof k_quant_types / sizeof k_quant_types[0])

// Heavy-ish tailed test data: a Gaussian-like sum scaled per 32-block so scales vary, some outliers.
static void fill_random(float *x, int n, uint64_t *seed) {
    for (int i = 0; i < n; i += 32) {
        float scale = ldexpf(1.0f, (int)(tu_rng_u64(seed) % 12) - 8);
        for (int j = i; j < i + 32 && j < n; j++) {
            float g = tu_rng_uniform(seed) + tu_rng_uniform(seed) + tu_rng_uniform(seed);
            if (tu_rng_u64(seed) % 64 == 0) g *= 6;
            x[j] = g * scale;
        }
    }
}

static void *quantize_new(ll_type type, const float *x, int n) {
    const ll_type_traits *t = ll_type_get(type);
    uint64_t bytes;
    assert_true(ll_type_row_size(type, (uint64_t)n, &bytes));
    void *q = malloc(bytes);
    assert_non_null(q);
    t->from_float_ref(x, q, n);
    return q;
}

// ---- round trip: dequantize(quantize(x)) error bounds -------------------------------------------------------
// Per-block absolute bounds for the legacy formats (d is the step before fp16 rounding of the scale; the fp16
// scale adds at most q_max * d * 2^-11, and min-based formats the fp16 rounding of m):
//   Q8_0/Q8_1: d/2 + 127 d 2^-11, d = amax/127          Q4_0: d (the code opposite max clamps 16 -> 15), d = amax/8
//   Q5_0: d, d = amax/16                                  Q4_1/Q5_1: d/2 + nmax d 2^-11 + |min| 2^-11
// K-quants (scale search, no simple per-element bound): relative rmse over the whole array below a sanity
// limit ~1.2x what they measure on this data (whose 32-blocks span 2^11 in scale, hard on shared super-block
// scales): Q4_K 0.085, Q5_K 0.044, Q6_K 0.025. The golden tests below are the precise checks.
// Q8_K (float scale d = amax/127 per 256): |error| <= d/2 per element.
static double legacy_bound(ll_type type, const float *x) {
    float amax = 0, mn = x[0], mx = x[0];
    for (int j = 0; j < 32; j++) {
        amax = fmaxf(amax, fabsf(x[j]));
        mn = fminf(mn, x[j]);
        mx = fmaxf(mx, x[j]);
    }
    const double e16 = 1.0 / 2048;
    switch (type) {
    case LL_TYPE_Q8_0:
    case LL_TYPE_Q8_1: return amax / 127.0 * (0.5 + 127 * e16) * 1.001;
    case LL_TYPE_Q4_0: return amax / 8.0 * (1 + 8 * e16) * 1.001;
    case LL_TYPE_Q5_0: return amax / 16.0 * (1 + 16 * e16) * 1.001;
    case LL_TYPE_Q4_1: return (mx - mn) / 15.0 * (0.5 + 15 * e16) * 1.001 + fabsf(mn) * e16;
    case LL_TYPE_Q5_1: return (mx - mn) / 31.0 * (0.5 + 31 * e16) * 1.001 + fabsf(mn) * e16;
    default: return -1;
    }
}

static void test_roundtrip_bounds(void **state) {
    (void)state;
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint64_t seed = 42;
    fill_random(x, N, &seed);
    for (size_t k = 0; k < N_QUANT_TYPES; k++) {
        ll_type type = k_quant_types[k];
        const ll_type_traits *t = ll_type_get(type);
        void *q = quantize_new(type, x, N);
        tu_poison(y, N);
        t->to_float(q, y, N);
        assert_int_equal(tu_count_nonfinite(y, N), 0);
        double rel = tu_rel_l2(y, x, N);
        double lim = type == LL_TYPE_Q4_K ? 0.10 : type == LL_TYPE_Q5_K ? 0.053 : type == LL_TYPE_Q6_K ? 0.03
                   : 1.0;
        if (rel > lim) fail_msg("%s: rel rmse %.4g > %.4g", t->name, rel, lim);
        for (int b = 0; type == LL_TYPE_Q8_K && b < N; b += 256) {
            float amax = 0;
            for (int j = b; j < b + 256; j++) amax = fmaxf(amax, fabsf(x[j]));
            for (int j = b; j < b + 256; j++)
                if (fabs((double)y[j] - x[j]) > amax / 127.0 * 0.5 * 1.0001) fail_msg("Q8_K: element %d", j);
        }
        for (int b = 0; b < N; b += 32) {
            double bound = legacy_bound(type, x + b);
            if (bound < 0) break;
            for (int j = b; j < b + 32; j++)
                if (fabs((double)y[j] - x[j]) > bound)
                    fail_msg("%s: element %d: |%g - %g| > bound %g", t->name, j, y[j], x[j], bound);
        }
        printf("# note: %s round trip rel rmse %.4g\n", t->name, rel);
        free(q);
    }
    free(x);
    free(y);
}

// ---- vec_dot vs dequantize + double dot ---------------------------------------------------------------------
// Both sides use the same dequantized values; the only difference is float rounding of the per-block scale
// products and the float accumulation: tolerance 1e-5 * sum|x_i y_i| (n = 4096, ~1e-7 per term expected).
// Q4_1/Q5_1 x Q8_1 by design use the fp16 s = d*sum(r) of each activation block for the min term, so the
// reference swaps that term in: + m_b * (s_b - sum_j a_j) per block (both block types start d, m / d, s).
static void test_vec_dot(void **state) {
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a), *xd = malloc(N * sizeof *xd),
          *ad = malloc(N * sizeof *ad);
    uint64_t seed = 7;
    int n_checked = 0;
    for (size_t k = 0; k < N_QUANT_TYPES; k++) {
        const ll_type_traits *t = ll_type_get(k_quant_types[k]);
        if (!t->vec_dot) continue;
        assert_true(t->compute);
        const ll_type_traits *vt = ll_type_get(t->vec_dot_type);
        assert_non_null(vt);
        for (int rep = 0; rep < 4; rep++) {
            fill_random(x, N, &seed);
            fill_random(a, N, &seed);
            if (rep == 3) for (int i = 0; i < N; i++) a[i] = fabsf(a[i]); // all-positive activations: min terms matter
            void *qx = quantize_new(k_quant_types[k], x, N), *qa = quantize_new(t->vec_dot_type, a, N);
            t->to_float(qx, xd, N);
            vt->to_float(qa, ad, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)xd[i] * ad[i];
                mag += fabs((double)xd[i] * ad[i]);
            }
            if (t->vec_dot_type == LL_TYPE_Q8_1) {
                const ll_block_q8_1 *by = qa; // x's m: same offset in Q4_1 and Q5_1 blocks
                for (int b = 0; b < N / 32; b++) {
                    const uint8_t *xb = (const uint8_t *)qx + (size_t)b * t->size;
                    uint16_t m;
                    memcpy(&m, xb + offsetof(ll_block_q4_1, m), 2);
                    double sa = 0;
                    for (int j = 0; j < 32; j++) sa += ad[32 * b + j];
                    ref += ll_fp16_to_fp32(m) * ((double)ll_fp16_to_fp32(by[b].s) - sa);
                }
            }
            float got = NAN;
            t->vec_dot(N, &got, qx, qa);
            if (!(fabs(got - ref) <= 1e-5 * mag))
                fail_msg("%s x %s: vec_dot %.9g vs %.9g (mag %.3g)", t->name, vt->name, got, ref, mag);
            n_checked++;
            free(qx);
            free(qa);
        }
    }
    assert_int_equal(n_checked, 8 * 4);
    free(x); free(a); free(xd); free(ad);
}

// ---- special inputs: zeros, constants, tiny and huge values; NaN in gives no crash ---------------------------
static void test_special_inputs(void **state) {
    (void)state;
    enum { N = 512 };
    float x[N], y[N];
    for (size_t k = 0; k < N_QUANT_TYPES; k++) {
        const ll_type_traits *t = ll_type_get(k_quant_types[k]);
        uint64_t bytes;
        assert_true(ll_type_row_size(k_quant_types[k], N, &bytes));
        uint8_t *q = malloc(bytes);
        // All zero: exact zeros back.
        memset(x, 0, sizeof x);
        t->from_float_ref(x, q, N);
        t->to_float(q, y, N);
        for (int i = 0; i < N; i++) assert_true(y[i] == 0.0f);
        // Two-level blocks of normal, tiny and large magnitudes: finite and within 10%. For tiny values the fp16
        // scale is subnormal or flushes to 0 (as in ggml: Q4_0 of 2e-7 is all zeros), so only bounded there.
        const float vals[] = {1.0f, -3.5f, 1e-3f, 1000.0f, 30000.0f, 1e-6f, -2e-7f};
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            for (int i = 0; i < N; i++) x[i] = vals[v] * (i % 3 == 0 ? 1.0f : 0.5f);
            t->from_float_ref(x, q, N);
            tu_poison(y, N);
            t->to_float(q, y, N);
            assert_int_equal(tu_count_nonfinite(y, N), 0);
            double rel = tu_rel_l2(y, x, N);
            double lim = fabsf(vals[v]) < 1e-4f ? 1.0 : 0.1;
            if (rel > lim) fail_msg("%s: value %g: rel error %g", t->name, vals[v], rel);
        }
        // A NaN or inf in the input: must not crash or read/write out of bounds (output unspecified).
        fill_random(x, N, &(uint64_t){3});
        x[5] = NAN;
        x[300] = INFINITY;
        t->from_float_ref(x, q, N);
        t->to_float(q, y, N);
        free(q);
    }
}

// ---- golden conformance: llama-quantize's tensors, byte for byte ----------------------------------------------
typedef struct golden_row {
    char name[96], type[16], sha[65];
    uint64_t n_bytes;
    double rmse;
} golden_row;

// Parse a tensors.tsv (header + name, type, n_bytes, sha256, rmse, ...). Returns the row count.
static int read_tsv(const char *path, golden_row **out) {
    char *text = tu_read_file(path, NULL);
    assert_non_null(text);
    int cap = 64, n = 0;
    golden_row *rows = malloc(cap * sizeof *rows);
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save); // header
    assert_non_null(line);
    assert_true(strncmp(line, "name\ttype\tn_bytes\tsha256\trmse", 29) == 0);
    while ((line = strtok_r(NULL, "\n", &save))) {
        if (n == cap) rows = realloc(rows, (cap *= 2) * sizeof *rows);
        golden_row *r = &rows[n];
        unsigned long long nb;
        if (sscanf(line, "%95[^\t]\t%15[^\t]\t%llu\t%64[0-9a-f]\t%lf", r->name, r->type, &nb, r->sha, &r->rmse) != 5)
            fail_msg("%s: bad line '%s'", path, line);
        r->n_bytes = nb;
        n++;
    }
    free(text);
    *out = rows;
    return n;
}

// The tensor as float32 (F16/F32 sources widen exactly).
static float *tensor_f32(const ll_gguf_tensor *t, int64_t *n_out) {
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    const ll_type_traits *tt = ll_type_get(t->type);
    assert_true(t->type == LL_TYPE_F32 || t->type == LL_TYPE_F16);
    float *x = malloc((size_t)n * sizeof *x);
    tt->to_float(t->data, x, n);
    *n_out = n;
    return x;
}

static double rmse_of(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return sqrt(s / (double)n);
}

typedef struct golden_tally {
    int match[LL_TYPE_COUNT], total[LL_TYPE_COUNT], rmse_ok[LL_TYPE_COUNT];
} golden_tally;

// Quantize one row's tensor from the source file to the golden type; compare n_bytes, sha256 and rmse.
// Returns true when the bytes match. On mismatch prints what differs (the test fails at the end).
static bool check_row(const ll_gguf *src, const golden_row *r, golden_tally *tally, const char *label) {
    const ll_gguf_tensor *t = ll_gguf_find_tensor(src, r->name);
    if (!t) fail_msg("%s: tensor %s not in the source file", label, r->name);
    ll_type type;
    assert_true(ll_type_from_name(r->type, &type));
    const ll_type_traits *tt = ll_type_get(type);
    assert_non_null(tt->from_float_ref);
    int64_t n;
    float *x = tensor_f32(t, &n);
    uint64_t bytes;
    assert_true(ll_type_row_size(type, (uint64_t)n, &bytes));
    uint8_t *q = malloc(bytes);
    tt->from_float_ref(x, q, n);
    char hex[65];
    sha_hex(q, bytes, hex);
    float *y = malloc((size_t)n * sizeof *y);
    tt->to_float(q, y, n);
    double rmse = rmse_of(y, x, n);
    bool same = bytes == r->n_bytes && strcmp(hex, r->sha) == 0;
    bool rmse_ok = r->rmse == 0 ? rmse == 0 : fabs(rmse - r->rmse) <= 1e-6 * r->rmse;
    tally->total[type]++;
    tally->match[type] += same;
    tally->rmse_ok[type] += rmse_ok;
    if (!same) printf("# %s: %s (%s): bytes %llu/%llu sha %.16s.. want %.16s..\n", label, r->name, r->type,
                      (unsigned long long)bytes, (unsigned long long)r->n_bytes, hex, r->sha);
    if (!rmse_ok) printf("# %s: %s (%s): rmse %.9e want %.9e\n", label, r->name, r->type, rmse, r->rmse);
    free(x); free(q); free(y);
    return same && rmse_ok;
}

static int report_tally(const golden_tally *g, const char *label) {
    int bad = 0;
    for (int ty = 0; ty < LL_TYPE_COUNT; ty++) {
        if (!g->total[ty]) continue;
        printf("# note: %s %-5s %3d/%-3d byte-identical, rmse agrees %d/%d\n", label, ll_type_name((uint32_t)ty),
               g->match[ty], g->total[ty], g->rmse_ok[ty], g->total[ty]);
        bad += (g->total[ty] - g->match[ty]) + (g->total[ty] - g->rmse_ok[ty]);
    }
    return bad;
}

// Under an emulator (run.sh sets LLMLAB_EXEC, e.g. qemu-aarch64) the two 8M-element tensors per file are
// left out to keep the run short; every format is still checked on all the other tensors.
static int check_tsv(const ll_gguf *src, const char *tsv_path, const char *label) {
    const char *exec = getenv("LLMLAB_EXEC");
    const bool emulated = exec && *exec;
    golden_row *rows;
    int n = read_tsv(tsv_path, &rows), n_left_out = 0;
    golden_tally g = {0};
    for (int i = 0; i < n; i++) {
        if (emulated && rows[i].n_bytes > (1u << 20)) { n_left_out++; continue; }
        check_row(src, &rows[i], &g, label);
    }
    if (n_left_out) printf("# note: %s: %d large tensors left out under the emulator\n", label, n_left_out);
    free(rows);
    return report_tally(&g, label);
}

static void test_golden_tiny_llama(void **state) {
    (void)state;
    TU_NEED_SHARED(src_path, "golden/tiny-llama/tiny-llama-f16.gguf");
    ll_gguf *g = NULL;
    ll_error err;
    if (ll_gguf_open(&g, src_path, &err) != LL_OK) fail_msg("%s", err.message);
    static const char *mixes[] = {"Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"};
    int bad = 0;
    for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
        char rel[128], label[64];
        snprintf(rel, sizeof rel, "golden/tiny-llama/tiny-llama-%s.tensors.tsv", mixes[m]);
        snprintf(label, sizeof label, "tiny-llama-%s", mixes[m]);
        const char *tsv = tu_shared(rel);
        if (!tsv) fail_msg("%s missing", rel);
        bad += check_tsv(g, tsv, label);
    }
    ll_gguf_free(g);
    assert_int_equal(bad, 0);
}

// stories260K: F32 source; the quantized GGUFs are stored too, so also dequantize their tensors directly.
static void test_golden_stories260k(void **state) {
    (void)state;
    TU_NEED_SHARED(src_path, "golden/stories260K/stories260K.gguf");
    ll_gguf *g = NULL;
    ll_error err;
    if (ll_gguf_open(&g, src_path, &err) != LL_OK) fail_msg("%s", err.message);
    static const char *mixes[] = {"Q8_0", "Q4_0"};
    int bad = 0;
    for (size_t m = 0; m < 2; m++) {
        char rel[128], label[64];
        snprintf(rel, sizeof rel, "golden/stories260K/stories260K-%s.tensors.tsv", mixes[m]);
        snprintf(label, sizeof label, "stories260K-%s", mixes[m]);
        const char *tsv = tu_shared(rel);
        if (!tsv) fail_msg("%s missing", rel);
        bad += check_tsv(g, tsv, label);

        // The stored quantized file: its bytes hash to the TSV, and our dequantizer of them gives its rmse.
        snprintf(rel, sizeof rel, "golden/stories260K/stories260K-%s.gguf", mixes[m]);
        const char *qpath = tu_shared(rel);
        if (!qpath) fail_msg("%s missing", rel);
        ll_gguf *qg = NULL;
        if (ll_gguf_open(&qg, qpath, &err) != LL_OK) fail_msg("%s", err.message);
        golden_row *rows;
        int n = read_tsv(tsv, &rows), n_ok = 0;
        for (int i = 0; i < n; i++) {
            const ll_gguf_tensor *qt = ll_gguf_find_tensor(qg, rows[i].name), *st = ll_gguf_find_tensor(g, rows[i].name);
            assert_non_null(qt);
            assert_non_null(st);
            assert_string_equal(ll_type_name(qt->type), rows[i].type);
            char hex[65];
            sha_hex(qt->data, qt->nbytes, hex);
            int64_t ne;
            float *x = tensor_f32(st, &ne), *y = malloc((size_t)ne * sizeof *y);
            tu_poison(y, (size_t)ne);
            ll_type_get(qt->type)->to_float(qt->data, y, ne);
            double rmse = rmse_of(y, x, ne);
            bool ok = strcmp(hex, rows[i].sha) == 0 && qt->nbytes == rows[i].n_bytes &&
                      (rows[i].rmse == 0 ? rmse == 0 : fabs(rmse - rows[i].rmse) <= 1e-6 * rows[i].rmse);
            if (!ok) printf("# %s: %s: file sha %.16s.. rmse %.9e want %.9e\n", rel, rows[i].name, hex, rmse, rows[i].rmse);
            n_ok += ok;
            free(x);
            free(y);
        }
        printf("# note: %s: %d/%d stored tensors dequantize to the golden rmse\n", rel, n_ok, n);
        bad += n - n_ok;
        free(rows);
        ll_gguf_free(qg);
    }
    ll_gguf_free(g);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_type_sizes),
        cmocka_unit_test(test_roundtrip_bounds),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_special_inputs),
        cmocka_unit_test(test_golden_stories260k),
        cmocka_unit_test(test_golden_tiny_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
