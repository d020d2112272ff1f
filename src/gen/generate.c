// generate.c — the generation loop of llmlab.h: ll_gen (one sequence's detokenizer, stop strings, token
// count and finish reason) and ll_generate (prompt, then sample/stream/evaluate one token at a time).
#include "llmlab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "model/model.h"
#include "sampler/sampler.h"

const char *ll_finish_reason_name(ll_finish_reason r) {
    switch (r) {
    case LL_FINISH_NONE: return "none";
    case LL_FINISH_EOG: return "eog";
    case LL_FINISH_STOP: return "stop";
    case LL_FINISH_LENGTH: return "length";
    case LL_FINISH_CONTEXT: return "context";
    case LL_FINISH_INTERRUPTED: return "interrupted";
    }
    return "?";
}

ll_gen_params ll_gen_default_params(void) {
    return (ll_gen_params){.max_tokens = -1, .eog_ends = true};
}

struct ll_gen {
    const ll_model *m;
    ll_detok *dt;
    int max_tokens;
    bool eog_ends, strip;
    int n_stops;
    char *stops[LL_GEN_MAX_STOPS];
    size_t stop_len[LL_GEN_MAX_STOPS];
    char *pend; // decoded text not emitted yet: a tail that may begin a stop string (cap bytes, NUL-terminated)
    size_t n_pend, cap_pend;
    char *out; // what the last call hands out (cap_out bytes)
    size_t cap_out;
    int n_tokens;
    ll_finish_reason finish;
};

void ll_gen_free(ll_gen *g) {
    if (!g) return;
    ll_detok_free(g->dt);
    for (int i = 0; i < g->n_stops; i++) free(g->stops[i]);
    free(g->pend);
    free(g->out);
    free(g);
}

static bool gen_restart(ll_gen *g, ll_error *err) {
    ll_detok_free(g->dt);
    g->dt = ll_detok_init(g->m); // the detokenizer has no reset: a fresh one per sequence, not per token
    if (!g->dt) {
        ll_err_set(err, LL_ERR_NOMEM, "out of memory for the detokenizer");
        return false;
    }
    ll_detok_set_strip_leading_space(g->dt, g->strip);
    g->n_pend = 0;
    g->pend[0] = 0;
    g->out[0] = 0;
    g->n_tokens = 0;
    g->finish = LL_FINISH_NONE;
    return true;
}

ll_gen *ll_gen_init(const ll_model *m, const ll_gen_params *p, ll_error *err) {
    ll_gen_params d = ll_gen_default_params();
    if (!p) p = &d;
    if (p->n_stops < 0 || p->n_stops > LL_GEN_MAX_STOPS || (p->n_stops > 0 && !p->stops)) {
        ll_err_set(err, LL_ERR_ARG, "%d stop strings given: at most %d", p->n_stops, LL_GEN_MAX_STOPS);
        return NULL;
    }
    for (int i = 0; i < p->n_stops; i++) {
        size_t n = p->stops[i] ? strlen(p->stops[i]) : 0;
        if (n == 0 || n > LL_GEN_MAX_STOP_LEN) {
            ll_err_set(err, LL_ERR_ARG, "stop string %d is %s: give 1 to %d bytes", i + 1, n ? "too long" : "empty",
                       LL_GEN_MAX_STOP_LEN);
            return NULL;
        }
    }
    ll_gen *g = ll_calloc(1, sizeof *g, err);
    if (!g) return NULL;
    *g = (ll_gen){.m = m, .max_tokens = p->max_tokens < 0 ? -1 : p->max_tokens, .eog_ends = p->eog_ends,
                  .strip = p->strip_leading_space, .cap_pend = 2 * LL_GEN_MAX_STOP_LEN + 256};
    g->cap_out = g->cap_pend;
    g->pend = ll_malloc(g->cap_pend, err);
    g->out = g->pend ? ll_malloc(g->cap_out, err) : NULL;
    for (int i = 0; g->out && i < p->n_stops; i++) {
        g->stop_len[i] = strlen(p->stops[i]);
        if (!(g->stops[i] = ll_malloc(g->stop_len[i] + 1, err))) break;
        memcpy(g->stops[i], p->stops[i], g->stop_len[i] + 1);
        g->n_stops = i + 1;
    }
    if (!g->out || g->n_stops != p->n_stops || !gen_restart(g, err)) {
        ll_gen_free(g);
        return NULL;
    }
    return g;
}

ll_status ll_gen_reset(ll_gen *g, ll_error *err) {
    if (gen_restart(g, err)) return LL_OK;
    g->finish = LL_FINISH_INTERRUPTED; // no detokenizer: this sequence cannot go on
    return LL_ERR_NOMEM;
}

int ll_gen_n_tokens(const ll_gen *g) { return g->n_tokens; }
ll_finish_reason ll_gen_finish_reason(const ll_gen *g) { return g->finish; }

// Room for n more bytes (and a NUL) in *buf; grows rarely: a piece is at most a few hundred bytes.
static void reserve(char **buf, size_t *cap, size_t need) {
    if (need + 1 <= *cap) return;
    size_t nc = 2 * (need + 1);
    char *b = realloc(*buf, nc);
    LL_ASSERT(b != NULL);
    *buf = b;
    *cap = nc;
}

static void pend_add(ll_gen *g, const char *s) {
    size_t n = strlen(s);
    reserve(&g->pend, &g->cap_pend, g->n_pend + n);
    memcpy(g->pend + g->n_pend, s, n + 1);
    g->n_pend += n;
}

// Move the first n bytes of pend to out (NUL-terminated); the rest slides to the front.
static const char *emit(ll_gen *g, size_t n, size_t *len) {
    reserve(&g->out, &g->cap_out, n);
    memcpy(g->out, g->pend, n);
    g->out[n] = 0;
    memmove(g->pend, g->pend + n, g->n_pend - n + 1);
    g->n_pend -= n;
    *len = n;
    return g->out;
}

// Offset of the earliest stop string in pend, or SIZE_MAX. pend is short: a held tail plus one piece.
static size_t find_stop(const ll_gen *g) {
    size_t best = SIZE_MAX;
    for (int i = 0; i < g->n_stops; i++) {
        const char *hit = memmem(g->pend, g->n_pend, g->stops[i], g->stop_len[i]);
        if (hit && (size_t)(hit - g->pend) < best) best = (size_t)(hit - g->pend);
    }
    return best;
}

// Length of the longest tail of pend that is a proper prefix of a stop string, widened to start on a UTF-8
// character boundary so what is emitted before it is whole characters.
static size_t held_tail(const ll_gen *g) {
    size_t hold = 0;
    for (int i = 0; i < g->n_stops; i++) {
        size_t k = g->stop_len[i] - 1 < g->n_pend ? g->stop_len[i] - 1 : g->n_pend;
        for (; k > hold; k--)
            if (!memcmp(g->pend + g->n_pend - k, g->stops[i], k)) break;
        if (k > hold) hold = k;
    }
    while (hold > 0 && hold < g->n_pend && ((unsigned char)g->pend[g->n_pend - hold] & 0xC0) == 0x80) hold++;
    return hold;
}

// The end: everything still pending (nothing in it is a stop match) plus the detokenizer's incomplete tail.
static const char *end_with(ll_gen *g, ll_finish_reason r, size_t *len) {
    pend_add(g, ll_detok_flush(g->dt));
    g->finish = r;
    return emit(g, g->n_pend, len);
}

ll_finish_reason ll_gen_push(ll_gen *g, int32_t id, const char **text, size_t *len) {
    *len = 0;
    *text = "";
    if (g->finish != LL_FINISH_NONE) return g->finish;
    g->n_tokens++;
    if (g->eog_ends && ll_model_is_eog(g->m, id)) {
        *text = end_with(g, LL_FINISH_EOG, len);
        return g->finish;
    }
    pend_add(g, ll_detok_push(g->dt, id));
    size_t at = find_stop(g);
    if (at != SIZE_MAX) {
        g->n_pend = at; // the stop string and whatever followed it in this piece are dropped
        g->pend[at] = 0;
        ll_detok_flush(g->dt); // an incomplete character after the match: dropped with it
        g->finish = LL_FINISH_STOP;
        *text = emit(g, at, len);
        return g->finish;
    }
    if (g->max_tokens >= 0 && g->n_tokens >= g->max_tokens) {
        *text = end_with(g, LL_FINISH_LENGTH, len);
        return g->finish;
    }
    *text = emit(g, g->n_pend - held_tail(g), len);
    return LL_FINISH_NONE;
}

ll_finish_reason ll_gen_finish(ll_gen *g, ll_finish_reason reason, const char **text, size_t *len) {
    *len = 0;
    *text = "";
    if (g->finish != LL_FINISH_NONE) return g->finish;
    *text = end_with(g, reason == LL_FINISH_NONE ? LL_FINISH_INTERRUPTED : reason, len);
    return g->finish;
}

// ---- the loop for one sequence --------------------------------------------------------------------------

static bool interrupted(const ll_context *c) { return c->interrupt && *c->interrupt; }

// Hand text to the callback; false when it asks to stop.
static bool deliver(ll_gen_callback cb, void *user, const char *text, size_t len) {
    return len == 0 || !cb || cb(text, len, user);
}

// A NaN or infinite logit (NaN or overflowing weights) would sample an arbitrary token: refuse it by name. Only where
// the sampler reads the whole host row anyway (the CPU backend; a device that does not select candidates, or a
// sampler that wants the whole row): one extra pass over n_vocab floats; a device's candidates are not looked at.
static ll_status check_logits(ll_context *c, const ll_sampler *s, ll_error *err) {
    if (c->be->ops->topk && c->device_sample && !c->logits_host && ll_sampler_top_wanted(s) > 0) return LL_OK;
    const float *row = ll_logits(c, -1);
    int nv = c->m->hp.n_vocab;
    for (int i = 0; i < nv; i++)
        if (!isfinite(row[i]))
            return ll_err_set(err, LL_ERR_FORMAT,
                              "%s: non-finite logits (token %d's logit is %g after %d positions): the model's "
                              "weights hold NaN or infinite values, or overflow; the file is corrupt",
                              c->m->gguf->path, i, row[i], ll_context_n_past(c));
    return LL_OK;
}

// Sample, stream and evaluate until g finishes; returns the status of the last ll_eval.
static ll_status decode_loop(ll_context *c, ll_sampler *s, ll_gen *g, ll_gen_callback cb, void *user,
                             ll_error *err) {
    const char *text;
    size_t len;
    for (;;) {
        if (interrupted(c)) {
            ll_gen_finish(g, LL_FINISH_INTERRUPTED, &text, &len);
            deliver(cb, user, text, len);
            return LL_OK;
        }
        ll_status cs = check_logits(c, s, err);
        if (cs != LL_OK) {
            ll_gen_finish(g, LL_FINISH_INTERRUPTED, &text, &len);
            deliver(cb, user, text, len);
            return cs;
        }
        int32_t id = ll_sample(c, s);
        ll_sampler_accept(s, id);
        ll_finish_reason r = ll_gen_push(g, id, &text, &len);
        bool go_on = deliver(cb, user, text, len);
        if (r != LL_FINISH_NONE) return LL_OK;
        // the context holds every token evaluated; the one just sampled would be the (n_ctx+1)-th
        if (!go_on || ll_context_n_past(c) >= ll_context_n_ctx(c)) {
            ll_gen_finish(g, go_on ? LL_FINISH_CONTEXT : LL_FINISH_INTERRUPTED, &text, &len);
            deliver(cb, user, text, len);
            return LL_OK;
        }
        ll_status st = ll_eval(c, &id, 1, false, err);
        if (st != LL_OK) {
            ll_gen_finish(g, LL_FINISH_INTERRUPTED, &text, &len);
            deliver(cb, user, text, len);
            return st == LL_ERR_INTERRUPTED ? LL_OK : st;
        }
    }
}

ll_status ll_generate(ll_context *c, ll_sampler *s, const int32_t *prompt, int n_prompt, const ll_gen_params *p,
                      ll_gen_callback cb, void *user, ll_gen_result *res, ll_error *err) {
    *res = (ll_gen_result){.n_prompt = n_prompt > 0 ? n_prompt : 0, .finish = LL_FINISH_NONE};
    if (n_prompt < 1 || !prompt)
        return ll_err_set(err, LL_ERR_ARG, "an empty prompt: give at least one token (e.g. BOS) to sample after");
    ll_gen *g = ll_gen_init(c->m, p, err);
    if (!g) return err ? err->status : LL_ERR_ARG;
    int past0 = ll_context_n_past(c);
    double t0 = ll_time_s();
    ll_status st = interrupted(c) ? LL_ERR_INTERRUPTED : ll_eval(c, prompt, n_prompt, false, err);
    res->prompt_s = ll_time_s() - t0;
    res->n_prompt_eval = ll_context_n_past(c) - past0; // whole n_batch chunks done before an interruption
    if (st == LL_OK) {
        for (int i = 0; i < n_prompt; i++) ll_sampler_accept(s, prompt[i]);
        if (p && p->max_tokens == 0) {
            res->finish = LL_FINISH_LENGTH;
        } else {
            double t1 = ll_time_s();
            st = decode_loop(c, s, g, cb, user, err);
            res->gen_s = ll_time_s() - t1;
            res->n_gen = ll_gen_n_tokens(g);
            res->finish = ll_gen_finish_reason(g);
        }
    } else if (st == LL_ERR_INTERRUPTED) {
        res->finish = LL_FINISH_INTERRUPTED;
        st = LL_OK;
    }
    ll_gen_free(g);
    return st;
}
