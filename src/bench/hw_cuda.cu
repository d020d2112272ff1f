// hw_cuda.cu — the hardware lab on a CUDA device: device facts, the largest-allocation probe, device memory
// bandwidth (read/write/copy/triad kernels), host<->device copies, and launch/synchronisation costs.
#include "bench/hw_cuda_util.h"

#include <stdlib.h>

// ---- devices ------------------------------------------------------------------------------------------------

extern "C" int ll_hw_cuda_device_count(char *why, size_t whycap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        snprintf(why, whycap, "no CUDA device found");
        return 0;
    }
    if (e != cudaSuccess) {
        snprintf(why, whycap, "no CUDA device found (%s)", cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    return n;
}

static bool info_impl(int dev, ll_hw_gpu_info *o, char *why, size_t whycap) {
    cudaDeviceProp p;
    memset(o, 0, sizeof *o);
    o->index = dev;
    CK(cudaSetDevice(dev));
    CK(cudaGetDeviceProperties(&p, dev));
    snprintf(o->name, sizeof o->name, "%s", p.name);
    o->cc_major = p.major;
    o->cc_minor = p.minor;
    o->sm_count = p.multiProcessorCount;
    o->mem_bus_bits = p.memoryBusWidth;
    o->l2_bytes = (uint64_t)p.l2CacheSize;
    // Clocks are attributes since CUDA 13 removed them from cudaDeviceProp; a failure leaves 0 ("unknown").
    if (cudaDeviceGetAttribute(&o->clock_khz, cudaDevAttrClockRate, dev) != cudaSuccess) o->clock_khz = 0;
    if (cudaDeviceGetAttribute(&o->mem_clock_khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess) o->mem_clock_khz = 0;
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    o->mem_free = fr;
    o->mem_total = tot;
    CK(cudaDriverGetVersion(&o->driver_version));
    CK(cudaRuntimeGetVersion(&o->runtime_version));
    CK(cudaDeviceGetPCIBusId(o->pci_bus_id, (int)sizeof o->pci_bus_id, dev));
    return true;
}

extern "C" bool ll_hw_cuda_info(int dev, ll_hw_gpu_info *out, char *why, size_t whycap) {
    return info_impl(dev, out, why, whycap);
}

extern "C" bool ll_hw_cuda_mem_info(int dev, uint64_t *free_b, uint64_t *total_b, char *why, size_t whycap) {
    size_t fr = 0, tot = 0;
    CK(cudaSetDevice(dev));
    CK(cudaMemGetInfo(&fr, &tot));
    *free_b = fr;
    *total_b = tot;
    return true;
}

// Plain cudaMalloc (never managed memory: over-asking managed memory can hang the GPU), touched by
// cudaMemset so a lazily backed allocation counts only once it is real.
extern "C" bool ll_hw_cuda_try_alloc(int dev, uint64_t bytes) {
    void *p = NULL;
    if (cudaSetDevice(dev) != cudaSuccess) return false;
    if (cudaMalloc(&p, (size_t)bytes) != cudaSuccess) {
        cudaGetLastError(); // an out-of-memory error is not sticky; clear it for the next probe
        return false;
    }
    bool ok = cudaMemset(p, 0x5a, (size_t)bytes) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess;
    cudaFree(p);
    cudaGetLastError();
    return ok;
}

// ---- device memory bandwidth ---------------------------------------------------------------------------------
// float4 accesses, grid-stride; a few blocks per SM keep enough loads in flight to saturate HBM.

#define BW_THREADS 512

__global__ void k_fill(float4 *a, size_t n4, float v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x)
        a[i] = make_float4(v, v, v, v);
}

// Each block writes its partial sum, so the loads cannot be dropped; the host adds the partials.
__global__ void k_read(const float4 *__restrict__ a, size_t n4, float *partial) {
    float s = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x, i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n4; i += 4 * stride) { // four independent loads in flight per thread
        float4 v0 = a[i], v1 = a[i + stride], v2 = a[i + 2 * stride], v3 = a[i + 3 * stride];
        s += (v0.x + v0.y + v0.z + v0.w) + (v1.x + v1.y + v1.z + v1.w) + (v2.x + v2.y + v2.z + v2.w) +
             (v3.x + v3.y + v3.z + v3.w);
    }
    for (; i < n4; i += stride) {
        float4 v = a[i];
        s += v.x + v.y + v.z + v.w;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    __shared__ float ws[BW_THREADS / 32];
    if ((threadIdx.x & 31) == 0) ws[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0;
        for (int w = 0; w < BW_THREADS / 32; w++) t += ws[w];
        partial[blockIdx.x] = t;
    }
}

// Four loads in flight per thread before the stores. Measured on the H100 (1 GiB): one at a time 2808 GB/s,
// four in flight 2815, four with streaming (__ldcs/__stcs) 2792; cudaMemcpy 3002 and PyTorch's copy_ 3019 in
// the same calls: the kernel stays ~6% under the copy engines' rate (grid shape not yet explored).
__global__ void k_copy(float4 *__restrict__ b, const float4 *__restrict__ a, size_t n4) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n4; i += 4 * stride) {
        float4 v0 = a[i], v1 = a[i + stride], v2 = a[i + 2 * stride], v3 = a[i + 3 * stride];
        b[i] = v0, b[i + stride] = v1, b[i + 2 * stride] = v2, b[i + 3 * stride] = v3;
    }
    for (; i < n4; i += stride) b[i] = a[i];
}

__global__ void k_triad(float4 *__restrict__ a, const float4 *__restrict__ b, const float4 *__restrict__ c, size_t n4,
                        float s) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + stride < n4; i += 2 * stride) { // two pairs of loads in flight
        float4 x0 = b[i], y0 = c[i], x1 = b[i + stride], y1 = c[i + stride];
        a[i] = make_float4(x0.x + s * y0.x, x0.y + s * y0.y, x0.z + s * y0.z, x0.w + s * y0.w);
        a[i + stride] = make_float4(x1.x + s * y1.x, x1.y + s * y1.y, x1.z + s * y1.z, x1.w + s * y1.w);
    }
    for (; i < n4; i += stride) {
        float4 x = b[i], y = c[i];
        a[i] = make_float4(x.x + s * y.x, x.y + s * y.y, x.z + s * y.z, x.w + s * y.w);
    }
}

typedef struct bw_res {
    float *a, *b, *c, *partial, *hpart;
    cudaStream_t s;
} bw_res;

// Sampled check of n floats of device array d: every sampled element equals want.
static bool check_samples(const float *d, size_t n, float want, bool *good, char *why, size_t whycap) {
    *good = true;
    for (int i = 0; i < 16; i++) {
        size_t at = i == 0 ? 0 : i == 15 ? n - 1 : (n / 16) * (size_t)i + (size_t)i * 7;
        float v;
        CK(cudaMemcpy(&v, d + at, sizeof v, cudaMemcpyDeviceToHost));
        if (v != want) *good = false;
    }
    return true;
}

static bool bw_run(int dev, size_t bytes, double min_time, bw_res *r, ll_hw_meas *out, int *n, char *why, size_t whycap) {
    cudaDeviceProp p;
    CK(cudaSetDevice(dev));
    CK(cudaGetDeviceProperties(&p, dev));
    size_t n4 = bytes / 16, nf = n4 * 4;
    int grid = p.multiProcessorCount * 4;
    CK(cudaStreamCreateWithFlags(&r->s, cudaStreamNonBlocking));
    CK(cudaMalloc(&r->a, n4 * 16));
    CK(cudaMalloc(&r->b, n4 * 16));
    CK(cudaMalloc(&r->c, n4 * 16));
    CK(cudaMalloc(&r->partial, (size_t)grid * sizeof(float)));
    r->hpart = (float *)malloc((size_t)grid * sizeof(float));
    if (!r->hpart) return hw_fail(why, whycap, __FILE__, __LINE__, "malloc", "out of host memory");
    float4 *a = (float4 *)r->a, *b = (float4 *)r->b, *c = (float4 *)r->c;
    cudaStream_t s = r->s;
    k_fill<<<grid, BW_THREADS, 0, s>>>(a, n4, 1.0f);
    k_fill<<<grid, BW_THREADS, 0, s>>>(b, n4, 2.0f);
    k_fill<<<grid, BW_THREADS, 0, s>>>(c, n4, 3.0f);
    CK_LAUNCH();
    CK(cudaStreamSynchronize(s));
    const char *kinds[5] = {"read", "write", "copy", "triad", "d2d_memcpy"};
    const double moved[5] = {1, 1, 2, 3, 2};
    for (int kind = 0; kind < 5; kind++) {
        ll_hw_meas *m = &out[(*n)++];
        memset(m, 0, sizeof *m);
        snprintf(m->kind, sizeof m->kind, "%s", kinds[kind]);
        snprintf(m->dtype, sizeof m->dtype, "fp32");
        snprintf(m->impl, sizeof m->impl, kind == 4 ? "cudaMemcpyAsync device-to-device"
                                                    : "CUDA kernel, float4 accesses, %d blocks x %d threads",
                 grid, BW_THREADS);
        m->work = moved[kind] * (double)(n4 * 16);
        m->validated = 1;
        m->err = NAN;
        bool good = true;
        auto launch = [&]() -> bool {
            switch (kind) {
            case 0: k_read<<<grid, BW_THREADS, 0, s>>>(a, n4, r->partial); break;
            case 1: k_fill<<<grid, BW_THREADS, 0, s>>>(b, n4, 5.0f); break;
            case 2: k_copy<<<grid, BW_THREADS, 0, s>>>(c, a, n4); break;
            case 3: k_triad<<<grid, BW_THREADS, 0, s>>>(b, a, c, n4, 2.0f); break; // three distinct arrays
            default: CK(cudaMemcpyAsync(c, b, n4 * 16, cudaMemcpyDeviceToDevice, s)); return true;
            }
            CK_LAUNCH();
            return true;
        };
        if (!hw_time_gpu(launch, s, min_time, &m->t, why, whycap)) return false;
        CK(cudaStreamSynchronize(s));
        // Check the result of the last repetition: a = 1, write: b = 5, copy: c = a = 1, triad: b = a + 2 c = 3,
        // memcpy: c = b = 3.
        if (kind == 0) {
            CK(cudaMemcpy(r->hpart, r->partial, (size_t)grid * sizeof(float), cudaMemcpyDeviceToHost));
            double sum = 0;
            for (int i = 0; i < grid; i++) sum += r->hpart[i];
            m->err = fabs(sum - (double)nf) / (double)nf;
            good = m->err < 1e-6;
        } else {
            const float *d = kind == 1 ? r->b : kind == 2 ? r->c : kind == 3 ? r->b : r->c;
            float want = kind == 1 ? 5.0f : kind == 2 ? 1.0f : 3.0f;
            if (!check_samples(d, nf, want, &good, why, whycap)) return false;
        }
        m->validated = good ? 1 : 0;
        if (!good) hw_note(m, "result check failed: the kernel did not produce the expected values");
    }
    return true;
}

extern "C" int ll_hw_cuda_memory(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why,
                                 size_t whycap) {
    if (cap < 5) return 0;
    bw_res r;
    memset(&r, 0, sizeof r);
    int n = 0;
    bool ok = bw_run(dev, bytes, min_time, &r, out, &n, why, whycap);
    cudaFree(r.a);
    cudaFree(r.b);
    cudaFree(r.c);
    cudaFree(r.partial);
    free(r.hpart);
    if (r.s) cudaStreamDestroy(r.s);
    cudaGetLastError();
    return ok ? n : -1;
}

// ---- host <-> device copies ------------------------------------------------------------------------------------

typedef struct tr_res {
    void *dev, *pinned, *pageable;
} tr_res;

static bool tr_run(int dev, size_t bytes, double min_time, tr_res *r, ll_hw_meas *out, int *n, char *why, size_t whycap) {
    CK(cudaSetDevice(dev));
    CK(cudaMalloc(&r->dev, bytes));
    CK(cudaMallocHost(&r->pinned, bytes));
    r->pageable = malloc(bytes);
    if (!r->pageable) return hw_fail(why, whycap, __FILE__, __LINE__, "malloc", "out of host memory");
    memset(r->pageable, 0x11, bytes); // touch: page faults are not part of the copy
    memset(r->pinned, 0x11, bytes);
    const char *kinds[4] = {"h2d_pageable", "h2d_pinned", "d2h_pageable", "d2h_pinned"};
    for (int kind = 0; kind < 4; kind++) {
        bool h2d = kind < 2;
        void *host = kind % 2 ? r->pinned : r->pageable;
        ll_hw_meas *m = &out[(*n)++];
        memset(m, 0, sizeof *m);
        snprintf(m->kind, sizeof m->kind, "%s", kinds[kind]);
        snprintf(m->dtype, sizeof m->dtype, "bytes");
        snprintf(m->impl, sizeof m->impl, "cudaMemcpy, %s host memory", kind % 2 ? "pinned (cudaMallocHost)" : "pageable (malloc)");
        m->work = (double)bytes;
        m->err = NAN;
        auto op = [&]() -> bool {
            CK(cudaMemcpy(h2d ? r->dev : host, h2d ? host : r->dev, bytes, h2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
            CK(cudaDeviceSynchronize());
            return true;
        };
        if (!hw_time_host(op, min_time, 5, &m->t)) return false;
        m->validated = -1;
    }
    // Round trip check: pageable bytes went up, came back into pinned memory, and are the same.
    memset(r->pageable, 0x3c, bytes);
    CK(cudaMemcpy(r->dev, r->pageable, bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(r->pinned, r->dev, bytes, cudaMemcpyDeviceToHost));
    bool same = memcmp(r->pinned, r->pageable, bytes) == 0;
    for (int i = *n - 4; i < *n; i++) {
        out[i].validated = same ? 1 : 0;
        if (!same) hw_note(&out[i], "round-trip check failed: bytes differ after host->device->host");
    }
    return true;
}

extern "C" int ll_hw_cuda_transfer(int dev, size_t bytes, double min_time, ll_hw_meas *out, int cap, char *why,
                                   size_t whycap) {
    if (cap < 4) return 0;
    tr_res r;
    memset(&r, 0, sizeof r);
    int n = 0;
    bool ok = tr_run(dev, bytes, min_time, &r, out, &n, why, whycap);
    cudaFree(r.dev);
    if (r.pinned) cudaFreeHost(r.pinned);
    free(r.pageable);
    cudaGetLastError();
    return ok ? n : -1;
}

// ---- launch and synchronisation costs -----------------------------------------------------------------------------

__global__ void k_empty(void) {}

#define GRAPH_KERNELS 100
#define LAUNCH_BATCH 1000

typedef struct ln_res {
    cudaStream_t s;
    cudaGraph_t g;
    cudaGraphExec_t ge;
} ln_res;

static ll_hw_meas *ln_row(ll_hw_meas *out, int *n, const char *kind, const char *impl, int64_t per) {
    ll_hw_meas *m = &out[(*n)++];
    memset(m, 0, sizeof *m);
    snprintf(m->kind, sizeof m->kind, "%s", kind);
    snprintf(m->dtype, sizeof m->dtype, "none");
    snprintf(m->impl, sizeof m->impl, "%s", impl);
    m->m = per;
    m->validated = -1;
    m->err = NAN;
    return m;
}

static bool ln_run(int dev, double min_time, ln_res *r, ll_hw_meas *out, int *n, char *why, size_t whycap) {
    CK(cudaSetDevice(dev));
    CK(cudaStreamCreateWithFlags(&r->s, cudaStreamNonBlocking));
    cudaStream_t s = r->s;
    ll_hw_meas *m = ln_row(out, n, "launch_async", "empty kernel <<<1,1>>>, 1000 back-to-back launches then one sync", LAUNCH_BATCH);
    auto burst = [&]() -> bool {
        for (int i = 0; i < LAUNCH_BATCH; i++) k_empty<<<1, 1, 0, s>>>();
        CK_LAUNCH();
        CK(cudaStreamSynchronize(s));
        return true;
    };
    if (!hw_time_host(burst, min_time, 5, &m->t)) return false;
    m = ln_row(out, n, "launch_sync", "empty kernel launch + cudaStreamSynchronize, round trip", 1);
    auto one = [&]() -> bool {
        k_empty<<<1, 1, 0, s>>>();
        CK_LAUNCH();
        CK(cudaStreamSynchronize(s));
        return true;
    };
    if (!hw_time_host(one, min_time, 50, &m->t)) return false;
    m = ln_row(out, n, "sync_idle", "cudaStreamSynchronize on an idle stream", 1);
    auto idle = [&]() -> bool { CK(cudaStreamSynchronize(s)); return true; };
    if (!hw_time_host(idle, min_time, 50, &m->t)) return false;
    // A graph of GRAPH_KERNELS empty kernels captured from the stream, replayed.
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < GRAPH_KERNELS; i++) k_empty<<<1, 1, 0, s>>>();
    CK(cudaStreamEndCapture(s, &r->g));
    CK(cudaGraphInstantiate(&r->ge, r->g, 0));
    m = ln_row(out, n, "graph_replay", "CUDA graph of 100 empty kernels: cudaGraphLaunch + sync, time per kernel",
               GRAPH_KERNELS);
    auto replay = [&]() -> bool {
        CK(cudaGraphLaunch(r->ge, s));
        CK(cudaStreamSynchronize(s));
        return true;
    };
    if (!hw_time_host(replay, min_time, 20, &m->t)) return false;
    return true;
}

extern "C" int ll_hw_cuda_launch(int dev, double min_time, ll_hw_meas *out, int cap, char *why, size_t whycap) {
    if (cap < 4) return 0;
    ln_res r;
    memset(&r, 0, sizeof r);
    int n = 0;
    bool ok = ln_run(dev, min_time, &r, out, &n, why, whycap);
    if (r.ge) cudaGraphExecDestroy(r.ge);
    if (r.g) cudaGraphDestroy(r.g);
    if (r.s) cudaStreamDestroy(r.s);
    cudaGetLastError();
    return ok ? n : -1;
}
