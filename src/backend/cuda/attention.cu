// attention.cu — causal GQA attention over the KV cache (per layer: rows of n_head_kv*head_dim values, F32, F16 or
// Q8_0, read as they are), split-K ("flash-decoding", Dao et al. 2023): blocks over key ranges keep an online softmax, a
// second kernel combines. One sequence (a run of tokens at n_past + t): a block's warps take pairs of (token, head)
// of one kv head and share its K/V tiles. Tokens of several sequences (decode of N sequences, bp.multi): a block
// takes the heads of one kv head for one token, at that token's position and rows.
#include "backend/cuda/cuda_internal.h"

#define ATT_WARPS 8   // query rows per block: (token, head) pairs that share one kv head
#define ATT_MAX_D 8   // head_dim <= 32 * ATT_MAX_D = 256

// Keys per K/V tile in shared memory, both split kernels: 32, 16 above head dim 128.
__host__ __device__ constexpr int att_kt(int hd) { return hd <= 128 ? 32 : 16; }

// The warp's (token, head) pair, its block's key range and its sequence's first cache row, for both split kernels.
// One sequence: block (x: chunk of ATT_WARPS pairs of kv head y, z: key split); n_past from bp (a recorded step:
// from the device, and the keys split evenly over the fixed gridDim.z). Several (bp.multi): block x = token t's
// chunk of ATT_WARPS of the G heads of kv head y; the token's keys (pos + 1) split evenly over gridDim.z.
// kmax: the pair's causal end; [s0, s1): the block's keys (up to its last pair's end).
struct att_pair {
    bool valid;
    int t, h, kmax, s0, s1;
    int64_t row0;
};
__device__ __forceinline__ att_pair att_pair_of(int n_tok, int n_head, int n_head_kv, const cu_bpos &bp,
                                                int keys_per_split) {
    const int G = n_head / n_head_kv, warp = threadIdx.x >> 5;
    att_pair a;
    if (bp.multi) {
        const int n_chunks = (G + ATT_WARPS - 1) / ATT_WARPS, g = (blockIdx.x % n_chunks) * ATT_WARPS + warp;
        a.t = blockIdx.x / n_chunks;
        a.valid = g < G;
        a.h = blockIdx.y * G + (a.valid ? g : 0);
        a.kmax = bp.pos[a.t] + 1;
        a.row0 = bp.row0[a.t];
        keys_per_split = (a.kmax + gridDim.z - 1) / gridDim.z;
        a.s0 = blockIdx.z * keys_per_split;
        a.s1 = min(a.s0 + keys_per_split, a.kmax);
        return a;
    }
    const int n_past = cu_bp_pos(bp, 0);
    if (bp.pos) keys_per_split = (n_past + n_tok + gridDim.z - 1) / gridDim.z;
    const int n_pairs = n_tok * G, p = blockIdx.x * ATT_WARPS + warp;
    a.valid = p < n_pairs;
    a.t = a.valid ? p / G : 0;
    a.h = blockIdx.y * G + (a.valid ? p % G : 0);
    const int last_pair = min(n_pairs - 1, (int)(blockIdx.x * ATT_WARPS + ATT_WARPS - 1));
    a.kmax = n_past + a.t + 1;
    a.s0 = blockIdx.z * keys_per_split;
    a.s1 = min(a.s0 + keys_per_split, n_past + last_pair / G + 1);
    a.row0 = cu_bp_row0(bp, 0);
    return a;
}

// Cache values of type T (float, __half, cu_q8c: Q8_0 blocks) by index from the cache's start (rows of kvd values,
// kvd % 32 == 0 for Q8_0, so index i is value i % 32 of block i / 32). att_ld<T>::ld loads values i .. i + 3 (i % 4
// == 0) as they are (raw: 16 bytes of f32, 8 of f16, or 4 codes and their block's fp16 scale), f4 converts them to
// f32 when they are stored to shared memory (after the load has had the tile's compute to arrive); get: one value.
template <class T> struct att_ld;
template <> struct att_ld<float> {
    typedef float4 raw;
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) { return *(const float4 *)((const float *)b + i); }
    static __device__ __forceinline__ float4 f4(raw r) { return r; }
    static __device__ __forceinline__ float get(const void *b, int64_t i) { return ((const float *)b)[i]; }
};
template <> struct att_ld<__half> {
    typedef uint2 raw;
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) { return *(const uint2 *)((const __half *)b + i); }
    static __device__ __forceinline__ float4 f4(raw r) {
        const float2 a = __half22float2(*(const __half2 *)&r.x), b = __half22float2(*(const __half2 *)&r.y);
        return make_float4(a.x, a.y, b.x, b.y);
    }
    static __device__ __forceinline__ float get(const void *b, int64_t i) { return __half2float(((const __half *)b)[i]); }
};
// Q8_0: a block's value j is code j times d (ll_quant_to_float_q8_0: exact in f32, an 11-bit d times an 8-bit code).
struct att_q8raw {
    uint32_t q;       // 4 codes
    unsigned short d; // the block's fp16 scale
};
template <> struct att_ld<cu_q8c> {
    typedef att_q8raw raw;
    // the 4 codes as two 16-bit loads: blocks are 34 bytes, so only 2-byte alignment holds
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) {
        const unsigned short *p = (const unsigned short *)((const uint8_t *)b + (i >> 5) * 34);
        const int w = 1 + (int)((i & 31) >> 1); // the codes start at byte 2
        raw r;
        r.d = p[0];
        r.q = (uint32_t)p[w] | (uint32_t)p[w + 1] << 16;
        return r;
    }
    static __device__ __forceinline__ float4 f4(raw r) {
        const float d = __half2float(__ushort_as_half(r.d));
        return make_float4((float)(int8_t)(r.q & 0xff) * d, (float)(int8_t)((r.q >> 8) & 0xff) * d,
                           (float)(int8_t)((r.q >> 16) & 0xff) * d, (float)(int8_t)(r.q >> 24) * d);
    }
    static __device__ __forceinline__ float get(const void *b, int64_t i) {
        const uint8_t *p = (const uint8_t *)b + (i >> 5) * 34;
        return (float)(int8_t)p[2 + (i & 31)] * __half2float(*(const __half *)p);
    }
};

// Pairs p = t*G + g (G = n_head/n_head_kv) -> token t, head y*G + g (att_pair_of); warp w owns pair 8x + w, lane
// owns dims lane + 32i. K/V tiles of kt keys in shared memory serve every warp. Output per (split, token, head): o
// (head_dim, unnormalized), then max m and sum l. kc, vc: the whole cache (T: float or __half).
template <class T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    k_attn_split(const float *__restrict__ q, const void *__restrict__ kc, const void *__restrict__ vc,
                 float *__restrict__ part, int n_tok, int n_head, int n_head_kv, int hd, cu_bpos bp, float scale,
                 int keys_per_split, int kt) {
    extern __shared__ float sm[]; // ks (kt, hd), vs (kt, hd)
    float *ks = sm, *vs = sm + (size_t)kt * hd;
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const att_pair ap = att_pair_of(n_tok, n_head, n_head_kv, bp, keys_per_split);
    const int kvh = blockIdx.y, lane = threadIdx.x & 31;
    const bool valid = ap.valid;
    const int t = ap.t, h = ap.h, kmax = ap.kmax, s0 = ap.s0, s1 = ap.s1;
    const size_t kv_stride = (size_t)n_head_kv * hd;
    const int64_t base = ap.row0 * (int64_t)kv_stride; // the sequence's first value

    float qr[ATT_MAX_D], o[ATT_MAX_D];
#pragma unroll
    for (int i = 0; i < ATT_MAX_D; i++) {
        int d = lane + 32 * i;
        qr[i] = (valid && d < hd) ? q[((size_t)t * n_head + h) * hd + d] * scale : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int tile = s0; tile < s1; tile += kt) {
        const int nk = min(kt, s1 - tile);
        __syncthreads();
        for (int e = threadIdx.x; e < nk * hd; e += blockDim.x) {
            int j = e / hd, d = e % hd;
            const int64_t off = base + (int64_t)(tile + j) * kv_stride + (int64_t)kvh * hd + d;
            ks[e] = att_ld<T>::get(kc, off);
            vs[e] = att_ld<T>::get(vc, off);
        }
        __syncthreads();
        const int nj = valid ? min(nk, kmax - tile) : 0; // causal: keys <= n_past + t
        for (int j = 0; j < nj; j++) {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < ATT_MAX_D; i++) {
                int d = lane + 32 * i;
                if (d < hd) s = fmaf(qr[i], ks[j * hd + d], s);
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            float m_new = fmaxf(m, s), corr = expf(m - m_new), pj = expf(s - m_new);
            l = l * corr + pj;
#pragma unroll
            for (int i = 0; i < ATT_MAX_D; i++) {
                int d = lane + 32 * i;
                if (d < hd) o[i] = o[i] * corr + pj * vs[j * hd + d];
            }
            m = m_new;
        }
    }
    if (!valid) return;
    float *dst = part + (((size_t)blockIdx.z * n_tok + t) * n_head + h) * (hd + 2);
#pragma unroll
    for (int i = 0; i < ATT_MAX_D; i++) {
        int d = lane + 32 * i;
        if (d < hd) dst[d] = o[i];
    }
    if (lane == 0) {
        dst[hd] = m;
        dst[hd + 1] = l;
    }
}

// The same blocks, splits and partials for head dims 64, 128 and 256, with the keys of a tile scored in
// parallel: lane j scores key j of the tile (a dot over HD against the warp's q, float4 reads of both from shared
// memory, K's rows padded to HD + 4 floats so that a quarter-warp's 16-byte reads fall in distinct banks), one max
// and one sum over the warp per tile, then V with each lane owning HD / 32 consecutive dims and each key's
// probability shuffled from its lane. k_attn_split walks the keys one by one, each behind a shuffle reduction and
// two exps (and divides by a run-time head dim per element loaded). The next tile's K and V are loaded (16 bytes a
// load) into registers while this one is computed.
// F16 caches (T = __half): the tiles arrive as 8-byte loads of 4 halves, converted to f32 as they go to shared
// memory: the same arithmetic on half the bytes.
template <int HD, class T>
__global__ void __launch_bounds__(ATT_WARPS * 32, 2) // up to 128 registers: ptxas spilled at its own cap of 80
    k_attn_split2(const float *__restrict__ q, const void *__restrict__ kc, const void *__restrict__ vc,
                  float *__restrict__ part, int n_tok, int n_head, int n_head_kv, cu_bpos bp, float scale,
                  int keys_per_split) {
    typedef att_ld<T> L;
    constexpr int KT = att_kt(HD), KS = HD + 4, DPL = HD / 32, H4 = HD / 4;
    constexpr int NT = ATT_WARPS * 32, R = KT * H4 / NT; // float4s of K (and of V) per thread and tile
    static_assert(R * NT == KT * H4 && DPL % 2 == 0, "whole tiles of float4s");
    extern __shared__ float4 sm4[];
    float *kS = (float *)sm4, *vS = kS + KT * KS, *qs = vS + KT * HD; // (KT, KS), (KT, HD), (ATT_WARPS, HD)
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const att_pair ap = att_pair_of(n_tok, n_head, n_head_kv, bp, keys_per_split);
    const int kvh = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool valid = ap.valid;
    const int t = ap.t, h = ap.h, kmax = ap.kmax, s0 = ap.s0, s1 = ap.s1;
    const size_t kv_stride = (size_t)n_head_kv * HD;
    const int64_t base = ap.row0 * (int64_t)kv_stride; // the sequence's first value
    float *qw = qs + warp * HD;
    for (int d = lane; d < HD; d += 32) qw[d] = valid ? q[((size_t)t * n_head + h) * HD + d] * scale : 0.0f;
    float o[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++) o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    typename L::raw kr[R], vr[R];
    auto fetch = [&](int tile) {
        const int nk = min(KT, s1 - tile);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int e = threadIdx.x + r * NT, j = e / H4, d = (e % H4) * 4;
            if (j < nk) {
                const int64_t off = base + (int64_t)(tile + j) * kv_stride + (int64_t)kvh * HD + d;
                kr[r] = L::ld(kc, off);
                vr[r] = L::ld(vc, off);
            }
        }
    };
    if (s0 < s1) fetch(s0);
    for (int tile = s0; tile < s1; tile += KT) {
        const int nk = min(KT, s1 - tile);
        __syncthreads(); // the previous tile's readers are done (and qs written)
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int e = threadIdx.x + r * NT, j = e / H4, d = (e % H4) * 4;
            if (j < nk) {
                *(float4 *)(kS + j * KS + d) = L::f4(kr[r]);
                *(float4 *)(vS + j * HD + d) = L::f4(vr[r]);
            }
        }
        __syncthreads();
        if (tile + KT < s1) fetch(tile + KT); // in flight while this tile is computed
        const int nj = valid ? min(nk, kmax - tile) : 0; // causal: keys <= n_past + t
        if (nj <= 0) continue;                            // warp-uniform
        float s = -INFINITY;
        if (lane < nj) {
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            const float *kj = kS + lane * KS;
#pragma unroll 8
            for (int d = 0; d < HD; d += 4) {
                const float4 kv = *(const float4 *)(kj + d), qv = *(const float4 *)(qw + d);
                a0 = fmaf(qv.x, kv.x, a0);
                a1 = fmaf(qv.y, kv.y, a1);
                a2 = fmaf(qv.z, kv.z, a2);
                a3 = fmaf(qv.w, kv.w, a3);
            }
            s = (a0 + a1) + (a2 + a3);
        }
        float mt = s;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
        const float m_new = fmaxf(m, mt), corr = expf(m - m_new); // mt finite: nj >= 1
        const float pj = lane < nj ? expf(s - m_new) : 0.0f;
        float ps = pj;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        l = l * corr + ps;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[i] *= corr;
        const float *vd = vS + lane * DPL;
        for (int j = 0; j < nj; j++) {
            const float pb = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
            for (int i = 0; i < DPL; i += 2) {
                const float2 v2 = *(const float2 *)(vd + j * HD + i);
                o[i] = fmaf(pb, v2.x, o[i]);
                o[i + 1] = fmaf(pb, v2.y, o[i + 1]);
            }
        }
        m = m_new;
    }
    if (!valid) return;
    float *dst = part + (((size_t)blockIdx.z * n_tok + t) * n_head + h) * (HD + 2);
#pragma unroll
    for (int i = 0; i < DPL; i++) dst[lane * DPL + i] = o[i];
    if (lane == 0) {
        dst[HD] = m;
        dst[HD + 1] = l;
    }
}

// k_attn_split2<HD, T> with its shared memory: K (KT, HD + 4), V (KT, HD), q (ATT_WARPS, HD).
template <int HD, class T>
static void launch_split2(cu_impl *c, dim3 grid, const float *q, const void *kc, const void *vc, int n_tok,
                          const ll_attn_params *p, const cu_bpos &bp, int kps) {
    constexpr int KT = att_kt(HD);
    const size_t smem = ((size_t)KT * (HD + 4) + (size_t)KT * HD + (size_t)ATT_WARPS * HD) * sizeof(float);
    cu_launch(c, k_attn_split2<HD, T>, grid, dim3(ATT_WARPS * 32), smem, q, kc, vc, c->attn_part, n_tok, p->n_head,
              p->n_head_kv, bp, p->scale, kps);
}

template <class T>
static void launch_split(cu_impl *c, dim3 grid, const float *q, const void *kc, const void *vc, int n_tok,
                         const ll_attn_params *p, const cu_bpos &bp, int kps) {
    const int hd = p->head_dim;
    if (c->attn_dec2 && (hd == 64 || hd == 128 || hd == 256)) {
        (hd == 64 ? launch_split2<64, T> : hd == 128 ? launch_split2<128, T> : launch_split2<256, T>)(
            c, grid, q, kc, vc, n_tok, p, bp, kps);
        return;
    }
    const int kt = att_kt(hd);
    const size_t smem = 2 * (size_t)kt * hd * sizeof(float);
    cu_launch(c, k_attn_split<T>, grid, dim3(ATT_WARPS * 32), smem, q, kc, vc, c->attn_part, n_tok, p->n_head,
              p->n_head_kv, hd, bp, p->scale, kps, kt);
}

// One block per (token, head): out = sum_z o_z e^(m_z - M) / sum_z l_z e^(m_z - M). With x8.q set (head_dim a
// multiple of 32, so each warp holds whole blocks of 32 outputs): also the int8 copy of out for the output
// projection's matvec, with k_quant_x8's arithmetic, so that matvec skips its own quantization launch.
__global__ void k_attn_combine(const float *__restrict__ part, float *__restrict__ out, int n_tok, int n_head, int hd,
                               int n_split, cu_x8 x8) {
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int th = blockIdx.x; // t * n_head + h
    const size_t stride = (size_t)n_tok * n_head * (hd + 2);
    const float *p0 = part + (size_t)th * (hd + 2);
    float M = -INFINITY;
    for (int z = 0; z < n_split; z++) M = fmaxf(M, p0[z * stride + hd]);
    float L = 0.0f;
    for (int z = 0; z < n_split; z++) {
        float mz = p0[z * stride + hd];
        if (mz != -INFINITY) L += p0[z * stride + hd + 1] * expf(mz - M);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < n_split; z++) {
            float mz = p0[z * stride + hd];
            if (mz != -INFINITY) acc += p0[z * stride + d] * expf(mz - M);
        }
        const float v = acc / L;
        out[(size_t)th * hd + d] = v;
        if (x8.q) cu_x8_store_warp(v, x8, ((int64_t)th * hd + d) >> 5, threadIdx.x & 31); // warp-uniform
    }
}

void cu_attention(cu_impl *c, float *out, const float *q, const void *kc, const void *vc, uint32_t ctype, int n_tok,
                  const cu_bpos &bp, int max_keys, const ll_attn_params *p) {
    LL_ASSERT(p->n_head_kv > 0 && p->n_head % p->n_head_kv == 0 && p->head_dim <= 32 * ATT_MAX_D);
    LL_ASSERT(n_tok <= c->max_tok && max_keys >= 1);
    LL_ASSERT(!bp.multi || (bp.pos && bp.row0));
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim;
    if (!bp.multi && !bp.pos) { // one sequence, host values: the tensor cores for batches
        const size_t rb = cu_kv_row_bytes(ctype, p->n_head_kv * hd) * (size_t)bp.r0;
        if (cu_attention_mma(c, out, q, (const char *)kc + rb, (const char *)vc + rb, ctype, n_tok, bp.n_past, p))
            return;
    }
    const int bx = bp.multi ? n_tok * ((G + ATT_WARPS - 1) / ATT_WARPS) : (n_tok * G + ATT_WARPS - 1) / ATT_WARPS;
    // Splits: enough blocks for two waves, at least 64 keys each, within the partials scratch. A recorded step
    // replays at any position: max_keys is then the longest context (empty splits return at once).
    const size_t per_split = (size_t)n_tok * p->n_head * (hd + 2);
    int n_split = (2 * c->n_sm + bx * p->n_head_kv - 1) / (bx * p->n_head_kv);
    int by_keys = (max_keys + 63) / 64, by_mem = (int)(c->attn_part_floats / per_split);
    if (n_split > by_keys) n_split = by_keys;
    if (n_split > by_mem) n_split = by_mem;
    if (n_split < 1) n_split = 1;
    LL_ASSERT(per_split <= c->attn_part_floats);
    // one sequence at host values: its keys split here; else on the device (att_pair_of)
    const int kps = bp.multi || bp.pos ? 0 : (bp.n_past + n_tok + n_split - 1) / n_split;
    dim3 grid((unsigned)bx, (unsigned)p->n_head_kv, (unsigned)n_split);
    (ctype == LL_TYPE_F16    ? launch_split<__half>
     : ctype == LL_TYPE_Q8_0 ? launch_split<cu_q8c>
                             : launch_split<float>)(c, grid, q, kc, vc, n_tok, p, bp, kps);
    const int comb_threads = hd < 128 ? 32 * ((hd + 31) / 32) : 128;
    // out's rows are n_head * hd long, the output projection's row length
    const int64_t ne0 = (int64_t)p->n_head * hd;
    cu_x8 x8 = c->x8;
    const bool q8 = x8.q && hd % 32 == 0 && ne0 <= x8.ne0 && n_tok <= CU_X8_ROWS;
    if (q8) x8.ne0 = ne0;
    else x8.q = NULL;
    cu_launch(c, k_attn_combine, dim3(n_tok * p->n_head), dim3(comb_threads), (size_t)0, c->attn_part, out, n_tok,
              p->n_head, hd, n_split, x8);
    c->x8_src = q8 ? out : NULL; // the int8 copy of out is ready for the next matmul
    c->x8_ntok = n_tok;
    c->x8_ne0 = ne0;
}
