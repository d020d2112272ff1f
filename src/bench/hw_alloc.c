// hw_alloc.c — largest single allocation per device (the seeds' "12 GB wall"): bisection on allocate-and-touch,
// bounded by a safe fraction of the memory available, so the probe never pushes the machine into swap or OOM.
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#if !defined(_WIN32)
#include <sys/mman.h>
#include <unistd.h>
#endif

uint64_t ll_hw_bisect(ll_hw_try_fn try_fn, void *ctx, uint64_t hi, uint64_t gran, int *probes) {
    LL_ASSERT(gran > 0);
    *probes = 0;
    hi = hi / gran * gran;
    if (hi == 0) return 0;
    ++*probes;
    if (try_fn(ctx, hi)) return hi; // the usual case: nothing fails below the bound
    uint64_t ok = 0, bad = hi;     // invariant: ok works (0 trivially), bad fails
    while (bad - ok > gran) {
        uint64_t mid = ok + (bad - ok) / gran / 2 * gran;
        if (mid == ok) mid = ok + gran;
        ++*probes;
        if (try_fn(ctx, mid)) ok = mid;
        else bad = mid;
    }
    return ok;
}

#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23 // Linux 5.14; older kernels answer EINVAL and the pages are touched instead
#endif

// Map anonymous memory, make the kernel back every page (MADV_POPULATE_WRITE: one call, fails cleanly with
// ENOMEM; else write one byte per page), unmap.
static bool cpu_try(void *ctx, uint64_t bytes) {
    (void)ctx;
    if (bytes > SIZE_MAX) return false;
#if defined(MAP_NORESERVE)
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#else
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#endif
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return false;
#if defined(MADV_POPULATE_WRITE)
    if (madvise(p, (size_t)bytes, MADV_POPULATE_WRITE) == 0) {
        munmap(p, (size_t)bytes);
        return true;
    }
    if (errno != EINVAL) {
        munmap(p, (size_t)bytes);
        return false;
    }
#endif
    long page = sysconf(_SC_PAGESIZE);
    volatile uint8_t *b = p;
    for (size_t i = 0; i < (size_t)bytes; i += (size_t)(page > 0 ? page : 4096)) b[i] = 1;
    b[bytes - 1] = 1;
    munmap(p, (size_t)bytes);
    return true;
}

typedef struct gpu_try_ctx {
    int dev;
} gpu_try_ctx;

static bool gpu_try(void *ctx, uint64_t bytes) { return ll_hw_cuda_try_alloc(((gpu_try_ctx *)ctx)->dev, bytes); }

static void alloc_row(cJSON *doc, const char *dev, const char *method, uint64_t found, uint64_t bound, uint64_t gran,
                      int probes, double secs, uint64_t total, uint64_t avail, const char *bound_rule) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "device", dev);
    cJSON_AddStringToObject(r, "kind", "largest_alloc");
    cJSON_AddStringToObject(r, "impl", method);
    cJSON_AddNumberToObject(r, "largest_ok_bytes", (double)found);
    cJSON_AddNumberToObject(r, "bound_bytes", (double)bound);
    cJSON_AddStringToObject(r, "bound_rule", bound_rule);
    cJSON_AddStringToObject(r, "limited_by", found >= bound / gran * gran ? "bound" : "allocator");
    cJSON_AddNumberToObject(r, "granularity_bytes", (double)gran);
    cJSON_AddNumberToObject(r, "probes", probes);
    cJSON_AddNumberToObject(r, "seconds", secs);
    cJSON_AddNumberToObject(r, "mem_total_bytes", (double)total);
    cJSON_AddNumberToObject(r, "mem_available_bytes", (double)avail);
    cJSON_AddItemToArray(ll_hw_results(doc), r);
}

static void alloc_cpu(ll_hw_ctx *c, cJSON *doc) {
    uint64_t avail = ll_sys_mem_available(), bound = c->cfg.alloc_cap, gran = 64ull << 20;
    const char *rule = "--alloc-cap / test bound";
    if (!bound) {
        bound = avail / 10 * 9;
        rule = "90% of MemAvailable";
        if (c->cfg.quick) { // a smoke test: touching tens of GB takes a minute on small VMs
            bound = avail / 4 < (2ull << 30) ? avail / 4 : (2ull << 30);
            rule = "min(2 GiB, 25% of MemAvailable) (--quick)";
        }
    }
    if (bound < gran) gran = bound / 4 > 4096 ? bound / 4 / 4096 * 4096 : 4096;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        ll_hw_note(doc, "cpu: address-space limit (ulimit -v) %llu MiB", (unsigned long long)(rl.rlim_cur >> 20));
    char b[32];
    ll_fmt_bytes(b, sizeof b, (double)bound);
    ll_hw_progress(c, "alloc cpu: largest mmap + touch up to %s (%s)", b, rule);
    int probes;
    double t0 = ll_time_s();
    uint64_t found = ll_hw_bisect(cpu_try, NULL, bound, gran, &probes);
    alloc_row(doc, "cpu", "mmap(MAP_PRIVATE|MAP_ANONYMOUS) + MADV_POPULATE_WRITE (or a write per page)", found, bound, gran, probes,
              ll_time_s() - t0, ll_sys_mem_total(), avail, rule);
}

static void alloc_gpu(ll_hw_ctx *c, cJSON *doc) {
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        uint64_t fr, tot;
        if (!ll_hw_cuda_mem_info(g->info.index, &fr, &tot, why, sizeof why)) {
            ll_hw_note(doc, "%s: alloc skipped: %s", dev, why);
            continue;
        }
        uint64_t bound = fr / 10 * 9, gran = 256ull << 20;
        ll_hw_progress(c, "alloc %s: largest cudaMalloc + cudaMemset up to %.1f GiB (90%% of free)", dev, bound / 1073741824.0);
        gpu_try_ctx ctx = {g->info.index};
        int probes;
        double t0 = ll_time_s();
        uint64_t found = ll_hw_bisect(gpu_try, &ctx, bound, gran, &probes);
        alloc_row(doc, dev, "cudaMalloc + cudaMemset (never managed memory)", found, bound, gran, probes,
                  ll_time_s() - t0, tot, fr, "90% of cudaMemGetInfo free");
    }
}

cJSON *ll_hw_alloc_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "alloc");
    ll_hw_note(doc, "largest single allocation that could be made and touched, by bisection between 0 and a safe "
                    "bound; limited_by = bound means no wall was met below it");
    alloc_cpu(c, doc);
    if (c->sys.n_gpus > 0) alloc_gpu(c, doc);
    else ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    return doc;
}

// ---- GPU-only sections: host<->device copies and launch costs ---------------------------------------------------

cJSON *ll_hw_transfer_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "transfer");
    if (c->sys.n_gpus == 0) ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        ll_hw_progress(c, "transfer %s: host<->device, pageable and pinned, %zu MiB", dev, c->cfg.transfer_bytes >> 20);
        ll_hw_meas out[4];
        int n = ll_hw_cuda_transfer(g->info.index, c->cfg.transfer_bytes, c->cfg.min_time, out, 4, why, sizeof why);
        if (n < 0) { ll_hw_note(doc, "%s: transfer stopped: %s", dev, why); continue; }
        for (int i = 0; i < n; i++) {
            cJSON *row = ll_hw_row(doc, dev, &out[i], "gbps", 1e-9, g->pcie_gbps, "GB/s",
                                   "spec: PCIe link now (GT/s x lanes x encoding / 8, per direction)");
            cJSON_AddNumberToObject(row, "bytes", out[i].work);
        }
        if (g->pcie_gbps <= 0) ll_hw_note(doc, "%s: PCIe link speed unknown (no sysfs entry): no %% of spec", dev);
    }
    return doc;
}

cJSON *ll_hw_launch_section(ll_hw_ctx *c) {
    cJSON *doc = ll_hw_doc_new(c, "launch");
    ll_hw_note(doc, "us_per_op = median time of one repetition / ops per repetition (host clock)");
    if (c->sys.n_gpus == 0) ll_hw_note(doc, "%s: GPU sections skipped", c->sys.gpu_why);
    for (int d = 0; d < c->sys.n_gpus; d++) {
        const ll_hw_gpu *g = &c->sys.gpus[d];
        char dev[16], why[512] = "";
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        ll_hw_progress(c, "launch %s: empty kernels, synchronize, graph replay", dev);
        ll_hw_meas out[4];
        int n = ll_hw_cuda_launch(g->info.index, c->cfg.min_time, out, 4, why, sizeof why);
        if (n < 0) { ll_hw_note(doc, "%s: launch stopped: %s", dev, why); continue; }
        for (int i = 0; i < n; i++) {
            cJSON *row = ll_hw_row(doc, dev, &out[i], NULL, 0, 0, NULL, NULL);
            cJSON_AddNumberToObject(row, "ops_per_rep", (double)out[i].m);
            if (out[i].t.reps > 0) cJSON_AddNumberToObject(row, "us_per_op", out[i].t.median / (double)out[i].m * 1e6);
        }
    }
    return doc;
}
