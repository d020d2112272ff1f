// plan.c — the memory plan: weights (mapped), KV cache and activations, computed from the hyperparameters
// before anything is allocated, and checked against what the machine can give.
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

void ll_plan_compute(const ll_model *m, int n_ctx, int n_batch, int n_logits, int n_threads, ll_plan *p) {
    const ll_hparams *hp = &m->hp;
    uint64_t kvd = (uint64_t)hp->n_head_kv * hp->head_dim, qd = (uint64_t)hp->n_head * hp->head_dim;
    // (n_layer, n_ctx, kvd) F32, for K and for V
    p->kv = 2ull * hp->n_layer * (uint64_t)n_ctx * kvd * sizeof(float);
    // x, xb, xb2 (n_batch, max(n_embd, qd)); q (n_batch, qd); hb, hb2 (n_batch, max(n_ff, kvd): hb2 holds V
    // before the FFN); logits; positions
    uint64_t wide = qd > (uint64_t)hp->n_embd ? qd : (uint64_t)hp->n_embd;
    uint64_t ff = (uint64_t)hp->n_ff > kvd ? (uint64_t)hp->n_ff : kvd;
    uint64_t per_tok = 3 * wide + qd + 2ull * ff;
    p->activations = (uint64_t)n_batch * per_tok * sizeof(float) + (uint64_t)n_logits * hp->n_vocab * sizeof(float) +
                     (uint64_t)n_batch * sizeof(int32_t);
    const ll_weight *ws[LL_MODEL_MATMUL_KINDS];
    int nw = ll_model_matmul_weights(m, ws);
    p->activations += ll_backend_cpu_scratch(ws, nw, n_batch, n_ctx, n_threads);
    // the CPU backend's repacked weights beyond their mapped bytes (anonymous memory, counted here with the rest)
    int na;
    const ll_weight **all = ll_model_all_weights(m, &na);
    p->activations += ll_backend_cpu_repack_extra(all, na);
    free(all);
    p->weights = m->gguf->map ? m->gguf->map->size : m->weight_bytes;
    p->available = ll_sys_mem_available();
    p->total = ll_sys_mem_total();
}

ll_status ll_plan_check(const ll_plan *p, const char *what, ll_error *err) {
    char kv[32], act[32], w[32], av[32], tot[32];
    ll_fmt_bytes(kv, sizeof kv, (double)p->kv);
    ll_fmt_bytes(act, sizeof act, (double)p->activations);
    ll_fmt_bytes(w, sizeof w, (double)p->weights);
    ll_fmt_bytes(av, sizeof av, (double)p->available);
    ll_fmt_bytes(tot, sizeof tot, (double)p->total);
    uint64_t anon = p->kv + p->activations;
    if (p->total && anon > p->available)
        return ll_err_set(err, LL_ERR_NOMEM,
                          "%s needs %s of KV cache + %s of activations, but only %s of memory is available: "
                          "use a smaller context (-c) or batch (-b)",
                          what, kv, act, av);
    if (p->total && anon + p->weights > p->total)
        return ll_err_set(err, LL_ERR_NOMEM,
                          "%s needs %s of weights + %s of KV cache + %s of activations, more than this machine's "
                          "%s of RAM: use a smaller quantization or context",
                          what, w, kv, act, tot);
    if (p->total && anon + p->weights > p->available)
        ll_log(LL_LOG_WARN, "%s: weights %s + KV %s + activations %s exceed the %s available now; pages of the "
               "weights will be read from disk as needed (slow)", what, w, kv, act, av);
    return LL_OK;
}

void ll_plan_print(const ll_plan *p, int n_ctx, int n_batch) {
    char kv[32], act[32], w[32], av[32];
    ll_fmt_bytes(kv, sizeof kv, (double)p->kv);
    ll_fmt_bytes(act, sizeof act, (double)p->activations);
    ll_fmt_bytes(w, sizeof w, (double)p->weights);
    ll_fmt_bytes(av, sizeof av, (double)p->available);
    fprintf(stderr, "memory plan: weights %s (mapped) + KV cache %s (n_ctx %d, F32) + activations %s (n_batch %d); "
                    "available %s\n", w, kv, n_ctx, act, n_batch, av);
}
