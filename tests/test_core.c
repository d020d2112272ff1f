// test_core.c — core layer: fp16/bf16 conversions against exhaustive/known values, the thread pool,
// overflow helpers, the type table's geometry.
#include "testutil.h"

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
        cmocka_unit_test(test_overflow_and_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
