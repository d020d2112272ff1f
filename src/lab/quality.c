// quality.c — the quality step of the lab's full run: quantize a real model to the types users compare and
// measure each against it on a text (llama.cpp's perplexity and KL-divergence, src/eval/perplexity.c), into
// quality.json, laid out as `llmlab perplexity --sweep --json` writes it so the report reads either.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/perplexity.h"
#include "lab/lab.h"
#include "quant/quantize.h"

void ll_lab_quality_cfg_init(ll_lab_quality_cfg *c) {
    memset(c, 0, sizeof *c);
    c->types = "Q8_0,Q4_K_M,Q4_0";
    c->n_ctx = 512;
    c->max_chunks = 10;
}

// One perplexity result as JSON (the layout `llmlab perplexity --json` and quality.json share).
cJSON *ll_lab_ppl_result_json(const ll_ppl_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "n_chunks", r->n_chunk);
    cJSON_AddNumberToObject(j, "n_chunks_done", r->n_done);
    cJSON_AddNumberToObject(j, "n_scored", (double)r->n_scored);
    cJSON_AddNumberToObject(j, "ppl", r->ppl);
    cJSON_AddNumberToObject(j, "ppl_stderr", r->ppl_stderr);
    cJSON_AddNumberToObject(j, "nll_mean", r->nll);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    if (!r->has_base) return j;
    cJSON *b = cJSON_AddObjectToObject(j, "vs_base");
    cJSON_AddNumberToObject(b, "base_ppl", r->base_ppl);
    cJSON_AddNumberToObject(b, "base_ppl_stderr", r->base_ppl_stderr);
    cJSON_AddNumberToObject(b, "dppl", r->dppl);
    cJSON_AddNumberToObject(b, "kld_mean", r->kld_mean);
    cJSON_AddNumberToObject(b, "kld_stderr", r->kld_stderr);
    cJSON_AddNumberToObject(b, "kld_median", r->kld_median);
    cJSON_AddNumberToObject(b, "kld_p90", r->kld_p90);
    cJSON_AddNumberToObject(b, "kld_p95", r->kld_p95);
    cJSON_AddNumberToObject(b, "kld_p99", r->kld_p99);
    cJSON_AddNumberToObject(b, "kld_max", r->kld_max);
    cJSON_AddNumberToObject(b, "top1_pct", r->top1_pct);
    cJSON_AddNumberToObject(b, "top1_stderr_pct", r->top1_stderr_pct);
    cJSON_AddNumberToObject(b, "rms_dp_pct", r->rms_dp_pct);
    return j;
}

// Progress of a long pass (a real model's chunks take seconds each): one line per chunk on stderr.
static void on_chunk(void *ud, int done, int n_chunk, double ppl, double el) {
    fprintf(stderr, "quality: %s: chunk %d/%d, running PPL %.4f, ETA %.1f s\n", (const char *)ud, done, n_chunk, ppl,
            el / done * (n_chunk - done));
}

static bool stop_now(const ll_lab_quality_cfg *c) { return c->interrupt && *c->interrupt; }

// Quantize the base to one type in dir, evaluate it against the base, remove it. Failures go into the row.
static void one_type(const ll_lab_quality_cfg *cfg, ll_model *base, const int32_t *ids, int n, const char *dir,
                     const char *type, const ll_ppl_params *pp, cJSON *row, ll_ppl_result *res, bool *ok,
                     double *base_bpw) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, type);
    ll_quantize_params qp = ll_quantize_default_params();
    qp.n_threads = cfg->n_threads;
    qp.interrupt = cfg->interrupt;
    qp.tokenizer_path = cfg->tokenizer;
    ll_quantize_stats st = {0};
    ll_error err = {0};
    ll_model *m = NULL;
    *ok = false;
    if (!ll_ftype_from_name(type, &qp.ftype)) {
        cJSON_AddStringToObject(row, "error", "not a file type llmlab quantize knows");
        return;
    }
    if (cfg->progress) fprintf(stderr, "quality: %s: quantizing\n", type);
    if (ll_quantize_file(cfg->model, path, &qp, &st, &err) == LL_OK) {
        struct stat sb;
        cJSON_AddNumberToObject(row, "file_bytes", stat(path, &sb) == 0 ? (double)sb.st_size : 0);
        cJSON_AddNumberToObject(row, "bits_per_weight", st.n_elements ? 8.0 * (double)st.bytes_out / (double)st.n_elements : 0);
        if (st.n_elements && *base_bpw <= 0) *base_bpw = 8.0 * (double)st.bytes_in / (double)st.n_elements;
        ll_model_params mp = ll_model_default_params();
        mp.n_threads = cfg->n_threads;
        mp.tokenizer_path = cfg->tokenizer;
        if (cfg->progress) fprintf(stderr, "quality: %s: perplexity and KL-divergence against the base\n", type);
        ll_ppl_params p = *pp;
        if (cfg->progress) p.on_chunk = on_chunk, p.ud = (void *)type;
        if (ll_model_load(path, &mp, &m, &err) == LL_OK) *ok = ll_ppl_run(m, base, ids, n, &p, res, &err) == LL_OK;
    }
    if (*ok) cJSON_AddItemToObject(row, "result", ll_lab_ppl_result_json(res));
    else cJSON_AddStringToObject(row, "error", err.message[0] ? err.message : "failed");
    ll_model_free(m);
    unlink(path);
}

static cJSON *header_json(const ll_lab_quality_cfg *cfg, const ll_ppl_params *pp, const int32_t *ids, int n) {
    char sha[65];
    ll_ppl_ids_sha256(ids, n, sha);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "schema", "llmlab.quality/1");
    cJSON_AddStringToObject(j, "tool", cfg->tool ? cfg->tool : "llmlab bench (quality step) " LLMLAB_VERSION);
    cJSON_AddStringToObject(j, "method", "llama.cpp perplexity: chunks of n_ctx from an empty cache, first id BOS, "
                                         "positions n_ctx/2..n_ctx-2 scored; KLD(P_base || P_type) per scored position");
    cJSON_AddStringToObject(j, "text", cfg->text);
    cJSON_AddNumberToObject(j, "n_ctx", pp->n_ctx);
    cJSON_AddNumberToObject(j, "n_batch", pp->n_batch ? pp->n_batch : pp->n_ctx);
    cJSON_AddNumberToObject(j, "max_chunks", pp->max_chunks);
    cJSON_AddNumberToObject(j, "n_tokens", n);
    cJSON_AddStringToObject(j, "tokens_sha256", sha);
    cJSON_AddStringToObject(j, "base", cfg->model);
    return j;
}

ll_status ll_lab_quality_run(const ll_lab_quality_cfg *cfg, ll_error *err) {
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = cfg->n_threads;
    mp.tokenizer_path = cfg->tokenizer;
    ll_model *base = NULL;
    int32_t *ids = NULL;
    int n = 0;
    size_t len = 0;
    char *text = NULL, dir[4096] = "";
    ll_status st = ll_model_load(cfg->model, &mp, &base, err);
    if (st != LL_OK) ll_err_prefix(err, "%s: ", cfg->model);
    if (st == LL_OK && !(text = ll_ppl_read_text(cfg->text, &len, err))) st = err->status;
    if (st == LL_OK) st = ll_ppl_tokenize(base, text, len, &ids, &n, err);
    free(text);
    ll_ppl_params pp = ll_ppl_default_params();
    pp.n_ctx = cfg->n_ctx;
    int train = base ? ll_model_n_ctx_train(base) : 0;
    if (train > 0 && pp.n_ctx > train) pp.n_ctx = train; // a chunk never passes the trained context
    pp.n_threads = cfg->n_threads;
    pp.max_chunks = cfg->max_chunks;
    pp.n_batch = cfg->n_batch;
    pp.interrupt = cfg->interrupt;
    if (st == LL_OK && n < 2 * pp.n_ctx)
        st = ll_err_set(err, LL_ERR_ARG, "%s: %d tokens; the quality sweep with chunks of %d needs at least %d (a longer "
                        "text, -f FILE)", cfg->text, n, pp.n_ctx, 2 * pp.n_ctx);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/llmlab-quality-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (st == LL_OK && !mkdtemp(dir)) st = ll_err_set(err, LL_ERR_IO, "cannot make a temporary folder %s: %s", dir, strerror(errno));
    if (st != LL_OK) {
        free(ids);
        ll_model_free(base);
        return st;
    }
    if (cfg->progress)
        fprintf(stderr, "quality: %s on %s: %d tokens, up to %d chunks of %d, types %s\n", cfg->model, cfg->text, n,
                pp.max_chunks, pp.n_ctx, cfg->types);
    cJSON *doc = header_json(cfg, &pp, ids, n), *sweep = cJSON_AddArrayToObject(doc, "sweep");
    cJSON *row0 = cJSON_CreateObject();
    cJSON_AddStringToObject(row0, "type", "base");
    cJSON_AddItemToArray(sweep, row0);
    struct stat sb;
    cJSON_AddNumberToObject(row0, "file_bytes", stat(cfg->model, &sb) == 0 ? (double)sb.st_size : 0);
    char list[256];
    snprintf(list, sizeof list, "%s", cfg->types);
    double base_ppl = -1, base_err = 0, base_bpw = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !stop_now(cfg); t = strtok_r(NULL, ",", &save)) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "type", t);
        ll_ppl_result r;
        bool ok;
        one_type(cfg, base, ids, n, dir, t, &pp, row, &r, &ok, &base_bpw);
        if (stop_now(cfg)) { cJSON_Delete(row); break; } // an unfinished type is dropped
        cJSON_AddItemToArray(sweep, row);
        if (ok && base_ppl < 0) base_ppl = r.base_ppl, base_err = r.base_ppl_stderr;
    }
    rmdir(dir);
    if (base_bpw > 0) cJSON_AddNumberToObject(row0, "bits_per_weight", base_bpw);
    if (base_ppl >= 0) { // every pass evaluates the base too: its PPL is the first pass's
        cJSON *res = cJSON_AddObjectToObject(row0, "result");
        cJSON_AddNumberToObject(res, "ppl", base_ppl);
        cJSON_AddNumberToObject(res, "ppl_stderr", base_err);
    } else cJSON_AddStringToObject(row0, "error", stop_now(cfg) ? "interrupted" : "no quantized type was evaluated");
    if (stop_now(cfg)) cJSON_AddBoolToObject(doc, "partial", true);
    if (cfg->json_path) st = ll_lab_json_write_file(cfg->json_path, doc, err);
    else if (cfg->json_dir) st = ll_lab_json_write(cfg->json_dir, "quality", doc, err);
    if (cfg->doc) *cfg->doc = doc;
    else cJSON_Delete(doc);
    free(ids);
    ll_model_free(base);
    if (st == LL_OK && stop_now(cfg)) st = ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted: the types that finished are in quality.json");
    return st;
}
