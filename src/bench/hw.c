// hw.c — `bench hw` as a library call: resolve the configuration for the mode, describe the machine, run the
// chosen sections, write each JSON file atomically (system_info.json last, with the ceilings) and the table.
#include "bench/hw_internal.h"

#include <stdlib.h>
#include <string.h>

void ll_hw_config_init(ll_hw_config *c) {
    memset(c, 0, sizeof *c);
    c->progress = true;
}

static const struct { const char *name; unsigned bit; } k_sections[] = {
    {"gemm", LL_HW_GEMM},         {"memory", LL_HW_MEMORY},     {"attention", LL_HW_ATTENTION},
    {"alloc", LL_HW_ALLOC},       {"transfer", LL_HW_TRANSFER}, {"launch", LL_HW_LAUNCH},
};

bool ll_hw_parse_sections(const char *list, unsigned *out, ll_error *err) {
    *out = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool hit = false;
        for (size_t i = 0; i < sizeof k_sections / sizeof k_sections[0]; i++)
            if (strlen(k_sections[i].name) == n && !strncmp(p, k_sections[i].name, n)) {
                *out |= k_sections[i].bit;
                hit = true;
            }
        if (!hit && n > 0) {
            ll_err_set(err, LL_ERR_ARG, "--only: unknown section '%.*s' (choose from gemm, memory, attention, alloc, "
                                        "transfer, launch)", (int)n, p);
            return false;
        }
        p += n;
        if (*p == ',') p++;
    }
    if (!*out) {
        ll_err_set(err, LL_ERR_ARG, "--only: no section named (choose from gemm, memory, attention, alloc, transfer, launch)");
        return false;
    }
    return true;
}

static void set_sizes(int *dst, int *n, const int *src, int count) {
    if (*n > 0) return; // given by the caller
    for (int i = 0; i < count && i < LL_HW_MAX_SIZES; i++) dst[i] = src[i];
    *n = count < LL_HW_MAX_SIZES ? count : LL_HW_MAX_SIZES;
}

// The mode's defaults for every field left zero (docs/bench-hw.md lists them).
static void resolve(ll_hw_ctx *c) {
    ll_hw_config *k = &c->cfg;
    bool q = k->quick, f = k->full && !q;
    c->mode = q ? "quick" : f ? "full" : "default";
    if (!k->sections) k->sections = LL_HW_ALL;
    if (k->n_threads <= 0) k->n_threads = ll_sys_allowed_cpus(); // not all logical CPUs: taskset, cgroups
    if (k->min_time <= 0) k->min_time = q ? 0.25 : f ? 1.0 : 0.5;
    static const int g_quick[] = {1024}, g_def[] = {1024, 2048}, g_full[] = {1024, 2048, 4096};
    set_sizes(k->gemm_sizes, &k->n_gemm_sizes, q ? g_quick : f ? g_full : g_def, q ? 1 : f ? 3 : 2);
    static const int gg_quick[] = {2048, 8192}, gg_def[] = {1024, 2048, 4096, 8192};
    set_sizes(k->gpu_gemm_sizes, &k->n_gpu_gemm_sizes, q ? gg_quick : gg_def, q ? 2 : 4);
    static const int a_quick[] = {512}, a_def[] = {512, 1024, 2048}, a_full[] = {512, 1024, 2048, 4096};
    set_sizes(k->attn_seqs, &k->n_attn_seqs, q ? a_quick : f ? a_full : a_def, q ? 1 : f ? 4 : 3);
    static const int ga_quick[] = {1024, 4096}, ga_def[] = {512, 1024, 2048, 4096, 8192, 16384};
    set_sizes(k->gpu_attn_seqs, &k->n_gpu_attn_seqs, q ? ga_quick : ga_def, q ? 2 : 6);
    if (k->attn_heads <= 0) k->attn_heads = 8;
    if (k->gpu_attn_heads <= 0) k->gpu_attn_heads = 32;
    if (!k->mem_bytes) {
        // Far larger than the last-level cache, and three arrays within a quarter of the available memory.
        uint64_t want = c->sys.llc_bytes * (q ? 4 : f ? 16 : 8), floor = (uint64_t)(q ? 128 : f ? 1024 : 512) << 20;
        if (want < floor) want = floor;
        uint64_t room = c->sys.mem_avail / 12;
        if (want > room) want = room;
        k->mem_bytes = (size_t)(want >> 20 << 20);
        if (k->mem_bytes < ((size_t)4 << 20)) k->mem_bytes = (size_t)4 << 20;
    }
    k->mem_bytes = k->mem_bytes / 4096 * 4096;
    if (!k->gpu_mem_bytes) k->gpu_mem_bytes = (size_t)(q ? 512 : 1024) << 20;
    if (!k->transfer_bytes) k->transfer_bytes = (size_t)(q ? 64 : 256) << 20;
}

static void ceiling(cJSON *arr, const char *dev, const char *what, double value, const char *unit, const char *source,
                    const char *how) {
    if (!(value > 0)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", dev);
    cJSON_AddStringToObject(o, "kind", what);
    cJSON_AddNumberToObject(o, "value", value);
    cJSON_AddStringToObject(o, "unit", unit);
    cJSON_AddStringToObject(o, "source", source);
    cJSON_AddStringToObject(o, "how", how);
    cJSON_AddItemToArray(arr, o);
}

// system_info.json: the machine and its ceilings, spec/estimate and measured side by side.
static cJSON *system_doc(const ll_hw_ctx *c) {
    const ll_hw_sys *s = &c->sys;
    cJSON *doc = ll_hw_doc_new(c, "system_info");
    cJSON_AddItemToObject(doc, "system", ll_hw_sys_json(c));
    cJSON *r = ll_hw_results(doc);
    char how[256];
    snprintf(how, sizeof how, "%.3f GHz (%s) x %d physical cores x %d fp32 lanes (%s) x 2 x %d FMA units (%s)",
             s->freq_ghz, s->freq_source, s->physical, s->simd_lanes_f32, s->simd_name, s->fma_units, s->fma_units_why);
    ceiling(r, "cpu", "fp32_peak", s->cpu_peak_spec_gflops, "GFLOPS", "estimate", how);
    ceiling(r, "cpu", "int8_peak", s->cpu_int8_spec_gops, "GOPS", "estimate", "fp32 estimate x 4 with VNNI/dot-product "
                                                                                "instructions, x 2 without");
    ceiling(r, "cpu", "fp32_peak", s->cpu_peak_meas_gflops, "GFLOPS", "measured",
            "12 independent FMA chains per thread on every thread (hw_peak.c)");
    ceiling(r, "cpu", "fp32_gemm_best", c->best_cpu_fp32_gflops, "GFLOPS", "measured", "best CPU fp32/bf16 GEMM this run");
    ceiling(r, "cpu", "dram_read", c->cfg.cpu_mem_spec_gbps, "GB/s", "spec", "--mem-spec");
    ceiling(r, "cpu", "dram_read", c->best_cpu_read_gbps, "GB/s", "measured", "best read (sum) bandwidth this run");
    for (int d = 0; d < s->n_gpus; d++) {
        const ll_hw_gpu *g = &s->gpus[d];
        char dev[16];
        snprintf(dev, sizeof dev, "cuda:%d", g->info.index);
        if (g->spec) {
            ceiling(r, dev, "bf16_dense", g->spec->bf16, "TFLOPS", "spec", g->spec->label);
            ceiling(r, dev, "fp16_dense", g->spec->fp16, "TFLOPS", "spec", g->spec->label);
            ceiling(r, dev, "tf32_dense", g->spec->tf32, "TFLOPS", "spec", g->spec->label);
            ceiling(r, dev, "fp32", g->spec->fp32, "TFLOPS", "spec", g->spec->label);
            ceiling(r, dev, "fp8_dense", g->spec->fp8, "TFLOPS", "spec", g->spec->label);
            ceiling(r, dev, "int8_dense", g->spec->int8, "TOPS", "spec", g->spec->label);
            ceiling(r, dev, "hbm", g->spec->mem_gbps, "GB/s", "spec", g->spec->label);
        }
        ceiling(r, dev, "hbm", g->mem_gbps_from_clocks, "GB/s", "spec", "2 x memory clock x bus width");
        ceiling(r, dev, "pcie", g->pcie_gbps, "GB/s", "spec", "PCIe link now, per direction");
        ceiling(r, dev, "bf16_dense", c->best_gpu_bf16_tflops[d], "TFLOPS", "measured", "best cuBLASLt bf16 GEMM this run");
        ceiling(r, dev, "hbm", c->best_gpu_read_gbps[d], "GB/s", "measured", "best read kernel this run");
    }
    return doc;
}

static ll_status write_doc(ll_hw_ctx *c, const char *dir, const char *name, cJSON *doc, ll_error *err) {
    if (!doc) return ll_err_set(err, LL_ERR_NOMEM, "out of memory building %s.json", name);
    ll_status st = ll_hw_write_doc(dir, name, doc, err);
    if (st == LL_OK) ll_hw_progress(c, "wrote %s/%s.json", dir, name);
    return st;
}

ll_status ll_hw_run(const ll_hw_config *cfg, FILE *table, ll_error *err) {
    ll_hw_ctx *c = calloc(1, sizeof *c);
    if (!c) return ll_err_set(err, LL_ERR_NOMEM, "out of memory");
    c->cfg = *cfg;
    c->gemm_sizes_given = cfg->n_gemm_sizes > 0;
    ll_hw_sys_collect(&c->sys, !cfg->no_gpu);
    resolve(c);
    char dir[4096];
    if (cfg->json_dir) snprintf(dir, sizeof dir, "%s", cfg->json_dir);
    else snprintf(dir, sizeof dir, "results/raw/%s", c->sys.hostname);
    if (c->sys.n_gpus == 0) ll_hw_progress(c, "%s: GPU sections skipped", c->sys.gpu_why);
    ll_pool *pool = ll_pool_init(c->cfg.n_threads, err);
    if (pool) {
        c->sys.cpu_peak_meas_gflops = ll_hw_cpu_fma_peak(pool, c->cfg.quick ? 0.15 : 0.5);
        ll_pool_free(pool);
    }
    c->machine = ll_hw_machine_json(c);
    static const struct { unsigned bit; const char *name; cJSON *(*fn)(ll_hw_ctx *); } k_run[] = {
        {LL_HW_GEMM, "gemm", ll_hw_gemm_section},       {LL_HW_MEMORY, "memory", ll_hw_memory_section},
        {LL_HW_ATTENTION, "attention", ll_hw_attention_section}, {LL_HW_ALLOC, "alloc", ll_hw_alloc_section},
        {LL_HW_TRANSFER, "transfer", ll_hw_transfer_section}, {LL_HW_LAUNCH, "launch", ll_hw_launch_section},
    };
    cJSON *docs[8];
    int n_docs = 0;
    ll_status st = LL_OK;
    for (size_t i = 0; i < sizeof k_run / sizeof k_run[0] && st == LL_OK; i++) {
        if (!(c->cfg.sections & k_run[i].bit)) continue;
        if (cfg->interrupt && *cfg->interrupt) break; // the finished sections are written; system_info follows
        cJSON *d = k_run[i].fn(c);
        st = write_doc(c, dir, k_run[i].name, d, err);
        if (d) docs[n_docs++] = d;
    }
    if (st == LL_OK) {
        cJSON *d = system_doc(c);
        st = write_doc(c, dir, "system_info", d, err);
        if (d) docs[n_docs++] = d;
    }
    if (st == LL_OK && table) ll_hw_table_print(table, docs, n_docs);
    for (int i = 0; i < n_docs; i++) cJSON_Delete(docs[i]);
    cJSON_Delete(c->machine);
    free(c);
    return st;
}
