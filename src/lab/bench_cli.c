// bench_cli.c — the command faces of the model lab's benchmark: `llmlab bench model` (flags as llama-bench's)
// and `llmlab bench` (hardware lab, then the models, then the report), and the md/csv/json/jsonl printers.
#include <errno.h>
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
        fprintf(f, ", warm %.0f ms; weights %s, KV cache %s (n_ctx %.0f, F32), peak RSS %s\n", ll_lab_num(l, "warm_s") * 1e3,
                w, kv, ll_lab_num(mem, "kv_n_ctx"), rss);
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
            "                          [--device cpu|cuda] [-o md|csv|json|jsonl] [--json DIR] [--hw DIR] [--no-cold]\n\n"
            "Speed of the engine on model files, measured as llama-bench does: pp N = one batch of N random tokens\n"
            "from an empty cache (after -d DEPTH tokens of context), tg N = N single-token steps; a warm-up, then -r\n"
            "repetitions: mean ± sd and median t/s. Also cold and warm load time, weights / KV cache / peak RSS, and\n"
            "the fraction of the ceilings reached (generation: weight bytes per token x t/s over the read bandwidth;\n"
            "prompt: FLOPs per token x t/s over the GEMM peak). Ceilings come from `llmlab bench hw` results\n"
            "(memory.json, gemm.json) when present, else a quick measurement. Writes model.json (docs/bench-model.md).\n\n"
            "  -m FILE        model (GGUF or llama2.c .bin); repeat for several\n"
            "  -p LIST        prompt sizes, e.g. 128,512 (0: none; default 512)\n"
            "  -n LIST        generation lengths (0: none; default 128)\n"
            "  -d LIST        context depth before each test (default 0)\n"
            "  -r N           repetitions (default 5)\n"
            "  -t LIST        threads (default: physical cores)\n"
            "  --device D     cpu or cuda (default cpu)\n"
            "  -o FMT         stdout format: md (default), csv, json, jsonl\n"
            "  --json DIR     results folder (default results/raw/<hostname>)\n"
            "  --hw DIR       where bench hw results are (default: the results folder)\n"
            "  --no-cold      skip the cold load\n");
}

// Shared by `bench model` and `bench`: fills cfg from argv[first..]; returns -1 to go on, else an exit status.
static int parse_bench(int argc, char **argv, int first, ll_lab_bench_cfg *cfg, const char **fmt, bool *quick) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--no-cold") && strcmp(a, "--quick") && strcmp(a, "-h") && strcmp(a, "--help");
        if (takes && !v) { fprintf(stderr, "llmlab bench: %s expects a value\n", a); return 1; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { model_usage(stdout); return 0; }
        else if (!strcmp(a, "--no-cold")) cfg->no_cold = true;
        else if (!strcmp(a, "--quick") && quick) *quick = true;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (cfg->n_models >= LL_LAB_MAX_MODELS) { fprintf(stderr, "llmlab bench: at most %d models\n", LL_LAB_MAX_MODELS); return 1; }
            cfg->models[cfg->n_models++] = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { if (!parse_list(a, v, cfg->pp, &cfg->n_pp, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { if (!parse_list(a, v, cfg->tg, &cfg->n_tg, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) { if (!parse_list(a, v, cfg->depth, &cfg->n_depth, 0, 1 << 20)) return 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!parse_list(a, v, cfg->threads, &cfg->n_threads, 1, 1024)) return 1; }
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
    cJSON *doc;
    if (ll_lab_bench_run(&cfg, &doc, &err) != LL_OK) { fprintf(stderr, "llmlab bench model: %s\n", err.message); return 1; }
    ll_lab_bench_print(stdout, doc, fmt);
    char dir[512];
    ll_lab_default_dir(dir, sizeof dir);
    fprintf(stderr, "bench model: wrote %s/model.json\n", cfg.json_dir ? cfg.json_dir : dir);
    cJSON_Delete(doc);
    return 0;
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

static ll_status synth_model_set(synth_set *s, bool quick, ll_error *err) {
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
    if (st != LL_OK) { synth_set_remove(s); return st; }
    s->n = 1;
    const char *types[] = {"Q8_0", "Q4_K_M", "Q4_0"};
    for (int i = 0; i < 3; i++) {
        ll_quantize_params qp = ll_quantize_default_params();
        if (!ll_ftype_from_name(types[i], &qp.ftype)) LL_ASSERT(!"known file type");
        snprintf(s->paths[s->n], sizeof s->paths[0], "%s/%s-%s.gguf", dir, preset, types[i]);
        if ((st = ll_quantize_file(s->paths[0], s->paths[s->n], &qp, NULL, err)) != LL_OK) { synth_set_remove(s); return st; }
        s->n++;
    }
    return LL_OK;
}

// `llmlab bench [--quick] [-m FILE ...] [--json DIR]`: the hardware lab, then the models (default: stories260K
// from $LLMLAB_SHARED when there), then REPORT.md and report.html in the results folder.
int ll_lab_bench_all_main(int argc, char **argv) {
    ll_lab_bench_cfg cfg;
    ll_lab_bench_cfg_init(&cfg);
    cfg.progress = true;
    const char *fmt = "md";
    bool quick = false;
    int rc = parse_bench(argc, argv, 1, &cfg, &fmt, &quick);
    if (rc >= 0) return rc;
    char dir[512];
    ll_lab_default_dir(dir, sizeof dir);
    if (cfg.json_dir) snprintf(dir, sizeof dir, "%s", cfg.json_dir);
    cfg.json_dir = dir;
    ll_error err = {0};
    ll_hw_config hc;
    ll_hw_config_init(&hc);
    hc.quick = quick, hc.json_dir = dir;
    if (ll_hw_run(&hc, stdout, &err) != LL_OK) { fprintf(stderr, "llmlab bench: %s\n", err.message); return 1; }
    if (quick && cfg.n_pp == 1 && cfg.pp[0] == 512) cfg.pp[0] = 128, cfg.tg[0] = 32;
    synth_set set = {0};
    if (!cfg.n_models) {
        if (synth_model_set(&set, quick, &err) != LL_OK) { fprintf(stderr, "llmlab bench: %s\n", err.message); return 1; }
        for (int i = 0; i < set.n; i++) cfg.models[cfg.n_models++] = set.paths[i];
    }
    cJSON *doc;
    rc = 0;
    if (ll_lab_bench_run(&cfg, &doc, &err) != LL_OK) {
        fprintf(stderr, "llmlab bench: %s\n", err.message);
        rc = 1;
    } else {
        ll_lab_bench_print(stdout, doc, fmt);
        cJSON_Delete(doc);
    }
    synth_set_remove(&set);
    if (rc) return rc;
    if (ll_lab_report(dir, NULL, dir, &err) != LL_OK) { fprintf(stderr, "llmlab bench: %s\n", err.message); return 1; }
    fprintf(stderr, "bench: results and REPORT.md / report.html in %s\n", dir);
    printf("\nreport: %s/REPORT.md and %s/report.html\n", dir, dir);
    return 0;
}
