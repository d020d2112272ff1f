// forward.c — the Llama-family forward pass, written once for every backend: per layer RMSNorm, Q/K/V
// projections (+ qwen2 biases), RoPE, causal GQA attention over the KV cache, output projection, residual,
// RMSNorm, SwiGLU FFN, residual; then the final norm and the logits. Prefill and decode differ only in n.
#include "model/model.h"

#include <math.h>

static ll_status check_batch(const ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err) {
    if (n < 1 || n > c->n_batch)
        return ll_err_set(err, LL_ERR_ARG, "a forward step takes 1..%d tokens (n_batch), got %d", c->n_batch, n);
    if (n > c->n_ctx - c->n_past)
        return ll_err_set(err, LL_ERR_ARG, "context full: %d tokens cached + %d new > context size %d (use a larger -c)",
                          c->n_past, n, c->n_ctx);
    if (all_logits && n > c->n_logits_cap)
        return ll_err_set(err, LL_ERR_ARG, "logits of %d tokens asked for, but the context keeps %d (all_logits off?)",
                          n, c->n_logits_cap);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->m->hp.n_vocab)
            return ll_err_set(err, LL_ERR_ARG, "token id %d at position %d is outside the vocabulary (0..%d)", ids[i],
                              i, c->m->hp.n_vocab - 1);
    return LL_OK;
}

// x += in W^T, then xb = rmsnorm(x) * norm when norm is given (the next block's input): one op where the backend
// fuses them, else the add folded into the matmul where it can, else through xb.
static void residual_matmul(ll_context *c, const ll_weight *w, const float *in, int n, const ll_weight *norm) {
    const ll_backend_ops *ops = c->be->ops;
    const ll_hparams *hp = &c->m->hp;
    if (norm && ops->matmul_add_rmsnorm) {
        ops->matmul_add_rmsnorm(c->be, w, in, c->x, norm, c->xb, n, hp->rms_eps);
        return;
    }
    if (ops->matmul_add) {
        ops->matmul_add(c->be, w, in, c->x, n);
    } else {
        ops->matmul(c->be, w, in, c->xb, n);
        ops->add(c->be, c->x, c->xb, (size_t)n * hp->n_embd);
    }
    if (norm) ops->rmsnorm(c->be, c->xb, c->x, norm, hp->n_embd, n, hp->rms_eps);
}

// Both blocks start from xb = their norm of x (left by the step before) and end with the residual add and the norm
// that follows (next: the next block's norm weight, NULL after the last layer when only some rows' logits are
// wanted).
static void attention_block(ll_context *c, const ll_layer *L, int il, int n) {
    const ll_hparams *hp = &c->m->hp;
    ll_backend *be = c->be;
    const ll_backend_ops *ops = be->ops;
    int kvd = hp->n_head_kv * hp->head_dim, qd = hp->n_head * hp->head_dim;
    float *kc = c->k_cache + (size_t)il * c->n_ctx * kvd, *vc = c->v_cache + (size_t)il * c->n_ctx * kvd;
    float *kb = c->xb2, *vb = c->hb2; // (n, kvd) this batch's K and V: xb2 is free until the attention, hb2 until the FFN

    const ll_weight *const w3[3] = {&L->wq, &L->wk, &L->wv};
    float *const y3[3] = {c->q, kb, vb};
    ll_rope_params rp = {hp->n_head, hp->head_dim, hp->n_rot, hp->rope_base, hp->rope_neox,
                         c->m->rope_freqs.data};
    if (ops->qkv_rope_store && !L->bq.data && !L->bk.data && !L->bv.data) {
        ops->qkv_rope_store(be, w3, c->xb, y3, kc, vc, n, c->n_past, &rp, hp->n_head_kv);
    } else {
        if (ops->matmul3) {
            ops->matmul3(be, w3, c->xb, y3, n);
        } else {
            for (int i = 0; i < 3; i++) ops->matmul(be, w3[i], c->xb, y3[i], n);
        }
        if (L->bq.data) ops->add_bias(be, c->q, &L->bq, qd, n);
        if (L->bk.data) ops->add_bias(be, kb, &L->bk, kvd, n);
        if (L->bv.data) ops->add_bias(be, vb, &L->bv, kvd, n);
        if (ops->rope_kv_store) {
            ops->rope_kv_store(be, c->q, kb, vb, kc, vc, c->pos, n, c->n_past, &rp, hp->n_head_kv);
        } else {
            ops->rope(be, c->q, c->pos, n, &rp);
            rp.n_head = hp->n_head_kv;
            ops->rope(be, kb, c->pos, n, &rp);
            ops->kv_store(be, kc, vc, kb, vb, kvd, n, c->n_past);
        }
    }
    ll_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, c->n_ctx, c->n_past, 1.0f / sqrtf((float)hp->head_dim)};
    ops->attention(be, c->xb2, c->q, kc, vc, n, &ap);
    residual_matmul(c, &L->wo, c->xb2, n, &L->ffn_norm);
}

static void ffn_block(ll_context *c, const ll_layer *L, int n, const ll_weight *next) {
    const ll_hparams *hp = &c->m->hp;
    ll_backend *be = c->be;
    const ll_backend_ops *ops = be->ops;
    if (ops->matmul_swiglu) {
        ops->matmul_swiglu(be, &L->w_gate, &L->w_up, c->xb, c->hb, c->hb2, n);
    } else {
        ops->matmul(be, &L->w_gate, c->xb, c->hb, n);
        ops->matmul(be, &L->w_up, c->xb, c->hb2, n);
        ops->swiglu(be, c->hb, c->hb2, hp->n_ff, n);
    }
    residual_matmul(c, &L->w_down, c->hb, n, next);
}

ll_status ll_forward(ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err) {
    ll_status s = check_batch(c, ids, n, all_logits, err);
    if (s != LL_OK) return s;
    const ll_model *m = c->m;
    const ll_hparams *hp = &m->hp;
    ll_backend *be = c->be;
    const ll_backend_ops *ops = be->ops;
    for (int t = 0; t < n; t++) c->pos[t] = c->n_past + t;

    // A backend with step_begin may replay a recorded step (then every op below is already done).
    bool step = ops->step_begin != NULL, done = step && ops->step_begin(be, ids, n, c->n_past);
    int first = all_logits ? 0 : n - 1, rows = n - first; // logits: every row, or only the last token's
    if (!done) {
        ops->get_rows(be, c->x, &m->tok_embd, ids, n);
        ops->rmsnorm(be, c->xb, c->x, &m->layers[0].attn_norm, hp->n_embd, n, hp->rms_eps);
        for (int il = 0; il < hp->n_layer; il++) {
            if (c->interrupt && *c->interrupt) {
                if (step) ops->step_end(be, false);
                return ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted");
            }
            // after the last layer, the output norm: in the same op where every row's logits are wanted
            const ll_weight *next = il + 1 < hp->n_layer ? &m->layers[il + 1].attn_norm
                                    : first == 0        ? &m->output_norm
                                                        : NULL;
            attention_block(c, &m->layers[il], il, n);
            ffn_block(c, &m->layers[il], n, next);
        }
        if (first != 0) {
            float *xr = c->x + (size_t)first * hp->n_embd;
            ops->rmsnorm(be, c->xb, xr, &m->output_norm, hp->n_embd, rows, hp->rms_eps);
        }
        ops->matmul(be, &m->output, c->xb, c->logits_dev, rows);
        if (step) ops->step_end(be, true);
    }
    ops->synchronize(be); // the logits stay on the backend until asked for (ll_logits, ll_sample)
    c->logits_host = false;
    c->n_logits = rows;
    c->logits_all = all_logits;
    c->n_past += n;
    return LL_OK;
}
