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

// Called by every thread of a block after rows [row0, row0 + R) of token tok's y (rows of ne1, a multiple of 32)
// are stored: the block that finds itself the last of the 32 / R blocks of their group of 32 rows (cnt: one
// counter per token and group, reset to 0 by that block) quantizes the group into xo, as k_quant_x8 would. So the
// matvec that reads y next needs no quantization launch of its own. The fence orders the stores before the count.
// With g set (a pending RMSNorm, cu_norm): the group's sum of squares into ss, and the codes are of y * g.
template <int R>
__device__ __forceinline__ void mmvq_group_x8(const float *y, int64_t ne1, int tok, int64_t row0, const cu_x8 &xo,
                                              int *cnt, const float *__restrict__ g, float *ss) {
    static_assert(32 % R == 0, "whole blocks per group of 32 rows");
    __shared__ bool last;
    const int64_t grp = row0 / 32, nb = ne1 / 32;
    // As cooperative groups' grid sync: the barrier orders the block's stores before thread 0's fence, whose
    // effect is cumulative; one fence per block, not one per thread.
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        int *cp = cnt + tok * nb + grp;
        last = atomicAdd(cp, 1) == 32 / R - 1;
        if (last) *cp = 0; // no other block of this launch counts here again
        if (last) __threadfence();
    }
    __syncthreads();
    if (!last || threadIdx.x >= 32) return;
    float v = __ldcg(y + tok * ne1 + grp * 32 + threadIdx.x); // past L1: other blocks wrote these
    if (g) {
        float q = v * v;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
        if (threadIdx.x == 0) ss[tok * nb + grp] = q;
        v *= g[grp * 32 + threadIdx.x];
    }
    cu_x8_store_warp(v, xo, tok * nb + grp, threadIdx.x);
}

// A pending RMSNorm (cu_norm) finished by the matvec that reads it: every thread gets 1/rms of token tok's row
// from the group sums, and the grid's blocks of that token write y = x * (1/rms) * g, the float result the norm
// owes (as k_rmsnorm computes it), a few values each. All threads of the block call it.
// The thread's share of the group sums (loaded right after the wait, used at the end: off the critical path).
__device__ __forceinline__ float mq_norm_part(const cu_norm &nm, int tok) {
    const int ng = nm.n / 32;
    float q = 0.0f;
    for (int i = threadIdx.x; i < ng; i += MQ_THREADS) q += __ldcg(nm.ss + (int64_t)tok * ng + i);
    return q;
}
__device__ __forceinline__ float mq_norm_finish(const cu_norm &nm, int tok, float q) {
    __shared__ float part[MQ_THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = q;
    __syncthreads();
    float tot = 0.0f;
#pragma unroll
    for (int w = 0; w < MQ_THREADS / 32; w++) tot += part[w];
    const float scale = (float)(1.0 / sqrt((double)tot / nm.n + nm.eps));
    const int64_t row = (int64_t)tok * nm.n;
    for (int64_t i = (int64_t)blockIdx.x * MQ_THREADS + threadIdx.x; i < nm.n; i += (int64_t)gridDim.x * MQ_THREADS)
        nm.y[row + i] = nm.x[row + i] * scale * nm.g[i];
    return scale;
}

// What a block does with its rows' sums besides storing them: XO (mmvq_group_x8, with a norm's sums when
// nout.g), ROPE (cu_rope_store, for matrix `which` of q, k, v); nin.ss: x's codes are of a pending norm's x * g
// (mq_norm_finish scales the sums).
struct mq_epi {
    cu_x8 xo;
    int *cnt;
    cu_rope_epi re;
    int which;
    cu_norm nin, nout;
};

// y (n_tok = gridDim.y, ne1) = rows [R*blockIdx.x, +R) of w against the quantized rows of x. SW: the same rows
// of w2 too (same shape and type), and y = silu(x w^T) * (x w2^T) (gate and up with SwiGLU, one launch). XO: y's
// int8 copy into e.xo as well (mmvq_group_x8; ne1 a multiple of 32). ROPE: rows rotated and cached
// (cu_rope_store; R even). The body: block `blk` of the row blocks of w (and w2).
template <class Q, int R, bool SW, bool PRE, bool XO = false, bool ROPE = false>
__device__ __forceinline__ void mmvq_block(const cu_wview &w, const cu_wview &w2, const cu_x8 &x,
                                           float *__restrict__ y, bool accumulate, int64_t blk,
                                           const mq_epi &e = mq_epi{}) {
    static_assert(!ROPE || (R % 2 == 0 && !SW), "RoPE pairs within a block");
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
    const float nq = e.nin.ss ? mq_norm_part(e.nin, tok) : 0.0f;
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
    const float scale = e.nin.ss ? mq_norm_finish(e.nin, tok, nq) : 1.0f; // (its __syncthreads covers red's too)
    __syncthreads();
    if (threadIdx.x < R && row0 + threadIdx.x < w.ne1) {
        float s = 0.0f, s2 = 0.0f, sp = 0.0f;
#pragma unroll
        for (int wi = 0; wi < MQ_THREADS / 32; wi++) {
            s += red[wi][threadIdx.x];
            if (SW) s2 += red[wi][R + threadIdx.x];
            if (ROPE) sp += red[wi][threadIdx.x ^ 1]; // the partner row's sum, in the same order as its own
        }
        s *= scale, s2 *= scale, sp *= scale;
        float *o = y + (int64_t)tok * w.ne1 + row0 + threadIdx.x;
        if (SW) *o = s / (1.0f + expf(-s)) * s2; // as k_swiglu
        else if (ROPE) cu_rope_store(e.re, e.which, tok, row0 + threadIdx.x, s, sp, o);
        else *o = accumulate ? *o + s : s;
    }
    if (XO) mmvq_group_x8<R>(y, w.ne1, tok, row0, e.xo, e.cnt, e.nout.g, e.nout.ss);
}

template <class Q, int R, bool SW, bool PRE, bool XO>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq(cu_wview w, cu_wview w2, cu_x8 x, float *__restrict__ y,
                                                     bool accumulate, mq_epi e) {
    mmvq_block<Q, R, SW, PRE, XO>(w, w2, x, y, accumulate, blockIdx.x, e);
}

// Three matrices on the same x (q, k, v) in one launch: the first nb0 blocks are w0's, the next nb1 w1's, the
// rest w2's (same type and row length). ROPE: then RoPE of q and k and the cache store as well (e.re).
template <class Q, int R, bool PRE, bool ROPE>
__global__ void __launch_bounds__(MQ_THREADS) k_mmvq3(cu_wview w0, cu_wview w1, cu_wview w2, int nb0, int nb1,
                                                      cu_x8 x, float *__restrict__ y0, float *__restrict__ y1,
                                                      float *__restrict__ y2, mq_epi e) {
    const int b = blockIdx.x;
    e.which = b < nb0 ? 0 : b < nb0 + nb1 ? 1 : 2;
    if (e.which == 0) mmvq_block<Q, R, false, PRE, false, ROPE>(w0, w0, x, y0, false, b, e);
    else if (e.which == 1) mmvq_block<Q, R, false, PRE, false, ROPE>(w1, w1, x, y1, false, b - nb0, e);
    else mmvq_block<Q, R, false, PRE, false, ROPE>(w2, w2, x, y2, false, b - nb0 - nb1, e);
}

#define MQ3_R 4 // rows per block of k_mmvq3 (cu_qkv_rope_ok needs it to divide head_dim)

struct mq3_launch {
    cu_impl *c;
    const cu_wview *const *w;
    float *const *y;
    cu_x8 x;
    int n_tok;
    mq_epi e;
    template <class Q, bool ROPE> void go() {
        constexpr int R = MQ3_R;
        const int nb0 = (int)((w[0]->ne1 + R - 1) / R), nb1 = (int)((w[1]->ne1 + R - 1) / R),
                  nb2 = (int)((w[2]->ne1 + R - 1) / R);
        dim3 grid((unsigned)(nb0 + nb1 + nb2), (unsigned)n_tok);
        if (c->mv_preload)
            cu_launch(c, k_mmvq3<Q, R, true, ROPE>, grid, dim3(MQ_THREADS), 0, *w[0], *w[1], *w[2], nb0, nb1, x, y[0],
                      y[1], y[2], e);
        else
            cu_launch(c, k_mmvq3<Q, R, false, ROPE>, grid, dim3(MQ_THREADS), 0, *w[0], *w[1], *w[2], nb0, nb1, x,
                      y[0], y[1], y[2], e);
    }
    template <class Q> void run() {
        if (e.re.hd) go<Q, true>();
        else go<Q, false>();
    }
};

struct mq_launch {
    cu_impl *c;
    const cu_wview *w, *w2; // w2: the up matrix of a fused gate/up/SwiGLU, else NULL
    cu_x8 x;
    float *y;
    int n_tok;
    bool acc;
    bool xo;  // y's int8 copy into c->x8_alt (e.nout.g: of y * g, with the sums of squares)
    mq_epi e; // nin, nout set by the caller
    template <class Q, bool PRE> void go() {
        constexpr int R = 4; // 2 and 8 measured slower (bench/NOTES.md, second round)
        dim3 grid((unsigned)((w->ne1 + R - 1) / R), (unsigned)n_tok);
        e.xo = c->x8_alt, e.xo.ne0 = w->ne1, e.cnt = c->x8_cnt;
        const dim3 b(MQ_THREADS);
        if (w2 && xo) cu_launch(c, k_mmvq<Q, R, true, PRE, true>, grid, b, 0, *w, *w2, x, y, false, e);
        else if (w2) cu_launch(c, k_mmvq<Q, R, true, PRE, false>, grid, b, 0, *w, *w2, x, y, false, e);
        else if (xo) cu_launch(c, k_mmvq<Q, R, false, PRE, true>, grid, b, 0, *w, *w, x, y, acc, e);
        else cu_launch(c, k_mmvq<Q, R, false, PRE, false>, grid, b, 0, *w, *w, x, y, acc, e);
    }
    template <class Q> void run() {
        if (c->mv_preload) go<Q, true>();
        else go<Q, false>();
    }
};

bool cu_mmvq_supports(uint32_t type) {
    return type == LL_TYPE_Q8_0 || type == LL_TYPE_Q4_0 || type == LL_TYPE_Q4_K || type == LL_TYPE_Q5_K ||
           type == LL_TYPE_Q6_K;
}

// The pending norm (c->pend) when an int8 matvec on x (n_tok rows of ne0) can finish it: x is the norm's output,
// in one pass; else NULL.
static const cu_norm *pend_for(const cu_impl *c, const float *x, int n_tok, int64_t ne0) {
    const cu_norm *p = &c->pend;
    return p->y && p->y == x && p->n_tok == n_tok && p->n == ne0 && n_tok <= CU_X8_ROWS ? p : NULL;
}

// y = x W^T (+= with acc), or with w2 set: y = silu(x W^T) * (x W2^T). nout: x's norm left pending (cu_norm).
static void mmvq(cu_impl *c, const cu_wview *w, const cu_wview *w2, const float *x, float *y, int n_tok, bool acc,
                 const cu_norm *nout) {
    const cu_norm *nin = pend_for(c, x, n_tok, w->ne0);
    if (!nin) cu_settle(c); // (changes nothing when x is not the pending norm's output)
    const bool reuse = nin || (n_tok <= CU_X8_ROWS && c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == w->ne0);
    // One pass with SwiGLU or a norm after it: the output's int8 copy too, for the next matvec (into x8_alt,
    // which then becomes x8)
    const bool xo = ((w2 && c->fuse_x8) || nout) && n_tok <= CU_X8_ROWS && w->ne1 % 32 == 0 &&
                    w->ne1 <= c->x8_alt.ne0;
    LL_ASSERT(!nout || xo);
    for (int t0 = 0; t0 < n_tok; t0 += CU_X8_ROWS) {
        int nt = n_tok - t0 < CU_X8_ROWS ? n_tok - t0 : CU_X8_ROWS;
        if (!reuse) cu_quant_x8(c, x + (size_t)t0 * w->ne0, nt, w->ne0);
        cu_x8 xv = c->x8;
        xv.ne0 = w->ne0;
        mq_launch l = {c, w, w2, xv, y + (size_t)t0 * w->ne1, nt, acc, xo, {}};
        if (nin) l.e.nin = *nin;
        if (nout) l.e.nout = *nout;
        LL_ASSERT(cu_dispatch_q8(*w, l));
    }
    if (nin) c->pend.y = NULL; // finished: y written, and x8's codes (of x * g) are no one's copy
    if (xo) {
        const cu_x8 t = c->x8;
        c->x8 = c->x8_alt, c->x8_alt = t;
        if (nout) c->pend = *nout, c->x8_src = NULL; // the codes are of the norm's x * g: pend says so
        else c->x8_src = y, c->x8_ntok = n_tok, c->x8_ne0 = w->ne1;
        return;
    }
    // x8 now holds x when it fit in one pass (and y, written above, does not overlap x: checked by the caller)
    c->x8_src = n_tok <= CU_X8_ROWS && !nin ? x : NULL;
    c->x8_ntok = n_tok;
    c->x8_ne0 = w->ne0;
}

void cu_mmvq(cu_impl *c, const cu_wview *w, const float *x, float *y, int n_tok, bool acc) {
    mmvq(c, w, NULL, x, y, n_tok, acc, NULL);
}

void cu_mmvq_swiglu(cu_impl *c, const cu_wview *wg, const cu_wview *wu, const float *x, float *g, int n_tok) {
    LL_ASSERT(wg->type == wu->type && wg->ne0 == wu->ne0 && wg->ne1 == wu->ne1);
    mmvq(c, wg, wu, x, g, n_tok, false, NULL);
}

bool cu_mmvq_add_norm_ok(const cu_impl *c, const cu_wview *w, int n_tok) {
    return c->fuse_norm && cu_mmvq_supports(w->type) && n_tok <= CU_X8_ROWS && w->ne1 % 32 == 0 && w->ne1 <= c->x8_alt.ne0;
}

void cu_mmvq_add_norm(cu_impl *c, const cu_wview *w, const float *in, float *x, const float *g, float *y, int n_tok,
                      float eps) {
    LL_ASSERT(cu_mmvq_add_norm_ok(c, w, n_tok));
    const cu_norm nout = {x, g, y, c->norm_ss, (int)w->ne1, n_tok, eps};
    mmvq(c, w, NULL, in, x, n_tok, true, &nout);
}

bool cu_mmvq3_ok(const cu_wview *const w[3], int n_tok) {
    return n_tok <= CU_X8_ROWS && cu_mmvq_supports(w[0]->type) && w[1]->type == w[0]->type &&
           w[2]->type == w[0]->type && w[1]->ne0 == w[0]->ne0 && w[2]->ne0 == w[0]->ne0;
}

void cu_mmvq3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], int n_tok,
              const cu_rope_epi *re) {
    LL_ASSERT(cu_mmvq3_ok(w, n_tok));
    LL_ASSERT(!re || (re->hd % MQ3_R == 0 && w[0]->ne1 % re->hd == 0 && w[1]->ne1 % re->hd == 0));
    const int64_t ne0 = w[0]->ne0;
    const cu_norm *nin = pend_for(c, x, n_tok, ne0);
    if (!nin) cu_settle(c);
    if (!nin && !(c->x8_src == x && c->x8_ntok == n_tok && c->x8_ne0 == ne0)) cu_quant_x8(c, x, n_tok, ne0);
    cu_x8 xv = c->x8;
    xv.ne0 = ne0;
    mq3_launch l = {c, w, y, xv, n_tok, {}};
    if (re) l.e.re = *re;
    if (nin) l.e.nin = *nin;
    LL_ASSERT(cu_dispatch_q8(*w[0], l));
    if (nin) {
        c->pend.y = NULL;
        c->x8_src = NULL;
        return;
    }
    c->x8_src = x, c->x8_ntok = n_tok, c->x8_ne0 = ne0;
}
