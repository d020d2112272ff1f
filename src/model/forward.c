// forward.c — the Llama-family forward pass, written once for every backend: per layer RMSNorm, Q/K/V
// projections (+ qwen2 biases), RoPE, causal GQA attention over the KV cache, output projection, residual,
// RMSNorm, SwiGLU FFN, residual; then the final norm and the logits. Prefill and decode differ only in n.
#include "model/model.h"

#include <math.h>

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
static ll_kv_cache layer_cache(const ll_context *c, int il) {
    size_t off = (size_t)il * c->n_seq * c->n_ctx * c->kv_row;
    ll_kv_cache kv = {c->k_cache + off, c->v_cache + off, c->kv_type, c->n_ctx, c->n_seq * c->n_ctx};
    return kv;
}

static void attention_block(ll_context *c, const ll_layer *L, int il, const ll_batch_pos *bp) {
    const ll_hparams *hp = &c->m->hp;
    ll_backend *be = c->be;
    const ll_backend_ops *ops = be->ops;
    const int n = bp->n_tok, kvd = hp->n_head_kv * hp->head_dim, qd = hp->n_head * hp->head_dim;
    const ll_kv_cache kv = layer_cache(c, il);
    float *kb = c->xb2, *vb = c->hb2; // (n, kvd) this batch's K and V: xb2 is free until the attention, hb2 until the FFN

    const ll_weight *const w3[3] = {&L->wq, &L->wk, &L->wv};
    float *const y3[3] = {c->q, kb, vb};
    ll_rope_params rp = {hp->n_head, hp->head_dim, hp->n_rot, hp->rope_base, hp->rope_neox,
                         c->m->rope_freqs.data};
    if (ops->qkv_rope_store && !L->bq.data && !L->bk.data && !L->bv.data) {
        ops->qkv_rope_store(be, w3, c->xb, y3, &kv, bp, &rp, hp->n_head_kv);
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
            ops->rope_kv_store(be, c->q, kb, vb, &kv, bp, &rp, hp->n_head_kv);
        } else {
            ops->rope(be, c->q, bp->pos, n, &rp);
            rp.n_head = hp->n_head_kv;
            ops->rope(be, kb, bp->pos, n, &rp);
            ops->kv_store(be, &kv, kb, vb, kvd, bp);
        }
    }
    ll_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, 1.0f / sqrtf((float)hp->head_dim)};
    ops->attention(be, c->xb2, c->q, &kv, bp, &ap);
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

// The rows whose logits are wanted, normed into xb (consecutive rows) when the last layer did not norm them all.
static void norm_kept_rows(ll_context *c, const int8_t *keep, int n) {
    const ll_hparams *hp = &c->m->hp;
    const ll_backend_ops *ops = c->be->ops;
    for (int t = 0, r = 0; t < n;) {
        if (!keep[t]) {
            t++;
            continue;
        }
        int e = t;
        while (e < n && keep[e]) e++;
        ops->rmsnorm(c->be, c->xb + (size_t)r * hp->n_embd, c->x + (size_t)t * hp->n_embd, &c->m->output_norm,
                     hp->n_embd, e - t, hp->rms_eps);
        r += e - t;
        t = e;
    }
}

ll_status ll_forward(ll_context *c, const int32_t *ids, const int32_t *seq, const int8_t *keep, int n, int out_base,
                     ll_error *err) {
    LL_ASSERT(n >= 1 && n <= c->n_batch);
    const ll_model *m = c->m;
    const ll_hparams *hp = &m->hp;
    ll_backend *be = c->be;
    const ll_backend_ops *ops = be->ops;
    // positions: each sequence's next, in batch order; single when one sequence with consecutive positions
    bool single = true;
    for (int t = 0; t < n; t++) {
        const int s = seq[t];
        LL_ASSERT(s >= 0 && s < c->n_seq && ids[t] >= 0 && ids[t] < hp->n_vocab);
        c->pos[t] = c->seq_len[s]++;
        c->row0[t] = s * c->n_ctx;
        LL_ASSERT(c->pos[t] < c->n_ctx);
        single &= s == seq[0];
    }
    const ll_batch_pos bp = {n, c->pos, c->row0, single, c->pos[0]};
    int rows = 0;
    for (int t = 0; t < n; t++) rows += keep[t] != 0;
    const bool all = rows == n;
    LL_ASSERT(out_base + rows <= c->n_logits_cap);

    // A backend with step_begin may replay a recorded step (then every op below is already done): steps whose
    // every token's logits go to the first rows (decode steps), the shape a record is made for.
    bool step = ops->step_begin != NULL && all && out_base == 0, done = step && ops->step_begin(be, c, ids, &bp);
    if (!done) {
        ops->get_rows(be, c->x, &m->tok_embd, ids, n);
        ops->rmsnorm(be, c->xb, c->x, &m->layers[0].attn_norm, hp->n_embd, n, hp->rms_eps);
        for (int il = 0; il < hp->n_layer; il++) {
            if (c->interrupt && *c->interrupt) {
                if (step) ops->step_end(be, false);
                ops->synchronize(be); // what was queued has run: the caller's clock stops on finished work
                // the step's positions were never stored: the sequences are as before it
                for (int t = 0; t < n; t++) c->seq_len[seq[t]]--;
                return ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted");
            }
            // after the last layer, the output norm: in the same op where every row's logits are wanted
            const ll_weight *next = il + 1 < hp->n_layer ? &m->layers[il + 1].attn_norm : all ? &m->output_norm : NULL;
            attention_block(c, &m->layers[il], il, &bp);
            ffn_block(c, &m->layers[il], n, next);
        }
        if (!all && rows) norm_kept_rows(c, keep, n);
        if (rows) ops->matmul(be, &m->output, c->xb, c->logits_dev + (size_t)out_base * hp->n_vocab, rows);
        if (step) ops->step_end(be, true);
    }
    ops->synchronize(be); // the logits stay on the backend until asked for (ll_logits, ll_sample)
    return LL_OK;
}
