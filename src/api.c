// api.c — the public API of llmlab.h over the internal layers: load (GGUF or llama2.c), plan, allocate the
// context once, evaluate in n_batch chunks, tokenizer pass-throughs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    m->n_threads = p.n_threads > 0 ? p.n_threads : ll_sys_default_threads(); // the CPUs this process may use
    m->verbose = p.verbose;
    pthread_mutex_init(&m->lock, NULL);
    m->lock_made = true;
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
    for (int i = 0; i < m->n_engines; i++) ll_backend_free(m->engines[i].be);
    if (m->lock_made) pthread_mutex_destroy(&m->lock);
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

// ---- engines: the weights on a device, once per model -------------------------------------------------------
const char *ll_cache_type_name(ll_cache_type t) {
    return t == LL_CACHE_F32 ? "f32" : t == LL_CACHE_Q8_0 ? "q8_0" : "f16";
}

bool ll_cache_type_parse(const char *s, ll_cache_type *out) {
    static const struct { const char *name; ll_cache_type t; } k[] = {
        {"f16", LL_CACHE_F16}, {"f32", LL_CACHE_F32}, {"q8_0", LL_CACHE_Q8_0}};
    for (size_t i = 0; s && i < sizeof k / sizeof k[0]; i++)
        if (!strcasecmp(s, k[i].name)) return *out = k[i].t, true;
    return false;
}

static uint32_t cache_ggml_type(ll_cache_type t) {
    return t == LL_CACHE_F32 ? LL_TYPE_F32 : t == LL_CACHE_Q8_0 ? LL_TYPE_Q8_0 : LL_TYPE_F16;
}

static ll_engine *engine_find(ll_model *m, const char *device) {
    for (int i = 0; i < m->n_engines; i++)
        if (!device || !strcmp(device, "auto") || !strcmp(m->engines[i].be->ops->name, device)) return &m->engines[i];
    return NULL;
}

// Every weight on be: a type its matmul (or, for the embedding, get_rows) cannot take is named.
static ll_status engine_check_types(const ll_model *m, ll_backend *be, ll_error *err) {
    int nw;
    const ll_weight **ws = ll_model_all_weights(m, &nw);
    ll_status s = LL_OK;
    for (int i = 0; i < nw && s == LL_OK; i++) {
        const ll_weight *w = ws[i];
        ll_op op = w == &m->tok_embd ? LL_OP_GET_ROWS : LL_OP_MATMUL;
        bool ok = w->ne1 == 1 ? w->type == LL_TYPE_F32 : be->ops->supports(be, op, w->type);
        if (!ok)
            s = ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot run on the %s backend%s", m->name,
                           w->name ? w->name : "?", ll_type_name(w->type), be->ops->name,
                           strcmp(be->ops->name, "cpu") ? " (--device cpu may run it)" : "");
    }
    free(ws);
    return s;
}

// ---- context ------------------------------------------------------------------------------------------
static ll_status context_alloc(ll_context *c, ll_error *err) {
    const ll_hparams *hp = &c->m->hp;
    ll_backend *be = c->be;
    size_t nb = (size_t)c->n_batch, qd = (size_t)hp->n_head * hp->head_dim;
    size_t wide = qd > (size_t)hp->n_embd ? qd : (size_t)hp->n_embd;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, ff = (size_t)hp->n_ff > kvd ? (size_t)hp->n_ff : kvd;
    size_t kv = (size_t)hp->n_layer * c->n_seq * c->n_ctx * c->kv_row;
    void **bufs[] = {(void **)&c->k_cache, (void **)&c->v_cache, (void **)&c->x, (void **)&c->xb, (void **)&c->xb2,
                     (void **)&c->q, (void **)&c->hb, (void **)&c->hb2, (void **)&c->logits_dev};
    size_t sizes[] = {kv, kv, nb * wide * 4, nb * wide * 4, nb * wide * 4, nb * qd * 4, nb * ff * 4,
                      nb * ff * 4, (size_t)c->n_logits_cap * hp->n_vocab * 4};
    const char *what[] = {"the K cache", "the V cache", "activations", "activations", "activations", "activations",
                          "activations", "activations", "logits"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (!(*bufs[i] = be->ops->alloc(be, sizes[i], err))) {
            char b[32];
            ll_fmt_bytes(b, sizeof b, (double)sizes[i]);
            if (err && !err->message[0]) ll_err_set(err, LL_ERR_NOMEM, "out of memory");
            ll_err_prefix(err, "%s: %s (%s on %s) could not be allocated: ", c->m->name, what[i], b, be->ops->name);
            if (err) err->status = LL_ERR_NOMEM;
            return LL_ERR_NOMEM;
        }
    }
    c->pos = ll_calloc(nb, sizeof *c->pos, err);
    c->row0 = ll_calloc(nb, sizeof *c->row0, err);
    c->seq_buf = ll_calloc(nb, sizeof *c->seq_buf, err);
    c->keep_buf = ll_calloc(nb, sizeof *c->keep_buf, err);
    c->seq_len = ll_calloc((size_t)c->n_seq, sizeof *c->seq_len, err);
    c->next_buf = ll_calloc((size_t)c->n_seq, sizeof *c->next_buf, err);
    c->logits = ll_aligned_alloc(sizes[8], 64, err);
    if (!c->pos || !c->row0 || !c->seq_buf || !c->keep_buf || !c->seq_len || !c->next_buf || !c->logits)
        return LL_ERR_NOMEM;
    return LL_OK;
}

// The engine on device for this context: the model's, grown to the context's batch and context size, or a new one
// (backend made, weights prepared). The plan is checked before anything is allocated. Called with m->lock held.
static ll_status engine_for(ll_context *c, const char *device, bool verbose, ll_plan *plan, ll_error *err) {
    ll_model *m = c->m;
    ll_engine *e = engine_find(m, device);
    ll_backend *be = e ? e->be : NULL;
    ll_status s;
    if (!be) {
        if (m->n_engines == LL_MODEL_MAX_ENGINES)
            return ll_err_set(err, LL_ERR_ARG, "%s already runs on %d devices", m->name, m->n_engines);
        if ((s = ll_backend_init(&be, device, c->n_threads, err)) != LL_OK) return s;
        if ((s = engine_check_types(m, be, err)) != LL_OK) {
            ll_backend_free(be);
            return s;
        }
    }
    if (!be->ops->supports(be, LL_OP_ATTENTION, c->kv_type)) {
        s = ll_err_set(err, LL_ERR_UNSUPPORTED, "the %s backend cannot keep the KV cache in %s: use --cache-type f16 or "
                       "f32", be->ops->name, ll_type_name(c->kv_type));
        if (!e) ll_backend_free(be);
        return s;
    }
    c->be = be;
    ll_plan_compute(m, be, e, c->n_ctx, c->n_batch, c->n_logits_cap, c->n_seq, c->kv_type, plan);
    if (verbose) ll_plan_print(plan);
    if ((s = ll_plan_check(plan, m->name, err)) != LL_OK) {
        if (!e) ll_backend_free(be);
        c->be = NULL;
        return s;
    }
    if (!e) {
        int nw;
        const ll_weight **ws = ll_model_all_weights(m, &nw);
        s = be->ops->prepare(be, ws, nw, c->n_batch, c->n_ctx, err);
        free(ws);
        if (s != LL_OK) {
            ll_backend_free(be);
            c->be = NULL;
            return s;
        }
        e = &m->engines[m->n_engines++];
        *e = (ll_engine){be, c->n_batch, c->n_ctx};
    } else if (c->n_batch > e->max_tok || c->n_ctx > e->max_ctx) {
        int mt = c->n_batch > e->max_tok ? c->n_batch : e->max_tok, mc = c->n_ctx > e->max_ctx ? c->n_ctx : e->max_ctx;
        if ((s = be->ops->reserve(be, mt, mc, err)) != LL_OK) {
            c->be = NULL;
            return s;
        }
        e->max_tok = mt, e->max_ctx = mc;
    }
    c->eng = e;
    return LL_OK;
}

static void context_release(ll_context *c) {
    if (c->be) {
        void *bufs[] = {c->k_cache, c->v_cache, c->x, c->xb, c->xb2, c->q, c->hb, c->hb2, c->logits_dev};
        if (c->be->ops->step_forget) c->be->ops->step_forget(c->be, c);
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) c->be->ops->free(c->be, bufs[i]);
    }
    free(c->pos);
    free(c->row0);
    free(c->seq_buf);
    free(c->keep_buf);
    free(c->seq_len);
    free(c->next_buf);
    free(c->out_row);
    ll_aligned_free(c->logits);
    free(c);
}

ll_status ll_context_init(ll_model *m, const ll_context_params *params, ll_context **out, ll_error *err) {
    ll_context_params p = params ? *params : ll_context_default_params();
    *out = NULL;
    int n_ctx = p.n_ctx > 0 ? p.n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    if (n_ctx < 1 || n_ctx > (1 << 24)) return ll_err_set(err, LL_ERR_ARG, "context size %d is out of range", n_ctx);
    int n_seq = p.n_seq > 0 ? p.n_seq : 1;
    if (p.n_seq < 0 || n_seq > 4096)
        return ll_err_set(err, LL_ERR_ARG, "%d sequences asked for: a context holds 1 to 4096", p.n_seq);
    if ((int64_t)n_seq * n_ctx > (1 << 26))
        return ll_err_set(err, LL_ERR_ARG, "%d sequences x %d positions is more cache rows than a context holds (%d)",
                          n_seq, n_ctx, 1 << 26);
    if (p.cache_type != LL_CACHE_F16 && p.cache_type != LL_CACHE_F32 && p.cache_type != LL_CACHE_Q8_0)
        return ll_err_set(err, LL_ERR_ARG, "unknown KV cache type %d (f16, f32 or q8_0)", (int)p.cache_type);
    const uint32_t kv_type = cache_ggml_type(p.cache_type);
    if (kv_type == LL_TYPE_Q8_0 && m->hp.head_dim % 32)
        return ll_err_set(err, LL_ERR_ARG, "a Q8_0 KV cache needs a head dimension that is a multiple of 32; %s has %d: "
                          "use --cache-type f16", m->name, m->hp.head_dim);
    int n_batch = p.n_batch > 0 ? p.n_batch : 512;
    if (n_batch > n_ctx * n_seq) n_batch = n_ctx * n_seq;
    int n_threads = p.n_threads > 0 ? p.n_threads : m->n_threads;
    int n_logits = p.all_logits ? (n_batch > n_seq ? n_batch : n_seq) : n_seq;
    const char *ds = getenv("LLMLAB_DEVICE_SAMPLE"); // 0: ll_sample always reads the whole row (comparisons)
    const bool automatic = !p.device || !strcmp(p.device, "auto");
    const bool verbose = p.verbose || m->verbose;
    pthread_mutex_lock(&m->lock);
    ll_status s = LL_OK;
    for (int attempt = 0;; attempt++) {
        ll_context *c = ll_calloc(1, sizeof *c, err);
        if (!c) {
            s = LL_ERR_NOMEM;
            break;
        }
        *c = (ll_context){.m = m, .n_ctx = n_ctx, .n_batch = n_batch, .n_threads = n_threads, .n_seq = n_seq,
                          .n_logits_cap = n_logits, .kv_type = kv_type,
                          .kv_row = (size_t)ll_plan_kv_row_bytes(kv_type, m->hp.n_head_kv * m->hp.head_dim),
                          .device_sample = !(ds && !strcmp(ds, "0"))};
        ll_plan plan;
        const char *dev = attempt ? "cpu" : p.device;
        s = engine_for(c, dev, verbose, &plan, err);
        if (s == LL_OK) s = context_alloc(c, err);
        if (s == LL_OK) {
            *out = c;
            break;
        }
        // Device chosen automatically but unable to run this model (a weight type it lacks, too little device
        // memory): the CPU still can.
        bool retry = automatic && attempt == 0 && c->be && strcmp(c->be->ops->name, "cpu") &&
                     (s == LL_ERR_UNSUPPORTED || s == LL_ERR_NOMEM);
        if (!c->be && automatic && attempt == 0 && (s == LL_ERR_UNSUPPORTED || s == LL_ERR_NOMEM) &&
            !engine_find(m, "cpu") && strcmp(plan.device, "cpu") && plan.device[0])
            retry = true;
        context_release(c);
        if (!retry) break;
        ll_log(LL_LOG_WARN, "%s: %s; running on the CPU instead", m->name, err ? err->message : "device unusable");
    }
    pthread_mutex_unlock(&m->lock);
    return s;
}

void ll_context_free(ll_context *c) {
    if (!c) return;
    pthread_mutex_lock(&c->m->lock);
    ll_model *m = c->m;
    context_release(c);
    pthread_mutex_unlock(&m->lock);
}

int ll_context_n_ctx(const ll_context *c) { return c->n_ctx; }
int ll_context_n_past(const ll_context *c) { return c->seq_len[0]; }
int ll_context_n_seq(const ll_context *c) { return c->n_seq; }
const char *ll_context_device(const ll_context *c) { return c->be->ops->name; }
ll_cache_type ll_context_cache_type(const ll_context *c) {
    return c->kv_type == LL_TYPE_F32 ? LL_CACHE_F32 : c->kv_type == LL_TYPE_Q8_0 ? LL_CACHE_Q8_0 : LL_CACHE_F16;
}
void ll_context_reset(ll_context *c) {
    for (int s = 0; s < c->n_seq; s++) c->seq_len[s] = 0;
}
void ll_context_truncate(ll_context *c, int n_keep) {
    if (n_keep >= 0 && n_keep < c->seq_len[0]) c->seq_len[0] = n_keep;
}
void ll_context_set_interrupt(ll_context *c, volatile int *flag) { c->interrupt = flag; }

int ll_seq_len(const ll_context *c, int seq) { return seq >= 0 && seq < c->n_seq ? c->seq_len[seq] : -1; }

static ll_status check_seq(const ll_context *c, int seq, const char *what, ll_error *err) {
    if (seq < 0 || seq >= c->n_seq)
        return ll_err_set(err, LL_ERR_ARG, "%s: sequence %d does not exist (this context holds sequences 0..%d)", what,
                          seq, c->n_seq - 1);
    return LL_OK;
}

ll_status ll_seq_truncate(ll_context *c, int seq, int n_keep, ll_error *err) {
    ll_status s = check_seq(c, seq, "truncate", err);
    if (s != LL_OK) return s;
    if (n_keep < 0) return ll_err_set(err, LL_ERR_ARG, "truncate: cannot keep %d positions", n_keep);
    if (n_keep < c->seq_len[seq]) c->seq_len[seq] = n_keep;
    return LL_OK;
}

ll_status ll_seq_copy_prefix(ll_context *c, int src, int dst, int n, ll_error *err) {
    ll_status s = check_seq(c, src, "copy prefix", err);
    if (s == LL_OK) s = check_seq(c, dst, "copy prefix", err);
    if (s != LL_OK) return s;
    if (n < 0 || n > c->seq_len[src])
        return ll_err_set(err, LL_ERR_ARG, "copy prefix: %d positions asked for, but sequence %d holds %d", n, src,
                          c->seq_len[src]);
    if (src == dst) return ll_seq_truncate(c, dst, n, err);
    const ll_hparams *hp = &c->m->hp;
    pthread_mutex_lock(&c->m->lock);
    for (int il = 0; il < hp->n_layer && n > 0; il++) {
        size_t layer = (size_t)il * c->n_seq * c->n_ctx * c->kv_row, bytes = (size_t)n * c->kv_row;
        size_t from = layer + (size_t)src * c->n_ctx * c->kv_row, to = layer + (size_t)dst * c->n_ctx * c->kv_row;
        c->be->ops->copy(c->be, c->k_cache + to, c->k_cache + from, bytes);
        c->be->ops->copy(c->be, c->v_cache + to, c->v_cache + from, bytes);
    }
    c->be->ops->synchronize(c->be);
    pthread_mutex_unlock(&c->m->lock);
    c->seq_len[dst] = n;
    return LL_OK;
}

// ---- evaluation -----------------------------------------------------------------------------------------
// One forward step per chunk of n_batch tokens under the model's lock. keep (n): whose logits; NULL: every token's
// when all, else only the last token's.
static ll_status run_chunks(ll_context *c, const int32_t *ids, const int32_t *seq, const int8_t *keep, bool all,
                            int n, ll_error *err) {
    int out = 0;
    c->n_logits = 0;
    c->logits_host = false;
    pthread_mutex_lock(&c->m->lock);
    ll_status s = LL_OK;
    for (int done = 0; done < n && s == LL_OK;) {
        const int chunk = n - done < c->n_batch ? n - done : c->n_batch;
        const int32_t *sq = seq ? seq + done : c->seq_buf; // without seq: sequence 0 (seq_buf stays all 0)
        const int8_t *k = keep ? keep + done : c->keep_buf;
        if (!keep)
            for (int t = 0; t < chunk; t++) c->keep_buf[t] = all || done + t == n - 1;
        int rows = 0;
        for (int t = 0; t < chunk; t++) rows += k[t] != 0;
        s = ll_forward(c, ids + done, sq, k, chunk, out, err);
        out += rows;
        done += chunk;
    }
    pthread_mutex_unlock(&c->m->lock);
    c->n_logits = s == LL_OK ? out : 0;
    return s;
}

static ll_status check_ids(const ll_context *c, const int32_t *ids, int n, ll_error *err) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->m->hp.n_vocab)
            return ll_err_set(err, LL_ERR_ARG, "token id %d at position %d is outside the vocabulary (0..%d)", ids[i], i,
                              c->m->hp.n_vocab - 1);
    return LL_OK;
}

ll_status ll_eval(ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err) {
    if (n < 1) return ll_err_set(err, LL_ERR_ARG, "nothing to evaluate (0 tokens)");
    if (all_logits && n > c->n_logits_cap)
        return ll_err_set(err, LL_ERR_ARG, "logits of %d tokens asked for, but this context keeps %d (make it with "
                          "all_logits and n_batch >= %d)", n, c->n_logits_cap, n);
    if (n > c->n_ctx - c->seq_len[0])
        return ll_err_set(err, LL_ERR_ARG, "context full: %d tokens cached + %d new > context size %d (use a larger -c)",
                          c->seq_len[0], n, c->n_ctx);
    ll_status s = check_ids(c, ids, n, err);
    if (s != LL_OK) return s;
    c->n_out = 0; // ll_logits_ith answers for ll_decode's batches only
    return run_chunks(c, ids, NULL, NULL, all_logits, n, err);
}

// ---- batches ----------------------------------------------------------------------------------------------
ll_status ll_batch_init(ll_batch *b, int cap, ll_error *err) {
    memset(b, 0, sizeof *b);
    if (cap < 1 || cap > (1 << 24)) return ll_err_set(err, LL_ERR_ARG, "a batch of %d tokens: 1 to %d", cap, 1 << 24);
    b->token = ll_calloc((size_t)cap, sizeof *b->token, err);
    b->pos = ll_calloc((size_t)cap, sizeof *b->pos, err);
    b->seq = ll_calloc((size_t)cap, sizeof *b->seq, err);
    b->logits = ll_calloc((size_t)cap, sizeof *b->logits, err);
    if (!b->token || !b->pos || !b->seq || !b->logits) {
        ll_batch_free(b);
        return LL_ERR_NOMEM;
    }
    b->cap = cap;
    return LL_OK;
}

void ll_batch_free(ll_batch *b) {
    free(b->token), free(b->pos), free(b->seq), free(b->logits);
    memset(b, 0, sizeof *b);
}

void ll_batch_clear(ll_batch *b) { b->n_tokens = 0; }

bool ll_batch_add(ll_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits) {
    if (b->n_tokens >= b->cap) return false;
    int i = b->n_tokens++;
    b->token[i] = token, b->pos[i] = pos, b->seq[i] = seq, b->logits[i] = logits;
    return true;
}

// The whole batch checked before anything runs: sequence ids, positions that continue each sequence without a
// gap, room in the cache, token ids, room for the kept logits.
static ll_status check_batch(ll_context *c, const ll_batch *b, ll_error *err) {
    if (!b || b->n_tokens < 1) return ll_err_set(err, LL_ERR_ARG, "an empty batch (0 tokens)");
    if (b->n_tokens > b->cap || !b->token || !b->pos || !b->seq || !b->logits)
        return ll_err_set(err, LL_ERR_ARG, "a batch of %d tokens with room for %d (make it with ll_batch_init)",
                          b->n_tokens, b->cap);
    ll_status s = check_ids(c, b->token, b->n_tokens, err);
    if (s != LL_OK) return s;
    int kept = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        int sq = b->seq[i];
        if (sq < 0 || sq >= c->n_seq)
            return ll_err_set(err, LL_ERR_ARG, "batch token %d: sequence %d does not exist (this context holds sequences "
                              "0..%d: make it with n_seq >= %d)", i, sq, c->n_seq - 1, sq + 1);
        kept += b->logits[i] != 0;
    }
    if (kept > c->n_logits_cap)
        return ll_err_set(err, LL_ERR_ARG, "the batch keeps the logits of %d tokens, but this context has room for %d",
                          kept, c->n_logits_cap);
    // positions: each sequence's next expected one, counted in seq_buf-sized scratch (the sequences' lengths)
    int *next = c->next_buf;
    memcpy(next, c->seq_len, (size_t)c->n_seq * sizeof *next);
    for (int i = 0; i < b->n_tokens; i++) {
        int sq = b->seq[i];
        if (b->pos[i] != next[sq])
            return ll_err_set(err, LL_ERR_ARG, "batch token %d: position %d in sequence %d, but that sequence continues "
                              "at position %d (positions must follow each other without a gap; ll_seq_truncate to go "
                              "back)", i, b->pos[i], sq, next[sq]);
        if (next[sq] >= c->n_ctx)
            return ll_err_set(err, LL_ERR_ARG, "context full: sequence %d would grow past its %d positions (use a larger "
                              "-c)", sq, c->n_ctx);
        next[sq]++;
    }
    return LL_OK;
}

ll_status ll_decode(ll_context *c, const ll_batch *b, ll_error *err) {
    ll_status s = check_batch(c, b, err);
    if (s != LL_OK) return s;
    if (b->n_tokens > c->out_cap) { // grows with the largest batch seen, not per token
        int32_t *o = realloc(c->out_row, (size_t)b->n_tokens * sizeof *o);
        if (!o) return ll_err_set(err, LL_ERR_NOMEM, "out of memory for a batch of %d tokens", b->n_tokens);
        c->out_row = o, c->out_cap = b->n_tokens;
    }
    for (int i = 0, r = 0; i < b->n_tokens; i++) c->out_row[i] = b->logits[i] ? r++ : -1;
    c->n_out = b->n_tokens;
    s = run_chunks(c, b->token, b->seq, b->logits, false, b->n_tokens, err);
    if (s != LL_OK) c->n_out = 0;
    return s;
}

static void logits_to_host(ll_context *c) {
    if (c->logits_host) return;
    c->be->ops->download(c->be, c->logits, c->logits_dev, (size_t)c->n_logits * c->m->hp.n_vocab * sizeof(float));
    c->be->ops->synchronize(c->be);
    c->logits_host = true;
}

const float *ll_logits(ll_context *c, int i) {
    if (c->n_logits == 0) return NULL;
    if (i < 0) i = c->n_logits - 1;
    if (i >= c->n_logits) return NULL;
    logits_to_host(c);
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}

static int out_row_of(const ll_context *c, int i) {
    if (i < 0 || i >= c->n_out || c->out_row[i] < 0 || c->out_row[i] >= c->n_logits) return -1;
    return c->out_row[i];
}

const float *ll_logits_ith(ll_context *c, int i) {
    int r = out_row_of(c, i);
    return r < 0 ? NULL : ll_logits(c, r);
}

// The next id from row r of the last step's logits: the device's best candidates where the sampler can start from
// them, else the whole row.
static int32_t sample_row(ll_context *c, ll_sampler *s, int r) {
    const int want = ll_sampler_top_wanted(s), nv = c->m->hp.n_vocab;
    const ll_backend_ops *ops = c->be->ops;
    _Static_assert(LL_SAMPLER_TOP_MAX <= LL_BACKEND_TOPK_MAX, "the sampler never wants more than topk gives");
    if (want > 0 && ops->topk && c->device_sample && !c->logits_host) {
        float vals[LL_BACKEND_TOPK_MAX];
        int32_t ids[LL_BACKEND_TOPK_MAX];
        const float *row = c->logits_dev + (size_t)r * nv;
        pthread_mutex_lock(&c->m->lock);
        int n = ops->topk(c->be, row, nv, want, vals, ids);
        pthread_mutex_unlock(&c->m->lock);
        int32_t id;
        if (n >= 0 && ll_sampler_sample_top(s, vals, ids, n, &id)) return id;
    }
    return ll_sampler_sample(s, ll_logits(c, r));
}

int32_t ll_sample(ll_context *c, ll_sampler *s) {
    LL_ASSERT(c->n_logits > 0);
    return sample_row(c, s, c->n_logits - 1);
}

int32_t ll_sample_ith(ll_context *c, ll_sampler *s, int i) {
    int r = out_row_of(c, i);
    LL_ASSERT(r >= 0); // a token whose logits were kept
    return sample_row(c, s, r);
}
