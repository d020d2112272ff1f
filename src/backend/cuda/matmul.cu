// matmul.cu — y (n_tok, ne1) = x (n_tok, ne0) W^T on the device: a matvec kernel per float weight type for
// decode (f32 math; the quantized types' int8 matvec is in matvec_q8.cu), and for batches cuBLAS GEMM on f16/bf16 operands (quantized weights
// dequantized to an f16 scratch first).
#include "backend/cuda/cuda_quant.h"

#define MV_WARPS 4 // warps per block; they split a row's units between them
#define MV_ROWS 8  // most rows per block (c->mv_rows: 2, 4 or 8): x is loaded once per unit for all of them


// Dot of n_rows (<= RB) consecutive rows from row0 with x (f32), by the block's MV_WARPS warps: the float
// types' decode (the quantized ones take the int8 path of matvec_q8.cu). SW: the same rows of w2 too, and
// y = silu(x w^T) * (x w2^T) (gate and up with SwiGLU in one launch).
// ROPE: rows rotated and cached (cu_rope_store, for matrix `which` of q, k, v; RB even).
// The body: row block `blk`.
template <class Q, int RB, bool SW, bool ROPE = false>
__device__ __forceinline__ void matvec_block(const cu_wview &w, const cu_wview &w2, const float *__restrict__ x,
                                             float *__restrict__ y, bool accumulate, int64_t blk,
                                             const cu_rope_epi &re = cu_rope_epi{}, int which = 0) {
    static_assert(!ROPE || (RB % 2 == 0 && !SW), "RoPE pairs within a block");
    constexpr int NA = SW ? 2 * RB : RB;
    __shared__ float red[MV_WARPS][NA];
    const int64_t row0 = blk * RB;
    const int n_rows = (int)min((int64_t)RB, w.ne1 - row0);
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int64_t n_units = w.ne0 / (Q::R * Q::L);
    float acc[NA] = {};
#pragma unroll 2
    for (int64_t u = threadIdx.x; u < n_units; u += MV_WARPS * 32) {
        int64_t st[Q::R];
        Q::starts(u, st);
        float xv[Q::R][Q::L], xs[Q::R];
#pragma unroll
        for (int r = 0; r < Q::R; r++) {
            xs[r] = 0.0f;
#pragma unroll
            for (int i = 0; i < Q::L; i += (Q::L % 4 == 0 ? 4 : 1)) {
                if (Q::L % 4 == 0) {
                    float4 f = __ldg((const float4 *)(x + st[r] + i));
                    xv[r][i] = f.x; xv[r][i + 1] = f.y; xv[r][i + 2] = f.z; xv[r][i + 3] = f.w;
                } else {
                    xv[r][i] = __ldg(x + st[r] + i);
                }
            }
            if (Q::HAS_MIN)
#pragma unroll
                for (int i = 0; i < Q::L; i++) xs[r] += xv[r][i];
        }
#pragma unroll
        for (int k = 0; k < NA; k++) {
            if (k % RB >= n_rows) continue;
            float v[Q::R][Q::L], a[Q::R], b[Q::R];
            Q::load(k < RB ? w : w2, row0 + k % RB, u, v, a, b);
            float s = 0.0f;
#pragma unroll
            for (int r = 0; r < Q::R; r++) {
                float d = 0.0f;
#pragma unroll
                for (int i = 0; i < Q::L; i++) d = fmaf(v[r][i], xv[r][i], d);
                s = fmaf(a[r], d, s);
                if (Q::HAS_MIN) s = fmaf(b[r], xs[r], s);
            }
            acc[k] += s;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int k = 0; k < NA; k++) {
        float s = acc[k];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) red[warp][k] = s;
    }
    __syncthreads();
    if (threadIdx.x < n_rows) {
        float s = 0.0f, s2 = 0.0f, sp = 0.0f;
#pragma unroll
        for (int wi = 0; wi < MV_WARPS; wi++) {
            s += red[wi][threadIdx.x];
            if (SW) s2 += red[wi][RB + threadIdx.x];
            if (ROPE) sp += red[wi][threadIdx.x ^ 1]; // the partner row's sum, in the same order as its own
        }
        if (SW) y[row0 + threadIdx.x] = s / (1.0f + expf(-s)) * s2; // as k_swiglu
        else if (ROPE) cu_rope_store(re, which, 0, row0 + threadIdx.x, s, sp, y + row0 + threadIdx.x);
        else y[row0 + threadIdx.x] = accumulate ? y[row0 + threadIdx.x] + s : s;
    }
}

template <class Q, int RB, bool SW>
__global__ void __launch_bounds__(MV_WARPS * 32) k_matvec(cu_wview w, cu_wview w2, const float *__restrict__ x,
                                                          float *__restrict__ y, bool accumulate) {
    matvec_block<Q, RB, SW>(w, w2, x, y, accumulate, blockIdx.x);
}

// q, k and v (same type and row length) on one x in one launch: blocks [0, nb0) are w0's rows, then nb1 of
// w1's, then w2's. ROPE: then RoPE of q and k and the cache store as well (re).
template <class Q, int RB, bool ROPE>
__global__ void __launch_bounds__(MV_WARPS * 32) k_matvec3(cu_wview w0, cu_wview w1, cu_wview w2, int nb0, int nb1,
                                                           const float *__restrict__ x, float *__restrict__ y0,
                                                           float *__restrict__ y1, float *__restrict__ y2,
                                                           cu_rope_epi re) {
    const int b = blockIdx.x;
    if (b < nb0) matvec_block<Q, RB, false, ROPE>(w0, w0, x, y0, false, b, re, 0);
    else if (b < nb0 + nb1) matvec_block<Q, RB, false, ROPE>(w1, w1, x, y1, false, b - nb0, re, 1);
    else matvec_block<Q, RB, false, ROPE>(w2, w2, x, y2, false, b - nb0 - nb1, re, 2);
}

#define MV3_RB 2 // rows per block of k_matvec3 (op_qkv_rope_store needs it to divide head_dim)

struct mv3_launch {
    cu_impl *c;
    const cu_wview *const *w;
    const float *x;
    float *const *y;
    const cu_rope_epi *re; // NULL: no RoPE
    template <class Q> void run() {
        constexpr int RB = MV3_RB;
        const int nb0 = (int)((w[0]->ne1 + RB - 1) / RB), nb1 = (int)((w[1]->ne1 + RB - 1) / RB),
                  nb2 = (int)((w[2]->ne1 + RB - 1) / RB);
        const dim3 g((unsigned)(nb0 + nb1 + nb2)), b(MV_WARPS * 32);
        if (re) cu_launch(c, k_matvec3<Q, RB, true>, g, b, 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0], y[1], y[2], *re);
        else cu_launch(c, k_matvec3<Q, RB, false>, g, b, 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0], y[1], y[2],
                       cu_rope_epi{});
    }
};

bool cu_matvec3_ok(const cu_wview *const w[3], int n_tok) {
    const uint32_t t = w[0]->type;
    return n_tok == 1 && (t == LL_TYPE_F16 || t == LL_TYPE_BF16 || t == LL_TYPE_F32) && w[1]->type == t &&
           w[2]->type == t && w[1]->ne0 == w[0]->ne0 && w[2]->ne0 == w[0]->ne0;
}

void cu_matvec3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], const cu_rope_epi *re) {
    LL_ASSERT(!re || (re->hd % MV3_RB == 0 && w[0]->ne1 % re->hd == 0 && w[1]->ne1 % re->hd == 0));
    cu_norm_guard(c, x, (size_t)w[0]->ne0 * sizeof(float));
    mv3_launch l = {c, w, x, y, re};
    LL_ASSERT(cu_dispatch(*w[0], l));
    c->x8_src = c->xh_src = NULL;
}

struct mv_launch {
    cu_impl *c;
    const cu_wview *w, *w2; // w2: the up matrix of a fused gate/up/SwiGLU, else NULL
    const float *x;
    float *y;
    int rows;
    bool acc;
    template <class Q, int RB> void go() {
        dim3 blocks((unsigned)((w->ne1 + RB - 1) / RB));
        if (w2) cu_launch(c, k_matvec<Q, RB, true>, blocks, dim3(MV_WARPS * 32), 0, *w, *w2, x, y, false);
        else cu_launch(c, k_matvec<Q, RB, false>, blocks, dim3(MV_WARPS * 32), 0, *w, *w, x, y, acc);
    }
    template <class Q> void run() {
        if (rows == 2) go<Q, 2>();
        else if (rows == 8) go<Q, MV_ROWS>();
        else go<Q, 4>();
    }
};

template <class T> __device__ __forceinline__ T cu_from_float(float f);
template <> __device__ __forceinline__ __half cu_from_float<__half>(float f) { return __float2half_rn(f); }
template <> __device__ __forceinline__ __nv_bfloat16 cu_from_float<__nv_bfloat16>(float f) {
    return __float2bfloat16_rn(f);
}

// 8 values to 16-byte-aligned dst as whole 16-byte stores. Written as st.global.v4: nvcc split a uint4
// assignment here into 4-byte stores (8 partial writes per 32-byte sector), which ncu measured at a tenth of
// the HBM rate with L2 busy.
__device__ __forceinline__ void cu_st16(void *dst, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
__device__ __forceinline__ void cu_store8(float *dst, const float f[8]) {
    cu_st16(dst, __float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
    cu_st16(dst + 4, __float_as_uint(f[4]), __float_as_uint(f[5]), __float_as_uint(f[6]), __float_as_uint(f[7]));
}

// out[i] (ne0 floats) = row ids[i] decoded (get_rows). Rows on y (looping past 65535), units on x; runs of 8
// values leave as two 16-byte stores.
template <class Q>
__global__ void k_dequant(cu_wview w, const int32_t *__restrict__ ids, int64_t n_rows, float *__restrict__ out) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int n_units = (int)(w.ne0 / (Q::R * Q::L));
    for (int64_t i = blockIdx.y; i < n_rows; i += gridDim.y) {
        const int64_t row = ids[i];
        float *o = out + i * w.ne0;
        for (int u = blockIdx.x * blockDim.x + threadIdx.x; u < n_units; u += gridDim.x * blockDim.x) {
            int64_t st[Q::R];
            float v[Q::R][Q::L], a[Q::R], b[Q::R];
            Q::starts(u, st);
            Q::load(w, row, u, v, a, b);
#pragma unroll
            for (int r = 0; r < Q::R; r++) {
                if (Q::L % 8 == 0) {
#pragma unroll
                    for (int c = 0; c < Q::L; c += 8) {
                        float f[8];
#pragma unroll
                        for (int k = 0; k < 8; k++) f[k] = fmaf(a[r], v[r][c + k], b[r]);
                        cu_store8(o + st[r] + c, f);
                    }
                } else {
#pragma unroll
                    for (int k = 0; k < Q::L; k++) o[st[r] + k] = fmaf(a[r], v[r][k], b[r]);
                }
            }
        }
    }
}

struct dq_launch {
    cu_impl *c;
    const cu_wview *w;
    const int32_t *ids;
    int64_t n_rows;
    float *out;
    template <class Q> void run() {
        const int64_t units = w->ne0 / (Q::R * Q::L);
        const unsigned gx = (unsigned)((units + 127) / 128), gy = (unsigned)(n_rows < 65535 ? n_rows : 65535);
        if (n_rows < 1) return;
        cu_launch(c, k_dequant<Q>, dim3(gx, gy), dim3(128), 0, *w, ids, n_rows, out);
    }
};

// Prefill: the whole of w to f16 (rows of ne0). A block decodes 128 consecutive units of a row (whole
// super-blocks: a contiguous run of elements) into shared memory, then writes them as consecutive 16-byte
// stores: the decoders' own store pattern (runs of 8-16 values spread over a super-block) made every store
// instruction touch twice the L2 sectors, and ncu found the kernel L2-bound at 44% of the HBM rate.
#define DQH_UNITS 128
template <class Q> __global__ void __launch_bounds__(DQH_UNITS) k_dequant_h(cu_wview w, __half *__restrict__ out) {
    constexpr int UE = Q::R * Q::L; // elements per unit
    static_assert(Q::L % 8 == 0, "runs of whole 16-byte pieces");
    __shared__ __align__(16) __half sm[DQH_UNITS * UE];
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int n_units = (int)(w.ne0 / UE), u0 = blockIdx.x * DQH_UNITS, nu = min(DQH_UNITS, n_units - u0);
    const int64_t base = (int64_t)u0 * UE;
    for (int64_t row = blockIdx.y; row < w.ne1; row += gridDim.y) {
        if ((int)threadIdx.x < nu) {
            const int u = u0 + threadIdx.x;
            int64_t st[Q::R];
            float v[Q::R][Q::L], a[Q::R], b[Q::R];
            Q::starts(u, st);
            Q::load(w, row, u, v, a, b);
#pragma unroll
            for (int r = 0; r < Q::R; r++)
#pragma unroll
                for (int c = 0; c < Q::L; c += 8) {
                    uint32_t p[4];
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        __half2 h = __floats2half2_rn(fmaf(a[r], v[r][c + 2 * k], b[r]), fmaf(a[r], v[r][c + 2 * k + 1], b[r]));
                        p[k] = *(uint32_t *)&h;
                    }
                    *(uint4 *)(sm + (st[r] - base) + c) = make_uint4(p[0], p[1], p[2], p[3]);
                }
        }
        __syncthreads();
        __half *o = out + row * w.ne0 + base;
        for (int k = threadIdx.x; k < nu * UE / 8; k += DQH_UNITS) {
            const uint4 q = ((const uint4 *)sm)[k];
            cu_st16(o + 8 * k, q.x, q.y, q.z, q.w);
        }
        __syncthreads();
    }
}

struct dqh_launch {
    cu_impl *c;
    const cu_wview *w;
    __half *out;
    template <class Q> void run() {
        if constexpr (Q::L % 8 != 0) {
            LL_ASSERT(!"k_dequant_h: a decoder without whole 16-byte runs");
        } else {
            const int64_t units = w->ne0 / (Q::R * Q::L);
            const unsigned gx = (unsigned)((units + DQH_UNITS - 1) / DQH_UNITS),
                           gy = (unsigned)(w->ne1 < 65535 ? w->ne1 : 65535);
            cu_launch(c, k_dequant_h<Q>, dim3(gx, gy), dim3(DQH_UNITS), 0, *w, out);
        }
    }
};

template <class T> __global__ void k_to_half(const float *__restrict__ x, T *__restrict__ y, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = cu_from_float<T>(x[i]);
}

bool cu_matmul_supports(uint32_t type) {
    switch (type) {
    case LL_TYPE_F32: case LL_TYPE_F16: case LL_TYPE_BF16: case LL_TYPE_Q8_0: case LL_TYPE_Q4_0:
    case LL_TYPE_Q4_K: case LL_TYPE_Q5_K: case LL_TYPE_Q6_K: return true;
    default: return false;
    }
}

void cu_dequant_rows(cu_impl *c, const cu_wview *w, const int32_t *ids, int n, float *y) {
    dq_launch l = {c, w, ids, n, y};
    LL_ASSERT(cu_dispatch(*w, l));
}

static void matvec(cu_impl *c, const cu_wview *w, const float *x, float *y, bool acc) {
    // float weights: 2 rows per block measured faster than 4 or 8 (bench/NOTES.md), unless overridden
    mv_launch l = {c, w, NULL, x, y, c->mv_rows, acc};
    LL_ASSERT(cu_dispatch(*w, l));
}

static unsigned grid_for(cu_impl *c, int64_t n) {
    int64_t b = (n + 255) / 256, cap = (int64_t)c->n_sm * 16;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

// C (ne1 x n_tok, column-major = y row-major) = A^T B: A = W column-major (ne0 x ne1), B = x (ne0 x n_tok).
// y is f32 (ty CUDA_R_32F; acc: y += instead of =) or f16 (CUDA_R_16F: f32 sums rounded once at the store).
static void gemm(cu_impl *c, const cu_wview *w, const float *x, void *y, cudaDataType ty, int n_tok, bool acc) {
    const int m = (int)w->ne1, k = (int)w->ne0;
    const float one = 1.0f, zero = 0.0f, *beta = acc ? &one : &zero;
    const void *A, *B;
    cudaDataType ta;
    if (w->type == LL_TYPE_F32) {
        A = w->q, B = x, ta = CUDA_R_32F;
    } else {
        bool bf = w->type == LL_TYPE_BF16;
        size_t nx = (size_t)n_tok * k;
        LL_ASSERT(nx * 2 <= c->xh_bytes);
        if (!(c->xh_src == x && c->xh_n == nx && c->xh_bf == bf)) { // q/k/v and gate/up share their input
            unsigned g = grid_for(c, (int64_t)nx);
            if (bf) k_to_half<__nv_bfloat16><<<g, 256, 0, c->stream>>>(x, (__nv_bfloat16 *)c->xh, (int64_t)nx);
            else k_to_half<__half><<<g, 256, 0, c->stream>>>(x, (__half *)c->xh, (int64_t)nx);
            CU_LAUNCHED();
            c->xh_src = x, c->xh_n = nx, c->xh_bf = bf;
        }
        B = c->xh;
        ta = bf ? CUDA_R_16BF : CUDA_R_16F;
        A = w->q;
        if (w->type != LL_TYPE_F16 && !bf) { // quantized: the whole matrix to f16 first
            LL_ASSERT((size_t)w->ne0 * (size_t)w->ne1 * 2 <= c->deq_bytes);
            dqh_launch l = {c, w, (__half *)c->deq};
            LL_ASSERT(cu_dispatch(*w, l));
            A = c->deq;
        }
    }
    cublasStatus_t s = c->blas.gemm(c->blas.h, CUBLAS_OP_T, CUBLAS_OP_N, m, n_tok, k, &one, A, ta, k, B, ta, k, beta,
                                    y, ty, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        char msg[64];
        snprintf(msg, sizeof msg, "cuBLAS status %d", (int)s);
        cu_die(__FILE__, __LINE__, "cublasGemmEx", msg);
    }
}

static bool is_quant(uint32_t type) { return type != LL_TYPE_F32 && type != LL_TYPE_F16 && type != LL_TYPE_BF16; }
// cuBLAS for batches: from 2 tokens for float weights, CU_GEMM_MIN_TOK_QUANT for quantized ones (the int8 matvec
// below that)
static bool use_gemm(const cu_impl *c, const cu_wview *w, int n_tok) {
    return c->blas.gemm && n_tok >= (is_quant(w->type) ? c->gemm_min_q : 2);
}

void cu_matmul(cu_impl *c, const cu_wview *w, const float *x, float *y, int n_tok, bool acc) {
    // the int8 copy of the last input stays valid unless this output overwrites that input
    const char *ys = (const char *)y, *ye = ys + (size_t)n_tok * w->ne1 * sizeof(float);
    if (c->x8_src) {
        const char *xs = (const char *)c->x8_src, *xe = xs + (size_t)c->x8_ntok * c->x8_ne0 * sizeof(float);
        if (ys < xe && xs < ye) c->x8_src = NULL;
    }
    if (c->xh_src) {
        const char *xs = (const char *)c->xh_src, *xe = xs + c->xh_n * sizeof(float);
        if (ys < xe && xs < ye) c->xh_src = NULL;
    }
    const bool blas = use_gemm(c, w, n_tok);
    if (blas || !cu_mmvq_supports(w->type)) // the int8 matvec may read a pending norm's y as is
        cu_norm_guard(c, x, (size_t)n_tok * (size_t)w->ne0 * sizeof(float));
    if (blas) {
        gemm(c, w, x, y, CUDA_R_32F, n_tok, acc);
        return;
    }
    if (cu_mmvq_supports(w->type)) {
        cu_mmvq(c, w, x, y, n_tok, acc);
        return;
    }
    for (int t = 0; t < n_tok; t++) matvec(c, w, x + (size_t)t * w->ne0, y + (size_t)t * w->ne1, acc);
}

void cu_matmul_swiglu(cu_impl *c, const cu_wview *wg, const cu_wview *wu, const float *x, float *g, float *u,
                      int n_tok) {
    const bool same = wg->type == wu->type && wg->ne0 == wu->ne0 && wg->ne1 == wu->ne1;
    if (same && n_tok < c->gemm_min_q && cu_mmvq_supports(wg->type)) {
        cu_mmvq_swiglu(c, wg, wu, x, g, n_tok);
        return;
    }
    cu_norm_guard(c, x, (size_t)n_tok * (size_t)wg->ne0 * sizeof(float));
    if (same && !is_quant(wg->type) && n_tok < 2) { // the float matvec, both matrices in one launch
        mv_launch l = {c, wg, wu, x, g, c->mv_rows, false};
        LL_ASSERT(cu_dispatch(*wg, l));
        c->x8_src = c->xh_src = NULL;
        return;
    }
    if (same && use_gemm(c, wg, n_tok) && wg->type != LL_TYPE_F32 && wg->type != LL_TYPE_BF16) {
        // Batches: both GEMMs store f16 (u's bytes hold the two), SwiGLU reads them: half the bytes of f32
        // outputs written and read again (llama.cpp's cuBLAS path stores f16 too). Not for F32/BF16 weights,
        // whose models may rely on the wider range.
        const size_t n = (size_t)n_tok * (size_t)wg->ne1;
        __half *gh = (__half *)u, *uh = gh + n;
        c->x8_src = NULL; // u's bytes change
        gemm(c, wg, x, gh, CUDA_R_16F, n_tok, false);
        gemm(c, wu, x, uh, CUDA_R_16F, n_tok, false);
        cu_swiglu_h(c, g, gh, uh, (int)wg->ne1, n_tok); // leaves g's f16 copy in xh for the down GEMM
        return;
    }
    cu_matmul(c, wg, x, g, n_tok, false);
    cu_matmul(c, wu, x, u, n_tok, false);
    cu_swiglu(c, g, u, (int)wg->ne1, n_tok); // leaves g's f16 copy in xh for the down GEMM
}
