// test_engine.c — one model, many sequences: the batch API (ll_decode) against one sequence at a time, prefix
// copies against recomputation, contexts that share the model's engine, the KV cache types against F32, and every
// bad batch an ll_status. Random models (ref_forward.h) at GQA shapes; stories260K and SmolLM2 when ../shared has them.
#include "testutil.h"

#include "core/half.h"
#include "model/model.h"
// the random models of test_model's reference (its test functions are test_model's to run)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "ref_forward.h"
#pragma GCC diagnostic pop

static ll_context *ctx_make(ll_model *m, int n_ctx, int n_seq, int n_batch, ll_cache_type kv, bool all) {
    ll_error err = {0};
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = n_ctx, cp.n_seq = n_seq, cp.n_batch = n_batch, cp.cache_type = kv, cp.all_logits = all;
    cp.n_threads = 2;
    ll_context *c = NULL;
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) fail_msg("context: %s", err.message);
    return c;
}

// Logits of every token of ids evaluated alone, one sequence, one token at a time after a prompt of n0: (n, nv).
static float *alone(ll_model *m, const int32_t *ids, int n, int n0, ll_cache_type kv) {
    ll_error err = {0};
    const int nv = ll_model_n_vocab(m);
    ll_context *c = ctx_make(m, 64, 1, 32, kv, true);
    float *out = malloc((size_t)n * nv * sizeof *out);
    assert_int_equal(ll_eval(c, ids, n0, true, &err), LL_OK);
    for (int i = 0; i < n0; i++) memcpy(out + (size_t)i * nv, ll_logits(c, i), (size_t)nv * 4);
    for (int i = n0; i < n; i++) {
        assert_int_equal(ll_eval(c, ids + i, 1, false, &err), LL_OK);
        memcpy(out + (size_t)i * nv, ll_logits(c, -1), (size_t)nv * 4);
    }
    ll_context_free(c);
    return out;
}

static int32_t tok(uint64_t *rng, int nv) { return (int32_t)(tu_rng_u64(rng) % (uint64_t)nv); }

// S sequences of different prompt lengths: their prompts as one batch (interleaved, every token's logits), then
// steps of one token per sequence in one batch; each sequence's logits must be those of the sequence alone.
static void check_batched_equals_alone(ll_model *m, ll_cache_type kv, double tol) {
    enum { S = 5, N = 12 };
    const int nv = ll_model_n_vocab(m), n0[S] = {1, 7, 3, 5, 2};
    uint64_t rng = 7;
    int32_t ids[S][N];
    float *ref[S];
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < N; i++) ids[s][i] = tok(&rng, nv);
        ref[s] = alone(m, ids[s], N, n0[s], kv);
    }
    ll_error err = {0};
    ll_context *c = ctx_make(m, 64, S, 64, kv, true);
    ll_batch b;
    assert_int_equal(ll_batch_init(&b, 64, &err), LL_OK);
    // prompts interleaved round-robin: a sequence's tokens in order, others' between them
    int next[S] = {0};
    for (bool more = true; more;) {
        more = false;
        for (int s = 0; s < S; s++)
            if (next[s] < n0[s]) assert_true(ll_batch_add(&b, ids[s][next[s]], next[s], s, true)), next[s]++, more = true;
    }
    assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    double worst = 0;
    for (int i = 0; i < b.n_tokens; i++) {
        const float *got = ll_logits_ith(c, i);
        assert_non_null(got);
        assert_int_equal(tu_count_nonfinite(got, (size_t)nv), 0);
        double r = tu_rel_l2(got, ref[b.seq[i]] + (size_t)b.pos[i] * nv, (size_t)nv);
        worst = r > worst ? r : worst;
    }
    for (int step = 0;; step++) {
        ll_batch_clear(&b);
        for (int s = S - 1; s >= 0; s--) // the sequences in another order than their ids
            if (ll_seq_len(c, s) < N) ll_batch_add(&b, ids[s][ll_seq_len(c, s)], ll_seq_len(c, s), s, true);
        if (!b.n_tokens) break;
        assert_int_equal(ll_decode(c, &b, &err), LL_OK);
        for (int i = 0; i < b.n_tokens; i++) {
            double r = tu_rel_l2(ll_logits_ith(c, i), ref[b.seq[i]] + (size_t)b.pos[i] * nv, (size_t)nv);
            worst = r > worst ? r : worst;
        }
    }
    printf("# note: %d sequences in one batch vs alone, %s cache: worst rel L2 %.3g (tolerance %.1g)\n", S,
           ll_cache_type_name(kv), worst, tol);
    assert_true(worst <= tol);
    ll_batch_free(&b);
    ll_context_free(c);
    for (int s = 0; s < S; s++) free(ref[s]);
}

static const rand_cfg k_gqa = {"llama", 64, 2, 8, 2, 96, 300, 8, LL_TYPE_F32, false, false, false, 10000.0f, 1e-5f};

static ll_model *rand_model_load(const rand_cfg *cfg, rand_model *rm) {
    *rm = rm_build(cfg, 3);
    ll_error err = {0};
    ll_model *m;
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    if (ll_model_from_gguf(rm->g, &mp, &m, &err) != LL_OK) fail_msg("%s", err.message);
    return m;
}

static void rand_model_free(ll_model *m, rand_model *rm) {
    ll_model_free(m);
    for (int i = 0; i < rm->n_bufs; i++) free(rm->bufs[i]);
    free(rm->bufs);
}

// Same arithmetic per token whatever the batch (the batch only changes how many rows a matmul takes): F32 agrees
// to float rounding.
static void test_batched_f32(void **state) {
    rand_model rm;
    ll_model *m = rand_model_load(&k_gqa, &rm);
    check_batched_equals_alone(m, LL_CACHE_F32, 1e-5);
    rand_model_free(m, &rm);
}

static void test_batched_f16(void **state) {
    rand_model rm;
    ll_model *m = rand_model_load(&k_gqa, &rm);
    check_batched_equals_alone(m, LL_CACHE_F16, 3e-5); // both sides read the same F16-rounded cache
    rand_model_free(m, &rm);
}

static void test_batched_q8_0(void **state) {
    rand_cfg cfg = k_gqa;
    cfg.n_embd = 256, cfg.n_head = 8, cfg.n_head_kv = 2; // head dim 32: whole Q8_0 blocks
    rand_model rm;
    ll_model *m = rand_model_load(&cfg, &rm);
    check_batched_equals_alone(m, LL_CACHE_Q8_0, 1e-5);
    rand_model_free(m, &rm);
}

// A prefix evaluated once in sequence 0, copied to 1 and 2, each continued differently: the logits of the
// continuations equal a fresh evaluation of prefix + continuation.
static void test_prefix_copy(void **state) {
    rand_model rm;
    ll_model *m = rand_model_load(&k_gqa, &rm);
    const int nv = ll_model_n_vocab(m), P = 9, N = 14;
    uint64_t rng = 11;
    int32_t ids[3][16];
    for (int i = 0; i < N; i++) ids[0][i] = tok(&rng, nv);
    for (int s = 1; s < 3; s++) {
        memcpy(ids[s], ids[0], P * sizeof(int32_t));
        for (int i = P; i < N; i++) ids[s][i] = tok(&rng, nv);
    }
    ll_error err = {0};
    ll_context *c = ctx_make(m, 32, 3, 32, LL_CACHE_F16, false);
    ll_batch b;
    assert_int_equal(ll_batch_init(&b, 32, &err), LL_OK);
    for (int i = 0; i < P; i++) ll_batch_add(&b, ids[0][i], i, 0, false);
    assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    assert_null(ll_logits_ith(c, 0)); // no logits kept
    for (int s = 1; s < 3; s++) assert_int_equal(ll_seq_copy_prefix(c, 0, s, P, &err), LL_OK);
    assert_int_equal(ll_seq_len(c, 2), P);
    double worst = 0;
    for (int i = P; i < N; i++) {
        ll_batch_clear(&b);
        for (int s = 0; s < 3; s++) ll_batch_add(&b, ids[s][i], i, s, true);
        assert_int_equal(ll_decode(c, &b, &err), LL_OK);
        for (int s = 0; s < 3; s++) {
            float *ref = alone(m, ids[s], i + 1, i + 1, LL_CACHE_F16); // the whole prefix + continuation, fresh
            double r = tu_rel_l2(ll_logits_ith(c, s), ref + (size_t)i * nv, (size_t)nv);
            worst = r > worst ? r : worst;
            free(ref);
        }
    }
    printf("# note: continuations after a copied prefix vs fresh evaluation: worst rel L2 %.3g\n", worst);
    assert_true(worst <= 1e-5);
    // truncating sequence 1 back into the prefix and continuing gives sequence 0's logits again
    assert_int_equal(ll_seq_truncate(c, 1, P, &err), LL_OK);
    ll_batch_clear(&b);
    ll_batch_add(&b, ids[0][P], P, 1, true);
    assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    float *ref = alone(m, ids[0], P + 1, P + 1, LL_CACHE_F16);
    assert_true(tu_rel_l2(ll_logits_ith(c, 0), ref + (size_t)P * nv, (size_t)nv) <= 1e-5);
    free(ref);
    ll_batch_free(&b);
    ll_context_free(c);
    rand_model_free(m, &rm);
}

// Two contexts on one model share its engine (the weights are prepared once), and interleaved use of the two
// gives each the results it gives alone.
static void test_contexts_share_engine(void **state) {
    rand_model rm;
    ll_model *m = rand_model_load(&k_gqa, &rm);
    const int nv = ll_model_n_vocab(m), N = 10;
    uint64_t rng = 5;
    int32_t a[10], bb[10];
    for (int i = 0; i < N; i++) a[i] = tok(&rng, nv), bb[i] = tok(&rng, nv);
    float *ra = alone(m, a, N, 1, LL_CACHE_F16), *rb = alone(m, bb, N, 1, LL_CACHE_F16);
    ll_context *c1 = ctx_make(m, 32, 1, 8, LL_CACHE_F16, false), *c2 = ctx_make(m, 48, 2, 16, LL_CACHE_F32, false);
    assert_int_equal(m->n_engines, 1);
    assert_ptr_equal(c1->be, c2->be);
    ll_error err = {0};
    for (int i = 0; i < N; i++) {
        assert_int_equal(ll_eval(c1, a + i, 1, false, &err), LL_OK);
        assert_int_equal(ll_eval(c2, bb + i, 1, false, &err), LL_OK);
        assert_true(tu_rel_l2(ll_logits(c1, -1), ra + (size_t)i * nv, (size_t)nv) <= 1e-5);
        assert_true(tu_rel_l2(ll_logits(c2, -1), rb + (size_t)i * nv, (size_t)nv) <= 1e-3); // F32 vs F16 cache
    }
    ll_context_free(c1);
    ll_context_free(c2);
    assert_int_equal(m->n_engines, 1); // the engine stays with the model for the next context
    free(ra), free(rb);
    rand_model_free(m, &rm);
}

// Greedy text of a prompt alone and beside 3 other sequences in every step: the same ids.
static void test_greedy_alone_and_batched(void **state) {
    TU_NEED_SHARED(path, "models/stories260K.gguf");
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    ll_model *m;
    if (ll_model_load(path, &mp, &m, &err) != LL_OK) fail_msg("%s", err.message);
    const char *prompts[4] = {"Once upon a time", "The cat sat", "Lily wanted to", "One day, a big"};
    int32_t ids[4][32];
    int n[4];
    for (int s = 0; s < 4; s++) n[s] = ll_tokenize(m, prompts[s], strlen(prompts[s]), true, false, ids[s], 32);
    ll_sampler_params sp = ll_sampler_default_params();
    sp.temp = 0;
    ll_sampler *g = ll_sampler_init(&sp, ll_model_n_vocab(m));
    enum { G = 40 };
    int32_t solo[G], got[4][G];
    ll_context *c = ctx_make(m, 128, 1, 32, LL_CACHE_F16, false);
    assert_int_equal(ll_eval(c, ids[0], n[0], false, &err), LL_OK);
    for (int i = 0; i < G; i++) {
        solo[i] = ll_sample(c, g);
        assert_int_equal(ll_eval(c, &solo[i], 1, false, &err), LL_OK);
    }
    ll_context_free(c);
    c = ctx_make(m, 128, 4, 64, LL_CACHE_F16, false);
    ll_batch b;
    assert_int_equal(ll_batch_init(&b, 64, &err), LL_OK);
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < n[s]; i++) ll_batch_add(&b, ids[s][i], i, s, i == n[s] - 1);
    assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    int at[4], k = 0;
    for (int i = 0; i < b.n_tokens; i++)
        if (b.logits[i]) at[k++] = i;
    for (int i = 0; i < G; i++) {
        for (int s = 0; s < 4; s++) got[s][i] = ll_sample_ith(c, g, at[s]);
        ll_batch_clear(&b);
        for (int s = 0; s < 4; s++) at[s] = b.n_tokens, ll_batch_add(&b, got[s][i], n[s] + i, s, true);
        assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    }
    assert_memory_equal(solo, got[0], sizeof solo);
    ll_batch_free(&b);
    ll_context_free(c);
    ll_sampler_free(g);
    ll_model_free(m);
}

// The cache types against an F32 cache on an F16 model of a real architecture's layout (the golden tiny-llama,
// head dim 64): F16 rounds K and V to half precision (llama.cpp's default; the goldens' README puts that at ~3e-4
// rel L2 of the logits), Q8_0 to 8 bits per value with a scale per 32 (measured ~1e-2). Quantized-weight models
// are no test of this: their activations are re-quantized to 8 bits per matmul, which turns a 5e-4 change into
// ~1e-2 (SmolLM2-135M Q4_1: F16 cache 1-9e-2 per position).
static void test_cache_types_real_model(void **state) {
    TU_NEED_SHARED(path, "golden/tiny-llama/tiny-llama-f16.gguf");
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    ll_model *m;
    if (ll_model_load(path, &mp, &m, &err) != LL_OK) fail_msg("%s", err.message);
    const char *text = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is";
    int32_t ids[64];
    int n = ll_tokenize(m, text, strlen(text), true, false, ids, 64), nv = ll_model_n_vocab(m);
    float *ref = NULL;
    const ll_cache_type types[3] = {LL_CACHE_F32, LL_CACHE_F16, LL_CACHE_Q8_0};
    const double tol[3] = {0, 1e-3, 3e-2};
    for (int k = 0; k < 3; k++) {
        ll_context *c = ctx_make(m, 128, 1, 64, types[k], true);
        assert_int_equal(ll_eval(c, ids, n, true, &err), LL_OK);
        float *got = malloc((size_t)n * nv * sizeof *got);
        for (int i = 0; i < n; i++) memcpy(got + (size_t)i * nv, ll_logits(c, i), (size_t)nv * 4);
        assert_int_equal(tu_count_nonfinite(got, (size_t)n * nv), 0);
        if (!ref) {
            ref = got;
        } else {
            double r = tu_rel_l2(got, ref, (size_t)n * nv);
            printf("# note: tiny-llama F16 model, %s KV cache vs F32: rel L2 %.3g over %d positions (tolerance %.0e)\n",
                   ll_cache_type_name(types[k]), r, n, tol[k]);
            assert_true(r <= tol[k]);
            free(got);
        }
        ll_context_free(c);
    }
    free(ref);
    ll_model_free(m);
}

// Every bad batch is an ll_status with a message, nothing evaluated.
static void test_bad_batches(void **state) {
    rand_model rm;
    ll_model *m = rand_model_load(&k_gqa, &rm);
    ll_error err = {0};
    ll_context *c = ctx_make(m, 8, 2, 8, LL_CACHE_F16, false);
    ll_batch b;
    assert_int_equal(ll_batch_init(&b, 16, &err), LL_OK);
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG); // empty
    ll_batch_add(&b, 1, 0, 0, true);
    ll_batch_add(&b, 2, 2, 0, true); // a gap
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "without a gap"));
    assert_int_equal(ll_seq_len(c, 0), 0); // nothing evaluated
    ll_batch_clear(&b);
    ll_batch_add(&b, 1, 0, 2, true); // unknown sequence: the context holds 0..1
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "sequence 2 does not exist"));
    ll_batch_clear(&b);
    ll_batch_add(&b, 1, 0, -1, true);
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    ll_batch_clear(&b);
    ll_batch_add(&b, 300, 0, 0, true); // outside the vocabulary
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "vocabulary"));
    ll_batch_clear(&b);
    for (int i = 0; i < 3; i++) ll_batch_add(&b, 1, i, 0, true); // 3 kept logits, room for 2 (n_seq)
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "room for"));
    ll_batch_clear(&b);
    for (int i = 0; i < 9; i++) ll_batch_add(&b, 1, i, 1, i == 8); // past the 8 positions
    assert_int_equal(ll_decode(c, &b, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "context full"));
    ll_batch_clear(&b);
    for (int i = 0; i < 4; i++) ll_batch_add(&b, 1, i, 0, i == 3);
    assert_int_equal(ll_decode(c, &b, &err), LL_OK);
    assert_int_equal(ll_seq_copy_prefix(c, 0, 1, 5, &err), LL_ERR_ARG); // past the end of sequence 0
    assert_non_null(strstr(err.message, "holds 4"));
    assert_int_equal(ll_seq_copy_prefix(c, 0, 3, 2, &err), LL_ERR_ARG);
    assert_int_equal(ll_seq_copy_prefix(c, 5, 1, 2, &err), LL_ERR_ARG);
    assert_int_equal(ll_seq_truncate(c, 7, 0, &err), LL_ERR_ARG);
    assert_int_equal(ll_seq_truncate(c, 0, -1, &err), LL_ERR_ARG);
    assert_int_equal(ll_seq_len(c, 9), -1);
    ll_batch_clear(&b);
    assert_false(ll_batch_add(&(ll_batch){0}, 1, 0, 0, true)); // no room
    ll_batch_free(&b);
    ll_context_free(c);
    // sequences: context parameters out of range; a Q8_0 cache on a head dimension that is not whole blocks
    ll_context_params cp = ll_context_default_params();
    cp.n_seq = -1;
    assert_int_equal(ll_context_init(m, &cp, &c, &err), LL_ERR_ARG);
    cp.n_seq = 1, cp.cache_type = LL_CACHE_Q8_0;
    assert_int_equal(ll_context_init(m, &cp, &c, &err), LL_ERR_ARG); // head dim 8
    assert_non_null(strstr(err.message, "multiple of 32"));
    cp.cache_type = (ll_cache_type)77;
    assert_int_equal(ll_context_init(m, &cp, &c, &err), LL_ERR_ARG);
    ll_cache_type t;
    assert_true(ll_cache_type_parse("Q8_0", &t) && t == LL_CACHE_Q8_0);
    assert_false(ll_cache_type_parse("q4_0", &t));
    rand_model_free(m, &rm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_f32),
        cmocka_unit_test(test_batched_f16),
        cmocka_unit_test(test_batched_q8_0),
        cmocka_unit_test(test_prefix_copy),
        cmocka_unit_test(test_contexts_share_engine),
        cmocka_unit_test(test_greedy_alone_and_batched),
        cmocka_unit_test(test_cache_types_real_model),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
