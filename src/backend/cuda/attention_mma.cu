// attention_mma.cu — causal GQA attention for batches (prefill) on the tensor cores, in the manner of
// FlashAttention-2 (Dao 2023, arXiv:2307.08691): a block takes 64 queries of one head, each warp 16 of them;
// tiles of 64 keys and values go through shared memory as f16; S = Q K^T and O += P V are mma.sync m16n8k16
// (f16 operands, f32 accumulators) with the online softmax in registers (the S accumulators are reused as the
// A operand of P V). Q is pre-scaled by scale * log2(e), so the softmax uses exp2.
#include "backend/cuda/cuda_internal.h"

#define AM_BQ 64      // queries per block (4 warps x 16)
#define AM_BK 64      // keys per tile
#define AM_THREADS 128

__device__ __forceinline__ uint32_t am_pack(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *(uint32_t *)&h;
}

__device__ __forceinline__ void am_mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Fragment layouts (PTX ISA, mma.m16n8k16): lane = 4 g + c. A (16x16): a0 = (g, 2c..2c+1), a1 = (g+8, 2c..),
// a2 = (g, 2c+8..), a3 = (g+8, 2c+8..). B (16x8, k x n): b0 = (k 2c..2c+1, n g), b1 = (k 2c+8.., n g).
// C (16x8): c0, c1 = (g, 2c..2c+1), c2, c3 = (g+8, 2c..2c+1).
template <int HD>
__global__ void __launch_bounds__(AM_THREADS)
    k_attn_mma(const float *__restrict__ q, const float *__restrict__ kc, const float *__restrict__ vc,
               float *__restrict__ out, __half *__restrict__ outh, int n_tok, int n_head, int n_head_kv, int n_past,
               float qscale) {
    constexpr int LD = HD + 8; // halves per shared row: the 32-bit fragment loads hit 32 different banks
    extern __shared__ __half am_smem[];
    __half *Ks = am_smem, *Vs = am_smem + AM_BK * LD;
    const int h = blockIdx.y, kvh = h / (n_head / n_head_kv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int t0 = blockIdx.x * AM_BQ + warp * 16; // the warp's first query
    const size_t kv_stride = (size_t)n_head_kv * HD;

    uint32_t qf[HD / 16][4];
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int t = t0 + g + (r & 1) * 8, col = 16 * ks + 2 * c + (r >> 1) * 8;
            float a = 0.0f, b = 0.0f;
            if (t < n_tok) {
                const float *qp = q + ((size_t)t * n_head + h) * HD + col;
                a = qp[0] * qscale, b = qp[1] * qscale;
            }
            qf[ks][r] = am_pack(a, b);
        }
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int qpos[2] = {n_past + t0 + g, n_past + t0 + g + 8};
    const int block_last = n_past + min(n_tok - 1, (int)blockIdx.x * AM_BQ + AM_BQ - 1); // last key any query sees

    for (int kb = 0; kb <= block_last; kb += AM_BK) {
        __syncthreads(); // the previous tile is consumed
        for (int e = threadIdx.x; e < AM_BK * HD / 4; e += AM_THREADS) {
            const int r = e / (HD / 4), c4 = (e % (HD / 4)) * 4, key = kb + r;
            float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
            if (key <= block_last) { // rows past the causal edge are never read (they may hold anything)
                const size_t off = (size_t)key * kv_stride + (size_t)kvh * HD + c4;
                kv = *(const float4 *)(kc + off);
                vv = *(const float4 *)(vc + off);
            }
            uint2 kp = make_uint2(am_pack(kv.x, kv.y), am_pack(kv.z, kv.w));
            uint2 vp = make_uint2(am_pack(vv.x, vv.y), am_pack(vv.z, vv.w));
            *(uint2 *)(Ks + r * LD + c4) = kp;
            *(uint2 *)(Vs + r * LD + c4) = vp;
        }
        __syncthreads();
        if (n_past + t0 + 15 < kb) continue; // every key of this tile is after all of this warp's queries

        float s[AM_BK / 8][4];
#pragma unroll
        for (int j = 0; j < AM_BK / 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            const __half *kr = Ks + (8 * j + g) * LD + 2 * c;
#pragma unroll
            for (int ks = 0; ks < HD / 16; ks++)
                am_mma(s[j], qf[ks], *(const uint32_t *)(kr + 16 * ks), *(const uint32_t *)(kr + 16 * ks + 8));
        }
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int j = 0; j < AM_BK / 8; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int key = kb + 8 * j + 2 * c + (r & 1), row = r >> 1;
                if (key > qpos[row]) s[j][r] = -INFINITY; // causal
                mx[row] = fmaxf(mx[row], s[j][r]);
            }
#pragma unroll
        for (int row = 0; row < 2; row++) {
            mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 1));
            mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 2));
        }
        // key 0 is in the first tile and visible to every query: mx is finite from the first tile on
        const float corr[2] = {exp2f(m[0] - mx[0]), exp2f(m[1] - mx[1])};
        m[0] = mx[0], m[1] = mx[1];
        l[0] *= corr[0], l[1] *= corr[1];
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            o[n][0] *= corr[0], o[n][1] *= corr[0];
            o[n][2] *= corr[1], o[n][3] *= corr[1];
        }
#pragma unroll
        for (int j = 0; j < AM_BK / 8; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                s[j][r] = exp2f(s[j][r] - m[r >> 1]);
                l[r >> 1] += s[j][r];
            }
#pragma unroll
        for (int kk = 0; kk < AM_BK / 16; kk++) {
            const uint32_t a[4] = {am_pack(s[2 * kk][0], s[2 * kk][1]), am_pack(s[2 * kk][2], s[2 * kk][3]),
                                   am_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   am_pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const __half *v0 = Vs + (16 * kk + 2 * c) * LD + g;
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                const __half *vp = v0 + 8 * n;
                __half2 b0 = __halves2half2(vp[0], vp[LD]), b1 = __halves2half2(vp[8 * LD], vp[9 * LD]);
                am_mma(o[n], a, *(uint32_t *)&b0, *(uint32_t *)&b1);
            }
        }
    }
#pragma unroll
    for (int row = 0; row < 2; row++) {
        l[row] += __shfl_xor_sync(0xffffffffu, l[row], 1);
        l[row] += __shfl_xor_sync(0xffffffffu, l[row], 2);
    }
#pragma unroll
    for (int row = 0; row < 2; row++) {
        const int t = t0 + g + 8 * row;
        if (t >= n_tok) continue;
        const size_t off = ((size_t)t * n_head + h) * HD + 2 * c;
        const float inv = 1.0f / l[row];
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            const float2 v = make_float2(o[n][2 * row] * inv, o[n][2 * row + 1] * inv);
            *(float2 *)(out + off + 8 * n) = v;
            if (outh) *(__half2 *)(outh + off + 8 * n) = __floats2half2_rn(v.x, v.y);
        }
    }
}

template <int HD> static void launch(cu_impl *c, float *out, const float *q, const float *kc, const float *vc,
                                     int n_tok, const ll_attn_params *p) {
    const size_t smem = 2 * (size_t)AM_BK * (HD + 8) * sizeof(__half);
    static bool attr_set = false; // per process: one device
    if (!attr_set) {
        CU_CHECK(cudaFuncSetAttribute(k_attn_mma<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = true;
    }
    dim3 grid((unsigned)((n_tok + AM_BQ - 1) / AM_BQ), (unsigned)p->n_head);
    const float qscale = p->scale * 1.4426950408889634f; // log2(e): exp(x) = exp2(x log2 e)
    // out in f16 too, for the output projection's GEMM (matmul.cu: xh), saving it a conversion pass
    const size_t n = (size_t)n_tok * p->n_head * HD;
    __half *outh = n * 2 <= c->xh_bytes ? (__half *)c->xh : NULL;
    k_attn_mma<HD><<<grid, AM_THREADS, smem, c->stream>>>(q, kc, vc, out, outh, n_tok, p->n_head, p->n_head_kv,
                                                          p->n_past, qscale);
    CU_LAUNCHED();
    c->xh_src = outh ? out : NULL;
    c->xh_n = n;
    c->xh_bf = false;
}

bool cu_attention_mma(cu_impl *c, float *out, const float *q, const float *kc, const float *vc, int n_tok,
                      const ll_attn_params *p) {
    if (n_tok < CU_ATTN_MMA_MIN_TOK || c->recording) return false;
    if (p->head_dim == 64) launch<64>(c, out, q, kc, vc, n_tok, p);
    else if (p->head_dim == 128) launch<128>(c, out, q, kc, vc, n_tok, p);
    else return false;
    return true;
}
