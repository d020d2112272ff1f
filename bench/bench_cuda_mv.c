// bench_cuda_mv.c — the decode matmuls of a 7B model (Mistral shapes) one by one on the GPU: time per call and
// the HBM read rate it implies (weight bytes / time) against a ceiling, per weight type. The kernels' tuning
// knobs are environment settings read when the backend starts (LLMLAB_CUDA_PDL, LLMLAB_CUDA_PRELOAD, ...), so
// one process measures one setting; bench/cuda_bench.sh runs it per setting ("mv" stage).
// Each output is checked against the CPU backend on the same weights before it is timed. Every timed call reads
// a different copy of the weights (copies enough to exceed the 50 MB L2), as decode does. --tok N: the matmuls of
// an N-token step (decode of N sequences; LLMLAB_CUDA_GEMM_MIN_TOK moves the quantized GEMM switch, 17 by
// default). --attn DEPTH: decode attention instead (Mistral's 32/8 heads of 128), N sequences at DEPTH keys each,
// F32 and F16 caches, time per call and the cache bytes it reads per second.
// Build: make bench   Run: build/bench/bench_cuda_mv [--bw GBPS] [--types Q4_0,Q4_K,...] [--reps N] [--tok N]
//                                                  [--attn DEPTH]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/core.h"
#include "core/half.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}
static float rnd(uint64_t *s) { return (float)((rng(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }

// A (rows, cols) weight of type t: 16 random rows, quantized, repeated (the values do not change the speed).
static uint8_t *make_rows(uint32_t t, int64_t cols, int64_t rows, size_t *bytes, uint64_t *s) {
    const ll_type_traits *tr = ll_type_get(t);
    uint64_t rb;
    if (!tr || !ll_type_row_size(t, (uint64_t)cols, &rb)) return NULL;
    uint8_t *w = malloc(rb * (size_t)rows);
    float *f = malloc((size_t)cols * sizeof *f);
    if (!w || !f) { free(w); free(f); return NULL; }
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *wr = w + rb * (size_t)r;
        if (r >= 16) { memcpy(wr, w + rb * (size_t)(r % 16), rb); continue; }
        for (int64_t i = 0; i < cols; i++) f[i] = rnd(s);
        if (t == LL_TYPE_F16) for (int64_t i = 0; i < cols; i++) ((uint16_t *)wr)[i] = ll_fp32_to_fp16(f[i]);
        else tr->from_float_ref(f, wr, cols);
    }
    free(f);
    *bytes = rb * (size_t)rows;
    return w;
}

// One decode op: a matmul kind on matrices of one shape family.
typedef enum { K_MATMUL3, K_ADD, K_SWIGLU } kind;
typedef struct shape {
    const char *name;
    kind k;
    int64_t ne0, ne1[3]; // matmul3: three row counts; swiglu: gate and up both ne1[0]; add: ne1[0]
    bool v_q6k;          // matmul3 with v in Q6_K (llama.cpp's Q4_K_M/Q5_K_M mix); only for Q4_K and Q5_K
} shape;

static const shape k_shapes[] = {
    {"qkv 4096 -> 4096+1024+1024", K_MATMUL3, 4096, {4096, 1024, 1024}, false},
    {"qkv, v in Q6_K", K_MATMUL3, 4096, {4096, 1024, 1024}, true},
    {"o 4096 -> 4096 (+= residual)", K_ADD, 4096, {4096, 0, 0}, false},
    {"gate/up 4096 -> 2x14336, SwiGLU", K_SWIGLU, 4096, {14336, 14336, 0}, false},
    {"down 14336 -> 4096 (+= residual)", K_ADD, 14336, {4096, 0, 0}, false},
};

#define MAX_COPIES 64

static double nmse(const float *a, const float *b, size_t n, int *bad) {
    double num = 0, den = 0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) (*bad)++;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

static int g_tok = 1; // tokens per call (--tok)

// Runs op `sh` on copy i of the weights (y += or = depending on the kind), g_tok rows of x.
static void run_op(ll_backend *b, const shape *sh, ll_weight (*w)[3], int i, const float *x, float *y[3], float *u) {
    const int n = g_tok;
    switch (sh->k) {
    case K_MATMUL3: {
        const ll_weight *ws[3] = {&w[i][0], &w[i][1], &w[i][2]};
        if (b->ops->matmul3) b->ops->matmul3(b, ws, x, y, n);
        else for (int j = 0; j < 3; j++) b->ops->matmul(b, ws[j], x, y[j], n);
        break;
    }
    case K_ADD:
        if (b->ops->matmul_add) b->ops->matmul_add(b, &w[i][0], x, y[0], n);
        else {
            b->ops->matmul(b, &w[i][0], x, u, n);
            b->ops->add(b, y[0], u, (size_t)n * sh->ne1[0]);
        }
        break;
    case K_SWIGLU:
        if (b->ops->matmul_swiglu) b->ops->matmul_swiglu(b, &w[i][0], &w[i][1], x, y[0], u, n);
        else {
            b->ops->matmul(b, &w[i][0], x, y[0], n);
            b->ops->matmul(b, &w[i][1], x, u, n);
            b->ops->swiglu(b, y[0], u, (int)sh->ne1[0], n);
        }
        break;
    }
}

// Validate (one copy, against the CPU backend), then time calls cycling over the copies. Returns 0 when the
// output matched.
static int bench_one(ll_backend *gpu, ll_backend *cpu, uint32_t t, const shape *sh, int reps, double bw) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ t;
    const int nm = sh->k == K_MATMUL3 ? 3 : sh->k == K_SWIGLU ? 2 : 1;
    size_t per[3] = {0}, total = 0;
    uint8_t *base[3] = {0};
    uint32_t types[3] = {t, t, sh->v_q6k ? LL_TYPE_Q6_K : t};
    for (int j = 0; j < nm; j++) {
        base[j] = make_rows(types[j], sh->ne0, sh->ne1[j], &per[j], &s);
        if (!base[j]) { fprintf(stderr, "cannot make a %s weight\n", ll_type_name(t)); exit(1); }
        total += per[j];
    }
    int copies = (int)(200e6 / (double)total) + 1;
    if (copies > MAX_COPIES) copies = MAX_COPIES;
    // copies: the same bytes at distinct host addresses (the device keys its copies by host pointer)
    uint8_t *host = malloc(total * (size_t)copies);
    ll_weight (*w)[3] = calloc((size_t)copies, sizeof *w);
    const ll_weight **all = calloc((size_t)copies * 3, sizeof *all);
    if (!host || !w || !all) { fprintf(stderr, "out of host memory\n"); exit(1); }
    int n_all = 0;
    for (int i = 0; i < copies; i++) {
        size_t off = total * (size_t)i;
        for (int j = 0; j < nm; j++) {
            memcpy(host + off, base[j], per[j]);
            w[i][j] = (ll_weight){host + off, types[j], sh->ne0, sh->ne1[j], "w", false};
            all[n_all++] = &w[i][j];
            off += per[j];
        }
    }
    ll_error err = {0};
    const int mt = g_tok > 8 ? g_tok : 8;
    if (gpu->ops->prepare(gpu, all, n_all, mt, 64, &err) != LL_OK) { fprintf(stderr, "cuda prepare: %s\n", err.message); exit(1); }
    if (cpu->ops->prepare(cpu, all, nm, mt, 64, &err) != LL_OK) { fprintf(stderr, "cpu prepare: %s\n", err.message); exit(1); }
    // activations: g_tok rows
    const int64_t ny = (sh->ne1[0] > sh->ne1[1] ? sh->ne1[0] : sh->ne1[1]) * g_tok, nx = sh->ne0 * g_tok;
    float *xh = malloc((size_t)nx * sizeof *xh), *yh = malloc((size_t)ny * sizeof *yh);
    for (int64_t i = 0; i < nx; i++) xh[i] = rnd(&s);
    for (int64_t i = 0; i < ny; i++) yh[i] = rnd(&s);
    float *xd = gpu->ops->alloc(gpu, (size_t)nx * 4, &err), *ud = gpu->ops->alloc(gpu, (size_t)ny * 4, &err);
    float *xc = cpu->ops->alloc(cpu, (size_t)nx * 4, &err), *uc = cpu->ops->alloc(cpu, (size_t)ny * 4, &err);
    float *yd[3], *yc[3];
    for (int j = 0; j < 3; j++) {
        yd[j] = gpu->ops->alloc(gpu, (size_t)ny * 4, &err);
        yc[j] = cpu->ops->alloc(cpu, (size_t)ny * 4, &err);
        if (!yd[j] || !yc[j]) { fprintf(stderr, "alloc: %s\n", err.message); exit(1); }
        gpu->ops->upload(gpu, yd[j], yh, (size_t)ny * 4);
        cpu->ops->upload(cpu, yc[j], yh, (size_t)ny * 4);
    }
    gpu->ops->upload(gpu, xd, xh, (size_t)nx * 4);
    cpu->ops->upload(cpu, xc, xh, (size_t)nx * 4);
    run_op(gpu, sh, w, 0, xd, yd, ud);
    run_op(cpu, sh, w, 0, xc, yc, uc);
    int worst_bad = 0;
    double worst = 0;
    float *got = malloc((size_t)ny * sizeof *got), *ref = malloc((size_t)ny * sizeof *ref);
    for (int j = 0; j < (sh->k == K_MATMUL3 ? 3 : 1); j++) {
        gpu->ops->download(gpu, got, yd[j], (size_t)sh->ne1[j] * g_tok * 4);
        gpu->ops->synchronize(gpu);
        cpu->ops->download(cpu, ref, yc[j], (size_t)sh->ne1[j] * g_tok * 4);
        cpu->ops->synchronize(cpu);
        int bad;
        double e = nmse(got, ref, (size_t)sh->ne1[j] * g_tok, &bad);
        if (e > worst || bad) worst = e > worst ? e : worst, worst_bad += bad;
    }
    // int8 activations: the x quantization's error. F16: the GPU keeps x in f32; the CPU reference rounds x to f16
    // for rows over 4096 (cpu backend: half the L1 footprint), a relative error of up to 2^-11 per element
    const double tol = t != LL_TYPE_F16 ? 2e-4 : sh->ne0 > 4096 ? 2e-7 : 1e-8;
    int ok = worst_bad == 0 && worst <= tol;
    // time: reps rounds of `copies` calls each, after one warm-up round
    double *ts = malloc((size_t)reps * sizeof *ts);
    for (int r = -1; r < reps; r++) {
        gpu->ops->synchronize(gpu);
        double t0 = ll_time_s();
        for (int i = 0; i < copies; i++) run_op(gpu, sh, w, i, xd, yd, ud);
        gpu->ops->synchronize(gpu);
        if (r >= 0) ts[r] = (ll_time_s() - t0) / copies;
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp_d);
    const double med = ts[reps / 2], gbs = (double)total / med / 1e9;
    printf("mv %-6s %-34s %2d tok %8.2f us (%.2f-%.2f)  %6.2f MB  %6.0f GB/s", ll_type_name(t), sh->name, g_tok,
           med * 1e6, ts[0] * 1e6, ts[reps - 1] * 1e6, total / 1e6, gbs);
    if (bw > 0) printf("  %3.0f%% of %.0f", 100 * gbs / bw, bw);
    printf("  %s (NMSE %.2g vs CPU)\n", ok ? "ok" : "WRONG", worst);
    for (int j = 0; j < 3; j++) {
        gpu->ops->free(gpu, yd[j]);
        cpu->ops->free(cpu, yc[j]);
    }
    gpu->ops->free(gpu, xd), gpu->ops->free(gpu, ud), cpu->ops->free(cpu, xc), cpu->ops->free(cpu, uc);
    free(ts), free(got), free(ref), free(xh), free(yh), free(host), free(w), free(all);
    for (int j = 0; j < nm; j++) free(base[j]);
    return ok ? 0 : 1;
}

// Decode attention of n_seq sequences, each at depth keys (the step's token at position depth - 1), Mistral's
// heads, cache of type ct (F32, F16, Q8_0): checked against the CPU backend on the same values (the CPU reads the
// cache's values as F32), then timed over enough cache copies to exceed the L2. Returns 0 when it matched.
static int bench_attn(ll_backend *gpu, ll_backend *cpu, uint32_t ct, int n_seq, int depth, int reps, double bw) {
    const int nh = 32, nkv = 8, hd = 128, kvd = nkv * hd;
    const size_t rows = (size_t)n_seq * depth;
    const size_t cbytes = ct == LL_TYPE_Q8_0 ? rows * kvd / 32 * 34 : rows * kvd * (ct == LL_TYPE_F16 ? 2 : 4);
    int copies = (int)(200e6 / (2.0 * cbytes)) + 1;
    if (copies > MAX_COPIES) copies = MAX_COPIES;
    ll_error err = {0};
    if (gpu->ops->prepare(gpu, NULL, 0, n_seq > 8 ? n_seq : 8, depth, &err) != LL_OK ||
        cpu->ops->prepare(cpu, NULL, 0, n_seq > 8 ? n_seq : 8, depth, &err) != LL_OK) {
        fprintf(stderr, "prepare: %s\n", err.message);
        exit(1);
    }
    uint64_t s = 0x51ed2701u ^ (uint64_t)ct;
    float *kf = malloc(rows * kvd * sizeof *kf), *vf = malloc(rows * kvd * sizeof *vf);
    uint8_t *kh = malloc(cbytes), *vh = malloc(cbytes); // the cache's bytes (F16, Q8_0)
    const size_t nq = (size_t)n_seq * nh * hd;
    float *q = malloc(nq * sizeof *q), *got = malloc(nq * sizeof *got), *ref = malloc(nq * sizeof *ref);
    if (!kf || !vf || !kh || !vh || !q || !got || !ref) { fprintf(stderr, "out of host memory\n"); exit(1); }
    for (size_t i = 0; i < rows * kvd; i++) kf[i] = rnd(&s), vf[i] = rnd(&s);
    if (ct != LL_TYPE_F32) { // the values the cache holds, as the CPU's F32 reference reads them
        const ll_type_traits *tr = ll_type_get(ct);
        const int64_t n = (int64_t)(rows * kvd);
        if (ct == LL_TYPE_F16)
            for (int64_t i = 0; i < n; i++)
                ((uint16_t *)kh)[i] = ll_fp32_to_fp16(kf[i]), ((uint16_t *)vh)[i] = ll_fp32_to_fp16(vf[i]);
        else tr->from_float_ref(kf, kh, n), tr->from_float_ref(vf, vh, n);
        tr->to_float(kh, kf, n), tr->to_float(vh, vf, n);
    }
    for (size_t i = 0; i < nq; i++) q[i] = rnd(&s);
    int32_t *pos = malloc((size_t)n_seq * sizeof *pos), *row0 = malloc((size_t)n_seq * sizeof *row0);
    for (int i = 0; i < n_seq; i++) pos[i] = depth - 1, row0[i] = i * depth;
    ll_batch_pos bp = {n_seq, pos, row0, n_seq == 1, n_seq == 1 ? depth - 1 : 0};
    const ll_attn_params p = {nh, nkv, hd, 1.0f / sqrtf((float)hd)};
    const ll_kv_cache kc = {kf, vf, LL_TYPE_F32, depth, (int)rows};
    cpu->ops->attention(cpu, ref, q, &kc, &bp, &p);
    ll_kv_cache *kv = calloc((size_t)copies, sizeof *kv);
    float *qd = gpu->ops->alloc(gpu, nq * 4, &err), *od = gpu->ops->alloc(gpu, nq * 4, &err);
    if (!kv || !qd || !od) { fprintf(stderr, "alloc: %s\n", err.message); exit(1); }
    gpu->ops->upload(gpu, qd, q, nq * 4);
    for (int i = 0; i < copies; i++) {
        kv[i] = (ll_kv_cache){gpu->ops->alloc(gpu, cbytes, &err), gpu->ops->alloc(gpu, cbytes, &err), ct, depth,
                              (int)rows};
        if (!kv[i].k || !kv[i].v) { fprintf(stderr, "alloc: %s\n", err.message); exit(1); }
        gpu->ops->upload(gpu, kv[i].k, ct == LL_TYPE_F32 ? (const void *)kf : kh, cbytes);
        gpu->ops->upload(gpu, kv[i].v, ct == LL_TYPE_F32 ? (const void *)vf : vh, cbytes);
    }
    gpu->ops->attention(gpu, od, qd, &kv[0], &bp, &p);
    gpu->ops->download(gpu, got, od, nq * 4);
    gpu->ops->synchronize(gpu);
    int bad;
    const double e = nmse(got, ref, nq, &bad);
    const int ok = bad == 0 && e <= 1e-9; // f32 split kernels against the CPU's f32 sums (test_cuda's tolerance)
    double *ts = malloc((size_t)reps * sizeof *ts);
    for (int r = -1; r < reps; r++) {
        gpu->ops->synchronize(gpu);
        double t0 = ll_time_s();
        for (int i = 0; i < copies; i++) gpu->ops->attention(gpu, od, qd, &kv[i], &bp, &p);
        gpu->ops->synchronize(gpu);
        if (r >= 0) ts[r] = (ll_time_s() - t0) / copies;
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp_d);
    const double med = ts[reps / 2], gbs = 2.0 * cbytes / med / 1e9;
    printf("attn %-4s %2d sequences x %6d keys %8.2f us (%.2f-%.2f)  %7.2f MB  %6.0f GB/s", ll_type_name(ct), n_seq,
           depth, med * 1e6, ts[0] * 1e6, ts[reps - 1] * 1e6, 2.0 * cbytes / 1e6, gbs);
    if (bw > 0) printf("  %3.0f%% of %.0f", 100 * gbs / bw, bw);
    printf("  %s (NMSE %.2g vs CPU)\n", ok ? "ok" : "WRONG", e);
    for (int i = 0; i < copies; i++) gpu->ops->free(gpu, kv[i].k), gpu->ops->free(gpu, kv[i].v);
    gpu->ops->free(gpu, qd), gpu->ops->free(gpu, od);
    free(kf), free(vf), free(kh), free(vh), free(q), free(got), free(ref), free(pos), free(row0), free(kv), free(ts);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    double bw = 0;
    int reps = 7, attn = 0;
    const char *types = "Q4_0,Q4_K,Q6_K,Q8_0,F16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bw") && i + 1 < argc) bw = atof(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tok") && i + 1 < argc) g_tok = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--attn") && i + 1 < argc) attn = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cuda_mv [--bw GB/s] [--types T,T,...] [--reps N] [--tok N] [--attn DEPTH]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (g_tok < 1 || g_tok > 512) { fprintf(stderr, "--tok: 1 to 512\n"); return 2; }
    ll_error err = {0};
    ll_backend *gpu = NULL, *cpu = ll_backend_cpu_init(8, &err);
    if (ll_backend_init(&gpu, "cuda", 1, &err) != LL_OK || !cpu) {
        printf("bench_cuda_mv: skipped: %s\n", err.message);
        ll_backend_free(cpu);
        return 0;
    }
    const char *knobs[] = {"LLMLAB_CUDA_PDL", "LLMLAB_CUDA_PRELOAD", "LLMLAB_CUDA_MV_ROWS", "LLMLAB_CUDA_MVQ_ROWS",
                           "LLMLAB_CUDA_NOFUSE", "LLMLAB_CUDA_GEMM_MIN_TOK"};
    printf("settings:");
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) printf(" %s=%s", knobs[i], getenv(knobs[i]) ? getenv(knobs[i]) : "(default)");
    printf("\n");
    int fails = 0;
    if (attn > 0) {
        fails += bench_attn(gpu, cpu, LL_TYPE_F32, g_tok, attn, reps, bw);
        fails += bench_attn(gpu, cpu, LL_TYPE_F16, g_tok, attn, reps, bw);
        fails += bench_attn(gpu, cpu, LL_TYPE_Q8_0, g_tok, attn, reps, bw);
        ll_backend_free(gpu);
        ll_backend_free(cpu);
        return fails ? 1 : 0;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        ll_type t;
        if (!ll_type_from_name(tok, &t)) { fprintf(stderr, "unknown type %s\n", tok); return 2; }
        for (size_t k = 0; k < sizeof k_shapes / sizeof k_shapes[0]; k++)
            if (!k_shapes[k].v_q6k || t == LL_TYPE_Q4_K || t == LL_TYPE_Q5_K)
                fails += bench_one(gpu, cpu, t, &k_shapes[k], reps, bw);
    }
    ll_backend_free(gpu);
    ll_backend_free(cpu);
    return fails ? 1 : 0;
}
