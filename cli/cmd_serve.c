// cmd_serve.c — `llmlab serve`: an OpenAI- and Ollama-compatible HTTP server (src/serve). Parsing and printing
// only. Built without libmicrohttpd, the command says how to get it.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llmlab serve -m MODEL [options]\n\n"
            "An OpenAI-compatible (/v1/chat/completions, /v1/completions, /v1/models) and Ollama-compatible (/api/chat,\n"
            "/api/generate, /api/tags, /api/version) HTTP server, with /health and /metrics (docs/openapi.yaml).\n"
            "Requests share one context of --parallel sequences (continuous batching).\n\n"
            "  -m, --model FILE        GGUF model\n"
            "  --alias NAME            the model's name in the API (default: the file name without .gguf)\n"
            "  --host ADDR             address to listen on (default 127.0.0.1); a non-loopback address needs an API key\n"
            "  --port N                port (default 8080; 0 = any free one, printed)\n"
            "  -np, --parallel N       requests generated at once, sequences of one context (default 4)\n"
            "  -c, --ctx-size N        context per request, tokens (default: the model's, at most 4096)\n"
            "  -b, --batch-size N      tokens per step (default 512)\n"
            "  -t, --threads N         threads (default: physical cores)\n"
            "  --device D              cpu, cuda or auto (default auto)\n"
            "  --queue N               requests waiting for a slot before 503 + Retry-After (default 128)\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' (visible in ps: prefer --api-key-file)\n"
            "  --api-key-file FILE     the key is the first line of FILE\n"
            "  --insecure              allow a non-loopback --host without an API key\n"
            "  --allow-host NAME       a Host header name to answer besides IP addresses and localhost (repeatable;\n"
            "                          '*' = any: turns off the DNS rebinding guard)\n"
            "  --cors-origin ORIGIN    allow browser requests from ORIGIN ('*' = any); without it no CORS headers are\n"
            "                          sent and requests carrying an Origin header are refused\n"
            "  --verbose               log every request\n");
}

#if LL_HAVE_MHD
#include "serve/http.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "llmlab serve: --api-key-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[1024] = "";
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\r\n")] = 0;
    if (!buf[0]) {
        fprintf(stderr, "llmlab serve: --api-key-file %s: the first line is empty\n", path);
        return NULL;
    }
    return strdup(buf);
}

static bool is_flag(const char *a, const char *s1, const char *s2) { return !strcmp(a, s1) || (s2 && !strcmp(a, s2)); }

// "dir/SmolLM2-135M.Q4_1.gguf" -> "SmolLM2-135M.Q4_1"
static void default_alias(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = 0;
}

int cmd_serve(int argc, char **argv) {
    srv_config cfg = {.host = "127.0.0.1", .port = 8080, .max_connections = 256};
    srv_sched_params sp = {.n_parallel = 4, .queue_max = 128};
    const char *alias = NULL, *key_file = NULL;
    long l;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define IS(x, y) is_flag(a, x, y)
#define VAL() if (!(v = cli_value("serve", argc, argv, &i))) return 1
#define INT(lo, hi) if (!cli_int("serve", a, v, lo, hi, &l)) return 1
        if (IS("-h", "--help")) { usage(stdout); return 0; }
        else if (IS("-m", "--model")) { VAL(); sp.model_path = v; }
        else if (IS("--alias", NULL)) { VAL(); alias = v; }
        else if (IS("--host", NULL)) { VAL(); cfg.host = v; }
        else if (IS("--port", NULL)) { VAL(); INT(0, 65535); cfg.port = (int)l; }
        else if (IS("-np", "--parallel")) { VAL(); INT(1, 256); sp.n_parallel = (int)l; }
        else if (IS("-c", "--ctx-size")) { VAL(); INT(16, 1 << 20); sp.n_ctx = (int)l; }
        else if (IS("-b", "--batch-size")) { VAL(); INT(1, 1 << 16); sp.n_batch = (int)l; }
        else if (IS("-t", "--threads")) { VAL(); INT(1, 1024); sp.n_threads = (int)l; }
        else if (IS("--device", NULL)) { VAL(); sp.device = strcmp(v, "auto") ? v : NULL; }
        else if (IS("--queue", NULL)) { VAL(); INT(0, 1 << 16); sp.queue_max = (int)l; }
        else if (IS("--api-key", NULL)) { VAL(); cfg.api_key = v; }
        else if (IS("--api-key-file", NULL)) { VAL(); key_file = v; }
        else if (IS("--insecure", NULL)) cfg.insecure = true;
        else if (IS("--allow-host", NULL)) {
            VAL();
            if (cfg.n_allow_hosts == SRV_MAX_ALLOW_HOSTS) { fprintf(stderr, "llmlab serve: at most %d --allow-host\n", SRV_MAX_ALLOW_HOSTS); return 1; }
            cfg.allow_hosts[cfg.n_allow_hosts++] = v;
        }
        else if (IS("--cors-origin", NULL)) { VAL(); cfg.cors_origin = v; }
        else if (IS("--verbose", "-v")) cfg.verbose = true;
        else { fprintf(stderr, "llmlab serve: unknown option '%s' (see llmlab serve --help)\n", a); return 1; }
#undef IS
#undef VAL
#undef INT
    }
    if (!sp.model_path) { fprintf(stderr, "llmlab serve: no model given (-m FILE)\n"); return 1; }
    if (access(sp.model_path, R_OK)) { fprintf(stderr, "llmlab serve: %s: cannot open: %s\n", sp.model_path, strerror(errno)); return 1; }
    if (cfg.api_key && key_file) { fprintf(stderr, "llmlab serve: give --api-key or --api-key-file, not both\n"); return 1; }
    char *key = key_file ? read_key_file(key_file) : NULL;
    if (key_file && !key) return 1;
    if (key) cfg.api_key = key;
    char name[256];
    default_alias(sp.model_path, name, sizeof name);
    cfg.model_name = alias ? alias : name;
    cfg.model_path = sp.model_path;
    cfg.max_connections = sp.n_parallel + sp.queue_max + 64;

    srv_sched *s = srv_sched_start(&sp);
    if (!s) { fprintf(stderr, "llmlab serve: cannot start the scheduler thread\n"); free(key); return 1; }
    char err[512];
    srv_http *h = srv_http_start(&cfg, s, err, sizeof err); // listening while the model loads: /health says 503
    if (!h) {
        fprintf(stderr, "llmlab serve: %s\n", err);
        srv_sched_free(s);
        free(key);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "llmlab serve: listening on http://%s%s%s:%d%s; loading %s\n", strchr(cfg.host, ':') ? "[" : "",
            cfg.host, strchr(cfg.host, ':') ? "]" : "", srv_http_port(h), cfg.api_key ? " (API key required)" : "",
            sp.model_path);
    srv_state st;
    while ((st = srv_sched_state(s, err, sizeof err)) == SRV_LOADING && !g_stop) usleep(20000);
    int rc = 0;
    if (st == SRV_FAILED) {
        fprintf(stderr, "llmlab serve: %s\n", err);
        rc = 1;
    } else if (!g_stop) {
        fprintf(stderr, "llmlab serve: ready: %s as '%s', %d slots x %d tokens\n", srv_sched_describe(s),
                cfg.model_name, sp.n_parallel, srv_sched_n_ctx(s));
        while (!g_stop) usleep(100000); // the signal may land on any thread: poll the flag
        fprintf(stderr, "llmlab serve: stopping\n");
    }
    srv_sched_stop(s); // running streams end (with an error event), so the connection threads can finish
    srv_http_stop(h);
    srv_sched_free(s);
    free(key);
    return rc;
}
#else
int cmd_serve(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        fprintf(stdout, "\n(this build has no HTTP library: see below)\n");
        return 0;
    }
    fprintf(stderr, "llmlab serve: this llmlab was built without libmicrohttpd, the HTTP library the server uses.\n"
                    "Install it and rebuild:  sudo apt-get install libmicrohttpd-dev && make\n");
    return 1;
}
#endif
