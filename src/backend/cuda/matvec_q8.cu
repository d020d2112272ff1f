// matvec_q8.cu — decode (a few tokens) for quantized weights: each x row quantized once to int8 (cu_x8), then
// per weight type a block of MQ_THREADS threads computes R rows (Q::ROWS for o and down, 4 for q/k/v and
// gate/up): thread i takes units i, i + MQ_THREADS, ... of every row (16-byte loads of consecutive units:
// coalesced; the first ones issued before the kernel waits for x), dp4a dots, one shuffle + shared-memory sum.
// Gate/up + SwiGLU with rows % 32 == 0 takes 32 rows a block instead and quantizes its output for the down matvec
// (k_mmvq_swiglu_q8); so do o and down with the next RMSNorm (k_mmvq_add_norm).
#include "backend/cuda/cuda_q8.h"

#define MQ_THREADS 128

// One warp per block of 32 values of x (n_tok rows of ne0, contiguous): the same arithmetic as
// cu_x8_quantize_block (host), so a host emulation reproduces the codes exactly.
__global__ void k_quant_x8(const float *__restrict__ x, cu_x8 o, int64_t n_blocks) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (b >= n_blocks) return; // warp-uniform
    cu_x8_store_warp(x[b * 32 + lane], o, b, lane);
}

void cu_quant_x8(cu_impl *c, const float *x, int n_tok, int64_t ne0) {
    LL_ASSERT(ne0 % 32 == 0 && ne0 <= c->x8.ne0 && n_tok <= CU_X8_ROWS);
    const int64_t n_blocks = (int64_t)n_tok * (ne0 / 32);
    const int threads = 256;
    cu_x8 o = c->x8;
    o.ne0 = ne0; // rows packed at this length
    cu_launch(c, k_quant_x8, dim3((unsigned)((n_blocks * 32 + threads - 1) / threads)), dim3(threads), 0, x, o,
              n_blocks);
}

// y (n_tok = gridDim.y, ne1) = rows [R*blockIdx.x, +R) of w against the quantized rows of x. SW: the same rows
// of w2 too (same shape and type), and y = silu(x w^T) * (x w2^T) (gate and up with SwiGLU, one launch). ROPE:
// the rows rotated and cached (cu_rope_store, matrix `which` of q, k, v; R even). ni.part: x is a pending norm's
// output (cu_norm_in): the sums are scaled by its 1/rms. The body: block `blk` of the row blocks of w (and w2).
template <class Q, int R, bool SW, bool PRE, bool ROPE = false>
__device__ __forceinline__ void mmvq_block(const cu_wview &w, const cu_wview &w2, const cu_x8 &x,
                                           float *__restrict__ y, bool accumulate, int64_t blk, const cu_norm_in &ni,
                                           const cu_rope_epi &re = cu_rope_epi{}, int which = 0) {
    static_assert(!ROPE || (R % 2 == 0 && !SW), "RoPE pairs within a block");
    constexpr int NA = SW ? 2 * R : R;
    __shared__ float red[MQ_THREADS / 32][NA];
    __shared__ float inv_s;
    const int tok = blockIdx.y;
    const int64_t row0 = blk * R;
    const int n_units = (int)(w.ne0 / Q::UNIT);
    // PRE: the first units' weights are loaded before the wait: constants, on their way while the kernel that
    // writes x ends (more registers). Rows past the end are computed (on the last row), never stored.
    typename Q::W wu[NA];
    int u = threadIdx.x;
    if (PRE && u < n_units) {
#pragma unroll
        for (int k = 0; k < R; k++) {
            const int64_t r = min(row0 + k, w.ne1 - 1);
            wu[k] = Q::load(w, r, u);
            if (SW) wu[R + k] = Q::load(w2, r, u);
        }
    }
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    if (ni.part && threadIdx.x < 32) {
        const float v = cu_norm_inv_warp(ni, tok, threadIdx.x);
        if (threadIdx.x == 0) inv_s = v;
    }
    const int8_t *xq = x.q + tok * x.ne0;
    const float *xd = x.d + tok * (x.ne0 / 32), *xs = x.s + tok * (x.ne0 / 16);
    float acc[NA];
#pragma unroll
    for (int k = 0; k < NA; k++) acc[k] = 0.0f;
    for (; u < n_units; u += MQ_THREADS) {
        if (!PRE || u != (int)threadIdx.x) {
#pragma unroll
            for (int k = 0; k < R; k++) {
                const int64_t r = min(row0 + k, w.ne1 - 1);
                wu[k] = Q::load(w, r, u);
                if (SW) wu[R + k] = Q::load(w2, r, u);
            }
        }
#pragma unroll
        for (int k = 0; k < NA; k++) acc[k] += Q::dotw(wu[k], u, xq, xd, xs);
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
    if (threadIdx.x < R && row0 + threadIdx.x < w.ne1) {
        float s = 0.0f, s2 = 0.0f, sp = 0.0f;
#pragma unroll
        for (int wi = 0; wi < MQ_THREADS / 32; wi++) {
            s += red[wi][threadIdx.x];
            if (SW) s2 += red[wi][R + threadIdx.x];
            if (ROPE) sp += red[wi][threadIdx.x ^ 1]; // the partner row's sum, in the same order as its own
        }
        if (ni.part) s *= inv_s, s2 *= inv_s, sp *= inv_s;
        float *o = y + (int64_t)tok * w.ne1 + row0 + threadIdx.x;
        if (SW) *o = s / (1.0f + expf(-s)) * s2; // as k_swiglu
        else if (ROPE) cu_rope_store(re, which, tok, row0 + threadIdx.x, s, sp, o);
        else *o = accumulate ? *o + s : s;
    }
}

template <class Q, int R, bool SW, bool PRE>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq(cu_wview w, cu_wview w2, cu_x8 x, float *__restrict__ y,
                                                     bool accumulate, cu_norm_in ni) {
    mmvq_block<Q, R, SW, PRE>(w, w2, x, y, accumulate, blockIdx.x, ni);
}

// Gate/up + SwiGLU whose block takes 32 rows, so that it also quantizes its 32 outputs for the down matvec: one
// block of yq (the other x8 buffer: x's codes are being read), as k_quant_x8 would, with the same arithmetic
// (cu_x8_store_warp); one launch less per layer. Each of the SQ_THREADS / 32 warps takes SQ_WR rows of w and w2,
// its lanes units lane, lane + 32, ... of each; ne1 % 32 == 0.
#define SQ_THREADS 256
#define SQ_WR (32 / (SQ_THREADS / 32))
template <class Q, bool PRE>
__global__ void __launch_bounds__(SQ_THREADS) k_mmvq_swiglu_q8(cu_wview w, cu_wview w2, cu_x8 x,
                                                               float *__restrict__ y, cu_x8 yq, cu_norm_in ni) {
    __shared__ float gs[32], us[32], inv_s;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tok = blockIdx.y;
    const int64_t row0 = (int64_t)blockIdx.x * 32 + warp * SQ_WR;
    const int n_units = (int)(w.ne0 / Q::UNIT);
    typename Q::W wu[2 * SQ_WR];
    int u = lane;
    if (PRE && u < n_units) {
#pragma unroll
        for (int k = 0; k < SQ_WR; k++) {
            wu[k] = Q::load(w, row0 + k, u);
            wu[SQ_WR + k] = Q::load(w2, row0 + k, u);
        }
    }
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    if (ni.part && warp == 0) {
        const float v = cu_norm_inv_warp(ni, tok, lane);
        if (lane == 0) inv_s = v;
    }
    const int8_t *xq = x.q + tok * x.ne0;
    const float *xd = x.d + tok * (x.ne0 / 32), *xs = x.s + tok * (x.ne0 / 16);
    float acc[2 * SQ_WR];
#pragma unroll
    for (int k = 0; k < 2 * SQ_WR; k++) acc[k] = 0.0f;
    for (; u < n_units; u += 32) {
        if (!PRE || u != lane) {
#pragma unroll
            for (int k = 0; k < SQ_WR; k++) {
                wu[k] = Q::load(w, row0 + k, u);
                wu[SQ_WR + k] = Q::load(w2, row0 + k, u);
            }
        }
#pragma unroll
        for (int k = 0; k < 2 * SQ_WR; k++) acc[k] += Q::dotw(wu[k], u, xq, xd, xs);
    }
    float g = 0.0f, up = 0.0f;
#pragma unroll
    for (int k = 0; k < SQ_WR; k++) {
        float s = acc[k], s2 = acc[SQ_WR + k];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            s += __shfl_xor_sync(0xffffffffu, s, o);
            s2 += __shfl_xor_sync(0xffffffffu, s2, o);
        }
        if (lane == k) g = s, up = s2;
    }
    if (lane < SQ_WR) gs[warp * SQ_WR + lane] = g, us[warp * SQ_WR + lane] = up;
    __syncthreads();
    if (warp == 0) {
        float gv = gs[lane], uv = us[lane];
        if (ni.part) gv *= inv_s, uv *= inv_s;
        const float v = gv / (1.0f + expf(-gv)) * uv; // as k_swiglu
        y[(int64_t)tok * w.ne1 + (int64_t)blockIdx.x * 32 + lane] = v;
        cu_x8_store_warp(v, yq, (int64_t)tok * (w.ne1 / 32) + blockIdx.x, lane);
    }
}

// The residual matvec (o, down) with the next RMSNorm folded in: a block takes 32 rows (ne1 % 32 == 0), so that it
// holds whole blocks of 32 of the output. Its NW warps form NW / KS groups of WR = 32 KS / NW rows; the KS warps of
// a group each take every KS-th run of 32 units of those rows, each lane U units per row and pass, so that x's codes
// serve WR rows (one row per warp re-read them per row: slower after down, bench/NOTES.md, session 14). Warp 0 then
// adds the block's 32 sums to res, stores the int8 codes of res * g in yq (cu_x8_store_warp: the next reader's
// input up to 1/rms) and the 32 values' sum of squares in part: the norm's launch (rmsnorm) is gone, its readers
// scale by 1/rms (cu_norm_in). No block waits for another (session 12's version counted finished blocks per group
// with atomics and was slower). ne1 / 32 blocks, one per SM on a 4096-row matrix: hence up to 1024 threads.
// Shapes per type: an_default below.
template <class Q, int NW, int KS> struct an_shape {
    static constexpr int WR = 32 * KS / NW; // rows per warp
    // units per lane and row per pass: up to 8 loads, at most ~128 bytes of weights in registers (more spilled
    // for Q5_K and Q6_K at 512 and 1024 threads)
    static constexpr int B = (int)sizeof(typename Q::W), UB = 128 / (WR * B);
    static constexpr int U = UB < 1 ? 1 : UB > 8 / WR ? 8 / WR : UB > 4 ? 4 : UB;
};
template <class Q, bool PRE, int NW, int KS>
__global__ void __launch_bounds__(NW * 32) k_mmvq_add_norm(cu_wview w, cu_x8 x, float *__restrict__ res,
                                                           const float *__restrict__ g, cu_x8 yq,
                                                           float *__restrict__ part) {
    constexpr int WR = an_shape<Q, NW, KS>::WR, U = an_shape<Q, NW, KS>::U, RG = NW / KS;
    static_assert(WR * RG == 32 && WR >= 1, "32 rows a block");
    __shared__ float out[KS][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tok = blockIdx.y, rg = warp % RG, ks = warp / RG;
    const int64_t row0 = (int64_t)blockIdx.x * 32 + rg * WR, rl = (int64_t)blockIdx.x * 32 + lane;
    const int n_units = (int)(w.ne0 / Q::UNIT);
    const float gl = warp == 0 ? g[rl] : 0.0f; // a weight: read before the wait
    typename Q::W wu[U][WR];
    const int u0 = ks * 32 + lane;
    int u = u0;
    if (PRE) {
#pragma unroll
        for (int j = 0; j < U; j++)
            if (u + 32 * KS * j < n_units)
#pragma unroll
                for (int k = 0; k < WR; k++) wu[j][k] = Q::load(w, row0 + k, u + 32 * KS * j);
    }
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int8_t *xq = x.q + tok * x.ne0;
    const float *xd = x.d + tok * (x.ne0 / 32), *xs = x.s + tok * (x.ne0 / 16);
    float acc[WR];
#pragma unroll
    for (int k = 0; k < WR; k++) acc[k] = 0.0f;
    for (; u < n_units; u += 32 * KS * U) {
        if (!PRE || u != u0) {
#pragma unroll
            for (int j = 0; j < U; j++)
                if (u + 32 * KS * j < n_units)
#pragma unroll
                    for (int k = 0; k < WR; k++) wu[j][k] = Q::load(w, row0 + k, u + 32 * KS * j);
        }
#pragma unroll
        for (int j = 0; j < U; j++)
            if (u + 32 * KS * j < n_units)
#pragma unroll
                for (int k = 0; k < WR; k++) acc[k] += Q::dotw(wu[j][k], u + 32 * KS * j, xq, xd, xs);
    }
    float mine = 0.0f;
#pragma unroll
    for (int k = 0; k < WR; k++) {
        float s = acc[k];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == k) mine = s;
    }
    if (lane < WR) out[ks][rg * WR + lane] = mine;
    __syncthreads();
    if (warp == 0) {
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < KS; k++) sum += out[k][lane];
        float *xr = res + (int64_t)tok * w.ne1 + rl;
        const float v = *xr + sum; // as the matvec's accumulate
        *xr = v;
        const int64_t b = (int64_t)tok * (w.ne1 / 32) + blockIdx.x;
        cu_x8_store_warp(v * gl, yq, b, lane);
        float ss = v * v;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) part[b] = ss;
    }
}

// Three matrices on the same x (q, k, v) in one launch: the first nb0 blocks are w0's, the next nb1 w1's, the
// rest w2's (same row length; q and k of type Q, v of type QV: llama.cpp's Q4_K_M and Q5_K_M mixes keep attn_v
// in Q6_K in about half the layers). ROPE: then RoPE of q and k and the cache store as well (re).
// R rows per block (MQ3_R: op_qkv_rope_store needs R to divide head_dim).
template <class Q, class QV, int R, bool PRE, bool ROPE>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq3(cu_wview w0, cu_wview w1, cu_wview w2, int nb0, int nb1,
                                                      cu_x8 x, float *__restrict__ y0, float *__restrict__ y1,
                                                      float *__restrict__ y2, cu_rope_epi re, cu_norm_in ni) {
    const int b = blockIdx.x;
    if (b < nb0) mmvq_block<Q, R, false, PRE, ROPE>(w0, w0, x, y0, false, b, ni, re, 0);
    else if (b < nb0 + nb1) mmvq_block<Q, R, false, PRE, ROPE>(w1, w1, x, y1, false, b - nb0, ni, re, 1);
    else mmvq_block<QV, R, false, PRE, ROPE>(w2, w2, x, y2, false, b - nb0 - nb1, ni, re, 2);
}

// 4 rows for every type: 8 for Q4_0/Q4_K (as their single matvecs take) measured slower on q/k/v (Q4_K 7.3 -> 7.9
// us, Q4_0 6.9 -> 7.2: half as many blocks; bench/NOTES.md, session 13).
#define MQ3_R 4

// The v types k_mmvq3 takes besides q's own: Q6_K with the K-quants of 4 and 5 bits.
template <class Q> struct mq3_mixed {
    static constexpr bool q6k = false;
};
template <bool HIGH> struct mq3_mixed<cu_q8_k45<HIGH>> {
    static constexpr bool q6k = true;
};

static bool mq3_types_ok(uint32_t t, uint32_t tv) {
    return t == tv || ((t == LL_TYPE_Q4_K || t == LL_TYPE_Q5_K) && tv == LL_TYPE_Q6_K);
}

struct mq3_launch {
    cu_impl *c;
    const cu_wview *const *w;
    float *const *y;
    cu_x8 x;
    int n_tok;
    const cu_rope_epi *re; // NULL: no RoPE
    cu_norm_in ni;
    template <class Q, class QV, bool PRE, bool ROPE> void go() {
        constexpr int R = MQ3_R;
        const int nb0 = (int)((w[0]->ne1 + R - 1) / R), nb1 = (int)((w[1]->ne1 + R - 1) / R),
                  nb2 = (int)((w[2]->ne1 + R - 1) / R);
        dim3 grid((unsigned)(nb0 + nb1 + nb2), (unsigned)n_tok);
        cu_launch(c, k_mmvq3<Q, QV, R, PRE, ROPE>, grid, dim3(MQ_THREADS), 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0],
                  y[1], y[2], re ? *re : cu_rope_epi{}, ni);
    }
    template <class Q, class QV> void run2() {
        if (c->mv_preload && re) go<Q, QV, true, true>();
        else if (c->mv_preload) go<Q, QV, true, false>();
        else if (re) go<Q, QV, false, true>();
        else go<Q, QV, false, false>();
    }
    template <class Q> void run() {
        if (w[2]->type == w[0]->type) return run2<Q, Q>();
        if constexpr (mq3_mixed<Q>::q6k) {
            LL_ASSERT(w[2]->type == LL_TYPE_Q6_K);
            run2<Q, cu_q8_q6_K>();
        } else {
            LL_ASSERT(!"k_mmvq3: no kernel for these types (cu_mmvq3_ok)");
        }
    }
};

struct mq_launch {
    cu_impl *c;
    const cu_wview *w, *w2; // w2: the up matrix of a fused gate/up/SwiGLU, else NULL
    cu_x8 x;
    float *y;
    int n_tok;
    bool acc;
    cu_x8 *yq; // set: gate/up + SwiGLU quantizes its output there too (ne1 % 32 == 0)
    cu_norm_in ni;
    template <class Q, bool PRE, int R> void go() {
        dim3 grid((unsigned)((w->ne1 + R - 1) / R), (unsigned)n_tok);
        if (w2) cu_launch(c, k_mmvq<Q, R, true, PRE>, grid, dim3(MQ_THREADS), 0, *w, *w2, x, y, false, ni);
        else cu_launch(c, k_mmvq<Q, R, false, PRE>, grid, dim3(MQ_THREADS), 0, *w, *w, x, y, acc, ni);
    }
    template <class Q, bool PRE> void rows() {
        if (yq) { // gate/up + SwiGLU in 32-row blocks
            cu_x8 o = *yq;
            o.ne0 = w->ne1;
            cu_launch(c, k_mmvq_swiglu_q8<Q, PRE>, dim3((unsigned)(w->ne1 / 32), (unsigned)n_tok), dim3(SQ_THREADS),
                      0, *w, *w2, x, y, o, ni);
            return;
        }
        // gate/up: 4 rows a block (2 and 8 measured slower, bench/NOTES.md, second round); the single matvec:
        // Q::ROWS, or c->mvq_rows (a knob)
        if (w2 || c->mvq_rows == 4) go<Q, PRE, 4>();
        else if (c->mvq_rows == 2) go<Q, PRE, 2>();
        else if (c->mvq_rows == 8) go<Q, PRE, 8>();
        else if (w->ne0 > 4096) go<Q, PRE, Q::ROWS_LONG>();
        else go<Q, PRE, Q::ROWS>();
    }
    template <class Q> void run() {
        if (c->mv_preload) rows<Q, true>();
        else rows<Q, false>();
    }
};

bool cu_mmvq_supports(uint32_t type) {
    return type == LL_TYPE_Q8_0 || type == LL_TYPE_Q4_0 || type == LL_TYPE_Q4_K || type == LL_TYPE_Q5_K ||
           type == LL_TYPE_Q6_K;
}

// A kernel wrote the int8 copy of y (n_tok rows of ne0) into x8b: it becomes the current x8.
static void x8_take_b(cu_impl *c, const float *y, int n_tok, int64_t ne0) {
    const cu_x8 t = c->x8;
    c->x8 = c->x8b, c->x8b = t;
    c->x8_src = y, c->x8_ntok = n_tok, c->x8_ne0 = ne0;
}

// y = x W^T (+= with acc), or with w2 set: y = silu(x W^T) * (x W2^T).
static void mmvq(cu_impl *c, const cu_wview *w, const cu_wview *w2, const float *x, float *y, int n_tok, bool acc) {
    const cu_norm_in ni = cu_norm_take(c, x, n_tok, w->ne0); // before the reuse test: settling forgets x8
    const bool reuse = n_tok <= CU_X8_ROWS && c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == w->ne0;
    const bool yq = w2 && c->swiglu_q8 && n_tok <= CU_X8_ROWS && w->ne1 % 32 == 0 && w->ne1 <= c->x8b.ne0;
    for (int t0 = 0; t0 < n_tok; t0 += CU_X8_ROWS) {
        int nt = n_tok - t0 < CU_X8_ROWS ? n_tok - t0 : CU_X8_ROWS;
        if (!reuse) cu_quant_x8(c, x + (size_t)t0 * w->ne0, nt, w->ne0);
        cu_x8 xv = c->x8;
        xv.ne0 = w->ne0;
        mq_launch l = {c, w, w2, xv, y + (size_t)t0 * w->ne1, nt, acc, yq ? &c->x8b : NULL, ni};
        LL_ASSERT(cu_dispatch_q8(*w, l));
    }
    if (yq) return x8_take_b(c, y, n_tok, w->ne1);
    // x8 now holds x when it fit in one pass (and y, written above, does not overlap x: checked by the caller)
    c->x8_src = n_tok <= CU_X8_ROWS ? x : NULL;
    c->x8_ntok = n_tok;
    c->x8_ne0 = w->ne0;
}

void cu_mmvq(cu_impl *c, const cu_wview *w, const float *x, float *y, int n_tok, bool acc) {
    mmvq(c, w, NULL, x, y, n_tok, acc);
}

void cu_mmvq_swiglu(cu_impl *c, const cu_wview *wg, const cu_wview *wu, const float *x, float *g, int n_tok) {
    LL_ASSERT(wg->type == wu->type && wg->ne0 == wu->ne0 && wg->ne1 == wu->ne1);
    mmvq(c, wg, wu, x, g, n_tok, false);
}

bool cu_mmvq3_ok(const cu_impl *c, const cu_wview *const w[3], int n_tok) {
    return n_tok < c->gemm_min_q && cu_mmvq_supports(w[0]->type) && w[1]->type == w[0]->type &&
           mq3_types_ok(w[0]->type, w[2]->type) && w[1]->ne0 == w[0]->ne0 && w[2]->ne0 == w[0]->ne0 &&
           (w[2]->type == w[0]->type || c->mv_mixed);
}

void cu_mmvq3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], int n_tok,
              const cu_rope_epi *re) {
    LL_ASSERT(cu_mmvq3_ok(c, w, n_tok));
    LL_ASSERT(!re || (re->hd % MQ3_R == 0 && w[0]->ne1 % re->hd == 0 && w[1]->ne1 % re->hd == 0));
    const int64_t ne0 = w[0]->ne0;
    const cu_norm_in ni = cu_norm_take(c, x, n_tok, ne0);
    if (n_tok > CU_X8_ROWS) { // passes of CU_X8_ROWS tokens (a pending norm never has this many: ni is empty)
        LL_ASSERT(!ni.part);
        for (int t0 = 0; t0 < n_tok; t0 += CU_X8_ROWS) {
            const int nt = n_tok - t0 < CU_X8_ROWS ? n_tok - t0 : CU_X8_ROWS;
            cu_quant_x8(c, x + (size_t)t0 * ne0, nt, ne0);
            cu_x8 xv = c->x8;
            xv.ne0 = ne0;
            float *const yp[3] = {y[0] + (size_t)t0 * w[0]->ne1, y[1] + (size_t)t0 * w[1]->ne1,
                                  y[2] + (size_t)t0 * w[2]->ne1};
            cu_rope_epi rp;
            if (re) rp = *re, rp.tok0 = re->tok0 + t0;
            mq3_launch l = {c, w, yp, xv, nt, re ? &rp : NULL, ni};
            LL_ASSERT(cu_dispatch_q8(*w[0], l));
        }
        c->x8_src = NULL;
        return;
    }
    if (!(c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == ne0)) cu_quant_x8(c, x, n_tok, ne0);
    cu_x8 xv = c->x8;
    xv.ne0 = ne0;
    mq3_launch l = {c, w, y, xv, n_tok, re, ni};
    LL_ASSERT(cu_dispatch_q8(*w[0], l));
    c->x8_src = x, c->x8_ntok = n_tok, c->x8_ne0 = ne0;
}

// Block shape per type, as measured (session 14, call 14, tg128 with the norm after o and down): Q4_0 32 warps in
// groups of 4 rows x 4 slices (500.1 t/s; 1 row per warp: 467-468); the K-quants 16 warps, 4 rows x 2 slices
// (Q4_K_M 450.0; 32 warps x 4 slices spills: 377.1). Q8_0 (session 15, call 5): 32 warps, 2 rows x 2 slices,
// both norms (320.2; 16 x 2: 319.3; 32 x 4: 310.6; before, 1 row per warp after o only: 313.7-314.4).
template <class Q> struct an_default {
    static constexpr int NW = 16, KS = 2;
};
template <> struct an_default<cu_q8_q4_0> {
    static constexpr int NW = 32, KS = 4;
};
template <> struct an_default<cu_q8_q8_0> {
    static constexpr int NW = 32, KS = 2;
};

struct an_launch {
    cu_impl *c;
    const cu_wview *w;
    cu_x8 x, yq;
    float *res;
    const float *g;
    int n_tok;
    template <class Q, int NW, int KS> void go() {
        dim3 grid((unsigned)(w->ne1 / 32), (unsigned)n_tok);
        if (c->mv_preload)
            cu_launch(c, k_mmvq_add_norm<Q, true, NW, KS>, grid, dim3(NW * 32), 0, *w, x, res, g, yq, c->norm_part);
        else cu_launch(c, k_mmvq_add_norm<Q, false, NW, KS>, grid, dim3(NW * 32), 0, *w, x, res, g, yq,
                       c->norm_part);
    }
    template <class Q> void run() {
        const int nw = c->an_warps ? c->an_warps : an_default<Q>::NW, ks = c->an_ks ? c->an_ks : an_default<Q>::KS;
        if (nw == 16 && ks == 2) go<Q, 16, 2>();
        else if (nw == 16) go<Q, 16, 1>();
        else if (ks == 4) go<Q, 32, 4>();
        else if (ks == 2) go<Q, 32, 2>();
        else go<Q, 32, 1>();
    }
};

bool cu_mmvq_add_norm(cu_impl *c, const cu_wview *w, const float *in, float *x, const float *g, float *y, int n_tok,
                      float eps) {
    if (!c->fuse_norm || !c->norm_part || n_tok > CU_X8_ROWS || !cu_mmvq_supports(w->type) || w->ne1 % 32 != 0 ||
        w->ne1 > c->x8b.ne0 || w->ne0 > c->x8.ne0)
        return false;
    // which residual matvecs take the norm (a knob; by default both): o's rows are no longer than its output,
    // down's are
    if ((c->an_only == 1 && w->ne0 > w->ne1) || (c->an_only == 2 && w->ne0 <= w->ne1)) return false;
    // in's codes: as the plain matvec takes them (in is never a pending norm's y: the caller settled any)
    if (!(c->x8_src == in && c->x8_ntok == n_tok && c->x8_ne0 == w->ne0)) cu_quant_x8(c, in, n_tok, w->ne0);
    cu_x8 xv = c->x8, o = c->x8b;
    xv.ne0 = w->ne0;
    o.ne0 = w->ne1;
    an_launch l = {c, w, xv, o, x, g, n_tok};
    LL_ASSERT(cu_dispatch_q8(*w, l));
    x8_take_b(c, y, n_tok, w->ne1); // the codes of x * g, standing for y
    c->xh_src = NULL;
    c->pend.on = true;
    c->pend.y = y, c->pend.x = x, c->pend.g = g;
    c->pend.n = (int)w->ne1, c->pend.n_tok = n_tok, c->pend.eps = eps;
    return true;
}
