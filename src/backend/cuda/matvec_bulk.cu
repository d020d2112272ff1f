// matvec_bulk.cu — the int8-activation matvec with its weights streamed into shared memory by the copy engine
// (cp.async.bulk, sm_90): one block per SM walks row groups; its thread 0 keeps `stages` copies in flight, each
// stage R rows x one chunk of CE elements (q runs, and the fp16 scales of the repacked types), completing on an
// mbarrier. The bytes in flight no longer depend on registers or occupancy: (stages - 1) stages per SM. The eight
// warps decode the stage from shared memory with the same unit code as matvec_q8.cu (load<true>, dotw), all
// tokens of the batch on each weight load. Falls back (returns false) where a row's runs are not 16-byte
// multiples or the GPU is older than sm_90.
#include "backend/cuda/cuda_q8.h"

#define MB_MAX_WARPS 32
#define MB_MAX_STAGES 8
#define MB_CE 4096 // elements per chunk of a row

struct mb_args {
    cu_wview w[3];     // up to three matrices (q, k, v), or gate and up (np = 2)
    int ge0, ge1;      // groups [0, ge0) are w[0]'s, [ge0, ge1) w[1]'s, the rest w[2]'s (np = 1)
    int n_groups;
    int np;            // 2: each group is R rows of w[0] and the same rows of w[1] (SwiGLU)
    int R, WR;         // rows per group (per matrix), warps per row: np * R * WR = the block's warps
    int n_chunks, stages;
    unsigned stage_bytes, qb, db, d_off; // per stage; per row slot (full chunk) q and d bytes; d region offset
    int n_tok;
    bool acc, dry; // dry: copies only, no arithmetic (a measurement of the copy engine alone; wrong y)
    cu_x8 x;
    float *y[3];
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ uint32_t mb_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_wait(uint64_t *bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(mb_smem(bar)), "r"(parity)
                     : "memory");
    } while (!done);
}

// Which matrix group g belongs to, and its group index within it.
__device__ __forceinline__ void mb_group(const mb_args &a, int g, int *m, int *lg) {
    *m = a.np == 2 || g < a.ge0 ? 0 : g < a.ge1 ? 1 : 2;
    *lg = *m == 0 ? g : *m == 1 ? g - a.ge0 : g - a.ge1;
}

// Thread 0: the copies of stage i (group, chunk) into buffer s.
template <class Q> __device__ void mb_issue(const mb_args &a, uint8_t *sm, uint64_t *full, int i) {
    const int s = i % a.stages, gi = i / a.n_chunks, c = i % a.n_chunks;
    const int g = blockIdx.x + gi * gridDim.x;
    int m, lg;
    mb_group(a, g, &m, &lg);
    const cu_wview &w = a.w[m];
    const int64_t ne0 = w.ne0, r0 = (int64_t)lg * a.R;
    const int rows = (int)min((int64_t)a.R, w.ne1 - r0);
    const int64_t ce = min((int64_t)MB_CE, ne0 - (int64_t)c * MB_CE);
    const uint32_t qbytes = (uint32_t)(ce / Q::BE * Q::QBB), dbytes = (uint32_t)(ce / Q::BE * Q::DBB);
    const uint32_t tx = (uint32_t)(a.np * rows) * (qbytes + dbytes);
    const uint32_t bar = mb_smem(&full[s]);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(tx) : "memory");
    uint8_t *st = sm + (size_t)s * a.stage_bytes;
    for (int p = 0; p < a.np; p++) {
        const cu_wview &v = a.w[a.np == 2 ? p : m];
        for (int k = 0; k < rows; k++) {
            const int64_t row = r0 + k, slot = p * a.R + k;
            const uint8_t *src = v.q + row * (ne0 / Q::BE * Q::QBB) + (int64_t)c * (MB_CE / Q::BE * Q::QBB);
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                             mb_smem(st + slot * a.qb)),
                         "l"(src), "r"(qbytes), "r"(bar)
                         : "memory");
            if (Q::DBB) {
                const uint8_t *sd = (const uint8_t *)v.d + (row * (ne0 / Q::BE) + (int64_t)c * (MB_CE / Q::BE)) * Q::DBB;
                asm volatile(
                    "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                        mb_smem(st + a.d_off + slot * a.db)),
                    "l"(sd), "r"(dbytes), "r"(bar)
                    : "memory");
            }
        }
    }
}
#endif

// W warps per block; NT: tokens the accumulators are sized for (1 for decode, CU_X8_ROWS for short batches).
template <class Q, int W, int NT>
__global__ void __launch_bounds__(W * 32, 1) k_mmvb(const __grid_constant__ mb_args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint8_t sm[];
    __shared__ __align__(8) uint64_t full[MB_MAX_STAGES];
    __shared__ float red[2][W][NT];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n_my = a.n_groups > (int)blockIdx.x ? (a.n_groups - (int)blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
    const int total = n_my * a.n_chunks;
    if (tid == 0) {
        for (int s = 0; s < a.stages; s++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(mb_smem(&full[s])) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    // the first stages are weights only: issued before waiting for the kernel that writes x
    if (tid == 0)
        for (int i = 0; i < a.stages && i < total; i++) mb_issue<Q>(a, sm, full, i);
    CU_PDL_WAIT();
    CU_PDL_LAUNCH();
    const int slot = warp / a.WR, sub = warp % a.WR, k = slot % a.R;
    const int64_t ne0 = a.w[0].ne0;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int i = 0; i < total; i++) {
        const int s = i % a.stages, gi = i / a.n_chunks, c = i % a.n_chunks;
        const int g = blockIdx.x + gi * gridDim.x;
        int m, lg;
        mb_group(a, g, &m, &lg);
        const int64_t ne1 = m == 0 ? a.w[0].ne1 : m == 1 ? a.w[1].ne1 : a.w[2].ne1;
        const int rows = (int)min((int64_t)a.R, ne1 - (int64_t)lg * a.R);
        mb_wait(&full[s], (uint32_t)(i / a.stages) & 1u);
        if (k < rows && !a.dry) {
            cu_wview v; // the stage's rows as a matrix of row length MB_CE
            v.q = sm + (size_t)s * a.stage_bytes;
            v.d = (const uint16_t *)(v.q + a.d_off);
            v.ne0 = MB_CE, v.ne1 = W, v.row_bytes = a.qb, v.type = 0;
            const int64_t e0 = (int64_t)c * MB_CE;
            const int n_units = (int)(min((int64_t)MB_CE, ne0 - e0) / Q::UNIT);
            for (int u = sub * 32 + lane; u < n_units; u += 32 * a.WR) {
                const typename Q::W wu = Q::template load<true>(v, slot, u);
#pragma unroll
                for (int t = 0; t < NT; t++)
                    if (NT == 1 || t < a.n_tok)
                        acc[t] += Q::dotw(wu, u, a.x.q + t * a.x.ne0 + e0, a.x.d + t * (a.x.ne0 / 32) + e0 / 32,
                                          a.x.s + t * (a.x.ne0 / 16) + e0 / 16);
            }
        }
        const bool last = c == a.n_chunks - 1;
        if (last) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= a.n_tok) break;
                float sum = acc[t];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
                if (lane == 0) red[gi & 1][warp][t] = sum;
                acc[t] = 0.0f;
            }
        }
        __syncthreads(); // buffer s is free; red holds the group's sums
        if (tid == 0 && i + a.stages < total) mb_issue<Q>(a, sm, full, i + a.stages);
        if (last && tid < a.R * a.n_tok) {
            const int k2 = tid % a.R, t = tid / a.R;
            if (k2 < rows) {
                float s0 = 0.0f, s1 = 0.0f;
                for (int j = 0; j < a.WR; j++) {
                    s0 += red[gi & 1][k2 * a.WR + j][t];
                    if (a.np == 2) s1 += red[gi & 1][(a.R + k2) * a.WR + j][t];
                }
                float *o = a.y[m] + (int64_t)t * ne1 + (int64_t)lg * a.R + k2;
                if (a.np == 2) *o = s0 / (1.0f + expf(-s0)) * s1; // as k_swiglu
                else *o = a.acc ? *o + s0 : s0;
            }
        }
    }
#else
    __trap(); // never launched below sm_90 (cu_mmvb checks)
#endif
}

// y[i] = x W[i]^T (nm matrices of one type and row length), or with sw: y[0] = silu(x W[0]^T) * (x W[1]^T).
template <class Q, int W, int NT>
static bool mb_launch(cu_impl *c, const cu_wview *const *w, int nm, bool sw, const cu_x8 &x, float *const *y,
                      int n_tok, bool acc) {
    const int64_t ne0 = w[0]->ne0, ce = ne0 < MB_CE ? ne0 : MB_CE, tail = ne0 % MB_CE;
    // every run the copies take (a row's q and d per chunk, the row strides) must be a multiple of 16 bytes
    const int64_t runs[] = {ce / Q::BE * Q::QBB, ce / Q::BE * Q::DBB, tail / Q::BE * Q::QBB, tail / Q::BE * Q::DBB,
                            ne0 / Q::BE * Q::QBB, ne0 / Q::BE * Q::DBB};
    if (ne0 % Q::BE || (ne0 > MB_CE && MB_CE % Q::BE)) return false;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        if (runs[i] % 16) return false;
    mb_args a = {};
    a.np = sw ? 2 : 1;
    auto groups = [&](int R) {
        int n = 0;
        for (int i = 0; i < (sw ? 1 : nm); i++) n += (int)((w[i]->ne1 + R - 1) / R);
        return n;
    };
    // the largest row group that still gives every SM a dozen groups (the last ones balance the SMs)
    int R = W / a.np;
    while (R > 1 && groups(R) < 12 * c->n_sm) R /= 2;
    a.R = R, a.WR = W / (a.np * R);
    for (int i = 0; i < 3; i++) a.w[i] = *w[i < nm ? i : 0];
    int ge = 0;
    for (int i = 0; i < 3; i++) {
        if (i < (sw ? 1 : nm)) ge += (int)((w[i]->ne1 + R - 1) / R);
        if (i == 0) a.ge0 = ge;
        if (i == 1) a.ge1 = ge;
    }
    a.n_groups = ge;
    a.n_chunks = (int)((ne0 + MB_CE - 1) / MB_CE);
    // slots: np * R rows per stage, each room for a full chunk (row length MB_CE in the stage's view)
    const unsigned slots = (unsigned)(a.np * R);
    a.qb = (unsigned)(MB_CE / Q::BE * Q::QBB), a.db = (unsigned)(MB_CE / Q::BE * Q::DBB);
    a.d_off = slots * a.qb;
    a.stage_bytes = slots * (a.qb + a.db);
    int stages = (int)((size_t)c->mvb_smem_kb * 1024 / a.stage_bytes);
    if (stages > MB_MAX_STAGES) stages = MB_MAX_STAGES;
    if (stages < 2) return false;
    a.stages = stages;
    a.n_tok = n_tok, a.acc = acc, a.x = x, a.dry = c->mvb_dry;
    for (int i = 0; i < 3; i++) a.y[i] = y[i < (sw ? 1 : nm) ? i : 0];
    const size_t smem = (size_t)stages * a.stage_bytes;
    static bool raised = false; // per kernel: the dynamic shared-memory limit, once
    if (!raised) {
        CU_CHECK(cudaFuncSetAttribute(k_mmvb<Q, W, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
        raised = true;
    }
    const int grid = a.n_groups < c->n_sm ? a.n_groups : c->n_sm;
    cu_launch(c, k_mmvb<Q, W, NT>, dim3((unsigned)grid), dim3(W * 32), smem, a);
    return true;
}

struct mb_dispatch {
    cu_impl *c;
    const cu_wview *const *w;
    int nm;
    bool sw;
    cu_x8 x;
    float *const *y;
    int n_tok;
    bool acc, ok;
    template <class Q> void run() {
        if (n_tok > 1) ok = mb_launch<Q, 8, CU_X8_ROWS>(c, w, nm, sw, x, y, n_tok, acc);
        else if (c->mvb_warps == 8) ok = mb_launch<Q, 8, 1>(c, w, nm, sw, x, y, n_tok, acc);
        else if (c->mvb_warps == 16) ok = mb_launch<Q, 16, 1>(c, w, nm, sw, x, y, n_tok, acc);
        else ok = mb_launch<Q, 32, 1>(c, w, nm, sw, x, y, n_tok, acc);
    }
};

bool cu_mmvb(cu_impl *c, const cu_wview *const *w, int nm, bool sw, const cu_x8 &x, float *const *y, int n_tok,
             bool acc) {
    if (!c->mvb_smem_kb || n_tok > CU_X8_ROWS) return false;
    mb_dispatch d = {c, w, nm, sw, x, y, n_tok, acc, false};
    return cu_dispatch_q8(*w[0], d) && d.ok;
}
