// cuda_backend.h — the C face of the CUDA backend (C files never include CUDA headers): how many devices
// there are, and the backend itself. Built only when the build has CUDA (LL_HAVE_CUDA=1).
#ifndef LL_CUDA_BACKEND_H
#define LL_CUDA_BACKEND_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Usable CUDA devices; 0 with the reason in why ("no CUDA device found", or the runtime's message: no driver).
int ll_backend_cuda_device_count(char *why, size_t cap);

// The CUDA backend on device 0: one stream, weights uploaded once in prepare, cuBLAS (opened at run time)
// for prefill GEMMs. NULL with err set when there is no device or the runtime fails. n_threads is unused.
ll_backend *ll_backend_cuda_init(int n_threads, ll_error *err);

// Host-only self-check (no GPU needed): every device weight decoder, on the layout upload makes, against the
// C dequantizers and a float64 dot. Returns the number of (type, row length) cases checked, or -1 with why.
int ll_backend_cuda_check_decoders(char *why, size_t cap);

// x (n floats, n a multiple of 32) as the int8 matvec of the quantized types sees it: quantized per block of 32
// exactly as the device does, then dequantized to xdq. Host code (tests build their references with it).
void ll_backend_cuda_x8_roundtrip(const float *x, float *xdq, int n);

#ifdef __cplusplus
}
#endif

#endif
