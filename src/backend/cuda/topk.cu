// topk.cu — the k best of a vector on the device, for sampling: only k candidates cross to the host instead of
// the whole logits row (128 KB at a 32k vocabulary, 513 KB at 128k), and the host's pass over the row goes.
// Each value becomes a 64-bit key that orders as (value descending, index ascending): the value's bits made
// order-preserving above, the complement of its index below; NaN and -inf get key 0 (below every candidate).
// A block sorts TK_CHUNK keys in shared memory (bitonic, one compare-exchange per thread and step) and keeps its
// first k; passes repeat over the kept keys until one block holds them all (k <= TK_CHUNK / 4: each pass
// shrinks n by 4 at least; a 32k row takes 2 passes). Greedy (k = 1) takes one pass of max reductions instead.
#include "backend/cuda/cuda_internal.h"

#include <float.h>

#define TK_CHUNK 2048
#define TK_THREADS (TK_CHUNK / 2)
static_assert(LL_BACKEND_TOPK_MAX <= TK_CHUNK / 4, "each pass must shrink the candidates");

__device__ __forceinline__ uint64_t tk_key(float v, uint32_t i) {
    if (!(v > -INFINITY)) return 0; // NaN, -inf: never candidates
    if (v == INFINITY) v = FLT_MAX;
    if (v == 0.0f) v = 0.0f; // -0 ranks as +0 (equal floats: the index decides)
    uint32_t b = __float_as_uint(v);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((uint64_t)b << 32) | (uint64_t)(0xFFFFFFFFu - i);
}

static inline float tk_value(uint64_t key) {
    uint32_t b = (uint32_t)(key >> 32);
    b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

// Block b: keys of elements [b * TK_CHUNK, +TK_CHUNK) of x (floats, first pass) or kin, sorted best first; the
// first k to kout[b * k ...].
__global__ void __launch_bounds__(TK_THREADS) k_topk(const float *__restrict__ x, const uint64_t *__restrict__ kin,
                                                     int n, int k, uint64_t *__restrict__ kout) {
    __shared__ uint64_t s[TK_CHUNK];
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int64_t base = (int64_t)blockIdx.x * TK_CHUNK;
    for (int i = threadIdx.x; i < TK_CHUNK; i += TK_THREADS) {
        const int64_t e = base + i;
        s[i] = e >= n ? 0 : x ? tk_key(x[e], (uint32_t)e) : kin[e];
    }
    for (int size = 2; size <= TK_CHUNK; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            __syncthreads();
            const int t = threadIdx.x, i = 2 * t - (t & (stride - 1)), j = i + stride;
            const bool desc = (i & size) == 0; // the last size (TK_CHUNK): descending throughout
            const uint64_t a = s[i], b = s[j];
            if ((a < b) == desc) s[i] = b, s[j] = a;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < k; i += TK_THREADS) kout[(int64_t)blockIdx.x * k + i] = s[i];
}

// k = 1 (greedy): the largest key in one pass, each block's by shuffles and shared memory, then one atomicMax
// per block into *best (zeroed before).
#define TK1_THREADS 512
__global__ void __launch_bounds__(TK1_THREADS) k_top1(const float *__restrict__ x, int n,
                                                      unsigned long long *best) {
    __shared__ uint64_t wm[TK1_THREADS / 32];
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    uint64_t m = 0;
    for (int64_t i = (int64_t)blockIdx.x * TK1_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * TK1_THREADS) {
        const uint64_t key = tk_key(x[i], (uint32_t)i);
        m = key > m ? key : m;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t v = __shfl_xor_sync(0xffffffffu, m, o);
        m = v > m ? v : m;
    }
    if ((threadIdx.x & 31) == 0) wm[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < TK1_THREADS / 32; w++) m = wm[w] > m ? wm[w] : m;
        if (m) atomicMax(best, (unsigned long long)m);
    }
}

// Scratch grown to hold `need` bytes twice (two buffers of a pass's output, ping-pong), and the pinned host slot
// of the result; false when the device or host memory is not there.
static bool tk_scratch(cu_impl *c, size_t need) {
    if (!c->topk_host && cudaMallocHost((void **)&c->topk_host, LL_BACKEND_TOPK_MAX * sizeof(uint64_t)) != cudaSuccess) {
        (void)cudaGetLastError();
        c->topk_host = NULL;
        return false;
    }
    if (need <= c->topk_bytes) return true;
    if (c->topk_buf) CU_CHECK(cudaFree(c->topk_buf));
    c->topk_buf = NULL, c->topk_bytes = 0;
    if (cudaMalloc((void **)&c->topk_buf, 2 * need) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    c->topk_bytes = need;
    return true;
}

int cu_topk(cu_impl *c, const float *x, int n, int k, float *vals, int32_t *ids) {
    LL_ASSERT(n >= 1 && k >= 1 && k <= LL_BACKEND_TOPK_MAX);
    const int64_t nb0 = ((int64_t)n + TK_CHUNK - 1) / TK_CHUNK;
    if (!tk_scratch(c, (size_t)nb0 * (size_t)k * sizeof(uint64_t))) return -1;
    const uint64_t *in = NULL;
    if (k == 1) {
        CU_CHECK(cudaMemsetAsync(c->topk_buf, 0, sizeof(uint64_t), c->stream));
        int64_t nb = ((int64_t)n + 4 * TK1_THREADS - 1) / (4 * TK1_THREADS), cap = 2 * (int64_t)c->n_sm;
        cu_launch(c, k_top1, dim3((unsigned)(nb < cap ? nb : cap)), dim3(TK1_THREADS), 0, x, n,
                  (unsigned long long *)c->topk_buf);
        in = c->topk_buf;
    } else {
        uint64_t *buf[2] = {c->topk_buf, c->topk_buf + c->topk_bytes / sizeof(uint64_t)};
        int64_t m = n;
        int p = 0;
        for (;;) {
            const int64_t nb = (m + TK_CHUNK - 1) / TK_CHUNK;
            cu_launch(c, k_topk, dim3((unsigned)nb), dim3(TK_THREADS), 0, in ? NULL : x, in, (int)m, k, buf[p]);
            in = buf[p], p ^= 1, m = nb * k;
            if (nb == 1) break;
        }
    }
    uint64_t *keys = c->topk_host;
    CU_CHECK(cudaMemcpyAsync(keys, in, (size_t)k * sizeof(uint64_t), cudaMemcpyDeviceToHost, c->stream));
    CU_CHECK(cudaStreamSynchronize(c->stream));
    int got = 0;
    while (got < k && keys[got] != 0) {
        vals[got] = tk_value(keys[got]);
        ids[got] = (int32_t)(0xFFFFFFFFu - (uint32_t)keys[got]);
        got++;
    }
    return got;
}
