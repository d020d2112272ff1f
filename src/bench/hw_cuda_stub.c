// hw_cuda_stub.c — the GPU half of the hardware lab in a build without CUDA: every call says so and
// measures nothing, so the C code runs unchanged (the .cu files provide these when LL_HAVE_CUDA=1).
#include "bench/hw_cuda.h"

#include <stdio.h>

#if !defined(LL_HAVE_CUDA) || !LL_HAVE_CUDA

static int none(char *why, size_t cap) {
    if (why && cap) snprintf(why, cap, "built without CUDA (no nvcc at build time, or CUDA=0)");
    return 0;
}

int ll_hw_cuda_device_count(char *why, size_t cap) { return none(why, cap); }
bool ll_hw_cuda_info(int dev, ll_hw_gpu_info *out, char *why, size_t cap) { return none(why, cap) != 0; }
int ll_hw_cuda_gemm(int dev, const int *sizes, int n_sizes, double min_time, ll_hw_meas *out, int cap, char *why,
                    size_t whycap) {
    return none(why, whycap);
}
int ll_hw_cuda_memory(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap) {
    return none(why, whycap);
}
int ll_hw_cuda_transfer(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap) {
    return none(why, whycap);
}
int ll_hw_cuda_attention(int dev, const int *seqs, int n_seqs, int heads, double min_time, ll_hw_meas *out, int cap,
                         char *why, size_t whycap) {
    return none(why, whycap);
}
int ll_hw_cuda_launch(int dev, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap) {
    return none(why, whycap);
}
bool ll_hw_cuda_mem_info(int dev, uint64_t *free_b, uint64_t *total_b, char *why, size_t whycap) {
    return none(why, whycap) != 0;
}
bool ll_hw_cuda_try_alloc(int dev, uint64_t bytes) { return false; }

#else
typedef int ll_hw_cuda_stub_unused; // ISO C forbids an empty translation unit
#endif
