// hw.h — the hardware lab (`llmlab bench hw`): what this machine's CPU and GPUs can do, measured against
// their ceilings, written as results JSON (schema in docs/bench-hw.md) and printed as a table.
#ifndef LL_HW_H
#define LL_HW_H

#include <stdio.h>

#include "bench/hw_types.h"
#include "core/core.h"

typedef enum ll_hw_section {
    LL_HW_GEMM = 1 << 0,
    LL_HW_MEMORY = 1 << 1,
    LL_HW_ATTENTION = 1 << 2,
    LL_HW_ALLOC = 1 << 3,
    LL_HW_TRANSFER = 1 << 4,
    LL_HW_LAUNCH = 1 << 5,
    LL_HW_ALL = (1 << 6) - 1,
} ll_hw_section;

#define LL_HW_MAX_SIZES 8

// What to measure. Zero fields take the mode's defaults (ll_hw_run resolves them; docs/bench-hw.md lists them).
typedef struct ll_hw_config {
    unsigned sections;          // LL_HW_* bits; 0 = all
    bool quick, full;           // quick: < 60 s on 2 cores; full: adds the long sizes
    const char *json_dir;       // NULL = results/raw/<hostname>
    int n_threads;              // most CPU threads (0 = logical cores)
    int gemm_sizes[LL_HW_MAX_SIZES], n_gemm_sizes;         // CPU sizes (M = N = K)
    int gpu_gemm_sizes[LL_HW_MAX_SIZES], n_gpu_gemm_sizes; // GPU sizes
    int attn_seqs[LL_HW_MAX_SIZES], n_attn_seqs;           // CPU sequence lengths
    int gpu_attn_seqs[LL_HW_MAX_SIZES], n_gpu_attn_seqs;
    int attn_heads, gpu_attn_heads;
    size_t mem_bytes;           // CPU bandwidth: bytes per array (>= 4 x the last-level cache)
    size_t gpu_mem_bytes;       // GPU bandwidth: bytes per array
    size_t transfer_bytes;      // host<->device copy size
    uint64_t alloc_cap;         // most bytes the CPU allocation probe touches (0 = 90% of MemAvailable)
    double min_time;            // seconds of timed repetitions per configuration
    double cpu_mem_spec_gbps;   // DRAM bandwidth spec for % of spec (0 = unknown)
    bool no_gpu;                // skip every GPU part (tests)
    bool progress;              // progress lines on stderr
    volatile int *interrupt;    // optional (Ctrl-C): non-zero skips the sections not yet started
} ll_hw_config;

void ll_hw_config_init(ll_hw_config *c); // all zero, progress on

// Parse "gemm,memory,..." into LL_HW_* bits; false with a message naming the bad word.
bool ll_hw_parse_sections(const char *list, unsigned *out, ll_error *err);

// Run the sections, write DIR/<section>.json (and system_info.json) atomically, print the table to `table`
// (NULL: none). Fails only when the JSON directory cannot be written or memory runs out; a section that
// cannot run (no GPU, no BLAS) records why and the rest go on.
ll_status ll_hw_run(const ll_hw_config *cfg, FILE *table, ll_error *err);

// ---- pieces the tests reach -----------------------------------------------------------------------------

// Element types for ll_hw_gemm_check.
typedef enum { LL_HW_F32, LL_HW_BF16, LL_HW_I8, LL_HW_I32 } ll_hw_elt;

// Check C (n rows x m, row-major: C[j * ldc + i]) against C[j][i] = sum_k A[i][k] B[j][k] (A: m x k row-major,
// B: n x k row-major) on `samples` entries (corners, the diagonal, the rest random), in double. The error of
// an entry is |C - ref| / max(sum_k |A B|, tiny); passes when every error <= tol. Returns the largest error.
double ll_hw_gemm_check(ll_hw_elt ta, const void *A, ll_hw_elt tb, const void *B, ll_hw_elt tc, const void *C,
                        int m, int n, int k, size_t ldc, int samples, uint64_t seed, double tol, bool *pass);

// Largest size in [0, hi] (a multiple of gran) for which try_fn succeeds, by bisection, assuming success is
// monotone (if size s works, every smaller size does). *probes: number of calls made.
typedef bool (*ll_hw_try_fn)(void *ctx, uint64_t bytes);
uint64_t ll_hw_bisect(ll_hw_try_fn try_fn, void *ctx, uint64_t hi, uint64_t gran, int *probes);

#endif
