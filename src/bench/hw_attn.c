// hw_attn.c — attention section: the engine's CPU attention op (backend->ops->attention, F32 Q and O, the KV
// cache in F32, F16 and Q8_0), causal and full, head dim 64 and 128, batch 1; then on each GPU the engine's CUDA
// attention op (causal) and a library stand-in (hw_cuda_attn.cu, cuBLAS + a softmax kernel) for causal and full.
// Flops are counted the standard way: 4 seq^2 head_dim heads for full attention, half of that for causal.
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"
#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct attn_run {
    ll_backend *be;
    float *q, *k, *v, *out; // (seq, heads * hd) each; k, v: what the cache holds, as floats (the reference's)
    ll_kv_cache kv;         // seq rows (backend memory; unused in the host copy of a GPU run)
    int32_t *pos, *row0;    // (seq) host scratch for the batch positions
    int seq, hd, heads;
    bool causal;
} attn_run;

static ll_attn_params params_of(const attn_run *r) {
    ll_attn_params p = {.n_head = r->heads, .n_head_kv = r->heads, .head_dim = r->hd, .scale = 1.0f / sqrtf((float)r->hd)};
    return p;
}

// Causal: one call, every query t sees keys [0, t]. Full: the op is causal by construction, so each query
// row goes in its own call at position seq - 1, which lets it see all seq keys (a decode step's work).
static void attn_exec(void *arg) {
    attn_run *r = arg;
    size_t row = (size_t)r->heads * r->hd;
    ll_attn_params p = params_of(r);
    if (r->causal) {
        ll_batch_pos bp = ll_batch_pos_single(0, 0, r->seq, r->pos, r->row0);
        r->be->ops->attention(r->be, r->out, r->q, &r->kv, &bp, &p);
        return;
    }
    ll_batch_pos bp = ll_batch_pos_single(0, r->seq - 1, 1, r->pos, r->row0);
    for (int t = 0; t < r->seq; t++) r->be->ops->attention(r->be, r->out + t * row, r->q + t * row, &r->kv, &bp, &p);
}

// The cache of d (type, seq rows: allocated here, backend memory) = kd, vd (backend memory, (seq, kvd) floats)
// through the backend's kv_store; then hk, hv (host) = the stored rows as floats, for the reference.
static bool attn_fill_cache(attn_run *d, uint32_t type, const float *kd, const float *vd, float *hk, float *hv,
                            ll_error *err) {
    int kvd = d->heads * d->hd;
    uint64_t rb;
    const ll_type_traits *tt = ll_type_get(type);
    if (!tt || !tt->to_float || !ll_type_row_size(type, (uint64_t)kvd, &rb)) return false;
    size_t bytes = (size_t)rb * (size_t)d->seq;
    d->kv = (ll_kv_cache){d->be->ops->alloc(d->be, bytes, err), d->be->ops->alloc(d->be, bytes, err), type, d->seq,
                          d->seq};
    uint8_t *tmp = malloc(bytes);
    if (!d->kv.k || !d->kv.v || !tmp) {
        free(tmp);
        return false;
    }
    ll_batch_pos bp = ll_batch_pos_single(0, 0, d->seq, d->pos, d->row0);
    d->be->ops->kv_store(d->be, &d->kv, kd, vd, kvd, &bp);
    void *cache[2] = {d->kv.k, d->kv.v};
    float *host[2] = {hk, hv};
    for (int i = 0; i < 2; i++) {
        d->be->ops->download(d->be, tmp, cache[i], bytes);
        d->be->ops->synchronize(d->be);
        for (int s = 0; s < d->seq; s++) tt->to_float(tmp + (size_t)s * rb, host[i] + (size_t)s * kvd, kvd);
    }
    free(tmp);
    return true;
}

static void attn_free_cache(attn_run *d) {
    if (d->kv.k) d->be->ops->free(d->be, d->kv.k);
    if (d->kv.v) d->be->ops->free(d->be, d->kv.v);
    d->kv.k = d->kv.v = NULL;
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
    const char *tn = r->kv.type == LL_TYPE_F32 ? "fp32" : r->kv.type == LL_TYPE_F16 ? "fp16" : "q8_0";
    snprintf(m.kind, sizeof m.kind, "%s", r->causal ? "causal" : "full");
    snprintf(m.dtype, sizeof m.dtype, "%s", tn);
    snprintf(m.impl, sizeof m.impl, "engine cpu backend attention op (F32 Q, %s K/V cache%s)", tn,
             r->causal ? "" : "; full = one call per query row at position seq - 1");
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

// n values uniform in [-1, 1) from seed s.
static void attn_random(float *x, size_t n, uint64_t s) {
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

// One sequence length and head dim on the CPU: every cache type, causal then full. rate_seen: per (type, causal).
static void attn_cpu_seq(ll_hw_ctx *c, cJSON *doc, ll_backend *be, int seq, int hd, double rate_seen[3][2]) {
    static const uint32_t k_types[3] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_Q8_0};
    int heads = c->cfg.attn_heads;
    size_t n = (size_t)seq * heads * hd;
    ll_error err = {0};
    attn_run r = {be, malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4), {0}, malloc((size_t)seq * 4),
                  malloc((size_t)seq * 4), seq, hd, heads, true};
    if (!r.q || !r.k || !r.v || !r.out || !r.pos || !r.row0) {
        ll_hw_note(doc, "cpu: seq %d head_dim %d skipped: out of memory", seq, hd);
    } else {
        attn_random(r.q, n, 5 + (uint64_t)seq);
        for (int ti = 0; ti < 3; ti++) {
            if (!be->ops->supports(be, LL_OP_ATTENTION, k_types[ti])) continue;
            attn_random(r.k, n, 6 + (uint64_t)seq); // the cache's source values; then what it holds, as floats
            attn_random(r.v, n, 7 + (uint64_t)seq);
            if (!attn_fill_cache(&r, k_types[ti], r.k, r.v, r.k, r.v, &err)) {
                ll_hw_note(doc, "cpu: seq %d head_dim %d %s cache skipped: out of memory", seq, hd, ll_type_name(k_types[ti]));
            } else {
                for (int causal = 1; causal >= 0; causal--) {
                    r.causal = causal;
                    ll_hw_progress(c, "attention cpu %s %s cache seq %d head_dim %d heads %d", causal ? "causal" : "full",
                                   ll_type_name(k_types[ti]), seq, hd, heads);
                    attn_cpu_one(c, doc, &r, &rate_seen[ti][causal]);
                }
            }
            attn_free_cache(&r);
        }
    }
    free(r.q), free(r.k), free(r.v), free(r.out), free(r.pos), free(r.row0);
}

static void attn_cpu(ll_hw_ctx *c, cJSON *doc) {
    ll_error err = {0};
    int max_seq = 0;
    for (int i = 0; i < c->cfg.n_attn_seqs; i++) max_seq = c->cfg.attn_seqs[i] > max_seq ? c->cfg.attn_seqs[i] : max_seq;
    ll_backend *be = ll_backend_cpu_init(c->cfg.n_threads, &err);
    if (!be || be->ops->prepare(be, NULL, 0, max_seq, max_seq, &err) != LL_OK) {
        ll_hw_note(doc, "cpu: skipped: %s", err.message);
        ll_backend_free(be);
        return;
    }
    ll_hw_note(doc, "cpu: the engine's attention reads F32 Q and an F32, F16 or Q8_0 KV cache (dtype); %d heads, "
                    "batch 1; the reference reads the cache's values", c->cfg.attn_heads);
    static const int k_hd[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++) {
        double rate_seen[3][2] = {{0}};
        for (int si = 0; si < c->cfg.n_attn_seqs; si++) attn_cpu_seq(c, doc, be, c->cfg.attn_seqs[si], k_hd[hi], rate_seen);
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
            attn_run h = {NULL, malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4), {0}, NULL, NULL, seq, hd,
                          heads, true};
            attn_run d = {be, be->ops->alloc(be, n * 4, &err), be->ops->alloc(be, n * 4, &err),
                          be->ops->alloc(be, n * 4, &err), be->ops->alloc(be, n * 4, &err), {0},
                          malloc((size_t)seq * 4), malloc((size_t)seq * 4), seq, hd, heads, true};
            // the cache in F16 where the backend reads it (the engine's default), else F32
            uint32_t kt = be->ops->supports(be, LL_OP_ATTENTION, LL_TYPE_F16) ? LL_TYPE_F16 : LL_TYPE_F32;
            ll_hw_progress(c, "attention %s engine causal seq %d head_dim %d heads %d", dev, seq, hd, heads);
            double flops = 2.0 * (double)seq * seq * hd * heads;
            ll_hw_meas m = {.m = seq, .n = hd, .k = heads, .work = flops, .err = NAN, .tol = 3e-3};
            snprintf(m.kind, sizeof m.kind, "causal");
            snprintf(m.dtype, sizeof m.dtype, "fp16");
            snprintf(m.impl, sizeof m.impl, "engine cuda backend attention op (tensor cores, f16 operands, f32 Q/O, "
                     "%s KV cache)", kt == LL_TYPE_F16 ? "F16" : "F32");
            if (!h.q || !h.k || !h.v || !h.out || !d.q || !d.k || !d.v || !d.out || !d.pos || !d.row0) {
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
                bool filled = attn_fill_cache(&d, kt, d.k, d.v, h.k, h.v, &err);
                for (size_t i = 0; i < n; i++) h.out[i] = NAN; // poison, on the device too
                be->ops->upload(be, d.out, h.out, n * 4);
                if (filled) {
                    d.causal = true;
                    attn_exec(&d);
                    be->ops->download(be, h.out, d.out, n * 4);
                    be->ops->synchronize(be);
                }
                m.err = filled ? attn_check(&h) : NAN;
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
            attn_free_cache(&d);
            float *dv[4] = {d.q, d.k, d.v, d.out};
            for (int i = 0; i < 4; i++)
                if (dv[i]) be->ops->free(be, dv[i]);
            free(h.q), free(h.k), free(h.v), free(h.out), free(d.pos), free(d.row0);
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
