// model.c — from a parsed GGUF to a model: read the architecture's hyperparameters, find every weight by its
// GGUF name, and check each shape and type against the hyperparameters before anything runs.
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


// Architectures that run through the Llama forward pass, and what differs between them.
typedef struct arch_info {
    const char *name;
    bool rope_neox;
} arch_info;

static const arch_info k_archs[] = {
    {"llama", false},
    {"mistral", false},
    {"qwen2", true},
};

static ll_status get_int(const ll_model *m, const char *suffix, int *out, int def, bool required, ll_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    if (!ll_gguf_find(m->gguf, key)) {
        if (required) return ll_err_set(err, LL_ERR_MISSING, "%s: missing required key '%s'", m->gguf->path, key);
        *out = def;
        return LL_OK;
    }
    uint64_t v;
    ll_status s = ll_gguf_get_u64(m->gguf, key, &v, err);
    if (s != LL_OK) return s;
    if (v == 0 || v > (1u << 30))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' = %llu is out of range", m->gguf->path, key,
                          (unsigned long long)v);
    *out = (int)v;
    return LL_OK;
}

static ll_status get_float(const ll_model *m, const char *suffix, float *out, float def, ll_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    if (!ll_gguf_find(m->gguf, key)) {
        *out = def;
        return LL_OK;
    }
    ll_status s = ll_gguf_get_f32(m->gguf, key, out, err);
    if (s == LL_OK && !(*out > 0 && *out < 1e12f))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' = %g is out of range", m->gguf->path, key, *out);
    return s;
}

static ll_status read_hparams(ll_model *m, ll_error *err) {
    ll_hparams *hp = &m->hp;
    ll_str arch;
    ll_status s = ll_gguf_get_str(m->gguf, "general.architecture", &arch, err);
    if (s != LL_OK) return s;
    const arch_info *ai = NULL;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (ll_str_eq(arch, k_archs[i].name)) ai = &k_archs[i];
    if (!ai)
        return ll_err_set(err, LL_ERR_UNSUPPORTED,
                          "%s: architecture '%.*s' is not supported yet (supported: llama, mistral, qwen2)",
                          m->gguf->path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    snprintf(hp->arch, sizeof hp->arch, "%s", ai->name);
    hp->rope_neox = ai->rope_neox;
    if ((s = get_int(m, "embedding_length", &hp->n_embd, 0, true, err)) ||
        (s = get_int(m, "block_count", &hp->n_layer, 0, true, err)) ||
        (s = get_int(m, "feed_forward_length", &hp->n_ff, 0, true, err)) ||
        (s = get_int(m, "attention.head_count", &hp->n_head, 0, true, err)) ||
        (s = get_int(m, "attention.head_count_kv", &hp->n_head_kv, hp->n_head, false, err)) ||
        (s = get_int(m, "context_length", &hp->n_ctx_train, 2048, false, err)) ||
        (s = get_float(m, "rope.freq_base", &hp->rope_base, 10000.0f, err)) ||
        (s = get_float(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, 1e-5f, err)))
        return s;
    if (hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv != 0)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: %d kv heads do not divide the %d heads (attention.head_count_kv)",
                          m->gguf->path, hp->n_head_kv, hp->n_head);
    if (hp->n_embd % hp->n_head != 0)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: %d heads do not divide embedding_length %d", m->gguf->path,
                          hp->n_head, hp->n_embd);
    if ((s = get_int(m, "attention.key_length", &hp->head_dim, hp->n_embd / hp->n_head, false, err)) ||
        (s = get_int(m, "rope.dimension_count", &hp->n_rot, hp->head_dim, false, err)))
        return s;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: rope.dimension_count %d must be even and <= head size %d",
                          m->gguf->path, hp->n_rot, hp->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch);
    ll_str st;
    if (ll_gguf_find(m->gguf, key) && ll_gguf_get_str(m->gguf, key, &st, NULL) == LL_OK && !ll_str_eq(st, "none"))
        return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' (%s) is not supported yet",
                          m->gguf->path, (int)(st.len > 32 ? 32 : st.len), st.ptr, key);
    return LL_OK;
}

// Whether p lies in the model file's mapping (read-only, MAP_SHARED: ll_map_open).
static bool in_map(const ll_model *m, const void *p) {
    const ll_map *map = m->gguf ? m->gguf->map : NULL;
    return map && map->data && (const uint8_t *)p >= map->data && (const uint8_t *)p < map->data + map->size;
}

// Find a tensor and check its type is computable and its shape is (ne0, ne1).
static ll_status bind(ll_model *m, ll_weight *w, const char *name, int64_t ne0, int64_t ne1, bool required,
                      ll_error *err) {
    const ll_gguf_tensor *t = ll_gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (!required) return LL_OK;
        return ll_err_set(err, LL_ERR_MISSING, "%s: missing required tensor '%s'", m->gguf->path, name);
    }
    bool is_vec = ne1 == 1;
    int64_t t_ne1 = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->n_dims > 2)
        return ll_err_set(err, LL_ERR_FORMAT,
                          "%s: tensor '%s' has %u dimensions [%lld, %lld, %lld, %lld]; a weight has at most 2 (the "
                          "hyperparameters say [%lld, %lld])",
                          m->gguf->path, name, (unsigned)t->n_dims, (long long)t->ne[0], (long long)t->ne[1],
                          (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)ne1);
    if (t->ne[0] != ne0 || t_ne1 != ne1)
        return ll_err_set(err, LL_ERR_FORMAT,
                          "%s: tensor '%s' has shape [%lld, %lld] but the hyperparameters say [%lld, %lld]",
                          m->gguf->path, name, (long long)t->ne[0], (long long)t_ne1, (long long)ne0, (long long)ne1);
    // a type the table can read; whether a backend multiplies it is asked when an engine is made (api.c)
    const ll_type_traits *tr = ll_type_get(t->type);
    bool ok = is_vec ? t->type == LL_TYPE_F32 : tr && tr->to_float;
    if (!ok) {
        const ll_type_traits *tt = ll_type_get(t->type);
        if (is_vec)
            return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; norm and bias vectors must be F32",
                              m->gguf->path, name, tt ? tt->name : "?");
        return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported yet", m->gguf->path, name,
                          tt ? tt->name : "?");
    }
    *w = (ll_weight){t->data, t->type, t->ne[0], t_ne1, t->name, in_map(m, t->data)};
    m->n_params += (uint64_t)ne0 * (uint64_t)ne1;
    m->weight_bytes += t->nbytes;
    return LL_OK;
}

static ll_status bind_layer(ll_model *m, int il, ll_error *err) {
    const ll_hparams *hp = &m->hp;
    ll_layer *L = &m->layers[il];
    int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[96];
    ll_status s;
#define BIND(field, suffix, ne0, ne1, req)                                                                     \
    snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                                                            \
    if ((s = bind(m, &L->field, n, ne0, ne1, req, err)) != LL_OK) return s;
    BIND(attn_norm, "attn_norm.weight", d, 1, true);
    BIND(wq, "attn_q.weight", d, qd, true);
    BIND(wk, "attn_k.weight", d, kvd, true);
    BIND(wv, "attn_v.weight", d, kvd, true);
    BIND(wo, "attn_output.weight", qd, d, true);
    BIND(bq, "attn_q.bias", qd, 1, false);
    BIND(bk, "attn_k.bias", kvd, 1, false);
    BIND(bv, "attn_v.bias", kvd, 1, false);
    BIND(ffn_norm, "ffn_norm.weight", d, 1, true);
    BIND(w_gate, "ffn_gate.weight", d, hp->n_ff, true);
    BIND(w_up, "ffn_up.weight", d, hp->n_ff, true);
    BIND(w_down, "ffn_down.weight", hp->n_ff, d, true);
#undef BIND
    return LL_OK;
}

ll_status ll_model_bind(ll_model *m, ll_error *err) {
    ll_status s = read_hparams(m, err);
    if (s != LL_OK) return s;
    ll_hparams *hp = &m->hp;
    const ll_gguf_tensor *te = ll_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return ll_err_set(err, LL_ERR_MISSING, "%s: missing required tensor 'token_embd.weight'", m->gguf->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: token_embd.weight has %lld rows (vocabulary size out of range)",
                          m->gguf->path, (long long)te->ne[1]);
    hp->n_vocab = (int)te->ne[1];
    const ll_type_traits *tt = ll_type_get(te->type);
    if (!tt || !tt->to_float)
        return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tensor 'token_embd.weight': type %s is not supported yet",
                          m->gguf->path, ll_type_name(te->type));
    m->tok_embd = (ll_weight){te->data, te->type, te->ne[0], te->ne[1], te->name, in_map(m, te->data)};
    if (te->ne[0] != hp->n_embd)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: token_embd.weight rows have %lld values but embedding_length is %d",
                          m->gguf->path, (long long)te->ne[0], hp->n_embd);
    m->n_params += (uint64_t)te->ne[0] * (uint64_t)te->ne[1];
    m->layers = ll_calloc((size_t)hp->n_layer, sizeof *m->layers, err);
    if (!m->layers) return LL_ERR_NOMEM;
    for (int il = 0; il < hp->n_layer; il++)
        if ((s = bind_layer(m, il, err)) != LL_OK) return s;
    if ((s = bind(m, &m->output_norm, "output_norm.weight", hp->n_embd, 1, true, err)) != LL_OK) return s;
    if ((s = bind(m, &m->output, "output.weight", hp->n_embd, hp->n_vocab, false, err)) != LL_OK) return s;
    if (!m->output.data) { // tied embeddings: the logits use token_embd
        if (!tt->to_float)
            return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tied output uses token_embd.weight of type %s: not supported yet",
                              m->gguf->path, ll_type_name(te->type));
        m->output = m->tok_embd;
        m->weight_bytes += te->nbytes; // decode reads the embedding as the output matrix
    }
    if ((s = bind(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 1, false, err)) != LL_OK) return s;
    m->wtype = m->layers[0].wq.type;
    return LL_OK;
}

int ll_model_matmul_weights(const ll_model *m, const ll_weight *out[LL_MODEL_MATMUL_KINDS]) {
    const ll_layer *L = &m->layers[0];
    const ll_weight *all[LL_MODEL_MATMUL_KINDS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down, &m->output};
    for (int i = 0; i < LL_MODEL_MATMUL_KINDS; i++) out[i] = all[i];
    return LL_MODEL_MATMUL_KINDS;
}

const ll_weight **ll_model_all_weights(const ll_model *m, int *n) {
    int cap = 4 + m->hp.n_layer * 12, k = 0;
    const ll_weight **ws = malloc((size_t)cap * sizeof *ws);
    LL_ASSERT(ws != NULL);
    const ll_weight *top[] = {&m->tok_embd, &m->output_norm, &m->output, &m->rope_freqs};
    for (int i = 0; i < 4; i++)
        if (top[i]->data) ws[k++] = top[i];
    for (int il = 0; il < m->hp.n_layer; il++) {
        const ll_layer *L = &m->layers[il];
        const ll_weight *lw[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                 &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 12; i++)
            if (lw[i]->data) ws[k++] = lw[i];
    }
    *n = k;
    return ws;
}
