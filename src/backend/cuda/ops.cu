// ops.cu — the element-wise and per-row ops of the CUDA backend: RMSNorm (a block per row), bias, RoPE
// (normal and NeoX, optional frequency divisors), SwiGLU, residual add. Same formulas as the CPU backend.
#include "backend/cuda/cuda_internal.h"

static unsigned grid_1d(cu_impl *c, int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads, cap = (int64_t)c->n_sm * 32;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

// One block per row, float4 loads: sum of squares (warp shuffles, then across warps), then y = x * scale * g.
// With x8.q set (rows of n % 32 == 0, at most CU_X8_ROWS of them), y is also quantized for the int8 matvec
// (matvec_q8.cu) in the same pass: the 8 threads holding a block of 32 agree on its amax, codes and 16-sums
// with the arithmetic of cu_x8_quantize_block. With xh set (batches), y is also written as f16 there, the
// input of the GEMM that follows (matmul.cu).
#define RMS_THREADS 1024
#define RMS_HELD 4 // float4s of x and g a thread keeps in registers (rows up to 16384 at 1024 threads)

// One round of the second pass: v = a * scale * w for float4 i of the row (on: i < n4; the others take part in
// the shuffles only), stored as f32, f16 (hr) and int8 (x8).
__device__ __forceinline__ void rms_round(float4 a, float4 w, float scale, int i, bool on, float *yr, __half *hr,
                                          const cu_x8 &x8) {
    const float4 v = make_float4(a.x * scale * w.x, a.y * scale * w.y, a.z * scale * w.z, a.w * scale * w.w);
    if (on) {
        ((float4 *)yr)[i] = v;
        if (hr) {
            __half2 a0 = __floats2half2_rn(v.x, v.y), a1 = __floats2half2_rn(v.z, v.w);
            ((uint2 *)hr)[i] = make_uint2(*(uint32_t *)&a0, *(uint32_t *)&a1);
        }
    }
    if (!x8.q) return;
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o)); // 8 lanes = 32 values
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int c0 = (int)rintf(v.x * id), c1 = (int)rintf(v.y * id), c2 = (int)rintf(v.z * id),
              c3 = (int)rintf(v.w * id);
    int sum = c0 + c1 + c2 + c3;
    for (int o = 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o); // 4 lanes = 16 values
    if (!on) return;
    const int64_t e = (int64_t)blockIdx.x * x8.ne0 + 4 * (int64_t)i; // x8 rows are packed at n (x8.ne0 = n)
    *(char4 *)(x8.q + e) = make_char4((signed char)c0, (signed char)c1, (signed char)c2, (signed char)c3);
    const float d = amax / 127.0f;
    if ((i & 7) == 0) x8.d[e / 32] = d;
    if ((i & 3) == 0) x8.s[e / 16] = d * (float)sum;
}

// Rows of n % 4 == 0 up to RMS_HELD float4s per thread are read once: g before the wait for the kernel that
// writes x (a weight: constant), x kept in registers between the sum of squares and the scaling.
__global__ void __launch_bounds__(RMS_THREADS) k_rmsnorm(float *y, const float *x, const float *__restrict__ g, int n,
                                                         float eps, cu_x8 x8, __half *xh) {
    const bool vec = n % 4 == 0;
    const int n4 = vec ? n / 4 : n;
    const bool held = vec && n4 <= RMS_HELD * (int)blockDim.x;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 xv[RMS_HELD], gv[RMS_HELD];
    if (held) {
#pragma unroll
        for (int k = 0; k < RMS_HELD; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            gv[k] = i < n4 ? ((const float4 *)g)[i] : zero;
        }
    }
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    __shared__ float part[RMS_THREADS / 32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    if (held) {
#pragma unroll
        for (int k = 0; k < RMS_HELD; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            xv[k] = i < n4 ? ((const float4 *)xr)[i] : zero;
        }
#pragma unroll
        for (int k = 0; k < RMS_HELD; k++) {
            const float4 v = xv[k];
            ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
        }
    } else {
        for (int i = threadIdx.x; i < n4; i += blockDim.x) {
            if (vec) {
                float4 v = ((const float4 *)xr)[i];
                ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
            } else {
                ss = fmaf(xr[i], xr[i], ss);
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) part[0] = s;
    }
    __syncthreads();
    const float scale = cu_rms_scale(part[0], n, eps);
    __half *hr = xh ? xh + (size_t)blockIdx.x * n : NULL;
    if (!vec) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            yr[i] = xr[i] * scale * g[i];
            if (hr) hr[i] = __float2half_rn(yr[i]);
        }
        return;
    }
    // x8 needs whole blocks of 32 in one pass: every lane of a warp runs every round (base is uniform)
    if (held) {
#pragma unroll
        for (int k = 0; k < RMS_HELD; k++) {
            const int base = k * blockDim.x, i = base + threadIdx.x;
            if (base >= n4) break;
            rms_round(xv[k], gv[k], scale, i, i < n4, yr, hr, x8);
        }
        return;
    }
    for (int base = 0; base < n4; base += blockDim.x) {
        const int i = base + threadIdx.x;
        const bool on = i < n4;
        const float4 a = on ? ((const float4 *)xr)[i] : zero, w = on ? ((const float4 *)g)[i] : zero;
        rms_round(a, w, scale, i, on, yr, hr, x8);
    }
}

void cu_rmsnorm(cu_impl *c, float *y, const float *x, const float *g, int n, int n_tok, float eps) {
    cu_x8 x8 = c->x8;
    const bool q8 = x8.q && n % 32 == 0 && n <= x8.ne0 && n_tok <= CU_X8_ROWS;
    if (q8) x8.ne0 = n;
    else x8.q = NULL;
    const int n4 = n % 4 == 0 ? n / 4 : n;
    int threads = n4 < RMS_THREADS ? ((n4 + 31) / 32) * 32 : RMS_THREADS;
    // batches: also y in f16 for the GEMM that reads it next (matmul.cu: xh), saving it a conversion pass
    const bool h = n_tok >= 2 && (size_t)n_tok * n * 2 <= c->xh_bytes;
    cu_launch(c, k_rmsnorm, dim3(n_tok), dim3(threads), 0, y, x, g, n, eps, x8, h ? (__half *)c->xh : (__half *)NULL);
    // the int8 copy of y is ready for the next matmul
    c->x8_src = q8 ? y : NULL;
    c->x8_ntok = n_tok;
    c->x8_ne0 = n;
    c->xh_src = h ? y : NULL;
    c->xh_n = (size_t)n_tok * n;
    c->xh_bf = false;
}

__global__ void k_add_bias(float *x, const float *__restrict__ bias, int n, int64_t total) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += bias[i % n];
}

void cu_add_bias(cu_impl *c, float *x, const float *bias, int n, int n_tok) {
    int64_t total = (int64_t)n * n_tok;
    cu_launch(c, k_add_bias, dim3(grid_1d(c, total, 256)), dim3(256), 0, x, bias, n, total);
}

// The pending norm's y (cu_norm_in): a block per token, each warp takes 1/rms from the partial sums (all the same),
// then y = x * scale * g in the order of k_rmsnorm.
__global__ void k_norm_apply(float *y, const float *__restrict__ x, const float *__restrict__ g, cu_norm_in ni) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const float scale = cu_norm_inv_warp(ni, blockIdx.x, threadIdx.x & 31);
    const size_t r = (size_t)blockIdx.x * ni.n;
    for (int i = threadIdx.x; i < ni.n; i += blockDim.x) y[r + i] = x[r + i] * scale * g[i];
}

void cu_norm_apply(cu_impl *c, float *y, const float *x, const float *g, const cu_norm_in &ni, int n_tok) {
    cu_launch(c, k_norm_apply, dim3((unsigned)n_tok), dim3(256), 0, y, x, g, ni);
}

// RoPE (Su et al. 2021, arXiv:2104.09864). One block per token: the block's threads first take sin and cos of
// each pair index j for the token's position (the arithmetic of cu_rope_theta / cu_rope_sincos, cuda_internal.h)
// into shared memory, then walk (head, j) with j fastest, so that a warp reads and writes consecutive bytes of one
// head. Positions: pos_dev[t], or pos0 + t when pos_dev is NULL.
__device__ __forceinline__ void cu_rope_token_sincos(int pos, int n_rot, float base, const float *__restrict__ ff,
                                                     float *sn, float *cs) {
    for (int j = threadIdx.x; j < n_rot / 2; j += blockDim.x)
        cu_rope_sincos(pos, cu_rope_theta(j, n_rot, base, ff), &sn[j], &cs[j]);
    __syncthreads();
}

// Rotates pair j of one head's row; the rotated pair also goes to element i0, i1 of the cache row cr (k's) when
// given, as f16 when f16.
__device__ __forceinline__ void cu_rope_pair(float *row, void *cr, bool f16, int64_t cbase, int j, int half, bool neox,
                                             float sn, float cs) {
    const int i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
    const float a = row[i0], b = row[i1], r0 = a * cs - b * sn, r1 = a * sn + b * cs;
    row[i0] = r0, row[i1] = r1;
    if (cr) cu_kv_put(cr, f16, cbase + i0, r0), cu_kv_put(cr, f16, cbase + i1, r1);
}

__global__ void k_rope(float *x, const int32_t *__restrict__ pos_dev, int pos0, int n_head, int head_dim, int n_rot,
                       float base, bool neox, const float *__restrict__ ff) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    __shared__ float sn[ROPE_MAX_HALF], cs[ROPE_MAX_HALF];
    const int t = blockIdx.x, half = n_rot / 2;
    cu_rope_token_sincos(pos_dev ? pos_dev[t] : pos0 + t, n_rot, base, ff, sn, cs);
    float *xt = x + (size_t)t * n_head * head_dim;
    for (int i = threadIdx.x; i < n_head * half; i += blockDim.x) {
        const int h = i / half, j = i - h * half;
        cu_rope_pair(xt + (size_t)h * head_dim, NULL, false, 0, j, half, neox, sn[j], cs[j]);
    }
}

void cu_rope(cu_impl *c, float *x, const int32_t *pos_dev, int pos0, int n_tok, const ll_rope_params *p,
             const float *freq_dev) {
    if (n_tok == 0 || p->n_rot == 0 || p->n_head == 0) return;
    LL_ASSERT(p->n_rot / 2 <= ROPE_MAX_HALF);
    cu_launch(c, k_rope, dim3((unsigned)n_tok), dim3(256), 0, x, pos_dev, pos0, p->n_head, p->head_dim, p->n_rot,
              p->base, p->neox, freq_dev);
}

// rope_kv_store in one launch, one block per token as k_rope: the q heads' pairs, then the k heads' pairs (also to
// the k cache's row of the token: row0(t) + pos(t)), then k's values past n_rot and the v row, copied to the caches.
// Q8_0 caches (q8): the block's warps quantize the rotated k row and the v row by blocks of 32 at the end instead
// (the rotated k is in global memory, visible to the whole block after the barrier).
__global__ void k_rope_kv(float *q, float *k, const float *__restrict__ v, void *kc, void *vc, bool f16, bool q8,
                          cu_bpos bp, int n_head, int n_head_kv, int head_dim, int n_rot, float base, bool neox,
                          const float *__restrict__ ff) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    __shared__ float sn[ROPE_MAX_HALF], cs[ROPE_MAX_HALF];
    const int t = blockIdx.x, half = n_rot / 2, kvd = n_head_kv * head_dim, tail = head_dim - n_rot;
    const int pos = cu_bp_pos(bp, t);
    cu_rope_token_sincos(pos, n_rot, base, ff, sn, cs);
    float *qt = q + (size_t)t * n_head * head_dim, *kt = k + (size_t)t * kvd;
    const int64_t row = (int64_t)cu_bp_row0(bp, t) + pos, crow = row * kvd; // the cache row, its first element
    for (int i = threadIdx.x; i < (n_head + n_head_kv) * half; i += blockDim.x) {
        const int h = i / half, j = i - h * half;
        if (h < n_head) cu_rope_pair(qt + (size_t)h * head_dim, NULL, false, 0, j, half, neox, sn[j], cs[j]);
        else {
            const size_t off = (size_t)(h - n_head) * head_dim;
            cu_rope_pair(kt + off, q8 ? NULL : kc, f16, crow + (int64_t)off, j, half, neox, sn[j], cs[j]);
        }
    }
    const float *vt = v + (size_t)t * kvd;
    if (q8) {
        __syncthreads(); // kt rotated
        const int nb = kvd / 32, lane = threadIdx.x & 31;
        for (int b = threadIdx.x >> 5; b < 2 * nb; b += blockDim.x >> 5) { // warp-uniform
            const bool isk = b < nb;
            const int bb = isk ? b : b - nb;
            uint8_t *dst = (uint8_t *)(isk ? kc : vc) + (row * nb + bb) * 34;
            cu_q8_0_store_warp((isk ? kt : vt)[bb * 32 + lane], dst, lane);
        }
        return;
    }
    for (int i = threadIdx.x; i < n_head_kv * tail; i += blockDim.x) { // k past n_rot: as is
        const int hh = i / tail, d = n_rot + (i - hh * tail);
        cu_kv_put(kc, f16, crow + (int64_t)hh * head_dim + d, kt[(size_t)hh * head_dim + d]);
    }
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) cu_kv_put(vc, f16, crow + i, vt[i]);
}

void cu_rope_kv_store(cu_impl *c, float *q, float *k, const float *v, void *kc, void *vc, uint32_t ctype,
                      const cu_bpos &bp, int n_tok, const ll_rope_params *p, int n_head_kv, const float *freq_dev) {
    if (n_tok == 0) return;
    LL_ASSERT(p->n_rot / 2 <= ROPE_MAX_HALF);
    const bool q8 = ctype == LL_TYPE_Q8_0;
    LL_ASSERT(!q8 || (n_head_kv * p->head_dim) % 32 == 0);
    cu_launch(c, k_rope_kv, dim3((unsigned)n_tok), dim3(256), 0, q, k, v, kc, vc, ctype == LL_TYPE_F16, q8, bp,
              p->n_head, n_head_kv, p->head_dim, p->n_rot, p->base, p->neox, freq_dev);
}

// Cache rows row0(t) + pos(t) = k, v (n_tok rows of kvd).
__global__ void k_kv_store(void *kc, void *vc, bool f16, const float *__restrict__ k, const float *__restrict__ v,
                           int64_t n, int kvd, cu_bpos bp) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / kvd);
        const int64_t o = ((int64_t)cu_bp_row0(bp, t) + cu_bp_pos(bp, t)) * kvd + (i - (int64_t)t * kvd);
        cu_kv_put(kc, f16, o, k[i]);
        cu_kv_put(vc, f16, o, v[i]);
    }
}

// The same into Q8_0 rows: a warp per block of 32 values, n_blk blocks of k and as many of v (nb per row).
__global__ void k_kv_store_q8(uint8_t *kc, uint8_t *vc, const float *__restrict__ k, const float *__restrict__ v,
                              int64_t n_blk, int nb, cu_bpos bp) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int lane = threadIdx.x & 31;
    const int64_t w0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5, nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t b = w0; b < 2 * n_blk; b += nw) { // warp-uniform
        const bool isk = b < n_blk;
        const int64_t bb = isk ? b : b - n_blk;
        const int t = (int)(bb / nb), j = (int)(bb - (int64_t)t * nb);
        const int64_t row = (int64_t)cu_bp_row0(bp, t) + cu_bp_pos(bp, t);
        cu_q8_0_store_warp((isk ? k : v)[bb * 32 + lane], (isk ? kc : vc) + (row * nb + j) * 34, lane);
    }
}

void cu_kv_store(cu_impl *c, void *kc, void *vc, uint32_t ctype, const float *k, const float *v, int kvd, int n_tok,
                 const cu_bpos &bp) {
    const int64_t n = (int64_t)kvd * n_tok;
    if (n == 0) return;
    if (ctype == LL_TYPE_Q8_0) {
        LL_ASSERT(kvd % 32 == 0);
        cu_launch(c, k_kv_store_q8, dim3(grid_1d(c, 2 * n, 256)), dim3(256), 0, (uint8_t *)kc, (uint8_t *)vc, k, v,
                  n / 32, kvd / 32, bp);
        return;
    }
    cu_launch(c, k_kv_store, dim3(grid_1d(c, n, 256)), dim3(256), 0, kc, vc, ctype == LL_TYPE_F16, k, v, n, kvd, bp);
}

// g = silu(gi) * u from gate and up values of type T: f32 (gi is g: in place) or f16 (the batch GEMMs' outputs,
// matmul.cu); g's f16 copy into xh when given.
__device__ __forceinline__ float cu_tof(float v) { return v; }
__device__ __forceinline__ float cu_tof(__half v) { return __half2float(v); }
template <class T> __global__ void k_swiglu(float *g, const T *gi, const T *__restrict__ u, int64_t n, __half *xh) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = cu_tof(gi[i]);
        v = v / (1.0f + expf(-v)) * cu_tof(u[i]);
        g[i] = v;
        if (xh) xh[i] = __float2half_rn(v);
    }
}

// Batches (n_tok >= 2) also leave g in f16 in xh for the down GEMM, as rmsnorm does for its GEMMs.
template <class T> static void swiglu(cu_impl *c, float *g, const T *gi, const T *u, int n, int n_tok) {
    int64_t total = (int64_t)n * n_tok;
    const bool h = n_tok >= 2 && (size_t)total * 2 <= c->xh_bytes;
    cu_launch(c, k_swiglu<T>, dim3(grid_1d(c, total, 256)), dim3(256), 0, g, gi, u, total,
              h ? (__half *)c->xh : (__half *)NULL);
    c->x8_src = NULL;
    c->xh_src = h ? g : NULL;
    c->xh_n = (size_t)total;
    c->xh_bf = false;
}

void cu_swiglu(cu_impl *c, float *g, const float *u, int n, int n_tok) { swiglu(c, g, (const float *)g, u, n, n_tok); }
void cu_swiglu_h(cu_impl *c, float *g, const __half *gh, const __half *uh, int n, int n_tok) {
    swiglu(c, g, gh, uh, n, n_tok);
}

__global__ void k_add(float *y, const float *__restrict__ x, int64_t n) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

void cu_add(cu_impl *c, float *y, const float *x, size_t n) {
    if (n == 0) return;
    cu_launch(c, k_add, dim3(grid_1d(c, (int64_t)n, 256)), dim3(256), 0, y, x, (int64_t)n);
}
