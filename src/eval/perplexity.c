// perplexity.c — llama.cpp's perplexity method over the public API (ll_eval with all logits, chunk by chunk from
// an empty cache), plus a base model evaluated on the same chunks for KL-divergence without logit files.
#include "eval/perplexity.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/sha256.h"

ll_ppl_params ll_ppl_default_params(void) { return (ll_ppl_params){.n_ctx = 512}; }

char *ll_ppl_read_text(const char *path, size_t *len, ll_error *err) {
    ll_map *m;
    if (ll_map_open(&m, path, err) != LL_OK) return NULL;
    char *t = ll_malloc(m->size + 1, err);
    if (t) {
        if (m->size) memcpy(t, m->data, m->size);
        t[m->size] = 0;
        *len = m->size;
    }
    ll_map_free(m);
    return t;
}

ll_status ll_ppl_tokenize(const ll_model *m, const char *text, size_t len, int32_t **ids, int *n_ids, ll_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (len > 0 && text[len - 1] == '\n') len--; // llama.cpp's -f drops one trailing newline
    if (len > (size_t)INT_MAX / 2)
        return ll_err_set(err, LL_ERR_ARG, "the text is %zu bytes; at most %d can be tokenized at once", len, INT_MAX / 2);
    int cap = (int)len + 16; // SPM/BPE give at most one token per byte, plus BOS/EOS and a leading space
    for (int tries = 0; tries < 2; tries++) {
        int32_t *buf = ll_malloc((size_t)cap * sizeof *buf, err);
        if (!buf) return LL_ERR_NOMEM;
        int n = ll_tokenize(m, text, len, true, false, buf, cap);
        if (n >= 0) {
            *ids = buf;
            *n_ids = n;
            return LL_OK;
        }
        free(buf);
        cap = -n;
    }
    return ll_err_set(err, LL_ERR_INTERNAL, "the tokenizer did not settle on a token count");
}

void ll_ppl_ids_sha256(const int32_t *ids, int n, char hex[65]) {
    ll_sha256 c;
    ll_sha256_init(&c);
    char buf[16];
    for (int i = 0; i < n; i++) {
        int k = snprintf(buf, sizeof buf, i ? " %d" : "%d", (int)ids[i]);
        ll_sha256_update(&c, buf, (size_t)k);
    }
    ll_sha256_update(&c, "\n", 1);
    uint8_t d[32];
    ll_sha256_final(&c, d);
    ll_sha256_hex(d, hex);
}

// ---- one scored position ----------------------------------------------------------------------------------------
// log-softmax pieces of a logits row: max, log of sum exp(l - max) and the argmax (lowest id on ties). Double
// exps (llama.cpp sums float ones): KL of two near-equal distributions is a small difference of these sums.
typedef struct lsm {
    float max;
    double log_sum;
    int argmax;
} lsm;

static lsm lsm_of(const float *l, int n) {
    lsm r = {l[0], 0, 0};
    for (int i = 1; i < n; i++)
        if (l[i] > r.max) r.max = l[i], r.argmax = i;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)l[i] - r.max);
    r.log_sum = log(s);
    return r;
}

typedef struct acc {
    double nll, nll2, bnll, bnll2, kld, kld2, dp2;
    uint64_t n, top1;
    float *klds; // per scored position (base runs only)
} acc;

static void score(acc *a, const float *lm, const float *lb, int n_vocab, int tok) {
    lsm m = lsm_of(lm, n_vocab);
    double lpm = (double)lm[tok] - m.max - m.log_sum; // log p_model(tok)
    a->nll += -lpm;
    a->nll2 += lpm * lpm;
    if (lb) {
        lsm b = lsm_of(lb, n_vocab);
        double lpb = (double)lb[tok] - b.max - b.log_sum;
        a->bnll += -lpb;
        a->bnll2 += lpb * lpb;
        double kl = 0; // KL(P_base || P_model) = sum p_b (log p_b - log p_m)
        for (int i = 0; i < n_vocab; i++) {
            double lb_i = (double)lb[i] - b.max - b.log_sum, lm_i = (double)lm[i] - m.max - m.log_sum;
            kl += exp(lb_i) * (lb_i - lm_i);
        }
        if (kl < 0) kl = 0; // rounding of two near-identical distributions
        a->klds[a->n] = (float)kl;
        a->kld += kl;
        a->kld2 += kl * kl;
        a->top1 += m.argmax == b.argmax;
        double dp = exp(lpm) - exp(lpb);
        a->dp2 += dp * dp;
    }
    a->n++;
}

// Mean and llama.cpp's error of exp(mean): exp(mean) * sqrt((E[x^2] - mean^2) / (n - 1)).
static void ppl_of(double sum, double sum2, uint64_t n, double *nll, double *ppl, double *err) {
    double mean = n ? sum / (double)n : 0, var = n ? sum2 / (double)n - mean * mean : 0;
    *nll = mean;
    *ppl = exp(mean);
    *err = n > 1 && var > 0 ? *ppl * sqrt(var / (double)(n - 1)) : 0;
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static double pct(const float *sorted, uint64_t n, double p) {
    if (!n) return 0;
    double pos = p * (double)(n - 1);
    uint64_t i = (uint64_t)pos;
    double f = pos - (double)i;
    return i + 1 < n ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[n - 1];
}

static void finish(acc *a, bool has_base, ll_ppl_result *r) {
    r->n_scored = a->n;
    ppl_of(a->nll, a->nll2, a->n, &r->nll, &r->ppl, &r->ppl_stderr);
    r->has_base = has_base;
    if (!has_base || !a->n) return;
    ppl_of(a->bnll, a->bnll2, a->n, &r->base_nll, &r->base_ppl, &r->base_ppl_stderr);
    r->dppl = r->ppl - r->base_ppl;
    double n = (double)a->n, mean = a->kld / n, var = a->kld2 / n - mean * mean;
    r->kld_mean = mean;
    r->kld_stderr = a->n > 1 && var > 0 ? sqrt(var / (n - 1)) : 0;
    qsort(a->klds, (size_t)a->n, sizeof *a->klds, cmp_float);
    r->kld_median = pct(a->klds, a->n, 0.5);
    r->kld_p90 = pct(a->klds, a->n, 0.90);
    r->kld_p95 = pct(a->klds, a->n, 0.95);
    r->kld_p99 = pct(a->klds, a->n, 0.99);
    r->kld_max = a->klds[a->n - 1];
    double p = (double)a->top1 / n;
    r->top1_pct = 100 * p;
    r->top1_stderr_pct = a->n > 1 ? 100 * sqrt(p * (1 - p) / (n - 1)) : 0;
    r->rms_dp_pct = 100 * sqrt(a->dp2 / n);
}

// ---- the pass ---------------------------------------------------------------------------------------------------
typedef struct run {
    const ll_ppl_params *p;
    ll_context *cm, *cb; // model, base (NULL without one)
    int n_vocab, n_batch;
    int32_t bos;         // replaces each chunk's first id, or -1 when the text has no BOS
    int32_t *buf;        // (n_ctx) the chunk being evaluated
    acc a;
} run;

// Evaluate one chunk in pieces of n_batch and score the positions each piece covers.
static ll_status eval_chunk(run *r, const int32_t *chunk, ll_error *err) {
    int n_ctx = r->p->n_ctx, first = n_ctx / 2;
    memcpy(r->buf, chunk, (size_t)n_ctx * sizeof *r->buf);
    if (r->bos >= 0) r->buf[0] = r->bos;
    ll_context_reset(r->cm);
    if (r->cb) ll_context_reset(r->cb);
    for (int ps = 0; ps < n_ctx; ps += r->n_batch) {
        int nb = n_ctx - ps < r->n_batch ? n_ctx - ps : r->n_batch;
        ll_status s = ll_eval(r->cm, r->buf + ps, nb, true, err);
        if (s == LL_OK && r->cb) s = ll_eval(r->cb, r->buf + ps, nb, true, err);
        if (s != LL_OK) return s;
        int j0 = ps > first ? ps : first, j1 = ps + nb < n_ctx - 1 ? ps + nb : n_ctx - 1; // j in [j0, j1)
        for (int j = j0; j < j1; j++)
            score(&r->a, ll_logits(r->cm, j - ps), r->cb ? ll_logits(r->cb, j - ps) : NULL, r->n_vocab, chunk[j + 1]);
    }
    return LL_OK;
}

static ll_status check_args(ll_model *m, ll_model *base, int n_ids, const ll_ppl_params *p, ll_error *err) {
    if (p->n_ctx < 4) return ll_err_set(err, LL_ERR_ARG, "context size %d is too small for perplexity (>= 4)", p->n_ctx);
    if (p->n_batch < 0 || p->n_batch > p->n_ctx)
        return ll_err_set(err, LL_ERR_ARG, "batch size %d must be between 1 and the context size %d", p->n_batch, p->n_ctx);
    if (n_ids < 2 * p->n_ctx)
        return ll_err_set(err, LL_ERR_ARG, "the text has %d tokens; perplexity with a context of %d needs at least %d "
                          "(use a longer text or a smaller -c)", n_ids, p->n_ctx, 2 * p->n_ctx);
    if (base && ll_model_n_vocab(base) != ll_model_n_vocab(m))
        return ll_err_set(err, LL_ERR_ARG, "the base model has %d tokens in its vocabulary and the model %d: they must "
                          "share a tokenizer", ll_model_n_vocab(base), ll_model_n_vocab(m));
    return LL_OK;
}

static ll_status run_init(run *r, ll_model *m, ll_model *base, const int32_t *ids, int n_chunk, const ll_ppl_params *p,
                          ll_error *err) {
    *r = (run){.p = p, .n_vocab = ll_model_n_vocab(m), .n_batch = p->n_batch ? p->n_batch : p->n_ctx};
    r->bos = ll_model_bos(m) >= 0 && ids[0] == ll_model_bos(m) ? ll_model_bos(m) : -1;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = p->n_ctx;
    cp.n_batch = r->n_batch;
    cp.n_threads = p->n_threads;
    cp.all_logits = true;
    ll_status s = ll_context_init(m, &cp, &r->cm, err);
    if (s == LL_OK && base) s = ll_context_init(base, &cp, &r->cb, err);
    if (s != LL_OK) return s;
    size_t n_score = (size_t)n_chunk * (size_t)(p->n_ctx - 1 - p->n_ctx / 2);
    r->buf = ll_malloc((size_t)p->n_ctx * sizeof *r->buf, err);
    if (r->buf && base) r->a.klds = ll_malloc((n_score ? n_score : 1) * sizeof *r->a.klds, err);
    if (!r->buf || (base && !r->a.klds)) return LL_ERR_NOMEM;
    if (p->interrupt) {
        ll_context_set_interrupt(r->cm, p->interrupt);
        if (r->cb) ll_context_set_interrupt(r->cb, p->interrupt);
    }
    return LL_OK;
}

static void run_free(run *r) {
    ll_context_free(r->cm);
    ll_context_free(r->cb);
    free(r->buf);
    free(r->a.klds);
}

ll_status ll_ppl_run(ll_model *m, ll_model *base, const int32_t *ids, int n_ids, const ll_ppl_params *p,
                     ll_ppl_result *res, ll_error *err) {
    *res = (ll_ppl_result){.n_ids = n_ids, .n_ctx = p->n_ctx};
    ll_status s = check_args(m, base, n_ids, p, err);
    if (s != LL_OK) return s;
    int n_chunk = n_ids / p->n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n_chunk) n_chunk = p->max_chunks;
    res->n_chunk = n_chunk;
    run r;
    double t0 = ll_time_s();
    s = run_init(&r, m, base, ids, n_chunk, p, err);
    for (int c = 0; c < n_chunk && s == LL_OK; c++) {
        if (p->interrupt && *p->interrupt) {
            s = LL_ERR_INTERRUPTED;
            break;
        }
        s = eval_chunk(&r, ids + (size_t)c * (size_t)p->n_ctx, err);
        if (s != LL_OK) break;
        res->n_done = c + 1;
        if (p->on_chunk) p->on_chunk(p->ud, c + 1, n_chunk, exp(r.a.nll / (double)r.a.n), ll_time_s() - t0);
    }
    if (s == LL_ERR_INTERRUPTED) // the result keeps the positions scored so far
        ll_err_set(err, s, "interrupted after %d of %d chunks", res->n_done, n_chunk);
    if (s == LL_OK || s == LL_ERR_INTERRUPTED) finish(&r.a, base != NULL, res);
    res->seconds = ll_time_s() - t0;
    run_free(&r);
    return s;
}
