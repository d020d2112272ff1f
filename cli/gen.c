// gen.c — what `run` and `chat` share (see gen.h): flags, loading, Ctrl-C, streaming ll_generate's text.
#include "gen.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

volatile sig_atomic_t g_gen_interrupted;
static volatile int g_eval_interrupt; // what ll_eval watches (same events as g_gen_interrupted)

static void on_sigint(int sig) {
    (void)sig;
    g_gen_interrupted = 1;
    g_eval_interrupt = 1;
}

void gen_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; // no SA_RESTART: a blocked read returns so chat can notice
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

void gen_opts_default(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 256;
    o->sp = ll_sampler_default_params();
}

void gen_print_flags_help(FILE *f) {
    fprintf(f,
            "model and context:\n"
            "  -m, --model FILE        GGUF model, or a llama2.c checkpoint (.bin)\n"
            "  --tokenizer FILE        llama2.c tokenizer (default: tokenizer.bin beside the checkpoint)\n"
            "  -c, --ctx-size N        context size in tokens (default: the model's, at most 4096)\n"
            "  -b, --batch-size N      prompt tokens evaluated per step (default 512)\n"
            "  -t, --threads N         threads (default: physical cores this process may use)\n"
            "  --device D              cpu, cuda or auto (default auto: CUDA when a GPU is found)\n"
            "  --cache-type T, -ctk T  the KV cache's type: f16 (default, as llama.cpp), f32 or q8_0\n"
            "  -n, --n-predict N       tokens to generate (default 256; -1 = until end of text or full context)\n"
            "  --ignore-eos            keep generating past end-of-text tokens\n"
            "  --stop STR              stop when the text contains STR (not printed); repeatable, at most %d\n"
            "sampling (llama.cpp's order: repeat penalty, top-k, top-p, min-p, temperature):\n"
            "  --temp T                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K               keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P               nucleus: smallest set with probability >= P (default 0.95; 1 = off)\n"
            "  --min-p P               drop tokens below P x the best one's probability (default 0.05; 0 = off)\n"
            "  --repeat-penalty R      penalise the last --repeat-last-n tokens (default 1.0 = off)\n"
            "  --repeat-last-n N       (default 64)\n"
            "  -s, --seed N            random seed (default 42; same seed, same tokens)\n"
            "  --verbose               print the model, the memory plan and timings\n",
            LL_GEN_MAX_STOPS);
}

static bool is(const char *a, const char *s1, const char *s2) { return !strcmp(a, s1) || (s2 && !strcmp(a, s2)); }

int gen_parse_flag(const char *cmd, gen_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    long l;
    double d;
#define VAL() if (!(v = cli_value(cmd, argc, argv, i))) return -1
    if (is(a, "-m", "--model")) { VAL(); o->model = v; }
    else if (is(a, "--tokenizer", NULL)) { VAL(); o->tokenizer = v; }
    else if (is(a, "-p", "--prompt")) { VAL(); o->prompt = v; }
    else if (is(a, "-f", "--file")) { VAL(); o->prompt_file = v; }
    else if (is(a, "-c", "--ctx-size")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 24, &l)) return -1; o->n_ctx = (int)l; }
    else if (is(a, "-b", "--batch-size")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 16, &l)) return -1; o->n_batch = (int)l; }
    else if (is(a, "-t", "--threads")) { VAL(); if (!cli_threads(cmd, a, v, &o->n_threads)) return -1; }
    else if (is(a, "-n", "--n-predict")) { VAL(); if (!cli_int(cmd, a, v, -1, 1 << 24, &l)) return -1; o->n_predict = (int)l; }
    else if (is(a, "--temp", NULL)) { VAL(); if (!cli_float(cmd, a, v, 0, 100, &d)) return -1; o->sp.temp = (float)d; }
    else if (is(a, "--top-k", NULL)) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 24, &l)) return -1; o->sp.top_k = (int)l; }
    else if (is(a, "--top-p", NULL)) { VAL(); if (!cli_float(cmd, a, v, 0, 1, &d)) return -1; o->sp.top_p = (float)d; }
    else if (is(a, "--min-p", NULL)) { VAL(); if (!cli_float(cmd, a, v, 0, 1, &d)) return -1; o->sp.min_p = (float)d; }
    else if (is(a, "--repeat-penalty", NULL)) { VAL(); if (!cli_float(cmd, a, v, 0.01, 100, &d)) return -1; o->sp.repeat_penalty = (float)d; }
    else if (is(a, "--repeat-last-n", NULL)) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &l)) return -1; o->sp.repeat_last_n = (int)l; }
    else if (is(a, "-s", "--seed")) { VAL(); if (!cli_u64(cmd, a, v, &o->sp.seed)) return -1; }
    else if (is(a, "--template", NULL)) { VAL(); o->template_name = v; }
    else if (is(a, "--device", NULL)) { VAL(); o->device = v; }
    else if (is(a, "--cache-type", "-ctk")) {
        VAL();
        if (!ll_cache_type_parse(v, &o->cache_type)) {
            fprintf(stderr, "llmlab %s: %s expects f16, f32 or q8_0, got '%s'\n", cmd, a, v);
            return -1;
        }
    }
    else if (is(a, "--stop", NULL)) {
        VAL();
        if (o->n_stops == LL_GEN_MAX_STOPS || !*v || strlen(v) > LL_GEN_MAX_STOP_LEN) {
            fprintf(stderr, "llmlab %s: --stop takes 1 to %d bytes, at most %d times\n", cmd, LL_GEN_MAX_STOP_LEN,
                    LL_GEN_MAX_STOPS);
            return -1;
        }
        o->stops[o->n_stops++] = v;
    }
    else if (is(a, "--ignore-eos", NULL)) o->ignore_eos = true;
    else if (is(a, "--echo", NULL)) o->echo = true;
    else if (is(a, "--verbose", "-v")) o->verbose = true;
    else return 0;
#undef VAL
    return 1;
}

bool gen_open(const char *cmd, const gen_opts *o, gen_session *g) {
    memset(g, 0, sizeof *g);
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.tokenizer_path = o->tokenizer;
    mp.n_threads = cli_default_threads(o->n_threads);
    mp.verbose = o->verbose;
    if (o->verbose) {
        ll_log_set_level(LL_LOG_INFO);
        fprintf(stderr, "threads: %d (this process may use %d CPU%s)\n", mp.n_threads, ll_sys_allowed_cpus(),
                ll_sys_allowed_cpus() == 1 ? "" : "s");
    }
    double t0 = ll_time_s();
    if (ll_model_load(o->model, &mp, &g->m, &err) != LL_OK) {
        cli_fail(cmd, &err);
        return false;
    }
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = o->n_ctx;
    if (o->n_batch) cp.n_batch = o->n_batch;
    cp.verbose = o->verbose;
    cp.device = o->device;
    cp.cache_type = o->cache_type;
    if (ll_context_init(g->m, &cp, &g->c, &err) != LL_OK) {
        cli_fail(cmd, &err);
        gen_close(g);
        return false;
    }
    g->load_s = ll_time_s() - t0;
    ll_context_set_interrupt(g->c, &g_eval_interrupt);
    g->s = ll_sampler_init(&o->sp, ll_model_n_vocab(g->m));
    return true;
}

void gen_close(gen_session *g) {
    ll_sampler_free(g->s);
    ll_context_free(g->c);
    ll_model_free(g->m);
    memset(g, 0, sizeof *g);
}

typedef struct sink {
    FILE *out;
    char *text; // the answer so far, when asked for
    size_t len;
    bool keep;
} sink;

static bool on_text(const char *text, size_t len, void *user) {
    sink *k = user;
    fwrite(text, 1, len, k->out);
    fflush(k->out);
    if (k->keep) {
        char *b = realloc(k->text, k->len + len + 1);
        LL_ASSERT(b != NULL);
        memcpy(b + k->len, text, len);
        b[k->len + len] = 0;
        k->text = b;
        k->len += len;
    }
    return true;
}

ll_status gen_generate(gen_session *g, const gen_opts *o, const int32_t *ids, int n_ids, bool strip_leading_space,
                       const char *const *extra_stops, FILE *out, char **answer, ll_gen_result *res, ll_error *err) {
    const char *stops[LL_GEN_MAX_STOPS];
    int n_stops = 0;
    for (int i = 0; extra_stops && extra_stops[i] && n_stops < LL_GEN_MAX_STOPS; i++) stops[n_stops++] = extra_stops[i];
    for (int i = 0; i < o->n_stops; i++) {
        if (n_stops == LL_GEN_MAX_STOPS) {
            fprintf(stderr, "(--stop '%s' and after left out: the template's stop strings fill the %d allowed)\n",
                    o->stops[i], LL_GEN_MAX_STOPS);
            break;
        }
        stops[n_stops++] = o->stops[i];
    }
    ll_gen_params gp = ll_gen_default_params();
    gp.max_tokens = o->n_predict;
    gp.stops = stops;
    gp.n_stops = n_stops;
    gp.eog_ends = !o->ignore_eos;
    gp.strip_leading_space = strip_leading_space;
    sink k = {.out = out, .keep = answer != NULL};
    g_gen_interrupted = 0;
    g_eval_interrupt = 0;
    ll_status s = ll_generate(g->c, g->s, ids, n_ids, &gp, on_text, &k, res, err);
    if (res->finish == LL_FINISH_CONTEXT)
        fprintf(stderr, "\n(context full: %d tokens; use a larger -c for longer text)", ll_context_n_ctx(g->c));
    if (answer) *answer = k.text ? k.text : calloc(1, 1);
    return s;
}

void gen_print_stats(const gen_session *g, const ll_gen_result *r) {
    fprintf(stderr, "\n\nload: %.0f ms | ", g->load_s * 1e3);
    if (r->n_prompt_eval < r->n_prompt) // interrupted: a rate over tokens not evaluated would be false
        fprintf(stderr, "prompt: %d of %d tokens in %.0f ms (interrupted)", r->n_prompt_eval, r->n_prompt,
                r->prompt_s * 1e3);
    else
        fprintf(stderr, "prompt: %d tokens in %.0f ms, %.2f t/s", r->n_prompt, r->prompt_s * 1e3,
                r->prompt_s > 0 ? r->n_prompt / r->prompt_s : 0);
    fprintf(stderr, " | generation: %d tokens in %.0f ms, %.2f t/s\n", r->n_gen, r->gen_s * 1e3,
            r->gen_s > 0 ? r->n_gen / r->gen_s : 0);
}
