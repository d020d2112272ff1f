// request.c — JSON body -> validated srv_request (see request.h). The body is untrusted: its nesting is bounded
// before cJSON sees it, every known field is type- and range-checked (null counts as absent), strings must be
// valid UTF-8 within their bounds, and features we do not implement are refused by name rather than ignored.
// Unknown fields are ignored, as OpenAI's and Ollama's servers do (clients send extra ones).
#include "serve/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_error_set(srv_error *e, int http, const char *type, const char *code, const char *param, const char *fmt,
                   ...) {
    e->http = http;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

#define BAD(param, ...) (srv_error_set(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__), false)
#define UNSUPPORTED(param, ...) \
    (srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter", param, __VA_ARGS__), false)

// Deepest nesting of [ and { outside strings; stops counting past limit. Bytes after a broken string are
// left to cJSON to refuse.
static int json_depth(const char *s, size_t n, int limit) {
    int d = 0, maxd = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '[' || c == '{') {
            if (++d > maxd) maxd = d;
            if (maxd > limit) return maxd;
        } else if ((c == ']' || c == '}') && d > 0) d--;
    }
    return maxd;
}

// Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (i + (size_t)len > n) return false;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += (size_t)len;
    }
    return true;
}

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

// A string field within max bytes, valid UTF-8. *out points into the JSON tree (NULL when absent).
static bool get_str(const cJSON *o, const char *name, size_t max, bool required, const char **out, srv_error *e) {
    const cJSON *f = field(o, name);
    *out = NULL;
    if (!f) return required ? BAD(name, "'%s' is required", name) : true;
    if (!cJSON_IsString(f) || !f->valuestring) return BAD(name, "'%s' must be a string", name);
    size_t n = strlen(f->valuestring);
    if (n > max) return BAD(name, "'%s' is %zu bytes; at most %zu are accepted", name, n, max);
    if (!utf8_valid((const unsigned char *)f->valuestring, n)) return BAD(name, "'%s' is not valid UTF-8", name);
    *out = f->valuestring;
    return true;
}

static bool get_num(const cJSON *o, const char *name, double lo, double hi, double *out, srv_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble)) return BAD(name, "'%s' must be a number", name);
    if (!(f->valuedouble >= lo && f->valuedouble <= hi))
        return BAD(name, "'%s' must be in [%g, %g], got %g", name, lo, hi, f->valuedouble);
    *out = f->valuedouble;
    return true;
}

// An integer field in [lo, hi] (a JSON number with no fraction; cJSON holds it as a double, exact to 2^53).
static bool get_int(const cJSON *o, const char *name, double lo, double hi, double *out, srv_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble != floor(f->valuedouble))
        return BAD(name, "'%s' must be an integer", name);
    if (!(f->valuedouble >= lo && f->valuedouble <= hi))
        return BAD(name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, f->valuedouble);
    *out = f->valuedouble;
    return true;
}

static bool get_bool(const cJSON *o, const char *name, bool *out, srv_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (!cJSON_IsBool(f)) return BAD(name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(f);
    return true;
}

// A field we do not implement: absent, null or its neutral value only.
static bool refuse_nonempty(const cJSON *o, const char *name, srv_error *e) {
    const cJSON *f = field(o, name);
    if (!f || (cJSON_IsBool(f) && !cJSON_IsTrue(f)) || (cJSON_IsString(f) && !f->valuestring[0]) ||
        ((cJSON_IsArray(f) || cJSON_IsObject(f)) && !f->child))
        return true;
    return UNSUPPORTED(name, "'%s' is not supported by this server", name);
}

static bool add_stop(srv_request *r, const cJSON *s, const char *param, srv_error *e) {
    if (!cJSON_IsString(s) || !s->valuestring) return BAD(param, "'%s' must be a string or a list of strings", param);
    size_t n = strlen(s->valuestring);
    if (n == 0) return BAD(param, "'%s' holds an empty string", param);
    if (n > SRV_MAX_STOP_LEN) return BAD(param, "a stop string is %zu bytes; at most %d", n, SRV_MAX_STOP_LEN);
    if (!utf8_valid((const unsigned char *)s->valuestring, n)) return BAD(param, "'%s' is not valid UTF-8", param);
    if (r->n_stops >= SRV_MAX_STOPS) return BAD(param, "at most %d stop strings", SRV_MAX_STOPS);
    r->stops[r->n_stops] = strdup(s->valuestring);
    if (!r->stops[r->n_stops]) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory"), false;
    r->n_stops++;
    return true;
}

static bool get_stops(srv_request *r, const cJSON *o, const char *name, srv_error *e) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (cJSON_IsString(f)) return add_stop(r, f, name, e);
    if (!cJSON_IsArray(f)) return BAD(name, "'%s' must be a string or a list of strings", name);
    const cJSON *s;
    cJSON_ArrayForEach(s, f) if (!add_stop(r, s, name, e)) return false;
    return true;
}

// max_tokens (-1 = none): OpenAI's max_completion_tokens or max_tokens, Ollama's options.num_predict.
static bool get_max_tokens(srv_request *r, const cJSON *o, const srv_limits *lim, srv_error *e) {
    double v = -1;
    int hi = lim->max_tokens > 0 ? lim->max_tokens : 1 << 20;
    if (srv_api_is_ollama(r->api)) {
        if (!get_int(o, "num_predict", -2, 1e15, &v, e)) return false; // -1 infinite, -2 fill the context
        if (v == 0) return BAD("num_predict", "'num_predict' must be -1 (no limit), -2 (fill the context) or >= 1");
        if (v > hi) return BAD("num_predict", "'num_predict' is %.0f; this server's context holds %d", v, hi);
        r->max_tokens = v < 0 ? -1 : (int)v;
        return true;
    }
    const char *name = field(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(o, name, -1e15, 1e15, &v, e)) return false;
    if (field(o, name) && (v < 1 || v > hi)) return BAD(name, "'%s' must be in [1, %d], got %.0f", name, hi, v);
    r->max_tokens = field(o, name) ? (int)v : -1;
    return true;
}

// Sampling fields of o (the body for OpenAI, "options" for Ollama).
static bool get_sampling(srv_request *r, const cJSON *o, const srv_limits *lim, srv_error *e) {
    double v;
    if (!get_num(o, "temperature", 0, 2, &r->temperature, e) || !get_num(o, "top_p", 0, 1, &r->top_p, e) ||
        !get_num(o, "min_p", 0, 1, &r->min_p, e) || !get_num(o, "repeat_penalty", 0.01, 100, &r->repeat_penalty, e))
        return false;
    v = r->top_k;
    if (!get_int(o, "top_k", 0, 1 << 24, &v, e)) return false;
    r->top_k = (int)v;
    v = r->repeat_last_n;
    if (!get_int(o, "repeat_last_n", -1, 1 << 20, &v, e)) return false;
    r->repeat_last_n = (int)v;
    // seed: any 64-bit integer a JSON double holds exactly; Ollama's -1 (and any negative) = random.
    if (field(o, "seed")) {
        if (!get_int(o, "seed", -9007199254740992.0, 9007199254740992.0, &v, e)) return false;
        r->has_seed = v >= 0;
        r->seed = v >= 0 ? (uint64_t)v : 0;
    }
    for (const char *const *p = (const char *const[]){"presence_penalty", "frequency_penalty", NULL}; *p; p++) {
        v = 0;
        if (!get_num(o, *p, -2, 2, &v, e)) return false;
        if (v != 0) return UNSUPPORTED(*p, "'%s' other than 0 is not supported (use repeat_penalty)", *p);
    }
    return get_stops(r, o, "stop", e) && get_max_tokens(r, o, lim, e);
}

// Message content: a string, null (""), or (OpenAI) a list of {"type":"text","text":...} parts, joined.
static bool get_content(const cJSON *m, int i, char **out, srv_error *e) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    const cJSON *c = field(m, "content");
    const char *s;
    if (!c) return (*out = strdup("")) != NULL || BAD(param, "out of memory");
    if (cJSON_IsString(c)) {
        if (!get_str(m, "content", SRV_MAX_TEXT, true, &s, e)) return snprintf(e->param, sizeof e->param, "%s", param), false;
        return (*out = strdup(s)) != NULL || BAD(param, "out of memory");
    }
    if (!cJSON_IsArray(c)) return BAD(param, "'%s' must be a string or a list of text parts", param);
    size_t len = 0;
    char *buf = calloc(1, 1);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = field(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text")) {
            free(buf);
            return UNSUPPORTED(param, "'%s': only parts of type \"text\" are supported", param);
        }
        if (!get_str(part, "text", SRV_MAX_TEXT, true, &s, e)) return free(buf), snprintf(e->param, sizeof e->param, "%s", param), false;
        size_t n = strlen(s);
        char *nb = len + n <= SRV_MAX_TEXT && buf ? realloc(buf, len + n + 1) : NULL;
        if (!nb) return free(buf), BAD(param, "'%s' is longer than %u bytes", param, SRV_MAX_TEXT);
        memcpy(nb + len, s, n + 1);
        buf = nb, len += n;
    }
    *out = buf;
    return buf != NULL || BAD(param, "out of memory");
}

static bool get_messages(srv_request *r, const cJSON *o, srv_error *e) {
    const cJSON *ms = field(o, "messages");
    if (!ms) return BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(ms)) return BAD("messages", "'messages' must be a list");
    int n = cJSON_GetArraySize(ms);
    if (n < 1 || n > SRV_MAX_MESSAGES) return BAD("messages", "'messages' must hold 1 to %d messages, got %d", SRV_MAX_MESSAGES, n);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return BAD("messages", "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        int i = r->n_msgs;
        char param[48];
        snprintf(param, sizeof param, "messages[%d].role", i);
        const cJSON *role = field(m, "role");
        if (!cJSON_IsObject(m)) return BAD("messages", "messages[%d] must be an object", i);
        if (!cJSON_IsString(role)) return BAD(param, "'%s' must be a string", param);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return BAD(param, "'%s' must be system, user or assistant", param);
        if (!refuse_nonempty(m, "tool_calls", e) || !refuse_nonempty(m, "images", e)) return false;
        snprintf(r->msgs[i].role, sizeof r->msgs[i].role, "%s", rs);
        if (!get_content(m, i, &r->msgs[i].content, e)) return false;
        r->n_msgs++;
    }
    return true;
}

static void set_defaults(srv_request *r, srv_api api) {
    memset(r, 0, sizeof *r);
    r->api = api;
    r->max_tokens = -1;
    r->cache_prompt = true;
    if (srv_api_is_ollama(api)) { // Ollama's documented defaults
        r->temperature = 0.8, r->top_p = 0.9, r->top_k = 40, r->min_p = 0, r->repeat_penalty = 1.1;
        r->repeat_last_n = 64, r->stream = true;
    } else { // OpenAI's: temperature 1, top_p 1, nothing else
        r->temperature = 1, r->top_p = 1, r->top_k = 0, r->min_p = 0, r->repeat_penalty = 1, r->repeat_last_n = 64;
    }
}

static bool parse_openai(srv_request *r, const cJSON *o, const srv_limits *lim, srv_error *e) {
    const char *s;
    double n = 1;
    if (r->api == SRV_OPENAI_CHAT) {
        if (!get_messages(r, o, e)) return false;
    } else {
        if (!get_str(o, "prompt", SRV_MAX_TEXT, true, &s, e)) {
            if (cJSON_IsArray(field(o, "prompt"))) (void)UNSUPPORTED("prompt", "'prompt' as a list is not supported: send one string");
            return false;
        }
        if (!(r->prompt = strdup(s))) return BAD("prompt", "out of memory");
        if (!refuse_nonempty(o, "suffix", e) || !refuse_nonempty(o, "echo", e)) return false;
    }
    if (!get_int(o, "n", 1, 1, &n, e) || !get_sampling(r, o, lim, e) || !get_bool(o, "stream", &r->stream, e) ||
        !get_bool(o, "cache_prompt", &r->cache_prompt, e))
        return false;
    const cJSON *so = field(o, "stream_options");
    if (so && !cJSON_IsObject(so)) return BAD("stream_options", "'stream_options' must be an object");
    if (so && !get_bool(so, "include_usage", &r->include_usage, e)) return false;
    const cJSON *rf = field(o, "response_format"), *rt = rf ? field(rf, "type") : NULL;
    if (rf && !(cJSON_IsObject(rf) && cJSON_IsString(rt) && !strcmp(rt->valuestring, "text")))
        return UNSUPPORTED("response_format", "only response_format {\"type\": \"text\"} is supported");
    return refuse_nonempty(o, "logprobs", e) && refuse_nonempty(o, "top_logprobs", e) && refuse_nonempty(o, "tools", e) &&
           refuse_nonempty(o, "functions", e) && refuse_nonempty(o, "logit_bias", e) && get_str(o, "user", 256, false, &s, e);
}

static bool parse_ollama(srv_request *r, const cJSON *o, const srv_limits *lim, srv_error *e) {
    const char *s;
    if (r->api == SRV_OLLAMA_CHAT) {
        if (!get_messages(r, o, e)) return false;
    } else {
        if (!get_str(o, "prompt", SRV_MAX_TEXT, false, &s, e)) return false;
        if (!(r->prompt = strdup(s ? s : ""))) return BAD("prompt", "out of memory");
        if (!get_str(o, "system", SRV_MAX_TEXT, false, &s, e)) return false;
        if (s && !(r->system = strdup(s))) return BAD("system", "out of memory");
        if (!get_bool(o, "raw", &r->raw, e) || !refuse_nonempty(o, "suffix", e) || !refuse_nonempty(o, "template", e) ||
            !refuse_nonempty(o, "context", e) || !refuse_nonempty(o, "images", e))
            return false;
    }
    const cJSON *opt = field(o, "options");
    if (opt && !cJSON_IsObject(opt)) return BAD("options", "'options' must be an object");
    static const cJSON empty = {.type = cJSON_Object};
    if (!get_sampling(r, opt ? opt : &empty, lim, e)) return false;
    double v = 0;
    if (opt && !get_int(opt, "num_ctx", 1, 1 << 24, &v, e)) return false;
    return get_bool(o, "stream", &r->stream, e) && refuse_nonempty(o, "format", e) && refuse_nonempty(o, "tools", e) &&
           refuse_nonempty(o, "think", e);
}

bool srv_request_parse(srv_api api, const char *body, size_t len, const srv_limits *lim, srv_request *r,
                       srv_error *e) {
    set_defaults(r, api);
    if (len > SRV_MAX_BODY) {
        srv_error_set(e, 413, "invalid_request_error", "request_too_large", NULL,
                      "the request body is %zu bytes; at most %u are accepted", len, SRV_MAX_BODY);
        return false;
    }
    if (json_depth(body, len, SRV_MAX_JSON_DEPTH) > SRV_MAX_JSON_DEPTH)
        return BAD(NULL, "the JSON body is nested deeper than %d levels", SRV_MAX_JSON_DEPTH);
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o) return BAD(NULL, "the body is not valid JSON");
    bool ok = false;
    const char *model;
    if (!cJSON_IsObject(o)) (void)BAD(NULL, "the body must be a JSON object");
    else if (get_str(o, "model", SRV_MAX_NAME, true, &model, e)) {
        snprintf(r->model, sizeof r->model, "%s", model);
        ok = srv_api_is_ollama(api) ? parse_ollama(r, o, lim, e) : parse_openai(r, o, lim, e);
    }
    cJSON_Delete(o);
    if (!ok) srv_request_free(r);
    return ok;
}

void srv_request_free(srv_request *r) {
    for (int i = 0; i < r->n_msgs; i++) free(r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->system);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    srv_api api = r->api;
    memset(r, 0, sizeof *r);
    r->api = api;
}

char *srv_error_json(const srv_error *e, bool ollama) {
    cJSON *o = cJSON_CreateObject();
    if (ollama) cJSON_AddStringToObject(o, "error", e->message);
    else {
        cJSON *err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "message", e->message);
        cJSON_AddStringToObject(err, "type", e->type ? e->type : "server_error");
        if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
        else cJSON_AddNullToObject(err, "param");
        if (e->code) cJSON_AddStringToObject(err, "code", e->code);
        else cJSON_AddNullToObject(err, "code");
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
