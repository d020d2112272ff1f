// bench_model.c — `llmlab bench model`: llama-bench's tests (pp N: one batch of N random tokens from an empty
// cache, after d tokens of context when asked; tg N: N single-token steps, each with its greedy sampling) plus cold/warm load time, memory and
// the fraction of the measured ceilings reached, written as results JSON (docs/bench-model.md).
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lab/lab.h"
#include "quant/quantize.h"
#include "types/types.h"
#include "model/model.h"

void ll_lab_bench_cfg_init(ll_lab_bench_cfg *c) {
    memset(c, 0, sizeof *c);
    c->pp[0] = 512, c->n_pp = 1;
    c->tg[0] = 128, c->n_tg = 1;
    c->depth[0] = 0, c->n_depth = 1;
    c->threads[0] = ll_sys_default_threads(), c->n_threads = 1; // not 0: the library default is all physical cores
    c->reps = 5;
    c->seq_prompt = 128;
    c->cache_type = LL_CACHE_F16;
    c->device = "cpu";
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// ---- load time: cold (page cache dropped first, when the kernel lets us) and warm ------------------------------
// Fraction of the file's pages resident in the page cache (mincore), -1 when it cannot be told.
static double resident_frac(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    double r = -1;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            long pg = sysconf(_SC_PAGESIZE);
            size_t n = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg, in = 0;
            unsigned char *v = malloc(n);
            if (v && mincore(p, (size_t)st.st_size, v) == 0) {
                for (size_t i = 0; i < n; i++) in += v[i] & 1;
                r = (double)in / (double)n;
            }
            free(v);
            munmap(p, (size_t)st.st_size);
        }
    }
    close(fd);
    return r;
}

// Ask the kernel to drop the file's clean pages. Returns false with why when it cannot.
static bool drop_cache(const char *path, char *why, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { snprintf(why, cap, "cannot open the file to drop its pages"); return false; }
    fdatasync(fd);
    int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    if (rc != 0) { snprintf(why, cap, "posix_fadvise(DONTNEED) failed (error %d)", rc); return false; }
    double r = resident_frac(path);
    if (r > 0.05) {
        snprintf(why, cap, "posix_fadvise(DONTNEED) left %.0f%% of the pages cached (mapped by another process?)", r * 100);
        return false;
    }
    return true;
}

// Load the model, make a small context and evaluate one token (every weight touched once): seconds.
static double time_load(const char *path, int n_threads, const char *device, ll_error *err) {
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = n_threads;
    ll_model *m;
    ll_context *c = NULL;
    double t0 = ll_time_s();
    if (ll_model_load(path, &mp, &m, err) != LL_OK) return -1;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 8, cp.n_batch = 8, cp.device = device;
    int32_t id = 1;
    bool ok = ll_context_init(m, &cp, &c, err) == LL_OK && ll_eval(c, &id, 1, false, err) == LL_OK;
    double t = ll_time_s() - t0;
    ll_context_free(c);
    ll_model_free(m);
    return ok ? t : -1;
}

static cJSON *load_json(const char *path, int n_threads, const char *device, bool no_cold, ll_error *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "definition", "ll_model_load + a context + one token evaluated (all weights touched)");
    char why[256] = "";
    if (no_cold) snprintf(why, sizeof why, "skipped (--no-cold)");
    else if (drop_cache(path, why, sizeof why)) {
        double t = time_load(path, n_threads, device, err);
        if (t < 0) { cJSON_Delete(j); return NULL; }
        cJSON_AddNumberToObject(j, "cold_s", t);
        cJSON_AddStringToObject(j, "cold_note", "page cache dropped with posix_fadvise(POSIX_FADV_DONTNEED), checked with mincore");
    }
    if (why[0]) {
        cJSON_AddNullToObject(j, "cold_s");
        cJSON_AddStringToObject(j, "cold_note", why);
    }
    double w[3];
    for (int i = 0; i < 3; i++)
        if ((w[i] = time_load(path, n_threads, device, err)) < 0) { cJSON_Delete(j); return NULL; }
    qsort(w, 3, sizeof w[0], cmp_d);
    cJSON_AddNumberToObject(j, "warm_s", w[1]);
    cJSON_AddStringToObject(j, "warm_note", "median of 3 loads with the file in the page cache");
    return j;
}

// ---- the tests ---------------------------------------------------------------------------------------------
typedef struct bench_ctx {
    ll_model *m;
    ll_context *c;
    int32_t *ids; // random tokens
    ll_sampler *greedy; // tg: each step's token is sampled (greedy), as a generation does
    double mm_params;
    ll_lab_ceil ceil;
} bench_ctx;

// Ctrl-C (cfg->interrupt set): true, with err saying so.
static bool stopped(const ll_lab_bench_cfg *cfg, ll_error *err) {
    if (!cfg->interrupt || !*cfg->interrupt) return false;
    ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted");
    return true;
}

// One repetition: reset, depth tokens of context (untimed), then the timed test. Seconds.
static double run_test(bench_ctx *b, int depth, int n_prompt, int n_gen, ll_error *err) {
    ll_context_reset(b->c);
    if (depth > 0 && ll_eval(b->c, b->ids, depth, false, err) != LL_OK) return -1;
    double t0 = ll_time_s();
    if (n_prompt > 0 && ll_eval(b->c, b->ids + depth, n_prompt, false, err) != LL_OK) return -1;
    for (int i = 0; i < n_gen; i++) {
        if (ll_eval(b->c, b->ids + depth + i, 1, false, err) != LL_OK) return -1;
        (void)ll_sample(b->c, b->greedy); // the fixed ids go on (the same inputs on every engine)
    }
    return ll_time_s() - t0;
}

static cJSON *stats_json(double *ts, int n) {
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) sum += ts[i];
    double mean = sum / n;
    for (int i = 0; i < n; i++) sq += (ts[i] - mean) * (ts[i] - mean);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "samples", cJSON_CreateDoubleArray(ts, n));
    qsort(ts, (size_t)n, sizeof *ts, cmp_d);
    cJSON_AddNumberToObject(j, "median", n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]));
    cJSON_AddNumberToObject(j, "mean", mean);
    cJSON_AddNumberToObject(j, "sd", n > 1 ? sqrt(sq / (n - 1)) : 0);
    cJSON_AddNumberToObject(j, "min", ts[0]);
    cJSON_AddNumberToObject(j, "max", ts[n - 1]);
    return j;
}

// Roofline: generation against read bandwidth (weight bytes per token x t/s), prompt against the GEMM peak
// (FLOPs per token x t/s; attention at the prompt's mean position depth + n/2).
static cJSON *roofline_json(const bench_ctx *b, bool gen, int depth, int n, double ts) {
    cJSON *j = cJSON_CreateObject();
    const ll_hparams *hp = &b->m->hp;
    double flops = 2 * b->mm_params + 4.0 * hp->n_layer * hp->n_head * hp->head_dim * (depth + n / 2.0);
    cJSON_AddNumberToObject(j, "flops_per_token", flops);
    cJSON_AddNumberToObject(j, "bytes_per_token", gen ? (double)b->m->weight_bytes : (double)b->m->weight_bytes / n);
    cJSON_AddNumberToObject(j, "arithmetic_intensity", gen ? flops / (double)b->m->weight_bytes : flops * n / (double)b->m->weight_bytes);
    cJSON_AddNumberToObject(j, "achieved_gflops", flops * ts / 1e9);
    if (gen) {
        double gbps = (double)b->m->weight_bytes * ts / 1e9;
        cJSON_AddStringToObject(j, "bound", "memory");
        cJSON_AddNumberToObject(j, "achieved_gbps", gbps);
        if (b->ceil.read_gbps > 0) cJSON_AddNumberToObject(j, "ceiling_gbps", b->ceil.read_gbps);
        if (b->ceil.read_gbps > 0) cJSON_AddNumberToObject(j, "pct_of_ceiling", 100 * gbps / b->ceil.read_gbps);
        cJSON_AddNumberToObject(j, "ceiling_tps", b->ceil.read_gbps > 0 ? b->ceil.read_gbps * 1e9 / (double)b->m->weight_bytes : 0);
        cJSON_AddStringToObject(j, "ceiling_source", b->ceil.read_src);
        if (b->ceil.read_gbps > 0 && gbps > b->ceil.read_gbps)
            cJSON_AddStringToObject(j, "note", "above the memory ceiling: the weights fit in the CPU caches, so decode "
                                               "reads them from cache, not DRAM");
    } else {
        // Quantized weights multiply int8 activations with integer dots: their peak is the int8 GEMM's.
        const ll_type_traits *tt = ll_type_get(b->m->wtype);
        bool q = tt && tt->blck > 1 && b->ceil.int8_gops > 0;
        double gf = flops * ts / 1e9, peak = q ? b->ceil.int8_gops : b->ceil.gemm_gflops;
        cJSON_AddStringToObject(j, "bound", "compute");
        if (peak > 0) cJSON_AddNumberToObject(j, "ceiling_gflops", peak);
        if (peak > 0) cJSON_AddNumberToObject(j, "pct_of_ceiling", 100 * gf / peak);
        cJSON_AddStringToObject(j, "ceiling_source", q ? b->ceil.int8_src : b->ceil.gemm_src);
        if (tt && tt->blck > 1 && !q)
            cJSON_AddStringToObject(j, "note", "quantized weights, but no int8 GEMM was measured: against the fp32 peak");
    }
    return j;
}

static cJSON *one_test(bench_ctx *b, const ll_lab_bench_cfg *cfg, int depth, int n_prompt, int n_gen, ll_error *err) {
    int reps = cfg->reps;
    double *ts = malloc((size_t)reps * sizeof *ts);
    if (!ts) return NULL;
    if (stopped(cfg, err)) { free(ts); return NULL; }
    if (run_test(b, depth, n_prompt ? n_prompt : 0, n_prompt ? 0 : (n_gen < 4 ? n_gen : 4), err) < 0) { free(ts); return NULL; } // warm-up
    for (int r = 0; r < reps; r++) {
        if (stopped(cfg, err)) { free(ts); return NULL; } // an unfinished test is dropped, not reported
        double t = run_test(b, depth, n_prompt, n_gen, err);
        if (t < 0) { free(ts); return NULL; }
        ts[r] = (n_prompt + n_gen) / t;
    }
    char name[64];
    if (depth) snprintf(name, sizeof name, "%s%d @ d%d", n_prompt ? "pp" : "tg", n_prompt + n_gen, depth);
    else snprintf(name, sizeof name, "%s%d", n_prompt ? "pp" : "tg", n_prompt + n_gen);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "test", name);
    cJSON_AddNumberToObject(j, "n_prompt", n_prompt);
    cJSON_AddNumberToObject(j, "n_gen", n_gen);
    cJSON_AddNumberToObject(j, "n_depth", depth);
    cJSON_AddNumberToObject(j, "threads", b->c->n_threads);
    cJSON_AddNumberToObject(j, "reps", reps);
    cJSON *st = stats_json(ts, reps);
    cJSON_AddItemToObject(j, "ts", st);
    cJSON_AddItemToObject(j, "roofline", roofline_json(b, n_gen > 0, depth, n_prompt + n_gen, ll_lab_num(st, "median")));
    free(ts);
    if (cfg->progress) fprintf(stderr, "bench model: %s %s: %.2f t/s\n", b->m->name, name, ll_lab_num(st, "median"));
    return j;
}

// ---- several sequences (llama-batched-bench's idea): N sequences' prompts of seq_prompt tokens as one batch, then
// n_gen steps of one token per sequence (one batch of N tokens each, every token's logits sampled greedily).
typedef struct seq_run {
    ll_context *c;
    ll_batch batch;
    ll_sampler *greedy;
    const int32_t *ids;
    int n_seq, n_prompt, n_gen;
} seq_run;

// One repetition: the prompts' seconds in *pp_s, the generation's in *tg_s. false with err on failure.
static bool seq_rep(seq_run *r, double *pp_s, double *tg_s, ll_error *err) {
    ll_context_reset(r->c);
    ll_batch_clear(&r->batch);
    for (int s = 0; s < r->n_seq; s++)
        for (int i = 0; i < r->n_prompt; i++)
            ll_batch_add(&r->batch, r->ids[(s * 7 + i) % r->n_prompt], i, s, i == r->n_prompt - 1);
    double t0 = ll_time_s();
    if (ll_decode(r->c, &r->batch, err) != LL_OK) return false;
    for (int s = 0; s < r->n_seq; s++) (void)ll_sample_ith(r->c, r->greedy, (s + 1) * r->n_prompt - 1);
    double t1 = ll_time_s();
    for (int g = 0; g < r->n_gen; g++) {
        ll_batch_clear(&r->batch);
        for (int s = 0; s < r->n_seq; s++)
            ll_batch_add(&r->batch, r->ids[(r->n_prompt + g + s) % r->n_prompt], r->n_prompt + g, s, true);
        if (ll_decode(r->c, &r->batch, err) != LL_OK) return false;
        for (int s = 0; s < r->n_seq; s++) (void)ll_sample_ith(r->c, r->greedy, s); // the fixed ids go on
    }
    *pp_s = t1 - t0, *tg_s = ll_time_s() - t1;
    return true;
}

static cJSON *seq_test_json(bench_ctx *b, const char *kind, int n_seq, int n_prompt, int n_gen, int reps, double *ts) {
    char name[64];
    snprintf(name, sizeof name, "%s%d x%d", kind, kind[0] == 'p' ? n_prompt : n_gen, n_seq);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "test", name);
    cJSON_AddNumberToObject(j, "n_prompt", kind[0] == 'p' ? n_prompt : 0);
    cJSON_AddNumberToObject(j, "n_gen", kind[0] == 'p' ? 0 : n_gen);
    cJSON_AddNumberToObject(j, "n_depth", kind[0] == 'p' ? 0 : n_prompt);
    cJSON_AddNumberToObject(j, "n_seq", n_seq);
    cJSON_AddNumberToObject(j, "threads", b->c->n_threads);
    cJSON_AddNumberToObject(j, "reps", reps);
    cJSON_AddStringToObject(j, "definition", kind[0] == 'p'
        ? "aggregate t/s: n_seq prompts of n_prompt tokens evaluated as one batch (chunks of n_batch)"
        : "aggregate t/s: n_gen steps, each one batch of n_seq tokens (one per sequence, after its prompt), every "
          "token's next id sampled greedily");
    cJSON *st = stats_json(ts, reps);
    cJSON_AddItemToObject(j, "ts", st);
    return j;
}

static ll_status seq_tests(bench_ctx *b, const ll_lab_bench_cfg *cfg, const char *path, cJSON *tests, ll_error *err) {
    for (int si = 0; si < cfg->n_seqs; si++) {
        for (int gi = 0; gi < cfg->n_tg; gi++) {
            const int n_seq = cfg->seqs[si], n_gen = cfg->tg[gi], n_prompt = cfg->seq_prompt, reps = cfg->reps;
            if (n_gen <= 0) continue;
            seq_run r = {.ids = b->ids, .n_seq = n_seq, .n_prompt = n_prompt, .n_gen = n_gen, .greedy = b->greedy};
            ll_context_params cp = ll_context_default_params();
            cp.n_ctx = n_prompt + n_gen;
            cp.n_seq = n_seq;
            cp.n_batch = n_seq * n_prompt < 512 ? n_seq * n_prompt : 512;
            cp.cache_type = cfg->cache_type;
            cp.device = cfg->device;
            double *pp = malloc((size_t)reps * sizeof *pp), *tg = malloc((size_t)reps * sizeof *tg);
            ll_status s = pp && tg ? ll_context_init(b->m, &cp, &r.c, err) : LL_ERR_NOMEM;
            if (s == LL_OK) s = ll_batch_init(&r.batch, n_seq * n_prompt, err);
            if (s == LL_OK && cfg->interrupt) ll_context_set_interrupt(r.c, cfg->interrupt);
            double wp, wt;
            if (s == LL_OK && !seq_rep(&r, &wp, &wt, err)) s = err->status ? err->status : LL_ERR_INTERNAL; // warm-up
            for (int k = 0; s == LL_OK && k < reps; k++) {
                if (stopped(cfg, err)) { s = LL_ERR_INTERRUPTED; break; }
                if (!seq_rep(&r, &wp, &wt, err)) { s = err->status ? err->status : LL_ERR_INTERNAL; break; }
                pp[k] = (double)n_seq * n_prompt / wp, tg[k] = (double)n_seq * n_gen / wt;
            }
            if (s == LL_OK) {
                cJSON *jp = seq_test_json(b, "pp", n_seq, n_prompt, n_gen, reps, pp);
                cJSON *jt = seq_test_json(b, "tg", n_seq, n_prompt, n_gen, reps, tg);
                cJSON_AddStringToObject(jt, "kv_type", ll_cache_type_name(cfg->cache_type));
                if (cfg->progress)
                    fprintf(stderr, "bench model: %s %d sequences: pp %.2f t/s, tg %.2f t/s (aggregate)\n", b->m->name,
                            n_seq, ll_lab_num(cJSON_GetObjectItem(jp, "ts"), "median"),
                            ll_lab_num(cJSON_GetObjectItem(jt, "ts"), "median"));
                cJSON_AddItemToArray(tests, jp);
                cJSON_AddItemToArray(tests, jt);
            }
            free(pp), free(tg);
            ll_batch_free(&r.batch);
            ll_context_free(r.c);
            if (s != LL_OK) {
                if (err->message[0] && !strstr(err->message, path)) ll_err_prefix(err, "%d sequences: ", n_seq);
                return s;
            }
        }
    }
    return LL_OK;
}

// Parameters of the matrices decode multiplies by (the embedding table only when it is the tied output).
static double matmul_params(const ll_model *m) {
    int n;
    const ll_weight **ws = ll_model_all_weights(m, &n);
    double p = 0;
    for (int i = 0; i < n; i++)
        if (ws[i]->ne1 > 1 && ws[i] != &m->tok_embd) p += (double)ws[i]->ne0 * (double)ws[i]->ne1;
    free(ws);
    return p;
}

static int max_of(const int *v, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static void model_facts(cJSON *j, const ll_model *m, const char *path, const ll_context *c) {
    char desc[512];
    ll_model_describe(m, desc, sizeof desc);
    struct stat st;
    cJSON_AddStringToObject(j, "file", path);
    cJSON_AddStringToObject(j, "model", m->name);
    cJSON_AddStringToObject(j, "description", desc);
    cJSON_AddStringToObject(j, "arch", m->hp.arch);
    // The file's type as users name it (general.file_type: "Q4_K_M"), else the layer matrices' tensor type.
    const char *tname = ll_type_name(m->wtype);
    uint64_t ft;
    if (ll_gguf_find(m->gguf, "general.file_type") && ll_gguf_get_u64(m->gguf, "general.file_type", &ft, NULL) == LL_OK &&
        ft < 1024 && strcmp(ll_ftype_name((ll_ftype)ft), "unknown"))
        tname = ll_ftype_name((ll_ftype)ft);
    cJSON_AddStringToObject(j, "type", tname);
    cJSON_AddNumberToObject(j, "params", (double)m->n_params);
    cJSON_AddNumberToObject(j, "size_bytes", stat(path, &st) == 0 ? (double)st.st_size : 0);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)m->weight_bytes);
    cJSON_AddNumberToObject(j, "n_layer", m->hp.n_layer);
    cJSON_AddNumberToObject(j, "n_embd", m->hp.n_embd);
    ll_plan plan;
    ll_plan_compute(m, c->be, NULL, c->n_ctx, c->n_batch, c->n_logits_cap, c->n_seq, c->kv_type, &plan);
    cJSON *mem = cJSON_AddObjectToObject(j, "memory");
    cJSON_AddNumberToObject(mem, "weights_bytes", (double)plan.weights);
    cJSON_AddNumberToObject(mem, "kv_bytes", (double)plan.kv);
    cJSON_AddNumberToObject(mem, "kv_n_ctx", c->n_ctx);
    cJSON_AddStringToObject(mem, "kv_type", ll_type_name(c->kv_type));
    cJSON_AddNumberToObject(mem, "kv_n_seq", c->n_seq);
    cJSON_AddNumberToObject(mem, "activations_bytes", (double)plan.activations);
    cJSON_AddNumberToObject(mem, "scratch_bytes", (double)plan.scratch);
    cJSON_AddNumberToObject(mem, "n_batch", c->n_batch);
}

// fit's prediction of this model's generation speed (CPU), made beside the measurement so the report can set
// them side by side: the calibrated engine time of the model's matrices, and the bandwidth bound.
// Run after the model's context is gone, so its pool's threads do not share the cores with the calibration's.
static cJSON *fit_json(const char *path, const ll_lab_ceil *ceil, int n_ctx, int n_batch, int n_threads, const char *device) {
    cJSON *j = cJSON_CreateObject();
    ll_lab_shape s;
    ll_error err = {0};
    if (strcmp(device, "cpu")) {
        cJSON_AddStringToObject(j, "skipped", "the calibration runs on CPU only");
        return j;
    }
    if (ll_lab_shape_from_gguf(path, &s, &err) != LL_OK) {
        cJSON_AddStringToObject(j, "skipped", err.message);
        return j;
    }
    ll_lab_calib cal;
    ll_lab_fit f;
    ll_lab_fit_compute(&s, 0, n_ctx, n_batch, device, ceil, &f);
    if (ll_lab_calib_decode(s.mats, s.n_mats, n_threads, &cal, &err) != LL_OK) {
        cJSON_AddStringToObject(j, "skipped", err.message);
        return j;
    }
    ll_lab_fit_engine(&f, s.mats, s.n_mats, &cal);
    if (f.pred_tg_engine > 0) cJSON_AddNumberToObject(j, "pred_tg_engine", f.pred_tg_engine);
    else cJSON_AddNullToObject(j, "pred_tg_engine");
    cJSON_AddNumberToObject(j, "tg_matrix_s", f.tg_matrix_s);
    cJSON_AddStringToObject(j, "engine_source", cal.src);
    if (f.pred_tg > 0) cJSON_AddNumberToObject(j, "pred_tg_bound", f.pred_tg);
    else cJSON_AddNullToObject(j, "pred_tg_bound");
    cJSON_AddStringToObject(j, "bound_source", ceil->read_src);
    cJSON_AddStringToObject(j, "definition", "llmlab fit FILE: engine = 1 / sum of calibrated one-token matmul times of "
                                             "the file's matrices (norms, RoPE, attention not counted); bound = read "
                                             "bandwidth / bytes read per token");
    return j;
}

static cJSON *bench_one(const ll_lab_bench_cfg *cfg, const char *path, int threads, const ll_lab_ceil *ceil, ll_error *err) {
    bench_ctx b = {.ceil = *ceil};
    cJSON *j = cJSON_CreateObject(), *load = load_json(path, threads, cfg->device, cfg->no_cold, err);
    if (!load) goto fail;
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = threads;
    if (ll_model_load(path, &mp, &b.m, err) != LL_OK) goto fail;
    int mp_ = max_of(cfg->pp, cfg->n_pp), mt = max_of(cfg->tg, cfg->n_tg), md = max_of(cfg->depth, cfg->n_depth);
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = md + (mp_ > mt ? mp_ : mt);
    cp.n_batch = mp_ > md ? mp_ : (md > 0 ? md : 1);
    if (cp.n_batch > cp.n_ctx) cp.n_batch = cp.n_ctx;
    cp.device = cfg->device;
    cp.cache_type = cfg->cache_type;
    if (ll_context_init(b.m, &cp, &b.c, err) != LL_OK) goto fail;
    if (cfg->interrupt) ll_context_set_interrupt(b.c, cfg->interrupt); // ll_eval stops between layers
    const int n_ids = cp.n_ctx > cfg->seq_prompt ? cp.n_ctx : cfg->seq_prompt;
    b.ids = malloc((size_t)n_ids * sizeof *b.ids);
    ll_sampler_params gp = ll_sampler_default_params();
    gp.temp = 0.0f;
    b.greedy = ll_sampler_init(&gp, b.m->hp.n_vocab);
    if (!b.ids || !b.greedy) {
        ll_err_set(err, LL_ERR_NOMEM, "out of memory for the benchmark's token ids and sampler");
        goto fail;
    }
    uint64_t s = 1;
    for (int i = 0; i < n_ids; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; b.ids[i] = (int32_t)((s >> 33) % (uint64_t)b.m->hp.n_vocab); }
    b.mm_params = matmul_params(b.m);
    model_facts(j, b.m, path, b.c);
    cJSON_AddStringToObject(j, "backend", cfg->device);
    cJSON_AddItemToObject(j, "load", load);
    load = NULL;
    cJSON *tests = cJSON_AddArrayToObject(j, "tests");
    for (int d = 0; d < cfg->n_depth; d++) {
        for (int i = 0; i < cfg->n_pp; i++) {
            if (cfg->pp[i] <= 0) continue;
            cJSON *t = one_test(&b, cfg, cfg->depth[d], cfg->pp[i], 0, err);
            if (!t) goto stop;
            cJSON_AddItemToArray(tests, t);
        }
        for (int i = 0; i < cfg->n_tg; i++) {
            if (cfg->tg[i] <= 0) continue;
            cJSON *t = one_test(&b, cfg, cfg->depth[d], 0, cfg->tg[i], err);
            if (!t) goto stop;
            cJSON_AddItemToArray(tests, t);
        }
    }
    if (seq_tests(&b, cfg, path, tests, err) != LL_OK) goto stop;
    cJSON_AddNumberToObject(cJSON_GetObjectItem(j, "memory"), "peak_rss_bytes", (double)ll_sys_rss_peak());
    bool partial = false;
    if (0) {
    stop: // interrupted: the tests that finished stay; anything else is an error
        if (err->status != LL_ERR_INTERRUPTED) goto fail;
        cJSON_AddBoolToObject(j, "partial", true);
        cJSON_AddNumberToObject(cJSON_GetObjectItem(j, "memory"), "peak_rss_bytes", (double)ll_sys_rss_peak());
        partial = true;
    }
    int n_ctx = b.c->n_ctx, n_batch = b.c->n_batch, n_threads = b.c->n_threads;
    char name[128];
    snprintf(name, sizeof name, "%s", b.m->name);
    free(b.ids);
    ll_sampler_free(b.greedy);
    ll_context_free(b.c);
    ll_model_free(b.m);
    if (!partial) {
        if (cfg->progress) fprintf(stderr, "bench model: %s: fit's prediction (calibrating the engine's matmuls)\n", name);
        cJSON_AddItemToObject(j, "fit", fit_json(path, ceil, n_ctx, n_batch, n_threads, cfg->device));
    }
    return j;
fail:
    if (err->message[0] && !strstr(err->message, path)) ll_err_prefix(err, "%s: ", path);
    cJSON_Delete(load);
    cJSON_Delete(j);
    free(b.ids);
    ll_sampler_free(b.greedy);
    ll_context_free(b.c);
    ll_model_free(b.m);
    return NULL;
}

static cJSON *ceil_json(const ll_lab_ceil *c) {
    cJSON *j = cJSON_CreateObject();
    if (c->read_gbps > 0) cJSON_AddNumberToObject(j, "read_gbps", c->read_gbps);
    else cJSON_AddNullToObject(j, "read_gbps");
    cJSON_AddStringToObject(j, "read_source", c->read_src);
    if (c->gemm_gflops > 0) cJSON_AddNumberToObject(j, "gemm_gflops", c->gemm_gflops);
    else cJSON_AddNullToObject(j, "gemm_gflops");
    cJSON_AddStringToObject(j, "gemm_source", c->gemm_src);
    if (c->int8_gops > 0) cJSON_AddNumberToObject(j, "int8_gops", c->int8_gops);
    else cJSON_AddNullToObject(j, "int8_gops");
    cJSON_AddStringToObject(j, "int8_source", c->int8_src);
    return j;
}

static cJSON *machine_json(const ll_lab_bench_cfg *cfg) {
    cJSON *j = cJSON_CreateObject();
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(j, "hostname", host);
    char cpu[160] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    for (char line[512]; f && fgets(line, sizeof line, f);) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        snprintf(cpu, sizeof cpu, "%s", colon + 2);
        cpu[strcspn(cpu, "\n")] = 0;
        break;
    }
    if (f) fclose(f);
    cJSON_AddStringToObject(j, "cpu_model", cpu);
    cJSON_AddNumberToObject(j, "logical_cores", ll_sys_logical_cores());
    cJSON_AddNumberToObject(j, "physical_cores", ll_sys_physical_cores());
    cJSON_AddNumberToObject(j, "mem_total_bytes", (double)ll_sys_mem_total());
    cJSON_AddStringToObject(j, "llmlab_version", LLMLAB_VERSION);
    char ts[32];
    time_t now = time(NULL);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(j, "timestamp_utc", ts);
    return j;
}

ll_status ll_lab_bench_run(const ll_lab_bench_cfg *cfg, cJSON **out, ll_error *err) {
    *out = NULL;
    if (cfg->n_models < 1) return ll_err_set(err, LL_ERR_ARG, "no model given (-m FILE)");
    if (cfg->reps < 1) return ll_err_set(err, LL_ERR_ARG, "-r must be at least 1");
    char defdir[512];
    ll_lab_default_dir(defdir, sizeof defdir);
    const char *dir = cfg->json_dir ? cfg->json_dir : defdir, *cdir = cfg->ceil_dir ? cfg->ceil_dir : dir;
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "schema", "llmlab.model/1");
    cJSON_AddItemToObject(doc, "machine", machine_json(cfg));
    cJSON *ceils = cJSON_AddObjectToObject(doc, "ceilings");
    cJSON *models = cJSON_AddArrayToObject(doc, "results");
    cJSON_AddArrayToObject(doc, "notes");
    bool stop = false;
    for (int t = 0; t < cfg->n_threads && !stop; t++) {
        ll_lab_ceil c;
        ll_lab_ceil_get(cdir, cfg->device, cfg->threads[t], &c);
        if (!cJSON_GetObjectItem(ceils, cfg->device)) cJSON_AddItemToObject(ceils, cfg->device, ceil_json(&c));
        for (int i = 0; i < cfg->n_models && !stop; i++) {
            if ((stop = stopped(cfg, err))) break;
            cJSON *m = bench_one(cfg, cfg->models[i], cfg->threads[t], &c, err);
            if (!m && err->status != LL_ERR_INTERRUPTED) { cJSON_Delete(doc); return err->status ? err->status : LL_ERR_INTERNAL; }
            if (m) cJSON_AddItemToArray(models, m);
            stop = err->status == LL_ERR_INTERRUPTED;
        }
    }
    if (stop) { // Ctrl-C: what finished is written, marked partial
        cJSON_AddBoolToObject(doc, "partial", true);
        cJSON_AddItemToArray(cJSON_GetObjectItem(doc, "notes"), cJSON_CreateString(
            "interrupted (Ctrl-C): only the tests that finished are here; unfinished tests and models are left out"));
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(doc, "notes"), cJSON_CreateString(
        "peak_rss_bytes is the process's peak so far (models benched earlier in the same run included)"));
    ll_status st = ll_lab_json_write(dir, "model", doc, err);
    if (st != LL_OK) { cJSON_Delete(doc); return st; }
    *out = doc;
    return stop ? ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted: %d model result(s) written to %s/model.json",
                             cJSON_GetArraySize(models), dir) : LL_OK;
}
