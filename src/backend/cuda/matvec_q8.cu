// matvec_q8.cu — decode (a few tokens) for quantized weights: each x row quantized once to int8 (cu_x8), then
// per weight type a block of MQ_THREADS threads computes R = 4 rows: thread i takes units i, i + MQ_THREADS, ...
// of every row (16-byte loads of consecutive units: coalesced; the first ones issued before the kernel waits for
// x), dp4a dots, one shuffle + shared-memory sum.
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
    const float v = x[b * 32 + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, s));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int c = (int)rintf(v * id);
    o.q[b * 32 + lane] = (int8_t)c;
    int sum = c;
#pragma unroll
    for (int s = 8; s > 0; s >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, s); // within each half-warp
    const float d = amax / 127.0f;
    if (lane == 0) o.d[b] = d;
    if ((lane & 15) == 0) o.s[2 * b + (lane >> 4)] = d * (float)sum;
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
// of w2 too (same shape and type), and y = silu(x w^T) * (x w2^T) (gate and up with SwiGLU, one launch).
// The body: block `blk` of the row blocks of w (and w2).
template <class Q, int R, bool SW, bool PRE>
__device__ __forceinline__ void mmvq_block(const cu_wview &w, const cu_wview &w2, const cu_x8 &x,
                                           float *__restrict__ y, bool accumulate, int64_t blk) {
    constexpr int NA = SW ? 2 * R : R;
    __shared__ float red[MQ_THREADS / 32][NA];
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
        float s = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int wi = 0; wi < MQ_THREADS / 32; wi++) {
            s += red[wi][threadIdx.x];
            if (SW) s2 += red[wi][R + threadIdx.x];
        }
        float *o = y + (int64_t)tok * w.ne1 + row0 + threadIdx.x;
        if (SW) *o = s / (1.0f + expf(-s)) * s2; // as k_swiglu
        else *o = accumulate ? *o + s : s;
    }
}

template <class Q, int R, bool SW, bool PRE>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq(cu_wview w, cu_wview w2, cu_x8 x, float *__restrict__ y,
                                                     bool accumulate) {
    mmvq_block<Q, R, SW, PRE>(w, w2, x, y, accumulate, blockIdx.x);
}

// Three matrices on the same x (q, k, v) in one launch: the first nb0 blocks are w0's, the next nb1 w1's, the
// rest w2's (same type and row length).
template <class Q, int R, bool PRE>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq3(cu_wview w0, cu_wview w1, cu_wview w2, int nb0, int nb1,
                                                      cu_x8 x, float *__restrict__ y0, float *__restrict__ y1,
                                                      float *__restrict__ y2) {
    const int b = blockIdx.x;
    if (b < nb0) mmvq_block<Q, R, false, PRE>(w0, w0, x, y0, false, b);
    else if (b < nb0 + nb1) mmvq_block<Q, R, false, PRE>(w1, w1, x, y1, false, b - nb0);
    else mmvq_block<Q, R, false, PRE>(w2, w2, x, y2, false, b - nb0 - nb1);
}

// The streaming form (LLMLAB_CUDA_MVQ = R, rows per warp): each warp owns a run of consecutive row groups
// (R rows each, of one matrix) and walks them as one stream of iterations, lane l taking units l, l + 32, ... of
// the group's rows; the next iteration's weights are loaded before the current ones are dotted, across group
// boundaries too, so a warp always has two iterations of loads in flight. No shared memory, no block barrier:
// a group's sums are reduced by shuffles when its last iteration is done. The grid is sized to the SMs (wps
// warps per SM), so warps are long-lived and their streams continuous.
// Matrices: up to three of one type and row length (q/k/v): groups [0, ge0) are w0's, [ge0, ge1) w1's, the rest
// w2's (n_groups in all). SW: w1 is the up matrix of w0 (gate): each group is R rows of both, y0 = silu * up.
#define MS_WARPS 4
template <class Q, int R, bool SW>
__device__ __forceinline__ void ms_load(typename Q::W *dst, const cu_wview &w0, const cu_wview &w1,
                                        const cu_wview &w2, int ge0, int ge1, int g, int u) {
    if (SW) {
#pragma unroll
        for (int k = 0; k < R; k++) {
            const int64_t r = min((int64_t)g * R + k, w0.ne1 - 1);
            dst[k] = Q::load(w0, r, u);
            dst[R + k] = Q::load(w1, r, u);
        }
    } else {
        const cu_wview wv = g < ge0 ? w0 : g < ge1 ? w1 : w2;
        const int lg = g < ge0 ? g : g < ge1 ? g - ge0 : g - ge1;
#pragma unroll
        for (int k = 0; k < R; k++) dst[k] = Q::load(wv, min((int64_t)lg * R + k, wv.ne1 - 1), u);
    }
}

template <class Q, int R, bool SW>
__global__ void __launch_bounds__(MS_WARPS * 32)
    k_mmvq_s(cu_wview w0, cu_wview w1, cu_wview w2, int ge0, int ge1, int n_groups, int n_warps, cu_x8 x,
             float *__restrict__ y0, float *__restrict__ y1, float *__restrict__ y2, bool accumulate) {
    constexpr int NA = SW ? 2 * R : R;
    const int lane = threadIdx.x & 31;
    const int gw = blockIdx.x * MS_WARPS + (threadIdx.x >> 5);
    const int g_begin = (int)((int64_t)gw * n_groups / n_warps), g_end = (int)((int64_t)(gw + 1) * n_groups / n_warps);
    if (g_begin >= g_end) return; // neither reads x nor writes
    const int tok = blockIdx.y;
    const int n_units = (int)(w0.ne0 / Q::UNIT), ipr = (n_units + 31) >> 5;
    typename Q::W cur[NA], nxt[NA];
    int g = g_begin, it = 0, u = lane;
    if (u < n_units) ms_load<Q, R, SW>(cur, w0, w1, w2, ge0, ge1, g, u); // weights only: before the wait
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int8_t *xq = x.q + tok * x.ne0;
    const float *xd = x.d + tok * (x.ne0 / 32), *xs = x.s + tok * (x.ne0 / 16);
    float acc[NA];
#pragma unroll
    for (int k = 0; k < NA; k++) acc[k] = 0.0f;
    for (;;) {
        int gn = g, itn = it + 1;
        if (itn == ipr) itn = 0, gn = g + 1;
        const bool more = gn < g_end;
        const int un = lane + 32 * itn;
        if (more && un < n_units) ms_load<Q, R, SW>(nxt, w0, w1, w2, ge0, ge1, gn, un);
        if (u < n_units) {
#pragma unroll
            for (int k = 0; k < NA; k++) acc[k] += Q::dotw(cur[k], u, xq, xd, xs);
        }
        if (itn == 0) { // group g complete: sum over the warp, lanes 0..R-1 write its rows
            float mine = 0.0f, mine2 = 0.0f;
#pragma unroll
            for (int k = 0; k < NA; k++) {
                float s = acc[k];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (k < R && lane == k) mine = s;
                if (SW && k >= R && lane == k - R) mine2 = s;
                acc[k] = 0.0f;
            }
            const int m = SW ? 0 : g < ge0 ? 0 : g < ge1 ? 1 : 2;
            const int lg = m == 0 ? g : m == 1 ? g - ge0 : g - ge1;
            const int64_t ne1 = m == 0 ? w0.ne1 : m == 1 ? w1.ne1 : w2.ne1;
            float *y = m == 0 ? y0 : m == 1 ? y1 : y2;
            const int64_t row = (int64_t)lg * R + lane;
            if (lane < R && row < ne1) {
                float *o = y + (int64_t)tok * ne1 + row;
                if (SW) *o = mine / (1.0f + expf(-mine)) * mine2; // as k_swiglu
                else *o = accumulate ? *o + mine : mine;
            }
        }
        if (!more) break;
        g = gn, it = itn, u = un;
#pragma unroll
        for (int k = 0; k < NA; k++) cur[k] = nxt[k];
    }
}

// Launch of the streaming form for R rows per warp (c->mvq_rows): groups per matrix, warps sized to the SMs.
template <class Q, int R, bool SW>
static void ms_launch_r(cu_impl *c, const cu_wview *const *w, int nm, const cu_x8 &x, float *const *y, int n_tok,
                        bool acc) {
    int ge[3] = {0, 0, 0}, n = 0;
    for (int i = 0; i < 3; i++) {
        if (i < (SW ? 1 : nm)) n += (int)((w[i]->ne1 + R - 1) / R); // SW: the groups are the gate's
        ge[i] = n;
    }
    int n_warps = c->n_sm * c->mvq_wps;
    if (n_warps > n) n_warps = n;
    const int blocks = (n_warps + MS_WARPS - 1) / MS_WARPS;
    n_warps = blocks * MS_WARPS; // the spare warps of the last block get no group
    const cu_wview &w1 = nm > 1 ? *w[1] : *w[0], &w2 = nm > 2 ? *w[2] : *w[0];
    cu_launch(c, k_mmvq_s<Q, R, SW>, dim3((unsigned)blocks, (unsigned)n_tok), dim3(MS_WARPS * 32), 0, *w[0], w1, w2,
              ge[0], ge[1], n, n_warps, x, y[0], nm > 1 ? y[1] : y[0], nm > 2 ? y[2] : y[0], acc);
}

// SW: w[0] gate, w[1] up (nm = 2, one output); else nm matrices on one x.
template <class Q, bool SW>
static void ms_launch(cu_impl *c, const cu_wview *const *w, int nm, const cu_x8 &x, float *const *y, int n_tok,
                      bool acc) {
    if (c->mvq_rows == 1) ms_launch_r<Q, 1, SW>(c, w, nm, x, y, n_tok, acc);
    else if (c->mvq_rows == 4) ms_launch_r<Q, 4, SW>(c, w, nm, x, y, n_tok, acc);
    else ms_launch_r<Q, 2, SW>(c, w, nm, x, y, n_tok, acc);
}

struct mq3_launch {
    cu_impl *c;
    const cu_wview *const *w;
    float *const *y;
    cu_x8 x;
    int n_tok;
    template <class Q> void run() {
        if (cu_mmvb(c, w, 3, false, x, y, n_tok, false)) return;
        if (c->mvq_rows) {
            ms_launch<Q, false>(c, w, 3, x, y, n_tok, false);
            return;
        }
        constexpr int R = 4;
        const int nb0 = (int)((w[0]->ne1 + R - 1) / R), nb1 = (int)((w[1]->ne1 + R - 1) / R),
                  nb2 = (int)((w[2]->ne1 + R - 1) / R);
        dim3 grid((unsigned)(nb0 + nb1 + nb2), (unsigned)n_tok);
        if (c->mv_preload)
            cu_launch(c, k_mmvq3<Q, R, true>, grid, dim3(MQ_THREADS), 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0], y[1],
                      y[2]);
        else
            cu_launch(c, k_mmvq3<Q, R, false>, grid, dim3(MQ_THREADS), 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0],
                      y[1], y[2]);
    }
};

struct mq_launch {
    cu_impl *c;
    const cu_wview *w, *w2; // w2: the up matrix of a fused gate/up/SwiGLU, else NULL
    cu_x8 x;
    float *y;
    int n_tok;
    bool acc;
    template <class Q, bool PRE> void go() {
        constexpr int R = 4; // 2 and 8 measured slower (bench/NOTES.md, second round)
        dim3 grid((unsigned)((w->ne1 + R - 1) / R), (unsigned)n_tok);
        if (w2) cu_launch(c, k_mmvq<Q, R, true, PRE>, grid, dim3(MQ_THREADS), 0, *w, *w2, x, y, false);
        else cu_launch(c, k_mmvq<Q, R, false, PRE>, grid, dim3(MQ_THREADS), 0, *w, *w, x, y, acc);
    }
    template <class Q> void run() {
        const cu_wview *ws[2] = {w, w2};
        float *ys[1] = {y};
        if (cu_mmvb(c, ws, w2 ? 2 : 1, w2 != NULL, x, ys, n_tok, acc)) return;
        if (c->mvq_rows) {
            if (w2) ms_launch<Q, true>(c, ws, 2, x, ys, n_tok, false);
            else ms_launch<Q, false>(c, ws, 1, x, ys, n_tok, acc);
            return;
        }
        if (c->mv_preload) go<Q, true>();
        else go<Q, false>();
    }
};

bool cu_mmvq_supports(uint32_t type) {
    return type == LL_TYPE_Q8_0 || type == LL_TYPE_Q4_0 || type == LL_TYPE_Q4_K || type == LL_TYPE_Q5_K ||
           type == LL_TYPE_Q6_K;
}

// y = x W^T (+= with acc), or with w2 set: y = silu(x W^T) * (x W2^T).
static void mmvq(cu_impl *c, const cu_wview *w, const cu_wview *w2, const float *x, float *y, int n_tok, bool acc) {
    const bool reuse = n_tok <= CU_X8_ROWS && c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == w->ne0;
    for (int t0 = 0; t0 < n_tok; t0 += CU_X8_ROWS) {
        int nt = n_tok - t0 < CU_X8_ROWS ? n_tok - t0 : CU_X8_ROWS;
        if (!reuse) cu_quant_x8(c, x + (size_t)t0 * w->ne0, nt, w->ne0);
        cu_x8 xv = c->x8;
        xv.ne0 = w->ne0;
        mq_launch l = {c, w, w2, xv, y + (size_t)t0 * w->ne1, nt, acc};
        LL_ASSERT(cu_dispatch_q8(*w, l));
    }
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

bool cu_mmvq3_ok(const cu_wview *const w[3], int n_tok) {
    return n_tok <= CU_X8_ROWS && cu_mmvq_supports(w[0]->type) && w[1]->type == w[0]->type &&
           w[2]->type == w[0]->type && w[1]->ne0 == w[0]->ne0 && w[2]->ne0 == w[0]->ne0;
}

void cu_mmvq3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], int n_tok) {
    LL_ASSERT(cu_mmvq3_ok(w, n_tok));
    const int64_t ne0 = w[0]->ne0;
    if (!(c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == ne0)) cu_quant_x8(c, x, n_tok, ne0);
    cu_x8 xv = c->x8;
    xv.ne0 = ne0;
    mq3_launch l = {c, w, y, xv, n_tok};
    LL_ASSERT(cu_dispatch_q8(*w[0], l));
    c->x8_src = x, c->x8_ntok = n_tok, c->x8_ne0 = ne0;
}
