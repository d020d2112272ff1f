// ceil.c — the ceilings the model lab compares with: read bandwidth and GEMM peak from `bench hw` results
// (memory.json, gemm.json, system_info.json), else a quick measurement on the spot.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul.h"
#include "bench/hw_cuda.h"
#include "core/pool.h"
#include "lab/lab.h"

static bool dev_match(const char *row_dev, const char *device) {
    if (!strcmp(device, "cuda")) return !strncmp(row_dev, "cuda", 4) && (!row_dev[4] || !strcmp(row_dev, "cuda:0"));
    return !strcmp(row_dev, device);
}

// Best read rate of device in memory.json (CPU: every thread count; GPU: the read kernel).
static void load_memory(const char *dir, const char *device, ll_lab_ceil *c) {
    char path[4200];
    snprintf(path, sizeof path, "%s/memory.json", dir);
    cJSON *doc = ll_lab_json_read(path);
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(doc, "results")) {
        double g = ll_lab_num(row, "gbps");
        if (!dev_match(ll_lab_str(row, "device"), device) || strcmp(ll_lab_str(row, "kind"), "read") || !(g > c->read_gbps))
            continue;
        c->read_gbps = g;
        double th = ll_lab_num(row, "threads");
        char thr[32] = "";
        if (!isnan(th)) snprintf(thr, sizeof thr, ", %.0f threads", th);
        snprintf(c->read_src, sizeof c->read_src, "memory.json: %s read%s (%s)", ll_lab_str(row, "device"), thr,
                 ll_lab_str(row, "impl"));
    }
    cJSON_Delete(doc);
}

// Best GEMM of device in gemm.json: CPU fp32 (what the engine's F32/F16 paths compute in), GPU bf16; and the
// best int8 row (quantized weights multiply int8 activations with integer dots).
static void load_gemm(const char *dir, const char *device, ll_lab_ceil *c) {
    char path[4200];
    snprintf(path, sizeof path, "%s/gemm.json", dir);
    cJSON *doc = ll_lab_json_read(path);
    const char *want = strcmp(device, "cpu") ? "bf16" : "fp32";
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(doc, "results")) {
        double t = ll_lab_num(row, "tflops");
        if (dev_match(ll_lab_str(row, "device"), device) && !strcmp(ll_lab_str(row, "dtype"), "int8") && t * 1e3 > c->int8_gops) {
            c->int8_gops = t * 1e3;
            snprintf(c->int8_src, sizeof c->int8_src, "gemm.json: %s int8 %.0f^3 (%s)", ll_lab_str(row, "device"),
                     ll_lab_num(row, "m"), ll_lab_str(row, "impl"));
        }
        if (!dev_match(ll_lab_str(row, "device"), device) || strcmp(ll_lab_str(row, "dtype"), want) || !(t * 1e3 > c->gemm_gflops))
            continue;
        c->gemm_gflops = t * 1e3;
        snprintf(c->gemm_src, sizeof c->gemm_src, "gemm.json: %s %s %.0f^3 (%s)", ll_lab_str(row, "device"), want,
                 ll_lab_num(row, "m"), ll_lab_str(row, "impl"));
    }
    cJSON_Delete(doc);
}

static void load_sysinfo(const char *dir, const char *device, ll_lab_ceil *c) {
    char path[4200];
    snprintf(path, sizeof path, "%s/system_info.json", dir);
    cJSON *doc = ll_lab_json_read(path);
    const cJSON *sys = doc ? cJSON_GetObjectItem(doc, "system") : NULL;
    if (!strcmp(device, "cpu")) {
        const cJSON *mem = cJSON_GetObjectItem(sys, "memory");
        double a = ll_lab_num(mem, "available_bytes"), t = ll_lab_num(mem, "total_bytes");
        if (a > 0) {
            c->mem_avail = (uint64_t)a, c->mem_total = t > 0 ? (uint64_t)t : 0;
            snprintf(c->mem_src, sizeof c->mem_src, "system_info.json (available when bench hw ran)");
        }
    } else {
        const cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(sys, "gpus"), 0);
        double fr = ll_lab_num(g, "mem_free_bytes"), t = ll_lab_num(g, "mem_total_bytes");
        if (fr > 0) {
            c->mem_avail = (uint64_t)fr, c->mem_total = t > 0 ? (uint64_t)t : 0;
            snprintf(c->mem_src, sizeof c->mem_src, "system_info.json: %s free", ll_lab_str(g, "name"));
        }
    }
    cJSON_Delete(doc);
}

bool ll_lab_ceil_load(const char *dir, const char *device, ll_lab_ceil *c) {
    memset(c, 0, sizeof *c);
    if (!dir) return false;
    load_memory(dir, device, c);
    load_gemm(dir, device, c);
    load_sysinfo(dir, device, c);
    return c->read_gbps > 0 || c->gemm_gflops > 0;
}

// ---- quick measurement (CPU) ------------------------------------------------------------------------------
typedef struct sum_job {
    const float *a;
    size_t n;
    double part[64];
} sum_job;

static void sum_fn(void *ctx, int ith, int nth) {
    sum_job *j = ctx;
    int64_t lo, hi;
    ll_split_range((int64_t)j->n, ith, nth, 1024, &lo, &hi);
    float acc[16] = {0};
    for (int64_t i = lo; i + 16 <= hi; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += j->a[i + k];
    double s = 0;
    for (int k = 0; k < 16; k++) s += acc[k];
    if (ith < 64) j->part[ith] = s;
}

static void measure_read(ll_lab_ceil *c, ll_pool *pool, size_t bytes) {
    ll_error err;
    float *a = ll_aligned_alloc(bytes, 64, &err);
    if (!a) {
        snprintf(c->read_src, sizeof c->read_src, "quick measurement failed: %s", err.message);
        return;
    }
    size_t n = bytes / sizeof(float) / 1024 * 1024;
    for (size_t i = 0; i < n; i++) a[i] = 1.0f;
    sum_job j = {.a = a, .n = n};
    double best = 1e30;
    for (int r = 0; r < 4; r++) { // first run is the warm-up; best of the rest
        double t0 = ll_time_s();
        ll_pool_run(pool, sum_fn, &j);
        double dt = ll_time_s() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    ll_aligned_free(a);
    c->read_gbps = (double)n * sizeof(float) / best / 1e9;
    char b[32];
    ll_fmt_bytes(b, sizeof b, (double)n * sizeof(float));
    snprintf(c->read_src, sizeof c->read_src, "quick measurement: timed sum of a %s buffer, %d threads, best of 3 "
             "(run `llmlab bench hw` for the full sweep)", b, ll_pool_size(pool));
}

static void measure_gemm(ll_lab_ceil *c, ll_pool *pool, int n_threads) {
    enum { N_IN = 1024, N_OUT = 1024, N_TOK = 256 };
    ll_error err;
    size_t ws = ll_matmul_wsize(LL_TYPE_F32, N_IN, N_TOK, n_threads);
    float *W = ll_aligned_alloc((size_t)N_OUT * N_IN * 4, 64, &err), *x = ll_aligned_alloc((size_t)N_TOK * N_IN * 4, 64, &err);
    float *y = ll_aligned_alloc((size_t)N_TOK * N_OUT * 4, 64, &err);
    void *wsp = ws ? ll_aligned_alloc(ws, 64, &err) : NULL;
    if (!W || !x || !y || (ws && !wsp)) {
        snprintf(c->gemm_src, sizeof c->gemm_src, "quick measurement failed: out of memory");
    } else {
        for (size_t i = 0; i < (size_t)N_OUT * N_IN; i++) W[i] = (float)((i * 7919) % 17) / 17.0f - 0.5f;
        for (size_t i = 0; i < (size_t)N_TOK * N_IN; i++) x[i] = (float)((i * 104729) % 13) / 13.0f - 0.5f;
        double best = 1e30;
        for (int r = 0; r < 4; r++) {
            double t0 = ll_time_s();
            ll_matmul(pool, LL_TYPE_F32, W, x, y, N_IN, N_OUT, N_TOK, wsp);
            double dt = ll_time_s() - t0;
            if (r > 0 && dt < best) best = dt;
        }
        c->gemm_gflops = 2.0 * N_IN * N_OUT * N_TOK / best / 1e9;
        snprintf(c->gemm_src, sizeof c->gemm_src, "quick measurement: F32 ll_matmul %dx%d weights x %d tokens (%s), "
                 "%d threads, best of 3 (run `llmlab bench hw` for the full sweep)", N_OUT, N_IN, N_TOK,
                 ll_matmul_isa(LL_TYPE_F32), ll_pool_size(pool));
    }
    ll_aligned_free(W), ll_aligned_free(x), ll_aligned_free(y), ll_aligned_free(wsp);
}

void ll_lab_ceil_measure(ll_lab_ceil *c, size_t bytes, int n_threads) {
    if (n_threads <= 0) n_threads = ll_sys_logical_cores();
    if (n_threads < 1) n_threads = 1;
    ll_error err;
    ll_pool *pool = ll_pool_init(n_threads, &err);
    if (!pool) return;
    if (bytes == 0) {
        uint64_t av = ll_sys_mem_available() / 4;
        bytes = av && av < (1ull << 30) ? (size_t)av : (size_t)1 << 30;
    }
    if (c->read_gbps <= 0) measure_read(c, pool, bytes);
    if (c->gemm_gflops <= 0) measure_gemm(c, pool, n_threads);
    ll_pool_free(pool);
}

void ll_lab_ceil_get(const char *dir, const char *device, int n_threads, ll_lab_ceil *c) {
    ll_lab_ceil_load(dir, device, c);
    if (!strcmp(device, "cpu") && (c->read_gbps <= 0 || c->gemm_gflops <= 0)) ll_lab_ceil_measure(c, 0, n_threads);
    if (c->read_gbps <= 0 && !c->read_src[0])
        snprintf(c->read_src, sizeof c->read_src, "unknown: no memory.json for %s in %s (run `llmlab bench hw`)", device,
                 dir ? dir : "-");
    if (c->gemm_gflops <= 0 && !c->gemm_src[0])
        snprintf(c->gemm_src, sizeof c->gemm_src, "unknown: no gemm.json for %s in %s (run `llmlab bench hw`)", device,
                 dir ? dir : "-");
    if (!c->mem_avail && strcmp(device, "cpu")) {
        char why[256];
        uint64_t fr, tot;
        if (ll_hw_cuda_mem_info(0, &fr, &tot, why, sizeof why)) {
            c->mem_avail = fr, c->mem_total = tot;
            snprintf(c->mem_src, sizeof c->mem_src, "cudaMemGetInfo on device 0 now");
        } else snprintf(c->mem_src, sizeof c->mem_src, "unknown: %s", why);
    }
    if (!c->mem_avail && !strcmp(device, "cpu")) {
        c->mem_avail = ll_sys_mem_available(), c->mem_total = ll_sys_mem_total();
        snprintf(c->mem_src, sizeof c->mem_src, "MemAvailable now");
    }
}
