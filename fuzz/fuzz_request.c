// fuzz_request.c — libFuzzer target for `llmlab serve`'s request path (`make fuzz`): the first byte picks the
// endpoint, the rest is the body. Every input is refused with a 400/413 and a message (the error bodies in both
// shapes are valid JSON), or it parses into a request inside every bound; the answer shapes built from its text
// are valid JSON too. No engine and no HTTP library: request.c and shape.c only.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/request.h"
#include "serve/shape.h"

static void must_be_json(char *s) {
    if (!s) abort();
    size_t n = strlen(s);
    // stream events wrap JSON: "data: {...}\n\n" (maybe several, then "data: [DONE]") or "{...}\n"
    char *p = s;
    while (*p) {
        if (!strncmp(p, "data: ", 6)) p += 6;
        char *end = strchr(p, '\n');
        if (!end) end = s + n;
        if (strncmp(p, "[DONE]", 6)) {
            cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
            if (!o) abort();
            cJSON_Delete(o);
        }
        p = end;
        while (*p == '\n') p++;
    }
    free(s);
}

static void check_request(const srv_request *r, const srv_limits *lim) {
    if (srv_api_is_chat(r->api) ? (r->n_msgs < 1 || r->n_msgs > SRV_MAX_MESSAGES || !r->msgs) : !r->prompt) abort();
    for (int i = 0; i < r->n_msgs; i++)
        if (!r->msgs[i].content || strlen(r->msgs[i].content) > SRV_MAX_TEXT ||
            (strcmp(r->msgs[i].role, "system") && strcmp(r->msgs[i].role, "user") && strcmp(r->msgs[i].role, "assistant")))
            abort();
    if (r->prompt && strlen(r->prompt) > SRV_MAX_TEXT) abort();
    if (r->n_stops < 0 || r->n_stops > SRV_MAX_STOPS) abort();
    for (int i = 0; i < r->n_stops; i++)
        if (!r->stops[i] || !r->stops[i][0] || strlen(r->stops[i]) > SRV_MAX_STOP_LEN) abort();
    if (r->max_tokens < -1 || r->max_tokens == 0 || r->max_tokens > lim->max_tokens) abort();
    if (!(r->temperature >= 0 && r->temperature <= 2) || !(r->top_p >= 0 && r->top_p <= 1) || r->top_k < 0) abort();
    if (strlen(r->model) > SRV_MAX_NAME) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    srv_api api = (srv_api)(data[0] % 4);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    srv_limits lim = {.max_tokens = 4096};
    srv_request r;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (!srv_request_parse(api, body, len, &lim, &r, &e)) {
        if ((e.http != 400 && e.http != 413 && e.http != 500) || !e.message[0] || !e.type) abort();
        must_be_json(srv_error_json(&e, false));
        must_be_json(srv_error_json(&e, true));
        return 0;
    }
    check_request(&r, &lim);
    // Echo the request's own text through the answer shapes: whatever bytes it holds, the output is valid JSON.
    const char *text = r.n_msgs ? r.msgs[r.n_msgs - 1].content : r.prompt;
    srv_shape sh;
    srv_shape_init(&sh, api, r.model, r.include_usage);
    srv_job_stats st = {.n_prompt = 3, .n_gen = 2, .finish = SRV_FINISH_STOP};
    must_be_json(srv_shape_full(&sh, text, &st));
    must_be_json(srv_shape_delta(&sh, text));
    must_be_json(srv_shape_end(&sh, &st));
    must_be_json(srv_shape_models(r.model, 0));
    must_be_json(srv_shape_tags(r.model, 1, text, 0));
    srv_request_free(&r);
    return 0;
}
