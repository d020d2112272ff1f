// test_bench_hw.c — the hardware lab's plumbing, not its speed: the JSON files of a tiny run (schema, required
// fields and types, finite positive numbers), GEMM validation catching wrong results, the int8 GEMM against its
// reference, the allocation bisection on a fake allocator, the GPU spec table. Benchmarks are never timed here.
#include "testutil.h"

#include <dirent.h>
#include <unistd.h>

#include "backend/cpu/matmul.h"
#include "bench/hw_cuda.h"
#include "bench/hw_internal.h"

// ---- a tiny run into a temporary directory, then its files read back --------------------------------------------

static char g_dir[256];

static int setup_run(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-test-hw-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    ll_hw_config c;
    ll_hw_config_init(&c);
    c.quick = true;
    c.progress = false;
    c.no_gpu = true; // GPU paths are exercised by test_cuda_reports_absence and on the GPU machine
    c.json_dir = g_dir;
    c.n_threads = 2;
    c.gemm_sizes[0] = 64;
    c.gemm_sizes[1] = 96;
    c.n_gemm_sizes = 2;
    c.attn_seqs[0] = 48;
    c.n_attn_seqs = 1;
    c.attn_heads = 2;
    c.mem_bytes = 4 << 20;
    c.alloc_cap = 64 << 20;
    c.min_time = 0.005;
    ll_error err = {0};
    FILE *table = fopen("/dev/null", "w");
    ll_status st = ll_hw_run(&c, table, &err);
    if (table) fclose(table);
    if (st != LL_OK) printf("# ll_hw_run: %s\n", err.message);
    return st == LL_OK ? 0 : -1;
}

static int teardown_run(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.' || strstr(e->d_name, ".tmp")) {
                snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static cJSON *load_doc(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.json", g_dir, name);
    char *text = tu_read_file(p, NULL);
    if (!text) fail_msg("%s was not written", p);
    cJSON *d = cJSON_Parse(text);
    free(text);
    if (!d) fail_msg("%s is not valid JSON", p);
    return d;
}

static const cJSON *need(const cJSON *o, const char *key, bool (*is)(const cJSON *)) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || !is(v)) fail_msg("key '%s' missing or of the wrong type", key);
    return v;
}
static bool is_str(const cJSON *v) { return cJSON_IsString(v); }
static bool is_num(const cJSON *v) { return cJSON_IsNumber(v); }
static bool is_obj(const cJSON *v) { return cJSON_IsObject(v); }
static bool is_arr(const cJSON *v) { return cJSON_IsArray(v); }

static double pos(const cJSON *o, const char *key) {
    double v = need(o, key, is_num)->valuedouble;
    if (!(isfinite(v) && v > 0)) fail_msg("'%s' = %g is not finite and positive", key, v);
    return v;
}

// Every number anywhere in the document is finite (non-finite values must have become null).
static void all_finite(const cJSON *o) {
    const cJSON *c;
    if (cJSON_IsNumber(o)) assert_true(isfinite(o->valuedouble));
    cJSON_ArrayForEach(c, o) all_finite(c);
}

// The common envelope: schema, machine, results, notes.
static cJSON *check_envelope(const char *name) {
    cJSON *d = load_doc(name);
    char want[64];
    snprintf(want, sizeof want, "llmlab.%s/1", name);
    assert_string_equal(need(d, "schema", is_str)->valuestring, want);
    const cJSON *m = need(d, "machine", is_obj);
    need(m, "hostname", is_str);
    need(m, "cpu_model", is_str);
    pos(m, "logical_cores");
    pos(m, "physical_cores");
    pos(m, "mem_total_bytes");
    need(m, "gpus", is_arr);
    assert_string_equal(need(m, "mode", is_str)->valuestring, "quick");
    need(need(m, "build", is_obj), "isa", is_str);
    need(d, "results", is_arr);
    need(d, "notes", is_arr);
    all_finite(d);
    return d;
}

// A timed row: time_s{median,min,max,reps} consistent and positive, the rate positive, validated true.
static void check_timed(const cJSON *r, const char *rate) {
    need(r, "device", is_str);
    need(r, "kind", is_str);
    need(r, "impl", is_str);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "validated")));
    const cJSON *t = need(r, "time_s", is_obj);
    double med = pos(t, "median"), mn = pos(t, "min"), mx = pos(t, "max"), q1 = pos(t, "q1"), q3 = pos(t, "q3");
    assert_true(mn <= q1 && q1 <= med && med <= q3 && q3 <= mx);
    assert_true(pos(t, "reps") >= 1);
    assert_true(need(r, "spread_pct", is_num)->valuedouble >= 0);
    pos(r, rate);
}

static int count_rows(const cJSON *d, const char *kind, const char *dtype) {
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(d, "results")) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "kind"), *t = cJSON_GetObjectItemCaseSensitive(r, "dtype");
        n += (!kind || (cJSON_IsString(k) && !strcmp(k->valuestring, kind))) &&
             (!dtype || (cJSON_IsString(t) && !strcmp(t->valuestring, dtype)));
    }
    return n;
}

static void test_json_gemm(void **state) {
    (void)state;
    cJSON *d = check_envelope("gemm");
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(d, "results")) {
        if (cJSON_GetObjectItemCaseSensitive(r, "skipped")) continue;
        check_timed(r, "tflops");
        double m = pos(r, "m");
        assert_true(m == 64 || m == 96);
        assert_true(pos(r, "n") == m && pos(r, "k") == m);
        pos(r, "threads");
    }
    assert_int_equal(count_rows(d, "gemm", "bf16"), 2); // engine BF16 at both sizes
    assert_int_equal(count_rows(d, "gemm", "int8"), 2);
    assert_true(count_rows(d, "gemm", "fp32") >= 2);    // engine F32 (+ BLAS when installed)
    cJSON_Delete(d);
}

static void test_json_memory(void **state) {
    (void)state;
    cJSON *d = check_envelope("memory");
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(d, "results")) {
        check_timed(r, "gbps");
        pos(r, "threads");
        assert_true(pos(r, "array_bytes") == 4 << 20);
    }
    static const char *k_ops[] = {"read", "write", "copy", "triad"};
    for (int i = 0; i < 4; i++) assert_int_equal(count_rows(d, k_ops[i], "fp32"), 2); // 1 and 2 threads
    cJSON_Delete(d);
}

static void test_json_attention(void **state) {
    (void)state;
    cJSON *d = check_envelope("attention");
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(d, "results")) {
        check_timed(r, "tflops");
        assert_true(pos(r, "seq") == 48 && pos(r, "heads") == 2 && pos(r, "batch") == 1);
        double hd = pos(r, "head_dim");
        assert_true(hd == 64 || hd == 128);
    }
    assert_int_equal(count_rows(d, "causal", "fp32"), 2);
    assert_int_equal(count_rows(d, "full", "fp32"), 2);
    cJSON_Delete(d);
}

static void test_json_alloc_and_gpu_files(void **state) {
    (void)state;
    cJSON *d = check_envelope("alloc");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "results")), 1);
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d, "results"), 0);
    double got = pos(r, "largest_ok_bytes"), bound = pos(r, "bound_bytes");
    assert_true(got <= bound && bound == 64 << 20);
    assert_string_equal(need(r, "limited_by", is_str)->valuestring, "bound");
    pos(r, "probes");
    cJSON_Delete(d);
    // Without a GPU the GPU-only files exist, have no rows, and say why.
    static const char *k_gpu[] = {"transfer", "launch"};
    for (int i = 0; i < 2; i++) {
        d = check_envelope(k_gpu[i]);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "results")), 0);
        char *text = cJSON_PrintUnformatted(d);
        assert_non_null(strstr(text, "GPU sections skipped"));
        free(text);
        cJSON_Delete(d);
    }
}

static void test_json_system_info(void **state) {
    (void)state;
    cJSON *d = check_envelope("system_info");
    const cJSON *s = need(d, "system", is_obj), *cpu = need(s, "cpu", is_obj);
    need(cpu, "model", is_str);
    need(cpu, "isa_features", is_str);
    pos(cpu, "simd_lanes_f32");
    pos(cpu, "fma_units");
    need(s, "caches", is_arr);
    pos(need(s, "memory", is_obj), "total_bytes");
    pos(s, "numa_nodes");
    need(s, "gpus", is_arr);
    // Ceilings: at least the measured CPU peak and read bandwidth, each with value/unit/source.
    int measured = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(d, "results")) {
        pos(r, "value");
        need(r, "unit", is_str);
        const char *src = need(r, "source", is_str)->valuestring;
        assert_true(!strcmp(src, "spec") || !strcmp(src, "estimate") || !strcmp(src, "measured"));
        measured += !strcmp(src, "measured");
    }
    assert_true(measured >= 3); // fma peak, gemm best, read best
    cJSON_Delete(d);
    // Atomic writes leave no temporary files behind.
    DIR *dir = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) assert_null(strstr(e->d_name, ".tmp"));
    closedir(dir);
}

// ---- GEMM validation catches wrong results -----------------------------------------------------------------------

static void test_gemm_check_catches_errors(void **state) {
    (void)state;
    enum { M = 48, N = 40, K = 128 };
    float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C = malloc(N * M * 4), *At = malloc(K * M * 4);
    uint64_t s = 3;
    for (int i = 0; i < M * K; i++) A[i] = tu_rng_uniform(&s);
    for (int i = 0; i < N * K; i++) B[i] = tu_rng_uniform(&s);
    size_t ws = ll_matmul_wsize(LL_TYPE_F32, K, N, 1);
    void *wsp = ll_aligned_alloc(ws ? ws : 64, 64, NULL);
    ll_matmul(NULL, LL_TYPE_F32, A, B, C, K, M, N, wsp); // C (N x M) = B A^T: the engine's layout
    double tol = 8.0 * sqrt((double)K) * ldexp(1.0, -24);
    bool pass;
    double e = ll_hw_gemm_check(LL_HW_F32, A, LL_HW_F32, B, LL_HW_F32, C, M, N, K, M, 64, 7, tol, &pass);
    assert_true(pass);
    assert_true(e < tol);
    // (a) every entry 0.1% too large
    float *bad = malloc(N * M * 4);
    for (int i = 0; i < N * M; i++) bad[i] = C[i] * 1.001f;
    ll_hw_gemm_check(LL_HW_F32, A, LL_HW_F32, B, LL_HW_F32, bad, M, N, K, M, 64, 7, tol, &pass);
    assert_false(pass);
    // (b) one wrong corner entry (corners are always sampled)
    memcpy(bad, C, N * M * 4);
    bad[(size_t)(N - 1) * M + (M - 1)] += 0.01f;
    ll_hw_gemm_check(LL_HW_F32, A, LL_HW_F32, B, LL_HW_F32, bad, M, N, K, M, 64, 7, tol, &pass);
    assert_false(pass);
    // (c) a NaN
    memcpy(bad, C, N * M * 4);
    bad[0] = NAN;
    ll_hw_gemm_check(LL_HW_F32, A, LL_HW_F32, B, LL_HW_F32, bad, M, N, K, M, 64, 7, tol, &pass);
    assert_false(pass);
    // (d) the product of the wrong layout (A read transposed)
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) At[(size_t)k * M + i] = A[(size_t)i * K + k];
    ll_matmul_ref(LL_TYPE_F32, At, B, bad, K, M, N); // uses At rows as if they were A's: wrong
    ll_hw_gemm_check(LL_HW_F32, A, LL_HW_F32, B, LL_HW_F32, bad, M, N, K, M, 64, 7, tol, &pass);
    assert_false(pass);
    free(A); free(B); free(C); free(At); free(bad);
    ll_aligned_free(wsp);
}

// ---- the lab's int8 GEMM against its scalar reference ----------------------------------------------------------------

static void test_int8_gemm(void **state) {
    (void)state;
    static const int k_shapes[][3] = {{64, 64, 64}, {37, 19, 200}, {5, 7, 1}, {33, 40, 1000}, {4, 4, 63}};
    for (int nt = 1; nt <= 2; nt++) {
        ll_pool *pool = ll_pool_init(nt, NULL);
        for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
            int m = k_shapes[si][0], n = k_shapes[si][1], k = k_shapes[si][2];
            int8_t *A = malloc((size_t)m * k), *B = malloc((size_t)n * k);
            int32_t *C = malloc((size_t)n * m * 4), *R = malloc((size_t)n * m * 4);
            uint64_t s = 11 + si;
            for (int i = 0; i < m * k; i++) A[i] = (int8_t)((int)(tu_rng_u64(&s) % 255) - 127);
            for (int i = 0; i < n * k; i++) B[i] = (int8_t)((int)(tu_rng_u64(&s) % 255) - 127);
            A[0] = 127; B[0] = -127; // the extremes
            void *wsp = ll_aligned_alloc(ll_hw_i8_wsize(m, n, k, nt), 64, NULL);
            memset(C, 0x55, (size_t)n * m * 4);
            ll_hw_i8_gemm(pool, A, B, C, m, n, k, wsp);
            ll_hw_i8_gemm_ref(A, B, R, m, n, k);
            assert_memory_equal(C, R, (size_t)n * m * 4);
            bool pass;
            ll_hw_gemm_check(LL_HW_I8, A, LL_HW_I8, B, LL_HW_I32, C, m, n, k, (size_t)m, 32, 1, 0, &pass);
            assert_true(pass);
            C[0] += 1; // exact arithmetic: any difference fails
            ll_hw_gemm_check(LL_HW_I8, A, LL_HW_I8, B, LL_HW_I32, C, m, n, k, (size_t)m, 32, 1, 0, &pass);
            assert_false(pass);
            free(A); free(B); free(C); free(R);
            ll_aligned_free(wsp);
        }
        ll_pool_free(pool);
    }
    printf("# note: int8 GEMM path: %s\n", ll_hw_i8_isa());
}

// ---- bisection on a fake allocator ------------------------------------------------------------------------------------

typedef struct fake_alloc {
    uint64_t wall, asked_max;
    int calls;
} fake_alloc;

static bool fake_try(void *ctx, uint64_t bytes) {
    fake_alloc *f = ctx;
    f->calls++;
    if (bytes > f->asked_max) f->asked_max = bytes;
    return bytes <= f->wall;
}

static void test_bisect(void **state) {
    (void)state;
    const uint64_t G = 1ull << 30, gran = 256ull << 20;
    // The seeds' wall: 12 GiB on a 20 GiB bound.
    fake_alloc f = {12 * G, 0, 0};
    int probes;
    uint64_t got = ll_hw_bisect(fake_try, &f, 20 * G, gran, &probes);
    assert_true(got <= 12 * G && got > 12 * G - gran);
    assert_int_equal(got % gran, 0);
    assert_int_equal(probes, f.calls);
    assert_true(probes <= 8); // 1 + ceil(log2(20 GiB / 256 MiB))
    assert_true(f.asked_max <= 20 * G);
    // A wall not on the granularity: the largest multiple below it.
    f = (fake_alloc){12 * G + 100, 0, 0};
    assert_true(ll_hw_bisect(fake_try, &f, 20 * G, gran, &probes) == 12 * G);
    // No wall below the bound: one probe, the bound itself (rounded down to the granularity).
    f = (fake_alloc){UINT64_MAX, 0, 0};
    assert_true(ll_hw_bisect(fake_try, &f, 20 * G + 5, gran, &probes) == 20 * G);
    assert_int_equal(probes, 1);
    // Nothing works, or the wall is below the granularity: 0.
    f = (fake_alloc){0, 0, 0};
    assert_true(ll_hw_bisect(fake_try, &f, 20 * G, gran, &probes) == 0);
    f = (fake_alloc){gran - 1, 0, 0};
    assert_true(ll_hw_bisect(fake_try, &f, 20 * G, gran, &probes) == 0);
    // A bound smaller than the granularity: nothing to probe.
    f = (fake_alloc){UINT64_MAX, 0, 0};
    assert_true(ll_hw_bisect(fake_try, &f, gran - 1, gran, &probes) == 0);
    assert_int_equal(f.calls, 0);
}

// ---- small pieces -----------------------------------------------------------------------------------------------------

static void test_sections_and_stats(void **state) {
    (void)state;
    unsigned bits;
    ll_error err = {0};
    assert_true(ll_hw_parse_sections("gemm,memory", &bits, &err));
    assert_int_equal(bits, LL_HW_GEMM | LL_HW_MEMORY);
    assert_true(ll_hw_parse_sections("launch", &bits, &err));
    assert_int_equal(bits, LL_HW_LAUNCH);
    assert_false(ll_hw_parse_sections("gemm,bogus", &bits, &err));
    assert_non_null(strstr(err.message, "bogus"));
    assert_false(ll_hw_parse_sections("", &bits, &err));
    double t[5] = {3, 1, 2, 5, 4}, u[4] = {4, 1, 3, 2};
    ll_hw_stats s = ll_hw_stats_of(t, 5);
    assert_true(s.median == 3 && s.min == 1 && s.max == 5 && s.reps == 5);
    assert_true(s.q1 == 2 && s.q3 == 4);
    s = ll_hw_stats_of(u, 4);
    assert_true(s.median == 2.5 && s.min == 1 && s.max == 4);
    assert_true(s.q1 == 1.75 && s.q3 == 3.25); // interpolated quartiles
}

static void test_gpu_spec_table(void **state) {
    (void)state;
    const ll_hw_gpu_spec *s = ll_hw_gpu_spec_find("NVIDIA H100 80GB HBM3");
    assert_non_null(s);
    assert_string_equal(s->label, "H100 SXM");
    assert_true(ll_hw_gpu_spec_tflops(s, "bf16") == 989 && s->mem_gbps == 3350);
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA H100 PCIe")->label, "H100 PCIe");
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA H200")->label, "H200 SXM");
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA A100-SXM4-80GB")->label, "A100 SXM 80GB");
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA L4")->label, "L4");
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA L40S")->label, "L40S");
    assert_string_equal(ll_hw_gpu_spec_find("NVIDIA GeForce RTX 4090")->label, "GeForce RTX 4090");
    assert_null(ll_hw_gpu_spec_find("Some Future GPU"));
    assert_true(ll_hw_gpu_spec_tflops(ll_hw_gpu_spec_find("NVIDIA A100-SXM4-80GB"), "fp8_e4m3") == 0);
}

// On a machine without a GPU (or a build without CUDA) the count is 0 and the reason is given.
static void test_cuda_reports_absence(void **state) {
    (void)state;
    char why[256] = "";
    int n = ll_hw_cuda_device_count(why, sizeof why);
    assert_true(n >= 0);
    if (n == 0) {
        assert_true(strstr(why, "no CUDA device") != NULL || strstr(why, "built without CUDA") != NULL);
        printf("# note: %s\n", why);
    } else {
        printf("# note: %d CUDA device(s): GPU sections run under `llmlab bench hw`\n", n);
    }
}

int main(void) {
    const struct CMUnitTest run[] = {
        cmocka_unit_test(test_json_gemm),      cmocka_unit_test(test_json_memory),
        cmocka_unit_test(test_json_attention), cmocka_unit_test(test_json_alloc_and_gpu_files),
        cmocka_unit_test(test_json_system_info),
    };
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_gemm_check_catches_errors), cmocka_unit_test(test_int8_gemm),
        cmocka_unit_test(test_bisect),                    cmocka_unit_test(test_sections_and_stats),
        cmocka_unit_test(test_gpu_spec_table),            cmocka_unit_test(test_cuda_reports_absence),
    };
    int failed = cmocka_run_group_tests_name("bench_hw_run", run, setup_run, teardown_run);
    failed += cmocka_run_group_tests_name("bench_hw_unit", unit, NULL, NULL);
    return failed ? 1 : 0;
}
