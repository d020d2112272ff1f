// ops.cu — the element-wise and per-row ops of the CUDA backend: RMSNorm (a block per row), bias, RoPE
// (normal and NeoX, optional frequency divisors), SwiGLU, residual add. Same formulas as the CPU backend.
#include "backend/cuda/cuda_internal.h"

static unsigned grid_1d(cu_impl *c, int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads, cap = (int64_t)c->n_sm * 32;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

// One block per row: sum of squares (warp shuffles, then across warps), then y = x * scale * g.
__global__ void __launch_bounds__(256) k_rmsnorm(float *y, const float *x, const float *__restrict__ g, int n,
                                                 float eps) {
    __shared__ float part[8];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) part[0] = s;
    }
    __syncthreads();
    const float scale = (float)(1.0 / sqrt((double)part[0] / n + eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * g[i];
}

void cu_rmsnorm(cu_impl *c, float *y, const float *x, const float *g, int n, int n_tok, float eps) {
    k_rmsnorm<<<n_tok, 256, 0, c->stream>>>(y, x, g, n, eps);
    CU_LAUNCHED();
}

__global__ void k_add_bias(float *x, const float *__restrict__ bias, int n, int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += bias[i % n];
}

void cu_add_bias(cu_impl *c, float *x, const float *bias, int n, int n_tok) {
    int64_t total = (int64_t)n * n_tok;
    k_add_bias<<<grid_1d(c, total, 256), 256, 0, c->stream>>>(x, bias, n, total);
    CU_LAUNCHED();
}

// RoPE (Su et al. 2021, arXiv:2104.09864). One thread per (token, pair j): the angle in double as on the CPU,
// then every head of the token. Positions: pos_dev[t], or pos0 + t when pos_dev is NULL.
__global__ void k_rope(float *x, const int32_t *__restrict__ pos_dev, int pos0, int n_tok, int n_head,
                       int head_dim, int n_rot, float base, bool neox, const float *__restrict__ ff) {
    const int half = n_rot / 2;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)n_tok * half;
         i += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(i / half), j = (int)(i % half);
        double theta = pow((double)base, -2.0 * j / n_rot);
        if (ff) theta /= ff[j];
        double ang = (double)(pos_dev ? pos_dev[t] : pos0 + t) * theta;
        float cs = (float)cos(ang), sn = (float)sin(ang);
        int i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
        for (int h = 0; h < n_head; h++) {
            float *v = x + ((size_t)t * n_head + h) * head_dim;
            float a = v[i0], b = v[i1];
            v[i0] = a * cs - b * sn;
            v[i1] = a * sn + b * cs;
        }
    }
}

void cu_rope(cu_impl *c, float *x, const int32_t *pos_dev, int pos0, int n_tok, const ll_rope_params *p,
             const float *freq_dev) {
    int64_t total = (int64_t)n_tok * (p->n_rot / 2);
    if (total == 0) return;
    k_rope<<<grid_1d(c, total, 128), 128, 0, c->stream>>>(x, pos_dev, pos0, n_tok, p->n_head, p->head_dim, p->n_rot,
                                                          p->base, p->neox, freq_dev);
    CU_LAUNCHED();
}

__global__ void k_swiglu(float *g, const float *__restrict__ u, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = g[i];
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

void cu_swiglu(cu_impl *c, float *g, const float *u, int n, int n_tok) {
    int64_t total = (int64_t)n * n_tok;
    k_swiglu<<<grid_1d(c, total, 256), 256, 0, c->stream>>>(g, u, total);
    CU_LAUNCHED();
}

__global__ void k_add(float *y, const float *__restrict__ x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

void cu_add(cu_impl *c, float *y, const float *x, size_t n) {
    if (n == 0) return;
    k_add<<<grid_1d(c, (int64_t)n, 256), 256, 0, c->stream>>>(y, x, (int64_t)n);
    CU_LAUNCHED();
}
