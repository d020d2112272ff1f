// hw_types.h — the plain records the hardware lab measures into, shared by its C files and its CUDA files
// (so this header is C and C++ alike and includes no CUDA or core header). JSON is made from these in C.
#ifndef LL_HW_TYPES_H
#define LL_HW_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Seconds per repetition over the timed repetitions (after validation and warm-up); q1/q3: the quartiles
// (linear interpolation), whose distance over the median is the reported spread.
typedef struct ll_hw_stats {
    double median, min, max, q1, q3;
    int reps;
} ll_hw_stats;

// One measured configuration. The meaning of m, n, k and of work depends on the section:
//   gemm:      C (m x n) = A (m x k) B (k x n); work = 2 m n k flops
//   memory:    m = threads (CPU) or 0; work = bytes moved per repetition (STREAM counting: reads + writes)
//   transfer:  work = bytes per copy
//   attention: m = seq, n = head_dim, k = heads; work = counted flops (4 seq^2 hd heads, half if causal)
//   launch:    m = kernels per repetition; work = 0 (time per kernel = median / m)
typedef struct ll_hw_meas {
    char kind[24];   // "fp32", "read", "h2d_pinned", "causal", "launch_sync", ...
    char dtype[16];  // "fp32", "bf16", "int8", "fp8_e4m3", ...
    char impl[96];   // what computed it: "engine ll_matmul (avx512)", "cuBLASLt", ...
    int64_t m, n, k;
    double work;
    ll_hw_stats t;
    int validated;   // 1 passed, 0 failed (not timed), -1 not applicable
    double err;      // validation: largest error found, in the unit the section states (NaN when none)
    double tol;      // validation tolerance used
    char note[160];
} ll_hw_meas;

// One GPU as the CUDA runtime describes it.
typedef struct ll_hw_gpu_info {
    int index;
    char name[128];
    int cc_major, cc_minor;
    int sm_count;
    uint64_t mem_total, mem_free;     // bytes
    int clock_khz, mem_clock_khz;     // 0 when the runtime does not say
    int mem_bus_bits;
    uint64_t l2_bytes;
    int driver_version, runtime_version; // 13000 = 13.0
    char pci_bus_id[32];              // "0000:19:00.0"
} ll_hw_gpu_info;

// Summarise repetition times (seconds) into median/min/max; t is sorted in place (hw_util.c).
ll_hw_stats ll_hw_stats_of(double *t, int n);

#ifdef __cplusplus
}
#endif
#endif
