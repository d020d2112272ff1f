// attention_mma.cu — causal GQA attention for batches (prefill) on the tensor cores, in the manner of
// FlashAttention-2 (Dao 2023, arXiv:2307.08691): a block takes 64 queries of one head, each warp 16 of them;
// tiles of 64 keys and values go through shared memory as f16; S = Q K^T and O += P V are mma.sync m16n8k16
// (f16 operands, f32 accumulators) with the online softmax in registers (the S accumulators are reused as the
// A operand of P V). Q is pre-scaled by scale * log2(e), so the softmax uses exp2. Two kernels: k_attn_mma (the first)
// and k_attn_mma2 (the default: GQA heads share K/V tiles, double-buffered, ldmatrix fragments; 2-3% faster pp512
// on the H100, bench/NOTES.md, session 14). The cache is F32, F16 or Q8_0 (T: float, __half, cu_q8c): F32 tiles are
// converted to f16 as they go to shared memory, F16 tiles go as they are (half the bytes read), Q8_0 codes times
// their block's scale rounded to f16.
#include "backend/cuda/cuda_internal.h"

#define AM_BQ 64      // queries per block (4 warps x 16)
#define AM_BK 64      // keys per tile
#define AM_THREADS 128

__device__ __forceinline__ uint32_t am_pack(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *(uint32_t *)&h;
}

// 4 cache values i .. i + 3 (i % 4 == 0; index from the cache pointer's first value) as loaded (raw: 16 bytes of
// f32, 8 of f16, or Q8_0's 4 codes and their block's fp16 scale; value-initialized raw is 4 zeros) and as 4 halves.
template <class T> struct am_ld;
template <> struct am_ld<float> {
    typedef float4 raw;
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) { return *(const float4 *)((const float *)b + i); }
    static __device__ __forceinline__ uint2 h4(raw x) { return make_uint2(am_pack(x.x, x.y), am_pack(x.z, x.w)); }
};
template <> struct am_ld<__half> {
    typedef uint2 raw;
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) { return *(const uint2 *)((const __half *)b + i); }
    static __device__ __forceinline__ uint2 h4(raw x) { return x; }
};
struct am_q8raw {
    uint32_t q;       // 4 codes
    unsigned short d; // the block's fp16 scale
};
template <> struct am_ld<cu_q8c> { // blocks of 34 bytes (rows of whole blocks): 2-byte loads
    typedef am_q8raw raw;
    static __device__ __forceinline__ raw ld(const void *b, int64_t i) {
        const unsigned short *p = (const unsigned short *)((const uint8_t *)b + (i >> 5) * 34);
        const int w = 1 + (int)((i & 31) >> 1);
        raw r;
        r.d = p[0];
        r.q = (uint32_t)p[w] | (uint32_t)p[w + 1] << 16;
        return r;
    }
    static __device__ __forceinline__ uint2 h4(raw x) {
        const float d = __half2float(__ushort_as_half(x.d));
        return make_uint2(am_pack((float)(int8_t)(x.q & 0xff) * d, (float)(int8_t)((x.q >> 8) & 0xff) * d),
                          am_pack((float)(int8_t)((x.q >> 16) & 0xff) * d, (float)(int8_t)(x.q >> 24) * d));
    }
};

// Not volatile: no side effects, so the compiler may interleave independent accumulators (both kernels).
__device__ __forceinline__ void am_mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The online softmax step of a warp's two rows on its masked S tile (BK keys), both kernels: the running max m and
// sum l, O rescaled by exp2(m_old - m), S replaced by exp2(S - m). Key 0 is in the first tile and visible to every
// row, so m is finite from the first tile on.
template <int HD, int BK>
__device__ __forceinline__ void am_softmax_step(float (&s)[BK / 8][4], float (&m)[2], float (&l)[2],
                                                float (&o)[HD / 8][4]) {
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int j = 0; j < BK / 8; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) mx[r >> 1] = fmaxf(mx[r >> 1], s[j][r]);
#pragma unroll
    for (int row = 0; row < 2; row++) {
        mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 1));
        mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 2));
    }
    const float corr[2] = {exp2f(m[0] - mx[0]), exp2f(m[1] - mx[1])};
    m[0] = mx[0], m[1] = mx[1];
    l[0] *= corr[0], l[1] *= corr[1];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        o[n][0] *= corr[0], o[n][1] *= corr[0];
        o[n][2] *= corr[1], o[n][3] *= corr[1];
    }
#pragma unroll
    for (int j = 0; j < BK / 8; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            s[j][r] = exp2f(s[j][r] - m[r >> 1]);
            l[r >> 1] += s[j][r];
        }
}

// O / l of the warp's two rows to out (f32) and outh (f16, when given) at element offsets off[row] (< 0: a row
// past the batch, not stored), both kernels.
template <int HD>
__device__ __forceinline__ void am_store_rows(const float (&o)[HD / 8][4], float (&l)[2], const int64_t off[2],
                                              float *__restrict__ out, __half *__restrict__ outh) {
#pragma unroll
    for (int row = 0; row < 2; row++) {
        l[row] += __shfl_xor_sync(0xffffffffu, l[row], 1);
        l[row] += __shfl_xor_sync(0xffffffffu, l[row], 2);
    }
#pragma unroll
    for (int row = 0; row < 2; row++) {
        if (off[row] < 0) continue;
        const float inv = 1.0f / l[row];
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            const float2 v = make_float2(o[n][2 * row] * inv, o[n][2 * row + 1] * inv);
            *(float2 *)(out + off[row] + 8 * n) = v;
            if (outh) *(__half2 *)(outh + off[row] + 8 * n) = __floats2half2_rn(v.x, v.y);
        }
    }
}

// Fragment layouts (PTX ISA, mma.m16n8k16): lane = 4 g + c. A (16x16): a0 = (g, 2c..2c+1), a1 = (g+8, 2c..),
// a2 = (g, 2c+8..), a3 = (g+8, 2c+8..). B (16x8, k x n): b0 = (k 2c..2c+1, n g), b1 = (k 2c+8.., n g).
// C (16x8): c0, c1 = (g, 2c..2c+1), c2, c3 = (g+8, 2c..2c+1).
template <int HD, class T>
__global__ void __launch_bounds__(AM_THREADS)
    k_attn_mma(const float *__restrict__ q, const void *__restrict__ kc, const void *__restrict__ vc,
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
            uint2 kp = make_uint2(0u, 0u), vp = kp;
            if (key <= block_last) { // rows past the causal edge are never read (they may hold anything)
                const int64_t off = (int64_t)key * kv_stride + (int64_t)kvh * HD + c4;
                kp = am_ld<T>::h4(am_ld<T>::ld(kc, off));
                vp = am_ld<T>::h4(am_ld<T>::ld(vc, off));
            }
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
#pragma unroll
        for (int j = 0; j < AM_BK / 8; j++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                if (kb + 8 * j + 2 * c + (r & 1) > qpos[r >> 1]) s[j][r] = -INFINITY; // causal
        am_softmax_step<HD, AM_BK>(s, m, l, o);
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
    int64_t off[2];
#pragma unroll
    for (int row = 0; row < 2; row++) {
        const int t = t0 + g + 8 * row;
        off[row] = t < n_tok ? ((int64_t)t * n_head + h) * HD + 2 * c : -1;
    }
    am_store_rows<HD>(o, l, off, out, outh);
}

// Either kernel's launch: its dynamic shared memory allowed once (*attr_set, per process: one device), q's scale
// times log2(e) (exp(x) = exp2(x log2 e)), and out in f16 too for the output projection's GEMM (matmul.cu: xh),
// saving it a conversion pass.
typedef void (*am_kernel)(const float *, const void *, const void *, float *, __half *, int, int, int, int, float);
static void am_launch(cu_impl *c, am_kernel k, bool *attr_set, dim3 grid, int threads, size_t smem, int hd, float *out,
                      const float *q, const void *kc, const void *vc, int n_tok, int n_past, const ll_attn_params *p) {
    if (!*attr_set) {
        CU_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        *attr_set = true;
    }
    const float qscale = p->scale * 1.4426950408889634f;
    const size_t n = (size_t)n_tok * p->n_head * hd;
    __half *outh = n * 2 <= c->xh_bytes ? (__half *)c->xh : NULL;
    k<<<grid, threads, smem, c->stream>>>(q, kc, vc, out, outh, n_tok, p->n_head, p->n_head_kv, n_past, qscale);
    CU_LAUNCHED();
    c->xh_src = outh ? out : NULL;
    c->xh_n = n;
    c->xh_bf = false;
}

template <int HD, class T> static void launch(cu_impl *c, float *out, const float *q, const void *kc, const void *vc,
                                              int n_tok, int n_past, const ll_attn_params *p) {
    static bool attr_set = false;
    const dim3 grid((unsigned)((n_tok + AM_BQ - 1) / AM_BQ), (unsigned)p->n_head);
    am_launch(c, k_attn_mma<HD, T>, &attr_set, grid, AM_THREADS, 2 * (size_t)AM_BK * (HD + 8) * sizeof(__half), HD,
              out, q, kc, vc, n_tok, n_past, p);
}

// ---- k_attn_mma2: the same attention, the default (LLMLAB_CUDA_ATTN2=0: k_attn_mma) ------------------------
// Rows are (query, head) pairs of one GQA group: pair p = t G + j (G = n_head / n_head_kv) is token t, head
// kvh G + j, as in attention.cu's k_attn_split. A block takes 128 consecutive pairs (8 warps x 16), so the G heads
// that read one kv head share each converted K/V tile (G = 4: 32 tokens x 4 heads; any G works, including 1 and
// G not dividing 128). K/V tiles are double-buffered in shared memory: the next tile's K is loaded into registers
// before S = Q K^T and stored converted after it, its V likewise around the softmax and P V, so the global load
// latency hides behind the math and there is one __syncthreads per tile. Fragments come from ldmatrix (x4; .trans
// for V). Blocks go heaviest first (the last queries see the most keys), so the light ones fill in behind.
#define A2_ROWS 128   // pairs per block (8 warps x 16)
#define A2_BK 64      // keys per tile
#define A2_THREADS 256

// volatile: they read shared memory that changes across __syncthreads, they must stay between the barriers
__device__ __forceinline__ void a2_ldsm(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void a2_ldsm_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Tile loads: thread i takes the float4 at column c4 = 4 (i % (HD/4)) of rows r0 = i / (HD/4) + A2_LROWS j, the
// same column in every row, so that the addresses are one base plus constant steps.
#define A2_LROWS (A2_THREADS * 4 / HD) // rows one pass of the block covers
// K or V rows kb.. of the tile from the cache c (kv_stride values a row); value index src is row r0, column c4 of
// the kv head. Rows past block_last are zero (never read: they may hold anything).
template <int HD, class T>
__device__ __forceinline__ void a2_load(typename am_ld<T>::raw (&x)[A2_BK / A2_LROWS], const void *__restrict__ c,
                                        int64_t src, int kb, int r0, int block_last, size_t kv_stride) {
    src += (int64_t)kb * kv_stride;
#pragma unroll
    for (int j = 0; j < A2_BK / A2_LROWS; j++)
        x[j] = kb + r0 + A2_LROWS * j <= block_last ? am_ld<T>::ld(c, src + (int64_t)(A2_LROWS * j) * kv_stride)
                                                     : typename am_ld<T>::raw{};
}
// ... as f16 into the tile at dst (row r0, column c4 already added)
template <int HD, class T>
__device__ __forceinline__ void a2_store(const typename am_ld<T>::raw (&x)[A2_BK / A2_LROWS], __half *dst) {
#pragma unroll
    for (int j = 0; j < A2_BK / A2_LROWS; j++) *(uint2 *)(dst + A2_LROWS * j * (HD + 8)) = am_ld<T>::h4(x[j]);
}

// Grid: n_chunks * n_head_kv blocks (1D), block b: kv head b % n_head_kv, pair chunk n_chunks - 1 - b / n_head_kv.
// HD 64 fits two blocks per SM in registers; HD 128 (o alone is 64 registers) one.
template <int HD, class T>
__global__ void __launch_bounds__(A2_THREADS, HD <= 64 ? 2 : 1)
    k_attn_mma2(const float *__restrict__ q, const void *__restrict__ kc, const void *__restrict__ vc,
                float *__restrict__ out, __half *__restrict__ outh, int n_tok, int n_head, int n_head_kv, int n_past,
                float qscale) {
    constexpr int LD = HD + 8; // halves per shared row (272 or 144 bytes): ldmatrix's 8 rows hit distinct banks
    constexpr int TILE = A2_BK * LD;
    extern __shared__ uint4 a2_smem[]; // K buffers 0, 1, then V buffers 0, 1
    __half *const sm = (__half *)a2_smem;
    const int G = n_head / n_head_kv, n_pairs = n_tok * G, n_chunks = (n_pairs + A2_ROWS - 1) / A2_ROWS;
    const int kvh = blockIdx.x % n_head_kv, chunk = n_chunks - 1 - (int)blockIdx.x / n_head_kv;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int p0 = chunk * A2_ROWS + warp * 16; // the warp's first pair
    const int block_last = n_past + min(n_pairs - 1, chunk * A2_ROWS + A2_ROWS - 1) / G; // last key any row sees
    const bool warp_on = p0 < n_pairs;
    const int w_first = n_past + min(p0, n_pairs - 1) / G, w_last = n_past + min(p0 + 15, n_pairs - 1) / G;
    const size_t kv_stride = (size_t)n_head_kv * HD;
    const int r0 = threadIdx.x / (HD / 4), c4 = threadIdx.x % (HD / 4) * 4; // tile loads: a2_load
    const int64_t kp = (int64_t)r0 * kv_stride + (int64_t)kvh * HD + c4; // the thread's first value, K and V
    const int64_t vp = kp;
    __half *const st = sm + r0 * LD + c4;

    // rows g and g + 8 of the warp; rows past the last pair take its position (key 0 visible: m finite) and q = 0
    // orow: the row's (token, head) row of q and out, -1 past the last pair
    int qpos[2], orow[2];
    uint32_t qf[HD / 16][4];
#pragma unroll
    for (int row = 0; row < 2; row++) {
        const int pr = p0 + g + 8 * row, pc = min(pr, n_pairs - 1), t = pc / G;
        qpos[row] = n_past + t;
        orow[row] = pr < n_pairs ? t * n_head + kvh * G + pc % G : -1;
        const float *qr = q + (size_t)(t * n_head + kvh * G + pc % G) * HD + 2 * c;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++)
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                float2 v = make_float2(0.f, 0.f);
                if (pr < n_pairs) v = *(const float2 *)(qr + 16 * ks + 8 * hi);
                qf[ks][row + 2 * hi] = am_pack(v.x * qscale, v.y * qscale);
            }
    }
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    // ldmatrix row addresses (bytes). K, x4 = b0, b1 of key groups 16jp, 16jp + 8 at dims 16ks: lanes 0-7 keys
    // +0..7 dims +0, 8-15 keys +0..7 dims +8, 16-23 keys +8..15 dims +0, 24-31 keys +8..15 dims +8.
    // V, x4 .trans = b0, b1 of dims 16np, 16np + 8 at keys 16kk: lanes 0-7 keys +0..7 dims +0, 8-15 keys +8..15
    // dims +0, 16-23 keys +0..7 dims +8, 24-31 keys +8..15 dims +8.
    const uint32_t s_base = (uint32_t)__cvta_generic_to_shared(sm);
    const uint32_t k_lane = s_base + (uint32_t)(((lane & 7) + 8 * (lane >> 4)) * LD + 8 * ((lane >> 3) & 1)) * 2;
    const uint32_t v_lane =
        s_base + (uint32_t)(2 * TILE + ((lane & 7) + 8 * ((lane >> 3) & 1)) * LD + 8 * (lane >> 4)) * 2;

    typename am_ld<T>::raw x[A2_BK / A2_LROWS];
    a2_load<HD, T>(x, kc, kp, 0, r0, block_last, kv_stride);
    a2_store<HD, T>(x, st);
    a2_load<HD, T>(x, vc, vp, 0, r0, block_last, kv_stride);
    a2_store<HD, T>(x, st + 2 * TILE);
    __syncthreads();

    for (int kb = 0, buf = 0; kb <= block_last; kb += A2_BK, buf ^= 1) {
        const bool next = kb + A2_BK <= block_last;
        const bool on = warp_on && kb <= w_last; // else every key of the tile is after all of the warp's rows
        if (next) a2_load<HD, T>(x, kc, kp, kb + A2_BK, r0, block_last, kv_stride);

        float s[A2_BK / 8][4];
        if (on) {
            const uint32_t kaddr = k_lane + (uint32_t)(buf * TILE * 2);
#pragma unroll
            for (int j = 0; j < A2_BK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < HD / 16; ks++)
#pragma unroll
                for (int jp = 0; jp < A2_BK / 16; jp++) {
                    uint32_t b[4];
                    a2_ldsm(b, kaddr + (uint32_t)((16 * jp * LD + 16 * ks) * 2));
                    am_mma(s[2 * jp], qf[ks], b[0], b[1]);
                    am_mma(s[2 * jp + 1], qf[ks], b[2], b[3]);
                }
        }
        if (next) {
            a2_store<HD, T>(x, st + (buf ^ 1) * TILE); // held tile kb - 64, consumed before the last barrier
            a2_load<HD, T>(x, vc, vp, kb + A2_BK, r0, block_last, kv_stride);
        }
        if (on) {
            if (kb + A2_BK - 1 > w_first) // the tile crosses the causal edge of some row
#pragma unroll
                for (int j = 0; j < A2_BK / 8; j++)
#pragma unroll
                    for (int r = 0; r < 4; r++)
                        if (kb + 8 * j + 2 * c + (r & 1) > qpos[r >> 1]) s[j][r] = -INFINITY;
            am_softmax_step<HD, A2_BK>(s, m, l, o);
            const uint32_t vaddr = v_lane + (uint32_t)(buf * TILE * 2);
#pragma unroll
            for (int kk = 0; kk < A2_BK / 16; kk++) {
                const uint32_t a[4] = {am_pack(s[2 * kk][0], s[2 * kk][1]), am_pack(s[2 * kk][2], s[2 * kk][3]),
                                       am_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                       am_pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int np = 0; np < HD / 16; np++) {
                    uint32_t b[4];
                    a2_ldsm_t(b, vaddr + (uint32_t)((16 * kk * LD + 16 * np) * 2));
                    am_mma(o[2 * np], a, b[0], b[1]);
                    am_mma(o[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
        if (next) a2_store<HD, T>(x, st + (2 + (buf ^ 1)) * TILE);
        __syncthreads(); // the next tile is in; this one is consumed (its buffers take the tile after next)
    }
    int64_t off[2];
#pragma unroll
    for (int row = 0; row < 2; row++) off[row] = orow[row] < 0 ? -1 : (int64_t)orow[row] * HD + 2 * c;
    am_store_rows<HD>(o, l, off, out, outh);
}

template <int HD, class T> static void launch2(cu_impl *c, float *out, const float *q, const void *kc,
                                               const void *vc, int n_tok, int n_past, const ll_attn_params *p) {
    const size_t smem = 4 * (size_t)A2_BK * (HD + 8) * sizeof(__half); // K, V x 2 buffers: 69632 B at HD 128
    static bool attr_set = false;
    const int64_t n_pairs = (int64_t)n_tok * (p->n_head / p->n_head_kv);
    LL_ASSERT(n_pairs + A2_ROWS <= INT32_MAX);
    const unsigned n_blocks = (unsigned)((n_pairs + A2_ROWS - 1) / A2_ROWS * p->n_head_kv);
    am_launch(c, k_attn_mma2<HD, T>, &attr_set, dim3(n_blocks), A2_THREADS, smem, HD, out, q, kc, vc, n_tok, n_past,
              p);
}

template <class T>
static void launch_any(cu_impl *c, bool v2, float *out, const float *q, const void *kc, const void *vc, int n_tok,
                       int n_past, const ll_attn_params *p) {
    if (p->head_dim == 64)
        v2 ? launch2<64, T>(c, out, q, kc, vc, n_tok, n_past, p) : launch<64, T>(c, out, q, kc, vc, n_tok, n_past, p);
    else v2 ? launch2<128, T>(c, out, q, kc, vc, n_tok, n_past, p) : launch<128, T>(c, out, q, kc, vc, n_tok, n_past, p);
}

bool cu_attention_mma(cu_impl *c, float *out, const float *q, const void *kc, const void *vc, uint32_t ctype,
                      int n_tok, int n_past, const ll_attn_params *p) {
    if (n_tok < CU_ATTN_MMA_MIN_TOK || c->recording) return false;
    if (p->head_dim != 64 && p->head_dim != 128) return false;
    // read at every call (once per layer, cheap next to the launch) so that a test can switch it on
    const char *a2 = getenv("LLMLAB_CUDA_ATTN2");
    const bool v2 = !(a2 && a2[0] == '0' && a2[1] == 0); // "0": the first kernel (for comparison)
    (ctype == LL_TYPE_F16    ? launch_any<__half>
     : ctype == LL_TYPE_Q8_0 ? launch_any<cu_q8c>
                             : launch_any<float>)(c, v2, out, q, kc, vc, n_tok, n_past, p);
    return true;
}
