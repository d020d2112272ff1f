// http.c — libmicrohttpd glue for `llmlab serve` (see http.h). One thread per connection (bounded by
// max_connections): a handler may block waiting for its job's text, and a streamed response's callback blocks
// on the job's queue, polling the socket meanwhile so that a client that went away frees its slot at once.
// Order of checks for every request: Host allow-list, Origin (CORS), route, API key, body size, then the body.
#include "serve/http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/sha256.h"
#include "llmlab.h"
#include "serve/shape.h"

typedef enum route_kind { R_ROOT, R_HEALTH, R_METRICS, R_MODELS, R_MODEL, R_TAGS, R_VERSION, R_GEN } route_kind;

typedef struct route {
    const char *method, *path;
    route_kind kind;
    srv_api api; // R_GEN
    bool open;   // answered without the API key (liveness only)
} route;

static const route k_routes[] = {
    {"GET", "/", R_ROOT, 0, true},
    {"GET", "/health", R_HEALTH, 0, true},
    {"GET", "/metrics", R_METRICS, 0, false},
    {"GET", "/v1/models", R_MODELS, 0, false},
    {"GET", "/v1/models/", R_MODEL, 0, false}, // + the model id (a prefix route: the only one)
    {"POST", "/v1/chat/completions", R_GEN, SRV_OPENAI_CHAT, false},
    {"POST", "/v1/completions", R_GEN, SRV_OPENAI_COMPLETION, false},
    {"POST", "/api/chat", R_GEN, SRV_OLLAMA_CHAT, false},
    {"POST", "/api/generate", R_GEN, SRV_OLLAMA_GENERATE, false},
    {"GET", "/api/tags", R_TAGS, 0, false},
    {"GET", "/api/version", R_VERSION, 0, false},
};

// Responses by status, for /metrics.
static const int k_codes[] = {200, 204, 400, 401, 403, 404, 405, 413, 500, 503};
#define N_CODES (sizeof k_codes / sizeof k_codes[0])

struct srv_http {
    srv_config cfg;
    srv_sched *sched;
    struct MHD_Daemon *d;
    int port;
    uint8_t key_digest[32];
    atomic_llong by_code[N_CODES];
    atomic_llong in_flight; // streamed responses not yet finished
    atomic_llong waiting;   // non-streamed generation requests being answered
};

// Per request: the route and the body as it arrives.
typedef struct req_ctx {
    const route *rt;
    char *body;
    size_t len, cap;
    bool refused; // a refusal is queued: the rest of the body is dropped
} req_ctx;

// A streamed response: owned by its MHD response, freed by its free callback.
typedef struct stream_ctx {
    srv_http *h;
    struct MHD_Connection *conn;
    srv_job *job;
    srv_shape sh;
    char model[SRV_MAX_NAME + 1];
    char *out; // formatted events not yet handed to MHD
    size_t out_len, out_off;
    bool done;
} stream_ctx;

// ---- policy -----------------------------------------------------------------------------------------------
bool srv_addr_is_loopback(const char *host) {
    if (!host) return false;
    if (!strcasecmp(host, "localhost")) return true;
    struct in_addr a4;
    struct in6_addr a6;
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2), buf[n - 2] = 0;
        host = buf;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

// The name part of a Host header value: "[::1]:8080" -> "::1" (IP literal), "a.b:80" -> "a.b".
static bool host_name(const char *v, char *out, size_t cap, bool *is_ip) {
    size_t n = strlen(v);
    const char *start = v, *end = v + n;
    if (n == 0 || n >= cap) return false;
    if (v[0] == '[') {
        const char *rb = strchr(v, ']');
        if (!rb || (rb[1] && rb[1] != ':')) return false;
        start = v + 1, end = rb;
    } else {
        const char *c = strchr(v, ':');
        if (c && strchr(c + 1, ':')) return false; // a bare IPv6 literal is not a valid Host
        if (c) end = c;
    }
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = 0;
    struct in_addr a4;
    struct in6_addr a6;
    *is_ip = inet_pton(AF_INET, out, &a4) == 1 || (v[0] == '[' && inet_pton(AF_INET6, out, &a6) == 1);
    return out[0] != 0;
}

// DNS rebinding needs a name the attacker controls that resolves to us: IP literals cannot be rebound, so they
// pass; names pass only when they are localhost, the --host name, or an --allow-host one.
bool srv_host_allowed(const srv_config *cfg, const char *host_header) {
    char name[256];
    bool is_ip;
    if (!host_header || !host_name(host_header, name, sizeof name, &is_ip)) return false;
    if (is_ip || !strcasecmp(name, "localhost")) return true;
    if (cfg->host && !strcasecmp(name, cfg->host)) return true;
    for (int i = 0; i < cfg->n_allow_hosts; i++)
        if (!strcmp(cfg->allow_hosts[i], "*") || !strcasecmp(name, cfg->allow_hosts[i])) return true;
    return false;
}

// SHA-256 of both sides, then a comparison that reads every byte: the time depends on neither the key's length
// nor where the first difference is.
static bool digest_eq(const uint8_t a[32], const uint8_t b[32]) {
    volatile uint8_t acc = 0;
    for (int i = 0; i < 32; i++) acc |= a[i] ^ b[i];
    return acc == 0;
}

bool srv_key_ok(const char *key, const char *authorization) {
    uint8_t want[32], got[32];
    if (!key) return true;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) return false;
    ll_sha256_hash(key, strlen(key), want);
    ll_sha256_hash(authorization + 7, strlen(authorization + 7), got);
    return digest_eq(want, got);
}

// ---- responses --------------------------------------------------------------------------------------------
static void count(srv_http *h, int code) {
    for (size_t i = 0; i < N_CODES; i++)
        if (k_codes[i] == code) atomic_fetch_add(&h->by_code[i], 1);
}

static void add_cors(srv_http *h, struct MHD_Response *r) {
    if (!h->cfg.cors_origin) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", h->cfg.cors_origin);
    MHD_add_response_header(r, "Vary", "Origin");
}

// Queue body (malloc'd, taken) with status code.
static enum MHD_Result send_body(srv_http *h, struct MHD_Connection *c, int code, char *body, const char *type,
                                 const char *retry_after) {
    if (!body) body = strdup(""), code = 500;
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) return free(body), MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    add_cors(h, r);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    count(h, code);
    return ok;
}

static enum MHD_Result send_json(srv_http *h, struct MHD_Connection *c, int code, char *json) {
    return send_body(h, c, code, json, "application/json", NULL);
}

// An error in the shape of the API the path belongs to (/api/...: Ollama, else OpenAI).
static enum MHD_Result send_error(srv_http *h, struct MHD_Connection *c, const char *url, const srv_error *e) {
    bool ollama = url && !strncmp(url, "/api/", 5);
    const char *retry = e->http == 503 ? "1" : NULL;
    return send_body(h, c, e->http, srv_error_json(e, ollama), "application/json", retry);
}

// ---- the client went away? ----------------------------------------------------------------------------------
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

// ---- streaming -----------------------------------------------------------------------------------------------
static void stream_append(stream_ctx *s, char *ev) {
    if (!ev) return;
    size_t n = strlen(ev);
    if (s->out_off == s->out_len) s->out_off = s->out_len = 0;
    char *nb = realloc(s->out, s->out_len + n + 1);
    if (nb) memcpy(nb + s->out_len, ev, n + 1), s->out = nb, s->out_len += n;
    free(ev);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *s = cls;
    while (s->out_off == s->out_len) {
        if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(s->conn)) {
            srv_job_cancel(s->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        char *text = NULL;
        srv_job_stats st;
        bool fin = srv_job_take(s->job, 100, &text, &st);
        if (text && text[0]) stream_append(s, srv_shape_delta(&s->sh, text));
        free(text);
        if (fin) {
            stream_append(s, srv_shape_end(&s->sh, &st));
            s->done = true;
        }
    }
    size_t n = s->out_len - s->out_off < max ? s->out_len - s->out_off : max;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    srv_job_release(s->job);
    atomic_fetch_sub(&s->h->in_flight, 1);
    free(s->out);
    free(s);
}

static enum MHD_Result start_stream(srv_http *h, struct MHD_Connection *c, srv_job *j, const srv_request *rq) {
    stream_ctx *s = calloc(1, sizeof *s);
    if (!s) return srv_job_release(j), MHD_NO;
    s->h = h, s->conn = c, s->job = j;
    snprintf(s->model, sizeof s->model, "%s", rq->model);
    srv_shape_init(&s->sh, rq->api, s->model, rq->include_usage);
    atomic_fetch_add(&h->in_flight, 1);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!r) return stream_free(s), MHD_NO;
    bool ollama = srv_api_is_ollama(rq->api);
    MHD_add_response_header(r, "Content-Type", ollama ? "application/x-ndjson" : "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    add_cors(h, r);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    count(h, 200);
    return ok;
}

// ---- generation ----------------------------------------------------------------------------------------------
static bool model_matches(const srv_http *h, const char *name) {
    const char *m = h->cfg.model_name;
    size_t n = strlen(m);
    return !strcmp(name, m) || (!strncmp(name, m, n) && !strcmp(name + n, ":latest"));
}

static enum MHD_Result handle_gen(srv_http *h, struct MHD_Connection *c, const char *url, req_ctx *rc) {
    srv_error e = {0};
    char why[256];
    srv_state state = srv_sched_state(h->sched, why, sizeof why);
    if (state != SRV_READY) {
        srv_error_set(&e, 503, "server_error", state == SRV_LOADING ? "model_loading" : "model_failed", NULL, "%s",
                      state == SRV_LOADING ? "the model is still loading: retry shortly" : why);
        return send_error(h, c, url, &e);
    }
    srv_request rq;
    srv_limits lim = {.max_tokens = srv_sched_n_ctx(h->sched)};
    if (!srv_request_parse(rc->rt->api, rc->body ? rc->body : "", rc->len, &lim, &rq, &e)) return send_error(h, c, url, &e);
    if (!model_matches(h, rq.model)) {
        srv_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                      "the model '%s' is not served here; this server has '%s' (GET /v1/models)", rq.model, h->cfg.model_name);
        srv_request_free(&rq);
        return send_error(h, c, url, &e);
    }
    srv_job *j;
    if (!srv_job_new(h->sched, &rq, &j, &e)) return srv_request_free(&rq), send_error(h, c, url, &e);
    if (!srv_sched_submit(h->sched, j, &e)) return srv_job_release(j), srv_request_free(&rq), send_error(h, c, url, &e);
    enum MHD_Result res;
    if (rq.stream) res = start_stream(h, c, j, &rq);
    else { // wait for the whole answer, watching for the client leaving
        atomic_fetch_add(&h->waiting, 1);
        char *all = NULL;
        size_t len = 0;
        srv_job_stats st;
        for (;;) {
            char *text = NULL;
            bool fin = srv_job_take(j, 100, &text, &st);
            size_t n = text ? strlen(text) : 0;
            char *nb = n ? realloc(all, len + n + 1) : all;
            if (n && nb) memcpy(nb + len, text, n + 1), all = nb, len += n;
            free(text);
            if (fin) break;
            if (client_gone(c)) {
                srv_job_cancel(j);
                srv_job_release(j), free(all), srv_request_free(&rq);
                atomic_fetch_sub(&h->waiting, 1);
                return MHD_NO;
            }
        }
        srv_shape sh;
        srv_shape_init(&sh, rq.api, rq.model, false);
        if (st.finish == SRV_FINISH_ERROR) {
            srv_error_set(&e, 500, "server_error", NULL, NULL, "%s", st.error);
            res = send_error(h, c, url, &e);
        } else res = send_json(h, c, 200, srv_shape_full(&sh, all ? all : "", &st));
        srv_job_release(j);
        free(all);
        atomic_fetch_sub(&h->waiting, 1);
    }
    srv_request_free(&rq);
    return res;
}

// ---- plain GETs -----------------------------------------------------------------------------------------------
static char *metrics_text(srv_http *h) {
    size_t cap = 8192;
    char *b = malloc(cap);
    if (!b) return NULL;
    int n = snprintf(b, cap, "# HELP llmlab_http_responses_total HTTP responses by status code.\n"
                             "# TYPE llmlab_http_responses_total counter\n");
    for (size_t i = 0; i < N_CODES; i++)
        n += snprintf(b + n, cap - (size_t)n, "llmlab_http_responses_total{code=\"%d\"} %lld\n", k_codes[i],
                      (long long)atomic_load(&h->by_code[i]));
    n += snprintf(b + n, cap - (size_t)n, "# HELP llmlab_streams_open Streamed responses being sent.\n"
                  "# TYPE llmlab_streams_open gauge\nllmlab_streams_open %lld\n", (long long)atomic_load(&h->in_flight));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2(); // heap bytes in use: flat under steady load = no leak, whatever RSS does
    n += snprintf(b + n, cap - (size_t)n, "# HELP llmlab_heap_in_use_bytes malloc'd bytes in use (glibc mallinfo2).\n"
                  "# TYPE llmlab_heap_in_use_bytes gauge\nllmlab_heap_in_use_bytes %zu\n", mi.uordblks + mi.hblkhd);
#endif
    srv_sched_metrics(h->sched, b + n, (int)(cap - (size_t)n));
    return b;
}

static bool model_matches(const srv_http *h, const char *name);

static enum MHD_Result handle_get(srv_http *h, struct MHD_Connection *c, const char *url, const route *rt) {
    char why[256];
    srv_state state = srv_sched_state(h->sched, why, sizeof why);
    struct stat sb = {0};
    switch (rt->kind) {
    case R_ROOT: return send_body(h, c, 200, strdup("llmlab is running\n"), "text/plain; charset=utf-8", NULL);
    case R_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", state == SRV_READY ? "ok" : state == SRV_LOADING ? "loading" : "error");
        if (state == SRV_FAILED) cJSON_AddStringToObject(o, "error", why);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return send_body(h, c, state == SRV_READY ? 200 : 503, s, "application/json", state == SRV_LOADING ? "1" : NULL);
    }
    case R_METRICS: return send_body(h, c, 200, metrics_text(h), "text/plain; version=0.0.4; charset=utf-8", NULL);
    case R_MODELS:
        stat(h->cfg.model_path, &sb);
        return send_json(h, c, 200, srv_shape_models(h->cfg.model_name, (long long)sb.st_mtime));
    case R_MODEL: { // GET /v1/models/{id}: the model object, or 404
        const char *id = url + strlen(rt->path);
        if (model_matches(h, id)) {
            char *list = srv_shape_models(h->cfg.model_name, 0);
            cJSON *o = list ? cJSON_Parse(list) : NULL, *m = o ? cJSON_GetArrayItem(cJSON_GetObjectItem(o, "data"), 0) : NULL;
            free(list);
            if (stat(h->cfg.model_path, &sb) == 0 && m) cJSON_ReplaceItemInObject(m, "created", cJSON_CreateNumber((double)sb.st_mtime));
            char *s = m ? cJSON_PrintUnformatted(m) : NULL;
            cJSON_Delete(o);
            return send_json(h, c, 200, s);
        }
        srv_error e;
        srv_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                      "the model '%.200s' is not served here; this server has '%s'", id, h->cfg.model_name);
        return send_error(h, c, url, &e);
    }
    case R_TAGS:
        stat(h->cfg.model_path, &sb);
        return send_json(h, c, 200, srv_shape_tags(h->cfg.model_name, (long long)sb.st_size,
                                                   state == SRV_READY ? srv_sched_describe(h->sched) : NULL,
                                                   (long long)sb.st_mtime));
    case R_VERSION: return send_json(h, c, 200, strdup("{\"version\":\"" LLMLAB_VERSION "\"}"));
    default: return MHD_NO;
    }
}

// ---- the access handler -----------------------------------------------------------------------------------------
// The first call for a request: every check that does not need the body. Returns false after queueing the refusal.
static bool admit(srv_http *h, struct MHD_Connection *c, const char *url, const char *method, req_ctx *rc,
                  enum MHD_Result *res) {
    srv_error e = {0};
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!srv_host_allowed(&h->cfg, host))
        srv_error_set(&e, 403, "invalid_request_error", "host_not_allowed", NULL,
                      "Host '%.100s' is not allowed (DNS rebinding guard): use an IP address or localhost, or start the "
                      "server with --allow-host NAME", host ? host : "");
    else if (origin && !(h->cfg.cors_origin && (!strcmp(h->cfg.cors_origin, "*") || !strcmp(origin, h->cfg.cors_origin))))
        srv_error_set(&e, 403, "invalid_request_error", "origin_not_allowed", NULL,
                      "requests from Origin '%.100s' are refused: start the server with --cors-origin to allow one", origin);
    if (e.http) return *res = send_error(h, c, url, &e), false;
    if (!strcmp(method, "OPTIONS") && h->cfg.cors_origin) { // CORS preflight
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        add_cors(h, r);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        *res = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        count(h, 204);
        return false;
    }
    bool path_known = false;
    for (size_t i = 0; i < sizeof k_routes / sizeof k_routes[0]; i++) {
        bool prefix = k_routes[i].kind == R_MODEL;
        if (prefix ? strncmp(url, k_routes[i].path, strlen(k_routes[i].path)) : strcmp(url, k_routes[i].path)) continue;
        path_known = true;
        if (!strcmp(method, k_routes[i].method) || (!strcmp(method, "HEAD") && !strcmp(k_routes[i].method, "GET")))
            rc->rt = &k_routes[i];
    }
    if (!rc->rt) {
        if (path_known) srv_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%s is not allowed on %.200s", method, url);
        else srv_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "no endpoint %.200s (see docs/openapi.yaml)", url);
    } else if (!rc->rt->open && !srv_key_ok(h->cfg.api_key, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))) {
        srv_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL,
                      "a valid API key is required: send the header 'Authorization: Bearer KEY'");
    } else {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        char *end;
        unsigned long long n = cl ? strtoull(cl, &end, 10) : 0;
        if (cl && n > SRV_MAX_BODY)
            srv_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                          "the request body is %llu bytes; at most %u are accepted", n, SRV_MAX_BODY);
    }
    if (e.http) return *res = send_error(h, c, url, &e), false;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_http *h = cls;
    req_ctx *rc = *con_cls;
    if (!rc) {
        if (!(rc = calloc(1, sizeof *rc))) return MHD_NO;
        *con_cls = rc;
        enum MHD_Result res = MHD_YES;
        if (!admit(h, c, url, method, rc, &res)) rc->refused = true;
        return res; // the body (if any) and the answer come with the next calls
    }
    if (rc->refused) return *upload_size = 0, MHD_YES;
    if (*upload_size) {
        size_t n = *upload_size;
        if (rc->rt->kind != R_GEN || rc->len + n > SRV_MAX_BODY) return MHD_NO; // chunked past the limit: drop it
        if (rc->len + n + 1 > rc->cap) {
            size_t cap = (rc->len + n + 1) * 2 < SRV_MAX_BODY + 1 ? (rc->len + n + 1) * 2 : SRV_MAX_BODY + 1;
            char *nb = realloc(rc->body, cap);
            if (!nb) return MHD_NO;
            rc->body = nb, rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload, n);
        rc->len += n;
        rc->body[rc->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    if (rc->rt->kind == R_GEN) return handle_gen(h, c, url, rc);
    return handle_get(h, c, url, rc->rt);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    srv_http *h = cls;
    req_ctx *rc = *con_cls;
    if (h->cfg.verbose && rc && rc->rt) fprintf(stderr, "llmlab serve: %s %s (%d)\n", rc->rt->method, rc->rt->path, (int)why);
    if (rc) free(rc->body), free(rc);
    *con_cls = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    fputs("llmlab serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

// ---- start / stop ----------------------------------------------------------------------------------------------
static bool resolve(const char *host, int port, struct sockaddr_storage *ss, bool *v6, char *err, size_t cap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char name[256], ps[16];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof name) memcpy(name, host + 1, n - 2), name[n - 2] = 0;
    else snprintf(name, sizeof name, "%s", host);
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(name, ps, &hints, &ai);
    if (rc || !ai) {
        snprintf(err, cap, "--host %s: cannot resolve it (%s)", host, gai_strerror(rc));
        return false;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    return true;
}

srv_http *srv_http_start(const srv_config *cfg, srv_sched *s, char *err, size_t cap) {
    if (!cfg->host || !cfg->host[0]) return snprintf(err, cap, "no --host given"), NULL;
    if (!srv_addr_is_loopback(cfg->host) && !cfg->api_key && !cfg->insecure) {
        snprintf(err, cap, "refusing to listen on %s without an API key: anyone who can reach this address could use "
                 "the model. Give --api-key KEY or --api-key-file FILE (or --insecure if you really mean it)", cfg->host);
        return NULL;
    }
    if (cfg->api_key && !cfg->api_key[0]) return snprintf(err, cap, "the API key is empty"), NULL;
    struct sockaddr_storage ss;
    bool v6;
    if (!resolve(cfg->host, cfg->port, &ss, &v6, err, cap)) return NULL;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return snprintf(err, cap, "out of memory"), NULL;
    h->cfg = *cfg;
    h->sched = s;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
                     (v6 ? MHD_USE_IPv6 : 0);
    unsigned limit = cfg->max_connections > 0 ? (unsigned)cfg->max_connections : 256;
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_log,
                            h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, limit,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, cap, "cannot listen on %s port %d (in use, or not an address of this machine?)", cfg->host, cfg->port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    return h;
}

int srv_http_port(const srv_http *h) { return h->port; }

void srv_http_stop(srv_http *h) {
    if (!h) return;
    // Answers already decided (the scheduler stopped first) get up to 3 s to reach their clients: stopping the
    // daemon closes every connection at once.
    for (int i = 0; i < 300 && atomic_load(&h->in_flight) + atomic_load(&h->waiting) > 0; i++) usleep(10000);
    MHD_stop_daemon(h->d);
    free(h);
}
