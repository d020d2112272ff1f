// hw_cuda_attn.cu — a library stand-in for GPU attention until the engine's CUDA backend exists: per head,
// S = Q K^T / sqrt(d) (cuBLAS strided-batched GEMM, fp32 out), a row softmax kernel (causal mask optional) to
// P in fp16/bf16, O = P V (cuBLAS). Labelled "cuBLAS stand-in, not the engine's kernel" everywhere it is shown.
#include "bench/hw_cuda_util.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

#include "core/half.h"

#define SM_THREADS 256

__device__ inline void to_out(float v, __half *p) { *p = __float2half(v); }
__device__ inline void to_out(float v, __nv_bfloat16 *p) { *p = __float2bfloat16(v); }

__device__ float block_reduce(float v, bool is_max) {
    __shared__ float sh[SM_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = sh[0];
    for (int i = 1; i < SM_THREADS / 32; i++) r = is_max ? fmaxf(r, sh[i]) : r + sh[i];
    __syncthreads(); // sh is reused by the next call
    return r;
}

// One block per row of S (rows = heads_in_chunk * seq, each seq long): P = softmax(S row), with keys j > i
// masked for causal (i = the row's query position).
template <class T>
__global__ void k_softmax(const float *__restrict__ S, T *__restrict__ P, int seq, int causal) {
    size_t row = blockIdx.x;
    int i = (int)(row % (size_t)seq);
    const float *s = S + row * (size_t)seq;
    T *p = P + row * (size_t)seq;
    int lim = causal ? i + 1 : seq;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < lim; j += SM_THREADS) mx = fmaxf(mx, s[j]);
    mx = block_reduce(mx, true);
    float sum = 0;
    for (int j = threadIdx.x; j < lim; j += SM_THREADS) sum += __expf(s[j] - mx);
    sum = block_reduce(sum, false);
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < seq; j += SM_THREADS) to_out(j < lim ? __expf(s[j] - mx) * inv : 0.0f, &p[j]);
}

typedef struct attn_res {
    const hw_blas *B;
    cublasHandle_t h;
    cudaStream_t s;
    uint16_t *q, *k, *v, *o;   // (heads, seq, hd) fp16 or bf16
    float *S;                  // (chunk, seq, seq)
    uint16_t *P;               // (chunk, seq, seq)
    uint16_t *hq, *hk, *hv;
} attn_res;

static void attn_res_free(attn_res *r) {
    cudaFree(r->q); cudaFree(r->k); cudaFree(r->v); cudaFree(r->o); cudaFree(r->S); cudaFree(r->P);
    free(r->hq); free(r->hk); free(r->hv);
    r->q = r->k = r->v = r->o = r->P = NULL;
    r->S = NULL;
    r->hq = r->hk = r->hv = NULL;
    cudaGetLastError();
}

static float h2f(uint16_t x, bool bf) { return bf ? ll_bf16_to_fp32(x) : ll_fp16_to_fp32(x); }

// Reference output row (query i of head h) in double, from the same half inputs; returns the largest
// |O - ref| over the row.
static double attn_ref_err(const attn_res *r, const uint16_t *orow, int h, int i, int seq, int hd, bool bf, bool causal) {
    int lim = causal ? i + 1 : seq;
    double scale = 1.0 / sqrt((double)hd), mx = -INFINITY, sum = 0, worst = 0;
    double *sc = (double *)malloc((size_t)lim * sizeof(double)), *acc = (double *)calloc((size_t)hd, sizeof(double));
    if (!sc || !acc) { free(sc); free(acc); return INFINITY; }
    const uint16_t *q = r->hq + ((size_t)h * seq + i) * hd;
    for (int j = 0; j < lim; j++) {
        const uint16_t *k = r->hk + ((size_t)h * seq + j) * hd;
        double d = 0;
        for (int c = 0; c < hd; c++) d += (double)h2f(q[c], bf) * h2f(k[c], bf);
        sc[j] = d * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    for (int j = 0; j < lim; j++) sum += (sc[j] = exp(sc[j] - mx));
    for (int j = 0; j < lim; j++) {
        const uint16_t *v = r->hv + ((size_t)h * seq + j) * hd;
        for (int c = 0; c < hd; c++) acc[c] += sc[j] / sum * h2f(v[c], bf);
    }
    for (int c = 0; c < hd; c++) {
        double e = fabs(h2f(orow[c], bf) - acc[c]);
        if (!isnan(worst) && !(e <= worst)) worst = e; // a NaN stays: a failure
    }
    free(sc);
    free(acc);
    return worst;
}

typedef struct attn_cfg {
    int seq, hd, heads, chunk;
    bool bf, causal;
} attn_cfg;

static bool attn_launch(attn_res *r, const attn_cfg *c, char *why, size_t whycap) {
    cudaDataType_t t = c->bf ? CUDA_R_16BF : CUDA_R_16F;
    long long sq = (long long)c->seq * c->seq, sd = (long long)c->seq * c->hd;
    float scale = 1.0f / sqrtf((float)c->hd), one = 1.0f, zero = 0.0f;
    for (int h0 = 0; h0 < c->heads; h0 += c->chunk) {
        int nb = c->heads - h0 < c->chunk ? c->heads - h0 : c->chunk;
        size_t off = (size_t)h0 * (size_t)sd;
        // S (col-major seq_k x seq_q, i.e. row-major [i][j]) = K^T Q, per head.
        CKB(r->B->gemm_strided_batched(r->h, CUBLAS_OP_T, CUBLAS_OP_N, c->seq, c->seq, c->hd, &scale, r->k + off, t,
                                       c->hd, sd, r->q + off, t, c->hd, sd, &zero, r->S, CUDA_R_32F, c->seq, sq, nb,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        unsigned rows = (unsigned)((size_t)nb * c->seq);
        if (c->bf) k_softmax<<<rows, SM_THREADS, 0, r->s>>>(r->S, (__nv_bfloat16 *)r->P, c->seq, c->causal);
        else k_softmax<<<rows, SM_THREADS, 0, r->s>>>(r->S, (__half *)r->P, c->seq, c->causal);
        CK_LAUNCH();
        // O (col-major hd x seq_q) = V (hd x seq_k) P (seq_k x seq_q), per head.
        CKB(r->B->gemm_strided_batched(r->h, CUBLAS_OP_N, CUBLAS_OP_N, c->hd, c->seq, c->seq, &one, r->v + off, t,
                                       c->hd, sd, r->P, t, c->seq, sq, &zero, r->o + off, t, c->hd, sd, nb,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return true;
}

static bool attn_one(attn_res *r, attn_cfg *c, double min_time, ll_hw_meas *m, char *why, size_t whycap) {
    size_t n = (size_t)c->heads * c->seq * c->hd, sq = (size_t)c->seq * c->seq;
    memset(m, 0, sizeof *m);
    snprintf(m->kind, sizeof m->kind, "%s", c->causal ? "causal" : "full");
    snprintf(m->dtype, sizeof m->dtype, "%s", c->bf ? "bf16" : "fp16");
    snprintf(m->impl, sizeof m->impl, "cuBLAS stand-in, not the engine's kernel (GEMM + softmax + GEMM)");
    m->m = c->seq;
    m->n = c->hd;
    m->k = c->heads;
    m->work = 4.0 * (double)sq * c->hd * c->heads * (c->causal ? 0.5 : 1.0);
    m->err = NAN;
    m->tol = 1e-2;
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    size_t budget = fr / 4 < ((size_t)16 << 30) ? fr / 4 : ((size_t)16 << 30); // S + P of one chunk of heads
    size_t per_head = sq * (sizeof(float) + 2);
    c->chunk = (int)(budget / per_head);
    if (c->chunk > c->heads) c->chunk = c->heads;
    if (c->chunk < 1) {
        m->validated = -1;
        hw_note(m, "skipped: one head's scores (%zu MiB) do not fit a quarter of free memory", per_head >> 20);
        return true;
    }
    r->hq = (uint16_t *)malloc(n * 2);
    r->hk = (uint16_t *)malloc(n * 2);
    r->hv = (uint16_t *)malloc(n * 2);
    if (!r->hq || !r->hk || !r->hv) return hw_fail(why, whycap, __FILE__, __LINE__, "malloc", "out of host memory");
    uint64_t s = 99 + (uint64_t)c->seq;
    uint16_t *hs[3] = {r->hq, r->hk, r->hv};
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull; // LCG: plenty for test inputs
            float u = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
            hs[a][i] = c->bf ? ll_fp32_to_bf16(u) : ll_fp32_to_fp16(u);
        }
    CK(cudaMalloc(&r->q, n * 2));
    CK(cudaMalloc(&r->k, n * 2));
    CK(cudaMalloc(&r->v, n * 2));
    CK(cudaMalloc(&r->o, n * 2));
    CK(cudaMalloc(&r->S, (size_t)c->chunk * sq * sizeof(float)));
    CK(cudaMalloc(&r->P, (size_t)c->chunk * sq * 2));
    CK(cudaMemcpy(r->q, r->hq, n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(r->k, r->hk, n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(r->v, r->hv, n * 2, cudaMemcpyHostToDevice));
    // poison (NaN in both formats), on the stream the products run on: a legacy-stream memset is not ordered
    // with a non-blocking stream (it once landed after the products: NaN at seq 512)
    CK(cudaMemsetAsync(r->o, 0xff, n * 2, r->s));
    if (!attn_launch(r, c, why, whycap)) return false;
    CK(cudaStreamSynchronize(r->s));
    // Check rows 0, seq/2, seq-1 of the first and last heads.
    double worst = 0;
    uint16_t orow[256];
    int rows[3] = {0, c->seq / 2, c->seq - 1}, heads[2] = {0, c->heads - 1};
    for (int hi = 0; hi < 2; hi++)
        for (int ri = 0; ri < 3; ri++) {
            CK(cudaMemcpy(orow, r->o + ((size_t)heads[hi] * c->seq + rows[ri]) * c->hd, (size_t)c->hd * 2, cudaMemcpyDeviceToHost));
            double e = attn_ref_err(r, orow, heads[hi], rows[ri], c->seq, c->hd, c->bf, c->causal);
            if (!isnan(worst) && !(e <= worst)) worst = e; // a NaN stays: a failure
        }
    m->err = worst;
    m->validated = worst <= m->tol ? 1 : 0;
    if (!m->validated) {
        hw_note(m, "validation failed: max |O - ref| %.3g > %.3g; not timed", worst, m->tol);
        return true;
    }
    auto launch = [&]() -> bool { return attn_launch(r, c, why, whycap); };
    if (!hw_time_gpu(launch, r->s, min_time, &m->t, why, whycap)) return false;
    hw_note(m, "heads in chunks of %d; causal runs the full square GEMMs (counted flops are half)", c->chunk);
    return true;
}

static bool attn_all(int dev, const int *seqs, int n_seqs, int heads, double min_time, attn_res *r, ll_hw_meas *out,
                     int cap, int *n, char *why, size_t whycap) {
    CK(cudaSetDevice(dev));
    CK(cudaStreamCreateWithFlags(&r->s, cudaStreamNonBlocking));
    if (!(r->B = hw_blas_get(why, whycap))) return false;
    CKB(r->B->p_cublasCreate(&r->h));
    CKB(r->B->p_cublasSetStream(r->h, r->s));
    static const int hds[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++)
        for (int bf = 0; bf < 2; bf++)
            for (int causal = 1; causal >= 0; causal--)
                for (int si = 0; si < n_seqs && *n < cap; si++) {
                    attn_cfg c = {seqs[si], hds[hi], heads, 0, bf != 0, causal != 0};
                    bool ok = attn_one(r, &c, min_time, &out[*n], why, whycap);
                    attn_res_free(r);
                    if (!ok) return false;
                    (*n)++;
                }
    return true;
}

extern "C" int ll_hw_cuda_attention(int dev, const int *seqs, int n_seqs, int heads, double min_time, ll_hw_meas *out,
                                    int cap, char *why, size_t whycap) {
    attn_res r;
    memset(&r, 0, sizeof r);
    int n = 0;
    bool ok = attn_all(dev, seqs, n_seqs, heads, min_time, &r, out, cap, &n, why, whycap);
    attn_res_free(&r);
    if (r.h) r.B->p_cublasDestroy(r.h);
    if (r.s) cudaStreamDestroy(r.s);
    cudaGetLastError();
    return ok ? n : -1;
}
