// cmd_perplexity.c — `llmlab perplexity`: llama.cpp's perplexity of a text (src/eval/perplexity.c), KL-divergence
// against a base model in the same pass, and --sweep: quantize a base to several types and tabulate quality.
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/core.h"
#include "eval/perplexity.h"
#include "lab/lab.h"
#include "quant/quantize.h"

#define DEFAULT_SWEEP "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0"

typedef struct ppl_opts {
    const char *model, *text, *base, *json, *sweep, *types, *tokenizer;
    int n_ctx, n_batch, n_threads, chunks;
    bool quiet;
} ppl_opts;

static volatile int g_ppl_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_ppl_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab perplexity -m MODEL -f TEXT [-c CTX] [-b BATCH] [-t N] [--chunks N] [--base BASE]\n"
               "                         [--json FILE]\n"
               "       llmlab perplexity --sweep BASE -f TEXT [-c CTX] [--types %s]\n\n"
               "Method (llama.cpp's llama-perplexity, so the numbers compare): drop one trailing newline of TEXT and\n"
               "tokenize it whole with BOS; cut the ids into floor(n / CTX) chunks of CTX; give each chunk BOS as its\n"
               "first id and evaluate it from an empty KV cache with the logits of every position; score positions\n"
               "j = CTX/2 .. CTX-2 by the NLL of id j+1 under softmax(logits[j]). PPL = exp(mean NLL); the +/- is\n"
               "PPL * sqrt(var(NLL) / (n - 1)). The running PPL is printed after each chunk as [1]4.1234,[2]...\n\n"
               "  -m MODEL          GGUF or llama2.c checkpoint\n"
               "  --tokenizer TOK   llama2.c checkpoints: their tokenizer.bin (default: the one beside the model)\n"
               "  -f TEXT           the text file\n"
               "  -c CTX            chunk length (default 512)\n"
               "  -b BATCH          tokens per evaluation call, <= CTX (default CTX; does not change the result)\n"
               "  -t N              threads (default: physical cores this process may use)\n"
               "  --chunks N        evaluate only the first N chunks\n"
               "  --base BASE       also run BASE on the same chunks and report, per scored token, KL(P_base||P_model)\n"
               "                    (mean, median, 90/95/99th percentile, max), top-1 agreement, RMS of dp (p_model -\n"
               "                    p_base of the correct token) and dPPL = PPL - PPL_base. No logit files are written.\n"
               "  --json FILE       write the results as JSON (atomically)\n"
               "  --sweep BASE      quantize BASE to each of --types in a temporary directory (removed at the end),\n"
               "                    run the --base pass of each against BASE, print size, bits/weight, PPL, dPPL,\n"
               "                    mean KLD and top-1 agreement per type\n"
               "  --types LIST      comma-separated file types for --sweep (default %s)\n"
               "  -q, --quiet       no running PPL line\n",
            DEFAULT_SWEEP, DEFAULT_SWEEP);
}

static int parse_int(const char *flag, int argc, char **argv, int *i, long lo, long hi, int *out) {
    const char *v = cli_value("perplexity", argc, argv, i);
    long n;
    if (!v || !cli_int("perplexity", flag, v, lo, hi, &n)) return 1;
    *out = (int)n;
    return 0;
}

// 0 = parsed, 1 = error (printed), 2 = --help printed.
static int parse(int argc, char **argv, ppl_opts *o) {
    *o = (ppl_opts){.n_ctx = 512};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = !strcmp(a, "-m") || !strcmp(a, "--model") ? &o->model
                         : !strcmp(a, "-f") || !strcmp(a, "--file") ? &o->text
                         : !strcmp(a, "--base") ? &o->base
                         : !strcmp(a, "--json") ? &o->json
                         : !strcmp(a, "--sweep") ? &o->sweep
                         : !strcmp(a, "--types") ? &o->types
                         : !strcmp(a, "--tokenizer") ? &o->tokenizer : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(stdout), rc = 2;
        else if (str) rc = (*str = cli_value("perplexity", argc, argv, &i)) ? 0 : 1;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) rc = parse_int(a, argc, argv, &i, 4, 1 << 20, &o->n_ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) rc = parse_int(a, argc, argv, &i, 1, 1 << 20, &o->n_batch);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = cli_value("perplexity", argc, argv, &i);
            rc = v && cli_threads("perplexity", a, v, &o->n_threads) ? 0 : 1;
        }
        else if (!strcmp(a, "--chunks")) rc = parse_int(a, argc, argv, &i, 1, INT32_MAX, &o->chunks);
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else fprintf(stderr, "llmlab perplexity: unknown argument '%s' (see llmlab perplexity --help)\n", a), rc = 1;
        if (rc) return rc;
    }
    if (!o->text || (!o->model && !o->sweep)) {
        fprintf(stderr, "llmlab perplexity: needs -m MODEL (or --sweep BASE) and -f TEXT (see --help)\n");
        return 1;
    }
    if (o->n_batch > o->n_ctx) {
        fprintf(stderr, "llmlab perplexity: -b %d is larger than -c %d\n", o->n_batch, o->n_ctx);
        return 1;
    }
    o->n_threads = cli_default_threads(o->n_threads);
    return 0;
}

// ---- progress: running PPL on stdout as llama.cpp prints it, ETA lines on stderr --------------------------------
typedef struct progress {
    bool quiet;
    int last_decile;
} progress;

static void on_chunk(void *ud, int done, int n_chunk, double ppl, double el) {
    progress *pr = ud;
    if (!pr->quiet) {
        printf("[%d]%.4f,", done, ppl);
        fflush(stdout);
    }
    int dec = done * 10 / n_chunk;
    if (done == 1 || (dec != pr->last_decile && done < n_chunk)) {
        double per = el / done;
        fprintf(stderr, "%sperplexity: %d/%d chunks, %.3f s per chunk, ETA %.1f s\n", pr->quiet ? "" : "\n", done,
                n_chunk, per, per * (n_chunk - done));
        pr->last_decile = dec;
    }
    if (done == n_chunk && !pr->quiet) printf("\n");
}

static ll_status load(const char *path, const ppl_opts *o, ll_model **m, ll_error *err) {
    ll_model_params mp = ll_model_default_params();
    mp.tokenizer_path = o->tokenizer;
    mp.n_threads = o->n_threads;
    ll_status s = ll_model_load(path, &mp, m, err);
    if (s != LL_OK && !strstr(err->message, path)) ll_err_prefix(err, "%s: ", path); // most messages name it already
    return s;
}

// ---- JSON (written to FILE.tmp.PID, then renamed) ----------------------------------------------------------------
static bool json_write(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = text ? fopen(tmp, "wb") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fflush(f) == 0 && fsync(fileno(f)) == 0) & (fclose(f) == 0) & ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        fprintf(stderr, "llmlab perplexity: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(text);
    return ok;
}

static cJSON *json_header(const ppl_opts *o, const int32_t *ids, int n_ids) {
    char sha[65];
    ll_ppl_ids_sha256(ids, n_ids, sha);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tool", "llmlab perplexity " LLMLAB_VERSION);
    cJSON_AddStringToObject(j, "method", "llama.cpp perplexity: chunks of n_ctx from an empty cache, first id BOS, "
                                         "positions n_ctx/2..n_ctx-2 scored");
    cJSON_AddStringToObject(j, "text", o->text);
    cJSON_AddNumberToObject(j, "n_ctx", o->n_ctx);
    cJSON_AddNumberToObject(j, "n_batch", o->n_batch ? o->n_batch : o->n_ctx);
    cJSON_AddNumberToObject(j, "n_tokens", n_ids);
    cJSON_AddStringToObject(j, "tokens_sha256", sha);
    return j;
}

// ---- one model (optionally against a base) ---------------------------------------------------------------------
static void print_result(const ll_ppl_result *r) {
    printf("Final estimate: PPL = %.4f +/- %.5f   (%llu tokens scored in %d chunks of %d, %.1f s)\n", r->ppl,
           r->ppl_stderr, (unsigned long long)r->n_scored, r->n_done, r->n_ctx, r->seconds);
    if (!r->has_base) return;
    printf("\n%-22s %12s\n", "vs base", "value");
    printf("%-22s %12.4f +/- %.5f\n", "PPL(base)", r->base_ppl, r->base_ppl_stderr);
    printf("%-22s %12.4f +/- %.5f\n", "PPL(model)", r->ppl, r->ppl_stderr);
    printf("%-22s %12.4f\n", "dPPL", r->dppl);
    printf("%-22s %12.6f +/- %.6f\n", "mean KLD", r->kld_mean, r->kld_stderr);
    printf("%-22s %12.6f\n", "median KLD", r->kld_median);
    printf("%-22s %12.6f\n", "90% KLD", r->kld_p90);
    printf("%-22s %12.6f\n", "95% KLD", r->kld_p95);
    printf("%-22s %12.6f\n", "99% KLD", r->kld_p99);
    printf("%-22s %12.6f\n", "max KLD", r->kld_max);
    printf("%-22s %11.3f%% +/- %.3f%%\n", "same top-1", r->top1_pct, r->top1_stderr_pct);
    printf("%-22s %11.3f%%\n", "RMS dp", r->rms_dp_pct);
}

static ll_ppl_params ppl_params(const ppl_opts *o, progress *pr) {
    ll_ppl_params p = ll_ppl_default_params();
    p.n_ctx = o->n_ctx;
    p.n_batch = o->n_batch;
    p.n_threads = o->n_threads;
    p.max_chunks = o->chunks;
    p.interrupt = &g_ppl_stop;
    p.on_chunk = on_chunk;
    p.ud = pr;
    return p;
}

static int tokenize(const ll_model *m, const ppl_opts *o, int32_t **ids, int *n, ll_error *err) {
    size_t len = 0;
    char *text = ll_ppl_read_text(o->text, &len, err);
    if (!text) return 1;
    double t0 = ll_time_s();
    ll_status s = ll_ppl_tokenize(m, text, len, ids, n, err);
    free(text);
    if (s != LL_OK) return 1;
    fprintf(stderr, "perplexity: %s: %d tokens (%.2f s to tokenize), %d chunks of %d, scoring %d positions each\n",
            o->text, *n, ll_time_s() - t0, *n / o->n_ctx, o->n_ctx, o->n_ctx - 1 - o->n_ctx / 2);
    return 0;
}

static int run_one(const ppl_opts *o) {
    ll_error err;
    ll_model *m = NULL, *b = NULL;
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    if (load(o->model, o, &m, &err) != LL_OK || (o->base && load(o->base, o, &b, &err) != LL_OK) ||
        tokenize(m, o, &ids, &n, &err)) {
        cli_fail("perplexity", &err);
        goto done;
    }
    progress pr = {.quiet = o->quiet, .last_decile = 0};
    ll_ppl_params p = ppl_params(o, &pr);
    ll_ppl_result r;
    ll_status s = ll_ppl_run(m, b, ids, n, &p, &r, &err);
    if (s != LL_OK && !(s == LL_ERR_INTERRUPTED && r.n_done > 0)) {
        cli_fail("perplexity", &err);
        goto done;
    }
    if (s == LL_ERR_INTERRUPTED) printf("\n(interrupted: %d of %d chunks)\n", r.n_done, r.n_chunk);
    print_result(&r);
    rc = s == LL_OK ? 0 : 130;
    if (o->json) {
        cJSON *j = json_header(o, ids, n);
        cJSON_AddStringToObject(j, "model", o->model);
        if (o->base) cJSON_AddStringToObject(j, "base", o->base);
        cJSON_AddItemToObject(j, "result", ll_lab_ppl_result_json(&r));
        if (!json_write(o->json, j)) rc = 1;
        cJSON_Delete(j);
    }
done:
    free(ids);
    ll_model_free(b);
    ll_model_free(m);
    return rc;
}

// ---- --sweep: quality vs compression (the lab's quality sweep, src/lab/quality.c, printed as a table) ----------
static bool check_types(const char *list) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
        ll_ftype f;
        if (!ll_ftype_from_name(t, &f)) {
            fprintf(stderr, "llmlab perplexity: --types: unknown type '%s' (one of: %s)\n", t, ll_ftype_list());
            return false;
        }
    }
    if (!n) fprintf(stderr, "llmlab perplexity: --types is empty\n");
    return n > 0;
}

static void sweep_print(const cJSON *doc) {
    printf("\n%-8s %11s %6s %10s %10s %10s %8s\n", "type", "file size", "bpw", "PPL", "dPPL", "mean KLD", "top-1 %");
    const cJSON *row;
    int i = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(doc, "sweep")) {
        const cJSON *r = cJSON_GetObjectItem(row, "result"), *b = cJSON_GetObjectItem(r, "vs_base");
        char sz[32];
        double bpw = ll_lab_num(row, "bits_per_weight");
        ll_fmt_bytes(sz, sizeof sz, ll_lab_num(row, "file_bytes"));
        printf("%-8s %11s %6.2f ", ll_lab_str(row, "type"), sz, bpw == bpw ? bpw : 0.0);
        if (!r) printf("n/a: %s\n", ll_lab_str(row, "error"));
        else if (i == 0 || !b) printf("%10.4f %10s %10s %8s\n", ll_lab_num(r, "ppl"), "-", "-", "-");
        else printf("%10.4f %+10.4f %10.6f %8.3f\n", ll_lab_num(r, "ppl"), ll_lab_num(b, "dppl"), ll_lab_num(b, "kld_mean"),
                    ll_lab_num(b, "top1_pct"));
        i++;
    }
}

static int run_sweep(const ppl_opts *o) {
    ll_lab_quality_cfg q;
    ll_lab_quality_cfg_init(&q);
    q.model = o->sweep;
    q.text = o->text;
    q.types = o->types ? o->types : DEFAULT_SWEEP;
    q.n_ctx = o->n_ctx;
    q.n_batch = o->n_batch;
    q.max_chunks = o->chunks;
    q.n_threads = o->n_threads;
    q.tokenizer = o->tokenizer;
    q.json_path = o->json;
    q.tool = "llmlab perplexity --sweep " LLMLAB_VERSION;
    q.interrupt = &g_ppl_stop;
    q.progress = true;
    cJSON *doc = NULL;
    q.doc = &doc;
    if (!check_types(q.types)) return 1;
    ll_error err = {0};
    ll_status s = ll_lab_quality_run(&q, &err);
    if (doc) sweep_print(doc);
    cJSON_Delete(doc);
    if (s == LL_ERR_INTERRUPTED) return 130;
    return s == LL_OK ? 0 : cli_fail("perplexity", &err);
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 2 ? 0 : 1;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; // a second Ctrl-C kills at once
    sigaction(SIGINT, &sa, &old);
    rc = o.sweep ? run_sweep(&o) : run_one(&o);
    sigaction(SIGINT, &old, NULL);
    return rc;
}
