// hw_internal.h — private to the hardware lab's C files: the machine description, the resolved run, the
// timing loop, JSON helpers (cJSON) and one entry per section.
#ifndef LL_HW_INTERNAL_H
#define LL_HW_INTERNAL_H

#include <cjson/cJSON.h>

#include "bench/hw.h"
#include "core/pool.h"

#define LL_HW_MAX_GPUS 16
#define LL_HW_MAX_CACHES 8

// Published dense (non-sparse) peaks of one GPU model, TFLOPS, and memory bandwidth, GB/s. 0 = none.
typedef struct ll_hw_gpu_spec {
    const char *match; // substring of the CUDA device name
    const char *label;
    double fp32, tf32, fp16, bf16, fp8, int8; // int8: TOPS
    double mem_gbps;
} ll_hw_gpu_spec;

typedef struct ll_hw_cache {
    int level;
    char type[16];
    uint64_t bytes;
    char shared_cpus[32];
} ll_hw_cache;

typedef struct ll_hw_gpu {
    ll_hw_gpu_info info;
    const ll_hw_gpu_spec *spec;     // NULL when the model is not in the table
    double mem_gbps_from_clocks;    // 2 x memory clock x bus width (0 when unknown)
    char link_speed[32];            // PCIe link now, e.g. "32.0 GT/s PCIe" ("" when unknown)
    int link_width, link_width_max;
    char link_speed_max[32];
    double pcie_gbps;               // per direction, from the current link (0 when unknown)
    char driver[64];                // /proc/driver/nvidia/version ("" when absent)
} ll_hw_gpu;

typedef struct ll_hw_sys {
    char hostname[128], os[160], kernel[160], arch[32];
    char cpu_model[160], cpu_vendor[48];
    int cpu_family, cpu_model_id;
    int logical, physical, numa_nodes;
    char isa_cpu[512];   // features the CPU reports
    char isa_build[256]; // what this build compiled for
    double freq_ghz;
    char freq_source[96];
    int simd_lanes_f32, fma_units;
    char simd_name[16];  // "avx512", "avx2", "neon", "scalar"
    char fma_units_why[128];
    double cpu_peak_spec_gflops;     // estimate: freq x cores x lanes x 2 x fma units (0 when freq unknown)
    double cpu_int8_spec_gops;       // estimate
    double cpu_peak_meas_gflops;     // FMA-chain microbenchmark on every thread
    ll_hw_cache caches[LL_HW_MAX_CACHES];
    int n_caches;
    uint64_t llc_bytes, mem_total, mem_avail;
    ll_hw_gpu gpus[LL_HW_MAX_GPUS];
    int n_gpus;
    char gpu_why[256]; // why there are none
} ll_hw_sys;

// One run: the resolved configuration, the machine, the JSON documents made so far.
typedef struct ll_hw_ctx {
    ll_hw_config cfg; // defaults filled in
    ll_hw_sys sys;
    const char *mode; // "quick", "default", "full"
    bool gemm_sizes_given;
    cJSON *machine;   // the "machine" object every file repeats
    double best_cpu_read_gbps, best_cpu_fp32_gflops;
    double best_gpu_read_gbps[LL_HW_MAX_GPUS], best_gpu_bf16_tflops[LL_HW_MAX_GPUS];
} ll_hw_ctx;

// ---- timing (hw_util.c) -------------------------------------------------------------------------------------
typedef void (*ll_hw_fn)(void *arg);
// warmup runs, then repetitions until >= min_reps and >= min_time seconds, or max_reps.
ll_hw_stats ll_hw_time(ll_hw_fn fn, void *arg, int warmup, int min_reps, int max_reps, double min_time);
double ll_hw_spread_pct(const ll_hw_stats *t); // interquartile range / median, percent
void ll_hw_progress(const ll_hw_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- JSON (hw_util.c) ---------------------------------------------------------------------------------------
// {"schema": "llmlab.<name>/1", "machine": <copy>, "results": [], "notes": []}
cJSON *ll_hw_doc_new(const ll_hw_ctx *c, const char *name);
cJSON *ll_hw_results(cJSON *doc);
void ll_hw_note(cJSON *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// A result row from a measurement: device, kind, dtype, impl, validated/error/tolerance, time_s{}, spread_pct,
// note (skipped rows: "skipped" instead of the timing). rate_key ("tflops", "gbps") gets work/median scaled
// by rate_scale; spec > 0 adds {"spec": {value, unit, source}, "pct_of_spec"}. Returns the row (added to doc).
cJSON *ll_hw_row(cJSON *doc, const char *device, const ll_hw_meas *m, const char *rate_key, double rate_scale,
                 double spec, const char *spec_unit, const char *spec_source);
double ll_hw_rate(const ll_hw_meas *m, double scale); // work / median * scale (0 when not timed)
// mkdir -p dir, write dir/name.json through dir/.name.json.tmp + rename.
ll_status ll_hw_write_doc(const char *dir, const char *name, const cJSON *doc, ll_error *err);

// ---- machine (hw_sys.c) -------------------------------------------------------------------------------------
void ll_hw_sys_collect(ll_hw_sys *s, bool with_gpu);
double ll_hw_cpu_fma_peak(ll_pool *pool, double seconds); // GFLOPS, every thread of pool
cJSON *ll_hw_sys_json(const ll_hw_ctx *c);
cJSON *ll_hw_machine_json(const ll_hw_ctx *c);
const ll_hw_gpu_spec *ll_hw_gpu_spec_find(const char *name);
// dtype name -> the spec figure of that precision (TFLOPS), 0 when unknown.
double ll_hw_gpu_spec_tflops(const ll_hw_gpu_spec *s, const char *dtype);

// ---- sections: each returns its document (NULL only when out of memory) --------------------------------------
cJSON *ll_hw_gemm_section(ll_hw_ctx *c);
cJSON *ll_hw_memory_section(ll_hw_ctx *c);
cJSON *ll_hw_attention_section(ll_hw_ctx *c);
cJSON *ll_hw_alloc_section(ll_hw_ctx *c);
cJSON *ll_hw_transfer_section(ll_hw_ctx *c);
cJSON *ll_hw_launch_section(ll_hw_ctx *c);

// ---- int8 GEMM (hw_int8.c): C (n x m, int32, row-major) = B (n x k) A^T (A: m x k), int8 in [-127, 127] ------
// The engine has no int8 matmul yet; this is the lab's own, to measure the integer dot-product units.
const char *ll_hw_i8_isa(void);
size_t ll_hw_i8_wsize(int m, int n, int k, int n_threads);
void ll_hw_i8_gemm(ll_pool *pool, const int8_t *A, const int8_t *B, int32_t *C, int m, int n, int k, void *wsp);
void ll_hw_i8_gemm_ref(const int8_t *A, const int8_t *B, int32_t *C, int m, int n, int k);

// ---- table (hw_table.c) -------------------------------------------------------------------------------------
void ll_hw_table_print(FILE *f, cJSON *const *docs, int n_docs);

#endif
