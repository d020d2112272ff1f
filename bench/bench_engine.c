// bench_engine.c — prompt and generation speed of the engine on a model file, measured the way llama-bench
// measures (pp N: one batch of N random tokens from an empty cache; tg N: N single-token steps from an empty
// cache, each step sampling its next token: greedy by default), with warm-up, repeats, median and spread, and the
// decode bandwidth it implies.
// Build: make bench   Run: build/bench_engine -m FILE [-p 128] [-n 32] [-r 5] [-t 2] [--bw GBPS] [-s greedy|default|none]
//                         [-d DEPTH: tg after DEPTH tokens of context, as llama-bench -d]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "model/model.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run_pp(ll_context *c, const int32_t *ids, int n) {
    ll_error err;
    ll_context_reset(c);
    double t0 = ll_time_s();
    if (ll_eval(c, ids, n, false, &err) != LL_OK) { fprintf(stderr, "eval: %s\n", err.message); exit(1); }
    return ll_time_s() - t0;
}

// Each step also samples its next token (smp; NULL: none), as a generation does; the fixed ids go on, so every
// engine and setting sees the same inputs.
static double run_tg(ll_context *c, const int32_t *ids, int n, ll_sampler *smp, int depth) {
    ll_error err;
    ll_context_reset(c);
    if (depth > 0 && ll_eval(c, ids, depth, false, &err) != LL_OK) { fprintf(stderr, "eval: %s\n", err.message); exit(1); }
    ids += depth;
    double t0 = ll_time_s();
    for (int i = 0; i < n; i++) {
        if (ll_eval(c, ids + i, 1, false, &err) != LL_OK) { fprintf(stderr, "eval: %s\n", err.message); exit(1); }
        if (smp) (void)ll_sample(c, smp);
    }
    return ll_time_s() - t0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int pp = 128, tg = 32, reps = 5, threads = 0, depth = 0;
    double bw = 0;
    const char *sampling = "greedy"; // tg's sampling: greedy, default (llama.cpp's chain: top-k 40 ...), none
    ll_cache_type kv = LL_CACHE_F16;  // the KV cache (-ctk f16|f32|q8_0, as llama-bench)
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) pp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) tg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bw") && i + 1 < argc) bw = atof(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) sampling = argv[++i];
        else if (!strcmp(argv[i], "-d") && i + 1 < argc) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-ctk") && i + 1 < argc && ll_cache_type_parse(argv[i + 1], &kv)) i++;
        else { fprintf(stderr, "usage: bench_engine -m FILE [-p N] [-n N] [-r REPS] [-t THREADS] [--bw GB/s] [-s greedy|default|none] [-d DEPTH] [-ctk f16|f32|q8_0]\n"); return 1; }
    }
    if (!path || pp < 1 || tg < 1 || reps < 1 || depth < 0) { fprintf(stderr, "bench_engine: -m FILE required\n"); return 1; }
    if (strcmp(sampling, "greedy") && strcmp(sampling, "default") && strcmp(sampling, "none")) {
        fprintf(stderr, "bench_engine: -s takes greedy, default or none, not '%s'\n", sampling);
        return 1;
    }
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = threads;
    ll_model *m;
    double t0 = ll_time_s();
    if (ll_model_load(path, &mp, &m, &err) != LL_OK) { fprintf(stderr, "%s\n", err.message); return 1; }
    double load = ll_time_s() - t0;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = depth + (pp > tg ? pp : tg);
    cp.n_batch = pp;
    cp.cache_type = kv;
    ll_context *c;
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) { fprintf(stderr, "%s\n", err.message); return 1; }
    int n = depth + (pp > tg ? pp : tg);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    uint64_t s = 1;
    for (int i = 0; i < n; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; ids[i] = (int32_t)((s >> 33) % (uint64_t)m->hp.n_vocab); }
    // Validate before timing: the logits must be finite.
    run_pp(c, ids, pp < 8 ? pp : 8);
    const float *lg = ll_logits(c, -1);
    for (int i = 0; i < m->hp.n_vocab; i++)
        if (!(lg[i] == lg[i]) || lg[i] > 1e30f || lg[i] < -1e30f) { fprintf(stderr, "non-finite logits\n"); return 1; }
    ll_sampler_params sp = ll_sampler_default_params();
    if (!strcmp(sampling, "greedy")) sp.temp = 0.0f;
    ll_sampler *smp = strcmp(sampling, "none") ? ll_sampler_init(&sp, m->hp.n_vocab) : NULL;
    double *tp = malloc((size_t)reps * sizeof *tp), *tt = malloc((size_t)reps * sizeof *tt);
    run_pp(c, ids, pp); // warm-up
    run_tg(c, ids, tg < 4 ? tg : 4, smp, depth);
    for (int r = 0; r < reps; r++) tp[r] = pp / run_pp(c, ids, pp);
    for (int r = 0; r < reps; r++) tt[r] = tg / run_tg(c, ids, tg, smp, depth);
    qsort(tp, (size_t)reps, sizeof *tp, cmp_d);
    qsort(tt, (size_t)reps, sizeof *tt, cmp_d);
    char desc[256];
    ll_model_describe(m, desc, sizeof desc);
    int nt = c->n_threads;
    double gbs = tt[reps / 2] * (double)m->weight_bytes / 1e9;
    printf("model: %s\nthreads %d, load %.0f ms, weight bytes read per token %.1f MB\n", desc, nt, load * 1e3,
           m->weight_bytes / 1e6);
    printf("pp%-4d %9.2f t/s  (min %.2f, max %.2f, %d reps)\n", pp, tp[reps / 2], tp[0], tp[reps - 1], reps);
    if (depth) printf("tg after %d tokens of context (filled before each repetition, not timed)\n", depth);
    printf("tg%-4d %9.2f t/s  (min %.2f, max %.2f)  = %.1f GB/s of weights", tg, tt[reps / 2], tt[0], tt[reps - 1], gbs);
    if (bw > 0) printf(", %.0f%% of %.1f GB/s measured read bandwidth", 100 * gbs / bw, bw);
    printf("\ntg sampling: %s%s\n", sampling,
           !smp ? "" : c->be->ops->topk && c->device_sample ? " (candidates selected on the device)" : " (the whole logits row on the host)");
    ll_sampler_free(smp);
    free(tp), free(tt), free(ids);
    ll_context_free(c);
    ll_model_free(m);
    return 0;
}
