// hw_sys.c — what the machine is: OS, CPU model, cores, ISA features, caches, memory, NUMA nodes, GPUs (via
// hw_cuda.h) and their PCIe links; the "spec" ceilings (a table of GPUs, a formula for the CPU).
#include "bench/hw_internal.h"
#include "bench/hw_cuda.h"
#include "backend/cpu/matmul.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__linux__) && defined(__aarch64__)
#include <sys/auxv.h>
#endif

// ---- small readers --------------------------------------------------------------------------------------------

// First line of a file without its newline; false when unreadable.
static bool read_line(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\n")] = 0;
    return ok;
}

// "key : value" from /proc/cpuinfo (first occurrence), value trimmed.
static bool cpuinfo_value(const char *key, char *buf, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[4096];
    size_t kl = strlen(key);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) != 0) continue;
        char *c = line + kl;
        while (*c == ' ' || *c == '\t') c++;
        if (*c != ':') continue; // "model" must not match "model name"
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(buf, cap, "%s", c);
        found = true;
    }
    fclose(f);
    return found;
}

static bool has_word(const char *list, const char *w) {
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return true;
    return false;
}

static void append(char *dst, size_t cap, const char *w) {
    size_t l = strlen(dst);
    snprintf(dst + l, cap - l, "%s%s", l ? " " : "", w);
}

#if defined(__APPLE__)
static uint64_t sysctl_u64(const char *name) {
    uint64_t v = 0;
    size_t len = sizeof v;
    if (sysctlbyname(name, &v, &len, NULL, 0) != 0) return 0;
    if (len == 4) v &= 0xffffffffu;
    return v;
}
#endif

// ---- CPU ----------------------------------------------------------------------------------------------------------

static void cpu_isa(ll_hw_sys *s) {
#if defined(__x86_64__) || defined(__i386__)
    static const char *k_flags[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                                    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512vbmi",
                                    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"};
    char flags[4096] = "";
    if (cpuinfo_value("flags", flags, sizeof flags))
        for (size_t i = 0; i < sizeof k_flags / sizeof k_flags[0]; i++)
            if (has_word(flags, k_flags[i])) append(s->isa_cpu, sizeof s->isa_cpu, k_flags[i]);
#elif defined(__aarch64__) && defined(__linux__)
    unsigned long h = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    (void)h2;
    struct { unsigned long bits, mask; const char *name; } k_caps[] = {
#ifdef HWCAP_ASIMD
        {h, HWCAP_ASIMD, "neon"},
#endif
#ifdef HWCAP_ASIMDHP
        {h, HWCAP_ASIMDHP, "fp16"},
#endif
#ifdef HWCAP_ASIMDDP
        {h, HWCAP_ASIMDDP, "dotprod"},
#endif
#ifdef HWCAP_SVE
        {h, HWCAP_SVE, "sve"},
#endif
#ifdef HWCAP2_SVE2
        {h2, HWCAP2_SVE2, "sve2"},
#endif
#ifdef HWCAP2_I8MM
        {h2, HWCAP2_I8MM, "i8mm"},
#endif
#ifdef HWCAP2_BF16
        {h2, HWCAP2_BF16, "bf16"},
#endif
#ifdef HWCAP2_SME
        {h2, HWCAP2_SME, "sme"},
#endif
        {0, 0, NULL}};
    for (int i = 0; k_caps[i].name; i++)
        if (k_caps[i].bits & k_caps[i].mask) append(s->isa_cpu, sizeof s->isa_cpu, k_caps[i].name);
#elif defined(__APPLE__) && defined(__aarch64__)
    static const char *k_feat[][2] = {{"hw.optional.AdvSIMD", "neon"}, {"hw.optional.arm.FEAT_FP16", "fp16"},
                                      {"hw.optional.arm.FEAT_DotProd", "dotprod"}, {"hw.optional.arm.FEAT_I8MM", "i8mm"},
                                      {"hw.optional.arm.FEAT_BF16", "bf16"}, {"hw.optional.arm.FEAT_SME", "sme"}};
    for (size_t i = 0; i < sizeof k_feat / sizeof k_feat[0]; i++)
        if (sysctl_u64(k_feat[i][0])) append(s->isa_cpu, sizeof s->isa_cpu, k_feat[i][1]);
#endif
}

// What this build compiled for (the kernels can use no more than this).
static void build_isa(ll_hw_sys *s) {
    static const struct { bool on; const char *name; } k_build[] = {
#if defined(__AVX2__)
        {true, "avx2"},
#endif
#if defined(__FMA__)
        {true, "fma"},
#endif
#if defined(__AVX512F__)
        {true, "avx512f"},
#endif
#if defined(__AVX512BW__)
        {true, "avx512bw"},
#endif
#if defined(__AVX512VNNI__)
        {true, "avx512_vnni"},
#endif
#if defined(__AVX512BF16__)
        {true, "avx512_bf16"},
#endif
#if defined(__AVXVNNI__)
        {true, "avx_vnni"},
#endif
#if defined(__ARM_NEON)
        {true, "neon"},
#endif
#if defined(__ARM_FEATURE_DOTPROD)
        {true, "dotprod"},
#endif
#if defined(LL_PORTABLE)
        {true, "portable(scalar)"},
#endif
        {false, NULL}};
    for (int i = 0; k_build[i].name; i++) append(s->isa_build, sizeof s->isa_build, k_build[i].name);
}

// FMA units per core for the widest vectors, from what is known of each core (an estimate; the table's
// `fma_units_why` says which rule applied).
static void cpu_fma_units(ll_hw_sys *s) {
    bool avx512 = has_word(s->isa_cpu, "avx512f"), avx2 = has_word(s->isa_cpu, "avx2");
    s->fma_units = 2;
    snprintf(s->fma_units_why, sizeof s->fma_units_why, "default: 2 FMA pipes");
    if (avx512) { s->simd_lanes_f32 = 16; snprintf(s->simd_name, sizeof s->simd_name, "avx512"); }
    else if (avx2) { s->simd_lanes_f32 = 8; snprintf(s->simd_name, sizeof s->simd_name, "avx2"); }
    else if (has_word(s->isa_cpu, "neon") || strstr(s->arch, "arm") || strstr(s->arch, "aarch64")) {
        s->simd_lanes_f32 = 4;
        snprintf(s->simd_name, sizeof s->simd_name, "neon");
    } else { s->simd_lanes_f32 = 1; snprintf(s->simd_name, sizeof s->simd_name, "scalar"); }
    if (strstr(s->cpu_vendor, "AMD")) {
        if (s->cpu_family == 0x19 && avx512) {
            s->fma_units = 1;
            snprintf(s->fma_units_why, sizeof s->fma_units_why, "AMD Zen 4: 512-bit FMAs issue as 2 x 256 bits");
        } else if (s->cpu_family == 0x17 && s->cpu_model_id < 0x30) {
            s->fma_units = 1;
            snprintf(s->fma_units_why, sizeof s->fma_units_why, "AMD Zen 1: 256-bit FMAs issue as 2 x 128 bits");
        } else snprintf(s->fma_units_why, sizeof s->fma_units_why, "AMD Zen 2/3/5: 2 FMA pipes of full width");
    } else if (strstr(s->cpu_vendor, "Intel")) {
        snprintf(s->fma_units_why, sizeof s->fma_units_why, "Intel: 2 FMA ports (some Xeon Silver/Bronze have 1 for 512-bit)");
    } else if (strstr(s->cpu_vendor, "0x41")) { // Arm Ltd cores: V-series have four 128-bit pipes
        char part[32] = "";
        cpuinfo_value("CPU part", part, sizeof part);
        long p = strtol(part, NULL, 16);
        bool wide = p == 0xd40 || p == 0xd4f || p == 0xd84 || p == 0xd44 || p == 0xd4c;
        s->fma_units = wide ? 4 : 2;
        snprintf(s->fma_units_why, sizeof s->fma_units_why, "Arm part %s: %d x 128-bit FMA pipes", part, s->fma_units);
    } else if (strstr(s->cpu_vendor, "Apple") || strstr(s->cpu_vendor, "0x61")) {
        s->fma_units = 4;
        snprintf(s->fma_units_why, sizeof s->fma_units_why, "Apple performance cores: 4 x 128-bit FMA pipes");
    }
}

static void cpu_freq(ll_hw_sys *s) {
    char buf[128];
    if (read_line("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", buf, sizeof buf) && atof(buf) > 0) {
        s->freq_ghz = atof(buf) / 1e6;
        snprintf(s->freq_source, sizeof s->freq_source, "cpufreq cpuinfo_max_freq");
    } else if (cpuinfo_value("cpu MHz", buf, sizeof buf) && atof(buf) > 0) {
        s->freq_ghz = atof(buf) / 1e3;
        snprintf(s->freq_source, sizeof s->freq_source, "/proc/cpuinfo cpu MHz (nominal; no cpufreq here)");
    }
#if defined(__APPLE__)
    uint64_t hz = sysctl_u64("hw.cpufrequency_max");
    if (hz) {
        s->freq_ghz = (double)hz / 1e9;
        snprintf(s->freq_source, sizeof s->freq_source, "sysctl hw.cpufrequency_max");
    }
#endif
    if (s->freq_ghz <= 0) snprintf(s->freq_source, sizeof s->freq_source, "unknown (no cpufreq, no cpu MHz)");
}

static void cpu_caches(ll_hw_sys *s) {
#if defined(__APPLE__)
    static const char *k_names[][2] = {{"hw.l1dcachesize", "Data"}, {"hw.l2cachesize", "Unified"}, {"hw.l3cachesize", "Unified"}};
    for (int i = 0; i < 3; i++) {
        uint64_t b = sysctl_u64(k_names[i][0]);
        if (!b) continue;
        ll_hw_cache *c = &s->caches[s->n_caches++];
        *c = (ll_hw_cache){.level = i + 1, .bytes = b};
        snprintf(c->type, sizeof c->type, "%s", k_names[i][1]);
    }
#else
    for (int i = 0; i < 16 && s->n_caches < LL_HW_MAX_CACHES; i++) {
        char path[128], buf[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!read_line(path, buf, sizeof buf)) break;
        ll_hw_cache *c = &s->caches[s->n_caches++];
        memset(c, 0, sizeof *c);
        c->level = atoi(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (read_line(path, buf, sizeof buf)) snprintf(c->type, sizeof c->type, "%s", buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (read_line(path, buf, sizeof buf)) {
            char *end;
            double v = strtod(buf, &end);
            c->bytes = (uint64_t)(v * (*end == 'K' ? 1024.0 : *end == 'M' ? 1048576.0 : *end == 'G' ? 1073741824.0 : 1.0));
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", i);
        if (read_line(path, buf, sizeof buf)) snprintf(c->shared_cpus, sizeof c->shared_cpus, "%s", buf);
    }
#endif
    int top = 0;
    for (int i = 0; i < s->n_caches; i++)
        if (strcmp(s->caches[i].type, "Instruction") != 0 && s->caches[i].level >= top) {
            top = s->caches[i].level;
            s->llc_bytes = s->caches[i].bytes;
        }
    if (!s->llc_bytes) s->llc_bytes = 32u << 20; // unknown: assume a large one, so buffers stay large
}

static void cpu_describe(ll_hw_sys *s) {
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(s->kernel, sizeof s->kernel, "%s %s", u.sysname, u.release);
        snprintf(s->arch, sizeof s->arch, "%s", u.machine);
        snprintf(s->os, sizeof s->os, "%s", u.sysname);
    }
    FILE *f = fopen("/etc/os-release", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "PRETTY_NAME=", 12)) {
                char *v = line + 12;
                v[strcspn(v, "\n")] = 0;
                if (*v == '"') { v++; v[strcspn(v, "\"")] = 0; }
                snprintf(s->os, sizeof s->os, "%s", v);
            }
        fclose(f);
    }
    char buf[256];
    if (cpuinfo_value("model name", buf, sizeof buf)) snprintf(s->cpu_model, sizeof s->cpu_model, "%s", buf);
    if (cpuinfo_value("vendor_id", buf, sizeof buf)) snprintf(s->cpu_vendor, sizeof s->cpu_vendor, "%s", buf);
    else if (cpuinfo_value("CPU implementer", buf, sizeof buf)) snprintf(s->cpu_vendor, sizeof s->cpu_vendor, "%s", buf);
    if (cpuinfo_value("cpu family", buf, sizeof buf)) s->cpu_family = atoi(buf);
    if (cpuinfo_value("model", buf, sizeof buf)) s->cpu_model_id = atoi(buf);
    if (!s->cpu_model[0] && cpuinfo_value("CPU part", buf, sizeof buf))
        snprintf(s->cpu_model, sizeof s->cpu_model, "implementer %s part %s", s->cpu_vendor, buf);
#if defined(__APPLE__)
    size_t len = sizeof s->cpu_model;
    sysctlbyname("machdep.cpu.brand_string", s->cpu_model, &len, NULL, 0);
    if (strstr(s->cpu_model, "Apple")) snprintf(s->cpu_vendor, sizeof s->cpu_vendor, "Apple");
#endif
    if (!s->cpu_model[0]) snprintf(s->cpu_model, sizeof s->cpu_model, "unknown");
    s->logical = ll_sys_logical_cores();
    s->physical = ll_sys_physical_cores();
    s->mem_total = ll_sys_mem_total();
    s->mem_avail = ll_sys_mem_available();
    s->numa_nodes = 0;
    DIR *d = opendir("/sys/devices/system/node");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (!strncmp(e->d_name, "node", 4) && isdigit((unsigned char)e->d_name[4])) s->numa_nodes++;
        closedir(d);
    }
    if (s->numa_nodes == 0) s->numa_nodes = 1;
    gethostname(s->hostname, sizeof s->hostname - 1);
    if (!s->hostname[0]) snprintf(s->hostname, sizeof s->hostname, "unknown-host");
}

// ---- GPUs ----------------------------------------------------------------------------------------------------------

// Dense peaks from the vendors' datasheets (sparsity figures halved); fp32 is the non-tensor rate. The first
// row whose `match` is in the device name wins, so more specific names come first.
static const ll_hw_gpu_spec k_gpu_specs[] = {
    {"H100 PCIe", "H100 PCIe", 51.2, 378, 756, 756, 1513, 1513, 2000},
    {"H100 NVL", "H100 NVL", 60, 418, 835, 835, 1671, 1671, 3900},
    {"H100", "H100 SXM", 66.9, 495, 989, 989, 1979, 1979, 3350},
    {"H200 NVL", "H200 NVL", 60, 418, 835, 835, 1671, 1671, 4800},
    {"H200", "H200 SXM", 66.9, 495, 989, 989, 1979, 1979, 4800},
    {"GH200", "GH200 (96 GB HBM3)", 66.9, 495, 989, 989, 1979, 1979, 4000},
    {"B200", "B200", 80, 1100, 2250, 2250, 4500, 4500, 8000},
    {"A100-SXM4-40GB", "A100 SXM 40GB", 19.5, 156, 312, 312, 0, 624, 1555},
    {"A100-PCIE-40GB", "A100 PCIe 40GB", 19.5, 156, 312, 312, 0, 624, 1555},
    {"A100 80GB PCIe", "A100 PCIe 80GB", 19.5, 156, 312, 312, 0, 624, 1935},
    {"A100", "A100 SXM 80GB", 19.5, 156, 312, 312, 0, 624, 2039},
    {"L40S", "L40S", 91.6, 183, 362, 362, 733, 733, 864},
    {"L4", "L4", 30.3, 60, 121, 121, 242, 242, 300},
    {"A10G", "A10G", 31.2, 35, 70, 70, 0, 140, 600},
    {"A10", "A10", 31.2, 62.5, 125, 125, 0, 250, 600},
    {"RTX 4090", "GeForce RTX 4090", 82.6, 82.6, 165.2, 165.2, 330.3, 660.6, 1008},
    {"RTX 3090", "GeForce RTX 3090", 35.6, 35.6, 71, 71, 0, 284, 936},
    {"T4", "T4", 8.1, 0, 65, 0, 0, 130, 320},
    {"V100", "V100 SXM2", 15.7, 0, 125, 0, 0, 0, 900},
};

const ll_hw_gpu_spec *ll_hw_gpu_spec_find(const char *name) {
    for (size_t i = 0; i < sizeof k_gpu_specs / sizeof k_gpu_specs[0]; i++)
        if (strstr(name, k_gpu_specs[i].match)) return &k_gpu_specs[i];
    return NULL;
}

double ll_hw_gpu_spec_tflops(const ll_hw_gpu_spec *s, const char *dtype) {
    if (!s) return 0;
    if (!strcmp(dtype, "fp32")) return s->fp32;
    if (!strcmp(dtype, "tf32")) return s->tf32;
    if (!strcmp(dtype, "fp16")) return s->fp16;
    if (!strcmp(dtype, "bf16")) return s->bf16;
    if (!strcmp(dtype, "fp8_e4m3")) return s->fp8;
    if (!strcmp(dtype, "int8")) return s->int8;
    return 0;
}

// PCIe GB/s per direction: GT/s x lanes x line-code efficiency / 8 (8b/10b below 8 GT/s, 128b/130b from gen 3).
static double pcie_gbps(const char *speed, int width) {
    double gt = atof(speed);
    if (gt <= 0 || width <= 0) return 0;
    return gt * width * (gt >= 8 ? 128.0 / 130.0 : 0.8) / 8.0;
}

static void gpu_link(ll_hw_gpu *g) {
    char bus[32], path[160], buf[64];
    snprintf(bus, sizeof bus, "%s", g->info.pci_bus_id);
    for (char *p = bus; *p; p++) *p = (char)tolower((unsigned char)*p);
    static const char *k_files[4] = {"current_link_speed", "current_link_width", "max_link_speed", "max_link_width"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", bus, k_files[i]);
        if (!read_line(path, buf, sizeof buf)) continue;
        if (i == 0) snprintf(g->link_speed, sizeof g->link_speed, "%s", buf);
        if (i == 1) g->link_width = atoi(buf);
        if (i == 2) snprintf(g->link_speed_max, sizeof g->link_speed_max, "%s", buf);
        if (i == 3) g->link_width_max = atoi(buf);
    }
    g->pcie_gbps = pcie_gbps(g->link_speed, g->link_width);
    // "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...": the first
    // token of digits and dots with a dot in it.
    char line[256];
    if (read_line("/proc/driver/nvidia/version", line, sizeof line)) {
        for (char *save = NULL, *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
            if (isdigit((unsigned char)t[0]) && strchr(t, '.') && strspn(t, "0123456789.") == strlen(t)) {
                snprintf(g->driver, sizeof g->driver, "%s", t);
                break;
            }
    }
}

static void gpus_collect(ll_hw_sys *s) {
    int n = ll_hw_cuda_device_count(s->gpu_why, sizeof s->gpu_why);
    for (int i = 0; i < n && s->n_gpus < LL_HW_MAX_GPUS; i++) {
        ll_hw_gpu *g = &s->gpus[s->n_gpus];
        memset(g, 0, sizeof *g);
        if (!ll_hw_cuda_info(i, &g->info, s->gpu_why, sizeof s->gpu_why)) continue;
        g->spec = ll_hw_gpu_spec_find(g->info.name);
        // DDR: two transfers per memory clock; bus width in bits.
        g->mem_gbps_from_clocks = 2.0 * g->info.mem_clock_khz * 1e3 * (g->info.mem_bus_bits / 8.0) / 1e9;
        gpu_link(g);
        s->n_gpus++;
    }
}

void ll_hw_sys_collect(ll_hw_sys *s, bool with_gpu) {
    memset(s, 0, sizeof *s);
    cpu_describe(s);
    cpu_isa(s);
    build_isa(s);
    cpu_fma_units(s);
    cpu_freq(s);
    cpu_caches(s);
    // Peak = frequency x physical cores x SIMD lanes x 2 (an FMA is two flops) x FMA units.
    s->cpu_peak_spec_gflops = s->freq_ghz * s->physical * s->simd_lanes_f32 * 2.0 * s->fma_units;
    bool dot = has_word(s->isa_cpu, "avx512_vnni") || has_word(s->isa_cpu, "avx_vnni") || has_word(s->isa_cpu, "dotprod");
    s->cpu_int8_spec_gops = s->cpu_peak_spec_gflops * (dot ? 4.0 : 2.0); // 4 int8 MACs per 32-bit lane
    if (with_gpu) gpus_collect(s);
    else snprintf(s->gpu_why, sizeof s->gpu_why, "GPU sections not requested");
}

// ---- JSON -----------------------------------------------------------------------------------------------------------

cJSON *ll_hw_machine_json(const ll_hw_ctx *c) {
    const ll_hw_sys *s = &c->sys;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "hostname", s->hostname);
    cJSON_AddStringToObject(m, "os", s->os);
    cJSON_AddStringToObject(m, "kernel", s->kernel);
    cJSON_AddStringToObject(m, "arch", s->arch);
    cJSON_AddStringToObject(m, "cpu_model", s->cpu_model);
    cJSON_AddNumberToObject(m, "logical_cores", s->logical);
    cJSON_AddNumberToObject(m, "physical_cores", s->physical);
    cJSON_AddNumberToObject(m, "mem_total_bytes", (double)s->mem_total);
    cJSON *g = cJSON_AddArrayToObject(m, "gpus");
    for (int i = 0; i < s->n_gpus; i++) cJSON_AddItemToArray(g, cJSON_CreateString(s->gpus[i].info.name));
    cJSON_AddStringToObject(m, "llmlab_version", LLMLAB_VERSION);
    cJSON *b = cJSON_AddObjectToObject(m, "build");
    cJSON_AddStringToObject(b, "isa", s->isa_build);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    cJSON_AddBoolToObject(b, "cuda", true);
#else
    cJSON_AddBoolToObject(b, "cuda", false);
#endif
    cJSON_AddStringToObject(m, "mode", c->mode);
    char ts[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(m, "timestamp_utc", ts);
    return m;
}

static cJSON *gpu_json(const ll_hw_gpu *g) {
    const ll_hw_gpu_info *i = &g->info;
    cJSON *o = cJSON_CreateObject();
    char dev[16], cc[16];
    snprintf(dev, sizeof dev, "cuda:%d", i->index);
    snprintf(cc, sizeof cc, "%d.%d", i->cc_major, i->cc_minor);
    cJSON_AddStringToObject(o, "device", dev);
    cJSON_AddStringToObject(o, "name", i->name);
    cJSON_AddStringToObject(o, "compute_capability", cc);
    cJSON_AddNumberToObject(o, "sm_count", i->sm_count);
    cJSON_AddNumberToObject(o, "mem_total_bytes", (double)i->mem_total);
    cJSON_AddNumberToObject(o, "mem_free_bytes", (double)i->mem_free);
    cJSON_AddNumberToObject(o, "l2_bytes", (double)i->l2_bytes);
    cJSON_AddNumberToObject(o, "sm_clock_mhz", i->clock_khz / 1000.0);
    cJSON_AddNumberToObject(o, "mem_clock_mhz", i->mem_clock_khz / 1000.0);
    cJSON_AddNumberToObject(o, "mem_bus_bits", i->mem_bus_bits);
    char ver[32];
    snprintf(ver, sizeof ver, "%d.%d", i->driver_version / 1000, i->driver_version % 1000 / 10);
    cJSON_AddStringToObject(o, "driver_cuda_version", ver);
    snprintf(ver, sizeof ver, "%d.%d", i->runtime_version / 1000, i->runtime_version % 1000 / 10);
    cJSON_AddStringToObject(o, "runtime_version", ver);
    if (g->driver[0]) cJSON_AddStringToObject(o, "driver_version", g->driver);
    else cJSON_AddNullToObject(o, "driver_version");
    cJSON_AddStringToObject(o, "pci_bus_id", i->pci_bus_id);
    cJSON *l = cJSON_AddObjectToObject(o, "pcie");
    cJSON_AddStringToObject(l, "speed", g->link_speed[0] ? g->link_speed : "unknown");
    cJSON_AddNumberToObject(l, "width", g->link_width);
    cJSON_AddStringToObject(l, "max_speed", g->link_speed_max[0] ? g->link_speed_max : "unknown");
    cJSON_AddNumberToObject(l, "max_width", g->link_width_max);
    cJSON_AddNumberToObject(l, "gbps_per_direction", g->pcie_gbps);
    if (g->spec) cJSON_AddStringToObject(o, "spec_model", g->spec->label);
    else cJSON_AddNullToObject(o, "spec_model");
    return o;
}

cJSON *ll_hw_sys_json(const ll_hw_ctx *c) {
    const ll_hw_sys *s = &c->sys;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "os", s->os);
    cJSON_AddStringToObject(o, "kernel", s->kernel);
    cJSON *cpu = cJSON_AddObjectToObject(o, "cpu");
    cJSON_AddStringToObject(cpu, "model", s->cpu_model);
    cJSON_AddStringToObject(cpu, "vendor", s->cpu_vendor);
    cJSON_AddStringToObject(cpu, "arch", s->arch);
    cJSON_AddNumberToObject(cpu, "physical_cores", s->physical);
    cJSON_AddNumberToObject(cpu, "logical_cores", s->logical);
    cJSON_AddStringToObject(cpu, "isa_features", s->isa_cpu);
    cJSON_AddStringToObject(cpu, "isa_build", s->isa_build);
    cJSON_AddNumberToObject(cpu, "freq_ghz", s->freq_ghz);
    cJSON_AddStringToObject(cpu, "freq_source", s->freq_source);
    cJSON_AddStringToObject(cpu, "simd", s->simd_name);
    cJSON_AddNumberToObject(cpu, "simd_lanes_f32", s->simd_lanes_f32);
    cJSON_AddNumberToObject(cpu, "fma_units", s->fma_units);
    cJSON_AddStringToObject(cpu, "fma_units_rule", s->fma_units_why);
    cJSON_AddStringToObject(cpu, "gemm_f32_kernel", ll_matmul_isa(LL_TYPE_F32));
    cJSON *caches = cJSON_AddArrayToObject(o, "caches");
    for (int i = 0; i < s->n_caches; i++) {
        cJSON *k = cJSON_CreateObject();
        cJSON_AddNumberToObject(k, "level", s->caches[i].level);
        cJSON_AddStringToObject(k, "type", s->caches[i].type);
        cJSON_AddNumberToObject(k, "bytes", (double)s->caches[i].bytes);
        cJSON_AddStringToObject(k, "shared_cpu_list", s->caches[i].shared_cpus);
        cJSON_AddItemToArray(caches, k);
    }
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    cJSON_AddNumberToObject(mem, "total_bytes", (double)s->mem_total);
    cJSON_AddNumberToObject(mem, "available_bytes", (double)s->mem_avail);
    cJSON_AddNumberToObject(o, "numa_nodes", s->numa_nodes);
    cJSON *g = cJSON_AddArrayToObject(o, "gpus");
    for (int i = 0; i < s->n_gpus; i++) cJSON_AddItemToArray(g, gpu_json(&s->gpus[i]));
    if (s->n_gpus == 0) cJSON_AddStringToObject(o, "gpus_absent_reason", s->gpu_why);
    return o;
}
