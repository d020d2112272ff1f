// bench_cli.c — the command faces of the model lab's benchmark: `llmlab bench model` (flags as llama-bench's)
// and `llmlab bench` (hardware lab, then the models, then the report), and the md/csv/json/jsonl printers.
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/hw.h"
#include "lab/lab.h"
#include "quant/quantize.h"
#include "model/synth.h"

static void fmt_size(char *b, size_t cap, double bytes) {
    if (bytes >= 1073741824.0) snprintf(b, cap, "%.2f GiB", bytes / 1073741824.0);
    else snprintf(b, cap, "%.2f MiB", bytes / 1048576.0);
}

static void fmt_params(char *b, size_t cap, double p) {
    if (p >= 1e9) snprintf(b, cap, "%.2f B", p / 1e9);
    else if (p >= 1e6) snprintf(b, cap, "%.2f M", p / 1e6);
    else snprintf(b, cap, "%.2f K", p / 1e3);
}

void ll_lab_bench_print(FILE *f, const cJSON *doc, const char *format) {
    const cJSON *models = cJSON_GetObjectItem(doc, "results"), *m, *t;
    if (!strcmp(format, "json")) {
        char *s = cJSON_Print(doc);
        if (s) fprintf(f, "%s\n", s);
        free(s);
        return;
    }
    bool md = !strcmp(format, "md"), csv = !strcmp(format, "csv");
    if (md) fprintf(f, "| model | size | params | backend | threads | test | t/s | median t/s | %% of ceiling |\n"
                       "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
    if (csv) fprintf(f, "model,type,size_bytes,params,backend,threads,test,n_prompt,n_gen,n_depth,avg_ts,stddev_ts,median_ts,pct_of_ceiling\n");
    cJSON_ArrayForEach(m, models) {
        char sz[32], pa[32];
        fmt_size(sz, sizeof sz, ll_lab_num(m, "size_bytes"));
        fmt_params(pa, sizeof pa, ll_lab_num(m, "params"));
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tests")) {
            const cJSON *ts = cJSON_GetObjectItem(t, "ts"), *rf = cJSON_GetObjectItem(t, "roofline");
            double pct = ll_lab_num(rf, "pct_of_ceiling");
            if (md) {
                fprintf(f, "| %s %s | %s | %s | %s | %.0f | %s | %.2f ± %.2f | %.2f | ", ll_lab_str(m, "model"),
                        ll_lab_str(m, "type"), sz, pa, ll_lab_str(m, "backend"), ll_lab_num(t, "threads"),
                        ll_lab_str(t, "test"), ll_lab_num(ts, "mean"), ll_lab_num(ts, "sd"), ll_lab_num(ts, "median"));
                if (pct == pct) fprintf(f, "%.1f%% |\n", pct);
                else fprintf(f, "— |\n");
            } else if (csv) {
                fprintf(f, "\"%s\",%s,%.0f,%.0f,%s,%.0f,\"%s\",%.0f,%.0f,%.0f,%.4f,%.4f,%.4f,%.2f\n", ll_lab_str(m, "model"),
                        ll_lab_str(m, "type"), ll_lab_num(m, "size_bytes"), ll_lab_num(m, "params"), ll_lab_str(m, "backend"),
                        ll_lab_num(t, "threads"), ll_lab_str(t, "test"), ll_lab_num(t, "n_prompt"), ll_lab_num(t, "n_gen"),
                        ll_lab_num(t, "n_depth"), ll_lab_num(ts, "mean"), ll_lab_num(ts, "sd"), ll_lab_num(ts, "median"), pct);
            } else { // jsonl: one object per test with the model's identity
                cJSON *o = cJSON_Duplicate(t, true);
                cJSON_AddStringToObject(o, "model", ll_lab_str(m, "model"));
                cJSON_AddStringToObject(o, "file", ll_lab_str(m, "file"));
                cJSON_AddStringToObject(o, "type", ll_lab_str(m, "type"));
                cJSON_AddStringToObject(o, "backend", ll_lab_str(m, "backend"));
                char *s = cJSON_PrintUnformatted(o);
                if (s) fprintf(f, "%s\n", s);
                free(s);
                cJSON_Delete(o);
            }
        }
    }
    if (!md) return;
    fprintf(f, "\n");
    cJSON_ArrayForEach(m, models) {
        const cJSON *l = cJSON_GetObjectItem(m, "load"), *mem = cJSON_GetObjectItem(m, "memory");
        char w[32], kv[32], rss[32];
        fmt_size(w, sizeof w, ll_lab_num(mem, "weights_bytes"));
        fmt_size(kv, sizeof kv, ll_lab_num(mem, "kv_bytes"));
        fmt_size(rss, sizeof rss, ll_lab_num(mem, "peak_rss_bytes"));
        double cold = ll_lab_num(l, "cold_s");
        fprintf(f, "%s: load cold ", ll_lab_str(m, "model"));
        if (cold == cold) fprintf(f, "%.0f ms", cold * 1e3);
        else fprintf(f, "n/a (%s)", ll_lab_str(l, "cold_note"));
        fprintf(f, ", warm %.0f ms; weights %s, KV cache %s (n_ctx %.0f, %s), peak RSS %s\n", ll_lab_num(l, "warm_s") * 1e3,
                w, kv, ll_lab_num(mem, "kv_n_ctx"), ll_lab_str(mem, "kv_type"), rss);
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "ceilings"))
        fprintf(f, "ceilings (%s): read %.1f GB/s [%s]; GEMM %.1f GFLOPS [%s]\n", c->string, ll_lab_num(c, "read_gbps"),
                ll_lab_str(c, "read_source"), ll_lab_num(c, "gemm_gflops"), ll_lab_str(c, "gemm_source"));
}

// ---- flags ---------------------------------------------------------------------------------------------------
static bool parse_list(const char *flag, const char *v, int *out, int *n, int lo, int hi) {
    *n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long x = strtol(tok, &end, 10);
        if (*end || end == tok || x < lo || x > hi || *n >= LL_LAB_MAX_LIST) {
            fprintf(stderr, "llmlab bench: %s expects up to %d comma-separated integers in [%d, %d], got '%s'\n", flag,
                    LL_LAB_MAX_LIST, lo, hi, v);
            return false;
        }
        out[(*n)++] = (int)x;
    }
    if (!*n) fprintf(stderr, "llmlab bench: %s expects a value\n", flag);
    return *n > 0;
}

static void model_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab bench model -m FILE [-m FILE ...] [-p 512] [-n 128] [-d DEPTH] [-r REPS] [-t N]\n"
            "                          [--sequences 1,4,16] [--seq-prompt 128] [--cache-type f16|f32|q8_0]\n"
            "                          [--device cpu|cuda] [-o md|csv|json|jsonl] [--json DIR] [--hw DIR] [--no-cold]\n\n"
            "Speed of the engine on model files, measured as llama-bench does: pp N = one batch of N random tokens\n"
            "from an empty cache (after -d DEPTH tokens of context), tg N = N single-token steps; a warm-up, then -r\n"
            "repetitions: mean ± sd and median t/s. Also cold and warm load time, weights / KV cache / peak RSS, and\n"
            "the fraction of the ceilings reached (generation: weight bytes per token x t/s over the read bandwidth;\n"
            "prompt: FLOPs per token x t/s over the GEMM peak, the int8 one for quantized weights). Ceilings come\n"
            "from `llmlab bench hw` results (memory.json, gemm.json) when present, else a quick measurement.\n"
            "Writes model.json (docs/bench-model.md),\n"
            "with `llmlab fit`'s calibrated prediction of each file's generation speed beside its measurement.\n"
            "Ctrl-C stops after the current repetition: the finished tests are written, marked partial (exit 130).\n\n"
            "  -m FILE        model (GGUF or llama2.c .bin); repeat for several\n"
            "  -p LIST        prompt sizes, e.g. 128,512 (0: none; default 512)\n"
            "  -n LIST        generation lengths (0: none; default 128)\n"
            "  -d LIST        context depth before each test (default 0)\n"
            "  -r N           repetitions (default 5)\n"
            "  -t LIST        threads, at most 4 x the CPUs this process may use (default: its physical cores)\n"
            "  --sequences L  also N parallel sequences (llama-batched-bench -npl): their prompts of --seq-prompt\n"
            "                 tokens as one batch, then -n steps of one token per sequence in one batch: aggregate\n"
            "                 t/s per N (tests 'pp128 x4', 'tg128 x4'); the weights are read once per step for all N\n"
            "  --seq-prompt N prompt tokens per sequence for --sequences (default 128)\n"
            "  --cache-type T the KV cache's type: f16 (default, as llama.cpp), f32 or q8_0\n"
            "  --device D     cpu or cuda (default cpu)\n"
            "  -o FMT         stdout format: md (default), csv, json, jsonl\n"
            "  --json DIR     results folder (default results/raw/<hostname>)\n"
            "  --hw DIR       where bench hw results are (default: the results folder)\n"
            "  --no-cold      skip the cold load\n");
}

// ---- Ctrl-C: the first sets a flag every step checks (results so far are kept, the report is written);
// SA_RESETHAND makes a second one kill at once.
static volatile int g_stop;
static struct sigaction g_old_int;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static volatile int *sigint_catch(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &g_old_int);
    return &g_stop;
}

static void sigint_restore(void) { sigaction(SIGINT, &g_old_int, NULL); }

// The full run's own options (`llmlab bench`).
typedef struct full_opts {
    bool quick, full;
    const char *text, *quality, *types; // -f, --quality, --types
    int chunks;
} full_opts;

// Shared by `bench model` and `bench`: fills cfg (and fo for `bench`) from argv[first..]; returns -1 to go on,
// else an exit status.
static int parse_bench(int argc, char **argv, int first, ll_lab_bench_cfg *cfg, const char **fmt, full_opts *fo) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--no-cold") && strcmp(a, "--quick") && strcmp(a, "--full") && strcmp(a, "-h") &&
                     strcmp(a, "--help");
        if (takes && !v) { fprintf(stderr, "llmlab bench: %s expects a value\n", a); return 1; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { model_usage(stdout); return 0; }
        else if (!strcmp(a, "--no-cold")) cfg->no_cold = true;
        else if (!strcmp(a, "--quick") && fo) fo->quick = true;
        else if (!strcmp(a, "--full") && fo) fo->full = true;
        else if (!strcmp(a, "-f") && fo) fo->text = v;
        else if (!strcmp(a, "--quality") && fo) fo->quality = v;
        else if (!strcmp(a, "--types") && fo) fo->types = v;
        else if (!strcmp(a, "--chunks") && fo) { int n; if (!parse_list(a, v, &fo->chunks, &n, 1, 1 << 20) || n != 1) return 1; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (cfg->n_models >= LL_LAB_MAX_MODELS) { fprintf(stderr, "llmlab bench: at most %d models\n", LL_LAB_MAX_MODELS); return 1; }
            cfg->models[cfg->n_models++] = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { if (!parse_list(a, v, cfg->pp, &cfg->n_pp, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { if (!parse_list(a, v, cfg->tg, &cfg->n_tg, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) { if (!parse_list(a, v, cfg->depth, &cfg->n_depth, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!parse_list(a, v, cfg->threads, &cfg->n_threads, 1, ll_sys_max_threads())) return 1; }
        else if (!strcmp(a, "--sequences") || !strcmp(a, "-npl")) { if (!parse_list(a, v, cfg->seqs, &cfg->n_seqs, 1, 4096)) return 1; }
        else if (!strcmp(a, "--seq-prompt")) { int n; if (!parse_list(a, v, &cfg->seq_prompt, &n, 1, 1 << 16) || n != 1) return 1; }
        else if (!strcmp(a, "--cache-type") || !strcmp(a, "-ctk")) {
            if (!ll_cache_type_parse(v, &cfg->cache_type)) { fprintf(stderr, "llmlab bench: %s expects f16, f32 or q8_0, got '%s'\n", a, v); return 1; }
        }
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) { int n; if (!parse_list(a, v, &cfg->reps, &n, 1, 1000) || n != 1) return 1; }
        else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) { fprintf(stderr, "llmlab bench: --device expects cpu or cuda\n"); return 1; }
            cfg->device = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (strcmp(v, "md") && strcmp(v, "csv") && strcmp(v, "json") && strcmp(v, "jsonl")) {
                fprintf(stderr, "llmlab bench: -o expects md, csv, json or jsonl\n");
                return 1;
            }
            *fmt = v;
        } else if (!strcmp(a, "--json")) cfg->json_dir = v;
        else if (!strcmp(a, "--hw")) cfg->ceil_dir = v;
        else { fprintf(stderr, "llmlab bench: unknown option '%s'\n", a); return 1; }
        if (takes) i++;
    }
    return -1;
}

int ll_lab_bench_model_main(int argc, char **argv) {
    ll_lab_bench_cfg cfg;
    ll_lab_bench_cfg_init(&cfg);
    cfg.progress = true;
    const char *fmt = "md";
    int rc = parse_bench(argc, argv, 1, &cfg, &fmt, NULL);
    if (rc >= 0) return rc;
    if (!cfg.n_models) { fprintf(stderr, "llmlab bench model: no model given (-m FILE)\n"); return 1; }
    ll_error err = {0};
    cJSON *doc = NULL;
    cfg.interrupt = sigint_catch();
    ll_status st = ll_lab_bench_run(&cfg, &doc, &err);
    sigint_restore();
    if (st != LL_OK && !(st == LL_ERR_INTERRUPTED && doc)) { fprintf(stderr, "llmlab bench model: %s\n", err.message); return 1; }
    ll_lab_bench_print(stdout, doc, fmt);
    char dir[512];
    ll_lab_default_dir(dir, sizeof dir);
    fprintf(stderr, "bench model: wrote %s/model.json%s\n", cfg.json_dir ? cfg.json_dir : dir,
            st == LL_OK ? "" : " (interrupted: the tests that finished, marked partial)");
    cJSON_Delete(doc);
    return st == LL_OK ? 0 : 130;
}

// The default model set of a full run: a synthetic model at a shape sized to the machine (smollm-135m with
// --quick or under 8 GiB available, else llama-3.2-1b), written with synth and quantized to the types users
// compare (F16, Q8_0, Q4_K_M, Q4_0) in a temporary folder that is removed afterwards.
typedef struct synth_set {
    char dir[512];
    char paths[4][600];
    int n;
} synth_set;

static void synth_set_remove(synth_set *s) {
    for (int i = 0; i < s->n; i++) unlink(s->paths[i]);
    if (s->dir[0]) rmdir(s->dir);
    s->n = 0;
}

static ll_status synth_model_set(synth_set *s, bool quick, volatile int *stop, ll_error *err) {
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/llmlab-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = 0;
        return ll_err_set(err, LL_ERR_IO, "cannot make a temporary folder for the synthetic models: %s", strerror(errno));
    }
    bool big = !quick && ll_sys_mem_available() > (8ull << 30);
    const char *preset = big ? "llama-3.2-1b" : "smollm-135m";
    char vocab[4096];
    const char *sh = getenv("LLMLAB_SHARED");
    snprintf(vocab, sizeof vocab, "%s/models/vocab/ggml-vocab-llama-spm.gguf", sh && *sh ? sh : "../shared");
    ll_synth_params sp = ll_synth_default_params();
    sp.preset = preset;
    sp.type = LL_TYPE_F16;
    sp.vocab_path = access(vocab, R_OK) == 0 ? vocab : "builtin";
    sp.progress = true;
    char dir[sizeof s->dir]; // a copy: snprintf into s->paths from s->dir would alias one object
    memcpy(dir, s->dir, sizeof dir);
    snprintf(s->paths[0], sizeof s->paths[0], "%s/%s-F16.gguf", dir, preset);
    fprintf(stderr, "bench: writing synthetic %s models in %s (vocabulary: %s)\n", preset, s->dir, sp.vocab_path);
    ll_status st = ll_synth_write(s->paths[0], &sp, err);
    s->n = 1; // removed below on failure (the writer leaves no partial file, but a finished one must go too)
    const char *types[] = {"Q8_0", "Q4_K_M", "Q4_0"};
    for (int i = 0; i < 3 && st == LL_OK; i++) {
        if (*stop) { st = ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted while writing the synthetic models"); break; }
        ll_quantize_params qp = ll_quantize_default_params();
        if (!ll_ftype_from_name(types[i], &qp.ftype)) LL_ASSERT(!"known file type");
        qp.interrupt = stop;
        snprintf(s->paths[s->n], sizeof s->paths[0], "%s/%s-%s.gguf", dir, preset, types[i]);
        st = ll_quantize_file(s->paths[0], s->paths[s->n], &qp, NULL, err);
        s->n++;
    }
    if (st == LL_OK && *stop) st = ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted while writing the synthetic models");
    if (st != LL_OK) synth_set_remove(s);
    return st;
}

// ---- run.json: what a full run did, step by step (the report states a partial run from it) -----------------
typedef struct run_log {
    cJSON *doc, *steps;
    const char *dir;
    double t0;
} run_log;

static void utc_now(char *b, size_t cap) {
    time_t now = time(NULL);
    strftime(b, cap, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

static void run_log_write(run_log *r) {
    ll_error e = {0};
    if (ll_lab_json_write(r->dir, "run", r->doc, &e) != LL_OK) fprintf(stderr, "llmlab bench: %s\n", e.message);
}

static void run_log_init(run_log *r, const char *dir, int argc, char **argv) {
    r->dir = dir, r->t0 = ll_time_s();
    r->doc = cJSON_CreateObject();
    cJSON_AddStringToObject(r->doc, "schema", "llmlab.run/1");
    char cmd[1024] = "llmlab";
    for (int i = 0; i < argc; i++) snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
    cJSON_AddStringToObject(r->doc, "command", cmd);
    char t[32];
    utc_now(t, sizeof t);
    cJSON_AddStringToObject(r->doc, "started_utc", t);
    cJSON_AddStringToObject(r->doc, "status", "running");
    r->steps = cJSON_AddArrayToObject(r->doc, "steps");
    run_log_write(r); // a run killed outright still says it did not finish
}

// status: "done", "interrupted", "failed", "skipped"; what: a line for the report.
static void run_log_step(run_log *r, const char *step, const char *status, double t_start, const char *what) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "step", step);
    cJSON_AddStringToObject(s, "status", status);
    cJSON_AddNumberToObject(s, "seconds", ll_time_s() - t_start);
    cJSON_AddStringToObject(s, "detail", what ? what : "");
    cJSON_AddItemToArray(r->steps, s);
    run_log_write(r);
}

static void run_log_end(run_log *r, const char *status) {
    char t[32];
    utc_now(t, sizeof t);
    cJSON_ReplaceItemInObject(r->doc, "status", cJSON_CreateString(status));
    cJSON_AddStringToObject(r->doc, "finished_utc", t);
    cJSON_AddNumberToObject(r->doc, "seconds", ll_time_s() - r->t0);
    run_log_write(r);
    cJSON_Delete(r->doc);
}

// The quality step's model and text: --quality, else the first -m; -f, else $LLMLAB_SHARED/data/wiki.test.raw.
static const char *quality_text(const full_opts *fo, char *buf, size_t cap) {
    if (fo->text) return fo->text;
    const char *sh = getenv("LLMLAB_SHARED");
    snprintf(buf, cap, "%s/data/wiki.test.raw", sh && *sh ? sh : "../shared");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

// The full run's state shared by its steps.
typedef struct full_run {
    ll_lab_bench_cfg cfg;
    full_opts fo;
    const char *fmt;
    char dir[512];
    volatile int *stop;
    run_log log;
    bool failed;
} full_run;

// Records a step's outcome: st (LL_OK, LL_ERR_INTERRUPTED or an error, said on stderr) with err's message.
static void step_end(full_run *r, const char *step, ll_status st, double t0, const ll_error *err) {
    if (st != LL_OK && st != LL_ERR_INTERRUPTED) fprintf(stderr, "llmlab bench: %s: %s\n", step, err->message), r->failed = true;
    const char *status = st == LL_OK ? (*r->stop ? "interrupted" : "done") : st == LL_ERR_INTERRUPTED ? "interrupted" : "failed";
    run_log_step(&r->log, step, status, t0, st == LL_OK ? NULL : err->message);
}

// 1. hardware: bench hw, quick unless --full; with --hw DIR the results there are used instead.
static void step_hardware(full_run *r) {
    double t0 = ll_time_s();
    if (r->cfg.ceil_dir) {
        char msg[600];
        snprintf(msg, sizeof msg, "not measured: ceilings taken from %s (--hw)", r->cfg.ceil_dir);
        run_log_step(&r->log, "hardware", "skipped", t0, msg);
        return;
    }
    fprintf(stderr, "bench: step 1/4: hardware (llmlab bench hw%s)\n", r->fo.full ? " --full" : " --quick");
    ll_hw_config hc;
    ll_hw_config_init(&hc);
    hc.quick = !r->fo.full, hc.full = r->fo.full, hc.json_dir = r->dir, hc.interrupt = r->stop;
    ll_error err = {0};
    step_end(r, "hardware", ll_hw_run(&hc, stdout, &err), t0, &err);
}

// 2-3. the models' speed: the -m files, else a synthetic set sized to the machine (removed afterwards).
static void step_models(full_run *r) {
    ll_lab_bench_cfg *cfg = &r->cfg;
    if (r->fo.quick && cfg->n_pp == 1 && cfg->pp[0] == 512) cfg->pp[0] = 128, cfg->tg[0] = 32;
    synth_set set = {0};
    ll_error err = {0};
    double t0 = ll_time_s();
    if (!*r->stop && !cfg->n_models) {
        fprintf(stderr, "bench: step 2/4: writing the synthetic model set\n");
        step_end(r, "synthetic models", synth_model_set(&set, r->fo.quick, r->stop, &err), t0, &err);
        for (int i = 0; i < set.n; i++) cfg->models[cfg->n_models++] = set.paths[i];
    }
    t0 = ll_time_s();
    if (!*r->stop && cfg->n_models) {
        fprintf(stderr, "bench: step 3/4: model speed (llmlab bench model, %d model(s))\n", cfg->n_models);
        cJSON *doc = NULL;
        ll_status st = ll_lab_bench_run(cfg, &doc, &err);
        if (doc) ll_lab_bench_print(stdout, doc, r->fmt);
        cJSON_Delete(doc);
        step_end(r, "model speed", st, t0, &err);
    }
    synth_set_remove(&set);
    if (set.dir[0]) cfg->n_models = 0; // those paths are gone
}

// 4. quality of the real model's quantizations: --quality, else the first -m; text -f, else the shared one.
static void step_quality(full_run *r, const char *qmodel) {
    char tbuf[4096];
    const char *text = quality_text(&r->fo, tbuf, sizeof tbuf);
    double t0 = ll_time_s();
    if (*r->stop) return;
    if (!qmodel || !text) {
        run_log_step(&r->log, "quality", "skipped", t0, !qmodel ? "not run: no real model given (-m FILE or --quality FILE)"
                                                          : "not run: no text (-f FILE, or ../shared/data/wiki.test.raw)");
        return;
    }
    fprintf(stderr, "bench: step 4/4: quality sweep of %s on %s\n", qmodel, text);
    ll_lab_quality_cfg qc;
    ll_lab_quality_cfg_init(&qc);
    qc.model = qmodel, qc.text = text, qc.json_dir = r->dir, qc.interrupt = r->stop, qc.progress = true;
    if (r->fo.types) qc.types = r->fo.types;
    if (r->fo.chunks > 0) qc.max_chunks = r->fo.chunks;
    if (r->cfg.threads[0] > 0) qc.n_threads = r->cfg.threads[0];
    ll_error err = {0};
    step_end(r, "quality", ll_lab_quality_run(&qc, &err), t0, &err);
}

// `llmlab bench [--quick|--full] [-m FILE ...] [--quality FILE] [-f TEXT] [--json DIR] [--hw DIR]`: the hardware
// lab (or the results in --hw DIR), the models (default: a synthetic set), the quality sweep of the real model,
// then REPORT.md and report.html in the results folder. Ctrl-C stops the current step; what finished is kept and
// the report is still written (marked partial); exit status 130.
int ll_lab_bench_all_main(int argc, char **argv) {
    static full_run r; // large (cfg, log); one per process
    memset(&r, 0, sizeof r);
    ll_lab_bench_cfg_init(&r.cfg);
    r.cfg.progress = true;
    r.fmt = "md";
    int rc = parse_bench(argc, argv, 1, &r.cfg, &r.fmt, &r.fo);
    if (rc >= 0) return rc;
    if (r.fo.quick && r.fo.full) { fprintf(stderr, "llmlab bench: --quick and --full contradict each other; choose one\n"); return 1; }
    if (r.fo.text && access(r.fo.text, R_OK) != 0) { fprintf(stderr, "llmlab bench: cannot read -f %s\n", r.fo.text); return 1; }
    ll_lab_default_dir(r.dir, sizeof r.dir);
    if (r.cfg.json_dir) snprintf(r.dir, sizeof r.dir, "%s", r.cfg.json_dir);
    r.cfg.json_dir = r.dir;
    const char *qmodel = r.fo.quality ? r.fo.quality : r.cfg.n_models ? r.cfg.models[0] : NULL;
    r.stop = r.cfg.interrupt = sigint_catch();
    run_log_init(&r.log, r.dir, argc, argv);
    step_hardware(&r);
    step_models(&r);
    step_quality(&r, qmodel);
    // The report, from whatever finished.
    bool interrupted = *r.stop;
    sigint_restore();
    run_log_end(&r.log, interrupted ? "interrupted" : r.failed ? "failed" : "complete");
    if (interrupted) fprintf(stderr, "bench: interrupted: writing the report from the steps that finished\n");
    ll_error err = {0};
    if (ll_lab_report(r.dir, NULL, r.dir, &err) != LL_OK) { fprintf(stderr, "llmlab bench: %s\n", err.message); return 1; }
    fprintf(stderr, "bench: results and REPORT.md / report.html in %s%s\n", r.dir, interrupted ? " (partial)" : "");
    printf("\nreport: %s/REPORT.md and %s/report.html%s\n", r.dir, r.dir, interrupted ? " (partial: interrupted)" : "");
    return interrupted ? 130 : r.failed ? 1 : 0;
}
