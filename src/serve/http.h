// http.h — `llmlab serve`'s HTTP side on libmicrohttpd: routes, limits and the safety policy (loopback bind by
// default, API key, Host allow-list, CORS only when asked for), streaming through response callbacks.
#ifndef LL_SERVE_HTTP_H
#define LL_SERVE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "serve/sched.h"

#define SRV_MAX_ALLOW_HOSTS 16

typedef struct srv_config {
    const char *host;        // bind address: an IP literal or "localhost" (default 127.0.0.1)
    int port;                // 0 = any free port (srv_http_port says which)
    const char *api_key;     // NULL = none: then only a loopback bind is accepted, unless insecure
    const char *cors_origin; // NULL = no CORS headers and any request with an Origin header is refused
    const char *allow_hosts[SRV_MAX_ALLOW_HOSTS]; // extra Host header names ("*": any)
    int n_allow_hosts;
    bool insecure;           // allow a non-loopback bind without a key
    bool verbose;            // one log line per request
    const char *model_name;  // the id /v1/models lists and requests must name
    const char *model_path;  // for /api/tags (size, time)
    int max_connections;     // connection threads at most
} srv_config;

typedef struct srv_http srv_http;

// Check the policy, bind and start answering. NULL + err when refused or the address cannot be bound.
srv_http *srv_http_start(const srv_config *cfg, srv_sched *s, char *err, size_t cap);
int srv_http_port(const srv_http *h);
// Stop answering: waits (3 s at most) for answers in progress to be sent, then closes every connection.
void srv_http_stop(srv_http *h);

// Policy pieces, exposed for tests: is the address a loopback one (127.0.0.0/8, ::1, "localhost"); may a request
// with this Host header value be answered (IP literals and localhost always; names only when allowed).
bool srv_addr_is_loopback(const char *host);
bool srv_host_allowed(const srv_config *cfg, const char *host_header);
// Constant-time: does the Authorization header carry "Bearer KEY"?
bool srv_key_ok(const char *key, const char *authorization);

#endif
