// hw_cuda.h — the hardware lab's GPU measurements as plain C calls, so no C file includes a CUDA header.
// Built from the .cu files when the build has CUDA (LL_HAVE_CUDA=1), else from hw_cuda_stub.c.
#ifndef LL_HW_CUDA_H
#define LL_HW_CUDA_H

#include "bench/hw_types.h"

#ifdef __cplusplus
extern "C" {
#endif

// Every call returns how many records it wrote into out (at most cap), or -1 after writing the reason into
// why (a CUDA or cuBLASLt status with the file:line that saw it). A record with t.reps == 0 is a
// configuration that was skipped; its note says why (e.g. fp8 below compute capability 8.9).

// Number of usable CUDA devices; 0 with the reason in why ("built without CUDA", "no CUDA device found",
// or the runtime's own message, e.g. no driver).
int ll_hw_cuda_device_count(char *why, size_t cap);
bool ll_hw_cuda_info(int dev, ll_hw_gpu_info *out, char *why, size_t cap);

// cuBLASLt GEMM, C (m x n) = A^T B with A stored (k x m) and B (k x n), column-major ("TN", the layout fp8
// and int8 need): fp32, tf32, fp16, bf16, fp8 e4m3 (bf16 out), int8 (int32 out) for each size (m = n = k).
// Each configuration is checked on 64 sampled entries against a double-precision host reference first.
int ll_hw_cuda_gemm(int dev, const int *sizes, int n_sizes, double min_time, ll_hw_meas *out, int cap, char *why,
                    size_t whycap);

// Device memory bandwidth: read (sum), write (fill), copy, triad on arrays of `bytes` each, plus
// cudaMemcpy device-to-device.
int ll_hw_cuda_memory(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap);

// Host<->device copies of `bytes`: pageable (malloc) and pinned (cudaMallocHost), both directions.
int ll_hw_cuda_transfer(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why,
                        size_t whycap);

// Attention stand-in (cuBLAS strided-batched GEMMs + a softmax kernel; not the engine's kernel): causal and
// full, head_dim 64 and 128, fp16 and bf16, batch 1, `heads` heads, each seq in seqs.
int ll_hw_cuda_attention(int dev, const int *seqs, int n_seqs, int heads, double min_time, ll_hw_meas *out, int cap,
                         char *why, size_t whycap);

// Empty-kernel launch rate, launch + cudaStreamSynchronize round trip, synchronize on an idle stream, and a
// CUDA graph of empty kernels replayed.
int ll_hw_cuda_launch(int dev, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap);

// Free and total device memory (bytes); false with why when the query fails.
bool ll_hw_cuda_mem_info(int dev, uint64_t *free_b, uint64_t *total_b, char *why, size_t whycap);
// cudaMalloc(bytes), touch every byte (cudaMemset), cudaFree: true when all succeeded. Never managed memory.
bool ll_hw_cuda_try_alloc(int dev, uint64_t bytes);

#ifdef __cplusplus
}
#endif
#endif
