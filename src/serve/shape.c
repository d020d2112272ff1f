// shape.c — OpenAI and Ollama response shapes (see shape.h), built with cJSON.
#include "serve/shape.h"

#include "llmlab.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void srv_shape_init(srv_shape *sh, srv_api api, const char *model, bool include_usage) {
    static unsigned long long counter;
    memset(sh, 0, sizeof *sh);
    sh->api = api;
    sh->model = model;
    sh->include_usage = include_usage;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sh->created = ts.tv_sec;
    unsigned long long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(sh->id, sizeof sh->id, "%s-%llx%09lx%llx", api == SRV_OPENAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)ts.tv_sec, (long)ts.tv_nsec, n);
}

static char *print(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

// "data: JSON\n\n" (OpenAI streams) or "JSON\n" (Ollama NDJSON), consuming o.
static char *event(const srv_shape *sh, cJSON *o) {
    char *j = print(o);
    if (!j) return NULL;
    size_t n = strlen(j) + 16;
    char *s = malloc(n);
    if (s) snprintf(s, n, srv_api_is_ollama(sh->api) ? "%s\n" : "data: %s\n\n", j);
    free(j);
    return s;
}

static cJSON *usage(const srv_job_stats *st) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", st->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", st->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", st->n_prompt + st->n_gen);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", st->n_cached);
    return u;
}

// OpenAI's envelope: id, object, created, model, one choice (returned for the caller to fill).
static cJSON *openai_obj(const srv_shape *sh, bool chunk, cJSON **choice) {
    cJSON *o = cJSON_CreateObject();
    bool chat = sh->api == SRV_OPENAI_CHAT;
    cJSON_AddStringToObject(o, "id", sh->id);
    cJSON_AddStringToObject(o, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)sh->created);
    cJSON_AddStringToObject(o, "model", sh->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "llmlab-" LLMLAB_VERSION);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    if (choice) {
        *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(*choice, "index", 0);
        cJSON_AddItemToArray(choices, *choice);
    }
    return o;
}

// Ollama's envelope: model, created_at (RFC 3339, nanoseconds, UTC), done, and message or response.
static cJSON *ollama_obj(const srv_shape *sh, const char *text, bool done) {
    cJSON *o = cJSON_CreateObject();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64], date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when, sizeof when, "%s.%09ldZ", date, (long)ts.tv_nsec);
    cJSON_AddStringToObject(o, "model", sh->model);
    cJSON_AddStringToObject(o, "created_at", when);
    if (sh->api == SRV_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text);
    } else cJSON_AddStringToObject(o, "response", text);
    cJSON_AddBoolToObject(o, "done", done);
    return o;
}

static void ollama_done(cJSON *o, const srv_job_stats *st) {
    cJSON_AddStringToObject(o, "done_reason", srv_finish_name(st->finish));
    cJSON_AddNumberToObject(o, "total_duration", (double)st->total_ns);
    cJSON_AddNumberToObject(o, "load_duration", 0); // the model is loaded before the server answers
    cJSON_AddNumberToObject(o, "prompt_eval_count", st->n_prompt);
    cJSON_AddNumberToObject(o, "prompt_eval_duration", (double)st->prompt_ns);
    cJSON_AddNumberToObject(o, "eval_count", st->n_gen);
    cJSON_AddNumberToObject(o, "eval_duration", (double)st->eval_ns);
}

char *srv_shape_full(const srv_shape *sh, const char *text, const srv_job_stats *st) {
    if (srv_api_is_ollama(sh->api)) {
        cJSON *o = ollama_obj(sh, text, true);
        ollama_done(o, st);
        return print(o);
    }
    cJSON *choice, *o = openai_obj(sh, false, &choice);
    if (sh->api == SRV_OPENAI_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text);
    } else cJSON_AddStringToObject(choice, "text", text);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", srv_finish_name(st->finish));
    cJSON_AddItemToObject(o, "usage", usage(st));
    return print(o);
}

char *srv_shape_delta(srv_shape *sh, const char *text) {
    if (srv_api_is_ollama(sh->api)) return event(sh, ollama_obj(sh, text, false));
    cJSON *choice, *o = openai_obj(sh, true, &choice);
    if (sh->api == SRV_OPENAI_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(choice, "delta");
        if (!sh->started) cJSON_AddStringToObject(d, "role", "assistant");
        cJSON_AddStringToObject(d, "content", text);
    } else cJSON_AddStringToObject(choice, "text", text);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddNullToObject(choice, "finish_reason");
    if (sh->include_usage) cJSON_AddNullToObject(o, "usage");
    sh->started = true;
    return event(sh, o);
}

static char *concat(char *a, char *b) {
    if (!a || !b) return free(a), free(b), NULL;
    size_t na = strlen(a), nb = strlen(b);
    char *s = realloc(a, na + nb + 1);
    if (s) memcpy(s + na, b, nb + 1);
    else free(a);
    free(b);
    return s;
}

char *srv_shape_end(srv_shape *sh, const srv_job_stats *st) {
    if (st->finish == SRV_FINISH_ERROR) {
        srv_error e;
        srv_error_set(&e, 500, "server_error", NULL, NULL, "%s", st->error);
        return srv_shape_stream_error(sh, &e);
    }
    if (srv_api_is_ollama(sh->api)) {
        cJSON *o = ollama_obj(sh, "", true);
        ollama_done(o, st);
        return event(sh, o);
    }
    cJSON *choice, *o = openai_obj(sh, true, &choice);
    if (sh->api == SRV_OPENAI_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(choice, "delta");
        if (!sh->started) cJSON_AddStringToObject(d, "role", "assistant");
    } else cJSON_AddStringToObject(choice, "text", "");
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", srv_finish_name(st->finish));
    if (sh->include_usage) cJSON_AddNullToObject(o, "usage");
    char *s = event(sh, o);
    if (sh->include_usage) { // OpenAI: one more chunk with no choices and the usage
        cJSON *u = openai_obj(sh, true, NULL);
        cJSON_AddItemToObject(u, "usage", usage(st));
        s = concat(s, event(sh, u));
    }
    return concat(s, strdup("data: [DONE]\n\n"));
}

char *srv_shape_stream_error(const srv_shape *sh, const srv_error *e) {
    char *j = srv_error_json(e, srv_api_is_ollama(sh->api));
    if (!j) return NULL;
    size_t n = strlen(j) + 32;
    char *s = malloc(n);
    if (s) snprintf(s, n, srv_api_is_ollama(sh->api) ? "%s\n" : "data: %s\n\ndata: [DONE]\n\n", j);
    free(j);
    return s;
}

char *srv_shape_models(const char *name, long long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "llmlab");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    return print(o);
}

char *srv_shape_tags(const char *name, long long size, const char *describe, long long mtime) {
    cJSON *o = cJSON_CreateObject(), *m = cJSON_CreateObject();
    char when[40];
    time_t t = (time_t)mtime;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "model", name);
    cJSON_AddStringToObject(m, "modified_at", when);
    cJSON_AddNumberToObject(m, "size", (double)size);
    cJSON *d = cJSON_AddObjectToObject(m, "details");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "description", describe ? describe : "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "models"), m);
    return print(o);
}
