// hw_mem.c — memory bandwidth section: STREAM-style read (sum), write (fill), copy and triad on the CPU for
// 1..N threads over arrays far larger than the last-level cache, then each GPU's device memory.
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"

#include <math.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if !defined(LL_PORTABLE) && defined(__AVX512F__)
#define BW_AVX512 1
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__AVX2__)
#define BW_AVX2 1
#include <immintrin.h>
#elif !defined(LL_PORTABLE) && defined(__ARM_NEON)
#define BW_NEON 1
#include <arm_neon.h>
#endif

#define BW_CHUNK 65536   // floats summed in float before the running total moves to double (keeps it exact)
#define BW_QUANTUM 1024  // thread ranges are multiples of 4 KiB: aligned for streaming stores

static const char *bw_isa(void) {
#if defined(BW_AVX512)
    return "avx512, non-temporal stores (write/copy/triad)";
#elif defined(BW_AVX2)
    return "avx2, non-temporal stores (write/copy/triad)";
#elif defined(BW_NEON)
    return "neon, regular stores (no non-temporal store intrinsic)";
#else
    return "scalar C loops";
#endif
}

// Sum of x[0, n), n a multiple of 16 and <= BW_CHUNK; four independent accumulators.
static float sum_chunk(const float *x, size_t n) {
#if defined(BW_AVX512)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(x + i + 48));
    }
    for (; i < n; i += 16) s0 = _mm512_add_ps(s0, _mm512_load_ps(x + i));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#elif defined(BW_AVX2)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(x + i + 24));
    }
    for (; i < n; i += 8) s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i));
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
#elif defined(BW_NEON)
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + i));
        s1 = vaddq_f32(s1, vld1q_f32(x + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + i + 12));
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
#else
    float s[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i += 4)
        for (int u = 0; u < 4; u++) s[u] += x[i + u];
    return (s[0] + s[1]) + (s[2] + s[3]);
#endif
}

// y = a + s * b over [0, n) (b NULL: y = a; a NULL: y = s), streaming stores where the ISA has them.
static void store_op(float *y, const float *a, const float *b, float s, size_t n) {
#if defined(BW_AVX512)
    __m512 vs = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += 16) {
        __m512 v = !a ? vs : b ? _mm512_fmadd_ps(vs, _mm512_load_ps(b + i), _mm512_load_ps(a + i)) : _mm512_load_ps(a + i);
        _mm512_stream_ps(y + i, v);
    }
    _mm_sfence();
#elif defined(BW_AVX2)
    __m256 vs = _mm256_set1_ps(s);
    for (size_t i = 0; i < n; i += 8) {
        __m256 v = !a ? vs : b ? _mm256_fmadd_ps(vs, _mm256_load_ps(b + i), _mm256_load_ps(a + i)) : _mm256_load_ps(a + i);
        _mm256_stream_ps(y + i, v);
    }
    _mm_sfence();
#elif defined(BW_NEON)
    float32x4_t vs = vdupq_n_f32(s);
    for (size_t i = 0; i < n; i += 4) {
        float32x4_t v = !a ? vs : b ? vfmaq_f32(vld1q_f32(a + i), vs, vld1q_f32(b + i)) : vld1q_f32(a + i);
        vst1q_f32(y + i, v);
    }
#else
    if (!a) for (size_t i = 0; i < n; i++) y[i] = s;
    else if (!b) for (size_t i = 0; i < n; i++) y[i] = a[i];
    else for (size_t i = 0; i < n; i++) y[i] = a[i] + s * b[i];
#endif
}

typedef enum { BW_READ, BW_WRITE, BW_COPY, BW_TRIAD, BW_INIT, BW_N_OPS = 4 } bw_op;

typedef struct bw_job {
    ll_pool *pool;
    float *a, *b, *c;  // a = 1, b = copy of a, c = written / triad
    size_t n;          // floats per array
    bw_op op;
    double sums[256];  // read: per-thread totals
} bw_job;

static void bw_thread(void *arg, int ith, int nth) {
    bw_job *j = arg;
    int64_t lo, hi;
    ll_split_range((int64_t)j->n, ith, nth, BW_QUANTUM, &lo, &hi);
    size_t n = (size_t)(hi - lo);
    switch (j->op) {
    case BW_READ: {
        double t = 0;
        for (size_t i = 0; i < n; i += BW_CHUNK) t += sum_chunk(j->a + lo + i, n - i < BW_CHUNK ? n - i : BW_CHUNK);
        j->sums[ith & 255] = t;
        break;
    }
    case BW_WRITE: store_op(j->c + lo, NULL, NULL, 7.0f, n); break;
    case BW_COPY: store_op(j->b + lo, j->a + lo, NULL, 0, n); break;
    case BW_TRIAD: store_op(j->c + lo, j->a + lo, j->b + lo, 3.0f, n); break;
    default: // first touch by the threads that will use the pages
        for (size_t i = 0; i < n; i++) { j->a[lo + i] = 1.0f; j->b[lo + i] = 2.0f; j->c[lo + i] = 0.5f; }
    }
}

static void bw_run(void *arg) {
    bw_job *j = arg;
    memset(j->sums, 0, sizeof j->sums);
    ll_pool_run(j->pool, bw_thread, j);
}

// After the timed runs: read summed to n (a = 1), write left 7, copy left b = a = 1, triad c = 1 + 3 * 1 = 4.
static bool bw_check(const bw_job *j, double *err) {
    if (j->op == BW_READ) {
        double t = 0;
        for (int i = 0; i < 256; i++) t += j->sums[i];
        *err = fabs(t - (double)j->n);
        return *err == 0;
    }
    const float *y = j->op == BW_COPY ? j->b : j->c;
    float want = j->op == BW_WRITE ? 7.0f : j->op == BW_COPY ? 1.0f : 4.0f;
    *err = 0;
    for (size_t i = 0; i < j->n; i += j->n / 97 + 1) *err += y[i] != want;
    *err += y[j->n - 1] != want;
    return *err == 0;
}

static float *bw_alloc(size_t bytes, ll_error *err) {
    float *p = ll_aligned_alloc(bytes, 4096, err);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p) madvise(p, bytes, MADV_HUGEPAGE); // fewer TLB misses; advice only, failure is harmless
#endif
    return p;
}

static void mem_cpu(ll_hw_ctx *c, cJSON *doc) {
    static const char *k_names[BW_N_OPS] = {"read", "write", "copy", "triad"};
    static const double k_moved[BW_N_OPS] = {1, 1, 2, 3}; // arrays touched per element (STREAM counting)
    ll_error err = {0};
    size_t bytes = c->cfg.mem_bytes;
    bw_job j = {.n = bytes / 4};
    j.a = bw_alloc(bytes, &err);
    j.b = bw_alloc(bytes, &err);
    j.c = bw_alloc(bytes, &err);
    ll_hw_note(doc, "cpu: arrays of %zu MiB each (last-level cache %llu MiB); bytes counted as STREAM does: read 1, "
                    "write 1, copy 2, triad 3 arrays per pass (no write-allocate traffic)",
               bytes >> 20, (unsigned long long)(c->sys.llc_bytes >> 20));
    int counts[32], n_counts = 0;
    for (int t = 1; t < c->cfg.n_threads && n_counts < 31; t *= 2) counts[n_counts++] = t;
    counts[n_counts++] = c->cfg.n_threads;
    for (int ti = 0; ti < n_counts && j.a && j.b && j.c; ti++) {
        j.pool = ll_pool_init(counts[ti], &err);
        if (!j.pool) { ll_hw_note(doc, "cpu: %d threads: %s", counts[ti], err.message); break; }
        if (ti == 0) { // first touch by every thread, so pages land near the cores that use them
            ll_pool *all = ll_pool_init(c->cfg.n_threads, &err);
            ll_pool *one = j.pool;
            j.pool = all;
            j.op = BW_INIT;
            bw_run(&j);
            j.pool = one;
            ll_pool_free(all);
        }
        for (int op = 0; op < BW_N_OPS; op++) {
            ll_hw_meas m = {.m = counts[ti], .work = k_moved[op] * (double)bytes, .validated = 1, .tol = 0};
            snprintf(m.kind, sizeof m.kind, "%s", k_names[op]);
            snprintf(m.dtype, sizeof m.dtype, "fp32");
            snprintf(m.impl, sizeof m.impl, "%s", bw_isa());
            ll_hw_progress(c, "memory cpu %s, %d thread%s", k_names[op], counts[ti], counts[ti] > 1 ? "s" : "");
            j.op = (bw_op)op;
            m.t = ll_hw_time(bw_run, &j, 1, c->cfg.quick ? 3 : 5, 100, c->cfg.min_time);
            m.validated = bw_check(&j, &m.err);
            if (!m.validated) snprintf(m.note, sizeof m.note, "result check failed (%g wrong)", m.err);
            cJSON *row = ll_hw_row(doc, "cpu", &m, "gbps", 1e-9, c->cfg.cpu_mem_spec_gbps, "GB/s", "spec: --mem-spec");
            cJSON_AddNumberToObject(row, "threads", counts[ti]);
            cJSON_AddNumberToObject(row, "array_bytes", (double)bytes);
            if (op == BW_READ && ll_hw_rate(&m, 1e-9) > c->best_cpu_read_gbps) c->best_cpu_read_gbps = ll_hw_rate(&m, 1e-9);
        }
        ll_pool_free(j.pool);
    }
    if (!j.a || !j.b || !j.c) ll_hw_note(doc, "cpu: skipped: %s", err.message);
    if (c->cfg.cpu_mem_spec_gbps <= 0) ll_hw_note(doc, "cpu: no DRAM spec known (pass --mem-spec GBPS for %% of spec)");
    ll_aligned_free(j.a);
    ll_aligned_free(j.b);
    ll_aligned_free(j.c);
}

static void mem_gpu(ll_hw_ctx *c, cJSON *doc) {
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        ll_hw_progress(c, "memory %s: read/write/copy/triad on %zu MiB arrays", dev, c->cfg.gpu_mem_bytes >> 20);
        ll_hw_meas out[8];
        int n = ll_hw_cuda_memory(g->info.index, c->cfg.gpu_mem_bytes, c->cfg.min_time, out, 8, why, sizeof why);
        if (n < 0) { ll_hw_note(doc, "%s: memory stopped: %s", dev, why); continue; }
        double spec = g->spec ? g->spec->mem_gbps : g->mem_gbps_from_clocks;
        const char *src = g->spec ? "spec: vendor datasheet" : "spec: 2 x memory clock x bus width";
        for (int i = 0; i < n; i++) {
            cJSON *row = ll_hw_row(doc, dev, &out[i], "gbps", 1e-9, spec, "GB/s", src);
            cJSON_AddNumberToObject(row, "array_bytes", (double)c->cfg.gpu_mem_bytes);
            if (!strcmp(out[i].kind, "read") && ll_hw_rate(&out[i], 1e-9) > c->best_gpu_read_gbps[d])
                c->best_gpu_read_gbps[d] = ll_hw_rate(&out[i], 1e-9);
        }
    }
}

cJSON *ll_hw_memory_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "memory");
    mem_cpu(c, doc);
    if (c->sys.n_gpus > 0) mem_gpu(c, doc);
    else ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    return doc;
}
