// sched.h — `llmlab serve`'s engine side: one scheduler thread owns the model and ONE context of n_seq = parallel
// sequences (slots). HTTP threads turn a validated request into a job (chat template, tokens), submit it, and read
// its text as it is generated from the job's queue (mutex + condvar). Continuous batching: every step is one
// ll_decode holding every running slot's next token and chunks of new prompts; a prompt prefix already cached in
// some slot is copied (ll_seq_copy_prefix) instead of evaluated again.
#ifndef LL_SERVE_SCHED_H
#define LL_SERVE_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "serve/request.h"

typedef struct srv_sched srv_sched;
typedef struct srv_job srv_job;

typedef struct srv_sched_params {
    const char *model_path;
    const char *device; // NULL = auto
    int n_ctx;          // positions per slot; 0 = the model's training context, capped at 4096
    int n_parallel;     // slots (sequences of the one context)
    int n_threads;      // 0 = physical cores
    int n_batch;        // tokens per step, 0 = 512
    int queue_max;      // jobs waiting for a slot beyond which submit refuses (503)
} srv_sched_params;

typedef enum srv_finish { SRV_FINISH_NONE, SRV_FINISH_STOP, SRV_FINISH_LENGTH, SRV_FINISH_ERROR } srv_finish;
static inline const char *srv_finish_name(srv_finish f) {
    return f == SRV_FINISH_STOP ? "stop" : f == SRV_FINISH_LENGTH ? "length" : f == SRV_FINISH_ERROR ? "error" : "";
}

// A job's figures, for usage and Ollama's durations (nanoseconds).
typedef struct srv_job_stats {
    int n_prompt, n_cached, n_gen; // prompt tokens, of which reused from the cache, generated tokens
    srv_finish finish;
    int64_t total_ns, queue_ns, prompt_ns, eval_ns;
    char error[256]; // finish == SRV_FINISH_ERROR: why
} srv_job_stats;

// Starts the scheduler thread, which loads the model (srv_sched_state says "loading" meanwhile). NULL when the
// thread cannot start.
srv_sched *srv_sched_start(const srv_sched_params *p);
// Stops the thread: running and queued jobs finish with an error, submit refuses from now on. Jobs stay valid.
void srv_sched_stop(srv_sched *s);
// Frees everything (after srv_sched_stop, once no HTTP thread holds a job).
void srv_sched_free(srv_sched *s);
typedef enum srv_state { SRV_LOADING, SRV_READY, SRV_FAILED } srv_state;
srv_state srv_sched_state(srv_sched *s, char *why, size_t cap); // why: the load error when FAILED
int srv_sched_n_ctx(srv_sched *s);   // after READY
const char *srv_sched_describe(srv_sched *s); // the model's one-line description, after READY
// Prometheus text of the counters (appended to buf, NUL-terminated; returns bytes written).
int srv_sched_metrics(srv_sched *s, char *buf, int cap);

// Render r (chat template or prompt) and tokenize it into a job. false + e (400: the prompt does not fit the
// context; 503: not ready) when it cannot run.
bool srv_job_new(srv_sched *s, const srv_request *r, srv_job **out, srv_error *e);
// Queue j for a slot. false + e (503, Retry-After) when the queue is full; j is still the caller's then.
bool srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e);
// Wait up to timeout_ms for text: *text gets what arrived since the last call (malloc'd, may be "", caller
// frees). Returns true once the job is finished and all its text has been taken (st then holds the figures).
bool srv_job_take(srv_job *j, int timeout_ms, char **text, srv_job_stats *st);
// The client went away: the scheduler frees its slot at the next step.
void srv_job_cancel(srv_job *j);
// The HTTP side is done with j (cancels it if still running).
void srv_job_release(srv_job *j);

#endif
