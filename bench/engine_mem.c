// engine_mem.c — device memory of N contexts on one model: the weights are on the device once (the model's engine),
// each context adds its KV cache and activations. Prints the device's used memory after the load, after each
// context (with the plan's KV and activation bytes beside it) and after one token in each.
// Usage: engine_mem -m FILE [--device cuda] [-c 4096] [-n 4] [--cache-type f16]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static double gib(uint64_t b) { return (double)b / 1073741824.0; }

static uint64_t used(ll_backend *be) {
    uint64_t fr = 0, tot = 0;
    be->ops->mem_info(be, &fr, &tot);
    return tot - fr;
}

int main(int argc, char **argv) {
    const char *path = NULL, *device = "cuda";
    int n_ctx = 4096, n = 4;
    ll_cache_type kv = LL_CACHE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "engine_mem: %s expects a value\n", a); return 1; }
        if (!strcmp(a, "-m")) path = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "-c")) n_ctx = atoi(v);
        else if (!strcmp(a, "-n")) n = atoi(v);
        else if (!strcmp(a, "--cache-type")) { if (!ll_cache_type_parse(v, &kv)) { fprintf(stderr, "engine_mem: bad cache type\n"); return 1; } }
        else { fprintf(stderr, "engine_mem: unknown option %s\n", a); return 1; }
        i++;
    }
    if (!path || n < 1 || n > 64 || n_ctx < 1) { fprintf(stderr, "usage: engine_mem -m FILE [--device D] [-c N] [-n CONTEXTS]\n"); return 1; }
    ll_error err = {0};
    ll_model *m;
    if (ll_model_load(path, NULL, &m, &err) != LL_OK) { fprintf(stderr, "engine_mem: %s\n", err.message); return 1; }
    ll_context *c[64] = {0};
    ll_backend *be = NULL;
    uint64_t before = 0;
    for (int i = 0; i < n; i++) {
        ll_context_params cp = ll_context_default_params();
        cp.n_ctx = n_ctx, cp.device = device, cp.cache_type = kv;
        if (ll_context_init(m, &cp, &c[i], &err) != LL_OK) { fprintf(stderr, "engine_mem: context %d: %s\n", i, err.message); return 1; }
        if (!be) {
            be = c[i]->be;
            // the first context made the engine: what it took beyond the weights is this context's own
            printf("engine on %s: the model's weights %.2f GiB, uploaded with the first context\n", be->ops->name,
                   gib(m->weight_bytes));
        }
        ll_plan p;
        ll_plan_compute(m, be, c[i]->eng, n_ctx, c[i]->n_batch, c[i]->n_logits_cap, 1, c[i]->kv_type, &p);
        uint64_t u = used(be);
        printf("context %d: device used %.2f GiB (+%.2f); its plan: KV %.3f GiB (%s, n_ctx %d) + activations %.3f GiB\n",
               i + 1, gib(u), i ? gib(u - before) : 0.0, gib(p.kv), ll_type_name(c[i]->kv_type), n_ctx, gib(p.activations));
        before = u;
    }
    for (int i = 0; i < n; i++) {
        int32_t id = 1;
        if (ll_eval(c[i], &id, 1, false, &err) != LL_OK) { fprintf(stderr, "engine_mem: eval: %s\n", err.message); return 1; }
    }
    printf("after one token in each of %d contexts: device used %.2f GiB; engines on the model: %d\n", n, gib(used(be)),
           m->n_engines);
    for (int i = 0; i < n; i++) ll_context_free(c[i]);
    ll_model_free(m);
    return 0;
}
