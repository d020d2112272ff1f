// golden.h — shared by the test programs: compare the engine's logits with llama.cpp's golden logits
// (../shared/golden, README section 7): rel L2 overall and per position, argmax where the golden gap is clear.
#ifndef LL_TEST_GOLDEN_H
#define LL_TEST_GOLDEN_H

#include "testutil.h"

#include "llmlab.h"

static int read_ids(const char *path, int32_t *ids, int cap) {
    char *s = tu_read_file(path, NULL);
    assert_non_null(s);
    int n = 0;
    char *p = s, *end;
    for (long v; n < cap && (v = strtol(p, &end, 10), end != p); p = end) ids[n++] = (int32_t)v;
    free(s);
    return n;
}

typedef struct golden_tol {
    double all, row;     // rel L2 over everything / worst row
    double argmax_gap;   // check the argmax where the golden top-1 minus top-2 exceeds this (0 = everywhere)
} golden_tol;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static double top_gap(const float *x, int n) {
    int b = argmax(x, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++) if (i != b && x[i] > second) second = x[i];
    return (double)x[b] - second;
}

// Evaluate the golden prompt ids in one batch and compare every position's logits with llama.cpp's.
// tokenizer: llama2.c checkpoints only; prompt_path: also check the tokenizer's ids (NULL: skip).
static void check_golden(const char *model, const char *tokenizer, const char *ids_path, const char *logits_path,
                         const char *prompt_path, golden_tol tol) {
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.tokenizer_path = tokenizer;
    mp.n_threads = 2;
    ll_model *m = NULL;
    if (ll_model_load(model, &mp, &m, &err) != LL_OK) fail_msg("load %s: %s", model, err.message);
    int32_t ids[256];
    int n = read_ids(ids_path, ids, 256);
    assert_true(n > 0);
    if (prompt_path) { // the tokenizer gives the same ids for the prompt text (BOS per the vocabulary)
        size_t plen = 0;
        char *prompt = tu_read_file(prompt_path, &plen);
        int32_t tids[256];
        int tn = ll_tokenize(m, prompt, plen, true, false, tids, 256);
        free(prompt);
        assert_int_equal(tn, n);
        assert_memory_equal(tids, ids, (size_t)n * sizeof *ids);
    }

    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 512;
    cp.all_logits = true;
    cp.cache_type = LL_CACHE_F32; // the goldens: llama.cpp with an F32 KV cache (../shared/golden/README.md)

    ll_context *c = NULL;
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) fail_msg("context: %s", err.message);
    if (ll_eval(c, ids, n, true, &err) != LL_OK) fail_msg("eval: %s", err.message);
    int nv = ll_model_n_vocab(m);
    size_t glen = 0;
    float *gold = (float *)tu_read_file(logits_path, &glen);
    assert_int_equal(glen, (size_t)n * nv * sizeof(float));
    float *ours = malloc(glen);
    for (int i = 0; i < n; i++) memcpy(ours + (size_t)i * nv, ll_logits(c, i), (size_t)nv * sizeof(float));
    assert_int_equal(tu_count_nonfinite(ours, (size_t)n * nv), 0);
    double all = tu_rel_l2(ours, gold, (size_t)n * nv), worst = 0;
    int checked = 0;
    for (int i = 0; i < n; i++) {
        double r = tu_rel_l2(ours + (size_t)i * nv, gold + (size_t)i * nv, (size_t)nv);
        if (r > worst) worst = r;
        if (top_gap(gold + (size_t)i * nv, nv) > tol.argmax_gap) {
            assert_int_equal(argmax(ours + (size_t)i * nv, nv), argmax(gold + (size_t)i * nv, nv));
            checked++;
        }
    }
    printf("# note: %s: rel L2 %.3g (tolerance %.1g), worst position %.3g (%.1g), argmax checked at %d/%d\n",
           logits_path + (strrchr(logits_path, '/') ? strrchr(logits_path, '/') - logits_path + 1 : 0), all, tol.all,
           worst, tol.row, checked, n);
    assert_true(all <= tol.all);
    assert_true(worst <= tol.row);
    free(ours);
    free(gold);
    ll_context_free(c);
    ll_model_free(m);
}

#endif
