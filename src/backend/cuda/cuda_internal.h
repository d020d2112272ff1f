// cuda_internal.h — shared by the CUDA backend's .cu files only (it includes CUDA headers): status checks that
// report file:line, the backend's state, the device view of a weight, and the kernel launchers per file.
#ifndef LL_CUDA_INTERNAL_H
#define LL_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <stdio.h>

// The C headers use C11 spellings that C++ writes differently.
#define _Noreturn [[noreturn]]
#define _Static_assert static_assert
extern "C" {
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/half.h"
#include "types/quant.h"
}
#undef _Noreturn
#undef _Static_assert

// Ops return void, so a failing CUDA call inside an op is a broken invariant (device lost, bad launch): print
// file:line and the runtime's message, abort. Init and prepare report through ll_error instead (CU_TRY).
void cu_die(const char *file, int line, const char *call, const char *msg);
#define CU_CHECK(call)                                                                                         \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) cu_die(__FILE__, __LINE__, #call, cudaGetErrorString(e_));                     \
    } while (0)
// After a launch: launch errors are only visible through cudaGetLastError.
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())
// Inside a function returning ll_status with `ll_error *err` in scope.
#define CU_TRY(call)                                                                                           \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess)                                                                                 \
            return ll_err_set(err, LL_ERR_IO, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

// Programmatic dependent launch (Hopper, sm_90): a kernel launched with cu_launch may start while the kernel
// before it in the stream drains; it must execute CU_PDL_WAIT (wait for the previous grid to complete and its
// writes to be visible) in every block before it reads what earlier kernels wrote or writes anything. Before
// the wait it may only read constants (the weights; an L2 prefetch of them there measured 10-20% slower,
// registers did better: bench/NOTES.md). CU_PDL_LAUNCH then lets the next kernel start early in turn: placed
// after the wait, a kernel runs at most one grid ahead of the one it depends on. Both are no-ops when the
// kernel was launched without the attribute, and below sm_90.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define CU_PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define CU_PDL_LAUNCH() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define CU_PDL_WAIT() ((void)0)
#define CU_PDL_LAUNCH() ((void)0)
#endif

// A weight on the device. The quantized types are repacked at upload into two arrays (every block's quants, in
// order; then the blocks' scales in order: an fp16 d, for Q4_K/Q5_K 16 bytes) so the quants are aligned; the
// float types keep GGUF layout.
typedef struct cu_wview {
    const uint8_t *q;  // quants (or the raw rows)
    const uint16_t *d; // repacked types: the scales (cu_repack_scale bytes per block), rows after rows; else NULL
    int64_t ne0, ne1;
    size_t row_bytes; // GGUF bytes per row (for the layouts kept as is)
    uint32_t type;
} cu_wview;

typedef struct cu_weight {
    const void *host; // the key: ll_weight.data
    cu_wview v;
    size_t bytes;     // device bytes
} cu_weight;

// cuBLAS entry points, opened with dlopen (see cuda.cu for why); NULL gemm = not available.
typedef struct cu_blas {
    decltype(&cublasCreate) create;
    decltype(&cublasDestroy) destroy;
    decltype(&cublasSetStream) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    cublasStatus_t (*gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                           const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                           cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasHandle_t h;
} cu_blas;

// x rows quantized for the int8 matvec (matvec_q8.cu), n rows of ne0 (a multiple of 32): codes q (n, ne0);
// d (n, ne0/32) with x ~ d * q per block of 32; s (n, ne0/16) = d * (sum of 16 codes), the min term of Q4_K/Q5_K.
typedef struct cu_x8 {
    int8_t *q;
    float *d, *s;
    int64_t ne0;
} cu_x8;
// A pending RMSNorm (op_matmul_add_rmsnorm on the int8 path, matvec_q8.cu): y = x / rms(x) * g is not written.
// The x8 copy holds the int8 codes of x * g, which are y's codes up to the common factor 1/rms, and part the sums
// of squares of x per 32 values (n_part = n / 32 per token). An int8 matvec reading y takes it so (its sums times
// 1/rms, cu_norm_inv_warp); any other access to y or x writes y first (cu_norm_settle, cuda.cu).
typedef struct cu_norm_in {
    const float *part; // NULL: no pending norm (x8 is x itself)
    int n_part, n;
    float eps;
} cu_norm_in;
#define CU_X8_ROWS 8 // tokens quantized per pass (batches from CU_GEMM_MIN_TOK_QUANT tokens take the GEMM)
// Quantized weights: batches below this many tokens take the int8 matvec (matvec_q8.cu) in passes of CU_X8_ROWS
// tokens, from it cuBLAS on the whole matrix dequantized to f16 (matmul.cu). The dequantization reads the quants,
// writes 2 bytes per element and the GEMM reads them again (~4.6 bytes per Q4_0 element), where each int8 pass
// streams the ~0.56 bytes per element once (a pass's token blocks read the same rows, the later ones mostly from
// L2): 9..16 tokens (decode of up to 16 sequences) take two passes, ~1.1 bytes per element, instead of the GEMM
// (expected: a 16-token step's matmuls about twice an 8-token step's, not measured yet). F16/BF16/F32 weights go
// to the GEMM from 2 tokens on.
#define CU_GEMM_MIN_TOK_QUANT (2 * CU_X8_ROWS + 1)

// A warp quantizes block b of 32 values (lane i holds value i) into o: amax over the warp, codes round-to-nearest-
// even of v * 127/amax, the scale and the two 16-sums. The host reference is cu_x8_quantize_block (cuda_q8.h).
#ifdef __CUDACC__
__device__ __forceinline__ void cu_x8_store_warp(float v, const cu_x8 &o, int64_t b, int lane) {
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
// RMSNorm's scale from a row's sum of squares ss over n values: 1 / sqrt(ss / n + eps), in double (k_rmsnorm and
// the pending norm's readers alike).
__device__ __forceinline__ float cu_rms_scale(float ss, int n, float eps) {
    return (float)(1.0 / sqrt((double)ss / n + eps));
}

// 1/rms of token tok's row from the partial sums of squares: every lane gets the same value (xor butterfly).
__device__ __forceinline__ float cu_norm_inv_warp(const cu_norm_in &ni, int tok, int lane) {
    const float *p = ni.part + (int64_t)tok * ni.n_part;
    float s = 0.0f;
    for (int i = lane; i < ni.n_part; i += 32) s += p[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return cu_rms_scale(s, ni.n, ni.eps);
}
#endif

// RoPE's arithmetic, shared by k_rope / k_rope_kv (ops.cu) and the q/k/v matvecs that rotate their own outputs:
// theta_j = base^(-2j/n_rot) / ff[j] in double; the angle pos * theta in double, reduced mod 2 pi, then sincosf of
// the reduced angle (|error| ~1e-7 at any position), as the CPU does.
#define ROPE_MAX_HALF 128 // head_dim <= 256
#ifdef __CUDACC__
__device__ __forceinline__ double cu_rope_theta(int j, int n_rot, float base, const float *__restrict__ ff) {
    double t = exp2(-2.0 * j / n_rot * log2((double)base));
    return ff ? t / ff[j] : t;
}
__device__ __forceinline__ void cu_rope_sincos(int pos, double theta, float *sn, float *cs) {
    double ang = (double)pos * theta;
    const double two_pi = 6.283185307179586476925286766559;
    ang -= floor(ang / two_pi) * two_pi;
    sincosf((float)ang, sn, cs);
}
#endif

// Where a launch's tokens sit in the KV cache: ll_batch_pos on the device side. Token t is at position pos(t) of
// the sequence whose first cache row is row0(t): pos[t] and row0[t] from device arrays when they are set (a recorded
// step, or tokens of several sequences), else n_past + t and r0 (one sequence, host values). multi: the tokens are
// not one run of one sequence (attention takes each token on its own: k_attn_split*'s per-token blocks).
typedef struct cu_bpos {
    const int32_t *pos, *row0;
    int n_past, r0;
    bool multi;
} cu_bpos;
#ifdef __CUDACC__
__device__ __forceinline__ int cu_bp_pos(const cu_bpos &b, int t) { return b.pos ? b.pos[t] : b.n_past + t; }
__device__ __forceinline__ int cu_bp_row0(const cu_bpos &b, int t) { return b.row0 ? b.row0[t] : b.r0; }
// A cache value: f32, or f16 rounded to nearest even (__float2half_rn, as ll_fp32_to_fp16 on the host).
__device__ __forceinline__ void cu_kv_put(void *cache, bool f16, int64_t i, float v) {
    if (f16) ((__half *)cache)[i] = __float2half_rn(v);
    else ((float *)cache)[i] = v;
}
// A Q8_0 cache block (34 bytes: fp16 d, 32 int8 codes) from 32 values, lane i holding value i: the arithmetic of
// ll_quant_from_float_ref_q8_0 (src/types) bit for bit: amax (NaN left out), d = amax / 127, codes roundf(x * (1/d))
// (0 outside -128.5 .. 127.5 and for NaN), d rounded to fp16 to nearest even. blk: 2-byte aligned.
__device__ __forceinline__ void cu_q8_0_store_warp(float x, uint8_t *blk, int lane) {
    float amax = fmaxf(0.0f, fabsf(x));
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, s));
    const float d = amax / 127, id = d != 0.0f ? 1.0f / d : 0.0f;
    const float f = x * id;
    blk[2 + lane] = (uint8_t)(int8_t)(f > -128.5f && f < 127.5f ? (int)roundf(f) : 0);
    if (lane == 0) *(__half *)blk = __float2half_rn(d);
}
#endif
// Q8_0 cache rows as the attention kernels' template argument (F32 and F16 rows are float and __half).
struct cu_q8c {};

// What a q/k/v matvec needs to finish the attention block's first half itself (op_qkv_rope_store): RoPE of the
// q and k rows (pairs (2j, 2j+1), both in one block of rows) at each token's position, and k, v into the caches'
// rows of those positions (bp; tok0: the launch's first token within bp, for passes of CU_X8_ROWS tokens).
typedef struct cu_rope_epi {
    void *kc, *vc;          // this layer's caches (every row), rows of kvd values: f16 when f16, else f32
    const float *ff;        // NULL or n_rot/2 frequency divisors (device)
    cu_bpos bp;
    int tok0, hd, n_rot, kvd;
    float base;
    bool f16;
} cu_rope_epi;
#ifdef __CUDACC__
// Row r (of matrix `which`: 0 q, 1 k, 2 v) of token tok is s; its RoPE partner row r ^ 1 is sp. Stores the row,
// rotated for q and k, to o and for k and v to the cache. After the kernel's wait (reads bp's arrays).
__device__ __forceinline__ void cu_rope_store(const cu_rope_epi &e, int which, int tok, int64_t r, float s, float sp,
                                              float *o) {
    const int pos = cu_bp_pos(e.bp, e.tok0 + tok), d = (int)(r % e.hd);
    float v = s;
    if (which < 2 && d < e.n_rot) {
        float sn, cs;
        cu_rope_sincos(pos, cu_rope_theta(d >> 1, e.n_rot, e.base, e.ff), &sn, &cs);
        v = (d & 1) ? sp * sn + s * cs : s * cs - sp * sn; // (a, b) -> (a cos - b sin, a sin + b cos)
    }
    *o = v;
    if (which > 0)
        cu_kv_put(which == 1 ? e.kc : e.vc, e.f16, ((int64_t)cu_bp_row0(e.bp, e.tok0 + tok) + pos) * e.kvd + r, v);
}
#endif

#define CU_ID_SLOTS 8 // ring of pinned slots for host int arrays (token ids, positions) sent to the device
#define CU_STEP_MAX 16 // most tokens of a step recorded as a graph (decode of up to 16 sequences)
#define CU_BP_SLOTS 8  // ring of device slots for batch positions (bp_upload, cuda.cu)
#define CU_GRAPHS 32   // recorded steps kept: (context, n_tok, shape)

typedef struct cu_impl {
    int dev;
    cudaStream_t stream;
    int n_sm;
    // weights: one device allocation, a table sorted by host pointer
    void *wmem;
    cu_weight *w;
    int n_w;
    // scratch, sized in prepare
    void *deq;          // (largest matrix) f16/bf16: a quantized weight dequantized for the prefill GEMM
    size_t deq_bytes;
    void *xh;           // (max_tok, largest ne0) f16/bf16: activations converted for the GEMM
    size_t xh_bytes;
    float *attn_part;   // flash-decoding partials: (n_split, n_tok, n_head, head_dim + 2)
    size_t attn_part_floats;
    cu_x8 x8;           // (CU_X8_ROWS, largest ne0): ne0 here is the capacity
    cu_x8 x8b;          // a second one: gate/up + SwiGLU writes its output's int8 copy there, then the two swap
    void *x8_mem;       // both
    bool pdl;           // programmatic dependent launch (sm_90 and later; LLMLAB_CUDA_PDL=0 turns it off)
    int mvq_rows;       // rows per block of the single int8 matvec (LLMLAB_CUDA_MVQ_ROWS 2, 4, 8; 0: per type)
    int mv_rows;        // rows per block of the float matvecs (2, 4 or 8; LLMLAB_CUDA_MV_ROWS, default 2)
    bool mv_preload;    // int8 matvecs load their first weights before waiting for x (LLMLAB_CUDA_PRELOAD=0: not)
    bool swiglu_q8;     // gate/up + SwiGLU also quantizes its output (LLMLAB_CUDA_NOFUSE=swq8: k_quant_x8 does)
    bool mv_mixed;      // k_mmvq3 takes a v of its own type (Q6_K with Q4_K/Q5_K; LLMLAB_CUDA_NOFUSE=mixed: not)
    bool fuse_norm;     // op_matmul_add_rmsnorm leaves the norm pending for int8 readers (LLMLAB_CUDA_NOFUSE=norm: not)
    float *norm_part;   // (CU_X8_ROWS, max ne0 / 32): the pending norm's sums of squares
    int an_warps;       // warps per 32-row block of the residual matvec + norm (LLMLAB_CUDA_AN_WARPS; 0: by type)
    int an_ks;          // warps sharing a row group there (LLMLAB_CUDA_AN_KS: 1, 2, 4; 0: by type)
    int an_only;        // 0: o and down, 1: o (rows no longer than the output), 2: down (LLMLAB_CUDA_AN_ONLY)
    struct {
        bool on;
        float *y;
        float *x;
        const float *g;
        int n, n_tok;
        float eps;
    } pend;             // the pending norm (cu_norm_in above)
    bool attn_dec2;     // k_attn_split2 (keys of a tile scored in parallel; LLMLAB_CUDA_NOFUSE=attn2: the key-serial one)
    bool fuse_rope;     // the q/k/v matvec rotates and caches its rows (op_qkv_rope_store; NOFUSE=rope: not)
    int gemm_min_q;     // CU_GEMM_MIN_TOK_QUANT, or LLMLAB_CUDA_GEMM_MIN_TOK (a knob for bench_cuda_mv --tok: 9 was
                        // the switch before two int8 passes took 9..16 tokens)
    int max_tok, max_ctx;
    size_t max_ne0;     // the longest weight row (at least 4096): the scratch's row length
    // host int arrays -> device: pinned slots + device slots + an event per slot
    int32_t *ids_pinned, *ids_dev;
    cudaEvent_t ids_ev[CU_ID_SLOTS];
    int ids_next;
    // batches' positions and first rows (ll_batch_pos of several sequences) on the device: a ring of CU_BP_SLOTS
    // slots of 2 max_tok ints each in bp_dev (n positions, then n first rows), filled from bp_pin; bp_host: what each
    // slot holds (bp_n[slot] tokens; 0: nothing), so that the ops of a step (the store and attention, or its
    // segments, in every layer) find theirs there after the first layer instead of sending them again
    int32_t *bp_pin, *bp_dev, *bp_host;
    int bp_n[CU_BP_SLOTS];
    cudaEvent_t bp_ev[CU_BP_SLOTS];
    int bp_next;
    cu_blas blas;
    char blas_why[256];
    // int8 x of the last quantized matmul input: the next matmul on the same x (q/k/v, gate/up) reuses it.
    // Every op other than a matmul forgets it (cu_x8_forget), as does a matmul whose output overlaps it.
    const float *x8_src;
    int x8_ntok;
    int64_t x8_ne0;
    // Likewise the f16/bf16 copy of the last GEMM input (xh): nx values of xh_src, bf16 when xh_bf.
    const float *xh_src;
    size_t xh_n;
    bool xh_bf;
    // Decode-like steps (up to CU_STEP_MAX tokens) recorded as CUDA graphs (step_begin/step_end), one per (key,
    // n_tok, single) in graph_tab: while recording, and at every replay, the ops read the token ids, positions and
    // first rows from step_dev (ids, pos, row0: CU_STEP_MAX each, copied from step_pin before each step) instead of
    // their host arguments; step_pos/step_row0 keep the host copy of the step being recorded.
    bool graphs;            // LLMLAB_CUDA_GRAPHS=0 turns them off
    int graph_max;          // most tokens of a recorded step: CU_STEP_MAX, or LLMLAB_CUDA_GRAPH_MAX (1: decode of
                            // one sequence only, as before several sequences)
    bool recording;
    int32_t *step_pin;      // pinned: ids, pos, row0
    int32_t *step_dev;      // device copy
    cudaEvent_t step_ev;    // the last copy from step_pin
    int step_ntok;
    bool step_single;
    int32_t step_pos[CU_STEP_MAX], step_row0[CU_STEP_MAX];
    const void *step_key;
    struct {
        const void *key;
        int n_tok;
        bool single;
        cudaGraphExec_t exec;
        uint64_t used;      // graph_clock at the last replay (the least recently used goes when the table is full)
    } graph_tab[CU_GRAPHS];
    uint64_t graph_clock;
    uint64_t *topk_buf;     // topk.cu's scratch: two halves of topk_bytes
    size_t topk_bytes;
    uint64_t *topk_host;    // pinned: the result's keys (LL_BACKEND_TOPK_MAX)
} cu_impl;

// kernel<<<g, b, smem, c->stream>>>(a...), with the programmatic-dependent-launch attribute when c->pdl: the
// kernel must then follow the CU_PDL_WAIT rule above.
template <class... P, class... A>
static inline void cu_launch(cu_impl *c, void (*k)(P...), dim3 g, dim3 b, size_t smem, A... a) {
    if (!c->pdl) {
        k<<<g, b, smem, c->stream>>>(a...);
        CU_LAUNCHED();
        return;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = g, cfg.blockDim = b, cfg.dynamicSmemBytes = smem, cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 1;
    CU_CHECK(cudaLaunchKernelEx(&cfg, k, ((P)a)...));
}

static inline cu_impl *cu_of(ll_backend *b) { return (cu_impl *)b->impl; }
static inline void cu_x8_forget(cu_impl *c) { c->x8_src = c->xh_src = NULL; }
// The recorded step's arrays on the device (while recording: what the graph reads at each replay).
static inline const int32_t *cu_step_ids(const cu_impl *c) { return c->step_dev; }
static inline const int32_t *cu_step_pos(const cu_impl *c) { return c->step_dev + CU_STEP_MAX; }
static inline const int32_t *cu_step_row0(const cu_impl *c) { return c->step_dev + 2 * CU_STEP_MAX; }
// Bytes of one cache row of kvd values: F32, F16, or Q8_0 (kvd % 32 == 0: 34-byte blocks of 32).
static inline size_t cu_kv_row_bytes(uint32_t type, int kvd) {
    LL_ASSERT(type == LL_TYPE_F32 || type == LL_TYPE_F16 || (type == LL_TYPE_Q8_0 && kvd % 32 == 0));
    return type == LL_TYPE_Q8_0 ? (size_t)kvd / 32 * 34 : (size_t)kvd * (type == LL_TYPE_F16 ? 2 : 4);
}

// topk.cu: backend.h's topk (-1: its scratch could not be allocated).
int cu_topk(cu_impl *c, const float *x, int n, int k, float *vals, int32_t *ids);

// cuda.cu: the device view of a weight uploaded in prepare (panics with its name when it was not).
const cu_wview *cu_weight_find(cu_impl *c, const ll_weight *w);
// upload.cu: upload every weight, size the scratch (prepare); cuda.cu frees it all (cu_release).
ll_status cu_prepare(cu_impl *c, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, ll_error *err);
void cu_release(cu_impl *c);
// upload.cu: grow the scratch that depends on the batch (xh, attention partials, id slots, bp arrays) to max_tok
// tokens (never shrinks; the stream is synchronized first). LL_ERR_NOMEM with the numbers.
ll_status cu_reserve(cu_impl *c, int max_tok, int max_ctx, ll_error *err);
// upload.cu: device bytes prepare + reserve take for ws at max_tok tokens (weights' copies + scratch).
uint64_t cu_plan_bytes(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx);
// upload.cu: the repacked layout (cu_wview): which types, payload and scale bytes per block, and n GGUF blocks at
// src -> payloads at q (n * payload bytes) and scales at d (n * scale bytes). Host code.
bool cu_repacked(uint32_t type);
size_t cu_repack_payload(uint32_t type);
size_t cu_repack_scale(uint32_t type);
void cu_repack_blocks(uint32_t type, const uint8_t *src, size_t n, uint8_t *q, uint8_t *d);
// cuda.cu: copy n host ints to a device slot (stream-ordered; the host array may change right after).
const int32_t *cu_ids_to_device(cu_impl *c, const int32_t *ids, int n);

// matmul.cu
bool cu_matmul_supports(uint32_t type);
// acc: y += x W^T instead of y = x W^T
void cu_matmul(cu_impl *c, const cu_wview *w, const float *x, float *y, int n_tok, bool acc);
// g = silu(x Wg^T) * (x Wu^T): one launch for decode where the types allow, else two matmuls (u as scratch) and
// the SwiGLU kernel
void cu_matmul_swiglu(cu_impl *c, const cu_wview *wg, const cu_wview *wu, const float *x, float *g, float *u,
                      int n_tok);
// y_i = x W_i^T for one token and three float matrices of one type and row length (q, k, v): one launch
// re: also RoPE of q and k and the cache store (cu_rope_epi; head_dim even), else NULL
bool cu_matvec3_ok(const cu_wview *const w[3], int n_tok);
void cu_matvec3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], const cu_rope_epi *re);
// matvec_q8.cu: the int8-activation matvec of the quantized types (n_tok rows of x, any count).
bool cu_mmvq_supports(uint32_t type);
void cu_mmvq(cu_impl *c, const cu_wview *w, const float *x, float *y, int n_tok, bool acc);
// y_i = x W_i^T for three matrices of one row length (q, k, v; v may be Q6_K beside Q4_K/Q5_K), one launch;
// cu_mmvq3_ok says when.
// re: also RoPE of q and k and the cache store (cu_rope_epi; head_dim a multiple of 4), else NULL.
bool cu_mmvq3_ok(const cu_impl *c, const cu_wview *const w[3], int n_tok);
void cu_mmvq3(cu_impl *c, const cu_wview *const w[3], const float *x, float *const y[3], int n_tok,
              const cu_rope_epi *re);
// g = silu(x Wg^T) * (x Wu^T) in one launch per CU_X8_ROWS tokens (Wg, Wu: same type and shape)
void cu_mmvq_swiglu(cu_impl *c, const cu_wview *wg, const cu_wview *wu, const float *x, float *g, int n_tok);
// y (n, ne0) = rows ids (device memory, n of them) of w dequantized to f32.
void cu_dequant_rows(cu_impl *c, const cu_wview *w, const int32_t *ids, int n, float *y);

// y = x W^T added to x, then the norm of x left pending for y (cu_norm_in): false (nothing done) where the int8
// path does not apply (type, n_tok > CU_X8_ROWS, w.ne1 % 32, knob)
bool cu_mmvq_add_norm(cu_impl *c, const cu_wview *w, const float *in, float *x, const float *g, float *y, int n_tok,
                      float eps);
// cuda.cu: the pending norm's reader: its cu_norm_in when the int8 matvec about to read x (n_tok rows of ne0) may take
// y's codes as they are, else writes y first (if a norm is pending) and returns {NULL}.
cu_norm_in cu_norm_take(cu_impl *c, const float *x, int n_tok, int64_t ne0);
// writes the pending norm's y (one launch), if any
void cu_norm_settle(cu_impl *c);
// an op is about to touch n bytes at p: a pending norm whose x or y they overlap is written first
void cu_norm_guard(cu_impl *c, const void *p, size_t n);

// ops.cu
// y = x * (1/rms from part) * g for the pending norm
void cu_norm_apply(cu_impl *c, float *y, const float *x, const float *g, const cu_norm_in &ni, int n_tok);
void cu_rmsnorm(cu_impl *c, float *y, const float *x, const float *g, int n, int n_tok, float eps);
void cu_add_bias(cu_impl *c, float *x, const float *bias, int n, int n_tok);
// x's rows rotated at positions pos_dev[t] (device), or pos0 + t when pos_dev is NULL
void cu_rope(cu_impl *c, float *x, const int32_t *pos_dev, int pos0, int n_tok, const ll_rope_params *p,
             const float *freq_dev);
// cache rows row0(t) + pos(t) (bp) = k, v (n_tok, kvd), converted to ctype (F32, F16, Q8_0)
void cu_kv_store(cu_impl *c, void *kc, void *vc, uint32_t ctype, const float *k, const float *v, int kvd, int n_tok,
                 const cu_bpos &bp);
// rope q and k at each token's position, then its cache rows = k, v (ctype): one launch
void cu_rope_kv_store(cu_impl *c, float *q, float *k, const float *v, void *kc, void *vc, uint32_t ctype,
                      const cu_bpos &bp, int n_tok, const ll_rope_params *p, int n_head_kv, const float *freq_dev);
void cu_swiglu(cu_impl *c, float *g, const float *u, int n, int n_tok);
// the same from f16 gate and up values (the batch GEMMs' outputs)
void cu_swiglu_h(cu_impl *c, float *g, const __half *gh, const __half *uh, int n, int n_tok);
void cu_add(cu_impl *c, float *y, const float *x, size_t n);

// attention_mma.cu: batches of at least CU_ATTN_MMA_MIN_TOK tokens with head_dim 64 or 128 on the tensor cores
// (f16 operands); false: not taken (attention.cu's f32 kernels then run).
#define CU_ATTN_MMA_MIN_TOK 16
// One sequence: kc, vc point at its first row (rows of ctype: F32, F16, Q8_0), positions n_past .. n_past + n_tok - 1.
bool cu_attention_mma(cu_impl *c, float *out, const float *q, const void *kc, const void *vc, uint32_t ctype,
                      int n_tok, int n_past, const ll_attn_params *p);
// attention.cu: q (n_tok rows) over the cache (every row, of ctype) at bp's positions; max_keys: the most keys any
// token sees (pos + 1), for the split count (a recorded step: the cache's n_ctx)
void cu_attention(cu_impl *c, float *out, const float *q, const void *kc, const void *vc, uint32_t ctype, int n_tok,
                  const cu_bpos &bp, int max_keys, const ll_attn_params *p);

#endif
