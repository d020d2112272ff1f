// plan.c — the memory plan: weights, KV cache, activations and the backend's scratch, computed from the
// hyperparameters on the device that will run them, before anything is allocated, and checked against what that
// device can give (host RAM for the CPU, the GPU's free memory for CUDA).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

uint64_t ll_plan_kv_row_bytes(uint32_t type, int kvd) {
    uint64_t b = 0;
    LL_ASSERT(ll_type_row_size(type, (uint64_t)kvd, &b));
    return b;
}

void ll_plan_compute(const ll_model *m, ll_backend *be, const ll_engine *eng, int n_ctx, int n_batch, int n_logits,
                     int n_seq, uint32_t kv_type, ll_plan *p) {
    const ll_hparams *hp = &m->hp;
    memset(p, 0, sizeof *p);
    snprintf(p->device, sizeof p->device, "%s", be->ops->name);
    p->n_ctx = n_ctx, p->n_batch = n_batch, p->n_seq = n_seq, p->kv_type = kv_type;
    uint64_t kvd = (uint64_t)hp->n_head_kv * hp->head_dim, qd = (uint64_t)hp->n_head * hp->head_dim;
    // (n_layer, n_seq * n_ctx, kvd) of kv_type, for K and for V
    p->kv = 2ull * hp->n_layer * (uint64_t)n_seq * (uint64_t)n_ctx * ll_plan_kv_row_bytes(kv_type, (int)kvd);
    // x, xb, xb2 (n_batch, max(n_embd, qd)); q (n_batch, qd); hb, hb2 (n_batch, max(n_ff, kvd): hb2 holds V
    // before the FFN); logits; positions
    uint64_t wide = qd > (uint64_t)hp->n_embd ? qd : (uint64_t)hp->n_embd;
    uint64_t ff = (uint64_t)hp->n_ff > kvd ? (uint64_t)hp->n_ff : kvd;
    uint64_t per_tok = 3 * wide + qd + 2ull * ff;
    p->activations = (uint64_t)n_batch * per_tok * sizeof(float) + (uint64_t)n_logits * hp->n_vocab * sizeof(float) +
                     (uint64_t)n_batch * 4 * sizeof(int32_t);
    const bool cpu = !strcmp(be->ops->name, "cpu");
    p->weights_mapped = cpu && m->gguf->map;
    p->weights = p->weights_mapped ? m->gguf->map->size : m->weight_bytes;
    int na;
    const ll_weight **all = ll_model_all_weights(m, &na);
    // a new engine: the device copies of the weights (CPU: repacks beyond the mapped bytes) and the scratch;
    // an engine that has them: only the scratch it must grow by
    uint64_t need = be->ops->plan_bytes(be, all, na, n_batch, n_ctx);
    if (eng) {
        uint64_t had = be->ops->plan_bytes(be, all, na, eng->max_tok, eng->max_ctx);
        int mt = n_batch > eng->max_tok ? n_batch : eng->max_tok, mc = n_ctx > eng->max_ctx ? n_ctx : eng->max_ctx;
        uint64_t grown = be->ops->plan_bytes(be, all, na, mt, mc);
        p->scratch = grown > had ? grown - had : 0;
    } else if (cpu) {
        p->scratch = need; // the CPU's weights are the mapping; repacked copies count as scratch here
    } else {
        uint64_t scr_only = need > m->weight_bytes ? need - m->weight_bytes : 0;
        p->scratch = scr_only;
        p->weights_new = need - scr_only;
    }
    free(all);
    be->ops->mem_info(be, &p->available, &p->total);
}

ll_status ll_plan_check(const ll_plan *p, const char *what, ll_error *err) {
    char kv[32], act[32], w[32], av[32], tot[32], scr[32];
    ll_fmt_bytes(kv, sizeof kv, (double)p->kv);
    ll_fmt_bytes(act, sizeof act, (double)p->activations);
    ll_fmt_bytes(w, sizeof w, (double)p->weights);
    ll_fmt_bytes(av, sizeof av, (double)p->available);
    ll_fmt_bytes(tot, sizeof tot, (double)p->total);
    ll_fmt_bytes(scr, sizeof scr, (double)p->scratch);
    const uint64_t anon = p->kv + p->activations + p->scratch + p->weights_new;
    const bool cpu = !strcmp(p->device, "cpu");
    if (p->total && anon > p->available) {
        if (!cpu)
            return ll_err_set(err, LL_ERR_NOMEM,
                              "%s on %s needs %s of weights%s + %s of KV cache (%d x %d positions) + %s of activations + "
                              "%s of scratch, but the device has %s free of %s: use a smaller quantization, context (-c), "
                              "fewer sequences, --cache-type q8_0, or --device cpu",
                              what, p->device, w, p->weights_new ? "" : " (already there)", kv, p->n_seq, p->n_ctx, act,
                              scr, av, tot);
        return ll_err_set(err, LL_ERR_NOMEM,
                          "%s needs %s of KV cache (%d x %d positions) + %s of activations + %s of scratch, but only %s "
                          "of memory is available: use a smaller context (-c), batch (-b), fewer sequences or "
                          "--cache-type q8_0",
                          what, kv, p->n_seq, p->n_ctx, act, scr, av);
    }
    if (cpu && p->total && anon + p->weights > p->total)
        return ll_err_set(err, LL_ERR_NOMEM,
                          "%s needs %s of weights + %s of KV cache + %s of activations and scratch, more than this "
                          "machine's %s of RAM: use a smaller quantization or context",
                          what, w, kv, act, tot);
    if (cpu && p->total && anon + p->weights > p->available)
        ll_log(LL_LOG_WARN, "%s: weights %s + KV %s + activations %s exceed the %s available now; pages of the "
               "weights will be read from disk as needed (slow)", what, w, kv, act, av);
    return LL_OK;
}

void ll_plan_print(const ll_plan *p) {
    char kv[32], act[32], w[32], av[32], scr[32];
    ll_fmt_bytes(kv, sizeof kv, (double)p->kv);
    ll_fmt_bytes(act, sizeof act, (double)p->activations);
    ll_fmt_bytes(w, sizeof w, (double)p->weights);
    ll_fmt_bytes(av, sizeof av, (double)p->available);
    ll_fmt_bytes(scr, sizeof scr, (double)p->scratch);
    fprintf(stderr, "memory plan (%s): weights %s (%s) + KV cache %s (%d sequence%s x %d positions, %s) + activations "
                    "%s (n_batch %d) + scratch %s; available %s\n", p->device, w,
            p->weights_mapped ? "mapped" : p->weights_new ? "to upload" : "already on the device", kv, p->n_seq,
            p->n_seq == 1 ? "" : "s", p->n_ctx, ll_type_name(p->kv_type), act, p->n_batch, scr, av);
}
