// shape.h — the JSON shapes `llmlab serve` answers in: OpenAI's chat.completion / text_completion (whole, or as
// SSE "data: {...}\n\n" chunks ending in "data: [DONE]"), Ollama's /api/chat and /api/generate (whole, or NDJSON
// lines ending in done:true with durations in nanoseconds), and the listings (/v1/models, /api/tags).
// Every function returns malloc'd text (NULL only when out of memory).
#ifndef LL_SERVE_SHAPE_H
#define LL_SERVE_SHAPE_H

#include <stdbool.h>

#include "serve/request.h"
#include "serve/sched.h"

typedef struct srv_shape {
    srv_api api;
    const char *model; // the name the client asked for (echoed, as both servers do)
    char id[48];       // "chatcmpl-..." / "cmpl-..."
    long long created; // unix seconds
    bool include_usage, started;
} srv_shape;

void srv_shape_init(srv_shape *sh, srv_api api, const char *model, bool include_usage);
// The whole answer of a request that did not stream.
char *srv_shape_full(const srv_shape *sh, const char *text, const srv_job_stats *st);
// One streamed piece of text (an SSE event or an NDJSON line); the first OpenAI chat chunk carries the role.
char *srv_shape_delta(srv_shape *sh, const char *text);
// The end of a stream: OpenAI's finish chunk (+ usage chunk) + "data: [DONE]", Ollama's done:true line; an error
// event instead when the job failed.
char *srv_shape_end(srv_shape *sh, const srv_job_stats *st);
// The error as one stream event (after the headers went out).
char *srv_shape_stream_error(const srv_shape *sh, const srv_error *e);

// GET /v1/models and GET /api/tags: the one model this server holds. size: the file's bytes.
char *srv_shape_models(const char *name, long long created);
char *srv_shape_tags(const char *name, long long size, const char *describe, long long mtime);

#endif
