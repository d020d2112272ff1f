// hw_gemm.c — GEMM section: the engine's own CPU kernels (ll_matmul with F32 and BF16 weights), the lab's int8
// GEMM, a system BLAS found at run time (cblas_sgemm), and cuBLASLt on each GPU; validated, then timed.
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"
#include "backend/cpu/matmul.h"
#include "core/half.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- validation -------------------------------------------------------------------------------------------------

static double elt(ll_hw_elt t, const void *p, size_t i) {
    switch (t) {
    case LL_HW_F32: return ((const float *)p)[i];
    case LL_HW_BF16: return ll_bf16_to_fp32(((const uint16_t *)p)[i]);
    case LL_HW_I8: return ((const int8_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

static uint64_t mix64(uint64_t *s) { // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double ll_hw_gemm_check(ll_hw_elt ta, const void *A, ll_hw_elt tb, const void *B, ll_hw_elt tc, const void *C,
                        int m, int n, int k, size_t ldc, int samples, uint64_t seed, double tol, bool *pass) {
    double worst = 0;
    uint64_t s = seed;
    for (int t = 0; t < samples; t++) {
        int i, j;
        if (t < 4) { i = t & 1 ? m - 1 : 0; j = t & 2 ? n - 1 : 0; }          // corners
        else if (t < 12) { i = (int)(mix64(&s) % (uint64_t)(m < n ? m : n)); j = i; } // diagonal
        else { i = (int)(mix64(&s) % (uint64_t)m); j = (int)(mix64(&s) % (uint64_t)n); }
        double ref = 0, mag = 0;
        for (int l = 0; l < k; l++) {
            double p = elt(ta, A, (size_t)i * k + l) * elt(tb, B, (size_t)j * k + l);
            ref += p;
            mag += fabs(p);
        }
        double e = fabs(elt(tc, C, (size_t)j * ldc + i) - ref) / (mag > 1e-30 ? mag : 1e-30);
        if (!isnan(worst) && !(e <= worst)) worst = e; // a NaN stays: a failure
    }
    *pass = worst <= tol;
    return worst;
}

// Tolerance for f32 accumulation over k products, relative to sum |a b|: 8 sqrt(k) units of roundoff (the
// worst-case bound is k units; sums of random terms grow like sqrt(k)).
static double f32_tol(int k) { return 8.0 * sqrt((double)k) * ldexp(1.0, -24); }

// ---- a system BLAS, loaded at run time ----------------------------------------------------------------------------

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                               const float *b, int ldb, float beta, float *c, int ldc);
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef struct blas_lib {
    void *handle;
    cblas_sgemm_fn sgemm;
    char name[64], path[PATH_MAX];
    int threads; // 0 = unknown
} blas_lib;

static bool blas_open(blas_lib *b, int n_threads) {
    static const char *k_names[] = {"libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libblis.so",
                                    "libmkl_rt.so", "libblas.so.3", "libblas.so"};
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0] && !b->sgemm; i++) {
        b->handle = dlopen(k_names[i], RTLD_NOW | RTLD_LOCAL);
        if (!b->handle) continue;
        b->sgemm = (cblas_sgemm_fn)(uintptr_t)dlsym(b->handle, "cblas_sgemm");
        if (!b->sgemm) { dlclose(b->handle); b->handle = NULL; }
    }
    if (!b->sgemm) return false;
    Dl_info info;
    if (dladdr((void *)(uintptr_t)b->sgemm, &info) && info.dli_fname && !realpath(info.dli_fname, b->path))
        snprintf(b->path, sizeof b->path, "%s", info.dli_fname);
    const char *p = b->path;
    snprintf(b->name, sizeof b->name, "%s", strstr(p, "openblas") ? "OpenBLAS" : strstr(p, "blis") ? "BLIS"
                                            : strstr(p, "mkl") ? "MKL" : strstr(p, "atlas") ? "ATLAS"
                                            : "reference BLAS (netlib, single-threaded)");
    void (*set)(int) = (void (*)(int))(uintptr_t)dlsym(b->handle, "openblas_set_num_threads");
    int (*get)(void) = (int (*)(void))(uintptr_t)dlsym(b->handle, "openblas_get_num_threads");
    if (set) set(n_threads);
    b->threads = get ? get() : strstr(b->name, "reference") ? 1 : 0;
    return true;
}

// ---- CPU runs -------------------------------------------------------------------------------------------------------

typedef struct gemm_run {
    ll_pool *pool;
    int size;
    uint32_t wtype;
    const void *W;    // (size, size) weights, F32 or BF16
    const float *X;   // (size, size) tokens
    float *Y;
    const int8_t *A8, *B8;
    int32_t *C8;
    void *wsp;
    cblas_sgemm_fn sgemm;
} gemm_run;

static void run_engine(void *arg) {
    gemm_run *g = arg;
    ll_matmul(g->pool, g->wtype, g->W, g->X, g->Y, g->size, g->size, g->size, g->wsp);
}
static void run_i8(void *arg) {
    gemm_run *g = arg;
    ll_hw_i8_gemm(g->pool, g->A8, g->B8, g->C8, g->size, g->size, g->size, g->wsp);
}
static void run_blas(void *arg) {
    gemm_run *g = arg;
    g->sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, g->size, g->size, g->size, 1.0f, g->X, g->size,
             (const float *)g->W, g->size, 0.0f, g->Y, g->size);
}

typedef struct gemm_bufs {
    float *W, *X, *Y;
    uint16_t *Wb;
    int8_t *A8, *B8;
    int32_t *C8;
    void *wsp;
} gemm_bufs;

static void bufs_free(gemm_bufs *b) {
    ll_aligned_free(b->W); ll_aligned_free(b->X); ll_aligned_free(b->Y); ll_aligned_free(b->Wb);
    ll_aligned_free(b->A8); ll_aligned_free(b->B8); ll_aligned_free(b->C8); ll_aligned_free(b->wsp);
    memset(b, 0, sizeof *b);
}

static bool bufs_alloc(gemm_bufs *b, int s, int nth, ll_error *err) {
    size_t n = (size_t)s * (size_t)s;
    size_t ws = ll_matmul_wsize(LL_TYPE_F32, s, s, nth), wb = ll_matmul_wsize(LL_TYPE_BF16, s, s, nth);
    size_t wi = ll_hw_i8_wsize(s, s, s, nth);
    ws = ws > wb ? ws : wb;
    ws = ws > wi ? ws : wi;
    b->W = ll_aligned_alloc(n * 4, 64, err); b->X = ll_aligned_alloc(n * 4, 64, err);
    b->Y = ll_aligned_alloc(n * 4, 64, err); b->Wb = ll_aligned_alloc(n * 2, 64, err);
    b->A8 = ll_aligned_alloc(n, 64, err); b->B8 = ll_aligned_alloc(n, 64, err);
    b->C8 = ll_aligned_alloc(n * 4, 64, err); b->wsp = ll_aligned_alloc(ws ? ws : 64, 64, err);
    if (!b->W || !b->X || !b->Y || !b->Wb || !b->A8 || !b->B8 || !b->C8 || !b->wsp) return false;
    uint64_t r = 12345 + (uint64_t)s;
    for (size_t i = 0; i < n; i++) {
        b->W[i] = (float)((mix64(&r) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        b->X[i] = (float)((mix64(&r) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        b->Wb[i] = ll_fp32_to_bf16(b->W[i]);
        b->A8[i] = (int8_t)((int)(mix64(&r) % 255) - 127);
        b->B8[i] = (int8_t)((int)(mix64(&r) % 255) - 127);
    }
    return true;
}

typedef enum { G_ENGINE_F32, G_ENGINE_BF16, G_INT8, G_BLAS, G_N } gemm_impl;

// Validate one run, then time it; a run predicted to take longer than max_run_s is skipped, saying so.
static void gemm_measure(ll_hw_ctx *c, gemm_impl which, gemm_run *g, const gemm_bufs *b, double *rate_seen,
                         ll_hw_meas *m) {
    int s = g->size;
    double flops = 2.0 * s * (double)s * s, max_run = c->cfg.quick ? 2.0 : c->cfg.full ? 60.0 : 10.0;
    if (rate_seen[which] > 0 && flops / rate_seen[which] > max_run) {
        snprintf(m->note, sizeof m->note, "skipped: predicted %.0f s per run from the smaller size (limit %.0f s)",
                 flops / rate_seen[which], max_run);
        m->validated = -1;
        return;
    }
    ll_hw_fn fn = which == G_INT8 ? run_i8 : which == G_BLAS ? run_blas : run_engine;
    memset(g->Y, 0xff, (size_t)s * s * 4); // poison (NaN / -1)
    memset(g->C8, 0xff, (size_t)s * s * 4);
    double t0 = ll_time_s();
    fn(g);
    double first = ll_time_s() - t0;
    bool pass;
    if (which == G_INT8)
        m->err = ll_hw_gemm_check(LL_HW_I8, b->A8, LL_HW_I8, b->B8, LL_HW_I32, b->C8, s, s, s, (size_t)s, 64, 7, 0, &pass);
    else
        m->err = ll_hw_gemm_check(which == G_ENGINE_BF16 ? LL_HW_BF16 : LL_HW_F32, g->W, LL_HW_F32, b->X, LL_HW_F32,
                                  b->Y, s, s, s, (size_t)s, 64, 7, m->tol, &pass);
    m->validated = pass;
    if (!pass) {
        snprintf(m->note, sizeof m->note, "validation failed: error %.3g > tolerance %.3g; not timed", m->err, m->tol);
        return;
    }
    // The validation run was the warm-up; slow runs (> 1 s) get the minimum of three repetitions.
    m->t = ll_hw_time(fn, g, 0, 3, first > 1.0 ? 3 : 200, c->cfg.min_time);
    rate_seen[which] = flops / m->t.median;
}

static void gemm_cpu(ll_hw_ctx *c, cJSON *doc) {
    const ll_hw_sys *sy = &c->sys;
    ll_error err = {0};
    ll_pool *pool = ll_pool_init(c->cfg.n_threads, &err);
    if (!pool) { ll_hw_note(doc, "cpu: %s", err.message); return; }
    blas_lib blas;
    bool have_blas = blas_open(&blas, c->cfg.n_threads);
    if (!have_blas) ll_hw_note(doc, "cpu: no BLAS with cblas_sgemm found (libopenblas, libblis, libmkl_rt, libblas): BLAS rows skipped");
    if (!c->gemm_sizes_given && !c->cfg.full)
        ll_hw_note(doc, "cpu: sizes default to 1024%s (8192^3 takes too long on a small CPU); --full adds 4096, --sizes sets them",
                   c->cfg.quick ? " (--quick)" : "/2048");
    double rate_seen[G_N] = {0};
    for (int si = 0; si < c->cfg.n_gemm_sizes; si++) {
        int s = c->cfg.gemm_sizes[si];
        gemm_bufs b = {0};
        if (!bufs_alloc(&b, s, c->cfg.n_threads, &err)) {
            ll_hw_note(doc, "cpu: size %d skipped: %s", s, err.message);
            bufs_free(&b);
            continue;
        }
        for (int which = 0; which < G_N; which++) {
            if (which == G_BLAS && !have_blas) continue;
            gemm_run g = {pool, s, which == G_ENGINE_BF16 ? LL_TYPE_BF16 : LL_TYPE_F32,
                          which == G_ENGINE_BF16 ? (const void *)b.Wb : (const void *)b.W, b.X, b.Y, b.A8, b.B8, b.C8,
                          b.wsp, have_blas ? blas.sgemm : NULL};
            ll_hw_meas m = {.m = s, .n = s, .k = s, .work = 2.0 * s * (double)s * s, .err = NAN};
            snprintf(m.kind, sizeof m.kind, "gemm");
            snprintf(m.dtype, sizeof m.dtype, "%s", which == G_ENGINE_BF16 ? "bf16" : which == G_INT8 ? "int8" : "fp32");
            if (which == G_INT8) snprintf(m.impl, sizeof m.impl, "lab int8 GEMM, %s", ll_hw_i8_isa());
            else if (which == G_BLAS) snprintf(m.impl, sizeof m.impl, "cblas_sgemm: %s (%s)", blas.name, blas.path);
            else snprintf(m.impl, sizeof m.impl, "engine ll_matmul %s weights (%s)", which == G_ENGINE_BF16 ? "BF16" : "F32",
                          ll_matmul_isa(g.wtype));
            m.tol = which == G_INT8 ? 0 : f32_tol(s);
            ll_hw_progress(c, "gemm cpu %s %s %d^3", m.dtype, which == G_BLAS ? blas.name : which == G_INT8 ? "int8" : "engine", s);
            gemm_measure(c, (gemm_impl)which, &g, &b, rate_seen, &m);
            double spec = which == G_INT8 ? sy->cpu_int8_spec_gops / 1e3 : sy->cpu_peak_spec_gflops / 1e3;
            cJSON *row = ll_hw_row(doc, "cpu", &m, "tflops", 1e-12, spec, which == G_INT8 ? "TOPS" : "TFLOPS",
                                   "estimate: freq x physical cores x SIMD lanes x 2 x FMA units (system_info.json)");
            cJSON_AddNumberToObject(row, "m", s);
            cJSON_AddNumberToObject(row, "n", s);
            cJSON_AddNumberToObject(row, "k", s);
            cJSON_AddNumberToObject(row, "threads", which == G_BLAS ? blas.threads : c->cfg.n_threads);
            if (m.t.reps > 0 && which != G_INT8 && sy->cpu_peak_meas_gflops > 0)
                cJSON_AddNumberToObject(row, "pct_of_measured_fma_peak", 100.0 * ll_hw_rate(&m, 1e-9) / sy->cpu_peak_meas_gflops);
            if (m.t.reps > 0 && which != G_INT8 && ll_hw_rate(&m, 1e-9) > c->best_cpu_fp32_gflops)
                c->best_cpu_fp32_gflops = ll_hw_rate(&m, 1e-9);
        }
        bufs_free(&b);
    }
    if (have_blas) dlclose(blas.handle);
    ll_pool_free(pool);
}

static void gemm_gpu(ll_hw_ctx *c, cJSON *doc) {
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        ll_hw_progress(c, "gemm %s (%s): cuBLASLt fp32/tf32/fp16/bf16/fp8/int8", dev, g->info.name);
        ll_hw_meas out[6 * LL_HW_MAX_SIZES];
        int n = ll_hw_cuda_gemm(g->info.index, c->cfg.gpu_gemm_sizes, c->cfg.n_gpu_gemm_sizes, c->cfg.min_time, out,
                                6 * LL_HW_MAX_SIZES, why, sizeof why);
        if (n < 0) { ll_hw_note(doc, "%s: GEMM stopped: %s", dev, why); continue; }
        for (int i = 0; i < n; i++) {
            double spec = ll_hw_gpu_spec_tflops(g->spec, out[i].dtype);
            cJSON *row = ll_hw_row(doc, dev, &out[i], "tflops", 1e-12, spec, !strcmp(out[i].dtype, "int8") ? "TOPS" : "TFLOPS",
                                   "spec: vendor datasheet, dense");
            cJSON_AddNumberToObject(row, "m", (double)out[i].m);
            cJSON_AddNumberToObject(row, "n", (double)out[i].n);
            cJSON_AddNumberToObject(row, "k", (double)out[i].k);
            if (!strcmp(out[i].dtype, "bf16") && ll_hw_rate(&out[i], 1e-12) > c->best_gpu_bf16_tflops[d])
                c->best_gpu_bf16_tflops[d] = ll_hw_rate(&out[i], 1e-12);
        }
        if (!g->spec) ll_hw_note(doc, "%s: '%s' is not in the spec table: no %% of spec", dev, g->info.name);
    }
}

cJSON *ll_hw_gemm_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "gemm");
    ll_hw_note(doc, "C (n x m) = B (n x k) A^T: engine rows are ll_matmul with W = A (m = n_out, k = n_in) and "
                    "n_tokens = n; flops = 2 m n k; error = |C - ref| / sum_k |a b| on 64 sampled entries");
    gemm_cpu(c, doc);
    if (c->sys.n_gpus > 0) gemm_gpu(c, doc);
    else ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    return doc;
}
