// hw_attn.c — attention section: the engine's CPU attention op (backend->ops->attention, F32 Q/K/V today),
// causal and full, head dim 64 and 128, batch 1; then on each GPU the engine's CUDA attention op (causal) and a
// library stand-in (hw_cuda_attn.cu, cuBLAS + a softmax kernel) for causal and full.
// Flops are counted the standard way: 4 seq^2 head_dim heads for full attention, half of that for causal.
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"
#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct attn_run {
    ll_backend *be;
    float *q, *k, *v, *out; // (seq, heads * hd) each
    int seq, hd, heads;
    bool causal;
} attn_run;

static ll_attn_params params_of(const attn_run *r, int n_past) {
    ll_attn_params p = {.n_head = r->heads, .n_head_kv = r->heads, .head_dim = r->hd, .n_ctx = r->seq,
                        .n_past = n_past, .scale = 1.0f / sqrtf((float)r->hd)};
    return p;
}

// Causal: one call, every query t sees keys [0, t]. Full: the op is causal by construction, so each query
// row goes in its own call with n_past = seq - 1, which lets it see all seq keys.
static void attn_exec(void *arg) {
    attn_run *r = arg;
    size_t row = (size_t)r->heads * r->hd;
    if (r->causal) {
        ll_attn_params p = params_of(r, 0);
        r->be->ops->attention(r->be, r->out, r->q, r->k, r->v, r->seq, &p);
        return;
    }
    ll_attn_params p = params_of(r, r->seq - 1);
    for (int t = 0; t < r->seq; t++) r->be->ops->attention(r->be, r->out + t * row, r->q + t * row, r->k, r->v, 1, &p);
}

#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
// attn_exec, then wait for the device (a GPU backend's op only queues the work).
static void attn_exec_sync(void *arg) {
    attn_run *r = arg;
    attn_exec(r);
    r->be->ops->synchronize(r->be);
}
#endif

// Largest |out - ref| over a few (query, head) pairs, reference in double.
static double attn_check(const attn_run *r) {
    size_t row = (size_t)r->heads * r->hd;
    int qs[3] = {0, r->seq / 2, r->seq - 1}, hs[2] = {0, r->heads - 1};
    double worst = 0, *sc = malloc((size_t)r->seq * sizeof *sc);
    if (!sc) return INFINITY;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 2; b++) {
            int t = qs[a], h = hs[b], lim = r->causal ? t + 1 : r->seq;
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s < lim; s++) {
                double d = 0;
                for (int i = 0; i < r->hd; i++) d += (double)r->q[t * row + h * r->hd + i] * r->k[s * row + h * r->hd + i];
                sc[s] = d / sqrt((double)r->hd);
                if (sc[s] > mx) mx = sc[s];
            }
            for (int s = 0; s < lim; s++) sum += (sc[s] = exp(sc[s] - mx));
            for (int i = 0; i < r->hd; i++) {
                double o = 0;
                for (int s = 0; s < lim; s++) o += sc[s] / sum * r->v[s * row + h * r->hd + i];
                double e = fabs(r->out[t * row + h * r->hd + i] - o);
                if (!isnan(worst) && !(e <= worst)) worst = e; // a NaN stays: a failure
            }
        }
    free(sc);
    return worst;
}

static void attn_cpu_one(ll_hw_ctx *c, cJSON *doc, attn_run *r, double *rate_seen) {
    double flops = 4.0 * (double)r->seq * r->seq * r->hd * r->heads * (r->causal ? 0.5 : 1.0);
    ll_hw_meas m = {.m = r->seq, .n = r->hd, .k = r->heads, .work = flops, .err = NAN, .tol = 1e-4};
    snprintf(m.kind, sizeof m.kind, "%s", r->causal ? "causal" : "full");
    snprintf(m.dtype, sizeof m.dtype, "fp32");
    snprintf(m.impl, sizeof m.impl, "engine cpu backend attention op (F32 Q/K/V%s)",
             r->causal ? "" : "; full = one call per query row at n_past = seq - 1");
    double max_run = c->cfg.quick ? 2.0 : c->cfg.full ? 60.0 : 10.0;
    if (*rate_seen > 0 && flops / *rate_seen > max_run) {
        snprintf(m.note, sizeof m.note, "skipped: predicted %.0f s per run (limit %.0f s)", flops / *rate_seen, max_run);
        m.validated = -1;
    } else {
        size_t n = (size_t)r->seq * r->heads * r->hd;
        for (size_t i = 0; i < n; i++) r->out[i] = NAN; // poison
        double t0 = ll_time_s();
        attn_exec(r);
        double first = ll_time_s() - t0;
        m.err = attn_check(r);
        m.validated = m.err <= m.tol;
        if (m.validated) {
            m.t = ll_hw_time(attn_exec, r, 0, 3, first > 1.0 ? 3 : 100, c->cfg.min_time);
            *rate_seen = flops / m.t.median;
        } else
            snprintf(m.note, sizeof m.note, "validation failed: max |O - ref| %.3g > %.3g; not timed", m.err, m.tol);
    }
    cJSON *row = ll_hw_row(doc, "cpu", &m, "tflops", 1e-12, c->sys.cpu_peak_spec_gflops / 1e3, "TFLOPS",
                           "estimate: freq x physical cores x SIMD lanes x 2 x FMA units (system_info.json)");
    cJSON_AddNumberToObject(row, "seq", r->seq);
    cJSON_AddNumberToObject(row, "head_dim", r->hd);
    cJSON_AddNumberToObject(row, "heads", r->heads);
    cJSON_AddNumberToObject(row, "batch", 1);
    cJSON_AddNumberToObject(row, "threads", c->cfg.n_threads);
}

static void attn_cpu(ll_hw_ctx *c, cJSON *doc) {
    ll_error err = {0};
    int max_seq = 0;
    for (int i = 0; i < c->cfg.n_attn_seqs; i++) max_seq = c->cfg.attn_seqs[i] > max_seq ? c->cfg.attn_seqs[i] : max_seq;
    ll_backend *be = ll_backend_cpu_init(c->cfg.n_threads, &err);
    if (!be || be->ops->prepare(be, NULL, 0, 1, max_seq, &err) != LL_OK) {
        ll_hw_note(doc, "cpu: skipped: %s", err.message);
        ll_backend_free(be);
        return;
    }
    ll_hw_note(doc, "cpu: the engine's attention is F32 (Q, K and V in fp32) today; %d heads, batch 1", c->cfg.attn_heads);
    static const int k_hd[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++) {
        double rate_seen[2] = {0, 0};
        for (int si = 0; si < c->cfg.n_attn_seqs; si++) {
            int seq = c->cfg.attn_seqs[si], hd = k_hd[hi], heads = c->cfg.attn_heads;
            size_t n = (size_t)seq * heads * hd;
            attn_run r = {be, malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4), seq, hd, heads, true};
            if (!r.q || !r.k || !r.v || !r.out) {
                ll_hw_note(doc, "cpu: seq %d head_dim %d skipped: out of memory", seq, hd);
            } else {
                uint64_t s = 5 + (uint64_t)seq;
                float *arrs[3] = {r.q, r.k, r.v};
                for (int a = 0; a < 3; a++)
                    for (size_t i = 0; i < n; i++) {
                        s = s * 6364136223846793005ull + 1442695040888963407ull;
                        arrs[a][i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
                    }
                for (int causal = 1; causal >= 0; causal--) {
                    r.causal = causal;
                    ll_hw_progress(c, "attention cpu %s seq %d head_dim %d heads %d", causal ? "causal" : "full", seq, hd, heads);
                    attn_cpu_one(c, doc, &r, &rate_seen[causal]);
                }
            }
            free(r.q); free(r.k); free(r.v); free(r.out);
        }
    }
    ll_backend_free(be);
}

// The engine's CUDA attention op (the backend's own kernel: tensor cores, f16 operands, f32 Q/K/V/O in memory),
// causal only: the op is causal by construction and a full-attention row per call would time launches.
static void attn_gpu_engine(ll_hw_ctx *c, cJSON *doc, int gpu, const char *dev) {
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    ll_error err = {0};
    int max_seq = 0;
    for (int i = 0; i < c->cfg.n_gpu_attn_seqs; i++)
        max_seq = c->cfg.gpu_attn_seqs[i] > max_seq ? c->cfg.gpu_attn_seqs[i] : max_seq;
    ll_backend *be = NULL;
    if (gpu != 0 || ll_backend_init(&be, "cuda", 1, &err) != LL_OK ||
        be->ops->prepare(be, NULL, 0, max_seq, max_seq, &err) != LL_OK) {
        ll_hw_note(doc, "%s: engine attention skipped: %s", dev, gpu != 0 ? "the backend uses device 0" : err.message);
        ll_backend_free(be);
        return;
    }
    static const int k_hd[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++)
        for (int si = 0; si < c->cfg.n_gpu_attn_seqs; si++) {
            int seq = c->cfg.gpu_attn_seqs[si], hd = k_hd[hi], heads = c->cfg.gpu_attn_heads;
            size_t n = (size_t)seq * heads * hd;
            attn_run h = {NULL, malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4), seq, hd, heads, true};
            attn_run d = {be, be->ops->alloc(be, n * 4, &err), be->ops->alloc(be, n * 4, &err),
                          be->ops->alloc(be, n * 4, &err), be->ops->alloc(be, n * 4, &err), seq, hd, heads, true};
            ll_hw_progress(c, "attention %s engine causal seq %d head_dim %d heads %d", dev, seq, hd, heads);
            double flops = 2.0 * (double)seq * seq * hd * heads;
            ll_hw_meas m = {.m = seq, .n = hd, .k = heads, .work = flops, .err = NAN, .tol = 3e-3};
            snprintf(m.kind, sizeof m.kind, "causal");
            snprintf(m.dtype, sizeof m.dtype, "fp16");
            snprintf(m.impl, sizeof m.impl, "engine cuda backend attention op (tensor cores, f16 operands, f32 in "
                     "memory)");
            if (!h.q || !h.k || !h.v || !h.out || !d.q || !d.k || !d.v || !d.out) {
                m.validated = -1;
                snprintf(m.note, sizeof m.note, "skipped: out of memory");
            } else {
                uint64_t s = 9 + (uint64_t)seq;
                float *arrs[3] = {h.q, h.k, h.v}, *devs[3] = {d.q, d.k, d.v};
                for (int a = 0; a < 3; a++) {
                    for (size_t i = 0; i < n; i++) {
                        s = s * 6364136223846793005ull + 1442695040888963407ull;
                        arrs[a][i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
                    }
                    be->ops->upload(be, devs[a], arrs[a], n * 4);
                }
                for (size_t i = 0; i < n; i++) h.out[i] = NAN; // poison, on the device too
                be->ops->upload(be, d.out, h.out, n * 4);
                ll_attn_params p = params_of(&h, 0);
                be->ops->attention(be, d.out, d.q, d.k, d.v, seq, &p);
                be->ops->download(be, h.out, d.out, n * 4);
                be->ops->synchronize(be);
                m.err = attn_check(&h);
                m.validated = m.err <= m.tol;
                if (m.validated) {
                    d.causal = true;
                    m.t = ll_hw_time(attn_exec_sync, &d, 0, 3, 50, c->cfg.min_time);
                } else {
                    snprintf(m.note, sizeof m.note, "validation failed: max |O - ref| %.3g > %.3g; not timed", m.err, m.tol);
                }
            }
            cJSON *row = ll_hw_row(doc, dev, &m, "tflops", 1e-12, ll_hw_gpu_spec_tflops(c->sys.gpus[gpu].spec, "fp16"),
                                   "TFLOPS", "spec: dense GEMM peak of this dtype");
            cJSON_AddNumberToObject(row, "seq", seq);
            cJSON_AddNumberToObject(row, "head_dim", hd);
            cJSON_AddNumberToObject(row, "heads", heads);
            cJSON_AddNumberToObject(row, "batch", 1);
            float *dv[4] = {d.q, d.k, d.v, d.out};
            for (int i = 0; i < 4; i++)
                if (dv[i]) be->ops->free(be, dv[i]);
            free(h.q), free(h.k), free(h.v), free(h.out);
        }
    ll_backend_free(be);
#else
    (void)c, (void)gpu;
    ll_hw_note(doc, "%s: engine attention skipped: built without CUDA", dev);
#endif
}

static void attn_gpu(ll_hw_ctx *c, cJSON *doc) {
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        attn_gpu_engine(c, doc, d, dev);
        ll_hw_progress(c, "attention %s: cuBLAS stand-in (not the engine's kernel)", dev);
        int cap = 8 * LL_HW_MAX_SIZES;
        ll_hw_meas *out = calloc((size_t)cap, sizeof *out);
        if (!out) return;
        int n = ll_hw_cuda_attention(g->info.index, c->cfg.gpu_attn_seqs, c->cfg.n_gpu_attn_seqs, c->cfg.gpu_attn_heads,
                                     c->cfg.min_time, out, cap, why, sizeof why);
        if (n < 0) ll_hw_note(doc, "%s: attention stopped: %s", dev, why);
        for (int i = 0; i < n; i++) {
            double spec = ll_hw_gpu_spec_tflops(g->spec, out[i].dtype);
            cJSON *row = ll_hw_row(doc, dev, &out[i], "tflops", 1e-12, spec, "TFLOPS", "spec: dense GEMM peak of this dtype");
            cJSON_AddNumberToObject(row, "seq", (double)out[i].m);
            cJSON_AddNumberToObject(row, "head_dim", (double)out[i].n);
            cJSON_AddNumberToObject(row, "heads", (double)out[i].k);
            cJSON_AddNumberToObject(row, "batch", 1);
        }
        free(out);
    }
}

cJSON *ll_hw_attention_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "attention");
    ll_hw_note(doc, "flops = 4 seq^2 head_dim heads (QK^T and PV, 2 flops per multiply-add) for full attention, half "
                    "of that for causal; softmax not counted");
    attn_cpu(c, doc);
    if (c->sys.n_gpus > 0) attn_gpu(c, doc);
    else ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    return doc;
}
