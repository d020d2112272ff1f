// bench_matmul.c — ll_matmul speed against this machine's ceilings: read bandwidth (AVX-512/AVX2 sum over
// 1 GiB) for decode and FMA peak for prefill. Validates every timed output first. Prints numbers, no verdict.
//
// Build (from the repository root, after `make BUILD=build-mm`), one line:
//   cc -O2 -march=native -std=c11 -D_GNU_SOURCE -pthread -Iinclude -Isrc -o build-mm/bench_matmul bench/bench_matmul.c build-mm/libllmlab.a -lm -lpthread
// Run: build-mm/bench_matmul [--quick] [--sweep] [--quant] [--repack] [--one TYPE N_OUT N_IN TOKENS THREADS]
//   --repack: the weights in the layout ll_matmul_repack_type gives their type (Q4_0: 16-row groups), as the
//   CPU backend runs them;
//   --sweep: F16 4096x4096 at 1..16 tokens (where the dot form should hand over to the panels);
//   --quant: the quantized kernels at llama-1B and SmolLM-135M shapes;
//   --one: a single configuration (for perf).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_q.h"
#include "core/half.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double med, min, max;
} stats;

static stats stats_of(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return (stats){t[n / 2], t[0], t[n - 1]};
}

// ---- ceilings ---------------------------------------------------------------------------------------------

typedef struct bw_ctx {
    const float *buf;
    size_t n; // floats
    float sums[64];
} bw_ctx;

// Each thread sums its half with 4 independent vector accumulators (loads only: a pure read stream).
static void bw_job(void *vctx, int ith, int nth) {
    bw_ctx *c = vctx;
    int64_t lo, hi;
    ll_split_range((int64_t)c->n, ith, nth, 64, &lo, &hi);
    const float *p = c->buf + lo;
    size_t n = (size_t)(hi - lo);
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    c->sums[ith] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float b[8];
    _mm256_storeu_ps(b, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    c->sums[ith] = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + b[7];
#else
    float s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += p[i + u];
    c->sums[ith] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
#endif
}

static double measure_bw(ll_pool *pool, const float *buf, size_t n, int reps) {
    bw_ctx c = {.buf = buf, .n = n};
    double t[32];
    ll_pool_run(pool, bw_job, &c); // warm-up
    for (int r = 0; r < reps; r++) {
        double t0 = ll_time_s();
        ll_pool_run(pool, bw_job, &c);
        t[r] = ll_time_s() - t0;
    }
    return (double)n * sizeof(float) / stats_of(t, reps).min / 1e9; // a ceiling: the best run
}

typedef struct fma_ctx {
    long iters;
    float out[64];
} fma_ctx;

// 16 independent FMA chains per thread (more than latency x throughput on any x86 core).
static void fma_job(void *vctx, int ith, int nth) {
    (void)nth;
    fma_ctx *c = vctx;
#if defined(__AVX512F__)
    __m512 a[16], m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < c->iters; i++)
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) a[k] = _mm512_fmadd_ps(a[k], m, b);
    __m512 s = a[0];
    for (int k = 1; k < 16; k++) s = _mm512_add_ps(s, a[k]);
    c->out[ith] = _mm512_reduce_add_ps(s);
#elif defined(__AVX2__)
    __m256 a[12], m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < 12; k++) a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < c->iters; i++)
#pragma GCC unroll 12
        for (int k = 0; k < 12; k++) a[k] = _mm256_fmadd_ps(a[k], m, b);
    float o[8];
    _mm256_storeu_ps(o, a[0]);
    c->out[ith] = o[0];
#else
    float a[16];
    for (int k = 0; k < 16; k++) a[k] = (float)k;
    for (long i = 0; i < c->iters; i++)
        for (int k = 0; k < 16; k++) a[k] = a[k] * 0.999999f + 1e-7f;
    c->out[ith] = a[0];
#endif
}

static double fma_flops_per_iter(void) {
#if defined(__AVX512F__)
    return 16 * 16 * 2;
#elif defined(__AVX2__)
    return 12 * 8 * 2;
#else
    return 16 * 2;
#endif
}

static double measure_peak(ll_pool *pool, int reps) {
    fma_ctx c = {.iters = 5 * 1000 * 1000};
    double t[32];
    ll_pool_run(pool, fma_job, &c);
    for (int r = 0; r < reps; r++) {
        double t0 = ll_time_s();
        ll_pool_run(pool, fma_job, &c);
        t[r] = ll_time_s() - t0;
    }
    return (double)c.iters * fma_flops_per_iter() * ll_pool_size(pool) / stats_of(t, reps).min / 1e9;
}

// ---- matmul -----------------------------------------------------------------------------------------------

static size_t esize(uint32_t ty) { return ty == LL_TYPE_F32 ? 4 : 2; }

static bool is_quant(uint32_t ty) { return ll_mmq_act_type(ty) != 0; }

// Quantized types: uniform values through the reference quantizer, row by row.
static void fill_w(uint32_t ty, uint8_t *W, size_t n, uint64_t *s);
static void fill_wq(uint32_t ty, uint8_t *W, int n_in, int n_out, uint64_t *s) {
    float *row = malloc((size_t)n_in * sizeof(float));
    uint64_t rb;
    ll_type_row_size(ty, (uint64_t)n_in, &rb);
    for (int o = 0; o < n_out; o++) {
        for (int i = 0; i < n_in; i++) {
            *s = *s * 6364136223846793005ull + 1442695040888963407ull;
            row[i] = (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        }
        ll_type_get(ty)->from_float_ref(row, W + (size_t)o * rb, n_in);
    }
    free(row);
}

// Quantized: against the scalar vec_dot on the same quantized activations (the test's bound, 2e-6 sum|w x|).
static bool validate_q(uint32_t ty, const uint8_t *W, const float *x, const float *y, int n_in, int n_out, int nt) {
    uint64_t s = 12345, rb;
    ll_type_row_size(ty, (uint64_t)n_in, &rb);
    void *xq = ll_aligned_alloc(ll_mmq_act_row(ty, n_in), 64, NULL);
    float *w = malloc((size_t)n_in * sizeof(float));
    bool ok = true;
    for (int q = 0; q < 100 && ok; q++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int t = (int)((s >> 33) % (uint64_t)nt), o = (int)((s >> 13) % (uint64_t)n_out);
        ll_mmq_act_quantize(ty, x + (size_t)t * n_in, xq, n_in);
        float d;
        ll_type_get(ty)->vec_dot(n_in, &d, W + (size_t)o * rb, xq);
        ll_type_get(ty)->to_float(W + (size_t)o * rb, w, n_in);
        double a = 0;
        for (int i = 0; i < n_in; i++) a += fabs((double)w[i] * x[(size_t)t * n_in + i]);
        double got = y[(size_t)t * n_out + o];
        if (!(fabs(got - d) <= 2e-6 * a)) {
            printf("VALIDATION FAILED: %s t=%d o=%d got %.9g want %.9g\n", ll_type_name(ty), t, o, got, d);
            ok = false;
        }
    }
    ll_aligned_free(xq);
    free(w);
    return ok;
}

static void fill_w(uint32_t ty, uint8_t *W, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        float v = (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        if (ty == LL_TYPE_F32) memcpy(W + i * 4, &v, 4);
        else {
            uint16_t h = ty == LL_TYPE_F16 ? ll_fp32_to_fp16(v) : ll_fp32_to_bf16(v);
            memcpy(W + i * 2, &h, 2);
        }
    }
}

static double w_at(uint32_t ty, const uint8_t *W, size_t idx) {
    uint16_t h;
    float f;
    if (ty == LL_TYPE_F32) { memcpy(&f, W + idx * 4, 4); return f; }
    memcpy(&h, W + idx * 2, 2);
    return ty == LL_TYPE_F16 ? ll_fp16_to_fp32(h) : ll_bf16_to_fp32(h);
}

// 300 sampled outputs against a float64 dot: |err| <= 1e-5 sum|w x| (the test's bound).
static bool validate(uint32_t ty, const uint8_t *W, const float *x, const float *y, int n_in, int n_out, int nt) {
    uint64_t s = 12345;
    for (int q = 0; q < 300; q++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int t = (int)((s >> 33) % (uint64_t)nt), o = (int)((s >> 13) % (uint64_t)n_out);
        double d = 0, a = 0;
        for (int i = 0; i < n_in; i++) {
            double p = w_at(ty, W, (size_t)o * n_in + i) * x[(size_t)t * n_in + i];
            d += p;
            a += fabs(p);
        }
        double got = y[(size_t)t * n_out + o];
        if (!(fabs(got - d) <= 1e-5 * a)) {
            printf("VALIDATION FAILED: %s t=%d o=%d got %.9g want %.9g\n", ll_type_name(ty), t, o, got, d);
            return false;
        }
    }
    return true;
}

typedef struct bench_cfg {
    int reps_decode, reps_prefill;
    double bw[3], peak[3]; // by thread count
    ll_pool *pool[3];
} bench_cfg;

// --repack: time the layout ll_matmul_repack_type gives the type (validated against the original's values).
static bool g_repack;

// Decode rotates over enough copies of W (>= 256 MB) that none is still in the 32 MB L3 when reused.
static void bench_one(bench_cfg *cfg, uint32_t ty, int n_out, int n_in, int nt, int nth) {
    uint64_t rb = (uint64_t)n_in * esize(ty);
    if (is_quant(ty) && !ll_type_row_size(ty, (uint64_t)n_in, &rb)) { printf("n_in not a multiple of the block\n"); exit(2); }
    size_t wbytes = (size_t)n_out * (size_t)rb;
    int copies = nt <= 4 ? (int)((256u << 20) / wbytes + 1) : 1;
    uint8_t *W = ll_aligned_alloc(wbytes * (size_t)copies, 64, NULL);
    float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
    float *y = ll_aligned_alloc((size_t)n_out * nt * sizeof(float), 64, NULL);
    size_t ws = ll_matmul_wsize(ty, n_in, nt, nth);
    void *wsp = ws ? ll_aligned_alloc(ws, 64, NULL) : NULL;
    if (!W || !x || !y || (ws && !wsp)) { printf("out of memory\n"); exit(1); }
    uint64_t s = 7;
    if (is_quant(ty)) fill_wq(ty, W, n_in, n_out, &s);
    else fill_w(ty, W, (size_t)n_out * n_in, &s);
    for (int c = 1; c < copies; c++) memcpy(W + (size_t)c * wbytes, W, wbytes);
    const uint32_t rt = g_repack ? ll_matmul_repack_type(ty, n_in, n_out) : 0, tr = rt ? rt : ty;
    uint8_t *Wt = W; // what is timed: W, or its repacked copies
    size_t rbytes = wbytes;
    if (rt) {
        rbytes = ll_matmul_repack_bytes(rt, n_in, n_out);
        Wt = ll_aligned_alloc(rbytes * (size_t)copies, 64, NULL);
        if (!Wt) { printf("out of memory\n"); exit(1); }
        for (int c = 0; c < copies; c++) ll_matmul_repack(rt, W + (size_t)c * wbytes, Wt + (size_t)c * rbytes, n_in, n_out);
        ll_aligned_free(wsp);
        ws = ll_matmul_wsize(tr, n_in, nt, nth);
        wsp = ws ? ll_aligned_alloc(ws, 64, NULL) : NULL;
    }
    for (size_t i = 0; i < (size_t)n_in * nt; i++) x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    ll_pool *pool = cfg->pool[nth];
    for (int c = 0; c < copies; c++) { // validate every copy's result (also warms up, faults pages in)
        memset(y, 0xff, (size_t)n_out * nt * sizeof(float));
        ll_matmul(pool, tr, Wt + (size_t)c * rbytes, x, y, n_in, n_out, nt, wsp);
        if (!(is_quant(ty) ? validate_q : validate)(ty, W, x, y, n_in, n_out, nt)) exit(1);
    }
    int reps = nt <= 4 ? cfg->reps_decode : cfg->reps_prefill;
    double t[256];
    for (int r = 0; r < reps; r++) {
        const uint8_t *Wr = Wt + (size_t)(r % copies) * rbytes;
        double t0 = ll_time_s();
        ll_matmul(pool, tr, Wr, x, y, n_in, n_out, nt, wsp);
        t[r] = ll_time_s() - t0;
    }
    stats st = stats_of(t, reps);
    double gbs = (double)wbytes / st.med / 1e9, gflops = 2.0 * n_out * n_in * nt / st.med / 1e9;
    printf("%-5s%s %5dx%-5d tok %3d thr %d | %8.3f ms (min %.3f max %.3f) | %6.1f GB/s %5.1f%% of bw | %7.1f GFLOPS %5.1f%% of peak\n",
           ll_type_name(ty), rt ? "x16" : "", n_out, n_in, nt, nth, st.med * 1e3, st.min * 1e3, st.max * 1e3, gbs,
           100 * gbs / cfg->bw[nth], gflops, 100 * gflops / cfg->peak[nth]);
    fflush(stdout);
    if (Wt != W) ll_aligned_free(Wt);
    ll_aligned_free(W);
    ll_aligned_free(x);
    ll_aligned_free(y);
    ll_aligned_free(wsp);
}

int main(int argc, char **argv) {
    bool quick = false, sweep = false, quant = false;
    int one[5] = {0};
    ll_type one_type = LL_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--sweep")) sweep = true;
        else if (!strcmp(argv[i], "--quant")) quant = true;
        else if (!strcmp(argv[i], "--repack")) g_repack = true;
        else if (!strcmp(argv[i], "--one") && i + 5 < argc && ll_type_from_name(argv[i + 1], &one_type)) {
            for (int q = 1; q < 5; q++) one[q] = atoi(argv[i + 1 + q]);
            one[0] = 1;
            i += 5;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--sweep] [--quant] [--repack] [--one TYPE N_OUT N_IN TOKENS THREADS]\n", argv[0]);
            return 2;
        }
    }
    if (one[0] && (one[1] < 1 || one[2] < 1 || one[3] < 1 || one[4] < 1 || one[4] > 2)) {
        fprintf(stderr, "--one: sizes >= 1, threads 1 or 2\n");
        return 2;
    }
    bench_cfg cfg = {.reps_decode = quick ? 15 : 41, .reps_prefill = quick ? 3 : 7};
    for (int n = 1; n <= 2; n++) cfg.pool[n] = ll_pool_init(n, NULL);

    size_t nbw = (size_t)1 << 28; // 1 GiB of floats
    float *buf = ll_aligned_alloc(nbw * sizeof(float), 64, NULL);
    if (!buf) { printf("out of memory\n"); return 1; }
    for (size_t i = 0; i < nbw; i++) buf[i] = (float)(i & 1023);
    for (int n = 1; n <= 2; n++) {
        cfg.bw[n] = measure_bw(cfg.pool[n], buf, nbw, quick ? 3 : 7);
        cfg.peak[n] = measure_peak(cfg.pool[n], quick ? 5 : 15);
    }
    ll_aligned_free(buf);
    char load[64] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (!fgets(load, sizeof load, lf)) strcpy(load, "?");
        load[strcspn(load, "\n")] = 0;
        fclose(lf);
    }
    printf("load average before: %s (other processes share these cores: compare runs of one session)\n", load);
    printf("ceilings (best run): read bandwidth (AVX sum over 1 GiB) 1 thread %.1f GB/s, 2 threads %.1f GB/s; "
           "FMA peak 1 thread %.1f GFLOPS, 2 threads %.1f GFLOPS\n",
           cfg.bw[1], cfg.bw[2], cfg.peak[1], cfg.peak[2]);
    printf("kernels: F32 %s, F16 %s, BF16 %s; decode = 1 token (GB/s of W), prefill = 128 tokens (GFLOPS); "
           "median of %d / %d runs\n",
           ll_matmul_isa(LL_TYPE_F32), ll_matmul_isa(LL_TYPE_F16), ll_matmul_isa(LL_TYPE_BF16), cfg.reps_decode,
           cfg.reps_prefill);

    if (one[0]) {
        bench_one(&cfg, one_type, one[1], one[2], one[3], one[4]);
        return 0;
    }
    if (quant) { // llama-1B and SmolLM-135M shapes, 2 threads: decode (GB/s of W) and prefill at 128 tokens
                 // (GOPS = 2 n_in n_out / s); K-quants only where n_in is a multiple of 256 (SmolLM's 576 is not)
        static const uint32_t qt[] = {LL_TYPE_Q4_0, LL_TYPE_Q5_0, LL_TYPE_Q8_0, LL_TYPE_Q4_K, LL_TYPE_Q6_K};
        static const int qs[][2] = {{8192, 2048}, {2048, 8192}, {1536, 576}, {576, 1536}, {32000, 576}};
        printf("quantized kernels: Q4_0 %s, Q5_0 %s, Q8_0 %s, Q4_K %s, Q6_K %s\n", ll_matmul_isa(LL_TYPE_Q4_0),
               ll_matmul_isa(LL_TYPE_Q5_0), ll_matmul_isa(LL_TYPE_Q8_0), ll_matmul_isa(LL_TYPE_Q4_K),
               ll_matmul_isa(LL_TYPE_Q6_K));
        for (int ph = 0; ph < 2; ph++)
            for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++)
                for (size_t sh = 0; sh < sizeof qs / sizeof qs[0]; sh++) {
                    if (ll_mmq_act_type(qt[k]) == LL_TYPE_Q8_K && qs[sh][1] % 256 != 0) continue;
                    if (ph == 1 && qs[sh][0] == 32000) continue; // the logits matrix only ever sees one token
                    bench_one(&cfg, qt[k], qs[sh][0], qs[sh][1], ph == 0 ? 1 : 128, 2);
                }
        return 0;
    }
    if (sweep) {
        for (int nt = 1; nt <= 16; nt++) bench_one(&cfg, LL_TYPE_F16, 4096, 4096, nt, 2);
        return 0;
    }
    static const uint32_t types[] = {LL_TYPE_F16, LL_TYPE_BF16, LL_TYPE_F32};
    static const int shapes[][2] = {{4096, 4096}, {14336, 4096}}; // (n_out, n_in)
    for (int ph = 0; ph < 2; ph++)
        for (size_t k = 0; k < 3; k++)
            for (int sh = 0; sh < 2; sh++)
                for (int nth = 1; nth <= 2; nth++)
                    bench_one(&cfg, types[k], shapes[sh][0], shapes[sh][1], ph == 0 ? 1 : 128, nth);
    for (int n = 1; n <= 2; n++) ll_pool_free(cfg.pool[n]);
    return 0;
}
