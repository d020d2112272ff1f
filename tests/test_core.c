// test_core.c — core layer: fp16/bf16 conversions against exhaustive/known values, the thread pool (also with
// more threads than CPUs), the allowed-CPU count (affinity, cgroup quotas), overflow helpers, the type table.
#include "testutil.h"

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/half.h"
#include "core/pool.h"
#include "types/types.h"

// Every one of the 65536 halves round-trips f16 -> f32 -> f16 (NaNs stay NaN).
static void test_fp16_roundtrip_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ll_fp16_to_fp32((uint16_t)h);
        uint16_t back = ll_fp32_to_fp16(f);
        if (isnan(f)) assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else assert_int_equal(back, h);
    }
}

// Rounding to nearest even at the midpoints, overflow to inf, subnormals.
static void test_fp16_rounding(void **state) {
    (void)state;
    assert_int_equal(ll_fp32_to_fp16(1.0f), 0x3c00);
    assert_int_equal(ll_fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00);            // tie -> even
    assert_int_equal(ll_fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);            // tie -> even (up)
    assert_int_equal(ll_fp32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(ll_fp32_to_fp16(65520.0f), 0x7c00);                       // rounds to inf
    assert_int_equal(ll_fp32_to_fp16(-65519.0f), 0xfbff);
    assert_int_equal(ll_fp32_to_fp16(5.9604645e-08f), 0x0001);                // smallest subnormal
    assert_int_equal(ll_fp32_to_fp16(2.9802322e-08f), 0x0000);                // half of it: tie -> 0
    assert_int_equal(ll_fp32_to_fp16(6.1035156e-05f), 0x0400);                // smallest normal
    // Against the float path: every f32 in a sweep converts to the nearest half.
    uint64_t s = 1;
    for (int i = 0; i < 200000; i++) {
        float f = tu_rng_uniform(&s) * ldexpf(1.0f, (int)(tu_rng_u64(&s) % 40) - 26);
        uint16_t h = ll_fp32_to_fp16(f);
        float q = ll_fp16_to_fp32(h);
        float up = ll_fp16_to_fp32((uint16_t)(h + 1)), dn = ll_fp16_to_fp32((uint16_t)(h - 1));
        if ((h & 0x7fff) != 0 && (h & 0x7fff) != 0x7bff) {
            assert_true(fabsf(q - f) <= fabsf(up - f));
            assert_true(fabsf(q - f) <= fabsf(dn - f));
        }
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(ll_fp32_to_bf16(1.0f), 0x3f80);
    assert_true(ll_bf16_to_fp32(0x3f80) == 1.0f);
    assert_int_equal(ll_fp32_to_bf16(ll_bits_f32(0x3f808000u)), 0x3f80); // tie -> even
    assert_int_equal(ll_fp32_to_bf16(ll_bits_f32(0x3f818000u)), 0x3f82); // tie -> even (up)
    assert_true(isnan(ll_bf16_to_fp32(ll_fp32_to_bf16(NAN))));
}

typedef struct { int64_t n; _Atomic int64_t *hits; } pool_ctx;
static void pool_job(void *vctx, int ith, int nth) {
    pool_ctx *c = vctx;
    int64_t lo, hi;
    ll_split_range(c->n, ith, nth, 4, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) c->hits[i]++;
}

// Every index is visited exactly once, across many jobs and thread counts.
static void test_pool(void **state) {
    (void)state;
    for (int nt = 1; nt <= 4; nt++) {
        ll_error err;
        ll_pool *p = ll_pool_init(nt, &err);
        assert_non_null(p);
        int64_t n = 1003;
        _Atomic int64_t *hits = calloc((size_t)n, sizeof *hits);
        pool_ctx c = {n, hits};
        for (int rep = 0; rep < 500; rep++) ll_pool_run(p, pool_job, &c);
        for (int64_t i = 0; i < n; i++) assert_int_equal(hits[i], 500);
        free((void *)hits);
        ll_pool_free(p);
    }
}

// Four times more threads than CPUs (at least 8), and 8 threads confined to one CPU: every index still visited
// once per job, the pool runs at most one OS thread per allowed CPU, and 20000 small jobs finish in well under
// the time a spinning, oversubscribed pool took (5 t/s decode = ~0.6 ms per job; bound here: 5 s for 20000).
static void test_pool_oversubscribed(void **state) {
    (void)state;
    int allowed = ll_sys_allowed_cpus();
    int nts[2] = {4 * allowed < 8 ? 8 : 4 * allowed, 8};
    cpu_set_t old, one;
    assert_int_equal(sched_getaffinity(0, sizeof old, &old), 0);
    for (int k = 0; k < 2; k++) {
        if (k == 1) { // pin this thread (and the workers it starts) to its first allowed CPU
            CPU_ZERO(&one);
            for (int c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &old)) { CPU_SET(c, &one); break; }
            assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
            assert_int_equal(ll_sys_allowed_cpus(), 1);
            assert_int_equal(ll_sys_default_threads(), 1);
            assert_int_equal(ll_sys_max_threads(), 4);
        }
        ll_error err;
        ll_pool *p = ll_pool_init(nts[k], &err);
        assert_non_null(p);
        assert_int_equal(ll_pool_size(p), nts[k]);
        assert_true(ll_pool_os_threads(p) <= ll_sys_allowed_cpus());
        int64_t n = 1003;
        _Atomic int64_t *hits = calloc((size_t)n, sizeof *hits);
        pool_ctx c = {n, hits};
        double t0 = ll_time_s();
        for (int rep = 0; rep < 20000; rep++) ll_pool_run(p, pool_job, &c);
        double dt = ll_time_s() - t0;
        printf("# note: %d threads on %d CPUs: 20000 jobs in %.3f s\n", nts[k], ll_sys_allowed_cpus(), dt);
        for (int64_t i = 0; i < n; i++) assert_int_equal(hits[i], 20000);
        assert_true(dt < 5.0);
        free((void *)hits);
        ll_pool_free(p);
    }
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
}

static void put(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// cgroup CPU quotas from a fake tree: v2 cpu.max (rounded up, the tightest of the cgroup and its parents,
// "max" = none) and v1 cpu.cfs_quota_us / cpu.cfs_period_us (-1 = none).
static void test_cgroup_quota(void **state) {
    (void)state;
    char root[] = "/tmp/llmlab_cg_XXXXXX", d[600], self[600];
    assert_non_null(mkdtemp(root));
    snprintf(self, sizeof self, "%s/self_cgroup", root);
    // v2, our cgroup /a/b: no quota anywhere, then 1.5 CPUs on /a/b (-> 2), then 1 CPU on /a (tighter)
    snprintf(d, sizeof d, "%s/a", root), mkdir(d, 0700);
    snprintf(d, sizeof d, "%s/a/b", root), mkdir(d, 0700);
    put(root, "self_cgroup", "0::/a/b\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 0);
    put(root, "a/b/cpu.max", "max 100000\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 0);
    put(root, "a/b/cpu.max", "150000 100000\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 2);
    put(root, "a/cpu.max", "100000 100000\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 1);
    // v1: the cpu controller's line, mounted at root/cpu,cpuacct
    snprintf(d, sizeof d, "%s/cpu,cpuacct", root), mkdir(d, 0700);
    snprintf(d, sizeof d, "%s/cpu,cpuacct/job", root), mkdir(d, 0700);
    put(root, "self_cgroup", "5:memory:/job\n4:cpu,cpuacct:/job\n");
    put(root, "cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
    put(root, "cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 0);
    put(root, "cpu,cpuacct/job/cpu.cfs_quota_us", "300000\n");
    assert_int_equal(ll_sys_cgroup_cpus_at(root, self), 3);
    assert_int_equal(ll_sys_cgroup_cpus_at(root, "/nonexistent/cgroup"), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    // The real machine: at least 1, at most the online CPUs; the default never above the allowed CPUs.
    assert_true(ll_sys_allowed_cpus() >= 1 && ll_sys_allowed_cpus() <= ll_sys_logical_cores());
    assert_true(ll_sys_default_threads() <= ll_sys_allowed_cpus());
}

static void test_overflow_and_types(void **state) {
    (void)state;
    size_t r;
    assert_false(ll_mul_ok(SIZE_MAX / 2 + 1, 2, &r));
    assert_true(ll_mul_ok(1u << 20, 1u << 20, &r));
    assert_false(ll_add_ok(SIZE_MAX, 1, &r));
    uint64_t rs;
    assert_true(ll_type_row_size(LL_TYPE_Q4_K, 4096, &rs));
    assert_int_equal(rs, 16 * 144);
    assert_false(ll_type_row_size(LL_TYPE_Q4_0, 100, &rs)); // not a multiple of 32
    assert_false(ll_type_row_size(LL_TYPE_Q4_0, UINT64_MAX - 31, &rs) && rs < 100);
    assert_null(ll_type_get(4)); // removed id
    assert_null(ll_type_get(1000));
    ll_type t;
    assert_true(ll_type_from_name("q8_0", &t));
    assert_int_equal(t, LL_TYPE_Q8_0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_roundtrip_exhaustive),
        cmocka_unit_test(test_fp16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_oversubscribed),
        cmocka_unit_test(test_cgroup_quota),
        cmocka_unit_test(test_overflow_and_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
