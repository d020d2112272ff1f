// test_cpu_attn.c — the CPU backend's kv_store and attention (src/backend/cpu/attention.c) against a float64
// reference written here, over F32, F16 and Q8_0 caches: one sequence (prompt by tiles, decode), decode of several
// sequences at their own positions, mixed batches (a prompt run of one sequence beside single tokens of others,
// a sequence's tokens split by others), GQA, head dims 64 and 128, 1 and 3 threads, positions past the tile
// scratch, reserve, NaN scores. Outputs are poisoned (NaN) before every call.
// Tolerance: the reference reads the values the cache holds (F16 and Q8_0 rows converted back exactly), so the
// only difference is float rounding in the kernel: |out - ref| <= 2e-6 (outputs are convex combinations of V
// values in [-1, 1]; measured worst 1.9e-7). TEST_VERBOSE=1 prints each case's worst error.
#include "testutil.h"

#include "backend/backend.h"
#include "core/half.h"
#include "types/quant.h"

#define TOL 2e-6

static const uint32_t k_types[] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_Q8_0};

static size_t row_bytes(uint32_t type, int kvd) {
    uint64_t b;
    assert_true(ll_type_row_size(type, (uint64_t)kvd, &b));
    return (size_t)b;
}

// The bytes a row of type must hold for src (the test's own conversion: F16 round to nearest even, Q8_0 by
// llama.cpp's reference quantizer).
static void row_expect(uint32_t type, const float *src, uint8_t *dst, int kvd) {
    if (type == LL_TYPE_F32) memcpy(dst, src, (size_t)kvd * 4);
    else if (type == LL_TYPE_F16)
        for (int i = 0; i < kvd; i++) {
            uint16_t h = ll_fp32_to_fp16(src[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
    else ll_quant_from_float_ref_q8_0(src, dst, kvd);
}

static void row_load(uint32_t type, const uint8_t *src, double *dst, int kvd) {
    if (type == LL_TYPE_F32) {
        for (int i = 0; i < kvd; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            dst[i] = f;
        }
    } else if (type == LL_TYPE_F16) {
        for (int i = 0; i < kvd; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = ll_fp16_to_fp32(h);
        }
    } else {
        const ll_block_q8_0 *b = (const ll_block_q8_0 *)src;
        for (int i = 0; i < kvd; i++) dst[i] = (double)b[i / 32].qs[i % 32] * ll_fp16_to_fp32(b[i / 32].d);
    }
}

// Causal attention in float64 over the cache as stored: token t, head h reads kv head h / G of rows
// row0[t] .. row0[t] + pos[t].
static void ref_attention(double *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                          const ll_attn_params *p) {
    const int hd = p->head_dim, kvd = p->n_head_kv * hd, G = p->n_head / p->n_head_kv;
    const size_t rb = row_bytes(kv->type, kvd);
    double *kr = malloc((size_t)kvd * sizeof *kr), *vr = malloc((size_t)kvd * sizeof *vr);
    for (int t = 0; t < bp->n_tok; t++) {
        const int n = bp->pos[t] + 1;
        double *sc = malloc((size_t)n * p->n_head * sizeof *sc);
        for (int s = 0; s < n; s++) {
            row_load(kv->type, (const uint8_t *)kv->k + (size_t)(bp->row0[t] + s) * rb, kr, kvd);
            for (int h = 0; h < p->n_head; h++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[((size_t)t * p->n_head + h) * hd + i] * kr[(h / G) * hd + i];
                sc[(size_t)h * n + s] = d * p->scale;
            }
        }
        for (int h = 0; h < p->n_head; h++) {
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s < n; s++) mx = sc[(size_t)h * n + s] > mx ? sc[(size_t)h * n + s] : mx;
            for (int s = 0; s < n; s++) sum += (sc[(size_t)h * n + s] = exp(sc[(size_t)h * n + s] - mx));
            for (int i = 0; i < hd; i++) out[((size_t)t * p->n_head + h) * hd + i] = 0;
            for (int s = 0; s < n; s++) sc[(size_t)h * n + s] /= sum;
        }
        for (int s = 0; s < n; s++) {
            row_load(kv->type, (const uint8_t *)kv->v + (size_t)(bp->row0[t] + s) * rb, vr, kvd);
            for (int h = 0; h < p->n_head; h++)
                for (int i = 0; i < hd; i++)
                    out[((size_t)t * p->n_head + h) * hd + i] += sc[(size_t)h * n + s] * vr[(h / G) * hd + i];
        }
        free(sc);
    }
    free(kr), free(vr);
}

// A step: token t of sequence seq[t] at position pos[t]. Sequences' earlier positions (0 .. first - 1 of the step)
// are stored first, one store per sequence; then the step's k, v are stored as one batch and attention runs.
typedef struct step {
    int n_head, n_head_kv, hd, n_seq, n_ctx, n_threads;
    int n_tok;
    const int *seq, *pos;
} step;

static double run_step(const step *st, uint32_t type, uint64_t seed) {
    const int kvd = st->n_head_kv * st->hd, qd = st->n_head * st->hd, n_rows = st->n_seq * st->n_ctx;
    const size_t rb = row_bytes(type, kvd);
    ll_error err = {0};
    ll_backend *be = ll_backend_cpu_init(st->n_threads, &err);
    assert_non_null(be);
    assert_true(be->ops->supports(be, LL_OP_ATTENTION, type));
    assert_int_equal(be->ops->prepare(be, NULL, 0, st->n_tok, st->n_ctx, &err), LL_OK);
    ll_kv_cache kv = {calloc((size_t)n_rows, rb), calloc((size_t)n_rows, rb), type, st->n_ctx, n_rows};
    // earlier positions of each sequence: the first position it has in the step
    float *k = malloc((size_t)st->n_ctx * kvd * 4), *v = malloc((size_t)st->n_ctx * kvd * 4);
    int32_t *pos = malloc((size_t)(st->n_ctx + st->n_tok) * 4), *row0 = malloc((size_t)(st->n_ctx + st->n_tok) * 4);
    for (int s = 0; s < st->n_seq; s++) {
        int first = -1;
        for (int t = 0; t < st->n_tok && first < 0; t++)
            if (st->seq[t] == s) first = st->pos[t];
        if (first <= 0) continue;
        for (size_t i = 0; i < (size_t)first * kvd; i++) k[i] = tu_rng_uniform(&seed), v[i] = tu_rng_uniform(&seed);
        ll_batch_pos bp = ll_batch_pos_single(s * st->n_ctx, 0, first, pos, row0);
        be->ops->kv_store(be, &kv, k, v, kvd, &bp);
    }
    // the step
    float *q = malloc((size_t)st->n_tok * qd * 4), *out = malloc((size_t)st->n_tok * qd * 4);
    double *ref = malloc((size_t)st->n_tok * qd * sizeof *ref);
    for (size_t i = 0; i < (size_t)st->n_tok * qd; i++) q[i] = tu_rng_uniform(&seed) * 2.0f;
    for (size_t i = 0; i < (size_t)st->n_tok * kvd; i++) k[i] = tu_rng_uniform(&seed), v[i] = tu_rng_uniform(&seed);
    bool single = true;
    for (int t = 0; t < st->n_tok; t++) {
        pos[t] = st->pos[t], row0[t] = st->seq[t] * st->n_ctx;
        single &= st->seq[t] == st->seq[0] && st->pos[t] == st->pos[0] + t;
    }
    ll_batch_pos bp = {st->n_tok, pos, row0, single, single ? st->pos[0] : 0};
    be->ops->kv_store(be, &kv, k, v, kvd, &bp);
    uint8_t *want = malloc(rb);
    for (int t = 0; t < st->n_tok; t++) { // the rows the step stored, byte for byte
        const size_t off = (size_t)(row0[t] + pos[t]) * rb;
        row_expect(type, k + (size_t)t * kvd, want, kvd);
        assert_memory_equal((uint8_t *)kv.k + off, want, rb);
        row_expect(type, v + (size_t)t * kvd, want, kvd);
        assert_memory_equal((uint8_t *)kv.v + off, want, rb);
    }
    ll_attn_params p = {st->n_head, st->n_head_kv, st->hd, 1.0f / sqrtf((float)st->hd)};
    tu_poison(out, (size_t)st->n_tok * qd);
    be->ops->attention(be, out, q, &kv, &bp, &p);
    ref_attention(ref, q, &kv, &bp, &p);
    double worst = 0;
    for (size_t i = 0; i < (size_t)st->n_tok * qd; i++) {
        assert_false(isnan(out[i]));
        double e = fabs(out[i] - ref[i]);
        worst = e > worst ? e : worst;
    }
    ll_backend_free(be);
    free(kv.k), free(kv.v), free(k), free(v), free(pos), free(row0), free(q), free(out), free(ref), free(want);
    return worst;
}

// Every cache type, the given thread counts; fails above TOL.
static void check_step(step st, const char *what) {
    static const int k_threads[] = {1, 3};
    for (int ti = 0; ti < 3; ti++)
        for (int n = 0; n < 2; n++) {
            st.n_threads = k_threads[n];
            double e = run_step(&st, k_types[ti], 1000 + (uint64_t)ti * 7 + (uint64_t)n);
            if (getenv("TEST_VERBOSE")) printf("# %s, %s, %d threads: %.3g\n", what, ll_type_name(k_types[ti]), st.n_threads, e);
            if (!(e <= TOL)) fail_msg("%s, %s cache, %d threads: max |out - ref| %.3g > %.3g", what,
                                      ll_type_name(k_types[ti]), st.n_threads, e, TOL);
        }
}

// One sequence: a prompt from position 0 (tiles, 3 token blocks), a chunk after earlier positions, a decode step.
static void test_single(void **state) {
    (void)state;
    static const int hds[2] = {64, 128};
    for (int i = 0; i < 2; i++) {
        int seq[40] = {0}, pos[40];
        for (int t = 0; t < 40; t++) pos[t] = t;
        check_step((step){8, 2, hds[i], 1, 64, 0, 37, seq, pos}, "prompt of 37 tokens");
        for (int t = 0; t < 19; t++) pos[t] = 20 + t;
        check_step((step){8, 2, hds[i], 1, 64, 0, 19, seq, pos}, "19 tokens after 20");
        pos[0] = 50;
        check_step((step){8, 2, hds[i], 1, 64, 0, 1, seq, pos}, "decode at 50");
        check_step((step){4, 4, hds[i], 1, 64, 0, 1, seq, pos}, "decode at 50, no GQA");
        for (int t = 0; t < 21; t++) pos[t] = 3 + t;
        check_step((step){4, 4, hds[i], 1, 64, 0, 21, seq, pos}, "21 tokens after 3, no GQA");
    }
}

// Decode of 5 sequences at their own positions (the first at position 0: one key).
static void test_multi_decode(void **state) {
    (void)state;
    static const int hds[2] = {64, 128};
    const int seq[5] = {0, 1, 2, 3, 4}, pos[5] = {0, 3, 17, 40, 63};
    const int seq_r[5] = {4, 2, 0, 3, 1}; // sequences in another order than their rows
    for (int i = 0; i < 2; i++) {
        check_step((step){8, 2, hds[i], 5, 64, 0, 5, seq, pos}, "decode of 5 sequences");
        check_step((step){8, 2, hds[i], 5, 64, 0, 5, seq_r, pos}, "decode of 5 sequences, rows out of order");
    }
}

// A 7-token prompt of one sequence beside single tokens of 3 others; and a sequence's tokens split by others
// (a later token sees the keys its earlier one stored in the same step).
static void test_mixed(void **state) {
    (void)state;
    static const int hds[2] = {64, 128};
    const int seq[10] = {2, 1, 1, 1, 1, 1, 1, 1, 0, 3}, pos[10] = {5, 10, 11, 12, 13, 14, 15, 16, 0, 30};
    const int seq2[6] = {1, 0, 1, 2, 1, 1}, pos2[6] = {10, 5, 11, 0, 12, 13};
    for (int i = 0; i < 2; i++) {
        check_step((step){8, 2, hds[i], 4, 32, 0, 10, seq, pos}, "7-token prompt and 3 single tokens");
        check_step((step){8, 2, hds[i], 3, 32, 0, 6, seq2, pos2}, "a sequence's tokens split by others");
    }
}

// Positions past the tile scratch (32768 floats per thread): the decode scores need max_ctx floats.
static void test_long(void **state) {
    (void)state;
    const int seq[2] = {0, 0}, pos[2] = {33000, 33001};
    step st = {2, 1, 64, 1, 33002, 2, 1, seq, pos};
    for (int ti = 0; ti < 3; ti++) {
        st.n_tok = 1;
        double e = run_step(&st, k_types[ti], 77);
        if (!(e <= TOL)) fail_msg("decode at 33000, %s: %.3g", ll_type_name(k_types[ti]), e);
        st.n_tok = 2;
        e = run_step(&st, k_types[ti], 78);
        if (!(e <= TOL)) fail_msg("2 tokens at 33000, %s: %.3g", ll_type_name(k_types[ti]), e);
    }
}

// Decode by kv head groups over several chunks of keys (256 a chunk; the last one partial), G = 4, 3 (heads in
// fours, the last four padded) and 7, one thread (the groups need a unit per thread); and head dims that are not
// multiples of 16 (F32 and F16: per-head decode and the tiles' scalar tails).
static void test_groups_and_dims(void **state) {
    (void)state;
    const int seq[24] = {0}, pos1[1] = {600}, pos2[1] = {513};
    static const int heads[3][2] = {{8, 2}, {6, 2}, {7, 1}};
    for (int ti = 0; ti < 3; ti++)
        for (int g = 0; g < 3; g++) {
            step st = {heads[g][0], heads[g][1], 64, 1, 700, 1, 1, seq, pos1};
            double e = run_step(&st, k_types[ti], 90 + (uint64_t)g);
            if (!(e <= TOL)) fail_msg("group decode at 600, %d/%d heads, %s: %.3g", heads[g][0], heads[g][1],
                                      ll_type_name(k_types[ti]), e);
            st.pos = pos2;
            e = run_step(&st, k_types[ti], 95 + (uint64_t)g);
            if (!(e <= TOL)) fail_msg("group decode at 513, %d/%d heads, %s: %.3g", heads[g][0], heads[g][1],
                                      ll_type_name(k_types[ti]), e);
        }
    int pos[24];
    for (int t = 0; t < 24; t++) pos[t] = 5 + t;
    for (int ti = 0; ti < 2; ti++)
        for (int n = 1; n <= 3; n += 2) {
            step st = {4, 2, 40, 1, 40, n, 24, seq, pos};
            double e = run_step(&st, k_types[ti], 99);
            if (!(e <= TOL)) fail_msg("24 tokens, head dim 40, %s: %.3g", ll_type_name(k_types[ti]), e);
            st.n_tok = 1;
            e = run_step(&st, k_types[ti], 98);
            if (!(e <= TOL)) fail_msg("decode, head dim 40, %s: %.3g", ll_type_name(k_types[ti]), e);
        }
}

// reserve grows the scratch after prepare (never shrinks); plan_bytes and mem_info answer.
static void test_reserve(void **state) {
    (void)state;
    ll_error err = {0};
    ll_backend *be = ll_backend_cpu_init(2, &err);
    assert_non_null(be);
    assert_int_equal(be->ops->prepare(be, NULL, 0, 4, 16, &err), LL_OK);
    assert_int_equal(be->ops->reserve(be, 8, 40000, &err), LL_OK);
    assert_int_equal(be->ops->reserve(be, 1, 8, &err), LL_OK); // no shrink: position 39999 still works below
    const int hd = 64, n_ctx = 40000;
    ll_kv_cache kv = {calloc((size_t)n_ctx, hd * 4), calloc((size_t)n_ctx, hd * 4), LL_TYPE_F32, n_ctx, n_ctx};
    float q[64], out[64];
    for (int i = 0; i < hd; i++) q[i] = 1.0f;
    for (int s = 0; s < n_ctx; s++) ((float *)kv.v)[(size_t)s * hd] = (float)(s % 2); // mean 0.5: all scores 0
    int32_t pos[1], row0[1];
    ll_batch_pos bp = ll_batch_pos_single(0, n_ctx - 1, 1, pos, row0);
    ll_attn_params p = {1, 1, hd, 0.125f};
    tu_poison(out, hd);
    be->ops->attention(be, out, q, &kv, &bp, &p);
    assert_float_equal(out[0], 0.5f, 3e-4); // 20000 weights of 1/40000 summed in float: ~1e-4 relative
    assert_float_equal(out[1], 0.0f, 0.0);
    uint64_t fr = 0, tot = 0;
    be->ops->mem_info(be, &fr, &tot);
    assert_true(tot > 0 && fr <= tot);
    assert_true(be->ops->plan_bytes(be, NULL, 0, 8, 40000) >= 2 * 40000 * sizeof(float));
    assert_true(!be->ops->supports(be, LL_OP_ATTENTION, LL_TYPE_BF16));
    assert_true(be->ops->copy != NULL);
    ll_backend_free(be);
    free(kv.k), free(kv.v);
}

// A NaN in a query makes that (token, head)'s scores NaN: its output is NaN, the other heads' are finite (never
// undefined behaviour in e^x: build with -fsanitize=undefined,float-cast-overflow to check). Both paths: decode
// (attn_one) and a prompt (tiles). An infinite key gives NaN too (inf - inf), not a crash.
static void test_nan(void **state) {
    (void)state;
    for (int ti = 0; ti < 3; ti++)
        for (int c = 0; c < 4; c++) {
            // 1 token: kv head groups (1 thread) and single heads (3 threads: fewer groups than threads); 20: tiles
            const int n_tok = c < 2 ? 1 : 20, nth = c % 2 ? 3 : 1;
            const int hd = 64, n_head = 4, n_kv = 2, kvd = n_kv * hd, n_ctx = 32;
            ll_error err = {0};
            ll_backend *be = ll_backend_cpu_init(nth, &err);
            assert_int_equal(be->ops->prepare(be, NULL, 0, n_tok, n_ctx, &err), LL_OK);
            size_t rb = row_bytes(k_types[ti], kvd);
            ll_kv_cache kv = {calloc(n_ctx, rb), calloc(n_ctx, rb), k_types[ti], n_ctx, n_ctx};
            uint64_t seed = 5;
            float k[20 * 128], v[20 * 128], q[20 * 256], out[20 * 256];
            for (int i = 0; i < n_tok * kvd; i++) k[i] = tu_rng_uniform(&seed), v[i] = tu_rng_uniform(&seed);
            for (int i = 0; i < n_tok * n_head * hd; i++) q[i] = tu_rng_uniform(&seed);
            const int tn = n_tok - 1; // the last token: head 0 gets a NaN
            q[(size_t)tn * n_head * hd + 3] = NAN;
            int32_t pos[20], row0[20];
            ll_batch_pos bp = ll_batch_pos_single(0, 0, n_tok, pos, row0);
            be->ops->kv_store(be, &kv, k, v, kvd, &bp);
            ll_attn_params p = {n_head, n_kv, hd, 0.125f};
            tu_poison(out, (size_t)n_tok * n_head * hd);
            be->ops->attention(be, out, q, &kv, &bp, &p);
            for (int t = 0; t < n_tok; t++)
                for (int h = 0; h < n_head; h++)
                    for (int i = 0; i < hd; i++) {
                        float o = out[((size_t)t * n_head + h) * hd + i];
                        if (t == tn && h == 0) assert_true(isnan(o));
                        else assert_true(isfinite(o));
                    }
            if (k_types[ti] == LL_TYPE_F32) { // +inf in a key of kv head 1: heads 2, 3 (q > 0 there or not) NaN or inf
                ((float *)kv.k)[hd + 5] = INFINITY;
                be->ops->attention(be, out, q, &kv, &bp, &p);
                for (int i = 0; i < hd; i++) assert_true(isfinite(out[((size_t)tn * n_head + 1) * hd + i]));
            }
            ll_backend_free(be);
            free(kv.k), free(kv.v);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single), cmocka_unit_test(test_multi_decode), cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_long),   cmocka_unit_test(test_groups_and_dims), cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
