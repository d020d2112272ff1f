// gen.c — the shared generation loop of `run` and `chat` (see gen.h).
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
            "  -n, --n-predict N       tokens to generate (default 256; -1 = until end of text or full context)\n"
            "  --ignore-eos            keep generating past end-of-text tokens\n"
            "sampling (llama.cpp's order: repeat penalty, top-k, top-p, min-p, temperature):\n"
            "  --temp T                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K               keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P               nucleus: smallest set with probability >= P (default 0.95; 1 = off)\n"
            "  --min-p P               drop tokens below P x the best one's probability (default 0.05; 0 = off)\n"
            "  --repeat-penalty R      penalise the last --repeat-last-n tokens (default 1.0 = off)\n"
            "  --repeat-last-n N       (default 64)\n"
            "  -s, --seed N            random seed (default 42; same seed, same tokens)\n"
            "  --verbose               print the model, the memory plan and timings\n");
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

static void append(char **buf, size_t *len, const char *s) {
    size_t n = strlen(s);
    char *b = realloc(*buf, *len + n + 1);
    LL_ASSERT(b != NULL);
    memcpy(b + *len, s, n + 1);
    *buf = b;
    *len += n;
}

// true when text ends with one of stops; then cut it off.
static bool hit_stop(char *text, size_t *len, const char *const *stops) {
    for (int i = 0; stops && stops[i]; i++) {
        size_t sl = strlen(stops[i]);
        if (*len >= sl && !memcmp(text + *len - sl, stops[i], sl)) {
            *len -= sl;
            text[*len] = 0;
            return true;
        }
    }
    return false;
}

ll_status gen_generate(gen_session *g, const gen_opts *o, const int32_t *ids, int n_ids, bool strip_leading_space,
                       const char *const *stops, FILE *out, char **answer, gen_stats *st, ll_error *err) {
    memset(st, 0, sizeof *st);
    g_gen_interrupted = 0;
    g_eval_interrupt = 0;
    double t0 = ll_time_s();
    int past0 = ll_context_n_past(g->c);
    ll_status s = n_ids > 0 ? ll_eval(g->c, ids, n_ids, false, err) : LL_OK;
    for (int i = 0; i < n_ids; i++) ll_sampler_accept(g->s, ids[i]);
    st->n_prompt_asked = n_ids;
    st->n_prompt = s == LL_OK ? n_ids : ll_context_n_past(g->c) - past0; // the batches done before Ctrl-C
    st->prompt_s = ll_time_s() - t0;
    if (s == LL_ERR_INTERRUPTED) st->interrupted = true;
    if (s != LL_OK) return s == LL_ERR_INTERRUPTED ? LL_OK : s;
    ll_detok *dt = ll_detok_init(g->m);
    ll_detok_set_strip_leading_space(dt, strip_leading_space);
    char *text = NULL; // the answer so far: stop strings are matched here, and held back until decided
    size_t len = 0, printed = 0;
    size_t hold = 0; // bytes kept back because they may begin a stop string
    for (int i = 0; stops && stops[i]; i++) if (strlen(stops[i]) > hold) hold = strlen(stops[i]);
    append(&text, &len, "");
    double t1 = ll_time_s();
    while ((o->n_predict < 0 || st->n_gen < o->n_predict) && !g_gen_interrupted) {
        int32_t id = ll_sample(g->c, g->s);
        ll_sampler_accept(g->s, id);
        st->n_gen++;
        bool eog = !o->ignore_eos && ll_model_is_eog(g->m, id);
        if (!eog) {
            append(&text, &len, ll_detok_push(dt, id));
        }
        bool stop = eog || hit_stop(text, &len, stops);
        size_t ready = stop ? len : (len > hold ? len - hold : 0);
        if (ready > printed) {
            fwrite(text + printed, 1, ready - printed, out);
            fflush(out);
            printed = ready;
        }
        if (stop || ll_context_n_past(g->c) >= ll_context_n_ctx(g->c)) break;
        s = ll_eval(g->c, &id, 1, false, err);
        if (s != LL_OK) break;
    }
    const char *rest = ll_detok_flush(dt);
    append(&text, &len, rest);
    if (len > printed) fwrite(text + printed, 1, len - printed, out);
    fflush(out);
    ll_detok_free(dt);
    st->gen_s = ll_time_s() - t1;
    st->interrupted = g_gen_interrupted || s == LL_ERR_INTERRUPTED;
    if (answer) *answer = text;
    else free(text);
    return s == LL_ERR_INTERRUPTED ? LL_OK : s;
}

void gen_print_stats(const gen_session *g, const gen_stats *st) {
    if (st->n_prompt < st->n_prompt_asked) { // stopped in the prompt: no rate for a part-evaluated batch
        fprintf(stderr, "\n\nload: %.0f ms | prompt: interrupted after %.0f ms, %d of %d tokens evaluated\n",
                g->load_s * 1e3, st->prompt_s * 1e3, st->n_prompt < 0 ? 0 : st->n_prompt, st->n_prompt_asked);
        return;
    }
    fprintf(stderr, "\n\nload: %.0f ms | prompt: %d tokens in %.0f ms, %.2f t/s | generation: %d tokens in %.0f ms, %.2f t/s\n",
            g->load_s * 1e3, st->n_prompt, st->prompt_s * 1e3, st->prompt_s > 0 ? st->n_prompt / st->prompt_s : 0,
            st->n_gen, st->gen_s * 1e3, st->gen_s > 0 ? st->n_gen / st->gen_s : 0);
}
