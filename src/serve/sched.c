// sched.c — the scheduler thread of `llmlab serve` (see sched.h). It alone touches the context. Each step:
//   1. queued jobs take free slots; each starts from the longest cached prefix it shares with any slot (its own
//      slot's cache is kept when the new prompt extends it, else ll_seq_copy_prefix from the best one);
//   2. one ll_batch: every decoding slot's next token, then chunks of prefilling prompts up to n_batch tokens;
//   3. one ll_decode; every slot whose last token kept logits samples (its own sampler), and its ll_gen turns
//      the id into text (stop strings held back, never emitted) and says when it is finished.
// A cancelled job (client gone) leaves its slot before the next batch is built.
#include "serve/sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/chat.h"
#include "core/core.h"
#include "llmlab.h"

struct srv_job {
    srv_sched *s;
    int32_t *ids; // the prompt's tokens
    int n_ids;
    ll_sampler_params sp;
    ll_gen *gen;
    bool cache_prompt;
    pthread_mutex_t mu; // guards what follows
    pthread_cond_t cv;
    char *text; // generated, not yet taken
    size_t len, cap;
    bool finished;
    srv_job_stats st;
    int refs;
    atomic_int cancelled;
    double t_submit, t_start, t_first;
    srv_job *next; // queue link (the scheduler's lock)
};

typedef struct slot {
    int seq;
    srv_job *job;   // NULL: free
    int32_t *cache; // the tokens in seq's KV cache (n_ctx)
    int n_cache;
    int n_done;     // tokens of job->ids in the cache
    ll_sampler *smp;
    int32_t next;   // sampled, to be evaluated next (decoding)
    bool decoding;
    int bi;         // index of the token with logits in this step's batch, -1 none
    double last_used;
} slot;

struct srv_sched {
    srv_sched_params p;
    char *model_path, *device;
    pthread_t th;
    bool started;
    pthread_mutex_t mu; // guards state, queue, stopping and the counters
    pthread_cond_t cv;
    srv_state state;
    char why[512];
    bool stopping;
    volatile int interrupt;
    srv_job *q_head, *q_tail;
    int q_len;
    // engine (the scheduler thread only, after READY read-only for the rest)
    ll_model *m;
    ll_context *c;
    int n_ctx, n_vocab, n_batch;
    ll_chat_kind chat;
    char bos[64], eos[64], describe[256];
    slot *slots;
    ll_batch batch;
    // counters
    long long n_jobs, n_rejected, n_prompt, n_cached, n_gen, n_steps;
    double decode_s;
    int busy, kv_used;
};

static double now_s(void) { return ll_time_s(); }

// ---- jobs (both sides) -------------------------------------------------------------------------------------
static void job_unref(srv_job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    ll_gen_free(j->gen);
    free(j->ids);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_emit(srv_job *j, const char *text, size_t n) {
    if (!n) return;
    pthread_mutex_lock(&j->mu);
    if (j->len + n + 1 > j->cap) {
        size_t cap = (j->len + n + 1) * 2;
        char *nb = realloc(j->text, cap);
        LL_ASSERT(nb != NULL);
        j->text = nb, j->cap = cap;
    }
    memcpy(j->text + j->len, text, n);
    j->len += n;
    j->text[j->len] = 0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_finish(srv_job *j, srv_finish f, const char *error) {
    double t = now_s();
    pthread_mutex_lock(&j->mu);
    j->st.finish = f;
    if (error) snprintf(j->st.error, sizeof j->st.error, "%s", error);
    double t_start = j->t_start ? j->t_start : t, t_first = j->t_first ? j->t_first : t;
    j->st.total_ns = (int64_t)((t - j->t_submit) * 1e9);
    j->st.queue_ns = (int64_t)((t_start - j->t_submit) * 1e9);
    j->st.prompt_ns = (int64_t)((t_first - t_start) * 1e9);
    j->st.eval_ns = (int64_t)((t - t_first) * 1e9);
    j->finished = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

bool srv_job_take(srv_job *j, int timeout_ms, char **text, srv_job_stats *st) {
    pthread_mutex_lock(&j->mu);
    if (!j->len && !j->finished) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)timeout_ms % 1000 * 1000000L;
        ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    *text = j->len ? j->text : strdup("");
    if (j->len) j->text = NULL, j->len = j->cap = 0;
    bool fin = j->finished;
    if (fin && st) *st = j->st;
    pthread_mutex_unlock(&j->mu);
    return fin;
}

void srv_job_cancel(srv_job *j) {
    atomic_store(&j->cancelled, 1);
    pthread_mutex_lock(&j->s->mu);
    pthread_cond_signal(&j->s->cv);
    pthread_mutex_unlock(&j->s->mu);
}

void srv_job_release(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    bool fin = j->finished;
    pthread_mutex_unlock(&j->mu);
    if (!fin) srv_job_cancel(j);
    job_unref(j);
}

// The prompt text of r: the chat template for chats (and Ollama generate unless raw), else the prompt as is.
static char *render(srv_sched *s, const srv_request *r, bool *templated) {
    *templated = srv_api_is_chat(r->api) || (r->api == SRV_OLLAMA_GENERATE && !r->raw);
    if (!*templated) return strdup(r->prompt ? r->prompt : "");
    int n = srv_api_is_chat(r->api) ? r->n_msgs : 2;
    ll_chat_msg *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) return NULL;
    if (srv_api_is_chat(r->api)) {
        for (int i = 0; i < n; i++) msgs[i] = (ll_chat_msg){r->msgs[i].role, r->msgs[i].content};
    } else {
        n = 0;
        if (r->system) msgs[n++] = (ll_chat_msg){"system", r->system};
        msgs[n++] = (ll_chat_msg){"user", r->prompt ? r->prompt : ""};
    }
    char *text = ll_chat_render(s->chat, msgs, n, true, s->bos, s->eos);
    free(msgs);
    return text;
}

static bool tokenize(srv_sched *s, const char *text, bool templated, srv_job *j, srv_error *e) {
    size_t len = strlen(text);
    int cap = (int)len + 8; // a token holds at least one byte; + BOS/EOS
    j->ids = malloc((size_t)cap * sizeof *j->ids);
    if (!j->ids) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory"), false;
    // Templates spell their control tokens (parse them); a raw completion prompt is text only.
    int n = ll_tokenize(s->m, text, len, true, templated, j->ids, cap);
    if (n < 0) return srv_error_set(e, 500, "server_error", NULL, NULL, "the prompt could not be tokenized"), false;
    int32_t bos = ll_model_bos(s->m);
    if (n >= 2 && j->ids[0] == bos && j->ids[1] == bos) memmove(j->ids, j->ids + 1, (size_t)--n * sizeof *j->ids);
    if (n == 0 && bos >= 0) j->ids[n++] = bos;
    if (n == 0) return srv_error_set(e, 400, "invalid_request_error", NULL, "prompt", "the prompt is empty"), false;
    if (n >= s->n_ctx)
        return srv_error_set(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                             "the prompt is %d tokens; this server's context holds %d per request (start it with a "
                             "larger -c)", n, s->n_ctx), false;
    j->n_ids = n;
    return true;
}

static void sampler_params(srv_sched *s, const srv_request *r, ll_sampler_params *sp) {
    static atomic_ullong seeds = 0x9E3779B97F4A7C15ull;
    *sp = ll_sampler_default_params();
    sp->temp = (float)r->temperature;
    sp->top_p = (float)r->top_p;
    sp->top_k = r->top_k;
    sp->min_p = (float)r->min_p;
    sp->repeat_penalty = (float)r->repeat_penalty;
    sp->repeat_last_n = r->repeat_last_n < 0 ? s->n_ctx : r->repeat_last_n;
    sp->seed = r->has_seed ? r->seed : atomic_fetch_add(&seeds, 0x9E3779B97F4A7C15ull) ^ (uint64_t)time(NULL);
}

bool srv_job_new(srv_sched *s, const srv_request *r, srv_job **out, srv_error *e) {
    *out = NULL;
    if (srv_sched_state(s, NULL, 0) != SRV_READY)
        return srv_error_set(e, 503, "server_error", "model_loading", NULL, "the model is not loaded yet"), false;
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory"), false;
    j->s = s;
    j->refs = 1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    bool templated;
    char *text = render(s, r, &templated);
    bool ok = text && tokenize(s, text, templated, j, e);
    if (!text) srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    free(text);
    if (ok) { // stop strings: the request's, then the template's end-of-turn texts
        const char *stops[LL_GEN_MAX_STOPS];
        int n = 0;
        for (int i = 0; i < r->n_stops && n < LL_GEN_MAX_STOPS; i++) stops[n++] = r->stops[i];
        for (const char *const *t = templated ? ll_chat_stops(s->chat) : NULL; t && *t && n < LL_GEN_MAX_STOPS; t++)
            stops[n++] = *t;
        ll_gen_params gp = ll_gen_default_params();
        gp.max_tokens = r->max_tokens;
        gp.stops = stops;
        gp.n_stops = n;
        ll_error err = {0};
        if (!(j->gen = ll_gen_init(s->m, &gp, &err))) {
            srv_error_set(e, 400, "invalid_request_error", NULL, "stop", "%s", err.message);
            ok = false;
        }
        sampler_params(s, r, &j->sp);
        j->cache_prompt = r->cache_prompt;
    }
    if (!ok) return job_unref(j), false;
    j->st.n_prompt = j->n_ids;
    *out = j;
    return true;
}

bool srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e) {
    pthread_mutex_lock(&s->mu);
    // queue_max counts the jobs waiting beyond those the slots hold
    bool ok = !s->stopping && s->q_len + s->busy < s->p.n_parallel + s->p.queue_max;
    if (ok) {
        j->refs++; // the scheduler's reference (j->mu not needed: nobody else has j yet)
        j->t_submit = now_s();
        j->next = NULL;
        if (s->q_tail) s->q_tail->next = j;
        else s->q_head = j;
        s->q_tail = j;
        s->q_len++;
        pthread_cond_signal(&s->cv);
    } else {
        s->n_rejected++;
        srv_error_set(e, 503, "server_error", "server_busy", NULL,
                      "all %d slots are busy and %d requests are waiting (--queue %d): retry later", s->p.n_parallel,
                      s->q_len, s->p.queue_max);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

// ---- the scheduler thread ------------------------------------------------------------------------------------
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int n = 0;
    while (n < na && n < nb && a[n] == b[n]) n++;
    return n;
}

static void slot_release(srv_sched *s, slot *sl, srv_finish f, const char *error) {
    srv_job *j = sl->job;
    int n_gen = ll_gen_n_tokens(j->gen);
    pthread_mutex_lock(&j->mu);
    j->st.n_gen = n_gen;
    pthread_mutex_unlock(&j->mu);
    job_finish(j, f, error);
    pthread_mutex_lock(&s->mu);
    s->n_jobs++;
    s->n_gen += n_gen;
    s->busy--;
    pthread_mutex_unlock(&s->mu);
    ll_sampler_free(sl->smp);
    sl->smp = NULL;
    sl->job = NULL;
    sl->decoding = false;
    sl->last_used = now_s();
    job_unref(j);
}

// Put j in a free slot, starting from the longest prefix of its prompt cached anywhere.
static void slot_assign(srv_sched *s, srv_job *j) {
    int n = s->p.n_parallel, best_free = -1, best_free_lcp = -1, src = -1, src_lcp = 0;
    for (int i = 0; i < n; i++) {
        slot *sl = &s->slots[i];
        // keep >= 1 token to evaluate; cache_prompt false: evaluate it all
        int lcp = j->cache_prompt ? common_prefix(sl->cache, sl->n_cache, j->ids, j->n_ids - 1) : 0;
        if (!sl->job && (lcp > best_free_lcp || (lcp == best_free_lcp && sl->last_used < s->slots[best_free].last_used)))
            best_free = i, best_free_lcp = lcp;
        if (lcp > src_lcp) src = i, src_lcp = lcp;
    }
    LL_ASSERT(best_free >= 0);
    slot *sl = &s->slots[best_free];
    ll_error err = {0};
    int keep = best_free_lcp;
    if (src >= 0 && src != best_free && src_lcp > best_free_lcp &&
        ll_seq_copy_prefix(s->c, src, best_free, src_lcp, &err) == LL_OK) {
        memcpy(sl->cache, s->slots[src].cache, (size_t)src_lcp * sizeof *sl->cache);
        keep = src_lcp;
    } else if (ll_seq_truncate(s->c, best_free, keep, &err) != LL_OK) {
        keep = 0;
        ll_seq_truncate(s->c, best_free, 0, &err);
    }
    sl->n_cache = keep;
    sl->n_done = keep;
    sl->job = j;
    sl->decoding = false;
    sl->smp = ll_sampler_init(&j->sp, s->n_vocab);
    for (int i = 0; i < j->n_ids; i++) ll_sampler_accept(sl->smp, j->ids[i]);
    j->t_start = now_s();
    j->st.n_cached = keep;
    pthread_mutex_lock(&s->mu);
    s->n_prompt += j->n_ids;
    s->n_cached += keep;
    pthread_mutex_unlock(&s->mu);
}

// Wait for work; move queued jobs into free slots. false when stopping.
static bool take_jobs(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        bool running = s->busy > 0;
        if (s->stopping) break;
        if (running || s->q_head) break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    bool stopping = s->stopping;
    srv_job *take[64];
    int nt = 0, free_slots = s->p.n_parallel - s->busy;
    while (!stopping && s->q_head && nt < free_slots && nt < 64) {
        srv_job *j = s->q_head;
        s->q_head = j->next;
        if (!s->q_head) s->q_tail = NULL;
        s->q_len--;
        s->busy++; // counted busy from here, so that submit never sees it in neither place
        take[nt++] = j;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < nt; i++) {
        if (atomic_load(&take[i]->cancelled)) { // gone while queued
            take[i]->t_start = now_s();
            job_finish(take[i], SRV_FINISH_STOP, NULL);
            job_unref(take[i]);
            pthread_mutex_lock(&s->mu);
            s->busy--;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        slot_assign(s, take[i]);
    }
    return !stopping;
}

// Build this step's batch: every decoding slot's next token first, then prompt chunks while the batch holds fewer
// than n_batch tokens (the batch has room for n_batch + n_parallel). Returns the token count.
static int build_batch(srv_sched *s) {
    ll_batch *b = &s->batch;
    ll_batch_clear(b);
    for (int i = 0; i < s->p.n_parallel; i++) {
        slot *sl = &s->slots[i];
        sl->bi = -1;
        if (sl->job && atomic_load(&sl->job->cancelled)) slot_release(s, sl, SRV_FINISH_STOP, NULL);
        if (!sl->job || !sl->decoding) continue;
        sl->bi = b->n_tokens;
        LL_ASSERT(ll_batch_add(b, sl->next, sl->n_cache, sl->seq, true));
    }
    for (int i = 0; i < s->p.n_parallel && b->n_tokens < s->n_batch; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->decoding) continue;
        srv_job *j = sl->job;
        while (sl->n_done < j->n_ids && b->n_tokens < s->n_batch) {
            bool last = sl->n_done == j->n_ids - 1;
            if (last) sl->bi = b->n_tokens;
            LL_ASSERT(ll_batch_add(b, j->ids[sl->n_done], sl->n_done, sl->seq, last));
            sl->n_done++;
        }
    }
    return b->n_tokens;
}

// After ll_decode: the cache bookkeeping, then sampling for every slot with logits.
static void after_decode(srv_sched *s) {
    const ll_batch *b = &s->batch;
    for (int k = 0; k < b->n_tokens; k++) {
        slot *sl = &s->slots[b->seq[k]];
        sl->cache[sl->n_cache++] = b->token[k];
    }
    for (int i = 0; i < s->p.n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->bi < 0) continue;
        srv_job *j = sl->job;
        int32_t id = ll_sample_ith(s->c, sl->smp, sl->bi);
        ll_sampler_accept(sl->smp, id);
        if (!j->t_first) j->t_first = now_s();
        const char *text;
        size_t len;
        ll_finish_reason r = ll_gen_push(j->gen, id, &text, &len);
        job_emit(j, text, len);
        if (r == LL_FINISH_NONE && sl->n_cache >= s->n_ctx) { // no room for the next token
            r = ll_gen_finish(j->gen, LL_FINISH_CONTEXT, &text, &len);
            job_emit(j, text, len);
        }
        if (r != LL_FINISH_NONE)
            slot_release(s, sl, r == LL_FINISH_LENGTH || r == LL_FINISH_CONTEXT ? SRV_FINISH_LENGTH : SRV_FINISH_STOP, NULL);
        else sl->next = id, sl->decoding = true;
    }
}

// A failed step: every job in it ends with the error and its sequence is emptied.
static void step_failed(srv_sched *s, const ll_error *err) {
    char msg[300];
    if (s->interrupt) snprintf(msg, sizeof msg, "the server is shutting down"); // srv_sched_stop stopped the step
    else {
        snprintf(msg, sizeof msg, "the engine failed: %s", err->message);
        fprintf(stderr, "llmlab serve: %s\n", msg);
    }
    for (int i = 0; i < s->p.n_parallel; i++) {
        slot *sl = &s->slots[i];
        ll_error e2;
        if (!sl->job) continue;
        slot_release(s, sl, SRV_FINISH_ERROR, msg);
        ll_seq_truncate(s->c, sl->seq, 0, &e2);
        sl->n_cache = 0;
    }
}

static bool load(srv_sched *s) {
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = s->p.n_threads;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = s->p.n_ctx;
    cp.n_seq = s->p.n_parallel;
    cp.n_threads = s->p.n_threads;
    cp.device = s->device;
    if (s->p.n_batch) cp.n_batch = s->p.n_batch;
    s->n_batch = cp.n_batch > 0 ? cp.n_batch : 512;
    if (ll_model_load(s->model_path, &mp, &s->m, &err) != LL_OK || ll_context_init(s->m, &cp, &s->c, &err) != LL_OK ||
        ll_batch_init(&s->batch, s->n_batch + s->p.n_parallel, &err) != LL_OK) {
        pthread_mutex_lock(&s->mu);
        snprintf(s->why, sizeof s->why, "%s", err.message);
        s->state = SRV_FAILED;
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    ll_context_set_interrupt(s->c, &s->interrupt);
    s->n_ctx = ll_context_n_ctx(s->c);
    s->n_vocab = ll_model_n_vocab(s->m);
    s->chat = ll_chat_detect(ll_model_chat_template(s->m));
    ll_token_to_piece(s->m, ll_model_bos(s->m), true, s->bos, sizeof s->bos - 1);
    ll_token_to_piece(s->m, ll_model_eos(s->m), true, s->eos, sizeof s->eos - 1);
    ll_model_describe(s->m, s->describe, sizeof s->describe);
    s->slots = calloc((size_t)s->p.n_parallel, sizeof *s->slots);
    LL_ASSERT(s->slots != NULL);
    for (int i = 0; i < s->p.n_parallel; i++) {
        s->slots[i].seq = i;
        s->slots[i].cache = calloc((size_t)s->n_ctx, sizeof(int32_t));
        LL_ASSERT(s->slots[i].cache != NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->state = SRV_READY;
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *sched_main(void *arg) {
    srv_sched *s = arg;
    if (!load(s)) return NULL;
    while (take_jobs(s)) {
        int n = build_batch(s);
        if (!n) continue;
        double t0 = now_s();
        ll_error err = {0};
        if (ll_decode(s->c, &s->batch, &err) != LL_OK) {
            step_failed(s, &err);
            continue;
        }
        after_decode(s);
        int used = 0;
        for (int i = 0; i < s->p.n_parallel; i++) used += s->slots[i].n_cache;
        pthread_mutex_lock(&s->mu);
        s->decode_s += now_s() - t0;
        s->n_steps++;
        s->kv_used = used;
        pthread_mutex_unlock(&s->mu);
    }
    for (int i = 0; i < s->p.n_parallel; i++)
        if (s->slots[i].job) slot_release(s, &s->slots[i], SRV_FINISH_ERROR, "the server is shutting down");
    return NULL;
}

srv_sched *srv_sched_start(const srv_sched_params *p) {
    srv_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    if (s->p.n_parallel < 1) s->p.n_parallel = 1;
    if (s->p.queue_max < 0) s->p.queue_max = 0;
    s->model_path = strdup(p->model_path);
    s->device = p->device ? strdup(p->device) : NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->state = SRV_LOADING;
    if (!s->model_path || pthread_create(&s->th, NULL, sched_main, s)) {
        free(s->model_path), free(s->device), free(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void srv_sched_stop(srv_sched *s) {
    if (!s || !s->started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->interrupt = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    s->started = false;
    pthread_mutex_lock(&s->mu);
    srv_job *q = s->q_head;
    s->q_head = s->q_tail = NULL;
    s->q_len = 0;
    pthread_mutex_unlock(&s->mu);
    for (srv_job *j = q, *nx; j; j = nx) {
        nx = j->next;
        job_finish(j, SRV_FINISH_ERROR, "the server is shutting down");
        job_unref(j);
    }
}

void srv_sched_free(srv_sched *s) {
    if (!s) return;
    srv_sched_stop(s);
    if (s->slots)
        for (int i = 0; i < s->p.n_parallel; i++) free(s->slots[i].cache);
    free(s->slots);
    ll_batch_free(&s->batch);
    ll_context_free(s->c);
    ll_model_free(s->m);
    free(s->model_path), free(s->device);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

srv_state srv_sched_state(srv_sched *s, char *why, size_t cap) {
    pthread_mutex_lock(&s->mu);
    srv_state st = s->state;
    if (why && cap) snprintf(why, cap, "%s", s->why);
    pthread_mutex_unlock(&s->mu);
    return st;
}

int srv_sched_n_ctx(srv_sched *s) { return s->n_ctx; }
const char *srv_sched_describe(srv_sched *s) { return s->describe; }

int srv_sched_metrics(srv_sched *s, char *buf, int cap) {
    pthread_mutex_lock(&s->mu);
    int n = snprintf(buf, (size_t)cap,
        "# TYPE llmlab_requests_total counter\nllmlab_requests_total %lld\n"
        "# TYPE llmlab_requests_rejected_total counter\nllmlab_requests_rejected_total %lld\n"
        "# TYPE llmlab_prompt_tokens_total counter\nllmlab_prompt_tokens_total %lld\n"
        "# TYPE llmlab_prompt_tokens_cached_total counter\nllmlab_prompt_tokens_cached_total %lld\n"
        "# TYPE llmlab_tokens_generated_total counter\nllmlab_tokens_generated_total %lld\n"
        "# TYPE llmlab_decode_steps_total counter\nllmlab_decode_steps_total %lld\n"
        "# TYPE llmlab_decode_seconds_total counter\nllmlab_decode_seconds_total %.6f\n"
        "# HELP llmlab_tokens_per_second Generated tokens per second of decode time, since start.\n"
        "# TYPE llmlab_tokens_per_second gauge\nllmlab_tokens_per_second %.3f\n"
        "# TYPE llmlab_queue_length gauge\nllmlab_queue_length %d\n"
        "# TYPE llmlab_slots_busy gauge\nllmlab_slots_busy %d\n"
        "# TYPE llmlab_slots_total gauge\nllmlab_slots_total %d\n"
        "# HELP llmlab_kv_cells_used KV cache positions in use, all slots.\n"
        "# TYPE llmlab_kv_cells_used gauge\nllmlab_kv_cells_used %d\n"
        "# TYPE llmlab_kv_cells_total gauge\nllmlab_kv_cells_total %lld\n",
        s->n_jobs, s->n_rejected, s->n_prompt, s->n_cached, s->n_gen, s->n_steps, s->decode_s,
        s->decode_s > 0 ? (double)s->n_gen / s->decode_s : 0.0, s->q_len, s->busy, s->p.n_parallel, s->kv_used,
        (long long)s->n_ctx * s->p.n_parallel);
    pthread_mutex_unlock(&s->mu);
    return n < cap ? n : cap - 1;
}
