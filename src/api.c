// api.c — the public API of llmlab.h over the internal layers: load (GGUF or llama2.c), plan, allocate the
// context once, evaluate in n_batch chunks, tokenizer pass-throughs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/llama2c.h"
#include "model/model.h"
#include "sampler/sampler.h"

ll_model_params ll_model_default_params(void) { return (ll_model_params){0}; }

ll_context_params ll_context_default_params(void) { return (ll_context_params){.n_ctx = 0, .n_batch = 512}; }

static char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return ll_strdup(s ? s + 1 : path);
}

// llama2.c checkpoints need their tokenizer: the given path, else tokenizer.bin beside the checkpoint.
static ll_status open_file(const char *path, const ll_model_params *p, ll_gguf **g, ll_error *err) {
    if (!ll_llama2c_probe(path)) return ll_gguf_open(g, path, err);
    char tok[4096];
    if (p->tokenizer_path) {
        snprintf(tok, sizeof tok, "%s", p->tokenizer_path);
    } else {
        const char *slash = strrchr(path, '/');
        int dir = slash ? (int)(slash - path + 1) : 0;
        snprintf(tok, sizeof tok, "%.*stokenizer.bin", dir, path);
    }
    return ll_llama2c_open(g, path, tok, err);
}

ll_status ll_model_load(const char *path, const ll_model_params *params, ll_model **out, ll_error *err) {
    ll_model_params p = params ? *params : ll_model_default_params();
    *out = NULL;
    ll_gguf *g = NULL;
    ll_status s = open_file(path, &p, &g, err);
    if (s != LL_OK) return s;
    return ll_model_from_gguf(g, &p, out, err);
}

ll_status ll_model_from_gguf(ll_gguf *g, const ll_model_params *params, ll_model **out, ll_error *err) {
    ll_model_params p = params ? *params : ll_model_default_params();
    *out = NULL;
    ll_model *m = ll_calloc(1, sizeof *m, err);
    if (!m) {
        ll_gguf_free(g);
        return LL_ERR_NOMEM;
    }
    m->gguf = g;
    ll_status s = ll_model_bind(m, err);
    if (s == LL_OK) s = ll_tokenizer_init(&m->tok, m->gguf, err);
    if (s == LL_OK && ll_tokenizer_n_vocab(m->tok) > m->hp.n_vocab)
        s = ll_err_set(err, LL_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight only %d rows", g->path,
                       ll_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    if (s != LL_OK) {
        ll_model_free(m);
        return s;
    }
    ll_str t;
    if (ll_gguf_find(g, "tokenizer.chat_template") && ll_gguf_get_str(g, "tokenizer.chat_template", &t, NULL) == LL_OK)
        m->chat_template = ll_strndup(t.ptr, (size_t)t.len);
    if (ll_gguf_find(g, "general.name") && ll_gguf_get_str(g, "general.name", &t, NULL) == LL_OK && t.len)
        m->name = ll_strndup(t.ptr, (size_t)(t.len > 200 ? 200 : t.len));
    else
        m->name = base_name(g->path ? g->path : "model");
    m->n_threads = p.n_threads > 0 ? p.n_threads : ll_sys_physical_cores();
    m->verbose = p.verbose;
    if (p.verbose) {
        char d[256];
        ll_model_describe(m, d, sizeof d);
        fprintf(stderr, "model: %s\n", d);
    }
    *out = m;
    return LL_OK;
}

void ll_model_free(ll_model *m) {
    if (!m) return;
    ll_tokenizer_free(m->tok);
    ll_gguf_free(m->gguf);
    free(m->layers);
    free(m->chat_template);
    free(m->name);
    free(m);
}

int ll_model_n_vocab(const ll_model *m) { return m->hp.n_vocab; }
int ll_model_n_ctx_train(const ll_model *m) { return m->hp.n_ctx_train; }
int32_t ll_model_bos(const ll_model *m) { return ll_tokenizer_bos(m->tok); }
int32_t ll_model_eos(const ll_model *m) { return ll_tokenizer_eos(m->tok); }
bool ll_model_is_eog(const ll_model *m, int32_t id) { return ll_tokenizer_is_eog(m->tok, id); }
const char *ll_model_arch(const ll_model *m) { return m->hp.arch; }
const char *ll_model_chat_template(const ll_model *m) { return m->chat_template; }

void ll_model_describe(const ll_model *m, char *buf, size_t cap) {
    char sz[32];
    ll_fmt_bytes(sz, sizeof sz, (double)m->weight_bytes);
    const ll_hparams *hp = &m->hp;
    snprintf(buf, cap, "%s (%s, %.2fB params, %s weights, %s): %d layers, dim %d, %d/%d heads, ffn %d, vocab %d",
             m->name, hp->arch, (double)m->n_params / 1e9, ll_type_name(m->wtype), sz, hp->n_layer, hp->n_embd,
             hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab);
}

int ll_tokenize(const ll_model *m, const char *text, size_t len, bool add_special, bool parse_special, int32_t *ids,
                int cap) {
    return ll_tokenizer_encode(m->tok, text, len, add_special, parse_special, ids, cap);
}

int ll_token_to_piece(const ll_model *m, int32_t id, bool special, char *buf, int cap) {
    return ll_tokenizer_piece(m->tok, id, special, buf, cap);
}

ll_detok *ll_detok_init(const ll_model *m) { return ll_detok_init_tok(m->tok); }

// ---- context ------------------------------------------------------------------------------------------
static ll_status context_alloc(ll_context *c, ll_error *err) {
    const ll_hparams *hp = &c->m->hp;
    ll_backend *be = c->be;
    size_t nb = (size_t)c->n_batch, qd = (size_t)hp->n_head * hp->head_dim;
    size_t wide = qd > (size_t)hp->n_embd ? qd : (size_t)hp->n_embd;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, ff = (size_t)hp->n_ff > kvd ? (size_t)hp->n_ff : kvd;
    size_t kv = (size_t)hp->n_layer * c->n_ctx * hp->n_head_kv * hp->head_dim * sizeof(float);
    float **bufs[] = {&c->k_cache, &c->v_cache, &c->x, &c->xb, &c->xb2, &c->q, &c->hb, &c->hb2, &c->logits_dev};
    size_t sizes[] = {kv, kv, nb * wide * 4, nb * wide * 4, nb * wide * 4, nb * qd * 4, nb * ff * 4,
                      nb * ff * 4, (size_t)c->n_logits_cap * hp->n_vocab * 4};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!(*bufs[i] = be->ops->alloc(be, sizes[i], err))) return LL_ERR_NOMEM;
    c->pos = ll_calloc(nb, sizeof *c->pos, err);
    c->logits = ll_aligned_alloc(sizes[8], 64, err);
    if (!c->pos || !c->logits) return LL_ERR_NOMEM;
    int nw;
    const ll_weight **ws = ll_model_all_weights(c->m, &nw);
    ll_status s = be->ops->prepare(be, ws, nw, c->n_batch, c->n_ctx, err);
    free(ws);
    return s;
}

ll_status ll_context_init(ll_model *m, const ll_context_params *params, ll_context **out, ll_error *err) {
    ll_context_params p = params ? *params : ll_context_default_params();
    *out = NULL;
    int n_ctx = p.n_ctx > 0 ? p.n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    if (n_ctx < 1 || n_ctx > (1 << 24)) return ll_err_set(err, LL_ERR_ARG, "context size %d is out of range", n_ctx);
    int n_batch = p.n_batch > 0 ? p.n_batch : 512;
    if (n_batch > n_ctx) n_batch = n_ctx;
    int n_threads = p.n_threads > 0 ? p.n_threads : m->n_threads;
    int n_logits = p.all_logits ? n_batch : 1;
    ll_plan plan;
    ll_plan_compute(m, n_ctx, n_batch, n_logits, n_threads, &plan);
    if (p.verbose || m->verbose) ll_plan_print(&plan, n_ctx, n_batch);
    ll_status s = ll_plan_check(&plan, m->name, err);
    if (s != LL_OK) return s;
    bool automatic = !p.device || !strcmp(p.device, "auto");
    for (int attempt = 0;; attempt++) {
        ll_context *c = ll_calloc(1, sizeof *c, err);
        if (!c) return LL_ERR_NOMEM;
        const char *ds = getenv("LLMLAB_DEVICE_SAMPLE"); // 0: ll_sample always reads the whole row (comparisons)
        *c = (ll_context){.m = m, .n_ctx = n_ctx, .n_batch = n_batch, .n_threads = n_threads, .n_logits_cap = n_logits,
                          .device_sample = !(ds && !strcmp(ds, "0"))};
        s = ll_backend_init(&c->be, attempt ? "cpu" : p.device, n_threads, err);
        if (s == LL_OK) s = context_alloc(c, err);
        if (s == LL_OK) {
            *out = c;
            return LL_OK;
        }
        // Device chosen automatically but unable to run this model (a weight type it lacks, too little device
        // memory): the CPU still can.
        bool retry = automatic && attempt == 0 && c->be && strcmp(c->be->ops->name, "cpu") &&
                     (s == LL_ERR_UNSUPPORTED || s == LL_ERR_NOMEM);
        ll_context_free(c);
        if (!retry) return s;
        ll_log(LL_LOG_WARN, "%s: %s; running on the CPU instead", m->name, err ? err->message : "device unusable");
    }
}

void ll_context_free(ll_context *c) {
    if (!c) return;
    if (c->be) {
        float *bufs[] = {c->k_cache, c->v_cache, c->x, c->xb, c->xb2, c->q, c->hb, c->hb2, c->logits_dev};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) c->be->ops->free(c->be, bufs[i]);
        ll_backend_free(c->be);
    }
    free(c->pos);
    ll_aligned_free(c->logits);
    free(c);
}

int ll_context_n_ctx(const ll_context *c) { return c->n_ctx; }
int ll_context_n_past(const ll_context *c) { return c->n_past; }
void ll_context_reset(ll_context *c) { c->n_past = 0; }
void ll_context_truncate(ll_context *c, int n_keep) {
    if (n_keep >= 0 && n_keep < c->n_past) c->n_past = n_keep;
}
void ll_context_set_interrupt(ll_context *c, volatile int *flag) { c->interrupt = flag; }

ll_status ll_eval(ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err) {
    if (n < 1) return ll_err_set(err, LL_ERR_ARG, "nothing to evaluate (0 tokens)");
    if (all_logits && n > c->n_logits_cap)
        return ll_err_set(err, LL_ERR_ARG, "logits of %d tokens asked for, but this context keeps %d (make it with "
                          "all_logits and n_batch >= %d)", n, c->n_logits_cap, n);
    if (n > c->n_ctx - c->n_past)
        return ll_err_set(err, LL_ERR_ARG, "context full: %d tokens cached + %d new > context size %d (use a larger -c)",
                          c->n_past, n, c->n_ctx);
    for (int done = 0; done < n;) {
        int chunk = n - done < c->n_batch ? n - done : c->n_batch;
        bool last = done + chunk == n;
        ll_status s = ll_forward(c, ids + done, chunk, all_logits && last, err);
        if (s != LL_OK) return s;
        done += chunk;
    }
    return LL_OK;
}

const float *ll_logits(ll_context *c, int i) {
    if (c->n_logits == 0) return NULL;
    if (i < 0) i = c->n_logits - 1;
    if (i >= c->n_logits) return NULL;
    if (!c->logits_host) {
        c->be->ops->download(c->be, c->logits, c->logits_dev, (size_t)c->n_logits * c->m->hp.n_vocab * sizeof(float));
        c->be->ops->synchronize(c->be);
        c->logits_host = true;
    }
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}

int32_t ll_sample(ll_context *c, ll_sampler *s) {
    LL_ASSERT(c->n_logits > 0);
    const int want = ll_sampler_top_wanted(s), nv = c->m->hp.n_vocab;
    const ll_backend_ops *ops = c->be->ops;
    _Static_assert(LL_SAMPLER_TOP_MAX <= LL_BACKEND_TOPK_MAX, "the sampler never wants more than topk gives");
    if (want > 0 && ops->topk && c->device_sample && !c->logits_host) {
        float vals[LL_BACKEND_TOPK_MAX];
        int32_t ids[LL_BACKEND_TOPK_MAX];
        const float *row = c->logits_dev + (size_t)(c->n_logits - 1) * nv;
        int n = ops->topk(c->be, row, nv, want, vals, ids);
        int32_t id;
        if (n >= 0 && ll_sampler_sample_top(s, vals, ids, n, &id)) return id;
    }
    return ll_sampler_sample(s, ll_logits(c, -1));
}
