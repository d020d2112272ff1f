// request.h — `llmlab serve`'s request layer: a JSON body (untrusted, any bytes) -> a validated request, or an
// error with the HTTP status and the OpenAI/Ollama error shape. No engine here: the fuzz target and the tests
// drive it alone. Every field is type- and range-checked; strings, message counts and lists are bounded.
#ifndef LL_SERVE_REQUEST_H
#define LL_SERVE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Bounds on what a request may carry (the body itself is bounded by SRV_MAX_BODY before parsing).
#define SRV_MAX_BODY (2u << 20)     // bytes of a request body; more is 413
#define SRV_MAX_MESSAGES 256        // messages of a chat
#define SRV_MAX_TEXT (1u << 20)     // bytes of one prompt or message content (after joining content parts)
#define SRV_MAX_STOPS 8             // stop strings (OpenAI allows 4; Ollama clients send a few more)
#define SRV_MAX_STOP_LEN 256        // bytes of one stop string
#define SRV_MAX_NAME 256            // bytes of a model name
#define SRV_MAX_JSON_DEPTH 32       // nesting of the body; deeper is refused before cJSON recurses into it

typedef enum srv_api {
    SRV_OPENAI_CHAT,       // POST /v1/chat/completions
    SRV_OPENAI_COMPLETION, // POST /v1/completions
    SRV_OLLAMA_CHAT,       // POST /api/chat
    SRV_OLLAMA_GENERATE,   // POST /api/generate
} srv_api;

static inline bool srv_api_is_ollama(srv_api a) { return a == SRV_OLLAMA_CHAT || a == SRV_OLLAMA_GENERATE; }
static inline bool srv_api_is_chat(srv_api a) { return a == SRV_OPENAI_CHAT || a == SRV_OLLAMA_CHAT; }

typedef struct srv_msg {
    char role[16]; // "system", "user", "assistant" ("developer" is read as "system")
    char *content; // malloc'd, NUL-terminated, <= SRV_MAX_TEXT bytes
} srv_msg;

typedef struct srv_request {
    srv_api api;
    char model[SRV_MAX_NAME + 1];
    srv_msg *msgs; // chat APIs: 1..SRV_MAX_MESSAGES
    int n_msgs;
    char *prompt; // completion APIs (malloc'd); Ollama generate's may be "" (a load request)
    char *system; // Ollama generate's system text or NULL
    bool raw;     // Ollama generate: no template
    int max_tokens; // -1 = until end of generation or the context's end
    // sampling: what the request gave, else the defaults below (OpenAI's: temperature 1, top_p 1)
    double temperature, top_p, min_p, repeat_penalty;
    int top_k, repeat_last_n;
    bool has_seed;
    uint64_t seed;
    char *stops[SRV_MAX_STOPS]; // malloc'd, each 1..SRV_MAX_STOP_LEN bytes
    int n_stops;
    bool stream, include_usage;
    bool cache_prompt; // reuse a cached prefix of the prompt (llama-server's extension; default true)
} srv_request;

// What the caller needs to validate against this server (not the request alone).
typedef struct srv_limits {
    int max_tokens; // the most tokens one request may ask for (the context size)
} srv_limits;

// An error for the client: HTTP status, OpenAI's type/param/code and the message (also Ollama's "error").
typedef struct srv_error {
    int http;           // 400, 401, 403, 404, 405, 413, 500, 503
    const char *type;   // "invalid_request_error", "authentication_error", "server_error", ...
    const char *code;   // NULL or e.g. "model_not_found", "invalid_api_key"
    char param[64];     // "" or the offending field
    char message[512];
} srv_error;

void srv_error_set(srv_error *e, int http, const char *type, const char *code, const char *param, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));

// Parse and validate body (len bytes, not NUL-terminated, any content) for api. On success *out is filled (free
// with srv_request_free) and true is returned; else e says why (400 or 413) and *out holds nothing to free.
bool srv_request_parse(srv_api api, const char *body, size_t len, const srv_limits *lim, srv_request *out,
                       srv_error *e);
void srv_request_free(srv_request *r);

// The error body in the API's shape: OpenAI {"error":{"message","type","param","code"}} or Ollama {"error":"..."}.
// malloc'd JSON text.
char *srv_error_json(const srv_error *e, bool ollama);

#endif
